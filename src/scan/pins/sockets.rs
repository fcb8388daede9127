//! Network namespaces held by a socket: a socket keeps the network namespace it was made in
//! alive, whatever namespace its holder is in now. A process that makes a socket and then
//! setns(2)es back, or hands the socket to a process outside over a unix socket, leaves a
//! namespace that no process is in and nothing mounts.
//!
//! Found as util-linux lsns (2.41+) finds them, within the fd pass ([`super::read_fds`]): an
//! fd whose link reads `socket:[INODE]` is fetched with pidfd_getfd(2) and asked for its
//! namespace with `SIOCGSKNS` ([`crate::pidfd`]). A socket is recorded as a holder only where
//! that namespace is not its process's own: a socket in its own process's namespace adds
//! nothing, that process already holds it.
//!
//! The cost is bounded by a memo, socket inode to answer: a socket's namespace is fixed when
//! the socket is made (`sk_net`), so it is asked once in its life, and a later pass pays only
//! a hash lookup for it. An entry whose socket no pass sees any more is dropped at the end of
//! that pass, so the memo never holds more entries than the node has open sockets. Socket
//! inodes come from one 32-bit counter (`get_next_ino`): one is reused only after some four
//! billion new inodes, not between two passes.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::path::Path;

use crate::capabilities::Raised;
use crate::pidfd::{Pidfd, Step, socket_netns_inode};
use crate::procfs::pid_of;
use crate::procfs::readlink_at;
use crate::scan::errors::{ErrorReason, ScanErrors};

label_enum! {
    /// Why an fd pass did not learn a socket's network namespace. The label value is the
    /// `reason` label.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum SocketSkip {
        /// The scanned procfs is not of the exporter's pid namespace (a pod without
        /// `hostPID`): pidfd_open(2) cannot name its processes.
        OtherPidNamespace = "other_pid_namespace",
        /// CAP_NET_ADMIN is not held: `SIOCGSKNS` needs it over the socket's namespace.
        NoNetAdmin = "no_net_admin",
        /// pidfd_getfd(2) was refused (EPERM): no CAP_SYS_PTRACE over the holder, or an LSM,
        /// Yama or seccomp said no.
        PermissionDenied = "permission_denied",
        /// The kernel has no pidfd_getfd(2) (before Linux 5.6).
        Unsupported = "unsupported",
    }
}

/// Socket fds skipped in one fd pass, by [`SocketSkip`].
pub type SocketSkips = [u64; SocketSkip::ALL.len()];

/// What asking a socket told, for as long as the socket lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// The inode of its network namespace.
    Netns(u64),
    /// The kernel refused to say, for a reason that holds for this socket: the holder is out
    /// of the exporter's ptrace reach, or the namespace's owner out of its CAP_NET_ADMIN.
    Refused(SocketSkip),
}

/// Each socket's answer by socket inode, carried from one fd pass to the next.
#[derive(Debug, Default)]
pub struct SocketMemo {
    answers: HashMap<u64, Answer>,
}

impl SocketMemo {
    /// Sockets remembered: those the last pass saw.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}

/// The inode in the text of an fd link to a socket, `socket:[12345]`; `None` for any other
/// link (a namespace, a pipe, a path).
pub fn parse_socket_link(text: &[u8]) -> Option<u64> {
    let digits = text.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The pidfd of the process whose fds the pass is reading, opened at its first socket that
/// must be asked.
#[derive(Debug)]
enum HolderPidfd {
    Unopened,
    Open(Pidfd),
    /// It exited.
    Gone,
    /// pidfd_open itself was refused (seccomp).
    Refused,
}

/// The socket asks of one fd pass.
pub(super) struct SocketAsks<'a> {
    root: BorrowedFd<'a>,
    procfs: &'a Path,
    memo: &'a mut SocketMemo,
    /// The answers of this pass's sockets: the memo of the next pass.
    seen: HashMap<u64, Answer>,
    /// Why no socket can be asked in this pass, decided at the first one that must be.
    blocked: Option<Option<SocketSkip>>,
    /// CAP_NET_ADMIN, raised for the pass once a socket must be asked.
    admin: Option<Raised>,
    pid: i32,
    holder: HolderPidfd,
    pub skipped: SocketSkips,
    /// Sockets fetched and asked in this pass: those not in the memo.
    pub asked: u64,
}

impl<'a> SocketAsks<'a> {
    pub(super) fn new(root: BorrowedFd<'a>, procfs: &'a Path, memo: &'a mut SocketMemo) -> Self {
        let seen = HashMap::with_capacity(memo.answers.len());
        SocketAsks {
            root,
            procfs,
            memo,
            seen,
            blocked: None,
            admin: None,
            pid: 0,
            holder: HolderPidfd::Unopened,
            skipped: [0; SocketSkip::ALL.len()],
            asked: 0,
        }
    }

    /// The pass moves on to the fds of process `pid`.
    pub(super) fn holder(&mut self, pid: i32) {
        self.pid = pid;
        self.holder = HolderPidfd::Unopened;
    }

