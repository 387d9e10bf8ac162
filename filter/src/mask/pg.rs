//! PostgreSQL result rows: a per-RowDescription plan ([`RowMasker`]) that
//! masks DataRow values in place.
//!
//! # Which columns
//!
//! A column rule `column`, `table.column` or `schema.table.column` matches
//! a result column when (ASCII case-insensitively):
//! - `column` equals the column's name in the RowDescription (its alias, if
//!   the query gave one) **or** its real name as the [`Catalog`] knows it
//!   (by table OID and attribute number: `SELECT email AS e FROM users`
//!   still hits `users.email` when the catalog knows the attribute), and
//! - the table part, if any, equals the catalog's name for the column's
//!   table OID (schema compared only when both sides have one). When the
//!   table is unknown (OID 0 for computed columns, or missing from the
//!   catalog) a qualified rule matches on the column name alone: masking
//!   too much is the safe mistake.
//!
//! The first matching rule (in spec order) decides the strategy. A column
//! no rule matches is scanned by the detectors (if any) or passed.
//!
//! A computed column (`lower(email)`, `email || ''`) has no table and takes
//! its name from the expression or alias: column rules alone cannot catch
//! it. Deny such queries at the SQL level or enable detectors.
//!
//! # Types and formats
//!
//! Masked values must stay decodable by typed clients:
//! - string types (`text`, `varchar`, `bpchar`, `name`, `xml`, `unknown`,
//!   and, in text format, every non-built-in type: `citext`, enums,
//!   domains) get the mask string, in text and in binary format (the binary
//!   form of these types is the UTF-8 text);
//! - `json` / `jsonb` get a JSON string literal (`"[REDACTED]"`) when masked
//!   by a rule, and the detectors run over the parsed document when
//!   scanned (binary `jsonb`: version byte 1 then the text);
//! - every other type (numbers, dates, booleans, `uuid`, `bytea`, arrays,
//!   ranges, composites, and any type in binary format that is not a
//!   string type) cannot hold a mask string: a value that must be masked
//!   becomes NULL, or fails with [`MaskError::Unmaskable`] when the spec
//!   says `unmaskable: refuse`. Scanned values of these types are checked
//!   in their text form (binary `int8` and `numeric` are decoded first;
//!   other binary values are scanned if they happen to be UTF-8) and
//!   become NULL (or refuse) only when a detector fires.
//! - NULL stays NULL.
//!
//! The count returned is the number of values masked by rules plus the
//! detector spans replaced.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use super::{Inner, MaskError, Masker, Unmaskable};
use crate::pg::codec::{BackendMessage, FieldDescription};

/// Names of tables (and, optionally, columns) by OID, as the caller knows
/// them (e.g. from `pg_class`/`pg_attribute`, or a static map). Names are
/// as the policy spells them: `table` or `schema.table`.
pub trait Catalog {
    /// The table with this OID.
    fn table_name(&self, table_oid: u32) -> Option<&str>;
    /// The real name of attribute `attnum` of table `table_oid`.
    fn column_name(&self, _table_oid: u32, _attnum: i16) -> Option<&str> {
        None
    }
}

/// Nothing known: rules match on column names only.
impl Catalog for () {
    fn table_name(&self, _: u32) -> Option<&str> {
        None
    }
}

impl Catalog for HashMap<u32, String> {
    fn table_name(&self, table_oid: u32) -> Option<&str> {
        self.get(&table_oid).map(String::as_str)
    }
}

impl Catalog for BTreeMap<u32, String> {
    fn table_name(&self, table_oid: u32) -> Option<&str> {
        self.get(&table_oid).map(String::as_str)
    }
}

/// A parsed column rule name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnName {
    schema: Option<String>,
    table: Option<String>,
    column: String,
}

