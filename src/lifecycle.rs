//! Lifecycle: successive snapshots diffed into created and destroyed namespaces.
//!
//! The first snapshot is the baseline and creates nothing. After it, a namespace is created when
//! first seen and destroyed when no longer seen. The kernel reuses nsfs inode numbers at once,
//! so an inode seen in two snapshots may name two namespaces:
//!
//! - Where both sightings carry the kernel's namespace id (`NS_GET_ID`, Linux 6.18+), they are
//!   the same namespace if and only if the ids are equal. This is exact.
//! - Otherwise (an older kernel, or no member could be opened) the identity is
//!   `(type, inode, first seen)`, and an inode whose old members are all gone and whose current
//!   members all started after the previous scan is taken as reused: the old namespace died and
//!   the number was handed out again in between. It misses a namespace whose last old member
//!   forked the new ones before it exited.
//!
//! All times are clock ticks since boot (see [`ScanTime`]): process start times and scan times
//! come from one clock, so neither `btime`'s whole seconds nor a wall-clock step can order a
//! process before the scan it started after. A lifetime runs from the earliest start time of
//! any member ever seen to the scan that no longer saw the namespace, so it is at most one
//! interval longer than the truth.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{HeldBy, Namespace, NamespaceId, ScanTime, Snapshot, share_a_member};

/// What the tracker remembers of a live namespace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tracked {
    /// Ticks since boot at the snapshot that first saw it.
    pub first_seen: u64,
    /// Estimated creation, in ticks since boot: the earliest start time of any member ever
    /// seen, or `first_seen` when it never had a readable member.
    pub start_ticks: u64,
    /// The kernel's id for it, once known.
    pub kernel_id: Option<u64>,
    /// Since when (ticks since boot) it has had no member process, held only by a bind
    /// mount, an fd or a socket: the first snapshot that saw it so. `None` while it has members.
    pub memberless_since: Option<u64>,
}

/// A namespace held only by a bind mount, an fd or a socket for longer than the orphan age.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Orphan {
    pub id: NamespaceId,
    pub held_by: HeldBy,
    /// Seconds since it was first seen with no member process.
    pub age: f64,
}

/// The difference between the previous snapshot and the current one.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub created: Vec<NamespaceId>,
    /// Destroyed namespaces with their lifetime in seconds.
    pub destroyed: Vec<(NamespaceId, f64)>,
}

/// Tracks namespaces across snapshots. It takes snapshots, not a procfs, so tests feed it
/// in-memory scans.
#[derive(Debug, Default)]
pub struct Tracker {
    live: HashMap<NamespaceId, Tracked>,
    previous: Option<Arc<Snapshot>>,
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The live namespace `id`, as of the last update.
    pub fn get(&self, id: NamespaceId) -> Option<&Tracked> {
        self.live.get(&id)
    }

    /// The estimated creation of the live namespace `id`, in ticks since boot.
    pub fn start_ticks(&self, id: NamespaceId) -> Option<u64> {
        self.live.get(&id).map(|t| t.start_ticks)
    }

    /// The namespaces of the last snapshot that have had no member process for at least
    /// `min_age`, while a bind mount, an fd or a socket holds them: leaked, most often. A namespace first
    /// seen memberless counts from then (the exporter cannot know since when before).
    pub fn orphans(&self, min_age: std::time::Duration) -> Vec<Orphan> {
        let Some(snapshot) = &self.previous else {
            return Vec::new();
        };
        let time = snapshot.time;
        let mut out: Vec<Orphan> = snapshot
            .namespaces
            .values()
            .filter_map(|ns| {
                let held_by = ns.held_by();
                let since = self.live.get(&ns.id)?.memberless_since?;
                let age = time.seconds(time.ticks.saturating_sub(since));
                (held_by.without_process() && age >= min_age.as_secs_f64()).then_some(Orphan {
                    id: ns.id,
                    held_by,
                    age,
                })
            })
            .collect();
        out.sort_by_key(|o| o.id);
        out
    }

    /// The last snapshot taken, shared.
    pub fn previous_arc(&self) -> Option<&Arc<Snapshot>> {
        self.previous.as_ref()
    }

    /// The last snapshot taken, which the next scan compares against.
    pub fn previous(&self) -> Option<&Snapshot> {
        self.previous.as_deref()
    }

