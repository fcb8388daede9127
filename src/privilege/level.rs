//! The Pod Security Standards level a container meets, judged from what the kernel shows of its
//! processes (capabilities(7), seccomp(2), prctl(2) `PR_SET_NO_NEW_PRIVS`, user_namespaces(7),
//! `/proc/PID/attr/current`) rather than from a manifest; and, for comparison, the level Pod
//! Security admission would give the spec the container was started with.
//!
//! Pure functions: the reading side gathers the facts. How each observed fact stands for a
//! control of the standard, and which controls the node cannot see, is in `docs/privilege.md`;
//! each choice is also said where it is made below.

use super::{CAPABILITY_NAMES, CapSet, DeclaredPrivilege, Level, Lsm, ProcessPrivilege, Seccomp};

/// A control of the Pod Security Standards that can be judged from the node, named as the
/// standard names it (in snake case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// Baseline: `hostNetwork`, `hostPID`, `hostIPC`.
    HostNamespaces,
    /// Baseline: `privileged: true`.
    Privileged,
    /// Baseline: nothing beyond the default set; restricted: only `NET_BIND_SERVICE`.
    Capabilities,
    /// Baseline: no `Unconfined` AppArmor profile.
    AppArmor,
    /// Baseline: only the container SELinux types.
    SeLinux,
    /// Baseline: `procMount` `Default` (the masked `/proc`).
    ProcMount,
    /// Restricted: a `RuntimeDefault` or `Localhost` seccomp profile.
    Seccomp,
    /// Restricted: `allowPrivilegeEscalation: false`, which the runtime sets as `no_new_privs`.
    PrivilegeEscalation,
    /// Restricted: `runAsNonRoot: true`.
    RunningAsNonRoot,
    /// Restricted: `runAsUser` not 0.
    RunningAsNonRootUser,
}

impl Check {
    /// The check's name, as logs and docs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::HostNamespaces => "host_namespaces",
            Check::Privileged => "privileged",
            Check::Capabilities => "capabilities",
            Check::AppArmor => "app_armor",
            Check::SeLinux => "se_linux",
            Check::ProcMount => "proc_mount",
            Check::Seccomp => "seccomp",
            Check::PrivilegeEscalation => "privilege_escalation",
            Check::RunningAsNonRoot => "running_as_non_root",
            Check::RunningAsNonRootUser => "running_as_non_root_user",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed control: `policy` is the level whose control it is (`Baseline` or
/// `Restricted`), so a failure at `Baseline` leaves the container at `Privileged`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Failure {
    pub check: Check,
    pub policy: Level,
}

/// The level met, the controls failed, and the controls that could not be judged (and were
/// let pass: the level is the highest the facts allow).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Assessment {
    pub level: Level,
    pub failed: Vec<Failure>,
    pub unobserved: Vec<Check>,
}

impl Assessment {
    /// A container's assessment from its processes' (its first, and each that differs): it
    /// meets a level only if every process does, so the lowest level, every failure once, and
    /// what none of them could show.
    pub fn merge(mut self, other: Assessment) -> Assessment {
        self.level = self.level.min(other.level);
        for f in other.failed {
            if !self.failed.contains(&f) {
                self.failed.push(f);
            }
        }
        self.failed.sort_by_key(|f| (f.check, f.policy));
        self.unobserved.retain(|c| other.unobserved.contains(c));
        self
    }

    /// The failed checks' names, comma-separated, for a log line.
    pub fn failed_names(&self) -> String {
        let names: Vec<&str> = self.failed.iter().map(|f| f.check.as_str()).collect();
        names.join(",")
    }
}

/// Whether the container shares the host's namespaces that the standard names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostNamespaces {
    pub net: bool,
    pub pid: bool,
    pub ipc: bool,
}

impl HostNamespaces {
    fn any(self) -> bool {
        self.net || self.pid || self.ipc
    }
}

