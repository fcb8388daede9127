//! The namespaces an OCI runtime was asked for, parsed from the files the runtimes keep: the
//! bundle's `config.json` (the OCI runtime spec, `linux.namespaces`, `linux.uidMappings`,
//! `annotations`) and runc's `state.json` (libcontainer's translation of it: `config.namespaces`
//! with `NEWNET`-style types, `config.uid_mappings`, and `config.labels`, where runc keeps the
//! spec's annotations as `KEY=VALUE`).
//!
//! Both also say what the spec grants the process (OCI `process.capabilities`,
//! `process.noNewPrivileges`, `process.user.uid`, `process.apparmorProfile`,
//! `process.selinuxLabel`, `linux.seccomp`, `linux.maskedPaths`; runc's `capabilities`,
//! `no_new_privileges`, `seccomp`, `apparmor_profile`, `process_label`, `mask_paths`): a
//! [`DeclaredPrivilege`] for the judging side of [`crate::privilege`].
//!
//! Pure functions of bytes: reading the files is [`super::source`]'s job.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::model::{NsType, PerType};
use crate::privilege::level::{HostNamespaces, all_capabilities};
use crate::privilege::{CapSet, DeclaredPrivilege, capability_number};

/// What a spec says of one namespace type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Declared {
    /// An entry without a path: the runtime makes a new namespace.
    New,
    /// An entry with a path: the runtime joins the namespace there (setns(2)), which may be
    /// another container's (`/proc/<pause pid>/ns/net`) or a bind mount (`/var/run/netns/…`).
    Joined(PathBuf),
    /// No entry: the container inherits the runtime's, in practice the host's.
    #[default]
    Host,
}

impl Declared {
    /// The label value: `new`, `joined` or `host`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Declared::New => "new",
            Declared::Joined(_) => "joined",
            Declared::Host => "host",
        }
    }
}

/// What one container's spec declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub namespaces: PerType<Declared>,
    /// Whether `uidMappings` is non-empty: the runtime is to map the container's ids in a user
    /// namespace of its own.
    pub uid_mappings: bool,
    /// The spec's annotations (bounded: see [`ANNOTATION_LIMIT`]).
    pub annotations: BTreeMap<String, String>,
    /// What the spec grants the container's process.
    pub privilege: DeclaredPrivilege,
}

impl Spec {
    /// Which of the namespaces the Pod Security Standards name (`hostNetwork`, `hostPID`,
    /// `hostIPC`) the spec leaves the host's, by leaving them out: for
    /// [`crate::privilege::level::declared_level`]. A joined path is taken as not the host's,
    /// as the pod's own sandbox is what CRI joins.
    pub fn host_namespaces(&self) -> HostNamespaces {
        let host = |t: NsType| self.namespaces[t] == Declared::Host;
        HostNamespaces {
            net: host(NsType::Net),
            pid: host(NsType::Pid),
            ipc: host(NsType::Ipc),
        }
    }
}

/// The most annotations kept from one spec; the rest are dropped. Only a handful are read.
pub const ANNOTATION_LIMIT: usize = 256;

/// Why a spec file could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecParseError {
    #[error("not the JSON expected: {0}")]
    Json(String),
    #[error("unknown namespace type {0:?}")]
    UnknownType(String),
    #[error("namespace type {0:?} listed twice")]
    Duplicate(String),
}

