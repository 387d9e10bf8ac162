//! Incremental filtering of `text/event-stream` responses.
//!
//! The stream is cut into events (lines ended by `\n`, `\r\n` or `\r`; an
//! event ends at an empty line). Each complete event is emitted as soon as
//! it is complete: unchanged, byte for byte, unless its `data` is a JSON-RPC
//! list response that loses entries (see [`super::filter_json_response`] for
//! what is filtered); such an event is re-emitted with its other lines
//! (`id:`, `event:`, `retry:`, comments) in place and its data on a single
//! `data:` line. The incomplete tail waits for the next chunk.
//!
//! Fail-closed rules, matching what MCP clients parse:
//! - `data` is decoded as UTF-8 with replacement characters (as the SSE
//!   specification and every client does) before it is read as JSON;
//! - the event type is ignored (clients differ on `event:` handling, so
//!   every event is checked);
//! - data that starts (after JSON whitespace) with `{` or `[` must be strict
//!   JSON — duplicate keys, excessive depth or a syntax error is an `Err`,
//!   because a lenient client could still read it; other data (plain text,
//!   empty) passes unchanged;
//! - a leading byte-order mark on the stream is recognised (clients strip it);
//! - an event still open at the end of the stream is processed like a
//!   complete one;
//! - an incomplete event larger than [`super::MAX_SSE_EVENT_BYTES`] is an
//!   `Err`;
//! - after an `Err` every later `push` fails too.

use serde_json::Value;

use super::request::{error_response, ListKind};
use super::response::{filter_text, response_refused_error, Visible};
use super::{McpError, MAX_SSE_EVENT_BYTES};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Filters one SSE response stream. Create one per response with the
/// pending list ids of its request ([`super::BodyOutcome::Forward`]).
#[derive(Debug, Clone)]
pub struct SseFilter {
    lists: Vec<(Value, ListKind)>,
    answered: Vec<bool>,
    /// Bytes of the current incomplete event.
    carry: Vec<u8>,
    /// Where the first incomplete line of `carry` starts (lines before it
    /// are already known to be complete and non-empty).
    scan: usize,
    /// How far `carry` is known to hold no line break (so a long line
    /// arriving in many chunks is searched once, not once per chunk).
    searched: usize,
    /// No event has been processed yet (a BOM may lead the next one).
    at_start: bool,
    failed: bool,
    /// Largest incomplete event held ([`MAX_SSE_EVENT_BYTES`]).
    max_event: usize,
    /// Masks results on their way (see [`super::filter_json_response_masked`]).
    masker: Option<std::rc::Rc<crate::mask::Masker>>,
    /// Values masked since the last [`SseFilter::take_masked`].
    masked: usize,
}

impl SseFilter {
    pub fn new(lists: Vec<(Value, ListKind)>) -> SseFilter {
        SseFilter::with_event_limit(lists, MAX_SSE_EVENT_BYTES)
    }

    /// [`SseFilter::new`] with another event size cap (tests use small ones).
    pub(crate) fn with_event_limit(lists: Vec<(Value, ListKind)>, max_event: usize) -> SseFilter {
        let answered = vec![false; lists.len()];
        SseFilter {
            lists,
            answered,
            carry: Vec::new(),
            scan: 0,
            searched: 0,
            at_start: true,
            failed: false,
            max_event,
            masker: None,
            masked: 0,
        }
    }

    /// Mask every event's results with `masker` too.
    pub fn with_masker(mut self, masker: std::rc::Rc<crate::mask::Masker>) -> SseFilter {
        self.masker = Some(masker);
        self
    }

    /// Values masked since the last call.
    pub fn take_masked(&mut self) -> usize {
        std::mem::take(&mut self.masked)
    }

    #[cfg(test)]
    pub(crate) fn max_event(&self) -> usize {
        self.max_event
    }

    /// Feeds the next chunk; returns the bytes to emit now (the complete
    /// events so far, possibly rewritten). At `end_of_stream` the remaining
    /// tail is processed and emitted too.
    pub fn push(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        visible: Visible,
    ) -> Result<Vec<u8>, McpError> {
        if self.failed {
            return Err(McpError::Sse("the stream was already refused".to_string()));
        }
        // A failing push emits nothing, not even the events before the bad
        // one: forget that those answered their requests, so that
        // `error_event` answers them.
        let answered = self.answered.clone();
        let r = self.push_inner(chunk, end_of_stream, visible);
        if r.is_err() {
            self.failed = true;
            self.carry = Vec::new();
            self.answered = answered;
        }
        r
    }

