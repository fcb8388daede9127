//! A snapshot kept by events: the last one, with the processes the kernel reported new,
//! exec'd, moved or gone read again or dropped, and nothing else of `/proc` listed or read.
//! What follows the processes (pins, holds, identity, limits) is what a walk does after its
//! walk, so that the same facts give the same snapshot either way; a shallow refresh, between
//! two scan intervals, carries the pins, holds and limits over instead of reading them.

use std::collections::{BTreeSet, HashSet};
use std::os::fd::AsFd;

use crate::model::{Process, ProcessId, Snapshot};

use super::errors::ProcessFailure;
use super::reader::{ProcessReader, Skipped};
use super::{ScanFailure, ScanOutcome, Scanner, host_namespaces};

label_enum! {
    /// Why a scan walked all of `/proc`: the `reason` label of `nsexporter_proc_walks_total`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum WalkReason {
        /// The first scan.
        Start = "start",
        /// A scan of the polling mode: every scan walks.
        Interval = "interval",
        /// The event mode's walk at the safety-net interval, which counts what the events
        /// missed.
        SafetyNet = "safety_net",
        /// The event mode's walk after a loss of events.
        Resync = "resync",
    }
}

label_enum! {
    /// How the scan loop keeps its snapshot: the `mode` label of `nsexporter_scan_mode`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum ScanMode {
        /// Every scan walks `/proc`.
        Polling = "polling",
        /// The eBPF source's task probes keep the snapshot between walks.
        Events = "events",
    }
}

/// What the events changed since the last snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dirty {
    /// Processes to read again: new, exec'd, moved to another cgroup, changed in place, or
    /// named by a namespace change.
    pub read: BTreeSet<i32>,
    /// Processes gone (their last thread exited).
    pub gone: BTreeSet<ProcessId>,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.gone.is_empty()
    }

    pub fn len(&self) -> usize {
        self.read.len() + self.gone.len()
    }
}

/// How much of a refresh reads besides the processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Pins, holds and limits are read as a walk reads them: at the scan interval.
    Deep,
    /// They are carried over from the last snapshot: between two intervals, on events.
    Shallow,
}

impl Scanner {
    /// The next snapshot from `previous` and what the events changed: gone processes dropped,
    /// the children of gone ones read again too (they were reparented), and each process in
    /// `dirty.read` read now (one that exited meanwhile dropped); at [`Depth::Deep`], also
    /// each process with a thread in other namespaces. `None` at [`Depth::Shallow`] where no
    /// process changed: there is no new snapshot to take. `failed` are the last
    /// snapshot's failed reads: those of processes not read again stand, as a walk would find
    /// them again.
    pub fn refresh(
        &mut self,
        previous: &Snapshot,
        dirty: &Dirty,
        failed: &HashSet<ProcessFailure>,
        depth: Depth,
    ) -> Result<Option<ScanOutcome>, ScanFailure> {
        let (root, _dir, dir_fd) = self.open_root()?;
        let mut reader = ProcessReader::new(dir_fd.as_fd(), &root, self.threads);
        reader.kthreadd = previous.processes.get(&2).is_some_and(|p| p.ppid == 0);
        let mut read = dirty.read.clone();
        let gone_pids: HashSet<i32> = dirty.gone.iter().map(|p| p.pid).collect();
        let was = &previous.processes;
        // What changed, found before anything is copied: most events on a quiet node are a
        // short-lived process's fork, exec and exit, gone before it is read, which change
        // nothing the snapshot holds. `None`: the process is gone.
        let mut updates: Vec<(i32, Option<Process>)> = Vec::new();
        for id in &dirty.gone {
            if was.get(&id.pid).is_some_and(|p| p.id == *id) {
                updates.push((id.pid, None));
            }
        }
        if !gone_pids.is_empty() {
            read.extend(
                was.values()
                    .filter(|p| gone_pids.contains(&p.ppid))
                    .map(|p| p.id.pid),
            );
        }
        // A thread's exit is not reported: a process with a thread elsewhere is read again at
        // each interval, as a walk would.
        if depth == Depth::Deep {
            read.extend(
                was.values()
                    .filter(|p| !p.thread_namespaces.is_empty())
                    .map(|p| p.id.pid),
            );
        }
        let (mut vanished, mut failed_reads) = (0, false);
        let mut digits = itoa::Buffer::new();
        for pid in read {
            let Ok(name) = std::ffi::CString::new(digits.format(pid)) else {
                continue;
            };
            match reader.read(&name, pid) {
                Ok(process) if was.get(&pid) != Some(&process) => {
                    updates.push((pid, Some(process)));
                }
                Ok(_) => {}
                Err(Skipped::Vanished) if was.contains_key(&pid) => {
                    vanished += 1;
                    updates.push((pid, None));
                }
                Err(Skipped::Vanished) => {}
                // Counted; what was known of it stays, as a walk keeps what it could read.
                Err(Skipped::Failed) => failed_reads = true,
            }
        }
        if updates.is_empty() && !failed_reads && depth == Depth::Shallow {
            return Ok(None);
        }
        let mut processes = was.clone();
        for (pid, update) in updates {
            match update {
                Some(p) => processes.insert(pid, p),
                None => processes.remove(&pid),
            };
        }
        // The failures of processes not read again stand, as a walk would find them again
        // (one whose `stat` could not be read is in no snapshot, but in /proc until it exits).
        for &(who, reason) in failed {
            if !dirty.read.contains(&who.pid) && !gone_pids.contains(&who.pid) {
                reader.errors.carry(who, reason);
            }
        }
        if processes.is_empty() {
            return Err(ScanFailure::NoProcesses {
                path: self.procfs.root().to_path_buf(),
                errors: Box::new(reader.errors),
            });
        }
        let (time, wall) = self.now();
        let host = host_namespaces(&processes);
        let mut snapshot = Snapshot::from_processes(wall, time, processes, host);
        let mut socket_queries = 0;
        match depth {
            Depth::Deep => {
                socket_queries =
                    self.add_pins(dir_fd.as_fd(), &mut snapshot, &mut reader.errors, false);
                let net =
                    super::holds::read_net(dir_fd.as_fd(), &root, &snapshot, &mut reader.errors);
                snapshot.holds.net = net.into_iter().collect();
            }
            Depth::Shallow => snapshot.carry_held(previous),
        }
        let id_queries = self.identify(
            dir_fd.as_fd(),
            &mut snapshot,
            Some(previous),
            &mut reader.errors,
        );
        snapshot.limits = match depth {
            Depth::Deep => self.limits.read(dir_fd.as_fd(), &root, &mut reader.errors),
            Depth::Shallow => previous.limits.clone(),
        };
        Ok(Some(ScanOutcome {
            snapshot,
            errors: reader.errors,
            vanished,
            id_queries,
            fds_skipped: self.fds_skipped,
            sockets_skipped: self.sockets_skipped,
            socket_queries,
        }))
    }
}
