//! One scan of a procfs: every process's eight namespace links, `stat`, owner and cgroup, into
//! a [`Snapshot`], with each namespace's kernel id where identity across scans is in doubt.
//!
//! Kernel interfaces: getdents(2) on the procfs root, then per process `openat(2)` of
//! `/proc/PID`, `readlinkat(2)` of `ns/TYPE` (proc_pid_ns(5)), reads of `stat`
//! (proc_pid_stat(5)) and `cgroup` (cgroups(7)) relative to that directory, and `fstat(2)` of
//! it for the owner. Then ioctl_ns(2) `NS_GET_ID` on a member's `ns/TYPE` for each namespace
//! that no surviving member ties to the previous snapshot, so that cost follows churn, not the
//! process count. A process that exits mid-scan is normal and skipped; every other failure is
//! counted by [`ErrorReason`] and the scan goes on. Only a procfs that cannot be listed, or
//! lists no process, fails the scan ([`ScanFailure`]).
//!
//! The stage is a folder, a file a job: [`errors`] (what failed, counted by reason),
//! `reader` (one process's reads), [`watch`] (what sweeps re-read in place), [`pins`]
//! (namespaces held without a process), [`limits`] (the kernel's limits) and this file, the scan itself and the identity
//! carried from one scan to the next.

mod ask;
mod errors;
mod held;
pub mod holds;
mod identity;
pub mod limits;
pub mod pins;
mod reader;
pub mod refresh;
mod sweep;
pub mod watch;

pub use errors::{ErrorReason, FailureReason, ProcessFailure, ScanErrors, ScanFailure};
pub use reader::ThreadScan;
use watch::Rounds;
pub use watch::{Sweep, Watch};

use reader::{LinkName, ProcessReader, Skipped};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, SystemTime};

use nix::dir::Dir;

use crate::labels::SaidOnce;
use crate::model::{
    FdPin, HostNamespaces, HostSource, Identity, Namespace, NamespaceId, NsType, PerType, Process,
    ProcessId, ScanTime, Snapshot, SocketPin,
};
use std::ffi::CStr;

use crate::procfs::{
    NsFacts, PinPath, ProcFs, boot_and_wall_time, is_vanished, ns_facts, open_dir_at,
    parse_ns_link, pid_of, pin_facts, readlink_at, ticks_per_second,
};
use pins::{SocketMemo, SocketSkip, SocketSkips};

/// What a scan returns: the snapshot, and what went wrong on the way.
#[derive(Debug)]
pub struct ScanOutcome {
    pub snapshot: Snapshot,
    pub errors: ScanErrors,
    /// Processes skipped because they exited while being read.
    pub vanished: u64,
    /// Namespaces whose kernel id was asked of the kernel in this scan (new namespaces, and
    /// known ones all of whose members are new).
    pub id_queries: u64,
    /// Processes whose fds the last fd pass could not read (other users', without
    /// CAP_DAC_READ_SEARCH).
    pub fds_skipped: u64,
    /// Socket fds whose network namespace the last fd pass could not learn, by reason.
    pub sockets_skipped: SocketSkips,
    /// Sockets asked for their network namespace in this scan's fd pass (0 where the scan
    /// ran none): those no earlier pass had asked.
    pub socket_queries: u64,
}

/// How many namespaces held only by one process's fds and sockets a scan asks the kernel
/// about (`NS_GET_ID`, owner, parent; some nine system calls each), beyond those it carries
/// over from the scan before: a flood of namespaces opened anew every scan costs a bounded
/// number of questions, and each is asked at a later scan.
const ASKS_PER_HOLDER: usize = 256;

/// Where a scan looks for namespaces that no process is in ([`pins`]). No default here: the
/// binary's is the key table's (`scan.bind-mounts`, `scan.fd-interval`;
/// [`crate::config::Settings::defaults`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinScan {
    /// nsfs bind mounts, from the `mountinfo` of each mount namespace.
    pub mounts: bool,
    /// Open fds, and the sockets among them: `None` never; otherwise at most this often
    /// (zero: every scan). Between two fd passes, a pin found by the last one is kept while
    /// its process lives.
    pub fds: Option<Duration>,
}

