//! A process's other threads (proc_pid_task(5)): read where the scan wants them (a
//! container's, or every process's with `--scan.threads=all`), and checked in place by the
//! sweeps for a thread whose namespaces differ from its process's.

use super::*;

impl ProcessReader<'_> {
    /// Reads the threads of watched process `pid`, but the first `skip` its `task` directory
    /// lists (those an earlier sweep read), for a link of the `types` in neither the
    /// namespace `expected` says its main thread is in nor one a thread of it was already
    /// found in; adds each such to `found`. Spends at most `budget` syscalls (see
    /// [`super::Watch::THREAD_READS`]): a `stat` of `PID/task`, whose link count (threads + 2)
    /// tells a single-threaded process at once, then the listing and a readlink of
    /// `task/TID/ns/TYPE` each. Where the budget runs out before the last thread, returns how
    /// many it has listed and read so far, for the next sweep to skip; `None` once every
    /// thread was read or the process is gone.
    pub(in crate::scan) fn threads_elsewhere(
        &mut self,
        pid: i32,
        skip: u32,
        expected: &Expected<'_>,
        types: &PerType<bool>,
        budget: &mut u32,
        found: &mut Vec<ThreadNamespace>,
    ) -> Option<u32> {
        let mut name = LinkName::default();
        *budget = budget.saturating_sub(1);
        let flags = nix::fcntl::AtFlags::empty();
        let threads = nix::sys::stat::fstatat(self.dir, name.file(pid, c"task"), flags)
            .map_or(0, |st| st.st_nlink.saturating_sub(2));
        if threads <= 1 {
            return None;
        }
        *budget = budget.saturating_sub(3);
        let task = open_dir_at(Some(self.dir), name.as_path())
            .and_then(|fd| Dir::from_fd(fd).map_err(io::Error::from));
        let Ok(mut task) = task else {
            return None;
        };
        let Ok(task_fd) = task.as_fd().try_clone_to_owned() else {
            return None;
        };
        let due = NsType::ALL
            .into_iter()
            .filter(|&t| types[t] && expected.namespaces[t].is_some());
        let cost = due.clone().count() as u32;
        // Counted in the listing's order, which need not be the tids'.
        let mut listed = 0;
        for entry in task.iter() {
            let Some(tid) = entry.ok().and_then(|e| pid_of(e.file_name().to_bytes())) else {
                continue;
            };
            if tid == pid {
                continue;
            }
            listed += 1;
            if listed <= skip {
                continue;
            }
            if *budget < cost {
                return Some(listed - 1);
            }
            *budget -= cost;
            for t in due.clone() {
                let Ok(text) = readlink_at(task_fd.as_fd(), name.of(tid, t), &mut self.link_buf)
                else {
                    break;
                };
                let Ok(inode) = parse_ns_link(t, text) else {
                    continue;
                };
                let id = NamespaceId {
                    ns_type: t,
                    inode: inode.get().into(),
                };
                let known = Some(inode) == expected.namespaces[t]
                    || expected.threads.iter().any(|k| k.id == id)
                    || found.iter().any(|k| k.id == id);
                if !known {
                    found.push(ThreadNamespace { tid, id });
                }
            }
        }
        None
    }

    /// Whether to read the threads of a multi-threaded process with this cgroup file.
    pub(super) fn wants_threads(&mut self, cgroup: Option<&Arc<[u8]>>) -> bool {
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
    pub(super) fn read_threads(
        &mut self,
        pid_dir: BorrowedFd<'_>,
        pid: i32,
        main: &PerType<Option<Inode>>,
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
                            && Some(inode) != main[ns_type]
                        {
                            out.push(ThreadNamespace {
                                tid,
                                id: NamespaceId {
                                    ns_type,
                                    inode: inode.get().into(),
                                },
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
