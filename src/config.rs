//! Configuration: flags beat environment beats file beats defaults.
//!
//! Two stages, as in ripgrep's low/high args: [`RawConfig`] mirrors the YAML file, the
//! `NSEXPORTER_SECTION__KEY` environment variables and the node_exporter-style flags
//! (`--section.key-name`), merged by the `config` crate and deserialized by serde into typed
//! values (a duration, enums); [`Settings::try_from`] checks what serde cannot: that the
//! procfs exists, the interval's minimum, the telemetry path's shape, the listen address.
//! Every error names the key it is about, on one line.
//!
//! Each key is declared once, in the table of `config_keys!` below: section, name, type, flag,
//! default, help and how its text is parsed. The table makes the YAML section structs, the
//! clap [`Flags`] (with the default in each flag's help) and the list of keys that the loader
//! walks to set defaults and flag overrides; adding a key is one entry, and its use in
//! [`Settings`].
//!
//! A config file is untrusted input that a SIGHUP re-reads in a running exporter, so what it
//! can cost is bounded before the `config` crate sees it: at most [`CONFIG_FILE_LIMIT`] bytes,
//! read once, and no YAML aliases. yaml-rust2, under `config`, expands every alias into a copy
//! of its anchor's node, so a few hundred bytes of nested aliases ("billion laughs") ask for
//! gigabytes. The check is a pass of yaml-rust2's event parser, which does not expand aliases.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _};

use crate::files::{self, ReadError, Symlinks, YamlProblem, check_yaml};
use crate::policy::{Policy, PolicyError, RawPolicy};
use nsexporter_web::http::Limits;

/// `metrics.per_namespace`, the metrics stage's own type: a serde enum of lowercase names.
pub use crate::metrics::PerNamespace;
pub use crate::scan::{PinScan, ThreadScan};

/// Where the host's /proc is by default. The only place the literal appears.
pub const DEFAULT_PROCFS: &str = "/proc";
/// Every interface, port 9917, in node_exporter's `:PORT` form.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":9917";
/// The largest config file accepted, in bytes (1 MiB): the shipped configs are under 2 KiB.
pub const CONFIG_FILE_LIMIT: u64 = 1024 * 1024;
/// The shortest `scan.interval`: a scan of a busy host takes tens of milliseconds.
const MIN_SCAN_INTERVAL: Duration = Duration::from_millis(100);

/// Declares the configuration keys, each once. Every entry is
///
/// ```text
/// key: Type { flag: "section.flag-name" <VALUE> as flags_field, default: "text",
///             parse: "function", help: "Help text" }
/// ```
///
/// inside `section: RawSection { .. }`. The default is text and goes through `parse` like a
/// value from any other source. `parse` names the serde `deserialize_with` function: [`text`],
/// [`duration`], [`count`], [`one_of`] or [`one_of_any_case`] (a serde enum: its error lists the names).
/// The flag's help gets ` [default: ...]` appended. A key parsed by [`boolean`] is a switch, as
/// kingpin's boolean flags are: `--flag` is true, `--no-flag` false, `--flag=VALUE` any
/// boolean ([`Cli::command_with_switches`]).
macro_rules! config_keys {
    ($(
        $section:ident: $Section:ident {$(
            $key:ident: $ty:ty {
                flag: $flag:literal <$value:ident> as $field:ident,
                default: $default:expr,
                parse: $parse:literal,
                help: $help:literal $(,)?
            }
        ),+ $(,)?}
    )+) => {
        /// The configuration as written, before validation.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawConfig {
            $(pub $section: $Section,)+
            /// File only: a list of rules is no flag.
            #[serde(default)]
            pub policy: RawPolicy,
        }

        $(
            #[doc = concat!("The `", stringify!($section), ":` section, every key defaulted.")]
            #[derive(Debug, Deserialize)]
            #[serde(deny_unknown_fields)]
            pub struct $Section {$(
                #[doc = concat!($help, ".")]
                #[serde(deserialize_with = $parse)]
                pub $key: $ty,
            )+}
        )+

        /// Flags shared by every command. Unset flags leave the key to the environment, file or
        /// default. A value is text here: serde parses it with the other sources' values, so
        /// that a bad one gets the same message wherever it came from.
        #[derive(Clone, Debug, Default, Args)]
        pub struct Flags {
            /// YAML configuration file.
            #[arg(long = "config.file", global = true, value_name = "FILE")]
            pub config_file: Option<PathBuf>,
            $($(
                #[arg(
                    long = $flag,
                    global = true,
                    value_name = stringify!($value),
                    help = format!("{} [default: {}]", $help, shown($default)),
                )]
                pub $field: Option<String>,
            )+)+
        }

        /// Every key but the policy's, in the order of the table and of `--help`.
        const KEYS: &[Key] = &[$($(
            Key {
                name: concat!(stringify!($section), ".", stringify!($key)),
                long: $flag,
                id: stringify!($field),
                default: $default,
                switch: matches!($parse.as_bytes(), b"boolean"),
                flag: |flags: &Flags| flags.$field.as_deref(),
                set_flag: |flags: &mut Flags, value: &str| flags.$field = Some(value.to_owned()),
            },
        )+)+];
    };
}

