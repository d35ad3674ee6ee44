//! Folder names <-> directory names in the nested layout.
//!
//! A server may name a folder anything, but some names are the Maildir's own: `Archive/tmp`
//! stored as `Archive/tmp/` would be a Maildir inside Archive's own `tmp/`, which the next
//! listing no longer sees (and a sync would then take the folder for deleted); `INBOX/new`
//! would put a directory among INBOX's messages; `.notmuch` is notmuch's database. Such a name
//! part is stored with one `_` in front (`Archive/_tmp`, `_.notmuch`), and so is a name part that
//! already looks like an escaped one (`_tmp` becomes `__tmp`), so the mapping stays one to one
//! and every directory name reads back as exactly one folder name.

use std::borrow::Cow;

/// What a folder name part is stored with in front when it is reserved.
const ESCAPE: char = '_';

/// Longest directory name most filesystems take (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Names of a Maildir's own directories, reserved below the top level, where they would land
/// inside a parent folder's Maildir. (At the top level the root is not a Maildir in this
/// layout, and folders named `tmp` kept there by earlier versions stay where they are.)
const MAILDIR_DIRS: [&str; 3] = ["cur", "new", "tmp"];

/// Files that Maildir programs keep beside the messages or at the root, reserved at every
/// level: Dovecot's (`dovecot-uidlist`, `dovecot-keywords`, `dovecot.index*`, ...), Courier's
/// (`courierimapkeywords/`, `courierimapuiddb`, ...), the Maildir++ marker and quota file, and
/// the subscription list.
fn is_companion(part: &str) -> bool {
    matches!(
        part,
        "maildirfolder"
            | "maildirsize"
            | "subscriptions"
            | "dovecot-keywords"
            | "dovecot-uidlist"
            | "dovecot-shared"
            | "dovecot-acl"
            | "dovecot-acl-list"
    ) || part.starts_with("dovecot-uidvalidity")
        || part.starts_with("dovecot.")
        || part.starts_with("courierimap")
}

/// Whether a name part at `depth` (0: the top level) may not be a directory name as it is.
/// Hidden names belong to other programs (`.notmuch`, `.mbsyncstate`, `..`) at every level.
fn is_reserved(part: &str, depth: usize) -> bool {
    part.starts_with('.') || is_companion(part) || (depth > 0 && MAILDIR_DIRS.contains(&part))
}

/// Whether `part` is reserved once the escape characters in front of it are taken away: such a
/// part gets one more, so that escaped and unescaped names never meet.
fn needs_escape(part: &str, depth: usize) -> bool {
    is_reserved(part.trim_start_matches(ESCAPE), depth)
}

/// The directory name of folder name part `part` at `depth`.
pub fn to_dir(part: &str, depth: usize) -> Cow<'_, str> {
    if needs_escape(part, depth) {
        Cow::Owned(format!("{ESCAPE}{part}"))
    } else {
        Cow::Borrowed(part)
    }
}

/// The folder name part stored as directory `dir` at `depth`, or `None` for a directory that is
/// not a folder's (a Maildir's own, or another program's).
pub fn from_dir(dir: &str, depth: usize) -> Option<&str> {
    if is_reserved(dir, depth) {
        return None;
    }
    match dir.strip_prefix(ESCAPE) {
        Some(part) if needs_escape(part, depth) => Some(part),
        _ => Some(dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_parts_are_escaped_and_read_back() {
        let cases = [
            ("tmp", 1, "_tmp"),
            ("cur", 2, "_cur"),
            ("new", 1, "_new"),
            ("tmp", 0, "tmp"),
            ("_tmp", 1, "__tmp"),
            ("__tmp", 1, "___tmp"),
            ("_tmp", 0, "_tmp"),
            (".notmuch", 0, "_.notmuch"),
            ("..", 3, "_.."),
            ("_.x", 0, "__.x"),
            ("dovecot-uidlist", 1, "_dovecot-uidlist"),
            ("dovecot.index.log", 0, "_dovecot.index.log"),
            ("dovecot", 0, "dovecot"),
            ("subscriptions", 0, "_subscriptions"),
            ("Archive", 0, "Archive"),
            ("_Archive", 0, "_Archive"),
            ("tmpfiles", 1, "tmpfiles"),
        ];
        for (part, depth, dir) in cases {
            assert_eq!(to_dir(part, depth), dir, "{part} at {depth}");
            assert_eq!(from_dir(dir, depth), Some(part), "{dir} at {depth}");
        }
    }

    #[test]
    fn the_maildirs_own_directories_are_no_folders() {
        for (dir, depth) in [
            ("cur", 1),
            ("tmp", 4),
            (".notmuch", 0),
            ("dovecot-uidlist", 2),
        ] {
            assert_eq!(from_dir(dir, depth), None, "{dir} at {depth}");
        }
    }

    #[test]
    fn the_mapping_is_one_to_one() {
        // Every part made of these pieces, at every depth: distinct parts get distinct
        // directories, no directory is reserved, and each reads back as its part.
        let pieces = ["", "_", "__", ".", "tmp", "cur", "x", "dovecot.", "index"];
        let mut parts = Vec::new();
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let p = format!("{a}{b}{c}");
                    if !p.is_empty() {
                        parts.push(p);
                    }
                }
            }
        }
        parts.sort();
        parts.dedup();
        for depth in 0..3 {
            let mut dirs = std::collections::HashSet::new();
            for p in &parts {
                let dir = to_dir(p, depth);
                assert!(!is_reserved(&dir, depth), "{p} -> {dir}");
                assert_eq!(from_dir(&dir, depth), Some(p.as_str()), "{p} -> {dir}");
                assert!(dirs.insert(dir.into_owned()), "{p} collides");
            }
        }
    }
}
