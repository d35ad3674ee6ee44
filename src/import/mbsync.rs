//! mbsync's configuration (`~/.mbsyncrc`, or `$XDG_CONFIG_HOME/isyncrc`): sections opened by
//! `IMAPAccount`, `IMAPStore`, `MaildirStore`, `Channel` and `Group` and ended by an empty line;
//! keywords case-insensitive; arguments separated by spaces, double quotes around spaces,
//! backslashes before quotes and backslashes.
//!
//! An idlewild account is an IMAP store and a Maildir (or second IMAP) store: the Channels
//! between the same two stores become one account, their `Patterns` and mailbox names its
//! folder selection and rename rules. Mailbox names are mbsync's canonical ones, `/` between
//! levels, as idlewild spells them.

use std::collections::{BTreeMap, BTreeSet};

use super::folders::{self, Pat, Rename, Rule, Selection};
use super::{
    Account, Auth, Context, Converted, Imap, ImportError, Layout, Local, MaxSize, NoteKind, OAuth2,
    SYSTEM_BUNDLES, Sides, Table, Tls, Tool, account_name, command_argv, new_maildir,
    note_new_maildir,
};

/// One configuration line: the keyword (lowercase for matching) and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    number: usize,
    keyword: String,
    key: String,
    args: Vec<String>,
    /// The line as written, for TODO comments.
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ImapAccount,
    ImapStore,
    MaildirStore,
    Channel,
    Group,
}

impl Kind {
    fn of(key: &str) -> Option<Kind> {
        Some(match key {
            "imapaccount" => Kind::ImapAccount,
            "imapstore" => Kind::ImapStore,
            "maildirstore" => Kind::MaildirStore,
            "channel" => Kind::Channel,
            "group" => Kind::Group,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::ImapAccount => "IMAPAccount",
            Kind::ImapStore => "IMAPStore",
            Kind::MaildirStore => "MaildirStore",
            Kind::Channel => "Channel",
            Kind::Group => "Group",
        }
    }
}

#[derive(Debug, Clone)]
struct Section {
    kind: Kind,
    name: String,
    head: Line,
    lines: Vec<Line>,
    /// A Group's channels, as written (`channel` or `channel:box,...`).
    members: Vec<(String, usize)>,
}

impl Section {
    fn get(&self, key: &str) -> Option<&Line> {
        self.lines.iter().rev().find(|l| l.key == key)
    }

    fn all(&self, key: &str) -> impl Iterator<Item = &Line> {
        self.lines.iter().filter(move |l| l.key == key)
    }
}

/// Keys of an IMAP account (also allowed in an IMAPStore).
const ACCOUNT_KEYS: &[&str] = &[
    "host",
    "port",
    "timeout",
    "user",
    "usercmd",
    "pass",
    "passcmd",
    "usekeychain",
    "tunnel",
    "authmechs",
    "authmech",
    "ssltype",
    "tlstype",
    "sslversions",
    "tlsversions",
    "systemcertificates",
    "certificatefile",
    "clientcertificate",
    "clientkey",
    "cipherstring",
    "tlsciphersuites",
    "pipelinedepth",
    "disableextension",
    "disableextensions",
    "useimaps",
    "requiressl",
    "usesslv2",
    "usesslv3",
    "usetlsv1",
    "usetlsv11",
    "usetlsv12",
    "usetlsv13",
    "requirecram",
];
/// Keys every store takes.
const STORE_KEYS: &[&str] = &[
    "path",
    "maxsize",
    "mapinbox",
    "flatten",
    "trash",
    "trashnewonly",
    "trashremotenew",
];
const IMAP_STORE_KEYS: &[&str] = &["account", "usenamespace", "pathdelimiter", "subscribedonly"];
const MAILDIR_KEYS: &[&str] = &["inbox", "subfolders", "altmap", "infodelimiter"];
/// Channel keys; all but the stores and patterns may also stand outside any section as
/// defaults for every Channel.
const CHANNEL_KEYS: &[&str] = &[
    "far",
    "near",
    "master",
    "slave",
    "pattern",
    "patterns",
    "maxsize",
    "maxmessages",
    "expireunread",
    "sync",
    "create",
    "remove",
    "expunge",
    "expungesolo",
    "copyarrivaldate",
    "syncstate",
];
const GLOBAL_KEYS: &[&str] = &[
    "fsync",
    "fielddelimiter",
    "bufferlimit",
    "sync",
    "create",
    "remove",
    "expunge",
    "expungesolo",
    "maxmessages",
    "expireunread",
    "copyarrivaldate",
    "syncstate",
];
/// Keys of no consequence for idlewild: TLS tuning, pipelining, mbsync's own bookkeeping.
const HARMLESS: &[&str] = &[
    "sslversions",
    "tlsversions",
    "cipherstring",
    "tlsciphersuites",
    "pipelinedepth",
    "disableextension",
    "disableextensions",
    "usesslv2",
    "usesslv3",
    "usetlsv1",
    "usetlsv11",
    "usetlsv12",
    "usetlsv13",
    "requirecram",
    "requiressl",
    "altmap",
    "infodelimiter",
    "usenamespace",
    "syncstate",
    "copyarrivaldate",
    "fsync",
    "fielddelimiter",
    "bufferlimit",
];

struct Parsed {
    sections: Vec<Section>,
    global: Vec<Line>,
}

fn parse_error(ctx: &Context, line: usize, message: impl Into<String>) -> ImportError {
    ImportError::Parse {
        path: ctx.source.clone(),
        line,
        message: message.into(),
    }
}

/// Splits a line into arguments as mbsync does.
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() && !quoted {
                break;
            }
            chars.next();
            match c {
                '"' => quoted = !quoted,
                '\\' => match chars.next() {
                    Some(e) => word.push(e),
                    None => return Err("the line ends with a backslash".into()),
                },
                c => word.push(c),
            }
        }
        if quoted {
            return Err("a double quote is not closed".into());
        }
        out.push(word);
    }
}

