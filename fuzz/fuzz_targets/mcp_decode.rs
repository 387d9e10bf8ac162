//! MCP over HTTP: the JSON-RPC request decoder and decision
//! (`evaluate_body`, `parse_body`) and the JSON list-response filter
//! (`filter_json_response`), with examples/mcp-tools as the policy.
//!
//! Input: `roles:u8 body` (the same bytes go to both directions).
//!
//! Checked: no panic. A reply is HTTP 200, 202 or 400 with a JSON body. A
//! forwarded body: every decision taken allowed; the body is also JSON to a
//! lenient parser (`serde_json`), and every message in that reading that
//! asks for something is allowed when decided again from that reading
//! alone (no parser differential can smuggle a call past the filter); the
//! pending list ids name list requests of the body. A filtered response is
//! JSON to a lenient parser and keeps only visible list entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinhole_filter::mcp::{evaluate_body, filter_json_response, parse_body, BodyOutcome, ListKind};
use pinhole_filter::policy::eval::{self, Decision, Request};
use pinhole_filter::policy::Policy;
use pinhole_fuzz_support::{mcp, policies};
use serde_json::Value;

thread_local! {
    static POLICY: Policy = policies::must_compile(policies::MCP_TOOLS).0;
}

fn same_id(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn check(policy: &Policy, roles: &[String], body: &[u8]) {
    let mut decide = |r: &Request| -> Decision { eval::evaluate(policy, roles, mcp::TARGET, r) };
    let _ = parse_body(body);
    let v = evaluate_body(body, &mut decide);
    match &v.outcome {
        BodyOutcome::Reply {
            status,
            body: reply,
        } => {
            assert!(matches!(status, 200 | 202 | 400), "status {status}");
            if !reply.is_empty() {
                assert!(
                    serde_json::from_slice::<Value>(reply).is_ok(),
                    "the reply is not JSON: {}",
                    String::from_utf8_lossy(reply)
                );
            }
        }
        BodyOutcome::Forward { lists } => {
            for d in &v.decided {
                assert!(d.decision.allowed(), "forwarded a refused message: {d:?}");
            }
            let lenient: Value = match serde_json::from_slice(body) {
                Ok(x) => x,
                Err(e) => panic!("forwarded a body serde_json rejects: {e}"),
            };
            let msgs: Vec<&Value> = match &lenient {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for m in &msgs {
                let Value::Object(obj) = m else {
                    panic!("forwarded a message that is not an object: {m}");
                };
                match mcp::decide_leniently(obj, &mut decide) {
                    Ok(None) => {}
                    Ok(Some(d)) => assert!(
                        d.allowed(),
                        "forwarded {obj:?}, refused when read leniently: {d:?}"
                    ),
                    Err(e) => panic!("forwarded {obj:?}: {e}"),
                }
            }
            for (id, kind) in lists {
                let found = msgs.iter().any(|m| {
                    m.get("method").and_then(Value::as_str) == Some(kind.method())
                        && m.get("id").is_some_and(|i| same_id(i, id))
                });
                assert!(
                    found,
                    "pending list {id} {kind:?} is not a request of the body"
                );
            }
        }
    }

    let lists: Vec<(Value, ListKind)> = mcp::lists();
    let visible = mcp::visible_for(policy, roles);
    if let Ok(out) = filter_json_response(body, &lists, &visible) {
        let text = out.as_deref().unwrap_or(body);
        let value: Value = match serde_json::from_slice(text) {
            Ok(x) => x,
            Err(e) => panic!("the filtered response is not JSON to serde_json: {e}"),
        };
        mcp::check_visible(&value, &visible);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&r, body)) = data.split_first() else {
        return;
    };
    let roles = policies::roles(r);
    POLICY.with(|p| check(p, &roles, body));
});
