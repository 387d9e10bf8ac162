//! `pinhole keygen --out KEY`: a new Ed25519 key pair for signing blobs.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use pinhole_filter::policy::blob;
use policy_compiler::signing;

use super::{usage_error, Exit, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the private key (PEM, PKCS#8; created with mode 0600). The public key
    /// goes to KEY.pub (base64, one line). Neither file may exist already.
    #[arg(short, long, value_name = "KEY")]
    pub out: PathBuf,
    /// Output format. `json` prints {"ok", "private_key", "public_key_file", "public_key",
    /// "key_id"} on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// `KEY.pub` next to `KEY`.
pub fn public_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Create `path` with `text`, failing if it exists; `private` files get
/// mode 0600 from the start (never readable by others, not even briefly).
fn create_new(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

pub fn run(a: &Args) -> Exit {
    let pub_path = public_path(&a.out);
    for p in [&a.out, &pub_path] {
        if p.exists() {
            return usage_error(format!(
                "{} exists; pinhole keygen never overwrites a key (remove it first, or choose another --out)",
                p.display()
            ));
        }
    }
    let kp = signing::generate();
    let public = blob::public_key_base64(&kp.pk);
    let id = signing::key_id_hex(&kp.pk);
    if let Err(e) = create_new(&a.out, &signing::private_key_pem(&kp), true) {
        return usage_error(format!("cannot write {}: {e}", a.out.display()));
    }
    if let Err(e) = create_new(&pub_path, &format!("{public}\n"), false) {
        // Do not leave a private key whose public half was not written.
        let _ = std::fs::remove_file(&a.out);
        return usage_error(format!("cannot write {}: {e}", pub_path.display()));
    }
    match a.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "private_key": a.out.display().to_string(),
                "public_key_file": pub_path.display().to_string(),
                "public_key": public,
                "key_id": id,
            })
        ),
        Format::Human => println!(
            "wrote {} (Ed25519 private key, mode 0600: keep it secret, e.g. as a CI secret)\n\
             wrote {} (public key: the filter's `publisher_key`)\n\
             public key: {public}\n\
             key id:     {id}",
            a.out.display(),
            pub_path.display()
        ),
    }
    Exit::Ok
}
