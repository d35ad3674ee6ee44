//! A side configured `readonly = true`, enforced once more below the planner: every call that
//! would change the store fails instead of reaching it. The planner never asks for such a
//! change; this makes a mistake there an error rather than a write.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::model::{Fingerprint, Flags, FolderName, FolderSnapshot, MessageMeta, MsgId};

use super::{Absence, FlagUpdate, Listing, Since, SizeAndDate, Staged, Store, StoreError};

pub struct ReadOnly<'a> {
    inner: &'a mut dyn Store,
}

impl<'a> ReadOnly<'a> {
    pub fn new(inner: &'a mut dyn Store) -> Self {
        Self { inner }
    }

    fn refuse(&self, what: &str) -> StoreError {
        StoreError::Invalid(format!(
            "{} is read-only (readonly = true), but idlewild was about to {what}; nothing was written (this is a bug, please report it)",
            self.inner.describe()
        ))
    }
}

#[async_trait]
impl Store for ReadOnly<'_> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderName>, StoreError> {
        self.inner.list_folders().await
    }

    async fn look_up_folder(&mut self, folder: &FolderName) -> Result<Option<bool>, StoreError> {
        self.inner.look_up_folder(folder).await
    }

    async fn absence(&mut self, folder: &FolderName) -> Absence {
        self.inner.absence(folder).await
    }

    async fn create_folder(&mut self, folder: &FolderName) -> Result<(), StoreError> {
        Err(self.refuse(&format!("create folder {folder}")))
    }

    async fn scan(&mut self, folder: &FolderName) -> Result<FolderSnapshot, StoreError> {
        self.inner.scan(folder).await
    }

    async fn delete_folder(&mut self, folder: &FolderName) -> Result<(), StoreError> {
        Err(self.refuse(&format!("remove folder {folder}")))
    }

    async fn change_token(&mut self, folder: &FolderName) -> Result<Option<String>, StoreError> {
        self.inner.change_token(folder).await
    }

    async fn unchanged_since(
        &mut self,
        folder: &FolderName,
        recorded: &str,
    ) -> Result<Option<String>, StoreError> {
        self.inner.unchanged_since(folder, recorded).await
    }

    async fn settled_token(
        &mut self,
        folder: &FolderName,
        listed: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        self.inner.settled_token(folder, listed).await
    }

    fn keyword_room(&self) -> crate::model::KeywordRoom {
        self.inner.keyword_room()
    }

    fn refused_keywords(&self) -> crate::model::Keywords {
        self.inner.refused_keywords()
    }

    fn message_count_hint(&self, folder: &FolderName) -> Option<u32> {
        self.inner.message_count_hint(folder)
    }

    async fn adopt_listing(
        &mut self,
        folder: &FolderName,
        messages: Vec<MessageMeta>,
        token: Option<String>,
    ) -> Result<Option<FolderSnapshot>, StoreError> {
        self.inner.adopt_listing(folder, messages, token).await
    }

    async fn adopt_changes(
        &mut self,
        folder: &FolderName,
        messages: Vec<MessageMeta>,
        token: Option<String>,
    ) -> Result<Option<FolderSnapshot>, StoreError> {
        self.inner.adopt_changes(folder, messages, token).await
    }

    async fn scan_since(
        &mut self,
        folder: &FolderName,
        since: Option<Since>,
    ) -> Result<Listing, StoreError> {
        self.inner.scan_since(folder, since).await
    }

    async fn prefetch(&mut self, ids: &[MsgId]) -> Result<(), StoreError> {
        self.inner.prefetch(ids).await
    }

    fn staging_dir(&self, folder: &FolderName) -> Option<PathBuf> {
        self.inner.staging_dir(folder)
    }

    fn reserve_id(&mut self) -> Option<MsgId> {
        self.inner.reserve_id()
    }

    async fn present_ids(&mut self) -> Result<Option<Vec<MsgId>>, StoreError> {
        self.inner.present_ids().await
    }

    async fn fetch_global_ids(&mut self, ids: &[MsgId]) -> Result<Vec<(MsgId, u64)>, StoreError> {
        self.inner.fetch_global_ids(ids).await
    }

    fn left_out_by_default(&self) -> Vec<(FolderName, String)> {
        self.inner.left_out_by_default()
    }

    fn global_id(&self, id: &MsgId) -> Option<u64> {
        self.inner.global_id(id)
    }

    fn global_archive(&self) -> Option<FolderName> {
        self.inner.global_archive()
    }

    fn reserves_ids(&self) -> bool {
        self.inner.reserves_ids()
    }

    async fn sizes_and_dates(&mut self, ids: &[MsgId]) -> Result<Vec<SizeAndDate>, StoreError> {
        self.inner.sizes_and_dates(ids).await
    }

    async fn stage(&mut self, ids: &[MsgId], staging: &Path) -> Result<Vec<Staged>, StoreError> {
        self.inner.stage(ids, staging).await
    }

    async fn deliver(
        &mut self,
        message: &Staged,
        _flags: &Flags,
        _reserved: Option<&MsgId>,
    ) -> Result<Option<MsgId>, StoreError> {
        Err(self.refuse(&format!("store a copy of message {}", message.source_id)))
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        self.inner.flush().await
    }

    async fn set_flags(&mut self, updates: &[FlagUpdate]) -> Result<(), StoreError> {
        Err(self.refuse(&format!("change the flags of {} messages", updates.len())))
    }

    async fn delete(&mut self, ids: &[MsgId]) -> Result<(), StoreError> {
        Err(self.refuse(&format!("delete {} messages", ids.len())))
    }

    async fn fingerprints(
        &mut self,
        ids: &[MsgId],
    ) -> Result<Vec<(MsgId, Fingerprint)>, StoreError> {
        self.inner.fingerprints(ids).await
    }

    async fn close(&mut self) {
        self.inner.close().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::store::memory::{MemoryServer, MemoryStore};

    #[tokio::test]
    async fn writes_fail_and_reads_pass() {
        let server = Arc::new(Mutex::new(MemoryServer::default()));
        server
            .lock()
            .unwrap()
            .folder("INBOX")
            .append(b"Subject: x\n\nbody\n".to_vec(), Flags::empty());
        let mut inner = MemoryStore::new(server.clone());
        let mut store = ReadOnly::new(&mut inner);
        let snap = store.scan(&FolderName::inbox()).await.unwrap();
        assert_eq!(snap.messages.len(), 1);
        let id = snap.messages[0].id.clone();
        assert!(store.delete(std::slice::from_ref(&id)).await.is_err());
        let update = FlagUpdate {
            id: id.clone(),
            add: Flags::SEEN,
            remove: Flags::empty(),
        };
        assert!(store.set_flags(&[update]).await.is_err());
        assert!(
            store
                .create_folder(&FolderName::new("New").unwrap())
                .await
                .is_err()
        );
        let m = &server.lock().unwrap().folders[&FolderName::inbox()].messages;
        assert_eq!(m.len(), 1);
        assert_eq!(m.values().next().unwrap().flags, Flags::empty());
    }
}
