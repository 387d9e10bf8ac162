//! The statement fingerprint: SQL with its literals replaced by `?` and its
//! layout removed, digested. Two runs of the same statement with other
//! values (or other spacing, comments, keyword case) share a fingerprint.
//!
//! Unlike the classification cache key (`pg::cache::normalize`, which gives
//! up on anything it is unsure of, because a wrong key would be a wrong
//! decision), this works on every input: it is one pass over the bytes that
//! never fails and never panics, and a rare over-merge of two statements
//! only groups them in reports.
//!
//! Rules (PostgreSQL lexical syntax, `standard_conforming_strings` on):
//! - `'…'` strings (`''` inside), `E'…'` (backslash escapes), `B'…'`,
//!   `X'…'`, `N'…'`, `U&'…'`, dollar-quoted `$tag$…$tag$`, numbers
//!   (`42`, `3.5`, `.5`, `1e-3`, `0x1F`, `1_000`) and parameters (`$1`)
//!   each become `?`;
//! - `-- …` and (nested) `/* … */` comments count as whitespace;
//! - unquoted words are lowercased (PostgreSQL folds them); `"Quoted"`
//!   identifiers are kept as written;
//! - whitespace is dropped, except one space between two word-like tokens
//!   (`select a from t`), so `a = 1` and `a=1` normalize alike.
//!
//! An unterminated string, identifier or comment runs to the end of the
//! text.

use sha2::{Digest, Sha256};

/// The normalized statement (see the module documentation).
pub fn normalize_sql(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = Out {
        s: String::with_capacity(sql.len().min(64 * 1024)),
        space: false,
    };
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        let next = b.get(i + 1).copied();
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                out.space = true;
                i += 1;
            }
            b'-' if next == Some(b'-') => {
                i = b
                    .get(i..)
                    .and_then(|r| r.iter().position(|&x| x == b'\n'))
                    .map_or(b.len(), |p| i + p + 1);
                out.space = true;
            }
            b'/' if next == Some(b'*') => {
                i = skip_block_comment(b, i + 2);
                out.space = true;
            }
            b'\'' => {
                i = skip_string(b, i + 1, false);
                out.token("?");
            }
            b'"' => {
                let end = skip_quoted_ident(b, i + 1);
                out.token(sql.get(i..end).unwrap_or_default());
                i = end;
            }
            b'$' => {
                if next.is_some_and(|n| n.is_ascii_digit()) {
                    i += 1;
                    while b.get(i).is_some_and(u8::is_ascii_digit) {
                        i += 1;
                    }
                    out.token("?");
                } else if let Some(end) = skip_dollar_quoted(b, i) {
                    i = end;
                    out.token("?");
                } else {
                    out.token("$");
                    i += 1;
                }
            }
            b'0'..=b'9' => {
                i = skip_number(b, i);
                out.token("?");
            }
            b'.' if next.is_some_and(|n| n.is_ascii_digit()) => {
                i = skip_number(b, i);
                out.token("?");
            }
            c if is_word_start(c) => {
                let start = i;
                while b.get(i).is_some_and(|&x| is_word_byte(x)) {
                    i += 1;
                }
                let word = sql.get(start..i).unwrap_or_default();
                let after = b.get(i).copied();
                let after2 = b.get(i + 1).copied();
                if after == Some(b'\'') && matches!(word, "e" | "E") {
                    i = skip_string(b, i + 1, true);
                    out.token("?");
                } else if after == Some(b'\'') && matches!(word, "b" | "B" | "x" | "X" | "n" | "N")
                {
                    i = skip_string(b, i + 1, false);
                    out.token("?");
                } else if matches!(word, "u" | "U") && after == Some(b'&') && after2 == Some(b'\'')
                {
                    i = skip_string(b, i + 2, false);
                    out.token("?");
                } else if matches!(word, "u" | "U") && after == Some(b'&') && after2 == Some(b'"') {
                    let end = skip_quoted_ident(b, i + 2);
                    out.token(sql.get(start..end).unwrap_or_default());
                    i = end;
                } else {
                    out.word(word);
                }
            }
            _ => {
                // An ASCII operator or punctuation byte (bytes >= 0x80 are
                // word bytes, so `i` stays on a character boundary).
                out.token(sql.get(i..i + 1).unwrap_or_default());
                i += 1;
            }
        }
    }
    out.s
}

/// First 16 hex digits of the SHA-256 of [`normalize_sql`].
pub fn sql_fingerprint(sql: &str) -> String {
    let d = Sha256::digest(normalize_sql(sql).as_bytes());
    super::short_digest(&d)
}

struct Out {
    s: String,
    /// Whitespace (or a comment) was skipped since the last token.
    space: bool,
}

impl Out {
    fn token(&mut self, t: &str) {
        if self.space
            && self.s.as_bytes().last().is_some_and(|&l| is_wordlike(l))
            && t.as_bytes().first().is_some_and(|&f| is_wordlike(f))
        {
            self.s.push(' ');
        }
        self.space = false;
        self.s.push_str(t);
    }

    fn word(&mut self, w: &str) {
        if w.bytes().any(|c| c.is_ascii_uppercase()) {
            self.token(&w.to_ascii_lowercase());
        } else {
            self.token(w);
        }
    }
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Tokens that need a space between them when the source had one.
fn is_wordlike(c: u8) -> bool {
    is_word_byte(c) || c == b'?' || c == b'"'
}

/// Past the closing quote of a string whose body starts at `i`.
fn skip_string(b: &[u8], mut i: usize, backslash: bool) -> usize {
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' if backslash => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// Past the closing quote of an identifier whose body starts at `i`.
fn skip_quoted_ident(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        match c {
            b'"' if b.get(i + 1) == Some(&b'"') => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// Past the end of a (nested) block comment whose body starts at `i`.
fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    let mut depth = 1usize;
    while let Some(&c) = b.get(i) {
        let n = b.get(i + 1).copied();
        if c == b'/' && n == Some(b'*') {
            depth += 1;
            i += 2;
        } else if c == b'*' && n == Some(b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// A dollar-quoted string starting at `i` (`$tag$ … $tag$`): the index past
/// it, or `None` when `$` does not open one.
fn skip_dollar_quoted(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j).is_some_and(|&c| is_word_start(c)) {
        while b.get(j).is_some_and(|&c| is_word_byte(c) && c != b'$') {
            j += 1;
        }
    }
    if b.get(j) != Some(&b'$') {
        return None;
    }
    let tag = b.get(i..=j)?;
    let body = j + 1;
    let rest = b.get(body..)?;
    let end = rest
        .windows(tag.len())
        .position(|w| w == tag)
        .map_or(b.len(), |p| body + p + tag.len());
    Some(end)
}

/// Past a numeric literal starting at `i` (digits, `.`, `_`, letters of
/// hex/octal/binary forms and exponents, an exponent sign).
fn skip_number(b: &[u8], mut i: usize) -> usize {
    let radix = b.get(i) == Some(&b'0')
        && b.get(i + 1)
            .is_some_and(|c| matches!(c, b'x' | b'X' | b'o' | b'O' | b'b' | b'B'));
    while let Some(&c) = b.get(i) {
        let exponent_sign = (c == b'+' || c == b'-')
            && !radix
            && i > 0
            && b.get(i - 1).is_some_and(|p| matches!(p, b'e' | b'E'))
            && b.get(i + 1).is_some_and(u8::is_ascii_digit);
        if !(c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || exponent_sign) {
            break;
        }
        i += 1;
    }
    i
}
