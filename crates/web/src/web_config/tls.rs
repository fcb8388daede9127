//! `tls_server_config`: exporter-toolkit's TLS settings on rustls, with Go's meaning.
//!
//! The crypto provider is aws-lc-rs: of rustls's two, the one that has what Go's crypto/tls
//! has and a node_exporter user's files may use. ring has no P-521 at all (no key exchange,
//! no signing key, no signature check), while aws-lc-rs signs with P-521 keys and checks P-521
//! signatures; its P-521 key exchange, which rustls does not list, is [`SECP521R1`] here, on
//! aws-lc-rs's own ECDH. It builds with a C compiler alone (no cmake) on Linux x86-64 and arm64.
//!
//! Go's rules kept here: an empty setting is a setting left out; TLS is on only where a
//! certificate, key, client CA or `client_auth_type` is set (`TLSConfig.IsEnabled`); the
//! server's preference among cipher suites is Go's fixed order, whatever order `cipher_suites`
//! lists them in and whatever `prefer_server_cipher_suites` says (Go has ignored it since
//! 1.17), AES-GCM first unless the client's first suite is not AES-GCM; TLS 1.3 suite names
//! are accepted and change nothing; a verified client certificate that is itself in the CA
//! file is accepted as Go accepts it, `CA:TRUE` or not; `VerifyClientCertIfGiven` without a
//! CA verifies against the system's CAs. What rustls cannot do fails the start, with the key.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, SharedSecret, SupportedKxGroup, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, WebPkiClientVerifier};
use rustls::{DistinguishedName, NamedGroup, ServerConfig, SignatureScheme, SupportedCipherSuite};

use super::{KeyProblem, RawTls, problem, read_named};

/// The TLS of one loaded file: a rustls config for clients that put AES-GCM first and one for
/// the others, which differ only in the server's order of suites (Go's two orders).
#[derive(Debug)]
pub struct Tls {
    aes_first: Arc<ServerConfig>,
    chacha_first: Arc<ServerConfig>,
}

impl Tls {
    /// The config to answer `hello` with: Go's `aesgcmPreferred`, which looks at the first
    /// suite of the client's that Go implements.
    pub fn for_hello(&self, hello: &ClientHello<'_>) -> Arc<ServerConfig> {
        let first = hello
            .cipher_suites()
            .iter()
            .map(|s| u16::from(*s))
            .find(|id| GO_IMPLEMENTS.contains(id));
        if first.is_some_and(|id| AES_GCM.contains(&id)) {
            Arc::clone(&self.aes_first)
        } else {
            Arc::clone(&self.chacha_first)
        }
    }

    /// The config for a client that prefers AES-GCM (every test client here).
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.aes_first
    }
}

/// Every cipher suite Go's crypto/tls implements (`CipherSuites` and `InsecureCipherSuites`),
/// by id: what `aesgcmPreferred` skips the others of.
const GO_IMPLEMENTS: &[u16] = &[
    0x0005, 0x000a, 0x002f, 0x0035, 0x003c, 0x009c, 0x009d, 0xc007, 0xc009, 0xc00a, 0xc011, 0xc012,
    0xc013, 0xc014, 0xc023, 0xc027, 0xc02b, 0xc02c, 0xc02f, 0xc030, 0xcca8, 0xcca9, 0x1301, 0x1302,
    0x1303,
];
/// The AES-GCM ones among them.
const AES_GCM: &[u16] = &[
    0x009c, 0x009d, 0xc02b, 0xc02c, 0xc02f, 0xc030, 0x1301, 0x1302,
];

/// A name of Go's `tls.CipherSuites()`, which exporter-toolkit takes, and the rustls suite.
struct Suite {
    go: &'static str,
    /// None: Go has it, rustls does not (CBC, and RSA key exchange).
    rustls: Option<SupportedCipherSuite>,
    tls13: bool,
}

const fn suite(go: &'static str, rustls: Option<SupportedCipherSuite>, tls13: bool) -> Suite {
    Suite { go, rustls, tls13 }
}

use rustls::crypto::aws_lc_rs::cipher_suite as cs;

