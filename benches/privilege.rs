//! What reading privilege costs at 2,500 container processes, in one run over one load: the
//! scan's reads (`nsexporter::pipeline::privilege::read_privileges`, each container's first
//! process whole with its `mountinfo`, and each process that differs from it) against the
//! scan itself (`Scanner::scan` of the same `/proc`, steady state), and a sweep's added reads
//! (the privilege judge the between-scans judge runs over a sweep's new processes: for each of
//! a container's that differs from its first process, `read_one` and the finding) against the
//! sweep itself (`Scanner::sweep`, the containers' processes watched in place).
//!
//! The load is real runc containers: `NSX_BENCH_CONTAINERS` (125) busybox containers of
//! `NSX_BENCH_PER_CONTAINER` (20) processes each (a shell and its sleeping children), two to a
//! pod-shaped cgroup (`/kubepods/besteffort/pod<uuid>/<64 hex>`, as a cgroupfs kubelet makes
//! them, which attribution takes as a container's), in namespaces of their own, `/proc`
//! masked, runc's default capabilities. Then `NSX_BENCH_NEW` (25) processes are started in as
//! many containers by `runc exec --user 1000:1000`: another owner and a parent outside the
//! container, so each differs from its container's first process, as a `nsenter` or a
//! setuid exec does; the sweep finds them new (what it swept is forgotten each round, so each
//! round is the first sweep after they appeared).
//!
//! Kernel interfaces timed: getdents64(2) of /proc, reads of `PID/status`, `uid_map`,
//! `gid_map`, `attr/current` and `mountinfo` (proc_pid_status(5), user_namespaces(7),
//! proc_pid_attr(5), proc_pid_mountinfo(5)), besides the scan's and sweep's own.
//!
//! Each variant is timed by the CPU time it takes (`CLOCK_THREAD_CPUTIME_ID`), which is what a
//! share of a core means, and which other work on a busy machine disturbs less than it does
//! the wall clock; the variants are taken in turn, `NSX_BENCH_ROUNDS` (30) rounds.
//!
//! Needs root, runc and busybox-static (`scripts/install-test-deps`). Every container is
//! deleted and every cgroup the bench made removed on drop, also on panic.
//!
//! Run: `cargo bench --bench privilege`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use nsexporter::attribution::{Attribution, Workload, attribute};
use nsexporter::config::Settings;
use nsexporter::model::{Inode, NsType, PerType, Snapshot};
use nsexporter::pipeline::privilege::{
    differs, in_setup, read_one, read_privileges, user_namespace_of,
};
use nsexporter::pipeline::step::privilege_finding;
use nsexporter::privilege::container::{ContainerPrivilege, ProcessSeen};
use nsexporter::procfs::ProcFs;
use nsexporter::scan::{Scanner, Watch};

const BUSYBOX: &str = "/bin/busybox";

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// 64 hex digits from the kernel's random source: a container id's shape.
fn hex_id() -> String {
    let bytes = std::fs::read("/proc/sys/kernel/random/uuid").unwrap();
    let more = std::fs::read("/proc/sys/kernel/random/uuid").unwrap();
    let hex: String = [bytes, more]
        .concat()
        .into_iter()
        .filter(u8::is_ascii_hexdigit)
        .map(char::from)
        .collect();
    hex[..64].to_owned()
}

fn uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap()
        .trim()
        .to_owned()
}

/// The mount point of every cgroup hierarchy, v1 and v2.
fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && (f[2] == "cgroup" || f[2] == "cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// Runs runc to its end. Its stderr goes to a file, not a pipe: a detached container keeps
/// the stdio runc was given, and a pipe would never be closed.
fn runc(root: &Path, args: &[&str]) -> Result<(), String> {
    use std::io::{Read, Seek};
    let mut stderr = tempfile::tempfile().unwrap();
    let status = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.try_clone().unwrap())
        .status()
        .map_err(|e| format!("runc is needed (scripts/install-test-deps): {e}"))?;
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    stderr.rewind().unwrap();
    let _ = stderr.read_to_string(&mut text);
    Err(format!("runc {args:?}: {text}"))
}

