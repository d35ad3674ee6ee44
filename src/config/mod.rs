//! The configuration file: its TOML schema, the checks made when it is loaded, and the resolved
//! values the rest of the program uses.
//!
//! Every error names the file, and where it can the line, column and key, and what was expected.

pub mod auth;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use crate::model::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS, port 993).
    Implicit,
    /// Plain connection upgraded with STARTTLS (port 143).
    Starttls,
    /// No encryption at all; only accepted for loopback hosts.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MaildirLayout {
    /// `INBOX` is `<path>/INBOX`, `Archive/2019` is `<path>/Archive/2019`.
    #[default]
    Nested,
    /// Maildir++: `INBOX` is `<path>` itself, `Archive/2019` is `<path>/.Archive.2019`.
    #[serde(rename = "maildir++")]
    MaildirPlusPlus,
}

#[derive(Debug, Clone)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub user: String,
    /// How the account logs in, with the secret once fetched (shared by clones).
    pub credentials: crate::credentials::Credentials,
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the server certificate (DER); when set, that exact certificate is accepted
    /// and no other.
    pub cert_fingerprint: Option<[u8; 32]>,
    /// How long to wait for any answer from the server.
    pub timeout: Duration,
    /// COMPRESS=DEFLATE where offered: `None` decides by the address (on, except for loopback
    /// and private networks, where deflating costs more time than it saves).
    pub compress: Option<bool>,
    /// Which keywords are synced and, on a local side, their local names.
    pub keywords: crate::model::KeywordRule,
    /// Gmail's extensions (message ids across folders): `None` uses them when the server
    /// offers X-GM-EXT-1.
    pub gmail: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct MaildirConfig {
    pub path: PathBuf,
    pub layout: MaildirLayout,
    /// Which keywords are synced, and their local names.
    pub keywords: crate::model::KeywordRule,
}

/// The local side of an account: a Maildir tree, or (`type = "imap"`) a second IMAP server
/// synced with the same engine.
#[derive(Debug, Clone)]
pub enum LocalConfig {
    Maildir(MaildirConfig),
    Imap(ImapConfig),
}

impl LocalConfig {
    /// The Maildir, when the local side is one.
    pub fn maildir(&self) -> Option<&MaildirConfig> {
        match self {
            LocalConfig::Maildir(m) => Some(m),
            LocalConfig::Imap(_) => None,
        }
    }

    /// Where the local side is, for messages (never with a secret).
    pub fn describe(&self) -> String {
        match self {
            LocalConfig::Maildir(m) => format!("maildir {}", m.path.display()),
            LocalConfig::Imap(i) => format!("imap://{}@{}:{}", i.user, i.host, i.port),
        }
    }
}

pub use crate::plan::MassDeleteGuard;

/// How the daemon watches an account.
#[derive(Debug, Clone)]
pub struct Watch {
    /// Folders watched with IMAP IDLE, as glob patterns over folder names.
    pub idle: Vec<String>,
    /// Matches `idle`; built once at load.
    pub idle_set: globset::GlobSet,
    /// How often every folder is synced anyway (folders not watched, changes missed while a
    /// connection was down).
    pub interval: Duration,
    /// Connections the daemon may hold to the server at once: one for syncing, the rest for
    /// watching folders.
    pub max_connections: u32,
}

impl Default for Watch {
    fn default() -> Self {
        let idle = vec!["INBOX".to_owned()];
        Self {
            idle_set: glob_set(&idle).unwrap_or_else(|_| globset::GlobSet::empty()),
            idle,
            interval: Duration::from_secs(15 * 60),
            max_connections: 5,
        }
    }
}

fn glob_set(patterns: &[String]) -> Result<globset::GlobSet, globset::Error> {
    let mut builder = globset::GlobSetBuilder::new();
    for p in patterns {
        builder.add(globset::Glob::new(p)?);
    }
    builder.build()
}

#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub remote: ImapConfig,
    pub local: LocalConfig,
    /// Which folders are synced and their local names (`[accounts.NAME.folders]`).
    pub folders: crate::folders::FolderRules,
    /// Where folders are created and removed (`create`, `remove`).
    pub folder_policy: crate::plan::FolderPolicy,
    /// Whether the account's folders are in the mailbox list (`mbnames`).
    pub mbnames: bool,
    pub mass_delete: MassDeleteGuard,
    /// `remote.readonly`, `local.readonly`, `sync_deletes`.
    pub policy: crate::plan::Policy,
    /// `max_age`, `max_size`.
    pub limits: crate::plan::Limits,
    pub watch: Watch,
    pub hooks: crate::hooks::HooksConfig,
    /// A digest of the account's table as written, so a reload can tell whether it changed
    /// (a digest, not the text, which holds the password).
    pub source: String,
}

/// The mailbox list file written for mail clients (`[general.mbnames]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mbnames {
    pub path: PathBuf,
    pub header: String,
    /// With `{account}`, `{folder}` and `{path}` replaced for each folder.
    pub item: String,
    pub separator: String,
    pub footer: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub state_dir: PathBuf,
    /// `None` when not configured or not enabled.
    pub mbnames: Option<Mbnames>,
    pub accounts: Vec<Account>,
    /// Things worth telling the user that do not stop the program (a readable password file).
    pub warnings: Vec<String>,
}

impl Config {
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{path}: cannot read the configuration: {source}\n  (create it, or name another file with --config; see idlewild.toml(5))"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {key}{message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        /// `key: ` or empty.
        key: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Whole { path: PathBuf, message: String },
}

/// The file read when no `--config` is given: `$XDG_CONFIG_HOME/idlewild/config.toml`.
pub fn default_path() -> PathBuf {
    xdg_dir("XDG_CONFIG_HOME", ".config").join("idlewild/config.toml")
}

fn default_state_dir() -> PathBuf {
    xdg_dir("XDG_STATE_HOME", ".local/state").join("idlewild")
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn xdg_dir(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        _ => home().join(fallback),
    }
}

/// Expands a leading `~/` to the home directory.
fn expand_tilde(raw: &str) -> PathBuf {
    if raw == "~" {
        home()
    } else if let Some(rest) = raw.strip_prefix("~/") {
        home().join(rest)
    } else {
        PathBuf::from(raw)
    }
}

