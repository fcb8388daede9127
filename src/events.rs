//! Kernel process events: the proc connector (netlink `NETLINK_CONNECTOR`, group
//! `CN_IDX_PROC`; include/uapi/linux/cn_proc.h) tells a listener of every fork and exec within
//! microseconds, so a process that lives 0.2 s is still read while it runs.
//!
//! The kernel delivers these events only to a listener in the initial user, PID and network
//! namespaces with `CAP_NET_ADMIN`; [`check_placement`] says why not, once, where that is not
//! so, and the exporter keeps its sweep. A flood of events (a fork bomb) never queues without
//! bound: the reader hands pids over a bounded channel and counts what it drops, which the
//! next sweep or scan still sees.
//!
//! The eBPF source (`crate::ebpf`) hands its namespace changes over the same queue, as
//! [`Event::Change`], so that the scan loop waits on one channel and judges both alike.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use nix::sys::socket::{self, MsgFlags, NetlinkAddr};

use crate::model::{Inode, NsChange, PerType, ProcessId};

/// `NETLINK_CONNECTOR` (include/uapi/linux/netlink.h).
const NETLINK_CONNECTOR: i32 = 11;
/// `CN_IDX_PROC`, `CN_VAL_PROC`: the proc connector's id.
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
/// `PROC_CN_MCAST_LISTEN`.
const MCAST_LISTEN: u32 = 1;
/// `PROC_EVENT_FORK`, `PROC_EVENT_EXEC`.
const EVENT_FORK: u32 = 0x1;
const EVENT_EXEC: u32 = 0x2;
/// `NLMSG_DONE`: the type of every connector message.
const NLMSG_DONE: u16 = 3;

/// Sizes of the headers: `struct nlmsghdr` (16), `struct cn_msg` (20).
const NLMSG_HDR: usize = 16;
const CN_MSG_HDR: usize = 20;

label_enum! {
    /// Why a process event was lost before it was judged: the `reason` label of
    /// `nsexporter_proc_events_dropped_total`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum DropReason {
        /// The bounded queue between the reader thread and the scan loop was full.
        QueueFull = "queue_full",
        /// The kernel's socket buffer overflowed (ENOBUFS): one per overrun, each of which
        /// lost an unknown number of events.
        KernelOverrun = "kernel_overrun",
    }
}

label_enum! {
    /// Why a namespace change was lost before it was judged: the `reason` label of
    /// `nsexporter_ebpf_events_lost_total`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum LostReason {
        /// The kernel's ring buffer was full: the exporter read too slowly.
        RingBufferFull = "ring_buffer_full",
        /// The bounded queue between the reader thread and the scan loop was full.
        QueueFull = "queue_full",
        /// Reports missing from a CPU's sequence (the probes number each report they try,
        /// per CPU): each one counted, whatever lost it.
        SequenceGap = "sequence_gap",
    }
}

label_enum! {
    /// What the scheduler's tracepoints saw a process do (the eBPF source's task probes): the
    /// `kind` label of `nsexporter_ebpf_events_total`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum TaskKind {
        /// A new process (`sched_process_fork` of a child that is no thread).
        Fork = "fork",
        /// A process exec'd (`sched_process_exec`): its owner, comm and time namespace may
        /// have changed.
        Exec = "exec",
        /// A process's last thread exited (`sched_process_exit` with `group_dead`).
        Exit = "exit",
        /// Something else the snapshot keeps changed in place: a cgroup move, an owner
        /// (setuid family, `PR_SET_DUMPABLE`), a `comm` (`PR_SET_NAME`). Read again.
        Touched = "touched",
    }
}

/// What the task probes reported of one process: enough to keep a snapshot by events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskEvent {
    pub kind: TaskKind,
    /// The process (tgid, in the initial pid namespace) and its start time.
    pub process: ProcessId,
    /// Its parent process then; `None` for the idle task's children.
    pub parent: Option<ProcessId>,
    /// Its cgroup's id on the unified hierarchy (the cgroup directory's inode); 0 where none.
    pub cgroup_id: u64,
    /// Its namespaces then; `None` where the kernel had none (an exiting task).
    pub namespaces: PerType<Option<Inode>>,
}

/// The eBPF source's changes lost so far, by reason: kept here, below the source, which
/// hands its changes over this module's queue.
#[derive(Debug, Default)]
pub struct Lost([AtomicU64; LostReason::ALL.len()]);

impl Lost {
    pub fn count(&self, reason: LostReason) -> u64 {
        self.0[reason.index()].load(Ordering::Relaxed)
    }

    /// Lost for any reason.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// Sets a total kept elsewhere (the kernel's per-CPU counters, summed).
    #[cfg_attr(not(feature = "ebpf"), allow(dead_code))]
    pub(crate) fn set(&self, reason: LostReason, total: u64) {
        self.0[reason.index()].store(total, Ordering::Relaxed);
    }

