//! The guarded IMAP session: raw tagged commands over async-imap's response parser.
//!
//! async-imap's typed commands cannot be trusted for synchronization: once its parser meets a
//! response it does not know (NAMESPACE, ESEARCH, BINARY, STATUS=SIZE), the stream is closed and
//! later typed calls return `Ok` with empty data, and its unsolicited channel drops responses
//! when full. So this module only uses the crate to frame and parse responses
//! ([`Client::read_response`]) and writes every command itself, which also keeps the password
//! away from the crate's `log::trace!` of outgoing commands (bridged into `tracing` by
//! tracing-subscriber).
//!
//! The rule that makes this safe: any transport error, timeout, parse failure or end of stream
//! kills the session for good, and every later call returns [`StoreError::ConnectionLost`];
//! nothing is ever answered from a dead connection. A tagged NO or BAD is an ordinary answer and
//! leaves the session alive.
//!
//! Several commands may be in flight (pipelining): a command's completion is matched by tag, and
//! completions of other tags that arrive first are kept until asked for.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_imap::Client;
use async_imap::extensions::idle::Handle;
use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{self, Response, ResponseCode};
use futures_util::{FutureExt as _, Stream};
use tokio::io::AsyncWriteExt;

use super::capabilities::Capabilities;
use crate::store::StoreError;

use super::capabilities::LiteralMode;
use super::names;
use super::transport::Transport;

/// async-imap's parsed response (a buffer and the `imap_proto::Response` borrowing it). The crate
/// hands it out from `read_response` but does not export its name; this projection names it.
pub type ResponseData = <<Handle<Transport> as Stream>::Item as ResultOk>::Ok;

/// Names the `Ok` type of a `Result`, for [`ResponseData`].
pub trait ResultOk {
    type Ok;
}

impl<T, E> ResultOk for Result<T, E> {
    type Ok = T;
}

/// How a tagged command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    /// PREAUTH or BYE with a tag: not valid IMAP.
    Other,
}

/// The response code of a completion, where idlewild needs it (RFC 3501 §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// RFC 4315 §3.
    AppendUid {
        uid_validity: u32,
        uids: Vec<UidSetMember>,
    },
    /// RFC 3501 §7.1: the capabilities, sent with a login's completion by most servers.
    Capabilities(Capabilities),
    /// Any other code the parser knew, for messages.
    Other(String),
}

/// A tagged completion.
#[derive(Debug, Clone)]
pub struct Done {
    pub tag: String,
    pub status: Status,
    pub code: Option<Code>,
    /// The human-readable text; codes the parser does not know stay in it (`[ALREADYEXISTS] ...`).
    pub text: String,
}

impl Done {
    /// The server's answer as a person would want to read it in an error.
    pub fn detail(&self) -> String {
        match &self.code {
            Some(Code::Other(code)) => format!("[{code}] {}", self.text),
            Some(Code::AppendUid { .. } | Code::Capabilities(_)) | None => self.text.clone(),
        }
    }

    /// How long to leave the server alone when this refusal says it is rationing the account
    /// rather than that the command was wrong: Gmail's bandwidth limit (`[OVERQUOTA]`) and
    /// connection limit (`[ALERT] Too many simultaneous connections`), RFC 5530's
    /// `[UNAVAILABLE]`, `[INUSE]` and `[LIMIT]`, `[THROTTLED]`, and Office 365's "Request is
    /// throttled. Suggested Backoff Time: N milliseconds" (its N, at least a second).
    pub fn rationed(&self) -> Option<Duration> {
        if self.status == Status::Ok {
            return None;
        }
        rationing(&self.detail())
    }
}

/// Whether a `[THROTTLED]` from `host` is news: none was reported for it this past hour.
fn throttling_news(host: &str) -> bool {
    static REPORTED: std::sync::LazyLock<std::sync::Mutex<HashMap<String, std::time::Instant>>> =
        std::sync::LazyLock::new(Default::default);
    let mut reported = REPORTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = std::time::Instant::now();
    match reported.get(host) {
        Some(at) if now.duration_since(*at) < Duration::from_secs(3600) => false,
        _ => {
            reported.insert(host.to_owned(), now);
            true
        }
    }
}

