//! Folder directories that are symbolic links (an archive kept on another disk), links that
//! lead nowhere (that disk unmounted), empty mount points, and folders really deleted, against
//! a real private Dovecot with `remove = "both"`: only a folder whose directory is really gone
//! is removed on the server, and never one holding as much mail as the safety valve guards.

mod common;
mod support;

use std::os::unix::fs::symlink;

use common::{Env, stderr};
use support::corpus;

fn fill(env: &Env, folder: &str, seed: u64, n: usize) {
    if folder != "INBOX" {
        env.ctl.create(folder);
    }
    for i in 0..n {
        env.ctl
            .append(folder, &corpus::message(seed, i), &["\\Seen"]);
    }
}

fn env_with_remove_both() -> Env {
    let env = Env::new();
    env.write_config_with("", "[accounts.test]\nremove = \"both\"\n");
    env
}

#[test]
fn a_folder_moved_to_another_disk_behind_a_symlink_keeps_syncing() {
    let env = env_with_remove_both();
    fill(&env, "INBOX", 30, 2);
    fill(&env, "Lists/debian", 31, 13);
    env.sync_ok(&[]);
    let server = env.remote();

    // The archive moves to another disk; a symlink takes its place.
    let disk = env.dir.path().join("other-disk");
    std::fs::create_dir_all(&disk).expect("disk");
    let folder = env.maildir().join("Lists/debian");
    std::fs::rename(&folder, disk.join("debian")).expect("move");
    symlink(disk.join("debian"), &folder).expect("symlink");
    env.sync_ok(&[]);
    assert_eq!(env.remote(), server, "nothing changed on the server");

    // It still syncs both ways, through the link.
    env.ctl
        .append("Lists/debian", &corpus::message(31, 100), &[]);
    env.deliver_locally(
        "Lists/debian",
        "here-1.host",
        &corpus::message(31, 101),
        None,
    );
    env.sync_ok(&[]);
    assert_eq!(env.remote()["Lists/debian"].len(), 15);
    env.assert_in_step();
    assert!(
        std::fs::symlink_metadata(&folder)
            .expect("link")
            .file_type()
            .is_symlink(),
        "the link is left a link"
    );
}

#[test]
fn a_folder_behind_a_dangling_symlink_or_an_empty_mount_point_is_unavailable_not_deleted() {
    let env = env_with_remove_both();
    fill(&env, "INBOX", 32, 2);
    fill(&env, "Lists/debian", 33, 13);
    fill(&env, "Small", 34, 3);
    env.sync_ok(&[]);
    let disk = env.dir.path().join("other-disk");
    std::fs::create_dir_all(&disk).expect("disk");
    let folder = env.maildir().join("Lists/debian");
    std::fs::rename(&folder, disk.join("debian")).expect("move");
    symlink(disk.join("debian"), &folder).expect("symlink");
    let small = env.maildir().join("Small");
    std::fs::rename(&small, disk.join("small")).expect("move");
    symlink(disk.join("small"), &small).expect("symlink");
    env.sync_ok(&[]);
    let server = env.remote();

    // The disk is unmounted: both links lead nowhere.
    std::fs::rename(&disk, env.dir.path().join("unmounted")).expect("unmount");
    env.ctl.append("INBOX", &corpus::message(32, 50), &[]);
    let out = env.run(&["sync"]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "the folders failed:\n{text}");
    assert!(text.contains("unavailable"), "{text}");
    assert!(text.contains("leads nowhere"), "{text}");
    let mut expected = server.clone();
    expected.insert("INBOX".into(), env.remote()["INBOX"].clone());
    assert_eq!(
        env.remote(),
        expected,
        "no server folder or message deleted"
    );
    assert_eq!(
        env.local()["INBOX"].len(),
        3,
        "the other folders still sync"
    );

    // A mount point without its disk: an empty directory where the folder was.
    std::fs::remove_file(&small).expect("unlink");
    std::fs::create_dir(&small).expect("mount point");
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("empty directory"), "{}", stderr(&out));
    assert_eq!(
        env.remote(),
        expected,
        "no server folder or message deleted"
    );

    // The disk is back: everything is in step again.
    std::fs::remove_dir(&small).expect("unmount point");
    symlink(disk.join("small"), &small).expect("symlink");
    std::fs::rename(env.dir.path().join("unmounted"), &disk).expect("mount");
    env.sync_ok(&[]);
    env.assert_in_step();
    assert_eq!(env.remote(), expected);
}

