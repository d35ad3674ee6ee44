//! Keywords (IMAP custom flags) against a real, private Dovecot: carried both ways through the
//! Maildir's `dovecot-keywords` letters, chosen and renamed by the configuration, and kept in
//! the state where a Maildir folder has no letter left for them.

mod common;
mod support;

use std::path::Path;

use common::{Env, local_keywords, set_local_flags, stdout};
use support::corpus;

/// The keywords of the server's message with this Message-ID.
fn server_keywords(env: &Env, folder: &str, message_id: &str) -> Vec<String> {
    let message = env
        .ctl
        .dump(folder)
        .into_iter()
        .find(|m| m.message_id.as_deref() == Some(message_id))
        .unwrap_or_else(|| panic!("no message {message_id} in {folder} on the server"));
    let mut keywords: Vec<String> = message
        .flags
        .into_iter()
        .filter(|f| !f.starts_with('\\') && f != "$Forwarded")
        .collect();
    keywords.sort();
    keywords
}

/// The local file of the message with this Message-ID.
fn local_file(env: &Env, folder: &str, message_id: &str) -> std::path::PathBuf {
    env.local_files(folder)
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains(&format!("Message-ID: {message_id}"))
        })
        .unwrap_or_else(|| panic!("no message {message_id} in local {folder}"))
}

fn message_id(seed: u64, i: usize) -> String {
    let message = String::from_utf8_lossy(&corpus::message(seed, i)).into_owned();
    message
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .expect("the corpus gives every message a Message-ID")
        .trim()
        .to_owned()
}

fn info_of(file: &Path) -> String {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.split_once(":2,")
        .map(|(_, i)| i.to_owned())
        .unwrap_or_default()
}

#[test]
fn keywords_travel_both_ways_as_dovecot_letters() {
    let env = Env::new();
    env.ctl.append(
        "INBOX",
        &corpus::message(1, 0),
        &["\\Seen", "$Junk", "NonJunk"],
    );
    env.ctl
        .append("INBOX", &corpus::message(1, 1), &["$label1"]);
    env.ctl.append("INBOX", &corpus::message(1, 2), &[]);
    let (m0, m1, m2) = (message_id(1, 0), message_id(1, 1), message_id(1, 2));
    env.sync_ok(&[]);
    env.assert_in_step();
    let inbox = env.maildir().join("INBOX");
    let table = std::fs::read_to_string(inbox.join("dovecot-keywords")).expect("keyword file");
    assert_eq!(table.lines().count(), 3, "one letter per keyword:\n{table}");
    assert_eq!(
        local_keywords(&inbox, &local_file(&env, "INBOX", &m0)),
        ["$Junk", "NonJunk"]
    );
    assert_eq!(
        local_keywords(&inbox, &local_file(&env, "INBOX", &m1)),
        ["$label1"]
    );

    // Here: m2 gets $Junk's letter (a mail client sets it, as neomutt does), m0 loses NonJunk.
    let junk = table
        .lines()
        .find_map(|l| l.strip_suffix(" $Junk"))
        .and_then(|i| i.parse::<u8>().ok())
        .map(|i| char::from(b'a' + i))
        .expect("$Junk has a letter");
    let nonjunk = table
        .lines()
        .find_map(|l| l.strip_suffix(" NonJunk"))
        .and_then(|i| i.parse::<u8>().ok())
        .map(|i| char::from(b'a' + i))
        .expect("NonJunk has a letter");
    set_local_flags(&local_file(&env, "INBOX", &m2), &format!("S{junk}"));
    let f0 = local_file(&env, "INBOX", &m0);
    let info: String = info_of(&f0).chars().filter(|c| *c != nonjunk).collect();
    set_local_flags(&f0, &info);
    // On the server: m1 loses $label1 and gets Work.
    let m1_uid = env
        .ctl
        .dump("INBOX")
        .into_iter()
        .find(|m| m.message_id.as_deref() == Some(m1.as_str()))
        .expect("m1")
        .uid;
    env.ctl.store("INBOX", m1_uid, &["$label1"], "-");
    env.ctl.store("INBOX", m1_uid, &["Work"], "+");

    env.sync_ok(&[]);
    assert_eq!(server_keywords(&env, "INBOX", &m0), ["$Junk"]);
    assert_eq!(server_keywords(&env, "INBOX", &m2), ["$Junk"]);
    assert_eq!(
        local_keywords(&inbox, &local_file(&env, "INBOX", &m1)),
        ["Work"]
    );
    assert_eq!(server_keywords(&env, "INBOX", &m1), ["Work"]);
    env.assert_in_step();

    // In step now: the next run changes no flag on either side.
    let out = env.sync_ok(&[]);
    assert!(stdout(&out).contains("0 flag changes"), "{}", stdout(&out));
}

