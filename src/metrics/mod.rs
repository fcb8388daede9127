//! Metrics: the Prometheus families nsexporter exports, recorded once per scan and encoded once.
//!
//! A scrape never waits for a scan: after each scan the whole exposition is encoded (and
//! gzipped) into an immutable [`Exposition`] that the HTTP layer serves as is. Counters and
//! histograms accumulate in the registry; everything per namespace and per container is one
//! [`ScanView`] per scan, written straight into the exposition ([`view`]), so no series outlives its
//! namespace and nothing is reset and refilled. How many per-namespace series there are is the
//! operator's choice ([`PerNamespace`]).

mod name_sources;
#[cfg(test)]
mod scenario;
mod self_process;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::ebpf::{Lost, LostReason};
use crate::events::{DropReason, Drops};
use crate::lifecycle::{Changes, Orphan};
use crate::model::{CgroupLayout, HeldBy, Identity, NamespaceId, NsChange, NsType, Snapshot};
use crate::policy::Rule;
use crate::procfs::ProcFs;
use crate::scan::pins::{SocketSkip, SocketSkips};
use crate::scan::{ErrorReason, FailureReason, ScanErrors};
use crate::sharing::{Finding, Owner, Ownership, Sharing};

pub use name_sources::NameSourceErrors;
pub use self_process::SelfProcessCollector;
use view::{FindingRow, HostSharingRow, NamespaceRow, ScanView};

/// Lifetimes run from a `unshare` that lives a second to a host namespace that lives for months;
/// short-lived ones (a CI step, a probe's exec) get the finer buckets.
const LIFETIME_BUCKETS: &[f64] = &[
    1.0, 2.5, 5.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0, 604800.0, 2592000.0,
];
const SCAN_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// One encoded exposition, plain and gzipped, served until the next scan replaces it.
#[derive(Clone, Debug)]
pub struct Exposition {
    pub text: Bytes,
    pub gzip: Bytes,
}

/// The exposition content type of the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every family nsexporter exports.
pub struct Metrics {
    /// The families that change only at scans.
    registry: Registry,
    /// The families that sweeps and process events change between scans: written after the
    /// scan's, and again after each sweep, so that they are live while the rest is reused.
    live: Registry,
    per_namespace: PerNamespace,
    /// The last successful scan's per-namespace and per-container series.
    view: ScanView,
    /// The findings that sweeps and events saw since the last scan: active until it.
    between_findings: Vec<FindingRow>,
    /// The scan families of the last scan, encoded once: text, and compressed.
    scan_part: ScanPart,
    namespaces: IntGaugeVec,
    created: IntCounterVec,
    destroyed: IntCounterVec,
    lifetime: HistogramVec,
    processes: IntGauge,
    scans: IntCounter,
    scan_success: IntGauge,
    scan_failures: IntCounterVec,
    scan_errors: IntCounterVec,
    scan_errors_standing: IntGaugeVec,
    scan_duration: Histogram,
    last_scan: Gauge,
    identity: IntGaugeVec,
    id_queries: IntCounter,
    cgroup_layout: IntGaugeVec,
    host_source: IntGaugeVec,
    sharing_findings_total: IntCounterVec,
    sweeps: IntCounter,
    sweep_processes: IntCounter,
    sweep_rechecked: IntCounter,
    proc_events: IntCounter,
    proc_events_dropped: IntCounterVec,
    ebpf_changes: IntCounterVec,
    ebpf_lost: IntCounterVec,
    orphans: IntGaugeVec,
    orphan_age: GaugeVec,
    fds_skipped: IntGauge,
    sockets_skipped: IntGaugeVec,
    socket_queries: IntCounter,
}

/// Which namespaces get per-namespace series (`namespace_processes`, `namespace_info`,
/// `namespace_start_time_seconds`): a series budget for big nodes and big clusters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PerNamespace {
    /// Every namespace.
    #[default]
    All,
    /// The host's namespaces and those holding several workloads: where every finding is.
    Shared,
    /// None: per-type counts, lifecycle, findings and self-metrics only.
    None,
}

