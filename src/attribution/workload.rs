//! From processes to workloads: reads each process's `/proc/PID/cgroup` through the
//! [`ProcFs`], classifies it with [`parse_cgroup`], and names Kubernetes containers from the
//! kubelet's log directory listing.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

use super::{CgroupWorkload, KubeletName, Runtime, parse_cgroup, read_kubelet_names};
use crate::model::{Process, Snapshot};
use crate::procfs::{ProcFs, read_at};

/// One container, shared by all its processes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Container {
    pub runtime: Runtime,
    pub id: String,
    pub pod_uid: Option<String>,
    /// Pod, namespace and container names, where the kubelet's log directory had them.
    pub names: Option<KubeletName>,
}

impl Container {
    /// What counts as "one workload" for sharing: the pod for Kubernetes containers (its
    /// containers share namespaces by design), the container otherwise.
    pub fn unit(&self) -> &str {
        self.pod_uid.as_deref().unwrap_or(&self.id)
    }
}

/// The workload a process belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Workload {
    /// kthreadd and its children: kernel threads are never containers.
    Kernel,
    /// A host process.
    Host,
    /// Its cgroup could not be read (it exited, or the read failed).
    Unknown,
    /// In a pod's cgroup but in none of its containers' (cgroup v1 only).
    Pod(String),
    /// A container's payload.
    Container(Arc<Container>),
    /// The runtime's plumbing for a container: its monitor (conmon, `lxc.monitor`), or runc
    /// while it sets the container up, when it already sits in the container's cgroup but not
    /// yet in its namespaces. It runs in the host's namespaces by design.
    Runtime(Arc<Container>),
}

/// The workload of every process of a snapshot.
#[derive(Debug, Default)]
pub struct Attribution {
    by_pid: HashMap<i32, Workload>,
}

impl Attribution {
    /// The workload of `pid` ([`Workload::Unknown`] if it was not attributed).
    pub fn of(&self, pid: i32) -> &Workload {
        self.by_pid.get(&pid).unwrap_or(&Workload::Unknown)
    }

    /// Builds an attribution from known workloads (tests).
    pub fn from_map(by_pid: HashMap<i32, Workload>) -> Self {
        Attribution { by_pid }
    }
}

/// Whether the process is a kernel thread: kthreadd (PID 2 with parent 0) or one of its
/// children.
fn is_kernel_thread(p: &Process, snapshot: &Snapshot) -> bool {
    let kthreadd = |pid: i32| snapshot.processes.get(&pid).is_some_and(|k| k.ppid == 0);
    (p.id.pid == 2 && p.ppid == 0) || (p.ppid == 2 && kthreadd(2))
}

/// runc's own process names while it creates or execs into a container (nsexec's
/// `runc:[0:PARENT]`, `runc:[1:CHILD]`, `runc:[2:INIT]`), before it execs the payload.
fn is_runtime_setup(comm: &str) -> bool {
    comm.starts_with("runc:[") || comm == "runc" || comm == "runc init"
}

/// Attributes every process of `snapshot`. `kubelet_logs` is the kubelet's
/// `/var/log/containers`; where it is missing only ids and pod uids are known.
pub fn attribute(snapshot: &Snapshot, procfs: &ProcFs, kubelet_logs: Option<&Path>) -> Attribution {
    let names = kubelet_logs
        .map(|dir| match read_kubelet_names(dir) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "no kubelet log names");
                HashMap::new()
            }
        })
        .unwrap_or_default();
    let mut containers: HashMap<String, Arc<Container>> = HashMap::new();
    let mut by_pid = HashMap::with_capacity(snapshot.processes.len());
    // One directory fd and one buffer for every read: `openat(root, "PID/cgroup")` resolves
    // two components instead of the whole path. A hybrid hierarchy with long kubepods paths
    // is a few KiB; 16 KiB leaves room.
    let root = procfs.open_root().ok();
    let mut buf = vec![0u8; 16 * 1024];
    for p in snapshot.processes.values() {
        let workload = if is_kernel_thread(p, snapshot) {
            Workload::Kernel
        } else {
            let bytes = root
                .as_ref()
                .and_then(|root| read_cgroup(root.as_fd(), p.id.pid, &mut buf).ok());
            match bytes {
                None => Workload::Unknown,
                Some(bytes) => match parse_cgroup(bytes) {
                    CgroupWorkload::Host => Workload::Host,
                    CgroupWorkload::Unknown => Workload::Unknown,
                    CgroupWorkload::Pod { uid } => Workload::Pod(uid),
                    CgroupWorkload::Container(c) => {
                        let container = containers
                            .entry(c.id.clone())
                            .or_insert_with(|| {
                                Arc::new(Container {
                                    runtime: c.runtime,
                                    names: names.get(&c.id).cloned(),
                                    id: c.id,
                                    pod_uid: c.pod_uid,
                                })
                            })
                            .clone();
                        if c.monitor || is_runtime_setup(&p.comm) {
                            Workload::Runtime(container)
                        } else {
                            Workload::Container(container)
                        }
                    }
                },
            }
        };
        by_pid.insert(p.id.pid, workload);
    }
    Attribution { by_pid }
}

/// Reads `PID/cgroup` relative to the procfs root into `buf`.
fn read_cgroup<'b>(root: BorrowedFd<'_>, pid: i32, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
    let mut name = [0u8; 32];
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(pid).as_bytes();
    let suffix = b"/cgroup\0";
    name[..digits.len()].copy_from_slice(digits);
    name[digits.len()..digits.len() + suffix.len()].copy_from_slice(suffix);
    let name = CStr::from_bytes_until_nul(&name).map_err(io::Error::other)?;
    read_at(root, name, buf)
}
