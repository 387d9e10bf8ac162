//! Native tests of the PostgreSQL session state machine ([`super::session`]).
//!
//! A fake [`Authority`] stands in for the policy; the tests play both the
//! client and the server with hand-built messages and assert on what each
//! side receives. Every scenario can be fed whole, one byte at a time, or in
//! random-size chunks ([`Feed`]); the concatenated output must not depend on
//! the read boundaries.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::cell::Cell;
use std::fmt::Write as _;
use std::ops::Range;
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::codec::{
    self, BackendMessage, BackendPhase, FrontendMessage, FrontendPhase, StartupMessage, TargetKind,
    PROTOCOL_3_0,
};
use super::session::{
    refusal_block, refusal_message, Authority, Backend, Event, Level, Session, Step,
};
use crate::engine::Decided;
use crate::identity::{AuthError, Identity, VerifiedToken};
use crate::policy::eval::Decision;
use crate::policy::Effect;

const SECRET: &str = "s3cret-pw";
/// Expiry of every fake token.
const EXP: u64 = 1000;
/// The default clock: before [`EXP`].
const NOW: u64 = 100;
/// The SCRAM client nonce handed to [`Session::new`].
const NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";
const REFUSED: &str = "pinhole_refused";
const SALT: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

// ====================================================================
// The fake policy

struct Fake {
    backend: Result<Backend, String>,
    /// Revoke every identity at the next recheck.
    revoked: Cell<bool>,
    /// The policy was unloaded: `backend()` fails from now on.
    unloaded: Cell<bool>,
    /// Allow fast-path function calls.
    allow_fastpath: Cell<bool>,
}

impl Fake {
    fn new() -> Fake {
        Fake::with(Ok(backend(Some(SECRET))))
    }

    fn with(backend: Result<Backend, String>) -> Fake {
        Fake {
            backend,
            revoked: Cell::new(false),
            unloaded: Cell::new(false),
            allow_fastpath: Cell::new(false),
        }
    }
}

fn backend(password: Option<&str>) -> Backend {
    Backend {
        user: "app".into(),
        password: password.map(str::to_owned),
        database: None,
        target: "db".into(),
    }
}

fn identity(sub: &str) -> Identity {
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
        roles: vec!["developer".into()],
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
        if self.unloaded.get() {
            return Err("policy unloaded".into());
        }
        self.backend.as_ref().map_err(String::clone)
    }

    fn authenticate(&self, token: &str, _now: u64) -> Result<Identity, AuthError> {
        match token {
            "good" | "good2" => Ok(identity(token)),
            "expired" => Err(AuthError::Expired),
            "revoked" => Err(AuthError::SubjectRevoked),
            _ => Err(AuthError::BadSignature),
        }
    }

    fn recheck(&self, who: &Identity, now: u64) -> Result<(), AuthError> {
        if self.revoked.get() {
            return Err(AuthError::SubjectRevoked);
        }
        if now >= who.token.exp {
            return Err(AuthError::Expired);
        }
        Ok(())
    }

    fn decide_sql(&self, _who: &Identity, sql: &str, _now: u64) -> Decided {
        Decided::plain(self.decide_plain(sql))
    }

    fn decide_function_call(&self, _who: &Identity, oid: u32, _now: u64) -> Decided {
        Decided::plain(self.decide_fastpath(oid))
    }
}

impl Fake {
    fn decide_plain(&self, sql: &str) -> Decision {
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

    fn decide_fastpath(&self, oid: u32) -> Decision {
        if self.allow_fastpath.get() {
            return decision(Effect::Allow, "fastpath", "allowed");
        }
        decision(
            Effect::Deny,
            "no-fastpath",
            &format!("fast-path call of function {oid} is not allowed"),
        )
    }
}

/// The refusal message the session builds for `sql` under the fake policy.
fn refusal_for(sql: &str) -> String {
    refusal_message(&Fake::new().decide_plain(sql))
}

// ====================================================================
// A deterministic PRNG (xorshift64*)

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn byte(&mut self) -> u8 {
        (self.next_u64() >> 24) as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

// ====================================================================
// The harness: one session, both peers

/// How reads are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Whole,
    Bytes,
    Random(u64),
}

const FEEDS: [Feed; 5] = [
    Feed::Whole,
    Feed::Bytes,
    Feed::Random(1),
    Feed::Random(7),
    Feed::Random(1234),
];

struct Conn {
    s: Session,
    a: Fake,
    now: u64,
    feed: Feed,
    rng: Rng,
    /// Every byte the server received / the client received.
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    /// Some read returned `close`.
    closed: bool,
    events: Vec<Event>,
}

impl Conn {
    fn new(feed: Feed) -> Conn {
        Conn::with(Fake::new(), feed)
    }

    fn with(a: Fake, feed: Feed) -> Conn {
        let seed = match feed {
            Feed::Random(s) => s,
            _ => 1,
        };
        Conn {
            s: Session::new(NONCE.into()),
            a,
            now: NOW,
            feed,
            rng: Rng::new(seed),
            to_server: Vec::new(),
            to_client: Vec::new(),
            closed: false,
            events: Vec::new(),
        }
    }

    fn split(&mut self, len: usize) -> Vec<Range<usize>> {
        let mut v = Vec::new();
        let mut at = 0;
        while at < len {
            let n = match self.feed {
                Feed::Whole => len - at,
                Feed::Bytes => 1,
                Feed::Random(_) => 1 + self.rng.below(17),
            }
            .min(len - at);
            v.push(at..at + n);
            at += n;
        }
        v
    }

    fn pass(&mut self, data: &[u8], downstream: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for r in self.split(data.len()) {
            let chunk = &data[r];
            let step = if downstream {
                self.s.on_downstream(chunk, &self.a, self.now)
            } else {
                self.s.on_upstream(chunk, &self.a, self.now)
            };
            self.closed |= step.close;
            match step.data {
                None => out.extend_from_slice(chunk),
                Some(b) => out.extend(b),
            }
        }
        self.collect_events();
        out
    }

    fn collect_events(&mut self) {
        for e in self.s.take_events() {
            assert!(
                !e.message.contains(SECRET),
                "the backend password is in a log line: {}",
                e.message
            );
            self.events.push(e);
        }
    }

    fn record_client_bound(&mut self, out: &[u8]) {
        let from = self.to_client.len().saturating_sub(SECRET.len());
        self.to_client.extend_from_slice(out);
        assert!(
            !contains(&self.to_client[from..], SECRET.as_bytes()),
            "the backend password reached the client"
        );
    }

    /// The client sends `data`: what the server receives.
    fn client(&mut self, data: &[u8]) -> Vec<u8> {
        let out = self.pass(data, true);
        self.to_server.extend_from_slice(&out);
        out
    }

    /// The server sends `data`: what the client receives.
    fn server(&mut self, data: &[u8]) -> Vec<u8> {
        let out = self.pass(data, false);
        self.record_client_bound(&out);
        out
    }

    /// One client read, returned as is (recorded too).
    fn client_step(&mut self, data: &[u8]) -> Step {
        let step = self.s.on_downstream(data, &self.a, self.now);
        self.collect_events();
        self.closed |= step.close;
        let out = step.data.clone().unwrap_or_else(|| data.to_vec());
        self.to_server.extend_from_slice(&out);
        step
    }

    /// One server read, returned as is (recorded too).
    fn server_step(&mut self, data: &[u8]) -> Step {
        let step = self.s.on_upstream(data, &self.a, self.now);
        self.collect_events();
        self.closed |= step.close;
        let out = step.data.clone().unwrap_or_else(|| data.to_vec());
        self.record_client_bound(&out);
        step
    }

    fn state(&self) -> String {
        format!("{:?}", self.s)
    }

    fn warned(&self, needle: &str) -> bool {
        self.events
            .iter()
            .any(|e| e.level == Level::Warn && e.message.contains(needle))
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Runs `scenario` under every [`Feed`]: both directions' transcripts must
/// be the same as with whole reads.
fn each_feed(scenario: impl Fn(Feed) -> Conn) {
    let mut want: Option<(Vec<u8>, Vec<u8>, bool)> = None;
    for feed in FEEDS {
        let c = scenario(feed);
        let got = (c.to_server.clone(), c.to_client.clone(), c.s.is_done());
        match &want {
            None => want = Some(got),
            Some(w) => {
                assert_eq!(w.0, got.0, "server-bound bytes differ under {feed:?}");
                assert_eq!(w.1, got.1, "client-bound bytes differ under {feed:?}");
                assert_eq!(w.2, got.2, "session end differs under {feed:?}");
            }
        }
    }
}

// ====================================================================
// Messages

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    FrontendMessage::Startup(StartupMessage {
        protocol: PROTOCOL_3_0,
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    })
    .encode()
}

/// alice's psql.
fn alice() -> Vec<u8> {
    startup(&[
        ("user", "alice"),
        ("database", "shop"),
        ("application_name", "psql"),
    ])
}

fn pw(token: &str) -> Vec<u8> {
    codec::password_message(token)
}

fn prompt() -> Vec<u8> {
    codec::authentication_cleartext_password()
}

fn auth_ok() -> Vec<u8> {
    BackendMessage::AuthenticationOk.encode()
}

fn rfq(status: u8) -> Vec<u8> {
    codec::ready_for_query(status)
}

/// What a server sends after AuthenticationOk.
fn welcome() -> Vec<u8> {
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
        rfq(b'I'),
    ])
}

fn sync() -> Vec<u8> {
    FrontendMessage::Sync.encode()
}

fn flush() -> Vec<u8> {
    FrontendMessage::Flush.encode()
}

fn terminate() -> Vec<u8> {
    FrontendMessage::Terminate.encode()
}

/// What the session sends the server to end it after login.
fn poke() -> Vec<u8> {
    cat(&[sync(), terminate()])
}

/// What the session sends the server to end it before the startup.
fn startup_poke() -> Vec<u8> {
    FrontendMessage::Startup(StartupMessage {
        protocol: 0x0009_0000,
        params: vec![("user".into(), "pinhole".into())],
    })
    .encode()
}

fn describe(kind: TargetKind, name: &str) -> Vec<u8> {
    FrontendMessage::Describe {
        kind,
        name: name.into(),
    }
    .encode()
}

fn execute_rows(portal: &str, max_rows: i32) -> Vec<u8> {
    FrontendMessage::Execute {
        portal: portal.into(),
        max_rows,
    }
    .encode()
}

fn copy_data(data: &[u8]) -> Vec<u8> {
    FrontendMessage::CopyData {
        data: data.to_vec(),
    }
    .encode()
}

fn copy_done() -> Vec<u8> {
    FrontendMessage::CopyDone.encode()
}

fn copy_fail() -> Vec<u8> {
    FrontendMessage::CopyFail {
        message: "client gave up".into(),
    }
    .encode()
}

fn function_call(oid: u32) -> Vec<u8> {
    FrontendMessage::FunctionCall(codec::FunctionCall {
        function_oid: oid,
        arg_formats: vec![0],
        args: vec![Some(b"42".to_vec())],
        result_format: 0,
    })
    .encode()
}

fn row_desc(name: &str) -> Vec<u8> {
    BackendMessage::RowDescription {
        fields: vec![codec::FieldDescription {
            name: name.into(),
            table_oid: 0,
            column_attr: 0,
            type_oid: 23,
            type_size: 4,
            type_modifier: -1,
            format: 0,
        }],
    }
    .encode()
}

fn data_row(v: &[u8]) -> Vec<u8> {
    BackendMessage::DataRow {
        values: vec![Some(v.to_vec())],
    }
    .encode()
}

fn complete(tag: &str) -> Vec<u8> {
    BackendMessage::CommandComplete { tag: tag.into() }.encode()
}

fn parse_complete() -> Vec<u8> {
    BackendMessage::ParseComplete.encode()
}

fn bind_complete() -> Vec<u8> {
    BackendMessage::BindComplete.encode()
}

fn close_complete() -> Vec<u8> {
    BackendMessage::CloseComplete.encode()
}

fn copy_in_response() -> Vec<u8> {
    BackendMessage::CopyInResponse {
        format: 0,
        column_formats: vec![0],
    }
    .encode()
}

fn notice(msg: &str) -> Vec<u8> {
    BackendMessage::NoticeResponse {
        fields: vec![
            (b'S', "NOTICE".into()),
            (b'C', "00000".into()),
            (b'M', msg.into()),
        ],
    }
    .encode()
}

fn error(severity: &str, code: &str, msg: &str) -> Vec<u8> {
    codec::error_response(severity, code, msg)
}

const RAISE_CONTEXT: &str = "PL/pgSQL function inline_code_block line 1 at RAISE";

