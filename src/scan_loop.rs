//! The scan loop: the scheduler of the pipeline ([`crate::pipeline`]). Every interval a full
//! scan goes through the pipeline's step and one encoded exposition is published; between
//! scans, sweeps and batches of process events are judged as [`next_step`] orders them.
//!
//! It runs on its own thread so that a slow scan never delays a scrape: the HTTP side only ever
//! reads the last encoded [`Exposition`] from a watch channel, and the loop's [`Health`].
//! A failed scan is published too: `nsexporter_scan_success 0` and the failure counted by
//! reason, beside the last good scan's namespaces and findings, which are kept rather than
//! dropped so that a failing scan never resolves a security alert by itself.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::allocator::release_free_memory;
use crate::attribution::NameSources;
use crate::declared::SpecSources;
use crate::events::{Event, EventStream};
use crate::health::{Health, StopGuard};
use crate::labels::SaidOnce;
use crate::metrics::{BetweenScans, Exposition, Metrics, Outcome};
use crate::model::CgroupLayout;
use crate::pipeline::{self, Between, Context, ScanResult, Sources, State};
use crate::policy::Policy;
use crate::scan::{ErrorReason, FailureReason, ScanFailure, Scanner};

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

    /// Scans once, takes the snapshot through the pipeline's step, and encodes the result; a
    /// failed scan is recorded and encoded too.
    pub fn run_once(&mut self) -> (Exposition, Result<(), ScanFailure>) {
        let started = Instant::now();
        let outcome = match self.scanner.scan(self.state.tracker.previous()) {
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
        let privilege = pipeline::privilege::read_privileges(
            self.scanner.procfs(),
            &scan.snapshot,
            &scan.attribution,
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
        (self.metrics.exposition(), Ok(()))
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
                    self.between.reset();
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
