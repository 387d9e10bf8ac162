//! Audit events: sealed into this worker's hash chain and written to
//! Envoy's log as one line each, prefixed `pinhole-audit: `
//! (`pinhole audit verify` checks a log). See docs/audit.md.

use std::cell::RefCell;

use crate::audit::{AuditChain, AuditEvent, LOG_PREFIX};

thread_local! {
    /// One chain per VM (= per Envoy worker for a plugin's vm_id), named
    /// with random bytes so chains of restarted or parallel workers never
    /// share a name.
    static CHAIN: RefCell<Option<AuditChain>> = const { RefCell::new(None) };
}

fn worker_id() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    format!("w-{}", crate::audit::hex(&b))
}

/// Seal `event` into the chain and log it; returns the line (for filter
/// state), or `None` if the chain was busy (never, single-threaded).
pub(crate) fn emit(event: &AuditEvent<'_>) -> Option<String> {
    let line = CHAIN.with(|c| {
        let mut c = c.try_borrow_mut().ok()?;
        let chain = c.get_or_insert_with(|| AuditChain::new(worker_id()));
        Some(chain.seal(event))
    })?;
    log::info!("{LOG_PREFIX}{line}");
    Some(line)
}

/// Milliseconds since the Unix epoch from the host clock.
pub(crate) fn now_ms(ctx: &dyn proxy_wasm::traits::Context) -> u64 {
    ctx.get_current_time()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
