//! What each network namespace holds: interfaces and their traffic, sockets by protocol and
//! conntrack entries, read once per full scan through one member process.
//!
//! Kernel interfaces: `/proc/PID/net/dev`, `/proc/PID/net/sockstat`, `sockstat6` and
//! `/proc/PID/net/stat/nf_conntrack` (proc_pid_net(5)); `/proc/PID/net` follows the network
//! namespace of the task, so no `setns` and no privilege beyond reading the process's
//! directory is needed. A namespace with no member process (held by a bind mount, an fd or a
//! socket) has no such directory: nothing of it is read. The mount namespaces' mounts are
//! counted where their `mountinfo` is read for bind mounts ([`super::pins::read_mounts`]).
//!
//! The parsers are pure and bounded; the reader counts what fails in the scan's
//! [`ScanErrors`] and goes on.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use crate::model::{NetHolds, NsType, Snapshot, SocketProtocol, Traffic};
use crate::procfs::{is_vanished, open_dir_at, read_all_at};
use crate::scan::errors::{ErrorReason, ScanErrors};

/// A `net/dev` longer than this is not parsed, and counted: some 100,000 interfaces at the
/// kernel's line length, beyond any namespace's.
const NET_DEV_CAP: usize = 16 << 20;

/// `sockstat`, `sockstat6` and `stat/nf_conntrack` are a few lines (the last one per CPU).
const SMALL_CAP: usize = 1 << 20;

/// The interfaces of a `/proc/PID/net/dev` and their traffic summed, `lo`'s left out of the
/// sum: loopback traffic never leaves the namespace, and counts each byte twice (sent and
/// received). `None` where a line does not parse.
pub fn parse_net_dev(bytes: &[u8]) -> Option<(u32, Traffic)> {
    let mut interfaces = 0u32;
    let mut t = Traffic::default();
    // Two header lines, then `NAME: RX(8 fields) TX(8 fields)` (an old kernel wrote no space
    // after the colon; an interface name holds no colon).
    for line in bytes.split(|&b| b == b'\n').skip(2) {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line[..colon].trim_ascii();
        let mut fields = line[colon + 1..]
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        let mut v = [0u64; 16];
        for slot in &mut v {
            *slot = decimal(fields.next()?)?;
        }
        if name.is_empty() || fields.next().is_some() {
            return None;
        }
        interfaces = interfaces.checked_add(1)?;
        if name == b"lo" {
            continue;
        }
        let add = |sum: &mut u64, n: u64| *sum = sum.saturating_add(n);
        add(&mut t.receive_bytes, v[0]);
        add(&mut t.receive_packets, v[1]);
        add(&mut t.receive_errors, v[2]);
        add(&mut t.receive_drops, v[3]);
        add(&mut t.transmit_bytes, v[8]);
        add(&mut t.transmit_packets, v[9]);
        add(&mut t.transmit_errors, v[10]);
        add(&mut t.transmit_drops, v[11]);
    }
    Some((interfaces, t))
}

/// The sockets in use by protocol in a `sockstat` or `sockstat6`: each known protocol line's
/// `inuse` field (`TCP: inuse 5 orphan 0 tw 0 alloc 7 mem 1`). Lines of other names (`sockets`,
/// `FRAG`, any a later kernel adds) are left out; `None` where a known line has no number.
pub fn parse_sockstat(bytes: &[u8]) -> Option<Vec<(SocketProtocol, u64)>> {
    let mut out = Vec::new();
    for line in bytes.split(|&b| b == b'\n') {
        let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let Some(name) = fields.next() else {
            continue;
        };
        let protocol = match name {
            b"TCP:" => SocketProtocol::Tcp,
            b"UDP:" => SocketProtocol::Udp,
            b"UDPLITE:" => SocketProtocol::Udplite,
            b"RAW:" => SocketProtocol::Raw,
            b"TCP6:" => SocketProtocol::Tcp6,
            b"UDP6:" => SocketProtocol::Udp6,
            b"UDPLITE6:" => SocketProtocol::Udplite6,
            b"RAW6:" => SocketProtocol::Raw6,
            _ => continue,
        };
        if fields.next()? != b"inuse" {
            return None;
        }
        out.push((protocol, decimal(fields.next()?)?));
    }
    Some(out)
}

