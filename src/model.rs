//! The namespace model: identities and the immutable [`Snapshot`] one scan produces.
//!
//! A namespace is identified by its nsfs inode and type (namespaces(7), `readlink
//! /proc/PID/ns/TYPE` gives `net:[4026531840]`). All namespaces live on the one nsfs device, so the
//! device is a property of the machine rather than part of the key. A process is identified by
//! `(pid, starttime)` because PIDs are reused.
//!
//! Inode numbers are reused too, at once: within one snapshot `(type, inode)` names one
//! namespace, but across snapshots only the kernel's own namespace id (ioctl_ns(2)
//! `NS_GET_ID`, Linux 6.18+), which is never reused, says whether two sightings are the same
//! namespace. [`Namespace::kernel_id`] carries it where the scan asked for it.
//!
//! Every time that lifecycle compares is in one clock, clock ticks since boot
//! (`CLOCK_BOOTTIME`, the clock of a process's start time in `/proc/PID/stat`): see
//! [`ScanTime`]. Wall-clock time is only for display, and a clock step cannot reorder events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CStr;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

label_enum! {
    /// The eight namespace types of namespaces(7), in the order of their `/proc/PID/ns` names;
    /// the label value is the name used in `/proc/PID/ns/NAME` and in the link text.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum NsType {
        Cgroup = "cgroup",
        Ipc = "ipc",
        Mnt = "mnt",
        Net = "net",
        Pid = "pid",
        Time = "time",
        User = "user",
        Uts = "uts",
    }
}

impl NsType {
    /// `ns/TYPE`, NUL-terminated: the link under `/proc/PID` to read with `readlinkat(2)`.
    pub const fn proc_link(self) -> &'static CStr {
        match self {
            NsType::Cgroup => c"ns/cgroup",
            NsType::Ipc => c"ns/ipc",
            NsType::Mnt => c"ns/mnt",
            NsType::Net => c"ns/net",
            NsType::Pid => c"ns/pid",
            NsType::Time => c"ns/time",
            NsType::User => c"ns/user",
            NsType::Uts => c"ns/uts",
        }
    }
}

/// One `T` for each namespace type, indexed by [`NsType`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct PerType<T>([T; 8]);

impl<T: Copy> PerType<T> {
    /// `value` for every type.
    pub const fn splat(value: T) -> Self {
        PerType([value; 8])
    }
}

impl<T> PerType<T> {
    /// Each type with its value, in [`NsType::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (NsType, &T)> {
        NsType::ALL.into_iter().zip(self.0.iter())
    }

    /// The values, in [`NsType::ALL`] order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }
}

impl<T> std::ops::Index<NsType> for PerType<T> {
    type Output = T;
    fn index(&self, t: NsType) -> &T {
        &self.0[t.index()]
    }
}

impl<T> std::ops::IndexMut<NsType> for PerType<T> {
    fn index_mut(&mut self, t: NsType) -> &mut T {
        &mut self.0[t.index()]
    }
}

impl fmt::Display for NsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that table columns can set a width.
        f.pad(self.as_str())
    }
}

/// A type name that is not one of the eight.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown namespace type {0:?} (expected one of cgroup ipc mnt net pid time user uts)")]
pub struct UnknownNsType(pub String);

impl FromStr for NsType {
    type Err = UnknownNsType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NsType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownNsType(s.to_owned()))
    }
}

/// A namespace's identity within one machine: its type and nsfs inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct NamespaceId {
    #[serde(rename = "type")]
    pub ns_type: NsType,
    pub inode: u64,
}

/// One word to hash, not two: a scan hashes an id for each of a process's eight links twice
/// (a namespace's members counted, then filled). Inodes are 32-bit, so the type goes above
/// them; equal ids hash equal, and distinct ones that collide are told apart by `Eq`.
impl std::hash::Hash for NamespaceId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.inode ^ ((self.ns_type.index() as u64) << 56));
    }
}

/// An nsfs inode as a process's links name it: the kernel's `ns_common.inum`, an `unsigned
/// int` (proc_alloc_inum) that is never 0. A [`NamespaceId`] holds it as a `u64`, as every
/// inode; a process, which holds eight, holds it in 4 bytes.
pub type Inode = NonZeroU32;

/// `n` as an [`Inode`]: `None` for 0, and for a number no nsfs inode can be.
pub fn inode(n: u64) -> Option<Inode> {
    u32::try_from(n).ok().and_then(Inode::new)
}

/// A process's identity: PIDs are reused, `(pid, starttime)` is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ProcessId {
    pub pid: i32,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    pub start_ticks: u64,
}

