"""MCP tools/call through Envoy: no policy filter (P), a trivial Wasm filter
(N), Envoy's native jwt_authn + mcp + rbac (E), and Pinhole (B).

Run it once scripts/setup.sh and scripts/build.sh have run:

    .venv/bin/python scripts/bench-http.py [--seconds 5] [--rounds 3]
        [--connections 8] [--json FILE] [--check] [--smoke]
        [--only P,N,Nb,E,B] [--with NAME=WASM ...] [--no-pin]

--with NAME=WASM adds a variant: Pinhole built as WASM, same policy and
configuration as B (compare two builds in one run; the same build twice shows
the noise between two Envoy processes, about +-6 us per request here).
--only runs a subset (P is always run: everything is measured against it).

What it does, all on loopback, everything stopped at the end:

  1. a canned upstream (this script with --serve-upstream: a single-threaded
     epoll loop in Python that answers every request with one fixed JSON-RPC
     result, keep-alive; the MCP SDK server would be the bottleneck). Its own
     ceiling is measured first, wrk straight at it;
  2. five Envoys, all `--concurrency 1`, log level warning (the Wasm
     component at info, so Pinhole's audit lines are written), the same
     listener, stdout access log, buffer filter and router as envoy/mcp.yaml:
       P  bench/envoy/mcp-plain.yaml: no policy filter;
       N  envoy/mcp.yaml with bench/null-filter (reads one request header):
          the floor any Rust proxy-wasm HTTP filter pays;
       Nb the same null filter configured "http-body": it also waits for
          and reads the whole request body, as any filter deciding on a
          JSON-RPC body must;
       E  bench/envoy/mcp-native.yaml: jwt_authn (same issuer, key and
          audience, local JWKS, token cache on) + mcp (JSON-RPC body into
          dynamic metadata) + rbac (JWT `groups` contains analysts AND
          method == tools/call AND params.name == whoami);
       B  envoy/mcp.yaml with Pinhole and the e2e policy (tests/e2e/harness.py
          policy_yaml(), target `tools`): JWT verified, roles mapped, the
          tools/call decided (rule analysts-read allows whoami);
  3. checks once per variant that a valid call reaches the upstream, and for
     E and B that a call to another tool (`deploy`) is refused;
  4. Envoy is pinned to CPU 0, wrk and the upstream to CPU 1 (taskset;
     --no-pin to let them share both);
  5. per round, every variant in turn (the starting variant rotates), `wrk -t1
     -c C -d SECONDS --latency` with a Lua script POSTing one fixed
     tools/call body with `Authorization: Bearer <RS256 JWT of alice,
     groups [analysts]>`, `accept: application/json, text/event-stream`,
     `content-type: application/json`, `mcp-protocol-version`;
  6. prints per run requests/s, p50/p99 latency and Envoy CPU (user + system
     from /proc) per request; then per variant the medians, the median of the
     per-round ratios of requests/s against P, and the median per-round added
     Envoy CPU per request over P.

Targets: Pinhole's added CPU per request is at most 1.5x the null Wasm
filter's, and no more than the native chain's. The machine's 2 cores are
shared by wrk, Envoy and the upstream (and often other jobs): single runs
swing by +-20%; believe medians of several rounds. --check exits 1 when a
target is missed. --smoke (1 round of 1 s, used by the test suite) only shows
that the script works.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
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

CLK_TCK = os.sysconf("SC_CLK_TCK")
TOOL = "whoami"
BODY = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": TOOL, "arguments": {}}}, separators=(",", ":"))
DENIED_BODY = json.dumps({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                          "params": {"name": "deploy", "arguments": {"environment": "staging"}}},
                         separators=(",", ":"))
RESULT = json.dumps({"jsonrpc": "2.0", "id": 7, "result": {
    "content": [{"type": "text", "text": "alice"}], "isError": False}}, separators=(",", ":")).encode()
CANNED = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
          + str(len(RESULT)).encode() + b"\r\n\r\n" + RESULT)
PROTOCOL_VERSION = "2025-06-18"
# Pinhole's added CPU per request: at most this times the null filter's.
NULL_FACTOR_TARGET = 1.5
VARIANTS = [
    ("P", "plain", "no policy filter (buffer + router)"),
    ("N", "null_wasm", "+ trivial Rust proxy-wasm filter (bench/null-filter)"),
    ("Nb", "null_body", "+ trivial Rust proxy-wasm filter that also reads the body"),
    ("E", "native", "+ jwt_authn + mcp + rbac (Envoy native)"),
    ("B", "pinhole", "+ Pinhole (e2e policy)"),
]


# ---------------------------------------------------------------- upstream

def serve_upstream(port_file: Path) -> None:
    """Answer every HTTP/1.1 request with CANNED, keep-alive, one thread,
    epoll. Understands Content-Length and chunked request bodies (enough for
    Envoy's router); no pipelining beyond what arrives in one buffer."""
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
    conns: dict[int, tuple[socket.socket, bytearray]] = {}
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
                    conns[c.fileno()] = (c, bytearray())
                    ep.register(c.fileno(), select.EPOLLIN)
                continue
            c, buf = conns[fd]
            try:
                data = c.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                ep.unregister(fd)
                del conns[fd]
                c.close()
                continue
            buf += data
            out = b""
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                total = request_length(buf, end)
                if len(buf) < total:
                    break
                del buf[:total]
                out += CANNED
            if out:
                try:
                    c.sendall(out)  # small: fits the socket buffer
                except OSError:
                    ep.unregister(fd)
                    del conns[fd]
                    c.close()


class Upstream:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> "Upstream":
        import harness
        port_file = self.workdir / "upstream.port"
        port_file.unlink(missing_ok=True)
        log = open(self.workdir / "upstream.log", "ab")
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(port_file)],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=harness._die_with_parent)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"upstream exited with {self.proc.returncode}")
            if port_file.exists():
                self.port = int(port_file.read_text())
                return self
            time.sleep(0.05)
        raise SystemExit("upstream did not start")

    def stop(self) -> None:
        import envoyctl
        proc, self.proc = self.proc, None
        envoyctl.stop_process(proc)


