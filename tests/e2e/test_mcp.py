"""MCP authorization through a real Envoy running pinhole.wasm, with the
official MCP SDK on both sides (server: MCPServer over Streamable HTTP in JSON
and SSE response modes; client: mcp.Client).

Proof that a refused call never ran comes from the server: every tool
execution is appended to its exec log (tests/e2e/mcp_server.py), and the
tests look at what was appended since they started.

The policy is harness.policy_yaml(); the identities are in conftest.Tokens.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import MCPError

import harness
from harness import BATCH_REFUSED, DENIED, REVIEW_REQUIRED, RawMcp, mcp_session

pytestmark = pytest.mark.anyio


def executed(stack, mark: int, tool: str | None = None) -> list[dict[str, Any]]:
    entries = stack.exec_log.since(mark)
    return [e for e in entries if tool is None or e["tool"] == tool]


def assert_denied(err: MCPError, *, code: int = DENIED, rule: str | None) -> None:
    """The filter contract for a refused MCP call (filter/src/mcp/mod.rs):
    code -32001 with message ``pinhole: denied by rule `<id>`: <reason>``
    (``pinhole: denied: <reason>`` when no rule matched), or -32002 with
    ``pinhole: approval required by rule `<id>`: ...`` for review rules;
    `data.rule` names the rule."""
    assert err.code == code, f"expected JSON-RPC error {code}, got {err.code}: {err.message}"
    if rule is None:
        assert err.message.startswith("pinhole: denied:"), err.message
        if isinstance(err.data, dict):
            assert err.data.get("rule") is None, err.data
    else:
        verb = "approval required" if code == REVIEW_REQUIRED else "denied"
        assert err.message.startswith(f"pinhole: {verb} by rule `{rule}`"), err.message
        assert isinstance(err.data, dict) and err.data.get("rule") == rule, err.data


# ---------------------------------------------------------------- tools/call

async def test_allowed_tool_call_runs(stack, tokens) -> None:
    mark = stack.exec_log.mark()
    async with mcp_session(stack.url, tokens.analyst()) as client:
        result = await client.call_tool("k8s_get_pods", {"namespace": "payments"})
    assert not result.is_error, result
    assert result.structured_content == {"result": ["payments/web-7d9f", "payments/worker-5c2a"]}
    assert executed(stack, mark) == [{"tool": "k8s_get_pods", "arguments": {"namespace": "payments"}}]


async def test_denied_tool_call_never_runs_and_session_stays_usable(stack, tokens) -> None:
    mark = stack.exec_log.mark()
    async with mcp_session(stack.url, tokens.deployer()) as client:
        with pytest.raises(MCPError) as exc:
            await client.call_tool("delete_everything", {})
        assert_denied(exc.value, rule="no-delete-everything")
        assert "irreversible" in exc.value.message  # the rule's reason is part of the message

        # Same session, next call: still works.
        result = await client.call_tool("k8s_get_pods", {})
        assert not result.is_error
        # And a second denial in the same session is again a clean error.
        with pytest.raises(MCPError) as exc2:
            await client.call_tool("delete_everything", {})
        assert_denied(exc2.value, rule="no-delete-everything")

    assert executed(stack, mark, "delete_everything") == [], "a denied tool ran on the server"
    assert [e["tool"] for e in executed(stack, mark)] == ["k8s_get_pods"]


async def test_default_deny_for_a_tool_no_rule_allows(stack, tokens) -> None:
    mark = stack.exec_log.mark()
    async with mcp_session(stack.url, tokens.analyst()) as client:
        with pytest.raises(MCPError) as exc:
            await client.call_tool("scale", {"replicas": 3})
    assert_denied(exc.value, rule=None)
    assert executed(stack, mark) == []


async def test_review_rule_refuses_until_approved(stack, tokens) -> None:
    mark = stack.exec_log.mark()
    async with mcp_session(stack.url, tokens.analyst()) as client:
        with pytest.raises(MCPError) as exc:
            await client.call_tool("k8s_get_secrets", {"namespace": "payments"})
    assert_denied(exc.value, code=REVIEW_REQUIRED, rule="analysts-secrets-need-review")
    assert executed(stack, mark) == []


async def test_a_role_without_rules_gets_nothing(stack, tokens) -> None:
    mark = stack.exec_log.mark()
    async with mcp_session(stack.url, tokens.nobody()) as client:
        with pytest.raises(MCPError) as exc:
            await client.call_tool("k8s_get_pods", {})
        assert_denied(exc.value, rule=None)
        listed = {t.name for t in (await client.list_tools()).tools}
    assert listed == set()
    assert executed(stack, mark) == []


# ---------------------------------------------------------------- argument constraints

async def test_argument_constraint_allows_staging(stack, tokens) -> None:
    mark = stack.exec_log.mark()
    async with mcp_session(stack.url, tokens.deployer()) as client:
        result = await client.call_tool("deploy", {"environment": "staging", "version": "1.2.3"})
    assert not result.is_error
    assert executed(stack, mark) == [
        {"tool": "deploy", "arguments": {"environment": "staging", "version": "1.2.3", "replicas": 1}}
    ]


async def test_argument_constraint_denies_production_by_rule(stack, tokens) -> None:
    mark = stack.exec_log.mark()
    async with mcp_session(stack.url, tokens.deployer()) as client:
        with pytest.raises(MCPError) as exc:
            await client.call_tool("deploy", {"environment": "production", "version": "1.2.3"})
        assert_denied(exc.value, rule="no-production-deploys")
        # An environment no allow rule names: refused, naming the allow rule
        # whose argument constraint it failed and the constraint.
        with pytest.raises(MCPError) as exc2:
            await client.call_tool("deploy", {"environment": "qa"})
        assert_denied(exc2.value, rule="deploy-to-staging")
        assert 'argument `environment` = "qa" must be one of ["staging"]' in exc2.value.message
        # A missing argument does not satisfy the constraint either.
        with pytest.raises(MCPError) as exc3:
            await client.call_tool("deploy", {})
        assert_denied(exc3.value, rule="deploy-to-staging")
        assert "argument `environment` is missing" in exc3.value.message
    assert executed(stack, mark) == []


async def test_numeric_bounds(stack, tokens) -> None:
    mark = stack.exec_log.mark()
    async with mcp_session(stack.url, tokens.deployer()) as client:
        ok = await client.call_tool("scale", {"replicas": 10})
        assert not ok.is_error
        for replicas in (0, 11, 500):
            with pytest.raises(MCPError) as exc:
                await client.call_tool("scale", {"replicas": replicas})
            assert_denied(exc.value, rule="deployers-scale-bounded")
            assert f"argument `replicas` = {replicas} must be a number in [1, 10]" in exc.value.message
        # A number in a string is not a number.
        with pytest.raises(MCPError) as exc:
            await client.call_tool("scale", {"replicas": "5"})
        assert_denied(exc.value, rule="deployers-scale-bounded")
    assert executed(stack, mark) == [{"tool": "scale", "arguments": {"replicas": 10}}]


# ---------------------------------------------------------------- SQL through a tool argument

async def test_sql_tool_select_on_orders_runs(stack, tokens) -> None:
    mark = stack.exec_log.mark()
    async with mcp_session(stack.url, tokens.analyst()) as client:
        result = await client.call_tool("query", {"sql": "SELECT id, status FROM orders WHERE status = 'late'"})
        assert not result.is_error, result
        # Qualified, joined with itself, several statements: still only orders.
        result = await client.call_tool(
            "query", {"sql": "SELECT 1; SELECT o.id FROM public.orders o JOIN orders p ON p.id = o.id"}
        )
        assert not result.is_error, result
    assert [e["tool"] for e in executed(stack, mark)] == ["query", "query"]
    assert executed(stack, mark)[0]["arguments"] == {"sql": "SELECT id, status FROM orders WHERE status = 'late'"}


@pytest.mark.parametrize(
    "sql, needle",
    [
        ("DELETE FROM orders", "statement `DELETE FROM orders`"),
        ("WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d", "statement kind delete is not in [select]"),
        ("SELECT * FROM customers", "table `public.customers` is not in"),
        ("SELECT 1; DROP TABLE orders", "statement `DROP TABLE orders`"),
    ],
)
async def test_sql_tool_refuses_what_the_rule_does_not_allow(stack, tokens, sql: str, needle: str) -> None:
    mark = stack.exec_log.mark()
    async with mcp_session(stack.url, tokens.analyst()) as client:
        with pytest.raises(MCPError) as exc:
            await client.call_tool("query", {"sql": sql})
        assert_denied(exc.value, rule="analysts-sql-orders")
        assert needle in exc.value.message, exc.value.message
        assert "agents read orders, nothing else" in exc.value.message
        # The session stays usable.
        assert not (await client.call_tool("query", {"sql": "SELECT count(*) FROM orders"})).is_error
    assert [e["arguments"]["sql"] for e in executed(stack, mark, "query")] == ["SELECT count(*) FROM orders"]


async def test_sql_tool_refuses_unparsable_sql(stack, tokens) -> None:
    mark = stack.exec_log.mark()
    async with mcp_session(stack.url, tokens.analyst()) as client:
        with pytest.raises(MCPError) as exc:
            await client.call_tool("query", {"sql": "SELEC * FROM orders"})
    assert_denied(exc.value, rule=None)
    assert "the SQL in argument `sql` could not be parsed" in exc.value.message, exc.value.message
    assert executed(stack, mark) == []


def test_sql_tool_refusal_keeps_the_request_id(json_stack, tokens) -> None:
    exec_mark = json_stack.exec_log.mark()
    with RawMcp(json_stack.base_url, tokens.analyst()) as raw:
        raw.initialize()
        r = raw.post(harness.jsonrpc(
            "tools/call", {"name": "query", "arguments": {"sql": "DROP TABLE orders"}}, id="sql-7"
        ))
        assert r.status_code == 200, r.text
        reply = harness.parse_jsonrpc_response(r)
    assert reply["id"] == "sql-7", reply
    assert reply["error"]["code"] == DENIED, reply
    assert reply["error"]["data"]["rule"] == "analysts-sql-orders", reply
    assert json_stack.exec_log.since(exec_mark) == []


async def test_sql_tool_is_listed_for_analysts_only(stack, tokens) -> None:
    async with mcp_session(stack.url, tokens.analyst()) as client:
        analyst = {t.name for t in (await client.list_tools()).tools}
    async with mcp_session(stack.url, tokens.nobody()) as client:
        nobody = {t.name for t in (await client.list_tools()).tools}
    assert "query" in analyst
    assert "query" not in nobody


# ---------------------------------------------------------------- lists differ per role

async def test_tools_list_is_filtered_per_role(stack, tokens) -> None:
    async with mcp_session(stack.url, tokens.analyst()) as client:
        analyst = {t.name for t in (await client.list_tools()).tools}
    async with mcp_session(stack.url, tokens.deployer()) as client:
        deployer = {t.name for t in (await client.list_tools()).tools}

    assert {"k8s_get_pods", "whoami"} <= analyst
    assert not analyst & {"delete_everything", "deploy", "scale", "search_orders", "run_migration"}, analyst
    assert {"k8s_get_pods", "k8s_get_secrets", "whoami", "deploy", "scale"} <= deployer
    assert "delete_everything" not in deployer, "a tool every rule denies must not be listed"
    assert analyst != deployer


async def test_resources_and_prompts_lists_are_filtered_per_role(stack, tokens) -> None:
    async with mcp_session(stack.url, tokens.analyst()) as client:
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        prompts = {p.name for p in (await client.list_prompts()).prompts}
    assert resources == {"docs://public/readme"}
    assert prompts == {"summarize"}  # not triage, not admin_prompt

    async with mcp_session(stack.url, tokens.deployer()) as client:
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        prompts = {p.name for p in (await client.list_prompts()).prompts}
    assert resources == {"docs://public/readme", "docs://secret/keys"}
    assert prompts == {"summarize", "triage", "admin_prompt"}


async def test_unions_of_roles(stack, tokens) -> None:
    """An identity holding two roles gets what either allows."""
    async with mcp_session(stack.url, tokens.both()) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"k8s_get_pods", "deploy", "scale", "whoami"} <= names
        who = (await client.call_tool("whoami", {})).structured_content
    assert set(who["x-pinhole-roles"].split(",")) == {"analyst", "deployer"}


# ---------------------------------------------------------------- resources and prompts

async def test_resource_read_allowed_and_denied(stack, tokens) -> None:
    mark = stack.exec_log.mark()
    async with mcp_session(stack.url, tokens.analyst()) as client:
        ok = await client.read_resource("docs://public/readme")
        assert "public documentation" in ok.contents[0].text
        with pytest.raises(MCPError) as exc:
            await client.read_resource("docs://secret/keys")
        assert_denied(exc.value, rule=None)
    assert [e["tool"] for e in executed(stack, mark)] == ["resource:docs://public/readme"]

    async with mcp_session(stack.url, tokens.deployer()) as client:
        secret = await client.read_resource("docs://secret/keys")
        assert "NOT A REAL KEY" in secret.contents[0].text


async def test_prompt_get_allowed_and_denied(stack, tokens) -> None:
    mark = stack.exec_log.mark()
    async with mcp_session(stack.url, tokens.analyst()) as client:
        ok = await client.get_prompt("summarize", {"text": "the logs"})
        assert "the logs" in ok.messages[0].content.text
        with pytest.raises(MCPError) as exc:
            await client.get_prompt("admin_prompt", {})
        assert_denied(exc.value, rule=None)
    assert [e["tool"] for e in executed(stack, mark)] == ["prompt:summarize"]


# ---------------------------------------------------------------- identity forwarded upstream

async def test_upstream_gets_identity_headers_not_the_token(stack, tokens) -> None:
    async with mcp_session(stack.url, tokens.analyst("alice")) as client:
        who = (await client.call_tool("whoami", {})).structured_content
    assert "authorization" not in who, "the bearer token reached the MCP server"
    assert who["x-pinhole-subject"] == "alice"
    assert who["x-pinhole-issuer"] == "corp"
    assert who["x-pinhole-roles"] == "analyst"


async def test_spoofed_identity_headers_are_replaced(stack, tokens) -> None:
    spoof = {
        "x-pinhole-subject": "root",
        "X-Pinhole-Roles": "deployer,admin",
        "x-pinhole-issuer": "corp",
        "x-pinhole-approved": "yes",
    }
    async with mcp_session(stack.url, tokens.analyst("alice"), headers=spoof) as client:
        who = (await client.call_tool("whoami", {})).structured_content
        # The spoofed roles grant nothing.
        with pytest.raises(MCPError):
            await client.call_tool("scale", {"replicas": 1})
    assert who["x-pinhole-subject"] == "alice"
    assert who["x-pinhole-roles"] == "analyst"
    assert "x-pinhole-approved" not in who


async def test_forward_token_target_passes_authorization(fwd_stack, tokens) -> None:
    token = tokens.analyst("alice")
    async with mcp_session(fwd_stack.url, token) as client:
        who = (await client.call_tool("whoami", {})).structured_content
    assert who.get("authorization") == f"Bearer {token}"
    assert who["x-pinhole-subject"] == "alice"


# ---------------------------------------------------------------- algorithms and key rotation

@pytest.mark.parametrize(
    "who, issuer, subject, role",
    [
        ("analyst", "corp", "alice", "analyst"),                                      # RS256
        ("edge_analyst", "edge", "erin", "analyst"),                                  # ES256
        ("release_bot", "ci", "repo:acme/app:ref:refs/heads/main", "release-bot"),    # EdDSA
        ("rotated_analyst", "corp", "rita", "analyst"),                               # RS256, second kid
    ],
    ids=["RS256", "ES256", "EdDSA", "rotated-kid"],
)
async def test_each_algorithm_and_rotated_key(json_stack, tokens, who, issuer, subject, role) -> None:
    token = getattr(tokens, who)()
    async with mcp_session(json_stack.url, token) as client:
        seen = (await client.call_tool("whoami", {})).structured_content
    assert seen["x-pinhole-issuer"] == issuer
    assert seen["x-pinhole-subject"] == subject
    assert seen["x-pinhole-roles"] == role


async def test_release_bot_claims_role(json_stack, tokens) -> None:
    mark = json_stack.exec_log.mark()
    async with mcp_session(json_stack.url, tokens.release_bot()) as client:
        ok = await client.call_tool("deploy", {"environment": "staging"})
        assert not ok.is_error
        with pytest.raises(MCPError) as exc:
            await client.call_tool("k8s_get_pods", {})
        assert_denied(exc.value, rule=None)
    # The same claims on another branch do not make a release bot.
    other_ref = tokens.keys.mint("ci", "repo:acme/app:ref:refs/heads/feature", repository="acme/app",
                                 ref="refs/heads/feature")
    async with mcp_session(json_stack.url, other_ref) as client:
        with pytest.raises(MCPError):
            await client.call_tool("deploy", {"environment": "staging"})
    assert [e["tool"] for e in executed(json_stack, mark)] == ["deploy"]


# ---------------------------------------------------------------- protocol revisions and client modes

async def test_stateless_2026_protocol_revision(stack, tokens) -> None:
    """The SDK's newest revision (2026-07-28: no initialize, no session, one
    POST per request with Mcp-Method/Mcp-Name headers) is decided the same way."""
    mark = stack.exec_log.mark()
    async with mcp_session(stack.url, tokens.analyst(), mode="2026-07-28") as client:
        ok = await client.call_tool("k8s_get_pods", {})
        assert not ok.is_error
        with pytest.raises(MCPError) as exc:
            await client.call_tool("delete_everything", {})
        assert_denied(exc.value, rule="no-delete-everything")
        names = {t.name for t in (await client.list_tools()).tools}
        assert "delete_everything" not in names and "k8s_get_pods" in names
    assert [e["tool"] for e in executed(stack, mark)] == ["k8s_get_pods"]


async def test_sdk_default_client_mode(json_stack, tokens) -> None:
    """`mcp.Client(url)` as users write it (mode="auto": probes server/discover,
    may fall back to initialize) works through Pinhole."""
    mark = json_stack.exec_log.mark()
    async with mcp_session(json_stack.url, tokens.analyst(), mode="auto") as client:
        ok = await client.call_tool("whoami", {})
        assert ok.structured_content["x-pinhole-subject"] == "alice"
        with pytest.raises(MCPError) as exc:
            await client.call_tool("delete_everything", {})
        assert_denied(exc.value, rule="no-delete-everything")
    assert [e["tool"] for e in executed(json_stack, mark)] == ["whoami"]


# ---------------------------------------------------------------- raw JSON-RPC: batches and bad bodies

def test_batch_with_one_denied_message_is_refused_whole(json_stack, tokens) -> None:
    exec_mark = json_stack.exec_log.mark()
    req_mark = json_stack.request_log.mark()
    with RawMcp(json_stack.base_url, tokens.analyst()) as raw:
        raw.initialize()
        batch = [
            harness.jsonrpc("tools/call", {"name": "k8s_get_pods", "arguments": {}}, id="ok-1"),
            harness.jsonrpc("tools/call", {"name": "delete_everything", "arguments": {}}, id=7),
        ]
        r = raw.post(batch, headers={"x-e2e-marker": "batch-" + raw.marker})
        assert r.status_code == 200, r.text
        replies = harness.parse_jsonrpc_response(r)
    assert isinstance(replies, list) and len(replies) == 2, replies
    by_id = {m["id"]: m for m in replies}
    assert set(by_id) == {"ok-1", 7}
    assert by_id[7]["error"]["code"] == DENIED
    assert by_id[7]["error"]["message"].startswith("pinhole: denied by rule `no-delete-everything`")
    assert by_id["ok-1"]["error"]["code"] == BATCH_REFUSED
    assert "result" not in by_id["ok-1"]
    assert executed(json_stack, exec_mark) == []
    assert harness.reached(json_stack.request_log, req_mark, "batch-" + raw.marker) == []


@pytest.mark.parametrize(
    "body, code",
    [
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {', harness.PARSE_ERROR),
        (b"not json at all", harness.PARSE_ERROR),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "tools/call", "params": {"name": "k8s_get_pods"}}',
         harness.INVALID_REQUEST),
        # A repeated key could make Pinhole and the server read different
        # messages: refused as a parse error.
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "method": "ping", '
         b'"params": {"name": "delete_everything"}}', harness.PARSE_ERROR),
    ],
    ids=["truncated-json", "not-json", "bad-jsonrpc-version", "duplicate-key"],
)
def test_malformed_body_is_refused_before_the_server(json_stack, tokens, body: bytes, code: int) -> None:
    req_mark = json_stack.request_log.mark()
    exec_mark = json_stack.exec_log.mark()
    with RawMcp(json_stack.base_url, tokens.deployer()) as raw:
        r = raw.post(None, raw=body)
    assert r.status_code == 400, (r.status_code, r.text)
    reply = r.json()
    assert reply.get("jsonrpc") == "2.0" and "error" in reply, reply
    assert reply["error"]["code"] == code, reply
    assert reply["id"] is None
    assert harness.reached(json_stack.request_log, req_mark, raw.marker) == []
    assert executed(json_stack, exec_mark) == []


def test_denied_call_in_sse_mode_is_a_plain_jsonrpc_error(sse_stack, tokens) -> None:
    """On the wire: a refused call gets HTTP 200 with a JSON-RPC error carrying
    the request's id, without touching the upstream."""
    req_mark = sse_stack.request_log.mark()
    with RawMcp(sse_stack.base_url, tokens.deployer()) as raw:
        raw.initialize()
        r = raw.post(harness.jsonrpc("tools/call", {"name": "delete_everything", "arguments": {}}, id="abc"),
                     headers={"x-e2e-marker": "deny-" + raw.marker})
    assert r.status_code == 200, r.text
    reply = harness.parse_jsonrpc_response(r)
    assert reply["id"] == "abc"
    assert reply["error"]["code"] == DENIED
    assert reply["error"]["data"]["rule"] == "no-delete-everything"
    assert harness.reached(sse_stack.request_log, req_mark, "deny-" + raw.marker) == []


