//! Metrics: the Prometheus families nsexporter exports, recorded once per scan and encoded once.
//!
//! Every family is declared once, in [`families`]; what happened reaches them one way: the scan
//! loop hands [`Metrics::record`] one [`Outcome`] (a scan, a failed scan, a sweep, a batch of
//! events, a name source's error, the event readers' losses) and publishes
//! [`Metrics::exposition`].
//!
//! A scrape never waits for a scan: after each scan the whole exposition is encoded and
//! gzipped as it is written into an immutable [`Exposition`], which holds the gzip alone and
//! which the HTTP layer serves as is, or inflated for a client that does not take gzip. Counters and
//! histograms accumulate in the registry; everything per namespace and per container is one
//! [`ScanView`] per scan, written straight into the exposition ([`view`]), so no series outlives its
//! namespace and nothing is reset and refilled. How many per-namespace series there are is the
//! operator's choice ([`PerNamespace`]).

mod cap;
pub mod families;
#[cfg(test)]
pub(crate) mod scenario;
mod self_process;
pub mod view;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    Opts, Registry, TextEncoder,
};

use crate::attribution::{NameErrorReason, NameSource};
use crate::events::{DropReason, Drops, Lost, LostReason};
use crate::lifecycle::{Changes, Orphan, Tracker};
use crate::model::{CgroupLayout, HeldBy, Identity, NsChange, NsType, Snapshot};
use crate::policy::Rule;
use crate::procfs::ProcFs;
use crate::scan::pins::{SocketSkip, SocketSkips};
use crate::scan::{ErrorReason, FailureReason, ScanErrors};
use crate::sharing::{Finding, Owner, Ownership, Sharing};

pub use families::BetweenScans;
use families::{FAMILIES, Family, Id, Kind, Part, When, WrittenBy};
pub use self_process::SelfProcessCollector;
use view::{FindingRow, HostSharingRow, NamespaceRow, ScanView, TextOut};

/// One encoded exposition, served until the next scan replaces it: held gzipped only, with the
/// length of its text. Prometheus asks for gzip; a client that does not is sent the text
/// inflated as it goes ([`Exposition::plain`]), so that the 2 MB of text at 10,000 processes
/// is held by no one between scans, nor through the next scan's peak.
#[derive(Clone, Debug)]
pub struct Exposition {
    gzip: Bytes,
    text_len: usize,
}

impl Exposition {
    /// The exposition of `text`, compressed as a scan's is.
    pub fn of_text(text: &[u8]) -> Exposition {
        ScanPart::new(text, text.len(), ViewRanges::new()).exposition()
    }

    /// The gzip member, as a client that accepts gzip is sent it.
    pub fn gzip(&self) -> &Bytes {
        &self.gzip
    }

    /// The length of the text: a plain response's Content-Length.
    pub fn text_len(&self) -> usize {
        self.text_len
    }

    /// The text, inflated whole: for tests and tools. A scrape reads [`Exposition::plain`].
    pub fn text(&self) -> Vec<u8> {
        self.plain().read(usize::MAX).map_or_else(Vec::new, |text| {
            text.expect("an exposition's own gzip inflates")
        })
    }

    /// The text, to be inflated a chunk at a time ([`Plain::next_chunk`]).
    pub fn plain(&self) -> Plain {
        Plain {
            gzip: flate2::bufread::GzDecoder::new(self.gzip.clone().reader()),
            remaining: self.text_len,
        }
    }
}

/// An exposition's text being inflated, a chunk at a time: what it holds is the inflate state
/// (42 KiB: the 32 KiB window and the tables) and a reference to the gzip, whose allocation
/// the exposition shares.
pub struct Plain {
    gzip: flate2::bufread::GzDecoder<bytes::buf::Reader<Bytes>>,
    remaining: usize,
}

impl Plain {
    /// The next at most `max` bytes of the text, each chunk an allocation of its own; `None`
    /// after the last. The last chunk comes only once the gzip's trailer (the text's CRC and
    /// length) has been checked: an error instead of it says that the text was not the
    /// exposition's, and is an exporter's bug.
    pub fn next_chunk(&mut self, max: usize) -> Option<std::io::Result<Bytes>> {
        self.read(max).map(|chunk| chunk.map(Bytes::from))
    }

    fn read(&mut self, max: usize) -> Option<std::io::Result<Vec<u8>>> {
        if self.remaining == 0 || max == 0 {
            return None;
        }
        let mut chunk = vec![0; self.remaining.min(max)];
        let read = std::io::Read::read_exact(&mut self.gzip, &mut chunk).and_then(|()| {
            self.remaining -= chunk.len();
            if self.remaining > 0 {
                return Ok(());
            }
            // Read past the end, so that the decoder reads and checks the trailer.
            match std::io::Read::read(&mut self.gzip, &mut [0; 1])? {
                0 => Ok(()),
                _ => Err(std::io::Error::other("the gzip holds more than its length")),
            }
        });
        Some(match read {
            Ok(()) => Ok(chunk),
            Err(e) => {
                self.remaining = 0;
                Err(e)
            }
        })
    }

    /// The bytes of text still to come.
    pub fn remaining(&self) -> usize {
        self.remaining
    }
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
    /// The families a registry keeps, by [`Id`]; `None` for the others.
    kept: Vec<Option<Kept>>,
    per_namespace: PerNamespace,
    /// Per-namespace series for at most this many namespaces of one workload; 0: no cap.
    namespaces_per_workload: usize,
    /// The last successful scan's per-namespace and per-container series. Once encoded, its
    /// rows are dropped but for the findings, which the sweeps add to: the scan part holds
    /// them, and a failed scan's exposition copies them from its text, inflated.
    view: ScanView,
    /// The findings that sweeps and events saw since the last scan: active until it.
    between_findings: Vec<FindingRow>,
    /// The last exposition, which begins with the scan's families encoded once a scan, held
    /// compressed.
    scan_part: ScanPart,
    /// Whether something the scan's part shows was recorded since it was encoded: a scan, a
    /// failed scan, the start. A name source's error found by a sweep waits for the next scan.
    scan_part_stale: bool,
}

