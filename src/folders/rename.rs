//! Renaming between the server's folder names and the local ones (OfflineIMAP's nametrans),
//! in both directions.
//!
//! A rule has a `remote` regex and a `local` replacement (regex crate syntax: `$1`, `${name}`);
//! the first rule whose regex matches a server name replaces the part it matches (anchor with
//! `^`/`$` to take the whole name). Local names are mapped back by each rule's reverse, given
//! explicitly (`local_match`, `remote_replace`) or derived here for the shapes that have an
//! exact inverse: a literal text, or literal text around one `(.*)`/`(.+)` group. Whatever the
//! rules, the mapping is checked on the real folder lists at every run (`super::map_folders`),
//! so a reverse that does not undo its rule on some name is an error naming it, never a folder
//! created under a wrong name.

use regex::Regex;
use regex_syntax::hir::{Dot, Hir, HirKind, Look};

use crate::model::FolderName;

/// A rule, or a preset's, that could not be built; `key` is the rule's key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    pub key: &'static str,
    pub message: String,
}

/// One renaming rule with its reverse.
#[derive(Debug, Clone)]
pub struct Rule {
    remote: Regex,
    local: String,
    local_match: Regex,
    remote_replace: String,
}

impl Rule {
    /// `reverse` is `(local_match, remote_replace)` when the configuration gives it.
    pub fn new(
        remote: &str,
        local: &str,
        reverse: Option<(&str, &str)>,
    ) -> Result<Rule, RuleError> {
        let remote_re = Regex::new(remote).map_err(|e| RuleError {
            key: "remote",
            message: format!("not a valid regex: {e}"),
        })?;
        let (local_match, remote_replace) = match reverse {
            Some((m, r)) => (m.to_owned(), r.to_owned()),
            None => derive(remote, local).map_err(|why| RuleError {
                key: "remote",
                message: format!(
                    "idlewild cannot work out how to map local names back with this rule ({why}); give its reverse as local_match and remote_replace"
                ),
            })?,
        };
        let local_match = Regex::new(&local_match).map_err(|e| RuleError {
            key: "local_match",
            message: format!("not a valid regex: {e}"),
        })?;
        Ok(Rule {
            remote: remote_re,
            local: local.to_owned(),
            local_match,
            remote_replace,
        })
    }

    fn to_local(&self, remote: &str) -> Option<String> {
        replace_first(&self.remote, &self.local, remote)
    }

    fn to_remote(&self, local: &str) -> Option<String> {
        replace_first(&self.local_match, &self.remote_replace, local)
    }
}

fn replace_first(re: &Regex, replacement: &str, name: &str) -> Option<String> {
    re.is_match(name)
        .then(|| re.replacen(name, 1, replacement).into_owned())
}

/// A part of a replacement string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(GroupRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GroupRef {
    Index(u32),
    Name(String),
}

/// Splits a replacement as the regex crate reads it: `$$` is a `$`, `${name}` and `$name` (the
/// longest run of letters, digits and `_`) name a group, and any other `$` is itself.
fn parse_replacement(s: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            text.push('$');
            rest = r;
            continue;
        }
        let (name, remainder) = match after.strip_prefix('{') {
            Some(inner) => match inner.find('}') {
                Some(j) => (&inner[..j], &inner[j + 1..]),
                None => ("", after),
            },
            None => {
                let len = after
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .count();
                (&after[..len], &after[len..])
            }
        };
        if name.is_empty() {
            text.push('$');
            rest = after;
            continue;
        }
        if !text.is_empty() {
            out.push(Piece::Text(std::mem::take(&mut text)));
        }
        out.push(Piece::Group(match name.parse::<u32>() {
            Ok(n) => GroupRef::Index(n),
            Err(_) => GroupRef::Name(name.to_owned()),
        }));
        rest = remainder;
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    out
}

/// Text that a replacement reproduces as is.
fn escape_replacement(text: &str) -> String {
    text.replace('$', "$$")
}

