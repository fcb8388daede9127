//! Where each container's spec is on the node, and the cache that reads it only when it
//! changes.
//!
//! Interfaces: files the runtimes write for themselves, never a runtime's socket or API.
//! [`LOCATIONS`] lists them, in the order they are tried, relative to the host's `/run`
//! (`--path.run`) or to containers/storage's graph root (`--path.podman`):
//!
//! - containerd (CRI pods in namespace `k8s.io`, Docker's containers in `moby`, `ctr`'s in
//!   `default`): the bundle's `config.json`, `containerd/io.containerd.runtime.v2.task/<ns>/<id>/`;
//!   Docker's own containerd keeps it under `docker/containerd/daemon/…`.
//! - Podman and CRI-O (containers/storage): `overlay-containers/<id>/userdata/config.json`,
//!   under the graph root (Podman) or the run root `containers/storage` (CRI-O).
//! - crun: its state dir, `crun/<id>/config.json` (crun keeps the spec there for `crun exec`).
//! - runc: `state.json` under its root: `runc/<id>/` (plain runc), `containerd/runc/<ns>/<id>/`,
//!   `docker/runtime-runc/moby/<id>/`. It keeps no process user, so the declared uid is taken
//!   from the bundle's `config.json` it names, unless that lies in the container's rootfs.
//! - Last, the shim's working directory, which is the bundle: `/proc/<parent of the
//!   container's first process>/cwd/config.json` (needs CAP_SYS_PTRACE, as every
//!   `/proc/PID/cwd` of another user does). Tried only where the parent is outside every
//!   container: a container cannot choose its own parent.
//!
//! The runtimes keep these directories root-only (containerd's bundles and runc's state are
//! `0700` or `0711`), and the exporter runs as uid 65534: a refresh reads them with
//! CAP_DAC_READ_SEARCH, made effective in its thread only while it runs (where it is
//! permitted: the DaemonSet's `runtime-specs` component grants it).
//!
//! Each file is read as the name sources read theirs ([`read_bounded`]: a regular file, no
//! larger than [`SPEC_LIMIT`], its last component never a symlink), and read again only when
//! its stamp (device, inode, mtime, size) moves or after [`REREAD`]. A container seen with no
//! spec is looked for again every refresh: it costs a `stat` per location.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::spec::{Spec, SpecParseError, parse_oci_config, parse_runc_state, runc_bundle_config};
use crate::attribution::{NameError, REREAD_NAMES, read_bounded};
use crate::capabilities::Raised;
use crate::files::Stamp;

/// The largest spec read: a Kubernetes container's `config.json` is 10-40 KiB.
pub const SPEC_LIMIT: u64 = 1 << 20;

/// The longest a spec is used without being read again.
pub const REREAD: Duration = REREAD_NAMES;

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An OCI runtime spec (`config.json`).
    OciConfig,
    /// runc's `state.json`.
    RuncState,
}

/// Which root a location is relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Root {
    /// The host's `/run` (`--path.run`).
    Run,
    /// containers/storage's graph root (`--path.podman`).
    Storage,
}

/// One place a spec may be: `{ns}` is each containerd namespace found under `namespaces_in`,
/// `{id}` the container id.
struct Location {
    root: Root,
    pattern: &'static str,
    /// The directory whose entries are containerd's namespaces, for `{ns}`.
    namespaces_in: Option<&'static str>,
    format: Format,
}

/// Every place a spec may be, tried in this order; the first file found is the spec.
const LOCATIONS: &[Location] = &[
    Location {
        root: Root::Run,
        pattern: "containerd/io.containerd.runtime.v2.task/{ns}/{id}/config.json",
        namespaces_in: Some("containerd/io.containerd.runtime.v2.task"),
        format: Format::OciConfig,
    },
    Location {
        root: Root::Run,
        pattern: "docker/containerd/daemon/io.containerd.runtime.v2.task/moby/{id}/config.json",
        namespaces_in: None,
        format: Format::OciConfig,
    },
    Location {
        root: Root::Storage,
        pattern: "overlay-containers/{id}/userdata/config.json",
        namespaces_in: None,
        format: Format::OciConfig,
    },
    Location {
        root: Root::Run,
        pattern: "containers/storage/overlay-containers/{id}/userdata/config.json",
        namespaces_in: None,
        format: Format::OciConfig,
    },
    Location {
        root: Root::Run,
        pattern: "crun/{id}/config.json",
        namespaces_in: None,
        format: Format::OciConfig,
    },
    Location {
        root: Root::Run,
        pattern: "runc/{id}/state.json",
        namespaces_in: None,
        format: Format::RuncState,
    },
    Location {
        root: Root::Run,
        pattern: "containerd/runc/{ns}/{id}/state.json",
        namespaces_in: Some("containerd/runc"),
        format: Format::RuncState,
    },
    Location {
        root: Root::Run,
        pattern: "docker/runtime-runc/moby/{id}/state.json",
        namespaces_in: None,
        format: Format::RuncState,
    },
];

