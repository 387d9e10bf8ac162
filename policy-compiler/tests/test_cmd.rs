//! `pinhole test`: the shipped example tests, test-file diagnostics with
//! positions, failure output, exit codes, JSON and JUnit XML.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{code, example_dir, example_policy, pinhole, repo_root, stderr, stdout};
use policy_compiler::suite::{self, Status};

#[test]
fn the_shipped_example_tests_pass_by_direct_call() {
    let policy = example_policy();
    let path = repo_root().join("examples/mcp-tools/policy.test.yaml");
    let file = suite::parse(&std::fs::read(&path).unwrap(), &policy);
    assert_eq!(file.diagnostics, vec![]);
    let r = suite::run_file(&policy, "policy.test.yaml", &file);
    let failures: Vec<_> = r
        .cases
        .iter()
        .filter(|c| c.status != Status::Pass)
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(r.cases.len() >= 20, "{}", r.cases.len());
}

#[test]
fn the_shipped_example_tests_pass_through_the_binary() {
    let root = repo_root();
    let o = pinhole(
        &[
            "test",
            "examples/mcp-tools/policy.yaml",
            "examples/mcp-tools",
        ],
        &root,
    );
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    let last = out.lines().last().unwrap();
    assert!(
        last.ends_with(" passed, 0 failed") && !last.starts_with("0 "),
        "{out}"
    );
    assert_eq!(stderr(&o), "");
}

const POLICY_HEAD: &str = "fixtures:\n  alice: { issuer: corp-sso, claims: { sub: alice@acme.example, groups: [analysts] } }\ncases:\n";

fn errors_of(cases: &str) -> Vec<String> {
    let src = format!("{POLICY_HEAD}{cases}");
    let f = suite::parse(src.as_bytes(), &example_policy());
    let mut out: Vec<String> = f.diagnostics.iter().map(|d| d.render("t.yaml")).collect();
    for c in &f.cases {
        if let Err(d) = &c.case {
            out.extend(d.iter().map(|d| d.render("t.yaml")));
        }
    }
    out
}