impl ColumnName {
    pub(crate) fn parse(text: &str) -> Result<ColumnName, String> {
        let parts: Vec<&str> = text.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err("expected `column`, `table.column` or `schema.table.column`".into());
        }
        let owned = |s: Option<&&str>| s.map(|s| (*s).to_string());
        match parts.as_slice() {
            [c] => Ok(ColumnName {
                schema: None,
                table: None,
                column: (*c).to_string(),
            }),
            [t, c] => Ok(ColumnName {
                schema: None,
                table: Some((*t).to_string()),
                column: (*c).to_string(),
            }),
            [s, t, c] => Ok(ColumnName {
                schema: owned(Some(s)),
                table: owned(Some(t)),
                column: (*c).to_string(),
            }),
            _ => Err("expected `column`, `table.column` or `schema.table.column`".into()),
        }
    }

    fn matches(&self, names: &[&str], table: Option<&str>) -> bool {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&self.column)) {
            return false;
        }
        let (Some(want), Some(have)) = (&self.table, table) else {
            // Unqualified rule, or table unknown: the column name decides.
            return true;
        };
        let (have_schema, have_table) = match have.rsplit_once('.') {
            Some((s, t)) => (Some(s), t),
            None => (None, have),
        };
        want.eq_ignore_ascii_case(have_table)
            && match (&self.schema, have_schema) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => true,
            }
    }
}

/// What a [`RowMasker`] does with a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnAction {
    /// Forwarded as is.
    Pass,
    /// Scanned by the detectors.
    Scan,
    /// Masked whole by the column rule at this index of
    /// [`MaskSpec::columns`](super::MaskSpec::columns).
    Mask { rule: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Built-in string types.
    Text,
    Json,
    Jsonb,
    Int8,
    Numeric,
    /// Not built in (OID >= 16384): text in text format, opaque in binary.
    User,
    /// Built-in non-string types.
    Other,
}

fn kind(type_oid: u32) -> Kind {
    match type_oid {
        // name, text, bpchar, varchar, unknown, xml
        19 | 25 | 1042 | 1043 | 705 | 142 => Kind::Text,
        114 => Kind::Json,
        3802 => Kind::Jsonb,
        20 => Kind::Int8,
        1700 => Kind::Numeric,
        o if o >= 16_384 => Kind::User,
        _ => Kind::Other,
    }
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
    /// Index into the masker's strategies, for `Mask`.
    strategy: Option<usize>,
    action: ColumnAction,
}

/// The masking plan of one result set (one RowDescription). Build it with
/// [`Masker::row_masker`] when the RowDescription arrives, then call
/// [`RowMasker::mask_data_row`] for every DataRow.
#[derive(Debug, Clone)]
pub struct RowMasker {
    masker: Masker,
    columns: Vec<Column>,
    formats: Vec<i16>,
    noop: bool,
}

impl Masker {
    /// The plan for a result set described by `fields`; `catalog` names
    /// tables (and columns) by OID (`&()` when nothing is known).
    pub fn row_masker(&self, fields: &[FieldDescription], catalog: &dyn Catalog) -> RowMasker {
        let m = &*self.inner;
        let scan = !m.detectors.is_empty();
        let columns: Vec<Column> = fields
            .iter()
            .map(|f| {
                let (table, real) = if f.table_oid == 0 {
                    (None, None)
                } else {
                    (
                        catalog.table_name(f.table_oid),
                        catalog.column_name(f.table_oid, f.column_attr),
                    )
                };
                let mut names = vec![f.name.as_str()];
                names.extend(real);
                let rule = m
                    .columns
                    .iter()
                    .enumerate()
                    .find(|(_, (c, _))| c.matches(&names, table));
                let (action, strategy) = match rule {
                    Some((i, (_, s))) => (ColumnAction::Mask { rule: i }, Some(*s)),
                    None if scan => (ColumnAction::Scan, None),
                    None => (ColumnAction::Pass, None),
                };
                Column {
                    name: f.name.clone(),
                    kind: kind(f.type_oid),
                    strategy,
                    action,
                }
            })
            .collect();
        let noop = columns.iter().all(|c| c.action == ColumnAction::Pass);
        RowMasker {
            masker: self.clone(),
            formats: fields.iter().map(|f| f.format).collect(),
            columns,
            noop,
        }
    }
}

impl RowMasker {
    /// Whether no column is masked or scanned: DataRows can be forwarded
    /// without decoding.
    pub fn is_noop(&self) -> bool {
        self.noop
    }

    /// What happens to column `i`.
    pub fn action(&self, i: usize) -> Option<ColumnAction> {
        self.columns.get(i).map(|c| c.action)
    }

    /// The format codes of the RowDescription, one per column (pass them to
    /// [`RowMasker::mask_data_row`] when no Bind said otherwise).
    pub fn description_formats(&self) -> &[i16] {
        &self.formats
    }

