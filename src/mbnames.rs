//! The mailbox list (OfflineIMAP's mbnames): one file naming every synced local folder of every
//! account, for mail clients that want their folders listed (mutt's `mailboxes`).
//!
//! The list is made from each account's state database — the folders that were synced — mapped
//! to local names by the account's rules, without the folders left out or missing locally. So
//! a one-shot sync of one account still writes the other accounts' folders, and nothing needs a
//! server. The file is only written when its content changes, through a temporary file renamed
//! over it, so a mail client never reads half a list.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::{Config, Mbnames};
use crate::model::FolderName;
use crate::state::{StateDb, StateError};
use crate::store::maildir::MaildirStore;

#[derive(Debug, thiserror::Error)]
pub enum MbnamesError {
    #[error("mailbox list {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mailbox list: {0}")]
    State(#[from] StateError),
}

/// One line item of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub account: String,
    /// The local name.
    pub folder: FolderName,
    /// The folder's Maildir directory.
    pub path: PathBuf,
}

pub use crate::config::unknown_placeholder;

/// `value` made safe inside a muttrc double-quoted string. The folder names come from the
/// server, so they are hostile input: in mutt's and neomutt's parser (`mutt_extract_token`) a
/// `"` ends the string, a backslash escapes the next character (`\n` becomes a newline), a
/// backtick runs a shell command and `$` expands a variable — even inside double quotes. Each
/// of those is preceded by a backslash, which makes it a literal character there.
pub fn muttrc_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '`' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The file's content: the header, the items joined by the separator, the footer. The values
/// are escaped for muttrc double quotes (the default item); a mailbox whose name holds a
/// control character is left out, since no quoting keeps a newline from ending the line.
pub fn render(config: &Mbnames, mailboxes: &[Mailbox]) -> String {
    let items: Vec<String> = mailboxes
        .iter()
        .filter(|m| {
            let path = m.path.to_string_lossy();
            let unsafe_name = [m.account.as_str(), m.folder.as_str(), &path]
                .iter()
                .any(|v| v.chars().any(char::is_control));
            if unsafe_name {
                tracing::warn!(
                    account = m.account,
                    "folder {:?} is left out of the mailbox list: its name holds a control character",
                    m.folder.as_str()
                );
            }
            !unsafe_name
        })
        .map(|m| {
            config
                .item
                .replace("{account}", &muttrc_escape(&m.account))
                .replace("{folder}", &muttrc_escape(m.folder.as_str()))
                .replace("{path}", &muttrc_escape(&m.path.to_string_lossy()))
        })
        .collect();
    format!(
        "{}{}{}",
        config.header,
        items.join(&config.separator),
        config.footer
    )
}

/// Every synced local folder of the accounts that take part, by account then folder name.
pub fn gather(config: &Config) -> Result<Vec<Mailbox>, MbnamesError> {
    let mut out = Vec::new();
    for account in config.accounts.iter().filter(|a| a.mbnames) {
        let state_file = crate::engine::account::state_path(config, account);
        if !state_file.exists() {
            continue;
        }
        // A mailbox list names Maildir folders; a second IMAP server has none.
        let crate::config::LocalConfig::Maildir(local) = &account.local else {
            continue;
        };
        let state = StateDb::open_read_only(&state_file)?;
        let maildir = MaildirStore::new(local);
        let mut folders: Vec<Mailbox> = state
            .folders()?
            .into_iter()
            .filter(|f| account.folders.selection(&f.name).is_included())
            .filter_map(|f| account.folders.local_name(&f.name).ok())
            .filter(|local| maildir.folder_exists(local))
            .filter_map(|local| {
                maildir.folder_path(&local).map(|path| Mailbox {
                    account: account.name.clone(),
                    folder: local,
                    path,
                })
            })
            .collect();
        folders.sort_by(|a, b| a.folder.cmp(&b.folder));
        out.extend(folders);
    }
    Ok(out)
}

