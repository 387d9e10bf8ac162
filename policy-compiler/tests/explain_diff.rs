//! `pinhole explain` and `pinhole diff`: golden outputs on the shipped
//! example, JSON shape, exit codes, and diff semantics on crafted policies.
//!
//! Golden files live in tests/golden/; regenerate them with
//! `UPDATE_GOLDEN=1 cargo test -p policy-compiler --test explain_diff`
//! and review the change.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{code, compile_str, pinhole, repo_root, stderr, stdout, with_head};
use policy_compiler::diff::{diff, Direction};

fn golden(name: &str, actual: &str) {
    let path = repo_root().join("policy-compiler/tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(
        actual, want,
        "golden {name} differs (UPDATE_GOLDEN=1 to accept)"
    );
}

fn run_ok(args: &[&str]) -> String {
    let o = pinhole(args, &repo_root());
    assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    assert_eq!(stderr(&o), "", "{args:?}");
    stdout(&o)
}

const POLICY: &str = "examples/mcp-tools/policy.yaml";
const NEXT: &str = "policy-compiler/tests/data/mcp-tools-next.yaml";

#[test]
fn explain_goldens_on_the_shipped_example() {
    for (case, file) in [
        (
            "deploy to production is refused, naming the rule",
            "explain-deploy-production",
        ),
        (
            "a revoked subject is refused whatever its groups",
            "explain-revoked",
        ),
        (
            "analyst sees only their tools in tools/list",
            "explain-list",
        ),
        ("SRE posts an incident", "explain-http"),
    ] {
        let spec = format!("examples/mcp-tools/policy.test.yaml:{case}");
        golden(
            &format!("{file}.txt"),
            &run_ok(&["explain", POLICY, "--case", &spec]),
        );
        let json = run_ok(&["explain", POLICY, "--case", &spec, "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        golden(
            &format!("{file}.json"),
            &(serde_json::to_string_pretty(&v).unwrap() + "\n"),
        );
    }
}

#[test]
fn explain_inline_flags_match_the_case() {
    let by_case = run_ok(&[
        "explain",
        POLICY,
        "--case",
        "examples/mcp-tools/policy.test.yaml:deploy to production is refused, naming the rule",
    ]);
    let inline = run_ok(&[
        "explain",
        POLICY,
        "--claims",
        r#"{"iss":"https://token.actions.githubusercontent.com","sub":"repo:acme/api:ref:refs/heads/main","repository":"acme/api","ref":"refs/heads/main","environment":"staging"}"#,
        "--target",
        "tools",
        "--tool",
        "deploy",
        "--arguments",
        r#"{"environment":"production","replicas":3}"#,
    ]);
    assert_eq!(by_case, inline);
    let v: serde_json::Value = serde_json::from_str(&run_ok(&[
        "explain",
        POLICY,
        "--claims",
        r#"{"sub":"sam@acme.example","groups":["sre"]}"#,
        "--issuer",
        "corp-sso",
        "--target",
        "status-api",
        "--http",
        "DELETE",
        "/v1/incidents/7",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(v["outcome"]["decision"], "deny");
    assert_eq!(v["outcome"]["rule"], serde_json::Value::Null);
    assert_eq!(v["identity"]["roles"], serde_json::json!(["sre"]));
    let incidents = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "sre-incidents")
        .unwrap();
    assert_eq!(incidents["matched"], false);
    assert!(incidents["why"].as_str().unwrap().contains("DELETE"));
    let sre = v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "sre")
        .unwrap();
    assert_eq!(sre["held"], true);
    let analyst = v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "analyst")
        .unwrap();
    assert_eq!(analyst["conditions"][1]["condition"], "groups");
    assert_eq!(analyst["conditions"][1]["holds"], false);
}

#[test]
fn explain_usage_errors() {
    let root = repo_root();
    for args in [
        &["explain", POLICY][..],
        &["explain", POLICY, "--claims", "{}", "--tool", "x"],
        &[
            "explain", POLICY, "--claims", "[1]", "--target", "tools", "--tool", "x",
        ],
        &[
            "explain", POLICY, "--claims", "{", "--target", "tools", "--tool", "x",
        ],
        &[
            "explain",
            POLICY,
            "--claims",
            r#"{"iss":"https://sso.acme.example","sub":"a"}"#,
            "--target",
            "tools",
        ],
        &[
            "explain",
            POLICY,
            "--claims",
            r#"{"iss":"https://sso.acme.example","sub":"a"}"#,
            "--target",
            "nope",
            "--tool",
            "x",
        ],
        &[
            "explain",
            POLICY,
            "--case",
            "examples/mcp-tools/policy.test.yaml:no such case",
        ],
        &["explain", POLICY, "--case", "nofile.yaml:x"],
        &["explain", POLICY, "--case", "x", "--tool", "y"],
        &[
            "explain", POLICY, "--tool", "a", "--prompt", "b", "--claims", "{}", "--target",
            "tools",
        ],
    ] {
        let o = pinhole(args, &root);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{args:?}");
    }
    let o = pinhole(
        &[
            "explain",
            POLICY,
            "--case",
            "examples/mcp-tools/policy.test.yaml:analyst cannot deploy",
        ],
        &root,
    );
    assert!(
        stderr(&o).contains("its cases are: \"analyst searches orders\", "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn diff_goldens_on_the_shipped_example() {
    golden("diff-mcp-tools.md", &run_ok(&["diff", POLICY, NEXT]));
    let json = run_ok(&["diff", POLICY, NEXT, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["widened"], true);
    golden(
        "diff-mcp-tools.json",
        &(serde_json::to_string_pretty(&v).unwrap() + "\n"),
    );
    // The same policy: no change.
    let same = run_ok(&["diff", POLICY, POLICY]);
    assert!(same.contains("No change"), "{same}");
}

#[test]
fn diff_exit_code_and_blobs() {
    let root = repo_root();
    let o = pinhole(&["diff", POLICY, NEXT, "--exit-code"], &root);
    assert_eq!(code(&o), 1);
    let o = pinhole(&["diff", NEXT, POLICY, "--exit-code"], &root);
    assert_eq!(
        code(&o),
        1,
        "reverting re-adds the review and the prompt: it still widens"
    );
    let o = pinhole(&["diff", POLICY, POLICY, "--exit-code"], &root);
    assert_eq!(code(&o), 0);
    // A compiled blob compares like its source.
    let d = tempfile::tempdir().unwrap();
    let blob = d.path().join("p.blob");
    let o = pinhole(&["compile", POLICY, "-o", blob.to_str().unwrap()], &root);
    assert_eq!(code(&o), 0);
    let from_blob = pinhole(
        &["diff", blob.to_str().unwrap(), NEXT, "--format", "json"],
        &root,
    );
    let from_yaml = pinhole(&["diff", POLICY, NEXT, "--format", "json"], &root);
    let a: serde_json::Value = serde_json::from_str(&stdout(&from_blob)).unwrap();
    let b: serde_json::Value = serde_json::from_str(&stdout(&from_yaml)).unwrap();
    assert_eq!(a["changes"], b["changes"]);
    // Errors: unreadable (2), invalid policy (1), corrupt blob (1).
    let o = pinhole(&["diff", "nope.yaml", POLICY], &root);
    assert_eq!(code(&o), 2);
    std::fs::write(d.path().join("bad.yaml"), "version: 1\n").unwrap();
    let o = pinhole(
        &["diff", d.path().join("bad.yaml").to_str().unwrap(), POLICY],
        &root,
    );
    assert_eq!(code(&o), 1);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let o = pinhole(&["diff", blob.to_str().unwrap(), POLICY], &root);
    assert_eq!(code(&o), 1);
}

// ----------------------------------------------- diff semantics, crafted

const BASE: &str = r#"roles:
  dev: { issuer: corp-sso, groups: [developers] }
  ops: { issuer: corp-sso, groups: [ops] }
targets:
  tools: { protocol: mcp }
  api: { protocol: http }
rules:
  - id: dev-deploy
    allow: { roles: [dev], target: tools, mcp: { tools: [deploy], arguments: { env: [staging], replicas: { max: 3 } } } }
  - id: ops-read
    allow: { roles: [ops], target: api, http: { methods: [GET], paths: ["/v1/**"] } }
  - id: no-secrets
    deny: { target: tools, mcp: { tools: ["*secret*"] } }
"#;

fn policy(body: &str) -> pinhole_filter::policy::Policy {
    let c = compile_str(&with_head(body));
    let errors: Vec<_> = c.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    c.policy.unwrap()
}

/// (direction, summary) of the changes of one section.
fn changes(old: &str, new: &str, section: &str) -> Vec<(Direction, String)> {
    diff("old", &policy(old), "new", &policy(new))
        .changes
        .into_iter()
        .filter(|c| c.section == section)
        .map(|c| (c.direction, c.summary))
        .collect()
}

#[test]
fn diff_tool_gained() {
    let new = BASE.replace("tools: [deploy]", "tools: [deploy, rollback]");
    assert_eq!(
        changes(BASE, &new, "access"),
        [(
            Direction::Widens,
            "gained **allow** tool `rollback` when `env` one of [\"staging\"] and `replicas` <= 3 (rule `dev-deploy`)".to_owned()
        )]
    );
    let rules = changes(BASE, &new, "rules");
    assert_eq!(rules.len(), 1);
    assert!(
        rules[0]
            .1
            .starts_with("rule `dev-deploy` changed (matcher)"),
        "{rules:?}"
    );
    // And the other way round it is lost: narrower.
    assert_eq!(changes(&new, BASE, "access")[0].0, Direction::Narrows);
}

#[test]
fn diff_argument_constraint_loosened_and_tightened() {
    let looser = BASE.replace("env: [staging]", "env: [staging, production]");
    assert_eq!(
        changes(BASE, &looser, "access"),
        [(
            Direction::Widens,
            "**allow** tool `deploy`: argument conditions loosened: when `env` one of [\"staging\"] and `replicas` <= 3 → when `env` one of [\"staging\", \"production\"] and `replicas` <= 3 (rule `dev-deploy`)".to_owned()
        )]
    );
    // Dropping a condition loosens too; adding one tightens.
    let fewer = BASE.replace(", replicas: { max: 3 }", "");
    assert_eq!(changes(BASE, &fewer, "access")[0].0, Direction::Widens);
    assert_eq!(changes(&fewer, BASE, "access")[0].0, Direction::Narrows);
    // Neither wider nor narrower: "changes".
    let other = BASE.replace("env: [staging]", "env: [production]");
    let c = changes(BASE, &other, "access");
    assert_eq!(c[0].0, Direction::Changes);
    assert!(c[0].1.contains("argument conditions changed"), "{c:?}");
}

#[test]
fn diff_role_widened() {
    let new = BASE.replace("groups: [developers]", "groups: [developers, contractors]");
    assert_eq!(
        changes(BASE, &new, "roles"),
        [(
            Direction::Widens,
            "role `dev` groups: [\"developers\"] → [\"developers\", \"contractors\"]".to_owned()
        )]
    );
    let any_issuer = BASE.replace("dev: { issuer: corp-sso, groups", "dev: { groups");
    assert_eq!(changes(BASE, &any_issuer, "roles")[0].0, Direction::Widens);
    let claim = BASE.replace(
        "groups: [developers] }",
        "groups: [developers], claims: { email_verified: \"true\" } }",
    );
    assert_eq!(
        changes(BASE, &claim, "roles"),
        [(
            Direction::Narrows,
            "role `dev` claim `email_verified`: (no condition) → [\"true\"]".to_owned()
        )]
    );
    assert!(changes(BASE, &new, "access").is_empty());
}

#[test]
fn diff_revocation_added_and_removed() {
    let old = BASE.to_owned();
    let d = diff("old", &policy(&old), "new", &{
        let mut p = policy(&old);
        p.revoked.subjects.push("mallory@acme.example".into());
        p.revoked.subjects.retain(|s| s != "gone@acme.example");
        p
    });
    let rev: Vec<_> = d
        .changes
        .iter()
        .filter(|c| c.section == "revocations")
        .map(|c| (c.direction, c.summary.as_str()))
        .collect();
    assert_eq!(
        rev,
        [
            (Direction::Narrows, "subject `mallory@acme.example` revoked"),
            (
                Direction::Widens,
                "subject `gone@acme.example` no longer revoked"
            ),
        ]
    );
    assert!(d.widened);
}

#[test]
fn diff_deny_removed_http_and_targets() {
    let new = BASE
        .replace(
            "  - id: no-secrets\n    deny: { target: tools, mcp: { tools: [\"*secret*\"] } }\n",
            "",
        )
        .replace("methods: [GET]", "methods: [GET, POST]")
        .replace(
            "api: { protocol: http }",
            "api: { protocol: http, forward_token: true }",
        );
    let access = changes(BASE, &new, "access");
    assert_eq!(
        access,
        [
            (
                Direction::Widens,
                "lost **deny** tool `*secret*` (was rule `no-secrets`)".to_owned()
            ),
            (
                Direction::Widens,
                "gained **allow** HTTP `POST /v1/**` (rule `ops-read`)".to_owned()
            ),
        ]
    );
    assert_eq!(
        changes(BASE, &new, "targets"),
        [(
            Direction::Widens,
            "target `api` now receives the caller's bearer token".to_owned()
        )]
    );
}

#[test]
fn diff_issuers_and_keys() {
    let old = policy(BASE);
    let mut new = old.clone();
    new.issuers[0].audiences.push("other".into());
    new.issuers[0].keys[0].kid = Some("rotated".into());
    new.issuers[1].max_token_lifetime_secs = Some(600);
    new.issuers.remove(1);
    let d = diff("old", &old, "new", &new);
    let id: Vec<_> = d
        .changes
        .iter()
        .filter(|c| c.section == "identity")
        .map(|c| (c.direction, c.summary.clone()))
        .collect();
    assert_eq!(id.len(), 4, "{id:#?}");
    assert_eq!(
        id[0],
        (
            Direction::Widens,
            "issuer `corp-sso` accepts new audience(s) `other`".into()
        )
    );
    assert_eq!(id[1].0, Direction::Widens);
    assert!(id[1].1.contains("key kid `rotated` added"), "{id:?}");
    assert_eq!(id[2].0, Direction::Narrows);
    assert!(id[2].1.contains("removed"), "{id:?}");
    assert_eq!(id[3], (Direction::Narrows, "issuer `github` removed: tokens from `https://token.actions.githubusercontent.com` are refused".into()));
}

#[test]
fn diff_approvers_and_elevation() {
    let old = policy(BASE);
    let mut new = old.clone();
    new.approvers.push(pinhole_filter::policy::Approver {
        name: "dana".into(),
        groups: vec!["leads".into()],
        key: "ZPTR0phQgHtSM+UQGyRS7BbirtdfsGcDpnWWV7fwfl4=".into(),
        subject: None,
    });
    new.elevation.push(pinhole_filter::policy::Elevation {
        role: "dba".into(),
        eligible: vec!["sre".into()],
        max_secs: 3600,
        approvers: vec!["leads".into()],
    });
    let d = diff("old", &old, "new", &new);
    let got: Vec<_> = d
        .changes
        .iter()
        .filter(|c| c.section == "approvals")
        .map(|c| (c.direction, c.summary.as_str()))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|(d, _)| *d == Direction::Widens), "{got:?}");
    assert!(d.widened);
    let back = diff("new", &new, "old", &old);
    assert!(!back.widened, "{:?}", back.changes);
}
