//! The namespaces an OCI runtime was asked for, parsed from the files the runtimes keep: the
//! bundle's `config.json` (the OCI runtime spec, `linux.namespaces`, `linux.uidMappings`,
//! `annotations`) and runc's `state.json` (libcontainer's translation of it: `config.namespaces`
//! with `NEWNET`-style types, `config.uid_mappings`, and `config.labels`, where runc keeps the
//! spec's annotations as `KEY=VALUE`).
//!
//! Pure functions of bytes: reading the files is [`super::source`]'s job.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::model::{NsType, PerType};

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
    });
    let entries = linux.namespaces.unwrap_or_default();
    Ok(Spec {
        namespaces: declare(
            entries
                .iter()
                .map(|n| (n.ns_type.as_str(), n.path.as_deref())),
            oci_type,
        )?,
        uid_mappings: linux.uid_mappings.is_some_and(|m| !m.is_empty()),
        annotations: bounded(c.annotations.unwrap_or_default()),
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
}

/// Parses runc's `state.json`: the spec as libcontainer keeps it.
pub fn parse_runc_state(bytes: &[u8]) -> Result<Spec, SpecParseError> {
    let s: RuncState =
        serde_json::from_slice(bytes).map_err(|e| SpecParseError::Json(e.to_string()))?;
    let entries = s.config.namespaces.unwrap_or_default();
    let labels = s.config.labels.unwrap_or_default();
    Ok(Spec {
        namespaces: declare(
            entries
                .iter()
                .map(|n| (n.ns_type.as_str(), n.path.as_deref())),
            runc_type,
        )?,
        uid_mappings: s.config.uid_mappings.is_some_and(|m| !m.is_empty()),
        // runc adds `bundle=<dir>` beside the annotations; it is no annotation but harmless.
        annotations: bounded(labels.into_iter().filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
