//! Where a container process holds more than its spec declared: the facts behind the
//! `privilege_exceeds_declared` finding.
//!
//! Pure: the reading side gives the process's facts (`/proc/PID/status`, `uid_map`,
//! `attr/current`; proc_pid_status(5), user_namespaces(7)) and which user namespace it is in;
//! the spec's side comes from [`crate::declared`].
//!
//! What is never an excess, and why (read off runc 1.1 on this machine, `docs/privilege.md`):
//! - A process that holds less than its spec: dropping privilege is the process's right.
//! - A root process whose effective set grew to the spec's bounding set: an exec by uid 0
//!   makes the permitted and effective sets the bounding set (capabilities(7), "Capabilities
//!   and execution of programs by root"), so a spec with fewer effective than bounding
//!   capabilities gives exactly that. Capabilities are compared with all the spec's sets
//!   together ([`super::level::declared_reach`]).
//! - runc's init waiting in the `created` state, and `runc exec` processes: runc applies the
//!   spec's capabilities, uid, `no_new_privs` and seccomp filter before it waits on its exec
//!   fifo, and again for `runc exec`; both show the spec's values (`runc create`, then
//!   `/proc/PID/status`, before and after `runc start`).
//! - Capabilities in a user namespace below the container's own (`unshare -U`, bubblewrap,
//!   a browser's sandbox): the kernel gives the creator every capability there, over only what
//!   that namespace owns; so are uid 0 in it.
//! - No LSM on the node: the runtime could not apply the spec's profile (runc skips AppArmor
//!   where it is not enabled), the process is confined like every other on the node, and the
//!   container did nothing; the info series says `lsm="none"`.
//!
//! What remains transient: runc's own setup before its init drops to the spec (milliseconds,
//! in the runtime's process, which holds runc's full set). Nothing inside a container can make
//! a process look like it; runc writes the container's `state.json` only after its init has
//! closed the sync pipe, which it does once it has dropped to the spec (runc 1.1,
//! `standard_init_linux.go`), which the reading side can go by.

use std::fmt;

use super::level::{apparmor_profile, declared_reach, reach, selinux_type};
use super::{CAPABILITY_NAMES, CapSet, DeclaredPrivilege, Lsm, ProcessPrivilege, Seccomp};

/// Which user namespace a process is in, as the reading side knows it from the inodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserNamespace {
    /// The host's (initial) user namespace.
    Host,
    /// The container's own: that of its first process, made by the runtime.
    Container,
    /// Another: one a process of the container made below its own.
    Nested,
}

/// One way a process exceeds its spec.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Excess {
    /// Capabilities held or reachable beyond every set the spec gives.
    Capabilities { extra: CapSet },
    /// No seccomp filter where the spec gives one.
    SeccompOff,
    /// `no_new_privs` off where the spec sets `noNewPrivileges`.
    NoNewPrivsOff,
    /// A label other than the spec's AppArmor profile or SELinux label.
    Label { declared: String, observed: Lsm },
    /// Real or effective uid 0 where the spec's `process.user.uid` is not 0.
    Root { declared_uid: u32 },
    /// Host uid 0 where the spec maps a user namespace.
    HostRoot,
    /// In the host's user namespace where the spec maps one of its own.
    HostUserNamespace,
}

impl Excess {
    /// A short name of the kind, for a label or a count.
    pub fn kind(&self) -> &'static str {
        match self {
            Excess::Capabilities { .. } => "capabilities",
            Excess::SeccompOff => "seccomp",
            Excess::NoNewPrivsOff => "no_new_privs",
            Excess::Label { .. } => "lsm",
            Excess::Root { .. } => "uid",
            Excess::HostRoot => "host_root",
            Excess::HostUserNamespace => "host_user_namespace",
        }
    }
}

/// Capability names, comma-separated, lowest number first; a number the kernel headers do
/// not name yet is written `CAP_<n>`.
pub fn capability_list(set: CapSet) -> String {
    let names: Vec<String> = set
        .numbers()
        .map(|n| match CAPABILITY_NAMES.get(usize::from(n)) {
            Some(name) => (*name).to_owned(),
            None => format!("CAP_{n}"),
        })
        .collect();
    names.join(",")
}

