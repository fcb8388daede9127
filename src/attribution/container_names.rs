//! What every container name source shares, below them all: the names a source yields, the
//! error it fails with, and the bounded read of its files. The sources (kubelet, Docker,
//! Podman) import this; only the aggregator in `names` imports the sources.
//!
//! Every file is untrusted input: read only when it is a regular file no larger than a
//! limit, and never through a symlink or into a FIFO (`O_NOFOLLOW | O_NONBLOCK`), so a
//! hostile or broken file costs at most the limit and is counted, not followed.

use std::io;
use std::path::{Path, PathBuf};

use crate::files::{self, ReadError, Symlinks};

/// The names of one container: pod, Kubernetes namespace and container name where the
/// kubelet gave them, the container name alone where an engine did.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerNames {
    /// The Kubernetes pod's name; empty outside Kubernetes.
    pub pod: String,
    /// The pod's Kubernetes namespace; empty outside Kubernetes.
    pub k8s_namespace: String,
    pub container: String,
    /// 64 lowercase hex digits, without a `containerd://`-style scheme: the id that
    /// `/proc/PID/cgroup` shows.
    pub container_id: String,
}

label_enum! {
    /// Why a name source, or one of its files, could not be read: the `reason` label.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum NameErrorReason {
        /// EACCES or EPERM: typically a non-root exporter without CAP_DAC_READ_SEARCH.
        PermissionDenied = "permission_denied",
        /// Not a regular file, not the JSON expected, or no valid name in it.
        ParseError = "parse_error",
        /// Larger than the source's limit: refused before it is read.
        TooLarge = "too_large",
        /// Any other I/O error.
        IoError = "io_error",
    }
}

/// A failed read of a name source, with the path it was about.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: larger than the limit of {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{}: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },
}

impl NameError {
    pub(crate) fn io(path: &Path, source: io::Error) -> NameError {
        NameError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn parse(path: &Path, detail: impl Into<String>) -> NameError {
        NameError::Parse {
            path: path.to_owned(),
            detail: detail.into(),
        }
    }

    pub fn reason(&self) -> NameErrorReason {
        match self {
            NameError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                NameErrorReason::PermissionDenied
            }
            NameError::Io { .. } => NameErrorReason::IoError,
            NameError::TooLarge { .. } => NameErrorReason::TooLarge,
            NameError::Parse { .. } => NameErrorReason::ParseError,
        }
    }
}

/// Reads a regular file of at most `limit` bytes, whole, never through a symlink
/// ([`files::read_bounded`]): refusals are parse errors, with the path.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, NameError> {
    files::read_bounded(path, limit, Symlinks::Refuse).map_err(|e| match e {
        ReadError::Io(source) => NameError::io(path, source),
        ReadError::TooLarge { limit } => NameError::TooLarge {
            path: path.to_owned(),
            limit,
        },
        e @ (ReadError::Symlink | ReadError::NotRegular) => NameError::parse(path, e.to_string()),
    })
}

/// The longest container name taken. Docker and Podman set no limit, but a name is a label
/// value on every series of its container; cri-dockerd's `k8s_<container>_<pod>_<namespace>_
/// <uid>_<attempt>` is at most some 430 bytes.
const NAME_LIMIT: usize = 1024;

/// Docker's and Podman's rule for a container name, `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (moby's
/// `RestrictedNamePattern` asks for two characters, Podman's `NameRegex` for one), at most
/// [`NAME_LIMIT`] bytes.
pub(super) fn is_engine_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= NAME_LIMIT
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_reads_refuse_what_is_not_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_bounded(&file, 10).unwrap(), b"0123456789");
        let reason = |path: &Path, limit| read_bounded(path, limit).unwrap_err().reason();
        assert_eq!(reason(&file, 9), NameErrorReason::TooLarge);

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(reason(&link, 100), NameErrorReason::ParseError);
        // A FIFO would block an open without O_NONBLOCK, and a read without the fstat.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(reason(&fifo, 100), NameErrorReason::ParseError);
        assert_eq!(reason(dir.path(), 1 << 20), NameErrorReason::ParseError);
        assert_eq!(
            reason(Path::new("/dev/zero"), 1 << 20),
            NameErrorReason::ParseError
        );
        assert_eq!(
            reason(&dir.path().join("absent"), 100),
            NameErrorReason::IoError
        );
    }

    #[test]
    fn engine_names() {
        for ok in [
            "web",
            "a",
            "nsx-web",
            "k8s_app_web-0_default_0d33f94b_0",
            "A.b_c-1",
        ] {
            assert!(is_engine_name(ok), "{ok:?}");
        }
        let long = "a".repeat(NAME_LIMIT + 1);
        for bad in [
            "", "/web", "-web", "_web", ".web", "we b", "web\n", "wéb", "a/b", &long,
        ] {
            assert!(!is_engine_name(bad), "{bad:?}");
        }
        assert!(is_engine_name(&long[1..]));
    }

    #[test]
    fn errors_name_their_path_and_reason() {
        let path = Path::new("/var/lib/docker/containers");
        let denied = NameError::io(path, io::Error::from_raw_os_error(nix::libc::EACCES));
        assert_eq!(denied.reason(), NameErrorReason::PermissionDenied);
        assert_eq!(
            denied.to_string(),
            "/var/lib/docker/containers: Permission denied (os error 13)"
        );
        let big = NameError::TooLarge {
            path: path.join("x"),
            limit: 1024,
        };
        assert_eq!(
            big.to_string(),
            "/var/lib/docker/containers/x: larger than the limit of 1024 bytes"
        );
    }
}
