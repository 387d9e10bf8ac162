//! Client → server: decoding, classification and the per-body decision.

use std::sync::OnceLock;

use serde::Serialize;
use serde_json::{Map, Value};

use super::json::{clip, parse_strict, same_id};
use super::{
    McpError, BATCH_REFUSED, DENIED, INVALID_PARAMS, MAX_BATCH, MAX_BODY_BYTES, MAX_DEPTH,
    REVIEW_REQUIRED,
};
use crate::policy::eval::{Decision, Request};
use crate::policy::Effect;

/// A decoded POST body: one JSON-RPC message or a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Single(Message),
    Batch(Vec<Message>),
}

impl Body {
    /// The messages in order (one for [`Body::Single`]).
    pub fn messages(&self) -> &[Message] {
        match self {
            Body::Single(m) => std::slice::from_ref(m),
            Body::Batch(ms) => ms,
        }
    }

    pub fn is_batch(&self) -> bool {
        matches!(self, Body::Batch(_))
    }
}

/// One JSON-RPC message whose envelope has been validated: `jsonrpc` is
/// `"2.0"`; `method`, when present, is a string; `id`, when present, is a
/// string or a number (or `null`, only on an error response); a message with
/// a `method` has no `result`/`error`; a message without one is a response
/// with an `id` and exactly one of `result`/`error`; `params`, when present,
/// is an object, an array or `null`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    obj: Map<String, Value>,
}

/// The list methods whose responses are filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `tools/list` → `result.tools[].name`
    Tools,
    /// `resources/list` → `result.resources[].uri`
    Resources,
    /// `resources/templates/list` → `result.resourceTemplates[].uriTemplate`
    ResourceTemplates,
    /// `prompts/list` → `result.prompts[].name`
    Prompts,
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Resources,
        ListKind::ResourceTemplates,
        ListKind::Prompts,
    ];

    /// The JSON-RPC method.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
            ListKind::Prompts => "prompts/list",
        }
    }

    /// The array inside `result` holding the entries.
    pub fn result_key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
            ListKind::Prompts => "prompts",
        }
    }

    /// The field of each entry that names it.
    pub fn entry_key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }

    pub fn from_method(method: &str) -> Option<ListKind> {
        ListKind::ALL.into_iter().find(|k| k.method() == method)
    }
}

/// What a message is, for the filter.
#[derive(Debug, Clone, Copy)]
pub enum Class<'a> {
    /// `initialize`, `ping`, `logging/setLevel`, any `notifications/*`:
    /// passes for authenticated callers.
    Lifecycle,
    /// A list request: passes; its response is filtered.
    List(ListKind),
    /// The client's answer to a server request (sampling, elicitation,
    /// roots): passes.
    Response,
    /// Subject to the policy.
    Authorize(Request<'a>),
}

/// Parameters that do not fit the method (answered with -32602).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidParams(pub String);

fn empty_object() -> &'static Value {
    static EMPTY: OnceLock<Value> = OnceLock::new();
    EMPTY.get_or_init(|| Value::Object(Map::new()))
}

impl Message {
    /// The request id; `None` for a notification. (A response's id answers
    /// a server request: see [`Message::is_response`].)
    pub fn id(&self) -> Option<&Value> {
        self.obj.get("id")
    }

    pub fn method(&self) -> Option<&str> {
        self.obj.get("method").and_then(Value::as_str)
    }

    /// A request expecting an answer: it has a method and an id.
    pub fn is_request(&self) -> bool {
        self.method().is_some() && self.id().is_some()
    }

    /// A client response (no method).
    pub fn is_response(&self) -> bool {
        self.method().is_none()
    }

    /// The message as a JSON object.
    pub fn as_object(&self) -> &Map<String, Value> {
        &self.obj
    }