    /// Takes the next snapshot and returns what changed since the previous one.
    pub fn update(&mut self, snapshot: Arc<Snapshot>) -> Changes {
        let time = snapshot.time;
        let now = time.ticks;
        let mut changes = Changes::default();
        let baseline = self.previous.is_none();
        let previous = self.previous.take();

        // Destroyed: gone from this snapshot, or replaced under the same inode.
        let mut gone: Vec<NamespaceId> = self
            .live
            .iter()
            .filter(|(id, tracked)| match snapshot.namespaces.get(id) {
                None => true,
                Some(ns) => match (tracked.kernel_id, ns.kernel_id) {
                    (Some(old), Some(new)) => old != new,
                    _ => previous
                        .as_deref()
                        .is_some_and(|prev| is_reused(prev, &snapshot, ns)),
                },
            })
            .map(|(id, _)| *id)
            .collect();
        gone.sort();
        for id in gone {
            let tracked = self.live.remove(&id).expect("listed from live");
            changes
                .destroyed
                .push((id, lifetime(&time, tracked.start_ticks)));
        }

        for ns in snapshot.namespaces.values() {
            let members_start = ns.first_start;
            match self.live.get_mut(&ns.id) {
                Some(t) => {
                    if let Some(s) = members_start {
                        t.start_ticks = t.start_ticks.min(s);
                    }
                    t.kernel_id = t.kernel_id.or(ns.kernel_id);
                    t.memberless_since = match ns.members.is_empty() {
                        true => t.memberless_since.or(Some(now)),
                        false => None,
                    };
                }
                None => {
                    self.live.insert(
                        ns.id,
                        Tracked {
                            first_seen: now,
                            start_ticks: members_start.map_or(now, |s| s.min(now)),
                            kernel_id: ns.kernel_id,
                            memberless_since: ns.members.is_empty().then_some(now),
                        },
                    );
                    if !baseline {
                        changes.created.push(ns.id);
                    }
                }
            }
        }
        changes.created.sort();
        self.previous = Some(snapshot);
        changes
    }
}

/// Seconds from `start_ticks` to the scan at `time`.
fn lifetime(time: &ScanTime, start_ticks: u64) -> f64 {
    time.seconds(time.ticks.saturating_sub(start_ticks))
}