/// The server's error for a refusal block raising `msg`.
fn raised(msg: &str) -> Vec<u8> {
    BackendMessage::ErrorResponse {
        fields: vec![
            (b'S', "ERROR".into()),
            (b'V', "ERROR".into()),
            (b'C', "42501".into()),
            (b'M', msg.into()),
            (b'W', RAISE_CONTEXT.into()),
            (b'F', "pl_exec.c".into()),
            (b'L', "3911".into()),
            (b'R', "exec_stmt_raise".into()),
        ],
    }
    .encode()
}

/// What the client gets for [`raised`]: the location fields removed.
fn raised_seen(msg: &str) -> Vec<u8> {
    BackendMessage::ErrorResponse {
        fields: vec![
            (b'S', "ERROR".into()),
            (b'V', "ERROR".into()),
            (b'C', "42501".into()),
            (b'M', msg.into()),
        ],
    }
    .encode()
}

/// A refused Parse/Bind/Execute as the session rewrites it.
fn refusal_extended(msg: &str) -> Vec<u8> {
    cat(&[
        codec::close(TargetKind::Statement, REFUSED),
        codec::parse(REFUSED, &refusal_block(msg)),
        codec::bind(REFUSED, REFUSED),
        codec::execute(REFUSED),
    ])
}

/// The server's answer to [`refusal_extended`] (up to the error).
fn refusal_extended_answer(msg: &str) -> Vec<u8> {
    cat(&[
        close_complete(),
        parse_complete(),
        bind_complete(),
        raised(msg),
    ])
}

fn hex(s: &str) -> String {
    let mut h = String::new();
    for b in s.as_bytes() {
        let _ = write!(h, "{b:02x}");
    }
    h
}

// ------------------------------------------------------------ decoding

fn backend_msgs(mut b: &[u8]) -> Vec<BackendMessage> {
    let mut v = Vec::new();
    while !b.is_empty() {
        let (m, n) = codec::decode_backend(b, BackendPhase::Normal)
            .unwrap_or_else(|e| panic!("client-bound bytes do not decode: {e}"))
            .expect("client-bound bytes end with an incomplete message");
        v.push(m);
        b = &b[n..];
    }
    v
}

/// Decodes server-bound bytes, the first messages untyped.
fn frontend_msgs_from(mut b: &[u8], mut phase: FrontendPhase) -> Vec<FrontendMessage> {
    let mut v = Vec::new();
    while !b.is_empty() {
        let (m, n) = codec::decode_frontend(b, phase)
            .unwrap_or_else(|e| panic!("server-bound bytes do not decode: {e}"))
            .expect("server-bound bytes end with an incomplete message");
        phase = m.next_phase(phase);
        v.push(m);
        b = &b[n..];
    }
    v
}

fn frontend_msgs(b: &[u8]) -> Vec<FrontendMessage> {
    frontend_msgs_from(b, FrontendPhase::Normal)
}

fn fields(m: &BackendMessage) -> &[(u8, String)] {
    match m {
        BackendMessage::ErrorResponse { fields } | BackendMessage::NoticeResponse { fields } => {
            fields
        }
        other => panic!("not an error or notice: {other:?}"),
    }
}

fn field(m: &BackendMessage, code: u8) -> Option<&str> {
    fields(m)
        .iter()
        .find(|(k, _)| *k == code)
        .map(|(_, v)| v.as_str())
}

/// `bytes` is exactly one FATAL ErrorResponse of the filter with
/// `sqlstate`: returns its message.
fn assert_fatal(bytes: &[u8], sqlstate: &str) -> String {
    let msgs = backend_msgs(bytes);
    assert_eq!(msgs.len(), 1, "expected one message, got {msgs:?}");
    let m = &msgs[0];
    assert!(
        matches!(m, BackendMessage::ErrorResponse { .. }),
        "not an error: {m:?}"
    );
    assert_eq!(field(m, b'S'), Some("FATAL"), "{m:?}");
    assert_eq!(field(m, b'C'), Some(sqlstate), "{m:?}");
    let text = field(m, b'M').unwrap().to_owned();
    assert!(text.starts_with("pinhole: "), "{text}");
    text
}

// ====================================================================
// A SCRAM-SHA-256 server (RFC 5802), for the upstream side of the login

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().into()
}

struct ScramServer {
    password: String,
    salt: Vec<u8>,
    iterations: u32,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ScramServer {
    /// Reads the client-first message, makes the server-first.
    fn first(password: &str, client_first: &str) -> ScramServer {
        let bare = client_first
            .strip_prefix("n,,")
            .expect("no channel binding");
        let cnonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .expect("client nonce");
        assert_eq!(cnonce, NONCE, "the session's nonce is used");
        let nonce = format!("{cnonce}3rfcNHYJY1ZVvWVs7j");
        let salt = b"pinhole-test-salt".to_vec();
        let iterations = 4096;
        let server_first = format!("r={nonce},s={},i={iterations}", STANDARD.encode(&salt));
        ScramServer {
            password: password.to_owned(),
            salt,
            iterations,
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
        }
    }

    /// Checks the client-final proof: the server-final message, or why not.
    fn finish(&self, client_final: &str) -> Result<String, String> {
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or("no proof in client-final")?;
        if without_proof != format!("c=biws,r={}", self.nonce) {
            return Err(format!("bad channel binding or nonce: {without_proof}"));
        }
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(
            self.password.as_bytes(),
            &self.salt,
            self.iterations,
            &mut salted,
        );
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        let proof = STANDARD.decode(proof).map_err(|e| e.to_string())?;
        if proof.len() != 32 {
            return Err("proof length".into());
        }
        let recovered: Vec<u8> = proof
            .iter()
            .zip(client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let digest: [u8; 32] = Sha256::digest(&recovered).into();
        if digest != stored_key {
            return Err("client proof does not verify".into());
        }
        let server_key = hmac(&salted, b"Server Key");
        Ok(format!(
            "v={}",
            STANDARD.encode(hmac(&server_key, auth_message.as_bytes()))
        ))
    }
}

fn sasl(mechanisms: &[&str]) -> Vec<u8> {
    BackendMessage::AuthenticationSasl {
        mechanisms: mechanisms.iter().map(|m| (*m).to_owned()).collect(),
    }
    .encode()
}

fn sasl_continue(data: &str) -> Vec<u8> {
    BackendMessage::AuthenticationSaslContinue {
        data: data.as_bytes().to_vec(),
    }
    .encode()
}

fn sasl_final(data: &str) -> Vec<u8> {
    BackendMessage::AuthenticationSaslFinal {
        data: data.as_bytes().to_vec(),
    }
    .encode()
}

/// The one PasswordMessage in `bytes`.
fn password_data(bytes: &[u8]) -> Vec<u8> {
    match frontend_msgs(bytes).as_slice() {
        [FrontendMessage::PasswordMessage { data }] => data.clone(),
        other => panic!("expected one password message, got {other:?}"),
    }
}

/// The server-bound bytes of a SASLInitialResponse: the SCRAM server after
/// reading it.
fn scram_server_from(bytes: &[u8]) -> ScramServer {
    let data = password_data(bytes);
    let (mechanism, initial) = codec::parse_sasl_initial_response(&data).unwrap();
    assert_eq!(mechanism, "SCRAM-SHA-256");
    let initial = String::from_utf8(initial.expect("initial response")).unwrap();
    ScramServer::first(SECRET, &initial)
}

// ====================================================================
// Logging in

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Login {
    Trust,
    Cleartext,
    Md5,
    Scram,
}

const LOGINS: [Login; 4] = [Login::Trust, Login::Cleartext, Login::Md5, Login::Scram];
const PASSWORD_LOGINS: [Login; 3] = [Login::Cleartext, Login::Md5, Login::Scram];

/// The server's first answer to the startup.
fn server_request(login: Login) -> Vec<u8> {
    match login {
        Login::Trust => cat(&[auth_ok(), welcome()]),
        Login::Cleartext => prompt(),
        Login::Md5 => BackendMessage::AuthenticationMd5Password { salt: SALT }.encode(),
        Login::Scram => sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]),
    }
}

/// The startup the server receives for [`alice`].
fn alice_upstream() -> Vec<u8> {
    startup(&[
        ("user", "app"),
        ("database", "shop"),
        ("application_name", "psql"),
    ])
}

/// A logged-in connection (every step checked).
fn login(login: Login, feed: Feed) -> Conn {
    let mut c = Conn::new(feed);
    assert_eq!(c.client(&alice()), alice_upstream());
    do_login(&mut c, login);
    c
}

fn do_login(c: &mut Conn, login: Login) {
    let before = c.to_client.len();
    assert_eq!(c.server(&server_request(login)), prompt(), "{login:?}");
    match login {
        Login::Trust => {
            // The password is replaced by a Sync; the server's answer to
            // it releases the welcome held since the AuthenticationOk.
            assert_eq!(c.client(&pw("good")), sync());
            assert_eq!(c.server(&rfq(b'I')), cat(&[auth_ok(), welcome()]));
        }
        Login::Cleartext => {
            assert_eq!(c.client(&pw("good")), pw(SECRET));
            assert_eq!(
                c.server(&cat(&[auth_ok(), welcome()])),
                cat(&[auth_ok(), welcome()])
            );
        }
        Login::Md5 => {
            assert_eq!(
                c.client(&pw("good")),
                pw(&codec::md5_password("app", SECRET, SALT))
            );
            assert_eq!(
                c.server(&cat(&[auth_ok(), welcome()])),
                cat(&[auth_ok(), welcome()])
            );
        }
        Login::Scram => {
            let first = c.client(&pw("good"));
            let server = scram_server_from(&first);
            // The second round trip is carried by a second prompt.
            assert_eq!(c.server(&sasl_continue(&server.server_first)), prompt());
            let second = c.client(&pw("good"));
            let client_final = String::from_utf8(password_data(&second)).unwrap();
            let server_final = server.finish(&client_final).unwrap();
            // SASLFinal is checked and dropped.
            assert_eq!(
                c.server(&cat(&[sasl_final(&server_final), auth_ok(), welcome()])),
                cat(&[auth_ok(), welcome()])
            );
        }
    }
    let prompts = if login == Login::Scram { 2 } else { 1 };
    let mut want = Vec::new();
    for _ in 0..prompts {
        want.extend(prompt());
    }
    want.extend(auth_ok());
    want.extend(welcome());
    assert_eq!(&c.to_client[before..], want.as_slice(), "{login:?}");
    assert!(!c.closed);
    assert!(!c.s.is_done());
    // The caller's JWT never reaches the database.
    assert!(!contains(&c.to_server, b"good\0"), "{login:?}");
    let who = c.s.identity().expect("logged in");
    assert_eq!(who.token.sub, "good");
    assert!(c.state().contains("ready"), "{}", c.state());
}

fn ready(feed: Feed) -> Conn {
    login(Login::Cleartext, feed)
}

// ====================================================================
// 1. Login with each server method

#[test]
fn login_with_every_server_method_and_any_read_boundaries() {
    for method in LOGINS {
        each_feed(|feed| login(method, feed));
    }
}

#[test]
fn login_trust_holds_the_welcome_until_the_token_is_verified() {
    let mut c = Conn::new(Feed::Whole);
    c.client(&alice());
    // AuthenticationOk .. ReadyForQuery: only a prompt reaches the client.
    let step = c.server_step(&cat(&[auth_ok(), welcome()]));
    assert_eq!(step.data, Some(prompt()));
    // The token is verified; the server gets a Sync instead of a password.
    let step = c.client_step(&pw("good"));
    assert_eq!(step.data, Some(sync()));
    // The server's answer to the Sync releases the welcome and is dropped.
    let step = c.server_step(&rfq(b'I'));
    assert_eq!(step.data, Some(cat(&[auth_ok(), welcome()])));
    assert_eq!(c.to_client, cat(&[prompt(), auth_ok(), welcome()]));
    // The welcome is not released twice.
    let step = c.client_step(&codec::query("select 1"));
    assert_eq!(step.data, None);
    assert_eq!(c.server_step(&rfq(b'I')).data, None);
    assert_eq!(
        c.to_client,
        cat(&[prompt(), auth_ok(), welcome(), rfq(b'I')])
    );
    assert!(c
        .events
        .iter()
        .any(|e| e.level == Level::Info && e.message.contains("login of corp:good")));
}

#[test]
fn login_trust_welcome_split_around_the_token() {
    each_feed(|feed| {
        let mut c = Conn::new(feed);
        c.client(&alice());
        // Only AuthenticationOk arrives before the token.
        assert_eq!(c.server(&auth_ok()), prompt());
        assert_eq!(c.client(&pw("good")), sync());
        // The rest of the welcome, then the answer to the Sync.
        assert_eq!(c.server(&welcome()), b"");
        assert_eq!(c.server(&rfq(b'I')), cat(&[auth_ok(), welcome()]));
        assert_eq!(c.to_client, cat(&[prompt(), auth_ok(), welcome()]));
        c
    });
}

