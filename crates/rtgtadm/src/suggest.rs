//! "Did you mean ...?" for a misspelt mode, operation, option or subcommand: the first
//! thing a tgtadm user types wrong should say what was meant rather than only that it
//! was wrong.

/// The candidate `word` most likely meant: the only candidate it is a prefix of, else
/// the closest by edit distance (insertions, deletions, substitutions and swaps of two
/// neighbours, each costing 1) if that is small for the word's length and no other
/// candidate is as close. None when nothing is close enough to be a fair guess.
pub fn nearest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str> + Clone,
) -> Option<&'a str> {
    if word.is_empty() {
        return None;
    }
    let mut prefixed = candidates.clone().filter(|c| c.starts_with(word));
    if let (Some(only), None) = (prefixed.next(), prefixed.next()) {
        return Some(only);
    }
    // One edit in a short word, two from 5 characters, three from 9.
    let limit = match word.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    let mut best: Option<(usize, &str)> = None;
    let mut tie = false;
    for c in candidates {
        let d = distance(word, c);
        match best {
            Some((b, _)) if d > b => {}
            Some((b, _)) if d == b => tie = true,
            _ => {
                best = Some((d, c));
                tie = false;
            }
        }
    }
    match best {
        Some((d, c)) if d <= limit && !tie => Some(c),
        _ => None,
    }
}

/// `" (did you mean PREFIXcandidate?)"`, or nothing: to append to an error message.
pub fn hint<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str> + Clone,
    prefix: &str,
) -> String {
    match nearest(word, candidates) {
        Some(c) => format!(" (did you mean {prefix}{c}?)"),
        None => String::new(),
    }
}

/// Optimal string alignment distance (Damerau-Levenshtein without re-edits), by chars.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the edit matrix.
    let mut prev2 = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODES: &[&str] = &["target", "logicalunit", "system", "lld", "account", "tgt"];

    #[test]
    fn distances() {
        assert_eq!(distance("targt", "target"), 1);
        assert_eq!(distance("tagret", "target"), 1); // a swap is one edit
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("same", "same"), 0);
    }

    #[test]
    fn suggestions() {
        let m = || MODES.iter().copied();
        assert_eq!(nearest("targt", m()), Some("target"));
        assert_eq!(nearest("tagret", m()), Some("target"));
        assert_eq!(nearest("logicalunt", m()), Some("logicalunit"));
        assert_eq!(nearest("sytem", m()), Some("system"));
        // A prefix of exactly one candidate.
        assert_eq!(nearest("acc", m()), Some("account"));
        // Too far from everything, or equally close to two: no guess.
        assert_eq!(nearest("frobnicate", m()), None);
        assert_eq!(nearest("ab", ["ax", "ay"].into_iter()), None);
        assert_eq!(nearest("tg", m()), Some("tgt")); // "target" starts with "ta"
        assert_eq!(nearest("", m()), None);
        assert_eq!(hint("sytem", m(), "--"), " (did you mean --system?)");
        assert_eq!(hint("zzzzzz", m(), "--"), "");
    }
}
