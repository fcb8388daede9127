use super::*;

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
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "web.config_file: /x/web.yml: http_server_config.headers.X-Frame-Options: \
             invalid value \"allow\": one of deny, sameorigin",
        ),
        (
            "http_server_config:\n  headers:\n    Server: x\n",
            "web.config_file: /x/web.yml: http_server_config.headers.Server: can not be \
             configured",
        ),
        // Names and values are exact, as exporter-toolkit compares them.
        (
            "http_server_config:\n  headers:\n    x-frame-options: deny\n",
            "web.config_file: /x/web.yml: http_server_config.headers.x-frame-options: can not \
             be configured",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: DENY\n",
            "web.config_file: /x/web.yml: http_server_config.headers.X-Frame-Options: \
             invalid value \"DENY\"",
        ),
        (
            "basic_auth_users:\n  alice: plain\n",
            "web.config_file: /x/web.yml: basic_auth_users.alice: not a bcrypt hash",
        ),
        (
            "a: &x 1\nb: *x\n",
            "web.config_file: /x/web.yml: YAML aliases (*x) are not supported",
        ),
        (
            "rate_limit:\n  interval: 1\n  burst: x\n",
            "web.config_file: /x/web.yml: rate_limit.burst: \"x\" is not a whole number",
        ),
        (
            "rate_limit:\n  interval: 5\n  burst: 1\n  extra: 1\n",
            "web.config_file: /x/web.yml: rate_limit.extra: unknown field",
        ),
        (
            "rate_limit:\n  interval: 5 s\n",
            "web.config_file: /x/web.yml: rate_limit.interval: \"5 s\" is not a duration",
        ),
        (
            "tls_server_config:\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            "web.config_file: /x/web.yml: tls_server_config.cipher_suites: unknown cipher",
        ),
        (
            "tls_server_config:\n  min_version: TLS14\n",
            "web.config_file: /x/web.yml: tls_server_config.min_version: unknown TLS version",
        ),
        (
            "tls_server_config:\n  curve_preferences: [X448]\n",
            "web.config_file: /x/web.yml: tls_server_config.curve_preferences: unknown curve",
        ),
        ("a: 1\na: 2\n", "web.config_file: /x/web.yml: "),
    ];
    for (text, want) in cases {
        let got = refused(text);
        assert!(got.starts_with(want), "{text:?}\n got: {got}\nwant: {want}");
        assert_eq!(got.lines().count(), 1, "{got}");
    }
    assert!(refused("a: 1\na: 2\n").contains("duplicated key"));
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