#[test]
fn login_cleartext_answers_with_the_backend_password() {
    let c = login(Login::Cleartext, Feed::Whole);
    let msgs = frontend_msgs_from(&c.to_server, FrontendPhase::Startup);
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        msgs[1],
        FrontendMessage::PasswordMessage {
            data: format!("{SECRET}\0").into_bytes()
        }
    );
    // The token never reaches the server.
    assert!(!contains(&c.to_server, b"good"));
}

#[test]
fn login_md5_answers_with_the_md5_of_the_backend_password() {
    let c = login(Login::Md5, Feed::Whole);
    let want = codec::md5_password("app", SECRET, SALT);
    assert!(want.starts_with("md5"));
    assert!(contains(&c.to_server, want.as_bytes()));
    assert!(!contains(&c.to_server, SECRET.as_bytes()));
}

#[test]
fn login_scram_proves_the_backend_password_and_checks_the_server() {
    let c = login(Login::Scram, Feed::Whole);
    // The password itself never travels.
    assert!(!contains(&c.to_server, SECRET.as_bytes()));
    // Two prompts for the client, SASLFinal dropped.
    let msgs = backend_msgs(&c.to_client);
    assert!(matches!(
        msgs.as_slice(),
        [
            BackendMessage::AuthenticationCleartextPassword,
            BackendMessage::AuthenticationCleartextPassword,
            BackendMessage::AuthenticationOk,
            ..
        ]
    ));
    assert!(!msgs
        .iter()
        .any(|m| matches!(m, BackendMessage::AuthenticationSaslFinal { .. })));
}

#[test]
fn login_scram_token_is_trimmed_on_both_prompts() {
    let mut c = Conn::new(Feed::Whole);
    c.client(&alice());
    c.server(&sasl(&["SCRAM-SHA-256"]));
    let server = scram_server_from(&c.client(&pw(" good ")));
    assert_eq!(c.server(&sasl_continue(&server.server_first)), prompt());
    let second = c.client(&pw("good\n"));
    let client_final = String::from_utf8(password_data(&second)).unwrap();
    let fin = server.finish(&client_final).unwrap();
    assert_eq!(
        c.server(&cat(&[sasl_final(&fin), auth_ok(), welcome()])),
        cat(&[auth_ok(), welcome()])
    );
    assert!(!c.s.is_done());
}

/// Up to the SCRAM server-final: the server and the connection.
fn scram_until_final(feed: Feed, second_token: &str) -> (Conn, ScramServer, Vec<u8>) {
    let mut c = Conn::new(feed);
    c.client(&alice());
    c.server(&sasl(&["SCRAM-SHA-256"]));
    let server = scram_server_from(&c.client(&pw("good")));
    c.server(&sasl_continue(&server.server_first));
    let second = c.client(&pw(second_token));
    (c, server, second)
}

#[test]
fn scram_wrong_server_signature_ends_the_session_08004() {
    each_feed(|feed| {
        let (mut c, _server, _) = scram_until_final(feed, "good");
        let forged = format!("v={}", STANDARD.encode([7u8; 32]));
        let got = c.server(&cat(&[sasl_final(&forged), auth_ok(), welcome()]));
        let text = assert_fatal(&got, "08004");
        assert!(text.contains("SCRAM server signature"), "{text}");
        assert!(c.s.is_done());
        // Nothing more from the server reaches the client.
        assert_eq!(c.server(&rfq(b'I')), b"");
        // The client's next message ends the server side.
        assert_eq!(c.client(&codec::query("select 1")), poke());
        assert_eq!(c.client(&codec::query("select 2")), b"");
        c
    });
}

#[test]
fn scram_server_final_error_ends_the_session_08004() {
    let (mut c, _server, _) = scram_until_final(Feed::Whole, "good");
    let got = c.server(&sasl_final("e=invalid-proof"));
    assert_fatal(&got, "08004");
    assert!(c.s.is_done());
}

#[test]
fn scram_second_prompt_with_another_token_ends_the_session_28p01() {
    each_feed(|feed| {
        let (mut c, _server, second) = scram_until_final(feed, "good2");
        // No client-final: the server is told to end.
        assert_eq!(second, poke());
        assert!(c.s.is_done());
        let got = c.server(&error(
            "FATAL",
            "08P01",
            "expected SASL response, got message type 83",
        ));
        let text = assert_fatal(&got, "28P01");
        assert!(text.contains("same token"), "{text}");
        c
    });
}

#[test]
fn scram_without_scram_sha_256_is_refused_08004() {
    let mut c = Conn::new(Feed::Whole);
    c.client(&alice());
    let got = c.server(&sasl(&["SCRAM-SHA-256-PLUS"]));
    assert_fatal(&got, "08004");
    assert!(c.s.is_done());
    assert_eq!(c.client(&pw("good")), poke());
}

#[test]
fn scram_server_nonce_must_extend_the_client_nonce() {
    let mut c = Conn::new(Feed::Whole);
    c.client(&alice());
    c.server(&sasl(&["SCRAM-SHA-256"]));
    c.client(&pw("good"));
    let got = c.server(&sasl_continue("r=someoneelse123,s=c2FsdA==,i=4096"));
    let text = assert_fatal(&got, "08004");
    assert!(text.contains("SCRAM"), "{text}");
    // An absurd iteration count is refused too.
    let mut c = Conn::new(Feed::Whole);
    c.client(&alice());
    c.server(&sasl(&["SCRAM-SHA-256"]));
    c.client(&pw("good"));
    let got = c.server(&sasl_continue(&format!(
        "r={NONCE}xyz,s=c2FsdA==,i=999999999"
    )));
    assert_fatal(&got, "08004");
}

#[test]
fn startup_user_is_rewritten_and_the_database_made_explicit() {
    // The caller's database is kept, user becomes the backend role.
    let mut c = Conn::new(Feed::Whole);
    assert_eq!(c.client(&alice()), alice_upstream());
    assert_eq!(c.s.client_user(), Some("alice"));

    // No database: the caller's user name, explicitly (the server would
    // otherwise default to the backend role's name).
    let mut c = Conn::new(Feed::Whole);
    let got = c.client(&startup(&[("user", "alice")]));
    assert_eq!(got, startup(&[("user", "app"), ("database", "alice")]));

    // No user at all.
    let mut c = Conn::new(Feed::Whole);
    let got = c.client(&startup(&[("database", "shop")]));
    let msgs = frontend_msgs_from(&got, FrontendPhase::Startup);
    let [FrontendMessage::Startup(s)] = msgs.as_slice() else {
        panic!("{msgs:?}")
    };
    assert_eq!(s.param("user"), Some("app"));
    assert_eq!(s.param("database"), Some("shop"));

    // The target pins the database.
    let mut b = backend(Some(SECRET));
    b.database = Some("appdb".into());
    let mut c = Conn::with(Fake::with(Ok(b)), Feed::Whole);
    let got = c.client(&alice());
    assert_eq!(
        got,
        startup(&[
            ("user", "app"),
            ("database", "appdb"),
            ("application_name", "psql"),
        ])
    );
}

#[test]
fn startup_unknown_params_are_dropped_and_known_ones_kept() {
    each_feed(|feed| {
        let mut c = Conn::new(feed);
        let got = c.client(&startup(&[
            ("user", "alice"),
            ("search_path", "evil,public"),
            ("DateStyle", "ISO, MDY"),
            ("_pq_.protocol_managed_params", "x"),
            ("client_encoding", "UTF8"),
            ("TimeZone", "UTC"),
            ("standard_conforming_strings", "on"),
            ("work_mem", "1TB"),
            ("database", "shop"),
        ]));
        assert_eq!(
            got,
            startup(&[
                ("user", "app"),
                ("DateStyle", "ISO, MDY"),
                ("client_encoding", "UTF8"),
                ("TimeZone", "UTC"),
                ("standard_conforming_strings", "on"),
                ("database", "shop"),
            ])
        );
        for p in ["search_path", "_pq_.protocol_managed_params", "work_mem"] {
            assert!(
                c.events.iter().any(|e| e
                    .message
                    .contains(&format!("dropped startup parameter `{p}`"))),
                "{p}: {:?}",
                c.events
            );
        }
        c
    });
}

/// PostgreSQL reads startup parameters in order and keeps the *last*
/// `user` / `database` (ProcessStartupPacket: `port->user_name =
/// pstrdup(valptr)` for each one). Only the first is rewritten.
#[test]
fn startup_repeated_user_or_database_cannot_override_the_backend_role() {
    let mut c = Conn::new(Feed::Whole);
    let got = c.client(&startup(&[
        ("user", "alice"),
        ("database", "shop"),
        ("user", "postgres"),
    ]));
    // Refusing the connection (the server gets the refusal "poke") is fine.
    let msgs = if c.s.is_done() {
        Vec::new()
    } else {
        frontend_msgs_from(&got, FrontendPhase::Startup)
    };
    if let [FrontendMessage::Startup(s)] = msgs.as_slice() {
        let users: Vec<&str> = s
            .params
            .iter()
            .filter(|(k, _)| k == "user")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(users, ["app"], "the server must see only the backend role");
    } else {
        // Refusing the connection is fine too.
        assert!(c.s.is_done(), "{msgs:?}");
    }

    let mut b = backend(Some(SECRET));
    b.database = Some("appdb".into());
    let mut c = Conn::with(Fake::with(Ok(b)), Feed::Whole);
    let got = c.client(&startup(&[
        ("user", "alice"),
        ("database", "shop"),
        ("database", "postgres"),
    ]));
    let msgs = if c.s.is_done() {
        Vec::new()
    } else {
        frontend_msgs_from(&got, FrontendPhase::Startup)
    };
    if let [FrontendMessage::Startup(s)] = msgs.as_slice() {
        let dbs: Vec<&str> = s
            .params
            .iter()
            .filter(|(k, _)| k == "database")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(dbs, ["appdb"], "the pinned database must be the only one");
    } else {
        assert!(c.s.is_done(), "{msgs:?}");
    }
}

#[test]
fn backend_without_password_cannot_answer_a_password_request_08004() {
    for method in PASSWORD_LOGINS {
        let mut c = Conn::with(Fake::with(Ok(backend(None))), Feed::Whole);
        c.client(&alice());
        assert_eq!(c.server(&server_request(method)), prompt());
        // A valid token: still no password to give the server.
        assert_eq!(c.client(&pw("good")), poke(), "{method:?}");
        assert!(c.s.is_done());
        let got = c.server(&error("FATAL", "08P01", "invalid frontend message type 83"));
        let text = assert_fatal(&got, "08004");
        assert!(text.contains("backend_password_env"), "{text}");
    }
    // Trust needs none.
    let mut c = Conn::with(Fake::with(Ok(backend(None))), Feed::Whole);
    c.client(&alice());
    do_login(&mut c, Login::Trust);
}

#[test]
fn server_refusing_the_backend_credentials_is_08004_for_the_client() {
    for method in [Login::Cleartext, Login::Md5] {
        let mut c = Conn::new(Feed::Whole);
        c.client(&alice());
        c.server(&server_request(method));
        c.client(&pw("good"));
        let got = c.server(&cat(&[
            error(
                "FATAL",
                "28P01",
                "password authentication failed for user \"app\"",
            ),
            welcome(),
        ]));
        let text = assert_fatal(&got, "08004");
        assert!(!text.contains("app"), "{text}");
        assert!(c.warned("refused backend role `app`"));
        assert!(c.s.is_done());
        assert_eq!(c.client(&codec::query("select 1")), poke());
    }
}

#[test]
fn server_errors_and_notices_during_login_reach_the_client() {
    let mut c = Conn::new(Feed::Whole);
    c.client(&alice());
    let e = error("FATAL", "3D000", "database \"shop\" does not exist");
    assert_eq!(c.server_step(&e).data, None);
    let mut c = Conn::new(Feed::Whole);
    c.client(&alice());
    let v = BackendMessage::NegotiateProtocolVersion {
        newest_minor: 0,
        unrecognized: vec!["_pq_.x".into()],
    }
    .encode();
    assert_eq!(c.server_step(&v).data, None);
    assert_eq!(c.server(&prompt()), prompt());
    assert_eq!(c.client(&pw("good")), pw(SECRET));
    let n = notice("hello");
    assert_eq!(c.server_step(&n).data, None);
    assert_eq!(
        c.server(&cat(&[auth_ok(), welcome()])),
        cat(&[auth_ok(), welcome()])
    );
}

