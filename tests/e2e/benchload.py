"""Load scripts/bench-http.py (a file name that is not a module name) as a
module, for the benchmark scripts that reuse its upstream, wrk and /proc
helpers."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def bench_http() -> Any:
    spec = importlib.util.spec_from_file_location("bench_http", ROOT / "scripts" / "bench-http.py")
    if spec is None or spec.loader is None:
        raise SystemExit("cannot load scripts/bench-http.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
