"""Session fixtures for the end-to-end tests.

One run builds this world once and shares it (tests stay independent by
reading server logs from a mark, see harness.JsonLog):

    keys + JWKS (tokens.py) ─▶ policy.yaml ─▶ `pinhole compile` ─▶ policy.bin
    MCP server, JSON responses ◀─ Envoy + pinhole.wasm (target tools)      envoy_json
    MCP server, SSE responses  ◀─ Envoy + pinhole.wasm (target tools)      envoy_sse
    MCP server, JSON responses ◀─ Envoy + pinhole.wasm (target tools-fwd)  envoy_fwd
    HTTP echo upstream         ◀─ Envoy + pinhole.wasm (target api)        envoy_http
    Envoys with corrupt blobs  (started on demand, one per kind)

Everything listens on loopback ports the kernel picks; every process is
stopped by PID at the end of the session (and dies with the test process).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import envoyctl
import harness
import pg
from http_upstream import EchoServer
from tokens import KeySet


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def artifacts() -> harness.Artifacts:
    try:
        return harness.Artifacts.locate()
    except FileNotFoundError as e:
        pytest.exit(str(e), returncode=2)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pinhole-e2e")


@pytest.fixture(scope="session")
def keys(workdir: Path) -> KeySet:
    ks = KeySet.generate()
    ks.write_jwks(workdir)
    return ks


@pytest.fixture(scope="session")
def policy_file(workdir: Path, keys: KeySet) -> Path:
    path = workdir / "policy.yaml"
    path.write_text(harness.policy_yaml())
    return path


@pytest.fixture(scope="session")
def blob(artifacts: harness.Artifacts, policy_file: Path, workdir: Path) -> bytes:
    return harness.compile_policy(artifacts.pinhole, policy_file, workdir / "policy.bin")


class World:
    """Starts servers and Envoys on first use; stops them all at the end."""

    def __init__(self, workdir: Path, artifacts: harness.Artifacts, blob: bytes) -> None:
        self.workdir = workdir
        self.artifacts = artifacts
        self.blob = blob
        self.servers: dict[str, harness.McpServer] = {}
        self.envoys: dict[str, envoyctl.Envoy] = {}
        self.echo: EchoServer | None = None

    def mcp_server(self, name: str, *, sse: bool) -> harness.McpServer:
        if name not in self.servers:
            self.servers[name] = harness.McpServer(self.workdir, name, sse=sse).start()
        return self.servers[name]

    def http_upstream(self) -> EchoServer:
        if self.echo is None:
            self.echo = EchoServer().start()
        return self.echo

    def envoy(self, name: str, template: str, *, upstream_port: int, target: str,
              policy: bytes | str | None = None) -> envoyctl.Envoy:
        if name not in self.envoys:
            config = envoyctl.render(
                envoyctl.ROOT / "envoy" / template,
                self.workdir / f"{name}.envoy.yaml",
                WASM=self.artifacts.wasm,
                UPSTREAM_PORT=upstream_port,
                PLUGIN_CONFIG=envoyctl.plugin_config(target, self.blob if policy is None else policy),
            )
            envoy = envoyctl.Envoy(config, self.workdir, name=name)
            self.envoys[name] = envoy  # registered before start: stopped even if start fails half-way
            envoy.start(timeout=60)
        return self.envoys[name]

    def close(self) -> None:
        for envoy in self.envoys.values():
            envoy.stop()
        for server in self.servers.values():
            server.stop()
        if self.echo is not None:
            self.echo.stop()


@pytest.fixture(scope="session")
def world(workdir: Path, artifacts: harness.Artifacts, blob: bytes) -> Iterator[World]:
    w = World(workdir, artifacts, blob)
    _WORLD.append(w)
    try:
        yield w
    finally:
        _WORLD.clear()
        w.close()


class Stack:
    """An Envoy with Pinhole in front of an upstream, and that upstream."""

    def __init__(self, name: str, envoy: envoyctl.Envoy, server: harness.McpServer | None) -> None:
        self.name = name
        self.envoy = envoy
        self.server = server

    @property
    def base_url(self) -> str:
        return self.envoy.listen_url

    @property
    def url(self) -> str:
        """The MCP endpoint through Envoy."""
        return self.envoy.listen_url + "/mcp"

    @property
    def exec_log(self) -> harness.JsonLog:
        assert self.server is not None
        return self.server.exec_log

    @property
    def request_log(self) -> harness.JsonLog:
        assert self.server is not None
        return self.server.request_log

    def __repr__(self) -> str:
        return f"<Stack {self.name}>"


def _mcp_stack(world: World, name: str, *, sse: bool, target: str = "tools") -> Stack:
    server = world.mcp_server("mcp-sse" if sse else "mcp-json", sse=sse)
    envoy = world.envoy(name, "mcp.yaml", upstream_port=server.port, target=target)
    return Stack(name, envoy, server)


@pytest.fixture(scope="session")
def json_stack(world: World) -> Stack:
    """Pinhole (target `tools`) in front of the MCP server answering application/json."""
    return _mcp_stack(world, "json", sse=False)


@pytest.fixture(scope="session")
def sse_stack(world: World) -> Stack:
    """Pinhole (target `tools`) in front of the MCP server answering text/event-stream."""
    return _mcp_stack(world, "sse", sse=True)


@pytest.fixture(scope="session", params=["json", "sse"])
def stack(request: pytest.FixtureRequest) -> Stack:
    """Both response modes: tests using it run once per MCP server."""
    return request.getfixturevalue(f"{request.param}_stack")


@pytest.fixture(scope="session")
def fwd_stack(world: World) -> Stack:
    """Pinhole with target `tools-fwd` (forward_token: true) in front of the JSON server."""
    return _mcp_stack(world, "fwd", sse=False, target="tools-fwd")


@pytest.fixture(scope="session")
def http_stack(world: World) -> tuple[Stack, EchoServer]:
    """Pinhole with the plain HTTP target `api` in front of an echo server."""
    echo = world.http_upstream()
    envoy = world.envoy("http", "http.yaml", upstream_port=echo.port, target="api")
    return Stack("http", envoy, None), echo


@pytest.fixture(scope="session")
def corrupt_stack(world: World, blob: bytes) -> Any:
    """corrupt_stack(kind) → an Envoy whose plugin config carries a broken
    policy (see harness.corrupt_blob), in front of the JSON server."""

    def make(kind: str) -> Stack:
        server = world.mcp_server("mcp-json", sse=False)
        envoy = world.envoy(f"corrupt-{kind}", "mcp.yaml", upstream_port=server.port, target="tools",
                            policy=harness.corrupt_blob(blob, kind))
        return Stack(f"corrupt-{kind}", envoy, server)

    return make


# ---------------------------------------------------------------- identities

class Tokens:
    """Tokens for the test identities, minted fresh per request."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys

    def analyst(self, sub: str = "alice") -> str:
        return self.keys.mint("corp", sub, groups=["analysts"])

    def deployer(self, sub: str = "dave") -> str:
        return self.keys.mint("corp", sub, groups=["deployers"])

    def both(self, sub: str = "carol") -> str:
        return self.keys.mint("corp", sub, groups=["analysts", "deployers"])

    def nobody(self, sub: str = "nina") -> str:
        """Valid token, no role."""
        return self.keys.mint("corp", sub, groups=["interns"])

    def edge_analyst(self, sub: str = "erin") -> str:
        return self.keys.mint("edge", sub, groups=["analysts"])

    def release_bot(self, sub: str = "repo:acme/app:ref:refs/heads/main") -> str:
        return self.keys.mint("ci", sub, repository="acme/app", ref="refs/heads/main")

    def rotated_analyst(self, sub: str = "rita") -> str:
        """Signed by corp's second (newly rotated-in) key, kid rsa-2026."""
        return self.keys.mint("corp", sub, groups=["analysts"], key=self.keys.issuers["corp"].keys[1])

    def revoked(self) -> str:
        return self.keys.mint("corp", "mallory", groups=["deployers"])


