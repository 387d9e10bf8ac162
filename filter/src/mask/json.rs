//! JSON masking: field paths, detectors over every string (and key), and
//! the MCP result shapes.

use serde_json::error::Category;
use serde_json::{Map, Value};

use super::path::{self, Child, State};
use super::{Inner, MaskError, Masker, MAX_JSON_DEPTH};
use crate::mcp::json::parse_strict;

/// Deepest nesting of JSON found inside a text (MCP text content, a `json`
/// column).
pub(crate) const MAX_TEXT_JSON_DEPTH: usize = crate::mcp::MAX_RESPONSE_DEPTH;

impl Masker {
    /// Masks `value` in place: field paths (rooted at `value`), then the
    /// detectors over every string, number and object key not already
    /// masked. Returns the number of values and spans masked.
    pub fn mask_json(&self, value: &mut Value) -> Result<usize, MaskError> {
        self.inner.mask_json(value, true)
    }

    /// Like [`Masker::mask_json`] but detectors only (no field paths): for
    /// JSON that is not the document the paths describe (e.g. a JSON-RPC
    /// `error`).
    pub fn scan_json(&self, value: &mut Value) -> Result<usize, MaskError> {
        self.inner.mask_json(value, false)
    }

    /// Masks the `result` of an MCP response (`tools/call`,
    /// `resources/read`, ...) in place:
    /// - field paths apply to `structuredContent`, and to every text
    ///   content that parses as a JSON object or array (`content[].text`,
    ///   `content[].resource.text`, `contents[].text`); such a text is
    ///   re-serialized compactly if anything in it was masked, else left
    ///   byte for byte. A text that is not JSON gets the detectors; one that
    ///   is JSON but with duplicate keys or too deep is an error;
    /// - binary payloads (`data` of image/audio content, `blob` of
    ///   resources) are left alone;
    /// - every other string of the result gets the detectors.
    pub fn mask_mcp_result(&self, result: &mut Value) -> Result<usize, MaskError> {
        let m = &*self.inner;
        if m.fields.is_empty() && m.detectors.is_empty() {
            return Ok(0);
        }
        let Value::Object(obj) = result else {
            return m.mask_json(result, false);
        };
        let mut count = 0;
        for (k, v) in obj.iter_mut() {
            count += match k.as_str() {
                "structuredContent" => m.mask_json(v, true)?,
                "content" | "contents" => m.mcp_content(v)?,
                _ => m.mask_json(v, false)?,
            };
        }
        count += m.mask_keys(obj)?;
        Ok(count)
    }
}

impl Inner {
    fn mask_json(&self, value: &mut Value, paths: bool) -> Result<usize, MaskError> {
        let states = if paths && !self.fields.is_empty() {
            path::root(&self.fields)
        } else {
            Vec::new()
        };
        if states.is_empty() && self.detectors.is_empty() {
            return Ok(0);
        }
        let mut count = 0;
        self.walk(value, &states, 0, &mut count)?;
        Ok(count)
    }

