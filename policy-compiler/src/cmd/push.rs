//! `pinhole push POLICY --target T (--wasm PATH | --wasm-url URL ...) --out FILE`:
//! the ECDS file Envoy watches (envoy/postgres-ecds.yaml) — a
//! `DiscoveryResponse` holding one `TypedExtensionConfig` with the Wasm
//! filter configuration and the compiled policy — replaced atomically.
//!
//! [`Source`] and [`prepare`] are shared with `pinhole istio`: both read a
//! policy (YAML, compiled here, or a blob), pick the target and the filter
//! kind, and check that the filter would load the result.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::ValueEnum;
use pinhole_filter::engine::{short_digest, Engine};
use pinhole_filter::policy::{blob, Protocol};

use super::{diagnostics_json, report, sign_key, source_date_epoch, usage_error, Exit, Format};

/// `DiscoveryResponse.resources[]` type (Envoy v3).
pub const TYPED_EXTENSION_CONFIG: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
/// `typed_config` of an `envoy.filters.http.wasm` filter.
pub const HTTP_WASM: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// `typed_config` of an `envoy.filters.network.wasm` filter.
pub const NETWORK_WASM: &str = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
const V8: &str = "envoy.wasm.runtime.v8";
/// The filter's root context id (`root_id` in envoy/*.yaml).
pub const ROOT_ID: &str = "pinhole";
/// `http_uri.timeout` for a module fetched with `--wasm-url`.
const REMOTE_TIMEOUT: &str = "30s";

/// Which Envoy filter the plugin runs as (the plugin configuration's
/// `listener` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListenerKind {
    /// `envoy.filters.http.wasm` (MCP and HTTP targets).
    Http,
    /// `envoy.filters.network.wasm` before `tcp_proxy` (postgres targets).
    Postgres,
}

impl ListenerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Http => "http",
            ListenerKind::Postgres => "postgres",
        }
    }

    /// The filter kind a target of `protocol` needs.
    pub fn of(protocol: Protocol) -> ListenerKind {
        match protocol {
            Protocol::Postgres => ListenerKind::Postgres,
            Protocol::Mcp | Protocol::Http => ListenerKind::Http,
        }
    }
}

/// The arguments `push` and `istio` share.
#[derive(Debug, clap::Args)]
pub struct Source {
    /// The policy: a YAML file (checked and compiled first, exactly like `pinhole compile`)
    /// or a blob written by `pinhole compile` (recognised by its magic bytes).
    pub policy: PathBuf,
    /// The policy target this filter protects. Its protocol picks the filter kind: `mcp` and
    /// `http` targets get an HTTP filter, `postgres` targets a network filter.
    #[arg(long, value_name = "NAME")]
    pub target: String,
    /// State the filter kind instead of deriving it from the target; it is an error when it
    /// does not fit the target's protocol.
    #[arg(long, value_enum)]
    pub listener: Option<ListenerKind>,
    /// An environment variable to copy from the proxy's own environment into the Wasm VM
    /// (repeatable). The target's `backend_password_env` and `mask_key_env` are always
    /// passed; these come in addition.
    #[arg(long = "env-key", value_name = "NAME")]
    pub env_keys: Vec<String>,
    /// The version label of this configuration. Default: the first 12 hex digits of the
    /// policy blob's digest.
    #[arg(long = "version", value_name = "V")]
    pub config_version: Option<String>,
    /// Treat warnings as errors (YAML input: exit 1 and write nothing when there are any).
    #[arg(long)]
    pub deny_warnings: bool,
    /// Sign the policy with this Ed25519 private key (PEM, from `pinhole keygen`), as
    /// `pinhole compile --sign-key` does. A blob already signed with this key is shipped as
    /// it is. Also sets `publisher_key` (unless --publisher-key is given).
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<PathBuf>,
    /// The publisher's Ed25519 public key (its base64 text, or a file holding it such as
    /// KEY.pub, or a PEM public key), written as the plugin configuration's `publisher_key`:
    /// the filter then loads only policies signed with it. The policy must verify with it.
    /// Default: the public key of --sign-key; without either, no `publisher_key`.
    #[arg(long, value_name = "PUB")]
    pub publisher_key: Option<String>,
    /// Grants to ship with the policy (repeatable; YAML policies only): files from
    /// `pinhole approve` / `pinhole elevate`, or directories of `*.grant` files, checked as
    /// `pinhole compile --grants` does.
    #[arg(long, value_name = "PATH")]
    pub grants: Vec<PathBuf>,
    /// The Envoy cluster that receives a notice (JSON POST) for each command held by a
    /// `review` rule: the configuration's `review_webhook` (docs/deploying.md).
    #[arg(long, value_name = "CLUSTER")]
    pub review_webhook: Option<String>,
    /// The path of those POSTs (default `/`).
    #[arg(long, value_name = "PATH", requires = "review_webhook")]
    pub review_webhook_path: Option<String>,
}

