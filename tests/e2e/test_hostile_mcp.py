"""Hostile MCP requests through a real Envoy running Pinhole, in front of
the official MCP SDK server (issue 7).

Every case is refused or handled safely, and the proof comes from the
server: the request log (every HTTP request it received, matched by the
`x-e2e-marker` header) and the exec log (every tool execution). Cases
covered elsewhere (a batch with one denied call, two `method` keys, a
2 MiB body) are in test_mcp.py; docs/hostile-input.md lists them all.
"""

from __future__ import annotations

import gzip
import json
import uuid
import zlib
from typing import Any

import httpx
import pytest

import harness
from harness import BATCH_REFUSED, DENIED, INVALID_REQUEST, PARSE_ERROR, REVIEW_REQUIRED, RawMcp


def call(name: str, arguments: dict[str, Any] | None = None, id: Any = 1) -> dict[str, Any]:
    return harness.jsonrpc("tools/call", {"name": name, "arguments": arguments or {}}, id=id)


def nothing_reached(stack, req_mark: int, exec_mark: int, marker: str) -> None:
    assert harness.reached(stack.request_log, req_mark, marker) == [], "a refused request reached the MCP server"
    assert stack.exec_log.since(exec_mark) == [], "a tool ran"


class Probe:
    """A RawMcp session (initialized) with marks on the server's logs."""

    def __init__(self, stack, token: str) -> None:
        self.stack = stack
        self.raw = RawMcp(stack.base_url, token)
        self.raw.initialize()
        self.marker = "hostile-" + uuid.uuid4().hex
        self.req_mark = stack.request_log.mark()
        self.exec_mark = stack.exec_log.mark()

    def post(self, body: Any = None, *, raw: bytes | None = None, headers: dict[str, str] | None = None
             ) -> httpx.Response:
        h = {"x-e2e-marker": self.marker}
        h.update(headers or {})
        return self.raw.post(body, raw=raw, headers=h)

    def nothing_reached(self) -> None:
        nothing_reached(self.stack, self.req_mark, self.exec_mark, self.marker)

    def executed(self) -> list[dict[str, Any]]:
        return self.stack.exec_log.since(self.exec_mark)

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> "Probe":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def assert_protocol_error(r: httpx.Response, status: int, code: int) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    reply = r.json()
    assert reply.get("jsonrpc") == "2.0" and reply["id"] is None, reply
    assert reply["error"]["code"] == code, reply
    assert reply["error"]["message"].startswith("pinhole:"), reply


# ---------------------------------------------------------------- batches mixing allowed and refused calls

def test_batch_with_a_review_call_is_refused_whole(json_stack, tokens) -> None:
    with Probe(json_stack, tokens.analyst()) as p:
        r = p.post([call("k8s_get_pods", id="a"), call("k8s_get_secrets", id="b")])
        assert r.status_code == 200, r.text
        by_id = {m["id"]: m for m in r.json()}
        assert by_id["b"]["error"]["code"] == REVIEW_REQUIRED
        assert by_id["a"]["error"]["code"] == BATCH_REFUSED
        p.nothing_reached()


def test_batch_with_a_default_denied_call_and_a_notification(json_stack, tokens) -> None:
    """A refused batch: requests answered in order (the refused one with
    its error, the allowed ones -32003), the notification dropped, nothing
    forwarded."""
    with Probe(json_stack, tokens.analyst()) as p:
        batch = [call("whoami", id=1), harness.jsonrpc("notifications/progress", {"progressToken": 1}, id=None),
                 call("scale", {"replicas": 1}, id=2), call("k8s_get_pods", id=3)]
        r = p.post(batch)
        assert r.status_code == 200, r.text
        replies = r.json()
        assert [m["id"] for m in replies] == [1, 2, 3]
        assert [m["error"]["code"] for m in replies] == [BATCH_REFUSED, DENIED, BATCH_REFUSED]
        p.nothing_reached()


def test_batch_with_only_a_denied_notification_gets_202(json_stack, tokens) -> None:
    with Probe(json_stack, tokens.deployer()) as p:
        r = p.post([harness.jsonrpc("tools/call", {"name": "delete_everything", "arguments": {}}, id=None)])
        assert r.status_code == 202 and r.content == b"", (r.status_code, r.text)
        p.nothing_reached()


