//! A real, private Secret Service for one test: gnome-keyring-daemon, unlocked, on a private
//! bus, with its own HOME and XDG_RUNTIME_DIR, so nothing of the user's keyring is touched and
//! tests run in parallel. Dropping it stops the keyring daemon and the bus, by their PIDs.
//!
//! Needs the Debian packages dbus, gnome-keyring, libsecret-tools (secret-tool) and
//! libglib2.0-bin (gdbus), installed by scripts/install-deps.sh.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::bus::PrivateBus;

pub struct SecretService {
    keyring: Child,
    // Dropped after the keyring daemon (fields drop in order): it must not outlive its bus.
    bus: PrivateBus,
    dir: tempfile::TempDir,
}

impl SecretService {
    pub fn start() -> SecretService {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["home", "run"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
            std::fs::set_permissions(
                dir.path().join(sub),
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .expect("chmod");
        }
        let bus = PrivateBus::start();
        // --foreground: the daemon stays our child, so the test knows its PID and stops it.
        // --unlock reads the login keyring's password from stdin and creates the keyring.
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("HOME", dir.path().join("home"))
            .env("XDG_RUNTIME_DIR", dir.path().join("run"))
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon (Debian package gnome-keyring)");
        {
            let mut stdin = keyring.stdin.take().expect("stdin");
            stdin
                .write_all(b"test-keyring-password")
                .expect("unlock password");
        }
        let service = SecretService { keyring, bus, dir };
        // The daemon owns org.freedesktop.secrets only some time after it started.
        let waited = service
            .command("gdbus")
            .args([
                "wait",
                "--session",
                "--timeout",
                "20",
                "org.freedesktop.secrets",
            ])
            .status()
            .expect("gdbus (Debian package libglib2.0-bin)");
        assert!(
            waited.success(),
            "the Secret Service did not appear on the bus"
        );
        service
    }

    pub fn bus_address(&self) -> &str {
        &self.bus.address
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The variables a client of this Secret Service needs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DBUS_SESSION_BUS_ADDRESS", self.bus.address.clone()),
            ("XDG_RUNTIME_DIR", path(&self.dir.path().join("run"))),
        ]
    }

    /// A command with this Secret Service's environment.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd
    }

    /// `secret-tool store --label=LABEL service SERVICE username USER` with `secret` on stdin.
    pub fn store(&self, service: &str, user: &str, secret: &str) {
        let mut child = self
            .command("secret-tool")
            .args([
                "store",
                "--label=test item",
                "service",
                service,
                "username",
                user,
            ])
            .stdin(Stdio::piped())
            .spawn()
            .expect("secret-tool (Debian package libsecret-tools)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(secret.as_bytes())
            .expect("write secret");
        assert!(
            child.wait().expect("secret-tool").success(),
            "secret-tool store"
        );
    }

    /// `secret-tool lookup service SERVICE username USER`: the secret, or `None`.
    pub fn lookup(&self, service: &str, user: &str) -> Option<String> {
        let out: Output = self
            .command("secret-tool")
            .args(["lookup", "service", service, "username", user])
            .output()
            .expect("secret-tool");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Drop for SecretService {
    fn drop(&mut self) {
        let _ = self.keyring.kill();
        let _ = self.keyring.wait();
    }
}