/// A policy ready to ship: the blob, and what the filter configuration says
/// about it.
#[derive(Debug)]
pub struct Prepared {
    pub blob: Vec<u8>,
    /// Hex SHA-256 of the blob payload (as `pinhole inspect` shows it).
    pub digest: String,
    pub target: String,
    pub protocol: Protocol,
    pub listener: ListenerKind,
    /// Environment variables the VM needs, in order, without duplicates.
    pub env_keys: Vec<String>,
    pub version: String,
    /// Warnings of a YAML policy (none for a blob).
    pub warnings: usize,
    /// The configuration's `publisher_key` (base64), if any.
    pub publisher_key: Option<String>,
    /// The key id of the blob's signature (not necessarily checked when
    /// there is no `publisher_key`).
    pub signed_by: Option<String>,
    /// The configuration's `review_webhook`: (cluster, path).
    pub review_webhook: Option<(String, String)>,
}

impl Prepared {
    /// `, signed by key K (…)` for the summaries: whether the filter will
    /// check the signature.
    pub fn signature_note(&self) -> String {
        match (&self.signed_by, &self.publisher_key) {
            (Some(id), Some(_)) => format!(", signed by key {id} (the filter requires it)"),
            (Some(id), None) => format!(", signed by key {id} (not checked: no publisher key)"),
            (None, _) => String::new(),
        }
    }

    /// The blob, base64 (standard alphabet, padded): the configuration's
    /// `policy`.
    pub fn policy_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.blob)
    }

    /// The filter's plugin configuration JSON:
    /// `{"listener", "policy", "target"}`, and `publisher_key` and
    /// `review_webhook` when set
    /// (engine::PluginConfig).
    pub fn plugin_config(&self) -> String {
        let mut cfg = serde_json::json!({
            "target": self.target,
            "policy": self.policy_base64(),
            "listener": self.listener.as_str(),
        });
        if let (Some(k), Some(m)) = (&self.publisher_key, cfg.as_object_mut()) {
            m.insert("publisher_key".into(), k.clone().into());
        }
        if let (Some((cluster, path)), Some(m)) = (&self.review_webhook, cfg.as_object_mut()) {
            m.insert(
                "review_webhook".into(),
                serde_json::json!({"cluster": cluster, "path": path}),
            );
        }
        cfg.to_string()
    }
}

