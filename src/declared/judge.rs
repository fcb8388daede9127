//! Declared against observed: each container's processes (and, per `--scan.threads`, their
//! threads) against the namespaces its spec gave it.
//!
//! Per container and type the spec gives one expected namespace:
//! - `new`: the namespace of the container's first process (its init: the oldest member by
//!   start time, which no later process can be), unless that is the host's;
//! - `joined`: the namespace at the path, resolved to an inode: `/proc/<pid>/ns/<type>` from
//!   the scan itself, trusted only where that process is older than the container (a pid
//!   reused since is not what the runtime joined), any other path by `stat` on nsfs;
//! - `host`: the host's namespace (the runtime's, which on a node is the host's).
//!
//! A process elsewhere is **`undeclared_namespace`** when it is in the host's namespace or in
//! one that holds any other workload's process; a namespace it made itself (a sandbox inside
//! the container, `unshare` by its payload) is no one else's and no finding. A `joined` path
//! that cannot be resolved (the process it named is gone) expects "not the host's".
//!
//! User namespaces: a spec with `uidMappings` whose member is in the host's user namespace,
//! or one without a user namespace whose first process is not in the host's, is
//! **`user_namespace_not_applied`**: the runtime did not do what it was asked.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::spec::{Declared, Spec};
use crate::attribution::{Attribution, Container, Workload};
use crate::model::{NamespaceId, NsType, PerType, Process, Snapshot};
use crate::policy::Rule;
use crate::sharing::{Declaration, Finding};

/// The namespace a spec gives one container of one type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expected {
    /// This inode.
    Inode(u64),
    /// A new namespace whose first process is in the host's: nothing is expected, and the
    /// host's is not it.
    NotHost,
    /// A joined path that could not be resolved: anything but the host's (unless the path
    /// was the host's, which cannot then be told).
    #[default]
    Unresolved,
}

/// The judgement of one scan.
#[derive(Debug, Default)]
pub struct Judgement {
    pub findings: Vec<Finding>,
    /// Per container with a spec: what each type was declared, and the namespace expected.
    pub expected: HashMap<String, PerType<(Declared, Expected)>>,
}

impl Judgement {
    /// Whether the spec of `f`'s container declared the sharing that `f` reports:
    /// `unknown` where no spec was found.
    pub fn declaration(&self, f: &Finding, snapshot: &Snapshot) -> Declaration {
        let Some(expected) = self.expected.get(&f.container.id) else {
            return Declaration::Unknown;
        };
        let (declared, expected) = &expected[f.ns_type];
        let host = snapshot.host.inodes[f.ns_type];
        let yes = match f.rule {
            Rule::HostNamespace | Rule::HostMountFromContainer => {
                host.is_some_and(|h| *expected == Expected::Inode(h))
            }
            Rule::CrossWorkload => {
                matches!(declared, Declared::Joined(_))
                    && matches!(expected, Expected::Inode(i) if Some(*i) != host)
            }
            // No spec declares a cgroup of its own making, nor a move out of its cgroup.
            Rule::UndeclaredNamespace
            | Rule::UserNamespaceNotApplied
            | Rule::LeftContainerCgroup
            | Rule::PrivilegeExceedsDeclared => false,
        };
        if yes {
            Declaration::True
        } else {
            Declaration::False
        }
    }
}

/// `/proc/<pid>/ns/<name>` as (pid, type).
pub(super) fn proc_ns_path(path: &Path) -> Option<(i32, NsType)> {
    let rest = path.to_str()?.strip_prefix("/proc/")?;
    let (pid, name) = rest.split_once("/ns/")?;
    Some((pid.parse().ok()?, name.parse().ok()?))
}

/// Each member process's namespaces of `t`: the process's own, and its threads' that differ.
fn observed(p: &Process, t: NsType) -> impl Iterator<Item = u64> + '_ {
    p.namespace(t).map(|id| id.inode).into_iter().chain(
        p.thread_namespaces
            .iter()
            .filter(move |th| th.id.ns_type == t)
            .map(|th| th.id.inode),
    )
}

