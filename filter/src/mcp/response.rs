//! Server → client: list responses cut down to what the caller may use.
//!
//! Filtering edits bytes in place: the text is validated and inspected once
//! (strictly, as on the request path), and only when an entry must go is the
//! affected array located again (with `serde_json`'s `RawValue`) and
//! replaced by `[` + the kept entries' original text joined by `,` + `]`.
//! Every other byte — key order, number spelling, escapes, whitespace,
//! `nextCursor`, `_meta` — is kept as the server sent it.

use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::json::{clip, parse_strict, same_id};
use super::request::{error_response, ListKind, RpcError};
use super::{McpError, MAX_RESPONSE_BYTES, MAX_RESPONSE_DEPTH, RESPONSE_REFUSED};
use crate::policy::eval::Item;

/// Whether the caller may see an item (the policy's `visible`).
pub type Visible<'a> = &'a dyn Fn(Item) -> bool;

/// Filters an `application/json` response body (one response or an array).
///
/// - A response whose `id` equals a pending list id (strings
///   exactly, numbers numerically) and that carries a `result` must have an
///   object `result`, and each of `tools`, `resources`, `resourceTemplates`,
///   `prompts` present in it must be an array; otherwise → `Err`.
/// - Entries of those arrays that are not visible are dropped; an entry that
///   is not an object or lacks its naming field (`name`, `uri`,
///   `uriTemplate`, a string) is dropped too (fail closed).
/// - Defence in depth: any other response whose `result` holds such an array
///   (e.g. replayed on a resumed stream, or under an unexpected id) is
///   filtered the same way. No other MCP result has these keys at the top of
///   `result`.
///
/// `Ok(None)`: nothing to change, forward the body as is. `Err`: the body is
/// not strict JSON (invalid UTF-8, duplicate keys, too deep, too large) or a
/// pending list response has the wrong shape: refuse it (fail closed).
pub fn filter_json_response(
    body: &[u8],
    lists: &[(Value, ListKind)],
    visible: Visible,
) -> Result<Option<Vec<u8>>, McpError> {
    filter_json_response_masked(body, lists, visible, None).map(|(b, _)| b)
}

/// [`filter_json_response`], then `masker` applied to every message's
/// `result` (MCP tool and resource results: structured content and JSON
/// text content by field path, detectors everywhere) and `error`. Returns
/// the new body (if changed) and the number of values masked. A result that
/// must be masked but cannot be is an `Err` (refuse the response).
pub fn filter_json_response_masked(
    body: &[u8],
    lists: &[(Value, ListKind)],
    visible: Visible,
    masker: Option<&crate::mask::Masker>,
) -> Result<(Option<Vec<u8>>, usize), McpError> {
    let text = response_text(body)?;
    let f = filter_text(text, lists, visible, masker)?;
    Ok((f.text.map(String::into_bytes), f.masked))
}

/// A response body as text, within the size cap.
fn response_text(body: &[u8]) -> Result<&str, McpError> {
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(McpError::Response(format!(
            "response of {} bytes exceeds the {MAX_RESPONSE_BYTES}-byte limit",
            body.len()
        )));
    }
    std::str::from_utf8(body).map_err(|e| {
        McpError::Response(format!(
            "response is not valid UTF-8 (byte {})",
            e.valid_up_to()
        ))
    })
}

/// A plain HTTP JSON body masked as a whole (field paths rooted at the
/// body, detectors everywhere). `Err` when it must be masked but is not
/// strict JSON (refuse it).
pub fn mask_json_body(
    body: &[u8],
    masker: &crate::mask::Masker,
) -> Result<(Option<Vec<u8>>, usize), McpError> {
    let text = response_text(body)?;
    let mut value = parse_strict(text, MAX_RESPONSE_DEPTH)
        .map_err(|e| McpError::Response(format!("malformed JSON: {e}")))?;
    let n = masker.mask_json(&mut value).map_err(|e| {
        McpError::Response(format!("a value that must be masked could not be: {e}"))
    })?;
    if n == 0 {
        return Ok((None, 0));
    }
    Ok((Some(value.to_string().into_bytes()), n))
}

/// The outcome of filtering one JSON text.
#[derive(Debug, Default)]
pub(crate) struct Filtered {
    /// The rewritten text; `None` when nothing changed.
    pub text: Option<String>,
    /// Indexes into `lists` of the pending requests this text answered.
    pub answered: Vec<usize>,
    /// Values masked.
    pub masked: usize,
}