def test_list_response_content_length_is_consistent(json_stack, tokens) -> None:
    """The filtered tools/list body is shorter than the server's: Envoy must
    not send the server's content-length with it."""
    with RawMcp(json_stack.base_url, tokens.analyst()) as raw:
        raw.initialize()
        r = raw.post(harness.jsonrpc("tools/list", {}, id=3))
    assert r.status_code == 200
    body = r.content
    if "content-length" in r.headers:
        assert int(r.headers["content-length"]) == len(body)
    reply = json.loads(body)
    names = {t["name"] for t in reply["result"]["tools"]}
    assert "delete_everything" not in names and "k8s_get_pods" in names


def test_oversized_body_is_refused_before_the_server(json_stack, tokens) -> None:
    """A body beyond the limits (the filter's, or Envoy's 1 MiB buffer) is
    refused, never forwarded undecided."""
    req_mark = json_stack.request_log.mark()
    big = harness.jsonrpc("tools/call", {"name": "k8s_get_pods",
                                         "arguments": {"namespace": "x" * (2 * 1024 * 1024)}})
    with RawMcp(json_stack.base_url, tokens.analyst()) as raw:
        r = raw.post(big)
    assert r.status_code in (400, 413), (r.status_code, r.text[:200])
    assert harness.reached(json_stack.request_log, req_mark, raw.marker) == []
