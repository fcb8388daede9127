//! The scan loop: the scheduler of the pipeline ([`crate::pipeline`]). Every interval a full
//! scan goes through the pipeline's step and one encoded exposition is published; between
//! scans, sweeps and batches of process events are judged as [`next_step`] orders them.
//!
//! It runs on its own thread so that a slow scan never delays a scrape: the HTTP side only ever
//! reads the last encoded [`Exposition`] from a watch channel, and the loop's [`Health`].
//! A failed scan is published too: `nsexporter_scan_success 0` and the failure counted by
//! reason, beside the last good scan's namespaces and findings, which are kept rather than
//! dropped so that a failing scan never resolves a security alert by itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::allocator::release_free_memory;
use crate::attribution::NameSources;
use crate::declared::SpecSources;
use crate::events::{Event, EventStream, TaskEvent, TaskKind};
use crate::health::{Health, StopGuard};
use crate::labels::SaidOnce;
use crate::metrics::{BetweenScans, Exposition, Metrics, Outcome};
use crate::model::CgroupLayout;
use crate::pipeline::{self, Between, Context, ScanResult, Sources, State};
use crate::policy::Policy;
use crate::scan::refresh::{Depth, Dirty, ScanMode, WalkReason};
use crate::scan::{ErrorReason, FailureReason, ScanFailure, ScanOutcome, Scanner};

/// Owns the state that lives across scans, and decides what runs when.
pub struct ScanLoop {
    scanner: Scanner,
    /// What the pipeline's step keeps from one scan to the next.
    state: State,
    metrics: Metrics,
    layout: CgroupLayout,
    /// The policy in force: as configured, resolved for the cgroup layout.
    policy: Policy,
    /// Where container names and specs come from, with their last reads.
    sources: Sources,
    /// What the sweeps and events judge by until the next scan.
    between: Between,
    /// Pids from the proc connector and changes from the eBPF source, where they listen.
    events: Option<EventStream>,
    /// Reasons already logged at warn level; later scans log them at debug, so a standing
    /// problem (a protected init, a missing capability) is said once, not every interval.
    warned: SaidOnce<ErrorReason>,
    /// The same for whole-scan failures: said once until a scan succeeds again.
    failing: Option<FailureReason>,
    /// Whether a failed privilege read was said: later ones at debug.
    privilege_warned: bool,
    /// How long a namespace must have had no member process, held by a bind mount or an fd
    /// only, to count as orphaned (`--namespace.orphan-age`).
    orphan_age: Duration,
    /// The events mode's state, where the snapshot is kept by events.
    kept: Option<Kept>,
    /// Events taken from the queue while a safety-net walk ran that are not task events: judged
    /// with the next batch.
    held_back: Vec<Event>,
    /// In the events mode, what the last step read of each container's privilege.
    privilege_carried: pipeline::privilege::Carried,
    /// The event readers' losses as last recorded.
    losses_recorded: u64,
}

/// How a scan gets its snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    Walk(WalkReason),
    Refresh(Depth),
}

/// How many processes `kept` (the events' snapshot, brought up to the walk) and `walked` (the
/// walk's) disagree on: one in only one of them, or in both with other namespaces, cgroup,
/// parent or owner; `named` (named by events while the walk ran) left out. `comm` is left
/// out: a thread may rename its process through `/proc/PID/comm`, which no probe sees, and no
/// figure depends on it.
fn divergence(
    kept: &crate::model::Snapshot,
    walked: &crate::model::Snapshot,
    named: &HashSet<i32>,
) -> u64 {
    let same = |a: &crate::model::Process, b: &crate::model::Process| {
        a.id == b.id
            && a.ppid == b.ppid
            && a.uid == b.uid
            && a.namespaces == b.namespaces
            && a.cgroup == b.cgroup
    };
    let mut differ = 0;
    for (pid, k) in &kept.processes {
        if named.contains(pid) {
            continue;
        }
        match walked.processes.get(pid) {
            Some(w) if same(k, w) => {}
            _ => differ += 1,
        }
    }
    for pid in walked.processes.keys() {
        if !named.contains(pid) && !kept.processes.contains_key(pid) {
            differ += 1;
        }
    }
    differ
}

