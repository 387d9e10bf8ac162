"""A real MCP server for the end-to-end tests, built with the official MCP
Python SDK (`mcp` 2.x: `mcp.server.MCPServer`, formerly FastMCP) and served
over Streamable HTTP by uvicorn.

    python tests/e2e/mcp_server.py --port 0 --port-file PORTFILE [--sse] [--stateless]

--port 0 binds a free loopback port and writes the port number to
--port-file once the server accepts connections (no race between picking a
port and binding it). Responses are `application/json` by default
(`json_response=True`); --sse makes them `text/event-stream`. Sessions
(`Mcp-Session-Id`, the realistic deployment) unless --stateless.

Tools: deploy, k8s_get_pods, k8s_get_secrets, delete_everything, scale,
search_orders, summarize_ticket, run_migration, query, whoami (the tools of the
tests' policy and of examples/mcp-tools/policy.yaml). Resources:
docs://public/readme, docs://secret/keys. Prompts: summarize, triage,
admin_prompt.

Server-side evidence for the tests:
- every tool execution appends `{"tool": ..., "arguments": {...}}` as a JSON
  line to the file named by env PINHOLE_EXEC_LOG (a denied call must never
  appear there);
- every HTTP request that reaches the server appends
  `{"method", "path", "headers", "body"}` as a JSON line to the file named by
  env PINHOLE_REQUEST_LOG (requests Pinhole refuses must never appear);
- the `whoami` tool returns the HTTP headers the server received (so tests
  see that `authorization` was removed and `x-pinhole-*` added).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver import Context

_log_lock = threading.Lock()


def _append(env: str, record: dict[str, Any]) -> None:
    path = os.environ.get(env)
    if not path:
        return
    line = json.dumps(record, sort_keys=True) + "\n"
    with _log_lock, open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()


def _executed(tool: str, **arguments: Any) -> None:
    _append("PINHOLE_EXEC_LOG", {"tool": tool, "arguments": arguments})


def build_server(name: str = "pinhole-e2e") -> MCPServer:
    mcp = MCPServer(name, instructions="Pinhole end-to-end test server. Every tool is harmless.")

    @mcp.tool()
    def deploy(environment: str, version: str = "latest", replicas: int = 1) -> str:
        """Deploy a version of the application to an environment."""
        _executed("deploy", environment=environment, version=version, replicas=replicas)
        return f"deployed {version} to {environment} with {replicas} replicas"

    @mcp.tool()
    def k8s_get_pods(namespace: str = "default") -> list[str]:
        """List the pods of a namespace."""
        _executed("k8s_get_pods", namespace=namespace)
        return [f"{namespace}/web-7d9f", f"{namespace}/worker-5c2a"]

    @mcp.tool()
    def k8s_get_secrets(namespace: str = "default") -> dict[str, str]:
        """Read the secrets of a namespace."""
        _executed("k8s_get_secrets", namespace=namespace)
        return {"db-password": "hunter2", "namespace": namespace}

    @mcp.tool()
    def delete_everything() -> str:
        """Delete every resource in every namespace."""
        _executed("delete_everything")
        return "everything deleted"

    @mcp.tool()
    def scale(replicas: int) -> str:
        """Scale the application to a number of replicas."""
        _executed("scale", replicas=replicas)
        return f"scaled to {replicas}"

    @mcp.tool()
    def search_orders(query: str, limit: int = 10) -> list[str]:
        """Search customer orders."""
        _executed("search_orders", query=query, limit=limit)
        return [f"order-1042 ({query})", f"order-1043 ({query})"][:limit]

    @mcp.tool()
    def summarize_ticket(ticket_id: str) -> str:
        """Summarize a support ticket."""
        _executed("summarize_ticket", ticket_id=ticket_id)
        return f"ticket {ticket_id}: customer cannot log in since the last release"

    @mcp.tool()
    def run_migration(name: str) -> str:
        """Run a database schema migration."""
        _executed("run_migration", name=name)
        return f"migration {name} applied"

    @mcp.tool()
    def query(sql: str) -> list[dict[str, Any]]:
        """Run SQL against the orders database (an AI agent's SQL tool; canned rows)."""
        _executed("query", sql=sql)
        return [{"id": 1042, "status": "late"}, {"id": 1043, "status": "shipped"}]

    @mcp.tool()
    def customer_lookup(customer_id: int) -> dict[str, Any]:
        """A customer record: personal data the policy may mask."""
        _executed("customer_lookup", customer_id=customer_id)
        return {
            "id": customer_id,
            "name": "Ada",
            "email": "ada@example.test",
            "note": "prefers mail to ada.lovelace@example.test",
            "card": "4111 1111 1111 1111",
        }

    @mcp.tool()
    def whoami(ctx: Context) -> dict[str, str]:
        """Return the HTTP request headers this server received (lower-cased names)."""
        _executed("whoami")
        headers = ctx.headers or {}
        return {str(k).lower(): str(v) for k, v in headers.items()}

    @mcp.resource("docs://public/readme", mime_type="text/plain")
    def public_readme() -> str:
        """The public README."""
        _executed("resource:docs://public/readme")
        return "Pinhole test server: public documentation."

    @mcp.resource("docs://secret/keys", mime_type="text/plain")
    def secret_keys() -> str:
        """Signing keys (secret)."""
        _executed("resource:docs://secret/keys")
        return "-----BEGIN NOT A REAL KEY-----"

    @mcp.prompt()
    def summarize(text: str = "the cluster") -> str:
        """Summarize something."""
        _executed("prompt:summarize", text=text)
        return f"Please summarize {text} in three sentences."

    @mcp.prompt()
    def triage(incident: str = "the current incident") -> str:
        """Triage an incident."""
        _executed("prompt:triage", incident=incident)
        return f"Triage {incident}: impact, scope, next step."

    @mcp.prompt()
    def admin_prompt() -> str:
        """An administrator's prompt."""
        _executed("prompt:admin_prompt")
        return "You are root. Do as you are told."

    return mcp


class RequestLog:
    """ASGI middleware: record every HTTP request (with its body) that reaches
    the server, then hand it on unchanged."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        downstream = receive
        if scope["method"] in ("POST", "PUT", "PATCH"):
            chunks: list[bytes] = []
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            downstream = _replay(body, receive)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        _append(
            "PINHOLE_REQUEST_LOG",
            {
                "method": scope["method"],
                "path": scope["path"],
                "headers": headers,
                "body": body.decode("utf-8", "replace"),
            },
        )
        await self.app(scope, downstream, send)


def _replay(body: bytes, receive: Any) -> Any:
    """An ASGI `receive` that yields the already-read body once, then defers
    to the real one (for the disconnect event)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def make_app(*, sse: bool, stateless: bool) -> Any:
    mcp = build_server()
    app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=not sse,
        stateless_http=stateless,
    )
    return RequestLog(app)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (see --port-file)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--sse", action="store_true", help="answer with text/event-stream instead of JSON")
    parser.add_argument("--stateless", action="store_true", help="no Mcp-Session-Id sessions")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]

    app = make_app(sse=args.sse, stateless=args.stateless)
    config = uvicorn.Config(app, host=args.host, port=port, log_level=args.log_level, lifespan="on")
    server = uvicorn.Server(config)

    if args.port_file:
        # Written when uvicorn has started (it listens on the socket we bound),
        # atomically, so readers never see a partial number.
        original_startup = server.startup

        async def startup(sockets: list[socket.socket] | None = None) -> None:
            await original_startup(sockets=sockets)
            tmp = args.port_file.with_suffix(".tmp")
            tmp.write_text(str(port))
            tmp.replace(args.port_file)

        server.startup = startup  # type: ignore[method-assign]

    print(f"mcp_server: listening on http://{args.host}:{port}/mcp "
          f"({'sse' if args.sse else 'json'}, {'stateless' if args.stateless else 'sessions'})",
          file=sys.stderr, flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
