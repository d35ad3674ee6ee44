//! The mailbox list as a mail client reads it: server folders with hostile names are synced,
//! and neomutt sources the list idlewild wrote. Nothing in a folder name may run a command or
//! end the `mailboxes` line.

mod common;
mod support;

use std::process::Command;

use common::{Env, tail};

/// Folder names that would break out of a muttrc double-quoted string if written raw.
const HOSTILE: [&str; 6] = [
    "`touch pwned-backtick`",
    "$(touch pwned-dollar)",
    "q\"uote; `touch pwned-quote`",
    "semi; source nowhere",
    "back\\slash",
    "with space",
];

#[test]
fn neomutt_reads_the_mailbox_list_of_hostile_folder_names_without_running_anything() {
    if Command::new("neomutt").arg("-v").output().is_err() {
        println!("SKIPPED: neomutt is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    let env = Env::new();
    env.sync_ok(&[]);
    // Made as Maildir folders, so idlewild's own quoting creates them on the server.
    for name in HOSTILE {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(env.maildir().join(name).join(sub)).expect("mkdir");
        }
    }
    let list = env.dir.path().join("mailboxes");
    env.write_config_with(
        "",
        &format!("[general.mbnames]\npath = \"{}\"\n", list.display()),
    );
    env.sync_ok(&[]);
    let written = std::fs::read_to_string(&list).expect("the mailbox list");
    // INBOX and every hostile folder are listed.
    assert_eq!(
        written.matches("\"+test/").count(),
        HOSTILE.len() + 1,
        "{written}"
    );

    // neomutt runs backticks from the directory it was started in: a command that escaped
    // would leave its file there.
    let cwd = tempfile::tempdir().expect("tempdir");
    let home = cwd.path().join("home");
    std::fs::create_dir(&home).expect("home");
    // `+` names a folder below $folder: the Maildir's parent, so every listed folder exists.
    let rc = cwd.path().join("muttrc");
    std::fs::write(
        &rc,
        format!(
            "set folder = \"{}\"\nsource \"{}\"\n",
            env.dir.path().join("Mail").display(),
            list.display()
        ),
    )
    .expect("write muttrc");
    let out = Command::new("neomutt")
        .args(["-n", "-F"])
        .arg(&rc)
        .arg("-D")
        .current_dir(cwd.path())
        .env("HOME", &home)
        .env("MAIL", home.join("spool"))
        .env_remove("MUTT")
        .env_remove("NEOMUTT")
        .output()
        .expect("run neomutt");
    let left: Vec<String> = std::fs::read_dir(cwd.path())
        .expect("read_dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pwned"))
        .collect();
    assert!(
        left.is_empty(),
        "a folder name ran a command: {left:?}\n{written}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "neomutt refused the list:\n{written}\n--- stderr\n{}",
        tail(&stderr, 30)
    );
    // neomutt complains on stderr about anything it could not parse or find ("Error in ...",
    // "Unknown Mailbox: ..."); every listed folder exists, so there is nothing to say.
    assert!(
        stderr.trim().is_empty(),
        "neomutt reported errors reading\n{written}\n--- stderr\n{stderr}"
    );
}