    fn walk(
        &self,
        value: &mut Value,
        states: &[State],
        depth: usize,
        count: &mut usize,
    ) -> Result<(), MaskError> {
        if depth > MAX_JSON_DEPTH {
            return Err(MaskError::TooDeep(MAX_JSON_DEPTH));
        }
        if let Some(s) = path::matched(&self.fields, states) {
            return self.mask_all(value, s, depth, count);
        }
        let scan = !self.detectors.is_empty();
        if states.is_empty() && !scan {
            return Ok(());
        }
        match value {
            Value::String(s) if scan => {
                let (out, n) = self.mask_text(s)?;
                if n > 0 {
                    *s = out.into_owned();
                    *count += n;
                }
            }
            Value::Number(num) if scan => {
                let text = num.to_string();
                let (out, n) = self.mask_text(&text)?;
                if n > 0 {
                    *value = Value::String(out.into_owned());
                    *count += n;
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let next = path::step(&self.fields, states, Child::Index(i));
                    self.walk(item, &next, depth + 1, count)?;
                }
            }
            Value::Object(obj) => {
                for (k, v) in obj.iter_mut() {
                    let next = path::step(&self.fields, states, Child::Key(k));
                    self.walk(v, &next, depth + 1, count)?;
                }
                if scan {
                    *count += self.mask_keys(obj)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Masks every scalar leaf under `value` with strategy `s`.
    fn mask_all(
        &self,
        value: &mut Value,
        s: usize,
        depth: usize,
        count: &mut usize,
    ) -> Result<(), MaskError> {
        if depth > MAX_JSON_DEPTH {
            return Err(MaskError::TooDeep(MAX_JSON_DEPTH));
        }
        let masked = match value {
            Value::Null => return Ok(()),
            Value::String(text) => self.apply(s, text)?,
            Value::Number(n) => self.apply(s, &n.to_string())?,
            Value::Bool(b) => self.apply(s, if *b { "true" } else { "false" })?,
            Value::Array(items) => {
                for item in items {
                    self.mask_all(item, s, depth + 1, count)?;
                }
                return Ok(());
            }
            Value::Object(obj) => {
                for (_, v) in obj.iter_mut() {
                    self.mask_all(v, s, depth + 1, count)?;
                }
                return Ok(());
            }
        };
        *value = Value::String(masked);
        *count += 1;
        Ok(())
    }

    /// Runs the detectors over the keys of `obj`; a masked key that
    /// collides with another gets `#2`, `#3`... appended so no entry is
    /// lost.
    fn mask_keys(&self, obj: &mut Map<String, Value>) -> Result<usize, MaskError> {
        if self.detectors.is_empty() {
            return Ok(0);
        }
        // Most objects have no key to mask: find out without allocating.
        let mut any = false;
        for k in obj.keys() {
            if self.mask_text(k)?.1 > 0 {
                any = true;
                break;
            }
        }
        if !any {
            return Ok(0);
        }
        let mut renamed: Vec<Option<String>> = Vec::with_capacity(obj.len());
        let mut count = 0;
        for k in obj.keys() {
            let (out, n) = self.mask_text(k)?;
            count += n;
            renamed.push((n > 0).then(|| out.into_owned()));
        }
        let old = std::mem::take(obj);
        for ((k, v), new) in old.into_iter().zip(renamed) {
            let base = new.unwrap_or(k);
            let mut key = base.clone();
            let mut n = 2;
            while obj.contains_key(&key) {
                key = format!("{base}#{n}");
                n += 1;
            }
            obj.insert(key, v);
        }
        Ok(count)
    }

    /// `content` / `contents` of an MCP result.
    fn mcp_content(&self, v: &mut Value) -> Result<usize, MaskError> {
        let Value::Array(items) = v else {
            return self.mask_json(v, false);
        };
        let mut count = 0;
        for item in items {
            let Value::Object(obj) = item else {
                count += self.mask_json(item, false)?;
                continue;
            };
            let binary_data = matches!(
                obj.get("type").and_then(Value::as_str),
                Some("image" | "audio")
            );
            for (k, v) in obj.iter_mut() {
                count += match (k.as_str(), v) {
                    ("text", Value::String(s)) => self.text_content(s)?,
                    ("blob", Value::String(_)) => 0,
                    ("data", Value::String(_)) if binary_data => 0,
                    ("resource", Value::Object(res)) => {
                        let mut n = 0;
                        for (rk, rv) in res.iter_mut() {
                            n += match (rk.as_str(), rv) {
                                ("text", Value::String(s)) => self.text_content(s)?,
                                ("blob", Value::String(_)) => 0,
                                (_, rv) => self.mask_json(rv, false)?,
                            };
                        }
                        n + self.mask_keys(res)?
                    }
                    (_, v) => self.mask_json(v, false)?,
                };
            }
            count += self.mask_keys(obj)?;
        }
        Ok(count)
    }

    /// A text that may hold JSON: parsed (strictly) when it starts like an
    /// object or array; field paths and detectors apply to the document,
    /// re-serialized only if something was masked. Anything else is plain
    /// text for the detectors.
    fn text_content(&self, s: &mut String) -> Result<usize, MaskError> {
        if let Some(mut doc) = self.parse_embedded(s)? {
            let n = self.mask_json(&mut doc, true)?;
            if n > 0 {
                *s = serde_json::to_string(&doc).map_err(|e| MaskError::Json(e.to_string()))?;
            }
            return Ok(n);
        }
        let (out, n) = self.mask_text(s)?;
        if n > 0 {
            *s = out.into_owned();
        }
        Ok(n)
    }

    /// `Some` when `text` is a JSON object or array; `None` when it is not
    /// JSON at all; `Err` when it is JSON Pinhole refuses to interpret
    /// (duplicate keys, too deep): masking by path would be unreliable.
    fn parse_embedded(&self, text: &str) -> Result<Option<Value>, MaskError> {
        let t = text.trim_start();
        if !(t.starts_with('{') || t.starts_with('[')) {
            return Ok(None);
        }
        match parse_strict(text, MAX_TEXT_JSON_DEPTH) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.classify() == Category::Data => Err(MaskError::Json(format!(
                "text content is JSON that cannot be masked: {e}"
            ))),
            Err(_) => Ok(None),
        }
    }

    /// A `json`/`jsonb` column value: must parse; detectors (no paths) over
    /// it, re-serialized if something was masked.
    pub(crate) fn scan_json_text(&self, text: &str) -> Result<Option<(String, usize)>, MaskError> {
        let mut doc = parse_strict(text, MAX_TEXT_JSON_DEPTH)
            .map_err(|e| MaskError::Json(format!("json value: {e}")))?;
        let n = self.mask_json(&mut doc, false)?;
        if n == 0 {
            return Ok(None);
        }
        let out = serde_json::to_string(&doc).map_err(|e| MaskError::Json(e.to_string()))?;
        Ok(Some((out, n)))
    }
}
