//! Policy signing keys: Ed25519 key pairs for `pinhole keygen`,
//! `--sign-key` (compile, push, istio) and public keys for `--publisher-key`
//! and `--verify-key`.
//!
//! - The private key file is PEM, PKCS#8 (`-----BEGIN PRIVATE KEY-----`),
//!   the format `openssl genpkey -algorithm ed25519` writes, so either tool
//!   can make it.
//! - A public key is the base64 (standard alphabet, padded, 44 characters)
//!   of its 32 bytes: the `KEY.pub` file of `pinhole keygen` and the
//!   filter's `publisher_key`. Where a command takes one (`PUB`), it is that
//!   text itself or a file holding it, or a PEM `PUBLIC KEY` file
//!   (`openssl pkey -in KEY -pubout`).
//! - A key id is the first 8 bytes of SHA-256 of the 32-byte public key, in
//!   hex: what a signed blob names, `pinhole inspect` shows and the filter
//!   logs.

use std::path::Path;

use ed25519_compact::{KeyPair, PublicKey};
use pinhole_filter::policy::blob;

/// A fresh key pair from the operating system's random generator.
pub fn generate() -> KeyPair {
    KeyPair::generate()
}

/// The private key file's contents (PKCS#8 PEM).
pub fn private_key_pem(kp: &KeyPair) -> String {
    kp.sk.to_pem()
}

/// The key id as 16 hex digits.
pub fn key_id_hex(pk: &PublicKey) -> String {
    blob::hex(&blob::key_id(pk))
}

/// Read a private key file (PEM, PKCS#8). The error is a sentence naming
/// the file.
pub fn load_signing_key(path: &Path) -> Result<KeyPair, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read signing key {}: {e}", path.display()))?;
    if !text.contains("-----BEGIN PRIVATE KEY-----") {
        let hint = if text.contains("PUBLIC KEY") || blob::public_key_from_base64(&text).is_ok() {
            " (this is a public key; signing needs the private key)"
        } else {
            ""
        };
        return Err(format!(
            "signing key {} is not an Ed25519 private key in PEM (`-----BEGIN PRIVATE KEY-----`, \
             as `pinhole keygen` or `openssl genpkey -algorithm ed25519` writes it){hint}",
            path.display()
        ));
    }
    KeyPair::from_pem(&text).map_err(|e| {
        format!(
            "signing key {} is not an Ed25519 private key ({e}); make one with `pinhole keygen`",
            path.display()
        )
    })
}

/// Whether a private key file can be read by users other than its owner
/// (Unix modes; false elsewhere).
pub fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path)
            .map(|m| m.is_file() && m.permissions().mode() & 0o077 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// A public key given as `PUB`: its base64 text, or a file holding the
/// base64 text or a PEM `PUBLIC KEY`. `flag` names the option in errors.
pub fn load_public_key(flag: &str, arg: &str) -> Result<PublicKey, String> {
    if let Ok(pk) = blob::public_key_from_base64(arg) {
        return Ok(pk);
    }
    let path = Path::new(arg);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let why = blob::public_key_from_base64(arg).err().unwrap_or_default();
            return Err(format!(
                "{flag} {arg:?} is neither a file nor a public key: as a key it {why}"
            ));
        }
        Err(e) => return Err(format!("{flag}: cannot read {}: {e}", path.display())),
    };
    if text.contains("PRIVATE KEY") {
        return Err(format!(
            "{flag} {} is a private key; give the public key (the KEY.pub file of `pinhole keygen`)",
            path.display()
        ));
    }
    if text.contains("-----BEGIN PUBLIC KEY-----") {
        return PublicKey::from_pem(&text).map_err(|e| {
            format!(
                "{flag} {} is not an Ed25519 public key in PEM ({e})",
                path.display()
            )
        });
    }
    blob::public_key_from_base64(&text)
        .map_err(|e| format!("{flag} {}: the key in it {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let kp = generate();
        let key = dir.path().join("k.pem");
        std::fs::write(&key, private_key_pem(&kp)).unwrap();
        assert_eq!(load_signing_key(&key).unwrap().pk, kp.pk);
        let b64 = blob::public_key_base64(&kp.pk);
        assert_eq!(load_public_key("--x", &b64).unwrap(), kp.pk);
        let pubf = dir.path().join("k.pub");
        std::fs::write(&pubf, format!("{b64}\n")).unwrap();
        assert_eq!(
            load_public_key("--x", pubf.to_str().unwrap()).unwrap(),
            kp.pk
        );
        let pem = dir.path().join("k.pub.pem");
        std::fs::write(&pem, kp.pk.to_pem()).unwrap();
        assert_eq!(
            load_public_key("--x", pem.to_str().unwrap()).unwrap(),
            kp.pk
        );
        // Mixed up: a private key where a public one goes, and back.
        let e = load_public_key("--x", key.to_str().unwrap()).unwrap_err();
        assert!(e.contains("is a private key"), "{e}");
        let e = load_signing_key(&pubf).unwrap_err();
        assert!(e.contains("this is a public key"), "{e}");
        let e = load_public_key("--x", "nope").unwrap_err();
        assert!(e.contains("neither a file nor a public key"), "{e}");
        assert_eq!(key_id_hex(&kp.pk).len(), 16);
    }
}
