//! Glob matching used everywhere a policy names things by pattern.
//!
//! - `*` matches any run of characters except `/`;
//! - `**` matches any run of characters, `/` included;
//! - `?` matches exactly one character other than `/`;
//! - `\` escapes the next character;
//! - everything else matches itself (case-sensitive).
//!
//! So `k8s_get_*` matches `k8s_get_pods`, `refs/heads/*` matches
//! `refs/heads/main` but not `refs/heads/feat/x`, and `/api/**` matches every
//! path below `/api/`. Matching is iterative (no recursion, no regex), with
//! backtracking bounded by `O(len(pattern) * len(text))`.

/// One element of a pattern (public so policy analysis in the compiler
/// reasons over exactly the syntax the filter matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    /// A character that matches itself (escapes already removed).
    Lit(char),
    /// `?`: one character other than `/`.
    One,
    /// `*`: any run without `/`.
    Star,
    /// `**`: any run.
    DStar,
}

/// The tokens of a pattern.
pub fn tokenize(pattern: &str) -> Vec<Tok> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' => {
                if let Some(n) = it.next() {
                    out.push(Tok::Lit(n));
                } else {
                    out.push(Tok::Lit('\\'));
                }
            }
            '?' => out.push(Tok::One),
            '*' => {
                if it.peek() == Some(&'*') {
                    while it.peek() == Some(&'*') {
                        it.next();
                    }
                    out.push(Tok::DStar);
                } else {
                    out.push(Tok::Star);
                }
            }
            c => out.push(Tok::Lit(c)),
        }
    }
    out
}

/// True when the pattern contains no wildcard (so it is compared verbatim).
pub fn is_literal(pattern: &str) -> bool {
    tokenize(pattern).iter().all(|t| matches!(t, Tok::Lit(_)))
}

/// Match `text` against `pattern` (see the module docs for the syntax).
pub fn matches(pattern: &str, text: &str) -> bool {
    // Fast paths for the common shapes (no allocation): a literal, and a
    // literal prefix followed by one trailing `*` or `**`.
    let meta = |c: char| matches!(c, '*' | '?' | '\\');
    match pattern.find(meta) {
        None => return pattern == text,
        Some(i) => {
            let (prefix, tail) = pattern.split_at(i);
            if tail == "*" {
                return text
                    .strip_prefix(prefix)
                    .is_some_and(|rest| !rest.contains('/'));
            }
            if tail.bytes().all(|b| b == b'*') && tail.len() >= 2 {
                return text.starts_with(prefix);
            }
        }
    }
    general(&tokenize(pattern), text)
}

/// The general matcher over tokens.
fn general(toks: &[Tok], text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    // Dynamic programming over (token index, char index): reachable[j] says
    // whether chars[..j] can be matched by the tokens processed so far.
    let n = chars.len();
    let mut reach = vec![false; n + 1];
    if let Some(first) = reach.first_mut() {
        *first = true;
    }
    for tok in toks {
        let mut next = vec![false; n + 1];
        match tok {
            Tok::Lit(c) => {
                for j in 0..n {
                    if reach.get(j).copied().unwrap_or(false) && chars.get(j) == Some(c) {
                        if let Some(slot) = next.get_mut(j + 1) {
                            *slot = true;
                        }
                    }
                }
            }
            Tok::One => {
                for j in 0..n {
                    if reach.get(j).copied().unwrap_or(false)
                        && chars.get(j).is_some_and(|c| *c != '/')
                    {
                        if let Some(slot) = next.get_mut(j + 1) {
                            *slot = true;
                        }
                    }
                }
            }
            Tok::Star | Tok::DStar => {
                let crosses = matches!(tok, Tok::DStar);
                let mut on = false;
                for j in 0..=n {
                    if reach.get(j).copied().unwrap_or(false) {
                        on = true;
                    }
                    if let Some(slot) = next.get_mut(j) {
                        *slot = on;
                    }
                    // The run stops at a '/' unless this is '**'.
                    if on && !crosses && chars.get(j) == Some(&'/') {
                        on = false;
                    }
                }
            }
        }
        reach = next;
        if !reach.iter().any(|r| *r) {
            return false;
        }
    }
    reach.get(n).copied().unwrap_or(false)
}

/// True when any pattern of `patterns` matches `text`.
pub fn any_matches<S: AsRef<str>>(patterns: &[S], text: &str) -> bool {
    patterns.iter().any(|p| matches(p.as_ref(), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast paths agree with the general matcher.
    #[test]
    fn fast_paths_agree() {
        let patterns = [
            "public.*", "/api/**", "a***", "deploy", "*", "**", "", "a*", "a**", "a/*",
        ];
        let texts = [
            "public.orders",
            "public.a/b",
            "public.",
            "publicx",
            "/api/a/b",
            "/apix",
            "a/b",
            "deploy",
            "deploy2",
            "x/y",
            "",
            "a",
            "ab",
            "a/",
        ];
        for p in patterns {
            for t in texts {
                assert_eq!(matches(p, t), general(&tokenize(p), t), "{p} {t}");
            }
        }
    }

    #[test]
    fn literals_and_wildcards() {
        assert!(matches("deploy", "deploy"));
        assert!(!matches("deploy", "deploy2"));
        assert!(!matches("deploy", "Deploy"));
        assert!(matches("k8s_get_*", "k8s_get_pods"));
        assert!(matches("k8s_get_*", "k8s_get_"));
        assert!(!matches("k8s_get_*", "k8s_delete_pods"));
        assert!(matches("*", "anything"));
        assert!(matches("*", ""));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*_*_*", "a_b_c"));
        assert!(!matches("*_*_*", "a_b"));
    }

    #[test]
    fn slash_semantics() {
        assert!(matches("refs/heads/*", "refs/heads/main"));
        assert!(!matches("refs/heads/*", "refs/heads/feat/x"));
        assert!(matches("refs/heads/**", "refs/heads/feat/x"));
        assert!(matches("/api/**", "/api/v1/users"));
        assert!(!matches("/api/*", "/api/v1/users"));
        assert!(!matches("a?b", "a/b"));
        assert!(matches("file:///docs/**", "file:///docs/a/b.md"));
        assert!(matches("**", "/x/y"));
    }

    #[test]
    fn escapes() {
        assert!(matches(r"a\*b", "a*b"));
        assert!(!matches(r"a\*b", "axb"));
        assert!(is_literal(r"a\*b"));
        assert!(!is_literal("a*b"));
        assert!(matches("trailing\\", "trailing\\"));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let text = "a".repeat(2000);
        let pat = "*a".repeat(50) + "b";
        assert!(!matches(&pat, &text));
    }

    #[test]
    fn unicode() {
        assert!(matches("caf?", "café"));
        assert!(matches("ü*", "über"));
    }
}
