//! `--web.config.file`: TLS, basic auth and response headers, in the format of Prometheus's
//! exporter-toolkit (`web.yml`), so that a node_exporter user's file works as it is.
//!
//! The file is parsed strictly: an unknown key, or a known one that rustls cannot honour
//! (TLS 1.0 and 1.1, `RequestClientCert`, curve P-521, ...), fails at start with one line that
//! names it. The file, its certificate, key and client CA are re-read when one of them changes
//! ([`WebConfigFile::reload_if_changed`], once a second), so that a certificate rotated by
//! cert-manager is served without a restart; a bad new file keeps the running configuration.
//!
//! Basic auth compares bcrypt hashes, which cost tens of milliseconds each by design: a success
//! is cached under the user and the SHA-256 of the password presented, never under the user
//! alone, so a cached success cannot let another password in (CVE-2022-46146, where
//! exporter-toolkit's cache key let it). Failures are not cached, so that a client guessing
//! passwords cannot flush the scraper's success out. Requests that present the same
//! credentials while they are being compared wait for that one comparison (its answer is for
//! that user and password alone, as the cache's). The cache lives with one loaded file: a
//! reload starts an empty one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use rustls::ServerConfig;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The largest web config file accepted, as for `--config.file`.
const FILE_LIMIT: u64 = 1024 * 1024;
/// Verified (user, password digest) pairs kept; the cache is emptied when it is full (only
/// right passwords get in, so it fills only when the users do).
const CACHE_LIMIT: usize = 1024;
/// bcrypt comparisons run at once; more wait. A bound on the CPU a client guessing passwords
/// can take (connections bound it too, at `--web.max-connections`).
const CONCURRENT_CHECKS: usize = 4;
/// A bcrypt hash at cost 10 (the cost a `htpasswd -B` hash has by default) of a password no user
/// has, compared for an unknown user so that the answer takes as long as for a known one; a
/// unit test checks that it is a valid hash.
const UNKNOWN_USER_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

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

/// The file as written (exporter-toolkit's key names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: RawHttp,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    /// Inline PEM, which exporter-toolkit also accepts.
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_allowed_sans: Option<Vec<String>>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A loaded, validated web config.
pub struct WebConfig {
    /// None: plain HTTP.
    pub tls: Option<Arc<ServerConfig>>,
    /// None: no basic auth.
    pub users: Option<Arc<Users>>,
    /// Added to every response.
    pub headers: HeaderMap,
}

/// A user and the SHA-256 of the password presented: what the cache and the comparisons under
/// way are keyed by, never the user alone.
type Credentials = (String, [u8; 32]);

/// One comparison's answer, shared by the requests that wait for it.
type Comparison = Arc<tokio::sync::OnceCell<bool>>;

/// `basic_auth_users`: bcrypt hashes by user, and the verified successes.
pub struct Users {
    hashes: BTreeMap<String, String>,
    /// Credentials that matched.
    verified: Mutex<HashSet<Credentials>>,
    /// Comparisons under way, each with the requests waiting for it: an entry lives while a
    /// request holds it, so there are never more than requests being answered (one a
    /// connection, within `--web.max-connections`).
    comparing: Mutex<HashMap<Credentials, Comparison>>,
    /// Turns for a bcrypt comparison, [`CONCURRENT_CHECKS`] of them.
    checks: tokio::sync::Semaphore,
    /// bcrypt comparisons done, for the tests.
    compared: AtomicU64,
}

impl Users {
    fn new(hashes: BTreeMap<String, String>) -> Users {
        Users {
            hashes,
            verified: Mutex::new(HashSet::new()),
            comparing: Mutex::new(HashMap::new()),
            checks: tokio::sync::Semaphore::new(CONCURRENT_CHECKS),
            compared: AtomicU64::new(0),
        }
    }

    /// Whether an `Authorization` header value names a user and their password. A bcrypt
    /// comparison that is not cached runs on tokio's blocking pool: it takes 58 ms at cost 10
    /// on a 2-vCPU VM (twice that while other work takes the cores), and the runtime's one
    /// thread serves every connection.
    /// Scrapers that connect at once all miss the cache: they wait for one comparison of their
    /// credentials, not one each (with the same four at once, on two cores, the slowest of 200
    /// scrapers' first scrapes waited 175-185 ms, against 80-90 ms for one).
    pub async fn allow(self: &Arc<Self>, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let key = (user, Sha256::digest(password.as_bytes()).into());
        if self.cache().contains(&key) {
            return true;
        }
        let waiting = Waiting::join(self, key);
        let comparison = waiting.comparison.as_ref().expect("held until dropped");
        *comparison
            .get_or_init(|| self.compare(&waiting.key, password))
            .await
    }