@pytest.mark.parametrize("body, code", [
    (b"[]", INVALID_REQUEST),
    (b"[[" + json.dumps(call("delete_everything")).encode() + b"]]", INVALID_REQUEST),
    (json.dumps([call("k8s_get_pods", id=i) for i in range(101)]).encode(), INVALID_REQUEST),
    (json.dumps([call("k8s_get_pods", id=7), call("delete_everything", id=7)]).encode(), INVALID_REQUEST),
    (json.dumps([call("k8s_get_pods", id=7), call("delete_everything", id=7.0)]).encode(), INVALID_REQUEST),
    (b'[' + json.dumps(call("k8s_get_pods")).encode()
     + b', {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"k8s_get_pods","name":"delete_everything"}}]',
     PARSE_ERROR),
], ids=["empty", "nested", "over-100", "duplicate-ids", "duplicate-ids-1-and-1.0", "one-message-with-duplicate-key"])
def test_malformed_batches_are_refused(json_stack, tokens, body, code) -> None:
    with Probe(json_stack, tokens.deployer()) as p:
        assert_protocol_error(p.post(raw=body), 400, code)
        p.nothing_reached()


# ---------------------------------------------------------------- duplicate JSON keys

DUPLICATES = {
    "two-names": '{"jsonrpc":"2.0","id":1,"method":"tools/call",'
                 '"params":{"name":"k8s_get_pods","name":"delete_everything","arguments":{}}}',
    "two-names-denied-first": '{"jsonrpc":"2.0","id":1,"method":"tools/call",'
                              '"params":{"name":"delete_everything","name":"k8s_get_pods","arguments":{}}}',
    "escaped-duplicate-name": '{"jsonrpc":"2.0","id":1,"method":"tools/call",'
                              '"params":{"name":"k8s_get_pods","n\\u0061me":"delete_everything"}}',
    "two-methods": '{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call",'
                   '"params":{"name":"delete_everything"}}',
    "two-params": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"k8s_get_pods"},'
                  '"params":{"name":"delete_everything"}}',
    "two-arguments": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy",'
                     '"arguments":{"environment":"staging"},"arguments":{"environment":"production"}}}',
    "duplicate-inside-arguments": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy",'
                                  '"arguments":{"environment":"staging","environment":"production"}}}',
    "two-ids": '{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"k8s_get_pods"}}',
    "two-jsonrpc": '{"jsonrpc":"2.0","jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"k8s_get_pods"}}',
    "deep-duplicate": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"k8s_get_pods",'
                      '"arguments":{"a":[{"b":{"c":1,"c":2}}]}}}',
}


@pytest.mark.parametrize("case", list(DUPLICATES))
def test_duplicate_keys_are_a_parse_error(json_stack, tokens, case) -> None:
    """Servers disagree on which copy of a repeated key wins: refused as a
    parse error before anyone picks one."""
    with Probe(json_stack, tokens.deployer()) as p:
        assert_protocol_error(p.post(raw=DUPLICATES[case].encode()), 400, PARSE_ERROR)
        p.nothing_reached()


# ---------------------------------------------------------------- escaped and differently cased tool names

@pytest.mark.parametrize("name_json", [
    '"\\u0064elete_everything"',
    '"delete_everythin\\u0067"',
    '"\\u0064\\u0065\\u006c\\u0065\\u0074\\u0065_everything"',
], ids=["escaped-first-letter", "escaped-last-letter", "escaped-prefix"])
def test_unicode_escaped_tool_name_is_decided_unescaped(json_stack, tokens, name_json) -> None:
    """JSON escapes are decoded before the decision, as the server decodes
    them: the deny rule for `delete_everything` applies."""
    with Probe(json_stack, tokens.deployer()) as p:
        body = '{"jsonrpc":"2.0","id":"e1","method":"tools/call","params":{"name":%s,"arguments":{}}}' % name_json
        r = p.post(raw=body.encode())
        assert r.status_code == 200, r.text
        reply = harness.parse_jsonrpc_response(r)
        assert reply["id"] == "e1"
        assert reply["error"]["code"] == DENIED, reply
        assert reply["error"]["data"]["rule"] == "no-delete-everything", reply
        p.nothing_reached()


def test_escaped_allowed_name_runs_the_allowed_tool(json_stack, tokens) -> None:
    with Probe(json_stack, tokens.analyst()) as p:
        body = '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"k8s_get_pod\\u0073","arguments":{}}}'
        r = p.post(raw=body.encode())
        assert r.status_code == 200, r.text
        assert "result" in harness.parse_jsonrpc_response(r)
        assert [e["tool"] for e in p.executed()] == ["k8s_get_pods"]


