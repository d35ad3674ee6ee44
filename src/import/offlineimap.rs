//! OfflineIMAP's configuration (`~/.offlineimaprc`): `[general] accounts = ...`, one
//! `[Account NAME]` per account naming a remote and a local `[Repository NAME]`.
//!
//! Folder names in `folderfilter` and `nametrans` are the server's, with the server's level
//! separator. Servers that separate levels with `.` (Courier, older Dovecot) are recognized by
//! names starting with `INBOX.`; then every `.` in a name is a level, `/` in idlewild's spelling.

use std::collections::BTreeSet;

use super::folders::{
    self, Pat, Rename, Rule, Selection, literal_replacement, python_regex, python_replacement,
};
use super::ini::{self, Entry, Ini};
use super::python::{self, CmpOp, Expr};
use super::{
    Account, Auth, Context, Converted, Imap, ImportError, Layout, Local, MaxSize, Mbnames,
    NoteKind, OAuth2, SYSTEM_BUNDLES, Sides, Table, Tls, Tool, account_name, command_argv,
    expand_path, new_maildir, note_new_maildir, tilde,
};

const GMAIL_HOST: &str = "imap.gmail.com";
const GOOGLE_TOKEN_URL: &str = "https://accounts.google.com/o/oauth2/token";

/// Keys that change nothing idlewild would do differently (tuning, display, other tools' state).
const HARMLESS: &[&str] = &[
    "quick",
    "maxconnections",
    "holdconnectionopen",
    "keepalive",
    "usecompression",
    "singlethreadperfolder",
    "ipv6",
    "retrycount",
    "foldersort",
    "dynamic_folderfilter",
    "restoreatime",
    "utime_from_header",
    "filename_use_mail_timestamp",
    "ssl_version",
    "tls_level",
    "labelsheader",
    "ignorelabels",
    "decodefoldernames",
    "utf8foldernames",
    "trashfolder",
    "spamfolder",
    "sslcacertfile",
];

pub fn convert(text: &str, ctx: &Context) -> Result<Converted, ImportError> {
    let ini = ini::parse(text).map_err(|e| parse_error(ctx, e.line, e.message))?;
    let mut out = Converted {
        tool: Some(Tool::OfflineImap),
        source: ctx.source.clone(),
        ..Converted::default()
    };
    if ini.section("general").is_none() {
        return Err(ImportError::Whole {
            path: ctx.source.clone(),
            message: "no [general] section: is this an OfflineIMAP configuration?".into(),
        });
    }
    let mut general = Reader::new(&ini, ctx, "general");
    let Some((list, list_line)) = general.get("accounts")? else {
        return Err(ImportError::Whole {
            path: ctx.source.clone(),
            message: "[general] has no accounts = ... line: there is nothing to import".into(),
        });
    };
    let names: Vec<String> = list
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Err(parse_error(ctx, list_line, "accounts = names no account"));
    }
    let pythonfile = general
        .get("pythonfile")?
        .map(|(p, _)| expand_path(&p, ctx, true));
    let timeout = match general.get("socktimeout")? {
        Some((t, line)) => Some(
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|t| t.is_finite() && *t >= 1.0)
                .map(|t| t.round() as u64)
                .ok_or_else(|| {
                    parse_error(
                        ctx,
                        line,
                        format!("socktimeout: \"{t}\" is not a number of seconds"),
                    )
                })?,
        ),
        None => None,
    };
    let mut taken = Vec::new();
    for name in &names {
        let section = format!("Account {name}");
        if ini.section(&section).is_none() {
            return Err(parse_error(
                ctx,
                list_line,
                format!("the account \"{name}\" has no [{section}] section"),
            ));
        }
        let env = AccountEnv {
            ini: &ini,
            ctx,
            pythonfile: pythonfile.as_deref(),
            timeout,
        };
        match account(&env, name, &taken)? {
            Some(a) => {
                taken.push(a.name.clone());
                out.accounts.push(a);
            }
            None => out.note(
                NoteKind::Warning,
                ini.section(&section).map(|s| s.line),
                format!("account {name}: its remote repository is not an IMAP server; idlewild syncs an IMAP server with a Maildir or another IMAP server, so it is left out"),
            ),
        }
    }
    for s in ini.sections() {
        if let Some(name) = s.name.strip_prefix("Account ")
            && !names.iter().any(|n| n == name)
        {
            out.note(
                NoteKind::Info,
                Some(s.line),
                format!("[{}] is not in [general] accounts, so it is left out, as OfflineIMAP leaves it", s.name),
            );
        }
    }
    if ini.section("mbnames").is_some() {
        mbnames(&ini, ctx, &mut out)?;
    }
    Ok(out)
}

fn parse_error(ctx: &Context, line: usize, message: impl Into<String>) -> ImportError {
    ImportError::Parse {
        path: ctx.source.clone(),
        line,
        message: message.into(),
    }
}

/// Reads one section, remembering which keys were used so that the rest can be reported.
struct Reader<'a> {
    ini: &'a Ini,
    ctx: &'a Context,
    section: String,
    used: BTreeSet<String>,
}

impl<'a> Reader<'a> {
    fn new(ini: &'a Ini, ctx: &'a Context, section: &str) -> Self {
        Reader {
            ini,
            ctx,
            section: section.to_owned(),
            used: BTreeSet::new(),
        }
    }

    fn line(&self) -> usize {
        self.ini.section(&self.section).map_or(0, |s| s.line)
    }

    fn error(&self, line: usize, key: &str, message: impl std::fmt::Display) -> ImportError {
        parse_error(
            self.ctx,
            line,
            format!("[{}] {key}: {message}", self.section),
        )
    }

    fn get(&mut self, key: &str) -> Result<Option<(String, usize)>, ImportError> {
        self.used.insert(key.to_owned());
        self.ini
            .get(&self.section, key)
            .map_err(|e| self.error(e.line, key, e.message))
    }

    fn raw(&mut self, key: &str) -> Option<(String, usize)> {
        self.used.insert(key.to_owned());
        self.ini.get_raw(&self.section, key)
    }

    fn boolean(&mut self, key: &str) -> Result<Option<(bool, usize)>, ImportError> {
        match self.get(key)? {
            None => Ok(None),
            Some((v, line)) => ini::boolean(&v)
                .map(|b| Some((b, line)))
                .ok_or_else(|| self.error(line, key, format!("\"{v}\" is not yes or no"))),
        }
    }

    fn has(&self, key: &str) -> bool {
        self.ini.entry(&self.section, key).is_some()
    }

