//! What happened, as the scan loop hands it over ([`Outcome`]), recorded into the store through
//! the families' typed handles, and into the per-scan view.

use std::time::Duration;

use super::families::handles as h;
use super::view::PrivilegeRow;
use super::{Metrics, count, finding_row};
use crate::attribution::{NameErrorReason, NameSource};
use crate::events::{DropReason, Drops, Lost, LostReason, TaskKind};
use crate::lifecycle::{Changes, Orphan, Tracker};
use crate::model::{CgroupLayout, HeldBy, Identity, NsChange, NsType, Snapshot, SocketProtocol};
use crate::policy::Rule;
use crate::privilege::container::{ContainerPrivilege, LEVELS};
use crate::privilege::{Level, Lsm, Seccomp};
use crate::scan::pins::{SocketSkip, SocketSkips};
use crate::scan::refresh::{ScanMode, WalkReason};
use crate::scan::{ErrorReason, FailureReason, ScanErrors};
use crate::sharing::{Finding, Sharing};

pub use super::families::BetweenScans;

/// What happened, as the scan loop hands it to [`Metrics::record`].
pub enum Outcome<'a> {
    /// The loop started: the host's cgroup layout, which cannot change without a reboot, and
    /// what runs between scans, whose families are exported only where it runs.
    Started {
        cgroup_layout: CgroupLayout,
        between: BetweenScans,
        mode: ScanMode,
    },
    /// The events mode's bookkeeping before a scan: the task events applied since the last,
    /// by kind, whether the scan walks and why, and what a safety-net walk found the events
    /// had missed.
    Kept {
        events: [u64; TaskKind::ALL.len()],
        walk: Option<WalkReason>,
        divergence: u64,
    },
    /// A scan that succeeded.
    Scan(ScanRecord<'a>),
    /// A scan that failed. Everything the last good scan set stays as it was.
    ScanFailed(FailureReason),
    /// A sweep: processes read (new, and moved), processes re-checked in place, and the
    /// findings it saw first, which stay active until the next scan.
    Sweep {
        processes: usize,
        rechecked: u64,
        new_findings: &'a [Finding],
    },
    /// A batch of events: how many pids the proc connector named, how many processes could
    /// be read, the findings they made (as a sweep's), and the eBPF source's namespace
    /// changes.
    Events {
        proc_events: usize,
        read: usize,
        new_findings: &'a [Finding],
        changes: &'a [NsChange],
    },
    /// A failed read of a file that names containers.
    NameSourceError {
        source: NameSource,
        reason: NameErrorReason,
    },
    /// The totals of what the event readers lost so far, counted on their own threads.
    ReaderLosses {
        proc_events: Option<&'a Drops>,
        ebpf: Option<&'a Lost>,
    },
}

/// What one successful scan left, for [`Outcome::Scan`].
pub struct ScanRecord<'a> {
    pub snapshot: &'a Snapshot,
    pub changes: &'a Changes,
    pub errors: &'a ScanErrors,
    /// Of those, by reason, the processes that failed the same way in the scan before.
    pub standing_errors: [u64; ErrorReason::ALL.len()],
    /// Namespaces whose kernel id the scan asked for.
    pub id_queries: u64,
    /// The tracker after the scan: each live namespace's estimated creation.
    pub tracker: &'a Tracker,
    pub sharing: &'a Sharing,
    /// The findings that first appeared in this scan, as `sharing` judged them.
    pub new_findings: &'a [(Rule, NsType)],
    /// The namespaces held without a process for longer than the orphan age.
    pub orphans: &'a [Orphan],
    /// Processes whose fds the last fd pass could not read.
    pub fds_skipped: u64,
    /// Socket fds whose network namespace the last fd pass could not learn, by reason.
    pub sockets_skipped: SocketSkips,
    /// Sockets asked for their network namespace in this scan.
    pub socket_queries: u64,
    /// Each container's privilege, with the level it meets.
    pub privilege: &'a [(ContainerPrivilege, Level)],
    /// Privilege reads that failed.
    pub privilege_errors: u64,
    pub duration: Duration,
}

