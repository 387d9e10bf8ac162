//! Detectors: the built-in ones (hand-written byte scanners, each anchored
//! on a cheap marker and validated: Luhn, mod-97, SSN ranges) and custom
//! regexes (`regex-lite`, compiled once).
//!
//! Every scanner is linear in the text. All built-in matches begin and end
//! on ASCII bytes, so spans are always `str` boundaries.

use regex_lite::{Regex, RegexBuilder};

use super::strategy::Compiled;
use super::{MAX_PATTERN_LEN, MAX_PATTERN_SIZE};

/// The built-in detectors. Names are stable (they appear in policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// `local@domain.tld`: ASCII local part `[A-Za-z0-9._%+-]`, at least two
    /// domain labels, an alphabetic TLD of 2+ letters.
    Email,
    /// `+` then 8–15 digits in groups (spaces, `-`, `.`, one parenthesised
    /// group); North-American `(415) 555-2671`, `415-555-2671`,
    /// `415.555.2671`, `415 555 2671` (optionally `1 ` first); national
    /// numbers with a trunk `0` in 2+ groups (`020 7946 0958`,
    /// `06 12 34 56 78`, `(030) 1234 5678`), 10–11 digits. Bare digit
    /// strings without `+` are not phones (ids, amounts), nor are dates,
    /// versions, IP addresses or times.
    Phone,
    /// 13–19 digits, optionally in groups of 3+ separated by one space or
    /// `-`, first digit not 0, Luhn-valid, not inside a longer token.
    PaymentCard,
    /// Uppercase IBAN of a registered country with that country's length,
    /// compact or in printed groups of four, mod-97 valid.
    Iban,
    /// `AAA-GG-SSSS` with area not 000, 666 or 9xx, group not 00, serial
    /// not 0000.
    UsSsn,
    /// `AKIA` or `ASIA` and 16 uppercase letters or digits.
    AwsAccessKeyId,
    /// A PEM `-----BEGIN ... PRIVATE KEY-----` block through its matching
    /// `-----END ...-----` line; without one, through the end of the text.
    PrivateKey,
    /// A compact JWS/JWE: `eyJ`, then 2 to 4 more base64url segments
    /// separated by `.` (the last may be empty, as in unsigned tokens).
    Jwt,
    /// The token after `Bearer ` (case-insensitive): a token68 of at least
    /// 16 characters with a digit in it. Only the token is masked.
    BearerToken,
}

impl Builtin {
    /// Every built-in detector.
    pub const ALL: [Builtin; 9] = [
        Builtin::Email,
        Builtin::Phone,
        Builtin::PaymentCard,
        Builtin::Iban,
        Builtin::UsSsn,
        Builtin::AwsAccessKeyId,
        Builtin::PrivateKey,
        Builtin::Jwt,
        Builtin::BearerToken,
    ];

    /// The name used in policies.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Email => "email",
            Builtin::Phone => "phone",
            Builtin::PaymentCard => "payment_card",
            Builtin::Iban => "iban",
            Builtin::UsSsn => "us_ssn",
            Builtin::AwsAccessKeyId => "aws_access_key_id",
            Builtin::PrivateKey => "private_key",
            Builtin::Jwt => "jwt",
            Builtin::BearerToken => "bearer_token",
        }
    }

    /// The detector of that name.
    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The spans of `text` this detector matches, in order, not
    /// overlapping.
    pub fn find(self, text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        self.find_into(text, &mut out);
        out
    }

    fn find_into(self, text: &str, out: &mut Vec<(usize, usize)>) {
        let b = text.as_bytes();
        match self {
            Builtin::Email => emails(b, out),
            Builtin::Phone => phones(b, out),
            Builtin::PaymentCard => cards(b, out),
            Builtin::Iban => ibans(b, out),
            Builtin::UsSsn => ssns(b, out),
            Builtin::AwsAccessKeyId => aws_keys(text, out),
            Builtin::PrivateKey => private_keys(text, out),
            Builtin::Jwt => jwts(text, out),
            Builtin::BearerToken => bearers(b, out),
        }
    }
}

/// A compiled detector.
pub(crate) enum Detector {
    Builtin(Builtin),
    Custom(Regex),
}