    /// The section's own keys nothing has read.
    fn unused(&self) -> Vec<Entry> {
        self.ini
            .section(&self.section)
            .map(|s| {
                s.keys()
                    .into_iter()
                    .filter(|e| !self.used.contains(&e.key.to_lowercase()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

struct AccountEnv<'a> {
    ini: &'a Ini,
    ctx: &'a Context,
    pythonfile: Option<&'a str>,
    timeout: Option<u64>,
}

/// The account, or `None` when its remote side is not an IMAP server.
fn account(
    env: &AccountEnv<'_>,
    name: &str,
    taken: &[String],
) -> Result<Option<Account>, ImportError> {
    let (ini, ctx) = (env.ini, env.ctx);
    let section = format!("Account {name}");
    let mut acc = Reader::new(ini, ctx, &section);
    let repository = |acc: &mut Reader<'_>, key: &str| -> Result<(String, usize), ImportError> {
        let (repo, line) = acc
            .get(key)?
            .ok_or_else(|| acc.error(acc.line(), key, "is missing"))?;
        let repo = repo.trim().to_owned();
        if ini.section(&format!("Repository {repo}")).is_none() {
            return Err(acc.error(
                line,
                key,
                format!("there is no [Repository {repo}] section"),
            ));
        }
        Ok((format!("Repository {repo}"), line))
    };
    let (remote_section, _) = repository(&mut acc, "remoterepository")?;
    let (local_section, _) = repository(&mut acc, "localrepository")?;
    let mut rem = Reader::new(ini, ctx, &remote_section);
    let mut loc = Reader::new(ini, ctx, &local_section);
    let kind = |r: &mut Reader<'_>| -> Result<String, ImportError> {
        let (t, line) = r
            .get("type")?
            .ok_or_else(|| r.error(r.line(), "type", "is missing"))?;
        let t = t.trim().to_ascii_lowercase();
        match t.as_str() {
            "imap" | "gmail" | "maildir" | "gmailmaildir" => Ok(t),
            _ => Err(r.error(
                line,
                "type",
                format!("\"{t}\" is not a repository type (IMAP, Gmail, Maildir, GmailMaildir)"),
            )),
        }
    };
    let remote_type = kind(&mut rem)?;
    let local_type = kind(&mut loc)?;
    if remote_type.contains("maildir") {
        return Ok(None);
    }
    let mut a = Account::new(
        account_name(name, taken),
        format!("OfflineIMAP [{section}], remote [{remote_section}], local [{local_section}]"),
        Imap::new(String::new()),
        Local::Maildir {
            path: String::new(),
            layout: Layout::Nested,
            readonly: false,
        },
    );
    if a.name != name {
        a.info(
            Table::Account,
            None,
            format!(
                "account names hold letters, digits, '-', '_' and '.': \"{name}\" is {} here",
                a.name
            ),
        );
    }
    let gmail = remote_type == "gmail";
    a.remote = imap_side(env, &mut rem, &mut a, Table::Remote, gmail)?;
    let gmail = gmail
        || a.remote.host.eq_ignore_ascii_case(GMAIL_HOST)
        || a.remote.host.eq_ignore_ascii_case("imap.googlemail.com");

    // Local side.
    let mut local_cf = true;
    let mut local_deletes = true;
    if local_type.contains("maildir") {
        let (folders, line) = loc
            .get("localfolders")?
            .ok_or_else(|| loc.error(loc.line(), "localfolders", "is missing"))?;
        let old = tilde(&expand_path(folders.trim(), ctx, true), ctx);
        let path = new_maildir(&old, &a.name);
        let readonly = loc.boolean("readonly")?.is_some_and(|(b, _)| b);
        note_new_maildir(&mut a, Tool::OfflineImap, &old);
        a.at(line);
        let sep = loc.get("sep")?.map(|(s, _)| s.trim().to_owned());
        match sep.as_deref() {
            Some("/") => {}
            other => a.info(
                Table::Local,
                Some("layout"),
                format!(
                    "OfflineIMAP kept subfolders as flat directories (\"Lists{}rust\"); idlewild nests them (\"Lists/rust\"); adjust your mail client's folder list",
                    other.unwrap_or(".")
                ),
            ),
        }
        if local_type == "gmailmaildir" {
            a.warn(
                Table::Local,
                None,
                "GmailMaildir: Gmail labels are not kept in message headers by idlewild; each label is a folder",
            );
        }
        a.local = Local::Maildir {
            path,
            layout: Layout::Nested,
            readonly,
        };
        if let Some((false, line)) = loc.boolean("createfolders")? {
            a.warn(
                Table::Account,
                Some("create"),
                "createfolders = no on the local side: idlewild still creates the server's folders in its new Maildir, which starts empty",
            );
            a.at(line);
        }
        if let Some((folders, line)) = loc.get("folderfilter")? {
            a.todo(
                Table::Folders,
                "a folderfilter on the local repository: idlewild selects folders by their remote names (folders.include, folders.exclude)",
                line,
                &format!("folderfilter = {folders}"),
            );
        }
        if let Some((date, line)) = loc.get("startdate")? {
            a.todo(
                Table::Account,
                "startdate: idlewild's max_age takes a number of days",
                line,
                &format!("startdate = {date}"),
            );
        }
        let flags: Vec<String> = loc
            .unused()
            .iter()
            .filter(|e| e.key.to_lowercase().starts_with("customflag_"))
            .map(|e| e.key.to_lowercase())
            .collect();
        for f in &flags {
            loc.used.insert(f.clone());
        }
        if !flags.is_empty() {
            a.warn(
                Table::Local,
                None,
                format!("{}: IMAP keywords are not written as Maildir letters by idlewild (letters other programs set are kept)", flags.join(", ")),
            );
        }
    } else {
        let imap = imap_side(env, &mut loc, &mut a, Table::Local, false)?;
        local_cf = !matches!(loc.boolean("createfolders")?, Some((false, _)));
        a.local = Local::Imap(Box::new(imap));
    }
    if let Some((false, _)) = loc.boolean("sync_deletes")? {
        local_deletes = false;
    }

    // Folders: selection and names.
    let filter = rem.get("folderfilter")?;
    let nametrans = rem.get("nametrans")?;
    let includes = rem.get("folderincludes")?;
    let idle = rem.get("idlefolders")?;
    let texts: Vec<&str> = [&filter, &nametrans, &includes, &idle]
        .iter()
        .filter_map(|v| v.as_ref().map(|(t, _)| t.as_str()))
        .collect();
    let dot = !gmail
        && texts
            .iter()
            .any(|t| t.contains("INBOX.") || t.contains("INBOX\\."));
    if dot {
        a.info(
            Table::Folders,
            None,
            "the server separates levels with '.' (names start with \"INBOX.\"): idlewild writes them with '/'",
        );
    } else if !gmail && texts.iter().any(|t| has_dotted_name(t)) {
        a.warn(
            Table::Folders,
            None,
            "folder names below are taken to use '/' between levels; if the server separates levels with '.', write them with '/' (INBOX.Sent is INBOX/Sent)",
        );
    }
    let mut selections = Vec::new();
    let mut filter_ok = true;
    if let Some((src, line)) = &filter {
        match filter_selections(src, dot) {
            Ok(s) => selections.extend(s),
            Err(why) => {
                filter_ok = false;
                a.todo(Table::Folders, format!("folderfilter: {why}; every folder is synced until you write folders.include and folders.exclude"), *line, &format!("folderfilter = {src}"));
            }
        }
    }
    if let Some((src, line)) = &includes {
        match string_list(src) {
            Ok(names) => {
                // Folders named here are synced whatever the filter says.
                for n in names {
                    selections.push(Selection(vec![Rule::take(Pat::Exact(server_name(
                        &n, dot,
                    )))]));
                }
            }
            Err(why) => a.todo(
                Table::Folders,
                format!("folderincludes: {why}"),
                *line,
                &format!("folderincludes = {src}"),
            ),
        }
    }
    if filter_ok && !selections.is_empty() {
        if filter.is_none() {
            // folderincludes alone adds to every folder.
            selections.push(Selection(vec![Rule::take(Pat::everything())]));
        }
        match folders::include_exclude(&selections) {
            Ok(set) => {
                a.folders.include = set.include;
                a.folders.exclude = set.exclude;
                for (pattern, why) in set.explained {
                    a.info(Table::Folders, Some("exclude"), format!("{pattern}: {why}"));
                }
            }
            Err(why) => {
                let line = filter.as_ref().map_or(0, |(_, l)| *l);
                let src = filter.as_ref().map_or(String::new(), |(s, _)| s.clone());
                a.todo(
                    Table::Folders,
                    format!("folderfilter: {why}"),
                    line,
                    &format!("folderfilter = {src}"),
                );
            }
        }
    }
    let mut renamed = false;
    if let Some((src, line)) = &nametrans {
        match nametrans_rules(src, dot) {
            Ok(NameTrans::Identity) => {}
            Ok(NameTrans::Strip(prefix)) => {
                a.folders.remote_prefix_strip = Some(prefix);
                renamed = true;
            }
            Ok(NameTrans::Rules(mut rules)) => {
                if let Some((back, _)) = loc.get("nametrans")? {
                    add_reverses(&mut rules, &back, dot);
                }
                a.folders.rename = rules;
                renamed = true;
            }
            Err(why) => {
                a.todo(
                    Table::Folders,
                    format!("nametrans: {why}; folders keep the server's names until you write folders.rename rules"),
                    *line,
                    &format!("nametrans = {src}"),
                );
                renamed = true;
            }
        }
        if loc.get("nametrans")?.is_some() {
            a.info(
                Table::Folders,
                Some("rename"),
                "the local repository's nametrans (the way back) is not needed: idlewild derives the reverse of each rule and checks it by a round trip",
            );
        }
    }
    if gmail {
        if renamed {
            a.info(
                Table::Folders,
                None,
                "preset = \"gmail\" is not set: the rules from nametrans name the Gmail folders as before",
            );
        } else {
            a.folders.preset = Some("gmail".into());
            a.info(
                Table::Folders,
                Some("preset"),
                "Gmail's folders get short local names ([Gmail]/Sent Mail is Sent, [Gmail]/All Mail is Archive, ...); OfflineIMAP kept the server's names",
            );
        }
        if !matches!(a.remote.auth, Auth::OAuth2(_)) {
            a.info(
                Table::Remote,
                Some("password"),
                format!("Gmail: an app password works as it is. To sign in with OAuth2 instead, replace the password with oauth2.provider = \"gmail\" and oauth2.client_id (and client_secret) of an OAuth2 client of your own, then run `idlewild oauth2 authorize {}`", a.name),
            );
        }
    }
    if let Some((src, line)) = &idle {
        match string_list(src) {
            Ok(names) => {
                a.idle = Some(
                    names
                        .iter()
                        .map(|n| glob_escape(&server_name(n, dot)))
                        .collect(),
                );
                a.info(
                    Table::Account,
                    Some("idle"),
                    "watched with IMAP IDLE by `idlewild daemon`",
                );
            }
            Err(why) => a.todo(
                Table::Account,
                format!("idlefolders: {why}"),
                *line,
                &format!("idlefolders = {src}"),
            ),
        }
    }

    // What the two sides may do.
    let remote_cf = !matches!(rem.boolean("createfolders")?, Some((false, _)));
    if !(remote_cf && local_cf) {
        a.create = Some(Sides::of(remote_cf, true));
    }
    let remote_deletes = !matches!(rem.boolean("sync_deletes")?, Some((false, _)));
    match (remote_deletes, local_deletes) {
        (true, true) => {}
        (false, false) => a.sync_deletes = Some(false),
        (r, _) => {
            a.sync_deletes = Some(false);
            a.warn(
                Table::Account,
                Some("sync_deletes"),
                format!(
                    "OfflineIMAP did not propagate deletions from the {} side only; idlewild's sync_deletes = false stops them in both directions",
                    if r { "local" } else { "remote" }
                ),
            );
        }
    }
    if let Some((false, line)) = rem.boolean("expunge")? {
        a.warn(
            Table::Account,
            Some("sync_deletes"),
            "expunge = no: idlewild removes a message deleted on one side from the server for good (OfflineIMAP only marked it \\Deleted); set sync_deletes = false to keep deletions from reaching the server",
        );
        a.at(line);
    }
    if let Some((true, line)) = rem.boolean("subscribedonly")? {
        a.warn(
            Table::Folders,
            None,
            "subscribedonly: idlewild syncs every folder the server lists; name the ones you want in folders.include",
        );
        a.at(line);
    }
    for key in ["newmail_hook", "copy_ignore_eval", "reference"] {
        if let Some((v, line)) = rem.get(key)? {
            a.todo(
                Table::Account,
                format!("{key} has no equivalent in idlewild"),
                line,
                &format!("{key} = {v}"),
            );
        }
    }

    // The account section.
    if let Some((minutes, line)) = acc.get("autorefresh")? {
        let seconds = minutes
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|m| m.is_finite() && *m > 0.0)
            .map(|m| (m * 60.0).round().max(10.0) as u64)
            .ok_or_else(|| {
                acc.error(
                    line,
                    "autorefresh",
                    format!("\"{minutes}\" is not a number of minutes"),
                )
            })?;
        a.interval = Some(seconds);
        a.info(
            Table::Account,
            Some("interval"),
            "autorefresh: `idlewild daemon` syncs a folder as soon as it changes (IMAP IDLE, inotify) and every folder each interval",
        );
    }
    for (key, slot) in [("presynchook", 0), ("postsynchook", 1)] {
        if let Some((line_text, _)) = acc.get(key)? {
            let (argv, shell) = command_argv(line_text.trim());
            if shell {
                a.info(
                    Table::Hooks,
                    None,
                    format!("{key} is a shell command line: run by sh -c"),
                );
            }
            if slot == 0 {
                a.presync = Some(argv);
            } else {
                a.postsync = Some(argv);
            }
        }
    }
    if let Some((size, line)) = acc.get("maxsize")? {
        let bytes = size.trim().parse::<u64>().map_err(|_| {
            acc.error(
                line,
                "maxsize",
                format!("\"{size}\" is not a number of bytes"),
            )
        })?;
        if bytes > 0 {
            a.max_size = Some(MaxSize::Bytes(bytes));
            a.info(
                Table::Account,
                Some("max_size"),
                "bigger messages are not copied; idlewild lists them in its report",
            );
        }
    }
    if let Some((age, line)) = acc.get("maxage")? {
        match age.trim().parse::<u32>() {
            Ok(days) if days > 0 => a.max_age = Some(days),
            _ => a.todo(
                Table::Account,
                "maxage as a date: idlewild's max_age takes a number of days",
                line,
                &format!("maxage = {age}"),
            ),
        }
    }
    if let Some((true, line)) = acc.boolean("synclabels")? {
        a.warn(
            Table::Account,
            None,
            "synclabels: idlewild does not write Gmail labels into message headers; each label is a folder",
        );
        a.at(line);
    }
    if let Some((true, line)) = acc.boolean("maildir-windows-compatible")? {
        a.warn(
            Table::Local,
            None,
            "maildir-windows-compatible: idlewild writes standard Maildir names (with ':')",
        );
        a.at(line);
    }
    for key in ["proxy", "authproxy", "filterheaders"] {
        if let Some((v, line)) = acc.get(key)? {
            let why = if key == "filterheaders" {
                "filterheaders: idlewild uploads messages unchanged"
            } else {
                "connections through a proxy are not supported by idlewild"
            };
            a.todo(Table::Account, why, line, &format!("{key} = {v}"));
        }
    }
    acc.used
        .extend(["localrepository", "remoterepository"].map(String::from));
    for r in [&acc, &rem, &loc] {
        report_unused(r, &mut a);
    }
    Ok(Some(a))
}

/// Reports what nothing translated: harmless tuning as one comment, the rest as warnings.
fn report_unused(r: &Reader<'_>, a: &mut Account) {
    let mut harmless = Vec::new();
    for e in r.unused() {
        let key = e.key.to_lowercase();
        if HARMLESS.contains(&key.as_str()) {
            harmless.push(e.key.clone());
        } else {
            a.warn(
                Table::Account,
                None,
                format!(
                    "[{}] {} = {}: not translated",
                    r.section,
                    e.key,
                    shown_value(&key, &e.raw)
                ),
            );
            a.at(e.line);
        }
    }
    if !harmless.is_empty() {
        a.info(
            Table::Account,
            None,
            format!(
                "[{}] {}: not needed by idlewild",
                r.section,
                harmless.join(", ")
            ),
        );
    }
}

/// A value for a message or comment, unless its key says it holds a secret.
fn shown_value<'v>(key: &str, value: &'v str) -> &'v str {
    if super::secret_key(key) {
        "(hidden)"
    } else {
        value
    }
}

