//! The policy blob: the versioned, integrity-checked container the compiler
//! writes and the filter loads.
//!
//! ```text
//! offset size  field
//! 0      8     magic  "PINHOLE\0"
//! 8      2     format version, big endian (currently 1)
//! 10     2     flags, big endian (see below)
//! 12     4     payload length N, big endian
//! 16     32    SHA-256 of the payload
//! 48     N     payload: UTF-8 JSON {"meta": Meta, "policy": Policy}
//! 48+N   8     signed blobs only (flag bit 1): key id, the first 8 bytes
//!              of SHA-256 of the signer's 32-byte Ed25519 public key
//! 56+N   64    signed blobs only: Ed25519 signature
//! ```
//!
//! The payload is canonical: struct fields in declaration order, lists in
//! source order, JSON objects (argument values) with sorted keys. The same
//! source therefore always yields the same bytes. `Meta` records the SHA-256
//! of the policy source and of every embedded JWKS file; it records a compile
//! time only when `SOURCE_DATE_EPOCH` is set, so builds stay reproducible.
//!
//! Flags mark features a filter must understand to run the policy safely;
//! a filter refuses a blob with a flag it does not know (fail closed)
//! rather than silently ignoring part of the policy:
//!
//! - [`FLAG_MASKING`] (bit 0): the policy has masking rules. A filter
//!   that predates masking would otherwise drop them (its model ignores the
//!   unknown `masking` key) and return clear values.
//! - [`FLAG_SIGNED`] (bit 1): a 72-byte signature trailer follows the
//!   payload. The signature is Ed25519 over [`SIGNATURE_CONTEXT`] ‖ the
//!   48-byte header (flags included, and the payload's SHA-256) ‖ the key id,
//!   so it covers the whole blob. Signing changes neither the payload nor
//!   the digest. A filter configured with a publisher key
//!   (`publisher_key`) loads only blobs that verify with it ([`verify`]);
//!   without one, a signed blob loads like an unsigned one (still decoded
//!   strictly: the trailer must be exactly 72 bytes).
//!
//! Other bits are reserved. An unsigned blob has no trailer: its bytes are
//! exactly what they were before signatures existed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::{Matcher, Policy, Protocol};

pub const MAGIC: &[u8; 8] = b"PINHOLE\0";
pub const FORMAT_VERSION: u16 = 1;
/// Header flag: the policy carries masking rules.
pub const FLAG_MASKING: u16 = 0x0001;
/// Header flag: an Ed25519 signature trailer follows the payload.
pub const FLAG_SIGNED: u16 = 0x0002;
/// Every flag this filter understands.
pub const KNOWN_FLAGS: u16 = FLAG_MASKING | FLAG_SIGNED;
const HEADER_LEN: usize = 48;
/// Key id: the first bytes of SHA-256 of the signer's public key.
pub const KEY_ID_LEN: usize = 8;
/// An Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// The trailer of a signed blob: key id, then signature.
pub const TRAILER_LEN: usize = KEY_ID_LEN + SIGNATURE_LEN;
/// What a blob signature signs starts with this (domain separation: a
/// blob signature cannot be mistaken for a signature over anything else).
pub const SIGNATURE_CONTEXT: &[u8] = b"pinhole policy blob signature v1\0";
/// Refuse absurd payloads before allocating.
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// Provenance recorded in the blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Meta {
    /// `pinhole <version>` that compiled it.
    pub compiler: String,
    /// Hex SHA-256 over the policy source and the JWKS files it embeds.
    pub source_sha256: String,
    /// `SOURCE_DATE_EPOCH` at compile time, when set.
    #[serde(default)]
    pub source_date_epoch: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    meta: Meta,
    policy: Policy,
}

/// A decoded, verified blob.
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    pub meta: Meta,
    pub policy: Policy,
    /// Hex SHA-256 of the payload: the policy's identity in logs.
    pub digest: String,
    pub format_version: u16,
    /// The signature trailer of a signed blob, not verified by [`decode`]
    /// (see [`verify`]).
    pub signature: Option<BlobSignature>,
}

/// The signature trailer of a signed blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobSignature {
    /// The first 8 bytes of SHA-256 of the signer's public key.
    pub key_id: [u8; KEY_ID_LEN],
    pub signature: [u8; SIGNATURE_LEN],
}

