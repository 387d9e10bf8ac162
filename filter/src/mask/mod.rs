//! Masking of sensitive response data: MCP/HTTP JSON bodies and PostgreSQL
//! result rows.
//!
//! Host-free. A [`Masker`] is built once from a [`MaskSpec`] (it goes into the
//! compiled policy blob) and an optional [`HashKey`] (supplied at runtime,
//! never in the policy); the caller decides which rules apply to a caller's
//! roles and builds one `Masker` per rule set. Everything is compiled at
//! build time (paths, custom regexes, the HMAC key schedule); masking never
//! compiles anything.
//!
//! # Rules
//!
//! - **Field rules** ([`FieldRule`]): a JSON path (below) and a strategy.
//!   The value at a matching path is masked whole: a string or a number
//!   becomes the masked string, a boolean is masked as the text
//!   `true`/`false`, `null` stays `null`, an object or array has every
//!   scalar leaf masked (keys are kept). When several paths match, the rule
//!   listed first decides.
//! - **Column rules** ([`ColumnRule`]): `column`, `table.column` or
//!   `schema.table.column`, matched ASCII case-insensitively (see
//!   [`RowMasker`]).
//! - **Detectors** ([`DetectorRule`]): a built-in detector ([`Builtin`]) or a
//!   custom regex, each with a strategy. In JSON they scan every string,
//!   every number (its JSON text; a number with a match becomes the masked
//!   string) and every object key not inside a value a field rule masked; a
//!   masked key that collides with another key of its object gets `#2`,
//!   `#3`... appended, so no entry is lost.
//!
//! # Field paths
//!
//! ```text
//! path  = step *( "." step / "[" index "]" )   ; a path may also start with "[" index "]"
//! step  = name / "*" / "**"
//! index = "*" / 1*9DIGIT
//! name  = 1*( any character but . [ ] \  /  "\" followed by one of . [ ] * \ )
//! ```
//!
//! - `name` is an object key, compared exactly (`a\.b` is the key `a.b`,
//!   `\*` the key `*`);
//! - `*` is any key of an object; `[*]` any element of an array; `[3]` the
//!   element at index 3;
//! - `**` is any number (zero included) of keys and indices: `**.email` is
//!   an `email` key at any depth; `a.**` is `a` and everything under it;
//! - arrays are transparent to `name` and `*`: `items.card` also matches
//!   `card` in every element of an `items` array (and of nested arrays), so
//!   `items.card` and `items[*].card` mean the same for an array of
//!   objects. A path masks more, never less, when the data's shape varies.
//!
//! Examples: `customer.email`, `items[*].card`, `**.ssn`, `[*].token`,
//! `users.*.phone`, `rows[0]`.
//!
//! # Strategies ([`Strategy`])
//!
//! - `redact`: the value becomes a fixed text, [`DEFAULT_REDACTION`] unless
//!   the rule gives its own.
//! - `partial { keep: N }`: the last `N` *significant* characters
//!   (alphanumeric, Unicode-aware) are kept, every other significant
//!   character becomes `*`; separators (spaces, `-`, `.`, `@`, `(`...) are
//!   kept so the shape stays readable: `4111 1111 1111 1111` with `keep: 4`
//!   is `**** **** **** 1111`. If the value has `N` or fewer significant
//!   characters, all of them are masked: the whole value is never revealed.
//! - `hash`: `h:` followed by the first 16 hex digits of
//!   HMAC-SHA256(key, value). Deterministic (equal values give equal
//!   outputs, so joins and group-bys still work) and keyed (without the key
//!   a low-entropy value cannot be brute-forced). With no key configured,
//!   masking a value with `hash` fails with [`MaskError::NoHashKey`]: the
//!   caller refuses the response; nothing falls back to the plain value.
//!
//! # Detector matches
//!
//! Every detector finds its matches independently; overlapping matches (of
//! the same or different detectors) are merged into one span covering all
//! of them, so no byte any detector matched is left in clear. A merged span
//! is masked with the most protective of its strategies (`redact`, then
//! `hash`, then `partial` with the smallest `keep`; ties go to the rule
//! listed first). Matches that merely touch are masked separately. The
//! count returned is the number of spans (plus values masked by rules).
//!
//! # Fail closed
//!
//! Every function returns `Err` rather than unmasked data when it cannot do
//! what the rules ask: JSON nested too deep, text content that is JSON with
//! duplicate keys, a text column that is not UTF-8, a `json` column that
//! does not parse, a `hash` without a key, a value of a non-string type that
//! must be masked when [`MaskSpec::unmaskable`] is `refuse`...
//!
//! Size limits are the caller's: it already caps bodies and rows, and every
//! scan here is linear in the input (built-in detectors are hand-written
//! byte scanners; custom regexes run on `regex-lite`, whose search is
//! O(pattern × text), never exponential).