/// A failed read of a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Read(#[from] NameError),
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: SpecParseError,
    },
}

impl SpecError {
    /// The same failure as a name source's, for its counter and log.
    pub fn into_name_error(self) -> NameError {
        match self {
            SpecError::Read(e) => e,
            SpecError::Parse { path, source } => NameError::parse(&path, source.to_string()),
        }
    }
}

/// Reads and parses one spec file.
pub fn read_spec(path: &Path, format: Format) -> Result<Spec, SpecError> {
    read_spec_bytes(path, format).map(|(spec, _)| spec)
}

/// The spec at `path`, and the bytes it was parsed from.
fn read_spec_bytes(path: &Path, format: Format) -> Result<(Spec, Vec<u8>), SpecError> {
    let bytes = read_bounded(path, SPEC_LIMIT)?;
    let parsed = match format {
        Format::OciConfig => parse_oci_config(&bytes),
        Format::RuncState => parse_runc_state(&bytes),
    };
    let spec = parsed.map_err(|source| SpecError::Parse {
        path: path.to_owned(),
        source,
    })?;
    Ok((spec, bytes))
}

/// The declared uid in the bundle `config.json` runc's state names, read from the host's root
/// (`<procfs>/1/root`, as [`super::resolve_on_host`] does), or at the path itself where that
/// root cannot be entered (an exporter on the host). `Ok(None)` where it is gone: runc needs
/// no bundle once the container runs, and a removed one leaves the uid undeclared.
fn bundle_uid(procfs: &Path, config: &Path) -> Result<Option<u32>, SpecError> {
    let rel = config.strip_prefix("/").unwrap_or(config);
    let bytes = match read_bounded(&procfs.join("1/root").join(rel), SPEC_LIMIT) {
        Ok(bytes) => bytes,
        Err(_) => match read_bounded(config, SPEC_LIMIT) {
            Ok(bytes) => bytes,
            Err(NameError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        },
    };
    match parse_oci_config(&bytes) {
        Ok(spec) => Ok(Some(spec.privilege.uid)),
        Err(source) => Err(SpecError::Parse {
            path: config.to_owned(),
            source,
        }),
    }
}

/// One container's spec as last read.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    format: Format,
    stamp: Stamp,
    read_at: Instant,
    /// `None` where the read failed: tried again when the stamp moves.
    spec: Option<Arc<Spec>>,
}

/// A container to find the spec of: its id, and the pid of its first process's parent where
/// that parent is outside every container (the shim, whose cwd is the bundle).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub id: String,
    pub shim: Option<i32>,
}

/// The specs of the containers of the last refresh, by id.
pub type Specs = HashMap<String, Arc<Spec>>;

/// What a refresh found.
#[derive(Debug, Default)]
pub struct SpecRefresh {
    pub specs: Specs,
    /// Files read (not taken from the cache) in this refresh.
    pub reads: usize,
    pub errors: Vec<SpecError>,
}

/// The spec locations and the last read of each container's.
#[derive(Debug)]
pub struct SpecSources {
    run: PathBuf,
    storage: PathBuf,
    procfs: PathBuf,
    reread: Duration,
    cache: HashMap<String, Entry>,
}

impl SpecSources {
    /// Specs under the host's `/run` at `run`, the graph root `storage`, and the shims'
    /// working directories through `procfs`.
    pub fn new(run: PathBuf, storage: PathBuf, procfs: PathBuf) -> Self {
        SpecSources {
            run,
            storage,
            procfs,
            reread: REREAD,
            cache: HashMap::new(),
        }
    }

    /// Re-reads every spec at least this often (tests).
    pub fn reread_every(mut self, period: Duration) -> Self {
        self.reread = period;
        self
    }

    /// The procfs the shims' working directories and nsfs paths are read through.
    pub fn procfs(&self) -> &Path {
        &self.procfs
    }

    fn root(&self, root: Root) -> &Path {
        match root {
            Root::Run => &self.run,
            Root::Storage => &self.storage,
        }
    }

    /// Every candidate path for `id`, in [`LOCATIONS`] order, then the shim's cwd.
    fn candidates(
        &self,
        want: &Wanted,
        namespaces: &mut HashMap<&'static str, Vec<String>>,
    ) -> Vec<(PathBuf, Format)> {
        let mut out = Vec::new();
        for l in LOCATIONS {
            let root = self.root(l.root);
            let nss: Vec<String> = match l.namespaces_in {
                None => vec![String::new()],
                Some(dir) => namespaces
                    .entry(dir)
                    .or_insert_with(|| list_namespaces(&root.join(dir)))
                    .clone(),
            };
            for ns in nss {
                let rel = l.pattern.replace("{ns}", &ns).replace("{id}", &want.id);
                out.push((root.join(rel), l.format));
            }
        }
        if let Some(shim) = want.shim {
            let path = self.procfs.join(shim.to_string()).join("cwd/config.json");
            out.push((path, Format::OciConfig));
        }
        out
    }