/// What the node shows of one container process, as [`observed_level`] needs it.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    pub process: &'a ProcessPrivilege,
    /// Whether the process is in the host's (the initial) user namespace.
    pub host_user_namespace: bool,
    pub host_namespaces: HostNamespaces,
    /// Whether the container's `/proc` is masked as runtimes mask it; `None`: not read.
    pub proc_masked: Option<bool>,
    /// The node's whole capability set (`CapBnd` of the host's PID 1); `None`: every
    /// capability in [`CAPABILITY_NAMES`]. A node may lack some (this machine's root lacks
    /// `SYS_RESOURCE`), and a privileged container gets what the node has.
    pub node_bounding: Option<CapSet>,
}

/// The capabilities of baseline's default list, which the standard takes from the container
/// runtimes' default set (`AUDIT_WRITE`, `CHOWN`, …, `SYS_CHROOT`), plus `NET_RAW`: Docker's
/// and containerd's default sets hold it and a pod that adds nothing passes admission, so a
/// running default container shows it. Adding it explicitly fails admission; the node cannot
/// tell the two apart.
pub const BASELINE_CAPABILITIES: [&str; 14] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The only capability restricted lets a container add back after dropping `ALL`.
pub const RESTRICTED_CAPABILITIES: [&str; 1] = ["NET_BIND_SERVICE"];

/// [`BASELINE_CAPABILITIES`] and [`RESTRICTED_CAPABILITIES`] as sets, spelt out because the
/// judge runs per process per sweep and name lookups are not const (a test checks them).
const BASELINE_SET: CapSet = CapSet(0xa804_25fb);
const RESTRICTED_SET: CapSet = CapSet(1 << 10);

/// The SELinux types baseline allows (`container_t`, `container_init_t`, `container_kvm_t`,
/// and since Kubernetes 1.31 `container_engine_t`).
pub const SELINUX_TYPES: [&str; 4] = [
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// A set of named capabilities; names that are not capabilities are left out.
pub fn capability_set(names: &[&str]) -> CapSet {
    CapSet(
        names
            .iter()
            .filter_map(|n| super::capability_number(n))
            .fold(0, |s, c| s | 1 << c),
    )
}

/// Every capability the kernel headers name ([`CAPABILITY_NAMES`]).
pub fn all_capabilities() -> CapSet {
    CapSet((1u64 << CAPABILITY_NAMES.len()) - 1)
}

/// The capabilities every kernel since 3.16 has (`CHOWN` to `AUDIT_READ`): what a spec that
/// grants everything lists whatever runtime wrote it.
fn capabilities_of_every_kernel() -> CapSet {
    CapSet((1u64 << 38) - 1)
}

/// Every capability a process holds or can gain: what it has (effective, permitted, ambient)
/// and what an exec of a setuid-root or file-capability binary could give it (bounding).
pub fn reach(p: &ProcessPrivilege) -> CapSet {
    CapSet(p.effective.0 | p.permitted.0 | p.bounding.0 | p.ambient.0)
}

/// The same for a spec's sets.
pub fn declared_reach(d: &DeclaredPrivilege) -> CapSet {
    CapSet(d.effective.0 | d.permitted.0 | d.bounding.0 | d.ambient.0)
}

/// The facts the controls are judged on, whether observed or declared.
struct Facts<'a> {
    host_namespaces: HostNamespaces,
    privileged: bool,
    reach: CapSet,
    apparmor: LsmFact<'a>,
    selinux: LsmFact<'a>,
    proc_masked: Option<bool>,
    seccomp: bool,
    no_new_privs: bool,
    /// uid 0 as the process's own user namespace sees it.
    root: bool,
    /// uid 0 that is not the host's uid 0: a user namespace of the container's own maps it.
    root_mapped_away: bool,
}

/// What one LSM says of the process: nothing (not the node's LSM, or none), unconfined, or a
/// label.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LsmFact<'a> {
    Absent,
    Unconfined,
    Label(&'a str),
}

/// An SELinux context is `user:role:type:level`; an AppArmor label is a profile name with
/// the mode after it (`docker-default (enforce)`), and profile names hold no `:` in practice.
pub(super) fn selinux_type(label: &str) -> Option<&str> {
    let mut parts = label.split(':');
    let (_user, _role, t) = (parts.next()?, parts.next()?, parts.next()?);
    Some(t)
}

