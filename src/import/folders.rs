//! Folder selection and naming in the terms of idlewild's `[accounts.NAME.folders]` table:
//! patterns over remote names (`*` across levels, `%` within one, `regex:` for a regular
//! expression), where an exclude always wins over an include, and ordered rename rules.
//!
//! The other tools select differently — mbsync's `Patterns` are ordered and the last match
//! wins, OfflineIMAP's filter is any boolean expression — so their selections are translated
//! here into includes and excludes, and refused with a reason when that cannot be done exactly.
//! Every regular expression written out is anchored at both ends, so it selects the same names
//! whether it is applied as a search or as a whole-name match.

use std::collections::BTreeMap;

/// A pattern over remote folder names, as idlewild spells them (`/` between levels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pat {
    /// Exactly this name.
    Exact(String),
    /// Every name starting with this (`prefix*`); the empty prefix matches every name.
    Prefix(String),
    /// A pattern with `*` (any characters) and `%` (any but `/`) elsewhere than at the end.
    Glob(String),
    /// A regular expression (regex crate syntax) anchored at both ends.
    Regex(String),
}

impl Pat {
    /// Reads an IMAP LIST style pattern (mbsync's `Patterns`).
    pub fn glob(pattern: &str) -> Pat {
        let wild = |c: char| c == '*' || c == '%';
        match pattern.find(wild) {
            None => Pat::Exact(pattern.to_owned()),
            Some(i) if i == pattern.len() - 1 && pattern.ends_with('*') => {
                Pat::Prefix(pattern[..i].to_owned())
            }
            Some(_) => Pat::Glob(pattern.to_owned()),
        }
    }

    /// A regular expression, checked; `anchored` must already match whole names.
    pub fn regex(anchored: String) -> Result<Pat, String> {
        regex::Regex::new(&anchored)
            .map_err(|e| format!("not a usable regular expression: {e}"))?;
        Ok(Pat::Regex(anchored))
    }

    pub fn everything() -> Pat {
        Pat::Prefix(String::new())
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pat::Exact(e) => e == name,
            Pat::Prefix(p) => name.starts_with(p.as_str()),
            Pat::Glob(g) => glob_match(g, name),
            // Checked when made; an expression that no longer compiles matches nothing.
            Pat::Regex(r) => regex::Regex::new(r).is_ok_and(|re| re.is_match(name)),
        }
    }

    /// The pattern as the configuration file writes it.
    pub fn render(&self) -> String {
        let wild = |s: &str| s.contains(['*', '%']);
        match self {
            Pat::Exact(e) if wild(e) => format!("regex:^{}$", regex::escape(e)),
            Pat::Exact(e) => e.clone(),
            Pat::Prefix(p) if wild(p) => format!("regex:^{}.*$", regex::escape(p)),
            Pat::Prefix(p) => format!("{p}*"),
            Pat::Glob(g) => g.clone(),
            Pat::Regex(r) => format!("regex:{r}"),
        }
    }

    /// The literal text every matching name starts with, where it is known.
    fn literal_prefix(&self) -> Option<&str> {
        match self {
            Pat::Exact(s) | Pat::Prefix(s) => Some(s),
            Pat::Glob(g) => g.find(['*', '%']).map(|i| &g[..i]),
            Pat::Regex(_) => None,
        }
    }
}

/// `*` matches any characters, `%` any characters but `/` (IMAP LIST, RFC 3501 section 6.3.8).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // can[j]: the pattern read so far can end right before n[j].
    let mut can = vec![false; n.len() + 1];
    can[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                let mut reach = false;
                for j in 0..=n.len() {
                    reach = can[j] || (reach && j > 0 && (pc == '*' || n[j - 1] != '/'));
                    next[j] = reach;
                }
            }
            c => {
                for j in 1..=n.len() {
                    next[j] = can[j - 1] && n[j - 1] == c;
                }
            }
        }
        can = next;
    }
    can[n.len()]
}

/// One selection rule: names matching `pat` are taken (`include`) or left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub include: bool,
    pub pat: Pat,
}

impl Rule {
    pub fn take(pat: Pat) -> Rule {
        Rule { include: true, pat }
    }
    pub fn skip(pat: Pat) -> Rule {
        Rule {
            include: false,
            pat,
        }
    }
}

/// An ordered list of rules of which the last matching one decides, as mbsync's `Patterns`; a
/// name no rule matches is not selected. The folders an account syncs are the union of its
/// selections (one per mbsync Channel, one per term of an OfflineIMAP filter).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection(pub Vec<Rule>);

