//! Which folders an account syncs: `folders.include` and `folders.exclude`, matched against the
//! server's folder name as idlewild spells it (`/` between levels, `INBOX` in capitals).
//!
//! A glob follows IMAP LIST (RFC 3501 §6.3.8): `*` matches anything, `/` included, and `%`
//! anything within one level. `regex:<regex>` is a regular expression that must match the whole
//! name, as if written between `^` and `$`.

use regex::Regex;

use crate::model::FolderName;

/// One include or exclude pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// As written in the configuration, for messages.
    source: String,
    regex: Regex,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(String);

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, PatternError> {
        let body = match source.strip_prefix("regex:") {
            Some(re) => {
                // Checked alone first, so the error speaks of the user's regex, not the anchors.
                Regex::new(re).map_err(|e| PatternError(format!("not a valid regex: {e}")))?;
                format!("^(?:{re})$")
            }
            None => glob_to_regex(source)?,
        };
        let regex = Regex::new(&body).map_err(|e| PatternError(format!("not usable: {e}")))?;
        Ok(Pattern {
            source: source.to_owned(),
            regex,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, name: &FolderName) -> bool {
        self.regex.is_match(name.as_str())
    }

    /// Whether this pattern names `name` itself: no wildcard, no regex.
    pub fn names(&self, name: &FolderName) -> bool {
        !self.source.starts_with("regex:")
            && !self.source.contains(['*', '%'])
            && self.matches(name)
    }
}

/// A glob as an anchored regex. `INBOX` as the first level is matched in capitals whatever its
/// spelling here, as folder names always spell it (RFC 3501 §5.1: INBOX is case-insensitive).
fn glob_to_regex(glob: &str) -> Result<String, PatternError> {
    if glob.is_empty() {
        return Err(PatternError("an empty pattern matches no folder".into()));
    }
    let glob = match glob.split_once('/') {
        Some((first, rest)) if first.eq_ignore_ascii_case("INBOX") => format!("INBOX/{rest}"),
        None if glob.eq_ignore_ascii_case("INBOX") => "INBOX".to_owned(),
        _ => glob.to_owned(),
    };
    let mut out = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => out.push_str("(?s:.*)"),
            '%' => out.push_str("[^/]*"),
            c => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    out.push('$');
    Ok(out)
}

/// Whether a folder is synced, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Included,
    /// An exclude pattern matched (exclude wins over include).
    Excluded {
        pattern: String,
    },
    /// No include pattern matched.
    NotIncluded,
    /// The server marks it as mail a user does not usually want copied (Gmail's spam and
    /// trash): left out unless `folders.include` names it.
    LeftOut {
        reason: String,
    },
}

impl Selection {
    pub fn is_included(&self) -> bool {
        match self {
            Selection::Included => true,
            Selection::Excluded { .. } | Selection::NotIncluded | Selection::LeftOut { .. } => {
                false
            }
        }
    }
}

impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selection::Included => f.write_str("included"),
            Selection::Excluded { pattern } => write!(f, "excluded by \"{pattern}\""),
            Selection::NotIncluded => f.write_str("not included"),
            Selection::LeftOut { reason } => write!(
                f,
                "left out ({reason}); name it in folders.include to sync it"
            ),
        }
    }
}

/// `folders.include` and `folders.exclude` of one account.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `None`: every folder (the default, `["*"]`).
    include: Option<Vec<Pattern>>,
    exclude: Vec<Pattern>,
}

impl Filter {
    pub fn new(include: Option<Vec<Pattern>>, exclude: Vec<Pattern>) -> Self {
        Self { include, exclude }
    }

    /// Whether `remote` (a server folder name as idlewild spells it) is synced.
    pub fn select(&self, remote: &FolderName) -> Selection {
        self.select_unless(remote, None)
    }

