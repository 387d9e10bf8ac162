//! Tests of the MCP module (native and wasm32-wasip1: no threads, no files).

use serde_json::{json, Value};

use super::*;
use crate::policy::eval::{Decision, Item, Request};
use crate::policy::Effect;

// ---------------------------------------------------------------- helpers

/// A stub policy: tools `ok*` allowed, `review*` need review, `nobody*`
/// hit the default deny, other tools denied by rule `r1`; resources under
/// `file:///public/` and prompts `p-ok` allowed; other methods denied.
fn stub(req: &Request) -> Decision {
    let allow = |what: &str| Decision {
        effect: Effect::Allow,
        rule: Some("a1".into()),
        reason: format!("{what} is allowed"),
    };
    let deny = |what: &str| Decision {
        effect: Effect::Deny,
        rule: Some("r1".into()),
        reason: format!("{what} is denied"),
    };
    let what = req.describe();
    match req {
        Request::ToolCall { name, .. } if name.starts_with("ok") => allow(&what),
        Request::ToolCall { name, .. } if name.starts_with("review") => Decision {
            effect: Effect::Review,
            rule: Some("rv".into()),
            reason: format!("{what} requires a reviewer's approval"),
        },
        Request::ToolCall { name, .. } if name.starts_with("nobody") => Decision {
            effect: Effect::Deny,
            rule: None,
            reason: format!("{what} is not allowed (no rule allows it)"),
        },
        Request::Resource { uri } if uri.starts_with("file:///public/") => allow(&what),
        Request::Prompt { name } if *name == "p-ok" => allow(&what),
        _ => deny(&what),
    }
}

/// Runs `evaluate_body` with [`stub`], recording the requests seen.
fn run(body: &str) -> (Verdict, Vec<String>) {
    let mut seen = Vec::new();
    let v = evaluate_body(body.as_bytes(), &mut |r: &Request| {
        seen.push(format!("{r:?}"));
        stub(r)
    });
    (v, seen)
}

fn reply(body: &str) -> (u16, Value) {
    match run(body).0.outcome {
        BodyOutcome::Reply { status, body } => {
            let v = if body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&body).unwrap()
            };
            (status, v)
        }
        other => panic!("expected a reply for {body}, got {other:?}"),
    }
}

fn forwarded(body: &str) -> Vec<(Value, ListKind)> {
    match run(body).0.outcome {
        BodyOutcome::Forward { lists } => lists,
        other => panic!("expected forward for {body}, got {other:?}"),
    }
}

fn visible(item: Item) -> bool {
    let name = match item {
        Item::Tool(n) | Item::Resource(n) | Item::ResourceTemplate(n) | Item::Prompt(n) => n,
    };
    !name.contains("secret")
}

/// Deterministic xorshift64* generator (no `rand` needed under WASI).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn call(id: Value, name: &str, args: Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":args}})
        .to_string()
}

// --------------------------------------------------------------- decisions

#[test]
fn allowed_call_is_forwarded_unchanged() {
    let body = call(json!(1), "ok_read", json!({"x": 1}));
    let (v, seen) = run(&body);
    assert_eq!(v.outcome, BodyOutcome::Forward { lists: vec![] });
    assert_eq!(v.reason, None);
    assert_eq!(seen.len(), 1);
    assert!(seen[0].contains("ok_read") && seen[0].contains("\"x\""));
    assert_eq!(v.decided.len(), 1);
    let d = &v.decided[0];
    assert_eq!(d.id, Some(json!(1)));
    assert_eq!(d.method, "tools/call");
    assert_eq!(d.item, "tool `ok_read`");
    assert!(d.decision.allowed());
}