/// The connection of an IMAP repository.
fn imap_side(
    env: &AccountEnv<'_>,
    r: &mut Reader<'_>,
    a: &mut Account,
    table: Table,
    gmail: bool,
) -> Result<Imap, ImportError> {
    let ctx = env.ctx;
    let mut imap = Imap::new(String::new());
    imap.timeout = env.timeout;
    match (r.get("remotehost")?, r.get("remotehosteval")?) {
        (Some((h, _)), _) => imap.host = h.trim().to_owned(),
        (None, Some((expr, line))) => match python::parse(&expr) {
            Ok(Expr::Str(h)) => imap.host = h,
            _ => a.todo(
                table,
                "remotehosteval: write the host name into host",
                line,
                &format!("remotehosteval = {expr}"),
            ),
        },
        (None, None) if gmail => imap.host = GMAIL_HOST.into(),
        (None, None) => return Err(r.error(r.line(), "remotehost", "is missing")),
    }
    match (r.get("remoteport")?, r.get("remoteporteval")?) {
        (Some((p, line)), _) => {
            imap.port = Some(
                p.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        r.error(line, "remoteport", format!("\"{p}\" is not a port number"))
                    })?,
            );
        }
        (None, Some((expr, line))) => match python::parse(&expr) {
            Ok(Expr::Int(p)) if (1..=65535).contains(&p) => imap.port = u16::try_from(p).ok(),
            _ => a.todo(
                table,
                "remoteporteval: write the port into port",
                line,
                &format!("remoteporteval = {expr}"),
            ),
        },
        (None, None) => {}
    }
    let ssl = r.boolean("ssl")?.is_none_or(|(b, _)| b);
    let starttls = r.boolean("starttls")?.is_none_or(|(b, _)| b);
    imap.tls = match (ssl, starttls) {
        (true, _) => Tls::Implicit,
        (false, true) => Tls::Starttls,
        (false, false) => Tls::None,
    };
    if imap.tls == Tls::None && !crate::config::is_loopback(&imap.host) {
        a.warn(
            table,
            Some("tls"),
            format!("ssl = no and starttls = no sent the password in clear text; idlewild refuses tls = \"none\" except to this machine: set \"starttls\" (or \"implicit\") if {} offers it", imap.host),
        );
    }
    match (r.get("remoteuser")?, r.get("remoteusereval")?) {
        (Some((u, _)), _) => imap.user = u.trim().to_owned(),
        (None, Some((expr, line))) => match python::parse(&expr) {
            Ok(Expr::Str(u)) => imap.user = u,
            _ => a.todo(
                table,
                "remoteusereval: write the login name into user",
                line,
                &format!("remoteusereval = {expr}"),
            ),
        },
        (None, None) => a.warn(
            table,
            Some("user"),
            "no remoteuser: write the login name into user",
        ),
    }
    if let Some((ca, line)) = r.get("sslcacertfile")? {
        let ca = expand_path(ca.trim(), ctx, true);
        if ca == "OS-DEFAULT" || SYSTEM_BUNDLES.contains(&ca.as_str()) {
            a.info(
                table,
                Some("tls"),
                format!("sslcacertfile = {ca}: idlewild always trusts the system's certificates"),
            );
        } else {
            imap.ca_file = Some(tilde(&ca, ctx));
            a.info(
                table,
                Some("ca_file"),
                "trusted besides the system's certificates",
            );
            a.at(line);
        }
    }
    if let Some((fps, line)) = r.get("cert_fingerprint")? {
        let all: Vec<String> = fps
            .split(',')
            .map(|f| f.trim().replace(':', "").to_ascii_lowercase())
            .filter(|f| !f.is_empty())
            .collect();
        match all.iter().find(|f| f.len() == 64 && f.chars().all(|c| c.is_ascii_hexdigit())) {
            Some(sha256) => {
                imap.cert_fingerprint = Some(format!("sha256:{sha256}"));
                if all.len() > 1 {
                    a.warn(table, Some("cert_fingerprint"), "idlewild pins one certificate: the first SHA-256 fingerprint is kept");
                    a.at(line);
                }
            }
            None => a.todo(
                table,
                "cert_fingerprint: idlewild pins SHA-256 fingerprints only; the first sync's error shows the server's, ready to copy",
                line,
                &format!("cert_fingerprint = {fps}"),
            ),
        }
    }
    for key in ["sslclientcert", "sslclientkey"] {
        if let Some((v, line)) = r.get(key)? {
            a.todo(
                table,
                "client certificates are not supported by idlewild",
                line,
                &format!("{key} = {v}"),
            );
        }
    }
    for key in ["preauthtunnel", "transporttunnel"] {
        if let Some((v, line)) = r.get(key)? {
            a.todo(
                table,
                "tunnels are not supported by idlewild: it connects to host and port itself",
                line,
                &format!("{key} = {v}"),
            );
        }
    }
    if let Some((true, _)) = r.boolean("readonly")? {
        imap.readonly = true;
    }
    imap.auth = auth(env, r, a, table, gmail)?;
    Ok(imap)
}

