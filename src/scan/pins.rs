//! Namespaces held without a process: nsfs bind mounts, open file descriptors and sockets.
//!
//! Kernel interfaces: proc_pid_mountinfo(5), read once per mount namespace through one of its
//! member processes (`/proc/PID/mountinfo` lists the mounts of that process's mount namespace;
//! an nsfs mount's root field is the namespace, `net:[4026532177]`), and proc_pid_fd(5),
//! `readlinkat(2)` of every `/proc/PID/fd/N` (an fd of a namespace reads `TYPE:[INODE]`).
//! `ip netns add`, CNI's `/run/netns/cni-*`, Docker's `/run/docker/netns/*` and
//! `unshare --net=FILE` pin with a bind mount; a runtime or `nsenter` waiting to `setns`
//! holds an fd. A socket holds the network namespace it was made in ([`sockets`]).
//!
//! The parsers are pure; the readers around them count failures in the scan's
//! [`ScanErrors`] and go on, as the per-process reads do.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

use nix::dir::Dir;

mod sockets;

pub use sockets::{SocketMemo, SocketSkip, SocketSkips, parse_socket_link};

use crate::capabilities::Raised;
use crate::model::{FdPin, MountPin, NamespaceId, NsType, Process, Snapshot, SocketPin};
use crate::procfs::pid_of;
use crate::procfs::{is_vanished, open_dir_at, parse_any_ns_link, read_all_at, readlink_at};
use crate::scan::errors::{ErrorReason, ScanErrors};

/// A `mountinfo` longer than this is cut, and counted as an error: 16 MiB is some 100,000
/// mounts, beyond any node's.
const MOUNTINFO_CAP: usize = 16 << 20;

/// The nsfs mounts in the bytes of a `mountinfo`: each one's namespace and mount point.
/// Lines that are not nsfs, or do not parse, are skipped.
pub fn parse_mountinfo_nsfs(bytes: &[u8]) -> Vec<(NamespaceId, String)> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
            let sep = line.windows(3).position(|w| w == b" - ")?;
            let fstype = line[sep + 3..].split(|&b| b == b' ').next()?;
            if fstype != b"nsfs" {
                return None;
            }
            let mut fields = line[..sep].split(|&b| b == b' ');
            let root = fields.nth(3)?;
            let mount_point = fields.next()?;
            Some((parse_any_ns_link(root)?, unescape(mount_point)))
        })
        .collect()
}

