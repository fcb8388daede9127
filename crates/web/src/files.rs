//! Files the exporter reads besides the procfs, and watches for change: its config file, the
//! web config and the certificates it names, the container engines' and the kubelet's name
//! files. One bounded read and one change stamp serve them all, so that no file, however
//! hostile or careless, costs more than its limit or blocks a read: a FIFO or a device is
//! never read (`O_NONBLOCK`, then `fstat`), and where a symlink is not evidence (a
//! container's own files) it is not followed (`O_NOFOLLOW`).

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Whose file a read takes, and so what it takes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symlinks {
    /// The operator's (a config file, a certificate): followed through symlinks, as a
    /// Kubernetes secret or config map is one.
    Follow,
    /// As `Follow`, and a device or FIFO too, read without blocking within the limit
    /// (`/dev/null` is an empty file, as Go's reader takes it).
    FollowAny,
    /// A file a container or an engine can write: a symlink is not followed, and only a
    /// regular file is read.
    Refuse,
}

/// Why a bounded read refused a file or failed; the caller names the path.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("a symlink, not followed")]
    Symlink,
    #[error("not a regular file")]
    NotRegular,
    #[error("larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
}

/// Reads a regular file of at most `limit` bytes, whole. A FIFO or device is read only where
/// `symlinks` says (and then never blocks: `O_NONBLOCK`), a symlink followed only where it
/// says. A file
/// larger than `limit` is refused by its size before any read, and one that grows past it
/// while read is refused too.
pub fn read_bounded(path: &Path, limit: u64, symlinks: Symlinks) -> Result<Vec<u8>, ReadError> {
    use nix::libc::{ELOOP, O_NOFOLLOW, O_NONBLOCK};
    let flags = match symlinks {
        Symlinks::Follow | Symlinks::FollowAny => O_NONBLOCK,
        Symlinks::Refuse => O_NOFOLLOW | O_NONBLOCK,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(ELOOP) if symlinks == Symlinks::Refuse => ReadError::Symlink,
            _ => ReadError::Io(e),
        })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() && symlinks != Symlinks::FollowAny {
        return Err(ReadError::NotRegular);
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge { limit });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    match Read::take(&file as &File, limit + 1).read_to_end(&mut bytes) {
        // A FIFO with a writer and nothing written yet: what there is.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        read => {
            read?;
        }
    }
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
}

/// What moves when a directory's entries or a file's contents change: device, inode, mtime
/// (seconds and nanoseconds) and size; or why there is none to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    Seen {
        dev: u64,
        ino: u64,
        mtime: i64,
        mtime_nsec: i64,
        size: u64,
    },
    Failed(io::ErrorKind),
}

impl Stamp {
    pub fn of(meta: io::Result<Metadata>) -> Stamp {
        match meta {
            Ok(m) => Stamp::Seen {
                dev: m.dev(),
                ino: m.ino(),
                mtime: m.mtime(),
                mtime_nsec: m.mtime_nsec(),
                size: m.size(),
            },
            Err(e) => Stamp::Failed(e.kind()),
        }
    }
}

impl Stamp {
    /// The stamp of `path`, through symlinks (a swapped secret changes the inode).
    pub fn path(path: &Path) -> Stamp {
        Stamp::of(std::fs::metadata(path))
    }
}

/// Why a YAML file's text was refused before it was parsed.
#[derive(Debug, thiserror::Error)]
pub enum YamlProblem {
    #[error("not UTF-8 (byte {0})")]
    NotUtf8(usize),
    /// The text is not YAML; the message carries the position.
    #[error("{0}")]
    Syntax(#[from] yaml_rust2::ScanError),
    #[error("YAML aliases (*{name}) are not supported (line {line})")]
    Alias { name: String, line: usize },
}

/// Checks that `bytes` are UTF-8 YAML without aliases, in one pass of yaml-rust2's event
/// parser (no tree is built, nothing is expanded). Anchors alone are allowed: only an alias
/// can repeat one. The parser also limits nesting depth, which `config`'s recursive
/// conversion of the tree would otherwise pay for in stack.
pub fn check_yaml(bytes: &[u8]) -> Result<(), YamlProblem> {
    use yaml_rust2::parser::{Event, Parser};
    let text = std::str::from_utf8(bytes).map_err(|e| YamlProblem::NotUtf8(e.valid_up_to()))?;
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token()? {
            (Event::StreamEnd, _) => return Ok(()),
            (Event::Alias(_), mark) => {
                return Err(YamlProblem::Alias {
                    name: alias_name(text, mark.line(), mark.col()),
                    line: mark.line(),
                });
            }
            _ => {}
        }
    }
}

/// The name of the alias at `line` (from 1) and `col` (in chars, from 0), `*name` in the text;
/// the event carries only the anchor's number.
fn alias_name(text: &str, line: usize, col: usize) -> String {
    let at = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let name: String = at
        .chars()
        .skip(col)
        .skip_while(|&c| c == '*')
        .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
        .take(64)
        .collect();
    if name.is_empty() { "?".into() } else { name }
}
