//! One PostgreSQL connection through the filter, host-free.
//!
//! The host hands every read from the client to [`Session::on_downstream`]
//! and every read from the server to [`Session::on_upstream`]; each returns
//! the bytes to pass on in the same direction (complete, possibly rewritten
//! messages; an incomplete tail is kept here until the rest arrives).
//! proxy-wasm cannot write to the client from a client read, or to the
//! server from a server read, so every answer the filter gives rides on a
//! message going the right way:
//!
//! - **Login.** The caller's startup `user` is replaced by the target's
//!   backend role. The server's authentication request (none for `trust`,
//!   cleartext, MD5 or SASL) is replaced by `AuthenticationCleartextPassword`;
//!   the caller answers with its JWT, which is verified exactly as on the
//!   HTTP path. The filter then answers the server itself: the backend
//!   password, its MD5 form, or a SCRAM-SHA-256 exchange (whose second round
//!   trip is carried by a second cleartext prompt to the caller, answered
//!   with the same token; the server's final SCRAM message is checked and
//!   dropped). For `trust` the server's welcome is held back until the token
//!   is verified, and a `Sync` stands in for the password.
//! - **Refusing a statement.** A refused `Query` becomes
//!   `DO $$ … RAISE EXCEPTION USING ERRCODE = '42501' … $$`; a refused
//!   `Parse`, `Bind` or `Execute` becomes a Close/Parse/Bind/Execute of such
//!   a block under the filter's own names, whose ParseComplete,
//!   BindComplete and CloseComplete are dropped on the way back. The server
//!   answers with an ordinary ErrorResponse (its CONTEXT field removed), so
//!   the session stays usable, and a transaction in progress is aborted the
//!   way a real permission error would abort it.
//! - **Ending a session** (bad token, expiry, revocation, a server that
//!   cannot be answered): the client's next message is replaced by
//!   `Sync` + `Terminate` (or, before the server was reached, by a startup
//!   request the server refuses), and the server's answer by one FATAL
//!   ErrorResponse naming the reason. The server then closes.
//!
//! To do so the session tracks, per connection, what every message sent to
//! the server will be answered with ([`Expect`]), and which prepared
//! statements and portals were refused.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::rc::Rc;

use crate::mask::MaskError;
use crate::mask::Masker;
use crate::mask::RowMasker;

use crate::engine::{Approval, Decided};
use crate::identity::{AuthError, Elevated, Identity};
use crate::pg::codec::{
    self, BackendMessage, BackendPhase, FrontendMessage, FrontendPhase, PgError, StartupMessage,
    TargetKind,
};
use crate::pg::scram::{ClientFinal, ScramClient};
use crate::pg::stream::{Framing, Scanner, Sink, Verdict};
use crate::policy::eval::Decision;
use crate::policy::Effect;

/// Startup parameters passed to the server as sent. Anything else is
/// dropped (and logged): a startup parameter can set any server setting,
/// e.g. `role`, which would bypass statement checks.
const STARTUP_PARAMS: &[&str] = &[
    "user",
    "database",
    "application_name",
    "fallback_application_name",
    "client_encoding",
    "datestyle",
    "timezone",
    "intervalstyle",
    "extra_float_digits",
    "standard_conforming_strings",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "bytea_output",
    "geqo",
];

/// Startup parameters that refuse the connection outright: they change who
/// the session is or how the server reads SQL.
const REFUSED_STARTUP_PARAMS: &[&str] =
    &["options", "replication", "role", "session_authorization"];

/// Named prepared statements (and, separately, portals) tracked per
/// connection; a client that keeps more open is disconnected.
pub const MAX_PREPARED: usize = 10_000;

fn too_many(what: &str) -> Fatal {
    Fatal::new(
        "54000",
        format!("more than {MAX_PREPARED} {what} open on one connection; close some (DEALLOCATE / Close)"),
    )
}

/// The prepared statement and portal names the filter uses for refusals.
const REFUSAL_NAME: &str = "pinhole_refused";

/// Every message the filter writes starts with this.
pub const MESSAGE_PREFIX: &str = "pinhole: ";

/// Where the backend role's credentials come from (resolved from the
/// target and the operator's environment when the policy is loaded).
#[derive(Clone, PartialEq, Eq)]
pub struct Backend {
    pub user: String,
    /// `None`: the server must not ask for a password.
    pub password: Option<String>,
    /// Replaces the caller's startup `database` when set.
    pub database: Option<String>,
    /// The target name (for messages).
    pub target: String,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("database", &self.database)
            .field("target", &self.target)
            .finish()
    }
}

/// What the session needs from the loaded policy.
pub trait Authority {
    /// The backend credentials, or why connections cannot be served.
    fn backend(&self) -> Result<&Backend, String>;
    /// Verify a token presented as the password (cache first).
    fn authenticate(&self, token: &str, now: u64) -> Result<Identity, AuthError>;
    /// Re-check a verified identity: expiry and revocation under the
    /// current policy.
    fn recheck(&self, who: &Identity, now: u64) -> Result<(), AuthError>;
    /// Decide a SQL text (every statement of it) at `now` (elevations and
    /// approvals are time-bound).
    fn decide_sql(&self, who: &Identity, sql: &str, now: u64) -> Decided;
    /// Decide a fast-path FunctionCall.
    fn decide_function_call(&self, who: &Identity, oid: u32, now: u64) -> Decided;
    /// What to mask in this caller's results (`Ok(None)`: nothing).
    fn masker(&self, _who: &Identity) -> Result<Option<Rc<Masker>>, String> {
        Ok(None)
    }
}

/// A log line for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub level: Level,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

/// The result of one read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// The bytes to pass on instead of what was read; `None`: pass the read
    /// on unchanged.
    pub data: Option<Vec<u8>>,
    /// Close the connection now (the peer does not speak PostgreSQL).
    pub close: bool,
}

impl Step {
    fn replace(data: Vec<u8>) -> Step {
        Step {
            data: Some(data),
            close: false,
        }
    }
}

/// A decision the session made on a statement (for logs and audit).
#[derive(Debug, Clone, PartialEq)]
pub struct StatementDecision {
    pub sql: String,
    pub decision: Decision,
    /// A review rule's hold or the approval that lifted it.
    pub approval: Option<Approval>,
    /// Roles held through elevation grants for this statement.
    pub elevated: Vec<Elevated>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExpectKind {
    /// A simple Query (or a refusal standing in for one): everything up to
    /// ReadyForQuery.
    Query,
    /// A FunctionCall: its response, then ReadyForQuery.
    FunctionCall,
    Parse,
    Bind,
    Describe,
    Execute,
    Close,
    Sync,
}

/// An answer the server owes for one message sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expect {
    kind: ExpectKind,
    /// Sent by the filter, not the client: its answer is dropped (errors
    /// excepted).
    synthetic: bool,
    /// A Sync the client sent while its COPY FROM STDIN was open: the
    /// server ignores it if it is in copy-in mode when it reads it (it then
    /// never answers), which it is once CopyInResponse arrives.
    in_copy: bool,
}

