//! An in-memory store that behaves like an IMAP server (UIDs, UIDVALIDITY, UIDNEXT, APPENDUID),
//! for tests that must fail at an exact effect or inspect every step. Tests of the real protocol
//! use a real Dovecot; this exists because no real server can be stopped at effect N on demand.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{FlagUpdate, SizeAndDate, Staged, Store, StoreError};
use crate::model::{
    Fingerprint, Flags, FolderName, FolderSnapshot, MessageMeta, MsgId, Uid, UidValidity,
};

#[derive(Debug, Clone)]
pub struct MemoryMessage {
    /// The message in LF form.
    pub content: Vec<u8>,
    pub flags: Flags,
}

#[derive(Debug, Clone)]
pub struct MemoryFolder {
    pub uid_validity: u32,
    pub uid_next: u32,
    pub messages: BTreeMap<u32, MemoryMessage>,
}

impl MemoryFolder {
    fn new(uid_validity: u32) -> Self {
        Self {
            uid_validity,
            uid_next: 1,
            messages: BTreeMap::new(),
        }
    }

    pub fn append(&mut self, content: Vec<u8>, flags: Flags) -> u32 {
        let uid = self.uid_next;
        self.uid_next += 1;
        self.messages.insert(uid, MemoryMessage { content, flags });
        uid
    }
}

/// The shared contents; tests keep a handle to change and inspect the "server".
#[derive(Debug, Default)]
pub struct MemoryServer {
    pub folders: BTreeMap<FolderName, MemoryFolder>,
    /// Report APPENDUID (like a UIDPLUS server).
    pub no_appenduid: bool,
    /// APPENDs are received but not committed, as by the server session of a client killed
    /// during the command: `deliver` keeps them in `uncommitted` and fails as a lost
    /// connection.
    pub late_appends: bool,
    /// Appends received and not yet committed: folder, content, flags.
    pub uncommitted: Vec<(FolderName, Vec<u8>, Flags)>,
    /// Commit `uncommitted` when this many more listings have been answered (0: only when
    /// [`MemoryServer::commit_late`] is called).
    pub commit_after_listings: usize,
    /// How many times every folder was listed (`list_folders`), and one folder looked up
    /// alone (`look_up_folder`).
    pub folder_listings: usize,
    pub looked_up: usize,
}

impl MemoryServer {
    /// The killed client's server session finally commits its APPENDs.
    pub fn commit_late(&mut self) {
        for (folder, content, flags) in std::mem::take(&mut self.uncommitted) {
            if let Some(f) = self.folders.get_mut(&folder) {
                f.append(content, flags);
            }
        }
    }

    pub fn folder(&mut self, name: &str) -> &mut MemoryFolder {
        let name = FolderName::new(name).unwrap_or_else(FolderName::inbox);
        self.folders
            .entry(name)
            .or_insert_with(|| MemoryFolder::new(1))
    }
}

#[derive(Clone, Default)]
pub struct MemoryStore {
    server: Arc<Mutex<MemoryServer>>,
    selected: Option<FolderName>,
}