// ---- the file's schema -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    general: FileGeneral,
    #[serde(default)]
    accounts: BTreeMap<String, FileAccount>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileGeneral {
    state_dir: Option<Spanned<String>>,
    mbnames: Option<FileMbnames>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMbnames {
    path: Spanned<String>,
    header: Option<String>,
    item: Option<Spanned<String>>,
    separator: Option<String>,
    footer: Option<String>,
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileFolders {
    include: Option<Vec<Spanned<String>>>,
    exclude: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    rename: Vec<FileRenameRule>,
    remote_prefix_strip: Option<Spanned<String>>,
    preset: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRenameRule {
    remote: Spanned<String>,
    local: Spanned<String>,
    local_match: Option<Spanned<String>>,
    remote_replace: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAccount {
    remote: FileImap,
    local: FileLocal,
    max_age: Option<Spanned<i64>>,
    max_size: Option<Spanned<toml::Value>>,
    sync_deletes: Option<bool>,
    mass_delete_percent: Option<Spanned<u8>>,
    mass_delete_min_messages: Option<u32>,
    idle: Option<Spanned<Vec<String>>>,
    interval: Option<Spanned<u64>>,
    max_connections: Option<Spanned<u32>>,
    #[serde(default)]
    hooks: crate::hooks::HooksConfig,
    create: Option<crate::plan::Sides>,
    remove: Option<crate::plan::Sides>,
    mbnames: Option<bool>,
    keywords: Option<Spanned<toml::Value>>,
    keyword_rename: Option<BTreeMap<String, Spanned<String>>>,
    gmail: Option<bool>,
    #[serde(default)]
    folders: FileFolders,
}

// The `type` keys are plain strings checked by hand: serde's internally tagged enums buffer their
// content and lose the positions that errors need.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileImap {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    host: Spanned<String>,
    port: Option<u16>,
    #[serde(default = "default_tls")]
    tls: Spanned<TlsMode>,
    user: String,
    password: Option<Spanned<auth::FilePassword>>,
    oauth2: Option<Spanned<auth::FileOAuth2>>,
    ca_file: Option<String>,
    cert_fingerprint: Option<Spanned<String>>,
    timeout: Option<Spanned<u64>>,
    compress: Option<bool>,
    readonly: Option<bool>,
}

fn default_tls() -> Spanned<TlsMode> {
    Spanned::new(0..0, TlsMode::Implicit)
}

/// The local table: the Maildir keys with `type = "maildir"`, the remote table's keys with
/// `type = "imap"`; which ones are allowed is checked by hand, to name the key that is wrong.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLocal {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    path: Option<Spanned<String>>,
    layout: Option<Spanned<MaildirLayout>>,
    host: Option<Spanned<String>>,
    port: Option<Spanned<u16>>,
    tls: Option<Spanned<TlsMode>>,
    user: Option<Spanned<String>>,
    password: Option<Spanned<auth::FilePassword>>,
    oauth2: Option<Spanned<auth::FileOAuth2>>,
    ca_file: Option<Spanned<String>>,
    cert_fingerprint: Option<Spanned<String>>,
    timeout: Option<Spanned<u64>>,
    compress: Option<Spanned<bool>>,
    readonly: Option<bool>,
}

/// The keys of one IMAP side, from the remote table or an IMAP local table.
struct ImapKeys<'a> {
    host: &'a Spanned<String>,
    port: Option<u16>,
    tls: Spanned<TlsMode>,
    user: String,
    password: Option<&'a Spanned<auth::FilePassword>>,
    oauth2: Option<&'a Spanned<auth::FileOAuth2>>,
    ca_file: Option<&'a str>,
    cert_fingerprint: Option<&'a Spanned<String>>,
    timeout: Option<&'a Spanned<u64>>,
    compress: Option<bool>,
}

/// Every key the file may hold, as `section.key` with `*` for an account name; kept next to the
/// schema so the documentation test can check the manual names them all.
pub const KEYS: &[&str] = &[
    "general.state_dir",
    "general.mbnames.path",
    "general.mbnames.header",
    "general.mbnames.item",
    "general.mbnames.separator",
    "general.mbnames.footer",
    "general.mbnames.enabled",
    "accounts.*.max_age",
    "accounts.*.max_size",
    "accounts.*.sync_deletes",
    "accounts.*.mass_delete_percent",
    "accounts.*.mass_delete_min_messages",
    "accounts.*.idle",
    "accounts.*.interval",
    "accounts.*.max_connections",
    "accounts.*.create",
    "accounts.*.remove",
    "accounts.*.mbnames",
    "accounts.*.keywords",
    "accounts.*.keyword_rename",
    "accounts.*.gmail",
    "accounts.*.folders.include",
    "accounts.*.folders.exclude",
    "accounts.*.folders.rename",
    "accounts.*.folders.remote_prefix_strip",
    "accounts.*.folders.preset",
    "accounts.*.folders.rename.remote",
    "accounts.*.folders.rename.local",
    "accounts.*.folders.rename.local_match",
    "accounts.*.folders.rename.remote_replace",
    "accounts.*.hooks.presync",
    "accounts.*.hooks.postsync",
    "accounts.*.hooks.new_mail",
    "accounts.*.remote.type",
    "accounts.*.remote.host",
    "accounts.*.remote.port",
    "accounts.*.remote.tls",
    "accounts.*.remote.user",
    "accounts.*.remote.password",
    "accounts.*.remote.password.keyring",
    "accounts.*.remote.password.command",
    "accounts.*.remote.password.timeout",
    "accounts.*.remote.oauth2.provider",
    "accounts.*.remote.oauth2.mechanism",
    "accounts.*.remote.oauth2.token_command",
    "accounts.*.remote.oauth2.token_url",
    "accounts.*.remote.oauth2.authorize_url",
    "accounts.*.remote.oauth2.client_id",
    "accounts.*.remote.oauth2.client_secret",
    "accounts.*.remote.oauth2.scope",
    "accounts.*.remote.oauth2.timeout",
    "accounts.*.remote.ca_file",
    "accounts.*.remote.cert_fingerprint",
    "accounts.*.remote.timeout",
    "accounts.*.remote.compress",
    "accounts.*.local.compress",
    "accounts.*.remote.readonly",
    "accounts.*.local.type",
    "accounts.*.local.path",
    "accounts.*.local.layout",
    "accounts.*.local.readonly",
    "accounts.*.local.host",
    "accounts.*.local.port",
    "accounts.*.local.tls",
    "accounts.*.local.user",
    "accounts.*.local.password",
    "accounts.*.local.oauth2",
    "accounts.*.local.ca_file",
    "accounts.*.local.cert_fingerprint",
    "accounts.*.local.timeout",
];

// ---- loading -----------------------------------------------------------------------------------

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut config = parse(path, &text)?;
    let plain = |a: &Account| {
        matches!(
            a.remote.credentials.auth(),
            crate::credentials::Auth::Password(crate::credentials::PasswordSource::Plain(_))
        )
    };
    if config.accounts.iter().any(plain)
        && let Some(warning) = readable_by_others(path)
    {
        config.warnings.push(warning);
    }
    Ok(config)
}

fn readable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} holds a password and can be read by other users (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )
    })
}

