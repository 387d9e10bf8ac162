"""The README's demo (scripts/demo.sh → scripts/demo.py) keeps working: it
runs the example policy through the real filter and shows allowed, denied
and refused calls."""

from __future__ import annotations

import os
import subprocess
import sys

import envoyctl


def test_demo_runs(artifacts, tmp_path) -> None:
    env = dict(os.environ, PINHOLE_WASM=str(artifacts.wasm), PINHOLE_BIN=str(artifacts.pinhole),
               ENVOY=str(artifacts.envoy), NO_COLOR="1", PINHOLE_DEMO_DIR=str(tmp_path / "demo"))
    proc = subprocess.run([sys.executable, str(envoyctl.ROOT / "scripts" / "demo.py")],
                          capture_output=True, text=True, timeout=180, env=env)
    out = proc.stdout
    assert proc.returncode == 0, f"demo failed ({proc.returncode}):\n{out}\n{proc.stderr}"
    lines = out.splitlines()

    def line(start: str) -> str:
        found = [ln for ln in lines if ln.strip().startswith(start)]
        assert found, f"no line starting with {start!r} in:\n{out}"
        return found[0]

    assert "✔ allowed" in line("✔ allowed  k8s_get_pods")
    assert "-32001" in line("✘ denied   deploy {\"environment\": \"production\"")
    assert "no-secrets" in line("✘ denied   k8s_get_secrets")
    assert line("✔ allowed  search_orders")
    assert line("✘ 401  offboarded contractor")
    assert "-32002" in line("✘ review   run_migration")
    # The server's own log lists only allowed calls.
    executed = out.split("what the MCP server actually executed", 1)[1].split("Envoy's log", 1)[0]
    assert "k8s_get_pods" in executed and "search_orders" in executed
    assert "k8s_get_secrets" not in executed and "delete_everything" not in executed
    assert '"production"' not in executed
    # PostgreSQL: psql with JWTs through the network filter.
    assert "pinhole_app|" in line("ALLOW  SELECT current_user, count(*) FROM orders")
    assert "42501" in line("REFUSE DROP TABLE orders")
    assert "42501" in line("REFUSE SELECT 1; DELETE FROM orders")
    assert "approval required" in line("REFUSE ALTER TABLE orders ADD COLUMN note text")
    # Story 4: approved by a reviewer, pushed, the same statement runs; another does not.
    assert line("held           request rq-")
    assert "approved by olga" in line("ALLOW  ALTER TABLE orders ADD COLUMN note text")
    assert "approval required" in line("REFUSE ALTER TABLE orders ADD COLUMN other text")
    assert "28P01" in line("REFUSE expired token") or "token expired" in line("REFUSE expired token")
    assert "subject revoked" in line("REFUSE revoked contractor")
    # The database ran the allowed statements and, for refusals, only the
    # filter's DO blocks: never the refused SQL.
    ran = out.split("what the database itself ran", 1)[1].split("Envoy's log", 1)[0]
    assert "SELECT current_user, count(*) FROM orders" in ran
    assert "DROP TABLE" not in ran and "TRUNCATE" not in ran and "DELETE FROM orders" not in ran
    assert "DO $pinhole$" in ran
