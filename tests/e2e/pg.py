"""PostgreSQL for the end-to-end tests (and scripts/bench-postgres.py): a
throwaway PostgreSQL 15 cluster, the Postgres test policy, and a raw wire
client that records every byte it receives.

    cluster = Cluster(workdir).start()       # initdb + postgres on a free loopback port
    cluster.set_auth("md5")                  # pg_hba method for TCP logins (and the stored password form)
    cluster.reset_data()                     # orders / customers / secrets, seeded
    cluster.admin("SELECT count(*) FROM orders")   # as the superuser over the unix socket
    ...
    cluster.stop()                           # pg_ctl stop -m immediate, by the postmaster's PID

    with RawPg("127.0.0.1", port) as c:      # hand-built frontend messages
        c.login("alice", jwt)
        res = c.query("SELECT 1")

The cluster runs from Debian's PostgreSQL 15 server binaries
(/usr/lib/postgresql/15/bin, or $PINHOLE_PG_BIN), installed by
scripts/setup.sh. initdb refuses to run as root: as root every server
process runs as the `postgres` user (the Debian package creates it) in a
directory owned by it; otherwise as the current user.

No pytest dependency: the benchmark script uses it too.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import hmac
import base64
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# The policy target, its backend role and the variable holding its password.
TARGET = "orders-db"
BACKEND_USER = "pinhole_app"
DATABASE = "orders"
PASSWORD_ENV = "PINHOLE_E2E_PG_PASSWORD"
SUPERUSER = "postgres"

# SQLSTATEs of the filter contract.
INSUFFICIENT_PRIVILEGE = "42501"  # a refused statement
INVALID_PASSWORD = "28P01"  # bad / forged / expired token at login
INVALID_AUTHORIZATION = "28000"  # revoked subject; identity no longer valid
IN_FAILED_TRANSACTION = "25P02"

AUTH_METHODS = ("scram-sha-256", "md5", "password", "trust")

SETUP_HINT = "run scripts/setup.sh (it installs postgresql-15 and pgbench with apt-get)"


class PgUnavailable(RuntimeError):
    """PostgreSQL binaries (or the user to run them as) are missing."""


# ---------------------------------------------------------------- binaries

def pg_bin() -> Path:
    """Directory of the PostgreSQL 15 server binaries; raises PgUnavailable
    naming scripts/setup.sh when something is missing."""
    bindir = Path(os.environ.get("PINHOLE_PG_BIN") or "/usr/lib/postgresql/15/bin")
    missing = [str(bindir / b) for b in ("initdb", "pg_ctl", "postgres", "pgbench") if not (bindir / b).exists()]
    if missing:
        raise PgUnavailable(f"PostgreSQL 15 binaries missing: {', '.join(missing)}; {SETUP_HINT}")
    return bindir


def psql_binary() -> str:
    bindir = pg_bin()
    if (bindir / "psql").exists():
        return str(bindir / "psql")
    found = shutil.which("psql")
    if not found:
        raise PgUnavailable(f"psql not found; {SETUP_HINT}")
    return found


def pgbench_binary() -> str:
    return str(pg_bin() / "pgbench")


def free_port() -> int:
    """A port the kernel considers free right now (PostgreSQL needs a
    number up front; Cluster.start retries on a collision)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> tuple[int, int, str] | None:
    """(uid, gid, name) to run the server as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("PINHOLE_PG_USER", "postgres")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise PgUnavailable(
            f"running as root, and initdb refuses root: the user `{name}` to run PostgreSQL as "
            f"does not exist; {SETUP_HINT} (the Debian package creates it) or set PINHOLE_PG_USER"
        ) from None
    return pw.pw_uid, pw.pw_gid, name


def _pdeathsig(sig: int) -> Any:
    """preexec_fn: deliver `sig` to the child when the test process dies
    (set after the uid change, which clears it)."""

    def fn() -> None:
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, int(sig))  # PR_SET_PDEATHSIG
        except OSError:
            pass

    return fn


# ---------------------------------------------------------------- the cluster

SCHEMA_SQL = """
DROP TABLE IF EXISTS public.orders, public.customers, public.secrets CASCADE;
CREATE TABLE public.customers (
    id    integer PRIMARY KEY,
    name  text NOT NULL,
    email text NOT NULL
);
CREATE TABLE public.orders (
    id          integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES public.customers (id),
    item        text NOT NULL,
    amount      numeric(10, 2) NOT NULL,
    status      text NOT NULL DEFAULT 'open'
);
CREATE TABLE public.secrets (
    id    integer PRIMARY KEY,
    name  text NOT NULL,
    value text NOT NULL
);
INSERT INTO public.customers VALUES
    (1, 'Ada', 'ada@example.test'),
    (2, 'Grace', 'grace@example.test'),
    (3, 'Edsger', 'edsger@example.test');
INSERT INTO public.orders (id, customer_id, item, amount) VALUES
    (1, 1, 'keyboard', 49.90),
    (2, 1, 'mouse', 19.00),
    (3, 2, 'monitor', 229.00),
    (4, 3, 'cable', 5.50),
    (5, 2, 'desk', 310.00);