def request_length(buf: bytearray, end: int) -> int:
    """Bytes of the HTTP/1.1 request at the start of `buf` whose head ends
    at `end` (the index of its blank line): head plus a content-length or
    chunked body; more than len(buf) while the body is incomplete."""
    head = bytes(buf[:end]).lower()
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
    if m:
        return end + 4 + int(m.group(1))
    if b"transfer-encoding: chunked" in head:
        if buf[end + 4:end + 9] == b"0\r\n\r\n":
            return end + 9
        z = buf.find(b"\r\n0\r\n\r\n", end)
        return z + 7 if z >= 0 else len(buf) + 1
    return end + 4


# ---------------------------------------------------------------- measuring

def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process, from /proc (0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: apt-get install -y wrk", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    for cmd in (["apt-get", "install", "-y", "wrk"], ["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]):
        subprocess.run(sudo + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, check=False, timeout=600)
        if shutil.which("wrk"):
            break
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed (apt-get install wrk) and could not be installed")
    return found


def wrk_script(workdir: Path, token: str | None) -> Path:
    lines = ['wrk.method = "POST"',
             f"wrk.body = {json.dumps(BODY)}",
             'wrk.headers["content-type"] = "application/json"',
             'wrk.headers["accept"] = "application/json, text/event-stream"',
             f'wrk.headers["mcp-protocol-version"] = "{PROTOCOL_VERSION}"']
    if token:
        lines.append(f'wrk.headers["authorization"] = "Bearer {token}"')
    path = workdir / ("wrk-token.lua" if token else "wrk-plain.lua")
    path.write_text("\n".join(lines) + "\n")
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    r: dict[str, Any] = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    r["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        r[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    r["socket_errors"] = m.group(1).strip() if m else None
    return r


def pin(pid: int | None, cpu: int) -> None:
    """Move every thread of `pid` to CPU `cpu` (best effort)."""
    if pid is None or not shutil.which("taskset"):
        return
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)


def pinning(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "pin", False) and (os.cpu_count() or 1) >= 2 and shutil.which("taskset"))


