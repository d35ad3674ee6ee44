//! TLS with rustls (ring provider): trust anchors, certificate pinning, and errors that tell a
//! person what to put in the configuration.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::config::ImapConfig;
use crate::store::StoreError;

/// `sha256:ab:cd:...`, the spelling `cert_fingerprint` accepts.
pub fn format_fingerprint(sha256: &[u8; 32]) -> String {
    let pairs: Vec<String> = sha256.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{}", pairs.join(":"))
}

/// What the verifier saw of the server's certificate, kept for the error message.
#[derive(Debug, Clone, Default)]
struct Seen {
    sha256: Option<[u8; 32]>,
    /// The certificate was refused because it is not the pinned one.
    pin_mismatch: bool,
    /// Nothing to verify against: no system roots, no ca_file.
    no_anchors: bool,
}

#[derive(Debug)]
enum Trust {
    /// Exactly this certificate (SHA-256 of its DER), whoever issued it.
    Pinned([u8; 32]),
    WebPki(Arc<WebPkiServerVerifier>),
    NoAnchors,
}

/// Verifies the server's certificate and records its fingerprint whatever the verdict.
#[derive(Debug)]
struct Verifier {
    trust: Trust,
    provider: Arc<CryptoProvider>,
    seen: Arc<Mutex<Seen>>,
}

impl Verifier {
    fn record(&self, update: impl FnOnce(&mut Seen)) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        update(&mut seen);
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let sha256: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        self.record(|s| s.sha256 = Some(sha256));
        match &self.trust {
            // A pin replaces the whole chain and name check: it is the user's explicit
            // statement that this certificate is the server's (self-signed ones included).
            Trust::Pinned(expected) if *expected == sha256 => Ok(ServerCertVerified::assertion()),
            Trust::Pinned(_) => {
                self.record(|s| s.pin_mismatch = true);
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
            Trust::WebPki(inner) => {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            Trust::NoAnchors => {
                self.record(|s| s.no_anchors = true);
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer,
                ))
            }
        }
    }

    // The handshake signatures are checked in every mode, pinned or not: they prove the server
    // holds the certificate's private key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The trust anchors: the system's, plus `ca_file`.
fn root_store(config: &ImapConfig) -> Result<RootCertStore, StoreError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("cannot load a system CA certificate: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!("{added} system CA certificates loaded, {ignored} unusable");

    if let Some(path) = &config.ca_file {
        let invalid =
            |what: String| StoreError::Invalid(format!("ca_file {}: {what}", path.display()));
        let mut count = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| invalid(e.to_string()))? {
            let cert = cert.map_err(|e| invalid(e.to_string()))?;
            roots.add(cert).map_err(|e| {
                invalid(format!("a certificate cannot serve as a trust anchor: {e}"))
            })?;
            count += 1;
        }
        if count == 0 {
            return Err(invalid("holds no PEM certificate".to_owned()));
        }
    }
    Ok(roots)
}

/// Runs the TLS handshake on `tcp` with the host name as SNI (IP addresses allowed; RFC 6066
/// sends no SNI for them).
pub async fn handshake(
    tcp: TcpStream,
    config: &ImapConfig,
    host: &str,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, StoreError> {
    let tls_error = |detail: String| StoreError::Tls {
        host: host.to_owned(),
        detail,
    };
    let provider = Arc::new(crypto::ring::default_provider());
    let trust = match config.cert_fingerprint {
        Some(pin) => Trust::Pinned(pin),
        None => {
            let roots = root_store(config)?;
            if roots.is_empty() {
                Trust::NoAnchors
            } else {
                let verifier =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| tls_error(e.to_string()))?;
                Trust::WebPki(verifier)
            }
        }
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let verifier = Verifier {
        trust,
        provider: provider.clone(),
        seen: seen.clone(),
    };
    let client_config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let server_name = ServerName::try_from(host.to_owned()).map_err(|_| {
        StoreError::Invalid(format!(
            "host {host:?} is neither a DNS name nor an IP address"
        ))
    })?;

    let connector = TlsConnector::from(Arc::new(client_config));
    match tokio::time::timeout(timeout, connector.connect(server_name, tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => {
            let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
            Err(tls_error(explain(&e, &seen, config, host)))
        }
        Err(_) => Err(StoreError::Timeout {
            host: host.to_owned(),
            seconds: timeout.as_secs(),
        }),
    }
}

/// Turns a failed handshake into a message that says what to do.
fn explain(error: &std::io::Error, seen: &Seen, config: &ImapConfig, host: &str) -> String {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let (Some(rustls::Error::InvalidCertificate(reason)), Some(sha256)) =
        (rustls_error, seen.sha256)
    else {
        return format!("handshake failed: {error}");
    };
    let presented = format_fingerprint(&sha256);
    if seen.pin_mismatch {
        let pinned = config
            .cert_fingerprint
            .map(|p| format_fingerprint(&p))
            .unwrap_or_default();
        return format!(
            "the server presented certificate {presented}, not the one pinned with cert_fingerprint ({pinned}); if the server's certificate was replaced on purpose, pin the new one with cert_fingerprint = \"{presented}\""
        );
    }
    let name = variant_name(reason);
    let why = match reason {
        CertificateError::UnknownIssuer if seen.no_anchors => {
            "UnknownIssuer: no CA certificates found on this system".to_owned()
        }
        // webpki tried an anchor whose name matched the issuer, but its key did not sign this
        // certificate (Debian's snakeoil certificate, CN=localhost, in /etc/ssl/certs is one):
        // for the user that is the same as an unknown issuer.
        CertificateError::BadSignature => format!("UnknownIssuer: {name}"),
        _ if name.starts_with("UnsupportedSignatureAlgorithm") => {
            format!("UnknownIssuer: {name}")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("NotValidForName: it is not issued for {host}")
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "Expired".to_owned(),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "NotValidYet: check this computer's clock".to_owned()
        }
        CertificateError::Other(other) => format!("{other}"),
        _ => name,
    };
    format!(
        "certificate not trusted ({why}); if this is your server's certificate, set ca_file, or pin it with cert_fingerprint = \"{presented}\""
    )
}

/// `ExpiredContext { .. }` -> `ExpiredContext`: the name without the details.
fn variant_name(error: &CertificateError) -> String {
    let debug = format!("{error:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_written_as_the_config_reads_them() {
        let mut fp = [0u8; 32];
        fp[0] = 0xab;
        fp[31] = 0x01;
        let text = format_fingerprint(&fp);
        assert!(text.starts_with("sha256:ab:00:"), "{text}");
        assert!(text.ends_with(":00:01"));
        assert_eq!(text.len(), "sha256:".len() + 32 * 3 - 1);
    }

    #[test]
    fn certificate_errors_are_named_without_their_details() {
        assert_eq!(
            variant_name(&CertificateError::UnknownIssuer),
            "UnknownIssuer"
        );
        let expired = CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(2)),
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(1)),
        };
        assert_eq!(variant_name(&expired), "ExpiredContext");
    }
}