/// An AppArmor label's profile, without the mode.
pub fn apparmor_profile(label: &str) -> &str {
    label
        .strip_suffix(')')
        .and_then(|l| l.rsplit_once(" ("))
        .map_or(label, |(profile, _mode)| profile)
}

/// The two LSMs' facts from the label the reading side gives. Its `Unconfined` does not say
/// which module: only one labels processes on a node and its control is the one that fails,
/// so both are marked, and the docs say so.
fn lsm_facts(lsm: &Lsm) -> (LsmFact<'_>, LsmFact<'_>) {
    match lsm {
        Lsm::None => (LsmFact::Absent, LsmFact::Absent),
        Lsm::Unconfined => (LsmFact::Unconfined, LsmFact::Unconfined),
        Lsm::Label(l) if selinux_type(l).is_some() => (LsmFact::Absent, LsmFact::Label(l)),
        Lsm::Label(l) if apparmor_profile(l) == "unconfined" => {
            (LsmFact::Unconfined, LsmFact::Absent)
        }
        Lsm::Label(l) => (LsmFact::Label(l), LsmFact::Absent),
    }
}

/// The level the running process meets. Each fact's reading of a control:
/// - `host_namespaces`: the container is in the host's net, pid or ipc namespace.
/// - `privileged`: in the host's user namespace, its bounding set is the node's whole set, and
///   `/proc` is not known to be masked: what `privileged: true` makes. In a user namespace of
///   its own no container is privileged in this sense (Kubernetes refuses the pair).
/// - `capabilities`: anything the process holds or can gain ([`reach`]) beyond
///   [`BASELINE_CAPABILITIES`] fails baseline, beyond [`RESTRICTED_CAPABILITIES`] restricted;
///   in a user namespace too, as the standard does not relax it there.
/// - `app_armor`: the `unconfined` profile; `se_linux`: a type not in [`SELINUX_TYPES`]
///   (the user and role fields baseline also forbids are always filled by the runtime).
///   No LSM on the node: both unobserved.
/// - `proc_mount`: `/proc` not masked; unobserved when not read.
/// - `seccomp`: no filter fails restricted only, since baseline forbids an explicit
///   `Unconfined` profile and allows none at all, and both run without a filter.
/// - `privilege_escalation`: `no_new_privs` off.
/// - `running_as_non_root`, `running_as_non_root_user`: real or effective uid 0, unless a user
///   namespace of the container's own maps its uid 0 to a host uid that is not 0: the
///   standard relaxes these two for `hostUsers: false` (behind the
///   `UserNamespacesPodSecurityStandards` gate), as root there is no root on the host.
pub fn observed_level(o: &Observed<'_>) -> Assessment {
    let p = o.process;
    let node = o.node_bounding.unwrap_or_else(all_capabilities);
    let (apparmor, selinux) = lsm_facts(&p.lsm);
    let root = p.uid == 0 || p.euid == 0;
    // Mapped away only where the map says so: an unread or empty map relaxes nothing.
    let mapped_away =
        |id: u32| !o.host_user_namespace && p.uid_map.to_host(id).is_some_and(|host| host != 0);
    let facts = Facts {
        host_namespaces: o.host_namespaces,
        privileged: o.host_user_namespace
            && node.0 != 0
            && node.without(p.bounding).0 == 0
            && o.proc_masked != Some(true),
        reach: reach(p),
        apparmor,
        selinux,
        proc_masked: o.proc_masked,
        seccomp: p.seccomp != Seccomp::Disabled,
        no_new_privs: p.no_new_privs,
        root,
        root_mapped_away: root && mapped_away(p.uid) && mapped_away(p.euid),
    };
    judge(&facts)
}

