"""Hostile JWTs against a real Envoy (issue 7): on the MCP listener every
one gets 401 with a `WWW-Authenticate: Bearer … error="invalid_token"`
challenge and never reaches the MCP server (its request log); on the
PostgreSQL listener every one is refused at login with 28P01 before the
server is asked for anything.

The tokens that need a signature are signed with the trusted issuer's real
key (tokens.KeySet), so the one hostile property of each is what gets it
refused: a duplicated claim, a `crit` header, a `kid` with path tricks, an
`alg` that does not fit the key, an oversized or badly encoded token. The
plain cases (expired, not yet valid, wrong audience / issuer, unknown kid,
`alg: none`, HS256 with the RSA public key) are in test_auth.py and
test_postgres.py (docs/hostile-input.md lists them all).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

import harness
import pg
from tokens import AUDIENCE, KeySet, SigningKey

ISS = "https://sso.corp.test"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_raw(header_json: str, payload_json: str, key: SigningKey) -> str:
    """A compact JWS over the given header and payload texts, exactly as
    written (duplicate members survive), signed with `key`."""
    signing_input = f"{b64u(header_json.encode())}.{b64u(payload_json.encode())}"
    alg = jwt.get_algorithm_by_name(key.alg)
    sig = alg.sign(signing_input.encode(), key.private)
    return f"{signing_input}.{b64u(sig)}"


def corp_key(k: KeySet) -> SigningKey:
    return k.issuers["corp"].key


def claims_json(k: KeySet, *, extra: str = "", **over: Any) -> str:
    """The JSON text of valid corp claims (alice, analysts) with `extra`
    members appended verbatim (for duplicates)."""
    c = k.claims("corp", "alice", groups=["analysts"])
    c.update(over)
    text = json.dumps(c)
    return text[:-1] + extra + "}" if extra else text


def header_json(key: SigningKey, extra: str = "", **over: Any) -> str:
    h: dict[str, Any] = {"alg": key.alg, "typ": "JWT", "kid": key.kid}
    h.update(over)
    text = json.dumps(h)
    return text[:-1] + extra + "}" if extra else text


def with_kid(kid: Any) -> Callable[[KeySet], str]:
    return lambda k: sign_raw(header_json(corp_key(k), kid=kid), claims_json(k), corp_key(k))


def now() -> int:
    return int(time.time())


def recode(token: str, fn: Callable[[str], str], part: int = 2) -> str:
    parts = token.split(".")
    parts[part] = fn(parts[part])
    return ".".join(parts)


def stray_bits(s: str) -> str:
    """The same bytes with non-zero padding bits in the last character (a
    lenient decoder accepts it, a strict one must not)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = alphabet.index(s[-1])
    return s[:-1] + alphabet[i | 1] if i % 2 == 0 else s[:-1] + alphabet[i]


def hs256(k: KeySet, secret: bytes) -> str:
    header = b64u(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-2025"}).encode())
    payload = b64u(claims_json(k).encode())
    sig = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64u(sig)}"


def rsa_public(k: KeySet, fmt: str) -> bytes:
    pub = corp_key(k).private.public_key()
    if fmt == "der":
        return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if fmt == "pkcs1":
        return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    return json.dumps(corp_key(k).public_jwk()).encode()