/// A `mountinfo` path field with its octal escapes (`\040` for a space, `\011`, `\012`,
/// `\134`) decoded; bytes that are not UTF-8 are replaced.
fn unescape(field: &[u8]) -> String {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field.get(i + 1..i + 4).filter(|d| {
            field[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts of a `mountinfo`: one a line.
pub fn count_mounts(bytes: &[u8]) -> u32 {
    let lines = bytes.iter().filter(|&&b| b == b'\n').count();
    let unterminated = !bytes.is_empty() && bytes.last() != Some(&b'\n');
    u32::try_from(lines + usize::from(unterminated)).unwrap_or(u32::MAX)
}

/// What the `mountinfo` reads of a scan found.
#[derive(Debug, Default)]
pub struct MountReads {
    /// Every nsfs mount, one per mount namespace and path (where bind mounts are looked for).
    pub pins: Vec<(NamespaceId, MountPin)>,
    /// Each mount namespace's mounts, by inode, where its file was read whole.
    pub counts: Vec<(u64, u32)>,
}

/// Reads the `mountinfo` of one member of each mount namespace in `snapshot` (the first, in
/// pid order, whose main thread is in it and whose file can be read): counts its mounts, and,
/// with `pins`, returns every nsfs mount found. One read serves both.
///
/// With `tables`, a mount namespace whose generation (`tables.generations`, read before)
/// has not moved since its table was last read through a process still in it is not read
/// again: what that read found stands (the generation moves at every mount attached to or
/// detached from the namespace, however). Every read with a generation is kept for the next.
pub fn read_mounts(
    root: BorrowedFd<'_>,
    procfs: &Path,
    snapshot: &Snapshot,
    pins: bool,
    errors: &mut ScanErrors,
    mut tables: Option<&mut MountTables>,
) -> MountReads {
    let mut buf = Vec::new();
    let mut out = MountReads::default();
    let mut paths: HashSet<Arc<str>> = HashSet::new();
    let mut kept = HashMap::new();
    for ns in snapshot
        .namespaces
        .values()
        .filter(|ns| ns.id.ns_type == NsType::Mnt)
    {
        let generation = tables
            .as_ref()
            .and_then(|t| t.generations.get(&(ns.id.inode as u32)).copied());
        if let Some(t) = tables.as_mut()
            && let Some(generation) = generation
            && let Some(last) = t.last.remove(&ns.id.inode)
        {
            let same = t.reuse
                && last.generation == generation
                && snapshot
                    .processes
                    .get(&last.via.pid)
                    .is_some_and(|p| p.id == last.via && p.namespace(NsType::Mnt) == Some(ns.id));
            if same {
                out.counts.push((ns.id.inode, last.count));
                out.pins.extend(last.pins.iter().cloned());
                t.unchanged += 1;
                kept.insert(ns.id.inode, last);
                continue;
            }
        }
        let (counts, pins_before) = (out.counts.len(), out.pins.len());
        let readers = ns.members.iter().copied().filter(|pid| {
            snapshot
                .processes
                .get(pid)
                .is_some_and(|p| p.namespace(NsType::Mnt) == Some(ns.id))
        });
        for pid in readers.take(4) {
            let name = CString::new(format!("{}/mountinfo", pid)).expect("digits");
            match read_all_at(root, &name, &mut buf, MOUNTINFO_CAP) {
                Ok(cut) => {
                    if cut {
                        let what = || {
                            format!("{}/{}/mountinfo: longer than 16 MiB", procfs.display(), pid)
                        };
                        errors.record(ErrorReason::IoError, what);
                    } else {
                        out.counts.push((ns.id.inode, count_mounts(&buf)));
                    }
                    let found = if pins {
                        parse_mountinfo_nsfs(&buf)
                    } else {
                        Vec::new()
                    };
                    for (id, path) in found {
                        // One node mounts the same few paths in many mount namespaces.
                        let path = match paths.get(path.as_str()) {
                            Some(p) => Arc::clone(p),
                            None => {
                                let p: Arc<str> = path.into();
                                paths.insert(Arc::clone(&p));
                                p
                            }
                        };
                        let pin = MountPin {
                            mnt_ns: ns.id.inode,
                            path,
                            via_pid: pid,
                        };
                        out.pins.push((id, pin));
                    }
                    // Not where it was cut: the next read says so again.
                    if let (Some(generation), Some(process), Some(&(_, count))) = (
                        generation,
                        snapshot.processes.get(&pid),
                        out.counts[counts..].first(),
                    ) {
                        let table = MountTable {
                            generation,
                            via: process.id,
                            count,
                            pins: out.pins[pins_before..].to_vec(),
                        };
                        kept.insert(ns.id.inode, table);
                    }
                    break;
                }
                Err(e) if is_vanished(&e) => {}
                Err(e) => {
                    let path = format!("{}/{}/mountinfo", procfs.display(), pid);
                    tracing::debug!(%path, error = %e, "mountinfo unreadable");
                    errors.record(ErrorReason::of_io(&e), || format!("{path}: {e}"));
                    break;
                }
            }
        }
    }
    if let Some(t) = tables {
        t.last = kept;
    }
    out
}

/// What the mount tables read last found, by their mount namespaces' generations.
#[derive(Debug, Default)]
pub struct MountTables {
    /// Each mount namespace's generation now, by inode (read before the tables).
    pub generations: HashMap<u32, u64>,
    /// Whether a table whose generation stands is taken from `last` (not at a walk, which
    /// reads every table).
    pub reuse: bool,
    /// What each table read with a generation found, by its namespace's inode.
    pub last: HashMap<u64, MountTable>,
    /// Tables taken from `last` since this was made.
    pub unchanged: u64,
}

/// What one read of a mount namespace's table found, at its generation then.
#[derive(Debug)]
pub struct MountTable {
    pub generation: u64,
    /// The process it was read through: while it lives in the namespace, the namespace is
    /// the one read (an inode freed and taken again is another namespace).
    pub via: crate::model::ProcessId,
    pub count: u32,
    pub pins: Vec<(NamespaceId, MountPin)>,
}

/// What an fd pass found.
#[derive(Debug, Default)]
pub struct FdPass {
    pub pins: Vec<(NamespaceId, FdPin)>,
    /// Sockets held by a process outside the network namespace they were made in.
    pub sockets: Vec<(NamespaceId, SocketPin)>,
    /// Processes of other users whose fds were not read: listing another user's
    /// `/proc/PID/fd` needs CAP_DAC_READ_SEARCH, which a non-root exporter may lack.
    pub skipped: u64,
    /// Socket fds whose network namespace could not be learnt, by reason.
    pub sockets_skipped: SocketSkips,
    /// Sockets asked of the kernel: those `memo` did not know.
    pub sockets_asked: u64,
}

/// Lists the fds of every process in `processes` but kernel threads and returns those that
/// are namespaces, and the sockets held outside their network namespace. Costs a getdents of
/// each `PID/fd` and a readlink of each fd (the readlink is a ptrace read check, as the ns
/// links are); a socket that `memo` does not know costs a pidfd_getfd, an ioctl, two fstats
/// and two closes once, and a pidfd_open and close per process that holds one. `None` asks
/// no socket. CAP_DAC_READ_SEARCH is made effective for the pass where it is permitted;
/// where the exporter cannot read every user's directories, other users' processes are
/// skipped and counted, not failed one by one every pass.
pub fn read_fds(
    root: BorrowedFd<'_>,
    procfs: &Path,
    processes: &BTreeMap<i32, Process>,
    memo: Option<&mut SocketMemo>,
    errors: &mut ScanErrors,
) -> FdPass {
    let kthreadd = processes.get(&2).is_some_and(|p| p.ppid == 0);
    let _privilege = Raised::read_search();
    let every_user = crate::capabilities::reads_everything();
    let me = nix::unistd::geteuid().as_raw();
    let mut out = FdPass::default();
    let mut link = [0u8; 64];
    let mut asks = memo.map(|m| sockets::SocketAsks::new(root, procfs, m));
    for p in processes.values() {
        let pid = p.id.pid;
        if kthreadd && (pid == 2 || p.ppid == 2) {
            continue;
        }
        if let Some(asks) = &mut asks {
            asks.holder(pid);
        }
        if !every_user && p.uid != me {
            out.skipped += 1;
            continue;
        }
        let dir_name = format!("{pid}/fd");
        let fail = |errors: &mut ScanErrors, e: &io::Error| {
            let path = format!("{}/{dir_name}", procfs.display());
            tracing::debug!(%path, error = %e, "fd directory unreadable");
            errors.record(ErrorReason::of_io(e), || format!("{path}: {e}"));
        };
        let fd = match open_dir_at(Some(root), Path::new(&dir_name)) {
            Ok(fd) => fd,
            Err(e) if is_vanished(&e) => continue,
            // Without the privilege, EACCES means the process is another user's now: it
            // changed its credentials since the scan read its owner (setuid, setpriv).
            Err(e) if !every_user && e.raw_os_error() == Some(nix::libc::EACCES) => {
                out.skipped += 1;
                continue;
            }
            Err(e) => {
                fail(errors, &e);
                continue;
            }
        };
        let Ok(links) = fd.try_clone() else {
            continue;
        };
        let Ok(mut dir) = Dir::from_fd(fd) else {
            continue;
        };
        for entry in dir.iter().flatten() {
            let name = entry.file_name();
            let Some(n) = pid_of(name.to_bytes()) else {
                continue;
            };
            // A closed fd reads as ENOENT: the process moved on, nothing to count.
            let Ok(text) = readlink_at(links.as_fd(), name, &mut link) else {
                continue;
            };
            if let Some(id) = parse_any_ns_link(text) {
                out.pins.push((
                    id,
                    FdPin {
                        process: p.id,
                        fd: n,
                    },
                ));
            } else if let (Some(socket), Some(asks)) = (parse_socket_link(text), &mut asks)
                && let Some(inode) = asks.netns(n, socket, errors)
            {
                let id = NamespaceId {
                    ns_type: NsType::Net,
                    inode,
                };
                let its_own = p.namespace(NsType::Net) == Some(id)
                    || p.thread_namespaces.iter().any(|t| t.id == id);
                if !its_own {
                    let process = p.id;
                    out.sockets.push((
                        id,
                        SocketPin {
                            process,
                            fd: n,
                            socket,
                        },
                    ));
                }
            }
        }
    }
    if let Some(asks) = asks {
        (out.sockets_skipped, out.sockets_asked) = asks.finish();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsfs_mounts_are_found_with_their_paths_unescaped() {
        let text = b"\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
43 42 0:4 net:[4026532177] /run/netns/blue rw shared:2 - nsfs nsfs rw
44 42 0:4 net:[4026532299] /run/netns/with\\040space rw - nsfs nsfs rw
45 27 0:4 mnt:[4026532301] /tmp/pin rw master:3 shared:9 - nsfs nsfs rw
46 27 0:4 pid:[4026532302] /tmp/p rw - nsfs nsfs rw
47 27 0:4 / /tmp/weird rw - nsfs nsfs rw
48 27 0:4 bogus:[1] /tmp/bogus rw - nsfs nsfs rw
49 27 0:4 net:[4026532303] /tmp/tmpfs rw - tmpfs tmpfs rw
50 27 0:4 net:[4026532304]
";
        let found = parse_mountinfo_nsfs(text);
        let net = |inode| NamespaceId {
            ns_type: NsType::Net,
            inode,
        };
        assert_eq!(
            found,
            [
                (net(4026532177), "/run/netns/blue".to_string()),
                (net(4026532299), "/run/netns/with space".to_string()),
                (
                    NamespaceId {
                        ns_type: NsType::Mnt,
                        inode: 4026532301
                    },
                    "/tmp/pin".to_string()
                ),
                (
                    NamespaceId {
                        ns_type: NsType::Pid,
                        inode: 4026532302
                    },
                    "/tmp/p".to_string()
                ),
            ]
        );
    }

    /// Between walks, a mount namespace whose generation stands keeps what its last read
    /// found (its file is not read again: a change to the fixture is not seen), and one whose
    /// generation moved, or whose reader is gone, is read again; at a walk, every one is.
    #[test]
    fn a_table_whose_generation_stands_is_not_read_again() {
        use crate::model::{HostNamespaces, PerType, ScanTime, inode};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |pid: i32, text: &str| {
            std::fs::create_dir_all(root.join(pid.to_string())).unwrap();
            std::fs::write(root.join(format!("{pid}/mountinfo")), text).unwrap();
        };
        let line = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n";
        let pin = "30 22 0:4 net:[4026532001] /run/netns/a rw - nsfs nsfs rw\n";
        write(10, &format!("{line}{pin}"));
        write(20, line);
        let snapshot = |pids: &[(i32, u64)]| {
            let processes = pids
                .iter()
                .map(|&(pid, ns)| {
                    let mut namespaces = PerType::splat(None);
                    namespaces[NsType::Mnt] = inode(ns);
                    (pid, Process::fixture(pid, namespaces))
                })
                .collect();
            Snapshot::from_processes(
                std::time::SystemTime::UNIX_EPOCH,
                ScanTime::fixture(1),
                processes,
                HostNamespaces::none(),
            )
        };
        let fd = crate::procfs::open_dir_at(None, root).unwrap();
        let mut tables = MountTables::default();
        let mut read = |snap: &Snapshot, generations: &[(u32, u64)], reuse: bool| {
            tables.generations = generations.iter().copied().collect();
            tables.reuse = reuse;
            let mut errors = ScanErrors::default();
            let r = read_mounts(fd.as_fd(), root, snap, true, &mut errors, Some(&mut tables));
            let mut counts = r.counts;
            counts.sort();
            (counts, r.pins.len(), tables.unchanged)
        };
        let both = snapshot(&[(10, 500), (20, 600)]);
        assert_eq!(
            read(&both, &[(500, 7), (600, 9)], true),
            (vec![(500, 2), (600, 1)], 1, 0)
        );
        // Each file changes; only the table whose generation moved is read again.
        write(10, line);
        write(20, &format!("{line}{line}{line}"));
        assert_eq!(
            read(&both, &[(500, 7), (600, 10)], true),
            (vec![(500, 2), (600, 3)], 1, 1)
        );
        // A walk reads every one.
        assert_eq!(
            read(&both, &[(500, 7), (600, 10)], false),
            (vec![(500, 1), (600, 3)], 0, 1)
        );
        // Its reader gone (another process now reads it), the table is read again.
        write(11, &format!("{line}{line}"));
        let other = snapshot(&[(11, 500), (20, 600)]);
        assert_eq!(
            read(&other, &[(500, 7), (600, 10)], true),
            (vec![(500, 2), (600, 3)], 0, 2)
        );
        // No generation for it (no task of it was iterated): read, and not kept.
        assert_eq!(
            read(&other, &[(600, 10)], true),
            (vec![(500, 2), (600, 3)], 0, 3)
        );
        assert!(!tables.last.contains_key(&500));
    }

    #[test]
    fn mounts_are_lines_the_last_one_unterminated_too() {
        assert_eq!(count_mounts(b""), 0);
        assert_eq!(count_mounts(b"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"), 1);
        assert_eq!(count_mounts(b"a\nb\nc"), 3);
        assert_eq!(count_mounts(&b"x\n".repeat(1000)), 1000);
    }

    #[test]
    fn escapes_decode_only_when_whole() {
        assert_eq!(unescape(br"a\040b\011c\012d\134e"), "a b\tc\nd\\e");
        assert_eq!(unescape(br"a\04"), r"a\04");
        assert_eq!(unescape(br"a\999"), r"a\999");
        assert_eq!(unescape(br"\"), r"\");
        assert_eq!(unescape(b"\xff/x"), "\u{fffd}/x");
    }

    #[test]
    fn fd_names_are_numbers() {
        assert_eq!(pid_of(b"17"), Some(17));
        assert_eq!(pid_of(b"."), None);
        assert_eq!(pid_of(b""), None);
        assert_eq!(pid_of(b"99999999999"), None);
    }
}
