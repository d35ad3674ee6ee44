//! What idlewild writes is readable by its user only, whatever the umask: the state directory
//! holds folder names and message metadata, the Maildir the mail itself.

mod common;
mod support;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Env, set_mode, tail};

/// Runs `cmd` under umask 022, the usual one, which leaves new files readable by everyone.
fn run_with_umask_022(mut cmd: Command) -> Output {
    // SAFETY: umask is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    let out = cmd.output().expect("run idlewild");
    assert!(
        out.status.success(),
        "idlewild failed ({:?})\n--- stderr\n{}",
        out.status.code(),
        tail(&String::from_utf8_lossy(&out.stderr), 60)
    );
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// Every directory and file below `dir`, `dir` included.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    let mut i = 0;
    while i < out.len() {
        let path = out[i].clone();
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read_dir") {
                out.push(entry.expect("entry").path());
            }
        }
        i += 1;
    }
    out
}

fn assert_private(root: &Path) {
    let mut wrong = Vec::new();
    for path in walk(root) {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        let got = mode(&path);
        if got != want {
            wrong.push(format!("{} is {got:o}, not {want:o}", path.display()));
        }
    }
    assert!(wrong.is_empty(), "not private:\n{}", wrong.join("\n"));
}

fn sync_and_pause(env: &Env) {
    env.ctl.create("Archive/2019");
    env.ctl.append(
        "Archive/2019",
        b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n",
        &["\\Seen"],
    );
    run_with_umask_022(env.command(&["sync"]));
    // Without a daemon, the pause is recorded in its file in the state directory.
    run_with_umask_022(env.command(&["pause", "test"]));
    assert!(env.state_dir().join("test.paused").exists());
}

#[test]
fn the_state_directory_and_new_maildir_folders_are_private_under_umask_022() {
    let env = Env::new();
    sync_and_pause(&env);

    let state = env.state_dir();
    assert!(state.join("test.sqlite").exists());
    assert!(state.join("test.lock").exists());
    assert_private(&state);
    // The Maildir's root, every folder directory and every message file.
    assert_private(&env.maildir());
    assert!(env.maildir().join("Archive/2019/cur").is_dir());
}

#[test]
fn an_open_state_directory_and_database_of_an_older_version_are_tightened() {
    let env = Env::new();
    let state = env.state_dir();
    std::fs::create_dir_all(&state).expect("mkdir");
    set_mode(&state, 0o755);
    run_with_umask_022(env.command(&["sync"]));
    for name in ["test.sqlite", "test.lock"] {
        set_mode(&state.join(name), 0o644);
    }
    set_mode(&state, 0o755);

    sync_and_pause(&env);
    assert_private(&state);
}