fn parse(text: &str, ctx: &Context) -> Result<Parsed, ImportError> {
    let mut parsed = Parsed {
        sections: Vec::new(),
        global: Vec::new(),
    };
    let mut current: Option<usize> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            // An empty line ends a section.
            current = None;
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        let mut args = words(trimmed).map_err(|e| parse_error(ctx, number, e))?;
        if args.is_empty() {
            continue;
        }
        let keyword = args.remove(0);
        let key = keyword.to_ascii_lowercase();
        let line = Line {
            number,
            keyword: keyword.clone(),
            key: key.clone(),
            args,
            text: trimmed.to_owned(),
        };
        let in_group = current.is_some_and(|i| parsed.sections[i].kind == Kind::Group);
        if in_group && (key == "channel" || key == "channels") {
            let Some(i) = current else { continue };
            if line.args.is_empty() {
                return Err(parse_error(
                    ctx,
                    number,
                    format!("{keyword} needs a channel name"),
                ));
            }
            parsed.sections[i]
                .members
                .extend(line.args.iter().map(|a| (a.clone(), number)));
            continue;
        }
        if let Some(kind) = Kind::of(&key) {
            let Some(name) = line.args.first().cloned() else {
                return Err(parse_error(ctx, number, format!("{keyword} needs a name")));
            };
            if let Some(other) = parsed
                .sections
                .iter()
                .find(|s| s.kind == kind && s.name == name)
            {
                return Err(parse_error(
                    ctx,
                    number,
                    format!(
                        "{} {name} is defined a second time (first at line {})",
                        kind.name(),
                        other.head.number
                    ),
                ));
            }
            let members = if kind == Kind::Group {
                line.args[1..].iter().map(|a| (a.clone(), number)).collect()
            } else {
                if line.args.len() > 1 {
                    return Err(parse_error(
                        ctx,
                        number,
                        format!("{keyword} takes one name (quote a name with spaces)"),
                    ));
                }
                Vec::new()
            };
            parsed.sections.push(Section {
                kind,
                name,
                head: line,
                lines: Vec::new(),
                members,
            });
            current = Some(parsed.sections.len() - 1);
            continue;
        }
        match current {
            Some(i) => {
                let section = &parsed.sections[i];
                let allowed: Vec<&[&str]> = match section.kind {
                    Kind::ImapAccount => vec![ACCOUNT_KEYS],
                    Kind::ImapStore => vec![ACCOUNT_KEYS, STORE_KEYS, IMAP_STORE_KEYS],
                    Kind::MaildirStore => vec![STORE_KEYS, MAILDIR_KEYS],
                    Kind::Channel => vec![CHANNEL_KEYS],
                    Kind::Group => vec![],
                };
                let known = allowed.iter().any(|keys| keys.contains(&key.as_str()));
                let known_elsewhere = [
                    ACCOUNT_KEYS,
                    STORE_KEYS,
                    IMAP_STORE_KEYS,
                    MAILDIR_KEYS,
                    CHANNEL_KEYS,
                ]
                .iter()
                .any(|keys| keys.contains(&key.as_str()));
                if !known && known_elsewhere {
                    return Err(parse_error(
                        ctx,
                        number,
                        format!(
                            "{keyword} does not belong in {} {}",
                            section.kind.name(),
                            section.name
                        ),
                    ));
                }
                parsed.sections[i].lines.push(line);
            }
            None => {
                let belongs_in_section = [ACCOUNT_KEYS, STORE_KEYS, IMAP_STORE_KEYS, MAILDIR_KEYS]
                    .iter()
                    .any(|keys| keys.contains(&key.as_str()))
                    || matches!(
                        key.as_str(),
                        "far" | "near" | "master" | "slave" | "pattern" | "patterns"
                    );
                if belongs_in_section && !GLOBAL_KEYS.contains(&key.as_str()) {
                    return Err(parse_error(
                        ctx,
                        number,
                        format!(
                            "{keyword} outside a section (mbsync ends a section at an empty line)"
                        ),
                    ));
                }
                parsed.global.push(line);
            }
        }
    }
    Ok(parsed)
}

/// The translation of one file.
struct Translation<'a> {
    ctx: &'a Context,
    parsed: Parsed,
}

impl Translation<'_> {
    fn find(&self, kind: Kind, name: &str) -> Option<&Section> {
        self.parsed
            .sections
            .iter()
            .find(|s| s.kind == kind && s.name == name)
    }

    /// A Channel option: its own value, or the global default.
    fn channel_opt<'b>(&'b self, channel: &'b Section, key: &str) -> Option<&'b Line> {
        channel
            .get(key)
            .or_else(|| self.parsed.global.iter().rev().find(|l| l.key == key))
    }

    fn error(&self, line: usize, message: impl Into<String>) -> ImportError {
        parse_error(self.ctx, line, message)
    }

    fn one_arg<'b>(&self, line: &'b Line) -> Result<&'b str, ImportError> {
        match line.args.as_slice() {
            [one] => Ok(one),
            [] => Err(self.error(line.number, format!("{} needs a value", line.keyword))),
            _ => Err(self.error(
                line.number,
                format!(
                    "{} takes one value (quote a value with spaces)",
                    line.keyword
                ),
            )),
        }
    }

    fn boolean(&self, line: &Line) -> Result<bool, ImportError> {
        match self.one_arg(line)?.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "1" => Ok(true),
            "no" | "false" | "off" | "0" => Ok(false),
            other => Err(self.error(
                line.number,
                format!("{}: \"{other}\" is not yes or no", line.keyword),
            )),
        }
    }
}

