//! Podman names, from containers/storage's list of the containers it holds.
//!
//! Interface: `<graph root>/<driver>-containers/containers.json` (`--path.podman`, default
//! `/var/lib/containers/storage`; `overlay-containers/` for the overlay driver,
//! `vfs-containers/`, `btrfs-containers/` for others) and, beside it,
//! `volatile-containers.json` (containers made with `--rm`, by containers/storage 1.45 and
//! later). Each is a JSON list of `{"id", "names", "image", "layer", "metadata", "created",
//! "flags"}`, one per container whose layers the store holds — Podman's, and buildah's and
//! CRI-O's where they share the store — written by an atomic rename at each create, rename
//! and remove, mode 0600 in a directory of mode 0700. `names[0]` is the name `podman run
//! --name` gave (`podman rename` sets it here too, libpod's `renameContainer`).
//!
//! Why this file and not libpod's own database: Podman keeps its containers and pods in a
//! BoltDB file (`libpod/bolt_state.db`; podman 4.3.1 on this machine) or, from podman 5 on,
//! SQLite (`db.sql`). Reading either needs a database engine and follows Podman's schema;
//! `containers.json` is plain JSON that containers/storage has kept in one shape since 2017,
//! and it has the name. Pod membership comes from cgroup paths instead
//! ([`crate::cgroup::parse_cgroup`]); a pod's name is only in the database, so it is not known.
//!
//! Only `id` and the first of `names` are kept; everything else, and every later name, is
//! skipped by the parser as it goes, so a hostile file costs no more than its valid entries.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};

use super::container_names::{ContainerNames, NameError, is_engine_name, read_bounded};
use crate::cgroup::is_container_id;
use crate::files::Stamp;

/// The largest list read, in bytes. A container's entry is about 500 bytes here, so this is
/// some 8,000 containers in one store.
pub const CONTAINERS_LIMIT: u64 = 4 << 20;

/// The lists containers/storage keeps in each `<driver>-containers/` directory.
const LISTS: [&str; 2] = ["containers.json", "volatile-containers.json"];

/// The names in the bytes of a `containers.json`, by container id. An entry whose id is not
/// 64 hex digits (a hand-made store's) or whose first name is not a container name is left
/// out; a file that is not a list of objects with an `id` is an error.
pub fn parse_containers(bytes: &[u8]) -> Result<HashMap<String, ContainerNames>, String> {
    let Containers(names) = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(names)
}

/// The list, parsed into the map directly: an entry is dropped as soon as it is read.
struct Containers(HashMap<String, ContainerNames>);

impl<'de> Deserialize<'de> for Containers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = Containers;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of containers")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Containers, A::Error> {
                let mut names = HashMap::new();
                while let Some(Entry { id, names: first }) = seq.next_element()? {
                    if let Some(FirstName(Some(container))) = first
                        && is_container_id(&id)
                        && is_engine_name(&container)
                    {
                        let entry = ContainerNames {
                            pod: String::new(),
                            k8s_namespace: String::new(),
                            container,
                            container_id: id.clone(),
                        };
                        names.insert(id, entry);
                    }
                }
                Ok(Containers(names))
            }
        }
        deserializer.deserialize_seq(List)
    }
}

/// One entry of the list: the fields kept; serde skips the others.
#[derive(Deserialize)]
struct Entry {
    id: String,
    names: Option<FirstName>,
}

/// The first of a list of names; the rest are skipped, not kept.
struct FirstName(Option<String>);

impl<'de> Deserialize<'de> for FirstName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct First;
        impl<'de> Visitor<'de> for First {
            type Value = FirstName;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of names")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstName, A::Error> {
                let first = seq.next_element::<String>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstName(first))
            }
        }
        deserializer.deserialize_seq(First)
    }
}

/// A containers/storage graph root.
#[derive(Debug)]
pub(super) struct PodmanStore {
    root: PathBuf,
}

impl PodmanStore {
    pub(super) fn new(root: PathBuf) -> Self {
        PodmanStore { root }
    }