/// An environment variable name as the VM sees it: `[A-Za-z_][A-Za-z0-9_]*`.
fn valid_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Read the policy (YAML or blob), check it, pick the target and the filter
/// kind. Diagnostics and errors are printed here; the `Err` is the exit code.
pub fn prepare(a: &Source, format: Format) -> Result<Prepared, Exit> {
    // Usage problems first, before any work.
    for k in &a.env_keys {
        if !valid_env_name(k) {
            return Err(usage_error(format!(
                "--env-key {k:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
            )));
        }
    }
    if let Some(v) = &a.config_version {
        if v.trim().is_empty() {
            return Err(usage_error("--version must not be empty"));
        }
    }
    let epoch = source_date_epoch()?;
    let key = sign_key(a.sign_key.as_deref())?;
    let publisher = match a.publisher_key.as_deref() {
        Some(k) => Some(
            policy_compiler::signing::load_public_key("--publisher-key", k).map_err(usage_error)?,
        ),
        None => key.as_ref().map(|k| k.pk),
    };
    let (mut bytes, warnings) = if starts_with_magic(&a.policy)? {
        if !a.grants.is_empty() {
            return Err(usage_error(format!(
                "--grants needs the policy source: {} is a compiled blob (use `pinhole compile \
                 --grants` to make the blob, or pass the YAML here)",
                a.policy.display()
            )));
        }
        (read_blob(&a.policy)?, 0)
    } else {
        compile_yaml(a, format, epoch)?
    };
    let decoded = match blob::decode(&bytes) {
        Ok(b) => b,
        Err(e) => return Err(policy_error(&a.policy, &e.to_string(), format)),
    };
    if let Some(k) = &key {
        let id = blob::key_id(&k.pk);
        match decoded.signature {
            None => {
                bytes = blob::sign(&bytes, k)
                    .map_err(|e| usage_error(format!("cannot sign the blob: {e}")))?;
            }
            Some(s) if s.key_id == id => {}
            Some(s) => {
                return Err(usage_error(format!(
                    "{} is already signed by key {}, not by --sign-key {} (key {})",
                    a.policy.display(),
                    s.key_id_hex(),
                    a.sign_key.as_deref().unwrap_or(Path::new("-")).display(),
                    blob::hex(&id)
                )))
            }
        }
    }
    // What the filter checks with `publisher_key`, checked here first.
    let signed_by = match &publisher {
        Some(pk) => match blob::verify(&bytes, pk) {
            Ok(s) => Some(s.key_id_hex()),
            Err(e) => {
                return Err(policy_error(
                    &a.policy,
                    &format!("the filter would not load this policy: {e}"),
                    format,
                ))
            }
        },
        None => {
            // No publisher key means no --sign-key either: the bytes are
            // the ones decoded above.
            let s = decoded.signature;
            if let Some(s) = &s {
                eprintln!(
                    "pinhole: warning: {} is signed (key {}) but no --publisher-key is given: \
                     the filter will not check the signature",
                    a.policy.display(),
                    s.key_id_hex()
                );
            }
            s.map(|s| s.key_id_hex())
        }
    };
    let Some(target) = decoded.policy.target(&a.target) else {
        let known: Vec<&str> = decoded
            .policy
            .targets
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        return Err(usage_error(format!(
            "--target {}: {} defines no such target (targets: {})",
            a.target,
            a.policy.display(),
            known.join(", ")
        )));
    };
    let needed = ListenerKind::of(target.protocol);
    if let Some(given) = a.listener {
        if given != needed {
            return Err(usage_error(format!(
                "--listener {} does not fit target `{}`: it is a {} target, which needs --listener {}",
                given.as_str(),
                target.name,
                target.protocol.as_str(),
                needed.as_str()
            )));
        }
    }
    // The filter must be able to load what we ship (keys, target). The
    // backend password is not needed here: any value stands in for it.
    if let Err(e) = Engine::from_blob_with_env(&bytes, &a.target, &|_| Some("-".into())) {
        return Err(policy_error(
            &a.policy,
            &format!("the filter would not load this policy: {e}"),
            format,
        ));
    }
    let mut env_keys: Vec<String> = Vec::new();
    let required = [&target.backend_password_env, &target.mask_key_env];
    for k in required.into_iter().flatten().chain(a.env_keys.iter()) {
        if !env_keys.contains(k) {
            env_keys.push(k.clone());
        }
    }
    Ok(Prepared {
        version: a
            .config_version
            .clone()
            .unwrap_or_else(|| short_digest(&decoded.digest).to_owned()),
        target: target.name.clone(),
        protocol: target.protocol,
        listener: needed,
        env_keys,
        digest: decoded.digest,
        blob: bytes,
        warnings,
        publisher_key: publisher.as_ref().map(blob::public_key_base64),
        signed_by,
        review_webhook: a.review_webhook.clone().map(|c| {
            (
                c,
                a.review_webhook_path.clone().unwrap_or_else(|| "/".into()),
            )
        }),
    })
}

