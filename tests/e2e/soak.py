"""Soak: real Envoy + Pinhole under mixed MCP and PostgreSQL load for a
long time, while `pinhole push` replaces the policies every minute.

    scripts/soak.sh                            # 30 minutes (the issue-7 run)
    scripts/soak.sh --duration 300 --push-interval 30
    .venv/bin/python tests/e2e/soak.py --help
    tests/e2e/test_soak.py                     # CI: ~60 s, a push every ~10 s

One Envoy (``--concurrency 1``) runs three listeners whose Pinhole filters
come from ECDS files written by the real `pinhole push`:

    MCP clients ─▶ listener mcp-json ─┐ http filter pinhole-mcp ─▶ MCP server (JSON responses)
    MCP clients ─▶ listener mcp-sse  ─┘ (one ECDS file)          ─▶ MCP server (SSE responses)
    PG clients  ─▶ listener postgres  ── network filter pinhole-pg ─▶ PostgreSQL 15

Load (threads, each checking every answer against the decision it expects):

- MCP workers (raw Streamable HTTP over httpx, and one official-SDK client):
  tools/call and tools/list, resources/read, for analysts and deployers;
  allowed calls must return a result, denied ones the filter's JSON-RPC
  error (-32001 denied, -32002 approval required), a missing token a 401.
  A session lasts a few dozen requests, then a new token and session.
- PostgreSQL workers (psycopg over Envoy, the JWT as password; one pg8000):
  "long" workers keep one session for the whole run (across every push),
  "short" ones reconnect every few statements. Analysts: SELECT (simple
  and extended protocol) allowed; SELECT from secrets, DROP, DELETE without
  WHERE refused with 42501. DBAs: INSERT and DELETE … WHERE allowed; UPDATE
  without WHERE and TRUNCATE refused. Now and then a revoked subject's
  login (28000).

Pushes: every --push-interval seconds both policies are pushed again,
alternating between variants A and B. They differ only in a revoked subject
no load uses (ghost-a / ghost-b), so the blob really changes and the load's
decisions do not. A push counts as applied when Envoy's
extension_config_discovery.<kind>.pinhole-*.config_reload counter grew and a
probe sees the new policy in force (the newly revoked ghost refused, the
other admitted) on new connections and sessions.

A failure is anything that is not the expected answer: a connection reset
or refused, a timeout, a 5xx, a refusal of an allowed request, an allowed
denied request, a wrong error code; a worker that makes no progress for
--stall seconds; a push not applied; Envoy dying; `panicked` or a Wasm
failure in Envoy's log; a denied tool found in the MCP server's execution
log; the seed tables damaged.

Memory: every --sample-interval seconds (10) Envoy's RSS (/proc/PID/status
VmRSS) and the admin /stats memory gauges (server.memory_allocated,
server.memory_heap_size, server.memory_physical_size and every gauge whose
name mentions wasm). The memory verdict — only for runs of at least
--min-judged-duration seconds (300) — compares the median of the last five
RSS samples with the median of the first five after the warm-up (the first
10 % of the run, at least 60 s): growth beyond max(--max-growth-mib MiB,
--max-growth-pct % of that baseline), defaults 32 MiB and 20 %, while the
least-squares slope over the same samples is positive, is "clear memory
growth" and fails the run. The summary prints first / last / max / slope
(MiB per hour) either way.

Exit status 0 only when there was no failure, every push was applied and
memory did not clearly grow. `--json FILE` writes the summary as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import httpx  # noqa: E402

import envoyctl  # noqa: E402
import harness  # noqa: E402
import pg  # noqa: E402
from tokens import KeySet  # noqa: E402

MCP_TARGET = "tools"
MCP_FILTER = "pinhole-mcp"
PG_FILTER = "pinhole-pg"
MCP_VM = "pinhole-soak-mcp"
PG_VM = "pinhole-soak-pg"
VARIANTS = ("a", "b")  # policy variants: which ghost subject is revoked

ENVOY_CONFIG = """\
# Soak test Envoy (tests/e2e/soak.py): two MCP listeners sharing one ECDS
# HTTP filter, one PostgreSQL listener with an ECDS network filter.
node: { id: pinhole-soak, cluster: pinhole }
stats_config:
  stats_tags:
    - { tag_name: pinhole_effect, regex: '^wasmcustom\\.pinhole\\..*(\\.effect\\.([^.]+))' }
    - { tag_name: pinhole_target, regex: '^wasmcustom\\.pinhole\\..*(\\.target\\.([^.]+))' }
    - { tag_name: pinhole_rule, regex: '^wasmcustom\\.pinhole\\..*(\\.rule\\.([^.]+))' }
    - { tag_name: pinhole_reason, regex: '^wasmcustom\\.pinhole\\..*(\\.reason\\.([^.]+))' }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: {{ADMIN_PORT}} } }
static_resources:
  listeners:
{{MCP_LISTENERS}}
  - name: postgres
    address: { socket_address: { address: 127.0.0.1, port_value: {{LISTEN_PORT}} } }
    per_connection_buffer_limit_bytes: 1048576
    filter_chains:
    - filters:
      - name: pinhole-pg
        config_discovery:
          config_source:
            path_config_source: { path: "{{ECDS_PG}}" }
            resource_api_version: V3
          type_urls: [type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm]
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: postgres
          cluster: postgres_upstream
          idle_timeout: 3600s
  clusters:
{{MCP_CLUSTERS}}
  - name: postgres_upstream
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: postgres_upstream
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{PG_PORT}} } } }
"""

MCP_LISTENER = """\
  - name: mcp-@KIND@
    address: { socket_address: { address: 127.0.0.1, port_value: {{LISTEN_PORT}} } }
    per_connection_buffer_limit_bytes: 1048576
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mcp_@KIND@
          codec_type: AUTO
          stream_idle_timeout: 3600s
          route_config:
            name: mcp_@KIND@
            virtual_hosts:
            - name: mcp
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: mcp_@KIND@, timeout: 0s }
          http_filters:
          - name: pinhole-mcp
            config_discovery:
              config_source:
                path_config_source: { path: "{{ECDS_MCP}}" }
                resource_api_version: V3
              type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]
          - name: envoy.filters.http.buffer
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 1048576
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""