#[test]
fn server_asking_for_an_unsupported_method_is_08004() {
    for m in [
        BackendMessage::AuthenticationKerberosV5,
        BackendMessage::AuthenticationGss,
        BackendMessage::AuthenticationSspi,
    ] {
        let mut c = Conn::new(Feed::Whole);
        c.client(&alice());
        let got = c.server(&m.encode());
        assert_fatal(&got, "08004");
        assert!(c.s.is_done());
    }
}

#[test]
fn unexpected_server_messages_during_login_end_the_session() {
    // A DataRow instead of an authentication request: not a method the
    // proxy can answer.
    let mut c = Conn::new(Feed::Whole);
    c.client(&alice());
    assert_fatal(&c.server(&data_row(b"x")), "08004");
    assert!(c.s.is_done());
    // AuthenticationOk while the password is being awaited.
    let mut c = Conn::new(Feed::Whole);
    c.client(&alice());
    c.server(&prompt());
    assert_fatal(&c.server(&auth_ok()), "08P01");
    // An authentication request with an unknown code.
    let mut c = Conn::new(Feed::Whole);
    c.client(&alice());
    let bad = BackendMessage::Other {
        tag: b'R',
        body: 99i32.to_be_bytes().to_vec(),
    }
    .encode();
    assert_fatal(&c.server(&bad), "08P01");
}

// ====================================================================
// 2. Bad tokens

#[test]
fn bad_tokens_end_the_session_before_any_password_is_sent() {
    for method in LOGINS {
        for (token, sqlstate, why) in [
            ("expired", "28P01", "token expired"),
            ("forged.jwt.here", "28P01", "bad signature"),
            ("revoked", "28000", "subject revoked"),
        ] {
            each_feed(|feed| {
                let mut c = Conn::new(feed);
                c.client(&alice());
                assert_eq!(c.server(&server_request(method)), prompt());
                // No password of any kind: the server is told to end.
                assert_eq!(c.client(&pw(token)), poke(), "{method:?} {token}");
                assert!(c.s.is_done());
                assert!(c.s.identity().is_none());
                // Whatever the server answers, the client gets our FATAL.
                let answer = if method == Login::Trust {
                    rfq(b'I')
                } else {
                    error(
                        "FATAL",
                        "08P01",
                        "expected password response, got message type 83",
                    )
                };
                let got = c.server(&answer);
                let text = assert_fatal(&got, sqlstate);
                assert!(text.contains(why), "{text}");
                // Then nothing more, either way.
                assert_eq!(c.server(&cat(&[auth_ok(), welcome()])), b"");
                assert_eq!(c.client(&pw("good")), b"");
                // The client saw the prompt and the FATAL, never the held
                // welcome of a trust server.
                let msgs = backend_msgs(&c.to_client);
                assert_eq!(msgs.len(), 2, "{msgs:?}");
                assert!(!contains(&c.to_server, SECRET.as_bytes()));
                assert!(c.warned("ending PostgreSQL session"));
                c
            });
        }
    }
}

#[test]
fn malformed_password_message_is_28p01() {
    let mut c = Conn::new(Feed::Whole);
    c.client(&alice());
    c.server(&prompt());
    // No NUL terminator.
    let bad = FrontendMessage::PasswordMessage {
        data: b"good".to_vec(),
    }
    .encode();
    assert_eq!(c.client(&bad), poke());
    assert_fatal(&c.server(&error("FATAL", "08P01", "x")), "28P01");
}

#[test]
fn anything_but_a_password_while_the_token_is_awaited_is_08p01() {
    for msg in [codec::query("select 1"), sync(), terminate()] {
        let mut c = Conn::new(Feed::Whole);
        c.client(&alice());
        c.server(&cat(&[auth_ok(), welcome()]));
        assert_eq!(c.client(&msg), poke());
        let text = assert_fatal(&c.server(&rfq(b'I')), "08P01");
        assert!(text.contains("expected a password"), "{text}");
        // The held trust welcome never leaks.
        assert_eq!(backend_msgs(&c.to_client).len(), 2);
    }
}

#[test]
fn messages_pipelined_behind_the_token_end_the_session() {
    // The login is not finished when the Query arrives.
    let mut c = Conn::new(Feed::Whole);
    c.client(&alice());
    c.server(&prompt());
    let got = c.client(&cat(&[pw("good"), codec::query("drop table t")]));
    assert_eq!(got, cat(&[pw(SECRET), poke()]));
    assert!(c.s.is_done());
    let text = assert_fatal(&c.server(&cat(&[auth_ok(), welcome()])), "08P01");
    assert!(text.contains("before the login finished"), "{text}");
}

// ====================================================================
// 3. Refused startup parameters

#[test]
fn refused_startup_params_poke_the_server_and_fail_42501() {
    for (k, v) in [
        ("options", "-c role=postgres"),
        ("replication", "database"),
        ("role", "postgres"),
        ("session_authorization", "postgres"),
        ("ROLE", "postgres"),
        ("Options", "-c search_path=evil"),
    ] {
        each_feed(|feed| {
            let mut c = Conn::new(feed);
            let got = c.client(&startup(&[("user", "alice"), (k, v), ("database", "shop")]));
            // A startup for a protocol the server refuses: no login.
            assert_eq!(got, startup_poke(), "{k}");
            assert!(c.s.is_done());
            assert!(c.to_client.is_empty());
            let got = c.server(&error(
                "FATAL",
                "0A000",
                "unsupported frontend protocol 9.0: server supports 3.0 to 3.0",
            ));
            let text = assert_fatal(&got, "42501");
            assert!(text.contains(k), "{text}");
            assert_eq!(c.server(&rfq(b'I')), b"");
            assert_eq!(c.client(&pw("good")), b"");
            c
        });
    }
}

#[test]
fn client_encoding_must_be_ascii_safe() {
    for enc in ["SJIS", "Shift_JIS", "big5", "GBK", "win932", "gb18030"] {
        let mut c = Conn::new(Feed::Whole);
        let got = c.client(&startup(&[("user", "alice"), ("client_encoding", enc)]));
        assert_eq!(got, startup_poke(), "{enc}");
        let text = assert_fatal(&c.server(&error("FATAL", "0A000", "no")), "22021");
        assert!(text.contains(enc), "{text}");
    }
    for enc in ["UTF8", "utf-8", "LATIN1", "SQL_ASCII", "EUC_JP"] {
        let mut c = Conn::new(Feed::Whole);
        let got = c.client(&startup(&[("user", "alice"), ("client_encoding", enc)]));
        assert_eq!(
            got,
            startup(&[
                ("user", "app"),
                ("client_encoding", enc),
                ("database", "alice")
            ]),
            "{enc}"
        );
    }
}

#[test]
fn standard_conforming_strings_must_stay_on() {
    let mut c = Conn::new(Feed::Whole);
    let got = c.client(&startup(&[
        ("user", "alice"),
        ("standard_conforming_strings", "off"),
    ]));
    assert_eq!(got, startup_poke());
    assert_fatal(&c.server(&error("FATAL", "0A000", "no")), "42501");
}

#[test]
fn startup_for_another_protocol_is_refused() {
    for protocol in [0x0002_0000u32, 0x0004_0000, 0x1234_5678] {
        let mut c = Conn::new(Feed::Whole);
        let msg = FrontendMessage::Startup(StartupMessage {
            protocol,
            params: vec![("user".into(), "alice".into())],
        })
        .encode();
        let step = c.client_step(&msg);
        assert!(!step.close);
        assert_eq!(step.data, Some(startup_poke()), "{protocol:#x}");
        assert!(c.s.is_done());
        assert_fatal(&c.server(&error("FATAL", "0A000", "no")), "08P01");
    }
}

// ====================================================================
// 4. Policy not loaded

#[test]
fn policy_not_loaded_is_08004() {
    each_feed(|feed| {
        let mut c = Conn::with(Fake::with(Err("policy not loaded".into())), feed);
        assert_eq!(c.client(&alice()), startup_poke());
        assert!(c.s.is_done());
        let text = assert_fatal(&c.server(&error("FATAL", "0A000", "no")), "08004");
        assert_eq!(text, "pinhole: policy not loaded");
        c
    });
}

// ====================================================================
// 5. Ready: the simple protocol

#[test]
fn allowed_query_and_its_results_pass_unchanged() {
    let mut c = ready(Feed::Whole);
    let q = codec::query("select id from orders");
    assert_eq!(c.client_step(&q), Step::default());
    let answer = cat(&[
        row_desc("id"),
        data_row(b"1"),
        data_row(b"2"),
        complete("SELECT 2"),
        rfq(b'I'),
    ]);
    assert_eq!(c.server_step(&answer), Step::default());
    assert_eq!(c.s.allowed_count(), 1);
    // Allowed decisions are counted, not kept.
    assert!(c.s.take_decisions().is_empty());
}

#[test]
fn allowed_queries_pass_under_any_read_boundaries() {
    each_feed(|feed| {
        let mut c = ready(feed);
        for i in 0..3 {
            let q = codec::query(&format!("select {i}"));
            assert_eq!(c.client(&q), q);
            let big = b"x".repeat(70_000);
            let answer = cat(&[
                row_desc("x"),
                data_row(&big),
                notice("n"),
                complete("SELECT 1"),
                rfq(b'I'),
            ]);
            assert_eq!(c.server(&answer), answer);
        }
        c
    });
}

#[test]
fn denied_query_becomes_a_refusal_block() {
    each_feed(|feed| {
        let mut c = ready(feed);
        let sql = "DROP TABLE orders";
        let got = c.client(&codec::query(sql));
        let msgs = frontend_msgs(&got);
        let [FrontendMessage::Query { sql: sent }] = msgs.as_slice() else {
            panic!("{msgs:?}")
        };
        let msg = refusal_for(sql);
        assert!(sent.starts_with("DO $pinhole$"), "{sent}");
        assert!(sent.contains(&hex(&msg)), "{sent}");
        assert!(!sent.to_ascii_lowercase().contains("drop"), "{sent}");
        assert_eq!(sent, &refusal_block(&msg));
        // The error comes back without its CONTEXT.
        let got = c.server(&cat(&[raised(&msg), rfq(b'I')]));
        assert_eq!(got, cat(&[raised_seen(&msg), rfq(b'I')]));
        let m = &backend_msgs(&got)[0];
        assert_eq!(field(m, b'C'), Some("42501"));
        assert!(field(m, b'W').is_none());
        assert!(field(m, b'M').unwrap().contains("never-drop"));
        // The session goes on.
        let q = codec::query("select 1");
        assert_eq!(c.client(&q), q);
        let answer = cat(&[
            row_desc("x"),
            data_row(b"1"),
            complete("SELECT 1"),
            rfq(b'I'),
        ]);
        assert_eq!(c.server(&answer), answer);
        c
    });
}

#[test]
fn refusals_are_recorded_as_decisions() {
    let mut c = ready(Feed::Whole);
    c.client(&codec::query("drop table t"));
    let d = c.s.take_decisions();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].sql, "drop table t");
    assert_eq!(d[0].decision.effect, Effect::Deny);
    assert_eq!(d[0].decision.rule.as_deref(), Some("never-drop"));
    assert!(c.s.take_decisions().is_empty());
}

#[test]
fn refusal_of_a_review_rule_says_approval_required() {
    let mut c = ready(Feed::Whole);
    let sql = "delete from orders";
    let got = c.client(&codec::query(sql));
    let msg = refusal_for(sql);
    assert!(msg.starts_with("pinhole: approval required: "), "{msg}");
    assert!(msg.contains("deletes-reviewed"), "{msg}");
    assert_eq!(got, codec::query(&refusal_block(&msg)));
    assert_eq!(
        c.server(&cat(&[raised(&msg), rfq(b'I')])),
        cat(&[raised_seen(&msg), rfq(b'I')])
    );
}

#[test]
fn ordinary_server_errors_keep_their_context() {
    let mut c = ready(Feed::Whole);
    c.client(&codec::query("select f()"));
    let e = BackendMessage::ErrorResponse {
        fields: vec![
            (b'S', "ERROR".into()),
            (b'C', "22012".into()),
            (b'M', "division by zero".into()),
            (b'W', "PL/pgSQL function f() line 3 at RETURN".into()),
        ],
    }
    .encode();
    assert_eq!(c.server_step(&cat(&[e, rfq(b'E')])), Step::default());
}

#[test]
fn refusal_block_cannot_be_escaped_by_its_message() {
    let hostile = "x$pinhole$'; END $pinhole$; DROP TABLE t; --\u{e9}\0";
    let block = refusal_block(hostile);
    assert_eq!(block.matches("$pinhole$").count(), 2, "{block}");
    assert!(!block.contains("DROP"));
    assert!(block.contains(&hex(hostile)));
    assert!(block.starts_with("DO $pinhole$BEGIN RAISE EXCEPTION USING ERRCODE = '42501'"));
}

