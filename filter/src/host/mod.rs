//! proxy-wasm host layer (being written).
