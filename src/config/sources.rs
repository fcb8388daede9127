//! The sources of a configuration, merged by the `config` crate: the key table's defaults, the
//! YAML file named by `--config.file`, the `NSEXPORTER_SECTION__KEY` environment variables
//! and the flags, each beating the one before.
//!
//! A config file is untrusted input that a SIGHUP re-reads in a running exporter, so what it
//! can cost is bounded before the `config` crate sees it: at most [`CONFIG_FILE_LIMIT`] bytes,
//! read once, and no YAML aliases. yaml-rust2, under `config`, expands every alias into a copy
//! of its anchor's node, so a few hundred bytes of nested aliases ("billion laughs") ask for
//! gigabytes. The check is a pass of yaml-rust2's event parser, which does not expand aliases.

use std::path::Path;

use super::error::{ConfigError, FileProblem};
use super::keys::{Flags, KEYS, RawConfig};
use crate::files::{self, ReadError, Symlinks, YamlProblem, check_yaml};

/// The largest config file accepted, in bytes (1 MiB): room for any policy a person writes.
pub const CONFIG_FILE_LIMIT: u64 = 1024 * 1024;

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
        // A key's value stays as `config` merged it until the key's own parse, whose errors
        // name the key; what is left here is the file's shape (an unknown key, the policy).
        Ok(built.try_deserialize()?)
    }
}
