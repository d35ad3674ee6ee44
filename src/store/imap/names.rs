//! Translation between the engine's folder names (UTF-8, `/` between levels) and a server's
//! mailbox names (modified UTF-7, the server's own hierarchy delimiter), and IMAP string
//! quoting.

use std::borrow::Cow;

use crate::model::FolderName;

use super::mutf7;

/// The folder a server's mailbox name stands for, or why it cannot be represented.
pub fn to_folder_name(server: &str, delimiter: Option<char>) -> Result<FolderName, String> {
    // RFC 3501 §5.1: INBOX is case-insensitive.
    if server.eq_ignore_ascii_case("INBOX") {
        return Ok(FolderName::inbox());
    }
    let decoded =
        mutf7::decode(server).ok_or_else(|| "the name is not valid modified UTF-7".to_owned())?;
    let components: Vec<&str> = match delimiter {
        Some(d) => decoded.split(d).collect(),
        None => vec![decoded.as_str()],
    };
    if delimiter != Some('/') && components.iter().any(|c| c.contains('/')) {
        return Err(format!(
            "a level of the name holds '/', which here separates levels (the server uses {})",
            describe_delimiter(delimiter)
        ));
    }
    FolderName::new(&components.join("/"))
        .ok_or_else(|| "the name has an empty, '.' or '..' level".to_owned())
}

