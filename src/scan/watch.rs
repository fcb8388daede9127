//! What sweeps read between scans: [`Sweep`], and the [`Watch`] of processes re-read in place.

use std::collections::HashMap;

use super::errors::ScanErrors;
use crate::model::{Inode, NsType, PerType, Process, Snapshot};

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
    read: HashMap<i32, (u64, PerType<Option<Inode>>)>,
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
    pub(super) fn expected(
        &self,
        pid: i32,
        known: &Snapshot,
    ) -> Option<(u64, PerType<Option<Inode>>)> {
        if let Some(read) = self.read.get(&pid) {
            return Some(*read);
        }
        self.pids.binary_search(&pid).ok()?;
        let p = known.processes.get(&pid)?;
        Some((p.id.start_ticks, p.namespaces))
    }
}
