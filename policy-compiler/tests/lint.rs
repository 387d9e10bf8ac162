//! Lints: exact positions and messages, and what must not warn.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{diags, with_head};

/// Warnings of HEAD + `rest`, as `LINE:COL: message` (the policy must
/// have no error).
fn warnings(rest: &str) -> Vec<String> {
    let all = diags(&with_head(rest));
    assert!(
        all.iter().all(|d| !d.contains(": error: ")),
        "unexpected errors: {all:#?}"
    );
    all.iter()
        .filter(|d| !d.contains("no rule names target"))
        .map(|d| d.replacen(": warning: ", ": ", 1))
        .collect()
}

const ROLES: &str = "\
roles:
  analyst: { issuer: corp-sso, groups: [analysts] }
  sre: { issuer: corp-sso, groups: [sre] }
targets:
  tools: { protocol: mcp }
  api: { protocol: http }
rules:
";

#[test]
fn allow_shadowed_by_an_unconditional_deny() {
    // Lines: 10-16 ROLES, 17 first rule.
    let w = warnings(&format!(
        "{ROLES}{}",
        r#"  - { id: read-secrets, allow: { roles: [analyst], target: tools, mcp: { tools: [k8s_get_secrets, "vault_*"] } } }
  - { id: sre-api, allow: { roles: [sre], target: api } }
  - { id: no-secrets, deny: { target: tools, mcp: { tools: ["*secret*", "vault_*"] } } }
"#
    ));
    assert_eq!(
        w,
        ["17:11: rule `read-secrets` (allow) can never decide a request: every request it matches is also matched by `no-secrets` (deny, line 19), which takes precedence",
         "18:20: rule `sre-api` allows every request on target `api` to role `sre`, which is not marked `admin: true`; list the operations it needs, or mark the role `admin: true`"]
    );
}

#[test]
fn shadowing_is_proven_or_not_reported() {
    let w = warnings(&format!(
        "{ROLES}{}",
        r#"  # not shadowed: the deny names another role
  - { id: a1, allow: { roles: [analyst], target: tools, mcp: { tools: [drop_table] } } }
  - { id: d1, deny: { roles: [sre], target: tools, mcp: { tools: ["drop_*"] } } }
  # not shadowed: the deny has an argument condition the allow does not imply
  - { id: a2, allow: { roles: [analyst], target: tools, mcp: { tools: [deploy] } } }
  - { id: d2, deny: { target: tools, mcp: { tools: [deploy], arguments: { env: prod } } } }
  # shadowed: the allow's own condition implies the deny's
  - { id: a3, allow: { roles: [sre], target: tools, mcp: { tools: [scale], arguments: { env: [prod], n: { min: 1, max: 3 } } } } }
  - { id: d3, deny: { target: tools, mcp: { tools: [scale], arguments: { env: { one_of: [prod, dr] } } } } }
  # not shadowed: only part of the allow is covered
  - { id: a4, allow: { roles: [sre], target: tools, mcp: { tools: [purge_cache, restart] } } }
  - { id: d4, deny: { target: tools, mcp: { tools: ["purge_*"] } } }
  # shadowed role by role, by two denies
  - { id: a5, allow: { roles: [analyst, sre], target: tools, mcp: { prompts: [exfiltrate] } } }
  - { id: d5a, deny: { roles: [analyst], target: tools, mcp: { prompts: ["exfil*"] } } }
  - { id: d5b, deny: { roles: [sre], target: tools, mcp: { prompts: ["*"] } } }
"#
    ));
    assert_eq!(
        w,
        [
            "24:11: rule `a3` (allow) can never decide a request: every request it matches is also matched by `d3` (deny, line 25), which takes precedence",
            "30:11: rule `a5` (allow) can never decide a request: every request it matches is also matched by `d5a` (deny, line 31) and `d5b` (deny, line 32), which take precedence",
        ]
    );
}

#[test]
fn review_shadows_allow_and_deny_shadows_review_over_http() {
    let w = warnings(&format!(
        "{ROLES}{}",
        r#"  - { id: read, allow: { roles: [analyst], target: api, http: { methods: [GET], paths: ["/v1/reports/**"] } } }
  - { id: hold, review: { roles: [analyst], target: api, http: { paths: ["/v1/**"] } } }
  - { id: stop, deny: { target: api, http: { methods: [GET, POST], paths: ["/v1/**", /health] } } }
  - { id: post, allow: { roles: [sre], target: api, http: { methods: [PUT], paths: ["/v1/x"] } } }
"#
    ));
    // (The approvals lint is not what this test is about.)
    let w: Vec<String> = w
        .into_iter()
        .filter(|l| !l.contains("has no `approvers`"))
        .collect();
    assert_eq!(
        w,
        [
            // `hold` comes first among the stronger rules; `stop` covers it too.
            "17:11: rule `read` (allow) can never decide a request: every request it matches is also matched by `hold` (review, line 18), which takes precedence",
            // `hold` (any method) is not shadowed by `stop` (GET and POST only),
            // nor `post` (PUT) by `stop`.
        ]
    );
}

