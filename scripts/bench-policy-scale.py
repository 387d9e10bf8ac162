"""Policy scale: what 10, 1,000 and 10,000 rules cost — to compile, to load
into Envoy, in memory, and per request (in Envoy and natively).

Run it once scripts/setup.sh and scripts/build.sh have run:

    .venv/bin/python scripts/bench-policy-scale.py [--sizes 10,1000,10000]
        [--seconds 5] [--rounds 3] [--connections 8] [--wasm FILE]
        [--native-bin FILE] [--json FILE] [--smoke]

What it does, all on loopback, everything stopped at the end:

  1. generates one policy per size with scripts/policy_scale_gen.py (many
     teams, roles, MCP/HTTP/PostgreSQL targets, tools with argument
     constraints, SQL rules, allow/review/deny; the same fixed rules decide
     the benchmark's request at every size) and compiles each with
     `pinhole compile` (wall time, median of 3; blob size);
  2. natively: filter/examples/eval_scale (built with `cargo build --release
     -p pinhole-filter --example eval_scale` when missing) loads each blob
     as the filter does and times the host-free work of one tools/call
     (cached token + roles, the decision, the whole JSON-RPC body, list
     visibility) and the reference evaluator (every rule of the target);
  3. in Envoy: the canned upstream of scripts/bench-http.py and one Envoy per
     size (envoy/mcp.yaml, Pinhole with that size's blob, `--concurrency 1`,
     log level warning), all running at once. Load time (process start to
     ready) and resident memory (VmRSS from /proc, after load and after the
     run) per Envoy; the 10-rule Envoy of the same run is the baseline;
  4. checks each Envoy: the benchmark's call reaches the upstream, a
     production deploy and a call without a token are refused;
  5. per round, every size in turn (the first rotating), `wrk -t1 -cC -dS`
     POSTing one tools/call (`search_orders` with arguments, RS256 JWT of
     alice, groups analysts and team-0000); Envoy CPU (user + system, /proc)
     per request; per round the ratio of each size's CPU per request to the
     smallest size's; the median of those ratios is reported.

Target (docs/benchmarks.md): Envoy CPU per request at 10,000 rules at most
1.2x the 10-rule figure. Nothing is asserted; --smoke (sizes 10 and 300, 1
round of 1 s, used by the test suite) only shows that the script works.
`--wasm` measures another build of the filter (e.g. one from before a
change: the before/after figures of docs/benchmarks.md), `--native-bin`
another build of eval_scale.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "scripts"))

import policy_scale_gen as gen  # noqa: E402


import benchload  # noqa: E402

bh = benchload.bench_http()

TARGET_RATIO = 1.2
BODY = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": gen.TOOL, "arguments": gen.ARGUMENTS}}, separators=(",", ":"))
DENIED_BODY = json.dumps({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                          "params": {"name": "deploy", "arguments": {"environment": "production"}}},
                         separators=(",", ":"))


def rss_kib(pid: int | None) -> int | None:
    """VmRSS of a process in KiB (None if unknown)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def compile_timed(pinhole: Path, src: Path, out: Path, repeats: int) -> tuple[float, int]:
    """Median wall seconds of `pinhole compile`, and the blob size."""
    times = []
    for _ in range(repeats):
        t = time.monotonic()
        p = subprocess.run([str(pinhole), "compile", str(src), "-o", str(out)], capture_output=True, text=True,
                           timeout=1800)
        times.append(time.monotonic() - t)
        if p.returncode != 0:
            raise SystemExit(f"pinhole compile {src} failed:\n{p.stderr[-3000:]}")
    return statistics.median(times), out.stat().st_size


def native_bin(explicit: Path | None) -> Path:
    if explicit:
        return explicit
    path = ROOT / "target" / "release" / "examples" / "eval_scale"
    print("building filter/examples/eval_scale (cargo build --release -p pinhole-filter --example eval_scale)",
          flush=True)
    subprocess.run(["nice", "cargo", "build", "--release", "-q", "-p", "pinhole-filter", "--example", "eval_scale"],
                   cwd=ROOT, check=True, timeout=3600)
    return path


