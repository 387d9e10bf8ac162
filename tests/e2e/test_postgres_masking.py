"""Masking of PostgreSQL results (docs/policy.md "Masking"): a column rule
masks customers.email for analysts while the dba role sees clear values;
a detector catches e-mail addresses in columns no rule names (a computed
column); libpq (psql, psycopg) and a pure driver (pg8000, extended protocol)
get valid rows; the masked values are counted on /stats/prometheus and
audited with decision "masked"."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import envoyctl
import harness
import pg

MASKING = """
masking:
  - id: hide-customer-emails
    target: orders-db
    columns: [customers.email]
    detectors: [email]
    strategy: { partial: 4 }
    except_roles: [dba]
"""

EMAILS = ("ada@example.test", "grace@example.test", "edsger@example.test")


@pytest.fixture(scope="module")
def masked_port(artifacts, workdir: Path, pg_cluster, world):
    d = workdir / "masking"
    d.mkdir(exist_ok=True)
    for name in ("jwks-corp.json", "jwks-edge.json", "jwks-ci.json"):
        (d / name).write_bytes((workdir / name).read_bytes())
    (d / "policy.yaml").write_text(pg.policy_yaml() + MASKING)
    blob = harness.compile_policy(artifacts.pinhole, d / "policy.yaml", d / "policy.bin")
    cfg = envoyctl.render(envoyctl.ROOT / "envoy" / "postgres.yaml", d / "envoy.yaml",
                          WASM=artifacts.wasm, UPSTREAM_PORT=pg_cluster.port, PASSWORD_ENV=pg.PASSWORD_ENV,
                          PLUGIN_CONFIG=envoyctl.plugin_config(pg.TARGET, blob, listener="postgres"))
    envoy = envoyctl.Envoy(cfg, d, name="masking", env={pg.PASSWORD_ENV: pg_cluster.password}).start(timeout=60)
    yield envoy
    envoy.stop()


def test_psql_analyst_sees_masked_emails_dba_sees_clear(masked_port, pg_cluster, pg_tokens) -> None:
    pg_cluster.set_auth("scram-sha-256")
    port = masked_port.listen_port
    r = pg.psql(port, "alice", pg_tokens.analyst(), "SELECT id, name, email FROM customers ORDER BY id")
    assert r.returncode == 0, r.stderr
    for e in EMAILS:
        assert e not in r.stdout, r.stdout
    rows = [line.split("|") for line in r.stdout.strip().splitlines()]
    assert [row[1] for row in rows] == ["Ada", "Grace", "Edsger"]  # other columns untouched
    assert all(row[2].endswith("test") and "*" in row[2] for row in rows), rows
    r = pg.psql(port, "dana", pg_tokens.dba(), "SELECT email FROM customers ORDER BY id")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == list(EMAILS)


@pytest.mark.parametrize("driver", ["psycopg", "pg8000"])
def test_drivers_get_valid_masked_rows(masked_port, pg_cluster, pg_tokens, driver: str) -> None:
    pg_cluster.set_auth("scram-sha-256")
    with pg.connect(driver, masked_port.listen_port, "alice", pg_tokens.analyst()) as s:
        rows = s.run("SELECT id, email FROM customers ORDER BY id")
        assert [r[0] for r in rows] == [1, 2, 3]
        assert not any(r[1] in EMAILS for r in rows), rows
        # Extended protocol with parameters and a prepared statement.
        rows = s.params("SELECT email FROM customers WHERE id = $1", (2,))
        assert rows and rows[0][0] != "grace@example.test", rows
        rows = s.prepared("SELECT name, email FROM customers WHERE id = $1", (1,))
        assert rows and rows[0][0] == "Ada" and rows[0][1] != "ada@example.test", rows


def test_detector_catches_emails_in_unnamed_columns(masked_port, pg_cluster, pg_tokens) -> None:
    pg_cluster.set_auth("scram-sha-256")
    r = pg.psql(masked_port.listen_port, "alice", pg_tokens.analyst(),
                "SELECT 'contact: ' || email AS c FROM customers ORDER BY id")
    assert r.returncode == 0, r.stderr
    for e in EMAILS:
        assert e not in r.stdout, r.stdout
    assert r.stdout.count("contact: ") == 3


def test_masked_values_are_counted_and_audited(masked_port, pg_cluster, pg_tokens) -> None:
    pg_cluster.set_auth("scram-sha-256")
    r = pg.psql(masked_port.listen_port, "alice", pg_tokens.analyst(), "SELECT email FROM customers")
    assert r.returncode == 0, r.stderr
    _, body = masked_port.admin_get("/stats/prometheus")
    m = re.search(r'^pinhole_masked_values\{[^}]*pinhole_target="orders-db"[^}]*\}\s+(\d+)', body, re.M)
    assert m and int(m.group(1)) >= 3, body
    events = [json.loads(line.split("pinhole-audit: ", 1)[1]) for line in masked_port.log_text().splitlines()
              if "pinhole-audit: " in line]
    masked = [e for e in events if e["decision"] == "masked"]
    assert masked and masked[-1]["masked"] >= 3 and masked[-1]["identity"]["subject"] == "alice", masked[-1:]
    assert masked[-1]["command"]["sql"].startswith("SELECT email FROM customers")
