//! The Maildir store: one Maildir (`cur/`, `new/`, `tmp/`) per folder under the account's path.
//!
//! Layouts: `nested` keeps `Archive/2019` in `<root>/Archive/2019` and INBOX in `<root>/INBOX`;
//! `maildir++` keeps INBOX in `<root>` and `Archive/2019` in `<root>/.Archive.2019`.
//!
//! A message is known by the unique part of its file name (before `:2,`), which stays the same
//! when a mail client renames the file to change its flags. Deliveries follow the Maildir
//! protocol: write in `tmp/`, fsync, rename into `new/` or `cur/`, fsync the directory.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

mod digest;
mod files;
mod keywords;
mod names;

use digest::{NamesDigest, Recorded};

use super::{Absence, FlagUpdate, SizeAndDate, Staged, Store, StoreError};
use crate::config::{MaildirConfig, MaildirLayout};
use crate::model::{
    Fingerprint, Flags, FolderName, FolderSnapshot, Keyword, KeywordRoom, KeywordRule, Keywords,
    MessageMeta, MsgId,
};

/// Files of ours in `tmp/` start with this; any left there belong to an interrupted run (only one
/// run works on an account at a time) and are removed when the folder is next scanned.
pub const TEMP_PREFIX: &str = ".idlewild-";

const SUBDIRS: [&str; 3] = ["cur", "new", "tmp"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    New,
    Cur,
}

impl Sub {
    fn name(self) -> &'static str {
        match self {
            Sub::New => "new",
            Sub::Cur => "cur",
        }
    }
}

#[derive(Debug, Clone)]
struct Located {
    sub: Sub,
    /// What the file name has after its unique part (`:2,S`, or nothing): the unique part is
    /// the index's key, so a big folder's names are not held twice.
    info: Box<str>,
}

impl Located {
    /// `file_name` must be one whose unique part is the message's id.
    fn new(sub: Sub, file_name: &str) -> Self {
        Located {
            sub,
            info: file_name[unique_part(file_name).len()..].into(),
        }
    }

    fn file_name(&self, id: &MsgId) -> String {
        let mut name = String::with_capacity(id.as_str().len() + self.info.len());
        name.push_str(id.as_str());
        name.push_str(&self.info);
        name
    }

    fn path(&self, dir: &Path, id: &MsgId) -> PathBuf {
        dir.join(self.sub.name()).join(self.file_name(id))
    }
}

pub struct MaildirStore {
    root: PathBuf,
    layout: MaildirLayout,
    open: Option<OpenFolder>,
    /// Directories whose entries changed since the last flush.
    dirty_dirs: Vec<PathBuf>,
    /// Deliveries written to `tmp/` and moved in by the next flush.
    queued: Vec<Queued>,
    /// `readonly = true`: nothing is written below the root, not even staging links in tmp/.
    read_only: bool,
    /// Which keywords are synced, and their names here.
    keywords: KeywordRule,
    /// Keywords already reported as without a letter, per folder directory: said once.
    refused_keywords: HashSet<(PathBuf, Keyword)>,
    /// Where the messages of other folders are, by folder directory and unique name: read
    /// once per folder for [`Store::stage_twin`], read again on a miss.
    twins: HashMap<PathBuf, HashMap<String, PathBuf>>,
}

/// A message in `tmp/` waiting to be made durable and moved into `new/` or `cur/`.
struct Queued {
    tmp_path: PathBuf,
    target_dir: PathBuf,
    id: MsgId,
    located: Located,
}

/// Where each message of a folder is.
type Index = HashMap<MsgId, Located>;

struct OpenFolder {
    dir: PathBuf,
    index: Index,
    /// The index holds where messages of an adopted listing would be if idlewild named them
    /// (`new/ID` or `cur/ID:2,FLAGS`), not what was read: the first miss reads the folder.
    guessed: bool,
    /// A message was not where the index said and was looked for again: the index may now
    /// hold changes the sync's plan never saw, so it does not stand for what the sync left.
    disturbed: bool,
    /// The digest of the folder's file names as they are now, kept up to date as files are
    /// added, renamed and removed (see `digest.rs`); `None` when not known.
    digest: Option<NamesDigest>,
    /// The index holds only the messages a sync of the server's changes looks at
    /// ([`Store::adopt_changes`]), not the whole folder.
    partial: bool,
    /// The folder's keyword letters (`dovecot-keywords`) as last read or written.
    table: keywords::Table,
}

impl MaildirStore {
    pub fn new(config: &MaildirConfig) -> Self {
        Self {
            root: config.path.clone(),
            layout: config.layout,
            open: None,
            dirty_dirs: Vec::new(),
            queued: Vec::new(),
            read_only: false,
            keywords: config.keywords.clone(),
            refused_keywords: HashSet::new(),
            twins: HashMap::new(),
        }
    }

    /// For a side configured `readonly = true`: messages are staged by copying them out of the
    /// tree, and leftovers of earlier runs in tmp/ are left where they are.
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the account's directory exists at all. A missing root with a non-empty state means
    /// an unmounted disk or a wrong path, never "the user deleted everything".
    pub fn root_exists(&self) -> bool {
        self.root.is_dir()
    }

    /// Mail is private: the directories made here are 0700, as the message files are 0600.
    pub fn create_root(&self) -> Result<(), StoreError> {
        crate::private::create_dir_all(&self.root).map_err(|e| StoreError::io(&self.root, e))
    }

    /// Whether the directory of `folder` exists (as a Maildir).
    pub fn folder_exists(&self, folder: &FolderName) -> bool {
        self.folder_dir(folder)
            .map(|d| is_maildir(&d))
            .unwrap_or(false)
    }

    /// The directory of `folder` (for the mailbox list), or `None` when this layout cannot
    /// store that name.
    pub fn folder_path(&self, folder: &FolderName) -> Option<PathBuf> {
        self.folder_dir(folder).ok()
    }

    /// The directory of `folder`: in the nested layout each name part is a directory, escaped
    /// where it would be one of the Maildir's own (`names`); in Maildir++ the parts are joined
    /// with dots, so a part holding a dot cannot be stored.
    fn folder_dir(&self, folder: &FolderName) -> Result<PathBuf, StoreError> {
        let unstorable = |reason: String| StoreError::FolderName {
            folder: folder.clone(),
            reason,
        };
        match self.layout {
            MaildirLayout::Nested => {
                let mut dir = self.root.clone();
                for (depth, part) in folder.components().enumerate() {
                    let name = names::to_dir(part, depth);
                    if name.len() > names::NAME_MAX {
                        return Err(unstorable(format!(
                            "a name part is {} bytes long, more than the {} a directory name may have",
                            name.len(),
                            names::NAME_MAX
                        )));
                    }
                    dir.push(&*name);
                }
                Ok(dir)
            }
            MaildirLayout::MaildirPlusPlus => {
                if folder.as_str() == "INBOX" {
                    return Ok(self.root.clone());
                }
                if folder.components().any(|c| c.contains('.')) {
                    return Err(unstorable(
                        "a name part contains '.', which a Maildir++ tree uses between levels (the nested layout can store it; or leave the folder out with folders.exclude)".into(),
                    ));
                }
                let joined: Vec<&str> = folder.components().collect();
                let name = format!(".{}", joined.join("."));
                if name.len() > names::NAME_MAX {
                    return Err(unstorable(format!(
                        "its directory name would be {} bytes long, more than the {} a directory name may have",
                        name.len(),
                        names::NAME_MAX
                    )));
                }
                Ok(self.root.join(name))
            }
        }
    }

    /// The folder a changed path belongs to, for the daemon's file watcher: a message file in
    /// `cur/` or `new/` of a folder. Paths in `tmp/` (deliveries in progress), hidden files and
    /// anything else give `None`.
    /// What the directory `name`, found `depth` levels below the root (the root's own entries
    /// are at 0), is to a watch of the Maildir: part of the folder tree, a folder's messages,
    /// or nothing that holds mail (`tmp/`, other programs' directories such as `.notmuch`).
    pub fn dir_kind(&self, name: &str, depth: usize) -> DirKind {
        match name {
            "cur" | "new" => return DirKind::Messages,
            "tmp" => return DirKind::Ignored,
            _ => {}
        }
        let folder = match self.layout {
            MaildirLayout::Nested => names::from_dir(name, depth).is_some(),
            MaildirLayout::MaildirPlusPlus => depth == 0 && name.len() > 1 && name.starts_with('.'),
        };
        if folder {
            DirKind::Tree
        } else {
            DirKind::Ignored
        }
    }

    pub fn folder_of_path(&self, path: &Path) -> Option<FolderName> {
        let relative = path.strip_prefix(&self.root).ok()?;
        let parts: Vec<&str> = relative.iter().map(|p| p.to_str()).collect::<Option<_>>()?;
        let sub = parts.iter().rposition(|p| *p == "cur" || *p == "new")?;
        if parts.len() > sub + 2 || parts.get(sub + 1).is_some_and(|f| f.starts_with('.')) {
            return None;
        }
        let folder_parts = &parts[..sub];
        match self.layout {
            MaildirLayout::Nested => {
                let parts: Vec<&str> = folder_parts
                    .iter()
                    .enumerate()
                    .map(|(depth, dir)| names::from_dir(dir, depth))
                    .collect::<Option<_>>()?;
                FolderName::new(&parts.join("/"))
            }
            MaildirLayout::MaildirPlusPlus => match folder_parts {
                [] => Some(FolderName::inbox()),
                [dotted] => FolderName::new(&dotted.strip_prefix('.')?.replace('.', "/")),
                _ => None,
            },
        }
    }

