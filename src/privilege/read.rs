//! Reading what a process can do: the privilege lines of `/proc/PID/status`
//! (proc_pid_status(5), capabilities(7), seccomp(2)), `uid_map` and `gid_map`
//! (user_namespaces(7)), `attr/current` (proc_pid_attr(5)) and, for a container, whether its
//! `/proc` is masked as runtimes mask it (`mountinfo`, proc_pid_mountinfo(5)).
//!
//! The `parse_*` functions are pure and take bytes; [`read_process`] is the thin reader around
//! them, relative to an open `/proc/PID` directory, as the scan reads its other files.

use std::ffi::CStr;
use std::io;
use std::os::fd::BorrowedFd;

use crate::procfs::{WHOLE_FILE_MAX, read_all_at, read_at, read_whole_at};

use super::{CapSet, IdMap, IdRange, Lsm, ProcessPrivilege, Seccomp};

/// Why a process's privilege could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file could not be read (the process may have exited: see [`ReadError::vanished`]).
    #[error("{file}: {source}")]
    Io {
        file: &'static str,
        source: io::Error,
    },
    /// A file was read but is not what the kernel writes.
    #[error("{file}: cannot parse: {reason}")]
    Parse {
        file: &'static str,
        reason: &'static str,
    },
}

impl ReadError {
    /// Whether the process exited while it was read: normal, not a failure.
    pub fn vanished(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if crate::procfs::is_vanished(source))
    }

    /// The failure's kind, as a label value.
    pub fn kind(&self) -> &'static str {
        match self {
            ReadError::Io { .. } => "io",
            ReadError::Parse { .. } => "parse",
        }
    }
}

/// The longest LSM label kept: longer ones are cut (a label is the policy's, but an SELinux
/// context with many categories can run to kilobytes).
pub const LABEL_MAX: usize = 256;

/// The privilege lines of `/proc/PID/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusPrivilege {
    pub effective: CapSet,
    pub permitted: CapSet,
    pub bounding: CapSet,
    pub ambient: CapSet,
    pub no_new_privs: bool,
    pub seccomp: Seccomp,
    pub uid: u32,
    pub euid: u32,
}

/// Parses the privilege lines of `/proc/PID/status`. `CapEff`, `CapPrm`, `CapBnd` and `Uid`
/// must be there; `CapAmb` (Linux 4.3), `NoNewPrivs` (4.10), `Seccomp` (without
/// `CONFIG_SECCOMP` it is absent, and so is every filter) and `Seccomp_filters` (5.9) are
/// taken as off where an older kernel omits them.
pub fn parse_status(bytes: &[u8]) -> Result<StatusPrivilege, &'static str> {
    let mut out = StatusPrivilege::default();
    let (mut eff, mut prm, mut bnd, mut uid) = (false, false, false, false);
    let (mut mode, mut filters) = (0u64, 0u64);
    for line in bytes.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, value) = (&line[..colon], trim(&line[colon + 1..]));
        match key {
            b"CapEff" => (out.effective, eff) = (cap_set(value)?, true),
            b"CapPrm" => (out.permitted, prm) = (cap_set(value)?, true),
            b"CapBnd" => (out.bounding, bnd) = (cap_set(value)?, true),
            b"CapAmb" => out.ambient = cap_set(value)?,
            b"NoNewPrivs" => out.no_new_privs = decimal(value).ok_or("NoNewPrivs")? != 0,
            b"Seccomp" => mode = decimal(value).ok_or("Seccomp")?,
            b"Seccomp_filters" => filters = decimal(value).ok_or("Seccomp_filters")?,
            b"Uid" => {
                let mut ids = value
                    .split(|b| b.is_ascii_whitespace())
                    .filter(|f| !f.is_empty());
                let mut next = || {
                    ids.next()
                        .and_then(decimal)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or("Uid")
                };
                (out.uid, out.euid, uid) = (next()?, next()?, true);
            }
            _ => {}
        }
    }
    out.seccomp = match mode {
        0 => Seccomp::Disabled,
        1 => Seccomp::Strict,
        2 => Seccomp::Filter {
            filters: u32::try_from(filters).unwrap_or(u32::MAX),
        },
        _ => return Err("Seccomp: not a mode"),
    };
    match (eff, prm, bnd, uid) {
        (true, true, true, true) => Ok(out),
        _ => Err("a CapEff, CapPrm, CapBnd or Uid line is missing"),
    }
}

