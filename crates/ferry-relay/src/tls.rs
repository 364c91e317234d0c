//! TLS for the listeners: rustls with TLS 1.2 and 1.3 only, ECDHE key
//! exchange and AEAD suites only; the certificate from PEM files, or a
//! self-signed development certificate when none is configured.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::{CryptoProvider, ring};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS setting that cannot be used; names the configuration key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct TlsError {
    pub key: &'static str,
    pub problem: String,
}

fn tls_error(key: &'static str, problem: impl Into<String>) -> TlsError {
    TlsError {
        key,
        problem: problem.into(),
    }
}

/// The suites Ferry offers: every one AEAD with ephemeral (EC)DHE. rustls
/// has no CBC or static-RSA suites at all; listing ours keeps that a
/// decision rather than a default.
fn provider() -> CryptoProvider {
    use ring::cipher_suite::*;
    CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_256_GCM_SHA384,
            TLS13_AES_128_GCM_SHA256,
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..ring::default_provider()
    }
}

/// Both PEM files' bytes, a failure naming the key of the file that failed.
pub fn read_pem(certificate: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |name: &'static str, path: &Path| {
        std::fs::read(path).map_err(|e| tls_error(name, format!("{}: {e}", path.display())))
    };
    Ok((read("tls.certificate", certificate)?, read("tls.key", key)?))
}

/// The server configuration from a PEM chain and key, as read from their
/// files (`pem`); the paths name them in errors.
pub fn server_config_from_pem(
    certificate: &Path,
    key: &Path,
    pem: &(Vec<u8>, Vec<u8>),
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem.0)
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error("tls.certificate", format!("{}: {e}", certificate.display())))?;
    if chain.is_empty() {
        return Err(tls_error(
            "tls.certificate",
            format!("{}: no certificate in the file", certificate.display()),
        ));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&pem.1).map_err(|e| tls_error("tls.key", format!("{}: {e}", key.display())))?;
    let config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls_error("tls", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| tls_error("tls.key", format!("does not match tls.certificate or is unusable: {e}")))?;
    Ok(Arc::new(config))
}

/// Where [`development_certificate`] keeps its certificate and key under `dir`.
pub fn development_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("dev-certificate.pem"), dir.join("dev-key.pem"))
}

