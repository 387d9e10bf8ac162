"""A one-minute soak (tests/e2e/soak.py; the 30-minute run is
scripts/soak.sh): real Envoy with Pinhole on two MCP listeners and a
PostgreSQL listener, mixed MCP and PostgreSQL clients checking every
decision, `pinhole push` replacing both policies every ~10 s. Zero failures
and every push applied; memory is reported (a minute is too short to judge
it, see soak.py)."""

from __future__ import annotations

import os

import pytest

import soak

DURATION = float(os.environ.get("PINHOLE_SOAK_TEST_SECONDS", "60"))


@pytest.mark.timeout(DURATION + 150)
def test_soak_one_minute(artifacts, capsys) -> None:
    opts = soak.Options(duration=DURATION, push_interval=10, sample_interval=5, mcp_workers=2,
                        mcp_sdk_workers=1, pg_long_workers=2, pg_short_workers=2, verbose=False)
    summary = soak.run(opts, artifacts)
    with capsys.disabled():
        soak.print_summary(summary)
    assert summary["failures"] == 0, summary["failure_samples"]
    assert summary["pushes_written"] >= int(DURATION // 10) - 1, summary
    assert summary["pushes_applied"] == summary["pushes_written"], summary
    assert not summary["problems"], summary["problems"]
    # Each kind of traffic really ran, with both outcomes.
    outcomes = summary["by_outcome"]
    for key in ("mcp allow", "mcp deny", "mcp review", "pg allow", "pg deny"):
        assert outcomes.get(key, 0) > 0, (key, outcomes)
    assert summary["connections"].get("pg long", 0) >= 2, summary["connections"]
    assert summary["connections"].get("pg short", 0) > 5, summary["connections"]