/// Whether `path` starts with the blob magic (`PINHOLE\0`).
fn starts_with_magic(path: &Path) -> Result<bool, Exit> {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(blob::MAGIC.len() as u64).read_to_end(&mut head))
        .map_err(|e| usage_error(format!("cannot read {}: {e}", path.display())))?;
    Ok(head.as_slice() == blob::MAGIC.as_slice())
}

fn read_blob(path: &Path) -> Result<Vec<u8>, Exit> {
    // Header (48 bytes) + the largest payload the filter accepts, plus one
    // byte so an oversized file is reported as such by `decode`.
    let limit = (blob::MAX_PAYLOAD + 64) as u64;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit).read_to_end(&mut bytes))
        .map_err(|e| usage_error(format!("cannot read {}: {e}", path.display())))?;
    Ok(bytes)
}

/// A corrupt blob or a policy the filter would refuse: exit 1.
fn policy_error(path: &Path, msg: &str, format: Format) -> Exit {
    eprintln!("{}: error: {msg}", path.display());
    if format == Format::Json {
        let doc = serde_json::json!({
            "policy": path.display().to_string(),
            "ok": false,
            "errors": 1,
            "error": msg,
        });
        println!("{doc}");
    }
    Exit::Policy
}

/// Check and compile a YAML policy, as `pinhole compile` does. Returns the
/// blob and the number of warnings.
fn compile_yaml(a: &Source, format: Format, epoch: Option<u64>) -> Result<(Vec<u8>, usize), Exit> {
    let loaded = policy_compiler::load(&a.policy)
        .map_err(|e| usage_error(format!("cannot read {}: {e}", a.policy.display())))?;
    let c = &loaded.compiled;
    let acceptable = c.error_count() == 0 && !(a.deny_warnings && c.warning_count() > 0);
    if format == Format::Json {
        if !acceptable {
            let doc = serde_json::json!({
                "policy": a.policy.display().to_string(),
                "ok": false,
                "errors": c.error_count(),
                "warnings": c.warning_count(),
                "diagnostics": diagnostics_json(&c.diagnostics),
            });
            println!("{doc}");
            return Err(Exit::Policy);
        }
    } else if !report(&loaded, a.deny_warnings) {
        eprintln!("pinhole: nothing written");
        return Err(Exit::Policy);
    }
    let Some(policy) = &c.policy else {
        return Err(Exit::Policy);
    };
    let policy = super::with_grants(policy, &a.grants)?;
    let bytes = policy_compiler::encode(&loaded, &policy, epoch)
        .map_err(|e| usage_error(format!("cannot encode the blob: {e}")))?;
    Ok((bytes, c.warning_count()))
}

/// Write `text` to `out` atomically, or to stdout for `-`.
pub fn write_out(out: &Path, text: &str) -> Result<(), Exit> {
    if out.as_os_str() == "-" {
        print!("{text}");
        return Ok(());
    }
    policy_compiler::write_atomic(out, text.as_bytes())
        .map_err(|e| usage_error(format!("cannot write {}: {e}", out.display())))
}

/// `--out` as the summary names it.
pub fn out_name(out: &Path) -> String {
    if out.as_os_str() == "-" {
        "stdout".into()
    } else {
        out.display().to_string()
    }
}

