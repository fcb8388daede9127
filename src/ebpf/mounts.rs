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
}

/// What is read of the iterator at once: its records are parsed a chunk at a time, not kept
/// whole (16 bytes a process: 160 KB at 10,000).
const CHUNK: usize = 16 * 1024;

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
        Ok(IterLink { link })
    }
}

impl MountGenerations for IterLink {
    fn read(&mut self) -> io::Result<HashMap<u32, u64>> {
        let link = u32::try_from(self.link.as_raw_fd()).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut iter = std::fs::File::from(bpf(BPF_ITER_CREATE, &[link, 0])?);
        let mut out = HashMap::new();
        let mut chunk = [0u8; CHUNK];
        // Bytes of a record cut at the chunk's end, kept for the next read.
        let mut held = 0;
        loop {
            let n = match iter.read(&mut chunk[held..]) {
                Ok(0) => return Ok(out),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let have = held + n;
            let whole = have - have % RECORD;
            parse_into(&chunk[..whole], &mut out);
            chunk.copy_within(whole..have, 0);
            held = have - whole;
        }
    }
}

/// Adds the iterator's records to `out`: each mount namespace's inode with its generation
/// (the highest read, where tasks of one namespace were read on either side of a change).
fn parse_into(bytes: &[u8], out: &mut HashMap<u32, u64>) {
    for record in bytes.chunks_exact(RECORD) {
        let inum = u32::from_ne_bytes(record[..4].try_into().expect("4 bytes"));
        let event = u64::from_ne_bytes(record[8..].try_into().expect("8 bytes"));
        if inum != 0 {
            let e = out.entry(inum).or_insert(event);
            *e = (*e).max(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_into;

    #[test]
    fn each_namespace_once_at_its_highest_generation() {
        let mut bytes = Vec::new();
        for (inum, event) in [(7u32, 3u64), (9, 0), (7, 5), (7, 4), (0, 8)] {
            bytes.extend_from_slice(&inum.to_ne_bytes());
            bytes.extend_from_slice(&0u32.to_ne_bytes());
            bytes.extend_from_slice(&event.to_ne_bytes());
        }
        bytes.extend_from_slice(&[1, 2, 3]);
        let mut read = std::collections::HashMap::new();
        parse_into(&bytes, &mut read);
        assert_eq!(read.len(), 2);
        assert_eq!((read[&7], read[&9]), (5, 0));
    }
}