def run_wrk(wrk: str, port: int, script: Path, args: argparse.Namespace, *, seconds: float | None = None,
            pid: int | None = None) -> dict[str, Any]:
    secs = seconds if seconds is not None else args.seconds
    cmd = (["taskset", "-c", "1"] if pinning(args) else []) + [wrk, "-t1", f"-c{args.connections}", f"-d{secs}s", "--latency", "-s", str(script),
           f"http://127.0.0.1:{port}/mcp"]
    cpu0 = cpu_seconds(pid)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60)
    cpu = cpu_seconds(pid) - cpu0
    if p.returncode != 0:
        raise SystemExit(f"wrk failed (exit {p.returncode}):\n{p.stdout}\n{p.stderr}")
    r = parse_wrk(p.stdout)
    r["envoy_cpu_us_per_req"] = (cpu * 1e6 / r["requests"]) if (pid and r["requests"]) else None
    if r["non_2xx"] or not r["requests"]:
        raise SystemExit(f"wrk against port {port}: {r['non_2xx']} non-2xx of {r['requests']} responses\n"
                         f"{p.stdout}")
    return r


def post(port: int, body: str, token: str | None) -> tuple[int, bytes]:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": PROTOCOL_VERSION}
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=body.encode(), headers=headers,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def sanity(envoy: Any, token: str | None, *, enforces: bool) -> None:
    status, body = post(envoy.listen_port, BODY, token)
    if status != 200 or body != RESULT:
        raise SystemExit(f"{envoy.name}: a valid tools/call did not reach the upstream: {status} {body[:300]!r}\n"
                         f"{envoy.log_tail(20)}")
    if enforces:
        status, body = post(envoy.listen_port, DENIED_BODY, token)
        if status == 200 and body == RESULT:
            raise SystemExit(f"{envoy.name}: a tools/call of `deploy` reached the upstream (should be refused)")
        status, body = post(envoy.listen_port, BODY, None)
        if status == 200 and body == RESULT:
            raise SystemExit(f"{envoy.name}: a call without a token reached the upstream (should be refused)")


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5, help="wrk -d per run (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over the four variants (default 3)")
    ap.add_argument("--connections", type=int, default=8, help="wrk -c (default 8; one wrk thread)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--smoke", action="store_true", help="1 round of 1 s: does it work at all")
    ap.add_argument("--with", dest="extra", action="append", default=[], metavar="NAME=WASM",
                    help="also measure Pinhole built as WASM (same policy and config as B), shown as NAME; "
                         "repeatable: compares builds in the same run")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="do not pin Envoy to CPU 0 and wrk and the upstream to CPU 1 (pinning is on when the "
                         "machine has 2 or more CPUs: it steadies the per-request CPU figures)")
    ap.add_argument("--only", help="comma-separated variant letters/names to run (default: all), e.g. P,N,B")
    ap.add_argument("--serve-upstream", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return 0
    if args.smoke:
        args.seconds, args.rounds = 1, 1
    variants = list(VARIANTS)
    extra_wasm: dict[str, Path] = {}
    for spec in args.extra:
        name, sep, wasm_path = spec.partition("=")
        if not sep or not name or not Path(wasm_path).is_file():
            raise SystemExit(f"--with {spec!r}: expected NAME=PATH of an existing .wasm")
        extra_wasm[name] = Path(wasm_path).resolve()
        variants.append((name, name, f"+ Pinhole built as {wasm_path}"))
    if args.only:
        keep = set(args.only.split(","))
        variants = [v for v in variants if v[0] in keep or v[1] in keep or v[1] == "plain" or v[1] in extra_wasm]

    import envoyctl
    import harness
    from tokens import KeySet

    wrk = ensure_wrk()
    artifacts = harness.Artifacts.locate()
    null_wasm = artifacts.wasm.parent / "pinhole_null_filter.wasm"
    if not null_wasm.exists():
        raise SystemExit(f"{null_wasm} missing: run scripts/build.sh")
    workdir = Path(tempfile.mkdtemp(prefix="pinhole-bench-http-"))
    keys = KeySet.generate()
    keys.write_jwks(workdir)
    (workdir / "policy.yaml").write_text(harness.policy_yaml())
    blob = harness.compile_policy(artifacts.pinhole, workdir / "policy.yaml", workdir / "policy.bin")
    # One token for the whole run (both JWT paths cache verified tokens, as
    # a client reusing its token would see); valid for 50 minutes.
    token = keys.mint("corp", "alice", groups=["analysts"], lifetime=3000)
    jwks = json.dumps(keys.issuers["corp"].jwks(), separators=(",", ":"))
    plain_lua = wrk_script(workdir, None)
    token_lua = wrk_script(workdir, token)

    upstream = Upstream(workdir)
    envoys: dict[str, Any] = {}
    results: dict[str, Any] = {"config": {k: (str(v) if isinstance(v, Path) else v)
                                          for k, v in vars(args).items() if k != "serve_upstream"},
                               "upstream": {}, "runs": [], "summary": {}}
    try:
        upstream.start()
        cfgs = {
            "plain": envoyctl.render(ROOT / "bench" / "envoy" / "mcp-plain.yaml", workdir / "plain.envoy.yaml",
                                     UPSTREAM_PORT=upstream.port),
            "null_wasm": envoyctl.render(ROOT / "envoy" / "mcp.yaml", workdir / "null.envoy.yaml",
                                         UPSTREAM_PORT=upstream.port, WASM=null_wasm, PLUGIN_CONFIG="http"),
            "native": envoyctl.render(ROOT / "bench" / "envoy" / "mcp-native.yaml", workdir / "native.envoy.yaml",
                                      UPSTREAM_PORT=upstream.port, JWKS=json.dumps(jwks),
                                      MCP_NS="envoy.filters.http.mcp"),
            "pinhole": envoyctl.render(ROOT / "envoy" / "mcp.yaml", workdir / "pinhole.envoy.yaml",
                                       UPSTREAM_PORT=upstream.port, WASM=artifacts.wasm,
                                       PLUGIN_CONFIG=envoyctl.plugin_config("tools", blob)),
        }
        if "null_body" in [v[1] for v in variants]:
            cfgs["null_body"] = envoyctl.render(ROOT / "envoy" / "mcp.yaml", workdir / "null_body.envoy.yaml",
                                                UPSTREAM_PORT=upstream.port, WASM=null_wasm,
                                                PLUGIN_CONFIG="http-body")
        for name, wasm_path in extra_wasm.items():
            cfgs[name] = envoyctl.render(ROOT / "envoy" / "mcp.yaml", workdir / f"{name}.envoy.yaml",
                                         UPSTREAM_PORT=upstream.port, WASM=wasm_path,
                                         PLUGIN_CONFIG=envoyctl.plugin_config("tools", blob))
        for _, name, _ in variants:
            # Warnings only, except the Wasm component at info: Pinhole's
            # audit lines (info) are written, as in production; P, N and E
            # write nothing per request at that level either way.
            e = envoyctl.Envoy(cfgs[name], workdir, name=name, log_level="warning",
                               extra_args=["--component-log-level", "wasm:info"])
            envoys[name] = e
            e.start(timeout=120)
            if pinning(args):
                pin(e.pid, 0)
        if pinning(args):
            pin(upstream.proc.pid if upstream.proc else None, 1)
            print("pinned: Envoy on CPU 0; wrk and the upstream on CPU 1 (--no-pin to share both)", flush=True)
        for _, name, _ in variants:
            sanity(envoys[name], token, enforces=name in ("native", "pinhole"))

        # The upstream alone: its ceiling (requests/s wrk gets straight from it).
        if not args.smoke:
            run_wrk(wrk, upstream.port, plain_lua, args, seconds=1)
        up = run_wrk(wrk, upstream.port, plain_lua, args, seconds=min(args.seconds, 3))
        results["upstream"] = up
        print(f"upstream alone (Python epoll, canned JSON-RPC result): {up['rps']:.0f} req/s, "
              f"p50 {up['p50_ms']:.2f} ms", flush=True)
        # Warm-up (not counted): connections, the VMs, the JWT caches.
        for _, name, _ in variants:
            run_wrk(wrk, envoys[name].listen_port, token_lua, args, seconds=1)

        print(f"wrk -t1 -c{args.connections} -d{args.seconds:g}s, POST tools/call `{TOOL}` with an RS256 JWT, "
              f"{args.rounds} round(s); Envoy --concurrency 1", flush=True)
        for key, _, what in variants:
            print(f"  {key} = {what}", flush=True)
        print(f"{'round':>5} {'var':>3} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'µs/req':>8}", flush=True)
        for rnd in range(1, args.rounds + 1):
            k = (rnd - 1) % len(variants)
            order = variants[k:] + variants[:k]
            row: dict[str, Any] = {"round": rnd}
            for key, name, _ in order:
                e = envoys[name]
                r = run_wrk(wrk, e.listen_port, token_lua, args, pid=e.pid)
                row[name] = r
                print(f"{rnd:>5} {key:>3} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                      f"{_fmt(r['envoy_cpu_us_per_req']):>8}", flush=True)
            results["runs"].append(row)

        print()
        runs = results["runs"]
        summary: dict[str, Any] = {}
        print(f"{'variant':56} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'µs/req':>7} {'÷P req/s':>9} "
              f"{'+µs/req':>8}")
        for key, name, what in variants:
            ratio = statistics.median(r[name]["rps"] / r["plain"]["rps"] for r in runs)
            added = _median([_sub(r[name]["envoy_cpu_us_per_req"], r["plain"]["envoy_cpu_us_per_req"])
                             for r in runs])
            s = {"rps": statistics.median(r[name]["rps"] for r in runs),
                 "p50_ms": statistics.median(r[name]["p50_ms"] for r in runs),
                 "p99_ms": statistics.median(r[name]["p99_ms"] for r in runs),
                 "envoy_cpu_us_per_req": _median([r[name]["envoy_cpu_us_per_req"] for r in runs]),
                 "rps_ratio_vs_plain": ratio, "added_cpu_us_per_req": added}
            summary[name] = s
            print(f"{key + ' ' + what:56} {s['rps']:>8.0f} {s['p50_ms']:>7.2f} {s['p99_ms']:>7.2f} "
                  f"{_fmt(s['envoy_cpu_us_per_req']):>7} {ratio:>9.3f} {_fmt(added):>8}", flush=True)
        results["summary"] = summary
        ok_null = ok_native = False
        if all(k in summary for k in ("pinhole", "null_wasm", "native")):
            b, n, e = (summary[k]["added_cpu_us_per_req"] for k in ("pinhole", "null_wasm", "native"))
            # Per round, the same comparisons (medians of pairwise figures).
            vs_null = _median([_div(_sub(r["pinhole"]["envoy_cpu_us_per_req"], r["plain"]["envoy_cpu_us_per_req"]),
                                    _sub(r["null_wasm"]["envoy_cpu_us_per_req"], r["plain"]["envoy_cpu_us_per_req"]))
                               for r in runs])
            vs_native = _median([_div(_sub(r["pinhole"]["envoy_cpu_us_per_req"], r["plain"]["envoy_cpu_us_per_req"]),
                                      _sub(r["native"]["envoy_cpu_us_per_req"], r["plain"]["envoy_cpu_us_per_req"]))
                                 for r in runs])
            ok_null = vs_null is not None and vs_null <= NULL_FACTOR_TARGET
            ok_native = vs_native is not None and vs_native <= 1.0
            summary["pinhole_added_vs_null_added"] = vs_null
            summary["pinhole_added_vs_native_added"] = vs_native
            summary["meets_null_target"] = ok_null
            summary["meets_native_target"] = ok_native
            print(f"\nadded Envoy CPU per request over P (median of rounds): N {_fmt(n)} µs, E {_fmt(e)} µs, "
                  f"B {_fmt(b)} µs")
            print(f"B added / N added: {_fmt(vs_null, 2)} (target <= {NULL_FACTOR_TARGET}: "
                  f"{'ok' if ok_null else 'MISSED'})   B added / E added: {_fmt(vs_native, 2)} "
                  f"(target <= 1: {'ok' if ok_native else 'MISSED'})")
        if "pinhole" in summary and "null_body" in summary:
            vs_nb = _median([_div(_sub(r["pinhole"]["envoy_cpu_us_per_req"], r["plain"]["envoy_cpu_us_per_req"]),
                                  _sub(r["null_body"]["envoy_cpu_us_per_req"], r["plain"]["envoy_cpu_us_per_req"]))
                             for r in runs])
            summary["pinhole_added_vs_null_body_added"] = vs_nb
            print(f"B added / Nb added: {_fmt(vs_nb, 2)} (the floor of a Wasm filter that reads the body)")
        print(f"load average: {os.getloadavg()[0]:.2f} (2 cores shared by wrk, Envoy, the upstream and others)")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nEnvoy configs and logs, policy and blob: {workdir}")
        return 1 if (args.check and not (ok_null and ok_native)) else 0  # --only without N/E/B: missed
    finally:
        for e in reversed(list(envoys.values())):
            e.stop()
        upstream.stop()


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def _median(values: list[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return statistics.median(vs) if vs else None


if __name__ == "__main__":
    sys.exit(main())
