//! From processes to workloads: classifies each process's `/proc/PID/cgroup`, as the scan read
//! it, with [`parse_cgroup`], and names Kubernetes containers from the kubelet's log names.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::container_names::ContainerNames;
use super::membership::{Evidence, Memberships, shared_pid_namespaces};
use super::names::Names;
use crate::cgroup::{CgroupWorkload, ContainerRef, Runtime, parse_cgroup};
use crate::model::{Process, ScanTime, Snapshot};

/// One container, shared by all its processes. Ordered by id first (the field order), and
/// equal only where every field is, as `Ord` must agree with `Eq`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Container {
    pub id: String,
    pub runtime: Runtime,
    pub pod_uid: Option<String>,
    /// Pod, namespace and container names, where a name source had them.
    pub names: Option<ContainerNames>,
}

impl Container {
    /// What counts as "one workload" for sharing: the pod for Kubernetes and Podman
    /// containers (a pod's containers share namespaces by design: the pause or infra
    /// container's), the container otherwise.
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
    /// Processes attributed to a container that their cgroup file does not name (the host's
    /// cgroup, a pod's, a monitor's or another container's): each is a move out of its
    /// container's cgroup, sorted by pid.
    moved: Vec<i32>,
}

impl Attribution {
    /// The workload of `pid` ([`Workload::Unknown`] if it was not attributed).
    pub fn of(&self, pid: i32) -> &Workload {
        self.by_pid.get(&pid).unwrap_or(&Workload::Unknown)
    }

    /// The processes that left their container's cgroup, as [`attribute`] found them.
    pub fn moved(&self) -> &[i32] {
        &self.moved
    }

    /// Builds an attribution from known workloads (tests).
    pub fn from_map(by_pid: HashMap<i32, Workload>) -> Self {
        Attribution {
            by_pid,
            moved: Vec::new(),
        }
    }
}

/// Whether the process is a kernel thread: kthreadd (PID 2 with parent 0) or one of its
/// children.
fn is_kernel_thread(p: &Process, snapshot: &Snapshot) -> bool {
    let kthreadd = |pid: i32| snapshot.processes.get(&pid).is_some_and(|k| k.ppid == 0);
    (p.id.pid == 2 && p.ppid == 0) || (p.ppid == 2 && kthreadd(2))
}

/// How long after its fork a process can still be the runtime setting its container up.
/// runc's stages (`runc:[0:PARENT]`, `[1:CHILD]`, `[2:INIT]`, and `runc init` for an exec) sit
/// in the container's cgroup before they are in its namespaces for milliseconds; a second is
/// ample on a loaded node and still short for anyone who would hide behind it.
pub const SETUP_WINDOW_SECONDS: u64 = 1;

/// The names of the OCI runtimes whose children set a container up.
const RUNTIMES: [&str; 3] = ["runc", "crun", "youki"];

// Whether a process in a container's (payload) cgroup is that container's runtime setting it
// up rather than its payload is decided on facts the container cannot forge, never on the
// process's own name, which any process sets with `prctl(PR_SET_NAME)`: it is young
// ([`is_young`]) and its parent is a runtime outside the container ([`is_runtime`]).

/// Whether `p` forked less than [`SETUP_WINDOW_SECONDS`] before `now`. Its start time is the
/// kernel's record of its fork, which neither exec nor anything else changes: a process can
/// be young once.
fn is_young(p: &Process, now: &ScanTime) -> bool {
    now.ticks.saturating_sub(p.id.start_ticks) < SETUP_WINDOW_SECONDS * now.ticks_per_second
}

/// Whether `parent`, with its cgroup, is an OCI runtime outside every container's payload.
/// runc clones its stages with `CLONE_PARENT` from the `runc create` or `runc exec` process,
/// which runs in the shim's cgroup. A process in the container forks children inside it and
/// cannot pick its parent; an orphan is reparented to the container's init or, sharing the
/// host's pid namespace, to the shim, a subreaper that is no runtime. This name is a host
/// process's own, out of the container's reach.
fn is_runtime(parent: &Process, cgroup: &CgroupWorkload) -> bool {
    RUNTIMES.contains(&&*parent.comm)
        && !matches!(cgroup, CgroupWorkload::Container(c) if !c.monitor)
}

