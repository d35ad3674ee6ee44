//! The few facts of an X.509 certificate that webpki checks but does not expose on their own:
//! the validity period and the extended key usage. Read from the DER encoding (X.690) by a
//! small walker, because webpki keeps its parser private and a full X.509 crate would be a
//! large dependency for two fields.

/// What `tls::verify_listed` checks of a certificate besides its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// notBefore, seconds since the Unix epoch (negative before 1970).
    pub not_before: i64,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: i64,
    /// The certificate may serve a TLS server: it has no extendedKeyUsage extension, or that
    /// lists id-kp-serverAuth or anyExtendedKeyUsage (RFC 5280 section 4.2.1.12).
    pub for_servers: bool,
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version` and `[3] EXPLICIT Extensions` of TBSCertificate (RFC 5280 section 4.1).
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;

/// 2.5.29.37, id-ce-extKeyUsage.
const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
/// 1.3.6.1.5.5.7.3.1, id-kp-serverAuth.
const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// 2.5.29.37.0, anyExtendedKeyUsage.
const ANY_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

impl CertFacts {
    /// Reads the facts from a certificate's DER encoding; `None` if it is not well-formed
    /// where these fields are read.
    pub fn parse(der: &[u8]) -> Option<CertFacts> {
        let mut input = der;
        let mut certificate = expect(&mut input, SEQUENCE)?;
        let mut tbs = expect(&mut certificate, SEQUENCE)?;
        if tbs.first() == Some(&VERSION) {
            take(&mut tbs)?;
        }
        take(&mut tbs)?; // serialNumber
        take(&mut tbs)?; // signature (AlgorithmIdentifier)
        take(&mut tbs)?; // issuer
        let mut validity = expect(&mut tbs, SEQUENCE)?;
        let not_before = time(&mut validity)?;
        let not_after = time(&mut validity)?;
        take(&mut tbs)?; // subject
        take(&mut tbs)?; // subjectPublicKeyInfo
        let mut for_servers = true;
        while !tbs.is_empty() {
            let (tag, content) = take(&mut tbs)?;
            if tag == EXTENSIONS
                && let Some(purposes) = key_purposes(content)?
            {
                for_servers = purposes
                    .iter()
                    .any(|p| *p == SERVER_AUTH || *p == ANY_EXT_KEY_USAGE);
            }
            // issuerUniqueID and subjectUniqueID ([1], [2]) say nothing checked here.
        }
        Some(CertFacts {
            not_before,
            not_after,
            for_servers,
        })
    }
}

/// The key purpose OIDs of the extendedKeyUsage extension: `Some(None)` when the certificate
/// has no such extension, `None` when the extensions are malformed.
fn key_purposes(extensions: &[u8]) -> Option<Option<Vec<&[u8]>>> {
    let mut outer = extensions;
    let mut list = expect(&mut outer, SEQUENCE)?;
    while !list.is_empty() {
        let mut extension = expect(&mut list, SEQUENCE)?;
        let id = expect(&mut extension, OID)?;
        if extension.first() == Some(&BOOLEAN) {
            take(&mut extension)?; // critical
        }
        let mut value = expect(&mut extension, OCTET_STRING)?;
        if id != EXT_KEY_USAGE {
            continue;
        }
        let mut oids = expect(&mut value, SEQUENCE)?;
        let mut purposes = Vec::new();
        while !oids.is_empty() {
            purposes.push(expect(&mut oids, OID)?);
        }
        return Some(Some(purposes));
    }
    Some(None)
}

/// Takes one element (tag and contents) off the front of `input`. DER lengths are definite
/// and minimal (X.690 section 10.1); tags in certificates are all single-byte.
fn take<'a>(input: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        // 0x80 is BER's indefinite length; more than 4 bytes of length is no certificate.
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, after) = rest.split_at_checked(count)?;
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let (content, after) = rest.split_at_checked(length)?;
    *input = after;
    Some((tag, content))
}

fn expect<'a>(input: &mut &'a [u8], tag: u8) -> Option<&'a [u8]> {
    match take(input)? {
        (found, content) if found == tag => Some(content),
        _ => None,
    }
}

/// A `Time` (RFC 5280 section 4.1.2.5): UTCTime `YYMMDDHHMMSSZ`, years 50-99 meaning 19xx
/// (section 4.1.2.5.1), or GeneralizedTime `YYYYMMDDHHMMSSZ` (section 4.1.2.5.2). Both must be
/// in UTC with seconds and no fraction, as the RFC requires of certificates.
fn time(input: &mut &[u8]) -> Option<i64> {
    let (tag, text) = take(input)?;
    let (year, rest) = match tag {
        UTC_TIME => {
            let (yy, rest) = digits(text, 2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, rest)
        }
        GENERALIZED_TIME => digits(text, 4)?,
        _ => return None,
    };
    let (month, rest) = digits(rest, 2)?;
    let (day, rest) = digits(rest, 2)?;
    let (hour, rest) = digits(rest, 2)?;
    let (minute, rest) = digits(rest, 2)?;
    let (second, rest) = digits(rest, 2)?;
    let valid = rest == b"Z"
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    valid.then(|| days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn digits(text: &[u8], count: usize) -> Option<(i64, &[u8])> {
    let (head, rest) = text.split_at_checked(count)?;
    let mut value = 0;
    for b in head {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(b - b'0');
    }
    Some((value, rest))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(u8::try_from(content.len()).unwrap());
        } else {
            let len = u16::try_from(content.len()).unwrap();
            out.push(0x82);
            out.extend_from_slice(&len.to_be_bytes());
        }
        out.extend_from_slice(content);
        out
    }

    /// A certificate skeleton: only the fields `parse` looks at carry meaning.
    fn certificate(not_before: &[u8], not_after: &[u8], extensions: Option<Vec<u8>>) -> Vec<u8> {
        let mut tbs = element(VERSION, &element(0x02, &[2]));
        tbs.extend(element(0x02, &[1])); // serialNumber
        tbs.extend(element(SEQUENCE, &[])); // signature
        tbs.extend(element(SEQUENCE, &[])); // issuer
        let mut validity = not_before.to_vec();
        validity.extend_from_slice(not_after);
        tbs.extend(element(SEQUENCE, &validity));
        tbs.extend(element(SEQUENCE, &[])); // subject
        tbs.extend(element(SEQUENCE, &[0; 200])); // subjectPublicKeyInfo, long form length
        if let Some(list) = extensions {
            tbs.extend(element(EXTENSIONS, &element(SEQUENCE, &list)));
        }
        let mut certificate = element(SEQUENCE, &tbs);
        certificate.extend(element(SEQUENCE, &[])); // signatureAlgorithm
        certificate.extend(element(0x03, &[0])); // signature
        element(SEQUENCE, &certificate)
    }

    fn eku(purposes: &[&[u8]]) -> Vec<u8> {
        let oids: Vec<u8> = purposes.iter().flat_map(|p| element(OID, p)).collect();
        let mut extension = element(OID, EXT_KEY_USAGE);
        extension.extend(element(OCTET_STRING, &element(SEQUENCE, &oids)));
        element(SEQUENCE, &extension)
    }

    #[test]
    fn both_time_forms_are_read_as_utc_seconds() {
        let der = certificate(
            &element(UTC_TIME, b"700101000000Z"),
            &element(GENERALIZED_TIME, b"20500301123456Z"),
            None,
        );
        let facts = CertFacts::parse(&der).unwrap();
        assert_eq!(facts.not_before, 0);
        // 2050-03-01T12:34:56Z, as `date -u -d 2050-03-01T12:34:56Z +%s` gives it.
        assert_eq!(facts.not_after, 2_529_750_896);
        assert!(facts.for_servers);
    }

    #[test]
    fn utc_time_years_from_50_are_last_century() {
        let der = certificate(
            &element(UTC_TIME, b"500101000000Z"),
            &element(UTC_TIME, b"491231235959Z"),
            None,
        );
        let facts = CertFacts::parse(&der).unwrap();
        assert_eq!(facts.not_before, -631_152_000); // 1950-01-01
        assert_eq!(facts.not_after, 2_524_607_999); // 2049-12-31T23:59:59
    }

    #[test]
    fn malformed_times_and_truncated_input_are_refused() {
        for bad in [
            &b"700101000000"[..], // no Z
            b"700101000000+0100",
            b"701301000000Z", // month 13
            b"700230000000Z", // February 30
            b"7001010000a0Z",
        ] {
            let der = certificate(
                &element(UTC_TIME, bad),
                &element(UTC_TIME, b"800101000000Z"),
                None,
            );
            assert_eq!(CertFacts::parse(&der), None, "{bad:?}");
        }
        let der = certificate(
            &element(UTC_TIME, b"700101000000Z"),
            &element(UTC_TIME, b"800101000000Z"),
            None,
        );
        for end in 0..der.len() {
            assert_eq!(CertFacts::parse(&der[..end]), None, "cut at {end}");
        }
    }

    #[test]
    fn extended_key_usage_must_allow_servers_when_present() {
        let times = (
            element(UTC_TIME, b"700101000000Z"),
            element(UTC_TIME, b"800101000000Z"),
        );
        let client_auth: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
        let other_extension = {
            let mut e = element(OID, &[0x55, 0x1d, 0x13]); // basicConstraints
            e.extend(element(BOOLEAN, &[0xff]));
            e.extend(element(OCTET_STRING, &element(SEQUENCE, &[])));
            element(SEQUENCE, &e)
        };
        for (purposes, expected) in [
            (vec![SERVER_AUTH], true),
            (vec![client_auth, SERVER_AUTH], true),
            (vec![ANY_EXT_KEY_USAGE], true),
            (vec![client_auth], false),
        ] {
            let mut list = other_extension.clone();
            list.extend(eku(&purposes));
            let der = certificate(&times.0, &times.1, Some(list));
            let facts = CertFacts::parse(&der).unwrap();
            assert_eq!(facts.for_servers, expected, "{purposes:?}");
        }
        let der = certificate(&times.0, &times.1, Some(other_extension));
        assert!(CertFacts::parse(&der).unwrap().for_servers);
    }

    /// Fuzzing (issue 16): certificate bytes as a server may present them.
    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_bytes_are_a_certificate_or_none(der in proptest::collection::vec(any::<u8>(), 0..600)) {
                let _ = CertFacts::parse(&der);
            }

            #[test]
            fn nested_elements_of_any_length_are_read_or_refused(
                parts in proptest::collection::vec((any::<u8>(), 0usize..300), 0..12),
            ) {
                // Tag and length octets nested the way DER nests them, lengths often wrong.
                let mut der = Vec::new();
                for (tag, len) in parts.iter().rev() {
                    let mut outer = vec![*tag];
                    if *len < 0x80 {
                        outer.push(*len as u8);
                    } else {
                        outer.extend_from_slice(&[0x82, (*len >> 8) as u8, *len as u8]);
                    }
                    outer.extend_from_slice(&der);
                    der = outer;
                }
                let _ = CertFacts::parse(&der);
            }
        }
    }
}