label_enum! {
    /// The system call that changed a task's namespaces, as the eBPF source saw it: the
    /// `syscall` label of `nsexporter_ebpf_namespace_changes_total`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum ChangeSyscall {
        Setns = "setns",
        Unshare = "unshare",
        /// A child of clone(2) born in namespaces other than its parent's.
        Clone = "clone",
        Clone3 = "clone3",
    }
}

/// A task's namespaces changed, as the kernel reported it (the eBPF source): read in the
/// kernel right after the change, so it holds even when the task has changed back before
/// /proc can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsChange {
    /// The process: its pid (tgid) in the initial pid namespace, and start time.
    pub process: ProcessId,
    /// The task (thread) that changed: setns(2) and unshare(2) move only the caller.
    pub tid: i32,
    /// The process's parent then: a process gone before `/proc` is read is judged by the
    /// cgroup it was born in, its parent's.
    pub parent: Option<ProcessId>,
    pub syscall: ChangeSyscall,
    /// The types that changed.
    pub changed: PerType<bool>,
    /// The task's namespaces after the change (the new ones of the types that changed);
    /// `None` where the kernel had none to report.
    pub namespaces: PerType<Option<Inode>>,
    /// The task's `comm` then: a claim, as every `comm`.
    pub comm: String,
}

impl NsChange {
    /// The namespaces the task entered.
    pub fn entered(&self) -> impl Iterator<Item = NamespaceId> + '_ {
        NsType::ALL.into_iter().filter_map(|t| {
            let inode = self.namespaces[t].filter(|_| self.changed[t])?;
            Some(NamespaceId {
                ns_type: t,
                inode: inode.get().into(),
            })
        })
    }
}

/// What one scan learnt about one process.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Process {
    pub id: ProcessId,
    pub ppid: i32,
    /// Owner of `/proc/PID`: the effective uid, as `lsns` reports it.
    pub uid: u32,
    /// `comm`, lossily decoded: it may hold any byte but NUL. Processes of one name share
    /// one allocation (a node runs thousands of `sleep`, `bash` and `pause`).
    #[serde(serialize_with = "as_str")]
    pub comm: Arc<str>,
    /// Inode of each namespace by type; `None` where the link is missing or unreadable.
    /// `Option<Inode>` is 4 bytes: 32 a process, not 128.
    pub namespaces: PerType<Option<Inode>>,
    /// The bytes of `/proc/PID/cgroup`, read in the same pass as the links; `None` for kernel
    /// threads (not read) and where the read failed (counted by the scan). Processes of one
    /// cgroup share one allocation.
    #[serde(skip)]
    pub cgroup: Option<Arc<[u8]>>,
    /// Namespaces that a thread of this process is in and its main thread is not: setns(2)
    /// moves only the calling thread, so `/proc/PID/ns/*` does not show them. Read where the
    /// scan looks at threads (`--scan.threads`); empty, without allocation, elsewhere.
    pub thread_namespaces: Vec<ThreadNamespace>,
}

#[cfg(test)]
impl Process {
    /// A process for a table test: pid `pid`, started at tick 1, a child of PID 1, owned by
    /// root, named `p`, in `namespaces`, with no cgroup and no thread elsewhere. Tests change
    /// what they are about with `Process { ppid: 7, ..Process::fixture(pid, namespaces) }`.
    pub fn fixture(pid: i32, namespaces: PerType<Option<Inode>>) -> Process {
        Process {
            id: ProcessId {
                pid,
                start_ticks: 1,
            },
            ppid: 1,
            uid: 0,
            comm: "p".into(),
            namespaces,
            cgroup: None,
            thread_namespaces: Vec::new(),
        }
    }
}

/// A namespace that one thread of a process is in and its main thread is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ThreadNamespace {
    pub tid: i32,
    pub id: NamespaceId,
}

impl Process {
    /// The process's namespace of `ns_type`, if it was read.
    pub fn namespace(&self, ns_type: NsType) -> Option<NamespaceId> {
        self.namespaces[ns_type].map(|inode| NamespaceId {
            ns_type,
            inode: inode.get().into(),
        })
    }
}

