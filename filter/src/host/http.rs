//! HTTP filter context: authentication, MCP/HTTP authorization and list
//! response filtering, wired to Envoy's HTTP callbacks.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::Loaded;
use crate::audit::{AuditEvent, AuditIdentity, Command};
use crate::engine::{self, Approval, Engine, Reply};
use crate::identity::Identity;
use crate::mcp::{self, BodyOutcome, ListKind, SseFilter};
use crate::policy::eval::{Decision, Item, Request};
use crate::policy::{Effect, Protocol};

/// How the response must be treated.
enum ResponseMode {
    /// Untouched (no list request pending).
    Pass,
    /// Buffer the JSON body and filter it at the end of the stream.
    Json,
    /// Rewrite SSE events as they stream.
    Sse(Box<SseFilter>),
    /// The response cannot be filtered: replace it with an error.
    Refuse(String),
    /// An SSE stream failed mid-way: the error event was sent, drop the rest.
    Swallow,
}

pub(crate) struct Http {
    id: u32,
    loaded: Rc<Loaded>,
    identity: Option<Identity>,
    /// List requests of this POST whose responses must be filtered.
    lists: Vec<(serde_json::Value, ListKind)>,
    response: ResponseMode,
    /// The caller's request needs its body before a decision.
    awaiting_body: bool,
    /// An MCP GET: filter list-shaped responses on its event stream.
    filter_get_stream: bool,
    /// `x-request-id`, read in the headers callback (request headers are
    /// not readable from later callbacks).
    request_id: Option<String>,
    /// The response callbacks have started.
    responding: bool,
    /// What to mask in this caller's responses (policy `masking:`).
    masker: Option<Rc<crate::mask::Masker>>,
    /// The last allowed call of this request, for the "masked" audit event.
    last_call: Option<(String, Option<String>, Option<String>, Decision)>,
    /// `source.address`, read once (a host call) when first needed.
    source: std::cell::OnceCell<String>,
    /// The host clock when the request headers arrived (ms since the Unix
    /// epoch), read once: authentication, the request's decisions and
    /// their audit events all use it (each read is a host call).
    started_ms: Option<u64>,
}

impl Http {
    pub(crate) fn new(id: u32, loaded: Rc<Loaded>) -> Self {
        Http {
            id,
            loaded,
            identity: None,
            lists: Vec::new(),
            response: ResponseMode::Pass,
            awaiting_body: false,
            filter_get_stream: false,
            masker: None,
            last_call: None,
            request_id: None,
            responding: false,
            source: std::cell::OnceCell::new(),
            started_ms: None,
        }
    }

    /// The request's time in ms (see `started_ms`); the clock when the
    /// request headers were not seen (response-side events).
    fn now_ms(&self) -> u64 {
        self.started_ms
            .unwrap_or_else(|| super::audit::now_ms(self))
    }

    fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    fn reply(&self, r: Reply) -> Action {
        let headers: Vec<(&str, &str)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.send_http_response(r.status, headers, Some(&r.body));
        Action::Pause
    }

    fn source(&self) -> &str {
        self.source.get_or_init(|| {
            self.get_property(vec!["source", "address"])
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_else(|| "-".into())
        })
    }

    /// One audit event (Envoy log + filter state `wasm.pinhole_audit`).
    fn audit(
        &self,
        engine: &Engine,
        who: Option<&Identity>,
        command: Command<'_>,
        d: &Decision,
        approval: Option<&Approval>,
    ) {
        let line = self.audit_event(engine, who, command, d, 0, approval);
        if let Some(a) = approval.filter(|a| a.grant.is_none()) {
            super::notify::review(a, d, line.as_deref());
        }
    }

    fn audit_masked(&self, engine: &Engine, command: Command<'_>, d: &Decision, masked: u64) {
        self.audit_event(engine, self.identity.as_ref(), command, d, masked, None);
    }

