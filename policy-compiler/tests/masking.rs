//! Masking in the policy language: every diagnostic with its position,
//! the compiled model and blob, the lint, `pinhole diff` and `inspect`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{compile_str, diags, errors, with_head};
use pinhole_filter::mask::{ColumnRule, DetectorRule, FieldRule, MaskSpec, Strategy, Unmaskable};
use pinhole_filter::policy::{blob, mask_spec_for, MaskRule};
use policy_compiler::diff::{diff, Direction};

/// Roles, targets and rules after HEAD: lines 10–20; `masking:` is line 21
/// and the first masking rule starts on line 22.
const BASE: &str = "\
roles:
  analyst: { issuer: corp-sso, groups: [analysts] }
  support-lead: { issuer: corp-sso, groups: [support-leads] }
  dba: { issuer: corp-sso, groups: [dba] }
targets:
  db: { protocol: postgres, backend_user: app, mask_key_env: DB_MASK_KEY }
  tools: { protocol: mcp }
rules:
  - { id: read, allow: { roles: [analyst, support-lead], target: db, sql: { statements: [select] } } }
  - { id: dba, allow: { roles: [dba], target: db, sql: { statements: [select, update] } } }
  - { id: search, allow: { roles: [analyst], target: tools, mcp: { tools: [search] } } }
masking:
";

fn src(masking: &str) -> String {
    with_head(&format!("{BASE}{masking}"))
}

// ------------------------------------------------------------ the model

