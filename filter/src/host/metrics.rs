//! Envoy counters (names in [`crate::metrics`]), defined on first use and
//! cached per VM.

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

thread_local! {
    static IDS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
    /// Decision counters by (effect, target, rule): a decision neither
    /// formats nor hashes the counter's name once it was seen.
    static DECISIONS: crate::metrics::DecisionCounters<u32> =
        crate::metrics::DecisionCounters::new();
}

/// Add `by` decisions to `pinhole.decision.effect.<e>.target.<t>.rule.<r>`
/// ([`crate::metrics::decision`]).
pub(crate) fn decision(effect: crate::policy::Effect, target: &str, rule: Option<&str>, by: u64) {
    if by == 0 {
        return;
    }
    let id = DECISIONS.with(|d| {
        d.get(effect, target, rule, |name| {
            hostcalls::define_metric(MetricType::Counter, name).ok()
        })
    });
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
    }
}

/// Add `by` to counter `name` (defining it on first use). Failures are
/// ignored: metrics never affect a decision.
pub(crate) fn add(name: &str, by: u64) {
    if by == 0 {
        return;
    }
    let id = IDS.with(|ids| {
        if let Ok(ids) = ids.try_borrow() {
            if let Some(id) = ids.get(name) {
                return Some(*id);
            }
        }
        let id = hostcalls::define_metric(MetricType::Counter, name).ok()?;
        if let Ok(mut ids) = ids.try_borrow_mut() {
            if ids.len() < 10_000 {
                ids.insert(name.to_owned(), id);
            }
        }
        Some(id)
    });
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
    }
}

pub(crate) fn inc(name: &str) {
    add(name, 1);
}