/// Judges every container with a spec. `resolve` gives the namespace inode of a path that is
/// not `/proc/<pid>/ns/…` (a bind mount on nsfs), or `None`.
pub fn judge(
    snapshot: &Snapshot,
    attribution: &Attribution,
    specs: &HashMap<String, Arc<Spec>>,
    resolve: &dyn Fn(&Path) -> Option<u64>,
) -> Judgement {
    let mut members: HashMap<&str, (&Arc<Container>, Vec<&Process>)> = HashMap::new();
    for p in snapshot.processes.values() {
        if let Workload::Container(c) = attribution.of(p.id.pid) {
            members.entry(&c.id).or_insert((c, Vec::new())).1.push(p);
        }
    }
    let mut out = Judgement::default();
    let mut found: BTreeSet<Finding> = BTreeSet::new();
    for (id, (container, procs)) in &members {
        let Some(spec) = specs.get(*id) else {
            continue;
        };
        let Some(init) = procs.iter().min_by_key(|p| (p.id.start_ticks, p.id.pid)) else {
            continue;
        };
        let mut expected = PerType::<(Declared, Expected)>::default();
        for t in NsType::ALL {
            let host = snapshot.host.inodes[t];
            let e = match &spec.namespaces[t] {
                Declared::New => match init.namespace(t) {
                    Some(own) if Some(own.inode) != host => Expected::Inode(own.inode),
                    _ => Expected::NotHost,
                },
                Declared::Joined(path) => {
                    let inode = match proc_ns_path(path) {
                        Some((pid, pt)) if pt == t => snapshot
                            .processes
                            .get(&pid)
                            .filter(|q| q.id.start_ticks <= init.id.start_ticks)
                            .and_then(|q| q.namespace(t))
                            .map(|id| id.inode),
                        Some(_) => None,
                        None => resolve(path),
                    };
                    inode.map_or(Expected::Unresolved, Expected::Inode)
                }
                Declared::Host => host.map_or(Expected::Unresolved, Expected::Inode),
            };
            expected[t] = (spec.namespaces[t].clone(), e);
        }
        let finding = |rule| Finding {
            rule,
            ns_type: NsType::User,
            container: Arc::clone(container),
            declared: Declaration::False,
            detail: None,
        };
        let host_user = snapshot.host.inodes[NsType::User];
        let user_mapped = spec.uid_mappings || spec.namespaces[NsType::User] == Declared::New;
        if user_mapped {
            if procs
                .iter()
                .any(|p| observed(p, NsType::User).any(|u| Some(u) == host_user))
            {
                found.insert(finding(Rule::UserNamespaceNotApplied));
            }
        } else if spec.namespaces[NsType::User] == Declared::Host
            && host_user.is_some()
            && init.namespace(NsType::User).map(|u| u.inode) != host_user
        {
            found.insert(finding(Rule::UserNamespaceNotApplied));
        }
        for t in NsType::ALL {
            // The user namespace of a spec that maps ids has its own rule above.
            if t == NsType::User && user_mapped {
                continue;
            }
            let host = snapshot.host.inodes[t];
            let e = expected[t].1;
            for p in procs {
                for n in observed(p, t) {
                    let fine = match e {
                        Expected::Inode(want) => n == want,
                        Expected::NotHost | Expected::Unresolved => Some(n) != host,
                    };
                    if fine {
                        continue;
                    }
                    let id = NamespaceId {
                        ns_type: t,
                        inode: n,
                    };
                    let hosts = Some(n) == host;
                    let others = || {
                        snapshot.namespaces.get(&id).is_some_and(|ns| {
                            ns.members.iter().any(|&pid| match attribution.of(pid) {
                                Workload::Container(c) | Workload::Runtime(c) => {
                                    c.id != container.id
                                }
                                Workload::Unknown => false,
                                Workload::Host | Workload::Kernel | Workload::Pod(_) => true,
                            })
                        })
                    };
                    if hosts || others() {
                        tracing::debug!(
                            container_id = %container.id,
                            pid = p.id.pid,
                            r#type = t.as_str(),
                            namespace = n,
                            declared = spec.namespaces[t].as_str(),
                            "process in a namespace its spec did not give it"
                        );
                        found.insert(Finding {
                            rule: Rule::UndeclaredNamespace,
                            ns_type: t,
                            container: Arc::clone(container),
                            declared: Declaration::False,
                            detail: None,
                        });
                    }
                }
            }
        }
        out.expected.insert((*id).to_owned(), expected);
    }
    out.findings = found.into_iter().collect();
    out
}