/// One namespace in a snapshot.
///
/// Members may be empty: a namespace can be held alive by a bind mount, an open file
/// descriptor or, for a network namespace, a socket only ([`Namespace::mounts`],
/// [`Namespace::fds`], [`Namespace::sockets`]). `owner` (the owning user
/// namespace) and `parent` (for pid and user namespaces) are the links ioctl_ns(2) exposes,
/// as inodes; `lsns` calls them ONS and PNS.
#[derive(Clone, Debug, PartialEq)]
pub struct Namespace {
    pub id: NamespaceId,
    /// The member processes' pids, ascending: each is a process of its snapshot, whose
    /// `processes` hold its start time. Pids, not [`ProcessId`]s: 4 bytes a membership, not
    /// 16, in a list that has eight entries a process.
    pub members: Vec<i32>,
    /// The earliest start time among the members, in ticks since boot; `None` without members.
    pub first_start: Option<u64>,
    /// What holds it besides its members; `None`, with no allocation, where nothing does,
    /// as for most namespaces.
    pins: Option<Box<Pins>>,
    pub owner: Option<u64>,
    pub parent: Option<u64>,
    /// The kernel's namespace id (`NS_GET_ID`), never reused: carried over from the previous
    /// snapshot where a member survived, asked of the kernel where the namespace is new or all
    /// its members are; `None` where the kernel lacks the ioctl or no member could be opened.
    pub kernel_id: Option<u64>,
}

/// What holds a namespace besides its members, each list sorted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pins {
    /// nsfs bind mounts of it, one per mount namespace and path.
    pub mounts: Vec<MountPin>,
    /// Open fds of it.
    pub fds: Vec<FdPin>,
    /// Sockets made in it and held by a process outside it (network namespaces only).
    pub sockets: Vec<SocketPin>,
}

impl Namespace {
    pub fn new(id: NamespaceId) -> Self {
        Namespace {
            id,
            members: Vec::new(),
            first_start: None,
            pins: None,
            owner: None,
            parent: None,
            kernel_id: None,
        }
    }

    /// Its nsfs bind mounts, sorted, one per mount namespace and path.
    pub fn mounts(&self) -> &[MountPin] {
        self.pins.as_ref().map_or(&[], |p| &p.mounts)
    }

    /// Its open fds, sorted.
    pub fn fds(&self) -> &[FdPin] {
        self.pins.as_ref().map_or(&[], |p| &p.fds)
    }

    /// The sockets made in it that a process outside it holds, sorted.
    pub fn sockets(&self) -> &[SocketPin] {
        self.pins.as_ref().map_or(&[], |p| &p.sockets)
    }

    /// How many sockets made in it a process outside holds: one socket counted once, however
    /// many fds (dup(2), fork(2)) or processes hold it.
    pub fn distinct_sockets(&self) -> u64 {
        let mut inodes: Vec<u64> = self.sockets().iter().map(|s| s.socket).collect();
        inodes.sort_unstable();
        inodes.dedup();
        inodes.len() as u64
    }

    /// Its pins, to add to (allocated on first use).
    pub fn pins_mut(&mut self) -> &mut Pins {
        self.pins.get_or_insert_with(Box::default)
    }

    /// What holds it alive.
    pub fn held_by(&self) -> HeldBy {
        let mut held = HeldBy::default();
        for (holder, yes) in [
            (Holder::Process, !self.members.is_empty()),
            (Holder::BindMount, !self.mounts().is_empty()),
            (Holder::Fd, !self.fds().is_empty()),
            (Holder::Socket, !self.sockets().is_empty()),
        ] {
            if yes {
                held = held.with(holder);
            }
        }
        held
    }

    /// The distinct paths it is mounted at, sorted: one path is often seen from many mount
    /// namespaces (`/run/netns` is a shared mount).
    pub fn mount_paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = self.mounts().iter().map(|m| &*m.path).collect();
        paths.sort_unstable();
        paths.dedup();
        paths
    }
}

/// Whether two member lists, each sorted and each of its own snapshot (`a_processes`,
/// `b_processes`), hold one process: a pid in both with one start time in both (pids are
/// reused).
pub fn share_a_member(
    (a, a_processes): (&[i32], &BTreeMap<i32, Process>),
    (b, b_processes): (&[i32], &BTreeMap<i32, Process>),
) -> bool {
    let id = |processes: &BTreeMap<i32, Process>, pid| processes.get(&pid).map(|p| p.id);
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                let old = id(a_processes, a[i]);
                if old.is_some() && old == id(b_processes, b[j]) {
                    return true;
                }
                i += 1;
                j += 1;
            }
        }
    }
    false
}

