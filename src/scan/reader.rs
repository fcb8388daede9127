//! One process's reads: `openat(2)` of `/proc/PID`, `readlinkat(2)` of its `ns/TYPE` links
//! (proc_pid_ns(5)), its `stat` (proc_pid_stat(5)), owner and `cgroup` (cgroups(7)), and its
//! threads' links where `--scan.threads` asks, with buffers reused across processes.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

use nix::dir::Dir;

use super::errors::{ErrorReason, ScanErrors};
use super::watch::Expected;
use crate::cgroup::{CgroupWorkload, parse_cgroup};
use crate::model::{Inode, NamespaceId, NsType, PerType, Process, ProcessId, ThreadNamespace};
use crate::procfs::{
    StatFacts, WHOLE_FILE_MAX, is_vanished, open_dir_at, owner_uid, parse_ns_link, parse_stat,
    pid_of, read_at, read_whole_at, readlink_at,
};

mod threads;

/// `PID/ns/TYPE` (or `PID/FILE`), NUL-terminated, built without allocation.
#[derive(Default)]
pub(super) struct LinkName {
    buf: [u8; 32],
    len: usize,
}

impl LinkName {
    pub(super) fn of(&mut self, pid: i32, ns_type: NsType) -> &CStr {
        self.file(pid, ns_type.proc_link())
    }

    /// `PID`.
    pub(super) fn dir(&mut self, pid: i32) -> &CStr {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(pid).as_bytes();
        self.buf[..digits.len()].copy_from_slice(digits);
        self.buf[digits.len()] = 0;
        self.len = digits.len();
        CStr::from_bytes_with_nul(&self.buf[..=digits.len()]).expect("one NUL, at the end")
    }

    /// `PID/FILE`, for a `file` of a few bytes (`task`, `cgroup`, `ns/TYPE`).
    pub(super) fn file(&mut self, pid: i32, file: &CStr) -> &CStr {
        let mut digits = itoa::Buffer::new();
        let mut len = 0;
        for part in [digits.format(pid).as_bytes(), b"/", file.to_bytes()] {
            self.buf[len..len + part.len()].copy_from_slice(part);
            len += part.len();
        }
        self.buf[len] = 0;
        self.len = len;
        CStr::from_bytes_with_nul(&self.buf[..=len]).expect("one NUL, at the end")
    }

    pub(super) fn as_path(&self) -> &Path {
        Path::new(std::str::from_utf8(&self.buf[..self.len]).unwrap_or(""))
    }
}

/// Why a process is missing from the snapshot.
pub(super) enum Skipped {
    /// It exited while being read, or is a zombie whose namespace links are gone.
    Vanished,
    /// A read failed; the failure was counted.
    Failed,
}

/// What a process's `stat` said, its name shared with every process of that name.
struct Stat {
    comm: Arc<str>,
    ppid: i32,
    start_ticks: u64,
    threads: u64,
}

impl Stat {
    fn of(facts: &StatFacts<'_>, comms: &mut HashMap<Box<[u8]>, Arc<str>>) -> Stat {
        let comm = match comms.get(facts.comm) {
            Some(c) => Arc::clone(c),
            None => {
                let c: Arc<str> = facts.comm_lossy().into();
                comms.insert(facts.comm.into(), Arc::clone(&c));
                c
            }
        };
        Stat {
            comm,
            ppid: facts.ppid,
            start_ticks: facts.start_ticks,
            threads: facts.threads,
        }
    }
}

/// The per-process reads, with buffers reused across processes.
pub(super) struct ProcessReader<'a> {
    dir: BorrowedFd<'a>,
    root: &'a Path,
    pub(super) errors: ScanErrors,
    link_buf: [u8; 64],
    stat_buf: [u8; 1024],
    /// A hybrid hierarchy with long kubepods paths is a few KiB; it grows for a longer file, up
    /// to [`WHOLE_FILE_MAX`], and stays grown for the rest of the scan.
    cgroup_buf: Vec<u8>,
    /// Every distinct cgroup file of this scan, once: the processes of one container share it.
    cgroups: HashSet<Arc<[u8]>>,
    /// The last process's cgroup file: the next, most often its child or sibling, has the same
    /// one, found by a compare rather than a hash of the whole file.
    last_cgroup: Option<Arc<[u8]>>,
    /// Every distinct `comm` of this scan, as read and as decoded: decoded once, held once.
    comms: HashMap<Box<[u8]>, Arc<str>>,
    /// Whether PID 2 was kthreadd (parent 0): its children are kernel threads.
    pub(super) kthreadd: bool,
    threads: ThreadScan,
    /// Whether each distinct cgroup file of this scan names a container, by its address.
    in_container: HashMap<*const u8, bool>,
    /// The process being read, for its failures.
    reading: Option<ProcessId>,
}

impl<'a> ProcessReader<'a> {
    pub(super) fn new(dir: BorrowedFd<'a>, root: &'a Path, threads: ThreadScan) -> Self {
        ProcessReader {
            dir,
            root,
            errors: ScanErrors::default(),
            link_buf: [0; 64],
            stat_buf: [0; 1024],
            cgroup_buf: vec![0; 16 * 1024],
            cgroups: HashSet::new(),
            last_cgroup: None,
            comms: HashMap::new(),
            kthreadd: false,
            threads,
            in_container: HashMap::new(),
            reading: None,
        }
    }

    pub(super) fn fail(&mut self, reason: ErrorReason, what: &str, e: &dyn std::fmt::Display) {
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
    pub(super) fn read(&mut self, name: &CStr, pid: i32) -> Result<Process, Skipped> {
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
                Ok(s) => Stat::of(&s, &mut self.comms),
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
                    Ok(inode) => namespaces[ns_type] = Some(inode),
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
            match read_whole_at(
                pid_dir.as_fd(),
                c"cgroup",
                &mut self.cgroup_buf,
                WHOLE_FILE_MAX,
            ) {
                Ok(bytes) => {
                    let shared = match &self.last_cgroup {
                        Some(last) if **last == *bytes => Arc::clone(last),
                        _ => match self.cgroups.get(bytes) {
                            Some(shared) => Arc::clone(shared),
                            None => {
                                let owned: Arc<[u8]> = Arc::from(bytes);
                                self.cgroups.insert(Arc::clone(&owned));
                                owned
                            }
                        },
                    };
                    self.last_cgroup = Some(Arc::clone(&shared));
                    Some(shared)
                }
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
    pub(super) fn links_match(
        &mut self,
        pid: i32,
        expected: &PerType<Option<Inode>>,
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
                == Some(want)
        })
    }

    /// Whether `pid`'s `cgroup` file is still `expected`: one read, compared. A process gone
    /// meanwhile, or a file that cannot be read, is left to the next scan.
    pub(super) fn cgroup_is(&mut self, pid: i32, expected: &[u8], name: &mut LinkName) -> bool {
        let path = name.file(pid, c"cgroup");
        match read_whole_at(self.dir, path, &mut self.cgroup_buf, WHOLE_FILE_MAX) {
            Ok(bytes) => bytes == expected,
            Err(_) => true,
        }
    }
}

/// Which processes' threads a scan reads (`--scan.threads`): setns(2) moves one thread, so a
/// thread can sit in a namespace its process's `/proc/PID/ns` does not show. The default is
/// the key table's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreadScan {
    /// Multi-threaded processes whose cgroup names a container: where a thread in the host's
    /// namespaces is an escape.
    Containers,
    /// Every multi-threaded process.
    All,
    /// None: the main thread's links only, as lsns shows them.
    None,
}