    /// Opens `folder` with `messages` as its index, guessed from their flags (see
    /// [`OpenFolder::guessed`]); `partial`: they are only some of the folder's messages.
    async fn adopt(
        &mut self,
        folder: &FolderName,
        messages: Vec<MessageMeta>,
        token: Option<String>,
        partial: bool,
    ) -> Result<Option<FolderSnapshot>, StoreError> {
        self.complete_deliveries().await?;
        self.twins.clear();
        self.open = None;
        let dir = self.folder_dir(folder)?;
        if !is_maildir(&dir) {
            return Ok(None);
        }
        let table =
            keywords::read(&dir).map_err(|e| StoreError::io(dir.join(keywords::FILE), e))?;
        let index = messages
            .iter()
            .map(|m| {
                let located = if m.flags.is_empty() {
                    Located::new(Sub::New, m.id.as_str())
                } else {
                    Located::new(
                        Sub::Cur,
                        &file_name_with(
                            m.id.as_str(),
                            "",
                            &self.keywords.to_local(&m.flags),
                            &table,
                        ),
                    )
                };
                (m.id.clone(), located)
            })
            .collect();
        self.open = Some(OpenFolder {
            dir,
            index,
            guessed: true,
            disturbed: false,
            digest: token.as_deref().and_then(|t| Recorded::parse(t).digest),
            partial,
            table,
        });
        Ok(Some(FolderSnapshot {
            uid_validity: None,
            uid_next: None,
            highest_modseq: None,
            messages,
            token,
        }))
    }

    fn open_folder(&self) -> Result<&OpenFolder, StoreError> {
        self.open
            .as_ref()
            .ok_or_else(|| StoreError::Invalid("no Maildir folder is open".into()))
    }

    fn path_of(&self, id: &MsgId) -> Result<Option<PathBuf>, StoreError> {
        let open = self.open_folder()?;
        Ok(open.index.get(id).map(|l| l.path(&open.dir, id)))
    }

    /// Finds a message again after the mail client renamed it behind our back.
    fn relocate(&mut self, id: &MsgId) -> Result<Option<PathBuf>, StoreError> {
        let dir = self.open_folder()?.dir.clone();
        let rule = self.keywords.clone();
        if let Some(open) = self.open.as_mut() {
            open.disturbed = true;
        }
        if let Some(open) = self.open.as_mut().filter(|open| open.guessed) {
            // One read of the folder replaces every guess, found or not.
            let (index, _, _) = read_folder(&dir, &open.table, &rule)?;
            open.index = index;
            open.guessed = false;
            return Ok(open.index.get(id).map(|l| l.path(&dir, id)));
        }
        let mut found = None;
        for sub in [Sub::Cur, Sub::New] {
            let sub_dir = dir.join(sub.name());
            let entries = fs::read_dir(&sub_dir).map_err(|e| StoreError::io(&sub_dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::io(&sub_dir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if unique_part(&name) == id.as_str() {
                    found = Some(Located::new(sub, &name));
                }
            }
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(None);
        };
        match found {
            Some(l) => {
                let path = l.path(&dir, id);
                open.index.insert(id.clone(), l);
                Ok(Some(path))
            }
            None => {
                open.index.remove(id);
                Ok(None)
            }
        }
    }

    /// Runs `op` on the file of message `id`, looking for the file again once when the mail
    /// client renamed it in the meantime. `None`: the message is gone (deleted meanwhile).
    fn on_file<T>(
        &mut self,
        id: &MsgId,
        mut op: impl FnMut(&Path) -> io::Result<T>,
    ) -> Result<Option<(PathBuf, T)>, StoreError> {
        for attempt in 0..3 {
            let path = match attempt {
                0 => self.path_of(id)?,
                1 => match self.second_guess(id)? {
                    Some(path) => Some(path),
                    None => continue,
                },
                _ => self.relocate(id)?,
            };
            let Some(path) = path else {
                return Ok(None);
            };
            match op(&path) {
                Ok(value) => return Ok(Some((path, value))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
        Ok(None)
    }

    /// The other name idlewild gives a message without flags, for a guessed index: `new/ID` on
    /// delivery, `cur/ID:2,` once its last flag was taken away. Found there, the guess was
    /// idlewild's own naming, not a change by the mail client.
    fn second_guess(&mut self, id: &MsgId) -> Result<Option<PathBuf>, StoreError> {
        let Some(open) = self.open.as_mut().filter(|open| open.guessed) else {
            return Ok(None);
        };
        if !open.index.get(id).is_some_and(|l| l.sub == Sub::New) {
            return Ok(None);
        }
        let file_name = format!("{}:2,", id.as_str());
        let path = open.dir.join(Sub::Cur.name()).join(&file_name);
        if fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        open.index
            .insert(id.clone(), Located::new(Sub::Cur, &file_name));
        Ok(Some(path))
    }

    /// The file of message `id` of the folder at `dir` as the folder's file list has it; the
    /// list is read once per sync of a folder (see [`Store::stage_twin`]).
    fn listed_twin(&mut self, dir: &Path, id: &MsgId) -> Result<Option<PathBuf>, StoreError> {
        if !self.twins.contains_key(dir) {
            let mut files = HashMap::new();
            for sub in [Sub::Cur, Sub::New] {
                let sub_dir = dir.join(sub.name());
                let entries = match fs::read_dir(&sub_dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StoreError::io(&sub_dir, e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| StoreError::io(&sub_dir, e))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    files.insert(unique_part(&name).to_owned(), entry.path());
                }
            }
            self.twins.insert(dir.to_path_buf(), files);
        }
        Ok(self
            .twins
            .get(dir)
            .and_then(|files| files.get(id.as_str()))
            .cloned())
    }

    /// Deliveries are moved in by `flush`; anything that looks at the folder comes after them.
    async fn complete_deliveries(&mut self) -> Result<(), StoreError> {
        if self.queued.is_empty() {
            Ok(())
        } else {
            self.flush().await
        }
    }

    /// Stages copies in `staging`, outside the tree, for a read-only Maildir.
    fn stage_outside(&mut self, ids: &[MsgId], staging: &Path) -> Result<Vec<Staged>, StoreError> {
        crate::private::create_dir_all(staging).map_err(|e| StoreError::io(staging, e))?;
        let mut staged = Vec::new();
        let (root, dir) = (self.root.clone(), self.open_folder()?.dir.clone());
        for id in ids {
            let copy = staging.join(format!("{TEMP_PREFIX}up-{}", new_unique()));
            let copied = self.on_file(id, |path| match source_of(&root, &dir, path)? {
                Source::File | Source::LinkInside => fs::copy(path, &copy).map(|_| true),
                Source::Refused => Ok(false),
            })?;
            let Some((original, true)) = copied else {
                continue;
            };
            // fs::copy takes the original's mode, which may let others read the scratch copy.
            crate::private::restrict_path(&copy).map_err(|e| StoreError::io(&copy, e))?;
            // The date of arrival is the original's; the copy's own time is now.
            let internal_date = file_date(&original);
            staged.push(Staged {
                source_id: id.clone(),
                path: copy,
                temporary: true,
                internal_date,
            });
        }
        Ok(staged)
    }

    /// The open folder's keyword table, with a letter for each of `wanted` that can get one
    /// (written to `dovecot-keywords` first when any is new). A keyword left without a letter
    /// (all 26 taken) is reported once; the state keeps it (see [`Store::keyword_room`]).
    fn letters_for(
        &mut self,
        dir: &Path,
        wanted: &Keywords,
    ) -> Result<keywords::Table, StoreError> {
        let known = self.open_folder()?.table.clone();
        if wanted.iter().all(|k| known.letter_of(k.as_str()).is_some()) {
            return Ok(known);
        }
        let table = keywords::assign(dir, wanted.iter().map(Keyword::as_str), SystemTime::now())
            .map_err(|e| StoreError::io(dir.join(keywords::FILE), e))?;
        for keyword in wanted.iter() {
            if table.letter_of(keyword.as_str()).is_none()
                && self
                    .refused_keywords
                    .insert((dir.to_owned(), keyword.clone()))
            {
                tracing::warn!(
                    folder = %dir.display(),
                    "keyword {keyword} has no Maildir letter left in this folder (26 are taken, see {}); it stays on the server and in the state",
                    keywords::FILE
                );
            }
        }
        if let Some(open) = self.open.as_mut() {
            open.table = table.clone();
        }
        Ok(table)
    }

    fn mark_dirty(&mut self, dir: PathBuf) {
        if !self.dirty_dirs.contains(&dir) {
            self.dirty_dirs.push(dir);
        }
    }

    /// Adds the folders below `dir` (whose folder name is `prefix`, `depth` parts long).
    /// Symbolic links to directories are followed (a folder kept on another disk is a folder);
    /// `seen` holds the links' targets entered, so a link back up the tree is not a loop.
    fn list_nested(
        &self,
        dir: &Path,
        prefix: &str,
        depth: usize,
        seen: &mut HashSet<(u64, u64)>,
        out: &mut Vec<FolderName>,
    ) {
        use std::os::unix::fs::MetadataExt;
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            // A link is followed to its directory (a link that leads nowhere is not listed;
            // `absence` tells it from a deletion), and its target remembered: only a link can
            // lead back up the tree. A plain directory costs no stat.
            let target = if kind.is_symlink() {
                match fs::metadata(&path) {
                    Ok(meta) if meta.is_dir() => Some((meta.dev(), meta.ino())),
                    _ => continue,
                }
            } else if kind.is_dir() {
                None
            } else {
                continue;
            };
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                tracing::warn!(dir = %dir.display(), "skipping a directory whose name is not UTF-8");
                continue;
            };
            // The Maildir's own directories and other programs' (`.notmuch`) are no folders.
            let Some(part) = names::from_dir(name, depth) else {
                continue;
            };
            if target.is_some_and(|t| !seen.insert(t)) {
                tracing::warn!(path = %path.display(), "skipping a directory met before (a symbolic link loop?)");
                continue;
            }
            let full = if prefix.is_empty() {
                part.to_owned()
            } else {
                format!("{prefix}/{part}")
            };
            if is_maildir(&path)
                && let Some(folder) = FolderName::new(&full)
            {
                out.push(folder);
            }
            self.list_nested(&path, &full, depth + 1, seen, out);
        }
    }
}

/// See [`MaildirStore::dir_kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirKind {
    /// A folder, or a directory holding folders.
    Tree,
    /// A folder's `cur/` or `new/`.
    Messages,
    Ignored,
}

/// Why the Maildir folder at `dir` is not listed: really gone, or there in a way that cannot be
/// seen. Only a directory that does not exist under a readable parent, or one a mail client
/// emptied of its Maildir while sub-folders stay, is gone; a dangling symbolic link, an empty
/// directory (a mount point without its disk), a broken Maildir or anything unreadable is
/// unavailable.
fn absence_of(root: &Path, dir: &Path) -> Absence {
    let unavailable = |why: String| Absence::Unavailable(format!("{}: {why}", dir.display()));
    match fs::symlink_metadata(dir) {
        Ok(meta) => {
            if meta.file_type().is_symlink() && fs::metadata(dir).is_err() {
                let target = fs::read_link(dir)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| "?".into());
                return unavailable(format!(
                    "a symbolic link to {target}, which leads nowhere; if it is on a disk that is not mounted, mount it"
                ));
            }
            if !dir.is_dir() {
                return unavailable("not a directory".into());
            }
            let entries: Vec<String> = match fs::read_dir(dir) {
                Ok(entries) => entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(e) => return unavailable(format!("cannot be read ({e})")),
            };
            let own = SUBDIRS
                .iter()
                .filter(|s| entries.iter().any(|e| e == *s))
                .count();
            match (own, entries.is_empty()) {
                // A mail client deleted the folder's Maildir, and its sub-folders stay.
                (0, false) => Absence::Gone,
                (0, true) => unavailable(
                    "an empty directory where the folder's Maildir was; if its disk is not mounted, mount it; if you deleted the folder, remove the directory too".into(),
                ),
                _ => unavailable(
                    "not a whole Maildir (one of cur, new and tmp is missing or not a directory)".into(),
                ),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Gone, when the directory that held it can be read and says so.
            let mut up = dir.parent();
            while let Some(parent) = up {
                match fs::symlink_metadata(parent) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound && parent != root => {
                        up = parent.parent();
                    }
                    Err(e) => {
                        return unavailable(format!("{} cannot be read ({e})", parent.display()));
                    }
                    Ok(_) => {
                        return match fs::read_dir(parent) {
                            Ok(_) => Absence::Gone,
                            Err(e) => unavailable(format!(
                                "{} cannot be read ({e}); if it is on a disk that is not mounted, mount it",
                                parent.display()
                            )),
                        };
                    }
                }
            }
            Absence::Gone
        }
        Err(e) => unavailable(format!("cannot be looked at ({e})")),
    }
}

/// Reads a folder's `new/` and `cur/`: where each message is, and the listing.
fn read_folder(
    dir: &Path,
    table: &keywords::Table,
    rule: &KeywordRule,
) -> Result<(Index, Vec<MessageMeta>, NamesDigest), StoreError> {
    let mut index = HashMap::new();
    let mut messages = Vec::new();
    let mut digest = NamesDigest::default();
    for_each_message_file(dir, |sub, file_name, id| {
        digest.add(sub, &file_name);
        if index.contains_key(&id) {
            // A client moving new/ -> cur/ while we read both: keep one, it is one message.
            return;
        }
        let flags = rule.to_server(flags_of(&file_name, table));
        messages.push(MessageMeta {
            id: id.clone(),
            flags,
        });
        index.insert(id, Located::new(sub, &file_name));
    })?;
    Ok((index, messages, digest))
}

/// Calls `visit` with every file of `new/` and `cur/` that is a message idlewild tracks.
fn for_each_message_file(
    dir: &Path,
    mut visit: impl FnMut(Sub, String, MsgId),
) -> Result<(), StoreError> {
    for sub in [Sub::New, Sub::Cur] {
        let sub_dir = dir.join(sub.name());
        let entries = fs::read_dir(&sub_dir).map_err(|e| StoreError::io(&sub_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&sub_dir, e))?;
            let Ok(file_name) = entry.file_name().into_string() else {
                tracing::warn!(dir = %sub_dir.display(), "skipping a file whose name is not UTF-8");
                continue;
            };
            if file_name.starts_with('.') {
                continue;
            }
            // A message is a file, or a symbolic link (whose target `source_of` checks when it
            // is copied); a directory or a FIFO here is none.
            if entry
                .file_type()
                .is_ok_and(|t| !t.is_file() && !t.is_symlink())
            {
                continue;
            }
            let Some(id) = MsgId::new(unique_part(&file_name)) else {
                tracing::warn!(file = %file_name, "skipping a file whose name is not a Maildir name idlewild can track");
                continue;
            };
            visit(sub, file_name, id);
        }
    }
    Ok(())
}

