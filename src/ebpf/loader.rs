//! Loads nsevents.bpf.o with aya, attaches it, and reads its ring buffer on a thread. The
//! namespace-change probes must attach; the task probes may fail alone (an older kernel
//! without one of their tracepoints), and then none of them stays attached.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, Iter, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader, Endianness};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::btf::{self, kind};
use super::mounts::IterLink;
use super::{
    KERNEL_BTF, Lost, LostReason, MountGenerations, Report, Sequences, TRACEFS, Unavailable,
    check_kernel, parse_report,
};
use crate::capabilities::{self, Capability, Raised};
use crate::events::Event;

/// The object build.rs compiled from nsevents.bpf.c.
pub(super) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nsevents.bpf.o"));

/// Each namespace-change program and the syscall tracepoint it runs on.
const PROGRAMS: [(&str, &str); 6] = [
    ("enter_setns", "sys_enter_setns"),
    ("exit_setns", "sys_exit_setns"),
    ("enter_unshare", "sys_enter_unshare"),
    ("exit_unshare", "sys_exit_unshare"),
    ("exit_clone", "sys_exit_clone"),
    ("exit_clone3", "sys_exit_clone3"),
];

/// The task probes on BTF tracepoints (`tp_btf`: the tracepoint's own arguments, the child's
/// task among them, and cheaper than a perf tracepoint's record), each with its tracepoint.
const TASK_BTF: [(&str, &str); 4] = [
    ("task_fork", "sched_process_fork"),
    ("task_exec", "sched_process_exec"),
    ("task_exit", "sched_process_exit"),
    ("task_cgroup", "cgroup_attach_task"),
];

/// What the loader looks up by id in the kernel's BTF: the BTF tracepoints' typedefs and the
/// task iterator's function. Kept at their ids in the copy of the BTF it is given.
pub(super) const KERNEL_IDS: [(&str, u32); 5] = [
    ("btf_trace_sched_process_fork", kind::TYPEDEF),
    ("btf_trace_sched_process_exec", kind::TYPEDEF),
    ("btf_trace_sched_process_exit", kind::TYPEDEF),
    ("btf_trace_cgroup_attach_task", kind::TYPEDEF),
    ("bpf_iter_task", kind::FUNC),
];

/// The task iterator that reads the mount-table generations.
const MOUNT_ITERATOR: &str = "mount_generations";

/// The task probes on syscall tracepoints.
const TASK_SYSCALLS: [(&str, &str); 5] = [
    ("exit_setuid", "sys_exit_setuid"),
    ("exit_setreuid", "sys_exit_setreuid"),
    ("exit_setresuid", "sys_exit_setresuid"),
    ("enter_prctl", "sys_enter_prctl"),
    ("exit_prctl", "sys_exit_prctl"),
];

/// The capabilities loading and attaching need: CAP_BPF for the maps and programs (and BTF),
/// CAP_PERFMON for a tracing program and its perf event. No CAP_SYS_ADMIN.
const NEEDED: [Capability; 2] = [Capability::CAP_BPF, Capability::CAP_PERFMON];