/// What the events mode keeps between two steps: what the task events changed since the last
/// snapshot, and when a walk is due.
#[derive(Debug)]
struct Kept {
    dirty: Dirty,
    /// When the oldest change not yet applied arrived.
    since: Option<Instant>,
    /// Task events applied since the last step, by kind, for their counter.
    events: [u64; TaskKind::ALL.len()],
    /// The losses seen so far: more means a resync.
    lost_seen: u64,
    /// A loss was seen and no walk has run since.
    resync: bool,
    last_walk: Instant,
    last_step: Instant,
    /// `--scan.safety-net-interval`.
    safety_net: Duration,
}

/// How soon after a change the events mode applies it, and how far apart two such steps are
/// at least: a burst is applied at once, a stream twice a second.
const APPLY_AFTER: Duration = Duration::from_millis(50);
const APPLY_GAP: Duration = Duration::from_millis(500);
/// How far apart two resync walks are at least, while losses go on.
const RESYNC_GAP: Duration = Duration::from_secs(1);

impl Kept {
    fn new(safety_net: Duration) -> Self {
        let now = Instant::now();
        Kept {
            dirty: Dirty::default(),
            since: None,
            events: [0; TaskKind::ALL.len()],
            lost_seen: 0,
            resync: false,
            last_walk: now,
            last_step: now,
            safety_net,
        }
    }

    /// Takes a task event into what the next step applies.
    fn take(&mut self, event: &TaskEvent) {
        self.events[event.kind.index()] += 1;
        match event.kind {
            TaskKind::Exit => {
                self.dirty.gone.insert(event.process);
                self.dirty.read.remove(&event.process.pid);
            }
            TaskKind::Fork | TaskKind::Exec | TaskKind::Touched => {
                self.dirty.read.insert(event.process.pid);
            }
        }
        self.since.get_or_insert_with(Instant::now);
    }

    /// When the pending changes are due to be applied, if any are pending.
    fn apply_at(&self) -> Option<Instant> {
        let since = self.since?;
        Some((since + APPLY_AFTER).max(self.last_step + APPLY_GAP))
    }

