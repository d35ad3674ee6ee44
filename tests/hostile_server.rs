//! Folder names no real server here accepts — control characters, a level longer than a
//! directory name may be, dot-dot and empty levels — sent by a scripted IMAP responder
//! (`tests/support/scripted_imap.py`) to the real binary syncing a read-only remote. Dovecot
//! refuses to create these names, yet a server may still send them in LIST. Whatever the name,
//! nothing is written outside the Maildir root and the state directory, no store internals are
//! touched, the ordinary folders sync, and the read-only server receives no write command.

mod common;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use common::{assert_no_folder_inside_maildir_dirs, set_mode, stderr, stdout, tree};
use support::corpus;
use support::scripted_imap::{Message, ScriptedImap};

/// A level of 300 bytes: more than a directory name may hold (255 on Linux).
fn too_long() -> String {
    "x".repeat(300)
}

/// Names stored under a directory of their own (server name, directory below the root).
/// Control characters come as a compliant server sends them: in modified UTF-7 (RFC 3501
/// §5.1.3 allows only printable ASCII as itself), `&AAE-` for U+0001 and `&AAo-` for LF.
const STORED: &[(&str, &str)] = &[
    ("INBOX", "INBOX"),
    ("Archive", "Archive"),
    ("ctl&AAE-name", "ctl\u{1}name"),
    // A level that is a Maildir's own name is escaped below a control-character parent too.
    ("ctl&AAE-name/new", "ctl\u{1}name/_new"),
    ("new&AAo-line", "new\nline"),
    ("say \"hi\"", "say \"hi\""),
    ("back\\slash", "back\\slash"),
];

/// Names the IMAP side skips with a warning (`store::imap::names::to_folder_name`), so they
/// never become folders or paths: (server name, why). Raw control characters reach the client
/// as a literal (the responder sends them so) and are no modified UTF-7.
const SKIPPED: &[(&str, &str)] = &[
    ("ctl\u{1}name", "not valid modified UTF-7"),
    ("new\nline", "not valid modified UTF-7"),
    ("..", "an empty, '.' or '..' level"),
    (".", "an empty, '.' or '..' level"),
    ("../x", "an empty, '.' or '..' level"),
    ("/abs", "an empty, '.' or '..' level"),
    ("a/../../b", "an empty, '.' or '..' level"),
    ("a//b", "an empty, '.' or '..' level"),
];

/// Commands a read-only remote must never receive: those that change something, and SELECT,
/// which opens a folder for writing (and clears `\Recent` on a real server) where EXAMINE would do.
const WRITES: &[&str] = &[
    "STORE",
    "EXPUNGE",
    "APPEND",
    "CREATE",
    "DELETE",
    "RENAME",
    "COPY",
    "MOVE",
    "SELECT",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
];

/// A message's text with LF line ends: the Maildir keeps messages in the local convention.
fn text(message: &[u8]) -> String {
    String::from_utf8_lossy(message).replace("\r\n", "\n")
}

/// Message files of one Maildir folder (cur and new), as text, sorted.
fn messages_in(folder: &Path) -> Vec<String> {
    let mut out: Vec<String> = ["cur", "new"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(folder.join(sub)).into_iter().flatten())
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| text(&std::fs::read(e.path()).expect("read message")))
        .collect();
    out.sort();
    out
}

/// The command name of a logged command (`a1 UID FETCH ...` is `FETCH`), upper case.
fn command_name(command: &str) -> String {
    let mut words = command.split(' ').skip(1);
    let first = words.next().unwrap_or("").to_ascii_uppercase();
    if first == "UID" {
        words.next().unwrap_or("").to_ascii_uppercase()
    } else {
        first
    }
}

