//! Deterministic, realistic test messages.
//!
//! The same `(seed, i)` always yields the same bytes, on every machine, so a
//! failing test can be replayed. Messages use CRLF line endings throughout
//! (what IMAP servers store and return), carry a unique Message-ID, and vary
//! in shape: plain 7-bit text, quoted-printable UTF-8, multipart/alternative,
//! multipart/mixed with a base64 attachment, and RFC 2047 encoded-words in
//! headers.

#![allow(dead_code)]

/// xorshift64* — tiny, fast, and good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 step: nearby seeds must not give similar streams, and
        // xorshift must never start from 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

const ASCII_NAMES: &[&str] = &[
    "Alice Example",
    "Bob Builder",
    "Carol Danvers",
    "Dave Null",
    "Eve Listener",
    "Mallory Mid",
    "Trent Trusted",
    "Peggy Prover",
];

const UNICODE_NAMES: &[&str] = &[
    "Jürgen Müller",
    "Zoë Ångström",
    "José Núñez",
    "Łukasz Żółć",
    "Søren Kierkegård",
    "山田 太郎",
    "Анна Каренина",
];

const WORDS: &[&str] = &[
    "meeting",
    "report",
    "quarterly",
    "budget",
    "draft",
    "review",
    "please",
    "attached",
    "thanks",
    "schedule",
    "update",
    "project",
    "server",
    "backup",
    "invoice",
    "holiday",
    "lunch",
    "notes",
    "agenda",
    "follow",
    "up",
    "question",
    "answer",
    "deadline",
    "release",
    "version",
    "patch",
    "the",
    "a",
    "and",
    "of",
    "to",
    "in",
    "for",
    "on",
    "with",
    "is",
    "we",
    "you",
    "it",
    "this",
];

const UNICODE_WORDS: &[&str] = &[
    "Grüße",
    "Entwürfe",
    "café",
    "naïve",
    "Straße",
    "Überprüfung",
    "façade",
    "smörgåsbord",
    "日本語",
    "Привет",
    "ελληνικά",
    "🎉",
    "✓",
    "€100",
    "piñata",
];

const DOMAINS: &[&str] = &[
    "example.org",
    "example.com",
    "mail.example.net",
    "xn--mnchen-3ya.example",
];

const TIMEZONES: &[(&str, i64)] = &[
    ("+0000", 0),
    ("+0100", 3600),
    ("+0200", 7200),
    ("-0500", -18000),
    ("-0800", -28800),
    ("+0530", 19800),
    ("+0900", 32400),
];

/// The Message-ID (with angle brackets) that [`message`] gives `(seed, i)`.
pub fn message_id(seed: u64, i: usize) -> String {
    format!("<{seed:x}.{i}@corpus.idlewild.test>")
}

