//! Native per-request cost of the host-free work of one MCP `tools/call`
//! through the HTTP filter (issue 7: where the time goes). The proxy-wasm
//! calls themselves (header map copies, `define_metric`, `log`,
//! `set_property`) are not here: this is what the filter computes between
//! them, step by step, as `host/http.rs` does it.
//!
//! ```sh
//! # examples/mcp-tools/policy.yaml with corp-sso's key replaced by the
//! # example's fixed Ed25519 key (so it can mint a real token):
//! cargo run --release -p pinhole-filter --example http_path -- --setup /tmp/hp
//! cargo run --release -p policy-compiler -- compile /tmp/hp/policy.yaml -o /tmp/hp/policy.bin
//! cargo run --release -p pinhole-filter --example http_path -- /tmp/hp/policy.bin
//! ```
//!
//! Without `--token`, the caller is `alice@acme.example` of group `analysts`
//! (token minted with the fixed key, EdDSA) calling `search_orders` with
//! `{"region":"eu-west-1","limit":20}` (allowed by rule `analysts-query`).
//!
//! Steps (median of five batches of at least 0.2 s each, ns per request):
//! - `authenticate`: [`Engine::authenticate`] of the `Authorization` header
//!   (token cache hit, revocation check, roles memo, elevation);
//! - `identity_headers`: the `x-pinhole-*` values sent upstream;
//! - `masker`: [`Engine::masker`] for the caller's roles;
//! - `evaluate_body`: [`mcp::evaluate_body`] with [`Engine::decide_at`] and
//!   the per-decision side data the host keeps (approval, held arguments);
//! - `metric_name`: the decision counter's name ([`metrics::decision`]);
//! - `metric_cached`: the same through [`metrics::DecisionCounters`] (what
//!   the host does since issue 7: the name is built once);
//! - `audit_seal`: the event built as the host builds it and sealed
//!   ([`AuditChain::seal`]: canonical JSON + SHA-256);
//! - `audit_log_line`: the `pinhole-audit: ` log line formatted as the
//!   proxy-wasm logger does (`format!` of the record);
//! - `total`: one whole request, all of the above in sequence.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pinhole_filter::audit::{AuditChain, AuditEvent, AuditIdentity, Command, LOG_PREFIX};
use pinhole_filter::engine::{Approval, Engine};
use pinhole_filter::identity::Identity;
use pinhole_filter::mcp;
use pinhole_filter::metrics;
use pinhole_filter::policy::eval::Request;
use serde_json::{json, Value};

struct Args {
    token: String,
    target: String,
    tool: String,
    arguments: Value,
    blob: String,
    batch: Duration,
}

const USAGE: &str = "usage: http_path [--token JWT] [--target T] [--tool NAME] \
                     [--arguments JSON] [--batch-ms MS] BLOB | http_path --setup DIR";

fn key() -> ed25519_compact::KeyPair {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]))
}

fn b64u(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The example's policy: examples/mcp-tools with corp-sso's JWKS replaced.
fn setup(dir: &str) -> Result<(), String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/mcp-tools");
    let keys = format!("{dir}/keys");
    std::fs::create_dir_all(&keys).map_err(|e| format!("{keys}: {e}"))?;
    for f in ["policy.yaml", "keys/github.jwks.json"] {
        std::fs::copy(format!("{root}/{f}"), format!("{dir}/{f}"))
            .map_err(|e| format!("{f}: {e}"))?;
    }
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
                                "kid": "bench", "x": b64u(&key().pk[..])}]});
    std::fs::write(format!("{keys}/corp-sso.jwks.json"), jwks.to_string())
        .map_err(|e| e.to_string())?;
    println!("{dir}/policy.yaml");
    Ok(())
}

/// A corp-sso token for alice (group analysts), valid for an hour.
fn mint() -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "bench"});
    let claims = json!({"iss": "https://sso.acme.example", "aud": "pinhole",
                        "sub": "alice@acme.example", "groups": ["analysts"],
                        "iat": now, "nbf": now, "exp": now + 3000,
                        "jti": "0b1e6e8a-bench"});
    let input = format!(
        "{}.{}",
        b64u(header.to_string().as_bytes()),
        b64u(claims.to_string().as_bytes())
    );
    let sig = key().sk.sign(input.as_bytes(), None);
    Ok(format!("{input}.{}", b64u(&sig[..])))
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        token: String::new(),
        target: "tools".into(),
        tool: "search_orders".into(),
        arguments: json!({"region": "eu-west-1", "limit": 20}),
        blob: String::new(),
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
            "--setup" => {
                setup(&value()?)?;
                std::process::exit(0);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ => a.blob = arg,
        }
    }
    if a.token.is_empty() {
        a.token = mint()?;
    }
    if a.blob.is_empty() {
        return Err(USAGE.into());
    }
    Ok(a)
}

/// Median nanoseconds per call of `f` over five batches of at least `batch`.
fn time_ns(batch: Duration, mut f: impl FnMut()) -> f64 {
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

/// Per decision: a review rule's hold or approval, and held arguments.
type Side = Vec<(Option<Approval>, Option<Value>)>;

/// The body step as `host/http.rs` runs it.
fn evaluate(engine: &Engine, who: &Identity, body: &[u8], now: u64) -> (mcp::Verdict, Side) {
    let mut side: Side = Vec::new();
    let verdict = mcp::evaluate_body(body, &mut |req: &Request| {
        let decided = engine.decide_at(who, req, now);
        let held = decided.approval.as_ref().is_some_and(|a| a.grant.is_none());
        let arguments = match req {
            Request::ToolCall { arguments, .. } if held => Some((*arguments).clone()),
            _ => None,
        };
        side.push((decided.approval, arguments));
        decided.decision
    });
    (verdict, side)
}

/// What the host knows of the request besides the decision.
struct Ctx<'a> {
    source: &'a str,
    conn: u32,
    request_id: Option<&'a str>,
    time_ms: u64,
}

