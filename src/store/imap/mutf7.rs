//! IMAP's modified UTF-7 for mailbox names (RFC 3501 §5.1.3).
//!
//! Written here rather than taken from the `utf7-imap` crate: that crate panics on malformed
//! input (a server can send anything), passes DEL (0x7f) through unencoded although it is not a
//! printable character, and accepts non-canonical spellings. The decoder below is strict, so
//! that one server name maps to exactly one folder name and back.

/// The modified BASE64 alphabet: RFC 2045's, with `,` in place of `/`.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// The characters that stand for themselves: printable US-ASCII.
fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

/// Encodes a UTF-8 mailbox name; the result is printable US-ASCII.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut units: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) {
            flush_shifted(&mut units, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush_shifted(&mut units, &mut out);
    out
}

fn flush_shifted(units: &mut Vec<u16>, out: &mut String) {
    if units.is_empty() {
        return;
    }
    let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push('&');
    // RFC 3501: modified BASE64 omits the `=` padding.
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = group.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out.push('-');
    units.clear();
}

/// Decodes a server's mailbox name, or `None` when it is not canonical modified UTF-7: raw
/// 8-bit or control characters, a shift that is never closed, BASE64 that does not decode to
/// whole UTF-16 units or leaves non-zero bits, unpaired surrogates, encoded characters that must
/// stand for themselves, or two shifted runs in a row (all ruled out by RFC 3501 §5.1.3).
pub fn decode(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    // Whether the previous item was a shifted run: `&...-&...-` is a superfluous shift.
    let mut after_shifted = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'&' {
            if !(0x20..=0x7e).contains(&b) {
                return None;
            }
            out.push(char::from(b));
            i += 1;
            after_shifted = false;
            continue;
        }
        let rest = &bytes[i + 1..];
        let end = rest.iter().position(|&c| c == b'-')?;
        let run = &rest[..end];
        i += end + 2;
        if run.is_empty() {
            out.push('&');
            after_shifted = false;
            continue;
        }
        if after_shifted {
            return None;
        }
        out.push_str(&decode_run(run)?);
        after_shifted = true;
    }
    Some(out)
}

fn decode_run(run: &[u8]) -> Option<String> {
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut bytes = Vec::with_capacity(run.len());
    for &c in run {
        let value = ALPHABET.iter().position(|&a| a == c)?;
        bits = (bits << 6) | value as u32;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            bytes.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    // Leftover bits are padding: fewer than six, all zero.
    if nbits >= 6 || bits != 0 || bytes.len() % 2 != 0 {
        return None;
    }
    let units = bytes
        .chunks(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    let mut out = String::new();
    for c in char::decode_utf16(units) {
        let c = c.ok()?;
        if is_direct(c) {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn german_drafts_folder() {
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(decode("Entw&APw-rfe").as_deref(), Some("Entwürfe"));
    }

    #[test]
    fn rfc_3501_examples() {
        // RFC 3501 §5.1.3: English, Chinese and Japanese in one name.
        let name = "~peter/mail/台北/日本語";
        assert_eq!(encode(name), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(
            decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").as_deref(),
            Some(name)
        );
        // "&Jjo!" is invalid: no shift back before "!"; "&U,BTFw-&ZeVnLIqe-" has a
        // superfluous shift.
        assert_eq!(decode("&Jjo!"), None);
        assert_eq!(decode("&U,BTFw-&ZeVnLIqe-"), None);
        assert_eq!(decode("&Jjo-!").as_deref(), Some("☺!"));
        assert_eq!(encode("☺!"), "&Jjo-!");
    }

    #[test]
    fn ampersand_and_other_scripts() {
        assert_eq!(encode("A&B"), "A&-B");
        assert_eq!(decode("A&-B").as_deref(), Some("A&B"));
        assert_eq!(decode("&AOQ-&-").as_deref(), Some("ä&"));
        assert_eq!(encode("Отправленные"), "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-");
        assert_eq!(encode("théâtre"), "th&AOkA4g-tre");
        // Outside the BMP: a surrogate pair.
        assert_eq!(decode(&encode("📬 Post")).as_deref(), Some("📬 Post"));
        // DEL and control characters are not printable, so they are encoded.
        assert_eq!(encode("a\u{7f}"), "a&AH8-");
        assert_eq!(decode("a&AH8-").as_deref(), Some("a\u{7f}"));
    }

    #[test]
    fn malformed_names_are_rejected_not_panicked_on() {
        for bad in [
            "&",        // unterminated
            "&AGE-",    // encodes "a", which must stand for itself
            "&AP-",     // leftover non-zero bits
            "&APw",     // unterminated
            "&A-",      // half a unit
            "&2D0-",    // lone high surrogate
            "Entwürfe", // raw 8-bit
            "a\tb",     // control character
            "&!!-",     // not BASE64
            "&APwA-",   // 2.5 units
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(s in "\\PC*|[\\x00-\\x7f&]*") {
            let encoded = encode(&s);
            prop_assert!(encoded.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode(&encoded), Some(s));
        }

        #[test]
        fn agrees_with_the_utf7_imap_crate_where_that_is_right(s in "\\PC*") {
            // The crate passes DEL through unencoded; elsewhere the spellings must agree.
            prop_assume!(!s.contains('\u{7f}'));
            prop_assert_eq!(encode(&s), utf7_imap::encode_utf7_imap(s.clone()));
        }
    }

    /// Fuzzing (issue 16): mailbox names exactly as a server may send them.
    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_mailbox_name_decodes_or_is_refused(name in "\\PC{0,40}|[&A-Za-z0-9+,-]{0,40}") {
                if let Some(decoded) = decode(&name) {
                    // What decodes encodes to a name that decodes the same.
                    prop_assert_eq!(decode(&encode(&decoded)), Some(decoded));
                }
            }
        }
    }
}
