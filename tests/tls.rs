//! A server's own self-signed certificate in `ca_file`, made the usual way (`openssl req -x509`,
//! which marks it CA:TRUE): trusted as is when the server presents exactly it, still checked
//! against the host name, and of no use to a different certificate.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Env, stderr};
use support::corpus;
use support::dovecot::DovecotOptions;

struct SelfSigned {
    cert: PathBuf,
    key: PathBuf,
}

/// A key and a self-signed certificate for `subject` and `san`, by OpenSSL's defaults: its
/// default configuration (Debian's OpenSSL 3) marks the certificate CA:TRUE.
fn self_signed(dir: &Path, file: &str, subject: &str, san: &str) -> SelfSigned {
    let cert = dir.join(format!("{file}.pem"));
    let key = dir.join(format!("{file}.key"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", subject, "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-addext", &format!("subjectAltName={san}")])
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = openssl_x509(&cert, &["-text"]);
    assert!(
        text.contains("CA:TRUE"),
        "this test needs the CA:TRUE certificate `openssl req -x509` makes by default:\n{text}"
    );
    SelfSigned { cert, key }
}

fn openssl_x509(cert: &Path, what: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout"])
        .args(what)
        .arg("-in")
        .arg(cert)
        .output()
        .expect("run openssl");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sha256:ab:cd:...`, as idlewild writes fingerprints.
fn fingerprint(cert: &Path) -> String {
    // "sha256 Fingerprint=AB:CD:..." (the prefix's case varies between versions)
    let out = openssl_x509(cert, &["-fingerprint", "-sha256"]);
    let hex = out.split_once('=').expect("a fingerprint").1.trim();
    format!("sha256:{}", hex.to_ascii_lowercase())
}

/// A private Dovecot presenting `cert`, with one message in INBOX.
fn serving(cert: &SelfSigned) -> Env {
    let env = Env::with(DovecotOptions {
        extra_config: vec![format!(
            "ssl_cert = <{}\nssl_key = <{}",
            cert.cert.display(),
            cert.key.display()
        )],
        ..DovecotOptions::default()
    });
    env.ctl.append("INBOX", &corpus::message(1, 1), &["\\Seen"]);
    env
}

fn trusting(env: &Env, ca_file: &Path) {
    env.write_config(&format!(
        "tls = \"implicit\"\nport = {}\nca_file = \"{}\"",
        env.dovecot.tls_port(),
        ca_file.display()
    ));
}

/// Runs a sync that must fail before it changes anything, and returns its error output.
fn refused(env: &Env) -> String {
    let before = env.remote();
    let out = env.run(&["sync"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("TLS"), "{err}");
    assert_eq!(env.remote(), before, "the server changed");
    assert!(!env.maildir().exists(), "the Maildir was created");
    err
}

#[test]
fn a_servers_own_self_signed_ca_certificate_in_ca_file_is_trusted() {
    let certs = tempfile::tempdir().expect("tempdir");
    let own = self_signed(
        certs.path(),
        "own",
        "/CN=localhost",
        "IP:127.0.0.1,DNS:localhost",
    );
    let env = serving(&own);
    trusting(&env, &own.cert);
    env.sync_ok(&[]);
    env.write_config(&format!(
        "tls = \"starttls\"\nca_file = \"{}\"",
        own.cert.display()
    ));
    env.sync_ok(&[]);
    env.assert_in_step();
}

#[test]
fn a_self_signed_certificate_in_ca_file_must_still_be_for_the_host() {
    let certs = tempfile::tempdir().expect("tempdir");
    let other = self_signed(
        certs.path(),
        "other",
        "/CN=other.example",
        "DNS:other.example",
    );
    let env = serving(&other);
    trusting(&env, &other.cert);
    let err = refused(&env);
    assert!(
        err.contains("NotValidForName: it is not issued for 127.0.0.1"),
        "{err}"
    );
}

#[test]
fn another_self_signed_certificate_in_ca_file_trusts_nothing_else() {
    let certs = tempfile::tempdir().expect("tempdir");
    let san = "IP:127.0.0.1,DNS:localhost";
    let presented = self_signed(certs.path(), "presented", "/CN=localhost", san);
    let listed = self_signed(certs.path(), "listed", "/CN=localhost", san);
    let env = serving(&presented);
    trusting(&env, &listed.cert);
    let err = refused(&env);
    assert!(
        err.contains("not one of the certificates in ca_file"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "cert_fingerprint = \"{}\"",
            fingerprint(&presented.cert)
        )),
        "{err}"
    );
}
