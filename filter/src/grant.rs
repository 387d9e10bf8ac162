//! Signed grants: a reviewer's approval of one held command, and a
//! just-in-time role elevation. Host-free; the CLI issues grants with
//! [`sign`], the filter checks them with [`GrantSet::load`] when a policy
//! loads and looks them up per request.
//!
//! # Token
//!
//! `pinhole-grant.v1.<claims>.<signature>`: `claims` is the base64url (no
//! padding) of the JSON of [`GrantClaims`], `signature` the base64url of the
//! Ed25519 signature, by the approver's key, of the bytes
//! `pinhole-grant.v1.<claims>`. The approver is named in the claims and
//! their public key comes from the policy's `approvers`, never from the
//! token.
//!
//! # What a grant must satisfy (checked at load, against the policy)
//!
//! - the signature verifies with the named approver's key;
//! - the grant's subject is not the approver (self-approval is refused);
//! - `not_before < expires`;
//! - **approval**: the rule exists on the grant's target, is a `review`
//!   rule, the approver belongs to one of the rule's approver groups, the
//!   validity is at most the rule's `grant_ttl`, and the request id is the
//!   one computed from (issuer, subject, target, rule, fingerprint);
//! - **elevation**: some elevation rule for the role lets one of the
//!   approver's groups grant it for that long; a reason is given.
//!
//! Checked per request: the time window, the subject (and issuer), and for
//! an approval the exact command (its [fingerprint](Fingerprint)); for an
//! elevation that the caller holds one of the rule's `eligible` roles.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::identity::VerifiedToken;
use crate::policy::{blob, Effect, Policy};

/// Every grant token starts with this.
pub const TOKEN_PREFIX: &str = "pinhole-grant.v1.";

/// Longest grant token accepted.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The longest validity of an approval when the review rule sets no
/// `grant_ttl`.
pub const DEFAULT_GRANT_TTL_SECS: u64 = 3600;

/// What a grant grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantKind {
    /// One exact command held by a review rule.
    Approval,
    /// A role, for a while.
    Elevation,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Approval => "approval",
            GrantKind::Elevation => "elevation",
        }
    }
}

/// The signed content of a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantClaims {
    /// Unique id (`g-` and 16 hex digits), shown in audit events.
    pub id: String,
    pub kind: GrantKind,
    /// The caller's `sub`.
    pub subject: String,
    /// The policy's name of the caller's issuer; `None` (elevations only):
    /// any trusted issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The approver's name in the policy (whose key signed this).
    pub approver: String,
    /// Seconds since the Unix epoch.
    pub issued_at: u64,
    pub not_before: u64,
    pub expires: u64,
    /// Why (required for elevations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Approval: the target the command runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Approval: the review rule that held the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Approval: the request id the caller was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Approval: the command's fingerprint (64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Approval: the command as the approver saw it (for people reading
    /// the grant; the fingerprint is what binds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Elevation: the role granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Why a grant token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("is not a grant token (it must start with `{TOKEN_PREFIX}`)")]
    NotAGrant,
    #[error("is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("is malformed: {0}")]
    Malformed(String),
    #[error("names approver `{0}`, who is not among the policy's approvers")]
    UnknownApprover(String),
    #[error("has a signature that does not verify with approver `{0}`'s key (forged, altered, or signed with another key)")]
    BadSignature(String),
    #[error("is a self-approval: approver `{approver}` granted it to themselves (`{subject}`)")]
    SelfApproval { approver: String, subject: String },
    #[error("{0}")]
    NotAllowed(String),
}

/// Parse a token without checking its signature (to show it, or to find
/// its approver).
pub fn parse(token: &str) -> Result<GrantClaims, GrantError> {
    let (claims, _, _) = split(token)?;
    Ok(claims)
}

