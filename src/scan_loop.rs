//! The scan loop: scan → lifecycle → attribution → sharing → metrics → one encoded exposition,
//! every interval.
//!
//! It runs on its own thread so that a slow scan never delays a scrape: the HTTP side only ever
//! reads the last encoded [`Exposition`] from a watch channel, and the loop's [`Health`].
//! A failed scan is published too: `nsexporter_scan_success 0` and the failure counted by
//! reason, beside the last good scan's namespaces and findings, which are kept rather than
//! dropped so that a failing scan never resolves a security alert by itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::attribution::{
    Attribution, ContainerNames, Memberships, NameErrorReason, NameSource, NameSources, Names,
    Workload, attribute,
};
use crate::declared::{Judgement, SpecSources, Wanted, judge, names_from_annotations};
use crate::events::{Event, EventStream};
use crate::health::{Health, StopGuard};
use crate::labels::SaidOnce;
use crate::lifecycle::Tracker;
use crate::metrics::{BetweenScans, Exposition, Metrics, Outcome, ScanRecord};
use crate::model::{
    CgroupLayout, NamespaceId, NsChange, NsType, PerType, Process, ProcessId, Snapshot,
    ThreadNamespace,
};
use crate::policy::Policy;
use crate::scan::{ErrorReason, FailureReason, ProcessFailure, ScanFailure, Scanner, Watch};
use crate::sharing::{Finding, FindingLog, evaluate};

/// Owns the state that lives across scans.
pub struct ScanLoop {
    scanner: Scanner,
    tracker: Tracker,
    metrics: Metrics,
    layout: CgroupLayout,
    /// The policy in force: as configured, resolved for the cgroup layout.
    policy: Policy,
    /// Where container names come from, with their last reads.
    names: NameSources,
    /// Where each container's OCI spec is, with the last reads; `None`: not read.
    specs: Option<SpecSources>,
    /// The names the specs' annotations gave at their last read.
    spec_names: Arc<HashMap<String, ContainerNames>>,
    /// The last scan's declared-versus-observed judgement, for the sweeps' findings.
    judgement: Judgement,
    /// The specs of the last scan's containers, by id.
    spec_cache: crate::declared::Specs,
    /// Reasons already logged at warn level; later scans log them at debug, so a standing
    /// problem (a protected init, a missing capability) is said once, not every interval.
    warned: SaidOnce<ErrorReason>,
    /// The same for whole-scan failures: said once until a scan succeeds again.
    failing: Option<FailureReason>,
    /// Container ids whose conflicting kubelet log names were already logged.
    name_conflicts: HashSet<String>,
    /// Name source failures that were logged at warn already, as `warned`.
    name_warned: SaidOnce<(NameSource, NameErrorReason)>,
    /// The processes whose reads failed in the last scan, and why: the same failure again is
    /// standing, counted when it began and not every scan since.
    failed: HashSet<ProcessFailure>,
    /// The findings of the last scan: each new one is counted and logged once.
    findings: FindingLog,
    /// Processes the sweeps read since the last scan: pid, start ticks, reads.
    swept: HashMap<i32, (u64, u8)>,
    /// The containers' processes of the last scan, which sweeps read again in place.
    watch: Watch,
    /// Which container each process and pid namespace was found in, kept for their lives.
    memberships: Memberships,
    /// Pids from the proc connector and changes from the eBPF source, where they listen.
    events: Option<EventStream>,
    /// Namespace changes logged since the last scan: each (process, namespace) once, and at
    /// most [`CHANGES_LOGGED`] of them; `true` once that bound was said.
    changes_logged: (HashSet<(ProcessId, NamespaceId)>, bool),
    /// How long a namespace must have had no member process, held by a bind mount or an fd
    /// only, to count as orphaned (`--namespace.orphan-age`).
    orphan_age: Duration,
}

impl ScanLoop {
    /// The loop over `scanner`'s procfs. The host's cgroup layout is read once, here: it cannot change
    /// without a reboot.
    pub fn new(
        scanner: Scanner,
        metrics: Metrics,
        policy: Policy,
        orphan_age: Duration,
        names: NameSources,
    ) -> Self {
        let layout = scanner.procfs().cgroup_layout();
        let policy = policy.for_cgroup_layout(layout);
        tracing::info!(
            cgroup_layout = layout.as_str(),
            host_namespace_types = %policy.host_namespace_types.names(),
            cross_workload_types = %policy.cross_workload_types.names(),
            "policy in force{}",
            if layout.runtimes_unshare_cgroup() {
                ""
            } else {
                " (cgroup is left out by default: on this layout container runtimes leave every container in the cgroup namespace of the host)"
            }
        );
        ScanLoop {
            scanner,
            tracker: Tracker::new(),
            metrics,
            layout,
            policy,
            names,
            specs: None,
            spec_names: Arc::default(),
            judgement: Judgement::default(),
            spec_cache: Default::default(),
            warned: SaidOnce::default(),
            failing: None,
            name_conflicts: HashSet::new(),
            name_warned: SaidOnce::default(),
            findings: FindingLog::new(),
            failed: HashSet::new(),
            swept: HashMap::new(),
            watch: Watch::default(),
            memberships: Memberships::default(),
            events: None,
            changes_logged: (HashSet::new(), false),
            orphan_age,
        }
    }