    /// One bcrypt comparison of `password` with `key`'s user's hash, in turn; a success is
    /// cached. A request whose wait is cut short (its connection closed) leaves the comparison
    /// to the next request waiting for it.
    async fn compare(self: &Arc<Self>, key: &Credentials, password: String) -> bool {
        let Ok(_turn) = self.checks.acquire().await else {
            return false;
        };
        // A comparison of the same credentials may have finished, and left, since this
        // request looked.
        if self.cache().contains(key) {
            return true;
        }
        let users = Arc::clone(self);
        let user = key.0.clone();
        let ok = tokio::task::spawn_blocking(move || {
            users.compared.fetch_add(1, Ordering::Relaxed);
            let (hash, known) = match users.hashes.get(&user) {
                Some(h) => (h.as_str(), true),
                None => (UNKNOWN_USER_HASH, false),
            };
            let matched = bcrypt::verify(&password, hash).unwrap_or(false);
            known && matched
        })
        .await
        .unwrap_or(false);
        if ok {
            let mut cache = self.cache();
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key.clone());
        }
        ok
    }

    fn cache(&self) -> MutexGuard<'_, HashSet<Credentials>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn comparing(&self) -> MutexGuard<'_, HashMap<Credentials, Comparison>> {
        self.comparing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request's hold on the comparison of its credentials; the last one to let go removes it.
struct Waiting<'a> {
    users: &'a Users,
    key: Credentials,
    comparison: Option<Comparison>,
}

impl Waiting<'_> {
    fn join(users: &Users, key: Credentials) -> Waiting<'_> {
        let comparison = Arc::clone(users.comparing().entry(key.clone()).or_default());
        Waiting {
            users,
            key,
            comparison: Some(comparison),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut comparing = self.users.comparing();
        // Every clone is made and dropped under the lock, so the count read under it is exact.
        drop(self.comparison.take());
        if comparing
            .get(&self.key)
            .is_some_and(|c| Arc::strong_count(c) == 1)
        {
            comparing.remove(&self.key);
        }
    }
}

/// `Basic base64(user:password)` → (user, password).
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The headers exporter-toolkit lets a file set, with the values it allows (None: any).
const HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

/// Go's names of the TLS versions that rustls speaks.
const VERSIONS: &[(&str, &rustls::SupportedProtocolVersion)] = &[
    ("TLS12", &rustls::version::TLS12),
    ("TLS13", &rustls::version::TLS13),
];

/// Go's curve names and ring's key exchange groups (by rustls's `NamedGroup` name).
const CURVES: &[(&str, &str)] = &[
    ("X25519", "X25519"),
    ("CurveP256", "secp256r1"),
    ("CurveP384", "secp384r1"),
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
        let tls = match raw.tls_server_config {
            // exporter-toolkit serves plain HTTP for an empty section.
            Some(tls) if tls == RawTls::default() => None,
            None => None,
            Some(tls) => Some(Arc::new(
                server_config(dir, tls).map_err(|(key, problem)| fail(&key, problem))?,
            )),
        };
        if raw.http_server_config.http2 == Some(true) {
            return Err(fail(
                "http_server_config.http2",
                "true is not supported: only HTTP/1.1 is served (false, or leave it out)".into(),
            ));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in raw.http_server_config.headers {
            let key = format!("http_server_config.headers.{name}");
            let Some((canonical, allowed)) =
                HEADERS.iter().find(|(h, _)| h.eq_ignore_ascii_case(&name))
            else {
                let names: Vec<&str> = HEADERS.iter().map(|(h, _)| *h).collect();
                return Err(fail(&key, format!("is not one of {}", names.join(", "))));
            };
            if let Some(allowed) = allowed
                && !allowed.iter().any(|a| a.eq_ignore_ascii_case(&value))
            {
                return Err(fail(
                    &key,
                    format!("{value:?} is not one of {}", allowed.join(", ")),
                ));
            }
            let value = HeaderValue::from_str(&value)
                .map_err(|_| fail(&key, format!("{value:?} is not a header value")))?;
            // The table's names are valid; `from_bytes` lowercases them.
            let name = HeaderName::from_bytes(canonical.as_bytes()).expect("a valid name");
            headers.insert(name, value);
        }
        for (user, hash) in &raw.basic_auth_users {
            if let Err(e) = hash.parse::<bcrypt::HashParts>() {
                return Err(fail(
                    &format!("basic_auth_users.{user}"),
                    format!("not a bcrypt hash: {e}"),
                ));
            }
        }
        let users =
            (!raw.basic_auth_users.is_empty()).then(|| Arc::new(Users::new(raw.basic_auth_users)));
        Ok(WebConfig {
            tls,
            users,
            headers,
        })
    }
}

