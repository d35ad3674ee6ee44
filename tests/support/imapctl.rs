//! Rust front end for `imapctl.py`, an IMAP client that shares no code with
//! idlewild. Tests use it to prepare and inspect server state.
//!
//! Every call opens one fresh connection, runs its operations and logs out.
//! The convenience methods panic with the script's error message, which is
//! what a test wants; [`ImapCtl::try_run`] returns errors instead.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::dovecot::Dovecot;

/// One message as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    pub uid: u32,
    /// Sorted; `\Recent` is left out because it depends on the session.
    pub flags: Vec<String>,
    /// RFC822.SIZE as reported by the server.
    pub size: u64,
    pub message_id: Option<String>,
    /// Lowercase hex SHA-256 of the exact `BODY[]` bytes (CRLF line ends).
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxStatus {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u32,
}

/// Result of a UID COPY or UID MOVE (from the COPYUID response code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyUid {
    pub uidvalidity: u32,
    /// New UIDs in the target folder, in the order of the source UIDs.
    pub uids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Security {
    Plain,
    StartTls(PathBuf),
    Tls(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ImapCtl {
    host: String,
    port: u16,
    user: String,
    password: String,
    security: Security,
}

impl ImapCtl {
    /// Logs in as the default test user on the plain port.
    pub fn new(dovecot: &Dovecot) -> ImapCtl {
        Self::for_user(dovecot, dovecot.user(), dovecot.password())
    }

    pub fn for_user(dovecot: &Dovecot, user: &str, password: &str) -> ImapCtl {
        Self::with_login(dovecot.host(), dovecot.port(), user, password)
    }

    pub fn with_login(host: &str, port: u16, user: &str, password: &str) -> ImapCtl {
        ImapCtl {
            host: host.to_owned(),
            port,
            user: user.to_owned(),
            password: password.to_owned(),
            security: Security::Plain,
        }
    }

    /// Upgrades the plain connection with STARTTLS, trusting only `ca_file`.
    pub fn starttls(mut self, ca_file: impl Into<PathBuf>) -> ImapCtl {
        self.security = Security::StartTls(ca_file.into());
        self
    }

    /// Uses implicit TLS on `port`, trusting only `ca_file`.
    pub fn tls(mut self, port: u16, ca_file: impl Into<PathBuf>) -> ImapCtl {
        self.port = port;
        self.security = Security::Tls(ca_file.into());
        self
    }

    pub fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/imapctl.py")
    }

    /// Runs `ops` (a JSON array of operations) and returns the array of
    /// per-operation results.
    pub fn try_run(&self, ops: &Value) -> io::Result<Value> {
        let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        let mut cmd = Command::new(python);
        cmd.arg(Self::script())
            .args(["--host", &self.host])
            .args(["--port", &self.port.to_string()])
            .args(["--user", &self.user])
            .args(["--password", &self.password]);
        match &self.security {
            Security::Plain => {}
            Security::StartTls(ca) => {
                cmd.arg("--starttls").arg("--cafile").arg(ca);
            }
            Security::Tls(ca) => {
                cmd.arg("--tls").arg("--cafile").arg(ca);
            }
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let input = serde_json::to_vec(ops)?;
        // Written from a thread: a large dump on stdout must not deadlock
        // against a large append still going into stdin.
        let stdin = child.stdin.take();
        let writer = std::thread::spawn(move || -> io::Result<()> {
            if let Some(mut stdin) = stdin {
                stdin.write_all(&input)?;
            }
            Ok(())
        });
        let out = child.wait_with_output()?;
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("imapctl: stdin writer panicked")));
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "imapctl.py failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        written?;
        let mut doc: Value = serde_json::from_slice(&out.stdout)?;
        match doc.get_mut("results").map(Value::take) {
            Some(results @ Value::Array(_)) => Ok(results),
            _ => Err(io::Error::other(format!(
                "imapctl.py printed no results array: {}",
                String::from_utf8_lossy(&out.stdout)
            ))),
        }
    }

    /// [`ImapCtl::try_run`] that panics on failure.
    pub fn run(&self, ops: Value) -> Value {
        self.try_run(&ops)
            .unwrap_or_else(|e| panic!("{e}\noperations: {}", short(&ops)))
    }

    /// Runs a single operation and returns its result.
    fn one(&self, op: Value) -> Value {
        match self.run(Value::Array(vec![op])) {
            Value::Array(mut results) if results.len() == 1 => results.remove(0),
            other => panic!("imapctl: expected one result, got {other}"),
        }
    }

    pub fn create(&self, folder: &str) {
        self.one(json!({"op": "create", "folder": folder}));
    }

    pub fn delete_folder(&self, folder: &str) {
        self.one(json!({"op": "delete_folder", "folder": folder}));
    }

    pub fn rename_folder(&self, folder: &str, to: &str) {
        self.one(json!({"op": "rename_folder", "folder": folder, "to": to}));
    }

    /// Appends `message` (line endings become CRLF) and returns its UID.
    pub fn append(&self, folder: &str, message: &[u8], flags: &[&str]) -> Option<u32> {
        self.append_op(folder, message, flags, None)
    }

    /// Like [`ImapCtl::append`] with INTERNALDATE set to `date` (Unix seconds).
    pub fn append_at(
        &self,
        folder: &str,
        message: &[u8],
        flags: &[&str],
        date: i64,
    ) -> Option<u32> {
        self.append_op(folder, message, flags, Some(date))
    }

    pub fn append_file(&self, folder: &str, path: &Path, flags: &[&str]) -> Option<u32> {
        let path = path.to_str().expect("imapctl: message path is not UTF-8");
        as_uid(
            &self.one(json!({"op": "append_file", "folder": folder, "path": path, "flags": flags})),
        )
    }

    fn append_op(
        &self,
        folder: &str,
        message: &[u8],
        flags: &[&str],
        date: Option<i64>,
    ) -> Option<u32> {
        let mut op = json!({"op": "append", "folder": folder, "flags": flags});
        if let Some(date) = date {
            op["date"] = json!(date);
        }
        match std::str::from_utf8(message) {
            Ok(text) => {
                op["message"] = json!(text);
                as_uid(&self.one(op))
            }
            Err(_) => {
                // JSON strings cannot carry arbitrary bytes; go through a file.
                let mut file = tempfile::NamedTempFile::new().expect("imapctl: create temp file");
                file.write_all(message).expect("imapctl: write temp file");
                op["op"] = json!("append_file");
                op["path"] = json!(
                    file.path()
                        .to_str()
                        .expect("imapctl: temp path is not UTF-8")
                );
                as_uid(&self.one(op))
            }
        }
    }

    /// All folder names (UTF-8, `/` separator), including non-selectable ones.
    pub fn list(&self) -> Vec<String> {
        match self.one(json!({"op": "list"})) {
            Value::Array(names) => names.iter().map(|n| as_str(n).to_owned()).collect(),
            other => panic!("imapctl: list returned {other}"),
        }
    }

    /// Messages of `folder` in UID order.
    pub fn dump(&self, folder: &str) -> Vec<ServerMessage> {
        messages(&self.one(json!({"op": "dump", "folder": folder})))
    }

    /// Every selectable folder with its messages.
    pub fn dump_all(&self) -> BTreeMap<String, Vec<ServerMessage>> {
        match self.one(json!({"op": "dump_all"})) {
            Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), messages(v))).collect(),
            other => panic!("imapctl: dump_all returned {other}"),
        }
    }

    /// `mode` is `"+"` (add), `"-"` (remove) or `"="` (replace).
    pub fn store(&self, folder: &str, uid: u32, flags: &[&str], mode: &str) {
        self.one(
            json!({"op": "store", "folder": folder, "uid": uid, "flags": flags, "mode": mode}),
        );
    }

    /// UID STORE +FLAGS (\Deleted) and UID EXPUNGE of exactly `uids`.
    pub fn expunge(&self, folder: &str, uids: &[u32]) {
        self.one(json!({"op": "expunge", "folder": folder, "uids": uids}));
    }

    pub fn move_messages(&self, folder: &str, uids: &[u32], to: &str) -> Option<CopyUid> {
        copy_uid(&self.one(json!({"op": "move", "folder": folder, "uids": uids, "to": to})))
    }

    pub fn copy_messages(&self, folder: &str, uids: &[u32], to: &str) -> Option<CopyUid> {
        copy_uid(&self.one(json!({"op": "copy", "folder": folder, "uids": uids, "to": to})))
    }

    pub fn status(&self, folder: &str) -> MailboxStatus {
        let v = self.one(json!({"op": "status", "folder": folder}));
        MailboxStatus {
            uidvalidity: as_u32(&v["uidvalidity"]),
            uidnext: as_u32(&v["uidnext"]),
            messages: as_u32(&v["messages"]),
        }
    }

    /// Capabilities after login.
    pub fn capabilities(&self) -> Vec<String> {
        match self.one(json!({"op": "capability"})) {
            Value::Array(caps) => caps.iter().map(|c| as_str(c).to_owned()).collect(),
            other => panic!("imapctl: capability returned {other}"),
        }
    }

    /// Connects, logs in and out; fails if any of that fails.
    pub fn check_login(&self) -> io::Result<()> {
        self.try_run(&json!([{"op": "noop"}])).map(drop)
    }
}

