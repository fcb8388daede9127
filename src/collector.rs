//! The scan loop: scan → lifecycle → attribution → sharing → metrics → one encoded exposition,
//! every interval.
//!
//! It runs on its own thread so that a slow scan never delays a scrape: the HTTP side only ever
//! reads the last encoded [`Exposition`] from a watch channel, and the loop's [`Health`].
//! A failed scan is published too: `nsexporter_scan_success 0` and the failure counted by
//! reason, beside the last good scan's namespaces and findings, which are kept rather than
//! dropped so that a failing scan never resolves a security alert by itself.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::attribution::{NameErrorReason, NameSource, NameSources, Names, attribute};
use crate::health::{Health, StopGuard};
use crate::lifecycle::Tracker;
use crate::metrics::{Exposition, Metrics, NameSourceErrors, ScanRecord};
use crate::model::{CgroupLayout, NsType, Snapshot};
use crate::policy::{Policy, Rule};
use crate::scan::{ErrorReason, FailureReason, ScanFailure, Scanner};
use crate::sharing::{FindingLog, evaluate};

/// `--namespace.orphan-age`'s default.
pub const DEFAULT_ORPHAN_AGE: Duration = Duration::from_secs(600);

/// Owns the state that lives across scans.
pub struct Collector {
    scanner: Scanner,
    tracker: Tracker,
    metrics: Metrics,
    layout: CgroupLayout,
    /// The policy in force: as configured, resolved for the cgroup layout.
    policy: Policy,
    /// Where container names come from, with their last reads.
    names: NameSources,
    /// Reasons already logged at warn level; later scans log them at debug, so a standing
    /// problem (a protected init, a missing capability) is said once, not every interval.
    warned: [bool; ErrorReason::ALL.len()],
    /// The same for whole-scan failures: said once until a scan succeeds again.
    failing: Option<FailureReason>,
    /// Container ids whose conflicting kubelet log names were already logged.
    name_conflicts: HashSet<String>,
    /// Name source failures, counted; and which were logged at warn already, as `warned`.
    name_errors: NameSourceErrors,
    name_warned: [[bool; NameErrorReason::ALL.len()]; NameSource::ALL.len()],
    /// The findings of the last scan: each new one is counted and logged once.
    findings: FindingLog,
    /// Processes the sweeps read since the last scan: pid, start ticks, reads.
    swept: HashMap<i32, (u64, u8)>,
    /// Pids from the proc connector, where it listens.
    events: Option<Receiver<i32>>,
    /// How long a namespace must be held without a process to be an orphan.
    orphan_age: Duration,
}

impl Collector {
    /// A collector of `procfs`. The host's cgroup layout is read once, here: it cannot change
    /// without a reboot.
    pub fn new(scanner: Scanner, mut metrics: Metrics, policy: Policy, names: NameSources) -> Self {
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
        metrics.set_cgroup_layout(layout);
        let name_errors = metrics.name_source_errors();
        Collector {
            scanner,
            tracker: Tracker::new(),
            metrics,
            layout,
            policy,
            names,
            warned: [false; ErrorReason::ALL.len()],
            failing: None,
            name_conflicts: HashSet::new(),
            name_errors,
            name_warned: Default::default(),
            findings: FindingLog::new(),
            swept: HashMap::new(),
            events: None,
            orphan_age: DEFAULT_ORPHAN_AGE,
        }
    }