/// An nsfs bind mount: a namespace file mounted on a path (`ip netns add`, CNI's
/// `/run/netns/cni-*`, `unshare --net=FILE`), which keeps the namespace alive with no process.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MountPin {
    /// The inode of the mount namespace whose `mountinfo` lists it.
    pub mnt_ns: u64,
    /// The mount point, as that mount namespace sees it.
    #[serde(serialize_with = "as_str")]
    pub path: Arc<str>,
    /// A process in that mount namespace, through whose `root` the path can be opened.
    pub via_pid: i32,
}

/// An open file descriptor of a namespace (`/proc/PID/fd/N` → `net:[INODE]`): a runtime
/// holding a sandbox's namespace, or any process that opened `/proc/P/ns/TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FdPin {
    pub process: ProcessId,
    pub fd: i32,
}

/// A socket made in a network namespace, held by a process that is not in it: the socket
/// keeps the namespace alive (`ioctl(SIOCGSKNS)` on it opens the namespace). A process that
/// made a socket and then left with setns(2), or was handed the socket over a unix socket,
/// holds the namespace with no process in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SocketPin {
    pub process: ProcessId,
    pub fd: i32,
    /// The socket's inode (`/proc/PID/fd/N` → `socket:[INODE]`): what the fd must still be
    /// when the namespace is opened through it again.
    pub socket: u64,
}

fn as_str<S: serde::Serializer>(s: &Arc<str>, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(s)
}

label_enum! {
    /// What holds a namespace alive.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Holder {
        /// A member process (or thread).
        Process = "process",
        /// An nsfs bind mount.
        BindMount = "bind_mount",
        /// An open file descriptor.
        Fd = "fd",
        /// A socket made in it, held by a process outside it.
        Socket = "socket",
    }
}

/// The set of [`Holder`]s of a namespace; the label value lists them in [`Holder::ALL`] order,
/// joined by commas: `process`, `bind_mount,fd`, `process,socket`, …; `none` for the empty set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeldBy(u8);

impl HeldBy {
    /// Every value [`HeldBy::as_str`] can give, by bits.
    const NAMES: [&'static str; 16] = [
        "none",
        "process",
        "bind_mount",
        "process,bind_mount",
        "fd",
        "process,fd",
        "bind_mount,fd",
        "process,bind_mount,fd",
        "socket",
        "process,socket",
        "bind_mount,socket",
        "process,bind_mount,socket",
        "fd,socket",
        "process,fd,socket",
        "bind_mount,fd,socket",
        "process,bind_mount,fd,socket",
    ];

    pub const fn with(self, h: Holder) -> Self {
        HeldBy(self.0 | 1 << h.index())
    }

    pub const fn contains(self, h: Holder) -> bool {
        self.0 & (1 << h.index()) != 0
    }

    /// Held, but by no process: a bind mount, an fd or a socket only.
    pub const fn without_process(self) -> bool {
        self.0 != 0 && !self.contains(Holder::Process)
    }

    pub const fn as_str(self) -> &'static str {
        Self::NAMES[self.0 as usize]
    }

    /// The sets without a process and not empty: the `held_by` values of an orphan.
    pub fn orphan_values() -> impl Iterator<Item = HeldBy> {
        (1..Self::NAMES.len() as u8)
            .map(HeldBy)
            .filter(|h| h.without_process())
    }
}

// One name for every set of holders.
const _: () = assert!(HeldBy::NAMES.len() == 1 << Holder::ALL.len());

impl Serialize for HeldBy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

label_enum! {
    /// How namespaces are told apart across scans; the label value is the `method` label.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Identity {
        /// The kernel's never-reused namespace id (`NS_GET_ID`): exact.
        KernelId = "kernel_id",
        /// `(type, inode, first seen)` with member start times: the kernel lacks `NS_GET_ID`.
        Heuristic = "heuristic",
    }
}

/// When a scan was taken, in clock ticks since boot, with what is needed to show a tick count
/// as unix time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScanTime {
    /// `CLOCK_BOOTTIME` when the scan had read every process, in clock ticks.
    pub ticks: u64,
    /// `sysconf(_SC_CLK_TCK)`: the unit of `/proc/PID/stat`'s start time.
    pub ticks_per_second: u64,
    /// The unix time of boot as the wall clock had it at that instant. Taken anew each scan,
    /// so a clock step moves displayed times, never lifecycle comparisons.
    pub boot_unix: f64,
}

impl ScanTime {
    /// A scan at `ticks` of 100 a second, on a machine booted at the epoch: for tests.
    #[cfg(test)]
    pub fn fixture(ticks: u64) -> ScanTime {
        ScanTime {
            ticks,
            ticks_per_second: 100,
            boot_unix: 0.0,
        }
    }