/// A store of a Channel: `:store:` or `:store:mailbox`.
fn store_ref(arg: &str) -> Option<(&str, Option<&str>)> {
    let rest = arg.strip_prefix(':')?;
    let (store, mailbox) = rest.split_once(':')?;
    if store.is_empty() {
        return None;
    }
    Some((store, (!mailbox.is_empty()).then_some(mailbox)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    New,
    ReNew,
    Delete,
    Flags,
}

const OPS: [Op; 4] = [Op::New, Op::ReNew, Op::Delete, Op::Flags];

/// The cells of mbsync's Sync matrix: what goes far to near (pull) and near to far (push).
fn sync_ops(args: &[String]) -> Result<(BTreeSet<Op>, BTreeSet<Op>), String> {
    let all: BTreeSet<Op> = OPS.into_iter().collect();
    let mut dirs = Vec::new();
    let mut types = Vec::new();
    let mut cells: Vec<(bool, Op)> = Vec::new();
    for a in args {
        let a = a.to_ascii_lowercase();
        let op = |s: &str| match s {
            "new" => Some(Op::New),
            "renew" => Some(Op::ReNew),
            "delete" => Some(Op::Delete),
            "flags" => Some(Op::Flags),
            _ => None,
        };
        match a.as_str() {
            "all" | "full" => return Ok((all.clone(), all)),
            "none" | "noop" => return Ok((BTreeSet::new(), BTreeSet::new())),
            "pull" => dirs.push(true),
            "push" => dirs.push(false),
            other => {
                if let Some(o) = op(other) {
                    types.push(o);
                } else if let Some(o) = other.strip_prefix("pull").and_then(op) {
                    cells.push((true, o));
                } else if let Some(o) = other.strip_prefix("push").and_then(op) {
                    cells.push((false, o));
                } else {
                    return Err(format!("\"{a}\" is not a Sync operation"));
                }
            }
        }
    }
    let (mut pull, mut push) = (BTreeSet::new(), BTreeSet::new());
    if cells.is_empty() {
        let dirs = if dirs.is_empty() {
            vec![true, false]
        } else {
            dirs
        };
        let types: Vec<Op> = if types.is_empty() {
            OPS.to_vec()
        } else {
            types
        };
        for d in dirs {
            for t in &types {
                if d {
                    pull.insert(*t)
                } else {
                    push.insert(*t)
                };
            }
        }
    } else {
        for (d, t) in cells {
            if d {
                pull.insert(t)
            } else {
                push.insert(t)
            };
        }
        for d in dirs {
            if d {
                pull.extend(OPS);
            } else {
                push.extend(OPS);
            }
        }
        for t in types {
            pull.insert(t);
            push.insert(t);
        }
    }
    Ok((pull, push))
}

/// `None`, `Far`, `Near`, `Both` (or the older `Master`, `Slave`): (far, near).
fn sides(line: &Line, value: &str) -> Result<(bool, bool), String> {
    match value.to_ascii_lowercase().as_str() {
        "none" => Ok((false, false)),
        "far" | "master" => Ok((true, false)),
        "near" | "slave" => Ok((false, true)),
        "both" => Ok((true, true)),
        other => Err(format!(
            "{}: \"{other}\" is not None, Far, Near or Both",
            line.keyword
        )),
    }
}

/// `MaxSize`: bytes, or with a k/m suffix (KiB, MiB), `b` allowed after.
fn max_size(value: &str) -> Option<MaxSize> {
    let v = value.to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (digits, suffix) = match v.strip_suffix('k') {
        Some(d) => (d, Some('K')),
        None => match v.strip_suffix('m') {
            Some(d) => (d, Some('M')),
            None => (v, None),
        },
    };
    let n: u64 = digits.parse().ok()?;
    Some(match (n, suffix) {
        (0, _) => MaxSize::Bytes(0),
        (n, Some(s)) => MaxSize::Text(format!("{n}{s}")),
        (n, None) => MaxSize::Bytes(n),
    })
}

pub fn convert(text: &str, ctx: &Context) -> Result<Converted, ImportError> {
    let parsed = parse(text, ctx)?;
    let t = Translation { ctx, parsed };
    let mut out = Converted {
        tool: Some(Tool::Mbsync),
        source: ctx.source.clone(),
        ..Converted::default()
    };
    for line in &t.parsed.global {
        let key = line.key.as_str();
        if !GLOBAL_KEYS.contains(&key) {
            out.note(
                NoteKind::Warning,
                Some(line.number),
                format!(
                    "{} is not an mbsync option known here: not translated",
                    line.keyword
                ),
            );
        }
    }

    // The Channels between the same two stores make one account.
    let mut groups: Vec<((String, String), Vec<Pair>)> = Vec::new();
    for channel in t.parsed.sections.iter().filter(|s| s.kind == Kind::Channel) {
        let side = |keys: [&str; 2]| -> Result<(String, Option<String>, usize), ImportError> {
            let line = keys.iter().find_map(|k| channel.get(k)).ok_or_else(|| {
                t.error(
                    channel.head.number,
                    format!("Channel {} has no {} store", channel.name, keys[0]),
                )
            })?;
            let arg = t.one_arg(line)?;
            let (store, mailbox) = store_ref(arg).ok_or_else(|| {
                t.error(
                    line.number,
                    format!(
                        "{}: \"{arg}\" is not :store: or :store:mailbox",
                        line.keyword
                    ),
                )
            })?;
            Ok((store.to_owned(), mailbox.map(str::to_owned), line.number))
        };
        let (far, far_box, far_line) = side(["far", "master"])?;
        let (near, near_box, near_line) = side(["near", "slave"])?;
        let kind_of = |store: &str, line: usize| -> Result<Kind, ImportError> {
            [Kind::ImapStore, Kind::MaildirStore]
                .into_iter()
                .find(|k| t.find(*k, store).is_some())
                .ok_or_else(|| {
                    t.error(
                        line,
                        format!("there is no IMAPStore or MaildirStore {store}"),
                    )
                })
        };
        let far_kind = kind_of(&far, far_line)?;
        let near_kind = kind_of(&near, near_line)?;
        let pair = match (far_kind, near_kind) {
            (Kind::MaildirStore, Kind::MaildirStore) => {
                out.note(
                    NoteKind::Warning,
                    Some(channel.head.number),
                    format!("Channel {} syncs two Maildirs; idlewild syncs an IMAP server with a Maildir or another IMAP server, so it is left out", channel.name),
                );
                continue;
            }
            (Kind::MaildirStore, _) => Pair {
                channel: channel.clone(),
                remote: near.clone(),
                local: far.clone(),
                remote_box: near_box,
                local_box: far_box,
                far_is_remote: false,
            },
            _ => Pair {
                channel: channel.clone(),
                remote: far.clone(),
                local: near.clone(),
                remote_box: far_box,
                local_box: near_box,
                far_is_remote: true,
            },
        };
        let key = (pair.remote.clone(), pair.local.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, pairs)) => pairs.push(pair),
            None => groups.push((key, vec![pair])),
        }
    }
    if groups.is_empty() && !t.parsed.sections.iter().any(|s| s.kind == Kind::Channel) {
        return Err(ImportError::Whole {
            path: ctx.source.clone(),
            message: "no Channel: there is nothing to import".into(),
        });
    }

    // Names: a Group holding exactly an account's channels, else the IMAP account.
    let base_names: Vec<String> = groups
        .iter()
        .map(|((remote, _), pairs)| {
            let channels: BTreeSet<&str> = pairs.iter().map(|p| p.channel.name.as_str()).collect();
            let group = t.parsed.sections.iter().find(|s| {
                s.kind == Kind::Group
                    && s.members
                        .iter()
                        .map(|(m, _)| m.split(':').next().unwrap_or(m))
                        .collect::<BTreeSet<_>>()
                        == channels
            });
            if let Some(g) = group {
                return g.name.clone();
            }
            if pairs.len() == 1 {
                return pairs[0].channel.name.clone();
            }
            let store = t.find(Kind::ImapStore, remote);
            store
                .and_then(|s| s.get("account"))
                .and_then(|l| l.args.first().cloned())
                .unwrap_or_else(|| {
                    let n = remote.as_str();
                    n.strip_suffix("-remote")
                        .or_else(|| n.strip_suffix("_remote"))
                        .or_else(|| n.strip_suffix("-imap"))
                        .unwrap_or(n)
                        .to_owned()
                })
        })
        .collect();
    let mut taken = Vec::new();
    for (i, ((_, local), pairs)) in groups.iter().enumerate() {
        let mut base = base_names[i].clone();
        if base_names.iter().filter(|b| **b == base).count() > 1 {
            base = format!("{base}-{local}");
        }
        let name = account_name(&base, &taken);
        taken.push(name.clone());
        let a = account(&t, name, pairs)?;
        out.accounts.push(a);
    }
    for g in t.parsed.sections.iter().filter(|s| s.kind == Kind::Group) {
        let mut accounts = BTreeSet::new();
        for (member, line) in &g.members {
            let (channel, boxes) = member.split_once(':').unwrap_or((member, ""));
            if t.find(Kind::Channel, channel).is_none() {
                return Err(t.error(
                    *line,
                    format!("Group {}: there is no Channel {channel}", g.name),
                ));
            }
            if !boxes.is_empty() {
                out.note(
                    NoteKind::Todo,
                    Some(*line),
                    format!("Group {}: {member}: a Group's mailbox list replaces the Channel's Patterns in mbsync; idlewild syncs what the account's folders.include selects (or `idlewild sync ACCOUNT FOLDER...`)", g.name),
                );
            }
            for (gi, (_, pairs)) in groups.iter().enumerate() {
                if pairs.iter().any(|p| p.channel.name == channel) {
                    accounts.insert(out.accounts[gi].name.clone());
                }
            }
        }
        if !accounts.contains(&g.name) && !accounts.is_empty() {
            let list: Vec<&String> = accounts.iter().collect();
            out.note(
                NoteKind::Info,
                Some(g.head.number),
                format!(
                    "Group {}: `mbsync {}` syncs the account(s) {}: `idlewild sync ACCOUNT` each (or `idlewild sync` for all)",
                    g.name,
                    g.name,
                    list.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    Ok(out)
}

/// A Channel seen from idlewild's sides.
#[derive(Debug, Clone)]
struct Pair {
    channel: Section,
    remote: String,
    local: String,
    remote_box: Option<String>,
    local_box: Option<String>,
    /// mbsync's far side is idlewild's remote side (the usual case).
    far_is_remote: bool,
}

impl Pair {
    /// (remote, local) from mbsync's (far, near).
    fn sides(&self, far: bool, near: bool) -> (bool, bool) {
        if self.far_is_remote {
            (far, near)
        } else {
            (near, far)
        }
    }
}

fn account(t: &Translation<'_>, name: String, pairs: &[Pair]) -> Result<Account, ImportError> {
    let first = &pairs[0];
    let channels: Vec<&str> = pairs.iter().map(|p| p.channel.name.as_str()).collect();
    let remote_store = t.find(Kind::ImapStore, &first.remote).ok_or_else(|| {
        t.error(
            first.channel.head.number,
            format!("there is no IMAPStore {}", first.remote),
        )
    })?;
    let mut a = Account::new(
        name.clone(),
        format!(
            "mbsync Channel{} {}: IMAPStore {} <-> {}",
            if channels.len() > 1 { "s" } else { "" },
            channels.join(", "),
            first.remote,
            first.local
        ),
        Imap::new(String::new()),
        Local::Maildir {
            path: String::new(),
            layout: Layout::Nested,
            readonly: false,
        },
    );
    if !first.far_is_remote {
        a.info(
            Table::Account,
            None,
            "in mbsync the server is this Channel's near side; idlewild calls it remote",
        );
    }
    a.remote = imap(t, remote_store, &mut a, Table::Remote)?;
    let new_maildir_dir;
    let mut below: Vec<Pair> = Vec::new();
    if let Some(store) = t.find(Kind::MaildirStore, &first.local) {
        let sub = common_local_dir(pairs);
        let (local, old, used) = maildir(t, store, sub.as_deref(), &mut a)?;
        a.local = local;
        note_new_maildir(&mut a, Tool::Mbsync, &old);
        a.at(store.head.number);
        new_maildir_dir = true;
        if used {
            // The directory is the account's root; the folders' names start below it.
            below = pairs
                .iter()
                .cloned()
                .map(|mut p| {
                    p.local_box = None;
                    p
                })
                .collect();
        }
    } else {
        let store = t.find(Kind::ImapStore, &first.local).ok_or_else(|| {
            t.error(
                first.channel.head.number,
                format!("there is no store {}", first.local),
            )
        })?;
        let imap = imap(t, store, &mut a, Table::Local)?;
        a.local = Local::Imap(Box::new(imap));
        new_maildir_dir = false;
    }
    let prefix = remote_prefix(t, remote_store, &mut a)?;

    // Operations, folder creation and removal, per Channel, merged carefully: where Channels
    // differ, the stricter setting wins (nothing is written or deleted that one of them kept).
    let mut remote_readonly = false;
    let mut local_readonly = false;
    let mut deletes = true;
    let mut create_remote = true;
    let mut create_local = true;
    let mut remove_remote = true;
    let mut remove_local = true;
    let mut sizes: Vec<(MaxSize, usize)> = Vec::new();
    let mut differing = BTreeSet::new();
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    let mut unexpunged: Vec<(String, usize, bool, bool)> = Vec::new();
    for p in pairs {
        let c = &p.channel;
        let mut record = |what: &'static str, value: String| {
            if let Some(before) = seen.get(what)
                && *before != value
            {
                differing.insert(what);
            }
            seen.insert(what, value);
        };
        let (pull, push) = match t.channel_opt(c, "sync") {
            Some(l) => sync_ops(&l.args).map_err(|e| t.error(l.number, format!("Sync: {e}")))?,
            None => (OPS.into_iter().collect(), OPS.into_iter().collect()),
        };
        record("Sync", format!("{pull:?}{push:?}"));
        let (to_local, to_remote) = if p.far_is_remote {
            (pull, push)
        } else {
            (push, pull)
        };
        for (ops, side, readonly) in [
            (&to_remote, "the server", &mut remote_readonly),
            (&to_local, "the Maildir", &mut local_readonly),
        ] {
            if ops.is_empty() {
                *readonly = true;
                continue;
            }
            if !ops.contains(&Op::Delete) {
                deletes = false;
            }
            let missing: Vec<&str> = [(Op::New, "new messages"), (Op::Flags, "flag changes")]
                .iter()
                .filter(|(o, _)| !ops.contains(o))
                .map(|(_, w)| *w)
                .collect();
            if !missing.is_empty() {
                a.warn(
                    Table::Account,
                    None,
                    format!("Channel {}: mbsync did not copy {} to {side}; idlewild copies both (or, read-only, neither)", c.name, missing.join(" or ")),
                );
                if let Some(l) = t.channel_opt(c, "sync") {
                    a.at(l.number);
                }
            }
        }
        // mbsync creates nothing by default.
        let (cf, cn) = match t.channel_opt(c, "create") {
            Some(l) => sides(l, t.one_arg(l)?).map_err(|e| t.error(l.number, e))?,
            None => (false, false),
        };
        let (cr, cl) = p.sides(cf, cn);
        record("Create", format!("{cr}{cl}"));
        create_remote &= cr;
        create_local &= cl;
        let (rf, rn) = match t.channel_opt(c, "remove") {
            Some(l) => sides(l, t.one_arg(l)?).map_err(|e| t.error(l.number, e))?,
            None => (false, false),
        };
        let (rr, rl) = p.sides(rf, rn);
        record("Remove", format!("{rr}{rl}"));
        remove_remote &= rr;
        remove_local &= rl;
        let (ef, en) = match t.channel_opt(c, "expunge") {
            Some(l) => sides(l, t.one_arg(l)?).map_err(|e| t.error(l.number, e))?,
            None => (false, false),
        };
        let (er, el) = p.sides(ef, en);
        if !(er && el) {
            let value = t
                .channel_opt(c, "expunge")
                .and_then(|l| l.args.first())
                .map_or("None", |s| s.as_str());
            let line = t
                .channel_opt(c, "expunge")
                .map_or(c.head.number, |l| l.number);
            unexpunged.push((format!("{} (Expunge {value})", c.name), line, er, el));
        }
        if let Some(l) = t.channel_opt(c, "maxsize") {
            let v = t.one_arg(l)?;
            let size = max_size(v)
                .ok_or_else(|| t.error(l.number, format!("MaxSize: \"{v}\" is not a size")))?;
            sizes.push((size, l.number));
        }
        if let Some(l) = t.channel_opt(c, "maxmessages") {
            let v = t.one_arg(l)?;
            if v != "0" {
                a.todo(Table::Account, format!("Channel {}: MaxMessages has no equivalent in idlewild (max_age keeps messages newer than N days)", c.name), l.number, &l.text);
            }
        }
        for key in ["expungesolo"] {
            if let Some(l) = t.channel_opt(c, key) {
                a.todo(
                    Table::Account,
                    format!(
                        "Channel {}: {} has no equivalent in idlewild",
                        c.name, l.keyword
                    ),
                    l.number,
                    &l.text,
                );
            }
        }
        for l in &c.lines {
            if !CHANNEL_KEYS.contains(&l.key.as_str()) {
                a.warn(
                    Table::Account,
                    None,
                    format!(
                        "Channel {}: {} is not an mbsync option known here: not translated",
                        c.name, l.keyword
                    ),
                );
                a.at(l.number);
            }
        }
    }
    if let Some((_, line, _, _)) = unexpunged.first() {
        let names: Vec<&str> = unexpunged.iter().map(|(n, ..)| n.as_str()).collect();
        let server = unexpunged.iter().any(|(_, _, r, _)| !r);
        let maildir = unexpunged.iter().any(|(_, _, _, l)| !l);
        let sides = match (server, maildir) {
            (true, true) => "the server or the Maildir",
            (true, false) => "the server",
            _ => "the Maildir",
        };
        a.warn(
            Table::Account,
            Some("sync_deletes"),
            format!("mbsync did not expunge {sides} for Channel {}: messages deleted on the other side stayed there marked \\Deleted; idlewild removes them for good. To keep deletions from crossing, set sync_deletes = false", names.join(", ")),
        );
        a.at(*line);
    }
    for what in &differing {
        a.warn(
            Table::Account,
            None,
            format!("the Channels {} differ in {what}: idlewild has one setting per account, and the stricter one is kept", channels.join(", ")),
        );
    }
    for store in [&first.remote, &first.local] {
        if let Some(s) = t
            .find(Kind::ImapStore, store)
            .or_else(|| t.find(Kind::MaildirStore, store))
            && let Some(l) = s.get("maxsize")
        {
            let v = t.one_arg(l)?;
            let size = max_size(v)
                .ok_or_else(|| t.error(l.number, format!("MaxSize: \"{v}\" is not a size")))?;
            if *store == first.remote && size != MaxSize::Bytes(0) {
                a.warn(Table::Account, Some("max_size"), "mbsync limited the size of messages copied to the server; idlewild's max_size applies in both directions");
            }
            sizes.push((size, l.number));
        }
    }
    if let Some((size, line)) = sizes.iter().find(|(s, _)| *s != MaxSize::Bytes(0)).cloned() {
        a.max_size = Some(size);
        a.info(Table::Account, Some("max_size"), "bigger messages are not copied at all (mbsync copied a placeholder); idlewild lists them in its report");
        a.at(line);
    }
    if remote_readonly {
        a.remote.readonly = true;
    }
    if local_readonly {
        match &mut a.local {
            Local::Maildir { readonly, .. } => *readonly = true,
            Local::Imap(i) => i.readonly = true,
        }
    }
    if remote_readonly && local_readonly {
        a.warn(
            Table::Account,
            None,
            "Sync None: nothing is written to either side",
        );
    }
    if !deletes {
        a.sync_deletes = Some(false);
    }
    if new_maildir_dir && !create_local {
        create_local = true;
        a.warn(
            Table::Account,
            Some("create"),
            "mbsync created no folders in the Maildir; idlewild creates the server's folders in its new Maildir, which starts empty",
        );
    }
    let create = Sides::of(create_remote, create_local);
    if create != Sides::Both {
        a.create = Some(create);
    }
    // mbsync's Remove never deletes a mailbox that still holds messages: that is idlewild's
    // default (remove = "none" removes a survivor only when it is empty), whereas a side named
    // in idlewild's remove loses the folder with its messages.
    let remove = Sides::of(remove_remote, remove_local);
    if remove != Sides::None {
        a.info(
            Table::Account,
            None,
            format!(
                "Remove {}: mbsync removed a folder deleted on the other side only when it was empty, as idlewild does by default; remove = \"{}\" would also remove one that still holds messages",
                match (remove.remote(), remove.local(), pairs[0].far_is_remote) {
                    (true, true, _) => "Both",
                    (true, false, true) | (false, true, false) => "Far",
                    _ => "Near",
                },
                remove.name()
            ),
        );
    }

    folders_of(
        if below.is_empty() { pairs } else { &below },
        &prefix,
        &mut a,
    );
    Ok(a)
}

/// The folder selection and names of an account's Channels.
fn folders_of(pairs: &[Pair], prefix: &str, a: &mut Account) {
    // INBOX is INBOX whatever the IMAPStore's Path.
    let with_prefix = |name: &str| -> String {
        if name.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_owned()
        } else {
            format!("{prefix}{name}")
        }
    };
    let mut selections = Vec::new();
    let mut renames: Vec<Rename> = Vec::new();
    let mut pattern_lines = Vec::new();
    for p in pairs {
        let c = &p.channel;
        let patterns: Vec<&Line> = c.all("pattern").chain(c.all("patterns")).collect();
        let mut lines: Vec<&Line> = patterns.clone();
        lines.sort_by_key(|l| l.number);
        pattern_lines.extend(lines.iter().map(|l| (l.number, l.text.clone())));
        if lines.is_empty() {
            // One mailbox pair: INBOX unless named.
            let remote = p.remote_box.clone().unwrap_or_else(|| "INBOX".into());
            let local = p.local_box.clone().unwrap_or_else(|| "INBOX".into());
            let remote_name = with_prefix(&remote);
            selections.push(Selection(vec![Rule::take(Pat::Exact(remote_name.clone()))]));
            if local != remote {
                renames.push(Rename::exact(&remote_name, &local));
            }
            continue;
        }
        let remote_box = p.remote_box.clone().unwrap_or_default();
        let local_box = p.local_box.clone().unwrap_or_default();
        let mut rules = Vec::new();
        for l in &lines {
            for arg in &l.args {
                let (include, pattern) = match arg.strip_prefix('!') {
                    Some(rest) => (false, rest),
                    None => (true, arg.as_str()),
                };
                let rule = |pat: Pat| Rule { include, pat };
                if remote_box.is_empty() && pattern.eq_ignore_ascii_case("INBOX") {
                    rules.push(rule(Pat::Exact("INBOX".into())));
                    continue;
                }
                if remote_box.is_empty()
                    && !prefix.is_empty()
                    && folders::glob_match(pattern, "INBOX")
                {
                    rules.push(rule(Pat::Exact("INBOX".into())));
                }
                rules.push(rule(Pat::glob(&format!("{prefix}{remote_box}{pattern}"))));
            }
        }
        selections.push(Selection(rules));
        if remote_box != local_box {
            renames.push(Rename::prefix(&format!("{prefix}{remote_box}"), &local_box));
        }
    }
    match folders::include_exclude(&selections) {
        Ok(set) => {
            a.folders.include = set.include;
            a.folders.exclude = set.exclude;
            for (_, why) in set.explained {
                a.info(Table::Folders, Some("exclude"), why);
            }
        }
        Err(why) => {
            let (line, _) = pattern_lines.first().cloned().unwrap_or((0, String::new()));
            let text: Vec<String> = pattern_lines.iter().map(|(_, t)| t.clone()).collect();
            a.todo(Table::Folders, format!("Patterns: {why}; every folder is synced until you write folders.include and folders.exclude"), line, &text.join("\n"));
        }
    }
    let gmail = a.remote.host.eq_ignore_ascii_case("imap.gmail.com")
        || a.remote.host.eq_ignore_ascii_case("imap.googlemail.com");
    if !prefix.is_empty() {
        if renames.is_empty() {
            a.folders.remote_prefix_strip = Some(prefix.to_owned());
        } else {
            // The prefix as the last rule, so that one list says how every name is made.
            renames.push(Rename::prefix(prefix, ""));
        }
    }
    if !renames.is_empty() {
        a.folders.rename = renames;
    }
    if gmail {
        if a.folders.rename.is_empty() {
            a.folders.preset = Some("gmail".into());
            a.info(
                Table::Folders,
                Some("preset"),
                "Gmail's folders get short local names ([Gmail]/Sent Mail is Sent, [Gmail]/All Mail is Archive, ...); mbsync kept the server's names",
            );
        } else {
            a.info(
                Table::Folders,
                None,
                "preset = \"gmail\" is not set: the rules from the Channels' mailbox names name the Gmail folders as before",
            );
        }
        if !matches!(a.remote.auth, Auth::OAuth2(_)) {
            let name = a.name.clone();
            a.info(
                Table::Remote,
                Some("password"),
                format!("Gmail: an app password works as it is. To sign in with OAuth2 instead, replace the password with oauth2.provider = \"gmail\" and oauth2.client_id (and client_secret) of an OAuth2 client of your own, then run `idlewild oauth2 authorize {name}`"),
            );
        }
    }
}

/// The server-side prefix of the IMAPStore's `Path`, in idlewild's spelling (`INBOX/`).
fn remote_prefix(
    t: &Translation<'_>,
    store: &Section,
    a: &mut Account,
) -> Result<String, ImportError> {
    let Some(line) = store.get("path") else {
        return Ok(String::new());
    };
    let path = t.one_arg(line)?;
    let delimiter = match store.get("pathdelimiter") {
        Some(l) => t.one_arg(l)?.chars().next(),
        None => path.chars().last().filter(|c| matches!(c, '.' | '/')),
    };
    match delimiter {
        Some(d) if path.ends_with(d) => {
            let prefix = path.replace(d, "/");
            a.info(
                Table::Folders,
                None,
                format!("IMAPStore {} Path {path}: the folders below {prefix} are synced without that prefix", store.name),
            );
            Ok(prefix)
        }
        _ => {
            a.todo(
                Table::Folders,
                "an IMAPStore Path that does not end with the server's level separator",
                line.number,
                &line.text,
            );
            Ok(String::new())
        }
    }
}

/// The Maildir side and the directory mbsync used.
/// The directory below a MaildirStore that every Channel of an account keeps its folders in
/// (`Near :local:gmail/` with Patterns), as when several accounts share one MaildirStore.
fn common_local_dir(pairs: &[Pair]) -> Option<String> {
    let mut dir: Option<&str> = None;
    for p in pairs {
        let patterns = p
            .channel
            .all("pattern")
            .chain(p.channel.all("patterns"))
            .count();
        let b = p
            .local_box
            .as_deref()
            .filter(|b| b.ends_with('/') && patterns > 0)?;
        if dir.is_some_and(|d| d != b) {
            return None;
        }
        dir = Some(b);
    }
    dir.map(str::to_owned)
}

/// The Maildir side, the directory mbsync used, and whether `sub` (a directory below the
/// store's Path) was taken as the account's root.
fn maildir(
    t: &Translation<'_>,
    store: &Section,
    sub: Option<&str>,
    a: &mut Account,
) -> Result<(Local, String, bool), ImportError> {
    let path = store.get("path").map(|l| t.one_arg(l)).transpose()?;
    let inbox = store.get("inbox").map(|l| t.one_arg(l)).transpose()?;
    let subfolders = store
        .get("subfolders")
        .map(|l| t.one_arg(l).map(|v| (v.to_ascii_lowercase(), l.number)))
        .transpose()?;
    let inbox_path = inbox.unwrap_or("~/Maildir");
    let (layout, old) = match subfolders.as_ref().map(|(v, _)| v.as_str()) {
        Some("maildir++") => (Layout::MaildirPlusPlus, inbox_path.to_owned()),
        Some("verbatim") | None => (Layout::Nested, path.unwrap_or(inbox_path).to_owned()),
        Some("legacy") => {
            a.info(
                Table::Local,
                Some("layout"),
                "SubFolders Legacy kept subfolders as top/.sub; idlewild nests them as top/sub",
            );
            (Layout::Nested, path.unwrap_or(inbox_path).to_owned())
        }
        Some(other) => {
            let line = subfolders.as_ref().map_or(0, |(_, l)| *l);
            return Err(t.error(
                line,
                format!("SubFolders: \"{other}\" is not Verbatim, Maildir++ or Legacy"),
            ));
        }
    };
    if let Some(l) = store.get("flatten") {
        a.info(
            Table::Local,
            Some("layout"),
            format!("Flatten {}: mbsync kept subfolders as flat directories (Lists{}rust); idlewild nests them (Lists/rust); adjust your mail client's folder list", t.one_arg(l)?, t.one_arg(l)?),
        );
    }
    if layout == Layout::Nested {
        let root = old.trim_end_matches('/');
        if inbox_path.trim_end_matches('/') != format!("{root}/INBOX") {
            a.info(
                Table::Local,
                Some("layout"),
                format!("INBOX is the directory INBOX under path (mbsync kept it in {inbox_path})"),
            );
        }
    }
    for key in ["mapinbox", "trash", "trashnewonly", "trashremotenew"] {
        if let Some(l) = store.get(key) {
            a.todo(
                Table::Local,
                format!(
                    "MaildirStore {}: {} has no equivalent in idlewild",
                    store.name, l.keyword
                ),
                l.number,
                &l.text,
            );
        }
    }
    report_rest(
        store,
        a,
        Table::Local,
        &[
            "path",
            "inbox",
            "subfolders",
            "flatten",
            "maxsize",
            "mapinbox",
            "trash",
            "trashnewonly",
            "trashremotenew",
        ],
    );
    let mut old = old.trim_end_matches('/').to_owned();
    let used = layout == Layout::Nested && path.is_some() && sub.is_some();
    if let Some(sub) = sub.filter(|_| used) {
        old = format!("{old}/{}", sub.trim_end_matches('/'));
    }
    let old = if old.is_empty() { "/".to_owned() } else { old };
    Ok((
        Local::Maildir {
            path: new_maildir(&old, &a.name),
            layout,
            readonly: false,
        },
        old,
        used,
    ))
}

/// Reports keys of a section nothing translated.
fn report_rest(section: &Section, a: &mut Account, table: Table, used: &[&str]) {
    let mut harmless = Vec::new();
    for l in &section.lines {
        if used.contains(&l.key.as_str()) {
            continue;
        }
        if HARMLESS.contains(&l.key.as_str()) {
            if !harmless.contains(&l.keyword) {
                harmless.push(l.keyword.clone());
            }
        } else {
            a.warn(
                table,
                None,
                format!(
                    "{} {}: {}: not translated",
                    section.kind.name(),
                    section.name,
                    if super::secret_key(&l.key) {
                        format!("{} (value hidden)", l.keyword)
                    } else {
                        l.text.clone()
                    }
                ),
            );
            a.at(l.number);
        }
    }
    if !harmless.is_empty() {
        a.info(
            table,
            None,
            format!(
                "{} {}: {}: not needed by idlewild",
                section.kind.name(),
                section.name,
                harmless.join(", ")
            ),
        );
    }
}

/// The connection of an IMAPStore: its Account's options, then its own.
fn imap(
    t: &Translation<'_>,
    store: &Section,
    a: &mut Account,
    table: Table,
) -> Result<Imap, ImportError> {
    let mut lines: Vec<Line> = Vec::new();
    let mut sections = vec![store];
    if let Some(l) = store.get("account") {
        let name = t.one_arg(l)?;
        let account = t
            .find(Kind::ImapAccount, name)
            .ok_or_else(|| t.error(l.number, format!("there is no IMAPAccount {name}")))?;
        lines.extend(account.lines.iter().cloned());
        sections.insert(0, account);
    }
    lines.extend(store.lines.iter().cloned());
    let get = |key: &str| lines.iter().rev().find(|l| l.key == key);
    let mut imap = Imap::new(String::new());
    match get("host") {
        Some(l) => imap.host = t.one_arg(l)?.to_owned(),
        None => a.warn(
            table,
            Some("host"),
            "no Host: write the server's name into host",
        ),
    }
    if let Some(l) = get("tunnel") {
        a.todo(
            table,
            "Tunnel: idlewild connects to host and port itself",
            l.number,
            &l.text,
        );
    }
    if let Some(l) = get("port") {
        let v = t.one_arg(l)?;
        imap.port = Some(
            v.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| t.error(l.number, format!("Port: \"{v}\" is not a port number")))?,
        );
    }
    if let Some(l) = get("timeout") {
        let v = t.one_arg(l)?;
        let secs = v.parse::<u64>().map_err(|_| {
            t.error(
                l.number,
                format!("Timeout: \"{v}\" is not a number of seconds"),
            )
        })?;
        if secs == 0 {
            a.info(table, Some("timeout"), "Timeout 0 (none): idlewild always gives up on a silent server, after 60 seconds by default");
        } else {
            imap.timeout = Some(secs);
        }
    }
    let tls_line = get("tlstype").or_else(|| get("ssltype"));
    imap.tls = match tls_line {
        Some(l) => match t.one_arg(l)?.to_ascii_lowercase().as_str() {
            "imaps" => Tls::Implicit,
            "starttls" => Tls::Starttls,
            "none" => Tls::None,
            other => {
                return Err(t.error(
                    l.number,
                    format!("{}: \"{other}\" is not None, STARTTLS or IMAPS", l.keyword),
                ));
            }
        },
        None => match get("useimaps") {
            Some(l) if t.boolean(l)? => Tls::Implicit,
            // mbsync's default.
            _ => Tls::Starttls,
        },
    };
    if imap.tls == Tls::None && !imap.host.is_empty() && !crate::config::is_loopback(&imap.host) {
        a.warn(table, Some("tls"), format!("no TLS: the password went in clear text; idlewild refuses tls = \"none\" except to this machine: set \"starttls\" (or \"implicit\") if {} offers it", imap.host));
    }
    match (get("user"), get("usercmd")) {
        (Some(l), _) => imap.user = t.one_arg(l)?.to_owned(),
        (None, Some(l)) => a.todo(
            table,
            "UserCmd: write the login name into user",
            l.number,
            &l.text,
        ),
        (None, None) => a.warn(
            table,
            Some("user"),
            "no User: write the login name into user",
        ),
    }
    if let Some(l) = get("certificatefile") {
        let file = t.one_arg(l)?;
        if SYSTEM_BUNDLES.contains(&file) {
            a.info(table, Some("tls"), format!("CertificateFile {file}: the system's certificates, which idlewild trusts anyway"));
        } else {
            imap.ca_file = Some(file.to_owned());
            a.info(table, Some("ca_file"), "trusted besides the system's certificates (mbsync also took an expired certificate from this file; idlewild checks its dates)");
        }
    }
    if let Some(l) = get("systemcertificates")
        && !t.boolean(l)?
    {
        a.warn(table, Some("ca_file"), "SystemCertificates no: idlewild always trusts the system's certificates besides ca_file; pin the server with cert_fingerprint to trust it alone");
        a.at(l.number);
    }
    for key in ["clientcertificate", "clientkey"] {
        if let Some(l) = get(key) {
            a.todo(
                table,
                "client certificates are not supported by idlewild",
                l.number,
                &l.text,
            );
        }
    }
    if let Some(l) = get("usekeychain")
        && t.boolean(l)?
    {
        a.warn(table, Some("password"), format!("UseKeychain is macOS's keychain; idlewild uses the Secret Service: `idlewild password set {}`", a.name));
    }
    let mechanisms: Vec<String> = get("authmechs")
        .or_else(|| get("authmech"))
        .map(|l| l.args.iter().map(|m| m.to_ascii_uppercase()).collect())
        .unwrap_or_default();
    let oauth = mechanisms
        .iter()
        .find(|m| *m == "XOAUTH2" || *m == "OAUTHBEARER");
    imap.auth = match (get("pass"), get("passcmd")) {
        (_, Some(l)) => {
            let raw = t.one_arg(l)?;
            let line = raw.strip_prefix('+').unwrap_or(raw);
            let (argv, shell) = command_argv(line);
            if let Some(m) = oauth {
                a.info(
                    table,
                    Some("password"),
                    format!("AuthMechs {m}: PassCmd gives the access token"),
                );
                Auth::OAuth2(OAuth2 {
                    token_command: Some(argv),
                    mechanism: Some(m.to_ascii_lowercase()),
                    ..OAuth2::default()
                })
            } else {
                if shell {
                    a.info(
                        table,
                        Some("password"),
                        "PassCmd is a shell command line: run by sh -c, as mbsync did",
                    );
                } else {
                    a.warn(table, Some("password"), "PassCmd is run without a shell now (it holds nothing a shell would interpret, so it behaves the same)");
                }
                a.at(l.number);
                Auth::Command(argv)
            }
        }
        (Some(l), None) => {
            a.warn(table, Some("password"), format!("a password in the configuration file: better keep it in the keyring (`idlewild password set {}`, then remove this line) or use password.command = [\"pass\", \"show\", \"...\"]", a.name));
            a.at(l.number);
            Auth::Plain(t.one_arg(l)?.to_owned())
        }
        (None, None) => {
            a.info(table, Some("password"), format!("mbsync asked for the password: store it in the keyring once with `idlewild password set {}`", a.name));
            Auth::Keyring
        }
    };
    if let Some(l) = get("subscribedonly")
        && t.boolean(l)?
    {
        a.warn(Table::Folders, None, "SubscribedOnly: idlewild syncs every folder the server lists; name the ones you want in folders.include");
        a.at(l.number);
    }
    for key in [
        "mapinbox",
        "trash",
        "trashnewonly",
        "trashremotenew",
        "flatten",
    ] {
        if let Some(l) = store.get(key) {
            a.todo(
                table,
                format!(
                    "IMAPStore {}: {} has no equivalent in idlewild",
                    store.name, l.keyword
                ),
                l.number,
                &l.text,
            );
        }
    }
    let used: Vec<&str> = [
        "account",
        "host",
        "tunnel",
        "port",
        "timeout",
        "tlstype",
        "ssltype",
        "useimaps",
        "user",
        "usercmd",
        "certificatefile",
        "systemcertificates",
        "clientcertificate",
        "clientkey",
        "usekeychain",
        "authmechs",
        "authmech",
        "pass",
        "passcmd",
        "subscribedonly",
        "path",
        "pathdelimiter",
        "maxsize",
        "mapinbox",
        "trash",
        "trashnewonly",
        "trashremotenew",
        "flatten",
    ]
    .to_vec();
    for s in sections {
        report_rest(s, a, table, &used);
    }
    Ok(imap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_follow_mbsyncs_quoting() {
        assert_eq!(
            words(r#"Far :gmail-remote:"[Gmail]/Sent Mail""#),
            Ok(vec!["Far".into(), ":gmail-remote:[Gmail]/Sent Mail".into()])
        );
        assert_eq!(
            words(r#"PassCmd "pass show \"x\" \\y""#),
            Ok(vec!["PassCmd".into(), r#"pass show "x" \y"#.into()])
        );
        assert_eq!(
            words(r#"Patterns * !"[Gmail]*" "INBOX""#),
            Ok(vec![
                "Patterns".into(),
                "*".into(),
                "![Gmail]*".into(),
                "INBOX".into()
            ])
        );
        assert!(words("Pass \"open").is_err());
    }

    #[test]
    fn sync_matrices() {
        let set = |ops: &[Op]| ops.iter().copied().collect::<BTreeSet<Op>>();
        let all = set(&OPS);
        let s = |a: &str| sync_ops(&a.split(' ').map(String::from).collect::<Vec<_>>()).unwrap();
        assert_eq!(s("All"), (all.clone(), all.clone()));
        assert_eq!(s("Pull"), (all.clone(), set(&[])));
        assert_eq!(s("Pull New Flags"), (set(&[Op::New, Op::Flags]), set(&[])));
        assert_eq!(
            s("New Delete"),
            (set(&[Op::New, Op::Delete]), set(&[Op::New, Op::Delete]))
        );
        assert_eq!(
            s("PullNew PullDelete Push"),
            (set(&[Op::New, Op::Delete]), all.clone())
        );
        assert_eq!(s("None"), (set(&[]), set(&[])));
        assert!(sync_ops(&["Sideways".into()]).is_err());
    }

    #[test]
    fn sizes_and_store_references() {
        assert_eq!(max_size("10m"), Some(MaxSize::Text("10M".into())));
        assert_eq!(max_size("200kb"), Some(MaxSize::Text("200K".into())));
        assert_eq!(max_size("5000"), Some(MaxSize::Bytes(5000)));
        assert_eq!(max_size("x"), None);
        assert_eq!(store_ref(":s:"), Some(("s", None)));
        assert_eq!(store_ref(":s:INBOX/x"), Some(("s", Some("INBOX/x"))));
        assert_eq!(store_ref("s"), None);
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
            env: Default::default(),
        };
        crate::import::convert(Tool::Mbsync, text, &ctx).unwrap()
    }

    fn local_name(a: &Account, remote: &str) -> String {
        if let Some(p) = &a.folders.remote_prefix_strip
            && let Some(rest) = remote.strip_prefix(p.as_str())
        {
            return rest.to_owned();
        }
        a.folders
            .rename
            .iter()
            .find_map(|r| r.apply(remote))
            .unwrap_or_else(|| remote.to_owned())
    }

    #[test]
    fn an_imap_path_prefix_with_renamed_channels_is_one_rule_list() {
        let c = convert_text(
            "IMAPStore r\nHost h\nUser u\nPath INBOX.\n\n\
             MaildirStore l\nPath ~/m/\nInbox ~/m/INBOX\n\n\
             Channel all\nFar :r:\nNear :l:\nPatterns * !Sent\nCreate Both\nExpunge Both\n\n\
             Channel sent\nFar :r:Sent\nNear :l:sent-mail\nCreate Both\nExpunge Both\n",
        );
        let a = &c.accounts[0];
        assert_eq!(a.name, "r");
        // Only what lies below the Path, and INBOX.
        assert_eq!(a.folders.include, ["INBOX", "INBOX/*", "INBOX/Sent"]);
        assert_eq!(
            a.folders.exclude,
            Vec::<String>::new(),
            "Sent comes back with the other Channel"
        );
        assert_eq!(a.folders.remote_prefix_strip, None);
        assert_eq!(local_name(a, "INBOX/Sent"), "sent-mail");
        assert_eq!(local_name(a, "INBOX/Lists/rust"), "Lists/rust");
        assert_eq!(local_name(a, "INBOX"), "INBOX");
    }

    #[test]
    fn a_maildir_far_side_is_still_the_local_side() {
        let c = convert_text(
            "MaildirStore l\nPath ~/m/\nInbox ~/m/INBOX\n\n\
             IMAPStore r\nHost h\nUser u\n\n\
             Channel c\nMaster :l:\nSlave :r:\nPatterns *\nSync Push\nCreate Slave\nExpunge Both\n",
        );
        let a = &c.accounts[0];
        // Push copies near to far: here from the server to the Maildir, so the server is only
        // read.
        assert!(a.remote.readonly);
        assert!(matches!(
            a.local,
            Local::Maildir {
                readonly: false,
                ..
            }
        ));
        // Create Slave: the near side, the server; the new Maildir's folders are created anyway.
        assert_eq!(a.create, None);
        assert!(a.notes.iter().any(|n| n.text.contains("near side")));
    }

    #[test]
    fn passcmd_with_xoauth2_gives_the_token_command() {
        let c = convert_text(
            "IMAPAccount o\nHost outlook.office365.com\nUser me@example.com\n\
             PassCmd \"oama access me@example.com\"\nAuthMechs XOAUTH2\nTLSType IMAPS\n\n\
             IMAPStore o-remote\nAccount o\n\nMaildirStore o-local\nPath ~/m/\nInbox ~/m/INBOX\n\n\
             Channel o\nFar :o-remote:\nNear :o-local:\nPatterns *\nCreate Both\nExpunge Both\n",
        );
        let Auth::OAuth2(o) = &c.accounts[0].remote.auth else {
            panic!("not oauth2: {:?}", c.accounts[0].remote.auth)
        };
        assert_eq!(
            o.token_command.as_deref(),
            Some(&["oama".to_string(), "access".into(), "me@example.com".into()][..])
        );
        assert_eq!(o.mechanism.as_deref(), Some("xoauth2"));
        assert_eq!(o.provider, None);
    }

    #[test]
    fn accounts_sharing_a_maildir_store_get_their_directories() {
        let c = convert_text(
            "IMAPStore g-remote\nHost imap.gmail.com\nUser u\n\nIMAPStore w-remote\nHost w\nUser u\n\n\
             MaildirStore local\nPath ~/Mail/\nInbox ~/Mail/INBOX\nSubFolders Verbatim\n\n\
             Channel g\nFar :g-remote:\nNear :local:gmail/\nPatterns *\nCreate Both\nExpunge Both\n\n\
             Channel w\nFar :w-remote:\nNear :local:work/\nPatterns *\nCreate Both\nExpunge Both\n",
        );
        let paths: Vec<&str> = c
            .accounts
            .iter()
            .map(|a| match &a.local {
                Local::Maildir { path, .. } => path.as_str(),
                Local::Imap(_) => "",
            })
            .collect();
        assert_eq!(paths, ["~/Mail/gmail-idlewild", "~/Mail/work-idlewild"]);
        assert!(c.accounts.iter().all(|a| a.folders.rename.is_empty()));
        assert!(
            !c.notes.iter().any(|n| n.text.contains("share or nest")),
            "{:?}",
            c.notes
        );
    }

    #[test]
    fn flatten_and_legacy_layouts_become_nested_with_a_note() {
        for store in ["Flatten .", "SubFolders Legacy"] {
            let c = convert_text(&format!(
                "IMAPStore r\nHost h\nUser u\n\nMaildirStore l\nPath ~/m/\nInbox ~/m/INBOX\n{store}\n\n\
                 Channel c\nFar :r:\nNear :l:\nPatterns *\nCreate Both\nExpunge Both\n"
            ));
            let a = &c.accounts[0];
            assert!(
                matches!(&a.local, Local::Maildir { layout: Layout::Nested, path, .. } if path == "~/m-idlewild")
            );
            assert!(a.notes.iter().any(|n| n.key == Some("layout")), "{store}");
        }
    }
}
