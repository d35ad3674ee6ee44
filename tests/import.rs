//! `idlewild import offlineimap|mbsync`: configurations as people write them are translated,
//! the output is checked key by key and by `idlewild check-config`, and two of them are used to
//! sync against the private Dovecot.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Env, stderr, stdout};
use support::corpus;

/// The binary with a home directory of the test's own, and nothing of the machine's.
fn idlewild(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_idlewild"));
    cmd.args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME")
        .env_remove("IDLEWILD_CONFIG")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("XDG_RUNTIME_DIR", home.join("no-runtime-dir"))
        .env("IDLEWILD_LOG", "idlewild=debug");
    cmd
}

fn run(home: &Path, args: &[&str]) -> Output {
    idlewild(home, args).output().expect("run idlewild")
}

fn home() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn write(path: &Path, text: &str) -> PathBuf {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
    path.to_owned()
}

/// Translates `file` and insists on success; returns the parsed output, its text and stderr.
fn import(home: &Path, tool: &str, file: &Path) -> (toml::Table, String, String) {
    let out = run(home, &["import", tool, &file.to_string_lossy()]);
    assert!(
        out.status.success(),
        "import failed ({:?}):\n{}",
        out.status.code(),
        stderr(&out)
    );
    let text = stdout(&out);
    let doc: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("the output is not TOML: {e}\n{text}"));
    (doc, text, stderr(&out))
}

fn at<'a>(doc: &'a toml::Table, path: &str) -> &'a toml::Value {
    let mut parts = path.split('.');
    let first = parts.next().expect("a key");
    let mut v = doc
        .get(first)
        .unwrap_or_else(|| panic!("no {first} in {doc:#?}"));
    for p in parts {
        v = v.get(p).unwrap_or_else(|| panic!("no {path} in {doc:#?}"));
    }
    v
}

