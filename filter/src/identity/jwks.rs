//! JWKS parsing and key preparation.
//!
//! [`parse_jwks`] runs in the policy compiler: it turns a JWKS document into
//! the policy's [`Jwk`]s and refuses, with a message that says what is wrong
//! and what to do, every key that could not verify a token. [`prepare`] runs
//! in the filter (through `Verifier::new`): it turns the compiled key material
//! into ready-to-use verifying keys. Both go through the same checks, so a key
//! the compiler accepted is a key the filter can use.
//!
//! Supported keys: `kty: RSA` (2048–4096 bit modulus) for RS256,
//! `kty: EC, crv: P-256` for ES256 and `kty: OKP, crv: Ed25519` for EdDSA.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::policy::{Alg, Jwk, KeyMaterial};

/// Smallest RSA modulus accepted, in bits.
pub const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (verification cost grows with the
/// square of the size, and runs on the request path).
pub const RSA_MAX_BITS: usize = 4096;

/// Why a JWKS document was refused. The messages are meant for a human
/// reading a compiler diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The text is not JSON.
    #[error("the JWKS is not valid JSON ({0}); expected a JWK Set such as {{\"keys\": [{{\"kty\": \"RSA\", ...}}]}}")]
    Json(String),
    /// The JSON is not a JWK Set (nor a single JWK).
    #[error("the JWKS must be a JSON object with a \"keys\" array (a JWK Set) or a single JWK object; {0}")]
    Shape(String),
    /// One key is unusable.
    #[error("JWKS key {key}: {problem}")]
    Key {
        /// `#index` and, when present, the key's `kid`.
        key: String,
        /// What is wrong and what to do about it.
        problem: String,
    },
    /// Two keys share a `kid`.
    #[error("JWKS keys #{first} and #{second} have the same kid {kid:?}; tokens pick their key by kid, so every kid must be unique: remove or rename one of them")]
    DuplicateKid {
        kid: String,
        first: usize,
        second: usize,
    },
    /// Two keys without `kid` for the same algorithm.
    #[error("JWKS keys #{first} and #{second} both have no kid and both verify {alg}; a token without kid could not choose between them: give every key a kid")]
    AmbiguousKidless {
        alg: &'static str,
        first: usize,
        second: usize,
    },
    /// Nothing left to verify with.
    #[error("the JWKS has no signature verification keys ({0}); add at least one RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA) public key with \"use\": \"sig\" or no \"use\"")]
    NoUsableKeys(String),
}