/// The level Pod Security admission would give the spec, judged by the same rules on what the
/// spec asks for (`host` says which of the host's namespaces the spec leaves shared).
/// `privileged` is a spec in the host's user namespace, granting every capability, with no
/// masked paths; running as root is relaxed where the spec maps a user namespace.
pub fn declared_level(d: &DeclaredPrivilege, host: HostNamespaces) -> Assessment {
    let every = capabilities_of_every_kernel();
    let apparmor = match d.apparmor_profile.as_deref() {
        None | Some("") => LsmFact::Absent,
        Some("unconfined") => LsmFact::Unconfined,
        Some(p) => LsmFact::Label(p),
    };
    let selinux = match d.selinux_label.as_deref() {
        None | Some("") => LsmFact::Absent,
        Some(l) => LsmFact::Label(l),
    };
    let facts = Facts {
        host_namespaces: host,
        privileged: !d.user_namespace && every.without(d.bounding).0 == 0 && !d.masked_paths,
        reach: declared_reach(d),
        apparmor,
        selinux,
        proc_masked: Some(d.masked_paths),
        seccomp: d.seccomp,
        no_new_privs: d.no_new_privileges,
        root: d.uid == 0,
        root_mapped_away: d.uid == 0 && d.user_namespace,
    };
    judge(&facts)
}

