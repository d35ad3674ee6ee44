//! UID sets (RFC 3501 §9 `sequence-set`) written compactly, and split so that no command line
//! grows past what servers accept.

use crate::model::Uid;

/// Longest set written into one command. RFC 7162 §4 asks servers to accept command lines of at
/// least 8192 octets; staying well below leaves room for the rest of the command.
pub const MAX_SET_LEN: usize = 4000;

/// Sorts and deduplicates, then joins runs: `[1, 2, 3, 4, 5, 9]` becomes `1:5,9`.
#[cfg(test)]
pub fn compact(uids: &[Uid]) -> String {
    batches(uids, usize::MAX)
        .into_iter()
        .next()
        .map(|(set, _)| set)
        .unwrap_or_default()
}

/// The UIDs (sorted, deduplicated) in sets of at most `max_len` characters, each with the UIDs
/// it names.
pub fn batches(uids: &[Uid], max_len: usize) -> Vec<(String, Vec<Uid>)> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();

    let mut out = Vec::new();
    let mut set = String::new();
    let mut members = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        let mut j = i + 1;
        while j < sorted.len() && sorted[j].get() == end.get() + 1 {
            end = sorted[j];
            j += 1;
        }
        let item = if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        };
        let needed = item.len() + usize::from(!set.is_empty());
        if !set.is_empty() && set.len() + needed > max_len {
            out.push((std::mem::take(&mut set), std::mem::take(&mut members)));
        }
        if !set.is_empty() {
            set.push(',');
        }
        set.push_str(&item);
        members.extend_from_slice(&sorted[i..j]);
        i = j;
    }
    if !set.is_empty() {
        out.push((set, members));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uids(values: &[u32]) -> Vec<Uid> {
        values.iter().map(|&v| Uid::new(v).unwrap()).collect()
    }

    #[test]
    fn runs_are_joined() {
        assert_eq!(compact(&uids(&[9, 1, 2, 3, 4, 5])), "1:5,9");
        assert_eq!(compact(&uids(&[7])), "7");
        assert_eq!(compact(&uids(&[3, 3, 1, 5, 4])), "1,3:5");
        assert_eq!(compact(&[]), "");
        assert_eq!(
            compact(&uids(&[u32::MAX - 1, u32::MAX])),
            "4294967294:4294967295"
        );
    }

    #[test]
    fn long_sets_are_split_without_losing_members() {
        let all: Vec<Uid> = uids(&(1..=2000).map(|v| v * 2).collect::<Vec<_>>());
        let parts = batches(&all, 100);
        assert!(parts.len() > 1);
        for (set, members) in &parts {
            assert!(set.len() <= 100, "{set}");
            assert_eq!(set.split(',').count(), members.len());
        }
        let joined: Vec<Uid> = parts.into_iter().flat_map(|(_, m)| m).collect();
        assert_eq!(joined, all);
    }
}
