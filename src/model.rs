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

/// An IMAP keyword (RFC 3501 `flag-keyword`): a flag a user or program named, such as
/// `$Junk`, `NonJunk` or `$label1`. Keywords compare without regard to ASCII case, as Dovecot
/// and the Maildir keyword file (`dovecot-keywords`) treat them; the spelling first seen is kept.
// INVARIANT: an IMAP atom (no space, control character or `(){%*"\]`), not empty, not a system
// flag (`\...`), and not `$Forwarded`, which [`Flags`] keeps as a flag of its own.
#[derive(Debug, Clone)]
pub struct Keyword(Box<str>);

impl Keyword {
    pub fn new(name: &str) -> Option<Self> {
        let atom = !name.is_empty()
            && name.chars().all(|c| {
                c.is_ascii_graphic() && !matches!(c, '(' | ')' | '{' | '%' | '*' | '"' | '\\' | ']')
            });
        let ours = Flags::system_bit(name).is_some();
        (atom && !ours).then(|| Keyword(name.into()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn folded(&self) -> impl Iterator<Item = u8> + '_ {
        self.0.bytes().map(|b| b.to_ascii_lowercase())
    }
}

impl PartialEq for Keyword {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for Keyword {}
impl PartialOrd for Keyword {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Keyword {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.folded().cmp(other.folded())
    }
}
impl std::hash::Hash for Keyword {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for b in self.folded() {
            state.write_u8(b);
        }
    }
}
impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A set of keywords. Most messages have none, which costs no allocation.
// INVARIANT: sorted, without duplicates, and `None` rather than empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Keywords(Option<Box<[Keyword]>>);

impl Keywords {
    pub const fn empty() -> Self {
        Keywords(None)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Keyword> {
        self.0.iter().flat_map(|k| k.iter())
    }
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |k| k.len())
    }
    pub fn contains(&self, keyword: &Keyword) -> bool {
        self.0
            .as_ref()
            .is_some_and(|k| k.binary_search(keyword).is_ok())
    }
    pub fn union(&self, other: &Keywords) -> Keywords {
        if other.is_empty() {
            return self.clone();
        }
        self.iter().chain(other.iter()).cloned().collect()
    }
    pub fn minus(&self, other: &Keywords) -> Keywords {
        if other.is_empty() {
            return self.clone();
        }
        self.iter()
            .filter(|k| !other.contains(k))
            .cloned()
            .collect()
    }
    pub fn intersect(&self, other: &Keywords) -> Keywords {
        self.iter().filter(|k| other.contains(k)).cloned().collect()
    }
    /// The keywords kept by `keep`.
    pub fn filter(&self, mut keep: impl FnMut(&Keyword) -> bool) -> Keywords {
        if self.is_empty() {
            return Keywords::empty();
        }
        self.iter().filter(|k| keep(k)).cloned().collect()
    }
}

impl FromIterator<Keyword> for Keywords {
    fn from_iter<I: IntoIterator<Item = Keyword>>(iter: I) -> Self {
        let mut all: Vec<Keyword> = iter.into_iter().collect();
        if all.is_empty() {
            return Keywords(None);
        }
        all.sort();
        all.dedup();
        Keywords(Some(all.into_boxed_slice()))
    }
}

/// Which keywords one folder of a store can hold. Nearly always any; a server whose
/// PERMANENTFLAGS lacks `\*` (RFC 3501 §7.1) holds only those it lists, and a Maildir folder
/// whose 26 keyword letters are taken only those it has letters for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeywordRoom {
    #[default]
    Any,
    /// These, by their server names.
    Only(Keywords),
    /// All but these: keywords the server refused to store (a name too long for it, say).
    Except(Keywords),
}

impl KeywordRoom {
    pub fn holds(&self, keyword: &Keyword) -> bool {
        match self {
            KeywordRoom::Any => true,
            KeywordRoom::Only(list) => list.contains(keyword),
            KeywordRoom::Except(list) => !list.contains(keyword),
        }
    }

