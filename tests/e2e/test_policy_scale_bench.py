"""scripts/bench-policy-scale.py works (a smoke run: 10 and 300 rules, one
round of one second; the benchmark itself is run by hand, see
docs/benchmarks.md "Policy scale"): the generated policies compile, the
native timer runs, an Envoy per size starts with its blob, decides the
benchmark's call (allowed; a production deploy and a call without a token
refused), wrk runs through each, and the report has every figure. The
figures are not checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import envoyctl


@pytest.mark.timeout(900)
def test_bench_policy_scale_smoke(artifacts, workdir: Path) -> None:
    if not shutil.which("wrk") and (os.geteuid() != 0 or not shutil.which("apt-get")):
        pytest.skip("wrk not installed and cannot be installed here (apt-get install wrk)")
    out = workdir / "bench-policy-scale.json"
    proc = subprocess.run([sys.executable, str(envoyctl.ROOT / "scripts" / "bench-policy-scale.py"), "--smoke",
                           "--json", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"bench-policy-scale.py --smoke failed:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())
    assert set(report["sizes"]) == {"10", "300"}
    for size in report["sizes"].values():
        for key in ("compile_s", "blob_bytes", "envoy_load_s", "rss_kib_after", "envoy_cpu_us_per_req",
                    "cpu_ratio_vs_base"):
            assert size[key] is not None, (key, size)
        native = size["native"]
        assert native["effect"] == "allow" and native["rule"] == "analysts-search", native
        for key in ("auth_ns", "decide_ns", "scan_ns", "body_ns", "visible_ns"):
            assert native[key] > 0, (key, native)
    assert len(report["runs"]) == 1
    for line in ("compile s", "native (eval_scale", "µs/req", "÷ base", "rules ÷ 10 rules"):
        assert line in proc.stdout, (line, proc.stdout)
