"""Human approval of an MCP tool call, with the real MCP SDK client and
server, Envoy and the `pinhole` CLI.

alice (analyst) calls `k8s_get_secrets`, held by `analysts-secrets-need-review`:
the JSON-RPC error names a request id and the server never runs the call; the
review webhook (an Envoy cluster) receives a notice carrying the exact call;
bob approves it with `pinhole approve --from <notice>`; with the grant in the
policy the same call (same arguments) runs, the same tool with other arguments
is still held, and bob's grant does nothing for carol."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
from mcp import MCPError

import envoyctl
import harness


class Hook:
    """The review webhook's receiver."""

    def __init__(self) -> None:
        self.notices: list[dict] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length", 0))
                outer.notices.append(json.loads(self.rfile.read(n)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _envoy(world, blob: bytes, name: str, hook_port: int) -> envoyctl.Envoy:
    server = world.mcp_server("mcp-json", sse=False)
    path = envoyctl.render(
        envoyctl.ROOT / "envoy" / "mcp.yaml", world.workdir / f"{name}.envoy.yaml",
        WASM=world.artifacts.wasm, UPSTREAM_PORT=server.port,
        PLUGIN_CONFIG=envoyctl.plugin_config("tools", blob, review_webhook={"cluster": "review_hook", "path": "/hook"}))
    text = path.read_text()
    cluster = f"""  clusters:
  - name: review_hook
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: review_hook
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {hook_port} }} }} }} }}] }}]
"""
    path.write_text(text.replace("  clusters:\n", cluster, 1))
    envoy = envoyctl.Envoy(path, world.workdir, name=name)
    world.envoys[name] = envoy
    return envoy.start(timeout=60)


def _pinhole(artifacts, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(artifacts.pinhole), *args], capture_output=True, text=True, timeout=60)


async def _call(url: str, token: str, arguments: dict) -> str:
    async with harness.mcp_session(url, token) as client:
        try:
            await client.call_tool("k8s_get_secrets", arguments)
            return "ran"
        except MCPError as e:
            return str(e)


def test_a_held_tool_call_is_approved_for_its_exact_arguments(world, artifacts, workdir: Path, tokens) -> None:
    d = workdir / "mcp-approvals"
    d.mkdir(exist_ok=True)
    for name in ("jwks-corp.json", "jwks-edge.json", "jwks-ci.json"):
        (d / name).write_bytes((workdir / name).read_bytes())
    for who in ("bob", "alice"):
        p = _pinhole(artifacts, "keygen", "--out", str(d / f"{who}.key"))
        assert p.returncode == 0, p.stderr
    text = harness.policy_yaml()
    old = "      mcp:\n        tools: [k8s_get_secrets]\n"
    assert old in text
    text = text.replace(old, old + "      approvers: [secops]\n      grant_ttl: 10m\n", 1)
    text += f"""
approvers:
  secops:
    - {{ name: bob, subject: bob, ed25519: "{(d / 'bob.key.pub').read_text().strip()}" }}
    - {{ name: alice, subject: alice, ed25519: "{(d / 'alice.key.pub').read_text().strip()}" }}
"""
    (d / "policy.yaml").write_text(text)
    v1 = harness.compile_policy(artifacts.pinhole, d / "policy.yaml", d / "v1.bin")
    hook = Hook()
    envoy = _envoy(world, v1, "mcp-approvals-v1", hook.port)
    url = envoy.listen_url + "/mcp"
    server = world.mcp_server("mcp-json", sse=False)
    args = {"namespace": "payments"}
    mark = server.exec_log.mark()

    # 1. Held: -32002 with a request id, never executed.
    out = anyio.run(_call, url, tokens.analyst("alice"), args)
    m = re.search(r"request (rq-[0-9a-f]{16})", out)
    assert m and "approval required" in out and "pinhole approve" in out, out
    request = m.group(1)
    assert not [r for r in server.exec_log.since(mark) if r.get("tool") == "k8s_get_secrets"], \
        "the held call reached the server"

    # 2. The webhook receives one notice with the exact call.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not hook.notices:
        time.sleep(0.1)
    assert hook.notices, "no review notice reached the webhook"
    notice = hook.notices[0]
    assert notice["type"] == "pinhole.review" and notice["request"] == request, notice
    ev = notice["event"]
    assert ev["decision"] == "review" and ev["identity"]["subject"] == "alice", ev
    assert ev["command"]["tool"] == "k8s_get_secrets" and ev["command"]["arguments"] == args, ev
    # Asked again: no second notice (one per request id and quiet period).
    anyio.run(_call, url, tokens.analyst("alice"), args)
    time.sleep(1.5)
    assert len([n for n in hook.notices if n["request"] == request]) == 1, hook.notices
    (d / "notice.json").write_text(json.dumps(notice))

    # 3. alice cannot approve her own request; bob can.
    p = _pinhole(artifacts, "approve", request, "--from", str(d / "notice.json"), "--policy",
                 str(d / "policy.yaml"), "--key", str(d / "alice.key"), "--yes")
    assert p.returncode == 1 and "cannot approve its own request" in p.stderr, p.stderr
    p = _pinhole(artifacts, "approve", request, "--from", str(d / "notice.json"), "--policy",
                 str(d / "policy.yaml"), "--key", str(d / "bob.key"), "--yes", "-o", str(d / "g.grant"))
    assert p.returncode == 0, p.stderr
    assert '"namespace":"payments"' in p.stderr, p.stderr  # shown before signing

    # An edited notice (other arguments, same request id) is refused.
    bad = json.loads(json.dumps(notice))
    bad["event"]["command"]["arguments"] = {"namespace": "kube-system"}
    (d / "bad.json").write_text(json.dumps(bad))
    p = _pinhole(artifacts, "approve", request, "--from", str(d / "bad.json"), "--policy",
                 str(d / "policy.yaml"), "--key", str(d / "bob.key"), "--yes")
    assert p.returncode == 1 and "altered" in p.stderr, p.stderr

    # 4. With the grant in the policy: the same call runs; other arguments
    # and other callers stay held.
    p = _pinhole(artifacts, "compile", str(d / "policy.yaml"), "--grants", str(d / "g.grant"), "-o", str(d / "v2.bin"))
    assert p.returncode == 0, p.stderr
    envoy2 = _envoy(world, (d / "v2.bin").read_bytes(), "mcp-approvals-v2", hook.port)
    url2 = envoy2.listen_url + "/mcp"
    mark = server.exec_log.mark()
    assert anyio.run(_call, url2, tokens.analyst("alice"), args) == "ran"
    assert [r["arguments"] for r in server.exec_log.since(mark) if r["tool"] == "k8s_get_secrets"] == [args]
    # The same arguments written in another key order are the same call.
    assert anyio.run(_call, url2, tokens.analyst("alice"), {"namespace": "payments"}) == "ran"
    held = anyio.run(_call, url2, tokens.analyst("alice"), {"namespace": "kube-system"})
    assert "approval required" in held, held
    held = anyio.run(_call, url2, tokens.analyst("carol"), args)
    assert "approval required" in held, held
    # The audit event of the approved call names the grant and bob.
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and '"approver":"bob"' not in envoy2.log_text():
        time.sleep(0.2)
    assert '"approver":"bob"' in envoy2.log_text()
