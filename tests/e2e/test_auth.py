"""Authentication at the edge: a request without a valid, trusted, unrevoked
JWT gets 401 with a `WWW-Authenticate: Bearer` challenge, and the MCP server
never sees it (proved from the server's request log).

Tokens come from tokens.KeySet (RSA, EC and Ed25519 keys generated per run,
PyJWT for signing)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

import harness
from harness import RawMcp
from tokens import KeySet, SigningKey

# Each hostile token, and the reason the filter gives for it (the `reason`
# of the 401 body and the challenge's error_description). `None`: any reason.
BAD_TOKENS: dict[str, tuple[Callable[[KeySet], str], str | None]] = {
    "expired": (lambda k: k.expired(), "token expired"),
    "not-yet-valid": (lambda k: k.not_yet_valid(), "token not yet valid"),
    "wrong-audience": (lambda k: k.wrong_audience(), "audience not accepted"),
    "unknown-issuer": (lambda k: k.unknown_issuer(), "unknown issuer"),
    "forged-rsa": (lambda k: k.forged(), "bad signature"),
    "forged-ec": (lambda k: k.forged_ec(), "bad signature"),
    "tampered-payload": (lambda k: k.tampered(), "bad signature"),
    "alg-none": (lambda k: k.alg_none(), None),
    "alg-confusion-hs256": (lambda k: k.alg_confusion_hs256(), None),
    "unknown-kid": (lambda k: k.sign(k.claims("corp", "alice"), SigningKey("rsa-1999", "RS256", k.attacker_rsa.private)),
                    None),
    "lifetime-too-long": (lambda k: k.mint("corp", "alice", groups=["analysts"], lifetime=3 * 3600),
                          "token lifetime too long"),
    "garbage": (lambda k: "not-a-jwt", "malformed token"),
    "three-garbage-parts": (lambda k: "aaaa.bbbb.cccc", None),
    "empty-signature": (lambda k: k.mint("corp", "alice").rsplit(".", 1)[0] + ".", None),
    "no-subject": (lambda k: k.sign({kk: v for kk, v in k.claims("corp", "x").items() if kk != "sub"},
                                    k.issuers["corp"].key), None),
    "no-expiry": (lambda k: k.sign({kk: v for kk, v in k.claims("corp", "alice").items() if kk != "exp"},
                                   k.issuers["corp"].key), None),
    "revoked-subject": (lambda k: k.mint("corp", "mallory", groups=["deployers"]), "subject revoked"),
}


def challenge_params(value: str) -> dict[str, str]:
    """`Bearer realm="x", error="y"` → {"realm": "x", "error": "y"}."""
    assert value.startswith("Bearer"), value
    params = {}
    for part in value[len("Bearer"):].split(","):
        if "=" in part:
            k, v = part.strip().split("=", 1)
            params[k] = v.strip('"')
    return params


def post_initialize(stack, authorization: str | None, marker: str) -> httpx.Response:
    headers = {"accept": harness.MCP_ACCEPT, "content-type": "application/json", "x-e2e-marker": marker}
    if authorization is not None:
        headers["authorization"] = authorization
    return httpx.post(stack.url, content=json.dumps(harness.initialize_msg()), headers=headers, timeout=harness.REQUEST_TIMEOUT)


@pytest.mark.parametrize("kind", list(BAD_TOKENS), ids=list(BAD_TOKENS))
def test_invalid_token_gets_401_and_never_reaches_the_server(stack, keys, kind: str) -> None:
    make, reason = BAD_TOKENS[kind]
    token = make(keys)
    mark = stack.request_log.mark()
    marker = f"{kind}-{stack.name}"
    r = post_initialize(stack, f"Bearer {token}", marker)

    assert r.status_code == 401, (r.status_code, r.text)
    challenge = r.headers.get("www-authenticate", "")
    params = challenge_params(challenge)
    assert params.get("realm") == "pinhole", challenge
    assert params.get("error") == "invalid_token", challenge
    body = r.json()
    assert body["error"] == "unauthorized"
    assert body.get("reason"), body
    if reason is not None:
        assert body["reason"] == reason, body
        assert params.get("error_description") == reason, challenge
    assert harness.reached(stack.request_log, mark, marker) == [], "a refused request reached the MCP server"


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic YWxpY2U6c2VjcmV0", "Token abc"],
    ids=["absent", "empty", "bearer-without-token", "basic", "other-scheme"],
)
def test_missing_bearer_token_gets_401(json_stack, authorization: str | None) -> None:
    mark = json_stack.request_log.mark()
    marker = f"missing-{authorization!r}"
    r = post_initialize(json_stack, authorization, marker)
    assert r.status_code == 401, (r.status_code, r.text)
    params = challenge_params(r.headers.get("www-authenticate", ""))
    assert params.get("realm") == "pinhole"
    assert r.json()["error"] == "unauthorized"
    assert harness.reached(json_stack.request_log, mark, marker) == []


def test_absent_token_challenge_has_no_error_code(json_stack) -> None:
    """RFC 6750 §3.1: a request without credentials gets a bare challenge."""
    r = post_initialize(json_stack, None, "bare-challenge")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="pinhole"'


def test_get_and_delete_need_a_token_too(json_stack, tokens) -> None:
    """The SSE GET stream and session DELETE are authenticated like POSTs."""
    for method in ("GET", "DELETE"):
        mark = json_stack.request_log.mark()
        r = httpx.request(method, json_stack.url, headers={"accept": "text/event-stream",
                                                           "x-e2e-marker": f"nohdr-{method}"}, timeout=harness.REQUEST_TIMEOUT)
        assert r.status_code == 401, (method, r.status_code)
        assert harness.reached(json_stack.request_log, mark, f"nohdr-{method}") == []


def test_revoked_subject_with_a_good_token_is_refused_but_others_pass(json_stack, tokens) -> None:
    r = post_initialize(json_stack, f"Bearer {tokens.revoked()}", "revoked")
    assert r.status_code == 401
    assert r.json()["reason"] == "subject revoked"
    # Same groups, another subject: fine.
    ok = post_initialize(json_stack, f"Bearer {tokens.deployer('dave')}", "not-revoked")
    assert ok.status_code == 200, ok.text


def test_valid_token_is_accepted_repeatedly(json_stack, tokens) -> None:
    """The same token over many requests (the verification cache path) keeps
    working and keeps the same identity."""
    token = tokens.analyst("alice")
    with RawMcp(json_stack.base_url, token) as raw:
        raw.initialize()
        for i in range(20):
            r = raw.post(harness.jsonrpc("ping", {}, id=i))
            assert r.status_code == 200, r.text
            assert harness.parse_jsonrpc_response(r)["id"] == i


def test_a_token_refused_once_stays_refused(json_stack, keys) -> None:
    """A bad signature is not cached as good (nor a good one poisoned by a
    forged twin with the same claims)."""
    forged = keys.forged("alice")
    for _ in range(3):
        assert post_initialize(json_stack, f"Bearer {forged}", "forged-again").status_code == 401
