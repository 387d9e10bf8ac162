"""pgbench through Envoy: tcp_proxy alone (A) against tcp_proxy + Pinhole (B).

Run it with scripts/bench-postgres.sh (which installs and builds first), or
directly once scripts/setup.sh and scripts/build.sh have run:

    .venv/bin/python scripts/bench-postgres.py [--seconds 10] [--rounds 5]
        [--clients 4] [--threads 2] [--scale 1] [--modes simple,prepared]
        [--workloads select,masked] [--masked-rows 5000]
        [--json FILE] [--check] [--smoke]

What it does, all on loopback, everything stopped at the end:

  1. a throwaway PostgreSQL 15 cluster (tests/e2e/pg.py; statement logging
     off), `pgbench -i -s SCALE`, and (workload `masked`) a table
     `bench_customers(id, name, email, card, note)` of --masked-rows rows;
  2. Envoys, all `--concurrency 1`: envoy/postgres-tcp.yaml (A, plain
     tcp_proxy, pgbench logs in with the database password), the same with
     bench/null-filter (N: the floor of any Wasm network filter) and
     envoy/postgres.yaml (B, the same plus the pinhole network filter with
     the e2e Postgres policy; pgbench logs in with a JWT of the `bench` role,
     and every statement is parsed and decided); for workload `masked` one
     more pinhole Envoy (M) whose policy adds masking rules for the `bench`
     role on bench_customers.email, .card (`partial: 4`) and .note
     (`redact`), with the role `bench-clear` exempt;
  3. workload `select`: for each round and each mode (`-M simple`,
     `-M prepared`): A, N, B running `pgbench -n -S -c C -j J -T SECONDS`
     (select-only: the workload where a per-statement filter costs the most,
     relatively);
  4. workload `masked`: checks first, through A, M and both protocols, that
     the bench role gets those columns masked and an exempt caller gets them
     clear; then per round and mode A, N, C (M, token with groups
     bench + bench-clear: decided like B, nothing masked) and B (M, bench
     token: three values masked per row) run `pgbench -n -f masked.sql`: one
     SELECT of 20-100 consecutive rows (60 on average) per transaction at a
     random offset. The rows B returned are counted from the filter's
     pinhole.masked_values counter (3 per row), so per-row costs are exact;
  5. prints each run's TPS and Envoy CPU per transaction, then per workload
     and mode the median TPS and the median of the per-round ratios to A
     (masked: also Envoy CPU per returned row, B - A and B - C).

Targets (workload `select` only): B/A >= 0.85 with -M simple (every Query is
parsed), >= 0.95 with -M prepared (statements are parsed once, at Parse).
The masked workload has no target; it shows what masking costs. The
machine's 2 cores are shared by pgbench, Envoy and PostgreSQL, and single
runs swing by +-20%: believe medians of several rounds, not one run. --check
exits 1 when a median ratio of the select workload is below its target.
--smoke (1 round of 1 s, used by the test suite) only shows that the script
works.
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
WORKLOADS = ("select", "masked")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# ---- the masked-result workload

MASKED_TABLE = "bench_customers"
MASKED_COLUMNS = ("email", "card", "note")  # masked per row (3 values)
ROWS_MIN, ROWS_MAX = 20, 100  # rows per transaction, uniform: 60 on average
CLEAR_GROUP = "bench-clear"

# Appended to pg.policy_yaml(): the bench role may read the table (the rules
# list is the policy's last section), and its results are masked unless the
# caller also holds bench-clear.
MASKED_POLICY = f"""\
  - id: bench-masked-read
    reason: the masked-result workload of scripts/bench-postgres.py
    allow:
      roles: [bench]
      target: {pg.TARGET}
      sql: {{ statements: [select], tables: [public.{MASKED_TABLE}] }}

masking:
  - id: bench-contacts
    target: {pg.TARGET}
    roles: [bench]
    except_roles: [bench-clear]
    columns: [{MASKED_TABLE}.email, {MASKED_TABLE}.card]
    strategy: {{ partial: 4 }}
  - id: bench-notes
    target: {pg.TARGET}
    roles: [bench]
    except_roles: [bench-clear]
    columns: [{MASKED_TABLE}.note]
