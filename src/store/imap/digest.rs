//! Content fingerprints computed on the fly from fetched message bytes.

use sha2::{Digest, Sha256};

use crate::message::{CrlfToLf, LfToCrlf, message_id};
use crate::model::Fingerprint;

/// Hashes a message as it streams in from the server and gives the same [`Fingerprint`] that
/// [`crate::message::fingerprint`] gives for the staged (LF) copy of it.
///
/// The server's bytes are already CRLF, so for well-formed messages hashing them directly would
/// do; passing them through the same CRLF -> LF -> CRLF steps that staging and fingerprinting
/// take makes the two agree on odd input too (bare CR or LF).
#[derive(Debug, Default)]
pub struct StreamingFingerprint {
    hasher: Sha256,
    to_lf: CrlfToLf,
    to_crlf: LfToCrlf,
    size: u64,
    header: Vec<u8>,
    header_done: bool,
    lf: Vec<u8>,
    crlf: Vec<u8>,
}

impl StreamingFingerprint {
    /// The header section read for the Message-ID stops here, as in `message::fingerprint`.
    const HEADER_LIMIT: usize = 256 * 1024;

    pub fn push(&mut self, chunk: &[u8]) {
        self.lf.clear();
        self.to_lf.push(chunk, &mut self.lf);
        self.absorb();
    }

    pub fn finish(mut self) -> Fingerprint {
        self.lf.clear();
        self.to_lf.finish(&mut self.lf);
        self.absorb();
        Fingerprint {
            size: self.size,
            sha256: self.hasher.finalize().into(),
            message_id: message_id(&self.header),
        }
    }

    fn absorb(&mut self) {
        self.crlf.clear();
        self.to_crlf.push(&self.lf, &mut self.crlf);
        self.hasher.update(&self.crlf);
        self.size += self.crlf.len() as u64;
        if !self.header_done {
            let room = Self::HEADER_LIMIT.saturating_sub(self.header.len());
            let take = self.crlf.len().min(room);
            // Only the new bytes (and three before them) can complete the first blank line.
            let from = self.header.len().saturating_sub(3);
            self.header.extend_from_slice(&self.crlf[..take]);
            if let Some(end) = self.header[from..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            {
                self.header.truncate(from + end + 2);
                self.header_done = true;
            } else if self.header.len() >= Self::HEADER_LIMIT {
                self.header_done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::fingerprint;

    fn streamed(wire: &[u8], chunk: usize) -> Fingerprint {
        let mut f = StreamingFingerprint::default();
        for part in wire.chunks(chunk.max(1)) {
            f.push(part);
        }
        f.finish()
    }

    /// What staging writes: the LF form.
    fn staged_form(wire: &[u8]) -> Vec<u8> {
        let mut c = CrlfToLf::default();
        let mut out = Vec::new();
        c.push(wire, &mut out);
        c.finish(&mut out);
        out
    }

    #[test]
    fn fetched_bytes_hash_like_the_staged_copy() {
        let mut long_header = b"Subject: x\r\n".to_vec();
        for i in 0..20_000 {
            long_header.extend_from_slice(format!("X-Filler-{i}: y\r\n").as_bytes());
        }
        long_header.extend_from_slice(b"Message-ID: <late@x>\r\n\r\nbody\r\n");
        let cases: Vec<Vec<u8>> = vec![
            b"Message-ID: <a@b>\r\nSubject: hi\r\n\r\nbody\r\nmore\r\n".to_vec(),
            b"Message-ID:\r\n <folded@b>\r\n\r\nno final newline".to_vec(),
            b"Subject: odd\rline\r\n\r\nbare\nlf and bare\rcr\r".to_vec(),
            b"".to_vec(),
            long_header,
        ];
        for wire in &cases {
            let expected = fingerprint(&staged_form(wire)[..]).unwrap();
            let chunks: &[usize] = if wire.len() > 100_000 {
                &[4093, 1 << 20]
            } else {
                &[1, 2, 3, 7, 4096, 1 << 20]
            };
            for &chunk in chunks {
                assert_eq!(streamed(wire, chunk), expected, "chunk {chunk}");
            }
        }
        // For the usual well-formed CRLF message this is just the hash of the wire bytes.
        let wire = &cases[0];
        let direct: [u8; 32] = Sha256::digest(wire).into();
        assert_eq!(streamed(wire, 5).sha256, direct);
        assert_eq!(streamed(wire, 5).message_id.as_deref(), Some("<a@b>"));
    }
}
