//! A private, hermetic D-Bus message bus for one test (`tests/dbus-test.conf`: no service
//! activation, anyone may do anything). Dropping it stops the daemon, by its PID.

#![allow(dead_code)]

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};

pub struct PrivateBus {
    child: Child,
    pub address: String,
}

impl PrivateBus {
    pub fn start() -> PrivateBus {
        let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dbus-test.conf");
        let mut child = Command::new("dbus-daemon")
            .args([
                "--nofork",
                "--print-address=1",
                &format!("--config-file={conf}"),
            ])
            .stdout(Stdio::piped())
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
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
