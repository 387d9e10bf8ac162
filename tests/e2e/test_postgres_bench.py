"""scripts/bench-postgres.py works (a one-second smoke run; the benchmark
itself is run by hand, see docs/benchmarks.md): both Envoys start, pgbench
runs through each in both query modes, and the report has every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import envoyctl


def test_bench_postgres_smoke(artifacts, workdir: Path) -> None:
    out = workdir / "bench-postgres.json"
    proc = subprocess.run([sys.executable, str(envoyctl.ROOT / "scripts" / "bench-postgres.py"), "--smoke",
                           "--json", str(out)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"bench-postgres.py --smoke failed:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())
    assert set(report["summary"]) == {"simple", "prepared"}
    for mode, s in report["summary"].items():
        assert s["tcp_proxy_tps"] > 0 and s["pinhole_tps"] > 0, (mode, s)
        assert s["ratio"] > 0, (mode, s)
    assert "median" in proc.stdout and "B/A" in proc.stdout
