//! The sharing policy: which namespace sharing is expected. Everything else is a finding.
//!
//! Three rules (see [`Rule`]). `host_namespace` applies to the types in
//! `host_namespace_types` (default `net pid ipc uts cgroup`; `user` and `time` are normally
//! shared with the host), `cross_workload` to those in `cross_workload_types` (the same
//! default), and `host_mount_from_container` always: a container process in the host's mount
//! namespace is what `nsenter -t 1 -m` leaves behind, and only an allow rule that names that
//! rule explicitly silences it.
//!
//! ```yaml
//! policy:
//!   allow:
//!     - name: kube-system may use the host network and pid namespace
//!       k8s_namespace: kube-system
//!       pod: "kube-proxy-.*|calico-node-.*"   # anchored regex, optional
//!       container: ".*"                        # anchored regex, optional
//!       runtime: containerd                    # optional
//!       types: [net, pid]                      # optional, default all
//!       rules: [host_namespace]                # optional, default host_namespace, cross_workload
//! ```

use regex::Regex;
use serde::Deserialize;

use crate::attribution::Container;
use crate::cgroup::Runtime;
use crate::model::{CgroupLayout, NsType, PerType};

label_enum! {
    /// A kind of unexpected sharing; the label value is the `rule` label.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Rule {
        /// A container process sits in the host's namespace of a forbidden type.
        HostNamespace = "host_namespace",
        /// One namespace holds processes of two different pods (or non-Kubernetes containers).
        CrossWorkload = "cross_workload",
        /// A process whose cgroup says container X sits in the host's mount namespace.
        HostMountFromContainer = "host_mount_from_container",
        /// A container process in a namespace its OCI spec did not give it: the host's, or
        /// one that holds another workload's processes. Needs no allowlist: what a spec
        /// declares is never one.
        UndeclaredNamespace = "undeclared_namespace",
        /// A spec with `uidMappings` whose process is in the host's user namespace, or one
        /// without a user namespace whose first process is not in the host's.
        UserNamespaceNotApplied = "user_namespace_not_applied",
        /// A process that its pid namespace, or its own earlier read, places in a container
        /// and whose cgroup file names the host, a pod, a monitor or another container: it
        /// moved out of its container's cgroup (type `cgroup`). It stays its container's for
        /// every other rule.
        LeftContainerCgroup = "left_container_cgroup",
        /// A container process holding more privilege than its spec declared (capabilities,
        /// seccomp off, `no_new_privs` off, another label, uid 0, host uid 0), or, without a
        /// spec, more than its container's first process (type `user`).
        PrivilegeExceedsDeclared = "privilege_exceeds_declared",
    }
}

/// The `policy` section as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default)]
    pub host_namespace_types: Option<Vec<String>>,
    #[serde(default)]
    pub cross_workload_types: Option<Vec<String>>,
    #[serde(default)]
    pub allow: Vec<RawAllow>,
}

/// One allow rule as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllow {
    pub name: Option<String>,
    pub k8s_namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub runtime: Option<String>,
    pub types: Option<Vec<String>>,
    pub rules: Option<Vec<String>>,
}

/// A policy problem: the key it is about and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct PolicyError {
    pub key: String,
    pub problem: String,
}

/// A set of namespace types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeSet(PerType<bool>);

impl TypeSet {
    pub fn of(types: &[NsType]) -> Self {
        let mut s = PerType::splat(false);
        for &t in types {
            s[t] = true;
        }
        TypeSet(s)
    }

    pub fn contains(&self, t: NsType) -> bool {
        self.0[t]
    }

    /// The same set without `t`.
    pub fn without(mut self, t: NsType) -> Self {
        self.0[t] = false;
        self
    }

