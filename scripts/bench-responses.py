"""MCP responses through Envoy: `tools/list` filtering (50 and 500 tools) and
a 1 MiB `tools/call` result with masking, against Envoy without a policy
filter (P) and a trivial Wasm filter (N), in the same run.

Run it once scripts/setup.sh and scripts/build.sh have run:

    .venv/bin/python scripts/bench-responses.py [--seconds 5] [--rounds 3]
        [--connections 8] [--result-bytes 1048000] [--json FILE] [--smoke]
        [--workloads list-50,list-500,result] [--with NAME=WASM ...] [--no-pin]
    .venv/bin/python scripts/bench-responses.py --write-payloads DIR   # the bodies, for
        filter/examples/response_path.rs (the same work natively)

--with NAME=WASM adds a variant NAME-mask to every workload: Pinhole built
as WASM, same policy and configuration as B, masked caller (compare two
builds in one run).

What it does, all on loopback, everything stopped at the end:

  1. a canned upstream (this script with --serve-upstream: a single-threaded
     epoll loop, keep-alive, large responses written as the socket takes
     them) answering by request path:
       /mcp/list-50, /mcp/list-500  a `tools/list` result of 50 / 500 tools
           (`catalog_<verb>_<n>`, verbs read/write/delete/admin in turn; each
           with a description and an inputSchema of 4 properties: about 560
           bytes a tool);
       /mcp/result  a `tools/call` result of --result-bytes (default 1,048,000
           bytes: just under Envoy's 1 MiB buffer limit, see below) holding
           customer records (name, email, payment card, phone, address, a
           free-text note with another email, two orders) twice, as MCP
           servers send structured results: in `structuredContent` and as
           the JSON text of `content[0].text`;
  2. three Envoys, all `--concurrency 1`, log level warning:
       P  bench/envoy/mcp-plain.yaml: no policy filter;
       N  envoy/mcp.yaml with bench/null-filter ("http": reads one request
          header; it does not read responses): the floor of any Rust
          proxy-wasm HTTP filter;
       B  envoy/mcp.yaml with Pinhole and the e2e policy (tests/e2e/harness.py
          policy_yaml()) plus RESPONSE_RULES below: analysts and deployers
          see `catalog_read_*` (a quarter of the tools; a deny rule hides
          `*_purge` tools: 20 % of the list is visible) and may call
          `customer_export`, and the masking rule `bench-hide-customers` masks `**.email` and
          `**.card` by path plus the email/payment_card/phone detectors
          everywhere, `partial: 4`, deployers exempt;
  3. checks once, before measuring: through B the filtered 50- and 500-tool
     lists are valid JSON-RPC (same id, `result.tools`) holding exactly the
     allowed tools, each entry as the upstream sent it, and the same bytes
     for the caller with masking (P passes the whole list); the 1 MiB result for alice (analyst) is valid JSON-RPC with
     every record kept and no email, card number or phone of the upstream in
     it (masked values end in their last 4 characters), and for bob
     (deployer, exempt) it is the upstream's bytes; a call without a token is
     refused;
  4. Envoy is pinned to CPU 0, wrk and the upstream to CPU 1 (taskset;
     --no-pin to let them share both);
  5. per round, per workload, every variant in turn (the starting variant
     rotates), `wrk -t1 -c C -d SECONDS --latency` with a Lua script POSTing
     one fixed body with `Authorization: Bearer <RS256 JWT>`:
       list-50, list-500  `tools/list`: P, N (alice), B as bob (deployer:
                          filtered only) and B-mask as alice (analyst:
                          filtered, then scanned by her masking rule, which
                          finds nothing in a tool list);
       result             `tools/call` of customer_export: P, N (alice), and
                          B twice: B-pass as bob (deployer: no masking rule
                          applies, the response streams through untouched)
                          and B-mask as alice (the response is buffered,
                          parsed, masked and re-serialized);
  6. prints per run requests/s, p50/p99 latency, Envoy CPU (user + system,
     /proc) per request; then per workload and variant the medians, the
     median per-round ratio of requests/s to P and the median per-round added
     Envoy CPU per request over P; for masking, B-mask over B-pass per
     request and per MiB of response.

Envoy's buffer limit: Pinhole reads a response it filters or masks whole,
so Envoy buffers it, and the buffer may not exceed the listener's
per_connection_buffer_limit_bytes (1 MiB in envoy/mcp.yaml). A larger
response is cut off: Pinhole has let the headers go on (a proxy-wasm filter
cannot hold them while it reads the body), so Envoy has sent `200` and can
only reset the stream: the client gets the status line and headers, no body
and a closed connection, never unmasked data, and no JSON-RPC error either
(Envoy counts it in http.mcp.rs_too_large). A caller without masking gets
the same response whole (it streams). The script shows it once per run with
/mcp/result-over (the same records, --result-bytes + 64 KiB); raise the
listener's limit for deployments with larger tool results or lists.

The machine's 2 cores are shared by wrk, Envoy and the upstream (and often
other jobs): single runs swing by +-20 %; believe medians of several rounds.
--smoke (1 round of 1 s, no warm-up, used by the test suite) only shows that
the script works.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))


import benchload  # noqa: E402

bh = benchload.bench_http()

PROTOCOL_VERSION = bh.PROTOCOL_VERSION
LIST_SIZES = (50, 500)
VERBS = ("read", "write", "delete", "admin")
RESULT_TOOL = "customer_export"
DEFAULT_RESULT_BYTES = 1_048_000  # ~1 MiB, under Envoy's 1 MiB (1,048,576) buffer limit
OVER_LIMIT_EXTRA = 64 * 1024
MIB = 1024 * 1024

RESPONSE_RULES = f"""
  - id: bench-no-purge
    reason: purges are not for agents
    deny:
      target: tools
      mcp:
        tools: ["*_purge"]

  - id: bench-read-catalog
    allow:
      roles: [analyst, deployer]
      target: tools
      mcp:
        tools: ["catalog_read_*"]

  - id: bench-export-customers
    allow:
      roles: [analyst, deployer]
      target: tools
      mcp:
        tools: [{RESULT_TOOL}]

