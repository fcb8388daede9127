#![recursion_limit = "256"]
//! Scan cost at load: `nsexporter::scan::Scanner::scan` against `lsns` and against a minimal raw-syscall
//! loop that reads the same facts, plus the serving exporter's RSS.
//!
//! Needs root: it makes ~200 groups of processes, each in its own pid, mount, net, uts, ipc and
//! cgroup namespaces (`unshare(1)`), so that /proc looks like a busy container host. Kernel
//! interfaces timed: getdents64(2) on /proc, openat(2) of /proc/PID, readlinkat(2) of
//! `ns/TYPE` (proc_pid_ns(5)), reads of `stat` (proc_pid_stat(5)) and `cgroup` (cgroups(7)),
//! fstat(2) of the directory. The scan compares against the snapshot before it, as the
//! exporter's do, so in steady state it asks the kernel for no namespace id.
//!
//! With every process holding ten fds and `NSX_BENCH_NETNS` (20) network namespaces pinned by
//! `ip netns add`, it also times the scan with namespaces held without a process: E reads
//! each mount namespace's mountinfo for nsfs bind mounts, F also every process's fds.
//!
//! Knobs (environment): `NSX_BENCH_GROUPS` (200), `NSX_BENCH_PER_GROUP` (9 sleeps per group),
//! `NSX_BENCH_ROUNDS` (30), `NSX_BENCH_WARMUP` (5), `NSX_BENCH_LSNS` (1; 0 leaves `lsns` out),
//! `NSX_BENCH_MEMORY_ROUNDS` (5 scans profiled in this process), `NSX_BIN` (the release
//! `nsexporter` next to this bench's executable), `NSX_BENCH_SAVE_METRICS` (a path where the
//! exporter's last `/metrics` is written, for `benches/gzip.rs`).
//!
//! Memory is measured twice. In this process, a counting allocator follows the heap through
//! the scan loop's steps (`ScanLoop::run_once`, then each step alone), to say what is live at
//! the peak. Then the release exporter serves this load with the binary's defaults at a 3 s
//! interval, and its `/proc/PID/status` is read every 20 ms for several scans: VmRSS between
//! scans (the lowest), and VmHWM over the whole run and over the steady scans alone
//! (proc_pid_clear_refs(5) resets it after the first scans).
//!
//! Run: `cargo build --release && cargo bench --bench scan`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[path = "support/load.rs"]
mod load;
use load::LoadGroups;

use nsexporter::attribution::{NameSources, Names, attribute};
use nsexporter::config::Settings;
use nsexporter::lifecycle::Tracker;
use nsexporter::metrics::{Metrics, Outcome, PerNamespace, ScanRecord};
use nsexporter::model::{Holder, NsType, PerType};
use nsexporter::policy::Policy;
use nsexporter::procfs::ProcFs;
use nsexporter::scan::{ErrorReason, PinScan, Scanner, ThreadScan, Watch};
use nsexporter::scan_loop::ScanLoop;
use nsexporter::sharing::evaluate;

/// The procfs every variant reads.
const PROC_ROOT: &CStr = c"/proc";

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn main() {
    let groups = env_usize("NSX_BENCH_GROUPS", 200);
    let per_group = env_usize("NSX_BENCH_PER_GROUP", 9);
    let rounds = env_usize("NSX_BENCH_ROUNDS", 30).max(1);
    let warmup = env_usize("NSX_BENCH_WARMUP", 5);
    assert!(
        nix::unistd::geteuid().is_root(),
        "the scan bench needs root (unshare of pid/net/mount namespaces)"
    );

    // The allocator as the exporter sets it up, so that the served scan pays what it pays.
    nsexporter::allocator::tune_malloc();
    let load_before = load_average();
    let started = Instant::now();
    let load = LoadGroups::spawn(groups, per_group);
    let pins = NetnsPins::add(env_usize("NSX_BENCH_NETNS", 20));
    eprintln!(
        "load: {groups} groups x ({per_group} sleeps + unshare + sh) = {} processes running after {:.1?}",
        load.expected_members(),
        started.elapsed()
    );

    let timings = time_variants(rounds, warmup);
    let memory = profile_memory(env_usize("NSX_BENCH_MEMORY_ROUNDS", 5).max(2));
    let exporter = measure_exporter();
    let load_after = load_average();
    drop(pins);
    drop(load);
    report(
        &timings,
        &memory,
        &exporter,
        groups,
        per_group,
        &load_before,
        &load_after,
    );
}

// ---------------------------------------------------------------------------------------------
// The load: process groups of namespaced sleeps, killed on drop.

/// `ip netns add` of N network namespaces, as CNI pins a pod's: removed again on drop.
struct NetnsPins(Vec<String>);

impl NetnsPins {
    fn add(n: usize) -> NetnsPins {
        let mut pins = NetnsPins(Vec::with_capacity(n));
        for i in 0..n {
            let name = format!("nsx-bench-{}-{i}", std::process::id());
            let ok = Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ip netns add {name}");
            pins.0.push(name);
        }
        pins
    }
}

