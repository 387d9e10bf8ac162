//! `pinhole compile FILE -o BLOB`.

use std::path::PathBuf;

use pinhole_filter::policy::blob;

use super::{diagnostics_json, report, sign_key, usage_error, Exit, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file (YAML). JWKS paths inside it are relative to its directory.
    pub file: PathBuf,
    /// Where to write the blob. It is replaced atomically (temporary file in the same
    /// directory, then rename), so a watcher never sees a partial blob.
    #[arg(short, long, value_name = "BLOB")]
    pub output: PathBuf,
    /// Treat warnings as errors (exit 1 and write nothing when there are any).
    #[arg(long)]
    pub deny_warnings: bool,
    /// Sign the blob with this Ed25519 private key (PEM, from `pinhole keygen`). Signing is
    /// deterministic: the same policy and key always give the same bytes. A filter configured
    /// with the matching `publisher_key` loads only blobs signed with it.
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<PathBuf>,
    /// Grants to ship with the policy (repeatable): files from `pinhole approve` /
    /// `pinhole elevate`, or directories of `*.grant` files. Each is checked against the policy
    /// (signature, approver, rule, validity); expired ones are left out, any other problem
    /// writes nothing.
    #[arg(long, value_name = "PATH")]
    pub grants: Vec<PathBuf>,
    /// Output format. `json` prints {"file", "ok", "errors", "warnings", "diagnostics",
    /// "output", "size", "digest", "signed_by"} on stdout (`output`, `size`, `digest` are null
    /// when nothing was written; `signed_by` is the key id, or null).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

pub fn run(a: &Args) -> Exit {
    // Usage problems first, before any work.
    let epoch = match super::source_date_epoch() {
        Ok(e) => e,
        Err(e) => return e,
    };
    let key = match sign_key(a.sign_key.as_deref()) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let signed_by = key
        .as_ref()
        .map(|k| policy_compiler::signing::key_id_hex(&k.pk));
    let loaded = match policy_compiler::load(&a.file) {
        Ok(l) => l,
        Err(e) => return usage_error(format!("cannot read {}: {e}", a.file.display())),
    };
    let c = &loaded.compiled;
    let json_doc = |ok: bool, written: Option<(usize, &str)>| {
        serde_json::json!({
            "file": a.file.display().to_string(),
            "ok": ok,
            "errors": c.error_count(),
            "warnings": c.warning_count(),
            "diagnostics": diagnostics_json(&c.diagnostics),
            "output": written.map(|_| a.output.display().to_string()),
            "size": written.map(|(s, _)| s),
            "digest": written.map(|(_, d)| d.to_owned()),
            "signed_by": written.and(signed_by.clone()),
        })
    };
    let acceptable = c.error_count() == 0 && !(a.deny_warnings && c.warning_count() > 0);
    if a.format == Format::Json {
        if !acceptable {
            println!("{}", json_doc(false, None));
            return Exit::Policy;
        }
    } else if !report(&loaded, a.deny_warnings) {
        eprintln!("pinhole: no blob written");
        return Exit::Policy;
    }
    let Some(policy) = &loaded.compiled.policy else {
        return Exit::Policy;
    };
    let policy = match super::with_grants(policy, &a.grants) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut bytes = match policy_compiler::encode(&loaded, &policy, epoch) {
        Ok(b) => b,
        Err(e) => return usage_error(format!("cannot encode the blob: {e}")),
    };
    if let Some(k) = &key {
        bytes = match blob::sign(&bytes, k) {
            Ok(b) => b,
            Err(e) => return usage_error(format!("cannot sign the blob: {e}")),
        };
    }
    // Read back what we are about to write: the blob must load in the filter
    // (and, signed, verify with the key's public half).
    let checked = blob::decode(&bytes).and_then(|b| match &key {
        Some(k) => blob::verify(&bytes, &k.pk).map(|_| b.digest),
        None => Ok(b.digest),
    });
    let digest = match checked {
        Ok(d) => d,
        Err(e) => {
            return usage_error(format!(
                "internal error: the encoded blob does not decode: {e}"
            ))
        }
    };
    if let Err(e) = policy_compiler::write_atomic(&a.output, &bytes) {
        return usage_error(format!("cannot write {}: {e}", a.output.display()));
    }
    match a.format {
        Format::Json => println!("{}", json_doc(true, Some((bytes.len(), &digest)))),
        Format::Human => println!(
            "wrote {} ({} bytes, digest {digest}{})",
            a.output.display(),
            bytes.len(),
            signed_by
                .as_ref()
                .map(|id| format!(", signed by key {id}"))
                .unwrap_or_default()
        ),
    }
    Exit::Ok
}