#[test]
fn test_file_errors_have_positions() {
    // Line 4 is the first case line.
    let e = errors_of(
        r#"  - name: unknown fixture
    identity: alcie
    target: tools
    mcp: { tool: search_orders }
    expect: allow
  - name: unknown target and rule
    identity: alice
    target: tols
    mcp: { tool: search_orders }
    expect: { decision: deny, rule: no-secret }
  - name: wrong protocol
    identity: alice
    target: status-api
    mcp: { prompt: triage }
    expect: alow
  - name: two requests, no expectation
    claims: { iss: https://sso.acme.example, sub: bob }
    target: tools
    mcp: { tool: x }
    http: { method: GET, path: / }
"#,
    );
    assert_eq!(
        e,
        [
            "t.yaml:5:15: error: unknown fixture `alcie`; did you mean `alice`?",
            "t.yaml:11:13: error: unknown target `tols`; did you mean `tools`?",
            "t.yaml:13:37: error: unknown rule `no-secret`; did you mean `no-secrets`?",
            "t.yaml:16:13: error: an `mcp` request needs an mcp target; target `status-api` is http",
            "t.yaml:18:13: error: unknown decision `alow`; did you mean `allow`?",
            "t.yaml:19:5: error: the case is missing the required key `expect`",
            "t.yaml:23:5: error: a case has one request; `mcp` and `http` are both given (write two cases)",
        ]
    );
}

#[test]
fn sql_cases_need_a_postgres_target_and_masking_is_not_supported_yet() {
    let e = errors_of(
        r#"  - name: sql
    identity: alice
    target: tools
    sql: SELECT 1
    expect: allow
  - name: masked
    identity: alice
    target: tools
    mcp: { tool: search_orders }
    expect: { decision: allow, masked: [email] }
"#,
    );
    assert_eq!(
        e,
        [
            "t.yaml:6:13: error: a `sql` request needs a postgres target; target `tools` is mcp",
            "t.yaml:13:32: error: `masked` expectations are not supported yet: policy tests do not simulate responses, so they cannot check masking",
        ]
    );
}

#[test]
fn identity_problems_are_case_errors_or_refusals() {
    let e = errors_of(
        r#"  - name: no iss
    claims: { sub: bob }
    target: tools
    mcp: { tool: search_orders }
    expect: deny
  - name: both
    identity: alice
    claims: { sub: bob }
    target: tools
    mcp: { tool: search_orders }
    expect: deny
  - name: unknown issuer name
    issuer: corp
    claims: { sub: bob }
    target: tools
    mcp: { tool: search_orders }
    expect: deny
"#,
    );
    assert_eq!(
        e,
        [
            "t.yaml:11:5: error: give either `identity` (a fixture) or `claims`, not both",
            "t.yaml:16:13: error: unknown issuer `corp`",
        ]
    );
    // "no iss" parses, and fails when run (no issuer can be chosen).
    let src = format!(
        "{POLICY_HEAD}  - name: no iss\n    claims: {{ sub: bob }}\n    target: tools\n    mcp: {{ tool: search_orders }}\n    expect: deny\n  - name: no sub\n    claims: {{ iss: https://sso.acme.example }}\n    target: tools\n    mcp: {{ tool: search_orders }}\n    expect: {{ decision: unauthenticated, reason: missing required claim }}\n"
    );
    let p = example_policy();
    let r = suite::run_file(&p, "t.yaml", &suite::parse(src.as_bytes(), &p));
    assert_eq!(r.cases[0].status, Status::Error);
    assert_eq!(
        r.cases[0].problems,
        ["t.yaml:4:5: error: the identity needs an `iss` claim or an `issuer:` (an issuer's policy name)"]
    );
    assert_eq!(r.cases[1].status, Status::Pass, "{:?}", r.cases[1]);
}

const FAILING: &str = r#"fixtures:
  deployer:
    claims: { iss: https://token.actions.githubusercontent.com, sub: "repo:acme/api:ref:refs/heads/main", repository: acme/api, ref: refs/heads/main }
cases:
  - name: staging deploy
    identity: deployer
    target: tools
    mcp: { tool: deploy, arguments: { environment: staging, replicas: 2 } }
    expect: allow
  - name: production deploy wrongly expected to pass
    identity: deployer
    target: tools
    mcp: { tool: deploy, arguments: { environment: production, replicas: 2 } }
    expect: { decision: allow, rule: deployer-staging-only }
"#;

#[test]
fn failures_name_the_case_with_expected_and_actual() {
    let d = example_dir();
    std::fs::write(d.path().join("fail.test.yaml"), FAILING).unwrap();
    let o = pinhole(&["test", "policy.yaml", "fail.test.yaml"], d.path());
    assert_eq!(code(&o), 1);
    assert_eq!(
        stdout(&o),
        "FAIL fail.test.yaml:10:5: production deploy wrongly expected to pass\n\
         \x20    expected: allow (rule `deployer-staging-only`)\n\
         \x20    actual:   deny (rule `deployer-staging-only`): tool `deploy` is not allowed: argument `environment` = \"production\" must be one of [\"staging\"]: production deploys go through the release train\n\
         \x20    - decision: expected allow, got deny\n\
         1 passed, 1 failed\n"
    );
    // A directory: every *.test.yaml below it (here both files).
    let o = pinhole(&["test", "policy.yaml", "."], d.path());
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).ends_with(" passed, 1 failed\n"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn json_and_junit_reports() {
    let d = example_dir();
    std::fs::write(d.path().join("fail.test.yaml"), FAILING).unwrap();
    std::fs::write(
        d.path().join("bad.test.yaml"),
        "cases:\n  - name: <&>\"'\n    identity: nobody\n    target: tools\n    mcp: { tool: x }\n    expect: allow\n",
    )
    .unwrap();
    let o = pinhole(
        &[
            "test",
            "policy.yaml",
            "fail.test.yaml",
            "bad.test.yaml",
            "--format",
            "json",
            "--junit",
            "out/report.xml",
        ],
        d.path(),
    );
    // The report's directory does not exist: a usage error, nothing printed.
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    std::fs::create_dir(d.path().join("out")).unwrap();
    let o = pinhole(
        &[
            "test",
            "policy.yaml",
            "fail.test.yaml",
            "bad.test.yaml",
            "--format",
            "json",
            "--junit",
            "out/report.xml",
        ],
        d.path(),
    );
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["passed"], 1);
    assert_eq!(v["failed"], 2);
    let cases = &v["files"][0]["cases"];
    assert_eq!(cases[1]["status"], "fail");
    assert_eq!(cases[1]["line"], 10);
    assert_eq!(cases[1]["expected"]["decision"], "allow");
    assert_eq!(cases[1]["actual"]["decision"], "deny");
    assert_eq!(cases[1]["actual"]["rule"], "deployer-staging-only");
    assert_eq!(v["files"][1]["cases"][0]["status"], "error");

    let xml = std::fs::read_to_string(d.path().join("out/report.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("tests"), Some("3"));
    assert_eq!(root.attribute("failures"), Some("1"));
    assert_eq!(root.attribute("errors"), Some("1"));
    let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    assert_eq!(suites.len(), 2);
    assert_eq!(suites[0].attribute("name"), Some("fail.test.yaml"));
    let cases: Vec<_> = suites[0].children().filter(|n| n.is_element()).collect();
    assert_eq!(cases[0].attribute("name"), Some("staging deploy"));
    assert!(cases[0].children().all(|c| !c.is_element()));
    let failure = cases[1]
        .children()
        .find(|c| c.has_tag_name("failure"))
        .unwrap();
    assert!(failure.text().unwrap().contains("expected: allow"));
    let bad = suites[1].children().find(|n| n.is_element()).unwrap();
    assert_eq!(bad.attribute("name"), Some("<&>\"'"));
    let err = bad.children().find(|c| c.has_tag_name("error")).unwrap();
    assert!(
        err.attribute("message")
            .unwrap()
            .contains("unknown fixture `nobody`"),
        "{xml}"
    );
}

#[test]
fn usage_and_policy_errors_exit_codes() {
    let d = example_dir();
    // Missing test file, empty directory: usage errors.
    let o = pinhole(&["test", "policy.yaml", "missing.test.yaml"], d.path());
    assert_eq!(code(&o), 2);
    std::fs::create_dir(d.path().join("empty")).unwrap();
    let o = pinhole(&["test", "policy.yaml", "empty"], d.path());
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("no test files"), "{}", stderr(&o));
    // No TESTS at all: clap's usage error.
    let o = pinhole(&["test", "policy.yaml"], d.path());
    assert_eq!(code(&o), 2);
    // A policy with errors: its diagnostics, exit 1.
    std::fs::write(d.path().join("bad.yaml"), "version: 2\n").unwrap();
    let o = pinhole(&["test", "bad.yaml", "policy.test.yaml"], d.path());
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("bad.yaml:1:10: error: unsupported policy language version 2"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).ends_with("bad.yaml: 3 errors\n"),
        "{}",
        stderr(&o)
    );
    // A test file with no cases: nothing ran, exit 1.
    std::fs::write(d.path().join("none.test.yaml"), "cases: []\n").unwrap();
    let o = pinhole(&["test", "policy.yaml", "none.test.yaml"], d.path());
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o), "0 passed, 0 failed\n");
    assert!(stderr(&o).contains("no test cases found"));
}

#[test]
fn the_documented_test_file_passes_against_the_example() {
    // docs/policy.md, section "`pinhole test`: policy tests", first yaml block.
    let doc = std::fs::read_to_string(repo_root().join("docs/policy.md")).unwrap();
    let at = doc.find("### `pinhole test`: policy tests").unwrap();
    let start = doc[at..].find("```yaml\n").unwrap() + at + "```yaml\n".len();
    let end = doc[start..].find("```").unwrap() + start;
    let policy = example_policy();
    let file = suite::parse(&doc.as_bytes()[start..end], &policy);
    let r = suite::run_file(&policy, "docs", &file);
    assert!(r.cases.len() >= 5);
    assert!(
        r.cases.iter().all(|c| c.status == Status::Pass),
        "{:#?}",
        r.cases
    );
}