/// What the filter knows of a prepared statement or portal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Prepared {
    Allowed { copy_in: bool },
    Refused(String),
}

#[derive(Debug)]
enum Auth {
    /// Waiting for the client's StartupMessage (or SSL/GSS/Cancel request).
    Startup,
    /// The startup was forwarded; waiting for the server's request.
    AwaitServer,
    /// The client was asked for its token; `method` is what the server
    /// really asked for.
    AwaitToken(Method),
    /// SCRAM: the SASLInitialResponse was sent.
    ScramFirst(ScramClient),
    /// SCRAM: the client was prompted again; its answer carries the
    /// client-final message.
    ScramPrompted(ClientFinal),
    /// SCRAM: client-final sent; the server-final must carry this signature.
    ScramFinal([u8; 32]),
    /// Credentials sent; waiting for AuthenticationOk.
    AwaitOk,
    /// `trust`: the token was accepted and a Sync sent; hold the server's
    /// welcome until ReadyForQuery answers that Sync.
    TrustRelease,
    /// Authenticated upstream; forwarding the welcome until ReadyForQuery.
    Welcome,
    Ready,
    /// Ending: the client gets `error` once, then nothing; the server was
    /// told to end (`poked`) or will be at the client's next message.
    Doomed {
        error: Vec<u8>,
        sent: bool,
        poked: bool,
    },
    /// The client sent Terminate or a CancelRequest.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Trust,
    Cleartext,
    Md5([u8; 4]),
    Scram,
}

/// One client connection.
pub struct Session {
    auth: Auth,
    front: Scanner,
    front_phase: FrontendPhase,
    back: Scanner,
    /// The server's next message is its one-byte answer to SSLRequest or
    /// GSSENCRequest.
    back_single: bool,
    identity: Option<Identity>,
    /// The caller's startup `user` (for logs; never sent upstream).
    client_user: Option<String>,
    /// The token of the first prompt (a SCRAM second prompt must repeat it).
    token: Option<String>,
    /// Server messages held during `trust` login.
    held: Vec<u8>,
    /// The held messages include the welcome's ReadyForQuery.
    held_ready: bool,
    expect: VecDeque<Expect>,
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Prepared>,
    /// A COPY FROM STDIN was allowed and is in progress: client CopyData
    /// may flow.
    copy_in: bool,
    /// The client has not yet ended (CopyDone/CopyFail) an allowed COPY
    /// FROM STDIN it started.
    copy_client_open: bool,
    /// The answer tracking lost sync with the server (a bug or an unknown
    /// message): stop dropping answers to synthetic messages.
    desync: bool,
    nonce: String,
    events: Vec<Event>,
    decisions: Vec<StatementDecision>,
    /// Statements allowed so far.
    allowed: u64,
    /// Allowed statements per deciding rule, since the last
    /// [`Session::take_allowed`].
    allowed_by_rule: Vec<(Option<String>, u64)>,
    /// Why the caller's token was refused, when it was.
    auth_failure: Option<&'static str>,
    /// What to mask in this caller's results (set at login).
    masker: Option<Rc<Masker>>,
    /// How to mask the rows of the current result (from its RowDescription).
    row_plan: Option<RowMasker>,
    /// Values masked since the last [`Session::take_masked`].
    masked: u64,
    /// Keep allowed decisions for [`Session::take_decisions`] too (else only
    /// refusals are kept).
    pub record_allowed: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("auth", &self.auth_name())
            .field("client_user", &self.client_user)
            .finish()
    }
}

/// A fatal condition: the session ends with this SQLSTATE and message.
struct Fatal {
    sqlstate: &'static str,
    message: String,
}

impl Fatal {
    fn new(sqlstate: &'static str, message: impl Into<String>) -> Fatal {
        Fatal {
            sqlstate,
            message: message.into(),
        }
    }

    fn error(&self) -> Vec<u8> {
        codec::error_response(
            "FATAL",
            self.sqlstate,
            &format!("{MESSAGE_PREFIX}{}", self.message),
        )
    }
}

fn auth_fatal(e: &AuthError) -> Fatal {
    match e {
        AuthError::SubjectRevoked | AuthError::TokenRevoked => Fatal::new(
            "28000",
            format!("access refused: {}; ask your administrator", e.reason()),
        ),
        _ => Fatal::new(
            "28P01",
            format!(
                "token rejected: {}; connect with a valid JWT from your identity provider as the password",
                e.reason()
            ),
        ),
    }
}

impl Session {
    /// A new connection. `nonce`: at least 18 random bytes, base64 (SCRAM).
    pub fn new(nonce: String) -> Session {
        Session {
            auth: Auth::Startup,
            front: Scanner::new(),
            front_phase: FrontendPhase::Startup,
            back: Scanner::new(),
            back_single: false,
            identity: None,
            client_user: None,
            token: None,
            held: Vec::new(),
            held_ready: false,
            expect: VecDeque::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            copy_in: false,
            copy_client_open: false,
            desync: false,
            nonce,
            events: Vec::new(),
            decisions: Vec::new(),
            allowed: 0,
            allowed_by_rule: Vec::new(),
            auth_failure: None,
            masker: None,
            row_plan: None,
            masked: 0,
            record_allowed: false,
        }
    }

    /// The verified caller, once logged in.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The user name the client asked for at startup.
    pub fn client_user(&self) -> Option<&str> {
        self.client_user.as_deref()
    }

    /// Log lines produced since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Statement decisions made since the last call.
    pub fn take_decisions(&mut self) -> Vec<StatementDecision> {
        std::mem::take(&mut self.decisions)
    }

    /// Allowed statements counted since the last [`Session::take_allowed`].
    pub fn pending_allowed(&self) -> u64 {
        self.allowed_by_rule.iter().map(|(_, n)| n).sum()
    }

    /// Allowed statements per deciding rule since the last call.
    pub fn take_allowed(&mut self) -> Vec<(Option<String>, u64)> {
        std::mem::take(&mut self.allowed_by_rule)
    }

    /// Values masked since the last call.
    pub fn take_masked(&mut self) -> u64 {
        std::mem::take(&mut self.masked)
    }