    fn push_inner(
        &mut self,
        chunk: &[u8],
        eos: bool,
        visible: Visible,
    ) -> Result<Vec<u8>, McpError> {
        let mut out = Vec::with_capacity(chunk.len());
        if self.carry.is_empty() {
            // Common case: work on the chunk itself, copy only its tail.
            let consumed = self.process(chunk, 0, 0, eos, visible, &mut out)?;
            self.keep_tail(chunk, consumed)?;
        } else {
            let mut buf = std::mem::take(&mut self.carry);
            buf.extend_from_slice(chunk);
            let (scan, searched) = (self.scan, self.searched);
            let consumed = self.process(&buf, scan, searched, eos, visible, &mut out)?;
            if consumed > 0 {
                buf.drain(..consumed);
            }
            self.check_tail(buf.len())?;
            self.carry = buf;
        }
        Ok(out)
    }

    fn keep_tail(&mut self, buf: &[u8], consumed: usize) -> Result<(), McpError> {
        let tail = buf.get(consumed..).unwrap_or_default();
        self.check_tail(tail.len())?;
        self.carry = tail.to_vec();
        Ok(())
    }

    fn check_tail(&self, len: usize) -> Result<(), McpError> {
        if len > self.max_event {
            return Err(McpError::Sse(format!(
                "an event exceeds the {}-byte limit",
                self.max_event
            )));
        }
        Ok(())
    }

    /// Emits the complete events of `buf` (reading lines from `from`, the
    /// first line break being at or after `searched`) and returns how many
    /// bytes they span; sets `self.scan` and `self.searched` for the rest.
    fn process(
        &mut self,
        buf: &[u8],
        from: usize,
        searched: usize,
        eos: bool,
        visible: Visible,
        out: &mut Vec<u8>,
    ) -> Result<usize, McpError> {
        let mut event_start = 0;
        let mut pos = from;
        let mut search = searched.max(from);
        while let Some(line) = next_line(buf, pos, search, eos) {
            pos = line.next;
            search = pos;
            if line.content.is_empty() {
                let event = buf.get(event_start..pos).unwrap_or_default();
                self.event(event, visible, out)?;
                event_start = pos;
            }
        }
        if eos && event_start < buf.len() {
            // An event left open by the end of the stream.
            let event = buf.get(event_start..).unwrap_or_default();
            self.event(event, visible, out)?;
            event_start = buf.len();
            pos = buf.len();
        }
        // No line break from `pos` on, except perhaps a final `\r` whose
        // `\n` may be in the next chunk.
        let clean = if buf.last() == Some(&b'\r') {
            buf.len() - 1
        } else {
            buf.len()
        };
        self.scan = pos.saturating_sub(event_start);
        self.searched = clean.max(pos).saturating_sub(event_start);
        Ok(event_start)
    }

    /// Emits one event (complete, or the open one at the end of the stream).
    fn event(&mut self, event: &[u8], visible: Visible, out: &mut Vec<u8>) -> Result<(), McpError> {
        let bom = self.at_start && event.starts_with(BOM);
        self.at_start = false;
        let body = if bom {
            event.get(BOM.len()..).unwrap_or_default()
        } else {
            event
        };
        let mut data: Option<Vec<u8>> = None;
        for line in lines(body) {
            if let Some(value) = data_value(line.content) {
                match &mut data {
                    None => data = Some(value.to_vec()),
                    Some(d) => {
                        d.push(b'\n');
                        d.extend_from_slice(value);
                    }
                }
            }
        }
        let Some(data) = data else {
            out.extend_from_slice(event);
            return Ok(());
        };
        let text = String::from_utf8_lossy(&data);
        let looks_json = matches!(
            text.trim_start_matches([' ', '\t', '\n', '\r'])
                .as_bytes()
                .first(),
            Some(b'{' | b'[')
        );
        if !looks_json {
            out.extend_from_slice(event);
            return Ok(());
        }
        let filtered = filter_text(&text, &self.lists, visible, self.masker.as_deref())
            .map_err(|e| McpError::Sse(format!("event data: {e}")))?;
        self.masked += filtered.masked;
        for i in filtered.answered {
            if let Some(a) = self.answered.get_mut(i) {
                *a = true;
            }
        }
        let Some(new) = filtered.text else {
            out.extend_from_slice(event);
            return Ok(());
        };
        // JSON strings cannot hold raw line breaks, so any left in the text
        // (from multi-line data) are insignificant whitespace.
        let new = new.replace(['\n', '\r'], " ");
        if bom {
            out.extend_from_slice(BOM);
        }
        // No line of a rewritten event ends in a lone `\r`: dropping data
        // lines could put it right before a `\n`, which the client reads as
        // one CRLF — the blank line ending the event would vanish and two
        // events merge (found by the `sse` fuzz target).
        fn newline(t: &[u8]) -> &[u8] {
            if t == b"\r" {
                b"\n"
            } else {
                t
            }
        }
        let mut wrote = false;
        for line in lines(body) {
            if data_value(line.content).is_some() {
                if !wrote {
                    wrote = true;
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(new.as_bytes());
                    out.extend_from_slice(newline(line.terminator));
                }
            } else {
                out.extend_from_slice(line.content);
                out.extend_from_slice(newline(line.terminator));
            }
        }
        Ok(())
    }

