//! MCP JSON-RPC decoding (placeholder: being written).
