//! One scan of a procfs: every process's eight namespace links, `stat` and owner, into a
//! [`Snapshot`].
//!
//! Kernel interfaces: getdents(2) on the procfs root, then per process `openat(2)` of
//! `/proc/PID`, `readlinkat(2)` of `ns/TYPE` (proc_pid_ns(5)), a read of `stat`
//! (proc_pid_stat(5)) and `fstat(2)` of the directory for the owner. A process that exits
//! mid-scan is normal and skipped; every other failure is counted by [`ErrorReason`] and the scan
//! goes on.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::SystemTime;

use nix::dir::Dir;

use crate::model::{HostNamespaces, HostSource, NsType, Process, ProcessId, Snapshot};
use crate::procfs::{
    ProcError, ProcFs, is_vanished, open_dir_at, owner_uid, parse_ns_link, parse_stat, read_at,
    readlink_at,
};

/// Why part of a scan failed. Vanished processes are not errors and have no reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorReason {
    /// EACCES or EPERM: e.g. another user's process read without CAP_SYS_PTRACE, or a
    /// protected init.
    PermissionDenied,
    /// The kernel (or a fixture) gave text that does not parse.
    ParseError,
    /// Any other I/O failure.
    IoError,
}

impl ErrorReason {
    pub const ALL: [ErrorReason; 3] = [
        ErrorReason::PermissionDenied,
        ErrorReason::ParseError,
        ErrorReason::IoError,
    ];

    /// The `reason` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorReason::PermissionDenied => "permission_denied",
            ErrorReason::ParseError => "parse_error",
            ErrorReason::IoError => "io_error",
        }
    }

    fn of_io(e: &io::Error) -> Self {
        match e.raw_os_error() {
            Some(nix::libc::EACCES) | Some(nix::libc::EPERM) => ErrorReason::PermissionDenied,
            _ => ErrorReason::IoError,
        }
    }
}

/// Failures of one scan, counted by reason, with the first example of each for the log.
#[derive(Clone, Debug, Default)]
pub struct ScanErrors {
    counts: [u64; 3],
    first: [Option<String>; 3],
}

impl ScanErrors {
    fn record(&mut self, reason: ErrorReason, what: impl FnOnce() -> String) {
        let i = reason as usize;
        self.counts[i] += 1;
        if self.first[i].is_none() {
            self.first[i] = Some(what());
        }
    }

    pub fn count(&self, reason: ErrorReason) -> u64 {
        self.counts[reason as usize]
    }

    /// The first failure of that reason in this scan, as "path: error".
    pub fn first(&self, reason: ErrorReason) -> Option<&str> {
        self.first[reason as usize].as_deref()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// What a scan returns: the snapshot, and what went wrong on the way.
#[derive(Debug)]
pub struct ScanOutcome {
    pub snapshot: Snapshot,
    pub errors: ScanErrors,
    /// Processes skipped because they exited while being read.
    pub vanished: u64,
}

/// Per-machine constants needed to turn clock ticks into unix time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub boot_time: u64,
    pub ticks_per_second: u64,
}

impl Clock {
    /// Reads boot time from the procfs and the tick rate from `sysconf(_SC_CLK_TCK)`.
    pub fn read(procfs: &ProcFs) -> Result<Clock, ProcError> {
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|&t| t > 0)
            .unwrap_or(100) as u64;
        Ok(Clock {
            boot_time: procfs.boot_time()?,
            ticks_per_second: ticks,
        })
    }

    pub fn unix_time(&self, ticks: u64) -> f64 {
        self.boot_time as f64 + ticks as f64 / self.ticks_per_second as f64
    }
}

/// The `ns/TYPE` names, NUL-terminated for `readlinkat`, by [`NsType::index`].
const NS_LINKS: [&CStr; 8] = [
    c"ns/cgroup",
    c"ns/ipc",
    c"ns/mnt",
    c"ns/net",
    c"ns/pid",
    c"ns/time",
    c"ns/user",
    c"ns/uts",
];

/// Scans `procfs` once. Fails only if the root itself cannot be listed.
pub fn scan(procfs: &ProcFs, clock: &Clock) -> Result<ScanOutcome, ProcError> {
    let root_err = |source| ProcError::Io {
        path: procfs.root().to_path_buf(),
        source,
    };
    let mut dir = Dir::from_fd(procfs.open_root()?).map_err(|e| root_err(e.into()))?;
    // getdents and openat need the same directory; a second fd keeps the borrow checker out of
    // the iterator.
    let dir_fd = dir.as_fd().try_clone_to_owned().map_err(root_err)?;
    let mut reader = ProcessReader {
        dir: dir_fd.as_fd(),
        root: procfs.root(),
        clock,
        errors: ScanErrors::default(),
        link_buf: [0; 64],
        stat_buf: [0; 1024],
    };
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
    let host = host_namespaces(&processes);
    Ok(ScanOutcome {
        snapshot: Snapshot::from_processes(SystemTime::now(), processes, host),
        errors: reader.errors,
        vanished,
    })
}