    fn params(&self, method: &str) -> Result<Option<&Map<String, Value>>, InvalidParams> {
        match self.obj.get("params") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(p)) => Ok(Some(p)),
            Some(_) => Err(InvalidParams(format!(
                "`{method}` needs `params` to be an object"
            ))),
        }
    }

    fn required_str<'a>(
        params: Option<&'a Map<String, Value>>,
        method: &str,
        path: &str,
        key: &str,
    ) -> Result<&'a str, InvalidParams> {
        params
            .and_then(|p| p.get(key))
            .and_then(Value::as_str)
            .ok_or_else(|| InvalidParams(format!("`{method}` needs `{path}` (a string)")))
    }

    /// Classifies the message. Methods are matched exactly (case-sensitive,
    /// as servers route them); whether the message has an id does not change
    /// its class, so a `tools/call` sent without an id (a notification) is
    /// still authorized.
    pub fn classify(&self) -> Result<Class<'_>, InvalidParams> {
        let Some(method) = self.method() else {
            return Ok(Class::Response);
        };
        // `server/discover` (protocol 2026-07-28) is the stateless
        // counterpart of `initialize`: versions and capabilities, no lists.
        if matches!(
            method,
            "initialize" | "server/discover" | "ping" | "logging/setLevel"
        ) || method.starts_with("notifications/")
        {
            return Ok(Class::Lifecycle);
        }
        if let Some(kind) = ListKind::from_method(method) {
            return Ok(Class::List(kind));
        }
        let req = match method {
            "tools/call" => {
                let p = self.params(method)?;
                let name = Self::required_str(p, method, "params.name", "name")?;
                let arguments = match p.and_then(|p| p.get("arguments")) {
                    // Absent and null both mean "no arguments" (the Python
                    // SDK accepts null; servers treat it as absent).
                    None | Some(Value::Null) => empty_object(),
                    Some(v @ Value::Object(_)) => v,
                    Some(_) => {
                        return Err(InvalidParams(
                            "`tools/call` needs `params.arguments` to be an object".into(),
                        ))
                    }
                };
                Request::ToolCall { name, arguments }
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let p = self.params(method)?;
                Request::Resource {
                    uri: Self::required_str(p, method, "params.uri", "uri")?,
                }
            }
            "prompts/get" => {
                let p = self.params(method)?;
                Request::Prompt {
                    name: Self::required_str(p, method, "params.name", "name")?,
                }
            }
            "completion/complete" => {
                let p = self.params(method)?;
                let r = match p.and_then(|p| p.get("ref")) {
                    Some(Value::Object(r)) => r,
                    _ => {
                        return Err(InvalidParams(
                            "`completion/complete` needs `params.ref` (an object)".into(),
                        ))
                    }
                };
                match r.get("type").and_then(Value::as_str) {
                    Some("ref/prompt") => Request::Prompt {
                        name: Self::required_str(Some(r), method, "params.ref.name", "name")?,
                    },
                    Some("ref/resource") => Request::Resource {
                        uri: Self::required_str(Some(r), method, "params.ref.uri", "uri")?,
                    },
                    _ => {
                        return Err(InvalidParams(
                            "`completion/complete` needs `params.ref.type` to be \
                             `ref/prompt` or `ref/resource`"
                                .into(),
                        ))
                    }
                }
            }
            other => Request::McpMethod { method: other },
        };
        Ok(Class::Authorize(req))
    }
}

/// Decodes a POST body strictly (see the module documentation for every
/// rule). Errors map to -32700 ([`McpError::code`]) or -32600.
pub fn parse_body(body: &[u8]) -> Result<Body, McpError> {
    parse_body_limited(body, MAX_BODY_BYTES)
}

/// [`parse_body`] with another size cap (tests use small ones).
pub(crate) fn parse_body_limited(body: &[u8], max_bytes: usize) -> Result<Body, McpError> {
    if body.len() > max_bytes {
        return Err(McpError::TooLarge(body.len(), max_bytes));
    }
    let text = std::str::from_utf8(body).map_err(|e| McpError::Utf8(e.valid_up_to()))?;
    if text.trim_matches([' ', '\t', '\n', '\r']).is_empty() {
        return Err(McpError::Json("empty body".into()));
    }
    let value = parse_strict(text, MAX_DEPTH).map_err(|e| McpError::Json(e.to_string()))?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(McpError::Envelope("empty batch".into()));
            }
            if items.len() > MAX_BATCH {
                return Err(McpError::Envelope(format!(
                    "batch of {} messages exceeds the limit of {MAX_BATCH}",
                    items.len()
                )));
            }
            let mut msgs = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let m =
                    message(item).map_err(|e| McpError::Envelope(format!("message {i}: {e}")))?;
                if m.is_request() {
                    if let Some(id) = m.id() {
                        if msgs.iter().any(|o: &Message| {
                            o.is_request() && o.id().is_some_and(|oid| same_id(oid, id))
                        }) {
                            return Err(McpError::Envelope(format!(
                                "message {i}: duplicate request id {} in the batch",
                                clip(&id.to_string(), 64)
                            )));
                        }
                    }
                }
                msgs.push(m);
            }
            Ok(Body::Batch(msgs))
        }
        other => message(other).map(Body::Single).map_err(McpError::Envelope),
    }
}

