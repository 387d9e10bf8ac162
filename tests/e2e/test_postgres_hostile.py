"""Hostile bytes on the PostgreSQL listener (issue 3): whatever a client
sends, Pinhole must not crash Envoy, must not run SQL it did not decide, and
must leave the listener serving the next good client.

Every test sends its bytes with the raw client of pg.py, then (autouse
fixture) checks that Envoy still answers /ready and that a good login and
query still work. SQL carried by hostile bytes holds a unique marker; the
server's statement log (log_statement = all) shows it never ran.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid
from collections.abc import Iterator

import pytest

import pg


@pytest.fixture(autouse=True)
def still_serving(pg_stack, pg_fresh, pg_tokens) -> Iterator[None]:
    assert pg_stack.healthy()
    yield
    assert pg_stack.envoy.proc is not None and pg_stack.envoy.proc.poll() is None, \
        f"Envoy died:\n{pg_stack.envoy.log_tail()}"
    assert pg_stack.healthy(), "Envoy's /ready no longer answers LIVE"
    with pg_stack.raw() as c:
        assert pg.login_ok(c.login("alice", pg_tokens.analyst())), "a good login fails after the hostile client"
        assert c.query("SELECT current_user").rows == [["pinhole_app"]]


class Marker:
    """A unique SQL text, and proof from the server log that it never ran."""

    def __init__(self, cluster: pg.Cluster, stack, tokens) -> None:
        self.cluster = cluster
        self.stack = stack
        self.tokens = tokens
        self.tag = f"hostile-{uuid.uuid4().hex}"
        self.mark = cluster.log_mark()

    @property
    def sql(self) -> str:
        return f"SELECT '{self.tag}' FROM orders"

    def never_ran(self) -> None:
        # A statement of a good session after it: once that is logged,
        # anything the hostile client got through would be logged too.
        settle = f"settle-{uuid.uuid4().hex}"
        with self.stack.raw() as c:
            assert pg.login_ok(c.login("alice", self.tokens.analyst()))
            c.query(f"SELECT '{settle}' FROM orders LIMIT 1")
        assert self.cluster.wait_for_statement(self.mark, settle)
        leaked = [s for s in self.cluster.statements_since(self.mark) if self.tag in s]
        assert not leaked, f"hostile SQL reached the server: {leaked}"


@pytest.fixture
def marker(pg_cluster, pg_stack, pg_tokens) -> Marker:
    return Marker(pg_cluster, pg_stack, pg_tokens)


def logged_in(stack, tokens) -> pg.RawPg:
    c = stack.raw()
    res = c.login("alice", tokens.analyst())
    assert pg.login_ok(res), res.errors
    return c


def assert_closed(c: pg.RawPg, what: str, timeout: float = 5) -> pg.Result:
    try:
        res = c.wait_closed(timeout)
    except TimeoutError as e:
        raise AssertionError(f"{what}: connection still open after {timeout}s ({e})") from None
    assert b"Z" not in res.types, f"{what}: got ReadyForQuery: {res.types!r}"
    assert b"D" not in res.types, f"{what}: got rows: {res.types!r}"
    return res


# ---------------------------------------------------------------- before startup

def test_http_request_to_the_postgres_port(pg_stack, marker) -> None:
    with pg_stack.raw() as c:
        c.send_raw(f"GET /?q={marker.tag} HTTP/1.1\r\nHost: db\r\n\r\n".encode())
        assert_closed(c, "HTTP request")
    marker.never_ran()


@pytest.mark.parametrize("length", [0, 3])
def test_startup_length_below_4(pg_stack, length) -> None:
    with pg_stack.raw() as c:
        c.send_raw(struct.pack("!I", length) + b"\x00\x03\x00\x00user\x00x\x00\x00")
        assert_closed(c, f"startup length {length}")


@pytest.mark.parametrize("length", [0x7FFFFFF0, 0x7FFFFFFF, 0xFFFFFFFF, 10_000_000])
def test_startup_length_near_2_31(pg_stack, length) -> None:
    """A huge declared length is refused at once, not waited for."""
    with pg_stack.raw() as c:
        c.send_raw(struct.pack("!II", length, pg.PROTOCOL_3) + b"user\x00alice\x00")
        assert_closed(c, f"startup length {length:#x}")


def test_truncated_startup_then_close(pg_stack) -> None:
    startup = pg.startup_message("alice", pg.DATABASE)
    for cut in (1, 4, 7, len(startup) - 1):
        with pg_stack.raw() as c:
            c.send_raw(startup[:cut])
            c.sock.shutdown(socket.SHUT_WR)
            assert_closed(c, f"startup cut at {cut}")


def test_truncated_startup_then_silence_is_not_a_login(pg_stack) -> None:
    """Half a StartupMessage and nothing more: no authentication request comes back."""
    with pg_stack.raw() as c:
        c.send_raw(pg.startup_message("alice", pg.DATABASE)[:10])
        with pytest.raises(TimeoutError):
            c.read_message(timeout=1)


def test_message_before_startup(pg_stack, marker) -> None:
    """A Query as the very first message (its type byte read as a length)."""
    with pg_stack.raw() as c:
        c.send_raw(pg.query_message(marker.sql))
        assert_closed(c, "Query before startup")
    marker.never_ran()


def test_unknown_protocol_version(pg_stack) -> None:
    body = struct.pack("!I", 0x00020000) + b"user\x00alice\x00\x00"
    with pg_stack.raw() as c:
        c.send_raw(struct.pack("!I", len(body) + 4) + body)
        assert_closed(c, "protocol 2.0 startup")


def test_cancel_request_with_a_made_up_key(pg_stack) -> None:
    with pg_stack.raw() as c:
        c.send_raw(pg.cancel_request(12345, 67890))
        assert_closed(c, "CancelRequest")


def test_ssl_request_then_plaintext(pg_stack, pg_tokens) -> None:
    """SSLRequest goes to the server (ssl=off): 'N'; the client goes on in
    clear and logs in with its token."""
    with pg_stack.raw() as c:
        c.send_raw(pg.ssl_request())
        assert c.read_byte() == b"N"
        res = c.login("alice", pg_tokens.analyst())
        assert pg.login_ok(res), res.errors
        assert c.query("SELECT current_user").rows == [["pinhole_app"]]


def test_libpq_sslmode_prefer(pg_stack, pg_tokens) -> None:
    """libpq's default (sslmode=prefer) sends an SSLRequest first."""
    p = pg.psql(pg_stack.port, "alice", pg_tokens.analyst(), "SELECT count(*) FROM orders", sslmode="prefer")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "5"
    with pg.PsycopgSession(pg_stack.port, "alice", pg_tokens.analyst(), sslmode="prefer") as s:
        assert s.run("SELECT count(*) FROM customers") == [(3,)]