    /// This room without `refused`.
    pub fn without(self, refused: &Keywords) -> KeywordRoom {
        if refused.is_empty() {
            return self;
        }
        match self {
            KeywordRoom::Any => KeywordRoom::Except(refused.clone()),
            KeywordRoom::Only(list) => KeywordRoom::Only(list.minus(refused)),
            KeywordRoom::Except(list) => KeywordRoom::Except(list.union(refused)),
        }
    }

    /// `flags` without the keywords this room cannot hold.
    pub fn fit(&self, flags: &Flags) -> Flags {
        match self {
            KeywordRoom::Any => flags.clone(),
            KeywordRoom::Only(list) => flags
                .clone()
                .with_keywords(flags.keywords().intersect(list)),
            KeywordRoom::Except(list) => flags.clone().with_keywords(flags.keywords().minus(list)),
        }
    }
}

/// Which keywords an account syncs (`keywords`), and the local names of renamed ones
/// (`keyword_rename`): a store applies it to what it lists and what it is asked to write, so the
/// engine sees only synced keywords, spelled as the server spells them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeywordRule {
    sync: KeywordSync,
    /// Server keyword, local keyword; one to one (the configuration checks it).
    rename: Vec<(Keyword, Keyword)>,
}

/// `keywords = "all" | "none" | [list]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeywordSync {
    #[default]
    All,
    None,
    /// These, by their server names.
    Only(Keywords),
}

impl KeywordRule {
    pub fn new(sync: KeywordSync, rename: Vec<(Keyword, Keyword)>) -> Self {
        KeywordRule { sync, rename }
    }

    /// The same choice of keywords without the local names: the rule of the server side.
    pub fn server_side(&self) -> KeywordRule {
        KeywordRule {
            sync: self.sync.clone(),
            rename: Vec::new(),
        }
    }

    /// Whether the keyword the server calls `server` is synced.
    pub fn syncs(&self, server: &Keyword) -> bool {
        match &self.sync {
            KeywordSync::All => true,
            KeywordSync::None => false,
            KeywordSync::Only(list) => list.contains(server),
        }
    }

    /// Flags as this side holds them, in the server's names and synced keywords only. A local
    /// keyword whose name a rename gave to another one (`$label1` when `$label1` is called
    /// `important` here) is not synced: it would stand for two keywords.
    pub fn to_server(&self, flags: Flags) -> Flags {
        if flags.keywords().is_empty()
            || matches!(self.sync, KeywordSync::All) && self.rename.is_empty()
        {
            return flags;
        }
        let keywords = flags
            .keywords()
            .iter()
            .filter_map(|k| match self.rename.iter().find(|(_, local)| local == k) {
                Some((server, _)) => Some(server.clone()),
                None => (!self.rename.iter().any(|(server, _)| server == k)).then(|| k.clone()),
            })
            .filter(|k| self.syncs(k))
            .collect();
        flags.with_keywords(keywords)
    }

    /// Flags in the server's names as this side spells them.
    pub fn to_local(&self, flags: &Flags) -> Flags {
        if flags.keywords().is_empty() || self.rename.is_empty() {
            return flags.clone();
        }
        let keywords = flags
            .keywords()
            .iter()
            .map(
                |k| match self.rename.iter().find(|(server, _)| server == k) {
                    Some((_, local)) => local.clone(),
                    None => k.clone(),
                },
            )
            .collect();
        flags.clone().with_keywords(keywords)
    }
}

/// The message flags idlewild keeps in step: the system flags both IMAP and Maildir can
/// express (`$Forwarded` among them, as Maildir's `P`), and keywords, which a Maildir holds as
/// lowercase letters through its folder's `dovecot-keywords` file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Flags {
    bits: u8,
    keywords: Keywords,
}