    /// SSE bytes answering every pending list request not answered yet with
    /// a [`super::RESPONSE_REFUSED`] error: emit them (and nothing more of
    /// the upstream stream) after `push` fails.
    pub fn error_event(&self, reason: &str) -> Vec<u8> {
        let pending: Vec<(Value, ListKind)> = self
            .lists
            .iter()
            .zip(&self.answered)
            .filter(|(_, done)| !**done)
            .map(|(l, _)| l.clone())
            .collect();
        sse_error_event(&pending, reason)
    }
}

/// One SSE event per list id carrying a [`super::RESPONSE_REFUSED`] error,
/// preceded by a blank line (ends any event the client may have open).
pub fn sse_error_event(lists: &[(Value, ListKind)], reason: &str) -> Vec<u8> {
    let err = response_refused_error(reason);
    let mut out = Vec::new();
    if !lists.is_empty() {
        out.push(b'\n');
    }
    for (id, _) in lists {
        out.extend_from_slice(b"event: message\ndata: ");
        out.extend(error_response(id, &err));
        out.extend_from_slice(b"\n\n");
    }
    out
}

struct Line<'a> {
    content: &'a [u8],
    terminator: &'a [u8],
    /// Offset just past the terminator.
    next: usize,
}

/// The line starting at `pos`, if it is complete (its line break is at or
/// after `search`). A `\r` as the last byte is complete only at the end of
/// the stream (a `\n` may follow).
fn next_line(buf: &[u8], pos: usize, search: usize, eos: bool) -> Option<Line<'_>> {
    let rest = buf.get(pos..)?;
    let skip = search.saturating_sub(pos);
    let i = skip
        + rest
            .get(skip..)?
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')?;
    let term_len = match (rest.get(i), rest.get(i + 1)) {
        (Some(b'\r'), Some(b'\n')) => 2,
        (Some(b'\r'), None) if !eos => return None,
        _ => 1,
    };
    Some(Line {
        content: rest.get(..i)?,
        terminator: rest.get(i..i + term_len)?,
        next: pos + i + term_len,
    })
}

/// The lines of a whole event (the last may lack a terminator).
fn lines(event: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= event.len() {
            return None;
        }
        let line = next_line(event, pos, pos, true).unwrap_or(Line {
            content: event.get(pos..).unwrap_or_default(),
            terminator: b"",
            next: event.len(),
        });
        pos = line.next;
        Some(line)
    })
}

/// The value of a `data` field line (`data`, `data:` or `data: v`).
fn data_value(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"data")?;
    match rest.first() {
        None => Some(rest),
        Some(b':') => {
            let v = rest.get(1..).unwrap_or_default();
            Some(v.strip_prefix(b" ").unwrap_or(v))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod crlf_tests {
    use super::*;
    use crate::policy::eval::Item;

    /// A rewritten event whose first data line ended in a lone `\r` must
    /// still end with a blank line the client sees (fuzz regression).
    #[test]
    fn rewritten_events_keep_their_boundary() {
        let lists = vec![(serde_json::json!(99), ListKind::Tools)];
        let mut f = SseFilter::new(lists);
        let visible = |i: Item| !matches!(i, Item::Tool(n) if n == "deploy");
        let stream = b"data:\rdata: {\"jsonrpc\":\"2.0\",\"id\":99,\"result\":{\"tools\":[{\"name\":\"deploy\"}]}}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
        let out = f.push(stream, true, &visible).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("\r\n"), "{text:?}");
        assert!(text.contains("}}\n\n"), "{text:?}");
        assert!(!text.contains("deploy"), "{text:?}");
    }
}
