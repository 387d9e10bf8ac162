//! `pinhole check FILE`.

use std::path::PathBuf;

use policy_compiler::diag::plural;

use super::{diagnostics_json, report, usage_error, Exit, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file (YAML). JWKS paths inside it are relative to its directory.
    pub file: PathBuf,
    /// Treat warnings as errors (exit 1 when there are any).
    #[arg(long)]
    pub deny_warnings: bool,
    /// Output format. `json` prints {"file", "ok", "errors", "warnings", "diagnostics":
    /// [{"severity", "line", "col", "message"}], "counts"} on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

pub fn run(a: &Args) -> Exit {
    let loaded = match policy_compiler::load(&a.file) {
        Ok(l) => l,
        Err(e) => return usage_error(format!("cannot read {}: {e}", a.file.display())),
    };
    let c = &loaded.compiled;
    let ok = c.error_count() == 0 && !(a.deny_warnings && c.warning_count() > 0);
    if a.format == Format::Json {
        let diags = diagnostics_json(&c.diagnostics);
        let counts = c.policy.as_ref().map(|p| {
            serde_json::json!({
                "issuers": p.issuers.len(),
                "roles": p.roles.len(),
                "targets": p.targets.len(),
                "rules": p.rules.len(),
                "masking": p.masking.len(),
            })
        });
        let doc = serde_json::json!({
            "file": a.file.display().to_string(),
            "ok": ok,
            "errors": c.error_count(),
            "warnings": c.warning_count(),
            "diagnostics": diags,
            "counts": counts,
        });
        println!("{doc}");
        return if ok { Exit::Ok } else { Exit::Policy };
    }
    if !report(&loaded, a.deny_warnings) {
        return Exit::Policy;
    }
    if let Some(p) = &c.policy {
        let warnings = if c.warning_count() > 0 {
            format!(" with {}", plural(c.warning_count(), "warning"))
        } else {
            String::new()
        };
        println!(
            "{}: ok{warnings} ({})",
            a.file.display(),
            policy_compiler::summary(p)
        );
    }
    Exit::Ok
}
