"""scripts/bench-postgres.py works (a one-second smoke run; the benchmark
itself is run by hand, see docs/benchmarks.md): the Envoys start, pgbench
runs through each in both query modes, for both workloads (pgbench -S, and
the masked-result workload, whose rows through B come back masked), and the
report has every figure."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import envoyctl


def _positive(v: object) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def test_bench_postgres_smoke(artifacts, workdir: Path) -> None:
    out = workdir / "bench-postgres.json"
    proc = subprocess.run([sys.executable, str(envoyctl.ROOT / "scripts" / "bench-postgres.py"), "--smoke",
                           "--json", str(out)], capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, f"bench-postgres.py --smoke failed:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())
    assert report["config"]["workloads"] == "select,masked"
    assert set(report["summary"]) == {"simple", "prepared"}
    for mode, s in report["summary"].items():
        assert s["tcp_proxy_tps"] > 0 and s["pinhole_tps"] > 0, (mode, s)
        assert s["ratio"] > 0, (mode, s)
    assert "median" in proc.stdout and "B/A" in proc.stdout

    # The masked workload: checked before measuring, then every variant ran
    # and B's rows were masked (3 values per row, 20-100 rows a transaction).
    assert "masking checked" in proc.stdout, proc.stdout
    masked = report["masked"]
    assert set(masked["summary"]) == {"simple", "prepared"}
    for mode, s in masked["summary"].items():
        assert all(_positive(s["tps"][k]) for k in "ANCB"), (mode, s)
        assert all(_positive(s["ratio"][k]) for k in "NCB"), (mode, s)
        assert all(_positive(s["envoy_cpu_us_per_tx"][k]) for k in "ANCB"), (mode, s)
        assert 20 <= s["rows_per_tx"] <= 100, (mode, s)
        for k in ("B-A", "C-A", "B-C"):
            v = s["added_cpu_us_per_row"][k]
            assert isinstance(v, (int, float)) and math.isfinite(v), (mode, k, s)
    for r in masked["runs"]:
        assert r["masked_values"] > 0 and r["masked_values"] % 3 == 0, r
