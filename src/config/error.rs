//! The errors of the configuration: each one a line that names the key, or the config file,
//! it is about.

use std::path::PathBuf;

use crate::files::YamlProblem;
use crate::policy::PolicyError;

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

/// The error of a bad value: `key: problem`.
pub(super) fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}