/// Parses and checks a configuration file's text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let at = |span: Range<usize>, key: &str, message: String| {
        let (line, column) = line_column(text, span.start);
        ConfigError::Invalid {
            path: path.to_owned(),
            line,
            column,
            key: if key.is_empty() {
                String::new()
            } else {
                format!("{key}: ")
            },
            message,
        }
    };
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|e| at(e.span().unwrap_or(0..0), "", e.message().trim().to_owned()))?;
    let file: FileConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        // Values wrapped in `Spanned` add a private segment to the path: not a key of the file.
        let key = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "");
        let inner = e.into_inner();
        let key = if key == "." { String::new() } else { key };
        at(
            inner.span().unwrap_or(0..0),
            &key,
            explain(inner.message().trim()),
        )
    })?;

    let raw_accounts = text
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("accounts").and_then(|a| a.as_table()).cloned());
    let state_dir = match &file.general.state_dir {
        Some(dir) => absolute(dir, "general.state_dir", &at)?,
        None => default_state_dir(),
    };
    let mbnames = match &file.general.mbnames {
        Some(m) => mbnames(m, &at)?,
        None => None,
    };

    let mut accounts = Vec::new();
    for (name, account) in &file.accounts {
        let key = |k: &str| format!("accounts.{name}.{k}");
        if !valid_account_name(name) {
            let span = text.find(name.as_str()).map_or(0..0, |i| i..i);
            return Err(at(
                span,
                &format!("accounts.{name}"),
                "an account name may only hold letters, digits, '-', '_' and '.', and must not start with '.'".into(),
            ));
        }
        let imap = &account.remote;
        if imap.kind.get_ref() != "imap" {
            return Err(at(
                imap.kind.span(),
                &key("remote.type"),
                format!(
                    "\"{}\" is not supported here; expected \"imap\"",
                    imap.kind.get_ref()
                ),
            ));
        }
        let remote = imap_side(
            name,
            "remote",
            ImapKeys {
                host: &imap.host,
                port: imap.port,
                tls: imap.tls.clone(),
                user: imap.user.clone(),
                password: imap.password.as_ref(),
                oauth2: imap.oauth2.as_ref(),
                ca_file: imap.ca_file.as_deref(),
                cert_fingerprint: imap.cert_fingerprint.as_ref(),
                timeout: imap.timeout.as_ref(),
                compress: imap.compress,
            },
            &at,
        )?;
        let keywords = keyword_rule(account, &key, text, &at)?;
        let mut remote = remote;
        remote.keywords = keywords.server_side();
        remote.gmail = account.gmail;
        let mut local = local_side(name, &account.local, &at)?;
        match &mut local {
            LocalConfig::Maildir(m) => m.keywords = keywords,
            LocalConfig::Imap(i) => i.keywords = keywords,
        }
        if let LocalConfig::Imap(l) = &local
            && l.host.eq_ignore_ascii_case(&remote.host)
            && l.port == remote.port
            && l.user == remote.user
        {
            return Err(at(
                account.local.kind.span(),
                &key("local.type"),
                format!(
                    "the local side is the server's own mailbox ({}@{}:{}); name another server or user",
                    l.user, l.host, l.port
                ),
            ));
        }
        let policy = crate::plan::Policy {
            readonly_remote: imap.readonly.unwrap_or(false),
            readonly_local: account.local.readonly.unwrap_or(false),
            sync_deletes: account.sync_deletes.unwrap_or(true),
        };
        if policy.readonly_remote && policy.readonly_local {
            return Err(at(
                account.local.kind.span(),
                &key("local.readonly"),
                "both sides are read-only, so nothing could ever be synced; make one side writable"
                    .into(),
            ));
        }
        let limits = crate::plan::Limits {
            max_age_days: match &account.max_age {
                Some(days) => Some(
                    u32::try_from(*days.get_ref())
                        .ok()
                        .filter(|d| *d > 0)
                        .ok_or_else(|| {
                            at(
                                days.span(),
                                &key("max_age"),
                                "is a number of days: a whole number of at least 1".into(),
                            )
                        })?,
                ),
                None => None,
            },
            max_size: match &account.max_size {
                Some(size) => Some(parse_size(size.get_ref()).ok_or_else(|| {
                    at(
                        size.span(),
                        &key("max_size"),
                        "expected a size in bytes of at least 1, as a number (10485760) or with K, M or G (powers of 1024) as a string (\"10M\")".into(),
                    )
                })?),
                None => None,
            },
        };
        let mass_delete = MassDeleteGuard {
            max_percent: match &account.mass_delete_percent {
                Some(p) if *p.get_ref() > 100 => {
                    return Err(at(
                        p.span(),
                        &key("mass_delete_percent"),
                        "is a percentage: 0 to 100".into(),
                    ));
                }
                Some(p) => *p.get_ref(),
                None => MassDeleteGuard::default().max_percent,
            },
            min_messages: account
                .mass_delete_min_messages
                .unwrap_or(MassDeleteGuard::default().min_messages),
        };
        let mut watch = Watch::default();
        if let Some(idle) = &account.idle {
            watch.idle_set = glob_set(idle.get_ref()).map_err(|e| {
                at(
                    idle.span(),
                    &key("idle"),
                    format!("not a valid glob pattern: {e}"),
                )
            })?;
            watch.idle = idle.get_ref().clone();
        }
        if let Some(interval) = &account.interval {
            if *interval.get_ref() < 10 {
                return Err(at(
                    interval.span(),
                    &key("interval"),
                    "must be at least 10 (seconds)".into(),
                ));
            }
            watch.interval = Duration::from_secs(*interval.get_ref());
        }
        if let Some(max) = &account.max_connections {
            if *max.get_ref() < 1 {
                return Err(at(
                    max.span(),
                    &key("max_connections"),
                    "must be at least 1".into(),
                ));
            }
            watch.max_connections = *max.get_ref();
        }
        let folders = folder_rules(&account.folders, &key("folders"), &at)?;
        let folder_policy = crate::plan::FolderPolicy {
            create: account
                .create
                .unwrap_or(crate::plan::FolderPolicy::default().create),
            remove: account
                .remove
                .unwrap_or(crate::plan::FolderPolicy::default().remove),
        };
        let source = raw_accounts
            .as_ref()
            .and_then(|t| t.get(name.as_str()))
            .map(|t| {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(t.to_string().as_bytes()))
            })
            .unwrap_or_default();
        accounts.push(Account {
            name: name.clone(),
            remote,
            local,
            policy,
            limits,
            folders,
            folder_policy,
            mbnames: account.mbnames.unwrap_or(true),
            mass_delete,
            watch,
            hooks: account.hooks.clone(),
            source,
        });
    }

    check_local_paths_apart(path, &accounts)?;

    Ok(Config {
        path: path.to_owned(),
        state_dir,
        mbnames,
        accounts,
        warnings: Vec::new(),
    })
}