    /// Whether the safety net's walk is due.
    fn walk_due(&self, now: Instant) -> Option<WalkReason> {
        (now.duration_since(self.last_walk) >= self.safety_net).then_some(WalkReason::SafetyNet)
    }
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
            state: State::new(),
            metrics,
            layout,
            policy,
            sources: Sources::new(names),
            between: Between::default(),
            events: None,
            warned: SaidOnce::default(),
            failing: None,
            privilege_warned: false,
            orphan_age,
            kept: None,
            held_back: Vec::new(),
            privilege_carried: pipeline::privilege::Carried::default(),
            losses_recorded: 0,
        }
    }

    /// Keeps the snapshot by the eBPF source's task events between walks, where the events
    /// given to [`Self::with_events`] have them; walks every `safety_net` and after a loss.
    pub fn keep_by_events(mut self, safety_net: Duration) -> Self {
        if let Some(events) = self.events.as_mut().filter(|e| e.ebpf_tasks) {
            self.kept = Some(Kept::new(safety_net));
            self.scanner.watch_mounts(events.mount_generations.take());
        }
        self
    }

    /// How the snapshot is kept.
    pub fn mode(&self) -> ScanMode {
        if self.kept.is_some() {
            ScanMode::Events
        } else {
            ScanMode::Polling
        }
    }

    /// Reads each container's OCI spec from `specs` and judges what it declared against
    /// what its processes are in.
    pub fn with_specs(mut self, specs: SpecSources) -> Self {
        self.sources = self.sources.with_specs(specs);
        self
    }

    /// Judges the processes the kernel reports forking and exec'ing as they come (the proc
    /// connector), besides the sweeps.
    pub fn with_events(mut self, events: EventStream) -> Self {
        self.events = Some(events);
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

    /// Scans once, walking `/proc`, takes the snapshot through the pipeline's step, and
    /// encodes the result; a failed scan is recorded and encoded too.
    pub fn run_once(&mut self) -> (Exposition, Result<(), ScanFailure>) {
        let reason = match self.state.tracker.previous() {
            None => WalkReason::Start,
            Some(_) => WalkReason::Interval,
        };
        self.step_once(How::Walk(reason))
            .unwrap_or_else(|| (self.metrics.exposition(), Ok(())))
    }

    /// Scans once as `how` says, takes the snapshot through the pipeline's step, and encodes
    /// the result; a failed scan is recorded and encoded too.
    /// `None` where events changed nothing the snapshot holds: nothing new to publish (their
    /// counters go out with the next exposition).
    fn step_once(&mut self, how: How) -> Option<(Exposition, Result<(), ScanFailure>)> {
        let started = Instant::now();
        let (outcome, divergence) = self.next_snapshot(how);
        if divergence > 0 {
            tracing::warn!(
                processes = divergence,
                "the safety-net walk found processes the events had missed (counted in nsexporter_ebpf_divergence_total)"
            );
        }
        let events = self
            .kept
            .as_mut()
            .map_or([0; TaskKind::ALL.len()], |k| std::mem::take(&mut k.events));
        let walk = match how {
            How::Walk(reason) => {
                if let Some(k) = self.kept.as_mut() {
                    k.last_walk = Instant::now();
                    k.resync = false;
                }
                Some(reason)
            }
            How::Refresh(_) => None,
        };
        self.metrics.record(Outcome::Kept {
            events,
            walk,
            divergence,
        });
        let outcome = match outcome {
            Ok(Some(o)) => o,
            // Nothing changed: only what the readers lost goes out, where it grew.
            Ok(None) => {
                return self
                    .reader_losses()
                    .then(|| (self.metrics.exposition(), Ok(())));
            }
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
                return Some((self.metrics.exposition(), Err(e)));
            }
        };
        if let Some(k) = self.kept.as_mut() {
            k.last_step = Instant::now();
        }
        self.reader_losses();
        if let Some(reason) = self.failing.take() {
            tracing::info!(after = reason.as_str(), "scans succeed again");
        }
        let names = self.sources.names(&mut self.metrics);
        let mut scan = pipeline::attribute(&mut self.state, outcome, &names);
        drop(names);
        if self
            .sources
            .refresh_specs(&scan.snapshot, &scan.attribution, &mut self.metrics)
        {
            // A new container's names came from its spec: attributed again with them.
            let names = self.sources.names(&mut self.metrics);
            scan.again(&mut self.state, &names);
        }
        // A step between intervals takes over what was read of containers it did not change.
        let carry = (how == How::Refresh(Depth::Shallow)).then_some(&self.privilege_carried);
        let privilege = pipeline::privilege::read_privileges_carrying(
            self.scanner.procfs(),
            &scan.snapshot,
            &scan.attribution,
            carry,
        );
        if let Some(e) = &privilege.first_error
            && !std::mem::replace(&mut self.privilege_warned, true)
        {
            tracing::warn!(error = %e, "container privilege unread (said once; counted in nsexporter_container_privilege_read_errors_total)");
        }
        scan.privilege = Some(privilege);
        let mut result = pipeline::step(
            &mut self.state,
            scan,
            self.sources.spec_view(),
            &self.policy,
            self.orphan_age,
        );
        if self.kept.is_some() {
            self.privilege_carried = pipeline::privilege::Carried::new(
                &result.privilege,
                &result.snapshot,
                &result.attribution,
            );
        }
        self.between.scanned(&mut result, &self.policy);
        let duration = started.elapsed();
        self.metrics
            .record(Outcome::Scan(result.record(&self.state.tracker, duration)));
        log_scan(&mut self.warned, &result, duration);
        // The scan's temporaries go, and their memory back to the kernel, before the encode
        // samples `process_resident_memory_bytes`: it then reports the resident size the
        // exporter keeps between scans, not the scan's peak. Encoding after they are gone
        // also keeps the text off that peak.
        drop(result);
        release_free_memory();
        Some((self.metrics.exposition(), Ok(())))
    }

    /// What the between-scans judge borrows for one sweep or batch.
    fn context(&mut self) -> (&mut Between, Context<'_>) {
        (
            &mut self.between,
            Context {
                scanner: &mut self.scanner,
                state: &mut self.state,
                sources: &mut self.sources,
                metrics: &mut self.metrics,
                policy: &self.policy,
                events: self.events.as_ref(),
            },
        )
    }

    /// One sweep (see [`Between::sweep_once`]).
    fn sweep_once(&mut self) -> Option<Exposition> {
        let (between, mut cx) = self.context();
        between.sweep_once(&mut cx)
    }

    /// One batch of process events (see [`Between::judge_events`]).
    fn judge_events(&mut self, batch: Vec<Event>) -> Option<Exposition> {
        let (between, mut cx) = self.context();
        between.judge_events(&mut cx, batch)
    }
}