#[test]
fn roles_no_identity_can_hold() {
    // HEAD revokes gone@acme.example (any issuer).
    let w = warnings(
        r#"roles:
  ghost: { subjects: [gone@acme.example] }
  torn: { issuer: corp-sso, subject: alice, claims: { sub: [bob, "carol*"] } }
  elsewhere: { issuer: github, claims: { iss: "https://sso.*" } }
  fine: { subjects: [gone@acme.example, alice], claims: { iss: "https://sso.*" } }
targets:
  tools: { protocol: mcp }
rules:
  - { id: r1, allow: { roles: [ghost], target: tools, mcp: { tools: [a] } } }
  - { id: r2, allow: { roles: [torn, elsewhere], target: tools, mcp: { tools: [b] } } }
  - { id: r3, allow: { roles: [ghost, fine], target: tools, mcp: { tools: [c] } } }
"#,
    );
    assert_eq!(
        w,
        [
            "11:3: no identity can hold role `ghost`: every subject it admits is revoked (`gone@acme.example`)",
            r#"12:3: no identity can hold role `torn`: its `subjects` ["alice"] and its claim condition `sub: ["bob", "carol*"]` admit no subject in common"#,
            r#"13:3: no identity can hold role `elsewhere`: its claim condition `iss: ["https://sso.*"]` matches no URL of the issuer(s) it accepts (`https://token.actions.githubusercontent.com`)"#,
            "18:11: rule `r1` can never apply: no identity can hold its role `ghost`",
            "19:11: rule `r2` can never apply: no identity can hold any of its roles `torn`, `elsewhere`",
        ]
    );
}

#[test]
fn broad_grants_unless_admin() {
    let w = warnings(
        r#"roles:
  ops: { issuer: corp-sso, groups: [ops] }
  root: { issuer: corp-sso, groups: [root], admin: true }
targets:
  tools: { protocol: mcp }
  api: { protocol: http }
rules:
  - { id: ops-all-tools, allow: { roles: [ops], target: tools, mcp: { tools: [search, "*"] } } }
  - { id: root-all-tools, allow: { roles: [root], target: tools, mcp: { tools: "**" } } }
  - { id: mixed, allow: { roles: [root, ops], target: api } }
  - { id: everyone-api, allow: { target: api, http: { paths: ["/**"] } } }
  - { id: root-api, allow: { roles: [root], target: api } }
"#,
    );
    assert_eq!(
        w,
        [
            "17:87: rule `ops-all-tools` allows every tool (`*`) on target `tools` to role `ops`, which is not marked `admin: true`; list the operations it needs, or mark the role `admin: true`",
            "19:18: rule `mixed` allows every request on target `api` to role `ops`, which is not marked `admin: true`; list the operations it needs, or mark the role `admin: true`",
            "20:63: rule `everyone-api` allows every method on every path (`/**`) of target `api` to every authenticated identity (the rule names no `roles`); name the roles and the operations they need",
        ]
    );
}

#[test]
fn admin_must_be_a_boolean() {
    let e = common::errors(&with_head(
        "roles:\n  r: { issuer: corp-sso, admin: yes }\ntargets: { t: { protocol: mcp } }\nrules:\n  - { id: x, allow: { roles: [r], target: t, mcp: { tools: [a] } } }\n",
    ));
    assert_eq!(
        e,
        ["11:33: expected `true` or `false` for `admin`, found a string"]
    );
}

#[test]
fn the_documented_lints_do_not_fire_on_the_examples() {
    // Covered in tests/examples.rs (no diagnostics at all); here a policy
    // with a deny for everyone and narrower allows stays quiet.
    let w = warnings(&format!(
        "{ROLES}{}",
        r#"  - { id: a, allow: { roles: [analyst], target: tools, mcp: { tools: ["k8s_get_*"] } } }
  - { id: b, allow: { roles: [sre], target: api, http: { methods: [GET], paths: ["/v1/**"] } } }
  - { id: d, deny: { target: tools, mcp: { tools: ["k8s_get_secret*"] } } }
"#
    ));
    assert_eq!(w, Vec::<String>::new());
}