/// See [`Done::rationed`]; `detail` is a completion's text with its code.
fn rationing(detail: &str) -> Option<Duration> {
    let upper = detail.to_ascii_uppercase();
    if upper.contains("[OVERQUOTA]") {
        // A daily allowance: an hour between tries costs nothing and misses little.
        return Some(Duration::from_secs(3600));
    }
    if let Some(at) = upper.find("SUGGESTED BACKOFF TIME:") {
        let digits: String = upper[at + "SUGGESTED BACKOFF TIME:".len()..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let millis = digits
            .parse::<u64>()
            .unwrap_or(60_000)
            .clamp(1_000, 3_600_000);
        return Some(Duration::from_millis(millis));
    }
    let busy = ["[UNAVAILABLE]", "[INUSE]", "[LIMIT]", "[THROTTLED]"]
        .iter()
        .any(|code| upper.contains(code))
        || upper.contains("TOO MANY SIMULTANEOUS CONNECTIONS")
        || upper.contains("REQUEST IS THROTTLED");
    busy.then_some(Duration::from_secs(60))
}

/// What the connection delivered next.
pub enum Reply {
    /// Untagged data, or a tagged completion's companion data. Callers take what they asked for
    /// and skip everything else (e.g. `* 3 EXISTS` in the middle of a FETCH).
    Data(ResponseData),
    Done(Done),
}

/// One part of a command line.
#[derive(Clone)]
enum Arg {
    Text(String),
    /// Sent as an IMAP literal (RFC 3501 §4.3).
    Literal(Vec<u8>),
}

/// A command to send, built from text and strings that get quoted or sent as literals.
#[derive(Clone)]
pub struct Command {
    name: &'static str,
    parts: Vec<Arg>,
    /// What the log shows instead of the command (for LOGIN).
    shown: Option<String>,
}

impl Command {
    /// Starts a command line with its name, e.g. `UID FETCH`.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            parts: vec![Arg::Text(name.to_owned())],
            shown: None,
        }
    }

    /// Appends text as it is.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.parts.push(Arg::Text(text.into()));
        self
    }

    /// Appends an IMAP string (`astring` position): quoted where possible, else a literal.
    pub fn string(self, value: &str) -> Self {
        match names::quoted(value) {
            Some(q) => self.text(q),
            None => {
                let mut this = self;
                this.parts.push(Arg::Literal(value.as_bytes().to_vec()));
                this
            }
        }
    }

    /// What the log shows instead of the real command line.
    pub fn shown_as(mut self, shown: impl Into<String>) -> Self {
        self.shown = Some(shown.into());
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(shown) = &self.shown {
            return f.write_str(shown);
        }
        for part in &self.parts {
            match part {
                Arg::Text(t) => f.write_str(t)?,
                Arg::Literal(bytes) => write!(f, "{{{}}}", bytes.len())?,
            }
        }
        Ok(())
    }
}

// Debug must never show a literal (it may be a password).
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({self})")
    }
}

pub struct Session {
    /// `None` once the session is dead or closed.
    conn: Option<Client<Transport>>,
    host: String,
    timeout: Duration,
    /// Why the session died, for every later error.
    lost: Option<String>,
    next_tag: u32,
    /// Completions that arrived while another tag was awaited.
    stash: HashMap<String, Done>,
    literal: LiteralMode,
    /// A command line is half written. Set from the first byte of a command to its final CRLF;
    /// if a new command starts while it is set, the caller was cancelled mid-command and the
    /// server is waiting for the rest of a line we will never send.
    writing: bool,
    /// LOGOUT was sent: the server's BYE and closing the stream are expected, not news.
    logging_out: bool,
    /// The server marked a completion `[THROTTLED]` (and it was reported).
    throttled: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.host)
            .field("alive", &self.conn.is_some())
            .field("lost", &self.lost)
            .finish()
    }
}

