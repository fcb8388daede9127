//! Configuration: flags beat environment beats file beats defaults.
//!
//! Two stages, as in ripgrep's low/high args: [`RawConfig`] mirrors the YAML file, the
//! `NSEXPORTER_SECTION__KEY` environment variables and the node_exporter-style flags
//! (`--section.key-name`), merged by the `config` crate (`sources.rs`); [`Settings::try_from`]
//! parses each key's value into its type and checks what a type cannot say: that the procfs
//! exists, the interval's minimum, the telemetry path's shape, the listen address
//! (`check.rs`), and one key against another (`settings.rs`). Every error names the key it is
//! about, on one line.
//!
//! Each key is declared once, in the table in `keys.rs`: name, flag, default, help, parse and
//! the [`Settings`] field it fills. The macro in `table.rs` makes from it the YAML section
//! structs, the clap [`Flags`] (with the default in each flag's help), the [`KEY`] table and
//! the [`KEYS`] list that the loader walks to set defaults and flag overrides, and
//! [`Settings`]; adding a key is one entry. Code that needs a key says `KEY.scan_interval`,
//! never its name in a string.

mod check;
mod cli;
mod error;
mod keys;
mod settings;
mod sources;
mod table;
mod value;

#[cfg(test)]
mod tests;

pub use check::ListenAddress;
pub use cli::{Cli, Command, OutputFormat};
pub use error::{ConfigError, FileProblem};
pub use keys::{
    DEFAULT_LISTEN_ADDRESS, DEFAULT_PROCFS, Flags, KEY, KEYS, Key, Keys, RawConfig, Settings,
};
pub use sources::{CONFIG_FILE_LIMIT, read_config_file};
pub use value::{LogFormat, LogLevel, parse_bool, parse_duration};

/// `metrics.per_namespace`, the metrics stage's own type: a serde enum of lowercase names.
pub use crate::metrics::PerNamespace;
pub use crate::scan::{PinScan, ThreadScan};
