//! Which container each process belongs to, decided from what a container cannot write and
//! kept for the life of the process.
//!
//! A process's cgroup file is a claim as soon as its container can write its own cgroup
//! subtree, or the whole tree (privileged containers, systemd inside, a writable
//! `/sys/fs/cgroup`): it can move itself into the root cgroup and look like a host process.
//! Two facts survive such a move:
//!
//! - the process's own pid namespace (`/proc/PID/ns/pid`, pid_namespaces(7)): fixed at fork
//!   for the life of the process; setns(2) into a pid namespace moves only later children.
//!   A container's own pid namespace (that of its payload, never the host's) names it;
//!   a pid namespace nested in it (unshare(2) with `CLONE_NEWPID` inside) names it too;
//! - the container a process was first found in, by `(pid, start time)`: a process never
//!   leaves its container, whatever its cgroup says later.
//!
//! [`Memberships`] keeps both across scans and sweeps; [`super::attribute`] reads them and
//! adds what it finds. A pid namespace is known by its kernel id (`NS_GET_ID`, ioctl_ns(2))
//! beside its inode, which a new namespace reuses at once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cgroup::ContainerRef;
use crate::model::{NamespaceId, NsType, Process, ProcessId, Snapshot};

/// What says a process is a container's, besides its cgroup file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Evidence {
    /// It was read as that container's payload before.
    Process,
    /// It is in that container's pid namespace, or one nested in it.
    PidNamespace,
}

/// What attribution has learnt, kept between scans: each payload process's container, and
/// each container's pid namespaces.
#[derive(Debug, Default)]
pub struct Memberships {
    processes: HashMap<ProcessId, Arc<ContainerRef>>,
    /// One reference per container id, shared by its processes and pid namespaces.
    containers: HashMap<String, Arc<ContainerRef>>,
    /// Container id → the pid namespaces (inodes) its payload was read in, the host's apart:
    /// its own, or another's it shares by design (a pod's, `--pid=container:`).
    held: HashMap<String, Vec<u64>>,
    /// Pid namespace inode → its kernel id (`NS_GET_ID`) and the container whose payload
    /// first held it. Inodes are reused at once (a container stopped and another started
    /// within a second get the same one); the kernel id is not.
    pid_namespaces: HashMap<u64, Learnt>,
}

/// A container's pid namespace.
#[derive(Debug)]
struct Learnt {
    /// Its kernel id.
    kernel_id: u64,
    container: Arc<ContainerRef>,
    /// The payload process it was learnt from: while a process is in it, it is alive and its
    /// inode is its own.
    witness: i32,
}

impl Memberships {
    /// The container `p` was found in before, or whose pid namespace (or an ancestor of it)
    /// `p` is in, and which of the two says so. A pid namespace counts only where `snapshot`
    /// knows its kernel id (a whole scan's), so that a reused inode names nothing: a process
    /// read between scans is placed by its own history until the next scan.
    pub(super) fn of(
        &self,
        p: &Process,
        snapshot: &Snapshot,
    ) -> Option<(&Arc<ContainerRef>, Evidence)> {
        if let Some(c) = self.processes.get(&p.id) {
            return Some((c, Evidence::Process));
        }
        let mut inode = u64::from(p.namespaces[NsType::Pid]?.get());
        // Nested pid namespaces are few levels deep (the kernel allows 32).
        for _ in 0..32 {
            let ns = snapshot.namespaces.get(&NamespaceId {
                ns_type: NsType::Pid,
                inode,
            })?;
            if let Some(l) = self.pid_namespaces.get(&inode)
                && ns.kernel_id == Some(l.kernel_id)
            {
                return Some((&l.container, Evidence::PidNamespace));
            }
            inode = ns.parent?;
        }
        None
    }

