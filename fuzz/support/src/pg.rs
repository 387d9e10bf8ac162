//! The PostgreSQL session harness: a fake [`Authority`] (as in the
//! session's own property tests, `filter/src/pg/session_tests.rs`), the
//! `pg_session` input format, and the invariants checked after every run.
//!
//! # Input format
//!
//! ```text
//! input  = mode:u8 record*
//! record = ctl:u8 len:u16be bytes[len]      (a short last record takes the rest)
//! mode   bits 0-1  start: 0 fresh, 1 after alice's startup, 2 logged in
//!                  (trust), 3 logged in (cleartext password)
//!        bit 2     the backend has no password
//!        bit 3     fast-path function calls are allowed
//!        bit 4     decide SQL with examples/orders-db (else: the string
//!                  rules of the property tests)
//!        bit 5     record allowed decisions too
//! ctl    bit 0     0: the client sends `bytes`, 1: the server does
//!        bits 1-5  read size (0: the whole record in one read)
//!        bit 6     the clock jumps past the token's expiry before this read
//! ```

use std::rc::Rc;

use pinhole_filter::engine::Decided;
use pinhole_filter::identity::{AuthError, Identity, VerifiedToken};
use pinhole_filter::pg::codec::{
    self, BackendMessage, BackendPhase, FrontendMessage, FrontendPhase, StartupMessage,
    PROTOCOL_3_0,
};
use pinhole_filter::pg::session::{Authority, Backend, Session};
use pinhole_filter::policy::eval::{self, Decision};
use pinhole_filter::policy::{Effect, Policy};

use crate::{contains, splits, Bytes};

/// The backend role's password: must never reach the client or a log line.
pub const SECRET: &str = "s3cret-Backend-pw-9QzX";
pub const BACKEND_USER: &str = "app";
/// Tokens the fake accepts (identities `good` and `good2`).
pub const TOKEN: &str = "tok-good-7f3a9c";
pub const TOKEN2: &str = "tok-good2-b81e04";
pub const TOKEN_EXPIRED: &str = "tok-expired";
pub const TOKEN_REVOKED: &str = "tok-revoked";
/// Expiry of every fake token, and the default clock (before it).
pub const EXP: u64 = 1000;
pub const NOW: u64 = 100;
/// The SCRAM client nonce of every session.
pub const NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";
pub const MD5_SALT: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

/// How SQL is decided.
pub enum Rules {
    /// `drop` → deny, `delete` → review, anything else → allow (the
    /// session property tests' rules).
    Strings,
    /// examples/orders-db, target `orders-db`.
    Policy(Rc<Policy>),
}

pub struct Fake {
    pub backend: Result<Backend, String>,
    pub allow_fastpath: bool,
    pub rules: Rules,
}

impl Fake {
    pub fn new(password: bool, allow_fastpath: bool, rules: Rules) -> Fake {
        Fake {
            backend: Ok(Backend {
                user: BACKEND_USER.into(),
                password: password.then(|| SECRET.to_owned()),
                database: None,
                target: "orders-db".into(),
            }),
            allow_fastpath,
            rules,
        }
    }
}

fn identity(sub: &str, roles: &[&str]) -> Identity {
    Identity {
        token: Rc::new(VerifiedToken {
            issuer_name: "corp".into(),
            iss: "https://idp.example".into(),
            sub: sub.into(),
            exp: EXP,
            jti: None,
            groups: vec!["dev".into()],
            claims: serde_json::Map::new(),
        }),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        elevated: Vec::new(),
    }
}

fn decision(effect: Effect, rule: &str, reason: &str) -> Decision {
    Decision {
        effect,
        rule: Some(rule.into()),
        reason: reason.into(),
    }
}

impl Authority for Fake {
    fn backend(&self) -> Result<&Backend, String> {
        self.backend.as_ref().map_err(String::clone)
    }

