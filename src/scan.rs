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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CStr;
use std::io;
use std::num::NonZeroU64;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, SystemTime};

use nix::dir::Dir;

use crate::attribution::{CgroupWorkload, parse_cgroup};
use crate::model::{
    FdPin, HostNamespaces, HostSource, Identity, Namespace, NamespaceId, NsType, PerType, Process,
    ProcessId, ScanTime, Snapshot, SocketPin, ThreadNamespace,
};
use crate::pins::{self, SocketMemo, SocketSkip, SocketSkips};
use crate::procfs::{
    NsFacts, PinPath, ProcFs, boot_and_wall_time, is_vanished, ns_facts, open_dir_at, owner_uid,
    parse_ns_link, parse_stat, pin_facts, read_at, readlink_at, ticks_per_second,
};

label_enum! {
    /// Why part of a scan failed. Vanished processes are not errors and have no reason. The
    /// label value is the `reason` label.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum ErrorReason {
        /// EACCES or EPERM: e.g. another user's process read without CAP_SYS_PTRACE, or a
        /// protected init.
        PermissionDenied = "permission_denied",
        /// The kernel (or a fixture) gave text that does not parse.
        ParseError = "parse_error",
        /// EMFILE or ENFILE: the exporter's or the system's file table is full.
        TooManyOpenFiles = "too_many_open_files",
        /// Any other I/O failure.
        IoError = "io_error",
    }
}

impl ErrorReason {
    pub(crate) fn of_io(e: &io::Error) -> Self {
        match e.raw_os_error() {
            Some(nix::libc::EACCES) | Some(nix::libc::EPERM) => ErrorReason::PermissionDenied,
            Some(nix::libc::EMFILE) | Some(nix::libc::ENFILE) => ErrorReason::TooManyOpenFiles,
            _ => ErrorReason::IoError,
        }
    }
}

/// Failures of one scan, counted by reason, with the first example of each for the log.
#[derive(Clone, Debug, Default)]
pub struct ScanErrors {
    counts: [u64; ErrorReason::ALL.len()],
    first: [Option<String>; ErrorReason::ALL.len()],
    /// The processes whose reads failed, once per process and reason.
    processes: HashSet<ProcessFailure>,
}

/// A process whose reads failed for a reason: where the same one fails the same way scan
/// after scan (a protected init, a process an LSM hides), it is how the node is built, not
/// news.
pub type ProcessFailure = (ProcessId, ErrorReason);

impl ScanErrors {
    pub(crate) fn record(&mut self, reason: ErrorReason, what: impl FnOnce() -> String) {
        let i = reason.index();
        self.counts[i] += 1;
        if self.first[i].is_none() {
            self.first[i] = Some(what());
        }
    }

    /// Records a failure of process `who` (start ticks 0 where its `stat` was not read), once
    /// per process and reason.
    fn record_process(
        &mut self,
        who: ProcessId,
        reason: ErrorReason,
        what: impl FnOnce() -> String,
    ) {
        if self.processes.insert((who, reason)) {
            self.record(reason, what);
        }
    }

    /// The processes whose reads failed, with the reason.
    pub fn processes(&self) -> &HashSet<ProcessFailure> {
        &self.processes
    }

    pub fn count(&self, reason: ErrorReason) -> u64 {
        self.counts[reason.index()]
    }

    /// The first failure of that reason in this scan, as "path: error".
    pub fn first(&self, reason: ErrorReason) -> Option<&str> {
        self.first[reason.index()].as_deref()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

label_enum! {
    /// Why a whole scan failed: the exporter then serves `nsexporter_scan_success 0`. The label
    /// value is the `reason` label.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum FailureReason {
        /// The procfs root is gone or is not a directory (ENOENT, ENOTDIR): an unmounted or
        /// removed `--path.procfs`.
        ProcfsUnavailable = "procfs_unavailable",
        /// The root could be listed but held no readable process.
        NoProcesses = "no_processes",
        /// EMFILE or ENFILE while opening the root.
        TooManyOpenFiles = "too_many_open_files",
        /// EACCES or EPERM on the root.
        PermissionDenied = "permission_denied",
        /// Any other failure to list the root.
        IoError = "io_error",
    }
}

/// A scan that produced no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum ScanFailure {
    #[error("{path}: cannot list the procfs: {source}")]
    Root { path: PathBuf, source: io::Error },
    #[error("{path}: no process could be read{}", first_error(errors))]
    NoProcesses {
        path: PathBuf,
        errors: Box<ScanErrors>,
    },
}

