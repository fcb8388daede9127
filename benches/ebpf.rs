//! What the eBPF source costs the rest of the machine, and what it keeps up with:
//!
//! - fork+exec: `NSX_BENCH_FORKS` (100,000) runs of /bin/true (std's spawn: clone3 with
//!   CLONE_VM|CLONE_VFORK, exec, wait), each passing the clone3 exit probe (parent and child)
//!   and the task probes of its fork, exec and exit;
//! - setns round trips: `NSX_BENCH_SETNS` (100,000) setns(2) into another network namespace
//!   and back, each a namespace change reported, read and judged (two per round trip);
//! - a flood: setns changes paced at `NSX_BENCH_FLOOD_RATE` (50,000) a second for
//!   `NSX_BENCH_FLOOD_SECS` (5) seconds: how many the exporter judged, and how many it lost
//!   (`nsexporter_ebpf_events_lost_total`).
//!
//! The timed loops run in `NSX_BENCH_BLOCKS` (10) alternating blocks without the probes and
//! with them (the exporter running with `--scan.ebpf=true`, scans a minute apart and no
//! sweeps, so that what it does is the eBPF path), so that the shared machine's drift falls on
//! both alike. Besides the clock, the kernel's own count of the probes' run time
//! (kernel.bpf_stats_enabled, set while the bench runs, from the fdinfo of the exporter's
//! program fds: each probe's mean run, times the runs of it an operation makes) gives their
//! cost per operation without the noise.
//! Needs root and tracefs at /sys/kernel/tracing. Run:
//! `cargo bench --features ebpf --bench ebpf`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns, unshare};

#[path = "support/bpf_stats.rs"]
mod bpf_stats;
use bpf_stats::BpfStats;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}")))
        .unwrap_or(default)
}

/// The exporter with the eBPF source; killed on drop.
struct Exporter {
    child: Child,
    port: u16,
}

