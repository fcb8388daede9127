//! Reading `/proc`: one [`ProcFs`] value holds the root, every path is joined onto it.
//!
//! Kernel interfaces: proc_pid_ns(5) (`/proc/PID/ns/TYPE` symlinks whose text is
//! `TYPE:[INODE]`), proc_pid_stat(5) (`/proc/PID/stat`) and proc_stat(5) (`btime` in
//! `/proc/stat`). The `parse_*` functions are pure and work on bytes; the readers around them are
//! thin. Links are read with `readlinkat(2)` rather than `stat(2)`: it is cheaper and it works on
//! fixture trees where the links are plain symlinks.
//!
//! Files are opened with `O_NONBLOCK`: procfs and regular files ignore it, but a FIFO or a
//! file under a lease in a tree that only looks like a procfs would otherwise block the open
//! until a writer comes. ioctl_ns(2) on an fd of a namespace asks the kernel for its id
//! (`NS_GET_ID`, which unlike the inode number is never reused), its owning user namespace
//! (`NS_GET_USERNS`) and its parent (`NS_GET_PARENT`): see [`ns_facts`].

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;

use crate::capabilities::Raised;
use crate::model::{CgroupLayout, Inode, NsType};

/// The root of a procfs: `/proc`, or a host's `/proc` mounted elsewhere, or a fixture tree.
#[derive(Clone, Debug)]
pub struct ProcFs {
    root: PathBuf,
}

