//! Every way a metric is recorded, driven in one sequence and written out: the fixture tree's
//! scan, a name source's error, a sweep, a batch of events with eBPF changes, the readers'
//! losses, a failed scan, a scan after containers went, and the families of an exporter with
//! nothing between scans. The text is compared with `tests/fixtures/metrics-scenario.txt`, so
//! that a change to how metrics are recorded keeps the exposition as it was
//! (`UPDATE_GOLDEN=1 cargo test --lib metrics::scenario` rewrites it).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;

#[path = "../../tests/it/support/golden.rs"]
mod golden;
use crate::attribution::{Container, ContainerNames, NameErrorReason, NameSource, Names};
use crate::cgroup::Runtime;
use crate::events::{Drops, Lost};
use crate::model::{ChangeSyscall, Holder, NamespaceId, NsChange, PerType, ProcessId, ScanTime};
use crate::pipeline::{self, State};
use crate::policy::Policy;
use crate::scan::Scanner;
use crate::sharing::Declaration;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/metrics-scenario.txt"
);

/// The fixed clock of every scan here: the fixture's ticks, a boot at a fixed unix time.
fn at(ticks: u64) -> ScanTime {
    ScanTime {
        ticks,
        ticks_per_second: 100,
        boot_unix: 1_700_000_000.0,
    }
}

/// The fixture tree scanned, at `ticks`, with the processes of `drop` gone.
fn scan(ticks: u64, drop: &[i32]) -> crate::scan::ScanOutcome {
    let procfs = ProcFs::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc"));
    let pins = crate::scan::PinScan {
        mounts: false,
        fds: None,
    };
    let mut outcome = Scanner::new(procfs, crate::scan::ThreadScan::Containers, pins)
        .scan(None)
        .expect("the fixture scans");
    let s = &outcome.snapshot;
    let mut processes = s.processes.clone();
    processes.retain(|pid, _| !drop.contains(pid));
    let mut snapshot = Snapshot::from_processes(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + ticks / 100),
        at(ticks),
        processes,
        s.host.clone(),
    );
    snapshot.identity = s.identity;
    snapshot.limits = s.limits.clone();
    // What the namespaces hold, of those still there.
    snapshot.holds = s.holds.clone();
    let there = |ns_type, inode| {
        snapshot
            .namespaces
            .contains_key(&NamespaceId { ns_type, inode })
    };
    let net: Vec<u64> = snapshot.holds.net.keys().copied().collect();
    for inode in net.into_iter().filter(|&i| !there(NsType::Net, i)) {
        snapshot.holds.net.remove(&inode);
    }
    let mnt: Vec<u64> = snapshot.holds.mounts.keys().copied().collect();
    for inode in mnt.into_iter().filter(|&i| !there(NsType::Mnt, i)) {
        snapshot.holds.mounts.remove(&inode);
    }
    // A network namespace no process is in, kept by two sockets that pid 1 holds (one of
    // them by two fds), as the fd pass would find a leak: its held sockets are exported.
    let leak = NamespaceId {
        ns_type: NsType::Net,
        inode: 4026533100,
    };
    if let Some(p) = snapshot.processes.get(&1).map(|p| p.id) {
        let pins = snapshot
            .namespaces
            .entry(leak)
            .or_insert_with(|| crate::model::Namespace::new(leak))
            .pins_mut();
        for (fd, socket) in [(5, 77001), (6, 77002), (7, 77002)] {
            pins.sockets.push(crate::model::SocketPin {
                process: p,
                fd,
                socket,
            });
        }
    }
    outcome.snapshot = snapshot;
    outcome
}

fn container(id: &str) -> Arc<Container> {
    Arc::new(Container {
        id: id.into(),
        runtime: Runtime::Containerd,
        pod_uid: Some("uid-1".into()),
        names: Some(ContainerNames {
            container: "app".into(),
            pod: "web-1".into(),
            k8s_namespace: "default".into(),
            container_id: id.into(),
        }),
    })
}

pub(super) fn finding(rule: Rule, ns_type: NsType, id: &str) -> Finding {
    Finding {
        rule,
        ns_type,
        container: container(id),
        declared: Declaration::False,
        detail: None,
    }
}