    fn authenticate(&self, token: &str, _now: u64) -> Result<Identity, AuthError> {
        match token {
            TOKEN => Ok(identity("good", &["analyst"])),
            TOKEN2 => Ok(identity("good2", &["dba", "ci-deployer"])),
            TOKEN_EXPIRED => Err(AuthError::Expired),
            TOKEN_REVOKED => Err(AuthError::SubjectRevoked),
            _ => Err(AuthError::BadSignature),
        }
    }

    fn recheck(&self, who: &Identity, now: u64) -> Result<(), AuthError> {
        if now >= who.token.exp {
            return Err(AuthError::Expired);
        }
        Ok(())
    }

    fn decide_sql(&self, who: &Identity, sql: &str, _now: u64) -> Decided {
        Decided::plain(self.decide_plain(who, sql))
    }

    fn decide_function_call(&self, _who: &Identity, oid: u32, _now: u64) -> Decided {
        Decided::plain(self.decide_fastpath(oid))
    }
}

impl Fake {
    pub fn decide_plain(&self, who: &Identity, sql: &str) -> Decision {
        match &self.rules {
            Rules::Strings => {
                let lower = sql.to_ascii_lowercase();
                if lower.contains("drop") {
                    decision(
                        Effect::Deny,
                        "never-drop",
                        "dropping objects is not allowed",
                    )
                } else if lower.contains("delete") {
                    decision(
                        Effect::Review,
                        "deletes-reviewed",
                        "deleting rows needs a reviewer",
                    )
                } else {
                    decision(Effect::Allow, "read-write", "allowed")
                }
            }
            Rules::Policy(p) => eval::evaluate_sql(p, &who.roles, "orders-db", sql, &mut |_| {}),
        }
    }

    pub fn decide_fastpath(&self, oid: u32) -> Decision {
        if self.allow_fastpath {
            decision(Effect::Allow, "fastpath", "allowed")
        } else {
            decision(
                Effect::Deny,
                "no-fastpath",
                &format!("fast-path call of function {oid} is not allowed"),
            )
        }
    }
}

// ------------------------------------------------------------ messages

pub fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    FrontendMessage::Startup(StartupMessage {
        protocol: PROTOCOL_3_0,
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    })
    .encode()
}

pub fn alice() -> Vec<u8> {
    startup(&[
        ("user", "alice"),
        ("database", "shop"),
        ("application_name", "psql"),
    ])
}

pub fn auth_ok() -> Vec<u8> {
    BackendMessage::AuthenticationOk.encode()
}

/// What a server sends after AuthenticationOk.
pub fn welcome() -> Vec<u8> {
    cat(&[
        BackendMessage::ParameterStatus {
            name: "server_version".into(),
            value: "16.4".into(),
        }
        .encode(),
        BackendMessage::ParameterStatus {
            name: "client_encoding".into(),
            value: "UTF8".into(),
        }
        .encode(),
        BackendMessage::BackendKeyData {
            process_id: 4242,
            secret_key: vec![1, 2, 3, 4],
        }
        .encode(),
        codec::ready_for_query(b'I'),
    ])
}

/// The canned start of a session (mode bits 0-1), as `(client?, bytes)`.
pub fn prelude(start: u8) -> Vec<(bool, Vec<u8>)> {
    match start & 3 {
        0 => vec![],
        1 => vec![(true, alice())],
        2 => vec![
            (true, alice()),
            (false, cat(&[auth_ok(), welcome()])),
            (true, codec::password_message(TOKEN)),
            (false, codec::ready_for_query(b'I')),
        ],
        _ => vec![
            (true, alice()),
            (false, codec::authentication_cleartext_password()),
            (true, codec::password_message(TOKEN)),
            (false, cat(&[auth_ok(), welcome()])),
        ],
    }
}

// ------------------------------------------------------------ input format

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The server sends it (else the client).
    pub server: bool,
    /// Read size (0: one read).
    pub chunk: u8,
    /// The clock jumps past expiry before it.
    pub expire: bool,
    pub bytes: Vec<u8>,
}

