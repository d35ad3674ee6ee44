//! The state database: one SQLite file per account remembering, per folder pair, the server's
//! UIDVALIDITY and, per message pair, the server UID, the Maildir id and the flags both had when
//! they were last in step. All SQL of the program lives here.
//!
//! Crash safety rests on the order of writes, made by the engine: an intent row is committed
//! before each copy (`pending` set), the copy is made, then the row is confirmed. Every write
//! method is one transaction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::model::{Fingerprint, Flags, FolderName, Keyword, Keywords, MsgId, UidValidity};
use crate::plan::{Record, RecordId, Side};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}", sqlite_message(path, source))]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "state database {path} holds a value idlewild cannot read ({detail}); it may come from a newer version"
    )]
    Corrupt { path: PathBuf, detail: String },
}

impl StateError {
    /// When the database could not grow because its disk (or the user's quota) is full: the
    /// directory it is in.
    pub fn full_disk(&self) -> Option<PathBuf> {
        match self {
            StateError::Sqlite { path, source } if is_full(source) => {
                path.parent().map(Path::to_path_buf)
            }
            StateError::Sqlite { .. } | StateError::Corrupt { .. } => None,
        }
    }
}

fn is_full(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull))
}

fn sqlite_message(path: &Path, source: &rusqlite::Error) -> String {
    if is_full(source) {
        let dir = path.parent().unwrap_or(path);
        format!(
            "state database {}: no space left on the filesystem of {} (mounted on {}): free space there, then run `idlewild sync` (the daemon retries by itself once there is room); nothing was lost",
            path.display(),
            dir.display(),
            crate::disk::mount_point(dir).display()
        )
    } else {
        format!("state database {}: {source}", path.display())
    }
}

/// The schema, one entry per version; applied in order inside a transaction, so a crash during
/// a migration leaves the previous version intact.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE folders (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    uid_validity INTEGER,
    uid_next INTEGER,
    highest_modseq INTEGER
) STRICT;
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    folder INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    remote TEXT,
    local TEXT,
    flags INTEGER NOT NULL DEFAULT 0,
    -- NULL once both copies exist; 'download' or 'upload' while a copy is in flight.
    pending TEXT CHECK (pending IN ('download', 'upload')),
    -- For pending uploads: the server's UIDNEXT before the APPEND, and the content's identity,
    -- to find the copy again after a crash without uploading it twice.
    upload_uid_next INTEGER,
    upload_size INTEGER,
    upload_sha256 BLOB
) STRICT;
CREATE UNIQUE INDEX messages_remote ON messages(folder, remote) WHERE remote IS NOT NULL;
CREATE UNIQUE INDEX messages_local ON messages(folder, local) WHERE local IS NOT NULL;
"#,
    r#"
-- What each side looked like when the folder was last found in step, as an opaque token from
-- the store (server STATUS with HIGHESTMODSEQ; Maildir directory times). Equal tokens on both
-- sides mean the folder can be skipped without listing it.
ALTER TABLE folders ADD COLUMN remote_token TEXT;
ALTER TABLE folders ADD COLUMN local_token TEXT;
-- Finding interrupted copies must not cost a scan of every message of every folder.
CREATE INDEX messages_pending ON messages(folder) WHERE pending IS NOT NULL;
-- Folders are keyed by the server's name; this is the local name the folder was last synced
-- under (NULL: the same as `name`, as for every folder synced before folders could be renamed).
ALTER TABLE folders ADD COLUMN local_name TEXT;
-- The survivor of a deletion not carried over (read-only side, sync_deletes = false): the side
-- the message was deleted on; that side's id is NULL. See plan::Record::deleted_on.
ALTER TABLE messages ADD COLUMN deleted_on TEXT CHECK (deleted_on IN ('remote', 'local'));
-- Where a pending 'upload' goes: to the server, or (IMAP <-> IMAP) to the local side, whose
-- ids cannot be reserved either. For 'local', `remote` holds the source and `local` is NULL.
ALTER TABLE messages ADD COLUMN upload_to TEXT NOT NULL DEFAULT 'remote'
    CHECK (upload_to IN ('remote', 'local'));
-- The local side's UIDVALIDITY, for a local side that has one (an IMAP store).
ALTER TABLE folders ADD COLUMN local_uid_validity INTEGER;
-- Messages max_age or max_size left out, with the limits that did, so they are not examined
-- again at every run; a change of either limit examines them again.
CREATE TABLE skipped (
    folder INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    side TEXT NOT NULL CHECK (side IN ('remote', 'local')),
    id TEXT NOT NULL,
    size INTEGER NOT NULL,
    date INTEGER,
    max_age INTEGER,
    max_size INTEGER,
    PRIMARY KEY (folder, side, id)
) STRICT;
"#,
    r#"
-- Every sync reads one folder's messages (in id order: the rowid follows the folder in the
-- index); without this index that read scanned the messages of every folder.
CREATE INDEX messages_folder ON messages(folder);
"#,
    r#"
-- The keywords of `flags` (the base of the three-way merge), in the server's spelling,
-- separated by spaces; '' for none. Pairs recorded before keywords were synced have none.
ALTER TABLE messages ADD COLUMN keywords TEXT NOT NULL DEFAULT '';
"#,
    r#"
-- Keywords a side refused to store in a folder (a server's limit on keyword names, say), by the
-- server's spelling: the records keep them, and that side's listing is never read as having
-- removed them.
CREATE TABLE refused_keywords (
    folder INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    side TEXT NOT NULL CHECK (side IN ('remote', 'local')),
    keyword TEXT NOT NULL,
    PRIMARY KEY (folder, side, keyword)
) STRICT;
"#,
    r#"
-- The message's id across all folders of the account where the server has one (Gmail's
-- X-GM-MSGID, an unsigned 64-bit number stored with the same bits as a signed one): a message
-- already copied into one folder is linked into the others, not downloaded again.
ALTER TABLE messages ADD COLUMN global_id INTEGER;
CREATE INDEX messages_global ON messages(global_id) WHERE global_id IS NOT NULL;
"#,
    r#"
-- What shaped the folder's last complete sync besides its messages (read-only sides,
-- sync_deletes, limits, keyword rules), as a fingerprint: a folder is skipped, or its local
-- side taken from the state, only under the settings its tokens were recorded with.
ALTER TABLE folders ADD COLUMN settings TEXT;
"#,
    r#"
-- Whether a folder holds anything but settled pairs (a copy in flight, a survivor, a message
-- on one side only), asked without reading its messages: a sync of the server's changes only
-- plans the messages they touch, which takes a folder of pairs and nothing else.
CREATE INDEX messages_unsettled ON messages(folder)
    WHERE remote IS NULL OR local IS NULL OR deleted_on IS NOT NULL OR pending IS NOT NULL;
"#,
];

