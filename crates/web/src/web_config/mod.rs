//! `--web.config.file`: TLS, basic auth, response headers and a rate limit, in the format of
//! Prometheus's exporter-toolkit (`web.yml`), read as exporter-toolkit reads it, so that a
//! node_exporter user's file works as it is.
//!
//! The file is parsed strictly, as exporter-toolkit parses it (go-yaml's `UnmarshalStrict`): an
//! unknown key fails at start with one line that names it, and so does a known one that
//! rustls cannot honour ([`tls`]). The file, its certificate, key and client CA are re-read
//! when one of them changes ([`WebConfigFile::reload_if_changed`], once a second), so that a
//! certificate rotated by cert-manager is served without a restart; a bad new file keeps the
//! running configuration. Where exporter-toolkit and nsexporter differ, and why, is one table
//! in docs/tls-and-auth.md ("Differences from exporter-toolkit").

mod go;
pub mod rate_limit;
pub mod tls;
mod users;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::files::{self, Stamp, Symlinks};

pub use rate_limit::RateLimit;
pub use tls::Tls;
pub use users::Users;

/// The largest web config file accepted, as for `--config.file`; also for the files it names.
const FILE_LIMIT: u64 = 1024 * 1024;

/// A web config problem, on one line: the file, the key in it (empty for the file as a whole)
/// and what is wrong.
#[derive(Debug)]
pub struct WebConfigError {
    pub path: PathBuf,
    pub key: String,
    pub problem: String,
}

impl std::fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "web.config_file: {}: ", self.path.display())?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.problem)
    }
}

impl std::error::Error for WebConfigError {}

/// The file as written (exporter-toolkit's key names and Go's types, [`go`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    rate_limit: Option<RawRateLimit>,
    #[serde(default, deserialize_with = "go::string_map")]
    basic_auth_users: BTreeMap<String, String>,
}

/// `tls_server_config`. An empty string is a key left out, as in Go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default, deserialize_with = "go::string")]
    cert_file: String,
    #[serde(default, deserialize_with = "go::string")]
    key_file: String,
    /// Inline PEM, which exporter-toolkit also takes.
    #[serde(default, deserialize_with = "go::string")]
    cert: String,
    #[serde(default, deserialize_with = "go::string")]
    key: String,
    #[serde(default, deserialize_with = "go::string")]
    client_auth_type: String,
    #[serde(default, deserialize_with = "go::string")]
    client_ca_file: String,
    /// Inline PEM of client CAs.
    #[serde(default, deserialize_with = "go::string")]
    client_ca: String,
    #[serde(default, deserialize_with = "go::optional_strings")]
    client_allowed_sans: Option<Vec<String>>,
    #[serde(default, deserialize_with = "go::optional_strings")]
    cipher_suites: Option<Vec<String>>,
    #[serde(default, deserialize_with = "go::optional_strings")]
    curve_preferences: Option<Vec<String>>,
    #[serde(default, deserialize_with = "go::string")]
    min_version: String,
    #[serde(default, deserialize_with = "go::string")]
    max_version: String,
    /// Read and ignored, as Go (since 1.17) ignores it: the order is Go's ([`tls`]).
    #[serde(default, deserialize_with = "go::boolean")]
    #[allow(dead_code)]
    prefer_server_cipher_suites: bool,
}

/// `http_server_config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// True unless set false, as in exporter-toolkit. HTTP/1.1 is served either way; it
    /// decides whether a TLS 1.2 suite list must hold one that HTTP/2 requires, as in Go.
    #[serde(default = "yes", deserialize_with = "go::boolean")]
    http2: bool,
    #[serde(default, deserialize_with = "go::string_map")]
    headers: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// `rate_limit` ([`rate_limit`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    #[serde(default, deserialize_with = "go::int")]
    burst: i64,
    /// Nanoseconds.
    #[serde(default, deserialize_with = "go::duration")]
    interval: i64,
}

/// A loaded, validated web config.
pub struct WebConfig {
    /// None: plain HTTP.
    pub tls: Option<Tls>,
    /// None: no basic auth.
    pub users: Option<Arc<Users>>,
    /// Added to every response but a 429, as exporter-toolkit adds them.
    pub headers: HeaderMap,
    /// None: no limit.
    pub rate_limit: Option<Arc<RateLimit>>,
    /// What the file asks for that is served otherwise than it might expect; logged at load.
    pub warnings: Vec<String>,
}

/// The headers exporter-toolkit lets a file set, with the values it allows (None: any). Names
/// and values are compared exactly, as exporter-toolkit compares them.
const HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