/// Whether `ns` in `current` is a different namespace than the one with the same id in `prev`,
/// judged without kernel ids: none of its old members is left and every current member started
/// after `prev` was taken. Namespaces without members carry no such evidence and are never
/// judged reused.
fn is_reused(prev: &Snapshot, current: &Snapshot, ns: &Namespace) -> bool {
    let Some(old) = prev.namespaces.get(&ns.id) else {
        return false;
    };
    let shared = share_a_member(
        (&old.members, &prev.processes),
        (&ns.members, &current.processes),
    );
    !shared && ns.first_start.is_some_and(|s| s > prev.time.ticks)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::model::inode;
    use crate::model::{HostNamespaces, NsType, PerType, Process, ProcessId};
    use std::time::SystemTime;

    /// A process with a start time in seconds and net and pid namespace inodes.
    struct P(i32, f64, u64, u64);

    /// Ticks of `seconds` at 100 ticks a second.
    fn ticks(seconds: f64) -> u64 {
        (seconds * 100.0).round() as u64
    }

    /// A snapshot at `t` seconds whose namespaces carry the given kernel ids.
    fn snap_ids(t: f64, ps: &[P], ids: &[(NamespaceId, u64)]) -> Arc<Snapshot> {
        let mut processes = BTreeMap::new();
        for &P(pid, start, net, pidns) in ps {
            let mut namespaces = PerType::splat(None);
            namespaces[NsType::Net] = inode(net);
            namespaces[NsType::Pid] = inode(pidns);
            processes.insert(
                pid,
                Process {
                    id: ProcessId {
                        pid,
                        start_ticks: ticks(start),
                    },
                    ..Process::fixture(pid, namespaces)
                },
            );
        }
        let time = ScanTime {
            ticks: ticks(t),
            ticks_per_second: 100,
            boot_unix: 1_700_000_000.0,
        };
        let mut snapshot = Snapshot::from_processes(
            SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_700_000_000.0 + t),
            time,
            processes,
            HostNamespaces::none(),
        );
        for (id, kernel_id) in ids {
            snapshot.namespaces.get_mut(id).unwrap().kernel_id = Some(*kernel_id);
        }
        Arc::new(snapshot)
    }

    fn net(inode: u64) -> NamespaceId {
        NamespaceId {
            ns_type: NsType::Net,
            inode,
        }
    }
    fn pid(inode: u64) -> NamespaceId {
        NamespaceId {
            ns_type: NsType::Pid,
            inode,
        }
    }

    /// Each step: the processes of a scan at time t, the kernel ids it saw (none: the
    /// fallback), and the expected created and destroyed ids with lifetimes.
    struct Step {
        t: f64,
        ps: Vec<P>,
        ids: Vec<(NamespaceId, u64)>,
        created: Vec<NamespaceId>,
        destroyed: Vec<(NamespaceId, f64)>,
    }

    impl Default for Step {
        fn default() -> Self {
            Step {
                t: 0.0,
                ps: vec![],
                ids: vec![],
                created: vec![],
                destroyed: vec![],
            }
        }
    }

    fn run(steps: Vec<Step>) -> Tracker {
        let mut tracker = Tracker::new();
        for (i, s) in steps.into_iter().enumerate() {
            let got = tracker.update(snap_ids(s.t, &s.ps, &s.ids));
            assert_eq!(
                got,
                Changes {
                    created: s.created,
                    destroyed: s.destroyed
                },
                "step {i} at t={}",
                s.t
            );
        }
        tracker
    }

    #[test]
    fn baseline_counts_nothing_then_create_and_destroy() {
        let tracker = run(vec![
            Step {
                t: 100.0,
                ps: vec![P(1, 0.0, 10, 20), P(50, 40.0, 11, 20)],
                ids: vec![],
                created: vec![],
                destroyed: vec![],
            },
            // A new process in a new net namespace; pid namespace shared.
            Step {
                t: 115.0,
                ps: vec![P(1, 0.0, 10, 20), P(50, 40.0, 11, 20), P(60, 110.0, 12, 20)],
                ids: vec![],
                created: vec![net(12)],
                destroyed: vec![],
            },
            // Process 50 exits: net 11 is destroyed, 90 s after its member started at 40.
            Step {
                t: 130.0,
                ps: vec![P(1, 0.0, 10, 20), P(60, 110.0, 12, 20)],
                ids: vec![],
                created: vec![],
                destroyed: vec![(net(11), 90.0)],
            },
        ]);
        let t = tracker.get(net(12)).unwrap();
        assert_eq!((t.first_seen, t.start_ticks), (ticks(115.0), ticks(110.0)));
        assert!(tracker.get(net(11)).is_none());
    }

    #[test]
    fn pid_reused_by_a_new_process_in_the_same_namespace_is_not_a_new_namespace() {
        run(vec![
            Step {
                t: 100.0,
                ps: vec![P(1, 0.0, 10, 20), P(70, 50.0, 11, 20), P(71, 60.0, 11, 20)],
                ids: vec![],
                created: vec![],
                destroyed: vec![],
            },
            // Pid 70 exited and was reused by a new process that joined net 11 (whose member 71
            // stayed): same namespace.
            Step {
                t: 115.0,
                ps: vec![P(1, 0.0, 10, 20), P(70, 105.0, 11, 20), P(71, 60.0, 11, 20)],
                ids: vec![],
                created: vec![],
                destroyed: vec![],
            },
            // Pid 71 is reused too, by a process in a fresh namespace that got a new inode.
            Step {
                t: 130.0,
                ps: vec![
                    P(1, 0.0, 10, 20),
                    P(70, 105.0, 11, 20),
                    P(71, 125.0, 13, 20),
                ],
                ids: vec![],
                created: vec![net(13)],
                destroyed: vec![],
            },
        ]);
    }

    #[test]
    fn inode_reused_is_a_new_namespace() {
        run(vec![
            Step {
                t: 100.0,
                ps: vec![P(1, 0.0, 10, 20), P(80, 90.0, 11, 21)],
                ids: vec![],
                created: vec![],
                destroyed: vec![],
            },
            // Gone for one scan.
            Step {
                t: 115.0,
                ps: vec![P(1, 0.0, 10, 20)],
                ids: vec![],
                created: vec![],
                destroyed: vec![(net(11), 25.0), (pid(21), 25.0)],
            },
            // The kernel hands out inode 11 again.
            Step {
                t: 130.0,
                ps: vec![P(1, 0.0, 10, 20), P(81, 120.0, 11, 20)],
                ids: vec![],
                created: vec![net(11)],
                destroyed: vec![],
            },
            // Died and reused between two scans: every member is new and started after t=130.
            Step {
                t: 145.0,
                ps: vec![P(1, 0.0, 10, 20), P(82, 140.0, 11, 20)],
                ids: vec![],
                created: vec![net(11)],
                destroyed: vec![(net(11), 145.0 - 120.0)],
            },
        ]);
    }

    #[test]
    fn all_members_replaced_by_older_processes_keeps_the_namespace() {
        // A member that started before the previous scan was there all along (not readable
        // then, or joined by setns): not evidence of reuse.
        run(vec![
            Step {
                t: 100.0,
                ps: vec![P(1, 0.0, 10, 20), P(90, 50.0, 11, 20)],
                ids: vec![],
                created: vec![],
                destroyed: vec![],
            },
            Step {
                t: 115.0,
                ps: vec![P(1, 0.0, 10, 20), P(91, 95.0, 11, 20)],
                ids: vec![],
                created: vec![],
                destroyed: vec![],
            },
        ]);
    }

    #[test]
    fn fallback_sees_a_replacement_that_started_ten_milliseconds_after_the_scan() {
        // Ticks since boot on both sides: a member that started 10 ms after the previous scan
        // is after it. (With btime's whole seconds it could look up to a second earlier.)
        run(vec![
            Step {
                t: 100.0,
                ps: vec![P(1, 0.0, 10, 20), P(80, 90.0, 11, 20)],
                ..Step::default()
            },
            Step {
                t: 101.0,
                ps: vec![P(1, 0.0, 10, 20), P(81, 100.01, 11, 20)],
                created: vec![net(11)],
                destroyed: vec![(net(11), 11.0)],
                ..Step::default()
            },
            // Started in the same tick as the scan: not evidence of reuse.
            Step {
                t: 102.0,
                ps: vec![P(1, 0.0, 10, 20), P(82, 101.0, 11, 20)],
                ..Step::default()
            },
        ]);
    }

    #[test]
    fn kernel_ids_decide_where_the_fallback_would_guess_wrong() {
        let ids = |net11: u64| vec![(net(10), 1), (pid(20), 2), (net(11), net11)];
        run(vec![
            Step {
                t: 100.0,
                ps: vec![P(1, 0.0, 10, 20), P(80, 90.0, 11, 20)],
                ids: ids(7),
                ..Step::default()
            },
            // Every member new and started after the last scan, but the same id: the old member
            // forked the new one and exited. The fallback would call it reused; it is not.
            Step {
                t: 115.0,
                ps: vec![P(1, 0.0, 10, 20), P(81, 110.0, 11, 20)],
                ids: ids(7),
                ..Step::default()
            },
            // A new id under the same inode, though its member started before the last scan
            // (it was not yet listed when that scan passed its pid): a new namespace.
            Step {
                t: 130.0,
                ps: vec![P(1, 0.0, 10, 20), P(82, 114.99, 11, 20)],
                ids: ids(8),
                created: vec![net(11)],
                destroyed: vec![(net(11), 130.0 - 90.0)],
            },
            // The same member, now with a different id: it cannot be, unless the namespace was
            // replaced under it; the id wins.
            Step {
                t: 145.0,
                ps: vec![P(1, 0.0, 10, 20), P(82, 114.99, 11, 20)],
                ids: ids(9),
                created: vec![net(11)],
                destroyed: vec![(net(11), 30.01)],
            },
        ]);
    }

    #[test]
    fn a_namespace_without_an_id_falls_back_alone() {
        // pid 20 has an id in both scans, net 11 in neither: net 11 is judged by start times.
        run(vec![
            Step {
                t: 100.0,
                ps: vec![P(1, 0.0, 10, 20), P(80, 90.0, 11, 20)],
                ids: vec![(pid(20), 2)],
                ..Step::default()
            },
            Step {
                t: 115.0,
                ps: vec![P(1, 0.0, 10, 20), P(81, 110.0, 11, 20)],
                ids: vec![(pid(20), 2)],
                created: vec![net(11)],
                destroyed: vec![(net(11), 25.0)],
            },
        ]);
    }

    /// A snapshot at `t` with the net namespace `inode` pinned by a bind mount, and members.
    fn pinned(t: f64, inode: u64, kernel_id: u64, ps: &[P]) -> Arc<Snapshot> {
        let mut snapshot = Arc::unwrap_or_clone(snap_ids(t, ps, &[]));
        let ns = snapshot
            .namespaces
            .entry(net(inode))
            .or_insert_with(|| Namespace::new(net(inode)));
        ns.pins_mut().mounts.push(crate::model::MountPin {
            mnt_ns: 4026531832,
            path: "/run/netns/x".into(),
            via_pid: 1,
        });
        ns.kernel_id = Some(kernel_id);
        Arc::new(snapshot)
    }

    #[test]
    fn a_pinned_namespace_lives_on_without_members_and_becomes_an_orphan_with_age() {
        let mut tracker = Tracker::new();
        let age = Duration::from_secs(60);
        // Baseline: the host, and nothing pinned.
        tracker.update(snap_ids(0.0, &[P(1, 0.0, 10, 20)], &[]));
        // `ip netns add x`: held by the mount only.
        let c = tracker.update(pinned(10.0, 30, 300, &[P(1, 0.0, 10, 20)]));
        assert_eq!(c.created, [net(30)]);
        assert!(tracker.orphans(Duration::ZERO).len() == 1);
        // `ip netns exec x sleep`: a member comes, then goes; the namespace stays one.
        let c = tracker.update(pinned(
            20.0,
            30,
            300,
            &[P(1, 0.0, 10, 20), P(5, 15.0, 30, 20)],
        ));
        assert_eq!(c, Changes::default());
        assert!(tracker.orphans(Duration::ZERO).is_empty(), "a member");
        let c = tracker.update(pinned(40.0, 30, 300, &[P(1, 0.0, 10, 20)]));
        assert_eq!(c, Changes::default());
        // Memberless since the scan at 40 s: an orphan from 100 s on, not before.
        let c = tracker.update(pinned(99.0, 30, 300, &[P(1, 0.0, 10, 20)]));
        assert_eq!(c, Changes::default());
        assert!(tracker.orphans(age).is_empty());
        tracker.update(pinned(130.0, 30, 300, &[P(1, 0.0, 10, 20)]));
        let orphans = tracker.orphans(age);
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].id, net(30));
        assert_eq!(orphans[0].held_by.as_str(), "bind_mount");
        assert!((orphans[0].age - 90.0).abs() < 1e-9, "{}", orphans[0].age);
        // `ip netns del x; ip netns add x` between scans: the inode again, a new kernel id.
        let c = tracker.update(pinned(140.0, 30, 301, &[P(1, 0.0, 10, 20)]));
        assert_eq!(c.created, [net(30)]);
        assert_eq!(c.destroyed.len(), 1);
        assert!(tracker.orphans(age).is_empty(), "the new one is young");
        // Unmounted: destroyed once.
        let c = tracker.update(snap_ids(150.0, &[P(1, 0.0, 10, 20)], &[]));
        assert_eq!(c.destroyed.len(), 1);
        assert_eq!(c.destroyed[0].0, net(30));
    }

    /// A net namespace that only a socket holds (its maker setns'd back) is an orphan like a
    /// mounted one, named by what holds it; a process joining it ends that.
    #[test]
    fn a_namespace_held_only_by_a_socket_is_an_orphan_held_by_socket() {
        let socket_held = |t: f64, ps: &[P]| {
            let mut snapshot = Arc::unwrap_or_clone(snap_ids(t, ps, &[]));
            let ns = snapshot
                .namespaces
                .entry(net(30))
                .or_insert_with(|| Namespace::new(net(30)));
            ns.pins_mut().sockets.push(crate::model::SocketPin {
                process: crate::model::ProcessId {
                    pid: 1,
                    start_ticks: 0,
                },
                fd: 3,
                socket: 17279,
            });
            ns.kernel_id = Some(300);
            Arc::new(snapshot)
        };
        let mut tracker = Tracker::new();
        let age = Duration::from_secs(60);
        tracker.update(snap_ids(0.0, &[P(1, 0.0, 10, 20)], &[]));
        let c = tracker.update(socket_held(10.0, &[P(1, 0.0, 10, 20)]));
        assert_eq!(c.created, [net(30)]);
        assert!(tracker.orphans(age).is_empty(), "young");
        tracker.update(socket_held(80.0, &[P(1, 0.0, 10, 20)]));
        let orphans = tracker.orphans(age);
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].held_by.as_str(), "socket");
        assert!((orphans[0].age - 70.0).abs() < 1e-9, "{}", orphans[0].age);
        let c = tracker.update(socket_held(90.0, &[P(1, 0.0, 10, 20), P(5, 85.0, 30, 20)]));
        assert_eq!(c, Changes::default());
        assert!(tracker.orphans(Duration::ZERO).is_empty(), "a member");
    }
}
