//! Metrics: the Prometheus families nsexporter exports, filled once per scan and encoded once.
//!
//! A scrape never waits for a scan: after each scan the whole exposition is encoded (and
//! gzipped) into an immutable [`Exposition`] that the HTTP layer serves as is. Per-namespace
//! series are reset before each fill, so no series outlives its namespace.

mod self_process;

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use std::collections::HashSet;

use crate::lifecycle::{Changes, Tracker};
use crate::model::{CgroupLayout, Identity, NsType, Snapshot};
use crate::policy::Rule;
use crate::procfs::ProcFs;
use crate::scan::{ErrorReason, FailureReason, ScanErrors};
use crate::sharing::{Ownership, Sharing};

pub use self_process::SelfProcessCollector;

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
    registry: Registry,
    namespaces: IntGaugeVec,
    namespace_processes: IntGaugeVec,
    namespace_info: IntGaugeVec,
    namespace_start_time: GaugeVec,
    created: IntCounterVec,
    destroyed: IntCounterVec,
    lifetime: HistogramVec,
    processes: IntGauge,
    scans: IntCounter,
    scan_success: IntGauge,
    scan_failures: IntCounterVec,
    scan_errors: IntCounterVec,
    scan_duration: Histogram,
    last_scan: Gauge,
    identity: IntGaugeVec,
    id_queries: IntCounter,
    cgroup_layout: IntGaugeVec,
    host_source: IntGaugeVec,
    workload_host_namespace: IntGaugeVec,
    sharing_findings: IntGaugeVec,
    sharing_findings_total: IntCounterVec,
    /// Findings of the previous scan, so that the counter counts each as it first appears.
    previous_findings: HashSet<(Rule, NsType, String)>,
}

/// What one successful scan left, for [`Metrics::record_scan`].
pub struct ScanRecord<'a> {
    pub snapshot: &'a Snapshot,
    /// The tracker after this snapshot.
    pub tracker: &'a Tracker,
    pub changes: &'a Changes,
    pub errors: &'a ScanErrors,
    /// Namespaces whose kernel id the scan asked for.
    pub id_queries: u64,
    pub sharing: &'a Sharing,
    pub duration: Duration,
}

/// The labels that name a container, in this order, after `type` (and `rule`).
const WORKLOAD_LABELS: [&str; 5] = [
    "runtime",
    "container_id",
    "container",
    "pod",
    "k8s_namespace",
];

