//! Passwords from a real Secret Service (gnome-keyring on a private bus) and from password
//! commands, used by the real binary to log in to a private Dovecot; the `password` commands;
//! the daemon with a missing password; and no secret in any output.

mod common;
mod support;

use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Env, stderr, stdout};
use support::corpus;
use support::dovecot::{Dovecot, DovecotOptions};
use support::imapctl::ImapCtl;
use support::keyring::SecretService;

/// Every output of the binary in a test, checked at the end for secrets.
#[derive(Default)]
struct Outputs(Vec<String>);

impl Outputs {
    fn add(&mut self, out: &Output) -> Output {
        self.0.push(format!("{}{}", stdout(out), stderr(out)));
        out.clone()
    }

    fn assert_none_of(&self, secrets: &[&str]) {
        for text in &self.0 {
            for secret in secrets {
                assert!(
                    !text.contains(secret),
                    "a secret ({secret:?}) is in the output:\n{text}"
                );
            }
        }
    }
}

fn run_with(
    env: &Env,
    keyring: Option<&SecretService>,
    args: &[&str],
    input: Option<&str>,
) -> Output {
    let mut cmd = env.command(args);
    // Everything at the most verbose level: no dependency may log a secret either.
    cmd.env("IDLEWILD_LOG", "trace");
    cmd.env_remove("DBUS_SESSION_BUS_ADDRESS");
    if let Some(k) = keyring {
        for (key, value) in k.env() {
            cmd.env(key, value);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run idlewild");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        if let Some(text) = input {
            stdin.write_all(text.as_bytes()).expect("stdin");
        }
    }
    child.wait_with_output().expect("wait")
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        stdout(out),
        common::tail(&stderr(out), 40)
    )
}

#[test]
fn a_password_stored_with_secret_tool_logs_in() {
    let env = Env::new();
    env.ctl.append("INBOX", &corpus::message(1, 1), &[]);
    let keyring = SecretService::start();
    keyring.store("idlewild", "test", env.dovecot.password());
    env.write_config("password = { keyring = true }");
    let mut outputs = Outputs::default();

    let out = outputs.add(&run_with(&env, Some(&keyring), &["sync"], None));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(env.local_files("INBOX").len(), 1);

    // The default, with no password key at all, is the keyring too.
    std::fs::write(
        env.config_path(),
        std::fs::read_to_string(env.config_path())
            .unwrap()
            .replace("password = { keyring = true }\n", ""),
    )
    .unwrap();
    let out = outputs.add(&run_with(
        &env,
        Some(&keyring),
        &["password", "check", "test"],
        None,
    ));
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains(
            "account test: OK, logged in to 127.0.0.1 as test (password from the keyring)"
        ),
        "{}",
        show(&out)
    );
    outputs.assert_none_of(&[env.dovecot.password()]);
}

#[test]
fn password_set_check_and_delete_work_with_secret_tool() {
    let env = Env::new();
    let keyring = SecretService::start();
    env.write_config("password = { keyring = true }");
    let mut outputs = Outputs::default();
    let wrong = "wrong-password-5bd1";

    // Not a terminal: the first line of standard input.
    let out = outputs.add(&run_with(
        &env,
        Some(&keyring),
        &["password", "set", "test"],
        Some(&format!("{wrong}\n")),
    ));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(keyring.lookup("idlewild", "test").as_deref(), Some(wrong));

    let out = outputs.add(&run_with(
        &env,
        Some(&keyring),
        &["password", "check", "test"],
        None,
    ));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("login to 127.0.0.1 as test was refused"),
        "{}",
        show(&out)
    );

    let out = outputs.add(&run_with(
        &env,
        Some(&keyring),
        &["password", "set", "test"],
        Some(env.dovecot.password()),
    ));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        keyring.lookup("idlewild", "test").as_deref(),
        Some(env.dovecot.password())
    );
    let out = outputs.add(&run_with(
        &env,
        Some(&keyring),
        &["password", "check", "test"],
        None,
    ));
    assert!(out.status.success(), "{}", show(&out));

    let out = outputs.add(&run_with(
        &env,
        Some(&keyring),
        &["password", "delete", "test"],
        None,
    ));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(keyring.lookup("idlewild", "test"), None);
    let out = outputs.add(&run_with(
        &env,
        Some(&keyring),
        &["password", "check", "test"],
        None,
    ));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains(
            "no password in the keyring for account test: run `idlewild password set test`"
        ),
        "{}",
        show(&out)
    );

    // Usage errors: an unknown account, an empty password.
    let out = outputs.add(&run_with(
        &env,
        Some(&keyring),
        &["password", "set", "nobody"],
        Some("x\n"),
    ));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = outputs.add(&run_with(
        &env,
        Some(&keyring),
        &["password", "set", "test"],
        Some("\n"),
    ));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(keyring.lookup("idlewild", "test"), None);
    outputs.assert_none_of(&[env.dovecot.password(), wrong]);
}

