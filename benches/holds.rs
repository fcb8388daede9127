//! What reading the network namespaces' holds adds to a scan: `nsexporter::scan::holds::read_net`
//! (H: `net/dev`, `sockstat`, `sockstat6` and `stat/nf_conntrack` through one member of each
//! network namespace) against the whole `Scanner::scan` it is part of (S), in one run over one
//! load, in turn.
//!
//! The load is `NSX_BENCH_NETNS` (500) network namespaces made by `unshare --net`, each with
//! `lo` up and a `sleep` as its member, and the machine's own processes. Kernel interfaces
//! timed: openat(2) and read(2) of `/proc/PID/net/*` (proc_pid_net(5)).
//!
//! Each variant is timed by the CPU time it takes (`CLOCK_THREAD_CPUTIME_ID`), which other work
//! on a busy machine disturbs less than the wall clock, and by the wall clock.
//!
//! Knobs (environment): `NSX_BENCH_NETNS` (500), `NSX_BENCH_ROUNDS` (30 of each variant).
//!
//! Run (root): `cargo bench --bench holds`.

use std::hint::black_box;
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nsexporter::procfs::ProcFs;
use nsexporter::scan::{PinScan, ScanErrors, Scanner, ThreadScan, holds};

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The members of the namespaces made: killed on drop.
struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// CPU and wall time of `f`.
fn timed(f: impl FnOnce()) -> (Duration, Duration) {
    let (cpu, wall) = (thread_cpu(), Instant::now());
    f();
    (thread_cpu() - cpu, wall.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("holds bench: run as root (it makes network namespaces)");
        return;
    }
    let netns = env_usize("NSX_BENCH_NETNS", 500);
    let rounds = env_usize("NSX_BENCH_ROUNDS", 30);
    let members = Members(
        (0..netns)
            .map(|_| {
                Command::new("unshare")
                    .args(["--net", "sh", "-c", "ip link set lo up; exec sleep 3600"])
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("unshare")
            })
            .collect(),
    );
    std::thread::sleep(Duration::from_secs(2));
    let procfs = ProcFs::new("/proc");
    let pins = PinScan {
        mounts: true,
        fds: None,
    };
    let mut scanner = Scanner::new(procfs.clone(), ThreadScan::Containers, pins);
    let mut last = scanner.scan(None).expect("scan").snapshot;
    let root = procfs.open_root().expect("/proc");
    let (mut scan, mut read) = (Vec::new(), Vec::new());
    let mut namespaces = 0;
    for _ in 0..rounds {
        scan.push(timed(|| {
            last = black_box(scanner.scan(Some(&last)).expect("scan").snapshot);
        }));
        read.push(timed(|| {
            let mut errors = ScanErrors::default();
            let net = holds::read_net(root.as_fd(), procfs.root(), &last, &mut errors);
            namespaces = black_box(net).len();
        }));
    }
    let cpu = |v: &[(Duration, Duration)]| median(v.iter().map(|t| t.0).collect());
    let wall = |v: &[(Duration, Duration)]| median(v.iter().map(|t| t.1).collect());
    println!(
        "{} processes, {namespaces} network namespaces read ({netns} made), {rounds} rounds, medians:",
        last.processes.len()
    );
    println!(
        "S whole scan (holds included): cpu {:?}, wall {:?}",
        cpu(&scan),
        wall(&scan)
    );
    println!(
        "H network holds alone:          cpu {:?}, wall {:?} ({:.0}% of S's cpu, {:.1} us a namespace)",
        cpu(&read),
        wall(&read),
        100.0 * cpu(&read).as_secs_f64() / cpu(&scan).as_secs_f64(),
        cpu(&read).as_secs_f64() * 1e6 / namespaces.max(1) as f64
    );
    drop(members);
}
