//! Audit events: one structured JSON line per decision, hash-chained per
//! worker so that an edited, deleted, reordered, inserted or replayed event
//! is detectable offline (`pinhole audit verify`).
//!
//! # Event format (version 1)
//!
//! Each event is one line of canonical JSON — keys sorted, no spaces, the
//! escaping of `serde_json` — for example (wrapped here):
//!
//! ```text
//! {"command":{"arguments_digest":"4f7174e45388c552","method":"tools/call","tool":"deploy"},
//!  "conn":"7","decision":"deny",
//!  "hash":"a01bc9c8178535a423f131fe63f016e6c5f241146268c7ba0f8408c9965d566e",
//!  "identity":{"grant":null,"issuer":"corp-sso","roles":["developer"],"subject":"alice@acme.example"},
//!  "masked":0,"prev":"b4fba4d2a3fe3566db36dcf962c5128df94c428a465b1ca6a47561ea7681e2c8",
//!  "protocol":"mcp","reason":"denied by rule `no-prod-deploys`","request":"42",
//!  "rule":"no-prod-deploys","seq":12,"source":"10.0.0.7:53124","target":"tools",
//!  "time":"2025-01-02T03:04:05.678Z","v":1,"worker":"http-3f2a9c0d1e5b7788"}
//! ```
//!
//! - `hash` is the hex SHA-256 of the event's canonical serialization
//!   *without* the `hash` key;
//! - `prev` is the `hash` of the previous event of the same chain (`worker`),
//!   64 zeros for the first (`seq` 1). Since `hash` covers every other key,
//!   `prev` pins the whole previous line.
//!
//! The chain has no secret key: it shows that a log was altered *in part*
//! (an event edited, removed, moved, added or repeated), not that a writer
//! with access to the whole file did not rewrite every event after some
//! point, and it cannot show that events were cut off at the end. Ship the
//! lines off the machine (the HTTP sink, a log collector) for that.
//!
//! The field-by-field reference is docs/audit.md.
//!
//! [`AuditChain::seal`] writes events (host side, no `serde_json::Value`,
//! one allocation for the line); [`verify_lines`] / [`Verifier`] check them
//! (CLI side); [`AuditBuffer`] is the bounded queue of lines for the HTTP
//! sink.

mod sql;
mod verify;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;