impl BlobSignature {
    /// The key id as 16 hex digits (as `pinhole inspect` and the filter's
    /// log show it).
    pub fn key_id_hex(&self) -> String {
        hex(&self.key_id)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobError {
    #[error("policy blob is empty")]
    Empty,
    #[error("policy blob is truncated: {0} bytes, the header alone needs 48")]
    TooShort(usize),
    #[error("not a pinhole policy blob (bad magic); compile one with `pinhole compile`")]
    BadMagic,
    #[error("policy blob format version {found} is not supported by this filter (supports {supported}); recompile with a matching `pinhole`")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("policy blob sets unknown flags {0:#06x}; this filter cannot honour them")]
    UnknownFlags(u16),
    #[error("policy blob payload length is {declared} but {actual} bytes follow the header (truncated or padded)")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("policy blob payload of {0} bytes is over the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    #[error("policy blob digest mismatch: the payload was altered or corrupted")]
    DigestMismatch,
    #[error("policy blob payload is not a valid policy: {0}")]
    Payload(String),
    #[error("policy blob is inconsistent: {0}")]
    Invalid(String),
    #[error("policy blob is already signed (key id {0}); sign the unsigned blob instead")]
    AlreadySigned(String),
    #[error("policy blob is not signed, but a signature by publisher key {expected} is required (`publisher_key`); sign it with `pinhole compile --sign-key`")]
    Unsigned { expected: String },
    #[error("policy blob is signed by key {found}, but a signature by publisher key {expected} is required (`publisher_key`)")]
    WrongKey { found: String, expected: String },
    #[error("policy blob signature by key {0} does not verify: the blob was altered after it was signed, or the signature is forged")]
    BadSignature(String),
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            s.push(char::from(if nibble < 10 {
                b'0' + nibble
            } else {
                b'a' + nibble - 10
            }));
        }
    }
    s
}

/// Encode a policy into a blob. Fails only if the policy cannot be
/// serialised or is inconsistent.
pub fn encode(policy: &Policy, meta: &Meta) -> Result<Vec<u8>, BlobError> {
    validate(policy)?;
    let payload = serde_json::to_vec(&PayloadRef { meta, policy })
        .map_err(|e| BlobError::Payload(e.to_string()))?;
    if payload.len() > MAX_PAYLOAD {
        return Err(BlobError::TooLarge(payload.len()));
    }
    let len = u32::try_from(payload.len()).map_err(|_| BlobError::TooLarge(payload.len()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&flags_for(policy).to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The header flags a policy needs.
pub fn flags_for(policy: &Policy) -> u16 {
    if policy.masking.is_empty() {
        0
    } else {
        FLAG_MASKING
    }
}

#[derive(Serialize)]
struct PayloadRef<'a> {
    meta: &'a Meta,
    policy: &'a Policy,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_be_bytes(a))
}

/// A blob's framing, checked: header, lengths, digest, trailer.
struct Frame<'a> {
    version: u16,
    flags: u16,
    /// The 48-byte header.
    header: &'a [u8],
    payload: &'a [u8],
    digest: String,
    signature: Option<BlobSignature>,
}

/// Check everything but the payload's content. Never panics.
fn frame(bytes: &[u8]) -> Result<Frame<'_>, BlobError> {
    if bytes.is_empty() {
        return Err(BlobError::Empty);
    }
    if bytes.len() < HEADER_LEN {
        // A short input that is not even a prefix of the magic is "not a blob".
        let n = bytes.len().min(MAGIC.len());
        if bytes.get(..n) != MAGIC.get(..n) {
            return Err(BlobError::BadMagic);
        }
        return Err(BlobError::TooShort(bytes.len()));
    }
    if bytes.get(..8) != Some(&MAGIC[..]) {
        return Err(BlobError::BadMagic);
    }
    let version = be16(bytes, 8).ok_or(BlobError::TooShort(bytes.len()))?;
    if version != FORMAT_VERSION {
        return Err(BlobError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let flags = be16(bytes, 10).ok_or(BlobError::TooShort(bytes.len()))?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(BlobError::UnknownFlags(flags & !KNOWN_FLAGS));
    }
    let declared = be32(bytes, 12).ok_or(BlobError::TooShort(bytes.len()))? as usize;
    if declared > MAX_PAYLOAD {
        return Err(BlobError::TooLarge(declared));
    }
    let header = bytes.get(..HEADER_LEN).unwrap_or_default();
    let rest = bytes.get(HEADER_LEN..).unwrap_or_default();
    // A signed blob ends with the trailer; an unsigned one with the payload.
    let trailer_len = if flags & FLAG_SIGNED != 0 {
        TRAILER_LEN
    } else {
        0
    };
    let (payload, trailer) = match rest.len().checked_sub(trailer_len) {
        Some(n) if n == declared => rest.split_at_checked(n).unwrap_or_default(),
        other => {
            return Err(BlobError::LengthMismatch {
                declared,
                actual: other.unwrap_or(0),
            })
        }
    };
    let digest = Sha256::digest(payload);
    if bytes.get(16..48) != Some(AsRef::<[u8]>::as_ref(&digest)) {
        return Err(BlobError::DigestMismatch);
    }
    let signature = if trailer.is_empty() {
        None
    } else {
        let (id, sig) = trailer.split_at_checked(KEY_ID_LEN).unwrap_or_default();
        Some(BlobSignature {
            key_id: id
                .try_into()
                .map_err(|_| BlobError::TooShort(bytes.len()))?,
            signature: sig
                .try_into()
                .map_err(|_| BlobError::TooShort(bytes.len()))?,
        })
    };
    Ok(Frame {
        version,
        flags,
        header,
        payload,
        digest: hex(&digest),
        signature,
    })
}

/// Decode and verify a blob (integrity, not authenticity: a signature is
/// decoded but checked only by [`verify`]). Never panics, whatever the input.
pub fn decode(bytes: &[u8]) -> Result<Blob, BlobError> {
    let f = frame(bytes)?;
    let p: Payload =
        serde_json::from_slice(f.payload).map_err(|e| BlobError::Payload(e.to_string()))?;
    validate(&p.policy)?;
    let flags = f.flags & !FLAG_SIGNED;
    if flags != flags_for(&p.policy) {
        return Err(BlobError::Invalid(format!(
            "header flags {flags:#06x} do not match the policy (expected {:#06x})",
            flags_for(&p.policy)
        )));
    }
    Ok(Blob {
        meta: p.meta,
        policy: p.policy,
        digest: f.digest,
        format_version: f.version,
        signature: f.signature,
    })
}

/// The key id of an Ed25519 public key: the first 8 bytes of its SHA-256.
pub fn key_id(pk: &ed25519_compact::PublicKey) -> [u8; KEY_ID_LEN] {
    let d = Sha256::digest(pk.as_slice());
    let mut id = [0u8; KEY_ID_LEN];
    for (o, b) in id.iter_mut().zip(d.iter()) {
        *o = *b;
    }
    id
}

/// What a signature signs: context, header (with [`FLAG_SIGNED`] set), key id.
fn signed_message(header: &[u8], key_id: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + HEADER_LEN + KEY_ID_LEN);
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.extend_from_slice(header);
    m.extend_from_slice(key_id);
    m
}

