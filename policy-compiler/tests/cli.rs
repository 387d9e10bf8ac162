//! The `pinhole` binary: exit codes, output, determinism, atomic writes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pinhole_filter::policy::blob;

fn pinhole(args: &[&str], cwd: &Path, epoch: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pinhole"));
    c.args(args)
        .current_dir(cwd)
        .env_remove("SOURCE_DATE_EPOCH");
    if let Some(e) = epoch {
        c.env("SOURCE_DATE_EPOCH", e);
    }
    c.output().unwrap()
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

const BAD: &str = "\
version: 1
identity:
  issuers:
    - { name: a, issuer: https://a.example, audiences: [x], jwks: keys/missing.json }
targets: { tools: { protocol: mcp } }
rules:
  - { id: r, allow: { roles: [nobody], target: tool } }
";

#[test]
fn check_valid_policy_exits_0_with_summary() {
    let d = example_copy();
    let o = pinhole(&["check", "policy.yaml"], d.path(), None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "policy.yaml: ok (2 issuers, 5 roles, 2 targets, 10 rules, 2 masking rules)\n"
    );
    assert_eq!(stderr(&o), "");
}

#[test]
fn check_runs_from_another_directory_with_relative_jwks() {
    let d = example_copy();
    let o = pinhole(&["check", "policy.yaml"], d.path(), None);
    assert_eq!(code(&o), 0);
    let parent = d.path().parent().unwrap();
    let rel = d.path().file_name().unwrap().to_str().unwrap().to_owned() + "/policy.yaml";
    let o = pinhole(&["check", &rel], parent, None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn check_errors_exit_1_with_all_diagnostics() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("bad.yaml"), BAD).unwrap();
    let o = pinhole(&["check", "bad.yaml"], d.path(), None);
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o), "");
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].starts_with("bad.yaml:4:67: error: cannot read JWKS file `keys/missing.json` ("),
        "{err}"
    );
    assert!(
        lines[0].ends_with("No such file or directory (os error 2)"),
        "{err}"
    );
    assert_eq!(
        lines[1],
        "bad.yaml:7:31: error: unknown role `nobody` (the policy defines no `roles`)"
    );
    assert_eq!(
        lines[2],
        "bad.yaml:7:48: error: unknown target `tool`; did you mean `tools`?"
    );
    assert_eq!(lines[3], "bad.yaml: 3 errors");
}

#[test]
fn check_json_format() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("bad.yaml"), BAD).unwrap();
    let o = pinhole(&["check", "--format", "json", "bad.yaml"], d.path(), None);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"], 3);
    assert_eq!(v["diagnostics"][1]["line"], 7);
    assert_eq!(v["diagnostics"][1]["col"], 31);
    assert_eq!(v["diagnostics"][1]["severity"], "error");
    let d = example_copy();
    let o = pinhole(&["check", "--format=json", "policy.yaml"], d.path(), None);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["counts"]["rules"], 10);
}

#[test]
fn warnings_pass_unless_denied() {
    let d = example_copy();
    let p = d.path().join("policy.yaml");
    let src = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        src.replace("roles:\n", "roles:\n  spare: { issuer: github }\n"),
    )
    .unwrap();
    let o = pinhole(&["check", "policy.yaml"], d.path(), None);
    assert_eq!(code(&o), 0);
    assert!(
        stdout(&o).starts_with("policy.yaml: ok with 1 warning ("),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("warning: role `spare` is not used by any rule"));
    let o = pinhole(&["check", "--deny-warnings", "policy.yaml"], d.path(), None);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).ends_with("policy.yaml: 1 warning (--deny-warnings)\n"),
        "{}",
        stderr(&o)
    );
    let o = pinhole(
        &["compile", "--deny-warnings", "policy.yaml", "-o", "p.blob"],
        d.path(),
        None,
    );
    assert_eq!(code(&o), 1);
    assert!(!d.path().join("p.blob").exists());
}

#[test]
fn unreadable_file_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    let o = pinhole(&["check", "nope.yaml"], d.path(), None);
    assert_eq!(code(&o), 2);
    assert_eq!(
        stderr(&o),
        "pinhole: error: cannot read nope.yaml: No such file or directory (os error 2)\n"
    );
    let o = pinhole(&["check", "."], d.path(), None);
    assert_eq!(code(&o), 2);
    let o = pinhole(&["compile", "nope.yaml", "-o", "x.blob"], d.path(), None);
    assert_eq!(code(&o), 2);
    let o = pinhole(&["inspect", "nope.blob"], d.path(), None);
    assert_eq!(code(&o), 2);
}

