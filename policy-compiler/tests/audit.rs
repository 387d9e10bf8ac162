//! `pinhole audit verify`: logs written by the filter's own `AuditChain`,
//! verified by the binary, then tampered with.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command as Process, Output, Stdio};

use pinhole_filter::audit::{AuditChain, AuditEvent, AuditIdentity, Command, Outcome, LOG_PREFIX};
use pinhole_filter::policy::Protocol;
use serde_json::{json, Value};

use common::{code, pinhole, stdout};

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// `n` events of one worker, as Envoy would log them.
fn events(worker: &str, n: u64, t0: u64) -> Vec<String> {
    let roles = vec!["analyst".to_string()];
    let args = json!({"sql": "select 1", "limit": 10});
    let mut chain = AuditChain::new(worker);
    (0..n)
        .map(|i| {
            let command = match i % 3 {
                0 => Command::sql("SELECT * FROM orders WHERE id = 7"),
                1 => Command::mcp_tool("query", &args).with_sql("select 1"),
                _ => Command::http("GET", "/v1/orders"),
            };
            let event = AuditEvent {
                time_ms: t0 + i * 1000,
                approval: None,
                conn: Some("c-1"),
                request: None,
                identity: Some(AuditIdentity {
                    elevated: &[],
                    grant: None,
                    issuer: "corp-sso",
                    roles: &roles,
                    subject: "alice@acme.example",
                }),
                source: Some("127.0.0.1:40000"),
                target: "orders",
                protocol: Protocol::Postgres,
                command,
                decision: if i % 4 == 3 {
                    Outcome::Deny
                } else {
                    Outcome::Allow
                },
                rule: Some("analysts-read"),
                reason: "allowed by rule `analysts-read`",
                masked: 0,
            };
            let line = chain.seal(&event);
            format!(
                "[2025-01-02 03:04:05.678][{}][info][wasm] [source/extensions/common/wasm/context.cc:1195] wasm log pinhole_pg pinhole: {LOG_PREFIX}{line}",
                10 + i
            )
        })
        .collect()
}

/// Two interleaved workers plus unrelated Envoy lines.
fn log() -> Vec<String> {
    let a = events("pg-1111aaaa", 8, 1_735_787_045_000);
    let b = events("pg-2222bbbb", 8, 1_735_787_045_500);
    let mut out =
        vec!["[2025-01-02 03:04:00.000][1][info][main] starting main dispatch loop".to_string()];
    for (x, y) in a.into_iter().zip(b) {
        out.push(x);
        out.push(y);
    }
    out.insert(
        7,
        "[2025-01-02 03:04:06.000][1][warning][wasm] pinhole: policy reloaded".into(),
    );
    out
}

fn write(dir: &Path, name: &str, lines: &[String]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(dir.join(name), s).unwrap();
    name.to_string()
}

fn verify(dir: &Path, files: &[&str], json: bool) -> Output {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(files);
    if json {
        args.extend_from_slice(&["--format", "json"]);
    }
    pinhole(&args, dir)
}

#[test]
fn clean_log_verifies() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "envoy.log", &log());
    let o = verify(d.path(), &[&f], false);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        stdout(&o),
        "chain pg-1111aaaa: ok (8 events, seq 1-8)\n\
         chain pg-2222bbbb: ok (8 events, seq 1-8)\n\
         2 chains, 16 events in 1 file: verified\n"
    );
    assert_eq!(stderr(&o), "");

    let o = verify(d.path(), &[&f], true);
    assert_eq!(code(&o), 0);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["events"], 16);
    assert_eq!(v["lines"], 18);
    assert_eq!(v["files"], json!(["envoy.log"]));
    assert_eq!(v["chains"][1]["worker"], "pg-2222bbbb");
    assert_eq!(
        v["chains"][1]["first"],
        json!({"file": "envoy.log", "line": 3})
    );
    assert_eq!(v["chains"][1]["first_bad"], Value::Null);
}

/// Tamper with a copy of the log and check exit 1, the line and the kind.
fn tampered(edit: impl Fn(&mut Vec<String>) -> usize, kind: &str) {
    let d = tempfile::tempdir().unwrap();
    let mut lines = log();
    let bad_line = edit(&mut lines);
    let f = write(d.path(), "envoy.log", &lines);

    let o = verify(d.path(), &[&f], false);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let out = stdout(&o);
    let expected = format!("first bad line: envoy.log:{bad_line}: {kind}: ");
    assert!(out.contains(&expected), "want {expected:?} in\n{out}");
    assert!(out.contains("chain pg-1111aaaa: TAMPERED"), "{out}");
    assert!(out.contains("chain pg-2222bbbb: ok"), "{out}");
    assert!(
        out.contains("TAMPERING FOUND (1 of 2 chains tampered"),
        "{out}"
    );

    let o = verify(d.path(), &[&f], true);
    assert_eq!(code(&o), 1);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);
    let first = &v["chains"][0]["first_bad"];
    assert_eq!(first["file"], "envoy.log");
    assert_eq!(first["line"], bad_line);
    assert_eq!(first["kind"], kind);
    assert_eq!(v["chains"][1]["ok"], true);
}