fn message(value: Value) -> Result<Message, String> {
    let Value::Object(obj) = value else {
        return Err("a JSON-RPC message must be an object".into());
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err("`jsonrpc` must be \"2.0\"".into());
    }
    let has_result = obj.contains_key("result");
    let has_error = obj.contains_key("error");
    let id_ok = |null_ok: bool| match obj.get("id") {
        None => Ok(()),
        Some(Value::String(_) | Value::Number(_)) => Ok(()),
        Some(Value::Null) if null_ok => Ok(()),
        Some(_) => Err("`id` must be a string or a number".to_string()),
    };
    match obj.get("method") {
        Some(Value::String(_)) => {
            id_ok(false)?;
            if has_result || has_error {
                return Err("a request cannot carry `result` or `error`".into());
            }
            match obj.get("params") {
                None | Some(Value::Object(_) | Value::Array(_) | Value::Null) => {}
                Some(_) => return Err("`params` must be an object or an array".into()),
            }
        }
        Some(_) => return Err("`method` must be a string".into()),
        None => {
            if has_result == has_error {
                return Err(
                    "a message needs a `method`, or exactly one of `result` and `error`".into(),
                );
            }
            if !obj.contains_key("id") {
                return Err("a response needs an `id`".into());
            }
            id_ok(has_error)?;
        }
    }
    Ok(Message { obj })
}

/// One policy decision taken while deciding a body (for logs and audit).
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// The message's id; `None` for a notification.
    pub id: Option<Value>,
    /// The JSON-RPC method.
    pub method: String,
    /// What was asked, e.g. ``tool `deploy` `` ([`Request::describe`]).
    pub item: String,
    /// The tool, resource URI or prompt name, when there is one.
    pub name: Option<String>,
    /// SHA-256 (16 hex) of a tool call's canonical arguments.
    pub arguments_digest: Option<String>,
    pub decision: Decision,
}

/// What the host does with a POST body.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyOutcome {
    /// Forward the body unchanged. `lists` are the ids of list requests
    /// whose responses must be filtered (empty: the response needs no
    /// filtering).
    Forward { lists: Vec<(Value, ListKind)> },
    /// Answer the client with this body (`content-type: application/json`
    /// unless empty; see [`super::REPLY_CONTENT_TYPE`]); the upstream never
    /// sees the request.
    Reply { status: u16, body: Vec<u8> },
}

/// [`BodyOutcome`] plus what led to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: BodyOutcome,
    /// Every policy decision taken, in message order (all messages of a
    /// batch are decided, even after a refusal).
    pub decided: Vec<Decided>,
    /// Why the body was answered locally (for the log); `None` on forward.
    pub reason: Option<String>,
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    error: &'a RpcError,
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<ErrorData>,
}

/// `error.data` of a policy refusal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorData {
    /// The deciding rule; `null` for the default deny.
    pub rule: Option<String>,
    /// `"deny"` or `"review"`.
    pub effect: &'static str,
    pub reason: String,
    /// Review: the request id to approve (`pinhole approve <request>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// The request id a review refusal names (`… request rq-<16 hex> …`).
pub fn request_of(reason: &str) -> Option<String> {
    let at = reason.find("request rq-")? + "request ".len();
    let id = reason.get(at..at + 19)?;
    id.get(3..)
        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|_| id.to_owned())
}

const FALLBACK: &[u8] =
    br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"pinhole: internal error"}}"#;

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| FALLBACK.to_vec())
}

/// `{"jsonrpc":"2.0","id":<id>,"error":<error>}`.
pub fn error_response(id: &Value, error: &RpcError) -> Vec<u8> {
    to_json(&ErrorResponse {
        jsonrpc: "2.0",
        id,
        error,
    })
}