@pytest.mark.parametrize("name", [
    "Delete_Everything", "DELETE_EVERYTHING", "delete_everything ", " delete_everything", "delete_everything\u0000",
    "delete\u200b_everything", "\uff44elete_everything", "delete_everything/", "./delete_everything",
    "K8S_GET_PODS",
], ids=["title-case", "upper-case", "trailing-space", "leading-space", "nul", "zero-width-space", "fullwidth-d",
        "trailing-slash", "dot-slash", "analyst-upper-case-allowed-tool"])
def test_lookalike_tool_names_are_denied_by_default(json_stack, tokens, name) -> None:
    """Names match exactly: a variant matches no allow rule (default deny)
    and never runs, so a server that normalises names cannot be reached
    through a variant of a denied tool."""
    token = tokens.analyst() if name == "K8S_GET_PODS" else tokens.deployer()
    with Probe(json_stack, token) as p:
        r = p.post(call(name, id="v"))
        assert r.status_code == 200, r.text
        reply = harness.parse_jsonrpc_response(r)
        assert reply["error"]["code"] == DENIED, reply
        p.nothing_reached()


# ---------------------------------------------------------------- compressed request bodies

def _compressed(coding: str, data: bytes) -> bytes:
    if coding in ("gzip", "x-gzip"):
        return gzip.compress(data)
    if coding == "deflate":
        return zlib.compress(data)
    return data  # br / zstd: the header alone decides


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate", "br", "zstd", "identity, gzip", "GZIP"])
@pytest.mark.parametrize("tool", ["k8s_get_pods", "delete_everything"])
def test_compressed_body_is_refused_not_forwarded(json_stack, tokens, coding, tool) -> None:
    """A compressed body is never decoded by Pinhole: refused with 415,
    whether it hides an allowed or a denied call."""
    with Probe(json_stack, tokens.deployer()) as p:
        body = _compressed(coding.split(",")[-1].strip().lower(), json.dumps(call(tool)).encode())
        r = p.post(raw=body, headers={"content-encoding": coding})
        assert_protocol_error(r, 415, INVALID_REQUEST)
        assert "content-encoding" in r.json()["error"]["message"]
        p.nothing_reached()


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_plain_json_labelled_compressed_is_refused(json_stack, tokens, coding) -> None:
    """Valid JSON with a content-encoding: a server that decompresses would
    read other bytes than the ones decided."""
    with Probe(json_stack, tokens.analyst()) as p:
        r = p.post(call("k8s_get_pods"), headers={"content-encoding": coding})
        assert_protocol_error(r, 415, INVALID_REQUEST)
        p.nothing_reached()


def test_identity_encoding_is_fine(json_stack, tokens) -> None:
    with Probe(json_stack, tokens.analyst()) as p:
        r = p.post(call("k8s_get_pods"), headers={"content-encoding": "identity"})
        assert r.status_code == 200 and "result" in harness.parse_jsonrpc_response(r), r.text


# ---------------------------------------------------------------- non-JSON content types

@pytest.mark.parametrize("ctype, encoding", [
    ("text/plain", "utf-8"),
    ("application/x-www-form-urlencoded", "utf-8"),
    ("multipart/form-data; boundary=x", "utf-8"),
    ("text/plain, application/json", "utf-8"),
    ("application/json-seq", "utf-8"),
    ("application/json; charset=utf-16", "utf-16"),
    ("application/json; charset=iso-8859-1", "latin-1"),
], ids=["text-plain", "form", "multipart", "two-types", "json-seq", "utf-16", "latin-1"])
def test_non_json_content_type_is_refused(json_stack, tokens, ctype, encoding) -> None:
    with Probe(json_stack, tokens.deployer()) as p:
        body = json.dumps(call("delete_everything")).encode(encoding)
        r = p.post(raw=body, headers={"content-type": ctype})
        assert_protocol_error(r, 415, INVALID_REQUEST)
        p.nothing_reached()


def test_missing_content_type_is_refused(json_stack, tokens) -> None:
    marker = "hostile-noctype-" + uuid.uuid4().hex
    req_mark, exec_mark = json_stack.request_log.mark(), json_stack.exec_log.mark()
    r = httpx.post(json_stack.url, content=json.dumps(call("k8s_get_pods")).encode(),
                   headers={"accept": harness.MCP_ACCEPT, "authorization": f"Bearer {tokens.analyst()}",
                            "x-e2e-marker": marker}, timeout=harness.REQUEST_TIMEOUT)
    assert_protocol_error(r, 415, INVALID_REQUEST)
    nothing_reached(json_stack, req_mark, exec_mark, marker)