/// Sign an unsigned blob: set [`FLAG_SIGNED`] and append the key id and the
/// Ed25519 signature. Deterministic: the same blob and key always give the
/// same bytes.
pub fn sign(bytes: &[u8], key: &ed25519_compact::KeyPair) -> Result<Vec<u8>, BlobError> {
    let f = frame(bytes)?;
    if let Some(s) = f.signature {
        return Err(BlobError::AlreadySigned(s.key_id_hex()));
    }
    let mut out = bytes.to_vec();
    let flags = (f.flags | FLAG_SIGNED).to_be_bytes();
    if let Some(slot) = out.get_mut(10..12) {
        slot.copy_from_slice(&flags);
    }
    let id = key_id(&key.pk);
    let sig = key.sk.sign(
        signed_message(out.get(..HEADER_LEN).unwrap_or_default(), &id),
        None,
    );
    out.extend_from_slice(&id);
    out.extend_from_slice(sig.as_ref());
    Ok(out)
}

/// Check that a blob is signed by `publisher`: framing and digest as
/// [`decode`] checks them, then the key id and the signature. Returns the
/// verified signature.
pub fn verify(
    bytes: &[u8],
    publisher: &ed25519_compact::PublicKey,
) -> Result<BlobSignature, BlobError> {
    let f = frame(bytes)?;
    let expected = key_id(publisher);
    let Some(s) = f.signature else {
        return Err(BlobError::Unsigned {
            expected: hex(&expected),
        });
    };
    if s.key_id != expected {
        return Err(BlobError::WrongKey {
            found: s.key_id_hex(),
            expected: hex(&expected),
        });
    }
    publisher
        .verify(
            signed_message(f.header, &s.key_id),
            &ed25519_compact::Signature::new(s.signature),
        )
        .map_err(|_| BlobError::BadSignature(s.key_id_hex()))?;
    Ok(s)
}