def test_ssl_request_twice(pg_stack) -> None:
    """A second SSLRequest after the 'N' is a protocol violation."""
    with pg_stack.raw() as c:
        c.send_raw(pg.ssl_request())
        assert c.read_byte() == b"N"
        c.send_raw(pg.ssl_request())
        res = assert_closed(c, "second SSLRequest")
        assert b"R" not in res.types


def test_gssenc_request(pg_stack, pg_tokens) -> None:
    """GSSENCRequest. Debian's server is built with GSSAPI and answers 'G'
    (it would start GSS encryption, which the filter cannot read through).
    Acceptable: the client gets 'N' and goes on in clear with its token, or
    an ErrorResponse and the connection ends promptly. Not acceptable: a
    'G' reaching the client, or a connection left hanging."""
    with pg_stack.raw() as c:
        c.send_raw(pg.gssenc_request())
        try:
            answer = c.peek_byte(timeout=5)
        except pg.PgClosed:
            return
        assert answer != b"G", "the server's GSS encryption offer reached the client"
        if answer == b"N":
            c.read_byte()
            res = c.login("alice", pg_tokens.analyst())
            assert pg.login_ok(res), res.errors
            return
        assert answer == b"E", answer
        res = assert_closed(c, "GSSENCRequest refused")
        assert res.errors, res.types


