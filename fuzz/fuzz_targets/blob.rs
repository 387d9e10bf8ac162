//! The policy blob decoder (`blob::decode`) and everything that consumes a
//! decoded policy: `Verifier::new`, `Engine::from_blob_with_env`, and the
//! evaluator over a handful of requests.
//!
//! Input: `mode:u8 ...`, by `mode % 3`:
//! - 0: the rest is a blob;
//! - 1: a valid blob (examples/mcp-tools or orders-db, by mode bit 2),
//!   its payload edited by `(op:u8 pos:u16 byte:u8)*` (overwrite, insert,
//!   delete) and re-wrapped with a correct header and digest;
//! - 2: the rest is a payload, wrapped with a correct header and digest.
//!
//! Checked: no panic anywhere; a blob that decodes re-encodes (`encode`) to
//! a blob that decodes to the same policy and metadata.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinhole_filter::engine::Engine;
use pinhole_filter::identity::Verifier;
use pinhole_filter::pg::sql::classify;
use pinhole_filter::policy::blob;
use pinhole_filter::policy::eval::{self, Item, Request};
use pinhole_fuzz_support::{policies, Bytes};
use serde_json::json;

thread_local! {
    static BASES: [Vec<u8>; 2] = [
        policies::must_compile(policies::MCP_TOOLS).1,
        policies::must_compile(policies::ORDERS_DB).1,
    ];
}

fn exercise(raw: &[u8]) {
    let Ok(b) = blob::decode(raw) else {
        return;
    };
    let again = blob::encode(&b.policy, &b.meta).expect("a decoded policy does not re-encode");
    let back = blob::decode(&again).expect("a re-encoded policy does not decode");
    assert_eq!(
        back.policy, b.policy,
        "the policy changed through encode/decode"
    );
    assert_eq!(back.meta, b.meta);

    let _ = Verifier::new(&b.policy);
    let p = &b.policy;
    let args =
        json!({"environment": "staging", "replicas": 3, "sql": "select * from public.orders"});
    let statements =
        classify("select * from orders; delete from orders where id = 1").unwrap_or_default();
    for t in p.targets.iter().take(4) {
        let _ = Engine::from_blob_with_env(raw, &t.name, &|_| Some("pw".into()));
        let mut role_sets: Vec<Vec<String>> = vec![Vec::new()];
        role_sets.extend(p.roles.iter().take(4).map(|r| vec![r.name.clone()]));
        for roles in &role_sets {
            for req in [
                Request::ToolCall {
                    name: "deploy",
                    arguments: &args,
                },
                Request::ToolCall {
                    name: "query",
                    arguments: &args,
                },
                Request::Resource {
                    uri: "docs://public/a/b",
                },
                Request::Prompt { name: "triage" },
                Request::McpMethod {
                    method: "tasks/get",
                },
                Request::Http {
                    method: "GET",
                    path: "/v1/status/x",
                },
            ] {
                let _ = eval::evaluate(p, roles, &t.name, &req);
            }
            for s in &statements {
                let _ = eval::evaluate(p, roles, &t.name, &Request::Sql { statement: s });
            }
            let _ = eval::decide_statements(p, roles, &t.name, &statements);
            for item in [
                Item::Tool("k8s_get_pods"),
                Item::Resource("docs://public/x"),
                Item::Prompt("summarize"),
            ] {
                let _ = eval::visible(p, roles, &t.name, item);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let mode = b.u8();
    match mode % 3 {
        0 => exercise(b.rest()),
        1 => {
            let mut payload =
                BASES.with(|bases| bases[usize::from((mode >> 2) & 1)][48..].to_vec());
            while !b.is_empty() {
                let op = b.u8();
                let pos = usize::from(b.u16());
                let byte = b.u8();
                let len = payload.len();
                match op % 3 {
                    0 if len > 0 => payload[pos % len] = byte,
                    1 => payload.insert(pos % (len + 1), byte),
                    2 if len > 0 => {
                        payload.remove(pos % len);
                    }
                    _ => {}
                }
            }
            exercise(&policies::wrap_blob(&payload));
        }
        _ => exercise(&policies::wrap_blob(b.rest())),
    }
});