/// `keywords` and `[accounts.NAME.keyword_rename]`, checked: every name an IMAP keyword, the
/// renaming one to one.
fn keyword_rule(
    account: &FileAccount,
    key: &impl Fn(&str) -> String,
    text: &str,
    at: &impl Fn(Range<usize>, &str, String) -> ConfigError,
) -> Result<crate::model::KeywordRule, ConfigError> {
    use crate::model::{Keyword, KeywordRule, KeywordSync};
    let keyword = |name: &str, span: Range<usize>, k: &str| {
        Keyword::new(name).ok_or_else(|| {
            at(
                span,
                &key(k),
                format!(
                    "\"{name}\" is not an IMAP keyword: one word of letters, digits and punctuation other than ( ) {{ % * \" \\ ], not a system flag such as \\Seen or $Forwarded"
                ),
            )
        })
    };
    let sync = match &account.keywords {
        None => KeywordSync::All,
        Some(value) => match value.get_ref() {
            toml::Value::String(s) if s == "all" => KeywordSync::All,
            toml::Value::String(s) if s == "none" => KeywordSync::None,
            toml::Value::Array(list) => {
                let mut names = Vec::new();
                for item in list {
                    let Some(name) = item.as_str() else {
                        return Err(at(
                            value.span(),
                            &key("keywords"),
                            "the list holds keywords, as strings".into(),
                        ));
                    };
                    names.push(keyword(name, value.span(), "keywords")?);
                }
                KeywordSync::Only(names.into_iter().collect())
            }
            _ => {
                return Err(at(
                    value.span(),
                    &key("keywords"),
                    "expected \"all\", \"none\" or a list of keywords such as [\"$Junk\", \"NonJunk\"]".into(),
                ));
            }
        },
    };
    let mut rename: Vec<(Keyword, Keyword)> = Vec::new();
    for (server, local) in account.keyword_rename.iter().flatten() {
        // The table's keys have no span of their own: point at the first place the name is.
        let key_span = text
            .find(server.as_str())
            .map_or(local.span(), |i| i..i + server.len());
        let server = keyword(server, key_span, "keyword_rename")?;
        let local_name = keyword(local.get_ref(), local.span(), "keyword_rename")?;
        if let Some((other, _)) = rename
            .iter()
            .find(|(s, l)| *s == server || *l == local_name)
        {
            return Err(at(
                local.span(),
                &key("keyword_rename"),
                format!(
                    "\"{server}\" and \"{other}\" would share a name (keywords compare without case); each keyword needs a local name of its own"
                ),
            ));
        }
        rename.push((server, local_name));
    }
    Ok(KeywordRule::new(sync, rename))
}

