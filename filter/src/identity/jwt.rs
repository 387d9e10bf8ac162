//! JWT verification (placeholder: being written).
use super::VerifiedToken;
use crate::policy::Policy;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
}

impl AuthError {
    pub fn reason(&self) -> &'static str {
        "missing"
    }
}

pub struct Verifier;

impl Verifier {
    pub fn new(_policy: &Policy) -> Result<Verifier, String> {
        Ok(Verifier)
    }
    pub fn verify(&self, _token: &str, _now: u64) -> Result<VerifiedToken, AuthError> {
        Err(AuthError::Missing)
    }
}
