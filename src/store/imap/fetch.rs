//! Message bodies from the server into staging files or fingerprints, with memory bounded by
//! the chunk size whatever the message size.
//!
//! async-imap buffers each response whole, literal included, so the only way to bound memory
//! is to bound responses: messages up to [`CHUNK`] come whole, several per `UID FETCH`; bigger
//! ones come in partial fetches of [`CHUNK`] octets (RFC 3501 §6.4.5 `BODY[]<origin.length>`),
//! a few in flight at once so the link stays busy.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use async_imap::imap_proto::{AttributeValue, Response};
// Plain std files: a staged body is a few writes to the page cache, and tokio's files would
// cost a thread hand-off for each of them (three or more per message).
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use crate::message::CrlfToLf;
use crate::model::{Fingerprint, MsgId, Uid};
use crate::store::{Staged, StoreError};

use super::date;
use super::digest::StreamingFingerprint;
use super::session::{Command, Reply, ResponseData, Session};
use super::uidset::{self, MAX_SET_LEN};

/// Largest response asked for: whole messages up to this size, partial fetches of this size.
pub const CHUNK: u32 = 1024 * 1024;

/// Octets of a body converted to LF and written at a time.
const CONVERT_SLICE: usize = 64 * 1024;

/// Partial fetches of one message in flight at once. Responses of pipelined commands may come
/// out of order (Dovecot runs some commands in parallel), so up to WINDOW - 1 chunks may wait in
/// memory for an earlier one.
const WINDOW: usize = 3;

/// What the first, body-less fetch tells about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// RFC822.SIZE: the size of the CRLF form.
    pub size: u32,
    pub internal_date: Option<i64>,
}

/// Size and INTERNALDATE of those of `uids` that still exist.
pub async fn fetch_meta(
    session: &mut Session,
    uids: &[Uid],
) -> Result<BTreeMap<Uid, Meta>, StoreError> {
    let mut metas = BTreeMap::new();
    for (set, members) in uidset::batches(uids, MAX_SET_LEN) {
        let wanted: BTreeSet<Uid> = members.into_iter().collect();
        let command =
            Command::new("UID FETCH").text(format!(" {set} (UID RFC822.SIZE INTERNALDATE)"));
        let tag = session.send(&command).await?;
        loop {
            match session.recv_for(&tag).await? {
                Reply::Data(response) => {
                    let Response::Fetch(_, attributes) = response.parsed() else {
                        continue;
                    };
                    let mut uid = None;
                    let mut size = None;
                    let mut internal_date = None;
                    for attribute in attributes {
                        match attribute {
                            AttributeValue::Uid(u) => uid = Uid::new(*u),
                            AttributeValue::Rfc822Size(s) => size = Some(*s),
                            AttributeValue::InternalDate(d) => internal_date = parse_date(d),
                            _ => {}
                        }
                    }
                    if let (Some(uid), Some(size)) = (uid, size)
                        && wanted.contains(&uid)
                    {
                        metas.insert(
                            uid,
                            Meta {
                                size,
                                internal_date,
                            },
                        );
                    }
                }
                Reply::Done(done) => {
                    session.check(done, "UID FETCH")?;
                    break;
                }
            }
        }
    }
    Ok(metas)
}

fn parse_date(text: &str) -> Option<i64> {
    let parsed = date::parse(text);
    if parsed.is_none() {
        tracing::warn!("cannot read the server's INTERNALDATE {text:?}; using none");
    }
    parsed
}

/// Where fetched bodies go.
#[derive(Debug)]
pub enum Collector<'a> {
    /// Into fresh files in a directory, converted to LF.
    Stage { dir: &'a Path, staged: Vec<Staged> },
    /// Into content fingerprints.
    Fingerprint { prints: Vec<(MsgId, Fingerprint)> },
}

/// One body being received.
enum Body {
    File {
        file: File,
        path: PathBuf,
        to_lf: CrlfToLf,
        buf: Vec<u8>,
    },
    Hash(Box<StreamingFingerprint>),
}