    /// Like [`Filter::select`], for a folder the server marks as left out by default for
    /// `left_out` (a reason), unless an include pattern names it.
    pub fn select_unless(&self, remote: &FolderName, left_out: Option<&str>) -> Selection {
        if let Some(p) = self.exclude.iter().find(|p| p.matches(remote)) {
            return Selection::Excluded {
                pattern: p.source.clone(),
            };
        }
        if let Some(reason) = left_out
            && !self.include.iter().flatten().any(|p| p.names(remote))
        {
            return Selection::LeftOut {
                reason: reason.to_owned(),
            };
        }
        match &self.include {
            None => Selection::Included,
            Some(include) if include.iter().any(|p| p.matches(remote)) => Selection::Included,
            Some(_) => Selection::NotIncluded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_left_out_by_the_server_is_synced_only_when_an_include_names_it() {
        let spam = name("[Gmail]/Spam");
        let patterns = |p: &[&str]| {
            p.iter()
                .map(|p| Pattern::new(p).unwrap())
                .collect::<Vec<_>>()
        };
        let why = Some("Gmail's spam");
        let every = Filter::new(None, Vec::new());
        assert!(matches!(
            every.select_unless(&spam, why),
            Selection::LeftOut { .. }
        ));
        assert!(every.select_unless(&spam, None).is_included());
        let wildcard = Filter::new(Some(patterns(&["*", "[Gmail]/%"])), Vec::new());
        assert!(!wildcard.select_unless(&spam, why).is_included());
        let named = Filter::new(Some(patterns(&["INBOX", "[Gmail]/Spam"])), Vec::new());
        assert!(named.select_unless(&spam, why).is_included());
        let excluded = Filter::new(Some(patterns(&["[Gmail]/Spam"])), patterns(&["*Spam"]));
        assert!(matches!(
            excluded.select_unless(&spam, why),
            Selection::Excluded { .. }
        ));
        assert_eq!(
            every.select_unless(&spam, why).to_string(),
            "left out (Gmail's spam); name it in folders.include to sync it"
        );
    }

    fn name(s: &str) -> FolderName {
        FolderName::new(s).unwrap()
    }

    fn matches(pattern: &str, folder: &str) -> bool {
        Pattern::new(pattern).unwrap().matches(&name(folder))
    }

    #[test]
    fn star_crosses_levels_and_percent_does_not() {
        assert!(matches("Lists/*", "Lists/rust"));
        assert!(matches("Lists/*", "Lists/rust/announce"));
        assert!(matches("Lists/%", "Lists/rust"));
        assert!(!matches("Lists/%", "Lists/rust/announce"));
        assert!(!matches("Lists/%", "Lists"));
        assert!(matches("%", "Entwürfe"));
        assert!(!matches("%", "Archive/2019"));
        assert!(matches("*", "Archive/2019"));
        assert!(matches("Archive/20%", "Archive/2019"));
        assert!(!matches("Archive/20%", "Archive/2019/Q1"));
    }

    #[test]
    fn globs_match_whole_names_and_other_characters_literally() {
        assert!(!matches("Lists", "Lists/rust"));
        assert!(!matches("rust", "Lists/rust"));
        assert!(matches("[Gmail]/*", "[Gmail]/Sent Mail"));
        assert!(!matches("[Gmail]/*", "G/x"));
        assert!(matches("a.b+c?", "a.b+c?"));
        assert!(!matches("a.b", "axb"));
        assert!(matches("Entwürfe", "Entwürfe"));
    }

    #[test]
    fn inbox_is_matched_in_any_spelling() {
        assert!(matches("inbox", "INBOX"));
        assert!(matches("Inbox/%", "INBOX/Sub"));
        assert!(!matches("inbox", "Inbox2"));
    }

    #[test]
    fn regex_patterns_match_whole_names() {
        assert!(matches("regex:Lists/.*", "Lists/rust"));
        assert!(!matches("regex:rust", "Lists/rust"));
        assert!(matches("regex:.*rust", "Lists/rust"));
        assert!(matches("regex:(?i)trash|spam", "Spam"));
        let e = Pattern::new("regex:(unclosed").unwrap_err();
        assert!(e.to_string().starts_with("not a valid regex: "), "{e}");
        assert!(Pattern::new("").is_err());
    }

    #[test]
    fn exclude_wins_and_says_which_pattern() {
        let p = |s: &str| Pattern::new(s).unwrap();
        let f = Filter::new(Some(vec![p("*")]), vec![p("Trash"), p("Lists/%")]);
        assert_eq!(f.select(&name("INBOX")), Selection::Included);
        assert_eq!(
            f.select(&name("Lists/rust")),
            Selection::Excluded {
                pattern: "Lists/%".into()
            }
        );
        assert_eq!(f.select(&name("Lists/rust/x")), Selection::Included);
        let only = Filter::new(Some(vec![p("INBOX"), p("Lists/*")]), vec![p("Lists/spam")]);
        assert_eq!(only.select(&name("Archive")), Selection::NotIncluded);
        assert_eq!(only.select(&name("Lists/a")), Selection::Included);
        assert!(!only.select(&name("Lists/spam")).is_included());
        assert!(Filter::default().select(&name("a/b/c")).is_included());
    }
}
