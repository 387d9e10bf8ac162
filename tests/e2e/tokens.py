"""Keys, JWKS files and JWTs for the end-to-end tests, made at run time with
`cryptography` and PyJWT (nothing secret is stored in the repository).

    keys = KeySet.generate()            # RSA-2048 (two kids: rotation), EC P-256, Ed25519
    keys.write_jwks(directory)          # one JWKS file per issuer
    token = keys.mint("corp", sub="alice", groups=["analysts"])

Three trusted issuers, one algorithm each, so every algorithm Pinhole must
verify is exercised through Envoy:

    corp  https://sso.corp.test        RS256  kids rsa-2025 (old) and rsa-2026 (rotated in)
    edge  https://edge-idp.test        ES256  kid ec-1
    ci    https://ci.tokens.test       EdDSA  kid ed-1

And hostile variants: expired, wrong audience, unknown issuer, forged (signed
by an attacker key that claims a trusted kid), `alg: none`, not yet valid,
over-long lifetime, garbage.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

AUDIENCE = "pinhole-mcp"


@dataclass
class SigningKey:
    kid: str
    alg: str  # RS256 | ES256 | EdDSA
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if self.alg == "RS256":
            jwk = json.loads(RSAAlgorithm.to_jwk(public))
        elif self.alg == "ES256":
            jwk = json.loads(ECAlgorithm.to_jwk(public))
        elif self.alg == "EdDSA":
            jwk = json.loads(OKPAlgorithm.to_jwk(public))
        else:  # pragma: no cover
            raise ValueError(self.alg)
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk

    @staticmethod
    def new(kid: str, alg: str) -> "SigningKey":
        if alg == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        else:  # pragma: no cover
            raise ValueError(alg)
        return SigningKey(kid=kid, alg=alg, private=private)


@dataclass
class Issuer:
    name: str  # policy-local name, e.g. "corp"
    iss: str  # the `iss` claim
    keys: list[SigningKey]
    jwks_path: Path | None = None

    @property
    def key(self) -> SigningKey:
        """The key tokens are signed with by default (the first)."""
        return self.keys[0]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.keys]}


@dataclass
class KeySet:
    issuers: dict[str, Issuer] = field(default_factory=dict)
    # Keys nobody trusts: the attacker's.
    attacker_rsa: SigningKey | None = None
    attacker_ec: SigningKey | None = None

    @staticmethod
    def generate() -> "KeySet":
        ks = KeySet()
        ks.issuers["corp"] = Issuer(
            "corp",
            "https://sso.corp.test",
            [SigningKey.new("rsa-2025", "RS256"), SigningKey.new("rsa-2026", "RS256")],
        )
        ks.issuers["edge"] = Issuer("edge", "https://edge-idp.test", [SigningKey.new("ec-1", "ES256")])
        ks.issuers["ci"] = Issuer("ci", "https://ci.tokens.test", [SigningKey.new("ed-1", "EdDSA")])
        ks.attacker_rsa = SigningKey.new("rsa-2025", "RS256")  # same kid as corp's real key
        ks.attacker_ec = SigningKey.new("ec-1", "ES256")
        return ks

    def write_jwks(self, directory: Path) -> dict[str, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, issuer in self.issuers.items():
            path = directory / f"jwks-{name}.json"
            path.write_text(json.dumps(issuer.jwks(), indent=2) + "\n")
            issuer.jwks_path = path
            paths[name] = path
        return paths

    # ---- minting ------------------------------------------------------------

    def claims(
        self,
        issuer: str,
        sub: str,
        *,
        groups: list[str] | None = None,
        aud: str | list[str] = AUDIENCE,
        lifetime: int = 600,
        iat_offset: int = 0,
        **extra: Any,
    ) -> dict[str, Any]:
        now = int(time.time()) + iat_offset
        claims: dict[str, Any] = {
            "iss": self.issuers[issuer].iss if issuer in self.issuers else issuer,
            "sub": sub,
            "aud": aud,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }
        if groups is not None:
            claims["groups"] = groups
        claims.update(extra)
        return claims

    def sign(self, claims: dict[str, Any], key: SigningKey, *, headers: dict[str, Any] | None = None) -> str:
        hdr = {"kid": key.kid}
        if headers:
            hdr.update(headers)
        return jwt.encode(claims, key.private, algorithm=key.alg, headers=hdr)

    def mint(
        self,
        issuer: str,
        sub: str,
        *,
        groups: list[str] | None = None,
        key: SigningKey | None = None,
        **kw: Any,
    ) -> str:
        """A valid token from a trusted issuer (signed with its first key
        unless `key` is given)."""
        return self.sign(self.claims(issuer, sub, groups=groups, **kw), key or self.issuers[issuer].key)

    # ---- hostile tokens -----------------------------------------------------

    def expired(self, issuer: str = "corp", sub: str = "alice", **kw: Any) -> str:
        # Expired ten minutes ago: well beyond any clock-skew leeway.
        return self.mint(issuer, sub, iat_offset=-1200, lifetime=600, **kw)

    def not_yet_valid(self, issuer: str = "corp", sub: str = "alice", **kw: Any) -> str:
        return self.mint(issuer, sub, iat_offset=+1200, lifetime=600, **kw)

    def wrong_audience(self, issuer: str = "corp", sub: str = "alice", **kw: Any) -> str:
        return self.mint(issuer, sub, aud="some-other-service", **kw)

    def unknown_issuer(self, sub: str = "alice", **kw: Any) -> str:
        # Signed with corp's real key and kid, but claiming an issuer the
        # policy does not trust.
        claims = self.claims("https://evil.example.test", sub, **kw)
        return self.sign(claims, self.issuers["corp"].key)

    def forged(self, sub: str = "alice", **kw: Any) -> str:
        # corp's issuer, audience and kid, signed by the attacker's key.
        assert self.attacker_rsa is not None
        return self.sign(self.claims("corp", sub, **kw), self.attacker_rsa)

    def forged_ec(self, sub: str = "alice", **kw: Any) -> str:
        assert self.attacker_ec is not None
        return self.sign(self.claims("edge", sub, **kw), self.attacker_ec)

    def alg_none(self, sub: str = "alice", **kw: Any) -> str:
        # {"alg": "none"} with an empty signature, claiming corp's kid.
        return jwt.encode(self.claims("corp", sub, **kw), None, algorithm="none", headers={"kid": "rsa-2025"})

    def alg_confusion_hs256(self, sub: str = "alice", **kw: Any) -> str:
        # HS256 "signed" with corp's public key as the HMAC secret (the classic
        # RS256→HS256 confusion). PyJWT refuses PEM keys as HMAC secrets, so
        # build it by hand.
        import hashlib
        import hmac

        from cryptography.hazmat.primitives import serialization

        pem = self.issuers["corp"].key.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-2025"}).encode())
        payload = _b64url(json.dumps(self.claims("corp", sub, **kw)).encode())
        sig = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64url(sig)}"

    def tampered(self, sub: str = "alice", **kw: Any) -> str:
        # A valid token whose payload was edited after signing (groups added).
        token = self.mint("corp", sub, **kw)
        header, payload, sig = token.split(".")
        claims = json.loads(_b64url_decode(payload))
        claims["groups"] = ["deployers", "admins"]
        return f"{header}.{_b64url(json.dumps(claims).encode())}.{sig}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def header_of(token: str) -> dict[str, Any]:
    return json.loads(_b64url_decode(token.split(".")[0]))
