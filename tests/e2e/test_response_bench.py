"""scripts/bench-responses.py works (a one-second smoke run; the benchmark
itself is run by hand, see docs/benchmarks.md "MCP responses"): the upstream
and the three Envoys start, the checks pass (the filtered tools/lists hold
exactly the allowed tools, the 1 MiB result is masked for the masked caller
and unchanged for the exempt one, a call without a token is refused), the
over-limit probe runs, wrk runs every workload through every variant, and
the report has numeric figures for both workloads. The figures themselves
are not checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import envoyctl

WORKLOADS = {
    "list-50": {"plain", "null_wasm", "pinhole_pass", "pinhole_mask"},
    "list-500": {"plain", "null_wasm", "pinhole_pass", "pinhole_mask"},
    "result": {"plain", "null_wasm", "pinhole_pass", "pinhole_mask"},
}
FIGURES = ("rps", "p50_ms", "p99_ms", "envoy_cpu_us_per_req", "rps_ratio_vs_plain", "added_cpu_us_per_req")


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@pytest.mark.timeout(300)
def test_bench_responses_smoke(artifacts, workdir: Path) -> None:
    if not shutil.which("wrk") and (os.geteuid() != 0 or not shutil.which("apt-get")):
        pytest.skip("wrk not installed and cannot be installed here (apt-get install wrk)")
    out = workdir / "bench-responses.json"
    proc = subprocess.run([sys.executable, str(envoyctl.ROOT / "scripts" / "bench-responses.py"), "--smoke",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"bench-responses.py --smoke failed:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())

    checks = report["checks"]
    for n in ("50", "500"):
        c = checks["lists"][n]
        assert c["tools"] == int(n) and c["visible"] == int(n) // 5, c
        assert 0 < c["filtered_bytes"] < c["upstream_bytes"], c
    assert checks["result"]["upstream_bytes"] > 1_000_000 and checks["result"]["records"] > 1000
    assert checks["over_limit"]["exempt"]["complete"], checks["over_limit"]

    assert len(report["runs"]) == 1
    for workload, variants in WORKLOADS.items():
        summary = report["summary"][workload]
        assert variants <= set(summary), (workload, summary.keys())
        for v in variants:
            for key in FIGURES:
                assert _number(summary[v][key]), (workload, v, key, summary[v])
            assert summary[v]["rps"] > 0
    result = report["summary"]["result"]
    assert _number(result["masking_cpu_us_per_req"]) and _number(result["masking_cpu_us_per_mib"]), result

    for line in ("tools/list, 50 tools", "tools/list, 500 tools", "tools/call, ", "B-mask + Pinhole",
                 "masking (B-mask − B-pass", "µs per MiB", "over the buffer limit", "check: tools/list of 500"):
        assert line in proc.stdout, (line, proc.stdout)