/// The pins the last fd pass found, and when it ran (ticks since boot).
#[derive(Debug)]
struct LastFdPass {
    at: u64,
    fds: Vec<(NamespaceId, FdPin)>,
    sockets: Vec<(NamespaceId, SocketPin)>,
    /// Scans since the pass that re-read its pins: whose turn it is ([`recheck`]).
    rounds: usize,
}

/// How many of one process's pins a scan between fd passes reads again (a readlink each), in
/// turn where it holds more: a process holding namespaces by the thousand costs each scan a
/// bounded number of reads, and a pin it closed goes within a few scans rather than at once.
const CHECKS_PER_HOLDER: usize = 256;

/// Of `pins` (each holder's together, as the fd pass listed them), those that still hold, which
/// `pins` keeps for the next scan: none of a holder that is gone; of a live one's, all where it
/// has at most [`CHECKS_PER_HOLDER`], each read again with `still`; where it has more, that
/// many read again in turn (the window moves with `round`) and the others kept as they were.
fn recheck<T: Copy>(
    pins: &mut Vec<(NamespaceId, T)>,
    round: usize,
    holder: impl Fn(&T) -> ProcessId,
    lives: impl Fn(&ProcessId) -> bool,
    mut still: impl FnMut(&NamespaceId, &T) -> bool,
) -> Vec<(NamespaceId, T)> {
    let mut out = Vec::with_capacity(pins.len());
    for group in pins.chunk_by(|a, b| holder(&a.1) == holder(&b.1)) {
        if !lives(&holder(&group[0].1)) {
            continue;
        }
        let n = group.len();
        let (start, due) = match n > CHECKS_PER_HOLDER {
            true => ((round * CHECKS_PER_HOLDER) % n, CHECKS_PER_HOLDER),
            false => (0, n),
        };
        for (i, (id, pin)) in group.iter().enumerate() {
            if (i + n - start) % n >= due || still(id, pin) {
                out.push((*id, *pin));
            }
        }
    }
    // A pin found closed is gone for good, not back when its turn has passed.
    pins.clone_from(&out);
    out
}

/// Scans a procfs. Holds what carries from one scan to the next: whether the kernel answers
/// `NS_GET_ID`, the last fd pass, and the pid being read now, for the watchdog.
#[derive(Debug)]
pub struct Scanner {
    procfs: ProcFs,
    threads: ThreadScan,
    pins: PinScan,
    fd_pass: Option<LastFdPass>,
    /// Processes whose fds the last fd pass could not read for want of privilege.
    fds_skipped: u64,
    /// Each socket's network namespace, as far as the fd passes asked.
    sockets: SocketMemo,
    /// Socket fds the last fd pass could not ask, by reason.
    sockets_skipped: SocketSkips,
    /// Which reasons for skipping sockets have been said.
    sockets_warned: SaidOnce<SocketSkip>,
    ticks_per_second: u64,
    /// `None` until the kernel has been asked once.
    kernel_ids: Option<bool>,
    progress: Arc<AtomicI32>,
    /// Where the sweeps' round-robin re-reads stand.
    rounds: Rounds,
    /// The kernel's limits, read once a scan.
    limits: limits::LimitReader,
    /// What tells the mount tables that moved, and what the last reads found.
    mounts: Mounts,
}

/// The mount-table generations, where the eBPF source reads them, and the tables read by
/// them.
#[derive(Debug, Default)]
struct Mounts {
    generations: Option<Box<dyn crate::events::MountGenerations>>,
    tables: pins::MountTables,
    /// Whether a read of the generations failed (said once).
    failed: bool,
}

impl Scanner {
    /// A scanner of `procfs` that reads the threads `threads` names and looks for the pins
    /// `pins` names.
    pub fn new(procfs: ProcFs, threads: ThreadScan, pins: PinScan) -> Scanner {
        let ticks_per_second = ticks_per_second();
        Scanner {
            procfs,
            threads,
            pins,
            fd_pass: None,
            fds_skipped: 0,
            sockets: SocketMemo::default(),
            sockets_skipped: [0; SocketSkip::ALL.len()],
            sockets_warned: SaidOnce::default(),
            ticks_per_second,
            kernel_ids: None,
            progress: Arc::new(AtomicI32::new(0)),
            rounds: Rounds::default(),
            limits: limits::LimitReader::default(),
            mounts: Mounts::default(),
        }
    }