def test_json_content_type_with_parameters_is_fine(json_stack, tokens) -> None:
    with Probe(json_stack, tokens.analyst()) as p:
        r = p.post(call("k8s_get_pods"), headers={"content-type": "application/json; charset=utf-8"})
        assert r.status_code == 200 and "result" in harness.parse_jsonrpc_response(r), r.text


def test_refusal_is_logged_for_the_operator(json_stack, tokens) -> None:
    with Probe(json_stack, tokens.analyst()) as p:
        p.post(call("k8s_get_pods"), headers={"content-encoding": "gzip"})
    assert any("unsupported media type" in line and "content-encoding" in line
               for line in json_stack.envoy.log_text().splitlines()), json_stack.envoy.log_tail(10)


# ---------------------------------------------------------------- oversized bodies

def test_oversized_chunked_body_is_refused(json_stack, tokens) -> None:
    """No content-length (chunked): still refused, never forwarded."""
    big = json.dumps(call("k8s_get_pods", {"namespace": "x" * (3 * 1024 * 1024)})).encode()

    def chunks():
        for i in range(0, len(big), 64 * 1024):
            yield big[i:i + 64 * 1024]

    with Probe(json_stack, tokens.analyst()) as p:
        try:
            r = p.raw.http.post(p.raw.url, content=chunks(), headers=p.raw.headers({"x-e2e-marker": p.marker}))
            assert r.status_code in (400, 413), (r.status_code, r.text[:200])
        except httpx.HTTPError:
            pass  # Envoy may reset the stream once over its buffer limit
        p.nothing_reached()


def test_big_batch_of_denied_calls_under_the_limits(json_stack, tokens) -> None:
    """100 messages (the batch cap), the last one denied, ~600 KB: decided
    whole and refused."""
    with Probe(json_stack, tokens.deployer()) as p:
        batch = [call("k8s_get_pods", {"pad": "x" * 6000}, id=i) for i in range(99)] + [call("delete_everything", id=99)]
        r = p.post(batch)
        assert r.status_code == 200, r.text[:200]
        codes = [m["error"]["code"] for m in r.json()]
        assert codes == [BATCH_REFUSED] * 99 + [DENIED]
        p.nothing_reached()


# ---------------------------------------------------------------- deep nesting

@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"k8s_get_pods","arguments":{"x":'
     + "[" * 70 + "]" * 70 + "}}}").encode(),
    ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"k8s_get_pods","arguments":{"x":'
     + "[" * 200_000).encode(),
], ids=["arrays-100k", "objects-5k", "arguments-70", "unterminated-200k"])
def test_deeply_nested_json_is_a_parse_error(json_stack, tokens, body) -> None:
    with Probe(json_stack, tokens.analyst()) as p:
        assert_protocol_error(p.post(raw=body), 400, PARSE_ERROR)
        p.nothing_reached()
    # The filter still serves.
    with Probe(json_stack, tokens.analyst()) as p:
        assert p.post(call("k8s_get_pods")).status_code == 200


# ---------------------------------------------------------------- SQL in a tool argument (the same classifier)

@pytest.mark.parametrize("sql", [
    "SELECT " + "1+" * 10_000 + "1 FROM orders",
    "SELECT U&\"pg_terminate_backen\\0064\"(1) FROM orders",
    "SELECT table_to_xml('secrets', true, false, '') FROM orders",
    "EXPLAIN (ANALYSE) DELETE FROM orders WHERE id > 0",
], ids=["operator-chain-10k", "unicode-escaped-function", "table-to-xml", "explain-analyse"])
def test_hostile_sql_in_a_tool_argument(json_stack, tokens, sql) -> None:
    """The operator chain overflowed the classifier's stack in the HTTP
    filter as on the Postgres listener; now each is a clean denial and the
    next request is served."""
    with Probe(json_stack, tokens.analyst()) as p:
        r = p.post(call("query", {"sql": sql}, id="q"))
        assert r.status_code == 200, r.text[:300]
        reply = harness.parse_jsonrpc_response(r)
        assert reply["id"] == "q" and reply["error"]["code"] == DENIED, reply
        p.nothing_reached()
    with Probe(json_stack, tokens.analyst()) as p:
        r = p.post(call("query", {"sql": "SELECT count(*) FROM orders"}, id="ok"))
        assert "result" in harness.parse_jsonrpc_response(r), r.text