#[test]
fn only_the_chosen_keywords_sync_and_a_renamed_one_has_its_local_name() {
    let env = Env::new();
    env.write_config_with(
        "",
        "[accounts.test]\nkeywords = [\"$Junk\", \"$label1\"]\n\n[accounts.test.keyword_rename]\n\"$label1\" = \"important\"\n",
    );
    env.ctl.append(
        "INBOX",
        &corpus::message(2, 0),
        &["$Junk", "$label1", "Private"],
    );
    let m0 = message_id(2, 0);
    env.sync_ok(&[]);
    let inbox = env.maildir().join("INBOX");
    assert_eq!(
        local_keywords(&inbox, &local_file(&env, "INBOX", &m0)),
        ["$Junk", "important"],
        "Private is not synced; $label1 is called important here"
    );
    // A local keyword outside the list stays local; a local `important` is the server's $label1.
    let f0 = local_file(&env, "INBOX", &m0);
    let table = std::fs::read_to_string(inbox.join("dovecot-keywords")).expect("keyword file");
    std::fs::write(
        inbox.join("dovecot-keywords"),
        format!("{table}25 LocalOnly\n"),
    )
    .expect("add a keyword here");
    set_local_flags(&f0, &format!("{}z", info_of(&f0)));
    env.sync_ok(&[]);
    assert_eq!(
        server_keywords(&env, "INBOX", &m0),
        ["$Junk", "$label1", "Private"],
        "nothing changed on the server"
    );
    let f0 = local_file(&env, "INBOX", &m0);
    assert!(
        info_of(&f0).contains('z'),
        "the local keyword stays: {f0:?}"
    );
    let out = env.sync_ok(&[]);
    assert!(stdout(&out).contains("0 flag changes"), "{}", stdout(&out));
}

#[test]
fn twenty_seven_keywords_in_a_folder_lose_none_on_the_server() {
    let env = Env::new();
    let names: Vec<String> = (0..27).map(|i| format!("k{i:02}")).collect();
    // 27 messages, one keyword each; the last folder letter runs out at the 27th.
    for (i, name) in names.iter().enumerate() {
        env.ctl
            .append("INBOX", &corpus::message(3, i), &[name.as_str()]);
    }
    let out = env.sync_ok(&[]);
    let inbox = env.maildir().join("INBOX");
    let table = std::fs::read_to_string(inbox.join("dovecot-keywords")).expect("keyword file");
    assert_eq!(table.lines().count(), 26, "26 letters:\n{table}");
    let stderr = common::stderr(&out);
    assert!(
        stderr.contains("no Maildir letter left"),
        "the keyword without a letter is reported:\n{stderr}"
    );
    // Every message keeps its keyword on the server, and the one without a letter is not
    // taken for removed locally, now or at the next runs.
    for _ in 0..2 {
        let out = env.sync_ok(&[]);
        assert!(stdout(&out).contains("0 flag changes"), "{}", stdout(&out));
        for (i, name) in names.iter().enumerate() {
            assert_eq!(
                server_keywords(&env, "INBOX", &message_id(3, i)),
                std::slice::from_ref(name)
            );
        }
    }
    // A change of another flag of that message still travels, keyword untouched.
    let last = local_file(&env, "INBOX", &message_id(3, 26));
    set_local_flags(&last, &format!("{}F", info_of(&last)));
    env.sync_ok(&[]);
    let flags = env
        .ctl
        .dump("INBOX")
        .into_iter()
        .find(|m| m.message_id.as_deref() == Some(message_id(3, 26).as_str()))
        .expect("message")
        .flags;
    assert!(flags.contains(&"\\Flagged".to_owned()), "{flags:?}");
    assert!(flags.contains(&names[26]), "{flags:?}");
}

#[test]
fn keywords_none_leaves_them_alone_on_both_sides() {
    let env = Env::new();
    env.write_config_with("", "[accounts.test]\nkeywords = \"none\"\n");
    env.ctl
        .append("INBOX", &corpus::message(4, 0), &["\\Seen", "$Junk"]);
    let m0 = message_id(4, 0);
    env.sync_ok(&[]);
    assert!(
        !env.maildir().join("INBOX/dovecot-keywords").exists(),
        "no keyword was written here"
    );
    let f0 = local_file(&env, "INBOX", &m0);
    set_local_flags(&f0, "FS");
    env.sync_ok(&[]);
    assert_eq!(server_keywords(&env, "INBOX", &m0), ["$Junk"]);
}

