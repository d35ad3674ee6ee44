//! `idlewild import`: reads an OfflineIMAP or mbsync configuration and writes the idlewild
//! configuration that does the same, with a warning (on standard error and as a comment next to
//! the key it concerns) wherever idlewild behaves differently, and a TODO comment holding the
//! original text of whatever could not be translated.
//!
//! The translation is pure: it takes the file's text and a [`Context`] (home directory,
//! environment) and returns a [`Converted`] value, which `render` writes as TOML. Reading the
//! input and writing the output are left to the command.

mod folders;
mod ini;
mod mbsync;
mod offlineimap;
mod python;
mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use render::render;

/// The program whose configuration is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    OfflineImap,
    Mbsync,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::OfflineImap => "OfflineIMAP",
            Tool::Mbsync => "mbsync",
        }
    }

    /// The file the program itself reads when none is named.
    pub fn default_path(self, home: &Path, env: &BTreeMap<String, String>) -> PathBuf {
        let config_home = env
            .get("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(".config"));
        let (xdg, classic) = match self {
            Tool::OfflineImap => (config_home.join("offlineimap/config"), ".offlineimaprc"),
            Tool::Mbsync => (config_home.join("isyncrc"), ".mbsyncrc"),
        };
        // Both programs prefer the XDG location when it exists.
        if xdg.is_file() {
            xdg
        } else {
            home.join(classic)
        }
    }
}

/// What the translation may know about the machine: no file is read through it.
#[derive(Debug, Clone)]
pub struct Context {
    /// The input's name in messages: its path, or `<stdin>`.
    pub source: String,
    pub home: PathBuf,
    /// The environment, for `$VAR` in OfflineIMAP paths.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Whole { path: String, message: String },
    #[error("{path} exists; give --force to replace it")]
    Exists { path: String },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Reads the configuration to translate: `file`, standard input for `-`, or the file the tool
/// itself reads. Returns its name for messages and its text.
pub fn read_input(
    tool: Tool,
    file: Option<&Path>,
    home: &Path,
    env: &BTreeMap<String, String>,
) -> Result<(String, String), ImportError> {
    if file == Some(Path::new("-")) {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|source| {
            ImportError::Read {
                path: "<stdin>".into(),
                source,
            }
        })?;
        return Ok(("<stdin>".into(), text));
    }
    let path = file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| tool.default_path(home, env));
    let name = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| ImportError::Read {
        path: name.clone(),
        source,
    })?;
    Ok((name, text))
}

/// Writes the translated configuration to `path`, readable by its owner only (it may hold a
/// password). An existing file is replaced only with `force`, and then atomically.
pub fn write_output(path: &Path, text: &str, force: bool) -> Result<(), ImportError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.display().to_string();
    let write_err = |source| ImportError::Write {
        path: name.clone(),
        source,
    };
    let write = |target: &Path, create_new: bool| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).mode(0o600);
        if create_new {
            options.create_new(true);
        } else {
            options.create(true).truncate(true);
        }
        let mut f = options.open(target)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    };
    if !force {
        return write(path, true).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                ImportError::Exists { path: name.clone() }
            } else {
                write_err(e)
            }
        });
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.toml".into());
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = write(&tmp, false).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

/// Translates a configuration file's text.
pub fn convert(tool: Tool, text: &str, ctx: &Context) -> Result<Converted, ImportError> {
    let mut converted = match tool {
        Tool::OfflineImap => offlineimap::convert(text, ctx)?,
        Tool::Mbsync => mbsync::convert(text, ctx)?,
    };
    check_local_paths_apart(&mut converted, ctx);
    Ok(converted)
}

// ---- the translated configuration ---------------------------------------------------------------