/// ": " and the first failure of the most telling reason, if any.
fn first_error(errors: &ScanErrors) -> String {
    use ErrorReason::*;
    [TooManyOpenFiles, PermissionDenied, IoError, ParseError]
        .into_iter()
        .find_map(|r| errors.first(r))
        .map(|f| format!(" ({f})"))
        .unwrap_or_default()
}

impl ScanFailure {
    pub fn reason(&self) -> FailureReason {
        match self {
            // Every process failed for a reason: the reason is why the scan failed. A full fd
            // table fails each openat of a pid directory, not the root.
            ScanFailure::NoProcesses { errors, .. } => {
                if errors.count(ErrorReason::TooManyOpenFiles) > 0 {
                    FailureReason::TooManyOpenFiles
                } else if errors.count(ErrorReason::PermissionDenied) > 0 {
                    FailureReason::PermissionDenied
                } else {
                    FailureReason::NoProcesses
                }
            }
            ScanFailure::Root { source, .. } => match source.raw_os_error() {
                Some(nix::libc::ENOENT) | Some(nix::libc::ENOTDIR) | Some(nix::libc::ENODEV) => {
                    FailureReason::ProcfsUnavailable
                }
                _ => match ErrorReason::of_io(source) {
                    ErrorReason::TooManyOpenFiles => FailureReason::TooManyOpenFiles,
                    ErrorReason::PermissionDenied => FailureReason::PermissionDenied,
                    _ => FailureReason::IoError,
                },
            },
        }
    }
}

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

/// What a sweep read: the processes new since the last full scan, and the watched ones that
/// moved to another namespace since it.
#[derive(Debug)]
pub struct Sweep {
    pub processes: Vec<Process>,
    /// Pid directories listed.
    pub listed: u64,
    /// Watched processes whose namespace links were read again in place.
    pub rechecked: u64,
    pub errors: ScanErrors,
}

/// The processes that sweeps read again in place: a process that is already running can
/// setns(2) at any time, and neither the listing of new pids nor the proc connector's fork and
/// exec events say so. Containers' processes are watched (where a move is an escape): those
/// of the last scan, and those read since, by a sweep or on an event. What each is expected
/// in is what it was last read in.
#[derive(Debug, Default)]
pub struct Watch {
    /// The types whose links every sweep reads again.
    every: PerType<bool>,
    /// The types whose links every [`Watch::ROTATION`]th sweep reads again.
    sometimes: PerType<bool>,
    /// Sweeps since the watch began.
    sweeps: u64,
    /// Sorted pids, from the last scan, whose expected namespaces are that scan's.
    pids: Vec<i32>,
    /// Processes read since the last scan: start ticks, and the namespaces then.
    read: HashMap<i32, (u64, PerType<Option<NonZeroU64>>)>,
}

impl Watch {
    /// One sweep in this many reads the [`Watch::sometimes`] types too.
    pub const ROTATION: u64 = 4;

    /// Watches `pids` of the last scan for a move in `types` (the host rules' types),
    /// forgetting what was read before it. Every sweep reads `mnt` and `net`, where an escape
    /// does the most harm; the other types every [`Watch::ROTATION`]th sweep: each readlink
    /// costs about 3 µs here, and a budget of 2% of a core for 2,500 processes at one sweep a
    /// second allows about two and a half a process. A process's own `pid` link never
    /// changes (setns(2) into a pid namespace moves only its children, which are new
    /// processes), nor does `user` (a process cannot join an ancestor user namespace): those
    /// are never read in place.
    pub fn new(pids: impl IntoIterator<Item = i32>, types: PerType<bool>) -> Watch {
        let mut pids: Vec<i32> = pids.into_iter().collect();
        pids.sort_unstable();
        pids.dedup();
        let (mut every, mut sometimes) = (PerType::splat(false), PerType::splat(false));
        for t in NsType::ALL {
            let movable = types[t] && t != NsType::Pid && t != NsType::User;
            let first = matches!(t, NsType::Mnt | NsType::Net);
            every[t] = movable && first;
            sometimes[t] = movable && !first;
        }
        Watch {
            every,
            sometimes,
            sweeps: 0,
            pids,
            read: HashMap::new(),
        }
    }

    /// The types this sweep reads.
    fn types(&mut self) -> PerType<bool> {
        self.sweeps += 1;
        let mut types = self.every;
        if self.sweeps.is_multiple_of(Self::ROTATION) {
            for t in NsType::ALL {
                types[t] |= self.sometimes[t];
            }
        }
        types
    }

    /// Watches `p`, read between scans, as it was read.
    pub fn add(&mut self, p: &Process) {
        self.read.insert(p.id.pid, (p.id.start_ticks, p.namespaces));
    }

