//! The server's capability set (RFC 3501 §7.2.1), as announced after login.

use std::collections::BTreeSet;
use std::fmt;

use async_imap::imap_proto::Capability;

/// Capability names in upper case (`IDLE`, `CONDSTORE`, `AUTH=PLAIN`, `COMPRESS=DEFLATE` ...).
// INVARIANT: every entry is upper case, so lookups are case-insensitive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities(BTreeSet<String>);

impl Capabilities {
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self(names.into_iter().map(|n| n.to_ascii_uppercase()).collect())
    }

    pub(crate) fn from_proto(capabilities: &[Capability<'_>]) -> Self {
        Self(
            capabilities
                .iter()
                .map(|c| match c {
                    Capability::Imap4rev1 => "IMAP4REV1".to_owned(),
                    Capability::Auth(mech) => format!("AUTH={}", mech.to_ascii_uppercase()),
                    Capability::Atom(atom) => atom.to_ascii_uppercase(),
                })
                .collect(),
        )
    }

    /// Whether the server announced `name` (any case).
    pub fn has(&self, name: &str) -> bool {
        self.0.contains(&name.to_ascii_uppercase())
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn idle(&self) -> bool {
        self.has("IDLE")
    }
    pub fn condstore(&self) -> bool {
        // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
        self.has("CONDSTORE") || self.has("QRESYNC")
    }
    pub fn qresync(&self) -> bool {
        self.has("QRESYNC")
    }
    pub fn uidplus(&self) -> bool {
        self.has("UIDPLUS")
    }
    pub fn move_command(&self) -> bool {
        self.has("MOVE")
    }
    pub fn enable(&self) -> bool {
        self.has("ENABLE")
    }
    pub fn notify(&self) -> bool {
        self.has("NOTIFY")
    }
    pub fn compress_deflate(&self) -> bool {
        self.has("COMPRESS=DEFLATE")
    }

    /// Which literals may be sent without waiting for the server's `+` (RFC 7888).
    pub fn literal_mode(&self) -> LiteralMode {
        if self.has("LITERAL+") {
            LiteralMode::Plus
        } else if self.has("LITERAL-") {
            LiteralMode::Minus
        } else {
            LiteralMode::Synchronizing
        }
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for c in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(c)?;
            first = false;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteralMode {
    /// Every literal waits for a `+` continuation (RFC 3501 §7.5).
    Synchronizing,
    /// `{n+}` for any size (LITERAL+).
    Plus,
    /// `{n+}` up to 4096 octets (LITERAL-).
    Minus,
}

impl LiteralMode {
    /// Whether a literal of `len` octets may be sent without waiting.
    pub fn non_synchronizing(self, len: u64) -> bool {
        match self {
            LiteralMode::Synchronizing => false,
            LiteralMode::Plus => true,
            LiteralMode::Minus => len <= 4096,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_know_implications() {
        let caps = Capabilities::from_names(["imap4rev1", "Qresync", "LITERAL-", "AUTH=plain"]);
        assert!(caps.has("QRESYNC") && caps.condstore() && caps.has("auth=PLAIN"));
        assert!(!caps.uidplus());
        assert_eq!(caps.literal_mode(), LiteralMode::Minus);
        assert!(caps.literal_mode().non_synchronizing(4096));
        assert!(!caps.literal_mode().non_synchronizing(4097));
        assert_eq!(caps.to_string(), "AUTH=PLAIN IMAP4REV1 LITERAL- QRESYNC");
    }
}
