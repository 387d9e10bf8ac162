//! `pinhole diff OLD NEW`.

use std::path::{Path, PathBuf};

use pinhole_filter::policy::{blob, Policy};

use super::{load_policy, usage_error, Exit, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy before the change: a YAML policy or a compiled blob.
    pub old: PathBuf,
    /// The policy after the change: a YAML policy or a compiled blob.
    pub new: PathBuf,
    /// Exit 1 when some change widens access or may widen it (direction `widens` or
    /// `changes`), like `git diff --exit-code`.
    #[arg(long)]
    pub exit_code: bool,
    /// Output format: `human` is Markdown (for a pull-request comment); `json` prints
    /// {"old", "new", "widened", "counts", "changes": [{"section", "direction", "group",
    /// "summary", "detail"}]}.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// A policy from YAML or, when the file starts with the blob magic, from a
/// compiled blob.
fn policy(path: &Path, format: Format) -> Result<Policy, Exit> {
    let head = std::fs::read(path)
        .map_err(|e| usage_error(format!("cannot read {}: {e}", path.display())))?;
    if head.starts_with(blob::MAGIC) {
        return match blob::decode(&head) {
            Ok(b) => Ok(b.policy),
            Err(e) => {
                eprintln!("{}: error: {e}", path.display());
                Err(Exit::Policy)
            }
        };
    }
    load_policy(path, format).map(|(_, p)| p)
}

pub fn run(a: &Args) -> Exit {
    let old = match policy(&a.old, a.format) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let new = match policy(&a.new, a.format) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let d = policy_compiler::diff::diff(
        &a.old.display().to_string(),
        &old,
        &a.new.display().to_string(),
        &new,
    );
    match a.format {
        Format::Json => println!("{}", serde_json::to_value(&d).unwrap_or_default()),
        Format::Human => print!("{}", policy_compiler::diff::markdown(&d)),
    }
    if a.exit_code && d.widened {
        Exit::Policy
    } else {
        Exit::Ok
    }
}