/// The letters and the `dovecot-keywords` file written here are Dovecot's own format: a second,
/// private Dovecot serving the Maildir (as a user's local IMAP server would) reads our keywords,
/// and a keyword it sets is carried to the server.
#[test]
fn a_dovecot_serving_the_maildir_reads_our_keywords_and_we_read_its() {
    use support::dovecot::{Dovecot, DovecotOptions, TEST_USER};
    use support::imapctl::ImapCtl;
    let env = Env::new();
    env.ctl.append(
        "INBOX",
        &corpus::message(5, 0),
        &["\\Seen", "$Junk", "NonJunk"],
    );
    env.ctl.create("Lists");
    env.ctl
        .append("Lists", &corpus::message(5, 1), &["$label1"]);
    let (m0, m1) = (message_id(5, 0), message_id(5, 1));
    // Its mail lives in its test user's home, where its mail processes may read it.
    let reader = Dovecot::start_with(DovecotOptions {
        extra_config: vec![
            "mail_location = maildir:~/Local:LAYOUT=fs:INBOX=~/Local/INBOX".to_owned(),
        ],
        ..DovecotOptions::default()
    })
    .expect("start a second Dovecot");
    let local = reader.home(TEST_USER).join("Local");
    let config = std::fs::read_to_string(env.config_path()).expect("config");
    let config = config.replace(
        &format!("path = \"{}\"", env.maildir().display()),
        &format!("path = \"{}\"", local.display()),
    );
    std::fs::write(env.config_path(), config).expect("config");
    env.sync_ok(&[]);
    reader.give_to_mail_owner(&local).expect("chown");

    let local_ctl = ImapCtl::new(&reader);
    let flags_of = |ctl: &ImapCtl, folder: &str, id: &str| {
        let mut flags = ctl
            .dump(folder)
            .into_iter()
            .find(|m| m.message_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no {id} in {folder}"))
            .flags;
        flags.sort();
        flags
    };
    assert_eq!(
        flags_of(&local_ctl, "INBOX", &m0),
        ["$Junk", "NonJunk", "\\Seen"]
    );
    assert_eq!(flags_of(&local_ctl, "Lists", &m1), ["$label1"]);

    // Dovecot sets a keyword of its own here: it takes a letter in its file, and we carry it.
    let uid = local_ctl
        .dump("Lists")
        .into_iter()
        .find(|m| m.message_id.as_deref() == Some(m1.as_str()))
        .expect("m1")
        .uid;
    local_ctl.store("Lists", uid, &["Work"], "+");
    local_ctl.store("Lists", uid, &["$label1"], "-");
    env.sync_ok(&[]);
    assert_eq!(server_keywords(&env, "Lists", &m1), ["Work"]);
    reader.give_to_mail_owner(&local).expect("chown");
    assert_eq!(flags_of(&local_ctl, "Lists", &m1), ["Work"]);
}

/// A server may refuse to store a keyword (Dovecot: one longer than its
/// `mail_max_keyword_length`): the message still goes up, its other flags too, the keyword stays
/// in the Maildir, and later runs neither retry it nor take its absence for a removal.
#[test]
fn a_keyword_the_server_refuses_stays_here_and_holds_back_nothing() {
    use support::dovecot::DovecotOptions;
    let env = Env::with(DovecotOptions {
        extra_config: vec!["mail_max_keyword_length = 10".to_owned()],
        ..DovecotOptions::default()
    });
    env.ctl.append("INBOX", &corpus::message(6, 0), &[]);
    let (m0, m1) = (message_id(6, 0), message_id(6, 1));
    env.sync_ok(&[]);
    let inbox = env.maildir().join("INBOX");
    std::fs::write(
        inbox.join("dovecot-keywords"),
        "0 averyverylongkeyword\n1 short\n",
    )
    .expect("keyword file");
    // A new message here with both keywords, and the known one gets both and \Flagged.
    env.deliver_locally("INBOX", "local-1", &corpus::message(6, 1), Some("Sab"));
    let f0 = local_file(&env, "INBOX", &m0);
    set_local_flags(&f0, &format!("F{}ab", info_of(&f0)));

    let out = env.sync_ok(&[]);
    assert!(
        common::stderr(&out).contains("refused to store keyword averyverylongkeyword"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(
        server_keywords(&env, "INBOX", &m1),
        ["short"],
        "the message went up"
    );
    assert_eq!(server_keywords(&env, "INBOX", &m0), ["short"]);
    let flags = env
        .ctl
        .dump("INBOX")
        .into_iter()
        .find(|m| m.message_id.as_deref() == Some(m0.as_str()))
        .expect("m0")
        .flags;
    assert!(flags.contains(&"\\Flagged".to_owned()), "{flags:?}");
    for _ in 0..2 {
        let out = env.sync_ok(&[]);
        assert!(stdout(&out).contains("0 flag changes"), "{}", stdout(&out));
        for id in [&m0, &m1] {
            assert_eq!(
                local_keywords(&inbox, &local_file(&env, "INBOX", id)),
                ["averyverylongkeyword", "short"],
                "kept here"
            );
        }
    }
}