fn short(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 500 {
        let mut cut = 500;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn as_u32(v: &Value) -> u32 {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or_else(|| panic!("imapctl: expected a u32, got {v}"))
}

fn as_str(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("imapctl: expected a string, got {v}"))
}

fn as_uid(v: &Value) -> Option<u32> {
    (!v.is_null()).then(|| as_u32(v))
}

fn copy_uid(v: &Value) -> Option<CopyUid> {
    if v.is_null() {
        return None;
    }
    let uids = match &v["uids"] {
        Value::Array(uids) => uids.iter().map(as_u32).collect(),
        other => panic!("imapctl: bad COPYUID uids {other}"),
    };
    Some(CopyUid {
        uidvalidity: as_u32(&v["uidvalidity"]),
        uids,
    })
}

fn messages(v: &Value) -> Vec<ServerMessage> {
    let Value::Array(items) = v else {
        panic!("imapctl: expected a message list, got {v}");
    };
    items
        .iter()
        .map(|m| ServerMessage {
            uid: as_u32(&m["uid"]),
            flags: match &m["flags"] {
                Value::Array(flags) => flags.iter().map(|f| as_str(f).to_owned()).collect(),
                other => panic!("imapctl: bad flags {other}"),
            },
            size: m["size"]
                .as_u64()
                .unwrap_or_else(|| panic!("imapctl: bad size in {m}")),
            message_id: m["message_id"].as_str().map(str::to_owned),
            sha256: as_str(&m["sha256"]).to_owned(),
        })
        .collect()
}