#[test]
fn asynchronous_server_messages_pass_anywhere() {
    let mut c = ready(Feed::Whole);
    let ps = BackendMessage::ParameterStatus {
        name: "TimeZone".into(),
        value: "UTC".into(),
    }
    .encode();
    let n = BackendMessage::NotificationResponse {
        process_id: 1,
        channel: "ch".into(),
        payload: "hi".into(),
    }
    .encode();
    let idle = cat(&[ps.clone(), n.clone(), notice("hello")]);
    assert_eq!(c.server_step(&idle), Step::default());
    // Even in the middle of a refusal's dropped acknowledgements.
    let sql = "drop table t";
    let msg = refusal_for(sql);
    c.client(&cat(&[codec::parse("s", sql), sync()]));
    let got = c.server(&cat(&[
        close_complete(),
        ps.clone(),
        parse_complete(),
        n.clone(),
        bind_complete(),
        notice("x"),
        raised(&msg),
        rfq(b'I'),
    ]));
    assert_eq!(
        got,
        cat(&[ps, n, notice("x"), raised_seen(&msg), rfq(b'I')])
    );
}

#[test]
fn two_queries_in_one_read_are_decided_separately() {
    each_feed(|feed| {
        let mut c = ready(feed);
        let ok = codec::query("select 1");
        let bad = "drop table t";
        let got = c.client(&cat(&[ok.clone(), codec::query(bad)]));
        let msg = refusal_for(bad);
        assert_eq!(got, cat(&[ok, codec::query(&refusal_block(&msg))]));
        let got = c.server(&cat(&[
            row_desc("x"),
            data_row(b"1"),
            complete("SELECT 1"),
            rfq(b'I'),
            raised(&msg),
            rfq(b'I'),
        ]));
        assert_eq!(
            got,
            cat(&[
                row_desc("x"),
                data_row(b"1"),
                complete("SELECT 1"),
                rfq(b'I'),
                raised_seen(&msg),
                rfq(b'I'),
            ])
        );
        c
    });
}

// ====================================================================
// 6. The extended protocol

fn allowed_pipeline(stmt: &str, portal: &str, sql: &str) -> Vec<u8> {
    cat(&[
        codec::parse(stmt, sql),
        codec::bind(portal, stmt),
        describe(TargetKind::Portal, portal),
        codec::execute(portal),
        sync(),
    ])
}

fn allowed_pipeline_answer() -> Vec<u8> {
    cat(&[
        parse_complete(),
        bind_complete(),
        row_desc("x"),
        data_row(b"1"),
        data_row(b"2"),
        complete("SELECT 2"),
        rfq(b'I'),
    ])
}

#[test]
fn extended_allowed_pipeline_passes_unchanged() {
    let mut c = ready(Feed::Whole);
    let p = allowed_pipeline("s1", "p1", "select x from t");
    assert_eq!(c.client_step(&p), Step::default());
    assert_eq!(c.server_step(&allowed_pipeline_answer()), Step::default());
    // Message by message too.
    for m in [
        codec::parse("", "select 1"),
        codec::bind("", ""),
        describe(TargetKind::Portal, ""),
        codec::execute(""),
        sync(),
    ] {
        assert_eq!(c.client_step(&m), Step::default());
    }
    for m in [
        parse_complete(),
        bind_complete(),
        row_desc("x"),
        data_row(b"1"),
        complete("SELECT 1"),
        rfq(b'I'),
    ] {
        assert_eq!(c.server_step(&m), Step::default());
    }
    assert!(!c.warned("lost track"));
}

#[test]
fn extended_allowed_pipeline_under_any_read_boundaries() {
    each_feed(|feed| {
        let mut c = ready(feed);
        for i in 0..3 {
            let p = allowed_pipeline(&format!("s{i}"), "", "select x from t");
            assert_eq!(c.client(&p), p);
            let a = allowed_pipeline_answer();
            assert_eq!(c.server(&a), a);
        }
        assert!(!c.warned("lost track"));
        c
    });
}

/// A session where `s2` was refused at Parse (answered).
fn with_refused_statement(feed: Feed) -> (Conn, String) {
    let mut c = ready(feed);
    let sql = "drop table orders";
    let msg = refusal_for(sql);
    let got = c.client(&cat(&[codec::parse("s2", sql), sync()]));
    assert_eq!(got, cat(&[refusal_extended(&msg), sync()]));
    // CloseComplete, ParseComplete, BindComplete dropped; the error without
    // CONTEXT; the ReadyForQuery of the client's Sync.
    let got = c.server(&cat(&[refusal_extended_answer(&msg), rfq(b'I')]));
    assert_eq!(got, cat(&[raised_seen(&msg), rfq(b'I')]));
    (c, msg)
}

#[test]
fn extended_refused_parse_becomes_a_refusal_block() {
    each_feed(|feed| with_refused_statement(feed).0);
    let (mut c, _) = with_refused_statement(Feed::Whole);
    let d = c.s.take_decisions();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].sql, "drop table orders");
}

#[test]
fn extended_refused_statement_stays_refused_at_bind_and_execute() {
    each_feed(|feed| {
        let (mut c, msg) = with_refused_statement(feed);
        // Bind of the refused statement, then Describe and Execute of its
        // portal, as libpq's PQexecPrepared sends them.
        let got = c.client(&cat(&[
            codec::bind("p2", "s2"),
            describe(TargetKind::Portal, "p2"),
            codec::execute("p2"),
            sync(),
        ]));
        assert_eq!(
            got,
            cat(&[
                refusal_extended(&msg),
                describe(TargetKind::Portal, "p2"),
                refusal_extended(&msg),
                sync(),
            ])
        );
        // The server stops at the first error and skips to the Sync.
        let got = c.server(&cat(&[refusal_extended_answer(&msg), rfq(b'I')]));
        assert_eq!(got, cat(&[raised_seen(&msg), rfq(b'I')]));
        // Execute of the refused portal alone, in a later batch.
        let got = c.client(&cat(&[codec::execute("p2"), sync()]));
        assert_eq!(got, cat(&[refusal_extended(&msg), sync()]));
        let got = c.server(&cat(&[refusal_extended_answer(&msg), rfq(b'E')]));
        assert_eq!(got, cat(&[raised_seen(&msg), rfq(b'E')]));
        assert!(!c.warned("lost track"));
        c
    });
}

#[test]
fn extended_allowed_statement_after_a_refused_one_works() {
    each_feed(|feed| {
        let (mut c, _) = with_refused_statement(feed);
        let p = allowed_pipeline("s3", "p3", "select 3");
        assert_eq!(c.client(&p), p);
        let a = allowed_pipeline_answer();
        assert_eq!(c.server(&a), a);
        // And a refused one again afterwards: acknowledgements still dropped.
        let sql = "drop view v";
        let msg = refusal_for(sql);
        let got = c.client(&cat(&[codec::parse("s4", sql), sync()]));
        assert_eq!(got, cat(&[refusal_extended(&msg), sync()]));
        let got = c.server(&cat(&[refusal_extended_answer(&msg), rfq(b'I')]));
        assert_eq!(got, cat(&[raised_seen(&msg), rfq(b'I')]));
        assert!(!c.warned("lost track"));
        c
    });
}

#[test]
fn extended_refusal_in_the_middle_of_a_pipeline() {
    each_feed(|feed| {
        let mut c = ready(feed);
        let bad = "drop table t";
        let msg = refusal_for(bad);
        let sent = cat(&[
            codec::parse("a", "select 1"),
            codec::bind("pa", "a"),
            codec::execute("pa"),
            codec::parse("b", bad),
            codec::bind("pb", "b"),
            codec::execute("pb"),
            codec::parse("c", "select 3"),
            codec::bind("pc", "c"),
            codec::execute("pc"),
            sync(),
        ]);
        let got = c.client(&sent);
        assert_eq!(
            got,
            cat(&[
                codec::parse("a", "select 1"),
                codec::bind("pa", "a"),
                codec::execute("pa"),
                refusal_extended(&msg),
                refusal_extended(&msg),
                refusal_extended(&msg),
                codec::parse("c", "select 3"),
                codec::bind("pc", "c"),
                codec::execute("pc"),
                sync(),
            ])
        );
        // The first statement runs, the refusal raises, the server skips
        // everything up to the Sync.
        let got = c.server(&cat(&[
            parse_complete(),
            bind_complete(),
            data_row(b"1"),
            complete("SELECT 1"),
            refusal_extended_answer(&msg),
            rfq(b'I'),
        ]));
        assert_eq!(
            got,
            cat(&[
                parse_complete(),
                bind_complete(),
                data_row(b"1"),
                complete("SELECT 1"),
                raised_seen(&msg),
                rfq(b'I'),
            ])
        );
        // Tracking is still right: a later refusal's acknowledgements are
        // dropped, an allowed pipeline passes.
        let a = allowed_pipeline("d", "pd", "select 4");
        assert_eq!(c.client(&a), a);
        assert_eq!(
            c.server(&allowed_pipeline_answer()),
            allowed_pipeline_answer()
        );
        c.client(&cat(&[codec::parse("e", bad), sync()]));
        let got = c.server(&cat(&[refusal_extended_answer(&msg), rfq(b'I')]));
        assert_eq!(got, cat(&[raised_seen(&msg), rfq(b'I')]));
        assert!(!c.warned("lost track"));
        c
    });
}

#[test]
fn extended_server_error_mid_pipeline_keeps_tracking_consistent() {
    each_feed(|feed| {
        let mut c = ready(feed);
        let bad = "drop table t";
        let msg = refusal_for(bad);
        // An allowed statement fails at Execute; a refusal and more were
        // queued behind it, then a second batch.
        let sent = cat(&[
            codec::parse("a", "select 1/0"),
            codec::bind("pa", "a"),
            codec::execute("pa"),
            codec::parse("b", bad),
            codec::bind("pb", "b"),
            codec::execute("pb"),
            sync(),
            codec::parse("c", bad),
            sync(),
        ]);
        c.client(&sent);
        let div = BackendMessage::ErrorResponse {
            fields: vec![
                (b'S', "ERROR".into()),
                (b'C', "22012".into()),
                (b'M', "division by zero".into()),
                (b'W', "SQL function".into()),
            ],
        }
        .encode();
        let got = c.server(&cat(&[
            parse_complete(),
            bind_complete(),
            div.clone(),
            rfq(b'I'),
            refusal_extended_answer(&msg),
            rfq(b'I'),
        ]));
        assert_eq!(
            got,
            cat(&[
                parse_complete(),
                bind_complete(),
                div.clone(),
                rfq(b'I'),
                raised_seen(&msg),
                rfq(b'I'),
            ])
        );
        // A Parse error (no ParseComplete at all).
        c.client(&cat(&[
            codec::parse("x", "selec 1"),
            codec::bind("px", "x"),
            codec::execute("px"),
            sync(),
        ]));
        let syntax = error("ERROR", "42601", "syntax error at or near \"selec\"");
        assert_eq!(
            c.server(&cat(&[syntax.clone(), rfq(b'I')])),
            cat(&[syntax, rfq(b'I')])
        );
        // Still in step.
        let a = allowed_pipeline("d", "pd", "select 4");
        assert_eq!(c.client(&a), a);
        assert_eq!(
            c.server(&allowed_pipeline_answer()),
            allowed_pipeline_answer()
        );
        c.client(&cat(&[codec::parse("e", bad), sync()]));
        assert_eq!(
            c.server(&cat(&[refusal_extended_answer(&msg), rfq(b'I')])),
            cat(&[raised_seen(&msg), rfq(b'I')])
        );
        assert!(!c.warned("lost track"));
        c
    });
}

#[test]
fn extended_close_forgets_statements_and_portals() {
    let (mut c, msg) = with_refused_statement(Feed::Whole);
    // A refused portal, answered.
    c.client(&cat(&[codec::bind("p2", "s2"), sync()]));
    c.server(&cat(&[refusal_extended_answer(&msg), rfq(b'I')]));
    // Close of both: forwarded as is.
    let close = cat(&[
        codec::close(TargetKind::Statement, "s2"),
        codec::close(TargetKind::Portal, "p2"),
        sync(),
    ]);
    assert_eq!(c.client_step(&close), Step::default());
    let answer = cat(&[close_complete(), close_complete(), rfq(b'I')]);
    assert_eq!(c.server_step(&answer), Step::default());
    // The names are unknown now: the server decides (and refuses them).
    let again = cat(&[codec::bind("p9", "s2"), codec::execute("p2"), sync()]);
    assert_eq!(c.client_step(&again), Step::default());
    let e = error("ERROR", "26000", "prepared statement \"s2\" does not exist");
    assert_eq!(c.server_step(&cat(&[e, rfq(b'I')])), Step::default());
    assert!(!c.warned("lost track"));
}