/// Parse a JWKS document (`{"keys": [...]}`, or one JWK object) into the
/// policy's normalised keys.
///
/// Keys whose `use` is not `sig`, whose `key_ops` lack `verify`, or whose
/// `alg` is a JWE key-management algorithm (`RSA-OAEP`, `ECDH-ES`, …) are
/// skipped silently: they are encryption keys published alongside. Every
/// other key must be a supported, well-formed public key or the whole
/// document is refused.
pub fn parse_jwks(text: &str) -> Result<Vec<Jwk>, JwksError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| JwksError::Json(e.to_string()))?;
    let obj = match doc {
        Value::Object(o) => o,
        other => return Err(JwksError::Shape(format!("found {}", json_kind(&other)))),
    };
    let single;
    let entries: &[Value] = match obj.get("keys") {
        Some(Value::Array(keys)) => keys,
        Some(other) => {
            return Err(JwksError::Shape(format!(
                "\"keys\" is {}, not an array",
                json_kind(other)
            )))
        }
        None if obj.contains_key("kty") => {
            single = [Value::Object(obj)];
            &single
        }
        None => {
            return Err(JwksError::Shape(
                "this object has neither \"keys\" nor \"kty\"".to_string(),
            ))
        }
    };
    if entries.is_empty() {
        return Err(JwksError::NoUsableKeys("\"keys\" is empty".to_string()));
    }

    let mut out: Vec<Jwk> = Vec::with_capacity(entries.len());
    // Index in the document of every key in `out`, for duplicate messages.
    let mut origin: Vec<usize> = Vec::with_capacity(entries.len());
    let mut skipped = 0usize;
    for (index, entry) in entries.iter().enumerate() {
        let Some(jwk) = entry.as_object() else {
            return Err(JwksError::Key {
                key: format!("#{index}"),
                problem: format!("is {}, not a JSON object", json_kind(entry)),
            });
        };
        let label = key_label(index, jwk);
        let key_err = |problem: String| JwksError::Key {
            key: label.clone(),
            problem,
        };
        match parse_one(jwk).map_err(key_err)? {
            None => skipped += 1,
            Some(key) => {
                if key.kid.is_none() {
                    // Tokens without kid use the one kid-less key for their
                    // alg (see `jwt`); two would make both unusable.
                    let algs = key_algs(&key);
                    let clash = out
                        .iter()
                        .zip(&origin)
                        .find(|(k, _)| k.kid.is_none() && key_algs(k) == algs);
                    if let Some((_, first)) = clash {
                        return Err(JwksError::AmbiguousKidless {
                            alg: natural_alg(&key.key).as_str(),
                            first: *first,
                            second: index,
                        });
                    }
                }
                if let Some(kid) = &key.kid {
                    let dup = out
                        .iter()
                        .zip(&origin)
                        .find(|(k, _)| k.kid.as_deref() == Some(kid.as_str()));
                    if let Some((_, first)) = dup {
                        return Err(JwksError::DuplicateKid {
                            kid: kid.clone(),
                            first: *first,
                            second: index,
                        });
                    }
                }
                out.push(key);
                origin.push(index);
            }
        }
    }
    if out.is_empty() {
        return Err(JwksError::NoUsableKeys(format!(
            "all {skipped} key(s) are marked for a use other than \"sig\""
        )));
    }
    Ok(out)
}

/// The algorithms a key can verify: its `alg` if set (and consistent with the
/// key type), otherwise the one algorithm its type supports.
pub fn key_algs(k: &Jwk) -> Vec<Alg> {
    let natural = natural_alg(&k.key);
    match k.alg {
        Some(a) if a == natural => vec![a],
        Some(_) => Vec::new(),
        None => vec![natural],
    }
}

/// The one algorithm Pinhole verifies with a key of this type.
pub fn natural_alg(m: &KeyMaterial) -> Alg {
    match m {
        KeyMaterial::Rsa { .. } => Alg::RS256,
        KeyMaterial::P256 { .. } => Alg::ES256,
        KeyMaterial::Ed25519 { .. } => Alg::EdDSA,
    }
}

/// A public key ready to verify signatures.
#[derive(Clone)]
pub(crate) enum PreparedKey {
    Rsa(rsa::pkcs1v15::VerifyingKey<sha2::Sha256>),
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_compact::PublicKey),
}

impl std::fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PreparedKey::Rsa(_) => "PreparedKey::Rsa",
            PreparedKey::P256(_) => "PreparedKey::P256",
            PreparedKey::Ed25519(_) => "PreparedKey::Ed25519",
        })
    }
}