impl Flags {
    pub const SEEN: Flags = Flags::system(1);
    pub const ANSWERED: Flags = Flags::system(1 << 1);
    pub const FLAGGED: Flags = Flags::system(1 << 2);
    pub const DELETED: Flags = Flags::system(1 << 3);
    pub const DRAFT: Flags = Flags::system(1 << 4);
    pub const FORWARDED: Flags = Flags::system(1 << 5);
    const ALL_BITS: u8 = 0b11_1111;

    /// Every system flag's bit with its IMAP spelling and its Maildir info letter (in the
    /// ASCII order the Maildir specification asks the info letters to be written in).
    const TABLE: [(u8, &'static str, char); 6] = [
        (1 << 4, "\\Draft", 'D'),
        (1 << 2, "\\Flagged", 'F'),
        (1 << 5, "$Forwarded", 'P'),
        (1 << 1, "\\Answered", 'R'),
        (1, "\\Seen", 'S'),
        (1 << 3, "\\Deleted", 'T'),
    ];

    /// The system flag an IMAP flag name stands for, as bits.
    fn system_bit(name: &str) -> Option<u8> {
        Self::TABLE
            .iter()
            .find(|(_, imap, _)| imap.eq_ignore_ascii_case(name))
            .map(|(bit, _, _)| *bit)
    }

    const fn system(bits: u8) -> Self {
        Flags {
            bits,
            keywords: Keywords::empty(),
        }
    }
    pub const fn empty() -> Self {
        Flags::system(0)
    }
    /// System flags from their bits (see [`Flags::bits`]), without keywords.
    pub fn from_bits(bits: u8) -> Option<Self> {
        (bits & !Self::ALL_BITS == 0).then_some(Flags::system(bits))
    }
    /// The system flags as bits (the state database's `flags` column).
    pub fn bits(&self) -> u8 {
        self.bits
    }
    pub fn keywords(&self) -> &Keywords {
        &self.keywords
    }
    pub fn with_keywords(self, keywords: Keywords) -> Flags {
        Flags { keywords, ..self }
    }
    /// The system flags alone.
    pub fn without_keywords(&self) -> Flags {
        Flags::system(self.bits)
    }
    pub fn contains(&self, other: &Flags) -> bool {
        self.bits & other.bits == other.bits
            && other.keywords.iter().all(|k| self.keywords.contains(k))
    }
    pub fn is_empty(&self) -> bool {
        self.bits == 0 && self.keywords.is_empty()
    }
    pub fn union(&self, other: &Flags) -> Flags {
        Flags {
            bits: self.bits | other.bits,
            keywords: self.keywords.union(&other.keywords),
        }
    }
    pub fn minus(&self, other: &Flags) -> Flags {
        Flags {
            bits: self.bits & !other.bits,
            keywords: self.keywords.minus(&other.keywords),
        }
    }
    pub fn intersect(&self, other: &Flags) -> Flags {
        Flags {
            bits: self.bits & other.bits,
            keywords: self.keywords.intersect(&other.keywords),
        }
    }

    /// Parses one IMAP flag: a system flag of ours or a keyword; other system flags
    /// (`\Recent`, `\*`) give `None`.
    pub fn from_imap_flag(flag: &str) -> Option<Flags> {
        match Self::system_bit(flag) {
            Some(bit) => Some(Flags::system(bit)),
            None => {
                Keyword::new(flag).map(|k| Flags::empty().with_keywords([k].into_iter().collect()))
            }
        }
    }

    pub fn from_imap<'a>(flags: impl IntoIterator<Item = &'a str>) -> Flags {
        let mut bits = 0;
        let mut keywords = Vec::new();
        for flag in flags {
            match Self::system_bit(flag) {
                Some(bit) => bits |= bit,
                None => keywords.extend(Keyword::new(flag)),
            }
        }
        Flags {
            bits,
            keywords: keywords.into_iter().collect(),
        }
    }