    /// Masks a DataRow's values in place. `formats` are result format codes
    /// as in Bind: none (all text), one (for every column) or one per
    /// column; 0 text, 1 binary. Returns the number of values and spans
    /// masked.
    pub fn mask_data_row(
        &self,
        values: &mut [Option<Vec<u8>>],
        formats: &[i16],
    ) -> Result<usize, MaskError> {
        if self.noop {
            return Ok(0);
        }
        self.check_shape(values.len(), formats)?;
        let m = &*self.masker.inner;
        let mut count = 0;
        for (i, (value, col)) in values.iter_mut().zip(&self.columns).enumerate() {
            match self.value_outcome(m, i, col, value.as_deref(), formats)? {
                Outcome::Keep => {}
                Outcome::Replace(new, n) => {
                    *value = Some(new);
                    count += n;
                }
                Outcome::Unmaskable(n) => {
                    *value = None;
                    count += n;
                }
            }
        }
        Ok(count)
    }

    /// [`RowMasker::mask_data_row`] on a whole DataRow frame (type byte,
    /// length, values), without decoding it into owned values: values that
    /// stay are copied from the frame as they are. `Ok(None)`: nothing in
    /// the row is masked, forward the frame unchanged; else the new frame
    /// and the number of values and spans masked. The same bytes and count
    /// as decoding the frame, [`RowMasker::mask_data_row`] and encoding it
    /// again; a frame that is not a well-formed DataRow is
    /// [`MaskError::Unreadable`].
    pub fn mask_frame(
        &self,
        frame: &[u8],
        formats: &[i16],
    ) -> Result<Option<(Vec<u8>, usize)>, MaskError> {
        if self.noop {
            return Ok(None);
        }
        let values = data_row_values(frame).ok_or(MaskError::Unreadable)?;
        self.check_shape(values.len(), formats)?;
        let m = &*self.masker.inner;
        let mut out: Option<Vec<u8>> = None;
        let mut count = 0;
        for (i, (v, col)) in values.iter().zip(&self.columns).enumerate() {
            let bytes = v.value.and_then(|(start, end)| frame.get(start..end));
            let new: Option<Option<Vec<u8>>> =
                match self.value_outcome(m, i, col, bytes, formats)? {
                    Outcome::Keep => None,
                    Outcome::Replace(new, n) => {
                        count += n;
                        Some(Some(new))
                    }
                    Outcome::Unmaskable(n) => {
                        count += n;
                        Some(None)
                    }
                };
            match (new, out.as_mut()) {
                // Unchanged so far: nothing to copy yet.
                (None, None) => {}
                // Unchanged after a change: its length and bytes as they were.
                (None, Some(o)) => o.extend_from_slice(frame.get(v.at..v.end).unwrap_or_default()),
                (Some(new), o) => {
                    let o = match o {
                        Some(o) => o,
                        // The first change: everything before this value as it was.
                        None => out.insert({
                            let mut o = Vec::with_capacity(frame.len() + 32);
                            o.extend_from_slice(frame.get(..v.at).unwrap_or_default());
                            o
                        }),
                    };
                    match new {
                        None => o.extend_from_slice(&(-1i32).to_be_bytes()),
                        Some(b) => {
                            let len = i32::try_from(b.len()).unwrap_or(i32::MAX);
                            o.extend_from_slice(&len.to_be_bytes());
                            o.extend_from_slice(&b);
                        }
                    }
                }
            }
        }
        let Some(mut o) = out else {
            return Ok(None);
        };
        let len = i32::try_from(o.len().saturating_sub(1)).unwrap_or(i32::MAX);
        if let Some(slot) = o.get_mut(1..5) {
            slot.copy_from_slice(&len.to_be_bytes());
        }
        Ok(Some((o, count)))
    }

    fn check_shape(&self, values: usize, formats: &[i16]) -> Result<(), MaskError> {
        if values != self.columns.len() {
            return Err(MaskError::ColumnCount {
                expected: self.columns.len(),
                got: values,
            });
        }
        if formats.len() > 1 && formats.len() != values {
            return Err(MaskError::Formats(format!(
                "{} codes for {} columns",
                formats.len(),
                values
            )));
        }
        Ok(())
    }