impl Drop for NetnsPins {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The variants.

/// C: the least a scan can do for the same facts. getdents64 into a reused buffer, then per
/// pid: openat the directory, fstat it (owner), read `stat`, readlinkat the eight links, close.
/// No allocation per process, no parsing; a checksum keeps the reads observable.
struct ReferenceScan {
    dents: Vec<u8>,
    link: [u8; 64],
    stat: [u8; 1024],
    cgroup: Vec<u8>,
}

/// What a reference scan saw.
#[derive(Clone, Copy, Debug, Default)]
struct ReferenceResult {
    processes: u64,
    checksum: u64,
}

impl ReferenceScan {
    fn new() -> Self {
        // glibc's readdir, which the crate's scan uses, asks getdents64 for 32 KiB at a time.
        ReferenceScan {
            dents: vec![0; 32 * 1024],
            link: [0; 64],
            stat: [0; 1024],
            cgroup: vec![0; 16 * 1024],
        }
    }

    fn run(&mut self) -> ReferenceResult {
        let mut out = ReferenceResult::default();
        // Raw libc on purpose: this variant is the floor that the crate's scan is measured
        // against, so it must not pay for any wrapper.
        #[allow(unsafe_code)]
        // SAFETY: every pointer handed to the kernel below points into a live buffer of the
        // length passed with it, and every name is NUL-terminated (CStr literals, and d_name,
        // which the kernel NUL-terminates inside its record). Every fd opened is closed.
        unsafe {
            let root = libc::open(
                PROC_ROOT.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            );
            assert!(root >= 0, "open /proc: {}", std::io::Error::last_os_error());
            loop {
                let n = libc::syscall(
                    libc::SYS_getdents64,
                    root,
                    self.dents.as_mut_ptr(),
                    self.dents.len(),
                );
                if n <= 0 {
                    break;
                }
                let mut off = 0usize;
                while off < n as usize {
                    // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type;
                    // char d_name[]; }
                    let reclen =
                        u16::from_ne_bytes([self.dents[off + 16], self.dents[off + 17]]) as usize;
                    let name = self.dents.as_ptr().add(off + 19);
                    if (*name).is_ascii_digit() {
                        self.read_process(root, name.cast(), &mut out);
                    }
                    off += reclen;
                }
            }
            libc::close(root);
        }
        out
    }

    /// # Safety
    /// `name` is a NUL-terminated pid directory name relative to the open directory `root`.
    // Raw libc on purpose, as in `run`: the reference variant pays for no wrapper.
    #[allow(unsafe_code)]
    unsafe fn read_process(
        &mut self,
        root: libc::c_int,
        name: *const libc::c_char,
        out: &mut ReferenceResult,
    ) {
        // SAFETY: see `run`.
        unsafe {
            let dir = libc::openat(
                root,
                name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            );
            if dir < 0 {
                return;
            }
            let fd = libc::openat(dir, c"stat".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                let n = libc::read(fd, self.stat.as_mut_ptr().cast(), self.stat.len());
                libc::close(fd);
                if n > 0 {
                    out.checksum = out
                        .checksum
                        .wrapping_add(n as u64)
                        .wrapping_add(u64::from(self.stat[n as usize - 2]));
                }
            }
            // The scan reads each process's cgroup in the same pass (attribution needs it).
            let fd = libc::openat(dir, c"cgroup".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                let n = libc::read(fd, self.cgroup.as_mut_ptr().cast(), self.cgroup.len());
                libc::close(fd);
                if n > 0 {
                    out.checksum = out.checksum.wrapping_add(n as u64);
                }
            }
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(dir, &mut st) == 0 {
                out.checksum = out.checksum.wrapping_add(u64::from(st.st_uid));
            }
            for link in NsType::ALL.map(NsType::proc_link) {
                let n = libc::readlinkat(
                    dir,
                    link.as_ptr(),
                    self.link.as_mut_ptr().cast(),
                    self.link.len(),
                );
                if n > 1 {
                    // The inode's last digit, before the closing ']'.
                    out.checksum = out
                        .checksum
                        .wrapping_mul(31)
                        .wrapping_add(u64::from(self.link[n as usize - 2]));
                }
            }
            libc::close(dir);
            out.processes += 1;
        }
    }
}

/// Wall times in seconds, one per timed round, for each variant.
#[derive(Default)]
struct Timings {
    /// A: `Scanner::scan`, including building the Snapshot (not its drop).
    scan: Vec<f64>,
    /// A2: the served scan: A, then lifecycle, attribution and policy, as the scan loop does
    /// before it encodes.
    served: Vec<f64>,
    /// D: a sweep for new processes, with none new.
    sweep: Vec<f64>,
    sweep_listed: u64,
    /// D2: the same sweep re-reading every known process's namespace links in place, as it
    /// re-reads containers' processes (none moved).
    sweep_recheck: Vec<f64>,
    sweep_rechecked: u64,
    /// B: `lsns` as a subprocess.
    lsns: Vec<f64>,
    /// The exec overhead: `true` as a subprocess.
    exec_true: Vec<f64>,
    /// `lsns` minus `true`, round by round.
    lsns_minus_true: Vec<f64>,
    /// C: the reference loop.
    reference: Vec<f64>,
    /// E: A with bind mounts; F: A with bind mounts and fds.
    scan_mounts: Vec<f64>,
    scan_pins: Vec<f64>,
    /// Namespaces held by a bind mount, and by an fd, in the last F scan; fds read by it.
    pinned_by_mount: usize,
    pinned_by_fd: usize,
    fds_open: usize,
    processes: usize,
    namespaces: usize,
    scan_errors: u64,
    /// The first failure of each reason in the last scan.
    scan_error_examples: Vec<String>,
    vanished: u64,
    /// Namespaces the last scan asked the kernel about (NS_GET_ID): churn, not size.
    id_queries: u64,
    reference_processes: u64,
    lsns_lines: usize,
}

#[derive(Clone, Copy)]
enum Variant {
    Scan,
    /// A with nsfs bind mounts read from each mount namespace's mountinfo (the default).
    ScanMounts,
    /// A with bind mounts and every process's fds read in every scan.
    ScanPins,
    Lsns,
    True,
    Reference,
}

const VARIANTS: [Variant; 6] = [
    Variant::Scan,
    Variant::ScanMounts,
    Variant::ScanPins,
    Variant::Lsns,
    Variant::True,
    Variant::Reference,
];

const LSNS_ARGS: [&str; 4] = [
    "--raw",
    "--noheadings",
    "-o",
    "NS,TYPE,NPROCS,PID,USER,COMMAND",
];

/// Wall time of one subprocess, output discarded.
fn time_command(program: &str, args: &[&str]) -> f64 {
    let t = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let elapsed = t.elapsed().as_secs_f64();
    assert!(status.success(), "{program} failed: {status}");
    elapsed
}

/// Runs every variant `warmup + rounds` times, interleaved, rotating the order each round so
/// no variant always follows the same one.
fn time_variants(rounds: usize, warmup: usize) -> Timings {
    // `lsns` takes 6-25 s a round at 10,000 processes: `NSX_BENCH_LSNS=0` leaves it out where
    // only the scan against the loop and the memory are wanted.
    let with_lsns = env_usize("NSX_BENCH_LSNS", 1) != 0;
    let procfs = ProcFs::new(PROC_ROOT.to_str().unwrap());
    let scanner_with = |mounts, fds| {
        Scanner::new(
            procfs.clone(),
            ThreadScan::Containers,
            PinScan { mounts, fds },
        )
    };
    let mut scanner = scanner_with(false, None);
    let mut with_mounts = scanner_with(true, None);
    let mut with_pins = scanner_with(true, Some(Duration::ZERO));
    let (mut mounts_tracker, mut pins_tracker) = (Tracker::new(), Tracker::new());
    // Steady state: each scan compares against the one before, as the exporter's do, and the
    // served scan goes on as the exporter's scan loop does: lifecycle, attribution, policy.
    let mut tracker = Tracker::new();
    let policy = Policy::default().for_cgroup_layout(procfs.cgroup_layout());
    let names = Names::default();
    let mut reference = ReferenceScan::new();
    let mut t = Timings::default();

    let lsns = Command::new("lsns")
        .args(LSNS_ARGS)
        .output()
        .expect("run lsns");
    assert!(lsns.status.success(), "lsns failed: {}", lsns.status);
    t.fds_open = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_dir(e.path().join("fd")).ok())
        .map(|d| d.count())
        .sum();
    t.lsns_lines = lsns
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();