/// A pid directory name: decimal digits only (`self`, `thread-self` and files are skipped).
fn pid_of(name: &[u8]) -> Option<i32> {
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
    clock: &'a Clock,
    errors: ScanErrors,
    link_buf: [u8; 64],
    stat_buf: [u8; 1024],
}

impl ProcessReader<'_> {
    fn fail(&mut self, reason: ErrorReason, what: &str, e: &dyn std::fmt::Display) {
        let root = self.root;
        tracing::debug!(reason = reason.as_str(), path = %root.join(what).display(), error = %e, "scan error");
        self.errors
            .record(reason, || format!("{}: {e}", root.join(what).display()));
    }

    /// Reads one process. Every failure but a vanished process is counted; where `stat` was
    /// readable, the process is kept with the links that could be read.
    fn read(&mut self, name: &CStr, pid: i32) -> Result<Process, Skipped> {
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
        let uid = match owner_uid(pid_dir.as_fd()) {
            Ok(uid) => uid,
            Err(e) if is_vanished(&e) => return Err(Skipped::Vanished),
            Err(e) => {
                self.fail(ErrorReason::of_io(&e), &pid.to_string(), &e);
                return Err(Skipped::Failed);
            }
        };
        let mut namespaces = [None; 8];
        let mut absent = 0;
        // One failure per process and reason: eight EACCES on a protected init are one problem.
        let mut failed: Option<ErrorReason> = None;
        for ns_type in NsType::ALL {
            let link = NS_LINKS[ns_type.index()];
            match readlink_at(pid_dir.as_fd(), link, &mut self.link_buf) {
                Ok(text) => match parse_ns_link(ns_type, text) {
                    Ok(inode) => namespaces[ns_type.index()] = Some(inode),
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
        Ok(Process {
            id: ProcessId {
                pid,
                start_ticks: stat.start_ticks,
            },
            ppid: stat.ppid,
            uid,
            comm: stat.comm,
            start_time: self.clock.unix_time(stat.start_ticks),
            namespaces,
        })
    }
}

/// The host's namespaces: PID 1's, or, type by type where PID 1's link was unreadable,
/// kthreadd's (PID 2), which always sits in the kernel's initial namespaces.
pub fn host_namespaces(processes: &BTreeMap<i32, Process>) -> HostNamespaces {
    let init = processes.get(&1).map(|p| p.namespaces).unwrap_or([None; 8]);
    let kthreadd = processes
        .get(&2)
        .filter(|p| p.ppid == 0)
        .map(|p| p.namespaces)
        .unwrap_or([None; 8]);
    let mut host = HostNamespaces::none();
    for i in 0..8 {
        host.inodes[i] = init[i].or(kthreadd[i]);
    }
    host.source = if init.iter().any(Option::is_some) {
        HostSource::Init
    } else if kthreadd.iter().any(Option::is_some) {
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
        let mut namespaces = [None; 8];
        namespaces[NsType::Net.index()] = net;
        namespaces[NsType::Pid.index()] = Some(7);
        Process {
            id: ProcessId {
                pid,
                start_ticks: 1,
            },
            ppid,
            uid: 0,
            comm: "x".into(),
            start_time: 0.0,
            namespaces,
        }
    }

    #[test]
    fn host_comes_from_init_then_kthreadd_type_by_type() {
        let mut ps = BTreeMap::new();
        ps.insert(1, process(1, 0, Some(10)));
        ps.insert(2, process(2, 0, Some(20)));
        let host = host_namespaces(&ps);
        assert_eq!(host.source, HostSource::Init);
        assert_eq!(host.inodes[NsType::Net.index()], Some(10));

        // A protected init: its links were unreadable, kthreadd's were not.
        ps.insert(1, process(1, 0, None));
        ps.get_mut(&1).unwrap().namespaces = [None; 8];
        let host = host_namespaces(&ps);
        assert_eq!(host.source, HostSource::Kthreadd);
        assert_eq!(host.inodes[NsType::Net.index()], Some(20));
        assert_eq!(host.inodes[NsType::Pid.index()], Some(7));

        // In a pid namespace PID 2 is an ordinary process, not kthreadd.
        ps.insert(2, process(2, 1, Some(30)));
        assert_eq!(host_namespaces(&ps).source, HostSource::None);
    }
}
