//! Metrics: the Prometheus families nsexporter exports, recorded once per scan and encoded once.
//!
//! Every family is declared once, in [`families`]; what happened reaches them one way: the scan
//! loop hands [`Metrics::record`] one [`Outcome`] (a scan, a failed scan, a sweep, a batch of
//! events, a name source's error, the event readers' losses) and publishes
//! [`Metrics::exposition`].
//!
//! A scrape never waits for a scan: after each scan the whole exposition is encoded ([`encode`],
//! the one encoder) and gzipped as it is written ([`gzip`]) into an immutable [`Exposition`],
//! which holds the gzip alone and which the HTTP layer serves as is, or inflated for a client
//! that does not take gzip. Counters and histograms accumulate in the [`store`], reached
//! through each family's typed handle; everything per namespace and per container is one
//! [`ScanView`] per scan, written straight into the exposition ([`view`]), so no series
//! outlives its namespace and nothing is reset and refilled. How many per-namespace series
//! there are is the operator's choice ([`PerNamespace`]).

mod cap;
pub mod encode;
pub mod families;
pub mod gzip;
mod record;
#[cfg(test)]
pub(crate) mod scenario;
mod self_process;
pub mod store;
pub mod view;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::lifecycle::Tracker;
use crate::model::{Namespace, NamespaceId, NsType, Snapshot};
use crate::procfs::ProcFs;
use crate::sharing::{Finding, Owner, Ownership, Sharing};
// What the golden scenario and the tests below take from here, as when `record` lived here.
#[cfg(test)]
use crate::{
    events::LostReason,
    lifecycle::Orphan,
    model::{CgroupLayout, HeldBy},
    policy::Rule,
    scan::{FailureReason, pins::SocketSkip},
};

use encode::{TextOut, ViewRanges};
pub use families::BetweenScans;
use families::{Family, Id, Part, When, WrittenBy, handles as h};
pub use gzip::{Exposition, Plain};
use gzip::{SPILL, Spliced};
pub use record::{Outcome, ScanRecord};
use self_process::SelfProcess;
use store::Store;
use view::{FindingRow, HostSharingRow, NamespaceRow, NetRow, ScanView};

/// The exposition content type of the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every family nsexporter exports.
pub struct Metrics {
    /// The series that records set: counters and histograms that accumulate, gauges set from
    /// a scan's counts, and the exporter's own process.
    store: Store,
    /// What runs between scans, once the loop started: its families are exported only then,
    /// and only where it runs.
    between: Option<BetweenScans>,
    /// Where the `process_*` families are read from.
    own_process: SelfProcess,
    /// Whether the last read of the exporter's own process succeeded: else those families are
    /// left out, as a client library's process collector leaves them.
    own_process_read: bool,
    per_namespace: PerNamespace,
    /// Per-namespace series for at most this many namespaces of one workload; 0: no cap.
    namespaces_per_workload: usize,
    /// The last successful scan's per-namespace and per-container series. Once encoded, its
    /// rows are dropped but for the findings, which the sweeps add to: the scan part holds
    /// them, and a failed scan's exposition copies them from its text, inflated.
    view: ScanView,
    /// The findings that sweeps and events saw since the last scan: active until it.
    between_findings: Vec<FindingRow>,
    /// The last exposition: its head the scan's families, encoded once a scan, held
    /// compressed; its tail the live families.
    scan_part: Spliced,
    /// Where each family the view writes is in the scan part's text.
    view_ranges: ViewRanges,
    /// Whether something the scan's part shows was recorded since it was encoded: a scan, a
    /// failed scan, the start. A name source's error found by a sweep waits for the next scan.
    scan_part_stale: bool,
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

/// A gauge's value from a count.
fn count(n: u64) -> f64 {
    n as f64
}

impl Metrics {
    /// Makes every family of [`families::FAMILIES`], with its preset series; those of what runs
    /// between scans are exported from [`Outcome::Started`] on. `own_procfs` is where the exporter reads its
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
        let mut store = Store::default();
        store
            .gauge(
                h::BuildInfo,
                (env!("CARGO_PKG_VERSION"), env!("BUILD_GIT_REVISION")),
            )
            .set(1.0);
        store
            .gauge(h::ScanInterval, ())
            .set(scan_interval.as_secs_f64());
        // Unknown until a scan reads them: a limit of 0 would be a lie.
        store.reset(h::ConntrackLimit);
        store.reset(h::MountsLimit);
        Metrics {
            store,
            between: None,
            own_process: SelfProcess::new(own_procfs),
            own_process_read: false,
            per_namespace,
            namespaces_per_workload,
            view: ScanView::default(),
            between_findings: Vec::new(),
            scan_part: Spliced::default(),
            view_ranges: ViewRanges::new(),
            scan_part_stale: true,
        }
    }