/// Which entries of one list array survive.
struct Edit {
    /// Index in the top-level array; `None` when the text is one object.
    msg: Option<usize>,
    key: &'static str,
    keep: Vec<bool>,
}

pub(crate) fn filter_text(
    text: &str,
    lists: &[(Value, ListKind)],
    visible: Visible,
    masker: Option<&crate::mask::Masker>,
) -> Result<Filtered, McpError> {
    let (mut f, parsed) = filter_lists(text, lists, visible)?;
    let Some(masker) = masker else {
        return Ok(f);
    };
    // Masking works on the document as filtered: when no list entry was
    // dropped that is the text `filter_lists` has just parsed (strictly),
    // so its value is reused (a tools/call result: one parse instead of two,
    // about a fifth of the work on a large result); otherwise the spliced
    // text is parsed again.
    let mut value = match (parsed, f.text.as_deref()) {
        (Some(value), None) => value,
        (_, current) => parse_strict(current.unwrap_or(text), MAX_RESPONSE_DEPTH)
            .map_err(|e| McpError::Response(format!("malformed JSON: {e}")))?,
    };
    let mask_err = |e: crate::mask::MaskError| {
        McpError::Response(format!("a value that must be masked could not be: {e}"))
    };
    let mut masked = 0usize;
    let mut one = |msg: &mut Value| -> Result<(), McpError> {
        if let Value::Object(obj) = msg {
            if let Some(result) = obj.get_mut("result") {
                masked += masker.mask_mcp_result(result).map_err(mask_err)?;
            }
            if let Some(error) = obj.get_mut("error") {
                masked += masker.scan_json(error).map_err(mask_err)?;
            }
        }
        Ok(())
    };
    match &mut value {
        Value::Array(items) => {
            for item in items.iter_mut() {
                one(item)?;
            }
        }
        other => one(other)?,
    }
    if masked > 0 {
        f.text = Some(value.to_string());
        f.masked = masked;
    }
    Ok(f)
}

/// The lists of `text` filtered; with the parsed document when nothing was
/// changed (`Filtered::text` is `None`), for the masking that may follow.
fn filter_lists(
    text: &str,
    lists: &[(Value, ListKind)],
    visible: Visible,
) -> Result<(Filtered, Option<Value>), McpError> {
    let value = parse_strict(text, MAX_RESPONSE_DEPTH)
        .map_err(|e| McpError::Response(format!("malformed JSON: {e}")))?;
    let mut edits = Vec::new();
    let mut answered = Vec::new();
    match &value {
        Value::Object(obj) => inspect(None, obj, lists, visible, &mut edits, &mut answered)?,
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Value::Object(obj) = item {
                    inspect(Some(i), obj, lists, visible, &mut edits, &mut answered)?;
                }
            }
        }
        _ => {}
    }
    if edits.is_empty() {
        let f = Filtered {
            text: None,
            answered,
            masked: 0,
        };
        return Ok((f, Some(value)));
    }
    let f = Filtered {
        text: Some(splice(text, &edits)?),
        answered,
        masked: 0,
    };
    Ok((f, None))
}

fn inspect(
    msg: Option<usize>,
    obj: &Map<String, Value>,
    lists: &[(Value, ListKind)],
    visible: Visible,
    edits: &mut Vec<Edit>,
    answered: &mut Vec<usize>,
) -> Result<(), McpError> {
    // Server requests and notifications carry a `method` and no `result`;
    // their ids live in the server's id space and may equal ours.
    let Some(result) = obj.get("result") else {
        return Ok(());
    };
    let pending: Vec<usize> = match obj.get("id") {
        Some(id) => lists
            .iter()
            .enumerate()
            .filter(|(_, (p, _))| same_id(p, id))
            .map(|(i, _)| i)
            .collect(),
        None => Vec::new(),
    };
    let is_pending = !pending.is_empty();
    let id_text = || clip(&obj.get("id").map(Value::to_string).unwrap_or_default(), 64);
    let Value::Object(result) = result else {
        if is_pending {
            return Err(McpError::Response(format!(
                "the response to list request {} has a `result` that is not an object",
                id_text()
            )));
        }
        return Ok(());
    };
    for kind in ListKind::ALL {
        let key = kind.result_key();
        match result.get(key) {
            None => {}
            Some(Value::Array(entries)) => {
                let keep: Vec<bool> = entries
                    .iter()
                    .map(|e| entry_visible(kind, e, visible))
                    .collect();
                if keep.contains(&false) {
                    edits.push(Edit { msg, key, keep });
                }
            }
            Some(_) if is_pending => {
                return Err(McpError::Response(format!(
                    "`result.{key}` of the response to list request {} is not an array",
                    id_text()
                )));
            }
            Some(_) => {}
        }
    }
    answered.extend(pending);
    Ok(())
}