    /// The types in the set, comma-separated in label order (for logs).
    pub fn names(&self) -> String {
        NsType::ALL
            .into_iter()
            .filter(|&t| self.contains(t))
            .map(NsType::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn parse(key: &str, names: &[String]) -> Result<Self, PolicyError> {
        let types = names
            .iter()
            .map(|n| {
                n.parse::<NsType>().map_err(|e| PolicyError {
                    key: key.to_owned(),
                    problem: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TypeSet::of(&types))
    }
}

const DEFAULT_FORBIDDEN: [NsType; 5] = [
    NsType::Net,
    NsType::Pid,
    NsType::Ipc,
    NsType::Uts,
    NsType::Cgroup,
];

/// One validated allow rule.
#[derive(Clone, Debug)]
pub struct AllowRule {
    pub name: String,
    k8s_namespace: Option<String>,
    pod: Option<Regex>,
    container: Option<Regex>,
    runtime: Option<String>,
    types: Option<TypeSet>,
    rules: [bool; Rule::ALL.len()],
}

/// The validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub host_namespace_types: TypeSet,
    pub cross_workload_types: TypeSet,
    pub allow: Vec<AllowRule>,
    /// Whether `host_namespace_types` was written out rather than defaulted.
    host_namespace_types_written: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::try_from(RawPolicy::default()).expect("the default policy is valid")
    }
}

fn anchored(key: String, pattern: &str) -> Result<Regex, PolicyError> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| PolicyError {
        key,
        // The regex crate's message spans lines; its last line says what is wrong.
        problem: format!(
            "invalid regex {pattern:?}: {}",
            e.to_string().lines().last().unwrap_or("").trim()
        ),
    })
}

impl TryFrom<RawPolicy> for Policy {
    type Error = PolicyError;

    fn try_from(raw: RawPolicy) -> Result<Policy, PolicyError> {
        let types = |key: &str, v: Option<Vec<String>>| match v {
            Some(names) => TypeSet::parse(key, &names),
            None => Ok(TypeSet::of(&DEFAULT_FORBIDDEN)),
        };
        let mut allow = Vec::new();
        for (i, a) in raw.allow.into_iter().enumerate() {
            let key = |field: &str| format!("policy.allow[{i}].{field}");
            let rules = match &a.rules {
                // By default the two rules about sharing; the host mount one and the spec
                // ones must be named.
                None => Rule::ALL.map(|r| matches!(r, Rule::HostNamespace | Rule::CrossWorkload)),
                Some(names) => {
                    let mut r = [false; Rule::ALL.len()];
                    for n in names {
                        let rule = Rule::ALL
                            .into_iter()
                            .find(|rule| rule.as_str() == n)
                            .ok_or_else(|| PolicyError {
                                key: key("rules"),
                                problem: format!(
                                    "unknown rule {n:?} (expected host_namespace, cross_workload, host_mount_from_container, undeclared_namespace or user_namespace_not_applied)"
                                ),
                            })?;
                        r[rule.index()] = true;
                    }
                    r
                }
            };
            allow.push(AllowRule {
                name: a.name.clone().unwrap_or_else(|| format!("allow[{i}]")),
                pod: a
                    .pod
                    .as_deref()
                    .map(|p| anchored(key("pod"), p))
                    .transpose()?,
                container: a
                    .container
                    .as_deref()
                    .map(|p| anchored(key("container"), p))
                    .transpose()?,
                types: a
                    .types
                    .as_deref()
                    .map(|t| TypeSet::parse(&key("types"), t))
                    .transpose()?,
                k8s_namespace: a.k8s_namespace,
                runtime: a
                    .runtime
                    .map(|r| known_runtime(&key("runtime"), r))
                    .transpose()?,
                rules,
            });
        }
        Ok(Policy {
            host_namespace_types_written: raw.host_namespace_types.is_some(),
            host_namespace_types: types("policy.host_namespace_types", raw.host_namespace_types)?,
            cross_workload_types: types("policy.cross_workload_types", raw.cross_workload_types)?,
            allow,
        })
    }
}

/// `runtime` if it is a value of the `runtime` label: a rule whose runtime no container can
/// have (`crio` for `cri-o`) would load and never match.
fn known_runtime(key: &str, runtime: String) -> Result<String, PolicyError> {
    if Runtime::ALL.iter().any(|r| r.as_str() == runtime) {
        return Ok(runtime);
    }
    let known: Vec<&str> = Runtime::ALL.iter().map(|r| r.as_str()).collect();
    Err(PolicyError {
        key: key.to_owned(),
        problem: format!("unknown runtime {runtime:?}; one of {}", known.join(", ")),
    })
}

impl AllowRule {
    fn matches(&self, rule: Rule, ns_type: NsType, c: &Container) -> bool {
        let names = c.names.as_ref();
        let pod = names.map_or("", |n| n.pod.as_str());
        let container = names.map_or("", |n| n.container.as_str());
        let k8s_namespace = names.map(|n| n.k8s_namespace.as_str());
        self.rules[rule.index()]
            && self.types.is_none_or(|t| t.contains(ns_type))
            && self
                .k8s_namespace
                .as_deref()
                .is_none_or(|want| Some(want) == k8s_namespace)
            && self
                .runtime
                .as_deref()
                .is_none_or(|r| r == c.runtime.as_str())
            && self.pod.as_ref().is_none_or(|re| re.is_match(pod))
            && self
                .container
                .as_ref()
                .is_none_or(|re| re.is_match(container))
    }
}

impl Policy {
    /// The policy in force on a host of this cgroup layout. On v1 and hybrid hosts runc,
    /// containerd, Docker and Podman make no cgroup namespace (they do only on the unified
    /// hierarchy), so every container shares the host's and `cgroup` leaves the default
    /// `host_namespace_types`; types written in the policy are kept as written.
    pub fn for_cgroup_layout(mut self, layout: CgroupLayout) -> Policy {
        if !self.host_namespace_types_written && !layout.runtimes_unshare_cgroup() {
            self.host_namespace_types = self.host_namespace_types.without(NsType::Cgroup);
        }
        self
    }