    /// The specs of `wanted`, each read again only where its file changed or it is
    /// [`REREAD`] old at `now`; containers no longer wanted are forgotten.
    pub fn refresh(&mut self, wanted: &[Wanted], now: Instant) -> SpecRefresh {
        let mut out = SpecRefresh::default();
        // Every `stat` and read below is of a root-only directory; given back on return.
        let _read_search = Raised::read_search();
        let keep: HashSet<&str> = wanted.iter().map(|w| w.id.as_str()).collect();
        self.cache.retain(|id, _| keep.contains(id.as_str()));
        let mut namespaces = HashMap::new();
        for want in wanted {
            let cached = self.cache.get(&want.id).map(|e| {
                let stamp = Stamp::of(std::fs::symlink_metadata(&e.path));
                (e.path.clone(), e.format, stamp)
            });
            let found =
                match cached {
                    // Still there: the same file.
                    Some((path, format, stamp)) if !matches!(stamp, Stamp::Failed(_)) => {
                        Some((path, format, stamp))
                    }
                    _ => self.candidates(want, &mut namespaces).into_iter().find_map(
                        |(path, format)| {
                            let stamp = Stamp::of(std::fs::symlink_metadata(&path));
                            (!matches!(stamp, Stamp::Failed(_))).then_some((path, format, stamp))
                        },
                    ),
                };
            let Some((path, format, stamp)) = found else {
                self.cache.remove(&want.id);
                continue;
            };
            let reread = self.reread;
            let fresh = self.cache.get(&want.id).is_some_and(|e| {
                e.path == path
                    && e.stamp == stamp
                    && now.saturating_duration_since(e.read_at) < reread
            });
            if !fresh {
                out.reads += 1;
                let spec = match read_spec_bytes(&path, format) {
                    Ok((mut spec, bytes)) => {
                        // runc's state keeps no process user: its bundle's spec says it.
                        if format == Format::RuncState
                            && let Some(config) = runc_bundle_config(&bytes)
                        {
                            match bundle_uid(&self.procfs, &config) {
                                Ok(Some(uid)) => spec.privilege.uid = uid,
                                Ok(None) => {}
                                Err(e) => out.errors.push(e),
                            }
                        }
                        Some(Arc::new(spec))
                    }
                    Err(e) => {
                        out.errors.push(e);
                        None
                    }
                };
                self.cache.insert(
                    want.id.clone(),
                    Entry {
                        path,
                        format,
                        stamp,
                        read_at: now,
                        spec,
                    },
                );
            }
            if let Some(spec) = self.cache.get(&want.id).and_then(|e| e.spec.clone()) {
                out.specs.insert(want.id.clone(), spec);
            }
        }
        out
    }
}