/// Attributes every process of `snapshot` from the cgroup file the scan read with it, and
/// from what `memberships` learnt of it before (see [`Memberships`]): a process that its own
/// history or its pid namespace places in a container is that container's, whatever its
/// cgroup file says, and is listed in [`Attribution::moved`] where that file names the host,
/// a pod or another container. `names` gives each container id's names; where it has none
/// only ids and pod uids are known. `earlier` is where parents missing from `snapshot` are
/// looked up, in order (a sweep's snapshot holds only what it read; the last scan and the
/// parents read for it hold the rest). Processes of one cgroup share the bytes the scan read,
/// so each distinct file is parsed once.
pub fn attribute(
    snapshot: &Snapshot,
    earlier: &[&Snapshot],
    names: &Names,
    memberships: &mut Memberships,
) -> Attribution {
    let kernel = |p: &Process| is_kernel_thread(p, snapshot);
    let mut parsed: HashMap<*const u8, CgroupWorkload> = HashMap::new();
    for p in snapshot.processes.values().filter(|p| !kernel(p)) {
        if let Some(bytes) = &p.cgroup {
            // The Arc's address names its content: the snapshot keeps every one alive.
            parsed
                .entry(bytes.as_ptr())
                .or_insert_with(|| parse_cgroup(bytes));
        }
    }
    let cgroup_of = |p: &Process| Some(&parsed[&p.cgroup.as_ref()?.as_ptr()]);
    // A parent from `earlier` has bytes of its own scan: parsed when asked for, rarely.
    let parent_of = |p: &Process| -> Option<(&Process, Cow<'_, CgroupWorkload>)> {
        if let Some(parent) = snapshot.processes.get(&p.ppid) {
            return Some((parent, Cow::Borrowed(cgroup_of(parent)?)));
        }
        let parent = earlier.iter().find_map(|s| s.processes.get(&p.ppid))?;
        Some((parent, Cow::Owned(parse_cgroup(parent.cgroup.as_ref()?))))
    };
    let shared = shared_pid_namespaces(snapshot, earlier);
    // What the payload the cgroup files name teaches first, so that a process that left its
    // container's cgroup is placed by the container's other processes of this same read. In
    // order of start: a pid namespace is first learnt from its init, which is older than any
    // process its container forks and moves. A process whose pid namespace is another
    // container's waits until every other has been learnt: its own container shares that
    // namespace by design only where its payload was read in it too.
    let mut payload: Vec<(&Process, &ContainerRef)> = snapshot
        .processes
        .values()
        .filter(|p| !kernel(p))
        .filter_map(|p| match cgroup_of(p) {
            Some(CgroupWorkload::Container(c)) if !c.monitor => Some((p, c)),
            _ => None,
        })
        .collect();
    payload.sort_unstable_by_key(|(p, _)| (p.id.start_ticks, p.id.pid));
    let mut waiting = Vec::new();
    for (p, c) in payload {
        match memberships.of(p, snapshot) {
            None => memberships.learn(p, c, snapshot, &shared),
            Some((r, _)) if r.id == c.id => memberships.learn(p, c, snapshot, &shared),
            Some((_, Evidence::PidNamespace)) => waiting.push((p, c)),
            Some((_, Evidence::Process)) => {}
        }
    }
    for (p, c) in waiting {
        if memberships.holds(&c.id, p) != Some(false) {
            memberships.learn(p, c, snapshot, &shared);
        }
    }
    // Each process's verdict: its container's reference and whether it is the payload, or
    // another workload; and whether its cgroup file said otherwise.
    let mut verdicts: Vec<(&Process, Verdict, bool)> = Vec::with_capacity(snapshot.processes.len());
    for p in snapshot.processes.values() {
        if kernel(p) {
            verdicts.push((p, Verdict::Other(Workload::Kernel), false));
            continue;
        }
        let claimed = cgroup_of(p);
        let known = memberships
            .of(p, snapshot)
            .map(|(r, e)| (Ref::Learnt(Arc::clone(r)), e));
        // The runtime setting a container up: young, and a child of a runtime outside every
        // container, which nothing places in one either.
        let setup = || {
            is_young(p, &snapshot.time)
                && parent_of(p).is_some_and(|(parent, c)| {
                    is_runtime(parent, &c) && memberships.of(parent, snapshot).is_none()
                })
        };
        let verdict = match (claimed, known) {
            (Some(CgroupWorkload::Container(c)), known) => {
                match known {
                    // Where it was, or in the pid namespace of another container that its
                    // own container's payload was read in too: a pod's containers, or
                    // `--pid=container:`, share one by design.
                    None => (
                        Verdict::Container(Ref::Parsed(c), !(c.monitor || setup())),
                        false,
                    ),
                    Some((r, _)) if r.id == c.id && !c.monitor => {
                        (Verdict::Container(Ref::Parsed(c), !setup()), false)
                    }
                    Some((_, Evidence::PidNamespace))
                        if !c.monitor && memberships.holds(&c.id, p) != Some(false) =>
                    {
                        (Verdict::Container(Ref::Parsed(c), !setup()), false)
                    }
                    // A monitor is never in its container's pid namespace, nor ever its
                    // payload; a process never leaves its container for another; and one in
                    // a container's pid namespace that claims the cgroup of another, whose
                    // payload was never in it, is framing that other.
                    Some((r, _)) => (Verdict::Container(r, true), true),
                }
            }
            (None | Some(CgroupWorkload::Unknown), Some((r, _))) => {
                (Verdict::Container(r, true), false)
            }
            // `runc exec`'s init is in the container's pid namespace before runc moves it
            // into the container's cgroup: the runtime's plumbing, for its first second.
            (Some(CgroupWorkload::Host | CgroupWorkload::Pod { .. }), Some((r, _))) if setup() => {
                (Verdict::Container(r, false), false)
            }
            (Some(CgroupWorkload::Host | CgroupWorkload::Pod { .. }), Some((r, _))) => {
                (Verdict::Container(r, true), true)
            }
            (None | Some(CgroupWorkload::Unknown), None) => {
                (Verdict::Other(Workload::Unknown), false)
            }
            (Some(CgroupWorkload::Host), None) => (Verdict::Other(Workload::Host), false),
            (Some(CgroupWorkload::Pod { uid }), None) => {
                (Verdict::Other(Workload::Pod(uid.clone())), false)
            }
        };
        // What the cgroup file named was learnt above; what evidence named, only now.
        if let (Verdict::Container(r @ Ref::Learnt(_), true), _) = &verdict {
            memberships.learn(p, r, snapshot, &shared);
        }
        verdicts.push((p, verdict.0, verdict.1));
    }
    // One container per id, described by its payload's reference where a payload was seen:
    // a monitor may sit outside the pod (CRI-O's conmon in system.slice, istio/istio#55139),
    // and it starts first, so it has the lower pid.
    let mut refs: HashMap<&str, (&ContainerRef, bool)> = HashMap::new();
    for (_, verdict, _) in &verdicts {
        if let Verdict::Container(c, payload) = verdict {
            let seen = refs.entry(&c.id).or_insert((c, *payload));
            if !seen.1 && *payload {
                *seen = (c, true);
            }
        }
    }
    let containers: HashMap<&str, Arc<Container>> = refs
        .into_iter()
        .map(|(id, (c, _))| {
            let container = Container {
                runtime: c.runtime,
                names: names.get(id).cloned(),
                id: id.to_owned(),
                pod_uid: c.pod_uid.clone(),
            };
            (id, Arc::new(container))
        })
        .collect();
    let mut by_pid = HashMap::with_capacity(verdicts.len());
    let mut moved = Vec::new();
    for (p, verdict, was_moved) in &verdicts {
        let workload = match verdict {
            Verdict::Other(w) => w.clone(),
            Verdict::Container(c, true) => {
                Workload::Container(Arc::clone(&containers[c.id.as_str()]))
            }
            Verdict::Container(c, false) => {
                Workload::Runtime(Arc::clone(&containers[c.id.as_str()]))
            }
        };
        if *was_moved {
            moved.push(p.id.pid);
        }
        by_pid.insert(p.id.pid, workload);
    }
    Attribution { by_pid, moved }
}

