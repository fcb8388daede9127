//! One container's observed privilege: its first process's, and that of each of its processes
//! that differs from it, as read in one scan or sweep; and what follows from them (the level
//! met, the capabilities effective in the host's user namespace, the excess over the spec, or,
//! without a spec, over its own first process).

use std::sync::Arc;

use crate::attribution::Container;

use super::exceeds::{Excess, UserNamespace, exceeds};
use super::level::{Assessment, HostNamespaces, Observed, observed_level};
use super::{CAPABILITY_NAMES, CapSet, DeclaredPrivilege, Level, ProcessPrivilege, Seccomp};

/// The capabilities that take a container out of its namespaces where they are effective in
/// the host's user namespace: the `host_capabilities` label names only these, so that it has
/// few values.
pub const ESCAPE_CAPABILITIES: [&str; 18] = [
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "DAC_READ_SEARCH",
    "DAC_OVERRIDE",
    "NET_ADMIN",
    "BPF",
    "PERFMON",
    "SYS_BOOT",
    "MKNOD",
    "SETFCAP",
    "NET_RAW",
    "SYS_TIME",
    "SYSLOG",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "CHECKPOINT_RESTORE",
];

/// [`ESCAPE_CAPABILITIES`] as a set.
pub fn escape_capabilities() -> CapSet {
    CapSet(
        ESCAPE_CAPABILITIES
            .iter()
            .filter_map(|n| super::capability_number(n))
            .fold(0, |set, n| set | 1 << n),
    )
}

/// One process of a container as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSeen {
    pub pid: i32,
    pub privilege: ProcessPrivilege,
    pub user_namespace: UserNamespace,
}

/// What a container's processes can do, as one scan read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPrivilege {
    pub container: Arc<Container>,
    /// Its first process (the earliest started): the runtime set it up as the spec says.
    pub first: ProcessSeen,
    /// Those of its other processes that differ from the first and were read.
    pub others: Vec<ProcessSeen>,
    /// Whether the first process's `/proc` is masked; `None`: not known.
    pub proc_masked: Option<bool>,
    /// Which of the host's namespaces the Pod Security Standards name it shares.
    pub host_namespaces: HostNamespaces,
}

impl ContainerPrivilege {
    /// Every process read, the first first.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessSeen> {
        std::iter::once(&self.first).chain(&self.others)
    }

    /// The level the container meets: the most open of its processes' levels, each judged
    /// with `node_bounding` as the node's whole capability set.
    pub fn assessment(&self, node_bounding: Option<CapSet>) -> Assessment {
        let assess = |p: &ProcessSeen| {
            observed_level(&Observed {
                process: &p.privilege,
                host_user_namespace: p.user_namespace == UserNamespace::Host,
                host_namespaces: self.host_namespaces,
                proc_masked: self.proc_masked,
                node_bounding,
            })
        };
        self.others
            .iter()
            .fold(assess(&self.first), |all, p| all.merge(assess(p)))
    }

    /// Whether any process is in the host's user namespace.
    pub fn host_user(&self) -> bool {
        self.processes()
            .any(|p| p.user_namespace == UserNamespace::Host)
    }

    /// Whether the container's uid 0 is the host's uid 0: in the host's user namespace, or
    /// one that maps its 0 to the host's.
    pub fn root_is_host_root(&self) -> bool {
        self.processes().any(|p| {
            p.user_namespace == UserNamespace::Host || p.privilege.uid_map.to_host(0) == Some(0)
        })
    }

    /// The capabilities effective in the host's user namespace, of any process: a capability
    /// held in a user namespace of the container's own is not one over the host.
    pub fn host_capabilities(&self) -> CapSet {
        self.processes()
            .filter(|p| p.user_namespace == UserNamespace::Host)
            .fold(CapSet(0), |all, p| CapSet(all.0 | p.privilege.effective.0))
    }

    /// The `host_capabilities` label: the escape-relevant host capabilities, comma-separated
    /// in the kernel's order, without `CAP_`.
    pub fn host_capabilities_label(&self) -> String {
        let escape = escape_capabilities();
        let names: Vec<&str> = self
            .host_capabilities()
            .numbers()
            .filter(|&n| escape.has(n))
            .filter_map(|n| CAPABILITY_NAMES.get(usize::from(n)).copied())
            .collect();
        names.join(",")
    }

    /// How each process exceeds `declared`, the spec's; without a spec, how each process
    /// other than the first exceeds the first (what the runtime set up), since a later process
    /// holding more than its container's first gained it after the start (a setuid exec, a
    /// process entered from the host). Only processes that exceed are returned.
    pub fn excess(&self, declared: Option<&DeclaredPrivilege>) -> Vec<(i32, Vec<Excess>)> {
        let baseline;
        let (against, processes): (&DeclaredPrivilege, Vec<&ProcessSeen>) = match declared {
            Some(d) => (d, self.processes().collect()),
            None => {
                baseline = as_declared(&self.first);
                (&baseline, self.others.iter().collect())
            }
        };
        processes
            .into_iter()
            .filter_map(|p| {
                let e = exceeds(&p.privilege, p.user_namespace, against);
                (!e.is_empty()).then_some((p.pid, e))
            })
            .collect()
    }
}

