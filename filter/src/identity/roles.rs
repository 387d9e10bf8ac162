//! Claim → role mapping (placeholder: being written).
use super::VerifiedToken;
use crate::policy::Policy;
pub fn roles_for(_policy: &Policy, _token: &VerifiedToken) -> Vec<String> {
    Vec::new()
}
