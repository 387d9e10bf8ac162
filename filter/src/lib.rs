//! Pinhole filter: the host-free engine (policy model, blob format, evaluator,
//! identity verification, MCP decoding) plus, on `wasm32`, the thin proxy-wasm
//! host layer in [`host`].
//!
//! Everything outside `host` is plain Rust with no proxy-wasm calls, so it is
//! unit-tested natively and, compiled to `wasm32-wasip1`, under Node's WASI.

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod audit;
pub mod engine;
pub mod glob;
pub mod grant;
pub mod identity;
pub mod mask;
pub mod mcp;
pub mod metrics;
pub mod pg;
pub mod policy;

// The host layer is left out of test builds: a wasm test binary run under a
// plain WASI runtime has no proxy-wasm host to import from.
#[cfg(all(target_arch = "wasm32", not(test)))]
mod host;