/// A first process's privilege taken as what its container was declared to have.
fn as_declared(first: &ProcessSeen) -> DeclaredPrivilege {
    let p = &first.privilege;
    DeclaredPrivilege {
        effective: p.effective,
        permitted: p.permitted,
        bounding: p.bounding,
        ambient: p.ambient,
        no_new_privileges: p.no_new_privs,
        seccomp: p.seccomp != Seccomp::Disabled,
        uid: if p.uid == 0 || p.euid == 0 { 0 } else { p.uid },
        apparmor_profile: None,
        selinux_label: None,
        masked_paths: false,
        user_namespace: first.user_namespace != UserNamespace::Host,
    }
}

/// Every level, most open first, as the per-level count exports them.
pub const LEVELS: [Level; 3] = [Level::Privileged, Level::Baseline, Level::Restricted];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::Runtime;

    fn seen(pid: i32, uid: u32, caps: u64, user_namespace: UserNamespace) -> ProcessSeen {
        ProcessSeen {
            pid,
            privilege: ProcessPrivilege {
                effective: CapSet(caps),
                permitted: CapSet(caps),
                bounding: CapSet(caps),
                uid,
                euid: uid,
                seccomp: Seccomp::Filter { filters: 1 },
                ..Default::default()
            },
            user_namespace,
        }
    }

    fn container(first: ProcessSeen, others: Vec<ProcessSeen>) -> ContainerPrivilege {
        ContainerPrivilege {
            container: Arc::new(Container {
                id: "c".into(),
                runtime: Runtime::Unknown,
                pod_uid: None,
                names: None,
            }),
            first,
            others,
            proc_masked: Some(true),
            host_namespaces: HostNamespaces::default(),
        }
    }

    /// A uid 1000 container without capabilities whose child ran a setuid-root program: the
    /// child exceeds the first process without a spec, and opens the container's level.
    #[test]
    fn a_setuid_child_exceeds_its_first_process() {
        let c = container(
            seen(10, 1000, 0, UserNamespace::Host),
            vec![
                seen(11, 1000, 0, UserNamespace::Host),
                seen(12, 0, 0x1ff_ffff_ffff, UserNamespace::Host),
            ],
        );
        let excess = c.excess(None);
        assert_eq!(excess.len(), 1);
        assert_eq!(excess[0].0, 12);
        assert!(c.host_capabilities().has(21));
        assert!(
            c.host_capabilities_label()
                .starts_with("DAC_OVERRIDE,DAC_READ_SEARCH,")
        );
        assert!(c.host_capabilities_label().contains("SYS_ADMIN"));
        assert!(!c.host_capabilities_label().contains("CHOWN"));
        assert_eq!(c.assessment(None).level, Level::Privileged);
        let alone = container(seen(10, 1000, 0, UserNamespace::Host), Vec::new());
        assert!(alone.excess(None).is_empty());
        assert_eq!(alone.host_capabilities_label(), "");
    }

    /// Capabilities held in a user namespace of the container's own are none over the host.
    #[test]
    fn capabilities_in_a_child_user_namespace_are_not_the_hosts() {
        let mut first = seen(10, 0, 0x1ff_ffff_ffff, UserNamespace::Container);
        first.privilege.uid_map = super::super::IdMap(vec![super::super::IdRange {
            inside: 0,
            outside: 100_000,
            count: 65_536,
        }]);
        let c = container(first, Vec::new());
        assert_eq!(c.host_capabilities(), CapSet(0));
        assert!(!c.host_user());
        assert!(!c.root_is_host_root());
    }
}