impl Detector {
    /// A built-in (`pattern` None) or a custom detector; `Err` says why not.
    pub(crate) fn new(name: &str, pattern: Option<&str>) -> Result<Detector, String> {
        let Some(pattern) = pattern else {
            return Builtin::from_name(name)
                .map(Detector::Builtin)
                .ok_or_else(|| {
                    let known: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
                    format!(
                        "unknown detector (built-in: {}; a custom detector needs a `pattern`)",
                        known.join(", ")
                    )
                });
        };
        if Builtin::from_name(name).is_some() {
            return Err("a custom detector cannot take a built-in detector's name".into());
        }
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        {
            return Err("custom detector names are 1 to 64 of [a-z0-9_]".into());
        }
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "pattern is {} bytes, the limit is {MAX_PATTERN_LEN}",
                pattern.len()
            ));
        }
        let re = RegexBuilder::new(pattern)
            .size_limit(MAX_PATTERN_SIZE)
            .nest_limit(64)
            .build()
            .map_err(|e| format!("invalid pattern: {e}"))?;
        // An empty match masks nothing and would hide a mistake; such
        // matches are also skipped at runtime.
        let probes = ["", "a", " ", "0", "a b\n0-0\n", "\u{e9}"];
        if probes.iter().any(|p| re.find_iter(p).any(|m| m.is_empty())) {
            return Err("pattern can match the empty string".into());
        }
        Ok(Detector::Custom(re))
    }

    fn find(&self, text: &str, out: &mut Vec<(usize, usize)>) {
        match self {
            Detector::Builtin(b) => b.find_into(text, out),
            Detector::Custom(re) => out.extend(
                re.find_iter(text)
                    .filter(|m| !m.is_empty())
                    .map(|m| (m.start(), m.end())),
            ),
        }
    }
}

/// A span to mask and the strategy (index) to mask it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
    pub strategy: usize,
}

/// Runs every detector over `text`; overlapping matches are merged (the
/// union is masked, with the most protective strategy, ties to the rule
/// listed first). Sorted, disjoint.
pub(crate) fn find(
    text: &str,
    detectors: &[(Detector, usize)],
    strategies: &[Compiled],
) -> Vec<Span> {
    let mut all: Vec<Span> = Vec::new();
    let mut found = Vec::new();
    for (d, s) in detectors {
        found.clear();
        d.find(text, &mut found);
        all.extend(found.iter().map(|&(start, end)| Span {
            start,
            end,
            strategy: *s,
        }));
    }
    if all.len() <= 1 {
        return all;
    }
    let rank = |i: usize| strategies.get(i).map_or((0, 0), Compiled::protection);
    all.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(b.end.cmp(&a.end))
            .then(a.strategy.cmp(&b.strategy))
    });
    let mut merged: Vec<Span> = Vec::with_capacity(all.len());
    for s in all {
        match merged.last_mut() {
            Some(cur) if s.start < cur.end => {
                cur.end = cur.end.max(s.end);
                if (rank(s.strategy), s.strategy) < (rank(cur.strategy), cur.strategy) {
                    cur.strategy = s.strategy;
                }
            }
            _ => merged.push(s),
        }
    }
    merged
}

// ------------------------------------------------------------------ helpers

fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// The byte before `i` (0 at the start).
fn before(b: &[u8], i: usize) -> u8 {
    i.checked_sub(1).map_or(0, |j| at(b, j))
}

fn alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

/// A character that glues a match into a longer word or number.
fn wordish(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Length of the digit run at `i`.
fn digits_at(b: &[u8], i: usize) -> usize {
    b.get(i..)
        .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count())
}

fn digit_value(c: u8) -> u32 {
    u32::from(c.wrapping_sub(b'0'))
}

// ------------------------------------------------------------------ email

fn emails(b: &[u8], out: &mut Vec<(usize, usize)>) {
    let local = |c: u8| alnum(c) || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
    let mut floor = 0;
    for (i, &c) in b.iter().enumerate() {
        if c != b'@' || i < floor {
            continue;
        }
        let mut s = i;
        while s > floor && local(before(b, s)) {
            s -= 1;
        }
        while s < i && at(b, s) == b'.' {
            s += 1;
        }
        if s == i {
            continue;
        }
        if let Some(e) = domain_end(b, i + 1) {
            out.push((s, e));
            floor = e;
        }
    }
}

