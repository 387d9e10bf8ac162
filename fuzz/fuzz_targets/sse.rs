//! The `text/event-stream` list-response filter (`SseFilter`) fed arbitrary
//! chunks, with examples/mcp-tools as the policy.
//!
//! Input: `roles:u8 nsizes:u8 sizes[nsizes % 8] stream`.
//!
//! Checked: no panic; the output does not depend on how the stream is cut
//! into chunks (same success, same bytes); and what a client reads from the
//! output with an independent SSE parser: every event whose data looks like
//! JSON is JSON (to serde_json) and keeps only visible list entries. After a
//! refusal, the error events' data is JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinhole_filter::mcp::SseFilter;
use pinhole_filter::policy::eval::Item;
use pinhole_filter::policy::Policy;
use pinhole_fuzz_support::{mcp, policies, splits, sse, Bytes};
use serde_json::Value;

thread_local! {
    static POLICY: Policy = policies::must_compile(policies::MCP_TOOLS).0;
}

fn run(
    stream: &[u8],
    sizes: &[u8],
    visible: &dyn Fn(Item) -> bool,
) -> (Result<Vec<u8>, ()>, Vec<u8>) {
    let mut f = SseFilter::new(mcp::lists());
    let mut out = Vec::new();
    let cuts = splits(stream.len(), sizes);
    let n = cuts.len();
    if n == 0 {
        return match f.push(&[], true, visible) {
            Ok(b) => (Ok(b), Vec::new()),
            Err(_) => (Err(()), f.error_event("refused")),
        };
    }
    for (i, r) in cuts.into_iter().enumerate() {
        match f.push(&stream[r], i + 1 == n, visible) {
            Ok(b) => out.extend(b),
            Err(_) => {
                // Later pushes fail too.
                assert!(
                    f.push(b"data: {}\n\n", true, visible).is_err(),
                    "a push after a refusal passed"
                );
                return (Err(()), f.error_event("refused"));
            }
        }
    }
    (Ok(out), Vec::new())
}

fn check_client_view(out: &[u8], visible: &dyn Fn(Item) -> bool) {
    for data in sse::events(out).into_iter().flatten() {
        let text = String::from_utf8_lossy(&data);
        let t = text.trim_start_matches([' ', '\t', '\n', '\r']);
        if !(t.starts_with('{') || t.starts_with('[')) {
            continue;
        }
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => panic!("an event's data looks like JSON but is not ({e}): {text:?}"),
        };
        mcp::check_visible(&v, visible);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let roles = policies::roles(b.u8());
    let n = usize::from(b.u8() % 8);
    let sizes = b.take(n).to_vec();
    let stream = b.rest();
    POLICY.with(|p| {
        let visible = mcp::visible_for(p, &roles);
        let (whole, whole_err) = run(stream, &[], &visible);
        let (cut, cut_err) = run(stream, &sizes, &visible);
        assert_eq!(
            whole.is_ok(),
            cut.is_ok(),
            "refusal depends on the chunking"
        );
        match (&whole, &cut) {
            (Ok(a), Ok(c)) => {
                assert!(a == c, "output depends on the chunking");
                check_client_view(a, &visible);
            }
            _ => {
                for e in [&whole_err, &cut_err] {
                    for d in sse::events(e).into_iter().flatten() {
                        assert!(
                            serde_json::from_slice::<Value>(&d).is_ok(),
                            "error event data is not JSON"
                        );
                    }
                }
            }
        }
    });
});