# ---------------------------------------------------------------- during authentication

def test_query_instead_of_the_password(pg_stack, marker) -> None:
    with pg_stack.raw() as c:
        c.startup("alice")
        t, payload = c.read_message()
        assert (t, payload[:4]) == (b"R", struct.pack("!I", pg.AUTH_CLEARTEXT))
        c.send_raw(pg.query_message(marker.sql))
        res = assert_closed(c, "Query instead of PasswordMessage")
        assert all(e.get("C", "").startswith(("08", "28")) for e in res.errors), res.errors
    marker.never_ran()


def test_query_pipelined_before_authentication(pg_stack, pg_tokens, marker) -> None:
    """Startup and a Query in one write (no password in between)."""
    with pg_stack.raw() as c:
        c.send_raw(pg.startup_message("alice", pg.DATABASE) + pg.query_message(marker.sql))
        assert_closed(c, "Startup + Query before authentication")
    marker.never_ran()


def test_password_and_query_pipelined_with_a_bad_token(pg_stack, pg_tokens, marker) -> None:
    with pg_stack.raw() as c:
        c.send_raw(pg.startup_message("alice", pg.DATABASE))
        c.read_message()
        c.send_raw(pg.password_message(pg_tokens.keys.forged()) + pg.query_message(marker.sql))
        res = assert_closed(c, "forged token + Query")
        assert res.errors and res.errors[0].get("C") == pg.INVALID_PASSWORD, res.errors
    marker.never_ran()


def test_sasl_response_instead_of_a_password(pg_stack) -> None:
    """A client that tries SCRAM with the filter's cleartext request."""
    with pg_stack.raw() as c:
        c.startup("alice")
        c.read_message()
        first = b"n,,n=,r=abcdefghijklmnop"
        c.send_raw(pg.msg(b"p", b"SCRAM-SHA-256\x00" + struct.pack("!i", len(first)) + first))
        res = assert_closed(c, "SASLInitialResponse")
        assert res.errors and res.errors[0].get("C", "").startswith(("08", "28")), res.errors


def test_huge_password_message(pg_stack) -> None:
    with pg_stack.raw() as c:
        c.startup("alice")
        c.read_message()
        c.send_raw(b"p" + struct.pack("!I", 0x7FFFFFF0) + b"eyJ")
        assert_closed(c, "2 GiB PasswordMessage")


def test_oversized_token(pg_stack) -> None:
    """A 1 MiB "token" is refused (not verified, not buffered forever)."""
    with pg_stack.raw() as c:
        c.startup("alice")
        c.read_message()
        try:
            c.send_raw(pg.password_message("eyJ" + "A" * (1 << 20)))
        except (BrokenPipeError, ConnectionResetError):
            return
        res = assert_closed(c, "1 MiB token", timeout=10)
        assert all(e.get("C", "").startswith(("08", "28")) for e in res.errors), res.errors


def test_startup_options_cannot_change_the_session(pg_stack, pg_tokens) -> None:
    """`options=-c search_path=…` (or `role`) in the startup packet would
    change what unqualified names mean to the server behind the policy's
    back: the filter drops it or refuses the login."""
    with pg_stack.raw() as c:
        res = c.login("alice", pg_tokens.analyst(), options="-c search_path=pg_catalog -c role=postgres")
        if not pg.login_ok(res):
            assert res.errors, res.types
            return
        assert c.query("SHOW search_path").rows == [['"$user", public']]
        assert c.query("SELECT current_user").rows == [["pinhole_app"]]


def test_startup_replication_parameter(pg_stack, pg_tokens, marker) -> None:
    """A replication connection would take replication commands, which the
    SQL classifier does not understand: refused or dropped."""
    with pg_stack.raw() as c:
        res = c.login("alice", pg_tokens.analyst(), replication="database")
        if pg.login_ok(res):
            r = c.query("IDENTIFY_SYSTEM")
            assert r.error is not None, f"IDENTIFY_SYSTEM ran: {r.types!r}"
        else:
            assert res.errors or res.closed


