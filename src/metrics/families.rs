//! Every family nsexporter exports, declared once: name, help, type, label names (and buckets),
//! which part of the exposition it is written into, when it is exported, and what writes its
//! samples. The store, the per-scan view, the self-process reader and
//! `docs/metrics.md` (by a test) all follow this table; the code that records a family names
//! it by its [`Id`].

use crate::attribution::{NameErrorReason, NameSource};
use crate::events::{DropReason, LostReason, TaskKind};
use crate::model::{HeldBy, NsType, SocketProtocol};
use crate::policy::Rule;
use crate::privilege::Level;
use crate::privilege::container::LEVELS as LEVEL_VALUES;
use crate::scan::pins::SocketSkip;
use crate::scan::refresh::{ScanMode, WalkReason};
use crate::scan::{ErrorReason, FailureReason};

pub mod handle;

use handle::{KindOf, LabelSet};

/// One metric family.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Label names, in the order the code that records it gives their values.
    pub labels: &'static [&'static str],
    /// The label values exported at 0 from the start, one list for each label: every
    /// combination is there before anything is counted, so that `rate()` and alerts see a
    /// zero, not nothing. Empty: series appear as they are set. A family without labels is
    /// always there.
    pub preset: &'static [LabelValues],
    pub part: Part,
    pub when: When,
    pub written_by: WrittenBy,
}

/// The values of one label.
pub type LabelValues = fn() -> Vec<&'static str>;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    /// With its bucket bounds.
    Histogram(&'static [f64]),
}

impl Kind {
    /// Whether `other` is the same kind, whatever its buckets.
    pub const fn same(self, other: Kind) -> bool {
        matches!(
            (self, other),
            (Kind::Counter, Kind::Counter)
                | (Kind::Gauge, Kind::Gauge)
                | (Kind::Histogram(_), Kind::Histogram(_))
        )
    }

    /// The `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram(_) => "histogram",
        }
    }
}

/// Which encoded part of the exposition a family is in: the scan's part is encoded once a
/// scan and reused by the sweeps; the live part is encoded again after every sweep and batch
/// of events, which change it between scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Scan,
    Live,
}

/// When a family is exported: with sweeps, process events and eBPF off, the exposition is
/// what it was before they existed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    /// With sweeps on (`--scan.sweep-interval` shorter than the scan interval).
    Sweeps,
    /// With the proc connector listening (`--scan.proc-events`).
    ProcEvents,
    /// With the eBPF source attached (`--scan.ebpf`).
    Ebpf,
    /// With any of the three.
    BetweenScans,
}

/// What runs between scans, as the scan loop started it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BetweenScans {
    pub sweeps: bool,
    pub proc_events: bool,
    pub ebpf: bool,
}

impl When {
    pub fn holds(self, on: BetweenScans) -> bool {
        match self {
            When::Always => true,
            When::Sweeps => on.sweeps,
            When::ProcEvents => on.proc_events,
            When::Ebpf => on.ebpf,
            When::BetweenScans => on.sweeps || on.proc_events || on.ebpf,
        }
    }
}

/// Where a family's samples come from; one encoder ([`super::encode`]) writes them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrittenBy {
    /// The [`super::store::Store`], through the family's typed handle: counters and
    /// histograms that accumulate, and gauges that a record sets.
    Recorded,
    /// The per-scan [`super::view::ScanView`]: a series per namespace or container, replaced
    /// whole each scan.
    View,
    /// The exporter's own process, read into the store when the scan's part is encoded; left
    /// out of that part where the read failed.
    OwnProcess,
}

const SCAN: Family = Family {
    name: "",
    help: "",
    kind: Kind::Gauge,
    labels: &[],
    preset: &[],
    part: Part::Scan,
    when: When::Always,
    written_by: WrittenBy::Recorded,
};
const LIVE: Family = Family {
    part: Part::Live,
    ..SCAN
};
const VIEW: Family = Family {
    written_by: WrittenBy::View,
    ..SCAN
};
const LIVE_VIEW: Family = Family {
    part: Part::Live,
    ..VIEW
};
const OWN_PROCESS: Family = Family {
    written_by: WrittenBy::OwnProcess,
    ..SCAN
};

/// Lifetimes run from a `unshare` that lives a second to a host namespace that lives for months;
/// short-lived ones (a CI step, a probe's exec) get the finer buckets.
const LIFETIME_BUCKETS: &[f64] = &[
    1.0, 2.5, 5.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0, 604800.0, 2592000.0,
];
const SCAN_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

