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

use crate::model::{ChangeSyscall, Inode, NsChange, NsType, PerType, ProcessId};

#[cfg(feature = "ebpf")]
mod loader;

/// Where the exporter looks for tracefs (it does not mount it: that is the host's choice, and
/// would need CAP_SYS_ADMIN).
pub const TRACEFS: &str = "/sys/kernel/tracing";
/// The kernel's own BTF, which CO-RE relocates against.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

pub use crate::events::{Lost, LostReason};

/// The size of one report (`struct change` in nsevents.bpf.c).
pub const CHANGE_SIZE: usize = 88;

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
    // nsec_to_clock_t, as /proc/PID/stat's starttime.
    let ticks = |ns: u64| (u128::from(ns) * u128::from(ticks_per_second) / 1_000_000_000) as u64;
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
pub const RING_BYTES: usize = 1 << 20;

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