    /// The inode of the network namespace of the socket `socket` at fd `fd` of the current
    /// holder: from the memo where the socket was asked before, from the kernel otherwise.
    /// `None` where it cannot be known (counted in [`Self::skipped`]) or the fd or its
    /// process is gone.
    pub(super) fn netns(&mut self, fd: i32, socket: u64, errors: &mut ScanErrors) -> Option<u64> {
        let known = match self.seen.get(&socket) {
            Some(a) => Some(*a),
            None => self.memo.answers.remove(&socket),
        };
        let answer = match known {
            Some(a) => a,
            None => match self.ask(fd, socket, errors) {
                Ok(a) => a,
                Err(Some(why)) => {
                    self.skipped[why.index()] += 1;
                    return None;
                }
                Err(None) => return None,
            },
        };
        self.seen.insert(socket, answer);
        match answer {
            Answer::Netns(inode) => Some(inode),
            Answer::Refused(why) => {
                self.skipped[why.index()] += 1;
                None
            }
        }
    }

    /// Asks the kernel. `Err(Some)`: this pass cannot ask, for that reason (not remembered:
    /// it may change); `Err(None)`: the fd or process is gone, or a failure was counted.
    fn ask(
        &mut self,
        fd: i32,
        socket: u64,
        errors: &mut ScanErrors,
    ) -> Result<Answer, Option<SocketSkip>> {
        if let Some(why) = self.blocked() {
            return Err(Some(why));
        }
        if let HolderPidfd::Unopened = self.holder {
            self.holder = match Pidfd::open(self.pid) {
                Ok(p) => HolderPidfd::Open(p),
                Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => HolderPidfd::Gone,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSYS) => {
                    self.blocked = Some(Some(SocketSkip::Unsupported));
                    return Err(Some(SocketSkip::Unsupported));
                }
                Err(e) => {
                    tracing::debug!(pid = self.pid, error = %e, "pidfd_open refused");
                    HolderPidfd::Refused
                }
            };
        }
        let pidfd = match &self.holder {
            HolderPidfd::Open(p) => p,
            HolderPidfd::Gone => return Err(None),
            HolderPidfd::Refused => return Err(Some(SocketSkip::PermissionDenied)),
            HolderPidfd::Unopened => unreachable!("opened above"),
        };
        self.asked += 1;
        let (step, e) = match socket_netns_inode(pidfd, fd, socket) {
            Ok(inode) => return Ok(Answer::Netns(inode)),
            Err(failed) => failed,
        };
        use nix::libc::{EACCES, EBADF, ENOSYS, EPERM, ESRCH, ESTALE};
        match (step, e.raw_os_error()) {
            // The fd was closed, or is another file now, or the process exited.
            (_, Some(EBADF | ESTALE | ESRCH)) => Err(None),
            (Step::Fetch, Some(EPERM | EACCES)) => {
                Ok(Answer::Refused(SocketSkip::PermissionDenied))
            }
            (Step::Ask, Some(EPERM)) => Ok(Answer::Refused(SocketSkip::NoNetAdmin)),
            (Step::Fetch, Some(ENOSYS)) => {
                self.blocked = Some(Some(SocketSkip::Unsupported));
                Err(Some(SocketSkip::Unsupported))
            }
            _ => {
                let pid = self.pid;
                let path = format!("{}/{pid}/fd/{fd}", self.procfs.display());
                tracing::debug!(%path, ?step, error = %e, "socket not asked");
                errors.record(ErrorReason::of_io(&e), || format!("{path}: {e}"));
                Err(None)
            }
        }
    }

    /// Whether this pass can ask no socket, and why; decided once.
    fn blocked(&mut self) -> Option<SocketSkip> {
        if let Some(decided) = self.blocked {
            return decided;
        }
        let why = if !same_pid_namespace(self.root) {
            Some(SocketSkip::OtherPidNamespace)
        } else {
            let admin = Raised::net_admin();
            let held = admin.held();
            self.admin = Some(admin);
            (!held).then_some(SocketSkip::NoNetAdmin)
        };
        self.blocked = Some(why);
        why
    }

    /// Ends the pass: the memo keeps the answers of the sockets it saw, and only those.
    /// Returns the skips by reason and how many sockets were asked.
    pub(super) fn finish(self) -> (SocketSkips, u64) {
        self.memo.answers = self.seen;
        (self.skipped, self.asked)
    }
}

/// Whether the procfs at `root` is of the exporter's own pid namespace: its `self` names the
/// exporter by the pid the exporter has. In another pid namespace `self` reads the pid the
/// exporter has there (or nothing: a fixture tree has no `self`).
fn same_pid_namespace(root: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 16];
    match readlink_at(root, c"self", &mut buf) {
        Ok(text) => pid_of(text) == Some(std::process::id() as i32),
        Err(e) => {
            tracing::debug!(error = %e, "the procfs has no self");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links_give_their_inode_and_nothing_else_does() {
        assert_eq!(parse_socket_link(b"socket:[17279]"), Some(17279));
        assert_eq!(parse_socket_link(b"socket:[0]"), Some(0));
        assert_eq!(
            parse_socket_link(b"socket:[18446744073709551615]"),
            Some(u64::MAX)
        );
        for other in [
            &b"net:[4026531840]"[..],
            b"pipe:[17749]",
            b"anon_inode:[eventfd]",
            b"/dev/null",
            b"socket:[]",
            b"socket:[12a]",
            b"socket:[-1]",
            b"socket:[12",
            b"socket:12]",
            b"socket:[18446744073709551616]",
            b"Socket:[1]",
            b"socket:[1] ",
        ] {
            assert_eq!(
                parse_socket_link(other),
                None,
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