config_keys! {
    web: RawWeb {
        listen_address: String {
            flag: "web.listen-address" <ADDR> as listen_address,
            default: DEFAULT_LISTEN_ADDRESS,
            parse: "text",
            help: "Address to listen on for HTTP",
        },
        telemetry_path: String {
            flag: "web.telemetry-path" <PATH> as telemetry_path,
            default: "/metrics",
            parse: "text",
            help: "Path under which to expose metrics",
        },
        read_header_timeout: Duration {
            flag: "web.read-header-timeout" <DURATION> as read_header_timeout,
            default: "10s",
            parse: "duration",
            help: "Time a client has to send a request's header, from the connection's opening \
                   or the first byte after an idle keep-alive wait",
        },
        idle_timeout: Duration {
            flag: "web.idle-timeout" <DURATION> as idle_timeout,
            default: "2m",
            parse: "duration",
            help: "Time a keep-alive connection may wait for its next request, and a response \
                   may wait for the client to read it, before the connection is closed",
        },
        max_requests: usize {
            flag: "web.max-requests" <N> as max_requests,
            default: "40",
            parse: "count",
            help: "Scrapes answered at once; beyond them, 503. 0: no limit",
        },
        max_connections: usize {
            flag: "web.max-connections" <N> as max_connections,
            default: "256",
            parse: "count",
            help: "Connections open at once; at the cap, an open one is closed for each new one \
                   (of the peer holding the most, the longest waiting). Lowered to fit under \
                   RLIMIT_NOFILE. 0: as many as that allows",
        },
        // node_exporter's flag has a dot where the table's convention would put a dash
        // (`--web.config-file`): the dot is kept, so that its users' flags work as they are.
        config_file: String {
            flag: "web.config.file" <FILE> as web_config_file,
            default: "",
            parse: "text",
            help: "exporter-toolkit web config file (TLS, basic auth, headers), re-read when it \
                   changes; empty: plain HTTP",
        },
    }
    path: RawPath {
        procfs: PathBuf {
            flag: "path.procfs" <DIR> as procfs,
            default: DEFAULT_PROCFS,
            parse: "text",
            help: "procfs mountpoint",
        },
        kubelet_logs: PathBuf {
            flag: "path.kubelet-logs" <DIR> as kubelet_logs,
            default: "/var/log/containers",
            parse: "text",
            help: "The kubelet's container log directory, whose file names give pod and \
                   container names",
        },
        docker: PathBuf {
            flag: "path.docker" <DIR> as docker,
            default: "/var/lib/docker",
            parse: "text",
            help: "Docker's data root, whose containers/ID/config.v2.json give container \
                   names",
        },
        podman: PathBuf {
            flag: "path.podman" <DIR> as podman,
            default: "/var/lib/containers/storage",
            parse: "text",
            help: "Podman's containers/storage graph root, whose DRIVER-containers/\
                   containers.json give container names",
        },
        run: PathBuf {
            flag: "path.run" <DIR> as run,
            default: "/run",
            parse: "text",
            help: "The host's /run, under which the runtimes' state directories (containerd, \
                   runc, crun, CRI-O, Docker) hold each container's OCI spec",
        },
    }
    scan: RawScan {
        interval: Duration {
            flag: "scan.interval" <DURATION> as scan_interval,
            default: "15s",
            parse: "duration",
            help: "Time between two scans of the procfs",
        },
        threads: ThreadScan {
            flag: "scan.threads" <WHICH> as scan_threads,
            default: "containers",
            parse: "one_of",
            help: "Whose threads to read, for a thread in another namespace than its process \
                   (setns moves one thread): containers (multi-threaded container processes), \
                   all or none",
        },
        sweep_interval: Duration {
            flag: "scan.sweep-interval" <DURATION> as scan_sweep_interval,
            default: "1s",
            parse: "duration",
            help: "Time between two sweeps for new processes between full scans, whose host \
                   sharing is a finding at once; 0s: no sweeps",
        },
        proc_events: bool {
            flag: "scan.proc-events" <BOOL> as scan_proc_events,
            default: "false",
            parse: "boolean",
            help: "Also read every process the kernel reports forking or exec'ing, within \
                   milliseconds (the proc connector: needs the host's PID, user and network \
                   namespaces and CAP_NET_ADMIN): true or false",
        },
        ebpf: bool {
            flag: "scan.ebpf" <BOOL> as scan_ebpf,
            default: "false",
            parse: "boolean",
            help: "Also judge every namespace change of any task as the kernel makes it \
                   (setns, unshare, clone with CLONE_NEW*; eBPF on syscall tracepoints: needs \
                   a build with the ebpf feature, the kernel's BTF, tracefs at \
                   /sys/kernel/tracing, CAP_BPF and CAP_PERFMON): true or false",
        },
        bind_mounts: bool {
            flag: "scan.bind-mounts" <BOOL> as scan_bind_mounts,
            default: "true",
            parse: "boolean",
            help: "Read each mount namespace's mountinfo once a scan for namespaces that an nsfs \
                   bind mount holds with no process (ip netns, CNI's /run/netns): true or false",
        },
        fd_interval: Duration {
            flag: "scan.fd-interval" <DURATION> as scan_fd_interval,
            default: "1m",
            parse: "duration",
            help: "Time between two reads of every process's open fds, for namespaces an fd \
                   holds (a readlink per fd); between them an fd found stays while its process \
                   lives. 0s: never",
        },
    }
    namespace: RawNamespace {
        orphan_age: Duration {
            flag: "namespace.orphan-age" <DURATION> as namespace_orphan_age,
            default: "10m",
            parse: "duration",
            help: "How long a namespace held by a bind mount or an fd only, with no process, \
                   must last to count in nsexporter_orphaned_namespaces",
        },
    }
    log: RawLog {
        level: LogLevel {
            flag: "log.level" <LEVEL> as log_level,
            default: "info",
            parse: "one_of_any_case",
            help: "Only log messages at or above this level: error, warn, info, debug, trace",
        },
        format: LogFormat {
            flag: "log.format" <FORMAT> as log_format,
            default: "logfmt",
            parse: "one_of",
            help: "Log format: logfmt or json",
        },
    }
    metrics: RawMetrics {
        per_namespace: PerNamespace {
            flag: "metrics.per-namespace" <MODE> as per_namespace,
            default: "all",
            parse: "one_of",
            help: "Per-namespace series to export: all, shared (host namespaces and those \
                   shared by several workloads or with findings) or none",
        },
        // A container's own are at most eight, and a kind node run in a pod at the kubelet's
        // 110 pods holds some thousand: twice that is beyond any real workload, and a flood
        // of namespaces costs Prometheus three series for each one below it only.
        namespaces_per_workload: usize {
            flag: "metrics.namespaces-per-workload" <N> as namespaces_per_workload,
            default: "2000",
            parse: "count",
            help: "Per-namespace series for at most this many namespaces of one container or \
                   pod (those with processes and the oldest first); the rest are counted by \
                   type in nsexporter_workload_namespaces_beyond_cap. 0: no cap",
        },
    }
}

