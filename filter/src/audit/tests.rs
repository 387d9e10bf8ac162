use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::*;
use crate::policy::eval::Decision;

fn roles() -> Vec<String> {
    vec!["developer".into(), "sre".into()]
}

/// The `i`-th event of a varied sequence (SQL, MCP, HTTP; all outcomes).
fn sample<'a>(i: u64, roles: &'a [String], args: &'a Value) -> AuditEvent<'a> {
    let command = match i % 4 {
        0 => Command::sql("SELECT * FROM orders WHERE id = 42"),
        1 => Command::mcp_tool("deploy", args),
        2 => Command::http("GET", "/v1/items?x=1"),
        _ => Command::mcp_resource("resources/read", "file:///etc/motd"),
    };
    let (decision, rule, masked) = match i % 3 {
        0 => (Outcome::Allow, Some("read-orders"), 0),
        1 => (Outcome::Deny, None, 0),
        _ => (Outcome::Masked, Some("mask-pii"), 3),
    };
    AuditEvent {
        time_ms: 1_735_787_045_678 + i,
        approval: None,
        conn: Some("7"),
        request: Some("req-1"),
        identity: Some(AuditIdentity {
            elevated: &[],
            grant: None,
            issuer: "corp-sso",
            roles,
            subject: "alice",
        }),
        source: Some("10.0.0.7:53124"),
        target: "tools",
        protocol: Protocol::Mcp,
        command,
        decision,
        rule,
        reason: "decided \"by\" rule\n\t\u{1}é",
        masked,
    }
}

fn chain_lines(worker: &str, n: u64) -> Vec<String> {
    let r = roles();
    let args = json!({"environment": "staging", "replicas": 3});
    let mut c = AuditChain::new(worker);
    (0..n).map(|i| c.seal(&sample(i, &r, &args))).collect()
}

fn with_prefix(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            format!(
                "[2025-01-02 03:04:05.{i:03}][12][info][wasm] [source/extensions/common/wasm/context.cc:1195] wasm log pinhole_http pinhole: {LOG_PREFIX}{l}"
            )
        })
        .collect()
}

fn verify(lines: &[String]) -> VerifyReport {
    verify_lines(lines.iter().map(String::as_str))
}

fn only_problem(r: &VerifyReport) -> &Problem {
    let p = r.problems();
    assert_eq!(p.len(), 1, "{r:#?}");
    p[0]
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}

/// Recompute `hash` after an edit (a tamperer who knows the format).
fn rehash(v: &mut Value) -> String {
    v.as_object_mut().unwrap().remove("hash");
    let body = serde_json::to_string(v).unwrap();
    v["hash"] = json!(hex(&Sha256::digest(body.as_bytes())));
    serde_json::to_string(v).unwrap()
}

// ---------------------------------------------------------------- time