pub(super) fn attach(
    send: SyncSender<Event>,
    ticks_per_second: u64,
    ring_bytes: usize,
) -> Result<super::Attached, Unavailable> {
    for cap in NEEDED {
        if !capabilities::permitted(cap) {
            return Err(format!(
                "missing {cap} (the eBPF source needs CAP_BPF and CAP_PERFMON; no CAP_SYS_ADMIN)"
            ));
        }
    }
    // tracefs is root-only (0700): CAP_DAC_READ_SEARCH, where permitted, searches it. Each is
    // effective only while attaching unless it was already.
    let raised: Vec<Raised> = NEEDED
        .into_iter()
        .chain([Capability::CAP_DAC_READ_SEARCH])
        .map(Raised::raise)
        .collect();
    let loaded = match NEEDED.into_iter().find(|&c| !capabilities::effective(c)) {
        Some(cap) => Err(format!("cannot raise {cap}")),
        None => {
            check_kernel(Path::new(KERNEL_BTF), Path::new(TRACEFS)).and_then(|()| load(ring_bytes))
        }
    };
    // Done with them, whatever happened: the ring buffer is read with neither. CAP_BPF and
    // CAP_PERFMON go from the permitted set too, for good; CAP_DAC_READ_SEARCH stays
    // permitted for the scan thread, which raises it itself.
    drop(raised);
    NEEDED.into_iter().for_each(capabilities::give_up);
    let ((ebpf, ring, lost_map), tasks, mounts) = loaded?;
    let lost = Arc::new(Lost::default());
    let counted = Arc::clone(&lost);
    std::thread::Builder::new()
        .name("ebpf".into())
        .spawn(move || read_changes(ebpf, ring, lost_map, &send, &counted, ticks_per_second))
        .map_err(|e| format!("thread: {e}"))?;
    Ok(super::Attached {
        lost,
        tasks,
        mounts,
    })
}

type Loaded = (Ebpf, RingBuf<MapData>, PerCpuArray<MapData, u64>);

/// Loads the object with a ring of `ring_bytes` (checked by the config), attaches the
/// namespace-change probes, then the task probes if it can (why not, otherwise).
#[allow(clippy::type_complexity)]
fn load(
    ring_bytes: usize,
) -> Result<
    (
        Loaded,
        Result<(), Unavailable>,
        Result<Box<dyn MountGenerations>, Unavailable>,
    ),
    Unavailable,
> {
    let entries = u32::try_from(ring_bytes).map_err(|_| format!("ring of {ring_bytes} bytes"))?;
    // The probes wake the reader once a quarter of the ring waits.
    let wake_at = (ring_bytes / 4) as u64;
    // The loader relocates by /sys/kernel/btf/vmlinux (CO-RE), and the task probes and the
    // iterator find their ids there: a copy cut to what the object reads (btf.rs), parsed
    // once for all of them.
    let btf = kernel_btf()?;
    let mut ebpf = loader_without_kernel_btf()
        .btf(Some(&btf))
        .map_max_entries("CHANGES", entries)
        .override_global("wake_at", &wake_at, true)
        .load(OBJECT)
        .map_err(|e| format!("cannot load the eBPF object: {e}"))?;
    for (name, tracepoint) in PROGRAMS {
        attach_syscall(&mut ebpf, name, tracepoint)?;
    }
    let tasks = attach_tasks(&mut ebpf, &btf);
    if tasks.is_err() {
        // Half the task probes would be worse than none: the scan loop would trust them.
        // Unloading detaches; one that never loaded says so, which is no news.
        for (name, _) in TASK_BTF {
            if let Some(Ok(program)) = ebpf.program_mut(name).map(<&mut BtfTracePoint>::try_from) {
                let _ = program.unload();
            }
        }
        for (name, _) in TASK_SYSCALLS {
            if let Some(Ok(program)) = ebpf.program_mut(name).map(<&mut TracePoint>::try_from) {
                let _ = program.unload();
            }
        }
    }
    let mounts = attach_mounts(&mut ebpf, &btf);
    let ring = RingBuf::try_from(ebpf.take_map("CHANGES").ok_or("no CHANGES map")?)
        .map_err(|e| format!("CHANGES: {e}"))?;
    let lost = PerCpuArray::try_from(ebpf.take_map("LOST").ok_or("no LOST map")?)
        .map_err(|e| format!("LOST: {e}"))?;
    Ok(((ebpf, ring, lost), tasks, mounts))
}