/// A process's workload before containers are shared: `Container(r, payload)`.
enum Verdict<'a> {
    Container(Ref<'a>, bool),
    Other(Workload),
}

/// A container's reference as its cgroup file named it, or as attribution learnt it: never
/// copied per process.
enum Ref<'a> {
    Parsed(&'a ContainerRef),
    Learnt(Arc<ContainerRef>),
}

impl std::ops::Deref for Ref<'_> {
    type Target = ContainerRef;

    fn deref(&self) -> &ContainerRef {
        match self {
            Ref::Parsed(c) => c,
            Ref::Learnt(c) => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::model::{HostNamespaces, NsType, PerType, ScanTime};

    /// Shapes from the corpus in `cgroup.rs`, where each one's source is given.
    const CONTAINERD_POD: &str = "dd1bf9d1-241d-47f5-8e25-12de83135812";
    const CONTAINERD_ID: &str = "f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830";
    const CONTAINERD_CGROUP: &str = "0::/kubepods.slice/kubepods-besteffort.slice/\
kubepods-besteffort-poddd1bf9d1_241d_47f5_8e25_12de83135812.slice/\
cri-containerd-f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830.scope\n";
    const CRIO_POD: &str = "b4e8e0dc-caf3-4a43-bf50-f84ef5ef7a8f";
    const CRIO_ID: &str = "927cffdca4f374600fe49a62bfd7f2e73ea6d37cdafb1bf8f89afb64d7e6c6a5";
    const CRIO_POD_SLICE: &str = "0::/kubepods.slice/kubepods-burstable.slice/\
kubepods-burstable-podb4e8e0dc_caf3_4a43_bf50_f84ef5ef7a8f.slice";
    const DOCKER_ID: &str = "5dace3de0735f73d2b5048f12d41a71741a02e49668de921fdae62f7e65dc498";
    const V1_POD: &str = "6c85216c-82ad-11e7-9fb0-061c2985ea4a";

    fn cgroup(text: &str) -> Arc<[u8]> {
        Arc::from(text.as_bytes())
    }

    fn process(pid: i32, ppid: i32, comm: &str, cgroup: Option<&Arc<[u8]>>) -> Process {
        Process {
            ppid,
            comm: comm.into(),
            cgroup: cgroup.cloned(),
            ..Process::fixture(pid, PerType::splat(crate::model::inode(1)))
        }
    }

    /// Every fixture process is in namespace 1 of each type, which is the host's: a
    /// container of these tests shares the host's pid namespace, so that only its cgroup
    /// file places it (the pid namespace's evidence has tests of its own).
    fn snapshot(processes: Vec<Process>) -> Snapshot {
        Snapshot::from_processes(
            SystemTime::UNIX_EPOCH,
            ScanTime::fixture(100),
            processes.into_iter().map(|p| (p.id.pid, p)).collect(),
            HostNamespaces {
                source: crate::model::HostSource::Init,
                inodes: PerType::splat(Some(1)),
            },
        )
    }

    fn kubelet_name(pod: &str, container: &str, id: &str) -> ContainerNames {
        ContainerNames {
            pod: pod.into(),
            k8s_namespace: "default".into(),
            container: container.into(),
            container_id: id.into(),
        }
    }

    /// The container of a container's payload or plumbing.
    fn container(w: &Workload) -> &Arc<Container> {
        match w {
            Workload::Container(c) | Workload::Runtime(c) => c,
            other => panic!("not a container's: {other:?}"),
        }
    }

    #[test]
    fn every_kind_of_process_gets_its_workload() {
        let host = cgroup("0::/init.scope\n");
        let containerd = cgroup(CONTAINERD_CGROUP);
        // Another file with the same text: one container still, however many copies.
        let containerd_copy = cgroup(CONTAINERD_CGROUP);
        let docker = cgroup(&format!("0::/system.slice/docker-{DOCKER_ID}.scope\n"));
        let pod_v1 = cgroup(&format!("4:memory:/kubepods/besteffort/pod{V1_POD}\n"));
        let empty = cgroup("");
        let s = snapshot(vec![
            process(1, 0, "systemd", Some(&host)),
            process(2, 0, "kthreadd", None),
            process(3, 2, "kworker/0:0", None),
            process(100, 1, "nginx", Some(&containerd)),
            process(101, 100, "nginx", Some(&containerd)),
            process(102, 1, "sh", Some(&containerd_copy)),
            process(90, 1, "runc", Some(&host)),
            process(103, 90, "runc:[2:INIT]", Some(&containerd)),
            process(200, 1, "redis", Some(&docker)),
            process(300, 1, "leftover", Some(&pod_v1)),
            process(400, 1, "exiting", Some(&empty)),
            process(401, 1, "unread", None),
        ]);
        let names = Names::of(
            crate::attribution::NameSource::Kubelet,
            HashMap::from([(
                CONTAINERD_ID.to_owned(),
                kubelet_name("web-0", "nginx", CONTAINERD_ID),
            )]),
        );
        let a = attribute(&s, &[], &names, &mut Memberships::default());

        assert_eq!(a.of(1), &Workload::Host);
        assert_eq!(a.of(2), &Workload::Kernel);
        assert_eq!(a.of(3), &Workload::Kernel);
        assert_eq!(a.of(300), &Workload::Pod(V1_POD.into()));
        assert_eq!(a.of(400), &Workload::Unknown);
        assert_eq!(a.of(401), &Workload::Unknown);
        assert_eq!(a.of(999), &Workload::Unknown, "a pid not in the snapshot");

        let nginx = container(a.of(100));
        assert_eq!(
            **nginx,
            Container {
                id: CONTAINERD_ID.into(),
                runtime: Runtime::Containerd,
                pod_uid: Some(CONTAINERD_POD.into()),
                names: Some(kubelet_name("web-0", "nginx", CONTAINERD_ID)),
            }
        );
        assert_eq!(nginx.unit(), CONTAINERD_POD);
        for pid in [101, 102] {
            assert_eq!(a.of(pid), &Workload::Container(nginx.clone()), "pid {pid}");
            assert!(Arc::ptr_eq(container(a.of(pid)), nginx), "pid {pid}");
        }
        // runc's init, just forked by runc into the container's cgroup: not yet its payload.
        assert_eq!(a.of(103), &Workload::Runtime(nginx.clone()));

        // No kubelet name for it, and no pod: the container is its own unit.
        let redis = container(a.of(200));
        assert_eq!(a.of(200), &Workload::Container(redis.clone()));
        assert_eq!(
            (redis.runtime, redis.pod_uid.as_deref()),
            (Runtime::Docker, None)
        );
        assert_eq!((redis.names.as_ref(), redis.unit()), (None, DOCKER_ID));
    }

    /// The scan's clock in the test snapshots: 100 ticks a second, 1000 s after boot.
    const NOW: u64 = 100_000;

    /// A process that forked `age` ticks before [`NOW`].
    fn aged(pid: i32, ppid: i32, comm: &str, cgroup: &Arc<[u8]>, age: u64) -> Process {
        let mut p = process(pid, ppid, comm, Some(cgroup));
        p.id.start_ticks = NOW - age;
        p
    }

    fn snapshot_at_now(processes: Vec<Process>) -> Snapshot {
        let mut s = snapshot(processes);
        s.time.ticks = NOW;
        s
    }

    /// runc's stages are told from the payload by what the kernel says of them: forked under
    /// a second ago, by a runtime outside the container. Their names say nothing: a payload
    /// may call itself anything, runc's stage names included.
    #[test]
    fn runtime_plumbing_is_told_from_the_payload_by_facts_not_names() {
        let in_pod = |leaf: &str| cgroup(&format!("{CRIO_POD_SLICE}/{leaf}.scope\n"));
        let conmon = in_pod(&format!("crio-conmon-{CRIO_ID}"));
        let payload = in_pod(&format!("crio-{CRIO_ID}"));
        let shim = cgroup("0::/system.slice/crio.service\n");
        let s = snapshot_at_now(vec![
            aged(10, 1, "conmon", &conmon, 500),
            aged(20, 10, "runc", &shim, 30),
            // runc's stages, all children of `runc create` (CLONE_PARENT).
            aged(21, 20, "runc:[0:PARENT]", &payload, 20),
            aged(22, 20, "runc:[1:CHILD]", &payload, 10),
            aged(23, 20, "runc:[2:INIT]", &payload, 99),
            // The payload after exec, still young, still runc's child: plumbing for a second.
            aged(24, 20, "app", &payload, 5),
            // The same pid a second later would be the payload; an older child of runc is.
            aged(25, 20, "app", &payload, 100),
            // Payload processes named as runc's stages or as any runtime's process.
            aged(30, 25, "runc", &payload, 5000),
            aged(31, 25, "runc init", &payload, 5000),
            aged(32, 25, "runc:[2:INIT]", &payload, 5000),
            aged(33, 25, "conmon", &payload, 5000),
            // Young, but forked by the payload (named runc) rather than by a runtime.
            aged(34, 30, "runc:[2:INIT]", &payload, 1),
            aged(35, 31, "runc init", &payload, 1),
        ]);
        let a = attribute(&s, &[], &Names::default(), &mut Memberships::default());
        let app = container(a.of(25)).clone();
        assert_eq!(
            (app.id.as_str(), app.runtime, app.unit(), app.names.as_ref()),
            (CRIO_ID, Runtime::CriO, CRIO_POD, None)
        );
        for pid in [10, 21, 22, 23, 24] {
            assert_eq!(a.of(pid), &Workload::Runtime(app.clone()), "pid {pid}");
        }
        for pid in [25, 30, 31, 32, 33, 34, 35] {
            assert_eq!(a.of(pid), &Workload::Container(app.clone()), "pid {pid}");
        }
        assert_eq!(a.of(20), &Workload::Host);

        // A sweep's snapshot holds the new process only: its parent comes from the last scan.
        let sweep = snapshot_at_now(vec![aged(40, 20, "runc:[2:INIT]", &payload, 3)]);
        let earlier = snapshot_at_now(vec![aged(20, 10, "runc", &shim, 30)]);
        let a = attribute(
            &sweep,
            &[&earlier],
            &Names::default(),
            &mut Memberships::default(),
        );
        assert!(matches!(a.of(40), Workload::Runtime(_)), "{:?}", a.of(40));
        let a = attribute(&sweep, &[], &Names::default(), &mut Memberships::default());
        assert!(
            matches!(a.of(40), Workload::Container(_)),
            "an unknown parent is no runtime"
        );
    }

    /// CRI-O's default `conmon_cgroup = "system.slice"` puts the monitor outside the pod
    /// (istio/istio#55139), and it starts before the payload, so it has the lower pid.
    #[test]
    fn a_monitor_outside_the_pod_does_not_take_the_pod_away() {
        let conmon = cgroup(&format!("0::/system.slice/crio-conmon-{CRIO_ID}.scope\n"));
        let payload = cgroup(&format!("{CRIO_POD_SLICE}/crio-{CRIO_ID}.scope\n"));
        let s = snapshot(vec![
            process(10, 1, "conmon", Some(&conmon)),
            process(11, 10, "app", Some(&payload)),
        ]);
        let a = attribute(&s, &[], &Names::default(), &mut Memberships::default());
        let app = container(a.of(11));
        assert_eq!(app.pod_uid.as_deref(), Some(CRIO_POD));
        assert_eq!(a.of(10), &Workload::Runtime(app.clone()));
        // Alone, the monitor still names its container, without a pod.
        let alone = attribute(
            &snapshot(vec![process(10, 1, "conmon", Some(&conmon))]),
            &[],
            &Names::default(),
            &mut Memberships::default(),
        );
        assert_eq!(container(alone.of(10)).pod_uid, None);
    }

    /// A Podman pod's containers, its infra container included, are one workload, as a
    /// Kubernetes pod's are; a container outside the pod is its own (cgroups as podman 4.3
    /// makes them with the cgroupfs manager).
    #[test]
    fn a_podman_pods_containers_are_one_unit() {
        let pod = "5fe9274922d8a61fbdc2b12b003e5438bf711497817f5befc31eb76448311c37";
        let in_pod = |id: char| {
            let id: String = std::iter::repeat_n(id, 64).collect();
            cgroup(&format!("0::/libpod_parent/{pod}/libpod-{id}\n"))
        };
        let (infra, a, b) = (in_pod('1'), in_pod('2'), in_pod('3'));
        let alone = cgroup(&format!("0::/libpod_parent/libpod-{}\n", "4".repeat(64)));
        let s = snapshot(vec![
            process(10, 1, "catatonit", Some(&infra)),
            process(11, 1, "sleep", Some(&a)),
            process(12, 1, "sleep", Some(&b)),
            process(13, 1, "sleep", Some(&alone)),
        ]);
        let a = attribute(&s, &[], &Names::default(), &mut Memberships::default());
        for pid in [10, 11, 12] {
            let c = container(a.of(pid));
            assert_eq!((c.runtime, c.unit()), (Runtime::Podman, pod), "pid {pid}");
        }
        assert_eq!(container(a.of(13)).unit(), "4".repeat(64));
    }

    /// Only kthreadd's own children are kernel threads: in a pid namespace (a fixture tree,
    /// a container's procfs) pid 2 can be an ordinary process, and its children too.
    #[test]
    fn pid_2_is_kthreadd_only_with_parent_0() {
        let host = cgroup("0::/user.slice\n");
        let s = snapshot(vec![
            process(1, 0, "sh", Some(&host)),
            process(2, 1, "sleep", Some(&host)),
            process(3, 2, "child", Some(&host)),
        ]);
        let a = attribute(&s, &[], &Names::default(), &mut Memberships::default());
        for pid in [1, 2, 3] {
            assert_eq!(a.of(pid), &Workload::Host, "pid {pid}");
        }
    }

    /// A process in pid namespace `pid_ns` (every other namespace the host's).
    fn in_pid_ns(pid: i32, cgroup: &Arc<[u8]>, pid_ns: u64) -> Process {
        let mut p = process(pid, 1, "sh", Some(cgroup));
        p.namespaces[NsType::Pid] = crate::model::inode(pid_ns);
        p
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn docker(id: &str) -> Arc<[u8]> {
        cgroup(&format!("0::/system.slice/docker-{id}.scope\n"))
    }

    fn id_of(w: &Workload) -> &str {
        &container(w).id
    }

    /// A process that wrote itself into the root cgroup (or a pod's, or a monitor's at the
    /// level runtimes make them) is still its container's by its pid namespace, or a
    /// namespace nested in it, and the move is listed; the host's own processes are not
    /// touched, nor is a process whose cgroup file could not be read listed as moved.
    #[test]
    fn a_process_that_left_its_containers_cgroup_is_placed_by_its_pid_namespace() {
        let (root, a) = (cgroup("0::/\n"), docker(A));
        let pod = cgroup(&format!("4:memory:/kubepods/besteffort/pod{V1_POD}\n"));
        let fake_monitor = cgroup(&format!("0::/machine.slice/libpod-conmon-{A}.scope\n"));
        let mut unread = in_pid_ns(105, &a, 50);
        unread.cgroup = None;
        let mut nested = in_pid_ns(106, &root, 60);
        nested.ppid = 101;
        let mut s = snapshot(vec![
            in_pid_ns(1, &root, 1),
            in_pid_ns(100, &a, 50),
            in_pid_ns(101, &root, 50),
            in_pid_ns(102, &pod, 50),
            in_pid_ns(103, &fake_monitor, 50),
            in_pid_ns(104, &root, 1),
            unread,
            nested,
        ]);
        let id = |inode| crate::model::NamespaceId {
            ns_type: NsType::Pid,
            inode,
        };
        s.namespaces.get_mut(&id(60)).unwrap().parent = Some(50);
        with_kernel_ids(&mut s, 1000);
        let mut m = Memberships::default();
        let a = attribute(&s, &[], &Names::default(), &mut m);
        assert_eq!(a.of(1), &Workload::Host);
        assert_eq!(
            a.of(104),
            &Workload::Host,
            "the host's pid namespace names no container"
        );
        for pid in [100, 101, 102, 103, 105, 106] {
            assert!(
                matches!(a.of(pid), Workload::Container(c) if c.id == A),
                "pid {pid}: {:?}",
                a.of(pid)
            );
        }
        assert_eq!(a.moved(), [101, 102, 103, 106]);

        // Container A stops; a new namespace gets inode 50 at once, and a host process in
        // it is no one's container: the kernel id tells the two apart.
        let mut reused = snapshot(vec![in_pid_ns(1, &root, 1), in_pid_ns(300, &root, 50)]);
        with_kernel_ids(&mut reused, 2000);
        let a = attribute(&reused, &[&s], &Names::default(), &mut m);
        assert_eq!(a.of(300), &Workload::Host);
        assert!(a.moved().is_empty());
        // A sweep's read, which knows no kernel id, is placed by its own history alone.
        let sweep = snapshot(vec![in_pid_ns(301, &root, 50)]);
        let a = attribute(&sweep, &[&s], &Names::default(), &mut m);
        assert_eq!(a.of(301), &Workload::Host);
    }

    /// Kernel ids for every namespace of `s`, as a whole scan reads them: the inode plus
    /// `base`.
    fn with_kernel_ids(s: &mut Snapshot, base: u64) {
        for (id, ns) in s.namespaces.iter_mut() {
            ns.kernel_id = Some(id.inode + base);
        }
    }

    /// A container's processes are placed by cgroup where the pid namespace is shared by
    /// design: a pod's containers, `--pid=container:`, a container in the host's.
    #[test]
    fn a_shared_pid_namespace_moves_no_one() {
        let (a, b) = (docker(A), docker(B));
        let mut s = snapshot(vec![
            in_pid_ns(100, &a, 50),
            in_pid_ns(200, &b, 50),
            in_pid_ns(300, &a, 1),
            in_pid_ns(301, &cgroup("0::/init.scope\n"), 1),
        ]);
        with_kernel_ids(&mut s, 1000);
        let att = attribute(&s, &[], &Names::default(), &mut Memberships::default());
        assert_eq!((id_of(att.of(100)), id_of(att.of(200))), (A, B));
        assert_eq!(att.of(301), &Workload::Host);
        assert!(att.moved().is_empty());
    }

    /// A process in container A's pid namespace that wrote itself into container B's own
    /// cgroup (a container that can write the whole tree) frames no one: B's payload was
    /// never in that pid namespace. Seen at an exporter's first scan too, where the older
    /// init names each pid namespace first.
    #[test]
    fn a_process_in_one_containers_pid_namespace_cannot_claim_anothers_cgroup() {
        let (a, b) = (docker(A), docker(B));
        let aged = |pid, cgroup: &Arc<[u8]>, pid_ns, start| {
            let mut p = in_pid_ns(pid, cgroup, pid_ns);
            p.id.start_ticks = start;
            p
        };
        let mut s = snapshot(vec![
            aged(100, &a, 50, 10),
            aged(150, &b, 50, 30),
            aged(200, &b, 60, 20),
        ]);
        with_kernel_ids(&mut s, 1000);
        let att = attribute(&s, &[], &Names::default(), &mut Memberships::default());
        assert_eq!(
            (id_of(att.of(100)), id_of(att.of(150)), id_of(att.of(200))),
            (A, A, B)
        );
        assert_eq!(att.moved(), [150]);
    }

    /// `runc exec`'s init is in the container's pid namespace before runc moves it into the
    /// container's cgroup: for its first second, with a runc outside every container as its
    /// parent, it is the runtime's plumbing. Older, or a child of a "runc" that its own pid
    /// namespace places in the container (a payload that left its cgroup and renamed
    /// itself), it is a move.
    #[test]
    fn runc_execs_init_before_it_joins_the_cgroup_is_plumbing() {
        let (a, root) = (docker(A), cgroup("0::/\n"));
        let at = |pid, ppid, comm: &str, cgroup: &Arc<[u8]>, pid_ns, age| {
            let mut p = aged(pid, ppid, comm, cgroup, age);
            p.namespaces[NsType::Pid] = crate::model::inode(pid_ns);
            p
        };
        let mut s = snapshot_at_now(vec![
            at(1, 0, "systemd", &root, 1, 100_000),
            at(100, 1, "sleep", &a, 50, 10_000),
            at(90, 1, "runc", &root, 1, 10),
            at(91, 90, "runc:[2:INIT]", &root, 50, 5),
            at(92, 90, "runc:[2:INIT]", &root, 50, 500),
            at(93, 100, "runc", &root, 50, 1000),
            at(94, 93, "sh", &root, 50, 5),
        ]);
        with_kernel_ids(&mut s, 1000);
        let att = attribute(&s, &[], &Names::default(), &mut Memberships::default());
        assert!(
            matches!(att.of(91), Workload::Runtime(c) if c.id == A),
            "{:?}",
            att.of(91)
        );
        assert_eq!(att.moved(), [92, 93, 94]);
    }

    /// A process stays the container it was first read in, across scans and sweeps,
    /// whatever cgroup it writes itself into later, the host's or another container's
    /// (framing it); a reused pid is a new process, and a whole scan forgets the gone.
    #[test]
    fn a_process_never_leaves_its_container() {
        let (a, b, root) = (docker(A), docker(B), cgroup("0::/\n"));
        let mut m = Memberships::default();
        // A container in the host's pid namespace: only its process's history places it.
        let first = snapshot(vec![in_pid_ns(100, &a, 1), in_pid_ns(200, &b, 1)]);
        attribute(&first, &[], &Names::default(), &mut m);
        m.keep_only(&first);
        let later = snapshot(vec![in_pid_ns(100, &root, 1), in_pid_ns(200, &b, 1)]);
        let att = attribute(&later, &[&first], &Names::default(), &mut m);
        assert_eq!(id_of(att.of(100)), A);
        assert_eq!(att.moved(), [100]);
        let framed = snapshot(vec![in_pid_ns(100, &b, 1), in_pid_ns(200, &b, 1)]);
        let att = attribute(&framed, &[&first], &Names::default(), &mut m);
        assert_eq!((id_of(att.of(100)), id_of(att.of(200))), (A, B));
        assert_eq!(att.moved(), [100]);
        // Pid 100 reused by a host process.
        let mut reused = in_pid_ns(100, &root, 1);
        reused.id.start_ticks += 1;
        let s = snapshot(vec![reused.clone()]);
        assert_eq!(
            attribute(&s, &[], &Names::default(), &mut m).of(100),
            &Workload::Host
        );
        m.keep_only(&s);
        assert_eq!(m.len(), (0, 0));
    }
}