fn entry_visible(kind: ListKind, entry: &Value, visible: Visible) -> bool {
    let Some(name) = entry.get(kind.entry_key()).and_then(Value::as_str) else {
        return false;
    };
    visible(match kind {
        ListKind::Tools => Item::Tool(name),
        ListKind::Resources => Item::Resource(name),
        ListKind::ResourceTemplates => Item::ResourceTemplate(name),
        ListKind::Prompts => Item::Prompt(name),
    })
}

fn internal(what: &str) -> McpError {
    McpError::Response(format!("internal: cannot locate {what} in the response"))
}

fn raw_err(e: serde_json::Error) -> McpError {
    McpError::Response(format!("internal: {e}"))
}

/// Byte offset of `inner` inside `outer` (`inner` must be a subslice).
fn offset_in(outer: &str, inner: &str) -> Option<usize> {
    let off = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (off.checked_add(inner.len())? <= outer.len()).then_some(off)
}

fn splice(text: &str, edits: &[Edit]) -> Result<String, McpError> {
    let top: Vec<&RawValue> = if edits.iter().any(|e| e.msg.is_some()) {
        serde_json::from_str(text).map_err(raw_err)?
    } else {
        Vec::new()
    };
    let mut replacements: Vec<(Range<usize>, String)> = Vec::with_capacity(edits.len());
    for e in edits {
        let msg_text = match e.msg {
            None => text,
            Some(i) => top.get(i).ok_or_else(|| internal("a message"))?.get(),
        };
        let msg: BTreeMap<String, &RawValue> = serde_json::from_str(msg_text).map_err(raw_err)?;
        let result = msg.get("result").ok_or_else(|| internal("`result`"))?;
        let result: BTreeMap<String, &RawValue> =
            serde_json::from_str(result.get()).map_err(raw_err)?;
        let array = result.get(e.key).ok_or_else(|| internal(e.key))?.get();
        let entries: Vec<&RawValue> = serde_json::from_str(array).map_err(raw_err)?;
        if entries.len() != e.keep.len() {
            return Err(internal("the list entries"));
        }
        let mut new = String::with_capacity(array.len());
        new.push('[');
        for (entry, _) in entries.iter().zip(&e.keep).filter(|(_, keep)| **keep) {
            if new.len() > 1 {
                new.push(',');
            }
            new.push_str(entry.get());
        }
        new.push(']');
        let start = offset_in(text, array).ok_or_else(|| internal("the list"))?;
        replacements.push((start..start + array.len(), new));
    }
    replacements.sort_by_key(|(r, _)| r.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (range, new) in replacements {
        out.push_str(text.get(at..range.start).ok_or_else(|| internal("a gap"))?);
        out.push_str(&new);
        at = range.end;
    }
    out.push_str(text.get(at..).ok_or_else(|| internal("the end"))?);
    Ok(out)
}

/// The error the client gets, for each pending list id, when the upstream's
/// list response cannot be filtered (code [`RESPONSE_REFUSED`]).
pub fn response_refused_error(reason: &str) -> RpcError {
    RpcError {
        code: RESPONSE_REFUSED,
        message: format!("pinhole: the upstream's response could not be filtered: {reason}"),
        data: None,
    }
}

/// An `application/json` body answering every pending list id with
/// [`response_refused_error`] (a single response, or an array when there are
/// several ids).
pub fn refused_json_response(lists: &[(Value, ListKind)], reason: &str) -> Vec<u8> {
    let err = response_refused_error(reason);
    match lists {
        [(id, _)] => error_response(id, &err),
        _ => {
            let mut out = vec![b'['];
            for (i, (id, _)) in lists.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(error_response(id, &err));
            }
            out.push(b']');
            out
        }
    }
}