#[test]
fn extended_describe_statement_and_row_limits() {
    each_feed(|feed| {
        let mut c = ready(feed);
        let sent = cat(&[
            codec::parse("s", "select $1::int"),
            describe(TargetKind::Statement, "s"),
            flush(),
            codec::bind("p", "s"),
            execute_rows("p", 1),
            execute_rows("p", 1),
            sync(),
        ]);
        assert_eq!(c.client(&sent), sent);
        let answer = cat(&[
            parse_complete(),
            BackendMessage::ParameterDescription { types: vec![23] }.encode(),
            row_desc("int4"),
            bind_complete(),
            data_row(b"1"),
            BackendMessage::PortalSuspended.encode(),
            complete("SELECT 1"),
            rfq(b'I'),
        ]);
        assert_eq!(c.server(&answer), answer);
        // A statement returning nothing: NoData; an empty query.
        let sent = cat(&[
            codec::parse("n", "set x = 1"),
            describe(TargetKind::Statement, "n"),
            codec::parse("", ""),
            codec::bind("", ""),
            codec::execute(""),
            sync(),
        ]);
        assert_eq!(c.client(&sent), sent);
        let answer = cat(&[
            parse_complete(),
            BackendMessage::ParameterDescription { types: vec![] }.encode(),
            BackendMessage::NoData.encode(),
            parse_complete(),
            bind_complete(),
            BackendMessage::EmptyQueryResponse.encode(),
            rfq(b'I'),
        ]);
        assert_eq!(c.server(&answer), answer);
        // Tracking still right.
        let bad = "drop table t";
        let msg = refusal_for(bad);
        c.client(&cat(&[codec::parse("e", bad), sync()]));
        assert_eq!(
            c.server(&cat(&[refusal_extended_answer(&msg), rfq(b'I')])),
            cat(&[raised_seen(&msg), rfq(b'I')])
        );
        assert!(!c.warned("lost track"));
        c
    });
}

#[test]
fn extended_unnamed_statement_refusal_does_not_touch_the_servers_one() {
    let mut c = ready(Feed::Whole);
    // An allowed unnamed statement, then a refused one under the same
    // (empty) name: the refused one never reaches the server, and the
    // unnamed statement is refused at Bind.
    c.client(&cat(&[codec::parse("", "select 1"), sync()]));
    c.server(&cat(&[parse_complete(), rfq(b'I')]));
    let bad = "drop table t";
    let msg = refusal_for(bad);
    let got = c.client(&cat(&[
        codec::parse("", bad),
        codec::bind("", ""),
        codec::execute(""),
        sync(),
    ]));
    assert_eq!(
        got,
        cat(&[
            refusal_extended(&msg),
            refusal_extended(&msg),
            refusal_extended(&msg),
            sync()
        ])
    );
    assert!(!contains(&got, b"drop table t"));
}

#[test]
fn unexpected_server_answers_lose_track_but_still_pass() {
    let mut c = ready(Feed::Whole);
    c.client(&cat(&[codec::parse("s", "select 1"), sync()]));
    // BindComplete where a ParseComplete is owed.
    let odd = cat(&[bind_complete(), rfq(b'I')]);
    assert_eq!(c.server_step(&odd), Step::default());
    assert!(c.warned("lost track"));
    // An unknown backend message type with nothing owed is forwarded.
    let other = BackendMessage::Other {
        tag: b'x',
        body: b"abc".to_vec(),
    }
    .encode();
    assert_eq!(c.server_step(&other), Step::default());
    // Refusals keep working (their acknowledgements now reach the client).
    let bad = "drop table t";
    let msg = refusal_for(bad);
    let got = c.client(&cat(&[codec::parse("e", bad), sync()]));
    assert_eq!(got, cat(&[refusal_extended(&msg), sync()]));
}

/// libpq runs an extended-protocol `COPY ... FROM STDIN` as Parse, Bind,
/// Describe, Execute, Sync, then CopyData..., CopyDone, Sync
/// (pqEndcopy3). The server ignores a Sync received in copy-in mode
/// ("The backend will ignore Flush and Sync messages received during
/// copy-in mode"), so two Syncs get one ReadyForQuery.
#[test]
fn extended_copy_in_with_libpq_syncs_keeps_tracking() {
    let mut c = ready(Feed::Whole);
    let sql = "COPY t FROM STDIN";
    let sent = cat(&[
        codec::parse("", sql),
        codec::bind("", ""),
        describe(TargetKind::Portal, ""),
        codec::execute(""),
        sync(),
    ]);
    assert_eq!(c.client(&sent), sent);
    let got = c.server(&cat(&[
        parse_complete(),
        bind_complete(),
        BackendMessage::NoData.encode(),
        copy_in_response(),
    ]));
    assert_eq!(backend_msgs(&got).len(), 4);
    let data = cat(&[copy_data(b"1\tone\n"), copy_done(), sync()]);
    assert_eq!(c.client(&data), data);
    c.server(&cat(&[complete("COPY 1"), rfq(b'I')]));
    // The next statement and a refusal.
    let q = codec::query("select 1");
    assert_eq!(c.client(&q), q);
    let answer = cat(&[
        row_desc("x"),
        data_row(b"1"),
        complete("SELECT 1"),
        rfq(b'I'),
    ]);
    assert_eq!(c.server(&answer), answer);
    let bad = "drop table t";
    let msg = refusal_for(bad);
    c.client(&cat(&[codec::parse("e", bad), sync()]));
    assert_eq!(
        c.server(&cat(&[refusal_extended_answer(&msg), rfq(b'I')])),
        cat(&[raised_seen(&msg), rfq(b'I')]),
        "the refusal's acknowledgements reached the client"
    );
    assert!(!c.warned("lost track"));
}

// ====================================================================
// 7. COPY

#[test]
fn copy_data_without_an_allowed_copy_is_dropped() {
    each_feed(|feed| {
        let mut c = ready(feed);
        let junk = cat(&[copy_data(b"evil"), copy_done(), copy_fail()]);
        assert_eq!(c.client(&junk), b"");
        // Around a normal query.
        let q = codec::query("select 1");
        let got = c.client(&cat(&[copy_data(b"x"), q.clone(), copy_data(b"y")]));
        assert_eq!(got, q);
        c
    });
}

#[test]
fn copy_from_stdin_data_flows_when_allowed_and_stops_after() {
    each_feed(|feed| {
        let mut c = ready(feed);
        let q = codec::query("COPY t FROM STDIN");
        assert_eq!(c.client(&q), q);
        let g = copy_in_response();
        assert_eq!(c.server(&g), g);
        let big = b"r".repeat(100_000);
        let data = cat(&[copy_data(b"1\tone\n"), copy_data(&big), copy_done()]);
        assert_eq!(c.client(&data), data);
        let done = cat(&[complete("COPY 2"), rfq(b'I')]);
        assert_eq!(c.server(&done), done);
        // COPY is over: CopyData is dropped again.
        assert_eq!(c.client(&copy_data(b"late")), b"");
        c
    });
}

#[test]
fn copy_data_passes_without_copying_when_allowed() {
    let mut c = ready(Feed::Whole);
    c.client(&codec::query("copy t from stdin"));
    c.server(&copy_in_response());
    let data = cat(&[copy_data(b"a"), copy_data(b"b"), copy_fail()]);
    assert_eq!(c.client_step(&data), Step::default());
    // The server's error ends the COPY.
    c.server(&cat(&[
        error("ERROR", "57014", "COPY from stdin failed"),
        rfq(b'I'),
    ]));
    assert_eq!(c.client_step(&copy_data(b"x")).data, Some(Vec::new()));
}

#[test]
fn copy_of_a_refused_statement_never_opens() {
    let mut c = ready(Feed::Whole);
    let sql = "copy t from stdin; drop table t";
    let got = c.client(&codec::query(sql));
    assert_eq!(got, codec::query(&refusal_block(&refusal_for(sql))));
    assert_eq!(c.client(&copy_data(b"x")), b"");
}

#[test]
fn copy_from_stdin_in_the_extended_protocol() {
    let mut c = ready(Feed::Whole);
    c.client(&cat(&[codec::parse("cp", "copy t from stdin"), sync()]));
    c.server(&cat(&[parse_complete(), rfq(b'I')]));
    // Bound but not executed: no data yet.
    c.client(&cat(&[codec::bind("pc", "cp"), flush()]));
    c.server(&bind_complete());
    assert_eq!(c.client(&copy_data(b"early")), b"");
    c.client(&cat(&[codec::execute("pc"), flush()]));
    c.server(&copy_in_response());
    let data = cat(&[copy_data(b"1\n"), copy_done()]);
    assert_eq!(c.client(&data), data);
    c.server(&complete("COPY 1"));
    assert_eq!(c.client(&copy_data(b"late")), b"");
}

// ====================================================================
// 8. Identity recheck

#[test]
fn expiry_mid_session_ends_it() {
    each_feed(|feed| {
        let mut c = ready(feed);
        let q = codec::query("select 1");
        assert_eq!(c.client(&q), q);
        c.server(&cat(&[
            row_desc("x"),
            data_row(b"1"),
            complete("SELECT 1"),
            rfq(b'I'),
        ]));
        let before = c.to_client.len();
        c.now = EXP;
        // The next statement: the server is told to end.
        assert_eq!(c.client(&cat(&[q.clone(), q.clone()])), poke());
        assert!(c.s.is_done());
        // Its answer to the Sync becomes one FATAL.
        let text = assert_fatal(&c.server(&rfq(b'I')), "28000");
        assert!(text.contains("expired"), "{text}");
        // Everything after is dropped, both ways.
        assert_eq!(c.server(&cat(&[rfq(b'I'), notice("bye")])), b"");
        assert_eq!(c.client(&q), b"");
        assert_eq!(c.client(&terminate()), b"");
        assert_eq!(backend_msgs(&c.to_client[before..]).len(), 1);
        assert!(c.warned("expired"));
        c
    });
}

#[test]
fn expiry_is_checked_at_parse_execute_and_function_call() {
    for msg in [
        codec::parse("s", "select 1"),
        codec::execute(""),
        function_call(42),
    ] {
        let mut c = ready(Feed::Whole);
        c.now = EXP + 1;
        assert_eq!(c.client(&cat(&[msg, sync()])), poke());
        let text = assert_fatal(&c.server(&rfq(b'I')), "28000");
        assert!(text.contains("expired"), "{text}");
    }
}

#[test]
fn revocation_mid_session_ends_it() {
    let mut c = ready(Feed::Whole);
    c.a.revoked.set(true);
    assert_eq!(c.client(&codec::query("select 1")), poke());
    let text = assert_fatal(&c.server(&rfq(b'I')), "28000");
    assert!(text.contains("access refused"), "{text}");
}

/// A session ended while the server is streaming a result to the client:
/// the client must not get the FATAL in the middle of a message.
#[test]
fn doom_while_a_result_streams_keeps_client_framing() {
    let mut c = ready(Feed::Whole);
    c.client(&codec::query("select big"));
    let row = data_row(&b"z".repeat(10_000));
    let (head, tail) = row.split_at(3000);
    c.server(&cat(&[row_desc("x"), head.to_vec()]));
    // A pipelined statement after expiry dooms the session.
    c.now = EXP;
    assert_eq!(c.client(&codec::query("select 2")), poke());
    c.server(&cat(&[
        tail.to_vec(),
        complete("SELECT 1"),
        rfq(b'I'),
        rfq(b'I'),
    ]));
    // Whatever the client got must be whole messages, ending with the
    // FATAL.
    let msgs = backend_msgs(&c.to_client);
    let last = msgs.last().unwrap();
    assert_eq!(field(last, b'C'), Some("28000"));
}

// ====================================================================
// 9. FunctionCall

#[test]
fn function_call_is_refused_with_a_query() {
    each_feed(|feed| {
        let mut c = ready(feed);
        let got = c.client(&function_call(1234));
        let msg = refusal_message(&Fake::new().decide_fastpath(1234));
        assert!(msg.contains("no-fastpath"));
        assert_eq!(got, codec::query(&refusal_block(&msg)));
        let got = c.server(&cat(&[raised(&msg), rfq(b'I')]));
        assert_eq!(got, cat(&[raised_seen(&msg), rfq(b'I')]));
        c
    });
    let mut c = ready(Feed::Whole);
    c.client(&function_call(7));
    let d = c.s.take_decisions();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].sql, "<function call oid 7>");
}

// ====================================================================
// 10. Protocol violations

#[test]
fn garbage_instead_of_a_startup_closes() {
    for garbage in [
        b"GET / HTTP/1.1\r\nHost: db\r\n\r\n".to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        vec![0, 0, 0, 2],
        vec![0xff, 0xff, 0xff, 0xff],
        vec![0x7f, 0xff, 0xff, 0xff, 0],
    ] {
        let mut c = Conn::new(Feed::Whole);
        let step = c.client_step(&garbage);
        assert!(step.close, "{garbage:?}");
        assert_eq!(step.data, Some(Vec::new()));
        assert!(c.s.is_done());
        assert!(c.warned("broke the protocol"));
        // Anything more is dropped.
        assert_eq!(c.client_step(&alice()).data, Some(Vec::new()));
    }
}