/// An Ed25519 public key from its base64 text (standard alphabet, 32
/// bytes: `publisher_key`, the `.pub` file of `pinhole keygen`). The error
/// is the end of a sentence ("… is not …").
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

pub fn public_key_from_base64(text: &str) -> Result<ed25519_compact::PublicKey, String> {
    use base64::Engine as _;
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(text.trim().as_bytes())
        .map_err(|e| format!("is not valid base64 ({e}); it must be the base64 of a 32-byte Ed25519 public key, as `pinhole keygen` writes it to KEY.pub"))?;
    // The DER SubjectPublicKeyInfo form (`MCowBQYDK2VwAyEA…`, the body of
    // `openssl pkey -pubout`) is the raw key behind a fixed 12-byte prefix.
    if raw.len() == 44 && raw.starts_with(&ED25519_SPKI_PREFIX) {
        raw.drain(..ED25519_SPKI_PREFIX.len());
    }
    let pk = ed25519_compact::PublicKey::from_slice(&raw).map_err(|_| {
        format!(
            "is {} bytes long; an Ed25519 public key is 32 bytes (base64, as `pinhole keygen` writes it to KEY.pub)",
            raw.len()
        )
    })?;
    pk.validate()
        .map_err(|e| format!("is not a usable Ed25519 public key ({e})"))?;
    Ok(pk)
}

/// The base64 text of a public key (the inverse of
/// [`public_key_from_base64`]).
pub fn public_key_base64(pk: &ed25519_compact::PublicKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(pk.as_slice())
}

/// Structural checks that must hold for any policy the filter runs. The
/// compiler reports these with source spans first; here they guard against
/// hand-made or mismatched blobs.
pub fn validate(p: &Policy) -> Result<(), BlobError> {
    let mut seen = std::collections::BTreeSet::new();
    for r in &p.rules {
        if !seen.insert(r.id.as_str()) {
            return Err(BlobError::Invalid(format!("duplicate rule id `{}`", r.id)));
        }
        let target = p.target(&r.target).ok_or_else(|| {
            BlobError::Invalid(format!(
                "rule `{}` names unknown target `{}`",
                r.id, r.target
            ))
        })?;
        for role in &r.roles {
            if !p.roles.iter().any(|x| &x.name == role) {
                return Err(BlobError::Invalid(format!(
                    "rule `{}` names unknown role `{role}`",
                    r.id
                )));
            }
        }
        let ok = matches!(
            (&r.matcher, target.protocol),
            (Matcher::Any, _)
                | (Matcher::Mcp(_), Protocol::Mcp)
                | (Matcher::Http(_), Protocol::Http)
                | (Matcher::Sql(_), Protocol::Postgres)
        );
        if !ok {
            return Err(BlobError::Invalid(format!(
                "rule `{}` has a matcher that does not fit {} target `{}`",
                r.id,
                target.protocol.as_str(),
                target.name
            )));
        }
        if let Matcher::Mcp(m) = &r.matcher {
            if m.sql.is_some() && m.sql_argument.is_none() {
                return Err(BlobError::Invalid(format!(
                    "rule `{}` has an `sql` matcher without `sql_argument`",
                    r.id
                )));
            }
            if m.sql_argument.is_some() && m.tools.is_empty() {
                return Err(BlobError::Invalid(format!(
                    "rule `{}` names `sql_argument` without `tools`",
                    r.id
                )));
            }
        }
    }
    validate_masking(p)?;
    for role in &p.roles {
        if let Some(iss) = &role.issuer {
            if p.issuer(iss).is_none() {
                return Err(BlobError::Invalid(format!(
                    "role `{}` names unknown issuer `{iss}`",
                    role.name
                )));
            }
        }
    }
    Ok(())
}

