//! What declared-against-observed adds to a scan of N containers (`NSX_BENCH_CONTAINERS`,
//! default 200), each with 5 processes: `SpecSources::refresh` and `judge`, with specs (runc
//! `state.json`s under a tempdir `--path.run`, 2.6 KB each, the size runc 1.1 wrote here) and
//! without (no file anywhere: every location is tried each scan).
//!
//! - unchanged: what almost every scan pays (a `stat` per container, no read);
//! - cold: the first scan (every file read and parsed);
//! - no specs: a `stat` per location per container, nothing found;
//! - judge: the comparison itself, on an in-memory snapshot.
//!
//! `cargo bench --bench specs`.

use nsexporter::model::inode;
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nsexporter::attribution::{Attribution, Container, Workload};
use nsexporter::cgroup::Runtime;
use nsexporter::declared::{SpecSources, Wanted, judge};
use nsexporter::model::{
    HostNamespaces, HostSource, NsType, PerType, Process, ProcessId, ScanTime, Snapshot,
};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}")))
        .unwrap_or(default)
}

fn id(n: usize) -> String {
    format!("{n:064x}")
}

fn time(rounds: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..rounds / 10 + 1 {
        f();
    }
    let mut t: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    t.sort_unstable();
    (t[rounds / 2], t[rounds - 1])
}

/// runc 1.1's state.json for a container with pid, net, ipc, uts and mount namespaces, cut
/// to the size it had here (labels and mounts pad it).
fn state_json(n: usize) -> String {
    let mounts: Vec<String> = (0..12)
        .map(|i| format!(r#"{{"source":"tmpfs","destination":"/mnt/{i}","device":"tmpfs","flags":0,"data":"size=65536k"}}"#))
        .collect();
    format!(
        r#"{{"id":"{}","init_process_pid":{},"init_process_start":1000,"config":{{"namespaces":[{{"type":"NEWPID","path":""}},{{"type":"NEWNET","path":""}},{{"type":"NEWIPC","path":""}},{{"type":"NEWUTS","path":""}},{{"type":"NEWNS","path":""}}],"mounts":[{}],"labels":["bundle=/run/bundle/{n}","io.kubernetes.cri.sandbox-name=web-{n}","io.kubernetes.cri.sandbox-namespace=shop","io.kubernetes.cri.container-name=app"]}}}}"#,
        id(n),
        10_000 + n * 5,
        mounts.join(",")
    )
}

fn main() {
    let count = env_usize("NSX_BENCH_CONTAINERS", 200);
    let rounds = env_usize("NSX_BENCH_ROUNDS", 100);
    let with = tempfile::tempdir().unwrap();
    let without = tempfile::tempdir().unwrap();
    for n in 0..count {
        let dir = with.path().join("runc").join(id(n));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("state.json"), state_json(n)).unwrap();
    }
    let wanted: Vec<Wanted> = (0..count)
        .map(|n| Wanted {
            id: id(n),
            shim: None,
        })
        .collect();
    let sources =
        |run: &std::path::Path| SpecSources::new(run.into(), "/nonexistent".into(), "/proc".into());

    let mut warm = sources(with.path());
    let first = warm.refresh(&wanted, Instant::now());
    assert_eq!(first.specs.len(), count);
    let specs = first.specs;
    let now = Instant::now();
    let unchanged = time(rounds, || {
        black_box(warm.refresh(&wanted, now));
    });
    let cold = time(rounds, || {
        black_box(sources(with.path()).refresh(&wanted, Instant::now()));
    });
    let mut none = sources(without.path());
    let missing = time(rounds, || {
        black_box(none.refresh(&wanted, Instant::now()));
    });

    // The snapshot: 5 processes per container in its own pid, net, ipc, uts and mnt.
    let mut processes = BTreeMap::new();
    let mut by_pid = HashMap::new();
    for n in 0..count {
        let c = Arc::new(Container {
            id: id(n),
            runtime: Runtime::Containerd,
            pod_uid: None,
            names: None,
        });
        for k in 0..5 {
            let pid = (10_000 + n * 5 + k) as i32;
            let mut namespaces = PerType::splat(inode(1));
            for (i, t) in [
                NsType::Pid,
                NsType::Net,
                NsType::Ipc,
                NsType::Uts,
                NsType::Mnt,
            ]
            .into_iter()
            .enumerate()
            {
                namespaces[t] = inode(4_026_532_000 + (n * 8 + i) as u64);
            }
            processes.insert(
                pid,
                Process {
                    id: ProcessId {
                        pid,
                        start_ticks: 1000 + k as u64,
                    },
                    ppid: 1,
                    uid: 0,
                    comm: "app".into(),
                    namespaces,
                    cgroup: None,
                    thread_namespaces: Vec::new(),
                },
            );
            by_pid.insert(pid, Workload::Container(Arc::clone(&c)));
        }
    }
    let snapshot = Snapshot::from_processes(
        SystemTime::now(),
        ScanTime {
            ticks: 10_000,
            ticks_per_second: 100,
            boot_unix: 0.0,
        },
        processes,
        HostNamespaces {
            source: HostSource::Init,
            inodes: PerType::splat(Some(1)),
        },
    );
    let attribution = Attribution::from_map(by_pid);
    let no_fs = |_: &std::path::Path| None;
    let j = judge(&snapshot, &attribution, &specs, &no_fs);
    assert!(j.findings.is_empty(), "{:?}", j.findings.len());
    let judged = time(rounds, || {
        black_box(judge(&snapshot, &attribution, &specs, &no_fs));
    });

    println!("{count} containers, 5 processes each, {rounds} rounds");
    for (state, (median, worst)) in [
        ("refresh, unchanged", unchanged),
        ("refresh, cold", cold),
        ("refresh, no specs", missing),
        ("judge", judged),
    ] {
        println!(
            "{state:>20}: median {:>9.1} us, worst {:>9.1} us",
            median.as_secs_f64() * 1e6,
            worst.as_secs_f64() * 1e6
        );
    }
}
