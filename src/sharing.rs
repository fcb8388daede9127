//! Sharing: who owns each namespace, which containers share the host's namespaces, and which
//! sharing the [`Policy`] does not allow.
//!
//! Works on a [`Snapshot`] and its [`Attribution`] only, so tests feed it in-memory scans.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::attribution::{Attribution, Container, Workload};
use crate::model::{Namespace, NamespaceId, NsType, Snapshot};
use crate::policy::{Policy, Rule};

label_enum! {
    /// The `owner` label of a namespace.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub enum Owner {
        /// The host's namespace of its type, or one holding host processes only.
        Host = "host",
        /// One container's processes (and its runtime's plumbing).
        Container = "container",
        /// Processes of several containers of one pod.
        Pod = "pod",
        /// Kernel threads only.
        Kernel = "kernel",
        /// Processes of different workloads.
        Mixed = "mixed",
        /// No member could be attributed.
        #[default]
        Unknown = "unknown",
        /// No member process at all: held by a bind mount, an open fd or a socket only. The
        /// workload labels are those of the processes holding its fds and sockets, where they
        /// agree: a namespace held by a container's fd is counted against that container.
        NoProcess = "none",
    }
}

/// What a namespace belongs to, with the container labels that are single-valued among its
/// members (empty where they differ or are unknown).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    pub owner: Owner,
    pub runtime: String,
    pub pod_uid: String,
    pub pod: String,
    pub k8s_namespace: String,
    pub container: String,
    pub container_id: String,
}

/// A container in the host's namespace of one type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostSharing {
    pub ns_type: NsType,
    pub container: Arc<Container>,
}

label_enum! {
    /// Whether the container's OCI spec declared what a finding reports: the `declared`
    /// label. A declared host namespace (`hostNetwork: true`) is posture; an undeclared one
    /// is what a spec cannot explain.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Declaration {
        True = "true",
        False = "false",
        /// No spec was found for the container.
        #[default]
        Unknown = "unknown",
    }
}

/// A sharing the policy does not allow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub rule: Rule,
    pub ns_type: NsType,
    pub container: Arc<Container>,
    /// Set from the container's spec after [`evaluate`]; `Unknown` until then.
    pub declared: Declaration,
    /// What the rule saw beyond its name, for the log: for `privilege_exceeds_declared`, the
    /// process that holds more than its declaration and what it holds beyond it (facts the
    /// kernel keeps, not what the process wrote).
    pub detail: Option<Arc<str>>,
}

impl Finding {
    /// The identity of a finding across scans.
    pub fn key(&self) -> (Rule, NsType, String) {
        (self.rule, self.ns_type, self.container.id.clone())
    }
}

/// Remembers the findings of the last scan, so that each is counted and logged once, when it
/// first appears, however many scans it lasts.
#[derive(Debug, Default)]
pub struct FindingLog {
    previous: HashSet<(Rule, NsType, String)>,
}

