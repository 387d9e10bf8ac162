"""PostgreSQL through Pinhole (issue 3), with real clients: psql, psycopg 3
(libpq), pg8000 and asyncpg (pure Python), pgbench, and the raw wire client
of pg.py.

    client ──JWT as password──▶ Envoy [pinhole network filter → tcp_proxy] ──▶ PostgreSQL 15

The contract: any startup user + a JWT log in as the target's backend role
(the filter answers the server's scram-sha-256 / md5 / password / trust
itself; the client never sees the backend password); a bad token is refused
at login (28P01, revoked: 28000); every statement is decided by the policy
(pg.policy_yaml) and a refused one gets 42501 "pinhole: …" naming the rule,
never reaches the server, and leaves the session usable.

Evidence that a refused statement never ran comes from the server: the
cluster logs every statement (log_statement = all), and the tables are owned
by the backend role, so a DROP or DELETE that got through would succeed.
"""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

import pg

pytestmark = pytest.mark.usefixtures("pg_fresh")

DRIVERS = list(pg.DRIVERS)


# ---------------------------------------------------------------- helpers

def ran(cluster: pg.Cluster, mark: int, prefix: str) -> list[str]:
    """Statements starting with `prefix` (case-insensitive) the server ran
    since `mark`. The filter's own refusal (a DO block raising 42501, whose
    message may quote the refused text) does not start with it."""
    p = prefix.lower()
    return [s for s in cluster.statements_since(mark) if s.lstrip().lower().startswith(p)]


def settle(cluster: pg.Cluster, stack: "object", token: str) -> None:
    """Run a marker statement through the filter and wait until the server
    logged it: whatever the test sent before has been logged by then."""
    marker = f"settle-{uuid.uuid4().hex}"
    mark = cluster.log_mark()
    with stack.raw() as c:  # type: ignore[attr-defined]
        assert pg.login_ok(c.login("alice", token))
        c.query(f"SELECT '{marker}' FROM orders LIMIT 1")
    assert cluster.wait_for_statement(mark, marker), "the marker statement never reached the server"


def assert_refused(err: pg.DbError, rule: str | None = None, *, text: str | None = None) -> None:
    assert err.sqlstate == pg.INSUFFICIENT_PRIVILEGE, f"expected 42501, got {err!r}"
    assert err.message.startswith("pinhole:"), f"refusal should start with 'pinhole:': {err.message!r}"
    if rule is not None:
        assert rule in err.message, f"refusal should name rule {rule!r}: {err.message!r}"
    if text is not None:
        assert text in err.message, f"refusal should say {text!r}: {err.message!r}"


def assert_raw_refused(res: pg.Result, rule: str | None = None) -> None:
    assert not res.closed, f"connection closed after a refused statement: {res.types!r}"
    err = res.error
    assert err is not None, f"no ErrorResponse: {res.types!r}"
    assert err.get("C") == pg.INSUFFICIENT_PRIVILEGE, err
    assert err.get("M", "").startswith("pinhole:"), err
    if rule is not None:
        assert rule in err.get("M", ""), err
    assert "W" not in err, f"the refusal leaks the filter's DO block as CONTEXT: {err}"
    assert b"D" not in res.types, f"rows came back with a refusal: {res.types!r}"


# ---------------------------------------------------------------- baseline (no filter)

def test_baseline_tcp_proxy_with_the_real_password(pg_tcp_stack, pg_auth) -> None:
    """The infrastructure itself: psql and a pure driver through Envoy's
    plain tcp_proxy log in with the database's own password."""
    cluster = pg_tcp_stack.cluster
    p = pg.psql(pg_tcp_stack.port, pg.BACKEND_USER, cluster.password, "SELECT current_user, count(*) FROM orders")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "pinhole_app|5"
    with pg.connect("pg8000", pg_tcp_stack.port, pg.BACKEND_USER, cluster.password) as s:
        assert s.run("SELECT count(*) FROM customers") == [(3,)]


def test_baseline_a_jwt_is_not_a_database_password(pg_tcp_stack, pg_tokens) -> None:
    """Without the filter a JWT opens nothing: the login through Pinhole
    works because of Pinhole."""
    with pytest.raises(pg.DbError) as ei:
        pg.connect("asyncpg", pg_tcp_stack.port, pg.BACKEND_USER, pg_tokens.analyst())
    assert ei.value.sqlstate == pg.INVALID_PASSWORD