fn is_a(l: &str) -> bool {
    l.contains("pg-1111aaaa")
}

#[test]
fn edited_field_is_found() {
    tampered(
        |lines| {
            let i = lines
                .iter()
                .position(|l| is_a(l) && l.contains("\"seq\":4,"))
                .unwrap();
            lines[i] = lines[i].replace("\"decision\":\"deny\"", "\"decision\":\"allow\"");
            i + 1
        },
        "edited",
    );
}

#[test]
fn deleted_line_is_found() {
    tampered(
        |lines| {
            let i = lines
                .iter()
                .position(|l| is_a(l) && l.contains("\"seq\":3,"))
                .unwrap();
            lines.remove(i);
            // Reported at the next event of the chain.
            lines
                .iter()
                .position(|l| is_a(l) && l.contains("\"seq\":4,"))
                .unwrap()
                + 1
        },
        "deleted",
    );
}

#[test]
fn swapped_lines_are_found() {
    tampered(
        |lines| {
            let i = lines
                .iter()
                .position(|l| is_a(l) && l.contains("\"seq\":5,"))
                .unwrap();
            let j = lines
                .iter()
                .position(|l| is_a(l) && l.contains("\"seq\":6,"))
                .unwrap();
            lines.swap(i, j);
            i + 1
        },
        "reordered",
    );
}

#[test]
fn duplicated_line_is_found() {
    tampered(
        |lines| {
            let i = lines
                .iter()
                .position(|l| is_a(l) && l.contains("\"seq\":2,"))
                .unwrap();
            let copy = lines[i].clone();
            lines.insert(i + 3, copy);
            i + 4
        },
        "replayed",
    );
}

#[test]
fn stdin_and_rotated_files() {
    let d = tempfile::tempdir().unwrap();
    let all = events("pg-1111aaaa", 10, 0);
    let old = write(d.path(), "envoy.log.1", &all[..4]);
    let new = write(d.path(), "envoy.log", &all[4..]);

    // The newer file alone starts mid-chain: accepted, with a note.
    let o = verify(d.path(), &[&new], false);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(
        stdout(&o)
            .contains("  note: envoy.log:1: starts at seq 5 (earlier events not in this file)\n"),
        "{}",
        stdout(&o)
    );
    // Both, oldest first: one chain across the files.
    let o = verify(d.path(), &[&old, &new], false);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("chain pg-1111aaaa: ok (10 events, seq 1-10)\n"));
    assert!(stdout(&o).contains("in 2 files: verified"));
    // A gap at the rotation is found.
    let cut = write(d.path(), "cut.log", &all[5..]);
    let o = verify(d.path(), &[&old, &cut], true);
    assert_eq!(code(&o), 1);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["chains"][0]["first_bad"]["file"], "cut.log", "{v:#}");
    assert_eq!(v["chains"][0]["first_bad"]["kind"], "deleted");
    assert!(v["chains"][0]["first_bad"]["message"]
        .as_str()
        .unwrap()
        .contains("envoy.log.1:4"));

    // `-` reads standard input.
    let mut child = Process::new(env!("CARGO_BIN_EXE_pinhole"))
        .args(["audit", "verify", "-"])
        .current_dir(d.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tampered = all.clone();
    tampered.remove(6);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(tampered.join("\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("first bad line: <stdin>:7: deleted: "),
        "{}",
        stdout(&o)
    );
}

#[test]
fn unreadable_audit_line_fails() {
    let d = tempfile::tempdir().unwrap();
    let mut lines = log();
    lines.push(format!("[x][info][wasm] {LOG_PREFIX}{{\"truncated"));
    let f = write(d.path(), "envoy.log", &lines);
    let o = verify(d.path(), &[&f], false);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("envoy.log:19: malformed: not a JSON event"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("1 unreadable audit line"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn usage_errors_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let o = verify(d.path(), &["missing.log"], false);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("cannot read missing.log"),
        "{}",
        stderr(&o)
    );
    let o = verify(d.path(), &["."], false);
    assert_eq!(code(&o), 2);
    let o = pinhole(&["audit", "verify"], d.path());
    assert_eq!(code(&o), 2);
    let o = pinhole(&["audit"], d.path());
    assert_eq!(code(&o), 2);

    // No audit events at all: nothing to contradict, but say so.
    let f = write(d.path(), "other.log", &["just a line".to_string()]);
    let o = verify(d.path(), &[&f], false);
    assert_eq!(code(&o), 0);
    assert!(
        stderr(&o).contains("warning: no audit events"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "0 chains, 0 events in 1 file: verified\n");
}

#[test]
fn help_documents_exit_codes_and_json() {
    let d = tempfile::tempdir().unwrap();
    let o = pinhole(&["audit", "verify", "--help"], d.path());
    assert_eq!(code(&o), 0);
    let out = stdout(&o);
    for s in [
        "Exit codes:",
        "--format <FORMAT>",
        "1  tampering found",
        "oldest first",
    ] {
        assert!(out.contains(s), "{s}: {out}");
    }
    let o = pinhole(&["--help"], d.path());
    assert!(stdout(&o).contains("pinhole audit verify"));
}
