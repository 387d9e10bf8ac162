//! Identity: JWT verification against the policy's issuers, the bounded
//! verification cache, revocation, and claim → role mapping.

pub mod cache;
pub mod jwks;
pub mod jwt;
pub mod roles;

pub use cache::TokenCache;
pub use jwt::{AuthError, Verifier};
pub use roles::roles_for;

use std::rc::Rc;

use serde_json::{Map, Value};

/// A token whose signature and registered claims were verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// Policy name of the issuer that signed it (e.g. `corp-sso`).
    pub issuer_name: String,
    /// The `iss` claim.
    pub iss: String,
    /// The `sub` claim (required).
    pub sub: String,
    /// `exp`, seconds since the Unix epoch (required).
    pub exp: u64,
    /// `jti`, when present.
    pub jti: Option<String>,
    /// Groups read from the issuer's `groups_claim` (string or array).
    pub groups: Vec<String>,
    /// Every claim of the payload.
    pub claims: Map<String, Value>,
}

/// A verified caller with its roles under the current policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// Shared with the verification cache: a cache hit costs no copy.
    pub token: Rc<VerifiedToken>,
    /// The roles the caller's claims map to, then any held by elevation
    /// (see `elevated`).
    pub roles: Vec<String>,
    /// Roles held through live elevation grants (also in `roles`).
    pub elevated: Vec<Elevated>,
}

/// A role held through a just-in-time elevation grant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Elevated {
    // Fields in key order: audit events serialize it canonically.
    pub approver: String,
    /// The grant's id.
    pub grant: String,
    pub role: String,
    /// When the role ends (seconds since the Unix epoch).
    pub until: u64,
}

impl Identity {
    /// The roles from the caller's claims alone.
    pub fn base_roles(&self) -> Vec<String> {
        self.roles
            .iter()
            .filter(|r| !self.elevated.iter().any(|e| &e.role == *r))
            .cloned()
            .collect()
    }
}