fn split(token: &str) -> Result<(GrantClaims, &str, Vec<u8>), GrantError> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_LEN {
        return Err(GrantError::TooLong);
    }
    let rest = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(GrantError::NotAGrant)?;
    let (body, sig) = rest
        .split_once('.')
        .ok_or_else(|| GrantError::Malformed("no signature part".into()))?;
    let json = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| GrantError::Malformed("the claims are not base64url".into()))?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| GrantError::Malformed("the signature is not base64url".into()))?;
    let claims: GrantClaims = serde_json::from_slice(&json)
        .map_err(|e| GrantError::Malformed(format!("the claims are not valid: {e}")))?;
    let signed = token
        .get(..TOKEN_PREFIX.len() + body.len())
        .ok_or_else(|| GrantError::Malformed("truncated".into()))?;
    Ok((claims, signed, sig))
}

/// Sign claims with an approver's key: the token text.
pub fn sign(claims: &GrantClaims, key: &ed25519_compact::SecretKey) -> String {
    let json = serde_json::to_vec(claims).unwrap_or_default();
    let mut token = String::from(TOKEN_PREFIX);
    token.push_str(&URL_SAFE_NO_PAD.encode(json));
    let sig = key.sign(token.as_bytes(), None);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig.as_slice()));
    token
}

/// Check a token's signature and its fit with `policy` (not its time
/// window, which is checked per request).
pub fn verify(token: &str, policy: &Policy) -> Result<Grant, GrantError> {
    let (c, signed, sig) = split(token)?;
    let approver = policy
        .approver(&c.approver)
        .ok_or_else(|| GrantError::UnknownApprover(c.approver.clone()))?;
    let pk = blob::public_key_from_base64(&approver.key)
        .map_err(|_| GrantError::BadSignature(c.approver.clone()))?;
    let sig = ed25519_compact::Signature::from_slice(&sig)
        .map_err(|_| GrantError::BadSignature(c.approver.clone()))?;
    pk.verify(signed.as_bytes(), &sig)
        .map_err(|_| GrantError::BadSignature(c.approver.clone()))?;
    if c.subject == approver.name || approver.subject.as_deref() == Some(c.subject.as_str()) {
        return Err(GrantError::SelfApproval {
            approver: c.approver.clone(),
            subject: c.subject.clone(),
        });
    }
    if c.not_before >= c.expires {
        return Err(GrantError::NotAllowed(
            "has an empty validity window (`not_before` is not before `expires`)".into(),
        ));
    }
    let span = c.expires - c.not_before;
    let in_group = |groups: &[String]| approver.groups.iter().any(|g| groups.contains(g));
    let eligible = match c.kind {
        GrantKind::Approval => {
            let (Some(target), Some(rule_id), Some(fp), Some(request), Some(issuer)) = (
                c.target.as_deref(),
                c.rule.as_deref(),
                c.fingerprint.as_deref(),
                c.request.as_deref(),
                c.issuer.as_deref(),
            ) else {
                return Err(GrantError::Malformed(
                    "an approval needs `issuer`, `target`, `rule`, `request` and `fingerprint`"
                        .into(),
                ));
            };
            let rule = policy
                .rule(rule_id)
                .filter(|r| r.target == target && r.effect == Effect::Review)
                .ok_or_else(|| {
                    GrantError::NotAllowed(format!(
                        "approves rule `{rule_id}` on target `{target}`, which is not a review \
                         rule of that target in this policy"
                    ))
                })?;
            let review = policy.review(&rule.id);
            let groups = review.map(|r| r.approvers.as_slice()).unwrap_or_default();
            if !in_group(groups) {
                return Err(GrantError::NotAllowed(format!(
                    "is signed by `{}`, who may not approve rule `{rule_id}` (its approvers: {})",
                    c.approver,
                    list(groups)
                )));
            }
            let ttl = review.map_or(DEFAULT_GRANT_TTL_SECS, |r| r.grant_ttl_secs);
            if span > ttl {
                return Err(GrantError::NotAllowed(format!(
                    "is valid for {span} s, longer than rule `{rule_id}` allows ({ttl} s)"
                )));
            }
            let want = request_id(issuer, &c.subject, target, rule_id, fp);
            if request != want {
                return Err(GrantError::NotAllowed(format!(
                    "names request `{request}`, but its subject, target, rule and command \
                     make request `{want}`"
                )));
            }
            Vec::new()
        }
        GrantKind::Elevation => {
            let Some(role) = c.role.as_deref() else {
                return Err(GrantError::Malformed("an elevation needs `role`".into()));
            };
            if c.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                return Err(GrantError::NotAllowed(
                    "is an elevation without a reason".into(),
                ));
            }
            let mut eligible: Vec<String> = Vec::new();
            let mut why = Vec::new();
            for e in policy.elevation.iter().filter(|e| e.role == role) {
                if !in_group(&e.approvers) {
                    why.push(format!("approvers {}", list(&e.approvers)));
                } else if span > e.max_secs {
                    why.push(format!("at most {} s", e.max_secs));
                } else {
                    for r in &e.eligible {
                        if !eligible.contains(r) {
                            eligible.push(r.clone());
                        }
                    }
                }
            }
            if eligible.is_empty() {
                return Err(GrantError::NotAllowed(if why.is_empty() {
                    format!("grants role `{role}`, which no elevation rule of this policy offers")
                } else {
                    format!(
                        "grants role `{role}` for {span} s signed by `{}`, which no elevation \
                         rule allows ({})",
                        c.approver,
                        why.join("; ")
                    )
                }));
            }
            eligible
        }
    };
    Ok(Grant {
        claims: c,
        eligible,
    })
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A grant whose signature and fit with the policy were checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub claims: GrantClaims,
    /// Elevation: the roles of which the caller must hold one.
    #[serde(default)]
    pub eligible: Vec<String>,
}