const NS_TYPES: LabelValues = || NsType::ALL.map(NsType::as_str).to_vec();
const SOCKET_PROTOCOLS: LabelValues = || SocketProtocol::ALL.map(SocketProtocol::as_str).to_vec();
const RULES: LabelValues = || Rule::ALL.map(Rule::as_str).to_vec();
const ORPHAN_HELD_BY: LabelValues = || HeldBy::orphan_values().map(HeldBy::as_str).collect();
const SOCKET_SKIPS: LabelValues = || SocketSkip::ALL.map(SocketSkip::as_str).to_vec();
const FAILURES: LabelValues = || FailureReason::ALL.map(FailureReason::as_str).to_vec();
const ERRORS: LabelValues = || ErrorReason::ALL.map(ErrorReason::as_str).to_vec();
const NAME_SOURCES: LabelValues = || NameSource::ALL.map(NameSource::as_str).to_vec();
const NAME_ERRORS: LabelValues = || NameErrorReason::ALL.map(NameErrorReason::as_str).to_vec();
const DROPS: LabelValues = || DropReason::ALL.map(DropReason::as_str).to_vec();
const LEVELS: LabelValues = || LEVEL_VALUES.map(Level::as_str).to_vec();
const LOSSES: LabelValues = || LostReason::ALL.map(LostReason::as_str).to_vec();
const WALKS: LabelValues = || WalkReason::ALL.map(WalkReason::as_str).to_vec();
const MODES: LabelValues = || ScanMode::ALL.map(ScanMode::as_str).to_vec();
const TASK_KINDS: LabelValues = || TaskKind::ALL.map(TaskKind::as_str).to_vec();

/// Declares [`Id`], [`FAMILIES`] and the typed [`handles`] from one list of rows. Each row
/// names its kind and label types (`Counter<(NsType,)>`), or `View` for a family the per-scan
/// view writes; a row whose table entry disagrees with them does not compile.
macro_rules! families {
    ($( $id:ident : $kind:ident $(<$labels:ty>)? = $row:expr, )+) => {
        /// A family, as the code that records it names it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Id {
            $( $id, )+
        }

        impl Id {
            pub const ALL: [Id; [$( Id::$id ),+].len()] = [$( Id::$id ),+];

            /// Position in [`Self::ALL`] and in [`FAMILIES`], to index per-family arrays.
            pub const fn index(self) -> usize {
                self as usize
            }

            /// Its row of [`FAMILIES`].
            pub fn family(self) -> &'static Family {
                &FAMILIES[self.index()]
            }
        }

        /// Every family, in the order of [`Id`]. The exposition is in name order whatever
        /// the order here.
        pub static FAMILIES: [Family; Id::ALL.len()] = [$( $row, )+];

        /// A handle for each family that a record sets, of its kind and with its label types,
        /// named as its [`Id`].
        #[allow(non_upper_case_globals)]
        pub mod handles {
            use super::*;
            use super::handle::{Counter, Gauge, Handle, Histogram};
            $( families!(@handle $row; $id $kind $(<$labels>)?); )+
        }
    };
    (@handle $row:expr; $id:ident View) => {
        const _: () = assert!(matches!($row.written_by, WrittenBy::View), stringify!($id));
    };
    (@handle $row:expr; $id:ident $kind:ident <$labels:ty>) => {
        pub const $id: Handle<$kind, $labels> = {
            const ROW: Family = $row;
            assert!(
                <$kind as KindOf>::KIND.same(ROW.kind),
                concat!(stringify!($id), ": the handle's kind is not the row's")
            );
            assert!(
                <$labels as LabelSet>::LEN == ROW.labels.len(),
                concat!(stringify!($id), ": the handle's labels are not the row's")
            );
            assert!(!matches!(ROW.written_by, WrittenBy::View), stringify!($id));
            Handle::new(Id::$id)
        };
    };
}

