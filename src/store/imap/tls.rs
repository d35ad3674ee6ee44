//! TLS with rustls (ring provider): trust anchors, certificate pinning, and errors that tell a
//! person what to put in the configuration.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::{WebPkiServerVerifier, verify_server_name};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::x509::CertFacts;
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
    WebPki {
        verifier: Arc<WebPkiServerVerifier>,
        /// The certificates of `ca_file`, as read: one presented byte for byte is trusted as is.
        listed: Vec<CertificateDer<'static>>,
    },
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
            Trust::WebPki { verifier, listed } => {
                match verifier.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                ) {
                    // A self-signed server certificate made with `openssl req -x509` says
                    // CA:TRUE (RFC 5280 section 4.2.1.9: its key may sign certificates), and
                    // webpki refuses any CA certificate as an end entity. The user put these
                    // very bytes into ca_file, and OpenSSL-based clients and mbsync accept
                    // them, so trust them as is; the name and dates are still checked.
                    Err(e)
                        if is_ca_used_as_end_entity(&e)
                            && listed.iter().any(|c| c.as_ref() == end_entity.as_ref()) =>
                    {
                        verify_listed(end_entity, server_name, now)
                    }
                    verdict => verdict,
                }
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

/// Whether webpki refused the certificate for being a CA certificate (basicConstraints CA:TRUE).
fn is_ca_used_as_end_entity(error: &rustls::Error) -> bool {
    matches!(
        error,
        rustls::Error::InvalidCertificate(CertificateError::Other(other))
            if matches!(other.0.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity))
    )
}