/// The containers, deleted on drop with the cgroups runc made for them (the pod groups, and
/// `/kubepods/besteffort` where this bench made it).
struct Pods {
    dir: tempfile::TempDir,
    ids: Vec<String>,
    pods: Vec<String>,
    /// `kubepods` and `kubepods/besteffort` under each hierarchy that did not exist before.
    made: Vec<PathBuf>,
}

impl Pods {
    /// Starts `n` containers of `per` processes, four `runc run`s at a time.
    fn start(n: usize, per: usize) -> Pods {
        let dir = tempfile::Builder::new()
            .prefix("nsx-privilege-bench-")
            .tempdir()
            .unwrap();
        let mut made = Vec::new();
        for mount in cgroup_mounts() {
            for rel in ["kubepods", "kubepods/besteffort"] {
                if !mount.join(rel).exists() {
                    made.push(mount.join(rel));
                }
            }
        }
        // One read-only rootfs, bind-mounted by runc into every container.
        let bin = dir.path().join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(BUSYBOX, bin.join("busybox"))
            .unwrap_or_else(|e| panic!("copy {BUSYBOX} (apt-get install busybox-static): {e}"));
        for applet in ["sh", "sleep", "seq"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let pods: Vec<String> = (0..n.div_ceil(2)).map(|_| uuid()).collect();
        let ids: Vec<String> = (0..n).map(|_| hex_id()).collect();
        let mut out = Pods {
            dir,
            ids: Vec::new(),
            pods: pods.clone(),
            made,
        };
        let next = AtomicUsize::new(0);
        let started = std::sync::Mutex::new(Vec::new());
        let (root, rootfs) = (out.dir.path(), out.dir.path().join("rootfs"));
        let failed: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut failed = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(id) = ids.get(i) else { break };
                            let cgroup = format!("/kubepods/besteffort/pod{}/{id}", pods[i / 2]);
                            match run_container(root, &rootfs, id, &cgroup, per) {
                                Ok(()) => started.lock().unwrap().push(id.clone()),
                                Err(e) => failed.push(e),
                            }
                        }
                        failed
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        out.ids = started.into_inner().unwrap();
        assert!(failed.is_empty(), "{}", failed.join("\n"));
        out
    }

    fn runc_root(&self) -> PathBuf {
        self.dir.path().join("state")
    }
}

/// One container: `sh` forking `per - 1` sleeps, in a bundle of its own.
fn run_container(
    dir: &Path,
    rootfs: &Path,
    id: &str,
    cgroup: &str,
    per: usize,
) -> Result<(), String> {
    let bundle = dir.join("bundles").join(id);
    std::fs::create_dir_all(&bundle).unwrap();
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let script = format!("for i in $(seq {}); do sleep 100000 & done; wait", per - 1);
    let config = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh", "-c", script],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true,
        },
        "root": {"path": rootfs, "readonly": true},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        ],
        "linux": {
            "cgroupsPath": cgroup,
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                {"type": "mount"},
            ],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let bundle = bundle.to_str().unwrap();
    runc(
        &dir.join("state"),
        &["run", "--detach", "--bundle", bundle, id],
    )
}