# Each hostile token and the `reason` the filter gives (None: any reason).
HOSTILE: dict[str, tuple[Callable[[KeySet], str], str | None]] = {
    # Duplicate members: the issuer, Pinhole and the upstream could each
    # read another copy; refused whatever the copies say.
    "duplicate-sub": (lambda k: sign_raw(header_json(corp_key(k)), claims_json(k, extra=', "sub": "root"'),
                                         corp_key(k)), "malformed token"),
    "duplicate-exp-expired-first": (lambda k: sign_raw(
        header_json(corp_key(k)), claims_json(k, extra=f', "exp": {now() + 600}', exp=now() - 3600),
        corp_key(k)), "malformed token"),
    "duplicate-exp-expired-last": (lambda k: sign_raw(
        header_json(corp_key(k)), claims_json(k, extra=f', "exp": {now() - 3600}'), corp_key(k)),
        "malformed token"),
    "duplicate-iss": (lambda k: sign_raw(header_json(corp_key(k)),
                                         claims_json(k, extra=', "iss": "https://evil.example.test"'),
                                         corp_key(k)), "malformed token"),
    "duplicate-aud-escaped-key": (lambda k: sign_raw(header_json(corp_key(k)),
                                                     claims_json(k, extra=', "a\\u0075d": "other"'), corp_key(k)),
                                  "malformed token"),
    "duplicate-groups": (lambda k: sign_raw(header_json(corp_key(k)),
                                            claims_json(k, extra=', "groups": ["deployers"]'), corp_key(k)),
                         "malformed token"),
    "duplicate-alg-in-header": (lambda k: sign_raw(header_json(corp_key(k), extra=', "alg": "none"'),
                                                   claims_json(k), corp_key(k)), "malformed token"),
    "duplicate-kid-in-header": (lambda k: sign_raw(header_json(corp_key(k), extra=', "kid": "rsa-2026"'),
                                                   claims_json(k), corp_key(k)), "malformed token"),
    # crit: an extension Pinhole does not implement must not be ignored.
    "crit-header": (lambda k: sign_raw(header_json(corp_key(k), crit=["exp"], exp=now() + 60),
                                       claims_json(k), corp_key(k)), "unsupported critical header"),
    "crit-empty-list": (lambda k: sign_raw(header_json(corp_key(k), crit=[]), claims_json(k), corp_key(k)),
                        "unsupported critical header"),
    # kid: looked up by exact match among the policy's keys, never as a
    # path or URL.
    "kid-traversal": (with_kid("../jwks-corp.json"), "unknown signing key"),
    "kid-deep-traversal": (with_kid("../../../../../../etc/passwd"), "unknown signing key"),
    "kid-dot-segments": (with_kid("rsa-2025/../rsa-2025"), "unknown signing key"),
    "kid-nul": (with_kid("rsa-2025\u0000"), "unknown signing key"),
    "kid-trailing-space": (with_kid("rsa-2025 "), "unknown signing key"),
    "kid-case": (with_kid("RSA-2025"), "unknown signing key"),
    "kid-file-url": (with_kid("file:///etc/passwd"), "unknown signing key"),
    "kid-https-url": (with_kid("https://evil.example.test/jwks.json"), "unknown signing key"),
    "kid-sql": (with_kid("x' OR '1'='1"), "unknown signing key"),
    "kid-empty": (with_kid(""), "unknown signing key"),
    "kid-number": (with_kid(2025), "malformed token"),
    "kid-array": (with_kid(["rsa-2025"]), "malformed token"),
    # Keys carried in the header are never used.
    "embedded-jwk": (lambda k: sign_raw(header_json(k.attacker_rsa, kid="rsa-2025", jwk=k.attacker_rsa.public_jwk()),
                                        claims_json(k), k.attacker_rsa), "bad signature"),
    "jku-to-attacker": (lambda k: sign_raw(header_json(k.attacker_rsa, kid="rsa-2025",
                                                       jku="https://evil.example.test/jwks.json"),
                                           claims_json(k), k.attacker_rsa), "bad signature"),
    "x5u-to-attacker": (lambda k: sign_raw(header_json(k.attacker_rsa, kid="rsa-2025",
                                                       x5u="https://evil.example.test/cert.pem"),
                                           claims_json(k), k.attacker_rsa), "bad signature"),
    # alg against the key: the kid's key decides the algorithm.
    "es256-header-rsa-kid": (lambda k: sign_raw(header_json(k.attacker_ec, kid="rsa-2025"), claims_json(k),
                                                k.attacker_ec), "algorithm not allowed"),
    "eddsa-header-rsa-kid": (lambda k: sign_raw(header_json(SigningKey.new("x", "EdDSA"), kid="rsa-2025"),
                                                claims_json(k), SigningKey.new("x", "EdDSA")),
                             "algorithm not allowed"),
    "rs256-on-an-es256-issuer": (lambda k: sign_raw(
        header_json(corp_key(k), kid="ec-1"),
        json.dumps(k.claims("edge", "erin", groups=["analysts"])), corp_key(k)), "algorithm not allowed"),
    "ps256": (lambda k: sign_raw(header_json(corp_key(k), alg="PS256"), claims_json(k), corp_key(k)),
              "unsupported algorithm"),
    "rs512": (lambda k: sign_raw(header_json(corp_key(k), alg="RS512"), claims_json(k), corp_key(k)),
              "unsupported algorithm"),
    "alg-lowercase": (lambda k: sign_raw(header_json(corp_key(k), alg="rs256"), claims_json(k), corp_key(k)),
                      "unsupported algorithm"),
    "alg-none-capitalised": (lambda k: b64u(json.dumps({"alg": "None", "kid": "rsa-2025"}).encode()) + "."
                             + b64u(claims_json(k).encode()) + ".", "unsupported algorithm"),
    "rotated-kid-other-key": (lambda k: sign_raw(header_json(corp_key(k), kid="rsa-2026"), claims_json(k),
                                                 corp_key(k)), "bad signature"),
    "hs256-der-public-key": (lambda k: hs256(k, rsa_public(k, "der")), "unsupported algorithm"),
    "hs256-pkcs1-public-key": (lambda k: hs256(k, rsa_public(k, "pkcs1")), "unsupported algorithm"),
    "hs256-jwk-text": (lambda k: hs256(k, rsa_public(k, "jwk")), "unsupported algorithm"),
    # Claims of the wrong type.
    "exp-as-string": (lambda k: sign_raw(header_json(corp_key(k)), claims_json(k, exp=str(now() + 600)),
                                         corp_key(k)), None),
    "exp-huge-float": (lambda k: sign_raw(header_json(corp_key(k)), claims_json(k, exp=1e308), corp_key(k)),
                       "token lifetime too long"),
    "sub-as-object": (lambda k: sign_raw(header_json(corp_key(k)), claims_json(k, sub={"id": "alice"}),
                                         corp_key(k)), None),
    "aud-as-object": (lambda k: sign_raw(header_json(corp_key(k)), claims_json(k, aud={"x": AUDIENCE}),
                                         corp_key(k)), None),
    "payload-is-an-array": (lambda k: sign_raw(header_json(corp_key(k)), "[" + claims_json(k) + "]",
                                               corp_key(k)), "malformed token"),
    "deeply-nested-claim": (lambda k: sign_raw(header_json(corp_key(k)),
                                               claims_json(k, extra=', "x": ' + "[" * 500 + "]" * 500),
                                               corp_key(k)), "malformed token"),
    # Oversized (a valid signature over a 20 KB payload).
    "oversized-token": (lambda k: sign_raw(header_json(corp_key(k)), claims_json(k, pad="x" * 20_000),
                                           corp_key(k)), "malformed token"),
    # Encoding.
    "base64-standard-alphabet": (lambda k: recode(k.mint("corp", "alice", groups=["analysts"]),
                                                  lambda s: s.replace("-", "+").replace("_", "/") + "+/"), None),
    "base64-padding": (lambda k: recode(k.mint("corp", "alice", groups=["analysts"]), lambda s: s + "==", 1),
                       "malformed token"),
    "base64-stray-bits": (lambda k: recode(k.mint("corp", "alice", groups=["analysts"]), stray_bits),
                          None),
    "base64-inner-space": (lambda k: recode(k.mint("corp", "alice", groups=["analysts"]),
                                            lambda s: s[:10] + " " + s[10:], 1), "malformed token"),
    "base64-percent-encoded": (lambda k: recode(k.mint("corp", "alice", groups=["analysts"]),
                                                lambda s: s[:10] + "%41" + s[10:], 1), "malformed token"),
    "non-ascii": (lambda k: recode(k.mint("corp", "alice", groups=["analysts"]), lambda s: s + "\u00e9", 1),
                  None),
    "four-parts": (lambda k: k.mint("corp", "alice", groups=["analysts"]) + ".e30", "malformed token"),
    "header-not-json": (lambda k: b64u(b"{alg:RS256}") + "." + b64u(claims_json(k).encode()) + ".AAAA",
                        "malformed token"),
    "payload-invalid-utf8": (lambda k: sign_raw(header_json(corp_key(k)), "{}", corp_key(k)).split(".")[0] + "."
                             + b64u(b'{"iss":"\xff"}') + ".AAAA", "malformed token"),
}

