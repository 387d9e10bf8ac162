"""A plain HTTP target (envoy/http.yaml, policy target `api`): requests are
decided by method and path; a refused one gets 403 JSON and never reaches the
upstream."""

from __future__ import annotations

import uuid

import httpx
import pytest

import harness


def call(stack, method: str, path: str, token: str | None) -> tuple[httpx.Response, str]:
    marker = uuid.uuid4().hex
    headers = {"x-e2e-marker": marker, "x-pinhole-roles": "deployer"}  # the spoofed header must not count
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return httpx.request(method, stack.base_url + path, headers=headers, timeout=harness.REQUEST_TIMEOUT), marker


def arrived(echo, marker: str) -> list[dict]:
    return [r for r in echo.requests if r["headers"].get("x-e2e-marker") == marker]


@pytest.mark.parametrize("path", ["/v1/pods", "/v1/pods/web-7d9f", "/v1/pods?watch=1"])
def test_allowed_request_reaches_the_api_with_identity(http_stack, tokens, path: str) -> None:
    stack, echo = http_stack
    r, marker = call(stack, "GET", path, tokens.analyst("alice"))
    assert r.status_code == 200, r.text
    [seen] = arrived(echo, marker)
    assert seen["path"] == path
    assert "authorization" not in seen["headers"]
    assert seen["headers"]["x-pinhole-subject"] == "alice"
    assert seen["headers"]["x-pinhole-issuer"] == "corp"
    assert seen["headers"]["x-pinhole-roles"] == "analyst"


@pytest.mark.parametrize(
    "method, path, rule",
    [
        ("DELETE", "/v1/pods/web-7d9f", None),       # no rule allows DELETE
        ("POST", "/v1/pods", None),
        ("GET", "/v1/pods/a/b", None),               # `*` does not cross `/`
        ("GET", "/v1/admin/users", "api-no-admin"),  # explicit deny
        ("GET", "/v1/admin/", "api-no-admin"),
        ("GET", "/v2/pods", None),
    ],
)
def test_refused_request_gets_403_and_never_arrives(http_stack, tokens, method: str, path: str,
                                                    rule: str | None) -> None:
    stack, echo = http_stack
    r, marker = call(stack, method, path, tokens.analyst())
    assert r.status_code == 403, (r.status_code, r.text)
    body = r.json()
    assert body["error"] == "forbidden"
    assert body["rule"] == rule
    assert body.get("reason")
    assert arrived(echo, marker) == []


def test_http_target_needs_a_token(http_stack, keys) -> None:
    stack, echo = http_stack
    for token in (None, keys.expired(), keys.forged()):
        r, marker = call(stack, "GET", "/v1/pods", token)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith('Bearer realm="pinhole"')
        assert arrived(echo, marker) == []


def test_role_without_http_rules_is_refused(http_stack, tokens) -> None:
    stack, echo = http_stack
    r, marker = call(stack, "GET", "/v1/pods", tokens.release_bot())
    assert r.status_code == 403
    assert arrived(echo, marker) == []


@pytest.mark.parametrize(
    "raw_path",
    [
        "/v1/pods/../admin/users",        # Envoy normalizes to /v1/admin/users: the deny rule applies
        "/v1/pods/%2e%2e/admin/users",    # encoded dot segment: refused, never guessed at
        "/v1/pods/..%2Fadmin%2Fusers",    # encoded slash: Envoy rejects it before the filter
        "/v1/pods//../admin/users",
    ],
)
def test_path_tricks_cannot_reach_a_denied_path(http_stack, tokens, raw_path: str) -> None:
    """An allowed prefix cannot be used to walk into a denied path."""
    stack, echo = http_stack
    marker = uuid.uuid4().hex
    # httpx would normalize the path itself; send the raw bytes.
    url = httpx.URL(stack.base_url).copy_with(raw_path=raw_path.encode())
    r = httpx.request("GET", url, timeout=harness.REQUEST_TIMEOUT,
                      headers={"x-e2e-marker": marker, "authorization": f"Bearer {tokens.analyst()}"})
    assert r.status_code in (400, 403), (raw_path, r.status_code, r.text)
    assert arrived(echo, marker) == []