# ---------------------------------------------------------------- login

def test_psql_logs_in_as_the_backend_role(pg_stack, pg_tokens, pg_auth) -> None:
    p = pg_stack.psql(pg_tokens.analyst(), "SELECT current_user, session_user, count(*) FROM orders")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "pinhole_app|pinhole_app|5"


@pytest.mark.parametrize("driver", DRIVERS)
def test_driver_logs_in_as_the_backend_role(pg_stack, pg_tokens, pg_auth, driver) -> None:
    with pg.connect(driver, pg_stack.port, "alice", pg_tokens.analyst()) as s:
        assert s.run("SELECT current_user") == [("pinhole_app",)]
        rows = s.run("SELECT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.id")
        assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
        assert rows[0][1] == "ada@example.test"


@pytest.mark.parametrize("method", ["password", "trust"])
def test_other_backend_auth_methods(pg_stack, pg_cluster, pg_tokens, method) -> None:
    """The filter also answers a cleartext-password request and needs no
    password at all under trust."""
    pg_cluster.set_auth(method)
    p = pg_stack.psql(pg_tokens.analyst(), "SELECT current_user")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "pinhole_app"
    with pg.connect("asyncpg", pg_stack.port, "alice", pg_tokens.analyst()) as s:
        assert s.run("SELECT count(*) FROM orders") == [(5,)]


def test_any_startup_user_and_database_become_the_backend_ones(pg_stack, pg_tokens) -> None:
    """The startup user is replaced by backend_user and the database by
    backend_database: asking for another database gets the target's."""
    p = pg.psql(pg_stack.port, "some.body@example.test", pg_tokens.analyst(),
                "SELECT current_user, current_database()", dbname="postgres")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "pinhole_app|orders"


def test_every_signature_algorithm_logs_in(pg_stack, pg_tokens) -> None:
    """RS256 (corp) and ES256 (edge) tokens; the analyst role has no issuer condition."""
    for token in (pg_tokens.analyst(), pg_tokens.edge_analyst()):
        with pg.connect("pg8000", pg_stack.port, "alice", token) as s:
            assert s.run("SELECT count(*) FROM orders") == [(5,)]


