//! Rust front end for `gmail_proxy.py`, an IMAP proxy that makes the private Dovecot behave
//! like Gmail: no QRESYNC or NOTIFY, X-GM-EXT-1 with `X-GM-MSGID` / `X-GM-THRID` made from
//! Dovecot's X-GUID (so a message copied to several folders has one id, like a Gmail message
//! with several labels), a limit on simultaneous connections, and `[THROTTLED]`,
//! `[OVERQUOTA]` and `* BYE Session expired` on demand. It logs every command, connection and
//! body download.
//!
//! Labels are folders: a message has Gmail label L when a copy of it (same X-GUID) is in folder
//! L. `X-GM-LABELS` in a FETCH is answered from that (`"\\Inbox"` for INBOX, `"\\Sent"`,
//! `"\\Starred"`, ... for the special-use folders, nothing for All Mail, and, as Gmail does,
//! nothing for the folder the client has selected), and `STORE [+|-]X-GM-LABELS` copies the
//! messages into the label folders (creating them) or expunges them there. The proxy does this
//! on a connection of its own, logged in as the Dovecot test user; tests read the result per
//! folder with their own IMAP client.
//!
//! Use [`gmail_dovecot_options`] for the Dovecot behind it, so that the folders look like
//! Gmail's (`[Gmail]/All Mail`, ...). The proxy picks its own free port and keeps its log and
//! control file in a private temporary directory; dropping the value kills it (by its process
//! id) and removes the directory, also when the test panics.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::dovecot::{Dovecot, DovecotOptions};

/// Gmail's limit on simultaneous IMAP connections per account.
pub const GMAIL_MAX_CONNECTIONS: usize = 15;

pub struct GmailProxy {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl GmailProxy {
    /// Starts a proxy in front of `dovecot` with Gmail's limits: 15 connections, no QRESYNC.
    pub fn start(dovecot: &Dovecot) -> GmailProxy {
        Self::start_with(dovecot, GMAIL_MAX_CONNECTIONS, false)
    }

    /// Starts a proxy that refuses the login of a connection that has `max_connections` older
    /// ones still open; `keep_qresync` leaves Dovecot's QRESYNC offered (for comparisons).
    pub fn start_with(dovecot: &Dovecot, max_connections: usize, keep_qresync: bool) -> GmailProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/gmail_proxy.py");
        let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        // A file, not a pipe: nobody reads the proxy's stderr while it runs, and a full pipe
        // would block it.
        let stderr = File::create(dir.path().join("stderr.log")).expect("create stderr.log");
        let mut command = Command::new(python);
        command
            .arg(script)
            .arg("--target")
            .arg(format!("{}:{}", dovecot.host(), dovecot.port()))
            .arg("--max-connections")
            .arg(max_connections.to_string())
            .arg("--user")
            .arg(dovecot.user())
            .arg("--password")
            .arg(dovecot.password())
            .arg("--log")
            .arg(dir.path().join("events.jsonl"))
            .arg("--control")
            .arg(dir.path().join("control.json"));
        if keep_qresync {
            command.arg("--keep-qresync");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start gmail_proxy.py");
        // Owned by the value from here on, so a failure below still stops the process.
        let mut proxy = GmailProxy {
            child,
            port: 0,
            dir,
        };
        let stdout = proxy.child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the proxy's port");
        proxy.port = match line.trim().parse() {
            Ok(port) => port,
            Err(_) => {
                let _ = proxy.child.kill();
                let _ = proxy.child.wait();
                panic!("gmail_proxy.py did not start: {line:?}\n{}", proxy.stderr());
            }
        };
        proxy
    }

    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory the proxy keeps its log and control file in (not the test's).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// What the proxy wrote on stderr (tracebacks of failed connections); for assertion messages.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Every event logged so far, in order: `{"conn": i, "event": "open" | "close" |
    /// "refused"}`, `{"conn": i, "cmd": "..."}`, `{"conn": i, "body": size, "folder": "..."}`,
    /// `{"conn": i, "labels": "+" | "-" | "=", "folders": ["..."], "guids": n}` (a label STORE
    /// carried out, after its `cmd` event).
    pub fn events(&self) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.dir.path().join("events.jsonl")).unwrap_or_default();
        text.split_inclusive('\n')
            // A line still being written has no line end yet; it is read next time.
            .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a logged event"))
            .collect()
    }

    /// Every client command so far, on all connections, in the order received; literal
    /// contents are left out (the `{N}` stays), line ends too.
    pub fn commands(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|e| e["cmd"].as_str().map(str::to_owned))
            .collect()
    }

    /// (folder as the client selected it, size) of every message body the server sent
    /// (`BODY[]`, `BODY[]<0>`, `RFC822`); the folder is empty if none was selected.
    pub fn bodies(&self) -> Vec<(String, u64)> {
        self.events()
            .iter()
            .filter_map(|e| {
                let size = e["body"].as_u64()?;
                let folder = e["folder"].as_str().unwrap_or_default().to_owned();
                Some((folder, size))
            })
            .collect()
    }

    /// How many logins were refused for too many simultaneous connections.
    pub fn refused(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| e["event"] == "refused")
            .count()
    }

    /// Replaces the control file (atomically), which the proxy reads before each command:
    /// `{"throttled": true}`, `{"overquota": ["FETCH", ...]}`, `{"bye_after_commands": K}`,
    /// `{"bye_on_label_store": true}`;
    /// `json!({})` turns everything off again.
    pub fn control(&self, value: Value) {
        let tmp = self.dir.path().join("control.json.tmp");
        std::fs::write(&tmp, value.to_string()).expect("write control file");
        std::fs::rename(&tmp, self.dir.path().join("control.json")).expect("rename control file");
    }
}

impl Drop for GmailProxy {
    fn drop(&mut self) {
        // The child is ours alone (its id came from spawn): nothing else is signalled.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Dovecot options that lay the private Dovecot out like Gmail: `[Gmail]/All Mail` (`\All`),
/// `[Gmail]/Spam` (`\Junk`), `[Gmail]/Trash` (`\Trash`), `[Gmail]/Sent Mail` (`\Sent`),
/// `[Gmail]/Drafts` (`\Drafts`), `[Gmail]/Starred` (`\Flagged`) and `[Gmail]/Important`
/// (`\Important`), all created at login; `[Gmail]` itself is listed as a `\Noselect` parent.
/// The special-use attributes dovecot.rs gives to top-level Drafts, Sent, Trash, Junk and
/// Archive are taken away, so each attribute belongs to one folder, as on Gmail.
pub fn gmail_dovecot_options() -> DovecotOptions {
    let mut config = String::from("namespace inbox {\n");
    for plain in ["Drafts", "Sent", "Trash", "Junk", "Archive"] {
        config.push_str(&format!("  mailbox {plain} {{\n    special_use =\n  }}\n"));
    }
    for (name, special_use) in [
        ("[Gmail]/All Mail", "\\All"),
        ("[Gmail]/Spam", "\\Junk"),
        ("[Gmail]/Trash", "\\Trash"),
        ("[Gmail]/Sent Mail", "\\Sent"),
        ("[Gmail]/Drafts", "\\Drafts"),
        ("[Gmail]/Starred", "\\Flagged"),
        ("[Gmail]/Important", "\\Important"),
    ] {
        config.push_str(&format!(
            "  mailbox \"{name}\" {{\n    special_use = {special_use}\n    auto = create\n  }}\n"
        ));
    }
    config.push_str("}\n");
    DovecotOptions {
        extra_config: vec![config],
        ..DovecotOptions::default()
    }
}
