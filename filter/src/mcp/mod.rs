//! MCP (Model Context Protocol) over Streamable HTTP: decoding and deciding
//! client POST bodies, and filtering list responses (JSON and SSE).
//!
//! Host-free: the host layer hands bodies in and gets bytes and decisions
//! back; nothing here calls proxy-wasm.
//!
//! # Requests ([`evaluate_body`], [`decide_body`], [`parse_body`])
//!
//! A POST body is one JSON-RPC message or a batch (a non-empty array, at
//! most [`MAX_BATCH`] messages). It is parsed once, strictly:
//! - at most [`MAX_BODY_BYTES`], valid UTF-8, nesting at most [`MAX_DEPTH`];
//! - no object anywhere may repeat a key (compared after unescaping): a
//!   parser differential between Pinhole and the server would be an
//!   authorization bypass, so `{"name":"a","name":"b"}` is refused;
//! - `jsonrpc` must be `"2.0"`; `method` a string; `id` a string or a number
//!   (`null` only on a client error response); a message with a method has
//!   no `result`/`error`; one without is a response with an `id` and exactly
//!   one of them; `params` an object, an array or `null`; no two requests of
//!   a batch may share an id.
//!
//! Each message is then classified (methods match exactly):
//!
//! | method | class |
//! |---|---|
//! | `initialize`, `server/discover`, `ping`, `logging/setLevel`, `notifications/*` | lifecycle: passes |
//! | `tools/list`, `resources/list`, `resources/templates/list`, `prompts/list` | passes; the response is filtered |
//! | none (`result`/`error`: the client answering a server request) | passes |
//! | `tools/call` | tool `params.name` with `params.arguments` (absent or `null` → `{}`) |
//! | `resources/read`, `resources/subscribe`, `resources/unsubscribe` | resource `params.uri` |
//! | `prompts/get` | prompt `params.name` |
//! | `completion/complete` | `params.ref`: `ref/prompt` → prompt `name`, `ref/resource` → resource `uri` |
//! | anything else (e.g. `tasks/get`, `sampling/...` sent by a client) | method, by name |
//!
//! A message with a method but no id (a notification) is classified the
//! same way: a `tools/call` notification is still authorized.
//!
//! # Errors returned to the client
//!
//! | code | when | HTTP |
//! |---|---|---|
//! | [`PARSE_ERROR`] -32700 | not JSON, not UTF-8, duplicate key, too deep, too large, empty | 400, `id: null` |
//! | [`INVALID_REQUEST`] -32600 | JSON but not a valid JSON-RPC message/batch | 400, `id: null` |
//! | [`INVALID_REQUEST`] -32600 | a POST that is not uncompressed `application/json` (UTF-8), see [`check_post_headers`] | 415, `id: null` |
//! | [`INVALID_PARAMS`] -32602 | `params` missing what the method needs (`tools/call` without a string `name`, `arguments` not an object, ...) | 200, same id |
//! | [`DENIED`] -32001 | the policy denies | 200, same id |
//! | [`REVIEW_REQUIRED`] -32002 | a review rule applies (refused until approved) | 200, same id |
//! | [`BATCH_REFUSED`] -32003 | another message of the batch was refused | 200, same id |
//! | [`RESPONSE_REFUSED`] -32004 | the upstream's list response could not be filtered | (SSE error event / host's reply) |
//!
//! Denied: `message` is ``pinhole: denied by rule `<id>`: <reason>`` (or
//! `pinhole: denied: <reason>` for the default deny) and `data` is
//! `{"rule": <id or null>, "effect": "deny", "reason": <reason>}`. Review:
//! ``pinhole: approval required by rule `<id>`: <reason>``, effect
//! `"review"`. Invalid params: `pinhole: invalid params: <what>`. Parse and
//! envelope errors: `pinhole: parse error: <what>` /
//! `pinhole: invalid request: <what>`.
//!
//! # Batches
//!
//! All or nothing: if every message passes, the body is forwarded unchanged.
//! If any message is denied, needs review or has invalid params, nothing is
//! forwarded and the client gets HTTP 200 with an array holding one error
//! per request (message with a method and an id), in order: the refused
//! messages their own error, the others [`BATCH_REFUSED`]. Notifications and
//! client responses in a refused batch are dropped without an answer. If no
//! message of a refused body has an id to answer (a refused notification, or
//! a batch of them), the reply is HTTP 202 with an empty body — the
//! Streamable HTTP answer to notifications — and nothing is forwarded.
//!
//! # Responses ([`filter_json_response`], [`SseFilter`])
//!
//! Responses to list requests lose the entries the caller may not see:
//! `result.tools[]` by `name`, `result.resources[]` by `uri`,
//! `result.resourceTemplates[]` by `uriTemplate`, `result.prompts[]` by
//! `name`; an entry without its naming field is dropped. Everything else is
//! kept byte for byte. Responses are matched to the pending list ids; any
//! other response carrying such arrays in its `result` is filtered too
//! (defence in depth, e.g. for responses replayed on a resumed GET stream).
//! Server requests and notifications sent before the response pass
//! unchanged.
//!
//! For the host:
//! - `application/json`: buffer the whole body, call
//!   [`filter_json_response`]; on `Err` refuse the response (e.g. answer the
//!   pending ids with [`refused_json_response`]).
//! - `text/event-stream`: one [`SseFilter`] per response, fed every chunk;
//!   emit what `push` returns. On `Err`, emit [`SseFilter::error_event`]
//!   (a [`RESPONSE_REFUSED`] error for each list request not answered yet)
//!   and drop the rest of the stream.
//! - A client resuming a stream (`GET` with `Last-Event-ID`) may get list
//!   responses replayed with no pending id: run an `SseFilter::new(vec![])`
//!   on GET streams too (it filters by shape), or refuse resumption.
//! - Filtering needs the body uncompressed (strip `accept-encoding`, refuse
//!   an encoded list response) and a new `content-length`.

