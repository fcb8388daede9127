//! What a container's processes can do to the host: the facts the kernel shows of each process
//! (`/proc/PID/status`, `uid_map`, `gid_map`, `attr/current`; proc_pid_status(5),
//! user_namespaces(7), capabilities(7)), the Pod Security level they meet, and where they
//! exceed what the container's spec declared.
//!
//! This module is the vocabulary the reading side and the judging side share; neither knows the
//! other's workings.

pub mod container;
pub mod exceeds;
pub mod level;
pub mod read;

/// A capability set as `/proc/PID/status` prints it (`CapEff:\t000001ffffffffff`): bit `n` is
/// capability `n` of capabilities(7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapSet(pub u64);

impl CapSet {
    /// Whether capability number `cap` is in the set.
    pub fn has(self, cap: u8) -> bool {
        cap < 64 && self.0 & (1 << cap) != 0
    }

    /// The capabilities in `self` and not in `other`.
    pub fn without(self, other: CapSet) -> CapSet {
        CapSet(self.0 & !other.0)
    }

    /// The capabilities' numbers, lowest first.
    pub fn numbers(self) -> impl Iterator<Item = u8> {
        (0..64u8).filter(move |&c| self.has(c))
    }
}

/// The kernel's capability names, by number (linux/capability.h), without the `CAP_` prefix, as
/// Kubernetes and the OCI spec's `CAP_SYS_ADMIN` name them after the prefix.
pub const CAPABILITY_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The number of a capability named with or without `CAP_`, in any case (`SYS_ADMIN`,
/// `CAP_SYS_ADMIN`, `cap_sys_admin`), as specs and Kubernetes write them.
pub fn capability_number(name: &str) -> Option<u8> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITY_NAMES
        .iter()
        .position(|n| *n == bare)
        .map(|n| n as u8)
}

/// `Seccomp:` of `/proc/PID/status` (0, 1, 2), with `Seccomp_filters:` for mode 2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Seccomp {
    #[default]
    Disabled,
    Strict,
    Filter {
        filters: u32,
    },
}

/// One line of `/proc/PID/uid_map` or `gid_map`: ids `inside..inside+count` of the process's
/// user namespace are `outside..` of the reading process's (the exporter's: the host's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// A uid or gid map; the kernel allows at most 340 lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct IdMap(pub Vec<IdRange>);

impl IdMap {
    /// The host id that `inside` maps to, if it is mapped.
    pub fn to_host(&self, inside: u32) -> Option<u32> {
        self.0.iter().find_map(|r| {
            let offset = inside.checked_sub(r.inside)?;
            (offset < r.count).then(|| r.outside.wrapping_add(offset))
        })
    }

    /// Whether this is the identity map of the initial user namespace (`0 0 4294967295`).
    pub fn is_identity(&self) -> bool {
        matches!(
            self.0.as_slice(),
            [IdRange {
                inside: 0,
                outside: 0,
                count: u32::MAX
            }]
        )
    }
}

/// `/proc/PID/attr/current`: the LSM label the process runs under.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Lsm {
    /// No LSM that labels processes (the file is absent, empty or EINVAL).
    #[default]
    None,
    /// AppArmor's `unconfined` or SELinux's `unconfined_t`/`spc_t` context.
    Unconfined,
    /// Any other label, bounded in length.
    Label(String),
}

/// What one process can do, as the kernel shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProcessPrivilege {
    pub effective: CapSet,
    pub permitted: CapSet,
    pub bounding: CapSet,
    pub ambient: CapSet,
    pub no_new_privs: bool,
    pub seccomp: Seccomp,
    /// Real and effective uid, as the process's own user namespace sees them (`Uid:` of
    /// `status`, first two fields).
    pub uid: u32,
    pub euid: u32,
    pub uid_map: IdMap,
    pub gid_map: IdMap,
    pub lsm: Lsm,
}

/// The Pod Security Standards' levels, most open first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// The label value, as Pod Security admission names the level.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// What a container's spec declared of its privilege (OCI `process.capabilities`,
/// `process.noNewPrivileges`, `linux.seccomp`, `process.user.uid`, `process.apparmorProfile`,
/// `process.selinuxLabel`, `linux.maskedPaths`, `linux.uidMappings`; or runc's `state.json`
/// translation of them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeclaredPrivilege {
    pub effective: CapSet,
    pub permitted: CapSet,
    pub bounding: CapSet,
    pub ambient: CapSet,
    pub no_new_privileges: bool,
    /// Whether the spec gives a seccomp filter.
    pub seccomp: bool,
    pub uid: u32,
    pub apparmor_profile: Option<String>,
    pub selinux_label: Option<String>,
    /// Whether the spec masks paths of `/proc` (`linux.maskedPaths` non-empty).
    pub masked_paths: bool,
    /// Whether the spec maps ids in a user namespace of the container's own.
    pub user_namespace: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_are_the_kernels_numbers() {
        assert_eq!(capability_number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(capability_number("sys_admin"), Some(21));
        assert_eq!(capability_number("CAP_BPF"), Some(39));
        assert_eq!(capability_number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(capability_number("CAP_NOPE"), None);
        assert_eq!(CapSet(0x1ff_ffff_ffff).numbers().count(), 41);
    }

    #[test]
    fn an_id_map_maps_only_its_ranges() {
        let map = IdMap(vec![IdRange {
            inside: 0,
            outside: 100_000,
            count: 65_536,
        }]);
        assert_eq!(map.to_host(0), Some(100_000));
        assert_eq!(map.to_host(65_535), Some(165_535));
        assert_eq!(map.to_host(65_536), None);
        assert!(!map.is_identity());
        assert!(
            IdMap(vec![IdRange {
                inside: 0,
                outside: 0,
                count: u32::MAX
            }])
            .is_identity()
        );
    }
}