/// Print the summary: on stdout, or on stderr when stdout carries the
/// output itself (`--out -`).
pub fn print_summary(out: &Path, format: Format, human: String, json: serde_json::Value) {
    let text = match format {
        Format::Human => human,
        Format::Json => json.to_string(),
    };
    if out.as_os_str() == "-" {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
}

/// A lowercase hex SHA-256 from `--wasm-sha256`.
pub fn parse_sha256(s: &str) -> Result<String, Exit> {
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(usage_error(format!(
            "--wasm-sha256 must be 64 hex digits (the SHA-256 of the .wasm file), got {s:?}"
        )))
    }
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("code").required(true).args(["wasm", "wasm_url"])))]
pub struct Args {
    #[command(flatten)]
    pub source: Source,
    /// The filter module as a file on the Envoy host: `vm_config.code.local.filename`
    /// (a relative path is made absolute against the current directory).
    #[arg(long, value_name = "PATH")]
    pub wasm: Option<PathBuf>,
    /// Fetch the module over HTTP instead: `vm_config.code.remote.http_uri.uri`, through the
    /// Envoy cluster named by --wasm-cluster, checked against --wasm-sha256.
    #[arg(long, value_name = "URL", requires_all = ["wasm_sha256", "wasm_cluster"])]
    pub wasm_url: Option<String>,
    /// SHA-256 of the module fetched with --wasm-url (`code.remote.sha256`; Envoy refuses a
    /// module that does not match).
    #[arg(long, value_name = "HEX", requires = "wasm_url")]
    pub wasm_sha256: Option<String>,
    /// The Envoy cluster that serves --wasm-url (`http_uri.cluster`; it must exist in the
    /// bootstrap).
    #[arg(long, value_name = "CLUSTER", requires = "wasm_url")]
    pub wasm_cluster: Option<String>,
    /// `vm_config.vm_id`. Default: `pinhole` for an HTTP filter, `pinhole-postgres` for a
    /// network filter (as in envoy/*.yaml). Filters sharing a vm_id share a VM and its
    /// environment.
    #[arg(long, value_name = "ID")]
    pub vm_id: Option<String>,
    /// The extension config name: the `name` under the listener's `config_discovery` (and
    /// the Wasm plugin name).
    #[arg(long, value_name = "NAME", default_value = "pinhole")]
    pub name: String,
    /// The ECDS file Envoy watches (`path_config_source.path`). It is replaced atomically
    /// (temporary file in the same directory, fsync, rename), which is what makes Envoy
    /// reload it. `-` prints the configuration on stdout instead.
    #[arg(short, long, value_name = "FILE")]
    pub out: PathBuf,
    /// Output format of the summary. `json` prints {"ok", "file", "name", "version",
    /// "digest", "target", "listener", "vm_id", "env_keys", "bytes", "warnings",
    /// "publisher_key", "signed_by"}. With `--out -` the summary goes to stderr.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Where the VM's code comes from.
#[derive(Debug)]
pub enum Code {
    Local(PathBuf),
    Remote {
        url: String,
        sha256: String,
        cluster: String,
    },
}

impl Code {
    fn json(&self) -> serde_json::Value {
        match self {
            Code::Local(p) => serde_json::json!({
                "local": { "filename": p.display().to_string() }
            }),
            Code::Remote {
                url,
                sha256,
                cluster,
            } => serde_json::json!({
                "remote": {
                    "http_uri": { "uri": url, "cluster": cluster, "timeout": REMOTE_TIMEOUT },
                    "sha256": sha256,
                }
            }),
        }
    }
}

/// The `DiscoveryResponse` Envoy reads from the ECDS file.
pub fn discovery_response(p: &Prepared, name: &str, vm_id: &str, code: &Code) -> serde_json::Value {
    let mut vm = serde_json::json!({
        "vm_id": vm_id,
        "runtime": V8,
        "code": code.json(),
    });
    if !p.env_keys.is_empty() {
        if let Some(m) = vm.as_object_mut() {
            m.insert(
                "environment_variables".into(),
                serde_json::json!({ "host_env_keys": p.env_keys }),
            );
        }
    }
    let wasm_type = match p.listener {
        ListenerKind::Http => HTTP_WASM,
        ListenerKind::Postgres => NETWORK_WASM,
    };
    serde_json::json!({
        "version_info": p.version,
        "type_url": TYPED_EXTENSION_CONFIG,
        "resources": [{
            "@type": TYPED_EXTENSION_CONFIG,
            "name": name,
            "typed_config": {
                "@type": wasm_type,
                "config": {
                    "name": name,
                    "root_id": ROOT_ID,
                    "failure_policy": "FAIL_CLOSED",
                    "vm_config": vm,
                    "configuration": {
                        "@type": STRING_VALUE,
                        "value": p.plugin_config(),
                    },
                },
            },
        }],
    })
}

fn code_of(a: &Args) -> Result<Code, Exit> {
    if let Some(url) = &a.wasm_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(usage_error(format!(
                "--wasm-url must be an http:// or https:// URL (Envoy fetches it), got {url:?}"
            )));
        }
        let sha256 = parse_sha256(a.wasm_sha256.as_deref().unwrap_or_default())?;
        let cluster = a.wasm_cluster.clone().unwrap_or_default();
        if cluster.is_empty() {
            return Err(usage_error("--wasm-cluster must name an Envoy cluster"));
        }
        return Ok(Code::Remote {
            url: url.clone(),
            sha256,
            cluster,
        });
    }
    let Some(path) = &a.wasm else {
        return Err(usage_error("give --wasm PATH or --wasm-url URL"));
    };
    let abs = std::path::absolute(path)
        .map_err(|e| usage_error(format!("--wasm {}: {e}", path.display())))?;
    if !abs.is_file() {
        // Not an error: the file is read by Envoy, maybe on another host.
        eprintln!(
            "pinhole: warning: --wasm {} is not a file on this machine; Envoy must find it at that path",
            abs.display()
        );
    }
    Ok(Code::Local(abs))
}

