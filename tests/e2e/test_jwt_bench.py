"""scripts/bench-jwt.py works (a one-second smoke run; the benchmark itself
is run by hand, see docs/benchmarks.md "JWT verification inside Envoy"): the
upstream and both Envoys start, Pinhole lets a cached and a fresh token of
every algorithm through and refuses a forged one, wrk runs the cache-hit and
the first-verification runs of RS256, ES256 and EdDSA with distinct tokens,
and the report has numeric figures for each. The figures themselves are not
checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import envoyctl

ALGORITHMS = ("RS256", "ES256", "EdDSA")


@pytest.mark.timeout(180)
def test_bench_jwt_smoke(artifacts, workdir: Path) -> None:
    if not shutil.which("wrk") and (os.geteuid() != 0 or not shutil.which("apt-get")):
        pytest.skip("wrk not installed and cannot be installed here (apt-get install wrk)")
    out = workdir / "bench-jwt.json"
    proc = subprocess.run([sys.executable, str(envoyctl.ROOT / "scripts" / "bench-jwt.py"), "--smoke",
                           "--json", str(out)], capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, f"bench-jwt.py --smoke failed:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())
    summary = report["summary"]
    assert isinstance(summary["null"]["envoy_cpu_us_per_req"], float), summary["null"]
    assert len(report["runs"]) == 1
    run = report["runs"][0]
    for alg in ALGORITHMS:
        s = summary[alg]
        for key in ("hit_us_per_req", "miss_us_per_req", "verify_us", "miss_over_hit", "hit_over_null_us"):
            assert isinstance(s[key], float), (alg, key, s)
        assert s["hit_requests"] > 0 and s["miss_requests"] > 0, (alg, s)
        # Every request of the miss run carried a token of its own.
        miss = run[f"{alg}-miss"]
        assert miss["tokens_distinct"] == miss["tokens_sent"] >= miss["requests"], (alg, miss)
        # One table row per algorithm, with its figures.
        assert any(line.split()[:1] == [alg] and len(line.split()) == 9 for line in proc.stdout.splitlines()), \
            (alg, proc.stdout)
    for line in ("verify µs", "miss/hit", "N (null Wasm filter)", "load average"):
        assert line in proc.stdout, (line, proc.stdout)