impl FindingLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes this scan's findings; logs each new one at warn and returns their rule and type.
    pub fn update(&mut self, findings: &[Finding]) -> Vec<(Rule, NsType)> {
        let mut current = HashSet::with_capacity(findings.len());
        let mut new = Vec::new();
        for f in findings {
            let key = f.key();
            if !self.previous.contains(&key) {
                new.push((f.rule, f.ns_type));
                let names = f.container.names.as_ref();
                tracing::warn!(
                    rule = f.rule.as_str(),
                    r#type = f.ns_type.as_str(),
                    runtime = f.container.runtime.as_str(),
                    container_id = %f.container.id,
                    container = names.map_or("", |n| n.container.as_str()),
                    pod = names.map_or("", |n| n.pod.as_str()),
                    k8s_namespace = names.map_or("", |n| n.k8s_namespace.as_str()),
                    "unexpected namespace sharing"
                );
                log_detail(f);
            }
            current.insert(key);
        }
        self.previous = current;
        new
    }

    /// Takes the host rules' findings of a sweep between full scans, on `snapshot` (the new
    /// processes only): each not already standing is logged at warn with the process that
    /// made it and returned, and stands until the next full scan says otherwise, so that scan
    /// does not count it again. Cross-workload findings need every member and are left to
    /// the full scan.
    pub fn sweep(
        &mut self,
        findings: &[Finding],
        snapshot: &Snapshot,
        attribution: &Attribution,
    ) -> Vec<Finding> {
        let mut new = Vec::new();
        for f in findings.iter().filter(|f| f.rule != Rule::CrossWorkload) {
            if !self.previous.insert(f.key()) {
                continue;
            }
            new.push(f.clone());
            // The new process of that container in the host's namespace of that type.
            let process = snapshot.processes.values().find(|p| {
                matches!(attribution.of(p.id.pid), Workload::Container(c) if c.id == f.container.id)
                    && (p
                        .namespace(f.ns_type)
                        .is_some_and(|id| snapshot.host.contains(id))
                        || p.thread_namespaces
                            .iter()
                            .any(|t| t.id.ns_type == f.ns_type && snapshot.host.contains(t.id)))
            });
            let names = f.container.names.as_ref();
            tracing::warn!(
                rule = f.rule.as_str(),
                r#type = f.ns_type.as_str(),
                pid = process.map_or(0, |p| p.id.pid),
                comm = process.map_or("", |p| &*p.comm),
                runtime = f.container.runtime.as_str(),
                container_id = %f.container.id,
                container = names.map_or("", |n| n.container.as_str()),
                pod = names.map_or("", |n| n.pod.as_str()),
                k8s_namespace = names.map_or("", |n| n.k8s_namespace.as_str()),
                namespace = snapshot.host.inodes[f.ns_type].unwrap_or(0),
                "unexpected namespace sharing, seen by the sweep between scans"
            );
            log_detail(f);
        }
        new
    }
}

/// A new finding's detail, where its rule has one, on a line of its own after it.
fn log_detail(f: &Finding) {
    if let Some(detail) = &f.detail {
        tracing::info!(
            rule = f.rule.as_str(),
            container_id = %f.container.id,
            detail = %detail,
            "what the finding saw"
        );
    }
}

/// The result of evaluating one snapshot.
#[derive(Debug, Default)]
pub struct Sharing {
    /// Shared, so that the metrics' per-scan view keeps them without copying their labels.
    pub owners: HashMap<NamespaceId, Arc<Ownership>>,
    /// Every container sharing a host namespace, allowed or not.
    pub host: Vec<HostSharing>,
    pub findings: Vec<Finding>,
}

