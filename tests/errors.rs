//! Every way a sync can fail before it starts gets one clear line and changes nothing on either
//! side: a wrong password, an unreachable server, an untrusted certificate, a malformed
//! configuration, an unknown account.

mod common;
mod support;

use common::{Env, stderr};
use support::corpus;

fn assert_untouched(env: &Env, before: &common::Side) {
    assert_eq!(&env.remote(), before, "the server changed");
    assert!(!env.maildir().exists(), "the Maildir was created");
}

fn filled() -> (Env, common::Side) {
    let env = Env::new();
    env.ctl.append("INBOX", &corpus::message(1, 1), &["\\Seen"]);
    let before = env.remote();
    (env, before)
}

#[test]
fn a_wrong_password_is_reported_and_changes_nothing() {
    let (env, before) = filled();
    env.write_config("password = \"not-the-password\"");
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("idlewild: test: "), "{err}");
    assert!(err.contains("login") && err.contains("refused"), "{err}");
    assert!(
        !err.contains("not-the-password"),
        "the password leaked: {err}"
    );
    assert_untouched(&env, &before);
}

#[test]
fn an_unreachable_server_is_reported_and_changes_nothing() {
    let (env, before) = filled();
    // A port nobody listens on: bind one and close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    env.write_config(&format!("port = {port}"));
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot connect to 127.0.0.1"),
        "{}",
        stderr(&out)
    );
    assert_untouched(&env, &before);
}

#[test]
fn an_untrusted_certificate_is_refused_with_its_fingerprint() {
    let (env, before) = filled();
    env.write_config(&format!(
        "tls = \"implicit\"\nport = {}",
        env.dovecot.tls_port()
    ));
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("TLS"), "{err}");
    // The message shows the presented certificate's fingerprint, ready to pin.
    let hex = env.dovecot.cert_sha256();
    let pinned: String = err
        .split("sha256:")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_hexdigit() || *c == ':')
                .filter(|c| *c != ':')
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(pinned.to_lowercase(), hex, "{err}");
    assert_untouched(&env, &before);

    // Pinning that fingerprint, or trusting the CA file, makes it work.
    env.write_config(&format!(
        "tls = \"implicit\"\nport = {}\ncert_fingerprint = \"sha256:{hex}\"",
        env.dovecot.tls_port()
    ));
    env.sync_ok(&[]);
    env.write_config(&format!(
        "tls = \"starttls\"\nca_file = \"{}\"",
        env.dovecot.ca_file().display()
    ));
    env.sync_ok(&[]);
    env.assert_in_step();
}

#[test]
fn a_wrong_pin_is_refused() {
    let (env, before) = filled();
    env.write_config(&format!(
        "tls = \"implicit\"\nport = {}\ncert_fingerprint = \"sha256:{}\"",
        env.dovecot.tls_port(),
        "00".repeat(32)
    ));
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("TLS"), "{}", stderr(&out));
    assert_untouched(&env, &before);
}

#[test]
fn a_malformed_configuration_names_file_line_and_key() {
    let (env, before) = filled();
    env.write_config("port = \"imaps\"");
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let path = env.config_path().display().to_string();
    assert!(err.starts_with(&format!("idlewild: {path}:")), "{err}");
    assert!(err.contains("accounts.test.remote.port"), "{err}");
    assert_untouched(&env, &before);

    std::fs::write(env.config_path(), "[accounts.test\n").expect("write");
    let out = env.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{path}:1:")),
        "{}",
        stderr(&out)
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idlewild"))
        .args(["--config", "/nonexistent/idlewild.toml", "sync"])
        .output()
        .expect("run idlewild");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/idlewild.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unknown_account_is_named() {
    let (env, before) = filled();
    let out = env.run(&["sync", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no account named \"nosuch\""),
        "{}",
        stderr(&out)
    );
    assert_untouched(&env, &before);
}

#[test]
fn a_password_in_a_world_readable_file_draws_a_warning() {
    let (env, _) = filled();
    common::set_mode(&env.config_path(), 0o644);
    let out = env.run(&["check-config"]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    common::set_mode(&env.config_path(), 0o600);
    let out = env.run(&["check-config"]);
    assert!(!stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

#[test]
fn completions_are_generated_for_each_shell() {
    let (env, _) = filled();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.run(&["completions", shell]);
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("allow-mass-delete"),
            "{shell}"
        );
    }
}

#[test]
fn the_password_never_reaches_the_log_even_at_trace_level() {
    let (env, _) = filled();
    let out = env
        .command(&["-vvv", "sync"])
        .env("IDLEWILD_LOG", "trace")
        .output()
        .expect("run idlewild");
    assert!(out.status.success(), "{}", stderr(&out));
    let all = format!("{}{}", stderr(&out), common::stdout(&out));
    assert!(
        all.contains("LOGIN") || all.contains("logged in"),
        "trace logging is on"
    );
    assert!(
        !all.contains(env.dovecot.password()),
        "the password is in the log"
    );
}