/// An idlewild configuration, with the notes of the translation.
#[derive(Debug, Clone, Default)]
pub struct Converted {
    pub tool: Option<Tool>,
    pub source: String,
    pub mbnames: Option<Mbnames>,
    pub accounts: Vec<Account>,
    /// Notes about the whole file.
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mbnames {
    pub path: Option<String>,
    pub header: Option<String>,
    pub item: Option<String>,
    pub separator: Option<String>,
    pub footer: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sides {
    Both,
    Remote,
    Local,
    None,
}

impl Sides {
    pub fn name(self) -> &'static str {
        match self {
            Sides::Both => "both",
            Sides::Remote => "remote",
            Sides::Local => "local",
            Sides::None => "none",
        }
    }

    pub fn of(remote: bool, local: bool) -> Sides {
        match (remote, local) {
            (true, true) => Sides::Both,
            (true, false) => Sides::Remote,
            (false, true) => Sides::Local,
            (false, false) => Sides::None,
        }
    }

    pub fn remote(self) -> bool {
        matches!(self, Sides::Both | Sides::Remote)
    }

    pub fn local(self) -> bool {
        matches!(self, Sides::Both | Sides::Local)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Implicit,
    Starttls,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Nothing in the file: the system keyring.
    Keyring,
    Command(Vec<String>),
    Plain(String),
    OAuth2(OAuth2),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OAuth2 {
    pub provider: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub token_url: Option<String>,
    pub token_command: Option<Vec<String>>,
    pub mechanism: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imap {
    pub host: String,
    pub port: Option<u16>,
    pub tls: Tls,
    pub user: String,
    pub auth: Auth,
    pub ca_file: Option<String>,
    pub cert_fingerprint: Option<String>,
    pub timeout: Option<u64>,
    pub readonly: bool,
}

impl Imap {
    pub fn new(host: String) -> Imap {
        Imap {
            host,
            port: None,
            tls: Tls::Implicit,
            user: String::new(),
            auth: Auth::Keyring,
            ca_file: None,
            cert_fingerprint: None,
            timeout: None,
            readonly: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Nested,
    MaildirPlusPlus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    Maildir {
        path: String,
        layout: Layout,
        readonly: bool,
    },
    Imap(Box<Imap>),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folders {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub rename: Vec<folders::Rename>,
    pub remote_prefix_strip: Option<String>,
    pub preset: Option<String>,
}

impl Folders {
    pub fn is_empty(&self) -> bool {
        *self == Folders::default()
    }
}

/// `max_size`: bytes, or a size with a K/M/G suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaxSize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    /// Where it comes from, for the comment above it.
    pub origin: String,
    pub remote: Imap,
    pub local: Local,
    pub create: Option<Sides>,
    pub remove: Option<Sides>,
    pub max_age: Option<u32>,
    pub max_size: Option<MaxSize>,
    pub sync_deletes: Option<bool>,
    pub idle: Option<Vec<String>>,
    pub interval: Option<u64>,
    pub presync: Option<Vec<String>>,
    pub postsync: Option<Vec<String>>,
    pub folders: Folders,
    pub mbnames: Option<bool>,
    pub notes: Vec<Note>,
}

impl Account {
    pub fn new(name: String, origin: String, remote: Imap, local: Local) -> Account {
        Account {
            name,
            origin,
            remote,
            local,
            create: None,
            remove: None,
            max_age: None,
            max_size: None,
            sync_deletes: None,
            idle: None,
            interval: None,
            presync: None,
            postsync: None,
            folders: Folders::default(),
            mbnames: None,
            notes: Vec::new(),
        }
    }

    fn note(&mut self, kind: NoteKind, table: Table, key: Option<&'static str>, text: String) {
        self.notes.push(Note {
            kind,
            table,
            key,
            text,
            line: None,
            original: None,
        });
    }

    pub fn info(&mut self, table: Table, key: Option<&'static str>, text: impl Into<String>) {
        self.note(NoteKind::Info, table, key, text.into());
    }

    pub fn warn(&mut self, table: Table, key: Option<&'static str>, text: impl Into<String>) {
        self.note(NoteKind::Warning, table, key, text.into());
    }

    /// Something not translated: the original line goes into the comment.
    pub fn todo(&mut self, table: Table, text: impl Into<String>, line: usize, original: &str) {
        self.notes.push(Note {
            kind: NoteKind::Todo,
            table,
            key: None,
            text: text.into(),
            line: Some(line),
            original: Some(original.to_owned()),
        });
    }

    /// Sets the line of the last note.
    pub fn at(&mut self, line: usize) {
        if let Some(n) = self.notes.last_mut() {
            n.line = Some(line);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// A comment only.
    Info,
    /// idlewild behaves differently: a comment and a line on standard error.
    Warning,
    /// Not translated: a comment with the original, and a line on standard error.
    Todo,
}

/// The table of the output a note is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Account,
    Remote,
    Local,
    Folders,
    Hooks,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub kind: NoteKind,
    pub table: Table,
    /// The key the note stands above, when it concerns one.
    pub key: Option<&'static str>,
    pub text: String,
    /// The line of the source it comes from.
    pub line: Option<usize>,
    /// The source text, for TODOs.
    pub original: Option<String>,
}

impl Converted {
    /// The warnings and TODOs, one line each, as the command prints them on standard error.
    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        let line = |n: &Note, account: Option<&str>| {
            let at = match n.line {
                Some(l) => format!("{}:{l}: ", self.source),
                None => format!("{}: ", self.source),
            };
            let who = account
                .map(|a| format!("account {a}: "))
                .unwrap_or_default();
            let what = match n.kind {
                NoteKind::Todo => "not translated: ",
                NoteKind::Info | NoteKind::Warning => "",
            };
            format!("{at}{who}{what}{}", n.text)
        };
        for n in self.notes.iter().filter(|n| n.kind != NoteKind::Info) {
            out.push(line(n, None));
        }
        for a in &self.accounts {
            for n in a.notes.iter().filter(|n| n.kind != NoteKind::Info) {
                out.push(line(n, Some(&a.name)));
            }
        }
        out
    }

    pub fn note(&mut self, kind: NoteKind, line: Option<usize>, text: impl Into<String>) {
        self.notes.push(Note {
            kind,
            table: Table::Account,
            key: None,
            text: text.into(),
            line,
            original: None,
        });
    }
}

// ---- helpers shared by both translations ---------------------------------------------------------

/// CA bundles of the system, which idlewild trusts anyway.
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/cert.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-bundle.crt",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/ca-bundle.pem",
    "/usr/local/etc/openssl/cert.pem",
    "/usr/local/share/certs/ca-root-nss.crt",
];

/// Whether a key of the other program's file names a secret, whose value is never repeated in
/// a message or comment.
pub fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "token", "secret", "key"]
        .iter()
        .any(|word| key.contains(word))
}

/// An account name idlewild accepts (letters, digits, `-`, `_`, `.`; not starting with `.`),
/// made from `raw` and distinct from `taken`.
pub fn account_name(raw: &str, taken: &[String]) -> String {
    let mut name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    let name = name.trim_matches(['-', '.']).to_owned();
    let name = if name.is_empty() {
        "account".to_owned()
    } else {
        name
    };
    let mut unique = name.clone();
    let mut n = 2;
    while taken.contains(&unique) {
        unique = format!("{name}-{n}");
        n += 1;
    }
    unique
}

/// Expands `~` and `~/...` (and, with `vars`, `$NAME` and `${NAME}`) as the tools do.
pub fn expand_path(raw: &str, ctx: &Context, vars: bool) -> String {
    let home = ctx.home.to_string_lossy();
    let tilde = if raw == "~" {
        home.to_string()
    } else if let Some(rest) = raw.strip_prefix("~/") {
        format!("{}/{rest}", home.trim_end_matches('/'))
    } else {
        raw.to_owned()
    };
    if !vars || !tilde.contains('$') {
        return tilde;
    }
    let mut out = String::new();
    let mut rest = tilde.as_str();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, next) = if let Some(braced) = after.strip_prefix('{') {
            match braced.split_once('}') {
                Some((name, next)) => (name, next),
                None => ("", after),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        // Python's expandvars leaves unknown variables as they are.
        match ctx.env.get(name).filter(|_| !name.is_empty()) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[i..rest.len() - next.len()]),
        }
        rest = next;
    }
    out.push_str(rest);
    out
}

/// Writes a path under the home directory as `~/...`, as a person would.
pub fn tilde(path: &str, ctx: &Context) -> String {
    let home = ctx.home.to_string_lossy();
    let home = home.trim_end_matches('/');
    if home.is_empty() {
        return path.to_owned();
    }
    match path.strip_prefix(home) {
        Some("") => "~".to_owned(),
        Some(rest) if rest.starts_with('/') => format!("~{rest}"),
        _ => path.to_owned(),
    }
}

/// The directory idlewild syncs into, next to the one the other tool used.
///
/// idlewild pairs the messages of a Maildir it has never synced with the server's by their exact
/// content. Copies written by the other tool can differ from the server's (mbsync adds an
/// `X-TUID` header to every message it copies, OfflineIMAP an `X-OfflineIMAP` header on servers
/// without UIDPLUS), and each such message would be copied again in both directions; so the
/// translated account starts in a new directory and the old one is left alone.
pub fn new_maildir(old: &str, account: &str) -> String {
    let trimmed = old.trim_end_matches('/');
    if trimmed.is_empty() || trimmed == "~" {
        return format!("~/Mail/{account}-idlewild");
    }
    format!("{trimmed}-idlewild")
}

/// Adds the note every account with a new Maildir gets.
fn note_new_maildir(account: &mut Account, tool: Tool, old: &str) {
    let why = match tool {
        Tool::Mbsync => "mbsync added an X-TUID header to every message it copied",
        Tool::OfflineImap => {
            "OfflineIMAP's copies can differ from the server's (an X-OfflineIMAP header on servers without UIDPLUS)"
        }
    };
    account.warn(
        Table::Local,
        Some("path"),
        format!(
            "idlewild syncs into a new directory, not into {old}: it pairs the messages it finds with the server's by their exact content, and {why}; each such message would be copied again both ways. Once the first sync is complete, point your mail client here, stop {} and remove {old} (mail that is only there, never synced, stays there: sync it with {} one last time first)",
            tool.name(),
            tool.name()
        ),
    );
}

/// Two accounts in one directory, or one inside another, are refused by idlewild; say so here
/// rather than leave it to `check-config`.
fn check_local_paths_apart(converted: &mut Converted, ctx: &Context) {
    let paths: Vec<(String, String)> = converted
        .accounts
        .iter()
        .filter_map(|a| match &a.local {
            Local::Maildir { path, .. } => Some((
                a.name.clone(),
                expand_path(path, ctx, false)
                    .trim_end_matches('/')
                    .to_owned()
                    + "/",
            )),
            Local::Imap(_) => None,
        })
        .collect();
    for (i, (a, pa)) in paths.iter().enumerate() {
        for (b, pb) in paths.iter().skip(i + 1) {
            if pa.starts_with(pb.as_str()) || pb.starts_with(pa.as_str()) {
                converted.note(
                    NoteKind::Warning,
                    None,
                    format!(
                        "accounts {a} and {b} would share or nest their local directories, which idlewild refuses: give each a directory of its own (local.path)"
                    ),
                );
            }
        }
    }
}

/// A shell command line as an argument vector: split into words when it holds nothing a shell
/// would interpret beyond quoting, else run by `sh -c`. The flag says which.
pub fn command_argv(line: &str) -> (Vec<String>, bool) {
    match split_words(line) {
        Some(words) if !words.is_empty() => (words, false),
        _ => (
            vec!["sh".to_owned(), "-c".to_owned(), line.to_owned()],
            true,
        ),
    }
}

/// POSIX shell word splitting with quotes and backslashes; `None` when the line uses anything
/// else a shell would interpret (pipes, redirections, variables, globs, `~`, ...).
fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\') => w.push(c),
                            // `$`, `` ` `` and newlines after a backslash mean shell work.
                            '$' | '`' | '\n' => return None,
                            c => {
                                w.push('\\');
                                w.push(c);
                            }
                        },
                        '$' | '`' => return None,
                        c => w.push(c),
                    }
                }
            }
            '\\' => {
                let next = chars.next()?;
                if next == '\n' {
                    return None;
                }
                word.get_or_insert_with(String::new).push(next);
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' | '[' | '#' | '~'
            | '\n' | '{' | '}' | '=' | '!' => {
                // `NAME=` in the first word is an assignment; `#`, `~` and `!` only matter at
                // the start of a word.
                let assignment = c == '='
                    && words.is_empty()
                    && word.as_deref().is_some_and(|w| {
                        w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && !w.starts_with(|c: char| c.is_ascii_digit())
                    });
                let harmless = (c == '=' && word.is_some() && !assignment)
                    || (c == '#' && word.is_some())
                    || (c == '~' && word.is_some())
                    || (c == '!' && word.is_some());
                if !harmless {
                    return None;
                }
                word.get_or_insert_with(String::new).push(c);
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = word {
        words.push(w);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            source: "rc".into(),
            home: PathBuf::from("/home/me"),
            env: [("MAIL".to_string(), "/var/mail/me".to_string())]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn account_names_are_made_valid_and_distinct() {
        assert_eq!(account_name("Personal", &[]), "Personal");
        assert_eq!(account_name("my mail (work)", &[]), "my-mail-work");
        assert_eq!(account_name(".hidden", &[]), "hidden");
        assert_eq!(account_name("!!!", &[]), "account");
        assert_eq!(account_name("a", &["a".into(), "a-2".into()]), "a-3");
    }

    #[test]
    fn paths_expand_as_the_tools_do() {
        let c = ctx();
        assert_eq!(expand_path("~/Mail", &c, false), "/home/me/Mail");
        assert_eq!(expand_path("$MAIL/x", &c, true), "/var/mail/me/x");
        assert_eq!(expand_path("${MAIL}x", &c, true), "/var/mail/mex");
        assert_eq!(expand_path("$NOPE/x", &c, true), "$NOPE/x");
        assert_eq!(expand_path("$MAIL/x", &c, false), "$MAIL/x");
        assert_eq!(tilde("/home/me/Mail", &c), "~/Mail");
        assert_eq!(tilde("/home/meow", &c), "/home/meow");
        assert_eq!(new_maildir("~/Mail/work/", "w"), "~/Mail/work-idlewild");
        assert_eq!(new_maildir("~/", "w"), "~/Mail/w-idlewild");
    }

    #[test]
    fn commands_without_shell_syntax_become_argument_vectors() {
        let argv = |l: &str| command_argv(l);
        assert_eq!(
            argv("pass show mail/work"),
            (
                vec!["pass".into(), "show".into(), "mail/work".into()],
                false
            )
        );
        assert_eq!(
            argv(r#"secret-tool lookup service "my imap" user 'a b'"#),
            (
                vec![
                    "secret-tool".into(),
                    "lookup".into(),
                    "service".into(),
                    "my imap".into(),
                    "user".into(),
                    "a b".into()
                ],
                false
            )
        );
        assert_eq!(
            argv("key=value cmd").0,
            vec!["sh".to_string(), "-c".into(), "key=value cmd".into()]
        );
        for shell in [
            "gpg -dq ~/.pw.gpg",
            "pass show x | head -1",
            "cat $HOME/pw",
            "echo `x`",
            "cat pw*",
            "a && b",
            "\"unclosed",
        ] {
            let (v, sh) = argv(shell);
            assert!(sh, "{shell}");
            assert_eq!(v, ["sh", "-c", shell]);
        }
        assert_eq!(argv("head -n1 a=b").0, vec!["head", "-n1", "a=b"]);
    }

    /// Fuzzing (issue 16): old configurations given to `idlewild import`.
    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;
        use std::path::PathBuf;

        fn ctx() -> Context {
            Context {
                source: "rc".into(),
                home: PathBuf::from("/home/me"),
                env: Default::default(),
            }
        }

        proptest! {
            #[test]
            fn any_mbsyncrc_converts_or_is_refused(
                text in "\\PC{0,300}|((IMAPAccount|IMAPStore|MaildirStore|Channel|Host|User|Pass|PassCmd|Path|Inbox|Far|Near|Patterns|SSLType|Sync|Create|Expunge|SubFolders) [\\PC]{0,20}\n){0,20}",
            ) {
                let _ = convert(Tool::Mbsync, &text, &ctx());
            }

            #[test]
            fn any_offlineimaprc_converts_or_is_refused(
                text in "\\PC{0,300}|((\\[(general|Account [a-z]{1,3}|Repository [a-z]{1,3})\\]|(accounts|localrepository|remoterepository|type|remotehost|remoteuser|remotepass|localfolders|folderfilter|nametrans|remotepasseval) ?[=:] ?[\\PC]{0,30})\n){0,20}",
            ) {
                let _ = convert(Tool::OfflineImap, &text, &ctx());
            }

            #[test]
            fn any_python_expression_in_an_offlineimaprc_is_read_or_refused(
                expr in "[\\[\\](){}'\",:+%. a-z0-9\\\\]{0,120}",
            ) {
                let text = format!(
                    "[general]\naccounts = a\n[Account a]\nlocalrepository = l\nremoterepository = r\n[Repository l]\ntype = Maildir\nlocalfolders = ~/Mail\n[Repository r]\ntype = IMAP\nremotehost = h\nremoteuser = u\nfolderfilter = {expr}\nnametrans = {expr}\n"
                );
                let _ = convert(Tool::OfflineImap, &text, &ctx());
            }
        }
    }
}