#[test]
fn a_role_whose_issuer_has_no_usable_key() {
    // The compiler refuses such a JWKS file, so build the case by hand: the
    // lint still reasons about the model it is given.
    let c = common::compile_str(&with_head(
        "roles:\n  gh: { issuer: github }\n  any: { subject: bob }\ntargets: { t: { protocol: mcp } }\nrules:\n  - { id: x, allow: { roles: [gh, any], target: t, mcp: { tools: [a] } } }\n",
    ));
    let mut p = c.policy.unwrap();
    assert_eq!(
        policy_compiler::lint::impossible_role(&p, &p.roles[0]),
        None
    );
    p.issuers[1].keys.clear();
    assert_eq!(
        policy_compiler::lint::impossible_role(&p, &p.roles[0]).as_deref(),
        Some("its issuer `github` has no key that can verify a token")
    );
    // A role without an issuer is still possible through corp-sso.
    assert_eq!(
        policy_compiler::lint::impossible_role(&p, &p.roles[1]),
        None
    );
    p.issuers[0].algorithms = vec![pinhole_filter::policy::Alg::ES256];
    assert_eq!(
        policy_compiler::lint::impossible_role(&p, &p.roles[1]).as_deref(),
        Some("no issuer has a key that can verify a token")
    );
}

#[test]
fn lints_through_check_and_deny_warnings() {
    let d = common::example_dir();
    let p = d.path().join("policy.yaml");
    let src = std::fs::read_to_string(&p).unwrap();
    // Give the deployer every tool: a broad grant for a non-admin role.
    let src = src.replace(
        r#"mcp: { tools: ["k8s_get_*"] }"#,
        r#"mcp: { tools: ["*"] }"#,
    );
    std::fs::write(&p, &src).unwrap();
    let line = src
        .lines()
        .position(|l| l.contains(r#"tools: ["*"]"#))
        .unwrap()
        + 1;
    let col = src.lines().nth(line - 1).unwrap().find(r#""*""#).unwrap() + 1;
    let o = common::pinhole(&["check", "policy.yaml"], d.path());
    assert_eq!(common::code(&o), 0);
    assert_eq!(
        common::stderr(&o),
        format!("policy.yaml:{line}:{col}: warning: rule `deployer-k8s-read` allows every tool (`*`) on target `tools` to roles `ci-deployer`, `sre`, which are not marked `admin: true`; list the operations it needs, or mark the role `admin: true`\n")
    );
    let o = common::pinhole(&["check", "--deny-warnings", "policy.yaml"], d.path());
    assert_eq!(common::code(&o), 1);
    let o = common::pinhole(
        &[
            "check",
            "--deny-warnings",
            "--format",
            "json",
            "policy.yaml",
        ],
        d.path(),
    );
    assert_eq!(common::code(&o), 1);
    let v: serde_json::Value = serde_json::from_str(&common::stdout(&o)).unwrap();
    assert_eq!(v["warnings"], 1);
    assert_eq!(v["diagnostics"][0]["line"], line);
    assert_eq!(v["diagnostics"][0]["col"], col);
    // Marking both roles admin silences it.
    let src = src
        .replace("groups: [sre] }", "groups: [sre], admin: true }")
        .replace(
            "    issuer: github\n",
            "    issuer: github\n    admin: true\n",
        );
    std::fs::write(&p, &src).unwrap();
    let o = common::pinhole(&["check", "--deny-warnings", "policy.yaml"], d.path());
    assert_eq!(common::code(&o), 0, "{}", common::stderr(&o));
    // compile --deny-warnings refuses the original, and --format json says so.
    std::fs::write(&p, src.replace(", admin: true", "")).unwrap();
    let o = common::pinhole(
        &[
            "compile",
            "--deny-warnings",
            "--format",
            "json",
            "policy.yaml",
            "-o",
            "p.blob",
        ],
        d.path(),
    );
    assert_eq!(common::code(&o), 1);
    let v: serde_json::Value = serde_json::from_str(&common::stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["output"], serde_json::Value::Null);
    assert!(!d.path().join("p.blob").exists());
    let o = common::pinhole(
        &["compile", "--format", "json", "policy.yaml", "-o", "p.blob"],
        d.path(),
    );
    assert_eq!(common::code(&o), 0);
    let v: serde_json::Value = serde_json::from_str(&common::stdout(&o)).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["output"], "p.blob");
    assert_eq!(v["warnings"], 1);
    assert_eq!(v["digest"].as_str().unwrap().len(), 64);
    assert_eq!(
        v["size"].as_u64().unwrap(),
        std::fs::metadata(d.path().join("p.blob")).unwrap().len()
    );
}

#[test]
fn every_subcommand_documents_exit_codes_and_json() {
    let d = tempfile::tempdir().unwrap();
    for sub in ["check", "compile", "inspect", "test", "explain", "diff"] {
        let o = common::pinhole(&[sub, "--help"], d.path());
        assert_eq!(common::code(&o), 0);
        let out = common::stdout(&o);
        assert!(out.contains("Exit codes:"), "{sub}: {out}");
        assert!(out.contains("--format <FORMAT>"), "{sub}: {out}");
    }
    let o = common::pinhole(&["--help"], d.path());
    let out = common::stdout(&o);
    for s in ["test", "explain", "diff", "2  usage error"] {
        assert!(out.contains(s), "{out}");
    }
}