/// The reverse of `remote` -> `local` as (`local_match`, `remote_replace`), for the two shapes
/// whose inverse is exact: literal text (optionally anchored), and `^` text `(.*)` text `$`
/// (or `(.+)`) with a replacement of text around that one group.
fn derive(remote: &str, local: &str) -> Result<(String, String), String> {
    let hir = regex_syntax::Parser::new()
        .parse(remote)
        .map_err(|e| format!("not a valid regex: {e}"))?;
    let all: Vec<&Hir> = match hir.kind() {
        HirKind::Concat(items) => items.iter().collect(),
        HirKind::Empty => Vec::new(),
        _ => vec![&hir],
    };
    let mut items = all.as_slice();
    let start = matches!(
        items.first().map(|h| h.kind()),
        Some(HirKind::Look(Look::Start))
    );
    if start {
        items = &items[1..];
    }
    let end = matches!(
        items.last().map(|h| h.kind()),
        Some(HirKind::Look(Look::End))
    );
    if end {
        items = &items[..items.len() - 1];
    }
    let literal = |h: &Hir| match h.kind() {
        HirKind::Literal(l) => std::str::from_utf8(&l.0).ok().map(str::to_owned),
        _ => None,
    };
    let (before, items) = match items.first().and_then(|h| literal(h)) {
        Some(text) => (text, &items[1..]),
        None => (String::new(), items),
    };
    let (after, middle) = match items.last().and_then(|h| literal(h)) {
        Some(text) => (text, &items[..items.len() - 1]),
        None => (String::new(), items),
    };
    let pieces = parse_replacement(local);
    match middle {
        [] => {
            let mut replacement = String::new();
            for piece in &pieces {
                match piece {
                    Piece::Text(t) => replacement.push_str(t),
                    Piece::Group(_) => {
                        return Err(
                            "the local name refers to a group the remote regex does not have"
                                .into(),
                        );
                    }
                }
            }
            let (open, close) = (if start { "^" } else { "" }, if end { "$" } else { "" });
            Ok((
                format!("{open}{}{close}", regex::escape(&replacement)),
                escape_replacement(&format!("{before}{after}")),
            ))
        }
        [group] => {
            let HirKind::Capture(capture) = group.kind() else {
                return Err("the remote regex holds more than text and one group".into());
            };
            let any =
                |h: &Hir| *h == Hir::dot(Dot::AnyCharExceptLF) || *h == Hir::dot(Dot::AnyChar);
            let repeat = match capture.sub.kind() {
                HirKind::Repetition(r) if r.max.is_none() && r.greedy && any(&r.sub) => {
                    match r.min {
                        0 => "*",
                        1 => "+",
                        _ => return Err("only a group (.*) or (.+) can be reversed".into()),
                    }
                }
                _ => return Err("only a group (.*) or (.+) can be reversed".into()),
            };
            if !start || (!end && !after.is_empty()) {
                return Err("a regex with a group must start with ^ (and end with $ when text follows the group)".into());
            }
            let refers = |g: &GroupRef| match g {
                GroupRef::Index(i) => *i == capture.index,
                GroupRef::Name(n) => capture.name.as_deref() == Some(n.as_str()),
            };
            let (mut lead, mut tail, mut seen) = (String::new(), String::new(), false);
            for piece in &pieces {
                match piece {
                    Piece::Text(t) if seen => tail.push_str(t),
                    Piece::Text(t) => lead.push_str(t),
                    Piece::Group(g) if refers(g) && !seen => seen = true,
                    Piece::Group(_) => {
                        return Err(
                            "the local name must use the group exactly once, and no other".into(),
                        );
                    }
                }
            }
            if !seen {
                return Err(
                    "the local name does not use the group, so names cannot be told apart".into(),
                );
            }
            Ok((
                format!(
                    "^{}((?s:.){repeat}){}$",
                    regex::escape(&lead),
                    regex::escape(&tail)
                ),
                format!(
                    "{}${{1}}{}",
                    escape_replacement(&before),
                    escape_replacement(&after)
                ),
            ))
        }
        _ => Err("the remote regex holds more than text and one group".into()),
    }
}

/// The Gmail folders the preset renames, as (name under `[Gmail]/`, local name).
const GMAIL: [(&str, &str); 7] = [
    ("Sent Mail", "Sent"),
    ("Drafts", "Drafts"),
    ("Trash", "Trash"),
    ("Spam", "Spam"),
    ("Starred", "Starred"),
    ("All Mail", "Archive"),
    ("Important", "Important"),
];

/// Gmail's special folders live under `[Gmail]/`, or `[Google Mail]/` for accounts opened
/// where that was the brand (Germany, the UK).
const GMAIL_ROOTS: [&str; 2] = ["[Gmail]", "[Google Mail]"];

fn gmail_rules(roots: [&str; 2]) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    for root in roots {
        for (remote, local) in GMAIL {
            let pattern = format!("^{}$", regex::escape(&format!("{root}/{remote}")));
            rules.push(Rule::new(&pattern, &escape_replacement(local), None)?);
        }
    }
    Ok(rules)
}

/// The rules of `remote_prefix_strip`: `INBOX/Lists` is the local `Lists`, INBOX stays INBOX.
/// The server-style spelling with its own delimiter (`INBOX.`) means the same level.
pub fn prefix_strip_rules(prefix: &str) -> Result<Vec<Rule>, RuleError> {
    let spelled = match (prefix.strip_suffix('/'), prefix.strip_suffix('.')) {
        (Some(levels), _) => levels.to_owned(),
        (None, Some(levels)) => levels.replace('.', "/"),
        (None, None) => prefix.to_owned(),
    };
    let level = FolderName::new(&spelled).ok_or_else(|| RuleError {
        key: "remote_prefix_strip",
        message: format!("\"{prefix}\" is not a folder name followed by / (say \"INBOX/\")"),
    })?;
    let inbox = Rule::new("^INBOX$", "INBOX", None)?;
    let strip = Rule::new(
        &format!("^{}/(.+)$", regex::escape(level.as_str())),
        "${1}",
        None,
    )?;
    Ok(vec![inbox, strip])
}

