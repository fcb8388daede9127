//! The scan's pass over what holds namespaces without a process (bind mounts, fds, sockets;
//! the readers are pins.rs'), with its failures counted as the process reads' are.

use super::*;

impl Scanner {
    /// Adds the namespaces held by bind mounts, fds and sockets, as [`PinScan`] says, to
    /// `snapshot`. Returns how many sockets were asked for their network namespace.
    pub(super) fn add_pins(
        &mut self,
        root: BorrowedFd<'_>,
        snapshot: &mut Snapshot,
        errors: &mut ScanErrors,
        walk: bool,
    ) -> u64 {
        let procfs = self.procfs.root();
        // Read whether or not bind mounts are looked for: the mount counts come from it.
        // Where the kernel tells each mount namespace's generation, only the tables that
        // moved are read between walks.
        let generations = self.mounts.generations.as_mut().and_then(|g| match g.read() {
            Ok(read) => Some(read),
            Err(e) => {
                if !std::mem::replace(&mut self.mounts.failed, true) {
                    tracing::warn!(error = %e, "cannot read the mount-table generations; every mount namespace's mountinfo is read at every scan (said once)");
                }
                None
            }
        });
        let unchanged = self.mounts.tables.unchanged;
        let tables = generations.map(|generations| {
            self.mounts.tables.generations = generations;
            self.mounts.tables.reuse = !walk;
            &mut self.mounts.tables
        });
        let watched = tables.is_some();
        let reads = pins::read_mounts(root, procfs, snapshot, self.pins.mounts, errors, tables);
        if watched {
            let unchanged = self.mounts.tables.unchanged - unchanged;
            tracing::debug!(
                unchanged,
                read = (reads.counts.len() as u64).saturating_sub(unchanged),
                "mount tables"
            );
        }
        snapshot.holds.mounts = reads.counts.into_iter().collect();
        let mounts = reads.pins;
        let mut socket_queries = 0;
        let (fds, sockets) = match self.pins.fds {
            None => (Vec::new(), Vec::new()),
            Some(every) => {
                let now = snapshot.time.ticks;
                let every = every.as_millis() as u64 * self.ticks_per_second / 1000;
                // Every process's fds are a walk of their own: in the events mode they are
                // read when /proc is walked, and between walks the pins found are re-read.
                match &mut self.fd_pass {
                    Some(last) if !walk || now.saturating_sub(last.at) < every => {
                        let round = last.rounds;
                        last.rounds += 1;
                        let lives = |p: &ProcessId| {
                            snapshot
                                .processes
                                .get(&p.pid)
                                .is_some_and(|now| now.id == *p)
                        };
                        // And the fd is still what the pass found: a process that closed it
                        // holds the namespace no longer (one readlink each, pins only).
                        let mut buf = [0u8; 64];
                        let mut still = |pid: i32, fd: i32, want: &dyn Fn(&[u8]) -> bool| {
                            let path = format!("{pid}/fd/{fd}\0");
                            let path = CStr::from_bytes_with_nul(path.as_bytes())
                                .expect("digits and one NUL");
                            readlink_at(root, path, &mut buf).is_ok_and(want)
                        };
                        let fds = recheck(
                            &mut last.fds,
                            round,
                            |f| f.process,
                            lives,
                            |id, f| {
                                still(f.process.pid, f.fd, &|text| {
                                    parse_ns_link(id.ns_type, text)
                                        .is_ok_and(|i| u64::from(i.get()) == id.inode)
                                })
                            },
                        );
                        let sockets = recheck(
                            &mut last.sockets,
                            round,
                            |s| s.process,
                            lives,
                            |_, s| {
                                still(s.process.pid, s.fd, &|text| {
                                    pins::parse_socket_link(text) == Some(s.socket)
                                })
                            },
                        );
                        (fds, sockets)
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
                            rounds: 0,
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
            let pins = ns.pins_mut();
            pins.mounts.extend(mount);
            pins.fds.extend(fd);
            pins.sockets.extend(socket);
            touched.insert(id);
        }
        for id in touched {
            let pins = snapshot
                .namespaces
                .get_mut(&id)
                .expect("just added")
                .pins_mut();
            pins.mounts.sort();
            pins.mounts
                .dedup_by(|a, b| a.mnt_ns == b.mnt_ns && a.path == b.path);
            pins.fds.sort();
            pins.sockets.sort();
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
            if sockets == 0 || !self.sockets_warned.first(why) {
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
}
