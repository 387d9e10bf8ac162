//! JWT verification against the policy's issuers.
//!
//! Only compact JWS tokens signed with RS256, ES256 or EdDSA are accepted.
//! The steps, in order (the first failure decides the [`AuthError`]):
//!
//! 1. Shape: at most [`MAX_TOKEN_LEN`] bytes, exactly three non-empty
//!    base64url parts (strict: no padding, no stray bits).
//! 2. Header: a JSON object; `alg` one of RS256/ES256/EdDSA (`none`, HS*,
//!    anything else is refused); `typ`, if present, `JWT`, `at+jwt` or `JOSE`
//!    (case-insensitive, optionally `application/`-prefixed) so tokens minted
//!    for other purposes (`dpop+jwt`, `logout+jwt`, …) are not accepted as
//!    access tokens; no `crit`. Embedded keys (`jwk`, `jku`, `x5c`, `x5u`) are
//!    ignored: keys only ever come from the policy.
//! 3. Payload: a JSON object whose `iss` names a policy issuer. It is parsed
//!    once, before the signature is checked, only to choose the issuer; none
//!    of it is trusted until step 5 succeeds.
//! 4. Key: `alg` must be in the issuer's `algorithms` and fit the key (its
//!    type, and its JWK `alg` when set). Selection rule:
//!    - a token with `kid` uses the issuer key with exactly that `kid`
//!      (keys without `kid` never match it);
//!    - a token without `kid` uses the issuer's kid-less key able to verify
//!      `alg`, only when there is exactly one such key. Pinhole never tries
//!      keys one after another, so a forged token costs one signature check.
//! 5. Signature over the `header.payload` bytes as received.
//! 6. Claims: `exp` required; `now < exp + leeway`; `nbf` (if present)
//!    `nbf <= now + leeway`; `iat` (if present) `iat <= now + leeway`; `aud`
//!    (string or array) must contain one of the issuer's audiences; `sub` a
//!    non-empty string; `jti`, if present, a string; with a maximum lifetime,
//!    `iat` (or else `nbf`) is required and `exp - iat <= max`.
//!
//! ES256 signatures are accepted with high or low `s` (most JOSE libraries
//! do not normalise `s`, so refusing high-S would refuse half of valid
//! tokens). Malleability is harmless here: a re-encoded signature carries the
//! same claims, and revocation works on claims, not on token bytes.
//!
//! Numeric dates may be integers or floats; they are read saturating
//! (negative → 0, fractional part dropped, beyond `u64` → `u64::MAX`), and
//! all time arithmetic saturates, so no input can panic or wrap.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::jwks::{key_algs, prepare, PreparedKey};
use super::VerifiedToken;
use crate::policy::{Alg, Policy};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a token was refused. [`AuthError::reason`] is the short, stable text
/// for clients and metrics; `Display` adds detail for logs (never echoing
/// unbounded token content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    /// The `Authorization` header does not hold a well-formed bearer token.
    #[error("malformed bearer token")]
    Malformed,
    /// The token is not a well-formed compact JWS (detail for logs).
    #[error("malformed token: {0}")]
    Format(&'static str),
    #[error("token type (typ) is not an access token type")]
    UnsupportedType,
    #[error("token header has a critical (crit) extension")]
    CriticalHeader,
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlg(String),
    #[error("algorithm {0} not allowed: {1}")]
    AlgNotAllowed(&'static str, &'static str),
    #[error("unknown signing key: {0}")]
    UnknownKey(&'static str),
    #[error("bad signature")]
    BadSignature,
    #[error("unknown issuer")]
    UnknownIssuer,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid ({0})")]
    NotYetValid(&'static str),
    #[error("no accepted audience in aud")]
    Audience,
    #[error("token lifetime {0}s exceeds the issuer's maximum of {1}s")]
    LifetimeTooLong(u64, u64),
    #[error("missing required claim {0}")]
    MissingClaim(&'static str),
    #[error("invalid claim {0}")]
    InvalidClaim(&'static str),
    #[error("subject revoked")]
    SubjectRevoked,
    #[error("token revoked")]
    TokenRevoked,
}

impl AuthError {
    /// Short, stable, lowercase reason for HTTP `error_description` and
    /// metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing bearer token",
            AuthError::Malformed | AuthError::Format(_) => "malformed token",
            AuthError::UnsupportedType => "unsupported token type",
            AuthError::CriticalHeader => "unsupported critical header",
            AuthError::UnsupportedAlg(_) => "unsupported algorithm",
            AuthError::AlgNotAllowed(..) => "algorithm not allowed",
            AuthError::UnknownKey(_) => "unknown signing key",
            AuthError::BadSignature => "bad signature",
            AuthError::UnknownIssuer => "unknown issuer",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid(_) => "token not yet valid",
            AuthError::Audience => "audience not accepted",
            AuthError::LifetimeTooLong(..) => "token lifetime too long",
            AuthError::MissingClaim(_) => "missing required claim",
            AuthError::InvalidClaim(_) => "invalid claim",
            AuthError::SubjectRevoked => "subject revoked",
            AuthError::TokenRevoked => "token revoked",
        }
    }
}

/// A key ready to verify, with the one algorithm it verifies.
#[derive(Debug, Clone)]
struct VerifyKey {
    kid: Option<String>,
    alg: Alg,
    key: PreparedKey,
}

#[derive(Debug, Clone)]
struct PreparedIssuer {
    name: String,
    iss: String,
    audiences: Vec<String>,
    algorithms: Vec<Alg>,
    keys: Vec<VerifyKey>,
    groups_claim: String,
    max_lifetime: Option<u64>,
    leeway: u64,
}

/// Verifies tokens against a policy's issuers. Build it once per policy
/// (keys are decoded and validated here, not per request).
#[derive(Debug, Clone)]
pub struct Verifier {
    issuers: Vec<PreparedIssuer>,
}

impl Verifier {
    /// Prepare every issuer's keys. Any key that does not prepare, or two
    /// issuers with the same `iss`, is an error: the compiler never produces
    /// such a blob, so it is corrupt or hand-made and the filter must fail
    /// closed.
    pub fn new(policy: &Policy) -> Result<Verifier, String> {
        let mut issuers: Vec<PreparedIssuer> = Vec::with_capacity(policy.issuers.len());
        for issuer in &policy.issuers {
            if issuers.iter().any(|p| p.iss == issuer.issuer) {
                return Err(format!(
                    "issuer {:?}: another issuer has the same iss {:?}",
                    issuer.name, issuer.issuer
                ));
            }
            let mut keys = Vec::with_capacity(issuer.keys.len());
            for (i, jwk) in issuer.keys.iter().enumerate() {
                let label = || match &jwk.kid {
                    Some(kid) => format!("issuer {:?} key #{i} (kid {kid:?})", issuer.name),
                    None => format!("issuer {:?} key #{i}", issuer.name),
                };
                let key = prepare(&jwk.key).map_err(|e| format!("{}: {e}", label()))?;
                let Some(alg) = key_algs(jwk).first().copied() else {
                    return Err(format!("{}: its alg does not fit its key type", label()));
                };
                keys.push(VerifyKey {
                    kid: jwk.kid.clone(),
                    alg,
                    key,
                });
            }
            issuers.push(PreparedIssuer {
                name: issuer.name.clone(),
                iss: issuer.issuer.clone(),
                audiences: issuer.audiences.clone(),
                algorithms: issuer.algorithms.clone(),
                keys,
                groups_claim: issuer.groups_claim.clone(),
                max_lifetime: issuer.max_token_lifetime_secs,
                leeway: issuer.leeway_secs,
            });
        }
        Ok(Verifier { issuers })
    }

    /// Verify a compact JWS at time `now` (seconds since the Unix epoch).
    /// Revocation is not checked here: see [`check_revoked`].
    pub fn verify(&self, token: &str, now: u64) -> Result<VerifiedToken, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Format("token too large"));
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Format("not three dot-separated parts"));
        };
        if h64.is_empty() || p64.is_empty() {
            return Err(AuthError::Format("empty part"));
        }

        // Header.
        let header: Map<String, Value> = decode_json(h64, "header")?;
        let alg = header_alg(&header)?;
        if let Some(typ) = header.get("typ") {
            let typ = typ
                .as_str()
                .ok_or(AuthError::Format("typ is not a string"))?;
            if !acceptable_typ(typ) {
                return Err(AuthError::UnsupportedType);
            }
        }
        if header.contains_key("crit") {
            return Err(AuthError::CriticalHeader);
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(AuthError::Format("kid is not a string")),
        };

        // Payload, parsed once; only `iss` is looked at before the signature.
        let claims: Map<String, Value> = decode_json(p64, "payload")?;
        let iss = match claims.get("iss") {
            None => return Err(AuthError::MissingClaim("iss")),
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(AuthError::InvalidClaim("iss")),
        };
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.iss == iss)
            .ok_or(AuthError::UnknownIssuer)?;

        // Algorithm and key.
        if !issuer.algorithms.contains(&alg) {
            return Err(AuthError::AlgNotAllowed(
                alg.as_str(),
                "not among the issuer's algorithms",
            ));
        }
        let key = select_key(issuer, kid, alg)?;

        // Signature.
        if s64.is_empty() {
            return Err(AuthError::Format("empty signature"));
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s64)
            .map_err(|_| AuthError::Format("signature is not base64url"))?;
        let signed = token
            .get(..h64.len() + 1 + p64.len())
            .ok_or(AuthError::Format("token"))?;
        verify_signature(&key.key, signed.as_bytes(), &sig)?;

        // Claims (now trusted as the issuer's).
        let leeway = issuer.leeway;
        let exp = match claims.get("exp") {
            None => return Err(AuthError::MissingClaim("exp")),
            Some(v) => numeric_date(v).ok_or(AuthError::InvalidClaim("exp"))?,
        };
        if now >= exp.saturating_add(leeway) {
            return Err(AuthError::Expired);
        }
        let nbf = optional_date(&claims, "nbf")?;
        if let Some(nbf) = nbf {
            if nbf > now.saturating_add(leeway) {
                return Err(AuthError::NotYetValid("nbf is in the future"));
            }
        }
        let iat = optional_date(&claims, "iat")?;
        if let Some(iat) = iat {
            if iat > now.saturating_add(leeway) {
                return Err(AuthError::NotYetValid("iat is in the future"));
            }
        }
        check_audience(&claims, &issuer.audiences)?;
        let sub = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None => return Err(AuthError::MissingClaim("sub")),
            Some(_) => return Err(AuthError::InvalidClaim("sub")),
        };
        let jti = match claims.get("jti") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(AuthError::InvalidClaim("jti")),
        };
        if let Some(max) = issuer.max_lifetime {
            let start = iat.or(nbf).ok_or(AuthError::MissingClaim("iat"))?;
            let lifetime = exp.saturating_sub(start);
            if lifetime > max {
                return Err(AuthError::LifetimeTooLong(lifetime, max));
            }
        }
        let groups = read_groups(&claims, &issuer.groups_claim);
        let iss = iss.to_string();
        Ok(VerifiedToken {
            issuer_name: issuer.name.clone(),
            iss,
            sub,
            exp,
            jti,
            groups,
            claims,
        })
    }
}

