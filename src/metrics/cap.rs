//! The per-workload cap on per-namespace series (`--metrics.namespaces-per-workload`): one
//! unprivileged container can make namespaces by the thousand (`unshare(CLONE_NEWUSER)` once,
//! then a uts namespace per fd it holds), three series each; beyond the cap a workload's
//! namespaces are counted by type in a family of their own, so that what one workload makes
//! costs Prometheus a bounded number of series and the workload itself shows.
//!
//! A workload is what the namespace's labels name ([`crate::sharing::Ownership`]): one
//! container, else one pod; a namespace that names neither counts with the others of its
//! `owner` (the host's processes', kernel threads', the unattributed, the held by a bind mount
//! alone). The host's own namespaces and those of several workloads (`owner="mixed"`: where
//! cross-workload findings are) are never capped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::model::{NamespaceId, NsType, PerType};
use crate::sharing::{Owner, Ownership};

/// One workload's namespaces of one type beyond the cap.
#[derive(Debug, Clone, PartialEq)]
pub struct BeyondCapRow {
    pub ns_type: NsType,
    /// `owner` (container, pod, or the owner of namespaces that name neither), `runtime`,
    /// `pod_uid`, `pod`, `k8s_namespace`, `container`, `container_id`.
    pub workload: [String; 7],
    pub namespaces: u64,
}

/// What a namespace is counted against: a container, a pod, or the owner of those that name
/// neither. `None`: never capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Workload<'a> {
    Container(&'a str),
    Pod(&'a str),
    /// By the `owner` label's value.
    Other(&'static str),
}

fn workload_of(host: bool, o: &Ownership) -> Option<Workload<'_>> {
    if host || o.owner == Owner::Mixed {
        None
    } else if !o.container_id.is_empty() {
        Some(Workload::Container(&o.container_id))
    } else if !o.pod_uid.is_empty() {
        Some(Workload::Pod(&o.pod_uid))
    } else {
        Some(Workload::Other(o.owner.as_str()))
    }
}

/// One namespace, as the cap sees it.
pub struct Candidate<'a> {
    pub id: NamespaceId,
    pub host: bool,
    pub ownership: &'a Arc<Ownership>,
    /// Whether a process is in it: kept before those held by a pin only.
    pub members: bool,
    /// Its estimated creation, in ticks since boot: the oldest are kept, so that a flood's
    /// new namespaces do not push a workload's own out of the per-namespace series.
    pub start_ticks: Option<u64>,
}

/// What the cap leaves out: the namespaces beyond it, and their counts by workload and type.
#[derive(Debug, Default)]
pub struct BeyondCap {
    pub namespaces: HashSet<NamespaceId>,
    pub rows: Vec<BeyondCapRow>,
    /// How many workloads hold more namespaces than the cap.
    pub workloads: u64,
}