/// End of a domain name starting at `i`: labels of `[A-Za-z0-9-]` (not
/// starting or ending with `-`, at most 63), at least two, the last
/// alphabetic and 2+ long. The longest such prefix.
fn domain_end(b: &[u8], mut p: usize) -> Option<usize> {
    let mut labels = 0;
    let mut good = None;
    loop {
        let start = p;
        while alnum(at(b, p)) || at(b, p) == b'-' {
            p += 1;
        }
        let label = b.get(start..p).unwrap_or_default();
        if label.is_empty()
            || label.len() > 63
            || label.first() == Some(&b'-')
            || label.last() == Some(&b'-')
        {
            break;
        }
        labels += 1;
        if labels >= 2 && label.len() >= 2 && label.iter().all(u8::is_ascii_alphabetic) {
            good = Some(p);
        }
        if at(b, p) == b'.' && alnum(at(b, p + 1)) {
            p += 1;
        } else {
            break;
        }
    }
    good
}

// ------------------------------------------------------------------ phone

/// Digit groups from `p` separated by exactly one `sep` byte, while they
/// total at most `limit` digits: the group lengths, and whether more
/// groups followed (the run is longer than `limit`).
fn groups(b: &[u8], mut p: usize, sep: u8, limit: usize) -> (Vec<usize>, bool) {
    let mut lens = Vec::new();
    let mut total = 0;
    loop {
        let n = digits_at(b, p);
        if n == 0 {
            return (lens, false);
        }
        if total + n > limit {
            return (lens, true);
        }
        lens.push(n);
        total += n;
        p += n;
        if at(b, p) == sep && at(b, p + 1).is_ascii_digit() {
            p += 1;
        } else {
            return (lens, false);
        }
    }
}

fn phones(b: &[u8], out: &mut Vec<(usize, usize)>) {
    let mut i = 0;
    while i < b.len() {
        let c = at(b, i);
        let prev = before(b, i);
        let found = if c == b'+' && !wordish(prev) && prev != b'+' {
            international(b, i)
        } else if (c == b'(' || c.is_ascii_digit())
            && !wordish(prev)
            && !matches!(prev, b'.' | b'-' | b'+' | b'/' | b':' | b',')
        {
            nanp(b, i).or_else(|| trunk(b, i))
        } else {
            None
        };
        match found {
            Some(end) => {
                out.push((i, end));
                i = end;
            }
            None => i += 1,
        }
    }
}

/// The byte at `end` ends a number: not glued to a word, not followed by
/// more digits through a separator (`415-555-2671-12`, `1.2.3.4`).
fn number_ends(b: &[u8], end: usize) -> bool {
    let c = at(b, end);
    let glued = matches!(c, b'.' | b'-' | b'/' | b':') && at(b, end + 1).is_ascii_digit();
    !wordish(c) && !glued
}

/// `+` and 8–15 digits in groups separated by one space, `-` or `.`; one
/// group (1–4 digits) may be in parentheses, which need no separator
/// around them (`+1(415)555-2671`, `+44 (0)20 7946 0958`).
fn international(b: &[u8], plus: usize) -> Option<usize> {
    let mut p = plus + 1;
    let mut total = 0;
    let mut end = None;
    let mut paren = false;
    loop {
        let (first, n, next) = if at(b, p) == b'(' && !paren {
            let n = digits_at(b, p + 1);
            if n == 0 || n > 4 || at(b, p + 1 + n) != b')' {
                break;
            }
            paren = true;
            (at(b, p + 1), n, p + n + 2)
        } else {
            let n = digits_at(b, p);
            if n == 0 {
                break;
            }
            (at(b, p), n, p + n)
        };
        if (total == 0 && first == b'0') || total + n > 15 {
            break;
        }
        total += n;
        p = next;
        if total >= 8 && number_ends(b, p) {
            end = Some(p);
        }
        let s = at(b, p);
        let after = at(b, p + 1);
        let closed = before(b, p) == b')';
        if matches!(s, b' ' | b'-' | b'.') && (after.is_ascii_digit() || (after == b'(' && !paren))
        {
            p += 1;
        } else if (closed && s.is_ascii_digit()) || (s == b'(' && !paren) {
            // `(415)555`, `44(0)20`: no separator needed around the group.
        } else {
            break;
        }
    }
    end
}

