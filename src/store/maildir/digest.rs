//! What a Maildir folder's file names were at the end of a sync, in a few bytes.
//!
//! A sync that writes to a folder changes its directory times, so the change token taken before
//! the listing no longer matches, and a token taken after the writes is too young to trust (a
//! change within the filesystem's timestamp granularity would not show). Instead the sync
//! records a digest of the names it left: in a Maildir the names are the whole state (a flag
//! change is a rename, a new message a new name, a deletion a missing one), so a folder whose
//! names still give the same digest is as that sync left it, whatever its times say.
//!
//! The digest is a sum of per-name SHA-256 prefixes, so it does not depend on the order in
//! which names are read or were added.

use sha2::{Digest, Sha256};

use super::Sub;

/// The prefix of a recorded token that is a digest of names, never a directory time.
const PREFIX: &str = "names:";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct NamesDigest {
    count: u64,
    sum: u128,
}

impl NamesDigest {
    pub(super) fn add(&mut self, sub: Sub, file_name: &str) {
        let mut hasher = Sha256::new();
        hasher.update(sub.name().as_bytes());
        hasher.update(b"/");
        hasher.update(file_name.as_bytes());
        let hash = hasher.finalize();
        let mut prefix = [0u8; 16];
        prefix.copy_from_slice(&hash[..16]);
        self.count += 1;
        self.sum = self.sum.wrapping_add(u128::from_be_bytes(prefix));
    }

    /// The token recorded for the folder: never equal to a directory-time token.
    pub(super) fn token(&self) -> String {
        format!("{PREFIX}{}:{:032x}", self.count, self.sum)
    }

    /// Whether a recorded token is a digest of names (to be checked by reading the names).
    pub(super) fn is_digest(token: &str) -> bool {
        token.starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_depends_on_the_names_not_their_order() {
        let mut a = NamesDigest::default();
        a.add(Sub::New, "1.x");
        a.add(Sub::Cur, "2.x:2,S");
        let mut b = NamesDigest::default();
        b.add(Sub::Cur, "2.x:2,S");
        b.add(Sub::New, "1.x");
        assert_eq!(a.token(), b.token());
        assert!(NamesDigest::is_digest(&a.token()));

        // A flag change, a move from new/ to cur/, a deletion: each shows.
        let mut renamed = NamesDigest::default();
        renamed.add(Sub::New, "1.x");
        renamed.add(Sub::Cur, "2.x:2,RS");
        let mut moved = NamesDigest::default();
        moved.add(Sub::Cur, "1.x");
        moved.add(Sub::Cur, "2.x:2,S");
        let mut fewer = NamesDigest::default();
        fewer.add(Sub::New, "1.x");
        for other in [renamed, moved, fewer] {
            assert_ne!(a.token(), other.token());
        }
        assert!(!NamesDigest::is_digest("12.1700000000.5:13.1700000000.7"));
    }
}
