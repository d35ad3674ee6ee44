//! Fuzzing of the IMAP response handling as a whole: a server on loopback answers every command
//! of a sync with what proptest makes of near-valid responses — folder names quoted, as
//! literals, in modified UTF-7 or as any bytes; numbers at the edges of their types; FETCH
//! items with bodies whose literal lengths may lie, flags, dates, Gmail's labels; response
//! codes; BYE — or with random bytes. idlewild's IMAP store runs a whole sync against it into a
//! Maildir in a temporary directory. Whatever comes, the sync ends, with or without an error,
//! within its timeouts; nothing panics; and nothing is written outside the Maildir and the
//! state. (A scripted server is the only way to send a client such input: no real server does.)
//!
//! `scripts/test.sh` runs proptest's default 256 cases; RELIABILITY.md has the long-run command.

use std::path::Path;
use std::time::Duration;

use idlewild::config::{ImapConfig, MaildirConfig, MaildirLayout, Secret, TlsMode};
use idlewild::credentials::Credentials;
use idlewild::engine::{NoObserver, SyncOptions, sync_folders};
use idlewild::state::StateDb;
use idlewild::store::imap::ImapStore;
use idlewild::store::maildir::MaildirStore;
use proptest::prelude::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// One line (or a line with its literal) the server may send.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("1".to_owned()),
        Just("2147483648".to_owned()),
        Just("4294967295".to_owned()),
        Just("4294967296".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("-1".to_owned()),
        (0u32..50).prop_map(|n| n.to_string()),
        any::<u32>().prop_map(|n| n.to_string()),
    ]
}

fn astring() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Atoms and quoted strings of plausible names.
        "[A-Za-z0-9/._&-]{0,12}".prop_map(|s| s.into_bytes()),
        "[ -~]{0,16}".prop_map(
            |s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")).into_bytes()
        ),
        // Modified UTF-7, well and badly formed.
        "&[A-Za-z0-9+,]{0,8}-?[a-z]{0,4}".prop_map(|s| format!("\"{s}\"").into_bytes()),
        Just(b"INBOX".to_vec()),
        Just(b"\"..\"".to_vec()),
        Just(b"\"/\"".to_vec()),
        Just(b"NIL".to_vec()),
        // A literal with any bytes in it.
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(|b| {
            let mut out = format!("{{{}}}\r\n", b.len()).into_bytes();
            out.extend(b);
            out
        }),
    ]
}

fn flags() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("\\Seen"),
            Just("\\Flagged"),
            Just("\\Deleted"),
            Just("\\Answered"),
            Just("\\Draft"),
            Just("\\Recent"),
            Just("\\*"),
            Just("$Junk"),
            Just("NonJunk"),
            Just("\\Bogus"),
            Just("a]b"),
        ],
        0..4,
    )
    .prop_map(|f| format!("({})", f.join(" ")))
}

fn date() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"17-Jul-1996 02:44:25 -0700\"".to_owned()),
        Just("\"01-Jan-1970 00:00:00 +0000\"".to_owned()),
        Just("\"31-Feb-2024 25:61:61 +9999\"".to_owned()),
        "[ -~]{0,26}".prop_map(|s| format!("\"{}\"", s.replace(['\\', '"'], ""))),
        Just("NIL".to_owned()),
    ]
}

/// A body as a literal, whose announced length may be right or not.
fn body() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(any::<u8>(), 0..300),
        prop_oneof![4 => Just(0i64), 1 => -3i64..3],
        prop_oneof![
            Just("BODY[]"),
            Just("BINARY[]"),
            Just("BODY[]<0>"),
            Just("BINARY[]<0>"),
            Just("RFC822")
        ],
    )
        .prop_map(|(mut bytes, skew, item)| {
            if bytes.is_empty() {
                bytes = b"Message-ID: <x@y>\r\n\r\nhi\r\n".to_vec();
            }
            let len = (bytes.len() as i64 + skew).max(0);
            let mut out = format!("{item} {{{len}}}\r\n").into_bytes();
            out.extend(bytes);
            out
        })
}

fn fetch_item() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        number().prop_map(|n| format!("UID {n}").into_bytes()),
        flags().prop_map(|f| format!("FLAGS {f}").into_bytes()),
        number().prop_map(|n| format!("RFC822.SIZE {n}").into_bytes()),
        date().prop_map(|d| format!("INTERNALDATE {d}").into_bytes()),
        number().prop_map(|n| format!("MODSEQ ({n})").into_bytes()),
        number().prop_map(|n| format!("X-GM-MSGID {n}").into_bytes()),
        astring().prop_map(|s| {
            let mut out = b"X-GM-LABELS (".to_vec();
            out.extend(s);
            out.push(b')');
            out
        }),
        body(),
    ]
}