/// The JSON-RPC error for a refusing decision (deny → -32001, review →
/// -32002). An `allow` decision yields a deny-shaped error too: callers only
/// ask for refusals.
pub fn decision_error(d: &Decision) -> RpcError {
    let (code, message) = match (d.effect, &d.rule) {
        (Effect::Review, Some(rule)) => (
            REVIEW_REQUIRED,
            format!("pinhole: approval required by rule `{rule}`: {}", d.reason),
        ),
        (Effect::Review, None) => (
            REVIEW_REQUIRED,
            format!("pinhole: approval required: {}", d.reason),
        ),
        (_, Some(rule)) => (
            DENIED,
            format!("pinhole: denied by rule `{rule}`: {}", d.reason),
        ),
        (_, None) => (DENIED, format!("pinhole: denied: {}", d.reason)),
    };
    RpcError {
        code,
        message,
        data: Some(ErrorData {
            rule: d.rule.clone(),
            effect: if d.effect == Effect::Review {
                "review"
            } else {
                "deny"
            },
            reason: d.reason.clone(),
            request: if d.effect == Effect::Review {
                request_of(&d.reason)
            } else {
                None
            },
        }),
    }
}

fn invalid_params_error(p: &InvalidParams) -> RpcError {
    RpcError {
        code: INVALID_PARAMS,
        message: format!("pinhole: invalid params: {}", p.0),
        data: None,
    }
}

fn batch_refused_error() -> RpcError {
    RpcError {
        code: BATCH_REFUSED,
        message: "pinhole: batch refused: another message in the batch was denied".into(),
        data: None,
    }
}

/// The reply to a body that is not a valid JSON-RPC message or batch:
/// HTTP 400, id `null`, -32700 or -32600.
pub fn protocol_error_reply(e: &McpError) -> BodyOutcome {
    let kind = if e.code() == super::PARSE_ERROR {
        "parse error"
    } else {
        "invalid request"
    };
    BodyOutcome::Reply {
        status: 400,
        body: error_response(
            &Value::Null,
            &RpcError {
                code: e.code(),
                message: format!("pinhole: {kind}: {e}"),
                data: None,
            },
        ),
    }
}

