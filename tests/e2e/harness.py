"""Shared pieces of the end-to-end tests (and the demo): artifacts, the test
policy, the MCP server process, server-side logs, MCP and raw HTTP clients.

Fixtures live in conftest.py; this module has no pytest dependency so the
demo can reuse it.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from envoyctl import stop_process  # noqa: F401 - re-exported for the tests and the demo

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# Protocol revision of the initialize handshake the SDK client offers; and
# the headers every Streamable HTTP POST carries.
MCP_ACCEPT = "application/json, text/event-stream"

# Seconds any single request through Envoy may take before the test fails.
REQUEST_TIMEOUT = 15.0

# JSON-RPC error codes of the filter contract.
DENIED = -32001
REVIEW_REQUIRED = -32002
BATCH_REFUSED = -32003
PARSE_ERROR = -32700
INVALID_REQUEST = -32600


# ---------------------------------------------------------------- artifacts

@dataclass
class Artifacts:
    wasm: Path
    pinhole: Path
    envoy: Path

    @staticmethod
    def locate() -> "Artifacts":
        """From PINHOLE_WASM / PINHOLE_BIN / ENVOY (set by scripts/test.sh),
        defaulting to where scripts/build.sh and scripts/setup.sh put them."""
        wasm = Path(os.environ.get("PINHOLE_WASM") or ROOT / "target/wasm32-wasip1/release/pinhole_filter.wasm")
        pinhole = Path(os.environ.get("PINHOLE_BIN") or ROOT / "target/release/pinhole")
        envoy = Path(os.environ.get("ENVOY") or ROOT / ".venv/bin/envoy")
        missing = [str(p) for p in (wasm, pinhole, envoy) if not p.exists()]
        if missing:
            raise FileNotFoundError(
                "missing build artifacts: " + ", ".join(missing)
                + " (run scripts/setup.sh and scripts/build.sh, or scripts/test.sh)"
            )
        return Artifacts(wasm.resolve(), pinhole.resolve(), envoy.resolve())


# ---------------------------------------------------------------- processes

def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the test process dies, so an
    aborted run (SIGKILL, crash) does not leave servers behind."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class McpServer:
    """tests/e2e/mcp_server.py in a subprocess on a free loopback port."""

    def __init__(self, workdir: Path, name: str, *, sse: bool = False, stateless: bool = False,
                 request_log: bool = True) -> None:
        self.workdir = workdir
        self.name = name
        self.sse = sse
        self.stateless = stateless
        # False: no per-request log (long runs such as the soak; tool
        # executions are still logged).
        self.log_requests = request_log
        self.exec_log = JsonLog(workdir / f"{name}.exec.jsonl")
        self.request_log = JsonLog(workdir / f"{name}.requests.jsonl")
        self.log_path = workdir / f"{name}.server.log"
        self.port_file = workdir / f"{name}.port"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self, timeout: float = 30) -> "McpServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        cmd = [sys.executable, str(HERE / "mcp_server.py"), "--port", "0", "--port-file", str(self.port_file)]
        if self.sse:
            cmd.append("--sse")
        if self.stateless:
            cmd.append("--stateless")
        env = dict(os.environ,
                   PINHOLE_EXEC_LOG=str(self.exec_log.path),
                   PINHOLE_REQUEST_LOG=str(self.request_log.path) if self.log_requests else "",
                   PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"MCP server {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.port_file.exists():
                self.port = int(self.port_file.read_text())
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"MCP server {self.name} did not start in {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(text[-lines:])


class JsonLog:
    """A JSON-lines file written by a server; read it from a mark on, so that
    tests sharing a server only see what they caused."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def since(self, mark: int) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(mark)
                data = f.read()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


# ---------------------------------------------------------------- the policy