impl WebConfig {
    /// Parses the file's text; `path` is for errors, and relative files are resolved against
    /// the file's directory, as exporter-toolkit does.
    pub fn parse(path: &Path, text: &str) -> Result<WebConfig, WebConfigError> {
        let fail = |key: &str, problem: String| WebConfigError {
            path: path.to_owned(),
            key: key.to_owned(),
            problem,
        };
        let raw = parse_yaml(text).map_err(|(key, problem)| fail(&key, problem))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut warnings = Vec::new();
        let (http2, raw_headers) = match raw.http_server_config {
            Some(h) => (h.http2, h.headers),
            None => (true, BTreeMap::new()),
        };
        let mut headers = HeaderMap::new();
        for (name, value) in raw_headers {
            let key = format!("http_server_config.headers.{name}");
            let Some((canonical, allowed)) = HEADERS.iter().find(|(h, _)| *h == name) else {
                let names: Vec<&str> = HEADERS.iter().map(|(h, _)| *h).collect();
                return Err(fail(
                    &key,
                    format!("can not be configured (one of {})", names.join(", ")),
                ));
            };
            if let Some(allowed) = allowed
                && !allowed.contains(&value.as_str())
            {
                return Err(fail(
                    &key,
                    format!("invalid value {value:?}: one of {}", allowed.join(", ")),
                ));
            }
            // Go writes a line break in a header value as a space.
            let value = value.replace(['\r', '\n'], " ");
            let value = HeaderValue::from_str(&value)
                .map_err(|_| fail(&key, format!("{value:?} has control characters")))?;
            // The table's names are valid; `from_bytes` lowercases them.
            let name = HeaderName::from_bytes(canonical.as_bytes()).expect("a valid name");
            headers.insert(name, value);
        }
        for (user, hash) in &raw.basic_auth_users {
            users::check_hash(hash).map_err(|p| fail(&format!("basic_auth_users.{user}"), p))?;
        }
        let tls = match raw.tls_server_config {
            None => None,
            Some(raw_tls) => {
                let on = tls::check_names(&raw_tls).map_err(|(k, p)| fail(&k, p))?;
                if on {
                    Some(
                        tls::build(dir, raw_tls, http2, &mut warnings)
                            .map_err(|(k, p)| fail(&k, p))?,
                    )
                } else {
                    warnings.push(
                        "tls_server_config names no certificate, key, client CA or \
                         client_auth_type, so TLS is off: plain HTTP, as in exporter-toolkit"
                            .to_owned(),
                    );
                    None
                }
            }
        };
        let rate_limit = raw
            .rate_limit
            .and_then(|r| RateLimit::new(r.interval, r.burst))
            .map(Arc::new);
        let users =
            (!raw.basic_auth_users.is_empty()).then(|| Arc::new(Users::new(raw.basic_auth_users)));
        Ok(WebConfig {
            tls,
            users,
            headers,
            rate_limit,
            warnings,
        })
    }
}

/// YAML → JSON value → [`RawWebConfig`], so that serde's errors carry the key's path.
fn parse_yaml(text: &str) -> Result<RawWebConfig, (String, String)> {
    crate::files::check_yaml(text.as_bytes()).map_err(|e| (String::new(), e.to_string()))?;
    let docs =
        yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| (String::new(), e.to_string()))?;
    let value = match docs.as_slice() {
        [] => return Ok(RawWebConfig::default()),
        [doc] => yaml_to_json(doc).map_err(|p| (String::new(), p))?,
        _ => return Err((String::new(), "more than one YAML document".into())),
    };
    if value.is_null() {
        return Ok(RawWebConfig::default());
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." { String::new() } else { path };
        (key, e.into_inner().to_string())
    })
}

fn yaml_to_json(y: &yaml_rust2::Yaml) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    use yaml_rust2::Yaml;
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        // Its text: a string field takes it as written, and no field of the file is a float.
        Yaml::Real(r) => Value::String(r.clone()),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(h) => {
            let mut map = serde_json::Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => return Err(format!("{other:?} is not a key")),
                };
                map.insert(key, yaml_to_json(v)?);
            }
            Value::Object(map)
        }
        Yaml::Alias(_) | Yaml::BadValue => return Err("not a YAML value".into()),
    })
}

type KeyProblem = (String, String);

fn problem(key: &str, problem: impl Into<String>) -> KeyProblem {
    (key.to_owned(), problem.into())
}