MCP_CLUSTER = """\
  - name: mcp_@KIND@
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: mcp_@KIND@
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{MCP_@UPPER@_PORT}} } } }
"""


def envoy_template() -> str:
    kinds = ("json", "sse")

    def each(tpl: str) -> str:
        return "".join(tpl.replace("@KIND@", k).replace("@UPPER@", k.upper()) for k in kinds).rstrip("\n")

    return ENVOY_CONFIG.replace("{{MCP_LISTENERS}}", each(MCP_LISTENER)).replace("{{MCP_CLUSTERS}}", each(MCP_CLUSTER))


# ---------------------------------------------------------------- bookkeeping

class Failure(Exception):
    """An answer that is not the expected one."""


@dataclass
class Counters:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: dict[str, int] = field(default_factory=dict)   # "mcp allow" / "pg deny" ... → count
    failures: dict[str, int] = field(default_factory=dict)   # kind → count
    samples: list[str] = field(default_factory=list)         # first failure messages
    connections: dict[str, int] = field(default_factory=dict)

    def ok(self, key: str) -> None:
        with self.lock:
            self.requests[key] = self.requests.get(key, 0) + 1

    def connected(self, key: str) -> None:
        with self.lock:
            self.connections[key] = self.connections.get(key, 0) + 1

    def fail(self, kind: str, message: str) -> None:
        with self.lock:
            self.failures[kind] = self.failures.get(kind, 0) + 1
            if len(self.samples) < 40:
                self.samples.append(f"{time.strftime('%H:%M:%S')} [{kind}] {message[:400]}")

    @property
    def total_ok(self) -> int:
        return sum(self.requests.values())

    @property
    def total_failed(self) -> int:
        return sum(self.failures.values())


@dataclass
class Options:
    duration: float = 1800.0
    push_interval: float = 60.0
    sample_interval: float = 10.0
    mcp_workers: int = 3
    mcp_sdk_workers: int = 1
    pg_long_workers: int = 2
    pg_short_workers: int = 2
    think: float = 0.0           # seconds of pause between two operations of a worker
    stall: float = 45.0          # a worker without progress this long is a failure
    warmup_frac: float = 0.10
    min_warmup: float = 60.0
    min_judged_duration: float = 300.0
    max_growth_mib: float = 32.0
    max_growth_pct: float = 20.0
    workdir: Path | None = None
    keep: bool = False
    verbose: bool = True
    json_out: Path | None = None


def log(opts: Options, msg: str) -> None:
    if opts.verbose:
        print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the world