/// The `include` and `exclude` lists of the configuration; empty `include` means the default
/// (every folder).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FolderSet {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Excludes that had to be narrowed into a regular expression, with why, for a comment.
    pub explained: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overlap {
    Disjoint,
    /// Every name the exclude matches is matched by the include too.
    Covers,
    Partial,
    Unknown,
}

/// How an exclude `n` and a later (or other) include `b` share names.
fn overlap(n: &Pat, b: &Pat) -> Overlap {
    let apart = |a: Option<&str>, b: Option<&str>| match (a, b) {
        (Some(a), Some(b)) => !a.starts_with(b) && !b.starts_with(a),
        _ => false,
    };
    match (n, b) {
        (Pat::Exact(e), b) => {
            if b.matches(e) {
                Overlap::Covers
            } else {
                Overlap::Disjoint
            }
        }
        (Pat::Prefix(p), Pat::Exact(e)) => {
            if e.starts_with(p.as_str()) {
                Overlap::Partial
            } else {
                Overlap::Disjoint
            }
        }
        (Pat::Prefix(p), Pat::Prefix(q)) => {
            if p.starts_with(q.as_str()) {
                Overlap::Covers
            } else if q.starts_with(p.as_str()) {
                Overlap::Partial
            } else {
                Overlap::Disjoint
            }
        }
        (n, Pat::Exact(e)) => {
            if n.matches(e) {
                Overlap::Partial
            } else {
                Overlap::Disjoint
            }
        }
        (n, b) => {
            if apart(n.literal_prefix(), b.literal_prefix()) {
                Overlap::Disjoint
            } else {
                Overlap::Unknown
            }
        }
    }
}

/// Turns selections into includes and excludes where an exclude wins, selecting exactly the
/// same names, or says why that cannot be done.
pub fn include_exclude(selections: &[Selection]) -> Result<FolderSet, String> {
    let mut include: Vec<Pat> = Vec::new();
    for rule in selections.iter().flat_map(|s| &s.0) {
        if rule.include && !include.contains(&rule.pat) {
            include.push(rule.pat.clone());
        }
    }
    if include.contains(&Pat::everything()) {
        include = vec![Pat::everything()];
    }
    let mut out = FolderSet {
        include: if include == [Pat::everything()] {
            Vec::new()
        } else {
            include.iter().map(Pat::render).collect()
        },
        ..FolderSet::default()
    };
    for (si, selection) in selections.iter().enumerate() {
        for (ri, rule) in selection.0.iter().enumerate() {
            if rule.include {
                continue;
            }
            // An exclude wins over every include in idlewild; in the source, includes after it
            // in its own list, and every include of another selection, win over it.
            let later = selection.0[ri + 1..]
                .iter()
                .enumerate()
                .map(|(j, r)| (si, ri + 1 + j, r));
            let others = selections
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != si)
                .flat_map(|(i, s)| s.0.iter().enumerate().map(move |(j, r)| (i, j, r)));
            let mut partial = Vec::new();
            let mut covered = false;
            for (bs, bj, b) in later.chain(others).filter(|(_, _, r)| r.include) {
                let relation = overlap(&rule.pat, &b.pat);
                if relation == Overlap::Disjoint {
                    continue;
                }
                // The include only wins where its own list does not exclude again after it.
                let clean = selections[bs].0[bj + 1..]
                    .iter()
                    .filter(|r| !r.include)
                    .all(|r| overlap(&r.pat, &b.pat) == Overlap::Disjoint);
                if !clean || relation == Overlap::Unknown {
                    return Err(format!(
                        "\"{}\" is excluded, but \"{}\" is included after it, and idlewild's includes and excludes cannot say which folders that leaves",
                        rule.pat.render(),
                        b.pat.render()
                    ));
                }
                match relation {
                    Overlap::Covers => covered = true,
                    _ => partial.push(&b.pat),
                }
            }
            if covered {
                continue;
            }
            let rendered = if partial.is_empty() {
                rule.pat.render()
            } else {
                let Pat::Prefix(p) = &rule.pat else {
                    return Err(format!(
                        "\"{}\" is excluded but \"{}\" included after it; idlewild's excludes always win, and only an exclude of a name or a prefix can be narrowed",
                        rule.pat.render(),
                        partial[0].render()
                    ));
                };
                // The complement is built recursively, one level per character.
                if partial.iter().any(|b| b.render().chars().count() > 1000) {
                    return Err("a folder name is too long to narrow an exclude by".into());
                }
                let mut root = Node::default();
                for b in &partial {
                    // `overlap` finds a prefix exclude partly covered only by names and longer
                    // prefixes that start with it.
                    match b {
                        Pat::Exact(e) => root.insert(&e[p.len()..]).exact = true,
                        Pat::Prefix(q) => root.insert(&q[p.len()..]).prefix = true,
                        other => {
                            return Err(format!(
                                "cannot narrow the exclude \"{}\" by \"{}\"",
                                rule.pat.render(),
                                other.render()
                            ));
                        }
                    }
                }
                let Some(rest) = root.complement() else {
                    continue;
                };
                let regex = format!("regex:^{}{rest}$", regex::escape(p));
                let kept: Vec<String> = partial.iter().map(|b| b.render()).collect();
                out.explained.push((
                    regex.clone(),
                    format!(
                        "the regex excludes {} except {} (in the original a later pattern wins; in idlewild an exclude always wins)",
                        rule.pat.render(),
                        kept.join(", ")
                    ),
                ));
                regex
            };
            if !out.exclude.contains(&rendered) {
                out.exclude.push(rendered);
            }
        }
    }
    Ok(out)
}