    /// How many processes are watched.
    pub fn len(&self) -> usize {
        self.pids.len() + self.read.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The start ticks and namespaces `pid` was last read with, if it is watched.
    fn expected(&self, pid: i32, known: &Snapshot) -> Option<(u64, PerType<Option<NonZeroU64>>)> {
        if let Some(read) = self.read.get(&pid) {
            return Some(*read);
        }
        self.pids.binary_search(&pid).ok()?;
        let p = known.processes.get(&pid)?;
        Some((p.id.start_ticks, p.namespaces))
    }
}

/// Where a scan looks for namespaces that no process is in ([`crate::pins`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    sockets_warned: [bool; SocketSkip::ALL.len()],
    ticks_per_second: u64,
    /// `None` until the kernel has been asked once.
    kernel_ids: Option<bool>,
    progress: Arc<AtomicI32>,
}

impl Scanner {
    pub fn new(procfs: ProcFs) -> Scanner {
        let ticks_per_second = ticks_per_second();
        Scanner {
            procfs,
            threads: ThreadScan::default(),
            pins: PinScan::default(),
            fd_pass: None,
            fds_skipped: 0,
            sockets: SocketMemo::default(),
            sockets_skipped: [0; SocketSkip::ALL.len()],
            sockets_warned: [false; SocketSkip::ALL.len()],
            ticks_per_second,
            kernel_ids: None,
            progress: Arc::new(AtomicI32::new(0)),
        }
    }

    /// Which processes' threads the scan reads.
    pub fn with_threads(mut self, threads: ThreadScan) -> Scanner {
        self.threads = threads;
        self
    }

    /// Where the scan looks for namespaces held without a process.
    pub fn with_pins(mut self, pins: PinScan) -> Scanner {
        self.pins = pins;
        self
    }

