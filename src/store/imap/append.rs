//! APPEND of a staged file, streamed from disk as an IMAP literal.
//!
//! The file is read with blocking calls, as the Maildir store reads and writes its files: a
//! staged message is a local file just written or linked, and each read of it through tokio's
//! blocking pool costs a thread hand-over (two futex calls and a context switch), which for
//! thousands of small messages was most of an upload's CPU.
//!
//! Written by hand rather than with async-imap's `append`, which waits for a continuation even
//! with LITERAL+, needs the whole message in memory, and throws away the APPENDUID code
//! (RFC 4315) that tells the new message's UID.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::message::LfToCrlf;
use crate::model::Flags;
use crate::store::{Staged, StoreError};

use super::date;
use super::session::{Done, Reply, Session};

const READ_CHUNK: usize = 64 * 1024;

/// Appends `message` to the mailbox `quoted_mailbox` (already quoted) and returns the
/// completion (NO and BAD as errors).
pub async fn append(
    session: &mut Session,
    quoted_mailbox: &str,
    message: &Staged,
    flags: &Flags,
) -> Result<Done, StoreError> {
    let done = multiappend(session, quoted_mailbox, &[(message, flags)]).await?;
    session.check(done, "APPEND")
}

/// Appends all `messages` with one command (MULTIAPPEND, RFC 3502, when there are several):
/// one server transaction for the lot, which stores all of them or none. Returns the
/// completion, NO and BAD included, for the caller to decide.
pub async fn multiappend(
    session: &mut Session,
    quoted_mailbox: &str,
    messages: &[(&Staged, &Flags)],
) -> Result<Done, StoreError> {
    // Every file is opened and measured before the command starts: a failure in the middle of
    // the command line would leave the server waiting for the rest of it.
    let mut files = Vec::with_capacity(messages.len());
    for (message, _) in messages {
        let path = message.path.as_path();
        let mut file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        // The literal's length is that of the CRLF form, so it takes a first pass over the file.
        let length = crlf_length(&mut file, path)?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| StoreError::io(path, e))?;
        files.push((file, length));
    }

    let tag = session
        .begin(&format!(
            "APPEND {quoted_mailbox} <{} message(s)>",
            messages.len()
        ))
        .await?;
    session
        .write(format!("APPEND {quoted_mailbox}").as_bytes())
        .await?;
    for ((message, flags), (file, length)) in messages.iter().zip(files.iter_mut()) {
        let mut part = String::new();
        if !flags.is_empty() {
            part.push_str(&format!(" ({})", flags.imap_list()));
        }
        if let Some(date) = message.internal_date.and_then(date::format) {
            part.push_str(&format!(" \"{date}\""));
        }
        part.push(' ');
        session.write(part.as_bytes()).await?;
        session.literal_header(&tag, "APPEND", *length).await?;
        send_body(session, file, &message.path, *length).await?;
    }
    session.end().await?;

    loop {
        if let Reply::Done(done) = session.recv_for(&tag).await? {
            return Ok(done);
        }
    }
}

fn crlf_length(file: &mut File, path: &Path) -> Result<u64, StoreError> {
    let mut converter = LfToCrlf::default();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut out = Vec::with_capacity(READ_CHUNK * 2);
    let mut length = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| StoreError::io(path, e))?;
        if n == 0 {
            return Ok(length);
        }
        out.clear();
        converter.push(&buf[..n], &mut out);
        length += out.len() as u64;
    }
}

/// Streams the file as exactly `length` octets of CRLF text. If that cannot be done (a read
/// error, or the file changed since it was measured), the connection is dropped in the middle
/// of the literal: the server then never sees a complete APPEND and stores nothing, where
/// padding or cutting would store a damaged message.
async fn send_body(
    session: &mut Session,
    file: &mut File,
    path: &Path,
    length: u64,
) -> Result<(), StoreError> {
    let mut converter = LfToCrlf::default();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut out = Vec::with_capacity(READ_CHUNK * 2);
    let mut sent = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                session.poison("a staged message could not be read while it was being sent");
                return Err(StoreError::io(path, e));
            }
        };
        if n == 0 {
            break;
        }
        out.clear();
        converter.push(&buf[..n], &mut out);
        sent += out.len() as u64;
        if sent > length {
            break;
        }
        session.write(&out).await?;
    }
    if sent != length {
        session.poison("a staged message changed while it was being sent");
        return Err(StoreError::io(
            path,
            std::io::Error::other("the file changed while it was being uploaded"),
        ));
    }
    Ok(())
}