/// Refuse a verified token whose subject or id the policy revokes. Call it on
/// every request, cache hits included, so a new revocation list takes effect
/// at once. Subjects match exactly, either bare (any issuer) or qualified as
/// `issuer-name:subject`; token ids match `jti` exactly.
pub fn check_revoked(policy: &Policy, t: &VerifiedToken) -> Result<(), AuthError> {
    check_revoked_in(&policy.revoked, t)
}

/// [`check_revoked`] against a revocation list (e.g. the newest policy's,
/// for a session opened under an older one).
pub fn check_revoked_in(
    revoked: &crate::policy::Revocations,
    t: &VerifiedToken,
) -> Result<(), AuthError> {
    let revoked_subject = revoked.subjects.iter().any(|entry| {
        entry == &t.sub
            || entry
                .strip_prefix(t.issuer_name.as_str())
                .and_then(|rest| rest.strip_prefix(':'))
                == Some(t.sub.as_str())
    });
    if revoked_subject {
        return Err(AuthError::SubjectRevoked);
    }
    if let Some(jti) = &t.jti {
        if revoked.token_ids.iter().any(|id| id == jti) {
            return Err(AuthError::TokenRevoked);
        }
    }
    Ok(())
}

fn decode_json(part: &str, what: &'static str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| {
        AuthError::Format(if what == "header" {
            "header is not base64url"
        } else {
            "payload is not base64url"
        })
    })?;
    let not_object = || {
        AuthError::Format(if what == "header" {
            "header is not a JSON object without duplicate members"
        } else {
            "payload is not a JSON object without duplicate claims"
        })
    };
    // Strict: a duplicate member (two `sub`s, two `alg`s) is refused, since
    // the issuer, this filter and the upstream could each read a different one.
    let text = std::str::from_utf8(&bytes).map_err(|_| not_object())?;
    match crate::mcp::json::parse_strict(text, MAX_JSON_DEPTH) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(not_object()),
    }
}