INSERT INTO public.secrets VALUES
    (1, 'stripe', 'sk_live_not_for_you'),
    (2, 'root-ca', 'pem-pem-pem');
"""

SEED_COUNTS = {"public.orders": 5, "public.customers": 3, "public.secrets": 2}


class Cluster:
    """A PostgreSQL 15 cluster in a fresh temporary directory, listening on a
    free 127.0.0.1 port and on a unix socket in that directory.

    TCP logins (Envoy's) use the method set by set_auth(); the superuser only
    logs in over the unix socket (trust). ssl=off (the filter needs the
    Envoy→server hop in clear), fsync=off. With `log_statements` every
    statement the server runs is logged, so tests can show a refused
    statement never reached it (statements_since)."""

    def __init__(self, name: str = "pinhole-e2e", *, log_statements: bool = True,
                 password: str | None = None, max_connections: int = 60) -> None:
        self.name = name
        self.log_statements = log_statements
        self.max_connections = max_connections
        # The backend role's password: only the cluster and Envoy's
        # environment know it. Letters and digits only, so it survives any
        # quoting; long enough to be unmistakable in a byte scan.
        self.password = password or ("pw" + secrets.token_hex(16))
        self.bindir = pg_bin()
        self.owner = _run_as()
        self.dir: Path | None = None
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.auth: str | None = None
        self._pgbench_scale = 0

    # ---- paths ----------------------------------------------------------------

    @property
    def data(self) -> Path:
        assert self.dir is not None
        return self.dir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.dir is not None
        return self.dir

    @property
    def log_path(self) -> Path:
        return (self.dir or Path("/nonexistent")) / "postgres.log"

    # ---- processes ------------------------------------------------------------

    def _popen_kwargs(self) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ="UTC")
        kw: dict[str, Any] = {"env": env, "stdin": subprocess.DEVNULL}
        if self.owner is not None:
            uid, gid, name = self.owner
            kw.update(user=uid, group=gid, extra_groups=[])
            env.update(HOME=str(self.dir), USER=name, LOGNAME=name)
        return kw

    def _run(self, args: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **self._popen_kwargs())
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def start(self, *, timeout: float = 60) -> "Cluster":
        # Not under pytest's temp dir: that one is 0700 root, which the
        # server's user could not enter.
        self.dir = Path(tempfile.mkdtemp(prefix=f"pinhole-pg-{self.name}-"))
        if self.owner is not None:
            os.chown(self.dir, self.owner[0], self.owner[1])
        os.chmod(self.dir, 0o700)
        self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-E", "UTF8",
                   "--locale=C", "--no-sync", "--auth-local=trust", "--auth-host=reject"])
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"""
# pinhole e2e
listen_addresses = '127.0.0.1'
unix_socket_directories = '{self.socket_dir}'
ssl = off
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = {self.max_connections}
shared_buffers = 64MB
log_destination = 'stderr'
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_connections = on
log_disconnections = off
log_statement = '{"all" if self.log_statements else "none"}'
log_min_error_statement = error
password_encryption = 'scram-sha-256'
""")
        self._write_hba("scram-sha-256")
        last_error = ""
        for _attempt in range(5):
            self.port = free_port()
            try:
                self._start_server(timeout)
                break
            except RuntimeError as e:
                last_error = str(e)
                if "already in use" not in last_error and "could not bind" not in last_error:
                    raise
        else:
            raise RuntimeError(f"PostgreSQL did not start: {last_error}")
        self._bootstrap()
        self.set_auth("scram-sha-256")
        return self

    def _start_server(self, timeout: float) -> None:
        log = open(self.log_path, "ab")
        try:
            # The postmaster is our child: SIGQUIT (immediate shutdown) reaches
            # it if the test process dies; stop() uses pg_ctl -m immediate.
            self.proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_pdeathsig(signal.SIGQUIT), **self._popen_kwargs())
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"postgres exited during start:\n{self.log_tail()}")
            try:
                with self.connect_admin("postgres") as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postgres not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """pg_ctl stop -m immediate (it signals the postmaster PID from
        postmaster.pid: ours); SIGKILL by PID if that fails; then remove
        the directory."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "stop", "-m", "immediate", "-w",
                           "-t", "20"], timeout=30)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self.dir is not None and os.environ.get("PINHOLE_KEEP_PG") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # ---- administration -----------------------------------------------------------

    def connect_admin(self, dbname: str = DATABASE, *, user: str = SUPERUSER) -> psycopg.Connection[Any]:
        """A direct connection over the unix socket (trust), not through Envoy."""
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user=user, dbname=dbname,
                               autocommit=True, connect_timeout=10)

    def admin(self, sql: str, params: Any = None, *, dbname: str = DATABASE, user: str = SUPERUSER) -> list[tuple[Any, ...]]:
        """Run SQL as the superuser (or `user`) directly; the rows of the last statement."""
        with self.connect_admin(dbname, user=user) as conn:
            cur = conn.execute(sql, params) if params is not None else conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def scalar(self, sql: str, params: Any = None) -> Any:
        rows = self.admin(sql, params)
        return rows[0][0] if rows else None

    def count(self, table: str) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {table}"))

    def table_exists(self, table: str) -> bool:
        return self.scalar("SELECT to_regclass(%s) IS NOT NULL", (table,)) is True

    def _bootstrap(self) -> None:
        self.admin(f"CREATE ROLE {BACKEND_USER} LOGIN", dbname="postgres")
        self.admin(f"CREATE DATABASE {DATABASE} OWNER {BACKEND_USER}", dbname="postgres")
        self.reset_data()

    def reset_data(self) -> None:
        """(Re)create orders / customers / secrets with their seed rows, owned
        by the backend role: if a refused DROP or DELETE reached the server it
        would succeed, so their survival shows the filter stopped it."""
        with self.connect_admin(DATABASE, user=BACKEND_USER) as conn:
            conn.execute(SCHEMA_SQL)

    def pgbench_init(self, scale: int = 1) -> None:
        """pgbench -i -s SCALE in the orders database, as the backend role
        (once per scale)."""
        if self._pgbench_scale == scale:
            return
        subprocess.run([pgbench_binary(), "-i", "-q", "-s", str(scale), "-h", str(self.socket_dir),
                        "-p", str(self.port), "-U", BACKEND_USER, DATABASE],
                       check=True, capture_output=True, timeout=300)
        self._pgbench_scale = scale

    # ---- authentication ---------------------------------------------------------

    def _write_hba(self, method: str) -> None:
        (self.data / "pg_hba.conf").write_text(f"""\
# pinhole e2e (tests/e2e/pg.py): the superuser over the unix socket only;
# everything over TCP (Envoy) with `{method}`.
local   all   all                     trust
host    all   {SUPERUSER}  127.0.0.1/32    reject
host    all   all          127.0.0.1/32    {method}
""")
        if self.owner is not None:
            os.chown(self.data / "pg_hba.conf", self.owner[0], self.owner[1])

    def set_auth(self, method: str, *, timeout: float = 10) -> None:
        """Make TCP logins use `method` (scram-sha-256, md5, password or
        trust): rewrite pg_hba.conf, store the backend role's password in the
        matching form (md5 needs an md5 hash), reload, and wait until the
        server really asks for that method."""
        if method not in AUTH_METHODS:
            raise ValueError(method)
        if self.auth == method:
            return
        self._write_hba(method)
        encryption = "md5" if method == "md5" else "scram-sha-256"
        with self.connect_admin("postgres") as conn:
            conn.execute(f"SET password_encryption = '{encryption}'")
            # A literal (not a parameter): ALTER ROLE takes no parameters.
            conn.execute(f"ALTER ROLE {BACKEND_USER} PASSWORD '{self.password}'")
            conn.execute("SELECT pg_reload_conf()")
        want = {"scram-sha-256": AUTH_SASL, "md5": AUTH_MD5, "password": AUTH_CLEARTEXT, "trust": AUTH_OK}[method]
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            with RawPg("127.0.0.1", self.port) as c:
                c.startup(BACKEND_USER, DATABASE)
                t, payload = c.read_message()
                seen = struct.unpack("!I", payload[:4])[0] if t == b"R" else t
            if seen == want:
                self.auth = method
                return
            time.sleep(0.05)
        raise RuntimeError(f"pg_hba reload to {method} not effective after {timeout}s (server asks {seen!r})")

    def stored_password(self) -> str:
        """rolpassword of the backend role (md5… or SCRAM-SHA-256$…)."""
        return str(self.scalar("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (BACKEND_USER,)))

    def password_forms(self) -> dict[str, bytes]:
        """Every form of the backend password a caller must never see: the
        password itself (raw, base64, hex), its md5 hash, and the SCRAM
        secrets (stored key, server key, salted password, client key) in raw
        and base64 form."""
        pw = self.password.encode()
        forms = {
            "password": pw,
            "password-b64": base64.b64encode(pw),
            "password-hex": pw.hex().encode(),
            "md5": ("md5" + hashlib.md5(pw + BACKEND_USER.encode()).hexdigest()).encode(),
            "md5-bare": hashlib.md5(pw + BACKEND_USER.encode()).hexdigest().encode(),
        }
        stored = self.stored_password()
        m = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", stored)
        if m:
            iterations, salt_b64, stored_key_b64, server_key_b64 = m.groups()
            salt = base64.b64decode(salt_b64)
            salted = hashlib.pbkdf2_hmac("sha256", pw, salt, int(iterations))
            client_key = hmac.new(salted, b"Client Key", "sha256").digest()
            forms.update({
                "scram-stored-key": base64.b64decode(stored_key_b64),
                "scram-stored-key-b64": stored_key_b64.encode(),
                "scram-server-key": base64.b64decode(server_key_b64),
                "scram-server-key-b64": server_key_b64.encode(),
                "scram-salted-password": salted,
                "scram-salted-password-b64": base64.b64encode(salted),
                "scram-client-key": client_key,
                "scram-client-key-b64": base64.b64encode(client_key),
                "scram-salt-b64": salt_b64.encode(),
            })
        elif stored.startswith("md5"):
            forms["md5-stored"] = stored.encode()
        return forms

    # ---- evidence --------------------------------------------------------------------

    def log_mark(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, mark: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(mark)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def statements_since(self, mark: int) -> list[str]:
        """Statements the server ran since `mark` (log_statement = all):
        simple-protocol `statement: …` and extended-protocol `execute …: …`
        lines, with their continuation lines."""
        out: list[str] = []
        current: list[str] | None = None
        for line in self.log_since(mark).splitlines():
            m = re.match(r"^\d{4}-\d\d-\d\d [\d:.]+ \w+ \[\d+\] (.*)$", line)
            if m:
                if current is not None:
                    out.append("\n".join(current))
                    current = None
                rest = m.group(1)
                sm = re.search(r"LOG:  (?:statement: |execute [^:]*: )(.*)$", rest)
                if sm:
                    current = [sm.group(1)]
            elif current is not None:
                current.append(line.strip())
        if current is not None:
            out.append("\n".join(current))
        return out

    def wait_for_statement(self, mark: int, needle: str, timeout: float = 5) -> list[str]:
        """Wait until a statement containing `needle` shows up in the log
        (the server writes it asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [s for s in self.statements_since(mark) if needle in s]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


# ---------------------------------------------------------------- the test policy

def policy_yaml(*, revoked_subject: str = "mallory", leeway: str = "1s") -> str:
    """The Postgres test policy (language: docs/policy.md, "SQL rules").

    Same issuers and keys as the MCP tests (tokens.py: corp RS256, edge ES256,
    ci EdDSA; JWKS files in the session workdir), but a 1 s leeway so a token
    with a 3 s lifetime really expires within a test.

    Roles: analyst (group analysts): SELECT orders and customers; dba (corp,
    group dba): read and write every public table, COPY FROM, DDL only with
    review; bench (group bench): pgbench's built-in select-only and TPC-B
    scripts; auditor (group auditors): SELECT and EXPLAIN on orders and
    customers. Deny rules for everyone: DROP/TRUNCATE, UPDATE/DELETE without
    WHERE, COPY … PROGRAM, server-file and large-object functions, the
    secrets table."""
    return f"""\
# Pinhole end-to-end Postgres policy (generated by tests/e2e/pg.py).
version: 1
name: pinhole-e2e-postgres

identity:
  issuers:
    - name: corp
      issuer: https://sso.corp.test
      audiences: [pinhole-mcp]
      algorithms: [RS256]
      jwks: jwks-corp.json
      groups_claim: groups
      max_token_lifetime: 1h
      leeway: {leeway}
    - name: edge
      issuer: https://edge-idp.test
      audiences: [pinhole-mcp]
      algorithms: [ES256]
      jwks: jwks-edge.json
      groups_claim: groups
      max_token_lifetime: 1h
      leeway: {leeway}
    - name: ci
      issuer: https://ci.tokens.test
      audiences: [pinhole-mcp]
      algorithms: [EdDSA]
      jwks: jwks-ci.json
      max_token_lifetime: 1h
      leeway: {leeway}
  revoked:
    subjects: [{revoked_subject}]

roles:
  analyst:
    groups: [analysts]
  dba:
    issuer: corp
    groups: [dba]
  bench:
    groups: [bench]
  auditor:
    groups: [auditors]

targets:
  {TARGET}:
    protocol: postgres
    backend_user: {BACKEND_USER}
    backend_password_env: {PASSWORD_ENV}
    backend_database: {DATABASE}

rules:
  - id: analysts-read-orders
    allow:
      roles: [analyst]
      target: {TARGET}
      sql: {{ statements: [select, transaction, show], tables: [public.orders, public.customers] }}

  - id: dba-maintenance
    allow:
      roles: [dba]
      target: {TARGET}
      sql:
        statements: [select, insert, update, delete, copy from, transaction, set, show]
        tables: ["public.*"]

  - id: ddl-needs-review
    review: {{ roles: [dba], target: {TARGET}, sql: {{ statements: [create, alter] }} }}

  - id: auditors-explain
    reason: auditors read plans, they change nothing
    allow:
      roles: [auditor]
      target: {TARGET}
      sql: {{ statements: [select, explain], tables: [public.orders, public.customers] }}

  - id: bench-pgbench
    reason: pgbench's built-in scripts and its start-up catalog queries
    allow:
      roles: [bench]
      target: {TARGET}
      sql:
        statements: [select, insert, update, transaction]
        tables: ["public.pgbench_*", "pg_catalog.*"]

  - id: never-destroy
    reason: tables are dropped by migrations, never by hand
    deny: {{ target: {TARGET}, sql: {{ statements: [drop, truncate] }} }}

  - id: no-unbounded-writes
    reason: an UPDATE or DELETE without WHERE is almost always a mistake
    deny: {{ target: {TARGET}, sql: {{ statements: [update, delete], without_where: true }} }}

  - id: no-server-side-programs
    deny: {{ target: {TARGET}, sql: {{ statements: [copy], copy_program: true }} }}

  - id: no-dangerous-functions
    deny: {{ target: {TARGET}, sql: {{ functions: ["pg_read_*", "pg_ls_dir", "lo_*", "dblink*", pg_terminate_backend] }} }}

  - id: secrets-off-limits
    reason: credentials are read by the vault, not through SQL
    deny: {{ target: {TARGET}, sql: {{ tables: [public.secrets] }} }}
"""


# ---------------------------------------------------------------- raw wire client

AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12

PROTOCOL_3 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102


def _cstr(s: str | bytes) -> bytes:
    return (s.encode() if isinstance(s, str) else s) + b"\x00"


def msg(tag: bytes, payload: bytes = b"") -> bytes:
    """A frontend message: type byte, int32 length (itself included), payload."""
    return tag + struct.pack("!I", len(payload) + 4) + payload


def startup_message(user: str, database: str | None = None, **params: str) -> bytes:
    body = struct.pack("!I", PROTOCOL_3) + _cstr("user") + _cstr(user)
    if database is not None:
        body += _cstr("database") + _cstr(database)
    for k, v in params.items():
        body += _cstr(k) + _cstr(v)
    body += b"\x00"
    return struct.pack("!I", len(body) + 4) + body


def ssl_request() -> bytes:
    return struct.pack("!II", 8, SSL_REQUEST)


def gssenc_request() -> bytes:
    return struct.pack("!II", 8, GSSENC_REQUEST)


def cancel_request(pid: int, key: int) -> bytes:
    return struct.pack("!IIII", 16, CANCEL_REQUEST, pid, key)


def password_message(password: str | bytes) -> bytes:
    return msg(b"p", _cstr(password))


def query_message(sql: str) -> bytes:
    return msg(b"Q", _cstr(sql))


def parse_message(sql: str, name: str = "", param_oids: tuple[int, ...] = ()) -> bytes:
    return msg(b"P", _cstr(name) + _cstr(sql) + struct.pack("!H", len(param_oids))
               + b"".join(struct.pack("!I", o) for o in param_oids))


def bind_message(statement: str = "", portal: str = "", params: tuple[bytes | None, ...] = ()) -> bytes:
    body = _cstr(portal) + _cstr(statement) + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for p in params:
        body += struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p
    body += struct.pack("!H", 0)
    return msg(b"B", body)


def describe_message(kind: bytes = b"P", name: str = "") -> bytes:
    return msg(b"D", kind + _cstr(name))


def execute_message(portal: str = "", max_rows: int = 0) -> bytes:
    return msg(b"E", _cstr(portal) + struct.pack("!I", max_rows))


def sync_message() -> bytes:
    return msg(b"S")


def flush_message() -> bytes:
    return msg(b"H")


def terminate_message() -> bytes:
    return msg(b"X")


def function_call_message(oid: int, args: tuple[bytes | None, ...] = ()) -> bytes:
    """FunctionCall ('F'): text arguments, text result."""
    body = struct.pack("!I", oid) + struct.pack("!H", 1) + struct.pack("!H", 0) + struct.pack("!H", len(args))
    for a in args:
        body += struct.pack("!i", -1) if a is None else struct.pack("!i", len(a)) + a
    body += struct.pack("!H", 0)
    return msg(b"F", body)


def copy_data(data: bytes) -> bytes:
    return msg(b"d", data)


def copy_done() -> bytes:
    return msg(b"c")


def parse_fields(payload: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse fields: {'S': 'ERROR', 'C': '42501', 'M': ...}."""
    fields = {}
    for part in payload.split(b"\x00"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


class PgClosed(ConnectionError):
    """The peer closed the connection."""


@dataclass
class Result:
    """What one request (up to ReadyForQuery, or the connection's end) got back."""

    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    closed: bool = False

    @property
    def errors(self) -> list[dict[str, str]]:
        return [parse_fields(p) for t, p in self.messages if t == b"E"]

    @property
    def error(self) -> dict[str, str] | None:
        errs = self.errors
        return errs[0] if errs else None

    @property
    def sqlstate(self) -> str | None:
        e = self.error
        return e.get("C") if e else None

    @property
    def rows(self) -> list[list[str | None]]:
        out = []
        for t, p in self.messages:
            if t == b"D":
                n = struct.unpack("!H", p[:2])[0]
                off = 2
                row: list[str | None] = []
                for _ in range(n):
                    ln = struct.unpack("!i", p[off:off + 4])[0]
                    off += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(p[off:off + ln].decode("utf-8", "replace"))
                        off += ln
                out.append(row)
        return out

    @property
    def tags(self) -> list[str]:
        return [p.rstrip(b"\x00").decode() for t, p in self.messages if t == b"C"]

    @property
    def types(self) -> bytes:
        return b"".join(t for t, _ in self.messages)

    @property
    def ready_status(self) -> str | None:
        for t, p in reversed(self.messages):
            if t == b"Z":
                return p.decode()
        return None


class RawPg:
    """A PostgreSQL frontend built by hand on a socket. Every byte received is
    kept in `received` (the password-leak scan reads it). Methods send
    complete messages; `send_raw` sends anything."""

    def __init__(self, host: str, port: int, *, timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.received = bytearray()
        self._buf = bytearray()
        self.auth_requests: list[int] = []
        self.params: dict[str, str] = {}
        self.backend_key: tuple[int, int] | None = None

    # ---- io -------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int, timeout: float | None) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete message after {timeout or self.timeout}s "
                                   f"(have {len(self._buf)} of {n} bytes)")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise PgClosed(f"connection closed ({len(self._buf)} bytes pending)")
            self.received += chunk
            self._buf += chunk

    def read_byte(self, timeout: float | None = None) -> bytes:
        """One byte (the answer to SSLRequest / GSSENCRequest)."""
        self._fill(1, timeout)
        b = bytes(self._buf[:1])
        del self._buf[:1]
        return b

    def peek_byte(self, timeout: float | None = None) -> bytes:
        """The next byte, left in place (an 'N' to read_byte, or the type
        byte of an ErrorResponse to read_message)."""
        self._fill(1, timeout)
        return bytes(self._buf[:1])

    def read_message(self, timeout: float | None = None) -> tuple[bytes, bytes]:
        self._fill(5, timeout)
        tag = bytes(self._buf[:1])
        length = struct.unpack("!I", self._buf[1:5])[0]
        if length < 4 or length > 64 * 1024 * 1024:
            raise ValueError(f"bad backend message length {length} (type {tag!r})")
        self._fill(1 + length, timeout)
        payload = bytes(self._buf[5:1 + length])
        del self._buf[:1 + length]
        return tag, payload

    def read_until_ready(self, timeout: float | None = None) -> Result:
        """Messages up to and including ReadyForQuery; `closed` if the
        connection ends first."""
        res = Result()
        while True:
            try:
                tag, payload = self.read_message(timeout)
            except PgClosed:
                res.closed = True
                return res
            res.messages.append((tag, payload))
            if tag == b"Z":
                return res

    def wait_closed(self, timeout: float = 5) -> Result:
        """Read until the peer closes (messages seen on the way are kept);
        raises TimeoutError if it stays open."""
        res = Result()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"connection still open after {timeout}s; got {res.types!r}")
            try:
                res.messages.append(self.read_message(left))
            except PgClosed:
                res.closed = True
                return res
            except TimeoutError:
                raise TimeoutError(f"connection still open after {timeout}s; got {res.types!r}") from None

    def is_closed(self, timeout: float = 5) -> bool:
        try:
            self.wait_closed(timeout)
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> "RawPg":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- protocol -------------------------------------------------------------

    def startup(self, user: str, database: str | None = DATABASE, **params: str) -> None:
        self.send_raw(startup_message(user, database, **params))

    def login(self, user: str, password: str, database: str | None = DATABASE, *,
              timeout: float | None = None, **params: str) -> Result:
        """StartupMessage, then answer every authentication request (cleartext
        as often as asked, md5, SCRAM-SHA-256) until ReadyForQuery or an
        error. The Result holds every message; `ok` when it ends in 'Z'."""
        self.startup(user, database, **params)
        res = Result()
        scram: _Scram | None = None
        while True:
            try:
                tag, payload = self.read_message(timeout)
            except PgClosed:
                res.closed = True
                return res
            res.messages.append((tag, payload))
            if tag == b"R":
                code = struct.unpack("!I", payload[:4])[0]
                self.auth_requests.append(code)
                if code == AUTH_CLEARTEXT:
                    self.send_raw(password_message(password))
                elif code == AUTH_MD5:
                    salt = payload[4:8]
                    inner = hashlib.md5(password.encode() + user.encode()).hexdigest().encode()
                    self.send_raw(password_message("md5" + hashlib.md5(inner + salt).hexdigest()))
                elif code == AUTH_SASL:
                    scram = _Scram(password)
                    first = scram.client_first()
                    self.send_raw(msg(b"p", _cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first))
                elif code == AUTH_SASL_CONTINUE:
                    assert scram is not None
                    self.send_raw(msg(b"p", scram.client_final(payload[4:])))
                elif code in (AUTH_OK, AUTH_SASL_FINAL):
                    pass
                else:
                    raise ValueError(f"unsupported authentication request {code}")
            elif tag == b"S":
                k, v = (payload.split(b"\x00") + [b""])[:2]
                self.params[k.decode()] = v.decode("utf-8", "replace")
            elif tag == b"K":
                self.backend_key = struct.unpack("!II", payload[:8])
            elif tag == b"E":
                # A login error ends the connection; read to the end so
                # `received` holds everything the peer sent.
                with contextlib.suppress(TimeoutError, OSError):
                    rest = self.wait_closed(timeout or 5)
                    res.messages.extend(rest.messages)
                    res.closed = True
                return res
            elif tag == b"Z":
                return res

    def query(self, sql: str, *, timeout: float | None = None) -> Result:
        self.send_raw(query_message(sql))
        return self.read_until_ready(timeout)

    def extended(self, sql: str, params: tuple[bytes | None, ...] = (), *, name: str = "",
                 timeout: float | None = None) -> Result:
        """Parse / Bind / Describe / Execute / Sync in one write."""
        self.send_raw(parse_message(sql, name) + bind_message(name, "", params) + describe_message(b"P")
                      + execute_message() + sync_message())
        return self.read_until_ready(timeout)


def login_ok(res: Result) -> bool:
    return not res.closed and res.ready_status is not None and not res.errors


class _Scram:
    """SCRAM-SHA-256 client (RFC 5802/7677), no channel binding: the raw
    client logs in directly to a SCRAM cluster (baseline checks)."""

    def __init__(self, password: str) -> None:
        self.password = password.encode()
        self.nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"
        self.server_signature = b""

    def client_first(self) -> bytes:
        return ("n,," + self.first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
        salt = base64.b64decode(attrs["s"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        final_bare = f"c=biws,r={attrs['r']}"
        auth_message = f"{self.first_bare},{server_first.decode()},{final_bare}".encode()
        signature = hmac.new(stored_key, auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        self.server_signature = hmac.new(server_key, auth_message, "sha256").digest()
        return f"{final_bare},p={base64.b64encode(proof).decode()}".encode()


# ---------------------------------------------------------------- psql and pgbench

def conninfo(port: int, user: str, *, dbname: str = DATABASE, sslmode: str = "disable") -> str:
    return f"host=127.0.0.1 port={port} dbname={dbname} user={user} sslmode={sslmode} connect_timeout=10"


def psql(port: int, user: str, password: str, sql: str | list[str], *, dbname: str = DATABASE,
         sslmode: str = "disable", timeout: float = 30, stop_on_error: bool = True) -> subprocess.CompletedProcess[str]:
    """psql -X -A -t [-v ON_ERROR_STOP=1] -v VERBOSITY=verbose -c SQL ...
    with PGPASSWORD=password (a JWT through Pinhole). Exit 0 ok, 1 fatal,
    2 connection failure, 3 an error with ON_ERROR_STOP."""
    cmds = [sql] if isinstance(sql, str) else sql
    args = [psql_binary(), "-X", "-A", "-t", "-v", "VERBOSITY=verbose"]
    if stop_on_error:
        args += ["-v", "ON_ERROR_STOP=1"]
    for c in cmds:
        args += ["-c", c]
    args.append(conninfo(port, user, dbname=dbname, sslmode=sslmode))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=password, PGAPPNAME="pinhole-e2e-psql", LC_ALL="C")
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def pgbench(port: int, user: str, password: str, *, mode: str = "simple", select_only: bool = True,
            seconds: float | None = 2, transactions: int | None = None, clients: int = 2, threads: int = 1,
            timeout: float = 120, script: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    """pgbench -n [-S | -f SCRIPT] -M MODE -c C -j J (-T SECS | -t N) through
    a port, PGPASSWORD=password (a `script` replaces the built-in ones)."""
    args = [pgbench_binary(), "-n", "-M", mode, "-c", str(clients), "-j", str(threads),
            "-h", "127.0.0.1", "-p", str(port), "-U", user]
    if script is not None:
        args += ["-f", str(script)]
    elif select_only:
        args.append("-S")
    if transactions is not None:
        args += ["-t", str(transactions)]
    else:
        args += ["-T", str(int(seconds or 1))]
    args.append(DATABASE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=password, PGSSLMODE="disable", LC_ALL="C")
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def pgbench_tps(output: str) -> float:
    """The `tps = N (without initial connection time)` figure of pgbench's report."""
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
    if not m:
        raise ValueError(f"no tps in pgbench output:\n{output}")
    return float(m.group(1))


# ---------------------------------------------------------------- identities

class PgTokens:
    """Tokens for the Postgres test identities (tokens.KeySet), fresh per call."""

    def __init__(self, keys: Any) -> None:
        self.keys = keys

    def analyst(self, sub: str = "alice", **kw: Any) -> str:
        return str(self.keys.mint("corp", sub, groups=["analysts"], **kw))

    def edge_analyst(self, sub: str = "erin") -> str:
        """ES256-signed analyst."""
        return str(self.keys.mint("edge", sub, groups=["analysts"]))

    def dba(self, sub: str = "dana", **kw: Any) -> str:
        return str(self.keys.mint("corp", sub, groups=["dba"], **kw))

    def bench(self, sub: str = "bench", **kw: Any) -> str:
        return str(self.keys.mint("corp", sub, groups=["bench"], lifetime=3000, **kw))

    def auditor(self, sub: str = "audra", **kw: Any) -> str:
        """SELECT and EXPLAIN on orders and customers (not EXPLAIN ANALYZE of a write)."""
        return str(self.keys.mint("corp", sub, groups=["auditors"], **kw))

    def nobody(self, sub: str = "nina") -> str:
        """Valid token, no role: may log in, may run nothing."""
        return str(self.keys.mint("corp", sub, groups=["interns"]))

    def revoked(self) -> str:
        return str(self.keys.mint("corp", "mallory", groups=["analysts"]))

    def short(self, seconds: int = 3, sub: str = "sam") -> str:
        """An analyst token that expires `seconds` from now."""
        return str(self.keys.mint("corp", sub, groups=["analysts"], lifetime=seconds))


# ---------------------------------------------------------------- drivers behind one interface

class DbError(Exception):
    """A server (or filter) error as any driver reports it."""

    def __init__(self, sqlstate: str | None, message: str, *, driver: str, original: BaseException) -> None:
        super().__init__(f"[{driver}] {sqlstate}: {message}")
        self.sqlstate = sqlstate
        self.message = message
        self.driver = driver
        self.original = original


def _param_style(sql: str, style: str) -> str:
    """`$1` placeholders → psycopg `%s` or pg8000 `:p1`."""
    if style == "psycopg":
        return re.sub(r"\$\d+", "%s", sql)
    if style == "pg8000":
        return re.sub(r"\$(\d+)", r":p\1", sql)
    return sql


class Session:
    """One connection of a real driver. run(): the driver's ordinary way to
    send a statement without parameters (psycopg: simple Query protocol;
    pg8000 and asyncpg: extended protocol); params(): extended protocol with
    parameters, unnamed statement; prepared(): a named prepared statement."""

    driver = "?"

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def params(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def prepared(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.close()


class PsycopgSession(Session):
    driver = "psycopg"

    def __init__(self, port: int, user: str, password: str, *, dbname: str = DATABASE, sslmode: str = "disable") -> None:
        try:
            self.conn = psycopg.connect(conninfo(port, user, dbname=dbname, sslmode=sslmode), password=password,
                                        autocommit=True)
        except psycopg.Error as e:
            raise _psycopg_error(e) from e

    def _do(self, sql: str, args: Any = None, prepare: bool | None = None) -> list[tuple[Any, ...]]:
        try:
            cur = self.conn.execute(sql, args, prepare=prepare)
            return list(cur.fetchall()) if cur.description else []
        except psycopg.Error as e:
            raise _psycopg_error(e) from e

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        return self._do(sql, None, prepare=False)

    def params(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._do(_param_style(sql, "psycopg"), args, prepare=False)

    def prepared(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._do(_param_style(sql, "psycopg"), args, prepare=True)

    def close(self) -> None:
        self.conn.close()


def _psycopg_error(e: psycopg.Error) -> DbError:
    msg_ = (e.diag.message_primary if e.diag and e.diag.message_primary else str(e)) or ""
    return DbError(e.sqlstate, msg_, driver="psycopg", original=e)


class Pg8000Session(Session):
    driver = "pg8000"

    def __init__(self, port: int, user: str, password: str, *, dbname: str = DATABASE) -> None:
        import pg8000.native

        self._mod = pg8000
        try:
            self.conn = pg8000.native.Connection(user, host="127.0.0.1", port=port, database=dbname,
                                                 password=password, timeout=15)
        except Exception as e:  # noqa: BLE001 - pg8000 raises several kinds
            raise _pg8000_error(e) from e

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            return [tuple(r) for r in (self.conn.run(sql) or [])]
        except Exception as e:  # noqa: BLE001
            raise _pg8000_error(e) from e

    def params(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        kw = {f"p{i + 1}": a for i, a in enumerate(args)}
        try:
            return [tuple(r) for r in (self.conn.run(_param_style(sql, "pg8000"), **kw) or [])]
        except Exception as e:  # noqa: BLE001
            raise _pg8000_error(e) from e

    def prepared(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        kw = {f"p{i + 1}": a for i, a in enumerate(args)}
        try:
            ps = self.conn.prepare(_param_style(sql, "pg8000"))
            return [tuple(r) for r in (ps.run(**kw) or [])]
        except Exception as e:  # noqa: BLE001
            raise _pg8000_error(e) from e

    def close(self) -> None:
        self.conn.close()


def _pg8000_error(e: BaseException) -> DbError:
    fields = e.args[0] if e.args and isinstance(e.args[0], dict) else {}
    return DbError(fields.get("C"), fields.get("M", str(e)), driver="pg8000", original=e)


class AsyncpgSession(Session):
    """asyncpg driven from synchronous tests through a private event loop."""

    driver = "asyncpg"

    def __init__(self, port: int, user: str, password: str, *, dbname: str = DATABASE) -> None:
        import asyncio

        import asyncpg

        self._asyncpg = asyncpg
        self.loop = asyncio.new_event_loop()
        try:
            self.conn = self._call(asyncpg.connect(host="127.0.0.1", port=port, user=user, password=password,
                                                   database=dbname, ssl=False, timeout=15))
        except BaseException:
            self.loop.close()
            raise

    def _call(self, coro: Any) -> Any:
        try:
            return self.loop.run_until_complete(asyncio_wait_for(coro, 20))
        except self._asyncpg.PostgresError as e:
            raise DbError(e.sqlstate, getattr(e, "message", str(e)), driver="asyncpg", original=e) from e
        except (self._asyncpg.InterfaceError, ConnectionError, OSError) as e:
            raise DbError(None, str(e), driver="asyncpg", original=e) from e

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._call(self.conn.fetch(sql))]

    def params(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._call(self.conn.fetch(sql, *args))]

    def prepared(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        async def go() -> list[Any]:
            ps = await self.conn.prepare(sql)
            return list(await ps.fetch(*args))

        return [tuple(r) for r in self._call(go())]

    def simple(self, sql: str) -> None:
        """asyncpg's execute() without arguments: the simple Query protocol."""
        self._call(self.conn.execute(sql))

    def close(self) -> None:
        try:
            with contextlib.suppress(Exception):
                self._call(self.conn.close(timeout=5))
        finally:
            self.loop.close()


def asyncio_wait_for(coro: Any, timeout: float) -> Any:
    import asyncio

    return asyncio.wait_for(coro, timeout)


DRIVERS = {"psycopg": PsycopgSession, "pg8000": Pg8000Session, "asyncpg": AsyncpgSession}


def connect(driver: str, port: int, user: str, password: str, **kw: Any) -> Session:
    return DRIVERS[driver](port, user, password, **kw)