impl fmt::Display for Excess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Excess::Capabilities { extra } => {
                write!(
                    f,
                    "capabilities beyond the spec's: {}",
                    capability_list(*extra)
                )
            }
            Excess::SeccompOff => f.write_str("no seccomp filter where the spec gives one"),
            Excess::NoNewPrivsOff => {
                f.write_str("no_new_privs off where the spec sets noNewPrivileges")
            }
            // Debug-quoted: a label can be set by the process (aa_change_profile(2)).
            Excess::Label { declared, observed } => {
                let observed = match observed {
                    Lsm::None => "none",
                    Lsm::Unconfined => "unconfined",
                    Lsm::Label(l) => l.as_str(),
                };
                write!(
                    f,
                    "LSM label {observed:?} where the spec gives {declared:?}"
                )
            }
            Excess::Root { declared_uid } => {
                write!(f, "uid 0 where the spec's user is uid {declared_uid}")
            }
            Excess::HostRoot => f.write_str("host uid 0 where the spec maps a user namespace"),
            Excess::HostUserNamespace => {
                f.write_str("in the host's user namespace where the spec maps one of its own")
            }
        }
    }
}

/// How `observed` exceeds `declared`, in the order of [`Excess`]; empty when it does not.
pub fn exceeds(
    observed: &ProcessPrivilege,
    user_namespace: UserNamespace,
    declared: &DeclaredPrivilege,
) -> Vec<Excess> {
    let mut out = Vec::new();
    let p = observed;
    if user_namespace != UserNamespace::Nested {
        let extra = reach(p).without(declared_reach(declared));
        if extra.0 != 0 {
            out.push(Excess::Capabilities { extra });
        }
    }
    if declared.seccomp && p.seccomp == Seccomp::Disabled {
        out.push(Excess::SeccompOff);
    }
    if declared.no_new_privileges && !p.no_new_privs {
        out.push(Excess::NoNewPrivsOff);
    }
    if let Some(declared) = label_beyond(&p.lsm, declared) {
        out.push(Excess::Label {
            declared,
            observed: p.lsm.clone(),
        });
    }
    let root = p.uid == 0 || p.euid == 0;
    if root && declared.uid != 0 && user_namespace != UserNamespace::Nested {
        out.push(Excess::Root {
            declared_uid: declared.uid,
        });
    }
    if declared.user_namespace {
        let host_id = |id: u32| match user_namespace {
            UserNamespace::Host => Some(id),
            _ => p.uid_map.to_host(id),
        };
        if host_id(p.uid) == Some(0) || host_id(p.euid) == Some(0) {
            out.push(Excess::HostRoot);
        }
        if user_namespace == UserNamespace::Host {
            out.push(Excess::HostUserNamespace);
        }
    }
    out
}

