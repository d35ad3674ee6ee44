//! Helpers shared by the tests that run the real `idlewild` binary against a private Dovecot:
//! writing a configuration, running syncs, and reading both sides independently of the code
//! under test (the server through `imapctl.py`, the Maildir straight from the files).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use idlewild::model::Flags;

pub mod daemon;

use crate::support::dovecot::{Dovecot, DovecotOptions};
use crate::support::imapctl::ImapCtl;

pub struct Env {
    pub dovecot: Dovecot,
    pub ctl: ImapCtl,
    pub dir: tempfile::TempDir,
}

/// One message as found on one side: the SHA-256 of its CRLF form, its flags, its Message-ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    pub sha256: String,
    pub flags: u8,
    pub message_id: Option<String>,
}

pub type Side = BTreeMap<String, Vec<Seen>>;

impl Env {
    pub fn new() -> Env {
        Env::with(DovecotOptions::default())
    }

    /// An environment whose Dovecot is started with `options`.
    pub fn with(options: DovecotOptions) -> Env {
        let dovecot = Dovecot::start_with(options).expect("start a private Dovecot");
        let ctl = ImapCtl::new(&dovecot);
        let dir = tempfile::tempdir().expect("tempdir");
        let env = Env { dovecot, ctl, dir };
        env.write_config("");
        env
    }

    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("Mail/test")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes the account `test` with a plain loopback connection; `remote_extra` lines are
    /// added to (and may override) the remote table.
    pub fn write_config(&self, remote_extra: &str) {
        self.write_config_with(remote_extra, "");
    }

    /// Like [`Env::write_config`], with `tables` (more TOML tables, such as
    /// `[accounts.test.folders]` or `[general.mbnames]`) appended.
    pub fn write_config_with(&self, remote_extra: &str, tables: &str) {
        let mut remote = format!(
            "type = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"{}\"\npassword = \"{}\"\ntimeout = 20\n",
            self.dovecot.port(),
            self.dovecot.user(),
            self.dovecot.password()
        );
        for line in remote_extra.lines() {
            if let Some((key, _)) = line.split_once('=') {
                let key = key.trim();
                remote = remote
                    .lines()
                    .filter(|l| l.split('=').next().map(str::trim) != Some(key))
                    .map(|l| format!("{l}\n"))
                    .collect();
            }
            remote.push_str(line);
            remote.push('\n');
        }
        let text = format!(
            "[general]\nstate_dir = \"{}\"\n\n[accounts.test.remote]\n{remote}\n[accounts.test.local]\ntype = \"maildir\"\npath = \"{}\"\n\n{tables}",
            self.state_dir().display(),
            self.maildir().display()
        );
        std::fs::write(self.config_path(), text).expect("write config");
        set_mode(&self.config_path(), 0o600);
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_idlewild"));
        cmd.arg("--config").arg(self.config_path()).args(args);
        cmd.env("IDLEWILD_LOG", "idlewild=debug");
        // No session bus unless a test gives one: a daemon or client of the test must never
        // reach a bus outside it (nor another test's).
        cmd.env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env("XDG_RUNTIME_DIR", self.dir.path().join("no-runtime-dir"));
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run idlewild")
    }

    /// Runs `idlewild sync ARGS` and insists on exit status 0.
    pub fn sync_ok(&self, args: &[&str]) -> Output {
        let mut all = vec!["sync"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "idlewild sync failed ({:?})\n--- stdout\n{}\n--- stderr\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            tail(&String::from_utf8_lossy(&out.stderr), 60)
        );
        out
    }

    pub fn remote(&self) -> Side {
        self.ctl
            .dump_all()
            .into_iter()
            .map(|(folder, messages)| {
                let mut seen: Vec<Seen> = messages
                    .into_iter()
                    .map(|m| Seen {
                        sha256: m.sha256,
                        flags: Flags::from_imap(m.flags.iter().map(String::as_str)).bits(),
                        message_id: m.message_id,
                    })
                    .collect();
                seen.sort();
                (folder, seen)
            })
            .collect()
    }

    pub fn local(&self) -> Side {
        let mut out = Side::new();
        read_maildirs(&self.maildir(), &self.maildir(), &mut out);
        out
    }