/// The ordered rules of one account: `folders.rename`, then `remote_prefix_strip`, then the
/// preset.
#[derive(Debug, Clone, Default)]
pub struct Rename {
    rules: Vec<Rule>,
    /// The Gmail preset: its rules with the `[Gmail]` spellings first, and with the
    /// `[Google Mail]` ones first. Server names map the same either way; a local name maps back
    /// to the spelling the server uses.
    gmail: Option<[Vec<Rule>; 2]>,
}

impl Rename {
    pub fn new(rules: Vec<Rule>, gmail: bool) -> Result<Self, RuleError> {
        let gmail = if gmail {
            let [a, b] = GMAIL_ROOTS;
            Some([gmail_rules([a, b])?, gmail_rules([b, a])?])
        } else {
            None
        };
        Ok(Self { rules, gmail })
    }

    pub fn is_identity(&self) -> bool {
        self.rules.is_empty() && self.gmail.is_none()
    }

    fn chain(&self, google: bool) -> impl Iterator<Item = &Rule> {
        let preset = self
            .gmail
            .as_ref()
            .map(|[gmail, google_first]| if google { google_first } else { gmail });
        self.rules.iter().chain(preset.into_iter().flatten())
    }

    /// The local name of a server folder.
    pub fn to_local(&self, remote: &FolderName) -> Result<FolderName, String> {
        match self.chain(false).find_map(|r| r.to_local(remote.as_str())) {
            Some(raw) => FolderName::new(&raw)
                .ok_or_else(|| format!("the rules make it \"{raw}\", which is not a folder name")),
            None => Ok(remote.clone()),
        }
    }

    /// The server name of a local folder; `google`: the server spells Gmail's root
    /// `[Google Mail]`.
    pub fn to_remote(&self, local: &FolderName, google: bool) -> Result<FolderName, String> {
        match self.chain(google).find_map(|r| r.to_remote(local.as_str())) {
            Some(raw) => FolderName::new(&raw).ok_or_else(|| {
                format!("the rules map it back to \"{raw}\", which is not a folder name")
            }),
            None => Ok(local.clone()),
        }
    }
}