/// Parses `uid_map` or `gid_map`: lines of three decimal numbers.
pub fn parse_id_map(bytes: &[u8]) -> Result<IdMap, &'static str> {
    let mut ranges = Vec::new();
    for line in bytes.split(|&b| b == b'\n') {
        let mut fields = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        let Some(first) = fields.next() else {
            continue;
        };
        let number = |f: Option<&[u8]>| {
            f.and_then(decimal)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or("not three numbers")
        };
        let range = IdRange {
            inside: number(Some(first))?,
            outside: number(fields.next())?,
            count: number(fields.next())?,
        };
        if fields.next().is_some() {
            return Err("not three numbers");
        }
        // The kernel allows 340 lines: more is not a map it wrote.
        if ranges.len() == 340 {
            return Err("more than 340 lines");
        }
        ranges.push(range);
    }
    Ok(IdMap(ranges))
}

/// Parses `attr/current`: empty is no label; AppArmor's `unconfined` (bare, or with its mode)
/// and SELinux's `unconfined_t` and `spc_t` types are unconfined; anything else is a label,
/// cut at [`LABEL_MAX`] bytes and decoded lossily.
pub fn parse_attr_current(bytes: &[u8]) -> Lsm {
    // The kernel ends the label with a newline (AppArmor) or a NUL (SELinux).
    let end = bytes
        .iter()
        .position(|&b| b == b'\n' || b == 0)
        .unwrap_or(bytes.len());
    let label = trim(&bytes[..end]);
    if label.is_empty() {
        return Lsm::None;
    }
    let text = String::from_utf8_lossy(&label[..label.len().min(LABEL_MAX)]).into_owned();
    let selinux_type = text.split(':').nth(2);
    let unconfined = text == "unconfined"
        || text.starts_with("unconfined (")
        || matches!(selinux_type, Some("unconfined_t" | "spc_t"));
    match unconfined {
        true => Lsm::Unconfined,
        false => Lsm::Label(text),
    }
}

/// Whether a process's `/proc` is masked as runtimes mask it, from its `mountinfo`: something
/// is mounted over `/proc/kcore` (runc, crun and their callers bind `/dev/null` there) or
/// `/proc/sys` is mounted read-only. `None` where the process has no `/proc` at all. Paths in
/// `mountinfo` are relative to the process's own root, so a container's `/proc` reads as
/// `/proc`.
pub fn parse_proc_masked(mountinfo: &[u8]) -> Option<bool> {
    let (mut proc, mut masked) = (false, false);
    for line in mountinfo.split(|&b| b == b'\n') {
        let mut fields = line.split(|&b| b == b' ');
        // id, parent, major:minor, root, mount point, options.
        let (Some(point), Some(options)) = (fields.nth(4), fields.next()) else {
            continue;
        };
        let read_only = options.split(|&b| b == b',').any(|o| o == b"ro");
        match point {
            b"/proc" => proc = true,
            b"/proc/kcore" => masked = true,
            b"/proc/sys" if read_only => masked = true,
            _ => {}
        }
    }
    proc.then_some(masked)
}

/// Reads one process's privilege, relative to its open `/proc/PID` directory `dir`, with
/// `buf` as scratch space kept from one process to the next. `attr/current` that the kernel
/// refuses (EINVAL: no LSM labels processes) or that is absent is [`Lsm::None`].
pub fn read_process(dir: BorrowedFd<'_>, buf: &mut Vec<u8>) -> Result<ProcessPrivilege, ReadError> {
    let io = |file| move |source| ReadError::Io { file, source };
    let parse = |file| move |reason| ReadError::Parse { file, reason };
    let status = read_whole_at(dir, c"status", buf, WHOLE_FILE_MAX).map_err(io("status"))?;
    let status = parse_status(status).map_err(parse("status"))?;
    let mut map = |name: &'static CStr, file: &'static str| -> Result<IdMap, ReadError> {
        // 340 lines of three 10-digit numbers fit.
        let bytes = read_whole_at(dir, name, buf, 16 * 1024).map_err(io(file))?;
        parse_id_map(bytes).map_err(parse(file))
    };
    let uid_map = map(c"uid_map", "uid_map")?;
    let gid_map = map(c"gid_map", "gid_map")?;
    let mut label = [0u8; LABEL_MAX + 1];
    let lsm = match read_at(dir, c"attr/current", &mut label) {
        Ok(bytes) => parse_attr_current(bytes),
        // ENOENT too: a fixture tree without it. A process gone by now was read before.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::EINVAL | nix::libc::ENOENT | nix::libc::ENOTDIR)
            ) =>
        {
            Lsm::None
        }
        Err(e) => return Err(io("attr/current")(e)),
    };
    Ok(ProcessPrivilege {
        effective: status.effective,
        permitted: status.permitted,
        bounding: status.bounding,
        ambient: status.ambient,
        no_new_privs: status.no_new_privs,
        seccomp: status.seccomp,
        uid: status.uid,
        euid: status.euid,
        uid_map,
        gid_map,
        lsm,
    })
}