/// Evaluates who owns every namespace and which sharing is unexpected.
pub fn evaluate(snapshot: &Snapshot, attribution: &Attribution, policy: &Policy) -> Sharing {
    let mut out = Sharing::default();
    for ns in snapshot.namespaces.values() {
        let t = ns.id.ns_type;
        let is_host = snapshot.host.contains(ns.id);
        // Payload containers by id, and everything else that is there.
        let mut payload: BTreeMap<&str, &Arc<Container>> = BTreeMap::new();
        let mut plumbing: BTreeMap<&str, &Arc<Container>> = BTreeMap::new();
        let mut pods: BTreeSet<&str> = BTreeSet::new();
        let (mut host, mut kernel) = (false, false);
        for pid in members_or_holders(snapshot, ns) {
            match attribution.of(pid) {
                Workload::Kernel => kernel = true,
                Workload::Host => host = true,
                Workload::Unknown => {}
                Workload::Pod(uid) => {
                    pods.insert(uid);
                }
                Workload::Container(c) => {
                    payload.insert(&c.id, c);
                }
                Workload::Runtime(c) => {
                    plumbing.insert(&c.id, c);
                }
            }
        }
        out.owners.insert(
            ns.id,
            Arc::new(ownership(
                ns.members.len(),
                is_host,
                host,
                kernel,
                &pods,
                &payload,
                &plumbing,
            )),
        );
        // Holding a namespace's fd is not being in it: only members make findings.
        if ns.members.is_empty() {
            continue;
        }

        if is_host {
            for c in payload.values() {
                out.host.push(HostSharing {
                    ns_type: t,
                    container: Arc::clone(c),
                });
                let rule = if t == NsType::Mnt {
                    Some(Rule::HostMountFromContainer)
                } else if policy.host_namespace_types.contains(t) {
                    Some(Rule::HostNamespace)
                } else {
                    None
                };
                if let Some(rule) = rule {
                    push_unless_allowed(&mut out.findings, policy, rule, t, c);
                }
            }
        } else if policy.cross_workload_types.contains(t) {
            let units: BTreeSet<&str> = payload
                .values()
                .map(|c| c.unit())
                .chain(pods.iter().copied())
                .collect();
            if units.len() > 1 {
                for c in payload.values() {
                    push_unless_allowed(&mut out.findings, policy, Rule::CrossWorkload, t, c);
                }
            }
        }
    }
    for &pid in attribution.moved() {
        if let Workload::Container(c) = attribution.of(pid) {
            let rule = Rule::LeftContainerCgroup;
            push_unless_allowed(&mut out.findings, policy, rule, NsType::Cgroup, c);
        }
    }
    out.host.sort();
    out.findings.sort();
    out.findings.dedup();
    out
}

fn push_unless_allowed(
    findings: &mut Vec<Finding>,
    policy: &Policy,
    rule: Rule,
    ns_type: NsType,
    c: &Arc<Container>,
) {
    match policy.allowed_by(rule, ns_type, c) {
        Some(allow) => tracing::debug!(
            rule = rule.as_str(),
            r#type = ns_type.as_str(),
            container_id = %c.id,
            allowed_by = %allow.name,
            "allowed sharing"
        ),
        None => findings.push(Finding {
            rule,
            ns_type,
            container: Arc::clone(c),
            declared: Declaration::Unknown,
            detail: None,
        }),
    }
}

/// The pids that say whose a namespace is: its members; for a namespace with none, the
/// processes holding its fds and sockets (a pin's holder is named by pid and start time, and
/// counts only while that process is the snapshot's). A bind mount names no process: a mount
/// namespace's member reads it, it does not hold it.
fn members_or_holders<'a>(
    snapshot: &'a Snapshot,
    ns: &'a Namespace,
) -> impl Iterator<Item = i32> + 'a {
    let holders = ns.members.is_empty().then(|| {
        let fds = ns.fds().iter().map(|f| f.process);
        let sockets = ns.sockets().iter().map(|s| s.process);
        fds.chain(sockets)
            .filter(|p| {
                snapshot
                    .processes
                    .get(&p.pid)
                    .is_some_and(|now| now.id == *p)
            })
            .map(|p| p.pid)
    });
    ns.members
        .iter()
        .copied()
        .chain(holders.into_iter().flatten())
}

/// The one value all of `values` share, or "".
fn single<'a>(mut values: impl Iterator<Item = &'a str>) -> String {
    let Some(first) = values.next() else {
        return String::new();
    };
    if values.all(|v| v == first) {
        first.to_owned()
    } else {
        String::new()
    }
}