impl Drop for Pods {
    fn drop(&mut self) {
        let root = self.runc_root();
        for id in &self.ids {
            if let Err(e) = runc(&root, &["delete", "--force", id]) {
                eprintln!("{e}");
            }
        }
        // runc removes each container's own group; the pod groups and the parents it made
        // are this bench's to remove (rmdir: only if empty, so nobody else's).
        for mount in cgroup_mounts() {
            for pod in &self.pods {
                let _ = std::fs::remove_dir(mount.join(format!("kubepods/besteffort/pod{pod}")));
            }
        }
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The CPU time this thread has used, in seconds (user and system).
fn cpu_time() -> f64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("CLOCK_THREAD_CPUTIME_ID");
    t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The processes of `ids` that `attribution` gives a container of.
fn ours(snapshot: &Snapshot, attribution: &Attribution, ids: &HashSet<&str>) -> usize {
    snapshot
        .processes
        .keys()
        .filter(|&&pid| matches!(attribution.of(pid), Workload::Container(c) if ids.contains(c.id.as_str())))
        .count()
}

/// Each container's privilege as a scan read it, with its first process's owner and user
/// namespace: what the between-scans judge keeps.
type Known = HashMap<String, (ContainerPrivilege, u32, Option<Inode>)>;

/// The privilege judge the between-scans judge runs over a sweep's processes
/// (`Between::judge_privilege`): each new process of a container that differs from its first
/// is read and judged. How many were read.
fn judge_sweep(
    procfs: &ProcFs,
    fresh: &Snapshot,
    attribution: &Attribution,
    known: &Known,
) -> usize {
    let mut read = 0;
    for p in fresh.processes.values() {
        let Workload::Container(c) = attribution.of(p.id.pid) else {
            continue;
        };
        let Some((container, first_uid, first_user)) = known.get(&c.id) else {
            continue;
        };
        let inside = matches!(attribution.of(p.ppid), Workload::Container(o) if o.id == c.id);
        if p.id.pid == container.first.pid
            || in_setup(p, &fresh.time, inside)
            || !differs(p, *first_uid, *first_user, inside)
        {
            continue;
        }
        let Ok(Some(privilege)) = read_one(procfs, p.id.pid) else {
            continue;
        };
        read += 1;
        let user_namespace = user_namespace_of(
            p.namespaces[NsType::User],
            *first_user,
            fresh.host.inodes[NsType::User],
            privilege.uid_map.is_identity(),
        );
        let one = ContainerPrivilege {
            others: vec![ProcessSeen {
                pid: p.id.pid,
                privilege,
                user_namespace,
            }],
            ..container.clone()
        };
        black_box(privilege_finding(&one, None, Some(p.id.pid)));
    }
    read
}

fn main() {
    let containers = env_usize("NSX_BENCH_CONTAINERS", 125).max(1);
    let per = env_usize("NSX_BENCH_PER_CONTAINER", 20).max(2);
    let new = env_usize("NSX_BENCH_NEW", 25).min(containers);
    let rounds = env_usize("NSX_BENCH_ROUNDS", 30).max(1);
    assert!(
        nix::unistd::geteuid().is_root(),
        "the privilege bench runs runc containers and reads their processes: it needs root"
    );
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let started = Instant::now();
    let pods = Pods::start(containers, per);
    let start_took = started.elapsed();
    let ids: HashSet<&str> = pods.ids.iter().map(String::as_str).collect();

    let defaults = Settings::defaults();
    let procfs = ProcFs::new(PathBuf::from("/proc"));
    let mut scanner = Scanner::new(procfs.clone(), defaults.scan_threads, defaults.scan_pins());
    let scan_and_attribute = |scanner: &mut Scanner, previous: Option<&Snapshot>| {
        let snapshot = scanner.scan(previous).expect("scan").snapshot;
        let attribution = attribute(&snapshot, &[], &Default::default(), &mut Default::default());
        (snapshot, attribution)
    };
    // Every container's every process started (and out of runc's setup window).
    let deadline = Instant::now() + Duration::from_secs(120);
    let (known, known_attribution) = loop {
        let (s, a) = scan_and_attribute(&mut scanner, None);
        if ours(&s, &a, &ids) >= containers * per {
            break (s, a);
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} processes",
            ours(&s, &a, &ids),
            containers * per
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    std::thread::sleep(Duration::from_secs(2));
    // What the judge keeps from that scan.
    let before = read_privileges(&procfs, &known, &known_attribution);
    let kept: Known = before
        .containers
        .iter()
        .filter_map(|c| {
            let first = known.processes.get(&c.first.pid)?;
            Some((
                c.container.id.clone(),
                (c.clone(), first.uid, first.namespaces[NsType::User]),
            ))
        })
        .collect();
    // The new differing processes, one in each of the first `new` containers.
    for id in pods.ids.iter().take(new) {
        runc(
            &pods.runc_root(),
            &[
                "exec",
                "--detach",
                "--user",
                "1000:1000",
                id,
                "sleep",
                "100000",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (steady, attribution) = scan_and_attribute(&mut scanner, Some(&known));
    let container_processes = ours(&steady, &attribution, &ids);

    let mut types = PerType::splat(false);
    for t in [NsType::Mnt, NsType::Ipc, NsType::Net, NsType::Uts] {
        types[t] = true;
    }
    let watched = || {
        known.processes.keys().copied().filter(|&pid| {
            matches!(
                known_attribution.of(pid),
                Workload::Container(_) | Workload::Runtime(_)
            )
        })
    };
    let mut watch = Watch::new(watched(), types);
    let mut swept = HashMap::new();

    let (mut s, mut p, mut w, mut j) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut scan_reads, mut sweep_reads, mut sweep_new) = (0, 0, 0);
    for _ in 0..rounds {
        let t = cpu_time();
        let scanned = black_box(scanner.scan(Some(&steady)).expect("scan"));
        s.push(cpu_time() - t);
        drop(scanned);

        let t = cpu_time();
        let read = black_box(read_privileges(&procfs, &steady, &attribution));
        p.push(cpu_time() - t);
        scan_reads = read.reads;
        assert_eq!(read.errors, 0, "{:?}", read.first_error);

        // The first sweep after the new processes appeared, every round.
        swept.clear();
        let t = cpu_time();
        let sweep = black_box(
            scanner
                .sweep(&known, &mut swept, &mut watch)
                .expect("sweep"),
        );
        w.push(cpu_time() - t);
        sweep_new = sweep.processes.len();
        let (time, wall) = scanner.now();
        let processes: BTreeMap<_, _> =
            sweep.processes.into_iter().map(|p| (p.id.pid, p)).collect();
        let fresh = Snapshot::from_processes(wall, time, processes, known.host.clone());
        let fresh_attribution = attribute(
            &fresh,
            &[&known],
            &Default::default(),
            &mut Default::default(),
        );
        let t = cpu_time();
        sweep_reads = judge_sweep(&procfs, &fresh, &fresh_attribution, &kept);
        j.push(cpu_time() - t);
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    drop(pods);

    let ms = |v: &[f64], q: f64| percentile(v, q) * 1e3;
    let scan_interval = defaults.scan_interval.as_secs_f64();
    let sweep_interval = defaults.scan_sweep_interval.as_secs_f64();
    println!();
    println!(
        "nsexporter privilege bench: {containers} runc containers of {per} processes ({container_processes} attributed to them at the scan), {new} new differing processes, {rounds} rounds; started in {start_took:.1?}"
    );
    println!(
        "loadavg before: {}; after: {}",
        load_before.trim(),
        load_after.trim()
    );
    println!(
        "{:<52} {:>10} {:>10}",
        "variant (CPU time)", "median ms", "p90 ms"
    );
    for (name, v) in [
        ("S the scan (Scanner::scan, steady)", &s),
        ("P the scan's privilege reads (read_privileges)", &p),
        ("W the sweep (Scanner::sweep, containers watched)", &w),
        ("J the sweep's privilege judge", &j),
    ] {
        println!("{name:<52} {:>10.3} {:>10.3}", ms(v, 0.5), ms(v, 0.9));
    }
    println!(
        "P: {scan_reads} processes read ({:.1} µs each), {:.1}% of the scan, {:.3}% of a core at one scan each {scan_interval} s",
        ms(&p, 0.5) * 1e3 / scan_reads.max(1) as f64,
        ms(&p, 0.5) / ms(&s, 0.5) * 100.0,
        ms(&p, 0.5) / 1e3 / scan_interval * 100.0
    );
    println!(
        "J: {sweep_reads} of the sweep's {sweep_new} new processes read ({:.1} µs each), {:.1}% of the sweep, {:.3}% of a core at one sweep each {sweep_interval} s",
        ms(&j, 0.5) * 1e3 / sweep_reads.max(1) as f64,
        ms(&j, 0.5) / ms(&w, 0.5) * 100.0,
        ms(&j, 0.5) / 1e3 / sweep_interval * 100.0
    );
}