mod detect;
mod json;
mod path;
mod pg;
mod strategy;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub use detect::Builtin;
pub use pg::{encode_data_row, Catalog, ColumnAction, RowMasker};

use detect::Detector;
use path::Path;
use pg::ColumnName;
use strategy::Compiled;

/// The text `redact` writes when the rule gives none.
pub const DEFAULT_REDACTION: &str = "[REDACTED]";
/// Longest `redact` text a rule may give, in characters.
pub const MAX_REDACTION_CHARS: usize = 200;
/// Largest `partial` `keep`.
pub const MAX_PARTIAL_KEEP: usize = 64;
/// Longest custom detector pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// Size limit of one compiled custom pattern (regex-lite's estimate, bytes).
pub const MAX_PATTERN_SIZE: usize = 256 * 1024;
/// Longest field path, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// Deepest JSON nesting masked (deeper → [`MaskError::TooDeep`]).
pub const MAX_JSON_DEPTH: usize = 128;

// ------------------------------------------------------------------ spec

/// What to mask, as the compiled policy carries it. The caller picks the
/// rules that apply to the caller's roles and builds a [`Masker`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskSpec {
    /// JSON field rules (MCP `structuredContent`, JSON text content, HTTP
    /// JSON bodies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldRule>,
    /// PostgreSQL column rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnRule>,
    /// Detectors run over every string not masked by a rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detectors: Vec<DetectorRule>,
    /// What happens to a PostgreSQL value that must be masked but whose type
    /// cannot hold the mask string.
    #[serde(default)]
    pub unmaskable: Unmaskable,
}

/// A JSON field rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    /// A path in the grammar of the [module docs](self#field-paths)
    /// (`customer.email`, `items[*].card`, `**.ssn`).
    pub path: String,
    #[serde(default)]
    pub strategy: Strategy,
}

/// A PostgreSQL column rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRule {
    /// `column`, `table.column` or `schema.table.column`.
    pub column: String,
    #[serde(default)]
    pub strategy: Strategy,
}

/// A detector and the strategy for its matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorRule {
    /// A built-in detector name ([`Builtin::name`]) or, with `pattern`, the
    /// name of a custom detector (`[a-z0-9_]`, 1 to 64 characters, not a
    /// built-in name).
    pub detector: String,
    /// The custom detector's regex (`regex-lite` syntax). It must not be
    /// able to match the empty string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default)]
    pub strategy: Strategy,
}

/// How a matched value is replaced (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Strategy {
    /// Replace with `text`, or [`DEFAULT_REDACTION`].
    Redact {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// Keep the last `keep` significant characters, `*` for the others.
    Partial { keep: usize },
    /// `h:` + 16 hex digits of HMAC-SHA256 with the runtime key. (A
    /// struct variant so that unknown fields are refused.)
    Hash {},
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::Redact { text: None }
    }
}

/// A PostgreSQL value that must be masked but whose column type cannot hold
/// the mask string (numbers, dates, booleans, arrays... in text format, and
/// any non-text type in binary format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmaskable {
    /// The value becomes SQL NULL.
    #[default]
    Null,
    /// Masking fails with [`MaskError::Unmaskable`] (the caller refuses the
    /// result).
    Refuse,
}

/// Every problem of a spec, human-readable, one entry each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub Vec<String>);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

impl std::error::Error for SpecError {}

impl MaskSpec {
    /// Checks every rule (paths parse, detectors exist, custom patterns
    /// compile within the limits and cannot match the empty string, names
    /// are unique, strategies are in range). Errors name the rule.
    pub fn validate(&self) -> Result<(), SpecError> {
        compile(self).map(|_| ())
    }

