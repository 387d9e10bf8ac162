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
//!
//! Other bits are reserved (signatures).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::{Matcher, Policy, Protocol};

pub const MAGIC: &[u8; 8] = b"PINHOLE\0";
pub const FORMAT_VERSION: u16 = 1;
/// Header flag: the policy carries masking rules.
pub const FLAG_MASKING: u16 = 0x0001;
/// Every flag this filter understands.
pub const KNOWN_FLAGS: u16 = FLAG_MASKING;
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
    if flags & !KNOWN_FLAGS != 0 {
        return Err(BlobError::UnknownFlags(flags & !KNOWN_FLAGS));
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
    if flags != flags_for(&p.policy) {
        return Err(BlobError::Invalid(format!(
            "header flags {flags:#06x} do not match the policy (expected {:#06x})",
            flags_for(&p.policy)
        )));
    }
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