pub fn run(a: &Args) -> Exit {
    if a.name.is_empty() {
        return usage_error("--name must not be empty");
    }
    let code = match code_of(a) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let p = match prepare(&a.source, a.format) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let vm_id = a.vm_id.clone().unwrap_or_else(|| match p.listener {
        ListenerKind::Http => "pinhole".into(),
        ListenerKind::Postgres => "pinhole-postgres".into(),
    });
    let doc = discovery_response(&p, &a.name, &vm_id, &code);
    let text = match serde_json::to_string_pretty(&doc) {
        Ok(t) => format!("{t}\n"),
        Err(e) => return usage_error(format!("internal error: cannot serialise: {e}")),
    };
    if let Err(e) = write_out(&a.out, &text) {
        return e;
    }
    let filter = match p.listener {
        ListenerKind::Http => "HTTP filter",
        ListenerKind::Postgres => "network filter",
    };
    print_summary(
        &a.out,
        a.format,
        format!(
            "wrote {}: `{}` version {} for target `{}` ({} {filter}), policy sha256:{}{}, {} bytes",
            out_name(&a.out),
            a.name,
            p.version,
            p.target,
            p.protocol.as_str(),
            p.digest,
            p.signature_note(),
            text.len()
        ),
        serde_json::json!({
            "ok": true,
            "file": a.out.display().to_string(),
            "name": a.name,
            "version": p.version,
            "digest": p.digest,
            "target": p.target,
            "listener": p.listener.as_str(),
            "vm_id": vm_id,
            "env_keys": p.env_keys,
            "bytes": text.len(),
            "warnings": p.warnings,
            "publisher_key": p.publisher_key,
            "signed_by": p.signed_by,
        }),
    );
    Exit::Ok
}

#[cfg(test)]
mod tests {
    use super::valid_env_name;

    #[test]
    fn env_names() {
        assert!(valid_env_name("ORDERS_DB_PASSWORD"));
        assert!(valid_env_name("_x1"));
        assert!(!valid_env_name(""));
        assert!(!valid_env_name("1X"));
        assert!(!valid_env_name("A-B"));
        assert!(!valid_env_name("A=B"));
    }
}