#[cfg(test)]
mod tests {
    use crate::model::inode;
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::SystemTime;

    use super::*;
    use crate::cgroup::Runtime;
    use crate::model::{HostNamespaces, HostSource, ProcessId, ScanTime, ThreadNamespace};

    const HOST: u64 = 1;

    fn c(id: char) -> Arc<Container> {
        Arc::new(Container {
            runtime: Runtime::Containerd,
            id: std::iter::repeat_n(id, 64).collect(),
            pod_uid: None,
            names: None,
        })
    }

    /// A process: pid, start ticks, (type, inode) where not the host's, workload.
    struct P(i32, u64, Vec<(NsType, u64)>, Workload);

    fn world(ps: Vec<P>) -> (Snapshot, Attribution) {
        let mut processes = BTreeMap::new();
        let mut by_pid = HashMap::new();
        for P(pid, start, ns, w) in ps {
            let mut namespaces = PerType::splat(inode(HOST));
            for (t, i) in ns {
                namespaces[t] = inode(i);
            }
            processes.insert(
                pid,
                Process {
                    id: ProcessId {
                        pid,
                        start_ticks: start,
                    },
                    ..Process::fixture(pid, namespaces)
                },
            );
            by_pid.insert(pid, w);
        }
        let host = HostNamespaces {
            source: HostSource::Init,
            inodes: PerType::splat(Some(HOST)),
        };
        (
            Snapshot::from_processes(
                SystemTime::UNIX_EPOCH,
                ScanTime::fixture(1000),
                processes,
                host,
            ),
            Attribution::from_map(by_pid),
        )
    }

    fn spec(entries: &[(NsType, Declared)], uid_mappings: bool) -> Arc<Spec> {
        let mut namespaces = PerType::<Declared>::default();
        for (t, d) in entries {
            namespaces[*t] = d.clone();
        }
        Arc::new(Spec {
            namespaces,
            uid_mappings,
            annotations: BTreeMap::new(),
            privilege: Default::default(),
        })
    }

    fn found(j: &Judgement) -> Vec<(&'static str, NsType, char)> {
        j.findings
            .iter()
            .map(|f| {
                (
                    f.rule.as_str(),
                    f.ns_type,
                    f.container.id.chars().next().unwrap(),
                )
            })
            .collect()
    }

    fn no_fs(_: &Path) -> Option<u64> {
        None
    }