impl Metrics {
    /// Records what happened: the one way anything reaches a family.
    pub fn record(&mut self, outcome: Outcome<'_>) {
        let store = &mut self.store;
        match outcome {
            Outcome::Started {
                cgroup_layout,
                between,
                mode,
            } => {
                for m in ScanMode::ALL {
                    store
                        .gauge(h::ScanModeInfo, (m,))
                        .set(f64::from(u8::from(m == mode)));
                }
                for l in CgroupLayout::ALL {
                    store
                        .gauge(h::CgroupLayout, (l,))
                        .set(f64::from(u8::from(l == cgroup_layout)));
                }
                self.between = Some(between);
                self.scan_part_stale = true;
            }
            Outcome::Kept {
                events,
                walk,
                divergence,
            } => {
                for kind in TaskKind::ALL {
                    store
                        .counter(h::EbpfTaskEvents, (kind,))
                        .inc_by(events[kind.index()]);
                }
                if let Some(reason) = walk {
                    store.counter(h::ProcWalks, (reason,)).inc();
                }
                store.counter(h::EbpfDivergence, ()).inc_by(divergence);
            }
            Outcome::Scan(scan) => {
                self.record_scan(&scan);
                self.scan_part_stale = true;
            }
            Outcome::ScanFailed(reason) => {
                store.counter(h::Scans, ()).inc();
                store.gauge(h::ScanSuccess, ()).set(0.0);
                store.counter(h::ScanFailures, (reason,)).inc();
                self.scan_part_stale = true;
            }
            Outcome::Sweep {
                processes,
                rechecked,
                new_findings,
            } => {
                store.counter(h::Sweeps, ()).inc();
                store
                    .counter(h::SweepProcesses, ())
                    .inc_by(processes as u64);
                store.counter(h::SweepRechecked, ()).inc_by(rechecked);
                self.record_between(new_findings);
            }
            Outcome::Events {
                proc_events,
                read,
                new_findings,
                changes,
            } => {
                store.counter(h::ProcEvents, ()).inc_by(proc_events as u64);
                store.counter(h::SweepProcesses, ()).inc_by(read as u64);
                for change in changes {
                    for id in change.entered() {
                        store
                            .counter(h::EbpfChanges, (change.syscall, id.ns_type))
                            .inc();
                    }
                }
                self.record_between(new_findings);
            }
            Outcome::NameSourceError { source, reason } => {
                store.counter(h::NameSourceErrors, (source, reason)).inc();
            }
            Outcome::ReaderLosses { proc_events, ebpf } => {
                // Brought up to the readers' totals.
                if let Some(drops) = proc_events {
                    for reason in DropReason::ALL {
                        store
                            .counter(h::ProcEventsDropped, (reason,))
                            .raise_to(drops.count(reason) as f64);
                    }
                }
                if let Some(lost) = ebpf {
                    for reason in LostReason::ALL {
                        store
                            .counter(h::EbpfLost, (reason,))
                            .raise_to(lost.count(reason) as f64);
                    }
                }
            }
        }
    }

    /// Counts findings as they first appear, whoever saw them: a scan, a sweep or an event.
    fn count_findings(&mut self, new_findings: &[(Rule, NsType)]) {
        for &(rule, t) in new_findings {
            self.store.counter(h::FindingsTotal, (rule, t)).inc();
        }
    }

    /// The findings a sweep or a batch of events saw first: counted, and active until the
    /// next scan.
    fn record_between(&mut self, new_findings: &[Finding]) {
        let keys: Vec<(Rule, NsType)> = new_findings.iter().map(|f| (f.rule, f.ns_type)).collect();
        self.count_findings(&keys);
        self.between_findings
            .extend(new_findings.iter().map(finding_row));
    }
}