impl Collector<'_> {
    async fn open(&mut self, uid: Uid) -> Result<Body, StoreError> {
        match self {
            Collector::Stage { dir, .. } => {
                let path = dir.join(format!(
                    ".idlewild-stage-{uid}-{:016x}",
                    rand::random::<u64>()
                ));
                // Mail is private: readable by its owner only, as Maildir deliveries are.
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| StoreError::io(&path, e))?;
                Ok(Body::File {
                    file,
                    path,
                    to_lf: CrlfToLf::default(),
                    buf: Vec::new(),
                })
            }
            Collector::Fingerprint { .. } => Ok(Body::Hash(Box::default())),
        }
    }

    async fn finish(&mut self, uid: Uid, meta: Meta, body: Body) -> Result<(), StoreError> {
        match (self, body) {
            (
                Collector::Stage { staged, .. },
                Body::File {
                    mut file,
                    path,
                    mut to_lf,
                    mut buf,
                },
            ) => {
                buf.clear();
                to_lf.finish(&mut buf);
                // No fsync: the receiving store makes its copy durable.
                let written = file.write_all(&buf).and_then(|()| file.flush());
                if let Err(e) = written {
                    drop(file);
                    let _ = fs::remove_file(&path);
                    return Err(StoreError::io(&path, e));
                }
                staged.push(Staged {
                    source_id: MsgId::from_uid(uid),
                    path,
                    temporary: true,
                    internal_date: meta.internal_date,
                });
                Ok(())
            }
            (Collector::Fingerprint { prints }, Body::Hash(hash)) => {
                prints.push((MsgId::from_uid(uid), hash.finish()));
                Ok(())
            }
            (_, body) => {
                body.abandon().await;
                Err(StoreError::Invalid(
                    "internal error: a body reached the wrong collector".to_owned(),
                ))
            }
        }
    }

    /// Removes the files staged so far (after a failure: the caller gets no list of them).
    pub async fn discard(self) {
        if let Collector::Stage { staged, .. } = self {
            for s in staged {
                let _ = fs::remove_file(&s.path);
            }
        }
    }
}

impl Body {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        match self {
            Body::File {
                file,
                path,
                to_lf,
                buf,
            } => {
                // Converted a slice at a time: the buffer stays small however big the chunk,
                // and several bodies of a batch may be open at once.
                for slice in chunk.chunks(CONVERT_SLICE) {
                    buf.clear();
                    to_lf.push(slice, buf);
                    file.write_all(buf)
                        .map_err(|e| StoreError::io(path.as_path(), e))?;
                }
                Ok(())
            }
            Body::Hash(hash) => {
                hash.push(chunk);
                Ok(())
            }
        }
    }

    async fn abandon(self) {
        if let Body::File { file, path, .. } = self {
            drop(file);
            let _ = fs::remove_file(&path);
        }
    }
}

/// Body fetches sent and not yet read: the commands' tags and the messages asked for.
#[derive(Debug)]
pub struct InFlight {
    tags: Vec<String>,
    uids: Vec<Uid>,
}

impl InFlight {
    pub fn is_for(&self, uids: &[Uid]) -> bool {
        self.uids == uids
    }
}

/// Asks for the bodies of `uids` without waiting: each message's first [`CHUNK`] octets with
/// its size and INTERNALDATE, so one round trip brings every message that fits in a chunk
/// (nearly all) and tells which ones need more.
pub async fn send_bodies(session: &mut Session, uids: &[Uid]) -> Result<InFlight, StoreError> {
    let mut tags = Vec::new();
    for (set, _) in uidset::batches(uids, MAX_SET_LEN) {
        let command = Command::new("UID FETCH").text(format!(
            " {set} (UID RFC822.SIZE INTERNALDATE BODY.PEEK[]<0.{CHUNK}>)"
        ));
        tags.push(session.send(&command).await?);
    }
    Ok(InFlight {
        tags,
        uids: uids.to_vec(),
    })
}