#[test]
fn bad_arguments_exit_2_and_help_names_exit_codes() {
    let d = tempfile::tempdir().unwrap();
    for args in [&["frobnicate"][..], &["check"], &["compile", "x.yaml"], &[]] {
        let o = pinhole(args, d.path(), None);
        assert_eq!(code(&o), 2, "{args:?}");
    }
    for args in [
        &["--help"][..],
        &["check", "--help"],
        &["compile", "--help"],
        &["inspect", "--help"],
    ] {
        let o = pinhole(args, d.path(), None);
        assert_eq!(code(&o), 0, "{args:?}");
        let out = stdout(&o);
        assert!(out.contains("Exit codes:"), "{out}");
        assert!(out.contains("1  the policy has errors"), "{out}");
        assert!(out.contains("2  usage error"), "{out}");
    }
    let o = pinhole(&["compile", "--help"], d.path(), None);
    assert!(stdout(&o).contains("SOURCE_DATE_EPOCH"));
    let o = pinhole(&["--version"], d.path(), None);
    assert_eq!(
        stdout(&o),
        format!("pinhole {}\n", env!("CARGO_PKG_VERSION"))
    );
}

fn compile_to(d: &Path, out: &str, epoch: Option<&str>) -> Vec<u8> {
    let o = pinhole(&["compile", "policy.yaml", "-o", out], d, epoch);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let bytes = std::fs::read(d.join(out)).unwrap();
    let b = blob::decode(&bytes).unwrap();
    assert_eq!(
        stdout(&o),
        format!("wrote {out} ({} bytes, digest {})\n", bytes.len(), b.digest)
    );
    bytes
}

