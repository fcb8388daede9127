//! What sweeps read between scans: [`Sweep`], the [`Watch`] of processes re-read in place, and
//! where the sweeps' round-robin re-reads ([`Rounds`]) stand.

use std::collections::HashMap;
use std::sync::Arc;

use super::errors::ScanErrors;
use crate::model::{Inode, NsType, PerType, Process, Snapshot, ThreadNamespace};

/// What a sweep read: the processes new since the last full scan, and the watched ones that
/// moved to another namespace since it.
#[derive(Debug)]
pub struct Sweep {
    pub processes: Vec<Process>,
    /// Pid directories listed.
    pub listed: u64,
    /// Watched processes whose namespace links were read again in place.
    pub rechecked: u64,
    /// Syscalls the round-robin re-check of watched processes' threads spent (at most
    /// [`Watch::THREAD_READS`]).
    pub thread_reads: u64,
    /// Other processes whose `cgroup` file was read again (at most [`Watch::HOST_CGROUPS`]).
    pub cgroups_reread: u64,
    pub errors: ScanErrors,
}

/// What a watched process is expected in: what it was last read in.
pub(super) struct Expected<'a> {
    pub(super) start: u64,
    pub(super) namespaces: PerType<Option<Inode>>,
    /// Where its threads were found elsewhere than its main thread.
    pub(super) threads: &'a [ThreadNamespace],
}

/// A watched process as a sweep or an event last read it.
#[derive(Debug)]
struct LastRead {
    start: u64,
    namespaces: PerType<Option<Inode>>,
    threads: Vec<ThreadNamespace>,
}

/// Where the sweeps' round-robin re-reads stand, in pid order: the threads of watched
/// processes, and the `cgroup` files of the others. Kept by the scanner across scans, so that
/// a round goes on where it stopped however often the watch is rebuilt.
#[derive(Debug, Default)]
pub(super) struct Rounds {
    /// The last process whose threads were re-checked, and how many of its threads (in its
    /// `task` listing's order) were; `u32::MAX` once they all were.
    pub(super) threads: (i32, u32),
    /// The last process whose `cgroup` file was read again.
    pub(super) hosts: i32,
}

impl Rounds {
    /// Whether the thread round has yet to read (more of) `pid`'s threads, and how many of
    /// them it read already.
    pub(super) fn threads_from(&self, pid: i32) -> Option<u32> {
        let (at, read) = self.threads;
        if pid > at {
            Some(0)
        } else if pid == at && read != u32::MAX {
            Some(read)
        } else {
            None
        }
    }
}

/// The processes that sweeps read again in place: a process that is already running can
/// setns(2) at any time, and neither the listing of new pids nor the proc connector's fork and
/// exec events say so. Containers' processes are watched (where a move is an escape): those
/// of the last scan, and those read since, by a sweep or on an event. What each is expected
/// in is what it was last read in, its threads too.
///
/// A thread moves alone (setns(2) moves the caller), and reading every thread of every watched
/// process each sweep would cost many times the main threads' re-check: threads are re-read
/// round-robin instead, [`Watch::THREAD_READS`] syscalls a sweep, so that a thread's stay is
/// seen within a round of every watched process's threads. Processes that are not watched
/// (the host's, and any read since as not a container's) have their `cgroup` file read again
/// round-robin, [`Watch::HOST_CGROUPS`] a sweep: one moved into a container's cgroup is read
/// whole and judged, and watched from then on, before the next scan.
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
    /// Processes read since the last scan: start ticks, and the namespaces then, its
    /// threads' too.
    read: HashMap<i32, LastRead>,
    /// Processes not watched that were read since the last scan, with the `cgroup` file they
    /// were read with (the last scan's processes are compared with its files).
    hosts: HashMap<i32, Arc<[u8]>>,
}

impl Watch {
    /// One sweep in this many reads the [`Watch::sometimes`] types too.
    pub const ROTATION: u64 = 4;

    /// Syscalls a sweep spends re-reading watched processes' threads: a `stat` of
    /// `PID/task` tells a single-threaded process at once (its link count), the listing of a
    /// multi-threaded one costs three, and each link of a thread one. Small beside the
    /// re-check of 2,500 processes' main threads, so that the two stay within the 2 % of a
    /// core budgeted for them (docs/performance.md has what each costs).
    pub const THREAD_READS: u32 = 512;

    /// Processes not watched whose `cgroup` file a sweep reads again, a read of a few hundred
    /// bytes each (docs/performance.md): a node's few hundred host processes every few
    /// sweeps.
    pub const HOST_CGROUPS: u32 = 100;

    /// Watches `pids` of the last scan for a move in `types` (the host rules' types),
    /// forgetting what was read before it. Every sweep reads `mnt` and `net`, where an escape
    /// does the most harm; the other types every [`Watch::ROTATION`]th sweep: a budget of 2 %
    /// of a core for 2,500 processes at one sweep a second pays for a few readlinks a
    /// process, not all of them (docs/performance.md has a readlink's cost). A process's own
    /// `pid` link never
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
            hosts: HashMap::new(),
        }
    }

    /// The types this sweep reads.
    pub(super) fn types(&mut self) -> PerType<bool> {
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
        let read = LastRead {
            start: p.id.start_ticks,
            namespaces: p.namespaces,
            threads: p.thread_namespaces.clone(),
        };
        self.read.insert(p.id.pid, read);
        self.hosts.remove(&p.id.pid);
    }

    /// Remembers the `cgroup` file that `p`, read between scans, had then, for the round of
    /// re-reads to compare with, unless `p` is watched.
    pub(super) fn add_host(&mut self, p: &Process) {
        if let Some(cgroup) = &p.cgroup
            && !self.read.contains_key(&p.id.pid)
        {
            self.hosts.insert(p.id.pid, Arc::clone(cgroup));
        }
    }

    /// The `cgroup` file `pid`, not watched, was last read with; `None` for a kernel thread or
    /// a process neither the last scan nor a sweep read.
    pub(super) fn host_cgroup<'a>(&'a self, pid: i32, known: &'a Snapshot) -> Option<&'a [u8]> {
        match self.hosts.get(&pid) {
            Some(cgroup) => Some(cgroup),
            None => known.processes.get(&pid)?.cgroup.as_deref(),
        }
    }

    /// How many processes are watched.
    pub fn len(&self) -> usize {
        self.pids.len() + self.read.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What `pid` was last read with, if it is watched.
    pub(super) fn expected<'a>(&'a self, pid: i32, known: &'a Snapshot) -> Option<Expected<'a>> {
        if let Some(read) = self.read.get(&pid) {
            return Some(Expected {
                start: read.start,
                namespaces: read.namespaces,
                threads: &read.threads,
            });
        }
        self.pids.binary_search(&pid).ok()?;
        let p = known.processes.get(&pid)?;
        Some(Expected {
            start: p.id.start_ticks,
            namespaces: p.namespaces,
            threads: &p.thread_namespaces,
        })
    }
}