pub fn parse_records(b: &mut Bytes<'_>) -> Vec<Record> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let ctl = b.u8();
        let len = usize::from(b.u16());
        out.push(Record {
            server: ctl & 1 == 1,
            chunk: (ctl >> 1) & 0x1f,
            expire: ctl & 0x40 != 0,
            bytes: b.take(len).to_vec(),
        });
    }
    out
}

/// The input bytes of `mode` and `records` (for seeds).
pub fn encode_input(mode: u8, records: &[Record]) -> Vec<u8> {
    let mut out = vec![mode];
    for r in records {
        let ctl = u8::from(r.server) | ((r.chunk & 0x1f) << 1) | if r.expire { 0x40 } else { 0 };
        out.push(ctl);
        let len = u16::try_from(r.bytes.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&r.bytes[..usize::from(len)]);
    }
    out
}

pub fn client(bytes: Vec<u8>) -> Record {
    Record {
        server: false,
        chunk: 0,
        expire: false,
        bytes,
    }
}

pub fn server(bytes: Vec<u8>) -> Record {
    Record {
        server: true,
        chunk: 0,
        expire: false,
        bytes,
    }
}

// ------------------------------------------------------------ harness

/// One connection: the session, its authority and both transcripts.
pub struct Conn {
    pub s: Session,
    pub a: Fake,
    pub now: u64,
    pub to_server: Vec<u8>,
    pub to_client: Vec<u8>,
    /// Every byte each peer sent (before the filter).
    pub from_client: Vec<u8>,
    pub from_server: Vec<u8>,
    pub closed: bool,
    pub events: Vec<String>,
}

impl Conn {
    pub fn new(a: Fake, record_allowed: bool) -> Conn {
        let mut s = Session::new(NONCE.into());
        s.record_allowed = record_allowed;
        Conn {
            s,
            a,
            now: NOW,
            to_server: Vec::new(),
            to_client: Vec::new(),
            from_client: Vec::new(),
            from_server: Vec::new(),
            closed: false,
            events: Vec::new(),
        }
    }

    /// One record, cut into reads of `chunk` bytes (0: whole). Returns the
    /// bytes passed on.
    pub fn feed(&mut self, server: bool, bytes: &[u8], chunk: u8) -> Vec<u8> {
        let mut out = Vec::new();
        if server {
            self.from_server.extend_from_slice(bytes);
        } else {
            self.from_client.extend_from_slice(bytes);
        }
        let sizes = [chunk];
        for r in splits(bytes.len(), &sizes) {
            let piece = &bytes[r];
            let step = if server {
                self.s.on_upstream(piece, &self.a, self.now)
            } else {
                self.s.on_downstream(piece, &self.a, self.now)
            };
            self.closed |= step.close;
            match step.data {
                None => out.extend_from_slice(piece),
                Some(b) => out.extend(b),
            }
            for e in self.s.take_events() {
                self.events.push(e.message);
            }
            let _ = self.s.take_decisions();
            let _ = self.s.take_allowed();
            let _ = self.s.take_auth_failure();
        }
        if server {
            self.to_client.extend_from_slice(&out);
        } else {
            self.to_server.extend_from_slice(&out);
        }
        out
    }

    pub fn state(&self) -> String {
        format!("{:?}", self.s)
    }
}

/// Frames of a server-bound stream as the server would cut them (untyped
/// until the startup): `(type, whole frame)`, up to the first undecodable
/// or incomplete one.
pub fn server_view(mut b: &[u8]) -> Vec<(Option<u8>, Vec<u8>)> {
    let mut v = Vec::new();
    let mut phase = FrontendPhase::Startup;
    loop {
        match phase {
            FrontendPhase::Startup => {
                let Some(len) = b.get(..4) else { break };
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                if !(8..=10_240).contains(&len) || b.len() < len {
                    break;
                }
                match codec::decode_frontend(&b[..len], FrontendPhase::Startup) {
                    Ok(Some((m, _))) => phase = m.next_phase(phase),
                    _ => break,
                }
                v.push((None, b[..len].to_vec()));
                b = &b[len..];
            }
            FrontendPhase::Normal => {
                let Some(h) = b.get(..5) else { break };
                let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
                if !(4..=(1 << 30)).contains(&len) || b.len() < len + 1 {
                    break;
                }
                v.push((Some(h[0]), b[..=len].to_vec()));
                b = &b[len + 1..];
            }
        }
    }
    v
}