/// The kernel's BTF, cut to what the object reads (btf.rs: the whole, parsed, was most of
/// the exporter's peak memory).
fn kernel_btf() -> Result<Btf, Unavailable> {
    let object = btf::elf_section(OBJECT, ".BTF").ok_or("the eBPF object has no .BTF section")?;
    let wanted = btf::wanted(object).map_err(|e| format!("the eBPF object's BTF: {e}"))?;
    let file = std::fs::File::open(KERNEL_BTF)
        .map_err(|e| format!("cannot read the kernel's BTF ({KERNEL_BTF}): {e}"))?;
    let copy = btf::prune(&file, &wanted, &KERNEL_IDS)
        .map_err(|e| format!("the kernel's BTF ({KERNEL_BTF}): {e}"))?;
    Btf::parse(&copy, Endianness::default())
        .map_err(|e| format!("the kernel's BTF, cut to what the object reads: {e}"))
}

/// An `EbpfLoader` that has not parsed the kernel's whole BTF. `EbpfLoader::new()` (aya
/// 0.14) parses /sys/kernel/btf/vmlinux into memory, some 17 MiB, for `.btf()` to replace
/// (aya-rs/aya#1172), and offers no way not to: it gives up only where the file cannot be
/// opened. So for that call alone no file can be: the soft RLIMIT_NOFILE is set to the
/// lowest free fd, then put back. The loader runs before any other thread of the exporter
/// starts (it drops capabilities that threads would keep), so nothing else opens a file
/// meanwhile; where the limit cannot be set, the loader parses the BTF as aya does.
fn loader_without_kernel_btf<'a>() -> EbpfLoader<'a> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let lowered = getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .and_then(|(soft, hard)| {
            // The lowest free fd is the one the next open gets.
            let free = std::fs::File::open("/dev/null").ok()?.as_raw_fd();
            let free = u64::try_from(free).ok()?;
            setrlimit(Resource::RLIMIT_NOFILE, free, hard)
                .ok()
                .map(|()| (soft, hard))
        });
    let loader = EbpfLoader::new();
    if let Some((soft, hard)) = lowered
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, soft, hard)
    {
        tracing::warn!(error = %e, soft, "cannot restore RLIMIT_NOFILE after loading eBPF");
    }
    loader
}

/// Loads the task iterator and links it: the scan then reads each mount namespace's
/// generation in one pass. Its program's own fd closes with the object; the link keeps it.
fn attach_mounts(ebpf: &mut Ebpf, btf: &Btf) -> Result<Box<dyn MountGenerations>, Unavailable> {
    let program: &mut Iter = ebpf
        .program_mut(MOUNT_ITERATOR)
        .ok_or_else(|| format!("the eBPF object has no program {MOUNT_ITERATOR}"))?
        .try_into()
        .map_err(|e| format!("{MOUNT_ITERATOR}: {e}"))?;
    program.load("task", btf).map_err(|e| {
        format!(
            "cannot load {MOUNT_ITERATOR} for iter/task: {}",
            one_line(&e)
        )
    })?;
    let fd = program.fd().map_err(|e| format!("{MOUNT_ITERATOR}: {e}"))?;
    let link =
        IterLink::new(fd.as_fd()).map_err(|e| format!("cannot link {MOUNT_ITERATOR}: {e}"))?;
    Ok(Box::new(link))
}

fn attach_syscall(ebpf: &mut Ebpf, name: &str, tracepoint: &str) -> Result<(), Unavailable> {
    let program: &mut TracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("the eBPF object has no program {name}"))?
        .try_into()
        .map_err(|e| format!("{name}: {e}"))?;
    program
        .load()
        .map_err(|e| format!("cannot load {name}: {e}"))?;
    program
        .attach("syscalls", tracepoint)
        .map_err(|e| format!("cannot attach to syscalls/{tracepoint}: {e}"))?;
    Ok(())
}

/// An error in one line: aya's load error holds the verifier's whole log, whose last line says
/// why it refused.
fn one_line(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    match (lines.next(), lines.next_back()) {
        (Some(first), Some(last)) => format!("{first} … {last}"),
        (Some(first), None) => first.to_owned(),
        _ => text,
    }
}

