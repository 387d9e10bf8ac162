//! `pinhole push` (the ECDS file Envoy watches) and `pinhole istio` (a
//! WasmPlugin manifest): structure of the output, atomic writes, errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use pinhole_filter::engine::{Engine, Listener, PluginConfig};
use pinhole_filter::policy::blob;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

const NETWORK_WASM: &str = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm";
const HTTP_WASM: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const TEC: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
const SHA: &str = "F3C0B5F6FF0AD5D2DF7C0AB7F8AC7D4264832ED0243D47759B856AC329B4E758";

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

/// A policy with one target of each protocol (its own, so the tests do not
/// follow the examples' changes).
const POLICY: &str = "\
version: 1
name: push-test
identity:
  issuers:
    - name: corp-sso
      issuer: https://sso.acme.example
      audiences: [pinhole]
      jwks: keys/corp-sso.jwks.json
roles:
  analyst: { issuer: corp-sso, groups: [analysts] }
targets:
  orders-db:
    protocol: postgres
    backend_user: orders_app
    backend_password_env: ORDERS_DB_PASSWORD
  tools: { protocol: mcp }
  status-api: { protocol: http }
rules:
  - id: analysts-read-orders
    allow: { roles: [analyst], target: orders-db, sql: { statements: [select], tables: [public.orders] } }
  - id: analysts-search
    allow: { roles: [analyst], target: tools, mcp: { tools: [search] } }
  - id: status-read
    allow: { roles: [analyst], target: status-api, http: { methods: [GET], paths: [/v1/status] } }
";

/// A temp dir holding `policy.yaml` (POLICY) and its JWKS under `keys/`.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::copy(
        common::example_keys().join("corp-sso.jwks.json"),
        dir.path().join("keys/corp-sso.jwks.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    dir
}

const P: &str = "policy.yaml";

/// A file the test names as the wasm module (push does not read it).
fn wasm(dir: &Path) -> String {
    let p = dir.join("pinhole_filter.wasm");
    std::fs::write(&p, b"\0asm").unwrap();
    p.display().to_string()
}

/// The files in `dir` besides the fixture (`policy.yaml`, `keys/`).
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "policy.yaml" && n != "keys")
        .collect();
    v.sort();
    v
}