    /// A pod: the sandbox makes net, pid, ipc, uts and mnt; the app joins its net, pid, ipc
    /// and uts by `/proc/<pause>/ns/…` and makes its own mnt. Nothing is undeclared; then the
    /// app's second process enters the host's mnt and another pod's net.
    #[test]
    fn a_pod_as_declared_and_then_not() {
        use Declared::*;
        use NsType::*;
        let (pause, app, other) = (c('a'), c('b'), c('c'));
        let joined = |t: &str| Joined(PathBuf::from(format!("/proc/10/ns/{t}")));
        let specs = HashMap::from([
            (
                pause.id.clone(),
                spec(
                    &[(Net, New), (Pid, New), (Ipc, New), (Uts, New), (Mnt, New)],
                    false,
                ),
            ),
            (
                app.id.clone(),
                spec(
                    &[
                        (Net, joined("net")),
                        (Pid, joined("pid")),
                        (Ipc, joined("ipc")),
                        (Uts, joined("uts")),
                        (Mnt, New),
                    ],
                    false,
                ),
            ),
            (other.id.clone(), spec(&[(Net, New), (Mnt, New)], false)),
        ]);
        let pod = vec![(Net, 100), (Pid, 101), (Ipc, 102), (Uts, 103)];
        let with = |extra: Vec<(NsType, u64)>| {
            let mut v = pod.clone();
            v.extend(extra);
            v
        };
        let calm = vec![
            P(1, 1, vec![], Workload::Host),
            P(
                10,
                50,
                with(vec![(Mnt, 200)]),
                Workload::Container(pause.clone()),
            ),
            P(
                20,
                60,
                with(vec![(Mnt, 201)]),
                Workload::Container(app.clone()),
            ),
            P(
                21,
                70,
                with(vec![(Mnt, 201)]),
                Workload::Container(app.clone()),
            ),
            P(
                30,
                55,
                vec![(Net, 300), (Mnt, 301)],
                Workload::Container(other.clone()),
            ),
        ];
        let (snap, attr) = world(calm);
        let j = judge(&snap, &attr, &specs, &no_fs);
        assert_eq!(found(&j), vec![]);
        assert_eq!(j.expected[&app.id][Net].1, Expected::Inode(100));
        assert_eq!(j.expected[&app.id][Cgroup], (Host, Expected::Inode(HOST)));

        let (snap, attr) = world(vec![
            P(1, 1, vec![], Workload::Host),
            P(
                10,
                50,
                with(vec![(Mnt, 200)]),
                Workload::Container(pause.clone()),
            ),
            P(
                20,
                60,
                with(vec![(Mnt, 201)]),
                Workload::Container(app.clone()),
            ),
            // nsenter into the host's mnt, and setns into the other pod's net.
            P(
                21,
                70,
                vec![(Net, 300), (Pid, 101), (Ipc, 102), (Uts, 103)],
                Workload::Container(app.clone()),
            ),
            P(
                30,
                55,
                vec![(Net, 300), (Mnt, 301)],
                Workload::Container(other.clone()),
            ),
        ]);
        let j = judge(&snap, &attr, &specs, &no_fs);
        assert_eq!(
            found(&j),
            vec![
                ("undeclared_namespace", Mnt, 'b'),
                ("undeclared_namespace", Net, 'b'),
            ]
        );
        assert!(j.findings.iter().all(|f| f.declared == Declaration::False));
    }

    /// A namespace the payload made itself is no one else's: no finding. A thread in the
    /// host's net is.
    #[test]
    fn own_nested_namespaces_are_fine_and_threads_count() {
        use NsType::*;
        let a = c('a');
        let specs = HashMap::from([(a.id.clone(), spec(&[(Net, Declared::New)], false))]);
        let (mut snap, attr) = world(vec![
            P(1, 1, vec![], Workload::Host),
            P(10, 50, vec![(Net, 100)], Workload::Container(a.clone())),
            // A sandbox inside the container: its own net and mnt.
            P(
                11,
                60,
                vec![(Net, 110), (Mnt, 111)],
                Workload::Container(a.clone()),
            ),
        ]);
        assert_eq!(found(&judge(&snap, &attr, &specs, &no_fs)), vec![]);
        snap.processes
            .get_mut(&10)
            .unwrap()
            .thread_namespaces
            .push(ThreadNamespace {
                tid: 12,
                id: NamespaceId {
                    ns_type: Net,
                    inode: HOST,
                },
            });
        assert_eq!(
            found(&judge(&snap, &attr, &specs, &no_fs)),
            vec![("undeclared_namespace", Net, 'a')]
        );
    }

