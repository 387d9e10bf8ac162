//! Property test: the indexed evaluation decides exactly as the full scan
//! (and as the traced scan `explain` uses), over random policies and
//! requests — decisions (effect, rule, reason), list visibility and SQL.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::RuleIndex;
use crate::pg::sql;
use crate::policy::eval::{
    decide_statements, decide_statements_indexed, evaluate, evaluate_indexed, evaluate_traced,
    visible, visible_indexed, Item, Request,
};
use crate::policy::model::*;

const ROLES: &[&str] = &["a", "b", "c", "d"];
const TARGETS: &[&str] = &["t1", "t2"];
/// Names requests use; patterns are drawn from these and from globs over
/// them (prefix, suffix, `?`, `**`, escapes, multi-byte text).
const NAMES: &[&str] = &[
    "a", "ab", "abc", "b", "ba", "a/b", "a*b", "é", "éa", "deploy", "", "/v1/x", "/v1/x/y",
];
const PATTERNS: &[&str] = &[
    "a", "ab", "abc", "b", "a*", "*b", "a?", "?", "*", "**", "a/**", "a\\*b", "a*b", "é*",
    "deploy", "de*", "/v1/*", "/v1/**", "/v1/x", "*x*", "ab*", "abc*",
];
const SQL: &[&str] = &[
    "SELECT * FROM orders",
    "SELECT o.id FROM orders o JOIN secret.keys k ON k.id = o.id",
    "DELETE FROM orders",
    "DELETE FROM orders WHERE id = 1",
    "UPDATE orders SET a = 1",
    "INSERT INTO orders VALUES (1)",
    "WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d",
    "DROP TABLE orders",
    "DROP INDEX orders_idx",
    "CREATE TABLE t (a int)",
    "CREATE USER bob",
    "ALTER TABLE orders ADD COLUMN b int",
    "TRUNCATE orders",
    "COPY orders TO PROGRAM 'x'",
    "COPY orders TO STDOUT",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT lower(name) FROM customers",
    "VACUUM orders",
    "BEGIN",
    "PREPARE p AS DELETE FROM orders",
    "EXPLAIN ANALYZE DELETE FROM orders",
    "SET statement_timeout = 5",
    "SET search_path = x",
    "SHOW ALL",
    "LISTEN x",
    "SELECT 1; DROP TABLE orders",
];
const TABLES: &[&str] = &[
    "public.orders",
    "public.*",
    "secret.*",
    "*.keys",
    "public.customers",
];
const FUNCTIONS: &[&str] = &["pg_read_*", "lower", "pg_catalog.lower", "lo_*"];

fn pick(rng: &mut StdRng, from: &[&str], max: usize) -> Vec<String> {
    let n = rng.gen_range(0..=max);
    (0..n)
        .filter_map(|_| from.choose(rng).map(|s| s.to_string()))
        .collect()
}

fn arg_path(name: &str) -> (Vec<PathSeg>, String) {
    (vec![PathSeg::Key(name.into())], name.into())
}

fn statement_classes(rng: &mut StdRng) -> Vec<StatementClass> {
    let n = rng.gen_range(0..=3);
    (0..n)
        .map(|_| {
            if rng.gen_bool(0.3) {
                let o = SqlObject::ALL
                    .choose(rng)
                    .copied()
                    .unwrap_or(SqlObject::Table);
                match rng.gen_range(0..3) {
                    0 => StatementClass::Create(Some(o)),
                    1 => StatementClass::Alter(Some(o)),
                    _ => StatementClass::Drop(Some(o)),
                }
            } else {
                StatementClass::SIMPLE
                    .choose(rng)
                    .map(|(_, c)| c.clone())
                    .unwrap_or(StatementClass::Select)
            }
        })
        .collect()
}

fn sql_match(rng: &mut StdRng) -> SqlMatch {
    SqlMatch {
        statements: statement_classes(rng),
        tables: pick(rng, TABLES, 2),
        functions: if rng.gen_bool(0.2) {
            pick(rng, FUNCTIONS, 2)
        } else {
            vec![]
        },
        without_where: rng.gen_bool(0.1),
        copy_program: rng.gen_bool(0.05),
    }
}