    /// Ticks as seconds.
    pub fn seconds(&self, ticks: u64) -> f64 {
        ticks as f64 / self.ticks_per_second as f64
    }

    /// Ticks since boot as unix time.
    pub fn unix(&self, ticks: u64) -> f64 {
        self.boot_unix + self.seconds(ticks)
    }
}

label_enum! {
    /// The layout of the cgroup hierarchies (cgroups(7)), as `/proc/PID/cgroup` shows it: one
    /// `0::PATH` line for the unified (v2) hierarchy, one `N:CONTROLLERS:PATH` line per v1
    /// hierarchy. Runtimes make a cgroup namespace for a container only on a unified layout.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum CgroupLayout {
        /// v1 hierarchies only.
        Legacy = "v1",
        /// v1 controllers and a unified hierarchy beside them (systemd's hybrid mode).
        Hybrid = "hybrid",
        /// The unified (v2) hierarchy only.
        Unified = "unified",
        /// No cgroup file could be read.
        Unknown = "unknown",
    }
}

impl CgroupLayout {
    /// Whether container runtimes give each container its own cgroup namespace by default.
    /// Only on the unified hierarchy do they; where it is unknown, assume they do, so that a
    /// container in the host's cgroup namespace is still reported.
    pub const fn runtimes_unshare_cgroup(self) -> bool {
        !matches!(self, CgroupLayout::Legacy | CgroupLayout::Hybrid)
    }
}

label_enum! {
    /// How the host's namespaces were found; the label value is the `source` label.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum HostSource {
        /// PID 1 of the scanned procfs.
        Init = "init",
        /// kthreadd (PID 2): always in the kernel's initial namespaces, used where PID 1 is
        /// protected.
        Kthreadd = "kthreadd",
        /// Neither was readable: no namespace is marked as the host's.
        None = "none",
    }
}

/// The host's namespace of each type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostNamespaces {
    pub source: HostSource,
    pub inodes: PerType<Option<u64>>,
}

impl HostNamespaces {
    pub fn none() -> Self {
        HostNamespaces {
            source: HostSource::None,
            inodes: PerType::splat(None),
        }
    }

    /// Whether `id` is the host's namespace of its type.
    pub fn contains(&self, id: NamespaceId) -> bool {
        self.inodes[id.ns_type] == Some(id.inode)
    }
}

/// The immutable result of one scan.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Wall-clock time of the scan, for display only.
    pub taken_at: SystemTime,
    /// The scan's time in the lifecycle clock.
    pub time: ScanTime,
    pub processes: BTreeMap<i32, Process>,
    pub namespaces: HashMap<NamespaceId, Namespace>,
    pub host: HostNamespaces,
    /// How this snapshot's namespaces can be told apart from the previous one's.
    pub identity: Identity,
    /// The kernel's limits as the scan read them.
    pub limits: KernelLimits,
    /// What each network and mount namespace holds, as the full scan read it through one
    /// member (sweeps leave it as the scan left it).
    pub holds: Holds,
}

impl Snapshot {
    /// Takes over what `previous` found holding namespaces besides their members, and what
    /// they hold, for a snapshot whose processes were read again but not its pins
    /// ([`crate::scan::refresh`]): bind mounts as they were, fds and sockets of holders that
    /// still live, and the holds of namespaces that still exist.
    pub fn carry_held(&mut self, previous: &Snapshot) {
        let lives = |p: &ProcessId| self.processes.get(&p.pid).is_some_and(|now| now.id == *p);
        let mut carried: Vec<(NamespaceId, Pins)> = Vec::new();
        for ns in previous.namespaces.values() {
            let Some(pins) = &ns.pins else { continue };
            let kept = Pins {
                mounts: pins.mounts.clone(),
                fds: pins
                    .fds
                    .iter()
                    .filter(|f| lives(&f.process))
                    .cloned()
                    .collect(),
                sockets: pins
                    .sockets
                    .iter()
                    .filter(|s| lives(&s.process))
                    .cloned()
                    .collect(),
            };
            if !(kept.mounts.is_empty() && kept.fds.is_empty() && kept.sockets.is_empty()) {
                carried.push((ns.id, kept));
            }
        }
        for (id, pins) in carried {
            *self
                .namespaces
                .entry(id)
                .or_insert_with(|| Namespace::new(id))
                .pins_mut() = pins;
        }
        let exists = |t: NsType, inode: &u64| {
            self.namespaces.contains_key(&NamespaceId {
                ns_type: t,
                inode: *inode,
            })
        };
        self.holds.net = (previous.holds.net.iter())
            .filter(|(i, _)| exists(NsType::Net, i))
            .map(|(i, h)| (*i, h.clone()))
            .collect();
        self.holds.mounts = (previous.holds.mounts.iter())
            .filter(|(i, _)| exists(NsType::Mnt, i))
            .map(|(i, n)| (*i, *n))
            .collect();
    }
}