masking:
  - id: bench-hide-customers
    target: tools
    fields: ["**.email", "**.card"]
    detectors: [email, payment_card, phone]
    strategy: {{ partial: 4 }}
    except_roles: [deployer]
"""

# (key, name, what), per workload. Every workload is measured against its P.
WORKLOADS: dict[str, list[tuple[str, str, str]]] = {
    "list-50": [("P", "plain", "no policy filter"), ("N", "null_wasm", "+ null Wasm filter"),
                ("B", "pinhole_pass", "+ Pinhole: list filtered"),
                ("B-mask", "pinhole_mask", "+ Pinhole: list filtered, then masked")],
    "list-500": [("P", "plain", "no policy filter"), ("N", "null_wasm", "+ null Wasm filter"),
                 ("B", "pinhole_pass", "+ Pinhole: list filtered"),
                 ("B-mask", "pinhole_mask", "+ Pinhole: list filtered, then masked")],
    "result": [("P", "plain", "no policy filter"), ("N", "null_wasm", "+ null Wasm filter"),
               ("B-pass", "pinhole_pass", "+ Pinhole, caller exempt: not masked"),
               ("B-mask", "pinhole_mask", "+ Pinhole, caller masked")],
}


# ---------------------------------------------------------------- payloads

def tools_list(n: int) -> list[dict[str, Any]]:
    """n tools as a real server lists them: name, title, description and an
    inputSchema. Every fourth is `catalog_read_*`; one in ten is a purge
    (`*_purge`, which a deny rule hides: one read tool in five)."""
    tools = []
    for i in range(n):
        verb = VERBS[i % len(VERBS)]
        name = f"catalog_{verb}_{i:04d}" + ("_purge" if i % 10 == 8 else "")
        tools.append({
            "name": name,
            "title": f"Catalog {verb} #{i}",
            "description": (f"{verb.capitalize()}s entries of catalog section {i} (products, prices and stock "
                            f"levels). Use `page` and `page_size` to walk large sections; results are sorted "
                            f"by `sort_by`."),
            "inputSchema": {
                "type": "object",
                "properties": {
                    "section": {"type": "string", "description": "catalog section id"},
                    "page": {"type": "integer", "minimum": 1, "default": 1},
                    "page_size": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    "sort_by": {"type": "string", "enum": ["name", "price", "stock", "updated"]},
                },
                "required": ["section"],
                "additionalProperties": False,
            },
            "annotations": {"readOnlyHint": verb == "read", "destructiveHint": verb in ("delete", "admin")},
        })
    return tools


def visible_tool(name: str) -> bool:
    """What the policy shows alice (analyst) and bob (deployer):
    catalog_read_*, no purge."""
    return name.startswith("catalog_read_") and not name.endswith("_purge")


def _luhn_card(i: int) -> str:
    digits = [4] + [int(c) for c in f"{(i * 7919 + 12345) % 10**14:014d}"]  # 15 digits
    total = 0
    for k, d in enumerate(reversed(digits)):  # check digit goes to the right: double every other from here
        if k % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return " ".join(s[j:j + 4] for j in range(0, 16, 4))


def customer(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"Customer {i}",
        "email": f"customer{i}@example.test",
        "card": _luhn_card(i),
        "phone": f"+44 20 7946 {i % 10000:04d}",
        "address": {"street": f"{i} Long Street", "city": "Springfield", "postcode": f"SP{i % 100} 1AB",
                    "country": "GB"},
        "notes": f"Prefers contact by mail to billing{i}@corp-mail.test; account opened 2021, tier silver.",
        "orders": [{"order_id": f"ORD-{i:06d}-{k}", "amount": round(19.5 * (k + 1) + i % 7, 2),
                    "status": "shipped"} for k in range(2)],
    }


def result_body(records: int, id_: int = 7) -> bytes:
    data = {"customers": [customer(i) for i in range(records)], "count": records}
    text = json.dumps(data, separators=(",", ":"))
    return json.dumps({"jsonrpc": "2.0", "id": id_, "result": {
        "content": [{"type": "text", "text": text}], "structuredContent": data, "isError": False}},
        separators=(",", ":")).encode()


@functools.lru_cache(maxsize=4)
def result_of_size(target: int) -> tuple[bytes, int]:
    """The largest result_body() not over `target` bytes, and its records."""
    per = len(result_body(200)) / 200
    n = max(1, int(target / per))
    body = result_body(n)
    while len(body) > target and n > 1:
        n -= max(1, (len(body) - target) // int(per) or 1)
        body = result_body(n)
    while True:
        nxt = result_body(n + 1)
        if len(nxt) > target:
            return body, n
        body, n = nxt, n + 1


@functools.lru_cache(maxsize=4)
def list_body(n: int, id_: int = 3) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "result": {"tools": tools_list(n)}},
                      separators=(",", ":")).encode()


def call_body(id_: int = 7) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": "tools/call",
                       "params": {"name": RESULT_TOOL, "arguments": {"segment": "all"}}}, separators=(",", ":"))


def list_request(id_: int = 3) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": "tools/list", "params": {}}, separators=(",", ":"))


# ---------------------------------------------------------------- upstream

def _http(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def serve_upstream(port_file: Path, result_bytes: int) -> None:
    """Answer by request path (see the module docs), HTTP/1.1 keep-alive, one
    thread, epoll; output is queued and written as the socket accepts it."""
    result, _ = result_of_size(result_bytes)
    over, _ = result_of_size(result_bytes + OVER_LIMIT_EXTRA)
    canned = {b"/mcp/list-50": _http(list_body(50)), b"/mcp/list-500": _http(list_body(500)),
              b"/mcp/result": _http(result), b"/mcp/result-over": _http(over)}
    not_found = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1024)
    ls.setblocking(False)
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(ls.getsockname()[1]))
    tmp.rename(port_file)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    # fd -> [socket, input buffer, output queue (memoryviews)]
    conns: dict[int, list[Any]] = {}

    def close(fd: int) -> None:
        c = conns.pop(fd)[0]
        ep.unregister(fd)
        c.close()

    def flush(fd: int) -> None:
        c, _, out = conns[fd]
        while out:
            try:
                sent = c.send(out[0])
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                close(fd)
                return
            if sent < len(out[0]):
                out[0] = out[0][sent:]
                break
            out.pop(0)
        ep.modify(fd, select.EPOLLIN | (select.EPOLLOUT if out else 0))

    while True:
        for fd, ev in ep.poll():
            if fd == ls.fileno():
                while True:
                    try:
                        c, _ = ls.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[c.fileno()] = [c, bytearray(), []]
                    ep.register(c.fileno(), select.EPOLLIN)
                continue
            if fd not in conns:
                continue
            if ev & select.EPOLLOUT:
                flush(fd)
                if fd not in conns:
                    continue
            if not ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                continue
            c, buf, out = conns[fd]
            try:
                data = c.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                close(fd)
                continue
            buf += data
            queued = bool(out)
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = bytes(buf[:end])
                total = bh.request_length(buf, end)
                if len(buf) < total:
                    break
                del buf[:total]
                path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
                out.append(memoryview(canned.get(path.split(b"?", 1)[0], not_found)))
            if out and not queued:
                flush(fd)


class Upstream(bh.Upstream):
    def __init__(self, workdir: Path, result_bytes: int) -> None:
        super().__init__(workdir)
        self.result_bytes = result_bytes

    def start(self) -> "Upstream":
        import harness
        port_file = self.workdir / "upstream.port"
        port_file.unlink(missing_ok=True)
        log = open(self.workdir / "upstream.log", "ab")
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(port_file),
                                      "--result-bytes", str(self.result_bytes)],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=harness._die_with_parent)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"upstream exited with {self.proc.returncode}")
            if port_file.exists():
                self.port = int(port_file.read_text())
                return self
            time.sleep(0.05)
        raise SystemExit("upstream did not start")


# ---------------------------------------------------------------- measuring

def wrk_script(workdir: Path, name: str, path: str, body: str, token: str | None) -> Path:
    lines = ['wrk.method = "POST"',
             f"wrk.path = {json.dumps(path)}",
             f"wrk.body = {json.dumps(body)}",
             'wrk.headers["content-type"] = "application/json"',
             'wrk.headers["accept"] = "application/json, text/event-stream"',
             f'wrk.headers["mcp-protocol-version"] = "{PROTOCOL_VERSION}"']
    if token:
        lines.append(f'wrk.headers["authorization"] = "Bearer {token}"')
    p = workdir / f"wrk-{name}.lua"
    p.write_text("\n".join(lines) + "\n")
    return p


def run_wrk(wrk: str, port: int, path: str, script: Path, args: argparse.Namespace, *,
            seconds: float | None = None, pid: int | None = None) -> dict[str, Any]:
    secs = seconds if seconds is not None else args.seconds
    cmd = (["taskset", "-c", "1"] if bh.pinning(args) else []) + [
        wrk, "-t1", f"-c{args.connections}", f"-d{secs:g}s", "--timeout", "30s", "--latency", "-s", str(script),
        f"http://127.0.0.1:{port}{path}"]
    cpu0 = bh.cpu_seconds(pid)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 90)
    cpu = bh.cpu_seconds(pid) - cpu0
    if p.returncode != 0:
        raise SystemExit(f"wrk failed (exit {p.returncode}):\n{p.stdout}\n{p.stderr}")
    r = bh.parse_wrk(p.stdout)
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", p.stdout)
    r["transfer_per_sec"] = f"{m.group(1)}{m.group(2)}" if m else None
    r["envoy_cpu_us_per_req"] = (cpu * 1e6 / r["requests"]) if (pid and r["requests"]) else None
    if r["non_2xx"] or not r["requests"] or r["socket_errors"]:
        raise SystemExit(f"wrk against port {port}{path}: {r['non_2xx']} non-2xx of {r['requests']} responses, "
                         f"socket errors {r['socket_errors']}\n{p.stdout}")
    return r


def post(port: int, path: str, body: str, token: str | None) -> tuple[int, bytes]:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": PROTOCOL_VERSION}
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body.encode(), headers=headers,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post_raw(port: int, path: str, body: str, token: str | None) -> dict[str, Any]:
    """One POST on a raw socket: status line, body bytes received, and
    whether the response ended cleanly (a truncated chunked body does not)."""
    head = (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"accept: application/json, text/event-stream\r\nmcp-protocol-version: {PROTOCOL_VERSION}\r\n"
            + (f"authorization: Bearer {token}\r\n" if token else "")
            + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    data = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head.encode() + body.encode())
        while True:
            try:
                chunk = s.recv(1 << 16)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    end = data.find(b"\r\n\r\n")
    status_line = bytes(data[:data.find(b"\r\n")]).decode(errors="replace")
    headers = bytes(data[:end]).decode(errors="replace").lower() if end >= 0 else ""
    payload = bytes(data[end + 4:]) if end >= 0 else b""
    complete = False
    if "transfer-encoding: chunked" in headers:
        complete = payload.endswith(b"\r\n0\r\n\r\n") or payload == b"0\r\n\r\n"
    else:
        m = re.search(r"content-length:\s*(\d+)", headers)
        complete = bool(m) and len(payload) == int(m.group(1))
    return {"status": status_line, "received_bytes": len(payload), "complete": complete}


# ---------------------------------------------------------------- checks

def _jsonrpc(status: int, body: bytes, id_: int, what: str) -> dict[str, Any]:
    if status != 200:
        raise SystemExit(f"{what}: HTTP {status}: {body[:300]!r}")
    try:
        msg = json.loads(body)
    except ValueError as e:
        raise SystemExit(f"{what}: not JSON ({e}): {body[:300]!r}") from e
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0" or msg.get("id") != id_ or "result" not in msg:
        raise SystemExit(f"{what}: not a JSON-RPC result for id {id_}: {body[:300]!r}")
    return msg


def check_lists(port_p: int, port_b: int, alice: str, bob: str, label: str = "B") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in LIST_SIZES:
        upstream = {t["name"]: t for t in tools_list(n)}
        expected = [name for name in upstream if visible_tool(name)]
        status, body = post(port_p, f"/mcp/list-{n}", list_request(), alice)
        if body != list_body(n):
            raise SystemExit(f"P: the {n}-tool list did not come through unchanged")
        status, body = post(port_b, f"/mcp/list-{n}", list_request(), bob)
        msg = _jsonrpc(status, body, 3, f"B: tools/list of {n}")
        tools = msg["result"].get("tools")
        if not isinstance(tools, list) or set(msg["result"]) != {"tools"}:
            raise SystemExit(f"B: tools/list of {n}: result is not {{tools: [...]}}")
        names = [t.get("name") for t in tools]
        if names != expected:
            raise SystemExit(f"B: tools/list of {n}: got {len(names)} tools {names[:5]}..., expected "
                             f"{len(expected)} {expected[:5]}...")
        for t in tools:
            if t != upstream[t["name"]]:
                raise SystemExit(f"B: tools/list of {n}: entry {t['name']} changed")
        # alice: the same list, then scanned by her masking rule (nothing in
        # a tool list matches it): the same bytes.
        status, masked = post(port_b, f"/mcp/list-{n}", list_request(), alice)
        if status != 200 or masked != body:
            raise SystemExit(f"B-mask: tools/list of {n} differs from the unmasked caller's: {masked[:300]!r}")
        out[str(n)] = {"upstream_bytes": len(list_body(n)), "filtered_bytes": len(body), "tools": n,
                       "visible": len(names)}
        print(f"check: tools/list of {n} tools ({len(list_body(n)):,} bytes) through {label}: valid JSON-RPC, exactly "
              f"the {len(names)} allowed tools, entries unchanged ({len(body):,} bytes); the same bytes for a "
              f"caller with masking", flush=True)
    return out


def _secrets(records: int) -> list[str]:
    out = []
    for i in range(records):
        c = customer(i)
        out += [c["email"], c["card"], c["phone"], f"billing{i}@corp-mail.test"]
    return out


def check_result(port_p: int, port_b: int, alice: str, bob: str, result_bytes: int,
                 label: str = "B") -> dict[str, Any]:
    expected, records = result_of_size(result_bytes)
    status, body = post(port_p, "/mcp/result", call_body(), alice)
    if status != 200 or body != expected:
        raise SystemExit(f"P: the result did not come through unchanged ({status}, {len(body)} bytes)")
    status, body = post(port_b, "/mcp/result", call_body(), bob)
    if status != 200 or body != expected:
        raise SystemExit(f"B (bob, exempt): the result was changed ({status}, {len(body)} bytes): {body[:300]!r}")
    status, body = post(port_b, "/mcp/result", call_body(), alice)
    msg = _jsonrpc(status, body, 7, "B (alice): tools/call result")
    structured = msg["result"].get("structuredContent") or {}
    text = json.loads(msg["result"]["content"][0]["text"])
    for what, doc in (("structuredContent", structured), ("content[0].text", text)):
        customers = doc.get("customers")
        if not isinstance(customers, list) or len(customers) != records:
            raise SystemExit(f"B (alice): {what}: expected {records} records")
        first = customers[0]
        if not ("*" in first["email"] and first["email"].endswith("test")
                and first["card"].startswith("**** ") and first["card"][-4:] == customer(0)["card"][-4:]
                and first["name"] == "Customer 0"):
            raise SystemExit(f"B (alice): {what}: record 0 not masked as expected: {first}")
    leaked = [s for s in _secrets(records) if s.encode() in body]
    if leaked:
        raise SystemExit(f"B (alice): {len(leaked)} clear values in the masked result, e.g. {leaked[:3]}")
    status, _ = post(port_b, "/mcp/result", call_body(), None)
    if status != 401:
        raise SystemExit(f"B: a call without a token got {status} (expected 401)")
    print(f"check: {len(expected):,}-byte result ({records} records, in structuredContent and as JSON text) "
          f"through {label}: exempt caller gets it unchanged; masked caller gets valid JSON-RPC, every record kept, "
          f"none of the {len(_secrets(records)):,} emails/cards/phones in clear ({len(body):,} bytes)", flush=True)
    return {"upstream_bytes": len(expected), "records": records, "masked_bytes": len(body)}


def probe_over_limit(envoy: Any, alice: str, bob: str, result_bytes: int) -> dict[str, Any]:
    """A result over Envoy's 1 MiB buffer limit through B: what the masked
    and the exempt caller get, and Envoy's rs_too_large counter."""
    size = len(result_of_size(result_bytes + OVER_LIMIT_EXTRA)[0])
    port = envoy.listen_port

    def too_large() -> int:
        return sum(v for k, v in envoy.stats("http.mcp.").items() if k.endswith(".rs_too_large"))

    before = too_large()
    masked = post_raw(port, "/mcp/result-over", call_body(), alice)
    exempt = post_raw(port, "/mcp/result-over", call_body(), bob)
    counted = too_large() - before
    print(f"over the buffer limit: a {size:,}-byte result through B: masked caller: {masked['status']}, "
          f"{masked['received_bytes']:,} body bytes, {'complete' if masked['complete'] else 'TRUNCATED'}; "
          f"exempt caller: {exempt['status']}, {exempt['received_bytes']:,} bytes, "
          f"{'complete' if exempt['complete'] else 'TRUNCATED'}; Envoy rs_too_large +{counted}", flush=True)
    return {"bytes": size, "masked": masked, "exempt": exempt, "rs_too_large": counted}


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5, help="wrk -d per run (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over every workload and variant (default 3)")
    ap.add_argument("--connections", type=int, default=8, help="wrk -c (default 8; one wrk thread)")
    ap.add_argument("--result-bytes", type=int, default=DEFAULT_RESULT_BYTES,
                    help=f"size of the tools/call result (default {DEFAULT_RESULT_BYTES:,}: just under the "
                         f"listener's 1 MiB buffer limit, which a masked response must fit)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    ap.add_argument("--smoke", action="store_true", help="1 round of 1 s, no warm-up: does it work at all")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="do not pin Envoy to CPU 0 and wrk and the upstream to CPU 1")
    ap.add_argument("--with", dest="extra", action="append", default=[], metavar="NAME=WASM",
                    help="also measure Pinhole built as WASM (same policy and configuration as B) for the masked "
                         "caller, shown as NAME-mask; repeatable: compares builds in the same run")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)")
    ap.add_argument("--write-payloads", type=Path, metavar="DIR",
                    help="only write the upstream's bodies (list-50.json, list-500.json, result.json and "
                         "result-2x.json, twice the size) to DIR, for filter/examples/response_path.rs")
    ap.add_argument("--serve-upstream", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.result_bytes)
        return 0
    if args.write_payloads:
        args.write_payloads.mkdir(parents=True, exist_ok=True)
        for name, body in (("list-50", list_body(50)), ("list-500", list_body(500)),
                           ("result", result_of_size(args.result_bytes)[0]),
                           ("result-2x", result_of_size(2 * args.result_bytes)[0])):
            (args.write_payloads / f"{name}.json").write_bytes(body)
            print(f"{args.write_payloads / name}.json: {len(body):,} bytes")
        return 0
    if args.smoke:
        args.seconds, args.rounds = 1, 1
    workloads = {w: list(WORKLOADS[w]) for w in args.workloads.split(",") if w in WORKLOADS}
    if not workloads:
        raise SystemExit(f"--workloads {args.workloads!r}: none of {', '.join(WORKLOADS)}")
    extra_wasm: dict[str, Path] = {}
    for spec in args.extra:
        name, sep, wasm_path = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not Path(wasm_path).is_file():
            raise SystemExit(f"--with {spec!r}: expected NAME=PATH of an existing .wasm")
        extra_wasm[name] = Path(wasm_path).resolve()
        for variants in workloads.values():
            variants.append((f"{name}-mask", f"{name}_mask", f"+ Pinhole {name}, caller masked"))

    import envoyctl
    import harness
    from tokens import KeySet

    wrk = bh.ensure_wrk()
    artifacts = harness.Artifacts.locate()
    null_wasm = artifacts.wasm.parent / "pinhole_null_filter.wasm"
    if not null_wasm.exists():
        raise SystemExit(f"{null_wasm} missing: run scripts/build.sh")
    workdir = Path(tempfile.mkdtemp(prefix="pinhole-bench-responses-"))
    keys = KeySet.generate()
    keys.write_jwks(workdir)
    (workdir / "policy.yaml").write_text(harness.policy_yaml() + RESPONSE_RULES)
    blob = harness.compile_policy(artifacts.pinhole, workdir / "policy.yaml", workdir / "policy.bin")
    alice = keys.mint("corp", "alice", groups=["analysts"], lifetime=3000)
    bob = keys.mint("corp", "bob", groups=["deployers"], lifetime=3000)
    result_len = len(result_of_size(args.result_bytes)[0])
    result_mib = result_len / MIB
    paths = {"list-50": "/mcp/list-50", "list-500": "/mcp/list-500", "result": "/mcp/result"}
    # Per workload: alice's script (P, N, B-mask) and bob's (B, B-pass).
    scripts = {(w, who): wrk_script(workdir, f"{w}-{who}", path, call_body() if w == "result" else list_request(),
                                    token)
               for w, path in paths.items() for who, token in (("alice", alice), ("bob", bob))}

    upstream = Upstream(workdir, args.result_bytes)
    envoys: dict[str, Any] = {}
    results: dict[str, Any] = {"config": {k: (str(v) if isinstance(v, Path) else v)
                                          for k, v in vars(args).items() if k != "serve_upstream"},
                               "checks": {}, "runs": [], "summary": {}}
    try:
        upstream.start()
        cfgs = {
            "plain": envoyctl.render(ROOT / "bench" / "envoy" / "mcp-plain.yaml", workdir / "plain.envoy.yaml",
                                     UPSTREAM_PORT=upstream.port),
            "null_wasm": envoyctl.render(ROOT / "envoy" / "mcp.yaml", workdir / "null.envoy.yaml",
                                         UPSTREAM_PORT=upstream.port, WASM=null_wasm, PLUGIN_CONFIG="http"),
            "pinhole": envoyctl.render(ROOT / "envoy" / "mcp.yaml", workdir / "pinhole.envoy.yaml",
                                       UPSTREAM_PORT=upstream.port, WASM=artifacts.wasm,
                                       PLUGIN_CONFIG=envoyctl.plugin_config("tools", blob)),
        }
        for name, wasm_path in extra_wasm.items():
            cfgs[f"extra_{name}"] = envoyctl.render(ROOT / "envoy" / "mcp.yaml", workdir / f"extra_{name}.envoy.yaml",
                                                    UPSTREAM_PORT=upstream.port, WASM=wasm_path,
                                                    PLUGIN_CONFIG=envoyctl.plugin_config("tools", blob))
        for name, cfg in cfgs.items():
            envoys[name] = envoyctl.Envoy(cfg, workdir, name=name, log_level="warning")
        # One after the other, from this thread: an Envoy started from a
        # thread that then ends gets SIGTERM (parent-death signal).
        for e in envoys.values():
            e.start(timeout=180)
        if bh.pinning(args):
            for e in envoys.values():
                bh.pin(e.pid, 0)
            bh.pin(upstream.proc.pid if upstream.proc else None, 1)
            print("pinned: Envoy on CPU 0; wrk and the upstream on CPU 1 (--no-pin to share both)", flush=True)
        port = {name: e.listen_port for name, e in envoys.items()}
        port["pinhole_pass"] = port["pinhole_mask"] = port["pinhole"]
        pid = {name: e.pid for name, e in envoys.items()}
        pid["pinhole_pass"] = pid["pinhole_mask"] = pid["pinhole"]
        for name in extra_wasm:
            port[f"{name}_mask"], pid[f"{name}_mask"] = port[f"extra_{name}"], pid[f"extra_{name}"]

        results["checks"]["lists"] = check_lists(port["plain"], port["pinhole"], alice, bob)
        results["checks"]["result"] = check_result(port["plain"], port["pinhole"], alice, bob, args.result_bytes)
        results["checks"]["over_limit"] = probe_over_limit(envoys["pinhole"], alice, bob, args.result_bytes)
        for name in extra_wasm:
            check_lists(port["plain"], port[f"{name}_mask"], alice, bob, label=name)
            check_result(port["plain"], port[f"{name}_mask"], alice, bob, args.result_bytes, label=name)

        def script_for(workload: str, name: str) -> Path:
            return scripts[(workload, "bob" if name == "pinhole_pass" else "alice")]

        if not args.smoke:  # warm-up, not counted: connections, the VMs, the JWT caches
            for workload, variants in workloads.items():
                for _, name, _ in variants:
                    run_wrk(wrk, port[name], paths[workload], script_for(workload, name), args, seconds=1)

        print(f"\nwrk -t1 -c{args.connections} -d{args.seconds:g}s, {args.rounds} round(s); Envoy --concurrency 1; "
              f"result = {result_len:,} bytes ({result_mib:.3f} MiB)", flush=True)
        print(f"{'round':>5} {'workload':>9} {'var':>10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'µs/req':>9}",
              flush=True)
        for rnd in range(1, args.rounds + 1):
            row: dict[str, Any] = {"round": rnd}
            for workload, variants in workloads.items():
                k = (rnd - 1) % len(variants)
                row[workload] = {}
                for key, name, _ in variants[k:] + variants[:k]:
                    r = run_wrk(wrk, port[name], paths[workload], script_for(workload, name), args, pid=pid[name])
                    row[workload][name] = r
                    print(f"{rnd:>5} {workload:>9} {key:>10} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} "
                          f"{r['p99_ms']:>8.2f} {_fmt(r['envoy_cpu_us_per_req']):>9}", flush=True)
            results["runs"].append(row)

        runs = results["runs"]
        summary: dict[str, Any] = {}
        for workload, variants in workloads.items():
            title = {"list-50": "tools/list, 50 tools", "list-500": "tools/list, 500 tools",
                     "result": f"tools/call, {result_len:,}-byte result"}[workload]
            if workload.startswith("list-"):
                c = results["checks"]["lists"][workload[5:]]
                title += f" ({c['upstream_bytes']:,} bytes; the caller sees {c['visible']}: {c['filtered_bytes']:,} bytes)"
            print(f"\n{title}")
            print(f"  {'variant':46} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'µs/req':>8} {'÷P req/s':>9} "
                  f"{'+µs/req':>8}")
            s_w: dict[str, Any] = {}
            for key, name, what in variants:
                per = [r[workload] for r in runs]
                s = {"rps": statistics.median(r[name]["rps"] for r in per),
                     "p50_ms": statistics.median(r[name]["p50_ms"] for r in per),
                     "p99_ms": statistics.median(r[name]["p99_ms"] for r in per),
                     "envoy_cpu_us_per_req": _median([r[name]["envoy_cpu_us_per_req"] for r in per]),
                     "rps_ratio_vs_plain": statistics.median(r[name]["rps"] / r["plain"]["rps"] for r in per),
                     "added_cpu_us_per_req": _median([_sub(r[name]["envoy_cpu_us_per_req"],
                                                           r["plain"]["envoy_cpu_us_per_req"]) for r in per])}
                s_w[name] = s
                print(f"  {key + ' ' + what:46} {s['rps']:>8.0f} {s['p50_ms']:>7.2f} {s['p99_ms']:>7.2f} "
                      f"{_fmt(s['envoy_cpu_us_per_req']):>8} {s['rps_ratio_vs_plain']:>9.3f} "
                      f"{_fmt(s['added_cpu_us_per_req']):>8}", flush=True)
            if workload == "result" and "pinhole_mask" in s_w and "pinhole_pass" in s_w:
                per = [r[workload] for r in runs]
                mask = _median([_sub(r["pinhole_mask"]["envoy_cpu_us_per_req"],
                                     r["pinhole_pass"]["envoy_cpu_us_per_req"]) for r in per])
                s_w["masking_cpu_us_per_req"] = mask
                s_w["masking_cpu_us_per_mib"] = None if mask is None else mask / result_mib
                s_w["result_bytes"] = result_len
                print(f"  masking (B-mask − B-pass, median of rounds): {_fmt(mask)} µs of Envoy CPU per request, "
                      f"{_fmt(s_w['masking_cpu_us_per_mib'])} µs per MiB")
                for name in extra_wasm:
                    m = _median([_sub(r[f"{name}_mask"]["envoy_cpu_us_per_req"],
                                      r["pinhole_pass"]["envoy_cpu_us_per_req"]) for r in per])
                    vs = _median([_div(r[f"{name}_mask"]["envoy_cpu_us_per_req"],
                                       r["pinhole_mask"]["envoy_cpu_us_per_req"]) for r in per])
                    s_w[f"{name}_masking_cpu_us_per_req"] = m
                    s_w[f"{name}_mask_cpu_vs_b_mask"] = vs
                    print(f"  masking with {name} ({name}-mask − B-pass): {_fmt(m)} µs per request, "
                          f"{_fmt(None if m is None else m / result_mib)} µs per MiB; Envoy CPU per request "
                          f"{name}-mask ÷ B-mask: {_fmt(vs, 3)}")
            summary[workload] = s_w
        results["summary"] = summary
        load = os.getloadavg()
        results["load_average"] = list(load)
        print(f"\nload average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
              f"(2 cores shared by wrk, Envoy, the upstream and others)")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nEnvoy configs and logs, policy and blob: {workdir}")
        return 0
    finally:
        for e in reversed(list(envoys.values())):
            e.stop()
        upstream.stop()


_fmt = bh._fmt
_sub = bh._sub
_median = bh._median
_div = bh._div

if __name__ == "__main__":
    sys.exit(main())
