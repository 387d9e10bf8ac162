//! JWKS parsing (placeholder: being written).
