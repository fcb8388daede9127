//! Container names, from files the kubelet and the container engines keep on the node, and
//! the cache that keeps them fresh without reading them every scan: the one module that
//! imports the sources, whose common kit (`container_names`) sits below them.
//!
//! Interfaces: files, not the kernel and not an API. The kubelet's `/var/log/containers`
//! listing ([`super::read_kubelet_names`]); Docker's `containers/<id>/config.v2.json`
//! ([`super::docker`]); containers/storage's `containers.json`, for Podman
//! ([`super::podman`]). A source is read again only when its *stamp*
//! moves — device, inode, mtime and size of the directory or file that every change of
//! the source rewrites (stat(2)) — or when its last read is a re-read period old, as a net
//! for two changes within one timestamp tick. A stamp that cannot be taken (the path is
//! absent, or unreadable) is a stamp too: an absent source costs one `stat` a scan, and is
//! read at once when it appears.
//!
//! Docker and Podman keep their files root-only (0600 files in 0700 and 0710 directories). A
//! non-root exporter reads them with CAP_DAC_READ_SEARCH where it is permitted (the image's
//! file capability, and the pod's `capabilities.add`): the reading thread makes it effective
//! only while it reads an engine's files, and drops it again (capabilities(7): the effective
//! set is per thread).
//!
//! Every file is untrusted input, read bounded ([`super::read_bounded`]). Failures are
//! returned by source and [`NameErrorReason`](super::NameErrorReason), for the caller to
//! count and log.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::container_names::{ContainerNames, NameError};
use super::docker::DockerStore;
use super::kubelet::{NameConflict, read_kubelet_names};
use super::podman::PodmanStore;
use crate::capabilities::Raised;
use crate::files::Stamp;

label_enum! {
    /// Where container names come from: the `source` label. Earlier sources win where two
    /// name one container id (a Docker container that the kubelet made has both names; the
    /// kubelet's carry the pod).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum NameSource {
        /// The kubelet's `/var/log/containers` listing (`--path.kubelet-logs`).
        Kubelet = "kubelet",
        /// The annotations of each container's OCI runtime spec (`--path.run`), where the
        /// CRI runtime wrote the pod's names: after the kubelet's, which are the
        /// orchestrator's own record, and before the engines', which have no pod.
        Spec = "spec",
        /// Docker's `containers/<id>/config.v2.json` (`--path.docker`).
        Docker = "docker",
        /// containers/storage's `<driver>-containers/containers.json` (`--path.podman`).
        Podman = "podman",
    }
}

/// The names every source gave at its last read, by container id: what attribution looks up.
/// Cheap to clone: each source's map is shared with the cache.
#[derive(Debug, Clone, Default)]
pub struct Names {
    by_source: [Arc<HashMap<String, ContainerNames>>; NameSource::ALL.len()],
}

impl Names {
    /// These names with `source`'s replaced by `by_id`.
    pub fn with(
        mut self,
        source: NameSource,
        by_id: Arc<HashMap<String, ContainerNames>>,
    ) -> Names {
        self.by_source[source.index()] = by_id;
        self
    }

    /// Names from one source (tests, benchmarks).
    pub fn of(source: NameSource, by_id: HashMap<String, ContainerNames>) -> Names {
        let mut names = Names::default();
        names.by_source[source.index()] = Arc::new(by_id);
        names
    }

    /// The names of container `id`, from the first source (in [`NameSource::ALL`] order)
    /// that has it.
    pub fn get(&self, id: &str) -> Option<&ContainerNames> {
        self.by_source.iter().find_map(|by_id| by_id.get(id))
    }
}

/// What a refresh found: the names, and what went wrong or looked wrong on the way.
#[derive(Debug, Default)]
pub struct Refresh {
    pub names: Names,
    /// Failed reads of this refresh, each once: a source or file that keeps failing is
    /// tried again only when it changes or at the re-read period.
    pub errors: Vec<(NameSource, NameError)>,
    /// Kubelet log names that carry one container id twice, at each read of the listing.
    pub conflicts: Vec<NameConflict>,
}

/// The longest a source is used without being read again, by default.
pub const REREAD: Duration = Duration::from_secs(60);

/// The configured name sources and their last reads.
#[derive(Debug)]
pub struct NameSources {
    kubelet: Option<(PathBuf, Cache<Stamp>)>,
    docker: Option<(DockerStore, Cache<Stamp>)>,
    podman: Option<(PodmanStore, Cache<ListStamps>)>,
    reread: Duration,
}

impl Default for NameSources {
    fn default() -> Self {
        NameSources {
            kubelet: None,
            docker: None,
            podman: None,
            reread: REREAD,
        }
    }
}

impl NameSources {
    /// No source: only container ids and pod uids are known.
    pub fn new() -> Self {
        Self::default()
    }

    /// The kubelet's log directory, normally `/var/log/containers`.
    pub fn kubelet(mut self, dir: PathBuf) -> Self {
        self.kubelet = Some((dir, Cache::default()));
        self
    }

    /// Docker's data root, normally `/var/lib/docker`.
    pub fn docker(mut self, root: PathBuf) -> Self {
        self.docker = Some((DockerStore::new(root), Cache::default()));
        self
    }

    /// Podman's graph root (containers/storage), normally `/var/lib/containers/storage`.
    pub fn podman(mut self, root: PathBuf) -> Self {
        self.podman = Some((PodmanStore::new(root), Cache::default()));
        self
    }