/// Which of a folder's `new/` and `cur/` a message file is in, and its name.
fn located_at(path: &Path) -> Option<(Sub, &str)> {
    let name = path.file_name()?.to_str()?;
    let sub = match path.parent()?.file_name()?.to_str()? {
        "new" => Sub::New,
        "cur" => Sub::Cur,
        _ => return None,
    };
    Some((sub, name))
}

/// The digest of the names of the message files in `dir` now.
fn names_digest(dir: &Path) -> Result<NamesDigest, StoreError> {
    let mut digest = NamesDigest::default();
    for_each_message_file(dir, |sub, file_name, _| digest.add(sub, &file_name))?;
    Ok(digest)
}

/// What a message file is, for copying it to the other side.
enum Source {
    /// A regular file.
    File,
    /// A symbolic link to a regular file inside the store (or inside the folder's own
    /// directory, which may be a link to another disk): its target is the message.
    LinkInside,
    /// A symbolic link leading outside the store, or anything that is not a regular file: it
    /// is listed (so it is never taken for deleted) but never copied.
    Refused,
}

/// Classifies the message file at `path` of the folder in `dir`. A link that leads nowhere is
/// `NotFound`, as a file that is gone.
fn source_of(root: &Path, dir: &Path, path: &Path) -> io::Result<Source> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_file() {
        return Ok(Source::File);
    }
    if !meta.file_type().is_symlink() {
        warn_once(path, "it is not a regular file");
        return Ok(Source::Refused);
    }
    let target = fs::canonicalize(path)?;
    let inside = [root, dir]
        .iter()
        .filter_map(|d| fs::canonicalize(d).ok())
        .any(|d| target.starts_with(d));
    if !inside {
        warn_once(
            path,
            &format!(
                "it is a symbolic link to {}, outside the Maildir; copy the file in instead of linking to it",
                target.display()
            ),
        );
        return Ok(Source::Refused);
    }
    if !fs::metadata(&target)?.is_file() {
        warn_once(
            path,
            "it is a symbolic link to something that is not a regular file",
        );
        return Ok(Source::Refused);
    }
    Ok(Source::LinkInside)
}

/// Says once per process and file why a message file is not copied: the daemon looks at the
/// folder again on every sync, and one warning is enough.
fn warn_once(path: &Path, why: &str) {
    static WARNED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.iter().any(|p| p == path) {
        return;
    }
    warned.push(path.to_owned());
    tracing::warn!(file = %path.display(), "not copying this message file to the server: {why}");
}

/// A message file's modification time in seconds: its date of arrival, as mail clients take it.
fn file_date(path: &Path) -> Option<i64> {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
}

fn is_maildir(dir: &Path) -> bool {
    SUBDIRS.iter().all(|s| dir.join(s).is_dir())
}

/// The part of a Maildir file name that stays put when flags change.
fn unique_part(file_name: &str) -> &str {
    file_name.split(':').next().unwrap_or(file_name)
}

/// The info letters after `:2,`, if any.
fn info_letters(file_name: &str) -> &str {
    file_name
        .split_once(":2,")
        .map(|(_, info)| info)
        .unwrap_or("")
}

/// The flags a file name carries, keywords by their names in `table`; a lowercase letter the
/// table does not name is no keyword of ours.
fn flags_of(file_name: &str, table: &keywords::Table) -> Flags {
    let info = info_letters(file_name);
    let flags = Flags::from_maildir_info(info);
    if !info.bytes().any(|b| b.is_ascii_lowercase()) {
        return flags;
    }
    let keywords: Keywords = info
        .chars()
        .filter_map(|c| table.keyword_of(c))
        .filter_map(Keyword::new)
        .collect();
    flags.with_keywords(keywords)
}

/// Whether an info letter stands for a flag or keyword of ours (see [`flags_of`]).
fn ours(letter: char, table: &keywords::Table) -> bool {
    !Flags::from_maildir_info(&letter.to_string()).is_empty()
        || table.keyword_of(letter).and_then(Keyword::new).is_some()
}

/// The file name for `unique` with `flags`, keywords as their letters in `table` (one without a
/// letter is left out), keeping info letters that are not ours (a lowercase letter no keyword
/// of the table names, say).
fn file_name_with(unique: &str, old_info: &str, flags: &Flags, table: &keywords::Table) -> String {
    let mut letters: Vec<char> = old_info.chars().filter(|c| !ours(*c, table)).collect();
    letters.extend(flags.maildir_letters().chars());
    letters.extend(
        flags
            .keywords()
            .iter()
            .filter_map(|k| table.letter_of(k.as_str())),
    );
    letters.sort_unstable();
    letters.dedup();
    let info: String = letters.into_iter().collect();
    format!("{unique}:2,{info}")
}

