//! The exporter's own `process_*` metrics, read from `/proc/self` of the exporter's own procfs
//! (proc_pid_stat(5), proc_pid_fd(5)), as every Prometheus client library exports them.
//!
//! The `prometheus` crate's `process` feature would do this, but it pulls in a second version of
//! the procfs crate; these few reads are cheaper than that dependency.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge};

use super::families::Id;
use super::opts;

use crate::procfs::{ProcFs, parse_stat_full, ticks_per_second};

/// Collects `process_*` metrics of the exporter itself each time it is gathered.
pub struct SelfProcessCollector {
    procfs: ProcFs,
    cpu: Counter,
    rss: IntGauge,
    vsize: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    start_time: Gauge,
    descs: Vec<Desc>,
}

impl SelfProcessCollector {
    pub fn new(procfs: ProcFs) -> Self {
        let cpu = Counter::with_opts(opts(Id::ProcessCpu)).unwrap();
        let g = |id: Id| IntGauge::with_opts(opts(id)).unwrap();
        let rss = g(Id::ProcessResidentMemory);
        let vsize = g(Id::ProcessVirtualMemory);
        let open_fds = g(Id::ProcessOpenFds);
        let max_fds = g(Id::ProcessMaxFds);
        let start_time = Gauge::with_opts(opts(Id::ProcessStartTime)).unwrap();
        let mut descs = Vec::new();
        for c in [
            &cpu as &dyn Collector,
            &rss,
            &vsize,
            &open_fds,
            &max_fds,
            &start_time,
        ] {
            descs.extend(c.desc().into_iter().cloned());
        }
        SelfProcessCollector {
            procfs,
            cpu,
            rss,
            vsize,
            open_fds,
            max_fds,
            start_time,
            descs,
        }
    }

    fn refresh(&self) -> Option<()> {
        let stat = std::fs::read(self.procfs.path("self/stat")).ok()?;
        let stat = parse_stat_full(&stat).ok()?;
        let ticks = ticks_per_second() as f64;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096);
        let cpu = (stat.utime + stat.stime) as f64 / ticks;
        // A counter only moves forward: add what was spent since the last gather.
        let delta = cpu - self.cpu.get();
        if delta > 0.0 {
            self.cpu.inc_by(delta);
        }
        self.rss.set(stat.rss as i64 * page);
        self.vsize.set(stat.vsize as i64);
        if let Ok(boot) = self.procfs.boot_time() {
            self.start_time
                .set(boot as f64 + stat.starttime as f64 / ticks);
        }
        if let Ok(fds) = std::fs::read_dir(self.procfs.path("self/fd")) {
            self.open_fds.set(fds.count() as i64);
        }
        if let Ok(limits) = std::fs::read_to_string(self.procfs.path("self/limits"))
            && let Some(max) = parse_max_open_files(&limits)
        {
            self.max_fds.set(max);
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

impl Collector for SelfProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if self.refresh().is_none() {
            tracing::debug!("cannot read the exporter's own /proc/self/stat");
            return Vec::new();
        }
        let mut out = Vec::new();
        out.extend(self.cpu.collect());
        out.extend(self.open_fds.collect());
        out.extend(self.max_fds.collect());
        out.extend(self.vsize.collect());
        out.extend(self.rss.collect());
        out.extend(self.start_time.collect());
        out
    }
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