/// A mailbox name as the response parser gave it, with RFC 3501 quoting undone. imap-proto
/// returns a quoted string's content with its escapes still in (`"back\\slash"` comes as
/// `back\\slash`), and the same name sent back in SELECT would then name another mailbox.
/// `raw` is the response the name was parsed from (and borrows from): the byte before the name
/// tells a quoted string from a literal, whose content is taken as it is.
pub fn unquoted<'a>(raw: &[u8], name: &'a str) -> Cow<'a, str> {
    if !name.contains('\\') {
        return Cow::Borrowed(name);
    }
    let start = (name.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
    let quoted = start > 0
        && start
            .checked_add(name.len())
            .is_some_and(|end| end <= raw.len())
        && raw[start - 1] == b'"';
    if !quoted {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        // RFC 3501 §9: only `\\` and `\"` are escapes in a quoted string.
        if c == '\\'
            && let Some(next) = chars.next()
        {
            out.push(next);
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// The server's mailbox name for a folder (not yet quoted).
pub fn to_server_name(folder: &FolderName, delimiter: Option<char>) -> Result<String, String> {
    if *folder == FolderName::inbox() {
        return Ok("INBOX".to_owned());
    }
    let components: Vec<&str> = folder.components().collect();
    let joined = match delimiter {
        Some(d) => {
            if d != '/' && components.iter().any(|c| c.contains(d)) {
                return Err(format!(
                    "folder {folder} cannot be created on this server: a level holds {d:?}, the server's hierarchy delimiter"
                ));
            }
            components.join(&d.to_string())
        }
        None if components.len() > 1 => {
            return Err(format!(
                "folder {folder} cannot be created on this server: it has no folder hierarchy"
            ));
        }
        None => folder.as_str().to_owned(),
    };
    Ok(mutf7::encode(&joined))
}

fn describe_delimiter(delimiter: Option<char>) -> String {
    match delimiter {
        Some(d) => format!("{d:?}"),
        None => "no hierarchy".to_owned(),
    }
}

/// `s` as an IMAP quoted string (RFC 3501 §9 `quoted`), or `None` when it holds characters a
/// quoted string cannot carry (NUL, CR, LF, 8-bit) and must be sent as a literal.
pub fn quoted(s: &str) -> Option<String> {
    if s.bytes()
        .any(|b| b == 0 || b == b'\r' || b == b'\n' || b >= 0x80)
    {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_names_are_unescaped_and_literals_left_as_they_are() {
        let name_in = |raw: &'static [u8], name: &str| -> &'static str {
            let at = raw
                .windows(name.len())
                .position(|w| w == name.as_bytes())
                .unwrap_or(0);
            std::str::from_utf8(&raw[at..at + name.len()]).unwrap_or("")
        };
        let raw: &[u8] = br#"* LIST () "/" "back\\slash""#;
        let name = name_in(raw, r"back\\slash");
        assert_eq!(unquoted(raw, name), r"back\slash");
        let raw: &[u8] = br#"* LIST () "/" "say \"hi\"""#;
        let name = name_in(raw, r#"say \"hi\""#);
        assert_eq!(unquoted(raw, name), r#"say "hi""#);
        // A literal's content has no escapes.
        let raw: &[u8] = b"* LIST () \"/\" {11}\r\nback\\\\slash";
        let name = name_in(raw, r"back\\slash");
        assert_eq!(unquoted(raw, name), r"back\\slash");
        // A name that does not come from the response is left alone.
        assert_eq!(unquoted(raw, r"a\\b"), r"a\\b");
    }

    #[test]
    fn hostile_server_names_are_skipped_or_stay_one_level() {
        // Whatever a LIST carries, no level of the folder name is empty, `.` or `..`, and a
        // name that would need one is skipped (the other folders are listed).
        for (server, delimiter) in [
            (".", Some('/')),
            ("..", Some('/')),
            ("../x", Some('/')),
            ("/abs", Some('/')),
            ("a/../../b", Some('/')),
            ("a//b", Some('/')),
            ("trailing/", Some('/')),
            ("..", Some('.')),
            ("../x", Some('.')),
            ("a.b/c", Some('.')),
            ("nul\0", Some('/')),
        ] {
            assert!(
                to_folder_name(server, delimiter).is_err(),
                "{server:?} with {delimiter:?}"
            );
        }
        for (server, delimiter, folder) in [
            ("..x", Some('/'), "..x"),
            (".notmuch", Some('/'), ".notmuch"),
            ("a\\b", Some('.'), "a\\b"),
        ] {
            assert_eq!(
                to_folder_name(server, delimiter).map(|f| f.to_string()),
                Ok(folder.to_owned())
            );
        }
    }

    fn folder(s: &str) -> FolderName {
        FolderName::new(s).unwrap()
    }

    #[test]
    fn server_names_become_folder_names() {
        let slash = Some('/');
        assert_eq!(to_folder_name("inbox", slash).unwrap(), FolderName::inbox());
        assert_eq!(
            to_folder_name("Entw&APw-rfe", slash).unwrap(),
            folder("Entwürfe")
        );
        assert_eq!(
            to_folder_name("Archive/2019", slash).unwrap(),
            folder("Archive/2019")
        );
        assert_eq!(
            to_folder_name("Archive.2019", Some('.')).unwrap(),
            folder("Archive/2019")
        );
        assert_eq!(
            to_folder_name("INBOX.Sent", Some('.')).unwrap(),
            folder("INBOX/Sent")
        );
        assert!(to_folder_name("a/b", Some('.')).is_err());
        assert!(to_folder_name("a/b", None).is_err());
        assert!(to_folder_name("a..b", Some('.')).is_err());
        assert!(to_folder_name("&Jjo!", slash).is_err());
    }

    #[test]
    fn folder_names_become_server_names() {
        let slash = Some('/');
        assert_eq!(
            to_server_name(&FolderName::inbox(), slash).unwrap(),
            "INBOX"
        );
        assert_eq!(
            to_server_name(&folder("Entwürfe"), slash).unwrap(),
            "Entw&APw-rfe"
        );
        assert_eq!(
            to_server_name(&folder("Archive/2019"), Some('.')).unwrap(),
            "Archive.2019"
        );
        assert_eq!(
            to_server_name(&folder("A&B/Ü"), slash).unwrap(),
            "A&-B/&ANw-"
        );
        assert!(to_server_name(&folder("v1.2/x"), Some('.')).is_err());
        assert!(to_server_name(&folder("a/b"), None).is_err());
        assert_eq!(to_server_name(&folder("flat"), None).unwrap(), "flat");
    }

    #[test]
    fn round_trip_through_both_delimiters() {
        for name in ["INBOX/Sub", "Entwürfe/2024 Q1", "A&B", "x\"y\\z"] {
            for d in [Some('/'), Some('.')] {
                let server = to_server_name(&folder(name), d).unwrap();
                assert_eq!(
                    to_folder_name(&server, d).unwrap(),
                    folder(name),
                    "{name} {d:?}"
                );
            }
        }
    }

    #[test]
    fn quoting_escapes_or_refuses() {
        assert_eq!(quoted("Sent").unwrap(), "\"Sent\"");
        assert_eq!(quoted(r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        assert_eq!(quoted("").unwrap(), "\"\"");
        assert_eq!(quoted("pässword"), None);
        assert_eq!(quoted("a\r\nb"), None);
    }
}
