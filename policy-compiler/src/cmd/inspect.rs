//! `pinhole inspect BLOB`.

use std::path::PathBuf;

use pinhole_filter::policy::blob::{self, Blob};
use pinhole_filter::policy::{Effect, Policy};
use policy_compiler::diag::plural;

use super::{usage_error, Exit, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A blob written by `pinhole compile`.
    pub blob: PathBuf,
    /// Check that the blob is signed by this Ed25519 public key (its base64 text, or a file
    /// holding it such as KEY.pub of `pinhole keygen`, or a PEM public key), as a filter with
    /// this `publisher_key` would. Exit 1 when it is unsigned or not signed by that key.
    #[arg(long, value_name = "PUB")]
    pub verify_key: Option<String>,
    /// Output format. `json` prints {"format_version", "digest", "size", "signature", "meta",
    /// "policy"} with the whole decoded policy on stdout; `signature` is null (unsigned) or
    /// {"algorithm": "Ed25519", "key_id", "verified"}.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

pub fn run(a: &Args) -> Exit {
    let publisher = match a.verify_key.as_deref() {
        Some(k) => match policy_compiler::signing::load_public_key("--verify-key", k) {
            Ok(pk) => Some(pk),
            Err(e) => return usage_error(e),
        },
        None => None,
    };
    let bytes = match std::fs::read(&a.blob) {
        Ok(b) => b,
        Err(e) => return usage_error(format!("cannot read {}: {e}", a.blob.display())),
    };
    let b = match blob::decode(&bytes) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: error: {e}", a.blob.display());
            return Exit::Policy;
        }
    };
    if let Some(pk) = &publisher {
        if let Err(e) = blob::verify(&bytes, pk) {
            eprintln!("{}: error: {e}", a.blob.display());
            return Exit::Policy;
        }
    }
    let verified = publisher.is_some();
    match a.format {
        Format::Json => {
            let doc = serde_json::json!({
                "format_version": b.format_version,
                "digest": b.digest,
                "size": bytes.len(),
                "signature": b.signature.map(|s| serde_json::json!({
                    "algorithm": "Ed25519",
                    "key_id": s.key_id_hex(),
                    "verified": verified,
                })),
                "meta": b.meta,
                "policy": b.policy,
            });
            println!("{doc}");
        }
        Format::Human => print!("{}", human(&a.blob, bytes.len(), &b, verified)),
    }
    Exit::Ok
}

fn human(path: &std::path::Path, size: usize, b: &Blob, verified: bool) -> String {
    let p: &Policy = &b.policy;
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        out.push_str(&format!("{k:<18} {v}\n"));
    };
    line("blob:", format!("{} ({size} bytes)", path.display()));
    line("format version:", b.format_version.to_string());
    line("digest:", format!("sha256:{}", b.digest));
    line(
        "signature:",
        match (&b.signature, verified) {
            (None, _) => "none (unsigned)".into(),
            (Some(s), true) => format!(
                "Ed25519, key id {}, verified with --verify-key",
                s.key_id_hex()
            ),
            (Some(s), false) => format!(
                "Ed25519, key id {} (not checked: give --verify-key PUB)",
                s.key_id_hex()
            ),
        },
    );
    line("compiler:", b.meta.compiler.clone());
    line("source sha256:", b.meta.source_sha256.clone());
    line(
        "source date:",
        match b.meta.source_date_epoch {
            Some(e) => format!("{e} ({})", utc(e)),
            None => "not recorded (SOURCE_DATE_EPOCH was unset)".into(),
        },
    );
    line("policy name:", p.name.clone().unwrap_or_else(|| "-".into()));
    line("issuers:", p.issuers.len().to_string());
    for i in &p.issuers {
        line(
            "",
            format!(
                "{}: {} (audiences {}; {}; {})",
                i.name,
                i.issuer,
                i.audiences.join(", "),
                i.algorithms
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                plural(i.keys.len(), "key")
            ),
        );
    }
    line("roles:", p.roles.len().to_string());
    line("targets:", p.targets.len().to_string());
    for t in &p.targets {
        let rules = p.rules.iter().filter(|r| r.target == t.name).count();
        let masking = p.masking.iter().filter(|m| m.target == t.name).count();
        let mut extra = String::new();
        if masking > 0 {
            extra.push_str(&format!(", {}", plural(masking, "masking rule")));
        }
        if let Some(env) = &t.mask_key_env {
            extra.push_str(&format!(", mask key from ${env}"));
        }
        if t.forward_token {
            extra.push_str(", forwards the token");
        }
        line(
            "",
            format!(
                "{}: {} ({}{extra})",
                t.name,
                t.protocol.as_str(),
                plural(rules, "rule"),
            ),
        );
    }
    let count = |e: Effect| p.rules.iter().filter(|r| r.effect == e).count();
    line(
        "rules:",
        format!(
            "{} ({} allow, {} deny, {} review)",
            p.rules.len(),
            count(Effect::Allow),
            count(Effect::Deny),
            count(Effect::Review)
        ),
    );
    if !p.approvers.is_empty() || !p.elevation.is_empty() || !p.grants.is_empty() {
        line(
            "approvals:",
            format!(
                "{}, {}, {}",
                plural(p.approvers.len(), "approver"),
                plural(p.elevation.len(), "elevation rule"),
                plural(p.grants.len(), "grant")
            ),
        );
        for t in &p.grants {
            match pinhole_filter::grant::verify(t, p) {
                Ok(g) => line(
                    "",
                    policy_compiler::grants::describe(&g.claims)
                        .replace('\n', "\n                "),
                ),
                Err(e) => line("", format!("a grant the filter will refuse: it {e}")),
            }
        }
    }
    line("masking:", plural(p.masking.len(), "rule"));
    for m in &p.masking {
        line(
            "",
            format!(
                "{} on {}: {}",
                m.id,
                m.target,
                policy_compiler::diff::mask_rule_text(m)
            ),
        );
    }
    line(
        "revoked:",
        format!(
            "{}, {}",
            plural(p.revoked.subjects.len(), "subject"),
            plural(p.revoked.token_ids.len(), "token id")
        ),
    );
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (proleptic Gregorian).
fn utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::utc(951_782_400), "2000-02-29T00:00:00Z");
    }
}
