//! Checking audit logs: every chain (`worker`) in a stream of lines, with
//! the first bad line and why.
//!
//! A line is an audit event when it contains [`LOG_PREFIX`] (the event is
//! the rest of the line after the first occurrence followed by `{`: Envoy
//! puts a timestamp and logger name before it) or when it is a bare event
//! (it starts with `{"command":`, the first key of every event, as in the
//! HTTP sink's JSON lines). Other lines are ignored.
//!
//! Per event, in this order (one problem per line):
//! 1. it parses, has `v` 1, a `worker`, `seq` ≥ 1, `prev` and `hash` of 64
//!    lowercase hex digits — otherwise *malformed*;
//! 2. it is canonical JSON and its `hash` matches its content — otherwise
//!    *edited* (the recorded `hash` still links the chain on, so one edited
//!    field gives one problem);
//! 3. against the chain so far: an identical copy of an earlier event is
//!    *replayed*; the next `seq` with `prev` equal to the previous event's
//!    `hash` is good; another event with a `seq` seen before is *replayed*;
//!    a lower unseen `seq` is *reordered*; a higher `seq` is *deleted* (or
//!    *reordered* when the missing events turn up later, or *edited* when
//!    `prev` still links to the previous event); the right `seq` with the
//!    wrong `prev` is *prev-mismatch* (an event inserted or replaced, or the
//!    previous one rewritten with a fresh hash).
//!
//! A chain whose first event in the stream is not `seq` 1 is accepted with
//! a note (the log was rotated: earlier events are in an older file). A
//! later `seq` 1 with a zero `prev` starts a new segment (the chain's worker
//! restarted under the same name), also noted.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{hex, FORMAT_VERSION, LOG_PREFIX, ZERO_HASH};

/// Where a line is: `source` numbers the inputs (files) from 0, `line`
/// counts from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Position {
    pub source: usize,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// Not a readable version-1 event.
    Malformed,
    /// The content does not match its hash, or is not canonical JSON.
    Edited,
    /// Events are missing before this one.
    Deleted,
    /// Events are out of order.
    Reordered,
    /// An event (or its `seq`) appears twice.
    Replayed,
    /// `prev` does not link to the previous event.
    PrevMismatch,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Malformed => "malformed",
            ProblemKind::Edited => "edited",
            ProblemKind::Deleted => "deleted",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Replayed => "replayed",
            ProblemKind::PrevMismatch => "prev-mismatch",
        }
    }
}

/// A tampered (or unreadable) line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub at: Position,
    pub kind: ProblemKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoteKind {
    /// The chain's first event here is not its first event (rotation).
    StartsMidway,
    /// `seq` 1 again, with a zero `prev`: a new segment.
    Restarted,
}

/// Something worth knowing that is not tampering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    pub at: Position,
    pub kind: NoteKind,
    pub message: String,
}

/// The result for one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub worker: String,
    /// Events of this chain read (problem lines included).
    pub events: usize,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first: Position,
    pub last: Position,
    pub notes: Vec<Note>,
    /// In input order: the first is the first bad line.
    pub problems: Vec<Problem>,
}

impl ChainReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn first_bad(&self) -> Option<&Problem> {
        self.problems.first()
    }
}

/// The result for a stream of lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Lines read.
    pub lines: usize,
    /// Audit lines among them.
    pub events: usize,
    /// In order of first appearance.
    pub chains: Vec<ChainReport>,
    /// Audit lines that name no chain (not JSON, or no `worker`).
    pub unattributed: Vec<Problem>,
}

impl VerifyReport {
    /// No problem anywhere.
    pub fn ok(&self) -> bool {
        self.unattributed.is_empty() && self.chains.iter().all(ChainReport::ok)
    }

    /// Every problem, in input order.
    pub fn problems(&self) -> Vec<&Problem> {
        let mut all: Vec<&Problem> = self
            .chains
            .iter()
            .flat_map(|c| c.problems.iter())
            .chain(self.unattributed.iter())
            .collect();
        all.sort_by_key(|p| p.at);
        all
    }
}

/// Check one stream of lines (numbered from 1, source 0).
pub fn verify_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> VerifyReport {
    let mut v = Verifier::new();
    for (i, line) in lines.into_iter().enumerate() {
        v.feed(
            Position {
                source: 0,
                line: i + 1,
            },
            line,
        );
    }
    v.finish()
}

