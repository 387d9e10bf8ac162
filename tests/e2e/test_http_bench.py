"""scripts/bench-http.py works (a one-second smoke run; the benchmark itself
is run by hand, see docs/benchmarks.md): the upstream and the four Envoys
start, a valid tools/call reaches the upstream through each, the native chain
and Pinhole refuse a call to another tool, wrk runs through each, and the
report has every variant. The figures are not checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import envoyctl

VARIANTS = {"plain", "null_wasm", "native", "pinhole"}


@pytest.mark.timeout(240)
def test_bench_http_smoke(artifacts, workdir: Path) -> None:
    if not shutil.which("wrk") and (os.geteuid() != 0 or not shutil.which("apt-get")):
        pytest.skip("wrk not installed and cannot be installed here (apt-get install wrk)")
    out = workdir / "bench-http.json"
    proc = subprocess.run([sys.executable, str(envoyctl.ROOT / "scripts" / "bench-http.py"), "--smoke",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"bench-http.py --smoke failed:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())
    assert VARIANTS <= set(report["summary"])
    assert len(report["runs"]) == 1 and VARIANTS <= set(report["runs"][0])
    for line in ("P no policy filter", "N + trivial", "E + jwt_authn", "B + Pinhole", "B added / N added"):
        assert line in proc.stdout, (line, proc.stdout)