    /// The 8 types × {new, joined, host}, each as declared: no finding; and each moved to the
    /// host's (for new and joined) or to another's (for host): a finding of that type.
    #[test]
    fn every_type_new_joined_and_host() {
        for t in NsType::ALL {
            for how in ["new", "joined", "host"] {
                let (a, b) = (c('a'), c('b'));
                let declared = match how {
                    "new" => Declared::New,
                    "joined" => Declared::Joined(format!("/proc/10/ns/{t}").into()),
                    _ => Declared::Host,
                };
                let specs = HashMap::from([
                    (a.id.clone(), spec(&[(t, Declared::New)], false)),
                    (b.id.clone(), spec(&[(t, declared.clone())], false)),
                ]);
                let b_ns = match how {
                    "new" => 200,
                    "joined" => 100,
                    _ => HOST,
                };
                let calm = |moved: Option<u64>| {
                    world(vec![
                        P(1, 1, vec![], Workload::Host),
                        P(10, 50, vec![(t, 100)], Workload::Container(a.clone())),
                        P(20, 60, vec![(t, b_ns)], Workload::Container(b.clone())),
                        P(
                            21,
                            70,
                            vec![(t, moved.unwrap_or(b_ns))],
                            Workload::Container(b.clone()),
                        ),
                    ])
                };
                let (snap, attr) = calm(None);
                let j = judge(&snap, &attr, &specs, &no_fs);
                assert_eq!(found(&j), vec![], "{t} {how}");
                let elsewhere = if how == "host" { 100 } else { HOST };
                let (snap, attr) = calm(Some(elsewhere));
                let j = judge(&snap, &attr, &specs, &no_fs);
                // A new user namespace left for the host's has its own rule.
                let rule = if t == NsType::User && how == "new" {
                    "user_namespace_not_applied"
                } else {
                    "undeclared_namespace"
                };
                assert_eq!(
                    found(&j),
                    vec![(rule, t, 'b')],
                    "{t} {how} moved to {elsewhere}"
                );
            }
        }
    }

    #[test]
    fn user_namespace_not_applied_both_ways() {
        use NsType::*;
        let a = c('a');
        let mapped = HashMap::from([(a.id.clone(), spec(&[(User, Declared::New)], true))]);
        let (snap, attr) = world(vec![
            P(1, 1, vec![], Workload::Host),
            P(10, 50, vec![(User, 100)], Workload::Container(a.clone())),
            P(11, 60, vec![], Workload::Container(a.clone())),
        ]);
        assert_eq!(
            found(&judge(&snap, &attr, &mapped, &no_fs)),
            vec![("user_namespace_not_applied", User, 'a')]
        );
        let (snap, attr) = world(vec![
            P(1, 1, vec![], Workload::Host),
            P(10, 50, vec![(User, 100)], Workload::Container(a.clone())),
        ]);
        assert_eq!(found(&judge(&snap, &attr, &mapped, &no_fs)), vec![]);
        let unmapped = HashMap::from([(a.id.clone(), spec(&[], false))]);
        assert_eq!(
            found(&judge(&snap, &attr, &unmapped, &no_fs)),
            vec![("user_namespace_not_applied", User, 'a')]
        );
    }

    /// A pid reused since the runtime joined it is not what it joined; a bind-mounted path
    /// is resolved by `resolve`; an unresolved one expects "not the host's".
    #[test]
    fn joined_paths() {
        use NsType::*;
        let (a, b) = (c('a'), c('b'));
        let specs = HashMap::from([
            (
                a.id.clone(),
                spec(&[(Net, Declared::Joined("/proc/10/ns/net".into()))], false),
            ),
            (
                b.id.clone(),
                spec(&[(Net, Declared::Joined("/run/netns/cni-1".into()))], false),
            ),
        ]);
        // Pid 10 started after the container: a reused pid.
        let (snap, attr) = world(vec![
            P(1, 1, vec![], Workload::Host),
            P(10, 90, vec![(Net, 500)], Workload::Host),
            P(20, 60, vec![(Net, 100)], Workload::Container(a.clone())),
            P(30, 60, vec![(Net, 300)], Workload::Container(b.clone())),
        ]);
        let cni = |p: &Path| (p == Path::new("/run/netns/cni-1")).then_some(300);
        let j = judge(&snap, &attr, &specs, &cni);
        assert_eq!(j.expected[&a.id][Net].1, Expected::Unresolved);
        assert_eq!(j.expected[&b.id][Net].1, Expected::Inode(300));
        assert_eq!(found(&j), vec![]);
    }

