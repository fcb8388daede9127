//! What the eBPF source costs the rest of the machine, and what it keeps up with:
//!
//! - fork+exec: `NSX_BENCH_FORKS` (100,000) runs of /bin/true (std's spawn: clone3 with
//!   CLONE_VM|CLONE_VFORK, exec, wait), each child passing the clone3 exit probe;
//! - setns round trips: `NSX_BENCH_SETNS` (100,000) setns(2) into another network namespace
//!   and back, each a namespace change reported, read and judged (two per round trip);
//! - a flood: setns changes paced at `NSX_BENCH_FLOOD_RATE` (50,000) a second for
//!   `NSX_BENCH_FLOOD_SECS` (5) seconds: how many the exporter judged, and how many it lost
//!   (`nsexporter_ebpf_events_lost_total`).
//!
//! Each timed loop runs without the probes, with them (the exporter running with
//! `--scan.ebpf=true`, scans a minute apart and no sweeps, so that what it does is the eBPF
//! path), and without again; the slowdown is against the mean of the two without.
//! Needs root and tracefs at /sys/kernel/tracing. Run:
//! `cargo bench --features ebpf --bench ebpf`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns, unshare};

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

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let forks = env_usize("NSX_BENCH_FORKS", 100_000);
    let trips = env_usize("NSX_BENCH_SETNS", 100_000);
    let rate = env_usize("NSX_BENCH_FLOOD_RATE", 50_000);
    let secs = env_usize("NSX_BENCH_FLOOD_SECS", 5) as f64;
    let netns = Netns::new();

    let fork_a = fork_exec(forks);
    let setns_a = netns.round_trips(trips);

    let exporter = Exporter::start();
    let before = exporter.settled_changes();
    let fork_b = fork_exec(forks);
    let started = Instant::now();
    let setns_b = netns.round_trips(trips);
    let judged = exporter.settled_changes() - before;
    let judging = started.elapsed();
    let lost_unpaced = exporter.total("nsexporter_ebpf_events_lost_total");

    // The probes alone: the exporter stopped (SIGSTOP), so that nothing reads the ring buffer
    // and, once it is full, each change costs the probes and a counted loss.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(exporter.child.id() as i32),
        nix::sys::signal::Signal::SIGSTOP,
    );
    let setns_probes = netns.round_trips(trips);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(exporter.child.id() as i32),
        nix::sys::signal::Signal::SIGCONT,
    );
    let before = exporter.settled_changes();
    let lost_before = exporter.total("nsexporter_ebpf_events_lost_total");
    let made = netns.flood(rate, secs);
    let flooded = exporter.settled_changes() - before;
    let lost_flood = exporter.total("nsexporter_ebpf_events_lost_total") - lost_before;
    drop(exporter);

    let fork_c = fork_exec(forks);
    let setns_c = netns.round_trips(trips);

    let without = |a: Duration, c: Duration| (a + c) / 2;
    let slowdown =
        |base: Duration, with: Duration| (with.as_secs_f64() / base.as_secs_f64() - 1.0) * 100.0;
    let (fork_0, setns_0) = (without(fork_a, fork_c), without(setns_a, setns_c));
    println!(
        "fork+exec x{forks}: without {:.1} µs/op ({:.1} and {:.1}), with probes {:.1} µs/op: {:+.1}%",
        per_op(fork_0, forks),
        per_op(fork_a, forks),
        per_op(fork_c, forks),
        per_op(fork_b, forks),
        slowdown(fork_0, fork_b)
    );
    println!(
        "setns round trip x{trips}: without {:.2} µs/op ({:.2} and {:.2}), with probes {:.2} µs/op: {:+.1}%",
        per_op(setns_0, trips),
        per_op(setns_a, trips),
        per_op(setns_c, trips),
        per_op(setns_b, trips),
        slowdown(setns_0, setns_b)
    );
    println!(
        "setns round trip x{trips}, the exporter stopped (probes and ring buffer only): {:.2} µs/op: {:+.1}%",
        per_op(setns_probes, trips),
        slowdown(setns_0, setns_probes)
    );
    println!(
        "setns unpaced: {} changes made at {:.0}/s, {judged} judged ({:.0}/s until all were), {lost_unpaced} lost",
        2 * trips,
        2.0 * trips as f64 / setns_b.as_secs_f64(),
        judged / judging.as_secs_f64(),
    );
    println!(
        "flood at {rate}/s for {secs} s: {made} changes made ({:.0}/s), {flooded} judged, {lost_flood} lost",
        made as f64 / secs
    );
}