#[test]
fn denied_call_keeps_the_id() {
    for id in [json!(7), json!("req-7"), json!(-3), json!(1.5), json!("")] {
        let (status, v) = reply(&call(id.clone(), "rm", json!({})));
        assert_eq!(status, 200);
        assert_eq!(
            v,
            json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": -32001,
                    "message": "pinhole: denied by rule `r1`: tool `rm` is denied",
                    "data": {"rule": "r1", "effect": "deny", "reason": "tool `rm` is denied"}
                }
            })
        );
    }
    // The id keeps its exact spelling class: a string id is not turned into
    // a number and vice versa.
    let (v, _) = run(r#"{"jsonrpc":"2.0","id":"1","method":"tools/call","params":{"name":"rm"}}"#);
    let BodyOutcome::Reply { body, .. } = v.outcome else {
        panic!()
    };
    assert!(String::from_utf8(body)
        .unwrap()
        .starts_with(r#"{"jsonrpc":"2.0","id":"1","error":"#));
}

#[test]
fn default_deny_and_review_shapes() {
    let (_, v) = reply(&call(json!(2), "nobody_x", json!({})));
    assert_eq!(v["error"]["code"], -32001);
    assert_eq!(
        v["error"]["message"],
        "pinhole: denied: tool `nobody_x` is not allowed (no rule allows it)"
    );
    assert_eq!(v["error"]["data"]["rule"], Value::Null);
    assert_eq!(v["error"]["data"]["effect"], "deny");

    let (status, v) = reply(&call(json!("r"), "review_drop", json!({})));
    assert_eq!(status, 200);
    assert_eq!(v["id"], "r");
    assert_eq!(v["error"]["code"], -32002);
    assert_eq!(
        v["error"]["message"],
        "pinhole: approval required by rule `rv`: tool `review_drop` requires a reviewer's approval"
    );
    assert_eq!(
        v["error"]["data"],
        json!({"rule": "rv", "effect": "review", "reason": "tool `review_drop` requires a reviewer's approval"})
    );
}

#[test]
fn lifecycle_and_client_responses_pass_without_a_decision() {
    for body in [
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}"#,
        r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":9,"method":"logging/setLevel","params":{"level":"debug"}}"#,
        r#"{"jsonrpc":"2.0","id":5,"result":{"model":"m","role":"assistant","content":{"type":"text","text":"hi"}}}"#,
        r#"{"jsonrpc":"2.0","id":"s1","error":{"code":-1,"message":"user declined"}}"#,
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#,
    ] {
        let (v, seen) = run(body);
        assert_eq!(v.outcome, BodyOutcome::Forward { lists: vec![] }, "{body}");
        assert!(seen.is_empty() && v.decided.is_empty(), "{body}");
    }
}

#[test]
fn list_requests_are_remembered() {
    assert_eq!(
        forwarded(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#),
        vec![(json!(3), ListKind::Tools)]
    );
    assert_eq!(
        forwarded(r#"{"jsonrpc":"2.0","id":"c","method":"prompts/list","params":{"cursor":"x"}}"#),
        vec![(json!("c"), ListKind::Prompts)]
    );
    let lists = forwarded(
        r#"[{"jsonrpc":"2.0","id":1,"method":"resources/list"},
            {"jsonrpc":"2.0","id":2,"method":"resources/templates/list"},
            {"jsonrpc":"2.0","method":"tools/list"},
            {"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"ok"}}]"#,
    );
    assert_eq!(
        lists,
        vec![
            (json!(1), ListKind::Resources),
            (json!(2), ListKind::ResourceTemplates)
        ]
    );
}

fn classify(body: &str) -> Result<String, InvalidParams> {
    let b = parse_body(body.as_bytes()).unwrap();
    let m = &b.messages()[0];
    m.classify().map(|c| match c {
        Class::Authorize(r) => format!("{r:?}"),
        other => format!("{other:?}"),
    })
}

#[test]
fn classification() {
    let msg = |method: &str, params: Value| {
        json!({"jsonrpc":"2.0","id":1,"method":method,"params":params}).to_string()
    };
    let cases = [
        (
            msg("tools/call", json!({"name":"t"})),
            r#"ToolCall { name: "t", arguments: Object {} }"#,
        ),
        (
            msg("tools/call", json!({"name":"t","arguments":null})),
            r#"ToolCall { name: "t", arguments: Object {} }"#,
        ),
        (
            msg("tools/call", json!({"name":"t","arguments":{"a":[1]}})),
            r#"ToolCall { name: "t", arguments: Object {"a": Array [Number(1)]} }"#,
        ),
        (
            msg("resources/read", json!({"uri":"file:///a"})),
            r#"Resource { uri: "file:///a" }"#,
        ),
        (
            msg("resources/subscribe", json!({"uri":"u"})),
            r#"Resource { uri: "u" }"#,
        ),
        (
            msg("resources/unsubscribe", json!({"uri":"u"})),
            r#"Resource { uri: "u" }"#,
        ),
        (
            msg("prompts/get", json!({"name":"p","arguments":{"x":"y"}})),
            r#"Prompt { name: "p" }"#,
        ),
        (
            msg(
                "completion/complete",
                json!({"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"a","value":"v"}}),
            ),
            r#"Prompt { name: "p" }"#,
        ),
        (
            msg(
                "completion/complete",
                json!({"ref":{"type":"ref/resource","uri":"file:///{x}"},"argument":{"name":"x","value":""}}),
            ),
            r#"Resource { uri: "file:///{x}" }"#,
        ),
        (
            msg("tasks/get", json!({"taskId":"t"})),
            r#"McpMethod { method: "tasks/get" }"#,
        ),
        (
            msg("Tools/Call", json!({"name":"t"})),
            r#"McpMethod { method: "Tools/Call" }"#,
        ),
        (msg("initialize", json!({})), "Lifecycle"),
        (msg("server/discover", json!({})), "Lifecycle"),
        (msg("notifications/whatever", json!({})), "Lifecycle"),
        (msg("tools/list", json!({})), "List(Tools)"),
        (
            msg("resources/templates/list", json!({})),
            "List(ResourceTemplates)",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_string(),
            "Response",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(classify(&body).unwrap(), want, "{body}");
    }
}

#[test]
fn invalid_params_are_refused_with_32602() {
    let msg = |method: &str, params: Value| {
        json!({"jsonrpc":"2.0","id":"x","method":method,"params":params}).to_string()
    };
    let cases = [
        (
            msg("tools/call", json!({})),
            "`tools/call` needs `params.name` (a string)",
        ),
        (
            msg("tools/call", json!({"name": 1})),
            "`tools/call` needs `params.name` (a string)",
        ),
        (
            msg("tools/call", json!({"name": "ok", "arguments": [1]})),
            "`tools/call` needs `params.arguments` to be an object",
        ),
        (
            msg("tools/call", json!({"name": "ok", "arguments": "{}"})),
            "`tools/call` needs `params.arguments` to be an object",
        ),
        (
            msg("tools/call", json!(["ok"])),
            "`tools/call` needs `params` to be an object",
        ),
        (
            r#"{"jsonrpc":"2.0","id":"x","method":"tools/call"}"#.to_string(),
            "`tools/call` needs `params.name` (a string)",
        ),
        (
            msg("resources/read", json!({"url": "file:///public/a"})),
            "`resources/read` needs `params.uri` (a string)",
        ),
        (
            msg("prompts/get", json!({"name": null})),
            "`prompts/get` needs `params.name` (a string)",
        ),
        (
            msg(
                "completion/complete",
                json!({"ref": {"type": "ref/tool", "name": "p-ok"}}),
            ),
            "`completion/complete` needs `params.ref.type` to be `ref/prompt` or `ref/resource`",
        ),
        (
            msg(
                "completion/complete",
                json!({"ref": {"type": "ref/resource", "name": "x"}}),
            ),
            "`completion/complete` needs `params.ref.uri` (a string)",
        ),
        (
            msg("completion/complete", json!({})),
            "`completion/complete` needs `params.ref` (an object)",
        ),
    ];
    for (body, want) in cases {
        let (v, seen) = run(&body);
        assert!(seen.is_empty(), "{body}");
        let BodyOutcome::Reply { status, body: out } = v.outcome else {
            panic!("{body}")
        };
        assert_eq!(status, 200);
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            out,
            json!({"jsonrpc":"2.0","id":"x","error":{"code":-32602,"message":format!("pinhole: invalid params: {want}")}}),
            "{body}"
        );
    }
}

#[test]
fn refused_notifications_get_202_and_are_not_forwarded() {
    // A tools/call without an id is still authorized.
    let (v, seen) = run(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"rm"}}"#);
    assert_eq!(seen.len(), 1);
    assert_eq!(
        v.outcome,
        BodyOutcome::Reply {
            status: 202,
            body: vec![]
        }
    );
    assert_eq!(v.decided[0].id, None);
    // Allowed: forwarded.
    assert_eq!(
        forwarded(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"ok"}}"#),
        vec![]
    );
    // Invalid params on a notification: nothing to answer either.
    let (status, _) = reply(r#"{"jsonrpc":"2.0","method":"tools/call","params":{}}"#);
    assert_eq!(status, 202);
}

#[test]
fn batches() {
    // All pass: forwarded, lists remembered, every call decided.
    let body = format!(
        "[{},{},{}]",
        call(json!(1), "ok_a", json!({})),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///public/x"}}"#
    );
    let (v, _) = run(&body);
    assert_eq!(
        v.outcome,
        BodyOutcome::Forward {
            lists: vec![(json!(2), ListKind::Tools)]
        }
    );
    assert_eq!(v.decided.len(), 2);

    // One denied: the whole batch is refused; one error per request, in order.
    let body = format!(
        "[{},{},{},{},{},{}]",
        call(json!(1), "ok_a", json!({})),
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
        call(json!("two"), "rm", json!({})),
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","id":99,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{}}"#,
    );
    let (v, seen) = run(&body);
    assert_eq!(seen.len(), 2, "every message is decided");
    assert_eq!(v.decided.len(), 2);
    assert!(v.reason.as_deref().unwrap().contains("tool `rm` is denied"));
    let BodyOutcome::Reply { status, body } = v.outcome else {
        panic!()
    };
    assert_eq!(status, 200);
    let out: Value = serde_json::from_slice(&body).unwrap();
    let refused = json!({"code":-32003,"message":"pinhole: batch refused: another message in the batch was denied"});
    assert_eq!(out.as_array().unwrap().len(), 4);
    assert_eq!(out[0], json!({"jsonrpc":"2.0","id":1,"error":refused}));
    assert_eq!(out[1]["id"], "two");
    assert_eq!(out[1]["error"]["code"], -32001);
    assert_eq!(out[2], json!({"jsonrpc":"2.0","id":3,"error":refused}));
    assert_eq!(out[3]["id"], 4);
    assert_eq!(out[3]["error"]["code"], -32602);

    // A refused batch with nothing to answer: 202.
    let body = format!(
        "[{},{}]",
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"rm"}}"#
    );
    assert_eq!(reply(&body), (202, Value::Null));

    // A single-message batch is still answered with an array.
    let (status, v) = reply(&format!("[{}]", call(json!(5), "rm", json!({}))));
    assert_eq!(status, 200);
    assert_eq!(v[0]["id"], 5);
}

// ---------------------------------------------------------- strict decoding

fn protocol_error(body: &[u8]) -> (i64, String) {
    let out = decide_body(body, &mut |_| panic!("no decision expected"));
    let BodyOutcome::Reply { status, body } = out else {
        panic!("expected a reply")
    };
    assert_eq!(status, 400);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], Value::Null);
    (
        v["error"]["code"].as_i64().unwrap(),
        v["error"]["message"].as_str().unwrap().to_string(),
    )
}

#[test]
fn duplicate_keys_are_refused() {
    for body in [
        r#"{"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ok","name":"rm"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ok","n\u0061me":"rm"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping","params":{"name":"rm"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ok","arguments":{"a":{"b":1,"b":2}}}}"#,
        r#"[{"jsonrpc":"2.0","method":"notifications/x","params":{"k":[{"z":1,"z":1}]}}]"#,
    ] {
        let (code, message) = protocol_error(body.as_bytes());
        assert_eq!(code, PARSE_ERROR, "{body}");
        assert!(
            message.starts_with("pinhole: parse error: duplicate key"),
            "{message}"
        );
    }
    let err =
        parse_body(br#"{"method":"tools/call","params":{"name":"a","name":"b"}}"#).unwrap_err();
    assert!(err.to_string().contains("duplicate key \"name\""), "{err}");
}

#[test]
fn nesting_limit() {
    let nested = |depth: usize| {
        // The message object is level 1, params level 2, arguments level 3.
        let inner = depth - 3;
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"ok","arguments":{{"a":{}0{}}}}}}}"#,
            "[".repeat(inner),
            "]".repeat(inner)
        )
    };
    assert_eq!(forwarded(&nested(MAX_DEPTH)), vec![]);
    let (code, message) = protocol_error(nested(MAX_DEPTH + 1).as_bytes());
    assert_eq!(code, PARSE_ERROR);
    assert!(message.contains("nesting deeper than 64"), "{message}");
    let (code, _) = protocol_error("[".repeat(1_000_000).as_bytes());
    assert_eq!(code, PARSE_ERROR);
}