/// A trie of the names (and prefixes) an exclude must not match.
#[derive(Debug, Default)]
struct Node {
    children: BTreeMap<char, Node>,
    /// A name to keep ends here.
    exact: bool,
    /// Every name through here is kept.
    prefix: bool,
}

impl Node {
    fn insert(&mut self, s: &str) -> &mut Node {
        let mut node = self;
        for c in s.chars() {
            node = node.children.entry(c).or_default();
        }
        node
    }

    /// A regular expression for the strings below this node that are not kept; `None` when
    /// there are none.
    fn complement(&self) -> Option<String> {
        if self.prefix {
            return None;
        }
        let mut alts = Vec::new();
        if !self.exact {
            alts.push(String::new());
        }
        if self.children.is_empty() {
            alts.push(".+".to_owned());
        } else {
            let class: String = self
                .children
                .keys()
                .map(|c| regex::escape(&c.to_string()))
                .collect();
            alts.push(format!("[^{class}].*"));
        }
        for (c, child) in &self.children {
            if let Some(rest) = child.complement() {
                alts.push(format!("{}{rest}", regex::escape(&c.to_string())));
            }
        }
        match alts.len() {
            0 => None,
            1 => alts.pop(),
            _ => Some(format!("(?:{})", alts.join("|"))),
        }
    }
}

/// Converts a Python regular expression to the regex crate's syntax. With `dot_is_separator`
/// (the server separates levels with `.`), a literal dot is a level separator: `/` in idlewild's
/// spelling.
pub fn python_regex(src: &str, dot_is_separator: bool) -> Result<String, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::new();
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&e) = chars.get(i + 1) else {
                    return Err("the expression ends with a backslash".into());
                };
                i += 2;
                match e {
                    '.' if dot_is_separator => out.push('/'),
                    'Z' if !in_class => out.push_str(r"\z"),
                    '1'..='9' if !in_class => {
                        return Err(
                            "back-references are not supported by idlewild's regular expressions"
                                .into(),
                        );
                    }
                    _ => {
                        out.push('\\');
                        out.push(e);
                    }
                }
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                i += 1;
                // A `]` right after `[` or `[^` is a literal.
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push_str(r"\]");
                    i += 1;
                }
                continue;
            }
            ']' if in_class => in_class = false,
            '[' if in_class => {
                // A literal `[` in a class; the regex crate would read `[[` as a nested class.
                out.push_str(r"\[");
                i += 1;
                continue;
            }
            '.' if in_class && dot_is_separator => {
                out.push('/');
                i += 1;
                continue;
            }
            '(' if !in_class && chars.get(i + 1) == Some(&'?') => {
                let rest: String = chars[i..chars.len().min(i + 4)].iter().collect();
                if rest.starts_with("(?=")
                    || rest.starts_with("(?!")
                    || rest.starts_with("(?<=")
                    || rest.starts_with("(?<!")
                {
                    return Err("look-ahead and look-behind are not supported by idlewild's regular expressions".into());
                }
                if rest.starts_with("(?P=") {
                    return Err(
                        "back-references are not supported by idlewild's regular expressions"
                            .into(),
                    );
                }
                if rest.starts_with("(?#") {
                    while i < chars.len() && chars[i] != ')' {
                        i += 1;
                    }
                    i += 1;
                    continue;
                }
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    regex::Regex::new(&out).map_err(|e| format!("not a usable regular expression: {e}"))?;
    Ok(out)
}