/// Nesting allowed in a token's header and payload.
const MAX_JSON_DEPTH: usize = 32;

fn header_alg(header: &Map<String, Value>) -> Result<Alg, AuthError> {
    match header.get("alg") {
        None => Err(AuthError::Format("header has no alg")),
        Some(Value::String(a)) => {
            Alg::parse(a).ok_or_else(|| AuthError::UnsupportedAlg(sanitize(a)))
        }
        Some(_) => Err(AuthError::Format("alg is not a string")),
    }
}

/// A short, printable rendering of an attacker-controlled string for logs.
fn sanitize(s: &str) -> String {
    s.chars()
        .take(16)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+-_.".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn acceptable_typ(typ: &str) -> bool {
    let t = typ
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("application/"))
        .and_then(|_| typ.get(12..))
        .unwrap_or(typ);
    ["jwt", "at+jwt", "jose"]
        .iter()
        .any(|ok| t.eq_ignore_ascii_case(ok))
}

fn select_key<'a>(
    issuer: &'a PreparedIssuer,
    kid: Option<&str>,
    alg: Alg,
) -> Result<&'a VerifyKey, AuthError> {
    match kid {
        Some(kid) => {
            let key = issuer
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or(AuthError::UnknownKey("no issuer key has the token's kid"))?;
            if key.alg != alg {
                return Err(AuthError::AlgNotAllowed(
                    alg.as_str(),
                    "the key with this kid verifies another algorithm",
                ));
            }
            Ok(key)
        }
        None => {
            let mut candidates = issuer
                .keys
                .iter()
                .filter(|k| k.kid.is_none() && k.alg == alg);
            match (candidates.next(), candidates.next()) {
                (Some(key), None) => Ok(key),
                (None, _) => Err(AuthError::UnknownKey(
                    "token has no kid and the issuer has no kid-less key for its alg",
                )),
                (Some(_), Some(_)) => Err(AuthError::UnknownKey(
                    "token has no kid and the issuer has several kid-less keys for its alg",
                )),
            }
        }
    }
}

fn verify_signature(key: &PreparedKey, signed: &[u8], sig: &[u8]) -> Result<(), AuthError> {
    match key {
        PreparedKey::Rsa(vk) => {
            use rsa::signature::Verifier as _;
            let sig =
                rsa::pkcs1v15::Signature::try_from(sig).map_err(|_| AuthError::BadSignature)?;
            vk.verify(signed, &sig).map_err(|_| AuthError::BadSignature)
        }
        PreparedKey::P256(vk) => {
            use p256::ecdsa::signature::Verifier as _;
            if sig.len() != 64 {
                return Err(AuthError::BadSignature);
            }
            let sig =
                p256::ecdsa::Signature::from_slice(sig).map_err(|_| AuthError::BadSignature)?;
            vk.verify(signed, &sig).map_err(|_| AuthError::BadSignature)
        }
        PreparedKey::Ed25519(pk) => {
            let sig =
                ed25519_compact::Signature::from_slice(sig).map_err(|_| AuthError::BadSignature)?;
            pk.verify(signed, &sig).map_err(|_| AuthError::BadSignature)
        }
    }
}

/// A JSON NumericDate as whole seconds, saturating. `None`: not a number.
fn numeric_date(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    if let Some(i) = n.as_i64() {
        // Only negative integers get here.
        return Some(if i < 0 { 0 } else { i.unsigned_abs() });
    }
    let f = n.as_f64()?;
    if f.is_nan() {
        return None;
    }
    // `as` saturates for floats: negative → 0, too large → u64::MAX.
    Some(f as u64)
}

fn optional_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => numeric_date(v)
            .map(Some)
            .ok_or(AuthError::InvalidClaim(name)),
    }
}

fn check_audience(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), AuthError> {
    let ok = |a: &str| accepted.iter().any(|x| x == a);
    match claims.get("aud") {
        None => Err(AuthError::MissingClaim("aud")),
        Some(Value::String(a)) => {
            if ok(a) {
                Ok(())
            } else {
                Err(AuthError::Audience)
            }
        }
        Some(Value::Array(list)) => {
            if list.iter().filter_map(Value::as_str).any(ok) {
                Ok(())
            } else {
                Err(AuthError::Audience)
            }
        }
        Some(_) => Err(AuthError::InvalidClaim("aud")),
    }
}

