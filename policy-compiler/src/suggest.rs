//! "did you mean `x`?" suggestions by edit distance.

/// Optimal-string-alignment distance (Levenshtein plus adjacent
/// transpositions), counted in characters.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    // Three rolling rows: i-2, i-1, i.
    let mut prev2 = vec![0usize; w];
    let mut prev: Vec<usize> = (0..w).collect();
    let mut cur = vec![0usize; w];
    for (i, ca) in a.iter().enumerate() {
        if let Some(c0) = cur.first_mut() {
            *c0 = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let del = prev.get(j + 1).copied().unwrap_or(usize::MAX) + 1;
            let ins = cur.get(j).copied().unwrap_or(usize::MAX).saturating_add(1);
            let sub = prev
                .get(j)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(cost);
            let mut best = del.min(ins).min(sub);
            if i > 0 && j > 0 && a.get(i - 1) == Some(cb) && b.get(j - 1) == Some(ca) {
                let t = prev2.get(j - 1).copied().unwrap_or(usize::MAX);
                best = best.min(t.saturating_add(1));
            }
            if let Some(slot) = cur.get_mut(j + 1) {
                *slot = best;
            }
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.get(b.len()).copied().unwrap_or(usize::MAX)
}

/// The candidate closest to `word`, if it is close enough to be a plausible
/// typo: a case-insensitive match, or an edit distance of at most a third of
/// the word's length (at least 1, at most 3).
pub fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (word.chars().count() / 3).clamp(1, 3);
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let d = if c.to_lowercase() == lower {
            0
        } else {
            distance(&lower, &c.to_lowercase())
        };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `"; did you mean `x`?"` or the empty string.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    match closest(word, candidates) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("analyst", "analist"), 1);
        assert_eq!(distance("allow", "alow"), 1);
        assert_eq!(distance("allow", "allwo"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let roles = ["analyst", "support-lead", "dba"];
        assert_eq!(closest("analist", roles), Some("analyst"));
        assert_eq!(closest("dbaa", roles), Some("dba"));
        assert_eq!(closest("xyz", roles), None);
        assert_eq!(closest("rs256", ["RS256", "ES256", "EdDSA"]), Some("RS256"));
        assert_eq!(
            did_you_mean("tols", ["tools", "prompts"]),
            "; did you mean `tools`?"
        );
        assert_eq!(did_you_mean("zzzz", ["tools"]), "");
    }
}