#[test]
fn envelope_errors() {
    let cases: &[(&[u8], i64, &str)] = &[
        (b"", PARSE_ERROR, "empty body"),
        (b" \r\n\t", PARSE_ERROR, "empty body"),
        (b"{", PARSE_ERROR, "EOF"),
        (b"\xff\xfe", PARSE_ERROR, "UTF-8"),
        (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\xc3\"}", PARSE_ERROR, "UTF-8"),
        (br#"{"jsonrpc":"2.0","id":1,"method":"ping"} {}"#, PARSE_ERROR, "trailing"),
        (br#"{"jsonrpc":"2.0","id":1,"method":"ping","x":"\ud800"}"#, PARSE_ERROR, "escape"),
        (br#"[]"#, INVALID_REQUEST, "empty batch"),
        (br#"42"#, INVALID_REQUEST, "must be an object"),
        (br#"[1]"#, INVALID_REQUEST, "message 0: a JSON-RPC message must be an object"),
        (br#"[[]]"#, INVALID_REQUEST, "must be an object"),
        (br#"{"id":1,"method":"ping"}"#, INVALID_REQUEST, "`jsonrpc` must be \"2.0\""),
        (br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, INVALID_REQUEST, "`jsonrpc`"),
        (br#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#, INVALID_REQUEST, "`jsonrpc`"),
        (br#"{"jsonrpc":"2.0","id":1,"method":7}"#, INVALID_REQUEST, "`method` must be a string"),
        (br#"{"jsonrpc":"2.0","id":1,"method":null}"#, INVALID_REQUEST, "`method` must be a string"),
        (br#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#, INVALID_REQUEST, "`id` must be a string or a number"),
        (br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, INVALID_REQUEST, "`id`"),
        (br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, INVALID_REQUEST, "`id`"),
        (br#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#, INVALID_REQUEST, "`id`"),
        (br#"{"jsonrpc":"2.0","id":null,"result":{}}"#, INVALID_REQUEST, "`id`"),
        (br#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#, INVALID_REQUEST, "cannot carry"),
        (br#"{"jsonrpc":"2.0","id":1}"#, INVALID_REQUEST, "exactly one of"),
        (br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#, INVALID_REQUEST, "exactly one of"),
        (br#"{"jsonrpc":"2.0","result":{}}"#, INVALID_REQUEST, "needs an `id`"),
        (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"x"}"#, INVALID_REQUEST, "`params`"),
        (
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1.0,"method":"tools/list"}]"#,
            INVALID_REQUEST,
            "message 1: duplicate request id 1.0",
        ),
    ];
    for (body, code, needle) in cases {
        let (got, message) = protocol_error(body);
        assert_eq!(got, *code, "{}: {message}", String::from_utf8_lossy(body));
        assert!(
            message.contains(needle),
            "{}: {message} lacks {needle}",
            String::from_utf8_lossy(body)
        );
        let prefix = if *code == PARSE_ERROR {
            "pinhole: parse error: "
        } else {
            "pinhole: invalid request: "
        };
        assert!(message.starts_with(prefix), "{message}");
    }
    // A server-side id may equal a client request id in one batch.
    assert_eq!(
        forwarded(
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1,"result":{}}]"#
        ),
        vec![]
    );
    assert_eq!(
        run("").0.outcome,
        empty_body_reply(),
        "the empty-body reply is the parse error of an empty body"
    );
}

#[test]
fn batch_size_limit() {
    let pings = |n: usize| {
        let v: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#))
            .collect();
        format!("[{}]", v.join(","))
    };
    assert_eq!(forwarded(&pings(MAX_BATCH)), vec![]);
    let (code, message) = protocol_error(pings(MAX_BATCH + 1).as_bytes());
    assert_eq!(code, INVALID_REQUEST);
    assert!(
        message.contains("batch of 101 messages exceeds the limit of 100"),
        "{message}"
    );
}

#[test]
fn body_size_limit() {
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let padded = |n: usize| format!("{ping}{}", " ".repeat(n - ping.len()));
    assert!(request::parse_body_limited(padded(100).as_bytes(), 100).is_ok());
    let err = request::parse_body_limited(padded(101).as_bytes(), 100).unwrap_err();
    assert_eq!(err, McpError::TooLarge(101, 100));
    assert_eq!(err.code(), PARSE_ERROR);
    assert_eq!(
        err.to_string(),
        "body of 101 bytes exceeds the limit of 100 bytes"
    );
}

/// The real 4 MiB cap. Native only: Node's WASI (v20) crashes at random
/// once a wasm instance's memory grows by a few MiB, so the wasm run keeps
/// to small inputs; `body_size_limit` covers the same code path.
#[cfg(not(target_family = "wasm"))]
#[test]
fn body_size_limit_at_4_mib() {
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let mut body = format!("{ping}{}", " ".repeat(MAX_BODY_BYTES - ping.len()));
    assert_eq!(forwarded(&body), vec![]);
    body.push(' ');
    let (code, message) = protocol_error(body.as_bytes());
    assert_eq!(code, PARSE_ERROR);
    assert!(
        message.contains("exceeds the limit of 4194304 bytes"),
        "{message}"
    );
}

// ------------------------------------------------------------ robustness

fn samples() -> Vec<Vec<u8>> {
    let mut s: Vec<Vec<u8>> = vec![
        call(json!(1), "ok_a", json!({"a":[1,{"b":"c"}],"d":null})).into_bytes(),
        br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"2","method":"resources/read","params":{"uri":"file:///public/x"}},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p-ok"},"argument":{"name":"a","value":"\u00e9\ud83d\ude00"}}}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"a"},{"name":"secret"}],"nextCursor":"c"}}"#.to_vec(),
    ];
    s.push(sse_stream().into_bytes());
    s
}

/// Feeds `input` to every entry point; only checks that nothing panics and
/// that outputs stay well-formed where they must.
fn feed_everything(input: &[u8]) {
    let out = decide_body(input, &mut stub);
    if let BodyOutcome::Reply { status, body } = out {
        assert!(matches!(status, 200 | 202 | 400));
        if !body.is_empty() {
            serde_json::from_slice::<Value>(&body).unwrap();
        }
    }
    let lists = vec![
        (json!(4), ListKind::Tools),
        (json!("2"), ListKind::Resources),
    ];
    if let Ok(Some(b)) = filter_json_response(input, &lists, &visible) {
        serde_json::from_slice::<Value>(&b).unwrap();
    }
    let mut f = SseFilter::new(lists);
    let _ = f.push(input, true, &visible);
    let _ = f.push(input, true, &visible);
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Random bytes, biased towards JSON's alphabet.
    let alphabet = br#"{}[]":,0123456789.eE+-\/ tnrufalse"#;
    for _ in 0..3000 {
        let len = rng.below(64);
        let input: Vec<u8> = (0..len)
            .map(|_| {
                if rng.below(4) == 0 {
                    rng.next() as u8
                } else {
                    alphabet[rng.below(alphabet.len())]
                }
            })
            .collect();
        feed_everything(&input);
    }
    for sample in samples() {
        // Every truncation.
        for cut in 0..=sample.len() {
            feed_everything(&sample[..cut]);
        }
        // Random mutations.
        for _ in 0..300 {
            let mut m = sample.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(m.len());
                match rng.below(3) {
                    0 => m[i] = rng.next() as u8,
                    1 => {
                        m.remove(i);
                    }
                    _ => m.insert(i, alphabet[rng.below(alphabet.len())]),
                }
            }
            feed_everything(&m);
        }
    }
}

// ------------------------------------------------------- JSON list filtering

fn filter(body: &str, lists: &[(Value, ListKind)]) -> Option<String> {
    filter_json_response(body.as_bytes(), lists, &visible)
        .unwrap()
        .map(|b| String::from_utf8(b).unwrap())
}

#[test]
fn filters_every_list_kind() {
    let body = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","inputSchema":{"type":"object"}},{"name":"secret_x"},{"title":"no name"},"str",{"name":7},{"name":"b"}],"nextCursor":"n1","_meta":{"k":1}}}"#;
    assert_eq!(
        filter(body, &[(json!(1), ListKind::Tools)]).unwrap(),
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","inputSchema":{"type":"object"}},{"name":"b"}],"nextCursor":"n1","_meta":{"k":1}}}"#
    );
    let body = r#"{"jsonrpc":"2.0","id":"r","result":{"resources":[{"uri":"file:///secret","name":"a"},{"uri":"file:///ok","name":"secret-looking name is fine"}]}}"#;
    assert_eq!(
        filter(body, &[(json!("r"), ListKind::Resources)]).unwrap(),
        r#"{"jsonrpc":"2.0","id":"r","result":{"resources":[{"uri":"file:///ok","name":"secret-looking name is fine"}]}}"#
    );
    let body = r#"{"jsonrpc":"2.0","id":2,"result":{"resourceTemplates":[{"uriTemplate":"db://{t}","name":"t"},{"uriTemplate":"secret://{x}","name":"x"},{"uri":"wrong key"}]}}"#;
    assert_eq!(
        filter(body, &[(json!(2), ListKind::ResourceTemplates)]).unwrap(),
        r#"{"jsonrpc":"2.0","id":2,"result":{"resourceTemplates":[{"uriTemplate":"db://{t}","name":"t"}]}}"#
    );
    let body =
        r#"{"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"secret"},{"name":"secret2"}]}}"#;
    assert_eq!(
        filter(body, &[(json!(3), ListKind::Prompts)]).unwrap(),
        r#"{"jsonrpc":"2.0","id":3,"result":{"prompts":[]}}"#
    );
}

#[test]
fn keeps_every_other_byte() {
    // Pretty-printed, unusual key order, big and odd numbers, escapes.
    let body = "{\n  \"result\": {\n    \"tools\": [\n      {\"name\": \"a\", \"n\": 123456789012345678901234567890},\n      {\"name\": \"secret\"},\n      {\"name\": \"\\u0062\", \"x\": 1.0e2}\n    ],\n    \"nextCursor\": null\n  },\n  \"id\": 1,\n  \"jsonrpc\": \"2.0\"\n}\n";
    let want = "{\n  \"result\": {\n    \"tools\": [{\"name\": \"a\", \"n\": 123456789012345678901234567890},{\"name\": \"\\u0062\", \"x\": 1.0e2}],\n    \"nextCursor\": null\n  },\n  \"id\": 1,\n  \"jsonrpc\": \"2.0\"\n}\n";
    assert_eq!(filter(body, &[(json!(1), ListKind::Tools)]).unwrap(), want);
}

#[test]
fn unchanged_responses_are_none() {
    let lists = [(json!(1), ListKind::Tools)];
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"secret"}]}}"#,
        r#"{"jsonrpc":"2.0","id":5,"result":{"tools":"not a list, not pending"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{"tools":[{"name":"secret"}]}}"#,
        r#"[]"#,
        r#"42"#,
    ] {
        assert_eq!(filter(body, &lists), None, "{body}");
    }
}

#[test]
fn batch_responses_and_foreign_ids() {
    let body = r#"[{"jsonrpc":"2.0","id":1,"result":{"content":[]}},{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"secret"},{"name":"x"}]}},{"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"p"},{"name":"secret"}]}}]"#;
    assert_eq!(
        filter(
            body,
            &[(json!(2), ListKind::Tools), (json!(3.0), ListKind::Prompts)]
        )
        .unwrap(),
        r#"[{"jsonrpc":"2.0","id":1,"result":{"content":[]}},{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"x"}]}},{"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"p"}]}}]"#
    );
    // A list-shaped result under an id that was not pending is filtered too.
    let body =
        r#"{"jsonrpc":"2.0","id":"other","result":{"tools":[{"name":"secret"},{"name":"x"}]}}"#;
    assert_eq!(
        filter(body, &[]).unwrap(),
        r#"{"jsonrpc":"2.0","id":"other","result":{"tools":[{"name":"x"}]}}"#
    );
}

#[test]
fn malformed_responses_are_errors() {
    let lists = [(json!(1), ListKind::Tools)];
    let bodies: [&[u8]; 6] = [
        br#"{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"secret"}}}"#,
        br#"{"jsonrpc":"2.0","id":1.0,"result":{"prompts":null}}"#,
        br#"{"jsonrpc":"2.0","id":1,"result":[{"name":"secret"}]}"#,
        br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","name":"secret"}]}}"#,
        br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}"#,
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"\xff\"}]}}",
    ];
    for body in bodies {
        assert!(
            filter_json_response(body, &lists, &visible).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{{"name":"a","s":{}1{}}}]}}}}"#,
        "[".repeat(MAX_RESPONSE_DEPTH),
        "]".repeat(MAX_RESPONSE_DEPTH)
    );
    assert!(filter_json_response(deep.as_bytes(), &lists, &visible).is_err());
    let refused = refused_json_response(&lists, "bad");
    let v: Value = serde_json::from_slice(&refused).unwrap();
    assert_eq!(v["id"], 1);
    assert_eq!(v["error"]["code"], RESPONSE_REFUSED);
    let two = refused_json_response(
        &[(json!(1), ListKind::Tools), (json!("b"), ListKind::Prompts)],
        "bad",
    );
    let v: Value = serde_json::from_slice(&two).unwrap();
    assert_eq!(v[1]["id"], "b");
}

// ------------------------------------------------------------- SSE filtering

/// A stream with a server request and a notification before the list
/// response, comments, ids, a CRLF event, a multi-line data event, a
/// non-JSON event and a final event without its blank line.
fn sse_stream() -> String {
    [
        ": keep-alive comment\n\n",
        "id: e1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sampling/createMessage\",\"params\":{\"tools\":[{\"name\":\"secret\"}]}}\n\n",
        "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\r\n\r\n",
        "id: e3\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\r\ndata: \"result\":{\"tools\":[{\"name\":\"a\"},{\"name\":\"secret\"}],\r\ndata:\"nextCursor\":\"c\"}}\r\nretry: 10\r\n\r\n",
        "data: plain text, not JSON\n\n",
        "event: message\rdata: {\"jsonrpc\":\"2.0\",\"id\":\"p\",\"result\":{\"prompts\":[{\"name\":\"secret\"},{\"name\":\"q\"}]}}\r\r",
        "data: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{\"resources\":[{\"uri\":\"secret://1\"}]}}",
    ]
    .concat()
}

fn sse_lists() -> Vec<(Value, ListKind)> {
    vec![
        (json!(7), ListKind::Tools),
        (json!("p"), ListKind::Prompts),
        (json!(8), ListKind::Resources),
    ]
}

fn sse_expected() -> String {
    [
        ": keep-alive comment\n\n",
        "id: e1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sampling/createMessage\",\"params\":{\"tools\":[{\"name\":\"secret\"}]}}\n\n",
        "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\r\n\r\n",
        "id: e3\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7, \"result\":{\"tools\":[{\"name\":\"a\"}], \"nextCursor\":\"c\"}}\r\nretry: 10\r\n\r\n",
        "data: plain text, not JSON\n\n",
        // A rewritten event's lone-CR line ends become LF (never a lone CR
        // that could merge with a following LF into one CRLF).
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"p\",\"result\":{\"prompts\":[{\"name\":\"q\"}]}}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{\"resources\":[]}}",
    ]
    .concat()
}

fn sse_run(input: &[u8], cuts: &[usize], lists: Vec<(Value, ListKind)>) -> Vec<u8> {
    let mut f = SseFilter::new(lists);
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts {
        out.extend(f.push(&input[at..cut], false, &visible).unwrap());
        at = cut;
    }
    out.extend(f.push(&input[at..], true, &visible).unwrap());
    out
}

#[test]
fn sse_one_shot() {
    let out = sse_run(sse_stream().as_bytes(), &[], sse_lists());
    assert_eq!(String::from_utf8(out).unwrap(), sse_expected());
}

#[test]
fn sse_every_split_point_and_byte_by_byte() {
    let input = sse_stream();
    let input = input.as_bytes();
    let want = sse_expected().into_bytes();
    for cut in 0..=input.len() {
        assert_eq!(sse_run(input, &[cut], sse_lists()), want, "cut at {cut}");
    }
    let every: Vec<usize> = (0..=input.len()).collect();
    assert_eq!(sse_run(input, &every, sse_lists()), want);
    let mut rng = Rng(42);
    for _ in 0..300 {
        let mut cuts: Vec<usize> = (0..1 + rng.below(8))
            .map(|_| rng.below(input.len() + 1))
            .collect();
        cuts.sort_unstable();
        assert_eq!(sse_run(input, &cuts, sse_lists()), want, "cuts {cuts:?}");
    }
}

#[test]
fn sse_emits_complete_events_early() {
    let mut f = SseFilter::new(vec![(json!(1), ListKind::Tools)]);
    let first = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
    let out = f
        .push(
            format!("{first}data: {{\"jsonrpc\"").as_bytes(),
            false,
            &visible,
        )
        .unwrap();
    assert_eq!(out, first.as_bytes());
    // A lone CR at the end of a chunk waits for the next byte.
    let out = f
        .push(
            b":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"secret\"}]}}\r",
            false,
            &visible,
        )
        .unwrap();
    assert!(out.is_empty());
    let out = f.push(b"\n\r\n", false, &visible).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\r\n\r\n"
    );
    assert!(f.push(b"", true, &visible).unwrap().is_empty());
}