fn attach_tasks(ebpf: &mut Ebpf, btf: &Btf) -> Result<(), Unavailable> {
    for (name, tracepoint) in TASK_BTF {
        let program: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("the eBPF object has no program {name}"))?
            .try_into()
            .map_err(|e| format!("{name}: {e}"))?;
        program.load(tracepoint, btf).map_err(|e| {
            format!(
                "cannot load {name} for tp_btf/{tracepoint}: {}",
                one_line(&e)
            )
        })?;
        program
            .attach()
            .map_err(|e| format!("cannot attach to tp_btf/{tracepoint}: {e}"))?;
    }
    for (name, tracepoint) in TASK_SYSCALLS {
        attach_syscall(ebpf, name, tracepoint)?;
    }
    Ok(())
}

/// The reader thread: until the scan loop goes away. The programs stay attached while
/// `_ebpf` lives.
fn read_changes(
    _ebpf: Ebpf,
    mut ring: RingBuf<MapData>,
    lost_map: PerCpuArray<MapData, u64>,
    send: &SyncSender<Event>,
    lost: &Lost,
    ticks_per_second: u64,
) {
    // The probes wake the reader only when a quarter of the ring is waiting (a wakeup per
    // report cost more than the probe itself, docs/performance.md): it looks every 10 ms
    // besides.
    // After a second without reports it looks every 100 ms: a quiet node's reader then wakes
    // ten times a second, not a hundred (a report still waits at most that long).
    let busy = PollTimeout::try_from(Duration::from_millis(10)).unwrap_or(PollTimeout::NONE);
    let idle = PollTimeout::try_from(Duration::from_millis(100)).unwrap_or(PollTimeout::NONE);
    let mut sequences = Sequences::default();
    // The kernel's count of full-ring drops is a system call to read: read after a round that
    // had reports (a full ring is one that had them), and every hundred rounds besides.
    let mut quiet_rounds = 0u32;
    loop {
        {
            let mut fds = [PollFd::new(ring.as_fd(), PollFlags::POLLIN)];
            let wait = if quiet_rounds >= 100 { idle } else { busy };
            if let Err(e) = poll(&mut fds, wait)
                && e != nix::errno::Errno::EINTR
            {
                tracing::warn!(error = %e, "eBPF source stopped; the sweeps go on");
                return;
            }
        }
        let mut reports = false;
        while let Some(report) = ring.next() {
            reports = true;
            let Some(Report { cpu, seq, event }) = parse_report(&report, ticks_per_second) else {
                continue;
            };
            sequences.saw(cpu, seq);
            let Some(event) = event else {
                continue;
            };
            if let Event::Task(task) = &event {
                // Per-pid detail, at debug only (the fork probe reports every process).
                tracing::debug!(
                    kind = task.kind.as_str(),
                    pid = task.process.pid,
                    start_ticks = task.process.start_ticks,
                    parent = task.parent.map_or(0, |p| p.pid),
                    cgroup_id = task.cgroup_id,
                    "task report (eBPF)"
                );
            }
            match send.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => lost.add(LostReason::QueueFull, 1),
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        // Drained: whatever is missing now is lost (Sequences says why not before).
        match sequences.settle() {
            0 => {}
            gaps => lost.add(LostReason::SequenceGap, gaps),
        }
        quiet_rounds = if reports {
            0
        } else {
            quiet_rounds.saturating_add(1)
        };
        if (reports || quiet_rounds.is_multiple_of(100))
            && let Ok(per_cpu) = lost_map.get(&0, 0)
        {
            lost.set(LostReason::RingBufferFull, per_cpu.iter().sum());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_verifier_log_is_said_in_one_line() {
        let log = "the BPF_PROG_LOAD syscall failed. Verifier output: 0: R1=ctx()\n1: (79) r2 = *(u64 *)(r1 +8)\n\nfunc 'sched_process_exit' doesn't have 2-th argument\n";
        assert_eq!(
            one_line(&log),
            "the BPF_PROG_LOAD syscall failed. Verifier output: 0: R1=ctx() … func 'sched_process_exit' doesn't have 2-th argument"
        );
        assert_eq!(one_line(&"no such tracepoint"), "no such tracepoint");
    }
}