BAD_TOKENS = {
    "forged": lambda t: t.keys.forged(),
    "tampered": lambda t: t.keys.tampered(),
    "expired": lambda t: t.keys.expired(),
    "wrong-audience": lambda t: t.keys.wrong_audience(),
    "unknown-issuer": lambda t: t.keys.unknown_issuer(),
    "alg-none": lambda t: t.keys.alg_none(),
    "hs256-confusion": lambda t: t.keys.alg_confusion_hs256(),
    "not-yet-valid": lambda t: t.keys.not_yet_valid(),
    "garbage": lambda t: "not-a-jwt",
    "empty": lambda t: "",
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_bad_token_is_refused_at_login(pg_stack, pg_cluster, pg_tokens, kind) -> None:
    """28P01 "pinhole: …", then the connection ends: no query can run."""
    token = BAD_TOKENS[kind](pg_tokens)
    mark = pg_cluster.log_mark()
    with pg_stack.raw() as c:
        res = c.login("alice", token)
        err = res.error
        assert err is not None, f"login with a {kind} token was not refused: {res.types!r}"
        assert err.get("C") == pg.INVALID_PASSWORD, err
        assert err.get("M", "").startswith("pinhole:"), err
        assert res.closed or c.is_closed(5), "connection stays open after a refused login"
        assert b"Z" not in res.types and b"K" not in res.types, res.types
        assert set(c.auth_requests) <= {pg.AUTH_CLEARTEXT}, c.auth_requests
    assert not pg_cluster.statements_since(mark)


def test_revoked_subject_is_refused_at_login(pg_stack, pg_cluster, pg_tokens) -> None:
    with pg_stack.raw() as c:
        res = c.login("mallory", pg_tokens.revoked())
        err = res.error
        assert err is not None, res.types
        assert err.get("C") == pg.INVALID_AUTHORIZATION, err
        assert err.get("M", "").startswith("pinhole:"), err
        assert res.closed or c.is_closed(5)


@pytest.mark.parametrize("driver", DRIVERS)
def test_drivers_see_the_login_refusal(pg_stack, pg_tokens, driver) -> None:
    with pytest.raises(pg.DbError) as ei:
        pg.connect(driver, pg_stack.port, "alice", pg_tokens.keys.forged())
    assert "pinhole:" in str(ei.value)
    if driver != "psycopg":  # libpq reports no SQLSTATE for a failed connection
        assert ei.value.sqlstate == pg.INVALID_PASSWORD
    with pytest.raises(pg.DbError) as ei:
        pg.connect(driver, pg_stack.port, "mallory", pg_tokens.revoked())
    if driver != "psycopg":
        assert ei.value.sqlstate == pg.INVALID_AUTHORIZATION


def test_psql_sees_the_login_refusal(pg_stack, pg_tokens) -> None:
    p = pg_stack.psql(pg_tokens.keys.expired(), "SELECT 1")
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "pinhole:" in p.stderr
    assert p.stdout.strip() == ""


# ---------------------------------------------------------------- statements

@pytest.mark.parametrize("driver", DRIVERS)
def test_drop_table_is_refused_and_the_session_goes_on(pg_stack, pg_cluster, pg_tokens, driver) -> None:
    mark = pg_cluster.log_mark()
    with pg.connect(driver, pg_stack.port, "alice", pg_tokens.dba()) as s:
        with pytest.raises(pg.DbError) as ei:
            s.run("DROP TABLE orders")
        assert_refused(ei.value, "never-destroy")
        # The session is still usable.
        assert s.run("SELECT count(*) FROM orders") == [(5,)]
    assert pg_cluster.table_exists("public.orders")
    settle(pg_cluster, pg_stack, pg_tokens.analyst())
    assert not ran(pg_cluster, mark, "DROP"), pg_cluster.statements_since(mark)


def test_psql_drop_table_is_refused(pg_stack, pg_cluster, pg_tokens) -> None:
    p = pg_stack.psql(pg_tokens.dba(), "DROP TABLE orders")
    assert p.returncode != 0
    assert "42501" in p.stderr and "pinhole:" in p.stderr and "never-destroy" in p.stderr, p.stderr
    assert pg_cluster.table_exists("public.orders")


def test_psql_session_goes_on_after_a_refusal(pg_stack, pg_tokens) -> None:
    """Without ON_ERROR_STOP psql runs the next command on the same connection."""
    p = pg_stack.psql(pg_tokens.analyst(), ["DELETE FROM orders WHERE id = 1", "SELECT count(*) FROM orders"],
                      stop_on_error=False)
    assert "42501" in p.stderr and "pinhole:" in p.stderr, p.stderr
    assert p.stdout.strip() == "5"


def test_multi_statement_query_is_refused_whole(pg_stack, pg_cluster, pg_tokens) -> None:
    """`SELECT 1; DELETE FROM orders`: nothing runs, not even the SELECT."""
    mark = pg_cluster.log_mark()
    with pg_stack.raw() as c:
        assert pg.login_ok(c.login("alice", pg_tokens.dba()))
        res = c.query("SELECT 1; DELETE FROM orders")
        assert_raw_refused(res, "no-unbounded-writes")
        assert b"T" not in res.types, f"the SELECT ran: {res.types!r}"
        assert c.query("SELECT count(*) FROM orders").rows == [["5"]]
    with pg.PsycopgSession(pg_stack.port, "alice", pg_tokens.dba()) as s:
        with pytest.raises(pg.DbError) as ei:
            s.run("SELECT 1; DELETE FROM orders")  # no parameters: psycopg uses the simple protocol
        assert_refused(ei.value, "no-unbounded-writes")
    p = pg_stack.psql(pg_tokens.dba(), "SELECT 1; DELETE FROM orders")
    assert p.returncode != 0 and "42501" in p.stderr, p.stderr
    assert p.stdout.strip() == ""
    assert pg_cluster.count("public.orders") == 5
    settle(pg_cluster, pg_stack, pg_tokens.analyst())
    assert not ran(pg_cluster, mark, "SELECT 1; DELETE"), pg_cluster.statements_since(mark)
    assert not ran(pg_cluster, mark, "DELETE")


@pytest.mark.parametrize("driver", DRIVERS)
def test_prepared_delete_is_refused(pg_stack, pg_cluster, pg_tokens, driver) -> None:
    """Extended protocol: a named prepared DELETE (psycopg prepare=True,
    pg8000 prepare(), asyncpg prepare()) and an unnamed one with parameters."""
    mark = pg_cluster.log_mark()
    with pg.connect(driver, pg_stack.port, "alice", pg_tokens.analyst()) as s:
        with pytest.raises(pg.DbError) as ei:
            s.prepared("DELETE FROM orders WHERE id = $1", (1,))
        assert_refused(ei.value)
        with pytest.raises(pg.DbError) as ei:
            s.params("DELETE FROM orders WHERE id = $1", (2,))
        assert_refused(ei.value)
        # Allowed prepared statements still work on the same connection.
        assert s.prepared("SELECT count(*) FROM orders WHERE id > $1", (3,)) == [(2,)]
        assert s.params("SELECT item FROM orders WHERE id = $1", (3,)) == [("monitor",)]
    assert pg_cluster.count("public.orders") == 5
    settle(pg_cluster, pg_stack, pg_tokens.analyst())
    assert not ran(pg_cluster, mark, "DELETE"), pg_cluster.statements_since(mark)


def test_refused_parse_fails_bind_and_execute(pg_stack, pg_cluster, pg_tokens) -> None:
    """Raw extended protocol: Parse of a refused statement gets 42501; a
    later Bind/Execute of that statement name fails too; nothing runs."""
    with pg_stack.raw() as c:
        assert pg.login_ok(c.login("alice", pg_tokens.analyst()))
        c.send_raw(pg.parse_message("DELETE FROM orders WHERE id = $1", "evil", (23,)) + pg.sync_message())
        res = c.read_until_ready()
        assert_raw_refused(res)
        c.send_raw(pg.bind_message("evil", "", (b"1",)) + pg.execute_message() + pg.sync_message())
        res = c.read_until_ready()
        assert not res.closed
        assert res.error is not None, f"Bind/Execute of a refused statement did not fail: {res.types!r}"
        assert b"C" not in res.types, res.types
        # Parse + Bind + Execute pipelined in one write: refused as a whole.
        res = c.extended("DELETE FROM orders WHERE id = $1", (b"2",))
        assert_raw_refused(res)
        assert b"C" not in res.types, res.types
        # An allowed statement through the same steps works.
        res = c.extended("SELECT item FROM orders WHERE id = $1", (b"4",))
        assert res.rows == [["cable"]], res.types
    assert pg_cluster.count("public.orders") == 5


def test_refusal_inside_a_transaction_aborts_it(pg_stack, pg_cluster, pg_tokens) -> None:
    """BEGIN; refused → 42501; the next statement gets 25P02 until ROLLBACK."""
    with pg_stack.raw() as c:
        assert pg.login_ok(c.login("alice", pg_tokens.dba()))
        assert c.query("BEGIN").ready_status == "T"
        assert c.query("UPDATE orders SET status = 'paid' WHERE id = 1").error is None
        res = c.query("TRUNCATE orders")
        assert_raw_refused(res, "never-destroy")
        assert res.ready_status == "E", f"transaction not aborted: status {res.ready_status!r}"
        res = c.query("SELECT 1")
        assert res.sqlstate == pg.IN_FAILED_TRANSACTION, res.errors
        assert c.query("ROLLBACK").ready_status == "I"
        assert c.query("SELECT status FROM orders WHERE id = 1").rows == [["open"]]
    with pg.PsycopgSession(pg_stack.port, "alice", pg_tokens.dba()) as s:
        s.run("BEGIN")
        with pytest.raises(pg.DbError) as ei:
            s.run("DROP TABLE customers")
        assert_refused(ei.value, "never-destroy")
        with pytest.raises(pg.DbError) as ei:
            s.run("SELECT 1")
        assert ei.value.sqlstate == pg.IN_FAILED_TRANSACTION
        s.run("ROLLBACK")
        assert s.run("SELECT count(*) FROM customers") == [(3,)]


def test_allowed_writes_run(pg_stack, pg_cluster, pg_tokens) -> None:
    with pg.connect("asyncpg", pg_stack.port, "dana", pg_tokens.dba()) as s:
        s.params("UPDATE orders SET status = $1 WHERE id = $2", ("paid", 2))
        s.run("INSERT INTO orders (id, customer_id, item, amount) VALUES (6, 3, 'lamp', 12.5)")
        with pytest.raises(pg.DbError) as ei:
            s.run("UPDATE orders SET status = 'void'")
        assert_refused(ei.value, "no-unbounded-writes")
    assert pg_cluster.admin("SELECT id, status FROM orders WHERE id IN (1, 2, 6) ORDER BY id") == [
        (1, "open"), (2, "paid"), (6, "open")]


def test_statement_outside_the_roles_rules_is_refused(pg_stack, pg_cluster, pg_tokens) -> None:
    """An analyst may only SELECT orders and customers: secrets (a deny
    rule), an UPDATE (no rule) and a server-file function are refused."""
    with pg.connect("psycopg", pg_stack.port, "alice", pg_tokens.analyst()) as s:
        with pytest.raises(pg.DbError) as ei:
            s.run("SELECT value FROM secrets")
        assert_refused(ei.value, "secrets-off-limits")
        with pytest.raises(pg.DbError) as ei:
            s.run("UPDATE orders SET status = 'paid' WHERE id = 1")
        assert_refused(ei.value)
        with pytest.raises(pg.DbError) as ei:
            s.run("SELECT pg_read_file('/etc/hostname')")
        assert_refused(ei.value, "no-dangerous-functions")
        with pytest.raises(pg.DbError) as ei:
            s.run("WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING *) SELECT * FROM d")
        assert_refused(ei.value)
        with pytest.raises(pg.DbError) as ei:
            s.run("COPY orders TO STDOUT")
        assert_refused(ei.value)
        assert s.run("SELECT count(*) FROM orders") == [(5,)]
    assert pg_cluster.admin("SELECT status FROM orders WHERE id = 1") == [("open",)]


def test_token_without_a_role_logs_in_and_may_run_nothing(pg_stack, pg_tokens) -> None:
    with pg.connect("pg8000", pg_stack.port, "nina", pg_tokens.nobody()) as s:
        with pytest.raises(pg.DbError) as ei:
            s.run("SELECT count(*) FROM orders")
        assert_refused(ei.value)


def test_review_rule_refuses_with_approval_required(pg_stack, pg_cluster, pg_tokens) -> None:
    with pg.connect("psycopg", pg_stack.port, "dana", pg_tokens.dba()) as s:
        with pytest.raises(pg.DbError) as ei:
            s.run("CREATE TABLE audit (id int)")
        assert_refused(ei.value, "ddl-needs-review", text="approval required")
    assert not pg_cluster.table_exists("public.audit")


def test_copy_from_stdin_only_when_allowed(pg_stack, pg_cluster, pg_tokens) -> None:
    with pg.PsycopgSession(pg_stack.port, "dana", pg_tokens.dba()) as s:
        with s.conn.cursor() as cur:
            with cur.copy("COPY orders (id, customer_id, item, amount) FROM STDIN") as copy:
                copy.write_row((7, 1, "chair", 89))
                copy.write_row((8, 2, "lamp", 15))
        assert s.run("SELECT count(*) FROM orders") == [(7,)]
    with pg.PsycopgSession(pg_stack.port, "alice", pg_tokens.analyst()) as s:
        with pytest.raises(psycopg.Error) as ei:
            with s.conn.cursor() as cur:
                with cur.copy("COPY orders (id, customer_id, item, amount) FROM STDIN") as copy:
                    copy.write_row((9, 1, "sofa", 500))
        assert ei.value.sqlstate == pg.INSUFFICIENT_PRIVILEGE, ei.value
        assert str(ei.value.diag.message_primary).startswith("pinhole:")
        # and the session goes on
        assert s.run("SELECT count(*) FROM orders") == [(7,)]
        with pytest.raises(pg.DbError) as ei2:
            s.run("COPY orders TO PROGRAM 'cat > /tmp/pinhole-e2e-orders'")
        assert_refused(ei2.value, "no-server-side-programs")
    assert pg_cluster.count("public.orders") == 7


def test_pipelined_extended_protocol_with_a_refusal(pg_stack, pg_cluster, pg_tokens) -> None:
    """Parse/Bind/Execute ×3 before one Sync, the middle one refused: the
    first runs, the refusal is reported, the server skips the rest up to
    Sync (as for any error), and the session carries on in step."""
    with pg_stack.raw() as c:
        assert pg.login_ok(c.login("alice", pg_tokens.analyst()))
        c.send_raw(b"".join(pg.parse_message(sql) + pg.bind_message() + pg.execute_message() for sql in (
            "SELECT count(*) FROM orders", "DELETE FROM orders WHERE id = 1", "SELECT count(*) FROM customers",
        )) + pg.sync_message())
        res = c.read_until_ready()
        assert res.rows == [["5"]], res.types
        assert [e.get("C") for e in res.errors] == [pg.INSUFFICIENT_PRIVILEGE], res.errors
        assert res.ready_status == "I"
        assert c.query("SELECT count(*) FROM customers").rows == [["3"]]
    with pg.PsycopgSession(pg_stack.port, "alice", pg_tokens.analyst()) as s:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with s.conn.pipeline():
                s.conn.execute("SELECT count(*) FROM orders WHERE id > %s", (1,))
                s.conn.execute("DELETE FROM orders WHERE id = %s", (1,))
                s.conn.execute("SELECT count(*) FROM customers WHERE id > %s", (1,))
        assert s.run("SELECT count(*) FROM orders") == [(5,)]
    assert pg_cluster.count("public.orders") == 5


def test_many_pipelined_simple_queries(pg_stack, pg_tokens) -> None:
    """A hundred Query messages in one write come back as a hundred answers, in order."""
    with pg_stack.raw() as c:
        assert pg.login_ok(c.login("alice", pg_tokens.analyst()))
        c.send_raw(b"".join(pg.query_message(f"SELECT {i} FROM orders LIMIT 1") for i in range(100)))
        rows = [r for _ in range(100) for r in c.read_until_ready().rows]
        assert rows == [[str(i)] for i in range(100)]


def test_large_results_and_an_oversized_query(pg_stack, pg_tokens) -> None:
    """Megabytes of rows pass through; SQL over the classifier's 64 KiB cap is
    refused (never forwarded unread) and the session goes on."""
    with pg_stack.raw() as c:
        assert pg.login_ok(c.login("alice", pg_tokens.analyst()))
        res = c.query("SELECT repeat(item, 200000) FROM orders ORDER BY id")
        assert [len(r[0] or "") for r in res.rows] == [1_600_000, 1_000_000, 1_400_000, 1_000_000, 800_000]
        res = c.query("SELECT 1 FROM orders WHERE item = '" + "x" * 100_000 + "'")
        assert_raw_refused(res)
        assert c.query("SELECT 2").rows == [["2"]]


def test_cancel_request_reaches_the_server(pg_stack, pg_tokens) -> None:
    """A client's cancel (a CancelRequest on a new connection through the
    same listener, with the BackendKeyData it saw) stops its running query."""
    import threading

    with pg.PsycopgSession(pg_stack.port, "alice", pg_tokens.analyst()) as s:
        timer = threading.Timer(0.5, s.conn.cancel)
        timer.start()
        start = time.monotonic()
        try:
            with pytest.raises(pg.DbError) as ei:
                s.run("SELECT pg_sleep(10)")
        finally:
            timer.cancel()
        assert ei.value.sqlstate == "57014", ei.value
        assert time.monotonic() - start < 8
        assert s.run("SELECT 1") == [(1,)]


# ---------------------------------------------------------------- identity over time

def test_token_expiry_ends_the_session(pg_stack, pg_cluster, pg_tokens) -> None:
    """Identity is re-checked per statement: a token living 3 s (policy
    leeway 1 s) works at first; after it expires the next statement fails
    (28000/28P01 class, about the expiry) and the connection is closed."""
    token = pg_tokens.short(3)
    import jwt as pyjwt

    exp = pyjwt.decode(token, options={"verify_signature": False})["exp"]
    with pg_stack.raw() as c, pg.PsycopgSession(pg_stack.port, "sam", token) as s:
        assert pg.login_ok(c.login("sam", token))
        assert c.query("SELECT count(*) FROM orders").rows == [["5"]]
        assert s.run("SELECT count(*) FROM orders") == [(5,)]
        time.sleep(max(0.0, exp + 1 + 1.5 - time.time()))  # past exp + leeway
        mark = pg_cluster.log_mark()
        marker = f"after-expiry-{uuid.uuid4().hex}"
        res = c.query(f"SELECT '{marker}' FROM orders")
        err = res.error
        assert err is not None, f"statement after expiry was not refused: {res.types!r}"
        assert err.get("C", "").startswith("28"), err
        assert "expir" in err.get("M", "").lower(), err
        assert res.closed or c.is_closed(5), "connection stays open after expiry"
        with pytest.raises(pg.DbError) as ei:
            s.run(f"SELECT '{marker}' FROM customers")
        assert (ei.value.sqlstate or "28").startswith("28") or "closed" in ei.value.message, ei.value
        settle(pg_cluster, pg_stack, pg_tokens.analyst())
        assert not [st for st in pg_cluster.statements_since(mark) if marker in st]


# ---------------------------------------------------------------- the password stays secret

@pytest.mark.usefixtures("pg_auth")
def test_the_caller_never_sees_the_backend_password(pg_stack, pg_cluster, pg_tokens) -> None:
    """Everything a client receives during login, queries, a refusal and an
    error: no form of the password (raw, md5, SCRAM keys), and no
    authentication exchange but the cleartext request for its token."""
    forms = pg_cluster.password_forms()
    with pg_stack.raw() as c:
        res = c.login("alice", pg_tokens.analyst())
        assert pg.login_ok(res), res.errors
        assert set(c.auth_requests) <= {pg.AUTH_CLEARTEXT, pg.AUTH_OK}, c.auth_requests
        assert pg.AUTH_OK in c.auth_requests
        c.query("SELECT current_user, current_setting('application_name')")
        c.query("SHOW password_encryption")
        c.query("SELECT * FROM secrets")
        c.query("DROP TABLE orders")
        c.query("SELEC broken syntax")
        c.query("SELECT * FROM pg_catalog.pg_authid")
        c.extended("SELECT $1::text", (b"x",))
        received = bytes(c.received)
    for name, form in forms.items():
        assert form not in received, f"the client received the backend password as {name}"
    assert b"SCRAM-SHA-256" not in received
    # Nor does Envoy's log carry it.
    log = pg_stack.envoy.log_text().encode()
    for name, form in forms.items():
        if len(form) >= 12:
            assert form not in log, f"Envoy's log holds the backend password as {name}"


def test_the_real_password_is_not_a_token(pg_stack, pg_cluster, pg_tokens) -> None:
    """Through the filter the database's own password is just a malformed token."""
    with pg_stack.raw() as c:
        res = c.login(pg.BACKEND_USER, pg_cluster.password)
        assert res.error is not None and res.error.get("C") == pg.INVALID_PASSWORD, res.types


# ---------------------------------------------------------------- pgbench

@pytest.mark.parametrize("mode", ["simple", "prepared"])
def test_pgbench_select_only_through_the_filter(pg_stack, pg_cluster, pg_tokens, mode) -> None:
    pg_cluster.pgbench_init()
    r = pg.pgbench(pg_stack.port, "bench", pg_tokens.bench(), mode=mode, seconds=2, clients=2)
    assert r.returncode == 0, f"pgbench -M {mode} failed:\n{r.stdout}\n{r.stderr}"
    assert pg.pgbench_tps(r.stdout) > 0
    assert "number of failed transactions: 0" in r.stdout, r.stdout


def test_pgbench_tpcb_through_the_filter(pg_stack, pg_cluster, pg_tokens) -> None:
    """The built-in TPC-B-like script: BEGIN, UPDATEs with WHERE, SELECT, INSERT, END."""
    pg_cluster.pgbench_init()
    r = pg.pgbench(pg_stack.port, "bench", pg_tokens.bench(), mode="prepared", select_only=False,
                   transactions=20, clients=1)
    assert r.returncode == 0, f"pgbench tpcb failed:\n{r.stdout}\n{r.stderr}"
    assert "number of transactions actually processed: 20/20" in r.stdout, r.stdout


def test_pgbench_identity_is_checked(pg_stack, pg_cluster, pg_tokens) -> None:
    """pgbench as an analyst: logged in, but its statements are refused."""
    pg_cluster.pgbench_init()
    r = pg.pgbench(pg_stack.port, "alice", pg_tokens.analyst(), transactions=1, clients=1)
    assert r.returncode != 0
    assert "pinhole:" in r.stderr + r.stdout