impl Session {
    pub fn new(transport: Transport, host: &str, timeout: Duration) -> Self {
        Self {
            conn: Some(Client::new(transport)),
            host: host.to_owned(),
            timeout,
            lost: None,
            next_tag: 1,
            stash: HashMap::new(),
            literal: LiteralMode::Synchronizing,
            writing: false,
            logging_out: false,
            throttled: false,
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn set_literal_mode(&mut self, mode: LiteralMode) {
        self.literal = mode;
    }

    pub fn is_alive(&self) -> bool {
        self.conn.is_some()
    }

    /// The raw stream, for STARTTLS. Anything the server sent after the tagged OK is discarded
    /// with the parser's buffer, as RFC 3501 §6.2.1 wants (no response injection before TLS).
    pub fn into_transport(mut self) -> Option<Transport> {
        self.conn.take().map(Client::into_inner)
    }

    fn kill(&mut self, reason: String) {
        if self.conn.take().is_some() {
            if self.logging_out {
                tracing::debug!(host = %self.host, "imap connection closed: {reason}");
            } else {
                tracing::warn!(host = %self.host, "imap connection abandoned: {reason}");
            }
        }
        if self.lost.is_none() {
            self.lost = Some(reason);
        }
    }

    /// Marks the session dead and returns the error every later call will return too.
    pub fn poison(&mut self, reason: impl Into<String>) -> StoreError {
        self.kill(reason.into());
        self.lost_error()
    }

    fn lost_error(&self) -> StoreError {
        lost_error(&self.host, self.lost.as_deref())
    }

    /// How long any answer may take (the account's `timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The result of a step the caller ran under `tokio::time::timeout(self.timeout(), ..)`:
    /// past the limit the session is dead, as after any other unanswered command.
    pub fn in_time<T>(
        &mut self,
        step: Result<Result<T, StoreError>, tokio::time::error::Elapsed>,
        command: &str,
    ) -> Result<T, StoreError> {
        step.unwrap_or_else(|_| {
            let seconds = self.timeout.as_secs();
            self.kill(format!("{command} got no completion within {seconds} s"));
            Err(StoreError::Timeout {
                host: self.host.clone(),
                seconds,
            })
        })
    }

    fn timed_out(&mut self) -> StoreError {
        let seconds = self.timeout.as_secs();
        self.kill(format!("no answer within {seconds} s"));
        StoreError::Timeout {
            host: self.host.clone(),
            seconds,
        }
    }

    fn conn(&mut self) -> Result<&mut Client<Transport>, StoreError> {
        match self.conn.as_mut() {
            Some(conn) => Ok(conn),
            None => Err(lost_error(&self.host, self.lost.as_deref())),
        }
    }

    /// Writes bytes of the current command (buffered by TLS; see [`Session::flush`]).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let timeout = self.timeout;
        let conn = self.conn()?;
        match tokio::time::timeout(timeout, conn.get_mut().write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.poison(format!("writing failed: {e}"))),
            Err(_) => Err(self.timed_out()),
        }
    }