/// North-American numbers: `(415) 555-2671`, `(415)555-2671`,
/// `(415) 555 2671`, `415-555-2671`, `415.555.2671`, optionally `1-` /
/// `1 ` / `1.` first. Area code and exchange start with 2–9.
fn nanp(b: &[u8], start: usize) -> Option<usize> {
    let mut p = start;
    let valid_first = |c: u8| (b'2'..=b'9').contains(&c);
    if at(b, p) == b'1' && matches!(at(b, p + 1), b' ' | b'-' | b'.') {
        let q = p + 2;
        if at(b, q) == b'(' || digits_at(b, q) == 3 {
            p = q;
        }
    }
    if at(b, p) == b'(' {
        if digits_at(b, p + 1) != 3 || at(b, p + 4) != b')' || !valid_first(at(b, p + 1)) {
            return None;
        }
        p += 5;
        if at(b, p) == b' ' {
            p += 1;
        }
        if digits_at(b, p) != 3 || !matches!(at(b, p + 3), b'-' | b' ' | b'.') {
            return None;
        }
    } else {
        let sep = at(b, p + 3);
        if digits_at(b, p) != 3 || !valid_first(at(b, p)) || !matches!(sep, b'-' | b'.') {
            return None;
        }
        p += 4;
        if digits_at(b, p) != 3 || at(b, p + 3) != sep {
            return None;
        }
    }
    if !valid_first(at(b, p)) {
        return None;
    }
    p += 4;
    if digits_at(b, p) != 4 {
        return None;
    }
    p += 4;
    number_ends(b, p).then_some(p)
}

/// National numbers with a trunk prefix `0`: 10–11 digits in 2+ groups of
/// 2–8 digits with one consistent separator (space or `-`), the first
/// group optionally in parentheses (then followed by a space or nothing).
fn trunk(b: &[u8], start: usize) -> Option<usize> {
    let mut p = start;
    let mut total = 0;
    let paren = at(b, p) == b'(';
    if paren {
        let n = digits_at(b, p + 1);
        if !(2..=5).contains(&n) || at(b, p + 1) != b'0' || at(b, p + 1 + n) != b')' {
            return None;
        }
        total = n;
        p += n + 2;
        if at(b, p) == b' ' {
            p += 1;
        }
    } else if at(b, p) != b'0' {
        return None;
    }
    let sep = if paren {
        b' '
    } else {
        match at(b, p + digits_at(b, p)) {
            s @ (b' ' | b'-') => s,
            _ => return None,
        }
    };
    let (lens, more) = groups(b, p, sep, 11 - total);
    let digits: usize = lens.iter().sum();
    total += digits;
    let count = lens.len() + usize::from(paren);
    if more
        || count < 2
        || !(10..=11).contains(&total)
        || lens.iter().any(|&n| !(2..=8).contains(&n))
    {
        return None;
    }
    let end = p + digits + lens.len().saturating_sub(1);
    number_ends(b, end).then_some(end)
}