/// The spec's label that the process's label departs from, if it does. Only the LSM the
/// label belongs to is compared (an AppArmor profile means nothing on an SELinux node); a
/// spec's `unconfined` or empty label asks for nothing.
fn label_beyond(observed: &Lsm, declared: &DeclaredPrivilege) -> Option<String> {
    let apparmor = declared
        .apparmor_profile
        .as_deref()
        .filter(|p| !p.is_empty() && *p != "unconfined");
    let selinux = declared.selinux_label.as_deref().filter(|l| !l.is_empty());
    match observed {
        Lsm::None => None,
        Lsm::Unconfined => apparmor.or(selinux).map(str::to_owned),
        Lsm::Label(l) if selinux_type(l).is_some() => {
            selinux.filter(|s| *s != l.as_str()).map(str::to_owned)
        }
        Lsm::Label(l) => apparmor
            .filter(|a| *a != apparmor_profile(l))
            .map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privilege::level::capability_set;
    use crate::privilege::level::tests::{DOCKER, RUNC_SPEC, THIS_NODE, mapped, process};

    /// A spec as a runtime writes it: `caps` in every set but ambient, a filter, masked paths.
    fn spec(caps: u64, uid: u32) -> DeclaredPrivilege {
        DeclaredPrivilege {
            effective: CapSet(caps),
            permitted: CapSet(caps),
            bounding: CapSet(caps),
            seccomp: true,
            masked_paths: true,
            uid,
            ..Default::default()
        }
    }

    fn kinds(v: &[Excess]) -> Vec<&'static str> {
        v.iter().map(Excess::kind).collect()
    }

    #[test]
    fn excesses() {
        use UserNamespace::{Container, Host, Nested};
        let sys_admin = capability_set(&["SYS_ADMIN"]).0;
        let nnp = |p: ProcessPrivilege| ProcessPrivilege {
            no_new_privs: true,
            ..p
        };
        let cases: Vec<(
            &str,
            ProcessPrivilege,
            UserNamespace,
            DeclaredPrivilege,
            &[&str],
        )> = vec![
            (
                "docker default as declared",
                process(DOCKER, 0),
                Host,
                spec(DOCKER, 0),
                &[],
            ),
            (
                "runc spec default",
                process(RUNC_SPEC, 0),
                Host,
                spec(RUNC_SPEC, 0),
                &[],
            ),
            (
                "dropped everything: never an excess",
                nnp(process(0, 1000)),
                Host,
                spec(DOCKER, 0),
                &[],
            ),
            (
                "root's exec raised effective to the bounding set",
                process(DOCKER, 0),
                Host,
                DeclaredPrivilege {
                    effective: CapSet(0),
                    ..spec(DOCKER, 0)
                },
                &[],
            ),
            (
                "SYS_ADMIN the spec did not give",
                process(DOCKER | sys_admin, 0),
                Host,
                spec(DOCKER, 0),
                &["capabilities"],
            ),
            (
                "nsenter from the host: every capability, no filter",
                ProcessPrivilege {
                    seccomp: Seccomp::Disabled,
                    ..process(THIS_NODE, 0)
                },
                Host,
                spec(DOCKER, 0),
                &["capabilities", "seccomp"],
            ),
            (
                "the same without a filter in the spec either",
                ProcessPrivilege {
                    seccomp: Seccomp::Disabled,
                    ..process(DOCKER, 0)
                },
                Host,
                DeclaredPrivilege {
                    seccomp: false,
                    ..spec(DOCKER, 0)
                },
                &[],
            ),
            (
                "no_new_privs off where the spec set it",
                process(DOCKER, 0),
                Host,
                DeclaredPrivilege {
                    no_new_privileges: true,
                    ..spec(DOCKER, 0)
                },
                &["no_new_privs"],
            ),
            (
                "setuid-root exec in a uid 1000 spec with no capabilities",
                ProcessPrivilege {
                    euid: 0,
                    ..process(0, 1000)
                },
                Host,
                spec(0, 1000),
                &["uid"],
            ),
            (
                "the same with the default bounding set: permitted becomes it, still only uid",
                ProcessPrivilege {
                    euid: 0,
                    permitted: CapSet(DOCKER),
                    effective: CapSet(DOCKER),
                    ..process(DOCKER, 1000)
                },
                Host,
                spec(DOCKER, 1000),
                &["uid"],
            ),
            (
                "root in the container's user namespace, mapped away",
                ProcessPrivilege {
                    uid_map: mapped(100_000),
                    ..process(DOCKER, 0)
                },
                Container,
                DeclaredPrivilege {
                    user_namespace: true,
                    ..spec(DOCKER, 0)
                },
                &[],
            ),
            (
                "a user namespace that maps uid 0 to host uid 0",
                ProcessPrivilege {
                    uid_map: mapped(0),
                    ..process(DOCKER, 0)
                },
                Container,
                DeclaredPrivilege {
                    user_namespace: true,
                    ..spec(DOCKER, 0)
                },
                &["host_root"],
            ),
            (
                "entered into the container from the host's user namespace as root",
                process(DOCKER, 0),
                Host,
                DeclaredPrivilege {
                    user_namespace: true,
                    ..spec(DOCKER, 0)
                },
                &["host_root", "host_user_namespace"],
            ),
            (
                "unshare -U inside: every capability, uid 0, in a nested namespace",
                ProcessPrivilege {
                    uid_map: one(0, 1000),
                    ..process(crate::privilege::level::all_capabilities().0, 0)
                },
                Nested,
                spec(DOCKER, 1000),
                &[],
            ),
            (
                "unshare -U inside a mapped container whose uid 0 is host 0",
                ProcessPrivilege {
                    uid_map: one(0, 0),
                    ..process(crate::privilege::level::all_capabilities().0, 0)
                },
                Nested,
                DeclaredPrivilege {
                    user_namespace: true,
                    ..spec(DOCKER, 0)
                },
                &["host_root"],
            ),
        ];
        for (name, p, ns, d, want) in cases {
            assert_eq!(kinds(&exceeds(&p, ns, &d)), want, "{name}");
        }
    }

    /// A one-id map, as `unshare -r` writes it.
    fn one(inside: u32, outside: u32) -> crate::privilege::IdMap {
        crate::privilege::IdMap(vec![crate::privilege::IdRange {
            inside,
            outside,
            count: 1,
        }])
    }

    #[test]
    fn labels() {
        let with = |apparmor: Option<&str>, selinux: Option<&str>| DeclaredPrivilege {
            apparmor_profile: apparmor.map(str::to_owned),
            selinux_label: selinux.map(str::to_owned),
            ..spec(DOCKER, 0)
        };
        let label = |l: &str| Lsm::Label(l.to_owned());
        let cases = [
            // No LSM on the node: nothing could be applied, nothing was lost.
            (Lsm::None, with(Some("docker-default"), None), false),
            (
                label("docker-default (enforce)"),
                with(Some("docker-default"), None),
                false,
            ),
            (
                label("other (enforce)"),
                with(Some("docker-default"), None),
                true,
            ),
            (Lsm::Unconfined, with(Some("docker-default"), None), true),
            (Lsm::Unconfined, with(Some("unconfined"), None), false),
            (Lsm::Unconfined, with(None, None), false),
            // An AppArmor spec on an SELinux node is not compared.
            (
                label("system_u:system_r:container_runtime_t:s0"),
                with(Some("docker-default"), None),
                false,
            ),
            (
                label("system_u:system_r:container_t:s0:c1,c2"),
                with(None, Some("system_u:system_r:container_t:s0:c1,c2")),
                false,
            ),
            (
                label("system_u:system_r:spc_t:s0"),
                with(None, Some("system_u:system_r:container_t:s0:c1,c2")),
                true,
            ),
            (
                Lsm::Unconfined,
                with(None, Some("system_u:system_r:container_t:s0")),
                true,
            ),
        ];
        for (observed, d, want) in cases {
            let p = ProcessPrivilege {
                lsm: observed.clone(),
                ..process(DOCKER, 0)
            };
            let got = exceeds(&p, UserNamespace::Host, &d);
            assert_eq!(
                got.iter().any(|e| e.kind() == "lsm"),
                want,
                "{observed:?} {d:?}"
            );
        }
    }

    #[test]
    fn each_excess_is_one_line() {
        let all = [
            Excess::Capabilities {
                extra: CapSet(capability_set(&["SYS_ADMIN", "NET_ADMIN"]).0 | 1 << 45),
            },
            Excess::SeccompOff,
            Excess::NoNewPrivsOff,
            Excess::Label {
                declared: "docker-default".into(),
                observed: Lsm::Label("evil\n(enforce)".into()),
            },
            Excess::Root { declared_uid: 1000 },
            Excess::HostRoot,
            Excess::HostUserNamespace,
        ];
        let lines: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines[0],
            "capabilities beyond the spec's: NET_ADMIN,SYS_ADMIN,CAP_45"
        );
        assert_eq!(
            lines[3],
            r#"LSM label "evil\n(enforce)" where the spec gives "docker-default""#
        );
        assert_eq!(lines[4], "uid 0 where the spec's user is uid 1000");
        assert!(lines.iter().all(|l| !l.contains('\n')));
    }
}
