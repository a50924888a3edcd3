use super::*;

/// A self-signed certificate and its key, written as `server.crt` and `server.key` in
/// `dir`, and another key that does not match it (`other.key`).
fn pki(dir: &Path) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("server.crt"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), ck.signing_key.serialize_pem()).unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
}

fn load(dir: &Path, text: &str) -> Result<WebConfig, WebConfigError> {
    let path = dir.join("web.yml");
    std::fs::write(&path, text).unwrap();
    WebConfig::load(&path)
}

fn refused(dir: &Path, text: &str) -> WebConfigError {
    match load(dir, text) {
        Ok(c) => panic!("accepted: {c:?}\n{text}"),
        Err(e) => e,
    }
}

/// bcrypt("secret", cost 4), made by libxcrypt (Python's `crypt`), not by the crate that
/// verifies it.
const HASH: &str = "$2b$04$Y1gv0YPLTxQ63bjVTzi85ev7J/eF2mqRNO70DEimuzLnpMF5IWHXa";

#[test]
fn an_empty_file_configures_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(dir.path(), "").unwrap();
    assert!(c.tls.is_none() && c.users.is_empty() && c.headers.is_empty());
    let c = load(dir.path(), "tls_server_config:\nhttp_server_config:\n").unwrap();
    assert!(c.tls.is_none());
}

#[test]
fn unknown_keys_are_refused_with_their_name_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let e = refused(dir.path(), "basic_auth_users: {}\nfoo: 1\n");
    assert_eq!(e.key, "foo");
    assert!(
        e.message.contains("line 2") && e.message.contains("foo"),
        "{e}"
    );
    // Keys of later toolkits than Prometheus 2.42's: refused as promtool 2.42 refuses them.
    let e = refused(dir.path(), "rate_limit:\n  interval: 1s\n");
    assert_eq!(e.key, "rate_limit");
    let e = refused(
        dir.path(),
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n",
    );
    assert_eq!(e.key, "tls_server_config.client_allowed_sans");
    assert!(e.message.contains("line 4"), "{e}");
    let e = refused(dir.path(), "tls_server_config:\n  cert: abc\n");
    assert_eq!(e.key, "tls_server_config.cert");
}

#[test]
fn users_need_bcrypt_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(
        dir.path(),
        &format!("basic_auth_users:\n  alice: '{HASH}'\n"),
    )
    .unwrap();
    assert_eq!(c.users["alice"], HASH);
    let e = refused(dir.path(), "basic_auth_users:\n  alice: secret\n");
    assert_eq!(e.key, "basic_auth_users.alice");
    assert!(e.message.contains("not a bcrypt hash"), "{e}");
    // A cost bcrypt refuses.
    let e = refused(
        dir.path(),
        &format!(
            "basic_auth_users:\n  bob: '{}'\n",
            HASH.replace("$04$", "$03$")
        ),
    );
    assert!(e.message.contains("cost 3"), "{e}");
}

#[test]
fn headers_from_the_allow_list_with_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(
        dir.path(),
        "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    \
         Strict-Transport-Security: max-age=31536000\n",
    )
    .unwrap();
    assert_eq!(
        c.headers,
        vec![
            (
                "Strict-Transport-Security".into(),
                "max-age=31536000".into()
            ),
            ("X-Frame-Options".into(), "deny".into())
        ]
    );
    let e = refused(
        dir.path(),
        "http_server_config:\n  headers:\n    Server: me\n",
    );
    assert_eq!(e.key, "http_server_config.headers.Server");
    assert!(e.message.contains("can not be configured"), "{e}");
    let e = refused(
        dir.path(),
        "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
    );
    assert!(e.message.contains("nosniff"), "{e}");
}

#[test]
fn tls_with_paths_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let c = load(
        dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n",
    )
    .unwrap();
    assert!(c.tls.is_some());
    assert_eq!(
        c.files,
        vec![
            dir.path().join("web.yml"),
            dir.path().join("server.crt"),
            dir.path().join("server.key")
        ]
    );
    let c = c.tls.unwrap();
    assert_eq!(c.alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert!(c.ignore_client_order);
}

#[test]
fn tls_mistakes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let tls = |rest: &str| format!("tls_server_config:\n{rest}");
    let cases: &[(&str, &str, &str)] = &[
        ("  cert_file: server.crt\n", "tls_server_config.key_file", "missing key_file"),
        ("  key_file: server.key\n", "tls_server_config.cert_file", "missing cert_file"),
        (
            "  cert_file: server.crt\n  key_file: other.key\n",
            "tls_server_config.key_file",
            "do not make a certificate",
        ),
        (
            "  cert_file: nothere.crt\n  key_file: server.key\n",
            "tls_server_config.cert_file",
            "nothere.crt",
        ),
        (
            "  cert_file: server.key\n  key_file: server.key\n",
            "tls_server_config.cert_file",
            "no certificate",
        ),
        (
            "  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: server.crt\n",
            "tls_server_config.client_ca_file",
            "without a Client Auth Policy",
        ),
        (
            "  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config.client_ca_file",
            "needs a client_ca_file",
        ),
        (
            "  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Always\n",
            "tls_server_config.client_auth_type",
            "invalid ClientAuth: Always",
        ),
        (
            "  cert_file: server.crt\n  key_file: server.key\n  max_version: TLS11\n",
            "tls_server_config.max_version",
            "not supported",
        ),
        (
            "  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS14\n",
            "tls_server_config.min_version",
            "unknown TLS version: TLS14",
        ),
        (
            "  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n",
            "tls_server_config.cipher_suites",
            "is not supported",
        ),
        (
            "  cert_file: server.crt\n  key_file: server.key\n  curve_preferences: [CurveP521]\n",
            "tls_server_config.curve_preferences",
            "CurveP521 is not supported",
        ),
    ];
    for (text, key, says) in cases {
        let e = refused(dir.path(), &tls(text));
        assert_eq!(&e.key, key, "{text}: {e}");
        assert!(e.message.contains(says), "{text}: {e}");
    }
}

#[test]
fn tls_options_map_to_rustls() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let c = load(
        dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: server.crt\n  \
         cipher_suites: [TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n  \
         curve_preferences: [X25519, CurveP256]\n  min_version: TLS10\n  \
         prefer_server_cipher_suites: false\n",
    )
    .unwrap();
    let tls = c.tls.unwrap();
    assert!(!tls.ignore_client_order);
    let suites: Vec<_> = tls
        .crypto_provider()
        .cipher_suites
        .iter()
        .map(|s| s.suite())
        .collect();
    assert!(suites.contains(&rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384));
    assert!(!suites.contains(&rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256));
    assert!(suites.contains(&rustls::CipherSuite::TLS13_AES_256_GCM_SHA384));
    let groups: Vec<_> = tls
        .crypto_provider()
        .kx_groups
        .iter()
        .map(|g| g.name())
        .collect();
    assert_eq!(
        groups,
        vec![rustls::NamedGroup::X25519, rustls::NamedGroup::secp256r1]
    );
}

#[test]
fn special_files_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let e = WebConfig::load(Path::new("/dev/zero")).unwrap_err();
    assert!(e.message.contains("not a regular file"), "{e}");
    let e = refused(
        dir.path(),
        "tls_server_config:\n  cert_file: /dev/zero\n  key_file: /dev/zero\n",
    );
    assert!(e.message.contains("not a regular file"), "{e}");
}