/// What a successful scan records.
impl Metrics {
    /// Records one successful scan: its snapshot, the tracker's view after it, its changes,
    /// errors and sharing.
    fn record_scan(&mut self, record: &ScanRecord<'_>) {
        let ScanRecord {
            snapshot,
            tracker,
            changes,
            errors,
            standing_errors,
            id_queries,
            sharing,
            new_findings,
            orphans,
            fds_skipped,
            sockets_skipped,
            socket_queries,
            privilege,
            privilege_errors,
            duration,
        } = *record;
        let store = &mut self.store;
        store.counter(h::Scans, ()).inc();
        store.gauge(h::ScanSuccess, ()).set(1.0);
        store
            .histogram(h::ScanDuration, ())
            .observe(duration.as_secs_f64());
        store.gauge(h::LastScan, ()).set(
            snapshot
                .taken_at
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        store
            .gauge(h::Processes, ())
            .set(count(snapshot.processes.len() as u64));
        for method in Identity::ALL {
            store
                .gauge(h::Identity, (method,))
                .set(f64::from(u8::from(snapshot.identity == method)));
        }
        store.counter(h::IdQueries, ()).inc_by(id_queries);
        for source in crate::model::HostSource::ALL {
            store
                .gauge(h::HostSource, (source,))
                .set(f64::from(u8::from(snapshot.host.source == source)));
        }
        for reason in ErrorReason::ALL {
            let standing = standing_errors[reason.index()];
            store
                .counter(h::ScanErrors, (reason,))
                .inc_by(errors.count(reason).saturating_sub(standing));
            store
                .gauge(h::ScanErrorsStanding, (reason,))
                .set(count(standing));
        }
        // What the namespaces hold, summed over all that were read, whichever have series.
        let holds = &snapshot.holds;
        let conntrack: u64 = holds.net.values().filter_map(|n| n.conntrack).sum();
        store.gauge(h::ConntrackEntries, ()).set(count(conntrack));
        let mut sockets = [0u64; SocketProtocol::ALL.len()];
        for (p, n) in holds.net.values().flat_map(|n| &n.sockets) {
            sockets[p.index()] += n;
        }
        for p in SocketProtocol::ALL {
            store.gauge(h::Sockets, (p,)).set(count(sockets[p.index()]));
        }
        let most = holds.mounts.values().copied().max().unwrap_or(0);
        store.gauge(h::MountsMax, ()).set(f64::from(most));
        // A network namespace with no member has no /proc/PID/net: the sockets processes
        // elsewhere hold in it are what can be known of it (the fd pass's socket pins).
        let held = (snapshot.namespaces.values())
            .filter(|ns| ns.id.ns_type == NsType::Net && ns.members.is_empty())
            .map(crate::model::Namespace::distinct_sockets)
            .max()
            .unwrap_or(0);
        store.gauge(h::HeldSocketsMax, ()).set(count(held));
        for id in &changes.created {
            store.counter(h::Created, (id.ns_type,)).inc();
        }
        for (id, lifetime) in &changes.destroyed {
            store.counter(h::Destroyed, (id.ns_type,)).inc();
            store
                .histogram(h::Lifetime, (id.ns_type,))
                .observe(*lifetime);
        }
        let mut per_type = crate::model::PerType::splat(0u64);
        for ns in snapshot.namespaces.values() {
            per_type[ns.id.ns_type] += 1;
        }
        for t in NsType::ALL {
            store.gauge(h::Namespaces, (t,)).set(count(per_type[t]));
        }
        let in_use = snapshot.namespaces_in_use();
        let limits = &snapshot.limits;
        store.reset(h::NamespacesLimit);
        for t in NsType::ALL {
            store.gauge(h::NamespacesInUse, (t,)).set(count(in_use[t]));
            if let Some(limit) = limits.namespaces[t] {
                store.gauge(h::NamespacesLimit, (t,)).set(count(limit));
            }
        }
        store.reset(h::ConntrackLimit);
        if let Some(limit) = limits.conntrack_entries {
            store.gauge(h::ConntrackLimit, ()).set(count(limit));
        }
        store.reset(h::MountsLimit);
        if let Some(limit) = limits.mounts_per_namespace {
            store.gauge(h::MountsLimit, ()).set(count(limit));
        }
        store.gauge(h::FdsSkipped, ()).set(count(fds_skipped));
        for reason in SocketSkip::ALL {
            store
                .gauge(h::SocketsSkipped, (reason,))
                .set(count(sockets_skipped[reason.index()]));
        }
        store.counter(h::SocketQueries, ()).inc_by(socket_queries);
        self.count_findings(new_findings);
        self.record_orphans(orphans);
        let (mut view, over_cap) = self.view_of(snapshot, tracker, sharing);
        view.privilege = privilege.iter().map(privilege_row).collect();
        for level in LEVELS {
            let n = privilege.iter().filter(|(_, l)| *l == level).count();
            self.store
                .gauge(h::PrivilegeContainers, (level,))
                .set(count(n as u64));
        }
        self.store
            .counter(h::PrivilegeReadErrors, ())
            .inc_by(privilege_errors);
        self.view = view;
        self.store
            .gauge(h::WorkloadsOverCap, ())
            .set(count(over_cap));
        self.between_findings.clear();
    }

    /// Sets the orphan count of every type and `held_by`, and the oldest age where there is one.
    fn record_orphans(&mut self, orphans: &[Orphan]) {
        // At most 56 series (8 types, 7 holder sets): reset and refilled, so that an age goes
        // with its last orphan.
        self.store.reset(h::OrphanMaxAge);
        for t in NsType::ALL {
            for held_by in HeldBy::orphan_values() {
                let these = orphans
                    .iter()
                    .filter(|o| o.id.ns_type == t && o.held_by == held_by);
                let (n, oldest) = these.fold((0, 0.0f64), |(n, a), o| (n + 1, a.max(o.age)));
                self.store.gauge(h::Orphans, (t, held_by)).set(count(n));
                if n > 0 {
                    self.store.gauge(h::OrphanMaxAge, (t, held_by)).set(oldest);
                }
            }
        }
    }
}

/// The `nsexporter_container_privilege_info` row of a container.
fn privilege_row((c, level): &(ContainerPrivilege, Level)) -> PrivilegeRow {
    let [_, id, container, pod, k8s_namespace] = super::workload_values(&c.container);
    let yes = |b: bool| if b { "true" } else { "false" }.to_owned();
    let p = &c.first.privilege;
    // The most open of the processes read: a process that differs is there because it may.
    let seccomp = c
        .processes()
        .map(|p| match p.privilege.seccomp {
            Seccomp::Disabled => 0,
            Seccomp::Strict => 1,
            Seccomp::Filter { .. } => 2,
        })
        .min()
        .unwrap_or(0);
    let lsm = match c
        .processes()
        .map(|p| &p.privilege.lsm)
        .fold(&p.lsm, |worst, l| match (worst, l) {
            (Lsm::Unconfined, _) | (_, Lsm::Unconfined) => &Lsm::Unconfined,
            (Lsm::None, _) | (_, Lsm::None) => &Lsm::None,
            _ => worst,
        }) {
        Lsm::None => "none",
        Lsm::Unconfined => "unconfined",
        Lsm::Label(_) => "labelled",
    };
    PrivilegeRow {
        labels: [
            id,
            container,
            pod,
            k8s_namespace,
            yes(c.host_user()),
            yes(c.root_is_host_root()),
            ["disabled", "strict", "filter"][seccomp].to_owned(),
            yes(c.processes().all(|p| p.privilege.no_new_privs)),
            lsm.to_owned(),
            level.as_str().to_owned(),
            c.host_capabilities_label(),
        ],
    }
}