#[test]
fn sse_pass_through_is_byte_identical() {
    // Nothing to filter: every byte comes back as is, however it is split.
    let input = [
        "\u{feff}event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}]}}\n\n",
        ": c\r\n\r\n\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"visible\"}]}}\r\r",
        "data:\ndata\ndata: x\n\n",
        "id: 9\nretry: 5\n\n",
        "data: \u{e9}\u{1F600} not json\n\n",
    ]
    .concat();
    let lists = vec![(json!(2), ListKind::Tools)];
    let bytes = input.as_bytes();
    assert_eq!(sse_run(bytes, &[], lists.clone()), bytes);
    for cut in 0..=bytes.len() {
        assert_eq!(sse_run(bytes, &[cut], lists.clone()), bytes, "cut {cut}");
    }
    // An open event at the end of the stream that is not JSON passes too.
    let tail = format!("{input}data: plain\nid: 3");
    assert_eq!(sse_run(tail.as_bytes(), &[], lists), tail.as_bytes());
}

#[test]
fn sse_bom_and_event_types() {
    let input = "\u{feff}data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"secret\"}]}}\n\nevent: other\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"secret\"},{\"name\":\"a\"}]}}\n\n";
    let out = sse_run(input.as_bytes(), &[], vec![(json!(1), ListKind::Tools)]);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "\u{feff}data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\n\nevent: other\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"a\"}]}}\n\n"
    );
}