def policy_yaml(*, revoked_subject: str = "mallory") -> str:
    """The policy the tests run against (language: docs/policy.md).

    Identities (tokens.py): corp (RS256, rotated keys), edge (ES256), ci (EdDSA).
    Roles: analyst (group analysts, any issuer), deployer (group deployers, corp
    only), release-bot (ci tokens of acme/app on main).
    Targets: tools (the MCP servers), tools-fwd (same, forwarding the token),
    api (a plain HTTP upstream)."""
    return f"""\
# Pinhole end-to-end test policy (generated by tests/e2e/harness.py).
version: 1
name: pinhole-e2e

identity:
  issuers:
    - name: corp
      issuer: https://sso.corp.test
      audiences: [pinhole-mcp]
      algorithms: [RS256]
      jwks: jwks-corp.json
      groups_claim: groups
      max_token_lifetime: 1h
      leeway: 30s
    - name: edge
      issuer: https://edge-idp.test
      audiences: [pinhole-mcp]
      algorithms: [ES256]
      jwks: jwks-edge.json
      groups_claim: groups
      max_token_lifetime: 1h
    - name: ci
      issuer: https://ci.tokens.test
      audiences: [pinhole-mcp]
      algorithms: [EdDSA]
      jwks: jwks-ci.json
      max_token_lifetime: 1h
  revoked:
    subjects: [{revoked_subject}]

roles:
  analyst:
    groups: [analysts]
  deployer:
    issuer: corp
    groups: [deployers]
  release-bot:
    issuer: ci
    claims:
      repository: acme/app
      ref: refs/heads/main

targets:
  tools:
    protocol: mcp
  tools-fwd:
    protocol: mcp
    forward_token: true
  api:
    protocol: http

rules:
  - id: no-delete-everything
    reason: irreversible, nobody calls it through Pinhole
    deny:
      target: tools
      mcp:
        tools: [delete_everything]

  - id: no-production-deploys
    reason: production deploys go through the release pipeline
    deny:
      target: tools
      mcp:
        tools: [deploy]
        arguments:
          environment: production

  - id: analysts-read
    allow:
      roles: [analyst]
      target: tools
      mcp:
        tools: [k8s_get_pods, whoami]
        resources: ["docs://public/**"]
        prompts: [summarize]

  - id: analysts-secrets-need-review
    reason: reading secrets needs a reviewer
    review:
      roles: [analyst]
      target: tools
      mcp:
        tools: [k8s_get_secrets]

  - id: analysts-sql-orders
    reason: agents read orders, nothing else
    allow:
      roles: [analyst]
      target: tools
      mcp:
        tools: [query]
        sql_argument: sql
        sql: {{ statements: [select], tables: [public.orders] }}

  - id: deployers-operate
    allow:
      roles: [deployer]
      target: tools
      mcp:
        tools: ["k8s_*", whoami]
        resources: ["docs://**"]
        prompts: ["*"]

  - id: deployers-scale-bounded
    allow:
      roles: [deployer]
      target: tools
      mcp:
        tools: [scale]
        arguments:
          replicas: {{ min: 1, max: 10 }}

  - id: deploy-to-staging
    allow:
      roles: [deployer, release-bot]
      target: tools
      mcp:
        tools: [deploy]
        arguments:
          environment: [staging]

  - id: bot-whoami
    allow:
      roles: [release-bot]
      target: tools
      mcp:
        tools: [whoami]

  - id: anyone-whoami-forwarded
    allow:
      target: tools-fwd
      mcp:
        tools: [whoami]

  - id: api-read
    allow:
      roles: [analyst, deployer]
      target: api
      http:
        methods: [GET]
        paths: [/v1/pods, "/v1/pods/*"]

  - id: api-no-admin
    reason: the admin API is off limits
    deny:
      target: api
      http:
        paths: ["/v1/admin/**"]
"""