    /// What becomes of value `i` (`None`: NULL) of a row. `Unmaskable` is
    /// returned only when the value becomes NULL (`unmaskable: null`); with
    /// `unmaskable: refuse` it is an error.
    fn value_outcome(
        &self,
        m: &Inner,
        i: usize,
        col: &Column,
        value: Option<&[u8]>,
        formats: &[i16],
    ) -> Result<Outcome, MaskError> {
        let format = match formats {
            [] => 0,
            [f] => *f,
            _ => formats.get(i).copied().unwrap_or(0),
        };
        let binary = match format {
            0 => false,
            1 => true,
            f => return Err(MaskError::Formats(format!("unknown format code {f}"))),
        };
        let Some(bytes) = value else {
            return Ok(Outcome::Keep);
        };
        let outcome = match (col.action, col.strategy) {
            (ColumnAction::Mask { .. }, Some(s)) => mask_value(m, col, s, bytes, binary)?,
            (ColumnAction::Scan, _) => scan_value(m, col, bytes, binary)?,
            _ => Outcome::Keep,
        };
        match (outcome, m.unmaskable) {
            (Outcome::Unmaskable(_), Unmaskable::Refuse) => {
                Err(MaskError::Unmaskable(col.name.clone()))
            }
            (o, _) => Ok(o),
        }
    }

    /// Masks a backend message in place if it is a DataRow (see
    /// [`RowMasker::mask_data_row`]); other messages are left alone.
    pub fn mask_message(
        &self,
        message: &mut BackendMessage,
        formats: &[i16],
    ) -> Result<usize, MaskError> {
        match message {
            BackendMessage::DataRow { values } => self.mask_data_row(values, formats),
            _ => Ok(0),
        }
    }
}

/// The wire bytes of a DataRow with these values.
pub fn encode_data_row(values: Vec<Option<Vec<u8>>>) -> Vec<u8> {
    BackendMessage::DataRow { values }.encode()
}

/// Where a value of a DataRow frame is: its length prefix at `at`, the
/// frame's next value at `end`, its bytes at `value` (`None`: NULL).
#[derive(Debug, Clone, Copy)]
struct ValueAt {
    at: usize,
    end: usize,
    value: Option<(usize, usize)>,
}

/// The values of a whole DataRow frame, checked as the codec decodes one:
/// type `D`, a length that covers the rest of the frame, a non-negative
/// count, every length -1 (NULL) or within the frame, nothing after the
/// last value. `None` when any of that fails.
fn data_row_values(frame: &[u8]) -> Option<Vec<ValueAt>> {
    let int = |at: usize| -> Option<i32> {
        let b = frame.get(at..at.checked_add(4)?)?;
        Some(i32::from_be_bytes(<[u8; 4]>::try_from(b).ok()?))
    };
    if frame.first() != Some(&b'D') {
        return None;
    }
    let len = usize::try_from(int(1)?).ok()?;
    if len.checked_add(1)? != frame.len() {
        return None;
    }
    let count = <[u8; 2]>::try_from(frame.get(5..7)?).ok()?;
    let n = usize::try_from(i16::from_be_bytes(count)).ok()?;
    let mut values = Vec::with_capacity(n.min(frame.len() / 4));
    let mut at = 7usize;
    for _ in 0..n {
        let l = int(at)?;
        let start = at + 4;
        let (end, value) = if l == -1 {
            (start, None)
        } else {
            let end = start.checked_add(usize::try_from(l).ok()?)?;
            if end > frame.len() {
                return None;
            }
            (end, Some((start, end)))
        };
        values.push(ValueAt { at, end, value });
        at = end;
    }
    (at == frame.len()).then_some(values)
}

enum Outcome {
    Keep,
    Replace(Vec<u8>, usize),
    /// The value must be masked (this many masks) but its type cannot hold
    /// a string.
    Unmaskable(usize),
}

fn utf8<'a>(col: &Column, bytes: &'a [u8]) -> Result<&'a str, MaskError> {
    std::str::from_utf8(bytes).map_err(|_| MaskError::NotUtf8(format!("column `{}`", col.name)))
}

/// The JSON text of a `json`/`jsonb` value and the prefix to put back.
fn json_text<'a>(col: &Column, bytes: &'a [u8], binary: bool) -> Option<(&'a [u8], &'static [u8])> {
    if binary && col.kind == Kind::Jsonb {
        // Binary jsonb: a version byte (1) then the text.
        match bytes.split_first() {
            Some((1, rest)) => Some((rest, &[1])),
            _ => None,
        }
    } else {
        Some((bytes, &[]))
    }
}