fn suites(config: &rustls::ServerConfig) -> Vec<String> {
    (config.crypto_provider().cipher_suites.iter())
        .map(|s| format!("{:?}", s.suite()))
        .collect()
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
        "  client_auth_type: VerifyClientCertIfGiven\n",
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
        "  client_auth_type: RequestClientCert\n",
        "  client_auth_type: RequireAnyClientCert\n",
        "  client_auth_type: RequireClientCert\n  client_ca_file: ca.pem\n",
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, \
         TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256]\n",
        "  cipher_suites: [TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n",
        "  cipher_suites: []\n",
        "  curve_preferences: [X25519, CurveP256, CurveP384, CurveP521]\n",
        "  prefer_server_cipher_suites: false\n",
        "  prefer_server_cipher_suites: yes\n",
    ];
    for extra in accepted {
        let c = parse(extra).unwrap_or_else(|e| panic!("{extra}: {e}"));
        assert!(c.tls.is_some(), "{extra}");
    }

    // Curves as listed.
    let c = parse("  curve_preferences: [CurveP521, CurveP384]\n  min_version: TLS13\n").unwrap();
    let groups: Vec<String> = (c.tls.unwrap().config().crypto_provider().kx_groups.iter())
        .map(|g| format!("{:?}", g.name()))
        .collect();
    assert_eq!(groups, ["secp521r1", "secp384r1"]);

    // Suites in Go's order, whatever the file's; TLS 1.3 names change nothing; an empty list
    // is Go's default, not "no TLS 1.2".
    let all13 = [
        "TLS13_AES_128_GCM_SHA256",
        "TLS13_AES_256_GCM_SHA384",
        "TLS13_CHACHA20_POLY1305_SHA256",
    ];
    let c = parse(
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, \
         TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  prefer_server_cipher_suites: false\n",
    )
    .unwrap();
    let tls = c.tls.unwrap();
    let mut want: Vec<&str> = all13.to_vec();
    want.extend([
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ]);
    assert_eq!(suites(tls.config()), want);
    assert!(tls.config().ignore_client_order);
    let c = parse("  cipher_suites: []\n").unwrap();
    assert_eq!(suites(c.tls.unwrap().config()).len(), 9);

    // Go's CBC and RSA-key-exchange suites, which rustls lacks: dropped with a warning while
    // another named one is left, refused when none is.
    let c = parse(
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, \
         TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n",
    )
    .unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"));
    let c =
        parse("  cipher_suites: [TLS_AES_128_GCM_SHA256]\nhttp_server_config:\n  http2: false\n")
            .unwrap();
    assert!(
        c.warnings[0].contains("names no TLS 1.2 suite"),
        "{:?}",
        c.warnings
    );

    let refused = [
        (
            "  client_auth_type: Sometimes\n",
            "tls_server_config.client_auth_type: invalid ClientAuth: \"Sometimes\"",
        ),
        (
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config.client_ca_file: is required with client_auth_type \
             RequireAndVerifyClientCert",
        ),
        (
            "  client_ca_file: ca.pem\n",
            "tls_server_config.client_ca_file: client CAs are configured without \
             client_auth_type",
        ),
        (
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: /dev/null\n",
            "tls_server_config.client_ca_file: no certificate in it",
        ),
        (
            "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_AES_128_GCM_SHA256]\n",
            "tls_server_config.cipher_suites: rustls has none of the TLS 1.2 suites named",
        ),
        (
            "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n",
            "tls_server_config.cipher_suites: lacks TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or \
             TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, which HTTP/2 requires",
        ),
        (
            "  min_version: TLS13\n  max_version: TLS12\n",
            "tls_server_config.max_version: is below min_version",
        ),
        (
            "  min_version: TLS10\n",
            "tls_server_config.min_version: \"TLS10\" is not supported",
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
        (
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
             client_allowed_sans: []\n",
            "tls_server_config.client_allowed_sans: an empty list lets no client in",
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
    // HTTP/2 off, or a TLS 1.3 minimum: Go asks nothing of the TLS 1.2 list.
    for extra in [
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\nhttp_server_config:\n  \
         http2: false\n",
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n  min_version: TLS13\n",
    ] {
        parse(extra).unwrap_or_else(|e| panic!("{extra}: {e}"));
    }
}

/// exporter-toolkit's `TLSConfig.IsEnabled` (the table of `TestTLSConfigIsEnabled` at
/// 19a7c2d): TLS is on where a certificate, key, client CA or client_auth_type is named. Where
/// only other keys are, the port serves plain HTTP; where some are, the rest is required.
#[test]
fn tls_is_on_only_where_exporter_toolkit_turns_it_on() {
    let parse = |text: &str| WebConfig::parse(Path::new("/nonexistent/web.yml"), text);
    // "empty config", "only non-enabling fields set": plain HTTP.
    for text in [
        "tls_server_config: {}\n",
        "tls_server_config:\n  min_version: TLS12\n  prefer_server_cipher_suites: true\n",
        // Go checks names while it reads, and no more: TLS 1.0 is only a name here.
        "tls_server_config:\n  min_version: TLS10\n  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n",
        "tls_server_config:\n  cert_file: \"\"\n  key: \"\"\n",
    ] {
        let c = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(c.tls.is_none(), "{text}");
        assert!(c.warnings[0].contains("TLS is off"), "{text}");
    }
    // "cert_file and key_file set", "inline cert and key set", "only client CA file set",
    // "only client auth type set": TLS is on, so what it needs is read and checked.
    for (text, want) in [
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
            "tls_server_config.cert_file: /nonexistent/server.crt: No such file",
        ),
        (
            "tls_server_config:\n  cert: cert\n  key: key\n",
            "tls_server_config.cert: no certificate in it",
        ),
        (
            "tls_server_config:\n  client_ca_file: client_ca.crt\n",
            "tls_server_config: missing one of cert or cert_file",
        ),
        (
            "tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config: missing one of cert or cert_file",
        ),
    ] {
        let e = parse(text)
            .err()
            .unwrap_or_else(|| panic!("accepted {text}"));
        let got = e.to_string();
        assert!(got.contains(want), "{text}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn the_readme_example_is_accepted_and_its_hash_is_of_change_me() {
    let readme = include_str!("../../../../docs/tls-and-auth.md");
    let start = readme
        .find("# web.yml")
        .expect("docs/tls-and-auth.md's web.yml");
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
fn a_reload_keeps_the_rate_limit_bucket_unless_its_settings_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yml");
    std::fs::write(&path, "rate_limit:\n  interval: 1h\n  burst: 1\n").unwrap();
    let file = WebConfigFile::open(&path).unwrap();
    assert!(file.current().rate_limit.as_ref().unwrap().allow());
    assert!(!file.current().rate_limit.as_ref().unwrap().allow());
    let reload = |text: &str| {
        std::fs::write(&path, text).unwrap();
        // A write within the same mtime tick changes the length here.
        file.reload_if_changed().expect("a change").unwrap();
    };
    reload("rate_limit:\n  interval: 1h\n  burst: 1\nhttp_server_config: {}\n");
    assert!(
        !file.current().rate_limit.as_ref().unwrap().allow(),
        "still empty"
    );
    reload("rate_limit:\n  interval: 1h\n  burst: 2\n");
    assert!(
        file.current().rate_limit.as_ref().unwrap().allow(),
        "a new bucket"
    );
    reload("rate_limit:\n  interval: 0\n  burst: 2\n");
    assert!(file.current().rate_limit.is_none());
}

#[test]
fn an_empty_file_is_plain_http_without_auth() {
    for text in [
        "",
        "{}\n",
        "basic_auth_users: {}\n",
        "tls_server_config: {}\n",
        "tls_server_config:\n",
        "rate_limit:\n  interval: 0\n  burst: 0\n",
    ] {
        let c = WebConfig::parse(Path::new("/x"), text).unwrap();
        assert!(c.tls.is_none() && c.users.is_none() && c.headers.is_empty());
        assert!(c.rate_limit.is_none());
    }
}

#[test]
fn values_are_read_as_go_reads_them() {
    let c = WebConfig::parse(
        Path::new("/x"),
        "http_server_config:\n  http2: off\n  headers:\n    X-XSS-Protection: 1\n    \
         Content-Security-Policy: \"a\\nb\"\n    Strict-Transport-Security:\n\
         rate_limit:\n  interval: 1m30s\n  burst: 3\n",
    )
    .unwrap();
    let header = |n: &str| c.headers.get(n).unwrap().to_str().unwrap();
    assert_eq!(header("x-xss-protection"), "1");
    assert_eq!(header("content-security-policy"), "a b");
    assert_eq!(header("strict-transport-security"), "");
    assert_eq!(
        c.rate_limit.as_ref().unwrap().settings(),
        (std::time::Duration::from_secs(90), 3)
    );
    // An integer interval is nanoseconds, as in Go.
    let c = WebConfig::parse(Path::new("/x"), "rate_limit:\n  interval: 1000\n").unwrap();
    assert_eq!(
        c.rate_limit.unwrap().settings(),
        (std::time::Duration::from_micros(1), 0)
    );
    let c = WebConfig::parse(Path::new("/x"), "rate_limit:\n  interval: -1s\n").unwrap();
    assert!(
        c.rate_limit.is_none(),
        "rate.Every of a negative interval is rate.Inf"
    );
}