/// The events mode: the snapshot kept by the task events between walks.
impl ScanLoop {
    /// The next snapshot as `how` says: walked, or kept by events.
    /// `None` where events changed nothing the snapshot holds.
    fn next_snapshot(&mut self, how: How) -> (Result<Option<ScanOutcome>, ScanFailure>, u64) {
        let previous = self.state.tracker.previous_arc().cloned();
        let kept = self.kept.as_mut();
        match (how, previous, kept) {
            (How::Refresh(depth), Some(previous), Some(kept)) => {
                let dirty = std::mem::take(&mut kept.dirty);
                kept.since = None;
                let failed = self.state.failed();
                (self.scanner.refresh(&previous, &dirty, failed, depth), 0)
            }
            (How::Walk(WalkReason::SafetyNet), Some(previous), Some(kept)) => {
                // What the events kept, brought up to now, against a walk: a process that
                // the events named while the walk ran is left out of the comparison.
                let dirty = std::mem::take(&mut kept.dirty);
                kept.since = None;
                let failed = self.state.failed();
                let kept_now = self
                    .scanner
                    .refresh(&previous, &dirty, failed, Depth::Shallow);
                let walked = self.scanner.scan(Some(&previous));
                let named = self.drain_task_events();
                let divergence = match (&kept_now, &walked) {
                    (Ok(Some(k)), Ok(w)) => divergence(&k.snapshot, &w.snapshot, &named),
                    (Ok(None), Ok(w)) => divergence(&previous, &w.snapshot, &named),
                    _ => 0,
                };
                (walked.map(Some), divergence)
            }
            (how, previous, _) => {
                if let Some(kept) = self.kept.as_mut() {
                    // A walk reads every process: what was pending is in it.
                    kept.dirty = Dirty::default();
                    kept.since = None;
                }
                let _ = how;
                (self.scanner.scan(previous.as_deref()).map(Some), 0)
            }
        }
    }

    /// Records what the event readers lost so far (their own threads count it); whether it
    /// grew since the last record.
    fn reader_losses(&mut self) -> bool {
        let Some(events) = &self.events else {
            return false;
        };
        let now = events.ebpf_lost.as_deref().map_or(0, |l| l.total())
            + events.proc_drops.as_deref().map_or(0, |d| d.total());
        self.metrics.record(Outcome::ReaderLosses {
            proc_events: events.proc_drops.as_deref(),
            ebpf: events.ebpf_lost.as_deref(),
        });
        std::mem::replace(&mut self.losses_recorded, now) != now
    }

    /// Takes the task events waiting in the queue into the pending changes, and returns the
    /// pids they name; the other events wait for the next batch.
    fn drain_task_events(&mut self) -> HashSet<i32> {
        let mut named = HashSet::new();
        let (Some(events), Some(kept)) = (&self.events, self.kept.as_mut()) else {
            return named;
        };
        let mut others = Vec::new();
        for event in events.events.try_iter().take(crate::events::QUEUE) {
            match &event {
                Event::Task(task) => {
                    named.insert(task.process.pid);
                    kept.take(task);
                }
                Event::Change(change) => {
                    named.insert(change.process.pid);
                    kept.dirty.read.insert(change.process.pid);
                    others.push(event);
                }
                Event::Process(pid) => {
                    named.insert(*pid);
                    others.push(event);
                }
            }
        }
        self.held_back.extend(others);
        named
    }

    /// Whether a resync walk is due: the eBPF source lost events since the last look, and the
    /// last walk is at least [`RESYNC_GAP`] ago. Looks at the losses' counters.
    fn resync_due(&mut self, now: Instant) -> bool {
        let (Some(kept), Some(events)) = (self.kept.as_mut(), &self.events) else {
            return false;
        };
        let lost = events.ebpf_lost.as_ref().map_or(0, |l| {
            crate::events::LostReason::ALL
                .into_iter()
                .map(|r| l.count(r))
                .sum()
        });
        if lost > kept.lost_seen {
            if !kept.resync {
                tracing::debug!(lost = lost - kept.lost_seen, "events lost: a walk resyncs");
            }
            kept.lost_seen = lost;
            kept.resync = true;
        }
        kept.resync && now >= kept.last_walk + RESYNC_GAP
    }

