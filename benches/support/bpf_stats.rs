//! kernel.bpf_stats_enabled for the eBPF benches, which read the programs' run time.

/// Sets kernel.bpf_stats_enabled while it lives, and puts back what was there.
pub struct BpfStats(String);

impl BpfStats {
    const PATH: &str = "/proc/sys/kernel/bpf_stats_enabled";

    pub fn enable() -> BpfStats {
        let was = std::fs::read_to_string(Self::PATH).unwrap_or_else(|_| "0".into());
        std::fs::write(Self::PATH, "1").expect("enable kernel.bpf_stats_enabled");
        BpfStats(was)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, self.0.trim());
    }
}
