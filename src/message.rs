//! Byte-level helpers for message content: line-ending conversion for streaming between the
//! Maildir form (LF) and the IMAP wire form (CRLF), and the content fingerprint that finds a copy
//! of a message again after a crash.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::model::Fingerprint;

/// Converts CRLF to LF in a stream of chunks; a CR at the end of one chunk is held back until
/// the next one shows whether an LF follows.
#[derive(Debug, Default)]
pub struct CrlfToLf {
    pending_cr: bool,
}

impl CrlfToLf {
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + 1);
        if self.pending_cr {
            // Still undecided with an empty chunk: the next one tells.
            let Some(&first) = input.first() else {
                return;
            };
            self.pending_cr = false;
            if first != b'\n' {
                out.push(b'\r');
            }
        }
        // Whole runs without CR are copied at once: this is the hot loop of every download.
        while let Some(at) = memchr::memchr(b'\r', input) {
            out.extend_from_slice(&input[..at]);
            match input.get(at + 1) {
                // The CR of a CRLF goes; the LF starts the next run.
                Some(b'\n') => {}
                Some(_) => out.push(b'\r'),
                None => self.pending_cr = true,
            }
            input = &input[at + 1..];
        }
        out.extend_from_slice(input);
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

/// Converts bare LF to CRLF in a stream of chunks, leaving existing CRLF pairs alone.
#[derive(Debug, Default)]
pub struct LfToCrlf {
    last_was_cr: bool,
}

impl LfToCrlf {
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 16 + 1);
        while let Some(at) = memchr::memchr(b'\n', input) {
            let before_cr = match at {
                0 => self.last_was_cr,
                _ => input[at - 1] == b'\r',
            };
            out.extend_from_slice(&input[..at]);
            if !before_cr {
                out.push(b'\r');
            }
            out.push(b'\n');
            self.last_was_cr = false;
            input = &input[at + 1..];
        }
        if let Some(&last) = input.last() {
            self.last_was_cr = last == b'\r';
        }
        out.extend_from_slice(input);
    }
}

/// How many bytes the canonical (CRLF) form of a message of this chunk stream takes, and its
/// SHA-256 and Message-ID: the identity used to re-find a copy, whatever line endings a store
/// keeps.
pub fn fingerprint(mut reader: impl Read) -> io::Result<Fingerprint> {
    let mut hasher = Sha256::new();
    let mut converter = LfToCrlf::default();
    let mut header = HeaderScanner::default();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(buf.len() * 2);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.clear();
        converter.push(&buf[..n], &mut out);
        header.push(&out);
        hasher.update(&out);
        size += out.len() as u64;
    }
    Ok(Fingerprint {
        size,
        sha256: hasher.finalize().into(),
        message_id: header.message_id(),
    })
}

/// Collects the header section (bounded) so the Message-ID can be read from it.
#[derive(Debug, Default)]
struct HeaderScanner {
    header: Vec<u8>,
    done: bool,
}

impl HeaderScanner {
    const LIMIT: usize = 256 * 1024;

    fn push(&mut self, chunk: &[u8]) {
        if self.done {
            return;
        }
        let room = Self::LIMIT.saturating_sub(self.header.len());
        self.header
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        if let Some(end) = find(&self.header, b"\r\n\r\n") {
            self.header.truncate(end + 2);
            self.done = true;
        } else if self.header.len() >= Self::LIMIT {
            self.done = true;
        }
    }

    fn message_id(&self) -> Option<String> {
        message_id(&self.header)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The Message-ID of a header section (any line endings), unfolded and without whitespace.
pub fn message_id(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("message-id") {
            continue;
        }
        let mut value = value.to_owned();
        while let Some(next) = lines.peek() {
            if next.starts_with([' ', '\t']) {
                value.push_str(next);
                lines.next();
            } else {
                break;
            }
        }
        let id: String = value.split_whitespace().collect();
        return (!id.is_empty()).then_some(id);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crlf_to_lf_chunked(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut c = CrlfToLf::default();
        let mut out = Vec::new();
        for part in input.chunks(chunk) {
            c.push(part, &mut out);
        }
        c.finish(&mut out);
        out
    }

    #[test]
    fn crlf_conversion_is_independent_of_chunk_boundaries() {
        let input = b"a\r\nb\rc\r\n\r\nd\r";
        for chunk in 1..input.len() + 1 {
            assert_eq!(crlf_to_lf_chunked(input, chunk), b"a\nb\rc\n\nd\r");
        }
    }

    /// The conversions byte by byte, as the definition the fast versions must agree with.
    fn crlf_to_lf_reference(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pending_cr = false;
        for &b in input {
            if std::mem::take(&mut pending_cr) && b != b'\n' {
                out.push(b'\r');
            }
            if b == b'\r' {
                pending_cr = true;
            } else {
                out.push(b);
            }
        }
        if pending_cr {
            out.push(b'\r');
        }
        out
    }

    fn lf_to_crlf_reference(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut last_was_cr = false;
        for &b in input {
            if b == b'\n' && !last_was_cr {
                out.push(b'\r');
            }
            out.push(b);
            last_was_cr = b == b'\r';
        }
        out
    }

    #[test]
    fn run_copying_conversions_agree_with_byte_by_byte_ones_on_any_chunking() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for _ in 0..2000 {
            let len = next(40) as usize;
            let input: Vec<u8> = (0..len).map(|_| b"a\r\n"[next(3) as usize]).collect();
            let mut chunks = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let (a, b) = rest.split_at((next(6) as usize).min(rest.len()));
                chunks.push(a);
                rest = b;
            }
            let mut to_lf = CrlfToLf::default();
            let mut to_crlf = LfToCrlf::default();
            let (mut lf, mut crlf) = (Vec::new(), Vec::new());
            for chunk in &chunks {
                to_lf.push(chunk, &mut lf);
                to_crlf.push(chunk, &mut crlf);
            }
            to_lf.finish(&mut lf);
            assert_eq!(lf, crlf_to_lf_reference(&input), "{input:?} in {chunks:?}");
            assert_eq!(
                crlf,
                lf_to_crlf_reference(&input),
                "{input:?} in {chunks:?}"
            );
        }
    }

    #[test]
    fn lf_to_crlf_keeps_existing_pairs() {
        let mut c = LfToCrlf::default();
        let mut out = Vec::new();
        c.push(b"a\nb\r", &mut out);
        c.push(b"\nc\n", &mut out);
        assert_eq!(out, b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn fingerprint_is_the_same_for_both_line_ending_forms() {
        let lf = b"Message-ID:\n <abc@x>\nSubject: x\n\nbody\n";
        let crlf = b"Message-ID:\r\n <abc@x>\r\nSubject: x\r\n\r\nbody\r\n";
        let a = fingerprint(&lf[..]).unwrap();
        let b = fingerprint(&crlf[..]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.size, crlf.len() as u64);
        assert_eq!(a.message_id.as_deref(), Some("<abc@x>"));
    }

    #[test]
    fn message_id_is_only_read_from_the_header() {
        assert_eq!(message_id(b"Subject: a\n\nMessage-ID: <no@x>\n"), None);
    }
}