#[test]
fn short_untyped_messages_are_refused() {
    // A length-4 or length-8 untyped message that is no known request.
    for m in [vec![0, 0, 0, 4], vec![0, 0, 0, 8, 0, 0, 0, 0]] {
        let mut c = Conn::new(Feed::Whole);
        let step = c.client_step(&m);
        assert!(step.close || c.s.is_done(), "{m:?}");
        if !step.close {
            assert_eq!(step.data, Some(startup_poke()));
            assert_fatal(&c.server(&error("FATAL", "08P01", "x")), "08P01");
        }
    }
}

#[test]
fn bad_typed_lengths_close_the_connection() {
    for bad in [
        b"Q\0\0\0\x02".to_vec(),
        b"Q\0\0\0\0".to_vec(),
        b"Q\xff\xff\xff\xff".to_vec(),
        b"Q\x7f\xff\xff\xff".to_vec(),
        b"Q\x7f\xff\xff\xfbselect 1".to_vec(),
        b"p\0\x10\0\x01".to_vec(),
    ] {
        for at_login in [false, true] {
            let mut c = if at_login {
                let mut c = Conn::new(Feed::Whole);
                c.client(&alice());
                c.server(&prompt());
                c
            } else {
                ready(Feed::Whole)
            };
            let step = c.client_step(&bad);
            assert!(step.close, "{bad:?} login={at_login}");
            assert_eq!(step.data, Some(Vec::new()));
            assert!(c.s.is_done());
        }
    }
    // Split across reads.
    let mut c = ready(Feed::Bytes);
    c.client(b"Q\x7f\xff\xff\xff");
    assert!(c.closed);
}

#[test]
fn unknown_message_types_after_startup_close() {
    for t in [b'Z', b'x', 0u8, 0xff, b'R', b'A'] {
        let mut c = ready(Feed::Whole);
        let m = [t, 0, 0, 0, 4];
        let step = c.client_step(&m);
        assert!(step.close, "{t:#x}");
        assert!(c.s.is_done());
    }
}

#[test]
fn password_message_after_login_is_08p01() {
    each_feed(|feed| {
        let mut c = ready(feed);
        assert_eq!(c.client(&pw("good")), poke());
        assert!(c.s.is_done());
        assert!(!c.closed);
        assert_fatal(&c.server(&rfq(b'I')), "08P01");
        c
    });
}

#[test]
fn malformed_messages_after_login_are_08p01() {
    for bad in [
        // Query without its NUL.
        b"Q\0\0\0\x0cselect 1".to_vec(),
        // Query with trailing bytes after the NUL.
        b"Q\0\0\0\x0fselect 1\0xy".to_vec(),
        // Query that is not UTF-8.
        b"Q\0\0\0\x07\xff\xfe\0".to_vec(),
        // Execute without its row count.
        b"E\0\0\0\x05\0".to_vec(),
        // Describe of an unknown kind.
        b"D\0\0\0\x07Xs\0".to_vec(),
        // Close with no body.
        b"C\0\0\0\x04".to_vec(),
        // Parse with no SQL.
        b"P\0\0\0\x06s\0".to_vec(),
        // FunctionCall cut short.
        b"F\0\0\0\x06\0\0".to_vec(),
    ] {
        let mut c = ready(Feed::Whole);
        let step = c.client_step(&bad);
        assert!(!step.close, "{bad:?}");
        assert_eq!(step.data, Some(poke()), "{bad:?}");
        assert_fatal(&c.server(&rfq(b'I')), "08P01");
    }
}

#[test]
fn bytes_after_terminate_are_dropped() {
    each_feed(|feed| {
        let mut c = ready(feed);
        let got = c.client(&cat(&[terminate(), codec::query("drop table t"), sync()]));
        assert_eq!(got, terminate());
        assert!(c.s.is_done());
        assert_eq!(c.client(&codec::query("select 1")), b"");
        c
    });
}

#[test]
fn bad_server_lengths_close_the_connection() {
    for bad in [
        b"Z\0\0\0\x02".to_vec(),
        b"D\x7f\xff\xff\xff".to_vec(),
        b"R\xff\xff\xff\xff".to_vec(),
    ] {
        for logged_in in [false, true] {
            let mut c = if logged_in {
                ready(Feed::Whole)
            } else {
                let mut c = Conn::new(Feed::Whole);
                c.client(&alice());
                c
            };
            let step = c.server_step(&bad);
            assert!(step.close, "{bad:?}");
            assert_eq!(step.data, Some(Vec::new()));
        }
    }
}

// ====================================================================
// 11. SSLRequest, GSSENCRequest, CancelRequest

#[test]
fn ssl_request_refused_by_the_server_then_login() {
    for login_method in LOGINS {
        each_feed(|feed| {
            let mut c = Conn::new(feed);
            let ssl = FrontendMessage::SslRequest.encode();
            assert_eq!(c.client(&ssl), ssl);
            assert_eq!(c.server(b"N"), b"N");
            assert_eq!(c.client(&alice()), alice_upstream());
            let before = c.to_client.len();
            do_login(&mut c, login_method);
            assert_eq!(before, 1);
            c
        });
    }
    let mut c = Conn::new(Feed::Whole);
    let ssl = FrontendMessage::SslRequest.encode();
    assert_eq!(c.client_step(&ssl), Step::default());
    assert_eq!(c.server_step(b"N"), Step::default());
}

#[test]
fn ssl_or_gss_accepted_by_the_server_ends_the_session() {
    for (req, answer) in [
        (FrontendMessage::SslRequest, b'S'),
        (FrontendMessage::GssEncRequest, b'G'),
    ] {
        each_feed(|feed| {
            let mut c = Conn::new(feed);
            c.client(&req.encode());
            let got = c.server(&[answer]);
            let text = assert_fatal(&got, "08004");
            assert!(text.contains("TLS"), "{text}");
            assert!(c.s.is_done());
            // The TLS handshake that would follow goes nowhere useful.
            assert_eq!(c.server(b"\x16\x03\x03\x00\x10handshake-bytes"), b"");
            assert_eq!(c.client(b"\x16\x03\x01\x00\x05hello"), poke());
            c
        });
    }
    // GSS refused: go on.
    let mut c = Conn::new(Feed::Whole);
    c.client(&FrontendMessage::GssEncRequest.encode());
    assert_eq!(c.server(b"N"), b"N");
    assert_eq!(c.client(&alice()), alice_upstream());
}

#[test]
fn cancel_request_is_forwarded_and_ends_the_connection() {
    let mut c = Conn::new(Feed::Whole);
    let cancel = FrontendMessage::CancelRequest {
        process_id: 4242,
        secret_key: vec![1, 2, 3, 4],
    }
    .encode();
    assert_eq!(c.client_step(&cancel), Step::default());
    assert!(c.s.is_done());
    assert_eq!(c.client(&alice()), b"");
    // Followed by more in the same read.
    let mut c = Conn::new(Feed::Whole);
    assert_eq!(c.client(&cat(&[cancel.clone(), alice()])), cancel);
}

// ====================================================================
// More

#[test]
fn policy_unloaded_between_startup_and_token_is_08004() {
    let mut c = Conn::new(Feed::Whole);
    c.client(&alice());
    c.server(&prompt());
    c.a.unloaded.set(true);
    assert_eq!(c.client(&pw("good")), poke());
    let text = assert_fatal(&c.server(&error("FATAL", "08P01", "x")), "08004");
    assert_eq!(text, "pinhole: policy unloaded");
}

#[test]
fn allowed_function_call_is_tracked() {
    let mut c = ready(Feed::Whole);
    c.a.allow_fastpath.set(true);
    let f = function_call(1234);
    assert_eq!(c.client_step(&f), Step::default());
    let answer = cat(&[
        BackendMessage::FunctionCallResponse {
            value: Some(b"42".to_vec()),
        }
        .encode(),
        rfq(b'I'),
    ]);
    assert_eq!(c.server_step(&answer), Step::default());
    // Still in step with the server's answers.
    let bad = "drop table t";
    let msg = refusal_for(bad);
    c.client(&cat(&[codec::parse("e", bad), sync()]));
    assert_eq!(
        c.server(&cat(&[refusal_extended_answer(&msg), rfq(b'I')])),
        cat(&[raised_seen(&msg), rfq(b'I')])
    );
    assert!(!c.warned("lost track"));
}

#[test]
fn startup_minor_protocol_versions_pass() {
    let mut c = Conn::new(Feed::Whole);
    let msg = FrontendMessage::Startup(StartupMessage {
        protocol: 0x0003_0002,
        params: vec![
            ("user".into(), "alice".into()),
            ("database".into(), "shop".into()),
        ],
    })
    .encode();
    let got = c.client(&msg);
    let msgs = frontend_msgs_from(&got, FrontendPhase::Startup);
    let [FrontendMessage::Startup(s)] = msgs.as_slice() else {
        panic!("{msgs:?}")
    };
    assert_eq!(s.protocol, 0x0003_0002);
    assert_eq!(s.param("user"), Some("app"));
}

/// The operator's log lines carry client-chosen text (startup user name,
/// parameter names): a line break in it forges log lines.
#[test]
fn client_text_cannot_forge_log_lines() {
    let forged = "alice\npinhole: PostgreSQL login of corp:admin (roles [admin])";
    let mut c = Conn::new(Feed::Whole);
    c.client(&startup(&[
        ("user", forged),
        ("x\r\npinhole: decision=allow", "1"),
        ("database", "shop"),
    ]));
    c.server(&prompt());
    c.client(&pw("forged-token"));
    assert!(!c.events.is_empty());
    for e in &c.events {
        assert!(
            !e.message.chars().any(char::is_control),
            "control character in a log line: {:?}",
            e.message
        );
    }
}

// ====================================================================
// Settings the server reports (ParameterStatus)

fn parameter_status(name: &str, value: &str) -> Vec<u8> {
    BackendMessage::ParameterStatus {
        name: name.into(),
        value: value.into(),
    }
    .encode()
}

/// A welcome reporting `name = value`.
fn welcome_with(name: &str, value: &str) -> Vec<u8> {
    cat(&[
        parameter_status("server_version", "16.4"),
        parameter_status(name, value),
        BackendMessage::BackendKeyData {
            process_id: 4242,
            secret_key: vec![1, 2, 3, 4],
        }
        .encode(),
        rfq(b'I'),
    ])
}

/// The client-bound bytes end with one FATAL `sqlstate` and hold no
/// ReadyForQuery (the client never got to send a statement).
fn assert_ended_before_ready(c: &Conn, sqlstate: &str) {
    let msgs = backend_msgs(&c.to_client);
    assert!(
        !msgs
            .iter()
            .any(|m| matches!(m, BackendMessage::ReadyForQuery { .. })),
        "the client got a ReadyForQuery: {msgs:?}"
    );
    let last = msgs.last().expect("messages");
    assert_eq!(field(last, b'S'), Some("FATAL"), "{last:?}");
    assert_eq!(field(last, b'C'), Some(sqlstate), "{last:?}");
    assert!(c.s.is_done());
}

#[test]
fn unsafe_settings_in_the_welcome_end_the_session() {
    for method in PASSWORD_LOGINS {
        for (name, value) in [
            ("client_encoding", "SJIS"),
            ("standard_conforming_strings", "off"),
        ] {
            let mut c = Conn::new(Feed::Whole);
            c.client(&alice());
            c.server(&server_request(method));
            let first = c.client(&pw("good"));
            let fin = if method == Login::Scram {
                let server = scram_server_from(&first);
                c.server(&sasl_continue(&server.server_first));
                let second = c.client(&pw("good"));
                let f = server
                    .finish(&String::from_utf8(password_data(&second)).unwrap())
                    .unwrap();
                sasl_final(&f)
            } else {
                Vec::new()
            };
            c.server(&cat(&[fin, auth_ok(), welcome_with(name, value)]));
            assert_ended_before_ready(&c, "08004");
            let text = field(backend_msgs(&c.to_client).last().unwrap(), b'M')
                .unwrap()
                .to_owned();
            assert!(text.contains(name), "{text}");
            // The server is told to end at the client's next message.
            assert_eq!(c.client(&codec::query("select 1")), poke());
        }
    }
}

