"""A policy the filter cannot load must not open the gate: Envoy still
starts (the listener stays up), every request gets 503
{"error": "policy_unavailable"}, nothing reaches the MCP server, and the
Envoy log says why."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest

import harness

KINDS = ["flipped", "truncated", "wrong-magic", "not-base64", "empty"]


@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_policy_fails_closed(corrupt_stack, tokens, kind: str) -> None:
    stack = corrupt_stack(kind)
    assert stack.envoy.admin_get("/ready")[0] == 200, "Envoy must start with a broken policy"

    mark = stack.request_log.mark()
    marker = uuid.uuid4().hex
    headers = {"accept": harness.MCP_ACCEPT, "content-type": "application/json", "x-e2e-marker": marker}
    for token in (tokens.deployer(), tokens.analyst(), None):
        h = dict(headers)
        if token:
            h["authorization"] = f"Bearer {token}"
        for body in (harness.initialize_msg(),
                     harness.jsonrpc("tools/call", {"name": "k8s_get_pods", "arguments": {}})):
            r = httpx.post(stack.url, content=json.dumps(body), headers=h, timeout=harness.REQUEST_TIMEOUT)
            assert r.status_code == 503, (kind, r.status_code, r.text)
            assert r.json()["error"] == "policy_unavailable"
        g = httpx.get(stack.url, headers=h, timeout=harness.REQUEST_TIMEOUT)
        assert g.status_code == 503, (kind, "GET", g.status_code)

    assert harness.reached(stack.request_log, mark, marker) == [], "a request passed a filter without a policy"

    log = stack.envoy.log_text()
    lines = [line for line in log.splitlines()
             if re.search(r"\[(error|critical)\]", line) and "pinhole" in line and re.search("polic", line, re.I)]
    assert lines, f"no pinhole policy error in the Envoy log:\n{stack.envoy.log_tail(30)}"


def test_good_policy_logs_that_it_loaded(json_stack) -> None:
    log = json_stack.envoy.log_text()
    assert re.search(r"pinhole: .*loaded policy", log), json_stack.envoy.log_tail(30)
    assert not re.search(r"\[critical\]", log), json_stack.envoy.log_tail(30)