"""
# The role the exempt caller adds (roles: is followed by targets: in pg.policy_yaml()).
CLEAR_ROLE = f"  bench-clear:\n    groups: [{CLEAR_GROUP}]\n"

MASKED_SQL = f"""\
DROP TABLE IF EXISTS public.{MASKED_TABLE};
CREATE TABLE public.{MASKED_TABLE} (
    id    integer PRIMARY KEY,
    name  text NOT NULL,
    email text NOT NULL,
    card  text NOT NULL,
    note  text NOT NULL
);
INSERT INTO public.{MASKED_TABLE}
SELECT i,
       'Customer ' || i,
       'customer' || i || '@example.test',
       '4' || substr(c, 1, 3) || ' ' || substr(c, 4, 4) || ' ' || substr(c, 8, 4) || ' ' || substr(c, 12, 4),
       'account opened ' || (date '2015-01-01' + (i % 3000)) || ', tier ' || (i % 5)
FROM generate_series(1, %(rows)s) AS i,
     LATERAL (SELECT lpad(((i::bigint * 7919 * 104729) % 1000000000000000)::text, 15, '0') AS c) AS g;
ANALYZE public.{MASKED_TABLE};
"""

MASKED_QUERY = f"SELECT id, name, email, card, note FROM {MASKED_TABLE} WHERE id BETWEEN :lo AND :hi;"


def masked_policy_yaml() -> str:
    base = pg.policy_yaml()
    marker = "\ntargets:\n"
    assert marker in base and base.endswith("\n"), "pg.policy_yaml() changed shape"
    base = base.replace(marker, "\n" + CLEAR_ROLE + marker, 1)
    return base + MASKED_POLICY


def masked_script(rows: int) -> str:
    return (f"\\set lo random(1, {rows - ROWS_MAX + 1})\n"
            f"\\set n random({ROWS_MIN}, {ROWS_MAX})\n"
            "\\set hi :lo + :n - 1\n"
            f"{MASKED_QUERY}\n")


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


def masked_values(envoy: envoyctl.Envoy) -> int:
    """The filter's pinhole.masked_values counter of the bench target."""
    name = "wasmcustom." + "pinhole.masked_values.target." + pg.TARGET
    return envoy.stats(name).get(name, 0)


def run_once(envoy: envoyctl.Envoy, user: str, password: str, mode: str, args: argparse.Namespace,
             script: Path | None = None) -> dict[str, Any]:
    cpu0 = cpu_seconds(envoy.pid)
    r = pg.pgbench(envoy.listen_port, user, password, mode=mode, seconds=args.seconds,
                   clients=args.clients, threads=args.threads, timeout=args.seconds + 120, script=script)
    cpu = cpu_seconds(envoy.pid) - cpu0
    if r.returncode != 0:
        raise SystemExit(f"pgbench -M {mode} through {envoy.name} failed (exit {r.returncode}):\n"
                         f"{r.stdout}\n{r.stderr}\n{envoy.log_tail(20)}")
    tx = transactions(r.stdout)
    return {
        "tps": pg.pgbench_tps(r.stdout),
        "transactions": tx,
        "envoy_cpu_s": cpu,
        "envoy_cpu_us_per_tx": (cpu * 1e6 / tx) if tx else None,
    }


