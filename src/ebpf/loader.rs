//! Loads nsevents.bpf.o with aya, attaches it, and reads its ring buffer on a thread.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{KERNEL_BTF, Lost, LostReason, TRACEFS, Unavailable, check_kernel, parse_change};
use crate::capabilities::{self, Capability, Raised};
use crate::events::Event;

/// The object build.rs compiled from nsevents.bpf.c.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nsevents.bpf.o"));

/// Each program and the tracepoint it runs on.
const PROGRAMS: [(&str, &str); 6] = [
    ("enter_setns", "sys_enter_setns"),
    ("exit_setns", "sys_exit_setns"),
    ("enter_unshare", "sys_enter_unshare"),
    ("exit_unshare", "sys_exit_unshare"),
    ("exit_clone", "sys_exit_clone"),
    ("exit_clone3", "sys_exit_clone3"),
];

/// The capabilities loading and attaching need: CAP_BPF for the maps and programs (and BTF),
/// CAP_PERFMON for a tracing program and its perf event. No CAP_SYS_ADMIN.
const NEEDED: [Capability; 2] = [Capability::CAP_BPF, Capability::CAP_PERFMON];

pub(super) fn attach(
    send: SyncSender<Event>,
    ticks_per_second: u64,
    _ring_bytes: usize,
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
        None => check_kernel(Path::new(KERNEL_BTF), Path::new(TRACEFS)).and_then(|()| load()),
    };
    // Done with them, whatever happened: the ring buffer is read with neither. CAP_BPF and
    // CAP_PERFMON go from the permitted set too, for good; CAP_DAC_READ_SEARCH stays
    // permitted for the scan thread, which raises it itself.
    drop(raised);
    NEEDED.into_iter().for_each(capabilities::give_up);
    let (ebpf, ring, lost_map) = loaded?;
    let lost = Arc::new(Lost::default());
    let counted = Arc::clone(&lost);
    std::thread::Builder::new()
        .name("ebpf".into())
        .spawn(move || read_changes(ebpf, ring, lost_map, &send, &counted, ticks_per_second))
        .map_err(|e| format!("thread: {e}"))?;
    Ok(super::Attached {
        lost,
        tasks: Err("the task probes are not built yet".into()),
    })
}

type Loaded = (Ebpf, RingBuf<MapData>, PerCpuArray<MapData, u64>);

fn load() -> Result<Loaded, Unavailable> {
    // The loader relocates by /sys/kernel/btf/vmlinux (CO-RE).
    let mut ebpf = EbpfLoader::new()
        .load(OBJECT)
        .map_err(|e| format!("cannot load the eBPF object: {e}"))?;
    for (name, tracepoint) in PROGRAMS {
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
    }
    let ring = RingBuf::try_from(ebpf.take_map("CHANGES").ok_or("no CHANGES map")?)
        .map_err(|e| format!("CHANGES: {e}"))?;
    let lost = PerCpuArray::try_from(ebpf.take_map("LOST").ok_or("no LOST map")?)
        .map_err(|e| format!("LOST: {e}"))?;
    Ok((ebpf, ring, lost))
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
    let wait = PollTimeout::try_from(Duration::from_millis(10)).unwrap_or(PollTimeout::NONE);
    loop {
        {
            let mut fds = [PollFd::new(ring.as_fd(), PollFlags::POLLIN)];
            if let Err(e) = poll(&mut fds, wait)
                && e != nix::errno::Errno::EINTR
            {
                tracing::warn!(error = %e, "eBPF source stopped; the sweeps go on");
                return;
            }
        }
        while let Some(report) = ring.next() {
            let Some(change) = parse_change(&report, ticks_per_second) else {
                continue;
            };
            match send.try_send(Event::Change(Box::new(change))) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => lost.add(LostReason::QueueFull, 1),
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        if let Ok(per_cpu) = lost_map.get(&0, 0) {
            lost.set(LostReason::RingBufferFull, per_cpu.iter().sum());
        }
    }
}
