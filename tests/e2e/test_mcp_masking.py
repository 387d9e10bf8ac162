"""Masking of MCP tool results (docs/policy.md "Masking"), through the
official MCP SDK client, with the server answering JSON and SSE: a field
path masks `email` at any depth (structuredContent and the JSON text
content), detectors catch an address and a payment card in other fields,
the exempt role sees clear values, masked values are counted and audited."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import pytest

import harness

MASKING_RULES = """
  - id: analysts-look-up-customers
    allow:
      roles: [analyst, deployer]
      target: tools
      mcp:
        tools: [customer_lookup]

masking:
  - id: hide-customer-data
    target: tools
    fields: ["**.email"]
    detectors: [email, payment_card]
    strategy: { partial: 4 }
    except_roles: [deployer]
"""

SECRETS = ("ada@example.test", "ada.lovelace@example.test", "4111 1111 1111 1111")


@pytest.fixture(scope="module")
def masked_blob(artifacts, workdir: Path) -> bytes:
    path = workdir / "policy-masking.yaml"
    path.write_text(harness.policy_yaml() + MASKING_RULES)
    return harness.compile_policy(artifacts.pinhole, path, workdir / "policy-masking.bin")


@pytest.fixture(scope="module", params=["json", "sse"])
def masked_stack(request, world, masked_blob):
    sse = request.param == "sse"
    server = world.mcp_server("mcp-sse" if sse else "mcp-json", sse=sse)
    envoy = world.envoy(f"masking-{request.param}", "mcp.yaml", upstream_port=server.port, target="tools",
                        policy=masked_blob)
    return envoy


async def _lookup(url: str, token: str) -> tuple[str, dict]:
    async with harness.mcp_session(url, token) as client:
        result = await client.call_tool("customer_lookup", {"customer_id": 7})
        text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
        structured = getattr(result, "structured_content", None) or getattr(result, "structuredContent", None)
        return text, structured or {}


def test_tool_results_are_masked_for_analysts(masked_stack, tokens) -> None:
    text, structured = anyio.run(_lookup, masked_stack.listen_url + "/mcp", tokens.analyst())
    blob = text + json.dumps(structured)
    for secret in SECRETS:
        assert secret not in blob, blob
    assert structured["name"] == "Ada" and structured["id"] == 7  # the rest untouched
    assert structured["email"].endswith("test") and "*" in structured["email"], structured
    assert structured["card"].endswith("1111") and "*" in structured["card"], structured
    # The text content (JSON text) is masked the same way.
    assert json.loads(text)["email"] == structured["email"]


def test_exempt_role_sees_clear_values(masked_stack, tokens) -> None:
    text, structured = anyio.run(_lookup, masked_stack.listen_url + "/mcp", tokens.deployer())
    assert structured["email"] == "ada@example.test"
    assert structured["card"] == "4111 1111 1111 1111"


def test_masked_values_are_counted_and_audited(masked_stack, tokens) -> None:
    anyio.run(_lookup, masked_stack.listen_url + "/mcp", tokens.analyst())
    _, body = masked_stack.admin_get("/stats/prometheus")
    m = re.search(r'^pinhole_masked_values\{[^}]*pinhole_target="tools"[^}]*\}\s+(\d+)', body, re.M)
    assert m and int(m.group(1)) >= 3, body
    events = [json.loads(line.split("pinhole-audit: ", 1)[1]) for line in masked_stack.log_text().splitlines()
              if "pinhole-audit: " in line]
    masked = [e for e in events if e["decision"] == "masked"]
    assert masked, events[-3:]
    assert masked[-1]["command"]["tool"] == "customer_lookup" and masked[-1]["masked"] >= 3, masked[-1]