/// How old a directory's modification time must be to stand for its content: a change within
/// the filesystem's timestamp granularity of the last one could leave the time as it was.
const RACY: Duration = Duration::from_secs(2);

/// The same on a local filesystem with nanosecond times (`disk::keeps_fine_times`): the kernel
/// stamps them from its clock, which moves at least every 10 ms (HZ=100), so a change made
/// after a time this old was read gets a later time. The daemon's syncs, a fraction of a second
/// apart, can then trust the times instead of reading every file name again. Network
/// filesystems keep the 2 s: their times come from another machine's clock.
const RACY_FINE: Duration = Duration::from_millis(50);

/// The change token of a Maildir folder: inode and modification time of `new/` and `cur/`,
/// which every delivery, rename (flag change) and deletion updates. `None` when it cannot be
/// read or is too recent to be trusted.
fn dir_token(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let now = SystemTime::now();
    let mut parts = Vec::new();
    for sub in [Sub::New, Sub::Cur] {
        let path = dir.join(sub.name());
        let meta = fs::metadata(&path).ok()?;
        let modified = meta.modified().ok()?;
        let time = modified.duration_since(UNIX_EPOCH).ok()?;
        // A time in the future (a clock set back) cannot be trusted at all.
        let age = now.duration_since(modified).ok()?;
        if age < RACY_FINE
            || (age < RACY && (time.subsec_nanos() == 0 || !crate::disk::keeps_fine_times(&path)))
        {
            return None;
        }
        parts.push(format!(
            "{}.{}.{}",
            meta.ino(),
            time.as_secs(),
            time.subsec_nanos()
        ));
    }
    Some(parts.join(":"))
}

/// Batches of up to this many new files are made durable file by file ([`sync_each`]), bigger
/// ones with one `syncfs` ([`sync_filesystem`]). `syncfs` also waits for every other program's
/// dirty data on the filesystem: with a large copy running beside the mail, one message's
/// `syncfs` took up to 1.9 s where its `fdatasync` took at most 0.1 s, and a 1 % server change
/// synced three times slower. The big batches of a first sync are where one `syncfs` pays,
/// standing for hundreds of messages. Measured on ext4: ARCHITECTURE.md, "Durability under a
/// busy disk".
const SYNC_EACH_UP_TO: usize = 64;

/// Makes the content of files on one filesystem durable with one `syncfs(2)`: one journal
/// commit for a whole batch of messages instead of one fsync each.
fn sync_filesystem(dir: &Path, files: &[&Path]) -> Result<(), StoreError> {
    use std::os::fd::AsRawFd;
    let handle = File::open(dir).map_err(|e| StoreError::io(dir, e))?;
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    tracing::debug!(dir = %dir.display(), "syncfs failed ({error}); syncing file by file");
    for file in files {
        File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::io(*file, e))?;
    }
    Ok(())
}

/// Makes the content of `files` durable with an `fdatasync(2)` each, several at a time: a
/// journaling filesystem gathers the ones that arrive while a commit is under way into the
/// next, and none of them waits for other programs' dirty data, as `syncfs` does.
fn sync_each(files: &[&Path]) -> Result<(), StoreError> {
    const AT_ONCE: usize = 16;
    let per_thread = files.len().div_ceil(AT_ONCE).max(1);
    let sync = |part: &[&Path]| -> Result<(), StoreError> {
        for file in part {
            File::open(file)
                .and_then(|f| f.sync_data())
                .map_err(|e| StoreError::io(*file, e))?;
        }
        Ok(())
    };
    if files.len() <= per_thread {
        return sync(files);
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = files
            .chunks(per_thread)
            .map(|part| scope.spawn(move || sync(part)))
            .collect();
        for thread in running {
            thread.join().unwrap_or_else(|_| {
                Err(StoreError::io(
                    files[0],
                    io::Error::other("a thread syncing messages to disk panicked"),
                ))
            })?;
        }
        Ok(())
    })
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

fn already_there(target: &Path) -> StoreError {
    StoreError::Invalid(format!(
        "{} already exists; refusing to overwrite it",
        target.display()
    ))
}

fn new_unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    // Asked once: the host's name does not change under a running sync, and asking costs a
    // system call per message.
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let host = HOST.get_or_init(|| {
        hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    });
    // Asked once too (a system call each time): a sync never forks without an exec.
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    format!(
        "{}.M{}P{}Q{}R{:016x}.{}",
        now.as_secs(),
        now.subsec_micros(),
        *PID.get_or_init(std::process::id),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u64>(),
        host
    )
}