    /// Reads each container's OCI spec from `specs` and judges what it declared against
    /// what its processes are in.
    pub fn with_specs(mut self, specs: SpecSources) -> Self {
        self.specs = Some(specs);
        self
    }

    /// The scanner's progress, for [`Health`].
    pub fn progress(&self) -> Arc<std::sync::atomic::AtomicI32> {
        self.scanner.progress()
    }

    /// Replaces the policy (SIGHUP); it applies from the next scan, counters and lifecycle
    /// state are kept.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy.for_cgroup_layout(self.layout);
        tracing::info!(
            allow_rules = self.policy.allow.len(),
            host_namespace_types = %self.policy.host_namespace_types.names(),
            "policy reloaded"
        );
    }

    /// Scans once and encodes the result; a failed scan is recorded and encoded too.
    pub fn run_once(&mut self) -> (Exposition, Result<(), ScanFailure>) {
        let started = Instant::now();
        let outcome = match self.scanner.scan(self.tracker.previous()) {
            Ok(o) => o,
            Err(e) => {
                let reason = e.reason();
                self.metrics.record(Outcome::ScanFailed(reason));
                if self.failing.replace(reason) == Some(reason) {
                    tracing::debug!(reason = reason.as_str(), error = %e, "scan failed");
                } else {
                    tracing::error!(
                        reason = reason.as_str(),
                        error = %e,
                        "scan failed (said once until a scan succeeds; counted in nsexporter_scan_failures_total)"
                    );
                }
                return (self.metrics.exposition(), Err(e));
            }
        };
        if let Some(reason) = self.failing.take() {
            tracing::info!(after = reason.as_str(), "scans succeed again");
        }
        let snapshot = Arc::new(outcome.snapshot);
        let changes = self.tracker.update(Arc::clone(&snapshot));
        let names = self.names();
        let mut attribution = attribute(&snapshot, &[], &names, &mut self.memberships);
        if self.refresh_specs(&snapshot, &attribution) {
            // A new container's names came from its spec: attributed again with them.
            attribution = attribute(&snapshot, &[], &self.names(), &mut self.memberships);
        }
        self.memberships.keep_only(&snapshot);
        let mut moves = PerType::splat(false);
        for t in NsType::ALL {
            moves[t] = t == NsType::Mnt || self.policy.host_namespace_types.contains(t);
        }
        let containers = snapshot.processes.keys().copied().filter(|&pid| {
            matches!(
                attribution.of(pid),
                Workload::Container(_) | Workload::Runtime(_)
            )
        });
        self.watch = Watch::new(containers, moves);
        let mut sharing = evaluate(&snapshot, &attribution, &self.policy);
        self.judgement = match &self.specs {
            Some(specs) => {
                let procfs = specs.procfs().to_owned();
                let resolve =
                    |path: &std::path::Path| crate::declared::resolve_on_host(&procfs, path);
                judge(&snapshot, &attribution, &self.spec_cache, &resolve)
            }
            None => Judgement::default(),
        };
        for f in &mut sharing.findings {
            f.declared = self.judgement.declaration(f, &snapshot);
        }
        sharing
            .findings
            .extend(self.judgement.findings.iter().cloned());
        sharing.findings.sort();
        let new_findings = self.findings.update(&sharing.findings);
        let orphans = self.tracker.orphans(self.orphan_age);
        let duration = started.elapsed();
        let standing = outcome.errors.standing(&self.failed);
        self.failed = outcome.errors.processes().clone();
        self.metrics.record(Outcome::Scan(ScanRecord {
            snapshot: &snapshot,
            tracker: &self.tracker,
            changes: &changes,
            errors: &outcome.errors,
            standing_errors: standing,
            id_queries: outcome.id_queries,
            sharing: &sharing,
            new_findings: &new_findings,
            orphans: &orphans,
            fds_skipped: outcome.fds_skipped,
            sockets_skipped: outcome.sockets_skipped,
            socket_queries: outcome.socket_queries,
            duration,
        }));
        for reason in ErrorReason::ALL {
            let (count, Some(first)) = (outcome.errors.count(reason), outcome.errors.first(reason))
            else {
                continue;
            };
            if !self.warned.first(reason) {
                tracing::debug!(reason = reason.as_str(), count, first, "scan errors");
            } else {
                tracing::warn!(
                    reason = reason.as_str(),
                    count,
                    first,
                    "scan errors (said once; counted in nsexporter_scan_errors_total)"
                );
            }
        }
        tracing::info!(
            processes = snapshot.processes.len(),
            namespaces = snapshot.namespaces.len(),
            created = changes.created.len(),
            destroyed = changes.destroyed.len(),
            errors = outcome.errors.total(),
            findings = sharing.findings.len(),
            vanished = outcome.vanished,
            id_queries = outcome.id_queries,
            duration_ms = duration.as_secs_f64() * 1000.0,
            "scan"
        );
        // The scan's temporaries go, and their memory back to the kernel, before the encode
        // samples `process_resident_memory_bytes`: it then reports the resident size the
        // exporter keeps between scans, not the scan's peak. Encoding after they are gone
        // also keeps the text off that peak.
        drop((
            snapshot,
            changes,
            attribution,
            sharing,
            new_findings,
            orphans,
        ));
        drop(outcome.errors);
        release_free_memory();
        (self.metrics.exposition(), Ok(()))
    }

    /// Reads the specs of this scan's containers, each again only where it changed, into
    /// `spec_cache` and `spec_names`; counts and logs failed reads as the name sources'.
    /// Whether a container gained names its attribution lacked.
    fn refresh_specs(&mut self, snapshot: &Snapshot, attribution: &Attribution) -> bool {
        let Some(specs) = &mut self.specs else {
            return false;
        };
        // Each container's first process, and its parent where that is outside every
        // container: the shim, whose working directory is the bundle.
        let mut first: HashMap<&str, (&Process, &Arc<crate::attribution::Container>)> =
            HashMap::new();
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
        for e in refresh.errors {
            self.count_name_error(NameSource::Spec, &e.into_name_error());
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
        self.spec_cache = refresh.specs;
        gained
    }

    /// Counts a failed read of a name source, and logs it at warn the first time its source
    /// and reason appear.
    fn count_name_error(&mut self, source: NameSource, e: &crate::attribution::NameError) {
        let reason = e.reason();
        self.metrics
            .record(Outcome::NameSourceError { source, reason });
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

    /// Container names by id, each source read again only when it changed (see
    /// [`NameSources`]). A container id with several kubelet names is logged once; a failed
    /// read is counted, and logged at warn the first time its source and reason appear.
    fn names(&mut self) -> Names {
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
            self.count_name_error(*source, e);
        }
        refresh
            .names
            .with(NameSource::Spec, Arc::clone(&self.spec_names))
    }

    /// Scans every `interval` until `stop` is signalled or dropped, publishing each result and
    /// stamping `health`. Ticks that a slow scan overran are skipped, not queued. A policy sent
    /// on `policies` (SIGHUP) applies from the next scan.
    ///
    /// Between two scans, every `sweep` (none where it is zero or not shorter than the
    /// interval), a sweep reads the processes that started since and re-reads the containers'
    /// processes in place; with process events, batches of them are judged as they come.
    /// Each publishes at once what it counted. [`next_step`] decides the order.
    pub fn run(
        mut self,
        interval: Duration,
        sweep: Duration,
        publish: watch::Sender<Option<Arc<Exposition>>>,
        policies: Receiver<Policy>,
        stop: Receiver<()>,
        health: Arc<Health>,
    ) {
        let _guard = StopGuard(Arc::clone(&health));
        let sweeping = !sweep.is_zero() && sweep < interval;
        if !sweeping && !sweep.is_zero() {
            tracing::info!(
                sweep_interval = %humantime::format_duration(sweep),
                interval = %humantime::format_duration(interval),
                "no sweeps: scans are as frequent as sweeps would be"
            );
        }
        self.metrics.record(Outcome::Started {
            cgroup_layout: self.layout,
            between: BetweenScans {
                sweeps: sweeping,
                proc_events: self.events.as_ref().is_some_and(|e| e.proc_drops.is_some()),
                ebpf: self.events.as_ref().is_some_and(|e| e.ebpf_lost.is_some()),
            },
        });
        let start = Instant::now();
        let mut next_scan = start;
        let mut next_sweep = start;
        let mut pending: Vec<Event> = Vec::new();
        let stopped = || !matches!(stop.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty));
        loop {
            if stopped() {
                return;
            }
            let now = Instant::now();
            let sweep_at = sweeping.then_some(next_sweep);
            match next_step(now, next_scan, sweep_at, !pending.is_empty()) {
                Step::Scan => {
                    while let Ok(policy) = policies.try_recv() {
                        self.set_policy(policy);
                    }
                    health.scan_started();
                    let (exposition, result) = self.run_once();
                    publish.send_replace(Some(Arc::new(exposition)));
                    health.scan_finished(result.map_err(|e| e.to_string()));
                    self.swept.clear();
                    self.changes_logged = (HashSet::new(), false);
                    release_free_memory();
                    let now = Instant::now();
                    next_scan = after(next_scan, interval, now);
                    next_sweep = now + sweep;
                }
                Step::Sweep => {
                    if let Some(exposition) = self.sweep_once() {
                        publish.send_replace(Some(Arc::new(exposition)));
                    }
                    next_sweep = after(next_sweep, sweep, Instant::now());
                }
                Step::Events => {
                    let batch: Vec<Event> = match &self.events {
                        Some(events) => {
                            let room = EVENT_BATCH.saturating_sub(pending.len());
                            pending.extend(events.events.try_iter().take(room));
                            std::mem::take(&mut pending)
                        }
                        None => std::mem::take(&mut pending),
                    };
                    if let Some(exposition) = self.judge_events(batch) {
                        publish.send_replace(Some(Arc::new(exposition)));
                    }
                }
                Step::Wait(timeout) => match &self.events {
                    // Woken by an event, or at the next sweep or scan; a stop is seen within
                    // a second.
                    Some(events) => {
                        match events
                            .events
                            .recv_timeout(timeout.min(Duration::from_secs(1)))
                        {
                            Ok(event) => pending.push(event),
                            Err(RecvTimeoutError::Timeout) => {}
                            // The listener stopped (it said why); the sweeps go on.
                            Err(RecvTimeoutError::Disconnected) => self.events = None,
                        }
                    }
                    None => match stop.recv_timeout(timeout) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    },
                },
            }
        }
    }

    /// One sweep: the processes new since the last scan, and the containers' processes that
    /// moved since, judged by the host rules against the last scan's host namespaces. Returns
    /// the exposition to publish, with its counters and any new finding; `None` where it
    /// could not run (the next scan says why).
    fn sweep_once(&mut self) -> Option<Exposition> {
        let known = Arc::clone(self.tracker.previous_arc()?);
        let sweep = match self.scanner.sweep(&known, &mut self.swept, &mut self.watch) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "sweep failed");
                return None;
            }
        };
        tracing::trace!(
            listed = sweep.listed,
            rechecked = sweep.rechecked,
            read = sweep.processes.len(),
            "sweep"
        );
        let (read, new) = self.judge(sweep.processes, &known, &[]);
        self.metrics.record(Outcome::Sweep {
            processes: read,
            rechecked: sweep.rechecked,
            new_findings: &new,
        });
        Some(self.encode_live())
    }

    /// Reads the processes the kernel said forked or exec'd, or changed namespaces, and
    /// judges them as a sweep does. A change is judged as the kernel reported it: the
    /// namespaces the task entered join the process as it is read now (as a thread's, so that
    /// a stay already over, or a change of one thread, still counts), or as the last scan
    /// read it where it is gone by now (its cgroup, and so its container, is the one it had
    /// then). A process gone before anything read it (a child that enters the host's network
    /// and exits within a millisecond) is judged as its parent was read, by the cgroup it was
    /// born in ([`born_of`]), and by its own pid namespace, which the kernel reported; where
    /// its parent is gone too, by that pid namespace alone ([`reported`]). Only where neither
    /// is known is the change logged at debug and counted only in
    /// `nsexporter_ebpf_namespace_changes_total`.
    fn judge_events(&mut self, batch: Vec<Event>) -> Option<Exposition> {
        let known = Arc::clone(self.tracker.previous_arc()?);
        let (mut pids, mut changes, mut forks) = (Vec::new(), Vec::new(), 0);
        for event in batch {
            match event {
                Event::Process(pid) => {
                    forks += 1;
                    pids.push(pid);
                }
                Event::Change(change) => {
                    pids.push(change.process.pid);
                    changes.push(*change);
                }
            }
        }
        pids.sort_unstable();
        pids.dedup();
        let mut processes = self.scanner.read_pids(&pids, &known);
        // A flood of changes names thousands of processes: found by id, not by a walk each.
        let mut index: HashMap<ProcessId, usize> = processes
            .iter()
            .enumerate()
            .map(|(at, p)| (p.id, at))
            .collect();
        // Parents of processes gone unread, as read in this batch (`None`: gone too).
        let mut parents: HashMap<ProcessId, Option<Process>> = HashMap::new();
        for change in &changes {
            let at = match index.get(&change.process) {
                Some(&at) => at,
                None => match known.processes.get(&change.process.pid) {
                    Some(p) if p.id == change.process => {
                        processes.push(p.clone());
                        index.insert(p.id, processes.len() - 1);
                        processes.len() - 1
                    }
                    _ => {
                        let parent = change.parent.and_then(|parent| match index.get(&parent) {
                            Some(&at) => Some(processes[at].clone()),
                            // Read once a batch: a flood of short-lived children has one parent.
                            None => parents
                                .entry(parent)
                                .or_insert_with(|| self.read_one(parent, &known))
                                .clone(),
                        });
                        let born = match parent {
                            Some(parent) => born_of(change, &parent),
                            // Its own pid namespace may place it still.
                            None if change.namespaces[NsType::Pid].is_some() => reported(change),
                            None => {
                                tracing::debug!(
                                    pid = change.process.pid,
                                    comm = %change.comm,
                                    syscall = change.syscall.as_str(),
                                    "namespace change of a process gone unread, whose parent is unknown"
                                );
                                continue;
                            }
                        };
                        processes.push(born);
                        index.insert(change.process, processes.len() - 1);
                        processes.len() - 1
                    }
                },
            };
            let p = &mut processes[at];
            for id in change.entered() {
                let tid = change.tid;
                if p.namespace(id.ns_type) != Some(id)
                    && !p
                        .thread_namespaces
                        .iter()
                        .any(|t| t.tid == tid && t.id == id)
                {
                    p.thread_namespaces.push(ThreadNamespace { tid, id });
                }
            }
        }
        let (read, new) = self.judge(processes, &known, &changes);
        self.metrics.record(Outcome::Events {
            proc_events: forks,
            read,
            new_findings: &new,
            changes: &changes,
        });
        Some(self.encode_live())
    }

    /// The process `id` as the last scan read it, or as it is read now; `None` where it is
    /// gone, or its pid is another process's by now.
    fn read_one(&mut self, id: ProcessId, known: &Snapshot) -> Option<Process> {
        match known.processes.get(&id.pid) {
            Some(p) if p.id == id => Some(p.clone()),
            _ => self
                .scanner
                .read_pids(&[id.pid], known)
                .into_iter()
                .find(|p| p.id == id),
        }
    }

    /// Logs each namespace change once per process and namespace until the next scan, with
    /// its process's container: at most [`CHANGES_LOGGED`] a scan, so that a flood of
    /// changes (counted all the same) does not flood the log.
    fn log_changes(&mut self, changes: &[NsChange], known: &Snapshot, attribution: &Attribution) {
        for change in changes {
            let container = match attribution.of(change.process.pid) {
                Workload::Container(c) => Some(c),
                _ => None,
            };
            let names = container.and_then(|c| c.names.as_ref());
            for id in change.entered() {
                let (logged, said) = &mut self.changes_logged;
                if logged.contains(&(change.process, id)) {
                    continue;
                }
                if logged.len() >= CHANGES_LOGGED {
                    if !std::mem::replace(said, true) {
                        tracing::info!(
                            most = CHANGES_LOGGED,
                            "more namespace changes than are logged between two scans; the rest are counted in nsexporter_ebpf_namespace_changes_total"
                        );
                    }
                    continue;
                }
                logged.insert((change.process, id));
                tracing::info!(
                    pid = change.process.pid,
                    tid = change.tid,
                    comm = %change.comm,
                    syscall = change.syscall.as_str(),
                    r#type = id.ns_type.as_str(),
                    namespace = id.inode,
                    host = known.host.contains(id),
                    container_id = container.map_or("", |c| c.id.as_str()),
                    container = names.map_or("", |n| n.container.as_str()),
                    pod = names.map_or("", |n| n.pod.as_str()),
                    k8s_namespace = names.map_or("", |n| n.k8s_namespace.as_str()),
                    "namespace change (eBPF)"
                );
            }
        }
    }

    /// The exposition with the live families as they are now.
    fn encode_live(&mut self) -> Exposition {
        let events = self.events.as_ref();
        self.metrics.record(Outcome::ReaderLosses {
            proc_events: events.and_then(|e| e.proc_drops.as_deref()),
            ebpf: events.and_then(|e| e.ebpf_lost.as_deref()),
        });
        self.metrics.exposition()
    }

    /// Judges processes read between scans by the host rules, against the host namespaces of
    /// `known`, and logs each new finding: how many it read, and the new findings to count.
    fn judge(
        &mut self,
        processes: Vec<Process>,
        known: &Snapshot,
        changes: &[NsChange],
    ) -> (usize, Vec<Finding>) {
        let read = processes.len();
        if read == 0 {
            return (0, Vec::new());
        }
        let processes: BTreeMap<i32, Process> =
            processes.into_iter().map(|p| (p.id.pid, p)).collect();
        // Parents that neither this read nor the last scan holds (one a sweep read before, as
        // runc's own process is before it forks its stages): read now, for attribution to
        // tell a runtime's setup from the payload.
        let mut missing: Vec<i32> = processes
            .values()
            .map(|p| p.ppid)
            .filter(|pid| !processes.contains_key(pid) && !known.processes.contains_key(pid))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let (time, wall) = self.scanner.now();
        let parents = self.scanner.read_pids(&missing, known);
        let parents = Snapshot::from_processes(
            wall,
            time,
            parents.into_iter().map(|p| (p.id.pid, p)).collect(),
            known.host.clone(),
        );
        let mut fresh = Snapshot::from_processes(wall, time, processes, known.host.clone());
        self.confirm_pid_namespaces(&mut fresh);
        let names = self.names();
        let attribution = attribute(&fresh, &[known, &parents], &names, &mut self.memberships);
        // Watched from now on, as the last scan's containers' processes are.
        for p in fresh.processes.values() {
            if matches!(
                attribution.of(p.id.pid),
                Workload::Container(_) | Workload::Runtime(_)
            ) {
                self.watch.add(p);
            }
        }
        if !changes.is_empty() {
            self.log_changes(changes, known, &attribution);
        }
        let mut sharing = evaluate(&fresh, &attribution, &self.policy);
        for f in &mut sharing.findings {
            f.declared = self.judgement.declaration(f, &fresh);
        }
        let new = self.findings.sweep(&sharing.findings, &fresh, &attribution);
        (read, new)
    }

    /// Gives the pid namespaces of `fresh` (read between scans: no kernel ids) that were
    /// learnt as a container's their kernel id, where the process they were learnt from is
    /// in a namespace of that id still: then the inode is that namespace's, not a new one's,
    /// and attribution may place by it a process that left its container's cgroup before
    /// any read, or was gone before its own (a child the eBPF source reported). One open and
    /// one ioctl per such namespace, and only for those.
    fn confirm_pid_namespaces(&self, fresh: &mut Snapshot) {
        let Ok(root) = crate::procfs::open_dir_at(None, self.scanner.procfs().root()) else {
            return;
        };
        let mut digits = itoa::Buffer::new();
        for (id, ns) in fresh.namespaces.iter_mut() {
            if id.ns_type != NsType::Pid || fresh.host.contains(*id) {
                continue;
            }
            let Some((witness, kernel_id)) = self.memberships.witness(id.inode) else {
                continue;
            };
            let Ok(link) = std::ffi::CString::new(format!("{}/ns/pid", digits.format(witness)))
            else {
                continue;
            };
            let facts = crate::procfs::ns_facts(root.as_fd(), &link, NsType::Pid);
            if facts.is_ok_and(|f| f.inode == id.inode && f.kernel_id == Some(kernel_id)) {
                ns.kernel_id = Some(kernel_id);
            }
        }
    }

    /// Judges the processes the kernel reports forking and exec'ing as they come (the proc
    /// connector), besides the sweeps.
    pub fn with_events(mut self, events: EventStream) -> Self {
        self.events = Some(events);
        self
    }
}