/// The audit event of one decision, sealed, as the host builds it.
fn seal(
    chain: &mut AuditChain,
    engine: &Engine,
    who: &Identity,
    d: &mcp::Decided,
    ctx: &Ctx<'_>,
) -> String {
    let Ctx {
        source,
        conn,
        request_id,
        time_ms,
    } = *ctx;
    let mut command = Command::mcp_method(&d.method);
    if d.method == "tools/call" {
        command.tool = d.name.as_deref();
    }
    command.arguments_digest = d.arguments_digest.clone();
    let conn = conn.to_string();
    let mut event = AuditEvent::decided(
        time_ms,
        &engine.target.name,
        engine.target.protocol,
        command,
        &d.decision,
        0,
    );
    event.conn = Some(&conn);
    event.request = request_id;
    event.source = Some(source);
    event.identity = Some(AuditIdentity::of(who));
    chain.seal(&event)
}

fn run(a: &Args) -> Result<(), String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    let (now_s, now_ms) = (now.as_secs(), now.as_millis() as u64);
    let body = serde_json::to_vec(&json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": a.tool, "arguments": a.arguments},
    }))
    .map_err(|e| e.to_string())?;
    let raw = std::fs::read(&a.blob).map_err(|e| format!("{}: {e}", a.blob))?;
    let engine = Engine::from_blob_with_env(&raw, &a.target, &|_| Some("x".into()))?;
    let authorization = format!("Bearer {}", a.token);
    let who = engine
        .authenticate(Some(&authorization), now_s)
        .map_err(|e| format!("the token is refused: {e:?}"))?;
    let (verdict, _) = evaluate(&engine, &who, &body, now_s);
    let d = verdict
        .decided
        .first()
        .ok_or("the body decided nothing")?
        .clone();
    let ctx = Ctx {
        source: "10.1.2.3:54321",
        conn: 42,
        request_id: Some("0b1e6e8a-4d2c-4c57-9a43-6f1e5b2d7c10"),
        time_ms: now_ms,
    };
    let mut chain = AuditChain::new("http-3f2a9c0d1e5b7788");
    let counters = metrics::DecisionCounters::new();

    let b = a.batch;
    let mut rows: Vec<(&str, f64)> = Vec::new();
    rows.push((
        "authenticate",
        time_ns(b, || {
            black_box(engine.authenticate(black_box(Some(&authorization)), now_s)).ok();
        }),
    ));
    rows.push((
        "identity_headers",
        time_ns(b, || {
            black_box(engine.identity_headers(black_box(&who)));
        }),
    ));
    rows.push((
        "masker",
        time_ns(b, || {
            black_box(engine.masker(black_box(&who.roles))).ok();
        }),
    ));
    rows.push((
        "evaluate_body",
        time_ns(b, || {
            black_box(evaluate(&engine, &who, black_box(&body), now_s));
        }),
    ));
    rows.push((
        "metric_name",
        time_ns(b, || {
            black_box(metrics::decision(
                d.decision.effect.as_str(),
                black_box(&engine.target.name),
                d.decision.rule.as_deref(),
            ));
        }),
    ));
    rows.push((
        "metric_cached",
        time_ns(b, || {
            black_box(counters.get(
                d.decision.effect,
                black_box(&engine.target.name),
                d.decision.rule.as_deref(),
                |_name| Some(1u32),
            ));
        }),
    ));
    rows.push((
        "audit_seal",
        time_ns(b, || {
            black_box(seal(&mut chain, &engine, &who, &d, &ctx));
        }),
    ));
    let line = seal(&mut chain, &engine, &who, &d, &ctx);
    rows.push((
        "audit_log_line",
        time_ns(b, || {
            black_box(format!(
                "{}",
                format_args!("{LOG_PREFIX}{}", black_box(&line))
            ));
        }),
    ));
    rows.push((
        "total",
        time_ns(b, || {
            let who = match engine.authenticate(Some(&authorization), now_s) {
                Ok(w) => w,
                Err(_) => return,
            };
            black_box(engine.identity_headers(&who));
            black_box(engine.masker(&who.roles)).ok();
            let (verdict, _side) = evaluate(&engine, &who, &body, now_s);
            for d in &verdict.decided {
                black_box(counters.get(
                    d.decision.effect,
                    &engine.target.name,
                    d.decision.rule.as_deref(),
                    |_name| Some(1u32),
                ));
                let line = seal(&mut chain, &engine, &who, d, &ctx);
                black_box(format!("{}", format_args!("{LOG_PREFIX}{line}")));
            }
            black_box(verdict);
        }),
    ));
    let out: serde_json::Map<String, Value> = rows
        .iter()
        .map(|(k, v)| ((*k).to_string(), json!((v * 10.0).round() / 10.0)))
        .collect();
    for (k, v) in &rows {
        println!("{k:>18} {v:>10.1} ns");
    }
    println!(
        "{}",
        json!({"effect": d.decision.effect.as_str(), "rule": d.decision.rule, "ns": out})
    );
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_path: {e}");
            ExitCode::FAILURE
        }
    }
}