    /// Whether the spec masks nothing at all.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.columns.is_empty() && self.detectors.is_empty()
    }

    /// Whether some rule uses `hash` (and so needs a [`HashKey`]).
    pub fn uses_hash(&self) -> bool {
        let mut strategies = self
            .fields
            .iter()
            .map(|r| &r.strategy)
            .chain(self.columns.iter().map(|r| &r.strategy))
            .chain(self.detectors.iter().map(|r| &r.strategy));
        strategies.any(|s| matches!(s, Strategy::Hash {}))
    }
}

// ------------------------------------------------------------------ errors

/// Why a value could not be masked. The caller refuses the response or row;
/// it never forwards the unmasked data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    #[error("masking with `hash` needs a key and none is configured")]
    NoHashKey,
    #[error("{0} is not valid UTF-8")]
    NotUtf8(String),
    #[error("{0}")]
    Json(String),
    #[error("JSON nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("column `{0}` must be masked but its type cannot hold a mask")]
    Unmaskable(String),
    #[error("DataRow has {got} values but the RowDescription {expected} columns")]
    ColumnCount { expected: usize, got: usize },
    #[error("result format codes: {0}")]
    Formats(String),
    #[error("a result row could not be read")]
    Unreadable,
}

// ------------------------------------------------------------------ key

/// The secret key of the `hash` strategy, supplied at runtime (environment,
/// secret store), never in the policy. At least [`HashKey::MIN_LEN`] bytes.
#[derive(Clone)]
pub struct HashKey(Vec<u8>);

impl HashKey {
    /// Shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 16;

    /// A key from raw bytes; `Err` (human-readable) when shorter than
    /// [`HashKey::MIN_LEN`].
    pub fn new(bytes: Vec<u8>) -> Result<HashKey, String> {
        if bytes.len() < Self::MIN_LEN {
            return Err(format!(
                "hash key has {} bytes, at least {} are required",
                bytes.len(),
                Self::MIN_LEN
            ));
        }
        Ok(HashKey(bytes))
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

// ------------------------------------------------------------------ masker

/// A compiled [`MaskSpec`] (plus the runtime hash key). Cheap to clone
/// (shared).
#[derive(Clone)]
pub struct Masker {
    inner: Arc<Inner>,
}

struct Inner {
    /// One per rule, in spec order: fields, then columns, then detectors.
    strategies: Vec<Compiled>,
    fields: Vec<(Path, usize)>,
    columns: Vec<(ColumnName, usize)>,
    detectors: Vec<(Detector, usize)>,
    unmaskable: Unmaskable,
    hmac: Option<Hmac<Sha256>>,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("fields", &self.inner.fields.len())
            .field("columns", &self.inner.columns.len())
            .field("detectors", &self.inner.detectors.len())
            .field("hash_key", &self.inner.hmac.is_some())
            .finish()
    }
}

struct CompiledSpec {
    strategies: Vec<Compiled>,
    fields: Vec<(Path, usize)>,
    columns: Vec<(ColumnName, usize)>,
    detectors: Vec<(Detector, usize)>,
}

fn compile(spec: &MaskSpec) -> Result<CompiledSpec, SpecError> {
    let mut errors = Vec::new();
    let mut strategies = Vec::new();
    let mut check = |what: String, s: &Strategy, errors: &mut Vec<String>| -> usize {
        match Compiled::new(s) {
            Ok(c) => strategies.push(c),
            Err(e) => {
                errors.push(format!("{what}: {e}"));
                strategies.push(Compiled::default());
            }
        }
        strategies.len() - 1
    };

    let mut fields = Vec::new();
    for (i, rule) in spec.fields.iter().enumerate() {
        let what = format!("fields[{i}] (`{}`)", rule.path);
        let s = check(what.clone(), &rule.strategy, &mut errors);
        match Path::parse(&rule.path) {
            Ok(p) => fields.push((p, s)),
            Err(e) => errors.push(format!("{what}: {e}")),
        }
    }

    let mut columns = Vec::new();
    for (i, rule) in spec.columns.iter().enumerate() {
        let what = format!("columns[{i}] (`{}`)", rule.column);
        let s = check(what.clone(), &rule.strategy, &mut errors);
        match ColumnName::parse(&rule.column) {
            Ok(c) => columns.push((c, s)),
            Err(e) => errors.push(format!("{what}: {e}")),
        }
    }

    let mut detectors: Vec<(Detector, usize)> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (i, rule) in spec.detectors.iter().enumerate() {
        let what = format!("detectors[{i}] (`{}`)", rule.detector);
        let s = check(what.clone(), &rule.strategy, &mut errors);
        if names.contains(&rule.detector.as_str()) {
            errors.push(format!("{what}: detector listed twice"));
            continue;
        }
        names.push(&rule.detector);
        match Detector::new(&rule.detector, rule.pattern.as_deref()) {
            Ok(d) => detectors.push((d, s)),
            Err(e) => errors.push(format!("{what}: {e}")),
        }
    }

    if errors.is_empty() {
        Ok(CompiledSpec {
            strategies,
            fields,
            columns,
            detectors,
        })
    } else {
        Err(SpecError(errors))
    }
}

impl Masker {
    /// Compiles `spec`. `key` is needed only if a rule uses `hash`; without
    /// it those rules fail at masking time ([`MaskError::NoHashKey`]), so a
    /// missing key refuses only what it would have hashed.
    pub fn new(spec: &MaskSpec, key: Option<&HashKey>) -> Result<Masker, SpecError> {
        let c = compile(spec)?;
        let hmac = match key {
            Some(k) => Some(
                Hmac::<Sha256>::new_from_slice(&k.0)
                    .map_err(|e| SpecError(vec![format!("hash key: {e}")]))?,
            ),
            None => None,
        };
        Ok(Masker {
            inner: Arc::new(Inner {
                strategies: c.strategies,
                fields: c.fields,
                columns: c.columns,
                detectors: c.detectors,
                unmaskable: spec.unmaskable,
                hmac,
            }),
        })
    }