/// Go's names, in Go's order of preference where AES-GCM is preferred
/// (`cipherSuitesPreferenceOrder`, `defaultCipherSuitesTLS13`).
static SUITES: &[Suite] = &[
    suite(
        "TLS_AES_128_GCM_SHA256",
        Some(cs::TLS13_AES_128_GCM_SHA256),
        true,
    ),
    suite(
        "TLS_AES_256_GCM_SHA384",
        Some(cs::TLS13_AES_256_GCM_SHA384),
        true,
    ),
    suite(
        "TLS_CHACHA20_POLY1305_SHA256",
        Some(cs::TLS13_CHACHA20_POLY1305_SHA256),
        true,
    ),
    suite(
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        Some(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        false,
    ),
    suite(
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        Some(cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        false,
    ),
    suite(
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Some(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        false,
    ),
    suite(
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        Some(cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        false,
    ),
    suite(
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        Some(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        false,
    ),
    suite(
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        Some(cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
        false,
    ),
    suite("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", None, false),
    suite("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", None, false),
    suite("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", None, false),
    suite("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", None, false),
    suite("TLS_RSA_WITH_AES_128_GCM_SHA256", None, false),
    suite("TLS_RSA_WITH_AES_256_GCM_SHA384", None, false),
    suite("TLS_RSA_WITH_AES_128_CBC_SHA", None, false),
    suite("TLS_RSA_WITH_AES_256_CBC_SHA", None, false),
];

/// The suites HTTP/2 requires of a TLS 1.2 list (Go's `http2.ConfigureServer`).
const HTTP2_REQUIRED: &[&str] = &[
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
];

/// Go's curve names (exporter-toolkit's four) and the groups.
static CURVES: &[(&str, &dyn SupportedKxGroup)] = &[
    ("CurveP256", rustls::crypto::aws_lc_rs::kx_group::SECP256R1),
    ("CurveP384", rustls::crypto::aws_lc_rs::kx_group::SECP384R1),
    ("CurveP521", SECP521R1),
    ("X25519", rustls::crypto::aws_lc_rs::kx_group::X25519),
];

/// The groups without `curve_preferences`: Go's default since 1.24.
static DEFAULT_GROUPS: &[&dyn SupportedKxGroup] = &[
    rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768,
    rustls::crypto::aws_lc_rs::kx_group::X25519,
    rustls::crypto::aws_lc_rs::kx_group::SECP256R1,
    rustls::crypto::aws_lc_rs::kx_group::SECP384R1,
    SECP521R1,
];

/// Go's TLS version names; rustls speaks the last two.
const VERSIONS: &[&str] = &["TLS10", "TLS11", "TLS12", "TLS13"];

/// Checks what Go checks while it reads the file, whether or not TLS is on: the names of
/// suites, curves and versions. Returns whether TLS is on (`TLSConfig.IsEnabled`).
pub(super) fn check_names(tls: &RawTls) -> Result<bool, KeyProblem> {
    const T: &str = "tls_server_config";
    for name in tls.cipher_suites.iter().flatten() {
        if !SUITES.iter().any(|s| s.go == name) {
            return Err(problem(
                &format!("{T}.cipher_suites"),
                format!("unknown cipher: {name:?}"),
            ));
        }
    }
    for name in tls.curve_preferences.iter().flatten() {
        if !CURVES.iter().any(|(go, _)| go == name) {
            let names: Vec<&str> = CURVES.iter().map(|(go, _)| *go).collect();
            return Err(problem(
                &format!("{T}.curve_preferences"),
                format!("unknown curve: {name:?} (one of {})", names.join(", ")),
            ));
        }
    }
    for (key, v) in [
        ("min_version", &tls.min_version),
        ("max_version", &tls.max_version),
    ] {
        if !v.is_empty() && !VERSIONS.contains(&v.as_str()) {
            return Err(problem(
                &format!("{T}.{key}"),
                format!(
                    "unknown TLS version: {v:?} (one of {})",
                    VERSIONS.join(", ")
                ),
            ));
        }
    }
    Ok([
        &tls.cert_file,
        &tls.cert,
        &tls.key_file,
        &tls.key,
        &tls.client_ca_file,
        &tls.client_ca,
        &tls.client_auth_type,
    ]
    .iter()
    .any(|s| !s.is_empty()))
}

/// `client_auth_type`, Go's `tls.ClientAuthType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    None,
    Request,
    RequireAny,
    VerifyIfGiven,
    RequireAndVerify,
}

impl ClientAuth {
    fn parse(name: &str) -> Option<ClientAuth> {
        Some(match name {
            "" | "NoClientCert" => ClientAuth::None,
            "RequestClientCert" => ClientAuth::Request,
            // exporter-toolkit keeps the old name too.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAny,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
            _ => return None,
        })
    }
}

/// Builds the TLS of a section that turns TLS on ([`check_names`] said so). `http2`: the
/// file's `http_server_config.http2` (true unless set false, as in Go). `warnings` gets what
/// is accepted but changes how clients are served.
pub(super) fn build(
    dir: &Path,
    tls: RawTls,
    http2: bool,
    warnings: &mut Vec<String>,
) -> Result<Tls, KeyProblem> {
    const T: &str = "tls_server_config";
    let key = |k: &str| format!("{T}.{k}");

    // Versions: Go's defaults are TLS12 and TLS13.
    let index = |v: &str, default: usize| {
        if v.is_empty() {
            default
        } else {
            VERSIONS.iter().position(|n| *n == v).unwrap_or(default)
        }
    };
    let (min, max) = (index(&tls.min_version, 2), index(&tls.max_version, 3));
    for (k, v, i) in [
        ("min_version", &tls.min_version, min),
        ("max_version", &tls.max_version, max),
    ] {
        if i < 2 {
            return Err(problem(
                &key(k),
                format!("{v:?} is not supported (rustls: TLS12, TLS13)"),
            ));
        }
    }
    if min > max {
        // Go starts, then fails every handshake.
        return Err(problem(&key("max_version"), "is below min_version"));
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(i, _)| (min..=max).contains(i))
            .map(|(_, v)| v)
            .collect();
    let tls12 = min <= 2;

    // Suites: Go's order; TLS 1.3 names change nothing; an empty list is Go's default.
    let named = tls.cipher_suites.clone().unwrap_or_default();
    let tls12_named: Vec<&Suite> = SUITES
        .iter()
        .filter(|s| !s.tls13 && named.iter().any(|n| n == s.go))
        .collect();
    let tls12_suites: Vec<SupportedCipherSuite> = if named.is_empty() {
        SUITES
            .iter()
            .filter(|s| !s.tls13)
            .filter_map(|s| s.rustls)
            .collect()
    } else {
        tls12_named.iter().filter_map(|s| s.rustls).collect()
    };
    let dropped: Vec<&str> = tls12_named
        .iter()
        .filter(|s| s.rustls.is_none())
        .map(|s| s.go)
        .collect();
    if tls12 && !named.is_empty() {
        if !tls12_named.is_empty() && tls12_suites.is_empty() {
            return Err(problem(
                &key("cipher_suites"),
                format!(
                    "rustls has none of the TLS 1.2 suites named ({}): it has the ECDHE \
                     AES-GCM and ChaCha20 ones",
                    dropped.join(", ")
                ),
            ));
        }
        if !dropped.is_empty() {
            warnings.push(format!(
                "{}: rustls lacks {}; TLS 1.2 clients are served the others named",
                key("cipher_suites"),
                dropped.join(", ")
            ));
        }
        if tls12_named.is_empty() {
            warnings.push(format!(
                "{}: names no TLS 1.2 suite, so TLS 1.2 clients are refused, as in Go",
                key("cipher_suites")
            ));
        }
        if http2 && !named.iter().any(|n| HTTP2_REQUIRED.contains(&n.as_str())) {
            return Err(problem(
                &key("cipher_suites"),
                format!(
                    "lacks {}, which HTTP/2 requires of a TLS 1.2 list (exporter-toolkit \
                     refuses it too; or set http_server_config.http2: false)",
                    HTTP2_REQUIRED.join(" or ")
                ),
            ));
        }
    }
    let tls13_suites: Vec<SupportedCipherSuite> = SUITES
        .iter()
        .filter(|s| s.tls13)
        .filter_map(|s| s.rustls)
        .collect();

    // Curves.
    let groups: Vec<&'static dyn SupportedKxGroup> = match &tls.curve_preferences {
        Some(names) if !names.is_empty() => names
            .iter()
            .filter_map(|n| CURVES.iter().find(|(go, _)| go == n).map(|(_, g)| *g))
            .collect(),
        _ => DEFAULT_GROUPS.to_vec(),
    };

    // The certificate and key: a file wins over inline text, as in Go.
    let cert_pem = match (tls.cert_file.as_str(), tls.cert.as_str()) {
        ("", "") => return Err(problem(T, "missing one of cert or cert_file")),
        ("", inline) => inline.as_bytes().to_vec(),
        (file, _) => read_named(dir, &key("cert_file"), Path::new(file))?,
    };
    let key_pem = match (tls.key_file.as_str(), tls.key.as_str()) {
        ("", "") => return Err(problem(T, "missing one of key or key_file")),
        ("", inline) => inline.as_bytes().to_vec(),
        (file, _) => read_named(dir, &key("key_file"), Path::new(file))?,
    };
    let cert_key = if tls.cert_file.is_empty() {
        "cert"
    } else {
        "cert_file"
    };
    let key_key = if tls.key_file.is_empty() {
        "key"
    } else {
        "key_file"
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| problem(&key(cert_key), format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(problem(&key(cert_key), "no certificate in it"));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| problem(&key(key_key), format!("no PEM private key: {e}")))?;

    // Client certificates.
    let auth = ClientAuth::parse(&tls.client_auth_type).ok_or_else(|| {
        problem(
            &key("client_auth_type"),
            format!(
                "invalid ClientAuth: {:?} (one of NoClientCert, RequestClientCert, \
                 RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)",
                tls.client_auth_type
            ),
        )
    })?;
    let (ca_key, ca_pem) = match (tls.client_ca_file.as_str(), tls.client_ca.as_str()) {
        ("", "") => (key("client_ca_file"), None),
        ("", inline) => (key("client_ca"), Some(inline.as_bytes().to_vec())),
        (file, _) => (
            key("client_ca_file"),
            Some(read_named(dir, &key("client_ca_file"), Path::new(file))?),
        ),
    };
    if ca_pem.is_some() && auth == ClientAuth::None {
        return Err(problem(
            &ca_key,
            "client CAs are configured without client_auth_type",
        ));
    }
    match (&tls.client_allowed_sans, auth) {
        (None, _) => {}
        (Some(sans), ClientAuth::RequireAndVerify) if sans.is_empty() => {
            return Err(problem(
                &key("client_allowed_sans"),
                "an empty list lets no client in (leave it out, or name SANs)",
            ));
        }
        (Some(_), ClientAuth::RequireAndVerify) => {}
        (Some(_), _) => {
            return Err(problem(
                &key("client_allowed_sans"),
                "needs client_auth_type RequireAndVerifyClientCert: without it exporter-toolkit \
                 ignores the list (NoClientCert), checks it on a certificate nobody verified \
                 (RequestClientCert, RequireAnyClientCert), or fails a client without a \
                 certificate (VerifyClientCertIfGiven)",
            ));
        }
    }
    let verify_provider = Arc::new(provider(
        tls12_suites.clone(),
        tls13_suites.clone(),
        groups.clone(),
    ));
    let verifier = match auth {
        ClientAuth::None => None,
        _ => Some(Arc::new(client_verifier(
            auth,
            &ca_key,
            ca_pem.as_deref(),
            tls.client_allowed_sans.clone(),
            &verify_provider,
            warnings,
        )?)),
    };

    let config = |tls12: &[SupportedCipherSuite], tls13: &[SupportedCipherSuite]| {
        let provider = Arc::new(provider(tls12.to_vec(), tls13.to_vec(), groups.clone()));
        let builder = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| problem(T, e.to_string()))?;
        let builder = match &verifier {
            None => builder.with_no_client_auth(),
            Some(v) => builder.with_client_cert_verifier(Arc::clone(v) as _),
        };
        let mut config = builder
            .with_single_cert(certs.clone(), private_key.clone_key())
            .map_err(|e| problem(&key(key_key), e.to_string()))?;
        config.ignore_client_order = true;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok::<_, KeyProblem>(config)
    };
    let aes_first = config(&tls12_suites, &tls13_suites)?;
    let chacha = |suites: &[SupportedCipherSuite]| -> Vec<SupportedCipherSuite> {
        let is_chacha = |s: &SupportedCipherSuite| format!("{:?}", s.suite()).contains("CHACHA20");
        let (mut first, rest): (Vec<_>, Vec<_>) = suites.iter().copied().partition(is_chacha);
        first.extend(rest);
        first
    };
    let mut chacha_first = config(&chacha(&tls12_suites), &chacha(&tls13_suites))?;
    // Sessions made with one are resumed with the other: they differ only in suite order.
    chacha_first.session_storage = Arc::clone(&aes_first.session_storage);
    chacha_first.ticketer = Arc::clone(&aes_first.ticketer);
    Ok(Tls {
        aes_first: Arc::new(aes_first),
        chacha_first: Arc::new(chacha_first),
    })
}

fn provider(
    tls12: Vec<SupportedCipherSuite>,
    tls13: Vec<SupportedCipherSuite>,
    groups: Vec<&'static dyn SupportedKxGroup>,
) -> CryptoProvider {
    let mut cipher_suites = tls13;
    cipher_suites.extend(tls12);
    CryptoProvider {
        cipher_suites,
        kx_groups: groups,
        ..rustls::crypto::aws_lc_rs::default_provider()
    }
}

/// The certificates of a CA PEM, as Go's `AppendCertsFromPEM` takes them: what does not
/// parse is skipped (and said).
fn ca_certificates(
    pem: &[u8],
    ca_key: &str,
    warnings: &mut Vec<String>,
) -> Vec<CertificateDer<'static>> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        match cert {
            Ok(c) if x509_parser::parse_x509_certificate(c.as_ref()).is_ok() => certs.push(c),
            Ok(_) => warnings.push(format!(
                "{ca_key}: a certificate that does not parse is skipped"
            )),
            Err(e) => {
                warnings.push(format!(
                    "{ca_key}: PEM ends in an error, the rest is skipped: {e}"
                ));
                break;
            }
        }
    }
    certs
}

fn client_verifier(
    auth: ClientAuth,
    ca_key: &str,
    ca_pem: Option<&[u8]>,
    allowed_sans: Option<Vec<String>>,
    provider: &Arc<CryptoProvider>,
    warnings: &mut Vec<String>,
) -> Result<ClientVerifier, KeyProblem> {
    let verify = matches!(
        auth,
        ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify
    );
    let configured = ca_pem.map(|pem| ca_certificates(pem, ca_key, warnings));
    let roots = match (&configured, auth) {
        (Some(certs), _) => certs.clone(),
        (None, ClientAuth::RequireAndVerify) => {
            return Err(problem(
                ca_key,
                "is required with client_auth_type RequireAndVerifyClientCert (without it \
                 exporter-toolkit would take any client certificate a public CA issued)",
            ));
        }
        // Go verifies against the system's pool when none is configured.
        (None, ClientAuth::VerifyIfGiven) => system_roots(warnings),
        (None, _) => Vec::new(),
    };
    if verify && roots.is_empty() && auth == ClientAuth::RequireAndVerify {
        // Go starts and then fails every handshake.
        return Err(problem(ca_key, "no certificate in it"));
    }
    let hints: Vec<DistinguishedName> = configured
        .iter()
        .flatten()
        .filter_map(|c| {
            let (_, parsed) = x509_parser::parse_x509_certificate(c).ok()?;
            Some(DistinguishedName::from(parsed.subject().as_raw().to_vec()))
        })
        .collect();
    let webpki = if verify && !roots.is_empty() {
        let mut store = rustls::RootCertStore::empty();
        let (_, ignored) = store.add_parsable_certificates(roots.iter().cloned());
        if ignored > 0 {
            warnings.push(format!(
                "{ca_key}: {ignored} CA certificates rustls cannot use are skipped"
            ));
        }
        let built =
            WebPkiClientVerifier::builder_with_provider(Arc::new(store), Arc::clone(provider))
                .allow_unauthenticated()
                .build()
                .map_err(|e| problem(ca_key, e.to_string()))?;
        Some(built)
    } else {
        None
    };
    Ok(ClientVerifier {
        auth,
        webpki,
        roots,
        hints,
        allowed_sans,
        algorithms: provider.signature_verification_algorithms,
    })
}

/// The system's CA certificates, as Go's `SystemCertPool` reads them (`SSL_CERT_FILE`,
/// `SSL_CERT_DIR`, then the distribution's bundle).
fn system_roots(warnings: &mut Vec<String>) -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    if let Some(e) = found.errors.first() {
        warnings.push(format!("system CA certificates: {e}"));
    }
    if found.certs.is_empty() {
        warnings.push(
            "VerifyClientCertIfGiven without client_ca_file: the system has no CA certificates, \
             so a client that presents a certificate is refused"
                .to_owned(),
        );
    }
    found.certs
}