# ---------------------------------------------------------------- after login

def test_huge_query_length_after_login(pg_stack, pg_tokens) -> None:
    with logged_in(pg_stack, pg_tokens) as c:
        c.send_raw(b"Q" + struct.pack("!I", 0x7FFFFFF0) + b"SELECT 1")
        assert_closed(c, "2 GiB Query")


def test_query_length_below_4_after_login(pg_stack, pg_tokens) -> None:
    with logged_in(pg_stack, pg_tokens) as c:
        c.send_raw(b"Q" + struct.pack("!I", 2) + b"SELECT 1\x00")
        assert_closed(c, "Query length 2")


@pytest.mark.parametrize("length", [0xFFFFFFFF, 0xFFFFFFFC, 0x80000000, 0x7FFFFFFF + 5])
def test_query_length_near_2_32_after_login(pg_stack, pg_tokens, marker, length) -> None:
    """A declared length near 2^32 (a negative int32 to a signed reader) is
    refused at once, not waited for, and nothing after it is read as SQL."""
    with logged_in(pg_stack, pg_tokens) as c:
        c.send_raw(b"Q" + struct.pack("!I", length) + pg.query_message(marker.sql))
        assert_closed(c, f"Query length {length:#x}")
    marker.never_ran()


@pytest.mark.parametrize("length", [0, 3, 0xFFFFFFFF, 0x80000000])
def test_password_message_length_out_of_range(pg_stack, marker, length) -> None:
    with pg_stack.raw() as c:
        c.startup("alice")
        c.read_message()
        c.send_raw(b"p" + struct.pack("!I", length) + pg.query_message(marker.sql))
        assert_closed(c, f"PasswordMessage length {length:#x}")
    marker.never_ran()


@pytest.mark.parametrize("kind", [b"P", b"B", b"E", b"D"])
def test_length_below_4_for_extended_messages(pg_stack, pg_tokens, marker, kind) -> None:
    with logged_in(pg_stack, pg_tokens) as c:
        c.send_raw(kind + struct.pack("!I", 1) + pg.query_message(marker.sql))
        assert_closed(c, f"{kind!r} length 1")
    marker.never_ran()


def test_truncated_parse_then_close(pg_stack, pg_tokens, marker) -> None:
    """Half a Parse (of a refused statement, then of an allowed one) and the
    client goes away: nothing runs."""
    for sql in (f"DROP TABLE orders -- {marker.tag}", marker.sql):
        with logged_in(pg_stack, pg_tokens) as c:
            frame = pg.parse_message(sql) + pg.bind_message() + pg.execute_message() + pg.sync_message()
            c.send_raw(frame[:12])
            time.sleep(0.1)
            c.send_raw(frame[12:30])
            c.sock.shutdown(socket.SHUT_WR)
            assert_closed(c, "truncated Parse")
    marker.never_ran()
    assert marker.cluster.table_exists("public.orders")


def test_bytes_after_terminate_in_a_later_write(pg_stack, pg_tokens, marker) -> None:
    """Terminate, then (a moment later, in another segment) a Query: the
    filter has ended the session; the Query never reaches the server."""
    with logged_in(pg_stack, pg_tokens) as c:
        c.send_raw(pg.terminate_message())
        time.sleep(0.1)
        try:
            c.send_raw(pg.query_message(marker.sql) + pg.sync_message())
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert_closed(c, "Query after Terminate")
    marker.never_ran()


def test_terminate_with_a_body(pg_stack, pg_tokens, marker) -> None:
    """A Terminate whose length claims a body carrying SQL."""
    with logged_in(pg_stack, pg_tokens) as c:
        c.send_raw(pg.msg(b"X", pg.query_message(marker.sql)))
        assert_closed(c, "Terminate with a body")
    marker.never_ran()