def verify_masking(a: envoyctl.Envoy, m: envoyctl.Envoy, cluster: pg.Cluster, tokens: pg.PgTokens) -> None:
    """Before measuring: through M the bench role gets email, card and note
    masked and an exempt caller gets them clear, in the simple and the
    extended protocol (a prepared statement run twice: the second Execute
    comes without a Describe from the client); through A they are clear."""
    sql = f"SELECT id, name, email, card, note FROM {MASKED_TABLE} WHERE id BETWEEN $1 AND $2 ORDER BY id"
    literal = sql.replace("$1", "1").replace("$2", "3")
    with pg.PsycopgSession(a.listen_port, pg.BACKEND_USER, cluster.password) as s:
        clear = s.run(literal)
    if len(clear) != 3 or not all("@example.test" in r[2] for r in clear):
        raise SystemExit(f"{MASKED_TABLE} through A: unexpected rows {clear}")
    clear_token = tokens.keys.mint("corp", "bench-clear", groups=["bench", CLEAR_GROUP], lifetime=3000)
    for who, token, want_masked in (("bench", tokens.bench(), True), ("bench-clear", clear_token, False)):
        with pg.PsycopgSession(m.listen_port, who, token) as s:
            got = {"simple": s.run(literal),
                   "prepared": s.prepared(sql, (1, 3)),
                   "prepared again": s.prepared(sql, (1, 3))}
        if want_masked:
            sample = got["simple"][0]
        for how, rows in got.items():
            if not want_masked:
                if rows != clear:
                    raise SystemExit(f"exempt caller, {how}: rows differ from A's: {rows} != {clear}")
                continue
            for c, r in zip(clear, rows, strict=True):
                ok = (r[0] == c[0] and r[1] == c[1] and r[4] == "[REDACTED]"
                      and all(r[i] != c[i] and "*" in r[i] and r[i][-4:] == c[i][-4:] for i in (2, 3)))
                if not ok:
                    raise SystemExit(f"bench role, {how}: row not masked as the policy says: {r} (clear: {c})")
    print(f"masking checked: through M the bench role gets e.g. {sample!r} "
          f"(simple and extended protocol), an exempt caller and A get {clear[0]!r}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10, help="pgbench -T per run (default 10)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of runs per workload and mode (default 5)")
    ap.add_argument("--clients", type=int, default=4, help="pgbench -c (default 4)")
    ap.add_argument("--threads", type=int, default=2, help="pgbench -j (default 2)")
    ap.add_argument("--scale", type=int, default=1, help="pgbench -i -s (default 1)")
    ap.add_argument("--modes", default="simple,prepared", help="comma-separated pgbench -M modes")
    ap.add_argument("--workloads", default="select,masked",
                    help="comma-separated: select (pgbench -S), masked (masked result rows); default both")
    ap.add_argument("--masked-rows", type=int, default=5000, help="rows of bench_customers (default 5000)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 when a median ratio of the select workload is below its target")
    ap.add_argument("--smoke", action="store_true", help="1 round of 1 s, 2 clients: does it work at all")
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.rounds, args.clients, args.threads = 1, 1, 2, 1
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in TARGETS:
            ap.error(f"unknown mode {m!r} (simple, prepared)")
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r} ({', '.join(WORKLOADS)})")
    if not workloads:
        ap.error("no workload")
    if args.masked_rows < ROWS_MAX:
        ap.error(f"--masked-rows must be at least {ROWS_MAX}")

    artifacts = harness.Artifacts.locate()
    workdir = Path(tempfile.mkdtemp(prefix="pinhole-bench-pg-"))
    keys = KeySet.generate()
    keys.write_jwks(workdir)
    (workdir / "policy.yaml").write_text(pg.policy_yaml())
    blob = harness.compile_policy(artifacts.pinhole, workdir / "policy.yaml", workdir / "policy.bin")
    masked_blob = None
    if "masked" in workloads:
        (workdir / "policy-masked.yaml").write_text(masked_policy_yaml())
        masked_blob = harness.compile_policy(artifacts.pinhole, workdir / "policy-masked.yaml",
                                             workdir / "policy-masked.bin")
        script = workdir / "masked.sql"
        script.write_text(masked_script(args.masked_rows))
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
        if "masked" in workloads:
            cluster.admin(MASKED_SQL.replace("%(rows)s", str(int(args.masked_rows))), user=pg.BACKEND_USER)
        env = {pg.PASSWORD_ENV: cluster.password}
        tcp_cfg = envoyctl.render(ROOT / "envoy" / "postgres-tcp.yaml", workdir / "tcp.envoy.yaml",
                                  UPSTREAM_PORT=cluster.port)
        null_wasm = Path(artifacts.wasm).parent / "pinhole_null_filter.wasm"
        if not null_wasm.exists():
            raise SystemExit(f"{null_wasm} missing: run scripts/build.sh")
        null_cfg = envoyctl.render(ROOT / "envoy" / "postgres.yaml", workdir / "null.envoy.yaml",
                                   UPSTREAM_PORT=cluster.port, WASM=null_wasm, PASSWORD_ENV=pg.PASSWORD_ENV,
                                   PLUGIN_CONFIG="network")
        # warning level: an access-log line per connection is fine, per-connection
        # info logging of the filter is not what we measure.
        n = envoyctl.Envoy(null_cfg, workdir, name="null_wasm", log_level="warning", env=env)
        envoys.append(n)
        n.start(timeout=60)
        a = envoyctl.Envoy(tcp_cfg, workdir, name="tcp_proxy", log_level="warning", env=env)
        envoys.append(a)
        a.start(timeout=60)
        b = m = None
        if "select" in workloads:
            pin_cfg = envoyctl.render(ROOT / "envoy" / "postgres.yaml", workdir / "pinhole.envoy.yaml",
                                      UPSTREAM_PORT=cluster.port, WASM=artifacts.wasm, PASSWORD_ENV=pg.PASSWORD_ENV,
                                      PLUGIN_CONFIG=envoyctl.plugin_config(pg.TARGET, blob, listener="postgres"))
            b = envoyctl.Envoy(pin_cfg, workdir, name="pinhole", log_level="warning", env=env)
            envoys.append(b)
            b.start(timeout=120)
        if masked_blob is not None:
            m_cfg = envoyctl.render(ROOT / "envoy" / "postgres.yaml", workdir / "masking.envoy.yaml",
                                    UPSTREAM_PORT=cluster.port, WASM=artifacts.wasm, PASSWORD_ENV=pg.PASSWORD_ENV,
                                    PLUGIN_CONFIG=envoyctl.plugin_config(pg.TARGET, masked_blob, listener="postgres"))
            m = envoyctl.Envoy(m_cfg, workdir, name="pinhole_masking", log_level="warning", env=env)
            envoys.append(m)
            m.start(timeout=120)
            verify_masking(a, m, cluster, tokens)

        def clear_token() -> str:
            return str(keys.mint("corp", "bench-clear", groups=["bench", CLEAR_GROUP], lifetime=3000))

        # Warm-up (not counted): connections, the VM's caches, the page cache.
        warm = dict(seconds=1, clients=args.clients, threads=args.threads)
        for mode in modes:
            if b is not None:
                pg.pgbench(a.listen_port, pg.BACKEND_USER, cluster.password, mode=mode, **warm)
                pg.pgbench(b.listen_port, "bench", tokens.bench(), mode=mode, **warm)
                pg.pgbench(n.listen_port, pg.BACKEND_USER, cluster.password, mode=mode, **warm)
            if m is not None:
                pg.pgbench(a.listen_port, pg.BACKEND_USER, cluster.password, mode=mode, script=script, **warm)
                pg.pgbench(n.listen_port, pg.BACKEND_USER, cluster.password, mode=mode, script=script, **warm)
                pg.pgbench(m.listen_port, "bench-clear", clear_token(), mode=mode, script=script, **warm)
                pg.pgbench(m.listen_port, "bench", tokens.bench(), mode=mode, script=script, **warm)

        print(f"pgbench -n -c {args.clients} -j {args.threads} -T {args.seconds}, scale {args.scale}, "
              f"{args.rounds} round(s); Envoy --concurrency 1; A = tcp_proxy, B = tcp_proxy + pinhole", flush=True)
        print("N = tcp_proxy + a trivial Rust proxy-wasm filter that only copies each read "
              "(bench/null-filter): the floor any Wasm network filter pays", flush=True)
        if m is not None:
            print(f"masked: pgbench -f masked.sql ({ROWS_MIN}-{ROWS_MAX} rows of {MASKED_TABLE} per transaction, "
                  f"{args.masked_rows} rows); C = pinhole with the masking policy, caller exempt "
                  f"(nothing masked); B = the same Envoy, bench role: email, card, note masked", flush=True)
        masked_runs: list[dict[str, Any]] = []
        # The table header again whenever the workload changes.
        header_done: set[str] = set()
        for rnd in range(1, args.rounds + 1):
            for workload in workloads:
                if len(workloads) > 1:
                    header_done.clear()
                for mode in modes:
                    if workload == "select":
                        assert b is not None
                        if workload not in header_done:
                            header_done.add(workload)
                            print(f"\n{'select':9} {'round':>5} {'A tps':>10} {'N tps':>10} {'B tps':>10} "
                                  f"{'N/A':>6} {'B/A':>6} {'A µs/tx':>8} {'N µs/tx':>8} {'B µs/tx':>8}",
                                  flush=True)
                        ra = run_once(a, pg.BACKEND_USER, cluster.password, mode, args)
                        rn = run_once(n, pg.BACKEND_USER, cluster.password, mode, args)
                        rb = run_once(b, "bench", tokens.bench(), mode, args)
                        ratio = rb["tps"] / ra["tps"] if ra["tps"] else 0.0
                        null_ratio = rn["tps"] / ra["tps"] if ra["tps"] else 0.0
                        results["runs"].append({"round": rnd, "mode": mode, "tcp_proxy": ra, "null_wasm": rn,
                                                "pinhole": rb, "ratio": ratio, "null_ratio": null_ratio})
                        print(f"{mode:9} {rnd:>5} {ra['tps']:>10.0f} {rn['tps']:>10.0f} {rb['tps']:>10.0f} "
                              f"{null_ratio:>6.3f} {ratio:>6.3f} {_fmt(ra['envoy_cpu_us_per_tx']):>8} "
                              f"{_fmt(rn['envoy_cpu_us_per_tx']):>8} {_fmt(rb['envoy_cpu_us_per_tx']):>8}",
                              flush=True)
                    else:
                        assert m is not None
                        if workload not in header_done:
                            header_done.add(workload)
                            print(f"\n{'masked':9} {'round':>5} {'A tps':>9} {'N tps':>9} {'C tps':>9} "
                                  f"{'B tps':>9} {'N/A':>6} {'C/A':>6} {'B/A':>6} {'rows/tx':>7} "
                                  f"{'A µs/tx':>8} {'N µs/tx':>8} {'C µs/tx':>8} {'B µs/tx':>8}", flush=True)
                        rm = masked_round(a, n, m, cluster, tokens, clear_token, mode, args, script)
                        rm["round"] = rnd
                        masked_runs.append(rm)
                        v = rm["variants"]
                        print(f"{mode:9} {rnd:>5} " + " ".join(f"{v[k]['tps']:>9.0f}" for k in "ANCB")
                              + " " + " ".join(f"{rm['ratios'][k]:>6.3f}" for k in "NCB")
                              + f" {rm['rows_per_tx']:>7.1f} "
                              + " ".join(f"{_fmt(v[k]['envoy_cpu_us_per_tx']):>8}" for k in "ANCB"), flush=True)

        print()
        below = []
        for mode in modes if b is not None else []:
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
            print(f"select {mode:9} median  A {a_tps:>8.0f} tps   B {b_tps:>8.0f} tps   B/A {ratio:.3f} "
                  f"(target >= {TARGETS[mode]:.2f}: {'ok' if ok else 'BELOW'})   N/A {null_ratio:.3f}   "
                  f"Envoy CPU/tx A {_fmt(a_cpu)} µs, N {_fmt(n_cpu)} µs, B {_fmt(b_cpu)} µs", flush=True)
        if m is not None:
            results["masked"] = {"runs": masked_runs, "summary": {}}
            for mode in modes:
                runs = [r for r in masked_runs if r["mode"] == mode]
                s = masked_summary(runs)
                results["masked"]["summary"][mode] = s
                print(f"masked {mode:9} median  A {s['tps']['A']:>7.0f} N {s['tps']['N']:>7.0f} "
                      f"C {s['tps']['C']:>7.0f} B {s['tps']['B']:>7.0f} tps   "
                      f"N/A {s['ratio']['N']:.3f} C/A {s['ratio']['C']:.3f} B/A {s['ratio']['B']:.3f}   "
                      f"{s['rows_per_tx']:.1f} rows/tx", flush=True)
                print(f"{'':16} Envoy CPU/tx A {_fmt(s['envoy_cpu_us_per_tx']['A'])} N "
                      f"{_fmt(s['envoy_cpu_us_per_tx']['N'])} C {_fmt(s['envoy_cpu_us_per_tx']['C'])} "
                      f"B {_fmt(s['envoy_cpu_us_per_tx']['B'])} µs;  per row: B-A "
                      f"{_fmt(s['added_cpu_us_per_row']['B-A'], 2)} µs, C-A "
                      f"{_fmt(s['added_cpu_us_per_row']['C-A'], 2)} µs, masking (B-C) "
                      f"{_fmt(s['added_cpu_us_per_row']['B-C'], 2)} µs", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nEnvoy configs and logs, policies and blobs: {workdir}")
        return 1 if (args.check and below) else 0
    finally:
        for e in reversed(envoys):
            e.stop()
        cluster.stop()


def masked_round(a: envoyctl.Envoy, n: envoyctl.Envoy, m: envoyctl.Envoy, cluster: pg.Cluster,
                 tokens: pg.PgTokens, clear_token: Any, mode: str, args: argparse.Namespace,
                 script: Path) -> dict[str, Any]:
    """One round of the masked workload in one mode: A, N, C, B."""
    v: dict[str, dict[str, Any]] = {}
    v["A"] = run_once(a, pg.BACKEND_USER, cluster.password, mode, args, script)
    v["N"] = run_once(n, pg.BACKEND_USER, cluster.password, mode, args, script)
    before = masked_values(m)
    v["C"] = run_once(m, "bench-clear", clear_token(), mode, args, script)
    after_c = masked_values(m)
    v["B"] = run_once(m, "bench", tokens.bench(), mode, args, script)
    after_b = masked_values(m)
    if after_c != before:
        raise SystemExit(f"masked workload, -M {mode}: the exempt caller got {after_c - before} values masked")
    masked = after_b - after_c
    tx = v["B"]["transactions"]
    if masked <= 0 or not tx:
        raise SystemExit(f"masked workload, -M {mode}: pgbench's rows through B were not masked "
                         f"({masked} values masked in {tx} transactions)\n{m.log_tail(20)}")
    rows_per_tx = masked / len(MASKED_COLUMNS) / tx
    for k in v:
        cpu_tx = v[k]["envoy_cpu_us_per_tx"]
        v[k]["envoy_cpu_us_per_row"] = cpu_tx / rows_per_tx if cpu_tx is not None else None
    ratios = {k: (v[k]["tps"] / v["A"]["tps"] if v["A"]["tps"] else 0.0) for k in "NCB"}
    return {"mode": mode, "variants": v, "ratios": ratios, "masked_values": masked, "rows_per_tx": rows_per_tx}


def masked_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(get: Any) -> float | None:
        return _median([get(r) for r in runs])

    def added(x: str, y: str) -> float | None:
        vals = []
        for r in runs:
            cx = r["variants"][x]["envoy_cpu_us_per_row"]
            cy = r["variants"][y]["envoy_cpu_us_per_row"]
            vals.append(cx - cy if cx is not None and cy is not None else None)
        return _median(vals)

    return {
        "tps": {k: med(lambda r, k=k: r["variants"][k]["tps"]) for k in "ANCB"},
        "ratio": {k: med(lambda r, k=k: r["ratios"][k]) for k in "NCB"},
        "rows_per_tx": med(lambda r: r["rows_per_tx"]),
        "envoy_cpu_us_per_tx": {k: med(lambda r, k=k: r["variants"][k]["envoy_cpu_us_per_tx"]) for k in "ANCB"},
        "envoy_cpu_us_per_row": {k: med(lambda r, k=k: r["variants"][k]["envoy_cpu_us_per_row"]) for k in "ANCB"},
        # Median over rounds of the per-round difference.
        "added_cpu_us_per_row": {"B-A": added("B", "A"), "C-A": added("C", "A"), "N-A": added("N", "A"),
                                 "B-C": added("B", "C")},
    }


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _median(values: list[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return statistics.median(vs) if vs else None


if __name__ == "__main__":
    sys.exit(main())