/// What one successful scan left, for [`Metrics::record_scan`].
pub struct ScanRecord<'a> {
    pub snapshot: &'a Snapshot,
    pub changes: &'a Changes,
    pub errors: &'a ScanErrors,
    /// Of those, by reason, the processes that failed the same way in the scan before.
    pub standing_errors: [u64; ErrorReason::ALL.len()],
    /// Namespaces whose kernel id the scan asked for.
    pub id_queries: u64,
    /// Each live namespace's estimated creation, in ticks since boot (lifecycle's estimate).
    pub start_ticks: &'a dyn Fn(NamespaceId) -> Option<u64>,
    pub sharing: &'a Sharing,
    /// The findings that first appeared in this scan, as `sharing` judged them.
    pub new_findings: &'a [(Rule, NsType)],
    /// The namespaces held without a process for longer than the orphan age.
    pub orphans: &'a [Orphan],
    /// Processes whose fds the last fd pass could not read.
    pub fds_skipped: u64,
    /// Socket fds whose network namespace the last fd pass could not learn, by reason.
    pub sockets_skipped: SocketSkips,
    /// Sockets asked for their network namespace in this scan.
    pub socket_queries: u64,
    pub duration: Duration,
}

/// The container labels of a row, in [`view::WORKLOAD_LABELS`] order.
fn workload_values(c: &crate::attribution::Container) -> [String; 5] {
    let names = c.names.as_ref();
    [
        c.runtime.as_str().to_owned(),
        c.id.clone(),
        names.map_or_else(String::new, |n| n.container.clone()),
        names.map_or_else(String::new, |n| n.pod.clone()),
        names.map_or_else(String::new, |n| n.k8s_namespace.clone()),
    ]
}

/// The `pinned_at` label: the first [`PINNED_AT_PATHS`] mount paths, comma-joined, and how
/// many more there are. A container that may mount can bind its namespace on any number of
/// paths; the label stays one line.
fn pinned_at(paths: &[&str]) -> String {
    let mut label = paths[..paths.len().min(PINNED_AT_PATHS)].join(",");
    if paths.len() > PINNED_AT_PATHS {
        label.push_str(&format!(",+{} more", paths.len() - PINNED_AT_PATHS));
    }
    label
}

