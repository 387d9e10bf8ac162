//! Network filter context: a PostgreSQL connection, wired to Envoy's
//! `envoy.filters.network.wasm` callbacks. Every decision is made by
//! [`crate::pg::session::Session`]; this only moves bytes.
//!
//! Each read is replaced by what the session returns (complete, possibly
//! rewritten messages) and always continues: the session keeps incomplete
//! tails itself, so nothing is ever paused in Envoy's buffers (and
//! `resume_upstream`, which Envoy does not implement, is never needed).

use std::rc::Rc;

use base64::Engine as _;
use proxy_wasm::traits::{Context, StreamContext};
use proxy_wasm::types::{Action, PeerType};

use super::{now_secs, Loaded};
use crate::engine::{self, Approval, Decided, Engine, Published, WithNewest};
use crate::grant::GrantSet;
use crate::identity::Elevated;
use crate::pg::session::{Authority, Backend, Level, Session, StatementDecision};
use crate::policy::eval::Decision;
use crate::policy::Effect;

/// Allowed statements counted before the decision counters are updated.
const ALLOWED_FLUSH: u64 = 256;

pub(crate) struct Tcp {
    id: u32,
    loaded: Rc<Loaded>,
    session: Session,
    source: Option<String>,
    closed: bool,
    /// The connection is ending: flush every count.
    closing: bool,
    /// The last allowed statement (a masked result is audited against it).
    last_allowed: Option<(String, Decision)>,
    /// Where the newest configuration publishes its revocations.
    shared_key: String,
    newest: Option<Published>,
    /// The grants of `newest`, indexed.
    newest_grants: Option<GrantSet>,
    newest_cas: Option<u32>,
    /// When the published revocations were last read (ms).
    polled_ms: u128,
}

/// How often an open connection re-reads the newest revocations (a
/// revocation pushed with a new policy reaches open sessions within this).
const REVOCATION_POLL_MS: u128 = 1000;

impl Tcp {
    pub(crate) fn new(id: u32, loaded: Rc<Loaded>, shared_key: String) -> Self {
        let mut nonce = [0u8; 18];
        if getrandom::getrandom(&mut nonce).is_err() {
            // WASI random_get does not fail in Envoy; should it, a nonce
            // from the clock and connection id is still unique per
            // connection (SCRAM needs uniqueness, not secrecy).
            let t = now_nanos();
            for (i, b) in nonce.iter_mut().enumerate() {
                *b = (t >> ((i % 8) * 8)) as u8 ^ (id as u8).wrapping_mul(i as u8 + 1);
            }
        }
        let nonce = base64::engine::general_purpose::STANDARD.encode(nonce);
        Tcp {
            id,
            loaded,
            session: {
                let mut s = Session::new(nonce);
                // Every decision is audited, allowed statements included.
                s.record_allowed = true;
                s
            },
            source: None,
            closed: false,
            closing: false,
            last_allowed: None,
            shared_key,
            newest: None,
            newest_grants: None,
            newest_cas: None,
            polled_ms: 0,
        }
    }

    fn source(&mut self) -> String {
        if self.source.is_none() {
            self.source = self
                .get_property(vec!["source", "address"])
                .and_then(|b| String::from_utf8(b).ok());
        }
        self.source.clone().unwrap_or_else(|| "-".into())
    }