#[async_trait]
impl Store for MaildirStore {
    fn describe(&self) -> String {
        format!("maildir:{}", self.root.display())
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderName>, StoreError> {
        // A missing root lists no folders; the engine then refuses to treat known folders as
        // deleted (they "vanished"), and the account refuses to start when the state is not empty.
        if !self.root_exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        match self.layout {
            MaildirLayout::Nested => {
                let mut seen = HashSet::new();
                self.list_nested(&self.root.clone(), "", 0, &mut seen, &mut out)
            }
            MaildirLayout::MaildirPlusPlus => {
                if is_maildir(&self.root) {
                    out.push(FolderName::inbox());
                }
                let entries =
                    fs::read_dir(&self.root).map_err(|e| StoreError::io(&self.root, e))?;
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    let Some(rest) = name.strip_prefix('.') else {
                        continue;
                    };
                    if rest.is_empty() || !is_maildir(&entry.path()) {
                        continue;
                    }
                    if let Some(folder) = FolderName::new(&rest.replace('.', "/")) {
                        out.push(folder);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn look_up_folder(&mut self, folder: &FolderName) -> Result<Option<bool>, StoreError> {
        // The place `list_folders` would find it; anything else is for a listing to sort out.
        Ok(Some(
            self.root_exists() && self.folder_dir(folder).is_ok_and(|dir| is_maildir(&dir)),
        ))
    }

    async fn absence(&mut self, folder: &FolderName) -> Absence {
        let Ok(dir) = self.folder_dir(folder) else {
            // A name this layout cannot store was never here.
            return Absence::Gone;
        };
        // Versions before the escape (`names`) kept such a folder under its plain name: it is
        // there, not deleted, and the user moves it once.
        // (A part named cur, new or tmp was stored inside its parent's own directory, which
        // cannot be moved as a whole: not looked for.)
        let inside_parent = folder
            .components()
            .enumerate()
            .any(|(depth, part)| depth > 0 && SUBDIRS.contains(&part));
        if self.layout == MaildirLayout::Nested && !inside_parent {
            let plain = folder
                .components()
                .fold(self.root.clone(), |path, part| path.join(part));
            if plain != dir && is_maildir(&plain) {
                return Absence::Unavailable(format!(
                    "{} holds this folder where earlier versions of idlewild kept it; its place is now {}: move it there (mv '{}' '{}') and sync again",
                    plain.display(),
                    dir.display(),
                    plain.display(),
                    dir.display()
                ));
            }
        }
        absence_of(&self.root, &dir)
    }

    async fn create_folder(&mut self, folder: &FolderName) -> Result<(), StoreError> {
        let dir = self.folder_dir(folder)?;
        for sub in SUBDIRS {
            let path = dir.join(sub);
            // 0700, as the root: a folder's name and its mail are the owner's only.
            crate::private::create_dir_all(&path).map_err(|e| StoreError::io(&path, e))?;
        }
        if let Some(parent) = dir.parent() {
            fsync_dir(parent)?;
        }
        Ok(())
    }

    async fn delete_folder(&mut self, folder: &FolderName) -> Result<(), StoreError> {
        if *folder == FolderName::inbox() {
            return Err(StoreError::Invalid("INBOX is never removed".into()));
        }
        self.complete_deliveries().await?;
        let dir = self.folder_dir(folder)?;
        if !is_maildir(&dir) {
            return Ok(());
        }
        if self.open.as_ref().is_some_and(|o| o.dir == dir) {
            self.open = None;
        }
        remove_empty_maildir(folder, &dir)?;
        if let Some(parent) = dir.parent() {
            fsync_dir(parent)?;
        }
        Ok(())
    }

    async fn scan(&mut self, folder: &FolderName) -> Result<FolderSnapshot, StoreError> {
        self.complete_deliveries().await?;
        self.open = None;
        self.twins.clear();
        let dir = self.folder_dir(folder)?;
        if !is_maildir(&dir) {
            return Err(StoreError::NoSuchFolder(folder.clone()));
        }
        // Before reading: a change during the listing must change the token.
        let token = dir_token(&dir);
        if !self.read_only {
            keywords::clear_left_lock(&dir);
            remove_leftovers(&dir.join("tmp"));
        }
        let table =
            keywords::read(&dir).map_err(|e| StoreError::io(dir.join(keywords::FILE), e))?;
        let (index, messages, digest) = read_folder(&dir, &table, &self.keywords)?;
        self.open = Some(OpenFolder {
            dir,
            index,
            guessed: false,
            disturbed: false,
            digest: Some(digest),
            partial: false,
            table,
        });
        // The names were read after the times were taken: while the times stay, so do they.
        Ok(FolderSnapshot {
            uid_validity: None,
            uid_next: None,
            highest_modseq: None,
            messages,
            token: Some(digest.token(token.as_deref())),
        })
    }

    async fn change_token(&mut self, folder: &FolderName) -> Result<Option<String>, StoreError> {
        Ok(dir_token(&self.folder_dir(folder)?))
    }

    async fn unchanged_since(
        &mut self,
        folder: &FolderName,
        recorded: &str,
    ) -> Result<Option<String>, StoreError> {
        let dir = self.folder_dir(folder)?;
        // Taken before the names are read: a change while they are read shows next time.
        let now = dir_token(&dir);
        let recorded_as = Recorded::parse(recorded);
        if recorded_as.times.is_some() && now.as_deref() == recorded_as.times {
            return Ok(Some(recorded.to_owned()));
        }
        let Some(digest) = recorded_as.digest else {
            return Ok(None);
        };
        if !is_maildir(&dir) || names_digest(&dir)? != digest {
            return Ok(None);
        }
        // As the last sync left it: from now on its times stand for it, once they can.
        Ok(Some(digest.token(now.as_deref())))
    }

    async fn settled_token(
        &mut self,
        folder: &FolderName,
        listed: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        self.complete_deliveries().await?;
        let dir = self.folder_dir(folder)?;
        let Some(open) = self.open.as_ref().filter(|open| open.dir == dir) else {
            return Ok(listed.map(str::to_owned));
        };
        let listed_times = listed.and_then(|t| Recorded::parse(t).times);
        if self.read_only
            || open.disturbed
            || (listed_times.is_some() && dir_token(&dir).as_deref() == listed_times)
        {
            // Nothing written here since the listing (its times still hold), or the index
            // is not what the sync made of the folder: the listing's token stands.
            return Ok(listed.map(str::to_owned));
        }
        let digest = match open.digest {
            Some(digest) => digest,
            None if !open.partial => {
                let mut digest = NamesDigest::default();
                for (id, located) in &open.index {
                    digest.add(located.sub, &located.file_name(id));
                }
                digest
            }
            None => return Ok(listed.map(str::to_owned)),
        };
        Ok(Some(digest.token(None)))
    }

    async fn adopt_listing(
        &mut self,
        folder: &FolderName,
        messages: Vec<MessageMeta>,
        token: Option<String>,
    ) -> Result<Option<FolderSnapshot>, StoreError> {
        self.adopt(folder, messages, token, false).await
    }

    async fn adopt_changes(
        &mut self,
        folder: &FolderName,
        messages: Vec<MessageMeta>,
        token: Option<String>,
    ) -> Result<Option<FolderSnapshot>, StoreError> {
        // What the sync writes must be added to a digest of the folder's names: without one,
        // the next sync could not tell the folder unchanged, and would read it again anyway.
        if token
            .as_deref()
            .and_then(|t| Recorded::parse(t).digest)
            .is_none()
        {
            return Ok(None);
        }
        self.adopt(folder, messages, token, true).await
    }

    fn staging_dir(&self, folder: &FolderName) -> Option<PathBuf> {
        self.folder_dir(folder).ok().map(|d| d.join("tmp"))
    }

    fn reserve_id(&mut self) -> Option<MsgId> {
        MsgId::new(new_unique())
    }

    async fn stage_twin(
        &mut self,
        folder: &FolderName,
        id: &MsgId,
        flags: &Flags,
        staging: &Path,
    ) -> Result<Option<Staged>, StoreError> {
        if self.read_only {
            return Ok(None);
        }
        let Ok(dir) = self.folder_dir(folder) else {
            return Ok(None);
        };
        // Where idlewild would have named it; the folder's file list only when that misses.
        let guessed = [
            dir.join("cur")
                .join(format!("{}:2,{}", id, flags.maildir_letters())),
            dir.join("new").join(id.as_str()),
        ]
        .into_iter()
        .find(|p| fs::symlink_metadata(p).is_ok());
        let path = match guessed {
            Some(path) => path,
            None => match self.listed_twin(&dir, id)? {
                Some(path) => path,
                None => return Ok(None),
            },
        };
        // Only a plain file is linked: link(2) would link a symbolic link itself.
        match source_of(&self.root, &dir, &path) {
            Ok(Source::File) => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        }
        let link = staging.join(format!("{TEMP_PREFIX}ln-{}", new_unique()));
        match fs::hard_link(&path, &link) {
            Ok(()) => Ok(Some(Staged {
                source_id: id.clone(),
                internal_date: file_date(&path),
                path: link,
                temporary: true,
            })),
            // Renamed by a mail client a moment ago, another filesystem, a link limit, no
            // permission: the message is simply downloaded.
            Err(e) => {
                tracing::debug!(file = %path.display(), "cannot link: {e}");
                Ok(None)
            }
        }
    }

    fn reserves_ids(&self) -> bool {
        true
    }

    async fn sizes_and_dates(&mut self, ids: &[MsgId]) -> Result<Vec<SizeAndDate>, StoreError> {
        let mut out = Vec::new();
        for id in ids {
            // The file time is the date of arrival, as `stage` hands it on.
            if let Some((_, meta)) = self.on_file(id, |p| fs::metadata(p))? {
                out.push(SizeAndDate {
                    id: id.clone(),
                    size: meta.len(),
                    date: meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .and_then(|d| i64::try_from(d.as_secs()).ok()),
                });
            }
        }
        Ok(out)
    }

    async fn stage(&mut self, ids: &[MsgId], staging: &Path) -> Result<Vec<Staged>, StoreError> {
        self.complete_deliveries().await?;
        if self.read_only {
            return self.stage_outside(ids, staging);
        }
        let (root, dir) = (self.root.clone(), self.open_folder()?.dir.clone());
        let tmp = dir.join("tmp");
        let mut staged = Vec::new();
        for id in ids {
            // A hard link in tmp/ keeps the content reachable while the mail client renames or
            // deletes the original; the receiving store removes it when done. Filesystems
            // without hard links get a copy, and so does a symbolic link (a hard link to it
            // would be a link, not the message).
            let link = tmp.join(format!("{TEMP_PREFIX}up-{}", new_unique()));
            let linked = self.on_file(id, |path| match source_of(&root, &dir, path)? {
                Source::File => fs::hard_link(path, &link)
                    .or_else(|e| match e.kind() {
                        io::ErrorKind::NotFound => Err(e),
                        _ => fs::copy(path, &link).map(|_| ()),
                    })
                    .map(|()| true),
                Source::LinkInside => fs::copy(path, &link).map(|_| true),
                Source::Refused => Ok(false),
            })?;
            let Some((original, true)) = linked else {
                continue;
            };
            // The date of arrival is the original's (a copy's own time is now).
            let internal_date = file_date(&original);
            staged.push(Staged {
                source_id: id.clone(),
                path: link,
                temporary: true,
                internal_date,
            });
        }
        Ok(staged)
    }

    async fn deliver(
        &mut self,
        message: &Staged,
        flags: &Flags,
        reserved: Option<&MsgId>,
    ) -> Result<Option<MsgId>, StoreError> {
        let dir = self.open_folder()?.dir.clone();
        let id = match reserved {
            Some(id) => id.clone(),
            None => MsgId::new(new_unique())
                .ok_or_else(|| StoreError::Invalid("cannot make a Maildir file name".into()))?,
        };
        let tmp_dir = dir.join("tmp");
        let tmp_path = if message.temporary && message.path.parent() == Some(tmp_dir.as_path()) {
            message.path.clone()
        } else {
            let path = tmp_dir.join(format!("{TEMP_PREFIX}in-{id}"));
            copy_into(&message.path, &path)?;
            path
        };
        if let Some(secs) = message.internal_date.filter(|s| *s >= 0) {
            // The file time is what mail clients and mbsync take as the date of arrival. A
            // filesystem that cannot keep it still gets the message; a missing file cannot.
            if let Err(e) = files::set_mtime(&tmp_path, secs)
                && e.kind() == io::ErrorKind::NotFound
            {
                return Err(StoreError::io(&tmp_path, e));
            }
        }
        let flags = self.keywords.to_local(flags);
        let table = self.letters_for(&dir, flags.keywords())?;
        let (sub, file_name) = if flags.is_empty() {
            (Sub::New, id.as_str().to_owned())
        } else {
            (Sub::Cur, file_name_with(id.as_str(), "", &flags, &table))
        };
        let target_dir = dir.join(sub.name());
        // A name already in the folder is refused when the file is moved in (`flush`).
        if self.queued.iter().any(|q| q.id == id) {
            return Err(already_there(&target_dir.join(&file_name)));
        }
        self.queued.push(Queued {
            tmp_path,
            target_dir,
            id: id.clone(),
            located: Located::new(sub, &file_name),
        });
        Ok(Some(id))
    }

    fn keyword_room(&self) -> KeywordRoom {
        match &self.open {
            Some(open) if !open.table.has_room() => {
                let held: Keywords = open.table.names().filter_map(Keyword::new).collect();
                KeywordRoom::Only(
                    self.keywords
                        .to_server(Flags::empty().with_keywords(held))
                        .keywords()
                        .clone(),
                )
            }
            _ => KeywordRoom::Any,
        }
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        // Contents first, then names: a file is never visible in new/ or cur/ before its
        // content is on disk, so a crash cannot leave a truncated message behind.
        let queued = std::mem::take(&mut self.queued);
        if let Some(first) = queued.first()
            && let Some(tmp_dir) = first.tmp_path.parent()
        {
            let files: Vec<&Path> = queued.iter().map(|q| q.tmp_path.as_path()).collect();
            if files.len() <= SYNC_EACH_UP_TO {
                sync_each(&files)?;
            } else {
                sync_filesystem(tmp_dir, &files)?;
            }
        }
        for q in queued {
            let file_name = q.located.file_name(&q.id);
            let target = q.target_dir.join(&file_name);
            // Not moved in: the file stays in tmp/, removed by the next scan; the engine does
            // not confirm a copy whose flush failed.
            files::rename_no_replace(&q.tmp_path, &target).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    already_there(&target)
                } else {
                    StoreError::io(&target, e)
                }
            })?;
            self.mark_dirty(q.target_dir);
            if let Some(open) = self.open.as_mut() {
                if let Some(digest) = open.digest.as_mut() {
                    digest.add(q.located.sub, &file_name);
                }
                open.index.insert(q.id, q.located);
            }
        }
        for dir in std::mem::take(&mut self.dirty_dirs) {
            fsync_dir(&dir)?;
        }
        Ok(())
    }

    async fn set_flags(&mut self, updates: &[FlagUpdate]) -> Result<(), StoreError> {
        self.complete_deliveries().await?;
        let dir = self.open_folder()?.dir.clone();
        let updates: Vec<(&MsgId, Flags, Flags)> = updates
            .iter()
            .map(|u| {
                let add = self.keywords.to_local(&u.add);
                (&u.id, add, self.keywords.to_local(&u.remove))
            })
            .collect();
        // Letters for the keywords to add, in the table before any file carries them.
        let wanted: Keywords = updates
            .iter()
            .flat_map(|(_, add, _)| add.keywords().iter().cloned())
            .collect();
        let table = self.letters_for(&dir, &wanted)?;
        for (id, add, remove) in updates {
            let cur = dir.join("cur");
            let renamed = self.on_file(id, |path| {
                let old_name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                let old_flags = flags_of(old_name, &table);
                let new_flags = old_flags.union(&add).minus(&remove);
                let new_name =
                    file_name_with(id.as_str(), info_letters(old_name), &new_flags, &table);
                let target = cur.join(&new_name);
                if target != path {
                    fs::rename(path, &target)?;
                } else {
                    // Nothing to rename, but the file must be there (the name may be a guess).
                    fs::metadata(path)?;
                }
                Ok(new_name)
            })?;
            if let Some((old_path, new_name)) = renamed {
                if let Some(parent) = old_path.parent() {
                    self.mark_dirty(parent.to_owned());
                }
                self.mark_dirty(cur.clone());
                if let Some(open) = self.open.as_mut()
                    && let Some(digest) = open.digest.as_mut()
                    && old_path != cur.join(&new_name)
                {
                    match located_at(&old_path) {
                        Some((sub, name)) => {
                            digest.remove(sub, name);
                            digest.add(Sub::Cur, &new_name);
                        }
                        None => open.digest = None,
                    }
                }
                if let Some(open) = self.open.as_mut() {
                    open.index
                        .insert(id.clone(), Located::new(Sub::Cur, &new_name));
                }
            }
        }
        self.flush().await
    }

    async fn delete(&mut self, ids: &[MsgId]) -> Result<(), StoreError> {
        self.complete_deliveries().await?;
        for id in ids {
            if let Some((path, ())) = self.on_file(id, |path| fs::remove_file(path))? {
                if let Some(parent) = path.parent() {
                    self.mark_dirty(parent.to_owned());
                }
                if let Some(open) = self.open.as_mut()
                    && let Some(digest) = open.digest.as_mut()
                {
                    match located_at(&path) {
                        Some((sub, name)) => digest.remove(sub, name),
                        None => open.digest = None,
                    }
                }
                if let Some(open) = self.open.as_mut() {
                    open.index.remove(id);
                }
            }
        }
        self.flush().await
    }

    async fn fingerprints(
        &mut self,
        ids: &[MsgId],
    ) -> Result<Vec<(MsgId, Fingerprint)>, StoreError> {
        let mut out = Vec::new();
        for id in ids {
            // Only regular files are read: a FIFO or a device would never end.
            let found = self.on_file(id, |path| {
                if !fs::metadata(path)?.is_file() {
                    return Ok(None);
                }
                File::open(path)
                    .and_then(|file| crate::message::fingerprint(io::BufReader::new(file)))
                    .map(Some)
            })?;
            if let Some((_, Some(fp))) = found {
                out.push((id.clone(), fp));
            }
        }
        Ok(out)
    }

    async fn close(&mut self) {
        self.open = None;
    }
}

fn copy_into(from: &Path, to: &Path) -> Result<(), StoreError> {
    let mut src = File::open(from).map_err(|e| StoreError::io(from, e))?;
    let mut dst = File::options()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| StoreError::io(to, e))?;
    let result = io::copy(&mut src, &mut dst).and_then(|_| dst.flush());
    if let Err(e) = result {
        let _ = fs::remove_file(to);
        return Err(StoreError::io(to, e));
    }
    Ok(())
}

/// Removes a folder's `cur/`, `new/` and `tmp/` when they hold nothing but our own leftovers,
/// then its directory if nothing else is in it (in the nested layout it also holds the
/// sub-folders, which stay). Directories are removed with rmdir, which fails on anything that
/// arrived meanwhile: mail is never removed here. If one fails, those already removed are made
/// again, so the folder stays a whole Maildir.
fn remove_empty_maildir(folder: &FolderName, dir: &Path) -> Result<(), StoreError> {
    remove_leftovers(&dir.join("tmp"));
    for sub in SUBDIRS {
        let path = dir.join(sub);
        let mut entries = fs::read_dir(&path).map_err(|e| StoreError::io(&path, e))?;
        if entries.next().is_some() {
            return Err(StoreError::NotEmpty(folder.clone()));
        }
    }
    let mut removed = Vec::new();
    for sub in ["tmp", "new", "cur"] {
        let path = dir.join(sub);
        if let Err(e) = fs::remove_dir(&path) {
            for r in &removed {
                let _ = fs::create_dir(dir.join(r));
            }
            return Err(match e.kind() {
                io::ErrorKind::DirectoryNotEmpty => StoreError::NotEmpty(folder.clone()),
                _ => StoreError::io(&path, e),
            });
        }
        removed.push(sub);
    }
    // Maildir++ (Courier, Dovecot) marks a folder with this empty file.
    let _ = fs::remove_file(dir.join("maildirfolder"));
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        // Sub-folders or another program's files: the directory stays, no longer a Maildir.
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(()),
        Err(e) => Err(StoreError::io(dir, e)),
    }
}