    /// How long a namespace must have had no member process, held by a bind mount or an fd
    /// only, to count as orphaned (`--namespace.orphan-age`).
    pub fn with_orphan_age(mut self, age: Duration) -> Self {
        self.orphan_age = age;
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
                self.metrics.record_failure(reason);
                if self.failing.replace(reason) == Some(reason) {
                    tracing::debug!(reason = reason.as_str(), error = %e, "scan failed");
                } else {
                    tracing::error!(
                        reason = reason.as_str(),
                        error = %e,
                        "scan failed (said once until a scan succeeds; counted in nsexporter_scan_failures_total)"
                    );
                }
                return (self.metrics.encode(), Err(e));
            }
        };
        if let Some(reason) = self.failing.take() {
            tracing::info!(after = reason.as_str(), "scans succeed again");
        }
        let snapshot = Arc::new(outcome.snapshot);
        let changes = self.tracker.update(Arc::clone(&snapshot));
        let names = self.names();
        let attribution = attribute(&snapshot, &names);
        let sharing = evaluate(&snapshot, &attribution, &self.policy);
        let new_findings = self.findings.update(&sharing.findings);
        let orphans = self.tracker.orphans(self.orphan_age);
        let duration = started.elapsed();
        let tracker = &self.tracker;
        self.metrics.record_scan(&ScanRecord {
            snapshot: &snapshot,
            start_ticks: &|id| tracker.start_ticks(id),
            changes: &changes,
            errors: &outcome.errors,
            id_queries: outcome.id_queries,
            sharing: &sharing,
            new_findings: &new_findings,
            orphans: &orphans,
            fds_skipped: outcome.fds_skipped,
            sockets_skipped: outcome.sockets_skipped,
            socket_queries: outcome.socket_queries,
            duration,
        });
        for reason in ErrorReason::ALL {
            let (count, Some(first)) = (outcome.errors.count(reason), outcome.errors.first(reason))
            else {
                continue;
            };
            if std::mem::replace(&mut self.warned[reason.index()], true) {
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
        (self.metrics.encode(), Ok(()))
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
            let reason = e.reason();
            self.name_errors.count(*source, reason);
            let warned = &mut self.name_warned[source.index()][reason.index()];
            if std::mem::replace(warned, true) {
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
        refresh.names
    }

    /// Scans every `interval` until `stop` is signalled or dropped, publishing each result and
    /// stamping `health`. Ticks that a slow scan overran are skipped, not queued. A policy sent
    /// on `policies` (SIGHUP) applies from the next scan.
    ///
    /// Between two scans, every `sweep` (none where it is zero or not shorter than the
    /// interval), a sweep reads the processes that started since and publishes at once what
    /// the host rules find in them.
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
        self.metrics.between_scans(sweeping, self.events.is_some());
        let mut next = Instant::now();
        loop {
            while let Ok(policy) = policies.try_recv() {
                self.set_policy(policy);
            }
            health.scan_started();
            let (exposition, result) = self.run_once();
            publish.send_replace(Some(Arc::new(exposition)));
            health.scan_finished(result.map_err(|e| e.to_string()));
            self.swept.clear();
            release_free_memory();
            let now = Instant::now();
            next += interval;
            while next <= now {
                next += interval;
            }
            let mut next_sweep = now + sweep;
            loop {
                let now = Instant::now();
                // A flood of process events must not hold off the next scan.
                if now >= next {
                    break;
                }
                let wake = if sweeping { next.min(next_sweep) } else { next };
                let timeout = wake.saturating_duration_since(now);
                match &self.events {
                    // Woken by an event, or at the next sweep or scan; a stop is seen within
                    // a second.
                    Some(events) => {
                        let first = events.recv_timeout(timeout.min(Duration::from_secs(1)));
                        let pids: Vec<i32> = match first {
                            Ok(pid) => std::iter::once(pid)
                                .chain(events.try_iter().take(4096))
                                .collect(),
                            Err(_) => Vec::new(),
                        };
                        if matches!(first, Err(RecvTimeoutError::Disconnected)) {
                            // The listener stopped (it said why); the sweeps go on.
                            self.events = None;
                        }
                        if !matches!(stop.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)) {
                            return;
                        }
                        if !pids.is_empty() {
                            if let Some(exposition) = self.judge_pids(&pids) {
                                publish.send_replace(Some(Arc::new(exposition)));
                            }
                            continue;
                        }
                    }
                    None => match stop.recv_timeout(timeout) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    },
                }
                if Instant::now() >= next {
                    break;
                }
                if Instant::now() < next_sweep || !sweeping {
                    continue;
                }
                if let Some(exposition) = self.sweep_once() {
                    publish.send_replace(Some(Arc::new(exposition)));
                }
                next_sweep += sweep;
                while next_sweep <= Instant::now() {
                    next_sweep += sweep;
                }
            }
        }
    }

    /// One sweep: the processes new since the last scan, judged by the host rules against the
    /// last scan's host namespaces. Returns the exposition to publish when it found something
    /// new; `None` when it found nothing new (or could not run: the next scan says why).
    fn sweep_once(&mut self) -> Option<Exposition> {
        let known = Arc::clone(self.tracker.previous_arc()?);
        let sweep = match self.scanner.sweep(&known, &mut self.swept) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "sweep failed");
                return None;
            }
        };
        tracing::trace!(listed = sweep.listed, read = sweep.processes.len(), "sweep");
        let (read, new) = self.judge(sweep.processes, &known);
        self.metrics.record_sweep(read, &new);
        (!new.is_empty()).then(|| self.metrics.encode())
    }

    /// Reads the processes the kernel said forked or exec'd and judges them as a sweep does.
    fn judge_pids(&mut self, pids: &[i32]) -> Option<Exposition> {
        let known = Arc::clone(self.tracker.previous_arc()?);
        let mut pids = pids.to_vec();
        pids.sort_unstable();
        pids.dedup();
        let processes = self.scanner.read_pids(&pids, &known);
        let (read, new) = self.judge(processes, &known);
        self.metrics.record_events(pids.len(), read, &new);
        (!new.is_empty()).then(|| self.metrics.encode())
    }

    /// Judges processes read between scans by the host rules, against the host namespaces of
    /// `known`, and logs each new finding: how many it read, and the new findings to count.
    fn judge(
        &mut self,
        processes: Vec<crate::model::Process>,
        known: &Snapshot,
    ) -> (usize, Vec<(Rule, NsType)>) {
        let read = processes.len();
        if read == 0 {
            return (0, Vec::new());
        }
        let processes = processes.into_iter().map(|p| (p.id.pid, p)).collect();
        let (time, wall) = self.scanner.now();
        let fresh = Snapshot::from_processes(wall, time, processes, known.host.clone());
        let names = self.names();
        let attribution = attribute(&fresh, &names);
        let sharing = evaluate(&fresh, &attribution, &self.policy);
        let new = self.findings.sweep(&sharing.findings, &fresh, &attribution);
        (read, new)
    }

    /// Judges the processes the kernel reports forking and exec'ing as they come (the proc
    /// connector), besides the sweeps.
    pub fn with_events(mut self, events: Receiver<i32>) -> Self {
        self.events = Some(events);
        self
    }
}

/// Hands the scan's freed temporaries (the gathered metric families, the previous snapshot)
/// back to the kernel. glibc keeps freed memory in its arenas, so without this the resident
/// size stays at the peak of the largest scan; a node agent should sit at its working set.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // glibc's malloc_trim has no safe wrapper, and nothing else returns the arenas' memory.
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