/// A family that a registry keeps, as its kind keeps it.
enum Kept {
    Counter(IntCounterVec),
    Gauge(GaugeVec),
    Histogram(HistogramVec),
}

impl Kept {
    fn new(f: &Family) -> Kept {
        let opts = Opts::new(f.name, f.help);
        let made = match f.kind {
            Kind::Counter => IntCounterVec::new(opts, f.labels).map(Kept::Counter),
            Kind::Gauge => GaugeVec::new(opts, f.labels).map(Kept::Gauge),
            Kind::Histogram(buckets) => HistogramVec::new(
                HistogramOpts::from(opts).buckets(buckets.to_vec()),
                f.labels,
            )
            .map(Kept::Histogram),
        };
        let kept = made.unwrap_or_else(|e| panic!("{}: {e}", f.name));
        // A family without labels is always there; one with labels from the start where every
        // label has its values listed.
        if f.preset.len() == f.labels.len() {
            let lists: Vec<Vec<&str>> = f.preset.iter().map(|values| values()).collect();
            for values in combinations(&lists) {
                kept.touch(&values);
            }
        }
        kept
    }

    /// Makes the series of `values` exist, at 0.
    fn touch(&self, values: &[&str]) {
        match self {
            Kept::Counter(v) => drop(v.with_label_values(values)),
            Kept::Gauge(v) => drop(v.with_label_values(values)),
            Kept::Histogram(v) => drop(v.with_label_values(values)),
        }
    }

    fn collector(&self) -> Box<dyn Collector> {
        match self {
            Kept::Counter(v) => Box::new(v.clone()),
            Kept::Gauge(v) => Box::new(v.clone()),
            Kept::Histogram(v) => Box::new(v.clone()),
        }
    }
}

/// Every combination of one value from each list, in order; one empty combination of none.
fn combinations<'a>(lists: &[Vec<&'a str>]) -> Vec<Vec<&'a str>> {
    lists.iter().fold(vec![Vec::new()], |done, list| {
        done.iter()
            .flat_map(|head| {
                list.iter().map(move |v| {
                    let mut c = head.clone();
                    c.push(*v);
                    c
                })
            })
            .collect()
    })
}

/// Which namespaces get per-namespace series (`namespace_processes`, `namespace_info`,
/// `namespace_start_time_seconds`): a series budget for big nodes and big clusters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PerNamespace {
    /// Every namespace.
    All,
    /// The host's namespaces and those holding several workloads: where every finding is.
    Shared,
    /// None: per-type counts, lifecycle, findings and self-metrics only.
    None,
}

/// What happened, as the scan loop hands it to [`Metrics::record`].
pub enum Outcome<'a> {
    /// The loop started: the host's cgroup layout, which cannot change without a reboot, and
    /// what runs between scans, whose families are exported only where it runs.
    Started {
        cgroup_layout: CgroupLayout,
        between: BetweenScans,
    },
    /// A scan that succeeded.
    Scan(ScanRecord<'a>),
    /// A scan that failed. Everything the last good scan set stays as it was.
    ScanFailed(FailureReason),
    /// A sweep: processes read (new, and moved), processes re-checked in place, and the
    /// findings it saw first, which stay active until the next scan.
    Sweep {
        processes: usize,
        rechecked: u64,
        new_findings: &'a [Finding],
    },
    /// A batch of events: how many pids the proc connector named, how many processes could
    /// be read, the findings they made (as a sweep's), and the eBPF source's namespace
    /// changes.
    Events {
        proc_events: usize,
        read: usize,
        new_findings: &'a [Finding],
        changes: &'a [NsChange],
    },
    /// A failed read of a file that names containers.
    NameSourceError {
        source: NameSource,
        reason: NameErrorReason,
    },
    /// The totals of what the event readers lost so far, counted on their own threads.
    ReaderLosses {
        proc_events: Option<&'a Drops>,
        ebpf: Option<&'a Lost>,
    },
}

/// What one successful scan left, for [`Outcome::Scan`].
pub struct ScanRecord<'a> {
    pub snapshot: &'a Snapshot,
    pub changes: &'a Changes,
    pub errors: &'a ScanErrors,
    /// Of those, by reason, the processes that failed the same way in the scan before.
    pub standing_errors: [u64; ErrorReason::ALL.len()],
    /// Namespaces whose kernel id the scan asked for.
    pub id_queries: u64,
    /// The tracker after the scan: each live namespace's estimated creation.
    pub tracker: &'a Tracker,
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

/// The container labels of a row, in the order of the labels that follow `type` (and `rule`)
/// in the families that name containers.
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

/// A family's name and help, as the `prometheus` crate takes them.
fn opts(id: Id) -> Opts {
    let f = id.family();
    Opts::new(f.name, f.help)
}

/// A gauge's value from a count.
fn count(n: u64) -> f64 {
    n as f64
}

