"""Pinhole's Envoy metrics on /stats/prometheus, with labels extracted by the
shipped configs' stats_tags (filter/src/metrics.rs): decisions by effect,
target and rule, authentication failures by reason, for the PostgreSQL and
the MCP listener."""

from __future__ import annotations

import re

import harness


def prometheus(envoy) -> str:
    status, body = envoy.admin_get("/stats/prometheus")
    assert status == 200, body
    return body


def counter(text: str, name: str, **labels: str) -> int:
    """The value of `name{labels...}` (labels matched as a subset)."""
    total = 0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\d+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += int(m.group(3))
    return total


def test_postgres_decisions_and_auth_failures_are_counted(pg_stack, pg_tokens) -> None:
    before = prometheus(pg_stack.envoy)
    token = pg_tokens.analyst()
    assert pg_stack.psql(token, "SELECT count(*) FROM orders").returncode == 0
    assert pg_stack.psql(token, "DROP TABLE orders").returncode != 0
    assert pg_stack.psql(pg_tokens.keys.expired("corp"), "SELECT 1").returncode != 0
    after = prometheus(pg_stack.envoy)

    def delta(name: str, **labels: str) -> int:
        return counter(after, name, **labels) - counter(before, name, **labels)

    assert delta("pinhole_decision", pinhole_effect="allow", pinhole_target="orders-db",
                 pinhole_rule="analysts-read-orders") >= 1, after
    assert delta("pinhole_decision", pinhole_effect="deny", pinhole_target="orders-db",
                 pinhole_rule="never-destroy") == 1, after
    assert delta("pinhole_auth_failure", pinhole_reason="token_expired", pinhole_target="orders-db") == 1, after


def test_mcp_decisions_are_counted(json_stack, tokens) -> None:
    before = prometheus(json_stack.envoy)
    with harness.RawMcp(json_stack.base_url, tokens.analyst()) as c:
        c.initialize()
        c.post(harness.jsonrpc("tools/call", {"name": "delete_everything", "arguments": {}}, id=7))
    with harness.RawMcp(json_stack.base_url, "not-a-token") as c:
        assert c.post(harness.initialize_msg()).status_code == 401
    after = prometheus(json_stack.envoy)
    denied = counter(after, "pinhole_decision", pinhole_effect="deny", pinhole_target="tools") - counter(
        before, "pinhole_decision", pinhole_effect="deny", pinhole_target="tools")
    assert denied >= 1, after
    failures = counter(after, "pinhole_auth_failure", pinhole_target="tools") - counter(
        before, "pinhole_auth_failure", pinhole_target="tools")
    assert failures == 1, after