/// Go's client certificate policies on rustls. Verification is webpki's, and where webpki
/// refuses a certificate that is itself one of the CAs, Go's rule for that case: it is taken
/// when it is valid now and its extended key usage allows client authentication.
#[derive(Debug)]
struct ClientVerifier {
    auth: ClientAuth,
    /// Verifies chains; None where there is nothing to verify against (refuses every one).
    webpki: Option<Arc<dyn ClientCertVerifier>>,
    roots: Vec<CertificateDer<'static>>,
    hints: Vec<DistinguishedName>,
    /// exporter-toolkit's `client_allowed_sans`.
    allowed_sans: Option<Vec<String>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        matches!(
            self.auth,
            ClientAuth::RequireAny | ClientAuth::RequireAndVerify
        )
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let bad = |e: rustls::CertificateError| rustls::Error::InvalidCertificate(e);
        match self.auth {
            ClientAuth::Request | ClientAuth::RequireAny => {
                // Go parses what it is given, and verifies nothing.
                x509_parser::parse_x509_certificate(end_entity)
                    .map_err(|_| bad(rustls::CertificateError::BadEncoding))?;
            }
            _ => {
                let Some(webpki) = &self.webpki else {
                    return Err(bad(rustls::CertificateError::UnknownIssuer));
                };
                if let Err(e) = webpki.verify_client_cert(end_entity, intermediates, now)
                    && !(self.roots.iter().any(|r| r.as_ref() == end_entity.as_ref())
                        && valid_as_pinned(end_entity, now))
                {
                    return Err(go_alert(e));
                }
            }
        }
        if let Some(allowed) = &self.allowed_sans {
            let sans = subject_alt_names(end_entity).map_err(|e| {
                tracing::debug!(error = %e, "client certificate: SANs unreadable");
                bad(rustls::CertificateError::BadEncoding)
            })?;
            if !sans.iter().any(|s| allowed.contains(s)) {
                tracing::debug!(?sans, "client certificate has none of client_allowed_sans");
                // Go's alert for it: bad_certificate.
                return Err(bad(rustls::CertificateError::NotValidForName));
            }
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A verification error as the alert Go sends for it: unknown_ca where no chain reaches a
/// root, certificate_expired where the certificate is not valid now, bad_certificate else.
/// webpki refuses a certificate with `CA:TRUE` before it looks for a chain, where Go finds
/// none (when the certificate is one of the roots, [`valid_as_pinned`] decides).
fn go_alert(e: rustls::Error) -> rustls::Error {
    use rustls::CertificateError as C;
    let cert = match e {
        rustls::Error::InvalidCertificate(c) => c,
        other => return other,
    };
    rustls::Error::InvalidCertificate(match cert {
        C::UnknownIssuer => C::UnknownIssuer,
        C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
            C::Expired
        }
        C::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => C::UnknownIssuer,
        _ => C::BadEncoding,
    })
}

/// Go's check of a client certificate found among the roots themselves (its chain is the
/// certificate alone): valid at `now`, and no extended key usage, or one that allows client
/// authentication (or any).
fn valid_as_pinned(der: &[u8], now: UnixTime) -> bool {
    use x509_parser::oid_registry::OID_X509_EXT_EXTENDED_KEY_USAGE;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let now = now.as_secs() as i64;
    let validity = cert.validity();
    if now < validity.not_before.timestamp() || now > validity.not_after.timestamp() {
        return false;
    }
    match cert.get_extension_unique(&OID_X509_EXT_EXTENDED_KEY_USAGE) {
        Ok(None) => true,
        Ok(Some(_)) => match cert.extended_key_usage() {
            Ok(Some(eku)) => eku.value.any || eku.value.client_auth,
            _ => false,
        },
        Err(_) => false,
    }
}

/// The SANs of a DER certificate as exporter-toolkit lists them: DNS names, e-mail
/// addresses, IP addresses (as Go prints them) and URIs.
pub(super) fn subject_alt_names(der: &[u8]) -> Result<Vec<String>, String> {
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
pub(super) fn ip_text(bytes: &[u8]) -> Option<String> {
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

/// ECDH on P-521 (`CurveP521`), which rustls's aws-lc-rs provider does not list, on
/// aws-lc-rs's ECDH as rustls's own groups are.
pub static SECP521R1: &dyn SupportedKxGroup = &P521;

#[derive(Debug)]
struct P521;

impl SupportedKxGroup for P521 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        use aws_lc_rs::agreement;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let private = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P521, &rng)
            .map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
        let public = private
            .compute_public_key()
            .map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
        Ok(Box::new(P521Exchange {
            public: public.as_ref().to_vec(),
            private,
        }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::secp521r1
    }
}

struct P521Exchange {
    private: aws_lc_rs::agreement::EphemeralPrivateKey,
    public: Vec<u8>,
}

impl ActiveKeyExchange for P521Exchange {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        use aws_lc_rs::agreement;
        // TLS allows only the uncompressed point (RFC 8446 4.2.8.2); aws-lc-rs takes others.
        let invalid = || rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::InvalidKeyShare);
        if peer.first() != Some(&0x04) || peer.len() != 133 {
            return Err(invalid());
        }
        let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P521, peer);
        agreement::agree_ephemeral(self.private, peer, (), |secret| {
            Ok(SharedSecret::from(secret))
        })
        .map_err(|()| invalid())
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::secp521r1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p521_exchange_agrees_and_refuses_bad_points() {
        let (a, b) = (SECP521R1.start().unwrap(), SECP521R1.start().unwrap());
        let (a_pub, b_pub) = (a.pub_key().to_vec(), b.pub_key().to_vec());
        assert_eq!(a_pub.len(), 133);
        let (ab, ba) = (a.complete(&b_pub).unwrap(), b.complete(&a_pub).unwrap());
        assert_eq!(ab.secret_bytes(), ba.secret_bytes());
        assert_eq!(ab.secret_bytes().len(), 66);
        let mut compressed = a_pub[..67].to_vec();
        compressed[0] = 0x02;
        assert!(SECP521R1.start().unwrap().complete(&compressed).is_err());
        let mut off_curve = a_pub.clone();
        off_curve[132] ^= 1;
        assert!(SECP521R1.start().unwrap().complete(&off_curve).is_err());
    }

    #[test]
    fn go_suite_names_are_the_rustls_suites_names() {
        for s in SUITES {
            if let Some(r) = s.rustls {
                let ours = format!("{:?}", r.suite()).replacen("TLS13_", "TLS_", 1);
                assert_eq!(ours, s.go);
                assert_eq!(s.tls13, r.version() == &rustls::version::TLS13, "{}", s.go);
            }
        }
        for id in AES_GCM {
            assert!(GO_IMPLEMENTS.contains(id));
        }
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