/// The kernel's limits on what namespaces hold, read once a scan (sysctls have no change
/// notification, and ten small reads cost less than a stat of each). `None` where the file
/// is absent (a kernel without the type, or without conntrack) or could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelLimits {
    /// `sys/user/max_TYPE_namespaces`: of the exporter's own user namespace (the kernel
    /// answers each reader with its user namespace's values, whatever procfs is read).
    pub namespaces: PerType<Option<u64>>,
    /// `sys/net/netfilter/nf_conntrack_max`.
    pub conntrack_entries: Option<u64>,
    /// `sys/fs/mount-max`: the mounts one mount namespace may hold.
    pub mounts_per_namespace: Option<u64>,
}

impl Snapshot {
    /// Builds the namespace index from processes. Processes are taken in pid order, so each
    /// namespace's members come out sorted.
    /// `identity` starts as [`Identity::Heuristic`]: the scan sets it, and each namespace's
    /// `kernel_id`, once it has asked the kernel.
    pub fn from_processes(
        taken_at: SystemTime,
        time: ScanTime,
        processes: BTreeMap<i32, Process>,
        host: HostNamespaces,
    ) -> Self {
        // Counted first, then filled: the map and every member list are allocated once, at
        // their size. Members cluster (children inherit their parent's namespaces), so there
        // are far fewer namespaces than processes: a map sized by the process count, and
        // lists grown by doubling, held megabytes more at 10,000 processes
        // (docs/performance.md), in every snapshot kept and twice during a scan. The count costs a hash lookup per link.
        let memberships = |process: &Process| {
            let threads = process.thread_namespaces.iter().map(|t| t.id);
            NsType::ALL
                .into_iter()
                .filter_map(|t| process.namespace(t))
                .chain(threads)
                .collect::<Vec<_>>()
        };
        let mut counts: HashMap<NamespaceId, usize> = HashMap::new();
        for process in processes.values() {
            if process.thread_namespaces.is_empty() {
                for id in NsType::ALL.into_iter().filter_map(|t| process.namespace(t)) {
                    *counts.entry(id).or_default() += 1;
                }
            } else {
                // A thread's namespace may repeat another's: counted as a member once.
                let mut ids = memberships(process);
                ids.sort_unstable();
                ids.dedup();
                for id in ids {
                    *counts.entry(id).or_default() += 1;
                }
            }
        }
        let mut namespaces: HashMap<NamespaceId, Namespace> = HashMap::with_capacity(counts.len());
        for (id, count) in counts {
            let mut ns = Namespace::new(id);
            ns.members = Vec::with_capacity(count);
            namespaces.insert(id, ns);
        }
        for process in processes.values() {
            let threads = process.thread_namespaces.iter().map(|t| t.id);
            for id in NsType::ALL
                .into_iter()
                .filter_map(|t| process.namespace(t))
                .chain(threads)
            {
                let ns = namespaces.get_mut(&id).expect("counted above");
                // Two threads in one other namespace make the process a member once.
                if ns.members.last() != Some(&process.id.pid) {
                    ns.members.push(process.id.pid);
                    let start = process.id.start_ticks;
                    ns.first_start = Some(ns.first_start.map_or(start, |s| s.min(start)));
                }
            }
        }
        Snapshot {
            taken_at,
            time,
            processes,
            namespaces,
            host,
            identity: Identity::Heuristic,
            limits: KernelLimits::default(),
            holds: Holds::default(),
        }
    }

    /// Namespaces in use by type, as far as the snapshot can tell: those seen (a member, a
    /// thread, a bind mount, an fd or a socket holds each), and the user and pid namespaces
    /// seen only as the owner or parent of one seen, which that reference keeps alive. The
    /// kernel counts a namespace against its limit until it is freed, whatever holds it, so
    /// this is the fewest that can be in use: what nothing visible holds (an fd in flight over
    /// a unix socket, a parent of a parent never asked about) is not in it.
    pub fn namespaces_in_use(&self) -> PerType<u64> {
        let mut count = PerType::splat(0u64);
        let mut named: HashSet<NamespaceId> = HashSet::new();
        for ns in self.namespaces.values() {
            count[ns.id.ns_type] += 1;
            let user = |inode| NamespaceId {
                ns_type: NsType::User,
                inode,
            };
            named.extend(ns.owner.map(user));
            if matches!(ns.id.ns_type, NsType::User | NsType::Pid) {
                named.extend(ns.parent.map(|inode| NamespaceId {
                    ns_type: ns.id.ns_type,
                    inode,
                }));
            }
        }
        for id in named {
            if !self.namespaces.contains_key(&id) {
                count[id.ns_type] += 1;
            }
        }
        count
    }