// ------------------------------------------------------------------ cards

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = digit_value(d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

fn cards(b: &[u8], out: &mut Vec<(usize, usize)>) {
    let mut i = 0;
    while i < b.len() {
        if !at(b, i).is_ascii_digit() || before(b, i).is_ascii_digit() {
            i += 1;
            continue;
        }
        // A run of digit groups separated by one space or dash.
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut p = i;
        loop {
            let n = digits_at(b, p);
            groups.push((p, p + n));
            p += n;
            if matches!(at(b, p), b' ' | b'-') && at(b, p + 1).is_ascii_digit() {
                p += 1;
            } else {
                break;
            }
        }
        let run_end = p;
        // Groups glued to words (or decimals) at either end are not cards.
        let prev = before(b, i);
        let lo = usize::from(wordish(prev) || prev == b'.');
        let hi = groups.len() - usize::from(!number_ends(b, run_end));
        let mut g = lo;
        while g < hi {
            match card_at(b, &groups, g, hi) {
                Some(last) => {
                    if let (Some(s), Some(e)) = (groups.get(g), groups.get(last)) {
                        out.push((s.0, e.1));
                    }
                    g = last + 1;
                }
                None => g += 1,
            }
        }
        i = run_end.max(i + 1);
    }
}

/// The last group of the longest Luhn-valid card starting at group `g`.
fn card_at(b: &[u8], groups: &[(usize, usize)], g: usize, hi: usize) -> Option<usize> {
    let first = groups.get(g)?;
    if at(b, first.0) == b'0' {
        return None;
    }
    let mut digits: Vec<u8> = Vec::with_capacity(19);
    let mut best = None;
    for (k, &(s, e)) in groups.iter().enumerate().take(hi).skip(g) {
        let n = e - s;
        if digits.len() + n > 19 || (k > g && n < 3) || (k == g + 1 && first.1 - first.0 < 3) {
            break;
        }
        digits.extend_from_slice(b.get(s..e).unwrap_or_default());
        if digits.len() >= 13 && luhn(&digits) {
            best = Some(k);
        }
    }
    best
}

// ------------------------------------------------------------------ IBAN

/// IBAN lengths by country (the SWIFT registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

fn ibans(b: &[u8], out: &mut Vec<(usize, usize)>) {
    let mut i = 0;
    while i + 1 < b.len() {
        match iban_at(b, i) {
            Some(end) => {
                out.push((i, end));
                i = end;
            }
            None => i += 1,
        }
    }
}

fn iban_at(b: &[u8], i: usize) -> Option<usize> {
    let cc = [at(b, i), at(b, i + 1)];
    if !cc.iter().all(u8::is_ascii_uppercase) || alnum(before(b, i)) {
        return None;
    }
    let len = IBAN_LENGTHS.iter().find(|(c, _)| **c == cc)?.1;
    if !at(b, i + 2).is_ascii_digit() || !at(b, i + 3).is_ascii_digit() {
        return None;
    }
    let spaced = at(b, i + 4) == b' ';
    let mut chars: Vec<u8> = Vec::with_capacity(len);
    chars.extend_from_slice(b.get(i..i + 4)?);
    let mut p = i + 4;
    // In printed form a space precedes every group of four.
    let mut in_group = 4;
    while chars.len() < len {
        if spaced && in_group == 4 {
            in_group = 0;
            if at(b, p) != b' ' {
                return None;
            }
            p += 1;
        }
        let c = at(b, p);
        if !(c.is_ascii_uppercase() || c.is_ascii_digit()) {
            return None;
        }
        chars.push(c);
        in_group += 1;
        p += 1;
    }
    if alnum(at(b, p)) {
        return None;
    }
    // Move the first four characters to the end; letters are 10..35.
    let mut rem: u32 = 0;
    for &c in chars.iter().skip(4).chain(chars.iter().take(4)) {
        rem = if c.is_ascii_digit() {
            (rem * 10 + digit_value(c)) % 97
        } else {
            (rem * 100 + u32::from(c - b'A') + 10) % 97
        };
    }
    (rem == 1).then_some(p)
}

// ------------------------------------------------------------------ SSN

fn ssns(b: &[u8], out: &mut Vec<(usize, usize)>) {
    let mut i = 0;
    while i + 11 <= b.len() {
        if let Some(end) = ssn_at(b, i) {
            out.push((i, end));
            i = end;
        } else {
            i += 1;
        }
    }
}

fn ssn_at(b: &[u8], i: usize) -> Option<usize> {
    let prev = before(b, i);
    if wordish(prev) || matches!(prev, b'-' | b'.') {
        return None;
    }
    if digits_at(b, i) != 3
        || at(b, i + 3) != b'-'
        || digits_at(b, i + 4) != 2
        || at(b, i + 6) != b'-'
        || digits_at(b, i + 7) != 4
    {
        return None;
    }
    let next = at(b, i + 11);
    if wordish(next) || next == b'-' || (next == b'.' && at(b, i + 12).is_ascii_digit()) {
        return None;
    }
    let num = |s: usize, n: usize| {
        b.get(s..s + n)
            .unwrap_or_default()
            .iter()
            .fold(0, |acc, &c| acc * 10 + digit_value(c))
    };
    let (area, group, serial) = (num(i, 3), num(i + 4, 2), num(i + 7, 4));
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return None;
    }
    Some(i + 11)
}