/// A default as `--help` shows it: an empty one is `none`.
fn shown(default: &str) -> &str {
    if default.is_empty() { "none" } else { default }
}

/// One configuration key, as the table declares it.
struct Key {
    /// `section.key`: the path in the YAML file, and the name an error gives.
    name: &'static str,
    /// The flag, without its `--`.
    #[cfg_attr(not(test), allow(dead_code))]
    long: &'static str,
    /// The clap id of its flag (the [`Flags`] field's name).
    id: &'static str,
    /// Text, parsed as a value from any other source is.
    default: &'static str,
    /// A boolean: `--flag` alone is true, and `--no-flag` is false.
    switch: bool,
    /// The flag's value, if it was given.
    flag: fn(&Flags) -> Option<&str>,
    /// Gives the flag a value (`--no-flag`'s false).
    set_flag: fn(&mut Flags, &str),
}

/// nsexporter: a Prometheus exporter that makes Linux kernel namespaces visible.
#[derive(Debug, Parser)]
#[command(name = "nsexporter", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub flags: Flags,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The command line, with kingpin's switches for every boolean key (node_exporter's
    /// users type `--collector.x` and `--no-collector.x`): `--flag` alone means true
    /// (`--flag=VALUE` still takes a value, and only with `=`, so that the next argument is
    /// never taken for one), and `--no-flag` means false; of the two, the last one given wins.
    pub fn command_with_switches() -> clap::Command {
        use clap::{Arg, ArgAction, CommandFactory};
        let mut command = <Cli as CommandFactory>::command();
        // Each `--no-` flag right after its flag in `--help`: every flag's place, in steps of 2.
        let ids: Vec<clap::Id> = command
            .get_arguments()
            .map(|a| a.get_id().clone())
            .collect();
        for (i, id) in ids.iter().enumerate() {
            command = command.mut_arg(id, |arg| arg.display_order(2 * i));
        }
        for key in KEYS.iter().filter(|k| k.switch) {
            let place = ids.iter().position(|id| id == key.id).unwrap_or(ids.len());
            let no = no_id(key);
            command = command
                .mut_arg(key.id, |arg| {
                    arg.num_args(0..=1)
                        .require_equals(true)
                        .default_missing_value("true")
                        .overrides_with(no.clone())
                })
                .arg(
                    Arg::new(no.clone())
                        .long(format!("no-{}", key.long))
                        .global(true)
                        .action(ArgAction::SetTrue)
                        .overrides_with(key.id)
                        .display_order(2 * place + 1)
                        .help(format!(
                            "{}: false (the same as --{}=false)",
                            key.name, key.long
                        )),
                );
        }
        command
    }

    /// Parses `args` (the program's name first) with [`Cli::command_with_switches`].
    pub fn try_parse_with_switches<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches;
        let matches = Cli::command_with_switches().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        for key in KEYS.iter().filter(|k| k.switch) {
            // A switch given after a subcommand is in that subcommand's matches.
            let given = |m: &clap::ArgMatches| m.get_flag(&no_id(key));
            let after = matches.subcommand().is_some_and(|(_, m)| given(m));
            if given(&matches) || after {
                (key.set_flag)(&mut cli.flags, "false");
            }
        }
        Ok(cli)
    }
}

