//! A full local disk, on a size-limited tmpfs (skipped, with a message, where this process may
//! not mount one): the sync stops the folders that need room with one error naming the Maildir
//! folder and what to do, folders that need no room go on, nothing half-written becomes
//! visible, nothing is recorded as synced that is not on disk, and once space is freed the next
//! run finishes the work.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::daemon::{Daemon, eventually, local_count};
use common::{Env, stderr, stdout};
use support::corpus;

/// A tmpfs of `size` mounted at `at`, unmounted again on drop.
struct SmallDisk {
    at: PathBuf,
}

impl SmallDisk {
    /// `None` when mounting is not allowed here (not root, or no mount namespace rights).
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk { at: at.to_owned() })
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {} with size {size}", self.at.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// Appends `n` messages to `folder` (which must exist).
fn fill(env: &Env, folder: &str, seed: u64, n: usize) {
    let ops: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "op": "append",
                "folder": folder,
                "message": String::from_utf8_lossy(&corpus::message(seed, i)),
            })
        })
        .collect();
    env.ctl.run(serde_json::Value::Array(ops));
}

/// Every message file in the Maildir is whole: its content is one the server has.
fn assert_files_whole(env: &Env) {
    let server: Vec<String> = env
        .remote()
        .values()
        .flatten()
        .map(|m| m.sha256.clone())
        .collect();
    for (folder, messages) in env.local() {
        for m in messages {
            assert!(
                server.contains(&m.sha256),
                "a message file in {folder} is not a whole server message"
            );
        }
    }
}

#[test]
fn a_full_maildir_disk_stops_with_a_clear_error_and_the_next_run_finishes() {
    let env = Env::new();
    let Some(disk) = SmallDisk::mount(&env.dir.path().join("Mail"), "1m") else {
        println!("SKIPPED: cannot mount a tmpfs here (needs root); the disk-full test did not run");
        return;
    };
    env.ctl.create("Other");
    env.ctl.create("Big");
    fill(&env, "INBOX", 60, 2);
    fill(&env, "Other", 61, 2);
    env.sync_ok(&[]);

    // More mail than the disk holds, and a flag change in another folder.
    fill(&env, "Big", 62, 120);
    let other_uid = env.ctl.dump("Other")[0].uid;
    env.ctl.store("Other", other_uid, &["\\Flagged"], "+");
    let out = env.run(&["sync", "--json"]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let big = env.maildir().join("Big");
    assert!(
        text.contains(&format!(
            "no space left on the filesystem of {}",
            big.display()
        )),
        "the error names the folder:\n{text}"
    );
    assert!(
        text.contains("idlewild sync"),
        "and says what to do:\n{text}"
    );
    assert!(
        !text.contains("server: "),
        "a full disk is no server error:\n{text}"
    );
    assert!(!text.contains(".idlewild-stage"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let folders = json[0]["folders"].as_array().expect("folders");
    let downloaded: u64 = folders
        .iter()
        .map(|f| f["downloaded"].as_u64().unwrap_or(0))
        .sum();
    let big_files = env.local().get("Big").map_or(0, Vec::len) as u64;
    assert_eq!(
        downloaded, big_files,
        "the report counts what was delivered: {json:#}"
    );
    assert!(big_files > 0, "some mail fitted before the disk was full");
    assert_eq!(
        env.local().get("Other"),
        env.remote().get("Other"),
        "a folder that needs no room still synced"
    );
    assert_files_whole(&env);

    // Space freed: the next run finishes, no message lost or copied twice.
    disk.resize("16m");
    env.sync_ok(&[]);
    env.assert_in_step();
}

#[test]
fn a_full_state_disk_stops_the_account_and_reports_what_was_done() {
    let env = Env::new();
    let Some(disk) = SmallDisk::mount(&env.state_dir(), "512k") else {
        println!("SKIPPED: cannot mount a tmpfs here (needs root); the disk-full test did not run");
        return;
    };
    for (i, folder) in ["A", "B", "C", "D", "E", "F", "G", "H"].iter().enumerate() {
        env.ctl.create(folder);
        fill(&env, folder, 70 + i as u64, 100);
    }
    // One folder after another, so the ones done before the disk filled are certain.
    env.write_config_with("", "[accounts.test]\nmax_connections = 1\n");
    let out = env.run(&["sync", "--json"]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "state database {}",
            env.state_dir().join("test.sqlite").display()
        )) && text.contains("no space left on the filesystem of"),
        "the error names the state database and says what to do:\n{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let folders = json[0]["folders"].as_array().expect("folders");
    assert!(
        !folders.is_empty(),
        "the report lists the folders synced before the account stopped: {json:#}"
    );
    let downloaded: u64 = folders
        .iter()
        .map(|f| f["downloaded"].as_u64().unwrap_or(0))
        .sum();
    assert!(downloaded > 0, "{json:#}");
    let files: u64 = env.local().values().map(|m| m.len() as u64).sum();
    assert!(
        downloaded <= files,
        "{downloaded} reported, {files} on disk"
    );
    assert_files_whole(&env);

    disk.resize("16m");
    env.sync_ok(&[]);
    env.assert_in_step();
}

#[test]
fn the_daemon_notices_freed_room_within_seconds_however_much_mail_woke_it_meanwhile() {
    let env = Env::new();
    let Some(disk) = SmallDisk::mount(&env.dir.path().join("Mail"), "1m") else {
        println!("SKIPPED: cannot mount a tmpfs here (needs root); the disk-full test did not run");
        return;
    };
    let mut daemon = Daemon::start(&env, None);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    eventually(Duration::from_secs(10), "the first sync", || {
        env.maildir().join("INBOX/cur").is_dir()
    });

    // More than the disk holds, then new mail arriving while it is full: every arrival wakes
    // the account, and every sync fails for want of room.
    fill(&env, "INBOX", 80, 120);
    // The disk is full once the count stops growing short of the server's.
    let (mut last, mut since) = (usize::MAX, std::time::Instant::now());
    eventually(Duration::from_secs(30), "the Maildir filling up", || {
        let now = local_count(&env);
        if now != last {
            (last, since) = (now, std::time::Instant::now());
        }
        now > 0 && since.elapsed() > Duration::from_secs(2)
    });
    assert!(last < 120, "the disk holds {last} of 120 messages");
    for i in 0..6 {
        env.ctl.append("INBOX", &corpus::message(81, i), &[]);
        std::thread::sleep(Duration::from_millis(700));
    }
    assert!(local_count(&env) < 126, "the disk was full");

    // Room is made: the mail arrives within seconds, not after a backoff the wake-ups grew.
    disk.resize("32m");
    eventually(Duration::from_secs(10), "all mail in the Maildir", || {
        local_count(&env) == 126
    });
    daemon.signal("-TERM");
    assert!(daemon.wait_exit(Duration::from_secs(25)).success());
    env.assert_in_step();
}
