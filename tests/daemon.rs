//! The push daemon as a real child process against a private Dovecot, with a notification
//! socket the test binds in place of systemd's.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::daemon::{Daemon, eventually, local_count};
use common::{Env, set_local_flags};
use idlewild::model::Flags;
use support::bus::PrivateBus;
use support::corpus;

#[test]
fn mail_travels_both_ways_while_the_daemon_runs() {
    let env = Env::new();
    for i in 0..10 {
        env.ctl.append("INBOX", &corpus::message(1, i), &[]);
    }
    let mut daemon = Daemon::start(&env, None);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    eventually(Duration::from_secs(10), "the first sync", || {
        local_count(&env) == 10
    });

    // Server -> Maildir: new mail appears without asking.
    env.ctl.append("INBOX", &corpus::message(1, 100), &[]);
    eventually(Duration::from_secs(5), "server mail in the Maildir", || {
        local_count(&env) == 11
    });

    // Maildir -> server: a flag change and a deletion by the mail client.
    let files = env.local_files("INBOX");
    set_local_flags(&files[0], "FS");
    std::fs::remove_file(&files[1]).expect("delete");
    eventually(
        Duration::from_secs(5),
        "local changes on the server",
        || {
            let inbox = env.ctl.dump("INBOX");
            inbox.len() == 10
                && inbox
                    .iter()
                    .any(|m| m.flags.iter().any(|f| f == "\\Flagged"))
        },
    );
    // New local mail goes up too.
    env.deliver_locally("INBOX", "local-new.host", &corpus::message(1, 200), None);
    eventually(Duration::from_secs(5), "local mail on the server", || {
        env.ctl.dump("INBOX").len() == 11
    });

    daemon.signal("-TERM");
    daemon.expect_notify("STOPPING=1", Duration::from_secs(5));
    assert!(daemon.wait_exit(Duration::from_secs(25)).success());
    env.assert_in_step();
}

#[test]
fn the_daemon_reconnects_after_a_server_restart_and_catches_up() {
    let mut env = Env::new();
    env.ctl.append("INBOX", &corpus::message(2, 1), &["\\Seen"]);
    let _daemon = Daemon::start(&env, None);
    _daemon.expect_notify("READY=1", Duration::from_secs(20));
    eventually(Duration::from_secs(10), "the first sync", || {
        local_count(&env) == 1
    });

    env.dovecot.stop().expect("stop dovecot");
    // Mail delivered while IMAP is down, as an MDA would: straight into the server's Maildir.
    use std::os::unix::fs::MetadataExt;
    let server_new = env.dovecot.maildir("test").join("new");
    let owner = std::fs::metadata(&server_new).expect("server Maildir");
    let delivered = server_new.join("1700000000.offline.host");
    std::fs::write(&delivered, corpus::message(2, 2)).expect("deliver");
    std::os::unix::fs::chown(&delivered, Some(owner.uid()), Some(owner.gid())).expect("chown");
    std::thread::sleep(Duration::from_secs(1));
    env.dovecot.restart().expect("restart dovecot");
    _daemon.eventually(
        Duration::from_secs(30),
        "mail that arrived during the outage",
        || local_count(&env) == 2,
    );
    // And the push path works again.
    env.ctl.append("INBOX", &corpus::message(2, 3), &[]);
    _daemon.eventually(Duration::from_secs(10), "mail after the restart", || {
        local_count(&env) == 3
    });
}

#[test]
fn readiness_watchdog_reload_and_stop_are_notified() {
    let env = Env::new();
    env.ctl.append("INBOX", &corpus::message(3, 1), &[]);
    let mut daemon = Daemon::start(&env, Some(200_000));
    let seen = daemon.expect_notify("READY=1", Duration::from_secs(20));
    assert!(seen.iter().any(|m| m.contains("STATUS=")), "{seen:?}");
    daemon.expect_notify("WATCHDOG=1", Duration::from_secs(2));
    daemon.expect_notify("WATCHDOG=1", Duration::from_secs(2));
    daemon.signal("-HUP");
    let seen = daemon.expect_notify("RELOADING=1", Duration::from_secs(5));
    assert!(
        seen.last().is_some_and(|m| m.contains("MONOTONIC_USEC=")),
        "{seen:?}"
    );
    daemon.expect_notify("READY=1", Duration::from_secs(5));
    daemon.signal("-TERM");
    daemon.expect_notify("STOPPING=1", Duration::from_secs(5));
    assert!(daemon.wait_exit(Duration::from_secs(25)).success());
}

