//! The sweep: between two scans, what is new on the machine and what the last scan's
//! containers' processes moved into, read in place (proc_pid_ns(5), proc_pid_cgroup(7)), so that
//! a short stay in the host's namespaces is seen before the next scan.

use super::*;

impl Scanner {
    /// A sweep between full scans: lists the procfs and reads only the processes that are
    /// new, that is whose pid `known` does not hold, and that `swept` has not seen twice
    /// already (a process read right after its exec is read once more at the next sweep, in
    /// case it was about to call setns(2), as nsenter does). Costs a getdents of the procfs
    /// and the reads of the new processes: the cost follows how many start, not how many run.
    /// The processes come back without kernel ids; kthreadd's children count as kernel threads
    /// only where `known` says PID 2 is kthreadd.
    ///
    /// Every process in `watch` (the last scan's containers' processes, and those read since)
    /// is read again in place, its main thread's namespace links only (readlink,
    /// unprivileged), and its other threads' links round-robin, a bounded share of them each
    /// sweep ([`Watch::THREAD_READS`]; none where `--scan.threads` is `none`): where a link
    /// differs from what the process (or a thread of it) was last seen in, the process is
    /// read whole and comes back with the new namespaces, a thread's as its
    /// `thread_namespaces`, so that a stay in another namespace as long as the sweep interval
    /// (a thread's: as long as a round of the threads) is seen. The other processes' `cgroup`
    /// files are read again round-robin ([`Watch::HOST_CGROUPS`] a sweep): one that changed
    /// (a host process moved into a container's cgroup) is read whole too.
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
        let (mut listed, mut rechecked, mut cgroups_reread) = (0, 0, 0);
        let types = watch.types();
        let mut link = LinkName::default();
        let thread_allowance = match self.threads {
            ThreadScan::None => 0,
            ThreadScan::Containers | ThreadScan::All => Watch::THREAD_READS,
        };
        let mut thread_budget = thread_allowance;
        let mut host_budget = Watch::HOST_CGROUPS;
        let rounds = &mut self.rounds;
        // The rounds go in pid order: a procfs lists in it (so the sort is one pass), a
        // fixture tree need not.
        let mut pids: Vec<i32> = dir
            .iter()
            .flatten()
            .filter_map(|e| pid_of(e.file_name().to_bytes()))
            .collect();
        pids.sort_unstable();
        let mut dir_name = LinkName::default();
        for pid in pids {
            let name = dir_name.dir(pid);
            listed += 1;
            if let Some(expected) = watch.expected(pid, known) {
                rechecked += 1;
                let mut found = Vec::new();
                let mut moved = !reader.links_match(pid, &expected.namespaces, &types, &mut link);
                if !moved
                    && thread_budget > 0
                    && let Some(after) = rounds.threads_from(pid)
                {
                    let stopped = reader.threads_elsewhere(
                        pid,
                        after,
                        &expected,
                        &types,
                        &mut thread_budget,
                        &mut found,
                    );
                    rounds.threads = (pid, stopped.unwrap_or(u32::MAX));
                    if stopped.is_some() {
                        // Spent: the round goes on from this thread at the next sweep.
                        thread_budget = 0;
                    }
                    moved = !found.is_empty();
                }
                if !moved {
                    continue;
                }
                let (start, namespaces) = (expected.start, expected.namespaces);
                // Moved, exited, or its pid reused: read whole, judged as new.
                if let Ok(mut process) = reader.read(name, pid) {
                    for t in &found {
                        let known = process.namespace(t.id.ns_type) == Some(t.id)
                            || process.thread_namespaces.iter().any(|k| k.id == t.id);
                        if !known {
                            process.thread_namespaces.push(*t);
                        }
                    }
                    if process.id.start_ticks != start
                        || process.namespaces != namespaces
                        || !found.is_empty()
                    {
                        watch.add(&process);
                        processes.push(process);
                    }
                }
                continue;
            }
            if known.processes.contains_key(&pid) || swept.get(&pid).is_some_and(|s| s.1 >= 2) {
                // Read before, not a container's then: its cgroup file again, in its turn.
                if host_budget > 0
                    && pid > rounds.hosts
                    && let Some(cgroup) = watch.host_cgroup(pid, known)
                {
                    host_budget -= 1;
                    cgroups_reread += 1;
                    rounds.hosts = pid;
                    if !reader.cgroup_is(pid, cgroup, &mut link)
                        && let Ok(process) = reader.read(name, pid)
                    {
                        watch.add_host(&process);
                        processes.push(process);
                    }
                }
                continue;
            }
            if let Ok(process) = reader.read(name, pid) {
                let entry = swept.entry(pid).or_insert((process.id.start_ticks, 0));
                if entry.0 != process.id.start_ticks {
                    // The pid was reused since the last sweep: a new process.
                    *entry = (process.id.start_ticks, 0);
                }
                entry.1 += 1;
                watch.add_host(&process);
                processes.push(process);
            }
        }
        // A round that reached the end of the listing with budget left starts again.
        if thread_budget > 0 {
            rounds.threads = (0, u32::MAX);
        }
        if host_budget > 0 {
            rounds.hosts = 0;
        }
        Ok(Sweep {
            processes,
            listed,
            rechecked,
            thread_reads: u64::from(thread_allowance - thread_budget),
            cgroups_reread,
            errors: reader.errors,
        })
    }
}