    /// Whether family `f` is in the exposition: what runs between scans has its families
    /// only where it runs, and the exporter's own process only where it could be read.
    fn exported(&self, f: &Family) -> bool {
        let when = f.when == When::Always || self.between.is_some_and(|b| f.when.holds(b));
        when && (f.written_by != WrittenBy::OwnProcess || self.own_process_read)
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
        // Which namespaces have series of their own: not those beyond a workload's cap, and
        // as the per-namespace choice says.
        let keep = |ns: &Namespace| {
            let host = snapshot.host.contains(ns.id);
            let o = owner_of(ns.id);
            let keep = match self.per_namespace {
                PerNamespace::All => true,
                // The host's namespaces, and those of several workloads: where every
                // finding is, and what a sharing dashboard shows.
                PerNamespace::Shared => host || o.owner == Owner::Mixed,
                PerNamespace::None => false,
            };
            keep && !beyond.namespaces.contains(&ns.id)
        };
        let namespaces = snapshot
            .namespaces
            .values()
            .filter(|ns| keep(ns))
            .map(|ns| NamespaceRow {
                ns_type: ns.id.ns_type,
                inode: ns.id.inode,
                processes: u32::try_from(ns.members.len()).unwrap_or(u32::MAX),
                host: snapshot.host.contains(ns.id),
                ownership: Arc::clone(owner_of(ns.id)),
                start_time: tracker.start_ticks(ns.id).map(|t| snapshot.time.unix(t)),
                held_by: ns.held_by(),
                pinned_at: pinned_at(&ns.mount_paths()),
                userns: ns.owner.map_or_else(String::new, |i| i.to_string()),
                parent: ns.parent.map_or_else(String::new, |i| i.to_string()),
            })
            .collect();
        let kept = |ns_type, inode| {
            let id = NamespaceId { ns_type, inode };
            snapshot.namespaces.get(&id).is_some_and(keep)
        };
        let net = (snapshot.holds.net.iter())
            .filter(|(inode, _)| kept(NsType::Net, **inode))
            .map(|(inode, holds)| NetRow {
                inode: *inode,
                holds: holds.clone(),
            })
            .collect();
        let mounts = (snapshot.holds.mounts.iter())
            .filter(|(inode, _)| kept(NsType::Mnt, **inode))
            .map(|(inode, n)| (*inode, *n))
            .collect();
        let held_sockets = (snapshot.namespaces.values())
            .filter(|ns| ns.id.ns_type == NsType::Net && ns.members.is_empty())
            .filter(|ns| !ns.sockets().is_empty() && keep(ns))
            .map(|ns| (ns.id.inode, ns.distinct_sockets()))
            .collect();
        let view = ScanView {
            namespaces,
            net,
            mounts,
            held_sockets,
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
            privilege: Vec::new(),
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
        self.own_process_read = self.own_process.read_into(&mut self.store);
        // The scan's families compressed as they are written: their text (megabytes at
        // thousands of processes) is never held whole.
        let mut out = gzip::Writer::new(self.scan_part.gzip_len());
        let (view, old, old_ranges) = (&self.view, &self.scan_part, &self.view_ranges);
        // A failed scan: the last good scan's series, as they were written, from its text
        // inflated once for them (a rare path: the text is kept by no one).
        let old_text = view.encoded.then(|| old.text());
        let write_view = |id: Id, out: &mut gzip::Writer| {
            let last = view_range(old_ranges, id).zip(old_text.as_deref());
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
        let exported = |f: &Family| self.exported(f);
        let view_ranges =
            encode::write_part(&self.store, Part::Scan, exported, &mut out, write_view);
        drop(old_text);
        let mut live = Vec::with_capacity(4096);
        self.write_live(&mut live);
        self.scan_part = out.finish(&live);
        self.view_ranges = view_ranges;
        // A row per namespace, held through the next scan's peak for nothing: the gzip has
        // them.
        self.view.namespaces = Vec::new();
        self.view.net = Vec::new();
        self.view.mounts = Vec::new();
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
        let exported = |f: &Family| self.exported(f);
        encode::write_part(&self.store, Part::Live, exported, out, |id, out| {
            findings.write_family(id, out)
        });
    }
}

/// Where family `id` is in the last scan part's text, if the view wrote it there.
fn view_range(ranges: &ViewRanges, id: Id) -> Option<Range<usize>> {
    ranges
        .iter()
        .find(|(i, _)| *i == id)
        .map(|(_, r)| r.clone())
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

    use super::gzip::tests::{gunzip, plain_in_chunks};
    use super::*;

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