/// How many namespace changes are logged between two scans at most.
const CHANGES_LOGGED: usize = 1000;

/// How many event pids one step judges at most: a flood is taken in batches, each followed
/// by a look at the clock.
const EVENT_BATCH: usize = 4096;

/// What the scan loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Scan,
    Sweep,
    /// Judge a batch of process events.
    Events,
    /// Nothing is due for this long (or until an event comes).
    Wait(Duration),
}

/// The scan loop's next step, from the clock alone: a due scan first, then a due sweep, then
/// waiting events, so that neither a flood of events nor a slow sweep holds off what is due
/// by more than one batch or sweep. `sweep` is `None` without sweeps.
pub fn next_step(now: Instant, scan: Instant, sweep: Option<Instant>, events: bool) -> Step {
    if now >= scan {
        Step::Scan
    } else if sweep.is_some_and(|s| now >= s) {
        Step::Sweep
    } else if events {
        Step::Events
    } else {
        let wake = sweep.map_or(scan, |s| s.min(scan));
        Step::Wait(wake - now)
    }
}

/// The first tick of `every` after `tick` that is later than `now`: ticks that a slow step
/// overran are skipped, not queued.
fn after(tick: Instant, every: Duration, now: Instant) -> Instant {
    let mut next = tick + every;
    while next <= now {
        next += every;
    }
    next
}