pub(super) fn change(pid: i32, syscall: ChangeSyscall, entered: &[(NsType, u64)]) -> NsChange {
    let mut changed = PerType::splat(false);
    let mut namespaces = PerType::splat(None);
    for (t, inode) in entered {
        changed[*t] = true;
        namespaces[*t] = crate::model::inode(*inode);
    }
    NsChange {
        process: ProcessId {
            pid,
            start_ticks: 5000,
        },
        tid: pid,
        parent: None,
        syscall,
        changed,
        namespaces,
        comm: "sh".into(),
    }
}

/// Masks what is not the same from run to run: the exporter's own process, the revision.
fn masked(text: &[u8]) -> String {
    let text = std::str::from_utf8(text).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("process_") {
            let (series, _) = line.rsplit_once(' ').unwrap();
            out.push_str(&format!("{series} <masked>\n"));
        } else if line.starts_with("nsexporter_build_info{") {
            out.push_str("nsexporter_build_info{revision=\"<masked>\",version=\"<masked>\"} 1\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn section(out: &mut String, title: &str, e: &Exposition) {
    let text = e.text();
    assert_eq!(
        super::gzip::tests::gunzip(e.gzip()),
        text,
        "{title}: the gzip is the text"
    );
    assert_eq!(
        super::gzip::tests::plain_in_chunks(e, 1000),
        text,
        "{title}: the text inflated a chunk at a time"
    );
    out.push_str(&format!("=== {title}\n"));
    out.push_str(&masked(&text));
}

/// The pipeline's state across the scenario's scans: each scan goes through the step the
/// scan loop takes it through.
pub(crate) struct Scans {
    state: State,
}

impl Scans {
    pub(crate) fn new() -> Self {
        Scans {
            state: State::new(),
        }
    }

    /// Scans at `ticks` without `drop`, takes it through the pipeline's step, and records
    /// it with `extra` findings and `orphans`.
    pub(crate) fn record(
        &mut self,
        m: &mut Metrics,
        ticks: u64,
        drop: &[i32],
        extra: &[Finding],
        orphans: &[Orphan],
    ) {
        let mut scan = pipeline::attribute(&mut self.state, scan(ticks, drop), &Names::default());
        scan.privilege = Some(pipeline::privilege::read_privileges(
            &ProcFs::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc")),
            &scan.snapshot,
            &scan.attribution,
        ));
        let mut result = pipeline::step(
            &mut self.state,
            scan,
            None,
            &Policy::default(),
            Duration::from_secs(60),
        );
        // What the fixture tree cannot give: findings of containers it does not hold (taken
        // into the findings log as the step takes its own), orphans, and the fd pass's counts.
        if !extra.is_empty() {
            result.sharing.findings.extend(extra.iter().cloned());
            result.sharing.findings.sort();
            let new = self.state.findings.update(&result.sharing.findings);
            result.new_findings.extend(new);
        }
        result.orphans = orphans.to_vec();
        result.counts.fds_skipped = 2;
        result.counts.sockets_skipped[SocketSkip::ALL[1].index()] = 3;
        result.counts.socket_queries = 7;
        m.record(Outcome::Scan(
            result.record(&self.state.tracker, Duration::from_millis(42)),
        ));
    }
}

/// Two bind-mounted network namespaces without a process, the older 900 s so.
pub(super) fn orphans() -> [Orphan; 2] {
    [
        Orphan {
            id: NamespaceId {
                ns_type: NsType::Net,
                inode: 4026532305,
            },
            held_by: HeldBy::default().with(Holder::BindMount),
            age: 700.5,
        },
        Orphan {
            id: NamespaceId {
                ns_type: NsType::Net,
                inode: 4026532306,
            },
            held_by: HeldBy::default().with(Holder::BindMount),
            age: 900.0,
        },
    ]
}

fn scenario() -> String {
    let mut out = String::new();
    let own = ProcFs::new("/proc");

    // A cap of 3 namespaces a workload: the fixture's container has six.
    let mut m = Metrics::new(own.clone(), Duration::from_secs(15), PerNamespace::All, 3);
    m.record(Outcome::Started {
        mode: crate::scan::refresh::ScanMode::Polling,
        cgroup_layout: CgroupLayout::Unified,
        between: BetweenScans {
            sweeps: true,
            proc_events: true,
            ebpf: true,
        },
    });
    section(&mut out, "before the first scan", &m.exposition());

    let mut scans = Scans::new();
    m.record(Outcome::NameSourceError {
        source: NameSource::Kubelet,
        reason: NameErrorReason::ParseError,
    });
    m.record(Outcome::NameSourceError {
        source: NameSource::Spec,
        reason: NameErrorReason::TooLarge,
    });
    scans.record(&mut m, 100_000, &[], &[], &[]);
    section(&mut out, "the first scan", &m.exposition());

    let swept = [finding(Rule::HostNamespace, NsType::Net, "cc")];
    m.record(Outcome::Sweep {
        processes: 3,
        rechecked: 2,
        new_findings: &swept,
    });
    section(&mut out, "a sweep", &m.exposition());

    let evented = [
        finding(Rule::HostNamespace, NsType::Pid, "dd"),
        finding(Rule::HostNamespace, NsType::Uts, "dd"),
    ];
    let changes = [
        change(
            300,
            ChangeSyscall::Setns,
            &[(NsType::Net, 4026531992), (NsType::Pid, 4026531836)],
        ),
        change(301, ChangeSyscall::Unshare, &[(NsType::Mnt, 4026532999)]),
    ];
    m.record(Outcome::Events {
        proc_events: 5,
        read: 4,
        new_findings: &evented,
        changes: &changes,
    });
    let drops = Drops::default();
    drops.add(crate::events::DropReason::ALL[0], 6);
    let lost = Lost::default();
    lost.set(LostReason::ALL[1], 9);
    let losses = || Outcome::ReaderLosses {
        proc_events: Some(&drops),
        ebpf: Some(&lost),
    };
    m.record(losses());
    section(&mut out, "a batch of events", &m.exposition());

    // Brought up to the readers' totals: the same totals again add nothing.
    m.record(losses());
    m.record(Outcome::ScanFailed(FailureReason::ALL[1]));
    section(&mut out, "a failed scan", &m.exposition());

    // The containers' processes gone: their namespaces destroyed, and two orphans.
    let orphans = orphans();
    m.record(Outcome::NameSourceError {
        source: NameSource::Kubelet,
        reason: NameErrorReason::ParseError,
    });
    scans.record(
        &mut m,
        160_000,
        &[100, 101, 200],
        &[finding(Rule::CrossWorkload, NsType::Ipc, "ee")],
        &orphans,
    );
    section(&mut out, "a scan after containers went", &m.exposition());

    // Nothing between scans, and per-namespace series only where shared.
    let mut m = Metrics::new(
        own.clone(),
        Duration::from_secs(60),
        PerNamespace::Shared,
        0,
    );
    m.record(Outcome::Started {
        mode: crate::scan::refresh::ScanMode::Polling,
        cgroup_layout: CgroupLayout::Hybrid,
        between: BetweenScans {
            sweeps: false,
            proc_events: false,
            ebpf: false,
        },
    });
    Scans::new().record(&mut m, 100_000, &[], &[], &[]);
    section(&mut out, "nothing between scans, shared", &m.exposition());

    // Process events without sweeps, and no per-namespace series.
    let mut m = Metrics::new(own, Duration::from_secs(30), PerNamespace::None, 0);
    m.record(Outcome::Started {
        mode: crate::scan::refresh::ScanMode::Polling,
        cgroup_layout: CgroupLayout::Legacy,
        between: BetweenScans {
            sweeps: false,
            proc_events: true,
            ebpf: false,
        },
    });
    Scans::new().record(&mut m, 100_000, &[], &[], &[]);
    // The scan loop publishes every scan before it judges events.
    let _ = m.exposition();
    m.record(Outcome::Events {
        proc_events: 1,
        read: 1,
        new_findings: &[],
        changes: &[],
    });
    section(&mut out, "events without sweeps, none", &m.exposition());
    out
}

#[test]
fn every_recording_path_writes_the_golden_exposition() {
    let got = scenario();
    golden::assert_golden(std::path::Path::new(GOLDEN), &got);
}