    /// Why the caller's token was refused (once).
    pub fn take_auth_failure(&mut self) -> Option<&'static str> {
        self.auth_failure.take()
    }

    /// Statements allowed so far on this connection.
    pub fn allowed_count(&self) -> u64 {
        self.allowed
    }

    /// True once the session is ending or ended.
    pub fn is_done(&self) -> bool {
        matches!(self.auth, Auth::Doomed { .. } | Auth::Finished)
    }

    fn auth_name(&self) -> &'static str {
        match self.auth {
            Auth::Startup => "startup",
            Auth::AwaitServer => "server-auth",
            Auth::AwaitToken(_) => "await-token",
            Auth::ScramFirst(_) => "scram-first",
            Auth::ScramPrompted(_) => "scram-prompted",
            Auth::ScramFinal(_) => "scram-final",
            Auth::AwaitOk => "await-ok",
            Auth::TrustRelease => "trust-release",
            Auth::Welcome => "welcome",
            Auth::Ready => "ready",
            Auth::Doomed { .. } => "doomed",
            Auth::Finished => "finished",
        }
    }

    /// Client-controlled text (user names, parameter names, SQL) can
    /// reach a message: control characters are escaped so no line can be
    /// forged in the operator's log.
    fn log(&mut self, level: Level, message: String) {
        let message = if message.chars().any(char::is_control) {
            message
                .chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        } else {
            message
        };
        self.events.push(Event { level, message });
    }

    fn who(&self) -> String {
        match &self.identity {
            Some(i) => format!("{}:{}", i.token.issuer_name, i.token.sub),
            None => format!(
                "unauthenticated (startup user `{}`)",
                self.client_user.as_deref().unwrap_or("?")
            ),
        }
    }

    // ------------------------------------------------------------ client

    /// Bytes read from the client.
    pub fn on_downstream(&mut self, data: &[u8], authority: &dyn Authority, now: u64) -> Step {
        match &mut self.auth {
            Auth::Finished => return Step::replace(Vec::new()),
            Auth::Doomed { poked, .. } => {
                // Whatever the client says now, the server is told to end.
                let mut out = Vec::new();
                if !*poked {
                    *poked = true;
                    self.poke(&mut out);
                }
                return Step::replace(out);
            }
            _ => {}
        }
        let mut scanner = std::mem::take(&mut self.front);
        let result = scanner.run(
            data,
            &mut FrontSink {
                s: self,
                authority,
                now,
            },
        );
        self.front = scanner;
        match result {
            Ok(data) => Step { data, close: false },
            Err(e) => self.protocol_violation("client", &e),
        }
    }

    /// A whole client message: `None` to forward it unchanged.
    fn client_message(
        &mut self,
        frame: &[u8],
        authority: &dyn Authority,
        now: u64,
    ) -> Option<Vec<u8>> {
        if matches!(self.auth, Auth::Ready) {
            return match self.client_ready(frame, authority, now) {
                Ok(r) => r,
                Err(f) => {
                    let mut out = Vec::new();
                    self.doom(f, &mut out);
                    Some(out)
                }
            };
        }
        let mut out = Vec::new();
        match self.client_frame(frame, &mut out, authority, now) {
            Ok(()) if out == frame => None,
            Ok(()) => Some(out),
            Err(f) => {
                self.doom(f, &mut out);
                Some(out)
            }
        }
    }

    fn protocol_violation(&mut self, peer: &str, e: &PgError) -> Step {
        self.log(
            Level::Warn,
            format!(
                "pinhole: closing PostgreSQL connection of {}: the {peer} broke the protocol: {e}",
                self.who()
            ),
        );
        self.auth = Auth::Finished;
        Step {
            data: Some(Vec::new()),
            close: true,
        }
    }

    /// End the session: tell the server to stop (by what it is waiting
    /// for) and hand the client `f` when the server answers.
    fn doom(&mut self, f: Fatal, out: &mut Vec<u8>) {
        self.log(
            Level::Warn,
            format!(
                "pinhole: ending PostgreSQL session of {}: {}",
                self.who(),
                f.message
            ),
        );
        let error = f.error();
        self.poke_for(out);
        self.auth = Auth::Doomed {
            error,
            sent: false,
            poked: true,
        };
    }

    /// What makes the server answer and close in the current phase.
    fn poke_for(&mut self, out: &mut Vec<u8>) {
        match self.auth {
            Auth::Startup => {
                // The server was never reached: a startup request for a
                // protocol it does not speak makes it answer with an error
                // and close, without any login attempt.
                out.extend(
                    FrontendMessage::Startup(StartupMessage {
                        protocol: 0x0009_0000,
                        params: vec![("user".into(), "pinhole".into())],
                    })
                    .encode(),
                );
            }
            _ => self.poke(out),
        }
    }

    /// `Sync` + `Terminate`: during login the server refuses the Sync
    /// (it expects a password message) and closes; once logged in it
    /// answers ReadyForQuery and closes on Terminate.
    fn poke(&self, out: &mut Vec<u8>) {
        out.extend(FrontendMessage::Sync.encode());
        out.extend(FrontendMessage::Terminate.encode());
    }

    fn client_frame(
        &mut self,
        frame: &[u8],
        out: &mut Vec<u8>,
        authority: &dyn Authority,
        now: u64,
    ) -> Result<(), Fatal> {
        match self.auth {
            Auth::Startup => self.client_startup(frame, out, authority),
            Auth::AwaitToken(method) => self.client_token(frame, method, out, authority, now),
            Auth::ScramPrompted(_) => self.client_scram_second(frame, out),
            Auth::Ready => {
                if let Some(b) = self.client_ready(frame, authority, now)? {
                    out.extend(b);
                } else {
                    out.extend_from_slice(frame);
                }
                Ok(())
            }
            // The client may pipeline; anything but a password during login
            // is a protocol violation the server itself will refuse.
            Auth::AwaitServer
            | Auth::ScramFirst(_)
            | Auth::ScramFinal(_)
            | Auth::AwaitOk
            | Auth::TrustRelease
            | Auth::Welcome => Err(Fatal::new(
                "08P01",
                "message received before the login finished",
            )),
            Auth::Doomed { .. } | Auth::Finished => Ok(()),
        }
    }

    fn decode_front(&self, frame: &[u8]) -> Result<FrontendMessage, Fatal> {
        match codec::decode_frontend(frame, self.front_phase) {
            Ok(Some((m, _))) => Ok(m),
            Ok(None) => Err(Fatal::new("08P01", "incomplete message")),
            Err(e) => Err(Fatal::new("08P01", format!("invalid message: {e}"))),
        }
    }

    fn client_startup(
        &mut self,
        frame: &[u8],
        out: &mut Vec<u8>,
        authority: &dyn Authority,
    ) -> Result<(), Fatal> {
        let msg = self.decode_front(frame)?;
        match msg {
            FrontendMessage::SslRequest | FrontendMessage::GssEncRequest => {
                // The server answers with one byte; the filter refuses an
                // `S` (it must read the protocol in clear). A GSSENCRequest
                // is asked as an SSLRequest: a server built with GSSAPI
                // would say `G`, and the client falls back on `N` either way.
                out.extend(FrontendMessage::SslRequest.encode());
                self.back_single = true;
                Ok(())
            }
            FrontendMessage::CancelRequest { .. } => {
                // Authenticated by the secret key the server handed to a
                // logged-in session; the server checks it.
                out.extend_from_slice(frame);
                self.auth = Auth::Finished;
                Ok(())
            }
            FrontendMessage::Startup(mut s) => {
                self.front_phase = FrontendPhase::Normal;
                self.client_user = s.param("user").map(str::to_owned);
                let backend = authority
                    .backend()
                    .map_err(|reason| Fatal::new("08004", reason))?
                    .clone();
                if s.protocol >> 16 != 3 {
                    return Err(Fatal::new(
                        "0A000",
                        format!(
                            "unsupported frontend protocol {}.{}",
                            s.protocol >> 16,
                            s.protocol & 0xffff
                        ),
                    ));
                }
                let mut kept = Vec::with_capacity(s.params.len());
                let mut seen: Vec<String> = Vec::with_capacity(s.params.len());
                for (k, v) in std::mem::take(&mut s.params) {
                    let lower = k.to_ascii_lowercase();
                    if seen.contains(&lower) {
                        // The server takes the last of repeated parameters:
                        // a second `user` would undo the backend role.
                        return Err(Fatal::new(
                            "08P01",
                            format!("startup parameter `{k}` is repeated"),
                        ));
                    }
                    seen.push(lower.clone());
                    if REFUSED_STARTUP_PARAMS.contains(&lower.as_str()) {
                        return Err(Fatal::new(
                            "42501",
                            format!(
                                "startup parameter `{k}` is not allowed through this proxy \
                                 (it changes the session's identity or protocol)"
                            ),
                        ));
                    }
                    if lower == "client_encoding" && !safe_client_encoding(&v) {
                        return Err(Fatal::new(
                            "22021",
                            format!(
                                "client_encoding `{v}` is not supported through this proxy; \
                                 use UTF8"
                            ),
                        ));
                    }
                    if lower == "standard_conforming_strings" && !v.eq_ignore_ascii_case("on") {
                        return Err(Fatal::new(
                            "42501",
                            "standard_conforming_strings must stay on through this proxy",
                        ));
                    }
                    if STARTUP_PARAMS.contains(&lower.as_str()) {
                        kept.push((k, v));
                    } else {
                        self.log(
                            Level::Info,
                            format!("pinhole: dropped startup parameter `{k}`"),
                        );
                    }
                }
                s.params = kept;
                s.set_param("user", &backend.user);
                if let Some(db) = &backend.database {
                    s.set_param("database", db);
                } else if s.param("database").is_none() {
                    // The server would default to the (backend) user name;
                    // make it explicit so the caller's user name is not it.
                    let db = self.client_user.clone().unwrap_or_default();
                    s.set_param("database", &db);
                }
                out.extend(FrontendMessage::Startup(s).encode());
                self.auth = Auth::AwaitServer;
                Ok(())
            }
            _ => Err(Fatal::new("08P01", "expected a startup message")),
        }
    }

    fn client_token(
        &mut self,
        frame: &[u8],
        method: Method,
        out: &mut Vec<u8>,
        authority: &dyn Authority,
        now: u64,
    ) -> Result<(), Fatal> {
        let FrontendMessage::PasswordMessage { data } = self.decode_front(frame)? else {
            return Err(Fatal::new("08P01", "expected a password message"));
        };
        let token = codec::parse_password(&data)
            .map_err(|_| Fatal::new("28P01", "the password message is malformed"))?;
        let who = match authority.authenticate(token.trim(), now) {
            Ok(who) => who,
            Err(e) => {
                self.auth_failure = Some(e.reason());
                return Err(auth_fatal(&e));
            }
        };
        let backend = authority
            .backend()
            .map_err(|reason| Fatal::new("08004", reason))?
            .clone();
        self.log(
            Level::Info,
            format!(
                "pinhole: PostgreSQL login of {}:{} (roles [{}], startup user `{}`) as backend role `{}` on target `{}`",
                who.token.issuer_name,
                who.token.sub,
                who.roles.join(", "),
                self.client_user.as_deref().unwrap_or(""),
                backend.user,
                backend.target,
            ),
        );
        self.masker = authority.masker(&who).map_err(|e| {
            Fatal::new("08004", format!("the masking rules cannot be applied: {e}"))
        })?;
        self.identity = Some(who);
        let password = || {
            backend.password.clone().ok_or_else(|| {
                Fatal::new(
                    "08004",
                    format!(
                        "the database asks a password for backend role `{}` but target `{}` has \
                         no `backend_password_env` (operator: configure it)",
                        backend.user, backend.target
                    ),
                )
            })
        };
        match method {
            Method::Trust => {
                out.extend(FrontendMessage::Sync.encode());
                self.auth = Auth::TrustRelease;
            }
            Method::Cleartext => {
                out.extend(codec::password_message(&password()?));
                self.auth = Auth::AwaitOk;
            }
            Method::Md5(salt) => {
                out.extend(codec::password_message(&codec::md5_password(
                    &backend.user,
                    &password()?,
                    salt,
                )));
                self.auth = Auth::AwaitOk;
            }
            Method::Scram => {
                let client = ScramClient::new("", &password()?, &self.nonce);
                out.extend(codec::sasl_initial_response(
                    "SCRAM-SHA-256",
                    client.client_first().as_bytes(),
                ));
                self.token = Some(token);
                self.auth = Auth::ScramFirst(client);
            }
        }
        Ok(())
    }

    fn client_scram_second(&mut self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), Fatal> {
        let FrontendMessage::PasswordMessage { data } = self.decode_front(frame)? else {
            return Err(Fatal::new("08P01", "expected a password message"));
        };
        let again = codec::parse_password(&data)
            .map_err(|_| Fatal::new("28P01", "the password message is malformed"))?;
        if self.token.as_deref().map(str::trim) != Some(again.trim()) {
            return Err(Fatal::new(
                "28P01",
                "the second password prompt must be answered with the same token",
            ));
        }
        let Auth::ScramPrompted(fin) = std::mem::replace(&mut self.auth, Auth::AwaitOk) else {
            return Err(Fatal::new("08P01", "unexpected password message"));
        };
        out.extend(codec::sasl_response(fin.message.as_bytes()));
        self.auth = Auth::ScramFinal(fin.server_signature);
        self.token = None;
        Ok(())
    }

    /// A whole client message after login. `Ok(None)`: forward it as is.
    fn client_ready(
        &mut self,
        frame: &[u8],
        authority: &dyn Authority,
        now: u64,
    ) -> Result<Option<Vec<u8>>, Fatal> {
        let tag = frame.first().copied().unwrap_or(0);
        let malformed = || {
            Fatal::new(
                "08P01",
                format!("malformed message {}", codec::Tag(Some(tag))),
            )
        };
        match tag {
            b'Q' => {
                let sql = codec::query_view(frame).ok_or_else(malformed)?;
                let who = self.recheck(authority, now)?;
                let d = authority.decide_sql(&who, sql, now);
                self.push_expect(ExpectKind::Query, false);
                let out = if d.allowed() {
                    if mentions_copy_from(sql) {
                        self.copy_in = true;
                        self.copy_client_open = true;
                    }
                    None
                } else {
                    Some(codec::query(&refusal_sql(&d.decision)))
                };
                self.record(sql, d);
                Ok(out)
            }
            b'P' => {
                let (name, sql) = codec::parse_view(frame).ok_or_else(malformed)?;
                if self.statements.len() >= MAX_PREPARED && !self.statements.contains_key(name) {
                    return Err(too_many("prepared statements"));
                }
                let who = self.recheck(authority, now)?;
                let d = authority.decide_sql(&who, sql, now);
                let out = if d.allowed() {
                    self.push_expect(ExpectKind::Parse, false);
                    self.statements.insert(
                        name.to_owned(),
                        Prepared::Allowed {
                            copy_in: mentions_copy_from(sql),
                        },
                    );
                    None
                } else {
                    let msg = refusal_message(&d.decision);
                    let mut out = Vec::new();
                    self.refuse_extended(&msg, &mut out);
                    self.statements
                        .insert(name.to_owned(), Prepared::Refused(msg));
                    Some(out)
                };
                self.record(sql, d);
                Ok(out)
            }
            b'B' => {
                let (portal, statement) = codec::bind_view(frame).ok_or_else(malformed)?;
                if self.portals.len() >= MAX_PREPARED && !self.portals.contains_key(portal) {
                    return Err(too_many("portals"));
                }
                match self.statements.get(statement) {
                    Some(Prepared::Refused(msg)) => {
                        let msg = msg.clone();
                        let mut out = Vec::new();
                        self.refuse_extended(&msg, &mut out);
                        self.portals
                            .insert(portal.to_owned(), Prepared::Refused(msg));
                        Ok(Some(out))
                    }
                    known => {
                        // Unknown: a SQL-level PREPARE (checked with its
                        // statement when it was prepared), or a name the
                        // server will reject.
                        let state = known
                            .cloned()
                            .unwrap_or(Prepared::Allowed { copy_in: false });
                        self.push_expect(ExpectKind::Bind, false);
                        match self.portals.get_mut(portal) {
                            Some(p) => *p = state,
                            None => {
                                self.portals.insert(portal.to_owned(), state);
                            }
                        }
                        Ok(None)
                    }
                }
            }
            b'E' => {
                let portal = codec::execute_view(frame).ok_or_else(malformed)?;
                self.recheck(authority, now)?;
                match self.portals.get(portal) {
                    Some(Prepared::Refused(msg)) => {
                        let msg = msg.clone();
                        let mut out = Vec::new();
                        self.refuse_extended(&msg, &mut out);
                        Ok(Some(out))
                    }
                    other => {
                        if matches!(other, Some(Prepared::Allowed { copy_in: true })) {
                            self.copy_in = true;
                            self.copy_client_open = true;
                        }
                        if self.masker.is_some() {
                            // Rows of an Execute come without a
                            // RowDescription when the client described the
                            // statement earlier (or never): ask for the
                            // portal's, so its columns and formats are known.
                            let mut out = codec::describe(TargetKind::Portal, portal);
                            out.extend_from_slice(frame);
                            self.push_expect(ExpectKind::Describe, true);
                            self.push_expect(ExpectKind::Execute, false);
                            return Ok(Some(out));
                        }
                        self.push_expect(ExpectKind::Execute, false);
                        Ok(None)
                    }
                }
            }
            b'F' => {
                let FrontendMessage::FunctionCall(fc) = self.decode_front(frame)? else {
                    return Err(malformed());
                };
                let who = self.recheck(authority, now)?;
                let d = authority.decide_function_call(&who, fc.function_oid, now);
                let out = if d.allowed() {
                    self.push_expect(ExpectKind::FunctionCall, false);
                    None
                } else {
                    self.push_expect(ExpectKind::Query, false);
                    Some(codec::query(&refusal_sql(&d.decision)))
                };
                self.record(&format!("<function call oid {}>", fc.function_oid), d);
                Ok(out)
            }
            b'D' => {
                self.decode_front(frame)?;
                self.push_expect(ExpectKind::Describe, false);
                Ok(None)
            }
            b'C' => {
                let FrontendMessage::Close { kind, name } = self.decode_front(frame)? else {
                    return Err(malformed());
                };
                match kind {
                    TargetKind::Statement => self.statements.remove(&name),
                    TargetKind::Portal => self.portals.remove(&name),
                };
                self.push_expect(ExpectKind::Close, false);
                Ok(None)
            }
            b'S' => {
                self.push_expect(ExpectKind::Sync, false);
                Ok(None)
            }
            b'H' => Ok(None),
            b'd' | b'c' | b'f' => Ok((!self.copy_in).then(Vec::new)),
            b'X' => {
                self.auth = Auth::Finished;
                Ok(None)
            }
            _ => Err(Fatal::new(
                "08P01",
                format!("unexpected message type {}", codec::Tag(Some(tag))),
            )),
        }
    }

    /// Identity still valid? (expiry, revocation under the current policy)
    fn recheck(&mut self, authority: &dyn Authority, now: u64) -> Result<Identity, Fatal> {
        let Some(who) = self.identity.clone() else {
            return Err(Fatal::new("28000", "not logged in"));
        };
        match authority.recheck(&who, now) {
            Ok(()) => Ok(who),
            Err(e) => {
                self.auth_failure = Some(e.reason());
                Err(match e {
                    AuthError::Expired => {
                        Fatal::new("28000", "your token expired; reconnect with a fresh token")
                    }
                    e => auth_fatal(&e),
                })
            }
        }
    }

    fn record(&mut self, sql: &str, decided: Decided) {
        let Decided {
            decision,
            approval,
            elevated,
        } = decided;
        // An approved or elevated statement is always recorded: its audit
        // event names the grant.
        let granted = approval.is_some() || !elevated.is_empty();
        if decision.allowed() {
            self.allowed += 1;
            match self
                .allowed_by_rule
                .iter_mut()
                .find(|(r, _)| *r == decision.rule)
            {
                Some((_, n)) => *n += 1,
                None => self.allowed_by_rule.push((decision.rule.clone(), 1)),
            }
            if !self.record_allowed && !granted {
                return;
            }
        }
        self.decisions.push(StatementDecision {
            sql: sql.to_owned(),
            decision,
            approval,
            elevated,
        });
    }

    fn push_expect(&mut self, kind: ExpectKind, synthetic: bool) {
        let in_copy = kind == ExpectKind::Sync && self.copy_client_open;
        self.expect.push_back(Expect {
            kind,
            synthetic,
            in_copy,
        });
    }

    /// A refusal in the extended protocol: an error raised by executing a
    /// block under the filter's own statement and portal names.
    fn refuse_extended(&mut self, message: &str, out: &mut Vec<u8>) {
        let sql = refusal_block(message);
        out.extend(codec::close(TargetKind::Statement, REFUSAL_NAME));
        out.extend(codec::parse(REFUSAL_NAME, &sql));
        out.extend(codec::bind(REFUSAL_NAME, REFUSAL_NAME));
        out.extend(codec::execute(REFUSAL_NAME));
        self.push_expect(ExpectKind::Close, true);
        self.push_expect(ExpectKind::Parse, true);
        self.push_expect(ExpectKind::Bind, true);
        self.push_expect(ExpectKind::Execute, true);
    }

    // ------------------------------------------------------------ server

    /// Bytes read from the server.
    pub fn on_upstream(&mut self, data: &[u8], authority: &dyn Authority, now: u64) -> Step {
        match &mut self.auth {
            Auth::Doomed { error, sent, .. } => {
                // First finish a message already partly forwarded, so the
                // client reads the error as a message of its own.
                let (n, keep) = self.back.finish_partial(data);
                let mut out = Vec::new();
                if keep {
                    out.extend_from_slice(data.get(..n).unwrap_or_default());
                }
                if !*sent && !self.back.mid_message() {
                    *sent = true;
                    out.append(error);
                }
                return Step::replace(out);
            }
            Auth::Finished => return Step::default(),
            _ => {}
        }
        let mut scanner = std::mem::take(&mut self.back);
        let result = scanner.run(
            data,
            &mut BackSink {
                s: self,
                authority,
                now,
            },
        );
        self.back = scanner;
        match result {
            Ok(data) => Step { data, close: false },
            Err(e) => self.protocol_violation("server", &e),
        }
    }

    /// End the session from a server read: log, and hand the client `f`
    /// (returned: the bytes that replace the server's message); the
    /// server is told to end at the client's next message.
    fn end_from_server(&mut self, f: Fatal) -> Vec<u8> {
        self.log(
            Level::Warn,
            format!(
                "pinhole: ending PostgreSQL session of {}: {}",
                self.who(),
                f.message
            ),
        );
        self.auth = Auth::Doomed {
            error: Vec::new(),
            sent: true,
            poked: false,
        };
        f.error()
    }

    /// A whole server message: `None` to forward it unchanged.
    fn server_message(
        &mut self,
        frame: &[u8],
        authority: &dyn Authority,
        now: u64,
    ) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        if self.back_single {
            self.back_single = false;
            if frame.first() == Some(&b'N') {
                return None;
            }
            self.log(
                Level::Warn,
                "pinhole: the PostgreSQL server accepted TLS on the Envoy → server hop; \
                 the filter must read the protocol in clear there (operator: disable `ssl` \
                 on the server for this hop, or put the server on a trusted link)"
                    .into(),
            );
            self.auth = Auth::Doomed {
                error: Vec::new(),
                sent: true,
                poked: false,
            };
            return Some(
                Fatal::new(
                    "08004",
                    "the database server demands TLS on the proxy's hop; the operator's log says more",
                )
                .error(),
            );
        }
        match self.server_frame(frame, &mut out, authority, now) {
            Ok(()) if out == frame => None,
            Ok(()) => Some(out),
            Err(f) => Some(self.end_from_server(f)),
        }
    }

    fn server_frame(
        &mut self,
        frame: &[u8],
        out: &mut Vec<u8>,
        authority: &dyn Authority,
        now: u64,
    ) -> Result<(), Fatal> {
        let _ = now;
        match self.auth {
            Auth::Ready => {
                self.server_ready(frame, out);
                Ok(())
            }
            Auth::Welcome => {
                if let Some(why) = unsafe_parameter(frame) {
                    return Err(Fatal::new("08004", why));
                }
                out.extend_from_slice(frame);
                if frame.first() == Some(&b'Z') {
                    self.auth = Auth::Ready;
                }
                Ok(())
            }
            Auth::TrustRelease if frame.first() == Some(&b'Z') && self.held_ready => {
                // The answer to our Sync: release the held welcome (which
                // ends with its own ReadyForQuery) and drop this one.
                out.append(&mut self.held);
                self.auth = Auth::Ready;
                Ok(())
            }
            Auth::AwaitToken(Method::Trust) | Auth::TrustRelease => {
                // Hold the welcome until the token is verified.
                if self.held.len() + frame.len() > 64 * 1024 {
                    return Err(Fatal::new("08P01", "server welcome too long"));
                }
                if let Some(why) = unsafe_parameter(frame) {
                    return Err(Fatal::new("08004", why));
                }
                if frame.first() == Some(&b'Z') {
                    self.held_ready = true;
                }
                self.held.extend_from_slice(frame);
                Ok(())
            }
            _ => self.server_login(frame, out, authority),
        }
    }

    fn server_login(
        &mut self,
        frame: &[u8],
        out: &mut Vec<u8>,
        authority: &dyn Authority,
    ) -> Result<(), Fatal> {
        let msg = match codec::decode_backend(frame, BackendPhase::Normal) {
            Ok(Some((m, _))) => m,
            _ => return Err(Fatal::new("08P01", "the server sent an invalid message")),
        };
        let backend_user = authority
            .backend()
            .map(|b| b.user.clone())
            .unwrap_or_default();
        match (&self.auth, msg) {
            (_, BackendMessage::ErrorResponse { fields }) => {
                let code = fields
                    .iter()
                    .find(|(k, _)| *k == b'C')
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                let text = fields
                    .iter()
                    .find(|(k, _)| *k == b'M')
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                if code.starts_with("28") {
                    self.log(
                        Level::Warn,
                        format!(
                            "pinhole: the database refused backend role `{backend_user}`: {text} \
                             (operator: check the target's backend_user, the password in \
                             backend_password_env and pg_hba.conf)"
                        ),
                    );
                    return Err(Fatal::new(
                        "08004",
                        "the database refused the proxy's backend credentials; the operator's log says more",
                    ));
                }
                out.extend_from_slice(frame);
                Ok(())
            }
            (_, BackendMessage::NegotiateProtocolVersion { .. })
            | (_, BackendMessage::NoticeResponse { .. }) => {
                out.extend_from_slice(frame);
                Ok(())
            }
            (Auth::AwaitServer, m) => {
                let method = match m {
                    BackendMessage::AuthenticationOk => Method::Trust,
                    BackendMessage::AuthenticationCleartextPassword => Method::Cleartext,
                    BackendMessage::AuthenticationMd5Password { salt } => Method::Md5(salt),
                    BackendMessage::AuthenticationSasl { mechanisms } => {
                        if !mechanisms.iter().any(|m| m == "SCRAM-SHA-256") {
                            return Err(Fatal::new(
                                "08004",
                                format!(
                                    "the database offers SASL mechanisms {mechanisms:?}; the proxy answers SCRAM-SHA-256 only"
                                ),
                            ));
                        }
                        Method::Scram
                    }
                    other => {
                        return Err(Fatal::new(
                            "08004",
                            format!(
                                "the database asks for an authentication method the proxy cannot answer ({})",
                                backend_name(&other)
                            ),
                        ))
                    }
                };
                if method == Method::Trust {
                    self.held.extend_from_slice(frame);
                }
                out.extend(codec::authentication_cleartext_password());
                self.auth = Auth::AwaitToken(method);
                Ok(())
            }
            (Auth::ScramFirst(client), BackendMessage::AuthenticationSaslContinue { data }) => {
                let server_first = String::from_utf8_lossy(&data);
                let fin = client
                    .client_final(&server_first)
                    .map_err(|e| Fatal::new("08004", format!("SCRAM exchange failed: {e}")))?;
                out.extend(codec::authentication_cleartext_password());
                self.auth = Auth::ScramPrompted(fin);
                Ok(())
            }
            (Auth::ScramFinal(sig), BackendMessage::AuthenticationSaslFinal { data }) => {
                let server_final = String::from_utf8_lossy(&data);
                ScramClient::verify_server_final(&server_final, sig).map_err(|_| {
                    Fatal::new(
                        "08004",
                        "the database did not prove it knows the backend password (SCRAM server signature)",
                    )
                })?;
                self.auth = Auth::AwaitOk;
                Ok(())
            }
            (Auth::AwaitOk, BackendMessage::AuthenticationOk) => {
                out.extend_from_slice(frame);
                self.auth = Auth::Welcome;
                Ok(())
            }
            (_, other) => Err(Fatal::new(
                "08P01",
                format!(
                    "unexpected {} from the database during login",
                    backend_name(&other)
                ),
            )),
        }
    }

    fn server_ready(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        let tag = frame.first().copied().unwrap_or(0);
        if let Some(masker) = self.masker.clone() {
            match self.mask_frame(&masker, tag, frame) {
                Err(why) => {
                    out.extend(self.end_from_server(Fatal::new("42501", why)));
                    return;
                }
                Ok(Some(masked_row)) => {
                    if self.track(tag) {
                        out.extend(masked_row);
                    }
                    return;
                }
                Ok(None) => {}
            }
        }
        if let Some(why) = unsafe_parameter(frame) {
            // Defense in depth: the evaluator refuses statements that change
            // these settings; should one change anyway, nothing more runs.
            out.extend(self.end_from_server(Fatal::new("08004", why)));
            return;
        }
        if tag == b'E' {
            self.server_error(frame, out);
        } else if self.track(tag) {
            out.extend_from_slice(frame);
        }
    }

    /// Masking: a RowDescription sets the plan of the rows that follow; a
    /// DataRow is masked by it (`Ok(Some(row))`: forward `row` instead);
    /// results that cannot be masked end the session (`Err`).
    fn mask_frame(
        &mut self,
        masker: &Masker,
        tag: u8,
        frame: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        match tag {
            b'T' => {
                if let Ok(Some((BackendMessage::RowDescription { fields }, _))) =
                    codec::decode_backend(frame, BackendPhase::Normal)
                {
                    let plan = masker.row_masker(&fields, &());
                    self.row_plan = (!plan.is_noop()).then_some(plan);
                }
                Ok(None)
            }
            b'D' => {
                let Some(plan) = &self.row_plan else {
                    return Ok(None);
                };
                // Masked on the frame: no owned copy of every value, the
                // values that stay are copied as they are.
                match plan.mask_frame(frame, plan.description_formats()) {
                    Ok(None) => Ok(None),
                    Ok(Some((row, n))) => {
                        self.masked += n as u64;
                        Ok(Some(row))
                    }
                    Err(MaskError::Unreadable) => {
                        Err("a result row could not be read for masking".into())
                    }
                    Err(e) => Err(format!(
                        "a result value that must be masked could not be: {e}"
                    )),
                }
            }
            b'H' | b'W' => Err(
                "COPY … TO results cannot be masked; the masking rules for your roles refuse it".into(),
            ),
            b'V' => Err(
                "fast-path function results cannot be masked; the masking rules for your roles refuse it"
                    .into(),
            ),
            b'Z' => {
                self.row_plan = None;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Whether the server's next message of type `tag` answers a message
    /// the filter sent itself (and must be dropped): it is then handled
    /// whole, by [`Session::server_ready`].
    fn answers_synthetic(&self, tag: u8) -> bool {
        !self.desync
            && !matches!(tag, b'N' | b'S' | b'A')
            && self.expect.front().is_some_and(|e| e.synthetic)
    }

    /// Account for a server message of type `tag` (not an error): returns
    /// whether it goes on to the client.
    fn track(&mut self, tag: u8) -> bool {
        match tag {
            // Asynchronous: NoticeResponse, ParameterStatus, Notification.
            b'N' | b'S' | b'A' => return true,
            b'C' | b'Z' => self.copy_in = false,
            // Copy-in mode: the Syncs the client sent during it are ignored
            // by the server, so they are owed nothing.
            b'G' => self.expect.retain(|e| !e.in_copy),
            _ => {}
        }
        let Some(front) = self.expect.front().copied() else {
            return true;
        };
        use ExpectKind as K;
        let (done, fits) = match (front.kind, tag) {
            (K::Query | K::FunctionCall, b'Z') => (true, true),
            (K::Query | K::FunctionCall, _) => (false, true),
            (K::Parse, b'1') | (K::Bind, b'2') | (K::Close, b'3') | (K::Sync, b'Z') => (true, true),
            (K::Describe, b't') => (false, true),
            (K::Describe, b'T' | b'n') => (true, true),
            (K::Execute, b'D' | b'd' | b'c' | b'H' | b'W' | b'G') => (false, true),
            (K::Execute, b'C' | b'I' | b's') => (true, true),
            _ => (false, false),
        };
        if !fits {
            if !self.desync {
                self.log(
                    Level::Warn,
                    format!(
                        "pinhole: lost track of the server's answers (got {} while expecting {:?}); \
                         refusals on this connection keep working, their extra acknowledgements now reach the client",
                        codec::Tag(Some(tag)),
                        front.kind
                    ),
                );
            }
            self.desync = true;
            self.expect.clear();
            return true;
        }
        if done {
            self.expect.pop_front();
        }
        !front.synthetic || self.desync
    }

    fn server_error(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        self.copy_in = false;
        self.copy_client_open = false;
        // In the extended protocol the server skips everything up to Sync
        // after an error: so do the expectations.
        while let Some(front) = self.expect.front() {
            match front.kind {
                ExpectKind::Sync | ExpectKind::Query | ExpectKind::FunctionCall => break,
                _ => {
                    self.expect.pop_front();
                }
            }
        }
        // The filter's own refusals: drop the CONTEXT (`W`) field, which
        // would show the refusal block.
        if let Ok(Some((BackendMessage::ErrorResponse { fields }, _))) =
            codec::decode_backend(frame, BackendPhase::Normal)
        {
            let ours = fields
                .iter()
                .any(|(k, v)| *k == b'M' && v.starts_with(MESSAGE_PREFIX));
            if ours {
                let fields = fields
                    .into_iter()
                    .filter(|(k, _)| !matches!(*k, b'W' | b'q' | b'P' | b'p' | b'F' | b'L' | b'R'))
                    .collect();
                out.extend(BackendMessage::ErrorResponse { fields }.encode());
                return;
            }
        }
        out.extend_from_slice(frame);
    }
}

fn backend_name(m: &BackendMessage) -> String {
    let s = format!("{m:?}");
    s.split([' ', '{', '('])
        .next()
        .unwrap_or("message")
        .to_owned()
}

/// Why a ParameterStatus message reports a setting under which the server
/// would read SQL differently from the filter.
fn unsafe_parameter(frame: &[u8]) -> Option<String> {
    if frame.first() != Some(&b'S') {
        return None;
    }
    let Ok(Some((BackendMessage::ParameterStatus { name, value }, _))) =
        codec::decode_backend(frame, BackendPhase::Normal)
    else {
        return None;
    };
    let bad = match name.to_ascii_lowercase().as_str() {
        "client_encoding" => !safe_client_encoding(&value),
        "standard_conforming_strings" => !value.eq_ignore_ascii_case("on"),
        _ => false,
    };
    bad.then(|| {
        format!(
            "the server reports {name} = {value}, under which it would read SQL differently \
             from the proxy; the session ends"
        )
    })
}

/// Client encodings in which every byte below 0x80 is ASCII, so SQL text
/// reads the same to the filter (UTF-8) and to the server.
fn safe_client_encoding(v: &str) -> bool {
    let norm: String = v
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_uppercase();
    !matches!(
        norm.as_str(),
        "SJIS"
            | "SHIFTJIS"
            | "BIG5"
            | "GBK"
            | "UHC"
            | "GB18030"
            | "JOHAB"
            | "SHIFTJIS2004"
            | "WIN932"
            | "WIN936"
            | "WIN949"
            | "WIN950"
            | "CP932"
            | "CP936"
            | "CP949"
            | "CP950"
    )
}

/// Whether a SQL text may start a COPY FROM STDIN (its data must flow).
fn mentions_copy_from(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.contains("copy") && lower.contains("stdin")
}

/// The message of a refusal: `pinhole: <reason>` naming the rule.
pub fn refusal_message(d: &Decision) -> String {
    let mut m = String::from(MESSAGE_PREFIX);
    if d.effect == Effect::Review {
        m.push_str("approval required: ");
    }
    m.push_str(&d.reason);
    if let Some(rule) = &d.rule {
        if !d.reason.contains(rule.as_str()) {
            let _ = write!(m, " (rule `{rule}`)");
        }
    }
    m
}

/// A statement that raises `message` with SQLSTATE 42501. The message is
/// passed hex-encoded, so nothing in it (it quotes the caller's SQL) can
/// end the string or the block.
pub fn refusal_block(message: &str) -> String {
    let mut hex = String::with_capacity(message.len() * 2);
    for b in message.as_bytes() {
        let _ = write!(hex, "{b:02x}");
    }
    format!(
        "DO $pinhole$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', \
         MESSAGE = convert_from(decode('{hex}', 'hex'), 'UTF8'); END$pinhole$"
    )
}

fn refusal_sql(d: &Decision) -> String {
    refusal_block(&refusal_message(d))
}

/// The client direction, as seen by the [`Scanner`].
struct FrontSink<'a> {
    s: &'a mut Session,
    authority: &'a dyn Authority,
    now: u64,
}

impl Sink for FrontSink<'_> {
    fn framing(&self) -> Framing {
        match self.s.front_phase {
            FrontendPhase::Startup => Framing::Untyped,
            FrontendPhase::Normal => Framing::Typed { frontend: true },
        }
    }

    fn stopped(&self) -> bool {
        self.s.is_done()
    }

    fn header(&mut self, tag: Option<u8>, _len: usize) -> Verdict {
        if !matches!(self.s.auth, Auth::Ready) {
            return Verdict::Whole;
        }
        match tag {
            Some(b'S') => {
                self.s.push_expect(ExpectKind::Sync, false);
                Verdict::Stream
            }
            Some(b'H') => Verdict::Stream,
            // COPY data flows only while an allowed COPY FROM STDIN runs.
            Some(b'd' | b'c' | b'f') => {
                if tag != Some(b'd') {
                    // CopyDone / CopyFail: the client's copy is over.
                    self.s.copy_client_open = false;
                }
                if self.s.copy_in {
                    Verdict::Stream
                } else {
                    Verdict::Skip
                }
            }
            _ => Verdict::Whole,
        }
    }

    fn frame(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        self.s.client_message(frame, self.authority, self.now)
    }
}

/// The server direction, as seen by the [`Scanner`].
struct BackSink<'a> {
    s: &'a mut Session,
    authority: &'a dyn Authority,
    now: u64,
}

impl Sink for BackSink<'_> {
    fn framing(&self) -> Framing {
        if self.s.back_single {
            Framing::Single
        } else {
            Framing::Typed { frontend: false }
        }
    }

    fn stopped(&self) -> bool {
        matches!(self.s.auth, Auth::Doomed { .. })
    }

    fn header(&mut self, tag: Option<u8>, _len: usize) -> Verdict {
        if !matches!(self.s.auth, Auth::Ready) || self.s.back_single {
            return Verdict::Whole;
        }
        let tag = tag.unwrap_or(0);
        let masking =
            self.s.masker.is_some() && matches!(tag, b'T' | b'D' | b'H' | b'W' | b'V' | b'Z');
        if masking || tag == b'E' || tag == b'S' || self.s.answers_synthetic(tag) {
            return Verdict::Whole;
        }
        self.s.track(tag);
        Verdict::Stream
    }

    fn frame(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        self.s.server_message(frame, self.authority, self.now)
    }
}