/// The plugin configuration inside a DiscoveryResponse, checked against
/// the filter's own `PluginConfig` type (unknown keys are refused there).
fn plugin_config(doc: &Value) -> (PluginConfig, Vec<u8>) {
    let cfg = &doc["resources"][0]["typed_config"]["config"]["configuration"];
    assert_eq!(
        cfg["@type"],
        "type.googleapis.com/google.protobuf.StringValue"
    );
    let value = cfg["value"].as_str().unwrap();
    let pc: PluginConfig = serde_json::from_str(value).unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&pc.policy)
        .unwrap();
    (pc, raw)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn push_postgres_target_from_yaml() {
    let dir = setup();
    let wasm = wasm(dir.path());
    let out = dir.path().join("ecds.json");
    let o = pinhole(
        &[
            "push",
            P,
            "--target",
            "orders-db",
            "--wasm",
            &wasm,
            "--out",
            out.to_str().unwrap(),
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let summary: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let doc = read_json(&out);

    // The DiscoveryResponse.
    let digest = summary["digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64);
    assert_eq!(doc["version_info"], &digest[..12], "default version");
    assert_eq!(doc["type_url"], TEC);
    let resources = doc["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 1);
    let r = &resources[0];
    assert_eq!(r["@type"], TEC);
    assert_eq!(r["name"], "pinhole");
    assert_eq!(r["typed_config"]["@type"], NETWORK_WASM);
    let c = &r["typed_config"]["config"];
    assert_eq!(c["name"], "pinhole");
    assert_eq!(c["root_id"], "pinhole");
    assert_eq!(c["failure_policy"], "FAIL_CLOSED");
    let vm = &c["vm_config"];
    assert_eq!(vm["vm_id"], "pinhole-postgres");
    assert_eq!(vm["runtime"], "envoy.wasm.runtime.v8");
    assert_eq!(vm["code"]["local"]["filename"], wasm.as_str());
    assert_eq!(
        vm["environment_variables"],
        serde_json::json!({ "host_env_keys": ["ORDERS_DB_PASSWORD"] }),
        "the target's backend_password_env is passed by default"
    );

    // The plugin configuration is what the filter reads, and its blob is
    // the one `pinhole compile` writes.
    let (pc, raw) = plugin_config(&doc);
    assert_eq!(pc.target, "orders-db");
    assert_eq!(pc.listener, Listener::Postgres);
    let compiled = dir.path().join("policy.bin");
    let o = pinhole(
        &["compile", P, "-o", compiled.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(raw, std::fs::read(&compiled).unwrap());
    assert_eq!(blob::decode(&raw).unwrap().digest, digest);
    let engine = Engine::from_blob_with_env(&raw, "orders-db", &|_| Some("secret".into())).unwrap();
    assert_eq!(engine.target.name, "orders-db");

    // The summary.
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["file"], out.to_str().unwrap());
    assert_eq!(summary["name"], "pinhole");
    assert_eq!(summary["version"], &digest[..12]);
    assert_eq!(summary["target"], "orders-db");
    assert_eq!(summary["listener"], "postgres");
    assert_eq!(
        summary["bytes"].as_u64().unwrap(),
        std::fs::metadata(&out).unwrap().len()
    );

    // Written atomically: nothing but the inputs and outputs is left.
    assert_eq!(
        files_in(dir.path()),
        ["ecds.json", "pinhole_filter.wasm", "policy.bin"]
    );
}

#[test]
fn push_http_target_with_options() {
    let dir = setup();
    let wasm = wasm(dir.path());
    let o = pinhole(
        &[
            "push",
            P,
            "--target",
            "tools",
            "--wasm",
            "pinhole_filter.wasm", // relative: made absolute
            "--env-key",
            "EXTRA_ONE",
            "--env-key",
            "EXTRA_ONE",
            "--name",
            "pinhole-mcp",
            "--version",
            "v7",
            "--vm-id",
            "mcp-vm",
            "-o",
            "out.json",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(
            "wrote out.json: `pinhole-mcp` version v7 for target `tools` (mcp HTTP filter)"
        ),
        "{}",
        stdout(&o)
    );
    let doc = read_json(&dir.path().join("out.json"));
    assert_eq!(doc["version_info"], "v7");
    let r = &doc["resources"][0];
    assert_eq!(r["name"], "pinhole-mcp");
    assert_eq!(r["typed_config"]["@type"], HTTP_WASM);
    let c = &r["typed_config"]["config"];
    assert_eq!(c["name"], "pinhole-mcp");
    assert_eq!(c["vm_config"]["vm_id"], "mcp-vm");
    let canonical = std::fs::canonicalize(dir.path()).unwrap();
    let filename = PathBuf::from(
        c["vm_config"]["code"]["local"]["filename"]
            .as_str()
            .unwrap(),
    );
    assert!(filename.is_absolute());
    assert_eq!(
        std::fs::canonicalize(&filename).unwrap(),
        canonical.join("pinhole_filter.wasm")
    );
    let _ = wasm;
    assert_eq!(
        c["vm_config"]["environment_variables"]["host_env_keys"],
        serde_json::json!(["EXTRA_ONE"])
    );
    let (pc, _) = plugin_config(&doc);
    assert_eq!(pc.target, "tools");
    assert_eq!(pc.listener, Listener::Http);
}

#[test]
fn push_http_defaults_have_no_environment() {
    let dir = setup();
    let wasm = wasm(dir.path());
    let o = pinhole(
        &[
            "push",
            P,
            "--target",
            "status-api",
            "--wasm",
            &wasm,
            "--out",
            "-",
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // `--out -`: the configuration is stdout; the summary goes to stderr.
    let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let summary: Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    assert_eq!(summary["file"], "-");
    let vm = &doc["resources"][0]["typed_config"]["config"]["vm_config"];
    assert_eq!(vm["vm_id"], "pinhole");
    assert!(vm.get("environment_variables").is_none(), "{vm}");
    assert_eq!(doc["resources"][0]["typed_config"]["@type"], HTTP_WASM);
    assert_eq!(files_in(dir.path()), ["pinhole_filter.wasm"]);
}

#[test]
fn push_is_deterministic() {
    let dir = setup();
    let wasm = wasm(dir.path());
    let run = |out: &str| {
        let o = pinhole(
            &[
                "push",
                P,
                "--target",
                "orders-db",
                "--wasm",
                &wasm,
                "-o",
                out,
            ],
            dir.path(),
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        std::fs::read(dir.path().join(out)).unwrap()
    };
    assert_eq!(run("a.json"), run("b.json"));
}

#[test]
fn push_from_a_blob() {
    let dir = setup();
    let wasm = wasm(dir.path());
    let bin = dir.path().join("policy.bin");
    let o = pinhole(&["compile", P, "-o", bin.to_str().unwrap()], dir.path());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = pinhole(
        &[
            "push",
            "policy.bin",
            "--target",
            "orders-db",
            "--listener",
            "postgres",
            "--wasm",
            &wasm,
            "--out",
            "ecds.json",
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let doc = read_json(&dir.path().join("ecds.json"));
    let (pc, raw) = plugin_config(&doc);
    assert_eq!(
        raw,
        std::fs::read(&bin).unwrap(),
        "the blob is shipped as is"
    );
    assert_eq!(pc.listener, Listener::Postgres);
    let summary: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["digest"], blob::decode(&raw).unwrap().digest);
}

#[test]
fn push_refuses_a_corrupt_blob_and_keeps_the_old_file() {
    let dir = setup();
    let wasm = wasm(dir.path());
    let bin = dir.path().join("policy.bin");
    let o = pinhole(&["compile", P, "-o", bin.to_str().unwrap()], dir.path());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut bytes = std::fs::read(&bin).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&bin, &bytes).unwrap();
    std::fs::write(dir.path().join("ecds.json"), "previous").unwrap();
    for format in ["human", "json"] {
        let o = pinhole(
            &[
                "push",
                "policy.bin",
                "--target",
                "orders-db",
                "--wasm",
                &wasm,
                "--out",
                "ecds.json",
                "--format",
                format,
            ],
            dir.path(),
        );
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert!(stderr(&o).contains("digest mismatch"), "{}", stderr(&o));
        if format == "json" {
            let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
            assert_eq!(doc["ok"], false);
        }
    }
    // A truncated blob too.
    std::fs::write(&bin, &bytes[..20]).unwrap();
    let o = pinhole(
        &[
            "push",
            "policy.bin",
            "--target",
            "orders-db",
            "--wasm",
            &wasm,
            "--out",
            "ecds.json",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ecds.json")).unwrap(),
        "previous"
    );
    assert_eq!(
        files_in(dir.path()),
        ["ecds.json", "pinhole_filter.wasm", "policy.bin"]
    );
}

#[test]
fn push_refuses_an_invalid_policy() {
    let dir = setup();
    let wasm = wasm(dir.path());
    std::fs::write(
        dir.path().join("bad.yaml"),
        "version: 1\ntargets: { db: { protocol: postgres } }\nrules: []\n",
    )
    .unwrap();
    let o = pinhole(
        &[
            "push",
            "bad.yaml",
            "--target",
            "db",
            "--wasm",
            &wasm,
            "--out",
            "ecds.json",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("bad.yaml:"), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing written"), "{}", stderr(&o));
    let o = pinhole(
        &[
            "push",
            "bad.yaml",
            "--target",
            "db",
            "--wasm",
            &wasm,
            "--out",
            "ecds.json",
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 1);
    let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["ok"], false);
    assert!(doc["errors"].as_u64().unwrap() >= 1);
    assert_eq!(files_in(dir.path()), ["bad.yaml", "pinhole_filter.wasm"]);
}

#[test]
fn push_usage_errors() {
    let dir = setup();
    let wasm = wasm(dir.path());
    let orders = P.to_string();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--target", "nope", "--wasm", &wasm, "-o", "x.json"],
            "defines no such target (targets: orders-db, tools, status-api)",
        ),
        (
            &[
                "--target",
                "orders-db",
                "--listener",
                "http",
                "--wasm",
                &wasm,
                "-o",
                "x.json",
            ],
            "--listener http does not fit target `orders-db`: it is a postgres target",
        ),
        (
            &[
                "--target",
                "tools",
                "--listener",
                "postgres",
                "--wasm",
                &wasm,
                "-o",
                "x.json",
            ],
            "--listener postgres does not fit target `tools`",
        ),
        (&["--target", "orders-db", "-o", "x.json"], "--wasm"),
        (
            &[
                "--target",
                "orders-db",
                "--wasm",
                &wasm,
                "--wasm-url",
                "https://x/p.wasm",
                "-o",
                "x.json",
            ],
            "cannot be used with",
        ),
        (
            &[
                "--target",
                "orders-db",
                "--wasm-url",
                "https://x/p.wasm",
                "--wasm-sha256",
                SHA,
                "-o",
                "x.json",
            ],
            "--wasm-cluster",
        ),
        (
            &[
                "--target",
                "orders-db",
                "--wasm-url",
                "https://x/p.wasm",
                "--wasm-sha256",
                "abc",
                "--wasm-cluster",
                "c",
                "-o",
                "x.json",
            ],
            "64 hex digits",
        ),
        (
            &[
                "--target",
                "orders-db",
                "--wasm-url",
                "oci://x/p:1",
                "--wasm-sha256",
                SHA,
                "--wasm-cluster",
                "c",
                "-o",
                "x.json",
            ],
            "http:// or https://",
        ),
        (
            &[
                "--target",
                "orders-db",
                "--wasm",
                &wasm,
                "--env-key",
                "A-B",
                "-o",
                "x.json",
            ],
            "not an environment variable name",
        ),
        (&["--target", "orders-db", "--wasm", &wasm], "--out"),
        (
            &[
                "--target",
                "orders-db",
                "--wasm",
                &wasm,
                "-o",
                "no/such/dir/x.json",
            ],
            "cannot write no/such/dir/x.json",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["push", orders.as_str()];
        all.extend_from_slice(args);
        let o = pinhole(&all, dir.path());
        assert_eq!(code(&o), 2, "{all:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{all:?}: {}", stderr(&o));
    }
    let o = pinhole(
        &[
            "push",
            "missing.yaml",
            "--target",
            "t",
            "--wasm",
            &wasm,
            "-o",
            "x.json",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("cannot read missing.yaml"));
    assert_eq!(files_in(dir.path()), ["pinhole_filter.wasm"]);
}

#[test]
fn push_remote_code() {
    let dir = setup();
    let o = pinhole(
        &[
            "push",
            P,
            "--target",
            "orders-db",
            "--wasm-url",
            "https://artifacts.example/pinhole_filter.wasm",
            "--wasm-sha256",
            SHA,
            "--wasm-cluster",
            "artifacts",
            "-o",
            "ecds.json",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let doc = read_json(&dir.path().join("ecds.json"));
    let c = &doc["resources"][0]["typed_config"]["config"]["vm_config"]["code"];
    assert_eq!(
        *c,
        serde_json::json!({
            "remote": {
                "http_uri": {
                    "uri": "https://artifacts.example/pinhole_filter.wasm",
                    "cluster": "artifacts",
                    "timeout": "30s",
                },
                "sha256": SHA.to_ascii_lowercase(),
            }
        })
    );
}

#[test]
fn push_replaces_the_file_atomically() {
    let dir = setup();
    let wasm = wasm(dir.path());
    std::fs::write(dir.path().join("ecds.json"), "old").unwrap();
    let o = pinhole(
        &[
            "push",
            P,
            "--target",
            "orders-db",
            "--wasm",
            &wasm,
            "-o",
            "ecds.json",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let doc = read_json(&dir.path().join("ecds.json"));
    assert_eq!(doc["resources"][0]["name"], "pinhole");
    assert_eq!(files_in(dir.path()), ["ecds.json", "pinhole_filter.wasm"]);
    // An unwritable directory: exit 2, nothing left behind.
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let o = pinhole(
        &[
            "push",
            P,
            "--target",
            "orders-db",
            "--wasm",
            &wasm,
            "-o",
            "ro",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(files_in(&ro).is_empty());
    assert_eq!(
        files_in(dir.path()),
        ["ecds.json", "pinhole_filter.wasm", "ro"]
    );
}

// ---------------------------------------------------------------- istio

fn yaml(text: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(text).unwrap();
    assert_eq!(docs.len(), 1, "one document");
    docs.remove(0)
}

/// What Istio does with `pluginConfig`: serialise it as JSON into the
/// filter's `configuration`. The filter must accept that JSON.
fn istio_plugin_config(doc: &Yaml) -> (PluginConfig, Vec<u8>) {
    let pc = doc["spec"]["pluginConfig"].as_hash().unwrap();
    let mut m = serde_json::Map::new();
    for (k, v) in pc {
        m.insert(
            k.as_str().unwrap().to_owned(),
            Value::String(v.as_str().unwrap().to_owned()),
        );
    }
    let json = Value::Object(m).to_string();
    let pc: PluginConfig = serde_json::from_str(&json).unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&pc.policy)
        .unwrap();
    (pc, raw)
}

#[test]
fn istio_manifest_for_a_postgres_target() {
    let dir = setup();
    let o = pinhole(
        &[
            "istio",
            P,
            "--target",
            "orders-db",
            "--namespace",
            "shop",
            "--selector",
            "app=orders-db",
            "--selector",
            "tier=data",
            "--port",
            "5432",
            "--wasm-url",
            "oci://registry.example/pinhole:0.1.0",
            "--wasm-sha256",
            SHA,
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("# Generated by `pinhole istio`"), "{text}");
    assert!(
        stderr(&o).starts_with("wrote stdout: WasmPlugin shop/pinhole-orders-db (NETWORK"),
        "{}",
        stderr(&o)
    );
    let doc = yaml(&text);
    assert_eq!(
        doc["apiVersion"].as_str(),
        Some("extensions.istio.io/v1alpha1")
    );
    assert_eq!(doc["kind"].as_str(), Some("WasmPlugin"));
    let md = &doc["metadata"];
    assert_eq!(md["name"].as_str(), Some("pinhole-orders-db"));
    assert_eq!(md["namespace"].as_str(), Some("shop"));
    let spec = &doc["spec"];
    let labels = &spec["selector"]["matchLabels"];
    assert_eq!(labels["app"].as_str(), Some("orders-db"));
    assert_eq!(labels["tier"].as_str(), Some("data"));
    assert_eq!(
        spec["url"].as_str(),
        Some("oci://registry.example/pinhole:0.1.0")
    );
    let lower = SHA.to_ascii_lowercase();
    assert_eq!(spec["sha256"].as_str(), Some(lower.as_str()));
    assert_eq!(spec["phase"].as_str(), Some("AUTHN"));
    assert_eq!(spec["type"].as_str(), Some("NETWORK"));
    assert_eq!(spec["failStrategy"].as_str(), Some("FAIL_CLOSE"));
    assert_eq!(spec["pluginName"].as_str(), Some("pinhole"));
    assert!(spec["priority"].is_badvalue());
    let m = spec["match"].as_vec().unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["mode"].as_str(), Some("SERVER"));
    assert_eq!(m[0]["ports"][0]["number"].as_i64(), Some(5432));
    let env = spec["vmConfig"]["env"].as_vec().unwrap();
    assert_eq!(env.len(), 1);
    assert_eq!(env[0]["name"].as_str(), Some("ORDERS_DB_PASSWORD"));
    assert_eq!(env[0]["valueFrom"].as_str(), Some("HOST"));
    let (pc, raw) = istio_plugin_config(&doc);
    assert_eq!(pc.target, "orders-db");
    assert_eq!(pc.listener, Listener::Postgres);
    let b = blob::decode(&raw).unwrap();
    assert_eq!(
        md["annotations"]["pinhole/policy-digest"].as_str(),
        Some(format!("sha256:{}", b.digest).as_str())
    );
    assert_eq!(
        md["annotations"]["pinhole/version"].as_str(),
        Some(&b.digest[..12])
    );
    Engine::from_blob_with_env(&raw, "orders-db", &|_| Some("secret".into())).unwrap();
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn istio_manifest_for_an_http_target_with_options() {
    let dir = setup();
    let o = pinhole(
        &[
            "istio",
            P,
            "--target",
            "tools",
            "--namespace",
            "istio-system",
            "--name",
            "pinhole-tools",
            "--selector",
            "istio=ingressgateway",
            "--mode",
            "client",
            "--phase",
            "AUTHZ",
            "--priority",
            "-5",
            "--env-key",
            "EXTRA",
            "--image-pull-policy",
            "Always",
            "--image-pull-secret",
            "regcred",
            "--version",
            "true",
            "--wasm-url",
            "https://artifacts.example/pinhole_filter.wasm",
            "--wasm-sha256",
            SHA,
            "--out",
            "plugin.yaml",
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let summary: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["type"], "HTTP");
    assert_eq!(summary["name"], "pinhole-tools");
    assert_eq!(summary["namespace"], "istio-system");
    assert_eq!(files_in(dir.path()), ["plugin.yaml"]);
    let doc = yaml(&std::fs::read_to_string(dir.path().join("plugin.yaml")).unwrap());
    let spec = &doc["spec"];
    assert_eq!(spec["type"].as_str(), Some("HTTP"));
    assert_eq!(spec["phase"].as_str(), Some("AUTHZ"));
    assert_eq!(spec["priority"].as_i64(), Some(-5));
    assert_eq!(spec["imagePullPolicy"].as_str(), Some("Always"));
    assert_eq!(spec["imagePullSecret"].as_str(), Some("regcred"));
    assert_eq!(spec["match"][0]["mode"].as_str(), Some("CLIENT"));
    assert!(spec["match"][0]["ports"].is_badvalue());
    assert_eq!(spec["vmConfig"]["env"][0]["name"].as_str(), Some("EXTRA"));
    // A version that looks like a YAML boolean stays a string.
    assert_eq!(
        doc["metadata"]["annotations"]["pinhole/version"].as_str(),
        Some("true")
    );
    let (pc, _) = istio_plugin_config(&doc);
    assert_eq!(pc.target, "tools");
    assert_eq!(pc.listener, Listener::Http);
}

#[test]
fn istio_http_target_without_environment_has_no_vm_config() {
    let dir = setup();
    let o = pinhole(
        &[
            "istio",
            P,
            "--target",
            "status-api",
            "--namespace",
            "api",
            "--selector",
            "app=status",
            "--wasm-url",
            "oci://registry.example/pinhole@sha256:0123",
            "--wasm-sha256",
            SHA,
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let doc = yaml(&stdout(&o));
    assert!(doc["spec"]["vmConfig"].is_badvalue());
    assert_eq!(doc["metadata"]["name"].as_str(), Some("pinhole-status-api"));
}

#[test]
fn istio_usage_errors() {
    let dir = setup();
    let orders = P.to_string();
    let base = [
        "--namespace",
        "shop",
        "--wasm-url",
        "oci://registry.example/pinhole:1",
        "--wasm-sha256",
        SHA,
    ];
    let cases: &[(&[&str], &str)] = &[
        (
            &["--target", "orders-db", "--selector", "app=db"],
            "name the PostgreSQL port(s) with --port",
        ),
        (&["--target", "orders-db", "--port", "5432"], "--selector"),
        (
            &["--target", "nope", "--selector", "app=db"],
            "defines no such target",
        ),
        (
            &[
                "--target",
                "tools",
                "--listener",
                "postgres",
                "--selector",
                "app=db",
            ],
            "does not fit target `tools`",
        ),
        (
            &["--target", "tools", "--selector", "app"],
            "is not KEY=VALUE",
        ),
        (
            &[
                "--target",
                "tools",
                "--selector",
                "a=b",
                "--name",
                "Bad_Name",
            ],
            "not a valid object name",
        ),
        (
            &["--target", "tools", "--selector", "a=b", "--phase", "early"],
            "invalid value 'early'",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["istio", orders.as_str()];
        all.extend_from_slice(&base);
        all.extend_from_slice(args);
        let o = pinhole(&all, dir.path());
        assert_eq!(code(&o), 2, "{all:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{all:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{all:?}");
    }
    let o = pinhole(
        &[
            "istio",
            &orders,
            "--target",
            "tools",
            "--namespace",
            "shop",
            "--selector",
            "a=b",
            "--wasm-url",
            "ftp://x/y.wasm",
            "--wasm-sha256",
            SHA,
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("oci://, https://"), "{}", stderr(&o));
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn push_carries_the_review_webhook() {
    let dir = setup();
    let wasm = wasm(dir.path());
    let o = pinhole(
        &[
            "push",
            P,
            "--target",
            "status-api",
            "--wasm",
            &wasm,
            "--review-webhook",
            "review_hook",
            "--review-webhook-path",
            "/hook",
            "--out",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let (pc, _) = plugin_config(&doc);
    let hook = pc.review_webhook.unwrap();
    assert_eq!(
        (hook.cluster.as_str(), hook.path.as_str()),
        ("review_hook", "/hook")
    );
    // --grants needs the YAML: a blob cannot take grants.
    let blob_path = dir.path().join("p.bin");
    let c = pinhole(
        &["compile", P, "-o", blob_path.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code(&c), 0, "{}", stderr(&c));
    let g = dir.path().join("x.grant");
    std::fs::write(&g, "# nothing\n").unwrap();
    let o = pinhole(
        &[
            "push",
            blob_path.to_str().unwrap(),
            "--target",
            "status-api",
            "--wasm",
            &wasm,
            "--grants",
            g.to_str().unwrap(),
            "--out",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--grants needs the policy source"),
        "{}",
        stderr(&o)
    );
    // A grant file that is not a grant is refused by compile.
    std::fs::write(&g, "pinhole-grant.v1.junk.junk\n").unwrap();
    let o = pinhole(
        &[
            "compile",
            P,
            "--grants",
            g.to_str().unwrap(),
            "-o",
            "out.bin",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("x.grant:1: this grant is malformed"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("out.bin").exists());
}