#[derive(Deserialize)]
struct OciConfig {
    #[serde(default)]
    process: Option<OciProcess>,
    #[serde(default)]
    linux: Option<OciLinux>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLinux {
    #[serde(default)]
    namespaces: Option<Vec<OciNamespace>>,
    #[serde(default)]
    uid_mappings: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    seccomp: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    masked_paths: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciProcess {
    #[serde(default)]
    capabilities: Option<CapabilityLists>,
    #[serde(default)]
    no_new_privileges: Option<bool>,
    #[serde(default)]
    user: Option<OciUser>,
    #[serde(default)]
    apparmor_profile: Option<String>,
    #[serde(default)]
    selinux_label: Option<String>,
}

#[derive(Deserialize)]
struct OciUser {
    #[serde(default)]
    uid: Option<u32>,
}

/// The capability sets of a spec, by name: the OCI spec's keys are lower case, runc's state
/// capitalizes them (`Bounding`); an absent or null list is an empty set.
#[derive(Deserialize)]
struct CapabilityLists {
    #[serde(default, alias = "Bounding")]
    bounding: Option<Vec<String>>,
    #[serde(default, alias = "Effective")]
    effective: Option<Vec<String>>,
    #[serde(default, alias = "Permitted")]
    permitted: Option<Vec<String>>,
    #[serde(default, alias = "Ambient")]
    ambient: Option<Vec<String>>,
}

/// A list of capability names as a set. A name the exporter does not know is a capability
/// newer than its table: it cannot be one of the named bits, so it stands for all the bits
/// above them, which keeps such a capability, once the kernel shows it, from counting as an
/// excess; the spec never fails for it.
fn named_set(names: Option<&[String]>) -> CapSet {
    names
        .unwrap_or_default()
        .iter()
        .fold(CapSet(0), |set, name| {
            CapSet(set.0 | capability_number(name).map_or(!all_capabilities().0, |c| 1u64 << c))
        })
}

/// The sets a spec grants. No `capabilities` at all: runc then leaves the process the
/// capabilities it has itself, which for a runtime running as root is every one; so the three
/// sets root gets are full (ambient stays empty: runc's own is).
fn granted(lists: Option<&CapabilityLists>, into: &mut DeclaredPrivilege) {
    let Some(c) = lists else {
        let every = CapSet(u64::MAX);
        (into.bounding, into.effective, into.permitted) = (every, every, every);
        return;
    };
    into.bounding = named_set(c.bounding.as_deref());
    into.effective = named_set(c.effective.as_deref());
    into.permitted = named_set(c.permitted.as_deref());
    into.ambient = named_set(c.ambient.as_deref());
}

/// Neither a null nor an empty string names a label.
fn label(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

#[derive(Deserialize)]
struct OciNamespace {
    #[serde(rename = "type")]
    ns_type: String,
    #[serde(default)]
    path: Option<String>,
}

/// The OCI spec's name of a namespace type (runtime-spec `config-linux.md`).
fn oci_type(name: &str) -> Option<NsType> {
    Some(match name {
        "cgroup" => NsType::Cgroup,
        "ipc" => NsType::Ipc,
        "mount" => NsType::Mnt,
        "network" => NsType::Net,
        "pid" => NsType::Pid,
        "time" => NsType::Time,
        "user" => NsType::User,
        "uts" => NsType::Uts,
        _ => return None,
    })
}

/// libcontainer's name of a namespace type (runc `libcontainer/configs/namespaces_linux.go`).
fn runc_type(name: &str) -> Option<NsType> {
    Some(match name {
        "NEWCGROUP" => NsType::Cgroup,
        "NEWIPC" => NsType::Ipc,
        "NEWNS" => NsType::Mnt,
        "NEWNET" => NsType::Net,
        "NEWPID" => NsType::Pid,
        "NEWTIME" => NsType::Time,
        "NEWUSER" => NsType::User,
        "NEWUTS" => NsType::Uts,
        _ => return None,
    })
}

fn declare<'a>(
    entries: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    parse_type: fn(&str) -> Option<NsType>,
) -> Result<PerType<Declared>, SpecParseError> {
    let mut out = PerType::<Option<Declared>>::default();
    for (name, path) in entries {
        let t = parse_type(name).ok_or_else(|| SpecParseError::UnknownType(name.to_owned()))?;
        if out[t].is_some() {
            return Err(SpecParseError::Duplicate(name.to_owned()));
        }
        out[t] = Some(match path {
            Some(p) if !p.is_empty() => Declared::Joined(PathBuf::from(p)),
            _ => Declared::New,
        });
    }
    let mut declared = PerType::<Declared>::default();
    for t in NsType::ALL {
        declared[t] = out[t].take().unwrap_or(Declared::Host);
    }
    Ok(declared)
}

fn bounded(annotations: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    annotations.into_iter().take(ANNOTATION_LIMIT).collect()
}

/// Parses an OCI runtime spec, `config.json`.
pub fn parse_oci_config(bytes: &[u8]) -> Result<Spec, SpecParseError> {
    let c: OciConfig =
        serde_json::from_slice(bytes).map_err(|e| SpecParseError::Json(e.to_string()))?;
    let linux = c.linux.unwrap_or(OciLinux {
        namespaces: None,
        uid_mappings: None,
        seccomp: None,
        masked_paths: None,
    });
    let uid_mappings = linux.uid_mappings.as_ref().is_some_and(|m| !m.is_empty());
    let mut privilege = DeclaredPrivilege {
        seccomp: linux.seccomp.is_some(),
        masked_paths: linux.masked_paths.is_some_and(|m| !m.is_empty()),
        user_namespace: uid_mappings,
        ..Default::default()
    };
    match c.process {
        Some(p) => {
            granted(p.capabilities.as_ref(), &mut privilege);
            privilege.no_new_privileges = p.no_new_privileges.unwrap_or(false);
            privilege.uid = p.user.and_then(|u| u.uid).unwrap_or(0);
            privilege.apparmor_profile = label(p.apparmor_profile);
            privilege.selinux_label = label(p.selinux_label);
        }
        None => granted(None, &mut privilege),
    }
    let entries = linux.namespaces.unwrap_or_default();
    Ok(Spec {
        namespaces: declare(
            entries
                .iter()
                .map(|n| (n.ns_type.as_str(), n.path.as_deref())),
            oci_type,
        )?,
        uid_mappings,
        annotations: bounded(c.annotations.unwrap_or_default()),
        privilege,
    })
}

#[derive(Deserialize)]
struct RuncState {
    config: RuncConfig,
}

#[derive(Deserialize)]
struct RuncConfig {
    #[serde(default)]
    namespaces: Option<Vec<OciNamespace>>,
    #[serde(default)]
    uid_mappings: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    labels: Option<Vec<String>>,
    #[serde(default)]
    capabilities: Option<CapabilityLists>,
    #[serde(default)]
    no_new_privileges: Option<bool>,
    #[serde(default)]
    seccomp: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    apparmor_profile: Option<String>,
    #[serde(default)]
    process_label: Option<String>,
    #[serde(default)]
    mask_paths: Option<Vec<serde_json::Value>>,
}

/// Parses runc's `state.json`: the spec as libcontainer keeps it. It keeps no process user
/// (runc holds `process.user` only while it starts the process), so the declared uid is 0
/// here; the reading side takes it from the bundle's `config.json` ([`runc_bundle_config`]).
pub fn parse_runc_state(bytes: &[u8]) -> Result<Spec, SpecParseError> {
    let s: RuncState =
        serde_json::from_slice(bytes).map_err(|e| SpecParseError::Json(e.to_string()))?;
    let uid_mappings = s
        .config
        .uid_mappings
        .as_ref()
        .is_some_and(|m| !m.is_empty());
    let mut privilege = DeclaredPrivilege {
        no_new_privileges: s.config.no_new_privileges.unwrap_or(false),
        seccomp: s.config.seccomp.is_some(),
        apparmor_profile: label(s.config.apparmor_profile),
        selinux_label: label(s.config.process_label),
        masked_paths: s.config.mask_paths.is_some_and(|m| !m.is_empty()),
        user_namespace: uid_mappings,
        ..Default::default()
    };
    granted(s.config.capabilities.as_ref(), &mut privilege);
    let entries = s.config.namespaces.unwrap_or_default();
    let labels = s.config.labels.unwrap_or_default();
    Ok(Spec {
        namespaces: declare(
            entries
                .iter()
                .map(|n| (n.ns_type.as_str(), n.path.as_deref())),
            runc_type,
        )?,
        uid_mappings,
        privilege,
        // runc adds `bundle=<dir>` beside the annotations; it is no annotation but harmless.
        annotations: bounded(labels.into_iter().filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })),
    })
}