#[test]
fn a_folder_really_deleted_is_removed_on_the_server_unless_it_held_much_mail() {
    let env = env_with_remove_both();
    fill(&env, "INBOX", 35, 2);
    fill(&env, "Big", 36, 30);
    fill(&env, "Small", 37, 3);
    fill(&env, "Parent/child", 38, 2);
    // Enough folders stay that the folder valve (half of them at once) is not what holds.
    for (i, keep) in ["Keep1", "Keep2", "Keep3", "Keep4"].iter().enumerate() {
        fill(&env, keep, 40 + i as u64, 1);
    }
    env.sync_ok(&[]);

    // Deleted for real: Small and Parent (with its child) go, Big is a mass deletion.
    for dir in ["Big", "Small", "Parent"] {
        std::fs::remove_dir_all(env.maildir().join(dir)).expect("rm -r");
    }
    let out = env.run(&["sync"]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "the valve held:\n{text}");
    assert!(text.contains("would delete its 30 messages"), "{text}");
    let server = env.remote();
    assert_eq!(server["Big"].len(), 30, "Big is kept on the server");
    assert!(!server.contains_key("Small"), "Small was removed");
    assert!(
        !server.contains_key("Parent/child"),
        "Parent/child was removed"
    );

    env.sync_ok(&["--allow-mass-delete"]);
    assert!(!env.remote().contains_key("Big"));
    env.assert_in_step();
}

/// Runs `idlewild sync`, killing it (by its PID) if it takes longer than a minute.
fn sync_within_a_minute(env: &Env) -> std::process::Output {
    let child = env
        .command(&["sync"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn idlewild");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(out) => out.expect("wait for idlewild"),
        Err(_) => {
            // SAFETY: kill(2) on the PID of our own child, which has not been reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("idlewild sync hung for a minute");
        }
    }
}

#[test]
fn message_files_linking_outside_the_maildir_are_not_uploaded_nor_deleted() {
    let env = Env::new();
    fill(&env, "INBOX", 50, 2);
    env.sync_ok(&[]);
    let cur = env.maildir().join("INBOX/cur");

    // A link to a file outside the Maildir (say, someone's private file), a link to a message
    // kept elsewhere inside the Maildir, and a FIFO: only the inside link's message goes up.
    let secret = env.dir.path().join("secret.eml");
    std::fs::write(&secret, corpus::message(50, 100)).expect("secret");
    symlink(&secret, cur.join("outside-1.host:2,S")).expect("symlink");
    let attic = env.maildir().join("attic");
    std::fs::create_dir_all(&attic).expect("attic");
    std::fs::write(attic.join("kept.eml"), corpus::message(50, 101)).expect("kept");
    symlink("../../attic/kept.eml", cur.join("inside-1.host:2,F")).expect("symlink");
    let fifo = cur.join("fifo-1.host:2,");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());

    for run in 0..2 {
        let out = sync_within_a_minute(&env);
        let text = stderr(&out);
        assert!(out.status.success(), "sync {run}:\n{text}");
        let inbox = &env.remote()["INBOX"];
        assert_eq!(inbox.len(), 3, "sync {run}: only the inside link went up");
        let secret_fp =
            idlewild::message::fingerprint(&corpus::message(50, 100)[..]).expect("fingerprint");
        assert!(
            inbox.iter().all(|m| m.message_id != secret_fp.message_id),
            "sync {run}: the file outside the Maildir was uploaded"
        );
        if run == 0 {
            assert!(text.contains("outside the Maildir"), "{text}");
        }
    }
    assert!(
        std::fs::symlink_metadata(cur.join("outside-1.host:2,S")).is_ok(),
        "the outside link is left where it is"
    );
    assert!(secret.is_file(), "its target is untouched");
}