fn judge(f: &Facts<'_>) -> Assessment {
    let mut failed = Vec::new();
    let mut unobserved = Vec::new();
    let mut fail = |check, policy| failed.push(Failure { check, policy });
    let (baseline, restricted) = (Level::Baseline, Level::Restricted);
    if f.host_namespaces.any() {
        fail(Check::HostNamespaces, baseline);
    }
    if f.privileged {
        fail(Check::Privileged, baseline);
    }
    if f.reach.without(BASELINE_SET).0 != 0 {
        fail(Check::Capabilities, baseline);
    } else if f.reach.without(RESTRICTED_SET).0 != 0 {
        fail(Check::Capabilities, restricted);
    }
    match f.apparmor {
        LsmFact::Unconfined => fail(Check::AppArmor, baseline),
        LsmFact::Label(_) => {}
        LsmFact::Absent if f.selinux == LsmFact::Absent => unobserved.push(Check::AppArmor),
        LsmFact::Absent => {}
    }
    match f.selinux {
        LsmFact::Unconfined => fail(Check::SeLinux, baseline),
        LsmFact::Label(l) if !selinux_type(l).is_some_and(|t| SELINUX_TYPES.contains(&t)) => {
            fail(Check::SeLinux, baseline)
        }
        LsmFact::Label(_) => {}
        LsmFact::Absent if f.apparmor == LsmFact::Absent => unobserved.push(Check::SeLinux),
        LsmFact::Absent => {}
    }
    match f.proc_masked {
        Some(false) => fail(Check::ProcMount, baseline),
        Some(true) => {}
        None => unobserved.push(Check::ProcMount),
    }
    if !f.seccomp {
        fail(Check::Seccomp, restricted);
    }
    if !f.no_new_privs {
        fail(Check::PrivilegeEscalation, restricted);
    }
    if f.root && !f.root_mapped_away {
        fail(Check::RunningAsNonRoot, restricted);
        fail(Check::RunningAsNonRootUser, restricted);
    }
    let level = if failed.iter().any(|x| x.policy == baseline) {
        Level::Privileged
    } else if failed.is_empty() {
        Level::Restricted
    } else {
        Level::Baseline
    };
    Assessment {
        level,
        failed,
        unobserved,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::privilege::{IdMap, IdRange};

    /// `CapBnd` of a default container, as `/proc/PID/status` shows it on this machine:
    /// Docker 20.10, containerd 1.6's CRI and Podman 4.3's built-in default (the same
    /// fourteen), the list in Debian's `/usr/share/containers/containers.conf` (eleven: no
    /// `NET_RAW`, `MKNOD`, `AUDIT_WRITE`), `runc spec` 1.1 (three), and every capability this
    /// machine has (all but `SYS_RESOURCE`, which root lacks here).
    pub const DOCKER: u64 = 0xa804_25fb;
    pub const PODMAN: u64 = 0x8004_05fb;
    pub const RUNC_SPEC: u64 = 0x2000_0420;
    pub const THIS_NODE: u64 = 0x1ff_feff_ffff;

    /// A process as a runtime leaves it: `caps` in every set but ambient (uid 0) or only in
    /// the bounding set (another uid), with a seccomp filter as the runtimes' default.
    pub fn process(caps: u64, uid: u32) -> ProcessPrivilege {
        let held = if uid == 0 { CapSet(caps) } else { CapSet(0) };
        ProcessPrivilege {
            effective: held,
            permitted: held,
            bounding: CapSet(caps),
            seccomp: Seccomp::Filter { filters: 1 },
            uid,
            euid: uid,
            ..Default::default()
        }
    }

    pub fn mapped(outside: u32) -> IdMap {
        IdMap(vec![IdRange {
            inside: 0,
            outside,
            count: 65_536,
        }])
    }

    struct Case {
        name: &'static str,
        process: ProcessPrivilege,
        host_user_namespace: bool,
        host: HostNamespaces,
        proc_masked: Option<bool>,
        level: Level,
        failed: &'static [&'static str],
    }

    fn case(name: &'static str, process: ProcessPrivilege) -> Case {
        Case {
            name,
            process,
            host_user_namespace: true,
            host: HostNamespaces::default(),
            proc_masked: Some(true),
            level: Level::Baseline,
            failed: &[],
        }
    }

    impl Case {
        fn unmasked(mut self) -> Case {
            self.proc_masked = Some(false);
            self
        }
        fn own_user_namespace(mut self) -> Case {
            self.host_user_namespace = false;
            self
        }
        fn host_network(mut self) -> Case {
            self.host.net = true;
            self
        }
        fn want(mut self, level: Level, failed: &'static [&'static str]) -> Case {
            self.level = level;
            self.failed = failed;
            self
        }
    }

    #[test]
    fn observed_levels() {
        let restricted = ProcessPrivilege {
            no_new_privs: true,
            ..process(0, 1000)
        };
        let cases = vec![
            case("docker default", process(DOCKER, 0)).want(
                Level::Baseline,
                &[
                    "capabilities",
                    "privilege_escalation",
                    "running_as_non_root",
                    "running_as_non_root_user",
                ],
            ),
            case("podman default", process(PODMAN, 0)).want(
                Level::Baseline,
                &[
                    "capabilities",
                    "privilege_escalation",
                    "running_as_non_root",
                    "running_as_non_root_user",
                ],
            ),
            case("runc spec default", process(RUNC_SPEC, 0)).want(
                Level::Baseline,
                &[
                    "capabilities",
                    "privilege_escalation",
                    "running_as_non_root",
                    "running_as_non_root_user",
                ],
            ),
            case(
                "restricted: uid 1000, no caps, nnp, filter",
                restricted.clone(),
            )
            .want(Level::Restricted, &[]),
            case(
                "restricted with NET_BIND_SERVICE",
                ProcessPrivilege {
                    bounding: capability_set(&["NET_BIND_SERVICE"]),
                    ambient: capability_set(&["NET_BIND_SERVICE"]),
                    ..restricted.clone()
                },
            )
            .want(Level::Restricted, &[]),
            case(
                "uid 1000 with the default bounding set: can regain by setuid",
                ProcessPrivilege {
                    no_new_privs: true,
                    ..process(DOCKER, 1000)
                },
            )
            .want(Level::Baseline, &["capabilities"]),
            case(
                "a setuid-root exec: uid 1000, euid 0",
                ProcessPrivilege {
                    euid: 0,
                    ..restricted.clone()
                },
            )
            .want(
                Level::Baseline,
                &["running_as_non_root", "running_as_non_root_user"],
            ),
            case(
                "no seccomp filter fails restricted only",
                ProcessPrivilege {
                    seccomp: Seccomp::Disabled,
                    ..restricted.clone()
                },
            )
            .want(Level::Baseline, &["seccomp"]),
            case(
                "strict seccomp is a filter",
                ProcessPrivilege {
                    seccomp: Seccomp::Strict,
                    ..restricted.clone()
                },
            )
            .want(Level::Restricted, &[]),
            case(
                "cap-add SYS_ADMIN",
                process(DOCKER | capability_set(&["SYS_ADMIN"]).0, 0),
            )
            .want(
                Level::Privileged,
                &[
                    "capabilities",
                    "privilege_escalation",
                    "running_as_non_root",
                    "running_as_non_root_user",
                ],
            ),
            case(
                "docker --privileged here",
                ProcessPrivilege {
                    seccomp: Seccomp::Disabled,
                    ..process(THIS_NODE, 0)
                },
            )
            .unmasked()
            .want(
                Level::Privileged,
                &[
                    "privileged",
                    "capabilities",
                    "proc_mount",
                    "seccomp",
                    "privilege_escalation",
                    "running_as_non_root",
                    "running_as_non_root_user",
                ],
            ),
            case(
                "every capability but /proc masked: not privileged, still capabilities",
                process(THIS_NODE, 0),
            )
            .want(
                Level::Privileged,
                &[
                    "capabilities",
                    "privilege_escalation",
                    "running_as_non_root",
                    "running_as_non_root_user",
                ],
            ),
            case("unmasked /proc alone", restricted.clone())
                .unmasked()
                .want(Level::Privileged, &["proc_mount"]),
            case("host network", restricted.clone())
                .host_network()
                .want(Level::Privileged, &["host_namespaces"]),
        ];
        judge_all(cases);
    }

    #[test]
    fn observed_levels_with_lsm_labels_and_user_namespaces() {
        let restricted = ProcessPrivilege {
            no_new_privs: true,
            ..process(0, 1000)
        };
        let cases = vec![
            case(
                "apparmor unconfined",
                ProcessPrivilege {
                    lsm: Lsm::Label("unconfined".into()),
                    ..restricted.clone()
                },
            )
            .want(Level::Privileged, &["app_armor"]),
            case(
                "apparmor docker-default",
                ProcessPrivilege {
                    lsm: Lsm::Label("docker-default (enforce)".into()),
                    ..restricted.clone()
                },
            )
            .want(Level::Restricted, &[]),
            case(
                "selinux container_t",
                ProcessPrivilege {
                    lsm: Lsm::Label("system_u:system_r:container_t:s0:c12,c34".into()),
                    ..restricted.clone()
                },
            )
            .want(Level::Restricted, &[]),
            case(
                "selinux spc_t",
                ProcessPrivilege {
                    lsm: Lsm::Label("system_u:system_r:spc_t:s0".into()),
                    ..restricted.clone()
                },
            )
            .want(Level::Privileged, &["se_linux"]),
            case(
                "unconfined, module unknown",
                ProcessPrivilege {
                    lsm: Lsm::Unconfined,
                    ..restricted.clone()
                },
            )
            .want(Level::Privileged, &["app_armor", "se_linux"]),
            case(
                "root in a user namespace mapped to 100000",
                ProcessPrivilege {
                    no_new_privs: true,
                    uid_map: mapped(100_000),
                    ..process(0, 0)
                },
            )
            .own_user_namespace()
            .want(Level::Restricted, &[]),
            case(
                "root in a user namespace that maps 0 to 0 is host root",
                ProcessPrivilege {
                    no_new_privs: true,
                    uid_map: mapped(0),
                    ..process(0, 0)
                },
            )
            .own_user_namespace()
            .want(
                Level::Baseline,
                &["running_as_non_root", "running_as_non_root_user"],
            ),
            case(
                "root in a user namespace whose map was not read relaxes nothing",
                ProcessPrivilege {
                    no_new_privs: true,
                    ..process(0, 0)
                },
            )
            .own_user_namespace()
            .want(
                Level::Baseline,
                &["running_as_non_root", "running_as_non_root_user"],
            ),
            case(
                "every capability in a user namespace: capabilities, never privileged",
                ProcessPrivilege {
                    uid_map: mapped(100_000),
                    seccomp: Seccomp::Disabled,
                    ..process(all_capabilities().0, 0)
                },
            )
            .own_user_namespace()
            .unmasked()
            .want(
                Level::Privileged,
                &[
                    "capabilities",
                    "proc_mount",
                    "seccomp",
                    "privilege_escalation",
                ],
            ),
        ];
        judge_all(cases);
    }

    fn judge_all(cases: Vec<Case>) {
        for c in cases {
            let o = Observed {
                process: &c.process,
                host_user_namespace: c.host_user_namespace,
                host_namespaces: c.host,
                proc_masked: c.proc_masked,
                node_bounding: Some(CapSet(THIS_NODE)),
            };
            let a = observed_level(&o);
            let failed: Vec<&str> = a.failed.iter().map(|f| f.check.as_str()).collect();
            assert_eq!(
                (a.level, failed.as_slice()),
                (c.level, c.failed),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn what_cannot_be_seen_is_named_and_let_pass() {
        let p = ProcessPrivilege {
            no_new_privs: true,
            ..process(0, 1000)
        };
        let a = observed_level(&Observed {
            process: &p,
            host_user_namespace: true,
            host_namespaces: HostNamespaces::default(),
            proc_masked: None,
            node_bounding: None,
        });
        assert_eq!(a.level, Level::Restricted);
        assert_eq!(
            a.unobserved,
            [Check::AppArmor, Check::SeLinux, Check::ProcMount]
        );
        // Each failure is at the lowest level it rules out; the baseline one decides.
        let p = ProcessPrivilege {
            seccomp: Seccomp::Disabled,
            ..process(DOCKER | capability_set(&["BPF"]).0, 0)
        };
        let a = observed_level(&Observed {
            process: &p,
            host_user_namespace: true,
            host_namespaces: HostNamespaces {
                pid: true,
                ..Default::default()
            },
            proc_masked: Some(true),
            node_bounding: None,
        });
        assert_eq!(a.level, Level::Privileged);
        assert_eq!(
            a.failed[..2],
            [
                Failure {
                    check: Check::HostNamespaces,
                    policy: Level::Baseline
                },
                Failure {
                    check: Check::Capabilities,
                    policy: Level::Baseline
                }
            ]
        );
        assert_eq!(
            a.failed_names(),
            "host_namespaces,capabilities,seccomp,privilege_escalation,\
             running_as_non_root,running_as_non_root_user"
        );
    }

    /// A container whose first process is restricted and whose second was a setuid-root exec
    /// meets baseline only.
    #[test]
    fn a_container_meets_what_its_worst_process_meets() {
        let first = ProcessPrivilege {
            no_new_privs: true,
            ..process(0, 1000)
        };
        let second = ProcessPrivilege {
            euid: 0,
            ..first.clone()
        };
        let judge = |p: &ProcessPrivilege, masked| {
            observed_level(&Observed {
                process: p,
                host_user_namespace: true,
                host_namespaces: HostNamespaces::default(),
                proc_masked: masked,
                node_bounding: None,
            })
        };
        let merged = judge(&first, Some(true)).merge(judge(&second, None));
        assert_eq!(merged.level, Level::Baseline);
        assert_eq!(
            merged.failed_names(),
            "running_as_non_root,running_as_non_root_user"
        );
        assert_eq!(merged.unobserved, [Check::AppArmor, Check::SeLinux]);
        let again = merged.clone().merge(judge(&second, Some(true)));
        assert_eq!(again.failed, merged.failed, "a failure counts once");
    }

    /// A node whose full set is smaller than the headers' (an older kernel, or this machine):
    /// a privileged container gets what the node has and is judged privileged by it.
    #[test]
    fn privileged_is_the_nodes_whole_set() {
        let p = process(THIS_NODE, 0);
        let o = |node| Observed {
            process: &p,
            host_user_namespace: true,
            host_namespaces: HostNamespaces::default(),
            proc_masked: Some(false),
            node_bounding: node,
        };
        let has = |a: Assessment| a.failed.iter().any(|f| f.check == Check::Privileged);
        assert!(has(observed_level(&o(Some(CapSet(THIS_NODE))))));
        assert!(!has(observed_level(&o(None))), "SYS_RESOURCE is missing");
        assert!(
            !has(observed_level(&o(Some(CapSet(0))))),
            "no node set known"
        );
    }

    fn spec(caps: u64) -> DeclaredPrivilege {
        DeclaredPrivilege {
            effective: CapSet(caps),
            permitted: CapSet(caps),
            bounding: CapSet(caps),
            seccomp: true,
            masked_paths: true,
            ..Default::default()
        }
    }

    #[test]
    fn declared_levels() {
        let none = HostNamespaces::default();
        let restricted = DeclaredPrivilege {
            no_new_privileges: true,
            uid: 1000,
            ..spec(0)
        };
        let cases: Vec<(&str, DeclaredPrivilege, HostNamespaces, Level, &[&str])> = vec![
            (
                "docker default",
                spec(DOCKER),
                none,
                Level::Baseline,
                &[
                    "capabilities",
                    "privilege_escalation",
                    "running_as_non_root",
                    "running_as_non_root_user",
                ],
            ),
            (
                "restricted",
                restricted.clone(),
                none,
                Level::Restricted,
                &[],
            ),
            (
                "docker --privileged: every capability, no filter, nothing masked",
                DeclaredPrivilege {
                    seccomp: false,
                    masked_paths: false,
                    ..spec(all_capabilities().0)
                },
                none,
                Level::Privileged,
                &[
                    "privileged",
                    "capabilities",
                    "proc_mount",
                    "seccomp",
                    "privilege_escalation",
                    "running_as_non_root",
                    "running_as_non_root_user",
                ],
            ),
            (
                "hostPID",
                restricted.clone(),
                HostNamespaces { pid: true, ..none },
                Level::Privileged,
                &["host_namespaces"],
            ),
            (
                "apparmor unconfined",
                DeclaredPrivilege {
                    apparmor_profile: Some("unconfined".into()),
                    ..restricted.clone()
                },
                none,
                Level::Privileged,
                &["app_armor"],
            ),
            (
                "selinux container_t",
                DeclaredPrivilege {
                    selinux_label: Some("system_u:system_r:container_t:s0:c1,c2".into()),
                    ..restricted.clone()
                },
                none,
                Level::Restricted,
                &[],
            ),
            (
                "root in a user namespace",
                DeclaredPrivilege {
                    uid: 0,
                    user_namespace: true,
                    ..restricted.clone()
                },
                none,
                Level::Restricted,
                &[],
            ),
            (
                "no filter",
                DeclaredPrivilege {
                    seccomp: false,
                    ..restricted.clone()
                },
                none,
                Level::Baseline,
                &["seccomp"],
            ),
        ];
        for (name, d, host, level, failed) in cases {
            let a = declared_level(&d, host);
            let names: Vec<&str> = a.failed.iter().map(|f| f.check.as_str()).collect();
            assert_eq!((a.level, names.as_slice()), (level, failed), "{name}");
            assert!(
                a.unobserved.contains(&Check::AppArmor)
                    || d.apparmor_profile.is_some()
                    || d.selinux_label.is_some()
            );
        }
    }

    #[test]
    fn labels_and_sets() {
        assert_eq!(
            apparmor_profile("docker-default (enforce)"),
            "docker-default"
        );
        assert_eq!(
            apparmor_profile("my (odd) profile (complain)"),
            "my (odd) profile"
        );
        assert_eq!(apparmor_profile("unconfined"), "unconfined");
        assert_eq!(
            selinux_type("system_u:system_r:container_t:s0"),
            Some("container_t")
        );
        assert_eq!(selinux_type("u:r:t"), Some("t"));
        assert_eq!(selinux_type("docker-default (enforce)"), None);
        assert_eq!(capability_set(&BASELINE_CAPABILITIES), BASELINE_SET);
        assert_eq!(capability_set(&BASELINE_CAPABILITIES).0, DOCKER);
        assert_eq!(capability_set(&RESTRICTED_CAPABILITIES), RESTRICTED_SET);
        assert_eq!(capability_set(&["SYS_ADMIN", "nonsense"]).0, 1 << 21);
        assert_eq!(all_capabilities().numbers().count(), CAPABILITY_NAMES.len());
    }
}
