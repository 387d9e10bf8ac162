//! A whole PostgreSQL connection through `Session`: the input plays both the
//! client and the server (format: `pinhole_fuzz_support::pg`), against the
//! fake authority of the session's property tests.
//!
//! Checked: nothing panics; the backend password (and the MD5 answer made
//! from it) never reaches the client or a log line; no SQL the authority
//! refuses reaches the server other than as the filter's own `DO $pinhole$`
//! block; nothing but startup/password/Sync/Terminate reaches the server
//! before a token is verified, and the client sees only prompts and errors
//! until then; a fast-path call never reaches the server unless allowed; the
//! caller's token is never sent upstream as a password; and, when neither
//! run closed the connection, the transcripts do not depend on how the reads
//! were cut (the same records fed with the input's read sizes and whole).
#![no_main]

use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use pinhole_filter::policy::Policy;
use pinhole_fuzz_support::pg::{self, Conn, Fake, Record, Rules};
use pinhole_fuzz_support::{policies, Bytes};

thread_local! {
    static ORDERS: Rc<Policy> = Rc::new(policies::must_compile(policies::ORDERS_DB).0);
}

fn run(mode: u8, records: &[Record], split: bool) -> Conn {
    let rules = if mode & 0x10 != 0 {
        Rules::Policy(ORDERS.with(Rc::clone))
    } else {
        Rules::Strings
    };
    let fake = Fake::new(mode & 4 == 0, mode & 8 != 0, rules);
    let mut c = Conn::new(fake, mode & 0x20 != 0);
    for (server, bytes) in pg::prelude(mode) {
        c.feed(server, &bytes, 0);
    }
    for r in records {
        if c.closed {
            break;
        }
        if r.expire {
            c.now = pg::EXP + 1;
        }
        c.feed(r.server, &r.bytes, if split { r.chunk } else { 0 });
    }
    c
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let mode = b.u8();
    let records = pg::parse_records(&mut b);
    if pg::expensive_scram(&records) {
        return;
    }
    let split = run(mode, &records, true);
    pg::check_invariants(&split);
    if records.iter().all(|r| r.chunk == 0) {
        return;
    }
    let whole = run(mode, &records, false);
    pg::check_invariants(&whole);
    if !split.closed && !whole.closed {
        assert!(
            split.to_server == whole.to_server,
            "server-bound bytes depend on the read boundaries"
        );
        assert!(
            split.to_client == whole.to_client,
            "client-bound bytes depend on the read boundaries"
        );
        assert_eq!(
            split.s.is_done(),
            whole.s.is_done(),
            "session end depends on the read boundaries"
        );
    }
});