/// A folder's settled message pairs, the read every sync of a folder makes.
const RECORDS: &str = "SELECT id, remote, local, flags, deleted_on, keywords FROM messages WHERE folder = ?1 AND pending IS NULL ORDER BY id";

/// One confirmed record by its server id, through the `messages_remote` index.
const RECORD_BY_REMOTE: &str = "SELECT id, remote, local, flags, deleted_on, keywords FROM messages WHERE folder = ?1 AND remote = ?2 AND pending IS NULL";

/// Whether a folder holds only settled pairs and nothing skipped, through the partial
/// `messages_unsettled` index (its condition must appear here as it is written there).
const ONLY_PAIRS: &str = "SELECT NOT EXISTS (SELECT 1 FROM messages WHERE folder = ?1 AND (remote IS NULL OR local IS NULL OR deleted_on IS NOT NULL OR pending IS NOT NULL))
    AND NOT EXISTS (SELECT 1 FROM skipped WHERE folder = ?1)";

/// A row of [`RECORDS`] or [`RECORD_BY_REMOTE`], before its values are checked.
type RecordRow = (
    i64,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    String,
);

fn record_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

/// The `keywords` column of `flags`: the keywords, space separated (they hold no spaces).
fn keyword_text(flags: &Flags) -> String {
    flags
        .keywords()
        .iter()
        .map(Keyword::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A global id as SQLite stores it: its 64 bits as a signed integer.
fn global_sql(global: u64) -> i64 {
    i64::from_ne_bytes(global.to_ne_bytes())
}

/// Applies the migrations after `version`, each in its own transaction.
fn migrate(conn: &mut Connection, version: usize) -> rusqlite::Result<()> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// A folder's message count, for status displays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FolderCount {
    pub total: u32,
    pub unseen: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderState {
    pub id: i64,
    pub name: FolderName,
    pub uid_validity: Option<UidValidity>,
    pub uid_next: Option<u32>,
    pub highest_modseq: Option<u64>,
    /// The stores' change tokens when the folder was last in step (see [`StateDb::set_folder_status`]).
    pub remote_token: Option<String>,
    pub local_token: Option<String>,
    /// The settings fingerprint the tokens were recorded under (`SyncOptions::settings`).
    pub settings: Option<String>,
}

/// Where a folder stood after a complete sync: the server's numbering and the change tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderStatus {
    pub uid_validity: Option<UidValidity>,
    pub uid_next: Option<u32>,
    pub highest_modseq: Option<u64>,
    pub remote_token: Option<String>,
    pub local_token: Option<String>,
    pub settings: Option<String>,
}

/// A copy that was started but not confirmed when the last run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Download {
        record: RecordId,
        remote: MsgId,
        local: MsgId,
        flags: Flags,
    },
    Upload {
        record: RecordId,
        local: MsgId,
        flags: Flags,
        uid_next: u32,
        size: u64,
        sha256: [u8; 32],
    },
    /// A copy into a local side that cannot reserve ids (IMAP): found again by content among
    /// the local side's new messages, as uploads are on the server.
    CopyToLocal {
        record: RecordId,
        remote: MsgId,
        flags: Flags,
        uid_next: u32,
        size: u64,
        sha256: [u8; 32],
    },
}

/// A message `max_age` or `max_size` kept from being copied, and the limits that did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The side the message is on (it was not copied to the other).
    pub side: Side,
    pub id: MsgId,
    pub size: u64,
    /// Seconds since the epoch, when known.
    pub date: Option<i64>,
    pub max_age: Option<u32>,
    pub max_size: Option<u64>,
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Remote => "remote",
        Side::Local => "local",
    }
}

pub struct StateDb {
    conn: Connection,
    path: PathBuf,
}

