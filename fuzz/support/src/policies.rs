//! The example policies, compiled with the policy compiler's library (so the
//! fuzz targets always see what the current compiler produces).

use std::path::{Path, PathBuf};

use pinhole_filter::policy::Policy;

/// The repository root (this crate lives in `fuzz/support`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `examples/mcp-tools/policy.yaml`: MCP target `tools`, HTTP `status-api`.
pub const MCP_TOOLS: &str = "examples/mcp-tools/policy.yaml";
/// `examples/orders-db/policy.yaml`: postgres target `orders-db`, MCP `tools`.
pub const ORDERS_DB: &str = "examples/orders-db/policy.yaml";

/// Compiles an example policy and encodes it as a blob (as
/// `pinhole compile` would, without `SOURCE_DATE_EPOCH`).
pub fn compile(example: &str) -> Result<(Policy, Vec<u8>), String> {
    let path = repo_root().join(example);
    let loaded = policy_compiler::load(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let Some(policy) = loaded.compiled.policy.clone() else {
        return Err(format!(
            "{} does not compile: {:?}",
            path.display(),
            loaded.rendered()
        ));
    };
    let blob = policy_compiler::encode(&loaded, &policy, None).map_err(|e| e.to_string())?;
    Ok((policy, blob))
}

/// [`compile`], for target initialisation: a policy that does not compile is
/// a broken checkout, not a finding.
pub fn must_compile(example: &str) -> (Policy, Vec<u8>) {
    match compile(example) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("fuzz setup: {e}");
            std::process::exit(2);
        }
    }
}

/// Role sets a fuzz input can pick from (index by a byte).
pub const ROLE_SETS: &[&[&str]] = &[
    &[],
    &["analyst"],
    &["ci-deployer"],
    &["sre"],
    &["dba"],
    &["support-lead"],
    &["analyst", "dba"],
    &["sre", "ci-deployer", "analyst", "support-lead", "dba"],
];

pub fn roles(i: u8) -> Vec<String> {
    let set = ROLE_SETS
        .get(usize::from(i) % ROLE_SETS.len())
        .copied()
        .unwrap_or_default();
    set.iter().map(|s| (*s).to_owned()).collect()
}

/// A blob around `payload`: the header with the right length and digest,
/// so the decoder gets past its integrity checks to the payload itself.
pub fn wrap_blob(payload: &[u8]) -> Vec<u8> {
    use pinhole_filter::policy::blob::{FORMAT_VERSION, MAGIC};
    use sha2::{Digest, Sha256};
    let mut out = Vec::with_capacity(48 + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&Sha256::digest(payload));
    out.extend_from_slice(payload);
    out
}