def run_native(binary: Path, token: str, blobs: list[Path], batch_ms: int) -> list[dict[str, Any]]:
    cmd = [str(binary), "--token", token, "--target", "tools", "--tool", gen.TOOL,
           "--arguments", json.dumps(gen.ARGUMENTS), "--batch-ms", str(batch_ms), *map(str, blobs)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise SystemExit(f"eval_scale failed (exit {p.returncode}):\n{p.stdout}\n{p.stderr}")
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def wrk_script(workdir: Path, token: str) -> Path:
    lines = ['wrk.method = "POST"',
             f"wrk.body = {json.dumps(BODY)}",
             'wrk.headers["content-type"] = "application/json"',
             'wrk.headers["accept"] = "application/json, text/event-stream"',
             f'wrk.headers["mcp-protocol-version"] = "{bh.PROTOCOL_VERSION}"',
             f'wrk.headers["authorization"] = "Bearer {token}"']
    path = workdir / "wrk-scale.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def sanity(envoy: Any, token: str) -> None:
    status, body = bh.post(envoy.listen_port, BODY, token)
    if status != 200 or body != bh.RESULT:
        raise SystemExit(f"{envoy.name}: the benchmark's tools/call did not reach the upstream: {status} "
                         f"{body[:300]!r}\n{envoy.log_tail(20)}")
    status, body = bh.post(envoy.listen_port, DENIED_BODY, token)
    if status == 200 and body == bh.RESULT:
        raise SystemExit(f"{envoy.name}: a production deploy reached the upstream (should be refused)")
    status, body = bh.post(envoy.listen_port, BODY, None)
    if status == 200 and body == bh.RESULT:
        raise SystemExit(f"{envoy.name}: a call without a token reached the upstream (should be refused)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,1000,10000", help="rule counts, comma-separated (default 10,1000,10000)")
    ap.add_argument("--seconds", type=float, default=5, help="wrk -d per run (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over the sizes (default 3)")
    ap.add_argument("--connections", type=int, default=8, help="wrk -c (default 8; one wrk thread)")
    ap.add_argument("--wasm", type=Path, help="the filter to measure (default: scripts/build.sh's)")
    ap.add_argument("--native-bin", type=Path, help="a built eval_scale example (default: build it)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    ap.add_argument("--smoke", action="store_true", help="sizes 10 and 300, 1 round of 1 s: does it work at all")
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.seconds, args.rounds = "10,300", 1, 1
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not sizes or sizes[0] < 5:
        raise SystemExit("--sizes: rule counts of at least 5")

    import envoyctl
    import harness
    from tokens import KeySet

    wrk = bh.ensure_wrk()
    artifacts = harness.Artifacts.locate()
    wasm = (args.wasm or artifacts.wasm).resolve()
    workdir = Path(tempfile.mkdtemp(prefix="pinhole-bench-scale-"))
    keys = KeySet.generate()
    keys.write_jwks(workdir)
    token = keys.mint("corp", "alice", groups=gen.GROUPS, lifetime=3000)
    results: dict[str, Any] = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                               "wasm": str(wasm), "sizes": {}, "runs": [], "summary": {}}

    # 1. Generate and compile.
    print(f"{'rules':>6} {'policy KiB':>10} {'compile s':>10} {'blob KiB':>9}", flush=True)
    blobs: dict[int, Path] = {}
    for n in sizes:
        src = workdir / f"policy-{n}.yaml"
        src.write_text(gen.generate(n))
        out = workdir / f"policy-{n}.bin"
        secs, size = compile_timed(artifacts.pinhole, src, out, 1 if args.smoke else 3)
        blobs[n] = out
        results["sizes"][n] = {"policy_bytes": src.stat().st_size, "compile_s": secs, "blob_bytes": size}
        print(f"{n:>6} {src.stat().st_size / 1024:>10.0f} {secs:>10.2f} {size / 1024:>9.0f}", flush=True)

    # 2. Natively.
    binary = native_bin(args.native_bin)
    native = run_native(binary, token, [blobs[n] for n in sizes], 50 if args.smoke else 200)
    print(f"\nnative (eval_scale, {binary.name}): ns per call", flush=True)
    print(f"{'rules':>6} {'roles':>6} {'load ms':>8} {'auth':>8} {'decide':>8} {'scan':>9} {'body':>8} "
          f"{'visible':>8}  decision", flush=True)
    for n, r in zip(sizes, native):
        results["sizes"][n]["native"] = r
        print(f"{n:>6} {r['roles']:>6} {r['load_ms']:>8.1f} {r['auth_ns']:>8.0f} {r['decide_ns']:>8.0f} "
              f"{r['scan_ns']:>9.0f} {r['body_ns']:>8.0f} {r['visible_ns']:>8.0f}  {r['effect']} by {r['rule']}",
              flush=True)

    # 3. Envoy.
    upstream = bh.Upstream(workdir)
    envoys: dict[int, Any] = {}
    try:
        upstream.start()
        for n in sizes:
            cfg = envoyctl.render(ROOT / "envoy" / "mcp.yaml", workdir / f"scale-{n}.envoy.yaml",
                                  UPSTREAM_PORT=upstream.port, WASM=wasm,
                                  PLUGIN_CONFIG=envoyctl.plugin_config("tools", blobs[n].read_bytes()))
            e = envoyctl.Envoy(cfg, workdir, name=f"scale-{n}", log_level="warning")
            t = time.monotonic()
            e.start(timeout=300)
            load_s = time.monotonic() - t
            envoys[n] = e
            sanity(e, token)
            results["sizes"][n].update({"envoy_load_s": load_s, "rss_kib_loaded": rss_kib(e.pid)})
        lua = wrk_script(workdir, token)
        for n in sizes:  # warm-up, not counted
            bh.run_wrk(wrk, envoys[n].listen_port, lua, args, seconds=1)
        print(f"\nwrk -t1 -c{args.connections} -d{args.seconds:g}s, POST tools/call `{gen.TOOL}` with an RS256 JWT, "
              f"{args.rounds} round(s); Envoy --concurrency 1; filter {wasm}", flush=True)
        print(f"{'round':>5} {'rules':>6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'µs/req':>8}", flush=True)
        for rnd in range(1, args.rounds + 1):
            k = (rnd - 1) % len(sizes)
            row: dict[str, Any] = {"round": rnd}
            for n in sizes[k:] + sizes[:k]:
                e = envoys[n]
                r = bh.run_wrk(wrk, e.listen_port, lua, args, pid=e.pid)
                row[str(n)] = r
                print(f"{rnd:>5} {n:>6} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                      f"{bh._fmt(r['envoy_cpu_us_per_req']):>8}", flush=True)
            results["runs"].append(row)
        for n in sizes:
            results["sizes"][n]["rss_kib_after"] = rss_kib(envoys[n].pid)
    finally:
        for e in reversed(list(envoys.values())):
            e.stop()
        upstream.stop()

    # 4. Summary.
    base = str(sizes[0])
    runs = results["runs"]
    print(f"\n{'rules':>6} {'compile s':>9} {'blob KiB':>8} {'load s':>6} {'RSS MiB':>8} {'ΔRSS MiB':>8} "
          f"{'native decide ns':>16} {'native body ns':>14} {'req/s':>7} {'µs/req':>7} {'÷ base':>7}")
    b_rss = results["sizes"][sizes[0]].get("rss_kib_after")
    for n in sizes:
        s = results["sizes"][n]
        key = str(n)
        cpu = bh._median([r[key]["envoy_cpu_us_per_req"] for r in runs])
        ratio = bh._median([bh._div(r[key]["envoy_cpu_us_per_req"], r[base]["envoy_cpu_us_per_req"]) for r in runs])
        rps = statistics.median(r[key]["rps"] for r in runs)
        rss = s.get("rss_kib_after")
        d_rss = None if rss is None or b_rss is None else (rss - b_rss) / 1024
        s.update({"envoy_cpu_us_per_req": cpu, "cpu_ratio_vs_base": ratio, "rps": rps, "rss_delta_mib": d_rss})
        nat = s["native"]
        print(f"{n:>6} {s['compile_s']:>9.2f} {s['blob_bytes'] / 1024:>8.0f} {s['envoy_load_s']:>6.2f} "
              f"{bh._fmt(None if rss is None else rss / 1024):>8} {bh._fmt(d_rss):>8} "
              f"{nat['decide_ns']:>16.0f} {nat['body_ns']:>14.0f} {rps:>7.0f} {bh._fmt(cpu):>7} "
              f"{bh._fmt(ratio, 3):>7}", flush=True)
    top = results["sizes"][sizes[-1]]
    ok = top["cpu_ratio_vs_base"] is not None and top["cpu_ratio_vs_base"] <= TARGET_RATIO
    results["summary"] = {"largest": sizes[-1], "cpu_ratio_largest_vs_base": top["cpu_ratio_vs_base"],
                          "meets_target": ok,
                          "native_decide_ratio_largest_vs_base":
                              bh._div(top["native"]["decide_ns"], results["sizes"][sizes[0]]["native"]["decide_ns"])}
    print(f"\nEnvoy CPU per request, {sizes[-1]} rules ÷ {sizes[0]} rules (median of per-round ratios): "
          f"{bh._fmt(top['cpu_ratio_vs_base'], 3)} (target <= {TARGET_RATIO}: {'ok' if ok else 'MISSED'})")
    print(f"load average: {os.getloadavg()[0]:.2f} (2 cores shared by wrk, the Envoys, the upstream and others)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\npolicies, blobs, Envoy configs and logs: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