/// The subdirectory names of `dir` (containerd's namespaces), sorted; none where it cannot be
/// listed. Names with a `/` or starting with `.` cannot occur in a listing or are skipped.
fn list_namespaces(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NsType;

    const ID: &str = "3959d7abfbd0221e5043fccbcb8040e9a1a4e6518dad483b7a33a131885e0283";

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn want(id: &str) -> Vec<Wanted> {
        vec![Wanted {
            id: id.into(),
            shim: None,
        }]
    }

    /// Each location is found, and the first in table order wins.
    #[test]
    fn every_location_is_found() {
        let run = tempfile::tempdir().unwrap();
        let storage = tempfile::tempdir().unwrap();
        let oci = br#"{"linux":{"namespaces":[{"type":"network"}]}}"#;
        let runc = br#"{"config":{"namespaces":[{"type":"NEWNET","path":""}]}}"#;
        let cases: [(&Path, String, &[u8]); 8] = [
            (
                run.path(),
                format!("containerd/io.containerd.runtime.v2.task/k8s.io/{ID}/config.json"),
                oci,
            ),
            (
                run.path(),
                format!(
                    "docker/containerd/daemon/io.containerd.runtime.v2.task/moby/{ID}/config.json"
                ),
                oci,
            ),
            (
                storage.path(),
                format!("overlay-containers/{ID}/userdata/config.json"),
                oci,
            ),
            (
                run.path(),
                format!("containers/storage/overlay-containers/{ID}/userdata/config.json"),
                oci,
            ),
            (run.path(), format!("crun/{ID}/config.json"), oci),
            (run.path(), format!("runc/{ID}/state.json"), runc),
            (
                run.path(),
                format!("containerd/runc/moby/{ID}/state.json"),
                runc,
            ),
            (
                run.path(),
                format!("docker/runtime-runc/moby/{ID}/state.json"),
                runc,
            ),
        ];
        for (root, rel, bytes) in &cases {
            let path = root.join(rel);
            write(&path, bytes);
            let mut s = SpecSources::new(run.path().into(), storage.path().into(), "/proc".into());
            let r = s.refresh(&want(ID), Instant::now());
            assert!(r.errors.is_empty(), "{rel}: {:?}", r.errors);
            let spec = r.specs.get(ID).unwrap_or_else(|| panic!("{rel} not found"));
            assert_eq!(
                spec.namespaces[NsType::Net],
                super::super::Declared::New,
                "{rel}"
            );
            std::fs::remove_file(&path).unwrap();
        }
    }

    /// Read once, then only when the file changes or a period is over; a container no longer
    /// wanted is forgotten.
    #[test]
    fn specs_are_read_when_they_change() {
        let run = tempfile::tempdir().unwrap();
        let path = run.path().join(format!("runc/{ID}/state.json"));
        write(&path, br#"{"config":{"namespaces":[]}}"#);
        let mut s = SpecSources::new(run.path().into(), "/nonexistent".into(), "/proc".into());
        let t0 = Instant::now();
        assert_eq!(s.refresh(&want(ID), t0).reads, 1);
        assert_eq!(s.refresh(&want(ID), t0 + Duration::from_secs(1)).reads, 0);
        write(&path, br#"{"config":{"namespaces":[{"type":"NEWPID"}]}}"#);
        let r = s.refresh(&want(ID), t0 + Duration::from_secs(2));
        assert_eq!(r.reads, 1);
        assert_eq!(
            r.specs[ID].namespaces[NsType::Pid],
            super::super::Declared::New
        );
        assert_eq!(
            s.refresh(&want(ID), t0 + REREAD + Duration::from_secs(2))
                .reads,
            1
        );
        assert_eq!(s.refresh(&[], t0).specs.len(), 0);
        assert!(s.cache.is_empty());
    }

    /// runc's state gives no uid; the bundle's `config.json` it names does, unless the bundle
    /// lies in the rootfs or is gone (then uid 0 as before, and no error).
    #[test]
    fn runc_state_takes_the_uid_from_its_bundle() {
        let run = tempfile::tempdir().unwrap();
        let bundle = tempfile::tempdir().unwrap();
        let path = run.path().join(format!("runc/{ID}/state.json"));
        let state = |rootfs: &Path| {
            format!(
                r#"{{"config":{{"rootfs":"{}","labels":["bundle={}"]}}}}"#,
                rootfs.display(),
                bundle.path().display()
            )
        };
        let config = bundle.path().join("config.json");
        write(&config, br#"{"process":{"user":{"uid":1000,"gid":1000}}}"#);
        let uid = |rootfs: &Path| {
            write(&path, state(rootfs).as_bytes());
            let mut s = SpecSources::new(run.path().into(), "/nonexistent".into(), "/proc".into());
            let r = s.refresh(&want(ID), Instant::now());
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            r.specs[ID].privilege.uid
        };
        assert_eq!(uid(&bundle.path().join("rootfs")), 1000);
        assert_eq!(uid(bundle.path()), 0, "the container could write it");
        std::fs::remove_file(&config).unwrap();
        assert_eq!(uid(&bundle.path().join("rootfs")), 0, "gone");
    }

    /// A symlink, a file too large and a bad spec are errors, each once until it changes.
    #[test]
    fn bad_files_are_errors_once() {
        let run = tempfile::tempdir().unwrap();
        let elsewhere = run.path().join("elsewhere.json");
        write(&elsewhere, br#"{"config":{}}"#);
        let path = run.path().join(format!("runc/{ID}/state.json"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let mut s = SpecSources::new(run.path().into(), "/nonexistent".into(), "/proc".into());
        let t0 = Instant::now();
        let r = s.refresh(&want(ID), t0);
        assert_eq!(r.errors.len(), 1, "a symlink is not followed");
        assert!(r.specs.is_empty());
        assert!(s.refresh(&want(ID), t0).errors.is_empty(), "said once");
        std::fs::remove_file(&path).unwrap();
        write(&path, &vec![b' '; SPEC_LIMIT as usize + 1]);
        let e = s.refresh(&want(ID), t0).errors.pop().unwrap();
        assert!(e.to_string().contains("larger than the limit"), "{e}");
        write(
            &path,
            b"{\"config\":{\"namespaces\":[{\"type\":\"NEWBOGUS\"}]}}",
        );
        let e = s.refresh(&want(ID), t0).errors.pop().unwrap();
        assert!(e.to_string().contains("NEWBOGUS"), "{e}");
    }
}