pub(crate) mod json;
mod request;
mod response;
mod sse;

#[cfg(test)]
mod tests;

pub use request::{
    check_post_headers, decide_body, decision_error, empty_body_reply, error_response,
    evaluate_body, parse_body, protocol_error_reply, Body, BodyOutcome, Class, Decided, ErrorData,
    InvalidParams, ListKind, Message, RpcError, Verdict,
};
pub use response::{
    filter_json_response, filter_json_response_masked, mask_json_body, refused_json_response,
    response_refused_error, Visible,
};
pub use sse::{sse_error_event, SseFilter};

/// Largest POST body decoded (bigger → -32700).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Deepest array/object nesting accepted in a POST body.
pub const MAX_DEPTH: usize = 64;
/// Most messages in one batch.
pub const MAX_BATCH: usize = 100;
/// Largest `application/json` response filtered (bigger → refused).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Largest SSE event (its bytes are held until the event is complete).
pub const MAX_SSE_EVENT_BYTES: usize = 8 * 1024 * 1024;
/// Deepest nesting accepted in a response (tool input schemas nest).
pub const MAX_RESPONSE_DEPTH: usize = 100;

/// JSON-RPC: the body is not (strict) JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: the JSON is not a valid request or batch.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: the params do not fit the method.
pub const INVALID_PARAMS: i64 = -32602;
/// Pinhole: the policy denies the request.
pub const DENIED: i64 = -32001;
/// Pinhole: a review rule applies; refused until a reviewer approves.
pub const REVIEW_REQUIRED: i64 = -32002;
/// Pinhole: refused because another message of the batch was refused.
pub const BATCH_REFUSED: i64 = -32003;
/// Pinhole: the upstream's list response could not be filtered.
pub const RESPONSE_REFUSED: i64 = -32004;

/// Content type of every non-empty [`BodyOutcome::Reply`] body.
pub const REPLY_CONTENT_TYPE: &str = "application/json";

/// Why a body or response could not be handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    /// Size, limit.
    #[error("body of {0} bytes exceeds the limit of {1} bytes")]
    TooLarge(usize, usize),
    #[error("body is not valid UTF-8 (at byte {0})")]
    Utf8(usize),
    #[error("{0}")]
    Json(String),
    #[error("{0}")]
    Envelope(String),
    #[error("list response: {0}")]
    Response(String),
    #[error("SSE stream: {0}")]
    Sse(String),
}

impl McpError {
    /// The JSON-RPC error code for a request-side error.
    pub fn code(&self) -> i64 {
        match self {
            McpError::Envelope(_) => INVALID_REQUEST,
            _ => PARSE_ERROR,
        }
    }
}