    /// Learns that `p`, of `snapshot`, is a payload process of `c`, and so is its pid
    /// namespace unless that is `shared` (the host's, or kthreadd's where the host's is not
    /// known: a container in the host's pid namespace names no pid namespace) or its kernel
    /// id is unknown. A pid namespace keeps the first container learnt for it: the one whose
    /// payload the exporter saw in it first.
    pub(super) fn learn(
        &mut self,
        p: &Process,
        c: &ContainerRef,
        snapshot: &Snapshot,
        shared: &[u64],
    ) {
        // Learnt already (scan after scan): nothing is allocated.
        let c = match self.processes.get(&p.id) {
            Some(r) if **r == *c => Arc::clone(r),
            _ => self.shared(c),
        };
        let pid_ns = p.namespaces[NsType::Pid].map(|i| NamespaceId {
            ns_type: NsType::Pid,
            inode: i.get().into(),
        });
        if let Some(id) = pid_ns
            && !shared.contains(&id.inode)
            && let Some(kernel_id) = snapshot.namespaces.get(&id).and_then(|ns| ns.kernel_id)
        {
            let held = self.held.entry(c.id.clone()).or_default();
            if !held.contains(&id.inode) {
                held.push(id.inode);
            }
            let learnt = Learnt {
                kernel_id,
                container: Arc::clone(&c),
                witness: p.id.pid,
            };
            match self.pid_namespaces.get_mut(&id.inode) {
                None => {
                    self.pid_namespaces.insert(id.inode, learnt);
                }
                // The inode was reused by a new namespace.
                Some(old) if old.kernel_id != kernel_id => *old = learnt,
                Some(_) => {}
            }
        }
        self.processes.insert(p.id, c);
    }

    /// The one reference to `c` that its processes and pid namespaces share.
    fn shared(&mut self, c: &ContainerRef) -> Arc<ContainerRef> {
        match self.containers.get(&c.id) {
            Some(r) if **r == *c => Arc::clone(r),
            _ => {
                let r = Arc::new(c.clone());
                self.containers.insert(c.id.clone(), Arc::clone(&r));
                r
            }
        }
    }

    /// Forgets processes that a whole scan no longer holds and pid namespaces that no longer
    /// exist, so that a reused pid or inode names nothing.
    pub fn keep_only(&mut self, whole: &Snapshot) {
        self.processes
            .retain(|id, _| whole.processes.get(&id.pid).is_some_and(|p| p.id == *id));
        self.pid_namespaces.retain(|&inode, l| {
            let id = NamespaceId {
                ns_type: NsType::Pid,
                inode,
            };
            let Some(ns) = whole.namespaces.get(&id) else {
                return false;
            };
            // A witness gone, another member stands in for it.
            if !ns.members.contains(&l.witness)
                && let Some(&member) = ns.members.first()
            {
                l.witness = member;
            }
            ns.kernel_id == Some(l.kernel_id)
        });
        self.containers.retain(|_, c| Arc::strong_count(c) > 1);
        let live = |inode: &u64| {
            whole.namespaces.contains_key(&NamespaceId {
                ns_type: NsType::Pid,
                inode: *inode,
            })
        };
        self.held.retain(|_, inodes| {
            inodes.retain(live);
            !inodes.is_empty()
        });
    }

    /// Whether container `id`'s payload was read in `p`'s pid namespace before: `None` where
    /// none of its pid namespaces is known yet (its first read), or `p`'s is the host's.
    pub(super) fn holds(&self, id: &str, p: &Process) -> Option<bool> {
        let inode = u64::from(p.namespaces[NsType::Pid]?.get());
        Some(self.held.get(id)?.contains(&inode))
    }

    /// For a pid namespace inode learnt as a container's: a process that was in it, and the
    /// kernel id it had. Where that process's pid namespace has that id now, the namespace
    /// lives and the inode is still its own: what a read between scans, which knows no kernel
    /// ids, needs to use the pid namespace as evidence.
    pub fn witness(&self, pid_ns: u64) -> Option<(i32, u64)> {
        let l = self.pid_namespaces.get(&pid_ns)?;
        Some((l.witness, l.kernel_id))
    }

    /// How many processes and pid namespaces are remembered.
    pub fn len(&self) -> (usize, usize) {
        (self.processes.len(), self.pid_namespaces.len())
    }
}

/// The pid namespaces that name no container: the host's, and kthreadd's (which is the
/// host's, also where init is protected and the host's is not known).
pub(super) fn shared_pid_namespaces(snapshot: &Snapshot, earlier: &[&Snapshot]) -> Vec<u64> {
    let mut shared: Vec<u64> = snapshot.host.inodes[NsType::Pid].into_iter().collect();
    let kthreadd = std::iter::once(snapshot)
        .chain(earlier.iter().copied())
        .find_map(|s| s.processes.get(&2).filter(|k| k.ppid == 0));
    if let Some(inode) = kthreadd.and_then(|k| k.namespaces[NsType::Pid]) {
        shared.push(inode.get().into());
    }
    shared
}