// ------------------------------------------------------------------ AWS

fn aws_keys(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut starts: Vec<usize> = text
        .match_indices("AKIA")
        .chain(text.match_indices("ASIA"))
        .map(|(i, _)| i)
        .collect();
    starts.sort_unstable();
    let mut floor = 0;
    for i in starts {
        if i < floor || alnum(before(b, i)) {
            continue;
        }
        let body = b.get(i + 4..i + 20);
        let ok = body.is_some_and(|r| {
            r.iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        });
        if ok && !alnum(at(b, i + 20)) {
            out.push((i, i + 20));
            floor = i + 20;
        }
    }
}

// ------------------------------------------------------------------ PEM

fn private_keys(text: &str, out: &mut Vec<(usize, usize)>) {
    const BEGIN: &str = "-----BEGIN ";
    let mut from = 0;
    while let Some(rel) = text.get(from..).and_then(|t| t.find(BEGIN)) {
        let start = from + rel;
        let label_start = start + BEGIN.len();
        let rest = text.get(label_start..).unwrap_or_default();
        let label_len = rest
            .bytes()
            .take(64)
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b' ')
            .count();
        let label = rest.get(..label_len).unwrap_or_default();
        if !label.contains("PRIVATE KEY")
            || !rest
                .get(label_len..)
                .unwrap_or_default()
                .starts_with("-----")
        {
            from = label_start;
            continue;
        }
        let body = label_start + label_len + 5;
        let footer = format!("-----END {label}-----");
        match text.get(body..).and_then(|t| t.find(&footer)) {
            Some(rel_end) => {
                let end = body + rel_end + footer.len();
                out.push((start, end));
                from = end;
            }
            None => {
                // A truncated key is still a secret: mask to the end.
                out.push((start, text.len()));
                return;
            }
        }
    }
}

// ------------------------------------------------------------------ JWT

fn b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

fn jwts(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let seg = |p: usize| {
        b.get(p..)
            .map_or(0, |r| r.iter().take_while(|c| b64url(**c)).count())
    };
    let mut floor = 0;
    for (i, _) in text.match_indices("eyJ") {
        if i < floor || b64url(before(b, i)) {
            continue;
        }
        let first = seg(i);
        if first < 10 {
            continue;
        }
        // Ends of up to five `.`-separated segments.
        let mut ends = vec![i + first];
        let mut p = i + first;
        while ends.len() < 5 && at(b, p) == b'.' {
            p += 1 + seg(p + 1);
            ends.push(p);
        }
        let len = |k: usize| match (ends.get(k.wrapping_sub(1)), ends.get(k)) {
            (Some(a), Some(z)) => z - a - 1,
            _ => 0,
        };
        // JWE: header.key.iv.ciphertext.tag (the key may be empty);
        // JWS: header.payload.signature (an unsigned token's is empty).
        let end = if ends.len() == 5 && len(3) > 0 && len(4) > 0 {
            ends.get(4)
        } else if ends.len() >= 3 && len(1) >= 2 {
            ends.get(2)
        } else {
            None
        };
        if let Some(&end) = end {
            out.push((i, end));
            floor = end;
        }
    }
}

// ------------------------------------------------------------------ Bearer

fn bearers(b: &[u8], out: &mut Vec<(usize, usize)>) {
    const MIN_TOKEN: usize = 16;
    let token68 = |c: u8| alnum(c) || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
    let mut i = 0;
    while i + 6 < b.len() {
        let word = b.get(i..i + 6).unwrap_or_default();
        if !word.eq_ignore_ascii_case(b"bearer") || alnum(before(b, i)) {
            i += 1;
            continue;
        }
        let mut p = i + 6;
        while matches!(at(b, p), b' ' | b'\t') {
            p += 1;
        }
        let start = p;
        if start == i + 6 {
            i += 6;
            continue;
        }
        while token68(at(b, p)) {
            p += 1;
        }
        while at(b, p) == b'=' {
            p += 1;
        }
        let token = b.get(start..p).unwrap_or_default();
        if token.len() >= MIN_TOKEN && token.iter().any(u8::is_ascii_digit) && !alnum(at(b, p)) {
            out.push((start, p));
            i = p;
        } else {
            i = start.max(i + 1);
        }
    }
}