/// Checks a certificate the user listed in ca_file and the server presented byte for byte: no
/// chain to build, since the user vouches for these bytes, but it must be within its validity
/// period (RFC 5280 section 4.1.2.5), be for the host connected to (section 4.2.1.6, checked
/// by webpki, which does not look at basicConstraints there), and, if it limits its purposes,
/// allow TLS servers (section 4.2.1.12).
fn verify_listed(
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<ServerCertVerified, rustls::Error> {
    let invalid = |e: CertificateError| rustls::Error::InvalidCertificate(e);
    let facts = CertFacts::parse(end_entity.as_ref())
        .ok_or_else(|| invalid(CertificateError::BadEncoding))?;
    let at = |seconds: i64| {
        UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
    };
    let now_seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if now_seconds < facts.not_before {
        return Err(invalid(CertificateError::NotValidYetContext {
            time: now,
            not_before: at(facts.not_before),
        }));
    }
    if now_seconds > facts.not_after {
        return Err(invalid(CertificateError::ExpiredContext {
            time: now,
            not_after: at(facts.not_after),
        }));
    }
    if !facts.for_servers {
        return Err(invalid(CertificateError::InvalidPurpose));
    }
    let parsed = ParsedCertificate::try_from(end_entity)?;
    verify_server_name(&parsed, server_name)?;
    Ok(ServerCertVerified::assertion())
}

/// The trust anchors: the system's, plus `ca_file`, whose certificates are also returned as
/// read.
fn root_store(
    config: &ImapConfig,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), StoreError> {
    let mut roots = RootCertStore::empty();
    let mut listed = Vec::new();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("cannot load a system CA certificate: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!("{added} system CA certificates loaded, {ignored} unusable");

    if let Some(path) = &config.ca_file {
        let invalid =
            |what: String| StoreError::Invalid(format!("ca_file {}: {what}", path.display()));
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| invalid(e.to_string()))? {
            let cert = cert.map_err(|e| invalid(e.to_string()))?;
            roots.add(cert.clone()).map_err(|e| {
                invalid(format!("a certificate cannot serve as a trust anchor: {e}"))
            })?;
            listed.push(cert);
        }
        if listed.is_empty() {
            return Err(invalid("holds no PEM certificate".to_owned()));
        }
    }
    Ok((roots, listed))
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
            let (roots, listed) = root_store(config)?;
            if roots.is_empty() {
                Trust::NoAnchors
            } else {
                let verifier =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| tls_error(e.to_string()))?;
                Trust::WebPki { verifier, listed }
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
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "InvalidPurpose: its extendedKeyUsage does not allow TLS servers".to_owned()
        }
        // A listed certificate presented as is was accepted above, so this one is not in
        // ca_file (or there is no ca_file).
        _ if is_ca_used_as_end_entity(&rustls::Error::InvalidCertificate(reason.clone())) => {
            match &config.ca_file {
                Some(path) => format!(
                    "CaUsedAsEndEntity: the server presented a CA certificate as its own, and it is not one of the certificates in ca_file {}",
                    path.display()
                ),
                None => {
                    "CaUsedAsEndEntity: the server presented a CA certificate as its own".to_owned()
                }
            }
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

    /// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500
    /// -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost`: CA:TRUE by
    /// OpenSSL 3's default, valid from 2026-12-07T03:36:55Z (UTCTime) to 2126-11-13T03:36:55Z
    /// (GeneralizedTime).
    const SELF_SIGNED: &str = "-----BEGIN CERTIFICATE-----
MIIBmjCCAUGgAwIBAgIUR8NSvcDeK4C38UCCbrPPf9ciDlYwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNzAzMzY1NVoYDzIxMjYxMTEz
MDMzNjU1WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAT1OWAzSRsKLYT7/5thZkoSrmJuO3ANpNO2O3pxjM6XnYBdV/hoMMrP
5VmDUi31fzaS4lvyKtZcRtiZd79UO1Ixo28wbTAdBgNVHQ4EFgQU10vFdEBoPYjs
5Q73kMsyvTHkm1UwHwYDVR0jBBgwFoAU10vFdEBoPYjs5Q73kMsyvTHkm1UwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwCgYIKoZI
zj0EAwIDRwAwRAIgRw3M8menhpr6zdc4aK2bpRz40cb5tpWAKSkoTowy4JACICSr
mITA+jx06GxVANTHpIeNPJ9KNfeeA4KKDiiz5Da8
-----END CERTIFICATE-----
";
    const NOT_BEFORE: u64 = 1_796_614_615;
    const NOT_AFTER: u64 = 4_950_214_615;

    fn at(seconds: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(seconds))
    }

    fn check(name: &str, now: u64) -> Result<ServerCertVerified, rustls::Error> {
        let cert = CertificateDer::from_pem_slice(SELF_SIGNED.as_bytes()).unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        verify_listed(&cert, &name, at(now))
    }

    #[test]
    fn webpki_refuses_the_self_signed_certificate_as_it_comes() {
        let cert = CertificateDer::from_pem_slice(SELF_SIGNED.as_bytes()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert.clone()).unwrap();
        let provider = Arc::new(crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let e = verifier
            .verify_server_cert(&cert, &[], &name, &[], at(NOT_BEFORE + 1))
            .unwrap_err();
        assert!(is_ca_used_as_end_entity(&e), "{e:?}");
    }

    #[test]
    fn a_listed_certificate_is_valid_for_its_names_within_its_dates() {
        for name in ["127.0.0.1", "localhost"] {
            check(name, NOT_BEFORE).unwrap();
            check(name, NOT_AFTER).unwrap();
        }
    }

    #[test]
    fn a_listed_certificate_for_another_name_is_refused() {
        for name in ["other.example", "127.0.0.2", "::1"] {
            let e = check(name, NOT_BEFORE + 1).unwrap_err();
            assert!(
                matches!(
                    e,
                    rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForNameContext { .. }
                    )
                ),
                "{name}: {e:?}"
            );
        }
    }

    #[test]
    fn a_listed_certificate_outside_its_dates_is_refused() {
        let e = check("127.0.0.1", NOT_BEFORE - 1).unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { not_before, .. })
                    if not_before == at(NOT_BEFORE)
            ),
            "{e:?}"
        );
        let e = check("127.0.0.1", NOT_AFTER + 1).unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { not_after, .. })
                    if not_after == at(NOT_AFTER)
            ),
            "{e:?}"
        );
    }
}