#[test]
fn sse_invalid_utf8_is_read_like_a_client_reads_it() {
    let mut input =
        b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"secret\",\"d\":\""
            .to_vec();
    input.push(0xff);
    input.extend_from_slice(b"\"},{\"name\":\"a\"}]}}\n\n");
    let out = sse_run(&input, &[], vec![(json!(1), ListKind::Tools)]);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\"}]}}\n\n"
    );
}

#[test]
fn sse_refuses_what_it_cannot_read() {
    let lists = vec![(json!(1), ListKind::Tools), (json!(2), ListKind::Tools)];
    for bad in [
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\",\"name\":\"secret\"}]}}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":{}}}\n\n",
        "data:  [{\"jsonrpc\":\"2.0\",\"id\":1,\n\n",
        "data: {not json}\n\n",
    ] {
        let mut f = SseFilter::new(lists.clone());
        assert!(f.push(bad.as_bytes(), false, &visible).is_err(), "{bad}");
        // Poisoned afterwards.
        assert!(f.push(b"data: x\n\n", true, &visible).is_err());
    }
    // The error event answers the list requests not answered yet.
    let mut f = SseFilter::new(lists.clone());
    f.push(
        b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\n\n",
        false,
        &visible,
    )
    .unwrap();
    assert!(f
        .push(
            b"data: {\"id\":2,\"result\":{\"tools\":7}}\n\n",
            false,
            &visible
        )
        .is_err());
    let ev = String::from_utf8(f.error_event("bad tools")).unwrap();
    assert_eq!(ev.matches("data: ").count(), 1, "{ev}");
    let data = ev.trim().strip_prefix("event: message\ndata: ").unwrap();
    let v: Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["id"], 2);
    assert_eq!(v["error"]["code"], RESPONSE_REFUSED);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .ends_with("bad tools"));
    // Events of a failing push are not emitted, so their requests are
    // answered by the error event too.
    let mut f = SseFilter::new(lists.clone());
    let good = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\n\n";
    let bad = "data: {\"id\":2,\"result\":{\"tools\":7}}\n\n";
    assert!(f
        .push(format!("{good}{bad}").as_bytes(), false, &visible)
        .is_err());
    let ev = String::from_utf8(f.error_event("x")).unwrap();
    assert_eq!(ev.matches("data: ").count(), 2, "{ev}");
    assert_eq!(
        String::from_utf8(sse_error_event(&lists, "x"))
            .unwrap()
            .matches("event: message\n")
            .count(),
        2
    );
}

