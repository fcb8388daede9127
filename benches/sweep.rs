//! What a sweep between scans costs, variant by variant, in one run over one load:
//! `nsexporter::scan::Scanner::sweep` with every process watched (as containers' processes
//! are), its main threads' links re-read in place (M), then with the round-robin re-check of
//! their other threads as well (T); against the listing alone (L: every process watched for no
//! type) and the sweep with nothing watched (D: the listing, and the round-robin re-read of
//! unwatched processes' `cgroup` files).
//!
//! The load is `NSX_BENCH_PROCESSES` (2,500) children of this bench, forked before it starts
//! any thread, each running `NSX_BENCH_THREADS` (2) threads that sleep. Kernel interfaces
//! timed: getdents64(2) of /proc, readlinkat(2) of `PID/ns/TYPE` and `PID/task/TID/ns/TYPE`
//! (proc_pid_ns(5)), fstatat(2) of `PID/task` (its link count is the threads + 2), and reads
//! of `PID/cgroup` (cgroups(7)).
//!
//! Knobs (environment): `NSX_BENCH_PROCESSES` (2500), `NSX_BENCH_THREADS` (2, the main one
//! included), `NSX_BENCH_ROUNDS` (40 of each variant, taken in turn).
//!
//! Each sweep is timed by the CPU time it takes (`CLOCK_THREAD_CPUTIME_ID`), which is what a
//! share of a core means, and which other work on a busy machine disturbs less than it does
//! the wall clock.
//!
//! Run (root, to read every process's links): `cargo bench --bench sweep`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork};

use nsexporter::model::{NsType, PerType};
use nsexporter::procfs::ProcFs;
use nsexporter::scan::{PinScan, Scanner, ThreadScan, Watch};

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The forked children, killed and reaped on drop (also on panic).
struct Load(Vec<Pid>);

