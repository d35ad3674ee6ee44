//! Plain value types shared by the planner, the stores and the state database.
//!
//! Each newtype is only built through a checked constructor, so code holding one may rely on the
//! invariant written next to it.

use std::fmt;
use std::num::NonZeroU32;

/// An IMAP UID (RFC 3501 §2.3.1.1).
// INVARIANT: non-zero; UIDs are nz-number in the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uid(NonZeroU32);

impl Uid {
    pub fn new(value: u32) -> Option<Self> {
        NonZeroU32::new(value).map(Self)
    }
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A folder's UIDVALIDITY (or the equivalent token of a store without one).
// INVARIANT: non-zero, as RFC 3501 requires of UIDVALIDITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UidValidity(NonZeroU32);

impl UidValidity {
    pub fn new(value: u32) -> Option<Self> {
        NonZeroU32::new(value).map(Self)
    }
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for UidValidity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The identity of one message inside one folder of one store: an IMAP UID written in decimal,
/// or the unique part of a Maildir file name (everything before the `:2,` info).
// INVARIANT: non-empty, printable ASCII without `/`, `:` or whitespace, at most 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId(String);

impl MsgId {
    pub fn new(value: impl Into<String>) -> Option<Self> {
        let value = value.into();
        let ok = !value.is_empty()
            && value.len() <= 255
            && value
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
        ok.then_some(Self(value))
    }
    pub fn from_uid(uid: Uid) -> Self {
        Self(uid.to_string())
    }
    /// The UID this id names, when it is one.
    pub fn uid(&self) -> Option<Uid> {
        self.0.parse().ok().and_then(Uid::new)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A folder name as the engine and the state database see it: UTF-8, `/` between levels,
/// `INBOX` spelled in capitals. Stores translate to and from their own spelling (modified UTF-7
/// and the server's delimiter; directory paths).
// INVARIANT: non-empty components, none of them `.` or `..`, no NUL, no leading or trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FolderName(String);

impl FolderName {
    pub fn new(value: &str) -> Option<Self> {
        if value.is_empty() || value.contains('\0') {
            return None;
        }
        let mut parts: Vec<&str> = value.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return None;
        }
        let inbox;
        if parts[0].eq_ignore_ascii_case("INBOX") {
            inbox = "INBOX";
            parts[0] = inbox;
        }
        Some(Self(parts.join("/")))
    }
    pub fn inbox() -> Self {
        Self("INBOX".to_owned())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for FolderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What changed in a folder since a `store::Since`, with the same numbering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderChanges {
    pub uid_validity: UidValidity,
    pub uid_next: Option<u32>,
    pub highest_modseq: u64,
    /// How many messages the folder holds now: what the listing rebuilt from the last state
    /// and these changes must come to, or it is not trusted.
    pub exists: u32,
    /// New messages and messages whose flags changed, with their flags now.
    pub changed: Vec<MessageMeta>,
    /// Messages expunged since; `None` when the store cannot tell (CONDSTORE without QRESYNC).
    pub vanished: Option<Vec<MsgId>>,
    /// As [`FolderSnapshot::token`].
    pub token: Option<String>,
}

/// A secret that never shows up in a log line, an error or a panic message: its `Debug` is
/// redacted, it has no `Display`, and its memory is wiped when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    /// The secret itself; call only where it is sent to the server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The message flags idlewild keeps in step: those both IMAP and Maildir can express.
/// IMAP keywords other than `$Forwarded` have no Maildir spelling and are left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    pub const SEEN: Flags = Flags(1);
    pub const ANSWERED: Flags = Flags(1 << 1);
    pub const FLAGGED: Flags = Flags(1 << 2);
    pub const DELETED: Flags = Flags(1 << 3);
    pub const DRAFT: Flags = Flags(1 << 4);
    pub const FORWARDED: Flags = Flags(1 << 5);
    const ALL_BITS: u8 = 0b11_1111;

    /// Every flag with its IMAP spelling and its Maildir info letter (in the ASCII order the
    /// Maildir specification asks the info letters to be written in).
    pub const TABLE: [(Flags, &'static str, char); 6] = [
        (Flags::DRAFT, "\\Draft", 'D'),
        (Flags::FLAGGED, "\\Flagged", 'F'),
        (Flags::FORWARDED, "$Forwarded", 'P'),
        (Flags::ANSWERED, "\\Answered", 'R'),
        (Flags::SEEN, "\\Seen", 'S'),
        (Flags::DELETED, "\\Deleted", 'T'),
    ];

    pub const fn empty() -> Self {
        Flags(0)
    }
    pub fn from_bits(bits: u8) -> Option<Self> {
        (bits & !Self::ALL_BITS == 0).then_some(Flags(bits))
    }
    pub fn bits(self) -> u8 {
        self.0
    }
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
    pub fn minus(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
    pub fn intersect(self, other: Flags) -> Flags {
        Flags(self.0 & other.0)
    }

    /// Parses one IMAP flag; flags idlewild does not keep in step give `None`.
    pub fn from_imap_flag(flag: &str) -> Option<Flags> {
        Self::TABLE
            .iter()
            .find(|(_, name, _)| name.eq_ignore_ascii_case(flag))
            .map(|(f, _, _)| *f)
    }

    pub fn from_imap<'a>(flags: impl IntoIterator<Item = &'a str>) -> Flags {
        flags
            .into_iter()
            .filter_map(Self::from_imap_flag)
            .fold(Flags::empty(), Flags::union)
    }

    /// The IMAP flag names, space separated, as a STORE or APPEND flag list wants them.
    pub fn imap_list(self) -> String {
        Self::TABLE
            .iter()
            .filter(|(f, _, _)| self.contains(*f))
            .map(|(_, name, _)| *name)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Parses the letters after `:2,` of a Maildir file name. Unknown letters (keywords of
    /// other programs) are not ours and are ignored.
    pub fn from_maildir_info(letters: &str) -> Flags {
        letters
            .chars()
            .filter_map(|c| Self::TABLE.iter().find(|(_, _, l)| *l == c))
            .fold(Flags::empty(), |acc, (f, _, _)| acc.union(*f))
    }

    /// The Maildir info letters of these flags, in ASCII order.
    pub fn maildir_letters(self) -> String {
        Self::TABLE
            .iter()
            .filter(|(f, _, _)| self.contains(*f))
            .map(|(_, _, l)| *l)
            .collect()
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            f.write_str("()")
        } else {
            write!(f, "({})", self.imap_list())
        }
    }
}

/// What a store reports of one message when it lists a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub id: MsgId,
    pub flags: Flags,
}

/// One folder of one store as it was when it was listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderSnapshot {
    /// `None` for stores without the concept (Maildir).
    pub uid_validity: Option<UidValidity>,
    /// The UID the next new message will get, where the store knows it (IMAP UIDNEXT).
    pub uid_next: Option<u32>,
    pub highest_modseq: Option<u64>,
    pub messages: Vec<MessageMeta>,
    /// The store's change token as it was before the listing was taken (see
    /// `Store::change_token`); `None` when the store cannot tell changes apart.
    pub token: Option<String>,
}

/// What identifies a message's content across stores, used to find a copy again after a crash
/// or a UIDVALIDITY change: the size and SHA-256 of its canonical (CRLF) form, and its Message-ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub size: u64,
    pub sha256: [u8; 32],
    pub message_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_through_maildir_and_imap() {
        let all = Flags::from_bits(0b11_1111).unwrap();
        assert_eq!(all.maildir_letters(), "DFPRST");
        assert_eq!(Flags::from_maildir_info("DFPRST"), all);
        assert_eq!(Flags::from_imap(all.imap_list().split(' ')), all);
        assert_eq!(Flags::from_maildir_info("Sa"), Flags::SEEN);
        assert_eq!(Flags::from_imap(["\\seen", "$Junk"]), Flags::SEEN);
    }

    #[test]
    fn folder_names_are_checked_and_inbox_is_canonical() {
        assert_eq!(FolderName::new("inbox/Sub").unwrap().as_str(), "INBOX/Sub");
        assert!(FolderName::new("a//b").is_none());
        assert!(FolderName::new("../etc").is_none());
        assert!(FolderName::new("/abs").is_none());
        assert!(FolderName::new("").is_none());
        assert_eq!(FolderName::new("Entwürfe").unwrap().as_str(), "Entwürfe");
    }

    #[test]
    fn msg_ids_reject_path_characters() {
        assert!(MsgId::new("12").is_some());
        assert!(MsgId::new("a/b").is_none());
        assert!(MsgId::new("a:2,S").is_none());
        assert!(MsgId::new("").is_none());
        assert_eq!(MsgId::new("42").unwrap().uid().unwrap().get(), 42);
    }
}