impl Grant {
    fn live(&self, now: u64) -> bool {
        self.claims.not_before <= now && now < self.claims.expires
    }

    fn for_caller(&self, who: &VerifiedToken) -> bool {
        self.claims.subject == who.sub
            && self
                .claims
                .issuer
                .as_deref()
                .is_none_or(|i| i == who.issuer_name)
    }
}

/// The grants of a policy, checked, indexed by subject.
#[derive(Debug, Clone, Default)]
pub struct GrantSet {
    grants: Vec<Grant>,
    by_subject: HashMap<String, Vec<usize>>,
}

/// A grant that was refused when the policy loaded, for the operator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The grant's id, when its claims could be read.
    pub id: Option<String>,
    pub error: GrantError,
}

impl GrantSet {
    /// Check every grant of `policy`; refused ones are returned for the log.
    pub fn load(policy: &Policy) -> (GrantSet, Vec<Rejected>) {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for token in &policy.grants {
            match verify(token, policy) {
                Ok(g) => ok.push(g),
                Err(error) => bad.push(Rejected {
                    id: parse(token).ok().map(|c| c.id),
                    error,
                }),
            }
        }
        (GrantSet::from_grants(ok), bad)
    }

    /// Index grants already checked (e.g. published by a newer policy).
    pub fn from_grants(grants: Vec<Grant>) -> GrantSet {
        let mut by_subject: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, g) in grants.iter().enumerate() {
            by_subject
                .entry(g.claims.subject.clone())
                .or_default()
                .push(i);
        }
        GrantSet { grants, by_subject }
    }

    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Whether any grant names this subject (a hash lookup).
    pub fn has_subject(&self, sub: &str) -> bool {
        self.by_subject.contains_key(sub)
    }

    fn of<'a, 'w>(&'a self, who: &'w VerifiedToken) -> impl Iterator<Item = &'a Grant> + 'w
    where
        'a: 'w,
    {
        self.by_subject
            .get(&who.sub)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.grants.get(i))
            .filter(move |g| g.for_caller(who))
    }

    /// The live approval of this exact command under `rule`, if any.
    pub fn approval(
        &self,
        who: &VerifiedToken,
        target: &str,
        rule: &str,
        fingerprint: &str,
        now: u64,
    ) -> Option<&Grant> {
        self.of(who).find(|g| {
            let c = &g.claims;
            c.kind == GrantKind::Approval
                && g.live(now)
                && c.target.as_deref() == Some(target)
                && c.rule.as_deref() == Some(rule)
                && c.fingerprint.as_deref() == Some(fingerprint)
        })
    }

    /// Live elevations for a caller holding `roles`: (role, grant), at most
    /// one grant per role (the one lasting longest).
    pub fn elevations(&self, who: &VerifiedToken, roles: &[String], now: u64) -> Vec<&Grant> {
        let mut out: Vec<&Grant> = Vec::new();
        if self.by_subject.is_empty() {
            return out;
        }
        for g in self.of(who) {
            let c = &g.claims;
            if c.kind != GrantKind::Elevation
                || !g.live(now)
                || !g.eligible.iter().any(|r| roles.contains(r))
            {
                continue;
            }
            match out.iter_mut().find(|o| o.claims.role == c.role) {
                Some(o) if o.claims.expires < c.expires => *o = g,
                Some(_) => {}
                None => out.push(g),
            }
        }
        out
    }
}

