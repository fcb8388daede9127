//! Capabilities: every one the exporter uses, why, and for how long (capabilities(7)).
//!
//! The image's file capabilities make them *permitted*, never effective at exec: with `+ep` the
//! kernel refuses to exec the binary where the pod's bounding set lacks one, whereas this way the
//! exporter starts and counts the reads that fail. Each is made effective where it is used:
//!
//! | capability | for | effective |
//! |---|---|---|
//! | `CAP_SYS_PTRACE` | another user's `/proc/PID/ns/*`, `pidfd_getfd` of a socket | from start, for good |
//! | `CAP_DAC_READ_SEARCH` | another user's `/proc/PID/fd`, the runtimes' 0700 stores and state directories, tracefs | on the reading thread, while a [`Raised`] lives |
//! | `CAP_NET_ADMIN` | the proc connector's group; `SIOCGSKNS` of a socket | from the listener's start; while a [`Raised`] lives for a socket |
//! | `CAP_BPF`, `CAP_PERFMON` | loading and attaching the eBPF source | while attaching; then dropped from the permitted set |
//!
//! Capabilities are per thread: a [`Raised`] raises in the calling thread only, and gives back
//! on drop what it raised, so a name source that raised `CAP_DAC_READ_SEARCH` leaves no other
//! read holding it.

use caps::CapSet;
pub use caps::Capability;

/// Whether `cap` is in this thread's permitted set.
pub fn permitted(cap: Capability) -> bool {
    caps::has_cap(None, CapSet::Permitted, cap).unwrap_or(false)
}

/// Whether `cap` is in this thread's effective set.
pub fn effective(cap: Capability) -> bool {
    caps::has_cap(None, CapSet::Effective, cap).unwrap_or(false)
}

/// Whether this thread can list and read any user's files (CAP_DAC_READ_SEARCH or
/// CAP_DAC_OVERRIDE effective): otherwise another user's `/proc/PID/fd` is EACCES.
pub fn reads_everything() -> bool {
    effective(Capability::CAP_DAC_READ_SEARCH) || effective(Capability::CAP_DAC_OVERRIDE)
}

/// What [`make_effective`] did.
#[derive(Debug)]
pub enum Made {
    /// It was effective already (root, or a pod that granted it effective).
    Already,
    /// It was permitted and is now effective.
    Raised,
    /// It is not permitted: the reads it would allow fail and are counted.
    NotPermitted,
    /// It is permitted, and raising it failed.
    Failed(caps::errors::CapsError),
}

/// Makes `cap` effective in this thread for good, where it is permitted.
pub fn make_effective(cap: Capability) -> Made {
    if effective(cap) {
        Made::Already
    } else if !permitted(cap) {
        Made::NotPermitted
    } else {
        match caps::raise(None, CapSet::Effective, cap) {
            Ok(()) => Made::Raised,
            Err(e) => Made::Failed(e),
        }
    }
}

/// Gives `cap` up in this thread for good: neither effective nor permitted, so no later code
/// can raise it again. Threads started afterwards inherit its absence.
pub fn give_up(cap: Capability) {
    let _ = caps::drop(None, CapSet::Effective, cap);
    let _ = caps::drop(None, CapSet::Permitted, cap);
}

/// `cap` effective in this thread while the value lives, where it is permitted but was not
/// effective; nothing otherwise (root has it already; without it, the reads fail with EACCES or
/// EPERM and are counted).
#[must_use = "the capability is given back when the value is dropped"]
pub struct Raised {
    cap: Capability,
    raised: bool,
}

impl Raised {
    pub fn raise(cap: Capability) -> Raised {
        let raised =
            !effective(cap) && permitted(cap) && caps::raise(None, CapSet::Effective, cap).is_ok();
        Raised { cap, raised }
    }

    /// `CAP_DAC_READ_SEARCH`: read and list any user's files.
    pub fn read_search() -> Raised {
        Raised::raise(Capability::CAP_DAC_READ_SEARCH)
    }

    /// `CAP_NET_ADMIN`: ask a socket for its network namespace.
    pub fn net_admin() -> Raised {
        Raised::raise(Capability::CAP_NET_ADMIN)
    }

    /// Whether the capability is now effective in this thread.
    pub fn held(&self) -> bool {
        effective(self.cap)
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        if self.raised {
            let _ = caps::drop(None, CapSet::Effective, self.cap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread of its own, so that what it does to its capabilities touches no
    /// other test.
    fn on_own_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().expect("the test thread")
    }

    #[test]
    #[ignore = "needs root: a permitted CAP_DAC_READ_SEARCH"]
    fn a_raised_capability_is_given_back_on_drop_and_only_what_was_raised() {
        // Root's effective set already holds everything: take one out of it, keep it
        // permitted, and see the guard raise it and give it back.
        on_own_thread(|| {
            let cap = Capability::CAP_DAC_READ_SEARCH;
            assert!(permitted(cap), "run as root");
            caps::drop(None, CapSet::Effective, cap).unwrap();
            assert!(!effective(cap));
            {
                let guard = Raised::read_search();
                assert!(guard.held());
                assert!(effective(cap));
            }
            assert!(!effective(cap), "the guard gave back what it raised");
            // Already effective: the guard leaves it so.
            caps::raise(None, CapSet::Effective, cap).unwrap();
            drop(Raised::read_search());
            assert!(effective(cap), "the guard took away what it did not raise");
        });
    }

    #[test]
    fn a_capability_given_up_cannot_be_raised_again() {
        on_own_thread(|| {
            let cap = Capability::CAP_PERFMON;
            give_up(cap);
            assert!(!permitted(cap) && !effective(cap));
            assert!(!Raised::raise(cap).held());
            assert!(matches!(make_effective(cap), Made::NotPermitted));
        });
    }
}