    /// The first allow rule that allows this sharing, if any.
    pub fn allowed_by(&self, rule: Rule, ns_type: NsType, c: &Container) -> Option<&AllowRule> {
        self.allow.iter().find(|a| a.matches(rule, ns_type, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::ContainerNames;
    use crate::cgroup::Runtime;

    fn container(ns: &str, pod: &str, name: &str) -> Container {
        Container {
            runtime: Runtime::Containerd,
            id: "a".repeat(64),
            pod_uid: Some("0d33f94b-ab1a-4c5e-9d1f-2c8f2a4e6b7c".into()),
            names: Some(ContainerNames {
                pod: pod.into(),
                k8s_namespace: ns.into(),
                container: name.into(),
                container_id: "a".repeat(64),
            }),
        }
    }

    fn policy(yaml_allow: Vec<RawAllow>) -> Policy {
        Policy::try_from(RawPolicy {
            allow: yaml_allow,
            ..RawPolicy::default()
        })
        .unwrap()
    }

    #[test]
    fn defaults_forbid_all_but_user_and_time() {
        let p = Policy::default();
        for t in NsType::ALL {
            let want = !matches!(t, NsType::User | NsType::Time | NsType::Mnt);
            assert_eq!(p.host_namespace_types.contains(t), want, "{t}");
        }
    }

    #[test]
    fn cgroup_leaves_the_defaults_where_runtimes_share_the_hosts_cgroup_namespace() {
        use CgroupLayout::*;
        for (layout, want) in [
            (Legacy, false),
            (Hybrid, false),
            (Unified, true),
            (Unknown, true),
        ] {
            let p = Policy::default().for_cgroup_layout(layout);
            assert_eq!(
                p.host_namespace_types.contains(NsType::Cgroup),
                want,
                "{layout:?}"
            );
            assert!(p.host_namespace_types.contains(NsType::Net));
            assert_eq!(
                p.cross_workload_types,
                Policy::default().cross_workload_types
            );
        }
        // Named in the policy: kept on every layout.
        let written = Policy::try_from(RawPolicy {
            host_namespace_types: Some(vec!["cgroup".into()]),
            ..RawPolicy::default()
        })
        .unwrap();
        for layout in CgroupLayout::ALL {
            let p = written.clone().for_cgroup_layout(layout);
            assert_eq!(p.host_namespace_types.names(), "cgroup");
        }
    }

    #[test]
    fn allow_rules_match_on_every_field() {
        let p = policy(vec![RawAllow {
            name: Some("kube-system host net".into()),
            k8s_namespace: Some("kube-system".into()),
            pod: Some("kube-proxy-.*".into()),
            types: Some(vec!["net".into(), "pid".into()]),
            ..RawAllow::default()
        }]);
        let proxy = container("kube-system", "kube-proxy-x7k2p", "kube-proxy");
        assert!(
            p.allowed_by(Rule::HostNamespace, NsType::Net, &proxy)
                .is_some()
        );
        assert!(
            p.allowed_by(Rule::CrossWorkload, NsType::Pid, &proxy)
                .is_some()
        );
        // Not the listed types, not explicitly the host mount rule, not another namespace,
        // and the regex is anchored.
        assert!(
            p.allowed_by(Rule::HostNamespace, NsType::Ipc, &proxy)
                .is_none()
        );
        assert!(
            p.allowed_by(Rule::HostMountFromContainer, NsType::Mnt, &proxy)
                .is_none()
        );
        let other_ns = container("default", "kube-proxy-x7k2p", "kube-proxy");
        assert!(
            p.allowed_by(Rule::HostNamespace, NsType::Net, &other_ns)
                .is_none()
        );
        let prefixed = container("kube-system", "evil-kube-proxy-1", "kube-proxy");
        assert!(
            p.allowed_by(Rule::HostNamespace, NsType::Net, &prefixed)
                .is_none()
        );
        // Without names (no kubelet log directory) a namespace rule cannot match.
        let unnamed = Container {
            names: None,
            ..proxy.clone()
        };
        assert!(
            p.allowed_by(Rule::HostNamespace, NsType::Net, &unnamed)
                .is_none()
        );
    }

    #[test]
    fn host_mount_needs_an_explicit_rule() {
        let p = policy(vec![RawAllow {
            runtime: Some("containerd".into()),
            rules: Some(vec!["host_mount_from_container".into()]),
            ..RawAllow::default()
        }]);
        let c = container("ops", "debug", "shell");
        assert!(
            p.allowed_by(Rule::HostMountFromContainer, NsType::Mnt, &c)
                .is_some()
        );
        assert!(p.allowed_by(Rule::HostNamespace, NsType::Net, &c).is_none());
    }

    #[test]
    fn bad_policies_name_the_key() {
        let cases = [
            (
                RawAllow {
                    pod: Some("(".into()),
                    ..RawAllow::default()
                },
                "policy.allow[0].pod: invalid regex \"(\"",
            ),
            (
                RawAllow {
                    types: Some(vec!["network".into()]),
                    ..RawAllow::default()
                },
                "policy.allow[0].types: unknown namespace type \"network\"",
            ),
            (
                RawAllow {
                    rules: Some(vec!["host".into()]),
                    ..RawAllow::default()
                },
                "policy.allow[0].rules: unknown rule \"host\"",
            ),
        ];
        for (allow, want) in cases {
            let err = Policy::try_from(RawPolicy {
                allow: vec![allow],
                ..RawPolicy::default()
            })
            .unwrap_err()
            .to_string();
            assert!(err.starts_with(want), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let err = Policy::try_from(RawPolicy {
            host_namespace_types: Some(vec!["pids".into()]),
            ..RawPolicy::default()
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("policy.host_namespace_types: unknown namespace type")
        );
    }
}