fn sse_cap(limit: usize, chunk: usize) {
    let mut f = SseFilter::with_event_limit(vec![], limit);
    let piece = vec![b'a'; chunk];
    let mut held = 0;
    loop {
        match f.push(&piece, false, &visible) {
            Ok(out) => {
                assert!(out.is_empty());
                held += chunk;
                assert!(held <= limit);
            }
            Err(e) => {
                assert!(held + chunk > limit);
                assert!(e.to_string().contains("exceeds"), "{e}");
                break;
            }
        }
    }
    // A complete event as large as the limit passes.
    let mut f = SseFilter::with_event_limit(vec![], limit);
    let mut big = b"data: ".to_vec();
    big.resize(limit - 2, b'x');
    big.extend_from_slice(b"\n\n");
    assert_eq!(f.push(&big, false, &visible).unwrap(), big);
    // Also when it arrives in pieces.
    let mut f = SseFilter::with_event_limit(vec![], limit);
    let mut out = Vec::new();
    for piece in big.chunks(chunk) {
        out.extend(f.push(piece, false, &visible).unwrap());
    }
    assert_eq!(out, big);
}

#[test]
fn sse_event_size_cap() {
    sse_cap(1000, 7);
    assert_eq!(SseFilter::new(vec![]).max_event(), MAX_SSE_EVENT_BYTES);
}

/// The real cap. Native only (see `body_size_limit_at_4_mib`).
#[cfg(not(target_family = "wasm"))]
#[test]
fn sse_event_size_cap_at_8_mib() {
    sse_cap(MAX_SSE_EVENT_BYTES, 1024 * 1024);
}

// ------------------------------------------------------ randomized properties

/// A random list response (some entries secret, some malformed) and the
/// value it must become once filtered.
fn random_list_response(rng: &mut Rng, id: Value) -> (Value, Value) {
    let kinds = [
        ("tools", "name"),
        ("resources", "uri"),
        ("resourceTemplates", "uriTemplate"),
        ("prompts", "name"),
    ];
    let mut result = serde_json::Map::new();
    let mut expected = serde_json::Map::new();
    for (key, field) in kinds {
        if rng.below(2) == 0 {
            continue;
        }
        let mut all = Vec::new();
        let mut kept = Vec::new();
        for i in 0..rng.below(6) {
            let entry = match rng.below(5) {
                0 => json!({ field: format!("secret-{i}"), "description": "x\ny" }),
                1 => json!({ "other": i }),
                _ => json!({ field: format!("item-{i}"), "n": i, "nested": {"a": [1, 2.5, null]} }),
            };
            if entry
                .get(field)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.contains("secret"))
            {
                kept.push(entry.clone());
            }
            all.push(entry);
        }
        result.insert(key.into(), Value::Array(all));
        expected.insert(key.into(), Value::Array(kept));
    }
    result.insert("nextCursor".into(), json!("c"));
    expected.insert("nextCursor".into(), json!("c"));
    (
        json!({"jsonrpc": "2.0", "id": id, "result": result}),
        json!({"jsonrpc": "2.0", "id": id, "result": expected}),
    )
}

