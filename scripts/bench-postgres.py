"""pgbench through Envoy: tcp_proxy alone (A) against tcp_proxy + Pinhole (B).

Run it with scripts/bench-postgres.sh (which installs and builds first), or
directly once scripts/setup.sh and scripts/build.sh have run:

    .venv/bin/python scripts/bench-postgres.py [--seconds 10] [--rounds 5]
        [--clients 4] [--threads 2] [--scale 1] [--modes simple,prepared]
        [--json FILE] [--check] [--smoke]

What it does, all on loopback, everything stopped at the end:

  1. a throwaway PostgreSQL 15 cluster (tests/e2e/pg.py; statement logging
     off), `pgbench -i -s SCALE`;
  2. two Envoys, both `--concurrency 1`: envoy/postgres-tcp.yaml (A, plain
     tcp_proxy, pgbench logs in with the database password) and
     envoy/postgres.yaml (B, the same plus the pinhole network filter with
     the e2e Postgres policy; pgbench logs in with a JWT of the `bench` role,
     and every statement is parsed and decided);
  3. for each round and each mode (`-M simple`, `-M prepared`): A then B,
     `pgbench -n -S -c C -j J -T SECONDS` (select-only: the workload where a
     per-statement filter costs the most, relatively);
  4. prints each run's TPS and Envoy CPU per transaction, then per mode the
     median TPS of A and B and the median of the per-round ratios B/A.

Targets: B/A >= 0.85 with -M simple (every Query is parsed), >= 0.95 with -M
prepared (statements are parsed once, at Parse). The machine's 2 cores are
shared by pgbench, Envoy and PostgreSQL, and single runs swing by +-20%:
believe medians of several rounds, not one run. --check exits 1 when a median
ratio is below its target. --smoke (1 round of 1 s, used by the test suite)
only shows that the script works.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import envoyctl  # noqa: E402
import harness  # noqa: E402
import pg  # noqa: E402
from tokens import KeySet  # noqa: E402

TARGETS = {"simple": 0.85, "prepared": 0.95}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process, from /proc (0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def transactions(output: str) -> int:
    for line in output.splitlines():
        if line.startswith("number of transactions actually processed:"):
            return int(line.split(":")[1].split("/")[0].strip())
    return 0


def run_once(envoy: envoyctl.Envoy, user: str, password: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    cpu0 = cpu_seconds(envoy.pid)
    r = pg.pgbench(envoy.listen_port, user, password, mode=mode, seconds=args.seconds,
                   clients=args.clients, threads=args.threads, timeout=args.seconds + 120)
    cpu = cpu_seconds(envoy.pid) - cpu0
    if r.returncode != 0:
        raise SystemExit(f"pgbench -M {mode} through {envoy.name} failed (exit {r.returncode}):\n"
                         f"{r.stdout}\n{r.stderr}\n{envoy.log_tail(20)}")
    tx = transactions(r.stdout)
    return {
        "tps": pg.pgbench_tps(r.stdout),
        "transactions": tx,
        "envoy_cpu_us_per_tx": (cpu * 1e6 / tx) if tx else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10, help="pgbench -T per run (default 10)")
    ap.add_argument("--rounds", type=int, default=5, help="A/B pairs per mode (default 5)")
    ap.add_argument("--clients", type=int, default=4, help="pgbench -c (default 4)")
    ap.add_argument("--threads", type=int, default=2, help="pgbench -j (default 2)")
    ap.add_argument("--scale", type=int, default=1, help="pgbench -i -s (default 1)")
    ap.add_argument("--modes", default="simple,prepared", help="comma-separated pgbench -M modes")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    ap.add_argument("--check", action="store_true", help="exit 1 when a median ratio is below its target")
    ap.add_argument("--smoke", action="store_true", help="1 round of 1 s, 2 clients: does it work at all")
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.rounds, args.clients, args.threads = 1, 1, 2, 1
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in TARGETS:
            ap.error(f"unknown mode {m!r} (simple, prepared)")

    artifacts = harness.Artifacts.locate()
    workdir = Path(tempfile.mkdtemp(prefix="pinhole-bench-pg-"))
    keys = KeySet.generate()
    keys.write_jwks(workdir)
    (workdir / "policy.yaml").write_text(pg.policy_yaml())
    blob = harness.compile_policy(artifacts.pinhole, workdir / "policy.yaml", workdir / "policy.bin")
    tokens = pg.PgTokens(keys)

    cluster = pg.Cluster("bench", log_statements=False, max_connections=max(40, args.clients * 4))
    envoys: list[envoyctl.Envoy] = []
    results: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if k != "json"}, "runs": [],
                               "summary": {}}
    results["config"]["json"] = str(args.json) if args.json else None
    try:
        cluster.start()
        cluster.set_auth("scram-sha-256")
        cluster.pgbench_init(args.scale)
        env = {pg.PASSWORD_ENV: cluster.password}
        tcp_cfg = envoyctl.render(ROOT / "envoy" / "postgres-tcp.yaml", workdir / "tcp.envoy.yaml",
                                  UPSTREAM_PORT=cluster.port)
        pin_cfg = envoyctl.render(ROOT / "envoy" / "postgres.yaml", workdir / "pinhole.envoy.yaml",
                                  UPSTREAM_PORT=cluster.port, WASM=artifacts.wasm, PASSWORD_ENV=pg.PASSWORD_ENV,
                                  PLUGIN_CONFIG=envoyctl.plugin_config(pg.TARGET, blob, listener="postgres"))
        # warning level: an access-log line per connection is fine, per-connection
        # info logging of the filter is not what we measure.
        null_wasm = Path(artifacts.wasm).parent / "pinhole_null_filter.wasm"
        if not null_wasm.exists():
            raise SystemExit(f"{null_wasm} missing: run scripts/build.sh")
        null_cfg = envoyctl.render(ROOT / "envoy" / "postgres.yaml", workdir / "null.envoy.yaml",
                                   UPSTREAM_PORT=cluster.port, WASM=null_wasm, PASSWORD_ENV=pg.PASSWORD_ENV,
                                   PLUGIN_CONFIG="network")
        n = envoyctl.Envoy(null_cfg, workdir, name="null_wasm", log_level="warning", env=env)
        envoys.append(n)
        n.start(timeout=60)
        a = envoyctl.Envoy(tcp_cfg, workdir, name="tcp_proxy", log_level="warning", env=env)
        envoys.append(a)
        a.start(timeout=60)
        b = envoyctl.Envoy(pin_cfg, workdir, name="pinhole", log_level="warning", env=env)
        envoys.append(b)
        b.start(timeout=120)

        print(f"pgbench -n -S -c {args.clients} -j {args.threads} -T {args.seconds}, scale {args.scale}, "
              f"{args.rounds} round(s); Envoy --concurrency 1; A = tcp_proxy, B = tcp_proxy + pinhole", flush=True)
        # Warm-up (not counted): connections, the VM's caches, the page cache.
        for mode in modes:
            pg.pgbench(a.listen_port, pg.BACKEND_USER, cluster.password, mode=mode, seconds=1,
                       clients=args.clients, threads=args.threads)
            pg.pgbench(b.listen_port, "bench", tokens.bench(), mode=mode, seconds=1,
                       clients=args.clients, threads=args.threads)
            pg.pgbench(n.listen_port, pg.BACKEND_USER, cluster.password, mode=mode, seconds=1,
                       clients=args.clients, threads=args.threads)

        print("N = tcp_proxy + a trivial Rust proxy-wasm filter that only copies each read "
              "(bench/null-filter): the floor any Wasm network filter pays", flush=True)
        print(f"{'mode':9} {'round':>5} {'A tps':>10} {'N tps':>10} {'B tps':>10} {'N/A':>6} {'B/A':>6} "
              f"{'A µs/tx':>8} {'N µs/tx':>8} {'B µs/tx':>8}", flush=True)
        for rnd in range(1, args.rounds + 1):
            for mode in modes:
                ra = run_once(a, pg.BACKEND_USER, cluster.password, mode, args)
                rn = run_once(n, pg.BACKEND_USER, cluster.password, mode, args)
                rb = run_once(b, "bench", tokens.bench(), mode, args)
                ratio = rb["tps"] / ra["tps"] if ra["tps"] else 0.0
                null_ratio = rn["tps"] / ra["tps"] if ra["tps"] else 0.0
                results["runs"].append({"round": rnd, "mode": mode, "tcp_proxy": ra, "null_wasm": rn,
                                        "pinhole": rb, "ratio": ratio, "null_ratio": null_ratio})
                print(f"{mode:9} {rnd:>5} {ra['tps']:>10.0f} {rn['tps']:>10.0f} {rb['tps']:>10.0f} "
                      f"{null_ratio:>6.3f} {ratio:>6.3f} {_fmt(ra['envoy_cpu_us_per_tx']):>8} "
                      f"{_fmt(rn['envoy_cpu_us_per_tx']):>8} {_fmt(rb['envoy_cpu_us_per_tx']):>8}", flush=True)

        print()
        below = []
        for mode in modes:
            runs = [r for r in results["runs"] if r["mode"] == mode]
            a_tps = statistics.median(r["tcp_proxy"]["tps"] for r in runs)
            b_tps = statistics.median(r["pinhole"]["tps"] for r in runs)
            ratio = statistics.median(r["ratio"] for r in runs)
            null_ratio = statistics.median(r["null_ratio"] for r in runs)
            n_cpu = _median([r["null_wasm"]["envoy_cpu_us_per_tx"] for r in runs])
            a_cpu = _median([r["tcp_proxy"]["envoy_cpu_us_per_tx"] for r in runs])
            b_cpu = _median([r["pinhole"]["envoy_cpu_us_per_tx"] for r in runs])
            ok = ratio >= TARGETS[mode]
            if not ok:
                below.append(mode)
            results["summary"][mode] = {"tcp_proxy_tps": a_tps, "pinhole_tps": b_tps, "ratio": ratio,
                                        "target": TARGETS[mode], "meets_target": ok,
                                        "null_wasm_ratio": null_ratio,
                                        "null_wasm_envoy_cpu_us_per_tx": n_cpu,
                                        "tcp_proxy_envoy_cpu_us_per_tx": a_cpu,
                                        "pinhole_envoy_cpu_us_per_tx": b_cpu}
            print(f"{mode:9} median  A {a_tps:>8.0f} tps   B {b_tps:>8.0f} tps   B/A {ratio:.3f} "
                  f"(target >= {TARGETS[mode]:.2f}: {'ok' if ok else 'BELOW'})   N/A {null_ratio:.3f}   "
                  f"Envoy CPU/tx A {_fmt(a_cpu)} µs, N {_fmt(n_cpu)} µs, B {_fmt(b_cpu)} µs", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nEnvoy configs and logs, policy and blob: {workdir}")
        return 1 if (args.check and below) else 0
    finally:
        for e in reversed(envoys):
            e.stop()
        cluster.stop()


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _median(values: list[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return statistics.median(vs) if vs else None


if __name__ == "__main__":
    sys.exit(main())