/// Groups from the issuer's groups claim: a string, or the strings of an
/// array (other elements ignored). Missing or another type → no groups.
fn read_groups(claims: &Map<String, Value>, path: &str) -> Vec<String> {
    super::roles::groups_from_claims(claims, path)
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Keys and token minting shared by the identity tests.
    use super::*;
    use crate::policy::{Issuer, Jwk, KeyMaterial};
    use rsa::traits::PublicKeyParts;
    use std::sync::OnceLock;

    pub fn b64u(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn rsa_key() -> &'static rsa::RsaPrivateKey {
        static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| {
            rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa keygen")
        })
    }

    pub enum Signer {
        Rsa(&'static rsa::RsaPrivateKey),
        Ec(p256::ecdsa::SigningKey),
        Ed(ed25519_compact::KeyPair),
    }

    impl Signer {
        pub fn rsa() -> Signer {
            Signer::Rsa(rsa_key())
        }
        pub fn ec() -> Signer {
            Signer::Ec(p256::ecdsa::SigningKey::random(&mut rand::thread_rng()))
        }
        pub fn ed() -> Signer {
            Signer::Ed(ed25519_compact::KeyPair::generate())
        }

        pub fn alg(&self) -> &'static str {
            match self {
                Signer::Rsa(_) => "RS256",
                Signer::Ec(_) => "ES256",
                Signer::Ed(_) => "EdDSA",
            }
        }

        pub fn material(&self) -> KeyMaterial {
            match self {
                Signer::Rsa(k) => {
                    let p = k.to_public_key();
                    KeyMaterial::Rsa {
                        n: b64u(&p.n().to_bytes_be()),
                        e: b64u(&p.e().to_bytes_be()),
                    }
                }
                Signer::Ec(k) => {
                    let pt = k.verifying_key().to_encoded_point(false);
                    KeyMaterial::P256 {
                        x: b64u(pt.x().unwrap()),
                        y: b64u(pt.y().unwrap()),
                    }
                }
                Signer::Ed(kp) => KeyMaterial::Ed25519 {
                    x: b64u(&kp.pk[..]),
                },
            }
        }

        pub fn jwk(&self, kid: Option<&str>) -> Jwk {
            Jwk {
                kid: kid.map(str::to_string),
                alg: None,
                key: self.material(),
            }
        }

        pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
            match self {
                Signer::Rsa(k) => {
                    use rsa::signature::{SignatureEncoding, Signer as _};
                    let sk = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new((*k).clone());
                    sk.sign(msg).to_vec()
                }
                Signer::Ec(k) => {
                    use p256::ecdsa::signature::Signer as _;
                    let s: p256::ecdsa::Signature = k.sign(msg);
                    s.to_bytes().to_vec()
                }
                Signer::Ed(kp) => kp.sk.sign(msg, None).to_vec(),
            }
        }

        /// `b64(header).b64(payload).b64(sig)` with the header's `alg` set to
        /// this key's algorithm unless the header sets one.
        pub fn mint(&self, header: Value, payload: Value) -> String {
            let mut header = header;
            if header.get("alg").is_none() {
                header["alg"] = self.alg().into();
            }
            let signing_input = format!(
                "{}.{}",
                b64u(header.to_string().as_bytes()),
                b64u(payload.to_string().as_bytes())
            );
            let sig = self.sign(signing_input.as_bytes());
            format!("{signing_input}.{}", b64u(&sig))
        }
    }

    pub const NOW: u64 = 1_700_000_000;
    pub const ISS: &str = "https://sso.example.com";

    pub fn issuer(name: &str, iss: &str, keys: Vec<Jwk>) -> Issuer {
        Issuer {
            name: name.to_string(),
            issuer: iss.to_string(),
            audiences: vec!["pinhole".to_string(), "mcp".to_string()],
            algorithms: vec![Alg::RS256, Alg::ES256, Alg::EdDSA],
            keys,
            groups_claim: "groups".to_string(),
            max_token_lifetime_secs: None,
            leeway_secs: 30,
        }
    }

    pub fn policy(issuers: Vec<Issuer>) -> Policy {
        Policy {
            issuers,
            ..Policy::default()
        }
    }

    pub fn claims() -> Value {
        serde_json::json!({
            "iss": ISS, "sub": "alice", "aud": "pinhole",
            "iat": NOW - 10, "exp": NOW + 600,
            "groups": ["eng", "oncall"], "jti": "t-1",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;
    use serde_json::json;

    /// One verifier with an RSA, two EC (rotation) and an Ed25519 key.
    struct Fixture {
        rsa: Signer,
        ec1: Signer,
        ec2: Signer,
        ed: Signer,
        verifier: Verifier,
        policy: Policy,
    }

    fn fixture() -> Fixture {
        let (rsa, ec1, ec2, ed) = (Signer::rsa(), Signer::ec(), Signer::ec(), Signer::ed());
        let keys = vec![
            rsa.jwk(Some("rsa-1")),
            ec1.jwk(Some("ec-1")),
            ec2.jwk(Some("ec-2")),
            ed.jwk(Some("ed-1")),
        ];
        let policy = policy(vec![issuer("corp", ISS, keys)]);
        let verifier = Verifier::new(&policy).unwrap();
        Fixture {
            rsa,
            ec1,
            ec2,
            ed,
            verifier,
            policy,
        }
    }

    fn with(mut base: Value, patch: Value) -> Value {
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base
    }

    fn reason(r: Result<VerifiedToken, AuthError>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        }
    }

    #[test]
    fn each_algorithm_verifies() {
        let f = fixture();
        for (signer, kid) in [(&f.rsa, "rsa-1"), (&f.ec1, "ec-1"), (&f.ed, "ed-1")] {
            let tok = signer.mint(json!({"kid": kid, "typ": "JWT"}), claims());
            let t = f.verifier.verify(&tok, NOW).unwrap();
            assert_eq!(t.issuer_name, "corp");
            assert_eq!(t.iss, ISS);
            assert_eq!(t.sub, "alice");
            assert_eq!(t.exp, NOW + 600);
            assert_eq!(t.jti.as_deref(), Some("t-1"));
            assert_eq!(t.groups, vec!["eng", "oncall"]);
            assert_eq!(t.claims["aud"], "pinhole");
        }
    }

    #[test]
    fn kid_rotation() {
        let f = fixture();
        let tok = f.ec2.mint(json!({"kid": "ec-2"}), claims());
        assert_eq!(reason(f.verifier.verify(&tok, NOW)), "ok");
        // Signed by the second key but naming the first: bad signature.
        let tok = f.ec2.mint(json!({"kid": "ec-1"}), claims());
        assert_eq!(reason(f.verifier.verify(&tok, NOW)), "bad signature");
        let tok = f.ec2.mint(json!({"kid": "ec-3"}), claims());
        assert_eq!(reason(f.verifier.verify(&tok, NOW)), "unknown signing key");
        // No kid while every key has one.
        let tok = f.ec2.mint(json!({}), claims());
        assert_eq!(reason(f.verifier.verify(&tok, NOW)), "unknown signing key");
    }

    #[test]
    fn kidless_selection() {
        let (ec, ed, ec_b) = (Signer::ec(), Signer::ed(), Signer::ec());
        let p = policy(vec![issuer(
            "corp",
            ISS,
            vec![ec.jwk(None), ed.jwk(None), ec_b.jwk(Some("b"))],
        )]);
        let v = Verifier::new(&p).unwrap();
        // One kid-less key per alg: used.
        assert_eq!(reason(v.verify(&ec.mint(json!({}), claims()), NOW)), "ok");
        assert_eq!(reason(v.verify(&ed.mint(json!({}), claims()), NOW)), "ok");
        // A kid-ed key is not used for kid-less tokens.
        assert_eq!(
            reason(v.verify(&ec_b.mint(json!({}), claims()), NOW)),
            "bad signature"
        );
        // A kid never selects a kid-less key.
        assert_eq!(
            reason(v.verify(&ec.mint(json!({"kid": "a"}), claims()), NOW)),
            "unknown signing key"
        );
        // Two kid-less keys for the same alg: ambiguous, refused.
        let ec_c = Signer::ec();
        let p = policy(vec![issuer(
            "corp",
            ISS,
            vec![ec.jwk(None), ec_c.jwk(None)],
        )]);
        let v = Verifier::new(&p).unwrap();
        assert_eq!(
            reason(v.verify(&ec.mint(json!({}), claims()), NOW)),
            "unknown signing key"
        );
    }

    #[test]
    fn alg_none_and_unsupported() {
        let f = fixture();
        let h = b64u(br#"{"alg":"none","typ":"JWT"}"#);
        let p = b64u(claims().to_string().as_bytes());
        for tok in [format!("{h}.{p}."), format!("{h}.{p}.AAAA")] {
            assert_eq!(
                reason(f.verifier.verify(&tok, NOW)),
                "unsupported algorithm"
            );
        }
        for alg in [
            "None", "NONE", "HS256", "RS512", "PS256", "ES384", "ES256K", "",
        ] {
            let tok = f.ec1.mint(json!({"alg": alg, "kid": "ec-1"}), claims());
            assert_eq!(
                reason(f.verifier.verify(&tok, NOW)),
                "unsupported algorithm",
                "{alg}"
            );
        }
        let tok = f.ec1.mint(json!({"alg": 7, "kid": "ec-1"}), claims());
        assert_eq!(reason(f.verifier.verify(&tok, NOW)), "malformed token");
    }

    #[test]
    fn alg_confusion() {
        let f = fixture();
        // RS256 header with the EC key's kid.
        let tok = f.rsa.mint(json!({"kid": "ec-1"}), claims());
        assert_eq!(
            reason(f.verifier.verify(&tok, NOW)),
            "algorithm not allowed"
        );
        // ES256 header pointing at the RSA key.
        let tok = f.ec1.mint(json!({"kid": "rsa-1"}), claims());
        assert_eq!(
            reason(f.verifier.verify(&tok, NOW)),
            "algorithm not allowed"
        );
        // HS256 "signed" with the RSA public key bytes as HMAC secret.
        let tok = f
            .rsa
            .mint(json!({"alg": "HS256", "kid": "rsa-1"}), claims());
        assert_eq!(
            reason(f.verifier.verify(&tok, NOW)),
            "unsupported algorithm"
        );
        // A JWK alg narrows what the key verifies.
        let mut p = f.policy.clone();
        p.issuers[0].keys[1].alg = Some(Alg::RS256);
        assert!(Verifier::new(&p).is_err());
    }

    #[test]
    fn alg_not_in_issuer_algorithms() {
        let mut f = fixture();
        f.policy.issuers[0].algorithms = vec![Alg::RS256, Alg::EdDSA];
        let v = Verifier::new(&f.policy).unwrap();
        let tok = f.ec1.mint(json!({"kid": "ec-1"}), claims());
        assert_eq!(reason(v.verify(&tok, NOW)), "algorithm not allowed");
        let tok = f.ed.mint(json!({"kid": "ed-1"}), claims());
        assert_eq!(reason(v.verify(&tok, NOW)), "ok");
    }

    #[test]
    fn tampering() {
        let f = fixture();
        for (signer, kid) in [(&f.rsa, "rsa-1"), (&f.ec1, "ec-1"), (&f.ed, "ed-1")] {
            let tok = signer.mint(json!({"kid": kid}), claims());
            let parts: Vec<&str> = tok.split('.').collect();
            // Payload swapped for another (validly encoded) one.
            let evil = b64u(
                with(claims(), json!({"sub": "root"}))
                    .to_string()
                    .as_bytes(),
            );
            let t = format!("{}.{}.{}", parts[0], evil, parts[2]);
            assert_eq!(reason(f.verifier.verify(&t, NOW)), "bad signature");
            // Header changed (kid stays; typ added).
            let h = b64u(
                json!({"alg": signer.alg(), "kid": kid, "typ": "JWT"})
                    .to_string()
                    .as_bytes(),
            );
            let t = format!("{}.{}.{}", h, parts[1], parts[2]);
            assert_eq!(reason(f.verifier.verify(&t, NOW)), "bad signature");
            // Signature bytes flipped.
            let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
            sig[10] ^= 1;
            let t = format!("{}.{}.{}", parts[0], parts[1], b64u(&sig));
            assert_eq!(reason(f.verifier.verify(&t, NOW)), "bad signature");
            // Truncated and extended signatures.
            let t = format!("{}.{}.{}", parts[0], parts[1], b64u(&sig[..sig.len() - 1]));
            assert_eq!(reason(f.verifier.verify(&t, NOW)), "bad signature");
            let mut long = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
            long.push(0);
            let t = format!("{}.{}.{}", parts[0], parts[1], b64u(&long));
            assert_eq!(reason(f.verifier.verify(&t, NOW)), "bad signature");
            // Padding is not tolerated.
            let t = format!("{tok}=");
            assert_eq!(reason(f.verifier.verify(&t, NOW)), "malformed token");
        }
    }

    #[test]
    fn high_s_es256_accepted() {
        // Negate s: (r, n - s) is the other valid signature of the message.
        let f = fixture();
        let tok = f.ec1.mint(json!({"kid": "ec-1"}), claims());
        let parts: Vec<&str> = tok.split('.').collect();
        let sig =
            p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        let (r, s) = sig.split_scalars();
        let flipped = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        let t = format!("{}.{}.{}", parts[0], parts[1], b64u(&flipped.to_bytes()));
        assert_eq!(reason(f.verifier.verify(&t, NOW)), "ok");
    }

    #[test]
    fn issuer_and_audience() {
        let f = fixture();
        let mint = |c: Value| f.ec1.mint(json!({"kid": "ec-1"}), c);
        let v = &f.verifier;
        assert_eq!(
            reason(v.verify(&mint(with(claims(), json!({"iss": "https://evil"}))), NOW)),
            "unknown issuer"
        );
        assert_eq!(
            reason(v.verify(&mint(with(claims(), json!({"iss": null}))), NOW)),
            "missing required claim"
        );
        assert_eq!(
            reason(v.verify(&mint(with(claims(), json!({"iss": 3}))), NOW)),
            "invalid claim"
        );
        assert_eq!(
            reason(v.verify(&mint(with(claims(), json!({"aud": "other"}))), NOW)),
            "audience not accepted"
        );
        assert_eq!(
            reason(v.verify(&mint(with(claims(), json!({"aud": ["a", "b"]}))), NOW)),
            "audience not accepted"
        );
        assert_eq!(
            reason(v.verify(&mint(with(claims(), json!({"aud": []}))), NOW)),
            "audience not accepted"
        );
        assert_eq!(
            reason(v.verify(&mint(with(claims(), json!({"aud": ["a", 5, "mcp"]}))), NOW)),
            "ok"
        );
        assert_eq!(
            reason(v.verify(&mint(with(claims(), json!({"aud": "mcp"}))), NOW)),
            "ok"
        );
        assert_eq!(
            reason(v.verify(&mint(with(claims(), json!({"aud": null}))), NOW)),
            "missing required claim"
        );
        assert_eq!(
            reason(v.verify(&mint(with(claims(), json!({"aud": {"x": 1}}))), NOW)),
            "invalid claim"
        );
    }

    #[test]
    fn issuer_selected_by_iss() {
        let (a, b) = (Signer::ed(), Signer::ed());
        let p = policy(vec![
            issuer("one", "https://one", vec![a.jwk(Some("k"))]),
            issuer("two", "https://two", vec![b.jwk(Some("k"))]),
        ]);
        let v = Verifier::new(&p).unwrap();
        let tok = b.mint(
            json!({"kid": "k"}),
            with(claims(), json!({"iss": "https://two"})),
        );
        assert_eq!(v.verify(&tok, NOW).unwrap().issuer_name, "two");
        // Key of issuer two, claiming issuer one: refused.
        let tok = b.mint(
            json!({"kid": "k"}),
            with(claims(), json!({"iss": "https://one"})),
        );
        assert_eq!(reason(v.verify(&tok, NOW)), "bad signature");
        // Duplicate iss is a corrupt policy.
        let p = policy(vec![
            issuer("one", "https://one", vec![a.jwk(Some("k"))]),
            issuer("two", "https://one", vec![b.jwk(Some("k"))]),
        ]);
        assert!(Verifier::new(&p).is_err());
    }

    #[test]
    fn time_claims_and_leeway() {
        let f = fixture();
        let mint = |c: Value| f.ed.mint(json!({"kid": "ed-1"}), c);
        let v = &f.verifier;
        // leeway 30: exp valid while now < exp + 30.
        let tok = mint(with(claims(), json!({"exp": NOW})));
        assert_eq!(reason(v.verify(&tok, NOW + 29)), "ok");
        assert_eq!(reason(v.verify(&tok, NOW + 30)), "token expired");
        assert_eq!(reason(v.verify(&tok, u64::MAX)), "token expired");
        // nbf valid when nbf <= now + 30.
        let tok = mint(with(claims(), json!({"nbf": NOW + 30})));
        assert_eq!(reason(v.verify(&tok, NOW)), "ok");
        let tok = mint(with(claims(), json!({"nbf": NOW + 31})));
        assert_eq!(reason(v.verify(&tok, NOW)), "token not yet valid");
        let tok = mint(with(claims(), json!({"iat": NOW + 31})));
        assert_eq!(reason(v.verify(&tok, NOW)), "token not yet valid");
        let tok = mint(with(claims(), json!({"iat": NOW + 30})));
        assert_eq!(reason(v.verify(&tok, NOW)), "ok");
        // Floats, negatives, huge values, wrong types.
        let tok = mint(with(claims(), json!({"exp": (NOW + 100) as f64 + 0.5})));
        assert_eq!(v.verify(&tok, NOW).unwrap().exp, NOW + 100);
        let tok = mint(with(claims(), json!({"exp": -5})));
        assert_eq!(reason(v.verify(&tok, NOW)), "token expired");
        let tok = mint(with(claims(), json!({"exp": -1e300})));
        assert_eq!(reason(v.verify(&tok, NOW)), "token expired");
        let tok = mint(with(claims(), json!({"exp": 1e300})));
        assert_eq!(v.verify(&tok, NOW).unwrap().exp, u64::MAX);
        let tok = mint(with(claims(), json!({"exp": u64::MAX})));
        assert_eq!(reason(v.verify(&tok, NOW)), "ok");
        let tok = mint(with(claims(), json!({"nbf": -1e300, "iat": -3})));
        assert_eq!(reason(v.verify(&tok, NOW)), "ok");
        let tok = mint(with(claims(), json!({"exp": "1900000000"})));
        assert_eq!(reason(v.verify(&tok, NOW)), "invalid claim");
        let tok = mint(with(claims(), json!({"nbf": true})));
        assert_eq!(reason(v.verify(&tok, NOW)), "invalid claim");
        let tok = mint(with(claims(), json!({"exp": null})));
        assert_eq!(reason(v.verify(&tok, NOW)), "missing required claim");
        // Huge leeway does not overflow.
        let mut p = f.policy.clone();
        p.issuers[0].leeway_secs = u64::MAX;
        let v2 = Verifier::new(&p).unwrap();
        let tok = mint(with(claims(), json!({"exp": NOW, "nbf": u64::MAX})));
        assert_eq!(reason(v2.verify(&tok, NOW + 1000)), "ok");
    }

    #[test]
    fn subject_and_jti() {
        let f = fixture();
        let mint = |c: Value| f.ed.mint(json!({"kid": "ed-1"}), c);
        let v = &f.verifier;
        assert_eq!(
            reason(v.verify(&mint(with(claims(), json!({"sub": null}))), NOW)),
            "missing required claim"
        );
        assert_eq!(
            reason(v.verify(&mint(with(claims(), json!({"sub": ""}))), NOW)),
            "missing required claim"
        );
        assert_eq!(
            reason(v.verify(&mint(with(claims(), json!({"sub": 42}))), NOW)),
            "invalid claim"
        );
        assert_eq!(
            reason(v.verify(&mint(with(claims(), json!({"jti": 42}))), NOW)),
            "invalid claim"
        );
        let t = v
            .verify(&mint(with(claims(), json!({"jti": null}))), NOW)
            .unwrap();
        assert_eq!(t.jti, None);
    }

    #[test]
    fn max_lifetime() {
        let mut f = fixture();
        f.policy.issuers[0].max_token_lifetime_secs = Some(3600);
        let v = Verifier::new(&f.policy).unwrap();
        let mint = |c: Value| f.ed.mint(json!({"kid": "ed-1"}), c);
        let tok = mint(with(claims(), json!({"iat": NOW, "exp": NOW + 3600})));
        assert_eq!(reason(v.verify(&tok, NOW)), "ok");
        let tok = mint(with(claims(), json!({"iat": NOW, "exp": NOW + 3601})));
        assert_eq!(reason(v.verify(&tok, NOW)), "token lifetime too long");
        let tok = mint(with(
            claims(),
            json!({"iat": null, "nbf": NOW, "exp": NOW + 7200}),
        ));
        assert_eq!(reason(v.verify(&tok, NOW)), "token lifetime too long");
        let tok = mint(with(
            claims(),
            json!({"iat": null, "nbf": NOW, "exp": NOW + 60}),
        ));
        assert_eq!(reason(v.verify(&tok, NOW)), "ok");
        let tok = mint(with(claims(), json!({"iat": null, "exp": NOW + 60})));
        assert_eq!(reason(v.verify(&tok, NOW)), "missing required claim");
        let tok = mint(with(claims(), json!({"iat": -1e300, "exp": NOW + 60})));
        assert_eq!(reason(v.verify(&tok, NOW)), "token lifetime too long");
    }

    #[test]
    fn groups_claims() {
        let mut f = fixture();
        let mint = |c: Value| f.ed.mint(json!({"kid": "ed-1"}), c);
        let nested = with(
            claims(),
            json!({"groups": null, "realm_access": {"roles": ["admin", 3, "dev", null]}}),
        );
        let single = with(claims(), json!({"groups": "solo"}));
        let odd = with(claims(), json!({"groups": {"a": 1}}));
        let dotted = with(claims(), json!({"https://example.com/groups": ["ns"]}));
        let (nested, single, odd, dotted) = (mint(nested), mint(single), mint(odd), mint(dotted));
        assert_eq!(
            f.verifier.verify(&single, NOW).unwrap().groups,
            vec!["solo"]
        );
        assert!(f.verifier.verify(&odd, NOW).unwrap().groups.is_empty());
        f.policy.issuers[0].groups_claim = "realm_access.roles".to_string();
        let v = Verifier::new(&f.policy).unwrap();
        assert_eq!(v.verify(&nested, NOW).unwrap().groups, vec!["admin", "dev"]);
        f.policy.issuers[0].groups_claim = "https://example.com/groups".to_string();
        let v = Verifier::new(&f.policy).unwrap();
        assert_eq!(v.verify(&dotted, NOW).unwrap().groups, vec!["ns"]);
        f.policy.issuers[0].groups_claim = String::new();
        let v = Verifier::new(&f.policy).unwrap();
        assert!(v.verify(&dotted, NOW).unwrap().groups.is_empty());
    }

    #[test]
    fn header_checks() {
        let f = fixture();
        let v = &f.verifier;
        for typ in [
            "JWT",
            "jwt",
            "at+jwt",
            "application/at+jwt",
            "JOSE",
            "application/jwt",
        ] {
            let tok = f.ed.mint(json!({"kid": "ed-1", "typ": typ}), claims());
            assert_eq!(reason(v.verify(&tok, NOW)), "ok", "{typ}");
        }
        for typ in ["dpop+jwt", "logout+jwt", "JOSE+JSON", "", "application/"] {
            let tok = f.ed.mint(json!({"kid": "ed-1", "typ": typ}), claims());
            assert_eq!(
                reason(v.verify(&tok, NOW)),
                "unsupported token type",
                "{typ}"
            );
        }
        let tok = f.ed.mint(json!({"kid": "ed-1", "typ": 1}), claims());
        assert_eq!(reason(v.verify(&tok, NOW)), "malformed token");
        let tok = f.ed.mint(json!({"kid": "ed-1", "crit": ["exp"]}), claims());
        assert_eq!(reason(v.verify(&tok, NOW)), "unsupported critical header");
        let tok = f.ed.mint(json!({"kid": 5}), claims());
        assert_eq!(reason(v.verify(&tok, NOW)), "malformed token");
        // An embedded key is ignored: the attacker's key does not verify.
        let evil = Signer::ed();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64u(&[1u8; 32])});
        let tok = evil.mint(json!({"kid": "ed-1", "jwk": jwk}), claims());
        assert_eq!(reason(v.verify(&tok, NOW)), "bad signature");
    }

    #[test]
    fn garbage_never_panics() {
        let f = fixture();
        let v = &f.verifier;
        let good = f.ed.mint(json!({"kid": "ed-1"}), claims());
        let parts: Vec<&str> = good.split('.').collect();
        let arr = b64u(b"[1,2]");
        let num = b64u(b"42");
        let bad_utf8 = b64u(&[0xff, 0xfe, b'{']);
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        let deep = b64u(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).as_bytes());
        let cases: Vec<String> = vec![
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            "abc".into(),
            format!("{}.{}", parts[0], parts[1]),
            format!("{good}.{}", parts[2]),
            format!("{}..{}", parts[0], parts[2]),
            format!(".{}.{}", parts[1], parts[2]),
            format!("{}.{}.", parts[0], parts[1]),
            format!("{}.{}.!!!", parts[0], parts[1]),
            format!("{}.%%%.{}", parts[0], parts[2]),
            format!("{arr}.{}.{}", parts[1], parts[2]),
            format!("{}.{arr}.{}", parts[0], parts[2]),
            format!("{}.{num}.{}", parts[0], parts[2]),
            format!("{num}.{num}.{num}"),
            format!("{bad_utf8}.{bad_utf8}.{bad_utf8}"),
            format!("{deep}.{deep}.AA"),
            format!("{}.{deep}.AA", parts[0]),
            huge,
            "é.é.é".into(),
            " ".repeat(100),
            format!("Bearer {good}"),
            format!("{good} "),
        ];
        for c in &cases {
            let r = v.verify(c, NOW);
            assert!(r.is_err(), "{c:.80}");
        }
        assert_eq!(reason(v.verify("", NOW)), "missing bearer token");
        assert_eq!(
            reason(v.verify(&"a".repeat(MAX_TOKEN_LEN + 1), NOW)),
            "malformed token"
        );
        assert_eq!(reason(v.verify(&good, NOW)), "ok");
        // Debug output of errors stays short even for hostile alg values.
        let tok =
            f.ed.mint(json!({"alg": "x".repeat(5000) + "\n\u{1b}"}), claims());
        let e = v.verify(&tok, NOW).unwrap_err();
        assert!(e.to_string().len() < 64, "{e}");
    }

    #[test]
    fn verifier_refuses_corrupt_keys() {
        let ed = Signer::ed();
        let mut bad = ed.jwk(Some("k"));
        bad.key = crate::policy::KeyMaterial::Ed25519 { x: "AAAA".into() };
        assert!(Verifier::new(&policy(vec![issuer("corp", ISS, vec![bad])])).is_err());
        let bad = crate::policy::Jwk {
            kid: None,
            alg: None,
            key: crate::policy::KeyMaterial::Rsa {
                n: "AQAB".into(),
                e: "AQAB".into(),
            },
        };
        let e = Verifier::new(&policy(vec![issuer("corp", ISS, vec![bad])])).unwrap_err();
        assert!(e.contains("corp") && e.contains("#0"), "{e}");
    }

    #[test]
    fn revocation() {
        let f = fixture();
        let tok = f.ed.mint(json!({"kid": "ed-1"}), claims());
        let t = f.verifier.verify(&tok, NOW).unwrap();
        let mut p = f.policy.clone();
        assert_eq!(check_revoked(&p, &t), Ok(()));
        p.revoked.subjects = vec!["bob".into(), "other:alice".into()];
        assert_eq!(check_revoked(&p, &t), Ok(()));
        p.revoked.subjects.push("corp:alice".into());
        assert_eq!(check_revoked(&p, &t), Err(AuthError::SubjectRevoked));
        p.revoked.subjects = vec!["alice".into()];
        assert_eq!(
            check_revoked(&p, &t).unwrap_err().reason(),
            "subject revoked"
        );
        p.revoked.subjects = vec!["alic".into(), "corp:".into(), "corp".into()];
        assert_eq!(check_revoked(&p, &t), Ok(()));
        p.revoked.token_ids = vec!["t-1".into()];
        assert_eq!(check_revoked(&p, &t).unwrap_err().reason(), "token revoked");
        let mut t2 = t.clone();
        t2.jti = None;
        assert_eq!(check_revoked(&p, &t2), Ok(()));
        // Subjects containing ':' (GitHub Actions style) match exactly.
        let mut t3 = t.clone();
        t3.sub = "repo:org/app:ref:refs/heads/main".into();
        p.revoked.token_ids.clear();
        p.revoked.subjects = vec!["repo:org/app:ref:refs/heads/main".into()];
        assert_eq!(check_revoked(&p, &t3), Err(AuthError::SubjectRevoked));
    }

    /// Independent vectors: RFC 7515 appendices A.2 (RS256) and A.3
    /// (ES256). Their payload has no `sub`/`aud`, so reaching the claim
    /// checks proves the signature verified.
    #[test]
    fn rfc7515_vectors() {
        use crate::policy::{Jwk, KeyMaterial};
        let rs_key = Jwk {
            kid: None,
            alg: None,
            key: KeyMaterial::Rsa {
                n: "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ".into(),
                e: "AQAB".into(),
            },
        };
        let ec_key = Jwk {
            kid: None,
            alg: None,
            key: KeyMaterial::P256 {
                x: "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU".into(),
                y: "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0".into(),
            },
        };
        let p = policy(vec![issuer("joe", "joe", vec![rs_key, ec_key])]);
        let v = Verifier::new(&p).unwrap();
        let payload = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let rs = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw");
        let es = format!("eyJhbGciOiJFUzI1NiJ9.{payload}.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q");
        let now = 1_300_819_000;
        for tok in [&rs, &es] {
            assert_eq!(v.verify(tok, now), Err(AuthError::MissingClaim("aud")));
            assert_eq!(v.verify(tok, 1_300_819_380 + 30), Err(AuthError::Expired));
            let forged = tok.replacen("eyJpc3MiOiJqb2Ui", "eyJpc3MiOiJqb2Ug", 1);
            assert!(v.verify(&forged, now).is_err());
        }
        // A.5, the unsecured JWS.
        let none = format!("eyJhbGciOiJub25lIn0.{payload}.");
        assert_eq!(reason(v.verify(&none, now)), "unsupported algorithm");
    }

    #[test]
    fn reasons_are_short_and_lowercase() {
        let all = [
            AuthError::Missing,
            AuthError::Malformed,
            AuthError::Format("x"),
            AuthError::UnsupportedType,
            AuthError::CriticalHeader,
            AuthError::UnsupportedAlg("x".into()),
            AuthError::AlgNotAllowed("RS256", "x"),
            AuthError::UnknownKey("x"),
            AuthError::BadSignature,
            AuthError::UnknownIssuer,
            AuthError::Expired,
            AuthError::NotYetValid("x"),
            AuthError::Audience,
            AuthError::LifetimeTooLong(1, 2),
            AuthError::MissingClaim("x"),
            AuthError::InvalidClaim("x"),
            AuthError::SubjectRevoked,
            AuthError::TokenRevoked,
        ];
        for e in all {
            let r = e.reason();
            assert!(!r.is_empty() && r.len() < 40);
            assert_eq!(r, r.to_lowercase());
            assert!(r.chars().all(|c| c.is_ascii_lowercase() || c == ' '));
        }
    }

    #[test]
    fn duplicate_claims_and_members_are_refused() {
        let f = fixture();
        let header = r#"{"alg":"ES256","kid":"ec-1"}"#;
        let payload = format!(
            r#"{{"iss":"{ISS}","sub":"mallory","sub":"alice","aud":"pinhole","iat":{},"exp":{}}}"#,
            NOW - 10,
            NOW + 600
        );
        let input = format!("{}.{}", b64u(header.as_bytes()), b64u(payload.as_bytes()));
        let sig = f.ec1.sign(input.as_bytes());
        let token = format!("{input}.{}", b64u(&sig));
        assert!(matches!(
            f.verifier.verify(&token, NOW),
            Err(AuthError::Format(_))
        ));

        let header = r#"{"alg":"ES256","alg":"none","kid":"ec-1"}"#;
        let payload = f.ec1.mint(json!({}), claims());
        let body = payload.split('.').nth(1).unwrap();
        let input = format!("{}.{body}", b64u(header.as_bytes()));
        let token = format!("{input}.{}", b64u(&f.ec1.sign(input.as_bytes())));
        assert!(matches!(
            f.verifier.verify(&token, NOW),
            Err(AuthError::Format(_))
        ));
    }
}