    /// In the events mode, takes the batch's task events (and the processes that namespace
    /// changes name) into the kept snapshot's pending changes; returns the events the
    /// between-scans judge still judges.
    fn keep_tasks(&mut self, batch: Vec<Event>) -> Vec<Event> {
        let Some(kept) = self.kept.as_mut() else {
            return batch;
        };
        batch
            .into_iter()
            .filter(|event| match event {
                Event::Task(task) => {
                    kept.take(task);
                    false
                }
                Event::Change(change) => {
                    kept.dirty.read.insert(change.process.pid);
                    kept.since.get_or_insert_with(Instant::now);
                    true
                }
                Event::Process(_) => true,
            })
            .collect()
    }
}

/// The scheduler: what runs when, around the steps above.
impl ScanLoop {
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
        let mode = self.mode();
        let sweeping = !sweep.is_zero() && sweep < interval && mode == ScanMode::Polling;
        if mode == ScanMode::Polling && !sweep.is_zero() && sweep >= interval {
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
            mode,
        });
        let start = Instant::now();
        let mut next_scan = start;
        let mut next_sweep = start;
        let mut pending: Vec<Event> = Vec::new();
        let stopped = || !matches!(stop.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty));
        let publish_step = |this: &mut Self, how: How| {
            health.scan_started();
            let Some((exposition, result)) = this.step_once(how) else {
                health.scan_finished(Ok(()));
                return;
            };
            publish.send_replace(Some(Arc::new(exposition)));
            health.scan_finished(result.map_err(|e| e.to_string()));
            this.between.reset();
            release_free_memory();
        };
        loop {
            if stopped() {
                return;
            }
            pending.append(&mut self.held_back);
            let now = Instant::now();
            if self.resync_due(now) {
                publish_step(&mut self, How::Walk(WalkReason::Resync));
                continue;
            }
            // The safety net keeps its own time, whatever the scan interval.
            if self
                .kept
                .as_ref()
                .is_some_and(|k| k.walk_due(now).is_some())
            {
                publish_step(&mut self, How::Walk(WalkReason::SafetyNet));
                continue;
            }
            let sweep_at = match &self.kept {
                Some(kept) => kept.apply_at(),
                None => sweeping.then_some(next_sweep),
            };
            match next_step(now, next_scan, sweep_at, !pending.is_empty()) {
                Step::Scan => {
                    while let Ok(policy) = policies.try_recv() {
                        self.set_policy(policy);
                    }
                    let how = match (&self.kept, self.state.tracker.previous()) {
                        (_, None) => How::Walk(WalkReason::Start),
                        (Some(_), Some(_)) => How::Refresh(Depth::Deep),
                        (None, Some(_)) => How::Walk(WalkReason::Interval),
                    };
                    publish_step(&mut self, how);
                    let now = Instant::now();
                    next_scan = after(next_scan, interval, now);
                    next_sweep = now + sweep;
                }
                Step::Sweep if self.kept.is_some() => {
                    publish_step(&mut self, How::Refresh(Depth::Shallow));
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
                    let batch = self.keep_tasks(batch);
                    if !batch.is_empty()
                        && let Some(exposition) = self.judge_events(batch)
                    {
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
                            // The listener stopped (it said why); the sweeps go on, and
                            // without events every scan walks again.
                            Err(RecvTimeoutError::Disconnected) => {
                                self.events = None;
                                if self.kept.take().is_some() {
                                    tracing::warn!(
                                        "the eBPF source stopped: every scan walks /proc again"
                                    );
                                }
                            }
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
}

/// Logs the scan's errors, each reason at warn the first time and at debug after, and one
/// info line with its counts. `warned`: the reasons said at warn already.
fn log_scan(warned: &mut SaidOnce<ErrorReason>, result: &ScanResult, duration: Duration) {
    let errors = &result.counts.errors;
    for reason in ErrorReason::ALL {
        let (count, Some(first)) = (errors.count(reason), errors.first(reason)) else {
            continue;
        };
        if !warned.first(reason) {
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
        processes = result.snapshot.processes.len(),
        namespaces = result.snapshot.namespaces.len(),
        created = result.changes.created.len(),
        destroyed = result.changes.destroyed.len(),
        errors = errors.total(),
        findings = result.sharing.findings.len(),
        vanished = result.counts.vanished,
        id_queries = result.counts.id_queries,
        duration_ms = duration.as_secs_f64() * 1000.0,
        "scan"
    );
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A scan loop over the fixture procfs copied to `root`, without name or spec sources.
    fn fixture_loop(root: &std::path::Path) -> ScanLoop {
        use crate::procfs::ProcFs;
        use crate::scan::{PinScan, ThreadScan};
        let scanner = Scanner::new(
            ProcFs::new(root),
            ThreadScan::None,
            PinScan {
                mounts: true,
                fds: Some(Duration::from_secs(60)),
            },
        );
        let metrics = Metrics::new(
            ProcFs::new(root),
            Duration::from_secs(15),
            crate::metrics::PerNamespace::All,
            0,
        );
        ScanLoop::new(
            scanner,
            metrics,
            Policy::default(),
            Duration::from_secs(60),
            NameSources::new(),
        )
    }

    /// The exposition without what tells the two modes or two moments apart: how long the
    /// scan took and when, the exporter's own process, and the mode's own counters.
    fn facts(exposition: &Exposition) -> String {
        let text = String::from_utf8(exposition.text()).expect("utf-8");
        text.lines()
            .filter(|l| {
                ![
                    "nsexporter_scan_duration",
                    "nsexporter_last_scan",
                    "process_",
                    "nsexporter_proc_walks_total",
                    "nsexporter_ebpf_events_total",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            })
            // A start time is boot time plus ticks: boot time in wall-clock terms is taken
            // anew each scan, to the microsecond.
            .map(|l| match l.split_once("} ") {
                Some((series, _)) if l.starts_with("nsexporter_namespace_start_time_seconds") => {
                    series
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(to)
            .status()
            .expect("cp");
        assert!(status.success());
    }

    /// The safety net counts each process the events kept otherwise than the walk found it,
    /// once, and leaves out what events named while it walked.
    #[test]
    fn divergence_counts_what_the_events_missed() {
        use crate::model::{Inode, PerType, Process, Snapshot};
        let ns = |net: u32| {
            let mut n = PerType::splat(None);
            n[crate::model::NsType::Net] = Inode::new(net);
            n
        };
        let snapshot = |processes: Vec<Process>| {
            Snapshot::from_processes(
                std::time::SystemTime::UNIX_EPOCH,
                crate::model::ScanTime::fixture(100),
                processes.into_iter().map(|p| (p.id.pid, p)).collect(),
                crate::model::HostNamespaces::none(),
            )
        };
        let kept = snapshot(vec![
            Process::fixture(10, ns(1)),
            Process::fixture(11, ns(1)),
            Process::fixture(12, ns(1)),
            Process::fixture(13, ns(1)),
        ]);
        let walked = snapshot(vec![
            Process::fixture(10, ns(1)),
            // Moved without an event: missed.
            Process::fixture(11, ns(2)),
            // 12 gone without an exit event; 14 new without a fork event.
            Process::fixture(14, ns(1)),
            Process {
                ppid: 7,
                ..Process::fixture(13, ns(1))
            },
        ]);
        let none = HashSet::new();
        assert_eq!(divergence(&kept, &walked, &none), 4);
        assert_eq!(divergence(&kept, &kept, &none), 0);
        let named: HashSet<i32> = [11, 12, 13, 14].into();
        assert_eq!(divergence(&kept, &walked, &named), 0);
    }

    /// The same facts give the same exposition whether the snapshot was walked or kept by
    /// events: a fork (102, a new uts namespace), an exit (101) and an exec (100 renamed),
    /// beside the fixture's unreadable processes, whose failures stand.
    #[test]
    fn a_snapshot_kept_by_events_is_the_walks() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc");
        let (walked, kept) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        copy_tree(&fixture, walked.path());
        copy_tree(&fixture, kept.path());
        let mut polling = fixture_loop(walked.path());
        let mut events = fixture_loop(kept.path());
        events.kept = Some(Kept::new(Duration::from_secs(600)));
        assert_eq!(events.mode(), ScanMode::Events);
        polling.run_once().1.expect("first walk");
        events
            .step_once(How::Walk(WalkReason::Start))
            .expect("a walk")
            .1
            .expect("first walk");
        let before = events.state.tracker.previous().unwrap().clone();
        let id = |pid: i32| before.processes[&pid].id;
        // An event that changed nothing the snapshot holds (a process read again as it was,
        // one gone before it was read) takes no step: no scan is counted.
        let scans = |e: &Exposition| {
            let text = String::from_utf8(e.text()).unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("nsexporter_scans_total ").map(str::to_owned))
                .expect("the scans' counter")
        };
        let walked_once = Arc::clone(events.state.tracker.previous_arc().unwrap());
        let k = events.kept.as_mut().unwrap();
        k.take(&TaskEvent {
            kind: TaskKind::Touched,
            process: id(50),
            parent: None,
            cgroup_id: 0,
            namespaces: crate::model::PerType::splat(None),
        });
        assert!(events.step_once(How::Refresh(Depth::Shallow)).is_none());
        assert_eq!(scans(&events.metrics.exposition()), "1");
        assert!(Arc::ptr_eq(
            &walked_once,
            events.state.tracker.previous_arc().unwrap()
        ));
        for root in [walked.path(), kept.path()] {
            std::fs::remove_dir_all(root.join("101")).unwrap();
            copy_tree(&root.join("100"), &root.join("102"));
            let stat = std::fs::read_to_string(fixture.join("101/stat")).unwrap();
            std::fs::write(
                root.join("102/stat"),
                stat.replacen("101 (worker 1)", "102 (worker 2)", 1)
                    .replacen(" 10500 ", " 10900 ", 1),
            )
            .unwrap();
            std::fs::remove_file(root.join("102/ns/uts")).unwrap();
            std::os::unix::fs::symlink("uts:[4026532999]", root.join("102/ns/uts")).unwrap();
            let stat = std::fs::read_to_string(root.join("100/stat")).unwrap();
            std::fs::write(
                root.join("100/stat"),
                stat.replacen("(my app) (x)", "(renamed)", 1),
            )
            .unwrap();
        }
        let (after_walk, result) = polling.run_once();
        result.expect("second walk");
        let task = |kind, pid: i32, start_ticks| TaskEvent {
            kind,
            process: crate::model::ProcessId { pid, start_ticks },
            parent: None,
            cgroup_id: 0,
            namespaces: crate::model::PerType::splat(None),
        };
        let k = events.kept.as_mut().unwrap();
        k.take(&task(TaskKind::Fork, 102, 10900));
        k.take(&task(TaskKind::Exit, 101, id(101).start_ticks));
        k.take(&task(TaskKind::Exec, 100, id(100).start_ticks));
        let (after_events, result) = events.step_once(How::Refresh(Depth::Deep)).expect("a step");
        result.expect("refresh");
        let (walked_snapshot, kept_snapshot) = (
            polling.state.tracker.previous().unwrap(),
            events.state.tracker.previous().unwrap(),
        );
        assert_eq!(walked_snapshot.processes, kept_snapshot.processes);
        assert!(kept_snapshot.processes.contains_key(&102));
        assert!(!kept_snapshot.processes.contains_key(&101));
        assert_eq!(&*kept_snapshot.processes[&100].comm, "renamed");
        let (a, b) = (facts(&after_walk), facts(&after_events));
        let differ: Vec<_> = a
            .lines()
            .zip(b.lines())
            .filter(|(x, y)| x != y)
            .take(10)
            .collect();
        assert!(
            differ.is_empty() && a.lines().count() == b.lines().count(),
            "{differ:#?}"
        );
        assert!(
            a.contains("uts") && a.contains("4026532999"),
            "the new namespace is there"
        );
        // The mode's own counters say what happened: one walk, then the events.
        let text = String::from_utf8(after_events.text()).unwrap();
        for line in [
            "nsexporter_proc_walks_total{reason=\"start\"} 1",
            "nsexporter_proc_walks_total{reason=\"interval\"} 0",
        ] {
            assert!(text.contains(line), "{line}");
        }
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