/// Whether `re` has a `|` outside any group or class, so that it cannot be wrapped without one.
pub(super) fn top_level_alternation(re: &str) -> bool {
    let mut depth = 0usize;
    let mut in_class = false;
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class => depth += 1,
            ')' if !in_class => depth = depth.saturating_sub(1),
            '|' if !in_class && depth == 0 => return true,
            _ => {}
        }
    }
    false
}

/// Whether `re` ends with a `$` that is not escaped.
pub(super) fn ends_with_anchor(re: &str) -> bool {
    let Some(body) = re.strip_suffix('$') else {
        return false;
    };
    body.chars().rev().take_while(|c| *c == '\\').count() % 2 == 0
}

/// A whole-name expression selecting what `re.search(re, name)` finds something in.
pub fn search_anchored(re: &str) -> String {
    if top_level_alternation(re) {
        return format!("^.*(?:{re}).*$");
    }
    let (head, body) = match re.strip_prefix('^') {
        Some(rest) => ("", rest),
        None => (".*", re),
    };
    let (body, tail) = if ends_with_anchor(body) {
        (&body[..body.len() - 1], "")
    } else {
        (body, ".*")
    };
    format!("^{head}{body}{tail}$")
}

/// A whole-name expression selecting what `re.match(re, name)` matches (anchored at the start).
pub fn match_anchored(re: &str) -> String {
    let re = re.strip_prefix('^').unwrap_or(re);
    if top_level_alternation(re) {
        return format!("^(?:{re}).*$");
    }
    if ends_with_anchor(re) {
        format!("^{re}")
    } else {
        format!("^{re}.*$")
    }
}

/// One rename rule of `folders.rename`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    /// Matches whole remote names.
    pub remote: String,
    /// The local name, with `$1`/`${name}` for groups of `remote`.
    pub local: String,
    pub local_match: Option<String>,
    pub remote_replace: Option<String>,
}

impl Rename {
    /// A rule renaming exactly one remote name.
    pub fn exact(remote: &str, local: &str) -> Rename {
        Rename {
            remote: format!("^{}$", regex::escape(remote)),
            local: literal_replacement(local),
            local_match: None,
            remote_replace: None,
        }
    }

    /// A rule replacing the prefix `remote` of a name by `local`.
    pub fn prefix(remote: &str, local: &str) -> Rename {
        Rename {
            remote: format!("^{}(.*)$", regex::escape(remote)),
            local: format!("{}${{1}}", literal_replacement(local)),
            local_match: None,
            remote_replace: None,
        }
    }

    /// The local name for `remote_name`, if this rule applies.
    pub fn apply(&self, remote_name: &str) -> Option<String> {
        let re = regex::Regex::new(&self.remote).ok()?;
        re.is_match(remote_name)
            .then(|| re.replace(remote_name, self.local.as_str()).into_owned())
    }
}

/// `text` as a replacement that inserts it literally.
pub fn literal_replacement(text: &str) -> String {
    text.replace('$', "$$")
}

