//! Watching the account's Maildir with inotify: every change to a message file becomes a
//! wake-up for its folder. Changes are hints only — the sync that follows reads the Maildir
//! again — so a lost or coalesced event costs nothing but latency, and a full rescan at start,
//! on reconnect and every interval catches anything missed.

use std::path::Path;

use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Wake;
use crate::config::MaildirConfig;
use crate::store::maildir::MaildirStore;

/// Keeps the inotify watch alive; dropping it stops watching.
pub struct LocalWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl LocalWatcher {
    /// Watches the whole tree under the Maildir root (created first if missing, so a first sync
    /// that creates it is watched too).
    pub fn start(config: &MaildirConfig, wake: mpsc::Sender<Wake>) -> notify::Result<Self> {
        let mapper = MaildirStore::new(config);
        let handler = move |event: notify::Result<Event>| {
            let wake_up = match event {
                Ok(event) => classify(&mapper, &event),
                // The kernel queue overflowed or the watch broke: look at everything.
                Err(_) => Some(Wake::LocalRescan),
            };
            if let Some(w) = wake_up {
                // A full channel means wake-ups are already queued; dropping one is harmless.
                let _ = wake.try_send(w);
            }
        };
        let mut watcher = notify::recommended_watcher(handler)?;
        watcher.watch(&config.path, RecursiveMode::Recursive)?;
        Ok(Self { _watcher: watcher })
    }
}

fn classify(mapper: &MaildirStore, event: &Event) -> Option<Wake> {
    match event.kind {
        EventKind::Access(_) => None,
        // A new directory may be a new folder (or its cur/new): rescan the folder list.
        EventKind::Create(notify::event::CreateKind::Folder) => Some(Wake::LocalRescan),
        EventKind::Remove(notify::event::RemoveKind::Folder) => Some(Wake::LocalRescan),
        _ => event
            .paths
            .iter()
            .find_map(|p| folder_of(mapper, p))
            .map(Wake::LocalChanged),
    }
}

fn folder_of(mapper: &MaildirStore, path: &Path) -> Option<crate::model::FolderName> {
    mapper.folder_of_path(path)
}