/// Reads the answers to [`send_bodies`] into `collector`, and the rest of the messages bigger
/// than a chunk in partial fetches, written in order. Messages the server no longer has are
/// left out.
///
/// A message's remaining chunks are asked for as soon as its first chunk is in, while the
/// batch is still coming: their round trip overlaps the batch's transfer, and up to [`WINDOW`]
/// chunks are in flight across messages, so a batch with several big messages waits about
/// one round trip for them, not one or more each.
///
/// A message ends with its first chunk shorter than [`CHUNK`] (RFC 3501 §6.4.5: a partial
/// fetch past the end returns what there is), not at RFC822.SIZE: some servers report sizes
/// that are off, and trusting one that is too small would cut the message short. RFC822.SIZE
/// only decides how many chunks to ask for ahead.
pub async fn receive_bodies(
    session: &mut Session,
    in_flight: InFlight,
    collector: &mut Collector<'_>,
) -> Result<(), StoreError> {
    let mut rests = Rests::default();
    let result = receive(session, in_flight, collector, &mut rests).await;
    let ended = match result {
        Ok(()) => rests.finish(session, collector).await,
        Err(e) => Err(e),
    };
    if ended.is_err() {
        for rest in rests.all.drain(..) {
            rest.body.abandon().await;
        }
    }
    ended
}

/// The request and response loop of [`receive_bodies`]: returns once every command is
/// answered and nothing more is to be asked; small bodies are finished on the way, the big
/// ones' states in `rests` tell how each ended.
async fn receive(
    session: &mut Session,
    in_flight: InFlight,
    collector: &mut Collector<'_>,
    rests: &mut Rests,
) -> Result<(), StoreError> {
    let mut wanted: BTreeSet<Uid> = in_flight.uids.iter().copied().collect();
    let mut outstanding: HashSet<String> = in_flight.tags.into_iter().collect();
    // A disk error does not stop the reading: the commands' responses are drained first so the
    // session stays usable, then the error is returned.
    let mut failure = None;
    loop {
        if failure.is_none() {
            rests.ask(session).await?;
        }
        if outstanding.is_empty() && rests.in_flight.is_empty() {
            break;
        }
        match session.recv().await? {
            Reply::Done(done) => {
                if outstanding.remove(&done.tag) {
                    if let Err(e) = session.check(done, "UID FETCH") {
                        failure.get_or_insert(e);
                    }
                } else {
                    match rests.answered(session, done) {
                        Ok(Some(theirs)) => session.stash(theirs),
                        Ok(None) => {}
                        Err(e) => {
                            failure.get_or_insert(e);
                        }
                    }
                }
            }
            Reply::Data(response) => {
                if failure.is_some() {
                    continue;
                }
                // An unsolicited FETCH (say, a flag change by another client) carries no body.
                let Some(part) = body_part(&response) else {
                    continue;
                };
                if part.origin.unwrap_or(0) != 0 {
                    if let Err(e) = rests.receive(response).await {
                        failure = Some(e);
                    }
                    continue;
                }
                if !wanted.remove(&part.uid) {
                    continue;
                }
                let meta = Meta {
                    size: part.size.unwrap_or(0),
                    internal_date: part.internal_date.and_then(parse_date),
                };
                let mut body = match collector.open(part.uid).await {
                    Ok(body) => body,
                    Err(e) => {
                        failure = Some(e);
                        continue;
                    }
                };
                if let Err(e) = body.write(part.data).await {
                    body.abandon().await;
                    failure = Some(e);
                    continue;
                }
                if part.data.len() < CHUNK as usize {
                    if let Err(e) = collector.finish(part.uid, meta, body).await {
                        failure = Some(e);
                    }
                } else {
                    rests.add(part.uid, meta, body);
                }
            }
        }
    }
    if !wanted.is_empty() {
        tracing::debug!(
            "{} messages vanished before their bodies were fetched",
            wanted.len()
        );
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Reads and drops the answers to [`send_bodies`] nobody wants any more.
pub async fn discard(session: &mut Session, in_flight: InFlight) -> Result<(), StoreError> {
    let mut outstanding: HashSet<String> = in_flight.tags.into_iter().collect();
    while !outstanding.is_empty() {
        if let Reply::Done(done) = session.recv().await?
            && !outstanding.remove(&done.tag)
        {
            session.stash(done);
        }
    }
    Ok(())
}

/// The interesting parts of a FETCH response.
struct BodyPart<'r> {
    uid: Uid,
    /// `<origin>` of a partial fetch.
    origin: Option<u32>,
    data: &'r [u8],
    internal_date: Option<&'r str>,
    size: Option<u32>,
}

fn body_part(response: &ResponseData) -> Option<BodyPart<'_>> {
    let Response::Fetch(_, attributes) = response.parsed() else {
        return None;
    };
    let mut uid = None;
    let mut body = None;
    let mut internal_date = None;
    let mut size = None;
    for attribute in attributes {
        match attribute {
            AttributeValue::Uid(u) => uid = Uid::new(*u),
            AttributeValue::Rfc822Size(s) => size = Some(*s),
            // `BODY[]` is the whole message: no section path.
            AttributeValue::BodySection {
                section: None,
                index,
                data,
            } => body = Some((*index, data.as_deref().unwrap_or(&[]))),
            AttributeValue::InternalDate(d) => internal_date = Some(d.as_ref()),
            _ => {}
        }
    }
    let (origin, data) = body?;
    Some(BodyPart {
        uid: uid?,
        origin,
        data,
        internal_date,
        size,
    })
}

