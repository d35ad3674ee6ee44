//! A private message bus per test (`dbus-daemon` with tests/dbus-test.conf: no service
//! activation, no policy), stopped by PID when dropped; and the independent command-line clients
//! (`busctl`, `gdbus`) pointed at it.

#![allow(dead_code)]

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub struct PrivateBus {
    child: Child,
    pub address: String,
}

impl PrivateBus {
    pub fn start() -> PrivateBus {
        let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dbus-test.conf");
        Self::start_with_config(Path::new(conf))
    }

    /// A bus with a configuration of the test's own (e.g. one with a service directory).
    pub fn start_with_config(conf: &Path) -> PrivateBus {
        let mut child = Command::new("dbus-daemon")
            .args(["--nofork", "--print-address=1"])
            .arg(format!("--config-file={}", conf.display()))
            .stdout(Stdio::piped())
            // Only a harmless complaint about the fd limit goes there.
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian package dbus)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("bus address");
        PrivateBus {
            child,
            address: line.trim().to_owned(),
        }
    }

    /// `busctl --address=… ARGS` (systemd's client, independent of the code under test).
    pub fn busctl(&self, args: &[&str]) -> Output {
        Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(args)
            .output()
            .expect("busctl (Debian package systemd)")
    }

    /// `gdbus ARGS --address …` (GLib's client, independent of the code under test).
    pub fn gdbus(&self, command: &str, args: &[&str]) -> Output {
        Command::new("gdbus")
            .arg(command)
            .args(["--address", &self.address])
            .args(args)
            .output()
            .expect("gdbus (Debian package libglib2.0-bin)")
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