fn arguments(rng: &mut StdRng) -> Vec<ArgConstraint> {
    let n = if rng.gen_bool(0.3) {
        rng.gen_range(1..=2)
    } else {
        0
    };
    (0..n)
        .map(|_| {
            let (path, path_text) = arg_path(["env", "n", "region"][rng.gen_range(0..3)]);
            let test = match rng.gen_range(0..4) {
                0 => ArgTest::Equals(json!("staging")),
                1 => ArgTest::OneOf(vec![json!("dev"), json!(3)]),
                2 => ArgTest::Glob(vec!["eu-*".into()]),
                _ => ArgTest::Range {
                    min: Some(1.0),
                    max: Some(5.0),
                },
            };
            ArgConstraint {
                path,
                path_text,
                test,
            }
        })
        .collect()
}

fn matcher(rng: &mut StdRng) -> Matcher {
    match rng.gen_range(0..10) {
        0 => Matcher::Any,
        1..=5 => {
            let tools = pick(rng, PATTERNS, 3);
            let sql = !tools.is_empty() && rng.gen_bool(0.2);
            Matcher::Mcp(McpMatch {
                arguments: if tools.is_empty() {
                    vec![]
                } else {
                    arguments(rng)
                },
                tools,
                resources: pick(rng, PATTERNS, 2),
                prompts: pick(rng, PATTERNS, 1),
                methods: pick(rng, PATTERNS, 1),
                sql_argument: sql.then(|| {
                    let (path, path_text) = arg_path(if rng.gen_bool(0.8) { "sql" } else { "q" });
                    ArgPath { path, path_text }
                }),
                sql: (sql && rng.gen_bool(0.7)).then(|| sql_match(rng)),
            })
        }
        6 | 7 => Matcher::Http(HttpMatch {
            methods: pick(rng, &["GET", "POST", "get"], 2),
            paths: pick(rng, PATTERNS, 2),
        }),
        _ => Matcher::Sql(sql_match(rng)),
    }
}

fn random_policy(rng: &mut StdRng) -> Policy {
    let n = rng.gen_range(0..40);
    let rules = (0..n)
        .map(|i| Rule {
            id: format!("r{i}"),
            effect: [Effect::Allow, Effect::Allow, Effect::Deny, Effect::Review]
                [rng.gen_range(0..4)],
            roles: pick(rng, ROLES, 2),
            target: TARGETS.choose(rng).copied().unwrap_or("t1").into(),
            matcher: matcher(rng),
            reason: rng.gen_bool(0.3).then(|| "because".to_string()),
        })
        .collect();
    Policy {
        rules,
        ..Policy::default()
    }
}

fn random_arguments(rng: &mut StdRng) -> Value {
    let mut m = serde_json::Map::new();
    if rng.gen_bool(0.5) {
        m.insert(
            "env".into(),
            json!(["staging", "dev", "prod"][rng.gen_range(0..3)]),
        );
    }
    if rng.gen_bool(0.5) {
        m.insert("n".into(), json!(rng.gen_range(0..7)));
    }
    if rng.gen_bool(0.3) {
        m.insert("region".into(), json!("eu-west-1"));
    }
    match rng.gen_range(0..6) {
        0 => {}
        1 => {
            m.insert("sql".into(), json!(42));
        }
        2 => {
            m.insert("sql".into(), json!("SELEC nope"));
        }
        _ => {
            m.insert("sql".into(), json!(SQL.choose(rng).copied().unwrap_or("")));
        }
    }
    if rng.gen_bool(0.2) {
        m.insert("q".into(), json!(SQL.choose(rng).copied().unwrap_or("")));
    }
    Value::Object(m)
}

