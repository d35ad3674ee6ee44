//! INTERNALDATE (RFC 3501 §2.3.3) in and out of Unix seconds.

use chrono::{DateTime, Datelike};

/// `dd-Mon-yyyy hh:mm:ss +0000`, the `date-time` of APPEND (RFC 3501 §9); `None` for instants
/// whose year does not have the four digits the grammar allows.
pub fn format(unix_seconds: i64) -> Option<String> {
    let t = DateTime::from_timestamp(unix_seconds, 0)?;
    if !(1000..=9999).contains(&t.year()) {
        return None;
    }
    Some(t.format("%d-%b-%Y %H:%M:%S +0000").to_string())
}

/// Parses a FETCH INTERNALDATE; the day may be space-padded (`date-day-fixed`).
pub fn parse(text: &str) -> Option<i64> {
    DateTime::parse_from_str(text.trim(), "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_utc_with_english_month_names() {
        assert_eq!(format(0).unwrap(), "01-Jan-1970 00:00:00 +0000");
        assert_eq!(format(837_571_465).unwrap(), "17-Jul-1996 02:44:25 +0000");
        assert_eq!(format(-1).unwrap(), "31-Dec-1969 23:59:59 +0000");
        assert_eq!(format(253_402_300_800), None); // year 10000
    }

    #[test]
    fn parses_server_dates_with_zones_and_padding() {
        // RFC 3501's own example.
        assert_eq!(parse("17-Jul-1996 02:44:25 -0700"), Some(837_596_665));
        assert_eq!(parse(" 7-Jul-1996 02:44:25 +0000"), Some(836_707_465));
        assert_eq!(parse("07-Jul-1996 02:44:25 +0000"), Some(836_707_465));
        assert_eq!(parse("yesterday"), None);
        for t in [0, 1_700_000_000, -86_400] {
            assert_eq!(parse(&format(t).unwrap()), Some(t));
        }
    }

    /// Fuzzing (issue 16): what a server sends as INTERNALDATE. Long run: see RELIABILITY.md.
    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_text_is_a_date_or_none(text in "\\PC{0,40}") {
                let _ = parse(&text);
            }

            #[test]
            fn near_dates_are_read_or_refused(
                day in "[ 0-9]{1,3}",
                month in "[A-Za-z]{2,4}",
                year in "-?[0-9]{1,6}",
                clock in "[0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3}",
                zone in "[+-][0-9]{2,5}",
            ) {
                let _ = parse(&format!("{day}-{month}-{year} {clock} {zone}"));
            }

            #[test]
            fn every_date_written_reads_back(t in -62_135_596_800i64..253_402_300_800) {
                if let Some(text) = format(t) {
                    prop_assert_eq!(parse(&text), Some(t));
                }
            }
        }
    }
}