/// The `i`-th message of the corpus `seed`: 300 B to about 50 KB.
pub fn message(seed: u64, i: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    // Log-uniform size: mostly small mails, some large ones.
    let target = (300.0 * (50_000.0f64 / 300.0).powf(rng.below(10_001) as f64 / 10_000.0)) as usize;

    let mut out = String::new();
    let from = address(&mut rng);
    header(&mut out, "Return-Path", &format!("<{}>", from.1));
    header(&mut out, "From", &mailbox(&from));
    let to: Vec<String> = (0..rng.range(1, 3))
        .map(|_| mailbox(&address(&mut rng)))
        .collect();
    header(&mut out, "To", &to.join(",\r\n "));
    if rng.chance(20) {
        header(&mut out, "Cc", &mailbox(&address(&mut rng)));
    }
    header(&mut out, "Subject", &subject(&mut rng));
    header(&mut out, "Date", &date(&mut rng));
    header(&mut out, "Message-ID", &message_id(seed, i));
    if rng.chance(30) && i > 0 {
        let parent = message_id(seed, rng.below(i));
        header(&mut out, "In-Reply-To", &parent);
        header(&mut out, "References", &parent);
    }
    header(&mut out, "MIME-Version", "1.0");

    let kind = rng.below(4);
    let body_budget = target.saturating_sub(out.len() + 200);
    match kind {
        0 => {
            header(&mut out, "Content-Type", "text/plain; charset=us-ascii");
            header(&mut out, "Content-Transfer-Encoding", "7bit");
            out.push_str("\r\n");
            out.push_str(&ascii_text(&mut rng, body_budget));
        }
        1 => {
            header(&mut out, "Content-Type", "text/plain; charset=utf-8");
            header(&mut out, "Content-Transfer-Encoding", "quoted-printable");
            out.push_str("\r\n");
            out.push_str(&quoted_printable(&unicode_text(
                &mut rng,
                body_budget * 2 / 3,
            )));
        }
        2 => {
            let boundary = format!("=_alt_{:016x}", rng.next_u64());
            header(
                &mut out,
                "Content-Type",
                &format!("multipart/alternative;\r\n boundary=\"{boundary}\""),
            );
            out.push_str("\r\nThis is a multi-part message in MIME format.\r\n");
            let text = unicode_text(&mut rng, body_budget / 3);
            part(
                &mut out,
                &boundary,
                "text/plain; charset=utf-8",
                "quoted-printable",
            );
            out.push_str(&quoted_printable(&text));
            part(
                &mut out,
                &boundary,
                "text/html; charset=utf-8",
                "quoted-printable",
            );
            let html = format!(
                "<html><body><p>{}</p></body></html>",
                text.replace("\r\n", "<br>\r\n")
            );
            out.push_str(&quoted_printable(&html));
            out.push_str(&format!("\r\n--{boundary}--\r\n"));
        }
        _ => {
            let boundary = format!("=_mix_{:016x}", rng.next_u64());
            header(
                &mut out,
                "Content-Type",
                &format!("multipart/mixed;\r\n boundary=\"{boundary}\""),
            );
            out.push_str("\r\nThis is a multi-part message in MIME format.\r\n");
            part(&mut out, &boundary, "text/plain; charset=us-ascii", "7bit");
            let text_len = body_budget / 4;
            out.push_str(&ascii_text(&mut rng, text_len));
            let name = format!("{}-{}.bin", rng.pick(WORDS), rng.below(1000));
            let mut data = vec![0u8; (body_budget.saturating_sub(text_len)) * 3 / 4];
            rng.fill(&mut data);
            out.push_str(&format!(
                "\r\n--{boundary}\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
                 Content-Disposition: attachment; filename=\"{name}\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n"
            ));
            out.push_str(&base64_lines(&data));
            out.push_str(&format!("--{boundary}--\r\n"));
        }
    }
    let mut bytes = out.into_bytes();
    // Headers and MIME scaffolding alone may fall short of the minimum.
    while bytes.len() < 300 {
        bytes.extend_from_slice(b"Padding to reach the minimum size of a realistic mail.\r\n");
    }
    bytes
}

/// A valid multipart/mixed message of at least `bytes` bytes (at most ~100
/// more) whose bulk is one base64-encoded attachment of pseudo-random data.
pub fn big_message(seed: u64, bytes: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ 0x5EED_B16B_16B1_6000);
    let boundary = format!("=_big_{:016x}", rng.next_u64());
    let from = address(&mut rng);
    let to = address(&mut rng);
    let mut head = String::new();
    header(&mut head, "From", &mailbox(&from));
    header(&mut head, "To", &mailbox(&to));
    header(
        &mut head,
        "Subject",
        &format!("Large attachment ({bytes} bytes)"),
    );
    header(&mut head, "Date", &date(&mut rng));
    header(
        &mut head,
        "Message-ID",
        &format!("<{seed:x}.big.{bytes}@corpus.idlewild.test>"),
    );
    header(&mut head, "MIME-Version", "1.0");
    header(
        &mut head,
        "Content-Type",
        &format!("multipart/mixed;\r\n boundary=\"{boundary}\""),
    );
    head.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         The attachment holds pseudo-random data.\r\n\
         \r\n--{boundary}\r\nContent-Type: application/octet-stream; name=\"blob.bin\"\r\n\
         Content-Disposition: attachment; filename=\"blob.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    ));
    let tail = format!("--{boundary}--\r\n");
    // 57 raw bytes make one 76-character base64 line plus CRLF.
    let room = bytes.saturating_sub(head.len() + tail.len());
    let mut data = vec![0u8; room.div_ceil(78) * 57];
    rng.fill(&mut data);
    let mut out = head.into_bytes();
    out.extend_from_slice(base64_lines(&data).as_bytes());
    out.extend_from_slice(tail.as_bytes());
    out
}

fn header(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    out.push_str(value);
    out.push_str("\r\n");
}

fn part(out: &mut String, boundary: &str, content_type: &str, encoding: &str) {
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n"
    ));
}

