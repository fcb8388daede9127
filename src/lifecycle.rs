//! Lifecycle: successive snapshots diffed into created and destroyed namespaces.
//!
//! The first snapshot is the baseline and creates nothing. After it, a namespace is created when
//! first seen and destroyed when no longer seen. The kernel reuses nsfs inode numbers, so the
//! identity of a namespace over time is `(type, inode, first seen)`: an inode that comes back
//! after a scan without it is a new namespace, and so is an inode whose members were all
//! replaced between two scans by processes that started after the earlier one (the old namespace
//! died and the number was handed out again in between).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::model::{Namespace, NamespaceId, Snapshot};

/// What the tracker remembers of a live namespace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tracked {
    /// Unix time of the snapshot that first saw it.
    pub first_seen: f64,
    /// Estimated creation time: the earliest start time of any member ever seen (unix seconds),
    /// or `first_seen` when it never had a readable member.
    pub start_time: f64,
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

    /// Takes the next snapshot and returns what changed since the previous one.
    pub fn update(&mut self, snapshot: Arc<Snapshot>) -> Changes {
        let now = unix(snapshot.taken_at);
        let mut changes = Changes::default();
        let baseline = self.previous.is_none();
        let previous = self.previous.take();

        // Destroyed: gone from this snapshot, or replaced under the same inode.
        let mut gone: Vec<NamespaceId> = self
            .live
            .keys()
            .filter(|id| match snapshot.namespaces.get(id) {
                None => true,
                Some(ns) => previous
                    .as_deref()
                    .is_some_and(|prev| is_reused(prev, &snapshot, ns)),
            })
            .copied()
            .collect();
        gone.sort();
        for id in gone {
            let tracked = self.live.remove(&id).expect("listed from live");
            changes
                .destroyed
                .push((id, (now - tracked.start_time).max(0.0)));
        }

        for ns in snapshot.namespaces.values() {
            let members_start = snapshot.estimated_start_time(ns);
            match self.live.get_mut(&ns.id) {
                Some(t) => {
                    if let Some(s) = members_start {
                        t.start_time = t.start_time.min(s);
                    }
                }
                None => {
                    self.live.insert(
                        ns.id,
                        Tracked {
                            first_seen: now,
                            start_time: members_start.map_or(now, |s| s.min(now)),
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

/// Whether `ns` in `current` is a different namespace than the one with the same id in `prev`:
/// none of its old members is left and every current member started after `prev` was taken.
/// Namespaces without members carry no such evidence and are never judged reused.
fn is_reused(prev: &Snapshot, current: &Snapshot, ns: &Namespace) -> bool {
    let Some(old) = prev.namespaces.get(&ns.id) else {
        return false;
    };
    if ns.members.is_empty() || old.members.iter().any(|m| ns.members.contains(m)) {
        return false;
    }
    let prev_time = unix(prev.taken_at);
    ns.members.iter().all(|m| {
        current
            .processes
            .get(&m.pid)
            .is_some_and(|p| p.start_time > prev_time)
    })
}

/// Unix seconds of a `SystemTime` (0 for times before 1970).
pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::model::{HostNamespaces, NsType, Process, ProcessId};

    /// A process with a start time in seconds and net and pid namespace inodes.
    struct P(i32, f64, u64, u64);

    /// A snapshot at `t` seconds holding the given processes.
    fn snap(t: f64, ps: &[P]) -> Arc<Snapshot> {
        let mut processes = BTreeMap::new();
        for &P(pid, start, net, pidns) in ps {
            let mut namespaces = [None; 8];
            namespaces[NsType::Net.index()] = Some(net);
            namespaces[NsType::Pid.index()] = Some(pidns);
            processes.insert(
                pid,
                Process {
                    id: ProcessId {
                        pid,
                        start_ticks: (start * 100.0) as u64,
                    },
                    ppid: 1,
                    uid: 0,
                    comm: "t".into(),
                    start_time: start,
                    namespaces,
                },
            );
        }
        Arc::new(Snapshot::from_processes(
            SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t),
            processes,
            HostNamespaces::none(),
        ))
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

    /// Each step: the processes of a scan at time t, and the expected created and destroyed ids
    /// with lifetimes.
    struct Step {
        t: f64,
        ps: Vec<P>,
        created: Vec<NamespaceId>,
        destroyed: Vec<(NamespaceId, f64)>,
    }

    fn run(steps: Vec<Step>) -> Tracker {
        let mut tracker = Tracker::new();
        for (i, s) in steps.into_iter().enumerate() {
            let got = tracker.update(snap(s.t, &s.ps));
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
                created: vec![],
                destroyed: vec![],
            },
            // A new process in a new net namespace; pid namespace shared.
            Step {
                t: 115.0,
                ps: vec![P(1, 0.0, 10, 20), P(50, 40.0, 11, 20), P(60, 110.0, 12, 20)],
                created: vec![net(12)],
                destroyed: vec![],
            },
            // Process 50 exits: net 11 is destroyed, 90 s after its member started at 40.
            Step {
                t: 130.0,
                ps: vec![P(1, 0.0, 10, 20), P(60, 110.0, 12, 20)],
                created: vec![],
                destroyed: vec![(net(11), 90.0)],
            },
        ]);
        let t = tracker.get(net(12)).unwrap();
        assert_eq!((t.first_seen, t.start_time), (115.0, 110.0));
        assert!(tracker.get(net(11)).is_none());
    }

    #[test]
    fn pid_reused_by_a_new_process_in_the_same_namespace_is_not_a_new_namespace() {
        run(vec![
            Step {
                t: 100.0,
                ps: vec![P(1, 0.0, 10, 20), P(70, 50.0, 11, 20), P(71, 60.0, 11, 20)],
                created: vec![],
                destroyed: vec![],
            },
            // Pid 70 exited and was reused by a new process that joined net 11 (whose member 71
            // stayed): same namespace.
            Step {
                t: 115.0,
                ps: vec![P(1, 0.0, 10, 20), P(70, 105.0, 11, 20), P(71, 60.0, 11, 20)],
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
                created: vec![],
                destroyed: vec![],
            },
            // Gone for one scan.
            Step {
                t: 115.0,
                ps: vec![P(1, 0.0, 10, 20)],
                created: vec![],
                destroyed: vec![(net(11), 25.0), (pid(21), 25.0)],
            },
            // The kernel hands out inode 11 again.
            Step {
                t: 130.0,
                ps: vec![P(1, 0.0, 10, 20), P(81, 120.0, 11, 20)],
                created: vec![net(11)],
                destroyed: vec![],
            },
            // Died and reused between two scans: every member is new and started after t=130.
            Step {
                t: 145.0,
                ps: vec![P(1, 0.0, 10, 20), P(82, 140.0, 11, 20)],
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
                created: vec![],
                destroyed: vec![],
            },
            Step {
                t: 115.0,
                ps: vec![P(1, 0.0, 10, 20), P(91, 95.0, 11, 20)],
                created: vec![],
                destroyed: vec![],
            },
        ]);
    }
}