@pytest.fixture(scope="session")
def tokens(keys: KeySet) -> Tokens:
    return Tokens(keys)


_WORLD: list[World] = []

# A broken filter can stall every request until its timeout; bound the whole
# run so CI reports the failures instead of sitting out 90 minutes.
DEADLINE_SECS = float(os.environ.get("PINHOLE_E2E_DEADLINE", "900"))
_START = time.monotonic()


def pytest_runtest_setup(item: pytest.Item) -> None:
    elapsed = time.monotonic() - _START
    if elapsed > DEADLINE_SECS:
        pytest.exit(f"end-to-end run exceeded {DEADLINE_SECS:.0f}s (PINHOLE_E2E_DEADLINE); "
                    f"stopping before {item.nodeid}", returncode=1)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    """When a test fails, attach the tails of the Envoy and server logs."""
    rep = yield
    if rep.failed and rep.when in ("setup", "call") and _WORLD:
        world = _WORLD[0]
        for envoy in world.envoys.values():
            # Pinhole's own lines and Envoy errors; the full logs are in the
            # session's temp dir (printed at the top of a failing run).
            lines = [line for line in envoy.log_text().splitlines()
                     if "pinhole" in line or "[error]" in line or "[critical]" in line]
            if lines:
                rep.sections.append((f"envoy {envoy.name} ({envoy.log_path})", "\n".join(lines[-12:])))
        for server in world.servers.values():
            rep.sections.append((f"MCP server {server.name} ({server.log_path})", server.log_tail(8)))
    if rep.failed and rep.when in ("setup", "call"):
        for cluster in _PG_CLUSTERS:  # PostgreSQL (defined below)
            rep.sections.append((f"postgres {cluster.name} ({cluster.log_path})", cluster.log_tail(12)))
    return rep


