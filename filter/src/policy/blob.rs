//! The policy blob: the versioned, integrity-checked container the compiler
//! writes and the filter loads.
//!
//! ```text
//! offset size  field
//! 0      8     magic  "PINHOLE\0"
//! 8      2     format version, big endian (currently 1)
//! 10     2     flags, big endian (0; reserved for signatures)
//! 12     4     payload length N, big endian
//! 16     32    SHA-256 of the payload
//! 48     N     payload: UTF-8 JSON {"meta": Meta, "policy": Policy}
//! ```
//!
//! The payload is canonical: struct fields in declaration order, lists in
//! source order, JSON objects (argument values) with sorted keys. The same
//! source therefore always yields the same bytes. `Meta` records the SHA-256
//! of the policy source and of every embedded JWKS file; it records a compile
//! time only when `SOURCE_DATE_EPOCH` is set, so builds stay reproducible.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::{Matcher, Policy, Protocol};

pub const MAGIC: &[u8; 8] = b"PINHOLE\0";
pub const FORMAT_VERSION: u16 = 1;
const HEADER_LEN: usize = 48;
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
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
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
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
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

/// Decode and verify a blob. Never panics, whatever the input.
pub fn decode(bytes: &[u8]) -> Result<Blob, BlobError> {
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
    if flags != 0 {
        return Err(BlobError::UnknownFlags(flags));
    }
    let declared = be32(bytes, 12).ok_or(BlobError::TooShort(bytes.len()))? as usize;
    if declared > MAX_PAYLOAD {
        return Err(BlobError::TooLarge(declared));
    }
    let payload = bytes.get(HEADER_LEN..).unwrap_or_default();
    if payload.len() != declared {
        return Err(BlobError::LengthMismatch {
            declared,
            actual: payload.len(),
        });
    }
    let digest = Sha256::digest(payload);
    if bytes.get(16..48) != Some(AsRef::<[u8]>::as_ref(&digest)) {
        return Err(BlobError::DigestMismatch);
    }
    let p: Payload =
        serde_json::from_slice(payload).map_err(|e| BlobError::Payload(e.to_string()))?;
    validate(&p.policy)?;
    Ok(Blob {
        meta: p.meta,
        policy: p.policy,
        digest: hex(&digest),
        format_version: version,
    })
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
}