# The subset also tried at a PostgreSQL login (same verifier, another path).
PG_SUBSET = ["duplicate-sub", "duplicate-exp-expired-first", "duplicate-alg-in-header", "crit-header",
             "kid-traversal", "kid-nul", "embedded-jwk", "es256-header-rsa-kid", "rs256-on-an-es256-issuer",
             "hs256-der-public-key", "oversized-token", "base64-padding", "base64-stray-bits", "four-parts"]


def challenge_params(value: str) -> dict[str, str]:
    assert value.startswith("Bearer"), value
    return dict((k.strip(), v.strip('"')) for k, v in
                (p.split("=", 1) for p in value[len("Bearer"):].split(",") if "=" in p))


def post(stack, authorization: str, marker: str) -> httpx.Response:
    headers = {"accept": harness.MCP_ACCEPT, "content-type": "application/json", "x-e2e-marker": marker}
    try:
        headers["authorization"] = authorization
        content = json.dumps(harness.initialize_msg())
        return httpx.post(stack.url, content=content, headers=headers, timeout=harness.REQUEST_TIMEOUT)
    except UnicodeEncodeError:
        raw = {k: v.encode("utf-8") for k, v in headers.items()}
        return httpx.post(stack.url, content=json.dumps(harness.initialize_msg()), headers=raw,
                          timeout=harness.REQUEST_TIMEOUT)


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_token_gets_401_and_never_reaches_the_server(json_stack, keys, kind) -> None:
    make, reason = HOSTILE[kind]
    token = make(keys)
    mark = json_stack.request_log.mark()
    marker = f"jwt-{kind}"
    r = post(json_stack, f"Bearer {token}", marker)
    assert r.status_code == 401, (kind, r.status_code, r.text[:200])
    params = challenge_params(r.headers.get("www-authenticate", ""))
    assert params.get("realm") == "pinhole" and params.get("error") == "invalid_token", params
    body = r.json()
    assert body["error"] == "unauthorized", body
    if reason is not None:
        assert body["reason"] == reason, (kind, body)
    assert harness.reached(json_stack.request_log, mark, marker) == [], "a refused request reached the MCP server"