fn workload_values(c: &crate::attribution::Container) -> [&str; 5] {
    let names = c.names.as_ref();
    [
        c.runtime.as_str(),
        &c.id,
        names.map_or("", |n| &n.container),
        names.map_or("", |n| &n.pod),
        names.map_or("", |n| &n.k8s_namespace),
    ]
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    /// Registers every family. `own_procfs` is where the exporter reads its own process
    /// metrics (`/proc`, whatever procfs it scans); `scan_interval` is exported so that an
    /// alert can tell a stale last scan from a slow interval.
    pub fn new(own_procfs: ProcFs, scan_interval: Duration) -> Self {
        let registry = Registry::new();
        let r = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique");
        };
        let types = &["type"];
        let ns_labels = &["type", "inode"];
        let m = Metrics {
            namespaces: IntGaugeVec::new(
                opts(
                    "nsexporter_namespaces",
                    "Namespaces seen in the last scan, by type.",
                ),
                types,
            )
            .unwrap(),
            namespace_processes: IntGaugeVec::new(
                opts(
                    "nsexporter_namespace_processes",
                    "Member processes of each namespace in the last scan.",
                ),
                ns_labels,
            )
            .unwrap(),
            namespace_info: IntGaugeVec::new(
                opts(
                    "nsexporter_namespace_info",
                    "One series per namespace seen in the last scan; host=\"true\" marks the host's namespace of that type, owner says what its members belong to, and the container labels are set where all members agree.",
                ),
                &[
                    "type",
                    "inode",
                    "host",
                    "owner",
                    "runtime",
                    "pod_uid",
                    "pod",
                    "k8s_namespace",
                    "container",
                    "container_id",
                ],
            )
            .unwrap(),
            namespace_start_time: GaugeVec::new(
                opts(
                    "nsexporter_namespace_start_time_seconds",
                    "Estimated creation time of each namespace: the earliest start time of any member seen, as unix time.",
                ),
                ns_labels,
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
                "Namespaces whose kernel id was asked of the kernel: those new, or with no member left from the scan before.",
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
                    "Failed reads during scans, by reason. Processes that exit mid-scan are not errors.",
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
            workload_host_namespace: IntGaugeVec::new(
                opts(
                    "nsexporter_workload_host_namespace",
                    "1 for each container with a process in the host's namespace of that type, allowed or not.",
                ),
                &[&["type"][..], &WORKLOAD_LABELS].concat(),
            )
            .unwrap(),
            sharing_findings: IntGaugeVec::new(
                opts(
                    "nsexporter_sharing_findings_active",
                    "1 for each sharing the policy does not allow, now, by rule (host_namespace, cross_workload, host_mount_from_container); nsexporter_sharing_findings_total counts them as they appear.",
                ),
                &[&["rule", "type"][..], &WORKLOAD_LABELS].concat(),
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
            previous_findings: HashSet::new(),
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
        }
        for reason in FailureReason::ALL {
            m.scan_failures.with_label_values(&[reason.as_str()]);
        }
        for rule in Rule::ALL {
            for t in NsType::ALL {
                m.sharing_findings_total
                    .with_label_values(&[rule.as_str(), t.as_str()]);
            }
        }
        r(Box::new(m.namespaces.clone()));
        r(Box::new(m.namespace_processes.clone()));
        r(Box::new(m.namespace_info.clone()));
        r(Box::new(m.namespace_start_time.clone()));
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
        r(Box::new(m.scan_duration.clone()));
        r(Box::new(m.last_scan.clone()));
        r(Box::new(m.host_source.clone()));
        r(Box::new(m.workload_host_namespace.clone()));
        r(Box::new(m.sharing_findings.clone()));
        r(Box::new(m.sharing_findings_total.clone()));
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
            tracker,
            changes,
            errors,
            id_queries,
            sharing,
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
            self.scan_errors
                .with_label_values(&[reason.as_str()])
                .inc_by(errors.count(reason));
        }
        for id in &changes.created {
            self.created.with_label_values(&[id.ns_type.as_str()]).inc();
        }
        for (id, lifetime) in &changes.destroyed {
            let t = id.ns_type.as_str();
            self.destroyed.with_label_values(&[t]).inc();
            self.lifetime.with_label_values(&[t]).observe(*lifetime);
        }

        self.namespace_processes.reset();
        self.namespace_info.reset();
        self.namespace_start_time.reset();
        let unattributed = Ownership::default();
        let mut per_type = [0i64; 8];
        let mut inode = itoa::Buffer::new();
        for ns in snapshot.namespaces.values() {
            let t = ns.id.ns_type.as_str();
            per_type[ns.id.ns_type.index()] += 1;
            let inode = inode.format(ns.id.inode);
            self.namespace_processes
                .with_label_values(&[t, inode])
                .set(ns.members.len() as i64);
            let host = if snapshot.host.contains(ns.id) {
                "true"
            } else {
                "false"
            };
            let o = sharing.owners.get(&ns.id).unwrap_or(&unattributed);
            self.namespace_info
                .with_label_values(&[
                    t,
                    inode,
                    host,
                    o.owner.as_str(),
                    &o.runtime,
                    &o.pod_uid,
                    &o.pod,
                    &o.k8s_namespace,
                    &o.container,
                    &o.container_id,
                ])
                .set(1);
            if let Some(tracked) = tracker.get(ns.id) {
                self.namespace_start_time
                    .with_label_values(&[t, inode])
                    .set(snapshot.time.unix(tracked.start_ticks));
            }
        }
        for t in NsType::ALL {
            self.namespaces
                .with_label_values(&[t.as_str()])
                .set(per_type[t.index()]);
        }
        self.record_sharing(sharing);
    }

    fn record_sharing(&mut self, sharing: &Sharing) {
        self.workload_host_namespace.reset();
        for h in &sharing.host {
            let mut labels = vec![h.ns_type.as_str()];
            labels.extend(workload_values(&h.container));
            self.workload_host_namespace
                .with_label_values(&labels)
                .set(1);
        }
        self.sharing_findings.reset();
        let mut current = HashSet::with_capacity(sharing.findings.len());
        for f in &sharing.findings {
            let mut labels = vec![f.rule.as_str(), f.ns_type.as_str()];
            labels.extend(workload_values(&f.container));
            self.sharing_findings.with_label_values(&labels).set(1);
            let key = f.key();
            if !self.previous_findings.contains(&key) {
                self.sharing_findings_total
                    .with_label_values(&[f.rule.as_str(), f.ns_type.as_str()])
                    .inc();
                tracing::warn!(
                    rule = f.rule.as_str(),
                    r#type = f.ns_type.as_str(),
                    runtime = f.container.runtime.as_str(),
                    container_id = %f.container.id,
                    pod = f.container.names.as_ref().map_or("", |n| n.pod.as_str()),
                    k8s_namespace = f.container.names.as_ref().map_or("", |n| n.k8s_namespace.as_str()),
                    "unexpected namespace sharing"
                );
            }
            current.insert(key);
        }
        self.previous_findings = current;
    }

    /// Encodes every family in the text format, plain and gzipped.
    pub fn encode(&self) -> Exposition {
        let mut text = Vec::with_capacity(64 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("encoding to a Vec cannot fail");
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(text.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(&text).expect("writing to a Vec cannot fail");
        Exposition {
            gzip: gz.finish().expect("writing to a Vec cannot fail").into(),
            text: text.into(),
        }
    }
}
