//! What only the kernel can say about a namespace: its never-reused id, its owning user
//! namespace and its parent (ioctl_ns(2) `NS_GET_ID`, `NS_GET_USERNS`, `NS_GET_PARENT`), asked
//! once per new namespace through one of its members or holders; what is known from the last
//! scan is carried over instead (identity.rs).

use super::*;

impl Scanner {
    /// Fills in each namespace's kernel id, owner and parent: carried over where a member
    /// survived from `previous` (a process cannot be in two namespaces of one type, so the
    /// namespace is the same one), asked of the kernel through a member's link, a bind mount,
    /// an fd or a socket otherwise. A namespace with no member is carried over where the same
    /// fd or socket held it in `previous`, and asked every scan where a bind mount holds it: a
    /// path proves nothing across scans, since `ip netns del x; ip netns add x` can mount a new
    /// namespace with the old inode on the old path. Of those held by one process's fds and
    /// sockets alone, at most [`ASKS_PER_HOLDER`] are asked a scan. Returns how many
    /// namespaces were asked about.
    pub(super) fn identify(
        &mut self,
        root: BorrowedFd<'_>,
        snapshot: &mut Snapshot,
        previous: Option<&Snapshot>,
        errors: &mut ScanErrors,
    ) -> u64 {
        let mut queries = 0;
        let mut name = LinkName::default();
        let kernel_ids = self.kernel_ids;
        let mut asked_of: HashMap<i32, usize> = HashMap::new();
        let mut deferred = 0;
        for ns in snapshot.namespaces.values_mut() {
            let old = identity::carried(previous, ns, &snapshot.processes, kernel_ids)
                .or_else(|| identity::carried_by_pin(previous, ns, kernel_ids));
            if let Some(old) = old {
                ns.kernel_id = old.kernel_id;
                ns.owner = old.owner;
                ns.parent = old.parent;
                continue;
            }
            // One process can open namespaces by the thousand, anew every scan: what its fds
            // alone hold is asked at most so many a scan, the rest at the scans after.
            if let Some(holder) = identity::lone_holder(ns) {
                let asked = asked_of.entry(holder).or_default();
                if *asked >= ASKS_PER_HOLDER {
                    deferred += 1;
                    continue;
                }
                *asked += 1;
            }
            queries += 1;
            if let Some(facts) = self.ask(root, ns, &mut name, errors) {
                ns.kernel_id = facts.kernel_id;
                ns.owner = facts.owner;
                ns.parent = facts.parent;
            }
        }
        if deferred > 0 {
            tracing::debug!(
                deferred,
                "namespaces held by fds and sockets left for the next scans to ask"
            );
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
        let members = ns.members.iter().take(4).map(|&pid| (pid, None));
        let mounts = ns.mounts().iter().take(4).map(|m| {
            let pin = PinPath::Mount {
                pid: m.via_pid,
                path: &m.path,
            };
            (m.via_pid, Some(pin))
        });
        let fds = ns.fds().iter().take(4).map(|f| {
            let pid = f.process.pid;
            (pid, Some(PinPath::Fd { pid, fd: f.fd }))
        });
        let sockets = ns.sockets().iter().take(4).map(|s| {
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