/// A message whose body goes on past its first chunk.
struct Rest {
    uid: Uid,
    meta: Meta,
    body: Body,
    /// The next octet to ask for, and how far the body is written.
    next_request: u64,
    written: u64,
    /// Requests of this message in flight.
    asked: usize,
    /// Origins answered, and answers that came before an earlier one.
    answered: HashSet<u64>,
    waiting: BTreeMap<u64, ResponseData>,
    complete: bool,
    vanished: bool,
}

impl Rest {
    /// Whether this message has a chunk to ask for now. Ahead of the end only as far as
    /// RFC822.SIZE says; past it one chunk at a time, once everything asked is answered.
    fn wants_more(&self) -> bool {
        !self.complete
            && !self.vanished
            && (self.next_request < u64::from(self.meta.size)
                || (self.asked == 0 && self.waiting.is_empty()))
    }
}

/// The messages of a batch bigger than a chunk, and their partial fetches in flight.
#[derive(Default)]
struct Rests {
    /// Few per batch: found by UID with a look through them.
    all: VecDeque<Rest>,
    /// Per tag: which message, from which octet.
    in_flight: HashMap<String, (usize, u64)>,
}

impl Rests {
    fn add(&mut self, uid: Uid, meta: Meta, body: Body) {
        self.all.push_back(Rest {
            uid,
            meta,
            body,
            next_request: u64::from(CHUNK),
            written: u64::from(CHUNK),
            asked: 0,
            answered: HashSet::new(),
            waiting: BTreeMap::new(),
            complete: false,
            vanished: false,
        });
    }

    /// Asks for chunks until [`WINDOW`] are in flight, the first messages first (their files
    /// are finished first).
    async fn ask(&mut self, session: &mut Session) -> Result<(), StoreError> {
        while self.in_flight.len() < WINDOW {
            let Some(index) = self.all.iter().position(Rest::wants_more) else {
                break;
            };
            let rest = &mut self.all[index];
            let origin = u32::try_from(rest.next_request).map_err(|_| StoreError::Protocol {
                host: session.host().to_owned(),
                command: "UID FETCH".to_owned(),
                detail: format!("message {} is larger than IMAP can address", rest.uid),
            })?;
            let command = Command::new("UID FETCH")
                .text(format!(" {} (UID BODY.PEEK[]<{origin}.{CHUNK}>)", rest.uid));
            let tag = session.send(&command).await?;
            self.in_flight.insert(tag, (index, rest.next_request));
            rest.asked += 1;
            rest.next_request += u64::from(CHUNK);
        }
        Ok(())
    }

    /// A tagged answer: one of ours is checked and taken in (a chunk asked for and not
    /// answered means the message vanished); anyone else's is handed back.
    fn answered(
        &mut self,
        session: &mut Session,
        done: super::session::Done,
    ) -> Result<Option<super::session::Done>, StoreError> {
        let Some((index, origin)) = self.in_flight.remove(&done.tag) else {
            return Ok(Some(done));
        };
        session.check(done, "UID FETCH")?;
        let rest = &mut self.all[index];
        rest.asked -= 1;
        if !rest.answered.contains(&origin) && !rest.complete {
            rest.vanished = true;
        }
        Ok(None)
    }