/// A failure to read or parse something under the procfs root, with the path it was about.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: cannot parse: {reason}")]
    Parse { path: PathBuf, reason: String },
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ProcFs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ROOT/rel`.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// Boot time in unix seconds, from `btime` in `ROOT/stat`.
    pub fn boot_time(&self) -> Result<u64, ProcError> {
        let path = self.path("stat");
        let bytes = std::fs::read(&path).map_err(|source| ProcError::Io {
            path: path.clone(),
            source,
        })?;
        parse_btime(&bytes).ok_or_else(|| ProcError::Parse {
            path,
            reason: "no btime line".into(),
        })
    }

    /// The host's cgroup layout, from the cgroup file of PID 1, kthreadd or, in a tree without
    /// them, the reader itself ([`CgroupLayout::Unknown`] where none can be read).
    pub fn cgroup_layout(&self) -> CgroupLayout {
        ["1/cgroup", "2/cgroup", "self/cgroup"]
            .into_iter()
            .find_map(|rel| parse_cgroup_layout(&std::fs::read(self.path(rel)).ok()?))
            .unwrap_or(CgroupLayout::Unknown)
    }

    /// Opens the root directory for a scan.
    pub fn open_root(&self) -> Result<OwnedFd, ProcError> {
        open_dir_at(None, &self.root).map_err(|e| ProcError::Io {
            path: self.root.clone(),
            source: e,
        })
    }
}

/// Opens a directory (relative to `dir` if given) with `O_DIRECTORY | O_CLOEXEC`.
pub fn open_dir_at(dir: Option<BorrowedFd<'_>>, path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let fd = match dir {
        Some(d) => openat(d, path, flags, Mode::empty()),
        None => nix::fcntl::open(path, flags, Mode::empty()),
    };
    fd.map_err(io::Error::from)
}

/// Reads the target of the symlink `name` relative to `dir` into `buf`, with no allocation.
pub fn readlink_at<'b>(
    dir: BorrowedFd<'_>,
    name: &CStr,
    buf: &'b mut [u8],
) -> io::Result<&'b [u8]> {
    // nix's readlinkat returns an allocated OsString; this is the scan's hot loop.
    #[allow(unsafe_code)]
    // SAFETY: `name` is NUL-terminated and `buf` is valid for `buf.len()` bytes.
    let n = unsafe {
        nix::libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(&buf[..n as usize])
}

/// Reads the file `name` relative to `dir` into `buf`, with no allocation. A file longer than
/// `buf` is cut at `buf.len()`. A read that returns less than was asked is taken as the end:
/// procfs answers a whole small file in one read, and so does a regular file, which saves the
/// extra read(2) that would only return 0.
pub fn read_at<'b>(dir: BorrowedFd<'_>, name: &CStr, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
    let fd = open_file_at(dir, name)?;
    let mut len = 0;
    while len < buf.len() {
        let want = buf.len() - len;
        let n = nix::unistd::read(fd.as_fd(), &mut buf[len..]).map_err(io::Error::from)?;
        len += n;
        if n < want {
            break;
        }
    }
    Ok(&buf[..len])
}

/// The most [`read_whole_at`] reads of a file. A `cgroup` file has a line per hierarchy, each
/// path within `PATH_MAX` (the kernel fails the read beyond it), so a longer file is not one the
/// kernel wrote; and a fixture tree cannot make the scan hold more than this for one file.
pub const WHOLE_FILE_MAX: usize = 1 << 20;

/// Reads the file `name` relative to `dir` whole into `buf`, growing it as needed, up to `most`
/// bytes: a longer file is an error (EFBIG), never a silently cut parse. `buf` keeps its size
/// for the next file. As with [`read_at`], a read shorter than asked is the end: a seq_file
/// answers as much as was asked while more is left.
pub fn read_whole_at<'b>(
    dir: BorrowedFd<'_>,
    name: &CStr,
    buf: &'b mut Vec<u8>,
    most: usize,
) -> io::Result<&'b [u8]> {
    let fd = open_file_at(dir, name)?;
    let mut len = 0;
    loop {
        if len == buf.len() {
            if len > most {
                return Err(io::Error::from_raw_os_error(nix::libc::EFBIG));
            }
            // One byte past `most`, to tell a file of exactly `most` bytes from a longer one.
            let grown = (buf.len() * 2).clamp(4096, most + 1);
            buf.resize(grown, 0);
        }
        let want = buf.len() - len;
        let n = nix::unistd::read(fd.as_fd(), &mut buf[len..]).map_err(io::Error::from)?;
        len += n;
        if n < want {
            break;
        }
    }
    if len > most {
        return Err(io::Error::from_raw_os_error(nix::libc::EFBIG));
    }
    Ok(&buf[..len])
}

/// Opens `name` relative to `dir` for reading, without blocking (see the module header).
fn open_file_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    // nix hands a `&CStr` to the kernel as it is (other path types it copies to add the NUL),
    // so this allocates nothing.
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    openat(dir, name, flags, Mode::empty()).map_err(io::Error::from)
}

/// `NS_GET_ID`: `_IOR(0xb7, 13, __u64)` (include/uapi/linux/nsfs.h, Linux 6.18).
const NS_GET_ID: nix::libc::c_ulong = (2 << 30) | (8 << 16) | (0xb7 << 8) | 13;

/// `NS_GET_USERNS`: `_IO(0xb7, 0x1)`: an fd of the user namespace that owns a namespace.
const NS_GET_USERNS: nix::libc::c_ulong = (0xb7 << 8) | 0x1;
/// `NS_GET_PARENT`: `_IO(0xb7, 0x2)`: an fd of the parent of a pid or user namespace.
const NS_GET_PARENT: nix::libc::c_ulong = (0xb7 << 8) | 0x2;
/// `NSFS_MAGIC`, the `f_type` of nsfs (include/uapi/linux/magic.h).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// What the kernel said of one namespace through an fd of it (ioctl_ns(2)).
#[derive(Debug, PartialEq, Eq)]
pub struct NsFacts {
    /// The inode of the namespace the path named at the time of the open, from `fstat` of the
    /// same fd, so the caller can check it opened the namespace it meant: a process may have
    /// exited and its pid been reused, a mount been replaced, since the path was read.
    pub inode: u64,
    /// `NS_GET_ID`: `None` where the kernel lacks it (before 6.18: ENOTTY or EINVAL).
    pub kernel_id: Option<u64>,
    /// `NS_GET_USERNS`: the inode of the owning user namespace; `None` where it is outside
    /// the caller's user namespace (EPERM, as for the initial one).
    pub owner: Option<u64>,
    /// `NS_GET_PARENT`, for pid and user namespaces only: the parent's inode; `None` for the
    /// initial namespace and where the parent is outside the caller's (EPERM).
    pub parent: Option<u64>,
}

/// An error for a path that opened something other than a namespace: a fixture's plain file,
/// or a mount point a container replaced. Taken as a changed path, like a vanished process.
pub fn not_a_namespace() -> io::Error {
    io::Error::from_raw_os_error(nix::libc::ESTALE)
}

/// Opens the namespace file `name` (a link `PID/ns/net`, a bind mount `PID/root/run/netns/x`,
/// an fd `PID/fd/7`) relative to `dir` and asks the kernel what it is: its id, its owner and,
/// for a pid or user namespace of `ns_type`, its parent. What was opened must be on nsfs: a
/// path that leads elsewhere is an error ([`not_a_namespace`]), never "the kernel has no
/// `NS_GET_ID`".
pub fn ns_facts(dir: BorrowedFd<'_>, name: &CStr, ns_type: NsType) -> io::Result<NsFacts> {
    let fd = open_file_at(dir, name)?;
    if !on_nsfs(fd.as_fd())? {
        return Err(not_a_namespace());
    }
    facts_of(fd.as_fd(), ns_type)
}

/// Where a namespace held without a process can be opened.
#[derive(Clone, Copy, Debug)]
pub enum PinPath<'a> {
    /// A bind mount at `path`, as the mount namespace of process `pid` sees it.
    Mount { pid: i32, path: &'a str },
    /// The fd `fd` of process `pid`.
    Fd { pid: i32, fd: i32 },
    /// The socket of inode `socket` at fd `fd` of process `pid`: a network namespace.
    Socket { pid: i32, fd: i32, socket: u64 },
}

/// [`ns_facts`] of a namespace that a bind mount or an fd holds, opened relative to the procfs
/// root `procfs`, without ever opening anything else: the path is another process's to change
/// (a container may swap its mount point for a symlink to `/dev/watchdog`, a process may
/// `dup2` a device onto the fd), so it is first opened `O_PATH`, which runs no driver's open,
/// a mount path with no symlink followed and never above that process's root; only once
/// `fstatfs` says nsfs is it opened for the ioctls, through `/proc/self/fd`. A socket is
/// never opened: it is fetched with pidfd_getfd(2), checked to be the same socket, and asked
/// for its namespace ([`crate::pidfd`]), which is nsfs by construction.
pub fn pin_facts(procfs: BorrowedFd<'_>, pin: PinPath<'_>, ns_type: NsType) -> io::Result<NsFacts> {
    use nix::fcntl::{OpenHow, ResolveFlag, openat2};
    let o_path = OFlag::O_PATH | OFlag::O_CLOEXEC;
    let handle = match pin {
        PinPath::Socket { pid, fd, socket } => {
            let netns = {
                let fetched = crate::pidfd::Pidfd::open(pid)?.socket(fd, socket)?;
                let _admin = Raised::net_admin();
                crate::pidfd::socket_netns(fetched.as_fd())?
            };
            return facts_of(netns.as_fd(), ns_type);
        }
        PinPath::Mount { pid, path } => {
            let root = openat(
                procfs,
                format!("{pid}/root").as_str(),
                o_path | OFlag::O_DIRECTORY,
                Mode::empty(),
            )?;
            let how = OpenHow::new()
                .flags(o_path)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS);
            openat2(root, path.trim_start_matches('/'), how)?
        }
        PinPath::Fd { pid, fd } => openat(
            procfs,
            format!("{pid}/fd/{fd}").as_str(),
            o_path,
            Mode::empty(),
        )?,
    };
    if !on_nsfs(handle.as_fd())? {
        return Err(not_a_namespace());
    }
    let reopened = nix::fcntl::open(
        format!("/proc/self/fd/{}", handle.as_raw_fd()).as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    facts_of(reopened.as_fd(), ns_type)
}

/// Whether `fd` is a file of nsfs.
fn on_nsfs(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let fs = nix::sys::statfs::fstatfs(fd).map_err(io::Error::from)?;
    Ok(fs.filesystem_type().0 as i64 == NSFS_MAGIC)
}

/// The ioctls of [`ns_facts`] on an open fd of a namespace.
fn facts_of(fd: BorrowedFd<'_>, ns_type: NsType) -> io::Result<NsFacts> {
    let inode = nix::sys::stat::fstat(fd).map_err(io::Error::from)?.st_ino;
    let mut id: u64 = 0;
    // No safe wrapper exists for an ioctl; nix's ioctl macros would generate an unsafe fn too.
    #[allow(unsafe_code)]
    // SAFETY: NS_GET_ID writes one u64 through the pointer, which is valid for that.
    let r = unsafe { nix::libc::ioctl(fd.as_raw_fd(), NS_GET_ID as _, &mut id as *mut u64) };
    let kernel_id = if r < 0 {
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(nix::libc::ENOTTY) | Some(nix::libc::EINVAL) => None,
            _ => return Err(e),
        }
    } else {
        Some(id)
    };
    let parent = matches!(ns_type, NsType::Pid | NsType::User)
        .then(|| related_inode(fd, NS_GET_PARENT))
        .flatten();
    Ok(NsFacts {
        inode,
        kernel_id,
        owner: related_inode(fd, NS_GET_USERNS),
        parent,
    })
}

/// The inode of the namespace that `request` (`NS_GET_USERNS`, `NS_GET_PARENT`) returns an fd
/// of; `None` where the kernel refuses (EPERM: outside the caller's user namespace or the
/// initial one) or lacks the request.
fn related_inode(fd: BorrowedFd<'_>, request: nix::libc::c_ulong) -> Option<u64> {
    #[allow(unsafe_code)]
    // SAFETY: these requests take no argument and return a new fd or -1.
    let r = unsafe { nix::libc::ioctl(fd.as_raw_fd(), request as _) };
    if r < 0 {
        return None;
    }
    #[allow(unsafe_code)]
    // SAFETY: `r` is a new fd that nothing else owns.
    let related = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(r) };
    nix::sys::stat::fstat(related.as_fd())
        .ok()
        .map(|st| st.st_ino)
}

/// Reads the whole file `name` relative to `dir` into `buf` (cleared first), up to `cap`
/// bytes: for files such as `mountinfo` that the kernel hands out a page at a time. Returns
/// whether the file was longer than `cap` (then `buf` holds the first `cap` bytes).
pub fn read_all_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<bool> {
    let fd = open_file_at(dir, name)?;
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = nix::unistd::read(fd.as_fd(), &mut chunk).map_err(io::Error::from)?;
        if n == 0 {
            return Ok(false);
        }
        let room = cap - buf.len();
        if n > room {
            buf.extend_from_slice(&chunk[..room]);
            return Ok(true);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the times in `/proc/PID/stat` (100 on every Linux
/// this runs on; 100 where sysconf will not say).
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)
        .unwrap_or(100) as u64
}

/// `CLOCK_BOOTTIME` and the wall clock, read back to back: (seconds since boot, unix seconds).
pub fn boot_and_wall_time() -> (std::time::Duration, std::time::SystemTime) {
    let boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(std::time::Duration::from)
        .unwrap_or_default();
    (boot, std::time::SystemTime::now())
}

/// The cgroup layout that the bytes of a `/proc/PID/cgroup` show: a `0::PATH` line is the
/// unified hierarchy, any other line a v1 hierarchy. Every process of a machine lists the same
/// hierarchies, so one file tells the layout. `None` for bytes that hold no such line.
pub fn parse_cgroup_layout(bytes: &[u8]) -> Option<CgroupLayout> {
    let (mut unified, mut v1) = (false, false);
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut fields = line.splitn(3, |&b| b == b':');
        let (Some(id), Some(controllers), Some(_path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        match decimal(id) {
            Some(0) if controllers.is_empty() => unified = true,
            Some(_) => v1 = true,
            None => {}
        }
    }
    match (v1, unified) {
        (true, true) => Some(CgroupLayout::Hybrid),
        (true, false) => Some(CgroupLayout::Legacy),
        (false, true) => Some(CgroupLayout::Unified),
        (false, false) => None,
    }
}

/// The owner of an open file: for `/proc/PID` it is the process's effective uid.
pub fn owner_uid(fd: BorrowedFd<'_>) -> io::Result<u32> {
    nix::sys::stat::fstat(fd)
        .map(|st| st.st_uid)
        .map_err(io::Error::from)
}

/// Why a namespace link's text could not be parsed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NsLinkError {
    #[error("link text is not TYPE:[INODE]")]
    Shape,
    #[error("link names type {found:?}, expected {expected}")]
    WrongType { expected: NsType, found: String },
    #[error("inode is not a decimal number from 1 to 2^32-1")]
    Inode,
}

/// Parses the text of `/proc/PID/ns/TYPE`, e.g. `net:[4026531840]`, checking the type. The
/// inode is the kernel's `ns_common.inum`, an `unsigned int` that is never 0.
pub fn parse_ns_link(expected: NsType, text: &[u8]) -> Result<Inode, NsLinkError> {
    let colon = text
        .iter()
        .position(|&b| b == b':')
        .ok_or(NsLinkError::Shape)?;
    let (name, rest) = (&text[..colon], &text[colon + 1..]);
    let digits = rest
        .strip_prefix(b"[")
        .and_then(|r| r.strip_suffix(b"]"))
        .ok_or(NsLinkError::Shape)?;
    if name != expected.as_str().as_bytes() {
        return Err(NsLinkError::WrongType {
            expected,
            found: String::from_utf8_lossy(name).into_owned(),
        });
    }
    // Folded from the bytes: this runs eight times per process per scan.
    if digits.is_empty() {
        return Err(NsLinkError::Inode);
    }
    let inode = digits.iter().try_fold(0u32, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(NsLinkError::Inode);
        }
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u32::from(b - b'0')))
            .ok_or(NsLinkError::Inode)
    })?;
    Inode::new(inode).ok_or(NsLinkError::Inode)
}

/// Parses the text of a link to a namespace of any type (`/proc/PID/fd/N`, the root field of
/// an nsfs line of `mountinfo`): `Some` for `TYPE:[INODE]` where TYPE is one of the eight,
/// `None` for anything else (`socket:[…]`, `pipe:[…]`, a path).
pub fn parse_any_ns_link(text: &[u8]) -> Option<crate::model::NamespaceId> {
    let colon = text.iter().position(|&b| b == b':')?;
    let ns_type = NsType::ALL
        .into_iter()
        .find(|t| t.as_str().as_bytes() == &text[..colon])?;
    let inode = parse_ns_link(ns_type, text).ok()?;
    Some(crate::model::NamespaceId {
        ns_type,
        inode: inode.get().into(),
    })
}

/// The facts this exporter takes from `/proc/PID/stat`.
#[derive(Debug, PartialEq, Eq)]
pub struct StatFacts<'a> {
    pub pid: i32,
    /// `comm` as the kernel wrote it: any byte but NUL ([`StatFacts::comm_lossy`]).
    pub comm: &'a [u8],
    pub ppid: i32,
    pub start_ticks: u64,
    /// Field 20, `num_threads`: whether the threads are worth a look.
    pub threads: u64,
}

impl<'a> StatFacts<'a> {
    /// `comm` with the bytes that are not UTF-8 replaced.
    pub fn comm_lossy(&self) -> std::borrow::Cow<'a, str> {
        String::from_utf8_lossy(self.comm)
    }
}

/// Parses the four facts the scan needs from `/proc/PID/stat`: `comm` is everything between
/// the first `(` and the last `)`, so a `comm` holding spaces, parentheses or newlines is read
/// whole; it is left as bytes, for the scan to decode once per distinct name.
///
/// This is the scan's hot loop, so it folds the two numbers it needs straight from the bytes
/// instead of running the procfs crate's full 52-field parser ([`parse_stat_full`]), which
/// was a share of every scan worth saving (docs/performance.md). It accepts exactly the lines that parser accepts and returns the
/// same values: a differential test below holds it to that.
pub fn parse_stat(bytes: &[u8]) -> Result<StatFacts<'_>, String> {
    let malformed = || not_a_stat_line(bytes);
    let line = bytes.trim_ascii();
    let open = line.iter().position(|&b| b == b'(').ok_or_else(malformed)?;
    let close = memchr::memrchr(b')', line).ok_or_else(malformed)?;
    // "PID (comm) S PPID ...": one space on each side of the parentheses.
    if open < 2 || close < open || line[open - 1] != b' ' || line.get(close + 1) != Some(&b' ') {
        return Err(malformed());
    }
    let pid = decimal(&line[..open - 1]).ok_or_else(malformed)?;
    // Fields 3 (state) to 37 (cnswap) must all be there, as the procfs crate requires.
    let mut fields = line[close + 2..].split(|&b| b == b' ');
    let mut ppid = None;
    let mut threads = None;
    let mut start_ticks = None;
    for i in 3..=37 {
        let field = fields.next().ok_or_else(malformed)?;
        match i {
            3 if field.is_empty() => return Err(malformed()),
            4 => ppid = Some(decimal(field).ok_or_else(malformed)?),
            20 => threads = Some(decimal(field).ok_or_else(malformed)?),
            22 => start_ticks = Some(decimal(field).ok_or_else(malformed)?),
            _ if i > 4 && !is_number(field) => return Err(malformed()),
            _ => {}
        }
    }
    Ok(StatFacts {
        pid: i32::try_from(pid).map_err(|_| malformed())?,
        comm: &line[open + 1..close],
        ppid: i32::try_from(ppid.ok_or_else(malformed)?).map_err(|_| malformed())?,
        start_ticks: start_ticks.ok_or_else(malformed)?,
        threads: threads.ok_or_else(malformed)?,
    })
}

/// A non-negative decimal number that fits in 64 bits, folded from its bytes.
fn decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    // Nineteen digits cannot overflow: the fields of a stat line are this short, and the
    // checked folds were a large part of the parse (docs/performance.md).
    if bytes.len() <= 19 {
        let mut n = 0u64;
        for &b in bytes {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u64::from(b - b'0');
        }
        return Some(n);
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit()
            .then(|| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

/// A field of `stat` after the ppid: a decimal number, possibly negative (priority, nice).
fn is_number(field: &[u8]) -> bool {
    decimal(field.strip_prefix(b"-").unwrap_or(field)).is_some()
}

/// Every field of `/proc/PID/stat`, for the exporter's own process metrics.
pub fn parse_stat_full(bytes: &[u8]) -> Result<procfs_core::process::Stat, String> {
    use procfs_core::FromRead;
    // The crate's error for a malformed line calls itself a bug in the crate and spans lines;
    // a malformed line here is the kernel's (or a fixture's) doing, so say that instead.
    procfs_core::process::Stat::from_read(bytes).map_err(|_| not_a_stat_line(bytes))
}

/// The error for bytes that are not a stat line, quoting at most their first 64 bytes.
fn not_a_stat_line(bytes: &[u8]) -> String {
    let line = String::from_utf8_lossy(bytes.get(..64).unwrap_or(bytes));
    format!("not a /proc/PID/stat line: {:?}", line.trim_end())
}

/// Finds `btime N` in the bytes of `/proc/stat`.
pub fn parse_btime(bytes: &[u8]) -> Option<u64> {
    bytes
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"btime "))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Whether a failed read means the process is gone (it exited mid-scan): not an error.
pub fn is_vanished(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::ENOENT) | Some(nix::libc::ESRCH)
    )
}

/// A pid, tid or fd directory entry name: decimal digits only (`self`, `thread-self`, `.`
/// and files are skipped).
pub fn pid_of(name: &[u8]) -> Option<i32> {
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file longer than any first buffer is read whole, however it starts; one past the bound
    /// is an error, not the bound's first bytes.
    #[test]
    fn a_file_is_read_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let root = open_dir_at(None, dir.path()).unwrap();
        let text: Vec<u8> = (0..40_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(dir.path().join("cgroup"), &text).unwrap();
        for start in [0, 1, 16 * 1024, 64 * 1024] {
            let mut buf = vec![0; start];
            let read = read_whole_at(root.as_fd(), c"cgroup", &mut buf, 40_000).unwrap();
            assert_eq!(read, &text[..], "from a buffer of {start}");
        }
        let mut buf = vec![0; 16 * 1024];
        let e = read_whole_at(root.as_fd(), c"cgroup", &mut buf, 39_999).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(nix::libc::EFBIG));
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        assert_eq!(
            read_whole_at(root.as_fd(), c"empty", &mut buf, 10).unwrap(),
            b""
        );
    }

    #[test]
    fn ns_link_parses_each_type() {
        for t in NsType::ALL {
            let text = format!("{}:[4026531840]", t.as_str());
            let inode = parse_ns_link(t, text.as_bytes()).map(|i| i.get());
            assert_eq!(inode, Ok(4026531840));
        }
    }

    #[test]
    fn ns_link_rejects_malformed_text() {
        use NsLinkError::*;
        let cases: &[(&[u8], NsLinkError)] = &[
            (b"net:[]", Inode),
            (b"net:[abc]", Inode),
            (b"net:[-1]", Inode),
            (b"net:[ 1]", Inode),
            (b"net:[99999999999999999999999]", Inode),
            (b"net:[4294967296]", Inode),
            (b"net:[0]", Inode),
            (b"net:4026531840", Shape),
            (b"net:[4026531840", Shape),
            (b"net[4026531840]", Shape),
            (b"", Shape),
            (
                b"ipc:[4026531840]",
                WrongType {
                    expected: NsType::Net,
                    found: "ipc".into(),
                },
            ),
            (
                b"\xff:[1]",
                WrongType {
                    expected: NsType::Net,
                    found: "\u{fffd}".into(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_ns_link(NsType::Net, text).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    fn stat_line(comm: &[u8]) -> Vec<u8> {
        let mut v = b"4242 (".to_vec();
        v.extend_from_slice(comm);
        v.extend_from_slice(
            b") S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10 \
18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
        );
        v
    }

    #[test]
    fn stat_reads_plain_comm() {
        let line = stat_line(b"sleep");
        let facts = parse_stat(&line).unwrap();
        assert_eq!(
            facts,
            StatFacts {
                pid: 4242,
                comm: b"sleep",
                ppid: 17,
                start_ticks: 123456,
                threads: 1,
            }
        );
    }

    #[test]
    fn stat_reads_comm_with_spaces_parens_and_newlines() {
        for comm in [&b"a b"[..], b"x) S 1 (y", b"line\nbreak", b"))", b"(", b" "] {
            let line = stat_line(comm);
            let facts = parse_stat(&line).unwrap();
            assert_eq!(facts.comm, comm);
            assert_eq!((facts.ppid, facts.start_ticks), (17, 123456));
        }
    }

    #[test]
    fn stat_replaces_non_utf8_comm_bytes() {
        let line = stat_line(b"bad\xff\xfename");
        let facts = parse_stat(&line).unwrap();
        assert_eq!(facts.comm_lossy(), "bad\u{fffd}\u{fffd}name");
        assert_eq!(facts.start_ticks, 123456);
    }

    /// Short fields are folded without a check, long ones with one: both agree at the edge.
    #[test]
    fn decimals_fit_in_64_bits_or_are_refused() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(
            decimal(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(decimal(b"18446744073709551616"), None);
        assert_eq!(decimal(b"00000000000000000000042"), Some(42));
        for bad in [&b""[..], b"-1", b"1 ", b"12a", b"\xff"] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stat_rejects_truncated_lines() {
        assert!(parse_stat(b"").is_err());
        assert!(parse_stat(b"12 (sh) S 1").is_err());
        assert!(parse_stat(b"12 sh S 1 2 3").is_err());
    }

    /// The facts as the procfs crate's full parser gives them: pid, comm decoded, ppid,
    /// start time, threads.
    type Facts = (i32, String, i32, u64, u64);

    /// What ours read, as the crate gives it.
    fn ours(bytes: &[u8]) -> Option<Facts> {
        let f = parse_stat(bytes).ok()?;
        let comm = f.comm_lossy().into_owned();
        Some((f.pid, comm, f.ppid, f.start_ticks, f.threads))
    }

    /// The facts the procfs crate's full parser finds in the same bytes, or its verdict that
    /// they are not a stat line.
    fn reference(bytes: &[u8]) -> Option<Facts> {
        // procfs-core 0.18 panics (slices past the end) on a line that stops right after `)`;
        // that is a rejection too.
        let parsed = std::panic::catch_unwind(|| parse_stat_full(bytes)).ok()?;
        let s = parsed.ok()?;
        // A negative count is no stat line the kernel writes: a rejection.
        let threads = u64::try_from(s.num_threads).ok()?;
        Some((s.pid, s.comm, s.ppid, s.starttime, threads))
    }

    #[test]
    fn stat_parser_agrees_with_the_procfs_crate() {
        // Lines the kernel can write: every byte but NUL as a comm, alone and between
        // parentheses and spaces, and other odd comms. Both parsers must read the same facts.
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for b in 1..=255u8 {
            lines.push(stat_line(&[b]));
            lines.push(stat_line(&[b'(', b, b')', b' ', b]));
        }
        for comm in [
            &b""[..],
            b" ",
            b"))",
            b"((",
            b") S 1 (",
            b"a\nb",
            b"\xe2\x82",
            b"\xf0\x9f\x92\xa9x",
            b"sixteen-chars-xx",
        ] {
            lines.push(stat_line(comm));
        }
        for line in &lines {
            let ours = ours(line);
            assert!(ours.is_some(), "{:?}", String::from_utf8_lossy(line));
            assert_eq!(ours, reference(line), "{:?}", String::from_utf8_lossy(line));
        }

        // Damaged lines: cut at every length, a field made non-numeric, spacing broken. Ours
        // rejects every one the crate rejects, and never reads a value the crate would not;
        // it also rejects some the crate misreads (`4242(ok)` is pid 424 to procfs-core 0.18).
        let good = stat_line(b"ok");
        let mut damaged: Vec<Vec<u8>> = (0..good.len()).map(|cut| good[..cut].to_vec()).collect();
        let text = String::from_utf8(good.clone()).unwrap();
        for (from, to) in [
            (" 17 ", " x7 "),
            (" 123456 ", " 12x456 "),
            (" 123456 ", " -123456 "),
            (" 20 0 1 ", "  20 0 1 "),
            ("4242 (", "4242("),
            ("4242 (", "-4242 ("),
            ("4242 (", "99999999999 ("),
            (") S", ")S"),
            (") S", ") "),
        ] {
            damaged.push(text.replacen(from, to, 1).into_bytes());
        }
        damaged.push(b"garbage\n".to_vec());
        let mut rejected = 0;
        for line in &damaged {
            let (ours, theirs) = (ours(line), reference(line));
            assert!(
                ours.is_none() || ours == theirs,
                "{:?}: {ours:?} vs {theirs:?}",
                String::from_utf8_lossy(line)
            );
            rejected += usize::from(ours.is_none());
        }
        // Cuts that keep every field up to cnswap (field 37) are still whole lines.
        assert!(
            rejected > damaged.len() / 2,
            "{rejected} of {}",
            damaged.len()
        );
        assert!(parse_stat(b"4242(ok) S 1").is_err());
    }

    #[test]
    fn cgroup_layout_from_the_lines_of_one_file() {
        // This machine's PID 1 (systemd's hybrid mode), a unified host, a v1-only host.
        let hybrid = b"9:name=systemd:/\n8:pids:/\n1:cpu:/\n0::/init.scope\n";
        assert_eq!(parse_cgroup_layout(hybrid), Some(CgroupLayout::Hybrid));
        assert_eq!(
            parse_cgroup_layout(b"0::/system.slice/cron.service\n"),
            Some(CgroupLayout::Unified)
        );
        let legacy = b"12:memory:/docker/abc\n1:name=systemd:/docker/abc\n";
        assert_eq!(parse_cgroup_layout(legacy), Some(CgroupLayout::Legacy));
        // A path may hold colons; junk and empty files say nothing.
        assert_eq!(
            parse_cgroup_layout(b"0::/a:b:c\n"),
            Some(CgroupLayout::Unified)
        );
        assert_eq!(parse_cgroup_layout(b""), None);
        assert_eq!(parse_cgroup_layout(b"garbage\nx:y:z\n"), None);
    }

    #[test]
    fn kernel_ids_name_a_namespace_for_good_with_its_owner_and_parent() {
        // The real kernel: our own net namespace, opened twice, has one id; another type has
        // another. Where the kernel lacks NS_GET_ID the id is None and the rest still answers.
        let dir = open_dir_at(None, Path::new("/proc/self")).unwrap();
        let net = ns_facts(dir.as_fd(), c"ns/net", NsType::Net).unwrap();
        let again = ns_facts(dir.as_fd(), c"ns/net", NsType::Net).unwrap();
        let uts = ns_facts(dir.as_fd(), c"ns/uts", NsType::Uts).unwrap();
        assert_eq!(net, again);
        if let (Some(id), Some(uts_id)) = (net.kernel_id, uts.kernel_id) {
            assert_ne!(id, uts_id);
        }
        let link = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert_eq!(link.to_str().unwrap(), format!("net:[{}]", net.inode));
        // Both are owned by our user namespace; only pid and user namespaces have parents.
        let user = std::fs::metadata("/proc/self/ns/user").unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(net.owner, Some(user.ino()));
        assert_eq!((net.parent, uts.parent), (None, None));
        assert_eq!(
            ns_facts(dir.as_fd(), c"ns/nonexistent", NsType::Net)
                .unwrap_err()
                .raw_os_error(),
            Some(nix::libc::ENOENT)
        );
        // A path that opens something else is not a namespace, never "no NS_GET_ID".
        let cwd = open_dir_at(None, Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        let e = ns_facts(cwd.as_fd(), c"Cargo.toml", NsType::Net).unwrap_err();
        assert_eq!(e.raw_os_error(), not_a_namespace().raw_os_error());
    }

    #[test]
    fn a_pin_path_that_leads_elsewhere_is_never_opened_for_real() {
        use std::os::fd::AsRawFd;
        let proc = open_dir_at(None, Path::new("/proc")).unwrap();
        let me = std::process::id() as i32;
        let dir = std::env::temp_dir().join(format!("nsx-pin-{me}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        // A FIFO: a real open for reading would block until a writer came.
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        let held = nix::fcntl::open(&fifo, OFlag::O_RDWR, Mode::empty()).unwrap();
        let pin = PinPath::Fd {
            pid: me,
            fd: held.as_raw_fd(),
        };
        let e = pin_facts(proc.as_fd(), pin, NsType::Net).unwrap_err();
        assert_eq!(e.raw_os_error(), not_a_namespace().raw_os_error());
        // A mount point swapped for a symlink, even to a namespace: not followed.
        let link = dir.join("link");
        std::os::unix::fs::symlink("/proc/self/ns/net", &link).unwrap();
        let path = link.to_str().unwrap();
        let e = pin_facts(proc.as_fd(), PinPath::Mount { pid: me, path }, NsType::Net).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(nix::libc::ELOOP), "{e}");
        // And a FIFO there, with no writer now, is opened O_PATH only: a real open would
        // wait for a writer for ever.
        drop(held);
        let (done, answer) = std::sync::mpsc::channel();
        let path = fifo.to_str().unwrap().to_owned();
        std::thread::spawn(move || {
            let proc = open_dir_at(None, Path::new("/proc")).unwrap();
            let pin = PinPath::Mount {
                pid: me,
                path: &path,
            };
            let _ =
                done.send(pin_facts(proc.as_fd(), pin, NsType::Net).map_err(|e| e.raw_os_error()));
        });
        let e = answer
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("pin_facts blocked on a FIFO")
            .unwrap_err();
        assert_eq!(e, not_a_namespace().raw_os_error());
        // Our own fd of our net namespace: the facts of the namespace.
        let ns = nix::fcntl::open("/proc/self/ns/net", OFlag::O_RDONLY, Mode::empty()).unwrap();
        let pin = PinPath::Fd {
            pid: me,
            fd: ns.as_raw_fd(),
        };
        let facts = pin_facts(proc.as_fd(), pin, NsType::Net).unwrap();
        let direct = open_dir_at(None, Path::new("/proc/self")).unwrap();
        assert_eq!(
            facts,
            ns_facts(direct.as_fd(), c"ns/net", NsType::Net).unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn namespace_links_of_any_type_parse_and_others_do_not() {
        let id = parse_any_ns_link(b"time:[4026531834]").unwrap();
        assert_eq!((id.ns_type, id.inode), (NsType::Time, 4026531834));
        for other in [
            &b"socket:[123]"[..],
            b"pipe:[9]",
            b"anon_inode:[eventpoll]",
            b"/dev/null",
            b"net:[x]",
            b"pid_for_children:[4026531836]",
            b"",
        ] {
            assert_eq!(parse_any_ns_link(other), None, "{other:?}");
        }
    }

    #[test]
    fn whole_files_are_read_up_to_the_cap() {
        let dir = open_dir_at(None, Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        let mut buf = Vec::new();
        let cut = read_all_at(dir.as_fd(), c"Cargo.toml", &mut buf, 1 << 20).unwrap();
        assert!(!cut);
        assert_eq!(buf, std::fs::read("Cargo.toml").unwrap());
        assert!(read_all_at(dir.as_fd(), c"Cargo.toml", &mut buf, 10).unwrap());
        assert_eq!(buf.len(), 10);
    }

    #[test]
    fn btime_is_found_among_other_lines() {
        let stat = b"cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n";
        assert_eq!(parse_btime(stat), Some(1700000000));
        assert_eq!(parse_btime(b"cpu 1\n"), None);
        assert_eq!(parse_btime(b"btime x\n"), None);
    }
}
