//! The privilege reads, after attribution: each container's first process, and each of its
//! processes that differs from it, read through the scan's [`ProcFs`]
//! ([`crate::privilege::read`]). A process "differs" where what the scan already read of it
//! says it may hold more than the first: another owner (a setuid or file-capability exec makes
//! the process's `/proc/PID` root's), another user namespace, or a parent outside the
//! container (a process entered from the host by `nsenter` or a runtime's `exec`). The others
//! are not read: the status read is the cost, and a child forked in the container holds no
//! more than what forked it.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

use crate::attribution::SETUP_WINDOW_SECONDS;
use crate::attribution::{Attribution, Container, Workload};
use crate::model::{Inode, NsType, Process, ScanTime, Snapshot};
use crate::privilege::container::{ContainerPrivilege, ProcessSeen};
use crate::privilege::exceeds::UserNamespace;
use crate::privilege::level::HostNamespaces;
use crate::privilege::read::{ReadError, read_proc_masked, read_process};
use crate::privilege::{CapSet, ProcessPrivilege};
use crate::procfs::{ProcFs, open_dir_at};

/// What one pass of privilege reads found.
#[derive(Debug, Default)]
pub struct PrivilegeRead {
    /// Each container whose first process could be read, by container id order.
    pub containers: Vec<ContainerPrivilege>,
    /// The node's whole capability set, from the host's PID 1 (`None` where unread).
    pub node_bounding: Option<CapSet>,
    /// Processes read.
    pub reads: u64,
    /// Reads that failed other than by the process exiting, and the first of them.
    pub errors: u64,
    pub first_error: Option<String>,
}

