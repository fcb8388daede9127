//! Docker names, from the file in which dockerd keeps each container.
//!
//! Interface: `<data root>/containers/<id>/config.v2.json` (`--path.docker`, default
//! `/var/lib/docker`): moby's `container.Container` as JSON, written by `CheckpointTo` through
//! an atomic file writer (a new file renamed over the old one), mode 0600 in directories of
//! mode 0700 and 0710, so only root or CAP_DAC_READ_SEARCH reads it. Its `ID` is the
//! container's id, the one `/proc/PID/cgroup` shows, and its `Name` the name with moby's
//! leading slash (`/web`). Only those two fields are kept; the rest (the config, state,
//! network settings: 2 to 10 KB, more with a big environment) is skipped by the parser.
//!
//! dockerd answers the same on its API socket, but a socket that answers `docker inspect`
//! also answers `docker run --privileged`: reading files needs no such grant.
//!
//! Creating or removing a container adds or removes its directory, which moves the mtime of
//! `containers/`; `docker rename`, and every state change, rewrites only the container's own
//! file. So the listing is read when the directory's stamp moves (or at the re-read period),
//! and then a container's file only if its own stamp moved since it was last read: a file
//! that failed is counted once, not at each listing, until it changes.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::container_names::{ContainerNames, NameError, is_engine_name, read_bounded};
use crate::cgroup::is_container_id;
use crate::files::Stamp;

/// The largest `config.v2.json` read, in bytes. A container's is a few KB; a huge
/// environment or label set can make it tens of KB.
pub const CONFIG_LIMIT: u64 = 1 << 20;

/// The two fields read of `config.v2.json`; serde skips every other.
#[derive(Deserialize)]
struct Config {
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "Name")]
    name: Option<String>,
}

/// The container name in the bytes of a `config.v2.json`, for the container whose directory
/// is named `id`. The file's `ID` must be that id: a directory copied or moved under another
/// name is not believed.
pub fn parse_config(bytes: &[u8], id: &str) -> Result<String, String> {
    let config: Config = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match config.id.as_deref() {
        Some(found) if found == id => {}
        Some(found) => return Err(format!("ID {found:?} is not the directory's")),
        None => return Err("no ID".into()),
    }
    let name = config.name.ok_or("no Name")?;
    let name = name.strip_prefix('/').unwrap_or(&name);
    if !is_engine_name(name) {
        return Err(format!("Name {name:?} is not a container name"));
    }
    Ok(name.to_owned())
}

/// Docker's data root, and what was read of each container's file.
#[derive(Debug)]
pub(super) struct DockerStore {
    root: PathBuf,
    /// By container id: the file's stamp at its last read, and its names (`None`: the read
    /// failed, and was counted).
    files: HashMap<String, (Stamp, Option<ContainerNames>)>,
}

impl DockerStore {
    pub(super) fn new(root: PathBuf) -> Self {
        DockerStore {
            root,
            files: HashMap::new(),
        }
    }

    /// `<root>/containers`, whose stamp says when to list it again.
    pub(super) fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// Lists `containers/` and reads each container's file that is new or changed since its
    /// last read. Returns the names, and the failures of this read. A data root without
    /// `containers/` (no Docker here) gives no names and no error.
    pub(super) fn read(&mut self) -> (HashMap<String, ContainerNames>, Vec<NameError>) {
        let dir = self.containers_dir();
        let mut errors = Vec::new();
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    errors.push(NameError::io(&dir, e));
                }
                self.files.clear();
                return (HashMap::new(), errors);
            }
        };
        let mut files = HashMap::with_capacity(self.files.len());
        for entry in listing {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    errors.push(NameError::io(&dir, e));
                    break;
                }
            };
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_container_id(&id) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path().join("config.v2.json");
            let stamp = match std::fs::symlink_metadata(&path) {
                Ok(meta) => Stamp::of(Ok(meta)),
                // Between mkdir and the first write, or being removed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    errors.push(NameError::io(&path, e));
                    continue;
                }
            };
            let read = match self.files.remove(&id) {
                Some((seen, names)) if seen == stamp => names,
                _ => match read_config(&path, &id) {
                    Ok(names) => Some(names),
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                },
            };
            files.insert(id, (stamp, read));
        }
        self.files = files;
        let names = self
            .files
            .iter()
            .filter_map(|(id, (_, names))| Some((id.clone(), names.clone()?)))
            .collect();
        (names, errors)
    }
}

