//! Configuration: flags beat environment beats file beats defaults.
//!
//! Two stages, as in ripgrep's low/high args: [`RawConfig`] mirrors the YAML file, the
//! `NSEXPORTER_SECTION__KEY` environment variables and the node_exporter-style flags
//! (`--section.key-name`), merged by the `config` crate; [`Settings::try_from`] validates it.
//! Every error names the key it is about, on one line.
//!
//! A config file is untrusted input that a SIGHUP re-reads in a running exporter, so what it
//! can cost is bounded before the `config` crate sees it: at most [`CONFIG_FILE_LIMIT`] bytes,
//! read once, and no YAML aliases. yaml-rust2, under `config`, expands every alias into a copy
//! of its anchor's node, so a few hundred bytes of nested aliases ("billion laughs") ask for
//! gigabytes. The check is a pass of yaml-rust2's event parser, which does not expand aliases.

use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::policy::{Policy, PolicyError, RawPolicy};

/// Where the host's /proc is by default. The only place the literal appears.
pub const DEFAULT_PROCFS: &str = "/proc";
/// Every interface, port 9917, in node_exporter's `:PORT` form.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":9917";
/// The largest config file accepted, in bytes (1 MiB): the shipped configs are under 2 KiB.
pub const CONFIG_FILE_LIMIT: u64 = 1024 * 1024;

