"""JWT verification inside Envoy's V8: first-verification cost per algorithm
(RS256, ES256, EdDSA) and the cost of a verified-token cache hit.

Run it once scripts/setup.sh and scripts/build.sh have run:

    .venv/bin/python scripts/bench-jwt.py [--seconds 5] [--rounds 3]
        [--connections 8] [--json FILE] [--smoke] [--no-pin]

What it does, all on loopback, everything stopped at the end:

  1. the canned upstream of scripts/bench-http.py (one fixed JSON-RPC result);
  2. two Envoys, `--concurrency 1`, log level warning, envoy/mcp.yaml:
       N  bench/null-filter configured "http" (reads the authorization
          header, continues): the floor any Rust proxy-wasm HTTP filter pays;
       B  Pinhole with the e2e policy (tests/e2e/harness.py policy_yaml(),
          target `tools`), which trusts three issuers, one algorithm each
          (tests/e2e/tokens.py):
            RS256  corp  alice, groups [analysts]        -> rule analysts-read
            ES256  edge  alice, groups [analysts]        -> rule analysts-read
            EdDSA  ci    acme/app on refs/heads/main     -> rule bot-whoami
          each allowed to call `whoami`;
  3. checks that a valid call reaches the upstream through both, and through
     B with a cached and a fresh token of every algorithm, and that B refuses
     `delete_everything`, a call without a token and a forged token;
  4. Envoy is pinned to CPU 0, wrk and the upstream to CPU 1 (--no-pin);
  5. per round (the starting block rotates): N with the RS256 token, then per
     algorithm two runs of `wrk -t1 -c C -d SECONDS` POSTing the tools/call:
       hit   every request carries the same token: after the first request
             it is a hit in Pinhole's verified-token cache;
       miss  every request carries a token Pinhole has not seen: a wrk Lua
             script walks through a file of tokens minted beforehand, one per
             request, and the position is carried over from run to run. The pool is topped up before each
             run to twice what the run is expected to send (the fastest
             earlier miss run of that algorithm, else the hit run just
             before), so no token is sent twice; should a run outpace that,
             the walk wraps around a pool of at least twice the cache's
             capacity, and since the cache (filter/src/identity/cache.rs,
             TOKEN_CACHE_CAPACITY in filter/src/engine.rs) evicts the oldest
             insertion first, a token comes back only after it has been
             evicted: still a miss. Every token has the same claims as the
             hit run's but its own `jti`;
  6. prints per run requests/s and Envoy CPU (user + system from /proc) per
     request; then per algorithm the medians over rounds of Envoy CPU per
     request with a cached token (hit), with a new token (miss), the
     first-verification cost miss - hit (signature check, claim parsing and
     checks, roles, cache insertion) and miss / hit, each computed per round,
     and hit - N (Pinhole's whole per-request work on top of the null filter
     when the token is cached).

Nothing is asserted about the figures. The 2 cores are shared by wrk, Envoy,
the upstream and often other jobs: believe medians of several rounds.
--smoke (1 round of 1 s, no warm-up; used by the test suite) only shows that
the script works.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))


import benchload  # noqa: E402

bh = benchload.bench_http()

DENIED_BODY = json.dumps({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                          "params": {"name": "delete_everything", "arguments": {}}}, separators=(",", ":"))
# (algorithm, issuer, subject, extra claims): an identity allowed to call bh.TOOL.
ALGORITHMS = [
    ("RS256", "corp", "alice", {"groups": ["analysts"]}),
    ("ES256", "edge", "alice", {"groups": ["analysts"]}),
    ("EdDSA", "ci", "repo:acme/app:ref:refs/heads/main", {"repository": "acme/app", "ref": "refs/heads/main"}),
]
LIFETIME = 3000  # seconds: within the policy's max_token_lifetime (1h), longer than any run
MARGIN = 2.0  # pool top-up: this times the requests a miss run is expected to send


def cache_capacity() -> int:
    """TOKEN_CACHE_CAPACITY of filter/src/engine.rs (the verified-token cache
    holds at most this many tokens per worker VM)."""
    try:
        m = re.search(r"TOKEN_CACHE_CAPACITY:\s*usize\s*=\s*([\d_]+)", (ROOT / "filter/src/engine.rs").read_text())
    except OSError:
        m = None
    if not m:
        raise SystemExit("TOKEN_CACHE_CAPACITY not found in filter/src/engine.rs")
    return int(m.group(1).replace("_", ""))


class TokenPool:
    """Distinct valid tokens of one identity, in a file (one a line) that the
    wrk script walks from `cursor` on."""

    def __init__(self, path: Path, mint: Callable[[], str]) -> None:
        self.path = path
        self.mint = mint
        self.tokens: list[str] = []
        self.cursor = 0  # index of the next token to send (may exceed len: the walk wraps)
        path.write_text("")

    def top_up(self, n: int) -> None:
        """Make sure at least `n` tokens after the cursor were never sent."""
        new = [self.mint() for _ in range(self.cursor + n - len(self.tokens))]
        if new:
            self.tokens += new
            with open(self.path, "a") as f:
                f.write("".join(t + "\n" for t in new))

    def take(self) -> str:
        self.top_up(1)
        self.cursor += 1
        return self.tokens[self.cursor - 1]


def wrk_rotation_script(path: Path, tokens: Path, start: int, cursor_out: Path) -> Path:
    """A wrk script POSTing bh.BODY with the tokens of `tokens` in turn, from
    index `start` (0-based, wrapping); writes the next index to `cursor_out`."""
    path.write_text(f"""\