fn mask_value(
    m: &Inner,
    col: &Column,
    s: usize,
    bytes: &[u8],
    binary: bool,
) -> Result<Outcome, MaskError> {
    match col.kind {
        Kind::Text => {
            let masked = m.apply(s, utf8(col, bytes)?)?;
            Ok(Outcome::Replace(masked.into_bytes(), 1))
        }
        Kind::User if !binary => {
            let masked = m.apply(s, utf8(col, bytes)?)?;
            Ok(Outcome::Replace(masked.into_bytes(), 1))
        }
        Kind::Json | Kind::Jsonb => {
            let Some((text, prefix)) = json_text(col, bytes, binary) else {
                return Ok(Outcome::Unmaskable(1));
            };
            let masked = m.apply(s, utf8(col, text)?)?;
            let literal =
                serde_json::to_string(&masked).map_err(|e| MaskError::Json(e.to_string()))?;
            let mut out = prefix.to_vec();
            out.extend_from_slice(literal.as_bytes());
            Ok(Outcome::Replace(out, 1))
        }
        _ => Ok(Outcome::Unmaskable(1)),
    }
}

fn scan_value(m: &Inner, col: &Column, bytes: &[u8], binary: bool) -> Result<Outcome, MaskError> {
    match col.kind {
        Kind::Text => {
            let (out, n) = m.mask_text(utf8(col, bytes)?)?;
            Ok(if n > 0 {
                Outcome::Replace(out.into_owned().into_bytes(), n)
            } else {
                Outcome::Keep
            })
        }
        Kind::User if !binary => {
            let (out, n) = m.mask_text(utf8(col, bytes)?)?;
            Ok(if n > 0 {
                Outcome::Replace(out.into_owned().into_bytes(), n)
            } else {
                Outcome::Keep
            })
        }
        Kind::Json | Kind::Jsonb => {
            let Some((text, prefix)) = json_text(col, bytes, binary) else {
                return Ok(Outcome::Unmaskable(1));
            };
            Ok(match m.scan_json_text(utf8(col, text)?)? {
                Some((out, n)) => {
                    let mut v = prefix.to_vec();
                    v.extend_from_slice(out.as_bytes());
                    Outcome::Replace(v, n)
                }
                None => Outcome::Keep,
            })
        }
        _ => {
            // Non-string types: scan the text form; any hit nulls (or
            // refuses) the whole value.
            let text: Option<Cow<'_, str>> = if !binary {
                Some(Cow::Borrowed(utf8(col, bytes)?))
            } else {
                match col.kind {
                    Kind::Int8 => <[u8; 8]>::try_from(bytes)
                        .ok()
                        .map(|b| Cow::Owned(i64::from_be_bytes(b).to_string())),
                    Kind::Numeric => numeric_text(bytes).map(Cow::Owned),
                    _ => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
                }
            };
            let n = match text {
                Some(t) => m.mask_text(&t)?.1,
                None => 0,
            };
            Ok(if n > 0 {
                Outcome::Unmaskable(n)
            } else {
                Outcome::Keep
            })
        }
    }
}

/// The text form of a binary `numeric` (enough for the detectors: sign,
/// integer digits, fraction digits), `None` if malformed or not finite.
fn numeric_text(bytes: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<i16> {
        let b = bytes.get(i * 2..i * 2 + 2)?;
        Some(i16::from_be_bytes([*b.first()?, *b.get(1)?]))
    };
    let ndigits = usize::try_from(word(0)?).ok()?;
    let weight = i64::from(word(1)?);
    let sign = word(2)? as u16;
    let dscale = usize::try_from(word(3)?).ok()?;
    if bytes.len() != 8 + 2 * ndigits || !matches!(sign, 0x0000 | 0x4000) {
        return None;
    }
    let digits: Vec<i16> = (0..ndigits).map(|k| word(4 + k)).collect::<Option<_>>()?;
    if digits.iter().any(|d| !(0..10_000).contains(d)) {
        return None;
    }
    let digit = |k: i64| -> i16 {
        usize::try_from(k)
            .ok()
            .and_then(|k| digits.get(k).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                out.push_str(&digit(k).to_string());
            } else {
                out.push_str(&format!("{:04}", digit(k)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut k = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(k)));
            k += 1;
        }
        frac.truncate(dscale);
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}
