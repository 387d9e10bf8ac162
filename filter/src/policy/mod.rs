//! Policy model, blob format and evaluator.

pub mod blob;
pub mod eval;
pub mod model;

pub use model::*;
