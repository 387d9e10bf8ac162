//! Native cost of the host-free work on the MCP response path: `tools/list`
//! filtering and `tools/call` result masking, on the payloads of
//! `scripts/bench-responses.py` (the proxy-wasm copies of the body in and
//! out of the VM are not here).
//!
//! ```sh
//! .venv/bin/python scripts/bench-responses.py --write-payloads /tmp/rp
//! cargo run --release -p pinhole-filter --example response_path -- [--breakdown] /tmp/rp
//! ```
//!
//! The visibility test is the bench policy's outcome for the analyst
//! (`catalog_read_*`, not `*_purge`) as a closure, not the engine; the
//! masker is the bench policy's masking rule (`**.email`, `**.card`, the
//! email, payment_card and phone detectors, `partial: 4`). Per payload,
//! median of five batches of at least `--batch-ms` (default 300) ms:
//! - `parse`: `serde_json::from_slice::<Value>` (a reference: the filter
//!   parses strictly, rejecting duplicate keys);
//! - `filter`: [`mcp::filter_json_response`], the list pending (no masking);
//! - `filter+mask`: [`mcp::filter_json_response_masked`] with the masker,
//!   what the filter runs for a caller a masking rule applies to;
//! - `mask_value`: [`Masker::mask_mcp_result`] on an already parsed
//!   `result` (clone time subtracted).
//!
//! `--breakdown` adds `mask_value` per part of the masking rule (the two
//! field paths alone, each detector alone, the three detectors) for the
//! tools/call results.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use pinhole_filter::mask::{DetectorRule, FieldRule, MaskSpec, Masker, Strategy};
use pinhole_filter::mcp::{self, ListKind};
use pinhole_filter::policy::eval::Item;
use serde_json::{json, Value};

const USAGE: &str = "usage: response_path [--batch-ms MS] [--breakdown] DIR \
                     (DIR from scripts/bench-responses.py --write-payloads DIR)";

fn median_ns(batch: Duration, mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    f()?;
    let mut runs = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < batch {
            f()?;
            n += 1;
        }
        runs.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    runs.sort_by(|a, b| a.total_cmp(b));
    Ok(runs.get(2).copied().unwrap_or(f64::NAN))
}

fn masker_with(fields: &[&str], detectors: &[&str]) -> Result<Masker, String> {
    let partial = || Strategy::Partial { keep: 4 };
    let spec = MaskSpec {
        fields: fields
            .iter()
            .map(|p| FieldRule {
                path: (*p).into(),
                strategy: partial(),
            })
            .collect(),
        detectors: detectors
            .iter()
            .map(|d| DetectorRule {
                detector: (*d).into(),
                pattern: None,
                strategy: partial(),
            })
            .collect(),
        ..MaskSpec::default()
    };
    Masker::new(&spec, None).map_err(|e| e.to_string())
}

const FIELDS: &[&str] = &["**.email", "**.card"];
const DETECTORS: &[&str] = &["email", "payment_card", "phone"];

fn visible(item: Item) -> bool {
    matches!(item, Item::Tool(n) if n.starts_with("catalog_read_") && !n.ends_with("_purge"))
}

fn mask_value_ns(batch: Duration, m: &Masker, result: &Value, clone: f64) -> Result<f64, String> {
    let t = median_ns(batch, || {
        let mut r = black_box(result).clone();
        black_box(m.mask_mcp_result(&mut r).map_err(|e| e.to_string())?);
        Ok(())
    })?;
    Ok(t - clone)
}

fn run(dir: &str, batch: Duration, breakdown: bool) -> Result<(), String> {
    let m = masker_with(FIELDS, DETECTORS)?;
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>15} {:>14} {:>7}",
        "payload", "bytes", "parse µs", "filter µs", "filter+mask µs", "mask_value µs", "masked"
    );
    for (file, id) in [
        ("list-50.json", json!(3)),
        ("list-500.json", json!(3)),
        ("result.json", json!(7)),
        ("result-2x.json", json!(7)),
    ] {
        let path = format!("{dir}/{file}");
        let Ok(body) = std::fs::read(&path) else {
            eprintln!("{path}: missing, skipped");
            continue;
        };
        let lists = vec![(id, ListKind::Tools)];
        let err = |e: &dyn std::fmt::Display| format!("{file}: {e}");
        let parse = median_ns(batch, || {
            let v: Value = serde_json::from_slice(black_box(&body)).map_err(|e| err(&e))?;
            black_box(v);
            Ok(())
        })?;
        let filter = median_ns(batch, || {
            let out = mcp::filter_json_response(black_box(&body), &lists, &visible)
                .map_err(|e| err(&e))?;
            black_box(out);
            Ok(())
        })?;
        let mut masked = 0;
        let both = median_ns(batch, || {
            let (out, n) =
                mcp::filter_json_response_masked(black_box(&body), &lists, &visible, Some(&m))
                    .map_err(|e| err(&e))?;
            masked = n;
            black_box(out);
            Ok(())
        })?;
        let doc: Value = serde_json::from_slice(&body).map_err(|e| err(&e))?;
        let result = doc.get("result").cloned().unwrap_or(Value::Null);
        let clone = median_ns(batch, || {
            black_box(black_box(&result).clone());
            Ok(())
        })?;
        let mask_value = mask_value_ns(batch, &m, &result, clone)?;
        println!(
            "{:<16} {:>10} {:>10.0} {:>10.0} {:>15.0} {:>14.0} {:>7}",
            file,
            body.len(),
            parse / 1e3,
            filter / 1e3,
            both / 1e3,
            mask_value / 1e3,
            masked
        );
        if breakdown && file.starts_with("result") {
            let mut parts: Vec<(String, Masker)> =
                vec![("the field paths".into(), masker_with(FIELDS, &[])?)];
            for d in DETECTORS {
                parts.push((format!("detector {d}"), masker_with(&[], &[d])?));
            }
            parts.push(("the 3 detectors".into(), masker_with(&[], DETECTORS)?));
            for (what, mk) in &parts {
                let t = mask_value_ns(batch, mk, &result, clone)?;
                println!("  mask_value with {what} only: {:.0} µs", t / 1e3);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut batch = Duration::from_millis(300);
    let mut breakdown = false;
    let mut dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--batch-ms" => match args.next().and_then(|v| v.parse().ok()) {
                Some(ms) => batch = Duration::from_millis(ms),
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--breakdown" => breakdown = true,
            d => dir = Some(d.to_string()),
        }
    }
    let Some(dir) = dir else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(&dir, batch, breakdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("response_path: {e}");
            ExitCode::FAILURE
        }
    }
}