    #[cfg_attr(not(feature = "ebpf"), allow(dead_code))]
    pub(crate) fn add(&self, reason: LostReason, n: u64) {
        self.0[reason.index()].fetch_add(n, Ordering::Relaxed);
    }
}

/// Events lost so far, by reason, counted by the reader thread.
#[derive(Debug, Default)]
pub struct Drops([AtomicU64; DropReason::ALL.len()]);

impl Drops {
    pub fn count(&self, reason: DropReason) -> u64 {
        self.0[reason.index()].load(Ordering::Relaxed)
    }

    /// Dropped for any reason.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn add(&self, reason: DropReason, n: u64) {
        self.0[reason.index()].fetch_add(n, Ordering::Relaxed);
    }
}

/// What the kernel told between scans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A process forked or exec'd (the proc connector): read it now.
    Process(i32),
    /// A task's namespaces changed (the eBPF source): judge the change, and read the process.
    Change(Box<NsChange>),
    /// A process forked, exec'd, exited or changed in place (the eBPF source's task probes).
    Task(Box<TaskEvent>),
}

/// The events of every source that listens, as threads of their own read them, and what
/// each lost.
pub struct EventStream {
    pub events: Receiver<Event>,
    /// The proc connector's losses, where it listens.
    pub proc_drops: Option<Arc<Drops>>,
    /// The eBPF source's losses, where it is attached.
    pub ebpf_lost: Option<Arc<Lost>>,
    /// Whether the eBPF source's task probes are attached: then the snapshot can be kept by
    /// events.
    pub ebpf_tasks: bool,
    /// The mount-table generations, where the eBPF source's iterator loaded: the events
    /// mode reads only the mount tables that moved.
    pub mount_generations: Option<Box<dyn MountGenerations>>,
}

/// Each mount namespace's mount-table generation, read from the kernel in one pass (the eBPF
/// source's task iterator): a
/// namespace's `mountinfo` changed since it was read if, and only if, its generation moved.
pub trait MountGenerations: Send + std::fmt::Debug {
    /// Each mount namespace of a task now, by inode, with its generation.
    fn read(&mut self) -> std::io::Result<std::collections::HashMap<u32, u64>>;
}

/// The one bounded queue that every source's reader thread sends into.
pub fn queue() -> (SyncSender<Event>, Receiver<Event>) {
    sync_channel(QUEUE)
}

/// How many events wait between the readers and the scan loop at most: a fork bomb fills it
/// and its further events are dropped (and counted), which the sweeps still see.
pub const QUEUE: usize = 16 * 1024;

/// Subscribes to the proc connector and reads it on a thread of its own, handing pids to
/// `send`. `own` is the exporter's own procfs, `host` the scanned one: the kernel sends
/// events only to a listener in the initial namespaces. Where it cannot listen, says why (for
/// the caller to say once).
pub fn listen(own: &Path, host: &Path, send: SyncSender<Event>) -> Result<Arc<Drops>, String> {
    check_placement(own, host)?;
    let events = ProcEvents::subscribe().map_err(|e| format!("proc connector: {e}"))?;
    let drops = Arc::new(Drops::default());
    let counted = Arc::clone(&drops);
    std::thread::Builder::new()
        .name("events".into())
        .spawn(move || read_events(events, &send, &counted))
        .map_err(|e| format!("thread: {e}"))?;
    Ok(drops)
}

/// The reader thread: until the scan loop goes away or the socket fails.
fn read_events(mut events: ProcEvents, send: &SyncSender<Event>, drops: &Drops) {
    let mut pids = Vec::new();
    loop {
        pids.clear();
        if let Err(e) = events.next(&mut pids) {
            // ENOBUFS: the kernel dropped events for us; the sweeps see those processes.
            if e.raw_os_error() == Some(nix::libc::ENOBUFS) {
                drops.add(DropReason::KernelOverrun, 1);
                continue;
            }
            tracing::warn!(error = %e, "process events stopped; the sweeps go on");
            return;
        }
        for &pid in &pids {
            match send.try_send(Event::Process(pid)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => drops.add(DropReason::QueueFull, 1),
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

/// Why the exporter cannot listen where it runs, if it cannot: it must share the initial
/// PID, user and network namespaces, which are kthreadd's in the host's procfs.
pub fn check_placement(own: &Path, host: &Path) -> Result<(), String> {
    for ns in ["user", "pid", "net"] {
        let mine = std::fs::read_link(own.join("self/ns").join(ns));
        let hosts = std::fs::read_link(host.join("2/ns").join(ns));
        match (mine, hosts) {
            (Ok(a), Ok(b)) if a == b => {}
            (Ok(_), Ok(_)) => {
                return Err(format!(
                    "the exporter is not in the host's {ns} namespace (the kernel sends process events only there)"
                ));
            }
            (Err(e), _) | (_, Err(e)) => {
                return Err(format!("cannot compare {ns} namespaces: {e}"));
            }
        }
    }
    Ok(())
}

/// A subscription to the proc connector.
pub struct ProcEvents {
    fd: OwnedFd,
    buf: Vec<u8>,
}

/// Builds the listen request: nlmsghdr, cn_msg, and the u32 operation.
fn listen_request(pid: u32) -> Vec<u8> {
    let len = NLMSG_HDR + CN_MSG_HDR + 4;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&NLMSG_DONE.to_ne_bytes()); // nlmsg_type
    m.extend_from_slice(&0u16.to_ne_bytes()); // nlmsg_flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq
    m.extend_from_slice(&pid.to_ne_bytes()); // nlmsg_pid
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes()); // cn_msg.id.idx
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes()); // cn_msg.id.val
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // ack
    m.extend_from_slice(&4u16.to_ne_bytes()); // len
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&MCAST_LISTEN.to_ne_bytes());
    m
}