/// The clap id of a switch's `--no-` flag.
fn no_id(key: &Key) -> String {
    format!("no_{}", key.id)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scan once and list namespaces, like lsns.
    List {
        /// Only namespaces of this type.
        #[arg(long = "type", value_name = "TYPE")]
        ns_type: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Draw the table as a tree of this relation, like `lsns --tree`.
        #[arg(long, value_enum, value_name = "RELATION", conflicts_with = "output")]
        tree: Option<crate::list::Tree>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// `log.level`: the least severe level logged. Case-insensitive (`INFO` is `info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<LogLevel> for tracing::Level {
    fn from(level: LogLevel) -> tracing::Level {
        match level {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

/// `log.format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Transparent: `{0}` with `#[from]` made `{:#}` print the message twice.
    #[error(transparent)]
    Load(#[from] config::ConfigError),
    #[error("{key}: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error("config.file: {}: {problem}", path.display())]
    File { path: PathBuf, problem: FileProblem },
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    #[error("no such file")]
    Missing,
    #[error("{0}")]
    Read(#[from] std::io::Error),
    #[error("larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Yaml(#[from] YamlProblem),
    /// `config` refused what the checks let through (e.g. two documents in one file).
    #[error("{0}")]
    Parse(String),
}

/// Reads a config file once, within [`CONFIG_FILE_LIMIT`], and checks it with
/// [`check_yaml`]. The text returned is what `config` parses, so the file cannot change
/// between the check and the parse.
pub fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    let refuse = |problem| ConfigError::File {
        path: path.to_owned(),
        problem,
    };
    let bytes = files::read_bounded(path, CONFIG_FILE_LIMIT, Symlinks::Follow).map_err(|e| {
        refuse(match e {
            ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => FileProblem::Missing,
            // A FIFO or a device is no config file.
            ReadError::NotRegular | ReadError::Symlink => FileProblem::Missing,
            ReadError::TooLarge { limit } => FileProblem::TooLarge { limit },
            ReadError::Io(e) => FileProblem::Read(e),
        })
    })?;
    check_yaml(&bytes).map_err(|e| refuse(e.into()))?;
    // check_yaml has seen the bytes are UTF-8.
    String::from_utf8(bytes)
        .map_err(|e| refuse(YamlProblem::NotUtf8(e.utf8_error().valid_up_to()).into()))
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// `deserialize_with` for text keys. `config` hands a YAML number or boolean over as text, as
/// it does a flag's or a variable's value.
fn text<'de, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<T, D::Error> {
    String::deserialize(d).map(T::from)
}

/// `deserialize_with` for durations, in Go's syntax (`15s`, `1m30s`), as web.yml reads them
/// ([`nsexporter_web::dialect`]); not negative.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    let nanos = nsexporter_web::dialect::parse_duration(&text).map_err(D::Error::custom)?;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| D::Error::custom(format!("{text:?} is negative")))
}

/// `deserialize_with` for a whole number, written as text (a YAML number comes as text too).
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let text = String::deserialize(d)?;
    text.trim()
        .parse()
        .map_err(|_| D::Error::custom(format!("{text:?} is not a whole number")))
}

/// `deserialize_with` for a boolean: what kingpin's flags take (Go's `strconv.ParseBool`) and
/// web.yml's YAML 1.1 words, from every source ([`nsexporter_web::dialect`]).
fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let text = String::deserialize(d)?;
    nsexporter_web::dialect::parse_bool(text.trim()).map_err(D::Error::custom)
}

/// `deserialize_with` for a serde enum of lowercase names, written as text: a bad name is
/// `"x" is not one of a, b, c`, listing the names serde derived.
fn one_of<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<T, D::Error> {
    name(&String::deserialize(d)?).map_err(D::Error::custom)
}

/// [`one_of`], ignoring case.
fn one_of_any_case<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<T, D::Error> {
    name(&String::deserialize(d)?.to_ascii_lowercase()).map_err(D::Error::custom)
}

fn name<T: DeserializeOwned>(text: &str) -> Result<T, NameError> {
    T::deserialize(serde::de::value::StrDeserializer::<NameError>::new(text))
}

/// The error of [`name`]: serde hands `unknown_variant` the names it derived.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NameError(String);

impl serde::de::Error for NameError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        NameError(msg.to_string())
    }

    fn unknown_variant(name: &str, names: &'static [&'static str]) -> Self {
        NameError(format!("{name:?} is not one of {}", names.join(", ")))
    }
}

impl RawConfig {
    /// Merges defaults, the file named by `--config.file`, the environment and the flags.
    pub fn load(flags: &Flags) -> Result<RawConfig, ConfigError> {
        Self::load_from(flags, std::env::vars())
    }

    /// As [`RawConfig::load`], with the environment given (tests).
    pub fn load_from(
        flags: &Flags,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<RawConfig, ConfigError> {
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("NSEXPORTER_"))
            .collect();
        let mut b = config::Config::builder();
        for key in KEYS {
            b = b.set_default(key.name, key.default)?;
        }
        if let Some(file) = &flags.config_file {
            let text = read_config_file(file)?;
            b = b.add_source(config::File::from_str(&text, config::FileFormat::Yaml));
        }
        b = b.add_source(
            config::Environment::with_prefix("NSEXPORTER")
                .prefix_separator("_")
                .separator("__")
                .source(Some(env)),
        );
        for key in KEYS {
            if let Some(value) = (key.flag)(flags) {
                b = b.set_override(key.name, value)?;
            }
        }
        let built = b.build().map_err(|e| match (e, &flags.config_file) {
            // The file is the only source that is parsed; its text has no name for `config`.
            (config::ConfigError::FileParse { cause, .. }, Some(path)) => ConfigError::File {
                path: path.clone(),
                problem: FileProblem::Parse(cause.to_string()),
            },
            (e, _) => e.into(),
        })?;
        built.try_deserialize().map_err(key_first)
    }
}

/// `config` ends a value's error with `for key `scan.interval``; ours start with the key, as
/// `Settings::try_from`'s do. Errors about another key (an unknown one, a policy's) are
/// `config`'s.
fn key_first(e: config::ConfigError) -> ConfigError {
    use config::ConfigError::{At, Type};
    let key = match &e {
        At { key: Some(k), .. } | Type { key: Some(k), .. } => KEYS.iter().find(|x| x.name == k),
        _ => None,
    };
    match (e, key) {
        (At { error, .. }, Some(key)) => invalid(key.name, error.to_string()),
        (
            Type {
                unexpected,
                expected,
                ..
            },
            Some(key),
        ) => invalid(
            key.name,
            format!("invalid type: {unexpected}, expected {expected}"),
        ),
        (e, _) => e.into(),
    }
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen_address: Vec<SocketAddr>,
    pub listen_address_text: String,
    pub telemetry_path: String,
    /// `web.config_file`: TLS, basic auth and headers; None: plain HTTP.
    pub web_config_file: Option<PathBuf>,
    /// What a client can hold open: timeouts and caps of `web.*`.
    pub limits: Limits,
    pub procfs: PathBuf,
    /// Optional: where it does not exist only container ids and pod uids are known.
    pub kubelet_logs: PathBuf,
    /// Optional, as `kubelet_logs`: Docker's data root.
    pub docker: PathBuf,
    /// Optional, as `kubelet_logs`: Podman's graph root.
    pub podman: PathBuf,
    /// Optional, as `kubelet_logs`: the host's `/run`, for the containers' specs.
    pub run: PathBuf,
    pub scan_interval: Duration,
    pub scan_threads: ThreadScan,
    /// Zero: no sweeps.
    pub scan_sweep_interval: Duration,
    pub scan_proc_events: bool,
    pub scan_ebpf: bool,
    /// `scan.bind_mounts` and `scan.fd_interval`.
    pub scan_pins: PinScan,
    pub orphan_age: Duration,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
    pub per_namespace: PerNamespace,
    /// `metrics.namespaces_per_workload`; 0: no cap.
    pub namespaces_per_workload: usize,
    pub policy: Policy,
}

