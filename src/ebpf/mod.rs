//! The eBPF source (`--scan.ebpf`): every successful namespace change of any task, reported by
//! the kernel as it happens, so that a stay in a host namespace shorter than any sweep is
//! still judged.
//!
//! `nsevents.bpf.c` runs on the syscall tracepoints of setns(2), unshare(2), clone(2) and
//! clone3(2) (no kprobes), reads the task's namespaces with CO-RE (`task->nsproxy->net_ns->
//! ns.inum` and so on, relocated by the kernel's BTF at load) and reports each change through a
//! ring buffer. A reader thread hands the changes to the scan loop over the same bounded queue
//! as the proc connector's events ([`crate::events::Event::Change`]). Losses are counted,
//! never queued: a full ring buffer in the kernel, a full queue in the exporter.
//!
//! Built only with the `ebpf` cargo feature (it needs clang at build time); without it,
//! [`attach`] says so. Needs, at run time: the kernel's BTF (`/sys/kernel/btf/vmlinux`),
//! tracefs at `/sys/kernel/tracing` (the tracepoints' ids), `CAP_BPF` and `CAP_PERFMON` (raised
//! only while loading and attaching, then dropped), and no `CAP_SYS_ADMIN`. Where one is
//! missing, [`attach`] says which, in one line, and the sweeps go on. The kernel's pids are
//! the initial pid namespace's: the scanned procfs must be the host's.

use std::path::Path;

use crate::events::{Event, TaskEvent, TaskKind};
use crate::model::{ChangeSyscall, Inode, NsChange, NsType, PerType, ProcessId};

#[cfg(feature = "ebpf")]
mod btf;
#[cfg(feature = "ebpf")]
mod loader;
#[cfg(feature = "ebpf")]
mod mounts;

/// Where the exporter looks for tracefs (it does not mount it: that is the host's choice, and
/// would need CAP_SYS_ADMIN).
pub const TRACEFS: &str = "/sys/kernel/tracing";
/// The kernel's own BTF, which CO-RE relocates against.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

pub use crate::events::{Lost, LostReason, MountGenerations};

/// The size of the header every report opens with (`struct header` in nsevents.bpf.c): its
/// kind, the CPU whose probe wrote it and that CPU's number for it.
pub const HEADER_SIZE: usize = 16;
/// The size of a namespace change after the header (`struct change`).
pub const CHANGE_SIZE: usize = 88;
/// The size of a task probe's report after the header (`struct task`).
pub const TASK_SIZE: usize = 64;

/// One report as the ring buffer holds it: its place in its CPU's sequence, and what it said
/// (`None` where the kind is unknown or the body cut short: it still counts as received).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub cpu: u32,
    /// The CPU's number for the report; 1 for the first a CPU tried, never 0.
    pub seq: u64,
    pub event: Option<Event>,
}

/// A report with its header (`struct header`, then `struct change` or `struct task` by the
/// header's kind); `None` where even the header is cut short.
pub fn parse_report(report: &[u8], ticks_per_second: u64) -> Option<Report> {
    let header = report.get(..HEADER_SIZE)?;
    let kind = u32::from_ne_bytes(header[0..4].try_into().unwrap());
    let body = &report[HEADER_SIZE..];
    let task = |kind| parse_task(kind, body, ticks_per_second).map(|t| Event::Task(Box::new(t)));
    let event = match kind {
        1 => parse_change(body, ticks_per_second).map(|c| Event::Change(Box::new(c))),
        2 => task(TaskKind::Fork),
        3 => task(TaskKind::Exec),
        4 => task(TaskKind::Exit),
        5 => task(TaskKind::Touched),
        _ => None,
    };
    Some(Report {
        cpu: u32::from_ne_bytes(header[4..8].try_into().unwrap()),
        seq: u64::from_ne_bytes(header[8..16].try_into().unwrap()),
        event,
    })
}