    /// A chunk: written when it is the next one of its message, kept until then otherwise.
    async fn receive(&mut self, response: ResponseData) -> Result<(), StoreError> {
        let (index, origin) = match body_part(&response) {
            Some(BodyPart {
                uid,
                origin: Some(origin),
                ..
            }) => match self.all.iter().position(|r| r.uid == uid) {
                Some(index) => (index, u64::from(origin)),
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        let rest = &mut self.all[index];
        if rest.complete || rest.vanished || !rest.answered.insert(origin) {
            return Ok(());
        }
        if origin != rest.written {
            rest.waiting.insert(origin, response);
            return Ok(());
        }
        let mut next = Some(response);
        while let Some(response) = next.take() {
            let data = body_part(&response).map_or(&[][..], |p| p.data);
            rest.body.write(data).await?;
            rest.written += data.len() as u64;
            if data.len() < CHUNK as usize {
                rest.complete = true;
                rest.waiting.clear();
                break;
            }
            next = rest.waiting.remove(&rest.written);
        }
        Ok(())
    }

    /// Hands the complete bodies to `collector` and drops the vanished ones; a body that came
    /// back with a gap is an error.
    async fn finish(
        &mut self,
        session: &Session,
        collector: &mut Collector<'_>,
    ) -> Result<(), StoreError> {
        while let Some(rest) = self.all.pop_front() {
            let uid = rest.uid;
            if rest.complete {
                if rest.written != u64::from(rest.meta.size) {
                    tracing::debug!(
                        "message {uid}: RFC822.SIZE {}, but the body has {} octets",
                        rest.meta.size,
                        rest.written
                    );
                }
                collector.finish(uid, rest.meta, rest.body).await?;
            } else if rest.vanished {
                tracing::debug!("message {uid} vanished while its body was fetched");
                rest.body.abandon().await;
            } else {
                rest.body.abandon().await;
                return Err(StoreError::Protocol {
                    host: session.host().to_owned(),
                    command: "UID FETCH".to_owned(),
                    detail: format!("the body of message {uid} came back with a gap"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_chunk_is_converted_whole_across_the_slices_it_is_written_in() {
        let dir = tempfile::tempdir().unwrap();
        // A lone CR (kept) exactly where a slice ends, then a CRLF split the same way (its CR
        // dropped): the converter's state must cross the slices.
        let mut chunk = Vec::new();
        while chunk.len() < CONVERT_SLICE - 1 {
            chunk.push(b'a');
        }
        chunk.extend_from_slice(b"\rkept");
        while chunk.len() < 2 * CONVERT_SLICE - 1 {
            chunk.push(b'b');
        }
        chunk.extend_from_slice(b"\r\nnext line\r\n");
        for i in 0..20_000 {
            chunk.extend_from_slice(format!("line {i}\r\n").as_bytes());
        }
        chunk.extend_from_slice(b"bare\rcr\r\n");
        assert_eq!(chunk[CONVERT_SLICE - 1], b'\r');
        assert_eq!(
            &chunk[2 * CONVERT_SLICE - 1..2 * CONVERT_SLICE + 1],
            b"\r\n"
        );
        let expected: Vec<u8> = String::from_utf8(chunk.clone())
            .unwrap()
            .replace("\r\n", "\n")
            .into_bytes();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let staged = rt.block_on(async {
            let mut collector = Collector::Stage {
                dir: dir.path(),
                staged: Vec::new(),
            };
            let uid = Uid::new(7).unwrap();
            let mut body = collector.open(uid).await.unwrap();
            body.write(&chunk).await.unwrap();
            let meta = Meta {
                size: chunk.len() as u32,
                internal_date: None,
            };
            collector.finish(uid, meta, body).await.unwrap();
            match collector {
                Collector::Stage { staged, .. } => staged,
                Collector::Fingerprint { .. } => unreachable!(),
            }
        });
        assert_eq!(staged.len(), 1);
        assert_eq!(fs::read(&staged[0].path).unwrap(), expected);
    }
}
