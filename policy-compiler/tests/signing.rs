//! Signed policies: `pinhole keygen`, `compile --sign-key`, `inspect
//! --verify-key`, `push`/`istio` with `--sign-key`/`--publisher-key`, and the
//! filter's `publisher_key` (Engine::from_plugin_config).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use pinhole_filter::engine::{Engine, PluginConfig};
use pinhole_filter::policy::blob;
use serde_json::Value;

fn pinhole(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pinhole"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn ok(o: &Output) -> String {
    assert_eq!(code(o), 0, "stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o));
    stdout(o)
}

/// A temp dir holding a copy of the mcp-tools example (policy + keys).
fn example_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = common::repo_root().join("examples/mcp-tools");
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::copy(src.join("policy.yaml"), dir.path().join("policy.yaml")).unwrap();
    for k in ["corp-sso.jwks.json", "github.jwks.json"] {
        std::fs::copy(src.join("keys").join(k), dir.path().join("keys").join(k)).unwrap();
    }
    dir
}

/// `pinhole keygen --out NAME --format json`: (public key base64, key id).
fn keygen(d: &Path, name: &str) -> (String, String) {
    let v: Value = serde_json::from_str(&ok(&pinhole(
        &["keygen", "--out", name, "--format", "json"],
        d,
    )))
    .unwrap();
    (
        v["public_key"].as_str().unwrap().to_owned(),
        v["key_id"].as_str().unwrap().to_owned(),
    )
}

fn plugin_config(target: &str, raw: &[u8], publisher_key: Option<&str>) -> Vec<u8> {
    let mut v = serde_json::json!({
        "target": target,
        "policy": base64::engine::general_purpose::STANDARD.encode(raw),
    });
    if let Some(k) = publisher_key {
        v["publisher_key"] = k.into();
    }
    v.to_string().into_bytes()
}