    pub async fn flush(&mut self) -> Result<(), StoreError> {
        let timeout = self.timeout;
        let conn = self.conn()?;
        match tokio::time::timeout(timeout, conn.get_mut().flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.poison(format!("writing failed: {e}"))),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// Starts a command line: writes a fresh tag and a space, and logs `shown`.
    pub async fn begin(&mut self, shown: &str) -> Result<String, StoreError> {
        if self.writing {
            return Err(self.poison("an earlier command was interrupted while being sent"));
        }
        self.conn()?;
        let tag = format!("iw{}", self.next_tag);
        self.next_tag = self.next_tag.wrapping_add(1);
        tracing::debug!(host = %self.host, "imap > {tag} {shown}");
        self.writing = true;
        self.write(format!("{tag} ").as_bytes()).await?;
        Ok(tag)
    }

    /// Ends the command line and sends it.
    pub async fn end(&mut self) -> Result<(), StoreError> {
        self.write(b"\r\n").await?;
        self.flush().await?;
        self.writing = false;
        Ok(())
    }

    /// Announces a literal of `len` octets; the caller writes exactly that many next. Waits for
    /// the server's go-ahead unless LITERAL+/LITERAL- allow sending at once (RFC 7888).
    pub async fn literal_header(
        &mut self,
        tag: &str,
        command: &str,
        len: u64,
    ) -> Result<(), StoreError> {
        if self.literal.non_synchronizing(len) {
            self.write(format!("{{{len}+}}\r\n").as_bytes()).await
        } else {
            self.write(format!("{{{len}}}\r\n").as_bytes()).await?;
            self.flush().await?;
            self.continuation(tag, command).await
        }
    }

    /// Waits for the `+` continuation request and returns `None`; or returns the command's
    /// completion when the server answered the command before asking for more (RFC 3501 §7.5),
    /// which ends the command. Untagged data arriving first (e.g. `* 4 EXISTS`) is skipped.
    pub async fn wait_continuation(&mut self, tag: &str) -> Result<Option<Done>, StoreError> {
        loop {
            match self.recv_one().await? {
                Incoming::Continue => return Ok(None),
                Incoming::Reply(Reply::Done(done)) if done.tag == tag => {
                    self.writing = false;
                    return Ok(Some(done));
                }
                Incoming::Reply(Reply::Done(done)) => self.stash(done),
                Incoming::Reply(Reply::Data(_)) => {}
            }
        }
    }

    /// Like [`Session::wait_continuation`], with an early completion as an error.
    async fn continuation(&mut self, tag: &str, command: &str) -> Result<(), StoreError> {
        let Some(done) = self.wait_continuation(tag).await? else {
            return Ok(());
        };
        self.check(done, command)?;
        Err(StoreError::Protocol {
            host: self.host.clone(),
            command: command.to_owned(),
            detail: "the server completed the command before its literal was sent".to_owned(),
        })
    }

    /// Sends a whole command and returns its tag.
    pub async fn send(&mut self, command: &Command) -> Result<String, StoreError> {
        let tag = self.begin(&command.to_string()).await?;
        for part in &command.parts {
            match part {
                Arg::Text(text) => self.write(text.as_bytes()).await?,
                Arg::Literal(bytes) => {
                    self.literal_header(&tag, command.name, bytes.len() as u64)
                        .await?;
                    self.write(bytes).await?;
                }
            }
        }
        self.end().await?;
        Ok(tag)
    }

    /// The next response from the wire, whatever it belongs to.
    pub async fn recv(&mut self) -> Result<Reply, StoreError> {
        match self.recv_one().await? {
            Incoming::Reply(reply) => Ok(reply),
            // A continuation nobody asked for: the server expects bytes we will not send.
            Incoming::Continue => {
                Err(self.poison("unexpected continuation request from the server"))
            }
        }
    }

    /// The next response or continuation request, within the session's timeout.
    pub async fn recv_one(&mut self) -> Result<Incoming, StoreError> {
        self.recv_within(true).await
    }

    /// Like [`Session::recv_one`] but with no time limit, for IDLE (RFC 2177), where silence is
    /// normal and the caller bounds the wait with its own timer. Cancel-safe: async-imap keeps
    /// partly read responses in its buffer, so dropping the future loses nothing.
    pub async fn recv_untimed(&mut self) -> Result<Incoming, StoreError> {
        self.recv_within(false).await
    }

    async fn recv_within(&mut self, timed: bool) -> Result<Incoming, StoreError> {
        let timeout = self.timeout;
        let conn = self.conn()?;
        // imap-proto 0.17 panics on some malformed responses (`INTERNALDATE NIL` unwraps the
        // NIL; found by tests/imap_fuzz.rs): a response that cannot be read, which drops the
        // connection like any other, not a crash of the sync or the daemon.
        let reading = std::panic::AssertUnwindSafe(conn.read_response()).catch_unwind();
        let read = if timed {
            match tokio::time::timeout(timeout, reading).await {
                Err(_) => return Err(self.timed_out()),
                Ok(read) => read,
            }
        } else {
            reading.await
        };
        let Ok(read) = read else {
            return Err(self.poison("the server sent a response the IMAP parser fails on"));
        };
        let response = match read {
            Err(e) => {
                return Err(self.poison(describe_read_error(&e)));
            }
            Ok(None) => return Err(self.poison("the server closed the connection")),
            Ok(Some(response)) => response,
        };
        let done = match response.parsed() {
            Response::Continue(_) => return Ok(Incoming::Continue),
            Response::Data {
                status: imap_proto::Status::Bye,
                outcome,
            } => {
                let text = outcome.information.as_deref().unwrap_or("").to_owned();
                return Err(self.poison(format!("the server said goodbye: {text}")));
            }
            Response::Done {
                tag,
                status,
                outcome,
            } => Done {
                tag: tag.0.clone(),
                status: match status {
                    imap_proto::Status::Ok => Status::Ok,
                    imap_proto::Status::No => Status::No,
                    imap_proto::Status::Bad => Status::Bad,
                    _ => Status::Other,
                },
                code: outcome.code.as_ref().map(|code| match code {
                    ResponseCode::AppendUid(uid_validity, uids) => Code::AppendUid {
                        uid_validity: *uid_validity,
                        uids: uids.clone(),
                    },
                    ResponseCode::Capabilities(caps) => {
                        Code::Capabilities(Capabilities::from_proto(caps))
                    }
                    other => Code::Other(format!("{other:?}")),
                }),
                text: outcome.information.as_deref().unwrap_or("").to_owned(),
            },
            _ => return Ok(Incoming::Reply(Reply::Data(response))),
        };
        tracing::debug!(host = %self.host, "imap < {} {:?} {}", done.tag, done.status, done.detail());
        if done.status == Status::Ok && !self.throttled && done.text.contains("[THROTTLED]") {
            // Gmail's mark on a command that succeeded slowly: said once per connection to
            // the log's debug level, and once an hour per server as a warning (a sync's
            // lanes and the daemon's watchers are connections of their own).
            self.throttled = true;
            if throttling_news(&self.host) {
                tracing::warn!(
                    host = %self.host,
                    "the server says it is slowing this account down ([THROTTLED]); the sync goes on at its pace"
                );
            }
        }
        Ok(Incoming::Reply(Reply::Done(done)))
    }

    /// The next response that belongs to `tag`'s command (its data, or untagged data) or its
    /// completion; other tags' completions are kept for their own callers.
    pub async fn recv_for(&mut self, tag: &str) -> Result<Reply, StoreError> {
        if let Some(done) = self.stash.remove(tag) {
            return Ok(Reply::Done(done));
        }
        loop {
            match self.recv().await? {
                Reply::Done(done) if done.tag != tag => self.stash(done),
                reply => return Ok(reply),
            }
        }
    }

    /// Keeps a completion for whoever waits for its tag.
    pub fn stash(&mut self, done: Done) {
        self.stash.insert(done.tag.clone(), done);
    }

    /// Turns a NO or BAD into [`StoreError::Refused`], or [`StoreError::Rationed`] when the
    /// server says it is rationing the account.
    pub fn check(&self, done: Done, command: &str) -> Result<Done, StoreError> {
        if let Some(wait) = done.rationed() {
            return Err(StoreError::Rationed {
                host: self.host.clone(),
                command: command.to_owned(),
                detail: done.detail(),
                wait,
            });
        }
        match done.status {
            Status::Ok => Ok(done),
            Status::No | Status::Bad => Err(StoreError::Refused {
                host: self.host.clone(),
                command: command.to_owned(),
                detail: done.detail(),
            }),
            Status::Other => Err(StoreError::Protocol {
                host: self.host.clone(),
                command: command.to_owned(),
                detail: format!("invalid completion: {}", done.detail()),
            }),
        }
    }

    /// Sends a command, skips its data and returns its completion, NO or BAD as errors.
    pub async fn run(&mut self, command: &Command) -> Result<Done, StoreError> {
        let done = self.run_unchecked(command).await?;
        self.check(done, command.name())
    }

    /// Like [`Session::run`], but a NO or BAD is returned to the caller to inspect.
    pub async fn run_unchecked(&mut self, command: &Command) -> Result<Done, StoreError> {
        let tag = self.send(command).await?;
        loop {
            if let Reply::Done(done) = self.recv_for(&tag).await? {
                return Ok(done);
            }
        }
    }

    /// LOGOUT within `limit` (or the session's timeout, if shorter), errors ignored; the session
    /// is closed afterwards.
    pub async fn logout(&mut self, limit: Duration) {
        let limit = limit.min(self.timeout);
        if self.conn.is_some() && !self.writing {
            self.logging_out = true;
            // The server's goodbye is not waited for: nothing depends on it, and it would
            // cost every run one more round trip. The server reads LOGOUT before our FIN.
            let _ = tokio::time::timeout(limit, self.send(&Command::new("LOGOUT"))).await;
        }
        if let Some(mut conn) = self.conn.take() {
            let _ = tokio::time::timeout(limit, conn.get_mut().shutdown()).await;
        }
        if self.lost.is_none() {
            self.lost = Some("the session was closed".to_owned());
        }
    }
}

fn lost_error(host: &str, lost: Option<&str>) -> StoreError {
    StoreError::ConnectionLost {
        host: host.to_owned(),
        detail: lost.unwrap_or("the session is closed").to_owned(),
    }
}

pub enum Incoming {
    /// A `+` continuation request (RFC 3501 §7.5).
    Continue,
    Reply(Reply),
}

/// Parse errors quote the whole unparsed buffer; keep messages readable.
/// What a failed read means, in words for the user. async-imap reports a stream that ends
/// inside a response as "bytes remaining in stream", and a response it cannot parse as the
/// parser's debug output followed by the whole buffer: the user is told what happened and sees
/// only the start of what the server sent (enough to recognise a proxy's error page or a
/// protocol mix-up, not a message's content).
fn describe_read_error(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return "the connection ended in the middle of a response".to_owned();
    }
    let text = e.to_string();
    match text.split_once(" during parsing of ") {
        Some((_, input)) => {
            const SHOWN: usize = 40;
            let start: String = input.chars().take(SHOWN).collect();
            let more = if input.chars().nth(SHOWN).is_some() {
                "..."
            } else {
                ""
            };
            format!("the server sent a response that is not IMAP, starting {start}{more}")
        }
        None => format!("reading failed: {}", shorten(&text)),
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_errors_are_told_in_words_with_only_the_start_of_what_came() {
        let eof = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "bytes remaining in stream",
        );
        assert_eq!(
            describe_read_error(&eof),
            "the connection ended in the middle of a response"
        );
        // As async-imap words a parse failure: the parser's debug output, then the buffer.
        let body = "x".repeat(100_000);
        let garbage = std::io::Error::other(format!(
            "Error(Error {{ input: [42, 32, 79], code: Tag }}) during parsing of {:?}",
            format!("* O\u{f6}z6 secret body {body}")
        ));
        let told = describe_read_error(&garbage);
        assert!(
            told.starts_with("the server sent a response that is not IMAP, starting \"* O"),
            "{told}"
        );
        assert!(told.ends_with("..."), "{told}");
        assert!(told.len() < 120, "{told}");
        let other = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(describe_read_error(&other).starts_with("reading failed: "));
    }