#[test]
fn safe_settings_in_the_welcome_pass() {
    for (name, value) in [
        ("client_encoding", "UTF8"),
        ("standard_conforming_strings", "on"),
        ("DateStyle", "ISO, MDY"),
    ] {
        let mut c = Conn::new(Feed::Whole);
        c.client(&alice());
        c.server(&prompt());
        c.client(&pw("good"));
        let w = cat(&[auth_ok(), welcome_with(name, value)]);
        assert_eq!(c.server(&w), w);
        assert!(!c.s.is_done());
    }
}

/// A trust server's welcome is held until the token is verified, then
/// released whole: it must be checked like any other welcome.
#[test]
fn unsafe_settings_in_a_held_trust_welcome_end_the_session() {
    for (name, value) in [
        ("client_encoding", "SJIS"),
        ("standard_conforming_strings", "off"),
    ] {
        let mut c = Conn::new(Feed::Whole);
        c.client(&alice());
        c.server(&cat(&[auth_ok(), welcome_with(name, value)]));
        c.client(&pw("good"));
        c.server(&rfq(b'I'));
        assert_ended_before_ready(&c, "08004");
    }
}

#[test]
fn unsafe_settings_reported_after_login_end_the_session() {
    each_feed(|feed| {
        let mut c = ready(feed);
        c.client(&codec::query("select 1"));
        let before = c.to_client.len();
        // However it happened, the server now reads SQL differently.
        let got = c.server(&cat(&[
            row_desc("x"),
            parameter_status("client_encoding", "BIG5"),
            data_row(b"1"),
            complete("SELECT 1"),
            rfq(b'I'),
        ]));
        let msgs = backend_msgs(&got);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(matches!(msgs[0], BackendMessage::RowDescription { .. }));
        assert_fatal(&c.to_client[before + row_desc("x").len()..], "08004");
        assert!(c.s.is_done());
        // Nothing more reaches either side but the poke.
        assert_eq!(c.server(&rfq(b'I')), b"");
        assert_eq!(c.client(&codec::query("select 2")), poke());
        assert_eq!(c.client(&codec::query("select 3")), b"");
        c
    });
    // Safe reports pass unchanged, whole.
    let mut c = ready(Feed::Whole);
    let ps = cat(&[
        parameter_status("client_encoding", "UTF8"),
        parameter_status("standard_conforming_strings", "on"),
        parameter_status("TimeZone", "UTC"),
    ]);
    assert_eq!(c.server_step(&ps), Step::default());
    assert!(!c.s.is_done());
}

#[test]
fn gssenc_request_is_asked_as_ssl_request() {
    let mut c = Conn::new(Feed::Whole);
    assert_eq!(
        c.client(&FrontendMessage::GssEncRequest.encode()),
        FrontendMessage::SslRequest.encode()
    );
    assert_eq!(c.server(b"N"), b"N");
    assert_eq!(c.client(&alice()), alice_upstream());
}

// ====================================================================
// 12. Property tests: random input never panics, invariants hold

/// Feeds `events` (client: true) with random read boundaries; stops when a
/// read asks to close.
fn run_events(c: &mut Conn, events: &[(bool, Vec<u8>)], expire_at: Option<usize>) {
    for (i, (to_server, bytes)) in events.iter().enumerate() {
        if expire_at == Some(i) {
            c.now = EXP;
        }
        if *to_server {
            c.client(bytes);
        } else {
            c.server(bytes);
        }
        if c.closed {
            break;
        }
    }
}

/// Frames of a server-bound stream as the server would cut them (untyped
/// until the startup): `(type, whole frame)`, up to the first undecodable
/// or incomplete one.
fn server_view(mut b: &[u8]) -> Vec<(Option<u8>, Vec<u8>)> {
    let mut v = Vec::new();
    let mut phase = FrontendPhase::Startup;
    loop {
        match phase {
            FrontendPhase::Startup => {
                let Some(len) = b.get(..4) else { break };
                let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
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
                let len = u32::from_be_bytes(h[1..5].try_into().unwrap()) as usize;
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

/// What must hold whatever the peers sent.
fn check_invariants(c: &Conn) {
    let frames = server_view(&c.to_server);
    let logged_in = c.s.identity().is_some();
    for (tag, frame) in &frames {
        match tag {
            Some(b'Q') => {
                if let Some(sql) = codec::query_view(frame) {
                    let lower = sql.to_ascii_lowercase();
                    if lower.contains("drop") || lower.contains("delete") {
                        assert!(
                            sql.starts_with("DO $pinhole$"),
                            "refused SQL reached the server: {sql}"
                        );
                    }
                }
            }
            Some(b'P') => {
                if let Some((_, sql)) = codec::parse_view(frame) {
                    let lower = sql.to_ascii_lowercase();
                    if lower.contains("drop") || lower.contains("delete") {
                        assert!(
                            sql.starts_with("DO $pinhole$"),
                            "refused SQL reached the server: {sql}"
                        );
                    }
                }
            }
            Some(b'F') => panic!("a FunctionCall reached the server"),
            _ => {}
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
    // notices (never a held trust welcome). Skipped after SSL answers
    // (one unframed byte) and cancel requests (the server's bytes pass).
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

/// A whole session, as `(client sends?, bytes)`.
fn transcript(login: Login) -> Vec<(bool, Vec<u8>)> {
    let bad = "drop table t";
    let msg = refusal_for(bad);
    let mut t = vec![(true, alice()), (false, server_request(login))];
    match login {
        Login::Trust => {
            t.push((true, pw("good")));
            t.push((false, rfq(b'I')));
        }
        _ => {
            t.push((true, pw("good")));
            t.push((false, cat(&[auth_ok(), welcome()])));
        }
    }
    t.extend([
        (true, codec::query("select 1")),
        (
            false,
            cat(&[
                row_desc("x"),
                data_row(b"1"),
                complete("SELECT 1"),
                rfq(b'I'),
            ]),
        ),
        (true, codec::query(bad)),
        (false, cat(&[raised(&msg), rfq(b'I')])),
        (
            true,
            cat(&[
                codec::parse("s1", "select 1"),
                codec::bind("p1", "s1"),
                describe(TargetKind::Portal, "p1"),
                codec::execute("p1"),
                codec::parse("s2", bad),
                codec::bind("p2", "s2"),
                codec::execute("p2"),
                sync(),
            ]),
        ),
        (
            false,
            cat(&[
                parse_complete(),
                bind_complete(),
                row_desc("x"),
                data_row(b"1"),
                complete("SELECT 1"),
                refusal_extended_answer(&msg),
                rfq(b'I'),
            ]),
        ),
        (true, codec::query("copy t from stdin")),
        (false, copy_in_response()),
        (
            true,
            cat(&[copy_data(b"1\n"), copy_data(b"2\n"), copy_done()]),
        ),
        (false, cat(&[complete("COPY 2"), rfq(b'I')])),
        (true, function_call(99)),
        (false, cat(&[raised("pinhole: no"), rfq(b'I')])),
        (
            true,
            cat(&[codec::bind("p3", "s2"), codec::execute("p3"), sync()]),
        ),
        (false, cat(&[refusal_extended_answer(&msg), rfq(b'I')])),
        (true, terminate()),
    ]);
    t
}

fn mutate(rng: &mut Rng, events: &mut Vec<(bool, Vec<u8>)>) {
    for _ in 0..1 + rng.below(4) {
        if events.is_empty() {
            let n = 1 + rng.below(16);
            let to_server = rng.one_in(2);
            events.push((to_server, rng.bytes(n)));
        }
        let i = rng.below(events.len());
        match rng.below(10) {
            0 | 1 => {
                let e = &mut events[i].1;
                if !e.is_empty() {
                    let at = rng.below(e.len());
                    e[at] ^= 1 << rng.below(8);
                }
            }
            2 => {
                let e = &mut events[i].1;
                if !e.is_empty() {
                    let at = rng.below(e.len());
                    e[at] = rng.byte();
                }
            }
            3 => {
                let n = 1 + rng.below(8);
                let bytes = rng.bytes(n);
                let e = &mut events[i].1;
                let at = rng.below(e.len() + 1);
                e.splice(at..at, bytes);
            }
            4 => {
                let e = &mut events[i].1;
                if !e.is_empty() {
                    let at = rng.below(e.len());
                    let n = 1 + rng.below(e.len() - at);
                    e.drain(at..at + n);
                }
            }
            5 => {
                let e = &mut events[i].1;
                let n = rng.below(e.len() + 1);
                e.truncate(n);
            }
            6 => {
                let e = events[i].clone();
                events.insert(i, e);
            }
            7 => {
                if i + 1 < events.len() {
                    events.swap(i, i + 1);
                }
            }
            8 => events[i].0 = !events[i].0,
            _ => {
                let n = rng.below(40);
                let bytes = rng.bytes(n);
                events.insert(i, (rng.one_in(2), bytes));
            }
        }
    }
}

#[test]
fn transcripts_pass_unmutated() {
    for login in [Login::Trust, Login::Cleartext, Login::Md5] {
        each_feed(|feed| {
            let mut c = Conn::new(feed);
            run_events(&mut c, &transcript(login), None);
            assert!(!c.closed);
            assert!(!c.warned("lost track"), "{:?}", c.events);
            check_invariants(&c);
            c
        });
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(0x5eed);
    for iteration in 0..3000u64 {
        // Start fresh, after the startup, or logged in.
        let mut c = match iteration % 3 {
            0 => Conn::new(Feed::Random(iteration)),
            1 => {
                let mut c = Conn::new(Feed::Random(iteration));
                c.client(&alice());
                c
            }
            _ => login(Login::Trust, Feed::Random(iteration)),
        };
        for _ in 0..1 + rng.below(6) {
            let n = rng.below(64);
            let mut bytes = rng.bytes(n);
            // Often a plausible header, so the bodies get parsed too.
            if rng.one_in(2) && bytes.len() >= 5 {
                let tags = b"QPBEDCSHpFdcfXRZTDCEN123ntsIGHWVAvKK";
                bytes[0] = tags[rng.below(tags.len())];
                let len = (bytes.len() - 1) as u32;
                bytes[1..5].copy_from_slice(&len.to_be_bytes());
            }
            if rng.one_in(2) {
                c.client(&bytes);
            } else {
                c.server(&bytes);
            }
            if c.closed {
                break;
            }
        }
        check_invariants(&c);
    }
}

#[test]
fn mutated_sessions_never_panic_and_never_leak() {
    let mut rng = Rng::new(42);
    let bases: Vec<Vec<(bool, Vec<u8>)>> = [Login::Trust, Login::Cleartext, Login::Md5]
        .into_iter()
        .map(transcript)
        .collect();
    let (mut logged_in, mut refused) = (0, 0);
    for iteration in 0..3000u64 {
        let mut events = bases[rng.below(bases.len())].clone();
        mutate(&mut rng, &mut events);
        let expire_at = rng.one_in(8).then(|| rng.below(events.len() + 1));
        let mut c = Conn::new(Feed::Random(iteration));
        run_events(&mut c, &events, expire_at);
        check_invariants(&c);
        logged_in += usize::from(c.s.identity().is_some());
        refused += usize::from(contains(&c.to_server, b"DO $pinhole$"));
    }
    // The mutations leave most sessions deep enough to matter.
    assert!(logged_in > 1000, "{logged_in}");
    assert!(refused > 1000, "{refused}");
}

#[test]
fn mutated_scram_logins_never_panic() {
    // SCRAM costs a PBKDF2 per run: fewer iterations.
    let mut rng = Rng::new(7);
    for iteration in 0..60u64 {
        let mut c = Conn::new(Feed::Random(iteration));
        c.client(&alice());
        c.server(&sasl(&["SCRAM-SHA-256"]));
        let first = c.client(&pw("good"));
        let server = scram_server_from(&first);
        let mut sf = sasl_continue(&server.server_first);
        if rng.one_in(2) && sf.len() > 9 {
            let at = 9 + rng.below(sf.len() - 9);
            sf[at] = rng.byte();
        }
        c.server(&sf);
        let mut second = pw("good");
        if rng.one_in(3) {
            let at = rng.below(second.len());
            second[at] ^= 0x20;
        }
        let got = c.client(&second);
        let fin = String::from_utf8(password_data_or_empty(&got))
            .ok()
            .and_then(|f| server.finish(&f).ok())
            .unwrap_or_else(|| "v=AAAA".into());
        let mut last = cat(&[sasl_final(&fin), auth_ok(), welcome()]);
        if rng.one_in(2) {
            let at = rng.below(last.len());
            last[at] = rng.byte();
        }
        c.server(&last);
        c.client(&codec::query("select 1"));
        check_invariants(&c);
    }
}

fn password_data_or_empty(bytes: &[u8]) -> Vec<u8> {
    match codec::decode_frontend(bytes, FrontendPhase::Normal) {
        Ok(Some((FrontendMessage::PasswordMessage { data }, _))) => data,
        _ => Vec::new(),
    }
}