    fn audit_event(
        &self,
        engine: &Engine,
        who: Option<&Identity>,
        command: Command<'_>,
        d: &Decision,
        masked: u64,
        approval: Option<&Approval>,
    ) -> Option<String> {
        let source = self.source();
        let conn = self.id.to_string();
        let protocol = engine.target.protocol;
        let mut event = AuditEvent::decided(
            self.now_ms(),
            &engine.target.name,
            protocol,
            command,
            d,
            masked,
        );
        event.conn = Some(&conn);
        event.request = self.request_id.as_deref();
        event.source = Some(source);
        event.identity = who.map(|w| {
            let mut i = AuditIdentity::of(w);
            if let Some(g) = approval.and_then(|a| a.grant.as_ref()) {
                i.grant = Some(&g.id);
            }
            i
        });
        event.approval = approval;
        let line = super::audit::emit(&event)?;
        if !self.responding {
            // Filter state is written while the request is processed.
            self.set_property(vec!["pinhole_audit"], Some(line.as_bytes()));
        }
        Some(line)
    }

    /// Count a decision; log it if refused (allows at debug level). `what`
    /// is formatted only when a line is written.
    fn log_decision_for(
        &self,
        engine: &Engine,
        who: Option<&Identity>,
        what: &dyn std::fmt::Display,
        d: &Decision,
    ) {
        super::metrics::decision(d.effect, &engine.target.name, d.rule.as_deref(), 1);
        // Every decision is in the audit trail; the readable line is for
        // refusals (and for allows at debug level), not a second log write
        // on every allowed call.
        if d.effect == Effect::Allow && !log::log_enabled!(log::Level::Debug) {
            return;
        }
        let line = format!(
            "pinhole: decision={} rule={} target={} subject={} roles={} source={} request={} op=\"{}\" reason=\"{}\"",
            d.effect.as_str(),
            d.rule.as_deref().unwrap_or("-"),
            engine.target.name,
            who.map(|i| engine::header_safe(&i.token.sub)).unwrap_or_else(|| "-".into()),
            who.map(|i| i.roles.join(",")).unwrap_or_default(),
            self.source(),
            self.id,
            engine::header_safe(&what.to_string()),
            engine::header_safe(&d.reason),
        );
        if d.effect == Effect::Allow {
            log::debug!("{line}");
        } else {
            log::warn!("{line}");
        }
    }