fn s<'a>(doc: &'a toml::Table, path: &str) -> &'a str {
    at(doc, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn strings(doc: &toml::Table, path: &str) -> Vec<String> {
    at(doc, path)
        .as_array()
        .unwrap_or_else(|| panic!("{path} is not an array"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

fn has(doc: &toml::Table, path: &str) -> bool {
    let mut v: Option<&toml::Value> = None;
    for (i, p) in path.split('.').enumerate() {
        v = if i == 0 {
            doc.get(p)
        } else {
            v.and_then(|v| v.get(p))
        };
    }
    v.is_some()
}

/// Keys of the folder features, which the configuration schema of this binary may not know yet
/// (they are added to it separately).
const FOLDER_KEYS: &[&str] = &[
    "create",
    "remove",
    "max_age",
    "max_size",
    "sync_deletes",
    "folders",
    "mbnames",
];

/// `idlewild check-config` accepts the file. While this binary's schema lacks the folder
/// features, the file may only be refused for one of their keys, and must pass without them.
fn assert_check_config_accepts(home: &Path, path: &Path) {
    let out = run(home, &["--config", &path.to_string_lossy(), "check-config"]);
    if out.status.success() {
        return;
    }
    let knows_folder_keys = idlewild::config::KEYS.contains(&"accounts.*.folders.include");
    let err = stderr(&out);
    assert!(
        !knows_folder_keys,
        "check-config refused the translation:\n{err}"
    );
    assert!(
        FOLDER_KEYS
            .iter()
            .chain(&["readonly"])
            .any(|k| err.contains(&format!("unknown key `{k}`"))),
        "check-config refused the translation for something else than a folder key:\n{err}"
    );
    let mut doc: toml::Table = std::fs::read_to_string(path)
        .expect("read")
        .parse()
        .expect("toml");
    if let Some(general) = doc.get_mut("general").and_then(|g| g.as_table_mut()) {
        general.remove("mbnames");
    }
    if let Some(accounts) = doc.get_mut("accounts").and_then(|a| a.as_table_mut()) {
        for (_, account) in accounts.iter_mut() {
            let account = account.as_table_mut().expect("account table");
            for k in FOLDER_KEYS {
                account.remove(*k);
            }
            for side in ["remote", "local"] {
                if let Some(t) = account.get_mut(side).and_then(|t| t.as_table_mut()) {
                    t.remove("readonly");
                }
            }
        }
    }
    let stripped = path.with_extension("without-folder-keys.toml");
    write(&stripped, &toml::to_string(&doc).expect("serialize"));
    let out = run(
        home,
        &["--config", &stripped.to_string_lossy(), "check-config"],
    );
    assert!(
        out.status.success(),
        "check-config refused the translation without the folder keys:\n{}",
        stderr(&out)
    );
}

/// The local name idlewild's rules give a remote name: the first matching rule wins.
fn renamed(doc: &toml::Table, account: &str, remote: &str) -> String {
    let path = format!("accounts.{account}.folders.rename");
    for rule in at(doc, &path).as_array().expect("rules") {
        let re = regex::Regex::new(rule["remote"].as_str().expect("remote")).expect("regex");
        if re.is_match(remote) {
            return re
                .replace(remote, rule["local"].as_str().expect("local"))
                .into_owned();
        }
    }
    remote.to_owned()
}

fn files_in(dir: &Path) -> usize {
    ["cur", "new"]
        .iter()
        .map(|sub| {
            std::fs::read_dir(dir.join(sub))
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum()
}

fn fill(env: &Env) {
    env.ctl.create("Lists/rust");
    env.ctl
        .append("INBOX", &corpus::message(41, 0), &["\\Seen"]);
    env.ctl.append("INBOX", &corpus::message(41, 1), &[]);
    env.ctl
        .append("Lists/rust", &corpus::message(41, 2), &["\\Flagged"]);
}

#[test]
fn an_offlineimap_account_with_remotepasseval_is_translated_and_syncs() {
    let env = Env::new();
    fill(&env);
    let home = env.dir.path().join("home");
    write(
        &home.join(".offlineimap.py"),
        &format!(
            "def get_pass(account):\n    return {{'work': '{}'}}[account]\n",
            env.dovecot.password()
        ),
    );
    // Read from the default path, ~/.offlineimaprc.
    write(
        &home.join(".offlineimaprc"),
        &format!(
            "[general]\n\
             accounts = Work\n\
             pythonfile = ~/.offlineimap.py\n\
             socktimeout = 30\n\
             \n\
             [Account Work]\n\
             localrepository = WorkLocal\n\
             remoterepository = WorkRemote\n\
             \n\
             [Repository WorkLocal]\n\
             type = Maildir\n\
             localfolders = ~/Mail/work\n\
             sep = /\n\
             \n\
             [Repository WorkRemote]\n\
             type = IMAP\n\
             remotehost = 127.0.0.1\n\
             remoteport = {}\n\
             ssl = no\n\
             starttls = no\n\
             remoteuser = {}\n\
             remotepasseval = get_pass(\"work\")\n",
            env.dovecot.port(),
            env.dovecot.user()
        ),
    );
    let config = home.join(".config/idlewild/config.toml");
    std::fs::create_dir_all(config.parent().expect("dir")).expect("mkdir");
    let out = run(
        &home,
        &["import", "offlineimap", "-o", &config.to_string_lossy()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(".offlineimaprc:22: account Work: remotepasseval is Python"),
        "{err}"
    );
    let text = std::fs::read_to_string(&config).expect("read");
    let doc: toml::Table = text.parse().expect("toml");
    assert_eq!(s(&doc, "accounts.Work.remote.host"), "127.0.0.1");
    assert_eq!(
        at(&doc, "accounts.Work.remote.port").as_integer(),
        Some(i64::from(env.dovecot.port()))
    );
    assert_eq!(s(&doc, "accounts.Work.remote.tls"), "none");
    assert_eq!(s(&doc, "accounts.Work.remote.user"), env.dovecot.user());
    assert_eq!(
        at(&doc, "accounts.Work.remote.timeout").as_integer(),
        Some(30)
    );
    let command = strings(&doc, "accounts.Work.remote.password.command");
    assert_eq!(command[..2], ["python3", "-c"]);
    assert!(command[2].contains(&home.join(".offlineimap.py").to_string_lossy().into_owned()));
    assert_eq!(s(&doc, "accounts.Work.local.path"), "~/Mail/work-idlewild");
    assert_eq!(s(&doc, "accounts.Work.local.layout"), "nested");
    assert!(!has(&doc, "accounts.Work.folders"), "{text}");
    assert!(
        text.contains(
            "# warning (line 12): idlewild syncs into a new directory, not into ~/Mail/work"
        ),
        "{text}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The translation is the configuration idlewild reads by default, and it works.
    let out = run(&home, &["check-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&home, &["sync"]);
    assert!(
        out.status.success(),
        "sync failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let maildir = home.join("Mail/work-idlewild");
    assert_eq!(files_in(&maildir.join("INBOX")), 2);
    assert_eq!(files_in(&maildir.join("Lists/rust")), 1);
    assert!(!home.join("Mail/work").exists());
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains(env.dovecot.password()), "{all}");
}

#[test]
fn an_mbsync_channel_over_imaps_with_passcmd_is_translated_and_syncs() {
    let env = Env::new();
    fill(&env);
    let home = env.dir.path().join("home");
    let rc = write(
        &home.join("mbsyncrc"),
        &format!(
            "IMAPAccount work\n\
             Host 127.0.0.1\n\
             Port {}\n\
             User {}\n\
             PassCmd \"printf %s {}\"\n\
             TLSType IMAPS\n\
             CertificateFile {}\n\
             \n\
             IMAPStore work-remote\n\
             Account work\n\
             \n\
             MaildirStore work-local\n\
             SubFolders Verbatim\n\
             Path ~/Mail/work/\n\
             Inbox ~/Mail/work/INBOX\n\
             \n\
             Channel work\n\
             Far :work-remote:\n\
             Near :work-local:\n\
             Patterns *\n\
             Create Both\n\
             Expunge Both\n\
             SyncState *\n",
            env.dovecot.tls_port(),
            env.dovecot.user(),
            env.dovecot.password(),
            env.dovecot.ca_file().display()
        ),
    );
    let (doc, text, err) = import(&home, "mbsync", &rc);
    assert_eq!(s(&doc, "accounts.work.remote.tls"), "implicit");
    assert_eq!(
        at(&doc, "accounts.work.remote.port").as_integer(),
        Some(i64::from(env.dovecot.tls_port()))
    );
    assert_eq!(
        s(&doc, "accounts.work.remote.ca_file"),
        env.dovecot.ca_file().to_string_lossy()
    );
    assert_eq!(
        strings(&doc, "accounts.work.remote.password.command"),
        ["printf", "%s", env.dovecot.password()]
    );
    assert!(
        err.contains("mbsyncrc:5: account work: PassCmd is run without a shell"),
        "{err}"
    );
    assert_eq!(s(&doc, "accounts.work.local.path"), "~/Mail/work-idlewild");
    // Everything, created both ways, expunged both ways: idlewild's defaults.
    for key in ["create", "remove", "sync_deletes", "folders"] {
        assert!(
            !has(&doc, &format!("accounts.work.{key}")),
            "{key}:\n{text}"
        );
    }
    let config = write(&home.join("config.toml"), &text);
    assert_check_config_accepts(&home, &config);
    let out = run(&home, &["--config", &config.to_string_lossy(), "sync"]);
    assert!(
        out.status.success(),
        "sync failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let maildir = home.join("Mail/work-idlewild");
    assert_eq!(files_in(&maildir.join("INBOX")), 2);
    assert_eq!(files_in(&maildir.join("Lists/rust")), 1);
}

const GMAIL_OFFLINEIMAPRC: &str = r#"[general]
accounts = Gmail
ui = ttyui

[Account Gmail]
localrepository = Gmail-Local
remoterepository = Gmail-Remote
synclabels = no
maxsize = 2000000
maxage = 90

[Repository Gmail-Local]
type = Maildir
localfolders = ~/Mail/Gmail
nametrans = lambda folder: {'drafts':  '[Gmail]/Drafts',
                            'sent':    '[Gmail]/Sent Mail',
                            'flagged': '[Gmail]/Starred',
                            'trash':   '[Gmail]/Trash',
                            'archive': '[Gmail]/All Mail',
                            }.get(folder, folder)

[Repository Gmail-Remote]
type = Gmail
remoteuser = someone@gmail.com
remotepass = app%%password
maxconnections = 1
sslcacertfile = /etc/ssl/certs/ca-certificates.crt
nametrans = lambda folder: re.sub('.*Drafts$', 'drafts',
                           re.sub('.*Sent Mail$', 'sent',
                           re.sub('.*Starred$', 'flagged',
                           re.sub('.*Trash$', 'trash',
                           re.sub('.*All Mail$', 'archive', folder)))))
folderfilter = lambda folder: folder not in ['[Gmail]/Spam', '[Gmail]/Important'] and not folder.startswith('[Gmail]/Chats')
"#;

#[test]
fn a_gmail_account_with_nametrans_and_folderfilter_lambdas_is_translated() {
    let home = home();
    let rc = write(&home.path().join("offlineimaprc"), GMAIL_OFFLINEIMAPRC);
    let (doc, text, err) = import(home.path(), "offlineimap", &rc);
    let a = "accounts.Gmail";
    assert_eq!(s(&doc, &format!("{a}.remote.host")), "imap.gmail.com");
    assert_eq!(s(&doc, &format!("{a}.remote.tls")), "implicit");
    assert_eq!(s(&doc, &format!("{a}.remote.user")), "someone@gmail.com");
    // configparser's %% is one %.
    assert_eq!(s(&doc, &format!("{a}.remote.password")), "app%password");
    assert!(
        !has(&doc, &format!("{a}.remote.ca_file")),
        "a system bundle"
    );
    assert_eq!(
        at(&doc, &format!("{a}.max_size")).as_integer(),
        Some(2_000_000)
    );
    assert_eq!(at(&doc, &format!("{a}.max_age")).as_integer(), Some(90));
    assert_eq!(
        strings(&doc, &format!("{a}.folders.exclude")),
        ["[Gmail]/Spam", "[Gmail]/Important", "[Gmail]/Chats*"]
    );
    assert!(!has(&doc, &format!("{a}.folders.include")));
    for (remote, local) in [
        ("[Gmail]/Drafts", "drafts"),
        ("[Gmail]/Sent Mail", "sent"),
        ("[Gmail]/Starred", "flagged"),
        ("[Gmail]/Trash", "trash"),
        ("[Gmail]/All Mail", "archive"),
        ("INBOX", "INBOX"),
        ("Receipts/2024", "Receipts/2024"),
    ] {
        assert_eq!(renamed(&doc, "Gmail", remote), local, "{remote}");
    }
    // The nametrans rules name the folders as before; no preset on top of them.
    assert!(!has(&doc, &format!("{a}.folders.preset")), "{text}");
    // The rules' way back comes from the local repository's nametrans.
    let rules = at(&doc, &format!("{a}.folders.rename"))
        .as_array()
        .expect("rules");
    assert!(rules.iter().any(
        |r| r.get("local_match").and_then(|v| v.as_str()) == Some("^sent$")
            && r.get("remote_replace").and_then(|v| v.as_str()) == Some("[Gmail]/Sent Mail")
    ));
    assert!(text.contains("`idlewild oauth2 authorize Gmail`"), "{text}");
    assert!(
        err.contains("offlineimaprc:25: account Gmail: a password in the configuration file"),
        "{err}"
    );
    assert!(
        text.contains("maxconnections: not needed by idlewild"),
        "{text}"
    );
    let config = write(&home.path().join("config.toml"), &text);
    assert_check_config_accepts(home.path(), &config);
}

#[test]
fn a_gmail_account_without_nametrans_gets_the_preset_and_oauth2_keys() {
    let home = home();
    let rc = write(
        &home.path().join("offlineimaprc"),
        "[general]\naccounts = g\n\n[Account g]\nlocalrepository = l\nremoterepository = r\n\n\
         [Repository l]\ntype = GmailMaildir\nlocalfolders = ~/Mail/g\n\n\
         [Repository r]\ntype = IMAP\nremotehost = imap.gmail.com\nremoteuser = a@gmail.com\n\
         auth_mechanisms = XOAUTH2\noauth2_client_id = 123.apps.googleusercontent.com\n\
         oauth2_client_secret = GOCSPX-x\noauth2_refresh_token = 1//secret-token\n\
         oauth2_request_url = https://accounts.google.com/o/oauth2/token\n",
    );
    let (doc, text, err) = import(home.path(), "offlineimap", &rc);
    assert_eq!(s(&doc, "accounts.g.folders.preset"), "gmail");
    assert_eq!(s(&doc, "accounts.g.remote.oauth2.provider"), "gmail");
    assert_eq!(
        s(&doc, "accounts.g.remote.oauth2.client_id"),
        "123.apps.googleusercontent.com"
    );
    assert_eq!(
        s(&doc, "accounts.g.remote.oauth2.client_secret"),
        "GOCSPX-x"
    );
    assert!(!text.contains("1//secret-token"), "{text}");
    assert!(!err.contains("1//secret-token"), "{err}");
    assert!(err.contains("run `idlewild oauth2 authorize g`"), "{err}");
    let config = write(&home.path().join("config.toml"), &text);
    assert_check_config_accepts(home.path(), &config);
}

const MBSYNCRC: &str = r#"# Two accounts; Gmail with one Channel per renamed folder.
IMAPAccount gmail
Host imap.gmail.com
User someone@gmail.com
PassCmd "pass show mail/gmail | head -n1"
SSLType IMAPS
CertificateFile /etc/ssl/certs/ca-certificates.crt

IMAPStore gmail-remote
Account gmail

MaildirStore gmail-local
Subfolders Verbatim
Path ~/Mail/gmail/
Inbox ~/Mail/gmail/INBOX

Channel gmail-default
Far :gmail-remote:
Near :gmail-local:
Patterns * ![Gmail]* "[Gmail]/Starred"
Create Near
Expunge Both

Channel gmail-sent
Far :gmail-remote:"[Gmail]/Sent Mail"
Near :gmail-local:sent
Create Near
Expunge Both

Channel gmail-trash
Far :gmail-remote:"[Gmail]/Trash"
Near :gmail-local:trash
Create Near
Expunge Both

Group gmail
Channel gmail-default
Channel gmail-sent
Channel gmail-trash

IMAPAccount work
Host mail.example.com
User me
PassCmd +"secret-tool lookup host mail.example.com"
TLSType STARTTLS
AuthMechs LOGIN
Timeout 30

IMAPStore work-remote
Account work
Path INBOX.

MaildirStore work-local
SubFolders Maildir++
Inbox ~/Maildir/work
MaxSize 10m

Channel work
Far :work-remote:
Near :work-local:
Patterns % !Junk
Sync Pull New Flags
Create Both
Remove Near
Expunge Both
"#;

#[test]
fn mbsync_channels_and_groups_become_accounts_with_patterns_and_renames() {
    let home = home();
    let rc = write(&home.path().join(".mbsyncrc"), MBSYNCRC);
    // Read from the default path, ~/.mbsyncrc.
    let out = run(home.path(), &["import", "mbsync"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (text, err) = (stdout(&out), stderr(&out));
    let doc: toml::Table = text.parse().expect("toml");
    let accounts = at(&doc, "accounts").as_table().expect("accounts");
    assert_eq!(
        accounts.keys().collect::<Vec<_>>(),
        ["gmail", "work"],
        "{text}"
    );

    // gmail: the Group's three Channels in one account.
    let g = "accounts.gmail";
    assert_eq!(s(&doc, &format!("{g}.create")), "local");
    assert_eq!(
        strings(&doc, &format!("{g}.remote.password.command")),
        ["sh", "-c", "pass show mail/gmail | head -n1"]
    );
    assert!(!has(&doc, &format!("{g}.remote.ca_file")));
    assert!(!has(&doc, &format!("{g}.folders.include")));
    let exclude = strings(&doc, &format!("{g}.folders.exclude"));
    assert_eq!(exclude.len(), 1, "{exclude:?}");
    let re = regex::Regex::new(exclude[0].strip_prefix("regex:").expect("a regex")).expect("re");
    for (name, excluded) in [
        ("[Gmail]/Spam", true),
        ("[Gmail]/All Mail", true),
        ("[Gmail]/Starred", false),
        ("[Gmail]/Sent Mail", false),
        ("[Gmail]/Trash", false),
        ("INBOX", false),
        ("Receipts", false),
    ] {
        assert_eq!(re.is_match(name), excluded, "{name}");
    }
    assert_eq!(renamed(&doc, "gmail", "[Gmail]/Sent Mail"), "sent");
    assert_eq!(renamed(&doc, "gmail", "[Gmail]/Trash"), "trash");
    assert_eq!(renamed(&doc, "gmail", "INBOX"), "INBOX");
    assert_eq!(s(&doc, &format!("{g}.local.path")), "~/Mail/gmail-idlewild");
    assert_eq!(s(&doc, &format!("{g}.local.layout")), "nested");

    // work: IMAPStore Path, Maildir++, Sync Pull without Delete, MaxSize.
    let w = "accounts.work";
    assert_eq!(s(&doc, &format!("{w}.remote.tls")), "starttls");
    assert_eq!(
        at(&doc, &format!("{w}.remote.timeout")).as_integer(),
        Some(30)
    );
    assert_eq!(
        strings(&doc, &format!("{w}.remote.password.command")),
        ["secret-tool", "lookup", "host", "mail.example.com"]
    );
    assert_eq!(
        at(&doc, &format!("{w}.remote.readonly")).as_bool(),
        Some(true)
    );
    assert_eq!(
        at(&doc, &format!("{w}.sync_deletes")).as_bool(),
        Some(false)
    );
    // mbsync's Remove only removed emptied folders: idlewild's default.
    assert!(!has(&doc, &format!("{w}.remove")));
    assert!(text.contains("# Remove Near: mbsync removed a folder deleted on the other side only when it was empty"), "{text}");
    assert_eq!(s(&doc, &format!("{w}.max_size")), "10M");
    assert_eq!(
        s(&doc, &format!("{w}.folders.remote_prefix_strip")),
        "INBOX/"
    );
    assert_eq!(
        strings(&doc, &format!("{w}.folders.include")),
        ["INBOX", "INBOX/%"]
    );
    assert_eq!(
        strings(&doc, &format!("{w}.folders.exclude")),
        ["INBOX/Junk"]
    );
    assert_eq!(s(&doc, &format!("{w}.local.layout")), "maildir++");
    assert_eq!(
        s(&doc, &format!("{w}.local.path")),
        "~/Maildir/work-idlewild"
    );
    assert!(
        !err.contains("account work: Channel work: mbsync did not copy"),
        "Pull New Flags copies all idlewild copies: {err}"
    );
    assert!(
        err.contains(".mbsyncrc:44: account work: PassCmd is run without a shell"),
        "{err}"
    );
    let config = write(&home.path().join("config.toml"), &text);
    assert_check_config_accepts(home.path(), &config);
    drop(rc);
}

#[test]
fn what_cannot_be_translated_becomes_a_todo_comment_with_the_original() {
    let home = home();
    let rc = write(
        &home.path().join("offlineimaprc"),
        "[general]\naccounts = a\npythonfile = ~/.offlineimap.py\n\n\
         [Account a]\nlocalrepository = l\nremoterepository = r\nmaxage = 2015-04-01\n\
         proxy = SOCKS5:127.0.0.1:9050\n\n\
         [Repository l]\ntype = Maildir\nlocalfolders = ~/Mail/a\n\n\
         [Repository r]\ntype = IMAP\nremotehost = imap.example.org\nremoteuser = me\n\
         folderfilter = my_filter\n\
         nametrans = lambda f: f.upper()\n\
         cert_fingerprint = bbfe29cf97acb204591edbafe0aa8c8f914287c9\n\
         frobnicate = yes\n\
         backup_password = hunter2-secret\n",
    );
    let (doc, text, err) = import(home.path(), "offlineimap", &rc);
    for (line, original) in [
        (8, "maxage = 2015-04-01"),
        (9, "proxy = SOCKS5:127.0.0.1:9050"),
        (19, "folderfilter = my_filter"),
        (20, "nametrans = lambda f: f.upper()"),
        (
            21,
            "cert_fingerprint = bbfe29cf97acb204591edbafe0aa8c8f914287c9",
        ),
    ] {
        let comment = format!("# TODO (line {line}): not translated:");
        let at = text
            .find(&comment)
            .unwrap_or_else(|| panic!("no {comment}\n{text}"));
        let after = &text[at..];
        assert!(
            after.contains(&format!("\n#     {original}\n")),
            "{original}\n{text}"
        );
        assert!(
            err.contains(&format!(
                "offlineimaprc:{line}: account a: not translated: "
            )),
            "{line}: {err}"
        );
    }
    assert!(
        text.contains("calls my_filter, a function of the pythonfile"),
        "{text}"
    );
    assert!(
        err.contains(
            "offlineimaprc:22: account a: [Repository r] frobnicate = yes: not translated"
        ),
        "{err}"
    );
    assert!(
        err.contains("offlineimaprc:23: account a: [Repository r] backup_password = (hidden)"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2") && !text.contains("hunter2"),
        "{text}"
    );
    // The rest is translated, and nothing half-translated is left in force.
    assert_eq!(s(&doc, "accounts.a.remote.host"), "imap.example.org");
    assert!(!has(&doc, "accounts.a.folders"), "{text}");
    assert!(!has(&doc, "accounts.a.remote.cert_fingerprint"));
    let config = write(&home.path().join("config.toml"), &text);
    assert_check_config_accepts(home.path(), &config);

    let rc = write(
        &home.path().join("mbsyncrc"),
        "IMAPStore r\nHost h.example.org\nUser u\nTunnel \"ssh -q host /usr/lib/dovecot/imap\"\n\n\
         MaildirStore l\nPath ~/Mail/t/\nInbox ~/Mail/t/INBOX\nTrash Trash\n\n\
         Channel c\nFar :r:\nNear :l:\nPatterns * !Lists/* Lists/rust* !Lists/rust-old\nMaxMessages 500\n\
         Create Both\nExpunge Both\n",
    );
    let (doc, text, err) = import(home.path(), "mbsync", &rc);
    for (line, original) in [
        (4, "Tunnel \"ssh -q host /usr/lib/dovecot/imap\""),
        (9, "Trash Trash"),
        (14, "Patterns * !Lists/* Lists/rust* !Lists/rust-old"),
        (15, "MaxMessages 500"),
    ] {
        let comment = format!("# TODO (line {line}): not translated:");
        let at = text
            .find(&comment)
            .unwrap_or_else(|| panic!("no {comment}\n{text}"));
        assert!(
            text[at..].contains(&format!("\n#     {original}\n")),
            "{original}\n{text}"
        );
        assert!(
            err.contains(&format!("mbsyncrc:{line}: account c: not translated: ")),
            "{line}: {err}"
        );
    }
    assert!(!has(&doc, "accounts.c.folders"), "{text}");
}

#[test]
fn unreadable_or_malformed_input_is_refused_with_file_and_line() {
    let home = home();
    let cases: [(&str, &str, &str); 8] = [
        (
            "offlineimap",
            "[general]\naccounts = a\n[Account a]\nlocalrepository = l\n",
            "offlineimaprc:3: [Account a] remoterepository: is missing",
        ),
        (
            "offlineimap",
            "[general]\naccounts = a\nkey without value\n",
            "offlineimaprc:3: \"key without value\" is neither",
        ),
        (
            "offlineimap",
            "[general]\naccounts = b\n[Account a]\n",
            "offlineimaprc:2: the account \"b\" has no [Account b] section",
        ),
        (
            "offlineimap",
            "[general]\naccounts = a\n[Account a]\nlocalrepository = l\nremoterepository = r\n[Repository r]\ntype = IMAP\nremotehost = h\nremoteport = 99999\n[Repository l]\ntype = Maildir\nlocalfolders = ~/m\n",
            "offlineimaprc:9: [Repository r] remoteport: \"99999\" is not a port number",
        ),
        (
            "mbsync",
            "IMAPStore r\nHost h\nPass \"open\n",
            "mbsyncrc:3: a double quote is not closed",
        ),
        (
            "mbsync",
            "IMAPStore r\nHost h\n\nUser u\n",
            "mbsyncrc:4: User outside a section",
        ),
        (
            "mbsync",
            "MaildirStore l\nPath ~/m/\n\nChannel c\nFar :nowhere:\nNear :l:\n",
            "mbsyncrc:5: there is no IMAPStore or MaildirStore nowhere",
        ),
        (
            "mbsync",
            "IMAPStore r\nHost h\n\nMaildirStore l\n\nChannel c\nFar :r:\nNear :l:\nSync Sideways\n",
            "mbsyncrc:9: Sync: \"sideways\" is not a Sync operation",
        ),
    ];
    for (tool, text, message) in cases {
        let file = write(&home.path().join(format!("{tool}rc")), text);
        let out = run(home.path(), &["import", tool, &file.to_string_lossy()]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = stderr(&out);
        assert!(
            err.contains(message),
            "{text}\nexpected: {message}\n got: {err}"
        );
        assert!(stdout(&out).is_empty());
    }
    let out = run(home.path(), &["import", "mbsync", "/nonexistent/mbsyncrc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/mbsyncrc: cannot read"));
    // Without a file and without ~/.mbsyncrc: the default path is named.
    let out = run(home.path(), &["import", "mbsync"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(".mbsyncrc: cannot read"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_output_file_is_private_and_replaced_only_with_force() {
    let home = home();
    let rc = "IMAPStore r\nHost h.example.org\nUser u\nPass \"p\\\"w\"\n\nMaildirStore l\nPath ~/m/\n\n\
              Channel c\nFar :r:\nNear :l:\nCreate Both\nExpunge Both\n";
    let target = write(&home.path().join("out.toml"), "keep me\n");
    let mut child = idlewild(
        home.path(),
        &[
            "import",
            "mbsync",
            "-",
            "--output",
            &target.to_string_lossy(),
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(rc.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("exists; give --force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep me\n");

    let stdin_rc = write(&home.path().join("rc"), rc);
    let out = idlewild(
        home.path(),
        &[
            "import",
            "mbsync",
            "-",
            "-o",
            &target.to_string_lossy(),
            "--force",
        ],
    )
    .stdin(std::fs::File::open(&stdin_rc).expect("open"))
    .output()
    .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("<stdin>:4: account c: a password in the configuration file"),
        "{}",
        stderr(&out)
    );
    let doc: toml::Table = std::fs::read_to_string(&target)
        .expect("read")
        .parse()
        .expect("toml");
    assert_eq!(s(&doc, "accounts.c.remote.password"), "p\"w");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&target)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // --force without --output is a usage error.
    let out = run(home.path(), &["import", "mbsync", "rc", "--force"]);
    assert_eq!(out.status.code(), Some(2));
}