/// Reads one process's privilege, or why not; `Ok(None)` where it exited meanwhile.
fn read_pid(
    root: BorrowedFd<'_>,
    pid: i32,
    buf: &mut Vec<u8>,
    masked: bool,
) -> Result<Option<(ProcessPrivilege, Option<bool>)>, ReadError> {
    let dir = match open_dir_at(Some(root), Path::new(&pid.to_string())) {
        Ok(d) => d,
        Err(e) if crate::procfs::is_vanished(&e) => return Ok(None),
        Err(source) => {
            return Err(ReadError::Io {
                file: "/proc/PID",
                source,
            });
        }
    };
    let result = read_process(dir.as_fd(), buf).and_then(|p| {
        let proc_masked = match masked {
            true => read_proc_masked(dir.as_fd(), buf)?,
            false => None,
        };
        Ok((p, proc_masked))
    });
    match result {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.vanished() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Which user namespace `p` is in, beside its container's `first`.
fn user_namespace(
    p: &Process,
    first: &Process,
    snapshot: &Snapshot,
    map_is_identity: bool,
) -> UserNamespace {
    user_namespace_of(
        p.namespaces[NsType::User],
        first.namespaces[NsType::User],
        snapshot.host.inodes[NsType::User],
        map_is_identity,
    )
}

/// Whether `p`, of the same container as `first`, may hold more than `first` by what the scan
/// already read of it: another owner, another user namespace, or a parent outside the
/// container (`inside`).
pub fn differs(p: &Process, first_uid: u32, first_user: Option<Inode>, inside: bool) -> bool {
    p.uid != first_uid || p.namespaces[NsType::User] != first_user || !inside
}

/// Whether `p`, whose parent is outside its container, forked within the runtime's setup
/// window ([`SETUP_WINDOW_SECONDS`], the window attribution uses): runc's stages sit in the
/// container before its seccomp filter and capability drop are applied, so a process so young
/// is not judged yet; the next scan judges it, and a payload cannot stay young.
pub fn in_setup(p: &Process, now: &ScanTime, parent_inside: bool) -> bool {
    !parent_inside
        && now.ticks.saturating_sub(p.id.start_ticks) < SETUP_WINDOW_SECONDS * now.ticks_per_second
}

/// Reads one process's privilege through `procfs`, as a sweep does for a process new since
/// the scan; `Ok(None)` where it exited meanwhile.
pub fn read_one(procfs: &ProcFs, pid: i32) -> Result<Option<ProcessPrivilege>, ReadError> {
    let root = procfs.open_root().map_err(|e| ReadError::Io {
        file: "/proc",
        source: match e {
            crate::procfs::ProcError::Io { source, .. } => source,
            e => std::io::Error::other(e.to_string()),
        },
    })?;
    Ok(read_pid(root.as_fd(), pid, &mut Vec::new(), false)?.map(|(p, _)| p))
}

/// Which user namespace `user` is, beside the host's and the container's first process's.
pub fn user_namespace_of(
    user: Option<Inode>,
    first_user: Option<Inode>,
    host: Option<u64>,
    map_is_identity: bool,
) -> UserNamespace {
    match host {
        Some(host) if user.is_some_and(|u| u64::from(u.get()) == host) => UserNamespace::Host,
        None if map_is_identity => UserNamespace::Host,
        _ if user == first_user => UserNamespace::Container,
        _ => UserNamespace::Nested,
    }
}

/// Reads the privilege of the containers `attribution` found in `snapshot`, through `procfs`.
pub fn read_privileges(
    procfs: &ProcFs,
    snapshot: &Snapshot,
    attribution: &Attribution,
) -> PrivilegeRead {
    read_privileges_carrying(procfs, snapshot, attribution, None)
}

/// What the last read found, for a step that applies events between two scan intervals: a
/// container none of whose processes changed since keeps what was read of it.
#[derive(Debug, Default)]
pub struct Carried {
    /// The containers' processes as the last step had them.
    pub processes: HashMap<i32, Process>,
    pub containers: HashMap<String, ContainerPrivilege>,
}

impl Carried {
    /// What `read` found of the containers in `snapshot`, as `attribution` placed them.
    pub fn new(
        read: &[(ContainerPrivilege, crate::privilege::Level)],
        snapshot: &Snapshot,
        attribution: &Attribution,
    ) -> Self {
        Carried {
            processes: (snapshot.processes.values())
                .filter(|p| matches!(attribution.of(p.id.pid), Workload::Container(_)))
                .map(|p| (p.id.pid, p.clone()))
                .collect(),
            containers: read
                .iter()
                .map(|(c, _)| (c.container.id.clone(), c.clone()))
                .collect(),
        }
    }
}

impl Carried {
    /// What `carried` may stand for `container` now: where its processes are those of the
    /// last snapshot, unchanged, its first process is the one read, and every other process
    /// read is still there.
    fn of(&self, container: &str, processes: &[&Process]) -> Option<ContainerPrivilege> {
        let carried = self.containers.get(container)?;
        let unchanged = processes
            .iter()
            .all(|p| self.processes.get(&p.id.pid) == Some(*p));
        let first = processes.first()?.id.pid == carried.first.pid;
        let others = carried
            .others
            .iter()
            .all(|o| processes.iter().any(|p| p.id.pid == o.pid));
        (unchanged && first && others).then(|| carried.clone())
    }
}

/// [`read_privileges`], taking over from `carry` what it may ([`Carried::of`]).
pub fn read_privileges_carrying(
    procfs: &ProcFs,
    snapshot: &Snapshot,
    attribution: &Attribution,
    carry: Option<&Carried>,
) -> PrivilegeRead {
    let mut out = PrivilegeRead::default();
    let root = match procfs.open_root() {
        Ok(r) => r,
        Err(e) => {
            out.errors += 1;
            out.first_error = Some(e.to_string());
            return out;
        }
    };
    let mut by_container: HashMap<&str, (&Arc<Container>, Vec<&Process>)> = HashMap::new();
    for p in snapshot.processes.values() {
        if let Workload::Container(c) = attribution.of(p.id.pid) {
            by_container
                .entry(&c.id)
                .or_insert((c, Vec::new()))
                .1
                .push(p);
        }
    }
    let mut buf = Vec::new();
    let fail = |out: &mut PrivilegeRead, pid: i32, e: ReadError| {
        tracing::debug!(pid, error = %e, "privilege unread");
        out.errors += 1;
        out.first_error
            .get_or_insert_with(|| format!("pid {pid}: {e}"));
    };
    // The node's whole set: a privileged container gets it, and a node may lack some.
    if snapshot.processes.get(&1).is_some_and(|p| {
        matches!(attribution.of(1), Workload::Host)
            && p.namespaces[NsType::User].map(|i| u64::from(i.get()))
                == snapshot.host.inodes[NsType::User]
    }) && let Ok(Some((p, _))) = read_pid(root.as_fd(), 1, &mut buf, false)
    {
        out.node_bounding = Some(p.bounding);
    }
    let mut ids: Vec<&str> = by_container.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let (container, mut processes) = by_container.remove(id).expect("listed");
        let inside = |pid: i32| matches!(attribution.of(pid), Workload::Container(c) if c.id == container.id);
        processes.retain(|p| !in_setup(p, &snapshot.time, inside(p.ppid)));
        processes.sort_by_key(|p| (p.id.start_ticks, p.id.pid));
        let Some(&first) = processes.first() else {
            continue;
        };
        if let Some(mut kept) = carry.and_then(|c| c.of(&container.id, &processes)) {
            kept.container = Arc::clone(container);
            out.containers.push(kept);
            continue;
        }
        out.reads += 1;
        let (privilege, proc_masked) = match read_pid(root.as_fd(), first.id.pid, &mut buf, true) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                fail(&mut out, first.id.pid, e);
                continue;
            }
        };
        let in_host = |t: NsType| {
            first.namespaces[t].map(|i| u64::from(i.get())).is_some()
                && first.namespaces[t].map(|i| u64::from(i.get())) == snapshot.host.inodes[t]
        };
        let first_seen = ProcessSeen {
            pid: first.id.pid,
            user_namespace: user_namespace(first, first, snapshot, privilege.uid_map.is_identity()),
            privilege,
        };
        let mut others = Vec::new();
        for &p in &processes[1..] {
            if !differs(p, first.uid, first.namespaces[NsType::User], inside(p.ppid)) {
                continue;
            }
            out.reads += 1;
            match read_pid(root.as_fd(), p.id.pid, &mut buf, false) {
                Ok(Some((privilege, _))) => others.push(ProcessSeen {
                    pid: p.id.pid,
                    user_namespace: user_namespace(
                        p,
                        first,
                        snapshot,
                        privilege.uid_map.is_identity(),
                    ),
                    privilege,
                }),
                Ok(None) => {}
                Err(e) => fail(&mut out, p.id.pid, e),
            }
        }
        out.containers.push(ContainerPrivilege {
            container: Arc::clone(container),
            first: first_seen,
            others,
            proc_masked,
            host_namespaces: HostNamespaces {
                net: in_host(NsType::Net),
                pid: in_host(NsType::Pid),
                ipc: in_host(NsType::Ipc),
            },
        });
    }
    out
}
