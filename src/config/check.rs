//! The keys whose value is more than its parse: each function parses a key's text with
//! [`super::value`] and checks what a type cannot say (the procfs exists, the interval's
//! minimum, the telemetry path's shape, the listen address resolves). A check that weighs one
//! key against another is [`super::settings`]' job.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::value::{LogLevel, count, one_of_any_case, parse_bool, parse_duration};

/// The shortest `scan.interval`: a scan of a busy host takes tens of milliseconds.
const MIN_SCAN_INTERVAL: Duration = Duration::from_millis(100);

/// `web.listen_address`: the text as written (for messages) and the addresses it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddress {
    pub text: String,
    /// Tried in order; the first that binds is served.
    pub addrs: Vec<SocketAddr>,
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'a> IntoIterator for &'a ListenAddress {
    type Item = &'a SocketAddr;
    type IntoIter = std::slice::Iter<'a, SocketAddr>;

    fn into_iter(self) -> Self::IntoIter {
        self.addrs.iter()
    }
}

/// `:PORT` (every interface, as node_exporter), `HOST:PORT` or `[V6]:PORT`.
pub fn listen_address(text: &str) -> Result<ListenAddress, String> {
    let addrs = if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{text:?}: port is not a number from 0 to 65535"))?;
        // Dual-stack first; the IPv4 wildcard where IPv6 is disabled.
        vec![
            SocketAddr::from(([0u16; 8], port)),
            SocketAddr::from(([0u8; 4], port)),
        ]
    } else {
        let addrs: Vec<SocketAddr> = text
            .to_socket_addrs()
            .map_err(|e| format!("{text:?}: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{text:?} resolves to no address"));
        }
        addrs
    };
    Ok(ListenAddress {
        text: text.to_owned(),
        addrs,
    })
}

/// `web.telemetry_path`: an absolute path that the health endpoints do not own.
pub fn telemetry_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') || ["/", "/healthz", "/readyz"].contains(&text) {
        return Err(format!(
            "{text:?} must start with / and not be /, /healthz or /readyz"
        ));
    }
    Ok(text.to_owned())
}

/// A web timeout: zero would close every connection at once.
pub fn timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text)?;
    if timeout.is_zero() {
        return Err("\"0s\" would close every connection at once".to_owned());
    }
    Ok(timeout)
}

/// A path where empty means none.
pub fn optional_path(text: &str) -> Result<Option<PathBuf>, String> {
    Ok((!text.is_empty()).then(|| text.into()))
}

/// A duration where zero means never.
pub fn optional_duration(text: &str) -> Result<Option<Duration>, String> {
    let duration = parse_duration(text)?;
    Ok((!duration.is_zero()).then_some(duration))
}

/// `path.procfs`: a directory with a `1` in it, as every procfs has.
pub fn procfs(text: &str) -> Result<PathBuf, String> {
    let procfs = PathBuf::from(text);
    if !procfs.join("1").is_dir() {
        return Err(format!(
            "{} is not a procfs: {} does not exist",
            procfs.display(),
            procfs.join("1").display()
        ));
    }
    Ok(procfs)
}

/// `scan.interval`, no shorter than its minimum.
pub fn scan_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text)?;
    if interval < MIN_SCAN_INTERVAL {
        return Err(format!(
            "\"{}\" is shorter than the minimum of {}",
            humantime::format_duration(interval),
            humantime::format_duration(MIN_SCAN_INTERVAL)
        ));
    }
    Ok(interval)
}

/// `scan.ebpf`: asked for a source this build lacks, fail rather than run without what was
/// asked.
pub fn ebpf(text: &str) -> Result<bool, String> {
    let ebpf = parse_bool(text)?;
    if ebpf && !crate::ebpf::BUILT {
        return Err(crate::ebpf::BUILT_WITHOUT.to_owned());
    }
    Ok(ebpf)
}

/// `scan.ebpf-ring-buffer`: a size the kernel takes for a ring buffer.
pub fn ebpf_ring_buffer(text: &str) -> Result<usize, String> {
    crate::ebpf::check_ring_bytes(count(text)?)
}

/// `log.level`, as `tracing` has it.
pub fn log_level(text: &str) -> Result<tracing::Level, String> {
    one_of_any_case::<LogLevel>(text).map(tracing::Level::from)
}
