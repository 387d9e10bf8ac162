"""The Pinhole demo: real Envoy + pinhole_filter.wasm in front of a real MCP
server (official Python SDK), callers with real JWTs, the example policy.

Run it with scripts/demo.sh (which installs and builds first). Everything
listens on 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import httpx  # noqa: E402
import jwt  # noqa: E402
from mcp import MCPError  # noqa: E402

import envoyctl  # noqa: E402
import harness  # noqa: E402
from tokens import SigningKey  # noqa: E402

WORK = ROOT / ".work" / "demo"
EXAMPLE = ROOT / "examples" / "mcp-tools" / "policy.yaml"

BOLD, DIM, GREEN, RED, YELLOW, RESET = (
    ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[33m", "\033[0m")
    if sys.stdout.isatty() else ("",) * 6
)


def say(text: str = "") -> None:
    print(text, flush=True)


def step(n: int, text: str) -> None:
    say(f"\n{BOLD}[{n}] {text}{RESET}")


def allowed(text: str) -> None:
    say(f"    {GREEN}ALLOWED{RESET}  {text}")


def refused(text: str) -> None:
    say(f"    {RED}REFUSED{RESET}  {text}")


class Identities:
    """Demo keys for the example policy's issuers, and tokens minted with them."""

    def __init__(self, keydir: Path) -> None:
        keydir.mkdir(parents=True, exist_ok=True)
        self.corp = SigningKey.new("corp-2026", "RS256")
        self.github = SigningKey.new("gha-1", "ES256")
        self.attacker = SigningKey.new("corp-2026", "RS256")  # claims corp's kid
        for name, key in (("corp-sso", self.corp), ("github", self.github)):
            (keydir / f"{name}.jwks.json").write_text(json.dumps({"keys": [key.public_jwk()]}, indent=2))

    @staticmethod
    def _claims(iss: str, sub: str, lifetime: int = 600, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": iss, "sub": sub, "aud": "pinhole", "iat": now, "nbf": now,
                "exp": now + lifetime, **extra}

    def person(self, sub: str, groups: list[str], key: SigningKey | None = None, **kw: Any) -> str:
        claims = self._claims("https://sso.acme.example", sub, groups=groups, **kw)
        k = key or self.corp
        return jwt.encode(claims, k.private, algorithm=k.alg, headers={"kid": k.kid})

    def pipeline(self, repository: str = "acme/api", ref: str = "refs/heads/main") -> str:
        claims = self._claims("https://token.actions.githubusercontent.com",
                              f"repo:{repository}:ref:{ref}", lifetime=300,
                              repository=repository, ref=ref)
        return jwt.encode(claims, self.github.private, algorithm="ES256", headers={"kid": self.github.kid})


async def list_tools(url: str, token: str | None) -> list[str]:
    async with harness.mcp_session(url, token) as client:
        result = await client.list_tools()
        return sorted(t.name for t in result.tools)


async def call(url: str, token: str, tool: str, args: dict[str, Any]) -> None:
    shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
    what = f"{tool}({shown})"
    try:
        async with harness.mcp_session(url, token) as client:
            result = await client.call_tool(tool, args)
        text = " ".join(getattr(c, "text", "") for c in result.content)[:80]
        allowed(f"{what} → {text}")
    except MCPError as e:
        refused(f"{what} → JSON-RPC {e.code}: {e.message}")


def raw_call(url: str, token: str, label: str) -> None:
    r = httpx.post(url, headers={"authorization": f"Bearer {token}", "accept": harness.MCP_ACCEPT,
                                 "content-type": "application/json"},
                   content=json.dumps(harness.initialize_msg()), timeout=30)
    if r.status_code == 401:
        refused(f"{label} → HTTP 401, WWW-Authenticate: {r.headers.get('www-authenticate')}")
    else:
        allowed(f"{label} → HTTP {r.status_code}")


