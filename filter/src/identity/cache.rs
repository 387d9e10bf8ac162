//! Verification cache (placeholder: being written).
pub struct TokenCache;
