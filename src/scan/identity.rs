//! Identity across scans: which namespace of the last scan a namespace of this one is, so that
//! its kernel id (ioctl_ns(2) `NS_GET_ID`), owner and parent carry over without asking the
//! kernel again. A pure function of the two snapshots: the asking is the scan's.

use std::collections::BTreeMap;

use crate::model::{Namespace, Process, Snapshot, share_a_member};

/// The namespace of `previous` that `ns` (of this scan's `processes`) is, whose facts it can
/// take over: the one of the same type and inode that shares a member process with it (pid
/// and start time: a process cannot be in two namespaces of one type, and pids are reused).
/// Only where the old one has a kernel id, or the kernel gives none (`kernel_ids` is
/// `Some(false)`): otherwise the kernel is asked. A namespace with no member is never
/// carried: a pin proves nothing across scans, since `ip netns del x; ip netns add x` can
/// mount a new namespace with the old inode on the old path.
pub(super) fn carried<'a>(
    previous: Option<&'a Snapshot>,
    ns: &Namespace,
    processes: &BTreeMap<i32, Process>,
    kernel_ids: Option<bool>,
) -> Option<&'a Namespace> {
    let previous = previous?;
    previous
        .namespaces
        .get(&ns.id)
        .filter(|old| {
            share_a_member(
                (&old.members, &previous.processes),
                (&ns.members, processes),
            )
        })
        .filter(|old| old.kernel_id.is_some() || kernel_ids == Some(false))
}

#[cfg(test)]
mod tests {
    use crate::model::inode;
    use std::time::SystemTime;

    use super::*;
    use crate::model::{
        HostNamespaces, MountPin, NamespaceId, NsType, PerType, ProcessId, ScanTime,
    };

    const NET: NamespaceId = NamespaceId {
        ns_type: NsType::Net,
        inode: 4026532000,
    };

    fn member(pid: i32, start_ticks: u64) -> ProcessId {
        ProcessId { pid, start_ticks }
    }

    /// A scan whose processes are `members`, all in `NET`, with the kernel id and owner set
    /// as the scan's asking would; `NET` held by a bind mount alone where there is no member.
    fn scan(members: &[ProcessId], kernel_id: Option<u64>) -> Snapshot {
        let mut namespaces = PerType::splat(None);
        namespaces[NsType::Net] = inode(NET.inode);
        let processes = members
            .iter()
            .map(|m| {
                let p = Process {
                    id: *m,
                    ..Process::fixture(m.pid, namespaces)
                };
                (m.pid, p)
            })
            .collect();
        let mut s = Snapshot::from_processes(
            SystemTime::UNIX_EPOCH,
            ScanTime::fixture(1000),
            processes,
            HostNamespaces::none(),
        );
        let ns = s
            .namespaces
            .entry(NET)
            .or_insert_with(|| Namespace::new(NET));
        if members.is_empty() {
            ns.pins_mut().mounts.push(MountPin {
                mnt_ns: 1,
                path: "/run/netns/x".into(),
                via_pid: 1,
            });
        }
        ns.kernel_id = kernel_id;
        ns.owner = Some(4026531837);
        s
    }

    /// Last scan's members and kernel id, this scan's members, whether the kernel answers
    /// NS_GET_ID, whether the facts carry over, and why.
    type Row<'a> = (
        &'a [ProcessId],
        Option<u64>,
        &'a [ProcessId],
        Option<bool>,
        bool,
        &'a str,
    );

    /// In-memory scans, as process-exporter's tracker tests feed theirs: each row is the last
    /// scan's namespace, this scan's, whether the kernel answers NS_GET_ID, and whether the
    /// facts carry over.
    #[test]
    fn a_namespace_carries_over_only_through_a_surviving_member() {
        let (a, b, c) = (member(10, 5), member(11, 5), member(12, 7));
        let table: [Row; 9] = [
            (&[a, b], Some(7), &[b, c], Some(true), true, "b survived"),
            (&[a], Some(7), &[a], Some(true), true, "the same member"),
            (
                &[a],
                Some(7),
                &[c],
                Some(true),
                false,
                "no member left: a new namespace may reuse the inode",
            ),
            (
                &[a],
                Some(7),
                &[member(10, 9)],
                Some(true),
                false,
                "pid 10 reused by a new process",
            ),
            (
                &[a, b],
                Some(7),
                &[member(10, 9), member(11, 9), c],
                Some(true),
                false,
                "every pid reused",
            ),
            (
                &[a],
                None,
                &[a],
                Some(true),
                false,
                "no id last time, and the kernel has ids: ask",
            ),
            (
                &[a],
                None,
                &[a],
                Some(false),
                true,
                "a kernel without NS_GET_ID: carry what there is",
            ),
            (
                &[a],
                None,
                &[a],
                None,
                false,
                "the kernel not asked yet: ask",
            ),
            (
                &[],
                Some(7),
                &[],
                Some(true),
                false,
                "held by a pin only: asked every scan",
            ),
        ];
        for (old, id, new, kernel_ids, want, why) in table {
            let last = scan(old, id);
            let now = scan(new, None);
            let got = carried(
                Some(&last),
                &now.namespaces[&NET],
                &now.processes,
                kernel_ids,
            );
            assert_eq!(got.is_some(), want, "{why}");
            if let Some(old) = got {
                assert_eq!((old.kernel_id, old.owner), (id, Some(4026531837)), "{why}");
            }
        }
        // A different inode, or no last scan at all, carries nothing.
        let last = scan(&[a], Some(7));
        let now = scan(&[a], None);
        let mut other = now.namespaces[&NET].clone();
        other.id.inode += 1;
        assert!(carried(Some(&last), &other, &now.processes, Some(true)).is_none());
        let ns = &now.namespaces[&NET];
        assert!(carried(None, ns, &now.processes, Some(true)).is_none());
    }
}