impl Metrics {
    /// Makes every family of [`FAMILIES`] and registers those exported whatever runs between
    /// scans (the rest at [`Outcome::Started`]). `own_procfs` is where the exporter reads its
    /// own process metrics (`/proc`, whatever procfs it scans); `scan_interval` is exported so
    /// that an alert can tell a stale last scan from a slow interval; `per_namespace` says
    /// which namespaces get per-namespace series, and `namespaces_per_workload` for how many
    /// of one workload's at most (0: no cap).
    pub fn new(
        own_procfs: ProcFs,
        scan_interval: Duration,
        per_namespace: PerNamespace,
        namespaces_per_workload: usize,
    ) -> Self {
        let mut m = Metrics {
            registry: Registry::new(),
            live: Registry::new(),
            kept: FAMILIES
                .iter()
                .map(|f| (f.written_by == WrittenBy::Registry).then(|| Kept::new(f)))
                .collect(),
            per_namespace,
            namespaces_per_workload,
            view: ScanView::default(),
            between_findings: Vec::new(),
            scan_part: ScanPart::default(),
            scan_part_stale: true,
        };
        m.register(|when| when == When::Always);
        m.gauge(
            Id::BuildInfo,
            &[env!("CARGO_PKG_VERSION"), env!("BUILD_GIT_REVISION")],
        )
        .set(1.0);
        m.gauge(Id::ScanInterval, &[])
            .set(scan_interval.as_secs_f64());
        let own = SelfProcessCollector::new(own_procfs);
        m.registry_of(Id::ProcessCpu.family().part)
            .register(Box::new(own))
            .expect("metric names are unique");
        m
    }

    /// Registers the families a registry keeps whose [`When`] `wanted` takes.
    fn register(&mut self, wanted: impl Fn(When) -> bool) {
        for (f, kept) in FAMILIES.iter().zip(&self.kept) {
            let Some(kept) = kept.as_ref().filter(|_| wanted(f.when)) else {
                continue;
            };
            // Registering twice is refused, and harmless: the family is already there.
            let _ = self.registry_of(f.part).register(kept.collector());
        }
    }

    fn registry_of(&self, part: Part) -> &Registry {
        match part {
            Part::Scan => &self.registry,
            Part::Live => &self.live,
        }
    }

    fn kept(&self, id: Id) -> &Kept {
        self.kept[id.index()]
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not kept by a registry", id.family().name))
    }

    fn counters(&self, id: Id) -> &IntCounterVec {
        match self.kept(id) {
            Kept::Counter(v) => v,
            _ => panic!("{} is not a counter", id.family().name),
        }
    }

    fn gauges(&self, id: Id) -> &GaugeVec {
        match self.kept(id) {
            Kept::Gauge(v) => v,
            _ => panic!("{} is not a gauge", id.family().name),
        }
    }

    fn counter(&self, id: Id, labels: &[&str]) -> IntCounter {
        self.counters(id).with_label_values(labels)
    }

    fn gauge(&self, id: Id, labels: &[&str]) -> Gauge {
        self.gauges(id).with_label_values(labels)
    }

    fn histogram(&self, id: Id, labels: &[&str]) -> Histogram {
        match self.kept(id) {
            Kept::Histogram(v) => v.with_label_values(labels),
            _ => panic!("{} is not a histogram", id.family().name),
        }
    }

    /// Records what happened: the one way anything reaches a family.
    pub fn record(&mut self, outcome: Outcome<'_>) {
        match outcome {
            Outcome::Started {
                cgroup_layout,
                between,
            } => {
                for l in CgroupLayout::ALL {
                    self.gauge(Id::CgroupLayout, &[l.as_str()])
                        .set(f64::from(u8::from(l == cgroup_layout)));
                }
                self.register(|when| when != When::Always && when.holds(between));
                self.scan_part_stale = true;
            }
            Outcome::Scan(scan) => {
                self.record_scan(&scan);
                self.scan_part_stale = true;
            }
            Outcome::ScanFailed(reason) => {
                self.counter(Id::Scans, &[]).inc();
                self.gauge(Id::ScanSuccess, &[]).set(0.0);
                self.counter(Id::ScanFailures, &[reason.as_str()]).inc();
                self.scan_part_stale = true;
            }
            Outcome::Sweep {
                processes,
                rechecked,
                new_findings,
            } => {
                self.counter(Id::Sweeps, &[]).inc();
                self.counter(Id::SweepProcesses, &[])
                    .inc_by(processes as u64);
                self.counter(Id::SweepRechecked, &[]).inc_by(rechecked);
                self.record_between(new_findings);
            }
            Outcome::Events {
                proc_events,
                read,
                new_findings,
                changes,
            } => {
                self.counter(Id::ProcEvents, &[]).inc_by(proc_events as u64);
                self.counter(Id::SweepProcesses, &[]).inc_by(read as u64);
                self.record_between(new_findings);
                for change in changes {
                    for id in change.entered() {
                        self.counter(
                            Id::EbpfChanges,
                            &[change.syscall.as_str(), id.ns_type.as_str()],
                        )
                        .inc();
                    }
                }
            }
            Outcome::NameSourceError { source, reason } => {
                self.counter(Id::NameSourceErrors, &[source.as_str(), reason.as_str()])
                    .inc();
            }
            Outcome::ReaderLosses { proc_events, ebpf } => {
                // Brought up to the readers' totals.
                let up_to = |counter: IntCounter, total: u64| {
                    counter.inc_by(total.saturating_sub(counter.get()));
                };
                if let Some(drops) = proc_events {
                    for reason in DropReason::ALL {
                        up_to(
                            self.counter(Id::ProcEventsDropped, &[reason.as_str()]),
                            drops.count(reason),
                        );
                    }
                }
                if let Some(lost) = ebpf {
                    for reason in LostReason::ALL {
                        up_to(
                            self.counter(Id::EbpfLost, &[reason.as_str()]),
                            lost.count(reason),
                        );
                    }
                }
            }
        }
    }