# ---------------------------------------------------------------- PostgreSQL (issue 3)
#
#   PostgreSQL 15 cluster (pg.Cluster, session)      pg_cluster
#     ◀─ Envoy + pinhole.wasm network filter (target orders-db)   pg_stack
#     ◀─ Envoy tcp_proxy only (baseline, sanity)                   pg_tcp_stack
#
# The cluster's backend role password is random per session; only the
# cluster and the filter Envoy's environment (pg.PASSWORD_ENV) hold it.

_PG_CLUSTERS: list[pg.Cluster] = []


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pg.Cluster]:
    """A throwaway PostgreSQL 15 cluster on a free loopback port (pg.py).
    Missing binaries fail the tests (never skip them) naming scripts/setup.sh."""
    try:
        cluster = pg.Cluster("e2e")
    except pg.PgUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    _PG_CLUSTERS.append(cluster)
    try:
        cluster.start()
        yield cluster
    finally:
        _PG_CLUSTERS.remove(cluster)
        cluster.stop()


@pytest.fixture(scope="session")
def pg_policy_file(workdir: Path, keys: KeySet) -> Path:
    path = workdir / "policy-postgres.yaml"  # beside the JWKS files it names
    path.write_text(pg.policy_yaml())
    return path


@pytest.fixture(scope="session")
def pg_blob(artifacts: harness.Artifacts, pg_policy_file: Path, workdir: Path) -> bytes:
    return harness.compile_policy(artifacts.pinhole, pg_policy_file, workdir / "policy-postgres.bin")


class PgStack:
    """An Envoy listener in front of the test cluster."""

    def __init__(self, name: str, envoy: envoyctl.Envoy, cluster: pg.Cluster) -> None:
        self.name = name
        self.envoy = envoy
        self.cluster = cluster

    @property
    def port(self) -> int:
        return self.envoy.listen_port

    def raw(self, *, timeout: float = 10) -> pg.RawPg:
        return pg.RawPg("127.0.0.1", self.port, timeout=timeout)

    def psql(self, token: str, sql: str | list[str], *, user: str = "alice", **kw: Any) -> Any:
        return pg.psql(self.port, user, token, sql, **kw)

    def healthy(self) -> bool:
        return self.envoy.ready()

    def __repr__(self) -> str:
        return f"<PgStack {self.name}>"


def _pg_envoy(world: World, name: str, template: str, cluster: pg.Cluster, **values: Any) -> envoyctl.Envoy:
    """An Envoy for a postgres template, registered in the World (stopped at
    the end, its log attached to failures); the filter's Envoy gets the
    backend password in its environment."""
    if name not in world.envoys:
        config = envoyctl.render(envoyctl.ROOT / "envoy" / template, world.workdir / f"{name}.envoy.yaml",
                                 UPSTREAM_PORT=cluster.port, **values)
        envoy = envoyctl.Envoy(config, world.workdir, name=name, env={pg.PASSWORD_ENV: cluster.password})
        world.envoys[name] = envoy
        envoy.start(timeout=60)
    return world.envoys[name]


@pytest.fixture(scope="session")
def pg_stack(world: World, pg_cluster: pg.Cluster, pg_blob: bytes) -> PgStack:
    """Pinhole (network filter, target orders-db) + tcp_proxy in front of the cluster."""
    envoy = _pg_envoy(world, "postgres", "postgres.yaml", pg_cluster,
                      WASM=world.artifacts.wasm, PASSWORD_ENV=pg.PASSWORD_ENV,
                      PLUGIN_CONFIG=envoyctl.plugin_config(pg.TARGET, pg_blob, listener="postgres"))
    return PgStack("postgres", envoy, pg_cluster)


@pytest.fixture(scope="session")
def pg_tcp_stack(world: World, pg_cluster: pg.Cluster) -> PgStack:
    """tcp_proxy only (no filter): clients log in with the real password."""
    envoy = _pg_envoy(world, "postgres-tcp", "postgres-tcp.yaml", pg_cluster)
    return PgStack("postgres-tcp", envoy, pg_cluster)


@pytest.fixture(scope="session")
def pg_tokens(keys: KeySet) -> pg.PgTokens:
    return pg.PgTokens(keys)


@pytest.fixture(params=["scram-sha-256", "md5"])
def pg_auth(request: pytest.FixtureRequest, pg_cluster: pg.Cluster) -> str:
    """Tests using it run once per backend authentication method the filter
    must answer: the cluster's pg_hba (and the stored password) switch to it."""
    pg_cluster.set_auth(request.param)
    return str(request.param)


@pytest.fixture
def pg_fresh(pg_cluster: pg.Cluster) -> pg.Cluster:
    """Seed data restored and scram-sha-256 (the default) before the test;
    pg_auth, requested after it, switches the method."""
    pg_cluster.reset_data()
    pg_cluster.set_auth("scram-sha-256")
    return pg_cluster