    /// The stamp of every list in the store, in path order: what says when to read it
    /// again. The lists are rewritten by rename, which moves no directory's mtime, so they
    /// are found by listing the root (a handful of entries) and stamped each. A root that
    /// cannot be listed gives its own stamp, for [`read`](Self::read) to report; one that
    /// does not exist gives none.
    pub(super) fn stamps(&self) -> Vec<(PathBuf, Stamp)> {
        let listing = match std::fs::read_dir(&self.root) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => return vec![(self.root.clone(), Stamp::of(Err(e)))],
        };
        let mut stamps = Vec::new();
        for entry in listing.flatten() {
            let is_driver = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with("-containers"));
            if !is_driver || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            for list in LISTS {
                let path = entry.path().join(list);
                stamps.push((path.clone(), Stamp::of(std::fs::symlink_metadata(&path))));
            }
        }
        stamps.sort_by(|(a, _), (b, _)| a.cmp(b));
        stamps
    }

    /// Reads the lists `stamps` found (a list that does not exist is no error) and returns
    /// the names, the first list's where two name one id, and the failures.
    pub(super) fn read(
        &self,
        stamps: &[(PathBuf, Stamp)],
    ) -> (HashMap<String, ContainerNames>, Vec<NameError>) {
        let mut names = HashMap::new();
        let mut errors = Vec::new();
        for (path, stamp) in stamps {
            match stamp {
                Stamp::Failed(io::ErrorKind::NotFound) => {}
                Stamp::Failed(kind) => errors.push(NameError::io(path, io::Error::from(*kind))),
                Stamp::Seen { .. } => match read_list(path) {
                    Ok(list) => {
                        for (id, entry) in list {
                            names.entry(id).or_insert(entry);
                        }
                    }
                    Err(e) => errors.push(e),
                },
            }
        }
        (names, errors)
    }
}