/// nsexporter: a Prometheus exporter that makes Linux kernel namespaces visible.
#[derive(Debug, Parser)]
#[command(name = "nsexporter", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub flags: Flags,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags shared by every command. Unset flags leave the key to the environment, file or default.
#[derive(Clone, Debug, Default, Args)]
pub struct Flags {
    /// YAML configuration file.
    #[arg(long = "config.file", global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Address to listen on for HTTP [default: :9917].
    #[arg(long = "web.listen-address", global = true, value_name = "ADDR")]
    pub listen_address: Option<String>,
    /// Path under which to expose metrics [default: /metrics].
    #[arg(long = "web.telemetry-path", global = true, value_name = "PATH")]
    pub telemetry_path: Option<String>,
    /// procfs mountpoint [default: /proc].
    #[arg(long = "path.procfs", global = true, value_name = "DIR")]
    pub procfs: Option<String>,
    /// The kubelet's container log directory, whose file names give pod and container names
    /// [default: /var/log/containers].
    #[arg(long = "path.kubelet-logs", global = true, value_name = "DIR")]
    pub kubelet_logs: Option<String>,
    /// Time between two scans of the procfs [default: 15s].
    #[arg(long = "scan.interval", global = true, value_name = "DURATION")]
    pub scan_interval: Option<String>,
    /// Only log messages at or above this level: error, warn, info, debug, trace [default: info].
    #[arg(long = "log.level", global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format: logfmt or json [default: logfmt].
    #[arg(long = "log.format", global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
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
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// The configuration as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub web: RawWeb,
    pub path: RawPath,
    pub scan: RawScan,
    pub log: RawLog,
    #[serde(default)]
    pub policy: RawPolicy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    pub listen_address: String,
    pub telemetry_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPath {
    pub procfs: String,
    pub kubelet_logs: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScan {
    pub interval: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: String,
    pub format: String,
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
    #[error("not UTF-8 (byte {0})")]
    NotUtf8(usize),
    /// The text is not YAML; the message carries the position.
    #[error("{0}")]
    Syntax(#[from] yaml_rust2::ScanError),
    #[error("YAML aliases (*{name}) are not supported (line {line})")]
    Alias { name: String, line: usize },
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
    // Also keeps a FIFO or a device from blocking or feeding the read.
    if !path.is_file() {
        return Err(refuse(FileProblem::Missing));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(CONFIG_FILE_LIMIT + 1).read_to_end(&mut bytes))
        .map_err(|e| refuse(e.into()))?;
    if bytes.len() as u64 > CONFIG_FILE_LIMIT {
        return Err(refuse(FileProblem::TooLarge {
            limit: CONFIG_FILE_LIMIT,
        }));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| refuse(FileProblem::NotUtf8(e.utf8_error().valid_up_to())))?;
    check_yaml(text.as_bytes()).map_err(refuse)?;
    Ok(text)
}

/// Checks that `bytes` are UTF-8 YAML without aliases, in one pass of yaml-rust2's event
/// parser (no tree is built, nothing is expanded). Anchors alone are allowed: only an alias
/// can repeat one. The parser also limits nesting depth, which `config`'s recursive
/// conversion of the tree would otherwise pay for in stack.
pub fn check_yaml(bytes: &[u8]) -> Result<(), FileProblem> {
    use yaml_rust2::parser::{Event, Parser};
    let text = std::str::from_utf8(bytes).map_err(|e| FileProblem::NotUtf8(e.valid_up_to()))?;
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token()? {
            (Event::StreamEnd, _) => return Ok(()),
            (Event::Alias(_), mark) => {
                return Err(FileProblem::Alias {
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

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
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
        let mut b = config::Config::builder()
            .set_default("web.listen_address", DEFAULT_LISTEN_ADDRESS)?
            .set_default("web.telemetry_path", "/metrics")?
            .set_default("path.procfs", DEFAULT_PROCFS)?
            .set_default("path.kubelet_logs", "/var/log/containers")?
            .set_default("scan.interval", "15s")?
            .set_default("log.level", "info")?
            .set_default("log.format", "logfmt")?;
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
        for (key, value) in [
            ("web.listen_address", &flags.listen_address),
            ("web.telemetry_path", &flags.telemetry_path),
            ("path.procfs", &flags.procfs),
            ("path.kubelet_logs", &flags.kubelet_logs),
            ("scan.interval", &flags.scan_interval),
            ("log.level", &flags.log_level),
            ("log.format", &flags.log_format),
        ] {
            if let Some(v) = value {
                b = b.set_override(key, v.as_str())?;
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
        Ok(built.try_deserialize()?)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen_address: Vec<SocketAddr>,
    pub listen_address_text: String,
    pub telemetry_path: String,
    pub procfs: PathBuf,
    /// Optional: where it does not exist only container ids and pod uids are known.
    pub kubelet_logs: PathBuf,
    pub scan_interval: Duration,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
    pub policy: Policy,
}

impl TryFrom<RawConfig> for Settings {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Settings, ConfigError> {
        let listen_address = parse_listen_address(&raw.web.listen_address)
            .map_err(|p| invalid("web.listen_address", p))?;
        let path = raw.web.telemetry_path;
        if !path.starts_with('/') || ["/", "/healthz", "/readyz"].contains(&path.as_str()) {
            return Err(invalid(
                "web.telemetry_path",
                format!("{path:?} must start with / and not be /, /healthz or /readyz"),
            ));
        }
        let procfs = PathBuf::from(&raw.path.procfs);
        if !procfs.join("1").is_dir() {
            return Err(invalid(
                "path.procfs",
                format!(
                    "{} is not a procfs: {} does not exist",
                    procfs.display(),
                    procfs.join("1").display()
                ),
            ));
        }
        let scan_interval = humantime::parse_duration(&raw.scan.interval)
            .map_err(|e| invalid("scan.interval", format!("{:?}: {e}", raw.scan.interval)))?;
        if scan_interval < Duration::from_millis(100) {
            return Err(invalid(
                "scan.interval",
                format!(
                    "{:?} is shorter than the minimum of 100ms",
                    raw.scan.interval
                ),
            ));
        }
        let log_level = match raw.log.level.to_ascii_lowercase().as_str() {
            "error" => tracing::Level::ERROR,
            "warn" => tracing::Level::WARN,
            "info" => tracing::Level::INFO,
            "debug" => tracing::Level::DEBUG,
            "trace" => tracing::Level::TRACE,
            other => {
                return Err(invalid(
                    "log.level",
                    format!("{other:?} is not one of error, warn, info, debug, trace"),
                ));
            }
        };
        let log_format = match raw.log.format.as_str() {
            "logfmt" => LogFormat::Logfmt,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("{other:?} is not one of logfmt, json"),
                ));
            }
        };
        Ok(Settings {
            policy: Policy::try_from(raw.policy)?,
            kubelet_logs: PathBuf::from(raw.path.kubelet_logs),
            listen_address,
            listen_address_text: raw.web.listen_address,
            telemetry_path: path,
            procfs,
            scan_interval,
            log_level,
            log_format,
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
        let s = load(Flags::default(), &[]).unwrap();
        assert_eq!(s.scan_interval, Duration::from_secs(15));
        assert_eq!(s.telemetry_path, "/metrics");
        assert_eq!(s.listen_address_text, ":9917");
        assert_eq!(s.listen_address[1], "0.0.0.0:9917".parse().unwrap());
        assert_eq!(s.procfs, PathBuf::from("/proc"));
        assert_eq!(s.log_format, LogFormat::Logfmt);
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
            Err(FileProblem::Alias { name, line }) => Some((name, line)),
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
            problem: check_yaml(bomb.as_bytes()).unwrap_err(),
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
            assert!(matches!(err, FileProblem::Syntax(_)), "{err:?}");
            assert!(err.to_string().contains(" line "), "{err}");
        }
        assert!(matches!(
            check_yaml(b"a: \xff\n"),
            Err(FileProblem::NotUtf8(3))
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
}