impl MemoryStore {
    pub fn new(server: Arc<Mutex<MemoryServer>>) -> Self {
        Self {
            server,
            selected: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemoryServer> {
        self.server.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn selected(&self) -> Result<FolderName, StoreError> {
        self.selected
            .clone()
            .ok_or_else(|| StoreError::Invalid("no folder selected".into()))
    }
}

fn uid_of(id: &MsgId) -> Result<u32, StoreError> {
    id.uid()
        .map(Uid::get)
        .ok_or_else(|| StoreError::Invalid(format!("{id} is not a UID")))
}

#[async_trait]
impl Store for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderName>, StoreError> {
        let mut server = self.lock();
        server.folder_listings += 1;
        Ok(server.folders.keys().cloned().collect())
    }

    async fn look_up_folder(&mut self, folder: &FolderName) -> Result<Option<bool>, StoreError> {
        let mut server = self.lock();
        server.looked_up += 1;
        Ok(Some(server.folders.contains_key(folder)))
    }

    async fn create_folder(&mut self, folder: &FolderName) -> Result<(), StoreError> {
        let mut server = self.lock();
        let next_validity = server.folders.len() as u32 + 100;
        server
            .folders
            .entry(folder.clone())
            .or_insert_with(|| MemoryFolder::new(next_validity));
        Ok(())
    }

    async fn delete_folder(&mut self, folder: &FolderName) -> Result<(), StoreError> {
        if *folder == FolderName::inbox() {
            return Err(StoreError::Invalid("INBOX is never removed".into()));
        }
        let mut server = self.lock();
        if server
            .folders
            .get(folder)
            .is_some_and(|f| !f.messages.is_empty())
        {
            return Err(StoreError::NotEmpty(folder.clone()));
        }
        server.folders.remove(folder);
        drop(server);
        if self.selected.as_ref() == Some(folder) {
            self.selected = None;
        }
        Ok(())
    }

    async fn scan(&mut self, folder: &FolderName) -> Result<FolderSnapshot, StoreError> {
        let mut server = self.lock();
        match server.commit_after_listings {
            0 => {}
            1 => {
                server.commit_after_listings = 0;
                server.commit_late();
            }
            n => server.commit_after_listings = n - 1,
        }
        let f = server
            .folders
            .get(folder)
            .ok_or_else(|| StoreError::NoSuchFolder(folder.clone()))?;
        let snapshot = FolderSnapshot {
            uid_validity: UidValidity::new(f.uid_validity),
            uid_next: Some(f.uid_next),
            highest_modseq: None,
            token: None,
            messages: f
                .messages
                .iter()
                .filter_map(|(uid, m)| {
                    Uid::new(*uid).map(|u| MessageMeta {
                        id: MsgId::from_uid(u),
                        flags: m.flags.clone(),
                    })
                })
                .collect(),
        };
        drop(server);
        self.selected = Some(folder.clone());
        Ok(snapshot)
    }

    fn staging_dir(&self, _folder: &FolderName) -> Option<PathBuf> {
        None
    }

    fn reserve_id(&mut self) -> Option<MsgId> {
        None
    }

    fn reserves_ids(&self) -> bool {
        false
    }

    async fn sizes_and_dates(&mut self, ids: &[MsgId]) -> Result<Vec<SizeAndDate>, StoreError> {
        let folder = self.selected()?;
        let server = self.lock();
        let mut out = Vec::new();
        if let Some(f) = server.folders.get(&folder) {
            for id in ids {
                if let Some(m) = f.messages.get(&uid_of(id)?) {
                    out.push(SizeAndDate {
                        id: id.clone(),
                        size: m.content.len() as u64,
                        date: None,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn stage(&mut self, ids: &[MsgId], staging: &Path) -> Result<Vec<Staged>, StoreError> {
        let folder = self.selected()?;
        let mut out = Vec::new();
        for id in ids {
            let uid = uid_of(id)?;
            let content = {
                let server = self.lock();
                server
                    .folders
                    .get(&folder)
                    .and_then(|f| f.messages.get(&uid))
                    .map(|m| m.content.clone())
            };
            let Some(content) = content else { continue };
            std::fs::create_dir_all(staging).map_err(|e| StoreError::io(staging, e))?;
            let path = staging.join(format!(
                "{}mem-{uid}-{:x}",
                super::maildir::TEMP_PREFIX,
                rand::random::<u64>()
            ));
            let mut file = std::fs::File::create(&path).map_err(|e| StoreError::io(&path, e))?;
            file.write_all(&content)
                .map_err(|e| StoreError::io(&path, e))?;
            out.push(Staged {
                source_id: id.clone(),
                path,
                temporary: true,
                internal_date: None,
            });
        }
        Ok(out)
    }

    async fn deliver(
        &mut self,
        message: &Staged,
        flags: &Flags,
        _reserved: Option<&MsgId>,
    ) -> Result<Option<MsgId>, StoreError> {
        let folder = self.selected()?;
        let content = std::fs::read(&message.path).map_err(|e| StoreError::io(&message.path, e))?;
        let mut server = self.lock();
        if server.late_appends {
            server.uncommitted.push((folder, content, flags.clone()));
            return Err(StoreError::ConnectionLost {
                host: "memory".into(),
                detail: "killed during the APPEND".into(),
            });
        }
        let no_appenduid = server.no_appenduid;
        let f = server
            .folders
            .get_mut(&folder)
            .ok_or_else(|| StoreError::NoSuchFolder(folder.clone()))?;
        let uid = f.append(content, flags.clone());
        Ok(if no_appenduid {
            None
        } else {
            Uid::new(uid).map(MsgId::from_uid)
        })
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn set_flags(&mut self, updates: &[FlagUpdate]) -> Result<(), StoreError> {
        let folder = self.selected()?;
        let mut server = self.lock();
        let f = server
            .folders
            .get_mut(&folder)
            .ok_or_else(|| StoreError::NoSuchFolder(folder.clone()))?;
        for u in updates {
            if let Some(m) = f.messages.get_mut(&uid_of(&u.id)?) {
                m.flags = m.flags.union(&u.add).minus(&u.remove);
            }
        }
        Ok(())
    }

    async fn delete(&mut self, ids: &[MsgId]) -> Result<(), StoreError> {
        let folder = self.selected()?;
        let mut server = self.lock();
        let f = server
            .folders
            .get_mut(&folder)
            .ok_or_else(|| StoreError::NoSuchFolder(folder.clone()))?;
        for id in ids {
            f.messages.remove(&uid_of(id)?);
        }
        Ok(())
    }

    async fn fingerprints(
        &mut self,
        ids: &[MsgId],
    ) -> Result<Vec<(MsgId, Fingerprint)>, StoreError> {
        let folder = self.selected()?;
        let server = self.lock();
        let mut out = Vec::new();
        if let Some(f) = server.folders.get(&folder) {
            for id in ids {
                if let Some(m) = f.messages.get(&uid_of(id)?) {
                    let fp = crate::message::fingerprint(&m.content[..])
                        .map_err(|e| StoreError::Invalid(e.to_string()))?;
                    out.push((id.clone(), fp));
                }
            }
        }
        Ok(out)
    }

    async fn close(&mut self) {}
}
