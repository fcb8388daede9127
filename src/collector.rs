//! The scan loop: scan → lifecycle → metrics → one encoded exposition, every interval.
//!
//! It runs on its own thread so that a slow scan never delays a scrape: the HTTP side only ever
//! reads the last encoded [`Exposition`] from a watch channel.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::attribution::attribute;
use crate::lifecycle::Tracker;
use crate::metrics::{Exposition, Metrics};
use crate::policy::Policy;
use crate::procfs::{ProcError, ProcFs};
use crate::scan::{Clock, ErrorReason, scan};
use crate::sharing::evaluate;

/// Owns the state that lives across scans.
pub struct Collector {
    procfs: ProcFs,
    clock: Clock,
    tracker: Tracker,
    metrics: Metrics,
    policy: Policy,
    kubelet_logs: Option<PathBuf>,
    /// Reasons already logged at warn level; later scans log them at debug, so a standing
    /// problem (a protected init, a missing capability) is said once, not every interval.
    warned: [bool; 3],
}

impl Collector {
    pub fn new(
        procfs: ProcFs,
        metrics: Metrics,
        policy: Policy,
        kubelet_logs: Option<PathBuf>,
    ) -> Result<Self, ProcError> {
        Ok(Collector {
            clock: Clock::read(&procfs)?,
            procfs,
            tracker: Tracker::new(),
            metrics,
            policy,
            kubelet_logs,
            warned: [false; 3],
        })
    }

    /// Scans once and encodes the result.
    pub fn run_once(&mut self) -> Result<Exposition, ProcError> {
        let started = Instant::now();
        let outcome = scan(&self.procfs, &self.clock)?;
        let snapshot = Arc::new(outcome.snapshot);
        let changes = self.tracker.update(Arc::clone(&snapshot));
        let attribution = attribute(&snapshot, &self.procfs, self.kubelet_logs.as_deref());
        let sharing = evaluate(&snapshot, &attribution, &self.policy);
        let duration = started.elapsed();
        self.metrics.record_scan(
            &snapshot,
            &self.tracker,
            &changes,
            &outcome.errors,
            &sharing,
            duration,
        );
        for reason in ErrorReason::ALL {
            let (count, Some(first)) = (outcome.errors.count(reason), outcome.errors.first(reason))
            else {
                continue;
            };
            if std::mem::replace(&mut self.warned[reason as usize], true) {
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
            duration_ms = duration.as_secs_f64() * 1000.0,
            "scan"
        );
        Ok(self.metrics.encode())
    }

    /// Scans every `interval` until `stop` is signalled or dropped, publishing each result.
    /// Ticks that a slow scan overran are skipped, not queued. A policy sent on `policies`
    /// (SIGHUP) applies from the next scan; counters and lifecycle state are kept.
    pub fn run(
        mut self,
        interval: Duration,
        publish: watch::Sender<Option<Arc<Exposition>>>,
        policies: Receiver<Policy>,
        stop: Receiver<()>,
    ) {
        let mut next = Instant::now();
        loop {
            while let Ok(policy) = policies.try_recv() {
                tracing::info!(allow_rules = policy.allow.len(), "policy reloaded");
                self.policy = policy;
            }
            match self.run_once() {
                Ok(p) => {
                    publish.send_replace(Some(Arc::new(p)));
                }
                Err(e) => tracing::error!(error = %e, "scan failed"),
            }
            release_free_memory();
            let now = Instant::now();
            next += interval;
            while next <= now {
                next += interval;
            }
            match stop.recv_timeout(next - now) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        }
    }
}

/// Hands the scan's freed temporaries (the gathered metric families, the previous snapshot)
/// back to the kernel. glibc keeps freed memory in its arenas, so without this the resident
/// size stays at the peak of the largest scan; a node agent should sit at its working set.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