    /// The IMAP flag names, space separated, as a STORE or APPEND flag list wants them.
    pub fn imap_list(&self) -> String {
        Self::TABLE
            .iter()
            .filter(|(bit, _, _)| self.bits & bit != 0)
            .map(|(_, name, _)| *name)
            .chain(self.keywords.iter().map(Keyword::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Parses the system flags among the letters after `:2,` of a Maildir file name. Lowercase
    /// letters are keywords, which only the folder's keyword file can name; other letters are
    /// not ours and are ignored.
    pub fn from_maildir_info(letters: &str) -> Flags {
        let bits = letters
            .chars()
            .filter_map(|c| Self::TABLE.iter().find(|(_, _, l)| *l == c))
            .fold(0, |acc, (bit, _, _)| acc | bit);
        Flags::system(bits)
    }

    /// The Maildir info letters of the system flags, in ASCII order.
    pub fn maildir_letters(&self) -> String {
        Self::TABLE
            .iter()
            .filter(|(bit, _, _)| self.bits & bit != 0)
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
        let junk = Flags::from_imap(["\\seen", "$Junk", "\\Recent"]);
        assert_eq!(junk.without_keywords(), Flags::SEEN);
        assert_eq!(junk.imap_list(), "\\Seen $Junk");
        assert_eq!(Flags::from_imap(junk.imap_list().split(' ')), junk);
    }

    #[test]
    fn keywords_are_atoms_compared_without_case() {
        let kw = |s: &str| Keyword::new(s).unwrap();
        assert_eq!(kw("$Junk"), kw("$junk"));
        assert_eq!(kw("$Junk").as_str(), "$Junk");
        for bad in [
            "",
            "two words",
            "a(b",
            "\\Seen",
            "$forwarded",
            "x]",
            "tab\t",
            "é",
        ] {
            assert!(Keyword::new(bad).is_none(), "{bad:?}");
        }
        let set: Keywords = [kw("b"), kw("A"), kw("a")].into_iter().collect();
        assert_eq!(
            set.iter().map(Keyword::as_str).collect::<Vec<_>>(),
            ["A", "b"]
        );
        assert!(set.contains(&kw("B")));
        let other: Keywords = [kw("b"), kw("c")].into_iter().collect();
        assert_eq!(set.minus(&other).len(), 1);
        assert_eq!(set.union(&other).len(), 3);
        assert_eq!(set.intersect(&other).len(), 1);
        assert!(set.minus(&set).is_empty());
        assert_eq!(set.minus(&set), Keywords::empty(), "empty is one value");
        let flags = Flags::SEEN.with_keywords(set.clone());
        assert!(flags.contains(&Flags::SEEN));
        assert!(flags.contains(&Flags::empty().with_keywords(set)));
        assert!(!Flags::SEEN.contains(&flags));
    }

    #[test]
    fn a_keyword_rule_filters_and_renames_one_to_one() {
        let kw = |s: &str| Keyword::new(s).unwrap();
        let flags = |list: &[&str]| Flags::from_imap(list.iter().copied());
        let all = KeywordRule::default();
        assert_eq!(
            all.to_server(flags(&["\\Seen", "a"])),
            flags(&["\\Seen", "a"])
        );
        let none = KeywordRule::new(KeywordSync::None, Vec::new());
        assert_eq!(none.to_server(flags(&["\\Seen", "a"])), Flags::SEEN);
        let only = KeywordRule::new(
            KeywordSync::Only([kw("$label1"), kw("b")].into_iter().collect()),
            vec![(kw("$label1"), kw("important"))],
        );
        assert_eq!(
            only.to_server(flags(&["important", "$label1", "b", "c"])),
            flags(&["$label1", "b"]),
            "the local $label1 would be a second $label1; c is not synced"
        );
        assert_eq!(
            only.to_local(&flags(&["$Label1", "b"])),
            flags(&["important", "b"])
        );
        assert_eq!(
            only.server_side().to_local(&flags(&["$label1"])),
            flags(&["$label1"])
        );
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
