//! The strategies, compiled: `redact`, `partial`, `hash`.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{MaskError, Strategy, DEFAULT_REDACTION, MAX_PARTIAL_KEEP, MAX_REDACTION_CHARS};

/// Hex digits of the HMAC kept by `hash`.
const HASH_HEX_DIGITS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Compiled {
    Redact(String),
    Partial(usize),
    Hash,
}

impl Default for Compiled {
    fn default() -> Self {
        Compiled::Redact(DEFAULT_REDACTION.to_string())
    }
}

/// Used only if a strategy index were ever out of range: redacts to "".
pub(crate) static FALLBACK: Compiled = Compiled::Redact(String::new());

impl Compiled {
    pub(crate) fn new(s: &Strategy) -> Result<Compiled, String> {
        match s {
            Strategy::Redact { text: None } => Ok(Compiled::default()),
            Strategy::Redact { text: Some(t) } => {
                if t.chars().count() > MAX_REDACTION_CHARS {
                    return Err(format!(
                        "redact text longer than {MAX_REDACTION_CHARS} characters"
                    ));
                }
                if t.chars().any(char::is_control) {
                    return Err("redact text contains a control character".into());
                }
                Ok(Compiled::Redact(t.clone()))
            }
            Strategy::Partial { keep } => {
                if *keep > MAX_PARTIAL_KEEP {
                    return Err(format!(
                        "partial keep {keep} is larger than {MAX_PARTIAL_KEEP}"
                    ));
                }
                Ok(Compiled::Partial(*keep))
            }
            Strategy::Hash {} => Ok(Compiled::Hash),
        }
    }

    /// How much this strategy protects, lower is more: redact, hash, then
    /// partial by `keep`. Picks the strategy of merged detector spans.
    pub(crate) fn protection(&self) -> (u8, usize) {
        match self {
            Compiled::Redact(_) => (0, 0),
            Compiled::Hash => (1, 0),
            Compiled::Partial(keep) => (2, *keep),
        }
    }

    /// The masked form of `value`.
    pub(crate) fn apply(
        &self,
        value: &str,
        hmac: Option<&Hmac<Sha256>>,
    ) -> Result<String, MaskError> {
        match self {
            Compiled::Redact(text) => Ok(text.clone()),
            Compiled::Partial(keep) => Ok(partial(value, *keep)),
            Compiled::Hash => hmac.map(|k| hash(k, value)).ok_or(MaskError::NoHashKey),
        }
    }
}

/// Significant characters are kept or starred; the others (separators)
/// are copied.
fn significant(c: char) -> bool {
    c.is_alphanumeric()
}

fn partial(value: &str, keep: usize) -> String {
    let total = value.chars().filter(|c| significant(*c)).count();
    // Never reveal the whole value: with `keep` >= total, star everything.
    let hidden = if keep >= total { total } else { total - keep };
    let mut out = String::with_capacity(value.len());
    let mut seen = 0;
    for c in value.chars() {
        if significant(c) {
            out.push(if seen < hidden { '*' } else { c });
            seen += 1;
        } else {
            out.push(c);
        }
    }
    out
}

fn hash(key: &Hmac<Sha256>, value: &str) -> String {
    let mut mac = key.clone();
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(2 + HASH_HEX_DIGITS);
    out.push_str("h:");
    for b in digest.iter().take(HASH_HEX_DIGITS / 2) {
        let _ = write!(out, "{b:02x}");
    }
    out
}