def test_truncated_query_then_close(pg_stack, pg_tokens, marker) -> None:
    with logged_in(pg_stack, pg_tokens) as c:
        frame = pg.query_message(marker.sql)
        c.send_raw(frame[: len(frame) - 3])
        time.sleep(0.2)
        c.sock.shutdown(socket.SHUT_WR)
        assert_closed(c, "truncated Query")
    marker.never_ran()


def test_bytes_after_terminate(pg_stack, pg_tokens, marker) -> None:
    with logged_in(pg_stack, pg_tokens) as c:
        c.send_raw(pg.terminate_message() + pg.query_message(marker.sql))
        assert_closed(c, "bytes after Terminate")
    marker.never_ran()


def test_unknown_message_type(pg_stack, pg_tokens, marker) -> None:
    with logged_in(pg_stack, pg_tokens) as c:
        c.send_raw(pg.msg(b"!", b"\x00" * 16) + pg.query_message(marker.sql))
        res = c.read_until_ready(timeout=5)
        assert b"D" not in res.types, res.types
    marker.never_ran()


def test_garbage_after_login(pg_stack, pg_tokens) -> None:
    with logged_in(pg_stack, pg_tokens) as c:
        c.send_raw(bytes(range(256)) * 4)
        assert_closed(c, "garbage")


def test_function_call_is_refused(pg_stack, pg_cluster, pg_tokens) -> None:
    """FunctionCall ('F') bypasses SQL: refused. pg_advisory_lock(bigint)
    would leave a lock visible in pg_locks while the session lives."""
    oid = int(pg_cluster.scalar("SELECT 'pg_advisory_lock(bigint)'::regprocedure::oid"))
    key = 4242_4242
    with logged_in(pg_stack, pg_tokens) as c:
        c.send_raw(pg.function_call_message(oid, (str(key).encode(),)) + pg.sync_message())
        try:
            res = c.read_until_ready(timeout=5)
        except TimeoutError:
            res = pg.Result()
        assert b"V" not in res.types, f"the function ran: {res.types!r}"
        held = pg_cluster.scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s", (key,))
        assert held == 0, "the FunctionCall took the advisory lock"
        if not res.closed:
            assert res.error is not None and res.error.get("C") == pg.INSUFFICIENT_PRIVILEGE, res.types
            assert res.error.get("M", "").startswith("pinhole:"), res.error


def test_copy_data_without_copy(pg_stack, pg_tokens, pg_cluster) -> None:
    """CopyData / CopyDone outside a COPY: the server ignores or refuses
    them; nothing is written."""
    with logged_in(pg_stack, pg_tokens) as c:
        c.send_raw(pg.copy_data(b"9\t1\tsofa\t500\n") + pg.copy_done() + pg.sync_message())
        if not c.is_closed(1):
            c.query("SELECT 1")
    assert pg_cluster.count("public.orders") == 5


def test_query_inside_copy_in(pg_stack, pg_cluster, pg_tokens) -> None:
    """A Query sent in the middle of an allowed COPY FROM STDIN is not run
    (the server drops the connection: protocol synchronisation lost)."""
    with pg_stack.raw() as c:
        assert pg.login_ok(c.login("dana", pg_tokens.dba()))
        c.send_raw(pg.query_message("COPY orders (id, customer_id, item, amount) FROM STDIN"))
        tag, _ = c.read_message()
        assert tag == b"G", tag
        c.send_raw(pg.copy_data(b"10\t1\tx\t1\n") + pg.query_message("DROP TABLE customers CASCADE")
                   + pg.copy_done())
        res = c.read_until_ready()
        assert b"DROP TABLE\x00" not in bytes(c.received), res.types
    assert pg_cluster.table_exists("public.customers")
    assert pg_cluster.count("public.orders") == 5