/// Decode and validate key material into a verifying key. The error says
/// what is wrong, for a human.
pub(crate) fn prepare(m: &KeyMaterial) -> Result<PreparedKey, String> {
    match m {
        KeyMaterial::Rsa { n, e } => {
            let n_bytes = b64("n", n)?;
            let e_bytes = b64("e", e)?;
            let n = rsa::BigUint::from_bytes_be(&n_bytes);
            let e = rsa::BigUint::from_bytes_be(&e_bytes);
            let bits = n.bits();
            if bits < RSA_MIN_BITS {
                return Err(format!(
                    "the RSA modulus \"n\" is {bits} bits; Pinhole requires at least {RSA_MIN_BITS} bits: rotate to a 2048-bit or larger key"
                ));
            }
            if bits > RSA_MAX_BITS {
                return Err(format!(
                    "the RSA modulus \"n\" is {bits} bits; Pinhole accepts at most {RSA_MAX_BITS} bits (verification cost grows with key size)"
                ));
            }
            let key = rsa::RsaPublicKey::new_with_max_size(n, e, RSA_MAX_BITS).map_err(|err| {
                format!("is not a valid RSA public key ({err}): check \"n\" and \"e\" (\"e\" is usually \"AQAB\")")
            })?;
            Ok(PreparedKey::Rsa(rsa::pkcs1v15::VerifyingKey::new(key)))
        }
        KeyMaterial::P256 { x, y } => {
            let x = b64("x", x)?;
            let y = b64("y", y)?;
            let (Ok(xa), Ok(ya)) = (
                <[u8; 32]>::try_from(x.as_slice()),
                <[u8; 32]>::try_from(y.as_slice()),
            ) else {
                return Err(format!(
                    "P-256 coordinates must be 32 bytes each, got x = {} and y = {} bytes",
                    x.len(),
                    y.len()
                ));
            };
            let point = p256::EncodedPoint::from_affine_coordinates(
                &p256::FieldBytes::from(xa),
                &p256::FieldBytes::from(ya),
                false,
            );
            let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point).map_err(|_| {
                "\"x\" and \"y\" are not a point on the P-256 curve: the key is corrupt or for another curve".to_string()
            })?;
            Ok(PreparedKey::P256(key))
        }
        KeyMaterial::Ed25519 { x } => {
            let x = b64("x", x)?;
            let key = ed25519_compact::PublicKey::from_slice(&x).map_err(|_| {
                format!(
                    "an Ed25519 public key \"x\" must be 32 bytes, got {}",
                    x.len()
                )
            })?;
            key.validate().map_err(|_| {
                "\"x\" is not a valid Ed25519 public key (not a canonical curve point, or a weak small-order point)".to_string()
            })?;
            Ok(PreparedKey::Ed25519(key))
        }
    }
}

/// Strict base64url (no padding) decoding of a key member.
fn b64(member: &str, s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| format!("\"{member}\" is not valid base64url ({e})"))
}