const PINNED_AT_PATHS: usize = 3;

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    /// Registers every family. `own_procfs` is where the exporter reads its own process
    /// metrics (`/proc`, whatever procfs it scans); `scan_interval` is exported so that an
    /// alert can tell a stale last scan from a slow interval; `per_namespace` says which
    /// namespaces get per-namespace series.
    pub fn new(own_procfs: ProcFs, scan_interval: Duration, per_namespace: PerNamespace) -> Self {
        let registry = Registry::new();
        let r = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique");
        };
        let types = &["type"];
        let m = Metrics {
            per_namespace,
            view: ScanView::default(),
            between_findings: Vec::new(),
            scan_part: ScanPart::default(),
            live: Registry::new(),
            namespaces: IntGaugeVec::new(
                opts(
                    "nsexporter_namespaces",
                    "Namespaces seen in the last scan, by type.",
                ),
                types,
            )
            .unwrap(),
            created: IntCounterVec::new(
                opts(
                    "nsexporter_namespaces_created_total",
                    "Namespaces first seen after the first scan, by type.",
                ),
                types,
            )
            .unwrap(),
            destroyed: IntCounterVec::new(
                opts(
                    "nsexporter_namespaces_destroyed_total",
                    "Namespaces no longer seen, by type.",
                ),
                types,
            )
            .unwrap(),
            lifetime: HistogramVec::new(
                HistogramOpts::new(
                    "nsexporter_namespace_lifetime_seconds",
                    "Lifetimes of destroyed namespaces, from estimated creation to the scan that missed them.",
                )
                .buckets(LIFETIME_BUCKETS.to_vec()),
                types,
            )
            .unwrap(),
            processes: IntGauge::with_opts(opts(
                "nsexporter_processes",
                "Processes read in the last scan.",
            ))
            .unwrap(),
            scans: IntCounter::with_opts(opts(
                "nsexporter_scans_total",
                "Scans of the procfs, successful or not.",
            ))
            .unwrap(),
            scan_success: IntGauge::with_opts(opts(
                "nsexporter_scan_success",
                "1 if the last scan succeeded, 0 if it failed (see nsexporter_scan_failures_total); the namespace and finding series are then the last good scan's.",
            ))
            .unwrap(),
            scan_failures: IntCounterVec::new(
                opts(
                    "nsexporter_scan_failures_total",
                    "Scans that produced no snapshot, by reason: procfs_unavailable (the procfs root is gone), no_processes, too_many_open_files, permission_denied, io_error.",
                ),
                &["reason"],
            )
            .unwrap(),
            identity: IntGaugeVec::new(
                opts(
                    "nsexporter_namespace_identity",
                    "1 for how the last scan told namespaces apart across scans: kernel_id (NS_GET_ID, never reused, exact) or heuristic (inode and member start times, where the kernel lacks NS_GET_ID).",
                ),
                &["method"],
            )
            .unwrap(),
            id_queries: IntCounter::with_opts(opts(
                "nsexporter_namespace_id_queries_total",
                "Namespaces whose kernel id (and owner and parent) was asked of the kernel: those new, with no member left from the scan before, or with no member at all (asked every scan, through a bind mount, fd or socket).",
            ))
            .unwrap(),
            cgroup_layout: IntGaugeVec::new(
                opts(
                    "nsexporter_cgroup_layout",
                    "1 for the host's cgroup layout: v1, hybrid, unified or unknown. On v1 and hybrid, cgroup is not in the default host_namespace_types.",
                ),
                &["layout"],
            )
            .unwrap(),
            scan_errors: IntCounterVec::new(
                opts(
                    "nsexporter_scan_errors_total",
                    "Failed reads during scans, by reason. Processes that exit mid-scan are not errors. A process that keeps failing the same way is counted once, when it began (see nsexporter_scan_errors_standing).",
                ),
                &["reason"],
            )
            .unwrap(),
            scan_errors_standing: IntGaugeVec::new(
                opts(
                    "nsexporter_scan_errors_standing",
                    "Processes whose reads failed in the last scan for the same reason as in the scan before: how the node is built (a protected init, a process an LSM hides), counted once in nsexporter_scan_errors_total and not every scan.",
                ),
                &["reason"],
            )
            .unwrap(),
            scan_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "nsexporter_scan_duration_seconds",
                    "Duration of each scan of the procfs.",
                )
                .buckets(SCAN_DURATION_BUCKETS.to_vec()),
            )
            .unwrap(),
            last_scan: Gauge::with_opts(opts(
                "nsexporter_last_scan_timestamp_seconds",
                "Unix time of the last successful scan.",
            ))
            .unwrap(),
            host_source: IntGaugeVec::new(
                opts(
                    "nsexporter_host_namespaces_source",
                    "1 for where the last scan found the host's namespaces: init (PID 1), kthreadd (PID 2, where PID 1 is protected) or none (neither readable: no host sharing can be seen).",
                ),
                &["source"],
            )
            .unwrap(),
            sharing_findings_total: IntCounterVec::new(
                opts(
                    "nsexporter_sharing_findings_total",
                    "Sharing findings counted as they first appear, by rule and type.",
                ),
                &["rule", "type"],
            )
            .unwrap(),
            sweeps: IntCounter::with_opts(opts(
                "nsexporter_sweeps_total",
                "Sweeps between full scans for new processes (--scan.sweep-interval).",
            ))
            .unwrap(),
            sweep_processes: IntCounter::with_opts(opts(
                "nsexporter_sweep_processes_total",
                "Processes read between full scans, by the sweeps and on process events.",
            ))
            .unwrap(),
            sweep_rechecked: IntCounter::with_opts(opts(
                "nsexporter_sweep_rechecked_processes_total",
                "Containers' processes whose namespace links the sweeps read again in place, to see a process that moves with setns(2).",
            ))
            .unwrap(),
            proc_events: IntCounter::with_opts(opts(
                "nsexporter_proc_events_total",
                "Fork and exec events from the kernel's proc connector (--scan.proc-events).",
            ))
            .unwrap(),
            proc_events_dropped: IntCounterVec::new(
                opts(
                    "nsexporter_proc_events_dropped_total",
                    "Process events lost before they were judged, by reason: queue_full (the exporter's bounded queue was full) or kernel_overrun (the kernel's socket buffer overflowed, ENOBUFS; one per overrun, which loses an unknown number). The sweeps still see those processes.",
                ),
                &["reason"],
            )
            .unwrap(),
            ebpf_changes: IntCounterVec::new(
                opts(
                    "nsexporter_ebpf_namespace_changes_total",
                    "Namespace changes the eBPF source reported (--scan.ebpf), by the system call and the type of namespace entered; each is judged by the host rules at once.",
                ),
                &["syscall", "type"],
            )
            .unwrap(),
            ebpf_lost: IntCounterVec::new(
                opts(
                    "nsexporter_ebpf_events_lost_total",
                    "Namespace changes the eBPF source lost before they were judged, by reason: ring_buffer_full (the kernel's ring buffer was full) or queue_full (the exporter's bounded queue was). The sweeps and scans still see where those processes are now.",
                ),
                &["reason"],
            )
            .unwrap(),
            orphans: IntGaugeVec::new(
                opts(
                    "nsexporter_orphaned_namespaces",
                    "Namespaces with no member process for longer than --namespace.orphan-age, held only by a bind mount, an open fd or a socket made in it (held_by): leaked, most often.",
                ),
                &["type", "held_by"],
            )
            .unwrap(),
            orphan_age: GaugeVec::new(
                opts(
                    "nsexporter_orphaned_namespace_max_age_seconds",
                    "Seconds the oldest orphaned namespace of each type and held_by has had no member process (counted from when the exporter first saw it so).",
                ),
                &["type", "held_by"],
            )
            .unwrap(),
            fds_skipped: IntGauge::with_opts(opts(
                "nsexporter_fd_scan_skipped_processes",
                "Processes of other users whose open fds the last fd pass could not read: listing another user's /proc/PID/fd needs CAP_DAC_READ_SEARCH. Namespaces held only by their fds are not seen.",
            ))
            .unwrap(),
            sockets_skipped: IntGaugeVec::new(
                opts(
                    "nsexporter_fd_scan_skipped_sockets",
                    "Socket fds whose network namespace the last fd pass could not learn, by reason: other_pid_namespace (the procfs is not of the exporter's pid namespace: a pod without hostPID), no_net_admin (SIOCGSKNS needs CAP_NET_ADMIN), permission_denied (pidfd_getfd refused: no CAP_SYS_PTRACE over the holder, or an LSM), unsupported (Linux < 5.6). Network namespaces held only by such sockets are not seen.",
                ),
                &["reason"],
            )
            .unwrap(),
            socket_queries: IntCounter::with_opts(opts(
                "nsexporter_fd_scan_socket_queries_total",
                "Sockets whose network namespace an fd pass asked of the kernel (pidfd_getfd, then SIOCGSKNS): each socket once while it lives, so this follows how many sockets are opened, not how many are open.",
            ))
            .unwrap(),
            registry: registry.clone(),
        };
        let build_info = IntGaugeVec::new(
            opts(
                "nsexporter_build_info",
                "Always 1; labels name the version and the git revision it was built from.",
            ),
            &["version", "revision"],
        )
        .unwrap();
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("BUILD_GIT_REVISION")])
            .set(1);
        let interval = Gauge::with_opts(opts(
            "nsexporter_scan_interval_seconds",
            "The configured time between two scans.",
        ))
        .unwrap();
        interval.set(scan_interval.as_secs_f64());
        for t in NsType::ALL {
            m.namespaces.with_label_values(&[t.as_str()]);
            m.created.with_label_values(&[t.as_str()]);
            m.destroyed.with_label_values(&[t.as_str()]);
            m.lifetime.with_label_values(&[t.as_str()]);
        }
        for reason in ErrorReason::ALL {
            m.scan_errors.with_label_values(&[reason.as_str()]);
            m.scan_errors_standing.with_label_values(&[reason.as_str()]);
        }
        for t in NsType::ALL {
            for held_by in HeldBy::orphan_values() {
                m.orphans.with_label_values(&[t.as_str(), held_by.as_str()]);
            }
        }
        for reason in FailureReason::ALL {
            m.scan_failures.with_label_values(&[reason.as_str()]);
        }
        for reason in SocketSkip::ALL {
            m.sockets_skipped.with_label_values(&[reason.as_str()]);
        }
        for rule in Rule::ALL {
            for t in NsType::ALL {
                m.sharing_findings_total
                    .with_label_values(&[rule.as_str(), t.as_str()]);
            }
        }
        r(Box::new(m.namespaces.clone()));
        r(Box::new(m.created.clone()));
        r(Box::new(m.destroyed.clone()));
        r(Box::new(m.lifetime.clone()));
        r(Box::new(m.processes.clone()));
        r(Box::new(m.scans.clone()));
        r(Box::new(m.scan_success.clone()));
        r(Box::new(m.scan_failures.clone()));
        r(Box::new(m.identity.clone()));
        r(Box::new(m.id_queries.clone()));
        r(Box::new(m.cgroup_layout.clone()));
        r(Box::new(m.scan_errors.clone()));
        r(Box::new(m.scan_errors_standing.clone()));
        r(Box::new(m.scan_duration.clone()));
        r(Box::new(m.last_scan.clone()));
        r(Box::new(m.host_source.clone()));
        m.live
            .register(Box::new(m.sharing_findings_total.clone()))
            .expect("metric names are unique");
        r(Box::new(m.orphans.clone()));
        r(Box::new(m.orphan_age.clone()));
        r(Box::new(m.fds_skipped.clone()));
        r(Box::new(m.sockets_skipped.clone()));
        r(Box::new(m.socket_queries.clone()));
        r(Box::new(build_info));
        r(Box::new(interval));
        r(Box::new(SelfProcessCollector::new(own_procfs)));
        m
    }

    /// Sets the host's cgroup layout, known once at start.
    pub fn set_cgroup_layout(&mut self, layout: CgroupLayout) {
        for l in CgroupLayout::ALL {
            self.cgroup_layout
                .with_label_values(&[l.as_str()])
                .set(i64::from(l == layout));
        }
    }

    /// Exports the counters of what runs between scans, for what is on: with neither sweeps
    /// nor process events the exposition is what it was without them.
    pub fn between_scans(&mut self, sweeps: bool, events: bool, ebpf: bool) {
        let register = |c: Box<dyn prometheus::core::Collector>| {
            // Registering twice is refused, and harmless: the counter is already there.
            let _ = self.live.register(c);
        };
        if sweeps {
            register(Box::new(self.sweeps.clone()));
            register(Box::new(self.sweep_rechecked.clone()));
        }
        if sweeps || events || ebpf {
            register(Box::new(self.sweep_processes.clone()));
        }
        if ebpf {
            for reason in LostReason::ALL {
                self.ebpf_lost.with_label_values(&[reason.as_str()]);
            }
            register(Box::new(self.ebpf_changes.clone()));
            register(Box::new(self.ebpf_lost.clone()));
        }
        if events {
            for reason in DropReason::ALL {
                self.proc_events_dropped
                    .with_label_values(&[reason.as_str()]);
            }
            register(Box::new(self.proc_events.clone()));
            register(Box::new(self.proc_events_dropped.clone()));
        }
    }

    /// Brings the dropped-event counters up to the reader thread's totals.
    pub fn record_event_drops(&mut self, drops: &Drops) {
        for reason in DropReason::ALL {
            let counter = self
                .proc_events_dropped
                .with_label_values(&[reason.as_str()]);
            counter.inc_by(drops.count(reason).saturating_sub(counter.get()));
        }
    }

    /// Brings the eBPF source's lost-change counters up to the reader thread's totals.
    pub fn record_ebpf_lost(&mut self, lost: &Lost) {
        for reason in LostReason::ALL {
            let counter = self.ebpf_lost.with_label_values(&[reason.as_str()]);
            counter.inc_by(lost.count(reason).saturating_sub(counter.get()));
        }
    }

    /// Counts the eBPF source's namespace changes, by system call and type entered.
    pub fn record_changes(&mut self, changes: &[NsChange]) {
        for change in changes {
            for id in change.entered() {
                self.ebpf_changes
                    .with_label_values(&[change.syscall.as_str(), id.ns_type.as_str()])
                    .inc();
            }
        }
    }

    /// Counts findings as they first appear, whoever saw them: a scan, a sweep or an event.
    fn count_findings(&self, new_findings: &[(Rule, NsType)]) {
        for (rule, t) in new_findings {
            self.sharing_findings_total
                .with_label_values(&[rule.as_str(), t.as_str()])
                .inc();
        }
    }

    /// Records a sweep: processes read (new, and moved), processes re-checked in place, and
    /// the findings it saw first, which stay active until the next scan.
    pub fn record_sweep(&mut self, processes: usize, rechecked: u64, new_findings: &[Finding]) {
        self.sweeps.inc();
        self.sweep_processes.inc_by(processes as u64);
        self.sweep_rechecked.inc_by(rechecked);
        self.record_between(new_findings);
    }

    /// Records a batch of process events: how many pids the kernel named, how many could be
    /// read, and the findings they made, as [`Self::record_sweep`].
    pub fn record_events(&mut self, events: usize, read: usize, new_findings: &[Finding]) {
        self.proc_events.inc_by(events as u64);
        self.sweep_processes.inc_by(read as u64);
        self.record_between(new_findings);
    }

    fn record_between(&mut self, new_findings: &[Finding]) {
        let keys: Vec<(Rule, NsType)> = new_findings.iter().map(|f| (f.rule, f.ns_type)).collect();
        self.count_findings(&keys);
        self.between_findings
            .extend(new_findings.iter().map(finding_row));
    }

    /// Records a scan that failed. Everything the last good scan set stays as it was.
    pub fn record_failure(&mut self, reason: FailureReason) {
        self.scans.inc();
        self.scan_success.set(0);
        self.scan_failures
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Records one successful scan: its snapshot, the tracker's view after it, its changes,
    /// errors and sharing.
    pub fn record_scan(&mut self, record: &ScanRecord<'_>) {
        let ScanRecord {
            snapshot,
            start_ticks,
            changes,
            errors,
            standing_errors,
            id_queries,
            sharing,
            new_findings,
            orphans,
            fds_skipped,
            sockets_skipped,
            socket_queries,
            duration,
        } = *record;
        self.scans.inc();
        self.scan_success.set(1);
        self.scan_duration.observe(duration.as_secs_f64());
        self.last_scan.set(
            snapshot
                .taken_at
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        self.processes.set(snapshot.processes.len() as i64);
        for method in Identity::ALL {
            self.identity
                .with_label_values(&[method.as_str()])
                .set(i64::from(snapshot.identity == method));
        }
        self.id_queries.inc_by(id_queries);
        for source in crate::model::HostSource::ALL {
            self.host_source
                .with_label_values(&[source.as_str()])
                .set(i64::from(snapshot.host.source == source));
        }
        for reason in ErrorReason::ALL {
            let standing = standing_errors[reason.index()];
            self.scan_errors
                .with_label_values(&[reason.as_str()])
                .inc_by(errors.count(reason).saturating_sub(standing));
            self.scan_errors_standing
                .with_label_values(&[reason.as_str()])
                .set(i64::try_from(standing).unwrap_or(i64::MAX));
        }
        for id in &changes.created {
            self.created.with_label_values(&[id.ns_type.as_str()]).inc();
        }
        for (id, lifetime) in &changes.destroyed {
            let t = id.ns_type.as_str();
            self.destroyed.with_label_values(&[t]).inc();
            self.lifetime.with_label_values(&[t]).observe(*lifetime);
        }

        self.count_findings(new_findings);
        let mut per_type = crate::model::PerType::splat(0i64);
        for ns in snapshot.namespaces.values() {
            per_type[ns.id.ns_type] += 1;
        }
        for t in NsType::ALL {
            self.namespaces
                .with_label_values(&[t.as_str()])
                .set(per_type[t]);
        }
        self.record_orphans(orphans);
        self.fds_skipped
            .set(i64::try_from(fds_skipped).unwrap_or(i64::MAX));
        for reason in SocketSkip::ALL {
            let n = sockets_skipped[reason.index()];
            self.sockets_skipped
                .with_label_values(&[reason.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.socket_queries.inc_by(socket_queries);
        self.view = self.view_of(snapshot, start_ticks, sharing);
        self.between_findings.clear();
    }

    /// Sets the orphan count of every type and `held_by`, and the oldest age where there is one.
    fn record_orphans(&mut self, orphans: &[Orphan]) {
        // At most 56 series (8 types, 7 holder sets): reset and refilled, so that an age goes
        // with its last orphan.
        self.orphan_age.reset();
        for t in NsType::ALL {
            for held_by in HeldBy::orphan_values() {
                let these = orphans
                    .iter()
                    .filter(|o| o.id.ns_type == t && o.held_by == held_by);
                let (count, oldest) = these.fold((0, 0.0f64), |(n, a), o| (n + 1, a.max(o.age)));
                let labels = [t.as_str(), held_by.as_str()];
                self.orphans.with_label_values(&labels).set(count);
                if count > 0 {
                    self.orphan_age.with_label_values(&labels).set(oldest);
                }
            }
        }
    }

    /// The per-namespace and per-container series of one scan, with their label values.
    fn view_of(
        &self,
        snapshot: &Snapshot,
        start_ticks: &dyn Fn(NamespaceId) -> Option<u64>,
        sharing: &Sharing,
    ) -> ScanView {
        let unattributed = Arc::new(Ownership::default());
        let namespaces = snapshot
            .namespaces
            .values()
            .filter_map(|ns| {
                let host = snapshot.host.contains(ns.id);
                let o = sharing.owners.get(&ns.id).unwrap_or(&unattributed);
                let keep = match self.per_namespace {
                    PerNamespace::All => true,
                    // The host's namespaces, and those of several workloads: where every
                    // finding is, and what a sharing dashboard shows.
                    PerNamespace::Shared => host || o.owner == Owner::Mixed,
                    PerNamespace::None => false,
                };
                keep.then(|| NamespaceRow {
                    ns_type: ns.id.ns_type,
                    inode: ns.id.inode,
                    processes: u32::try_from(ns.members.len()).unwrap_or(u32::MAX),
                    host,
                    ownership: Arc::clone(o),
                    start_time: start_ticks(ns.id).map(|t| snapshot.time.unix(t)),
                    held_by: ns.held_by(),
                    pinned_at: pinned_at(&ns.mount_paths()),
                    userns: ns.owner.map_or_else(String::new, |i| i.to_string()),
                    parent: ns.parent.map_or_else(String::new, |i| i.to_string()),
                })
            })
            .collect();
        ScanView {
            namespaces,
            host_sharing: sharing
                .host
                .iter()
                .map(|h| HostSharingRow {
                    ns_type: h.ns_type,
                    workload: workload_values(&h.container),
                })
                .collect(),
            findings: sharing.findings.iter().map(finding_row).collect(),
        }
    }

    /// Encodes every family in the text format, plain and gzipped: the scan's families, then
    /// the live ones ([`Self::encode_live`]). The scan's are kept, encoded, for the sweeps.
    pub fn encode(&mut self) -> Exposition {
        let mut text = Vec::with_capacity(self.scan_part.text.len() + 4096);
        write_families(&self.registry, &self.view, &ScanView::FAMILIES, &mut text);
        self.scan_part = ScanPart::new(text);
        self.encode_live()
    }

    /// The last scan's families as they were encoded, and the live families anew: what a
    /// sweep publishes. Costs the live families' few lines, their compression, and a copy.
    pub fn encode_live(&self) -> Exposition {
        let mut live = Vec::with_capacity(4096);
        let findings = ScanView {
            findings: self
                .view
                .findings
                .iter()
                .chain(&self.between_findings)
                .cloned()
                .collect(),
            ..ScanView::default()
        };
        write_families(&self.live, &findings, &ScanView::LIVE_FAMILIES, &mut live);
        self.scan_part.with(&live)
    }
}

/// Writes the families of `registry` and the families `from_view` of `view` in one name order,
/// as a registry holding them all would write them.
fn write_families(registry: &Registry, view: &ScanView, from_view: &[&str], out: &mut Vec<u8>) {
    let registered = registry.gather();
    let mut names: Vec<&str> = registered
        .iter()
        .map(|f| f.name())
        .chain(from_view.iter().copied())
        .collect();
    names.sort_unstable();
    let encoder = TextEncoder::new();
    for name in names {
        match registered.iter().find(|f| f.name() == name) {
            Some(family) => encoder
                .encode(std::slice::from_ref(family), out)
                .expect("encoding to a Vec cannot fail"),
            None => view.write_family(name, out),
        }
    }
}

/// The scan's families, encoded once a scan: the text, and the text as raw deflate ended by a
/// sync flush, so that each sweep's live families follow as deflate blocks of their own and
/// the two make one gzip member (RFC 1951 §3.2.4, RFC 1952), without compressing the scan's
/// part again. The CRC of the whole is combined from the parts'.
#[derive(Default)]
struct ScanPart {
    text: Bytes,
    deflate: Bytes,
    crc: flate2::Crc,
}

/// The gzip header: deflate, no flags, no time, unknown OS (as flate2 writes it).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

impl ScanPart {
    fn new(text: Vec<u8>) -> ScanPart {
        let mut crc = flate2::Crc::new();
        crc.update(&text);
        ScanPart {
            deflate: deflate(&text, flate2::FlushCompress::Sync).into(),
            text: text.into(),
            crc,
        }
    }

    /// The exposition of this part followed by `live`.
    fn with(&self, live: &[u8]) -> Exposition {
        let mut text = Vec::with_capacity(self.text.len() + live.len());
        text.extend_from_slice(&self.text);
        text.extend_from_slice(live);
        let tail = deflate(live, flate2::FlushCompress::Finish);
        let mut crc = flate2::Crc::new();
        crc.combine(&self.crc);
        let mut live_crc = flate2::Crc::new();
        live_crc.update(live);
        crc.combine(&live_crc);
        let mut gzip = Vec::with_capacity(GZIP_HEADER.len() + self.deflate.len() + tail.len() + 8);
        gzip.extend_from_slice(&GZIP_HEADER);
        gzip.extend_from_slice(&self.deflate);
        gzip.extend_from_slice(&tail);
        gzip.extend_from_slice(&crc.sum().to_le_bytes());
        gzip.extend_from_slice(&crc.amount().to_le_bytes());
        Exposition {
            text: text.into(),
            gzip: gzip.into(),
        }
    }
}

/// `input` as raw deflate at the fast level, ended by `flush`: `Sync` leaves the stream open
/// on a byte boundary, `Finish` closes it with a final block.
fn deflate(input: &[u8], flush: flate2::FlushCompress) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut out = Vec::with_capacity(input.len() / 4 + 64);
    loop {
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .expect("deflate of a buffer cannot fail");
        let done = c.total_in() as usize == input.len()
            && match flush {
                flate2::FlushCompress::Finish => status == flate2::Status::StreamEnd,
                // A sync flush is complete once it left room in the output.
                _ => out.len() < out.capacity(),
            };
        if done {
            return out;
        }
        out.reserve(out.capacity().max(1024));
    }
}

/// A finding as the exposition's row.
fn finding_row(f: &Finding) -> FindingRow {
    FindingRow {
        rule: f.rule.as_str(),
        ns_type: f.ns_type,
        declared: f.declared.as_str(),
        workload: workload_values(&f.container),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut out).unwrap();
        out
    }

    /// The scan's part compressed once, the live part after it: one gzip member that any
    /// decoder reads as the whole text, with the right CRC and length (GzDecoder checks both).
    #[test]
    fn the_live_part_follows_the_scan_part_in_one_gzip_member() {
        let scan: Vec<u8> = (0..50_000)
            .flat_map(|i| format!("scan_line {i}\n").into_bytes())
            .collect();
        let part = ScanPart::new(scan.clone());
        for live in [&b""[..], b"live 1\n", &[b'x'; 100_000]] {
            let e = part.with(live);
            let whole = [&scan[..], live].concat();
            assert_eq!(e.text, whole);
            assert_eq!(gunzip(&e.gzip), whole);
            // A single member: the decoder that stops at the first member reads it all too.
            let mut single = Vec::new();
            let mut d = flate2::bufread::GzDecoder::new(&e.gzip[..]);
            std::io::Read::read_to_end(&mut d, &mut single).unwrap();
            assert_eq!(single, whole);
        }
        // Compressed once: the live part costs its own size, not the scan's.
        let small = part.with(b"live 1\n");
        assert!(small.gzip.len() < part.deflate.len() + 64);
        let empty = ScanPart::new(Vec::new()).with(b"");
        assert_eq!(gunzip(&empty.gzip), b"");
    }

    #[test]
    fn pinned_at_names_three_paths_and_counts_the_rest() {
        assert_eq!(pinned_at(&[]), "");
        assert_eq!(pinned_at(&["/run/netns/a"]), "/run/netns/a");
        let many: Vec<String> = (0..1000).map(|i| format!("/p/{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(pinned_at(&many), "/p/0,/p/1,/p/2,+997 more");
    }
}