#[test]
fn sighup_starts_an_added_account_without_touching_the_other() {
    let mut env = Env::new();
    env.dovecot
        .add_user("second", "second-password")
        .expect("add user");
    env.ctl.append("INBOX", &corpus::message(4, 1), &[]);
    let daemon = Daemon::start(&env, None);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    eventually(Duration::from_secs(10), "the first account", || {
        local_count(&env) == 1
    });

    let second = support::imapctl::ImapCtl::for_user(&env.dovecot, "second", "second-password");
    second.append("INBOX", &corpus::message(4, 2), &[]);
    let second_mail = env.dir.path().join("Mail/second");
    let text = std::fs::read_to_string(env.config_path()).expect("config");
    let added = format!(
        "{text}\n[accounts.second.remote]\ntype = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"second\"\npassword = \"second-password\"\n\n[accounts.second.local]\ntype = \"maildir\"\npath = \"{}\"\n",
        env.dovecot.port(),
        second_mail.display()
    );
    std::fs::write(env.config_path(), added).expect("write config");
    daemon.signal("-HUP");
    daemon.expect_notify("READY=1", Duration::from_secs(10));
    eventually(Duration::from_secs(15), "the added account's mail", || {
        second_mail
            .join("INBOX/new")
            .read_dir()
            .map(|d| d.count())
            .unwrap_or(0)
            == 1
    });
    let log = std::fs::read_to_string(&daemon.log).expect("log");
    assert!(
        log.contains("starting account") && log.contains("second"),
        "{log}"
    );
    assert!(
        !log.contains("stopping account"),
        "the first account was restarted:\n{log}"
    );
    // The first account still pushes.
    env.ctl.append("INBOX", &corpus::message(4, 3), &[]);
    eventually(Duration::from_secs(5), "first account still live", || {
        local_count(&env) == 2
    });
}

#[test]
fn sigterm_during_the_first_sync_loses_nothing() {
    let env = Env::new();
    let mut ops = Vec::new();
    for i in 0..400 {
        ops.push(serde_json::json!({"op": "append", "folder": "INBOX",
            "message": String::from_utf8_lossy(&corpus::message(5, i)), "flags": ["\\Seen"]}));
    }
    env.ctl.run(serde_json::Value::Array(ops));
    let mut daemon = Daemon::start(&env, None);
    std::thread::sleep(Duration::from_millis(150));
    daemon.signal("-TERM");
    assert!(
        daemon.wait_exit(Duration::from_secs(25)).success(),
        "{}",
        daemon.log_tail()
    );
    // A one-shot sync finishes the job: every message once, on both sides.
    env.sync_ok(&[]);
    let (remote, local) = env.assert_in_step();
    assert_eq!(env.count(&remote), 400);
    assert_eq!(env.count(&local), 400);
    assert!(local["INBOX"].iter().all(|m| m.flags == Flags::SEEN.bits()));
}