#[test]
fn masking_rules_compile_to_the_model() {
    let c = compile_str(&src(r#"  - id: hide-emails
    target: db
    columns: [customers.email, public.customers.phone]
    detectors: [email, { name: emp_id, pattern: 'EMP-[0-9]{6}' }, { name: iban }]
    strategy: { partial: 4 }
    except_roles: [support-lead]
  - id: pseudonyms
    target: db
    roles: [analyst, dba, analyst]
    columns: customers.name
    strategy: hash
    unmaskable: refuse
  - id: tool-results
    target: tools
    fields: ["**.email", "items[*].card"]
    detectors: payment_card
    strategy: { redact: "[hidden]" }
  - { id: defaults, target: db, detectors: [jwt], unmaskable: null }
"#));
    assert_eq!(common::render(&c), Vec::<String>::new());
    let p = c.policy.unwrap();
    assert_eq!(
        p.target("db").unwrap().mask_key_env.as_deref(),
        Some("DB_MASK_KEY")
    );
    assert_eq!(p.target("tools").unwrap().mask_key_env, None);
    let partial = Strategy::Partial { keep: 4 };
    assert_eq!(
        p.masking[0],
        MaskRule {
            id: "hide-emails".into(),
            target: "db".into(),
            roles: vec![],
            except_roles: vec!["support-lead".into()],
            spec: MaskSpec {
                columns: vec![
                    ColumnRule {
                        column: "customers.email".into(),
                        strategy: partial.clone(),
                    },
                    ColumnRule {
                        column: "public.customers.phone".into(),
                        strategy: partial.clone(),
                    },
                ],
                detectors: vec![
                    DetectorRule {
                        detector: "email".into(),
                        pattern: None,
                        strategy: partial.clone(),
                    },
                    DetectorRule {
                        detector: "emp_id".into(),
                        pattern: Some("EMP-[0-9]{6}".into()),
                        strategy: partial.clone(),
                    },
                    DetectorRule {
                        detector: "iban".into(),
                        pattern: None,
                        strategy: partial.clone(),
                    },
                ],
                ..MaskSpec::default()
            },
        }
    );
    let ps = &p.masking[1];
    assert_eq!(ps.roles, ["analyst", "dba"]);
    assert_eq!(ps.spec.columns[0].strategy, Strategy::Hash {});
    assert_eq!(ps.spec.unmaskable, Unmaskable::Refuse);
    let tr = &p.masking[2].spec;
    assert_eq!(
        tr.fields,
        [
            FieldRule {
                path: "**.email".into(),
                strategy: Strategy::Redact {
                    text: Some("[hidden]".into())
                }
            },
            FieldRule {
                path: "items[*].card".into(),
                strategy: Strategy::Redact {
                    text: Some("[hidden]".into())
                }
            }
        ]
    );
    assert_eq!(tr.detectors[0].detector, "payment_card");
    // The default strategy is `redact`, the default `unmaskable` null.
    let d = &p.masking[3].spec;
    assert_eq!(d.detectors[0].strategy, Strategy::Redact { text: None });
    assert_eq!(d.unmaskable, Unmaskable::Null);

    // What each caller gets on `db`.
    let who = |roles: &[&str]| {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_string()).collect();
        mask_spec_for(&p, "db", &roles)
    };
    let lead = who(&["support-lead"]);
    assert!(lead.columns.is_empty(), "{lead:?}");
    assert_eq!(lead.detectors.len(), 1); // `jwt` of `defaults`
    let analyst = who(&["analyst"]);
    assert_eq!(analyst.columns.len(), 3);
    assert_eq!(analyst.columns[0].strategy, Strategy::Hash {}); // most protective first
    assert_eq!(analyst.unmaskable, Unmaskable::Refuse);
    assert_eq!(who(&[]).columns.len(), 2);
    assert!(mask_spec_for(&p, "tools", &[]).fields.len() == 2);
}

#[test]
fn the_blob_carries_the_masking_rules() {
    let c = compile_str(&src(
        "  - { id: m, target: db, columns: [customers.email], strategy: hash, except_roles: [dba] }\n",
    ));
    assert_eq!(common::render(&c), Vec::<String>::new());
    let p = c.policy.unwrap();
    let meta = blob::Meta {
        compiler: "t".into(),
        source_sha256: "00".into(),
        source_date_epoch: None,
    };
    let bytes = blob::encode(&p, &meta).unwrap();
    assert_eq!(bytes, blob::encode(&p, &meta).unwrap()); // deterministic
    assert_eq!(bytes[10..12], blob::FLAG_MASKING.to_be_bytes());
    let b = blob::decode(&bytes).unwrap();
    assert_eq!(b.policy, p);
    assert_eq!(b.policy.masking.len(), 1);
    let text = String::from_utf8_lossy(&bytes[48..]).into_owned();
    assert!(text.contains(r#""mask_key_env":"DB_MASK_KEY""#), "{text}");
    assert!(text.contains(r#""except_roles":["dba"]"#), "{text}");
    // Without masking nothing about it appears, and the flags stay 0.
    let plain = compile_str(&with_head(common::BODY)).policy.unwrap();
    let bytes = blob::encode(&plain, &meta).unwrap();
    assert_eq!(bytes[10..12], [0, 0]);
    assert!(!String::from_utf8_lossy(&bytes).contains("mask"));
}

// ----------------------------------------------------------- diagnostics

#[test]
fn masking_rule_ids_roles_and_targets() {
    let e = errors(&src(r#"  - { id: read, target: db, columns: [a] }
  - { id: m1, target: dbb, columns: [a] }
  - { id: m1, target: db, columns: [b] }
  - { id: 'bad id', target: db, columns: [a] }
  - { id: m2, target: db, columns: [a], roles: [analist], except_roles: [supportlead] }
  - { id: m3, target: db, columns: [a], roles: [analyst, dba], except_roles: [dba] }
  - { id: m4, target: db, columns: [a], roles: [], except_roles: [] }
  - { target: db, columns: [a] }
  - { id: m5, columns: [a] }
  - { id: m6, target: db }
  - { id: m7, target: db, colums: [a], excep_roles: [dba] }
"#));
    assert_eq!(
        e,
        [
            "22:11: masking rule id `read` is already the id of the rule at 18:11; rules and masking rules need distinct ids (logs and audit events name them)",
            "23:23: unknown target `dbb`; did you mean `db`?",
            "24:11: duplicate masking rule id `m1` (first used at 23:11)",
            "25:11: invalid masking rule id `bad id`: use letters, digits, `-`, `_` and `.`, starting with a letter or digit",
            "26:49: unknown role `analist`; did you mean `analyst`?",
            "26:74: unknown role `supportlead`; did you mean `support-lead`?",
            "27:79: role `dba` is in both `roles` and `except_roles` of masking rule `m3`: an exemption always wins, so the rule would never mask for it; remove it from one list",
            "28:48: `roles` cannot be an empty list: an empty list would mask for every caller; omit `roles` to mean that",
            "28:66: `except_roles` cannot be an empty list: omit `except_roles` to exempt nobody",
            "29:5: the masking rule is missing the required key `id`",
            "30:5: masking rule `m5` is missing the required key `target`",
            "31:5: masking rule `m6` masks nothing: give `columns`, `fields` or `detectors`",
            "32:27: unknown key `colums` in a masking rule; did you mean `columns`?",
            "32:40: unknown key `excep_roles` in a masking rule; did you mean `except_roles`?",
        ]
    );
    assert_eq!(
        errors(&with_head(&format!("{BASE}  x\n"))),
        ["22:3: expected a list of masking rules for `masking`, found a string"]
    );
}

#[test]
fn what_fits_which_target() {
    let e = errors(&src(r#"  - { id: m1, target: tools, columns: [email] }
  - { id: m2, target: db, fields: [customer.email] }
  - { id: m3, target: tools, fields: [a], unmaskable: refuse }
  - { id: m4, target: db, columns: [a], unmaskable: nul }
  - { id: m5, target: db, columns: [a], unmaskable: ~ }
"#));
    assert_eq!(
        e,
        [
            "22:30: `columns` masks PostgreSQL result columns, but target `tools` is mcp: mask JSON response fields with `fields`, or use `detectors`",
            "23:27: `fields` masks JSON fields of MCP and HTTP responses, but target `db` is postgres: mask result columns with `columns`, or use `detectors`",
            "24:43: `unmaskable` applies to postgres targets only (target `tools` is mcp: a JSON value can always hold a mask)",
            "25:53: expected `null` (the value becomes SQL NULL) or `refuse` (the result is refused) for `unmaskable`, found `nul`; did you mean `null`?",
            "26:53: expected `null` (the value becomes SQL NULL) or `refuse` (the result is refused) for `unmaskable`, found `~`",
        ]
    );
}

#[test]
fn columns_and_field_paths_are_checked() {
    let e = errors(&src(
        r#"  - { id: m1, target: db, columns: ["a..b", "s.t.c.x", ok.col, []] }
  - { id: m2, target: tools, fields: ["a[", "items[*].card", "a.[x]", ""] }
  - { id: m3, target: db, columns: [] }
"#,
    ));
    assert_eq!(
        e,
        [
            "22:37: invalid column `a..b`: expected `column`, `table.column` or `schema.table.column`",
            "22:45: invalid column `s.t.c.x`: expected `column`, `table.column` or `schema.table.column`",
            "22:64: expected a string for `columns`, found a list",
            "23:39: invalid field path `a[`: unclosed `[` at character 2",
            "23:62: invalid field path `a.[x]`: `[` right after `.` at character 3",
            "23:71: invalid field path ``: empty path",
            "24:36: `columns` cannot be an empty list: omit `columns` to mask no column",
        ]
    );
}

#[test]
fn detectors_are_checked_with_suggestions() {
    let e = errors(&src(r#"  - id: m1
    target: db
    detectors:
      - emial
      - email
      - email
      - creditcard
      - { name: email, pattern: x }
      - { name: Emp, pattern: "EMP-[0-9]+" }
      - { name: emp, pattern: "x*" }
      - { name: emp2, pattern: "(" }
      - { pattern: x }
      - { name: e3, patern: x }
  - { id: m2, target: db, detectors: [] }
  - { id: m3, target: db, detectors: [{ name: e1, pattern: "E1-[0-9]+" }] }
  - { id: m4, target: db, detectors: [{ name: e1, pattern: "E2-[0-9]+" }] }
  - { id: m5, target: tools, detectors: [{ name: e1, pattern: "E2-[0-9]+" }] }
  - { id: m6, target: db, detectors: [{ name: e1, pattern: "E1-[0-9]+" }] }
"#));
    assert_eq!(
        e,
        [
            "25:9: unknown detector `emial`; did you mean `email`?",
            "27:9: detector `email` is listed twice in masking rule `m1`",
            "28:9: unknown detector `creditcard` (built-in detectors: email, phone, payment_card, iban, us_ssn, aws_access_key_id, private_key, jwt, bearer_token; a custom detector is written `{ name: NAME, pattern: REGEX }`)",
            "29:17: `email` is a built-in detector: give the custom detector another name (or drop `pattern` to use the built-in one)",
            "30:17: invalid custom detector name `Emp`: use 1 to 64 lower-case letters, digits and `_`",
            "31:31: invalid detector pattern `x*`: pattern can match the empty string",
            "32:32: invalid detector pattern `(`: invalid pattern: found open group without closing ')'",
            "33:9: the custom detector is missing the required key `name`",
            "34:21: unknown key `patern` in a custom detector; did you mean `pattern`?",
            "35:38: `detectors` cannot be an empty list: omit `detectors` to run none",
            "37:60: custom detector `e1` is already defined with another pattern at 36:47 for target `db`: masking rules of a target share detector names; give this one another name",
        ]
    );
}

#[test]
fn strategies_are_checked() {
    let e = errors(&src(
        r#"  - { id: m1, target: db, columns: [a], strategy: partial }
  - { id: m2, target: db, columns: [a], strategy: redcat }
  - { id: m3, target: db, columns: [a], strategy: { partial: 100 } }
  - { id: m4, target: db, columns: [a], strategy: { partial: -1 } }
  - { id: m5, target: db, columns: [a], strategy: { partail: 2 } }
  - { id: m6, target: db, columns: [a], strategy: { redact: x, partial: 2 } }
  - { id: m7, target: db, columns: [a], strategy: { hash: true } }
  - { id: m8, target: db, columns: [a], strategy: { redact: "a\tb" } }
  - { id: m9, target: db, columns: [a], strategy: {} }
  - { id: m10, target: db, columns: [a], strategy: [redact] }
  - { id: m11, target: db, columns: [a], strategy: { redact: null } }
  - { id: m12, target: db, columns: [a], strategy: { redact: "" } }
"#,
    ));
    assert_eq!(
        e,
        [
            "22:51: `partial` needs the number of characters to keep: write `{ partial: 4 }`",
            "23:51: unknown masking strategy `redcat`; did you mean `redact`? (expected `redact`, `hash`, `{ redact: TEXT }` or `{ partial: N }` (N = characters to keep))",
            "24:51: invalid masking strategy: partial keep 100 is larger than 64",
            "25:62: expected the number of characters to keep for `partial` (an integer, 0 or more), found an integer",
            "26:53: unknown key `partail` in `strategy`; did you mean `partial`?",
            "27:51: `strategy` gives `redact` and `partial`: a masking rule has one strategy (write another masking rule for another)",
            "28:53: `hash` takes no options: write `strategy: hash` (the key comes from the target's `mask_key_env`)",
            "29:51: invalid masking strategy: redact text contains a control character",
            "30:51: `strategy` is empty: write `redact`, `hash`, `{ redact: TEXT }` or `{ partial: N }` (N = characters to keep)",
            "31:52: expected a masking strategy for `strategy` (`redact`, `hash`, `{ redact: TEXT }` or `{ partial: N }` (N = characters to keep)), found a list",
            "32:62: expected a string for the `redact` text, found nothing (null)",
        ]
    );
}

#[test]
fn hash_needs_a_key_variable_on_the_target() {
    let e = errors(&with_head(
        "\
roles:
  analyst: { issuer: corp-sso, groups: [analysts] }
targets:
  db: { protocol: postgres, backend_user: app }
  api: { protocol: http, mask_key_env: 'the-key!' }
  api2: { protocol: http, mask_key_env: '' }
  api3: { protocol: http, mask_key_env: API_MASK_KEY }
rules:
  - { id: r, allow: { roles: [analyst], target: db } }
masking:
  - { id: m1, target: db, columns: [email], strategy: hash }
  - { id: m2, target: api3, fields: [email], strategy: hash }
",
    ));
    assert_eq!(
        e,
        [
            "14:40: `mask_key_env` names an environment variable, not a key: `th…y!` is not a valid variable name (letters, digits and `_`); never put the key itself in the policy",
            "15:41: `mask_key_env` cannot be empty",
            "20:55: strategy `hash` needs a secret key: set `mask_key_env` on target `db` to the name of the environment variable holding it (at least 16 bytes); the key itself never goes in the policy",
        ]
    );
}

// ------------------------------------------------------------------ lint

#[test]
fn exempting_everyone_who_can_reach_the_target_is_a_warning() {
    let warnings = |masking: &str| -> Vec<String> {
        diags(&src(masking))
            .into_iter()
            .filter(|d| d.contains("masks nothing"))
            .collect()
    };
    // `read` and `dba` let analysts, support leads and DBAs in.
    assert_eq!(
        warnings("  - { id: m, target: db, columns: [a], except_roles: [analyst, support-lead, dba] }\n"),
        ["22:40: warning: masking rule `m` masks nothing: its `except_roles` exempt every role that can reach target `db` (`analyst`, `support-lead`, `dba`)"]
    );
    assert_eq!(
        warnings("  - { id: m, target: tools, fields: [a], except_roles: analyst }\n"),
        ["22:42: warning: masking rule `m` masks nothing: its `except_roles` exempt every role that can reach target `tools` (`analyst`)"]
    );
    // One role left to mask: fine.
    assert_eq!(
        warnings("  - { id: m, target: db, columns: [a], except_roles: [analyst, dba] }\n"),
        Vec::<String>::new()
    );
    // A rule for everyone reaches the target: not provable.
    let everyone = src(
        "  - { id: m, target: db, columns: [a], except_roles: [analyst, support-lead, dba] }\n",
    )
    .replace("{ roles: [dba], target: db,", "{ target: db,");
    assert!(
        diags(&everyone)
            .iter()
            .all(|d| !d.contains("masks nothing")),
        "{:?}",
        diags(&everyone)
    );
    // The examples are clean (checked by tests/examples.rs); a masking rule
    // alone is never a warning.
    assert_eq!(
        diags(&src("  - { id: m, target: db, columns: [a] }\n")),
        Vec::<String>::new()
    );
}

// ------------------------------------------------------------------ diff

fn policy(masking: &str) -> pinhole_filter::policy::Policy {
    let c = compile_str(&src(masking));
    assert_eq!(common::render(&c), Vec::<String>::new());
    c.policy.unwrap()
}

fn changes(old: &str, new: &str) -> Vec<(Direction, String)> {
    let d = diff("old", &policy(old), "new", &policy(new));
    d.changes
        .into_iter()
        .filter(|c| c.section == "masking" || c.summary.contains("mask"))
        .map(|c| (c.direction, c.summary))
        .collect()
}

const M: &str = "  - { id: m, target: db, columns: [customers.email], detectors: [email], strategy: { partial: 4 }, except_roles: [support-lead] }\n";

#[test]
fn diff_masking_rules_added_and_removed() {
    let none = "  - { id: other, target: tools, fields: [x] }\n";
    let both = format!("{none}{M}");
    assert_eq!(
        changes(none, &both),
        [(
            Direction::Narrows,
            "masking rule `m` added: masks columns `customers.email`; detectors `email` → partial (keep 4) for everyone except `support-lead`".to_owned()
        )]
    );
    let d = diff("old", &policy(&both), "new", &policy(none));
    assert!(d.widened);
    assert_eq!(
        changes(&both, none),
        [(
            Direction::Widens,
            "masking rule `m` removed: values it masked are shown in clear (was: masks columns `customers.email`; detectors `email` → partial (keep 4) for everyone except `support-lead`)".to_owned()
        )]
    );
    assert!(changes(M, M).is_empty());
    assert!(!diff("old", &policy(M), "new", &policy(M)).widened);
}

#[test]
fn diff_exemptions_and_roles() {
    let more = M.replace(
        "except_roles: [support-lead]",
        "except_roles: [support-lead, dba]",
    );
    assert_eq!(
        changes(M, &more),
        [(
            Direction::Widens,
            "role `dba` is now exempt from masking rule `m`: it sees those values in clear"
                .to_owned()
        )]
    );
    assert_eq!(
        changes(&more, M),
        [(
            Direction::Narrows,
            "role `dba` is no longer exempt from masking rule `m`".to_owned()
        )]
    );
    let only = M.replace("except_roles", "roles: [analyst], except_roles");
    assert_eq!(
        changes(M, &only),
        [(
            Direction::Widens,
            "masking rule `m` applies to: everyone → `analyst`".to_owned()
        )]
    );
    assert_eq!(changes(&only, M)[0].0, Direction::Narrows);
}

#[test]
fn diff_what_is_masked_and_how() {
    let weaker = M.replace("{ partial: 4 }", "{ partial: 6 }");
    assert_eq!(
        changes(M, &weaker),
        [(
            Direction::Widens,
            "masking rule `m` strategy: partial (keep 4) → partial (keep 6) (column `customers.email`, detector `email`)".to_owned()
        )]
    );
    assert_eq!(changes(&weaker, M)[0].0, Direction::Narrows);
    let redact = M.replace("strategy: { partial: 4 }", "strategy: redact");
    assert_eq!(changes(M, &redact)[0].0, Direction::Narrows);
    let hashed = M.replace("{ partial: 4 }", "hash");
    assert_eq!(changes(&redact, &hashed)[0].0, Direction::Widens);
    let text = M.replace("strategy: { partial: 4 }", "strategy: { redact: x }");
    assert_eq!(changes(&redact, &text)[0].0, Direction::Neutral);

    let fewer = M.replace("detectors: [email]", "detectors: [phone]");
    assert_eq!(
        changes(M, &fewer),
        [
            (
                Direction::Narrows,
                "masking rule `m` now masks detector `phone` (partial (keep 4))".to_owned()
            ),
            (
                Direction::Widens,
                "masking rule `m` no longer masks detector `email` (was partial (keep 4)): shown in clear".to_owned()
            ),
        ]
    );
    let custom = |p: &str| {
        format!("  - {{ id: m, target: db, detectors: [{{ name: emp, pattern: '{p}' }}] }}\n")
    };
    assert_eq!(
        changes(&custom("E-[0-9]+"), &custom("E-[0-9]{6}")),
        [(
            Direction::Changes,
            "masking rule `m` detector `emp` pattern: /E-[0-9]+/ → /E-[0-9]{6}/".to_owned()
        )]
    );
    let refuse = M.replace("strategy:", "unmaskable: refuse, strategy:");
    assert_eq!(changes(M, &refuse)[0].0, Direction::Narrows);
    assert_eq!(changes(&refuse, M)[0].0, Direction::Widens);
    let moved = M.replace(
        "target: db, columns: [customers.email], ",
        "target: tools, ",
    );
    assert_eq!(changes(M, &moved)[0].0, Direction::Changes);
}

#[test]
fn diff_notes_a_new_mask_key_variable() {
    let old = policy(M);
    let mut new = old.clone();
    new.targets[0].mask_key_env = Some("OTHER".into());
    let d = diff("old", &old, "new", &new);
    let c: Vec<_> = d
        .changes
        .iter()
        .filter(|c| c.section == "targets")
        .collect();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].direction, Direction::Neutral);
    assert_eq!(
        c[0].summary,
        "target `db` masking key variable: `DB_MASK_KEY` → `OTHER` (`hash` values change with the key)"
    );
}

// -------------------------------------------------------------- the CLI

#[test]
fn check_and_inspect_show_masking() {
    let d = tempfile::tempdir().unwrap();
    let keys = common::example_keys();
    let text = src(M)
        .replace(
            "both.json",
            &keys.join("corp-sso.jwks.json").display().to_string(),
        )
        .replace(
            "jwks: ec.json",
            &format!("jwks: {}", keys.join("github.jwks.json").display()),
        );
    std::fs::write(d.path().join("policy.yaml"), text).unwrap();
    let o = common::pinhole(&["check", "policy.yaml"], d.path());
    assert_eq!(common::code(&o), 0, "{}", common::stderr(&o));
    assert_eq!(
        common::stdout(&o),
        "policy.yaml: ok (2 issuers, 3 roles, 2 targets, 3 rules, 1 masking rule)\n"
    );
    let o = common::pinhole(&["compile", "policy.yaml", "-o", "p.blob"], d.path());
    assert_eq!(common::code(&o), 0, "{}", common::stderr(&o));
    let o = common::pinhole(&["inspect", "p.blob"], d.path());
    let out = common::stdout(&o);
    for want in [
        "                   db: postgres (2 rules, 1 masking rule, mask key from $DB_MASK_KEY)\n",
        "masking:           1 rule\n",
        "                   m on db: masks columns `customers.email`; detectors `email` → partial (keep 4) for everyone except `support-lead`\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let o = common::pinhole(&["inspect", "--format", "json", "p.blob"], d.path());
    let v: serde_json::Value = serde_json::from_str(&common::stdout(&o)).unwrap();
    assert_eq!(v["policy"]["masking"][0]["id"], "m");
    assert_eq!(
        v["policy"]["masking"][0]["spec"]["columns"][0]["strategy"]["kind"],
        "partial"
    );
    let o = common::pinhole(&["check", "--format", "json", "policy.yaml"], d.path());
    let v: serde_json::Value = serde_json::from_str(&common::stdout(&o)).unwrap();
    assert_eq!(v["counts"]["masking"], 1);
}