/// `[accounts.NAME.folders]` checked and compiled; `key` is `accounts.NAME.folders`.
fn folder_rules(
    file: &FileFolders,
    key: &str,
    at: &impl Fn(Range<usize>, &str, String) -> ConfigError,
) -> Result<crate::folders::FolderRules, ConfigError> {
    use crate::folders::{Filter, FolderRules, Pattern, Rename, Rule, rename};
    let patterns = |list: &[Spanned<String>], leaf: &str| {
        list.iter()
            .map(|p| {
                Pattern::new(p.get_ref()).map_err(|e| {
                    at(
                        p.span(),
                        &format!("{key}.{leaf}"),
                        format!("\"{}\": {e}", p.get_ref()),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let include = match &file.include {
        Some(list) => Some(patterns(list, "include")?),
        None => None,
    };
    let exclude = match &file.exclude {
        Some(list) => patterns(list, "exclude")?,
        None => Vec::new(),
    };
    let mut rules = Vec::new();
    for (i, rule) in file.rename.iter().enumerate() {
        let rule_key = |leaf: &str| format!("{key}.rename[{i}].{leaf}");
        let reverse = match (&rule.local_match, &rule.remote_replace) {
            (Some(m), Some(r)) => Some((m.get_ref().as_str(), r.get_ref().as_str())),
            (None, None) => None,
            (Some(m), None) => {
                return Err(at(
                    m.span(),
                    &rule_key("local_match"),
                    "needs remote_replace too: the reverse of a rule is both".into(),
                ));
            }
            (None, Some(r)) => {
                return Err(at(
                    r.span(),
                    &rule_key("remote_replace"),
                    "needs local_match too: the reverse of a rule is both".into(),
                ));
            }
        };
        let built =
            Rule::new(rule.remote.get_ref(), rule.local.get_ref(), reverse).map_err(|e| {
                let span = match e.key {
                    "local_match" => rule.local_match.as_ref().map(Spanned::span),
                    _ => None,
                }
                .unwrap_or_else(|| rule.remote.span());
                at(span, &rule_key(e.key), e.message)
            })?;
        rules.push(built);
    }
    if let Some(prefix) = &file.remote_prefix_strip {
        let strip = rename::prefix_strip_rules(prefix.get_ref()).map_err(|e| {
            at(
                prefix.span(),
                &format!("{key}.remote_prefix_strip"),
                e.message,
            )
        })?;
        rules.extend(strip);
    }
    let gmail = match &file.preset {
        Some(p) if p.get_ref() == "gmail" => true,
        Some(p) => {
            return Err(at(
                p.span(),
                &format!("{key}.preset"),
                format!(
                    "unknown preset \"{}\"; the one preset is \"gmail\"",
                    p.get_ref()
                ),
            ));
        }
        None => false,
    };
    let rename = Rename::new(rules, gmail).map_err(|e| {
        let span = file.preset.as_ref().map_or(0..0, Spanned::span);
        at(span, &format!("{key}.preset"), e.message)
    })?;
    Ok(FolderRules::new(Filter::new(include, exclude), rename))
}

/// `[general.mbnames]` checked; `None` when it is switched off.
fn mbnames(
    file: &FileMbnames,
    at: &impl Fn(Range<usize>, &str, String) -> ConfigError,
) -> Result<Option<Mbnames>, ConfigError> {
    let path = absolute(&file.path, "general.mbnames.path", at)?;
    let item = match &file.item {
        Some(item) => {
            if let Some(unknown) = unknown_placeholder(item.get_ref()) {
                return Err(at(
                    item.span(),
                    "general.mbnames.item",
                    format!(
                        "unknown placeholder {{{unknown}}}; an item may use {{account}}, {{folder}} and {{path}}"
                    ),
                ));
            }
            item.get_ref().clone()
        }
        None => "\"+{account}/{folder}\"".to_owned(),
    };
    let config = Mbnames {
        path,
        header: file.header.clone().unwrap_or_else(|| "mailboxes ".into()),
        item,
        separator: file.separator.clone().unwrap_or_else(|| " ".into()),
        footer: file.footer.clone().unwrap_or_else(|| "\n".into()),
    };
    Ok(file.enabled.unwrap_or(true).then_some(config))
}

/// One IMAP side's keys, checked. `side` is `remote` or `local`: it prefixes the keys in
/// errors, and the local side's keyring item is `ACCOUNT/local` (an account name cannot hold a
/// `/`, so it never meets another account's item).
fn imap_side(
    name: &str,
    side: &str,
    keys: ImapKeys<'_>,
    at: &impl Fn(Range<usize>, &str, String) -> ConfigError,
) -> Result<ImapConfig, ConfigError> {
    let key = |k: &str| format!("accounts.{name}.{side}.{k}");
    let host = keys.host.get_ref().trim().to_owned();
    if host.is_empty() {
        return Err(at(keys.host.span(), &key("host"), "is empty".into()));
    }
    let tls = *keys.tls.get_ref();
    if tls == TlsMode::None && !is_loopback(&host) {
        return Err(at(
            keys.tls.span(),
            &key("tls"),
            format!(
                "\"none\" would send the password in clear text to {host}; it is only allowed for loopback hosts (127.0.0.1, ::1, localhost). Use \"implicit\" or \"starttls\""
            ),
        ));
    }
    let port = keys.port.unwrap_or(match tls {
        TlsMode::Implicit => 993,
        TlsMode::Starttls | TlsMode::None => 143,
    });
    let cert_fingerprint = match keys.cert_fingerprint {
        Some(fp) => Some(parse_fingerprint(fp.get_ref()).ok_or_else(|| {
            at(
                fp.span(),
                &key("cert_fingerprint"),
                "expected \"sha256:\" followed by 64 hexadecimal digits (colons allowed)".into(),
            )
        })?),
        None => None,
    };
    let timeout = match keys.timeout {
        Some(t) if *t.get_ref() == 0 => {
            return Err(at(
                t.span(),
                &key("timeout"),
                "must be at least 1 (seconds)".into(),
            ));
        }
        Some(t) => Duration::from_secs(*t.get_ref()),
        None => Duration::from_secs(60),
    };
    let auth = auth::resolve(keys.password, keys.oauth2)
        .map_err(|e| at(e.span, &key(e.key), e.message))?;
    let credentials_name = match side {
        "remote" => name.to_owned(),
        other => format!("{name}/{other}"),
    };
    Ok(ImapConfig {
        keywords: Default::default(),
        gmail: None,
        host,
        port,
        tls,
        user: keys.user,
        credentials: crate::credentials::Credentials::new(&credentials_name, auth),
        ca_file: keys.ca_file.map(expand_tilde),
        cert_fingerprint,
        timeout,
        compress: keys.compress,
    })
}

/// The local table, by its `type`: every key that the type does not take is named.
fn local_side(
    name: &str,
    local: &FileLocal,
    at: &impl Fn(Range<usize>, &str, String) -> ConfigError,
) -> Result<LocalConfig, ConfigError> {
    let key = |k: &str| format!("accounts.{name}.local.{k}");
    let imap_only: [(&str, Option<Range<usize>>); 10] = [
        ("host", local.host.as_ref().map(Spanned::span)),
        ("port", local.port.as_ref().map(Spanned::span)),
        ("tls", local.tls.as_ref().map(Spanned::span)),
        ("user", local.user.as_ref().map(Spanned::span)),
        ("password", local.password.as_ref().map(Spanned::span)),
        ("oauth2", local.oauth2.as_ref().map(Spanned::span)),
        ("ca_file", local.ca_file.as_ref().map(Spanned::span)),
        (
            "cert_fingerprint",
            local.cert_fingerprint.as_ref().map(Spanned::span),
        ),
        ("timeout", local.timeout.as_ref().map(Spanned::span)),
        ("compress", local.compress.as_ref().map(Spanned::span)),
    ];
    let maildir_only: [(&str, Option<Range<usize>>); 2] = [
        ("path", local.path.as_ref().map(Spanned::span)),
        ("layout", local.layout.as_ref().map(Spanned::span)),
    ];
    let refuse_keys = |keys: &[(&str, Option<Range<usize>>)], kind: &str| match keys
        .iter()
        .find_map(|(k, span)| span.clone().map(|s| (*k, s)))
    {
        Some((k, span)) => Err(at(
            span,
            &key(k),
            format!("is not a key of a local side of type \"{kind}\""),
        )),
        None => Ok(()),
    };
    let missing = |k: &str| {
        at(
            local.kind.span(),
            &key(k),
            format!(
                "missing key (required with type = \"{}\")",
                local.kind.get_ref()
            ),
        )
    };
    match local.kind.get_ref().as_str() {
        "maildir" => {
            refuse_keys(&imap_only, "maildir")?;
            let path = local.path.as_ref().ok_or_else(|| missing("path"))?;
            Ok(LocalConfig::Maildir(MaildirConfig {
                keywords: Default::default(),
                path: absolute(path, &key("path"), at)?,
                layout: local
                    .layout
                    .as_ref()
                    .map(|l| *l.get_ref())
                    .unwrap_or_default(),
            }))
        }
        "imap" => {
            refuse_keys(&maildir_only, "imap")?;
            let host = local.host.as_ref().ok_or_else(|| missing("host"))?;
            let user = local.user.as_ref().ok_or_else(|| missing("user"))?;
            imap_side(
                name,
                "local",
                ImapKeys {
                    host,
                    port: local.port.as_ref().map(|p| *p.get_ref()),
                    tls: local.tls.clone().unwrap_or_else(default_tls),
                    user: user.get_ref().clone(),
                    password: local.password.as_ref(),
                    oauth2: local.oauth2.as_ref(),
                    ca_file: local.ca_file.as_ref().map(|c| c.get_ref().as_str()),
                    cert_fingerprint: local.cert_fingerprint.as_ref(),
                    timeout: local.timeout.as_ref(),
                    compress: local.compress.as_ref().map(|c| *c.get_ref()),
                },
                at,
            )
            .map(LocalConfig::Imap)
        }
        other => Err(at(
            local.kind.span(),
            &key("type"),
            format!("\"{other}\" is not supported here; expected \"maildir\" or \"imap\""),
        )),
    }
}

/// `max_size`: a number of bytes, or a string with a K, M or G suffix (powers of 1024).
fn parse_size(value: &toml::Value) -> Option<u64> {
    let bytes = match value {
        toml::Value::Integer(n) => u64::try_from(*n).ok()?,
        toml::Value::String(text) => {
            let text = text.trim();
            let (digits, unit) = match text.char_indices().last()? {
                (i, c) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_uppercase()),
                _ => (text, 'B'),
            };
            let shift = match unit {
                'B' => 0,
                'K' => 10,
                'M' => 20,
                'G' => 30,
                _ => return None,
            };
            digits.trim().parse::<u64>().ok()?.checked_mul(1 << shift)?
        }
        _ => return None,
    };
    (bytes > 0).then_some(bytes)
}

fn absolute(
    raw: &Spanned<String>,
    key: &str,
    at: &impl Fn(Range<usize>, &str, String) -> ConfigError,
) -> Result<PathBuf, ConfigError> {
    let path = expand_tilde(raw.get_ref());
    if !path.is_absolute() {
        return Err(at(
            raw.span(),
            key,
            format!(
                "\"{}\" is relative; write an absolute path or one starting with ~/",
                raw.get_ref()
            ),
        ));
    }
    Ok(normalize(&path))
}

/// Removes `.` and `..` lexically, so that two spellings of one directory compare equal even
/// before it exists.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Two accounts syncing into one directory, or one inside the other, would each see the other's
/// messages as new or deleted: OfflineIMAP's known way to lose mail.
fn check_local_paths_apart(path: &Path, accounts: &[Account]) -> Result<(), ConfigError> {
    let maildirs: Vec<(&str, &MaildirConfig)> = accounts
        .iter()
        .filter_map(|a| a.local.maildir().map(|m| (a.name.as_str(), m)))
        .collect();
    let resolved: Vec<PathBuf> = maildirs
        .iter()
        .map(|(_, m)| resolve_existing_prefix(&m.path))
        .collect();
    for (i, (a_name, a)) in maildirs.iter().enumerate() {
        for (j, (b_name, b)) in maildirs.iter().enumerate().skip(i + 1) {
            let (pa, pb) = (&resolved[i], &resolved[j]);
            if pa.starts_with(pb) || pb.starts_with(pa) {
                return Err(ConfigError::Whole {
                    path: path.to_owned(),
                    message: format!(
                        "accounts \"{}\" ({}) and \"{}\" ({}) share or nest their local directories; each account needs a directory of its own, or they would delete each other's mail",
                        a_name,
                        a.path.display(),
                        b_name,
                        b.path.display()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Follows symbolic links in the part of `path` that exists, so a link cannot hide that two
/// accounts share a directory.
fn resolve_existing_prefix(path: &Path) -> PathBuf {
    let mut existing = path.to_owned();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent.to_owned();
            }
            _ => return path.to_owned(),
        }
    }
}

fn valid_account_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn parse_fingerprint(raw: &str) -> Option<[u8; 32]> {
    let hex_part = raw.strip_prefix("sha256:")?.replace(':', "");
    let bytes = hex::decode(hex_part).ok()?;
    bytes.try_into().ok()
}

/// Makes serde's terse messages say what is expected in this file's terms.
fn explain(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        format!("unknown key {rest} (see idlewild.toml(5) for the keys)")
    } else if let Some(rest) = message.strip_prefix("missing field ") {
        format!("missing key {rest}")
    } else {
        message.to_owned()
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, column)
}

/// The first `{name}` in `item` (`[general.mbnames]`) that is not a placeholder, if any.
pub fn unknown_placeholder(item: &str) -> Option<String> {
    let mut rest = item;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        let name = &after[..close];
        let word = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if word && !matches!(name, "account" | "folder" | "path") {
            return Some(name.to_owned());
        }
        rest = &after[close + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[general]
state_dir = "/tmp/iw-state"

[accounts.personal.remote]
type = "imap"
host = "imap.example.org"
user = "me@example.org"
password = "hunter2"

[accounts.personal.local]
type = "maildir"
path = "/tmp/iw-mail/personal"
"#;

    fn err(text: &str) -> String {
        parse(Path::new("/c.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn keywords_are_chosen_and_renamed_one_to_one_or_the_key_is_named() {
        use crate::model::{Flags, KeywordRoom};
        let with = |keys: &str| {
            GOOD.replace(
                "[accounts.personal.remote]",
                &format!("[accounts.personal]\n{keys}\n[accounts.personal.remote]"),
            )
        };
        let text = with(
            "keywords = [\"$Junk\", \"$label1\"]\n[accounts.personal.keyword_rename]\n\"$label1\" = \"important\"",
        );
        let c = parse(Path::new("/c.toml"), &text).unwrap();
        let a = c.account("personal").unwrap();
        let local = &a.local.maildir().unwrap().keywords;
        let flags = |list: &[&str]| Flags::from_imap(list.iter().copied());
        assert_eq!(
            local.to_server(flags(&["important", "$Junk", "other"])),
            flags(&["$label1", "$Junk"])
        );
        assert_eq!(local.to_local(&flags(&["$label1"])), flags(&["important"]));
        // The server side has the choice, not the local names.
        assert_eq!(
            a.remote.keywords.to_local(&flags(&["$label1"])),
            flags(&["$label1"])
        );
        assert_eq!(KeywordRoom::default(), KeywordRoom::Any);
        let none = parse(Path::new("/c.toml"), &with("keywords = \"none\"")).unwrap();
        assert_eq!(
            none.account("personal")
                .unwrap()
                .remote
                .keywords
                .to_server(flags(&["$Junk"])),
            Flags::empty()
        );
        for (keys, expected) in [
            (
                "keywords = \"some\"",
                "accounts.personal.keywords: expected \"all\", \"none\" or a list",
            ),
            (
                "keywords = [\"two words\"]",
                "accounts.personal.keywords: \"two words\" is not an IMAP keyword",
            ),
            ("keywords = [\"\\\\Seen\"]", "is not an IMAP keyword"),
            (
                "keywords = [1]",
                "accounts.personal.keywords: the list holds keywords",
            ),
            (
                "[accounts.personal.keyword_rename]\n\"a\" = \"x\"\n\"b\" = \"X\"",
                "accounts.personal.keyword_rename: \"b\" and \"a\" would share a name",
            ),
            (
                "[accounts.personal.keyword_rename]\n\"a\" = \"$Forwarded\"",
                "accounts.personal.keyword_rename: \"$Forwarded\" is not an IMAP keyword",
            ),
        ] {
            let e = err(&with(keys));
            assert!(e.contains(expected), "{keys}: {e}");
            assert!(e.starts_with("/c.toml:"), "{keys}: the place is named: {e}");
        }
    }

    #[test]
    fn a_minimal_file_gets_defaults() {
        let c = parse(Path::new("/c.toml"), GOOD).unwrap();
        let a = c.account("personal").unwrap();
        assert_eq!(a.remote.port, 993);
        assert_eq!(a.remote.tls, TlsMode::Implicit);
        assert_eq!(a.local.maildir().unwrap().layout, MaildirLayout::Nested);
        assert_eq!(a.mass_delete, MassDeleteGuard::default());
        assert!(!format!("{a:?}").contains("hunter2"));
    }

    #[test]
    fn a_wrong_type_names_line_column_and_key() {
        let text = GOOD.replace("user = ", "port = \"x\"\nuser = ");
        let e = err(&text);
        assert!(
            e.starts_with("/c.toml:8:8: accounts.personal.remote.port: "),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_key_is_named() {
        let e = err(&GOOD.replace("user = ", "hots = \"x\"\nuser = "));
        assert!(e.contains("/c.toml:8:1: "), "{e}");
        assert!(e.contains("unknown key `hots`"), "{e}");
    }

    #[test]
    fn cleartext_to_a_remote_host_is_refused() {
        let e = err(&GOOD.replace("user = ", "tls = \"none\"\nuser = "));
        assert!(e.contains("accounts.personal.remote.tls"), "{e}");
        assert!(e.contains("loopback"), "{e}");
        let ok = GOOD
            .replace("imap.example.org", "127.0.0.1")
            .replace("user = ", "tls = \"none\"\nuser = ");
        assert_eq!(
            parse(Path::new("/c.toml"), &ok).unwrap().accounts[0]
                .remote
                .port,
            143
        );
    }

    #[test]
    fn nested_local_directories_are_refused() {
        let two = format!(
            "{GOOD}\n[accounts.work.remote]\ntype = \"imap\"\nhost = \"h\"\nuser = \"u\"\n[accounts.work.local]\ntype = \"maildir\"\npath = \"/tmp/iw-mail/personal/../personal/work\"\n"
        );
        let e = err(&two);
        assert!(e.contains("share or nest"), "{e}");
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = err("[general\n");
        assert!(e.starts_with("/c.toml:1:"), "{e}");
    }

    #[test]
    fn fingerprints_are_checked() {
        let fp = format!("sha256:{}", "ab".repeat(32));
        assert!(parse_fingerprint(&fp).is_some());
        assert!(parse_fingerprint("sha1:abcd").is_none());
        let e = err(&GOOD.replace("user = ", "cert_fingerprint = \"x\"\nuser = "));
        assert!(e.contains("cert_fingerprint"), "{e}");
    }

    const FOLDERS: &str = r#"
[accounts.personal]
create = "remote"
remove = "local"
mbnames = false

[accounts.personal.folders]
include = ["*"]
exclude = ["Trash", "regex:Spam|Junk"]
rename = [
  { remote = "^Sent Items$", local = "Sent" },
  { remote = "^(?i)deleted$", local = "Deleted", local_match = "^Deleted$", remote_replace = "Deleted" },
]
remote_prefix_strip = "INBOX."
preset = "gmail"

[general.mbnames]
path = "~/.mutt/mailboxes"
"#;

    #[test]
    fn folder_keys_are_read() {
        let c = parse(Path::new("/c.toml"), &format!("{GOOD}{FOLDERS}")).unwrap();
        let a = c.account("personal").unwrap();
        assert_eq!(a.folder_policy.create, crate::plan::Sides::Remote);
        assert_eq!(a.folder_policy.remove, crate::plan::Sides::Local);
        assert!(!a.mbnames);
        let name = |s: &str| crate::model::FolderName::new(s).unwrap();
        assert!(!a.folders.selection(&name("Junk")).is_included());
        assert!(a.folders.selection(&name("INBOX/Junk")).is_included());
        assert_eq!(
            a.folders.local_name(&name("Sent Items")).unwrap(),
            name("Sent")
        );
        assert_eq!(
            a.folders.local_name(&name("INBOX/Lists")).unwrap(),
            name("Lists")
        );
        assert_eq!(
            a.folders.local_name(&name("[Gmail]/Sent Mail")).unwrap(),
            name("Sent")
        );
        let m = c.mbnames.unwrap();
        assert_eq!(m.header, "mailboxes ");
        assert_eq!(m.item, "\"+{account}/{folder}\"");
        assert_eq!(m.footer, "\n");
        assert!(m.path.is_absolute());
        // The defaults: create everywhere, remove nowhere, in the mailbox list.
        let d = parse(Path::new("/c.toml"), GOOD).unwrap();
        let a = d.account("personal").unwrap();
        assert_eq!(a.folder_policy, crate::plan::FolderPolicy::default());
        assert!(a.mbnames);
        assert!(d.mbnames.is_none());
        let off = format!("{GOOD}\n[general.mbnames]\npath = \"/m\"\nenabled = false\n");
        assert!(parse(Path::new("/c.toml"), &off).unwrap().mbnames.is_none());
    }

    #[test]
    fn a_bad_regex_names_the_place_and_the_regex_error() {
        let text = format!(
            "{GOOD}\n[accounts.personal.folders]\nexclude = [\"Trash\", \"regex:(Spam\"]\n"
        );
        let e = err(&text);
        assert!(
            e.starts_with("/c.toml:16:21: accounts.personal.folders.exclude: \"regex:(Spam\": not a valid regex: "),
            "{e}"
        );
        assert!(e.contains("unclosed group"), "{e}");
        let text = format!(
            "{GOOD}\n[accounts.personal.folders]\nrename = [\n  {{ remote = \"^a$\", local = \"b\" }},\n  {{ remote = \"^(x\", local = \"y\" }},\n]\n"
        );
        let e = err(&text);
        assert!(
            e.starts_with(
                "/c.toml:18:14: accounts.personal.folders.rename[1].remote: not a valid regex: "
            ),
            "{e}"
        );
    }

    #[test]
    fn a_rule_without_a_reverse_is_refused() {
        let text = format!(
            "{GOOD}\n[accounts.personal.folders]\nrename = [{{ remote = \"^Foo(\\\\d+)$\", local = \"Bar\" }}]\n"
        );
        let e = err(&text);
        assert!(
            e.contains("accounts.personal.folders.rename[0].remote: "),
            "{e}"
        );
        assert!(e.contains("local_match and remote_replace"), "{e}");
        let half = format!(
            "{GOOD}\n[accounts.personal.folders]\nrename = [{{ remote = \"^a$\", local = \"b\", local_match = \"^b$\" }}]\n"
        );
        let e = err(&half);
        assert!(
            e.contains("rename[0].local_match: needs remote_replace"),
            "{e}"
        );
    }

    #[test]
    fn unknown_presets_and_policy_values_are_named() {
        let e = err(&format!(
            "{GOOD}\n[accounts.personal.folders]\npreset = \"yahoo\"\n"
        ));
        assert!(
            e.starts_with(
                "/c.toml:16:10: accounts.personal.folders.preset: unknown preset \"yahoo\""
            ),
            "{e}"
        );
        let e = err(&format!("{GOOD}\n[accounts.personal]\nremove = \"all\"\n"));
        assert!(
            e.starts_with("/c.toml:16:10: accounts.personal.remove: "),
            "{e}"
        );
        assert!(e.contains("`both`, `remote`, `local`, `none`"), "{e}");
        let e = err(&format!(
            "{GOOD}\n[accounts.personal.folders]\nremote_prefix_strip = \".\"\n"
        ));
        assert!(
            e.contains("accounts.personal.folders.remote_prefix_strip: "),
            "{e}"
        );
        let e = err(&format!(
            "{GOOD}\n[general.mbnames]\npath = \"/m\"\nitem = \"{{acount}}\"\n"
        ));
        assert!(
            e.starts_with("/c.toml:17:8: general.mbnames.item: unknown placeholder {acount}"),
            "{e}"
        );
        let e = err(&format!("{GOOD}\n[general.mbnames]\npath = \"m\"\n"));
        assert!(e.contains("general.mbnames.path"), "{e}");
    }

    const IMAP_LOCAL: &str = r#"
[accounts.move.remote]
type = "imap"
host = "old.example.org"
user = "me"
password = "one"

[accounts.move.local]
type = "imap"
host = "new.example.org"
user = "me"
tls = "starttls"
password = { command = ["pass", "new"] }
readonly = false
"#;

    #[test]
    fn a_local_side_of_type_imap_takes_the_remote_keys() {
        let c = parse(Path::new("/c.toml"), IMAP_LOCAL).unwrap();
        let a = c.account("move").unwrap();
        let LocalConfig::Imap(local) = &a.local else {
            panic!("not an IMAP local side: {:?}", a.local);
        };
        assert_eq!(local.host, "new.example.org");
        assert_eq!(local.port, 143);
        assert_eq!(local.tls, TlsMode::Starttls);
        // The keyring items of the two sides are apart.
        assert_eq!(a.remote.credentials.account(), "move");
        assert_eq!(local.credentials.account(), "move/local");
        assert_eq!(a.policy, crate::plan::Policy::default());
    }

    #[test]
    fn keys_of_the_other_local_type_are_named() {
        let e = err(&IMAP_LOCAL.replace("readonly = false", "path = \"/tmp/x\""));
        assert!(
            e.starts_with("/c.toml:14:8: accounts.move.local.path: is not a key"),
            "{e}"
        );
        let e = err(&GOOD.replace("path = ", "host = \"h\"\npath = "));
        assert!(
            e.contains("accounts.personal.local.host: is not a key"),
            "{e}"
        );
        let e = err(&IMAP_LOCAL.replace("host = \"new.example.org\"\n", ""));
        assert!(e.contains("accounts.move.local.host: missing key"), "{e}");
        let e = err(&GOOD.replace("type = \"maildir\"", "type = \"mbox\""));
        assert!(e.contains("accounts.personal.local.type"), "{e}");
        let same = IMAP_LOCAL
            .replace("new.example.org", "old.example.org")
            .replace("tls = \"starttls\"\n", "");
        assert!(err(&same).contains("the server's own mailbox"));
    }

    #[test]
    fn limits_and_policies_are_read_and_checked() {
        let text = GOOD.replace(
            "[accounts.personal.remote]",
            "[accounts.personal]\nmax_age = 30\nmax_size = \"10M\"\nsync_deletes = false\n\n[accounts.personal.remote]\nreadonly = true",
        );
        let c = parse(Path::new("/c.toml"), &text).unwrap();
        let a = c.account("personal").unwrap();
        assert_eq!(a.limits.max_age_days, Some(30));
        assert_eq!(a.limits.max_size, Some(10 * 1024 * 1024));
        assert!(a.policy.readonly_remote && !a.policy.readonly_local && !a.policy.sync_deletes);

        for (value, want) in [
            ("1000", Some(1000)),
            ("\"2K\"", Some(2048)),
            ("\"1g\"", Some(1 << 30)),
        ] {
            let text = GOOD.replace(
                "[accounts.personal.remote]",
                &format!("[accounts.personal]\nmax_size = {value}\n[accounts.personal.remote]"),
            );
            let c = parse(Path::new("/c.toml"), &text).unwrap();
            assert_eq!(c.accounts[0].limits.max_size, want, "{value}");
        }
        for bad in ["0", "-5", "\"10X\"", "\"M\"", "1.5"] {
            let text = GOOD.replace(
                "[accounts.personal.remote]",
                &format!("[accounts.personal]\nmax_size = {bad}\n[accounts.personal.remote]"),
            );
            let e = err(&text);
            assert!(
                e.starts_with("/c.toml:6:12: accounts.personal.max_size: "),
                "{bad}: {e}"
            );
        }
        let text = GOOD.replace(
            "[accounts.personal.remote]",
            "[accounts.personal]\nmax_age = 0\n[accounts.personal.remote]",
        );
        assert!(err(&text).contains("accounts.personal.max_age: is a number of days"));
        let both = GOOD
            .replace("type = \"imap\"", "type = \"imap\"\nreadonly = true")
            .replace("type = \"maildir\"", "type = \"maildir\"\nreadonly = true");
        assert!(err(&both).contains("both sides are read-only"));
    }

    #[test]
    fn relative_paths_are_refused() {
        let e = err(&GOOD.replace("/tmp/iw-mail/personal", "Mail"));
        assert!(e.contains("accounts.personal.local.path"), "{e}");
    }

    /// Fuzzing (issue 16): configuration files as users write them, mistakes included.
    mod fuzz {
        use super::super::*;
        use super::GOOD;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                "-?[0-9]{1,12}",
                "\"\\PC{0,20}\"",
                "(true|false)",
                "\\[(\"[a-zA-Z*/%$]{0,8}\", ?){0,3}\\]",
                "\\{ ?([a-z_]{1,8} = \"[a-z]{0,5}\",? ?){0,2}\\}",
                "[0-9]{1,3}(s|m|h|ms|x)",
            ]
        }

        proptest! {
            #[test]
            fn any_text_is_a_configuration_or_an_error(text in "\\PC{0,300}") {
                let _ = parse(Path::new("/c.toml"), &text);
            }

            #[test]
            fn any_value_for_a_known_key_is_taken_or_named_in_the_error(
                section in "(\\[general\\]|\\[accounts.personal\\]|\\[accounts.personal.remote\\]|\\[accounts.personal.local\\])",
                key in "(max_connections|interval|create|remove|expunge|patterns|keywords|port|tls|auth|readonly|layout|max_size|timeout|idle|watch|user|host|path|state_dir|copy_sync|[a-z_]{1,12})",
                value in value(),
            ) {
                let text = format!("{GOOD}\n{section}\n{key} = {value}\n");
                if let Err(e) = parse(Path::new("/c.toml"), &text) {
                    prop_assert!(e.to_string().contains("/c.toml"), "{}", e);
                }
            }
        }
    }
}