fn read_config(path: &Path, id: &str) -> Result<ContainerNames, NameError> {
    let bytes = read_bounded(path, CONFIG_LIMIT)?;
    let container = parse_config(&bytes, id).map_err(|detail| NameError::parse(path, detail))?;
    Ok(ContainerNames {
        pod: String::new(),
        k8s_namespace: String::new(),
        container,
        container_id: id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::NameErrorReason;

    const ID: &str = "12701b7054460c271ad9c3fba82c5abaf4753e6126f021c93f3d730933b19e8c";

    /// The shape of `config.v2.json` as docker.io 20.10.24 wrote it on this machine for
    /// `docker run -d --network host --name nsx-web nsx-busybox sleep 1000`, shortened.
    fn real_config() -> String {
        format!(
            r#"{{"StreamConfig":{{}},"State":{{"Running":true,"Paused":false,"Restarting":false,"OOMKilled":false,"RemovalInProgress":false,"Dead":false,"Pid":2002,"ExitCode":0,"Error":"","StartedAt":"2026-11-29T09:45:34.255758724Z","FinishedAt":"0001-01-01T00:00:00Z","Health":null}},"ID":"{ID}","Created":"2026-11-29T09:45:34.048306357Z","Managed":false,"Path":"sleep","Args":["1000"],"Config":{{"Hostname":"vm","Domainname":"","User":"","Env":null,"Cmd":["sleep","1000"],"Image":"nsx-busybox","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{{}}}},"Image":"sha256:fbd7d71ed164363d96c14075911957ff3d9aad0108f80a9ede62a8c190dbf774","NetworkSettings":{{"Bridge":"","SandboxID":"c89d05d7a21e","Networks":{{"host":{{"IPAMConfig":null,"Links":null,"Aliases":null}}}},"SandboxKey":"/var/run/docker/netns/default"}},"LogPath":"/var/lib/docker/containers/{ID}/{ID}-json.log","Name":"/nsx-web","Driver":"overlay2","OS":"linux","RestartCount":0,"HasBeenStartedBeforeRestart":false,"HasBeenManuallyStopped":false,"MountPoints":{{}},"SecretReferences":null,"ConfigReferences":null,"AppArmorProfile":"docker-default","HostnamePath":"/var/lib/docker/containers/{ID}/hostname","SeccompProfile":"","NoNewPrivileges":false}}"#
        )
    }

    #[test]
    fn config_names() {
        assert_eq!(
            parse_config(real_config().as_bytes(), ID),
            Ok("nsx-web".into())
        );
        let cases: Vec<(String, &str)> = vec![
            (format!(r#"{{"ID":"{ID}"}}"#), "no Name"),
            (r#"{"Name":"/web"}"#.into(), "no ID"),
            (
                format!(r#"{{"ID":"{}","Name":"/web"}}"#, "b".repeat(64)),
                "is not the directory's",
            ),
            (
                format!(r#"{{"ID":"{ID}","Name":"/"}}"#),
                "is not a container name",
            ),
            (
                format!(r#"{{"ID":"{ID}","Name":"/a b"}}"#),
                "is not a container name",
            ),
            (
                format!(r#"{{"ID":"{ID}","Name":"/w\neb"}}"#),
                "is not a container name",
            ),
            (format!(r#"{{"ID":"{ID}","Name":7}}"#), "invalid type"),
            (
                format!(r#"{{"ID":"{ID}","Name":"/a","Name":"/b"}}"#),
                "duplicate field",
            ),
            ("[]".into(), "expected struct Config"),
            ("".into(), "EOF"),
            ("\u{0}\u{1}garbage".into(), "expected value"),
            (format!(r#"{{"ID":"{ID}","Name":"/web""#), "EOF"),
            (
                format!(
                    r#"{{"ID":"{ID}","Name":"/web","X":{}}}"#,
                    "[".repeat(100_000)
                ),
                "expected value",
            ),
        ];
        for (text, error) in cases {
            let got = parse_config(text.as_bytes(), ID);
            assert!(
                got.as_ref().is_err_and(|e| e.contains(error)),
                "{:?}: {got:?}, want an error with {error:?}",
                &text[..text.len().min(80)]
            );
        }
        // Deep nesting in a skipped field is skipped without recursion (serde_json's
        // `ignore_value` loops), so it cannot overflow the stack.
        let deep = format!(
            r#"{{"ID":"{ID}","X":{}{},"Name":"/web"}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(parse_config(deep.as_bytes(), ID), Ok("web".into()));
        // Without the slash too (moby always writes one; nothing depends on it).
        assert_eq!(
            parse_config(format!(r#"{{"ID":"{ID}","Name":"web"}}"#).as_bytes(), ID),
            Ok("web".into())
        );
    }

    fn write_config(root: &Path, id: &str, text: &str) -> PathBuf {
        let dir = root.join("containers").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.v2.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// (container id, container name) of each name, sorted.
    fn by_id(names: &HashMap<String, ContainerNames>) -> Vec<(&str, &str)> {
        let mut found: Vec<(&str, &str)> = names
            .iter()
            .map(|(id, n)| (id.as_str(), n.container.as_str()))
            .collect();
        found.sort();
        found
    }

    fn reasons(errors: &[NameError]) -> Vec<NameErrorReason> {
        let mut r: Vec<_> = errors.iter().map(NameError::reason).collect();
        r.sort_by_key(|r| r.index());
        r
    }

    #[test]
    fn a_data_root_of_odd_and_hostile_files() {
        let root = tempfile::tempdir().unwrap();
        let mut store = DockerStore::new(root.path().to_owned());
        // No containers/ at all: Docker is not installed.
        let (names, errors) = store.read();
        assert!(names.is_empty() && errors.is_empty(), "{errors:?}");

        let id = |c: char| -> String { std::iter::repeat_n(c, 64).collect() };
        write_config(root.path(), ID, &real_config());
        let good = format!(r#"{{"ID":"{}","Name":"/other"}}"#, id('a'));
        write_config(root.path(), &id('a'), &good);
        // Broken in every way: each one error, and nothing else lost.
        write_config(root.path(), &id('b'), r#"{"ID":"#);
        let huge = write_config(root.path(), &id('c'), "");
        std::fs::File::options()
            .write(true)
            .open(&huge)
            .unwrap()
            .set_len(CONFIG_LIMIT + 1)
            .unwrap();
        std::fs::create_dir_all(root.path().join("containers").join(id('d'))).unwrap();
        std::os::unix::fs::symlink(
            "/dev/zero",
            root.path()
                .join(format!("containers/{}/config.v2.json", id('d'))),
        )
        .unwrap();
        // Not a container's directory: skipped without a word.
        write_config(root.path(), "not-an-id", &good);
        write_config(root.path(), &id('E'), &good);
        std::fs::write(root.path().join("containers").join(id('f')), b"").unwrap();
        // A container mid-creation, without its file yet.
        std::fs::create_dir(root.path().join("containers").join(id('0'))).unwrap();

        let (names, errors) = store.read();
        let found = by_id(&names);
        assert_eq!(found, [(ID, "nsx-web"), (id('a').as_str(), "other")]);
        assert_eq!(
            names[ID],
            ContainerNames {
                pod: String::new(),
                k8s_namespace: String::new(),
                container: "nsx-web".into(),
                container_id: ID.into(),
            }
        );
        assert_eq!(
            reasons(&errors),
            [
                NameErrorReason::ParseError,
                NameErrorReason::ParseError,
                NameErrorReason::TooLarge
            ],
            "{errors:?}"
        );

        // Read again unchanged: the bad files are not counted again, the names stay.
        let (again, errors) = store.read();
        assert_eq!((again, errors.len()), (names.clone(), 0));

        // A rename rewrites one file (a new inode, as moby's atomic writer makes): read again.
        let path = root
            .path()
            .join(format!("containers/{}/config.v2.json", id('a')));
        let renamed = format!(r#"{{"ID":"{}","Name":"/renamed"}}"#, id('a'));
        std::fs::write(root.path().join("tmp"), renamed).unwrap();
        std::fs::rename(root.path().join("tmp"), &path).unwrap();
        // The broken one mended, and a container removed.
        write_config(
            root.path(),
            &id('b'),
            &format!(r#"{{"ID":"{}","Name":"/b"}}"#, id('b')),
        );
        std::fs::remove_dir_all(root.path().join("containers").join(ID)).unwrap();
        let (names, errors) = store.read();
        let found = by_id(&names);
        assert_eq!(
            found,
            [(id('a').as_str(), "renamed"), (id('b').as_str(), "b")]
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(store.files.len(), 4, "a, b and the two still broken");
    }

    #[test]
    fn an_unreadable_data_root_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("containers"), b"a file").unwrap();
        let (names, errors) = DockerStore::new(root.path().to_owned()).read();
        assert!(names.is_empty());
        assert_eq!(reasons(&errors), [NameErrorReason::IoError]);
    }
}