families! {
    Namespaces: Gauge<(NsType,)> = Family {
        name: "nsexporter_namespaces",
        help: "Namespaces seen in the last scan, by type.",
        kind: Kind::Gauge,
        labels: &["type"],
        preset: &[NS_TYPES],
        ..SCAN
    },
    NamespaceProcesses: View = Family {
        name: "nsexporter_namespace_processes",
        help: "Member processes of each namespace in the last scan.",
        kind: Kind::Gauge,
        labels: &["type", "inode"],
        ..VIEW
    },
    NamespaceInfo: View = Family {
        name: "nsexporter_namespace_info",
        help: "One series per namespace seen in the last scan; host=\"true\" marks the host's namespace of that type, owner says what its members belong to (none: it has no member process), and the container labels are set where all members agree (for one with no member, all the processes holding its fds and sockets); held_by says what keeps it alive (process, bind_mount, fd, socket), pinned_at the bind mount paths, userns its owning user namespace and parent its parent pid or user namespace, as inodes.",
        kind: Kind::Gauge,
        labels: &["type", "inode", "host", "held_by", "pinned_at", "userns", "parent", "owner", "runtime", "pod_uid", "pod", "k8s_namespace", "container", "container_id"],
        ..VIEW
    },
    NamespaceStartTime: View = Family {
        name: "nsexporter_namespace_start_time_seconds",
        help: "Estimated creation time of each namespace: the earliest start time of any member seen, as unix time.",
        kind: Kind::Gauge,
        labels: &["type", "inode"],
        ..VIEW
    },
    NetnsInterfaces: View = Family {
        name: "nsexporter_network_namespace_interfaces",
        help: "Interfaces of each network namespace with a member process, lo included, as its /proc/PID/net/dev lists them in the last scan.",
        kind: Kind::Gauge,
        labels: &["inode"],
        ..VIEW
    },
    NetnsReceiveBytes: View = Family {
        name: "nsexporter_network_namespace_receive_bytes_total",
        help: "Bytes received by the interfaces of each network namespace with a member process, lo left out, summed from its /proc/PID/net/dev in the last scan; an interface's counters start when it is made or moved in, and drop when it goes.",
        kind: Kind::Counter,
        labels: &["inode"],
        ..VIEW
    },
    NetnsTransmitBytes: View = Family {
        name: "nsexporter_network_namespace_transmit_bytes_total",
        help: "Bytes sent by the interfaces of each network namespace with a member process, lo left out, summed from its /proc/PID/net/dev in the last scan; an interface's counters start when it is made or moved in, and drop when it goes.",
        kind: Kind::Counter,
        labels: &["inode"],
        ..VIEW
    },
    NetnsReceivePackets: View = Family {
        name: "nsexporter_network_namespace_receive_packets_total",
        help: "Packets received by the interfaces of each network namespace with a member process, lo left out, summed from its /proc/PID/net/dev in the last scan; an interface's counters start when it is made or moved in, and drop when it goes.",
        kind: Kind::Counter,
        labels: &["inode"],
        ..VIEW
    },
    NetnsTransmitPackets: View = Family {
        name: "nsexporter_network_namespace_transmit_packets_total",
        help: "Packets sent by the interfaces of each network namespace with a member process, lo left out, summed from its /proc/PID/net/dev in the last scan; an interface's counters start when it is made or moved in, and drop when it goes.",
        kind: Kind::Counter,
        labels: &["inode"],
        ..VIEW
    },
    NetnsReceiveErrors: View = Family {
        name: "nsexporter_network_namespace_receive_errors_total",
        help: "Receive errors by the interfaces of each network namespace with a member process, lo left out, summed from its /proc/PID/net/dev in the last scan; an interface's counters start when it is made or moved in, and drop when it goes.",
        kind: Kind::Counter,
        labels: &["inode"],
        ..VIEW
    },
    NetnsTransmitErrors: View = Family {
        name: "nsexporter_network_namespace_transmit_errors_total",
        help: "Transmit errors by the interfaces of each network namespace with a member process, lo left out, summed from its /proc/PID/net/dev in the last scan; an interface's counters start when it is made or moved in, and drop when it goes.",
        kind: Kind::Counter,
        labels: &["inode"],
        ..VIEW
    },
    NetnsReceiveDrops: View = Family {
        name: "nsexporter_network_namespace_receive_drops_total",
        help: "Received packets dropped by the interfaces of each network namespace with a member process, lo left out, summed from its /proc/PID/net/dev in the last scan; an interface's counters start when it is made or moved in, and drop when it goes.",
        kind: Kind::Counter,
        labels: &["inode"],
        ..VIEW
    },
    NetnsTransmitDrops: View = Family {
        name: "nsexporter_network_namespace_transmit_drops_total",
        help: "Packets dropped on sending by the interfaces of each network namespace with a member process, lo left out, summed from its /proc/PID/net/dev in the last scan; an interface's counters start when it is made or moved in, and drop when it goes.",
        kind: Kind::Counter,
        labels: &["inode"],
        ..VIEW
    },
    NetnsSockets: View = Family {
        name: "nsexporter_network_namespace_sockets",
        help: "Sockets in use in each network namespace with a member process, by protocol (tcp, udp, udplite, raw and their 6 forms), as its /proc/PID/net/sockstat and sockstat6 count them in the last scan (tcp: listening and connected, not TIME_WAIT).",
        kind: Kind::Gauge,
        labels: &["inode", "protocol"],
        ..VIEW
    },
    NetnsConntrack: View = Family {
        name: "nsexporter_network_namespace_conntrack_entries",
        help: "Conntrack entries of each network namespace with a member process, from its /proc/PID/net/stat/nf_conntrack in the last scan; none where the kernel has no conntrack.",
        kind: Kind::Gauge,
        labels: &["inode"],
        ..VIEW
    },
    NetnsHeldSockets: View = Family {
        name: "nsexporter_network_namespace_held_sockets",
        help: "Sockets made in each network namespace with no member process and held by processes outside it, as the last fd pass found them (one socket counted once, however many fds hold it); what can be known of such a namespace without setns. Needs the fd pass to ask sockets (CAP_NET_ADMIN, the host's pid namespace).",
        kind: Kind::Gauge,
        labels: &["inode"],
        ..VIEW
    },
    MountNamespaceMounts: View = Family {
        name: "nsexporter_mount_namespace_mounts",
        help: "Mounts of each mount namespace with a member process: the lines of one member's /proc/PID/mountinfo in the last scan (fs.mount-max bounds each mount namespace).",
        kind: Kind::Gauge,
        labels: &["inode"],
        ..VIEW
    },
    ConntrackEntries: Gauge<()> = Family {
        name: "nsexporter_conntrack_entries",
        help: "Conntrack entries summed over the network namespaces with a member process in the last scan, whatever --metrics.per-namespace says (net.netfilter.nf_conntrack_max bounds the sum); 0 where the kernel has no conntrack.",
        kind: Kind::Gauge,
        ..SCAN
    },
    Sockets: Gauge<(SocketProtocol,)> = Family {
        name: "nsexporter_sockets",
        help: "Sockets in use by protocol, summed over the network namespaces with a member process in the last scan, whatever --metrics.per-namespace says.",
        kind: Kind::Gauge,
        labels: &["protocol"],
        preset: &[SOCKET_PROTOCOLS],
        ..SCAN
    },
    MountsMax: Gauge<()> = Family {
        name: "nsexporter_mount_namespace_mounts_max",
        help: "Mounts of the mount namespace with the most in the last scan, whatever --metrics.per-namespace says: fs.mount-max bounds each mount namespace.",
        kind: Kind::Gauge,
        ..SCAN
    },
    HeldSocketsMax: Gauge<()> = Family {
        name: "nsexporter_network_namespace_held_sockets_max",
        help: "Sockets held from outside in the network namespace with no member process that has the most, as the last fd pass found them, whatever --metrics.per-namespace says; 0 where there is none.",
        kind: Kind::Gauge,
        ..SCAN
    },
    WorkloadNamespacesBeyondCap: View = Family {
        name: "nsexporter_workload_namespaces_beyond_cap",
        help: "Namespaces of one workload beyond --metrics.namespaces-per-workload, by type: counted here, with no series of their own (its namespaces with processes and its oldest keep theirs). owner is container or pod for the workload the labels name; for namespaces that name neither, their owner (host, kernel, unknown, none). Only for workloads over the cap.",
        kind: Kind::Gauge,
        labels: &["type", "owner", "runtime", "pod_uid", "pod", "k8s_namespace", "container", "container_id"],
        ..VIEW
    },
    WorkloadsOverCap: Gauge<()> = Family {
        name: "nsexporter_workloads_over_namespace_cap",
        help: "Workloads (containers, pods, and the namespaces of each owner that name neither) holding more namespaces than --metrics.namespaces-per-workload in the last scan; 0 with no cap.",
        kind: Kind::Gauge,
        ..SCAN
    },
    Created: Counter<(NsType,)> = Family {
        name: "nsexporter_namespaces_created_total",
        help: "Namespaces first seen after the first scan, by type.",
        kind: Kind::Counter,
        labels: &["type"],
        preset: &[NS_TYPES],
        ..SCAN
    },
    Destroyed: Counter<(NsType,)> = Family {
        name: "nsexporter_namespaces_destroyed_total",
        help: "Namespaces no longer seen, by type.",
        kind: Kind::Counter,
        labels: &["type"],
        preset: &[NS_TYPES],
        ..SCAN
    },
    Lifetime: Histogram<(NsType,)> = Family {
        name: "nsexporter_namespace_lifetime_seconds",
        help: "Lifetimes of destroyed namespaces, from estimated creation to the scan that missed them.",
        kind: Kind::Histogram(LIFETIME_BUCKETS),
        labels: &["type"],
        preset: &[NS_TYPES],
        ..SCAN
    },
    WorkloadHostNamespace: View = Family {
        name: "nsexporter_workload_host_namespace",
        help: "1 for each container with a process in the host's namespace of that type, allowed or not.",
        kind: Kind::Gauge,
        labels: &["type", "runtime", "container_id", "container", "pod", "k8s_namespace"],
        ..VIEW
    },
    FindingsActive: View = Family {
        name: "nsexporter_sharing_findings_active",
        help: "1 for each sharing the policy does not allow, now, by rule (host_namespace, cross_workload, host_mount_from_container, undeclared_namespace, user_namespace_not_applied, left_container_cgroup, privilege_exceeds_declared) and whether the container's OCI spec declared it (declared: true, false, unknown where no spec was found); nsexporter_sharing_findings_total counts them as they appear.",
        kind: Kind::Gauge,
        labels: &["rule", "type", "declared", "runtime", "container_id", "container", "pod", "k8s_namespace"],
        ..LIVE_VIEW
    },
    PrivilegeInfo: View = Family {
        name: "nsexporter_container_privilege_info",
        help: "1 for each container, with what its processes can do to the host: host_user (a process in the host's user namespace), root_is_host_root (its uid 0 is the host's), seccomp (disabled, strict, filter), no_new_privs, lsm (none, unconfined, labelled), the Pod Security level it meets (privileged, baseline, restricted) and the escape-relevant capabilities effective in the host's user namespace (host_capabilities, comma-separated).",
        kind: Kind::Gauge,
        labels: &["container_id", "container", "pod", "k8s_namespace", "host_user", "root_is_host_root", "seccomp", "no_new_privs", "lsm", "level", "host_capabilities"],
        ..VIEW
    },
    PrivilegeContainers: Gauge<(Level,)> = Family {
        name: "nsexporter_container_privilege_containers",
        help: "Containers on the node by the Pod Security level their processes meet.",
        kind: Kind::Gauge,
        labels: &["level"],
        preset: &[LEVELS],
        ..SCAN
    },
    PrivilegeReadErrors: Counter<()> = Family {
        name: "nsexporter_container_privilege_read_errors_total",
        help: "Reads of a container process's privilege (status, uid_map, gid_map, attr/current, mountinfo) that failed other than by the process exiting.",
        kind: Kind::Counter,
        ..SCAN
    },
    FindingsTotal: Counter<(Rule, NsType)> = Family {
        name: "nsexporter_sharing_findings_total",
        help: "Sharing findings counted as they first appear, by rule and type.",
        kind: Kind::Counter,
        labels: &["rule", "type"],
        preset: &[RULES, NS_TYPES],
        ..LIVE
    },
    Orphans: Gauge<(NsType, HeldBy)> = Family {
        name: "nsexporter_orphaned_namespaces",
        help: "Namespaces with no member process for longer than --namespace.orphan-age, held only by a bind mount, an open fd or a socket made in it (held_by): leaked, most often.",
        kind: Kind::Gauge,
        labels: &["type", "held_by"],
        preset: &[NS_TYPES, ORPHAN_HELD_BY],
        ..SCAN
    },
    OrphanMaxAge: Gauge<(NsType, HeldBy)> = Family {
        name: "nsexporter_orphaned_namespace_max_age_seconds",
        help: "Seconds the oldest orphaned namespace of each type and held_by has had no member process (counted from when the exporter first saw it so).",
        kind: Kind::Gauge,
        labels: &["type", "held_by"],
        ..SCAN
    },
    NamespacesLimit: Gauge<(NsType,)> = Family {
        name: "nsexporter_namespaces_limit",
        help: "The kernel's limit on namespaces of each type (user.max_TYPE_namespaces) in the exporter's own user namespace, read each scan; where the file is absent, no series. The kernel checks it per creating uid, in that user namespace and each one above it.",
        kind: Kind::Gauge,
        labels: &["type"],
        ..SCAN
    },
    NamespacesInUse: Gauge<(NsType,)> = Family {
        name: "nsexporter_namespaces_in_use",
        help: "Namespaces of each type that the last scan found alive: nsexporter_namespaces, and the user and pid namespaces seen only as the owner or parent of one of them. The kernel counts at least these against nsexporter_namespaces_limit (it counts per creating uid, which /proc does not tell).",
        kind: Kind::Gauge,
        labels: &["type"],
        preset: &[NS_TYPES],
        ..SCAN
    },
    ConntrackLimit: Gauge<()> = Family {
        name: "nsexporter_conntrack_entries_limit",
        help: "The kernel's limit on conntrack entries (net.netfilter.nf_conntrack_max), read each scan; absent where the kernel has no conntrack.",
        kind: Kind::Gauge,
        ..SCAN
    },
    MountsLimit: Gauge<()> = Family {
        name: "nsexporter_mount_namespace_mounts_limit",
        help: "The kernel's limit on the mounts of one mount namespace (fs.mount-max), read each scan.",
        kind: Kind::Gauge,
        ..SCAN
    },
    FdsSkipped: Gauge<()> = Family {
        name: "nsexporter_fd_scan_skipped_processes",
        help: "Processes of other users whose open fds the last fd pass could not read: listing another user's /proc/PID/fd needs CAP_DAC_READ_SEARCH. Namespaces held only by their fds are not seen.",
        kind: Kind::Gauge,
        ..SCAN
    },
    SocketsSkipped: Gauge<(SocketSkip,)> = Family {
        name: "nsexporter_fd_scan_skipped_sockets",
        help: "Socket fds whose network namespace the last fd pass could not learn, by reason: other_pid_namespace (the procfs is not of the exporter's pid namespace: a pod without hostPID), no_net_admin (SIOCGSKNS needs CAP_NET_ADMIN), permission_denied (pidfd_getfd refused: no CAP_SYS_PTRACE over the holder, or an LSM), unsupported (Linux < 5.6). Network namespaces held only by such sockets are not seen.",
        kind: Kind::Gauge,
        labels: &["reason"],
        preset: &[SOCKET_SKIPS],
        ..SCAN
    },
    SocketQueries: Counter<()> = Family {
        name: "nsexporter_fd_scan_socket_queries_total",
        help: "Sockets whose network namespace an fd pass asked of the kernel (pidfd_getfd, then SIOCGSKNS): each socket once while it lives, so this follows how many sockets are opened, not how many are open.",
        kind: Kind::Counter,
        ..SCAN
    },
    HostSource: Gauge<(crate::model::HostSource,)> = Family {
        name: "nsexporter_host_namespaces_source",
        help: "1 for where the last scan found the host's namespaces: init (PID 1), kthreadd (PID 2, where PID 1 is protected) or none (neither readable: no host sharing can be seen).",
        kind: Kind::Gauge,
        labels: &["source"],
        ..SCAN
    },
    Processes: Gauge<()> = Family {
        name: "nsexporter_processes",
        help: "Processes read in the last scan.",
        kind: Kind::Gauge,
        ..SCAN
    },
    Scans: Counter<()> = Family {
        name: "nsexporter_scans_total",
        help: "Scans of the procfs, successful or not.",
        kind: Kind::Counter,
        ..SCAN
    },
    ScanSuccess: Gauge<()> = Family {
        name: "nsexporter_scan_success",
        help: "1 if the last scan succeeded, 0 if it failed (see nsexporter_scan_failures_total); the namespace and finding series are then the last good scan's.",
        kind: Kind::Gauge,
        ..SCAN
    },
    ScanFailures: Counter<(FailureReason,)> = Family {
        name: "nsexporter_scan_failures_total",
        help: "Scans that produced no snapshot, by reason: procfs_unavailable (the procfs root is gone), no_processes, too_many_open_files, permission_denied, io_error.",
        kind: Kind::Counter,
        labels: &["reason"],
        preset: &[FAILURES],
        ..SCAN
    },
    ScanErrors: Counter<(ErrorReason,)> = Family {
        name: "nsexporter_scan_errors_total",
        help: "Failed reads during scans, by reason. Processes that exit mid-scan are not errors. A process that keeps failing the same way is counted once, when it began (see nsexporter_scan_errors_standing).",
        kind: Kind::Counter,
        labels: &["reason"],
        preset: &[ERRORS],
        ..SCAN
    },
    ScanErrorsStanding: Gauge<(ErrorReason,)> = Family {
        name: "nsexporter_scan_errors_standing",
        help: "Processes whose reads failed in the last scan for the same reason as in the scan before: how the node is built (a protected init, a process an LSM hides), counted once in nsexporter_scan_errors_total and not every scan.",
        kind: Kind::Gauge,
        labels: &["reason"],
        preset: &[ERRORS],
        ..SCAN
    },
    NameSourceErrors: Counter<(NameSource, NameErrorReason)> = Family {
        name: "nsexporter_name_source_errors_total",
        help: "Failed reads of the files that name containers, by source (kubelet, spec, docker, podman) and reason: permission_denied, parse_error, too_large, io_error. A missing source is no error.",
        kind: Kind::Counter,
        labels: &["source", "reason"],
        preset: &[NAME_SOURCES, NAME_ERRORS],
        ..SCAN
    },
    ScanDuration: Histogram<()> = Family {
        name: "nsexporter_scan_duration_seconds",
        help: "Duration of each scan of the procfs.",
        kind: Kind::Histogram(SCAN_DURATION_BUCKETS),
        ..SCAN
    },
    ScanInterval: Gauge<()> = Family {
        name: "nsexporter_scan_interval_seconds",
        help: "The configured time between two scans.",
        kind: Kind::Gauge,
        ..SCAN
    },
    LastScan: Gauge<()> = Family {
        name: "nsexporter_last_scan_timestamp_seconds",
        help: "Unix time of the last successful scan.",
        kind: Kind::Gauge,
        ..SCAN
    },
    Identity: Gauge<(crate::model::Identity,)> = Family {
        name: "nsexporter_namespace_identity",
        help: "1 for how the last scan told namespaces apart across scans: kernel_id (NS_GET_ID, never reused, exact) or heuristic (inode and member start times, where the kernel lacks NS_GET_ID).",
        kind: Kind::Gauge,
        labels: &["method"],
        ..SCAN
    },
    IdQueries: Counter<()> = Family {
        name: "nsexporter_namespace_id_queries_total",
        help: "Namespaces whose kernel id (and owner and parent) was asked of the kernel: those new, with no member left from the scan before, or with no member at all and not held by the same fd or socket as in the scan before (those held by a bind mount are asked every scan; of those one process holds, at most 256 a scan).",
        kind: Kind::Counter,
        ..SCAN
    },
    CgroupLayout: Gauge<(crate::model::CgroupLayout,)> = Family {
        name: "nsexporter_cgroup_layout",
        help: "1 for the host's cgroup layout: v1, hybrid, unified or unknown. On v1 and hybrid, cgroup is not in the default host_namespace_types.",
        kind: Kind::Gauge,
        labels: &["layout"],
        ..SCAN
    },
    Sweeps: Counter<()> = Family {
        name: "nsexporter_sweeps_total",
        help: "Sweeps between full scans for new processes (--scan.sweep-interval).",
        kind: Kind::Counter,
        when: When::Sweeps,
        ..LIVE
    },
    SweepProcesses: Counter<()> = Family {
        name: "nsexporter_sweep_processes_total",
        help: "Processes read between full scans, by the sweeps and on process events.",
        kind: Kind::Counter,
        when: When::BetweenScans,
        ..LIVE
    },
    SweepRechecked: Counter<()> = Family {
        name: "nsexporter_sweep_rechecked_processes_total",
        help: "Containers' processes whose namespace links the sweeps read again in place, to see a process that moves with setns(2).",
        kind: Kind::Counter,
        when: When::Sweeps,
        ..LIVE
    },
    ProcEvents: Counter<()> = Family {
        name: "nsexporter_proc_events_total",
        help: "Fork and exec events from the kernel's proc connector (--scan.proc-events).",
        kind: Kind::Counter,
        when: When::ProcEvents,
        ..LIVE
    },
    ProcEventsDropped: Counter<(DropReason,)> = Family {
        name: "nsexporter_proc_events_dropped_total",
        help: "Process events lost before they were judged, by reason: queue_full (the exporter's bounded queue was full) or kernel_overrun (the kernel's socket buffer overflowed, ENOBUFS; one per overrun, which loses an unknown number). The sweeps still see those processes.",
        kind: Kind::Counter,
        labels: &["reason"],
        preset: &[DROPS],
        when: When::ProcEvents,
        ..LIVE
    },
    EbpfChanges: Counter<(crate::model::ChangeSyscall, NsType)> = Family {
        name: "nsexporter_ebpf_namespace_changes_total",
        help: "Namespace changes the eBPF source reported (--scan.ebpf), by the system call and the type of namespace entered; each is judged by the host rules at once.",
        kind: Kind::Counter,
        labels: &["syscall", "type"],
        when: When::Ebpf,
        ..LIVE
    },
    EbpfLost: Counter<(LostReason,)> = Family {
        name: "nsexporter_ebpf_events_lost_total",
        help: "Namespace changes the eBPF source lost before they were judged, by reason: ring_buffer_full (the kernel's ring buffer was full) or queue_full (the exporter's bounded queue was). The sweeps and scans still see where those processes are now.",
        kind: Kind::Counter,
        labels: &["reason"],
        preset: &[LOSSES],
        when: When::Ebpf,
        ..LIVE
    },
    EbpfTaskEvents: Counter<(TaskKind,)> = Family {
        name: "nsexporter_ebpf_events_total",
        help: "What the eBPF source's task probes reported, by kind: fork (a new process), exec, exit (a process's last thread), touched (a cgroup move, an owner or a comm changed in place). In the events mode each is applied to the kept snapshot.",
        kind: Kind::Counter,
        labels: &["kind"],
        preset: &[TASK_KINDS],
        when: When::Ebpf,
        ..LIVE
    },
    EbpfDivergence: Counter<()> = Family {
        name: "nsexporter_ebpf_divergence_total",
        help: "Processes the safety-net walk found otherwise than the events had kept them (missing, extra, or in other namespaces, cgroup, parent or owner), leaving out those the events named while it walked. Should stay 0.",
        kind: Kind::Counter,
        when: When::Ebpf,
        ..LIVE
    },
    ProcWalks: Counter<(WalkReason,)> = Family {
        name: "nsexporter_proc_walks_total",
        help: "Walks of every process in /proc, by reason: start (the first scan), interval (polling: every scan), safety_net (the events mode's walk at --scan.safety-net-interval), resync (the events mode's walk after a loss of events).",
        kind: Kind::Counter,
        labels: &["reason"],
        preset: &[WALKS],
        ..LIVE
    },
    ScanModeInfo: Gauge<(ScanMode,)> = Family {
        name: "nsexporter_scan_mode",
        help: "1 for how the snapshot is kept: polling (every scan walks /proc) or events (the eBPF source's task probes keep it between walks; --scan.ebpf with the task probes attached).",
        kind: Kind::Gauge,
        labels: &["mode"],
        preset: &[MODES],
        ..SCAN
    },
    BuildInfo: Gauge<(&'static str, &'static str)> = Family {
        name: "nsexporter_build_info",
        help: "Always 1; labels name the version and the git revision it was built from.",
        kind: Kind::Gauge,
        labels: &["version", "revision"],
        ..SCAN
    },
    ProcessCpu: Counter<()> = Family {
        name: "process_cpu_seconds_total",
        help: "Total user and system CPU time spent in seconds.",
        kind: Kind::Counter,
        ..OWN_PROCESS
    },
    ProcessOpenFds: Gauge<()> = Family {
        name: "process_open_fds",
        help: "Number of open file descriptors.",
        kind: Kind::Gauge,
        ..OWN_PROCESS
    },
    ProcessMaxFds: Gauge<()> = Family {
        name: "process_max_fds",
        help: "Maximum number of open file descriptors.",
        kind: Kind::Gauge,
        ..OWN_PROCESS
    },
    ProcessVirtualMemory: Gauge<()> = Family {
        name: "process_virtual_memory_bytes",
        help: "Virtual memory size in bytes.",
        kind: Kind::Gauge,
        ..OWN_PROCESS
    },
    ProcessResidentMemory: Gauge<()> = Family {
        name: "process_resident_memory_bytes",
        help: "Resident memory size in bytes.",
        kind: Kind::Gauge,
        ..OWN_PROCESS
    },
    ProcessStartTime: Gauge<()> = Family {
        name: "process_start_time_seconds",
        help: "Start time of the process since unix epoch in seconds.",
        kind: Kind::Gauge,
        ..OWN_PROCESS
    },
}