/// Whether the process of `dir` has its `/proc` masked ([`parse_proc_masked`]); `Ok(None)`
/// where its `mountinfo` is longer than a container's ever is (then it is not judged).
pub fn read_proc_masked(dir: BorrowedFd<'_>, buf: &mut Vec<u8>) -> Result<Option<bool>, ReadError> {
    let cut =
        read_all_at(dir, c"mountinfo", buf, WHOLE_FILE_MAX).map_err(|source| ReadError::Io {
            file: "mountinfo",
            source,
        })?;
    Ok(match cut {
        true => None,
        false => parse_proc_masked(buf),
    })
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

fn cap_set(hex: &[u8]) -> Result<CapSet, &'static str> {
    if hex.is_empty() || hex.len() > 16 {
        return Err("a capability set is not 1 to 16 hex digits");
    }
    let text = std::str::from_utf8(hex).map_err(|_| "a capability set is not hex")?;
    u64::from_str_radix(text, 16)
        .map(CapSet)
        .map_err(|_| "a capability set is not hex")
}

fn decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root container's status under runc's default spec (Linux 6.x), cut to what matters
    /// and what surrounds it.
    const STATUS: &[u8] = b"Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\n\
Tgid:\t4242\nPid:\t4242\nPPid:\t4200\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n\
Groups:\t0 1 2 3 4 6 10 11 20 26 27 \nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\n\
CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n\
NoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t1\nSpeculation_Store_Bypass:\tthread vulnerable\n";

    #[test]
    fn a_status_gives_its_privilege_lines() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(s.effective, CapSet(0xa80425fb));
        assert_eq!(s.bounding, CapSet(0xa80425fb));
        assert_eq!(s.ambient, CapSet(0));
        assert!(!s.no_new_privs);
        assert_eq!(s.seccomp, Seccomp::Filter { filters: 1 });
        assert_eq!((s.uid, s.euid), (0, 0));
        assert!(
            s.effective
                .has(crate::privilege::capability_number("NET_RAW").unwrap())
        );
    }

    #[test]
    fn a_setuid_process_shows_its_effective_uid() {
        let text = b"Uid:\t1000\t0\t0\t0\nCapEff:\t000001ffffffffff\nCapPrm:\t000001ffffffffff\n\
CapBnd:\t000001ffffffffff\nNoNewPrivs:\t1\nSeccomp:\t0\n";
        let s = parse_status(text).unwrap();
        assert_eq!((s.uid, s.euid), (1000, 0));
        assert!(s.no_new_privs);
        assert_eq!(s.seccomp, Seccomp::Disabled);
        assert_eq!(s.effective.numbers().count(), 41);
    }

    /// An older kernel's status has no `CapAmb`, `NoNewPrivs` or `Seccomp_filters`: off.
    #[test]
    fn an_old_kernels_status_takes_the_missing_lines_as_off() {
        let text = b"Uid:\t0\t0\t0\t0\nCapEff:\t0\nCapPrm:\t0\nCapBnd:\t3fffffffff\nSeccomp:\t2\n";
        let s = parse_status(text).unwrap();
        assert_eq!(s.seccomp, Seccomp::Filter { filters: 0 });
        assert!(!s.no_new_privs);
    }

    #[test]
    fn a_status_that_the_kernel_did_not_write_is_an_error() {
        for bad in [
            &b""[..],
            b"garbage\n\0\xff",
            b"Uid:\t0\t0\t0\t0\nCapEff:\t0\nCapPrm:\t0\n",
            b"Uid:\t0\nCapEff:\t0\nCapPrm:\t0\nCapBnd:\t0\n",
            b"Uid:\t0\t0\t0\t0\nCapEff:\t10000000000000000\nCapPrm:\t0\nCapBnd:\t0\n",
            b"Uid:\t0\t0\t0\t0\nCapEff:\tzz\nCapPrm:\t0\nCapBnd:\t0\n",
            b"Uid:\t0\t0\t0\t0\nCapEff:\t0\nCapPrm:\t0\nCapBnd:\t0\nSeccomp:\t3\n",
            b"Uid:\t-1\t0\t0\t0\nCapEff:\t0\nCapPrm:\t0\nCapBnd:\t0\n",
            b"Uid:\t4294967296\t0\nCapEff:\t0\nCapPrm:\t0\nCapBnd:\t0\n",
        ] {
            assert!(
                parse_status(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // A long line of another field is not ours to judge.
        let mut long = b"Groups:\t".to_vec();
        long.extend(std::iter::repeat_n(b'7', 1 << 20));
        long.extend_from_slice(b"\nUid:\t0\t0\t0\t0\nCapEff:\t0\nCapPrm:\t0\nCapBnd:\t0\n");
        assert!(parse_status(&long).is_ok());
    }

    #[test]
    fn id_maps_parse_as_the_kernel_pads_them() {
        let host = parse_id_map(b"         0          0 4294967295\n").unwrap();
        assert!(host.is_identity());
        let mapped =
            parse_id_map(b"         0     100000      65536\n     65536    1000000         10\n")
                .unwrap();
        assert_eq!(mapped.to_host(0), Some(100_000));
        assert_eq!(mapped.to_host(65_540), Some(1_000_004));
        assert_eq!(parse_id_map(b"").unwrap(), IdMap::default());
        for bad in [&b"0 0\n"[..], b"0 0 1 1\n", b"a b c\n", b"0 0 4294967296\n"] {
            assert!(parse_id_map(bad).is_err(), "{bad:?}");
        }
        let many = "0 0 1\n".repeat(341);
        assert!(parse_id_map(many.as_bytes()).is_err());
    }

    #[test]
    fn attr_current_tells_none_unconfined_and_labels() {
        assert_eq!(parse_attr_current(b""), Lsm::None);
        assert_eq!(parse_attr_current(b"\n"), Lsm::None);
        assert_eq!(parse_attr_current(b"unconfined\n"), Lsm::Unconfined);
        assert_eq!(
            parse_attr_current(b"unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023\0"),
            Lsm::Unconfined
        );
        assert_eq!(
            parse_attr_current(b"system_u:system_r:spc_t:s0\0"),
            Lsm::Unconfined
        );
        assert_eq!(
            parse_attr_current(b"docker-default (enforce)\n"),
            Lsm::Label("docker-default (enforce)".into())
        );
        assert_eq!(
            parse_attr_current(b"system_u:system_r:container_t:s0:c1,c2\0"),
            Lsm::Label("system_u:system_r:container_t:s0:c1,c2".into())
        );
        let long = [b'x'; 5000];
        assert_eq!(parse_attr_current(&long), Lsm::Label("x".repeat(LABEL_MAX)));
        assert!(matches!(parse_attr_current(b"\xff\xfe"), Lsm::Label(_)));
    }

    /// runc's default mounts, cut to those about `/proc`: masked; a privileged container's
    /// `/proc` has none of them.
    #[test]
    fn a_masked_proc_has_kcore_covered_and_sys_read_only() {
        let masked = b"612 540 0:52 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n\
613 612 0:53 /bus /proc/bus ro,nosuid,nodev,noexec,relatime - proc proc rw\n\
617 612 0:53 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw\n\
619 612 0:54 /null /proc/kcore rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755\n";
        assert_eq!(parse_proc_masked(masked), Some(true));
        let open = b"612 540 0:52 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n\
700 540 0:60 / /sys rw,nosuid - sysfs sysfs rw\n";
        assert_eq!(parse_proc_masked(open), Some(false));
        assert_eq!(
            parse_proc_masked(b"1 0 8:1 / / rw - ext4 /dev/vda rw\n"),
            None
        );
        assert_eq!(parse_proc_masked(b"\xff garbage\n\n  \n"), None);
        // A mount point with a space is escaped by the kernel: not the masked path.
        let escaped = b"612 540 0:52 / /proc rw - proc proc rw\n\
619 612 0:54 /null /proc/kcore\\040x rw - tmpfs tmpfs rw\n";
        assert_eq!(parse_proc_masked(escaped), Some(false));
    }
}
