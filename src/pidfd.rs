//! Another process's sockets, and the network namespace each was made in.
//!
//! Kernel interfaces: pidfd_open(2) (Linux 5.3) names a process by an fd that stays with that
//! process; pidfd_getfd(2) (5.6) duplicates one of its fds into the exporter; the socket ioctl
//! `SIOCGSKNS` (4.9; `sock_ioctl` in net/socket.c, listed in socket(7)'s ioctls) returns an
//! nsfs fd of the network namespace the socket was made in. A socket keeps that namespace
//! alive whatever namespace its holder is in now. util-linux lsns (2.41 and later) finds
//! namespaces held by a socket the same way.
//!
//! What each step needs, from the kernel's checks:
//! - pidfd_open takes a pid of the caller's own pid namespace: a procfs of another pid
//!   namespace (a pod's `/host/proc` without `hostPID`) names other processes.
//! - pidfd_getfd is a ptrace attach check (`PTRACE_MODE_ATTACH_REALCREDS`): CAP_SYS_PTRACE
//!   over the holder, and no LSM or Yama refusal; EPERM otherwise.
//! - SIOCGSKNS needs CAP_NET_ADMIN in the user namespace that owns the socket's network
//!   namespace; EPERM otherwise.
//!
//! Every fd fetched from another process is an [`OwnedFd`] from the instant the kernel returns
//! it, and is closed before the function that fetched it returns: a pass over thousands of
//! sockets holds at most two of them (the socket and its namespace) at a time.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::libc;

/// `SIOCGSKNS` (include/uapi/linux/sockios.h): the libc crate does not define it.
const SIOCGSKNS: libc::c_ulong = 0x894C;

/// A process, named by a pidfd.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// pidfd_open(2) of `pid`, a pid of the exporter's own pid namespace. ESRCH: no such
    /// process (it exited). The fd is close-on-exec, as every pidfd is.
    pub fn open(pid: i32) -> io::Result<Pidfd> {
        #[allow(unsafe_code)]
        // SAFETY: pidfd_open takes two integers and returns a new fd or -1; libc has no
        // wrapper for it in every glibc this builds against.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        Ok(Pidfd(owned(r)?))
    }

    /// The process's fd `fd`, duplicated into the exporter with pidfd_getfd(2), where it is
    /// still the socket of inode `socket`. Another file there (the fd was closed and reused,
    /// or the pid now names another process) is ESTALE, a closed fd EBADF.
    pub fn socket(&self, fd: i32, socket: u64) -> io::Result<OwnedFd> {
        #[allow(unsafe_code)]
        // SAFETY: pidfd_getfd takes three integers and returns a new fd or -1.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, self.0.as_raw_fd(), fd, 0) };
        // An OwnedFd at once: every return below closes it.
        let fetched = owned(r)?;
        let st = nix::sys::stat::fstat(fetched.as_fd()).map_err(io::Error::from)?;
        if st.st_ino != socket || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        Ok(fetched)
    }
}

/// An nsfs fd of the network namespace that `socket` was made in (`SIOCGSKNS`).
pub fn socket_netns(socket: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    #[allow(unsafe_code)]
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd or -1.
    let r = unsafe { libc::ioctl(socket.as_raw_fd(), SIOCGSKNS as _) };
    owned(libc::c_long::from(r))
}

/// The network namespace inode of the socket `fd` of the process `pidfd` names, where that fd
/// is still the socket `socket`: pidfd_getfd, fstat, SIOCGSKNS, fstat and two closes. The
/// step that failed comes with the error: the same errno means different things at each.
pub fn socket_netns_inode(pidfd: &Pidfd, fd: i32, socket: u64) -> Result<u64, (Step, io::Error)> {
    let fetched = pidfd.socket(fd, socket).map_err(|e| (Step::Fetch, e))?;
    let netns = socket_netns(fetched.as_fd()).map_err(|e| (Step::Ask, e))?;
    drop(fetched);
    let st = nix::sys::stat::fstat(netns.as_fd()).map_err(|e| (Step::Ask, e.into()))?;
    Ok(st.st_ino)
}

/// Which step of asking a socket failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// pidfd_getfd and the check that the fd is the socket.
    Fetch,
    /// SIOCGSKNS.
    Ask,
}

/// A syscall's return value as a new fd, or its errno.
pub(crate) fn owned(r: libc::c_long) -> io::Result<OwnedFd> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    #[allow(unsafe_code)]
    // SAFETY: the kernel just returned `fd` as a new fd, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// The exporter's own socket, asked through its own pidfd: the namespace it names is the
    /// one `/proc/self/ns/net` names; an fd that is not that socket is refused.
    #[test]
    fn a_socket_of_this_process_is_in_its_network_namespace() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
            .unwrap()
            .ino();
        let netns = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        let me = Pidfd::open(std::process::id() as i32).unwrap();
        match socket_netns_inode(&me, socket.as_raw_fd(), inode) {
            Ok(got) => assert_eq!(got, netns),
            // Without CAP_NET_ADMIN (a non-root test run) the ask is refused, not the fetch.
            Err((Step::Ask, e)) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
            Err((step, e)) => panic!("{step:?}: {e}"),
        }
        // The fd now holds a file that is not that socket: refused as another file.
        let (step, e) = socket_netns_inode(&me, me.0.as_raw_fd(), inode).unwrap_err();
        assert_eq!((step, e.raw_os_error()), (Step::Fetch, Some(libc::ESTALE)));
        let (step, e) = socket_netns_inode(&me, 1 << 20, inode).unwrap_err();
        assert_eq!((step, e.raw_os_error()), (Step::Fetch, Some(libc::EBADF)));
    }
}