/// Parse one JWK object. `Ok(None)`: not a signature key, skip it.
fn parse_one(jwk: &Map<String, Value>) -> Result<Option<Jwk>, String> {
    // Not for signatures: skip (JWK Sets often carry encryption keys too).
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(Value::String(_)) => return Ok(None),
        Some(other) => {
            return Err(format!(
                "\"use\" must be a string, found {}",
                json_kind(other)
            ))
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let Some(ops) = ops.as_array() else {
            return Err(format!(
                "\"key_ops\" must be an array of strings, found {}",
                json_kind(ops)
            ));
        };
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return Ok(None);
        }
    }

    // A key-management (JWE) algorithm marks an encryption key even without
    // `use`: skip it too.
    if let Some(Value::String(a)) = jwk.get("alg") {
        let encryption = ["RSA1_5", "RSA-OAEP", "dir", "A128KW", "A192KW", "A256KW"]
            .contains(&a.as_str())
            || a.starts_with("RSA-OAEP-")
            || a.starts_with("ECDH-ES")
            || a.starts_with("PBES2-")
            || a.ends_with("GCMKW");
        if encryption {
            return Ok(None);
        }
    }

    // A private key here means the wrong file was given; refuse rather than
    // quietly use its public half.
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        if jwk.contains_key(private) {
            return Err(format!(
                "contains the private (or symmetric) key member \"{private}\"; embed only public keys: publish the public JWKS, never the private one"
            ));
        }
    }

    let kty = str_member(jwk, "kty")?.ok_or_else(|| {
        "has no \"kty\" (key type); expected \"RSA\", \"EC\" or \"OKP\"".to_string()
    })?;
    let kid = str_member(jwk, "kid")?.map(str::to_string);
    if kid.as_deref() == Some("") {
        return Err("has an empty \"kid\"; give it a name or remove the member".to_string());
    }
    let alg = match str_member(jwk, "alg")? {
        None => None,
        Some(a) => Some(Alg::parse(a).ok_or_else(|| {
            format!("\"alg\": \"{a}\" is not supported; Pinhole verifies RS256, ES256 and EdDSA")
        })?),
    };

    let key = match kty {
        "RSA" => KeyMaterial::Rsa {
            n: required_b64(jwk, "n")?,
            e: required_b64(jwk, "e")?,
        },
        "EC" => match str_member(jwk, "crv")? {
            Some("P-256") => KeyMaterial::P256 {
                x: required_b64(jwk, "x")?,
                y: required_b64(jwk, "y")?,
            },
            Some(crv) => {
                return Err(format!(
                    "EC curve \"{crv}\" is not supported; Pinhole verifies ES256 with P-256 keys only"
                ))
            }
            None => return Err("EC key has no \"crv\"; expected \"P-256\"".to_string()),
        },
        "OKP" => match str_member(jwk, "crv")? {
            Some("Ed25519") => KeyMaterial::Ed25519 {
                x: required_b64(jwk, "x")?,
            },
            Some(crv) => {
                return Err(format!(
                    "OKP curve \"{crv}\" is not supported; Pinhole verifies EdDSA with Ed25519 keys only"
                ))
            }
            None => return Err("OKP key has no \"crv\"; expected \"Ed25519\"".to_string()),
        },
        "oct" => {
            return Err(
                "symmetric (\"kty\": \"oct\", HMAC) keys are not supported; use an asymmetric key (RS256, ES256 or EdDSA)"
                    .to_string(),
            )
        }
        other => {
            return Err(format!(
                "key type \"kty\": \"{other}\" is not supported; expected \"RSA\", \"EC\" (P-256) or \"OKP\" (Ed25519)"
            ))
        }
    };

    let natural = natural_alg(&key);
    if let Some(a) = alg {
        if a != natural {
            return Err(format!(
                "\"alg\": \"{}\" does not fit a {kty} key, which verifies {}; fix \"alg\" or remove it",
                a.as_str(),
                natural.as_str()
            ));
        }
    }
    prepare(&key)?;
    Ok(Some(Jwk { kid, alg, key }))
}

fn str_member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!(
            "\"{name}\" must be a string, found {}",
            json_kind(other)
        )),
    }
}

/// A required base64url member, normalised: trailing `=` padding (which some
/// publishers add) is dropped, then the value must decode strictly.
fn required_b64(jwk: &Map<String, Value>, name: &str) -> Result<String, String> {
    let raw = str_member(jwk, name)?.ok_or_else(|| format!("is missing the \"{name}\" member"))?;
    let trimmed = raw.trim_end_matches('=');
    if trimmed.is_empty() {
        return Err(format!("\"{name}\" is empty"));
    }
    b64(name, trimmed)?;
    Ok(trimmed.to_string())
}