#[test]
fn compile_is_deterministic() {
    let d = example_copy();
    let a = compile_to(d.path(), "a.blob", None);
    let b = compile_to(d.path(), "b.blob", None);
    assert_eq!(a, b);
    // Same bytes from a different working directory and output path.
    std::fs::create_dir(d.path().join("out")).unwrap();
    let parent = d.path().parent().unwrap();
    let name = d.path().file_name().unwrap().to_str().unwrap().to_owned();
    let o = pinhole(
        &[
            "compile",
            &format!("{name}/policy.yaml"),
            "-o",
            &format!("{name}/out/c.blob"),
        ],
        parent,
        None,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read(d.path().join("out/c.blob")).unwrap(), a);

    let blob = blob::decode(&a).unwrap();
    assert_eq!(
        blob.meta.compiler,
        format!("pinhole {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(blob.meta.source_date_epoch, None);
    assert_eq!(blob.meta.source_sha256.len(), 64);
}

#[test]
fn source_date_epoch_changes_only_the_meta() {
    let d = example_copy();
    let plain = blob::decode(&compile_to(d.path(), "a.blob", None)).unwrap();
    let e1 = compile_to(d.path(), "b.blob", Some("1700000000"));
    let e1b = compile_to(d.path(), "c.blob", Some("1700000000"));
    assert_eq!(e1, e1b, "same epoch, same bytes");
    let dated = blob::decode(&e1).unwrap();
    assert_eq!(dated.meta.source_date_epoch, Some(1_700_000_000));
    assert_eq!(dated.policy, plain.policy);
    assert_eq!(dated.meta.source_sha256, plain.meta.source_sha256);
    assert_eq!(dated.meta.compiler, plain.meta.compiler);
    assert_ne!(dated.digest, plain.digest);
    let o = pinhole(&["inspect", "b.blob"], d.path(), None);
    assert!(
        stdout(&o).contains("1700000000 (2023-11-14T22:13:20Z)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn invalid_source_date_epoch_is_a_usage_error() {
    let d = example_copy();
    for bad in ["", "yesterday", "-1", "1.5", "99999999999999999999999"] {
        let o = pinhole(
            &["compile", "policy.yaml", "-o", "x.blob"],
            d.path(),
            Some(bad),
        );
        assert_eq!(code(&o), 2, "{bad:?}");
        assert!(stderr(&o).contains("SOURCE_DATE_EPOCH"), "{}", stderr(&o));
        assert!(!d.path().join("x.blob").exists());
    }
}

#[test]
fn source_change_and_jwks_change_change_the_digest() {
    let d = example_copy();
    let a = blob::decode(&compile_to(d.path(), "a.blob", None)).unwrap();
    // A JWKS whitespace change leaves the policy equal but the provenance not.
    let k = d.path().join("keys/github.jwks.json");
    let mut text = std::fs::read_to_string(&k).unwrap();
    text.push('\n');
    std::fs::write(&k, text).unwrap();
    let b = blob::decode(&compile_to(d.path(), "b.blob", None)).unwrap();
    assert_eq!(a.policy, b.policy);
    assert_ne!(a.meta.source_sha256, b.meta.source_sha256);
}

#[test]
fn compile_with_errors_writes_nothing_and_keeps_the_old_blob() {
    let d = example_copy();
    let good = compile_to(d.path(), "p.blob", None);
    let p = d.path().join("policy.yaml");
    let src = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, src.replace("target: tools", "target: toolz")).unwrap();
    let o = pinhole(&["compile", "policy.yaml", "-o", "p.blob"], d.path(), None);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("unknown target `toolz`; did you mean `tools`?"));
    assert!(
        stderr(&o).ends_with("pinhole: no blob written\n"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(d.path().join("p.blob")).unwrap(), good);
    assert_eq!(leftovers(d.path()), Vec::<PathBuf>::new());
}

fn leftovers(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".tmp-"))
        .collect()
}

#[test]
fn compile_replaces_atomically_and_cleans_up() {
    let d = example_copy();
    std::fs::write(d.path().join("p.blob"), b"old").unwrap();
    let new = compile_to(d.path(), "p.blob", None);
    assert_eq!(std::fs::read(d.path().join("p.blob")).unwrap(), new);
    assert_eq!(leftovers(d.path()), Vec::<PathBuf>::new());
    // An output in a missing directory is a usage error.
    let o = pinhole(
        &["compile", "policy.yaml", "-o", "no/such/dir/p.blob"],
        d.path(),
        None,
    );
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).starts_with("pinhole: error: cannot write no/such/dir/p.blob: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn inspect_prints_the_blob() {
    let d = example_copy();
    let bytes = compile_to(d.path(), "p.blob", None);
    let b = blob::decode(&bytes).unwrap();
    let o = pinhole(&["inspect", "p.blob"], d.path(), None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "format version:    1\n".to_string(),
        format!("digest:            sha256:{}\n", b.digest),
        format!("compiler:          pinhole {}\n", env!("CARGO_PKG_VERSION")),
        format!("source sha256:     {}\n", b.meta.source_sha256),
        "source date:       not recorded (SOURCE_DATE_EPOCH was unset)\n".to_string(),
        "policy name:       acme-tools\n".to_string(),
        "issuers:           2\n".to_string(),
        "rules:             10 (7 allow, 2 deny, 1 review)\n".to_string(),
        "revoked:           1 subject, 0 token ids\n".to_string(),
    ] {
        assert!(out.contains(&want), "missing {want:?} in\n{out}");
    }
    let o = pinhole(&["inspect", "--format", "json", "p.blob"], d.path(), None);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["digest"], b.digest);
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["policy"]["rules"].as_array().unwrap().len(), 10);
}

#[test]
fn inspect_refuses_a_corrupt_blob_with_exit_1() {
    let d = example_copy();
    let mut bytes = compile_to(d.path(), "p.blob", None);
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    std::fs::write(d.path().join("flipped.blob"), &bytes).unwrap();
    let o = pinhole(&["inspect", "flipped.blob"], d.path(), None);
    assert_eq!(code(&o), 1);
    assert_eq!(
        stderr(&o),
        format!("flipped.blob: error: {}\n", blob::BlobError::DigestMismatch)
    );
    std::fs::write(d.path().join("text.blob"), b"version: 1\n").unwrap();
    let o = pinhole(&["inspect", "text.blob"], d.path(), None);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("not a pinhole policy blob"),
        "{}",
        stderr(&o)
    );
    std::fs::write(d.path().join("short.blob"), &bytes[..30]).unwrap();
    let o = pinhole(&["inspect", "short.blob"], d.path(), None);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
}
