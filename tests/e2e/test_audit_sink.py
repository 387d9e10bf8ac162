"""The audit trail end to end: every decision reaches a real HTTP collector
(JSON lines POSTed in batches by Envoy, from the filter's root context) with
the caller's identity and the deciding rule; `pinhole audit verify` accepts
the received log and detects one edited line; strict mode refuses new
commands when events cannot be delivered."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest
from mcp import MCPError

import envoyctl
import harness


class Collector:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.posts = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length", 0))
                body = self.rfile.read(n).decode()
                outer.posts += 1
                outer.lines.extend(line for line in body.splitlines() if line.strip())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.lines]

    def close(self) -> None:
        self.server.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _envoy(world, blob: bytes, name: str, audit: dict, sink_port: int) -> envoyctl.Envoy:
    server = world.mcp_server("mcp-json", sse=False)
    path = envoyctl.render(envoyctl.ROOT / "envoy" / "mcp.yaml", world.workdir / f"{name}.envoy.yaml",
                           WASM=world.artifacts.wasm, UPSTREAM_PORT=server.port,
                           PLUGIN_CONFIG=envoyctl.plugin_config("tools", blob, audit=audit))
    text = path.read_text()
    cluster = f"""  clusters:
  - name: audit_sink
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: audit_sink
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {sink_port} }} }} }} }}] }}]
"""
    assert "  clusters:\n" in text
    path.write_text(text.replace("  clusters:\n", cluster, 1))
    envoy = envoyctl.Envoy(path, world.workdir, name=name)
    world.envoys[name] = envoy
    return envoy.start(timeout=60)


async def _calls(url: str, token: str) -> None:
    async with harness.mcp_session(url, token) as client:
        await client.call_tool("k8s_get_pods", {"namespace": "payments"})
        with pytest.raises(MCPError):
            await client.call_tool("delete_everything", {})


def test_events_reach_the_collector_and_verify(world, blob, tokens, artifacts, tmp_path: Path) -> None:
    collector = Collector()
    try:
        envoy = _envoy(world, blob, "audit-sink", {"cluster": "audit_sink", "path": "/events", "flush_ms": 200},
                       collector.port)
        anyio.run(_calls, envoy.listen_url + "/mcp", tokens.analyst("alice"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = collector.events()
            if any(e["decision"] == "deny" and e["command"].get("tool") == "delete_everything" for e in got):
                break
            time.sleep(0.1)
        got = collector.events()
        allow = [e for e in got if e["decision"] == "allow" and e["command"].get("tool") == "k8s_get_pods"]
        deny = [e for e in got if e["decision"] == "deny" and e["command"].get("tool") == "delete_everything"]
        assert allow and deny, got
        assert allow[0]["identity"]["subject"] == "alice" and "analyst" in allow[0]["identity"]["roles"]
        assert allow[0]["rule"] == "analysts-read" and deny[0]["rule"] == "no-delete-everything"
        assert allow[0]["command"]["arguments_digest"] and allow[0]["target"] == "tools"
        assert collector.posts >= 1
        # The received log verifies; an edited line is detected.
        log = tmp_path / "audit.jsonl"
        log.write_text("\n".join(collector.lines) + "\n")
        ok = subprocess.run([str(artifacts.pinhole), "audit", "verify", str(log)], capture_output=True, text=True)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        lines = collector.lines[:]
        i = next(i for i, line in enumerate(lines) if '"decision":"deny"' in line)
        lines[i] = lines[i].replace('"decision":"deny"', '"decision":"allow"')
        log.write_text("\n".join(lines) + "\n")
        bad = subprocess.run([str(artifacts.pinhole), "audit", "verify", str(log)], capture_output=True, text=True)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert "edited" in bad.stdout + bad.stderr
        sent = envoy.stats("wasmcustom.pinhole.audit_sent")
        assert sum(sent.values()) >= 2, sent
    finally:
        collector.close()


def test_strict_mode_refuses_commands_it_cannot_audit(world, blob, tokens) -> None:
    dead = _free_port()  # nothing listens there: events cannot be delivered
    envoy = _envoy(world, blob, "audit-strict",
                   {"cluster": "audit_sink", "flush_ms": 100, "strict": True, "buffer_bytes": 12000}, dead)
    refused = None
    served = 0
    with harness.RawMcp(envoy.listen_url, tokens.analyst()) as c:
        for i in range(60):
            r = c.post(harness.jsonrpc("tools/call", {"name": "k8s_get_pods", "arguments": {}}, id=i + 1))
            if r.status_code == 503:
                refused = r
                break
            served += 1
    assert refused is not None, "strict mode never refused while the collector was down"
    assert "audit" in refused.text, refused.text
    assert served >= 1, "the first commands (room in the buffer) must run"


MASKING = """
  - id: analysts-look-up-customers
    allow:
      roles: [analyst]
      target: tools
      mcp:
        tools: [customer_lookup]

masking:
  - id: hide-customer-data
    target: tools
    fields: ["**.email"]
    detectors: [email]
    strategy: redact
"""


async def _lookup(url: str, token: str) -> None:
    async with harness.mcp_session(url, token) as client:
        await client.call_tool("customer_lookup", {"customer_id": 1})


def test_masked_results_reach_the_collector(world, tokens, artifacts) -> None:
    policy = world.workdir / "policy-audit-masking.yaml"
    policy.write_text(harness.policy_yaml() + MASKING)
    masked_blob = harness.compile_policy(artifacts.pinhole, policy, world.workdir / "policy-audit-masking.bin")
    collector = Collector()
    try:
        envoy = _envoy(world, masked_blob, "audit-sink-masked",
                       {"cluster": "audit_sink", "path": "/events", "flush_ms": 200}, collector.port)
        anyio.run(_lookup, envoy.listen_url + "/mcp", tokens.analyst("alice"))
        deadline = time.monotonic() + 10
        masked: list[dict] = []
        while time.monotonic() < deadline and not masked:
            masked = [e for e in collector.events() if e["decision"] == "masked"]
            time.sleep(0.1)
        assert masked, collector.events()
        e = masked[-1]
        assert e["command"]["tool"] == "customer_lookup" and e["masked"] >= 2, e
        assert e["identity"]["subject"] == "alice" and e["rule"] == "analysts-look-up-customers", e
    finally:
        collector.close()