    /// Counts findings as they first appear, whoever saw them: a scan, a sweep or an event.
    fn count_findings(&self, new_findings: &[(Rule, NsType)]) {
        for (rule, t) in new_findings {
            self.counter(Id::FindingsTotal, &[rule.as_str(), t.as_str()])
                .inc();
        }
    }

    /// The findings a sweep or a batch of events saw first: counted, and active until the
    /// next scan.
    fn record_between(&mut self, new_findings: &[Finding]) {
        let keys: Vec<(Rule, NsType)> = new_findings.iter().map(|f| (f.rule, f.ns_type)).collect();
        self.count_findings(&keys);
        self.between_findings
            .extend(new_findings.iter().map(finding_row));
    }

    /// Records one successful scan: its snapshot, the tracker's view after it, its changes,
    /// errors and sharing.
    fn record_scan(&mut self, record: &ScanRecord<'_>) {
        let ScanRecord {
            snapshot,
            tracker,
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
        self.counter(Id::Scans, &[]).inc();
        self.gauge(Id::ScanSuccess, &[]).set(1.0);
        self.histogram(Id::ScanDuration, &[])
            .observe(duration.as_secs_f64());
        self.gauge(Id::LastScan, &[]).set(
            snapshot
                .taken_at
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        self.gauge(Id::Processes, &[])
            .set(count(snapshot.processes.len() as u64));
        for method in Identity::ALL {
            self.gauge(Id::Identity, &[method.as_str()])
                .set(f64::from(u8::from(snapshot.identity == method)));
        }
        self.counter(Id::IdQueries, &[]).inc_by(id_queries);
        for source in crate::model::HostSource::ALL {
            self.gauge(Id::HostSource, &[source.as_str()])
                .set(f64::from(u8::from(snapshot.host.source == source)));
        }
        for reason in ErrorReason::ALL {
            let standing = standing_errors[reason.index()];
            self.counter(Id::ScanErrors, &[reason.as_str()])
                .inc_by(errors.count(reason).saturating_sub(standing));
            self.gauge(Id::ScanErrorsStanding, &[reason.as_str()])
                .set(count(standing));
        }
        for id in &changes.created {
            self.counter(Id::Created, &[id.ns_type.as_str()]).inc();
        }
        for (id, lifetime) in &changes.destroyed {
            let t = id.ns_type.as_str();
            self.counter(Id::Destroyed, &[t]).inc();
            self.histogram(Id::Lifetime, &[t]).observe(*lifetime);
        }

        self.count_findings(new_findings);
        let mut per_type = crate::model::PerType::splat(0u64);
        for ns in snapshot.namespaces.values() {
            per_type[ns.id.ns_type] += 1;
        }
        for t in NsType::ALL {
            self.gauge(Id::Namespaces, &[t.as_str()])
                .set(count(per_type[t]));
        }
        self.record_orphans(orphans);
        self.gauge(Id::FdsSkipped, &[]).set(count(fds_skipped));
        for reason in SocketSkip::ALL {
            self.gauge(Id::SocketsSkipped, &[reason.as_str()])
                .set(count(sockets_skipped[reason.index()]));
        }
        self.counter(Id::SocketQueries, &[]).inc_by(socket_queries);
        let (view, over_cap) = self.view_of(snapshot, tracker, sharing);
        self.view = view;
        self.gauge(Id::WorkloadsOverCap, &[]).set(count(over_cap));
        self.between_findings.clear();
    }

    /// Sets the orphan count of every type and `held_by`, and the oldest age where there is one.
    fn record_orphans(&mut self, orphans: &[Orphan]) {
        // At most 56 series (8 types, 7 holder sets): reset and refilled, so that an age goes
        // with its last orphan.
        self.gauges(Id::OrphanMaxAge).reset();
        for t in NsType::ALL {
            for held_by in HeldBy::orphan_values() {
                let these = orphans
                    .iter()
                    .filter(|o| o.id.ns_type == t && o.held_by == held_by);
                let (n, oldest) = these.fold((0, 0.0f64), |(n, a), o| (n + 1, a.max(o.age)));
                let labels = [t.as_str(), held_by.as_str()];
                self.gauge(Id::Orphans, &labels).set(count(n));
                if n > 0 {
                    self.gauge(Id::OrphanMaxAge, &labels).set(oldest);
                }
            }
        }
    }

    /// The per-namespace and per-container series of one scan, with their label values, and
    /// how many workloads are over the cap.
    fn view_of(
        &self,
        snapshot: &Snapshot,
        tracker: &Tracker,
        sharing: &Sharing,
    ) -> (ScanView, u64) {
        let unattributed = Arc::new(Ownership::default());
        let owner_of = |id| sharing.owners.get(&id).unwrap_or(&unattributed);
        // Whatever the per-namespace choice, a workload over the cap is counted and shows.
        let beyond = cap::beyond_cap(
            snapshot.namespaces.values().map(|ns| cap::Candidate {
                id: ns.id,
                host: snapshot.host.contains(ns.id),
                ownership: owner_of(ns.id),
                members: !ns.members.is_empty(),
                start_ticks: tracker.start_ticks(ns.id),
            }),
            self.namespaces_per_workload,
        );
        let namespaces = snapshot
            .namespaces
            .values()
            .filter(|ns| !beyond.namespaces.contains(&ns.id))
            .filter_map(|ns| {
                let host = snapshot.host.contains(ns.id);
                let o = owner_of(ns.id);
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
                    start_time: tracker.start_ticks(ns.id).map(|t| snapshot.time.unix(t)),
                    held_by: ns.held_by(),
                    pinned_at: pinned_at(&ns.mount_paths()),
                    userns: ns.owner.map_or_else(String::new, |i| i.to_string()),
                    parent: ns.parent.map_or_else(String::new, |i| i.to_string()),
                })
            })
            .collect();
        let view = ScanView {
            namespaces,
            beyond_cap: beyond.rows,
            host_sharing: sharing
                .host
                .iter()
                .map(|h| HostSharingRow {
                    ns_type: h.ns_type,
                    workload: workload_values(&h.container),
                })
                .collect(),
            findings: sharing.findings.iter().map(finding_row).collect(),
            encoded: false,
        };
        (view, beyond.workloads)
    }