/// The invariants of a finished run (panics with a description when one
/// does not hold).
pub fn check_invariants(c: &Conn) {
    // The backend's credentials never reach the client or the log, unless
    // a peer sent them itself (the fuzzer learns them from these very
    // comparisons; passing a peer's own bytes on is not a leak).
    let inner_md5 = codec::md5_password(BACKEND_USER, SECRET, MD5_SALT);
    for secret in [SECRET, inner_md5.as_str()] {
        let s = secret.as_bytes();
        if contains(&c.from_server, s) || contains(&c.from_client, s) {
            continue;
        }
        assert!(
            !contains(&c.to_client, s),
            "the backend credential {secret:?} reached the client"
        );
        for e in &c.events {
            assert!(
                !e.contains(secret),
                "the backend credential {secret:?} is in a log line: {e}"
            );
        }
    }
    let frames = server_view(&c.to_server);
    let logged_in = c.s.identity().is_some();
    for (tag, frame) in &frames {
        let sql = match tag {
            Some(b'Q') => codec::query_view(frame),
            Some(b'P') => codec::parse_view(frame).map(|(_, sql)| sql),
            _ => None,
        };
        if let Some(sql) = sql {
            if !sql.starts_with("DO $pinhole$") {
                let who = c.s.identity();
                assert!(
                    who.is_some(),
                    "SQL reached the server before login: {sql:?}"
                );
                if let Some(who) = who {
                    let d = c.a.decide_plain(who, sql);
                    assert!(
                        d.allowed(),
                        "refused SQL reached the server: {sql:?} ({})",
                        d.reason
                    );
                }
            }
        }
        if *tag == Some(b'F') && !c.a.allow_fastpath {
            panic!("a FunctionCall reached the server");
        }
        if *tag == Some(b'p') {
            let data = &frame[5..];
            for t in [TOKEN, TOKEN2, TOKEN_EXPIRED, TOKEN_REVOKED] {
                assert!(
                    !data.starts_with(t.as_bytes()),
                    "a caller's token was sent to the server as a password"
                );
            }
        }
        if !logged_in {
            assert!(
                matches!(tag, None | Some(b'p' | b'S' | b'X')),
                "{:?} reached the server before any token was verified",
                tag.map(char::from)
            );
        }
    }
    // Before a verified token the client sees only prompts, errors and
    // notices (never a held trust welcome). Skipped after SSL answers (one
    // unframed byte) and cancel requests (the server's bytes pass).
    let ssl = matches!(frames.first(), Some((None, f)) if f.len() == 8 && f[4..6] == [0x04, 0xd2]);
    if !logged_in && !ssl && !c.state().contains("finished") {
        let mut b: &[u8] = &c.to_client;
        while let Ok(Some((m, n))) = codec::decode_backend(b, BackendPhase::Normal) {
            assert!(
                matches!(
                    m,
                    BackendMessage::AuthenticationCleartextPassword
                        | BackendMessage::ErrorResponse { .. }
                        | BackendMessage::NoticeResponse { .. }
                        | BackendMessage::NegotiateProtocolVersion { .. }
                ),
                "{m:?} reached the client before any token was verified"
            );
            b = &b[n..];
        }
    }
}

/// Server data that would make the session run PBKDF2 with a large
/// iteration count (up to the filter's cap of 100 000: tens of
/// milliseconds per run under instrumentation). Such inputs are skipped so
/// the fuzzer's throughput stays up; the cap itself is unit-tested.
pub fn expensive_scram(records: &[Record]) -> bool {
    records.iter().filter(|r| r.server).any(|r| {
        r.bytes.windows(2).enumerate().any(|(i, w)| {
            w == b"i="
                && r.bytes[i + 2..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count()
                    > 4
        })
    })
}