impl Exporter {
    fn start() -> Exporter {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_nsexporter"))
            .args([
                "--scan.ebpf=true",
                "--scan.interval=60s",
                "--scan.sweep-interval=0s",
                "--log.level=warn",
                &format!("--web.listen-address=127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start nsexporter");
        let e = Exporter { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !e.metrics().contains("nsexporter_ebpf_events_lost_total") {
            assert!(Instant::now() < deadline, "the eBPF source never attached");
            std::thread::sleep(Duration::from_millis(100));
        }
        e
    }

    fn metrics(&self) -> String {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    }

    /// The sum of a family's samples.
    fn total(&self, family: &str) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(family))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The changes judged so far, once the count has stopped moving.
    fn settled_changes(&self) -> f64 {
        let mut last = -1.0;
        loop {
            let now = self.total("nsexporter_ebpf_namespace_changes_total");
            if now == last {
                return now;
            }
            last = now;
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fork_exec(n: usize) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        let status = Command::new("/bin/true").status().expect("spawn /bin/true");
        assert!(status.success());
    }
    started.elapsed()
}

/// This thread's own network namespace and another one, made here.
struct Netns {
    own: File,
    other: File,
}

impl Netns {
    fn new() -> Netns {
        let own = File::open("/proc/thread-self/ns/net").unwrap();
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET): run as root");
        let other = File::open("/proc/thread-self/ns/net").unwrap();
        setns(own.as_fd(), CloneFlags::CLONE_NEWNET).unwrap();
        Netns { own, other }
    }

    fn round_trip(&self) {
        setns(self.other.as_fd(), CloneFlags::CLONE_NEWNET).unwrap();
        setns(self.own.as_fd(), CloneFlags::CLONE_NEWNET).unwrap();
    }

    fn round_trips(&self, n: usize) -> Duration {
        let started = Instant::now();
        for _ in 0..n {
            self.round_trip();
        }
        started.elapsed()
    }

    /// Round trips paced at `rate` changes a second for `secs`: how many changes were made.
    fn flood(&self, rate: usize, secs: f64) -> usize {
        let started = Instant::now();
        let mut made = 0;
        loop {
            let elapsed = started.elapsed().as_secs_f64();
            if elapsed >= secs {
                return made;
            }
            if (made as f64) < elapsed * rate as f64 {
                self.round_trip();
                made += 2;
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

fn per_op(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

/// The kernel's count of the time each of the exporter's BPF programs ran
/// (kernel.bpf_stats_enabled), from the fdinfo of its program fds, by program name: ns and
/// runs.
fn bpf_run_time(pid: u32) -> RunTimes {
    let mut by_id = BTreeMap::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return RunTimes::default();
    };
    for fd in fds.flatten() {
        let Ok(info) = std::fs::read_to_string(fd.path()) else {
            continue;
        };
        if !info.contains("prog_tag:") {
            continue;
        }
        let (mut id, mut ns, mut runs) = (0u32, 0u64, 0u64);
        for line in info.lines() {
            let mut words = line.split_whitespace();
            let (Some(key), Some(value)) = (words.next(), words.next()) else {
                continue;
            };
            match key {
                "prog_id:" => id = value.parse().unwrap_or(0),
                "run_time_ns:" => ns = value.parse().unwrap_or(0),
                "run_cnt:" => runs = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        by_id.insert(id, (ns, runs));
    }
    let mut times = RunTimes::default();
    for info in aya::programs::loaded_programs().flatten() {
        if let Some(&(ns, runs)) = by_id.get(&info.id()) {
            let name = info.name_as_str().unwrap_or("?").to_owned();
            let t = times.0.entry(name).or_default();
            *t = (t.0 + ns, t.1 + runs);
        }
    }
    times
}

/// Run time (ns) and runs by program name.
#[derive(Clone, Debug, Default)]
struct RunTimes(BTreeMap<String, (u64, u64)>);

impl RunTimes {
    /// What ran between `self` (earlier) and `later`.
    fn since(&self, later: &RunTimes) -> RunTimes {
        let mut d = later.clone();
        for (name, t) in &mut d.0 {
            let (ns, runs) = self.0.get(name).copied().unwrap_or_default();
            *t = (t.0 - ns, t.1 - runs);
        }
        d
    }

    fn add(&mut self, other: &RunTimes) {
        for (name, &(ns, runs)) in &other.0 {
            let t = self.0.entry(name.clone()).or_default();
            *t = (t.0 + ns, t.1 + runs);
        }
    }

    /// The mean run of `name`, in ns.
    fn mean(&self, name: &str) -> f64 {
        let (ns, runs) = self.0.get(name).copied().unwrap_or_default();
        ns as f64 / runs.max(1) as f64
    }

    /// The mean run of each program, in ns, times how many runs one operation makes of it.
    fn per_operation(&self, runs: &[(&str, f64)]) -> f64 {
        runs.iter().map(|&(name, n)| self.mean(name) * n).sum()
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let forks = env_usize("NSX_BENCH_FORKS", 100_000);
    let trips = env_usize("NSX_BENCH_SETNS", 100_000);
    let blocks = env_usize("NSX_BENCH_BLOCKS", 10);
    let rate = env_usize("NSX_BENCH_FLOOD_RATE", 50_000);
    let secs = env_usize("NSX_BENCH_FLOOD_SECS", 5) as f64;
    let netns = Netns::new();
    let _stats = BpfStats::enable();

    // Without and with the probes in alternating blocks, so that the machine's drift (it is
    // shared) falls on both alike; the probes' own time from the kernel's counters.
    let (mut fork_0, mut fork_1, mut setns_0, mut setns_1) = Default::default();
    // Each probe's time, and how many ran (every task's on the machine, not ours alone).
    let (mut fork_bpf, mut setns_bpf) = (RunTimes::default(), RunTimes::default());
    let (mut judged, mut judging, mut lost_unpaced) = (0.0, Duration::ZERO, 0.0);
    for block in 0..blocks {
        // Every other block runs with the probes first, so that neither side always follows
        // the other.
        let without_first = block % 2 == 0;
        if without_first {
            fork_0 += fork_exec(forks / blocks);
            setns_0 += netns.round_trips(trips / blocks);
        }
        let exporter = Exporter::start();
        let pid = exporter.child.id();
        let before = exporter.settled_changes();
        let t0 = bpf_run_time(pid);
        fork_1 += fork_exec(forks / blocks);
        let t1 = bpf_run_time(pid);
        let started = Instant::now();
        setns_1 += netns.round_trips(trips / blocks);
        let t2 = bpf_run_time(pid);
        judged += exporter.settled_changes() - before;
        judging += started.elapsed();
        lost_unpaced += exporter.total("nsexporter_ebpf_events_lost_total");
        fork_bpf.add(&t0.since(&t1));
        setns_bpf.add(&t1.since(&t2));
        drop(exporter);
        if !without_first {
            fork_0 += fork_exec(forks / blocks);
            setns_0 += netns.round_trips(trips / blocks);
        }
    }
    let (forks, trips) = (forks / blocks * blocks, trips / blocks * blocks);

    let exporter = Exporter::start();
    let before = exporter.settled_changes();
    let lost_before = exporter.total("nsexporter_ebpf_events_lost_total");
    let made = netns.flood(rate, secs);
    let flooded = exporter.settled_changes() - before;
    let lost_flood = exporter.total("nsexporter_ebpf_events_lost_total") - lost_before;
    drop(exporter);

    let slowdown =
        |base: Duration, with: Duration| (with.as_secs_f64() / base.as_secs_f64() - 1.0) * 100.0;
    // Each probe's mean run, times the runs of it one operation makes: a fork+exec runs
    // clone3's exit twice (in the parent and in the child), the fork, exec and exit probes
    // once each; a setns round trip the setns entry and exit twice each.
    let fork_runs = [
        ("exit_clone3", 2.0),
        ("task_fork", 1.0),
        ("task_exec", 1.0),
        ("task_exit", 1.0),
    ];
    let setns_runs = [("enter_setns", 2.0), ("exit_setns", 2.0)];
    let probes = |t: &RunTimes, runs: &[(&str, f64)], n: usize, base: Duration| {
        let per = t.per_operation(runs) / 1000.0;
        (per, per / per_op(base, n) * 100.0)
    };
    let (fork_probe, fork_share) = probes(&fork_bpf, &fork_runs, forks, fork_0);
    let (setns_probe, setns_share) = probes(&setns_bpf, &setns_runs, trips, setns_0);
    let means = |t: &RunTimes| {
        t.0.keys()
            .filter(|name| t.0[*name].1 > 0)
            .map(|name| format!("{name} {:.0} ns", t.mean(name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "fork+exec x{forks} in {blocks} alternating blocks: without {:.1} µs/op, with probes {:.1} µs/op: {:+.1}% by the clock; the probes' runs: {fork_probe:.3} µs/op, {fork_share:.3}%",
        per_op(fork_0, forks),
        per_op(fork_1, forks),
        slowdown(fork_0, fork_1)
    );
    println!(
        "  mean run of each probe that ran (every task's on the machine, not ours alone): {}",
        means(&fork_bpf)
    );
    println!(
        "setns round trip x{trips} in {blocks} alternating blocks: without {:.2} µs/op, with probes {:.2} µs/op: {:+.1}% by the clock; the probes' runs: {setns_probe:.3} µs/op, {setns_share:.1}%",
        per_op(setns_0, trips),
        per_op(setns_1, trips),
        slowdown(setns_0, setns_1)
    );
    println!("  mean run of each probe that ran: {}", means(&setns_bpf));
    println!(
        "setns unpaced: {} changes made at {:.0}/s, {judged} judged ({:.0}/s until all were), {lost_unpaced} lost",
        2 * trips,
        2.0 * trips as f64 / setns_1.as_secs_f64(),
        judged / judging.as_secs_f64(),
    );
    println!(
        "flood at {rate}/s for {secs} s: {made} changes made ({:.0}/s), {flooded} judged, {lost_flood} lost",
        made as f64 / secs
    );
}
