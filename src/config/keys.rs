//! The key table: every configuration key, each declared once, with its name (the path in the
//! YAML file, `NSEXPORTER_SECTION__KEY` in the environment), its flag, default, help, parse
//! and the [`Settings`] field it fills. Adding a key is one entry here; [`super::table`] says
//! what an entry makes.
//!
//! Defaults live here only: the library's types take theirs from [`Settings::defaults`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::check::{self, ListenAddress};
use super::error::{ConfigError, invalid};
use super::table::config_keys;
use super::value::{self, LogFormat};
use crate::metrics::PerNamespace;
use crate::policy::{Policy, RawPolicy};
use crate::scan::ThreadScan;

/// Where the host's /proc is by default. The only place the literal appears.
pub const DEFAULT_PROCFS: &str = "/proc";
/// Every interface, port 9917, in node_exporter's `:PORT` form.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":9917";

/// One configuration key, as the table declares it.
pub struct Key {
    /// `section.key`: the path in the YAML file, and the name an error gives.
    pub name: &'static str,
    /// The flag, without its `--`.
    pub long: &'static str,
    /// The clap id of its flag (the [`Flags`] field's name).
    pub(super) id: &'static str,
    /// Text, parsed as a value from any other source is.
    pub default: &'static str,
    /// A boolean: `--flag` alone is true, and `--no-flag` is false.
    pub switch: bool,
    /// The flag's value, if it was given.
    pub(super) flag: fn(&Flags) -> Option<&str>,
    /// Gives the flag a value (`--no-flag`'s false).
    pub(super) set_flag: fn(&mut Flags, &str),
}

impl Key {
    /// The variable that sets the key: `NSEXPORTER_SECTION__KEY`.
    pub fn env(&self) -> String {
        format!(
            "NSEXPORTER_{}",
            self.name.to_ascii_uppercase().replace('.', "__")
        )
    }

    /// The key's merged value, parsed with `parse`; an error names the key.
    fn parse<T>(
        &self,
        value: config::Value,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let text = value.into_string().map_err(|e| match e {
            config::ConfigError::Type {
                unexpected,
                expected,
                ..
            } => invalid(
                self.name,
                format!("invalid type: {unexpected}, expected {expected}"),
            ),
            e => e.into(),
        })?;
        parse(&text).map_err(|problem| invalid(self.name, problem))
    }
}

/// A default as `--help` shows it: an empty one is `none`.
pub(super) fn shown(default: &str) -> &str {
    if default.is_empty() { "none" } else { default }
}