fn key_label(index: usize, jwk: &Map<String, Value>) -> String {
    match jwk.get("kid").and_then(Value::as_str) {
        Some(kid) => format!("#{index} (kid {kid:?})"),
        None => format!("#{index}"),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::super::jwt::testkit::{b64u, rsa_key};
    use super::*;
    use rsa::traits::PublicKeyParts;

    fn rsa_jwk(kid: &str) -> serde_json::Value {
        let k = rsa_key().to_public_key();
        serde_json::json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64u(&k.n().to_bytes_be()), "e": b64u(&k.e().to_bytes_be()),
        })
    }

    fn ec_jwk(kid: &str) -> serde_json::Value {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let pt = sk.verifying_key().to_encoded_point(false);
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": b64u(pt.x().unwrap()), "y": b64u(pt.y().unwrap()),
        })
    }

    fn ed_jwk(kid: &str) -> serde_json::Value {
        let kp = ed25519_compact::KeyPair::generate();
        serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64u(&kp.pk[..]) })
    }

    fn set(keys: Vec<serde_json::Value>) -> String {
        serde_json::json!({ "keys": keys }).to_string()
    }

    fn err_of(text: &str) -> String {
        parse_jwks(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_all_three_kinds() {
        let keys = parse_jwks(&set(vec![rsa_jwk("r"), ec_jwk("e"), ed_jwk("o")])).unwrap();
        assert_eq!(keys.len(), 3);
        assert!(matches!(keys[0].key, KeyMaterial::Rsa { .. }));
        assert_eq!(keys[0].alg, Some(Alg::RS256));
        assert_eq!(keys[0].kid.as_deref(), Some("r"));
        assert!(matches!(keys[1].key, KeyMaterial::P256 { .. }));
        assert_eq!(keys[1].alg, None);
        assert!(matches!(keys[2].key, KeyMaterial::Ed25519 { .. }));
        assert_eq!(key_algs(&keys[0]), vec![Alg::RS256]);
        assert_eq!(key_algs(&keys[1]), vec![Alg::ES256]);
        assert_eq!(key_algs(&keys[2]), vec![Alg::EdDSA]);
        for k in &keys {
            prepare(&k.key).unwrap();
        }
    }

    /// A document shaped like RFC 7517 A.1 / what IdPs publish: an
    /// encryption key beside a signing key with extra members.
    #[test]
    fn published_document() {
        let doc = r#"{"keys": [
          {"kty":"EC","crv":"P-256","use":"enc","kid":"1",
           "x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
           "y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"},
          {"kty":"RSA","alg":"RS256","kid":"2011-04-29","use":"sig",
           "x5t":"abc","x5c":["MIIB"],"key_ops":["verify"],
           "n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
           "e":"AQAB"}
        ]}"#;
        let keys = parse_jwks(doc).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("2011-04-29"));
        assert_eq!(key_algs(&keys[0]), vec![Alg::RS256]);
    }

    #[test]
    fn single_jwk_object() {
        let keys = parse_jwks(&ed_jwk("only").to_string()).unwrap();
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn skips_non_signature_keys() {
        let mut enc = rsa_jwk("enc");
        enc["use"] = "enc".into();
        let mut wrap = ec_jwk("wrap");
        wrap["key_ops"] = serde_json::json!(["wrapKey"]);
        let mut oaep = rsa_jwk("oaep");
        oaep.as_object_mut().unwrap().remove("use");
        oaep["alg"] = "RSA-OAEP-256".into();
        let mut ecdh = ec_jwk("ecdh");
        ecdh["alg"] = "ECDH-ES+A128KW".into();
        let keys = parse_jwks(&set(vec![enc.clone(), wrap, oaep, ecdh, ed_jwk("sig")])).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("sig"));
        let msg = err_of(&set(vec![enc]));
        assert!(msg.contains("no signature verification keys"), "{msg}");
    }

    #[test]
    fn padding_is_normalised() {
        let mut k = ed_jwk("p");
        let x = k["x"].as_str().unwrap().to_string();
        k["x"] = format!("{x}=").into();
        let keys = parse_jwks(&set(vec![k])).unwrap();
        assert_eq!(keys[0].key, KeyMaterial::Ed25519 { x });
    }

    #[test]
    fn refuses_bad_documents() {
        assert!(err_of("").contains("not valid JSON"));
        assert!(err_of("[1]").contains("JSON object"));
        assert!(err_of(r#"{"keys": 3}"#).contains("not an array"));
        assert!(err_of(r#"{"foo": 1}"#).contains("neither"));
        assert!(err_of(r#"{"keys": []}"#).contains("empty"));
        assert!(err_of(r#"{"keys": [3]}"#).contains("#0"));
    }

    #[test]
    fn refuses_bad_keys_naming_them() {
        let small = {
            let k = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
            let p = k.to_public_key();
            serde_json::json!({"kty":"RSA","kid":"small","n":b64u(&p.n().to_bytes_be()),"e":"AQAB"})
        };
        let msg = err_of(&set(vec![ed_jwk("a"), small]));
        assert!(
            msg.contains("#1") && msg.contains("\"small\"") && msg.contains("1024 bits"),
            "{msg}"
        );

        let mut short = ec_jwk("short");
        short["x"] = b64u(&[1u8; 31]).into();
        assert!(err_of(&set(vec![short])).contains("32 bytes"));

        let mut off_curve = ec_jwk("off");
        off_curve["y"] = b64u(&[7u8; 32]).into();
        assert!(err_of(&set(vec![off_curve])).contains("not a point"));

        let mut ed_bad = ed_jwk("edbad");
        ed_bad["x"] = b64u(&[0u8; 16]).into();
        assert!(err_of(&set(vec![ed_bad])).contains("32 bytes"));

        // A small-order Ed25519 point (the identity) is refused.
        let mut ed_weak = ed_jwk("weak");
        let mut ident = [0u8; 32];
        ident[0] = 1;
        ed_weak["x"] = b64u(&ident).into();
        assert!(err_of(&set(vec![ed_weak])).contains("not a valid Ed25519"));

        let mut bad_b64 = ed_jwk("b64");
        bad_b64["x"] = "not*base64".into();
        assert!(err_of(&set(vec![bad_b64])).contains("base64url"));

        let mut wrong_alg = ec_jwk("wa");
        wrong_alg["alg"] = "RS256".into();
        assert!(err_of(&set(vec![wrong_alg])).contains("does not fit"));

        let mut unsupported_alg = rsa_jwk("ps");
        unsupported_alg["alg"] = "PS256".into();
        assert!(err_of(&set(vec![unsupported_alg])).contains("PS256"));

        let p384 = serde_json::json!({"kty":"EC","crv":"P-384","x":"AA","y":"AA"});
        assert!(err_of(&set(vec![p384])).contains("P-384"));

        let oct = serde_json::json!({"kty":"oct","k":"c2VjcmV0"});
        assert!(err_of(&set(vec![oct])).contains("\"k\""));

        let mut private = ed_jwk("priv");
        private["d"] = b64u(&[1u8; 32]).into();
        assert!(err_of(&set(vec![private])).contains("private"));

        let no_kty = serde_json::json!({"kid":"x","n":"AQAB"});
        assert!(err_of(&set(vec![no_kty])).contains("kty"));

        let missing_n = serde_json::json!({"kty":"RSA","e":"AQAB"});
        assert!(err_of(&set(vec![missing_n])).contains("\"n\""));

        let mut even_e = rsa_jwk("even");
        even_e["e"] = b64u(&[2]).into();
        assert!(err_of(&set(vec![even_e])).contains("not a valid RSA public key"));
    }

    #[test]
    fn duplicate_kid() {
        let msg = err_of(&set(vec![ed_jwk("same"), ec_jwk("other"), ed_jwk("same")]));
        assert!(
            msg.contains("#0") && msg.contains("#2") && msg.contains("same"),
            "{msg}"
        );
    }

    #[test]
    fn ambiguous_kidless_keys() {
        let strip = |mut v: serde_json::Value| {
            v.as_object_mut().unwrap().remove("kid");
            v
        };
        // One kid-less key per algorithm is fine.
        let keys = parse_jwks(&set(vec![
            strip(ec_jwk("a")),
            strip(ed_jwk("b")),
            ec_jwk("c"),
        ]));
        assert_eq!(keys.unwrap().len(), 3);
        let msg = err_of(&set(vec![
            strip(ec_jwk("a")),
            ed_jwk("b"),
            strip(ec_jwk("c")),
        ]));
        assert!(
            msg.contains("#0") && msg.contains("#2") && msg.contains("ES256"),
            "{msg}"
        );
    }

    #[test]
    fn key_algs_narrowing() {
        let k = Jwk {
            kid: None,
            alg: Some(Alg::RS256),
            key: KeyMaterial::Ed25519 { x: String::new() },
        };
        assert!(key_algs(&k).is_empty());
    }
}