/// Converts a Python `re.sub` replacement to the regex crate's syntax.
pub fn python_replacement(src: &str, dot_is_separator: bool) -> Result<String, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '$' => out.push_str("$$"),
            '.' if dot_is_separator => out.push('/'),
            '\\' => {
                let Some(&e) = chars.get(i) else {
                    return Err("the replacement ends with a backslash".into());
                };
                i += 1;
                match e {
                    '\\' => out.push('\\'),
                    'g' => {
                        let rest: String = chars[i..].iter().collect();
                        let name = rest
                            .strip_prefix('<')
                            .and_then(|r| r.split_once('>'))
                            .map(|(n, _)| n.to_owned())
                            .filter(|n| !n.is_empty())
                            .ok_or("a \\g in the replacement without <name>")?;
                        i += name.chars().count() + 2;
                        out.push_str(&format!("${{{name}}}"));
                    }
                    '1'..='9' => {
                        let mut group = e.to_string();
                        if let Some(d) = chars.get(i).filter(|d| d.is_ascii_digit()) {
                            group.push(*d);
                            i += 1;
                        }
                        out.push_str(&format!("${{{group}}}"));
                    }
                    e if e.is_ascii_alphanumeric() => {
                        return Err(format!(
                            "the escape \\{e} in a replacement makes no folder name"
                        ));
                    }
                    // Python keeps other escapes as they are.
                    e => {
                        out.push('\\');
                        out.push(e);
                    }
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<&'static str> {
        vec![
            "INBOX",
            "INBOX/Sub",
            "Sent",
            "Trash",
            "Trash/Old",
            "Lists/rust",
            "Lists/rust-users",
            "Lists/go",
            "[Gmail]",
            "[Gmail]/Sent Mail",
            "[Gmail]/Starred",
            "[Gmail]/All Mail",
            "[Gmail]/Spam",
            "[Gmail]/Sent",
            "[Gmail]/Sent Mail/x",
            "a*b",
        ]
    }

    /// What a selection list takes, by its own (last match wins, union) semantics.
    fn reference(selections: &[Selection], name: &str) -> bool {
        selections.iter().any(|s| {
            s.0.iter()
                .rev()
                .find(|r| r.pat.matches(name))
                .is_some_and(|r| r.include)
        })
    }

    /// What idlewild takes with the produced lists.
    fn produced(set: &FolderSet, name: &str) -> bool {
        let parse = |p: &String| match p.strip_prefix("regex:") {
            Some(r) => Pat::Regex(r.to_owned()),
            None => Pat::glob(p),
        };
        let included = set.include.is_empty() || set.include.iter().any(|p| parse(p).matches(name));
        included && !set.exclude.iter().any(|p| parse(p).matches(name))
    }

    fn check(selections: &[Selection]) -> FolderSet {
        let set = include_exclude(selections).unwrap();
        for name in names() {
            assert_eq!(
                produced(&set, name),
                reference(selections, name),
                "{name} with {set:?}"
            );
        }
        set
    }

    fn sel(patterns: &str) -> Selection {
        Selection(
            patterns
                .split(',')
                .map(|p| match p.strip_prefix('!') {
                    Some(p) => Rule::skip(Pat::glob(p)),
                    None => Rule::take(Pat::glob(p)),
                })
                .collect(),
        )
    }

    #[test]
    fn globs_follow_imap_list() {
        assert!(glob_match("*", "a/b"));
        assert!(glob_match("%", "ab"));
        assert!(!glob_match("%", "a/b"));
        assert!(glob_match("Lists/%", "Lists/rust"));
        assert!(!glob_match("Lists/%", "Lists/rust/x"));
        assert!(glob_match("*rust*", "Lists/rust/x"));
        assert!(glob_match("", ""));
        assert!(!glob_match("a", "ab"));
        assert_eq!(Pat::glob("Lists/*"), Pat::Prefix("Lists/".into()));
        assert_eq!(Pat::glob("INBOX"), Pat::Exact("INBOX".into()));
        assert_eq!(Pat::glob("*/x"), Pat::Glob("*/x".into()));
    }

    #[test]
    fn plain_includes_and_excludes_pass_through() {
        let set = check(&[sel("*,!Trash,!Lists/*")]);
        assert_eq!(set.include, Vec::<String>::new());
        assert_eq!(set.exclude, ["Trash", "Lists/*"]);
        let set = check(&[sel("INBOX,Sent,Lists/%")]);
        assert_eq!(set.include, ["INBOX", "Sent", "Lists/%"]);
        assert!(set.exclude.is_empty());
    }

    #[test]
    fn a_later_include_narrows_an_earlier_exclude() {
        // The common mbsync Gmail line.
        let set = check(&[sel(
            "*,![Gmail]*,[Gmail]/Sent Mail,[Gmail]/Starred,[Gmail]/All Mail",
        )]);
        assert_eq!(set.exclude.len(), 1);
        assert!(set.exclude[0].starts_with("regex:^\\[Gmail\\]"), "{set:?}");
        assert_eq!(set.explained.len(), 1);
        check(&[sel("*,!Lists/*,Lists/rust*")]);
        // An include that covers the exclude makes it moot.
        let set = check(&[sel("!Trash,*")]);
        assert!(set.exclude.is_empty());
        let set = check(&[sel("*,!Lists/*,Lists/*")]);
        assert!(set.exclude.is_empty());
    }

    #[test]
    fn the_union_of_selections_is_kept() {
        // Two mbsync channels: everything but Trash, and Trash on its own.
        let set = check(&[sel("*,!Trash"), sel("Trash")]);
        assert!(set.exclude.is_empty());
        check(&[sel("*,![Gmail]*"), sel("[Gmail]/Sent Mail")]);
        check(&[sel("INBOX,!INBOX/*"), sel("Sent")]);
    }

    #[test]
    fn what_cannot_be_expressed_is_refused() {
        let e = include_exclude(&[sel("*,!*/x,Lists/x")]).unwrap_err();
        assert!(e.contains("only an exclude of a name or a prefix"), "{e}");
        let e = include_exclude(&[sel("*,!Lists/*,*rust*")]).unwrap_err();
        assert!(e.contains("cannot say"), "{e}");
        // The later include is itself narrowed again.
        let e = include_exclude(&[sel("*,!Lists/*,Lists/rust*,!Lists/rust-old")]).unwrap_err();
        assert!(e.contains("cannot say"), "{e}");
        // Everything but names both starting with a and ending with b.
        let e = include_exclude(&[sel("*,!a*"), sel("*,!*b")]).unwrap_err();
        assert!(e.contains("cannot say"), "{e}");
    }

    #[test]
    fn literal_wildcards_become_regexes() {
        assert_eq!(Pat::Exact("a*b".into()).render(), "regex:^a\\*b$");
        let set = check(&[Selection(vec![Rule::take(Pat::Exact("a*b".into()))])]);
        assert_eq!(set.include, ["regex:^a\\*b$"]);
    }

    #[test]
    fn python_regexes_convert() {
        assert_eq!(python_regex(r"^INBOX\.", true), Ok("^INBOX/".into()));
        assert_eq!(python_regex(r"^INBOX\.", false), Ok(r"^INBOX\.".into()));
        assert_eq!(python_regex(r"[.x]", true), Ok("[/x]".into()));
        assert_eq!(python_regex(r"[]a]", false), Ok(r"[\]a]".into()));
        assert_eq!(python_regex(r"a\Z", false), Ok(r"a\z".into()));
        assert_eq!(python_regex(r"(?P<n>x)(?#c)", false), Ok("(?P<n>x)".into()));
        assert!(
            python_regex(r"(?!x)", false)
                .unwrap_err()
                .contains("look-ahead")
        );
        assert!(
            python_regex(r"(a)\1", false)
                .unwrap_err()
                .contains("back-ref")
        );
        assert!(python_regex(r"(", false).is_err());
    }

    #[test]
    fn searches_become_whole_name_expressions() {
        let cases = [
            ("Trash", "Trash", true),
            ("Trash", "Old/Trash/x", true),
            ("^Trash$", "Trash/x", false),
            ("^Trash$", "Trash", true),
            ("(^Trash$|Del)", "Deleted Items", true),
            ("(^Trash$|Del)", "Sent", false),
            ("^Trash$|Del", "Deleted", true),
            ("^Trash$|Del", "Trash", true),
            ("^Trash$|Del", "x", false),
            (r"x\$", "ax$b", true),
        ];
        for (re, name, expected) in cases {
            let anchored = search_anchored(re);
            assert!(anchored.starts_with('^') && anchored.ends_with('$'));
            let found = regex::Regex::new(&anchored).unwrap().is_match(name);
            assert_eq!(found, expected, "{re} / {anchored} on {name}");
        }
        assert_eq!(search_anchored("^Trash"), "^Trash.*$");
        assert_eq!(search_anchored("Spam$"), "^.*Spam$");
        assert_eq!(match_anchored("Lists"), "^Lists.*$");
        assert_eq!(match_anchored("a|b"), "^(?:a|b).*$");
    }

    #[test]
    fn replacements_convert() {
        assert_eq!(
            python_replacement(r"\1-\g<name>", false),
            Ok("${1}-${name}".into())
        );
        assert_eq!(python_replacement("a$b", false), Ok("a$$b".into()));
        assert_eq!(python_replacement("a.b", true), Ok("a/b".into()));
        assert_eq!(python_replacement(r"\\", false), Ok("\\".into()));
        assert!(python_replacement(r"\n", false).is_err());
        let rule = Rename::prefix("INBOX/", "");
        assert_eq!(rule.apply("INBOX/Sent").as_deref(), Some("Sent"));
        assert_eq!(rule.apply("INBOX"), None);
        let rule = Rename::exact("[Gmail]/Sent Mail", "sent$");
        assert_eq!(rule.apply("[Gmail]/Sent Mail").as_deref(), Some("sent$"));
    }
}