    /// The exposition as recorded so far, to publish: the scan's families encoded again where
    /// a scan (or a failed one, or the start) was recorded since, else as they were encoded;
    /// then the live families anew, which costs their few lines, their compression, and a
    /// copy of the scan's part.
    pub fn exposition(&mut self) -> Exposition {
        if !std::mem::replace(&mut self.scan_part_stale, false) {
            let mut live = Vec::with_capacity(4096);
            self.write_live(&mut live);
            self.scan_part = self.scan_part.with(&live);
            return self.scan_part.exposition();
        }
        // The scan's families compressed as they are written: their text (2.1 MB at 10,000
        // processes) is never held whole.
        let mut out = ScanWriter::new(self.scan_part.gzip.len());
        let (view, old) = (&self.view, &self.scan_part);
        // A failed scan: the last good scan's series, as they were written, from its text
        // inflated once for them (a rare path: the text is kept by no one).
        let old_text = view.encoded.then(|| old.text());
        let write_view = |id: Id, out: &mut ScanWriter| {
            let last = old.view_range(id).zip(old_text.as_deref());
            match last {
                Some((range, old_text)) => {
                    for piece in old_text[range].chunks(SPILL) {
                        out.buf().extend_from_slice(piece);
                        out.whole();
                    }
                }
                None => view.write_family(id, out),
            }
        };
        let view_ranges = write_families(&self.registry, Part::Scan, &mut out, write_view);
        drop(old_text);
        let mut live = Vec::with_capacity(4096);
        self.write_live(&mut live);
        self.scan_part = out.finish(&live, view_ranges);
        // A row per namespace is 0.9 MiB at 10,000 processes, held through the next scan's
        // peak for nothing: the gzip has them.
        self.view.namespaces = Vec::new();
        self.view.beyond_cap = Vec::new();
        self.view.host_sharing = Vec::new();
        self.view.encoded = true;
        self.scan_part.exposition()
    }

    /// Appends the live families, with the findings of the last scan and those since.
    fn write_live(&self, out: &mut Vec<u8>) {
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
        write_families(&self.live, Part::Live, out, |id, out| {
            findings.write_family(id, out)
        });
    }
}

/// Where a family a view writes went in an exposition's text.
type ViewRanges = Vec<(Id, Range<usize>)>;

/// Writes the families of `registry` and the families of `part` that a view writes in one
/// name order, as a registry holding them all would write them; `write_view(id, out)` writes
/// the latter. Where each of those went in `out`.
fn write_families<O: TextOut>(
    registry: &Registry,
    part: Part,
    out: &mut O,
    mut write_view: impl FnMut(Id, &mut O),
) -> ViewRanges {
    enum Source<'a> {
        Registry(&'a prometheus::proto::MetricFamily),
        View(Id),
    }
    let registered = registry.gather();
    let mut families: Vec<(&str, Source<'_>)> = registered
        .iter()
        .map(|f| (f.name(), Source::Registry(f)))
        .chain(Family::all(WrittenBy::View, part).map(|(id, f)| (f.name, Source::View(id))))
        .collect();
    families.sort_unstable_by_key(|(name, _)| *name);
    let encoder = TextEncoder::new();
    let mut ranges = ViewRanges::new();
    for (_, source) in families {
        match source {
            Source::Registry(family) => encoder
                .encode(std::slice::from_ref(family), out.buf())
                .expect("encoding to a Vec cannot fail"),
            Source::View(id) => {
                let start = out.written();
                write_view(id, out);
                ranges.push((id, start..out.written()));
            }
        }
        out.whole();
    }
    ranges
}

/// The last exposition, whose text begins with the scan's families, encoded once a scan; held
/// as its gzip only. The gzip is one member: the scan's families as raw deflate ended by a
/// sync flush, then the live families as deflate blocks of their own (RFC 1951 §3.2.4, RFC
/// 1952), so that a sweep compresses only its own few lines; the CRC of the whole is combined
/// from the parts'. The exposition served and the scan's part are one allocation: a sweep
/// copies the scan's deflate into its new exposition, and the old one goes when nothing
/// serves it any longer.
#[derive(Default)]
struct ScanPart {
    /// The length of the text: the scan's families, then the live ones.
    text_len: usize,
    /// Where the scan's families end in the text.
    scan_len: usize,
    gzip: Bytes,
    /// Where the scan's deflate ends in `gzip`.
    deflate_end: usize,
    /// The CRC of the scan's families.
    crc: flate2::Crc,
    /// Where each family a view writes into the scan's part is in the text.
    view_ranges: ViewRanges,
}

/// The gzip header: deflate, no flags, no time, unknown OS (as flate2 writes it).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

impl ScanPart {
    /// `text`: the scan's families, its first `scan_len` bytes, then the live ones.
    fn new(text: &[u8], scan_len: usize, view_ranges: ViewRanges) -> ScanPart {
        let (scan, live) = text.split_at(scan_len);
        let mut out = ScanWriter::new(text.len() / 16);
        out.buf().extend_from_slice(scan);
        out.finish(live, view_ranges)
    }

    /// The same scan's families followed by `live`: their deflate copied, not their text.
    fn with(&self, live: &[u8]) -> ScanPart {
        let mut gzip = Vec::with_capacity(self.deflate_end + live.len() / 4 + 64);
        gzip.extend_from_slice(&self.gzip[..self.deflate_end]);
        finish_gzip(&self.crc, live, &mut gzip);
        ScanPart {
            text_len: self.scan_len + live.len(),
            scan_len: self.scan_len,
            gzip: exact(gzip),
            deflate_end: self.deflate_end,
            crc: {
                let mut crc = flate2::Crc::new();
                crc.combine(&self.crc);
                crc
            },
            view_ranges: self.view_ranges.clone(),
        }
    }

    /// Where family `id` is in the text, if a view wrote it there.
    fn view_range(&self, id: Id) -> Option<Range<usize>> {
        self.view_ranges
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, r)| r.clone())
    }

    fn exposition(&self) -> Exposition {
        Exposition {
            gzip: self.gzip.clone(),
            text_len: self.text_len,
        }
    }

    /// The text, inflated.
    fn text(&self) -> Vec<u8> {
        self.exposition().text()
    }
}

