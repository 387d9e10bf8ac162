//! The review webhook: commands held by a `review` rule are announced to an
//! Envoy cluster (a chat bridge, a ticketing hook), one POST per held
//! request id per worker and quiet period. Best effort: the audit trail is
//! the record; a receiver that is down loses notices (logged), never
//! commands.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

use proxy_wasm::traits::Context;

use crate::engine::{review_notice, Approval, ReviewWebhook, REVIEW_NOTICE_QUIET_MS};
use crate::policy::eval::Decision;

/// Notices waiting per worker; more are dropped (and logged).
const MAX_QUEUED: usize = 256;

struct Notifier {
    cfg: ReviewWebhook,
    queue: VecDeque<Vec<u8>>,
    /// Request ids announced lately, with when (ms).
    recent: VecDeque<(String, u64)>,
    in_flight: Option<u32>,
}

thread_local! {
    static NOTIFIER: RefCell<Option<Notifier>> = const { RefCell::new(None) };
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Install (or remove) the webhook; returns the period to tick at.
pub(crate) fn configure(cfg: Option<ReviewWebhook>) -> Option<Duration> {
    NOTIFIER.with(|n| {
        let mut n = n.try_borrow_mut().ok()?;
        match cfg {
            None => {
                *n = None;
                None
            }
            Some(cfg) => {
                match n.as_mut() {
                    Some(existing) => existing.cfg = cfg,
                    None => {
                        *n = Some(Notifier {
                            cfg,
                            queue: VecDeque::new(),
                            recent: VecDeque::new(),
                            in_flight: None,
                        })
                    }
                }
                Some(Duration::from_millis(500))
            }
        }
    })
}

/// A command was held: queue its notice (unless announced lately).
pub(crate) fn review(approval: &Approval, d: &Decision, event_line: Option<&str>) {
    NOTIFIER.with(|n| {
        let Ok(mut n) = n.try_borrow_mut() else {
            return;
        };
        let Some(n) = n.as_mut() else { return };
        let now = now_ms();
        while n
            .recent
            .front()
            .is_some_and(|(_, t)| now.saturating_sub(*t) > REVIEW_NOTICE_QUIET_MS)
        {
            n.recent.pop_front();
        }
        if n.recent.iter().any(|(r, _)| *r == approval.request) {
            return;
        }
        if n.queue.len() >= MAX_QUEUED || n.recent.len() >= 4 * MAX_QUEUED {
            log::warn!(
                "pinhole: review webhook: too many held requests queued; not announcing {}",
                approval.request
            );
            return;
        }
        n.recent.push_back((approval.request.clone(), now));
        n.queue.push_back(review_notice(approval, d, event_line));
    });
}

/// On the root's tick: send the next notice, unless one is on its way.
pub(crate) fn flush(root: &dyn Context) {
    NOTIFIER.with(|n| {
        let Ok(mut n) = n.try_borrow_mut() else {
            return;
        };
        let Some(n) = n.as_mut() else { return };
        if n.in_flight.is_some() {
            return;
        }
        let Some(body) = n.queue.pop_front() else {
            return;
        };
        let authority = n
            .cfg
            .authority
            .clone()
            .unwrap_or_else(|| n.cfg.cluster.clone());
        let headers = vec![
            (":method", "POST"),
            (":path", n.cfg.path.as_str()),
            (":authority", authority.as_str()),
            ("content-type", "application/json"),
        ];
        match root.dispatch_http_call(
            &n.cfg.cluster,
            headers,
            Some(&body),
            vec![],
            Duration::from_secs(5),
        ) {
            Ok(token) => n.in_flight = Some(token),
            Err(e) => log::warn!(
                "pinhole: review webhook: cannot POST to cluster `{}` ({e:?}); notice dropped",
                n.cfg.cluster
            ),
        }
    });
}

/// The receiver answered call `token`; `false`: not a webhook call.
pub(crate) fn delivered(token: u32, status: Option<u32>) -> bool {
    NOTIFIER.with(|n| {
        let Ok(mut n) = n.try_borrow_mut() else {
            return false;
        };
        let Some(n) = n.as_mut() else { return false };
        if n.in_flight != Some(token) {
            return false;
        }
        n.in_flight = None;
        if !status.is_some_and(|c| (200..300).contains(&c)) {
            log::warn!("pinhole: review webhook: receiver answered {status:?}; notice dropped");
        }
        true
    })
}