impl Family {
    /// The families `written_by` writes into `part`.
    pub fn all(written_by: WrittenBy, part: Part) -> impl Iterator<Item = (Id, &'static Family)> {
        Id::ALL
            .into_iter()
            .map(|id| (id, id.family()))
            .filter(move |(_, f)| f.written_by == written_by && f.part == part)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use super::super::scenario::{Scans, change, finding, orphans};
    use super::super::{Metrics, Outcome, PerNamespace};
    use super::*;
    use crate::model::ChangeSyscall;
    use crate::procfs::ProcFs;

    /// The families of an exposition text, by name: TYPE and HELP as written.
    fn exported(text: &str) -> BTreeMap<String, (String, String)> {
        let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                let help = help.replace("\\n", "\n").replace("\\\\", "\\");
                out.entry(name.into()).or_default().1 = help;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                out.entry(name.into()).or_default().0 = kind.into();
            }
        }
        out
    }

    /// Everything on, and every family given a sample: the sweeps, the events with an eBPF
    /// change, orphans, findings, a container over a cap of 3 namespaces.
    fn everything() -> Metrics {
        let mut m = Metrics::new(
            ProcFs::new("/proc"),
            Duration::from_secs(15),
            PerNamespace::All,
            3,
        );
        m.record(Outcome::Started {
            mode: crate::scan::refresh::ScanMode::Polling,
            cgroup_layout: crate::model::CgroupLayout::Unified,
            between: BetweenScans {
                sweeps: true,
                proc_events: true,
                ebpf: true,
            },
        });
        let extra = [finding(Rule::CrossWorkload, NsType::Ipc, "ee")];
        Scans::new().record(&mut m, 100_000, &[], &extra, &orphans());
        m.record(Outcome::Events {
            proc_events: 1,
            read: 1,
            new_findings: &[],
            changes: &[change(
                300,
                ChangeSyscall::Setns,
                &[(NsType::Net, 4026531992)],
            )],
        });
        m
    }

    /// Every family exported is in the table, with its type, help and part, and every family
    /// in the table is exported: one registered by hand, or a row that nothing writes, fails.
    #[test]
    fn the_exposition_is_the_table() {
        let mut m = everything();
        let text = m.exposition().text();
        let text = std::str::from_utf8(&text).unwrap();
        let (scan, live) = text.split_at(m.scan_part.head_len());
        let mut seen = BTreeSet::new();
        for (part, text) in [(Part::Scan, scan), (Part::Live, live)] {
            for (name, (kind, help)) in exported(text) {
                let Some(f) = FAMILIES.iter().find(|f| f.name == name) else {
                    panic!("{name} is exported but not in the table");
                };
                assert_eq!(kind, f.kind.as_str(), "{name}'s type");
                assert_eq!(help, f.help, "{name}'s help");
                assert_eq!(part, f.part, "{name} is in the other part");
                assert!(seen.insert(name.clone()), "{name} is exported twice");
            }
        }
        for f in &FAMILIES {
            assert!(
                seen.contains(f.name),
                "{} is in the table, not exported",
                f.name
            );
        }
    }

    /// Families without labels that are left out until a scan has read them: the kernel's
    /// limits, which no default stands for.
    const READ_BY_A_SCAN: [Id; 2] = [Id::ConntrackLimit, Id::MountsLimit];

    /// Before the first scan, with each of what runs between scans on alone: its families are
    /// exported, and the others' are not.
    #[test]
    fn what_runs_between_scans_is_exported_only_where_it_runs() {
        let off = BetweenScans::default();
        for on in [
            off,
            BetweenScans {
                sweeps: true,
                ..off
            },
            BetweenScans {
                proc_events: true,
                ..off
            },
            BetweenScans { ebpf: true, ..off },
        ] {
            let mut m = Metrics::new(
                ProcFs::new("/proc"),
                Duration::from_secs(15),
                PerNamespace::All,
                0,
            );
            m.record(Outcome::Started {
                mode: crate::scan::refresh::ScanMode::Polling,
                cgroup_layout: crate::model::CgroupLayout::Unified,
                between: on,
            });
            let text = m.exposition().text();
            let names = exported(std::str::from_utf8(&text).unwrap());
            for f in FAMILIES
                .iter()
                .filter(|f| f.written_by == WrittenBy::Recorded)
            {
                // None is there where it does not hold; those with series from the start
                // are there where it does.
                let there = names.contains_key(f.name);
                if !f.when.holds(on) {
                    assert!(!there, "{} exported with {on:?}", f.name);
                } else if f.preset.len() == f.labels.len()
                    && !READ_BY_A_SCAN.iter().any(|id| id.family().name == f.name)
                {
                    assert!(there, "{} not exported with {on:?}", f.name);
                }
            }
        }
    }

    #[test]
    fn rows_are_well_formed() {
        let mut names = BTreeSet::new();
        for f in &FAMILIES {
            assert!(names.insert(f.name), "{} twice", f.name);
            assert!(
                f.name.starts_with("nsexporter_") || f.written_by == WrittenBy::OwnProcess,
                "{}",
                f.name
            );
            assert_eq!(
                f.name.ends_with("_total"),
                f.kind == Kind::Counter,
                "{}: _total is for counters, and only for them",
                f.name
            );
            assert!(f.help.ends_with('.'), "{}'s help", f.name);
            assert!(
                f.preset.is_empty() || f.preset.len() == f.labels.len(),
                "{}: a list of values for each label, or none",
                f.name
            );
            for label in f.labels {
                assert!(
                    label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{}: {label}",
                    f.name
                );
            }
            // What runs between scans changes the live part only.
            assert!(f.when == When::Always || f.part == Part::Live, "{}", f.name);
        }
    }

    /// docs/metrics.md's table of metrics names every family of the table, with its labels
    /// and type, and no other.
    #[test]
    fn docs_metrics_md_lists_the_table() {
        let doc = include_str!("../../docs/metrics.md");
        let section = doc
            .split("\n## Metrics\n")
            .nth(1)
            .and_then(|s| s.split("\n#").next())
            .expect("docs/metrics.md has a ## Metrics section");
        let mut documented = BTreeMap::new();
        for row in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let kind = cells[2];
            for metric in cells[1].split('`').skip(1).step_by(2) {
                let (name, labels) = match metric.split_once('{') {
                    Some((name, labels)) => (name, labels.trim_end_matches('}')),
                    None => (metric, ""),
                };
                let labels: BTreeSet<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
                assert!(
                    documented.insert(name, (labels, kind)).is_none(),
                    "{name} documented twice"
                );
            }
        }
        for f in &FAMILIES {
            let Some((labels, kind)) = documented.remove(f.name) else {
                panic!("{} is not in docs/metrics.md", f.name);
            };
            let want: BTreeSet<&str> = f.labels.iter().copied().collect();
            assert_eq!(labels, want, "{}'s labels in docs/metrics.md", f.name);
            assert!(
                kind.is_empty() || kind == f.kind.as_str(),
                "{} is a {} in docs/metrics.md",
                f.name,
                kind
            );
        }
        assert!(
            documented.is_empty(),
            "documented, not in the table: {:?}",
            documented.keys()
        );
    }
}