def test_refused_copy_then_its_data(pg_stack, pg_cluster, pg_tokens) -> None:
    """An analyst's COPY FROM STDIN is refused; the CopyData / CopyDone the
    client sends anyway are ignored and the session stays in step."""
    with logged_in(pg_stack, pg_tokens) as c:
        c.send_raw(pg.query_message("COPY orders (id, customer_id, item, amount) FROM STDIN")
                   + pg.copy_data(b"11\t1\tx\t1\n") + pg.copy_done()
                   + pg.query_message("SELECT count(*) FROM orders"))
        assert c.read_until_ready().sqlstate == pg.INSUFFICIENT_PRIVILEGE
        assert c.read_until_ready().rows == [["5"]]
    assert pg_cluster.count("public.orders") == 5


def test_nul_inside_a_query(pg_stack, pg_cluster, pg_tokens) -> None:
    """`SELECT 1\\0DROP TABLE orders`: the server would read only up to the NUL,
    the filter must not read more or less than it; refused or harmless."""
    with logged_in(pg_stack, pg_tokens) as c:
        _smuggle_bytes(c, b"SELECT 1\x00DROP TABLE orders")
        assert b"DROP TABLE\x00" not in bytes(c.received)
    assert pg_cluster.table_exists("public.orders")


def test_many_bad_connections_then_good(pg_stack, pg_tokens) -> None:
    """Fifty hostile connections in a row, some left open: the listener stays healthy."""
    leftovers = []
    for i in range(50):
        c = pg_stack.raw()
        kind = i % 5
        if kind == 0:
            c.send_raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a TLS ClientHello
        elif kind == 1:
            c.send_raw(struct.pack("!I", 0x7FFFFFFF))
        elif kind == 2:
            c.send_raw(pg.startup_message("alice", pg.DATABASE))
        elif kind == 3:
            c.send_raw(pg.startup_message("alice", pg.DATABASE) + pg.password_message("x" * 100))
        else:
            c.send_raw(b"\x00" * 8)
        if i % 10 == 2:
            leftovers.append(c)
        else:
            c.close()
    for c in leftovers:
        c.close()


# ---------------------------------------------------------------- parser desynchronisation
#
# The filter decides on its own parse of the SQL text; the server runs its
# own. Anything that makes the server read the same bytes differently
# (client_encoding, standard_conforming_strings, search_path) must be
# refused, or noticed and acted on, or a refused statement can ride inside
# an allowed one.

SMUGGLED_DROP = "DROP TABLE orders"


def _smuggle(c: pg.RawPg, sql: str) -> pg.Result:
    return _smuggle_bytes(c, sql.encode())


def _smuggle_bytes(c: pg.RawPg, sql: bytes) -> pg.Result:
    c.send_raw(pg.msg(b"Q", sql + b"\x00"))
    try:
        return c.read_until_ready()
    except (TimeoutError, OSError):
        return pg.Result(closed=True)


def _assert_not_dropped(cluster: pg.Cluster, received: bytes, what: str) -> None:
    """The table survived, and no DROP TABLE completed (its CommandComplete
    tag never came back): the statement log cannot tell, since a smuggled
    DROP is logged inside the text of the allowed statement."""
    assert cluster.table_exists("public.orders"), f"{what}: DROP TABLE orders ran on the server"
    assert b"DROP TABLE\x00" not in received, f"{what}: a DROP TABLE completed"


def test_client_encoding_in_the_startup_packet_must_be_utf8(pg_stack, pg_tokens) -> None:
    for enc in ("SJIS", "GBK", "BIG5"):
        with pg_stack.raw() as c:
            res = c.login("alice", pg_tokens.analyst(), client_encoding=enc)
            assert not pg.login_ok(res), f"login with client_encoding={enc} was accepted"


def test_invalid_utf8_is_refused(pg_stack, pg_cluster, pg_tokens) -> None:
    with logged_in(pg_stack, pg_tokens) as c:
        res = _smuggle_bytes(c, b"SELECT E'\x95\x5c' ; DROP TABLE orders; -- '")
        assert b"D" not in res.types
    _assert_not_dropped(pg_cluster, bytes(c.received), "invalid UTF-8")