/// Creates (once) a self-signed certificate for `hostname`, `localhost` and
/// 127.0.0.1 under `dir`, and returns the certificate and key paths.
pub fn development_certificate(dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert_path, key_path) = development_paths(dir);
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let names = vec![hostname.to_string(), "localhost".into(), "127.0.0.1".into()];
    let generated = rcgen::generate_simple_self_signed(names).map_err(|e| {
        tls_error(
            "tls.certificate",
            format!("cannot generate a development certificate: {e}"),
        )
    })?;
    let io = |path: &Path, e: std::io::Error| tls_error("server.data_dir", format!("{}: {e}", path.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    // Nodes started together on one data_dir: each writes its pair under
    // names of its own, and the first to link its key in place wins; the
    // others take the winner's pair. The certificate is renamed in last,
    // so a pair is complete once the certificate exists.
    let unique = format!("{}.{:016x}", std::process::id(), rand::random::<u64>());
    let key_tmp = dir.join(format!(".dev-key.{unique}.tmp"));
    let cert_tmp = dir.join(format!(".dev-cert.{unique}.tmp"));
    write_private(&key_tmp, generated.key_pair.serialize_pem().as_bytes()).map_err(|e| io(&key_tmp, e))?;
    write_private(&cert_tmp, generated.cert.pem().as_bytes()).map_err(|e| io(&cert_tmp, e))?;
    let won = std::fs::hard_link(&key_tmp, &key_path);
    let _ = std::fs::remove_file(&key_tmp);
    match won {
        Ok(()) => std::fs::rename(&cert_tmp, &cert_path).map_err(|e| io(&cert_path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&cert_tmp);
            wait_for_winner(&cert_path, &key_path)?;
        }
        Err(e) => return Err(io(&key_path, e)),
    }
    Ok((cert_path, key_path))
}

/// Another node linked its key first: its certificate follows at once.
fn wait_for_winner(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cert_path.exists() {
        if std::time::Instant::now() >= deadline {
            return Err(tls_error(
                "server.data_dir",
                format!(
                    "{} has no certificate beside it (a node died making it?): remove it to make a new pair",
                    key_path.display()
                ),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// What the Received header and message log say about a session's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

impl TlsInfo {
    pub fn of(conn: &rustls::ServerConnection) -> Self {
        Self::from_parts(conn.protocol_version(), conn.negotiated_cipher_suite())
    }

    pub fn of_client(conn: &rustls::ClientConnection) -> Self {
        Self::from_parts(conn.protocol_version(), conn.negotiated_cipher_suite())
    }

    fn from_parts(version: Option<rustls::ProtocolVersion>, suite: Option<rustls::SupportedCipherSuite>) -> Self {
        let version = match version {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "unknown".into(),
        };
        let cipher = suite.and_then(|s| s.suite().as_str()).unwrap_or("unknown").to_string();
        TlsInfo { version, cipher }
    }

    pub fn describe(&self) -> String {
        format!("{} {}", self.version, self.cipher)
    }
}

/// The two client configurations of the outbound side: opportunistic (any
/// certificate: RFC 7435, better than plaintext) and verified (system roots
/// plus `delivery.extra_ca_files`).
pub struct ClientTls {
    pub opportunistic: Arc<rustls::ClientConfig>,
    pub verified: Arc<rustls::ClientConfig>,
}

pub fn client_tls(extra_ca_files: &[PathBuf]) -> Result<ClientTls, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for file in extra_ca_files {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
            .and_then(|c| c.collect::<Result<_, _>>())
            .map_err(|e| tls_error("delivery.extra_ca_files", format!("{}: {e}", file.display())))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| tls_error("delivery.extra_ca_files", format!("{}: {e}", file.display())))?;
        }
    }
    let provider = Arc::new(provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| tls_error("tls", e.to_string()))
    };
    let verified = builder()?.with_root_certificates(roots).with_no_client_auth();
    let opportunistic = builder()?
        .dangerous()
        .with_custom_certificate_verifier(any_certificate(provider.clone()))
        .with_no_client_auth();
    Ok(ClientTls {
        opportunistic: Arc::new(opportunistic),
        verified: Arc::new(verified),
    })
}

/// A verifier that accepts any certificate (see [`AnyCertificate`]); also
/// what load generators use against a development certificate.
pub fn any_certificate(provider: Arc<CryptoProvider>) -> Arc<dyn rustls::client::danger::ServerCertVerifier> {
    Arc::new(AnyCertificate(provider, None))
}

/// A client that trusts exactly the certificate in the PEM file `pem`
/// (its first): how the CLI reaches its own relay's HTTPS admin endpoint
/// on loopback, where no public CA and no name for 127.0.0.1 apply.
pub fn pinned_client(pem: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let leaf = CertificateDer::pem_file_iter(pem)
        .ok()
        .and_then(|mut certs| certs.next())
        .and_then(Result::ok)
        .ok_or_else(|| tls_error("tls.certificate", format!("{}: no certificate", pem.display())))?;
    let provider = Arc::new(provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls_error("tls", e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider, Some(leaf.to_vec()))))
        .with_no_client_auth();
    Ok(config)
}

/// Accepts any certificate (or only the one pinned), but still checks the
/// handshake signatures: opportunistic TLS protects against passive
/// eavesdropping only, which is what MTA-to-MTA STARTTLS without DANE or
/// MTA-STS can promise.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>, Option<Vec<u8>>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match &self.1 {
            Some(pinned) if pinned.as_slice() != end_entity.as_ref() => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(rustls::client::danger::ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