/// A process that changed namespaces and was gone before `/proc` was read: in the namespaces
/// the kernel reported for it, its own pid namespace among them, which places it in its
/// container whatever its parent is (`CLONE_PARENT`, a subreaper); its parent's cgroup file
/// is only a claim beside that. What it wrote itself (`comm`) is the kernel's report of it, a
/// claim as every `comm`.
fn born_of(change: &NsChange, parent: &Process) -> Process {
    let mut namespaces = parent.namespaces;
    for t in NsType::ALL {
        namespaces[t] = change.namespaces[t].or(namespaces[t]);
    }
    Process {
        id: change.process,
        ppid: parent.id.pid,
        comm: change.comm.as_str().into(),
        namespaces,
        thread_namespaces: Vec::new(),
        ..parent.clone()
    }
}

/// A process that changed namespaces and was gone before `/proc` was read, whose parent is
/// gone too: what the kernel reported of it and nothing else. Without a cgroup file, only its
/// own pid namespace can place it in a container; elsewhere it is no one's.
fn reported(change: &NsChange) -> Process {
    Process {
        id: change.process,
        ppid: change.parent.map_or(0, |p| p.pid),
        uid: u32::MAX,
        comm: change.comm.as_str().into(),
        namespaces: change.namespaces,
        cgroup: None,
        thread_namespaces: Vec::new(),
    }
}