/// Whether a server spells Gmail's root `[Google Mail]`, from its folder names.
pub fn google_spelling<'a>(remote: impl IntoIterator<Item = &'a FolderName>) -> bool {
    let mut google = false;
    for name in remote {
        match name.components().next() {
            Some("[Gmail]") => return false,
            Some("[Google Mail]") => google = true,
            _ => {}
        }
    }
    google
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> FolderName {
        FolderName::new(s).unwrap()
    }

    fn both_ways(rename: &Rename, remote: &str, local: &str) {
        assert_eq!(
            rename.to_local(&name(remote)).unwrap(),
            name(local),
            "{remote} ->"
        );
        assert_eq!(
            rename.to_remote(&name(local), false).unwrap(),
            name(remote),
            "<- {local}"
        );
    }

    #[test]
    fn replacements_are_read_as_the_regex_crate_reads_them() {
        use GroupRef::*;
        use Piece::*;
        assert_eq!(
            parse_replacement("a$1b"),
            vec![Text("a".into()), Group(Name("1b".into()))]
        );
        assert_eq!(
            parse_replacement("a${1}b"),
            vec![Text("a".into()), Group(Index(1)), Text("b".into())]
        );
        assert_eq!(parse_replacement("$$x$"), vec![Text("$x$".into())]);
        assert_eq!(
            parse_replacement("${rest}"),
            vec![Group(Name("rest".into()))]
        );
        assert_eq!(parse_replacement("a${b"), vec![Text("a${b".into())]);
    }

    #[test]
    fn literal_rules_are_reversed() {
        let rule = Rule::new("^Sent Items$", "Sent", None).unwrap();
        let r = Rename::new(vec![rule], false).unwrap();
        both_ways(&r, "Sent Items", "Sent");
        both_ways(&r, "INBOX", "INBOX");
        // A price in the name is text, not a group.
        let rule = Rule::new(r"^Costs \$5$", "Cheap$$", None).unwrap();
        let r = Rename::new(vec![rule], false).unwrap();
        both_ways(&r, "Costs $5", "Cheap$");
    }

    #[test]
    fn prefix_rules_with_one_group_are_reversed() {
        let rule = Rule::new("^Archive/(.+)$", "Old/$1", None).unwrap();
        let r = Rename::new(vec![rule], false).unwrap();
        both_ways(&r, "Archive/2019", "Old/2019");
        both_ways(&r, "Archive/2019/Q1", "Old/2019/Q1");
        let rule = Rule::new("^(?P<rest>.*)$", "Server/${rest}", None).unwrap();
        let r = Rename::new(vec![rule], false).unwrap();
        both_ways(&r, "Lists/rust", "Server/Lists/rust");
        let rule = Rule::new("^", "Server/", None).unwrap();
        let r = Rename::new(vec![rule], false).unwrap();
        both_ways(&r, "Entwürfe", "Server/Entwürfe");
    }

    #[test]
    fn rules_without_an_exact_inverse_are_refused_unless_given_one() {
        for (remote, local) in [
            ("^Foo(\\d+)$", "Bar"),
            ("^(?i)trash$", "Trash"),
            ("^(.*)/(.*)$", "$2/$1"),
            ("^Lists/(.*)$", "Lists"),
            ("^Lists/(.*)$", "$1/$1"),
            ("Lists/(.*)", "$1"),
            ("^a|b$", "c"),
        ] {
            let e = Rule::new(remote, local, None).unwrap_err();
            assert!(e.message.contains("local_match"), "{remote}: {e}");
            assert_eq!(e.key, "remote");
        }
        let rule = Rule::new("^(?i)trash$", "Trash", Some(("^Trash$", "Trash"))).unwrap();
        let r = Rename::new(vec![rule], false).unwrap();
        assert_eq!(r.to_local(&name("TRASH")).unwrap(), name("Trash"));
        let e = Rule::new("(", "x", None).unwrap_err();
        assert_eq!(e.key, "remote");
        let e = Rule::new("^a$", "b", Some(("(", "a"))).unwrap_err();
        assert_eq!(e.key, "local_match");
    }

    #[test]
    fn the_first_matching_rule_wins_both_ways() {
        let rules = vec![
            Rule::new("^Lists/rust$", "rust", None).unwrap(),
            Rule::new("^Lists/(.+)$", "L/$1", None).unwrap(),
        ];
        let r = Rename::new(rules, false).unwrap();
        both_ways(&r, "Lists/rust", "rust");
        both_ways(&r, "Lists/go", "L/go");
    }

    #[test]
    fn a_name_a_rule_spoils_is_an_error_not_a_panic() {
        let rule = Rule::new("^Lists/(.+)$", "$1/", Some(("^(.+)/$", "Lists/$1"))).unwrap();
        let r = Rename::new(vec![rule], false).unwrap();
        let e = r.to_local(&name("Lists/x")).unwrap_err();
        assert!(e.contains("\"x/\""), "{e}");
    }

    #[test]
    fn prefix_strip_takes_both_spellings_and_keeps_inbox() {
        for prefix in ["INBOX/", "INBOX.", "INBOX", "inbox."] {
            let r = Rename::new(prefix_strip_rules(prefix).unwrap(), false).unwrap();
            both_ways(&r, "INBOX", "INBOX");
            both_ways(&r, "INBOX/Lists/rust", "Lists/rust");
            both_ways(&r, "INBOX/Entwürfe", "Entwürfe");
            // A folder outside the prefix does not map back to itself: the check refuses it.
            assert_eq!(r.to_local(&name("Other")).unwrap(), name("Other"));
            assert_eq!(
                r.to_remote(&name("Other"), false).unwrap(),
                name("INBOX/Other")
            );
        }
        let r = Rename::new(prefix_strip_rules("Mail.Box.").unwrap(), false).unwrap();
        both_ways(&r, "Mail/Box/x", "x");
        assert!(prefix_strip_rules("/").is_err());
    }

    #[test]
    fn gmail_preset_maps_both_spellings() {
        let r = Rename::new(Vec::new(), true).unwrap();
        both_ways(&r, "[Gmail]/Sent Mail", "Sent");
        both_ways(&r, "[Gmail]/All Mail", "Archive");
        both_ways(&r, "[Gmail]/Starred", "Starred");
        both_ways(&r, "INBOX", "INBOX");
        both_ways(&r, "[Gmail]/Custom", "[Gmail]/Custom");
        both_ways(&r, "Work", "Work");
        assert_eq!(
            r.to_local(&name("[Google Mail]/Sent Mail")).unwrap(),
            name("Sent")
        );
        assert_eq!(
            r.to_remote(&name("Sent"), true).unwrap(),
            name("[Google Mail]/Sent Mail")
        );
        assert!(google_spelling(&[
            name("INBOX"),
            name("[Google Mail]/Trash")
        ]));
        assert!(!google_spelling(&[name("INBOX"), name("[Gmail]/Trash")]));
    }
}