#[test]
fn keygen_writes_a_private_key_0600_and_its_public_key() {
    let d = tempfile::tempdir().unwrap();
    let out = ok(&pinhole(&["keygen", "--out", "pub.key"], d.path()));
    let public = std::fs::read_to_string(d.path().join("pub.key.pub")).unwrap();
    let public = public.trim_end();
    assert!(out.contains(&format!("public key: {public}\n")), "{out}");
    let pk = blob::public_key_from_base64(public).unwrap();
    assert!(
        out.contains(&format!("key id:     {}", blob::hex(&blob::key_id(&pk)))),
        "{out}"
    );
    let pem = std::fs::read_to_string(d.path().join("pub.key")).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert_eq!(
        ed25519_compact::KeyPair::from_pem(&pem).unwrap().pk,
        pk,
        "KEY.pub is the public half of KEY"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.path().join("pub.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwrites a key (or its .pub).
    let o = pinhole(&["keygen", "--out", "pub.key"], d.path());
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("never overwrites"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(d.path().join("pub.key")).unwrap(),
        pem
    );
    std::fs::write(d.path().join("other.pub"), "x").unwrap();
    assert_eq!(code(&pinhole(&["keygen", "--out", "other"], d.path())), 2);
    assert!(!d.path().join("other").exists());
    // Two keys differ.
    let (a, _) = keygen(d.path(), "a");
    let (b, _) = keygen(d.path(), "b");
    assert_ne!(a, b);
}

#[test]
fn compile_sign_key_is_deterministic_and_inspect_verifies() {
    let d = example_copy();
    let (public, id) = keygen(d.path(), "k");
    let (other, other_id) = keygen(d.path(), "o");
    let o = ok(&pinhole(
        &["compile", "policy.yaml", "-o", "s.blob", "--sign-key", "k"],
        d.path(),
    ));
    let signed = std::fs::read(d.path().join("s.blob")).unwrap();
    let b = blob::decode(&signed).unwrap();
    assert_eq!(
        o,
        format!(
            "wrote s.blob ({} bytes, digest {}, signed by key {id})\n",
            signed.len(),
            b.digest
        )
    );
    assert_eq!(b.signature.unwrap().key_id_hex(), id);
    // Same inputs, same key: the same bytes.
    ok(&pinhole(
        &["compile", "policy.yaml", "-o", "s2.blob", "--sign-key", "k"],
        d.path(),
    ));
    assert_eq!(std::fs::read(d.path().join("s2.blob")).unwrap(), signed);
    // The unsigned blob is the signed one without flag and trailer.
    ok(&pinhole(
        &["compile", "policy.yaml", "-o", "u.blob"],
        d.path(),
    ));
    let unsigned = std::fs::read(d.path().join("u.blob")).unwrap();
    assert_eq!(unsigned.len() + blob::TRAILER_LEN, signed.len());
    assert_eq!(unsigned[48..], signed[48..unsigned.len()]);
    assert_eq!(blob::decode(&unsigned).unwrap().digest, b.digest);
    // JSON names the signer.
    let v: Value = serde_json::from_str(&ok(&pinhole(
        &[
            "compile",
            "policy.yaml",
            "-o",
            "s3.blob",
            "--sign-key",
            "k",
            "--format",
            "json",
        ],
        d.path(),
    )))
    .unwrap();
    assert_eq!(v["signed_by"], id.as_str());

    // inspect: the key id, unchecked; checked with --verify-key (text or file).
    let out = ok(&pinhole(&["inspect", "s.blob"], d.path()));
    assert!(
        out.contains(&format!(
            "signature:         Ed25519, key id {id} (not checked: give --verify-key PUB)\n"
        )),
        "{out}"
    );
    let out = ok(&pinhole(&["inspect", "u.blob"], d.path()));
    assert!(
        out.contains("signature:         none (unsigned)\n"),
        "{out}"
    );
    for pubarg in [public.as_str(), "k.pub"] {
        let out = ok(&pinhole(
            &["inspect", "s.blob", "--verify-key", pubarg],
            d.path(),
        ));
        assert!(
            out.contains(&format!(
                "signature:         Ed25519, key id {id}, verified with --verify-key\n"
            )),
            "{out}"
        );
    }
    let v: Value = serde_json::from_str(&ok(&pinhole(
        &[
            "inspect",
            "s.blob",
            "--verify-key",
            "k.pub",
            "--format",
            "json",
        ],
        d.path(),
    )))
    .unwrap();
    assert_eq!(
        v["signature"],
        serde_json::json!({"algorithm": "Ed25519", "key_id": id, "verified": true})
    );
    let v: Value = serde_json::from_str(&ok(&pinhole(
        &["inspect", "u.blob", "--format", "json"],
        d.path(),
    )))
    .unwrap();
    assert_eq!(v["signature"], Value::Null);

    // Wrong key, unsigned, tampered: exit 1 with the reason.
    let o = pinhole(&["inspect", "s.blob", "--verify-key", &other], d.path());
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains(&format!(
            "signed by key {id}, but a signature by publisher key {other_id} is required"
        )),
        "{}",
        stderr(&o)
    );
    let o = pinhole(&["inspect", "u.blob", "--verify-key", "k.pub"], d.path());
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("is not signed"), "{}", stderr(&o));
    let mut bad = signed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(d.path().join("bad.blob"), &bad).unwrap();
    let o = pinhole(&["inspect", "bad.blob", "--verify-key", "k.pub"], d.path());
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("does not verify"), "{}", stderr(&o));
    // …but without --verify-key a bad signature is only decoded, not checked.
    ok(&pinhole(&["inspect", "bad.blob"], d.path()));
}

#[test]
fn key_errors_are_usage_errors() {
    let d = example_copy();
    keygen(d.path(), "k");
    for args in [
        &[
            "compile",
            "policy.yaml",
            "-o",
            "x.blob",
            "--sign-key",
            "missing",
        ][..],
        &[
            "compile",
            "policy.yaml",
            "-o",
            "x.blob",
            "--sign-key",
            "k.pub",
        ],
        &[
            "compile",
            "policy.yaml",
            "-o",
            "x.blob",
            "--sign-key",
            "policy.yaml",
        ],
        &["inspect", "x.blob", "--verify-key", "k"],
        &["inspect", "x.blob", "--verify-key", "AAAA"],
    ] {
        let o = pinhole(args, d.path());
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("pinhole: error: "), "{}", stderr(&o));
    }
    assert!(!d.path().join("x.blob").exists());
    // A private key readable by others: a warning, still signs.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(d.path().join("k"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let o = pinhole(
            &["compile", "policy.yaml", "-o", "x.blob", "--sign-key", "k"],
            d.path(),
        );
        ok(&o);
        assert!(
            stderr(&o).contains("is readable by other users"),
            "{}",
            stderr(&o)
        );
    }
}