/// How the account logs in: OAuth2, `remotepasseval`, `remotepass`, `remotepassfile`, or (as
/// OfflineIMAP asked for it or read `~/.netrc`) the keyring.
fn auth(
    env: &AccountEnv<'_>,
    r: &mut Reader<'_>,
    a: &mut Account,
    table: Table,
    gmail: bool,
) -> Result<Auth, ImportError> {
    let ctx = env.ctx;
    let name = a.name.clone();
    let mechanisms = r
        .get("auth_mechanisms")?
        .map(|(m, _)| m.to_ascii_uppercase());
    let oauth_keys = [
        "oauth2_refresh_token",
        "oauth2_refresh_token_eval",
        "oauth2_access_token",
        "oauth2_access_token_eval",
    ];
    let has_token = oauth_keys.iter().any(|k| r.has(k));
    let wants_oauth = mechanisms.as_deref().is_none_or(|m| m.contains("XOAUTH2"));
    if has_token && wants_oauth {
        let mut o = OAuth2 {
            mechanism: Some("xoauth2".into()),
            ..OAuth2::default()
        };
        let literal = |r: &mut Reader<'_>,
                       a: &mut Account,
                       key: &str|
         -> Result<Option<String>, ImportError> {
            if let Some((v, _)) = r.get(key)? {
                return Ok(Some(v.trim().to_owned()));
            }
            let eval = format!("{key}_eval");
            if let Some((expr, line)) = r.get(&eval)? {
                match python::parse(&expr) {
                    Ok(Expr::Str(s)) => return Ok(Some(s)),
                    _ => a.todo(
                        table,
                        format!(
                            "{eval}: write the value into oauth2.{}",
                            key.trim_start_matches("oauth2_")
                        ),
                        line,
                        &format!("{eval} = {expr}"),
                    ),
                }
            }
            Ok(None)
        };
        if let Some((expr, line)) = r.get("oauth2_access_token_eval")? {
            o.token_command = Some(python_command(&expr, env.pythonfile));
            a.warn(
                table,
                Some("password"),
                "oauth2_access_token_eval is Python: it becomes a python3 program (loading your pythonfile) that prints the access token; check it with `idlewild password check`",
            );
            a.at(line);
            for key in [
                "oauth2_client_id",
                "oauth2_client_secret",
                "oauth2_request_url",
                "oauth2_refresh_token",
                "oauth2_client_id_eval",
                "oauth2_client_secret_eval",
                "oauth2_refresh_token_eval",
            ] {
                r.used.insert(key.into());
            }
            return Ok(Auth::OAuth2(o));
        }
        let url = r
            .get("oauth2_request_url")?
            .map(|(u, _)| u.trim().to_owned())
            .or_else(|| gmail.then(|| GOOGLE_TOKEN_URL.to_owned()));
        match url.as_deref() {
            Some(u) if u.contains("google") => o.provider = Some("gmail".into()),
            Some(u) if u.contains("microsoftonline") => o.provider = Some("outlook".into()),
            Some(u) => {
                o.token_url = Some(u.to_owned());
                a.warn(table, Some("password"), "idlewild oauth2 authorize also needs oauth2.authorize_url, the provider's authorization endpoint");
            }
            None => a.warn(
                table,
                Some("password"),
                "no oauth2_request_url: set oauth2.token_url (and oauth2.authorize_url)",
            ),
        }
        o.client_id = literal(r, a, "oauth2_client_id")?;
        o.client_secret = literal(r, a, "oauth2_client_secret")?;
        if o.client_id.is_none() {
            a.warn(
                table,
                Some("password"),
                "no oauth2_client_id: set oauth2.client_id",
            );
        }
        if r.get("oauth2_refresh_token")?.is_some() {
            a.warn(
                table,
                Some("password"),
                format!("the refresh token goes into the keyring, not this file: run `idlewild oauth2 authorize {name}`, or store the oauth2_refresh_token of your offlineimaprc with `secret-tool store --label=idlewild service idlewild-oauth2 username {name}`"),
            );
        } else if let Some((expr, line)) = r.get("oauth2_refresh_token_eval")? {
            a.warn(
                table,
                Some("password"),
                format!("the refresh token goes into the keyring: run `idlewild oauth2 authorize {name}`, or store what oauth2_refresh_token_eval = {expr} gives with `secret-tool store --label=idlewild service idlewild-oauth2 username {name}`"),
            );
            a.at(line);
        } else if r.get("oauth2_access_token")?.is_some() {
            a.warn(
                table,
                Some("password"),
                format!("a fixed oauth2_access_token expires within the hour: idlewild refreshes tokens itself; run `idlewild oauth2 authorize {name}`"),
            );
        }
        return Ok(Auth::OAuth2(o));
    }
    for key in [
        "oauth2_client_id",
        "oauth2_client_secret",
        "oauth2_request_url",
        "oauth2_client_id_eval",
        "oauth2_client_secret_eval",
    ] {
        r.used.insert(key.into());
    }

    // OfflineIMAP's order: remotepasseval, remotepass, remotepassfile, ~/.netrc, a prompt.
    let eval = r.get("remotepasseval")?;
    let plain = r.get("remotepass")?;
    let file = r.get("remotepassfile")?;
    let given = [eval.is_some(), plain.is_some(), file.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if given > 1 {
        a.info(table, Some("password"), "of remotepasseval, remotepass and remotepassfile, the first (as OfflineIMAP reads them) is used");
    }
    if let Some((expr, line)) = eval {
        let auth = password_eval(&expr, env.pythonfile, a, table, &name);
        a.at(line);
        return Ok(auth);
    }
    if let Some((pass, line)) = plain {
        a.warn(
            table,
            Some("password"),
            format!("a password in the configuration file: better keep it in the keyring (`idlewild password set {name}`, then remove this line) or use password.command = [\"pass\", \"show\", \"...\"]"),
        );
        a.at(line);
        return Ok(Auth::Plain(pass));
    }
    if let Some((path, line)) = file {
        let path = expand_path(path.trim(), ctx, true);
        a.info(
            table,
            Some("password"),
            "remotepassfile: the first line of the file is the password",
        );
        a.at(line);
        return Ok(Auth::Command(vec!["cat".into(), path]));
    }
    a.info(
        table,
        Some("password"),
        format!("OfflineIMAP asked for the password (or read ~/.netrc): store it in the keyring once with `idlewild password set {name}`"),
    );
    Ok(Auth::Keyring)
}

/// `remotepasseval`: a keyring lookup, a command, or Python run as a `python3` program.
fn password_eval(
    expr: &str,
    pythonfile: Option<&str>,
    a: &mut Account,
    table: Table,
    name: &str,
) -> Auth {
    let parsed = python::parse(expr);
    if let Ok(Expr::Str(s)) = &parsed {
        a.warn(table, Some("password"), format!("a password in the configuration file: better keep it in the keyring (`idlewild password set {name}`)"));
        return Auth::Plain(s.clone());
    }
    if let Ok(e) = &parsed {
        if let Expr::Call { func, args, .. } = e
            && func.dotted().as_deref() == Some("keyring.get_password")
            && let [Expr::Str(service), Expr::Str(user)] = args.as_slice()
        {
            a.warn(
                table,
                Some("password"),
                format!("the password is in the keyring under Python keyring's names: copy it to idlewild's once with `secret-tool lookup service {} username {} | idlewild password set {name}`", shell_quote(service), shell_quote(user)),
            );
            return Auth::Keyring;
        }
        if let Some((argv, had_shell, shell)) = command_of(e) {
            match (had_shell, shell) {
                (_, true) => a.info(
                    table,
                    Some("password"),
                    "the command is a shell command line: run by sh -c, as before",
                ),
                (true, false) => a.warn(
                    table,
                    Some("password"),
                    "the command is run without a shell now (it holds nothing a shell would interpret, so it behaves the same)",
                ),
                (false, false) => a.info(
                    table,
                    Some("password"),
                    "the command runs without a shell, as before; the first line it prints is the password",
                ),
            }
            return Auth::Command(argv);
        }
    }
    let file = pythonfile.unwrap_or("(no pythonfile)");
    a.warn(
        table,
        Some("password"),
        format!("remotepasseval is Python: it becomes a python3 program that loads {file} and prints the value; check it with `idlewild password check {name}`"),
    );
    Auth::Command(python_command(expr, pythonfile))
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./@:+=,".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The command a Python expression runs, as `subprocess.check_output([...])`,
/// `subprocess.check_output("...", shell=True)` or `os.popen("...").read()` with `.strip()` and
/// the like around it. The flags say whether it was run by a shell, and whether it needs one.
fn command_of(e: &Expr) -> Option<(Vec<String>, bool, bool)> {
    let mut e = e;
    // Peel what only tidies the output: the first line of the output is taken anyway.
    loop {
        match e {
            Expr::Call { func, .. } => match func.as_ref() {
                Expr::Attr(base, m)
                    if matches!(
                        m.as_str(),
                        "strip" | "rstrip" | "decode" | "read" | "rstrip_newline"
                    ) =>
                {
                    e = base;
                }
                _ => break,
            },
            Expr::Attr(base, m) if m == "stdout" => e = base,
            _ => break,
        }
    }
    let Expr::Call { func, args, kwargs } = e else {
        return None;
    };
    let f = func.dotted()?;
    let shell = kwargs
        .iter()
        .any(|(k, v)| k == "shell" && *v == Expr::Bool(true));
    match (f.as_str(), args.first()?) {
        (
            "subprocess.check_output" | "check_output" | "subprocess.run" | "run",
            Expr::Seq(items),
        ) if !shell => {
            let argv: Option<Vec<String>> = items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect();
            argv.filter(|v| !v.is_empty()).map(|v| (v, false, false))
        }
        (
            "subprocess.check_output" | "check_output" | "subprocess.run" | "run",
            Expr::Str(line),
        ) if shell => {
            let (argv, needs) = command_argv(line);
            Some((argv, true, needs))
        }
        ("subprocess.getoutput" | "os.popen", Expr::Str(line)) => {
            let (argv, needs) = command_argv(line);
            Some((argv, true, needs))
        }
        _ => None,
    }
}

/// A `python3 -c` program printing the value of `expr`, evaluated as OfflineIMAP does: with the
/// names of the pythonfile.
fn python_command(expr: &str, pythonfile: Option<&str>) -> Vec<String> {
    let load = match pythonfile {
        Some(f) => format!("import runpy\nns = runpy.run_path({})\n", python::repr(f)),
        None => "ns = {}\n".to_owned(),
    };
    let program = format!(
        "{load}value = eval({}, ns)\nprint(value.decode() if isinstance(value, bytes) else value)\n",
        python::repr(expr.trim())
    );
    vec!["python3".into(), "-c".into(), program]
}

/// A list of strings, as `['INBOX', 'Sent']`.
fn string_list(src: &str) -> Result<Vec<String>, String> {
    match python::parse(src)? {
        Expr::Seq(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "only lists of strings are translated".to_owned())
            })
            .collect(),
        _ => Err("only lists of strings are translated".into()),
    }
}