def compile_policy(pinhole: Path, source: Path, out: Path) -> bytes:
    """`pinhole compile SOURCE -o OUT`; returns the blob."""
    proc = subprocess.run([str(pinhole), "compile", str(source), "-o", str(out)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(
            f"pinhole compile {source} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return out.read_bytes()


def corrupt_blob(blob: bytes, how: str) -> str:
    """A broken plugin `policy` value (base64 text)."""
    if how == "flipped":
        b = bytearray(blob)
        i = len(b) // 2
        b[i] ^= 0x5A
        return base64.b64encode(bytes(b)).decode()
    if how == "truncated":
        return base64.b64encode(blob[: len(blob) // 2]).decode()
    if how == "wrong-magic":
        return base64.b64encode(b"NOTPINHOLE" + blob[10:]).decode()
    if how == "not-base64":
        return "this is *not* base64 %%%"
    if how == "empty":
        return ""
    raise ValueError(how)


# ---------------------------------------------------------------- clients

def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def mcp_session(url: str, token: str | None, *, mode: str = "legacy",
                      headers: dict[str, str] | None = None) -> AsyncIterator[Client]:
    """An official-SDK MCP client (Streamable HTTP) carrying a bearer token.

    mode: "legacy" = initialize handshake + Mcp-Session-Id (handshake-era
    protocol revisions, what deployed clients speak); "2026-07-28" = the
    stateless per-request revision; "auto" = the SDK default (probes
    server/discover, falls back to initialize)."""
    hdrs = dict(headers or {})
    if token is not None:
        hdrs.update(bearer(token))
    # A failure inside the `async with` body (an assertion, an MCPError the
    # test did not expect) would come out wrapped in two levels of anyio
    # ExceptionGroups from the SDK's task groups; keep it aside while the
    # client shuts down and re-raise it as itself.
    failure: BaseException | None = None
    # Short timeouts: every answer here comes from loopback in milliseconds;
    # a filter that stalls a stream should fail the test, not hang the run.
    async with httpx2.AsyncClient(headers=hdrs, timeout=httpx2.Timeout(REQUEST_TIMEOUT)) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode,
                          read_timeout_seconds=REQUEST_TIMEOUT) as client:
            try:
                yield client
            except BaseException as e:  # noqa: BLE001 - re-raised below
                if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit,
                                  anyio.get_cancelled_exc_class())):
                    raise
                failure = e
    if failure is not None:
        raise failure


def jsonrpc(method: str, params: dict[str, Any] | None = None, id: Any = 1) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        msg["id"] = id
    if params is not None:
        msg["params"] = params
    return msg


def initialize_msg(id: Any = 0) -> dict[str, Any]:
    return jsonrpc("initialize", {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "pinhole-e2e-raw", "version": "1"},
    }, id=id)


class RawMcp:
    """Raw Streamable HTTP over httpx, for what the SDK client cannot send
    (batches, malformed bodies, bad tokens)."""

    def __init__(self, base_url: str, token: str | None, *, marker: str | None = None) -> None:
        self.url = base_url.rstrip("/") + "/mcp"
        self.token = token
        self.marker = marker or uuid.uuid4().hex
        self.session_id: str | None = None
        self.http = httpx.Client(timeout=REQUEST_TIMEOUT)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"accept": MCP_ACCEPT, "content-type": "application/json", "x-e2e-marker": self.marker}
        if self.token is not None:
            h["authorization"] = f"Bearer {self.token}"
        if self.session_id:
            h["mcp-session-id"] = self.session_id
            h["mcp-protocol-version"] = "2025-06-18"
        if extra:
            h.update(extra)
        return h

    def post(self, body: Any, *, raw: bytes | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        content = raw if raw is not None else json.dumps(body).encode()
        return self.http.post(self.url, content=content, headers=self.headers(headers))

    def initialize(self) -> httpx.Response:
        r = self.post(initialize_msg())
        r.raise_for_status()
        self.session_id = r.headers.get("mcp-session-id")
        n = self.post(jsonrpc("notifications/initialized", id=None))
        assert n.status_code in (200, 202), n.text
        return r

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "RawMcp":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_jsonrpc_response(r: httpx.Response) -> Any:
    """The JSON-RPC payload of a response, JSON or SSE (the last data event)."""
    ctype = r.headers.get("content-type", "")
    if ctype.startswith("text/event-stream"):
        data = [line[5:].strip() for line in r.text.splitlines() if line.startswith("data:")]
        data = [d for d in data if d]
        assert data, f"SSE response without data: {r.text!r}"
        return json.loads(data[-1])
    return r.json()


def reached(log: JsonLog, mark: int, marker: str) -> list[dict[str, Any]]:
    """Requests carrying `marker` that reached the server since `mark`."""
    return [r for r in log.since(mark) if r.get("headers", {}).get("x-e2e-marker") == marker]