/// Masking rules: unique ids (also among rules), known target and roles,
/// columns only on postgres targets and fields only on others, a valid
/// non-empty spec, a key variable for `hash`, and one pattern per custom
/// detector name on a target (rules of a target are merged).
fn validate_masking(p: &Policy) -> Result<(), BlobError> {
    let bad =
        |id: &str, what: String| Err(BlobError::Invalid(format!("masking rule `{id}` {what}")));
    let mut seen = std::collections::BTreeSet::new();
    for (i, m) in p.masking.iter().enumerate() {
        if !seen.insert(m.id.as_str()) || p.rules.iter().any(|r| r.id == m.id) {
            return bad(&m.id, "has a duplicate id".into());
        }
        let Some(target) = p.target(&m.target) else {
            return bad(&m.id, format!("names unknown target `{}`", m.target));
        };
        for role in m.roles.iter().chain(&m.except_roles) {
            if !p.roles.iter().any(|x| &x.name == role) {
                return bad(&m.id, format!("names unknown role `{role}`"));
            }
        }
        let postgres = target.protocol == Protocol::Postgres;
        if postgres && !m.spec.fields.is_empty() {
            return bad(
                &m.id,
                format!("masks JSON fields on postgres target `{}`", target.name),
            );
        }
        if !postgres && !m.spec.columns.is_empty() {
            return bad(
                &m.id,
                format!(
                    "masks columns on {} target `{}`",
                    target.protocol.as_str(),
                    target.name
                ),
            );
        }
        if m.spec.is_empty() {
            return bad(&m.id, "masks nothing".into());
        }
        if let Err(e) = m.spec.validate() {
            return bad(&m.id, format!("is invalid: {e}"));
        }
        if m.spec.uses_hash() && target.mask_key_env.is_none() {
            return bad(
                &m.id,
                format!(
                    "uses `hash` but target `{}` has no `mask_key_env`",
                    target.name
                ),
            );
        }
        for d in &m.spec.detectors {
            let clash = p
                .masking
                .iter()
                .take(i)
                .filter(|o| o.target == m.target)
                .flat_map(|o| &o.spec.detectors)
                .any(|o| o.detector == d.detector && o.pattern != d.pattern);
            if clash {
                return bad(&m.id, format!("defines detector `{}` differently from an earlier masking rule of target `{}`", d.detector, m.target));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::*;

    fn sample() -> Policy {
        Policy {
            name: Some("t".into()),
            issuers: vec![],
            revoked: Revocations::default(),
            roles: vec![Role {
                name: "r".into(),
                issuer: None,
                subjects: vec![],
                groups: vec!["g".into()],
                claims: vec![],
            }],
            targets: vec![Target {
                name: "tools".into(),
                protocol: Protocol::Mcp,
                forward_token: false,
                backend_user: None,
                backend_password_env: None,
                backend_database: None,
                mask_key_env: None,
            }],
            rules: vec![Rule {
                id: "a".into(),
                effect: Effect::Allow,
                roles: vec!["r".into()],
                target: "tools".into(),
                matcher: Matcher::Mcp(McpMatch {
                    tools: vec!["x".into()],
                    arguments: vec![ArgConstraint {
                        path: vec![PathSeg::Key("env".into())],
                        path_text: "env".into(),
                        test: ArgTest::Equals(serde_json::json!({"b": 1, "a": 2})),
                    }],
                    ..Default::default()
                }),
                reason: None,
            }],
            masking: vec![],
            approvers: vec![],
            reviews: vec![],
            elevation: vec![],
            grants: vec![],
        }
    }

    fn meta() -> Meta {
        Meta {
            compiler: "pinhole test".into(),
            source_sha256: "00".into(),
            source_date_epoch: None,
        }
    }

    #[test]
    fn round_trip_and_determinism() -> Result<(), BlobError> {
        let a = encode(&sample(), &meta())?;
        let b = encode(&sample(), &meta())?;
        assert_eq!(a, b);
        let blob = decode(&a)?;
        assert_eq!(blob.policy, sample());
        assert_eq!(blob.digest.len(), 64);
        Ok(())
    }

    #[test]
    fn every_corruption_is_refused() -> Result<(), BlobError> {
        let good = encode(&sample(), &meta())?;
        assert_eq!(decode(&[]), Err(BlobError::Empty));
        assert_eq!(decode(b"hello world"), Err(BlobError::BadMagic));
        assert!(matches!(decode(&good[..20]), Err(BlobError::TooShort(20))));
        assert!(matches!(
            decode(&good[..good.len() - 1]),
            Err(BlobError::LengthMismatch { .. })
        ));
        let mut v = good.clone();
        v[9] = 9;
        assert!(matches!(
            decode(&v),
            Err(BlobError::UnsupportedVersion { found: 9, .. })
        ));
        // Flip every payload byte in turn: never accepted, never a panic.
        for i in 48..good.len() {
            let mut c = good.clone();
            c[i] ^= 0x20;
            assert_eq!(decode(&c), Err(BlobError::DigestMismatch), "byte {i}");
        }
        // Truncate at every length: never accepted.
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err());
        }
        Ok(())
    }

    #[test]
    fn inconsistent_policy_is_refused() {
        let mut p = sample();
        p.rules[0].target = "nope".into();
        assert!(matches!(encode(&p, &meta()), Err(BlobError::Invalid(_))));
        let mut p = sample();
        p.rules.push(p.rules[0].clone());
        assert!(matches!(encode(&p, &meta()), Err(BlobError::Invalid(_))));
    }

    #[test]
    fn sql_matchers_fit_their_targets() -> Result<(), BlobError> {
        let pg = Target {
            name: "db".into(),
            protocol: Protocol::Postgres,
            forward_token: false,
            backend_user: None,
            backend_password_env: None,
            backend_database: None,
            mask_key_env: None,
        };
        let sql = SqlMatch {
            statements: vec![
                StatementClass::Select,
                StatementClass::Drop(Some(SqlObject::Table)),
            ],
            tables: vec!["public.orders".into()],
            ..Default::default()
        };
        // A SQL matcher on a postgres target round-trips.
        let mut p = sample();
        p.targets.push(pg);
        let mut r = p.rules[0].clone();
        r.id = "b".into();
        r.target = "db".into();
        r.matcher = Matcher::Sql(sql.clone());
        p.rules.push(r);
        assert_eq!(decode(&encode(&p, &meta())?)?.policy, p);
        // …but not on an MCP target.
        let mut bad = p.clone();
        bad.rules[1].target = "tools".into();
        assert!(matches!(encode(&bad, &meta()), Err(BlobError::Invalid(_))));
        // An MCP tool's SQL argument round-trips; `sql` needs `sql_argument`.
        let mut p = sample();
        if let Matcher::Mcp(m) = &mut p.rules[0].matcher {
            m.sql_argument = Some(ArgPath {
                path: vec![PathSeg::Key("sql".into())],
                path_text: "sql".into(),
            });
            m.sql = Some(sql);
        }
        assert_eq!(decode(&encode(&p, &meta())?)?.policy, p);
        if let Matcher::Mcp(m) = &mut p.rules[0].matcher {
            m.sql_argument = None;
        }
        assert!(matches!(encode(&p, &meta()), Err(BlobError::Invalid(_))));
        // Policies without SQL serialise as before (no new keys).
        let bytes = encode(&sample(), &meta())?;
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("sql"), "{text}");
        Ok(())
    }

    fn with_masking() -> Policy {
        use crate::mask::{ColumnRule, DetectorRule, MaskSpec, Strategy};
        let mut p = sample();
        p.targets.push(Target {
            name: "db".into(),
            protocol: Protocol::Postgres,
            forward_token: false,
            backend_user: Some("app".into()),
            backend_password_env: None,
            backend_database: None,
            mask_key_env: Some("MASK_KEY".into()),
        });
        p.masking.push(MaskRule {
            id: "hide-emails".into(),
            target: "db".into(),
            roles: vec![],
            except_roles: vec!["r".into()],
            spec: MaskSpec {
                columns: vec![ColumnRule {
                    column: "customers.email".into(),
                    strategy: Strategy::Hash {},
                }],
                detectors: vec![DetectorRule {
                    detector: "emp_id".into(),
                    pattern: Some("EMP-[0-9]{6}".into()),
                    strategy: Strategy::Partial { keep: 2 },
                }],
                ..MaskSpec::default()
            },
        });
        p
    }

    #[test]
    fn masking_round_trips_and_sets_its_flag() -> Result<(), BlobError> {
        let p = with_masking();
        let bytes = encode(&p, &meta())?;
        assert_eq!(bytes[10..12], FLAG_MASKING.to_be_bytes());
        assert_eq!(bytes, encode(&p, &meta())?);
        let blob = decode(&bytes)?;
        assert_eq!(blob.policy, p);
        let text = String::from_utf8_lossy(&bytes[48..]).into_owned();
        assert!(
            text.contains(r#""masking":[{"id":"hide-emails","target":"db","roles":[],"except_roles":["r"],"spec":{"#),
            "{text}"
        );
        assert!(text.contains(r#""mask_key_env":"MASK_KEY""#), "{text}");
        // Without masking: flags 0 and no new keys (old blobs are unchanged).
        let plain = encode(&sample(), &meta())?;
        assert_eq!(plain[10..12], [0, 0]);
        let text = String::from_utf8_lossy(&plain);
        assert!(!text.contains("mask"), "{text}");
        Ok(())
    }

    /// Rewrites a blob's flags and digest-protected payload.
    fn reframe(flags: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&Sha256::digest(payload));
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn masking_flag_must_match_the_policy() -> Result<(), BlobError> {
        let masked = encode(&with_masking(), &meta())?;
        let plain = encode(&sample(), &meta())?;
        // Masking rules without the flag (a filter that predates masking
        // must never see such a blob as one it can run).
        assert!(matches!(
            decode(&reframe(0, &masked[48..])),
            Err(BlobError::Invalid(_))
        ));
        assert!(matches!(
            decode(&reframe(FLAG_MASKING, &plain[48..])),
            Err(BlobError::Invalid(_))
        ));
        assert_eq!(
            decode(&reframe(FLAG_MASKING | 0x8000, &masked[48..])),
            Err(BlobError::UnknownFlags(0x8000))
        );
        Ok(())
    }

    fn keypair(n: u8) -> ed25519_compact::KeyPair {
        ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([n; 32]))
    }

    #[test]
    fn signing_is_deterministic_and_keeps_the_payload() -> Result<(), BlobError> {
        let unsigned = encode(&sample(), &meta())?;
        // Unsigned blobs carry no trailer and no signed flag.
        assert_eq!(unsigned.len(), 48 + be32(&unsigned, 12).unwrap() as usize);
        assert_eq!(unsigned[10..12], [0, 0]);
        assert_eq!(decode(&unsigned)?.signature, None);
        let kp = keypair(1);
        let signed = sign(&unsigned, &kp)?;
        assert_eq!(
            signed,
            sign(&unsigned, &kp)?,
            "same blob and key, same bytes"
        );
        assert_ne!(signed, sign(&unsigned, &keypair(2))?);
        assert_eq!(signed.len(), unsigned.len() + TRAILER_LEN);
        assert_eq!(signed[10..12], FLAG_SIGNED.to_be_bytes());
        // Only the flags differ in the header; the payload is untouched.
        assert_eq!(signed[..10], unsigned[..10]);
        assert_eq!(signed[12..unsigned.len()], unsigned[12..]);
        let id = key_id(&kp.pk);
        assert_eq!(signed[unsigned.len()..unsigned.len() + 8], id);
        let b = decode(&signed)?;
        let u = decode(&unsigned)?;
        assert_eq!(
            (&b.policy, &b.meta, &b.digest),
            (&u.policy, &u.meta, &u.digest)
        );
        let sig = b.signature.unwrap();
        assert_eq!(sig.key_id, id);
        assert_eq!(sig.key_id_hex().len(), 16);
        assert_eq!(verify(&signed, &kp.pk)?, sig);
        // A masking policy keeps its flag next to the signed one.
        let masked = sign(&encode(&with_masking(), &meta())?, &kp)?;
        assert_eq!(masked[10..12], (FLAG_MASKING | FLAG_SIGNED).to_be_bytes());
        assert_eq!(decode(&masked)?.policy, with_masking());
        verify(&masked, &kp.pk)?;
        // Signing twice is refused.
        assert_eq!(
            sign(&signed, &keypair(2)),
            Err(BlobError::AlreadySigned(sig.key_id_hex()))
        );
        Ok(())
    }

    #[test]
    fn unsigned_and_wrongly_signed_blobs_do_not_verify() -> Result<(), BlobError> {
        let unsigned = encode(&sample(), &meta())?;
        let (a, b) = (keypair(1), keypair(2));
        let signed = sign(&unsigned, &a)?;
        let ida = hex(&key_id(&a.pk));
        let idb = hex(&key_id(&b.pk));
        assert_eq!(
            verify(&unsigned, &a.pk),
            Err(BlobError::Unsigned {
                expected: ida.clone()
            })
        );
        assert_eq!(
            verify(&signed, &b.pk),
            Err(BlobError::WrongKey {
                found: ida.clone(),
                expected: idb.clone()
            })
        );
        // B's signature relabelled with A's key id.
        let by_b = sign(&unsigned, &b)?;
        let mut forged = signed.clone();
        let n = unsigned.len();
        forged[n + 8..].copy_from_slice(&by_b[n + 8..]);
        assert_eq!(
            verify(&forged, &a.pk),
            Err(BlobError::BadSignature(ida.clone()))
        );
        // Every signature byte, flipped: refused by `verify`; `decode` (no
        // publisher key) still loads the blob.
        for i in n + 8..signed.len() {
            let mut c = signed.clone();
            c[i] ^= 0x01;
            assert_eq!(
                verify(&c, &a.pk),
                Err(BlobError::BadSignature(ida.clone())),
                "byte {i}"
            );
            assert!(decode(&c).is_ok());
        }
        // A key id byte flipped: another key.
        for i in n..n + 8 {
            let mut c = signed.clone();
            c[i] ^= 0x80;
            assert!(
                matches!(verify(&c, &a.pk), Err(BlobError::WrongKey { .. })),
                "byte {i}"
            );
        }
        // A payload byte flipped: the digest catches it first…
        let mut c = signed.clone();
        c[60] ^= 0x20;
        assert_eq!(verify(&c, &a.pk), Err(BlobError::DigestMismatch));
        // …and a payload changed with its digest recomputed: the signature.
        let mut payload = signed[48..n].to_vec();
        let at = payload.len() - 3;
        payload[at] = b' ';
        let mut c = reframe(FLAG_SIGNED, &payload);
        c.extend_from_slice(&signed[n..]);
        assert_eq!(verify(&c, &a.pk), Err(BlobError::BadSignature(ida.clone())));
        // A header flag added (masking): the signature covers the header.
        let mut c = signed.clone();
        c[11] |= FLAG_MASKING as u8;
        assert_eq!(verify(&c, &a.pk), Err(BlobError::BadSignature(ida)));
        Ok(())
    }

    #[test]
    fn signed_blobs_are_decoded_strictly() -> Result<(), BlobError> {
        let unsigned = encode(&sample(), &meta())?;
        let signed = sign(&unsigned, &keypair(1))?;
        // Trailing bytes on an unsigned blob, a trailer too short or too
        // long, or the signed flag removed: all refused.
        let mut padded = unsigned.clone();
        padded.extend_from_slice(&signed[unsigned.len()..]);
        assert!(matches!(
            decode(&padded),
            Err(BlobError::LengthMismatch { .. })
        ));
        let mut longer = signed.clone();
        longer.push(0);
        assert!(matches!(
            decode(&longer),
            Err(BlobError::LengthMismatch { .. })
        ));
        let mut cleared = signed.clone();
        cleared[11] &= !(FLAG_SIGNED as u8);
        assert!(matches!(
            decode(&cleared),
            Err(BlobError::LengthMismatch { .. })
        ));
        for n in 0..signed.len() {
            assert!(decode(&signed[..n]).is_err(), "{n} bytes");
            assert!(verify(&signed[..n], &keypair(1).pk).is_err(), "{n} bytes");
        }
        // Flags beyond the known ones are still refused.
        let mut c = signed.clone();
        c[10] |= 0x80;
        assert_eq!(decode(&c), Err(BlobError::UnknownFlags(0x8000)));
        Ok(())
    }

    #[test]
    fn public_keys_from_base64() {
        let pk = keypair(7).pk;
        let text = public_key_base64(&pk);
        assert_eq!(text.len(), 44);
        assert_eq!(public_key_from_base64(&format!(" {text}\n")), Ok(pk));
        for bad in [
            "",
            "!!!",
            "aGVsbG8=",
            "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            let e = public_key_from_base64(bad).unwrap_err();
            assert!(e.starts_with("is "), "{bad}: {e}");
        }
    }

    #[test]
    fn inconsistent_masking_is_refused() {
        use crate::mask::{FieldRule, Strategy};
        let refused = |f: &dyn Fn(&mut Policy), why: &str| {
            let mut p = with_masking();
            f(&mut p);
            match encode(&p, &meta()) {
                Err(BlobError::Invalid(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("{why}: {other:?}"),
            }
        };
        refused(&|p| p.masking[0].target = "nope".into(), "unknown target");
        refused(
            &|p| p.masking[0].except_roles = vec!["x".into()],
            "unknown role",
        );
        refused(&|p| p.masking[0].id = "a".into(), "duplicate id");
        refused(
            &|p| {
                let m = p.masking[0].clone();
                p.masking.push(m);
            },
            "duplicate id",
        );
        refused(&|p| p.targets[1].mask_key_env = None, "no `mask_key_env`");
        refused(&|p| p.masking[0].target = "tools".into(), "masks columns");
        refused(
            &|p| {
                p.masking[0].spec.fields.push(FieldRule {
                    path: "a".into(),
                    strategy: Strategy::default(),
                })
            },
            "masks JSON fields",
        );
        refused(
            &|p| p.masking[0].spec = crate::mask::MaskSpec::default(),
            "masks nothing",
        );
        refused(
            &|p| p.masking[0].spec.detectors[0].pattern = Some("x*".into()),
            "is invalid",
        );
        refused(
            &|p| {
                let mut m = p.masking[0].clone();
                m.id = "other".into();
                m.spec.detectors[0].pattern = Some("EMP-[0-9]+".into());
                p.masking.push(m);
            },
            "defines detector `emp_id` differently",
        );
    }
}