/// Hands the scan's freed temporaries (the gathered metric families, the previous snapshot)
/// back to the kernel. glibc keeps freed memory in its arenas, so without this the resident
/// size stays at the peak of the largest scan; a node agent should sit at its working set.
/// See [`tune_malloc`] for why that needs one arena.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // glibc's malloc_trim has no safe wrapper, and nothing else returns the arenas' memory.
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Sets glibc's allocator up for a process whose memory comes and goes with each scan; call
/// it before any thread starts.
///
/// - One arena for every thread: the scan thread would otherwise get an arena of its own, and
///   `malloc_trim` leaves the free top of such an arena alone (only free() releases it, past a
///   threshold that grows with the largest buffer freed): at 5,000 processes in 30,000
///   namespaces every second or third scan left 11 MiB resident that the trim did not return.
///   The scan loop and the HTTP thread allocate little at once, so they hardly contend.
/// - Blocks of 64 KiB and more mapped on their own (`M_MMAP_THRESHOLD`, which glibc otherwise
///   raises to the largest block freed, up to 32 MiB): the snapshot's tables and the process
///   list then go back to the kernel when freed, rather
///   than leave holes in the heap that count as resident until the trim. At 10,000 processes
///   the peak fell from 23.5-25.8 MiB to 20.1, for a few hundred page faults a scan.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // mallopt has no safe wrapper.
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets the allocator's own parameters; called before any other
    // thread exists, it races with no allocation.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inode;

    /// A child that entered the host's net and exited unread is in the namespaces the kernel
    /// reported for it, its own pid namespace among them (which attribution places it by),
    /// and its parent's where the report has none.
    #[test]
    fn a_process_gone_unread_is_in_the_namespaces_the_kernel_reported() {
        let parent = Process {
            cgroup: Some(Arc::from(&b"0::/kubepods/pod1/abc\n"[..])),
            uid: 1000,
            ..Process::fixture(40, PerType::splat(inode(7)))
        };
        let mut namespaces = PerType::splat(None);
        namespaces[NsType::Net] = inode(4026531840);
        namespaces[NsType::Pid] = inode(4026532000);
        let mut changed = PerType::splat(false);
        changed[NsType::Net] = true;
        let child = ProcessId {
            pid: 41,
            start_ticks: 90,
        };
        let change = NsChange {
            process: child,
            tid: 41,
            parent: Some(parent.id),
            syscall: crate::model::ChangeSyscall::Setns,
            changed,
            namespaces,
            comm: "nsenter".into(),
        };
        let born = born_of(&change, &parent);
        assert_eq!((born.id, born.ppid, &*born.comm), (child, 40, "nsenter"));
        assert_eq!(born.cgroup, parent.cgroup, "born in its parent's cgroup");
        assert_eq!(born.uid, 1000);
        let mut want = parent.namespaces;
        want[NsType::Net] = inode(4026531840);
        want[NsType::Pid] = inode(4026532000);
        assert_eq!(born.namespaces, want);
        assert!(born.thread_namespaces.is_empty());
    }

    /// The loop driven by [`next_step`] on a simulated clock: `cost` is what each step takes,
    /// `events_per_ms` how many pids arrive each millisecond. Returns when each scan and each
    /// sweep began, in ms.
    fn simulate(
        until_ms: u64,
        interval: u64,
        sweep: u64,
        events_per_ms: usize,
        cost: impl Fn(Step) -> u64,
    ) -> (Vec<u64>, Vec<u64>) {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let (mut scans, mut sweeps) = (Vec::new(), Vec::new());
        let (mut now, mut next_scan, mut next_sweep, mut queued) = (0u64, 0u64, 0u64, 0usize);
        while now < until_ms {
            let step = next_step(at(now), at(next_scan), Some(at(next_sweep)), queued > 0);
            let took = match step {
                Step::Scan => {
                    scans.push(now);
                    let took = cost(step);
                    next_scan = (next_scan + interval).max(now + took + 1);
                    next_sweep = now + took + sweep;
                    took
                }
                Step::Sweep => {
                    sweeps.push(now);
                    let took = cost(step);
                    next_sweep = after(at(next_sweep), Duration::from_millis(sweep), at(now + took))
                        .duration_since(t0)
                        .as_millis() as u64;
                    took
                }
                Step::Events => {
                    queued -= queued.min(EVENT_BATCH);
                    cost(step)
                }
                Step::Wait(d) => (d.as_millis() as u64).max(1),
            };
            now += took;
            queued = (queued + events_per_ms * took as usize).min(crate::events::QUEUE);
        }
        (scans, sweeps)
    }

    #[test]
    fn what_is_due_comes_before_events() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let table = [
            // now, scan, sweep, events waiting: step
            (0, 0, Some(0), true, Step::Scan),
            (5, 10, Some(5), true, Step::Sweep),
            (5, 5, Some(5), false, Step::Scan),
            (5, 10, Some(8), true, Step::Events),
            (5, 10, Some(8), false, Step::Wait(Duration::from_millis(3))),
            (5, 10, None, false, Step::Wait(Duration::from_millis(5))),
            (5, 10, None, true, Step::Events),
            (12, 10, None, true, Step::Scan),
        ];
        for (now, scan, sweep, events, want) in table {
            assert_eq!(
                next_step(ms(now), ms(scan), sweep.map(ms), events),
                want,
                "now {now} scan {scan} sweep {sweep:?} events {events}"
            );
        }
    }

    /// A steady stream of events (a batch takes 20 ms and another is always waiting) does not
    /// hold off the sweeps: each starts within one batch of when it is due.
    #[test]
    fn sweeps_stay_on_time_under_a_steady_event_stream() {
        let cost = |s: Step| match s {
            Step::Scan => 100,
            Step::Sweep => 5,
            Step::Events => 20,
            Step::Wait(_) => 0,
        };
        let (scans, sweeps) = simulate(60_000, 15_000, 1_000, 500, cost);
        assert_eq!(scans.len(), 4, "{scans:?}");
        assert!(sweeps.len() >= 55, "{} sweeps in 60 s", sweeps.len());
        // Between two scans, sweeps a second apart, give or take one batch; a scan restarts
        // their clock.
        for pair in sweeps.windows(2) {
            let gap = pair[1] - pair[0];
            let scanned = scans.iter().any(|s| (pair[0]..pair[1]).contains(s));
            let most = if scanned {
                1_000 + 1_000 + 100
            } else {
                1_000 + 20
            };
            assert!(gap <= most, "sweeps {gap} ms apart: {pair:?}");
        }
    }

    /// A flood (the queue always full, each batch 50 ms) does not hold off the scans.
    #[test]
    fn scans_stay_on_time_under_a_flood() {
        let cost = |s: Step| match s {
            Step::Scan => 400,
            Step::Sweep => 30,
            Step::Events => 50,
            Step::Wait(_) => 0,
        };
        let (scans, _) = simulate(120_000, 15_000, 1_000, 100_000, cost);
        assert_eq!(scans.len(), 8, "{scans:?}");
        for (i, at) in scans.iter().enumerate() {
            let due = i as u64 * 15_000;
            assert!(*at <= due + 50 + 30, "scan {i} due at {due} began at {at}");
        }
    }

    #[test]
    fn overrun_ticks_are_skipped() {
        let t = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(after(t, s, t), t + s);
        assert_eq!(after(t, s, t + Duration::from_millis(3500)), t + 4 * s);
    }
}