    /// The member that started first (ties broken by the lower pid): `lsns`'s PID column.
    pub fn oldest_member(&self, ns: &Namespace) -> Option<&Process> {
        ns.members
            .iter()
            .filter_map(|pid| self.processes.get(pid))
            .min_by_key(|p| (p.id.start_ticks, p.id.pid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip_and_reject_unknown() {
        for t in NsType::ALL {
            assert_eq!(t.as_str().parse::<NsType>(), Ok(t));
            assert_eq!(NsType::ALL[t.index()], t);
        }
        assert!("pid_for_children".parse::<NsType>().is_err());
        assert!("".parse::<NsType>().is_err());
    }

    /// Two threads in one other namespace make their process a member once; every member
    /// list is allocated at its size; a namespace's first start is its earliest member's,
    /// a thread's process counted.
    #[test]
    fn members_are_counted_once_and_lists_sized_exactly() {
        let process = |pid: i32, net: u64, threads: &[(i32, u64)]| {
            let mut namespaces = PerType::splat(None);
            namespaces[NsType::Net] = inode(net);
            namespaces[NsType::User] = inode(1);
            // Started out of pid order, so that the first start is not the first member's.
            let start_ticks = match pid {
                10 => 200,
                11 => 150,
                _ => 120,
            };
            Process {
                id: ProcessId { pid, start_ticks },
                ppid: 1,
                uid: 0,
                comm: "p".into(),
                namespaces,
                cgroup: None,
                thread_namespaces: threads
                    .iter()
                    .map(|&(tid, inode)| ThreadNamespace {
                        tid,
                        id: NamespaceId {
                            ns_type: NsType::Net,
                            inode,
                        },
                    })
                    .collect(),
            }
        };
        let processes: BTreeMap<i32, Process> = [
            process(10, 7, &[]),
            process(11, 7, &[(12, 9), (13, 9), (14, 8)]),
            process(15, 9, &[]),
        ]
        .into_iter()
        .map(|p| (p.id.pid, p))
        .collect();
        let time = ScanTime {
            ticks: 1000,
            ticks_per_second: 100,
            boot_unix: 0.0,
        };
        let s = Snapshot::from_processes(
            SystemTime::UNIX_EPOCH,
            time,
            processes,
            HostNamespaces::none(),
        );
        let members = |t, inode| {
            let ns = &s.namespaces[&NamespaceId { ns_type: t, inode }];
            assert_eq!(ns.members.len(), ns.members.capacity(), "{t} {inode}");
            ns.members.clone()
        };
        assert_eq!(members(NsType::Net, 7), [10, 11]);
        assert_eq!(members(NsType::Net, 8), [11]);
        assert_eq!(members(NsType::Net, 9), [11, 15]);
        assert_eq!(members(NsType::User, 1), [10, 11, 15]);
        assert_eq!(s.namespaces.len(), 4);
        let first_start = |t, inode| s.namespaces[&NamespaceId { ns_type: t, inode }].first_start;
        assert_eq!(first_start(NsType::Net, 7), Some(150));
        assert_eq!(first_start(NsType::Net, 8), Some(150));
        assert_eq!(first_start(NsType::Net, 9), Some(120));
        assert_eq!(first_start(NsType::User, 1), Some(120));
    }

    /// A pid in both lists is one process only where its start time is one in both
    /// snapshots: pids are reused.
    #[test]
    fn members_are_compared_by_pid_and_start_time() {
        let processes = |ps: &[(i32, u64)]| -> BTreeMap<i32, Process> {
            ps.iter()
                .map(|&(pid, start_ticks)| {
                    let id = ProcessId { pid, start_ticks };
                    let p = Process {
                        id,
                        ..Process::fixture(pid, PerType::splat(None))
                    };
                    (pid, p)
                })
                .collect()
        };
        let old = processes(&[(1, 1), (5, 2), (9, 3)]);
        let new = processes(&[(2, 1), (5, 3), (9, 3)]);
        let share = |a: &[i32], b: &[i32]| share_a_member((a, &old), (b, &new));
        assert!(share(&[1, 5, 9], &[2, 9]), "9 is one process in both");
        assert!(!share(&[1, 5], &[5]), "pid 5 reused");
        assert!(!share(&[1, 5], &[2]), "no pid in common");
        assert!(!share(&[], &[5]));
        // A pid its snapshot does not hold is no evidence.
        assert!(!share(&[7], &[7]));
    }

    /// A snapshot holds a process per process on the node and a namespace per namespace,
    /// twice at a scan's peak (the previous snapshot and the new one): their sizes are the
    /// exporter's memory at 10,000 processes. A field that grows them fails here first.
    #[test]
    fn a_process_and_a_namespace_stay_small() {
        use std::mem::size_of;
        assert_eq!(size_of::<Option<Inode>>(), 4);
        assert!(size_of::<Process>() <= 112, "{}", size_of::<Process>());
        assert!(size_of::<Namespace>() <= 112, "{}", size_of::<Namespace>());
    }

    #[test]
    fn held_by_names_each_set_in_holder_order() {
        let all = HeldBy::default()
            .with(Holder::Fd)
            .with(Holder::Process)
            .with(Holder::BindMount);
        assert_eq!(all.as_str(), "process,bind_mount,fd");
        assert_eq!(HeldBy::default().as_str(), "none");
        let names: Vec<&str> = HeldBy::orphan_values().map(HeldBy::as_str).collect();
        assert_eq!(
            names,
            [
                "bind_mount",
                "fd",
                "bind_mount,fd",
                "socket",
                "bind_mount,socket",
                "fd,socket",
                "bind_mount,fd,socket"
            ]
        );
        // Every name lists its holders, and only those, in holder order.
        for bits in 0..HeldBy::NAMES.len() as u8 {
            let held = HeldBy(bits);
            let want: Vec<&str> = Holder::ALL
                .into_iter()
                .filter(|h| held.contains(*h))
                .map(Holder::as_str)
                .collect();
            let want = if want.is_empty() {
                "none".to_owned()
            } else {
                want.join(",")
            };
            assert_eq!(held.as_str(), want);
        }
        let mut ns = Namespace::new(NamespaceId {
            ns_type: NsType::Net,
            inode: 4026532177,
        });
        assert_eq!(ns.held_by().as_str(), "none");
        ns.pins_mut().mounts.push(MountPin {
            mnt_ns: 1,
            path: "/run/netns/x".into(),
            via_pid: 10,
        });
        ns.pins_mut().mounts.push(MountPin {
            mnt_ns: 2,
            path: "/run/netns/x".into(),
            via_pid: 20,
        });
        assert!(ns.held_by().without_process());
        assert_eq!(ns.mount_paths(), ["/run/netns/x"]);
    }
}

label_enum! {
    /// The protocols of `/proc/PID/net/sockstat` and `sockstat6` whose `inuse` counts sockets
    /// (the `FRAG` lines count IP fragment queues, not sockets); the label value is the line's
    /// name in lower case.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum SocketProtocol {
        Tcp = "tcp",
        Udp = "udp",
        Udplite = "udplite",
        Raw = "raw",
        Tcp6 = "tcp6",
        Udp6 = "udp6",
        Udplite6 = "udplite6",
        Raw6 = "raw6",
    }
}

/// The traffic of a network namespace's interfaces but `lo`, summed, as `/proc/PID/net/dev`
/// counts it since each interface was made (or moved in).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub receive_bytes: u64,
    pub receive_packets: u64,
    pub receive_errors: u64,
    pub receive_drops: u64,
    pub transmit_bytes: u64,
    pub transmit_packets: u64,
    pub transmit_errors: u64,
    pub transmit_drops: u64,
}

/// What one network namespace holds, each part `None` where it could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetHolds {
    /// Its interfaces, `lo` included, with their traffic (`lo`'s left out).
    pub interfaces: Option<(u32, Traffic)>,
    /// Sockets in use, by protocol: those its `sockstat` and `sockstat6` name.
    pub sockets: Vec<(SocketProtocol, u64)>,
    /// Conntrack entries: `None` where the kernel has no conntrack.
    pub conntrack: Option<u64>,
}

/// What the network and mount namespaces of one scan hold, by inode: those with a member
/// process whose files could be read (a namespace held only by a bind mount, an fd or a socket
/// has no `/proc/PID/net` or `mountinfo` to read without `setns`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Holds {
    pub net: HashMap<u64, NetHolds>,
    /// Mounts of each mount namespace: the lines of one member's `mountinfo`.
    pub mounts: HashMap<u64, u32>,
}
