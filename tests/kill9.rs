//! kill -9 at random points of real syncs against a real Dovecot, dozens of times, during an
//! initial sync and during incremental syncs with changes on both sides; then a clean run. Every
//! message must be exactly once on both sides, with the same flags.
//!
//! Figures are printed at the end (run with `--nocapture` to see them).

mod common;
mod support;

use std::time::{Duration, Instant};

use common::{Env, Expected, expect_message as add, holds, set_local_flags};
use support::corpus::{self, Rng};

fn check(env: &Env, expected: &Expected) -> usize {
    let (remote, local) = env.assert_in_step();
    let mut checked = 0;
    for (side, name) in [(&remote, "server"), (&local, "Maildir")] {
        checked += holds(side, name, expected).unwrap_or_else(|e| panic!("{e}"));
    }
    checked
}

#[test]
fn kill_9_at_random_points_never_loses_or_duplicates() {
    let env = Env::new();
    let mut rng = Rng::new(0x1d1e);
    let mut expected = Expected::new();
    let seed = 77;
    let folders = ["INBOX", "Archive", "Entwürfe"];
    for f in &folders[1..] {
        env.ctl.create(f);
    }
    // Server: 240 messages; local: 60 messages of its own, in INBOX and a local-only folder.
    let mut ops = Vec::new();
    for i in 0..240 {
        let folder = folders[i % 3];
        ops.push(serde_json::json!({
            "op": "append", "folder": folder,
            "message": String::from_utf8_lossy(&corpus::message(seed, i)),
            "flags": if i % 2 == 0 { vec!["\\Seen"] } else { vec![] },
        }));
        add(&mut expected, folder, corpus::message_id(seed, i));
    }
    env.ctl.run(serde_json::Value::Array(ops));
    for i in 1000..1060 {
        let folder = if i % 2 == 0 { "INBOX" } else { "Local" };
        env.deliver_locally(
            folder,
            &format!("local-{i}.host"),
            &corpus::message(seed, i),
            None,
        );
        add(&mut expected, folder, corpus::message_id(seed, i));
    }

    // How long does an uninterrupted initial sync take? Measure on a twin, so kills land inside.
    let twin = Env::new();
    for f in &folders[1..] {
        twin.ctl.create(f);
    }
    let mut ops = Vec::new();
    for i in 0..240 {
        ops.push(serde_json::json!({"op": "append", "folder": folders[i % 3],
            "message": String::from_utf8_lossy(&corpus::message(seed, i))}));
    }
    twin.ctl.run(serde_json::Value::Array(ops));
    let t = Instant::now();
    twin.sync_ok(&[]);
    let full = t.elapsed().max(Duration::from_millis(50));
    drop(twin);

    let mut kills = 0;
    let mut runs = 0;
    // Phase 1: the initial sync, killed again and again.
    for _ in 0..20 {
        let delay = full.mul_f64(rng.below(100) as f64 / 100.0 * 0.9);
        runs += 1;
        if common::sync_and_kill(&env, delay) {
            kills += 1;
        }
    }
    env.sync_ok(&[]);
    let mut checked = check(&env, &expected);

    // Phases 2-4: changes on both sides, incremental syncs killed at random points.
    for round in 0..3u64 {
        let base = 5000 + round as usize * 100;
        for i in 0..30 {
            let folder = folders[i % 3];
            env.ctl
                .append(folder, &corpus::message(seed, base + i), &[]);
            add(&mut expected, folder, corpus::message_id(seed, base + i));
        }
        for i in 30..60 {
            let folder = if i % 2 == 0 { "INBOX" } else { "Local" };
            let id = base + i;
            env.deliver_locally(
                folder,
                &format!("local-{id}.host"),
                &corpus::message(seed, id),
                Some("S"),
            );
            add(&mut expected, folder, corpus::message_id(seed, id));
        }
        // Server: flag some, expunge some.
        let archive = env.ctl.dump("Archive");
        for m in archive.iter().step_by(7) {
            env.ctl.store("Archive", m.uid, &["\\Flagged"], "+");
        }
        let gone: Vec<&support::imapctl::ServerMessage> =
            archive.iter().skip(3).step_by(11).collect();
        env.ctl
            .expunge("Archive", &gone.iter().map(|m| m.uid).collect::<Vec<_>>());
        for m in gone {
            if let (Some(v), Some(id)) = (expected.get_mut("Archive"), &m.message_id) {
                v.retain(|x| x != id);
            }
        }
        // Local: flag some by rename, delete some.
        for (i, f) in env.local_files("INBOX").into_iter().enumerate() {
            if i % 9 == 0 {
                set_local_flags(&f, "FS");
            } else if i % 13 == 5 {
                let content = std::fs::read(&f).expect("read");
                let id = idlewild::message::message_id(&content).expect("Message-ID");
                std::fs::remove_file(&f).expect("delete");
                if let Some(v) = expected.get_mut("INBOX") {
                    v.retain(|x| *x != id);
                }
            }
        }
        // Kill runs while more mail keeps arriving on both sides, so every run has work to do.
        let incremental = full / 3;
        for k in 0..16 {
            let id = base + 60 + k;
            env.ctl
                .append(folders[k % 3], &corpus::message(seed, id), &["\\Seen"]);
            add(&mut expected, folders[k % 3], corpus::message_id(seed, id));
            let id = base + 80 + k;
            env.deliver_locally(
                "Local",
                &format!("local-{id}.host"),
                &corpus::message(seed, id),
                None,
            );
            add(&mut expected, "Local", corpus::message_id(seed, id));
            let delay = incremental.mul_f64(rng.below(100) as f64 / 100.0);
            runs += 1;
            if common::sync_and_kill(&env, delay) {
                kills += 1;
            }
        }
        env.sync_ok(&[]);
        checked += check(&env, &expected);
    }
    eprintln!(
        "kill -9 test: {runs} runs, {kills} killed mid-sync, {checked} message copies checked, 0 lost, 0 duplicated (initial sync {} ms)",
        full.as_millis()
    );
    assert!(
        kills >= 24,
        "only {kills} of {runs} runs were killed mid-sync"
    );
}