/// The pids that the datagram's fork (the child) and exec events name.
pub fn parse_events(mut datagram: &[u8], out: &mut Vec<i32>) {
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    while datagram.len() >= NLMSG_HDR {
        let Some(len) = u32_at(datagram, 0).map(|l| l as usize) else {
            return;
        };
        if len < NLMSG_HDR || len > datagram.len() {
            return;
        }
        let msg = &datagram[NLMSG_HDR..len];
        // cn_msg, then struct proc_event: what, cpu, timestamp_ns (u64), then the union.
        let event = msg.get(CN_MSG_HDR..).unwrap_or(&[]);
        match u32_at(event, 0) {
            // exec_proc_event { process_pid, process_tgid }
            Some(EVENT_EXEC) => out.extend(u32_at(event, 20).map(|t| t as i32)),
            // fork_proc_event { parent_pid, parent_tgid, child_pid, child_tgid }
            Some(EVENT_FORK) => out.extend(u32_at(event, 28).map(|t| t as i32)),
            _ => {}
        }
        // Messages are aligned to 4 bytes.
        let next = (len + 3) & !3;
        datagram = datagram.get(next..).unwrap_or(&[]);
    }
}

impl ProcEvents {
    /// Opens a connector socket, joins the proc group and asks the kernel to send events.
    pub fn subscribe() -> io::Result<ProcEvents> {
        // nix's SockProtocol has no NETLINK_CONNECTOR: socket(2) itself is called.
        #[allow(unsafe_code)]
        // SAFETY: socket(2) with constant arguments; the fd is owned right away.
        let fd = unsafe {
            nix::libc::socket(
                nix::libc::AF_NETLINK,
                nix::libc::SOCK_DGRAM | nix::libc::SOCK_CLOEXEC,
                NETLINK_CONNECTOR,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        #[allow(unsafe_code)]
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let (raw, nl) = (fd.as_raw_fd(), NetlinkAddr::new(0, CN_IDX_PROC));
        socket::bind(raw, &nl)?;
        socket::send(raw, &listen_request(std::process::id()), MsgFlags::empty())?;
        Ok(ProcEvents {
            fd,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Blocks for the next datagram and appends the pids of its fork and exec events.
    pub fn next(&mut self, out: &mut Vec<i32>) -> io::Result<()> {
        let n = socket::recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty())?;
        parse_events(&self.buf[..n], out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram as the kernel sends it: nlmsghdr, cn_msg, proc_event.
    fn event(what: u32, fields: &[u32]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&what.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes()); // cpu
        body.extend_from_slice(&0u64.to_ne_bytes()); // timestamp
        for f in fields {
            body.extend_from_slice(&f.to_ne_bytes());
        }
        let mut m = listen_request(0);
        m.truncate(NLMSG_HDR + CN_MSG_HDR);
        m.extend_from_slice(&body);
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_ne_bytes());
        while !m.len().is_multiple_of(4) {
            m.push(0);
        }
        m
    }

    #[test]
    fn exec_and_fork_events_name_their_process() {
        let mut datagram = event(EVENT_EXEC, &[41, 40]);
        datagram.extend(event(EVENT_FORK, &[1, 1, 52, 50]));
        datagram.extend(event(0x80000000, &[9, 9, 9])); // exit: not ours
        let mut pids = Vec::new();
        parse_events(&datagram, &mut pids);
        assert_eq!(pids, [40, 50]);
        // Truncated and garbage datagrams give nothing rather than a panic.
        for cut in 0..datagram.len() {
            parse_events(&datagram[..cut], &mut Vec::new());
        }
        parse_events(&[0xff; 64], &mut Vec::new());
    }

    #[test]
    fn placement_is_checked_against_kthreadd() {
        // The test runs on the host, as root: its namespaces are kthreadd's.
        let proc = Path::new("/proc");
        if nix::unistd::geteuid().is_root() {
            assert_eq!(check_placement(proc, proc), Ok(()));
        }
        let err = check_placement(proc, Path::new("/nonexistent")).unwrap_err();
        assert!(err.starts_with("cannot compare user namespaces"), "{err}");
    }
}