impl StateDb {
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let err = |source| StateError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let io_err = |e| StateError::Sqlite {
            path: path.to_owned(),
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private::create_state_dir(dir).map_err(io_err)?;
        }
        // The database names folders and messages: it is made 0600 before SQLite opens it, and
        // SQLite gives its -wal and -shm files the database's mode. Those of an older version
        // (0644) are tightened.
        crate::private::open_file(path, false).map_err(io_err)?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            crate::private::restrict_path(Path::new(&side)).map_err(io_err)?;
        }
        let mut conn = Connection::open(path).map_err(err)?;
        // WAL with FULL sync: each commit is durable before the next effect is made.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if version > MIGRATIONS.len() {
            return Err(StateError::Corrupt {
                path: path.to_owned(),
                detail: format!("schema version {version}"),
            });
        }
        migrate(&mut conn, version).map_err(err)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// Opens a state database only to read it, changing nothing (not even its schema): for the
    /// mailbox list, which reads accounts another process may be syncing.
    pub fn open_read_only(path: &Path) -> Result<Self, StateError> {
        let err = |source| StateError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if version == 0 || version > MIGRATIONS.len() {
            return Err(StateError::Corrupt {
                path: path.to_owned(),
                detail: format!("schema version {version}"),
            });
        }
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// A state that lives only as long as the process (dry runs without a state file).
    pub fn open_in_memory() -> Result<Self, StateError> {
        let path = PathBuf::from(":memory:");
        let err = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(err)?;
        migrate(&mut conn, 0).map_err(err)?;
        Ok(Self { conn, path })
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, detail: impl Into<String>) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }

    pub fn folders(&self) -> Result<Vec<FolderState>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, name, uid_validity, uid_next, highest_modseq, remote_token, local_token,
                        settings
                 FROM folders ORDER BY name",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, uv, next, modseq, remote_token, local_token, settings) =
                row.map_err(|e| self.err(e))?;
            let name = FolderName::new(&name)
                .ok_or_else(|| self.corrupt(format!("folder name {name:?}")))?;
            out.push(FolderState {
                id,
                name,
                uid_validity: uv
                    .and_then(|v| u32::try_from(v).ok())
                    .and_then(UidValidity::new),
                uid_next: next.and_then(|v| u32::try_from(v).ok()),
                highest_modseq: modseq.and_then(|v| u64::try_from(v).ok()),
                remote_token,
                local_token,
                settings,
            });
        }
        Ok(out)
    }

    /// The local name each folder was last synced under, by server name.
    pub fn folder_local_names(&self) -> Result<BTreeMap<FolderName, FolderName>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, coalesce(local_name, name) FROM folders")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (name, local) = row.map_err(|e| self.err(e))?;
            let parse = |n: &str| {
                FolderName::new(n).ok_or_else(|| self.corrupt(format!("folder name {n:?}")))
            };
            out.insert(parse(&name)?, parse(&local)?);
        }
        Ok(out)
    }

    /// Records the local name a folder is synced under (the folder is added when new).
    pub fn set_folder_local_name(
        &mut self,
        name: &FolderName,
        local: &FolderName,
    ) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO folders (name, local_name) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET local_name = excluded.local_name",
                params![name.as_str(), local.as_str()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn folder(&self, name: &FolderName) -> Result<Option<FolderState>, StateError> {
        Ok(self.folders()?.into_iter().find(|f| &f.name == name))
    }

    pub fn ensure_folder(&mut self, name: &FolderName) -> Result<FolderState, StateError> {
        self.conn
            .execute(
                "INSERT INTO folders (name) VALUES (?1) ON CONFLICT(name) DO NOTHING",
                params![name.as_str()],
            )
            .map_err(|e| self.err(e))?;
        self.folder(name)?
            .ok_or_else(|| self.corrupt(format!("folder {name} vanished after insert")))
    }

    /// Records where a folder stands. Tokens are only ever written together with the numbering
    /// they belong to, and only after a complete sync; anything less writes `None` tokens, so
    /// the next run lists the folder again.
    pub fn set_folder_status(
        &mut self,
        folder: i64,
        status: &FolderStatus,
    ) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE folders SET uid_validity = ?2, uid_next = ?3, highest_modseq = ?4,
                 remote_token = ?5, local_token = ?6, settings = ?7 WHERE id = ?1",
                params![
                    folder,
                    status.uid_validity.map(|v| v.get()),
                    status.uid_next,
                    status.highest_modseq.and_then(|m| i64::try_from(m).ok()),
                    status.remote_token,
                    status.local_token,
                    status.settings,
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Whether a copy into or out of this folder was started and not confirmed.
    pub fn has_pending(&self, folder: i64) -> Result<bool, StateError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE folder = ?1 AND pending IS NOT NULL)",
                params![folder],
                |r| r.get::<_, bool>(0),
            )
            .map_err(|e| self.err(e))
    }

    pub fn forget_folder(&mut self, folder: i64) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM folders WHERE id = ?1", params![folder])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// How many message pairs the state knows in a folder, pending ones included.
    pub fn count(&self, folder: i64) -> Result<usize, StateError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM messages WHERE folder = ?1",
                params![folder],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(|e| self.err(e))
    }

    /// Messages in step per folder, and how many of them lack \Seen; messages marked
    /// \Deleted are not counted (a mail client hides them too).
    pub fn message_counts(&self) -> Result<BTreeMap<String, FolderCount>, StateError> {
        let seen = i64::from(Flags::SEEN.bits());
        let deleted = i64::from(Flags::DELETED.bits());
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT f.name, count(m.id), coalesce(sum(m.flags & ?1 = 0), 0)
                 FROM folders f LEFT JOIN messages m
                   ON m.folder = f.id AND m.pending IS NULL AND m.flags & ?2 = 0
                 GROUP BY f.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![seen, deleted], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    FolderCount {
                        total: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX),
                        unseen: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(u32::MAX),
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// [`StateDb::message_counts`] of one folder (by server name), reading only its messages;
    /// `None` when the state does not know it.
    pub fn message_count(&self, name: &FolderName) -> Result<Option<FolderCount>, StateError> {
        let seen = i64::from(Flags::SEEN.bits());
        let deleted = i64::from(Flags::DELETED.bits());
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT count(m.id), coalesce(sum(m.flags & ?1 = 0), 0)
                 FROM folders f LEFT JOIN messages m
                   ON m.folder = f.id AND m.pending IS NULL AND m.flags & ?2 = 0
                 WHERE f.name = ?3
                 GROUP BY f.id",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_row(params![seen, deleted, name.as_str()], |r| {
            Ok(FolderCount {
                total: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(u32::MAX),
                unseen: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX),
            })
        })
        .optional()
        .map_err(|e| self.err(e))
    }

    /// The confirmed message pairs of a folder.
    pub fn records(&self, folder: i64) -> Result<Vec<Record>, StateError> {
        let mut stmt = self.conn.prepare(RECORDS).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![folder], record_row)
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.record(row.map_err(|e| self.err(e))?)?);
        }
        Ok(out)
    }

    /// Hands every confirmed record of a folder to `visit`, one at a time: a folder is gone
    /// through without holding all its records at once.
    pub fn for_each_record(
        &self,
        folder: i64,
        mut visit: impl FnMut(Record),
    ) -> Result<(), StateError> {
        let mut stmt = self.conn.prepare_cached(RECORDS).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![folder], record_row)
            .map_err(|e| self.err(e))?;
        for row in rows {
            visit(self.record(row.map_err(|e| self.err(e))?)?);
        }
        Ok(())
    }

    /// The confirmed records of a folder with these server ids (those it has), each found
    /// through the index: the cost is the ids', not the folder's.
    pub fn records_with_remote(
        &self,
        folder: i64,
        ids: &[MsgId],
    ) -> Result<Vec<Record>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(RECORD_BY_REMOTE)
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for id in ids {
            let row = stmt
                .query_row(params![folder, id.as_str()], record_row)
                .optional()
                .map_err(|e| self.err(e))?;
            if let Some(row) = row {
                out.push(self.record(row)?);
            }
        }
        Ok(out)
    }

    /// Whether the folder's records are settled pairs only (nothing in flight, no survivor, no
    /// message on one side only) and nothing was skipped, without reading them.
    pub fn only_pairs(&self, folder: i64) -> Result<bool, StateError> {
        self.conn
            .query_row(ONLY_PAIRS, params![folder], |r| r.get::<_, bool>(0))
            .map_err(|e| self.err(e))
    }

    /// How many records of the folder have a server copy.
    pub fn remote_count(&self, folder: i64) -> Result<usize, StateError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM messages WHERE folder = ?1 AND remote IS NOT NULL",
                params![folder],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(|e| self.err(e))
    }

    fn record(&self, row: RecordRow) -> Result<Record, StateError> {
        let (id, remote, local, flags, deleted_on, keywords) = row;
        Ok(Record {
            id: RecordId(id),
            remote: self.msg_id(remote)?,
            local: self.msg_id(local)?,
            flags: self.flags(flags, &keywords)?,
            deleted_on: self.side(deleted_on)?,
        })
    }

    fn msg_id(&self, raw: Option<String>) -> Result<Option<MsgId>, StateError> {
        raw.map(|s| MsgId::new(s.clone()).ok_or_else(|| self.corrupt(format!("message id {s:?}"))))
            .transpose()
    }

    fn side(&self, raw: Option<String>) -> Result<Option<Side>, StateError> {
        match raw.as_deref() {
            None => Ok(None),
            Some("remote") => Ok(Some(Side::Remote)),
            Some("local") => Ok(Some(Side::Local)),
            Some(other) => Err(self.corrupt(format!("side {other:?}"))),
        }
    }

    fn flags(&self, raw: i64, keywords: &str) -> Result<Flags, StateError> {
        let flags = u8::try_from(raw)
            .ok()
            .and_then(Flags::from_bits)
            .ok_or_else(|| self.corrupt(format!("flags {raw}")))?;
        if keywords.is_empty() {
            return Ok(flags);
        }
        let keywords = keywords
            .split(' ')
            .map(|k| Keyword::new(k).ok_or_else(|| self.corrupt(format!("keyword {k:?}"))))
            .collect::<Result<_, _>>()?;
        Ok(flags.with_keywords(keywords))
    }

    pub fn pending(&self, folder: i64) -> Result<Vec<Pending>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, pending, remote, local, flags, upload_uid_next, upload_size, upload_sha256, upload_to, keywords
                 FROM messages WHERE folder = ?1 AND pending IS NOT NULL ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        type Row = (
            i64,
            String,
            Option<String>,
            Option<String>,
            i64,
            Option<i64>,
            Option<i64>,
            Option<Vec<u8>>,
            String,
            String,
        );
        let rows: Vec<Row> = stmt
            .query_map(params![folder], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get::<_, String>(9)?,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for (id, kind, remote, local, flags, uid_next, size, sha, to, keywords) in rows {
            let record = RecordId(id);
            let flags = self.flags(flags, &keywords)?;
            let bad = || self.corrupt(format!("pending row {id}"));
            out.push(match (kind.as_str(), to.as_str()) {
                ("download", _) => Pending::Download {
                    record,
                    remote: self.msg_id(remote)?.ok_or_else(bad)?,
                    local: self.msg_id(local)?.ok_or_else(bad)?,
                    flags,
                },
                ("upload", "local") => Pending::CopyToLocal {
                    record,
                    remote: self.msg_id(remote)?.ok_or_else(bad)?,
                    flags,
                    uid_next: uid_next
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(bad)?,
                    size: size.and_then(|v| u64::try_from(v).ok()).ok_or_else(bad)?,
                    sha256: sha.and_then(|v| v.try_into().ok()).ok_or_else(bad)?,
                },
                ("upload", _) => Pending::Upload {
                    record,
                    local: self.msg_id(local)?.ok_or_else(bad)?,
                    flags,
                    uid_next: uid_next
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(bad)?,
                    size: size.and_then(|v| u64::try_from(v).ok()).ok_or_else(bad)?,
                    sha256: sha.and_then(|v| v.try_into().ok()).ok_or_else(bad)?,
                },
                _ => return Err(bad()),
            });
        }
        Ok(out)
    }

    /// Runs `body` as one transaction: all of it is durable, or none of it.
    fn in_transaction(
        &mut self,
        body: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>,
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        // IMMEDIATE: with several lanes writing, a transaction that began as a reader could not
        // become a writer after another lane's commit (SQLITE_BUSY without waiting).
        let result = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .and_then(|tx| body(&tx).and_then(|()| tx.commit()));
        result.map_err(|source| StateError::Sqlite { path, source })
    }

    /// Records the intent to copy server messages into the Maildir under reserved ids.
    pub fn begin_downloads(
        &mut self,
        folder: i64,
        copies: &[(MsgId, MsgId, Flags)],
    ) -> Result<(), StateError> {
        self.in_transaction(|tx| {
            // A pair whose Maildir copy never existed (see the planner) gives way to the intent.
            let mut clear = tx.prepare(
                "DELETE FROM messages WHERE folder = ?1 AND remote = ?2 AND local IS NULL AND pending IS NULL",
            )?;
            let mut insert = tx.prepare(
                "INSERT INTO messages (folder, remote, local, flags, keywords, pending) VALUES (?1, ?2, ?3, ?4, ?5, 'download')",
            )?;
            for (remote, local, flags) in copies {
                clear.execute(params![folder, remote.as_str()])?;
                insert.execute(params![
                    folder,
                    remote.as_str(),
                    local.as_str(),
                    flags.bits(),
                    keyword_text(flags)
                ])?;
            }
            Ok(())
        })
    }

    /// Records the intent to upload Maildir messages, with what finds the copy again.
    pub fn begin_uploads(
        &mut self,
        folder: i64,
        uid_next: u32,
        uploads: &[(MsgId, Flags, Fingerprint)],
    ) -> Result<(), StateError> {
        self.in_transaction(|tx| {
            // A pair whose server copy was lost (after a renumbering) gives way to the intent.
            let mut clear = tx.prepare(
                "DELETE FROM messages WHERE folder = ?1 AND local = ?2 AND remote IS NULL AND pending IS NULL",
            )?;
            let mut insert = tx.prepare(
                "INSERT INTO messages (folder, local, flags, pending, upload_uid_next, upload_size, upload_sha256, keywords)
                 VALUES (?1, ?2, ?3, 'upload', ?4, ?5, ?6, ?7)",
            )?;
            for (local, flags, fp) in uploads {
                clear.execute(params![folder, local.as_str()])?;
                insert.execute(params![
                    folder,
                    local.as_str(),
                    flags.bits(),
                    uid_next,
                    i64::try_from(fp.size).unwrap_or(i64::MAX),
                    &fp.sha256[..],
                    keyword_text(flags)
                ])?;
            }
            Ok(())
        })
    }

    /// Marks copies as complete: both ids are known and the flags are those both sides have.
    pub fn confirm(
        &mut self,
        confirmed: &[(RecordId, MsgId, MsgId, Flags)],
    ) -> Result<(), StateError> {
        self.in_transaction(|tx| {
            let mut update = tx.prepare(
                "UPDATE messages SET remote = ?2, local = ?3, flags = ?4, keywords = ?5, pending = NULL,
                 upload_uid_next = NULL, upload_size = NULL, upload_sha256 = NULL WHERE id = ?1",
            )?;
            for (id, remote, local, flags) in confirmed {
                update.execute(params![
                    id.0,
                    remote.as_str(),
                    local.as_str(),
                    flags.bits(),
                    keyword_text(flags)
                ])?;
            }
            Ok(())
        })
    }

    /// Confirms uploads by the local id they were recorded under.
    pub fn confirm_uploads(
        &mut self,
        folder: i64,
        confirmed: &[(MsgId, MsgId, Flags)],
    ) -> Result<(), StateError> {
        self.in_transaction(|tx| {
            let mut update = tx.prepare(
                "UPDATE messages SET remote = ?3, flags = ?4, keywords = ?5, pending = NULL,
                 upload_uid_next = NULL, upload_size = NULL, upload_sha256 = NULL
                 WHERE folder = ?1 AND local = ?2 AND pending = 'upload'",
            )?;
            for (local, remote, flags) in confirmed {
                update.execute(params![
                    folder,
                    local.as_str(),
                    remote.as_str(),
                    flags.bits(),
                    keyword_text(flags)
                ])?;
            }
            Ok(())
        })
    }

    /// Confirms downloads by the server id they were recorded under.
    pub fn confirm_downloads(&mut self, folder: i64, remotes: &[MsgId]) -> Result<(), StateError> {
        self.in_transaction(|tx| {
            let mut update = tx.prepare(
                "UPDATE messages SET pending = NULL WHERE folder = ?1 AND remote = ?2 AND pending = 'download'",
            )?;
            for remote in remotes {
                update.execute(params![folder, remote.as_str()])?;
            }
            Ok(())
        })
    }

    pub fn set_flags(&mut self, updates: &[(RecordId, Flags)]) -> Result<(), StateError> {
        self.in_transaction(|tx| {
            let mut update =
                tx.prepare("UPDATE messages SET flags = ?2, keywords = ?3 WHERE id = ?1")?;
            for (id, flags) in updates {
                update.execute(params![id.0, flags.bits(), keyword_text(flags)])?;
            }
            Ok(())
        })
    }

    pub fn remove(&mut self, records: &[RecordId]) -> Result<(), StateError> {
        self.in_transaction(|tx| {
            let mut delete = tx.prepare("DELETE FROM messages WHERE id = ?1")?;
            for id in records {
                delete.execute(params![id.0])?;
            }
            Ok(())
        })
    }

    /// Replaces every message pair of a folder at once (after re-matching the messages of a
    /// folder whose UIDVALIDITY changed): one transaction, so a crash keeps the old pairs.
    pub fn replace_folder_pairs(
        &mut self,
        folder: i64,
        uid_validity: Option<UidValidity>,
        pairs: &[crate::plan::recover::Pair],
    ) -> Result<(), StateError> {
        self.in_transaction(|tx| {
            tx.execute("DELETE FROM messages WHERE folder = ?1", params![folder])?;
            let mut insert = tx.prepare(
                "INSERT INTO messages (folder, remote, local, flags, deleted_on, keywords) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (remote, local, flags, deleted_on) in pairs {
                insert.execute(params![
                    folder,
                    remote.as_ref().map(MsgId::as_str),
                    local.as_ref().map(MsgId::as_str),
                    flags.bits(),
                    deleted_on.map(side_name),
                    keyword_text(flags)
                ])?;
            }
            tx.execute(
                "UPDATE folders SET uid_validity = ?2, uid_next = NULL, highest_modseq = NULL WHERE id = ?1",
                params![folder, uid_validity.map(|v| v.get())],
            )?;
            // Skipped ids may name other messages after a renumbering: examine them again.
            tx.execute("DELETE FROM skipped WHERE folder = ?1", params![folder])?;
            Ok(())
        })
    }

    /// Records survivors of deletions not carried over: the copy on `gone` is forgotten, the
    /// survivor stays, marked so that it is neither deleted nor copied back.
    pub fn detach(&mut self, detached: &[(RecordId, Side)]) -> Result<(), StateError> {
        self.in_transaction(|tx| {
            let mut remote = tx.prepare(
                "UPDATE messages SET remote = NULL, deleted_on = 'remote' WHERE id = ?1",
            )?;
            let mut local =
                tx.prepare("UPDATE messages SET local = NULL, deleted_on = 'local' WHERE id = ?1")?;
            for (id, gone) in detached {
                match gone {
                    Side::Remote => remote.execute(params![id.0])?,
                    Side::Local => local.execute(params![id.0])?,
                };
            }
            Ok(())
        })
    }

    /// Records the intent to copy server messages into a local side that assigns its own ids
    /// (IMAP), with the local UIDNEXT and the content's identity to find the copy again.
    pub fn begin_copies_to_local(
        &mut self,
        folder: i64,
        uid_next: u32,
        copies: &[(MsgId, Flags, Fingerprint)],
    ) -> Result<(), StateError> {
        self.in_transaction(|tx| {
            // A pair whose local copy never existed gives way to the intent, as for downloads.
            let mut clear = tx.prepare(
                "DELETE FROM messages WHERE folder = ?1 AND remote = ?2 AND local IS NULL AND pending IS NULL AND deleted_on IS NULL",
            )?;
            let mut insert = tx.prepare(
                "INSERT INTO messages (folder, remote, flags, pending, upload_to, upload_uid_next, upload_size, upload_sha256, keywords)
                 VALUES (?1, ?2, ?3, 'upload', 'local', ?4, ?5, ?6, ?7)",
            )?;
            for (remote, flags, fp) in copies {
                clear.execute(params![folder, remote.as_str()])?;
                insert.execute(params![
                    folder,
                    remote.as_str(),
                    flags.bits(),
                    uid_next,
                    i64::try_from(fp.size).unwrap_or(i64::MAX),
                    &fp.sha256[..],
                    keyword_text(flags)
                ])?;
            }
            Ok(())
        })
    }

    /// Confirms copies into the local side by the server id they were recorded under.
    pub fn confirm_copies_to_local(
        &mut self,
        folder: i64,
        confirmed: &[(MsgId, MsgId, Flags)],
    ) -> Result<(), StateError> {
        self.in_transaction(|tx| {
            let mut update = tx.prepare(
                "UPDATE messages SET local = ?3, flags = ?4, keywords = ?5, pending = NULL, upload_to = 'remote',
                 upload_uid_next = NULL, upload_size = NULL, upload_sha256 = NULL
                 WHERE folder = ?1 AND remote = ?2 AND pending = 'upload' AND upload_to = 'local'",
            )?;
            for (remote, local, flags) in confirmed {
                update.execute(params![
                    folder,
                    remote.as_str(),
                    local.as_str(),
                    flags.bits(),
                    keyword_text(flags)
                ])?;
            }
            Ok(())
        })
    }

    /// The local side's UIDVALIDITY as of the last sync of the folder (IMAP local side only).
    pub fn local_uid_validity(&self, folder: i64) -> Result<Option<UidValidity>, StateError> {
        self.conn
            .query_row(
                "SELECT local_uid_validity FROM folders WHERE id = ?1",
                params![folder],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
            .map(|v| {
                v.flatten()
                    .and_then(|v| u32::try_from(v).ok())
                    .and_then(UidValidity::new)
            })
            .map_err(|e| self.err(e))
    }

    pub fn set_local_uid_validity(
        &mut self,
        folder: i64,
        uid_validity: Option<UidValidity>,
    ) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE folders SET local_uid_validity = ?2 WHERE id = ?1",
                params![folder, uid_validity.map(|v| v.get())],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The messages of a folder that the limits kept from being copied.
    /// Keywords `side` refused to store in the folder (see the `refused_keywords` table).
    pub fn refused_keywords(&self, folder: i64, side: Side) -> Result<Keywords, StateError> {
        let mut stmt = self
            .conn
            // Read at every folder's sync: the statement is kept.
            .prepare_cached("SELECT keyword FROM refused_keywords WHERE folder = ?1 AND side = ?2")
            .map_err(|e| self.err(e))?;
        let names = stmt
            .query_map(params![folder, side_name(side)], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        names
            .into_iter()
            .map(|k| Keyword::new(&k).ok_or_else(|| self.corrupt(format!("keyword {k:?}"))))
            .collect()
    }

    pub fn add_refused_keywords(
        &mut self,
        folder: i64,
        side: Side,
        keywords: &Keywords,
    ) -> Result<(), StateError> {
        self.in_transaction(|tx| {
            let mut insert = tx.prepare(
                "INSERT OR IGNORE INTO refused_keywords (folder, side, keyword) VALUES (?1, ?2, ?3)",
            )?;
            for keyword in keywords.iter() {
                insert.execute(params![folder, side_name(side), keyword.as_str()])?;
            }
            Ok(())
        })
    }

    pub fn skipped(&self, folder: i64) -> Result<Vec<Skipped>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT side, id, size, date, max_age, max_size FROM skipped WHERE folder = ?1 ORDER BY side, id",
            )
            .map_err(|e| self.err(e))?;
        type Row = (String, String, i64, Option<i64>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = stmt
            .query_map(params![folder], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for (side, id, size, date, max_age, max_size) in rows {
            let bad = || self.corrupt(format!("skipped message {id:?}"));
            out.push(Skipped {
                side: self.side(Some(side))?.ok_or_else(bad)?,
                id: self.msg_id(Some(id.clone()))?.ok_or_else(bad)?,
                size: u64::try_from(size).map_err(|_| bad())?,
                date,
                max_age: max_age
                    .map(|v| u32::try_from(v).map_err(|_| bad()))
                    .transpose()?,
                max_size: max_size
                    .map(|v| u64::try_from(v).map_err(|_| bad()))
                    .transpose()?,
            });
        }
        Ok(out)
    }

    /// Replaces the folder's skipped messages: `remove` (by side and id) go, `add` come.
    pub fn update_skipped(
        &mut self,
        folder: i64,
        remove: &[(Side, MsgId)],
        add: &[Skipped],
    ) -> Result<(), StateError> {
        if remove.is_empty() && add.is_empty() {
            return Ok(());
        }
        self.in_transaction(|tx| {
            let mut delete =
                tx.prepare("DELETE FROM skipped WHERE folder = ?1 AND side = ?2 AND id = ?3")?;
            for (side, id) in remove {
                delete.execute(params![folder, side_name(*side), id.as_str()])?;
            }
            let mut insert = tx.prepare(
                "INSERT OR REPLACE INTO skipped (folder, side, id, size, date, max_age, max_size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for s in add {
                insert.execute(params![
                    folder,
                    side_name(s.side),
                    s.id.as_str(),
                    i64::try_from(s.size).unwrap_or(i64::MAX),
                    s.date,
                    s.max_age,
                    s.max_size.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
                ])?;
            }
            Ok(())
        })
    }

    /// Forgets the skipped messages of one side of a folder (its ids were renumbered).
    pub fn clear_skipped(&mut self, folder: i64, side: Side) -> Result<(), StateError> {
        self.conn
            .execute(
                "DELETE FROM skipped WHERE folder = ?1 AND side = ?2",
                params![folder, side_name(side)],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records the server's global ids (see `Store::global_id`) of messages of `folder`, by
    /// their server ids; records that have one keep it.
    pub fn set_global_ids(&mut self, folder: i64, ids: &[(MsgId, u64)]) -> Result<(), StateError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.in_transaction(|tx| {
            let mut update = tx.prepare_cached(
                "UPDATE messages SET global_id = ?3 WHERE folder = ?1 AND remote = ?2 AND global_id IS NULL",
            )?;
            for (remote, global) in ids {
                update.execute(params![folder, remote.as_str(), global_sql(*global)])?;
            }
            Ok(())
        })
    }

    /// The settled local copies of the message with global id `global`, in any folder: the
    /// folder's local name, the local id and the flags it was last seen with.
    pub fn local_copies(&self, global: u64) -> Result<Vec<(FolderName, MsgId, Flags)>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT f.name, f.local_name, m.local, m.flags, m.keywords
                 FROM messages m JOIN folders f ON f.id = m.folder
                 WHERE m.global_id = ?1 AND m.local IS NOT NULL AND m.pending IS NULL
                 ORDER BY m.id LIMIT 4",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![global_sql(global)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, local_name, local, flags, keywords) = row.map_err(|e| self.err(e))?;
            let folder = local_name.unwrap_or(name);
            let folder = FolderName::new(&folder)
                .ok_or_else(|| self.corrupt(format!("folder name {folder:?}")))?;
            let local = self
                .msg_id(Some(local))?
                .ok_or_else(|| self.corrupt("local id".to_owned()))?;
            out.push((folder, local, self.flags(flags, &keywords)?));
        }
        Ok(out)
    }

    /// The settled records of `folder` whose message has a settled local copy in the folder
    /// `archive` (by server name) too: the same global id (see `Store::global_archive`).
    pub fn linked_to(
        &self,
        folder: i64,
        archive: &FolderName,
    ) -> Result<Vec<RecordId>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT m.id FROM messages m
                 WHERE m.folder = ?1 AND m.global_id IS NOT NULL AND m.pending IS NULL
                 AND EXISTS (SELECT 1 FROM messages o JOIN folders f ON f.id = o.folder
                             WHERE o.global_id = m.global_id AND f.name = ?2 AND o.folder != ?1
                             AND o.local IS NOT NULL AND o.pending IS NULL)",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![folder, archive.as_str()], |r| r.get::<_, i64>(0))
            .map_err(|e| self.err(e))?;
        rows.map(|r| r.map(RecordId).map_err(|e| self.err(e)))
            .collect()
    }

    /// Whether any message of this id is known, pending or not (used by tests and checks).
    pub fn has_local(&self, folder: i64, local: &MsgId) -> Result<bool, StateError> {
        self.conn
            .query_row(
                "SELECT 1 FROM messages WHERE folder = ?1 AND local = ?2",
                params![folder, local.as_str()],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_global_id_finds_settled_local_copies_in_any_folder_and_keeps_all_64_bits() {
        let mut db = StateDb::open_in_memory().expect("open");
        let inbox = db.ensure_folder(&FolderName::inbox()).expect("folder").id;
        let work_name = FolderName::new("Work").expect("name");
        let work = db.ensure_folder(&work_name).expect("folder").id;
        db.set_folder_local_name(&work_name, &FolderName::new("work").expect("name"))
            .expect("rename");
        let id = |s: &str| MsgId::new(s).expect("id");
        let global = u64::MAX - 7;
        db.begin_downloads(inbox, &[(id("1"), id("a"), Flags::SEEN)])
            .expect("intent");
        db.set_global_ids(inbox, &[(id("1"), global)]).expect("ids");
        assert!(db.local_copies(global).expect("read").is_empty(), "pending");
        db.confirm_downloads(inbox, &[id("1")]).expect("confirm");
        db.begin_downloads(work, &[(id("9"), id("b"), Flags::FLAGGED)])
            .expect("intent");
        db.confirm_downloads(work, &[id("9")]).expect("confirm");
        db.set_global_ids(work, &[(id("9"), global), (id("10"), 3)])
            .expect("ids");
        // A record keeps the global id it has.
        db.set_global_ids(inbox, &[(id("1"), 5)]).expect("ids");
        assert_eq!(
            db.local_copies(global).expect("read"),
            vec![
                (FolderName::inbox(), id("a"), Flags::SEEN),
                (
                    FolderName::new("work").expect("name"),
                    id("b"),
                    Flags::FLAGGED
                ),
            ]
        );
        assert!(db.local_copies(5).expect("read").is_empty());
    }

    #[test]
    fn a_folder_s_records_are_read_through_an_index_not_a_scan_of_every_folder() {
        let db = StateDb::open_in_memory().expect("open");
        let plan: Vec<String> = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {RECORDS}"))
            .expect("prepare")
            .query_map(params![1], |r| r.get::<_, String>(3))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let plan = plan.join("; ");
        assert!(
            plan.contains("USING INDEX messages_folder") && !plan.contains("TEMP B-TREE"),
            "{plan}"
        );
    }

    fn query_plan(db: &StateDb, sql: &str, params: impl rusqlite::Params) -> String {
        let plan: Vec<String> = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("prepare")
            .query_map(params, |r| r.get::<_, String>(3))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        plan.join("; ")
    }

    #[test]
    fn the_questions_of_a_sync_of_changes_are_answered_through_indexes() {
        let db = StateDb::open_in_memory().expect("open");
        let plan = query_plan(&db, RECORD_BY_REMOTE, params![1, "7"]);
        assert!(plan.contains("USING INDEX messages_remote"), "{plan}");
        let plan = query_plan(&db, ONLY_PAIRS, params![1]);
        assert!(
            plan.contains("messages_unsettled") && !plan.contains("SCAN messages"),
            "{plan}"
        );
    }

    #[test]
    fn only_pairs_and_records_by_server_id() {
        let mut db = StateDb::open_in_memory().expect("open");
        let folder = db
            .ensure_folder(&FolderName::new("INBOX").unwrap())
            .unwrap()
            .id;
        let pairs: Vec<_> = (1..=3)
            .map(|n| {
                (
                    Some(id(&n.to_string())),
                    Some(id(&format!("l{n}"))),
                    Flags::SEEN,
                    None,
                )
            })
            .collect();
        db.replace_folder_pairs(folder, None, &pairs).unwrap();
        assert!(db.only_pairs(folder).unwrap());
        assert_eq!(db.remote_count(folder).unwrap(), 3);
        let found = db
            .records_with_remote(folder, &[id("3"), id("9"), id("1")])
            .unwrap();
        let found: Vec<_> = found.iter().map(|r| r.local.clone()).collect();
        assert_eq!(found, vec![Some(id("l3")), Some(id("l1"))]);
        // A survivor (deleted on one side, kept on the other) is not a pair.
        let mut with_survivor = pairs.clone();
        with_survivor.push((None, Some(id("l4")), Flags::SEEN, Some(Side::Remote)));
        db.replace_folder_pairs(folder, None, &with_survivor)
            .unwrap();
        assert!(!db.only_pairs(folder).unwrap());
    }

    fn id(s: &str) -> MsgId {
        MsgId::new(s).unwrap()
    }

    #[test]
    fn intents_become_records_when_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(&dir.path().join("a.sqlite")).unwrap();
        let f = db.ensure_folder(&FolderName::inbox()).unwrap();
        assert_eq!(db.ensure_folder(&FolderName::inbox()).unwrap().id, f.id);
        db.begin_downloads(f.id, &[(id("1"), id("x"), Flags::SEEN)])
            .unwrap();
        let fp = Fingerprint {
            size: 3,
            sha256: [7; 32],
            message_id: None,
        };
        db.begin_uploads(f.id, 5, &[(id("y"), Flags::empty(), fp)])
            .unwrap();
        assert!(db.records(f.id).unwrap().is_empty());
        let pending = db.pending(f.id).unwrap();
        assert_eq!(pending.len(), 2);
        assert!(matches!(
            &pending[1],
            Pending::Upload {
                uid_next: 5,
                size: 3,
                ..
            }
        ));
        db.confirm_downloads(f.id, &[id("1")]).unwrap();
        db.confirm_uploads(f.id, &[(id("y"), id("5"), Flags::empty())])
            .unwrap();
        let records = db.records(f.id).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].remote, Some(id("5")));
        assert!(db.pending(f.id).unwrap().is_empty());
        drop(db);
        // Reopening keeps everything and does not re-run migrations.
        let db = StateDb::open(&dir.path().join("a.sqlite")).unwrap();
        assert_eq!(db.count(f.id).unwrap(), 2);
    }

    #[test]
    fn a_pair_without_a_server_copy_gives_way_to_a_new_upload() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(&dir.path().join("a.sqlite")).unwrap();
        let f = db.ensure_folder(&FolderName::inbox()).unwrap();
        db.replace_folder_pairs(f.id, None, &[(None, Some(id("a")), Flags::SEEN, None)])
            .unwrap();
        let fp = Fingerprint {
            size: 3,
            sha256: [7; 32],
            message_id: None,
        };
        db.begin_uploads(f.id, 1, &[(id("a"), Flags::SEEN, fp)])
            .unwrap();
        assert!(db.records(f.id).unwrap().is_empty());
        assert_eq!(db.pending(f.id).unwrap().len(), 1);
    }

    #[test]
    fn a_local_id_is_unique_per_folder() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(&dir.path().join("a.sqlite")).unwrap();
        let f = db.ensure_folder(&FolderName::inbox()).unwrap();
        db.begin_downloads(f.id, &[(id("1"), id("x"), Flags::SEEN)])
            .unwrap();
        assert!(
            db.begin_downloads(f.id, &[(id("2"), id("x"), Flags::SEEN)])
                .is_err()
        );
        // The failed transaction left nothing behind.
        assert_eq!(db.count(f.id).unwrap(), 1);
    }

    #[test]
    fn keywords_are_kept_with_the_flags_of_every_kind_of_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(&dir.path().join("a.sqlite")).unwrap();
        let f = db.ensure_folder(&FolderName::inbox()).unwrap();
        let flags = |list: &[&str]| Flags::from_imap(list.iter().copied());
        let junk = flags(&["\\Seen", "$Junk", "NonJunk"]);
        db.begin_downloads(f.id, &[(id("1"), id("x"), junk.clone())])
            .unwrap();
        let fp = Fingerprint {
            size: 3,
            sha256: [7; 32],
            message_id: None,
        };
        db.begin_uploads(f.id, 5, &[(id("y"), flags(&["$label1"]), fp.clone())])
            .unwrap();
        db.begin_copies_to_local(f.id, 9, &[(id("2"), flags(&["Work"]), fp)])
            .unwrap();
        let pending = db.pending(f.id).unwrap();
        assert!(matches!(&pending[0], Pending::Download { flags, .. } if *flags == junk));
        assert!(
            matches!(&pending[1], Pending::Upload { flags: f, .. } if *f == flags(&["$label1"]))
        );
        assert!(
            matches!(&pending[2], Pending::CopyToLocal { flags: f, .. } if *f == flags(&["Work"]))
        );
        db.confirm_downloads(f.id, &[id("1")]).unwrap();
        db.confirm_uploads(f.id, &[(id("y"), id("5"), flags(&["$label1", "$label2"]))])
            .unwrap();
        db.confirm_copies_to_local(f.id, &[(id("2"), id("z"), flags(&[]))])
            .unwrap();
        let records = db.records(f.id).unwrap();
        assert_eq!(records[0].flags, junk);
        assert_eq!(records[1].flags, flags(&["$label1", "$label2"]));
        assert_eq!(records[2].flags, Flags::empty());
        db.set_flags(&[(records[0].id, flags(&["$Junk"]))]).unwrap();
        assert_eq!(db.records(f.id).unwrap()[0].flags, flags(&["$Junk"]));
        let refused = flags(&["averyverylongkeyword", "x"]).keywords().clone();
        db.add_refused_keywords(f.id, Side::Remote, &refused)
            .unwrap();
        db.add_refused_keywords(f.id, Side::Remote, &refused)
            .unwrap();
        assert_eq!(db.refused_keywords(f.id, Side::Remote).unwrap(), refused);
        assert!(db.refused_keywords(f.id, Side::Local).unwrap().is_empty());
    }

    #[test]
    fn a_database_of_the_first_schema_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute_batch(MIGRATIONS[0]).unwrap();
            tx.pragma_update(None, "user_version", 1).unwrap();
            tx.execute_batch(
                "INSERT INTO folders (id, name, uid_validity) VALUES (1, 'INBOX', 7);
                 INSERT INTO messages (folder, remote, local, flags) VALUES (1, '1', 'a', 1);
                 INSERT INTO messages (folder, local, flags, pending, upload_uid_next, upload_size, upload_sha256)
                     VALUES (1, 'b', 0, 'upload', 5, 3, zeroblob(32));",
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let db = StateDb::open(&path).unwrap();
        let records = db.records(1).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].deleted_on, None);
        assert!(matches!(
            &db.pending(1).unwrap()[..],
            [Pending::Upload { uid_next: 5, .. }]
        ));
        assert_eq!(db.local_uid_validity(1).unwrap(), None);
        assert!(db.skipped(1).unwrap().is_empty());
        assert!(
            records[0].flags.keywords().is_empty(),
            "pairs of old have no keywords"
        );
    }

    #[test]
    fn survivors_copies_to_local_and_skipped_messages_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(&dir.path().join("a.sqlite")).unwrap();
        let f = db.ensure_folder(&FolderName::inbox()).unwrap();
        db.replace_folder_pairs(
            f.id,
            None,
            &[
                (Some(id("1")), Some(id("a")), Flags::SEEN, None),
                (Some(id("2")), Some(id("b")), Flags::SEEN, None),
            ],
        )
        .unwrap();
        let records = db.records(f.id).unwrap();
        db.detach(&[(records[0].id, Side::Remote), (records[1].id, Side::Local)])
            .unwrap();
        let records = db.records(f.id).unwrap();
        assert_eq!(
            (
                records[0].remote.clone(),
                records[0].local.clone(),
                records[0].deleted_on
            ),
            (None, Some(id("a")), Some(Side::Remote))
        );
        assert_eq!(
            (
                records[1].remote.clone(),
                records[1].local.clone(),
                records[1].deleted_on
            ),
            (Some(id("2")), None, Some(Side::Local))
        );

        let fp = Fingerprint {
            size: 3,
            sha256: [9; 32],
            message_id: None,
        };
        db.begin_copies_to_local(f.id, 40, &[(id("7"), Flags::FLAGGED, fp)])
            .unwrap();
        assert!(matches!(
            &db.pending(f.id).unwrap()[..],
            [Pending::CopyToLocal {
                uid_next: 40,
                size: 3,
                ..
            }]
        ));
        db.confirm_copies_to_local(f.id, &[(id("7"), id("41"), Flags::FLAGGED)])
            .unwrap();
        assert!(db.pending(f.id).unwrap().is_empty());
        assert!(db.has_local(f.id, &id("41")).unwrap());

        db.set_local_uid_validity(f.id, UidValidity::new(12))
            .unwrap();
        assert_eq!(db.local_uid_validity(f.id).unwrap(), UidValidity::new(12));

        let big = Skipped {
            side: Side::Remote,
            id: id("9"),
            size: 1 << 30,
            date: Some(5),
            max_age: None,
            max_size: Some(1 << 20),
        };
        db.update_skipped(f.id, &[], std::slice::from_ref(&big))
            .unwrap();
        assert_eq!(db.skipped(f.id).unwrap(), vec![big.clone()]);
        // A renumbering forgets them: the ids may name other messages now.
        db.replace_folder_pairs(f.id, None, &[]).unwrap();
        assert!(db.skipped(f.id).unwrap().is_empty());
        db.update_skipped(f.id, &[], std::slice::from_ref(&big))
            .unwrap();
        db.update_skipped(f.id, &[(Side::Remote, id("9"))], &[])
            .unwrap();
        assert!(db.skipped(f.id).unwrap().is_empty());
    }

    #[test]
    fn counts_leave_out_pending_and_deleted_messages() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(&dir.path().join("a.sqlite")).unwrap();
        let inbox = db.ensure_folder(&FolderName::inbox()).unwrap();
        let empty = db
            .ensure_folder(&FolderName::new("Empty").unwrap())
            .unwrap();
        db.replace_folder_pairs(
            inbox.id,
            None,
            &[
                (Some(id("1")), Some(id("a")), Flags::SEEN, None),
                (Some(id("2")), Some(id("b")), Flags::FLAGGED, None),
                (Some(id("3")), Some(id("c")), Flags::DELETED, None),
            ],
        )
        .unwrap();
        db.begin_downloads(inbox.id, &[(id("4"), id("d"), Flags::empty())])
            .unwrap();
        let counts = db.message_counts().unwrap();
        assert_eq!(
            counts["INBOX"],
            FolderCount {
                total: 2,
                unseen: 1
            }
        );
        assert_eq!(counts["Empty"], FolderCount::default());
        let _ = empty;
        // One folder alone counts the same.
        for (name, count) in &counts {
            let folder = FolderName::new(name).unwrap();
            assert_eq!(db.message_count(&folder).unwrap().as_ref(), Some(count));
        }
        let unknown = FolderName::new("Nowhere").unwrap();
        assert_eq!(db.message_count(&unknown).unwrap(), None);
    }
}
