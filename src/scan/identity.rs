//! Identity across scans: which namespace of the last scan a namespace of this one is, so that
//! its kernel id (ioctl_ns(2) `NS_GET_ID`), owner and parent carry over without asking the
//! kernel again. A pure function of the two snapshots: the asking is the scan's.

use std::collections::BTreeMap;

use crate::model::{Namespace, Process, Snapshot, share_a_member};

/// The namespace of `previous` that `ns` (of this scan's `processes`) is, whose facts it can
/// take over: the one of the same type and inode that shares a member process with it (pid
/// and start time: a process cannot be in two namespaces of one type, and pids are reused).
/// Only where the old one has a kernel id, or the kernel gives none (`kernel_ids` is
/// `Some(false)`): otherwise the kernel is asked. A namespace with no member is carried only
/// by its fds and sockets ([`carried_by_pin`]).
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

/// The namespace of `previous` that `ns`, held by no member, is: the one of the same type and
/// inode that one of the same fds or sockets held (process by pid and start time, fd number,
/// and for a socket its inode). The scan found each of `ns`'s pins open on that inode now (the
/// fd pass, or a readlink of the fd since), and an open fd is one open file: it keeps its
/// namespace alive and cannot be pointed at another without being closed. Only its holder can
/// close it and open a new namespace that took the freed inode into the same fd number
/// between two scans, and that deceives no one but about its own namespaces' lifetimes. A bind
/// mount proves nothing (`ip netns del x; ip netns add x`): a namespace held by one is asked.
/// Where the old one has a kernel id, or the kernel gives none, as for [`carried`].
pub(super) fn carried_by_pin<'a>(
    previous: Option<&'a Snapshot>,
    ns: &Namespace,
    kernel_ids: Option<bool>,
) -> Option<&'a Namespace> {
    if !ns.members.is_empty() || !ns.mounts().is_empty() {
        return None;
    }
    previous?
        .namespaces
        .get(&ns.id)
        .filter(|old| {
            let fds = ns.fds().iter().any(|f| old.fds().binary_search(f).is_ok());
            fds || ns
                .sockets()
                .iter()
                .any(|s| old.sockets().binary_search(s).is_ok())
        })
        .filter(|old| old.kernel_id.is_some() || kernel_ids == Some(false))
}

/// The process whose fds and sockets alone hold `ns` (the first, where several do), for the
/// scan's budget of questions a holder: `None` where a member or a bind mount holds it.
pub(super) fn lone_holder(ns: &Namespace) -> Option<i32> {
    if !ns.members.is_empty() || !ns.mounts().is_empty() {
        return None;
    }
    let fd = ns.fds().first().map(|f| f.process.pid);
    fd.or_else(|| ns.sockets().first().map(|s| s.process.pid))
}

#[cfg(test)]
mod tests {
    use crate::model::inode;
    use std::time::SystemTime;

    use super::*;
    use crate::model::{
        FdPin, HostNamespaces, MountPin, NamespaceId, NsType, PerType, ProcessId, ScanTime,
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
        // Held by the same fd of the same process in both scans: carried; by another fd, a
        // reused pid, or a bind mount as well: asked.
        let held = |pins: &[(ProcessId, i32)], mount: bool, kernel_id| {
            let mut s = scan(&[], kernel_id);
            let ns = s.namespaces.get_mut(&NET).unwrap();
            if !mount {
                ns.pins_mut().mounts.clear();
            }
            for &(process, fd) in pins {
                ns.pins_mut().fds.push(FdPin { process, fd });
            }
            s
        };
        let by_pin = |old: &Snapshot, new: &Snapshot, kernel_ids| {
            carried_by_pin(Some(old), &new.namespaces[&NET], kernel_ids).is_some()
        };
        let last = held(&[(a, 3), (b, 4)], false, Some(7));
        assert!(by_pin(&last, &held(&[(b, 4)], false, None), Some(true)));
        assert!(!by_pin(&last, &held(&[(b, 5)], false, None), Some(true)));
        assert!(!by_pin(
            &last,
            &held(&[(member(10, 9), 3)], false, None),
            Some(true)
        ));
        assert!(!by_pin(&last, &held(&[(a, 3)], true, None), Some(true)));
        let no_id = held(&[(a, 3)], false, None);
        assert!(!by_pin(&no_id, &held(&[(a, 3)], false, None), Some(true)));
        assert!(by_pin(&no_id, &held(&[(a, 3)], false, None), Some(false)));
        assert_eq!(
            lone_holder(&held(&[(b, 4)], false, None).namespaces[&NET]),
            Some(11)
        );
        assert_eq!(
            lone_holder(&held(&[(b, 4)], true, None).namespaces[&NET]),
            None
        );

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