    fn flush_logs(&mut self, engine: Option<&Engine>) {
        if let Some(engine) = engine {
            let target = &engine.target.name;
            // Allowed statements are counted in the session and added to
            // the counters in batches (and when the connection ends): a
            // counter update per statement would cost more than deciding.
            if self.session.pending_allowed() >= ALLOWED_FLUSH || self.closing {
                for (rule, n) in self.session.take_allowed() {
                    super::metrics::decision(Effect::Allow, target, rule.as_deref(), n);
                }
            }
            if let Some(reason) = self.session.take_auth_failure() {
                super::metrics::inc(&crate::metrics::auth_failure(reason, target));
                let refused = Decision {
                    effect: Effect::Deny,
                    rule: None,
                    reason: format!("token rejected: {reason}"),
                };
                let command = crate::audit::Command::mcp_method("login");
                self.audit(engine, command, &refused, 0, None, &[]);
            }
        }
        for e in self.session.take_events() {
            match e.level {
                Level::Info => log::info!("{} conn={}", e.message, self.id),
                Level::Warn => log::warn!("{} conn={}", e.message, self.id),
            }
        }
        let masked = self.session.take_masked();
        if masked > 0 {
            if let Some(engine) = engine {
                super::metrics::add(&crate::metrics::masked_values(&engine.target.name), masked);
                // The rows of the last allowed statement were masked.
                if let Some((sql, d)) = self.last_allowed.take() {
                    self.audit(
                        engine,
                        crate::audit::Command::sql(&sql),
                        &d,
                        masked,
                        None,
                        &[],
                    );
                    self.last_allowed = Some((sql, d));
                }
            }
        }
        let decisions = self.session.take_decisions();
        if decisions.is_empty() {
            return;
        }
        let Some(engine) = engine else { return };
        let source = self.source();
        for StatementDecision {
            sql,
            decision,
            approval,
            elevated,
        } in decisions
        {
            self.log_decision(engine, &source, &sql, &decision, approval.is_some());
            let command = if approval.as_ref().is_some_and(|a| a.grant.is_none()) {
                // A held statement: the approver must see all of it.
                crate::audit::Command::sql_capped(&sql, crate::audit::MAX_REVIEW_SQL_BYTES)
            } else {
                crate::audit::Command::sql(&sql)
            };
            let line = self.audit(engine, command, &decision, 0, approval.as_ref(), &elevated);
            if let Some(a) = approval.as_ref().filter(|a| a.grant.is_none()) {
                super::notify::review(a, &decision, line.as_deref());
            }
            if decision.allowed() {
                self.last_allowed = Some((sql, decision));
            }
        }
    }

    /// One audit event for a decision on this connection.
    fn audit(
        &mut self,
        engine: &Engine,
        command: crate::audit::Command<'_>,
        d: &Decision,
        masked: u64,
        approval: Option<&Approval>,
        elevated: &[Elevated],
    ) -> Option<String> {
        let source = self.source();
        let conn = self.id.to_string();
        let mut event = crate::audit::AuditEvent::decided(
            super::audit::now_ms(self),
            &engine.target.name,
            engine.target.protocol,
            command,
            d,
            masked,
        );
        event.conn = Some(&conn);
        event.source = Some(&source);
        event.approval = approval;
        let who = self.session.identity();
        // The roles the statement was decided with: the login's, plus
        // those held by elevation at the time.
        let roles: Vec<String> = match who {
            Some(w) if !elevated.is_empty() => w
                .base_roles()
                .into_iter()
                .chain(elevated.iter().map(|e| e.role.clone()))
                .collect(),
            _ => Vec::new(),
        };
        event.identity = who.map(|w| {
            let mut i = crate::audit::AuditIdentity::of(w);
            if !elevated.is_empty() {
                i.roles = &roles;
                i.elevated = elevated;
                i.grant = elevated.first().map(|e| e.grant.as_str());
            }
            if let Some(g) = approval.and_then(|a| a.grant.as_ref()) {
                i.grant = Some(&g.id);
            }
            i
        });
        super::audit::emit(&event)
    }

    fn log_decision(&self, engine: &Engine, source: &str, sql: &str, d: &Decision, review: bool) {
        let allowed = d.effect == Effect::Allow;
        if !allowed {
            super::metrics::decision(d.effect, &engine.target.name, d.rule.as_deref(), 1);
            if d.rule.is_none() && d.reason.starts_with("the SQL could not be parsed") {
                super::metrics::inc(&crate::metrics::sql_parse_failure(&engine.target.name));
            }
        }
        if allowed && !review && !log::log_enabled!(log::Level::Debug) {
            return;
        }
        let who = self.session.identity();
        let line = format!(
            "pinhole: decision={} rule={} target={} subject={} roles={} source={} conn={} op=\"{}\" reason=\"{}\"",
            d.effect.as_str(),
            d.rule.as_deref().unwrap_or("-"),
            engine.target.name,
            who.map(|i| engine::header_safe(&i.token.sub))
                .unwrap_or_else(|| "-".into()),
            who.map(|i| i.roles.join(",")).unwrap_or_default(),
            source,
            self.id,
            engine::header_safe(clip(sql)),
            engine::header_safe(&d.reason),
        );
        if allowed && review {
            log::info!("{line}");
        } else if allowed {
            log::debug!("{line}");
        } else {
            log::warn!("{line}");
        }
    }

    /// Re-read the newest published revocations, at most once per
    /// [`REVOCATION_POLL_MS`], parsing only when they changed.
    fn poll_newest(&mut self) {
        let now = self
            .get_current_time()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        if now.saturating_sub(self.polled_ms) < REVOCATION_POLL_MS {
            return;
        }
        self.polled_ms = now;
        let (bytes, cas) = self.get_shared_data(&self.shared_key);
        if cas.is_some() && cas == self.newest_cas {
            return;
        }
        self.newest_cas = cas;
        self.newest = bytes.and_then(|b| serde_json::from_slice::<Published>(&b).ok());
        self.newest_grants = self
            .newest
            .as_ref()
            .map(|p| GrantSet::from_grants(p.grants.clone()));
    }

