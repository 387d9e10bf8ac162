//! SQL rules through the compiler: lints stay sound, `pinhole diff`
//! reports every change to a SQL matcher, `pinhole explain --sql` traces
//! each statement.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{code, compile_str, diags, pinhole, repo_root, stdout, with_head};
use policy_compiler::diff::{diff, Direction};

const HEAD: &str = "\
roles:
  analyst: { issuer: corp-sso, groups: [analysts] }
targets:
  db: { protocol: postgres, backend_user: app }
  tools: { protocol: mcp }
rules:
";

fn policy(rules: &str) -> pinhole_filter::policy::Policy {
    let c = compile_str(&with_head(&format!("{HEAD}{rules}")));
    assert_eq!(c.error_count(), 0, "{:#?}", c.diagnostics);
    c.policy.unwrap()
}

#[test]
fn lints_are_sound_on_sql_rules() {
    let src = with_head(&format!(
        "{HEAD}{}",
        r#"  # Not shadowed: the deny matches only some statements.
  - { id: a, allow: { roles: [analyst], target: db, sql: { statements: [select, delete] } } }
  - { id: d, deny: { target: db, sql: { statements: [delete], without_where: true } } }
  # Not shadowed: the tool deny judges only some SQL.
  - { id: t, allow: { roles: [analyst], target: tools, mcp: { tools: [query] } } }
  - { id: td, deny: { target: tools, mcp: { tools: [query], sql_argument: sql, sql: { statements: [drop] } } } }
"#
    ));
    let w: Vec<String> = diags(&src)
        .into_iter()
        .filter(|d| !d.contains("no rule names target"))
        .collect();
    assert_eq!(w, Vec::<String>::new());
    // Shadowed: a deny without SQL conditions matches every statement.
    let src = with_head(&format!(
        "{HEAD}{}",
        r#"  - { id: a, allow: { roles: [analyst], target: db, sql: { statements: [select] } } }
  - { id: d, deny: { target: db, sql: {} } }
"#
    ));
    let w = diags(&src);
    assert!(
        w.iter()
            .any(|d| d.contains("rule `a` (allow) can never decide")),
        "{w:#?}"
    );
    // A broad SQL grant is flagged like a broad grant of anything else.
    let src = with_head(&format!(
        "{HEAD}{}",
        "  - { id: a, allow: { roles: [analyst], target: db, sql: { without_where: false } } }\n"
    ));
    let w = diags(&src);
    assert!(
        w.iter()
            .any(|d| d.contains("allows every statement on every table")),
        "{w:#?}"
    );
}

#[test]
fn diff_reports_every_sql_change() {
    let old = policy(
        "  - { id: a, allow: { roles: [analyst], target: db, sql: { statements: [select], tables: [public.orders] } } }\n  - { id: d, deny: { target: db, sql: { statements: [drop, truncate] } } }\n",
    );
    // Same policy: nothing.
    let d = diff("old", &old, "new", &old);
    assert!(d.changes.is_empty(), "{:#?}", d.changes);
    // A table more on the allow: widens.
    let new = policy(
        "  - { id: a, allow: { roles: [analyst], target: db, sql: { statements: [select], tables: [public.orders, public.customers] } } }\n  - { id: d, deny: { target: db, sql: { statements: [drop, truncate] } } }\n",
    );
    let d = diff("old", &old, "new", &new);
    assert!(d.widened);
    assert!(d
        .changes
        .iter()
        .any(|c| c.direction == Direction::Widens && c.summary.contains("public.customers")));
    // A kind less on the deny: widens too.
    let new = policy(
        "  - { id: a, allow: { roles: [analyst], target: db, sql: { statements: [select], tables: [public.orders] } } }\n  - { id: d, deny: { target: db, sql: { statements: [drop] } } }\n",
    );
    let d = diff("old", &old, "new", &new);
    assert!(d.widened, "{:#?}", d.changes);
    // The SQL of a tool argument, likewise.
    let t = |tables: &str| {
        policy(&format!(
            "  - {{ id: q, allow: {{ roles: [analyst], target: tools, mcp: {{ tools: [query], sql_argument: sql, sql: {{ statements: [select], tables: [{tables}] }} }} }} }}\n"
        ))
    };
    let d = diff("old", &t("public.orders"), "new", &t("public.*"));
    assert!(d.widened, "{:#?}", d.changes);
}

#[test]
fn explain_traces_each_statement() {
    let o = pinhole(
        &[
            "explain",
            "examples/orders-db/policy.yaml",
            "--claims",
            r#"{"iss":"https://sso.acme.example","sub":"alice@acme.example","groups":["analysts"]}"#,
            "--target",
            "orders-db",
            "--sql",
            "SELECT * FROM orders; DROP TABLE orders",
        ],
        &repo_root(),
    );
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{out}");
    assert!(out.contains("statement 2: "), "{out}");
    assert!(out.contains("DENY by rule `never-destroy`"), "{out}");
    assert!(out.contains("DROP TABLE orders"), "{out}");
}
