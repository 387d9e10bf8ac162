//! Grant files for `--grants` (compile, push, istio) and the grants
//! `pinhole approve` / `pinhole elevate` issue.
//!
//! A grant file holds one or more grant tokens (`pinhole-grant.v1.…`), one
//! per line; blank lines and lines starting with `#` are ignored. A
//! directory given to `--grants` contributes every `*.grant` file in it
//! (sorted by name, not recursive).

use std::path::{Path, PathBuf};

use pinhole_filter::grant::{self, GrantClaims, GrantKind};
use pinhole_filter::policy::Policy;

/// The longest grant file read.
pub const MAX_GRANT_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The grants to ship, and notes for the user (expired grants left out).
#[derive(Debug, Default)]
pub struct GrantsRead {
    pub tokens: Vec<String>,
    pub notes: Vec<String>,
}

/// Every grant file named by `paths` (files, or directories of `*.grant`).
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("cannot read directory {}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "grant") && f.is_file())
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Read and check grants against `policy` at `now`: signature, approver,
/// fit with the rule or elevation rule, self-approval. Expired grants are
/// left out with a note; any other problem is an error naming the file and
/// line (nothing is shipped then).
pub fn read(paths: &[PathBuf], policy: &Policy, now: u64) -> Result<GrantsRead, Vec<String>> {
    let mut read = GrantsRead::default();
    let mut errors = Vec::new();
    let files = files(paths).map_err(|e| vec![e])?;
    for f in files {
        let text = match read_text(&f) {
            Ok(t) => t,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{}:{}", f.display(), i + 1);
            match grant::verify(line, policy) {
                Ok(g) if g.claims.expires <= now => read.notes.push(format!(
                    "{at}: grant {} expired at {}; left out",
                    g.claims.id,
                    when(g.claims.expires)
                )),
                Ok(_) => {
                    if !read.tokens.iter().any(|t| t == line) {
                        read.tokens.push(line.to_owned());
                    }
                }
                Err(e) => {
                    let id = grant::parse(line)
                        .map(|c| format!("grant {}", c.id))
                        .unwrap_or_else(|_| "this grant".into());
                    errors.push(format!("{at}: {id} {e}"));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(read)
    } else {
        Err(errors)
    }
}

fn read_text(f: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
    let mut buf = String::new();
    file.take(MAX_GRANT_FILE_BYTES)
        .read_to_string(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
    Ok(buf)
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 UTC of a Unix time.
pub fn when(secs: u64) -> String {
    pinhole_filter::audit::Rfc3339Millis(secs.saturating_mul(1000))
        .to_string()
        .replace(".000Z", "Z")
}

/// The approver of `policy` holding the key pair `pk`.
pub fn approver_of<'p>(
    policy: &'p Policy,
    pk: &ed25519_compact::PublicKey,
) -> Result<&'p pinhole_filter::policy::Approver, String> {
    let b64 = pinhole_filter::policy::blob::public_key_base64(pk);
    policy
        .approvers
        .iter()
        .find(|a| a.key == b64)
        .ok_or_else(|| {
            format!(
                "this key (public key {b64}) belongs to no approver of the policy; add it under \
                 `approvers:` (the `ed25519:` of a member), or use your own key"
            )
        })
}

/// Sign `claims` (its id is computed here) and check the result the way
/// the filter will.
pub fn issue(
    mut claims: GrantClaims,
    key: &ed25519_compact::KeyPair,
    policy: &Policy,
) -> Result<(String, GrantClaims), String> {
    claims.id = String::new();
    claims.id = grant::grant_id(&claims);
    let token = grant::sign(&claims, &key.sk);
    grant::verify(&token, policy)
        .map_err(|e| format!("the policy would refuse this grant: it {e}"))?;
    Ok((token, claims))
}

/// A human description of a grant (for `approve`, `elevate`, `inspect`).
pub fn describe(c: &GrantClaims) -> String {
    let mut s = format!(
        "grant {} ({}) for `{}`{}, signed by `{}`, valid {} → {}",
        c.id,
        c.kind.as_str(),
        c.subject,
        c.issuer
            .as_deref()
            .map(|i| format!(" of issuer `{i}`"))
            .unwrap_or_default(),
        c.approver,
        when(c.not_before),
        when(c.expires)
    );
    match c.kind {
        GrantKind::Approval => {
            s.push_str(&format!(
                "\n  approves request {} under rule `{}` on target `{}`",
                c.request.as_deref().unwrap_or("-"),
                c.rule.as_deref().unwrap_or("-"),
                c.target.as_deref().unwrap_or("-")
            ));
            if let Some(cmd) = &c.command {
                s.push_str(&format!("\n  command: {cmd}"));
            }
        }
        GrantKind::Elevation => s.push_str(&format!(
            "\n  grants role `{}`",
            c.role.as_deref().unwrap_or("-")
        )),
    }
    if let Some(r) = &c.reason {
        s.push_str(&format!("\n  reason: {r}"));
    }
    s
}
