//! A `Store` that fails its n-th effect, counted across both sides, before or after the
//! effect takes place: the fault injection of `engine_faults.rs` and `imap_to_imap.rs`.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use idlewild::engine::{FolderReport, NoObserver, SyncError, SyncOptions, sync_folders};
use idlewild::model::{Fingerprint, Flags, FolderName, FolderSnapshot, MsgId};
use idlewild::state::StateDb;
use idlewild::store::{Absence, FlagUpdate, SizeAndDate, Staged, Store, StoreError};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum When {
    Before,
    After,
}

/// Counts effects across both sides and fails the `fail_at`-th.
pub struct Faulty<S> {
    pub inner: S,
    pub counter: Arc<AtomicUsize>,
    pub fail_at: usize,
    pub when: When,
}

/// What [`sync_with_fault`] returns: whether the fault was reached, and what the sync returned.
pub type Outcome = (bool, Result<Vec<FolderReport>, SyncError>);

/// Whether the fault was reached; a run that did not reach it must have synced every folder
/// without an error or a refusal.
pub fn fault_reached((reached, result): Outcome) -> bool {
    if !reached {
        let reports = result.expect("a run without a fault succeeds");
        for r in reports {
            assert!(r.error.is_none() && r.refused.is_none(), "{r:?}");
        }
    }
    reached
}

/// Whether a run without an injected fault ended without an error.
pub fn ended_clean((_, result): Outcome) -> bool {
    match result {
        Ok(reports) => reports.iter().all(|r| r.error.is_none()),
        Err(_) => false,
    }
}

/// One sync of `remote` and `local`, each wrapped to fail at the `fail_at`-th effect of the
/// two together (0: none), with the state at `state`: whether the fault was reached, and what
/// the sync returned. On a paused clock: recovery's waits for a late commit (a second each)
/// pass at once; the engine sets no timeouts for the stores here to trip.
pub fn sync_with_fault<R: Store, L: Store>(
    remote: R,
    local: L,
    state: &Path,
    options: &SyncOptions,
    fail_at: usize,
    when: When,
) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let counter = Arc::new(AtomicUsize::new(0));
        let mut remote = Faulty {
            inner: remote,
            counter: counter.clone(),
            fail_at,
            when,
        };
        let mut local = Faulty {
            inner: local,
            counter: counter.clone(),
            fail_at,
            when,
        };
        let mut state = StateDb::open(state).expect("state");
        let result = sync_folders(
            &mut remote,
            &mut local,
            &mut state,
            options,
            &mut NoObserver,
            None,
        )
        .await;
        let reached = fail_at > 0 && counter.load(Ordering::SeqCst) >= fail_at;
        (reached, result)
    })
}

impl<S> Faulty<S> {
    fn tick(&self) -> bool {
        self.counter.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at
    }
}

fn injected() -> StoreError {
    StoreError::ConnectionLost {
        host: "fault".into(),
        detail: "injected".into(),
    }
}

macro_rules! effect {
    ($self:ident, $call:expr) => {{
        let fail = $self.tick();
        if fail && $self.when == When::Before {
            return Err(injected());
        }
        let result = $call;
        if fail {
            return Err(injected());
        }
        result
    }};
}

#[async_trait]
impl<S: Store> Store for Faulty<S> {
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
        effect!(self, self.inner.create_folder(folder).await)
    }
    async fn delete_folder(&mut self, folder: &FolderName) -> Result<(), StoreError> {
        effect!(self, self.inner.delete_folder(folder).await)
    }
    async fn scan(&mut self, folder: &FolderName) -> Result<FolderSnapshot, StoreError> {
        self.inner.scan(folder).await
    }
    fn staging_dir(&self, folder: &FolderName) -> Option<std::path::PathBuf> {
        self.inner.staging_dir(folder)
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
    async fn stage_twin(
        &mut self,
        folder: &FolderName,
        id: &MsgId,
        flags: &Flags,
        staging: &Path,
    ) -> Result<Option<Staged>, StoreError> {
        self.inner.stage_twin(folder, id, flags, staging).await
    }
    fn reserve_id(&mut self) -> Option<MsgId> {
        self.inner.reserve_id()
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
        flags: &Flags,
        reserved: Option<&MsgId>,
    ) -> Result<Option<MsgId>, StoreError> {
        effect!(self, self.inner.deliver(message, flags, reserved).await)
    }
    async fn flush(&mut self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
    async fn set_flags(&mut self, updates: &[FlagUpdate]) -> Result<(), StoreError> {
        effect!(self, self.inner.set_flags(updates).await)
    }
    async fn delete(&mut self, ids: &[MsgId]) -> Result<(), StoreError> {
        effect!(self, self.inner.delete(ids).await)
    }
    async fn fingerprints(
        &mut self,
        ids: &[MsgId],
    ) -> Result<Vec<(MsgId, Fingerprint)>, StoreError> {
        self.inner.fingerprints(ids).await
    }
    async fn close(&mut self) {}
}