/// Checks a POST's `content-type` and `content-encoding` before its body is
/// decided. The body is decided as the UTF-8 JSON it is on the wire, so the
/// server must read it the same way:
/// - `content-encoding` absent or `identity`: a compressed body (`gzip`,
///   `br`, `deflate`, …) is never decoded here, so it could not be decided;
///   and a body that parses as JSON while labelled compressed would be read
///   differently by a server that decompresses requests;
/// - `content-type` exactly one value of media type `application/json`
///   (any case, parameters allowed), its `charset` if any `utf-8`: a server
///   honouring `charset=utf-16` or treating `text/plain` or a form body its
///   own way would read other messages.
///
/// `Err`: HTTP 415 with a JSON-RPC -32600 error (`id: null`), nothing
/// forwarded; the verdict's `reason` is for the log.
pub fn check_post_headers(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<(), Verdict> {
    let refuse = |what: String| Verdict {
        outcome: BodyOutcome::Reply {
            status: 415,
            body: error_response(
                &Value::Null,
                &RpcError {
                    code: super::INVALID_REQUEST,
                    message: format!("pinhole: unsupported media type: {what}"),
                    data: None,
                },
            ),
        },
        decided: Vec::new(),
        reason: Some(format!("unsupported media type: {what}")),
    };
    if let Some(enc) = content_encoding {
        if enc
            .split(',')
            .any(|c| !c.trim().eq_ignore_ascii_case("identity"))
        {
            return Err(refuse(format!(
                "content-encoding `{}`: request bodies must be sent uncompressed",
                clip(enc, 40)
            )));
        }
    }
    let Some(ct) = content_type else {
        return Err(refuse(
            "no content-type: MCP requests are `application/json`".into(),
        ));
    };
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if ct.contains(',') || !media.eq_ignore_ascii_case("application/json") {
        return Err(refuse(format!(
            "content-type `{}`: MCP requests are `application/json`",
            clip(ct, 60)
        )));
    }
    for param in parts {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        let v = v.trim().trim_matches('"');
        if k.trim().eq_ignore_ascii_case("charset")
            && !v.eq_ignore_ascii_case("utf-8")
            && !v.eq_ignore_ascii_case("utf8")
        {
            return Err(refuse(format!(
                "content-type `{}`: the body must be UTF-8",
                clip(ct, 60)
            )));
        }
    }
    Ok(())
}

/// The reply to a POST without a body (-32700, HTTP 400).
pub fn empty_body_reply() -> BodyOutcome {
    protocol_error_reply(&McpError::Json("empty body".into()))
}

/// Decides a POST body; see [`evaluate_body`] for the decisions taken.
pub fn decide_body(body: &[u8], decide: &mut dyn FnMut(&Request) -> Decision) -> BodyOutcome {
    evaluate_body(body, decide).outcome
}

/// Decides a POST body: parses it once, asks `decide` about every message
/// subject to authorization, and says whether to forward it (unchanged) or
/// answer the client. See the module documentation for the batch rules.
pub fn evaluate_body(body: &[u8], decide: &mut dyn FnMut(&Request) -> Decision) -> Verdict {
    let parsed = match parse_body(body) {
        Ok(b) => b,
        Err(e) => {
            return Verdict {
                outcome: protocol_error_reply(&e),
                decided: Vec::new(),
                reason: Some(format!("malformed body: {e}")),
            }
        }
    };
    let msgs = parsed.messages();
    let mut lists = Vec::new();
    let mut decided = Vec::new();
    // Per message: the error it gets if the body is refused.
    let mut refusals: Vec<Option<RpcError>> = Vec::with_capacity(msgs.len());
    let mut reasons: Vec<String> = Vec::new();
    for m in msgs {
        let method = m.method().unwrap_or_default();
        let refusal = match m.classify() {
            Ok(Class::Lifecycle | Class::Response) => None,
            Ok(Class::List(kind)) => {
                if let Some(id) = m.id() {
                    lists.push((id.clone(), kind));
                }
                None
            }
            Ok(Class::Authorize(req)) => {
                let d = decide(&req);
                let refusal = if d.allowed() {
                    None
                } else {
                    reasons.push(format!("{}: {}", req.describe(), d.reason));
                    Some(decision_error(&d))
                };
                let (name, arguments_digest) = match req {
                    Request::ToolCall { name, arguments } => (
                        Some(name.to_owned()),
                        Some(crate::audit::arguments_digest(arguments)),
                    ),
                    Request::Resource { uri } => (Some(uri.to_owned()), None),
                    Request::Prompt { name } => (Some(name.to_owned()), None),
                    _ => (None, None),
                };
                decided.push(Decided {
                    id: m.id().cloned(),
                    method: method.to_string(),
                    item: req.describe(),
                    name,
                    arguments_digest,
                    decision: d,
                });
                refusal
            }
            Err(p) => {
                reasons.push(format!("invalid params: {}", p.0));
                Some(invalid_params_error(&p))
            }
        };
        refusals.push(refusal);
    }
    if refusals.iter().all(Option::is_none) {
        return Verdict {
            outcome: BodyOutcome::Forward { lists },
            decided,
            reason: None,
        };
    }
    let reason = Some(reasons.join("; "));
    let outcome = match &parsed {
        Body::Single(m) => match (m.id(), refusals.first().and_then(Option::as_ref)) {
            (Some(id), Some(err)) => BodyOutcome::Reply {
                status: 200,
                body: error_response(id, err),
            },
            // A refused notification cannot be answered: accept and drop it.
            _ => accepted(),
        },
        Body::Batch(ms) => {
            // The whole batch is refused: every request gets an error (its
            // own, or "batch refused"); notifications and client responses
            // get none and are dropped.
            let fallback = batch_refused_error();
            let mut out: Vec<u8> = Vec::with_capacity(128 * ms.len());
            out.push(b'[');
            let mut any = false;
            for (m, refusal) in ms.iter().zip(&refusals) {
                let (Some(id), true) = (m.id(), m.is_request()) else {
                    continue;
                };
                if any {
                    out.push(b',');
                }
                any = true;
                out.extend(error_response(id, refusal.as_ref().unwrap_or(&fallback)));
            }
            out.push(b']');
            if any {
                BodyOutcome::Reply {
                    status: 200,
                    body: out,
                }
            } else {
                accepted()
            }
        }
    };
    Verdict {
        outcome,
        decided,
        reason,
    }
}

fn accepted() -> BodyOutcome {
    BodyOutcome::Reply {
        status: 202,
        body: Vec::new(),
    }
}
