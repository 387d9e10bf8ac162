//! Native per-decision cost on large policies (scripts/bench-policy-scale.py
//! runs it; see docs/benchmarks.md, "Policy scale").
//!
//! ```sh
//! cargo run --release -p pinhole-filter --example eval_scale -- \
//!     --token JWT --tool search_orders --arguments '{"region":"eu-west-1","limit":20}' \
//!     --target tools BLOB...
//! ```
//!
//! For each compiled policy blob, loads it as the filter does
//! ([`Engine::from_blob`]) and times, in a loop, what the filter does per
//! `tools/call` on the host-free side:
//! - `auth_ns`: [`Engine::authenticate_token`] with a cached token
//!   (revocation check and claim → role mapping);
//! - `decide_ns`: [`Engine::decide`] (the decision the filter takes);
//! - `scan_ns`: [`eval::evaluate`] straight on the policy (every rule of the
//!   target considered in source order: the reference evaluator);
//! - `body_ns`: [`mcp::evaluate_body`] of the whole JSON-RPC body with the
//!   engine's decision (parse + decide + verdict);
//! - `visible_ns`: [`Engine::visible`] of the tool (list filtering).
//!
//! Prints one JSON object per blob on stdout. Each figure is the median of
//! five batches of at least 0.2 s.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pinhole_filter::engine::Engine;
use pinhole_filter::mcp;
use pinhole_filter::policy::eval::{self, Item, Request};
use serde_json::{json, Value};

struct Args {
    token: String,
    target: String,
    tool: String,
    arguments: Value,
    blobs: Vec<String>,
    batch: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        token: String::new(),
        target: "tools".into(),
        tool: "search_orders".into(),
        arguments: json!({}),
        blobs: Vec::new(),
        batch: Duration::from_millis(200),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--token" => a.token = value()?,
            "--target" => a.target = value()?,
            "--tool" => a.tool = value()?,
            "--arguments" => {
                a.arguments =
                    serde_json::from_str(&value()?).map_err(|e| format!("--arguments: {e}"))?
            }
            "--batch-ms" => {
                let ms: u64 = value()?.parse().map_err(|e| format!("--batch-ms: {e}"))?;
                a.batch = Duration::from_millis(ms);
            }
            "-h" | "--help" => {
                return Err("usage: eval_scale --token JWT [--target T] [--tool NAME] \
                            [--arguments JSON] [--batch-ms MS] BLOB..."
                    .into())
            }
            _ => a.blobs.push(arg),
        }
    }
    if a.token.is_empty() || a.blobs.is_empty() {
        return Err("usage: eval_scale --token JWT [--target T] [--tool NAME] \
                    [--arguments JSON] [--batch-ms MS] BLOB..."
            .into());
    }
    Ok(a)
}

/// Median nanoseconds per call of `f` over five batches of at least `batch`.
fn time_ns(batch: Duration, mut f: impl FnMut()) -> f64 {
    // Warm-up, and a first guess of the iterations per batch.
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < batch / 4 || n < 10 {
        f();
        n += 1;
    }
    let per = start.elapsed().as_secs_f64() / n as f64;
    let iters = ((batch.as_secs_f64() / per.max(1e-9)) as u64).max(10);
    let mut samples: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() * 1e9 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples.get(2).copied().unwrap_or(f64::NAN)
}

fn run(a: &Args) -> Result<(), String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let body = serde_json::to_vec(&json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": a.tool, "arguments": a.arguments},
    }))
    .map_err(|e| e.to_string())?;
    for path in &a.blobs {
        let raw = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        let t = Instant::now();
        let engine = Engine::from_blob_with_env(&raw, &a.target, &|_| Some("x".into()))?;
        let load_ms = t.elapsed().as_secs_f64() * 1e3;
        let who = engine
            .authenticate_token(&a.token, now)
            .map_err(|e| format!("{path}: the token is refused: {e:?}"))?;
        let req = Request::ToolCall {
            name: &a.tool,
            arguments: &a.arguments,
        };
        let decision = engine.decide(&who, &req);
        let scan = eval::evaluate(&engine.policy, &who.roles, &a.target, &req);
        if decision != scan {
            return Err(format!(
                "{path}: the engine and the reference evaluator disagree: {decision:?} vs {scan:?}"
            ));
        }
        let auth_ns = time_ns(a.batch, || {
            black_box(engine.authenticate_token(black_box(&a.token), now).is_ok());
        });
        let decide_ns = time_ns(a.batch, || {
            black_box(engine.decide(black_box(&who), black_box(&req)));
        });
        let scan_ns = time_ns(a.batch, || {
            black_box(eval::evaluate(
                &engine.policy,
                black_box(&who.roles),
                &a.target,
                black_box(&req),
            ));
        });
        let body_ns = time_ns(a.batch, || {
            black_box(mcp::evaluate_body(black_box(&body), &mut |r: &Request| {
                engine.decide(&who, r)
            }));
        });
        let visible_ns = time_ns(a.batch, || {
            black_box(engine.visible(black_box(&who), Item::Tool(&a.tool)));
        });
        let rules = engine
            .policy
            .rules
            .iter()
            .filter(|r| r.target == a.target)
            .count();
        let out = json!({
            "blob": path,
            "rules": engine.policy.rules.len(),
            "target_rules": rules,
            "roles": engine.policy.roles.len(),
            "caller_roles": who.roles,
            "effect": decision.effect.as_str(),
            "rule": decision.rule,
            "load_ms": load_ms,
            "auth_ns": auth_ns,
            "decide_ns": decide_ns,
            "scan_ns": scan_ns,
            "body_ns": body_ns,
            "visible_ns": visible_ns,
        });
        println!("{out}");
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eval_scale: {e}");
            ExitCode::FAILURE
        }
    }
}