fn read_list(path: &Path) -> Result<HashMap<String, ContainerNames>, NameError> {
    let bytes = read_bounded(path, CONTAINERS_LIMIT)?;
    parse_containers(&bytes).map_err(|detail| NameError::parse(path, detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::NameErrorReason;

    const ID: &str = "7c308bef06a80bef84d586a6e3659246ee5412165f5884945f7029a8d14fec46";

    /// `containers.json` as podman 4.3.1 wrote it on this machine: a pod's infra container,
    /// and a container of `podman run -d --network host --name nsx-pm`.
    const REAL: &str = r#"[{"id":"2327ba0bf0ab84eef196cc909fee0d2aa66cdc171bbf82bafdffc9a3af750f8f","names":["5fe9274922d8-infra"],"image":"e8cc6abf5d7caff09c3996943155219d92344f9db3d39767c4db25e04e2c42df","layer":"bf9f94a24b839338e0594088b2a7b6ee29d41c29f6bbfaf1469e751499178c44","metadata":"{\"image-name\":\"localhost/podman-pause:4.3.1-0\",\"image-id\":\"e8cc6abf5d7caff09c3996943155219d92344f9db3d39767c4db25e04e2c42df\",\"name\":\"5fe9274922d8-infra\",\"created-at\":1795945583}","created":"2026-11-29T09:46:23.701562458Z","flags":{"MountLabel":"","ProcessLabel":""}},{"id":"7c308bef06a80bef84d586a6e3659246ee5412165f5884945f7029a8d14fec46","names":["nsx-pm"],"image":"6aba5435d1784a9396623d430893032212d396aeaffaaaddb926b535828635ac","layer":"2d6107e234bba9500577f7f42938f3d0f1715108cf47bc59444bd29057b54cee","metadata":"{\"image-name\":\"localhost/nsx-busybox:latest\",\"image-id\":\"6aba5435d1784a9396623d430893032212d396aeaffaaaddb926b535828635ac\",\"name\":\"nsx-pm\",\"created-at\":1795945563}","created":"2026-11-29T09:46:03.653503949Z","flags":{"MountLabel":"","ProcessLabel":""}}]"#;

    fn container_names(list: &HashMap<String, ContainerNames>) -> Vec<(&str, &str)> {
        let mut v: Vec<_> = list
            .iter()
            .map(|(id, n)| {
                assert_eq!(id, &n.container_id);
                (&id[..4], n.container.as_str())
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn lists() {
        let real = parse_containers(REAL.as_bytes()).unwrap();
        assert_eq!(
            container_names(&real),
            [("2327", "5fe9274922d8-infra"), ("7c30", "nsx-pm")]
        );
        assert_eq!(
            real[ID],
            ContainerNames {
                pod: String::new(),
                k8s_namespace: String::new(),
                container: "nsx-pm".into(),
                container_id: ID.into(),
            }
        );
        let id = |c: char| -> String { std::iter::repeat_n(c, 64).collect() };
        // Entries that are left out, beside one that is not.
        let odd = format!(
            r#"[{{"id":"{}","names":["first","second"]}},
                {{"id":"{}","names":[]}},
                {{"id":"{}"}},
                {{"id":"{}","names":null}},
                {{"id":"short","names":["x"]}},
                {{"id":"{}","names":["a b"]}},
                {{"id":"{}","names":["/slash"]}}]"#,
            id('a'),
            id('b'),
            id('c'),
            id('d'),
            id('e'),
            id('f')
        );
        assert_eq!(
            container_names(&parse_containers(odd.as_bytes()).unwrap()),
            [("aaaa", "first")]
        );
        assert_eq!(parse_containers(b"[]").unwrap().len(), 0);
        for (bad, error) in [
            ("", "EOF"),
            ("{}", "expected a list of containers"),
            (r#"[{"names":["x"]}]"#, "missing field `id`"),
            (r#"[{"id":7}]"#, "invalid type"),
            (r#"[{"id":"x","names":"x"}]"#, "expected a list of names"),
            (r#"[{"id":"x","names":[7]}]"#, "invalid type"),
            (r#"[1]"#, "invalid type"),
            ("[{\"id\":\"x\"}", "EOF"),
        ] {
            let got = parse_containers(bad.as_bytes());
            assert!(
                got.as_ref().is_err_and(|e| e.contains(error)),
                "{bad:?}: {got:?}, want an error with {error:?}"
            );
        }
    }

    /// A list of a million names costs one kept name, not a million.
    #[test]
    fn later_names_are_not_kept() {
        let names = vec!["\"x\""; 1_000_000].join(",");
        let text = format!(r#"[{{"id":"{ID}","names":["first",{names}]}}]"#);
        let list = parse_containers(text.as_bytes()).unwrap();
        assert_eq!(container_names(&list), [("7c30", "first")]);
    }

    #[test]
    fn a_store_of_two_drivers_and_odd_files() {
        let root = tempfile::tempdir().unwrap();
        let store = PodmanStore::new(root.path().to_owned());
        assert!(store.stamps().is_empty(), "an empty root has no lists");
        let absent = PodmanStore::new(root.path().join("absent"));
        assert!(absent.stamps().is_empty(), "no store, no Podman: no error");

        let overlay = root.path().join("overlay-containers");
        std::fs::create_dir(&overlay).unwrap();
        std::fs::write(overlay.join("containers.json"), REAL).unwrap();
        let volatile = format!(r#"[{{"id":"{}","names":["rm-me"]}}]"#, "a".repeat(64));
        std::fs::write(overlay.join("volatile-containers.json"), volatile).unwrap();
        let vfs = root.path().join("vfs-containers");
        std::fs::create_dir(&vfs).unwrap();
        // The same id under another driver: the first list in path order wins.
        let other = format!(r#"[{{"id":"{ID}","names":["from-vfs"]}}]"#);
        std::fs::write(vfs.join("containers.json"), other).unwrap();
        std::fs::write(vfs.join("volatile-containers.json"), "[{").unwrap();
        // Not a driver's directory, and a driver's name on a file.
        std::fs::create_dir(root.path().join("overlay-images")).unwrap();
        std::fs::write(root.path().join("btrfs-containers"), "").unwrap();

        let stamps = store.stamps();
        let paths: Vec<_> = stamps
            .iter()
            .map(|(p, _)| p.strip_prefix(root.path()).unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "overlay-containers/containers.json",
                "overlay-containers/volatile-containers.json",
                "vfs-containers/containers.json",
                "vfs-containers/volatile-containers.json",
            ]
        );
        let (names, errors) = store.read(&stamps);
        assert_eq!(
            container_names(&names),
            [
                ("2327", "5fe9274922d8-infra"),
                ("7c30", "nsx-pm"),
                ("aaaa", "rm-me")
            ]
        );
        let reasons: Vec<_> = errors.iter().map(NameError::reason).collect();
        assert_eq!(reasons, [NameErrorReason::ParseError], "{errors:?}");

        // A list rewritten by rename (containers/storage's atomic write) stamps anew.
        let renamed = format!(r#"[{{"id":"{ID}","names":["renamed"]}}]"#);
        std::fs::write(root.path().join("new"), renamed).unwrap();
        std::fs::rename(root.path().join("new"), overlay.join("containers.json")).unwrap();
        assert_ne!(store.stamps(), stamps);
        let (names, _) = store.read(&store.stamps());
        assert_eq!(names[ID].container, "renamed");

        // Too large: refused by its size.
        let big = std::fs::File::options()
            .write(true)
            .open(vfs.join("containers.json"))
            .unwrap();
        big.set_len(CONTAINERS_LIMIT + 1).unwrap();
        let (_, errors) = store.read(&store.stamps());
        let reasons: Vec<_> = errors.iter().map(NameError::reason).collect();
        assert_eq!(
            reasons,
            [NameErrorReason::TooLarge, NameErrorReason::ParseError]
        );
    }

    #[test]
    fn an_unreadable_root_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("storage");
        std::fs::write(&file, "").unwrap();
        let store = PodmanStore::new(file);
        let stamps = store.stamps();
        assert_eq!(stamps.len(), 1);
        let (names, errors) = store.read(&stamps);
        assert!(names.is_empty());
        let reasons: Vec<_> = errors.iter().map(NameError::reason).collect();
        assert_eq!(reasons, [NameErrorReason::IoError]);
    }
}
