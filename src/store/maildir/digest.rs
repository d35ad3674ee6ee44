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
//! which names are read or were added, and a sync can keep it up to date as it writes
//! (a name added, a name taken away) without reading the folder.
//!
//! A recorded token is the digest (`names:COUNT:SUM`), the directory times (`INO.S.NS:INO.S.NS`,
//! as `dir_token` gives them), or both (`names:COUNT:SUM@TIMES`: the names were these when the
//! times were those, so while the times stay the same, so do the names).

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
        self.count = self.count.wrapping_add(1);
        self.sum = self.sum.wrapping_add(hash(sub, file_name));
    }

    /// Takes away a name that `add` put in (a file renamed or removed).
    pub(super) fn remove(&mut self, sub: Sub, file_name: &str) {
        self.count = self.count.wrapping_sub(1);
        self.sum = self.sum.wrapping_sub(hash(sub, file_name));
    }

    /// The token to record: the digest, with the directory times that stand for it if any.
    pub(super) fn token(&self, times: Option<&str>) -> String {
        match times {
            Some(times) => format!("{PREFIX}{}:{:032x}@{times}", self.count, self.sum),
            None => format!("{PREFIX}{}:{:032x}", self.count, self.sum),
        }
    }

    /// Whether a recorded token holds a digest of names.
    #[cfg(test)]
    pub(super) fn is_digest(token: &str) -> bool {
        token.starts_with(PREFIX)
    }
}

/// A recorded token taken apart; a malformed digest is none (the folder is read again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Recorded<'a> {
    pub digest: Option<NamesDigest>,
    pub times: Option<&'a str>,
}

impl<'a> Recorded<'a> {
    pub(super) fn parse(token: &'a str) -> Self {
        let Some(rest) = token.strip_prefix(PREFIX) else {
            return Self {
                digest: None,
                times: Some(token),
            };
        };
        let (digest, times) = match rest.split_once('@') {
            Some((digest, times)) => (digest, Some(times)),
            None => (rest, None),
        };
        let digest = digest.split_once(':').and_then(|(count, sum)| {
            Some(NamesDigest {
                count: count.parse().ok()?,
                sum: u128::from_str_radix(sum, 16).ok()?,
            })
        });
        match digest {
            Some(digest) => Self {
                digest: Some(digest),
                times,
            },
            None => Self {
                digest: None,
                times: None,
            },
        }
    }
}

fn hash(sub: Sub, file_name: &str) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(sub.name().as_bytes());
    hasher.update(b"/");
    hasher.update(file_name.as_bytes());
    let hash = hasher.finalize();
    let mut prefix = [0u8; 16];
    prefix.copy_from_slice(&hash[..16]);
    u128::from_be_bytes(prefix)
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
        assert_eq!(a.token(None), b.token(None));
        assert!(NamesDigest::is_digest(&a.token(None)));

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
            assert_ne!(a.token(None), other.token(None));
        }
        assert!(!NamesDigest::is_digest("12.1700000000.5:13.1700000000.7"));

        // Kept up to date as names come and go, it is the digest of what is there.
        let mut kept = a;
        kept.remove(Sub::Cur, "2.x:2,S");
        kept.add(Sub::Cur, "2.x:2,RS");
        assert_eq!(kept, renamed);
        kept.remove(Sub::Cur, "2.x:2,RS");
        assert_eq!(kept, fewer);
    }

    #[test]
    fn a_recorded_token_is_taken_apart_and_a_malformed_one_stands_for_nothing() {
        let mut digest = NamesDigest::default();
        digest.add(Sub::New, "1.x");
        let times = "12.1700000000.5:13.1700000000.7";
        for (token, expect) in [
            (digest.token(None), Some(digest)),
            (digest.token(Some(times)), Some(digest)),
        ] {
            assert_eq!(Recorded::parse(&token).digest, expect, "{token}");
        }
        assert_eq!(
            Recorded::parse(&digest.token(Some(times))).times,
            Some(times)
        );
        assert_eq!(Recorded::parse(&digest.token(None)).times, None);
        assert_eq!(
            Recorded::parse(times),
            Recorded {
                digest: None,
                times: Some(times)
            }
        );
        for malformed in ["names:", "names:x:1", "names:1:zz@12.1.1", "names:1"] {
            assert_eq!(
                Recorded::parse(malformed),
                Recorded {
                    digest: None,
                    times: None
                },
                "{malformed}"
            );
        }
    }
}
