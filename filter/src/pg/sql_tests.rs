use super::sql::*;

fn one(sql: &str) -> StatementInfo {
    let v = classify(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(v.len(), 1, "{sql}");
    v.into_iter().next().unwrap()
}

fn n(s: &str) -> QualifiedName {
    match s.split_once('.') {
        Some((a, b)) => QualifiedName::qualified(a, b),
        None => QualifiedName::bare(s),
    }
}

fn names(v: &[&str]) -> Vec<QualifiedName> {
    v.iter().map(|s| n(s)).collect()
}

fn check(sql: &str, kind: StatementKind, reads: &[&str], writes: &[&str]) -> StatementInfo {
    let i = one(sql);
    assert_eq!(i.kind, kind, "{sql}");
    assert_eq!(i.reads, names(reads), "reads of {sql}");
    assert_eq!(i.writes, names(writes), "writes of {sql}");
    i
}

use ObjectType as O;
use StatementKind as K;

#[test]
fn selects_and_joins() {
    check("SELECT * FROM t", K::Select, &["t"], &[]);
    check(
        "SELECT a.x FROM public.a JOIN sales.b ON a.id = b.id LEFT JOIN c USING (id)",
        K::Select,
        &["public.a", "sales.b", "c"],
        &[],
    );
    check(
        "SELECT * FROM t WHERE id IN (SELECT id FROM secret) AND EXISTS (SELECT 1 FROM s2)",
        K::Select,
        &["t", "secret", "s2"],
        &[],
    );
    check(
        "SELECT * FROM (SELECT * FROM inner_t) sub",
        K::Select,
        &["inner_t"],
        &[],
    );
    check(
        "SELECT a FROM t1 UNION SELECT a FROM t2 INTERSECT SELECT a FROM t3 EXCEPT SELECT a FROM t4",
        K::Select,
        &["t1", "t2", "t3", "t4"],
        &[],
    );
    // A view is named directly.
    check(
        "SELECT * FROM reporting.v_orders",
        K::Select,
        &["reporting.v_orders"],
        &[],
    );
    check("SELECT 1", K::Select, &[], &[]);
    // sqlparser's PostgreSQL dialect does not parse a leading `TABLE t`
    // (denied), but does parse it as a set-operation operand.
    assert!(classify("TABLE secret").is_err());
    check(
        "SELECT * FROM a UNION TABLE s.b",
        K::Select,
        &["s.b", "a"],
        &[],
    );
    check("SELECT 1 UNION TABLE secret", K::Select, &["secret"], &[]);
    check(
        "SELECT * INTO copy_t FROM t",
        K::Create(O::Table),
        &["t"],
        &["copy_t"],
    );
}

#[test]
fn names_are_normalised() {
    let i = one(r#"SELECT * FROM Public.Orders, "Sales"."BigTable", ORDERS"#);
    assert_eq!(
        i.reads,
        names(&["public.orders", "Sales.BigTable", "orders"])
    );
    let i = one(r#"SELECT * FROM "x.y""#);
    assert_eq!(i.reads, vec![QualifiedName::bare("x.y")]);
    let i = one("SELECT * FROM db.s.t");
    assert_eq!(
        i.reads,
        vec![QualifiedName {
            catalog: Some("db".into()),
            schema: Some("s".into()),
            name: "t".into()
        }]
    );
}

#[test]
fn ctes() {
    // A CTE name is not a table.
    check(
        "WITH x AS (SELECT * FROM base) SELECT * FROM x JOIN other ON true",
        K::Select,
        &["base", "other"],
        &[],
    );
    // A CTE with DELETE makes the statement a delete of that table.
    let i = check(
        "WITH d AS (DELETE FROM audit_log WHERE ts < now() RETURNING *) SELECT count(*) FROM d",
        K::Delete,
        &[],
        &["audit_log"],
    );
    assert!(i.has_where);
    assert!(i.functions.contains(&n("now")));
    let i = check(
        "WITH d AS (DELETE FROM audit_log RETURNING *) SELECT * FROM d",
        K::Delete,
        &[],
        &["audit_log"],
    );
    assert!(!i.has_where);
    check(
        "WITH u AS (UPDATE accounts SET balance = 0 WHERE id = 1 RETURNING id) SELECT * FROM u",
        K::Update,
        &[],
        &["accounts"],
    );
    let i = check(
        "WITH i AS (INSERT INTO log (m) VALUES ('x') RETURNING id) DELETE FROM t WHERE id IN (SELECT id FROM i)",
        K::Delete,
        &[],
        &["log", "t"],
    );
    assert_eq!(i.dml_kinds, vec![K::Insert, K::Delete]);
    // A non-recursive CTE body referring to its own name reads the real
    // table; a CTE in a subquery does not hide a table outside it.
    check(
        "WITH secret AS (SELECT * FROM secret) SELECT * FROM secret",
        K::Select,
        &["secret"],
        &[],
    );
    check(
        "SELECT * FROM secret, (WITH secret AS (SELECT 1) SELECT * FROM secret) s",
        K::Select,
        &["secret"],
        &[],
    );
    check(
        "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b",
        K::Select,
        &["b"],
        &[],
    );
    check(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
        K::Select,
        &[],
        &[],
    );
}

#[test]
fn dml() {
    check(
        "INSERT INTO archive SELECT * FROM orders WHERE old",
        K::Insert,
        &["orders"],
        &["archive"],
    );
    check("INSERT INTO s.t (a) VALUES (1)", K::Insert, &[], &["s.t"]);
    let i = check("UPDATE t SET a = 1", K::Update, &[], &["t"]);
    assert!(!i.has_where);
    let i = check(
        "UPDATE t SET a = o.a FROM other o WHERE t.id = o.id",
        K::Update,
        &["other"],
        &["t"],
    );
    assert!(i.has_where);
    let i = check(
        "DELETE FROM t USING u WHERE t.id = u.id",
        K::Delete,
        &["u"],
        &["t"],
    );
    assert!(i.has_where);
    let i = check("DELETE FROM t", K::Delete, &[], &["t"]);
    assert!(!i.has_where);
    // A table both read and written stays in reads.
    check(
        "DELETE FROM t WHERE id IN (SELECT id FROM t WHERE x)",
        K::Delete,
        &["t"],
        &["t"],
    );
    check(
        "MERGE INTO tgt USING src ON tgt.id = src.id WHEN MATCHED THEN UPDATE SET v = src.v WHEN NOT MATCHED THEN INSERT (id, v) VALUES (src.id, src.v)",
        K::Merge,
        &["src"],
        &["tgt"],
    );
    let i = one("SELECT 1");
    assert!(i.has_where);
}

#[test]
fn copy() {
    let i = check("COPY t TO STDOUT", K::CopyTo, &["t"], &[]);
    assert!(!i.copy_program && !i.copy_file);
    let i = check("COPY t FROM STDIN", K::CopyFrom, &[], &["t"]);
    assert!(!i.copy_program);
    let i = check("COPY t TO PROGRAM 'x'", K::CopyTo, &["t"], &[]);
    assert!(i.copy_program);
    let i = check("COPY t FROM PROGRAM 'curl evil'", K::CopyFrom, &[], &["t"]);
    assert!(i.copy_program);
    let i = check("COPY t FROM '/etc/passwd'", K::CopyFrom, &[], &["t"]);
    assert!(i.copy_file);
    check(
        "COPY (SELECT * FROM a JOIN b ON true) TO STDOUT",
        K::CopyTo,
        &["a", "b"],
        &[],
    );
}

#[test]
fn functions() {
    let i = one("SELECT pg_read_file('/etc/passwd')");
    assert_eq!(i.kind, K::Select);
    assert_eq!(i.functions, names(&["pg_read_file"]));
    let i = one("SELECT * FROM t WHERE x = lower(pg_catalog.PG_LS_DIR('.'))");
    assert_eq!(i.functions, names(&["lower", "pg_catalog.pg_ls_dir"]));
    let i = one("SELECT * FROM dblink('host=x', 'select 1') AS r(a int)");
    assert_eq!(i.functions, names(&["dblink"]));
    assert_eq!(i.reads, vec![]);
    let i = one("SELECT * FROM generate_series(1, 3), t");
    assert_eq!(i.functions, names(&["generate_series"]));
    assert_eq!(i.reads, names(&["t"]));
    let i = one("INSERT INTO t VALUES (lo_import('/etc/passwd'))");
    assert_eq!(i.functions, names(&["lo_import"]));
    let i = one("UPDATE t SET a = 1 WHERE pg_terminate_backend(42)");
    assert_eq!(i.functions, names(&["pg_terminate_backend"]));
    let i = check("CALL s.do_things(1)", K::Call, &[], &[]);
    assert_eq!(i.functions, names(&["s.do_things"]));
}

#[test]
fn ddl() {
    check(
        "CREATE TABLE s.t (a int)",
        K::Create(O::Table),
        &[],
        &["s.t"],
    );
    check(
        "CREATE VIEW v AS SELECT * FROM base",
        K::Create(O::View),
        &["base"],
        &["v"],
    );
    check("CREATE INDEX i ON t (a)", K::Create(O::Index), &[], &["t"]);
    check("CREATE SCHEMA s", K::Create(O::Schema), &[], &[]);
    check("CREATE ROLE r", K::Create(O::Role), &[], &[]);
    check(
        "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql",
        K::Create(O::Function),
        &[],
        &[],
    );
    check("CREATE EXTENSION dblink", K::Create(O::Extension), &[], &[]);
    check(
        "ALTER TABLE t ADD COLUMN b int",
        K::Alter(O::Table),
        &[],
        &["t"],
    );
    check("DROP TABLE a, s.b", K::Drop(O::Table), &[], &["a", "s.b"]);
    check("DROP VIEW IF EXISTS v", K::Drop(O::View), &[], &["v"]);
    check("DROP SCHEMA s CASCADE", K::Drop(O::Schema), &[], &["s"]);
    check("DROP FUNCTION f(int)", K::Drop(O::Function), &[], &[]);
    check("TRUNCATE a, b", K::Truncate, &[], &["a", "b"]);
    check("GRANT SELECT ON t TO bob", K::Grant, &[], &[]);
    check("REVOKE ALL ON t FROM bob", K::Revoke, &[], &[]);
    check("COMMENT ON TABLE t IS 'x'", K::Comment, &[], &["t"]);
}

#[test]
fn utility() {
    check("SET search_path = evil, public", K::Set, &[], &[]);
    check("RESET ALL", K::Set, &[], &[]);
    check("SHOW server_version", K::Show, &[], &[]);
    for t in [
        "BEGIN",
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT s1",
        "RELEASE SAVEPOINT s1",
        "ROLLBACK TO SAVEPOINT s1",
    ] {
        check(t, K::Transaction, &[], &[]);
    }
    check("EXECUTE p(1)", K::Execute, &[], &[]);
    check("DEALLOCATE p", K::Deallocate, &[], &[]);
    check("LISTEN jobs", K::Listen, &[], &[]);
    check("NOTIFY jobs, 'x'", K::Notify, &[], &[]);
    check("UNLISTEN jobs", K::Unlisten, &[], &[]);
    check("VACUUM t", K::Vacuum, &[], &[]);
    check("DISCARD ALL", K::Discard, &[], &[]);
    check(
        "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
        K::Lock,
        &["t"],
        &[],
    );
    check(
        "DECLARE c CURSOR FOR SELECT * FROM t",
        K::Cursor,
        &["t"],
        &[],
    );
    check("FETCH NEXT FROM c", K::Cursor, &[], &[]);
    check("CLOSE c", K::Cursor, &[], &[]);
    let i = one("DO $$BEGIN DELETE FROM t; END$$");
    assert_eq!(i.kind, K::DoBlock);
    assert_eq!(i.text, "DO $$BEGIN DELETE FROM t; END$$");
    let i = one("do language plpgsql $$ begin perform 1; end $$");
    assert_eq!(i.kind, K::DoBlock);
}

#[test]
fn explain_and_prepare() {
    // EXPLAIN ANALYZE runs the statement: judged as the statement.
    let i = check("EXPLAIN ANALYZE DELETE FROM t", K::Delete, &[], &["t"]);
    assert!(!i.has_where);
    check(
        "EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1 WHERE b",
        K::Update,
        &[],
        &["t"],
    );
    // Plain EXPLAIN: kind explain, the inner statement's tables as reads.
    let i = check(
        "EXPLAIN DELETE FROM t WHERE id IN (SELECT id FROM u)",
        K::Explain,
        &["u", "t"],
        &[],
    );
    assert_eq!(i.inner.unwrap().kind, K::Delete);
    check("EXPLAIN SELECT * FROM a", K::Explain, &["a"], &[]);
    // PREPARE carries its statement.
    let i = check(
        "PREPARE p (int) AS DELETE FROM t WHERE id = $1",
        K::Prepare,
        &[],
        &["t"],
    );
    assert_eq!(i.inner.unwrap().kind, K::Delete);
}

#[test]
fn multi_statement() {
    let v =
        classify("SELECT * FROM a; DELETE FROM b WHERE x;  ;\nINSERT INTO c VALUES (1)").unwrap();
    let kinds: Vec<_> = v.iter().map(|i| i.kind.clone()).collect();
    assert_eq!(kinds, vec![K::Select, K::Delete, K::Insert]);
    let texts: Vec<_> = v.iter().map(|i| i.text.as_str()).collect();
    assert_eq!(
        texts,
        vec![
            "SELECT * FROM a",
            "DELETE FROM b WHERE x",
            "INSERT INTO c VALUES (1)"
        ]
    );
    // A semicolon inside a string or dollar quote does not split.
    let v = classify("SELECT ';' FROM a; DO $x$ SELECT 1; $x$; SELECT 'é' FROM b").unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(v.get(1).unwrap().kind, K::DoBlock);
    assert_eq!(v.get(2).unwrap().text, "SELECT 'é' FROM b");
}

#[test]
fn errors_deny() {
    assert!(matches!(
        classify("SELEC * FROM t"),
        Err(SqlError::Parse(_))
    ));
    assert!(matches!(
        classify("SELECT 1; DELET FROM t"),
        Err(SqlError::Parse(_))
    ));
    assert!(matches!(
        classify("SELECT 'unterminated"),
        Err(SqlError::Parse(_))
    ));
    assert!(matches!(classify(""), Err(SqlError::Empty)));
    assert!(matches!(classify(" ; ;"), Err(SqlError::Empty)));
    let long = format!("SELECT 1 {}", " ".repeat(MAX_SQL_LEN));
    assert!(matches!(classify(&long), Err(SqlError::TooLong { .. })));
    // Deep nesting is refused before parsing (bracket depth) or by the
    // parser's recursion limit, never by running out of stack.
    let deep = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
    assert!(matches!(classify(&deep), Err(SqlError::TooDeep(_))));
    let deep = format!(
        "SELECT * FROM {}t{}",
        "(SELECT * FROM ".repeat(100),
        ") s".repeat(100)
    );
    assert!(matches!(classify(&deep), Err(SqlError::TooDeep(_))));
    let deep = format!("SELECT {}1", "NOT ".repeat(200));
    assert!(matches!(classify(&deep), Err(SqlError::Parse(_))));
    let deep = format!("SELECT {}1", "- ".repeat(200));
    assert!(matches!(classify(&deep), Err(SqlError::Parse(_))));
    let deep = format!(
        "SELECT {}1{}",
        "CASE WHEN ".repeat(40),
        " THEN 1 END".repeat(40)
    );
    assert!(classify(&deep).is_err());
    let deep = format!(
        "SELECT * FROM {}t{}",
        "(SELECT * FROM ".repeat(8),
        ") s".repeat(8)
    );
    assert!(matches!(classify(&deep), Err(SqlError::Parse(_))));
    // Reasonable nesting is fine.
    let ok = format!("SELECT {}1{}", "(".repeat(12), ")".repeat(12));
    assert!(classify(&ok).is_ok());
    let ok = format!(
        "SELECT * FROM {}t{}",
        "(SELECT * FROM ".repeat(6),
        ") s".repeat(6)
    );
    assert_eq!(one(&ok).reads, names(&["t"]));
    let many = "SELECT 1;".repeat(MAX_STATEMENTS + 1);
    assert!(matches!(
        classify(&many),
        Err(SqlError::TooManyStatements(_))
    ));
}

#[test]
fn unknown_variants_are_other() {
    let i = one("CREATE SEQUENCE s");
    assert_eq!(i.kind, K::Create(O::Sequence));
    // A statement this module does not classify keeps its variant name.
    for (sql, variant) in OTHER_VARIANTS {
        let i = one(sql);
        assert!(
            matches!(i.kind, K::Other(ref v) if v == variant),
            "{sql}: {:?}",
            i.kind
        );
    }
}

const OTHER_VARIANTS: &[(&str, &str)] = &[
    ("SHOW TABLES", "ShowTables"),
    ("KILL 1", "Kill"),
    ("USE db", "Use"),
    (
        "ALTER OPERATOR FAMILY f USING btree ADD OPERATOR 1 < (int, int)",
        "AlterOperatorFamily",
    ),
    (
        "CREATE TEXT SEARCH CONFIGURATION c (PARSER = p)",
        "CreateTextSearch",
    ),
];

#[test]
fn settings_changed_are_reported() {
    let settings = |sql: &str| one(sql).settings;
    assert_eq!(settings("SET search_path = private"), ["search_path"]);
    assert_eq!(
        settings("SET LOCAL statement_timeout = 5"),
        ["statement_timeout"]
    );
    assert_eq!(settings("SET ROLE admin"), ["role"]);
    assert_eq!(
        settings("SET SESSION AUTHORIZATION admin"),
        ["session_authorization"]
    );
    assert_eq!(settings("SET NAMES 'SJIS'"), ["client_encoding"]);
    assert_eq!(
        settings("SET client_encoding TO 'SJIS'"),
        ["client_encoding"]
    );
    assert_eq!(
        settings("SELECT set_config('client_encoding', 'SJIS', false)"),
        ["client_encoding"]
    );
    assert_eq!(
        settings("SELECT pg_catalog.set_config('Search_Path', 'x', false)"),
        ["search_path"]
    );
    assert_eq!(
        settings("SELECT set_config(name, 'x', false) FROM t"),
        ["*"]
    );
    assert_eq!(
        settings("SELECT * FROM t WHERE x = (SELECT set_config('standard_conforming_strings', 'off', false))"),
        ["standard_conforming_strings"]
    );
    assert_eq!(
        settings("PREPARE p AS SELECT set_config('role', 'x', false)"),
        ["role"]
    );
    assert!(settings("SELECT 1").is_empty());
}

/// Hostile-input regressions (docs/hostile-input.md).
#[test]
fn long_operator_chains_are_refused_not_overflowed() {
    // 10 000 `+` (20 KB) overflowed the stack inside Envoy (the visit and
    // drop of the left-deep tree recurse once per operator) and trapped the
    // VM. Every chain kind is refused past the cap, before parsing.
    let over = MAX_OPERATORS + 1;
    for sql in [
        format!("SELECT {}1 FROM orders", "1+".repeat(over)),
        format!("SELECT {}1 FROM orders", "1||".repeat(over)),
        format!("SELECT 1 FROM orders WHERE {}true", "true OR ".repeat(over)),
        format!(
            "SELECT 1 FROM orders WHERE {}true",
            "true AND ".repeat(over)
        ),
        format!("SELECT 1{}", " UNION SELECT 1".repeat(over)),
        format!("SELECT 1{}", "::int".repeat(over)),
        format!("SELECT x{} FROM t", "[1]".repeat(over)),
        format!("SELECT x{} FROM t", " IS NULL".repeat(over)),
        format!(
            "SELECT 1 FROM t WHERE a = 1{}",
            " AND a = 1".repeat(over / 2)
        ),
        format!("SELECT 1+1; SELECT {}1", "1+".repeat(30_000)),
    ] {
        assert_eq!(
            classify(&sql).map(|v| v.len()),
            Err(SqlError::TooManyOperators(MAX_OPERATORS)),
            "{:.60}",
            sql
        );
    }
    // At the cap every chain kind classifies, on a small stack (the wasm
    // build runs this test under node too).
    let at = MAX_OPERATORS;
    let texts = [
        format!("SELECT {}1 FROM orders", "1+".repeat(at)),
        format!("SELECT 1 FROM orders WHERE {}true", "true OR ".repeat(at)),
        format!("SELECT 1{}", " UNION SELECT 1".repeat(at)),
        format!("SELECT 1{}", "::int".repeat(at)),
        format!("SELECT x{} FROM t", " IS NULL".repeat(at)),
        format!(
            "SELECT {}{}1{}",
            "(".repeat(8),
            "1+".repeat(at - 1),
            ")".repeat(8)
        ),
    ];
    let worker = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            texts
                .iter()
                .map(|t| classify(t).map(|_| ()).map_err(|e| e.to_string()))
                .collect::<Vec<_>>()
        });
    match worker {
        Ok(handle) => {
            for (i, r) in handle.join().unwrap().into_iter().enumerate() {
                assert_eq!(r, Ok(()), "text #{i}");
            }
        }
        // wasm32-wasip1 has no threads: run on the main stack (1 MiB there).
        Err(_) => {
            let t = format!("SELECT {}1 FROM orders", "1+".repeat(at));
            assert!(classify(&t).is_ok());
        }
    }
    // Long IN lists and bulk VALUES have no operator chains: fine.
    let list: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
    assert!(classify(&format!("SELECT * FROM t WHERE id IN ({})", list.join(","))).is_ok());
    let rows: Vec<String> = (0..2000).map(|i| format!("({i}, 'x')")).collect();
    assert!(classify(&format!("INSERT INTO t VALUES {}", rows.join(","))).is_ok());
}

#[test]
fn explain_analyse_spelling_runs_the_statement() {
    // PostgreSQL accepts ANALYSE for ANALYZE in the option list: the DELETE
    // runs, so it is classified as the DELETE.
    for sql in [
        "EXPLAIN (ANALYSE) DELETE FROM orders",
        "EXPLAIN (analyse true, buffers) DELETE FROM orders",
        "EXPLAIN (\"analyze\") DELETE FROM orders",
        "EXPLAIN (ANALYZE on) DELETE FROM orders",
    ] {
        let i = one(sql);
        assert_eq!(i.kind, K::Delete, "{sql}");
        assert_eq!(i.writes, names(&["orders"]), "{sql}");
        assert!(!i.has_where, "{sql}");
    }
    // The bare form does not parse with sqlparser: refused.
    assert!(classify("EXPLAIN ANALYSE DELETE FROM orders").is_err());
}

#[test]
fn unicode_escaped_identifiers_are_refused() {
    // PostgreSQL reads U&"nextv\0061l" as `nextval`; sqlparser reads
    // `U & "nextv\0061l"(…)`, a call of another function.
    for sql in [
        "SELECT U&\"nextv\\0061l\"('s')",
        "SELECT U&\"pg_terminate_backen\\0064\"(1)",
        "SELECT u&\"x\" FROM t",
        "SELECT * FROM U&\"secr\\0065ts\"",
        "SET U&\"search\\005fpath\" = private",
        "SELECT 1; SELECT U&\"!0073ecrets\" UESCAPE '!'",
    ] {
        assert!(classify(sql).is_err(), "{sql}");
    }
    assert_eq!(
        classify("SELECT U&\"nextv\\0061l\"('s')"),
        Err(SqlError::UnicodeIdentifier)
    );
    // The operator `&` between a column u and a quoted column, and
    // Unicode string literals, are fine.
    assert!(classify("SELECT u & \"x\" FROM t").is_ok());
    assert!(classify("SELECT U&'d\\0061t\\+000061' FROM t").is_ok());
}

#[test]
fn identifiers_fold_like_postgresql() {
    // PostgreSQL folds only ASCII letters of unquoted names.
    check("SELECT * FROM ORDERS", K::Select, &["orders"], &[]);
    check(
        "SELECT * FROM \u{212A}eys",
        K::Select,
        &["\u{212A}eys"],
        &[],
    );
    check("SELECT * FROM \"SECRETS\"", K::Select, &["SECRETS"], &[]);
    check(
        "SELECT * FROM \"public\".\"secrets\"",
        K::Select,
        &["public.secrets"],
        &[],
    );
    check(
        "SELECT * FROM PuBlIc.SeCrEtS",
        K::Select,
        &["public.secrets"],
        &[],
    );
}

#[test]
fn side_effect_functions_are_listed() {
    for f in [
        "nextval",
        "setval",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_advisory_xact_lock",
        "pg_try_advisory_lock",
        "lo_import",
        "lo_export",
        "dblink_exec",
        "pg_read_file",
        "pg_ls_dir",
        "table_to_xml",
        "query_to_xml",
        "query_to_xml_and_xmlschema",
        "cursor_to_xmlschema",
        "ts_stat",
        "pg_notify",
        "pg_create_logical_replication_slot",
        "pg_reload_conf",
    ] {
        assert!(has_side_effects(&QualifiedName::bare(f)), "{f}");
        assert!(
            has_side_effects(&QualifiedName::qualified("pg_catalog", f)),
            "{f}"
        );
    }
    for f in [
        "count",
        "lower",
        "now",
        "coalesce",
        "currval",
        "pg_sleep",
        "set_config",
    ] {
        assert!(!has_side_effects(&QualifiedName::bare(f)), "{f}");
    }
    // set_config makes a SELECT also a `set`.
    let i = one("SELECT set_config('statement_timeout', '1', false)");
    assert_eq!(i.kind, K::Select);
    assert!(i.dml_kinds.contains(&K::Set));
}

#[test]
fn locking_selects_are_updates_of_the_locked_tables() {
    // PostgreSQL requires UPDATE on each locked table; the row locks block
    // writers: a select-only rule must not allow them.
    let i = check(
        "SELECT * FROM orders WHERE id = 1 FOR UPDATE",
        K::Update,
        &[],
        &["orders"],
    );
    assert!(i.dml_kinds.contains(&K::Update));
    check(
        "select * from orders o join customers c on c.id = o.customer_id for share",
        K::Update,
        &[],
        &["orders", "customers"],
    );
    // OF names the locked table, by alias or by name; the other is read.
    check(
        "SELECT * FROM orders o JOIN customers c ON c.id = o.cid FOR UPDATE OF o",
        K::Update,
        &["customers"],
        &["orders"],
    );
    check(
        "SELECT * FROM public.orders, customers FOR UPDATE OF customers NOWAIT",
        K::Update,
        &["public.orders"],
        &["customers"],
    );
    // Tables in subqueries are not locked by the outer clause: read.
    check(
        "SELECT * FROM orders WHERE cid IN (SELECT id FROM customers) FOR UPDATE SKIP LOCKED",
        K::Update,
        &["customers"],
        &["orders"],
    );
    // A locking subquery makes the whole statement an update.
    check(
        "SELECT * FROM (SELECT * FROM orders FOR UPDATE) s",
        K::Update,
        &[],
        &["orders"],
    );
    // A CTE named in FROM is not a table.
    check(
        "WITH x AS (SELECT id FROM orders) SELECT * FROM x FOR UPDATE",
        K::Update,
        &["orders"],
        &[],
    );
    // Without a locking clause: a plain read.
    check("SELECT * FROM orders", K::Select, &["orders"], &[]);
}