/// Applies the cap of `cap` namespaces a workload (0: none) to `candidates`: each workload's
/// namespaces with processes first, then the oldest, then by type and inode, so that the same
/// ones are kept scan after scan.
pub fn beyond_cap<'a>(candidates: impl Iterator<Item = Candidate<'a>>, cap: usize) -> BeyondCap {
    let mut out = BeyondCap::default();
    if cap == 0 {
        return out;
    }
    let mut by_workload: HashMap<Workload<'a>, Vec<Candidate<'a>>> = HashMap::new();
    for c in candidates {
        if let Some(w) = workload_of(c.host, c.ownership) {
            by_workload.entry(w).or_default().push(c);
        }
    }
    for (workload, mut these) in by_workload {
        if these.len() <= cap {
            continue;
        }
        out.workloads += 1;
        these.sort_unstable_by_key(|c| (!c.members, c.start_ticks.is_none(), c.start_ticks, c.id));
        let first = these[0].ownership;
        let mut per_type = PerType::splat(0u64);
        for c in &these[cap..] {
            per_type[c.id.ns_type] += 1;
            out.namespaces.insert(c.id);
        }
        let (owner, container, container_id) = match workload {
            Workload::Container(id) => ("container", first.container.as_str(), id),
            Workload::Pod(_) => ("pod", "", ""),
            Workload::Other(owner) => (owner, "", ""),
        };
        let labelled = !matches!(workload, Workload::Other(_));
        let label = |v: &str| {
            if labelled {
                v.to_owned()
            } else {
                String::new()
            }
        };
        for (t, &n) in per_type.iter().filter(|(_, n)| **n > 0) {
            out.rows.push(BeyondCapRow {
                ns_type: t,
                workload: [
                    owner.to_owned(),
                    label(&first.runtime),
                    label(&first.pod_uid),
                    label(&first.pod),
                    label(&first.k8s_namespace),
                    container.to_owned(),
                    container_id.to_owned(),
                ],
                namespaces: n,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ownership(owner: Owner, pod_uid: &str, container_id: &str) -> Arc<Ownership> {
        Arc::new(Ownership {
            owner,
            runtime: if pod_uid.is_empty() {
                String::new()
            } else {
                "containerd".into()
            },
            pod_uid: pod_uid.into(),
            pod: if pod_uid.is_empty() {
                String::new()
            } else {
                format!("pod-{pod_uid}")
            },
            k8s_namespace: String::new(),
            container: if container_id.is_empty() {
                String::new()
            } else {
                format!("ctr-{container_id}")
            },
            container_id: container_id.into(),
        })
    }

    fn id(ns_type: NsType, inode: u64) -> NamespaceId {
        NamespaceId { ns_type, inode }
    }

    /// A container over the cap keeps its namespaces with processes and its oldest; the rest
    /// are counted by type against it, whether it runs in them or holds them by fd
    /// (`owner="none"` with its labels). A pod, the host's and mixed namespaces, and a
    /// container under the cap are untouched; unlabelled ones count by owner.
    #[test]
    fn a_workload_over_the_cap_keeps_its_own_and_counts_the_rest() {
        let own = ownership(Owner::Container, "p1", "aa");
        let held = ownership(Owner::NoProcess, "p1", "aa");
        let other = ownership(Owner::Container, "p2", "bb");
        let host = ownership(Owner::Host, "", "");
        let mixed = ownership(Owner::Mixed, "", "");
        let loose = ownership(Owner::NoProcess, "", "");
        let mut cs = Vec::new();
        let mut push = |t, inode, o: &Arc<Ownership>, members, start, is_host| {
            cs.push((id(t, inode), Arc::clone(o), members, start, is_host));
        };
        // The container's own three, started first, and 10 uts and 2 net held by fd, newer.
        push(NsType::Mnt, 1, &own, true, Some(50), false);
        push(NsType::Pid, 2, &own, true, Some(50), false);
        push(NsType::Net, 3, &own, true, Some(50), false);
        for i in 0..10 {
            push(NsType::Uts, 100 + i, &held, false, Some(60 + i), false);
        }
        // An old one held by fd, older than its own: kept before the flood, after its own.
        push(NsType::Net, 90, &held, false, Some(10), false);
        push(NsType::Net, 91, &held, false, None, false);
        for i in 0..5 {
            push(NsType::Mnt, 200 + i, &other, true, Some(1), false);
            push(NsType::Uts, 300 + i, &host, true, Some(1), true);
            push(NsType::Ipc, 400 + i, &mixed, true, Some(1), false);
        }
        for i in 0..6 {
            push(NsType::Net, 500 + i, &loose, false, Some(1), false);
        }
        let run = |cap| {
            beyond_cap(
                cs.iter().map(|(id, o, members, start, host)| Candidate {
                    id: *id,
                    host: *host,
                    ownership: o,
                    members: *members,
                    start_ticks: *start,
                }),
                cap,
            )
        };
        let b = run(5);
        assert_eq!(b.workloads, 2, "{:?}", b.rows);
        let mut kept_of_aa: Vec<u64> = cs
            .iter()
            .filter(|(id, o, ..)| o.container_id == "aa" && !b.namespaces.contains(id))
            .map(|(id, ..)| id.inode)
            .collect();
        kept_of_aa.sort();
        assert_eq!(kept_of_aa, [1, 2, 3, 90, 100]);
        let mut rows: Vec<(NsType, &str, &str, u64)> = b
            .rows
            .iter()
            .map(|r| (r.ns_type, &*r.workload[0], &*r.workload[6], r.namespaces))
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            [
                (NsType::Net, "container", "aa", 1),
                (NsType::Net, "none", "", 1),
                (NsType::Uts, "container", "aa", 9),
            ]
        );
        let aa = b.rows.iter().find(|r| r.workload[6] == "aa").unwrap();
        assert_eq!(
            aa.workload,
            [
                "container",
                "containerd",
                "p1",
                "pod-p1",
                "",
                "ctr-aa",
                "aa"
            ]
            .map(String::from)
        );
        assert_eq!(b.namespaces.len(), 11);
        // At or under the cap, and with no cap, nothing is left out.
        for cap in [0, 15] {
            let b = run(cap);
            assert!(b.namespaces.is_empty() && b.rows.is_empty() && b.workloads == 0);
        }
    }
}