impl Load {
    /// Forks `n` children of `threads` threads each; returns once every one has them all.
    fn fork(n: usize, threads: usize) -> Load {
        let mut load = Load(Vec::with_capacity(n));
        for _ in 0..n {
            // fork(2) is unsafe by signature: the child of a multi-threaded parent may only
            // call async-signal-safe functions.
            #[allow(unsafe_code)]
            // SAFETY: this bench has started no thread yet (the check below), so the child is
            // a whole copy of a single-threaded process and may allocate and spawn threads.
            let forked = unsafe { fork() }.expect("fork");
            match forked {
                ForkResult::Parent { child } => load.0.push(child),
                ForkResult::Child => {
                    // Dies with the bench, however the bench ends.
                    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                    for _ in 1..threads {
                        std::thread::spawn(|| {
                            loop {
                                std::thread::sleep(Duration::from_secs(3600));
                            }
                        });
                    }
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for pid in &load.0 {
            while std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count()) < threads
            {
                assert!(Instant::now() < deadline, "{pid} did not start its threads");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        load
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let _ = kill(pid, Signal::SIGKILL);
        }
        for &pid in &self.0 {
            let _ = waitpid(pid, None);
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

fn main() {
    let processes = env_usize("NSX_BENCH_PROCESSES", 2500);
    let threads = env_usize("NSX_BENCH_THREADS", 2).max(1);
    let rounds = env_usize("NSX_BENCH_ROUNDS", 40).max(1);
    assert!(
        nix::unistd::geteuid().is_root(),
        "the sweep bench reads every process's links: it needs root"
    );
    let own_threads = std::fs::read_dir("/proc/self/task").unwrap().count();
    assert_eq!(own_threads, 1, "forks only while single-threaded");
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = Load::fork(processes, threads);

    let pins = PinScan {
        mounts: false,
        fds: None,
    };
    let procfs = || ProcFs::new("/proc");
    let mut main_only = Scanner::new(procfs(), ThreadScan::None, pins);
    let mut with_threads = Scanner::new(procfs(), ThreadScan::Containers, pins);
    let known = main_only.scan(None).expect("scan").snapshot;
    let pids = || known.processes.keys().copied();
    // The types the default policy's host rules re-read: mnt, ipc, net, uts.
    let mut types = PerType::splat(false);
    for t in [NsType::Mnt, NsType::Ipc, NsType::Net, NsType::Uts] {
        types[t] = true;
    }
    let mut listing = Watch::new(pids(), PerType::splat(false));
    let mut nothing = Watch::default();
    let mut mains = Watch::new(pids(), types);
    let mut all = Watch::new(pids(), types);
    let mut swept = HashMap::new();

    let (mut l, mut d, mut m, mut t) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut rechecked, mut cgroups, mut thread_reads) = (0, 0, Vec::new());
    // Sweeps from one end of a thread round to the next: a sweep that spent less than its
    // share ended one.
    let mut round_ends = Vec::new();
    for round in 0..rounds {
        // CPU time, this thread's: what a sweep takes of a core, whatever else the machine
        // runs meanwhile.
        let time = |scanner: &mut Scanner, watch: &mut Watch, swept: &mut _| {
            let start = cpu_time();
            let sweep = black_box(scanner.sweep(&known, swept, watch).expect("sweep"));
            (cpu_time() - start, sweep)
        };
        let (s, _) = time(&mut main_only, &mut listing, &mut swept);
        l.push(s);
        let (s, sweep) = time(&mut main_only, &mut nothing, &mut swept);
        d.push(s);
        cgroups = sweep.cgroups_reread;
        let (s, sweep) = time(&mut main_only, &mut mains, &mut swept);
        m.push(s);
        rechecked = sweep.rechecked;
        let (s, sweep) = time(&mut with_threads, &mut all, &mut swept);
        t.push(s);
        thread_reads.push(sweep.thread_reads as f64);
        if sweep.thread_reads < u64::from(Watch::THREAD_READS) {
            round_ends.push(round);
        }
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    drop(load);

    let ms = |v: &[f64], p: f64| percentile(v, p) * 1e3;
    let share = |v: &[f64], base: &[f64]| (ms(v, 0.5) - ms(base, 0.5)) / 1000.0 * 100.0;
    let cycle: Vec<usize> = round_ends.windows(2).map(|w| w[1] - w[0]).collect();
    println!();
    println!(
        "nsexporter sweep bench: {processes} processes of {threads} threads forked, {} known to the scan, {rounds} rounds",
        known.processes.len()
    );
    println!(
        "loadavg before: {}; after: {}",
        load_before.trim(),
        load_after.trim()
    );
    println!(
        "{:<38} {:>10} {:>10}",
        "variant (CPU time)", "median ms", "p90 ms"
    );
    for (name, v) in [
        ("L listing only", &l),
        ("D nothing watched (cgroup round)", &d),
        ("M every process watched, main threads", &m),
        ("T M + the round of threads", &t),
    ] {
        println!("{name:<38} {:>10.3} {:>10.3}", ms(v, 0.5), ms(v, 0.9));
    }
    println!(
        "D-L  {:.3}% of a core at one sweep a second: {cgroups} cgroup files re-read a sweep",
        share(&d, &l)
    );
    println!(
        "M-L  {:.3}% of a core: {rechecked} processes' main threads ({:.2} µs each)",
        share(&m, &l),
        (ms(&m, 0.5) - ms(&l, 0.5)) * 1e3 / rechecked.max(1) as f64
    );
    println!(
        "T-M  {:.3}% of a core: {} syscalls a sweep on threads (median); T-L {:.3}% scaled to 2,500: {:.3}%",
        share(&t, &m),
        percentile(&thread_reads, 0.5),
        share(&t, &l),
        share(&t, &l) * 2500.0 / rechecked.max(1) as f64
    );
    println!(
        "a round of every watched process's threads took {:?} sweeps (ends at {round_ends:?})",
        cycle
    );
}