    for round in 0..warmup + rounds {
        let timed = round >= warmup;
        let (mut lsns_s, mut true_s) = (0.0, 0.0);
        for i in 0..VARIANTS.len() {
            match VARIANTS[(round + i) % VARIANTS.len()] {
                Variant::Scan => {
                    let start = Instant::now();
                    let outcome = scanner.scan(tracker.previous()).expect("scan");
                    let elapsed = start.elapsed().as_secs_f64();
                    let outcome = black_box(outcome);
                    let snapshot = Arc::new(outcome.snapshot);
                    let changes = tracker.update(Arc::clone(&snapshot));
                    let attribution = attribute(&snapshot, &[], &names, &mut Default::default());
                    let sharing = evaluate(&snapshot, &attribution, &policy);
                    let served = start.elapsed().as_secs_f64();
                    black_box((changes, sharing));
                    t.id_queries = outcome.id_queries;
                    t.processes = snapshot.processes.len();
                    t.namespaces = snapshot.namespaces.len();
                    t.scan_errors = outcome.errors.total();
                    t.scan_error_examples = ErrorReason::ALL
                        .iter()
                        .filter_map(|&r| {
                            Some(format!("{}: {}", r.as_str(), outcome.errors.first(r)?))
                        })
                        .collect();
                    t.vanished = outcome.vanished;
                    if timed {
                        t.scan.push(elapsed);
                        t.served.push(served);
                    }
                }
                Variant::ScanMounts => {
                    let start = Instant::now();
                    let outcome = with_mounts.scan(mounts_tracker.previous()).expect("scan");
                    let elapsed = start.elapsed().as_secs_f64();
                    mounts_tracker.update(Arc::new(black_box(outcome).snapshot));
                    if timed {
                        t.scan_mounts.push(elapsed);
                    }
                }
                Variant::ScanPins => {
                    let start = Instant::now();
                    let outcome = with_pins.scan(pins_tracker.previous()).expect("scan");
                    let elapsed = start.elapsed().as_secs_f64();
                    let snapshot = black_box(outcome).snapshot;
                    let held = |h| {
                        snapshot
                            .namespaces
                            .values()
                            .filter(|n| n.held_by().contains(h))
                            .count()
                    };
                    t.pinned_by_mount = held(Holder::BindMount);
                    t.pinned_by_fd = held(Holder::Fd);
                    pins_tracker.update(Arc::new(snapshot));
                    if timed {
                        t.scan_pins.push(elapsed);
                    }
                }
                Variant::Lsns if with_lsns => lsns_s = time_command("lsns", &LSNS_ARGS),
                Variant::Lsns => {}
                Variant::True => true_s = time_command("true", &[]),
                Variant::Reference => {
                    let start = Instant::now();
                    let result = black_box(reference.run());
                    let elapsed = start.elapsed().as_secs_f64();
                    t.reference_processes = result.processes;
                    if timed {
                        t.reference.push(elapsed);
                    }
                }
            }
        }
        if timed {
            t.lsns.push(lsns_s);
            t.exec_true.push(true_s);
            t.lsns_minus_true.push(lsns_s - true_s);
        }
    }
    // The sweep between scans, as the exporter runs it every second: a listing of the
    // procfs, and reads of the processes new since the last scan (here none).
    let known = tracker.previous_arc().cloned().expect("a scan ran");
    let mut swept = HashMap::new();
    let mut none = Watch::default();
    // The types the default policy's host rules re-read: mnt, ipc, net, uts.
    let mut types = PerType::splat(false);
    for t in [NsType::Mnt, NsType::Ipc, NsType::Net, NsType::Uts] {
        types[t] = true;
    }
    let mut all = Watch::new(known.processes.keys().copied(), types);
    for _ in 0..rounds {
        let start = Instant::now();
        let sweep = black_box(scanner.sweep(&known, &mut swept, &mut none).expect("sweep"));
        t.sweep.push(start.elapsed().as_secs_f64());
        t.sweep_listed = sweep.listed;
        let start = Instant::now();
        let sweep = black_box(scanner.sweep(&known, &mut swept, &mut all).expect("sweep"));
        t.sweep_recheck.push(start.elapsed().as_secs_f64());
        t.sweep_rechecked = sweep.rechecked;
    }
    t
}