#[derive(Deserialize)]
struct RuncBundleState {
    config: RuncBundleConfig,
}

#[derive(Deserialize)]
struct RuncBundleConfig {
    #[serde(default)]
    rootfs: Option<PathBuf>,
    #[serde(default)]
    labels: Option<Vec<String>>,
}

/// The bundle's `config.json` that runc's `state.json` names (the `bundle=<dir>` label runc
/// adds), for what `state.json` does not keep (`process.user`). `None` where there is no
/// label, the path is not absolute or has a `..`, or the bundle lies in the container's own
/// rootfs (`config.rootfs`), where the container could write the file.
pub fn runc_bundle_config(bytes: &[u8]) -> Option<PathBuf> {
    let s: RuncBundleState = serde_json::from_slice(bytes).ok()?;
    let bundle = s
        .config
        .labels?
        .into_iter()
        .find_map(|l| l.strip_prefix("bundle=").map(PathBuf::from))?;
    let plain = |p: &std::path::Path| {
        p.is_absolute()
            && p.components()
                .all(|c| !matches!(c, std::path::Component::ParentDir))
    };
    let rootfs = s.config.rootfs?;
    (plain(&bundle) && plain(&rootfs) && !bundle.starts_with(&rootfs))
        .then(|| bundle.join("config.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bundle's `config.json` only where the container cannot reach it.
    #[test]
    fn runc_names_its_bundle() {
        let state = |rootfs: &str, bundle: &str| {
            format!(r#"{{"config":{{"rootfs":"{rootfs}","labels":["a=b","bundle={bundle}"]}}}}"#)
        };
        assert_eq!(
            runc_bundle_config(state("/b/rootfs", "/b").as_bytes()),
            Some(PathBuf::from("/b/config.json"))
        );
        assert_eq!(
            runc_bundle_config(state("/images/x", "/run/b").as_bytes()),
            Some(PathBuf::from("/run/b/config.json"))
        );
        for (rootfs, bundle) in [
            ("/b/rootfs", "b"),
            ("/b/rootfs", "/b/rootfs/../rootfs/b"),
            ("/b/rootfs", "/b/rootfs/etc"),
            ("/b", "/b"),
            ("/", "/b"),
        ] {
            assert_eq!(
                runc_bundle_config(state(rootfs, bundle).as_bytes()),
                None,
                "{rootfs} {bundle}"
            );
        }
        assert_eq!(runc_bundle_config(br#"{"config":{"rootfs":"/r"}}"#), None);
        assert_eq!(runc_bundle_config(b"[]"), None);
    }

    /// A containerd CRI app container's spec, cut to what is read (containerd 1.6 on this
    /// machine, `<state>/io.containerd.runtime.v2.task/k8s.io/<id>/config.json`).
    const CRI_APP: &[u8] = br#"{"ociVersion":"1.0.2-dev","process":{"args":["sleep","1000"]},
      "annotations":{"io.kubernetes.cri.container-type":"container",
        "io.kubernetes.cri.sandbox-name":"web-0","io.kubernetes.cri.sandbox-namespace":"shop",
        "io.kubernetes.cri.container-name":"nginx"},
      "linux":{"namespaces":[{"type":"pid","path":"/proc/4242/ns/pid"},
        {"type":"ipc","path":"/proc/4242/ns/ipc"},{"type":"uts","path":"/proc/4242/ns/uts"},
        {"type":"mount"},{"type":"network","path":"/proc/4242/ns/net"}]}}"#;

    #[test]
    fn a_cri_container_joins_its_sandbox_and_inherits_the_rest() {
        let s = parse_oci_config(CRI_APP).unwrap();
        let joined = |t: &str| Declared::Joined(PathBuf::from(format!("/proc/4242/ns/{t}")));
        assert_eq!(s.namespaces[NsType::Net], joined("net"));
        assert_eq!(s.namespaces[NsType::Pid], joined("pid"));
        assert_eq!(s.namespaces[NsType::Mnt], Declared::New);
        for t in [NsType::User, NsType::Cgroup, NsType::Time] {
            assert_eq!(s.namespaces[t], Declared::Host, "{t}");
        }
        assert!(!s.uid_mappings);
        assert_eq!(s.annotations["io.kubernetes.cri.sandbox-name"], "web-0");
    }

    #[test]
    fn user_namespaces_and_empty_paths() {
        let s = parse_oci_config(
            br#"{"linux":{"namespaces":[{"type":"user"},{"type":"network","path":""}],
                "uidMappings":[{"containerID":0,"hostID":100000,"size":65536}]}}"#,
        )
        .unwrap();
        assert_eq!(s.namespaces[NsType::User], Declared::New);
        assert_eq!(
            s.namespaces[NsType::Net],
            Declared::New,
            "an empty path is none"
        );
        assert!(s.uid_mappings);
        // No linux section: every type is inherited.
        let s = parse_oci_config(b"{}").unwrap();
        assert!(s.namespaces.values().all(|d| *d == Declared::Host));
        let every = HostNamespaces {
            net: true,
            pid: true,
            ipc: true,
        };
        assert_eq!(s.host_namespaces(), every);
        // hostPID as CRI writes it: no pid entry; the others the sandbox's, by path.
        let s = parse_oci_config(
            br#"{"linux":{"namespaces":[{"type":"network","path":"/proc/9/ns/net"},
                {"type":"ipc","path":"/proc/9/ns/ipc"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            s.host_namespaces(),
            HostNamespaces {
                pid: true,
                ..Default::default()
            }
        );
    }

    #[test]
    fn bad_specs_say_why() {
        for (bytes, want) in [
            (&b"{"[..], "not the JSON expected"),
            (b"\"spec\"", "not the JSON expected"),
            (
                br#"{"linux":{"namespaces":[{"type":"net"}]}}"#,
                "unknown namespace type \"net\"",
            ),
            (
                br#"{"linux":{"namespaces":[{"type":"pid"},{"type":"pid","path":"/x"}]}}"#,
                "listed twice",
            ),
        ] {
            let e = parse_oci_config(bytes).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    /// runc 1.1's `state.json`, cut to what is read: libcontainer's types, `uid_mappings`,
    /// and the annotations among the labels.
    #[test]
    fn runc_state() {
        let s = parse_runc_state(
            br#"{"id":"x","init_process_pid":77,"config":{"namespaces":[
                {"type":"NEWNS","path":""},{"type":"NEWNET","path":"/var/run/netns/cni-1"},
                {"type":"NEWPID","path":""},{"type":"NEWUSER","path":""}],
              "uid_mappings":[{"container_id":0,"host_id":100000,"size":65536}],
              "labels":["bundle=/run/b","io.kubernetes.pod.name=web-0"]},
              "namespace_paths":{"NEWNET":"/proc/77/ns/net"}}"#,
        )
        .unwrap();
        assert_eq!(s.namespaces[NsType::Mnt], Declared::New);
        assert_eq!(
            s.namespaces[NsType::Net],
            Declared::Joined("/var/run/netns/cni-1".into())
        );
        assert_eq!(s.namespaces[NsType::Ipc], Declared::Host);
        assert!(s.uid_mappings);
        assert_eq!(s.annotations["io.kubernetes.pod.name"], "web-0");
        let null =
            parse_runc_state(br#"{"config":{"namespaces":null,"uid_mappings":null}}"#).unwrap();
        assert!(!null.uid_mappings);
        assert!(parse_runc_state(br#"{"config":{"namespaces":[{"type":"network"}]}}"#).is_err());
    }

    #[test]
    fn annotations_are_bounded() {
        let many: Vec<String> = (0..1000).map(|i| format!("\"k{i:04}\":\"v\"")).collect();
        let json = format!("{{\"annotations\":{{{}}}}}", many.join(","));
        let s = parse_oci_config(json.as_bytes()).unwrap();
        assert_eq!(s.annotations.len(), ANNOTATION_LIMIT);
    }

    /// Real files, whole, captured on this machine (tests/fixtures/specs/), each with the
    /// `/proc/PID/status` its process showed: Docker 20.10 (dockerd's own containerd, bundle
    /// `config.json` under `<exec-root>/containerd/daemon/io.containerd.runtime.v2.task/moby/`,
    /// runc state under `<exec-root>/runtime-runc/moby/`), Podman 4.3 with runc
    /// (`<root>/overlay-containers/<id>/userdata/config.json`), and runc 1.1 alone (`runc spec`
    /// edited, state under `--root`).
    #[test]
    fn what_real_specs_grant() {
        use crate::privilege::level::capability_set;
        let fixture = |name: &str| {
            let path = format!("{}/tests/fixtures/specs/{name}", env!("CARGO_MANIFEST_DIR"));
            std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        let oci = |name: &str| parse_oci_config(&fixture(name)).unwrap().privilege;
        let runc = |name: &str| parse_runc_state(&fixture(name)).unwrap().privilege;
        // CapBnd a80425fb, CapEff the same, NoNewPrivs 0, Seccomp 2, uid 0.
        const DOCKER: u64 = 0xa804_25fb;
        let sys_admin = capability_set(&["SYS_ADMIN"]).0;
        let docker = DeclaredPrivilege {
            effective: CapSet(DOCKER),
            permitted: CapSet(DOCKER),
            bounding: CapSet(DOCKER),
            ambient: CapSet(0),
            no_new_privileges: false,
            seccomp: true,
            uid: 0,
            apparmor_profile: None,
            selinux_label: None,
            masked_paths: true,
            user_namespace: false,
        };
        assert_eq!(oci("docker-default.config.json"), docker);
        // Uid 1000: CapEff 0, CapBnd a80425fb; Docker leaves the spec's effective and
        // permitted sets empty for a user that is not root.
        assert_eq!(
            oci("docker-user-1000.config.json"),
            DeclaredPrivilege {
                uid: 1000,
                effective: CapSet(0),
                permitted: CapSet(0),
                ..docker.clone()
            }
        );
        // NoNewPrivs 1.
        assert_eq!(
            oci("docker-no-new-privileges.config.json"),
            DeclaredPrivilege {
                no_new_privileges: true,
                ..docker.clone()
            }
        );
        // Seccomp 0; runc's state keeps no user.
        assert_eq!(
            runc("docker-seccomp-unconfined.state.json"),
            DeclaredPrivilege {
                seccomp: false,
                ..docker.clone()
            }
        );
        // CapBnd a82425fb.
        let added = CapSet(DOCKER | sys_admin);
        assert_eq!(
            runc("docker-cap-add-sys-admin.state.json"),
            DeclaredPrivilege {
                effective: added,
                permitted: added,
                bounding: added,
                ..docker.clone()
            }
        );
        // Uid 100000 on the host (uid_map 0 100000 65536), CapBnd a80425fb.
        assert_eq!(
            oci("podman-uidmap.config.json"),
            DeclaredPrivilege {
                user_namespace: true,
                ..docker.clone()
            }
        );
        // CapBnd 20000420, CapAmb 0 (ambient needs the inheritable set, which the spec
        // leaves empty), NoNewPrivs 1, Seccomp 2.
        let runc_caps = CapSet(0x2000_0420);
        let runc_spec = DeclaredPrivilege {
            effective: runc_caps,
            permitted: runc_caps,
            bounding: runc_caps,
            ambient: runc_caps,
            no_new_privileges: true,
            seccomp: true,
            masked_paths: true,
            ..Default::default()
        };
        assert_eq!(oci("runc-no-new-privs-seccomp.config.json"), runc_spec);
        assert_eq!(runc("runc-no-new-privs-seccomp.state.json"), runc_spec);
        // containerd 1.6's CRI, driven as tests/it/support/cri.rs drives it (no seccomp profile
        // and no masked paths asked for, as kubelet would ask): the pause container sets
        // noNewPrivileges and masks /proc (NoNewPrivs 1, Seccomp 0); the app does neither
        // (NoNewPrivs 0, Seccomp 0); both CapBnd a80425fb.
        let spec = parse_oci_config(&fixture("cri-app.config.json")).unwrap();
        assert_eq!(spec.host_namespaces(), HostNamespaces::default());
        let docker_spec = parse_oci_config(&fixture("docker-default.config.json")).unwrap();
        assert_eq!(docker_spec.host_namespaces(), HostNamespaces::default());
        let cri_app = DeclaredPrivilege {
            seccomp: false,
            masked_paths: false,
            ..docker.clone()
        };
        assert_eq!(oci("cri-app.config.json"), cri_app);
        assert_eq!(runc("cri-app.state.json"), cri_app);
        assert_eq!(
            oci("cri-sandbox.config.json"),
            DeclaredPrivilege {
                no_new_privileges: true,
                masked_paths: true,
                ..cri_app
            }
        );
    }

    #[test]
    fn capabilities_absent_unknown_and_labels() {
        // No capabilities: runc leaves its own, every one.
        let p = parse_oci_config(br#"{"process":{"user":{"uid":0}}}"#)
            .unwrap()
            .privilege;
        assert_eq!(p.bounding, CapSet(u64::MAX));
        assert_eq!(p.ambient, CapSet(0));
        let p = parse_runc_state(br#"{"config":{"capabilities":null}}"#)
            .unwrap()
            .privilege;
        assert_eq!(p.effective, CapSet(u64::MAX));
        // Listed: absent lists are empty; an unknown name is every bit above the known ones,
        // and fails nothing.
        let p = parse_oci_config(
            br#"{"process":{"capabilities":{"bounding":["CAP_KILL","CAP_FROM_THE_FUTURE"],
                "effective":null},"apparmorProfile":"","selinuxLabel":"u:r:container_t:s0"},
              "linux":{"seccomp":null,"maskedPaths":[]}}"#,
        )
        .unwrap()
        .privilege;
        assert_eq!(p.bounding.0 & ((1 << 41) - 1), 1 << 5);
        assert_eq!(p.bounding.0 >> 41, (1 << 23) - 1);
        assert_eq!((p.effective, p.permitted), (CapSet(0), CapSet(0)));
        assert_eq!(p.apparmor_profile, None);
        assert_eq!(p.selinux_label.as_deref(), Some("u:r:container_t:s0"));
        assert!(!p.seccomp && !p.masked_paths);
        let p = parse_runc_state(
            br#"{"config":{"apparmor_profile":"docker-default","process_label":"",
                "capabilities":{"Bounding":["CAP_SYS_ADMIN"],"Inheritable":null}}}"#,
        )
        .unwrap()
        .privilege;
        assert_eq!(p.apparmor_profile.as_deref(), Some("docker-default"));
        assert_eq!(p.selinux_label, None);
        assert_eq!(p.bounding, CapSet(1 << 21));
        // A capability list of the wrong shape is a bad spec, said so.
        let e = parse_oci_config(br#"{"process":{"capabilities":{"bounding":"CAP_KILL"}}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("not the JSON expected"), "{e}");
    }
}