/// (display name, address)
fn address(rng: &mut Rng) -> (String, String) {
    let name = if rng.chance(30) {
        rng.pick(UNICODE_NAMES)
    } else {
        rng.pick(ASCII_NAMES)
    };
    let local: String = rng.pick(ASCII_NAMES).to_ascii_lowercase().replace(' ', ".");
    (
        name.to_owned(),
        format!("{local}{}@{}", rng.below(100), rng.pick(DOMAINS)),
    )
}

fn mailbox((name, addr): &(String, String)) -> String {
    if name.is_ascii() {
        format!("\"{name}\" <{addr}>")
    } else {
        format!("{} <{addr}>", q_encoded_word(name))
    }
}

fn subject(rng: &mut Rng) -> String {
    let unicode = rng.chance(35);
    let words = rng.range(2, 9);
    let mut s = String::new();
    if rng.chance(25) {
        s.push_str(rng.pick(&["Re: ", "Fwd: ", "AW: ", "[list] "]));
    }
    for n in 0..words {
        if n > 0 {
            s.push(' ');
        }
        s.push_str(if unicode && rng.chance(40) {
            rng.pick(UNICODE_WORDS)
        } else {
            rng.pick(WORDS)
        });
    }
    if s.is_ascii() { s } else { b_encoded_words(&s) }
}

/// RFC 5322 date between 2019 and 2024 in a random zone.
fn date(rng: &mut Rng) -> String {
    const DAYS: &[&str] = &["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: &[&str] = &[
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let utc = 1_546_300_800 + rng.below(5 * 365 * 86_400) as i64;
    let (zone, offset) = TIMEZONES[rng.below(TIMEZONES.len())];
    let local = utc + offset;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d} {} {y} {:02}:{:02}:{:02} {zone}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn ascii_text(rng: &mut Rng, len: usize) -> String {
    text(rng, len, false)
}

fn unicode_text(rng: &mut Rng, len: usize) -> String {
    text(rng, len, true)
}

/// Paragraphs of words, lines at most ~72 characters, CRLF-terminated.
fn text(rng: &mut Rng, len: usize, unicode: bool) -> String {
    let mut out = String::new();
    let mut line = String::new();
    while out.len() + line.len() < len.max(20) {
        let word = if unicode && rng.chance(15) {
            rng.pick(UNICODE_WORDS)
        } else {
            rng.pick(WORDS)
        };
        if !line.is_empty() && line.chars().count() + word.chars().count() >= 72 {
            out.push_str(&line);
            out.push_str("\r\n");
            line.clear();
            if rng.chance(10) {
                out.push_str("\r\n");
            }
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push_str("\r\n");
    out
}

/// RFC 2045 quoted-printable of CRLF-separated text; lines at most 76 chars.
fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    for line in text.split("\r\n") {
        let mut width = 0;
        let bytes = line.as_bytes();
        for (n, &b) in bytes.iter().enumerate() {
            let last = n + 1 == bytes.len();
            let literal = (b == b' ' || b == b'\t') && !last || (b.is_ascii_graphic() && b != b'=');
            let piece = if literal {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            if width + piece.len() > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            out.push_str(&piece);
            width += piece.len();
        }
        out.push_str("\r\n");
    }
    // split() yields a final empty piece for text ending in CRLF.
    if text.ends_with("\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

/// One RFC 2047 Q encoded-word (names are short enough for one word).
fn q_encoded_word(s: &str) -> String {
    let mut out = String::from("=?UTF-8?Q?");
    for &b in s.as_bytes() {
        match b {
            b' ' => out.push('_'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' => out.push(b as char),
            _ => out.push_str(&format!("={b:02X}")),
        }
    }
    out.push_str("?=");
    out
}

/// RFC 2047 B encoded-words, each under 76 characters, folded with CRLF SP.
fn b_encoded_words(s: &str) -> String {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for ch in s.chars() {
        if chunk.len() + ch.len_utf8() > 42 {
            words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(ch);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = match *chunk {
            [a, b, c] => u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c),
            [a, b] => u32::from(a) << 16 | u32::from(b) << 8,
            [a] => u32::from(a) << 16,
            _ => unreachable!("chunks(3) yields 1 to 3 bytes"),
        };
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64 in 76-character lines, each ending in CRLF.
fn base64_lines(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() / 57 * 78 + 80);
    for chunk in data.chunks(57) {
        out.push_str(&base64(chunk));
        out.push_str("\r\n");
    }
    out
}
