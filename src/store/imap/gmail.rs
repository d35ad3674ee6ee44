//! What Gmail's IMAP extensions (X-GM-EXT-1) put in FETCH responses, read the way Gmail was
//! seen to send them, not only the way its documentation shows.

use async_imap::imap_proto::AttributeValue;

/// X-GM-MSGID: the message's id in every folder (label) of the account, an unsigned 64-bit
/// number.
pub(super) fn message_id(attributes: &[AttributeValue<'_>]) -> Option<u64> {
    attributes.iter().find_map(|a| match a {
        AttributeValue::GmailMsgId(id) => Some(*id),
        _ => None,
    })
}

/// X-GM-LABELS as label names. Gmail sends system labels bare (`\Inbox`) or as quoted strings
/// with an escaped backslash (`"\\Inbox"`), and the parser leaves a quoted string's escapes in,
/// so they are undone here; a bare atom holds no `\\` or `\"`, so undoing them changes nothing
/// else. Names stay in modified UTF-7, as Gmail sends them.
pub(super) fn labels(attributes: &[AttributeValue<'_>]) -> Option<Vec<String>> {
    attributes.iter().find_map(|a| match a {
        AttributeValue::GmailLabels(labels) => Some(labels.iter().map(|l| unescape(l)).collect()),
        _ => None,
    })
}

fn unescape(quoted: &str) -> String {
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(next @ ('\\' | '"'))) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_imap::imap_proto::Response;

    /// The attributes of one FETCH response line.
    fn fetched(line: &str) -> Vec<AttributeValue<'static>> {
        let bytes: &'static [u8] = Box::leak(line.as_bytes().to_vec().into_boxed_slice());
        match Response::parse(bytes) {
            Ok((_, Response::Fetch(_, attributes))) => attributes,
            other => panic!("{line:?} did not parse as FETCH: {other:?}"),
        }
    }

    #[test]
    fn gmail_s_message_ids_are_read_as_unsigned_64_bit_numbers() {
        // Google's documentation of X-GM-EXT-1.
        let a = fetched("* 1 FETCH (X-GM-MSGID 1278455344230334865)\r\n");
        assert_eq!(message_id(&a), Some(1_278_455_344_230_334_865));
        let a = fetched("* 7 FETCH (UID 9 X-GM-MSGID 18446744073709551615 FLAGS (\\Seen))\r\n");
        assert_eq!(message_id(&a), Some(u64::MAX));
        assert_eq!(message_id(&fetched("* 1 FETCH (UID 3)\r\n")), None);
    }

    #[test]
    fn labels_in_every_form_gmail_was_seen_to_send_them() {
        for (line, want) in [
            // Google's documentation.
            (
                "* 1 FETCH (X-GM-LABELS (\\Inbox \\Sent Important \"Muy Importante\"))\r\n",
                vec!["\\Inbox", "\\Sent", "Important", "Muy Importante"],
            ),
            ("* 3 FETCH (X-GM-LABELS ())\r\n", vec![]),
            ("* 4 FETCH (X-GM-LABELS (\\Drafts))\r\n", vec!["\\Drafts"]),
            // A real account (ruby/net-imap#272): quoted system labels, parentheses, brackets.
            (
                "* 1 FETCH (X-GM-LABELS (\"()\" \"(foobar)\" \"[foobar]\" \"\\\\Draft\" \"\\\\Important\" \"\\\\Starred\" fav))\r\n",
                vec![
                    "()",
                    "(foobar)",
                    "[foobar]",
                    "\\Draft",
                    "\\Important",
                    "\\Starred",
                    "fav",
                ],
            ),
            // eclipse-ee4j/angus-mail#165, which another parser read as `\Sentt`.
            (
                "* 1 FETCH (X-GM-LABELS (\"\\\\Sent\" CustomLabel) UID 5)\r\n",
                vec!["\\Sent", "CustomLabel"],
            ),
            // OfflineIMAP's comments.
            (
                "* 2 FETCH (X-GM-LABELS (\"Webserver (RW.net)\" \"\\\\Inbox\" GInbox))\r\n",
                vec!["Webserver (RW.net)", "\\Inbox", "GInbox"],
            ),
            // jstedfast/MailKit#51: a label with brackets sent unquoted (no valid atom).
            (
                "* 1 FETCH (X-GM-LABELS ([Mailbox] \\Inbox))\r\n",
                vec!["[Mailbox]", "\\Inbox"],
            ),
            // A quote inside a label, and modified UTF-7 left as sent.
            (
                "* 2 FETCH (X-GM-LABELS (\"say \\\"hi\\\"\" Caf&AOk-))\r\n",
                vec!["say \"hi\"", "Caf&AOk-"],
            ),
        ] {
            assert_eq!(
                labels(&fetched(line)),
                Some(want.iter().map(|s| s.to_string()).collect()),
                "{line:?}"
            );
        }
    }
}
