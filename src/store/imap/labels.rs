//! Gmail's labels as keywords of the All Mail folder, and back.
//!
//! In Gmail mode the messages of the `\All` folder carry their labels (X-GM-LABELS) as
//! keywords, so a mail client or a notmuch hook that reads only All Mail sees them, and a
//! keyword added or removed there becomes a label added or removed on the server. The names
//! must go both ways without loss, and a label keyword must never be taken for one of the
//! keywords Gmail also keeps (FLAGS: `$Phishing`, `$MDNSent`, `Junk`, Thunderbird's
//! `$label1`, ...), so:
//!
//! - the system labels that stand for a folder become `$Inbox`, `$Important` and `$Sent`;
//!   `\Starred` and `\Draft` are the `\Flagged` and `\Draft` flags already, and other system
//!   labels are left alone (neither listed nor ever removed: labels are stored with `+`/`-`);
//! - a user label is its name as Gmail sends it (modified UTF-7), with each character an IMAP
//!   keyword cannot hold written `=XX` (hexadecimal), and `=` itself too; so are a leading
//!   `$` and the first letter of `Junk`, `NonJunk` and `NotJunk`, which are keywords' names;
//! - on the way back, a keyword is a label if it is one of the three system ones, or if it
//!   neither starts with `$` nor is one of those three junk names.

use crate::model::Keyword;

/// System labels kept as keywords, with the keyword that stands for each.
const SYSTEM: &[(&str, &str)] = &[
    ("\\Inbox", "$Inbox"),
    ("\\Important", "$Important"),
    ("\\Sent", "$Sent"),
];

/// Keywords without a `$` that mail clients set as keywords, not labels.
const JUNK_NAMES: &[&str] = &["Junk", "NonJunk", "NotJunk"];

/// The keyword standing for `label` (as Gmail sends it, modified UTF-7 unchanged), or `None`
/// for a label that is not synced as a keyword.
pub(super) fn to_keyword(label: &str) -> Option<Keyword> {
    if label.starts_with('\\') {
        let (_, keyword) = SYSTEM
            .iter()
            .find(|(system, _)| system.eq_ignore_ascii_case(label))?;
        return Keyword::new(keyword);
    }
    let junk = JUNK_NAMES.iter().any(|j| j.eq_ignore_ascii_case(label));
    let mut out = String::with_capacity(label.len());
    for (i, c) in label.chars().enumerate() {
        let escape = c == '='
            || !c.is_ascii_graphic()
            || matches!(c, '(' | ')' | '{' | '%' | '*' | '"' | '\\' | ']')
            || (i == 0 && (c == '$' || junk));
        if escape {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("={byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    Keyword::new(&out)
}

/// The label `keyword` stands for, or `None` when it is a keyword of its own.
pub(super) fn to_label(keyword: &Keyword) -> Option<String> {
    let name = keyword.as_str();
    if let Some((system, _)) = SYSTEM.iter().find(|(_, k)| k.eq_ignore_ascii_case(name)) {
        return Some((*system).to_owned());
    }
    if name.starts_with('$') || JUNK_NAMES.iter().any(|j| j.eq_ignore_ascii_case(name)) {
        return None;
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'=')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            // A stray `=` (typed by a person) stands for itself.
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    // Labels come as modified UTF-7, printable US-ASCII; anything else (a control character
    // written `=0D`, say) is no label's name and could not be sent in a quoted string.
    String::from_utf8(out)
        .ok()
        .filter(|label| label.bytes().all(|b| (0x20..0x7f).contains(&b)))
}

/// `label` as an X-GM-LABELS argument: a quoted string, with `\` and `"` escaped (Gmail sends
/// and takes system labels this way too, `"\\Inbox"`).
pub(super) fn quoted(label: &str) -> String {
    let mut out = String::with_capacity(label.len() + 2);
    out.push('"');
    for c in label.chars() {
        if matches!(c, '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyword(label: &str) -> String {
        to_keyword(label)
            .map(|k| k.as_str().to_owned())
            .unwrap_or_else(|| panic!("{label:?} has no keyword"))
    }

    #[test]
    fn system_labels_that_stand_for_a_folder_become_dollar_keywords() {
        assert_eq!(keyword("\\Inbox"), "$Inbox");
        assert_eq!(keyword("\\Important"), "$Important");
        assert_eq!(keyword("\\Sent"), "$Sent");
        // Flags already, or not a folder a user keeps: not keywords.
        for label in [
            "\\Starred",
            "\\Draft",
            "\\Drafts",
            "\\Trash",
            "\\Spam",
            "\\Chat",
        ] {
            assert_eq!(to_keyword(label), None, "{label}");
        }
        assert_eq!(
            to_label(&to_keyword("\\Inbox").unwrap()).unwrap(),
            "\\Inbox"
        );
    }

    #[test]
    fn every_user_label_goes_there_and_back_unchanged() {
        for (label, want) in [
            ("Work", "Work"),
            ("Family/Friends", "Family/Friends"),
            ("Important", "Important"),
            ("Muy Importante", "Muy=20Importante"),
            ("Webserver (RW.net)", "Webserver=20=28RW.net=29"),
            ("[Mailbox]", "[Mailbox=5D"),
            ("say \"hi\"", "say=20=22hi=22"),
            ("a=b", "a=3Db"),
            ("100%*", "100=25=2A"),
            ("back\\slash", "back=5Cslash"),
            ("Caf&AOk-", "Caf&AOk-"),
            ("$money", "=24money"),
            ("Junk", "=4Aunk"),
            ("nonjunk", "=6Eonjunk"),
            ("Junkyard", "Junkyard"),
            ("{braces}", "=7Bbraces}"),
        ] {
            assert_eq!(keyword(label), want, "{label:?}");
            let back = to_label(&to_keyword(label).unwrap());
            assert_eq!(back.as_deref(), Some(label), "{label:?}");
        }
    }

    #[test]
    fn keywords_of_their_own_are_not_labels() {
        for name in [
            "$Phishing",
            "$label1",
            "$MDNSent",
            "Junk",
            "NonJunk",
            "notjunk",
        ] {
            let k = Keyword::new(name).unwrap();
            assert_eq!(to_label(&k), None, "{name}");
        }
        // A keyword a person typed with a stray `=` is a label of that name.
        let k = Keyword::new("x=y").unwrap();
        assert_eq!(to_label(&k).as_deref(), Some("x=y"));
        // Nor is one that would decode to a byte no label holds.
        let k = Keyword::new("a=0Db").unwrap();
        assert_eq!(to_label(&k), None);
        let k = Keyword::new("todo").unwrap();
        assert_eq!(to_label(&k).as_deref(), Some("todo"));
    }

    #[test]
    fn labels_are_quoted_for_store() {
        assert_eq!(quoted("\\Inbox"), "\"\\\\Inbox\"");
        assert_eq!(quoted("Muy Importante"), "\"Muy Importante\"");
        assert_eq!(quoted("say \"hi\""), "\"say \\\"hi\\\"\"");
    }
}
