//! The name and spec sources' room: each scan, before the step, reads what the container
//! runtimes and the kubelet recorded (each source again only where it changed), counts a
//! failed read in `nsexporter_name_source_errors_total`, and logs a standing problem once
//! rather than every interval. What it hands the step is read already: [`Names`] for
//! attribution and a [`SpecView`] for declared against observed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use crate::attribution::{
    Attribution, Container, ContainerNames, NameError, NameErrorReason, NameSource, NameSources,
    Names, Workload,
};
use crate::declared::{SpecSources, Wanted, names_from_annotations, resolve_joined};
use crate::labels::SaidOnce;
use crate::metrics::{Metrics, Outcome};
use crate::model::{Process, Snapshot};

use super::step::SpecView;

/// Where container names and specs come from, with their last reads.
pub struct Sources {
    /// Where container names come from, with their last reads.
    names: NameSources,
    /// Where each container's OCI spec is, with the last reads; `None`: not read.
    specs: Option<SpecSources>,
    /// The names the specs' annotations gave at their last read.
    spec_names: Arc<HashMap<String, ContainerNames>>,
    /// The specs of the last scan's containers, by id, with the paths they join resolved.
    view: SpecView,
    /// Container ids whose conflicting kubelet log names were already logged.
    name_conflicts: HashSet<String>,
    /// Name source failures that were logged at warn already: later ones at debug.
    name_warned: SaidOnce<(NameSource, NameErrorReason)>,
}

impl Sources {
    /// The name sources alone; no spec is read.
    pub fn new(names: NameSources) -> Self {
        Sources {
            names,
            specs: None,
            spec_names: Arc::default(),
            view: SpecView::default(),
            name_conflicts: HashSet::new(),
            name_warned: SaidOnce::default(),
        }
    }

    /// Reads each container's OCI spec from `specs` too.
    pub fn with_specs(mut self, specs: SpecSources) -> Self {
        self.specs = Some(specs);
        self
    }

    /// Whether specs are read: only then does the step judge declared against observed.
    pub fn reads_specs(&self) -> bool {
        self.specs.is_some()
    }

    /// What the last [`Sources::refresh_specs`] read, for the step; `None` without specs.
    pub fn spec_view(&self) -> Option<&SpecView> {
        self.specs.as_ref().map(|_| &self.view)
    }

    /// Container names by id, each source read again only when it changed (see
    /// [`NameSources`]), the specs' of their last read among them. A container id with
    /// several kubelet names is logged once; a failed read is counted, and logged at warn the
    /// first time its source and reason appear.
    pub fn names(&mut self, metrics: &mut Metrics) -> Names {
        let refresh = self.names.refresh(Instant::now());
        for c in &refresh.conflicts {
            if self.name_conflicts.insert(c.container_id.clone()) {
                tracing::warn!(
                    dir = %c.dir.display(),
                    container_id = %c.container_id,
                    file_names = ?c.file_names,
                    "several kubelet log names for one container id; the first in byte order is used"
                );
            }
        }
        for (source, e) in &refresh.errors {
            self.count_name_error(metrics, *source, e);
        }
        refresh
            .names
            .with(NameSource::Spec, Arc::clone(&self.spec_names))
    }

    /// Reads the specs of the containers `attribution` found in `snapshot`, each again only
    /// where it changed, and resolves the namespace paths they join; counts and logs failed
    /// reads as the name sources'. Whether a container gained names its attribution lacked
    /// (then it is attributed again, by [`Sources::names`]).
    pub fn refresh_specs(
        &mut self,
        snapshot: &Snapshot,
        attribution: &Attribution,
        metrics: &mut Metrics,
    ) -> bool {
        let Some(specs) = &mut self.specs else {
            return false;
        };
        // Each container's first process, and its parent where that is outside every
        // container: the shim, whose working directory is the bundle.
        let mut first: HashMap<&str, (&Process, &Arc<Container>)> = HashMap::new();
        for p in snapshot.processes.values() {
            if let Workload::Container(c) = attribution.of(p.id.pid) {
                let e = first.entry(&c.id).or_insert((p, c));
                if (p.id.start_ticks, p.id.pid) < (e.0.id.start_ticks, e.0.id.pid) {
                    *e = (p, c);
                }
            }
        }
        let mut wanted: Vec<Wanted> = first
            .iter()
            .map(|(id, (p, _))| Wanted {
                id: (*id).to_owned(),
                shim: matches!(
                    attribution.of(p.ppid),
                    Workload::Host | Workload::Runtime(_)
                )
                .then_some(p.ppid),
            })
            .collect();
        wanted.sort_by(|a, b| a.id.cmp(&b.id));
        let refresh = specs.refresh(&wanted, Instant::now());
        let resolved = resolve_joined(specs.procfs(), &refresh.specs);
        for e in refresh.errors {
            self.count_name_error(metrics, NameSource::Spec, &e.into_name_error());
        }
        let names: HashMap<String, ContainerNames> = refresh
            .specs
            .iter()
            .filter_map(|(id, spec)| {
                Some((id.clone(), names_from_annotations(id, &spec.annotations)?))
            })
            .collect();
        let gained = first
            .values()
            .any(|(_, c)| c.names.is_none() && names.contains_key(&c.id));
        if *self.spec_names != names {
            self.spec_names = Arc::new(names);
        }
        self.view = SpecView {
            specs: refresh.specs,
            resolved,
        };
        gained
    }

    /// Counts a failed read of a name source, and logs it at warn the first time its source
    /// and reason appear.
    fn count_name_error(&mut self, metrics: &mut Metrics, source: NameSource, e: &NameError) {
        let reason = e.reason();
        metrics.record(Outcome::NameSourceError { source, reason });
        if !self.name_warned.first((source, reason)) {
            tracing::debug!(source = source.as_str(), reason = reason.as_str(), error = %e, "container names unread");
        } else {
            tracing::warn!(
                source = source.as_str(),
                reason = reason.as_str(),
                error = %e,
                "container names unread (said once per source and reason; counted in nsexporter_name_source_errors_total)"
            );
        }
    }
}