/// The event JSON in a line, if it is an audit line: after the first
/// [`LOG_PREFIX`] that is followed by `{` (or after the first one at all,
/// which is then reported as malformed), or the whole line when it starts
/// with `{"command":`.
pub fn audit_json(line: &str) -> Option<&str> {
    let mut first = None;
    for (at, _) in line.match_indices(LOG_PREFIX) {
        let rest = line.get(at + LOG_PREFIX.len()..).unwrap_or_default();
        if rest.starts_with('{') {
            return Some(rest.trim());
        }
        first.get_or_insert(rest);
    }
    if let Some(rest) = first {
        return Some(rest.trim());
    }
    let t = line.trim();
    t.starts_with("{\"command\":").then_some(t)
}

/// The fields the chain needs, read from one event.
struct Event {
    worker: String,
    seq: u64,
    prev: String,
    hash: String,
    /// Why the content does not match the hash, if it does not.
    edited: Option<String>,
}

enum Parsed {
    Event(Event),
    /// Unreadable; the worker when it could be read.
    Malformed(Option<String>, String),
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

fn parse(json: &str) -> Parsed {
    let mut value: Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => return Parsed::Malformed(None, format!("not a JSON event: {e}")),
    };
    let Some(obj) = value.as_object() else {
        return Parsed::Malformed(None, "not a JSON object".into());
    };
    let worker = obj.get("worker").and_then(Value::as_str).map(str::to_owned);
    let bad = |why: String| Parsed::Malformed(worker.clone(), why);
    match obj.get("v").and_then(Value::as_u64) {
        Some(FORMAT_VERSION) => {}
        Some(v) => {
            return bad(format!(
                "format version {v} is not supported (this pinhole reads version {FORMAT_VERSION})"
            ))
        }
        None => return bad("no format version `v`".into()),
    }
    let Some(w) = worker.clone() else {
        return bad("no `worker`".into());
    };
    let Some(seq) = obj.get("seq").and_then(Value::as_u64).filter(|&s| s >= 1) else {
        return bad("no `seq` (a whole number from 1)".into());
    };
    let hex_field = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .filter(|s| is_hex64(s))
            .map(str::to_owned)
    };
    let Some(prev) = hex_field("prev") else {
        return bad("no `prev` (64 lowercase hex digits)".into());
    };
    let Some(hash) = hex_field("hash") else {
        return bad("no `hash` (64 lowercase hex digits)".into());
    };
    let canonical = serde_json::to_string(&value).is_ok_and(|c| c == json);
    let edited = if canonical {
        if let Some(o) = value.as_object_mut() {
            o.remove("hash");
        }
        let body = serde_json::to_string(&value).unwrap_or_default();
        let computed = hex(&Sha256::digest(body.as_bytes()));
        (computed != hash)
            .then(|| "the event's content does not match its hash: the event was edited".into())
    } else {
        Some("the event is not in canonical JSON form: it was edited or reformatted".to_owned())
    };
    Parsed::Event(Event {
        worker: w,
        seq,
        prev,
        hash,
        edited,
    })
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn seq_range(lo: u64, hi: u64) -> String {
    if lo == hi {
        format!("seq {lo}")
    } else {
        format!("seq {lo}-{hi}")
    }
}

/// A streaming checker: feed lines in order (several sources one after the
/// other, oldest first, so a chain continues across rotated files), then
/// [`finish`](Verifier::finish).
///
/// Memory grows with the number of events (about 50 bytes each: `seq`,
/// position and a hash prefix per event, to name replays and reorderings).
#[derive(Debug, Default)]
pub struct Verifier {
    /// Names of the sources, used in messages that point at another line
    /// (`FILE:LINE`); without them, `line N`.
    names: Vec<String>,
    lines: usize,
    events: usize,
    chains: Vec<Chain>,
    index: HashMap<String, usize>,
    unattributed: Vec<Problem>,
}

#[derive(Debug)]
struct Chain {
    report: ChainReport,
    /// Per segment: `seq` → (where, first 8 bytes of its hash). Never empty.
    segments: Vec<BTreeMap<u64, (Position, u64)>>,
    last: Option<Last>,
    /// Gaps to re-examine at the end: (problem index, segment, missing range).
    gaps: Vec<(usize, usize, u64, u64)>,
}

#[derive(Debug, Clone)]
struct Last {
    seq: u64,
    hash: String,
    at: Position,
}