    /// Both sides hold the same messages with the same flags, folder by folder, and no
    /// Message-ID appears twice in a folder on either side.
    pub fn assert_in_step(&self) -> (Side, Side) {
        let (remote, local) = (self.remote(), self.local());
        for (side, name) in [(&remote, "server"), (&local, "Maildir")] {
            for (folder, messages) in side {
                let mut ids: Vec<&String> = messages
                    .iter()
                    .filter_map(|m| m.message_id.as_ref())
                    .collect();
                let before = ids.len();
                ids.sort();
                ids.dedup();
                assert_eq!(
                    before,
                    ids.len(),
                    "duplicate Message-ID in {name} folder {folder}"
                );
            }
        }
        let remote_names: Vec<&String> = remote.keys().collect();
        let local_names: Vec<&String> = local.keys().collect();
        assert_eq!(remote_names, local_names, "folder lists differ");
        for (folder, messages) in &remote {
            let here = &local[folder];
            if messages != here {
                panic!(
                    "folder {folder} differs: server {} messages, Maildir {}\nonly on server: {:?}\nonly here: {:?}",
                    messages.len(),
                    here.len(),
                    messages
                        .iter()
                        .filter(|m| !here.contains(m))
                        .take(5)
                        .collect::<Vec<_>>(),
                    here.iter()
                        .filter(|m| !messages.contains(m))
                        .take(5)
                        .collect::<Vec<_>>()
                );
            }
        }
        (remote, local)
    }

    /// Files of one local folder (cur and new), sorted.
    pub fn local_files(&self, folder: &str) -> Vec<PathBuf> {
        let dir = self.maildir().join(folder);
        let mut files: Vec<PathBuf> = ["cur", "new"]
            .iter()
            .flat_map(|sub| std::fs::read_dir(dir.join(sub)).into_iter().flatten())
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        files.sort();
        files
    }

    /// Writes a new message into a local folder, as a mail client or MDA would.
    pub fn deliver_locally(&self, folder: &str, name: &str, content: &[u8], info: Option<&str>) {
        let dir = self.maildir().join(folder);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("maildir");
        }
        let tmp = dir.join("tmp").join(name);
        std::fs::write(&tmp, content).expect("write message");
        let target = match info {
            Some(info) => dir.join("cur").join(format!("{name}:2,{info}")),
            None => dir.join("new").join(name),
        };
        std::fs::rename(tmp, target).expect("deliver");
    }

    pub fn count(&self, side: &Side) -> usize {
        side.values().map(Vec::len).sum()
    }
}

/// The keywords a local file carries, read the way Dovecot reads them: its lowercase info
/// letters through the folder's `dovecot-keywords`.
pub fn local_keywords(folder_dir: &Path, file: &Path) -> Vec<String> {
    let table = std::fs::read_to_string(folder_dir.join("dovecot-keywords")).unwrap_or_default();
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let info = name.split_once(":2,").map(|(_, i)| i).unwrap_or("");
    let mut keywords: Vec<String> = info
        .chars()
        .filter(char::is_ascii_lowercase)
        .filter_map(|c| {
            let index = (c as u8 - b'a').to_string();
            table
                .lines()
                .find_map(|l| l.split_once(' ').filter(|(i, _)| *i == index))
                .map(|(_, k)| k.to_owned())
        })
        .collect();
    keywords.sort();
    keywords
}

/// Gives a local file exactly `keywords` (its system flags stay), as a mail client does:
/// letters from the folder's `dovecot-keywords`, where a keyword not yet there is added.
pub fn set_local_keywords(folder_dir: &Path, file: &Path, keywords: &[&str]) -> PathBuf {
    let path = folder_dir.join("dovecot-keywords");
    let mut table = std::fs::read_to_string(&path).unwrap_or_default();
    let mut letters = String::new();
    for keyword in keywords {
        let index = match table
            .lines()
            .find_map(|l| l.split_once(' ').filter(|(_, k)| k == keyword))
        {
            Some((i, _)) => i.parse::<u8>().expect("index"),
            None => {
                let next = table
                    .lines()
                    .filter_map(|l| l.split_once(' ')?.0.parse::<u8>().ok())
                    .max()
                    .map_or(0, |i| i + 1);
                table.push_str(&format!("{next} {keyword}\n"));
                next
            }
        };
        letters.push(char::from(b'a' + index));
    }
    std::fs::write(&path, &table).expect("write dovecot-keywords");
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let info = name.split_once(":2,").map(|(_, i)| i).unwrap_or("");
    let system: String = info.chars().filter(|c| !c.is_ascii_lowercase()).collect();
    set_local_flags(file, &format!("{system}{letters}"))
}

/// Renames a Maildir file to carry `info` flags, as a mail client does.
pub fn set_local_flags(path: &Path, info: &str) -> PathBuf {
    try_set_local_flags(path, info).expect("rename")
}

/// [`set_local_flags`] for a file that may be renamed or removed meanwhile (by the sync under
/// test): the new name, or `None` when the file was gone.
pub fn try_set_local_flags(path: &Path, info: &str) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let unique = name.split(':').next().unwrap_or(name);
    let target = path
        .parent()
        .and_then(Path::parent)?
        .join("cur")
        .join(format!("{unique}:2,{info}"));
    std::fs::rename(path, &target).ok()?;
    Some(target)
}