    fn on_headers(&mut self, engine: &Engine, end_of_stream: bool) -> Action {
        // One copy of the request headers serves every read below, and one
        // write replaces them when the request goes on (each read or write
        // of one header would be a host call, and host calls are most of
        // what a Wasm filter costs per request: docs/benchmarks.md). The
        // first value of a name is what `get_http_request_header` returns;
        // Envoy's names are lowercase.
        let headers = self.get_http_request_headers();
        let header = |key: &str| {
            headers
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        self.request_id = header("x-request-id").map(str::to_owned);
        let now_ms = super::audit::now_ms(self);
        self.started_ms = Some(now_ms);
        if !super::audit::admits() {
            log::warn!(
                "pinhole: request refused: the audit buffer is full (strict mode) target={} request={}",
                engine.target.name,
                self.id
            );
            return self.reply(engine::unavailable(&engine::audit_full_decision().reason));
        }
        let who = match engine.authenticate(header("authorization"), now_ms / 1000) {
            Ok(who) => who,
            Err(e) => {
                super::metrics::inc(&crate::metrics::auth_failure(
                    e.reason(),
                    &engine.target.name,
                ));
                log::warn!(
                    "pinhole: authentication failed target={} source={} request={} reason=\"{}\"",
                    engine.target.name,
                    self.source(),
                    self.id,
                    e.reason()
                );
                return self.reply(engine::unauthorized(&e));
            }
        };
        match engine.masker(&who.roles) {
            Ok(m) => self.masker = m,
            Err(e) => return self.reply(engine::unavailable(&e)),
        }
        let method = header(":method").unwrap_or_default();
        // Decided here, before the identity is stored for the body and
        // response callbacks.
        let http_decision = match engine.target.protocol {
            Protocol::Http => {
                Some(self.decide_http(engine, &who, method, header(":path").unwrap_or_default()))
            }
            _ => None,
        };
        // What the upstream receives: the caller's headers without any
        // client-sent `x-pinhole-*` (never trusted), without the token
        // (unless the target forwards it), without `accept-encoding` when
        // the response must be read (masking, list filtering: a compressed
        // one is refused, never passed), plus the verified identity.
        let mcp_post = engine.target.protocol == Protocol::Mcp && method == "POST";
        let mcp_get = engine.target.protocol == Protocol::Mcp && method == "GET";
        let drop_encoding = self.masker.is_some() || mcp_post || mcp_get;
        let identity = engine.identity_headers(&who);
        let upstream_headers = engine::upstream_header_edits(
            &headers,
            !engine.target.forward_token,
            drop_encoding,
            &identity,
        );
        self.identity = Some(who);

        match engine.target.protocol {
            Protocol::Http => match http_decision {
                Some(Ok(())) => {
                    self.edit_request_headers(&upstream_headers);
                    Action::Continue
                }
                Some(Err(reply)) => self.reply(reply),
                None => self.reply(engine::unavailable("no decision")),
            },
            Protocol::Mcp => {
                if mcp_get {
                    // The server-to-client SSE stream (and its replay with
                    // Last-Event-ID) can carry list responses: filter it.
                    self.filter_get_stream = true;
                    self.edit_request_headers(&upstream_headers);
                    return Action::Continue;
                }
                if !mcp_post {
                    // DELETE ends a session: passes for authenticated callers.
                    self.edit_request_headers(&upstream_headers);
                    return Action::Continue;
                }
                // The body is decided as uncompressed UTF-8 JSON: refuse any
                // other coding or media type before reading it.
                if let Err(v) = mcp::check_post_headers(
                    header("content-type"),
                    header("content-encoding"),
                ) {
                    log::warn!(
                        "pinhole: MCP request answered by the filter target={} request={}: {}",
                        engine.target.name,
                        self.id,
                        v.reason.as_deref().map(engine::header_safe).unwrap_or_default()
                    );
                    return self.outcome(v.outcome);
                }
                if end_of_stream {
                    return self.outcome(mcp::empty_body_reply());
                }
                self.edit_request_headers(&upstream_headers);
                self.awaiting_body = true;
                // Not Pause: proxy-wasm turns a paused headers callback into
                // StopAllIteration, and the body callbacks would never run.
                // The headers go on to the next filter; the `buffer` filter
                // placed after pinhole (envoy/mcp.yaml) holds them until the
                // body is complete, so a refused request never reaches the
                // router.
                Action::Continue
            }
            Protocol::Postgres => self.reply(engine::unavailable(&format!(
                "target `{}` is a postgres target; attach this filter to a postgres listener as a network filter",
                engine.target.name
            ))),
        }
    }

    fn edit_request_headers(&self, edits: &[(&str, Option<&str>)]) {
        for (name, value) in edits {
            self.set_http_request_header(name, *value);
        }
    }

    /// A plain-HTTP request: method + path against the target's rules.
    fn decide_http(
        &self,
        engine: &Engine,
        who: &Identity,
        method: &str,
        raw_path: &str,
    ) -> Result<(), Reply> {
        let d = match engine::http_rule_path(raw_path) {
            Ok(path) => {
                let decided =
                    engine.decide_at(who, &Request::Http { method, path }, self.now_secs());
                let d = &decided.decision;
                self.log_decision_for(engine, Some(who), &format_args!("{method} {path}"), d);
                self.audit(
                    engine,
                    Some(who),
                    Command::http(method, path),
                    d,
                    decided.approval.as_ref(),
                );
                decided.decision
            }
            Err(why) => {
                let d = Decision {
                    effect: Effect::Deny,
                    rule: None,
                    reason: why,
                };
                self.log_decision_for(engine, Some(who), &format_args!("{method} -"), &d);
                self.audit(engine, Some(who), Command::http(method, raw_path), &d, None);
                d
            }
        };
        if d.allowed() {
            Ok(())
        } else {
            Err(engine::forbidden(&d))
        }
    }

    fn on_body(&mut self, engine: &Engine, body: &[u8]) -> Action {
        // Borrowed out of `self` for the decision (no copy of the roles);
        // put back before anything else reads it.
        let Some(who) = self.identity.take() else {
            return self.reply(engine::unavailable("identity lost"));
        };
        let now = self.now_secs();
        // Per decision, in order: a review rule's hold or approval, and a
        // held tool call's arguments (for the approver).
        let mut side: Vec<(Option<Approval>, Option<serde_json::Value>)> = Vec::new();
        let verdict = mcp::evaluate_body(body, &mut |req: &Request| {
            let decided = engine.decide_at(&who, req, now);
            let held = decided.approval.as_ref().is_some_and(|a| a.grant.is_none());
            let arguments = match req {
                Request::ToolCall { arguments, .. } if held => Some((*arguments).clone()),
                _ => None,
            };
            side.push((decided.approval, arguments));
            decided.decision
        });
        for (i, d) in verdict.decided.iter().enumerate() {
            let (approval, arguments) = match side.get(i) {
                Some((a, args)) => (a.as_ref(), args.as_ref()),
                None => (None, None),
            };
            self.log_decision_for(
                engine,
                Some(&who),
                &format_args!("{} {}", d.method, d.item),
                &d.decision,
            );
            let mut command = Command::mcp_method(&d.method);
            match d.method.as_str() {
                "tools/call" => command.tool = d.name.as_deref(),
                "prompts/get" => command.prompt = d.name.as_deref(),
                m if m.starts_with("resources/") => command.resource = d.name.as_deref(),
                _ => {}
            }
            command.arguments_digest = d.arguments_digest.clone();
            command.arguments = arguments.filter(|a| {
                serde_json::to_vec(a).map_or(0, |v| v.len())
                    <= crate::audit::MAX_REVIEW_ARGUMENTS_BYTES
            });
            self.audit(engine, Some(&who), command, &d.decision, approval);
        }
        if self.masker.is_some() {
            // The calls' results are read and masked like list responses
            // (their ids join the pending ones, so a result that cannot be
            // masked is answered with an error for its id).
            for d in verdict.decided.iter().filter(|d| d.decision.allowed()) {
                self.last_call = Some((
                    d.method.clone(),
                    d.name.clone(),
                    d.arguments_digest.clone(),
                    d.decision.clone(),
                ));
            }
        }
        let call_ids: Vec<serde_json::Value> = if self.masker.is_some() {
            verdict
                .decided
                .iter()
                .filter(|d| d.decision.allowed())
                .filter_map(|d| d.id.clone())
                .collect()
        } else {
            Vec::new()
        };
        if let Some(reason) = &verdict.reason {
            log::warn!(
                "pinhole: MCP request answered by the filter target={} request={}: {reason}",
                engine.target.name,
                self.id
            );
        }
        self.identity = Some(who);
        let action = self.outcome(verdict.outcome);
        for id in call_ids {
            if !self.lists.iter().any(|(l, _)| *l == id) {
                self.lists.push((id, ListKind::Tools));
            }
        }
        action
    }

    fn outcome(&mut self, outcome: BodyOutcome) -> Action {
        match outcome {
            BodyOutcome::Forward { lists } => {
                self.lists = lists;
                Action::Continue
            }
            BodyOutcome::Reply { status, body } => {
                let headers = if body.is_empty() {
                    vec![]
                } else {
                    vec![("content-type".into(), mcp::REPLY_CONTENT_TYPE.into())]
                };
                self.reply(Reply {
                    status: u32::from(status),
                    headers,
                    body,
                })
            }
        }
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let loaded = self.loaded.clone();
        match &*loaded {
            Loaded::Ready(engine) => self.on_headers(engine, end_of_stream),
            Loaded::Failed(reason) => self.reply(engine::unavailable(reason)),
            Loaded::NotConfigured => self.reply(engine::unavailable("no policy configured")),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.awaiting_body {
            return Action::Continue;
        }
        if !end_of_stream {
            // Buffer until the whole JSON-RPC body is here (Envoy caps it at
            // the connection buffer limit and answers 413 beyond).
            return Action::Pause;
        }
        self.awaiting_body = false;
        let loaded = self.loaded.clone();
        let Loaded::Ready(engine) = &*loaded else {
            return self.reply(engine::unavailable("no policy loaded"));
        };
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        self.on_body(engine, &body)
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        if self.awaiting_body {
            // A body ended by trailers: decide on what was buffered.
            self.awaiting_body = false;
            let loaded = self.loaded.clone();
            let Loaded::Ready(engine) = &*loaded else {
                return self.reply(engine::unavailable("no policy loaded"));
            };
            let body = self
                .get_http_request_body(0, usize::MAX)
                .unwrap_or_default();
            return self.on_body(engine, &body);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        self.responding = true;
        if self.lists.is_empty() && !self.filter_get_stream && self.masker.is_none() {
            return Action::Continue;
        }
        let status = self.get_http_response_header(":status").unwrap_or_default();
        if !status.starts_with('2') || end_of_stream {
            // Errors and empty answers carry no list.
            return Action::Continue;
        }
        let encoding = self
            .get_http_response_header("content-encoding")
            .unwrap_or_default();
        let ctype = self
            .get_http_response_header("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        self.response = if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("identity") {
            ResponseMode::Refuse(format!(
                "the upstream answered a list request with content-encoding `{encoding}`; \
                 pinhole must read list responses to filter them"
            ))
        } else if ctype.starts_with("application/json") {
            ResponseMode::Json
        } else if self.plain_http() {
            ResponseMode::Refuse(format!(
                "responses of this target must be masked for the caller, and pinhole masks JSON \
                 bodies only; the upstream answered with content-type `{ctype}`"
            ))
        } else if ctype.starts_with("text/event-stream") {
            let filter = SseFilter::new(self.lists.clone());
            ResponseMode::Sse(Box::new(match &self.masker {
                Some(m) => filter.with_masker(Rc::clone(m)),
                None => filter,
            }))
        } else {
            ResponseMode::Refuse(format!(
                "the upstream answered a list request with content-type `{ctype}`"
            ))
        };
        // The body will change: Envoy re-frames it (chunked on HTTP/1.1).
        // Headers cannot wait for the body in proxy-wasm (pausing here stops
        // the body callbacks), so everything about them is settled now.
        self.set_http_response_header("content-length", None);
        if let ResponseMode::Refuse(reason) = &self.response {
            log::error!(
                "pinhole: refusing a list response request={}: {reason}",
                self.id
            );
            self.set_http_response_header(":status", Some("502"));
            self.set_http_response_header("content-type", Some(mcp::REPLY_CONTENT_TYPE));
            self.set_http_response_header("content-encoding", None);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Most responses (every tools/call) pass untouched: nothing to do.
        if matches!(self.response, ResponseMode::Pass) {
            return Action::Continue;
        }
        let loaded = self.loaded.clone();
        let who = self.identity.clone();
        // Fail closed: without a policy and an identity nothing is visible.
        let visible = |item: Item| match (&*loaded, &who) {
            (Loaded::Ready(engine), Some(who)) => engine.visible(who, item),
            _ => false,
        };
        let mode = std::mem::replace(&mut self.response, ResponseMode::Pass);
        let (next, action) = self.respond(mode, body_size, end_of_stream, &visible);
        self.response = next;
        action
    }
}

impl Http {
    /// A plain-HTTP target (bodies are not JSON-RPC).
    fn plain_http(&self) -> bool {
        matches!(&*self.loaded, Loaded::Ready(e) if e.target.protocol == Protocol::Http)
    }

    /// `n` values were masked in this response: count and audit them.
    fn masked(&self, n: usize) {
        if n == 0 {
            return;
        }
        let Loaded::Ready(engine) = &*self.loaded else {
            return;
        };
        super::metrics::add(
            &crate::metrics::masked_values(&engine.target.name),
            n as u64,
        );
        if let Some((method, name, digest, d)) = &self.last_call {
            let mut command = Command::mcp_method(method);
            match method.as_str() {
                "tools/call" => command.tool = name.as_deref(),
                "prompts/get" => command.prompt = name.as_deref(),
                m if m.starts_with("resources/") => command.resource = name.as_deref(),
                _ => {}
            }
            command.arguments_digest = digest.clone();
            self.audit_masked(engine, command, d, n as u64);
        }
    }

    fn respond(
        &self,
        mode: ResponseMode,
        body_size: usize,
        end_of_stream: bool,
        visible: &dyn Fn(Item) -> bool,
    ) -> (ResponseMode, Action) {
        match mode {
            ResponseMode::Pass => (ResponseMode::Pass, Action::Continue),
            ResponseMode::Swallow => {
                self.set_http_response_body(0, body_size, b"");
                (ResponseMode::Swallow, Action::Continue)
            }
            ResponseMode::Sse(mut filter) => {
                let chunk = self
                    .get_http_response_body(0, body_size)
                    .unwrap_or_default();
                match filter.push(&chunk, end_of_stream, visible) {
                    Ok(out) => {
                        self.masked(filter.take_masked());
                        self.set_http_response_body(0, body_size, &out);
                        (ResponseMode::Sse(filter), Action::Continue)
                    }
                    Err(e) => {
                        // Headers are gone already: end the list with an
                        // error event and drop the rest of the stream.
                        log::error!(
                            "pinhole: refusing an SSE list response request={}: {e}",
                            self.id
                        );
                        let out = filter.error_event(&e.to_string());
                        self.set_http_response_body(0, body_size, &out);
                        (ResponseMode::Swallow, Action::Continue)
                    }
                }
            }
            ResponseMode::Json => {
                if !end_of_stream {
                    return (ResponseMode::Json, Action::Pause);
                }
                let body = self
                    .get_http_response_body(0, body_size)
                    .unwrap_or_default();
                let filtered = match (&self.masker, self.plain_http()) {
                    (Some(m), true) => mcp::mask_json_body(&body, m),
                    _ => mcp::filter_json_response_masked(
                        &body,
                        &self.lists,
                        visible,
                        self.masker.as_deref(),
                    ),
                };
                match filtered {
                    Ok((Some(new_body), n)) => {
                        self.masked(n);
                        self.set_http_response_body(0, body_size, &new_body)
                    }
                    Ok((None, _)) => {}
                    Err(e) => {
                        // The status line is gone already: the body becomes
                        // JSON-RPC errors for the pending list requests.
                        log::error!(
                            "pinhole: refusing a JSON list response request={}: {e}",
                            self.id
                        );
                        let out = mcp::refused_json_response(&self.lists, &e.to_string());
                        self.set_http_response_body(0, body_size, &out);
                    }
                }
                (ResponseMode::Pass, Action::Continue)
            }
            ResponseMode::Refuse(reason) => {
                // Nothing of the upstream body goes through; the error body
                // goes out with the last chunk.
                let out = if end_of_stream {
                    mcp::refused_json_response(&self.lists, &reason)
                } else {
                    Vec::new()
                };
                self.set_http_response_body(0, body_size, &out);
                (ResponseMode::Refuse(reason), Action::Continue)
            }
        }
    }
}
