//! Audit events: sealed into this worker's hash chain and written to
//! Envoy's log as one line each, prefixed `pinhole-audit: `
//! (`pinhole audit verify` checks a log), and — when the plugin
//! configuration names an `audit` sink — queued in a bounded buffer that the
//! root context POSTs as JSON lines to an Envoy cluster on its tick. See
//! docs/audit.md.

use std::cell::RefCell;
use std::time::Duration;

use proxy_wasm::traits::Context;

use super::metrics;
use crate::audit::{AuditBuffer, AuditChain, AuditEvent, LOG_PREFIX};
use crate::engine::AuditSink;

/// The sink of this VM: its configuration, the queued lines and the batch
/// being delivered (one at a time, so order is kept).
struct Sink {
    cfg: AuditSink,
    buf: AuditBuffer,
    in_flight: Option<(u32, String, u64)>,
}

thread_local! {
    /// One chain per VM (= per Envoy worker for a plugin's vm_id), named
    /// with random bytes so chains of restarted or parallel workers never
    /// share a name.
    static CHAIN: RefCell<Option<AuditChain>> = const { RefCell::new(None) };
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

fn worker_id() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    format!("w-{}", crate::audit::hex(&b))
}

/// Install (or remove) this VM's sink from a plugin configuration; returns
/// the flush period to tick at.
pub(crate) fn configure(cfg: Option<AuditSink>) -> Option<Duration> {
    SINK.with(|s| {
        let mut s = s.try_borrow_mut().ok()?;
        match cfg {
            None => {
                *s = None;
                None
            }
            Some(cfg) => {
                let period = Duration::from_millis(cfg.flush_ms.max(10));
                match s.as_mut() {
                    // A reload keeps what is queued; the new settings apply.
                    Some(existing) => existing.cfg = cfg,
                    None => {
                        *s = Some(Sink {
                            buf: AuditBuffer::new(cfg.buffer_bytes),
                            cfg,
                            in_flight: None,
                        })
                    }
                }
                Some(period)
            }
        }
    })
}

/// Strict mode: may a new command run? (false when the sink is strict and
/// its buffer is full: the command would run unaudited).
pub(crate) fn admits() -> bool {
    SINK.with(|s| match s.try_borrow() {
        Ok(s) => match s.as_ref() {
            Some(sink) if sink.cfg.strict => sink.buf.admits(),
            _ => true,
        },
        Err(_) => true,
    })
}

/// Seal `event` into the chain, log it and queue it for the sink; returns
/// the line (for filter state).
pub(crate) fn emit(event: &AuditEvent<'_>) -> Option<String> {
    let line = CHAIN.with(|c| {
        let mut c = c.try_borrow_mut().ok()?;
        let chain = c.get_or_insert_with(|| AuditChain::new(worker_id()));
        Some(chain.seal(event))
    })?;
    log::info!("{LOG_PREFIX}{line}");
    let dropped = SINK.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => match s.as_mut() {
            Some(sink) => !sink.buf.push(line.clone()),
            None => false,
        },
        Err(_) => false,
    });
    if dropped {
        metrics::inc(crate::metrics::AUDIT_DROPPED);
    }
    Some(line)
}

/// On the root's tick: send the next batch, unless one is on its way.
pub(crate) fn flush(root: &dyn Context) {
    SINK.with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else {
            return;
        };
        let Some(sink) = s.as_mut() else { return };
        if sink.in_flight.is_some() {
            return;
        }
        let Some(batch) = sink.buf.drain_batch(sink.cfg.batch_bytes) else {
            return;
        };
        let lines = batch.bytes().filter(|&b| b == b'\n').count() as u64;
        let authority = sink
            .cfg
            .authority
            .clone()
            .unwrap_or_else(|| sink.cfg.cluster.clone());
        let headers = vec![
            (":method", "POST"),
            (":path", sink.cfg.path.as_str()),
            (":authority", authority.as_str()),
            ("content-type", "application/x-ndjson"),
        ];
        match root.dispatch_http_call(
            &sink.cfg.cluster,
            headers,
            Some(batch.as_bytes()),
            vec![],
            Duration::from_secs(5),
        ) {
            Ok(token) => sink.in_flight = Some((token, batch, lines)),
            Err(e) => {
                log::warn!(
                    "pinhole: audit sink: cannot POST to cluster `{}` ({e:?}); {} events kept for the next try",
                    sink.cfg.cluster,
                    lines
                );
                sink.buf.restore(batch);
            }
        }
    });
}

/// The collector answered call `token` with `status` (None: no response).
pub(crate) fn delivered(token: u32, status: Option<u32>) {
    let sent = SINK.with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else {
            return 0;
        };
        let Some(sink) = s.as_mut() else { return 0 };
        match sink.in_flight.take() {
            Some((t, batch, lines)) if t == token => {
                if status.is_some_and(|c| (200..300).contains(&c)) {
                    lines
                } else {
                    log::warn!(
                        "pinhole: audit sink: collector answered {status:?}; {lines} events kept for the next try"
                    );
                    sink.buf.restore(batch);
                    0
                }
            }
            other => {
                sink.in_flight = other;
                0
            }
        }
    });
    metrics::add(crate::metrics::AUDIT_SENT, sent);
}

/// Milliseconds since the Unix epoch from the host clock.
pub(crate) fn now_ms(ctx: &dyn proxy_wasm::traits::Context) -> u64 {
    ctx.get_current_time()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