/// The scan's families written ([`TextOut`]) and compressed as they are: a gzip header, then
/// raw deflate of every [`SPILL`] bytes of text, so that no more text than that is held.
struct ScanWriter {
    /// Text written and not yet compressed.
    pending: Vec<u8>,
    /// Text compressed.
    compressed: usize,
    deflate: flate2::Compress,
    crc: flate2::Crc,
    gzip: Vec<u8>,
}

/// How much text is written before it is compressed: a few hundred samples.
const SPILL: usize = 64 * 1024;

impl ScanWriter {
    /// A writer whose gzip is expected to come to about `gzip_len` bytes (the last one's).
    fn new(gzip_len: usize) -> ScanWriter {
        let mut gzip = Vec::with_capacity(GZIP_HEADER.len() + gzip_len + gzip_len / 8 + 1024);
        gzip.extend_from_slice(&GZIP_HEADER);
        ScanWriter {
            // Room for a sample beyond the spill, so that it rarely grows.
            pending: Vec::with_capacity(2 * SPILL),
            compressed: 0,
            deflate: flate2::Compress::new(flate2::Compression::fast(), false),
            crc: flate2::Crc::new(),
            gzip,
        }
    }

    fn compress_pending(&mut self, flush: flate2::FlushCompress) {
        self.crc.update(&self.pending);
        deflate(&mut self.deflate, &self.pending, flush, &mut self.gzip);
        self.compressed += self.pending.len();
        self.pending.clear();
    }

    /// The scan's part: the families written, ended by a sync flush, then `live` (the live
    /// families' text) as the gzip's last blocks.
    fn finish(mut self, live: &[u8], view_ranges: ViewRanges) -> ScanPart {
        self.compress_pending(flate2::FlushCompress::Sync);
        let ScanWriter {
            compressed,
            crc,
            mut gzip,
            ..
        } = self;
        let deflate_end = gzip.len();
        finish_gzip(&crc, live, &mut gzip);
        ScanPart {
            text_len: compressed + live.len(),
            scan_len: compressed,
            gzip: exact(gzip),
            deflate_end,
            crc,
            view_ranges,
        }
    }
}

impl TextOut for ScanWriter {
    fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    fn written(&self) -> usize {
        self.compressed + self.pending.len()
    }

    fn whole(&mut self) {
        if self.pending.len() >= SPILL {
            self.compress_pending(flate2::FlushCompress::None);
        }
    }
}

/// `gzip` as bytes that hold no more than its length: bytes made from a vector keep its whole
/// capacity, which the compressor's estimate and its doubling leave well above the length.
fn exact(mut gzip: Vec<u8>) -> Bytes {
    gzip.shrink_to_fit();
    gzip.into()
}

/// Appends `live` as the last deflate blocks, and the gzip trailer: the CRC of the whole
/// (`scan`'s combined with `live`'s) and its length.
fn finish_gzip(scan: &flate2::Crc, live: &[u8], gzip: &mut Vec<u8>) {
    let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
    deflate(&mut c, live, flate2::FlushCompress::Finish, gzip);
    let mut crc = flate2::Crc::new();
    crc.combine(scan);
    let mut live_crc = flate2::Crc::new();
    live_crc.update(live);
    crc.combine(&live_crc);
    gzip.extend_from_slice(&crc.sum().to_le_bytes());
    gzip.extend_from_slice(&crc.amount().to_le_bytes());
}

