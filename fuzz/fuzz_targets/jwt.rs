//! JWT verification (`Verifier::verify`) against a fixed policy
//! (`pinhole_fuzz_support::jwt`: an issuer with fixed Ed25519 and P-256
//! keys, and examples/mcp-tools' corp-sso JWKS).
//!
//! Input: `mode:u8 ...`, by `mode % 3`:
//! - 0, raw: the rest (lossy UTF-8) is a token, and an `Authorization`
//!   header value. Nobody can sign for it: it must be refused, at any clock.
//! - 1, signed: `hlen:u8 header[hlen] payload`, signed with the key picked
//!   by mode bit 2. If it verifies, the verified token must agree with a
//!   lenient reading of the payload (issuer, subject, expiry with leeway,
//!   audience, maximum lifetime); the same token with its signature altered
//!   must be refused.
//! - 2, spliced: `at:u16 del:u8 insert` edits a valid token; anything but
//!   the original must be refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinhole_filter::engine::bearer_token;
use pinhole_filter::identity::Verifier;
use pinhole_fuzz_support::jwt::{self, Key};
use pinhole_fuzz_support::Bytes;
use serde_json::{Map, Value};

thread_local! {
    static VERIFIER: Verifier = jwt::must_verifier().1;
}

/// A NumericDate as the verifier reads it (saturating, fraction dropped).
fn date(v: &Value) -> Option<u64> {
    if let Some(u) = v.as_u64() {
        return Some(u);
    }
    if v.as_i64().is_some() {
        return Some(0);
    }
    let f = v.as_f64()?;
    Some(if f <= 0.0 {
        0
    } else if f >= u64::MAX as f64 {
        u64::MAX
    } else {
        f as u64
    })
}

fn check_signed(v: &Verifier, key: Key, header: &[u8], payload: &[u8]) {
    let token = jwt::mint(key, header, payload);
    let Ok(t) = v.verify(&token, jwt::NOW) else {
        return;
    };
    let h: Map<String, Value> =
        serde_json::from_slice(header).expect("verified header is not a JSON object");
    assert_eq!(
        h.get("alg").and_then(Value::as_str),
        Some(key.alg()),
        "verified with the wrong alg"
    );
    let claims: Map<String, Value> =
        serde_json::from_slice(payload).expect("verified payload is not a JSON object");
    assert_eq!(t.claims, claims, "verified claims differ from the payload");
    assert_eq!(claims.get("iss").and_then(Value::as_str), Some(jwt::ISS));
    assert_eq!(t.iss, jwt::ISS);
    assert_eq!(t.issuer_name, "fuzz");
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        !sub.is_empty() && t.sub == sub,
        "subject {:?} vs {sub:?}",
        t.sub
    );
    let exp = claims
        .get("exp")
        .and_then(date)
        .expect("verified without exp");
    assert_eq!(t.exp, exp);
    assert!(
        jwt::NOW < exp.saturating_add(jwt::LEEWAY),
        "expired token verified"
    );
    for k in ["nbf", "iat"] {
        if let Some(d) = claims.get(k).and_then(date) {
            assert!(d <= jwt::NOW + jwt::LEEWAY, "{k} in the future verified");
        }
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == jwt::AUDIENCE || a == "mcp",
        Some(Value::Array(a)) => a
            .iter()
            .any(|x| x.as_str().is_some_and(|s| s == jwt::AUDIENCE || s == "mcp")),
        _ => false,
    };
    assert!(aud_ok, "audience not accepted but verified");
    let start = claims
        .get("iat")
        .and_then(date)
        .or_else(|| claims.get("nbf").and_then(date))
        .expect("verified without iat/nbf under a maximum lifetime");
    assert!(
        exp.saturating_sub(start) <= jwt::MAX_LIFETIME,
        "lifetime too long verified"
    );

    // Any other signature is refused.
    let (signed, sig) = token.rsplit_once('.').expect("three parts");
    let mut bad = sig.as_bytes().to_vec();
    if let Some(c) = bad.first_mut() {
        *c = if *c == b'A' { b'B' } else { b'A' };
    }
    let forged = format!("{signed}.{}", String::from_utf8_lossy(&bad));
    assert!(
        v.verify(&forged, jwt::NOW).is_err(),
        "an altered signature verified"
    );
    assert!(
        v.verify(&format!("{signed}."), jwt::NOW).is_err(),
        "an empty signature verified"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let mode = b.u8();
    let key = if mode & 4 == 0 { Key::Ed } else { Key::Ec };
    VERIFIER.with(|v| match mode % 3 {
        0 => {
            let s = String::from_utf8_lossy(b.rest());
            for now in [jwt::NOW, 0, u64::MAX] {
                assert!(v.verify(&s, now).is_err(), "an unsigned token verified");
            }
            if let Ok(tok) = bearer_token(Some(&s)) {
                assert!(
                    v.verify(tok, jwt::NOW).is_err(),
                    "an unsigned bearer token verified"
                );
            }
        }
        1 => {
            let hlen = usize::from(b.u8());
            let header = b.take(hlen).to_vec();
            check_signed(v, key, &header, b.rest());
        }
        _ => {
            let valid = jwt::valid_token(key);
            let at = usize::from(b.u16()) % (valid.len() + 1);
            let del = usize::from(b.u8() % 8);
            let insert = String::from_utf8_lossy(b.rest());
            let end = (at + del).min(valid.len());
            let token = format!("{}{}{}", &valid[..at], insert, &valid[end..]);
            let r = v.verify(&token, jwt::NOW);
            if token == valid {
                assert!(r.is_ok(), "the valid token was refused: {r:?}");
            } else {
                assert!(r.is_err(), "an edited token verified: {token}");
            }
        }
    });
});