impl Settings {
    /// The key table's defaults, with no file, environment or flag: what the binary runs with
    /// when given nothing, and the only defaults there are (the library's types have none of
    /// their own to disagree with).
    pub fn defaults() -> Settings {
        RawConfig::load_from(&Flags::default(), [])
            .and_then(Settings::try_from)
            .expect("the key table's defaults are valid")
    }
}

impl TryFrom<RawConfig> for Settings {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Settings, ConfigError> {
        let RawConfig {
            web,
            path,
            scan,
            namespace,
            log,
            metrics,
            policy,
        } = raw;
        let listen_address = parse_listen_address(&web.listen_address)
            .map_err(|p| invalid("web.listen_address", p))?;
        let telemetry_path = web.telemetry_path;
        if !telemetry_path.starts_with('/')
            || ["/", "/healthz", "/readyz"].contains(&telemetry_path.as_str())
        {
            return Err(invalid(
                "web.telemetry_path",
                format!("{telemetry_path:?} must start with / and not be /, /healthz or /readyz"),
            ));
        }
        if !path.procfs.join("1").is_dir() {
            return Err(invalid(
                "path.procfs",
                format!(
                    "{} is not a procfs: {} does not exist",
                    path.procfs.display(),
                    path.procfs.join("1").display()
                ),
            ));
        }
        if scan.interval < MIN_SCAN_INTERVAL {
            return Err(invalid(
                "scan.interval",
                format!(
                    "\"{}\" is shorter than the minimum of {}",
                    humantime::format_duration(scan.interval),
                    humantime::format_duration(MIN_SCAN_INTERVAL)
                ),
            ));
        }
        // The default sweep interval with a scan interval as short turns sweeps off (said
        // once at start); a sweep interval chosen so is refused, as it would do nothing.
        let default_sweep = KEYS
            .iter()
            .find(|k| k.name == "scan.sweep_interval")
            .and_then(|k| humantime::parse_duration(k.default).ok());
        if !scan.sweep_interval.is_zero()
            && scan.sweep_interval >= scan.interval
            && Some(scan.sweep_interval) != default_sweep
        {
            return Err(invalid(
                "scan.sweep_interval",
                format!(
                    "\"{}\" is not shorter than scan.interval \"{}\": sweeps run between scans (\"0s\" turns them off)",
                    humantime::format_duration(scan.sweep_interval),
                    humantime::format_duration(scan.interval)
                ),
            ));
        }
        for (key, timeout) in [
            ("web.read_header_timeout", web.read_header_timeout),
            ("web.idle_timeout", web.idle_timeout),
        ] {
            if timeout.is_zero() {
                return Err(invalid(key, "\"0s\" would close every connection at once"));
            }
        }
        // Asked for a source this build lacks: fail rather than run without what was asked.
        if scan.ebpf && !crate::ebpf::BUILT {
            return Err(invalid("scan.ebpf", crate::ebpf::BUILT_WITHOUT));
        }
        Ok(Settings {
            policy: Policy::try_from(policy)?,
            limits: Limits {
                read_header_timeout: web.read_header_timeout,
                idle_timeout: web.idle_timeout,
                max_requests: web.max_requests,
                max_connections: web.max_connections,
            },
            listen_address,
            listen_address_text: web.listen_address,
            web_config_file: (!web.config_file.is_empty()).then(|| web.config_file.into()),
            telemetry_path,
            procfs: path.procfs,
            kubelet_logs: path.kubelet_logs,
            docker: path.docker,
            podman: path.podman,
            run: path.run,
            scan_interval: scan.interval,
            scan_threads: scan.threads,
            scan_sweep_interval: scan.sweep_interval,
            scan_proc_events: scan.proc_events,
            scan_ebpf: scan.ebpf,
            scan_pins: PinScan {
                mounts: scan.bind_mounts,
                fds: (!scan.fd_interval.is_zero()).then_some(scan.fd_interval),
            },
            orphan_age: namespace.orphan_age,
            log_level: log.level.into(),
            log_format: log.format,
            per_namespace: metrics.per_namespace,
            namespaces_per_workload: metrics.namespaces_per_workload,
        })
    }
}