class World:
    """Keys, policies, PostgreSQL, two MCP servers, one Envoy; stop() stops
    everything that was started, by PID."""

    def __init__(self, opts: Options, artifacts: harness.Artifacts) -> None:
        self.opts = opts
        self.artifacts = artifacts
        self._tmp = None
        if opts.workdir is None:
            self._tmp = tempfile.mkdtemp(prefix="pinhole-soak-")
            self.dir = Path(self._tmp)
        else:
            self.dir = opts.workdir
            self.dir.mkdir(parents=True, exist_ok=True)
        self.keys = KeySet.generate()
        self.keys.write_jwks(self.dir)
        self.cluster: pg.Cluster | None = None
        self.servers: dict[str, harness.McpServer] = {}
        self.envoy: envoyctl.Envoy | None = None
        self.ecds_mcp = self.dir / "ecds-mcp.json"
        self.ecds_pg = self.dir / "ecds-pg.json"
        self.policies: dict[tuple[str, str], Path] = {}
        for v in VARIANTS:
            # `revoked_subject` is pasted into `subjects: [...]`: mallory
            # (used by the load as an intended refusal) plus this variant's ghost.
            p = self.dir / f"mcp-{v}.yaml"
            p.write_text(harness.policy_yaml(revoked_subject=f"mallory, ghost-{v}"))
            self.policies[("mcp", v)] = p
            p = self.dir / f"pg-{v}.yaml"
            p.write_text(pg.policy_yaml(revoked_subject=f"mallory, ghost-{v}"))
            self.policies[("pg", v)] = p
        self.push_count = 0
        self.digests: dict[str, list[str]] = {"mcp": [], "pg": []}

    def start(self) -> "World":
        opts = self.opts
        log(opts, f"workdir {self.dir}")
        # No statement log: a long run would write gigabytes; refused
        # statements are shown not to have run by the seed tables surviving.
        self.cluster = pg.Cluster("soak", log_statements=False, max_connections=100)
        self.cluster.start()
        log(opts, f"PostgreSQL 15 on port {self.cluster.port}")
        for kind in ("json", "sse"):
            self.servers[kind] = harness.McpServer(self.dir, f"mcp-{kind}", sse=kind == "sse",
                                                   request_log=False).start()
        log(opts, "MCP servers: " + ", ".join(f"{k} :{s.port}" for k, s in self.servers.items()))
        self.push("a")
        (self.dir / "envoy.tpl.yaml").write_text(envoy_template())
        cfg = envoyctl.render(self.dir / "envoy.tpl.yaml", self.dir / "envoy.yaml",
                              ECDS_MCP=self.ecds_mcp, ECDS_PG=self.ecds_pg, PG_PORT=self.cluster.port,
                              MCP_JSON_PORT=self.servers["json"].port, MCP_SSE_PORT=self.servers["sse"].port)
        envoyctl.validate(cfg)
        self.envoy = envoyctl.Envoy(cfg, self.dir, name="soak", log_level="warning",
                                    env={pg.PASSWORD_ENV: self.cluster.password})
        self.envoy.start(timeout=90)
        wait_reloads(self.envoy, 1, 1, timeout=30)
        log(opts, f"Envoy pid {self.envoy.pid}: listeners {self.envoy.listen_ports}")
        return self

    # -- pushes -----------------------------------------------------------------

    def push(self, variant: str) -> None:
        """`pinhole push` both policies (variant a or b), version = push number."""
        self.push_count += 1
        version = f"{self.push_count}-{variant}"
        for kind, target, name, vm, out, extra in (
            ("mcp", MCP_TARGET, MCP_FILTER, MCP_VM, self.ecds_mcp, []),
            ("pg", pg.TARGET, PG_FILTER, PG_VM, self.ecds_pg, ["--listener", "postgres"]),
        ):
            proc = subprocess.run(
                [str(self.artifacts.pinhole), "push", str(self.policies[(kind, variant)]), "--target", target,
                 *extra, "--wasm", str(self.artifacts.wasm), "--name", name, "--vm-id", vm,
                 "--version", version, "--out", str(out), "--format", "json"],
                capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                raise RuntimeError(f"pinhole push {kind} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
            summary = json.loads(proc.stdout)
            self.digests[kind].append(str(summary.get("digest", summary)))

    def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        for s in self.servers.values():
            s.stop()
        if self.cluster is not None:
            self.cluster.stop()


def ecds_counter(envoy: envoyctl.Envoy) -> tuple[int, int, dict[str, int]]:
    """(http reloads, network reloads, every extension_config_discovery stat)."""
    stats = envoy.stats("extension_config_discovery.")
    http = stats.get(f"extension_config_discovery.http_filter.{MCP_FILTER}.config_reload", 0)
    net = stats.get(f"extension_config_discovery.network_filter.{PG_FILTER}.config_reload", 0)
    return http, net, stats


def wait_reloads(envoy: envoyctl.Envoy, http: int, net: int, *, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        h, n, stats = ecds_counter(envoy)
        if h >= http and n >= net:
            return stats
        if time.monotonic() > deadline:
            raise Failure(f"ECDS update not applied (want http {http}, network {net}): {stats}")
        time.sleep(0.1)


# ---------------------------------------------------------------- MCP load

def call(tool: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "tools/call", {"name": tool, "arguments": args}


# (method, params, expected): expected is "allow", "deny" (-32001), "review" (-32002)
ANALYST_OPS: list[tuple[tuple[str, dict[str, Any]], str]] = [
    (call("k8s_get_pods", {"namespace": "payments"}), "allow"),
    (call("whoami", {}), "allow"),
    (call("query", {"sql": "SELECT id, amount FROM orders WHERE status = 'open'"}), "allow"),
    (call("query", {"sql": "SELECT * FROM secrets"}), "deny"),
    (call("delete_everything", {}), "deny"),
    (call("deploy", {"environment": "production"}), "deny"),
    (call("scale", {"replicas": 3}), "deny"),
    (call("k8s_get_secrets", {"namespace": "payments"}), "review"),
    (("resources/read", {"uri": "docs://public/readme"}), "allow"),
    (("resources/read", {"uri": "docs://secret/keys"}), "deny"),
    (("tools/list", {}), "list"),
    (("tools/list", {}), "list"),
]
DEPLOYER_OPS: list[tuple[tuple[str, dict[str, Any]], str]] = [
    (call("k8s_get_pods", {}), "allow"),
    (call("k8s_get_secrets", {"namespace": "ops"}), "allow"),
    (call("scale", {"replicas": 4}), "allow"),
    (call("scale", {"replicas": 50}), "deny"),
    (call("deploy", {"environment": "staging", "version": "1.2.3"}), "allow"),
    (call("deploy", {"environment": "production", "version": "1.2.3"}), "deny"),
    (call("delete_everything", {}), "deny"),
    (("tools/list", {}), "list"),
]
# Tools that must never run on the server, with the arguments that make them refused.
NEVER_EXECUTED = [
    ("delete_everything", None),
    ("deploy", {"environment": "production"}),
]


def denied_in_exec_log(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    bad = []
    for e in entries:
        tool, args = e.get("tool"), e.get("arguments") or {}
        if tool == "delete_everything":
            bad.append(e)
        elif tool == "deploy" and args.get("environment") == "production":
            bad.append(e)
        elif tool == "scale" and not (1 <= int(args.get("replicas", 0)) <= 10):
            bad.append(e)
        elif tool == "query" and "secrets" in str(args.get("sql", "")):
            bad.append(e)
    return bad


class Soak:
    def __init__(self, opts: Options, world: World) -> None:
        self.opts = opts
        self.world = world
        self.c = Counters()
        self.stop = threading.Event()
        self.progress: dict[str, float] = {}
        self.progress_lock = threading.Lock()
        self.expected_lists: dict[str, list[str]] = {}
        self.list_lock = threading.Lock()
        self.ids = itertools.count(100_000)
        self.ids_lock = threading.Lock()
        self.pushes_applied = 0
        self.push_latencies: list[float] = []
        self.mem: list[dict[str, Any]] = []
        self.threads: list[threading.Thread] = []
        self.t0 = time.monotonic()

    # -- helpers -------------------------------------------------------------

    def tick(self, name: str) -> None:
        with self.progress_lock:
            self.progress[name] = time.monotonic()

    def pause(self) -> None:
        if self.opts.think > 0:
            self.stop.wait(self.opts.think * random.uniform(0.5, 1.5))

    def next_id(self) -> int:
        with self.ids_lock:
            return next(self.ids)

    def check_list(self, role: str, names: list[str]) -> None:
        """Every tools/list of a role shows the same tools (the first answer,
        checked for sanity, is the reference)."""
        with self.list_lock:
            ref = self.expected_lists.get(role)
            if ref is None:
                must = {"analyst": {"k8s_get_pods", "whoami", "query"},
                        "deployer": {"k8s_get_pods", "scale", "deploy"}}[role]
                never = {"delete_everything", "run_migration"}
                if not must <= set(names) or never & set(names):
                    raise Failure(f"tools/list for {role}: unexpected {sorted(names)}")
                self.expected_lists[role] = sorted(names)
                return
        if sorted(names) != ref:
            raise Failure(f"tools/list for {role}: {sorted(names)} != {ref}")

    def worker(self, name: str, body: Callable[[str], None]) -> threading.Thread:
        def run() -> None:
            self.tick(name)
            while not self.stop.is_set():
                try:
                    body(name)
                except Failure as e:
                    self.c.fail("wrong answer", f"{name}: {e}")
                except Exception as e:  # noqa: BLE001 - every unexpected error is a failure
                    self.c.fail(type(e).__name__, f"{name}: {e!r}\n{traceback.format_exc(limit=3)}")
                    self.stop.wait(0.5)
        t = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(t)
        return t

    # -- MCP ----------------------------------------------------------------------

    def mcp_url(self, i: int) -> str:
        envoy = self.world.envoy
        assert envoy is not None
        listener = "mcp-json" if i % 2 == 0 else "mcp-sse"
        return f"http://127.0.0.1:{envoy.listen_ports[listener]}"

    def mcp_raw_session(self, name: str) -> None:
        i = int(name.rsplit("-", 1)[1])
        role = random.choice(["analyst", "analyst", "deployer"])
        group = "analysts" if role == "analyst" else "deployers"
        token = self.world.keys.mint("corp", f"soak-{name}", groups=[group], lifetime=900)
        ops = ANALYST_OPS if role == "analyst" else DEPLOYER_OPS
        url = self.mcp_url(i)
        with harness.RawMcp(url, token) as c:
            r = c.initialize()
            self.c.connected("mcp session")
            if r.status_code != 200:
                raise Failure(f"initialize: {r.status_code} {r.text[:200]}")
            self.c.ok("mcp allow")
            for n in range(random.randint(20, 60)):
                if self.stop.is_set():
                    return
                if random.random() < 0.03:
                    # No token: a 401 from the filter (an intended refusal).
                    r = c.http.post(c.url, content=json.dumps(harness.jsonrpc("tools/list", {}, id=1)),
                                    headers={k: v for k, v in c.headers().items() if k != "authorization"})
                    if r.status_code != 401:
                        raise Failure(f"request without token: {r.status_code} {r.text[:200]}")
                    self.c.ok("mcp deny (401)")
                    self.tick(name)
                    continue
                (method, params), expected = random.choice(ops)
                rid = n + 1
                r = c.post(harness.jsonrpc(method, params, id=rid))
                self.check_mcp(role, method, params, expected, r, rid)
                self.tick(name)
                self.pause()
            # End the session (DELETE passes the filter for an authenticated caller).
            r = c.http.delete(c.url, headers=c.headers())
            if r.status_code >= 500:
                raise Failure(f"DELETE session: HTTP {r.status_code} {r.text[:200]}")

    def check_mcp(self, role: str, method: str, params: dict[str, Any], expected: str,
                  r: httpx.Response, rid: int) -> None:
        what = f"{role} {method} {json.dumps(params)[:80]}"
        if r.status_code >= 500:
            raise Failure(f"{what}: HTTP {r.status_code} {r.text[:200]}")
        if r.status_code != 200:
            raise Failure(f"{what}: HTTP {r.status_code} (expected {expected}) {r.text[:200]}")
        try:
            reply = harness.parse_jsonrpc_response(r)
        except Exception as e:  # noqa: BLE001
            raise Failure(f"{what}: unreadable reply {r.text[:200]!r}: {e}") from e
        if reply.get("id") != rid:
            raise Failure(f"{what}: reply id {reply.get('id')!r} != {rid}")
        err = reply.get("error")
        if expected in ("allow", "list"):
            if err is not None or "result" not in reply:
                raise Failure(f"{what}: expected allow, got {json.dumps(reply)[:300]}")
            result = reply["result"]
            if method == "tools/call" and result.get("isError"):
                raise Failure(f"{what}: tool error {json.dumps(result)[:300]}")
            if expected == "list":
                self.check_list(role, [t["name"] for t in result.get("tools", [])])
            self.c.ok("mcp allow")
            return
        want = harness.DENIED if expected == "deny" else harness.REVIEW_REQUIRED
        if err is None or err.get("code") != want:
            raise Failure(f"{what}: expected {expected} ({want}), got {json.dumps(reply)[:300]}")
        self.c.ok(f"mcp {'deny' if expected == 'deny' else 'review'}")

    def mcp_sdk_loop(self, name: str) -> None:
        """The official SDK client: sessions of a few calls each."""
        from mcp import MCPError

        i = int(name.rsplit("-", 1)[1])

        async def session() -> None:
            token = self.world.keys.mint("corp", f"soak-{name}", groups=["analysts"], lifetime=900)
            async with harness.mcp_session(self.mcp_url(i) + "/mcp", token) as client:
                self.c.connected("mcp sdk session")
                self.c.ok("mcp allow")
                for _ in range(random.randint(10, 30)):
                    if self.stop.is_set():
                        return
                    pick = random.random()
                    if pick < 0.4:
                        res = await client.call_tool("k8s_get_pods", {"namespace": "sdk"})
                        if res.is_error:
                            raise Failure(f"sdk k8s_get_pods: tool error {res}")
                        self.c.ok("mcp allow")
                    elif pick < 0.6:
                        listed = [t.name for t in (await client.list_tools()).tools]
                        self.check_list("analyst", listed)
                        self.c.ok("mcp allow")
                    else:
                        tool, args, code = random.choice([
                            ("delete_everything", {}, harness.DENIED),
                            ("deploy", {"environment": "production"}, harness.DENIED),
                            ("k8s_get_secrets", {}, harness.REVIEW_REQUIRED),
                        ])
                        try:
                            await client.call_tool(tool, args)
                        except MCPError as e:
                            if e.code != code:
                                raise Failure(f"sdk {tool}: code {e.code} != {code}: {e.message}") from e
                            self.c.ok("mcp deny" if code == harness.DENIED else "mcp review")
                        else:
                            raise Failure(f"sdk {tool}: allowed, expected {code}")
                    self.tick(name)
                    await asyncio.sleep(self.opts.think * random.uniform(0.5, 1.5) if self.opts.think else 0)

        loop = asyncio.new_event_loop()
        try:
            while not self.stop.is_set():
                try:
                    loop.run_until_complete(asyncio.wait_for(session(), 120))
                except Failure as e:
                    self.c.fail("wrong answer", f"{name}: {e}")
                except Exception as e:  # noqa: BLE001
                    self.c.fail(type(e).__name__, f"{name}: {e!r}")
                    self.stop.wait(0.5)
                self.tick(name)
        finally:
            loop.close()

    # -- PostgreSQL --------------------------------------------------------------

    def pg_port(self) -> int:
        assert self.world.envoy is not None
        return self.world.envoy.listen_ports["postgres"]

    def pg_connect(self, name: str, role: str, driver: str = "psycopg") -> tuple[pg.Session, float]:
        group = {"analyst": "analysts", "dba": "dba"}[role]
        lifetime = 3500
        token = self.world.keys.mint("corp", f"soak-{name}", groups=[group], lifetime=lifetime)
        try:
            s = pg.connect(driver, self.pg_port(), f"soak-{name}", token)
        except pg.DbError as e:
            raise Failure(f"login as {role} refused: {e}") from e
        self.c.connected(f"pg {'long' if name.startswith('pg-long') else 'short'}")
        self.c.ok("pg allow (login)")
        # Reconnect well before the token expires (the filter ends sessions
        # whose token expired: not a failure, but not what this load tests).
        return s, time.monotonic() + lifetime - 300

    def pg_op(self, s: pg.Session, role: str) -> None:
        r = random.random()
        if role == "analyst":
            if r < 0.30:
                expect_rows(s.run("SELECT count(*) FROM orders"), "count orders")
                self.c.ok("pg allow")
            elif r < 0.50:
                expect_rows(s.params("SELECT name FROM customers WHERE id = $1", (random.randint(1, 3),)),
                            "customer by id")
                self.c.ok("pg allow")
            elif r < 0.62:
                s.prepared("SELECT id, item FROM orders WHERE amount > $1", (10,))
                self.c.ok("pg allow")
            elif r < 0.72:
                s.run("SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id")
                self.c.ok("pg allow")
            else:
                sql = random.choice(["SELECT * FROM secrets", "DROP TABLE orders", "DELETE FROM orders",
                                     "INSERT INTO orders (id, customer_id, item, amount) VALUES (9, 1, 'x', 1)",
                                     "SELECT pg_read_file('/etc/passwd')"])
                expect_refused(s, sql)
                self.c.ok("pg deny")
        else:
            if r < 0.35:
                oid = self.next_id()
                s.params("INSERT INTO orders (id, customer_id, item, amount) VALUES ($1, 1, 'soak', 1.5)", (oid,))
                s.run(f"DELETE FROM orders WHERE id = {oid}")
                self.c.ok("pg allow")
                self.c.ok("pg allow")
            elif r < 0.55:
                expect_rows(s.run("SELECT count(*) FROM customers"), "count customers")
                self.c.ok("pg allow")
            elif r < 0.65:
                s.run("UPDATE orders SET status = 'open' WHERE id = 1")
                self.c.ok("pg allow")
            else:
                sql = random.choice(["UPDATE orders SET status = 'closed'", "TRUNCATE orders",
                                     "DROP TABLE customers", "SELECT value FROM secrets WHERE id = 1"])
                expect_refused(s, sql)
                self.c.ok("pg deny")

    def pg_long(self, name: str) -> None:
        role = "dba" if name.endswith("-1") else "analyst"
        s, renew_at = self.pg_connect(name, role)
        try:
            while not self.stop.is_set() and time.monotonic() < renew_at:
                self.pg_op(s, role)
                self.tick(name)
                self.pause()
        finally:
            s.close()

    def pg_short(self, name: str) -> None:
        i = int(name.rsplit("-", 1)[1])
        role = "dba" if i % 2 == 1 else "analyst"
        driver = "pg8000" if i == 1 else "psycopg"
        if random.random() < 0.05:
            # A revoked subject: refused at login (an intended refusal).
            try:
                pg.connect(driver, self.pg_port(), "mallory",
                           self.world.keys.mint("corp", "mallory", groups=["analysts"])).close()
            except pg.DbError as e:
                if not refused_as_revoked(e):
                    raise Failure(f"revoked login: {e.sqlstate} {e.message}") from e
                self.c.ok("pg deny (login)")
                self.tick(name)
                return
            raise Failure("revoked subject logged in")
        s, _ = self.pg_connect(name, role, driver)
        try:
            for _ in range(random.randint(1, 8)):
                if self.stop.is_set():
                    break
                self.pg_op(s, role)
                self.tick(name)
                self.pause()
        finally:
            s.close()

    # -- pushes, probes, memory ------------------------------------------------------

    def probe(self, variant: str, timeout: float = 20) -> float:
        """Wait until new MCP sessions and new PG logins see variant
        `variant` (ghost-<variant> revoked, the other ghost admitted)."""
        other = "b" if variant == "a" else "a"
        t0 = time.monotonic()
        deadline = t0 + timeout
        state = ""
        while time.monotonic() < deadline:
            mcp_ok = all(self.mcp_admits(f"ghost-{g}", i) == want
                         for g, want in ((variant, False), (other, True)) for i in (0, 1))
            pg_ok = all(self.pg_admits(f"ghost-{g}") == want for g, want in ((variant, False), (other, True)))
            if mcp_ok and pg_ok:
                return time.monotonic() - t0
            state = f"mcp {mcp_ok}, pg {pg_ok}"
            time.sleep(0.2)
        raise Failure(f"policy variant {variant} not in force {timeout:.0f}s after the push ({state})")

    def mcp_admits(self, sub: str, i: int) -> bool:
        token = self.world.keys.mint("corp", sub, groups=["analysts"])
        with harness.RawMcp(self.mcp_url(i), token) as c:
            r = c.post(harness.initialize_msg())
        if r.status_code == 401 and "revoked" in r.text:
            return False
        if r.status_code == 200:
            return True
        raise Failure(f"probe {sub}: HTTP {r.status_code} {r.text[:200]}")

    def pg_admits(self, sub: str) -> bool:
        try:
            with pg.connect("psycopg", self.pg_port(), sub, self.world.keys.mint("corp", sub, groups=["analysts"])):
                return True
        except pg.DbError as e:
            if refused_as_revoked(e):
                return False
            raise Failure(f"probe {sub}: {e.sqlstate} {e.message}") from e

    def pusher(self) -> None:
        envoy = self.world.envoy
        assert envoy is not None
        n = 0
        next_at = self.t0 + self.opts.push_interval
        while not self.stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.opts.push_interval
            n += 1
            variant = VARIANTS[n % 2]
            h0, n0, _ = ecds_counter(envoy)
            try:
                t = time.monotonic()
                self.world.push(variant)
                wait_reloads(envoy, h0 + 1, n0 + 1, timeout=30)
                latency = self.probe(variant)
                self.pushes_applied += 1
                self.push_latencies.append(time.monotonic() - t)
                log(self.opts, f"push #{n} (variant {variant}) applied in {time.monotonic() - t:.2f}s "
                               f"(probe {latency:.2f}s); {self.c.total_ok} ok, {self.c.total_failed} failed")
            except Failure as e:
                self.c.fail("push", str(e))
            except Exception as e:  # noqa: BLE001
                self.c.fail("push", repr(e))

    def sample_memory(self) -> dict[str, Any]:
        envoy = self.world.envoy
        assert envoy is not None and envoy.pid is not None
        rss_kib = 0
        with open(f"/proc/{envoy.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss_kib = int(line.split()[1])
        stats: dict[str, int] = {}
        _, body = envoy.admin_get("/stats?format=json")
        for s in json.loads(body).get("stats", []):
            name = s.get("name", "")
            if isinstance(s.get("value"), int) and (name.startswith("server.memory") or "wasm" in name
                                                     and "wasmcustom" not in name):
                stats[name] = s["value"]
        return {"t": round(time.monotonic() - self.t0, 1), "rss_mib": round(rss_kib / 1024, 2), "stats": stats,
                "ok": self.c.total_ok, "failed": self.c.total_failed}

    def sampler(self) -> None:
        while True:
            try:
                self.mem.append(self.sample_memory())
            except Exception as e:  # noqa: BLE001
                self.c.fail("sampler", repr(e))
            self.check_stalls()
            if self.stop.wait(self.opts.sample_interval):
                return

    def check_stalls(self) -> None:
        now = time.monotonic()
        with self.progress_lock:
            stalled = [n for n, t in self.progress.items() if now - t > self.opts.stall]
            for n in stalled:
                self.progress[n] = now  # report once per stall period
        for n in stalled:
            self.c.fail("stall", f"{n}: no progress for {self.opts.stall:.0f}s")
        envoy = self.world.envoy
        if envoy is not None and (envoy.proc is None or envoy.proc.poll() is not None):
            self.c.fail("envoy died", envoy.log_tail(20))
            self.stop.set()

    # -- the run ---------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        opts = self.opts
        for i in range(opts.mcp_workers):
            self.worker(f"mcp-{i}", self.mcp_raw_session)
        for i in range(opts.mcp_sdk_workers):
            t = threading.Thread(target=self.mcp_sdk_loop, args=(f"mcp-sdk-{i}",), name=f"mcp-sdk-{i}", daemon=True)
            self.threads.append(t)
        for i in range(opts.pg_long_workers):
            self.worker(f"pg-long-{i}", self.pg_long)
        for i in range(opts.pg_short_workers):
            self.worker(f"pg-short-{i}", self.pg_short)
        for t in self.threads:
            self.tick(t.name)
        sampler = threading.Thread(target=self.sampler, name="sampler", daemon=True)
        pusher = threading.Thread(target=self.pusher, name="pusher", daemon=True)
        self.t0 = time.monotonic()
        for t in [*self.threads, sampler, pusher]:
            t.start()
        log(opts, f"load running for {opts.duration:.0f}s: {len(self.threads)} workers, "
                  f"a push every {opts.push_interval:.0f}s, memory every {opts.sample_interval:.0f}s")
        last_report = time.monotonic()
        while not self.stop.wait(1.0):
            if time.monotonic() - self.t0 >= opts.duration:
                break
            if time.monotonic() - last_report >= 60:
                last_report = time.monotonic()
                m = self.mem[-1] if self.mem else {}
                log(opts, f"t={time.monotonic() - self.t0:.0f}s {self.c.total_ok} ok, "
                          f"{self.c.total_failed} failed, {self.pushes_applied} pushes, rss {m.get('rss_mib')} MiB")
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
            if t.is_alive():
                self.c.fail("stall", f"{t.name} did not finish")
        pusher.join(timeout=90)
        sampler.join(timeout=30)
        with contextlib.suppress(Exception):
            self.mem.append(self.sample_memory())
        return self.finish()

    def finish(self) -> dict[str, Any]:
        world, envoy = self.world, self.world.envoy
        assert envoy is not None and world.cluster is not None
        elapsed = time.monotonic() - self.t0
        problems: list[str] = []
        # Envoy alive, ECDS counters.
        if not envoy.ready():
            problems.append("Envoy is not ready at the end")
        h, n, ecds = ecds_counter(envoy)
        attempted = world.push_count  # including the initial push
        for k, v in ecds.items():
            if ("update_failure" in k or "update_rejected" in k or "config_fail" in k) and v:
                problems.append(f"{k} = {v}")
        if h != attempted or n != attempted:
            problems.append(f"ECDS reloads http {h} / network {n}, pushes written {attempted}")
        if self.pushes_applied != attempted - 1:
            problems.append(f"pushes applied {self.pushes_applied} of {attempted - 1}")
        for kind, digests in world.digests.items():
            if any(a == b for a, b in zip(digests, digests[1:])):
                problems.append(f"{kind}: two consecutive pushes had the same blob digest")
        load_failures = sum(v for k, v in envoy.stats("wasmcustom.").items() if "policy_load_failure" in k)
        if load_failures:
            problems.append(f"pinhole.policy_load_failure = {load_failures}")
        # Envoy's log: a trap or a panic in the filter.
        bad_lines = [line for line in envoy.log_text().splitlines()
                     if "panicked" in line or "Function: proxy_on" in line or "[critical]" in line
                     or ("wasm" in line.lower() and "[error]" in line)]
        if bad_lines:
            problems.append(f"{len(bad_lines)} bad line(s) in Envoy's log, first: {bad_lines[0][:300]}")
        # Denied tools never ran; refused statements left the tables alone.
        for kind, server in world.servers.items():
            bad = denied_in_exec_log(server.exec_log.since(0))
            if bad:
                problems.append(f"MCP server {kind} executed refused calls: {bad[:3]}")
        try:
            counts = {t: world.cluster.count(t) for t in ("public.orders", "public.customers", "public.secrets")}
            if counts["public.customers"] != 3 or counts["public.secrets"] != 2 or counts["public.orders"] < 5:
                problems.append(f"seed tables changed: {counts}")
            closed = world.cluster.scalar("SELECT count(*) FROM orders WHERE status <> 'open'")
            if closed:
                problems.append(f"{closed} order(s) closed by an UPDATE that should have been refused")
        except Exception as e:  # noqa: BLE001
            problems.append(f"checking the tables: {e!r}")
        mem = memory_report(self.mem, self.opts, elapsed)
        if mem.get("verdict") == "growth":
            problems.append(f"memory grew: {mem['rss']['growth_mib']} MiB "
                            f"(limit {mem['rss']['limit_mib']} MiB)")
        summary = {
            "elapsed_s": round(elapsed, 1),
            "requests_ok": self.c.total_ok,
            "by_outcome": dict(sorted(self.c.requests.items())),
            "connections": dict(sorted(self.c.connections.items())),
            "failures": self.c.total_failed,
            "failures_by_kind": dict(self.c.failures),
            "failure_samples": self.c.samples,
            "pushes_written": attempted - 1,
            "pushes_applied": self.pushes_applied,
            "push_apply_s": describe(self.push_latencies),
            "ecds": {k: v for k, v in ecds.items() if k.endswith(("config_reload", "update_success",
                                                                  "update_failure", "update_rejected"))},
            "memory": mem,
            "problems": problems,
            "ok": not problems and self.c.total_failed == 0,
        }
        return summary


def refused_as_revoked(e: pg.DbError) -> bool:
    """A login refused for a revoked subject: SQLSTATE 28000 (psycopg gives
    no SQLSTATE for a failed connection: then the filter's message)."""
    if e.sqlstate == pg.INVALID_AUTHORIZATION:
        return True
    return e.sqlstate is None and "subject revoked" in e.message


def expect_rows(rows: list[tuple[Any, ...]], what: str) -> None:
    if not rows:
        raise Failure(f"{what}: no rows")


def expect_refused(s: pg.Session, sql: str) -> None:
    try:
        s.run(sql)
    except pg.DbError as e:
        if e.sqlstate != pg.INSUFFICIENT_PRIVILEGE:
            raise Failure(f"{sql!r}: {e.sqlstate} {e.message} (expected 42501)") from e
        return
    raise Failure(f"{sql!r} was allowed")


def describe(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    return {"n": len(xs), "min": round(min(xs), 2), "median": round(statistics.median(xs), 2),
            "max": round(max(xs), 2)}


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 2:
        return 0.0
    mt = statistics.fmean(t for t, _ in points)
    mv = statistics.fmean(v for _, v in points)
    den = sum((t - mt) ** 2 for t, _ in points)
    if den == 0:
        return 0.0
    return sum((t - mt) * (v - mv) for t, v in points) / den * 3600


def series_report(points: list[tuple[float, float]], warm: float) -> dict[str, Any]:
    if not points:
        return {}
    vals = [v for _, v in points]
    after = [(t, v) for t, v in points if t >= warm] or points
    base = statistics.median(v for _, v in after[:5])
    last = statistics.median(v for _, v in after[-5:])
    return {"first": vals[0], "last": vals[-1], "max": max(vals), "baseline": round(base, 2),
            "end": round(last, 2), "growth": round(last - base, 2),
            "slope_per_hour": round(slope_per_hour(after), 2), "samples": len(points)}


def memory_report(samples: list[dict[str, Any]], opts: Options, elapsed: float) -> dict[str, Any]:
    """RSS and admin memory gauges: first / last / max / slope; the verdict
    (see the module docstring): "growth", "stable" or "not judged"."""
    warm = max(opts.min_warmup, opts.warmup_frac * elapsed)
    if elapsed - warm < 120:
        warm = elapsed / 2  # too short to judge: report the second half
    rss = series_report([(s["t"], s["rss_mib"]) for s in samples], warm)
    out: dict[str, Any] = {"warmup_s": round(warm, 1), "rss": {}, "stats": {}}
    if rss:
        limit = max(opts.max_growth_mib, opts.max_growth_pct / 100 * rss["baseline"])
        out["rss"] = {**{f"{k}_mib" if k not in ("slope_per_hour", "samples") else k: v for k, v in rss.items()},
                      "limit_mib": round(limit, 1)}
        out["rss"]["slope_mib_per_hour"] = out["rss"].pop("slope_per_hour")
    names = sorted({k for s in samples for k in s["stats"]})
    for name in names:
        pts = [(s["t"], float(s["stats"][name])) for s in samples if name in s["stats"]]
        if name.startswith("server.memory"):
            pts = [(t, v / 2**20) for t, v in pts]
            r = series_report(pts, warm)
            out["stats"][name + " (MiB)"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}
        elif len({v for _, v in pts}) > 1 or pts[0][1]:
            out["stats"][name] = series_report(pts, warm)
    if not rss or elapsed < opts.min_judged_duration or elapsed - warm < 120:
        out["verdict"] = "not judged (run shorter than --min-judged-duration)"
    elif rss["growth"] > out["rss"]["limit_mib"] and rss["slope_per_hour"] > 0:
        out["verdict"] = "growth"
    else:
        out["verdict"] = "stable"
    return out


def print_summary(s: dict[str, Any], file: Any = sys.stdout) -> None:
    p = lambda *a: print(*a, file=file)  # noqa: E731
    p("\n==================== Pinhole soak summary ====================")
    p(f"duration            {s['elapsed_s']:.0f} s")
    p(f"requests ok         {s['requests_ok']}  ({s['requests_ok'] / max(s['elapsed_s'], 1):.0f}/s)")
    for k, v in s["by_outcome"].items():
        p(f"  {k:<24}{v}")
    p("connections         " + ", ".join(f"{k} {v}" for k, v in s["connections"].items()))
    p(f"failures            {s['failures']}  {s['failures_by_kind'] or ''}")
    for line in s["failure_samples"][:10]:
        p(f"  {line}")
    p(f"pushes applied      {s['pushes_applied']} of {s['pushes_written']}  (push → in force: {s['push_apply_s']})")
    p("ECDS                " + ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in s["ecds"].items()))
    m = s["memory"]
    r = m.get("rss", {})
    if r:
        p(f"Envoy RSS (MiB)     first {r['first_mib']}, last {r['last_mib']}, max {r['max_mib']}; after the "
          f"{m['warmup_s']:.0f}s warm-up {r['baseline_mib']} → {r['end_mib']} (growth {r['growth_mib']}, limit "
          f"{r['limit_mib']}), slope {r['slope_mib_per_hour']} MiB/h, {r['samples']} samples")
    for name, st in m.get("stats", {}).items():
        if st:
            p(f"  {name:<44} first {st['first']}, last {st['last']}, max {st['max']}, "
              f"slope {st['slope_per_hour']}/h")
    p(f"memory verdict      {m.get('verdict')}")
    for prob in s["problems"]:
        p(f"PROBLEM: {prob}")
    p(f"RESULT              {'PASS' if s['ok'] else 'FAIL'}")


def run(opts: Options, artifacts: harness.Artifacts | None = None) -> dict[str, Any]:
    """Bring the world up, run the load, tear everything down; the summary."""
    artifacts = artifacts or harness.Artifacts.locate()
    world = World(opts, artifacts)
    try:
        world.start()
        soak = Soak(opts, world)
        summary = soak.run()
        summary["workdir"] = str(world.dir)
        summary["memory_samples"] = soak.mem
        return summary
    finally:
        world.stop()
        if world._tmp and not opts.keep:
            import shutil

            shutil.rmtree(world._tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Pinhole soak: mixed MCP + PostgreSQL load with policy pushes.")
    d = Options()
    ap.add_argument("--duration", type=float, default=d.duration, help="seconds of load (default 1800)")
    ap.add_argument("--push-interval", type=float, default=d.push_interval, help="seconds between pushes (60)")
    ap.add_argument("--sample-interval", type=float, default=d.sample_interval, help="memory sampling (10 s)")
    ap.add_argument("--mcp-workers", type=int, default=d.mcp_workers)
    ap.add_argument("--mcp-sdk-workers", type=int, default=d.mcp_sdk_workers)
    ap.add_argument("--pg-long-workers", type=int, default=d.pg_long_workers)
    ap.add_argument("--pg-short-workers", type=int, default=d.pg_short_workers)
    ap.add_argument("--think", type=float, default=d.think, help="mean pause between a worker's operations (s)")
    ap.add_argument("--stall", type=float, default=d.stall)
    ap.add_argument("--max-growth-mib", type=float, default=d.max_growth_mib)
    ap.add_argument("--max-growth-pct", type=float, default=d.max_growth_pct)
    ap.add_argument("--min-judged-duration", type=float, default=d.min_judged_duration)
    ap.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the temp workdir")
    ap.add_argument("--json", type=Path, dest="json_out", help="write the summary (and samples) as JSON")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    opts = Options(duration=a.duration, push_interval=a.push_interval, sample_interval=a.sample_interval,
                   mcp_workers=a.mcp_workers, mcp_sdk_workers=a.mcp_sdk_workers,
                   pg_long_workers=a.pg_long_workers, pg_short_workers=a.pg_short_workers, think=a.think,
                   stall=a.stall, max_growth_mib=a.max_growth_mib, max_growth_pct=a.max_growth_pct,
                   min_judged_duration=a.min_judged_duration, workdir=a.workdir, keep=a.keep,
                   verbose=not a.quiet, json_out=a.json_out)
    summary = run(opts)
    print_summary(summary)
    if opts.json_out:
        opts.json_out.write_text(json.dumps(summary, indent=1) + "\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