    /// A `hostNetwork` pod as containerd 1.6's CRI writes it (specs cut from `tests/it/cri.rs`'s
    /// pods): the sandbox has no net or uts entry, and the app joins the sandbox's by
    /// `/proc/<pause pid>/ns/…`, which are the host's. Declared: no finding, the expected
    /// namespace is the host's, and the host findings are `declared="true"`; the same app in
    /// the host's ipc, which it joined from the sandbox's own, is undeclared.
    #[test]
    fn a_cri_host_network_app_joins_the_host_through_its_sandbox() {
        use NsType::*;
        let (pause, app) = (c('a'), c('b'));
        let parse =
            |json: &str| Arc::new(super::super::spec::parse_oci_config(json.as_bytes()).unwrap());
        let specs = HashMap::from([
            (
                pause.id.clone(),
                parse(
                    r#"{"annotations":{"io.kubernetes.cri.container-type":"sandbox"},
                      "linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"mount"}]}}"#,
                ),
            ),
            (
                app.id.clone(),
                parse(
                    r#"{"annotations":{"io.kubernetes.cri.container-type":"container"},
                      "linux":{"namespaces":[{"type":"pid"},
                        {"type":"ipc","path":"/proc/10/ns/ipc"},
                        {"type":"uts","path":"/proc/10/ns/uts"},{"type":"mount"},
                        {"type":"network","path":"/proc/10/ns/net"}]}}"#,
                ),
            ),
        ]);
        let calm = |app_ipc: u64| {
            world(vec![
                P(1, 1, vec![], Workload::Host),
                P(
                    10,
                    50,
                    vec![(Pid, 100), (Ipc, 101), (Mnt, 102)],
                    Workload::Container(pause.clone()),
                ),
                P(
                    20,
                    60,
                    vec![(Pid, 200), (Ipc, app_ipc), (Mnt, 202)],
                    Workload::Container(app.clone()),
                ),
            ])
        };
        let (snap, attr) = calm(101);
        let j = judge(&snap, &attr, &specs, &no_fs);
        assert_eq!(found(&j), vec![]);
        for t in [Net, Uts] {
            assert_eq!(j.expected[&app.id][t].1, Expected::Inode(HOST), "{t}");
            assert_eq!(
                j.expected[&pause.id][t],
                (Declared::Host, Expected::Inode(HOST))
            );
            let host = Finding {
                rule: Rule::HostNamespace,
                ns_type: t,
                container: Arc::clone(&app),
                declared: Declaration::Unknown,
                detail: None,
            };
            assert_eq!(j.declaration(&host, &snap), Declaration::True, "{t}");
        }
        let (snap, attr) = calm(HOST);
        let j = judge(&snap, &attr, &specs, &no_fs);
        assert_eq!(found(&j), vec![("undeclared_namespace", Ipc, 'b')]);
    }

    /// Existing findings say whether the spec declared them.
    #[test]
    fn declaration_of_other_rules() {
        use NsType::*;
        let (a, b) = (c('a'), c('b'));
        let specs = HashMap::from([(a.id.clone(), spec(&[(Mnt, Declared::New)], false))]);
        let (snap, attr) = world(vec![
            P(1, 1, vec![], Workload::Host),
            P(10, 50, vec![(Mnt, 100)], Workload::Container(a.clone())),
            P(20, 50, vec![(Mnt, 200)], Workload::Container(b.clone())),
        ]);
        let j = judge(&snap, &attr, &specs, &no_fs);
        let f = |rule, ns_type, container: &Arc<Container>| Finding {
            rule,
            ns_type,
            container: Arc::clone(container),
            declared: Declaration::Unknown,
            detail: None,
        };
        assert_eq!(
            j.declaration(&f(Rule::HostNamespace, Net, &a), &snap),
            Declaration::True
        );
        assert_eq!(
            j.declaration(&f(Rule::HostMountFromContainer, Mnt, &a), &snap),
            Declaration::False
        );
        assert_eq!(
            j.declaration(&f(Rule::HostNamespace, Net, &b), &snap),
            Declaration::Unknown
        );
    }
}
