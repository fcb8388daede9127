//! Configuration: flags beat environment beats file beats defaults.
//!
//! Two stages, as in ripgrep's low/high args: [`RawConfig`] mirrors the YAML file, the
//! `NSEXPORTER_SECTION__KEY` environment variables and the node_exporter-style flags
//! (`--section.key-name`), merged by the `config` crate; [`Settings::try_from`] validates it.
//! Every error names the key it is about, on one line.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::policy::{Policy, PolicyError, RawPolicy};

/// Where the host's /proc is by default. The only place the literal appears.
pub const DEFAULT_PROCFS: &str = "/proc";
/// Every interface, port 9917, in node_exporter's `:PORT` form.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":9917";

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
    #[error("{0}")]
    Load(#[from] config::ConfigError),
    #[error("{key}: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error(transparent)]
    Policy(#[from] PolicyError),
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
            if !file.is_file() {
                return Err(invalid(
                    "config.file",
                    format!("{}: no such file", file.display()),
                ));
            }
            b = b.add_source(config::File::new(
                &file.to_string_lossy(),
                config::FileFormat::Yaml,
            ));
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
        Ok(b.build()?.try_deserialize()?)
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
}