#[test]
fn indexed_evaluation_equals_the_full_scan() {
    let statements: Vec<Vec<sql::StatementInfo>> = SQL
        .iter()
        .map(|q| sql::classify(q).unwrap_or_default())
        .collect();
    let mut rng = StdRng::seed_from_u64(0x5ca1e);
    let mut decided = [0usize; 3];
    for round in 0..1500 {
        let policy = random_policy(&mut rng);
        let target = TARGETS.choose(&mut rng).copied().unwrap_or("t1");
        let index = RuleIndex::build(&policy, target);
        for _ in 0..20 {
            let roles = pick(&mut rng, ROLES, 3);
            let name = NAMES.choose(&mut rng).copied().unwrap_or("a");
            let args = random_arguments(&mut rng);
            let sts = statements.choose(&mut rng).cloned().unwrap_or_default();
            let st = sts.first().cloned();
            let method = ["GET", "POST", "get"][rng.gen_range(0..3)];
            let mut reqs = vec![
                Request::ToolCall {
                    name,
                    arguments: &args,
                },
                Request::Resource { uri: name },
                Request::Prompt { name },
                Request::McpMethod { method: name },
                Request::Http { method, path: name },
            ];
            if let Some(s) = &st {
                reqs.push(Request::Sql { statement: s });
            }
            for req in &reqs {
                let mut traced = Vec::new();
                let reference =
                    evaluate_traced(&policy, &roles, target, req, &mut |t| traced.push(t));
                let plain = evaluate(&policy, &roles, target, req);
                let fast = evaluate_indexed(&policy, &index, &roles, target, req);
                let ctx = || format!("round {round}, roles {roles:?}, {req:?}\n{policy:#?}");
                assert_eq!(plain, reference, "untraced scan: {}", ctx());
                assert_eq!(fast, reference, "indexed: {}", ctx());
                // explain still reports every rule of the target.
                let n = policy.rules.iter().filter(|r| r.target == target).count();
                if !matches!(req, Request::ToolCall { .. })
                    && st.as_ref().is_none_or(|s| {
                        crate::policy::eval::PROTECTED_SETTINGS
                            .iter()
                            .all(|p| !s.settings.iter().any(|x| x == p))
                    })
                {
                    assert_eq!(traced.len(), n, "trace: {}", ctx());
                }
                decided[match reference.effect {
                    Effect::Allow => 0,
                    Effect::Deny => 1,
                    Effect::Review => 2,
                }] += 1;
            }
            for item in [
                Item::Tool(name),
                Item::Resource(name),
                Item::ResourceTemplate(name),
                Item::Prompt(name),
            ] {
                assert_eq!(
                    visible(&policy, &roles, target, item),
                    visible_indexed(&policy, &index, &roles, target, item),
                    "visible {item:?}, roles {roles:?}\n{policy:#?}"
                );
            }
            assert_eq!(
                decide_statements(&policy, &roles, target, &sts),
                decide_statements_indexed(&policy, &index, &roles, target, &sts),
                "statements {sts:?}, roles {roles:?}\n{policy:#?}"
            );
        }
    }
    // The random policies exercise every outcome.
    assert!(decided.iter().all(|&n| n > 1000), "{decided:?}");
}

#[test]
fn an_index_of_another_policy_or_target_is_not_used() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let p = random_policy(&mut rng);
        let mut q = p.clone();
        q.rules.push(Rule {
            id: "extra".into(),
            effect: Effect::Allow,
            roles: vec![],
            target: "t1".into(),
            matcher: Matcher::Any,
            reason: None,
        });
        let index = RuleIndex::build(&p, "t1");
        let args = json!({});
        let req = Request::ToolCall {
            name: "zz",
            arguments: &args,
        };
        let roles = vec!["a".to_string()];
        assert_eq!(
            evaluate_indexed(&q, &index, &roles, "t1", &req),
            evaluate(&q, &roles, "t1", &req)
        );
        assert_eq!(
            evaluate_indexed(&p, &index, &roles, "t2", &req),
            evaluate(&p, &roles, "t2", &req)
        );
    }
}