    /// Reads each mount namespace's table between walks only where `generations` says it
    /// moved (the events mode: the eBPF source's task iterator).
    pub fn watch_mounts(&mut self, generations: Option<Box<dyn crate::events::MountGenerations>>) {
        self.mounts.generations = generations;
    }

    pub fn procfs(&self) -> &ProcFs {
        &self.procfs
    }

    /// Which threads it reads.
    pub fn threads(&self) -> ThreadScan {
        self.threads
    }

    /// The pid whose files the scan is reading now (0 between processes and between scans): a
    /// read that blocks shows here.
    pub fn progress(&self) -> Arc<AtomicI32> {
        Arc::clone(&self.progress)
    }

    /// The lifecycle clock now.
    pub fn now(&self) -> (ScanTime, SystemTime) {
        let (boot, wall) = boot_and_wall_time();
        let unix = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let ticks = boot.as_nanos() * u128::from(self.ticks_per_second) / 1_000_000_000;
        let time = ScanTime {
            ticks: ticks as u64,
            ticks_per_second: self.ticks_per_second,
            boot_unix: unix.as_secs_f64() - boot.as_secs_f64(),
        };
        (time, wall)
    }

    /// The procfs root, listed and opened: getdents and openat need the same directory, and a
    /// second fd keeps the borrow checker out of the iterator.
    fn open_root(&self) -> Result<(PathBuf, Dir, OwnedFd), ScanFailure> {
        let root = self.procfs.root().to_path_buf();
        let root_err = |source| ScanFailure::Root {
            path: root.clone(),
            source,
        };
        let root_fd = open_dir_at(None, &root).map_err(root_err)?;
        let dir = Dir::from_fd(root_fd).map_err(|e| root_err(e.into()))?;
        let dir_fd = dir.as_fd().try_clone_to_owned().map_err(root_err)?;
        Ok((root, dir, dir_fd))
    }

    /// Scans once. `previous` is the last snapshot: a namespace that shares a member process
    /// with its namespace of the same inode there is the same one and keeps its kernel id;
    /// the kernel is asked about the others.
    pub fn scan(&mut self, previous: Option<&Snapshot>) -> Result<ScanOutcome, ScanFailure> {
        let (root, mut dir, dir_fd) = self.open_root()?;
        let mut reader = ProcessReader::new(dir_fd.as_fd(), &root, self.threads);
        let mut vanished = 0;
        // Read into a list and built into the map at once: a map filled one insert at a time
        // in ascending pid order leaves each node a little over half full (a split keeps six
        // of eleven), nearly twice the memory (docs/performance.md), and it lives until the
        // next scan. The list is gone before the namespaces are indexed, so it adds nothing to
        // the scan's peak. Sized by the last scan, it rarely grows.
        let mut processes = Vec::with_capacity(previous.map_or(0, |p| p.processes.len() + 64));
        for entry in dir.iter() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let e = io::Error::from(e);
                    reader.fail(ErrorReason::of_io(&e), "", &e);
                    continue;
                }
            };
            let name = entry.file_name();
            let Some(pid) = pid_of(name.to_bytes()) else {
                continue;
            };
            self.progress.store(pid, Ordering::Relaxed);
            match reader.read(name, pid) {
                Ok(process) => processes.push((pid, process)),
                Err(Skipped::Vanished) => {
                    vanished += 1;
                    tracing::debug!(pid, "process exited during the scan");
                }
                Err(Skipped::Failed) => {}
            }
        }
        self.progress.store(0, Ordering::Relaxed);
        if processes.is_empty() {
            return Err(ScanFailure::NoProcesses {
                path: self.procfs.root().to_path_buf(),
                errors: Box::new(reader.errors),
            });
        }
        // The procfs lists pids in ascending order, so the sort inside is one pass.
        let processes: BTreeMap<i32, Process> = processes.into_iter().collect();
        let (time, wall) = self.now();
        let host = host_namespaces(&processes);
        let mut snapshot = Snapshot::from_processes(wall, time, processes, host);
        let socket_queries = self.add_pins(dir_fd.as_fd(), &mut snapshot, &mut reader.errors, true);
        let net = holds::read_net(dir_fd.as_fd(), &root, &snapshot, &mut reader.errors);
        snapshot.holds.net = net.into_iter().collect();
        let id_queries = self.identify(dir_fd.as_fd(), &mut snapshot, previous, &mut reader.errors);
        snapshot.limits = self.limits.read(dir_fd.as_fd(), &root, &mut reader.errors);
        Ok(ScanOutcome {
            snapshot,
            errors: reader.errors,
            vanished,
            id_queries,
            fds_skipped: self.fds_skipped,
            sockets_skipped: self.sockets_skipped,
            socket_queries,
        })
    }

    /// Reads the processes `pids` now, whether known or not: the kernel said each forked or
    /// exec'd (an exec keeps the pid, and may follow a setns). Those gone already are skipped.
    pub fn read_pids(&mut self, pids: &[i32], known: &Snapshot) -> Vec<Process> {
        let Ok(root_fd) = open_dir_at(None, self.procfs.root()) else {
            return Vec::new();
        };
        let root = self.procfs.root().to_path_buf();
        let mut reader = ProcessReader::new(root_fd.as_fd(), &root, self.threads);
        reader.kthreadd = known.processes.get(&2).is_some_and(|p| p.ppid == 0);
        let mut digits = itoa::Buffer::new();
        pids.iter()
            .filter_map(|&pid| {
                let name = std::ffi::CString::new(digits.format(pid)).ok()?;
                reader.read(&name, pid).ok()
            })
            .collect()
    }
}

