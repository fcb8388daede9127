//! The exporter's own `process_*` metrics, read from `/proc/self` of the exporter's own procfs
//! (proc_pid_stat(5), proc_pid_fd(5)), as every Prometheus client library exports them.
//!
//! These few reads are cheaper than a client library's process collector, which would pull in
//! a second version of the procfs crate.

use super::families::handles as h;
use super::store::Store;

use crate::procfs::{ProcFs, parse_stat_full, ticks_per_second};

/// Reads the exporter's `process_*` metrics into the store each time the scan's part is
/// encoded.
pub struct SelfProcess {
    procfs: ProcFs,
}

impl SelfProcess {
    pub fn new(procfs: ProcFs) -> Self {
        SelfProcess { procfs }
    }

    /// Sets the `process_*` families from `/proc/self`; `false` where its `stat` could not be
    /// read, and then the families are left out of the exposition.
    pub fn read_into(&self, store: &mut Store) -> bool {
        let read = self.read(store).is_some();
        if !read {
            tracing::debug!("cannot read the exporter's own /proc/self/stat");
        }
        read
    }

    fn read(&self, store: &mut Store) -> Option<()> {
        let stat = std::fs::read(self.procfs.path("self/stat")).ok()?;
        let stat = parse_stat_full(&stat).ok()?;
        let ticks = ticks_per_second() as f64;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096);
        let cpu = (stat.utime + stat.stime) as f64 / ticks;
        // A counter only moves forward: what was spent since the last read is added.
        store.counter(h::ProcessCpu, ()).raise_to(cpu);
        store
            .gauge(h::ProcessResidentMemory, ())
            .set((stat.rss as i64 * page) as f64);
        store
            .gauge(h::ProcessVirtualMemory, ())
            .set(stat.vsize as i64 as f64);
        if let Ok(boot) = self.procfs.boot_time() {
            store
                .gauge(h::ProcessStartTime, ())
                .set(boot as f64 + stat.starttime as f64 / ticks);
        }
        if let Ok(fds) = std::fs::read_dir(self.procfs.path("self/fd")) {
            store
                .gauge(h::ProcessOpenFds, ())
                .set(fds.count() as i64 as f64);
        }
        if let Ok(limits) = std::fs::read_to_string(self.procfs.path("self/limits"))
            && let Some(max) = parse_max_open_files(&limits)
        {
            store.gauge(h::ProcessMaxFds, ()).set(max as f64);
        }
        Some(())
    }
}

/// The soft limit from the `Max open files` line of `/proc/PID/limits`.
fn parse_max_open_files(limits: &str) -> Option<i64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_open_files_is_the_soft_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        assert_eq!(
            parse_max_open_files("Max open files  unlimited unlimited files"),
            None
        );
        assert_eq!(parse_max_open_files(""), None);
    }
}