/// Writes the mailbox list if it is configured and its content changed; `true` if written.
pub fn update(config: &Config) -> Result<bool, MbnamesError> {
    let Some(settings) = &config.mbnames else {
        return Ok(false);
    };
    // The daemon's accounts finish their syncs independently: one writer at a time, each
    // writing what all the state databases say at that moment.
    static WRITING: Mutex<()> = Mutex::new(());
    let _guard = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    let content = render(settings, &gather(config)?);
    if std::fs::read(&settings.path).is_ok_and(|old| old == content.as_bytes()) {
        return Ok(false);
    }
    write_atomically(&settings.path, content.as_bytes())?;
    tracing::info!(path = %settings.path.display(), "mailbox list written");
    Ok(true)
}

fn write_atomically(path: &Path, content: &[u8]) -> Result<(), MbnamesError> {
    let err = |source| MbnamesError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}.idlewild-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut f| {
            f.write_all(content)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Mbnames {
        Mbnames {
            path: PathBuf::from("/x"),
            header: "mailboxes ".into(),
            item: "\"+{account}/{folder}\"".into(),
            separator: " ".into(),
            footer: "\n".into(),
        }
    }

    fn mailbox(account: &str, folder: &str) -> Mailbox {
        Mailbox {
            account: account.into(),
            folder: FolderName::new(folder).unwrap(),
            path: PathBuf::from(format!("/mail/{account}/{folder}")),
        }
    }

    #[test]
    fn items_are_joined_between_header_and_footer() {
        let list = [
            mailbox("home", "INBOX"),
            mailbox("home", "Lists/rust"),
            mailbox("work", "Entwürfe"),
        ];
        assert_eq!(
            render(&settings(), &list),
            "mailboxes \"+home/INBOX\" \"+home/Lists/rust\" \"+work/Entwürfe\"\n"
        );
        let lines = Mbnames {
            header: String::new(),
            item: "{path}".into(),
            separator: "\n".into(),
            ..settings()
        };
        assert_eq!(
            render(&lines, &list[..2]),
            "/mail/home/INBOX\n/mail/home/Lists/rust\n"
        );
        assert_eq!(render(&settings(), &[]), "mailboxes \n");
    }

    #[test]
    fn hostile_folder_names_cannot_leave_the_muttrc_double_quotes() {
        // Inside muttrc double quotes a backslash escapes the next character, a backtick runs
        // a command and `$` expands a variable; `"` would end the string early.
        let list = [
            mailbox("home", "q\"uote"),
            mailbox("home", "`touch pwned`"),
            mailbox("home", "$(touch pwned)"),
            mailbox("home", "${HOME}"),
            mailbox("home", "a;b"),
            mailbox("home", "back\\slash"),
            mailbox("home", "with space"),
        ];
        assert_eq!(
            render(&settings(), &list),
            concat!(
                r#"mailboxes "+home/q\"uote" "+home/\`touch pwned\`" "+home/\$(touch pwned)" "#,
                r#""+home/\${HOME}" "+home/a;b" "+home/back\\slash" "+home/with space""#,
                "\n"
            )
        );
        // {path} and {account} are escaped the same way.
        let paths = Mbnames {
            item: "\"{path}\"".into(),
            ..settings()
        };
        let mut odd = mailbox("x`id`", "INBOX");
        odd.path = PathBuf::from("/mail/\"$x");
        assert_eq!(render(&paths, &[odd]), "mailboxes \"/mail/\\\"\\$x\"\n");
    }

    #[test]
    fn folders_with_control_characters_are_left_out() {
        let list = [
            mailbox("home", "INBOX"),
            mailbox("home", "a\nmailboxes `touch pwned`"),
            mailbox("home", "cr\r"),
            mailbox("home", "esc\u{1b}[31m"),
            mailbox("home", "del\u{7f}"),
            mailbox("home", "Lists/rust"),
        ];
        assert_eq!(
            render(&settings(), &list),
            "mailboxes \"+home/INBOX\" \"+home/Lists/rust\"\n"
        );
    }

    #[test]
    fn placeholders_are_checked() {
        assert_eq!(unknown_placeholder("\"+{account}/{folder}\" {path}"), None);
        assert_eq!(
            unknown_placeholder("{acount}/{folder}"),
            Some("acount".into())
        );
        // Braces that are no placeholder are text.
        assert_eq!(unknown_placeholder("{ } {a-b} {"), None);
    }
}