/// Reads a file the config names, within [`FILE_LIMIT`].
fn read_named(dir: &Path, key: &str, file: &Path) -> Result<Vec<u8>, KeyProblem> {
    let path = dir.join(file);
    read_limited(&path).map_err(|p| problem(key, format!("{}: {p}", path.display())))
}

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    files::read_bounded(path, FILE_LIMIT, Symlinks::FollowAny).map_err(|e| e.to_string())
}

/// The web config file and what was loaded from it, reloaded when it or a file it names
/// changes.
pub struct WebConfigFile {
    path: PathBuf,
    current: Mutex<Arc<WebConfig>>,
    /// The files read for `current` (or for the last failed attempt), with their stamps.
    stamps: Mutex<Vec<(PathBuf, Stamp)>>,
}

impl WebConfigFile {
    /// Loads the file; an error fails the start.
    pub fn open(path: &Path) -> Result<WebConfigFile, WebConfigError> {
        let (stamps, config) = load(path);
        let config = config?;
        warn(path, &config);
        Ok(WebConfigFile {
            path: path.to_owned(),
            current: Mutex::new(Arc::new(config)),
            stamps: Mutex::new(stamps),
        })
    }

    /// What a new connection is served with.
    pub fn current(&self) -> Arc<WebConfig> {
        Arc::clone(&self.current.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reloads when a file changed: None when nothing did, else whether the reload worked.
    /// A failed one keeps the running config, and is tried again when a file changes again
    /// (the stamps kept are those taken before the failed read: a certificate whose key was
    /// read half-rotated is read again once its own write is seen). Blocking (it stats and
    /// reads files).
    pub fn reload_if_changed(&self) -> Option<Result<(), WebConfigError>> {
        {
            let stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
            if stamps.iter().all(|(p, s)| Stamp::path(p) == *s) {
                return None;
            }
        }
        let (stamps, loaded) = load(&self.path);
        *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) = stamps;
        let config = match loaded {
            Ok(c) if c.tls.is_none() && self.current().tls.is_some() => {
                return Some(Err(WebConfigError {
                    path: self.path.clone(),
                    key: "tls_server_config".into(),
                    problem: "is gone: turning TLS off takes a restart".into(),
                }));
            }
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        // The bucket carries over while its settings stay: a reload is no way to reset it.
        let mut config = config;
        if let (Some(old), Some(new)) = (&self.current().rate_limit, &config.rate_limit)
            && old.settings() == new.settings()
        {
            config.rate_limit = Some(Arc::clone(old));
        }
        warn(&self.path, &config);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Some(Ok(()))
    }
}

/// Logs a loaded file's warnings, once each load (a load follows a change only).
fn warn(path: &Path, config: &WebConfig) {
    for w in &config.warnings {
        tracing::warn!(file = %path.display(), "web config: {w}");
    }
}

/// Stats, then reads: a file written between the two is read again at the next check. The
/// stamps come back whether the load worked or not.
fn load(path: &Path) -> (Vec<(PathBuf, Stamp)>, Result<WebConfig, WebConfigError>) {
    let fail = |problem: String| WebConfigError {
        path: path.to_owned(),
        key: String::new(),
        problem,
    };
    let mut stamps = vec![(path.to_owned(), Stamp::path(path))];
    let text = match read_limited(path).map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => return (stamps, Err(fail(format!("not UTF-8: {e}")))),
        Err(e) => return (stamps, Err(fail(e))),
    };
    // The files it names, stamped before the parse reads them.
    if let Ok(raw) = parse_yaml(&text)
        && let Some(tls) = &raw.tls_server_config
    {
        let dir = path.parent().unwrap_or(Path::new("."));
        for f in [&tls.cert_file, &tls.key_file, &tls.client_ca_file]
            .into_iter()
            .filter(|f| !f.is_empty())
        {
            let p = dir.join(f);
            stamps.push((p.clone(), Stamp::path(&p)));
        }
    }
    let config = WebConfig::parse(path, &text);
    (stamps, config)
}

/// Checks the files once a second, on tokio's blocking pool (a hung filesystem must not stall
/// the runtime's one thread), and logs each reload or failed one on one line.
pub async fn reload_on_change(file: Arc<WebConfigFile>) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let f = Arc::clone(&file);
        match tokio::task::spawn_blocking(move || f.reload_if_changed()).await {
            Ok(None) => {}
            Ok(Some(Ok(()))) => tracing::info!(file = %file.path.display(), "web config reloaded"),
            Ok(Some(Err(e))) => {
                tracing::error!(error = %e, "web config reload failed; keeping the running one")
            }
            Err(e) => tracing::warn!(error = %e, "web config reload task failed"),
        }
    }
}

#[cfg(test)]
mod tests;