def test_refusals_are_logged_for_the_operator(json_stack, keys) -> None:
    token = HOSTILE["duplicate-sub"][0](keys)
    assert post(json_stack, f"Bearer {token}", "jwt-log").status_code == 401
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [line for line in json_stack.envoy.log_text().splitlines()
                 if "authentication failed" in line and 'reason="malformed token"' in line]
        if lines:
            break
        time.sleep(0.1)
    assert lines, json_stack.envoy.log_tail(20)
    # The log line never echoes the token.
    assert not any(token.split(".")[1] in line for line in json_stack.envoy.log_text().splitlines())


@pytest.mark.parametrize("size", [17 * 1024, 64 * 1024, 200 * 1024])
def test_oversized_authorization_header(json_stack, size) -> None:
    """Beyond the filter's 16 KiB cap (401) or Envoy's header limits (431):
    refused either way, never forwarded, Envoy stays up."""
    mark = json_stack.request_log.mark()
    marker = f"jwt-huge-{size}"
    try:
        r = post(json_stack, "Bearer " + "eyJ" + "A" * size, marker)
        assert r.status_code in (401, 431, 400), (size, r.status_code)
    except httpx.HTTPError:
        pass  # Envoy may reset the connection
    assert harness.reached(json_stack.request_log, mark, marker) == []
    assert json_stack.envoy.ready()


def test_duplicate_claims_are_not_cached_as_a_good_token(json_stack, keys, tokens) -> None:
    """After a refused duplicate-claims token, the same subject's good token
    still works and the refused one stays refused."""
    bad = HOSTILE["duplicate-groups"][0](keys)
    for _ in range(2):
        assert post(json_stack, f"Bearer {bad}", "jwt-dup-again").status_code == 401
    assert post(json_stack, f"Bearer {tokens.analyst()}", "jwt-good").status_code == 200


@pytest.mark.parametrize("kind", PG_SUBSET)
def test_hostile_token_is_refused_at_a_postgres_login(pg_stack, pg_cluster, keys, kind) -> None:
    token = HOSTILE[kind][0](keys)
    mark = pg_cluster.log_mark()
    with pg_stack.raw() as c:
        res = c.login("alice", token)
        err = res.error
        assert err is not None, f"login with a {kind} token was not refused: {res.types!r}"
        assert err.get("C") == pg.INVALID_PASSWORD, err
        assert err.get("M", "").startswith("pinhole:"), err
        assert res.closed or c.is_closed(5)
        assert b"Z" not in res.types and b"K" not in res.types, res.types
    assert not pg_cluster.statements_since(mark)
    assert re.search(r"pinhole", pg_stack.envoy.log_text())
