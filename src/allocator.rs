//! glibc's allocator set up for a process whose memory comes and goes with each scan
//! (mallopt(3), malloc_trim(3)): a node agent should sit at its working set between scans,
//! not at the peak of its largest scan. What it gains is measured in docs/performance.md.

/// Hands the scan's freed temporaries (the gathered metric families, the previous snapshot)
/// back to the kernel. glibc keeps freed memory in its arenas, so without this the resident
/// size stays at the peak of the largest scan. See [`tune_malloc`] for why that needs one
/// arena.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // glibc's malloc_trim has no safe wrapper, and nothing else returns the arenas' memory.
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Sets glibc's allocator up for a process whose memory comes and goes with each scan; call
/// it before any thread starts.
///
/// - One arena for every thread: the scan thread would otherwise get an arena of its own, and
///   `malloc_trim` leaves the free top of such an arena alone (only free() releases it, past a
///   threshold that grows with the largest buffer freed), so some scans left memory resident
///   that the trim did not return. The scan loop and the HTTP thread allocate little at
///   once, so they hardly contend.
/// - Blocks of 64 KiB and more mapped on their own (`M_MMAP_THRESHOLD`, which glibc otherwise
///   raises to the largest block freed, up to 32 MiB): the snapshot's tables and the process
///   list then go back to the kernel when freed, rather than leave holes in the heap that
///   count as resident until the trim, for a few hundred page faults a scan.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // mallopt has no safe wrapper.
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets the allocator's own parameters; called before any other
    // thread exists, it races with no allocation.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}
