//! Policy model, blob format, evaluator and masking selection.

pub mod blob;
pub mod eval;
pub mod index;
pub mod masking;
pub mod model;

pub use masking::{mask_spec_for, strategy_rank};
pub use model::*;