#[test]
fn a_resume_from_suspend_reconnects_and_resyncs_at_once() {
    let env = Env::new();
    env.ctl.create("Archive");
    env.ctl.append("INBOX", &corpus::message(6, 1), &[]);
    let bus = PrivateBus::start();
    let daemon = Daemon::start_with(&env, None, &[("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)]);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    eventually(Duration::from_secs(10), "the first sync", || {
        local_count(&env) == 1
    });
    std::thread::sleep(Duration::from_secs(1));
    // --bus (not --address) registers with the bus first: a sender that never said Hello is
    // not routed to subscribers.
    let sent = std::process::Command::new("dbus-send")
        .arg(format!("--bus={}", bus.address))
        .args([
            "--type=signal",
            "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager.PrepareForSleep",
            "boolean:false",
        ])
        .status()
        .expect("dbus-send");
    assert!(sent.success());
    // A full sync (both folders) on a new connection follows at once.
    let resynced = || {
        let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
        log.split_once("resumed from suspend")
            .is_some_and(|(_, after)| {
                after.contains("logged in") && after.contains("synced folders=2")
            })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !resynced() {
        assert!(
            Instant::now() < deadline,
            "no full resync after the resume:\n{}",
            daemon.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_burst_of_500_arrivals_is_a_few_syncs_not_500() {
    let env = Env::new();
    let daemon = Daemon::start(&env, None);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    let synced_lines = || {
        std::fs::read_to_string(&daemon.log)
            .unwrap_or_default()
            .matches(" synced folders=")
            .count()
    };
    let before = synced_lines();
    let mut ops = Vec::new();
    for i in 0..500 {
        ops.push(serde_json::json!({"op": "append", "folder": "INBOX",
            "message": String::from_utf8_lossy(&corpus::message(7, i))}));
    }
    env.ctl.run(serde_json::Value::Array(ops));
    eventually(Duration::from_secs(30), "all 500 messages", || {
        local_count(&env) == 500
    });
    std::thread::sleep(Duration::from_secs(1));
    let syncs = synced_lines() - before;
    assert!(syncs <= 25, "{syncs} syncs for one burst of 500 arrivals");
    eprintln!("500 arrivals took {syncs} syncs");
}

/// A push names one folder: the daemon syncs it both ways after looking it up alone, without
/// listing every folder of the account (hundreds on some) or walking the Maildir tree.
#[test]
fn a_push_in_one_folder_syncs_it_without_listing_every_folder() {
    let env = Env::new();
    for name in ["Archive", "Lists/rust", "Lists/debian"] {
        env.ctl.create(name);
    }
    env.ctl.append("Archive", &corpus::message(3, 0), &[]);
    let mut daemon = Daemon::start(&env, None);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    daemon.eventually(Duration::from_secs(10), "the first sync", || {
        env.local_files("Archive").len() == 1
    });
    // The server watch starts after the first sync (and asks for a sync of its folders).
    std::thread::sleep(Duration::from_secs(2));
    let log = || std::fs::read_to_string(&daemon.log).unwrap_or_default();
    let full_listings = || log().matches(r#"LIST "" "*""#).count();
    let before = full_listings();
    assert!(
        before > 0,
        "the first sync listed no folders:\n{}",
        daemon.log_tail()
    );

    env.ctl.append("Archive", &corpus::message(3, 1), &[]);
    daemon.eventually(
        Duration::from_secs(10),
        "server mail in the Maildir",
        || env.local_files("Archive").len() == 2,
    );
    env.deliver_locally("Archive", "local-new.host", &corpus::message(3, 2), None);
    daemon.eventually(Duration::from_secs(10), "local mail on the server", || {
        env.ctl.dump("Archive").len() == 3
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        full_listings(),
        before,
        "a push listed every folder:\n{}",
        daemon.log_tail()
    );
    assert!(log().contains("planned the named folders without listing every folder"));

    daemon.signal("-TERM");
    assert!(daemon.wait_exit(Duration::from_secs(25)).success());
    env.assert_in_step();
}

/// Mail that arrives after the first sync has listed INBOX but before the server watch has
/// opened it (here: delivered by the first sync's postsync hook) is reported by no server
/// push. It must still arrive at once, not at the next interval.
fn mail_delivered_as_the_first_sync_ends_arrives_at_once(env: &Env) {
    let mark = env.dir.path().join("delivered");
    let ops = env.dir.path().join("ops.json");
    let message = String::from_utf8_lossy(&corpus::message(3, 1)).into_owned();
    let json = serde_json::json!([{"op": "append", "folder": "INBOX", "message": message}]);
    std::fs::write(&ops, json.to_string()).expect("ops");
    let script = format!(
        "test -e '{mark}' && exit 0; touch '{mark}'; python3 '{ctl}' --host 127.0.0.1 --port {port} --user '{user}' --password '{password}' < '{ops}'",
        mark = mark.display(),
        ctl = support::imapctl::ImapCtl::script().display(),
        port = env.dovecot.port(),
        user = env.dovecot.user(),
        password = env.dovecot.password(),
        ops = ops.display(),
    );
    let text = std::fs::read_to_string(env.config_path()).expect("config");
    std::fs::write(
        env.config_path(),
        format!(
            "{text}\n[accounts.test.hooks]\npostsync = [\"sh\", \"-c\", {}]\n",
            toml::Value::String(script)
        ),
    )
    .expect("config");
    // A Maildir that exists already is watched from the start, so the first sync is the one
    // after which the server watch starts (a new one is synced once more, then watched). The
    // first sync has nothing to write there, so no local change wakes the daemon either.
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(env.maildir().join("INBOX").join(sub)).expect("maildir");
    }
    let daemon = Daemon::start(env, None);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    eventually(Duration::from_secs(10), "the first sync's hook ran", || {
        mark.exists()
    });
    // The interval (the default, many minutes) is far away: only a sync the watch start
    // asked for brings the message.
    eventually(
        Duration::from_secs(10),
        "the message delivered by the hook",
        || local_count(env) == 1,
    );
    drop(daemon);
}

#[test]
fn mail_delivered_as_the_first_sync_ends_arrives_at_once_with_notify() {
    let env = Env::new();
    mail_delivered_as_the_first_sync_ends_arrives_at_once(&env);
}

#[test]
fn mail_delivered_as_the_first_sync_ends_arrives_at_once_with_idle() {
    // Without NOTIFY the daemon watches INBOX with an IDLE connection of its own.
    let caps = "IMAP4rev1 LITERAL+ SASL-IR ENABLE UIDPLUS MOVE CONDSTORE QRESYNC IDLE";
    let env = Env::with(support::dovecot::DovecotOptions {
        extra_config: vec![format!("protocol imap {{\n  imap_capability = {caps}\n}}")],
        ..Default::default()
    });
    mail_delivered_as_the_first_sync_ends_arrives_at_once(&env);
}

/// The inotify watches the daemon holds, as the kernel tells them (`/proc/PID/fdinfo`): the
/// inode of each watched directory and the events asked for.
fn inotify_watches(pid: u32) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the daemon's fds");
    for fd in fds.flatten() {
        let is_inotify = std::fs::read_link(fd.path())
            .is_ok_and(|target| target.to_string_lossy() == "anon_inode:inotify");
        if !is_inotify {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .expect("fdinfo");
        for line in info.lines().filter(|l| l.starts_with("inotify wd:")) {
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix(key))
                    .expect("fdinfo field")
            };
            let ino = u64::from_str_radix(field("ino:"), 16).expect("ino");
            let mask = u32::from_str_radix(field("mask:"), 16).expect("mask");
            out.push((ino, mask));
        }
    }
    out
}

/// The Maildir watch asks the kernel about changes only. Reads are not reported (mutt opening a
/// folder or notmuch indexing one opens every message: with IN_OPEN those events filled the
/// kernel's queue, and its overflow cost a rescan of every folder), and `tmp/`, where
/// deliveries are written before they count, is not watched; `cur/` and `new/` are, and a
/// change there still travels.
#[test]
fn the_maildir_watch_is_told_of_changes_not_reads() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    env.ctl.create("Archive");
    for i in 0..20 {
        env.ctl.append("Archive", &corpus::message(5, i), &[]);
    }
    let mut daemon = Daemon::start(&env, None);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    daemon.eventually(Duration::from_secs(10), "the first sync", || {
        env.local_files("Archive").len() == 20
    });
    let pid = daemon.child.id();
    let mut watches = Vec::new();
    daemon.eventually(Duration::from_secs(10), "the Maildir watched", || {
        watches = inotify_watches(pid);
        let cur = std::fs::metadata(env.maildir().join("Archive/cur")).expect("cur");
        watches.iter().any(|(ino, _)| *ino == cur.ino())
    });
    // IN_ACCESS, IN_MODIFY, IN_CLOSE_NOWRITE, IN_OPEN.
    const READS: u32 = 0x1 | 0x2 | 0x10 | 0x20;
    for (ino, mask) in &watches {
        assert_eq!(
            mask & READS,
            0,
            "inode {ino} is watched for reads: {mask:#x}"
        );
    }
    for folder in ["INBOX", "Archive"] {
        let maildir = env.maildir().join(folder);
        for (sub, watched) in [("cur", true), ("new", true), ("tmp", false)] {
            let ino = std::fs::metadata(maildir.join(sub)).expect("maildir").ino();
            assert_eq!(
                watches.iter().any(|(i, _)| *i == ino),
                watched,
                "{folder}/{sub}: {watches:?}"
            );
        }
    }

    // A mail client reading every message wakes nothing. (First the syncs that follow the
    // first one settle: the one the local watch's start asks for, and the one the server
    // watch's start asks for.)
    std::thread::sleep(Duration::from_secs(2));
    let syncs = || {
        std::fs::read_to_string(&daemon.log)
            .unwrap_or_default()
            .matches(" synced folders=")
            .count()
    };
    let before = syncs();
    for _ in 0..5 {
        for file in env.local_files("Archive") {
            std::fs::read(&file).expect("read a message");
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(syncs(), before, "reading messages woke a sync");

    // A change does: a flag set by the mail client reaches the server.
    let files = env.local_files("Archive");
    set_local_flags(&files[0], "FS");
    daemon.eventually(Duration::from_secs(10), "the flag on the server", || {
        env.ctl
            .dump("Archive")
            .iter()
            .any(|m| m.flags.iter().any(|f| f == "\\Flagged"))
    });
    // And a folder made by the mail client is watched from then on.
    env.deliver_locally("Projects", "local-1.host", &corpus::message(5, 100), None);
    daemon.eventually(
        Duration::from_secs(10),
        "the new folder on the server",
        || env.ctl.list().iter().any(|f| f == "Projects") && env.ctl.dump("Projects").len() == 1,
    );
    env.deliver_locally("Projects", "local-2.host", &corpus::message(5, 101), None);
    daemon.eventually(
        Duration::from_secs(10),
        "mail in the new folder on the server",
        || env.ctl.dump("Projects").len() == 2,
    );

    daemon.signal("-TERM");
    assert!(daemon.wait_exit(Duration::from_secs(25)).success());
    env.assert_in_step();
}

/// A folder the mail client renames is watched under its new name: mail delivered into it
/// afterwards travels at once, not at the next interval (15 minutes here).
#[test]
fn a_folder_renamed_by_the_mail_client_is_watched_under_its_new_name() {
    let env = Env::new();
    env.ctl.create("Projects");
    env.ctl.append("Projects", &corpus::message(6, 0), &[]);
    let mut daemon = Daemon::start(&env, None);
    daemon.expect_notify("READY=1", Duration::from_secs(20));
    daemon.eventually(Duration::from_secs(10), "the first sync", || {
        env.local_files("Projects").len() == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    std::fs::rename(
        env.maildir().join("Projects"),
        env.maildir().join("Renamed"),
    )
    .expect("rename the folder");
    daemon.eventually(
        Duration::from_secs(10),
        "the renamed folder on the server",
        || env.ctl.list().iter().any(|f| f == "Renamed") && env.ctl.dump("Renamed").len() == 1,
    );
    std::thread::sleep(Duration::from_millis(500));
    env.deliver_locally("Renamed", "local-1.host", &corpus::message(6, 1), None);
    daemon.eventually(
        Duration::from_secs(10),
        "mail delivered into the renamed folder on the server",
        || env.ctl.dump("Renamed").len() == 2,
    );
    daemon.signal("-TERM");
    assert!(daemon.wait_exit(Duration::from_secs(25)).success());
}