/// What each folder must hold at the end of a test: Message-IDs, each once, kept sorted.
pub type Expected = BTreeMap<String, Vec<String>>;

/// `id` must be in `folder`.
pub fn expect_message(expected: &mut Expected, folder: &str, id: String) {
    let v = expected.entry(folder.to_owned()).or_default();
    v.push(id);
    v.sort();
}

/// `id` must no longer be in `folder`.
pub fn unexpect_message(expected: &mut Expected, folder: &str, id: &str) {
    if let Some(v) = expected.get_mut(folder) {
        v.retain(|x| x != id);
    }
}

/// The Message-IDs of `folder` on `side`, sorted (a duplicate shows twice).
pub fn message_ids(side: &Side, folder: &str) -> Vec<String> {
    let mut ids: Vec<String> = side
        .get(folder)
        .into_iter()
        .flatten()
        .filter_map(|m| m.message_id.clone())
        .collect();
    ids.sort();
    ids
}

/// Whether each folder of `expected` holds exactly its Message-IDs on `side` (called `name` in
/// the error, which says what was lost and what is unexpected or duplicated): the message
/// copies checked.
pub fn holds(side: &Side, name: &str, expected: &Expected) -> Result<usize, String> {
    let mut checked = 0;
    for (folder, want) in expected {
        let have = message_ids(side, folder);
        if have != *want {
            let lost: Vec<&String> = want.iter().filter(|id| !have.contains(id)).collect();
            let mut extra = have.clone();
            for id in want {
                if let Some(at) = extra.iter().position(|x| x == id) {
                    extra.remove(at);
                }
            }
            return Err(format!(
                "{name} {folder}: lost {lost:?}, unexpected or duplicated {extra:?}"
            ));
        }
        checked += have.len();
    }
    Ok(checked)
}

fn read_maildirs(root: &Path, dir: &Path, out: &mut Side) {
    if dir.join("cur").is_dir() && dir.join("new").is_dir() {
        let name = dir
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let entry = out.entry(name).or_default();
        for sub in ["cur", "new"] {
            for e in std::fs::read_dir(dir.join(sub))
                .expect("read maildir")
                .flatten()
            {
                let file = e.file_name().to_string_lossy().into_owned();
                if file.starts_with('.') {
                    continue;
                }
                let content = std::fs::read(e.path()).expect("read message");
                let fp = idlewild::message::fingerprint(&content[..]).expect("fingerprint");
                let info = file.split_once(":2,").map(|(_, i)| i).unwrap_or("");
                entry.push(Seen {
                    sha256: hex(&fp.sha256),
                    flags: Flags::from_maildir_info(info).bits(),
                    message_id: fp.message_id,
                });
            }
        }
        entry.sort();
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // At the top level (the root is no Maildir) `tmp` may be a folder.
        let own = dir != root && ["cur", "new", "tmp"].contains(&name.as_str());
        if e.path().is_dir() && !own && !name.starts_with('.') {
            read_maildirs(root, &e.path(), out);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file and directory below `dir`, relative to it (names as lossy UTF-8).
pub fn tree(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            out.insert(
                path.strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned(),
            );
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    out
}

/// No directory inside any Maildir's own `cur/`, `new/` or `tmp/`: those hold files only, and a
/// folder nested there would be a store internal overwritten, and invisible to the next listing.
pub fn assert_no_folder_inside_maildir_dirs(root: &Path) {
    for path in tree(root) {
        let p = root.join(&path);
        let Some(parent) = p.parent() else { continue };
        let own = parent
            .file_name()
            .is_some_and(|n| n == "cur" || n == "new" || n == "tmp");
        let maildir = parent
            .parent()
            .is_some_and(|d| ["cur", "new", "tmp"].iter().all(|s| d.join(s).is_dir()));
        if own && maildir {
            assert!(
                !p.is_dir(),
                "{path:?} is a directory inside a Maildir's own directory"
            );
        }
    }
}

/// Runs `idlewild sync` and kills it with SIGKILL after `delay`, unless it finished first.
/// Returns whether it was killed.
pub fn sync_and_kill(env: &Env, delay: Duration) -> bool {
    let mut child = env
        .command(&["-q", "sync"])
        .env("IDLEWILD_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn idlewild");
    let start = Instant::now();
    while start.elapsed() < delay {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = child.try_wait().expect("wait").is_none();
    // Child::kill sends SIGKILL: no destructor, no flush, no lock release but the kernel's.
    let _ = child.kill();
    let _ = child.wait();
    killed
}