-- generated by scripts/bench-jwt.py
wrk.method = "POST"
wrk.body = {json.dumps(bh.BODY)}
wrk.headers["content-type"] = "application/json"
wrk.headers["accept"] = "application/json, text/event-stream"
wrk.headers["mcp-protocol-version"] = "{bh.PROTOCOL_VERSION}"
tokens = {{}}
cursor = {start}

function init(args)
  for line in io.lines({json.dumps(str(tokens))}) do tokens[#tokens + 1] = line end
  assert(#tokens > 0, "no tokens")
end

function request()
  wrk.headers["authorization"] = "Bearer " .. tokens[cursor % #tokens + 1]
  cursor = cursor + 1
  return wrk.format()
end

local threads = {{}}
function setup(thread) threads[#threads + 1] = thread end

function done(summary, latency, requests)
  local f = assert(io.open({json.dumps(str(cursor_out))}, "w"))
  for _, t in ipairs(threads) do f:write(string.format("%d\\n", t:get("cursor"))) end
  f:close()
end
""")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5, help="wrk -d per run (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over N and the three algorithms (default 3)")
    ap.add_argument("--connections", type=int, default=8, help="wrk -c (default 8; one wrk thread)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    ap.add_argument("--smoke", action="store_true", help="1 round of 1 s, no warm-up: does it work at all")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="do not pin Envoy to CPU 0 and wrk and the upstream to CPU 1")
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.rounds = 1, 1

    import envoyctl
    import harness
    from tokens import KeySet

    wrk = bh.ensure_wrk()
    capacity = cache_capacity()
    artifacts = harness.Artifacts.locate()
    null_wasm = artifacts.wasm.parent / "pinhole_null_filter.wasm"
    if not null_wasm.exists():
        raise SystemExit(f"{null_wasm} missing: run scripts/build.sh")
    workdir = Path(tempfile.mkdtemp(prefix="pinhole-bench-jwt-"))
    keys = KeySet.generate()
    keys.write_jwks(workdir)
    (workdir / "policy.yaml").write_text(harness.policy_yaml())
    blob = harness.compile_policy(artifacts.pinhole, workdir / "policy.yaml", workdir / "policy.bin")

    # Per algorithm: the one token of the hit runs, and the pool of the miss runs.
    hit_files: dict[str, Path] = {}
    pools: dict[str, TokenPool] = {}
    for alg, issuer, sub, claims in ALGORITHMS:
        def mint(issuer: str = issuer, sub: str = sub, claims: dict[str, Any] = claims) -> str:
            return keys.mint(issuer, sub, lifetime=LIFETIME, **claims)
        hit_files[alg] = workdir / f"tokens-{alg}-hit.txt"
        hit_files[alg].write_text(mint() + "\n")
        pools[alg] = TokenPool(workdir / f"tokens-{alg}-miss.txt", mint)
        pools[alg].top_up(2 * capacity)  # the floor that keeps a wrapped walk missing the cache
    hit_token = {alg: path.read_text().strip() for alg, path in hit_files.items()}

    upstream = bh.Upstream(workdir)
    envoys: dict[str, Any] = {}
    results: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "token_cache_capacity": capacity, "load_average_start": os.getloadavg()[0],
        "runs": [], "summary": {}}
    try:
        upstream.start()
        cfgs = {
            "null": envoyctl.render(ROOT / "envoy" / "mcp.yaml", workdir / "null.envoy.yaml",
                                    UPSTREAM_PORT=upstream.port, WASM=null_wasm, PLUGIN_CONFIG="http"),
            "pinhole": envoyctl.render(ROOT / "envoy" / "mcp.yaml", workdir / "pinhole.envoy.yaml",
                                       UPSTREAM_PORT=upstream.port, WASM=artifacts.wasm,
                                       PLUGIN_CONFIG=envoyctl.plugin_config("tools", blob)),
        }
        for name, cfg in cfgs.items():
            e = envoyctl.Envoy(cfg, workdir, name=name, log_level="warning")
            envoys[name] = e
            e.start(timeout=120)
            if bh.pinning(args):
                bh.pin(e.pid, 0)
        if bh.pinning(args):
            bh.pin(upstream.proc.pid if upstream.proc else None, 1)
            print("pinned: Envoy on CPU 0; wrk and the upstream on CPU 1 (--no-pin to share both)", flush=True)
        null, pinhole = envoys["null"], envoys["pinhole"]
        bh.sanity(null, hit_token["RS256"], enforces=False)
        for alg, _, _, _ in ALGORITHMS:
            bh.sanity(pinhole, hit_token[alg], enforces=False)
            bh.sanity(pinhole, pools[alg].take(), enforces=False)
        bh.sanity(pinhole, hit_token["RS256"], enforces=True)
        status, body = bh.post(pinhole.listen_port, bh.BODY, keys.forged())
        if status == 200 and body == bh.RESULT:
            raise SystemExit("pinhole: a call with a forged RS256 token reached the upstream (should be refused)")

        def measure(kind: str, alg: str, *, seconds: float | None = None, pid: int | None = None,
                    expect_rps: float | None = None) -> dict[str, Any]:
            """One wrk run: kind "null", "hit" or "miss"."""
            envoy = null if kind == "null" else pinhole
            lua = workdir / f"wrk-{kind}-{alg}.lua"
            cursor_out = workdir / f"wrk-{kind}-{alg}.cursor"
            cursor_out.unlink(missing_ok=True)
            if kind == "miss":
                pool = pools[alg]
                secs = seconds if seconds is not None else args.seconds
                pool.top_up(int(math.ceil(MARGIN * (expect_rps or 5000) * secs)) + 8 * args.connections)
                start, available = pool.cursor, len(pool.tokens)
                wrk_rotation_script(lua, pool.path, start, cursor_out)
            else:
                wrk_rotation_script(lua, hit_files[alg], 0, cursor_out)
                # The hit token may have been evicted by other runs' tokens:
                # put it back in the cache before measuring.
                bh.post(envoy.listen_port, bh.BODY, hit_token[alg])
            r = bh.run_wrk(wrk, envoy.listen_port, lua, args, seconds=seconds, pid=pid)
            if kind == "miss":
                try:
                    end = int(cursor_out.read_text().split()[0])
                except (OSError, ValueError, IndexError) as exc:
                    raise SystemExit(f"wrk did not report how many tokens it sent ({cursor_out}: {exc})")
                pool.cursor = end
                r["tokens_sent"] = end - start
                r["tokens_distinct"] = min(end - start, len(pool.tokens))
                r["wrapped"] = end > available
            return r

        est: dict[str, float] = {}  # each algorithm's fastest miss run so far (req/s)

        def miss(alg: str, hit_rps: float, **kw: Any) -> dict[str, Any]:
            # Until a miss run of the algorithm was seen, its hit rate (an upper bound) sizes the pool.
            r = measure("miss", alg, expect_rps=est.get(alg, hit_rps), **kw)
            est[alg] = max(est.get(alg, 0.0), r["rps"])
            return r

        if not args.smoke:  # warm-up (not counted): connections, the VMs, V8's code for every path
            measure("null", "RS256", seconds=1)
            for alg, _, _, _ in ALGORITHMS:
                miss(alg, measure("hit", alg, seconds=1)["rps"], seconds=1)

        print(f"wrk -t1 -c{args.connections} -d{args.seconds:g}s, POST tools/call `{bh.TOOL}`, "
              f"{args.rounds} round(s); Envoy --concurrency 1; verified-token cache: {capacity} tokens", flush=True)
        print("  N        = null Wasm filter (reads the authorization header), RS256 token", flush=True)
        print("  ALG hit  = Pinhole, one token for every request (cache hit)", flush=True)
        print("  ALG miss = Pinhole, a token it has not seen in every request (first verification)", flush=True)
        print(f"{'round':>5} {'run':>10} {'req/s':>8} {'p50 ms':>7} {'µs/req':>7}  tokens", flush=True)
        blocks = ["null"] + [a for a, _, _, _ in ALGORITHMS]
        for rnd in range(1, args.rounds + 1):
            k = (rnd - 1) % len(blocks)
            row: dict[str, Any] = {"round": rnd}
            for block in blocks[k:] + blocks[:k]:
                steps = [("null", "RS256")] if block == "null" else [("hit", block), ("miss", block)]
                for kind, alg in steps:
                    pid = (null if kind == "null" else pinhole).pid
                    if kind == "miss":
                        r = miss(alg, row[f"{alg}-hit"]["rps"], pid=pid)
                        note = f"{r['tokens_distinct']} distinct" + (" (pool wrapped)" if r["wrapped"] else "")
                        key, label = f"{alg}-miss", f"{alg} miss"
                    else:
                        r = measure(kind, alg, pid=pid)
                        key, label = (("null", "N") if kind == "null" else (f"{alg}-hit", f"{alg} hit"))
                        note = "1"
                    row[key] = r
                    print(f"{rnd:>5} {label:>10} {r['rps']:>8.0f} {r['p50_ms']:>7.2f} "
                          f"{bh._fmt(r['envoy_cpu_us_per_req']):>7}  {note}", flush=True)
            results["runs"].append(row)
    finally:
        for e in reversed(list(envoys.values())):
            e.stop()
        upstream.stop()

    runs = results["runs"]
    cpu = "envoy_cpu_us_per_req"
    null_us = bh._median([r["null"][cpu] for r in runs])
    summary: dict[str, Any] = {"null": {"envoy_cpu_us_per_req": null_us,
                                        "rps": statistics.median(r["null"]["rps"] for r in runs)}}
    print(f"\nEnvoy CPU per request (median of {len(runs)} round(s); differences and ratios per round, then median)")
    print(f"{'alg':6} {'issuer':6} {'hit req':>8} {'miss req':>8} {'hit µs/req':>10} {'miss µs/req':>11} "
          f"{'verify µs':>9} {'miss/hit':>8} {'hit-N µs':>8}")
    for alg, issuer, _, _ in ALGORITHMS:
        hit = [r[f"{alg}-hit"] for r in runs]
        mis = [r[f"{alg}-miss"] for r in runs]
        s = {
            "issuer": issuer,
            "hit_requests": sum(h["requests"] for h in hit),
            "miss_requests": sum(m["requests"] for m in mis),
            "miss_tokens_sent": sum(m["tokens_sent"] for m in mis),
            "pool_wrapped": any(m["wrapped"] for m in mis),
            "hit_rps": statistics.median(h["rps"] for h in hit),
            "miss_rps": statistics.median(m["rps"] for m in mis),
            "hit_us_per_req": bh._median([h[cpu] for h in hit]),
            "miss_us_per_req": bh._median([m[cpu] for m in mis]),
            "verify_us": bh._median([bh._sub(m[cpu], h[cpu]) for h, m in zip(hit, mis)]),
            "miss_over_hit": bh._median([bh._div(m[cpu], h[cpu]) for h, m in zip(hit, mis)]),
            "hit_over_null_us": bh._median([bh._sub(r[f"{alg}-hit"][cpu], r["null"][cpu]) for r in runs]),
        }
        summary[alg] = s
        print(f"{alg:6} {issuer:6} {s['hit_requests']:>8} {s['miss_requests']:>8} {bh._fmt(s['hit_us_per_req']):>10} "
              f"{bh._fmt(s['miss_us_per_req']):>11} {bh._fmt(s['verify_us']):>9} "
              f"{bh._fmt(s['miss_over_hit'], 2):>8} {bh._fmt(s['hit_over_null_us']):>8}", flush=True)
    print(f"N (null Wasm filter): {bh._fmt(null_us)} µs/req")
    if any(s.get("pool_wrapped") for s in summary.values() if isinstance(s, dict)):
        print("note: a miss run outpaced its token pool and wrapped around (tokens evicted long before: "
              "still cache misses)")
    results["summary"] = summary
    results["load_average_end"] = os.getloadavg()[0]
    print(f"load average: {results['load_average_start']:.2f} at the start, {results['load_average_end']:.2f} "
          f"at the end (2 cores shared by wrk, Envoy, the upstream and others)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nEnvoy configs and logs, policy, tokens and wrk scripts: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