#[test]
fn hostile_server_names_stay_inside_the_maildir_and_fail_alone() {
    let long = too_long();
    let mut served: Vec<(&str, Vec<Message>)> = Vec::new();
    let mut bodies: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
    let all_names = STORED
        .iter()
        .map(|(n, _)| *n)
        .chain([long.as_str()])
        .chain(SKIPPED.iter().map(|(n, _)| *n));
    for (i, name) in all_names.enumerate() {
        let mine: Vec<Vec<u8>> = (0..2).map(|n| corpus::message(30, i * 10 + n)).collect();
        let messages = mine
            .iter()
            .zip([vec!["\\Seen"], vec![]])
            .map(|(body, flags)| Message {
                flags,
                body: body.clone(),
            })
            .collect();
        served.push((name, messages));
        bodies.push((name, mine));
    }
    let server = ScriptedImap::start(&served);

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("Mail/test");
    let state = dir.path().join("state");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[general]\nstate_dir = \"{}\"\n\n[accounts.test.remote]\ntype = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"test\"\npassword = \"test-password\"\ntimeout = 20\nreadonly = true\n\n[accounts.test.local]\ntype = \"maildir\"\npath = \"{}\"\n",
            state.display(),
            server.port(),
            root.display()
        ),
    )
    .expect("write config");
    set_mode(&config, 0o600);
    // `/abs` taken as a path would be at the file system's root, outside the temporary tree.
    let abs_before = Path::new("/abs").exists();
    let before = tree(dir.path());

    for run in 0..2 {
        let out = run_sync(dir.path(), &config);
        let (stdout, stderr) = (stdout(&out), stderr(&out));
        let shown = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
        // (2) Nothing outside the Maildir root and the state directory.
        let now: BTreeSet<String> = tree(dir.path())
            .into_iter()
            .filter(|p| !p.starts_with("Mail/test/") && !p.starts_with("state/"))
            .collect();
        let allowed: BTreeSet<String> = before
            .iter()
            .cloned()
            .chain(["Mail".into(), "Mail/test".into(), "state".into()])
            .collect();
        assert!(
            now.is_subset(&allowed),
            "run {run} wrote outside the Maildir: {:?}",
            now.difference(&allowed).collect::<Vec<_>>()
        );
        assert_eq!(Path::new("/abs").exists(), abs_before, "run {run}: /abs");
        // Only the stored folders are below the root: a skipped or failed name left nothing.
        let top: BTreeSet<String> = std::fs::read_dir(&root)
            .expect("Maildir root")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let expected: BTreeSet<String> = STORED
            .iter()
            .map(|(_, place)| place.split('/').next().unwrap_or("").to_owned())
            .collect();
        assert_eq!(top, expected, "run {run}: folders at the Maildir root");
        // (3) No store internals touched.
        assert_no_folder_inside_maildir_dirs(&root);
        // (1) One folder cannot be stored: it fails alone, the account goes on.
        assert_eq!(
            out.status.code(),
            Some(1),
            "run {run}: exit status {:?}\n{shown}",
            out.status
        );
        for (name, place) in STORED {
            let want = &bodies.iter().find(|(n, _)| n == name).expect("bodies").1;
            let mut want: Vec<String> = want.iter().map(|m| text(m)).collect();
            want.sort();
            assert_eq!(
                messages_in(&root.join(place)),
                want,
                "run {run}: server folder {name:?} is not in {place:?}\n{shown}"
            );
        }
        // (5) The over-long name fails alone, saying why; the names with empty, `.` or `..`
        // levels are skipped with a warning.
        let fails = stdout
            .lines()
            .chain(stderr.lines())
            .any(|l| l.contains(&long[..40]) && l.contains("cannot be stored here"));
        assert!(
            fails,
            "run {run}: the 300-byte name does not fail with 'cannot be stored here'\n{shown}"
        );
        for (name, why) in SKIPPED {
            let warned = stderr.lines().any(|l| {
                l.contains(&format!("skipping server folder {name:?}: ")) && l.contains(why)
            });
            assert!(warned, "run {run}: no warning for {name:?}\n{shown}");
        }
    }

    // (4) The read-only server was only read.
    let commands = server.commands();
    assert!(
        commands.iter().any(|c| command_name(c) == "EXAMINE"),
        "no folder was opened: {commands:?}"
    );
    let writes: Vec<&String> = commands
        .iter()
        .filter(|c| WRITES.contains(&command_name(c).as_str()))
        .collect();
    assert!(writes.is_empty(), "write commands sent: {writes:?}");
}

/// Runs `idlewild sync` with `dir` as its home: whatever it might write there would show up in
/// the tree check.
fn run_sync(dir: &Path, config: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_idlewild"))
        .arg("--config")
        .arg(config)
        .arg("sync")
        .env("IDLEWILD_LOG", "idlewild=debug")
        .env("HOME", dir.join("home"))
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CACHE_HOME")
        // No session bus: a client must never reach a bus outside the test.
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("XDG_RUNTIME_DIR", dir.join("no-runtime-dir"))
        .output()
        .expect("run idlewild")
}