    fn finish(&mut self, step_close: bool) {
        if step_close && !self.closed {
            self.closed = true;
            self.close_downstream();
            self.close_upstream();
        }
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn clip(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// An authority for a filter whose policy did not load: every connection
/// is refused with the reason.
struct NotLoaded(String);

impl Authority for NotLoaded {
    fn backend(&self) -> Result<&Backend, String> {
        Err(self.0.clone())
    }
    fn authenticate(
        &self,
        _token: &str,
        _now: u64,
    ) -> Result<crate::identity::Identity, crate::identity::AuthError> {
        Err(crate::identity::AuthError::UnknownIssuer)
    }
    fn recheck(
        &self,
        _who: &crate::identity::Identity,
        _now: u64,
    ) -> Result<(), crate::identity::AuthError> {
        Err(crate::identity::AuthError::UnknownIssuer)
    }
    fn decide_sql(&self, _who: &crate::identity::Identity, _sql: &str, _now: u64) -> Decided {
        Decided::plain(refused(&self.0))
    }
    fn decide_function_call(
        &self,
        _who: &crate::identity::Identity,
        _oid: u32,
        _now: u64,
    ) -> Decided {
        Decided::plain(refused(&self.0))
    }
}

fn refused(reason: &str) -> Decision {
    Decision {
        effect: Effect::Deny,
        rule: None,
        reason: reason.to_owned(),
    }
}

impl Context for Tcp {}

impl StreamContext for Tcp {
    fn on_new_connection(&mut self) -> Action {
        Action::Continue
    }

    fn on_downstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        if self.closed {
            return Action::Continue;
        }
        let data = self.get_downstream_data(0, data_size).unwrap_or_default();
        let now = now_secs(self);
        self.poll_newest();
        let loaded = Rc::clone(&self.loaded);
        let (step, engine) = match &*loaded {
            Loaded::Ready(engine) => {
                let authority = WithNewest {
                    engine: engine.as_ref(),
                    newest: self.newest.as_ref(),
                    newest_grants: self.newest_grants.as_ref(),
                    audit_full: !super::audit::admits(),
                };
                (
                    self.session.on_downstream(&data, &authority, now),
                    Some(engine.as_ref()),
                )
            }
            Loaded::Failed(reason) => (
                self.session.on_downstream(
                    &data,
                    &NotLoaded(format!(
                        "no valid policy is loaded; the proxy refuses every connection ({})",
                        clip(reason)
                    )),
                    now,
                ),
                None,
            ),
            Loaded::NotConfigured => (
                self.session.on_downstream(
                    &data,
                    &NotLoaded("the filter has no configuration".into()),
                    now,
                ),
                None,
            ),
        };
        if let Some(out) = &step.data {
            self.set_downstream_data(0, data_size, out);
        }
        self.flush_logs(engine);
        self.finish(step.close);
        Action::Continue
    }

    fn on_upstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        if self.closed {
            return Action::Continue;
        }
        let data = self.get_upstream_data(0, data_size).unwrap_or_default();
        let now = now_secs(self);
        let loaded = Rc::clone(&self.loaded);
        let step = match &*loaded {
            Loaded::Ready(engine) => self.session.on_upstream(&data, engine.as_ref(), now),
            Loaded::Failed(reason) => {
                self.session
                    .on_upstream(&data, &NotLoaded(clip(reason).to_owned()), now)
            }
            Loaded::NotConfigured => self.session.on_upstream(
                &data,
                &NotLoaded("the filter has no configuration".into()),
                now,
            ),
        };
        if let Some(out) = &step.data {
            self.set_upstream_data(0, data_size, out);
        }
        let engine = match &*loaded {
            Loaded::Ready(e) => Some(e.as_ref()),
            _ => None,
        };
        self.flush_logs(engine);
        self.finish(step.close);
        Action::Continue
    }

    fn on_downstream_close(&mut self, _peer_type: PeerType) {}

    fn on_upstream_close(&mut self, _peer_type: PeerType) {}

    fn on_log(&mut self) {
        self.closing = true;
        let loaded = Rc::clone(&self.loaded);
        if let Loaded::Ready(engine) = &*loaded {
            self.flush_logs(Some(engine.as_ref()));
        }
    }
}