fn ecds_config(doc: &Value) -> (PluginConfig, Vec<u8>, String) {
    let value = doc["resources"][0]["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let pc: PluginConfig = serde_json::from_str(&value).unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&pc.policy)
        .unwrap();
    (pc, raw, value)
}

#[test]
fn push_and_istio_carry_the_publisher_key() {
    let d = example_copy();
    let (public, id) = keygen(d.path(), "k");
    let (other, _) = keygen(d.path(), "o");
    let push = |extra: &[&str]| {
        let mut args = vec![
            "push",
            "policy.yaml",
            "--target",
            "tools",
            "--wasm",
            "f.wasm",
            "--out",
            "ecds.json",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        pinhole(&args, d.path())
    };
    let read = || {
        let doc: Value =
            serde_json::from_slice(&std::fs::read(d.path().join("ecds.json")).unwrap()).unwrap();
        ecds_config(&doc)
    };

    // --sign-key alone: signs, and sets publisher_key to its public key.
    let v: Value = serde_json::from_str(&ok(&push(&["--sign-key", "k"]))).unwrap();
    assert_eq!(v["publisher_key"], public.as_str());
    assert_eq!(v["signed_by"], id.as_str());
    let (pc, raw, text) = read();
    assert_eq!(pc.publisher_key.as_deref(), Some(public.as_str()));
    assert!(text.contains("\"publisher_key\""), "{text}");
    assert_eq!(
        blob::verify(&raw, &blob::public_key_from_base64(&public).unwrap())
            .unwrap()
            .key_id_hex(),
        id
    );
    Engine::from_plugin_config(text.as_bytes()).unwrap();

    // The usual CI flow: a blob signed in CI, pushed with the public key only.
    ok(&pinhole(
        &["compile", "policy.yaml", "-o", "s.blob", "--sign-key", "k"],
        d.path(),
    ));
    let signed = std::fs::read(d.path().join("s.blob")).unwrap();
    let mut args = vec![
        "push",
        "s.blob",
        "--target",
        "tools",
        "--wasm",
        "f.wasm",
        "--out",
        "ecds.json",
    ];
    args.extend_from_slice(&["--publisher-key", "k.pub"]);
    let o = pinhole(&args, d.path());
    let out = ok(&o);
    assert!(
        out.contains(&format!("signed by key {id} (the filter requires it)")),
        "{out}"
    );
    let (pc, raw, _) = read();
    assert_eq!(raw, signed, "a blob signed by the key is shipped unchanged");
    assert_eq!(pc.publisher_key.as_deref(), Some(public.as_str()));
    // Re-signing with the same key is a no-op too.
    let o = pinhole(
        &[
            "push",
            "s.blob",
            "--target",
            "tools",
            "--wasm",
            "f.wasm",
            "--out",
            "ecds.json",
            "--sign-key",
            "k",
        ],
        d.path(),
    );
    ok(&o);
    assert_eq!(read().1, signed);

    // A signed blob without a publisher key: shipped, with a warning, and
    // no publisher_key in the configuration.
    let o = pinhole(
        &[
            "push",
            "s.blob",
            "--target",
            "tools",
            "--wasm",
            "f.wasm",
            "--out",
            "ecds.json",
        ],
        d.path(),
    );
    ok(&o);
    assert!(
        stderr(&o).contains("no --publisher-key is given"),
        "{}",
        stderr(&o)
    );
    assert_eq!(read().0.publisher_key, None);

    // Refused, nothing written: another publisher key, an unsigned blob with
    // a publisher key, a blob signed by another key than --sign-key.
    let before = std::fs::read(d.path().join("ecds.json")).unwrap();
    let o = pinhole(
        &[
            "push",
            "s.blob",
            "--target",
            "tools",
            "--wasm",
            "f.wasm",
            "--out",
            "ecds.json",
            "--publisher-key",
            &other,
        ],
        d.path(),
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the filter would not load this policy: policy blob is signed by key"),
        "{}",
        stderr(&o)
    );
    let o = push(&["--publisher-key", "k.pub"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("is not signed"), "{}", stderr(&o));
    let o = pinhole(
        &[
            "push",
            "s.blob",
            "--target",
            "tools",
            "--wasm",
            "f.wasm",
            "--out",
            "ecds.json",
            "--sign-key",
            "o",
        ],
        d.path(),
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already signed by key"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(d.path().join("ecds.json")).unwrap(), before);

    // istio: pluginConfig.publisher_key and the signed-by annotation.
    let o = pinhole(
        &[
            "istio",
            "policy.yaml",
            "--target",
            "tools",
            "--namespace",
            "mcp",
            "--selector",
            "app=mcp",
            "--wasm-url",
            "oci://r.example/pinhole:1",
            "--wasm-sha256",
            &"ab".repeat(32),
            "--sign-key",
            "k",
        ],
        d.path(),
    );
    let manifest = ok(&o);
    let doc = &yaml_rust2::YamlLoader::load_from_str(&manifest).unwrap()[0];
    let pc = &doc["spec"]["pluginConfig"];
    assert_eq!(pc["publisher_key"].as_str(), Some(public.as_str()));
    assert_eq!(
        doc["metadata"]["annotations"]["pinhole/signed-by"].as_str(),
        Some(id.as_str())
    );
    // What istiod hands the filter loads.
    let mut m = serde_json::Map::new();
    for (k, v) in pc.as_hash().unwrap() {
        m.insert(
            k.as_str().unwrap().to_owned(),
            Value::String(v.as_str().unwrap().to_owned()),
        );
    }
    Engine::from_plugin_config(Value::Object(m).to_string().as_bytes()).unwrap();
}

#[test]
fn the_filter_enforces_publisher_key() {
    let d = example_copy();
    let (public, id) = keygen(d.path(), "k");
    let (other, other_id) = keygen(d.path(), "o");
    ok(&pinhole(
        &["compile", "policy.yaml", "-o", "s.blob", "--sign-key", "k"],
        d.path(),
    ));
    ok(&pinhole(
        &["compile", "policy.yaml", "-o", "u.blob"],
        d.path(),
    ));
    ok(&pinhole(
        &["compile", "policy.yaml", "-o", "o.blob", "--sign-key", "o"],
        d.path(),
    ));
    let signed = std::fs::read(d.path().join("s.blob")).unwrap();
    let unsigned = std::fs::read(d.path().join("u.blob")).unwrap();
    let by_other = std::fs::read(d.path().join("o.blob")).unwrap();
    let load = |raw: &[u8], key: Option<&str>| {
        Engine::from_plugin_config(&plugin_config("tools", raw, key))
    };

    // With a publisher key: only blobs it signed.
    let e = load(&signed, Some(&public)).unwrap();
    assert_eq!(e.digest, blob::decode(&signed).unwrap().digest);
    let err = load(&unsigned, Some(&public)).unwrap_err();
    assert!(
        err.contains(&format!(
            "policy blob is not signed, but a signature by publisher key {id} is required"
        )),
        "{err}"
    );
    let err = load(&by_other, Some(&public)).unwrap_err();
    assert!(
        err.contains(&format!(
            "signed by key {other_id}, but a signature by publisher key {id} is required"
        )),
        "{err}"
    );
    assert!(load(&by_other, Some(&other)).is_ok());
    // A signature byte or a payload byte (digest recomputed) altered.
    let mut bad_sig = signed.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x40;
    let err = load(&bad_sig, Some(&public)).unwrap_err();
    assert!(
        err.contains(&format!("signature by key {id} does not verify")),
        "{err}"
    );
    let n = unsigned.len();
    let mut payload = signed[48..n].to_vec();
    let pos = String::from_utf8_lossy(&payload)
        .find("acme-tools")
        .unwrap();
    payload[pos] = b'A';
    let mut forged = signed[..16].to_vec();
    use sha2::Digest as _;
    forged.extend_from_slice(&sha2::Sha256::digest(&payload));
    forged.extend_from_slice(&payload);
    forged.extend_from_slice(&signed[n..]);
    assert!(
        blob::decode(&forged).is_ok(),
        "well-formed, only the signature is wrong"
    );
    let err = load(&forged, Some(&public)).unwrap_err();
    assert!(err.contains("does not verify"), "{err}");
    // A publisher key that is not a key.
    for key in ["", "not base64!", "aGVsbG8="] {
        let err = load(&signed, Some(key)).unwrap_err();
        assert!(
            err.starts_with("plugin configuration `publisher_key` is "),
            "{err}"
        );
    }

    // Without one: signed and unsigned blobs load (the signature is not
    // checked), but decoding stays strict.
    assert!(load(&signed, None).is_ok());
    assert!(load(&unsigned, None).is_ok());
    assert!(load(&bad_sig, None).is_ok());
    let mut trailing = signed.clone();
    trailing.push(0);
    assert!(load(&trailing, None)
        .unwrap_err()
        .contains("payload length"));
    let mut trailing = unsigned.clone();
    trailing.extend_from_slice(&signed[n..]);
    assert!(load(&trailing, None)
        .unwrap_err()
        .contains("payload length"));
}
