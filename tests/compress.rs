//! COMPRESS=DEFLATE (RFC 4978) against a real Dovecot with its imap_zlib plugin: a sync over a
//! compressed connection is whole, and a loopback server is not compressed unless asked.

mod common;
mod support;

use common::{Env, stderr};
use support::corpus;
use support::dovecot::DovecotOptions;

fn env_with_compression() -> Env {
    let mut options = DovecotOptions::default();
    options
        .extra_config
        .push("protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n".to_owned());
    let env = Env::with(options);
    assert!(
        env.ctl
            .capabilities()
            .iter()
            .any(|c| c.eq_ignore_ascii_case("COMPRESS=DEFLATE")),
        "the test server must offer COMPRESS=DEFLATE: {:?}",
        env.ctl.capabilities()
    );
    env
}

fn fill(env: &Env) {
    env.ctl.create("Lists/rust");
    let ops: Vec<serde_json::Value> = (0..40)
        .map(|i| {
            serde_json::json!({
                "op": "append",
                "folder": if i % 2 == 0 { "INBOX" } else { "Lists/rust" },
                "message": String::from_utf8_lossy(&corpus::message(31, i)),
                "flags": ["\\Seen"],
            })
        })
        .collect();
    env.ctl.run(serde_json::Value::Array(ops));
    // Bigger than one partial fetch, so both whole and partial bodies cross the stream.
    env.ctl
        .append("INBOX", &corpus::big_message(32, 3 * 1024 * 1024), &[]);
}

#[test]
fn a_compressed_connection_carries_a_whole_sync_both_ways() {
    let env = env_with_compression();
    fill(&env);
    env.write_config("compress = true");
    let out = env.sync_ok(&[]);
    assert!(
        stderr(&out).contains("imap compression (DEFLATE) on"),
        "compression was asked for and offered:\n{}",
        stderr(&out)
    );
    let (remote, _) = env.assert_in_step();
    assert_eq!(env.count(&remote), 41);

    // Uploads (MULTIAPPEND of literals) and an incremental listing, compressed.
    for i in 0..5 {
        env.deliver_locally(
            "Lists/rust",
            &format!("1700000000.c{i}.host"),
            &corpus::message(33, i),
            Some("S"),
        );
    }
    let inbox = env.ctl.dump("INBOX");
    env.ctl.store("INBOX", inbox[0].uid, &["\\Flagged"], "+");
    env.sync_ok(&[]);
    let (remote, _) = env.assert_in_step();
    assert_eq!(env.count(&remote), 46);
}

#[test]
fn a_loopback_server_is_not_compressed_unless_asked() {
    let env = env_with_compression();
    fill(&env);
    let out = env.sync_ok(&[]);
    assert!(
        !stderr(&out).contains("compression (DEFLATE) on"),
        "no compression on loopback by default:\n{}",
        stderr(&out)
    );
    env.assert_in_step();
}