/// The `entries` of a `/proc/PID/net/stat/nf_conntrack`: a header line of field names, then
/// one line per CPU of hexadecimal fields, `entries` the namespace's count, the same on each.
pub fn parse_conntrack_stat(bytes: &[u8]) -> Option<u64> {
    let mut lines = bytes.split(|&b| b == b'\n');
    fn words(l: &[u8]) -> Vec<&[u8]> {
        l.split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty())
            .collect()
    }
    let header = words(lines.next()?);
    let column = header.iter().position(|&w| w == b"entries")?;
    let first = words(lines.next()?);
    let hex = std::str::from_utf8(first.get(column)?).ok()?;
    u64::from_str_radix(hex, 16).ok()
}

/// A decimal of at most 20 digits that fits in 64 bits.
fn decimal(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 20 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// How one read of a member's file ended.
enum Read {
    /// Read whole into the buffer.
    Whole,
    /// The member exited, or (for a file that a kernel may lack) the file is not there.
    Absent,
    /// Counted as an error.
    Failed,
}

/// Reads what every network namespace in `snapshot` holds through the first of its members
/// (in pid order, at most four tried) whose main thread is in it and whose `net/dev` can be
/// read: a member that exited is passed over for the next; a file that cannot be read or does
/// not parse is counted in `errors` against that member, once per process and reason, and
/// that part of the namespace is not exported.
pub fn read_net(
    root: BorrowedFd<'_>,
    procfs: &Path,
    snapshot: &Snapshot,
    errors: &mut ScanErrors,
) -> Vec<(u64, NetHolds)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for ns in snapshot
        .namespaces
        .values()
        .filter(|ns| ns.id.ns_type == NsType::Net)
    {
        let readers = ns.members.iter().filter_map(|pid| {
            snapshot
                .processes
                .get(pid)
                .filter(|p| p.namespace(NsType::Net) == Some(ns.id))
        });
        for p in readers.take(4) {
            let pid = p.id.pid;
            // The four files through one open of the directory: a walk of `PID/net` (a
            // lookup of the namespace's proc tree each time) costs more than a read of them.
            let dir = match open_dir_at(Some(root), Path::new(&format!("{pid}/net"))) {
                Ok(dir) => dir,
                Err(e) if is_vanished(&e) => continue,
                Err(e) => {
                    let path = format!("{}/{pid}/net", procfs.display());
                    tracing::debug!(%path, error = %e, "network namespace directory unreadable");
                    errors.record_process(p.id, ErrorReason::of_io(&e), || format!("{path}: {e}"));
                    out.push((ns.id.inode, NetHolds::default()));
                    break;
                }
            };
            let read = |file: &str, cap: usize, buf: &mut Vec<u8>, errors: &mut ScanErrors| {
                let name = CString::new(file).expect("no NUL");
                let path = || format!("{}/{pid}/net/{file}", procfs.display());
                match read_all_at(dir.as_fd(), &name, buf, cap) {
                    Ok(false) => Read::Whole,
                    Ok(true) => {
                        let e = format!("{}: longer than {cap} bytes", path());
                        errors.record_process(p.id, ErrorReason::IoError, || e);
                        Read::Failed
                    }
                    // The member exited (then the next is tried), or a file the kernel
                    // lacks: `stat/nf_conntrack` without conntrack, `sockstat6` without IPv6.
                    Err(e) if is_vanished(&e) => Read::Absent,
                    Err(e) => {
                        tracing::debug!(path = %path(), error = %e, "network namespace file unreadable");
                        errors.record_process(p.id, ErrorReason::of_io(&e), || {
                            format!("{}: {e}", path())
                        });
                        Read::Failed
                    }
                }
            };
            let unparsable = |file: &str, errors: &mut ScanErrors| {
                let what = || format!("{}/{pid}/net/{file}: does not parse", procfs.display());
                errors.record_process(p.id, ErrorReason::ParseError, what);
            };
            let mut holds = NetHolds::default();
            match read("dev", NET_DEV_CAP, &mut buf, errors) {
                Read::Absent => continue,
                Read::Failed => {}
                Read::Whole => match parse_net_dev(&buf) {
                    Some(dev) => holds.interfaces = Some(dev),
                    None => unparsable("dev", errors),
                },
            }
            for file in ["sockstat", "sockstat6"] {
                if let Read::Whole = read(file, SMALL_CAP, &mut buf, errors) {
                    match parse_sockstat(&buf) {
                        Some(sockets) => holds.sockets.extend(sockets),
                        None => unparsable(file, errors),
                    }
                }
            }
            if let Read::Whole = read("stat/nf_conntrack", SMALL_CAP, &mut buf, errors) {
                match parse_conntrack_stat(&buf) {
                    Some(n) => holds.conntrack = Some(n),
                    None => unparsable("stat/nf_conntrack", errors),
                }
            }
            out.push((ns.id.inode, holds));
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &[u8] = b"\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   11200     112    0    0    0     0          0         0    11200     112    0    0    0     0       0          0
  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0
veth-a0:100 1 0 0 0 0 0 0 200 2 0 1 0 0 0 0
";

    #[test]
    fn net_dev_counts_every_interface_and_sums_all_but_lo() {
        let (n, t) = parse_net_dev(NET_DEV).expect("parses");
        assert_eq!(n, 3);
        assert_eq!(
            t,
            Traffic {
                receive_bytes: 1100,
                receive_packets: 11,
                receive_errors: 1,
                receive_drops: 2,
                transmit_bytes: 2200,
                transmit_packets: 22,
                transmit_errors: 3,
                transmit_drops: 5,
            }
        );
        // Headers alone: no interface (a namespace whose lo is gone cannot be, but the parse
        // does not care).
        let head: Vec<u8> = NET_DEV
            .split(|&b| b == b'\n')
            .take(2)
            .collect::<Vec<_>>()
            .join(&b'\n');
        assert_eq!(parse_net_dev(&head), Some((0, Traffic::default())));
    }

    #[test]
    fn net_dev_garbage_is_refused_not_guessed() {
        for bad in [
            &b"h\nh\neth0 1 2 3\n"[..],
            b"h\nh\neth0: 1 2 3\n",
            b"h\nh\neth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\n",
            b"h\nh\neth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n",
            b"h\nh\neth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 99999999999999999999999\n",
            b"h\nh\n: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
            b"h\nh\neth0: -1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
        ] {
            assert_eq!(parse_net_dev(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        // Sums that would pass 2^64 stop there.
        let max = u64::MAX;
        let two = format!(
            "h\nh\na: {max} 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nb: 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        );
        assert_eq!(parse_net_dev(two.as_bytes()).unwrap().1.receive_bytes, max);
    }

    /// 10,000 interfaces: counted, in one pass.
    #[test]
    fn a_namespace_of_ten_thousand_interfaces_is_counted() {
        let mut text = NET_DEV[..NET_DEV.iter().position(|&b| b == b'\n').unwrap() + 1].to_vec();
        text.extend_from_slice(b"face |...\n");
        for i in 0..10_000 {
            text.extend_from_slice(format!("v{i}: 1 1 0 0 0 0 0 0 2 2 0 0 0 0 0 0\n").as_bytes());
        }
        let (n, t) = parse_net_dev(&text).unwrap();
        assert_eq!(
            (n, t.receive_bytes, t.transmit_packets),
            (10_000, 10_000, 20_000)
        );
    }

    #[test]
    fn sockstat_gives_inuse_by_protocol() {
        let v4 = b"sockets: used 290\nTCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1\nUDP: inuse 3 mem 2\nUDPLITE: inuse 0\nRAW: inuse 1\nFRAG: inuse 0 memory 0\n";
        let v6 = b"TCP6: inuse 2\nUDP6: inuse 1\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\nMPTCP: inuse 4\n";
        use SocketProtocol::*;
        assert_eq!(
            parse_sockstat(v4),
            Some(vec![(Tcp, 5), (Udp, 3), (Udplite, 0), (Raw, 1)])
        );
        assert_eq!(
            parse_sockstat(v6),
            Some(vec![(Tcp6, 2), (Udp6, 1), (Udplite6, 0), (Raw6, 0)])
        );
        assert_eq!(parse_sockstat(b""), Some(vec![]));
        for bad in [
            &b"TCP: used 5\n"[..],
            b"TCP: inuse\n",
            b"TCP: inuse x\n",
            b"TCP:\n",
        ] {
            assert_eq!(parse_sockstat(bad), None);
        }
    }

    #[test]
    fn conntrack_entries_come_from_the_first_cpu_line() {
        let text = b"entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n0000001a  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000\n0000001a  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000\n";
        assert_eq!(parse_conntrack_stat(text), Some(26));
        assert_eq!(parse_conntrack_stat(b"searched entries\n1 ff\n"), Some(255));
        for bad in [
            &b""[..],
            b"entries\n",
            b"entries\nzz\n",
            b"found\n1\n",
            b"\x00\xff",
        ] {
            assert_eq!(parse_conntrack_stat(bad), None);
        }
    }

    /// A member with no `net` (it exited) is passed over for the next; a member whose
    /// `sockstat` is garbage has that part counted and left out, the rest read; a kernel
    /// without conntrack or IPv6 (no file) is no error.
    #[test]
    fn a_gone_member_is_passed_over_and_garbage_is_counted() {
        use crate::model::{HostNamespaces, PerType, Process, ScanTime, inode};
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let net = |pid: i32, file: &str, text: &[u8]| {
            let path = root.join(format!("{pid}/net/{file}"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        std::fs::create_dir_all(root.join("10")).unwrap();
        net(11, "dev", NET_DEV);
        net(11, "stat/nf_conntrack", b"entries found\n00000002 0\n");
        net(20, "dev", NET_DEV);
        net(20, "sockstat", b"TCP: inuse many\n");
        net(20, "sockstat6", b"TCP6: inuse 4\n");
        let in_net = |pid: i32, ns: u64| {
            let mut namespaces = PerType::splat(None);
            namespaces[NsType::Net] = inode(ns);
            (pid, Process::fixture(pid, namespaces))
        };
        let processes = [in_net(10, 500), in_net(11, 500), in_net(20, 600)].into();
        let snapshot = Snapshot::from_processes(
            std::time::SystemTime::UNIX_EPOCH,
            ScanTime::fixture(1),
            processes,
            HostNamespaces::none(),
        );
        let fd = crate::procfs::open_dir_at(None, root).unwrap();
        let mut errors = ScanErrors::default();
        let read: std::collections::HashMap<u64, NetHolds> =
            read_net(fd.as_fd(), root, &snapshot, &mut errors)
                .into_iter()
                .collect();
        assert_eq!(read[&500].interfaces.map(|(n, _)| n), Some(3));
        assert_eq!(read[&500].conntrack, Some(2));
        assert_eq!(read[&600].interfaces.map(|(n, _)| n), Some(3));
        assert_eq!(read[&600].sockets, [(SocketProtocol::Tcp6, 4)]);
        assert_eq!(read[&600].conntrack, None);
        assert_eq!(errors.count(ErrorReason::ParseError), 1);
        assert_eq!(errors.total(), 1);
    }
}