#[test]
fn random_json_responses_filter_like_the_model() {
    let mut rng = Rng(7);
    for round in 0..300 {
        let n = 1 + rng.below(3);
        let mut input = Vec::new();
        let mut want = Vec::new();
        let mut lists = Vec::new();
        for i in 0..n {
            let id = if rng.below(2) == 0 {
                json!(i)
            } else {
                json!(format!("s{i}"))
            };
            let (a, b) = random_list_response(&mut rng, id.clone());
            input.push(a);
            want.push(b);
            lists.push((id, ListKind::Tools));
        }
        let (input, want) = if n == 1 && rng.below(2) == 0 {
            (input.remove(0), want.remove(0))
        } else {
            (Value::Array(input), Value::Array(want))
        };
        let text = if round % 2 == 0 {
            serde_json::to_string_pretty(&input).unwrap()
        } else {
            input.to_string()
        };
        let out = filter_json_response(text.as_bytes(), &lists, &visible).unwrap();
        let got: Value = match out {
            Some(b) => serde_json::from_slice(&b).unwrap(),
            None => serde_json::from_str(&text).unwrap(),
        };
        assert_eq!(got, want, "{text}");
    }
}

#[test]
fn random_sse_streams_are_split_invariant() {
    let mut rng = Rng(11);
    let endings = ["\n", "\r\n", "\r"];
    for _ in 0..60 {
        let mut stream = String::new();
        let mut lists = Vec::new();
        let mut want_values = Vec::new();
        for i in 0..1 + rng.below(4) {
            let eol = endings[rng.below(3)];
            if rng.below(3) == 0 {
                stream.push_str(&format!(": comment {i}{eol}"));
            }
            if rng.below(2) == 0 {
                stream.push_str(&format!("id: {i}{eol}event: message{eol}"));
            }
            if rng.below(3) == 0 {
                let note =
                    json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"p":i}});
                stream.push_str(&format!("data: {note}{eol}{eol}"));
                continue;
            }
            let id = json!(i);
            let (a, b) = random_list_response(&mut rng, id.clone());
            lists.push((id, ListKind::Tools));
            want_values.push(b);
            // Pretty-printed JSON spread over several data lines.
            for line in serde_json::to_string_pretty(&a).unwrap().lines() {
                stream.push_str(&format!("data: {line}{eol}"));
            }
            stream.push_str(eol);
        }
        let bytes = stream.as_bytes();
        let one = sse_run(bytes, &[], lists.clone());
        for _ in 0..20 {
            let mut cuts: Vec<usize> = (0..rng.below(6))
                .map(|_| rng.below(bytes.len() + 1))
                .collect();
            cuts.sort_unstable();
            assert_eq!(
                sse_run(bytes, &cuts, lists.clone()),
                one,
                "{stream:?} {cuts:?}"
            );
        }
        // Every list response came out filtered, in order.
        let text = String::from_utf8(one).unwrap();
        let got: Vec<Value> = sse_datas(&text)
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter(|v| v.get("result").is_some())
            .collect();
        assert_eq!(got, want_values, "{text}");
    }
}

/// A reference SSE reader (as a client reads a stream): the data of every
/// event, in order.
fn sse_datas(text: &str) -> Vec<String> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = Vec::new();
    let mut data: Option<String> = None;
    for line in text.split('\n') {
        if line.is_empty() {
            out.extend(data.take());
        } else if let Some(v) = line.strip_prefix("data") {
            let v = v
                .strip_prefix(':')
                .map_or(v, |v| v.strip_prefix(' ').unwrap_or(v));
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(v);
                }
                None => data = Some(v.to_string()),
            }
        }
    }
    out.extend(data);
    out
}

#[test]
fn sse_long_line_in_small_chunks_is_linear() {
    // A 512 KiB list response arriving 128 bytes at a time: each chunk is
    // searched once (a rescan per chunk would read 1 GiB here).
    let names: Vec<String> = (0..20_000).map(|i| format!("tool-{i:06}")).collect();
    let mut tools: Vec<Value> = names.iter().map(|n| json!({ "name": n })).collect();
    tools.push(json!({"name": "secret"}));
    let response = json!({"jsonrpc":"2.0","id":1,"result":{"tools":tools}});
    let stream = format!("data: {response}\r\n\r\n");
    assert!(stream.len() > 400 * 1024);
    let mut f = SseFilter::new(vec![(json!(1), ListKind::Tools)]);
    let mut out = Vec::new();
    for piece in stream.as_bytes().chunks(128) {
        out.extend(f.push(piece, false, &visible).unwrap());
    }
    out.extend(f.push(b"", true, &visible).unwrap());
    let datas = sse_datas(&String::from_utf8(out).unwrap());
    let v: Value = serde_json::from_str(&datas[0]).unwrap();
    assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 20_000);
}

// ---------------------------------------------------------- SQL arguments