/// A server name in idlewild's spelling.
fn server_name(name: &str, dot: bool) -> String {
    if dot {
        name.replace('.', "/")
    } else {
        name.to_owned()
    }
}

/// Whether a quoted name in `text` holds a dot, as `'INBOX.Sent'` on a server separating
/// levels with dots would.
fn has_dotted_name(text: &str) -> bool {
    let Ok(e) = python::parse(text) else {
        return false;
    };
    fn walk(e: &Expr) -> bool {
        match e {
            Expr::Str(s) => s.contains('.') && !s.contains('\\'),
            Expr::Seq(items) | Expr::And(items) | Expr::Or(items) => items.iter().any(walk),
            Expr::Compare(l, _, r) | Expr::Add(l, r) | Expr::BitOr(l, r) => walk(l) || walk(r),
            Expr::Not(x) | Expr::Lambda(_, x) | Expr::Attr(x, _) => walk(x),
            Expr::Call { func, args, .. } => {
                // A regular expression's dots are wildcards, not names.
                let regex = func.dotted().is_some_and(|f| f.starts_with("re."));
                walk(func) || (!regex && args.iter().any(walk))
            }
            Expr::Dict(pairs) => pairs.iter().any(|(k, _)| walk(k)),
            Expr::Name(_) | Expr::Int(_) | Expr::Bool(_) | Expr::None => false,
        }
    }
    walk(&e)
}

/// Escapes the glob characters of `idle` patterns (globset: `*`, `?`, `[`, `{`).
fn glob_escape(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// ---- folderfilter ---------------------------------------------------------------------------------

/// One term of a filter in disjunctive normal form: all of `pos` and none of `neg`.
#[derive(Debug, Clone, Default)]
struct Term {
    pos: Vec<Pat>,
    neg: Vec<Pat>,
}

const MAX_TERMS: usize = 256;

/// Translates `lambda folder: ...` into selections (one per term of the filter).
pub(super) fn filter_selections(src: &str, dot: bool) -> Result<Vec<Selection>, String> {
    let e = python::parse(src)?;
    let Expr::Lambda(params, body) = e else {
        return Err(match e {
            Expr::Name(n) => format!("calls {n}, a function of the pythonfile"),
            _ => "not a lambda".into(),
        });
    };
    let [param] = params.as_slice() else {
        return Err("the lambda must take one argument".into());
    };
    let terms = dnf(&body, param, dot, false)?;
    let mut out = Vec::new();
    for t in terms {
        let mut rules = Vec::new();
        match t.pos.as_slice() {
            [] => rules.push(Rule::take(Pat::everything())),
            [p] => rules.push(Rule::take(p.clone())),
            many => {
                // Several tests that must all hold: only translatable when one of them names
                // the folders outright.
                let names: Vec<&String> = many
                    .iter()
                    .filter_map(|p| match p {
                        Pat::Exact(e) => Some(e),
                        _ => None,
                    })
                    .collect();
                let Some(first) = names.first() else {
                    return Err(
                        "two tests that must both hold, neither of them a list of names".into(),
                    );
                };
                if many.iter().all(|p| p.matches(first)) {
                    rules.push(Rule::take(Pat::Exact((*first).clone())));
                } else {
                    continue;
                }
            }
        }
        rules.extend(t.neg.into_iter().map(Rule::skip));
        out.push(Selection(rules));
    }
    Ok(out)
}

/// The filter `e` (negated when `neg`) in disjunctive normal form.
fn dnf(e: &Expr, param: &str, dot: bool, neg: bool) -> Result<Vec<Term>, String> {
    match e {
        Expr::Bool(b) => Ok(if *b != neg {
            vec![Term::default()]
        } else {
            Vec::new()
        }),
        Expr::Not(x) => dnf(x, param, dot, !neg),
        Expr::Or(items) if !neg => union(items, param, dot, false),
        Expr::And(items) if neg => union(items, param, dot, true),
        Expr::And(items) | Expr::Or(items) => {
            let mut acc = vec![Term::default()];
            for item in items {
                let terms = dnf(item, param, dot, neg)?;
                let mut next = Vec::new();
                for a in &acc {
                    for t in &terms {
                        let mut both = a.clone();
                        both.pos.extend(t.pos.iter().cloned());
                        both.neg.extend(t.neg.iter().cloned());
                        next.push(both);
                    }
                }
                if next.len() > MAX_TERMS {
                    return Err("the filter is too large to translate".into());
                }
                acc = next;
            }
            Ok(acc)
        }
        atom => {
            let (pats, negated) = test(atom, param, dot)?;
            if neg != negated {
                // Not any of them: one term excluding each.
                Ok(vec![Term {
                    pos: Vec::new(),
                    neg: pats,
                }])
            } else {
                Ok(pats
                    .into_iter()
                    .map(|p| Term {
                        pos: vec![p],
                        neg: Vec::new(),
                    })
                    .collect())
            }
        }
    }
}

fn union(items: &[Expr], param: &str, dot: bool, neg: bool) -> Result<Vec<Term>, String> {
    let mut out = Vec::new();
    for item in items {
        out.extend(dnf(item, param, dot, neg)?);
    }
    if out.len() > MAX_TERMS {
        return Err("the filter is too large to translate".into());
    }
    Ok(out)
}

/// One test of the folder name: the patterns of which it holds when any matches, and whether
/// it is negated itself (`not in`, `!=`).
fn test(e: &Expr, param: &str, dot: bool) -> Result<(Vec<Pat>, bool), String> {
    let is_param = |e: &Expr| matches!(e, Expr::Name(n) if n == param);
    let name = |s: &str| server_name(s, dot);
    match e {
        Expr::Compare(l, op, r) if is_param(l) => {
            let pats = match r.as_ref() {
                Expr::Seq(items) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(|s| Pat::Exact(name(s)))
                            .ok_or("only lists of strings are translated")
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Expr::Str(s) if matches!(op, CmpOp::Eq | CmpOp::Ne) => vec![Pat::Exact(name(s))],
                Expr::Str(_) => return Err(
                    "`folder in 'text'` tests a substring of a string; write the names as a list"
                        .into(),
                ),
                _ => return Err(
                    "comparisons with anything but strings and lists of strings are not translated"
                        .into(),
                ),
            };
            let negated = matches!(op, CmpOp::Ne | CmpOp::NotIn);
            if matches!(op, CmpOp::Eq | CmpOp::Ne) && !matches!(r.as_ref(), Expr::Str(_)) {
                return Err("== compares with a string only".into());
            }
            Ok((pats, negated))
        }
        Expr::Compare(l, op, r) if is_param(r) => match (l.as_ref(), op) {
            (Expr::Str(s), CmpOp::Eq | CmpOp::Ne) => {
                Ok((vec![Pat::Exact(name(s))], *op == CmpOp::Ne))
            }
            (Expr::Str(s), CmpOp::In | CmpOp::NotIn) => Ok((
                vec![Pat::regex(format!("^.*{}.*$", regex::escape(&name(s))))?],
                *op == CmpOp::NotIn,
            )),
            _ => Err("this comparison is not translated".into()),
        },
        Expr::Call { func, args, kwargs } => {
            if let Expr::Attr(base, method) = func.as_ref()
                && is_param(base)
                && kwargs.is_empty()
            {
                let strings: Vec<String> = match args.as_slice() {
                    [Expr::Str(s)] => vec![s.clone()],
                    [Expr::Seq(items)] => items
                        .iter()
                        .map(|i| {
                            i.as_str()
                                .map(str::to_owned)
                                .ok_or("only strings are translated")
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(format!("{method} with these arguments is not translated")),
                };
                return match method.as_str() {
                    "startswith" => Ok((
                        strings.iter().map(|s| Pat::Prefix(name(s))).collect(),
                        false,
                    )),
                    "endswith" => Ok((
                        strings
                            .iter()
                            .map(|s| Pat::regex(format!("^.*{}$", regex::escape(&name(s)))))
                            .collect::<Result<_, _>>()?,
                        false,
                    )),
                    m => Err(format!("folder.{m}(...) is not translated")),
                };
            }
            Ok((vec![regex_test(func, args, kwargs, param, dot)?], false))
        }
        _ => Err("a test this translation does not know".into()),
    }
}

/// `re.search(pattern, folder)`, `re.match(...)`, `re.fullmatch(...)`, with flags, or
/// `re.compile(pattern).search(folder)`.
fn regex_test(
    func: &Expr,
    args: &[Expr],
    kwargs: &[(String, Expr)],
    param: &str,
    dot: bool,
) -> Result<Pat, String> {
    let is_param = |e: &Expr| matches!(e, Expr::Name(n) if n == param);
    let (kind, pattern, flags) = match (func.dotted().as_deref(), args) {
        (
            Some(f @ ("re.search" | "re.match" | "re.fullmatch")),
            [Expr::Str(p), subject, rest @ ..],
        ) if is_param(subject) => {
            let flags = rest
                .first()
                .or_else(|| kwargs.iter().find(|(k, _)| k == "flags").map(|(_, v)| v));
            (
                f.trim_start_matches("re.").to_owned(),
                p.clone(),
                flags.cloned(),
            )
        }
        _ => match func {
            Expr::Attr(base, method) if matches!(args, [s] if is_param(s)) => match base.as_ref() {
                Expr::Call {
                    func: compile,
                    args: cargs,
                    ..
                } if compile.dotted().as_deref() == Some("re.compile") => match cargs.as_slice() {
                    [Expr::Str(p), rest @ ..] => (method.clone(), p.clone(), rest.first().cloned()),
                    _ => return Err("re.compile with these arguments is not translated".into()),
                },
                _ => return Err("a call this translation does not know".into()),
            },
            _ => return Err("a call this translation does not know".into()),
        },
    };
    let prefix = match &flags {
        None => "",
        Some(f) => regex_flags(f)?,
    };
    let converted = python_regex(&pattern, dot)?;
    let anchored = match kind.as_str() {
        "search" => folders::search_anchored(&converted),
        "match" => folders::match_anchored(&converted),
        "fullmatch" => format!("^(?:{converted})$"),
        other => return Err(format!("re.{other} is not translated")),
    };
    Pat::regex(format!("{prefix}{anchored}"))
}

fn regex_flags(e: &Expr) -> Result<&'static str, String> {
    let mut ignore_case = false;
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match e {
            Expr::BitOr(a, b) => {
                stack.push(a);
                stack.push(b);
            }
            other => match other.dotted().as_deref() {
                Some("re.I" | "re.IGNORECASE") => ignore_case = true,
                Some("re.U" | "re.UNICODE") => {}
                _ => {
                    return Err(
                        "regular-expression flags other than re.IGNORECASE are not translated"
                            .into(),
                    );
                }
            },
        }
    }
    Ok(if ignore_case { "(?i)" } else { "" })
}

// ---- nametrans ------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NameTrans {
    Identity,
    /// `folders.remote_prefix_strip`.
    Strip(String),
    Rules(Vec<Rename>),
}