    pub fn procfs(&self) -> &ProcFs {
        &self.procfs
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
        let mut processes = BTreeMap::new();
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
                Ok(process) => {
                    processes.insert(pid, process);
                }
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
        let (time, wall) = self.now();
        let host = host_namespaces(&processes);
        let mut snapshot = Snapshot::from_processes(wall, time, processes, host);
        let socket_queries = self.add_pins(dir_fd.as_fd(), &mut snapshot, &mut reader.errors);
        let id_queries = self.identify(dir_fd.as_fd(), &mut snapshot, previous, &mut reader.errors);
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

    /// A sweep between full scans: lists the procfs and reads only the processes that are
    /// new, that is whose pid `known` does not hold, and that `swept` has not seen twice
    /// already (a process read right after its exec is read once more at the next sweep, in
    /// case it was about to call setns(2), as nsenter does). Costs a getdents of the procfs
    /// and the reads of the new processes: the cost follows how many start, not how many run.
    /// The processes come back without kernel ids; kthreadd's children count as kernel threads
    /// only where `known` says PID 2 is kthreadd.
    ///
    /// Every process in `watch` (the last scan's containers' processes, and those read since)
    /// is read again in place, its eight namespace links only
    /// (readlink, unprivileged): where one differs from what it was last seen in, the process
    /// is read whole and comes back with the new ones, so that a stay in another namespace as
    /// long as the sweep interval is seen. Its main thread's links only: a thread that moves
    /// alone is seen by the next full scan (`--scan.threads`).
    pub fn sweep(
        &mut self,
        known: &Snapshot,
        swept: &mut HashMap<i32, (u64, u8)>,
        watch: &mut Watch,
    ) -> Result<Sweep, ScanFailure> {
        let (root, mut dir, dir_fd) = self.open_root()?;
        let mut reader = ProcessReader::new(dir_fd.as_fd(), &root, self.threads);
        reader.kthreadd = known.processes.get(&2).is_some_and(|p| p.ppid == 0);
        let mut processes = Vec::new();
        let (mut listed, mut rechecked) = (0, 0);
        let types = watch.types();
        let mut link = LinkName::default();
        for entry in dir.iter().flatten() {
            let name = entry.file_name();
            let Some(pid) = pid_of(name.to_bytes()) else {
                continue;
            };
            listed += 1;
            if let Some((start, expected)) = watch.expected(pid, known) {
                rechecked += 1;
                if reader.links_match(pid, &expected, &types, &mut link) {
                    continue;
                }
                // Moved, exited, or its pid reused: read whole, judged as new.
                if let Ok(process) = reader.read(name, pid)
                    && (process.id.start_ticks != start || process.namespaces != expected)
                {
                    watch.add(&process);
                    processes.push(process);
                }
                continue;
            }
            if known.processes.contains_key(&pid) {
                continue;
            }
            if swept.get(&pid).is_some_and(|s| s.1 >= 2) {
                continue;
            }
            if let Ok(process) = reader.read(name, pid) {
                let entry = swept.entry(pid).or_insert((process.id.start_ticks, 0));
                if entry.0 != process.id.start_ticks {
                    // The pid was reused since the last sweep: a new process.
                    *entry = (process.id.start_ticks, 0);
                }
                entry.1 += 1;
                processes.push(process);
            }
        }
        Ok(Sweep {
            processes,
            listed,
            rechecked,
            errors: reader.errors,
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

    /// Adds the namespaces held by bind mounts, fds and sockets, as [`PinScan`] says, to
    /// `snapshot`. Returns how many sockets were asked for their network namespace.
    fn add_pins(
        &mut self,
        root: BorrowedFd<'_>,
        snapshot: &mut Snapshot,
        errors: &mut ScanErrors,
    ) -> u64 {
        let procfs = self.procfs.root();
        let mounts = if self.pins.mounts {
            pins::read_mounts(root, procfs, snapshot, errors)
        } else {
            Vec::new()
        };
        let mut socket_queries = 0;
        let (fds, sockets) = match self.pins.fds {
            None => (Vec::new(), Vec::new()),
            Some(every) => {
                let now = snapshot.time.ticks;
                let every = every.as_millis() as u64 * self.ticks_per_second / 1000;
                match &self.fd_pass {
                    Some(last) if now.saturating_sub(last.at) < every => {
                        let lives = |p: &ProcessId| {
                            snapshot
                                .processes
                                .get(&p.pid)
                                .is_some_and(|now| now.id == *p)
                        };
                        let fds = last.fds.iter().filter(|(_, f)| lives(&f.process));
                        let sockets = last.sockets.iter().filter(|(_, s)| lives(&s.process));
                        (fds.copied().collect(), sockets.copied().collect())
                    }
                    _ => {
                        let pass = pins::read_fds(
                            root,
                            procfs,
                            &snapshot.processes,
                            Some(&mut self.sockets),
                            errors,
                        );
                        if pass.skipped > 0 && self.fds_skipped == 0 {
                            tracing::warn!(
                                processes = pass.skipped,
                                "the fds of other users' processes are not read: listing their /proc/PID/fd needs CAP_DAC_READ_SEARCH (said once; counted in nsexporter_fd_scan_skipped_processes); namespaces that only their fds hold are not seen"
                            );
                        }
                        self.fds_skipped = pass.skipped;
                        self.note_socket_skips(pass.sockets_skipped);
                        socket_queries = pass.sockets_asked;
                        self.fd_pass = Some(LastFdPass {
                            at: now,
                            fds: pass.pins.clone(),
                            sockets: pass.sockets.clone(),
                        });
                        (pass.pins, pass.sockets)
                    }
                }
            }
        };
        let mut touched = HashSet::new();
        let mounts = mounts.into_iter().map(|(id, m)| (id, Some(m), None, None));
        let fds = fds.into_iter().map(|(id, f)| (id, None, Some(f), None));
        let sockets = sockets.into_iter().map(|(id, s)| (id, None, None, Some(s)));
        for (id, mount, fd, socket) in mounts.chain(fds).chain(sockets) {
            let ns = snapshot
                .namespaces
                .entry(id)
                .or_insert_with(|| Namespace::new(id));
            ns.mounts.extend(mount);
            ns.fds.extend(fd);
            ns.sockets.extend(socket);
            touched.insert(id);
        }
        for id in touched {
            let ns = snapshot.namespaces.get_mut(&id).expect("just added");
            ns.mounts.sort();
            ns.mounts
                .dedup_by(|a, b| a.mnt_ns == b.mnt_ns && a.path == b.path);
            ns.fds.sort();
            ns.sockets.sort();
        }
        socket_queries
    }

    /// Keeps the socket skips of the last fd pass, and says each reason the first time it
    /// appears, once in the exporter's life: they come from how the node and the exporter
    /// are set up, and hold pass after pass.
    fn note_socket_skips(&mut self, skipped: SocketSkips) {
        self.sockets_skipped = skipped;
        for why in SocketSkip::ALL {
            let sockets = skipped[why.index()];
            if sockets == 0 || std::mem::replace(&mut self.sockets_warned[why.index()], true) {
                continue;
            }
            let consequence = match why {
                SocketSkip::OtherPidNamespace => {
                    "the procfs is not of the exporter's pid namespace (a pod without hostPID): pidfd_open(2) cannot name its processes, so no socket is asked for its network namespace"
                }
                SocketSkip::NoNetAdmin => {
                    "the kernel tells a socket's network namespace (SIOCGSKNS) only to a holder of CAP_NET_ADMIN, which the exporter lacks"
                }
                SocketSkip::PermissionDenied => {
                    "pidfd_getfd(2) was refused (EPERM: no CAP_SYS_PTRACE over the holding process, or an LSM, Yama or seccomp said no)"
                }
                SocketSkip::Unsupported => "the kernel has no pidfd_getfd(2) (Linux < 5.6)",
            };
            tracing::warn!(
                reason = why.as_str(),
                sockets,
                "{consequence}; network namespaces that only such sockets hold are not seen (said once; counted in nsexporter_fd_scan_skipped_sockets)"
            );
        }
    }

    /// Fills in each namespace's kernel id, owner and parent: carried over where a member
    /// survived from `previous` (a process cannot be in two namespaces of one type, so the
    /// namespace is the same one), asked of the kernel through a member's link, a bind mount,
    /// an fd or a socket otherwise. A namespace with no member is asked every scan: a pin proves
    /// nothing across scans, since `ip netns del x; ip netns add x` can mount a new namespace
    /// with the old inode on the old path. Returns how many namespaces were asked about.
    fn identify(
        &mut self,
        root: BorrowedFd<'_>,
        snapshot: &mut Snapshot,
        previous: Option<&Snapshot>,
        errors: &mut ScanErrors,
    ) -> u64 {
        let mut queries = 0;
        let mut name = LinkName::default();
        let kernel_ids = self.kernel_ids;
        for ns in snapshot.namespaces.values_mut() {
            let carried = previous
                .and_then(|p| p.namespaces.get(&ns.id))
                .filter(|old| shares_member(&old.members, &ns.members))
                .filter(|old| old.kernel_id.is_some() || kernel_ids == Some(false));
            if let Some(old) = carried {
                ns.kernel_id = old.kernel_id;
                ns.owner = old.owner;
                ns.parent = old.parent;
                continue;
            }
            queries += 1;
            if let Some(facts) = self.ask(root, ns, &mut name, errors) {
                ns.kernel_id = facts.kernel_id;
                ns.owner = facts.owner;
                ns.parent = facts.parent;
            }
        }
        snapshot.identity = if snapshot.namespaces.values().any(|n| n.kernel_id.is_some()) {
            Identity::KernelId
        } else {
            Identity::Heuristic
        };
        queries
    }

    /// Asks the kernel about `ns` through its members' links (in pid order), then its bind
    /// mounts, then its fds, then its sockets, until one opens the inode the scan saw (a member may have exited
    /// and its pid been reused, a mount been replaced).
    fn ask(
        &mut self,
        root: BorrowedFd<'_>,
        ns: &Namespace,
        name: &mut LinkName,
        errors: &mut ScanErrors,
    ) -> Option<NsFacts> {
        let t = ns.id.ns_type;
        let members = ns.members.iter().take(4).map(|m| (m.pid, None));
        let mounts = ns.mounts.iter().take(4).map(|m| {
            let pin = PinPath::Mount {
                pid: m.via_pid,
                path: &m.path,
            };
            (m.via_pid, Some(pin))
        });
        let fds = ns.fds.iter().take(4).map(|f| {
            let pid = f.process.pid;
            (pid, Some(PinPath::Fd { pid, fd: f.fd }))
        });
        let sockets = ns.sockets.iter().take(4).map(|s| {
            let (pid, fd, socket) = (s.process.pid, s.fd, s.socket);
            (pid, Some(PinPath::Socket { pid, fd, socket }))
        });
        for (pid, pin) in members.chain(mounts).chain(fds).chain(sockets) {
            self.progress.store(pid, Ordering::Relaxed);
            let result = match pin {
                Some(pin) => pin_facts(root, pin, t),
                None => ns_facts(root, name.of(pid, t), t),
            };
            self.progress.store(0, Ordering::Relaxed);
            match result {
                Ok(facts) if facts.inode == ns.id.inode => {
                    self.note_kernel_ids(facts.kernel_id.is_some());
                    return Some(facts);
                }
                // The path now leads to another namespace.
                Ok(_) => {}
                Err(e) if is_vanished(&e) || e.raw_os_error() == Some(nix::libc::ESTALE) => {}
                // A pin is opened through /proc/PID/root or /proc/PID/fd, which an LSM profile
                // may refuse (the shipped AppArmor profile does) where it allows the ns links;
                // and a path swapped for a symlink is refused (ELOOP). The namespace then goes
                // without its id and owner, which its `userns=""` shows, rather than counting
                // an error every scan.
                Err(e) if pin.is_some() => {
                    tracing::debug!(?pin, error = %e, "a pinned namespace could not be opened");
                }
                Err(e) => {
                    let path = self.procfs.path(name.as_path());
                    tracing::debug!(path = %path.display(), error = %e, "ioctl_ns failed");
                    errors.record(ErrorReason::of_io(&e), || {
                        format!("{}: {e}", path.display())
                    });
                    return None;
                }
            }
        }
        None
    }

    /// Remembers whether the kernel answers `NS_GET_ID`, and says so once where it does not.
    fn note_kernel_ids(&mut self, answered: bool) {
        if !answered && self.kernel_ids.is_none() {
            tracing::info!(
                "the kernel has no NS_GET_ID (Linux < 6.18): namespaces are told apart by inode and member start times"
            );
        }
        if self.kernel_ids != Some(true) {
            self.kernel_ids = Some(answered);
        }
    }
}

/// Whether two member lists, each sorted by pid, hold a common process.
fn shares_member(a: &[ProcessId], b: &[ProcessId]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].pid.cmp(&b[j].pid) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal if a[i] == b[j] => return true,
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    false
}

/// `PID/ns/TYPE`, NUL-terminated, built without allocation.
#[derive(Default)]
struct LinkName {
    buf: [u8; 32],
    len: usize,
}

impl LinkName {
    fn of(&mut self, pid: i32, ns_type: NsType) -> &CStr {
        let mut digits = itoa::Buffer::new();
        let mut len = 0;
        for part in [
            digits.format(pid).as_bytes(),
            b"/",
            ns_type.proc_link().to_bytes(),
        ] {
            self.buf[len..len + part.len()].copy_from_slice(part);
            len += part.len();
        }
        self.buf[len] = 0;
        self.len = len;
        CStr::from_bytes_with_nul(&self.buf[..=len]).expect("one NUL, at the end")
    }

    fn as_path(&self) -> &Path {
        Path::new(std::str::from_utf8(&self.buf[..self.len]).unwrap_or(""))
    }
}

/// A pid, tid or fd directory entry name: decimal digits only (`self`, `thread-self`, `.`
/// and files are skipped).
pub(crate) fn pid_of(name: &[u8]) -> Option<i32> {
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// Why a process is missing from the snapshot.
enum Skipped {
    /// It exited while being read, or is a zombie whose namespace links are gone.
    Vanished,
    /// A read failed; the failure was counted.
    Failed,
}

/// The per-process reads, with buffers reused across processes.
struct ProcessReader<'a> {
    dir: BorrowedFd<'a>,
    root: &'a Path,
    errors: ScanErrors,
    link_buf: [u8; 64],
    stat_buf: [u8; 1024],
    /// A hybrid hierarchy with long kubepods paths is a few KiB; 16 KiB leaves room.
    cgroup_buf: Vec<u8>,
    /// Every distinct cgroup file of this scan, once: the processes of one container share it.
    cgroups: HashSet<Arc<[u8]>>,
    /// Whether PID 2 was kthreadd (parent 0): its children are kernel threads.
    kthreadd: bool,
    threads: ThreadScan,
    /// Whether each distinct cgroup file of this scan names a container, by its address.
    in_container: HashMap<*const u8, bool>,
    /// The process being read, for its failures.
    reading: Option<ProcessId>,
}

impl<'a> ProcessReader<'a> {
    fn new(dir: BorrowedFd<'a>, root: &'a Path, threads: ThreadScan) -> Self {
        ProcessReader {
            dir,
            root,
            errors: ScanErrors::default(),
            link_buf: [0; 64],
            stat_buf: [0; 1024],
            cgroup_buf: vec![0; 16 * 1024],
            cgroups: HashSet::new(),
            kthreadd: false,
            threads,
            in_container: HashMap::new(),
            reading: None,
        }
    }

    fn fail(&mut self, reason: ErrorReason, what: &str, e: &dyn std::fmt::Display) {
        let root = self.root;
        tracing::debug!(reason = reason.as_str(), path = %root.join(what).display(), error = %e, "scan error");
        let message = || format!("{}: {e}", root.join(what).display());
        match self.reading {
            Some(who) => self.errors.record_process(who, reason, message),
            None => self.errors.record(reason, message),
        }
    }

    /// Reads one process. Every failure but a vanished process is counted; where `stat` was
    /// readable, the process is kept with the links that could be read.
    fn read(&mut self, name: &CStr, pid: i32) -> Result<Process, Skipped> {
        self.reading = Some(ProcessId {
            pid,
            start_ticks: 0,
        });
        let read = self.read_process(name, pid);
        self.reading = None;
        read
    }

    fn read_process(&mut self, name: &CStr, pid: i32) -> Result<Process, Skipped> {
        let name = Path::new(name.to_str().map_err(|_| Skipped::Vanished)?);
        let pid_dir = match open_dir_at(Some(self.dir), name) {
            Ok(fd) => fd,
            Err(e) if is_vanished(&e) => return Err(Skipped::Vanished),
            Err(e) => {
                self.fail(ErrorReason::of_io(&e), &pid.to_string(), &e);
                return Err(Skipped::Failed);
            }
        };
        let stat = match read_at(pid_dir.as_fd(), c"stat", &mut self.stat_buf) {
            Ok(bytes) => match parse_stat(bytes) {
                Ok(s) => s,
                Err(e) => {
                    self.fail(ErrorReason::ParseError, &format!("{pid}/stat"), &e);
                    return Err(Skipped::Failed);
                }
            },
            Err(e) if is_vanished(&e) => return Err(Skipped::Vanished),
            Err(e) => {
                self.fail(ErrorReason::of_io(&e), &format!("{pid}/stat"), &e);
                return Err(Skipped::Failed);
            }
        };
        self.reading = Some(ProcessId {
            pid,
            start_ticks: stat.start_ticks,
        });
        let uid = match owner_uid(pid_dir.as_fd()) {
            Ok(uid) => uid,
            Err(e) if is_vanished(&e) => return Err(Skipped::Vanished),
            Err(e) => {
                self.fail(ErrorReason::of_io(&e), &pid.to_string(), &e);
                return Err(Skipped::Failed);
            }
        };
        let mut namespaces = PerType::splat(None);
        let mut absent = 0;
        // One failure per process and reason: eight EACCES on a protected init are one problem.
        let mut failed: Option<ErrorReason> = None;
        for ns_type in NsType::ALL {
            let link = ns_type.proc_link();
            match readlink_at(pid_dir.as_fd(), link, &mut self.link_buf) {
                Ok(text) => match parse_ns_link(ns_type, text) {
                    Ok(inode) => namespaces[ns_type] = NonZeroU64::new(inode),
                    Err(e) => {
                        if failed != Some(ErrorReason::ParseError) {
                            failed = Some(ErrorReason::ParseError);
                            let what = format!("{pid}/{}", link.to_string_lossy());
                            self.fail(ErrorReason::ParseError, &what, &e);
                        }
                    }
                },
                // A kernel without this type (no `time` before 5.6) has no link: not an error.
                Err(e) if is_vanished(&e) => absent += 1,
                Err(e) => {
                    let reason = ErrorReason::of_io(&e);
                    if failed != Some(reason) {
                        failed = Some(reason);
                        let what = format!("{pid}/{}", link.to_string_lossy());
                        self.fail(reason, &what, &e);
                    }
                }
            }
        }
        if absent == NsType::ALL.len() {
            return Err(Skipped::Vanished);
        }
        // Kernel threads all sit in the root cgroup: nothing to attribute, nothing to read.
        if pid == 2 && stat.ppid == 0 {
            self.kthreadd = true;
        }
        let kernel_thread = (pid == 2 && stat.ppid == 0) || (stat.ppid == 2 && self.kthreadd);
        let cgroup = if kernel_thread {
            None
        } else {
            match read_at(pid_dir.as_fd(), c"cgroup", &mut self.cgroup_buf) {
                Ok(bytes) => Some(match self.cgroups.get(bytes) {
                    Some(shared) => Arc::clone(shared),
                    None => {
                        let owned: Arc<[u8]> = Arc::from(bytes);
                        self.cgroups.insert(Arc::clone(&owned));
                        owned
                    }
                }),
                // No cgroup file: a kernel without cgroups, or the process exited after its
                // links were read. Either way there is nothing to attribute; keep what was read.
                Err(e) if is_vanished(&e) => None,
                Err(e) => {
                    let reason = ErrorReason::of_io(&e);
                    if failed != Some(reason) {
                        self.fail(reason, &format!("{pid}/cgroup"), &e);
                    }
                    None
                }
            }
        };
        let thread_namespaces = if stat.threads > 1 && self.wants_threads(cgroup.as_ref()) {
            self.read_threads(pid_dir.as_fd(), pid, &namespaces)
        } else {
            Vec::new()
        };
        Ok(Process {
            id: ProcessId {
                pid,
                start_ticks: stat.start_ticks,
            },
            ppid: stat.ppid,
            uid,
            comm: stat.comm,
            namespaces,
            cgroup,
            thread_namespaces,
        })
    }

    /// Whether `pid`'s namespace links of the `types` are `expected`: a readlink each through
    /// the procfs root, no allocation; the sweep's whole cost for a process that stayed (an
    /// open of `PID/ns` first costs two more syscalls than it saves here). A link that cannot
    /// be read or parsed is a difference, for the whole read to say why.
    fn links_match(
        &mut self,
        pid: i32,
        expected: &PerType<Option<NonZeroU64>>,
        types: &PerType<bool>,
        name: &mut LinkName,
    ) -> bool {
        NsType::ALL.into_iter().filter(|&t| types[t]).all(|t| {
            let Some(want) = expected[t] else {
                return true;
            };
            readlink_at(self.dir, name.of(pid, t), &mut self.link_buf)
                .ok()
                .and_then(|text| parse_ns_link(t, text).ok())
                == Some(want.get())
        })
    }

    /// Whether to read the threads of a multi-threaded process with this cgroup file.
    fn wants_threads(&mut self, cgroup: Option<&Arc<[u8]>>) -> bool {
        match self.threads {
            ThreadScan::None => false,
            ThreadScan::All => true,
            // The cgroup parser is a pure function of the bytes read here; attribution
            // classifies the same bytes again, memoised the same way.
            ThreadScan::Containers => cgroup.is_some_and(|c| {
                *self
                    .in_container
                    .entry(c.as_ptr())
                    .or_insert_with(|| matches!(parse_cgroup(c), CgroupWorkload::Container(_)))
            }),
        }
    }

    /// The namespaces the threads of `pid` are in and its main thread is not, read from
    /// `task/TID/ns/TYPE`. A thread that exits meanwhile is skipped; other failures are
    /// counted once for the process.
    fn read_threads(
        &mut self,
        pid_dir: BorrowedFd<'_>,
        pid: i32,
        main: &PerType<Option<NonZeroU64>>,
    ) -> Vec<ThreadNamespace> {
        let mut out = Vec::new();
        let task = match open_dir_at(Some(pid_dir), Path::new("task"))
            .and_then(|fd| Dir::from_fd(fd).map_err(io::Error::from))
        {
            Ok(dir) => dir,
            Err(e) if is_vanished(&e) => return out,
            Err(e) => {
                self.fail(ErrorReason::of_io(&e), &format!("{pid}/task"), &e);
                return out;
            }
        };
        let Ok(task_fd) = task.as_fd().try_clone_to_owned() else {
            return out;
        };
        let mut name = LinkName::default();
        let mut failed = false;
        let mut task = task;
        for entry in task.iter() {
            let Some(tid) = entry.ok().and_then(|e| pid_of(e.file_name().to_bytes())) else {
                continue;
            };
            if tid == pid {
                continue;
            }
            for ns_type in NsType::ALL {
                let link = name.of(tid, ns_type);
                match readlink_at(task_fd.as_fd(), link, &mut self.link_buf) {
                    Ok(text) => {
                        if let Ok(inode) = parse_ns_link(ns_type, text)
                            && NonZeroU64::new(inode) != main[ns_type]
                        {
                            out.push(ThreadNamespace {
                                tid,
                                id: NamespaceId { ns_type, inode },
                            });
                        }
                    }
                    Err(e) if is_vanished(&e) => break,
                    Err(e) => {
                        if !std::mem::replace(&mut failed, true) {
                            let what = format!("{pid}/task/{}", name.as_path().display());
                            self.fail(ErrorReason::of_io(&e), &what, &e);
                        }
                        break;
                    }
                }
            }
        }
        out
    }
}

/// Which processes' threads a scan reads (`--scan.threads`): setns(2) moves one thread, so a
/// thread can sit in a namespace its process's `/proc/PID/ns` does not show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreadScan {
    /// Multi-threaded processes whose cgroup names a container: where a thread in the host's
    /// namespaces is an escape.
    #[default]
    Containers,
    /// Every multi-threaded process.
    All,
    /// None: the main thread's links only, as lsns shows them.
    None,
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
        host.inodes[t] = init[t].or(kthreadd[t]).map(NonZeroU64::get);
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

    fn process(pid: i32, ppid: i32, net: Option<u64>) -> Process {
        let mut namespaces = PerType::splat(None);
        namespaces[NsType::Net] = net.and_then(NonZeroU64::new);
        namespaces[NsType::Pid] = NonZeroU64::new(7);
        Process {
            id: ProcessId {
                pid,
                start_ticks: 1,
            },
            ppid,
            uid: 0,
            comm: "x".into(),
            namespaces,
            cgroup: None,
            thread_namespaces: Vec::new(),
        }
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