use serde::ser::{Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::identity::Identity;
use crate::policy::eval::{Decision, Request};
use crate::policy::{Effect, Protocol};

pub use sql::{normalize_sql, sql_fingerprint};
pub use verify::{
    audit_json, verify_lines, ChainReport, Note, NoteKind, Position, Problem, ProblemKind,
    Verifier, VerifyReport,
};

/// Marks an audit event in a log line: Envoy writes
/// `[time][thread][info][wasm] [file:line] wasm log …: pinhole-audit: {…}`;
/// the event is the JSON after the first occurrence of this prefix.
pub const LOG_PREFIX: &str = "pinhole-audit: ";

/// The `v` of the events this module writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// SQL text kept in an event; longer statements are cut (at a character
/// boundary) and flagged `truncated`. The fingerprint covers the whole text.
pub const MAX_SQL_BYTES: usize = 2048;

/// SQL text kept in the event of a statement held for review (the
/// approver reads the command from it).
pub const MAX_REVIEW_SQL_BYTES: usize = 64 * 1024;

/// Tool-call arguments kept in the event of a call held for review (as
/// compact JSON); larger arguments are left out (`arguments_digest` stays).
pub const MAX_REVIEW_ARGUMENTS_BYTES: usize = 64 * 1024;

/// `prev` of the first event of a chain.
pub const ZERO_HASH: [u8; 32] = [0; 32];

/// Hex digits of a digest kept in `fingerprint` and `arguments_digest`.
pub const SHORT_DIGEST_HEX: usize = 16;

/// What happened to the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny,
    /// Held for review (refused until approved).
    Review,
    /// Allowed, with values masked in the response.
    Masked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Review => "review",
            Outcome::Masked => "masked",
        }
    }

    /// The outcome of a decision whose response had `masked` values masked.
    pub fn of(effect: Effect, masked: u64) -> Outcome {
        match effect {
            Effect::Allow if masked > 0 => Outcome::Masked,
            Effect::Allow => Outcome::Allow,
            Effect::Deny => Outcome::Deny,
            Effect::Review => Outcome::Review,
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The caller, as far as it was established (`identity: null` in the event
/// when the token was missing or refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AuditIdentity<'a> {
    // Fields in key order: the derived serialization is canonical.
    /// Roles held through elevation grants (written only when some are).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub elevated: &'a [crate::identity::Elevated],
    /// The grant that let the command through: the approval of a `review`
    /// command, else the first elevation grant the caller held.
    pub grant: Option<&'a str>,
    /// The policy's name for the issuer (as in `x-pinhole-issuer`).
    pub issuer: &'a str,
    pub roles: &'a [String],
    /// The token's `sub`.
    pub subject: &'a str,
}

impl<'a> AuditIdentity<'a> {
    pub fn of(who: &'a Identity) -> AuditIdentity<'a> {
        AuditIdentity {
            elevated: &who.elevated,
            grant: who.elevated.first().map(|e| e.grant.as_str()),
            issuer: &who.token.issuer_name,
            roles: &who.roles,
            subject: &who.token.sub,
        }
    }
}

/// The command decided. Only the keys that apply are written:
/// - SQL: `sql`, `truncated`, `fingerprint`;
/// - MCP: `method`, then `tool`, `resource` or `prompt`, and for a tool call
///   `arguments_digest` (plus the SQL keys for a tool whose argument is SQL);
/// - HTTP: `method`, `path`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Command<'a> {
    // Fields in key order: the derived serialization is canonical.
    /// A held tool call's arguments (only in `review` events, so that the
    /// approver sees exactly what they approve).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

impl<'a> Command<'a> {
    /// A SQL statement: the text (cut at [`MAX_SQL_BYTES`]) and the
    /// fingerprint of the whole text.
    pub fn sql(text: &'a str) -> Command<'a> {
        Command::default().with_sql(text)
    }

    /// A SQL statement kept up to `cap` bytes.
    pub fn sql_capped(text: &'a str, cap: usize) -> Command<'a> {
        Command::default().with_sql_capped(text, cap)
    }

    /// Add the SQL keys (a tool whose argument is SQL).
    pub fn with_sql(self, text: &'a str) -> Command<'a> {
        self.with_sql_capped(text, MAX_SQL_BYTES)
    }

    fn with_sql_capped(mut self, text: &'a str, cap: usize) -> Command<'a> {
        let kept = cap_str(text, cap);
        self.sql = Some(kept);
        self.truncated = Some(kept.len() < text.len());
        self.fingerprint = Some(sql_fingerprint(text));
        self
    }

    /// A plain HTTP request.
    pub fn http(method: &'a str, path: &'a str) -> Command<'a> {
        Command {
            method: Some(method),
            path: Some(path),
            ..Command::default()
        }
    }

    /// An MCP `tools/call`.
    pub fn mcp_tool(name: &'a str, arguments: &Value) -> Command<'a> {
        Command {
            method: Some("tools/call"),
            tool: Some(name),
            arguments_digest: Some(arguments_digest(arguments)),
            ..Command::default()
        }
    }

    /// An MCP resource method (`resources/read`, `resources/subscribe`, …).
    pub fn mcp_resource(method: &'a str, uri: &'a str) -> Command<'a> {
        Command {
            method: Some(method),
            resource: Some(uri),
            ..Command::default()
        }
    }

    /// An MCP `prompts/get`.
    pub fn mcp_prompt(name: &'a str) -> Command<'a> {
        Command {
            method: Some("prompts/get"),
            prompt: Some(name),
            ..Command::default()
        }
    }

    /// Any other MCP method.
    pub fn mcp_method(method: &'a str) -> Command<'a> {
        Command {
            method: Some(method),
            ..Command::default()
        }
    }

    /// The command of an evaluator request. A resource request is recorded
    /// as `resources/read`; override `method` for subscribe/unsubscribe.
    pub fn from_request(req: &Request<'a>) -> Command<'a> {
        match *req {
            Request::ToolCall { name, arguments } => Command::mcp_tool(name, arguments),
            Request::Resource { uri } => Command::mcp_resource("resources/read", uri),
            Request::Prompt { name } => Command::mcp_prompt(name),
            Request::McpMethod { method } => Command::mcp_method(method),
            Request::Http { method, path } => Command::http(method, path),
            Request::Sql { statement } => Command::sql(&statement.text),
        }
    }
}

/// One decision to record. Borrowed: building an event copies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent<'a> {
    /// Milliseconds since the Unix epoch (written as RFC 3339 UTC).
    pub time_ms: u64,
    /// A `review` rule's hold (request id, fingerprint) or the approval
    /// that lifted it.
    pub approval: Option<&'a crate::engine::Approval>,
    /// Connection id (PostgreSQL connection, HTTP connection), if known.
    pub conn: Option<&'a str>,
    /// Request id (`x-request-id`, JSON-RPC id, statement number), if known.
    pub request: Option<&'a str>,
    pub identity: Option<AuditIdentity<'a>>,
    /// Downstream address (`source.address`).
    pub source: Option<&'a str>,
    pub target: &'a str,
    pub protocol: Protocol,
    pub command: Command<'a>,
    pub decision: Outcome,
    /// The deciding rule; `None` for the default deny and refusals no rule
    /// made (bad token, malformed request).
    pub rule: Option<&'a str>,
    pub reason: &'a str,
    /// Values masked in the response.
    pub masked: u64,
}

impl<'a> AuditEvent<'a> {
    /// An event for an evaluator decision (identity, source and ids unset).
    pub fn decided(
        time_ms: u64,
        target: &'a str,
        protocol: Protocol,
        command: Command<'a>,
        decision: &'a Decision,
        masked: u64,
    ) -> AuditEvent<'a> {
        AuditEvent {
            time_ms,
            approval: None,
            conn: None,
            request: None,
            identity: None,
            source: None,
            target,
            protocol,
            command,
            decision: Outcome::of(decision.effect, masked),
            rule: decision.rule.as_deref(),
            reason: &decision.reason,
            masked,
        }
    }

    /// A rough upper bound of the line length, to size the buffer once.
    fn size_hint(&self) -> usize {
        let c = &self.command;
        let strs = [
            self.conn,
            self.request,
            self.source,
            Some(self.target),
            Some(self.reason),
            self.rule,
            c.method,
            c.path,
            c.prompt,
            c.resource,
            c.sql,
            c.tool,
        ];
        let mut n: usize = strs.iter().flatten().map(|s| s.len() + s.len() / 8).sum();
        if let Some(i) = &self.identity {
            n += i.issuer.len() + i.subject.len() + i.grant.map_or(0, str::len);
            n += i.roles.iter().map(|r| r.len() + 3).sum::<usize>();
        }
        n + 512
    }
}

/// The head of an event: the keys sorted before `hash`.
#[derive(serde::Serialize)]
struct Head<'e, 'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<&'a crate::engine::Approval>,
    command: &'e Command<'a>,
    conn: Option<&'a str>,
    decision: Outcome,
}

/// The tail of an event: the keys sorted after `hash`.
#[derive(serde::Serialize)]
struct Tail<'e, 'a> {
    identity: &'e Option<AuditIdentity<'a>>,
    masked: u64,
    prev: HexDigest<'e>,
    protocol: &'static str,
    reason: &'a str,
    request: Option<&'a str>,
    rule: Option<&'a str>,
    seq: u64,
    source: Option<&'a str>,
    target: &'a str,
    time: Rfc3339Millis,
    v: u64,
    worker: &'e str,
}

/// One chain of events (one per worker VM). Not `Clone`: two copies of a
/// chain would write two events with the same `seq`.
#[derive(Debug)]
pub struct AuditChain {
    worker: String,
    /// `seq` of the last sealed event (0: none yet).
    seq: u64,
    last_hash: [u8; 32],
}

impl AuditChain {
    /// A new chain. `worker` names it in every event; it must be unique
    /// among the chains writing to the same log, including across restarts
    /// (put a random nonce in it, e.g. `http-3f2a9c0d1e5b7788`): the
    /// verifier tells chains apart by it.
    pub fn new(worker: impl Into<String>) -> AuditChain {
        AuditChain {
            worker: worker.into(),
            seq: 0,
            last_hash: ZERO_HASH,
        }
    }

    /// Continue a chain whose last event had `seq` and `last_hash`.
    pub fn resume(worker: impl Into<String>, seq: u64, last_hash: [u8; 32]) -> AuditChain {
        AuditChain {
            worker: worker.into(),
            seq,
            last_hash,
        }
    }

    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// `seq` of the last sealed event (0 before the first).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// `hash` of the last sealed event (zeros before the first).
    pub fn last_hash(&self) -> [u8; 32] {
        self.last_hash
    }

    /// Give `event` the next `seq` and the chain's `prev`, hash it, and
    /// return its JSON line (no newline, no [`LOG_PREFIX`]). One allocation
    /// (the line), no intermediate JSON tree.
    pub fn seal(&mut self, event: &AuditEvent<'_>) -> String {
        let seq = self.seq.saturating_add(1);
        match self.write(event, seq) {
            Ok((line, hash)) => {
                self.seq = seq;
                self.last_hash = hash;
                line
            }
            // Unreachable in practice (strings and integers always
            // serialize); record that something was decided anyway.
            Err(_) => {
                let fallback = AuditEvent {
                    command: Command::default(),
                    identity: None,
                    reason: "pinhole: this audit event could not be serialized",
                    ..event.clone()
                };
                match self.write(&fallback, seq) {
                    Ok((line, hash)) => {
                        self.seq = seq;
                        self.last_hash = hash;
                        line
                    }
                    Err(_) => String::new(),
                }
            }
        }
    }

    fn write(&self, e: &AuditEvent<'_>, seq: u64) -> Result<(String, [u8; 32]), serde_json::Error> {
        let mut buf: Vec<u8> = Vec::with_capacity(e.size_hint());
        serde_json::to_writer(
            &mut buf,
            &Head {
                approval: e.approval,
                command: &e.command,
                conn: e.conn,
                decision: e.decision,
            },
        )?;
        buf.pop(); // the head's closing brace
        let split = buf.len();
        serde_json::to_writer(
            &mut buf,
            &Tail {
                identity: &e.identity,
                masked: e.masked,
                prev: HexDigest(&self.last_hash),
                protocol: e.protocol.as_str(),
                reason: e.reason,
                request: e.request,
                rule: e.rule,
                seq,
                source: e.source,
                target: e.target,
                time: Rfc3339Millis(e.time_ms),
                v: FORMAT_VERSION,
                worker: &self.worker,
            },
        )?;
        // The tail's opening brace joins the head.
        if let Some(b) = buf.get_mut(split) {
            *b = b',';
        }
        let hash: [u8; 32] = Sha256::digest(&buf).into();
        let mut field = [0u8; 74];
        field
            .iter_mut()
            .zip(
                b",\"hash\":\""
                    .iter()
                    .chain(hex64(&hash).iter())
                    .chain(b"\""),
            )
            .for_each(|(d, s)| *d = *s);
        buf.splice(split..split, field);
        let line = String::from_utf8(buf)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Ok((line, hash))
    }
}

/// Lowercase hex of a SHA-256 digest, on the stack.
fn hex64(d: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(d) {
        for (o, nib) in pair.iter_mut().zip([b >> 4, b & 0xf]) {
            *o = if nib < 10 {
                b'0' + nib
            } else {
                b'a' + nib - 10
            };
        }
    }
    out
}

/// Lowercase hex of any bytes.
pub fn hex(bytes: &[u8]) -> String {
    crate::policy::blob::hex(bytes)
}

struct HexDigest<'a>(&'a [u8; 32]);

impl Serialize for HexDigest<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = hex64(self.0);
        s.serialize_str(std::str::from_utf8(&h).unwrap_or_default())
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the Unix epoch
/// (proleptic Gregorian calendar, UTC; no time-zone database needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339Millis(pub u64);

impl fmt::Display for Rfc3339Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        let secs = ms / 1000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
        // Howard Hinnant's civil_from_days, for days >= 0.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let mo = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + u64::from(mo <= 2);
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
            ms % 1000
        )
    }
}

impl Serialize for Rfc3339Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The longest prefix of `s` of at most `max` bytes ending at a character
/// boundary.
pub fn cap_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// First [`SHORT_DIGEST_HEX`] hex digits of the SHA-256 of the canonical
/// JSON of `arguments` (keys sorted, no spaces).
pub fn arguments_digest(arguments: &Value) -> String {
    let mut w = HashWriter(Sha256::new());
    // Writing a `Value` to a hasher cannot fail.
    let _ = serde_json::to_writer(&mut w, arguments);
    short_digest(&w.0.finalize())
}

/// The first [`SHORT_DIGEST_HEX`] hex digits of a digest.
fn short_digest(d: &[u8]) -> String {
    hex(d.get(..SHORT_DIGEST_HEX / 2).unwrap_or(d))
}

struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Audit lines waiting for the HTTP sink, at most `cap` bytes (each line
/// counted with its newline).
///
/// When full, the **newest** line is dropped and counted: the lines already
/// queued stay a gap-free run of each chain (the gap is one range at the
/// end, which the drop count accounts for), and a line is never lost after
/// it was accepted. The Envoy log still has every event. In strict mode the
/// host asks [`admits`](Self::admits) before forwarding a command and
/// refuses the command when it is false.
#[derive(Debug)]
pub struct AuditBuffer {
    chunks: VecDeque<String>,
    bytes: usize,
    cap: usize,
    reserve: usize,
    dropped: u64,
    unreported: u64,
}

impl AuditBuffer {
    /// Free space below which [`admits`](Self::admits) says no: room for a
    /// large event (2 KiB of SQL, escaped, plus identity and reason).
    pub const DEFAULT_RESERVE: usize = 8 * 1024;

    pub fn new(cap: usize) -> AuditBuffer {
        AuditBuffer {
            chunks: VecDeque::new(),
            bytes: 0,
            cap,
            reserve: AuditBuffer::DEFAULT_RESERVE.min(cap),
            dropped: 0,
            unreported: 0,
        }
    }

    /// Set the free space [`admits`](Self::admits) requires (at most `cap`).
    pub fn with_reserve(mut self, reserve: usize) -> AuditBuffer {
        self.reserve = reserve.min(self.cap);
        self
    }

    /// Queue one line (without newline). False when it did not fit and was
    /// dropped (counted).
    pub fn push(&mut self, line: impl Into<String>) -> bool {
        let line = line.into();
        let need = line.len() + usize::from(!line.ends_with('\n'));
        if self.bytes.saturating_add(need) > self.cap {
            self.dropped += 1;
            self.unreported += 1;
            return false;
        }
        self.bytes += need;
        self.chunks.push_back(line);
        true
    }

    /// Whether a new command may go ahead in strict mode: at least the
    /// reserve is free.
    pub fn admits(&self) -> bool {
        self.bytes.saturating_add(self.reserve) <= self.cap
    }

    /// Take queued lines from the front, up to `max_bytes` of JSON lines
    /// (each ending in a newline); at least one line even if it is larger.
    /// `None` when empty.
    pub fn drain_batch(&mut self, max_bytes: usize) -> Option<String> {
        let mut take = 0usize;
        let mut size = 0usize;
        for c in &self.chunks {
            let n = c.len() + usize::from(!c.ends_with('\n'));
            if take > 0 && size + n > max_bytes {
                break;
            }
            size += n;
            take += 1;
        }
        if take == 0 {
            return None;
        }
        let mut out = String::with_capacity(size);
        for c in self.chunks.drain(..take) {
            out.push_str(&c);
            if !c.ends_with('\n') {
                out.push('\n');
            }
        }
        self.bytes = self.bytes.saturating_sub(size);
        Some(out)
    }

    /// Put a batch that could not be delivered back at the front, to be
    /// sent again first. It is kept even over the cap (it was accepted
    /// before); later pushes are dropped until there is room.
    pub fn restore(&mut self, batch: String) {
        if batch.is_empty() {
            return;
        }
        self.bytes += batch.len();
        self.chunks.push_front(batch);
    }

    /// Lines (or restored batches) queued.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes queued, newlines included.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Lines dropped since the buffer was made.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Lines dropped since the last call (for a log line or a metric).
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.unreported)
    }
}
