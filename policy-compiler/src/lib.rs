//! The Pinhole policy compiler as a library: YAML policy source → checked,
//! compiled [`Policy`](pinhole_filter::policy::Policy) with positioned
//! diagnostics, plus the provenance digest and blob writing used by the
//! `pinhole` binary.
//!
//! - [`yaml`] builds a positioned node tree (duplicate keys, limits);
//! - [`fields`] gives typed access with diagnostics;
//! - [`compile`] lowers the tree to the model, checking names and references;
//! - [`diag`] renders `FILE:LINE:COL: error: message`;
//! - [`lint`] warns about rules that can never fire, roles no identity can
//!   hold and broad grants (with [`analysis`]: glob and constraint
//!   implication, sound but incomplete);
//! - [`scenario`] decides one identity's request with the filter's own
//!   identity, MCP and evaluator code; [`suite`] parses and runs policy test
//!   files on it, [`junit`] reports them, [`explain`] renders one run;
//! - [`diff`] states the access change between two compiled policies;
//! - [`signing`] reads and makes the Ed25519 keys that sign blobs.
//!
//! Every subcommand starts from [`load`]: it returns the policy together
//! with every diagnostic.

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod analysis;
pub mod argpath;
pub mod compile;
pub mod diag;
pub mod diff;
pub mod duration;
pub mod explain;
pub mod fields;
pub mod grants;
pub mod junit;
pub mod lint;
pub mod scenario;
pub mod signing;
pub mod suggest;
pub mod suite;
pub mod yaml;

use std::path::{Path, PathBuf};

use pinhole_filter::policy::blob::{self, Meta};
use pinhole_filter::policy::Policy;
use sha2::{Digest, Sha256};

pub use compile::{compile, Compiled, FileSource, Fs, JwksInput};
pub use diag::{Diagnostic, Severity, Span};

/// The `compiler` string recorded in blobs: `pinhole <version>`.
pub fn compiler_id() -> String {
    format!("pinhole {}", env!("CARGO_PKG_VERSION"))
}

/// A policy file read and checked.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file as named by the user (used in diagnostics).
    pub path: PathBuf,
    /// The source bytes.
    pub source: Vec<u8>,
    pub compiled: Compiled,
}

impl Loaded {
    /// Diagnostics rendered as `FILE:LINE:COL: severity: message` lines.
    pub fn rendered(&self) -> Vec<String> {
        let name = self.path.display().to_string();
        self.compiled
            .diagnostics
            .iter()
            .map(|d| d.render(&name))
            .collect()
    }

    /// Hex SHA-256 identifying the inputs (see [`source_sha256`]).
    pub fn source_sha256(&self) -> String {
        source_sha256(&self.source, &self.compiled.jwks)
    }
}

/// Read a policy file and check it. Only an unreadable policy file is an
/// `Err` (a usage error); everything about its content is a diagnostic.
pub fn load(path: &Path) -> std::io::Result<Loaded> {
    let source = read_limited(path, yaml::MAX_SOURCE_BYTES as u64)?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let compiled = compile(&source, base, &Fs);
    Ok(Loaded {
        path: path.to_owned(),
        source,
        compiled,
    })
}

/// Read at most `limit + 1` bytes (so an oversized file is reported, not
/// read whole).
fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    if f.metadata()?.is_dir() {
        return Err(std::io::Error::other("is a directory"));
    }
    let mut buf = Vec::new();
    f.take(limit + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The provenance digest recorded in the blob's `meta.source_sha256`:
/// SHA-256 over the policy source, then each embedded JWKS file in issuer
/// order, each input framed as its length (8 bytes, big endian) followed by
/// its bytes. The framing keeps the inputs apart: moving bytes from one file
/// to the next changes the digest.
pub fn source_sha256(source: &[u8], jwks: &[JwksInput]) -> String {
    let mut h = Sha256::new();
    for part in std::iter::once(source).chain(jwks.iter().map(|j| j.bytes.as_slice())) {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    blob::hex(&h.finalize())
}

/// Counts shown in summaries: issuers, roles, targets, rules (and masking
/// rules, when there are any).
pub fn summary(p: &Policy) -> String {
    let mut s = format!(
        "{}, {}, {}, {}",
        diag::plural(p.issuers.len(), "issuer"),
        diag::plural(p.roles.len(), "role"),
        diag::plural(p.targets.len(), "target"),
        diag::plural(p.rules.len(), "rule"),
    );
    if !p.masking.is_empty() {
        s.push_str(&format!(
            ", {}",
            diag::plural(p.masking.len(), "masking rule")
        ));
    }
    s
}

/// Encode a compiled policy as a blob with its provenance.
pub fn encode(
    loaded: &Loaded,
    policy: &Policy,
    source_date_epoch: Option<u64>,
) -> Result<Vec<u8>, blob::BlobError> {
    let meta = Meta {
        compiler: compiler_id(),
        source_sha256: loaded.source_sha256(),
        source_date_epoch,
    };
    blob::encode(policy, &meta)
}

/// Parse `SOURCE_DATE_EPOCH` (decimal seconds since the Unix epoch).
pub fn parse_source_date_epoch(v: &str) -> Result<u64, String> {
    if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "SOURCE_DATE_EPOCH must be a non-negative integer number of seconds, got {v:?}"
        ));
    }
    v.parse::<u64>()
        .map_err(|_| format!("SOURCE_DATE_EPOCH is out of range: {v:?}"))
}

/// Write `bytes` to `path` atomically: a temporary file in the same
/// directory, flushed to disk, then renamed over `path`. Readers (Envoy
/// watching the file) see either the old or the new content, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the output path names no file"))?;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{nonce}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Persist the rename itself (best effort: not every platform can
        // open a directory).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