async def story(url: str, direct_url: str, ids: Identities, server: harness.McpServer) -> None:
    analyst = ids.person("ana@acme.example", ["analysts"])
    dba = ids.person("dan@acme.example", ["dba"])
    deployer = ids.pipeline()

    step(1, "What the MCP server offers (asked directly, without Pinhole)")
    say(f"    {', '.join(await list_tools(direct_url, None))}")

    step(2, "tools/list through Pinhole: each identity sees only what it may use")
    say(f"    analyst (corp-sso, group analysts):          {', '.join(await list_tools(url, analyst)) or '-'}")
    say(f"    ci-deployer (GitHub Actions, acme/api@main): {', '.join(await list_tools(url, deployer)) or '-'}")

    step(3, "ci-deployer deploys")
    await call(url, deployer, "deploy", {"environment": "staging", "replicas": 2})
    await call(url, deployer, "deploy", {"environment": "production", "replicas": 2})
    await call(url, deployer, "k8s_get_pods", {"namespace": "payments"})
    await call(url, deployer, "k8s_get_secrets", {"namespace": "payments"})

    step(4, "analyst works, and tries what it may not")
    await call(url, analyst, "search_orders", {"customer": "ACME-17"})
    await call(url, analyst, "deploy", {"environment": "staging", "replicas": 1})

    step(5, "dba runs a migration: the rule asks for a reviewer")
    await call(url, dba, "run_migration", {"sql": "ALTER TABLE orders ADD COLUMN note text"})

    step(6, "Tokens that must not get in")
    raw_call(url, ids.person("contractor-7@acme.example", ["analysts"]), "contractor-7 (revoked subject)")
    raw_call(url, ids.person("ana@acme.example", ["analysts"], key=ids.attacker), "forged token (attacker key, corp's kid)")
    raw_call(url, ids.person("ana@acme.example", ["analysts"], lifetime=-120), "expired token")
    raw_call(url, ids.pipeline(repository="acme/fork"), "GitHub token from another repository")

    step(7, "What actually ran on the MCP server (its own execution log)")
    for e in server.exec_log.since(0):
        say(f"    ran: {e['tool']}({', '.join(f'{k}={v!r}' for k, v in e['arguments'].items())})")


def main() -> int:
    art = harness.Artifacts.locate()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    ids = Identities(WORK / "keys")
    policy = WORK / "policy.yaml"
    shutil.copy(EXAMPLE, policy)
    blob = harness.compile_policy(art.pinhole, policy, WORK / "policy.bin")
    say(f"{BOLD}Pinhole demo{RESET}")
    say(f"policy   {EXAMPLE.relative_to(ROOT)} (demo keys in {WORK.relative_to(ROOT)}/keys)")
    say(f"compiled `pinhole compile` → {len(blob)} bytes")

    server = harness.McpServer(WORK, "demo-mcp", sse=True).start()
    envoy = None
    try:
        config = envoyctl.render(ROOT / "envoy" / "mcp.yaml", WORK / "envoy.yaml",
                                 WASM=art.wasm, UPSTREAM_PORT=server.port,
                                 PLUGIN_CONFIG=envoyctl.plugin_config("tools", blob))
        envoy = envoyctl.Envoy(config, WORK, name="demo-envoy")
        envoy.start(timeout=60)
        url = envoy.listen_url.rstrip("/") + "/mcp"
        say(f"envoy    {envoy.listen_url} (Envoy 1.40 + pinhole_filter.wasm, target `tools`)")
        say(f"upstream {server.url} (MCP server, official Python SDK, SSE responses)")
        asyncio.run(story(url, server.url, ids, server))

        step(8, "Envoy's log: one line per decision")
        for line in envoy.log_text().splitlines():
            m = re.search(r"pinhole: (decision=.*|authentication failed.*|loaded policy.*)", line)
            if m:
                say(f"    {DIM}{m.group(1)[:200]}{RESET}")
    finally:
        if envoy is not None:
            envoy.stop()
        server.stop()
    say(f"\n{BOLD}done{RESET}: Envoy and the MCP server are stopped; files are in {WORK.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
