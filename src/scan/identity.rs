//! Identity across scans: which namespace of the last scan a namespace of this one is, so that
//! its kernel id (ioctl_ns(2) `NS_GET_ID`), owner and parent carry over without asking the
//! kernel again. A pure function of the two snapshots: the asking is the scan's.

use crate::model::{Namespace, ProcessId, Snapshot};

/// The namespace of `previous` that `ns` is, whose facts it can take over: the one of the same
/// type and inode that shares a member process with it (pid and start time: a process cannot
/// be in two namespaces of one type, and pids are reused). Only where the old one has a kernel
/// id, or the kernel gives none (`kernel_ids` is `Some(false)`): otherwise the kernel is asked.
/// A namespace with no member is never carried: a pin proves nothing across scans, since
/// `ip netns del x; ip netns add x` can mount a new namespace with the old inode on the old
/// path.
pub(super) fn carried<'a>(
    previous: Option<&'a Snapshot>,
    ns: &Namespace,
    kernel_ids: Option<bool>,
) -> Option<&'a Namespace> {
    previous
        .and_then(|p| p.namespaces.get(&ns.id))
        .filter(|old| shares_member(&old.members, &ns.members))
        .filter(|old| old.kernel_id.is_some() || kernel_ids == Some(false))
}

/// Whether two member lists, each sorted by pid, hold a common process.
fn shares_member(a: &[ProcessId], b: &[ProcessId]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].pid.cmp(&b[j].pid) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal if a[i] == b[j] => return true,
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::SystemTime;

    use super::*;
    use crate::model::{HostNamespaces, NamespaceId, NsType, ScanTime};

    const NET: NamespaceId = NamespaceId {
        ns_type: NsType::Net,
        inode: 4026532000,
    };

    fn member(pid: i32, start_ticks: u64) -> ProcessId {
        ProcessId { pid, start_ticks }
    }

    fn namespace(members: &[ProcessId], kernel_id: Option<u64>) -> Namespace {
        let mut ns = Namespace::new(NET);
        ns.members = members.to_vec();
        ns.kernel_id = kernel_id;
        ns.owner = Some(4026531837);
        ns
    }

    /// A snapshot holding `ns` only, as the last scan left it.
    fn scan(ns: Namespace) -> Snapshot {
        let mut s = Snapshot::from_processes(
            SystemTime::UNIX_EPOCH,
            ScanTime::fixture(1000),
            Default::default(),
            HostNamespaces::none(),
        );
        s.namespaces = HashMap::from([(ns.id, ns)]);
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
        let table: [Row; 8] = [
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
            let last = scan(namespace(old, id));
            let now = namespace(new, None);
            let got = carried(Some(&last), &now, kernel_ids);
            assert_eq!(got.is_some(), want, "{why}");
            if let Some(old) = got {
                assert_eq!((old.kernel_id, old.owner), (id, Some(4026531837)), "{why}");
            }
        }
        // A different inode, or no last scan at all, carries nothing.
        let last = scan(namespace(&[a], Some(7)));
        let mut other = namespace(&[a], None);
        other.id.inode += 1;
        assert!(carried(Some(&last), &other, Some(true)).is_none());
        assert!(carried(None, &namespace(&[a], None), Some(true)).is_none());
    }

    #[test]
    fn members_are_compared_by_pid_and_start_time() {
        let m = member;
        assert!(shares_member(
            &[m(1, 1), m(5, 2), m(9, 3)],
            &[m(2, 1), m(9, 3)]
        ));
        assert!(!shares_member(&[m(1, 1), m(5, 2)], &[m(5, 3)]));
        assert!(!shares_member(&[], &[m(5, 3)]));
    }
}
