//! The kernel's limits on namespaces and on what they hold, read once a scan through the
//! procfs root: `sys/user/max_TYPE_namespaces` (user_namespaces(7), "/proc/sys/user"),
//! `sys/net/netfilter/nf_conntrack_max` and `sys/fs/mount-max` (proc_sys_fs(5)).
//!
//! A sysctl is answered by the reader's own namespaces, not the procfs mount's: the
//! `user.max_*` files hold the limits of the exporter's user namespace (the host's, in the
//! shipped DaemonSet), `nf_conntrack_max` is global. Sysctl files have no change
//! notification (no inotify, no poll), so they are read every scan: ten small reads.

use std::ffi::CStr;
use std::os::fd::BorrowedFd;

use crate::model::{KernelLimits, NsType};
use crate::procfs::read_all_at;
use crate::scan::errors::{ErrorReason, ScanErrors};

/// A limit file holds one decimal number and a newline; more is not a limit.
const LIMIT_FILE_CAP: usize = 64;

/// The files, relative to the procfs root: one per namespace type, in [`NsType::ALL`]'s
/// order, then conntrack's and the mounts'.
const FILES: [&CStr; 10] = [
    c"sys/user/max_cgroup_namespaces",
    c"sys/user/max_ipc_namespaces",
    c"sys/user/max_mnt_namespaces",
    c"sys/user/max_net_namespaces",
    c"sys/user/max_pid_namespaces",
    c"sys/user/max_time_namespaces",
    c"sys/user/max_user_namespaces",
    c"sys/user/max_uts_namespaces",
    c"sys/net/netfilter/nf_conntrack_max",
    c"sys/fs/mount-max",
];
const CONNTRACK: usize = 8;
const MOUNTS: usize = 9;

/// A limit file's number: decimal digits, then optional whitespace.
pub fn parse_limit(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?.trim_end();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Reads the limits, and remembers which files have failed: each failure is counted and said
/// once in the exporter's life, since what makes a sysctl unreadable (an LSM, a procfs
/// mounted without `sys`) holds scan after scan.
#[derive(Debug, Default)]
pub struct LimitReader {
    /// One bit per file of [`FILES`] whose failure was counted and said.
    said: u16,
    buf: Vec<u8>,
}

impl LimitReader {
    /// The limits under `root` (the procfs root's fd; `root_path` for the log). A file that
    /// is absent is no limit and no error.
    pub fn read(
        &mut self,
        root: BorrowedFd<'_>,
        root_path: &std::path::Path,
        errors: &mut ScanErrors,
    ) -> KernelLimits {
        let mut values = [None; FILES.len()];
        for (i, file) in FILES.iter().enumerate() {
            let failed = match read_all_at(root, file, &mut self.buf, LIMIT_FILE_CAP) {
                Ok(false) => match parse_limit(&self.buf) {
                    Some(v) => {
                        values[i] = Some(v);
                        continue;
                    }
                    None => (ErrorReason::ParseError, "not a number".to_owned()),
                },
                Ok(true) => (ErrorReason::ParseError, "longer than a number".to_owned()),
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => continue,
                Err(e) => (ErrorReason::of_io(&e), e.to_string()),
            };
            self.fail(i, failed, root_path, errors);
        }
        let mut limits = KernelLimits::default();
        for (i, t) in NsType::ALL.into_iter().enumerate() {
            limits.namespaces[t] = values[i];
        }
        limits.conntrack_entries = values[CONNTRACK];
        limits.mounts_per_namespace = values[MOUNTS];
        limits
    }

    fn fail(
        &mut self,
        i: usize,
        (reason, error): (ErrorReason, String),
        root_path: &std::path::Path,
        errors: &mut ScanErrors,
    ) {
        let bit = 1 << i;
        if self.said & bit != 0 {
            return;
        }
        self.said |= bit;
        let path = root_path.join(FILES[i].to_string_lossy().as_ref());
        let path = path.display();
        tracing::warn!(%path, %error, "a kernel limit could not be read: its nsexporter_*_limit series is left out (said once; counted in nsexporter_scan_errors_total)");
        errors.record(reason, || format!("{path}: {error}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn limits_are_decimal_numbers() {
        assert_eq!(parse_limit(b"96367\n"), Some(96367));
        assert_eq!(parse_limit(b"0\n"), Some(0));
        assert_eq!(parse_limit(b"262144"), Some(262144));
        for junk in [
            &b""[..],
            b"\n",
            b"-1\n",
            b"12 34\n",
            b"0x10\n",
            b"\xff\n",
            b" 5\n",
        ] {
            assert_eq!(parse_limit(junk), None, "{junk:?}");
        }
        assert_eq!(parse_limit(b"99999999999999999999999\n"), None);
    }

    /// A fixture root: the files present are read, the absent ones are no limit and no error,
    /// a bad one is counted once however many scans read it.
    #[test]
    fn absent_files_are_no_limit_and_bad_ones_are_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("sys/user");
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(user.join("max_uts_namespaces"), "96367\n").unwrap();
        std::fs::write(user.join("max_net_namespaces"), "lots\n").unwrap();
        std::fs::create_dir_all(dir.path().join("sys/fs")).unwrap();
        std::fs::write(dir.path().join("sys/fs/mount-max"), "100000\n").unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        let mut reader = LimitReader::default();
        for scan in 0..3 {
            let mut errors = ScanErrors::default();
            let limits = reader.read(root.as_fd(), dir.path(), &mut errors);
            assert_eq!(limits.namespaces[NsType::Uts], Some(96367));
            assert_eq!(limits.namespaces[NsType::Net], None);
            assert_eq!(limits.namespaces[NsType::Mnt], None);
            assert_eq!(limits.conntrack_entries, None);
            assert_eq!(limits.mounts_per_namespace, Some(100000));
            let counted = u64::from(scan == 0);
            assert_eq!(
                errors.count(ErrorReason::ParseError),
                counted,
                "scan {scan}"
            );
            assert_eq!(errors.total(), counted, "scan {scan}");
        }
    }
}
