//! Shared helpers for the integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use policy_compiler::{compile, Compiled, FileSource};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn example_keys() -> PathBuf {
    repo_root().join("examples/mcp-tools/keys")
}

/// JWKS files served from memory: `rsa.json`, `ec.json`, `ed.json`,
/// `both.json` (RSA + Ed25519), plus anything added.
pub struct MemFs(pub HashMap<PathBuf, Vec<u8>>);

impl MemFs {
    pub fn new() -> MemFs {
        let corp = std::fs::read(example_keys().join("corp-sso.jwks.json")).unwrap();
        let gh = std::fs::read(example_keys().join("github.jwks.json")).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&corp).unwrap();
        let keys = doc["keys"].as_array().unwrap();
        let rsa = serde_json::json!({ "keys": [keys[0].clone()] }).to_string();
        let ed = serde_json::json!({ "keys": [keys[1].clone()] }).to_string();
        let mut m = HashMap::new();
        m.insert(PathBuf::from("/p/rsa.json"), rsa.into_bytes());
        m.insert(PathBuf::from("/p/ed.json"), ed.into_bytes());
        m.insert(PathBuf::from("/p/ec.json"), gh);
        m.insert(PathBuf::from("/p/both.json"), corp);
        MemFs(m)
    }

    pub fn with(mut self, name: &str, content: &str) -> MemFs {
        self.0
            .insert(Path::new("/p").join(name), content.as_bytes().to_vec());
        self
    }
}

impl FileSource for MemFs {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.0.get(path).cloned().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "No such file (memfs)")
        })
    }
}

pub fn compile_with(src: &str, fs: &MemFs) -> Compiled {
    compile(src.as_bytes(), Path::new("/p"), fs)
}

pub fn compile_str(src: &str) -> Compiled {
    compile_with(src, &MemFs::new())
}

/// Diagnostics as `LINE:COL: severity: message`.
pub fn diags(src: &str) -> Vec<String> {
    render(&compile_str(src))
}

pub fn render(c: &Compiled) -> Vec<String> {
    c.diagnostics
        .iter()
        .map(|d| {
            format!(
                "{}:{}: {}: {}",
                d.span.line,
                d.span.col,
                d.severity.as_str(),
                d.message
            )
        })
        .collect()
}

/// Only the errors, as `LINE:COL: message`.
pub fn errors(src: &str) -> Vec<String> {
    let c = compile_str(src);
    if std::env::var_os("SNIPPETS").is_some() {
        for d in &c.diagnostics {
            let line = src.lines().nth(d.span.line - 1).unwrap_or("");
            let at: String = line.chars().skip(d.span.col - 1).take(20).collect();
            eprintln!(
                "SNIP {}:{} -> {at:?}   [{}]",
                d.span.line, d.span.col, d.message
            );
        }
    }
    c.diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{}:{}: {}", d.span.line, d.span.col, d.message))
        .collect()
}

/// A valid policy header (lines 1–9) that tests append roles, targets and
/// rules to. Line numbers in tests count from here: line 10 is the first
/// appended line.
pub const HEAD: &str = "\
version: 1
identity:
  issuers:
    - name: corp-sso
      issuer: https://sso.acme.example
      audiences: [pinhole]
      jwks: both.json
    - { name: github, issuer: https://token.actions.githubusercontent.com, audiences: [pinhole], jwks: ec.json }
  revoked: { subjects: [gone@acme.example] }
";

/// HEAD + the given text.
pub fn with_head(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

/// A complete valid policy body after HEAD (lines 10–17).
pub const BODY: &str = "\
roles:
  analyst: { issuer: corp-sso, groups: [analysts] }
  deployer: { issuer: github, claims: { repository: acme/api } }
targets:
  tools: { protocol: mcp }
  api: { protocol: http }
rules:
  - { id: a, allow: { roles: [analyst], target: tools, mcp: { tools: [search] } } }
  - { id: b, allow: { roles: [deployer], target: api, http: { methods: [GET] } } }
";

/// Run the built `pinhole` binary in `cwd`.
pub fn pinhole(args: &[&str], cwd: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pinhole"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

pub fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap()
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// A temp dir holding a copy of the mcp-tools example (policy, keys, tests).
pub fn example_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = repo_root().join("examples/mcp-tools");
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    for f in ["policy.yaml", "policy.test.yaml"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    for k in ["corp-sso.jwks.json", "github.jwks.json"] {
        std::fs::copy(src.join("keys").join(k), dir.path().join("keys").join(k)).unwrap();
    }
    dir
}

/// The compiled mcp-tools example policy.
pub fn example_policy() -> pinhole_filter::policy::Policy {
    let l = policy_compiler::load(&repo_root().join("examples/mcp-tools/policy.yaml")).unwrap();
    l.compiled.policy.unwrap()
}