// ---------------------------------------------------------------------------------------------
// Where the scan loop's memory goes: heap bytes counted by the allocator, stage by stage.

/// The system allocator, counting the bytes live and their high-water mark, so that the
/// memory profile can say which stage of a scan holds what. Two relaxed atomics an
/// allocation: the timed variants pay them too, far under their noise.
struct CountingAlloc;

static HEAP_LIVE: AtomicUsize = AtomicUsize::new(0);
static HEAP_PEAK: AtomicUsize = AtomicUsize::new(0);

// A global allocator is unsafe by signature.
#[allow(unsafe_code)]
// SAFETY: every call is passed to `System` unchanged; the counters only observe it.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the trait's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the trait's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the trait's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        HEAP_LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as the trait's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP_LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(size: usize) {
    let live = HEAP_LIVE.fetch_add(size, Ordering::Relaxed) + size;
    HEAP_PEAK.fetch_max(live, Ordering::Relaxed);
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Heap bytes live now.
fn heap_live() -> usize {
    HEAP_LIVE.load(Ordering::Relaxed)
}

/// Starts a new high-water mark at what is live now.
fn heap_peak_reset() {
    HEAP_PEAK.store(heap_live(), Ordering::Relaxed);
}

fn heap_peak() -> usize {
    HEAP_PEAK.load(Ordering::Relaxed)
}

/// What the scan loop does after each scan: glibc's free lists handed back to the kernel.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // glibc's malloc_trim has no safe wrapper.
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resets this process's VmHWM to its VmRSS (proc_pid_clear_refs(5): "5").
fn reset_vm_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One stage of a steady-state scan, in heap bytes: live when it began, the most live during
/// it, live when it ended. Medians over the profiled scans.
#[derive(Default, Clone)]
struct StageBytes {
    name: &'static str,
    start: usize,
    peak: usize,
    end: usize,
}

#[derive(Default)]
struct MemoryProfile {
    scans: usize,
    /// The whole `ScanLoop::run_once` and the publish after it, as the scan loop does: heap
    /// live between scans (after the trim), and the heap's and this process's RSS peaks.
    between_heap: usize,
    run_once_heap_peak: usize,
    between_rss_kib: u64,
    run_once_hwm_kib: u64,
    /// The same scan taken apart, stage by stage.
    stages: Vec<StageBytes>,
    text_bytes: usize,
    gzip_bytes: usize,
    /// A snapshot's parts: the process map (with each process's `comm`, threads' namespaces
    /// and cgroup text), and the namespace map (with its member lists).
    processes_bytes: usize,
    comm_bytes: usize,
    namespaces_bytes: usize,
    namespace_count: usize,
    namespace_capacity: usize,
    members_bytes: usize,
    members_exact_bytes: usize,
}

fn median_usize(v: &mut [usize]) -> usize {
    v.sort_unstable();
    v[v.len() / 2]
}