config_keys! {
    web: RawWeb {
        listen_address as listen_address: ListenAddress {
            flag: "web.listen-address" <ADDR>,
            default: DEFAULT_LISTEN_ADDRESS,
            parse: check::listen_address,
            help: "Address to listen on for HTTP",
        },
        telemetry_path as telemetry_path: String {
            flag: "web.telemetry-path" <PATH>,
            default: "/metrics",
            parse: check::telemetry_path,
            help: "Path under which to expose metrics",
        },
        read_header_timeout as read_header_timeout: Duration {
            flag: "web.read-header-timeout" <DURATION>,
            default: "10s",
            parse: check::timeout,
            help: "Time a client has to send a request's header, from the connection's opening \
                   or the first byte after an idle keep-alive wait",
        },
        idle_timeout as idle_timeout: Duration {
            flag: "web.idle-timeout" <DURATION>,
            default: "2m",
            parse: check::timeout,
            help: "Time a keep-alive connection may wait for its next request, and a response \
                   may wait for the client to read it, before the connection is closed",
        },
        max_requests as max_requests: usize {
            flag: "web.max-requests" <N>,
            default: "40",
            parse: value::count,
            help: "Scrapes answered at once; beyond them, 503. 0: no limit",
        },
        max_connections as max_connections: usize {
            flag: "web.max-connections" <N>,
            default: "256",
            parse: value::count,
            help: "Connections open at once; at the cap, an open one is closed for each new one \
                   (of the peer holding the most, the longest waiting). Lowered to fit under \
                   RLIMIT_NOFILE. 0: as many as that allows",
        },
        // node_exporter's flag has a dot where the table's convention would put a dash
        // (`--web.config-file`): the dot is kept, so that its users' flags work as they are.
        config_file as web_config_file: Option<PathBuf> {
            flag: "web.config.file" <FILE>,
            default: "",
            parse: check::optional_path,
            help: "exporter-toolkit web config file (TLS, basic auth, headers), re-read when it \
                   changes; empty: plain HTTP",
        },
    }
    path: RawPath {
        procfs as procfs: PathBuf {
            flag: "path.procfs" <DIR>,
            default: DEFAULT_PROCFS,
            parse: check::procfs,
            help: "procfs mountpoint",
        },
        kubelet_logs as kubelet_logs: PathBuf {
            flag: "path.kubelet-logs" <DIR>,
            default: "/var/log/containers",
            parse: value::path,
            help: "The kubelet's container log directory, whose file names give pod and \
                   container names",
        },
        docker as docker: PathBuf {
            flag: "path.docker" <DIR>,
            default: "/var/lib/docker",
            parse: value::path,
            help: "Docker's data root, whose containers/ID/config.v2.json give container \
                   names",
        },
        podman as podman: PathBuf {
            flag: "path.podman" <DIR>,
            default: "/var/lib/containers/storage",
            parse: value::path,
            help: "Podman's containers/storage graph root, whose DRIVER-containers/\
                   containers.json give container names",
        },
        run as run: PathBuf {
            flag: "path.run" <DIR>,
            default: "/run",
            parse: value::path,
            help: "The host's /run, under which the runtimes' state directories (containerd, \
                   runc, crun, CRI-O, Docker) hold each container's OCI spec",
        },
    }
    scan: RawScan {
        interval as scan_interval: Duration {
            flag: "scan.interval" <DURATION>,
            default: "15s",
            parse: check::scan_interval,
            help: "Time between two scans of the procfs",
        },
        threads as scan_threads: ThreadScan {
            flag: "scan.threads" <WHICH>,
            default: "containers",
            parse: value::one_of,
            help: "Whose threads to read, for a thread in another namespace than its process \
                   (setns moves one thread): containers (multi-threaded container processes), \
                   all or none",
        },
        sweep_interval as scan_sweep_interval: Duration {
            flag: "scan.sweep-interval" <DURATION>,
            default: "1s",
            parse: value::parse_duration,
            help: "Time between two sweeps for new processes between full scans, whose host \
                   sharing is a finding at once; 0s: no sweeps",
        },
        proc_events as scan_proc_events: bool {
            flag: "scan.proc-events" <BOOL>,
            default: "false",
            parse: value::parse_bool,
            help: "Also read every process the kernel reports forking or exec'ing, within \
                   milliseconds (the proc connector: needs the host's PID, user and network \
                   namespaces and CAP_NET_ADMIN): true or false",
        },
        ebpf as scan_ebpf: bool {
            flag: "scan.ebpf" <BOOL>,
            default: "false",
            parse: check::ebpf,
            help: "Also judge every namespace change of any task as the kernel makes it \
                   (setns, unshare, clone with CLONE_NEW*; eBPF on syscall tracepoints: needs \
                   a build with the ebpf feature, the kernel's BTF, tracefs at \
                   /sys/kernel/tracing, CAP_BPF and CAP_PERFMON): true or false",
        },
        safety_net_interval as scan_safety_net_interval: Duration {
            flag: "scan.safety-net-interval" <DURATION>,
            default: "10m",
            parse: check::scan_interval,
            help: "With the eBPF source's task probes (the events mode), time between two walks \
                   of every process, each counting what the events had missed \
                   (nsexporter_ebpf_divergence_total); scans between them apply the events",
        },
        ebpf_ring_buffer as scan_ebpf_ring_buffer: usize {
            flag: "scan.ebpf-ring-buffer" <BYTES>,
            default: "262144",
            parse: check::ebpf_ring_buffer,
            help: "The eBPF source's ring buffer, in bytes: a power of two and a multiple of \
                   the page size. A burst of reports larger than the exporter reads in 10 ms \
                   is lost (and counted, and healed by a full walk)",
        },
        bind_mounts as scan_bind_mounts: bool {
            flag: "scan.bind-mounts" <BOOL>,
            default: "true",
            parse: value::parse_bool,
            help: "Read each mount namespace's mountinfo once a scan for namespaces that an nsfs \
                   bind mount holds with no process (ip netns, CNI's /run/netns): true or false",
        },
        fd_interval as scan_fd_interval: Option<Duration> {
            flag: "scan.fd-interval" <DURATION>,
            default: "1m",
            parse: check::optional_duration,
            help: "Time between two reads of every process's open fds, for namespaces an fd \
                   holds (a readlink per fd); between them an fd found stays while its process \
                   lives. 0s: never",
        },
    }
    namespace: RawNamespace {
        orphan_age as orphan_age: Duration {
            flag: "namespace.orphan-age" <DURATION>,
            default: "10m",
            parse: value::parse_duration,
            help: "How long a namespace held by a bind mount or an fd only, with no process, \
                   must last to count in nsexporter_orphaned_namespaces",
        },
    }
    log: RawLog {
        level as log_level: tracing::Level {
            flag: "log.level" <LEVEL>,
            default: "info",
            parse: check::log_level,
            help: "Only log messages at or above this level: error, warn, info, debug, trace",
        },
        format as log_format: LogFormat {
            flag: "log.format" <FORMAT>,
            default: "logfmt",
            parse: value::one_of,
            help: "Log format: logfmt or json",
        },
    }
    metrics: RawMetrics {
        per_namespace as per_namespace: PerNamespace {
            flag: "metrics.per-namespace" <MODE>,
            default: "all",
            parse: value::one_of,
            help: "Per-namespace series to export: all, shared (host namespaces and those \
                   shared by several workloads or with findings) or none",
        },
        // Twice what the largest real workload holds (a kind node run in a pod, counted in
        // docs/metrics.md's series budget), so that only a flood of namespaces reaches it.
        namespaces_per_workload as namespaces_per_workload: usize {
            flag: "metrics.namespaces-per-workload" <N>,
            default: "2000",
            parse: value::count,
            help: "Per-namespace series for at most this many namespaces of one container or \
                   pod (those with processes and the oldest first); the rest are counted by \
                   type in nsexporter_workload_namespaces_beyond_cap. 0: no cap",
        },
    }
}
