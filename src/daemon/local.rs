//! Watching the account's Maildir with inotify: every change to a message file becomes a
//! wake-up for its folder. Changes are hints only — the sync that follows reads the Maildir
//! again — so a lost or coalesced event costs nothing but latency, and a full rescan at start,
//! on reconnect and every interval catches anything missed.
//!
//! Only what can change a folder is asked of the kernel: files arriving in, leaving or renamed
//! within `cur/` and `new/`, a file written there, and directories coming and going in the
//! folder tree. Reads are not: a mail client or notmuch opening 30,000 messages would fill the
//! kernel's queue (16,384 events by default) with nothing to act on, and an overflowing queue
//! costs a rescan of every folder. `tmp/` is not watched either (a delivery counts once it is
//! renamed into `new/`), nor are other programs' directories such as `.notmuch`.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::mpsc;

use super::Wake;
use crate::config::MaildirConfig;
use crate::store::maildir::{DirKind, MaildirStore};

/// Keeps the inotify watch alive; dropping it stops watching.
pub struct LocalWatcher {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LocalWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Asked of a folder's `cur/` and `new/`: messages coming, going and renamed (flag changes),
/// and one written in place.
const MESSAGES: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

/// Asked of the root and the folders' directories: only directories coming and going matter
/// there (files beside `cur/` and `new/` are not messages), so nothing is asked of writes.
const TREE: WatchMask = MESSAGES.difference(WatchMask::CLOSE_WRITE);

impl LocalWatcher {
    /// Watches the folder tree under the Maildir root (which must exist). Must be called
    /// within the tokio runtime.
    pub fn start(config: &MaildirConfig, wake: mpsc::Sender<Wake>) -> io::Result<Self> {
        let inotify = Inotify::init()?;
        let mapper = MaildirStore::new(config);
        let mut tree = Tree {
            watches: inotify.watches(),
            dirs: HashMap::new(),
            warned: false,
        };
        // The root itself must be watched; below it, what cannot be is said in the log.
        let root = tree
            .watches
            .add(&config.path, TREE)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", config.path.display())))?;
        tree.dirs.insert(root, (config.path.clone(), None));
        tree.add_below(&mapper, &config.path, 0, &mut HashSet::new());
        let stream = inotify.into_event_stream(vec![0u8; 64 * 1024])?;
        let task = tokio::spawn(watch(stream, tree, mapper, wake));
        Ok(Self { task })
    }
}

/// The watched directories: the path of each watch, and the depth below the root of the
/// directories inside it (`None` for the root's own entries: depth 0).
struct Tree {
    watches: Watches,
    dirs: HashMap<WatchDescriptor, (PathBuf, Option<usize>)>,
    /// Whether running out of watches was reported already.
    warned: bool,
}

impl Tree {
    fn depth_inside(&self, wd: &WatchDescriptor) -> Option<(PathBuf, usize)> {
        let (path, depth) = self.dirs.get(wd)?;
        Some((path.clone(), depth.map_or(0, |d| d + 1)))
    }

    /// Watches `dir`'s directories that belong to the folder tree (at `depth` below the root),
    /// and theirs. `visited`: the watches met in this walk.
    fn add_below(
        &mut self,
        mapper: &MaildirStore,
        dir: &Path,
        depth: usize,
        visited: &mut HashSet<WatchDescriptor>,
    ) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // A link to a directory is followed (a folder may live elsewhere); a plain
            // directory costs no stat.
            let is_dir = match entry.file_type() {
                Ok(t) if t.is_dir() => true,
                Ok(t) if t.is_symlink() => path.is_dir(),
                _ => false,
            };
            if !is_dir {
                continue;
            }
            if let Some(name) = entry.file_name().to_str() {
                self.add(mapper, &path, name, depth, visited);
            }
        }
    }

    /// Watches the directory `path`, named `name`, at `depth` below the root, if it belongs to
    /// the folder tree, and what lies below it. A directory watched already (moved here, say:
    /// a folder the mail client renamed) keeps its watch, which now goes by the new path, and
    /// so do the directories below it.
    fn add(
        &mut self,
        mapper: &MaildirStore,
        path: &Path,
        name: &str,
        depth: usize,
        visited: &mut HashSet<WatchDescriptor>,
    ) {
        let mask = match mapper.dir_kind(name, depth) {
            DirKind::Messages => MESSAGES,
            DirKind::Tree => TREE,
            DirKind::Ignored => return,
        };
        let wd = match self.watches.add(path, mask) {
            Ok(wd) => wd,
            Err(e) => {
                // ENOSPC: the user's inotify watches are used up.
                if e.raw_os_error() == Some(libc::ENOSPC) && !self.warned {
                    self.warned = true;
                    tracing::warn!(
                        path = %path.display(),
                        "out of inotify watches: changes in some folders are picked up only every interval; raise fs.inotify.max_user_watches (sysctl)"
                    );
                } else {
                    tracing::debug!(path = %path.display(), error = %e, "not watched");
                }
                return;
            }
        };
        // The same directory met again in one walk (through a link) has the same watch: a
        // loop.
        if !visited.insert(wd.clone()) {
            return;
        }
        self.dirs.insert(wd, (path.to_owned(), Some(depth)));
        if mask == TREE {
            self.add_below(mapper, path, depth + 1, visited);
        }
    }
}

async fn watch(
    mut stream: inotify::EventStream<Vec<u8>>,
    mut tree: Tree,
    mapper: MaildirStore,
    wake: mpsc::Sender<Wake>,
) {
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "the Maildir watch broke; local changes are picked up every interval");
                let _ = wake.try_send(Wake::LocalRescan);
                return;
            }
        };
        let wake_up = if event.mask.contains(EventMask::Q_OVERFLOW) {
            // Events were lost: look at everything.
            Some(Wake::LocalRescan)
        } else if event.mask.contains(EventMask::IGNORED) {
            // The directory is gone (or was unmounted); its removal was reported.
            tree.dirs.remove(&event.wd);
            None
        } else if event
            .mask
            .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF)
        {
            Some(Wake::LocalRescan)
        } else if event.mask.contains(EventMask::ISDIR) {
            // A directory came or went: perhaps a folder (or its cur/new). New ones are
            // watched at once; the rescan reads whatever arrived in them before that.
            if event
                .mask
                .intersects(EventMask::CREATE | EventMask::MOVED_TO)
                && let (Some(name), Some((dir, depth))) =
                    (event.name.as_ref(), tree.depth_inside(&event.wd))
                && let Some(text) = name.to_str()
            {
                tree.add(&mapper, &dir.join(name), text, depth, &mut HashSet::new());
            }
            Some(Wake::LocalRescan)
        } else {
            tree.dirs.get(&event.wd).and_then(|(dir, _)| {
                let path = match &event.name {
                    Some(name) => dir.join(name),
                    None => dir.clone(),
                };
                mapper.folder_of_path(&path).map(Wake::LocalChanged)
            })
        };
        if let Some(w) = wake_up {
            // A full channel means wake-ups are already queued; dropping one is harmless.
            let _ = wake.try_send(w);
        }
    }
}
