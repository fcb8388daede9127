//! From processes to workloads: classifies each process's `/proc/PID/cgroup`, as the scan read
//! it, with [`parse_cgroup`], and names Kubernetes containers from the kubelet's log names.

use std::collections::HashMap;
use std::sync::Arc;

use super::{CgroupWorkload, KubeletName, Runtime, parse_cgroup};
use crate::model::{Process, Snapshot};

/// One container, shared by all its processes. Ordered by id first (the field order), and
/// equal only where every field is, as `Ord` must agree with `Eq`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Container {
    pub id: String,
    pub runtime: Runtime,
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

/// Attributes every process of `snapshot` from the cgroup file the scan read with it.
/// `names` maps container ids to the kubelet's names; where it is empty only ids and pod uids
/// are known. A pure function of its inputs: processes of one cgroup share the bytes the scan
/// read, so each distinct file is parsed once.
pub fn attribute(snapshot: &Snapshot, names: &HashMap<String, KubeletName>) -> Attribution {
    let mut containers: HashMap<String, Arc<Container>> = HashMap::new();
    let mut parsed: HashMap<*const u8, CgroupWorkload> = HashMap::new();
    let mut by_pid = HashMap::with_capacity(snapshot.processes.len());
    for p in snapshot.processes.values() {
        let workload = if is_kernel_thread(p, snapshot) {
            Workload::Kernel
        } else {
            match &p.cgroup {
                None => Workload::Unknown,
                Some(bytes) => {
                    // The Arc's address names its content: the snapshot keeps every one alive.
                    let cgroup = parsed
                        .entry(bytes.as_ptr())
                        .or_insert_with(|| parse_cgroup(bytes));
                    match cgroup {
                        CgroupWorkload::Host => Workload::Host,
                        CgroupWorkload::Unknown => Workload::Unknown,
                        CgroupWorkload::Pod { uid } => Workload::Pod(uid.clone()),
                        CgroupWorkload::Container(c) => {
                            let container = containers
                                .entry(c.id.clone())
                                .or_insert_with(|| {
                                    Arc::new(Container {
                                        runtime: c.runtime,
                                        names: names.get(&c.id).cloned(),
                                        id: c.id.clone(),
                                        pod_uid: c.pod_uid.clone(),
                                    })
                                })
                                .clone();
                            if c.monitor || is_runtime_setup(&p.comm) {
                                Workload::Runtime(container)
                            } else {
                                Workload::Container(container)
                            }
                        }
                    }
                }
            }
        };
        by_pid.insert(p.id.pid, workload);
    }
    Attribution { by_pid }
}