/// Appends `input` to `out` as raw deflate by `c`, then `flush`: `None` leaves what `c` holds
/// back for the next input, `Sync` leaves the stream open on a byte boundary, `Finish` closes
/// it with a final block.
fn deflate(
    c: &mut flate2::Compress,
    input: &[u8],
    flush: flate2::FlushCompress,
    out: &mut Vec<u8>,
) {
    let start = c.total_in();
    let consumed = |c: &flate2::Compress| (c.total_in() - start) as usize;
    out.reserve(64);
    loop {
        let status = c
            .compress_vec(&input[consumed(c)..], out, flush)
            .expect("deflate of a buffer cannot fail");
        let done = consumed(c) == input.len()
            && match flush {
                flate2::FlushCompress::None => true,
                flate2::FlushCompress::Finish => status == flate2::Status::StreamEnd,
                // A sync flush is complete once it left room in the output.
                _ => out.len() < out.capacity(),
            };
        if done {
            return;
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
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use super::*;

    pub(crate) fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut out).unwrap();
        out
    }

    /// The text as a plain scrape is sent it: chunks of at most `max` bytes, each checked.
    pub(crate) fn plain_in_chunks(e: &Exposition, max: usize) -> Vec<u8> {
        let mut plain = e.plain();
        let mut text = Vec::new();
        while let Some(chunk) = plain.next_chunk(max) {
            let chunk = chunk.unwrap();
            assert!(!chunk.is_empty() && chunk.len() <= max, "{}", chunk.len());
            text.extend_from_slice(&chunk);
            assert_eq!(plain.remaining(), e.text_len() - text.len());
        }
        assert_eq!(text.len(), e.text_len());
        text
    }

    /// The scan's part compressed once, the live part after it: one gzip member that any
    /// decoder reads as the whole text, with the right CRC and length (GzDecoder checks both).
    #[test]
    fn the_live_part_follows_the_scan_part_in_one_gzip_member() {
        let scan: Vec<u8> = (0..50_000)
            .flat_map(|i| format!("scan_line {i}\n").into_bytes())
            .collect();
        let first = [&scan[..], b"live 0\n"].concat();
        let part = ScanPart::new(&first, scan.len(), ViewRanges::new());
        assert_eq!(part.exposition().text(), first);
        assert_eq!(part.exposition().text_len(), first.len());
        assert_eq!(gunzip(part.exposition().gzip()), first);
        for live in [&b""[..], b"live 1\n", &[b'x'; 100_000]] {
            let e = part.with(live).exposition();
            let whole = [&scan[..], live].concat();
            assert_eq!(e.text(), whole);
            assert_eq!(e.text_len(), whole.len());
            assert_eq!(gunzip(e.gzip()), whole);
            assert_eq!(plain_in_chunks(&e, 64 * 1024), whole);
            // A single member: the decoder that stops at the first member reads it all too.
            let mut single = Vec::new();
            let mut d = flate2::bufread::GzDecoder::new(&e.gzip()[..]);
            std::io::Read::read_to_end(&mut d, &mut single).unwrap();
            assert_eq!(single, whole);
        }
        // Compressed once: the live part costs its own size, not the scan's.
        let small = part.with(b"live 1\n");
        assert!(small.gzip.len() < part.deflate_end + 64);
        // A sweep after a sweep keeps the scan's part and only it.
        let again = part.with(b"live 1\n").with(b"live 2\n").exposition();
        assert_eq!(gunzip(again.gzip()), [&scan[..], b"live 2\n"].concat());
        assert_eq!(again.text(), [&scan[..], b"live 2\n"].concat());
        let empty = ScanPart::new(&[], 0, ViewRanges::new()).exposition();
        assert_eq!(gunzip(empty.gzip()), b"");
        assert_eq!(empty.text(), b"");
        assert_eq!(
            empty.plain().next_chunk(64 * 1024).map(|c| c.unwrap()),
            None
        );
    }

    /// The text comes in chunks of at most the size asked for, in order, and the last only
    /// once the gzip's CRC and length agree with it: a gzip that is not the text's ends in an
    /// error, not in a text that looks whole.
    #[test]
    fn the_text_is_inflated_a_chunk_at_a_time_and_checked_at_the_end() {
        let text: Vec<u8> = (0..40_000)
            .flat_map(|i| format!("nsexporter_line{{inode=\"{i}\"}} {}\n", i % 7).into_bytes())
            .collect();
        let e = Exposition::of_text(&text);
        assert_eq!(e.text_len(), text.len());
        for max in [1000, 64 * 1024, text.len() - 1, text.len(), usize::MAX] {
            assert_eq!(plain_in_chunks(&e, max), text, "{max}");
        }
        let chunks = std::iter::from_fn({
            let mut plain = e.plain();
            move || plain.next_chunk(64 * 1024)
        });
        assert_eq!(chunks.count(), text.len().div_ceil(64 * 1024));
        // The CRC's first byte flipped, then the length's: every chunk but the last comes,
        // and then an error.
        for at in [8, 4] {
            let mut gzip = e.gzip().to_vec();
            let n = gzip.len();
            gzip[n - at] ^= 1;
            let bad = Exposition {
                gzip: gzip.into(),
                text_len: e.text_len(),
            };
            let mut plain = bad.plain();
            let mut got = Vec::new();
            let error = loop {
                match plain.next_chunk(64 * 1024) {
                    Some(Ok(chunk)) => got.extend_from_slice(&chunk),
                    Some(Err(e)) => break e,
                    None => panic!("a bad trailer was not noticed"),
                }
            };
            assert!(got.len() < text.len(), "{error}");
            assert!(plain.next_chunk(64 * 1024).is_none());
        }
    }

    thread_local! {
        /// The bytes this thread has allocated and not freed (less any it freed of another's),
        /// and the most it held since [`peak_reset`].
        static HELD: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn held() -> isize {
        HELD.with(Cell::get)
    }

    fn peak() -> isize {
        PEAK.with(Cell::get)
    }

    fn peak_reset() {
        PEAK.with(|peak| peak.set(held()));
    }

    fn count(delta: isize) {
        // During a thread's teardown the cells may be gone: nothing to count then.
        let _ = HELD.try_with(|held| {
            held.set(held.get() + delta);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(held.get())));
        });
    }

    /// The system allocator, counting what each thread holds (a cell of its own, so that the
    /// tests beside it do not count), for the test that an exposition holds its gzip alone.
    struct PerThread;

    // A global allocator is unsafe by signature.
    #[allow(unsafe_code)]
    // SAFETY: every call is passed to `System` unchanged; the counter only observes it, and a
    // const-initialized thread-local cell neither allocates nor registers a destructor.
    unsafe impl GlobalAlloc for PerThread {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as the trait's contract, passed on.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                count(layout.size() as isize);
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as the trait's contract, passed on.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                count(layout.size() as isize);
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as the trait's contract, passed on.
            unsafe { System.dealloc(ptr, layout) };
            count(-(layout.size() as isize));
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as the trait's contract, passed on.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                count(new_size as isize - layout.size() as isize);
            }
            p
        }
    }

    #[global_allocator]
    static PER_THREAD: PerThread = PerThread;

    /// Metrics whose view holds `n` namespaces, as after a scan.
    fn metrics_with_namespaces(n: u64) -> Metrics {
        let procfs = ProcFs::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc"));
        let mut m = Metrics::new(procfs, Duration::from_secs(15), PerNamespace::All, 0);
        let ownership = Arc::new(Ownership::default());
        m.view = ScanView {
            namespaces: (0..n)
                .map(|i| NamespaceRow {
                    ns_type: NsType::ALL[i as usize % NsType::ALL.len()],
                    inode: 4_026_532_000 + i,
                    processes: 1 + (i % 5) as u32,
                    host: false,
                    ownership: Arc::clone(&ownership),
                    start_time: Some(1.7e9 + i as f64),
                    held_by: HeldBy::default().with(crate::model::Holder::Process),
                    pinned_at: String::new(),
                    userns: String::new(),
                    parent: String::new(),
                })
                .collect(),
            ..ScanView::default()
        };
        m
    }

    /// At 10,000 processes the text is 2.1 MB and its gzip 87 KB; the exposition served holds
    /// the gzip and nothing more, after a scan's encode and after a sweep's. Measured as what
    /// this thread still holds once the metrics are gone and the exposition alone is left.
    #[test]
    fn an_exposition_holds_its_gzip_and_no_text() {
        // The first encode's one-time allocations (the registries' lazy parts) out of the way.
        drop(metrics_with_namespaces(10).exposition());
        for sweep in [false, true] {
            let before = held();
            let e = {
                let mut m = metrics_with_namespaces(6_000);
                let e = m.exposition();
                if sweep {
                    m.record(Outcome::Sweep {
                        processes: 1,
                        rechecked: 0,
                        new_findings: &[],
                    });
                    drop(e);
                    m.exposition()
                } else {
                    e
                }
            };
            let holds = held() - before;
            let (gzip, text) = (e.gzip().len() as isize, e.text_len() as isize);
            let said = format!("sweep {sweep}: text {text} bytes, gzip {gzip}, held {holds}");
            assert!(text > 1_000_000, "{said}");
            assert!(
                (gzip..gzip + 1024).contains(&holds),
                "the exposition holds more than its gzip: {said}"
            );
            eprintln!("{said}");
        }
    }

    /// The scan's families are compressed as they are written: the encode never holds their
    /// text whole (2.2 MB here), nor its own copy of the last. What it holds at its peak,
    /// beyond what it started with, is the view's sorting (an inode string and an index a
    /// row), the compressor's state, a spill of text and the gzip.
    #[test]
    fn the_encode_never_holds_the_text_whole() {
        drop(metrics_with_namespaces(10).exposition());
        let mut m = metrics_with_namespaces(6_000);
        for what in ["a scan", "a failed scan"] {
            let start = held();
            peak_reset();
            let e = m.exposition();
            let above = peak() - start;
            let text = e.text_len() as isize;
            let said =
                format!("{what}: text {text} bytes, the encode's peak {above} above its start");
            eprintln!("{said}");
            assert!(text > 2_000_000, "{said}");
            if what == "a scan" {
                assert!(above < text / 2, "{said}");
                m.record(Outcome::ScanFailed(FailureReason::NoProcesses));
            }
        }
    }

    /// After the encode the view's rows are gone; a failed scan's exposition still carries
    /// the last good scan's series, copied from the text, and so do a sweep's and the next
    /// failed scan's.
    #[test]
    fn a_failed_scan_keeps_the_last_good_series_without_the_rows() {
        let mut m = metrics_with_namespaces(2);
        let view_families: Vec<&str> = Family::all(WrittenBy::View, Part::Scan)
            .map(|(_, f)| f.name)
            .collect();
        let series = |e: &Exposition| -> Vec<String> {
            let text = e.text();
            assert_eq!(gunzip(e.gzip()), text);
            assert_eq!(plain_in_chunks(e, 100), text);
            String::from_utf8_lossy(&text)
                .lines()
                .filter(|l| {
                    view_families
                        .iter()
                        .any(|f| l.strip_prefix(f).is_some_and(|r| r.starts_with('{')))
                })
                .map(str::to_owned)
                .collect()
        };
        let good = series(&m.exposition());
        assert_eq!(good.len(), 6, "{good:?}");
        assert!(m.view.namespaces.is_empty());
        for _ in 0..2 {
            m.record(Outcome::ScanFailed(FailureReason::NoProcesses));
            let failed = m.exposition();
            assert_eq!(series(&failed), good);
            let text = String::from_utf8(failed.text()).unwrap();
            assert!(text.contains("nsexporter_scan_success 0"), "{text}");
            m.record(Outcome::Sweep {
                processes: 1,
                rechecked: 0,
                new_findings: &[],
            });
            assert_eq!(series(&m.exposition()), good);
        }
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