fn remove_leftovers(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_synced_one_by_one_are_all_synced_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths: Vec<PathBuf> = (0..40)
            .map(|i| {
                let path = dir.path().join(format!("m{i}"));
                fs::write(&path, b"Subject: x\n\nbody\n").expect("write");
                path
            })
            .collect();
        let files: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        sync_each(&files).expect("every file synced, several threads at once");
        sync_each(&files[..1]).expect("one file, no thread");
        fs::remove_file(&paths[33]).expect("remove");
        let error = sync_each(&files).expect_err("a file is missing");
        assert!(error.to_string().contains("m33"), "{error}");
    }

    #[test]
    fn file_names_keep_foreign_info_letters() {
        let none = keywords::Table::default();
        assert_eq!(
            file_name_with("abc", "Sa", &Flags::FLAGGED, &none),
            "abc:2,Fa"
        );
        assert_eq!(file_name_with("abc", "", &Flags::empty(), &none), "abc:2,");
        // With the table naming `a`, it is a keyword of ours, set or cleared by the flags.
        let table = keywords::Table::parse("0 $Junk\n2 two words\n");
        let junk = Flags::from_imap(["$Junk"]);
        assert_eq!(
            file_name_with("abc", "Sac", &Flags::SEEN, &table),
            "abc:2,Sc"
        );
        assert_eq!(file_name_with("abc", "c", &junk, &table), "abc:2,ac");
        assert_eq!(flags_of("abc:2,Sac", &table), Flags::SEEN.union(&junk));
        assert_eq!(unique_part("abc:2,S"), "abc");
        assert_eq!(info_letters("abc:2,RS"), "RS");
        assert_eq!(info_letters("abc"), "");
    }

    #[test]
    fn changed_paths_map_to_their_folder() {
        let nested = MaildirStore::new(&MaildirConfig {
            keywords: Default::default(),
            path: PathBuf::from("/m"),
            layout: MaildirLayout::Nested,
        });
        let f = |p: &str| nested.folder_of_path(Path::new(p)).map(|f| f.to_string());
        assert_eq!(f("/m/INBOX/cur/123:2,S").as_deref(), Some("INBOX"));
        assert_eq!(f("/m/Archive/2019/new/1").as_deref(), Some("Archive/2019"));
        assert_eq!(f("/m/INBOX/cur").as_deref(), Some("INBOX"));
        assert_eq!(f("/m/INBOX/tmp/x"), None);
        assert_eq!(f("/m/.notmuch/xapian/cur/x"), None);
        assert_eq!(f("/elsewhere/INBOX/cur/1"), None);
        let plus = MaildirStore::new(&MaildirConfig {
            keywords: Default::default(),
            path: PathBuf::from("/m"),
            layout: MaildirLayout::MaildirPlusPlus,
        });
        let g = |p: &str| plus.folder_of_path(Path::new(p)).map(|f| f.to_string());
        assert_eq!(g("/m/cur/1").as_deref(), Some("INBOX"));
        assert_eq!(g("/m/.Lists.rust/new/1").as_deref(), Some("Lists/rust"));

        // What a watch of the tree looks into.
        use DirKind::{Ignored, Messages, Tree};
        assert_eq!(nested.dir_kind("INBOX", 0), Tree);
        assert_eq!(nested.dir_kind("2019", 1), Tree);
        assert_eq!(nested.dir_kind("cur", 1), Messages);
        assert_eq!(nested.dir_kind("new", 2), Messages);
        assert_eq!(nested.dir_kind("tmp", 1), Ignored);
        assert_eq!(nested.dir_kind(".notmuch", 0), Ignored);
        assert_eq!(plus.dir_kind(".Lists.rust", 0), Tree);
        assert_eq!(plus.dir_kind("cur", 0), Messages);
        assert_eq!(plus.dir_kind("new", 1), Messages);
        assert_eq!(plus.dir_kind("tmp", 0), Ignored);
        assert_eq!(plus.dir_kind("courierimapkeywords", 1), Ignored);
        assert_eq!(plus.dir_kind(".", 0), Ignored);
    }

    #[test]
    fn only_empty_folders_are_removed_and_sub_folders_stay() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for layout in [MaildirLayout::Nested, MaildirLayout::MaildirPlusPlus] {
            let root = dir.path().join(format!("{layout:?}"));
            let mut store = MaildirStore::new(&MaildirConfig {
                keywords: Default::default(),
                path: root.clone(),
                layout,
            });
            let name = |s: &str| FolderName::new(s).unwrap();
            rt.block_on(async {
                for f in ["Lists", "Lists/rust", "Empty"] {
                    store.create_folder(&name(f)).await.unwrap();
                }
                let child = store.folder_dir(&name("Lists/rust")).unwrap();
                fs::write(child.join("new/1.host"), "Subject: kept\n\n").unwrap();
                let parent = store.folder_dir(&name("Lists")).unwrap();
                fs::write(parent.join("cur/2.host:2,S"), "Subject: mail\n\n").unwrap();
                fs::write(parent.join(format!("tmp/{TEMP_PREFIX}x")), "").unwrap();

                // Mail in it: refused, and nothing removed.
                let e = store.delete_folder(&name("Lists")).await.unwrap_err();
                assert!(matches!(e, StoreError::NotEmpty(_)), "{e}");
                assert!(store.folder_exists(&name("Lists")));
                fs::remove_file(parent.join("cur/2.host:2,S")).unwrap();

                // Empty: removed, the sub-folder with its mail stays.
                store.delete_folder(&name("Lists")).await.unwrap();
                store.delete_folder(&name("Empty")).await.unwrap();
                let left = store.list_folders().await.unwrap();
                assert_eq!(left, vec![name("Lists/rust")], "{layout:?}");
                assert!(child.join("new/1.host").is_file());
                // Gone already is fine; INBOX never goes.
                store.delete_folder(&name("Empty")).await.unwrap();
                assert!(store.delete_folder(&FolderName::inbox()).await.is_err());
            });
        }
    }

    #[test]
    fn a_folder_kept_under_its_plain_name_by_earlier_versions_is_unavailable_not_gone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mail");
        for sub in SUBDIRS {
            fs::create_dir_all(root.join("subscriptions").join(sub)).unwrap();
        }
        let mut store = MaildirStore::new(&MaildirConfig {
            keywords: Default::default(),
            path: root.clone(),
            layout: MaildirLayout::Nested,
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let name = FolderName::new("subscriptions").unwrap();
            assert!(store.list_folders().await.unwrap().is_empty());
            match store.absence(&name).await {
                Absence::Unavailable(why) => assert!(why.contains("mv "), "{why}"),
                Absence::Gone => panic!("taken for deleted"),
            }
            let gone = FolderName::new("Elsewhere").unwrap();
            assert_eq!(store.absence(&gone).await, Absence::Gone);
        });
    }

    #[test]
    fn symlinked_folders_are_listed_and_a_link_loop_ends() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mail");
        let elsewhere = dir.path().join("disk/archive");
        for sub in SUBDIRS {
            fs::create_dir_all(root.join("A").join(sub)).unwrap();
            fs::create_dir_all(elsewhere.join(sub)).unwrap();
        }
        std::os::unix::fs::symlink(&elsewhere, root.join("Archive")).unwrap();
        std::os::unix::fs::symlink(&root, root.join("A/loop")).unwrap();
        let mut store = MaildirStore::new(&MaildirConfig {
            keywords: Default::default(),
            path: root.clone(),
            layout: MaildirLayout::Nested,
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let listed = rt.block_on(store.list_folders()).unwrap();
        let names: Vec<&str> = listed.iter().map(FolderName::as_str).collect();
        assert!(
            names.contains(&"A") && names.contains(&"Archive"),
            "{names:?}"
        );
        assert!(names.len() < 10, "the loop was walked: {names:?}");
    }

    /// A Maildir tree with an empty INBOX, and a store on it.
    fn inbox_store() -> (tempfile::TempDir, PathBuf, FolderName, MaildirStore) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mail");
        let inbox_dir = root.join("INBOX");
        for sub in SUBDIRS {
            fs::create_dir_all(inbox_dir.join(sub)).unwrap();
        }
        let store = MaildirStore::new(&MaildirConfig {
            keywords: Default::default(),
            path: root,
            layout: MaildirLayout::Nested,
        });
        (dir, inbox_dir, FolderName::new("INBOX").unwrap(), store)
    }

    #[test]
    fn a_delivery_is_dated_and_never_replaces_a_file_of_the_same_name() {
        let (dir, inbox_dir, inbox, mut store) = inbox_store();
        fs::write(inbox_dir.join("cur/taken:2,S"), "Subject: there first\n\n").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            store.scan(&inbox).await.unwrap();
            let incoming = |name: &str| {
                let path = inbox_dir.join("tmp").join(name);
                fs::write(&path, "Subject: new\n\n").unwrap();
                Staged {
                    source_id: MsgId::new("1").unwrap(),
                    path,
                    temporary: true,
                    internal_date: Some(1_000_000_000),
                }
            };
            let taken = MsgId::new("taken").unwrap();
            store
                .deliver(&incoming("a"), &Flags::SEEN, Some(&taken))
                .await
                .unwrap();
            let e = store.flush().await.unwrap_err();
            assert!(e.to_string().contains("refusing to overwrite"), "{e}");
            assert_eq!(
                fs::read_to_string(inbox_dir.join("cur/taken:2,S")).unwrap(),
                "Subject: there first\n\n"
            );

            let fresh = MsgId::new("fresh").unwrap();
            store
                .deliver(&incoming("b"), &Flags::SEEN, Some(&fresh))
                .await
                .unwrap();
            store.flush().await.unwrap();
            let meta = fs::metadata(inbox_dir.join("cur/fresh:2,S")).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!(
                meta.mtime(),
                1_000_000_000,
                "the INTERNALDATE is the file's time"
            );
        });
        drop(dir);
    }

    /// Sets the times of a folder's `new/` and `cur/` back, as if its last change were old.
    fn age(folder_dir: &Path) {
        for sub in ["new", "cur"] {
            File::open(folder_dir.join(sub))
                .unwrap()
                .set_modified(SystemTime::now() - Duration::from_secs(60))
                .unwrap();
        }
    }

    #[test]
    fn times_on_a_filesystem_with_fine_times_stand_after_a_moment() {
        // tmpfs keeps nanosecond times wherever Linux runs; a temporary directory elsewhere
        // may not (an overlay in a container).
        let shm = Path::new("/dev/shm");
        let dir = if crate::disk::keeps_fine_times(shm) {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .unwrap();
        assert!(
            crate::disk::keeps_fine_times(dir.path()),
            "neither /dev/shm nor the temporary directory keeps fine times"
        );
        let folder = dir.path().join("INBOX");
        for sub in SUBDIRS {
            fs::create_dir_all(folder.join(sub)).unwrap();
        }
        fs::write(folder.join("new/1.a.host"), b"Subject: 1\n\nbody\n").unwrap();
        assert_eq!(dir_token(&folder), None, "a time just set is trusted");
        std::thread::sleep(RACY_FINE + Duration::from_millis(20));
        let token = dir_token(&folder).expect("times older than RACY_FINE are trusted");
        assert!(RACY_FINE < RACY / 10);
        // A change right after the token was taken shows once it can be trusted itself.
        fs::rename(folder.join("new/1.a.host"), folder.join("cur/1.a.host:2,S")).unwrap();
        assert_eq!(dir_token(&folder), None);
        std::thread::sleep(RACY_FINE + Duration::from_millis(20));
        let later = dir_token(&folder).expect("trusted again");
        assert_ne!(later, token);
    }

    #[test]
    fn what_a_sync_wrote_is_settled_by_name_and_any_later_change_shows() {
        let (dir, inbox_dir, inbox, mut store) = inbox_store();
        fs::write(inbox_dir.join("cur/m1:2,S"), "Subject: one\n\nbody\n").unwrap();
        fs::write(inbox_dir.join("new/m2"), "Subject: two\n\nbody\n").unwrap();
        fs::write(dir.path().join("incoming"), "Subject: three\n\nbody\n").unwrap();
        let id = |s: &str| MsgId::new(s).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            // A sync: list, write (a flag change, a delivery), settle.
            age(&inbox_dir);
            let listed = store.scan(&inbox).await.unwrap().token;
            assert!(listed.is_some(), "old directory times are a token");
            // Nothing written: the listing's token stands.
            assert_eq!(
                store
                    .settled_token(&inbox, listed.as_deref())
                    .await
                    .unwrap(),
                listed
            );
            store
                .set_flags(&[FlagUpdate {
                    id: id("m2"),
                    add: Flags::SEEN,
                    remove: Flags::empty(),
                }])
                .await
                .unwrap();
            let staged = Staged {
                source_id: id("7"),
                path: dir.path().join("incoming"),
                temporary: false,
                internal_date: None,
            };
            store.deliver(&staged, &Flags::empty(), None).await.unwrap();
            let settled = store
                .settled_token(&inbox, listed.as_deref())
                .await
                .unwrap()
                .expect("a token for what the sync left");
            assert_ne!(Some(&settled), listed.as_ref());
            assert!(NamesDigest::is_digest(&settled));
            assert_eq!(store.change_token(&inbox).await.unwrap(), None, "too young");

            // Right after the sync, the folder is as it left it, though its times are young.
            let again = store.unchanged_since(&inbox, &settled).await.unwrap();
            assert_eq!(again.as_ref(), Some(&settled));
            // Once its times are old, they stand for it.
            age(&inbox_dir);
            let clean = store
                .unchanged_since(&inbox, &settled)
                .await
                .unwrap()
                .expect("unchanged");
            let times = Recorded::parse(&clean).times.map(str::to_owned);
            assert_eq!(store.change_token(&inbox).await.unwrap(), times);
            assert_eq!(
                store.unchanged_since(&inbox, &clean).await.unwrap(),
                Some(clean.clone()),
                "while the times stay, the names are not read"
            );

            // Any change by a mail client right after the sync, even within the same tick of
            // the directory's clock, shows: a flag change, a move to cur/, a deletion, a delivery.
            let changes: [(&str, &dyn Fn()); 4] = [
                ("flag", &|| {
                    fs::rename(inbox_dir.join("cur/m1:2,S"), inbox_dir.join("cur/m1:2,FS")).unwrap()
                }),
                ("move", &|| {
                    let new = fs::read_dir(inbox_dir.join("new"))
                        .unwrap()
                        .next()
                        .unwrap()
                        .unwrap();
                    let name = new.file_name().into_string().unwrap();
                    fs::rename(new.path(), inbox_dir.join("cur").join(name + ":2,")).unwrap()
                }),
                ("delete", &|| {
                    fs::remove_file(inbox_dir.join("cur/m2:2,S")).unwrap()
                }),
                ("deliver", &|| {
                    fs::write(inbox_dir.join("new/m9"), "Subject: x\n\n").unwrap()
                }),
            ];
            for (what, change) in changes {
                store.scan(&inbox).await.unwrap();
                let settled = store
                    .settled_token(&inbox, None)
                    .await
                    .unwrap()
                    .expect("a token for what the sync left");
                change();
                assert_eq!(
                    store.unchanged_since(&inbox, &settled).await.unwrap(),
                    None,
                    "{what}"
                );
            }
        });
    }

    #[test]
    fn a_sync_of_some_messages_keeps_the_digest_of_the_whole_folder() {
        let (dir, inbox_dir, inbox, mut store) = inbox_store();
        for n in 0..20 {
            fs::write(inbox_dir.join(format!("cur/m{n}:2,S")), "Subject: x\n\n").unwrap();
        }
        fs::write(inbox_dir.join("new/fresh"), "Subject: y\n\n").unwrap();
        fs::write(dir.path().join("incoming"), "Subject: z\n\n").unwrap();
        let id = |s: &str| MsgId::new(s).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let listed = store.scan(&inbox).await.unwrap().token.expect("token");
            // A later sync looks only at three messages: it flags one, deletes one, leaves
            // one, and delivers a new one.
            let some = |ids: &[&str]| {
                ids.iter()
                    .map(|i| MessageMeta {
                        id: id(i),
                        flags: Flags::SEEN,
                    })
                    .collect::<Vec<_>>()
            };
            let legacy = "12.1700000000.5:13.1700000000.7".to_owned();
            assert!(
                store
                    .adopt_changes(&inbox, some(&["m1"]), Some(legacy))
                    .await
                    .unwrap()
                    .is_none(),
                "without a digest to keep, the folder is listed"
            );
            store
                .adopt_changes(&inbox, some(&["m1", "m2", "m3"]), Some(listed.clone()))
                .await
                .unwrap()
                .expect("adopted");
            store
                .set_flags(&[FlagUpdate {
                    id: id("m1"),
                    add: Flags::FLAGGED,
                    remove: Flags::empty(),
                }])
                .await
                .unwrap();
            store.delete(&[id("m2")]).await.unwrap();
            let staged = Staged {
                source_id: id("9"),
                path: dir.path().join("incoming"),
                temporary: false,
                internal_date: None,
            };
            store.deliver(&staged, &Flags::SEEN, None).await.unwrap();
            let settled = store
                .settled_token(&inbox, Some(&listed))
                .await
                .unwrap()
                .expect("settled");
            assert_eq!(
                Recorded::parse(&settled).digest,
                Some(names_digest(&inbox_dir).unwrap()),
                "the digest kept is the one of the names now"
            );
            assert!(
                store
                    .unchanged_since(&inbox, &settled)
                    .await
                    .unwrap()
                    .is_some()
            );
        });
    }

    #[test]
    fn an_index_that_learned_of_a_client_s_change_during_the_sync_is_not_settled() {
        let (_dir, inbox_dir, inbox, mut store) = inbox_store();
        fs::write(inbox_dir.join("cur/m1:2,S"), "Subject: one\n\nbody\n").unwrap();
        fs::write(inbox_dir.join("cur/m2:2,S"), "Subject: two\n\nbody\n").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            age(&inbox_dir);
            let listed = store.scan(&inbox).await.unwrap().token;
            assert!(listed.is_some());
            // The client flags m1 while the sync flags m2 and then m1: m1 is found again under
            // the client's name, and the index now holds a change the plan never saw.
            fs::rename(inbox_dir.join("cur/m1:2,S"), inbox_dir.join("cur/m1:2,FS")).unwrap();
            let update = |id: &str| FlagUpdate {
                id: MsgId::new(id).unwrap(),
                add: Flags::ANSWERED,
                remove: Flags::empty(),
            };
            store
                .set_flags(&[update("m2"), update("m1")])
                .await
                .unwrap();
            assert!(inbox_dir.join("cur/m1:2,FRS").exists());
            let settled = store
                .settled_token(&inbox, listed.as_deref())
                .await
                .unwrap();
            assert_eq!(
                settled, listed,
                "the listing's token, which the writes changed"
            );
        });
    }

    #[test]
    fn a_copy_in_another_folder_is_linked_where_it_is_even_renamed_and_never_a_symlink() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mail");
        for folder in ["Archive", "Work"] {
            for sub in SUBDIRS {
                fs::create_dir_all(root.join(folder).join(sub)).unwrap();
            }
        }
        let original = root.join("Archive/cur/m1:2,S");
        fs::write(&original, "Subject: one\n\nbody\n").unwrap();
        fs::write(dir.path().join("outside"), "Subject: no\n\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("Archive/cur/m2:2,S"))
            .unwrap();
        let mut store = MaildirStore::new(&MaildirConfig {
            keywords: Default::default(),
            path: root.clone(),
            layout: MaildirLayout::Nested,
        });
        let (archive, work) = (
            FolderName::new("Archive").unwrap(),
            FolderName::new("Work").unwrap(),
        );
        let id = |s: &str| MsgId::new(s).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            store.scan(&work).await.unwrap();
            let staging = store.staging_dir(&work).unwrap();
            let ino = |p: &Path| fs::metadata(p).unwrap().ino();
            // Where idlewild named it.
            let staged = store
                .stage_twin(&archive, &id("m1"), &Flags::SEEN, &staging)
                .await
                .unwrap()
                .expect("linked");
            assert_eq!(ino(&staged.path), ino(&original));
            assert!(staged.temporary && staged.path.starts_with(&staging));
            // Renamed by a mail client: found by reading the folder.
            let renamed = root.join("Archive/cur/m1:2,FS");
            fs::rename(&original, &renamed).unwrap();
            store.scan(&work).await.unwrap();
            let staged = store
                .stage_twin(&archive, &id("m1"), &Flags::SEEN, &staging)
                .await
                .unwrap()
                .expect("linked");
            assert_eq!(ino(&staged.path), ino(&renamed));
            // A symbolic link is not linked (link(2) would link the link), nor a file that is gone.
            for (gone, flags) in [("m2", Flags::SEEN), ("m3", Flags::empty())] {
                let staged = store
                    .stage_twin(&archive, &id(gone), &flags, &staging)
                    .await
                    .unwrap();
                assert!(staged.is_none(), "{gone}");
            }
        });
    }

    #[test]
    fn unique_names_are_valid_ids_and_differ() {
        let a = new_unique();
        let b = new_unique();
        assert_ne!(a, b);
        assert!(MsgId::new(a).is_some());
    }

    /// Fuzzing (issue 16): message file names as mail clients leave them.
    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        fn system_flags() -> impl Strategy<Value = Flags> {
            (0u8..64).prop_map(|bits| {
                [
                    Flags::SEEN,
                    Flags::ANSWERED,
                    Flags::FLAGGED,
                    Flags::DELETED,
                    Flags::DRAFT,
                    Flags::FORWARDED,
                ]
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .fold(Flags::empty(), |all, (_, f)| all.union(f))
            })
        }

        proptest! {
            #[test]
            fn any_file_name_reads_as_an_id_and_flags(
                name in "\\PC{0,80}|[A-Za-z0-9.]{1,20}(:[0-9],?[A-Za-z]{0,10}){0,3}",
                keywords in "([0-9]{1,2} [a-z$]{1,8}\n){0,5}",
            ) {
                let table = keywords::Table::parse(&keywords);
                let _ = flags_of(&name, &table);
                let unique = unique_part(&name);
                prop_assert!(name.starts_with(unique));
                prop_assert!(name.ends_with(info_letters(&name)));
                if let Some(id) = MsgId::new(unique) {
                    prop_assert_eq!(Located::new(Sub::Cur, &name).file_name(&id), name);
                }
            }

            #[test]
            fn a_name_made_for_flags_reads_back_as_them(
                unique in "[A-Za-z0-9._-]{1,40}",
                foreign in "[a-zA-Z0-9,]{0,8}",
                flags in system_flags(),
            ) {
                let table = keywords::Table::default();
                let name = file_name_with(&unique, &foreign, &flags, &table);
                prop_assert_eq!(unique_part(&name), unique.as_str());
                prop_assert_eq!(flags_of(&name, &table), flags);
            }
        }
    }
}