#[test]
fn rfc3339_millis() {
    let t = |ms| Rfc3339Millis(ms).to_string();
    assert_eq!(t(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(t(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    assert_eq!(t(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(t(946_684_799_999), "1999-12-31T23:59:59.999Z");
    assert_eq!(t(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
    assert_eq!(t(1_709_208_000_007), "2024-02-29T12:00:00.007Z");
    // Never panics, even absurdly far ahead.
    assert!(t(u64::MAX).ends_with(".615Z"));
}

// ---------------------------------------------------------------- sealing

#[test]
fn sealed_lines_are_canonical_chained_and_hashed() {
    let lines = chain_lines("w1", 6);
    let mut prev = "0".repeat(64);
    for (i, line) in lines.iter().enumerate() {
        let v = parse(line);
        // Canonical: re-serializing the parsed value (sorted keys) gives
        // the same bytes.
        assert_eq!(&serde_json::to_string(&v).unwrap(), line);
        assert!(!line.contains('\n'));
        assert_eq!(v["v"], 1);
        assert_eq!(v["seq"], i as u64 + 1);
        assert_eq!(v["worker"], "w1");
        assert_eq!(v["prev"], prev.as_str());
        let mut body = v.clone();
        body.as_object_mut().unwrap().remove("hash");
        let h = hex(&Sha256::digest(serde_json::to_string(&body).unwrap()));
        assert_eq!(v["hash"], h.as_str());
        prev = h;
    }
}

#[test]
fn event_fields() {
    let r = roles();
    let args = json!({"environment": "staging"});
    let mut c = AuditChain::new("http-3f2a");
    let line = c.seal(&sample(1, &r, &args));
    let v = parse(&line);
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "command", "conn", "decision", "hash", "identity", "masked", "prev", "protocol",
            "reason", "request", "rule", "seq", "source", "target", "time", "v", "worker"
        ]
    );
    assert_eq!(v["time"], "2025-01-02T03:04:05.679Z");
    assert_eq!(v["conn"], "7");
    assert_eq!(v["request"], "req-1");
    assert_eq!(
        v["identity"],
        json!({"grant": null, "issuer": "corp-sso", "roles": ["developer", "sre"], "subject": "alice"})
    );
    assert_eq!(v["source"], "10.0.0.7:53124");
    assert_eq!(v["protocol"], "mcp");
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rule"], Value::Null);
    assert_eq!(v["reason"], "decided \"by\" rule\n\t\u{1}é");
    assert_eq!(v["masked"], 0);
    assert_eq!(
        v["command"],
        json!({"method": "tools/call", "tool": "deploy",
               "arguments_digest": arguments_digest(&args)})
    );
    assert_eq!(c.seq(), 1);
    assert_eq!(v["hash"], hex(&c.last_hash()).as_str());
    assert_eq!(c.worker(), "http-3f2a");
}

#[test]
fn anonymous_event_has_null_identity_and_ids() {
    let d = Decision {
        effect: Effect::Deny,
        rule: None,
        reason: "no token".into(),
    };
    let e = AuditEvent::decided(0, "api", Protocol::Http, Command::http("POST", "/x"), &d, 0);
    let line = AuditChain::new("w").seal(&e);
    let v = parse(&line);
    assert_eq!(v["identity"], Value::Null);
    assert_eq!(v["conn"], Value::Null);
    assert_eq!(v["request"], Value::Null);
    assert_eq!(v["source"], Value::Null);
    assert_eq!(v["command"], json!({"method": "POST", "path": "/x"}));
    assert_eq!(v["protocol"], "http");
    assert_eq!(v["decision"], "deny");
    assert!(verify_lines([line.as_str()]).ok());
}

#[test]
fn outcome_of_decision() {
    assert_eq!(Outcome::of(Effect::Allow, 0), Outcome::Allow);
    assert_eq!(Outcome::of(Effect::Allow, 2), Outcome::Masked);
    assert_eq!(Outcome::of(Effect::Deny, 2), Outcome::Deny);
    assert_eq!(Outcome::of(Effect::Review, 0), Outcome::Review);
    assert_eq!(Outcome::Masked.as_str(), "masked");
}

#[test]
fn sql_command_is_capped_and_fingerprinted() {
    let short = Command::sql("select 1");
    assert_eq!(short.truncated, Some(false));
    assert_eq!(short.sql, Some("select 1"));
    assert_eq!(short.fingerprint.as_deref().map(str::len), Some(16));

    // 3-byte characters straddling the cap: cut at a boundary.
    let long = format!("SELECT '{}'", "€".repeat(1000));
    let c = Command::sql(&long);
    let kept = c.sql.unwrap();
    assert!(kept.len() <= MAX_SQL_BYTES && kept.len() > MAX_SQL_BYTES - 4);
    assert!(long.starts_with(kept));
    assert_eq!(c.truncated, Some(true));
    // The fingerprint covers the whole text: the literal is `?`.
    assert_eq!(c.fingerprint, Some(sql_fingerprint("select 'x'")));

    let v = parse(&AuditChain::new("w").seal(&AuditEvent {
        command: c,
        ..AuditEvent::decided(
            0,
            "db",
            Protocol::Postgres,
            Command::default(),
            &Decision {
                effect: Effect::Allow,
                rule: Some("r".into()),
                reason: "ok".into(),
            },
            0,
        )
    }));
    assert_eq!(v["command"]["truncated"], true);
    assert_eq!(v["command"]["sql"].as_str().unwrap().len(), kept.len());
    assert_eq!(v["protocol"], "postgres");
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["rule"], "r");
}

#[test]
fn mcp_tool_with_sql_argument() {
    let args = json!({"sql": "DELETE FROM t WHERE id = 1"});
    let c = Command::mcp_tool("query", &args).with_sql("DELETE FROM t WHERE id = 1");
    let v = serde_json::to_value(&c).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "arguments_digest",
            "fingerprint",
            "method",
            "sql",
            "tool",
            "truncated"
        ]
    );
    // The derived field order is the sorted order (canonical without a tree).
    assert_eq!(serde_json::to_string(&c).unwrap(), v.to_string());
}

#[test]
fn command_from_request() {
    let args = json!({"b": 1, "a": [1, 2]});
    let c = Command::from_request(&Request::ToolCall {
        name: "deploy",
        arguments: &args,
    });
    assert_eq!(c.tool, Some("deploy"));
    assert_eq!(c.method, Some("tools/call"));
    let c = Command::from_request(&Request::Prompt { name: "p" });
    assert_eq!((c.method, c.prompt), (Some("prompts/get"), Some("p")));
    let c = Command::from_request(&Request::McpMethod {
        method: "completion/complete",
    });
    assert_eq!(c.method, Some("completion/complete"));
    let c = Command::from_request(&Request::Resource { uri: "file:///a" });
    assert_eq!(c.resource, Some("file:///a"));
    let c = Command::from_request(&Request::Http {
        method: "GET",
        path: "/",
    });
    assert_eq!((c.method, c.path), (Some("GET"), Some("/")));
}

#[test]
fn arguments_digest_is_canonical() {
    let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, "x"], "x": null}}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#).unwrap();
    assert_eq!(arguments_digest(&a), arguments_digest(&b));
    let expected = hex(&Sha256::digest(br#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#));
    assert_eq!(arguments_digest(&a), expected[..16]);
    assert_ne!(arguments_digest(&a), arguments_digest(&json!({"b": 2})));
    assert_eq!(arguments_digest(&json!({})).len(), 16);
}

#[test]
fn resumed_chain_continues() {
    let mut a = AuditChain::new("w");
    let r = roles();
    let args = json!({});
    let l1 = a.seal(&sample(0, &r, &args));
    let mut b = AuditChain::resume("w", a.seq(), a.last_hash());
    let l2 = b.seal(&sample(1, &r, &args));
    assert!(verify(&[l1, l2]).ok());
}

// ---------------------------------------------------------------- fingerprint

#[test]
fn normalize_replaces_literals_and_layout() {
    let n = normalize_sql;
    assert_eq!(
        n("SELECT *  FROM orders\n WHERE id = 42 AND name = 'bob'"),
        "select*from orders where id=? and name=?"
    );
    assert_eq!(
        n("select * from orders where id=7 and name='x'"),
        n("SELECT * FROM orders WHERE id = 42 AND name = 'bob'")
    );
    assert_eq!(
        n("INSERT INTO t (a, b) VALUES (1.5e-3, .5)"),
        "insert into t(a,b)values(?,?)"
    );
    assert_eq!(
        n("select 'it''s', E'a\\'b', X'1F', b'01', N'x', U&'d\\0061t'"),
        "select ?,?,?,?,?,?"
    );
    assert_eq!(
        n("select $$a 'b' $$, $fn$ x $$ y $fn$, $1, $23"),
        "select ?,?,?,?"
    );
    assert_eq!(
        n("select 0x1F, 1_000, 0o17, 0b101, 3e+5 from t"),
        "select ?,?,?,?,? from t"
    );
    assert_eq!(
        n("select a -- comment 'x'\n , b /* c /* nested */ 'y' */ from t"),
        "select a,b from t"
    );
    assert_eq!(
        n("SELECT \"Mixed\"\"Case\" FROM \"T\""),
        "select \"Mixed\"\"Case\" from \"T\""
    );
    assert_eq!(n("select u&\"x\" from t"), "select u&\"x\" from t");
    assert_eq!(
        n("select a$b, t.c::text from t"),
        "select a$b,t.c::text from t"
    );
    assert_eq!(n("SELECT 'x' 'y'"), "select ? ?");
    assert_eq!(n("  \t\n"), "");
    assert_eq!(n("SELECT café FROM straße"), "select café from straße");
    assert_eq!(n("select a - -1, b-1"), "select a--?,b-?");
    assert_eq!(n("BEGIN; COMMIT;"), "begin;commit;");
}

#[test]
fn fingerprint_groups_runs_of_one_statement() {
    let f = sql_fingerprint;
    assert_eq!(
        f("SELECT * FROM t WHERE id = 1"),
        f("select *\nfrom t where id=$1")
    );
    assert_eq!(
        f("SELECT * FROM t WHERE id = 1"),
        f("select * from T /* x */ where ID = 99")
    );
    assert_ne!(
        f("SELECT * FROM t WHERE id = 1"),
        f("SELECT * FROM u WHERE id = 1")
    );
    assert_ne!(f("SELECT * FROM \"T\""), f("SELECT * FROM \"t\""));
    assert_eq!(f("x").len(), 16);
    // The docs' example.
    let doc = "SELECT name, email FROM customers WHERE id = 42";
    assert_eq!(
        normalize_sql(doc),
        "select name,email from customers where id=?"
    );
    assert_eq!(
        f(doc),
        f("select name , email from CUSTOMERS where id=$1 -- by id")
    );
    assert_eq!(f(doc), "066d3775a29f506c");
}

#[test]
fn normalize_never_panics_on_junk() {
    let unterminated = [
        "select 'abc",
        "select E'ab\\",
        "select \"abc",
        "select /* x",
        "select $tag$ body",
        "select $",
        "select $$",
        "select 1e",
        "select 1e+",
        "U&",
        "u&'",
        "--",
        "/*/",
        "é'",
    ];
    for s in unterminated {
        let _ = normalize_sql(s);
    }
    // Every short string over a hostile alphabet.
    let alphabet = [
        "'", "\"", "$", "-", "/", "*", "e", "U", "&", "1", ".", "\\", " ", "é", "x", "+",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        let mut s = String::new();
        for _ in 0..(seed % 12) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push_str(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        let out = normalize_sql(&s);
        assert!(out.len() <= s.len() + 1, "{s:?} → {out:?}");
        seed = seed.wrapping_add(1);
    }
}

// ---------------------------------------------------------------- verify

#[test]
fn clean_chain_verifies() {
    let lines = chain_lines("w1", 10);
    let r = verify(&lines);
    assert!(r.ok(), "{r:#?}");
    assert_eq!(r.events, 10);
    assert_eq!(r.chains.len(), 1);
    let c = &r.chains[0];
    assert_eq!(
        (c.worker.as_str(), c.events, c.first_seq, c.last_seq),
        ("w1", 10, 1, 10)
    );
    assert!(c.notes.is_empty());
    assert_eq!(c.first.line, 1);
    assert_eq!(c.last.line, 10);
}

#[test]
fn envoy_log_lines_and_noise() {
    let mut lines = with_prefix(&chain_lines("w1", 5));
    lines.insert(0, "[info] starting envoy".into());
    lines.insert(3, "[warn] pinhole: policy reloaded".into());
    lines.push(String::new());
    let r = verify(&lines);
    assert!(r.ok(), "{r:#?}");
    assert_eq!((r.lines, r.events), (8, 5));
    assert_eq!(r.chains[0].first.line, 2);
    // Windows line endings are tolerated.
    let crlf: Vec<String> = lines.iter().map(|l| format!("{l}\r")).collect();
    assert!(verify(&crlf).ok());
}

#[test]
fn edited_field_is_detected() {
    let mut lines = chain_lines("w1", 6);
    lines[3] = lines[3].replace("\"decision\":\"allow\"", "\"decision\":\"deny\"");
    let mut v = parse(&lines[2]);
    assert_ne!(v["decision"], "allow");
    v["decision"] = json!("allow");
    lines[2] = serde_json::to_string(&v).unwrap();
    let r = verify(&lines);
    let p = r.problems();
    assert_eq!(p.len(), 2, "{r:#?}");
    assert_eq!((p[0].at.line, p[0].kind), (3, ProblemKind::Edited));
    assert!(p[0].message.contains("does not match its hash"));
    assert_eq!((p[1].at.line, p[1].kind), (4, ProblemKind::Edited));
    assert_eq!(r.chains[0].first_bad().unwrap().at.line, 3);
}

#[test]
fn edited_and_rehashed_is_detected_at_the_next_line() {
    let mut lines = chain_lines("w1", 6);
    let mut v = parse(&lines[2]);
    v["identity"]["subject"] = json!("mallory");
    lines[2] = rehash(&mut v);
    let r = verify(&lines);
    let p = only_problem(&r);
    assert_eq!((p.at.line, p.kind), (4, ProblemKind::PrevMismatch));
    assert!(p.message.contains("line 3"), "{}", p.message);
}

#[test]
fn reformatted_or_duplicate_key_line_is_edited() {
    let lines = with_prefix(&chain_lines("w1", 3));
    let mut spaced = lines.clone();
    let json = audit_json(&lines[1]).unwrap();
    let pretty = serde_json::to_string_pretty(&parse(json)).unwrap();
    spaced[1] = lines[1].replace(json, &pretty.replace('\n', ""));
    let p = only_problem(&verify(&spaced)).clone();
    assert_eq!((p.at.line, p.kind), (2, ProblemKind::Edited));
    assert!(p.message.contains("canonical"));

    // A second `decision` key: readers disagree on which wins.
    let mut dup = lines.clone();
    dup[1] = dup[1].replacen('{', "{\"decision\":\"allow\",", 1);
    let p = only_problem(&verify(&dup)).clone();
    assert_eq!((p.at.line, p.kind), (2, ProblemKind::Edited));
}

#[test]
fn deleted_line_is_detected() {
    let mut lines = chain_lines("w1", 6);
    lines.remove(2);
    let r = verify(&lines);
    let p = only_problem(&r);
    assert_eq!((p.at.line, p.kind), (3, ProblemKind::Deleted));
    assert!(p.message.contains("seq jumps from 2"), "{}", p.message);
    assert!(
        p.message.contains("1 event (seq 3) missing"),
        "{}",
        p.message
    );

    let mut lines = chain_lines("w1", 8);
    lines.drain(2..5);
    let p = only_problem(&verify(&lines)).clone();
    assert!(
        p.message.contains("3 events (seq 3-5) missing"),
        "{}",
        p.message
    );
}

#[test]
fn swapped_lines_are_detected() {
    let mut lines = chain_lines("w1", 6);
    lines.swap(2, 3);
    let r = verify(&lines);
    let p = r.problems();
    assert!(!p.is_empty());
    assert_eq!(
        (p[0].at.line, p[0].kind),
        (3, ProblemKind::Reordered),
        "{r:#?}"
    );
    assert!(
        p[0].message.contains("seq 3 comes later (line 4)"),
        "{}",
        p[0].message
    );
    assert!(p
        .iter()
        .all(|p| p.kind == ProblemKind::Reordered || p.kind == ProblemKind::PrevMismatch));
}

#[test]
fn duplicated_line_is_detected() {
    let mut lines = chain_lines("w1", 6);
    lines.insert(3, lines[2].clone());
    let r = verify(&lines);
    let p = only_problem(&r);
    assert_eq!((p.at.line, p.kind), (4, ProblemKind::Replayed));
    assert!(
        p.message.contains("identical copy of line 3"),
        "{}",
        p.message
    );

    // A replay far later (and of the first event).
    let mut lines = chain_lines("w1", 6);
    lines.push(lines[0].clone());
    let p = only_problem(&verify(&lines)).clone();
    assert_eq!((p.at.line, p.kind), (7, ProblemKind::Replayed));
}

#[test]
fn forged_event_with_a_taken_seq_is_detected() {
    // A complete, well-formed forged event 3 inserted before the real one.
    let mut lines = chain_lines("w1", 5);
    let mut v = parse(&lines[2]);
    v["decision"] = json!("allow");
    v["reason"] = json!("nothing to see");
    let forged = rehash(&mut v);
    lines.insert(2, forged);
    let r = verify(&lines);
    let p = r.problems();
    assert_eq!(
        (p[0].at.line, p[0].kind),
        (4, ProblemKind::Replayed),
        "{r:#?}"
    );
    assert!(p[0].message.contains("differing from line 3"));
}

#[test]
fn every_single_tamper_is_detected() {
    let n = 8;
    let lines = chain_lines("w1", n);
    for i in 0..n as usize {
        // Edit (a byte inside the reason text).
        let mut t = lines.clone();
        t[i] = t[i].replacen("decided", "decides", 1);
        assert!(!verify(&t).ok(), "edit at {i}");
        // Duplicate.
        let mut t = lines.clone();
        t.insert(i, lines[i].clone());
        assert!(!verify(&t).ok(), "duplicate at {i}");
        // Swap with the next.
        if i + 1 < n as usize {
            let mut t = lines.clone();
            t.swap(i, i + 1);
            assert!(!verify(&t).ok(), "swap at {i}");
        }
        // Delete: detected except for the very first and the very last event
        // (a log that starts later or ends earlier).
        let mut t = lines.clone();
        t.remove(i);
        let r = verify(&t);
        if i == 0 {
            assert!(r.ok());
            assert_eq!(r.chains[0].notes[0].kind, NoteKind::StartsMidway);
        } else if i == n as usize - 1 {
            assert!(r.ok());
        } else {
            assert!(!r.ok(), "delete at {i}");
        }
    }
}

#[test]
fn interleaved_chains_are_checked_apart() {
    let a = chain_lines("worker-a", 6);
    let b = chain_lines("worker-b", 6);
    let c = chain_lines("worker-c", 6);
    let mut mixed = Vec::new();
    for i in 0..6 {
        mixed.push(a[i].clone());
        if i % 2 == 0 {
            mixed.push(b[i].clone());
            mixed.push(b[i + 1].clone());
        }
        mixed.push(c[i].clone());
    }
    let r = verify(&with_prefix(&mixed));
    assert!(r.ok(), "{r:#?}");
    let names: Vec<&str> = r.chains.iter().map(|c| c.worker.as_str()).collect();
    assert_eq!(names, ["worker-a", "worker-b", "worker-c"]);
    assert!(r.chains.iter().all(|c| c.events == 6));

    // Delete one of b's events: only b is flagged.
    let pos = mixed.iter().position(|l| *l == b[3]).unwrap();
    mixed.remove(pos);
    let next = mixed.iter().position(|l| *l == b[4]).unwrap();
    let r = verify(&mixed);
    assert!(r.chains[0].ok() && r.chains[2].ok());
    let p = only_problem(&r);
    assert_eq!(p.kind, ProblemKind::Deleted);
    assert_eq!(p.at.line, next + 1);
}

#[test]
fn rotation_start_is_accepted_with_a_note() {
    let lines = chain_lines("w1", 10);
    let r = verify(&lines[4..]);
    assert!(r.ok(), "{r:#?}");
    let c = &r.chains[0];
    assert_eq!((c.first_seq, c.last_seq, c.events), (5, 10, 6));
    assert_eq!(c.notes.len(), 1);
    assert_eq!(c.notes[0].kind, NoteKind::StartsMidway);
    assert_eq!(
        c.notes[0].message,
        "starts at seq 5 (earlier events not in this file)"
    );
    // A rotated pair verified as one stream links across the files.
    let mut v = Verifier::with_source_names(vec!["audit.log.1".into(), "audit.log".into()]);
    for (i, l) in lines[..4].iter().enumerate() {
        v.feed(
            Position {
                source: 0,
                line: i + 1,
            },
            l,
        );
    }
    for (i, l) in lines[5..].iter().enumerate() {
        v.feed(
            Position {
                source: 1,
                line: i + 1,
            },
            l,
        );
    }
    let r = v.finish();
    let p = only_problem(&r);
    assert_eq!(
        (p.at, p.kind),
        (Position { source: 1, line: 1 }, ProblemKind::Deleted)
    );
    assert!(p.message.contains("audit.log.1:4"), "{}", p.message);
}

#[test]
fn forged_genesis_is_detected() {
    let lines = chain_lines("w1", 4);
    // A middle event claiming to be first.
    let mut v = parse(&lines[2]);
    v["prev"] = json!("0".repeat(64));
    let t = vec![rehash(&mut v), lines[3].clone()];
    let r = verify(&t);
    let p = r.chains[0].first_bad().unwrap();
    assert_eq!((p.at.line, p.kind), (1, ProblemKind::PrevMismatch));
    assert!(p.message.contains("forged"));
    // seq 1 with a non-zero prev.
    let mut v = parse(&lines[0]);
    v["prev"] = json!("1".repeat(64));
    let t = vec![rehash(&mut v)];
    assert_eq!(only_problem(&verify(&t)).kind, ProblemKind::PrevMismatch);
}

#[test]
fn restart_under_the_same_name_is_a_note() {
    let mut lines = chain_lines("w1", 3);
    let (r, args) = (roles(), json!({}));
    let mut again = AuditChain::new("w1");
    lines.extend((10..13).map(|i| again.seal(&sample(i, &r, &args))));
    let r = verify(&lines);
    assert!(r.ok(), "{r:#?}");
    assert_eq!(r.chains[0].notes[0].kind, NoteKind::Restarted);
    assert_eq!(r.chains[0].notes[0].at.line, 4);
    assert_eq!(r.chains[0].events, 6);
    // A replayed first event is not a restart.
    lines.push(lines[0].clone());
    assert_eq!(only_problem(&verify(&lines)).kind, ProblemKind::Replayed);
}

#[test]
fn malformed_audit_lines() {
    let lines = chain_lines("w1", 3);
    let mut t = with_prefix(&lines);
    t.push(format!("{LOG_PREFIX}{{not json"));
    t.push(format!("{LOG_PREFIX}[1,2]"));
    let mut v = parse(&lines[2]);
    v["v"] = json!(2);
    t.push(format!("{LOG_PREFIX}{}", rehash(&mut v)));
    let mut v = parse(&lines[2]);
    v.as_object_mut().unwrap().remove("seq");
    t.push(format!(
        "{LOG_PREFIX}{}",
        serde_json::to_string(&v).unwrap()
    ));
    // A truncated line (a logger cut it).
    t.push(t[1][..t[1].len() - 20].to_owned());
    let r = verify(&t);
    assert_eq!(r.unattributed.len(), 3, "{r:#?}");
    assert!(r.unattributed[0].message.starts_with("not a JSON event"));
    assert_eq!(r.unattributed[1].message, "not a JSON object");
    assert_eq!(r.unattributed[2].at.line, 8);
    let p = &r.chains[0].problems;
    assert_eq!(p.len(), 2, "{r:#?}");
    assert!(p[0].message.contains("format version 2"));
    assert!(p[1].message.contains("`seq`"));
    assert!(p.iter().all(|p| p.kind == ProblemKind::Malformed));
    assert!(!r.ok());
    assert_eq!(r.problems().len(), 5);
}

#[test]
fn bare_json_lines_are_events() {
    // The HTTP sink's JSON lines, no prefix.
    let lines = chain_lines("w1", 4);
    let mut t = lines.clone();
    t.insert(1, "{\"other\":\"json\"}".into());
    let r = verify(&t);
    assert!(r.ok());
    assert_eq!(r.events, 4);
    assert_eq!(audit_json("  {\"command\":{}}  "), Some("{\"command\":{}}"));
    assert_eq!(audit_json("x pinhole-audit: {} "), Some("{}"));
    assert_eq!(audit_json("{\"v\":1}"), None);
    // A plugin or logger named like the marker does not hide the event.
    assert_eq!(
        audit_json("wasm log pinhole-audit: pinhole-audit: {\"a\":1}"),
        Some("{\"a\":1}")
    );
    assert_eq!(audit_json("x pinhole-audit: oops"), Some("oops"));
}

#[test]
fn report_serializes() {
    let mut lines = chain_lines("w1", 3);
    lines.remove(1);
    let v = serde_json::to_value(verify(&lines)).unwrap();
    assert_eq!(v["chains"][0]["problems"][0]["kind"], "deleted");
    assert_eq!(v["chains"][0]["problems"][0]["at"]["line"], 2);
}

// ---------------------------------------------------------------- buffer

#[test]
fn buffer_drops_newest_and_counts() {
    let mut b = AuditBuffer::new(100).with_reserve(30);
    assert!(b.admits());
    assert!(b.push("a".repeat(39))); // 40 bytes with the newline
    assert!(b.push("b".repeat(29))); // 70
    assert!(b.admits()); // 30 free
    assert!(b.push("c".repeat(9))); // 80
    assert!(!b.admits()); // 20 free < 30
    assert!(!b.push("d".repeat(29))); // would be 110: dropped
    assert!(b.push("e".repeat(19))); // exactly 100
    assert!(!b.push("")); // full
    assert_eq!((b.len(), b.bytes(), b.dropped()), (4, 100, 2));
    assert_eq!(b.take_dropped(), 2);
    assert_eq!(b.take_dropped(), 0);
    assert_eq!(b.dropped(), 2);

    // Batches keep order and stay under max_bytes.
    let batch = b.drain_batch(75).unwrap();
    assert_eq!(batch, format!("{}\n{}\n", "a".repeat(39), "b".repeat(29)));
    assert_eq!(b.bytes(), 30);
    assert!(b.admits());
    // A line larger than max_bytes still goes out alone.
    let batch = b.drain_batch(5).unwrap();
    assert_eq!(batch, format!("{}\n", "c".repeat(9)));
    assert_eq!(
        b.drain_batch(1000).unwrap(),
        format!("{}\n", "e".repeat(19))
    );
    assert!(b.drain_batch(1000).is_none());
    assert!(b.is_empty());
    assert_eq!(b.bytes(), 0);
}

#[test]
fn buffer_restore_puts_a_failed_batch_first() {
    let mut b = AuditBuffer::new(64).with_reserve(0);
    b.push("one");
    b.push("two");
    b.push("three");
    let batch = b.drain_batch(8).unwrap();
    assert_eq!(batch, "one\ntwo\n");
    b.restore(batch);
    assert_eq!(b.bytes(), 14);
    assert_eq!(b.drain_batch(100).unwrap(), "one\ntwo\nthree\n");
    assert_eq!(b.bytes(), 0);
    // Restoring over the cap keeps the batch; new lines wait for room.
    let mut b = AuditBuffer::new(10);
    b.restore("0123456789abc\n".into());
    assert!(!b.admits());
    assert!(!b.push("x"));
    assert_eq!(b.dropped(), 1);
    assert_eq!(b.drain_batch(4).unwrap(), "0123456789abc\n");
    assert!(b.push("x"));
}

#[test]
fn buffer_of_sealed_events_verifies() {
    let lines = chain_lines("w1", 20);
    let mut b = AuditBuffer::new(64 * 1024);
    for l in &lines {
        assert!(b.push(l.clone()));
    }
    let mut all = String::new();
    while let Some(batch) = b.drain_batch(1500) {
        assert!(batch.len() <= 1500 || batch.lines().count() == 1);
        all.push_str(&batch);
    }
    let r = verify_lines(all.lines());
    assert!(r.ok());
    assert_eq!(r.events, 20);
}
