//! Health: whether the scan loop is alive and keeping up, for `/healthz`, `/readyz` and the
//! watchdog that logs a stall.
//!
//! The scan loop runs on its own thread and may block in a read (a procfs on a stuck
//! filesystem, a kernel lock). The HTTP side cannot see into it, so the loop stamps an
//! [`Health`] it shares: when each scan starts, when one last succeeded, which pid it is
//! reading. `/healthz` fails when the loop has stopped, when a scan has run longer than the
//! deadline, or when no scan has succeeded within it; the deadline is three scan intervals,
//! and never under [`MIN_DEADLINE`], so one slow scan on a busy node is not a failure.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The shortest deadline, whatever the interval.
pub const MIN_DEADLINE: Duration = Duration::from_secs(5);

const NEVER: u64 = u64::MAX;

/// What the scan loop shares with the HTTP side.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    deadline: Duration,
    /// Milliseconds after `started` when the running scan began; `NEVER` between scans.
    scan_started: AtomicU64,
    /// Milliseconds after `started` of the last successful scan; `NEVER` before the first.
    last_success: AtomicU64,
    alive: AtomicBool,
    /// The pid the scan is reading now (0 when none), from the scanner.
    progress: Arc<AtomicI32>,
    /// Why the last scan failed, until one succeeds.
    last_failure: Mutex<Option<String>>,
}

/// Why `/healthz` fails.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Unhealthy {
    #[error("the scan loop has stopped")]
    Stopped,
    #[error("a scan has been running for {seconds:.1}s (deadline {deadline:.1}s){reading}")]
    Stalled {
        seconds: f64,
        deadline: f64,
        reading: String,
    },
    #[error("no successful scan for {seconds:.1}s (deadline {deadline:.1}s){why}")]
    Failing {
        seconds: f64,
        deadline: f64,
        why: String,
    },
}

impl Health {
    /// Health for a loop that scans every `interval`; `progress` is the scanner's.
    pub fn new(interval: Duration, progress: Arc<AtomicI32>) -> Health {
        Health {
            started: Instant::now(),
            deadline: (interval * 3).max(MIN_DEADLINE),
            scan_started: AtomicU64::new(NEVER),
            last_success: AtomicU64::new(NEVER),
            alive: AtomicBool::new(true),
            progress,
            last_failure: Mutex::new(None),
        }
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The loop is starting a scan.
    pub fn scan_started(&self) {
        self.scan_started.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The scan finished: `Ok` or the reason it failed.
    pub fn scan_finished(&self, result: Result<(), String>) {
        let now = self.now_ms();
        self.scan_started.store(NEVER, Ordering::Relaxed);
        let mut failure = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                self.last_success.store(now, Ordering::Relaxed);
                *failure = None;
            }
            Err(why) => *failure = Some(why),
        }
    }

    /// The loop has returned or panicked.
    pub fn stopped(&self) {
        self.alive.store(false, Ordering::Relaxed);
    }

    /// Whether a scan has ever succeeded: `/readyz`.
    pub fn ready(&self) -> bool {
        self.last_success.load(Ordering::Relaxed) != NEVER
    }

    /// `/healthz`.
    pub fn check(&self) -> Result<(), Unhealthy> {
        if !self.alive.load(Ordering::Relaxed) {
            return Err(Unhealthy::Stopped);
        }
        let now = self.now_ms();
        let deadline = self.deadline.as_millis() as u64;
        let secs = |ms: u64| ms as f64 / 1000.0;
        let running = self.scan_started.load(Ordering::Relaxed);
        if running != NEVER && now.saturating_sub(running) > deadline {
            let pid = self.progress.load(Ordering::Relaxed);
            return Err(Unhealthy::Stalled {
                seconds: secs(now - running),
                deadline: secs(deadline),
                reading: if pid > 0 {
                    format!(", reading PID {pid}")
                } else {
                    String::new()
                },
            });
        }
        // Before the first success, the deadline runs from the start.
        let since = match self.last_success.load(Ordering::Relaxed) {
            NEVER => 0,
            t => t,
        };
        if now.saturating_sub(since) > deadline {
            let failure = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
            return Err(Unhealthy::Failing {
                seconds: secs(now - since),
                deadline: secs(deadline),
                why: failure
                    .as_deref()
                    .map(|f| format!(": {f}"))
                    .unwrap_or_default(),
            });
        }
        Ok(())
    }
}

/// Marks the loop stopped when dropped, so a panic in the scan thread shows too.
pub struct StopGuard(pub Arc<Health>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.stopped();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health::new(Duration::from_millis(100), Arc::new(AtomicI32::new(0)))
    }

    /// Moves the health's idea of its start back by `ms`, as if that much time had passed.
    fn age(h: &mut Health, ms: u64) {
        h.started -= Duration::from_millis(ms);
    }

    #[test]
    fn healthy_until_the_deadline_then_says_why() {
        let mut h = health();
        assert_eq!(h.deadline(), MIN_DEADLINE);
        assert!(h.check().is_ok() && !h.ready());
        h.scan_started();
        h.scan_finished(Err("/proc: cannot list the procfs: No such file".into()));
        age(&mut h, 6_000);
        let err = h.check().unwrap_err().to_string();
        assert!(err.starts_with("no successful scan for 6."), "{err}");
        assert!(
            err.ends_with(": /proc: cannot list the procfs: No such file"),
            "{err}"
        );
        h.scan_started();
        h.scan_finished(Ok(()));
        assert!(h.check().is_ok() && h.ready());
    }

    #[test]
    fn a_scan_that_runs_past_the_deadline_is_a_stall() {
        let mut h = health();
        h.scan_started();
        h.progress.store(4242, Ordering::Relaxed);
        age(&mut h, 5_500);
        let err = h.check().unwrap_err();
        assert!(matches!(err, Unhealthy::Stalled { .. }), "{err}");
        assert!(err.to_string().ends_with("reading PID 4242"), "{err}");
        h.scan_finished(Ok(()));
        assert!(h.check().is_ok());
        let shared = Arc::new(health());
        drop(StopGuard(Arc::clone(&shared)));
        assert_eq!(shared.check(), Err(Unhealthy::Stopped));
    }

    #[test]
    fn the_deadline_is_three_intervals() {
        let h = Health::new(Duration::from_secs(15), Arc::new(AtomicI32::new(0)));
        assert_eq!(h.deadline(), Duration::from_secs(45));
    }
}
