//! Values and their parsing: each function takes a key's text, whichever source it came from
//! (a flag, a variable, the file, the default), and says what is wrong with it in words that
//! follow the key's name on one line.
//!
//! The config file's scalars come as text too: `config` hands a YAML number or boolean over as
//! its text, so `max_requests: 8` and `max_requests: "8"` are one value.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A boolean: what kingpin's flags take (Go's `strconv.ParseBool`) and web.yml's YAML 1.1
/// words, from every source ([`nsexporter_web::dialect`]).
pub fn parse_bool(text: &str) -> Result<bool, String> {
    nsexporter_web::dialect::parse_bool(text.trim())
}

/// A duration in Go's syntax (`15s`, `1m30s`), as web.yml reads them
/// ([`nsexporter_web::dialect`]); not negative.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let nanos = nsexporter_web::dialect::parse_duration(text)?;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| format!("{text:?} is negative"))
}

/// A path as written.
pub fn path(text: &str) -> Result<PathBuf, String> {
    Ok(text.into())
}

/// A whole number.
pub fn count(text: &str) -> Result<usize, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))
}

/// A serde enum of lowercase names: a bad name is `"x" is not one of a, b, c`, listing the
/// names serde derived.
pub fn one_of<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    name(text)
}

/// [`one_of`], ignoring case.
pub fn one_of_any_case<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    name(&text.to_ascii_lowercase())
}

fn name<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    T::deserialize(serde::de::value::StrDeserializer::<NameError>::new(text)).map_err(|e| e.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_take_go_parse_bools_forms() {
        for text in ["true", "True", "TRUE", "t", "T", "1"] {
            assert_eq!(parse_bool(text), Ok(true), "{text:?}");
        }
        for text in ["false", "False", "FALSE", "f", "F", "0"] {
            assert_eq!(parse_bool(text), Ok(false), "{text:?}");
        }
        // Neither Go's ParseBool nor YAML 1.1 has these.
        for text in ["maybe", "tRUE", "", "2"] {
            assert!(parse_bool(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn names_are_serdes_and_only_the_level_ignores_case() {
        assert_eq!(one_of::<LogFormat>("json"), Ok(LogFormat::Json));
        assert_eq!(
            one_of::<LogFormat>("JSON"),
            Err("\"JSON\" is not one of logfmt, json".to_owned())
        );
        assert_eq!(one_of_any_case::<LogLevel>("WaRn"), Ok(LogLevel::Warn));
        assert_eq!(count(" 8 "), Ok(8));
        assert_eq!(count("-1"), Err("\"-1\" is not a whole number".to_owned()));
    }
}