#[test]
fn without_a_secret_service_the_error_says_what_to_do() {
    let env = Env::new();
    env.write_config("password = { keyring = true }");
    // A bus, but no Secret Service on it (and no activation).
    let bus = support::bus::PrivateBus::start();
    let mut cmd = env.command(&["sync"]);
    cmd.env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("no password in the keyring for account test: the keyring (Secret Service) cannot be reached"),
        "{}",
        show(&out)
    );
    // Nothing was created locally: the server was never reached.
    assert!(!env.maildir().exists());
}

#[test]
fn password_commands_log_in_or_fail_clearly() {
    let env = Env::new();
    env.ctl.append("INBOX", &corpus::message(2, 1), &[]);
    let mut outputs = Outputs::default();
    let script = env.dir.path().join("pw.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\nsecond line\\n' '{}'\n",
            env.dovecot.password()
        ),
    )
    .unwrap();
    common::set_mode(&script, 0o700);

    env.write_config(&format!(
        "password = {{ command = [\"{}\"] }}",
        script.display()
    ));
    let out = outputs.add(&run_with(&env, None, &["sync"], None));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(env.local_files("INBOX").len(), 1);

    // A failure: the exit status and standard error, not the output.
    env.write_config(r#"password = { command = ["sh", "-c", "echo leaked-line-77; echo 'pass: mail/test is not in the password store.' >&2; exit 1"] }"#);
    let out = outputs.add(&run_with(&env, None, &["sync"], None));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the password command of account test (sh) ended with exit status: 1"),
        "{err}"
    );
    assert!(
        err.contains("pass: mail/test is not in the password store."),
        "{err}"
    );

    env.write_config(r#"password = { command = ["sleep", "30"], timeout = 1 }"#);
    let started = Instant::now();
    let out = outputs.add(&run_with(&env, None, &["sync"], None));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("(sleep) did not finish within 1 s and was killed"),
        "{}",
        show(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    env.write_config(r#"password = { command = ["true"] }"#);
    let out = outputs.add(&run_with(&env, None, &["sync"], None));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("(true) printed nothing"),
        "{}",
        show(&out)
    );

    // A mistake in the keys is a configuration error with its position.
    env.write_config(r#"password = { keyring = true, command = ["true"] }"#);
    let out = outputs.add(&run_with(&env, None, &["sync"], None));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("accounts.test.remote.password: give password.keyring = true or password.command, not both"), "{}", show(&out));

    outputs.assert_none_of(&[env.dovecot.password(), "leaked-line-77", "second line"]);
}

/// The daemon child, with a notification socket; killed by PID when the test ends.
struct Daemon {
    child: Child,
    notify: UnixDatagram,
    log: std::path::PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a STATUS= line containing all of `parts`.
    fn expect_status(&self, parts: &[&str], within: Duration) {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg
                    .lines()
                    .any(|l| l.starts_with("STATUS=") && parts.iter().all(|p| l.contains(p)))
                {
                    return;
                }
                seen.push(msg);
            }
        }
        panic!(
            "no status with {parts:?} within {within:?}; saw {seen:?}\n--- log\n{}",
            common::tail(&self.log(), 40)
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn the_daemon_waits_for_a_missing_password_without_stopping_other_accounts() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        extra_users: vec![("other".to_owned(), "other-password-83f2".to_owned())],
        ..DovecotOptions::default()
    })
    .expect("dovecot");
    let keyring = SecretService::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let account = |name: &str, user: &str, password: &str| {
        format!(
            "[accounts.{name}.remote]\ntype = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"{user}\"\n{password}timeout = 20\n[accounts.{name}.local]\ntype = \"maildir\"\npath = \"{}\"\n",
            dovecot.port(),
            dir.path().join("Mail").join(name).display()
        )
    };
    std::fs::write(
        &config,
        format!(
            "[general]\nstate_dir = \"{}\"\n\n{}\n{}",
            dir.path().join("state").display(),
            account(
                "good",
                "test",
                &format!("password = \"{}\"\n", dovecot.password())
            ),
            account("waiting", "other", ""),
        ),
    )
    .unwrap();
    common::set_mode(&config, 0o600);
    ImapCtl::for_user(&dovecot, "other", "other-password-83f2").append(
        "INBOX",
        &corpus::message(3, 1),
        &[],
    );

    let socket = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&socket).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = dir.path().join("daemon.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_idlewild"));
    cmd.arg("--config")
        .arg(&config)
        .args(["daemon", "--log", "stderr"])
        .env("NOTIFY_SOCKET", &socket)
        .env("IDLEWILD_LOG", "trace")
        .env_remove("WATCHDOG_USEC")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in keyring.env() {
        cmd.env(k, v);
    }
    let daemon = Daemon {
        child: cmd.spawn().expect("daemon"),
        notify,
        log,
    };

    daemon.expect_status(&["good idle", "waiting error"], Duration::from_secs(30));
    assert!(
        daemon.log().contains(
            "no password in the keyring for account waiting: run `idlewild password set waiting`"
        ),
        "{}",
        common::tail(&daemon.log(), 40)
    );
    assert!(!dir.path().join("Mail/waiting").exists());
    // The D-Bus API shows the same state and the same advice.
    let bus = keyring
        .env()
        .into_iter()
        .find(|(k, _)| *k == "DBUS_SESSION_BUS_ADDRESS")
        .map(|(_, v)| v)
        .expect("the bus");
    let property = |name: &str| {
        let out = Command::new("busctl")
            .arg(format!("--address={bus}"))
            .args([
                "get-property",
                "org.idlewild.Idlewild1",
                "/org/idlewild/Idlewild1/accounts/waiting",
                "org.idlewild.Idlewild1.Account",
                name,
            ])
            .output()
            .expect("busctl");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(property("State"), "s \"error\"");
    assert!(
        property("LastError").contains("run `idlewild password set waiting`"),
        "{}",
        property("LastError")
    );

    // The password appears: the account recovers by itself, without a restart.
    keyring.store("idlewild", "waiting", "other-password-83f2");
    daemon.expect_status(&["good idle", "waiting idle"], Duration::from_secs(45));
    let waiting_inbox = dir.path().join("Mail/waiting/INBOX/new");
    let files = std::fs::read_dir(&waiting_inbox)
        .map(|d| d.count())
        .unwrap_or(0)
        + std::fs::read_dir(dir.path().join("Mail/waiting/INBOX/cur"))
            .map(|d| d.count())
            .unwrap_or(0);
    assert_eq!(files, 1, "the account's mail was not synced");

    let text = daemon.log();
    for secret in [dovecot.password(), "other-password-83f2"] {
        assert!(!text.contains(secret), "a password is in the daemon's log");
    }
}