/// Messages that point at other lines.
struct Refs<'a>(&'a [String]);

impl Refs<'_> {
    fn at(&self, p: Position) -> String {
        match self.0.get(p.source) {
            Some(name) => format!("{name}:{}", p.line),
            None => format!("line {}", p.line),
        }
    }
}

fn hash_key(hash: &str) -> u64 {
    hash.get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

impl Verifier {
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// A verifier whose messages name other lines as `NAME:LINE`, `names`
    /// indexed by [`Position::source`].
    pub fn with_source_names(names: Vec<String>) -> Verifier {
        Verifier {
            names,
            ..Verifier::default()
        }
    }

    /// Check one line.
    pub fn feed(&mut self, at: Position, line: &str) {
        self.lines += 1;
        let Some(json) = audit_json(line) else {
            return;
        };
        self.events += 1;
        let (worker, parsed) = match parse(json) {
            Parsed::Malformed(None, message) => {
                self.unattributed.push(Problem {
                    at,
                    kind: ProblemKind::Malformed,
                    message,
                });
                return;
            }
            Parsed::Malformed(Some(w), message) => (w, Err(message)),
            Parsed::Event(e) => (e.worker.clone(), Ok(e)),
        };
        let i = match self.index.get(&worker) {
            Some(&i) => i,
            None => {
                let i = self.chains.len();
                self.index.insert(worker.clone(), i);
                self.chains.push(Chain::new(worker, at));
                i
            }
        };
        let refs = Refs(&self.names);
        let Some(c) = self.chains.get_mut(i) else {
            return;
        };
        c.report.events += 1;
        c.report.last = at;
        match parsed {
            Err(message) => c.problem(at, ProblemKind::Malformed, message),
            Ok(e) => c.event(at, e, &refs),
        }
    }

    /// The report.
    pub fn finish(self) -> VerifyReport {
        let refs = Refs(&self.names);
        VerifyReport {
            lines: self.lines,
            events: self.events,
            chains: self.chains.into_iter().map(|c| c.finish(&refs)).collect(),
            unattributed: self.unattributed,
        }
    }
}

impl Chain {
    fn new(worker: String, at: Position) -> Chain {
        Chain {
            report: ChainReport {
                worker,
                events: 0,
                first_seq: 0,
                last_seq: 0,
                first: at,
                last: at,
                notes: Vec::new(),
                problems: Vec::new(),
            },
            segments: vec![BTreeMap::new()],
            last: None,
            gaps: Vec::new(),
        }
    }

    fn problem(&mut self, at: Position, kind: ProblemKind, message: String) {
        self.report.problems.push(Problem { at, kind, message });
    }

    fn note(&mut self, at: Position, kind: NoteKind, message: String) {
        self.report.notes.push(Note { at, kind, message });
    }

    fn remember(&mut self, at: Position, e: &Event) {
        if let Some(seg) = self.segments.last_mut() {
            seg.entry(e.seq).or_insert((at, hash_key(&e.hash)));
        }
    }

    fn advance(&mut self, at: Position, e: Event) {
        self.remember(at, &e);
        if self.last.is_none() {
            self.report.first_seq = e.seq;
        }
        self.report.last_seq = e.seq;
        self.last = Some(Last {
            seq: e.seq,
            hash: e.hash,
            at,
        });
    }

    /// An earlier event with this `seq` and hash, in any segment.
    fn copy_of(&self, e: &Event) -> Option<Position> {
        let key = hash_key(&e.hash);
        self.segments
            .iter()
            .rev()
            .filter_map(|s| s.get(&e.seq))
            .find(|(_, h)| *h == key)
            .map(|(at, _)| *at)
    }

    fn event(&mut self, at: Position, e: Event, refs: &Refs<'_>) {
        let zero = hex(&ZERO_HASH);
        if let Some(why) = e.edited.clone() {
            self.problem(at, ProblemKind::Edited, why);
            // Link on through the recorded hash: one edited line, one problem.
            self.advance(at, e);
            return;
        }
        let Some(last) = self.last.clone() else {
            // The chain's first event in this stream.
            if e.seq == 1 && e.prev != zero {
                self.problem(
                    at,
                    ProblemKind::PrevMismatch,
                    "seq 1 must have a zero `prev`: the chain's first event was altered".into(),
                );
            } else if e.seq > 1 && e.prev == zero {
                self.problem(
                    at,
                    ProblemKind::PrevMismatch,
                    format!("`prev` is zero but seq is {}: the event was forged", e.seq),
                );
            } else if e.seq > 1 {
                self.note(
                    at,
                    NoteKind::StartsMidway,
                    format!("starts at seq {} (earlier events not in this file)", e.seq),
                );
            }
            self.advance(at, e);
            return;
        };
        if let Some(first) = self.copy_of(&e) {
            self.problem(
                at,
                ProblemKind::Replayed,
                format!(
                    "seq {} again: an identical copy of {} (replayed)",
                    e.seq,
                    refs.at(first)
                ),
            );
            return;
        }
        if e.seq == 1 && e.prev == zero {
            self.note(
                at,
                NoteKind::Restarted,
                format!(
                    "restarts at seq 1 after seq {} ({}): a new segment of the chain",
                    last.seq,
                    refs.at(last.at)
                ),
            );
            self.segments.push(BTreeMap::new());
            self.advance(at, e);
            return;
        }
        let expected = last.seq.saturating_add(1);
        if e.seq == expected {
            if e.prev != last.hash {
                self.problem(
                    at,
                    ProblemKind::PrevMismatch,
                    format!(
                        "`prev` is not the hash of the previous event (seq {}, {}): an event \
                         was inserted or replaced here, or the previous one rewritten",
                        last.seq,
                        refs.at(last.at)
                    ),
                );
            }
            self.advance(at, e);
        } else if e.seq > expected {
            if e.prev == last.hash {
                self.problem(
                    at,
                    ProblemKind::Edited,
                    format!(
                        "seq jumps from {} to {} but `prev` links to seq {}: the seq was \
                         rewritten",
                        last.seq, e.seq, last.seq
                    ),
                );
            } else {
                let missing = e.seq - expected;
                self.problem(
                    at,
                    ProblemKind::Deleted,
                    format!(
                        "seq jumps from {} ({}) to {}: {} ({}) missing",
                        last.seq,
                        refs.at(last.at),
                        e.seq,
                        plural(missing, "event", "events"),
                        seq_range(expected, e.seq - 1)
                    ),
                );
                let p = self.report.problems.len().saturating_sub(1);
                let seg = self.segments.len().saturating_sub(1);
                self.gaps.push((p, seg, expected, e.seq - 1));
            }
            self.advance(at, e);
        } else {
            // Behind the chain: seen before in this segment, or out of order.
            let earlier = self
                .segments
                .last()
                .and_then(|s| s.get(&e.seq))
                .map(|(at, _)| *at);
            match earlier {
                Some(first) => self.problem(
                    at,
                    ProblemKind::Replayed,
                    format!(
                        "seq {} again, differing from {}: an event was replayed or inserted",
                        e.seq,
                        refs.at(first)
                    ),
                ),
                None => {
                    self.problem(
                        at,
                        ProblemKind::Reordered,
                        format!(
                            "seq {} comes after seq {} ({}): events were reordered",
                            e.seq,
                            last.seq,
                            refs.at(last.at)
                        ),
                    );
                    self.remember(at, &e);
                }
            }
        }
    }

    fn finish(mut self, refs: &Refs<'_>) -> ChainReport {
        // A gap whose events all turn up later was a reordering.
        for (p, seg, lo, hi) in std::mem::take(&mut self.gaps) {
            let Some(map) = self.segments.get(seg) else {
                continue;
            };
            let later: Vec<Position> = map.range(lo..=hi).map(|(_, (at, _))| *at).collect();
            let missing = hi - lo + 1;
            let Some(problem) = self.report.problems.get_mut(p) else {
                continue;
            };
            if later.len() as u64 == missing {
                let mut wher: Vec<String> = later.iter().take(3).map(|&at| refs.at(at)).collect();
                if later.len() > 3 {
                    wher.push("…".into());
                }
                problem.kind = ProblemKind::Reordered;
                problem.message = format!(
                    "seq jumps from {} to {}, and {} comes later ({}): events were reordered",
                    lo - 1,
                    hi + 1,
                    seq_range(lo, hi),
                    wher.join(", ")
                );
            } else if !later.is_empty() {
                problem.message.push_str(&format!(
                    " ({} of them appear later, out of order)",
                    later.len()
                ));
            }
        }
        self.report
    }
}