fn median_u64(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Runs the scan loop's work in this process with the binary's defaults (bind mounts every
/// scan, an fd pass at the first), `scans` times after a baseline, and counts the heap: first
/// `ScanLoop::run_once` as a whole, with the exposition published over a watch channel as
/// the loop publishes it; then the same steps one by one, to say which holds what at the peak.
fn profile_memory(scans: usize) -> MemoryProfile {
    let procfs = ProcFs::new(PROC_ROOT.to_str().unwrap());
    let defaults = Settings::defaults();
    let scanner = || Scanner::new(procfs.clone(), defaults.scan_threads, defaults.scan_pins());
    let mut out = MemoryProfile {
        scans,
        ..Default::default()
    };

    // The loop as it runs.
    {
        let metrics = Metrics::new(
            procfs.clone(),
            Duration::from_secs(15),
            PerNamespace::All,
            defaults.namespaces_per_workload,
        );
        let mut scan_loop = ScanLoop::new(
            scanner(),
            metrics,
            defaults.policy.clone(),
            defaults.orphan_age,
            NameSources::new(),
        );
        let (publish, published) = tokio::sync::watch::channel(None);
        let (mut between, mut peak, mut rss, mut hwm) = (vec![], vec![], vec![], vec![]);
        for scan in 0..=scans {
            trim();
            let live = heap_live();
            let vm_rss = status_kib(std::process::id(), "VmRSS");
            reset_vm_hwm();
            heap_peak_reset();
            let (exposition, result) = scan_loop.run_once();
            result.expect("scan");
            publish.send_replace(Some(Arc::new(exposition)));
            let p = heap_peak();
            let h = status_kib(std::process::id(), "VmHWM");
            if scan > 0 {
                between.push(live);
                peak.push(p);
                rss.push(vm_rss);
                hwm.push(h);
            }
        }
        if let Some(e) = published.borrow().as_ref() {
            out.text_bytes = e.text_len();
            out.gzip_bytes = e.gzip().len();
        }
        out.between_heap = median_usize(&mut between);
        out.run_once_heap_peak = median_usize(&mut peak);
        out.between_rss_kib = median_u64(&mut rss);
        out.run_once_hwm_kib = median_u64(&mut hwm);
    }

    // The same steps, one at a time.
    let mut scanner = scanner();
    let mut metrics = Metrics::new(
        procfs.clone(),
        Duration::from_secs(15),
        PerNamespace::All,
        defaults.namespaces_per_workload,
    );
    let policy = defaults
        .policy
        .clone()
        .for_cgroup_layout(procfs.cgroup_layout());
    let names = Names::default();
    let mut tracker = Tracker::new();
    let mut published: Option<Arc<nsexporter::metrics::Exposition>> = None;
    let mut rounds: Vec<Vec<StageBytes>> = Vec::new();
    for scan in 0..=scans {
        trim();
        let mut stages = Vec::new();
        let mut stage = |name: &'static str, start: usize| {
            stages.push(StageBytes {
                name,
                start,
                peak: heap_peak(),
                end: heap_live(),
            });
            heap_peak_reset();
            heap_live()
        };
        heap_peak_reset();
        let at = heap_live();
        let started = Instant::now();
        let outcome = scanner.scan(tracker.previous()).expect("scan");
        let at = stage("scan (the previous snapshot kept)", at);
        let snapshot = Arc::new(outcome.snapshot);
        let changes = tracker.update(Arc::clone(&snapshot));
        let at = stage("lifecycle (the previous dropped)", at);
        let attribution = attribute(&snapshot, &[], &names, &mut Default::default());
        let at = stage("attribution", at);
        let sharing = evaluate(&snapshot, &attribution, &policy);
        let at = stage("sharing", at);
        let orphans = tracker.orphans(defaults.orphan_age);
        metrics.record(Outcome::Scan(ScanRecord {
            snapshot: &snapshot,
            tracker: &tracker,
            changes: &changes,
            errors: &outcome.errors,
            standing_errors: [0; ErrorReason::ALL.len()],
            id_queries: outcome.id_queries,
            sharing: &sharing,
            new_findings: &[],
            orphans: &orphans,
            fds_skipped: outcome.fds_skipped,
            sockets_skipped: outcome.sockets_skipped,
            socket_queries: outcome.socket_queries,
            // The privilege reads' memory is their own stage's, not measured here.
            privilege: &[],
            privilege_errors: 0,
            duration: started.elapsed(),
        }));
        let at = stage("record (the scan's view)", at);
        let exposition = metrics.exposition();
        let at = stage("exposition (encoded, gzipped)", at);
        published = Some(Arc::new(exposition));
        let at = stage("publish (the previous dropped)", at);
        drop((
            snapshot,
            changes,
            attribution,
            sharing,
            orphans,
            outcome.errors,
        ));
        let at = stage("the scan's temporaries dropped", at);
        trim();
        stage("between scans", at);
        if scan > 0 {
            rounds.push(stages);
        }
    }
    // One more snapshot, taken apart: what each part holds on the heap.
    let mut snapshot = scanner.scan(tracker.previous()).expect("scan").snapshot;
    let size = std::mem::size_of::<i32>();
    out.members_bytes = snapshot
        .namespaces
        .values()
        .map(|n| n.members.capacity() * size)
        .sum();
    out.members_exact_bytes = snapshot
        .namespaces
        .values()
        .map(|n| n.members.len() * size)
        .sum();
    // Names are shared: each distinct allocation once, with its two counts.
    let comms: HashMap<*const u8, usize> = snapshot
        .processes
        .values()
        .map(|p| (p.comm.as_ptr(), p.comm.len() + 16))
        .collect();
    out.comm_bytes = comms.values().sum();
    out.namespace_count = snapshot.namespaces.len();
    out.namespace_capacity = snapshot.namespaces.capacity();
    let before = heap_live();
    drop(std::mem::take(&mut snapshot.namespaces));
    out.namespaces_bytes = before - heap_live();
    let before = heap_live();
    drop(std::mem::take(&mut snapshot.processes));
    out.processes_bytes = before - heap_live();
    black_box(&published);
    out.stages = (0..rounds[0].len())
        .map(|i| {
            let column = |f: fn(&StageBytes) -> usize| {
                median_usize(&mut rounds.iter().map(|r| f(&r[i])).collect::<Vec<_>>())
            };
            StageBytes {
                name: rounds[0][i].name,
                start: column(|s| s.start),
                peak: column(|s| s.peak),
                end: column(|s| s.end),
            }
        })
        .collect();
    out
}

// ---------------------------------------------------------------------------------------------
// The serving exporter.

/// The exporter under test; killed and reaped on drop.
struct ExporterProcess {
    child: Child,
}

impl Drop for ExporterProcess {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the serving exporter looked like at this load.
#[derive(Default)]
struct ExporterReport {
    binary: PathBuf,
    /// VmRSS between scans (the lowest sampled), and the highest sampled.
    vm_rss_kib: u64,
    vm_rss_max_kib: u64,
    /// VmHWM over the steady scans, and over the first three (the first reads every fd).
    vm_hwm_kib: u64,
    vm_hwm_start_kib: u64,
    /// `process_resident_memory_bytes` as the exporter reported it at the end.
    reported_rss_bytes: f64,
    /// RSS split: heap and other anonymous memory, and mapped files (mostly the binary).
    rss_anon_kib: u64,
    rss_file_kib: u64,
    scans: f64,
    metrics_bytes: usize,
    scrape_seconds: Vec<f64>,
    /// `nsexporter_scan_duration_seconds*` lines as exposed, for the record.
    scan_duration_lines: Vec<String>,
}

fn exporter_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NSX_BIN") {
        return PathBuf::from(p);
    }
    // target/release/deps/scan-HASH -> target/release/nsexporter
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("bench executable has no grandparent directory")
        .join("nsexporter")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A GET over plain HTTP/1.1, connection closed by the server: (status, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let status = std::str::from_utf8(&response[..head_end])
        .ok()
        .and_then(|h| h.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    Ok((status, response[head_end + 4..].to_vec()))
}

/// The value of an unlabelled sample `name` in an exposition.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn measure_exporter() -> ExporterReport {
    let binary = exporter_binary();
    assert!(
        binary.is_file(),
        "{} not found: run `cargo build --release` first or set NSX_BIN",
        binary.display()
    );
    let port = free_port();
    let log_path = std::env::temp_dir().join("nsexporter-bench-exporter.log");
    let log = File::create(&log_path).expect("create exporter log");
    // 3 s: at 10,000 processes a scan takes most of a second on this VM, and the resident size
    // between scans is only seen where there is a between.
    let child = Command::new(&binary)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--scan.interval=3s")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let mut exporter = ExporterProcess { child };
    let pid = exporter.child.id();
    let fail = |exporter: &mut ExporterProcess, what: &str| -> ! {
        let _ = exporter.child.kill();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!("exporter {what}; its log:\n{log}");
    };
    let scans = |exporter: &mut ExporterProcess| -> f64 {
        if let Ok(Some(status)) = exporter.child.try_wait() {
            fail(exporter, &format!("exited: {status}"));
        }
        match http_get(port, "/metrics") {
            Ok((200, body)) => {
                sample(&String::from_utf8_lossy(&body), "nsexporter_scans_total").unwrap_or(0.0)
            }
            _ => 0.0,
        }
    };

    // Three scans first: the first also reads every fd, and the exporter settles.
    let deadline = Instant::now() + Duration::from_secs(120);
    while scans(&mut exporter) < 3.0 {
        if Instant::now() > deadline {
            fail(&mut exporter, "did not complete 3 scans in 120s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut report = ExporterReport {
        binary,
        vm_hwm_start_kib: status_kib(pid, "VmHWM"),
        ..Default::default()
    };
    // Then the steady peak: VmHWM from here on, and VmRSS every 20 ms for four more scans.
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let (mut rss, mut anon, mut file) = (Vec::new(), Vec::new(), Vec::new());
    let until = scans(&mut exporter) + 4.0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last_poll = Instant::now();
    loop {
        rss.push(status_kib(pid, "VmRSS"));
        anon.push(status_kib(pid, "RssAnon"));
        file.push(status_kib(pid, "RssFile"));
        if last_poll.elapsed() > Duration::from_millis(500) {
            last_poll = Instant::now();
            report.scans = scans(&mut exporter);
            if report.scans >= until {
                break;
            }
            if Instant::now() > deadline {
                fail(&mut exporter, "did not complete 4 more scans in 120s");
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    report.vm_hwm_kib = status_kib(pid, "VmHWM");
    // Between scans: the lowest, which the trim after each scan comes back to.
    let low = (0..rss.len()).min_by_key(|&i| rss[i]).expect("sampled");
    report.vm_rss_kib = rss[low];
    report.vm_rss_max_kib = rss.iter().copied().max().unwrap_or(0);
    report.rss_anon_kib = anon[low];
    report.rss_file_kib = file[low];
    for _ in 0..5 {
        let start = Instant::now();
        let (status, body) = http_get(port, "/metrics").expect("scrape /metrics");
        report.scrape_seconds.push(start.elapsed().as_secs_f64());
        assert_eq!(status, 200, "/metrics status");
        report.metrics_bytes = body.len();
        if let Ok(path) = std::env::var("NSX_BENCH_SAVE_METRICS") {
            std::fs::write(&path, &body).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        let text = String::from_utf8_lossy(&body);
        report.reported_rss_bytes = sample(&text, "process_resident_memory_bytes").unwrap_or(0.0);
        report.scan_duration_lines = text
            .lines()
            .filter(|l| l.starts_with("nsexporter_scan_duration_seconds"))
            .map(str::to_owned)
            .collect();
    }
    drop(exporter);
    report
}

// ---------------------------------------------------------------------------------------------
// The report.

/// Nearest-rank percentile of `values`, `p` in (0, 1].
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn report(
    t: &Timings,
    m: &MemoryProfile,
    e: &ExporterReport,
    groups: usize,
    per_group: usize,
    load_before: &str,
    load_after: &str,
) {
    let ms = |v: &[f64], p: f64| percentile(v, p) * 1e3;
    let rows: [(&str, &[f64]); 10] = [
        ("A nsexporter scan()", &t.scan),
        ("A2 served scan", &t.served),
        ("E A + bind mounts", &t.scan_mounts),
        ("F A + mounts + fds", &t.scan_pins),
        ("D sweep", &t.sweep),
        ("D2 sweep + re-check", &t.sweep_recheck),
        ("B lsns (subprocess)", &t.lsns),
        ("  true (subprocess)", &t.exec_true),
        ("B-true (per round)", &t.lsns_minus_true),
        ("C reference loop", &t.reference),
    ];
    let a_c = ms(&t.scan, 0.5) / ms(&t.reference, 0.5);
    let b_a = ms(&t.lsns, 0.5) / ms(&t.scan, 0.5);
    let bt_a = ms(&t.lsns_minus_true, 0.5) / ms(&t.scan, 0.5);
    let a2_c = ms(&t.served, 0.5) / ms(&t.reference, 0.5);
    let b_a2 = ms(&t.lsns, 0.5) / ms(&t.served, 0.5);
    let e_a = ms(&t.scan_mounts, 0.5) / ms(&t.scan, 0.5);
    let f_a = ms(&t.scan_pins, 0.5) / ms(&t.scan, 0.5);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());

    println!();
    println!(
        "nsexporter scan bench: {} rounds, {groups} groups x {per_group} sleeps, {cpus} CPUs",
        t.scan.len()
    );
    println!("loadavg before: {load_before}; after: {load_after}");
    println!(
        "seen: scan {} processes, {} namespaces ({} errors, {} vanished, {} NS_GET_ID queries in the last); reference {} processes; lsns {} namespaces",
        t.processes,
        t.namespaces,
        t.scan_errors,
        t.vanished,
        t.id_queries,
        t.reference_processes,
        t.lsns_lines
    );
    for example in &t.scan_error_examples {
        println!("  scan error {example}");
    }
    println!();
    println!("{:<22} {:>10} {:>10}", "variant", "median ms", "p90 ms");
    for (name, v) in rows {
        println!("{name:<22} {:>10.3} {:>10.3}", ms(v, 0.5), ms(v, 0.9));
    }
    println!();
    println!(
        "A/C      {a_c:>6.2}   (goal <= 1.25) {}",
        verdict(a_c <= 1.25)
    );
    println!(
        "B/A      {b_a:>6.2}   (goal >= 8)    {}",
        verdict(b_a >= 8.0)
    );
    println!("(B-t)/A  {bt_a:>6.2}");
    println!(
        "E/A      {e_a:>6.2}   (bind mounts: {} pinned namespaces)",
        t.pinned_by_mount
    );
    println!(
        "F/A      {f_a:>6.2}   (and fds: {} open fds read, {} namespaces held by one)",
        t.fds_open, t.pinned_by_fd
    );
    let sweep_share = ms(&t.sweep, 0.5) / 1000.0 * 100.0;
    println!(
        "D at 1s  {sweep_share:>6.3}%  of a core, {} pids listed (goal < 1% at 2,500) {}",
        t.sweep_listed,
        verdict(sweep_share < 1.0)
    );
    let per_process_us =
        (ms(&t.sweep_recheck, 0.5) - ms(&t.sweep, 0.5)) * 1e3 / t.sweep_rechecked.max(1) as f64;
    let at_2500 = per_process_us * 2500.0 / 1e6 * 100.0;
    println!(
        "D2-D     {per_process_us:>6.2} µs a re-checked process ({} re-checked): {at_2500:.2}% of a core for 2,500 at 1s (goal <= 2%) {}",
        t.sweep_rechecked,
        verdict(at_2500 <= 2.0)
    );
    println!(
        "A2/C     {a2_c:>6.2}   (goal <= 1.1)  {}",
        verdict(a2_c <= 1.1)
    );
    println!(
        "B/A2     {b_a2:>6.2}   (goal >= 8)    {}",
        verdict(b_a2 >= 8.0)
    );
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    println!();
    println!(
        "the scan loop in this process, median of {} scans: heap {:.1} MiB between scans, {:.1} MiB at the peak; VmRSS {:.1} MiB before a scan, VmHWM {:.1} MiB; exposition {} bytes, gzip {} bytes",
        m.scans,
        mib(m.between_heap),
        mib(m.run_once_heap_peak),
        m.between_rss_kib as f64 / 1024.0,
        m.run_once_hwm_kib as f64 / 1024.0,
        m.text_bytes,
        m.gzip_bytes
    );
    println!(
        "a snapshot: processes {:.2} MiB (comm {:.2}); namespaces {:.2} MiB ({} in a map of capacity {}; member lists {:.2} MiB, {:.2} of them used)",
        mib(m.processes_bytes),
        mib(m.comm_bytes),
        mib(m.namespaces_bytes),
        m.namespace_count,
        m.namespace_capacity,
        mib(m.members_bytes),
        mib(m.members_exact_bytes)
    );
    println!(
        "{:<36} {:>10} {:>10} {:>10}",
        "stage (heap MiB)", "start", "peak", "end"
    );
    for s in &m.stages {
        println!(
            "{:<36} {:>10.2} {:>10.2} {:>10.2}",
            s.name,
            mib(s.start),
            mib(s.peak),
            mib(s.end)
        );
    }
    println!();
    println!("exporter {} at this load:", e.binary.display());
    let kib = |k: u64| k as f64 / 1024.0;
    println!(
        "  VmRSS between scans {:.1} MiB (highest sampled {:.1}), VmHWM over the steady scans {:.1} MiB (goal < 16 MiB) {}, over the first three {:.1} MiB",
        kib(e.vm_rss_kib),
        kib(e.vm_rss_max_kib),
        kib(e.vm_hwm_kib),
        verdict(e.vm_hwm_kib.max(e.vm_hwm_start_kib) < 16 * 1024),
        kib(e.vm_hwm_start_kib)
    );
    println!(
        "  process_resident_memory_bytes reported {:.1} MiB",
        e.reported_rss_bytes / (1024.0 * 1024.0)
    );
    println!(
        "  RssAnon {:.1} MiB, RssFile {:.1} MiB",
        e.rss_anon_kib as f64 / 1024.0,
        e.rss_file_kib as f64 / 1024.0
    );
    println!(
        "  after {} scans; /metrics {} bytes, scrape median {:.3} ms",
        e.scans,
        e.metrics_bytes,
        ms(&e.scrape_seconds, 0.5)
    );
    for line in &e.scan_duration_lines {
        println!("  {line}");
    }

    let json = serde_json::json!({
        "rounds": t.scan.len(),
        "groups": groups,
        "per_group": per_group,
        "cpus": cpus,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "processes": t.processes,
        "namespaces": t.namespaces,
        "scan_errors": t.scan_errors,
        "scan_error_examples": t.scan_error_examples,
        "vanished": t.vanished,
        "id_queries": t.id_queries,
        "reference_processes": t.reference_processes,
        "lsns_namespaces": t.lsns_lines,
        "a_scan_ms": { "median": ms(&t.scan, 0.5), "p90": ms(&t.scan, 0.9) },
        "b_lsns_ms": { "median": ms(&t.lsns, 0.5), "p90": ms(&t.lsns, 0.9) },
        "true_ms": { "median": ms(&t.exec_true, 0.5), "p90": ms(&t.exec_true, 0.9) },
        "b_minus_true_ms": { "median": ms(&t.lsns_minus_true, 0.5), "p90": ms(&t.lsns_minus_true, 0.9) },
        "c_reference_ms": { "median": ms(&t.reference, 0.5), "p90": ms(&t.reference, 0.9) },
        "a_over_c": a_c,
        "e_scan_mounts_ms": { "median": ms(&t.scan_mounts, 0.5), "p90": ms(&t.scan_mounts, 0.9) },
        "f_scan_pins_ms": { "median": ms(&t.scan_pins, 0.5), "p90": ms(&t.scan_pins, 0.9) },
        "e_over_a": e_a,
        "f_over_a": f_a,
        "pinned_by_mount": t.pinned_by_mount,
        "pinned_by_fd": t.pinned_by_fd,
        "fds_open": t.fds_open,
        "a2_served_ms": { "median": ms(&t.served, 0.5), "p90": ms(&t.served, 0.9) },
        "a2_over_c": a2_c,
        "d_sweep_ms": { "median": ms(&t.sweep, 0.5), "p90": ms(&t.sweep, 0.9) },
        "d_sweep_core_share_at_1s": sweep_share / 100.0,
        "d2_sweep_recheck_ms": { "median": ms(&t.sweep_recheck, 0.5), "p90": ms(&t.sweep_recheck, 0.9) },
        "d2_recheck_us_per_process": per_process_us,
        "b_over_a2": b_a2,
        "b_over_a": b_a,
        "b_minus_true_over_a": bt_a,
        "exporter_vm_rss_kib": e.vm_rss_kib,
        "exporter_vm_hwm_kib": e.vm_hwm_kib,
        "exporter_vm_hwm_start_kib": e.vm_hwm_start_kib,
        "exporter_vm_rss_max_kib": e.vm_rss_max_kib,
        "exporter_reported_rss_bytes": e.reported_rss_bytes,
        "exporter_rss_anon_kib": e.rss_anon_kib,
        "exporter_rss_file_kib": e.rss_file_kib,
        "exporter_scans": e.scans,
        "exporter_metrics_bytes": e.metrics_bytes,
        "loop_heap_between_bytes": m.between_heap,
        "loop_heap_peak_bytes": m.run_once_heap_peak,
        "loop_vm_rss_kib": m.between_rss_kib,
        "loop_vm_hwm_kib": m.run_once_hwm_kib,
        "snapshot_processes_bytes": m.processes_bytes,
        "snapshot_comm_bytes": m.comm_bytes,
        "snapshot_namespaces_bytes": m.namespaces_bytes,
        "snapshot_namespace_capacity": m.namespace_capacity,
        "snapshot_members_bytes": m.members_bytes,
        "snapshot_members_exact_bytes": m.members_exact_bytes,
        "stages": m.stages.iter().map(|s| serde_json::json!({
            "stage": s.name, "start": s.start, "peak": s.peak, "end": s.end,
        })).collect::<Vec<_>>(),
    });
    println!("BENCH_JSON {json}");
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}