/// The host's namespaces: PID 1's, or, type by type where PID 1's link was unreadable,
/// kthreadd's (PID 2), which always sits in the kernel's initial namespaces.
pub fn host_namespaces(processes: &BTreeMap<i32, Process>) -> HostNamespaces {
    let none = PerType::splat(None);
    let init = processes.get(&1).map_or(none, |p| p.namespaces);
    let kthreadd = processes
        .get(&2)
        .filter(|p| p.ppid == 0)
        .map_or(none, |p| p.namespaces);
    let mut host = HostNamespaces::none();
    for t in NsType::ALL {
        host.inodes[t] = init[t].or(kthreadd[t]).map(|i| i.get().into());
    }
    host.source = if init.values().any(Option::is_some) {
        HostSource::Init
    } else if kthreadd.values().any(Option::is_some) {
        HostSource::Kthreadd
    } else {
        HostSource::None
    };
    host
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ThreadNamespace;

    #[test]
    fn pid_names_are_decimal_only() {
        assert_eq!(pid_of(b"1"), Some(1));
        assert_eq!(pid_of(b"4194304"), Some(4194304));
        for junk in [
            &b"self"[..],
            b"thread-self",
            b"",
            b"12a",
            b"-1",
            b"99999999999",
        ] {
            assert_eq!(pid_of(junk), None);
        }
    }

    /// Kills and reaps its children, whatever the test's outcome.
    struct Children(Vec<std::process::Child>);

    impl Drop for Children {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// A scan of the real `/proc`: processes of one name share one allocation of it, and a
    /// name that is not UTF-8 (a process may write any byte but NUL to its `comm`) is decoded
    /// once, lossily, and shared all the same; processes of one cgroup share its file.
    #[test]
    fn processes_of_one_name_share_it() {
        // A process's name is its program's file name as exec'd: a link to sleep named so.
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let odd = dir.path().join(std::ffi::OsStr::from_bytes(b"odd\xffname"));
        let sleep = std::process::Command::new("sh")
            .args(["-c", "command -v sleep"])
            .output()
            .expect("find sleep");
        let sleep = String::from_utf8(sleep.stdout).expect("a path");
        std::os::unix::fs::symlink(sleep.trim(), &odd).expect("link sleep");
        let spawn = |program: &std::path::Path| {
            std::process::Command::new(program)
                .arg("30")
                .spawn()
                .expect("spawn sleep")
        };
        let plain = std::path::Path::new("sleep");
        let children = Children([plain, plain, &odd, &odd].map(spawn).into());
        drop(dir);
        let pids: Vec<i32> = children.0.iter().map(|c| c.id() as i32).collect();
        let mut scanner = Scanner::new(
            ProcFs::new("/proc"),
            ThreadScan::None,
            PinScan {
                mounts: false,
                fds: None,
            },
        );
        let snapshot = scanner.scan(None).expect("scan").snapshot;
        let comm = |pid: i32| Arc::clone(&snapshot.processes[&pid].comm);
        assert_eq!(&*comm(pids[0]), "sleep");
        assert!(Arc::ptr_eq(&comm(pids[0]), &comm(pids[1])));
        assert_eq!(&*comm(pids[2]), "odd\u{fffd}name");
        assert!(Arc::ptr_eq(&comm(pids[2]), &comm(pids[3])));
        // And of one cgroup file, the test's: one allocation, whoever was read between.
        let cgroup = |pid: i32| snapshot.processes[&pid].cgroup.clone().expect("read");
        assert!(
            pids.iter()
                .all(|&p| Arc::ptr_eq(&cgroup(p), &cgroup(pids[0])))
        );
        let own = std::fs::read(format!("/proc/{}/cgroup", std::process::id())).unwrap();
        assert_eq!(*cgroup(pids[0]), *own);
        drop(children);
    }

    /// A fixture procfs of processes 1 and 7, 7's `cgroup` file `cgroup` bytes long, its last
    /// line naming a container.
    fn long_cgroup_tree(cgroup: usize) -> (tempfile::TempDir, Vec<u8>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let tail = format!("0::/kubepods/besteffort/pod1/{}\n", "c".repeat(64));
        let mut file = Vec::new();
        let mut id = 12;
        while file.len() + tail.len() < cgroup {
            let room = cgroup - tail.len() - file.len();
            let line = format!("{id}:name=h{id}:/");
            let path = "d".repeat(room.saturating_sub(line.len() + 1).clamp(1, 4000));
            file.extend_from_slice(format!("{line}{path}\n").as_bytes());
            id += 1;
        }
        file.extend_from_slice(tail.as_bytes());
        for (pid, ppid) in [(1, 0), (7, 1)] {
            let p = dir.path().join(pid.to_string());
            std::fs::create_dir_all(p.join("ns")).unwrap();
            let stat = format!(
                "{pid} (p) S {ppid} 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5 1000 10 \
                 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0"
            );
            std::fs::write(p.join("stat"), stat).unwrap();
            std::os::unix::fs::symlink("net:[4026531840]", p.join("ns/net")).unwrap();
        }
        std::fs::write(dir.path().join("7/cgroup"), &file).unwrap();
        (dir, file)
    }

    /// A `cgroup` file past 16 KiB (deep paths on many v1 hierarchies) is read whole, its last
    /// line too; one past any real file's length is a counted error, not a cut parse.
    #[test]
    fn a_long_cgroup_file_is_read_whole_or_counted() {
        let scan = |root: &std::path::Path| {
            let mut scanner = Scanner::new(
                ProcFs::new(root),
                ThreadScan::None,
                PinScan {
                    mounts: false,
                    fds: None,
                },
            );
            scanner.scan(None).expect("scan")
        };
        let (dir, file) = long_cgroup_tree(40 * 1024);
        assert!(file.len() > 16 * 1024);
        let outcome = scan(dir.path());
        let read = outcome.snapshot.processes[&7].cgroup.clone().expect("read");
        assert_eq!(read.len(), file.len());
        assert_eq!(*read, *file);
        assert_eq!(outcome.errors.total(), 0);

        let (dir, _) = long_cgroup_tree(crate::procfs::WHOLE_FILE_MAX + 1);
        let outcome = scan(dir.path());
        assert_eq!(outcome.snapshot.processes[&7].cgroup, None);
        assert_eq!(outcome.errors.count(ErrorReason::IoError), 1);
    }

    /// A fixture procfs process: its `stat`, a net link, and a `cgroup` file.
    /// A directory for a fixture tree, in memory where there is a tmpfs: a few thousand files
    /// on a busy disk take seconds.
    fn fixture_dir() -> tempfile::TempDir {
        tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap()
    }

    fn fixture_process(root: &std::path::Path, pid: i32, ppid: i32, cgroup: &str) {
        let p = root.join(pid.to_string());
        std::fs::create_dir_all(p.join("ns")).unwrap();
        let stat = format!(
            "{pid} (p) S {ppid} 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5 1000 10 \
             18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0"
        );
        std::fs::write(p.join("stat"), stat).unwrap();
        std::os::unix::fs::symlink("net:[4026531840]", p.join("ns/net")).unwrap();
        std::fs::write(p.join("cgroup"), cgroup).unwrap();
    }

    fn fixture_scanner(root: &std::path::Path) -> Scanner {
        let pins = PinScan {
            mounts: false,
            fds: None,
        };
        Scanner::new(ProcFs::new(root), ThreadScan::Containers, pins)
    }

    fn mnt_and_net() -> PerType<bool> {
        let mut types = PerType::splat(false);
        types[NsType::Mnt] = true;
        types[NsType::Net] = true;
        types
    }

    /// A watched process with more threads than one sweep's share: its threads are read over
    /// two sweeps, and the one thread in another network namespace comes back as the
    /// process's, once, whichever of them reads it. A directory's link count on a fixture
    /// tree is its subdirectories + 2, as a procfs `task` directory's is its threads + 2.
    #[test]
    fn a_watched_process_threads_are_read_round_robin() {
        let dir = fixture_dir();
        let root = dir.path();
        fixture_process(root, 1, 0, "0::/\n");
        let container = format!("0::/kubepods/besteffort/pod1/{}\n", "c".repeat(64));
        fixture_process(root, 7, 1, &container);
        std::os::unix::fs::symlink("mnt:[4026531841]", root.join("7/ns/mnt")).unwrap();
        // Two links a thread: one sweep's share and a half.
        let (first, threads) = (7, Watch::THREAD_READS as i32 * 3 / 4);
        let elsewhere = first + threads - 10;
        for tid in first..first + threads {
            let ns = root.join(format!("7/task/{tid}/ns"));
            std::fs::create_dir_all(&ns).unwrap();
            let inode: u64 = if tid == elsewhere { 99 } else { 4026531840 };
            std::os::unix::fs::symlink(format!("net:[{inode}]"), ns.join("net")).unwrap();
            std::os::unix::fs::symlink("mnt:[4026531841]", ns.join("mnt")).unwrap();
        }
        let mut scanner = fixture_scanner(root);
        let mut known = scanner.scan(None).expect("scan").snapshot;
        // As a scan made before the thread moved read it.
        known
            .processes
            .get_mut(&7)
            .unwrap()
            .thread_namespaces
            .clear();
        let mut watch = Watch::new([7], mnt_and_net());
        let mut swept = HashMap::new();
        // The listing's order is the tree's, so which sweep finds it is too.
        let first = scanner.sweep(&known, &mut swept, &mut watch).unwrap();
        assert_eq!(first.thread_reads, u64::from(Watch::THREAD_READS));
        let second = scanner.sweep(&known, &mut swept, &mut watch).unwrap();
        assert!(second.thread_reads < u64::from(Watch::THREAD_READS));
        let found: Vec<Process> = [first, second]
            .into_iter()
            .flat_map(|s| s.processes)
            .collect();
        let [process] = &found[..] else {
            panic!("{found:?}");
        };
        let thread = ThreadNamespace {
            tid: elsewhere,
            id: NamespaceId {
                ns_type: NsType::Net,
                inode: 99,
            },
        };
        assert_eq!(process.thread_namespaces, [thread]);
        // Seen once: the next rounds expect it there.
        for _ in 0..3 {
            let sweep = scanner.sweep(&known, &mut swept, &mut watch).unwrap();
            assert!(sweep.processes.is_empty(), "{:?}", sweep.processes);
        }
    }

    /// A process the last scan read in the host's cgroup, moved since into a container's: a
    /// sweep reads its `cgroup` file again in its turn and the process whole, once.
    #[test]
    fn a_host_process_moved_into_a_container_is_read_again() {
        let dir = fixture_dir();
        let root = dir.path();
        fixture_process(root, 1, 0, "0::/\n");
        let hosts = Watch::HOST_CGROUPS as i32 + 50;
        for pid in 10..10 + hosts {
            fixture_process(root, pid, 1, "0::/user.slice\n");
        }
        let mut scanner = fixture_scanner(root);
        let known = scanner.scan(None).expect("scan").snapshot;
        let moved = 10 + hosts - 5;
        let container = format!("0::/kubepods/besteffort/pod1/{}\n", "c".repeat(64));
        std::fs::write(root.join(format!("{moved}/cgroup")), &container).unwrap();
        let mut watch = Watch::new([], mnt_and_net());
        let mut swept = HashMap::new();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let sweep = scanner.sweep(&known, &mut swept, &mut watch).unwrap();
            assert!(sweep.cgroups_reread <= u64::from(Watch::HOST_CGROUPS));
            seen.extend(sweep.processes.iter().map(|p| p.id.pid));
        }
        assert_eq!(seen, [moved]);
    }

    fn process(pid: i32, ppid: i32, net: Option<u64>) -> Process {
        let mut namespaces = PerType::splat(None);
        namespaces[NsType::Net] = net.and_then(crate::model::inode);
        namespaces[NsType::Pid] = crate::model::inode(7);
        Process {
            ppid,
            ..Process::fixture(pid, namespaces)
        }
    }

    /// A holder with more pins than a scan reads again has them read in turn, the window
    /// moving each scan; one found closed stays gone; a small holder's are all read every
    /// scan; a gone holder's all go.
    #[test]
    fn pins_are_read_again_in_turn_and_a_closed_one_stays_gone() {
        let id = |inode| NamespaceId {
            ns_type: NsType::Uts,
            inode,
        };
        let pin = |pid, fd| FdPin {
            process: ProcessId {
                pid,
                start_ticks: 1,
            },
            fd,
        };
        let big = CHECKS_PER_HOLDER as i32 + 44;
        let mut pins: Vec<(NamespaceId, FdPin)> = (0..big)
            .map(|fd| (id(1000 + fd as u64), pin(10, fd)))
            .chain((0..3).map(|fd| (id(5000 + fd as u64), pin(20, fd))))
            .chain([(id(6000), pin(30, 0))])
            .collect();
        let closed = (pin(10, 5), pin(20, 1));
        let mut read = Vec::new();
        let kept = recheck(
            &mut pins,
            0,
            |f| f.process,
            |p| p.pid != 30,
            |_, f| {
                read.push(*f);
                *f != closed.0 && *f != closed.1
            },
        );
        assert_eq!(
            read.len(),
            CHECKS_PER_HOLDER + 3,
            "a window of the big one, all of 20's"
        );
        assert!(read.contains(&pin(20, 0)) && read.contains(&pin(10, 0)));
        assert!(!read.contains(&pin(10, CHECKS_PER_HOLDER as i32)));
        assert_eq!(kept.len(), big as usize - 1 + 2, "30 gone, two closed");
        assert_eq!(pins, kept);
        // The next scan reads the rest of the big one's and wraps around; the closed stay gone.
        let mut read = Vec::new();
        let kept = recheck(
            &mut pins,
            1,
            |f| f.process,
            |_| true,
            |_, f| {
                read.push(*f);
                true
            },
        );
        assert!(read.contains(&pin(10, CHECKS_PER_HOLDER as i32 + 43)));
        assert!(!kept.iter().any(|(_, f)| *f == closed.0 || *f == closed.1));
        assert_eq!(kept.len(), big as usize - 1 + 2);
    }

    #[test]
    fn host_comes_from_init_then_kthreadd_type_by_type() {
        let mut ps = BTreeMap::new();
        ps.insert(1, process(1, 0, Some(10)));
        ps.insert(2, process(2, 0, Some(20)));
        let host = host_namespaces(&ps);
        assert_eq!(host.source, HostSource::Init);
        assert_eq!(host.inodes[NsType::Net], Some(10));

        // A protected init: its links were unreadable, kthreadd's were not.
        ps.insert(1, process(1, 0, None));
        ps.get_mut(&1).unwrap().namespaces = PerType::splat(None);
        let host = host_namespaces(&ps);
        assert_eq!(host.source, HostSource::Kthreadd);
        assert_eq!(host.inodes[NsType::Net], Some(20));
        assert_eq!(host.inodes[NsType::Pid], Some(7));

        // In a pid namespace PID 2 is an ordinary process, not kthreadd.
        ps.insert(2, process(2, 1, Some(30)));
        assert_eq!(host_namespaces(&ps).source, HostSource::None);
    }
}
