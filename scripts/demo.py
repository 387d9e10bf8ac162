"""Pinhole demo: the example policy (examples/mcp-tools/policy.yaml) enforced
by the real filter in a real Envoy, in front of a real MCP server, called by
the official MCP SDK client as two different identities.

Run it with scripts/demo.sh (which installs and builds first). Directly:

    .venv/bin/python scripts/demo.py [--serve]

--serve keeps Envoy and the MCP server running afterwards and prints tokens
and a curl command to try things by hand (Ctrl-C stops everything).

Keys: the example's JWKS files hold public keys only, so the demo generates
fresh keys with the same key ids, writes them as the JWKS next to a copy of
the policy (in .work/demo/, or $PINHOLE_DEMO_DIR), and signs its tokens with
them. Everything runs on loopback and is stopped when the demo ends; the
files (policy, blob, Envoy config and log, server logs) stay for a look.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import anyio  # noqa: E402
import httpx  # noqa: E402
from mcp import MCPError  # noqa: E402

import envoyctl  # noqa: E402
import harness  # noqa: E402
from tokens import Issuer, KeySet, SigningKey  # noqa: E402

EXAMPLE = ROOT / "examples" / "mcp-tools"

# The issuers of examples/mcp-tools/policy.yaml (iss claim, audience).
CORP_ISS = "https://sso.acme.example"
GITHUB_ISS = "https://token.actions.githubusercontent.com"
AUDIENCE = "pinhole"

COLOR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def c(code: str, text: str) -> str:
    return f"\033[{code}m{text}\033[0m" if COLOR else text


def green(t: str) -> str:
    return c("32", t)


def red(t: str) -> str:
    return c("31", t)


def bold(t: str) -> str:
    return c("1", t)


def dim(t: str) -> str:
    return c("2", t)


def short(value: Any, limit: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def heading(text: str) -> None:
    print()
    print(bold(f"── {text}"))


# ---------------------------------------------------------------- keys

def demo_keys(workdir: Path) -> KeySet:
    """Fresh keys with the kids and algorithms of the example's JWKS files,
    written where the copied policy expects its JWKS."""
    ks = KeySet()
    for name, iss, file in (("corp-sso", CORP_ISS, "corp-sso.jwks.json"),
                            ("github", GITHUB_ISS, "github.jwks.json")):
        example = json.loads((EXAMPLE / "keys" / file).read_text())
        keys = [SigningKey.new(k["kid"], k["alg"]) for k in example["keys"]]
        ks.issuers[name] = Issuer(name, iss, keys)
    ks.attacker_rsa = SigningKey.new(ks.issuers["corp-sso"].key.kid, "RS256")
    keydir = workdir / "keys"
    keydir.mkdir(parents=True, exist_ok=True)
    for name, issuer in ks.issuers.items():
        path = keydir / f"{name}.jwks.json"
        path.write_text(json.dumps(issuer.jwks(), indent=2) + "\n")
        issuer.jwks_path = path
    return ks


# ---------------------------------------------------------------- scenes

async def show_identity(url: str, title: str, token: str, calls: list[tuple[str, str, dict[str, Any]]],
                        total_tools: int) -> None:
    heading(title)
    async with harness.mcp_session(url, token) as client:
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        print(f"  {'tools/list':<61} sees {len(tools)} of {total_tools} tools: {', '.join(tools) or '(none)'}")
        for kind, name, args in calls:
            label = {"tool": f"{name} {json.dumps(args)}" if args else name,
                     "resource": f"read {name}",
                     "prompt": f"prompt {name}"}[kind]
            try:
                if kind == "tool":
                    result = await client.call_tool(name, args)
                    out = result.structured_content.get("result") if result.structured_content else None
                    out = out if out is not None else (result.content[0].text if result.content else "")
                elif kind == "resource":
                    out = (await client.read_resource(name)).contents[0].text
                else:
                    out = (await client.get_prompt(name, args)).messages[0].content.text
                print(f"  {green('✔ allowed')}  {label:<50} → {short(out, 50)}")
            except MCPError as e:
                print(f"  {red('✘ denied ')}  {label:<50} → {e.code} {short(e.message, 100)}")


def show_rejected_tokens(base_url: str, ks: KeySet) -> None:
    heading("tokens Pinhole turns away before anything reaches the MCP server")
    cases = [
        ("no token", None),
        ("expired token", ks.mint("corp-sso", "alice@acme.example", groups=["analysts"],
                                  aud=AUDIENCE, iat_offset=-1200, lifetime=600)),
        ("offboarded contractor (revoked)", ks.mint("corp-sso", "contractor-7@acme.example",
                                                     groups=["analysts"], aud=AUDIENCE)),
        ("forged signature, real key id", ks.sign(ks.claims("corp-sso", "mallory@acme.example",
                                                           groups=["sre"], aud=AUDIENCE), ks.attacker_rsa)),
        ("token for another audience", ks.mint("corp-sso", "alice@acme.example", groups=["analysts"],
                                               aud="some-other-service")),
    ]
    for label, token in cases:
        headers = {"accept": harness.MCP_ACCEPT, "content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        r = httpx.post(base_url + "/mcp", content=json.dumps(harness.initialize_msg()), headers=headers,
                       timeout=harness.REQUEST_TIMEOUT)
        reason = r.json().get("reason", "") if r.headers.get("content-type", "").startswith("application/json") else ""
        mark = red(f"✘ {r.status_code}") if r.status_code == 401 else f"? {r.status_code}"
        print(f"  {mark}  {label:<40} {dim(r.headers.get('www-authenticate', ''))}  {reason}")


async def show_review(url: str, token: str) -> None:
    heading("dba: a schema migration needs a reviewer (a `review` rule refuses until approvals exist)")
    args = {"name": "2026_11_add_order_note"}
    label = f"run_migration {json.dumps(args)}"
    async with harness.mcp_session(url, token) as client:
        try:
            await client.call_tool("run_migration", args)
            print(f"  {green('✔ allowed')}  {label}")
        except MCPError as e:
            print(f"  {red('✘ review ')}  {label:<50} → {e.code} {short(e.message, 100)}")


def show_decision_log(envoy: envoyctl.Envoy) -> None:
    heading("Envoy's log: one line per decision (abridged)")
    seen_load = False
    for line in envoy.log_text().splitlines():
        if "pinhole: loaded policy" in line and not seen_load:
            seen_load = True
            print(dim("  " + line.split("pinhole: ", 2)[-1]))
            continue
        if "pinhole: decision=" in line or "pinhole: authentication failed" in line:
            fields = dict(re.findall(r'(\w+)=("[^"]*"|\S*)', line.split("pinhole: ", 2)[-1]))
            if "decision" in fields:
                text = (f"{fields['decision']:<6} rule={fields.get('rule', '-'):<28} "
                        f"subject={fields.get('subject', '-')} op={fields.get('op', '')}")
            else:
                text = f"401    {fields.get('reason', '')}"
            print(dim(f"  {short(text, 140)}"))


def show_server_log(server: harness.McpServer, mark: int) -> None:
    heading("what the MCP server actually executed (its own log)")
    ran = server.exec_log.since(mark)
    for entry in ran:
        args = {k: v for k, v in entry["arguments"].items()}
        print(f"  {entry['tool']} {json.dumps(args) if args else ''}")
    print(dim("  Every call marked denied above is missing here: it never reached the server."))


# ---------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description="Pinhole demo")
    parser.add_argument("--serve", action="store_true", help="keep running after the demo (Ctrl-C to stop)")
    parser.add_argument("--sse", action="store_true", help="MCP server answers with SSE instead of JSON")
    args = parser.parse_args()

    artifacts = harness.Artifacts.locate()
    workdir = Path(os.environ.get("PINHOLE_DEMO_DIR") or ROOT / ".work" / "demo")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    server = envoy = None
    try:
        print(bold("Pinhole demo") + f"  policy: {EXAMPLE.relative_to(ROOT)}/policy.yaml")
        shutil.copy(EXAMPLE / "policy.yaml", workdir / "policy.yaml")
        ks = demo_keys(workdir)
        check = subprocess.run([str(artifacts.pinhole), "check", str(workdir / "policy.yaml")],
                               capture_output=True, text=True)
        print(f"  pinhole check    {(check.stdout or check.stderr).strip().splitlines()[-1]}")
        blob = harness.compile_policy(artifacts.pinhole, workdir / "policy.yaml", workdir / "policy.bin")
        print(f"  pinhole compile  policy.bin, {len(blob)} bytes")

        server = harness.McpServer(workdir, "mcp", sse=args.sse).start()
        config = envoyctl.render(envoyctl.ROOT / "envoy" / "mcp.yaml", workdir / "envoy.yaml",
                                 WASM=artifacts.wasm, UPSTREAM_PORT=server.port,
                                 PLUGIN_CONFIG=envoyctl.plugin_config("tools", blob))
        envoy = envoyctl.Envoy(config, workdir, name="envoy").start(timeout=60)
        url = envoy.listen_url + "/mcp"
        print(f"  MCP server       {server.url}  (official MCP SDK, {'SSE' if args.sse else 'JSON'} responses)")
        print(f"  Envoy + pinhole  {url}  (target `tools`)")

        async def direct_tool_count() -> int:
            async with harness.mcp_session(server.url, None) as client:
                return len((await client.list_tools()).tools)

        total = anyio.run(direct_tool_count)
        mark = server.exec_log.mark()

        deployer = ks.mint("github", "repo:acme/api:ref:refs/heads/main", aud=AUDIENCE, lifetime=600,
                           repository="acme/api", ref="refs/heads/main")
        analyst = ks.mint("corp-sso", "alice@acme.example", groups=["analysts"], aud=AUDIENCE)

        anyio.run(show_identity, url,
                  "ci-deployer: a GitHub Actions OIDC token for acme/api on main (ES256)", deployer, [
                      ("tool", "k8s_get_pods", {"namespace": "payments"}),
                      ("tool", "deploy", {"environment": "staging", "replicas": 3}),
                      ("tool", "deploy", {"environment": "production", "replicas": 3}),
                      ("tool", "deploy", {"environment": "staging", "replicas": 50}),
                      ("tool", "k8s_get_secrets", {"namespace": "payments"}),
                      ("tool", "delete_everything", {}),
                  ], total)
        anyio.run(show_identity, url,
                  "analyst: alice@acme.example, corporate SSO, group analysts (RS256)", analyst, [
                      ("tool", "search_orders", {"query": "late deliveries"}),
                      ("tool", "summarize_ticket", {"ticket_id": "T-981"}),
                      # An agent's SQL tool: each statement is classified like wire SQL.
                      ("tool", "query", {"sql": "SELECT id, total FROM orders WHERE status = 'late'"}),
                      ("tool", "query", {"sql": "DELETE FROM orders"}),
                      ("tool", "query", {"sql": "WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone"}),
                      ("tool", "query", {"sql": "SELECT pg_read_file('/etc/passwd')"}),
                      ("tool", "deploy", {"environment": "staging", "replicas": 1}),
                      ("tool", "k8s_get_pods", {}),
                      ("resource", "docs://public/readme", {}),
                      ("resource", "docs://secret/keys", {}),
                      ("prompt", "summarize", {"text": "yesterday's incidents"}),
                      ("prompt", "admin_prompt", {}),
                  ], total)
        dba = ks.mint("corp-sso", "dan@acme.example", groups=["dba"], aud=AUDIENCE)
        anyio.run(show_review, url, dba)

        # The same pipeline claims from a fork: no role, so nothing at all.
        fork = ks.mint("github", "repo:acme/api-fork:ref:refs/heads/main", aud=AUDIENCE, lifetime=600,
                       repository="acme/api-fork", ref="refs/heads/main")
        anyio.run(show_identity, url, "a GitHub Actions token from a fork (acme/api-fork): no role", fork, [
            ("tool", "deploy", {"environment": "staging", "replicas": 1}),
        ], total)

        show_rejected_tokens(envoy.listen_url, ks)
        show_server_log(server, mark)
        show_decision_log(envoy)

        if args.serve:
            heading("serving; Ctrl-C to stop")
            print(f"  export ANALYST={analyst}")
            print(f"  curl -s {url} -H \"authorization: Bearer $ANALYST\" -H 'content-type: application/json' \\")
            print("       -H 'accept: application/json, text/event-stream' \\")
            print("       -d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
                  "\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"curl\",\"version\":\"1\"}}}'")
            print(f"  Envoy log: {envoy.log_path}")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        print()
        print(dim(f"Envoy and the MCP server are stopped; policy, blob, configs and logs are in {workdir}"))
        return 0
    finally:
        if envoy is not None:
            envoy.stop()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