    /// Re-reads every source at least this often (tests).
    pub fn reread_every(mut self, period: Duration) -> Self {
        self.reread = period;
        self
    }

    /// The names of every source, each read again if its stamp moved or it is
    /// [`reread_every`](Self::reread_every) old at `now`.
    pub fn refresh(&mut self, now: Instant) -> Refresh {
        let mut out = Refresh::default();
        let period = self.reread;
        if let Some((dir, cache)) = &mut self.kubelet {
            let stamp = Stamp::of(std::fs::metadata(&dir));
            out.names.by_source[NameSource::Kubelet.index()] =
                cache.refresh(stamp, now, period, |_| match read_kubelet_names(dir) {
                    Ok(names) => {
                        out.conflicts.extend(names.conflicts);
                        names.by_id
                    }
                    // No kubelet on this node.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
                    Err(e) => {
                        out.errors
                            .push((NameSource::Kubelet, NameError::io(dir, e)));
                        HashMap::new()
                    }
                });
        }
        let _read_search =
            (self.docker.is_some() || self.podman.is_some()).then(Raised::read_search);
        if let Some((store, cache)) = &mut self.docker {
            // Creating or removing a container moves `containers/`; a rename rewrites only
            // its own file, which the listing then finds changed.
            let stamp = Stamp::of(std::fs::metadata(store.containers_dir()));
            out.names.by_source[NameSource::Docker.index()] =
                cache.refresh(stamp, now, period, |_| {
                    let (names, errors) = store.read();
                    out.errors
                        .extend(errors.into_iter().map(|e| (NameSource::Docker, e)));
                    names
                });
        }
        if let Some((store, cache)) = &mut self.podman {
            out.names.by_source[NameSource::Podman.index()] =
                cache.refresh(store.stamps(), now, period, |stamps| {
                    let (names, errors) = store.read(stamps);
                    out.errors
                        .extend(errors.into_iter().map(|e| (NameSource::Podman, e)));
                    names
                });
        }
        out
    }
}

/// The stamps of every list of a Podman store.
type ListStamps = Vec<(PathBuf, Stamp)>;

/// One source's last read.
#[derive(Debug)]
struct Cache<S> {
    /// The source's stamp just before that read, and when it was.
    read: Option<(S, Instant)>,
    names: Arc<HashMap<String, ContainerNames>>,
}

impl<S> Default for Cache<S> {
    fn default() -> Self {
        Cache {
            read: None,
            names: Arc::default(),
        }
    }
}

impl<S: PartialEq> Cache<S> {
    /// The names, read again with `read` if the source must be: never read, its stamp moved
    /// since, or read `period` ago. The stamp is taken *before* the read: a change during
    /// the read moves it again, so the next refresh reads once more.
    fn refresh(
        &mut self,
        stamp: S,
        now: Instant,
        period: Duration,
        read: impl FnOnce(&S) -> HashMap<String, ContainerNames>,
    ) -> Arc<HashMap<String, ContainerNames>> {
        let stale = self.read.as_ref().is_none_or(|(seen, at)| {
            *seen != stamp || now.saturating_duration_since(*at) >= period
        });
        if stale {
            self.names = Arc::new(read(&stamp));
            self.read = Some((stamp, now));
        }
        Arc::clone(&self.names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3959d7abfbd0221e5043fccbcb8040e9a1a4e6518dad483b7a33a131885e0283";

    fn names(container: &str) -> ContainerNames {
        ContainerNames {
            pod: String::new(),
            k8s_namespace: String::new(),
            container: container.into(),
            container_id: ID.into(),
        }
    }

    #[test]
    fn earlier_sources_win() {
        let kubelet = Names::of(
            NameSource::Kubelet,
            HashMap::from([(ID.to_owned(), names("app"))]),
        );
        assert_eq!(kubelet.get(ID).map(|n| n.container.as_str()), Some("app"));
        assert_eq!(kubelet.get("other"), None);
        assert_eq!(Names::default().get(ID), None);
    }

    /// The kubelet's directory is read again when it changes and once a period, not every
    /// refresh; a missing directory is no error and is read as soon as it appears.
    #[test]
    fn kubelet_listing_follows_its_stamp() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("containers");
        let mut sources = NameSources::new().kubelet(dir.clone());
        let t0 = Instant::now();
        let r = sources.refresh(t0);
        assert!(r.errors.is_empty() && r.names.get(ID).is_none());

        std::fs::create_dir(&dir).unwrap();
        let log = dir.join(format!("web-0_shop_nginx-{ID}.log"));
        std::fs::write(&log, b"").unwrap();
        let r = sources.refresh(t0);
        assert_eq!(r.names.get(ID).map(|n| n.pod.as_str()), Some("web-0"));

        // Unchanged: the cached map itself, not a new read.
        let again = sources.refresh(t0 + Duration::from_secs(1));
        assert!(Arc::ptr_eq(
            &r.names.by_source[0],
            &again.names.by_source[0]
        ));
        // A period later it is read again, changed or not.
        let later = sources.refresh(t0 + REREAD);
        assert!(!Arc::ptr_eq(
            &r.names.by_source[0],
            &later.names.by_source[0]
        ));

        std::fs::remove_file(&log).unwrap();
        let r = sources.refresh(t0 + REREAD);
        assert_eq!(r.names.get(ID), None);
    }
}