/// YAML → JSON value → [`RawWebConfig`], so that serde's errors carry the key's path.
fn parse_yaml(text: &str) -> Result<RawWebConfig, (String, String)> {
    crate::config::check_yaml(text.as_bytes()).map_err(|e| (String::new(), e.to_string()))?;
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
        Yaml::Real(r) => Value::from(r.parse::<f64>().map_err(|e| format!("{r}: {e}"))?),
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
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(FILE_LIMIT + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > FILE_LIMIT {
        return Err(format!("larger than the limit of {FILE_LIMIT} bytes"));
    }
    Ok(bytes)
}

fn server_config(dir: &Path, tls: RawTls) -> Result<ServerConfig, KeyProblem> {
    const T: &str = "tls_server_config";
    let key = |k: &str| format!("{T}.{k}");
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = &tls.cipher_suites {
        let mut kept: Vec<_> = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
        for name in names {
            let suite = provider
                .cipher_suites
                .iter()
                .find(|s| {
                    s.version() == &rustls::version::TLS12 && format!("{:?}", s.suite()) == *name
                })
                .ok_or_else(|| {
                    let supported: Vec<String> = provider
                        .cipher_suites
                        .iter()
                        .filter(|s| s.version() == &rustls::version::TLS12)
                        .map(|s| format!("{:?}", s.suite()))
                        .collect();
                    problem(
                        &key("cipher_suites"),
                        format!(
                            "{name:?} is not supported (rustls, TLS 1.2: {})",
                            supported.join(", ")
                        ),
                    )
                })?;
            kept.push(*suite);
        }
        provider.cipher_suites = kept;
    }
    if let Some(names) = &tls.curve_preferences {
        let mut groups = Vec::new();
        for name in names {
            let group = CURVES
                .iter()
                .find(|(go, _)| go == name)
                .and_then(|(_, ours)| {
                    provider
                        .kx_groups
                        .iter()
                        .find(|g| format!("{:?}", g.name()) == *ours)
                })
                .ok_or_else(|| {
                    let go: Vec<&str> = CURVES.iter().map(|(go, _)| *go).collect();
                    problem(
                        &key("curve_preferences"),
                        format!("{name:?} is not supported (rustls: {})", go.join(", ")),
                    )
                })?;
            groups.push(*group);
        }
        provider.kx_groups = groups;
    }
    let provider = Arc::new(provider);

    let version = |k: &str, v: &Option<String>, default: usize| -> Result<usize, KeyProblem> {
        match v {
            None => Ok(default),
            Some(v) => VERSIONS.iter().position(|(n, _)| n == v).ok_or_else(|| {
                let names: Vec<&str> = VERSIONS.iter().map(|(n, _)| *n).collect();
                problem(
                    &key(k),
                    format!("{v:?} is not supported (rustls: {})", names.join(", ")),
                )
            }),
        }
    };
    let min = version("min_version", &tls.min_version, 0)?;
    let max = version("max_version", &tls.max_version, VERSIONS.len() - 1)?;
    if min > max {
        return Err(problem(&key("max_version"), "is below min_version"));
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        VERSIONS[min..=max].iter().map(|(_, v)| *v).collect();

    let cert_pem = match (&tls.cert_file, &tls.cert) {
        (Some(f), None) => read_named(dir, &key("cert_file"), f)?,
        (None, Some(inline)) => inline.as_bytes().to_vec(),
        (None, None) => return Err(problem(T, "cert_file (or cert) is required")),
        (Some(_), Some(_)) => return Err(problem(T, "cert_file and cert are exclusive")),
    };
    let key_pem = match (&tls.key_file, &tls.key) {
        (Some(f), None) => read_named(dir, &key("key_file"), f)?,
        (None, Some(inline)) => inline.as_bytes().to_vec(),
        (None, None) => return Err(problem(T, "key_file (or key) is required")),
        (Some(_), Some(_)) => return Err(problem(T, "key_file and key are exclusive")),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| problem(&key("cert_file"), format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(problem(&key("cert_file"), "no certificate in it"));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| problem(&key("key_file"), format!("no PEM private key: {e}")))?;

    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| problem(T, format!("{e}")))?;
    let client_auth = tls.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let verified = match client_auth {
        "NoClientCert" => None,
        "VerifyClientCertIfGiven" => Some(true),
        "RequireAndVerifyClientCert" => Some(false),
        other => {
            return Err(problem(
                &key("client_auth_type"),
                format!(
                    "{other:?} is not supported (rustls: NoClientCert, VerifyClientCertIfGiven, \
                     RequireAndVerifyClientCert)"
                ),
            ));
        }
    };
    if verified.is_none() && tls.client_allowed_sans.is_some() {
        return Err(problem(
            &key("client_allowed_sans"),
            "needs client_auth_type RequireAndVerifyClientCert",
        ));
    }
    let builder = match (verified, &tls.client_ca_file) {
        (None, None) => builder.with_no_client_auth(),
        (None, Some(_)) => {
            return Err(problem(
                &key("client_ca_file"),
                "is set, but client_auth_type is NoClientCert",
            ));
        }
        (Some(_), None) => {
            return Err(problem(
                &key("client_ca_file"),
                format!("is required with client_auth_type {client_auth}"),
            ));
        }
        (Some(optional), Some(ca_file)) => {
            let k = key("client_ca_file");
            let pem = read_named(dir, &k, ca_file)?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| problem(&k, format!("not PEM certificates: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| problem(&k, format!("a bad CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(problem(&k, "no certificate in it"));
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier = if optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| problem(&k, format!("{e}")))?;
            match tls.client_allowed_sans {
                None => builder.with_client_cert_verifier(verifier),
                Some(_) if optional => {
                    return Err(problem(
                        &key("client_allowed_sans"),
                        "needs client_auth_type RequireAndVerifyClientCert: a client without a \
                         certificate has no SAN to check",
                    ));
                }
                Some(allowed) => builder.with_client_cert_verifier(Arc::new(AllowedSans {
                    inner: verifier,
                    allowed,
                })),
            }
        }
    };
    let mut config = builder
        .with_single_cert(certs, private_key)
        .map_err(|e| problem(&key("key_file"), format!("{e}")))?;
    // Go's default, and exporter-toolkit's: the server's order of suites wins.
    config.ignore_client_order = tls.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// exporter-toolkit's `client_allowed_sans`: a client certificate that the CA verifies must
/// also carry one of these SANs, compared exactly with its DNS names, e-mail addresses, IP
/// addresses (as Go prints them) and URIs, as exporter-toolkit compares them.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

/// The SANs of a DER certificate as exporter-toolkit lists them.
fn subject_alt_names(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let Some(san) = cert.subject_alternative_name().map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(n) | GeneralName::RFC822Name(n) | GeneralName::URI(n) => {
                Some((*n).to_owned())
            }
            GeneralName::IPAddress(bytes) => ip_text(bytes),
            _ => None,
        })
        .collect())
}

/// An IP address SAN as Go's `net.IP.String` writes it (an IPv4-mapped IPv6 address as IPv4).
fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => {
            let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
            Some(
                v6.to_ipv4_mapped()
                    .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
            )
        }
        _ => None,
    }
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let sans = subject_alt_names(end_entity).map_err(|e| {
            tracing::debug!(error = %e, "client certificate: SANs unreadable");
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if sans.iter().any(|s| self.allowed.contains(s)) {
            Ok(verified)
        } else {
            tracing::debug!(?sans, "client certificate has none of client_allowed_sans");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What a file looked like when it was read: a change of any of these means a new file
/// (a Kubernetes secret is swapped by a symlink, which changes the inode).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp(Option<(std::time::SystemTime, u64, u64)>);

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Stamp(std::fs::metadata(path).ok().map(|m| {
        (
            m.modified().unwrap_or(std::time::UNIX_EPOCH),
            m.len(),
            m.ino(),
        )
    }))
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
        Ok(WebConfigFile {
            path: path.to_owned(),
            current: Mutex::new(Arc::new(config?)),
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
            if stamps.iter().all(|(p, s)| stamp(p) == *s) {
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
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Some(Ok(()))
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
    let mut stamps = vec![(path.to_owned(), stamp(path))];
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
            .flatten()
        {
            let p = dir.join(f);
            stamps.push((p.clone(), stamp(&p)));
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
mod tests {
    use super::*;

    #[test]
    fn the_unknown_user_hash_is_a_valid_bcrypt_hash_at_cost_10() {
        assert_eq!(
            bcrypt::verify("change-me", UNKNOWN_USER_HASH).ok(),
            Some(false)
        );
        assert!(UNKNOWN_USER_HASH.starts_with("$2y$10$"));
    }

    fn refused(text: &str) -> String {
        match WebConfig::parse(Path::new("/x/web.yml"), text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn keys_that_cannot_be_honoured_are_refused_with_one_line_naming_them() {
        let cases = [
            (
                "tls_server_config:\n  cert: x\n  key: y\n  min_version: TLS11\n",
                "web.config_file: /x/web.yml: tls_server_config.min_version: \"TLS11\" is not \
                 supported (rustls: TLS12, TLS13)",
            ),
            (
                "nope: 1\n",
                "web.config_file: /x/web.yml: nope: unknown field `nope`",
            ),
            (
                "tls_server_config:\n  cert_flie: a\n",
                "web.config_file: /x/web.yml: tls_server_config.cert_flie: unknown field",
            ),
            (
                "http_server_config:\n  http2: true\n",
                "web.config_file: /x/web.yml: http_server_config.http2: true is not supported",
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                "web.config_file: /x/web.yml: http_server_config.headers.X-Frame-Options: \
                 \"allow\" is not one of deny, sameorigin",
            ),
            (
                "http_server_config:\n  headers:\n    Server: x\n",
                "web.config_file: /x/web.yml: http_server_config.headers.Server: is not one of",
            ),
            (
                "basic_auth_users:\n  alice: plain\n",
                "web.config_file: /x/web.yml: basic_auth_users.alice: not a bcrypt hash",
            ),
            (
                "a: &x 1\nb: *x\n",
                "web.config_file: /x/web.yml: YAML aliases (*x) are not supported",
            ),
        ];
        for (text, want) in cases {
            let got = refused(text);
            assert!(got.starts_with(want), "{text:?}\n got: {got}\nwant: {want}");
            assert_eq!(got.lines().count(), 1, "{got}");
        }
    }

    /// A directory with a CA (`ca.pem`) and a server certificate and key signed by it.
    fn certificates() -> tempfile::TempDir {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        dir
    }

    #[test]
    fn go_names_map_onto_what_rustls_supports() {
        let dir = certificates();
        let path = dir.path().join("web.yml");
        let tls = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n";
        let parse = |extra: &str| WebConfig::parse(&path, &format!("{tls}{extra}"));
        let accepted = [
            "",
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
             client_allowed_sans: [scraper.monitoring.svc]\n",
            "  min_version: TLS13\n",
            "  min_version: TLS12\n  max_version: TLS12\n",
            "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n",
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
            "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, \
             TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256]\n",
            "  curve_preferences: [X25519, CurveP256, CurveP384]\n",
            "  prefer_server_cipher_suites: false\n",
        ];
        for extra in accepted {
            let c = parse(extra).unwrap_or_else(|e| panic!("{extra}: {e}"));
            assert!(c.tls.is_some(), "{extra}");
        }
        let c = parse("  curve_preferences: [CurveP384]\n  min_version: TLS13\n").unwrap();
        let tls = c.tls.unwrap();
        let groups: Vec<String> = (tls.crypto_provider().kx_groups.iter())
            .map(|g| format!("{:?}", g.name()))
            .collect();
        assert_eq!(groups, ["secp384r1"]);

        let refused = [
            (
                "  client_auth_type: RequestClientCert\n",
                "tls_server_config.client_auth_type: \"RequestClientCert\" is not supported",
            ),
            (
                "  client_auth_type: RequireAndVerifyClientCert\n",
                "tls_server_config.client_ca_file: is required",
            ),
            (
                "  curve_preferences: [CurveP521]\n",
                "tls_server_config.curve_preferences: \"CurveP521\" is not supported",
            ),
            (
                "  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n",
                "tls_server_config.cipher_suites: \"TLS_RSA_WITH_AES_128_CBC_SHA\" is not \
                 supported",
            ),
            (
                "  min_version: TLS13\n  max_version: TLS12\n",
                "tls_server_config.max_version: is below min_version",
            ),
            (
                "  client_allowed_sans: [a]\n",
                "tls_server_config.client_allowed_sans: needs client_auth_type \
                 RequireAndVerifyClientCert",
            ),
            (
                "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n  \
                 client_allowed_sans: [a]\n",
                "tls_server_config.client_allowed_sans: needs client_auth_type \
                 RequireAndVerifyClientCert",
            ),
        ];
        for (extra, want) in refused {
            let e = parse(extra)
                .err()
                .unwrap_or_else(|| panic!("accepted {extra}"));
            let got = e.to_string();
            let want = format!("web.config_file: {}: {want}", path.display());
            assert!(got.starts_with(&want), "{extra}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn the_readme_example_is_accepted_and_its_hash_is_of_change_me() {
        let readme = include_str!("../README.md");
        let start = readme.find("# web.yml").expect("the README's web.yml");
        let text = &readme[start..start + readme[start..].find("```").unwrap()];
        let dir = certificates();
        for (from, to) in [
            ("cert.pem", "tls.crt"),
            ("key.pem", "tls.key"),
            ("ca.pem", "ca.crt"),
        ] {
            std::fs::rename(dir.path().join(from), dir.path().join(to)).unwrap();
        }
        let c = WebConfig::parse(&dir.path().join("web.yml"), text).unwrap();
        assert!(c.tls.is_some());
        assert_eq!(c.headers.len(), 1);
        let users = c.users.unwrap();
        assert!(bcrypt::verify("change-me", &users.hashes["prometheus"]).unwrap());
    }

    #[test]
    fn a_half_rotated_pair_keeps_the_old_one_until_the_other_half_lands() {
        let dir = certificates();
        let path = dir.path().join("web.yml");
        std::fs::write(
            &path,
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n",
        )
        .unwrap();
        let file = WebConfigFile::open(&path).unwrap();
        let first = file.current();
        assert!(file.reload_if_changed().is_none(), "nothing changed");
        let next = certificates();
        std::fs::copy(next.path().join("key.pem"), dir.path().join("key.pem")).unwrap();
        let e = file.reload_if_changed().unwrap().unwrap_err().to_string();
        assert!(e.contains("tls_server_config.key_file:"), "{e}");
        assert!(Arc::ptr_eq(&first, &file.current()), "the old pair is kept");
        assert!(
            file.reload_if_changed().is_none(),
            "no retry without a change"
        );
        std::fs::copy(next.path().join("cert.pem"), dir.path().join("cert.pem")).unwrap();
        assert!(file.reload_if_changed().unwrap().is_ok());
        assert!(!Arc::ptr_eq(&first, &file.current()));
    }

    #[test]
    fn an_empty_file_is_plain_http_without_auth() {
        for text in [
            "",
            "{}\n",
            "basic_auth_users: {}\n",
            "tls_server_config: {}\n",
        ] {
            let c = WebConfig::parse(Path::new("/x"), text).unwrap();
            assert!(c.tls.is_none() && c.users.is_none() && c.headers.is_empty());
        }
    }

    #[test]
    fn basic_credentials_are_parsed() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        // "alice:pa:ss"
        assert_eq!(
            basic_credentials(&v("Basic YWxpY2U6cGE6c3M=")),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials(&v("Bearer YWxpY2U6cGE6c3M=")), None);
        assert_eq!(basic_credentials(&v("Basic !!!")), None);
    }

    fn auth(user: &str, pw: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        HeaderValue::from_str(&format!("Basic {token}")).unwrap()
    }

    #[tokio::test]
    async fn a_cached_success_never_lets_another_password_in() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let users = Arc::new(Users::new(BTreeMap::from([("alice".into(), hash)])));
        for _ in 0..2 {
            assert!(users.allow(Some(&auth("alice", "right"))).await);
            assert!(!users.allow(Some(&auth("alice", "wrong"))).await);
            assert!(!users.allow(Some(&auth("alice", "righ"))).await);
            assert!(!users.allow(Some(&auth("bob", "right"))).await);
            assert!(!users.allow(None).await);
        }
        assert_eq!(users.cache().len(), 1, "only the success is cached");
    }

    /// The answers of `allow` for each of `passwords` as alice, all asked at once.
    async fn at_once(users: &Arc<Users>, passwords: &[String]) -> Vec<bool> {
        let mut asked = tokio::task::JoinSet::new();
        for pw in passwords {
            let (users, header) = (Arc::clone(users), auth("alice", pw));
            asked.spawn(async move { users.allow(Some(&header)).await });
        }
        asked.join_all().await
    }

    #[tokio::test]
    async fn requests_with_the_same_credentials_at_once_share_one_comparison() {
        let hash = bcrypt::hash("right", 6).unwrap();
        let users = Arc::new(Users::new(BTreeMap::from([("alice".into(), hash)])));
        let compared = || users.compared.load(Ordering::Relaxed);
        let right = vec!["right".to_owned(); 50];
        assert!(at_once(&users, &right).await.iter().all(|&ok| ok));
        assert_eq!(compared(), 1, "50 scrapers starting at once");
        assert!(at_once(&users, &right).await.iter().all(|&ok| ok));
        assert_eq!(compared(), 1, "cached");

        // Guesses: one comparison each distinct password, none cached, all refused.
        let mut guesses: Vec<String> = (0..20).map(|i| format!("guess {i}")).collect();
        guesses.extend(std::iter::repeat_n("wrong".to_owned(), 20));
        assert!(at_once(&users, &guesses).await.iter().all(|&ok| !ok));
        assert_eq!(compared(), 1 + 20 + 1);
        assert_eq!(users.cache().len(), 1);
        assert!(users.comparing().is_empty(), "entries left behind");
        assert!(!users.allow(Some(&auth("alice", "wrong"))).await);
        assert_eq!(
            compared(),
            23,
            "a failure is not kept once its requests are answered"
        );
    }

    #[tokio::test]
    async fn a_request_that_stops_waiting_leaves_nothing_behind() {
        let hash = bcrypt::hash("right", 8).unwrap();
        let users = Arc::new(Users::new(BTreeMap::from([("alice".into(), hash)])));
        let header = auth("alice", "right");
        let cut = tokio::time::timeout(
            std::time::Duration::from_millis(1),
            users.allow(Some(&header)),
        );
        assert!(
            cut.await.is_err(),
            "a cost-8 comparison within a millisecond?"
        );
        assert!(users.comparing().is_empty());
        // Two waiters, the first (which compares) cut short: the second compares for itself.
        let first = tokio::time::timeout(
            std::time::Duration::from_millis(1),
            users.allow(Some(&header)),
        );
        let second = users.allow(Some(&header));
        let (first, second) = tokio::join!(first, second);
        assert!(first.is_err());
        assert!(second);
        assert!(users.comparing().is_empty());
    }

    #[test]
    fn client_sans_are_listed_as_exporter_toolkit_compares_them() {
        use rcgen::string::Ia5String;
        use rcgen::{CertificateParams, KeyPair, SanType};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![
            SanType::DnsName(Ia5String::try_from("scraper.monitoring.svc").unwrap()),
            SanType::Rfc822Name(Ia5String::try_from("ops@example.com").unwrap()),
            SanType::URI(Ia5String::try_from("spiffe://cluster.local/ns/m/sa/p").unwrap()),
            SanType::IpAddress("10.0.0.7".parse().unwrap()),
            SanType::IpAddress("fd00::7".parse().unwrap()),
            SanType::IpAddress("::ffff:192.0.2.1".parse().unwrap()),
        ];
        let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        assert_eq!(
            subject_alt_names(cert.der()).unwrap(),
            [
                "scraper.monitoring.svc",
                "ops@example.com",
                "spiffe://cluster.local/ns/m/sa/p",
                "10.0.0.7",
                "fd00::7",
                // Go's net.IP prints an IPv4-mapped address as IPv4.
                "192.0.2.1",
            ]
        );
        let none = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap();
        assert_eq!(subject_alt_names(none.der()).unwrap(), Vec::<String>::new());
        assert!(subject_alt_names(b"not a certificate").is_err());
        assert_eq!(ip_text(&[1, 2, 3]), None);
    }
}