@pytest.mark.parametrize("sql", [
    "SELECT 'a\\'; DROP TABLE orders; --'",           # backslash is literal under standard_conforming_strings
    "SELECT 1 AS x$$; DROP TABLE orders; --$$",        # `$` inside an identifier is not a dollar quote
    "SELECT 1 /* /* */ ; DROP TABLE orders; /* */ */",  # nested comments (the server nests them)
    "SELECT U&'\\0027'; DROP TABLE orders; --'",
])
def test_quoting_corner_cases_hide_nothing(pg_stack, pg_cluster, pg_tokens, sql) -> None:
    with logged_in(pg_stack, pg_tokens) as c:
        _smuggle(c, sql)
    _assert_not_dropped(pg_cluster, bytes(c.received), sql)


@pytest.mark.parametrize("switch", [
    "SELECT set_config('client_encoding', 'SJIS', false)",
    "SELECT pg_catalog.set_config('client_encoding', 'SJIS', false)",
])
def test_client_encoding_switch_cannot_smuggle_sql(pg_stack, pg_cluster, pg_tokens, switch) -> None:
    """An analyst (SELECT only) switches the session to SJIS with a SELECT of
    set_config(), then sends valid UTF-8 whose bytes pair up differently in
    SJIS: `E'ぁ\\'` is one string to a UTF-8 reader, but SJIS reads the
    backslash as the second byte of a character, the quote ends the string,
    and the DROP after it runs."""
    with logged_in(pg_stack, pg_tokens) as c:
        _smuggle(c, switch)
        _smuggle(c, "SELECT E'ぁ\\' ; DROP TABLE orders; -- '")
    _assert_not_dropped(pg_cluster, bytes(c.received), switch)


def test_set_client_encoding_by_a_role_allowed_set(pg_stack, pg_cluster, pg_tokens) -> None:
    """The dba role may run `set` statements; never-destroy still holds."""
    with pg_stack.raw() as c:
        assert pg.login_ok(c.login("dana", pg_tokens.dba()))
        _smuggle(c, "SET client_encoding = 'SJIS'")
        _smuggle(c, "SELECT E'ぁ\\' ; DROP TABLE orders; -- '")
    _assert_not_dropped(pg_cluster, bytes(c.received), "SET client_encoding")


def test_standard_conforming_strings_switch_cannot_smuggle_sql(pg_stack, pg_cluster, pg_tokens) -> None:
    """With standard_conforming_strings off, `'a\\''` ends after `\\'` for the
    server, while a reader assuming on sees `''` and the string go on."""
    with logged_in(pg_stack, pg_tokens) as c:
        _smuggle(c, "SELECT set_config('standard_conforming_strings', 'off', false)")
        _smuggle(c, "SELECT 'a\\''; DROP TABLE orders; --'")
    _assert_not_dropped(pg_cluster, bytes(c.received), "standard_conforming_strings=off")


def test_search_path_switch_cannot_redirect_table_names(pg_stack, pg_cluster, pg_tokens) -> None:
    """The policy reads an unqualified `orders` as public.orders; an analyst
    must not make the server read private.orders instead."""
    pg_cluster.admin("DROP SCHEMA IF EXISTS private CASCADE")
    pg_cluster.admin(f"CREATE SCHEMA private AUTHORIZATION {pg.BACKEND_USER}")
    pg_cluster.admin("CREATE TABLE private.orders (id int, secret text)")
    pg_cluster.admin("INSERT INTO private.orders VALUES (1, 'private-row-not-for-analysts')")
    pg_cluster.admin(f"ALTER TABLE private.orders OWNER TO {pg.BACKEND_USER}")
    try:
        with logged_in(pg_stack, pg_tokens) as c:
            _smuggle(c, "SELECT set_config('search_path', 'private', false)")
            _smuggle(c, "SELECT * FROM orders")
            assert b"private-row-not-for-analysts" not in bytes(c.received), \
                "an analyst read private.orders through `orders` after set_config('search_path')"
    finally:
        pg_cluster.admin("DROP SCHEMA IF EXISTS private CASCADE")