/// nsec_to_clock_t, as /proc/PID/stat's starttime.
fn ticks(ns: u64, ticks_per_second: u64) -> u64 {
    (u128::from(ns) * u128::from(ticks_per_second) / 1_000_000_000) as u64
}

/// The body of a task probe's report (`struct task`): tgid, the parent's tgid, the
/// process's and the parent's start_boottime (ns), the cgroup id on the unified hierarchy, and
/// the eight types' inodes (0 where unknown).
pub fn parse_task(kind: TaskKind, body: &[u8], ticks_per_second: u64) -> Option<TaskEvent> {
    let body = body.get(..TASK_SIZE)?;
    let u32_at = |at: usize| u32::from_ne_bytes(body[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_ne_bytes(body[at..at + 8].try_into().unwrap());
    let mut namespaces = PerType::splat(None);
    for (i, t) in NsType::ALL.into_iter().enumerate() {
        namespaces[t] = Inode::new(u32_at(32 + 4 * i));
    }
    Some(TaskEvent {
        kind,
        process: ProcessId {
            pid: i32::try_from(u32_at(0)).ok().filter(|&pid| pid > 0)?,
            start_ticks: ticks(u64_at(8), ticks_per_second),
        },
        // 0: the idle task's children (init, kthreadd) have no parent process.
        parent: i32::try_from(u32_at(4))
            .ok()
            .filter(|&pid| pid > 0)
            .map(|pid| ProcessId {
                pid,
                start_ticks: ticks(u64_at(16), ticks_per_second),
            }),
        cgroup_id: u64_at(24),
        namespaces,
    })
}

/// The CPUs' sequences as the reader saw them, which tell every report lost, wherever: the
/// probes number each report they try per CPU, from 1, whether the ring takes it or not.
///
/// Reports of one CPU may leave the ring out of their order, but only within what one drain
/// of the ring reads (nsevents.bpf.c's `reserve` says why): so the reader notes each report
/// with [`Sequences::saw`] and, once the ring is empty, counts the numbers missing below the
/// highest with [`Sequences::settle`]. u64 numbers do not wrap.
#[derive(Debug, Default)]
pub struct Sequences {
    cpus: Vec<CpuSequence>,
}

#[derive(Clone, Copy, Debug, Default)]
struct CpuSequence {
    /// Every number up to this one was received or counted lost.
    settled: u64,
    /// The highest above `settled` received since, and how many above it were.
    highest: u64,
    received: u64,
}

/// More CPUs than the kernel's NR_CPUS can be: a report that names one is not believed.
const MAX_CPUS: usize = 1 << 13;

impl Sequences {
    /// Notes a report that arrived.
    pub fn saw(&mut self, cpu: u32, seq: u64) {
        let cpu = cpu as usize;
        if cpu >= MAX_CPUS || seq == 0 {
            return;
        }
        if self.cpus.len() <= cpu {
            self.cpus.resize(cpu + 1, CpuSequence::default());
        }
        let c = &mut self.cpus[cpu];
        // At or below `settled`: counted lost already (a probe that shared its number).
        if seq > c.settled {
            c.received += 1;
            c.highest = c.highest.max(seq);
        }
    }

    /// How many reports went missing since the last call: the numbers below each CPU's
    /// highest that did not arrive.
    pub fn settle(&mut self) -> u64 {
        let mut lost = 0;
        for c in &mut self.cpus {
            if c.highest > c.settled {
                lost += (c.highest - c.settled).saturating_sub(c.received);
                c.settled = c.highest;
            }
            c.received = 0;
        }
        lost
    }
}

/// Why `scan.ebpf-ring-buffer` cannot be `bytes`: the kernel takes a ring buffer of a power of
/// two pages only.
pub fn check_ring_bytes(bytes: usize) -> Result<usize, String> {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize);
    if !bytes.is_power_of_two() || !bytes.is_multiple_of(page) {
        return Err(format!(
            "{bytes} is not a power of two and a multiple of the page size ({page} bytes)"
        ));
    }
    // The kernel's limit (its max_entries is a u32, and it refuses more than 2^32 - 1 pages).
    if u32::try_from(bytes).is_err() {
        return Err(format!(
            "{bytes} is more than the kernel's ring buffers hold"
        ));
    }
    Ok(bytes)
}

/// A report of `struct change`, in the byte order the kernel wrote it: tgid, tid,
/// start_boottime (ns), syscall, changed (bit i: the i-th type of [`NsType::ALL`]), the eight
/// types' inodes after the change (0 where unknown), comm, the parent's tgid and start_boottime (ns).
/// `ticks_per_second` turns the start into `/proc/PID/stat`'s ticks.
pub fn parse_change(report: &[u8], ticks_per_second: u64) -> Option<NsChange> {
    let report = report.get(..CHANGE_SIZE)?;
    let u32_at = |at: usize| u32::from_ne_bytes(report[at..at + 4].try_into().unwrap());
    let start_ns = u64::from_ne_bytes(report[8..16].try_into().unwrap());
    let syscall = match u32_at(16) {
        1 => ChangeSyscall::Setns,
        2 => ChangeSyscall::Unshare,
        3 => ChangeSyscall::Clone,
        4 => ChangeSyscall::Clone3,
        _ => return None,
    };
    let bits = u32_at(20);
    let mut changed = PerType::splat(false);
    let mut namespaces = PerType::splat(None);
    for (i, t) in NsType::ALL.into_iter().enumerate() {
        changed[t] = bits & (1 << i) != 0;
        namespaces[t] = Inode::new(u32_at(24 + 4 * i));
    }
    let comm = &report[56..72];
    let comm = &comm[..comm.iter().position(|&b| b == 0).unwrap_or(comm.len())];
    let ticks = |ns: u64| ticks(ns, ticks_per_second);
    let parent_start_ns = u64::from_ne_bytes(report[80..88].try_into().unwrap());
    Some(NsChange {
        process: ProcessId {
            pid: i32::try_from(u32_at(0)).ok()?,
            start_ticks: ticks(start_ns),
        },
        // 0: the idle task's child (init, kthreadd) has no parent process.
        parent: i32::try_from(u32_at(72))
            .ok()
            .filter(|&pid| pid > 0)
            .map(|pid| ProcessId {
                pid,
                start_ticks: ticks(parent_start_ns),
            }),
        tid: i32::try_from(u32_at(4)).ok()?,
        syscall,
        changed,
        namespaces,
        comm: String::from_utf8_lossy(comm).into_owned(),
    })
}

/// What [`attach`] found missing, in one line.
pub type Unavailable = String;

/// Why the eBPF source cannot run here, before anything is loaded: the kernel's BTF, tracefs
/// and the syscall tracepoints, checked in that order. `tracefs` is normally [`TRACEFS`].
pub fn check_kernel(btf: &Path, tracefs: &Path) -> Result<(), Unavailable> {
    if !btf.exists() {
        return Err(format!(
            "no kernel BTF at {} (the kernel needs CONFIG_DEBUG_INFO_BTF for CO-RE)",
            btf.display()
        ));
    }
    // An empty directory where tracefs is not mounted; a root-only one that the exporter
    // cannot search without CAP_DAC_READ_SEARCH shows as empty too.
    let mounted = std::fs::read_dir(tracefs).is_ok_and(|mut d| d.next().is_some());
    if !mounted {
        return Err(format!(
            "tracefs is not mounted at {} (or not searchable): the tracepoints' ids are read there; mount it on the host (mount -t tracefs nodev {0}) and into the pod",
            tracefs.display()
        ));
    }
    let exit_setns = tracefs.join("events/syscalls/sys_exit_setns/id");
    if !exit_setns.exists() {
        return Err(format!(
            "no syscall tracepoints ({} is missing: the kernel needs CONFIG_FTRACE_SYSCALLS)",
            exit_setns.display()
        ));
    }
    Ok(())
}

/// What [`attach`] attached.
#[derive(Debug)]
pub struct Attached {
    /// The losses' counters, which the reader thread keeps.
    pub lost: std::sync::Arc<Lost>,
    /// Whether the task probes (the scheduler's tracepoints) attached too; where they did
    /// not, why in one line. Without them the namespace changes still come, and the scan
    /// loop keeps polling.
    pub tasks: Result<(), Unavailable>,
    /// The mount-table generations (the task iterator), where it loaded; why not otherwise.
    pub mounts: Result<Box<dyn MountGenerations>, Unavailable>,
}

/// Loads and attaches the programs, and reads their reports on a thread of their own, which
/// sends them to `send`. `ring_bytes` is the ring buffer's size. Where it cannot, says why in
/// one line (for the caller to say once).
#[cfg(feature = "ebpf")]
pub fn attach(
    send: std::sync::mpsc::SyncSender<crate::events::Event>,
    ticks_per_second: u64,
    ring_bytes: usize,
) -> Result<Attached, Unavailable> {
    loader::attach(send, ticks_per_second, ring_bytes)
}

/// Without the `ebpf` feature: says so.
#[cfg(not(feature = "ebpf"))]
pub fn attach(
    _send: std::sync::mpsc::SyncSender<crate::events::Event>,
    _ticks_per_second: u64,
    _ring_bytes: usize,
) -> Result<Attached, Unavailable> {
    Err(BUILT_WITHOUT.into())
}

/// The ring buffer's size where none is configured.
pub const RING_BYTES: usize = 1 << 18;

/// Whether this build has the eBPF source.
pub const BUILT: bool = cfg!(feature = "ebpf");

/// What a build without the `ebpf` feature says to `--scan.ebpf=true`.
pub const BUILT_WITHOUT: &str = "this nsexporter was built without the ebpf feature (cargo build --features ebpf; the container image has it)";

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as nsevents.bpf.c writes it.
    fn report(
        tgid: u32,
        tid: u32,
        start_ns: u64,
        syscall: u32,
        changed: u32,
        comm: &[u8],
    ) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&tgid.to_ne_bytes());
        r.extend_from_slice(&tid.to_ne_bytes());
        r.extend_from_slice(&start_ns.to_ne_bytes());
        r.extend_from_slice(&syscall.to_ne_bytes());
        r.extend_from_slice(&changed.to_ne_bytes());
        for i in 0..8u32 {
            r.extend_from_slice(&(4026531835 + i).to_ne_bytes());
        }
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm);
        r.extend_from_slice(&c);
        r.extend_from_slice(&(tgid / 2).to_ne_bytes());
        r.extend_from_slice(&0u32.to_ne_bytes());
        r.extend_from_slice(&(start_ns / 2).to_ne_bytes());
        assert_eq!(r.len(), CHANGE_SIZE);
        r
    }

    #[test]
    fn a_report_names_the_task_and_what_it_entered() {
        // net (bit 3) and user (bit 6), by setns, 12.345 s after boot.
        let r = report(4242, 4243, 12_345_000_000, 1, 0b0100_1000, b"python3");
        let c = parse_change(&r, 100).unwrap();
        assert_eq!(
            c.process,
            ProcessId {
                pid: 4242,
                start_ticks: 1234
            }
        );
        assert_eq!(c.tid, 4243);
        let parent = ProcessId {
            pid: 2121,
            start_ticks: 617,
        };
        assert_eq!(c.parent, Some(parent));
        assert_eq!(c.syscall, ChangeSyscall::Setns);
        assert_eq!(c.comm, "python3");
        let entered: Vec<_> = c.entered().map(|id| (id.ns_type, id.inode)).collect();
        assert_eq!(
            entered,
            [(NsType::Net, 4026531838), (NsType::User, 4026531841)]
        );
        // A full 16-byte comm has no NUL.
        let c = parse_change(&report(1, 1, 0, 4, 0, b"0123456789abcdef"), 100).unwrap();
        assert_eq!(c.comm, "0123456789abcdef");
        assert_eq!(c.parent, None, "init's parent is no process");
        assert_eq!(c.syscall, ChangeSyscall::Clone3);
    }

    #[test]
    fn short_and_unknown_reports_give_nothing() {
        let r = report(1, 1, 0, 2, 1, b"x");
        for cut in 0..CHANGE_SIZE {
            assert_eq!(parse_change(&r[..cut], 100), None);
        }
        assert_eq!(parse_change(&report(1, 1, 0, 9, 1, b"x"), 100), None);
        // A pid beyond i32 is no pid.
        assert_eq!(parse_change(&report(u32::MAX, 1, 0, 1, 1, b"x"), 100), None);
    }

    /// A header as nsevents.bpf.c's `reserve` writes it, then `body`.
    fn with_header(kind: u32, cpu: u32, seq: u64, body: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&kind.to_ne_bytes());
        r.extend_from_slice(&cpu.to_ne_bytes());
        r.extend_from_slice(&seq.to_ne_bytes());
        assert_eq!(r.len(), HEADER_SIZE);
        r.extend_from_slice(body);
        r
    }

    /// A `struct task`: pid 4242 (started 12.345 s after boot), parent 2121 (at 6.1725 s),
    /// in cgroup 7777, with the eight inodes of [`report`] but the time namespace's unknown.
    fn task() -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&4242u32.to_ne_bytes());
        t.extend_from_slice(&2121u32.to_ne_bytes());
        t.extend_from_slice(&12_345_000_000u64.to_ne_bytes());
        t.extend_from_slice(&6_172_500_000u64.to_ne_bytes());
        t.extend_from_slice(&7777u64.to_ne_bytes());
        for i in 0..8u32 {
            let inode = if i == 5 { 0 } else { 4026531835 + i };
            t.extend_from_slice(&inode.to_ne_bytes());
        }
        assert_eq!(t.len(), TASK_SIZE);
        t
    }

    #[test]
    fn a_task_report_names_the_process_its_parent_cgroup_and_namespaces() {
        for (kind, want) in [
            (2, TaskKind::Fork),
            (3, TaskKind::Exec),
            (4, TaskKind::Exit),
            (5, TaskKind::Touched),
        ] {
            let r = parse_report(&with_header(kind, 3, 17, &task()), 100).unwrap();
            assert_eq!((r.cpu, r.seq), (3, 17));
            let Some(Event::Task(t)) = r.event else {
                panic!("{r:?}")
            };
            assert_eq!(t.kind, want);
            assert_eq!(
                t.process,
                ProcessId {
                    pid: 4242,
                    start_ticks: 1234
                }
            );
            assert_eq!(
                t.parent,
                Some(ProcessId {
                    pid: 2121,
                    start_ticks: 617
                })
            );
            assert_eq!(t.cgroup_id, 7777);
            assert_eq!(t.namespaces[NsType::Net], Inode::new(4026531838));
            assert_eq!(t.namespaces[NsType::Time], None);
        }
        // A change behind its header is the change parse_change reads.
        let change = report(4242, 4243, 12_345_000_000, 1, 0b1000, b"ip");
        let r = parse_report(&with_header(1, 0, 1, &change), 100).unwrap();
        assert_eq!(
            r.event,
            Some(Event::Change(Box::new(parse_change(&change, 100).unwrap())))
        );
    }

    #[test]
    fn cut_and_unknown_reports_still_count_in_their_sequence() {
        let whole = with_header(2, 1, 9, &task());
        for cut in 0..HEADER_SIZE {
            assert_eq!(parse_report(&whole[..cut], 100), None);
        }
        // With the header whole, the report arrived: its number counts, its body does not.
        for cut in HEADER_SIZE..whole.len() {
            let r = parse_report(&whole[..cut], 100).unwrap();
            assert_eq!((r.cpu, r.seq, r.event), (1, 9, None));
        }
        for kind in [0, 6, u32::MAX] {
            let r = parse_report(&with_header(kind, 1, 10, &task()), 100).unwrap();
            assert_eq!((r.seq, r.event), (10, None));
        }
        // No pid 0 or beyond i32.
        let mut t = task();
        t[..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(parse_task(TaskKind::Exit, &t, 100), None);
        t[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(parse_task(TaskKind::Exit, &t, 100), None);
        // The idle task's children have no parent.
        let mut t = task();
        t[4..8].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(parse_task(TaskKind::Fork, &t, 100).unwrap().parent, None);
    }

    #[test]
    fn a_gap_in_a_cpus_sequence_counts_each_report_missing() {
        let mut s = Sequences::default();
        // Nothing seen: nothing lost.
        assert_eq!(s.settle(), 0);
        for seq in 1..=5 {
            s.saw(0, seq);
        }
        // CPU 2's first report is its 3rd: two were lost before the reader saw any.
        s.saw(2, 3);
        assert_eq!(s.settle(), 2);
        // 6 and 7 missing on CPU 0; CPU 2 goes on whole.
        s.saw(0, 8);
        s.saw(2, 4);
        assert_eq!(s.settle(), 2);
        // Out of order within one drain (a probe still writing held the reader back): none.
        for seq in [10, 9, 11] {
            s.saw(0, seq);
        }
        assert_eq!(s.settle(), 0);
        // A number at or below the settled one (two probes shared it) counts neither way.
        s.saw(0, 11);
        s.saw(0, 5);
        assert_eq!(s.settle(), 0);
        // Two shared numbers in one drain: never a negative loss.
        s.saw(0, 12);
        s.saw(0, 12);
        assert_eq!(s.settle(), 0);
        s.saw(0, 14);
        assert_eq!(s.settle(), 1);
        // Unnumbered (0) and impossible CPUs are not believed; u64 numbers go on without wrap.
        s.saw(0, 0);
        s.saw(u32::MAX, 1 << 40);
        assert_eq!(s.settle(), 0);
        s.saw(1, u64::MAX);
        assert_eq!(s.settle(), u64::MAX - 1);
    }

    #[test]
    fn the_ring_is_a_power_of_two_pages() {
        assert_eq!(check_ring_bytes(RING_BYTES), Ok(RING_BYTES));
        assert_eq!(check_ring_bytes(4096), Ok(4096));
        assert_eq!(check_ring_bytes(1 << 31), Ok(1 << 31));
        for bad in [0, 1, 2048, 4096 * 3, 1_000_000] {
            let e = check_ring_bytes(bad).unwrap_err();
            assert!(
                e.contains("not a power of two and a multiple of the page size"),
                "{e}"
            );
        }
        assert!(check_ring_bytes(1 << 32).is_err());
    }

    #[test]
    fn the_kernel_check_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let btf = dir.path().join("vmlinux");
        let tracefs = dir.path().join("tracing");
        std::fs::create_dir(&tracefs).unwrap();
        let e = check_kernel(&btf, &tracefs).unwrap_err();
        assert!(e.starts_with("no kernel BTF at "), "{e}");
        std::fs::write(&btf, b"").unwrap();
        let e = check_kernel(&btf, &tracefs).unwrap_err();
        assert!(e.starts_with("tracefs is not mounted at "), "{e}");
        std::fs::create_dir_all(tracefs.join("events/syscalls")).unwrap();
        let e = check_kernel(&btf, &tracefs).unwrap_err();
        assert!(e.starts_with("no syscall tracepoints "), "{e}");
        std::fs::create_dir_all(tracefs.join("events/syscalls/sys_exit_setns")).unwrap();
        std::fs::write(tracefs.join("events/syscalls/sys_exit_setns/id"), b"1\n").unwrap();
        assert_eq!(check_kernel(&btf, &tracefs), Ok(()));
    }
}