fn ownership(
    members: usize,
    is_host: bool,
    host: bool,
    kernel: bool,
    pods: &BTreeSet<&str>,
    payload: &BTreeMap<&str, &Arc<Container>>,
    plumbing: &BTreeMap<&str, &Arc<Container>>,
) -> Ownership {
    let containers: BTreeMap<&str, &Arc<Container>> = payload
        .iter()
        .chain(plumbing.iter())
        .map(|(k, v)| (*k, *v))
        .collect();
    let units: BTreeSet<&str> = containers
        .values()
        .map(|c| c.unit())
        .chain(pods.iter().copied())
        .collect();
    // Whose the members are, or for a namespace without any, whose its holders are: the
    // labels follow it, the `owner` label says "none" still, as a holder is not a member.
    let whose = if is_host {
        Owner::Host
    } else if units.is_empty() {
        match (host, kernel) {
            (true, _) => Owner::Host,
            (false, true) => Owner::Kernel,
            (false, false) => Owner::Unknown,
        }
    } else if host || kernel || units.len() > 1 {
        Owner::Mixed
    } else if containers.len() > 1 || !pods.is_empty() {
        Owner::Pod
    } else {
        Owner::Container
    };
    let owner = if members == 0 && !is_host {
        Owner::NoProcess
    } else {
        whose
    };
    let labelled = matches!(whose, Owner::Container | Owner::Pod | Owner::Mixed);
    let cs = || containers.values().map(|c| c.as_ref());
    let names = |f: fn(&crate::attribution::ContainerNames) -> &str| {
        if labelled && cs().all(|c| c.names.is_some()) {
            single(cs().filter_map(|c| c.names.as_ref().map(f)))
        } else {
            String::new()
        }
    };
    Ownership {
        owner,
        runtime: if labelled {
            single(cs().map(|c| c.runtime.as_str()))
        } else {
            String::new()
        },
        pod_uid: if labelled && cs().all(|c| c.pod_uid.is_some()) {
            single(
                cs().filter_map(|c| c.pod_uid.as_deref())
                    .chain(pods.iter().copied()),
            )
        } else {
            String::new()
        },
        pod: names(|n| &n.pod),
        k8s_namespace: names(|n| &n.k8s_namespace),
        container: names(|n| &n.container),
        container_id: if whose == Owner::Container {
            single(cs().map(|c| c.id.as_str()))
        } else {
            String::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::model::inode;
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    use super::*;
    use crate::attribution::ContainerNames;
    use crate::cgroup::Runtime;
    use crate::model::{HostNamespaces, HostSource, PerType, Process, ScanTime};
    use crate::policy::{RawAllow, RawPolicy};

    const HOST: u64 = 1;

    fn c(id: char, pod: &str, ns: &str) -> Arc<Container> {
        let id: String = std::iter::repeat_n(id, 64).collect();
        Arc::new(Container {
            runtime: Runtime::Containerd,
            pod_uid: Some(format!("uid-{pod}")),
            names: Some(ContainerNames {
                pod: pod.into(),
                k8s_namespace: ns.into(),
                container: format!("ctr-{}", &id[..1]),
                container_id: id.clone(),
            }),
            id,
        })
    }

    /// A snapshot where each process has the given net and mnt inodes (others host).
    fn world(ps: &[(i32, u64, u64, Workload)]) -> (Snapshot, Attribution) {
        let mut processes = BTreeMap::new();
        let mut by_pid = HashMap::new();
        for (pid, net, mnt, w) in ps {
            let mut namespaces = PerType::splat(inode(HOST));
            namespaces[NsType::Net] = inode(*net);
            namespaces[NsType::Mnt] = inode(*mnt);
            processes.insert(*pid, Process::fixture(*pid, namespaces));
            by_pid.insert(*pid, w.clone());
        }
        let host = HostNamespaces {
            source: HostSource::Init,
            inodes: PerType::splat(Some(HOST)),
        };
        (
            Snapshot::from_processes(
                SystemTime::UNIX_EPOCH,
                ScanTime::fixture(100),
                processes,
                host,
            ),
            Attribution::from_map(by_pid),
        )
    }

    fn found(s: &Sharing) -> Vec<(&'static str, NsType, String)> {
        s.findings
            .iter()
            .map(|f| {
                (
                    f.rule.as_str(),
                    f.ns_type,
                    f.container.names.as_ref().unwrap().pod.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn pod_containers_sharing_net_is_expected_and_owned_by_the_pod() {
        let (a, b) = (c('a', "web", "default"), c('b', "web", "default"));
        let (snap, attr) = world(&[
            (1, HOST, HOST, Workload::Host),
            (10, 100, 200, Workload::Container(a)),
            (11, 100, 201, Workload::Container(b)),
        ]);
        let s = evaluate(&snap, &attr, &Policy::default());
        // Their pid, ipc, uts and cgroup are the host's in this toy world: host findings only.
        assert!(
            found(&s).iter().all(|(r, _, _)| *r == "host_namespace"),
            "{:?}",
            found(&s)
        );
        let net = &s.owners[&NamespaceId {
            ns_type: NsType::Net,
            inode: 100,
        }];
        assert_eq!(net.owner, Owner::Pod);
        assert_eq!((net.pod.as_str(), net.pod_uid.as_str()), ("web", "uid-web"));
        assert_eq!(
            (net.container.as_str(), net.container_id.as_str()),
            ("", "")
        );
        let mnt = &s.owners[&NamespaceId {
            ns_type: NsType::Mnt,
            inode: 200,
        }];
        assert_eq!(mnt.owner, Owner::Container);
        assert_eq!(mnt.container, "ctr-a");
        assert_eq!(mnt.container_id, "a".repeat(64));
    }

    #[test]
    fn host_network_and_host_mount_and_cross_pod() {
        let host_net = c('a', "hostnet", "default");
        let nsenter = c('b', "debug", "default");
        let (p, q) = (c('c', "p", "team"), c('d', "q", "team"));
        let (snap, attr) = world(&[
            (1, HOST, HOST, Workload::Host),
            (10, HOST, 200, Workload::Container(host_net)),
            (20, 300, HOST, Workload::Container(nsenter)),
            (30, 400, 201, Workload::Container(p)),
            (31, 400, 202, Workload::Container(q)),
        ]);
        let policy = Policy::try_from(RawPolicy {
            // Only net is forbidden, to keep the expectations short.
            host_namespace_types: Some(vec!["net".into()]),
            ..RawPolicy::default()
        })
        .unwrap();
        let s = evaluate(&snap, &attr, &policy);
        assert_eq!(
            found(&s),
            vec![
                ("host_namespace", NsType::Net, "hostnet".into()),
                ("cross_workload", NsType::Net, "p".into()),
                ("cross_workload", NsType::Net, "q".into()),
                ("host_mount_from_container", NsType::Mnt, "debug".into()),
            ]
        );
        // Host sharing lists every container in a host namespace, allowed or not: pid, ipc, …
        // are shared by all four here.
        assert!(s.host.iter().any(|h| h.ns_type == NsType::Pid));
        let net400 = &s.owners[&NamespaceId {
            ns_type: NsType::Net,
            inode: 400,
        }];
        assert_eq!(net400.owner, Owner::Mixed);
        assert_eq!(net400.pod, "");
        assert_eq!(net400.k8s_namespace, "team", "single-valued labels stay");
    }

    #[test]
    fn allowed_sharing_is_exported_but_not_a_finding() {
        let proxy = c('a', "kube-proxy-1", "kube-system");
        let (snap, attr) = world(&[
            (1, HOST, HOST, Workload::Host),
            (10, HOST, 200, Workload::Container(proxy)),
        ]);
        let policy = Policy::try_from(RawPolicy {
            allow: vec![RawAllow {
                k8s_namespace: Some("kube-system".into()),
                ..RawAllow::default()
            }],
            ..RawPolicy::default()
        })
        .unwrap();
        let s = evaluate(&snap, &attr, &policy);
        assert!(s.findings.is_empty(), "{:?}", found(&s));
        assert!(s.host.iter().any(|h| h.ns_type == NsType::Net));
    }

    /// A namespace with no member is its holders': a container's fd or socket gives it that
    /// container's labels (and counts it against the container), with `owner="none"` still;
    /// holders of two pods leave only what they agree on; a bind mount, a host process's fd
    /// or a pid reused since the fd was found give none.
    #[test]
    fn a_namespace_without_members_takes_its_holders_labels() {
        use crate::model::{FdPin, MountPin, ProcessId, SocketPin};
        let (a, b) = (c('a', "web", "default"), c('b', "db", "default"));
        let (mut snap, attr) = world(&[
            (1, HOST, HOST, Workload::Host),
            (10, 100, 200, Workload::Container(a)),
            (20, 300, 201, Workload::Container(b)),
        ]);
        let held = |pid: i32| ProcessId {
            pid,
            start_ticks: 1,
        };
        let uts = |inode| NamespaceId {
            ns_type: NsType::Uts,
            inode,
        };
        let mut pin = |inode: u64, fds: &[ProcessId], socket: Option<ProcessId>, mount: bool| {
            let mut ns = Namespace::new(uts(inode));
            let pins = ns.pins_mut();
            pins.fds = fds
                .iter()
                .map(|&process| FdPin { process, fd: 3 })
                .collect();
            pins.sockets = socket
                .map(|process| SocketPin {
                    process,
                    fd: 4,
                    socket: 9,
                })
                .into_iter()
                .collect();
            if mount {
                pins.mounts.push(MountPin {
                    mnt_ns: HOST,
                    path: "/run/netns/x".into(),
                    via_pid: 10,
                });
            }
            snap.namespaces.insert(ns.id, ns);
        };
        pin(500, &[held(10)], None, false);
        pin(501, &[], Some(held(10)), false);
        pin(502, &[held(10), held(20)], None, false);
        pin(503, &[], None, true);
        pin(504, &[held(1)], None, false);
        // Pid 10 of another start time: the fd was the old process's.
        pin(
            505,
            &[ProcessId {
                pid: 10,
                start_ticks: 7,
            }],
            None,
            false,
        );
        let s = evaluate(&snap, &attr, &Policy::default());
        let of = |inode| {
            let o = &s.owners[&uts(inode)];
            assert_eq!(o.owner, Owner::NoProcess, "{inode}");
            (
                o.pod.as_str(),
                o.container.as_str(),
                o.container_id.as_str(),
            )
        };
        let a_id = "a".repeat(64);
        assert_eq!(of(500), ("web", "ctr-a", a_id.as_str()));
        assert_eq!(of(501), ("web", "ctr-a", a_id.as_str()));
        assert_eq!(of(502), ("", "", ""));
        assert_eq!(s.owners[&uts(502)].k8s_namespace, "default");
        for inode in [503, 504, 505] {
            assert_eq!(of(inode), ("", "", ""), "{inode}");
            assert_eq!(s.owners[&uts(inode)].runtime, "", "{inode}");
        }
        // Holding is not sharing: no finding for what two pods hold.
        assert!(
            s.findings.iter().all(|f| f.rule != Rule::CrossWorkload),
            "{:?}",
            found(&s)
        );
    }

    #[test]
    fn runtime_plumbing_and_kernel_threads_are_not_findings() {
        let ctr = c('a', "web", "default");
        let (snap, attr) = world(&[
            (1, HOST, HOST, Workload::Host),
            (2, HOST, HOST, Workload::Kernel),
            (9, HOST, HOST, Workload::Runtime(ctr.clone())),
            (10, 100, 200, Workload::Container(ctr)),
        ]);
        let policy = Policy::try_from(RawPolicy {
            host_namespace_types: Some(vec![]),
            ..RawPolicy::default()
        })
        .unwrap();
        let s = evaluate(&snap, &attr, &policy);
        assert!(s.findings.is_empty(), "{:?}", found(&s));
        let net = &s.owners[&NamespaceId {
            ns_type: NsType::Net,
            inode: 100,
        }];
        assert_eq!(net.owner, Owner::Container);
        let host_net = &s.owners[&NamespaceId {
            ns_type: NsType::Net,
            inode: HOST,
        }];
        assert_eq!(host_net.owner, Owner::Host);
    }
}