/// A command's identity for approvals: 64 hex digits of SHA-256 over a
/// canonical form of exactly what runs.
#[derive(Debug, Clone, Copy)]
pub enum Fingerprint<'a> {
    /// SQL text, as sent (surrounding whitespace and trailing `;` aside).
    Sql(&'a str),
    /// A `tools/call`: name and arguments (object keys sorted).
    Tool { name: &'a str, arguments: &'a Value },
    /// Any other MCP request: method and its subject (resource URI or
    /// prompt name).
    Mcp { method: &'a str, subject: &'a str },
    /// A plain HTTP request: method and path with query (not the body).
    Http { method: &'a str, path: &'a str },
}

impl Fingerprint<'_> {
    pub fn hex(&self) -> String {
        let mut h = Sha256::new();
        match *self {
            Fingerprint::Sql(sql) => {
                h.update(b"sql\0");
                h.update(sql_core(sql).as_bytes());
            }
            Fingerprint::Tool { name, arguments } => {
                h.update(b"tool\0");
                h.update(name.as_bytes());
                h.update(b"\0");
                let mut canon = String::new();
                canonical_json(arguments, &mut canon);
                h.update(canon.as_bytes());
            }
            Fingerprint::Mcp { method, subject } => {
                h.update(b"mcp\0");
                h.update(method.as_bytes());
                h.update(b"\0");
                h.update(subject.as_bytes());
            }
            Fingerprint::Http { method, path } => {
                h.update(b"http\0");
                h.update(method.as_bytes());
                h.update(b"\0");
                h.update(path.as_bytes());
            }
        }
        blob::hex(&h.finalize())
    }
}

/// SQL as fingerprinted: without surrounding whitespace and trailing `;`.
pub fn sql_core(sql: &str) -> &str {
    sql.trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
}

/// JSON with object keys sorted, no spaces (serde_json's escaping).
pub fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(':');
                if let Some(x) = m.get(k) {
                    canonical_json(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap_or_default()),
    }
}

/// The id of a held request: the same caller asking the same command under
/// the same rule gets the same id (so a retry after approval matches).
pub fn request_id(
    issuer: &str,
    subject: &str,
    target: &str,
    rule: &str,
    fingerprint: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [issuer, subject, target, rule, fingerprint] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    let d = h.finalize();
    format!("rq-{}", blob::hex(d.get(..8).unwrap_or_default()))
}

/// A grant id from its content.
pub fn grant_id(claims_without_id: &GrantClaims) -> String {
    let json = serde_json::to_vec(claims_without_id).unwrap_or_default();
    let d = Sha256::digest(&json);
    format!("g-{}", blob::hex(d.get(..8).unwrap_or_default()))
}

#[cfg(test)]
mod tests;