/// One function applied by a nametrans, innermost first.
#[derive(Debug, Clone)]
enum Step {
    Sub {
        pattern: String,
        repl: String,
        ignore_case: bool,
    },
    Map(Vec<(String, String)>),
    Replace(String, String),
}

fn steps(e: &Expr, param: &str) -> Result<Vec<Step>, String> {
    match e {
        Expr::Name(n) if n == param => Ok(Vec::new()),
        Expr::Call { func, args, kwargs } => {
            if func.dotted().as_deref() == Some("re.sub") {
                let [Expr::Str(pattern), Expr::Str(repl), inner, rest @ ..] = args.as_slice()
                else {
                    return Err(
                        "re.sub with a replacement that is not a string is not translated".into(),
                    );
                };
                let mut ignore_case = false;
                for (i, extra) in rest.iter().enumerate() {
                    match (i, extra) {
                        (0, Expr::Int(_)) => {}
                        (1, f) => ignore_case = regex_flags(f)? == "(?i)",
                        _ => return Err("re.sub with these arguments is not translated".into()),
                    }
                }
                for (k, v) in kwargs {
                    match k.as_str() {
                        "count" => {}
                        "flags" => ignore_case = regex_flags(v)? == "(?i)",
                        _ => return Err(format!("re.sub with {k}= is not translated")),
                    }
                }
                let mut out = steps(inner, param)?;
                out.push(Step::Sub {
                    pattern: pattern.clone(),
                    repl: repl.clone(),
                    ignore_case,
                });
                return Ok(out);
            }
            match func.as_ref() {
                Expr::Attr(base, m) if m == "get" => {
                    let Expr::Dict(pairs) = base.as_ref() else {
                        return Err("only {...}.get(folder, folder) is translated".into());
                    };
                    let [key, default] = args.as_slice() else {
                        return Err("only {...}.get(folder, folder) is translated".into());
                    };
                    if key != default {
                        return Err("only {...}.get(folder, folder) is translated: other folders must keep their names".into());
                    }
                    let map = pairs
                        .iter()
                        .map(|(k, v)| match (k, v) {
                            (Expr::Str(k), Expr::Str(v)) => Ok((k.clone(), v.clone())),
                            _ => Err("only dictionaries of strings are translated".to_owned()),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let mut out = steps(key, param)?;
                    out.push(Step::Map(map));
                    Ok(out)
                }
                Expr::Attr(base, m) if m == "replace" => match args.as_slice() {
                    [Expr::Str(a), Expr::Str(b)] => {
                        let mut out = steps(base, param)?;
                        out.push(Step::Replace(a.clone(), b.clone()));
                        Ok(out)
                    }
                    _ => Err("replace with these arguments is not translated".into()),
                },
                _ => Err("a call this translation does not know".into()),
            }
        }
        _ => Err("an expression this translation does not know".into()),
    }
}

/// Translates `lambda folder: ...` into rename rules (first match wins).
pub(super) fn nametrans_rules(src: &str, dot: bool) -> Result<NameTrans, String> {
    let e = python::parse(src)?;
    let Expr::Lambda(params, body) = e else {
        return Err(match e {
            Expr::Name(n) => format!("calls {n}, a function of the pythonfile"),
            _ => "not a lambda".into(),
        });
    };
    let [param] = params.as_slice() else {
        return Err("the lambda must take one argument".into());
    };
    let steps = steps(&body, param)?;
    // One rule list per step, in the order they apply.
    let mut per_step: Vec<Vec<Rename>> = Vec::new();
    let mut strip = None;
    for step in &steps {
        let rules = match step {
            Step::Map(map) => map
                .iter()
                .map(|(k, v)| Rename::exact(&server_name(k, dot), &server_name(v, dot)))
                .collect(),
            Step::Replace(from, to) => {
                if dot && from == "." && to == "/" {
                    Vec::new()
                } else {
                    return Err(format!(
                        "replacing \"{from}\" by \"{to}\" everywhere in a name is not translated"
                    ));
                }
            }
            Step::Sub {
                pattern,
                repl,
                ignore_case,
            } => {
                let (rule, is_strip) = sub_rule(pattern, repl, *ignore_case, dot)?;
                if let Some(prefix) = is_strip
                    && steps.len() == 1
                {
                    strip = Some(prefix);
                }
                vec![rule]
            }
        };
        per_step.push(rules);
    }
    if let Some(prefix) = strip {
        return Ok(NameTrans::Strip(prefix));
    }
    // Applying the steps one after the other is the same as taking the first matching rule
    // when nothing one step makes is changed again by a later one.
    for (i, rules) in per_step.iter().enumerate() {
        for rule in rules {
            let later: Vec<&Rename> = per_step[i + 1..].iter().flatten().collect();
            if later.is_empty() {
                continue;
            }
            if rule.local.contains("${") {
                return Err("a re.sub whose result depends on the name is followed by another step, which could change it again".into());
            }
            let made = rule.local.replace("$$", "$");
            if let Some(other) = later.iter().find(|r| r.apply(&made).is_some()) {
                return Err(format!(
                    "\"{made}\" made by one step would be changed again by a later one ({})",
                    other.remote
                ));
            }
        }
    }
    let rules: Vec<Rename> = per_step.into_iter().flatten().collect();
    if rules.is_empty() {
        return Ok(NameTrans::Identity);
    }
    for r in &rules {
        if r.local.is_empty() {
            return Err(format!("{} would leave a folder without a name", r.remote));
        }
    }
    Ok(NameTrans::Rules(rules))
}

/// One `re.sub(pattern, repl, folder)` as a rule over whole names, when the substitution can
/// happen at most once (anchored at the start or end, or starting with `.*`); with the prefix
/// when it only strips a literal prefix.
fn sub_rule(
    pattern: &str,
    repl: &str,
    ignore_case: bool,
    dot: bool,
) -> Result<(Rename, Option<String>), String> {
    let p = python_regex(pattern, dot)?;
    let r = python_replacement(repl, dot)?;
    let flags = if ignore_case { "(?i)" } else { "" };
    let compiled =
        regex::Regex::new(&p).map_err(|e| format!("not a usable regular expression: {e}"))?;
    let groups = compiled.captures_len() - 1;
    if folders::top_level_alternation(&p) {
        return Err("a pattern with alternatives at its top level is not translated".into());
    }
    let ends = folders::ends_with_anchor(&p);
    let (remote, local) = if p.starts_with('^') || p.starts_with(".*") {
        // `.*` at the start matches from the first position on, like `^`.
        let body = p.strip_prefix('^').unwrap_or(&p);
        if ends {
            let body = &body[..body.len() - 1];
            (format!("{flags}^(?:{body})$"), r)
        } else {
            if let Some(literal) = literal_of(body)
                && r.is_empty()
                && !ignore_case
                && literal.ends_with('/')
            {
                return Ok((Rename::prefix(&literal, ""), Some(literal)));
            }
            (
                format!("{flags}^(?:{body})(.*)$"),
                format!("{r}${{{}}}", groups + 1),
            )
        }
    } else if ends {
        if compiled.is_match("") {
            return Err(
                "the pattern can match an empty name, and re.sub would insert at every position"
                    .into(),
            );
        }
        let body = &p[..p.len() - 1];
        (
            format!("{flags}^(.*?)(?:{body})$"),
            format!("${{1}}{}", shift_groups(&r, 1)),
        )
    } else {
        return Err("re.sub replaces every match anywhere in the name; only patterns anchored with ^ or $ (or starting with .*) are translated".into());
    };
    regex::Regex::new(&remote).map_err(|e| format!("not a usable regular expression: {e}"))?;
    Ok((
        Rename {
            remote,
            local,
            local_match: None,
            remote_replace: None,
        },
        None,
    ))
}

/// The text a regular expression matches when it is a plain literal.
fn literal_of(re: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let e = chars.next()?;
                if e.is_ascii_alphanumeric() {
                    return None;
                }
                out.push(e);
            }
            '.' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' => {
                return None;
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// Renumbers `${n}` in a replacement by `by`, for a group inserted before the others.
fn shift_groups(repl: &str, by: usize) -> String {
    let mut out = String::new();
    let mut rest = repl;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push_str("$$");
            rest = r;
        } else if let Some((inner, r)) = after.strip_prefix('{').and_then(|a| a.split_once('}')) {
            match inner.parse::<usize>() {
                Ok(n) => out.push_str(&format!("${{{}}}", n + by)),
                Err(_) => out.push_str(&format!("${{{inner}}}")),
            }
            rest = r;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Gives rules whose reverse idlewild cannot derive the explicit way back the local
/// repository's nametrans spells out, when it maps names to names.
fn add_reverses(rules: &mut [Rename], back: &str, dot: bool) {
    let Ok(Expr::Lambda(params, body)) = python::parse(back) else {
        return;
    };
    let [param] = params.as_slice() else { return };
    let Ok(steps) = steps(&body, param) else {
        return;
    };
    let [Step::Map(map)] = steps.as_slice() else {
        return;
    };
    for rule in rules.iter_mut() {
        if rule.local.contains("${")
            || literal_of(rule.remote.trim_start_matches('^').trim_end_matches('$')).is_some()
        {
            continue;
        }
        let local = rule.local.replace("$$", "$");
        if let Some((_, remote)) = map.iter().find(|(l, _)| server_name(l, dot) == local)
            && rule.apply(&server_name(remote, dot)).as_deref() == Some(local.as_str())
        {
            rule.local_match = Some(format!("^{}$", regex::escape(&local)));
            rule.remote_replace = Some(literal_replacement(&server_name(remote, dot)));
        }
    }
}

// ---- [mbnames] ------------------------------------------------------------------------------------

fn mbnames(ini: &Ini, ctx: &Context, out: &mut Converted) -> Result<(), ImportError> {
    let mut r = Reader::new(ini, ctx, "mbnames");
    let enabled = r.boolean("enabled")?.is_some_and(|(b, _)| b);
    if !enabled {
        out.note(
            NoteKind::Info,
            Some(r.line()),
            "[mbnames] is not enabled: no [general.mbnames] table",
        );
        return Ok(());
    }
    let mut m = Mbnames::default();
    let todo = |out: &mut Converted, line: usize, text: String| {
        out.note(NoteKind::Todo, Some(line), text);
    };
    if let Some((f, _)) = r.get("filename")? {
        m.path = Some(tilde(&expand_path(f.trim(), ctx, true), ctx));
    }
    // The strings are Python expressions; peritem is read raw and formatted with %.
    for (key, raw) in [
        ("header", false),
        ("peritem", true),
        ("sep", false),
        ("footer", false),
    ] {
        let value = if raw { r.raw(key) } else { r.get(key)? };
        let Some((src, line)) = value else { continue };
        let text = match python::parse(&src).map(|e| concat(&e)) {
            Ok(Some(t)) => t,
            _ => {
                todo(
                    out,
                    line,
                    format!("[mbnames] {key} = {src}: only strings are translated"),
                );
                continue;
            }
        };
        match key {
            "header" => m.header = Some(text),
            "sep" => m.separator = Some(text),
            "footer" => m.footer = Some(text),
            _ => match item_template(&text) {
                Ok(t) => m.item = Some(t),
                Err(why) => todo(out, line, format!("[mbnames] peritem = {src}: {why}")),
            },
        }
    }
    for key in ["folderfilter", "sort_keyfunc"] {
        if let Some((src, line)) = r.get(key)? {
            todo(
                out,
                line,
                format!(
                    "[mbnames] {key} = {src}: no equivalent (per account: mbnames = false leaves an account out)"
                ),
            );
        }
    }
    m.enabled = Some(true);
    out.note(
        NoteKind::Info,
        None,
        "[general.mbnames]: folder names are idlewild's local names, with '/' between levels",
    );
    out.mbnames = Some(m);
    Ok(())
}

/// A string, or strings joined with `+`.
fn concat(e: &Expr) -> Option<String> {
    match e {
        Expr::Str(s) => Some(s.clone()),
        Expr::Add(a, b) => Some(concat(a)? + &concat(b)?),
        _ => None,
    }
}

/// OfflineIMAP's `%(accountname)s`-style item as idlewild's `{account}`-style one.
fn item_template(text: &str) -> Result<String, String> {
    if text.contains(['{', '}']) {
        return Err("braces have no escape in idlewild's item template".into());
    }
    let mut out = text
        .replace("%(localfolders)s/%(foldername)s", "{path}")
        .replace("%(accountname)s", "{account}")
        .replace("%(foldername)s", "{folder}");
    if out.contains("%(") {
        return Err("only %(accountname)s, %(foldername)s and %(localfolders)s/%(foldername)s are translated".into());
    }
    out = out.replace("%%", "%");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(src: &str, dot: bool) -> folders::FolderSet {
        folders::include_exclude(&filter_selections(src, dot).unwrap()).unwrap()
    }

    #[test]
    fn the_common_filters_translate() {
        let s = set(
            "lambda folder: folder in ['INBOX', 'Sent', '[Gmail]/Sent Mail']",
            false,
        );
        assert_eq!(s.include, ["INBOX", "Sent", "[Gmail]/Sent Mail"]);
        assert!(s.exclude.is_empty());
        let s = set("lambda f: f not in ['Trash', 'Spam']", false);
        assert!(s.include.is_empty());
        assert_eq!(s.exclude, ["Trash", "Spam"]);
        let s = set("lambda f: f.startswith('INBOX.Lists')", true);
        assert_eq!(s.include, ["INBOX/Lists*"]);
        let s = set("lambda f: not f.startswith(('Junk', 'Trash'))", false);
        assert_eq!(s.exclude, ["Junk*", "Trash*"]);
        let s = set(r"lambda f: not re.search('(^Trash$|Del)', f)", false);
        assert_eq!(s.exclude, ["regex:^.*(^Trash$|Del).*$"]);
        let s = set(r"lambda f: re.search('^INBOX\.', f, re.I)", true);
        assert_eq!(s.include, ["regex:(?i)^INBOX/.*$"]);
        let s = set(
            "lambda f: f.startswith('Lists/') and f != 'Lists/spam' or f == 'INBOX'",
            false,
        );
        assert_eq!(s.include, ["Lists/*", "INBOX"]);
        assert_eq!(s.exclude, ["Lists/spam"]);
        let s = set(
            "lambda f: f in ['INBOX', 'Lists/a', 'Other'] and f.startswith('Lists')",
            false,
        );
        assert_eq!(s.include, ["Lists/a"]);
        let s = set("lambda f: f.endswith('Sent') or 'Archive' in f", false);
        assert_eq!(s.include, ["regex:^.*Sent$", "regex:^.*Archive.*$"]);
        let s = set("lambda f: True", false);
        assert!(s.include.is_empty() && s.exclude.is_empty());
    }

    #[test]
    fn filters_that_do_not_map_cleanly_are_refused() {
        for (src, why) in [
            ("lambda f: f.lower() == 'x'", "does not know"),
            ("my_filter", "function of the pythonfile"),
            (
                "lambda f: f.startswith('a') and re.search('b', f)",
                "neither of them a list",
            ),
            (
                "lambda f: not (f.startswith('a') and f.endswith('b'))",
                "cannot say",
            ),
            ("lambda f: re.search('(?=x)', f)", "look-ahead"),
            ("lambda f: re.search('x', f, re.M)", "flags"),
        ] {
            let e = filter_selections(src, false)
                .and_then(|s| folders::include_exclude(&s).map(|_| ()))
                .unwrap_err();
            assert!(e.contains(why), "{src}: {e}");
        }
    }

    fn rules(src: &str, dot: bool) -> Vec<Rename> {
        match nametrans_rules(src, dot).unwrap() {
            NameTrans::Rules(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// Applies rules first-match-wins, as idlewild does.
    fn apply(rules: &[Rename], name: &str) -> String {
        rules
            .iter()
            .find_map(|r| r.apply(name))
            .unwrap_or_else(|| name.to_owned())
    }

    #[test]
    fn the_common_nametrans_forms_translate() {
        assert_eq!(
            nametrans_rules(r"lambda folder: re.sub('^INBOX\.', '', folder)", true),
            Ok(NameTrans::Strip("INBOX/".into()))
        );
        assert_eq!(
            nametrans_rules(r"lambda f: re.sub(r'^\[Gmail\]/', '', f)", false),
            Ok(NameTrans::Strip("[Gmail]/".into()))
        );
        assert_eq!(
            nametrans_rules("lambda f: f", false),
            Ok(NameTrans::Identity)
        );
        // The Arch wiki's Gmail chain.
        let r = rules(
            "lambda folder: re.sub('.*Spam$', 'spam', re.sub('.*Drafts$', 'drafts', \
             re.sub('.*Sent Mail$', 'sent', re.sub('.*Starred$', 'flagged', \
             re.sub('.*Trash$', 'trash', re.sub('.*All Mail$', 'archive', folder))))))",
            false,
        );
        assert_eq!(r.len(), 6);
        for (remote, local) in [
            ("[Gmail]/Spam", "spam"),
            ("[Gmail]/Sent Mail", "sent"),
            ("[Gmail]/All Mail", "archive"),
            ("INBOX", "INBOX"),
            ("Lists/rust", "Lists/rust"),
        ] {
            assert_eq!(apply(&r, remote), local, "{remote}");
        }
        let r = rules(
            "lambda f: {'[Gmail]/Sent Mail': 'sent', '[Gmail]/Drafts': 'drafts'}.get(f, f)",
            false,
        );
        assert_eq!(apply(&r, "[Gmail]/Drafts"), "drafts");
        assert_eq!(apply(&r, "Other"), "Other");
        let r = rules(r"lambda f: re.sub('^Lists\.(.*)', r'ml.\1', f)", true);
        assert_eq!(apply(&r, "Lists/rust"), "ml/rust");
        let r = rules(r"lambda f: re.sub('_archive$', '', f)", false);
        assert_eq!(apply(&r, "2019_archive"), "2019");
        assert_eq!(apply(&r, "x_archive_archive"), "x_archive");
        let r = rules(r"lambda f: re.sub('^(Work)/(.*)$', r'\2@\1', f)", false);
        assert_eq!(apply(&r, "Work/plans"), "plans@Work");
    }

    #[test]
    fn nametrans_that_does_not_map_cleanly_is_refused() {
        for (src, why) in [
            ("lambda f: re.sub(' ', '_', f)", "every match anywhere"),
            ("lambda f: f.upper()", "does not know"),
            (
                "lambda f: re.sub('^a$', 'b', re.sub('^b$', 'a', f))",
                "changed again",
            ),
            (
                r"lambda f: re.sub('x$', '', re.sub('^(.*)y$', r'\1x', f))",
                "depends on the name",
            ),
            ("lambda f: {'a': 'b'}.get(f, 'x')", "keep their names"),
            ("nt", "function of the pythonfile"),
        ] {
            let e = nametrans_rules(src, false).unwrap_err();
            assert!(e.contains(why), "{src}: {e}");
        }
    }

    #[test]
    fn explicit_reverses_come_from_the_local_nametrans() {
        let mut r = rules("lambda f: re.sub('.*Sent Mail$', 'sent', f)", false);
        add_reverses(
            &mut r,
            "lambda f: {'sent': '[Gmail]/Sent Mail'}.get(f, f)",
            false,
        );
        assert_eq!(r[0].local_match.as_deref(), Some("^sent$"));
        assert_eq!(r[0].remote_replace.as_deref(), Some("[Gmail]/Sent Mail"));
    }

    #[test]
    fn password_commands_are_recognized() {
        let cmd = |src: &str| command_of(&python::parse(src).unwrap());
        assert_eq!(
            cmd("subprocess.check_output(['pass', 'show', 'mail']).strip().decode('utf-8')"),
            Some((
                vec!["pass".into(), "show".into(), "mail".into()],
                false,
                false
            ))
        );
        assert_eq!(
            cmd("subprocess.check_output('gpg -dq ~/.pw.gpg', shell=True).strip()"),
            Some((
                vec!["sh".into(), "-c".into(), "gpg -dq ~/.pw.gpg".into()],
                true,
                true
            ))
        );
        assert_eq!(
            cmd("os.popen('pass show mail').read().strip()"),
            Some((
                vec!["pass".into(), "show".into(), "mail".into()],
                true,
                false
            ))
        );
        assert_eq!(cmd("get_pass('x')"), None);
        let argv = python_command("get_pass('x')", Some("/home/me/.offlineimap.py"));
        assert_eq!(argv[0], "python3");
        assert!(argv[2].contains("runpy.run_path('/home/me/.offlineimap.py')"));
        assert!(
            argv[2].contains("eval(\"get_pass('x')\", ns)")
                || argv[2].contains("eval('get_pass(\\'x\\')', ns)")
        );
    }

    #[test]
    fn mbnames_items_translate() {
        assert_eq!(
            item_template("+%(accountname)s/%(foldername)s"),
            Ok("+{account}/{folder}".into())
        );
        assert_eq!(
            item_template("%(localfolders)s/%(foldername)s"),
            Ok("{path}".into())
        );
        assert!(item_template("{x}").is_err());
        assert!(item_template("%(other)s").is_err());
    }
}

#[cfg(test)]
mod convert_tests {
    use super::*;
    use std::path::PathBuf;

    fn convert_text(text: &str) -> Converted {
        let ctx = Context {
            source: "rc".into(),
            home: PathBuf::from("/home/me"),
            env: [("MAILROOT".to_string(), "/srv/mail".to_string())]
                .into_iter()
                .collect(),
        };
        convert(text, &ctx).unwrap()
    }

    const BASE: &str =
        "[general]\naccounts = a\n\n[Account a]\nlocalrepository = l\nremoterepository = r\n\n";

    #[test]
    fn one_sided_settings_turn_into_the_stricter_account_setting() {
        let c = convert_text(&format!(
            "{BASE}[Repository l]\ntype = Maildir\nlocalfolders = $MAILROOT/a\nsync_deletes = no\ncreatefolders = no\n\n\
             [Repository r]\ntype = IMAP\nremotehost = h\nremoteuser = u\ncreatefolders = False\nreadonly = yes\n"
        ));
        let a = &c.accounts[0];
        assert_eq!(a.sync_deletes, Some(false));
        assert_eq!(a.create, Some(Sides::Local));
        assert!(a.remote.readonly);
        assert!(matches!(&a.local, Local::Maildir { path, .. } if path == "/srv/mail/a-idlewild"));
        assert!(
            a.notes
                .iter()
                .any(|n| n.key == Some("sync_deletes") && n.kind == NoteKind::Warning)
        );
        assert!(
            a.notes
                .iter()
                .any(|n| n.key == Some("create") && n.kind == NoteKind::Warning)
        );
    }

    #[test]
    fn idle_folders_are_escaped_for_the_idle_globs() {
        let c = convert_text(&format!(
            "{BASE}[Repository l]\ntype = Maildir\nlocalfolders = ~/m\n\n\
             [Repository r]\ntype = IMAP\nremotehost = h\nremoteuser = u\nidlefolders = ['INBOX', '[Gmail]/Sent Mail']\n"
        ));
        let idle = c.accounts[0].idle.clone().unwrap();
        let set = {
            let mut b = globset::GlobSetBuilder::new();
            for p in &idle {
                b.add(globset::Glob::new(p).unwrap());
            }
            b.build().unwrap()
        };
        assert!(set.is_match("[Gmail]/Sent Mail"));
        assert!(!set.is_match("G/Sent Mail"));
        assert!(set.is_match("INBOX"));
    }

    #[test]
    fn accounts_not_listed_and_maildir_remotes_are_left_out() {
        let c = convert_text(&format!(
            "{BASE}[Repository l]\ntype = Maildir\nlocalfolders = ~/m\n\n\
             [Repository r]\ntype = Maildir\nlocalfolders = ~/n\n\n[Account other]\nlocalrepository = l\n"
        ));
        assert!(c.accounts.is_empty());
        assert_eq!(c.notes.len(), 2, "{:?}", c.notes);
    }
}