/// A tool whose `sql` argument is decided statement by statement, through
/// the real evaluator.
#[test]
fn sql_tool_calls_are_decided_per_statement() {
    use crate::policy::eval::evaluate;
    use crate::policy::*;
    let policy = Policy {
        targets: vec![Target {
            name: "tools".into(),
            protocol: Protocol::Mcp,
            forward_token: false,
            backend_user: None,
            backend_password_env: None,
            backend_database: None,
            mask_key_env: None,
        }],
        rules: vec![Rule {
            id: "agent-sql".into(),
            effect: Effect::Allow,
            roles: vec![],
            target: "tools".into(),
            matcher: Matcher::Mcp(McpMatch {
                tools: vec!["query".into()],
                sql_argument: Some(ArgPath {
                    path: vec![PathSeg::Key("sql".into())],
                    path_text: "sql".into(),
                }),
                sql: Some(SqlMatch {
                    statements: vec![StatementClass::Select],
                    tables: vec!["public.orders".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            reason: None,
        }],
        ..Default::default()
    };
    let mut decide = |r: &Request| evaluate(&policy, &[], "tools", r);
    let body = call(json!(1), "query", json!({"sql": "SELECT * FROM orders"}));
    let v = evaluate_body(body.as_bytes(), &mut decide);
    assert_eq!(v.outcome, BodyOutcome::Forward { lists: vec![] });
    for (sql, needle) in [
        ("DELETE FROM orders", "DELETE FROM orders"),
        ("SELECT 1; DROP TABLE orders", "DROP TABLE orders"),
        ("SELEC oops", "could not be parsed"),
    ] {
        let body = call(json!("q-7"), "query", json!({ "sql": sql }));
        let v = evaluate_body(body.as_bytes(), &mut decide);
        let BodyOutcome::Reply { status, body } = v.outcome else {
            panic!("{sql} was forwarded")
        };
        assert_eq!(status, 200);
        let r: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(r["id"], json!("q-7"));
        assert_eq!(r["error"]["code"], json!(-32001));
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg}");
    }
    let body = call(json!(2), "query", json!({"sql": "DELETE FROM orders"}));
    let v = evaluate_body(body.as_bytes(), &mut decide);
    let BodyOutcome::Reply { body, .. } = v.outcome else {
        panic!()
    };
    let r: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(r["error"]["data"]["rule"], json!("agent-sql"));
}

#[test]
fn review_refusals_carry_the_request_id() {
    use crate::mcp::request::{decision_error, request_of};
    let d = crate::policy::eval::Decision {
        effect: Effect::Review,
        rule: Some("r".into()),
        reason: "tool `x` requires a reviewer's approval; request rq-0123456789abcdef: ask".into(),
    };
    let e = decision_error(&d);
    assert_eq!(e.code, crate::mcp::REVIEW_REQUIRED);
    assert_eq!(
        e.data.and_then(|d| d.request).as_deref(),
        Some("rq-0123456789abcdef")
    );
    assert_eq!(request_of("request rq-0123"), None);
    assert_eq!(request_of("request rq-0123456789abcdeg"), None);
    assert_eq!(request_of("no id"), None);
}

/// docs/hostile-input.md: a POST body is decided only as uncompressed
/// UTF-8 `application/json`.
#[test]
fn post_headers_must_be_plain_json() {
    use super::check_post_headers as check;
    for ok in [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=\"UTF-8\"",
        "application/json; charset=utf8; profile=x",
    ] {
        assert!(check(Some(ok), None).is_ok(), "{ok}");
        assert!(check(Some(ok), Some("identity")).is_ok(), "{ok}");
    }
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json-patch+json",
        "application/jsonx",
        "text/plain, application/json",
        "application/json, text/plain",
        "application/json; charset=utf-16",
        "application/json; charset=iso-8859-1",
        "",
    ] {
        let v = check(Some(ct), None).unwrap_err();
        match v.outcome {
            BodyOutcome::Reply { status, body } => {
                assert_eq!(status, 415, "{ct}");
                let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(reply["error"]["code"], INVALID_REQUEST, "{ct}");
                assert_eq!(reply["id"], serde_json::Value::Null);
            }
            other => panic!("{ct}: {other:?}"),
        }
    }
    assert!(check(None, None).is_err());
    for enc in [
        "gzip",
        "br",
        "deflate",
        "x-gzip",
        "identity, gzip",
        "GZIP",
        "zstd",
        "",
    ] {
        let v = check(Some("application/json"), Some(enc)).unwrap_err();
        assert!(v.reason.unwrap().contains("content-encoding"), "{enc}");
    }
}

// ------------------------------------------------- JSON responses, masked

fn bench_masker() -> crate::mask::Masker {
    use crate::mask::{DetectorRule, FieldRule, MaskSpec, Masker, Strategy};
    let spec = MaskSpec {
        fields: vec![FieldRule {
            path: "**.email".into(),
            strategy: Strategy::Redact { text: None },
        }],
        detectors: vec![DetectorRule {
            detector: "email".into(),
            pattern: None,
            strategy: Strategy::Partial { keep: 4 },
        }],
        ..MaskSpec::default()
    };
    Masker::new(&spec, None).unwrap()
}

fn filter_masked(body: &str, lists: &[(Value, ListKind)]) -> (Option<String>, usize) {
    let m = bench_masker();
    let (out, n) = filter_json_response_masked(body.as_bytes(), lists, &visible, Some(&m)).unwrap();
    (out.map(|b| String::from_utf8(b).unwrap()), n)
}

/// What masking a freshly parsed body gives (every message's `result` by
/// `mask_mcp_result`, `error` by `scan_json`), as a reference.
fn masked_reference(body: &str) -> (Value, usize) {
    let m = bench_masker();
    let mut doc: Value = serde_json::from_str(body).unwrap();
    let mut n = 0;
    let mut one = |msg: &mut Value| {
        if let Some(r) = msg.get_mut("result") {
            n += m.mask_mcp_result(r).unwrap();
        }
        if let Some(e) = msg.get_mut("error") {
            n += m.scan_json(e).unwrap();
        }
    };
    match &mut doc {
        Value::Array(items) => items.iter_mut().for_each(&mut one),
        other => one(other),
    }
    (doc, n)
}

#[test]
fn tool_result_is_masked_from_the_one_parse() {
    // No list entry to drop: masking reuses the document the list filter
    // parsed. The outcome is the same as masking a fresh parse.
    let data = json!({"customers": [{"id": 1, "email": "ada@example.test",
                                     "notes": "write to billing@corp.test"}]});
    let body = json!({"jsonrpc": "2.0", "id": 7, "result": {
        "content": [{"type": "text", "text": data.to_string()}],
        "structuredContent": data, "isError": false}})
    .to_string();
    let (out, n) = filter_masked(&body, &[(json!(7), ListKind::Tools)]);
    let out = out.expect("masked");
    assert!(
        !out.contains("ada@example.test") && !out.contains("billing@corp.test"),
        "{out}"
    );
    let (want, want_n) = masked_reference(&body);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), want);
    assert_eq!((n, want_n), (4, 4));
    // The same as a batch, and as a response nobody asked a list for.
    let batch = format!("[{body},{body}]");
    let (out, n) = filter_masked(&batch, &[(json!(7), ListKind::Tools)]);
    assert_eq!(n, 8);
    assert_eq!(
        serde_json::from_str::<Value>(&out.unwrap()).unwrap(),
        masked_reference(&batch).0
    );
    assert_eq!(filter_masked(&body, &[]).1, 4);
    // Nothing to mask: forwarded as is.
    let clean = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"ok"}]}}"#;
    assert_eq!(
        filter_masked(clean, &[(json!(7), ListKind::Tools)]),
        (None, 0)
    );
}

#[test]
fn list_is_filtered_then_the_kept_entries_masked() {
    // The dropped entry's email is not counted: masking sees the filtered
    // document, not the upstream's.
    let body = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"a","description":"ask ada@example.test"},{"name":"secret_x","description":"ask bob@example.test"},{"name":"b"}]}}"#;
    let (out, n) = filter_masked(body, &[(json!(3), ListKind::Tools)]);
    let out = out.unwrap();
    assert_eq!(n, 1, "{out}");
    let got: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        got,
        json!({"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"a","description":"ask ***@*******.test"},{"name":"b"}]}})
    );
    // A batch where one list is cut and another message is only masked.
    let batch = format!(
        r#"[{body},{{"jsonrpc":"2.0","id":9,"result":{{"structuredContent":{{"email":"c@d.test"}}}}}}]"#
    );
    let (out, n) = filter_masked(
        &batch,
        &[(json!(3), ListKind::Tools), (json!(9), ListKind::Tools)],
    );
    let got: Value = serde_json::from_str(&out.unwrap()).unwrap();
    assert_eq!(n, 2);
    assert_eq!(got[0]["result"]["tools"].as_array().unwrap().len(), 2);
    assert_eq!(got[1]["result"]["structuredContent"]["email"], "[REDACTED]");
}

#[test]
fn masked_response_that_is_not_strict_json_is_refused() {
    let m = bench_masker();
    for body in [
        r#"{"jsonrpc":"2.0","id":7,"result":{"a":1,"a":2}}"#,
        r#"{"jsonrpc":"2.0","id":7,"result":{"structuredContent":{"email":"x@y.test"}}"#,
    ] {
        let r = filter_json_response_masked(
            body.as_bytes(),
            &[(json!(7), ListKind::Tools)],
            &visible,
            Some(&m),
        );
        assert!(r.is_err(), "{body}: {r:?}");
    }
}