/// `:PORT` (every interface, as node_exporter), `HOST:PORT` or `[V6]:PORT`.
fn parse_listen_address(text: &str) -> Result<Vec<SocketAddr>, String> {
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{text:?}: port is not a number from 0 to 65535"))?;
        // Dual-stack first; the IPv4 wildcard where IPv6 is disabled.
        return Ok(vec![
            SocketAddr::from(([0u16; 8], port)),
            SocketAddr::from(([0u8; 4], port)),
        ]);
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("{text:?}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{text:?} resolves to no address"));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(flags: Flags, env: &[(&str, &str)]) -> Result<Settings, String> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        RawConfig::load_from(&flags, env)
            .map_err(|e| e.to_string())
            .and_then(|raw| Settings::try_from(raw).map_err(|e| e.to_string()))
    }

    fn fixture_procfs() -> String {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc").to_string()
    }

    #[test]
    fn defaults_apply() {
        let s = Settings::defaults();
        assert_eq!(s.scan_interval, Duration::from_secs(15));
        assert_eq!(s.telemetry_path, "/metrics");
        assert_eq!(s.listen_address_text, ":9917");
        assert_eq!(s.listen_address[1], "0.0.0.0:9917".parse().unwrap());
        assert_eq!(s.procfs, PathBuf::from("/proc"));
        assert_eq!(s.log_format, LogFormat::Logfmt);
        let limits = Limits {
            read_header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_requests: 40,
            max_connections: 256,
        };
        assert_eq!(s.limits, limits);
        // What a library user gets from `Settings::defaults()` is what the binary scans with.
        let pins = PinScan {
            mounts: true,
            fds: Some(Duration::from_secs(60)),
        };
        assert_eq!(
            (s.scan_threads, s.scan_pins),
            (ThreadScan::Containers, pins)
        );
        assert_eq!(s.orphan_age, Duration::from_secs(600));
        assert_eq!(s.per_namespace, PerNamespace::All);
        assert_eq!(s.namespaces_per_workload, 2000);
    }

    #[test]
    fn flags_beat_environment_beats_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "scan:\n  interval: 1m\nlog:\n  level: debug\n  format: json\nweb:\n  telemetry_path: /m\n",
        )
        .unwrap();
        let flags = Flags {
            config_file: Some(file),
            scan_interval: Some("5s".into()),
            ..Flags::default()
        };
        let s = load(
            flags,
            &[
                ("NSEXPORTER_SCAN__INTERVAL", "7s"),
                ("NSEXPORTER_LOG__LEVEL", "warn"),
                ("NSEXPORTER_PATH__PROCFS", &fixture_procfs()),
            ],
        )
        .unwrap();
        assert_eq!(s.scan_interval, Duration::from_secs(5), "flag wins");
        assert_eq!(s.log_level, tracing::Level::WARN, "env beats file");
        assert_eq!(s.log_format, LogFormat::Json, "file beats default");
        assert_eq!(s.telemetry_path, "/m");
        assert_eq!(s.procfs, PathBuf::from(fixture_procfs()));
    }

    #[test]
    fn bad_values_name_their_key_on_one_line() {
        type Case<'a> = (Flags, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case> = vec![
            (
                Flags {
                    scan_interval: Some("abc".into()),
                    ..Flags::default()
                },
                vec![],
                "scan.interval: \"abc\"",
            ),
            (
                Flags::default(),
                vec![("NSEXPORTER_SCAN__INTERVAL", "0s")],
                "scan.interval: \"0s\" is shorter",
            ),
            (
                Flags {
                    procfs: Some("/nonexistent".into()),
                    ..Flags::default()
                },
                vec![],
                "path.procfs: /nonexistent is not a procfs",
            ),
            (
                Flags {
                    listen_address: Some(":99999".into()),
                    ..Flags::default()
                },
                vec![],
                "web.listen_address: \":99999\"",
            ),
            (
                Flags {
                    log_level: Some("loud".into()),
                    ..Flags::default()
                },
                vec![],
                "log.level: \"loud\"",
            ),
            (
                Flags {
                    log_format: Some("xml".into()),
                    ..Flags::default()
                },
                vec![],
                "log.format: \"xml\"",
            ),
            (
                Flags {
                    telemetry_path: Some("metrics".into()),
                    ..Flags::default()
                },
                vec![],
                "web.telemetry_path:",
            ),
            (
                Flags::default(),
                vec![("NSEXPORTER_SCAN__INTERVALL", "5s")],
                "unknown field `intervall`",
            ),
        ];
        for (flags, env, want) in cases {
            let err = load(flags, &env).unwrap_err();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }

    fn alias_in(yaml: &[u8]) -> Option<(String, usize)> {
        match check_yaml(yaml) {
            Err(YamlProblem::Alias { name, line }) => Some((name, line)),
            Ok(()) => None,
            Err(e) => panic!("{:?}: {e}", String::from_utf8_lossy(yaml)),
        }
    }

    #[test]
    fn an_alias_anywhere_is_refused() {
        let cases: [(&[u8], &str, usize); 7] = [
            (b"a: &x 1\nb: *x\n", "x", 2),
            (b"a: &x [1]\nb:\n  - 2\n  - *x\n", "x", 4),
            (b"a: &x [1]\nb: [2, *x, 3]\n", "x", 2),
            (b"a: &x [1]\nb: {k: *x}\n", "x", 2),
            (b"base: &base {k: v}\nc:\n  <<: *base\n", "base", 3),
            (b"a: &x 1\n*x : key\n", "x", 2),
            // Columns count characters, not bytes.
            (
                "\u{e9}: &\u{e9}t\u{e9} 1\nb: [\u{e9}\u{e9}, *\u{e9}t\u{e9}]\n".as_bytes(),
                "\u{e9}t\u{e9}",
                2,
            ),
        ];
        for (yaml, name, line) in cases {
            let text = String::from_utf8_lossy(yaml);
            assert_eq!(alias_in(yaml), Some((name.to_owned(), line)), "{text:?}");
        }
        // The billion laughs: refused at the first alias, before any expansion.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        for (p, c) in "abcdefgh".chars().zip("bcdefghi".chars()) {
            let aliases = vec![format!("*{p}"); 9].join(",");
            bomb.push_str(&format!("{c}: &{c} [{aliases}]\n"));
        }
        assert_eq!(alias_in(bomb.as_bytes()), Some(("a".to_owned(), 2)));
        let err = ConfigError::File {
            path: "/etc/nsexporter.yaml".into(),
            problem: check_yaml(bomb.as_bytes()).unwrap_err().into(),
        };
        assert_eq!(
            err.to_string(),
            "config.file: /etc/nsexporter.yaml: YAML aliases (*a) are not supported (line 2)"
        );
    }

    #[test]
    fn yaml_without_aliases_passes() {
        let cases: [&[u8]; 6] = [
            b"",
            b"# only a comment\n",
            b"scan:\n  interval: 15s\npolicy:\n  allow:\n    - pod: \"kube-proxy-.*\"\n",
            // Anchors alone repeat nothing.
            b"a: &x [1, 2]\nb: &y {k: v}\nc: &z 3\n",
            // `*` and `&` inside scalars are text.
            b"a: \"*x\"\nb: 'x*y'\nc: a&b\nd: \"&x\"\n",
            b"a: |\n  *x\n  &y\n",
        ];
        for yaml in cases {
            assert_eq!(alias_in(yaml), None, "{:?}", String::from_utf8_lossy(yaml));
        }
        // The shipped configs too.
        let systemd = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/systemd/nsexporter.yaml"
        );
        assert_eq!(alias_in(&std::fs::read(systemd).unwrap()), None);
    }

    #[test]
    fn other_yaml_problems_are_refused() {
        // Syntax, an alias of no anchor (a syntax error to the parser), nesting past the
        // parser's limit, and bytes that are not UTF-8.
        let syntax: [&[u8]; 3] = [b"scan: [unclosed\n", b"a: *nowhere\n", &[b'['; 10_000]];
        for yaml in syntax {
            let err = check_yaml(yaml).unwrap_err();
            assert!(matches!(err, YamlProblem::Syntax(_)), "{err:?}");
            assert!(err.to_string().contains(" line "), "{err}");
        }
        assert!(matches!(
            check_yaml(b"a: \xff\n"),
            Err(YamlProblem::NotUtf8(3))
        ));
    }

    #[test]
    fn config_file_limits_name_the_file_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        let comment = format!("#{}\n", "x".repeat(1022)); // 1 KiB
        std::fs::write(&big, comment.repeat(1024 + 1)).unwrap();
        let at_limit = dir.path().join("at-limit.yaml");
        std::fs::write(&at_limit, comment.repeat(1024)).unwrap();
        let two_docs = dir.path().join("two.yaml");
        std::fs::write(&two_docs, "scan: {}\n---\nlog: {}\n").unwrap();
        let with = |file: &Path| Flags {
            config_file: Some(file.to_owned()),
            ..Flags::default()
        };
        let cases = [
            (
                &big,
                format!(
                    "config.file: {}: larger than the limit of 1048576 bytes",
                    big.display()
                ),
            ),
            (&two_docs, format!("config.file: {}: ", two_docs.display())),
        ];
        for (file, want) in cases {
            let err = load(with(file), &[]).unwrap_err();
            assert!(err.starts_with(&want), "{err:?} should start with {want:?}");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
        let at = load(with(&at_limit), &[]);
        assert!(at.is_ok(), "exactly the limit is accepted: {at:?}");
    }

    /// As [`load`], with `yaml` as the config file and the fixture procfs unless a flag says.
    fn load_yaml(flags: Flags, env: &[(&str, &str)], yaml: &str) -> Result<Settings, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, yaml).unwrap();
        let flags = Flags {
            config_file: Some(file),
            procfs: flags.procfs.or_else(|| Some(fixture_procfs())),
            ..flags
        };
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        RawConfig::load_from(&flags, env)
            .map_err(|e| e.to_string())
            .and_then(|raw| Settings::try_from(raw).map_err(|e| e.to_string()))
    }

    #[test]
    fn every_key_has_a_flag_that_shows_its_default() {
        let cli = Cli::command_with_switches();
        let mut longs: Vec<&str> = cli.get_arguments().filter_map(|a| a.get_long()).collect();
        // In `--help`'s order.
        longs.sort_by_key(|long| {
            let arg = cli.get_arguments().find(|a| a.get_long() == Some(*long));
            arg.map(|a| a.get_display_order())
        });
        let wanted: Vec<String> = std::iter::once("config.file".to_owned())
            .chain(KEYS.iter().flat_map(|k| {
                let no = k.switch.then(|| format!("no-{}", k.long));
                std::iter::once(k.long.to_owned()).chain(no)
            }))
            .collect();
        assert_eq!(
            longs, wanted,
            "one flag per key, and --no- after each switch"
        );
        for key in KEYS {
            // `--section.key-name`, but for node_exporter's `--web.config.file`.
            if key.name != "web.config_file" {
                assert_eq!(key.long, key.name.replace('_', "-"));
            }
            let flag = key.long;
            let arg = cli.get_arguments().find(|a| a.get_long() == Some(flag));
            let help = arg.and_then(|a| a.get_help()).unwrap().to_string();
            let default = format!("[default: {}]", shown(key.default));
            assert!(help.ends_with(&default), "--{flag}: {help:?}");
        }
    }

    /// The flags of `args` (after the program's name).
    fn flags(args: &[&str]) -> Result<Flags, String> {
        let argv = std::iter::once("nsexporter").chain(args.iter().copied());
        Cli::try_parse_with_switches(argv)
            .map(|cli| cli.flags)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_boolean_key_is_a_switch_as_kingpin_has_it() {
        let switches: Vec<&str> = KEYS.iter().filter(|k| k.switch).map(|k| k.name).collect();
        assert_eq!(
            switches,
            ["scan.proc_events", "scan.ebpf", "scan.bind_mounts"]
        );
        let settings = |args: &[&str]| {
            let mut f = flags(args).unwrap();
            f.procfs = Some(fixture_procfs());
            let s = load(f, &[]).unwrap();
            (s.scan_proc_events, s.scan_pins.mounts)
        };
        let cases: [(&[&str], (bool, bool)); 12] = [
            (&[], (false, true)),
            (
                &["--scan.proc-events", "--no-scan.bind-mounts"],
                (true, false),
            ),
            (
                &["--scan.proc-events=true", "--scan.bind-mounts=false"],
                (true, false),
            ),
            (
                &["--no-scan.proc-events", "--scan.bind-mounts"],
                (false, true),
            ),
            (
                &["--scan.proc-events=1", "--scan.bind-mounts=F"],
                (true, false),
            ),
            // The last of a switch's two flags wins.
            (
                &["--scan.proc-events", "--no-scan.proc-events"],
                (false, true),
            ),
            (
                &["--no-scan.proc-events", "--scan.proc-events"],
                (true, true),
            ),
            (
                &["--no-scan.bind-mounts", "--scan.bind-mounts=true"],
                (false, true),
            ),
            (
                &["--scan.bind-mounts=true", "--no-scan.bind-mounts"],
                (false, false),
            ),
            // After the subcommand too.
            (
                &["list", "--scan.proc-events", "--no-scan.bind-mounts"],
                (true, false),
            ),
            (
                &["--scan.proc-events", "list", "--no-scan.bind-mounts"],
                (true, false),
            ),
            (
                &["list", "--no-scan.bind-mounts", "--output", "json"],
                (false, false),
            ),
        ];
        for (args, want) in cases {
            assert_eq!(settings(args), want, "{args:?}");
        }
        // A switch takes no separate value: the next argument is the next argument.
        let e = flags(&["--scan.proc-events", "true"]).unwrap_err();
        assert!(e.contains("unrecognized subcommand 'true'"), "{e}");
        assert!(flags(&["--no-scan.proc-events=true"]).is_err());
        // A bad value is said as from any source.
        let mut f = flags(&["--scan.proc-events=maybe"]).unwrap();
        f.procfs = Some(fixture_procfs());
        assert_eq!(
            load(f, &[]).unwrap_err(),
            "scan.proc_events: \"maybe\" is not one of true, false (or t, 1, yes, y, on; f, 0, no, n, off)"
        );
        // Other flags still take a separate value.
        assert_eq!(
            flags(&["--scan.interval", "5s"])
                .unwrap()
                .scan_interval
                .as_deref(),
            Some("5s")
        );
    }

    #[test]
    fn help_shows_both_flags_of_a_switch_together() {
        let help = Cli::command_with_switches().render_long_help().to_string();
        for key in KEYS.iter().filter(|k| k.switch) {
            let on = help.find(&format!("--{}[=<BOOL>]", key.long));
            let off = help.find(&format!("--no-{}\n", key.long));
            let (Some(on), Some(off)) = (on, off) else {
                panic!("--{} and --no-{} in:\n{help}", key.long, key.long);
            };
            // Next to each other: nothing but the first one's help between them.
            assert!(!help[on..off].contains("\n      --"), "{}", &help[on..off]);
        }
    }

    #[test]
    fn readme_lists_every_key() {
        let readme = include_str!("../docs/configuration.md");
        for key in KEYS {
            let default = match key.default {
                "" => "none".to_owned(),
                d => format!("`{d}`"),
            };
            let row = format!(
                "| `--{}` | `{}` | `NSEXPORTER_{}` | {default}",
                key.long,
                key.name,
                key.name.to_ascii_uppercase().replace('.', "__"),
            );
            assert!(readme.contains(&row), "docs/configuration.md lacks {row:?}");
        }
    }

    #[test]
    fn typed_values_from_every_source() {
        let yaml = "scan:\n  interval: 1m30s\nlog:\n  level: DEBUG\n  format: json\n";
        let s = load_yaml(Flags::default(), &[], yaml).unwrap();
        assert_eq!(s.scan_interval, Duration::from_secs(90));
        assert_eq!(s.log_level, tracing::Level::DEBUG, "level ignores case");
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.per_namespace, PerNamespace::All, "default");
        let yaml = "web:\n  max_requests: 0\n  max_connections: \"8\"\n  idle_timeout: 5m\n";
        let s = load_yaml(Flags::default(), &[], yaml).unwrap();
        assert_eq!(s.limits.max_requests, 0, "a YAML number");
        assert_eq!(s.limits.max_connections, 8, "a YAML string");
        assert_eq!(s.limits.idle_timeout, Duration::from_secs(300));
        let env = [("NSEXPORTER_METRICS__PER_NAMESPACE", "none")];
        let s = load_yaml(
            Flags::default(),
            &env,
            "metrics:\n  per_namespace: shared\n",
        )
        .unwrap();
        assert_eq!(s.per_namespace, PerNamespace::None, "env beats file");
        let flags = Flags {
            per_namespace: Some("shared".into()),
            ..Flags::default()
        };
        let s = load_yaml(flags, &env, "").unwrap();
        assert_eq!(s.per_namespace, PerNamespace::Shared, "flag beats env");
    }

    #[test]
    fn bad_typed_values_name_their_key_first() {
        let cases = [
            (
                "metrics:\n  per_namespace: x\n",
                "metrics.per_namespace: \"x\" is not one of all, shared, none",
            ),
            // Names other than the level's are exact.
            (
                "metrics:\n  per_namespace: All\n",
                "metrics.per_namespace: \"All\" is not one of all, shared, none",
            ),
            (
                "log:\n  format: JSON\n",
                "log.format: \"JSON\" is not one of logfmt, json",
            ),
            (
                "log:\n  level: 3\n",
                "log.level: \"3\" is not one of error, warn, info, debug, trace",
            ),
            (
                "scan:\n  interval: 15\n",
                "scan.interval: \"15\": a unit is needed (Go's syntax: 1s, 300ms)",
            ),
            (
                "scan:\n  interval: -1s\n",
                "scan.interval: \"-1s\" is negative",
            ),
            (
                "scan:\n  interval: [1]\n",
                "scan.interval: invalid type: sequence, expected a string",
            ),
            (
                "web:\n  telemetry_path: {a: b}\n",
                "web.telemetry_path: invalid type: map, expected a string",
            ),
            (
                "web:\n  max_requests: many\n",
                "web.max_requests: \"many\" is not a whole number",
            ),
            (
                "web:\n  max_connections: -1\n",
                "web.max_connections: \"-1\" is not a whole number",
            ),
            (
                "web:\n  idle_timeout: 0s\n",
                "web.idle_timeout: \"0s\" would close every connection at once",
            ),
            (
                "scan:\n  interval: 99ms\n",
                "scan.interval: \"99ms\" is shorter than the minimum of 100ms",
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(
                load_yaml(Flags::default(), &[], yaml).unwrap_err(),
                want,
                "{yaml:?}"
            );
        }
    }
}
