//! Folders synced side by side over up to `max_connections` server connections, against a real
//! Dovecot: the extra connections show up as logins in the server's own log, the result is the
//! same as a sequential sync's, and a server that allows fewer connections only makes the
//! sync use fewer. (`tests/kill9.rs` kills syncs that run with the default of five.)

mod common;
mod support;

use std::time::{Duration, Instant};

use common::Env;
use support::corpus;
use support::dovecot::DovecotOptions;

const FOLDERS: [&str; 6] = [
    "INBOX",
    "Archive",
    "Archive/2019",
    "Sent",
    "Lists/rust",
    "Entwürfe",
];

fn fill(env: &Env, seed: u64, per_folder: usize) {
    for f in &FOLDERS[1..] {
        env.ctl.create(f);
    }
    let mut ops = Vec::new();
    for (n, folder) in FOLDERS.iter().enumerate() {
        for i in 0..per_folder {
            let index = n * 1000 + i;
            ops.push(serde_json::json!({
                "op": "append",
                "folder": folder,
                "message": String::from_utf8_lossy(&corpus::message(seed, index)),
                "flags": if i % 2 == 0 { vec!["\\Seen"] } else { vec![] },
            }));
        }
    }
    env.ctl.run(serde_json::Value::Array(ops));
}

fn config(env: &Env, max_connections: u32) {
    env.write_config_with(
        "",
        &format!("[accounts.test]\nmax_connections = {max_connections}\n"),
    );
}

/// Logins of the test user that the server logged while `run` ran.
fn logins(env: &Env, run: impl FnOnce()) -> usize {
    let before = env.dovecot.log().len();
    run();
    // Dovecot's log process writes a moment after the fact.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    while Instant::now() < deadline {
        let log = env.dovecot.log();
        let new = log.get(before..).unwrap_or("");
        let count = new
            .lines()
            .filter(|l| l.contains("Login: user=<test>"))
            .count();
        let ended = new
            .lines()
            .filter(|l| l.contains("Logged out") || l.contains("Disconnected"))
            .count();
        seen = count;
        if count > 0 && ended >= count {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    seen
}

#[test]
fn changed_folders_are_synced_side_by_side_and_unchanged_ones_on_one_connection() {
    let env = Env::new();
    fill(&env, 11, 40);
    for i in 0..10 {
        env.deliver_locally(
            FOLDERS[i % 3],
            &format!("local-{i}.host"),
            &corpus::message(11, 90_000 + i),
            None,
        );
    }
    config(&env, 3);

    let first = logins(&env, || {
        env.sync_ok(&[]);
    });
    // Extra lanes open only while folders wait (a fast machine may finish before the second).
    assert!(
        (2..=3).contains(&first),
        "six changed folders, max_connections = 3: {first} logins"
    );
    let (remote, local) = env.assert_in_step();
    // The local messages went to INBOX (4), Archive (3) and Archive/2019 (3).
    for (folder, want) in FOLDERS.iter().zip([44, 43, 43, 40, 40, 40]) {
        assert_eq!(remote.get(*folder).map_or(0, Vec::len), want, "{folder}");
        assert_eq!(local.get(*folder).map_or(0, Vec::len), want, "{folder}");
    }

    // The Maildir's directory times are trusted once they are two seconds old: the next run
    // lists the folders it wrote to once more, and records times it can trust.
    std::thread::sleep(Duration::from_millis(2100));
    env.sync_ok(&[]);
    // Nothing changed: the change tokens settle it on the first connection.
    std::thread::sleep(Duration::from_millis(2100));
    let idle = logins(&env, || {
        env.sync_ok(&[]);
    });
    assert_eq!(idle, 1, "nothing changed: no extra connection");

    // One folder changed: one folder to do, no one to share it with.
    env.ctl.append("Sent", &corpus::message(11, 95_000), &[]);
    let one = logins(&env, || {
        env.sync_ok(&[]);
    });
    assert_eq!(one, 1, "one changed folder: no extra connection");
    env.assert_in_step();
}

#[test]
fn max_connections_one_syncs_folder_after_folder() {
    let env = Env::new();
    fill(&env, 12, 10);
    config(&env, 1);
    let count = logins(&env, || {
        env.sync_ok(&[]);
    });
    assert_eq!(count, 1);
    env.assert_in_step();
}

#[test]
fn a_server_that_allows_fewer_connections_gets_fewer() {
    let mut options = DovecotOptions::default();
    options
        .extra_config
        .push("protocol imap {\n  mail_max_userip_connections = 2\n}\n".into());
    let env = Env::with(options);
    fill(&env, 13, 20);
    config(&env, 5);
    let out = env.sync_ok(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not open another connection"),
        "the refused connections are mentioned:\n{stderr}"
    );
    let (remote, local) = env.assert_in_step();
    for folder in FOLDERS {
        assert_eq!(remote.get(folder).map_or(0, Vec::len), 20, "{folder}");
        assert_eq!(local.get(folder).map_or(0, Vec::len), 20, "{folder}");
    }
}
