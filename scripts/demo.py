"""Pinhole demo: the example policies enforced by the real filter in a real
Envoy: examples/mcp-tools/policy.yaml in front of a real MCP server, called
by the official MCP SDK client as several identities, and
examples/orders-db/policy.yaml in front of a real PostgreSQL 15, used with
psql, logging in with JWTs.

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
import pg  # noqa: E402
from tokens import Issuer, KeySet, SigningKey  # noqa: E402

EXAMPLE = ROOT / "examples" / "mcp-tools"
PG_EXAMPLE = ROOT / "examples" / "orders-db"

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
    heading("dba: a schema migration needs a reviewer (held with a request id until a dba lead approves it)")
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

def show_postgres(artifacts: harness.Artifacts, workdir: Path, ks: KeySet, cluster: pg.Cluster) -> envoyctl.Envoy:
    """examples/orders-db/policy.yaml on a PostgreSQL listener: psql logs in
    with JWTs, every statement is decided."""
    heading("PostgreSQL: examples/orders-db/policy.yaml, psql through Envoy (network filter + tcp_proxy)")
    # The example's backend role and password variable, renamed to the demo
    # cluster's; its JWKS path pointed at the demo keys.
    text = (PG_EXAMPLE / "policy.yaml").read_text()
    text = text.replace("backend_user: orders_app", f"backend_user: {pg.BACKEND_USER}")
    text = text.replace("backend_password_env: ORDERS_DB_PASSWORD", f"backend_password_env: {pg.PASSWORD_ENV}")
    text = text.replace("../mcp-tools/keys/", "keys/")
    (workdir / "orders-db.policy.yaml").write_text(text)
    # Delivered the way operators do it: `pinhole push` writes the ECDS file
    # Envoy watches (envoy/postgres-ecds.yaml), so later pushes (a grant, a
    # revocation) apply without a restart.
    ecds_path = workdir / "orders-db.ecds.json"
    push = [str(artifacts.pinhole), "push", str(workdir / "orders-db.policy.yaml"), "--target", "orders-db",
            "--wasm", str(artifacts.wasm), "--vm-id", "pinhole-postgres-ecds", "--out", str(ecds_path)]
    subprocess.run(push + ["--version", "v1"], check=True, capture_output=True, text=True)
    config = envoyctl.render(envoyctl.ROOT / "envoy" / "postgres-ecds.yaml", workdir / "envoy-postgres.yaml",
                             UPSTREAM_PORT=cluster.port, ECDS_PATH=ecds_path)
    envoy = envoyctl.Envoy(config, workdir, name="envoy-postgres",
                           env={pg.PASSWORD_ENV: cluster.password}).start(timeout=60)
    envoy.wait_ecds_reloads(1)
    port = envoy.listen_port
    print(f"  PostgreSQL 15    127.0.0.1:{cluster.port}  (backend role {pg.BACKEND_USER}, scram-sha-256; "
          f"its password only in Envoy's environment)")
    print(f"  Envoy + pinhole  127.0.0.1:{port}  (target `orders-db`)")
    mark = cluster.log_mark()

    def run(title: str, token: str, statements: list[str]) -> None:
        print()
        print(bold(title))
        for sql in statements:
            r = pg.psql(port, "alice", token, sql, stop_on_error=True)
            if r.returncode == 0:
                out = " | ".join(r.stdout.strip().splitlines()) or "ok"
                print(f"  {green('ALLOW ')} {short(sql, 60):60}  → {short(out, 50)}")
            else:
                err = next((ln for ln in r.stderr.splitlines() if "ERROR" in ln or "FATAL" in ln),
                           r.stderr.strip())
                err = re.sub(r"^.*?(ERROR|FATAL):\s*", r"\1 ", err)
                print(f"  {red('REFUSE')} {short(sql, 60):60}  → {short(err, 110)}")

    analyst = ks.mint("corp-sso", "alice@acme.example", groups=["analysts"], aud=AUDIENCE)
    run("analyst alice@acme.example (psql, JWT as the password)", analyst, [
        "SELECT current_user, count(*) FROM orders",
        "SELECT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.id LIMIT 1",
        "DROP TABLE orders",
        "SELECT 1; DELETE FROM orders",
        "SELECT * FROM secrets",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT set_config('search_path', 'private', false)",
    ])
    dba = ks.mint("corp-sso", "dan@acme.example", groups=["dba"], aud=AUDIENCE)
    run("dba dan@acme.example", dba, [
        "UPDATE orders SET status = 'late' WHERE id = 1",
        "DELETE FROM orders",
        "ALTER TABLE orders ADD COLUMN note text",
        "TRUNCATE orders",
    ])
    show_approval(artifacts, workdir, envoy, port, dba, push)
    print()
    print(bold("refused logins"))
    for title, token in (
            ("expired token", ks.mint("corp-sso", "alice@acme.example", groups=["analysts"],
                                      aud=AUDIENCE, iat_offset=-1200, lifetime=600)),
            ("revoked contractor", ks.mint("corp-sso", "contractor-7@acme.example", groups=["analysts"],
                                           aud=AUDIENCE)),
            ("forged signature", ks.sign(ks.claims("corp-sso", "mallory@acme.example", groups=["dba"],
                                                   aud=AUDIENCE), ks.attacker_rsa)),
            ("not a JWT", "hunter2")):
        r = pg.psql(port, "alice", token, "SELECT 1")
        err = next((ln for ln in r.stderr.splitlines() if "FATAL" in ln), r.stderr.strip())
        print(f"  {red('REFUSE')} {title:20} → {short(err[err.find('FATAL'):], 110)}")
    print()
    print(bold("what the database itself ran") + dim(" (its statement log; refusals arrive as DO blocks that raise 42501)"))
    for st in cluster.statements_since(mark):
        one = " ".join(st.split())
        print(f"  {dim('ran')} {short(one, 110)}")
    return envoy



def show_approval(artifacts: harness.Artifacts, workdir: Path, envoy: envoyctl.Envoy, port: int,
                  dba: str, push: list[str]) -> None:
    """Story 4: the held ALTER is approved by a dba lead and runs; another
    statement is still held."""
    print()
    print(bold("a reviewer approves dan's ALTER TABLE") + dim("  (pinhole approve, signed with olga's key; pushed with the policy)"))
    alter = "ALTER TABLE orders ADD COLUMN note text"
    r = pg.psql(port, "alice", dba, alter)
    m = re.search(r"request (rq-[0-9a-f]{16})", r.stderr)
    if not m:
        print(f"  {red('?')} no request id in the refusal: {short(r.stderr, 120)}")
        return
    request = m.group(1)
    print(f"  held           request {request}")
    deadline = time.monotonic() + 20  # Envoy writes its log in batches
    while time.monotonic() < deadline and request not in envoy.log_text():
        time.sleep(0.2)
    grant = workdir / f"{request}.grant"
    keys = ROOT / "examples" / "keys-demo"
    ok = subprocess.run([str(artifacts.pinhole), "approve", request, "--from", str(envoy.log_path),
                         "--policy", str(workdir / "orders-db.policy.yaml"), "--key", str(keys / "olga.key"),
                         "--for", "10m", "--yes", "-o", str(grant)], capture_output=True, text=True)
    if ok.returncode != 0:
        print(f"  {red('✘')} pinhole approve failed: {short(ok.stderr, 200)}")
        return
    for line in ok.stderr.splitlines()[:7]:
        print(dim(f"  {line}"))
    subprocess.run(push + ["--version", "v2", "--grants", str(grant)], check=True, capture_output=True, text=True)
    envoy.wait_ecds_reloads(2)
    print(f"  pushed         the policy with the grant (ECDS; Envoy not restarted)")
    for sql in (alter, "ALTER TABLE orders ADD COLUMN other text"):
        r = pg.psql(port, "alice", dba, sql)
        if r.returncode == 0:
            print(f"  {green('ALLOW ')} {short(sql, 60):60}  → approved by olga")
        else:
            err = next((ln for ln in r.stderr.splitlines() if "ERROR" in ln), r.stderr.strip())
            err = re.sub(r"^.*?ERROR:\s*", "", err)
            print(f"  {red('REFUSE')} {short(sql, 60):60}  → {short(err, 90)}")


def main() -> int:
    parser = argparse.ArgumentParser(description="Pinhole demo")
    parser.add_argument("--serve", action="store_true", help="keep running after the demo (Ctrl-C to stop)")
    parser.add_argument("--sse", action="store_true", help="MCP server answers with SSE instead of JSON")
    args = parser.parse_args()

    artifacts = harness.Artifacts.locate()
    workdir = Path(os.environ.get("PINHOLE_DEMO_DIR") or ROOT / ".work" / "demo")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    server = envoy = pg_envoy = cluster = None
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

        cluster = pg.Cluster("demo", log_statements=True).start()
        cluster.set_auth("scram-sha-256")
        pg_envoy = show_postgres(artifacts, workdir, ks, cluster)
        show_decision_log(pg_envoy)

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
        print(dim(f"Envoy, the MCP server and PostgreSQL are stopped; policies, blobs, configs and logs are in {workdir}"))
        return 0
    finally:
        if pg_envoy is not None:
            pg_envoy.stop()
        if cluster is not None:
            cluster.stop()
        if envoy is not None:
            envoy.stop()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
