//! The mount-table generations: the task iterator (`iter/task`, bpf_iter(7)... see
//! Documentation/bpf/bpf_iterators.rst) of nsevents.bpf.c, read through a link the loader
//! made. Each read runs the iterator once over every task and returns each mount namespace's
//! inode with its `event` (the generation a poll of mountinfo wakes on). Reading an iterator
//! needs no capability (Linux 6.5 on: only loading and creating maps do).

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::MountGenerations;

/// bpf(2) commands and the iterator's attach type (include/uapi/linux/bpf.h).
const BPF_LINK_CREATE: nix::libc::c_long = 28;
const BPF_ITER_CREATE: nix::libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

/// What the iterator writes per task (`struct mount_generation`).
const RECORD: usize = 16;

/// A link of the iterator program: it keeps the program loaded, and each read makes an
/// iterator of it.
#[derive(Debug)]
pub(super) struct IterLink {
    link: OwnedFd,
    buf: Vec<u8>,
}

/// `bpf(cmd, attr)`: the new fd.
fn bpf(cmd: nix::libc::c_long, attr: &[u32]) -> io::Result<OwnedFd> {
    let size = std::mem::size_of_val(attr);
    #[allow(unsafe_code)]
    // SAFETY: `attr` is a live, initialised buffer of `size` bytes, laid out as the kernel's
    // `union bpf_attr` for `cmd` (its leading u32 fields; the kernel takes the rest as
    // zero), read only during the call, which returns a new fd or -1.
    let r = unsafe { nix::libc::syscall(nix::libc::SYS_bpf, cmd, attr.as_ptr(), size) };
    crate::pidfd::owned(r)
}

impl IterLink {
    /// Links the loaded iterator program `program` over every task.
    pub(super) fn new(program: BorrowedFd<'_>) -> io::Result<IterLink> {
        let prog = u32::try_from(program.as_raw_fd()).map_err(|_| io::ErrorKind::InvalidInput)?;
        // prog_fd, target_fd, attach_type, flags: no iter_info, every task.
        let link = bpf(BPF_LINK_CREATE, &[prog, 0, BPF_TRACE_ITER, 0])?;
        Ok(IterLink {
            link,
            buf: Vec::new(),
        })
    }
}

impl MountGenerations for IterLink {
    fn read(&mut self) -> io::Result<HashMap<u32, u64>> {
        let link = u32::try_from(self.link.as_raw_fd()).map_err(|_| io::ErrorKind::InvalidInput)?;
        let iter = bpf(BPF_ITER_CREATE, &[link, 0])?;
        self.buf.clear();
        std::fs::File::from(iter).read_to_end(&mut self.buf)?;
        Ok(parse(&self.buf))
    }
}

/// The iterator's records: each mount namespace's inode with its generation (the highest
/// read, where tasks of one namespace were read on either side of a change).
pub fn parse(bytes: &[u8]) -> HashMap<u32, u64> {
    let mut out: HashMap<u32, u64> = HashMap::new();
    for record in bytes.chunks_exact(RECORD) {
        let inum = u32::from_ne_bytes(record[..4].try_into().expect("4 bytes"));
        let event = u64::from_ne_bytes(record[8..].try_into().expect("8 bytes"));
        if inum != 0 {
            let e = out.entry(inum).or_insert(event);
            *e = (*e).max(event);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn each_namespace_once_at_its_highest_generation() {
        let mut bytes = Vec::new();
        for (inum, event) in [(7u32, 3u64), (9, 0), (7, 5), (7, 4), (0, 8)] {
            bytes.extend_from_slice(&inum.to_ne_bytes());
            bytes.extend_from_slice(&0u32.to_ne_bytes());
            bytes.extend_from_slice(&event.to_ne_bytes());
        }
        bytes.extend_from_slice(&[1, 2, 3]);
        let read = parse(&bytes);
        assert_eq!(read.len(), 2);
        assert_eq!((read[&7], read[&9]), (5, 0));
    }
}
