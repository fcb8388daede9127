//! What went wrong in a scan: failed reads counted by reason ([`ScanErrors`]), and whole
//! scans that produced nothing ([`ScanFailure`]).

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;

use crate::model::ProcessId;

label_enum! {
    /// Why part of a scan failed. Vanished processes are not errors and have no reason. The
    /// label value is the `reason` label.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum ErrorReason {
        /// EACCES or EPERM: e.g. another user's process read without CAP_SYS_PTRACE, or a
        /// protected init.
        PermissionDenied = "permission_denied",
        /// The kernel (or a fixture) gave text that does not parse.
        ParseError = "parse_error",
        /// EMFILE or ENFILE: the exporter's or the system's file table is full.
        TooManyOpenFiles = "too_many_open_files",
        /// Any other I/O failure.
        IoError = "io_error",
    }
}

impl ErrorReason {
    pub(crate) fn of_io(e: &io::Error) -> Self {
        match e.raw_os_error() {
            Some(nix::libc::EACCES) | Some(nix::libc::EPERM) => ErrorReason::PermissionDenied,
            Some(nix::libc::EMFILE) | Some(nix::libc::ENFILE) => ErrorReason::TooManyOpenFiles,
            _ => ErrorReason::IoError,
        }
    }
}

/// Failures of one scan, counted by reason, with the first example of each for the log.
#[derive(Clone, Debug, Default)]
pub struct ScanErrors {
    counts: [u64; ErrorReason::ALL.len()],
    first: [Option<String>; ErrorReason::ALL.len()],
    /// The processes whose reads failed, once per process and reason.
    processes: HashSet<ProcessFailure>,
}

/// A process whose reads failed for a reason: where the same one fails the same way scan
/// after scan (a protected init, a process an LSM hides), it is how the node is built, not
/// news.
pub type ProcessFailure = (ProcessId, ErrorReason);

impl ScanErrors {
    pub(crate) fn record(&mut self, reason: ErrorReason, what: impl FnOnce() -> String) {
        let i = reason.index();
        self.counts[i] += 1;
        if self.first[i].is_none() {
            self.first[i] = Some(what());
        }
    }

    /// Records a failure of process `who` (start ticks 0 where its `stat` was not read), once
    /// per process and reason.
    pub(super) fn record_process(
        &mut self,
        who: ProcessId,
        reason: ErrorReason,
        what: impl FnOnce() -> String,
    ) {
        if self.processes.insert((who, reason)) {
            self.record(reason, what);
        }
    }

    /// The processes whose reads failed, with the reason.
    /// A process's failure that a refresh did not read again: it stands, as a walk would
    /// find it again.
    pub(super) fn carry(&mut self, who: ProcessId, reason: ErrorReason) {
        self.record_process(who, reason, || {
            format!("pid {}: as the last read of it found", who.pid)
        });
    }

    pub fn processes(&self) -> &HashSet<ProcessFailure> {
        &self.processes
    }

    pub fn count(&self, reason: ErrorReason) -> u64 {
        self.counts[reason.index()]
    }

    /// By reason, the processes that failed the same way in the scan before, whose failures
    /// were `before`: standing, counted when they began and not every scan since.
    pub fn standing(&self, before: &HashSet<ProcessFailure>) -> [u64; ErrorReason::ALL.len()] {
        let mut standing = [0; ErrorReason::ALL.len()];
        for (_, reason) in self.processes.intersection(before) {
            standing[reason.index()] += 1;
        }
        standing
    }

    /// The first failure of that reason in this scan, as "path: error".
    pub fn first(&self, reason: ErrorReason) -> Option<&str> {
        self.first[reason.index()].as_deref()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

label_enum! {
    /// Why a whole scan failed: the exporter then serves `nsexporter_scan_success 0`. The label
    /// value is the `reason` label.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum FailureReason {
        /// The procfs root is gone or is not a directory (ENOENT, ENOTDIR): an unmounted or
        /// removed `--path.procfs`.
        ProcfsUnavailable = "procfs_unavailable",
        /// The root could be listed but held no readable process.
        NoProcesses = "no_processes",
        /// EMFILE or ENFILE while opening the root.
        TooManyOpenFiles = "too_many_open_files",
        /// EACCES or EPERM on the root.
        PermissionDenied = "permission_denied",
        /// Any other failure to list the root.
        IoError = "io_error",
    }
}

/// A scan that produced no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum ScanFailure {
    #[error("{path}: cannot list the procfs: {source}")]
    Root { path: PathBuf, source: io::Error },
    #[error("{path}: no process could be read{}", first_error(errors))]
    NoProcesses {
        path: PathBuf,
        errors: Box<ScanErrors>,
    },
}

/// ": " and the first failure of the most telling reason, if any.
fn first_error(errors: &ScanErrors) -> String {
    use ErrorReason::*;
    [TooManyOpenFiles, PermissionDenied, IoError, ParseError]
        .into_iter()
        .find_map(|r| errors.first(r))
        .map(|f| format!(" ({f})"))
        .unwrap_or_default()
}

impl ScanFailure {
    pub fn reason(&self) -> FailureReason {
        match self {
            // Every process failed for a reason: the reason is why the scan failed. A full fd
            // table fails each openat of a pid directory, not the root.
            ScanFailure::NoProcesses { errors, .. } => {
                if errors.count(ErrorReason::TooManyOpenFiles) > 0 {
                    FailureReason::TooManyOpenFiles
                } else if errors.count(ErrorReason::PermissionDenied) > 0 {
                    FailureReason::PermissionDenied
                } else {
                    FailureReason::NoProcesses
                }
            }
            ScanFailure::Root { source, .. } => match source.raw_os_error() {
                Some(nix::libc::ENOENT) | Some(nix::libc::ENOTDIR) | Some(nix::libc::ENODEV) => {
                    FailureReason::ProcfsUnavailable
                }
                _ => match ErrorReason::of_io(source) {
                    ErrorReason::TooManyOpenFiles => FailureReason::TooManyOpenFiles,
                    ErrorReason::PermissionDenied => FailureReason::PermissionDenied,
                    _ => FailureReason::IoError,
                },
            },
        }
    }
}