    /// Whether this masker masks nothing (every call returns at once).
    pub fn is_empty(&self) -> bool {
        self.inner.fields.is_empty()
            && self.inner.columns.is_empty()
            && self.inner.detectors.is_empty()
    }

    /// Whether detectors are configured.
    pub fn has_detectors(&self) -> bool {
        !self.inner.detectors.is_empty()
    }

    /// Whether a rule uses `hash` but no key was given: worth a warning at
    /// load time (such values are refused).
    pub fn missing_key(&self) -> bool {
        self.inner.hmac.is_none()
            && self
                .inner
                .strategies
                .iter()
                .any(|s| matches!(s, Compiled::Hash))
    }

    /// Runs the detectors over `text`, replacing every match. Borrowed (no
    /// allocation) when nothing matched; the count is the number of spans
    /// replaced.
    pub fn mask_text<'t>(&self, text: &'t str) -> Result<(Cow<'t, str>, usize), MaskError> {
        self.inner.mask_text(text)
    }
}

impl Inner {
    fn strategy(&self, i: usize) -> &Compiled {
        // Indices come from `compile`; the fallback is never used but keeps
        // the lookup panic-free (and redacts).
        self.strategies.get(i).unwrap_or(&strategy::FALLBACK)
    }

    /// Masks a whole value with strategy `i`.
    fn apply(&self, i: usize, value: &str) -> Result<String, MaskError> {
        self.strategy(i).apply(value, self.hmac.as_ref())
    }

    fn mask_text<'t>(&self, text: &'t str) -> Result<(Cow<'t, str>, usize), MaskError> {
        if self.detectors.is_empty() || text.is_empty() {
            return Ok((Cow::Borrowed(text), 0));
        }
        let spans = detect::find(text, &self.detectors, &self.strategies);
        if spans.is_empty() {
            return Ok((Cow::Borrowed(text), 0));
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for span in &spans {
            out.push_str(text.get(last..span.start).unwrap_or_default());
            let value = text.get(span.start..span.end).unwrap_or_default();
            out.push_str(&self.apply(span.strategy, value)?);
            last = span.end;
        }
        out.push_str(text.get(last..).unwrap_or_default());
        Ok((Cow::Owned(out), spans.len()))
    }
}
