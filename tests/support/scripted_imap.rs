//! Rust front end for `scripted_imap.py`, a scripted IMAP4rev1 responder that serves exactly
//! the folders and messages a test gives it — for names no real server here accepts (control
//! characters, over-long levels, `..`). It records every command it receives.
//!
//! The responder picks its own free port and lives in a private temporary directory; dropping
//! the value kills it (by its process id) and removes the directory, also when the test panics.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::json;

/// One message served: its flags (`\Seen`, ...) and its exact bytes.
pub struct Message {
    pub flags: Vec<&'static str>,
    pub body: Vec<u8>,
}

pub struct ScriptedImap {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// Bytes as a JSON string, one character per byte: the responder's spec format, which carries
/// any byte (a name's control characters, a message's 8-bit text).
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

impl ScriptedImap {
    /// Starts a responder serving `folders` (server name, messages), in that LIST order.
    pub fn start(folders: &[(&str, Vec<Message>)]) -> ScriptedImap {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec: Vec<_> = folders
            .iter()
            .map(|(name, messages)| {
                let messages: Vec<_> = messages
                    .iter()
                    .map(|m| json!({"flags": m.flags, "body": latin1(&m.body)}))
                    .collect();
                json!({"name": latin1(name.as_bytes()), "messages": messages})
            })
            .collect();
        let spec_path = dir.path().join("spec.json");
        std::fs::write(&spec_path, json!({ "folders": spec }).to_string()).expect("write spec");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/scripted_imap.py");
        let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        let child = Command::new(python)
            .arg(script)
            .arg("--spec")
            .arg(&spec_path)
            .arg("--log")
            .arg(dir.path().join("commands.jsonl"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start scripted_imap.py");
        // Owned by the value from here on, so a failure below still stops the process.
        let mut responder = ScriptedImap {
            child,
            port: 0,
            dir,
        };
        let stdout = responder.child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the responder's port");
        responder.port = match line.trim().parse() {
            Ok(port) => port,
            Err(_) => {
                let mut err = String::new();
                if let Some(mut e) = responder.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("scripted_imap.py did not start: {line:?}\n{err}");
            }
        };
        responder
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory the responder keeps its spec and command log in (not the test's).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Every command received so far, on all connections, in the order received; literals
    /// are included in place, bytes as `char`s (one per byte).
    pub fn commands(&self) -> Vec<String> {
        let text =
            std::fs::read_to_string(self.dir.path().join("commands.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a logged command"))
            .collect()
    }
}

impl Drop for ScriptedImap {
    fn drop(&mut self) {
        // The child is ours alone (its id came from spawn): nothing else is signalled.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