fn untagged() -> impl Strategy<Value = Vec<u8>> {
    let line = |s: String| s.into_bytes();
    prop_oneof![
        3 => (flags(), prop_oneof![Just("\"/\""), Just("\".\""), Just("NIL"), Just("\"\\\\\"")], astring())
            .prop_map(|(attrs, delim, name)| {
                let mut out = format!("* LIST {attrs} {delim} ").into_bytes();
                out.extend(name);
                out
            }),
        2 => (astring(), number(), number(), number(), number()).prop_map(|(name, m, n, v, h)| {
            let mut out = b"* STATUS ".to_vec();
            out.extend(name);
            out.extend(format!(" (MESSAGES {m} UIDNEXT {n} UIDVALIDITY {v} HIGHESTMODSEQ {h})").into_bytes());
            out
        }),
        3 => (number(), proptest::collection::vec(fetch_item(), 0..5)).prop_map(|(n, items)| {
            let mut out = format!("* {n} FETCH (").into_bytes();
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend(item);
            }
            out.push(b')');
            out
        }),
        1 => number().prop_map(move |n| line(format!("* {n} EXISTS"))),
        1 => number().prop_map(move |n| line(format!("* {n} EXPUNGE"))),
        1 => (prop_oneof![Just("UIDVALIDITY"), Just("UIDNEXT"), Just("HIGHESTMODSEQ")], number())
            .prop_map(move |(code, n)| line(format!("* OK [{code} {n}] x"))),
        1 => flags().prop_map(move |f| line(format!("* OK [PERMANENTFLAGS {f}] x"))),
        1 => flags().prop_map(move |f| line(format!("* FLAGS {f}"))),
        1 => "[0-9:,*]{1,12}".prop_map(move |s| line(format!("* VANISHED (EARLIER) {s}"))),
        1 => "[0-9:,*]{1,12}".prop_map(move |s| line(format!("* ESEARCH (TAG \"x\") UID ALL {s}"))),
        1 => "[0-9 ]{0,12}".prop_map(move |s| line(format!("* SEARCH {s}"))),
        1 => Just(b"* ENABLED QRESYNC".to_vec()),
        1 => Just(b"* BYE going away".to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

/// How a command is answered: untagged lines, then a completion.
#[derive(Debug, Clone)]
struct Answer {
    untagged: Vec<Vec<u8>>,
    /// "OK", "NO", "BAD" with a code or not; `None`: no completion, the connection is closed.
    done: Option<String>,
}

fn answer() -> impl Strategy<Value = Answer> {
    (
        proptest::collection::vec(untagged(), 0..6),
        prop_oneof![
            12 => Just(Some("OK done".to_owned())),
            2 => (number(), number()).prop_map(|(v, u)| Some(format!("OK [APPENDUID {v} {u}] done"))),
            1 => Just(Some("OK [READ-ONLY] done".to_owned())),
            1 => Just(Some("NO [UNAVAILABLE] later".to_owned())),
            1 => Just(Some("NO nope".to_owned())),
            1 => Just(Some("BAD what".to_owned())),
            1 => Just(None),
        ],
    )
        .prop_map(|(untagged, done)| Answer { untagged, done })
}

fn greeting() -> impl Strategy<Value = Vec<u8>> {
    let caps = proptest::collection::vec(
        prop_oneof![
            Just("CONDSTORE"),
            Just("QRESYNC"),
            Just("ENABLE"),
            Just("LIST-STATUS"),
            Just("UIDPLUS"),
            Just("MOVE"),
            Just("LITERAL+"),
            Just("MULTIAPPEND"),
            Just("BINARY"),
            Just("ESEARCH"),
            Just("X-GM-EXT-1"),
            Just("SPECIAL-USE"),
            Just("ID"),
            Just("AUTH=PLAIN"),
            Just("SASL-IR"),
        ],
        0..12,
    );
    prop_oneof![
        8 => caps.prop_map(|c| format!("* OK [CAPABILITY IMAP4rev1 {}] hello\r\n", c.join(" ")).into_bytes()),
        1 => Just(b"* OK hello\r\n".to_vec()),
        1 => Just(b"* PREAUTH [CAPABILITY IMAP4rev1] welcome\r\n".to_vec()),
        1 => Just(b"* BYE no\r\n".to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..60),
    ]
}

/// Serves one connection: `answers[i % len]` answers the i-th command.
async fn serve(stream: tokio::net::TcpStream, greeting: Vec<u8>, answers: Vec<Answer>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    if write.write_all(&greeting).await.is_err() {
        return;
    }
    let mut n = 0;
    loop {
        // A command: a line, and each literal it announces with the rest that follows it.
        let mut line = Vec::new();
        let mut command = Vec::new();
        loop {
            line.clear();
            match read.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            command.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            let Some(open) = text.rfind('{').filter(|_| text.ends_with('}')) else {
                break;
            };
            let inner = &text[open + 1..text.len() - 1];
            let (digits, plus) = match inner.strip_suffix('+') {
                Some(d) => (d, true),
                None => (inner, false),
            };
            let Ok(len) = digits.parse::<usize>() else {
                break;
            };
            if !plus && write.write_all(b"+ go\r\n").await.is_err() {
                return;
            }
            let mut literal = vec![0; len.min(1 << 24)];
            if read.read_exact(&mut literal).await.is_err() {
                return;
            }
        }
        let text = String::from_utf8_lossy(&command).into_owned();
        let mut words = text.split_whitespace();
        let tag = words.next().unwrap_or("*").to_owned();
        let name = words.next().unwrap_or("").to_ascii_uppercase();
        if name == "IDLE" {
            // Answered at DONE.
            if write.write_all(b"+ idling\r\n").await.is_err() {
                return;
            }
            line.clear();
            if read.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                return;
            }
        }
        if name == "AUTHENTICATE" && text.split_whitespace().count() == 3 {
            if write.write_all(b"+ \r\n").await.is_err() {
                return;
            }
            line.clear();
            if read.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                return;
            }
        }
        let answer = &answers[n % answers.len()];
        n += 1;
        let mut out = Vec::new();
        for u in &answer.untagged {
            out.extend_from_slice(u);
            out.extend_from_slice(b"\r\n");
        }
        if name == "LOGOUT" {
            out.extend_from_slice(b"* BYE bye\r\n");
        }
        match &answer.done {
            Some(done) => out.extend_from_slice(format!("{tag} {done}\r\n").as_bytes()),
            None => {
                let _ = write.write_all(&out).await;
                return;
            }
        }
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn config(port: u16) -> ImapConfig {
    ImapConfig {
        keywords: Default::default(),
        gmail: None,
        host: "127.0.0.1".to_owned(),
        port,
        tls: TlsMode::None,
        user: "u".to_owned(),
        credentials: Credentials::plain("test", Secret::new("p".to_owned())),
        ca_file: None,
        cert_fingerprint: None,
        timeout: Duration::from_secs(2),
        compress: Some(false),
    }
}

/// Every path under `root` lies under one of `allowed` (or is one of their ancestors).
fn nothing_outside(root: &Path, allowed: &[&Path]) -> Result<(), String> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !allowed
                .iter()
                .any(|a| path.starts_with(a) || a.starts_with(&path))
            {
                return Err(format!("{} was written outside", path.display()));
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    Ok(())
}

fn run_case(greeting: Vec<u8>, answers: Vec<Answer>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("Mail");
    let state_path = dir.path().join("state.sqlite");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&maildir).expect("maildir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = tokio::spawn(async move {
            // The sync may open several connections (lanes); each is served the same way.
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, greeting.clone(), answers.clone()));
            }
        });
        let sync = async {
            let mut remote = match ImapStore::connect(&config(port)).await {
                Ok(store) => store,
                Err(e) => return Err(e.to_string()),
            };
            let mut local = MaildirStore::new(&MaildirConfig {
                path: maildir.clone(),
                layout: MaildirLayout::default(),
                keywords: Default::default(),
            });
            let mut state = StateDb::open(&state_path).map_err(|e| e.to_string())?;
            let options = SyncOptions {
                scratch_dir: scratch.clone(),
                ..SyncOptions::default()
            };
            sync_folders(
                &mut remote,
                &mut local,
                &mut state,
                &options,
                &mut NoObserver,
                None,
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        // Every read has the 2 s timeout; a sync of a few folders that each stall once ends
        // well within a minute.
        let outcome = tokio::time::timeout(Duration::from_secs(60), sync).await;
        server.abort();
        outcome
    });
    prop_assert!(outcome.is_ok(), "the sync did not end within a minute");
    nothing_outside(
        dir.path(),
        &[
            &maildir,
            &scratch,
            dir.path().join("state.sqlite").as_path(),
            &dir.path().join("state.sqlite-wal"),
            &dir.path().join("state.sqlite-shm"),
            &dir.path().join("state.sqlite-journal"),
        ],
    )
    .map_err(TestCaseError::fail)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_server_answers_end_a_sync_without_a_panic_or_a_write_outside(
        greeting in greeting(),
        answers in proptest::collection::vec(answer(), 1..24),
    ) {
        run_case(greeting, answers)?;
    }
}

/// Found by the property above: imap-proto 0.17 unwraps `INTERNALDATE NIL`. The read fails
/// and the connection is dropped; the sync ends with an error instead of a panic.
#[test]
fn an_internaldate_of_nil_is_a_response_that_cannot_be_read_not_a_crash() {
    let greeting = b"* OK [CAPABILITY IMAP4rev1] hello\r\n".to_vec();
    let answers = vec![Answer {
        untagged: vec![b"* 1 FETCH (UID 5 INTERNALDATE NIL)".to_vec()],
        done: Some("OK done".to_owned()),
    }];
    run_case(greeting, answers).expect("ends");
}