    #[test]
    fn rationing_refusals_are_told_from_errors_with_the_wait_they_ask_for() {
        let hour = Some(Duration::from_secs(3600));
        let minute = Some(Duration::from_secs(60));
        for (detail, wait) in [
            // Gmail, as recorded in public reports.
            (
                "[OVERQUOTA] Account exceeded command or bandwidth limits.",
                hour,
            ),
            (
                "[Alert] Too many simultaneous connections. (Failure)",
                minute,
            ),
            ("Success [THROTTLED]", minute),
            // RFC 5530.
            ("[UNAVAILABLE] Temporary authentication failure", minute),
            ("[INUSE] Mailbox in use", minute),
            ("[LIMIT] At maximum command limit", minute),
            // Office 365.
            (
                "Request is throttled. Suggested Backoff Time: 2500 milliseconds",
                Some(Duration::from_millis(2500)),
            ),
            (
                "Request is throttled. Suggested Backoff Time: 3 milliseconds",
                Some(Duration::from_secs(1)),
            ),
            ("[AUTHENTICATIONFAILED] Invalid credentials (Failure)", None),
            ("[TRYCREATE] Mailbox doesn't exist", None),
        ] {
            assert_eq!(rationing(detail), wait, "{detail}");
        }
        let ok = Done {
            tag: "a1".into(),
            status: Status::Ok,
            code: None,
            text: "Success [THROTTLED]".into(),
        };
        assert_eq!(ok.rationed(), None, "a slowed success is no refusal");
    }

    #[test]
    fn commands_never_show_literals_or_hidden_text() {
        let login = Command::new("LOGIN")
            .text(" ")
            .string("me")
            .text(" ")
            .string("pässwörd");
        assert_eq!(login.to_string(), "LOGIN \"me\" {10}");
        let login = login.shown_as("LOGIN \"me\" <password>");
        assert_eq!(format!("{login:?}"), "Command(LOGIN \"me\" <password>)");
    }

    #[test]
    fn long_parse_errors_are_cut() {
        let long = "é".repeat(400);
        let short = shorten(&long);
        assert!(short.len() <= 304 && short.ends_with("..."));
    }
}
