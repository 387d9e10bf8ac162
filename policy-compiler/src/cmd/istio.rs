//! `pinhole istio POLICY --target T --namespace NS --selector K=V --wasm-url URL
//! --wasm-sha256 HEX`: an Istio `WasmPlugin` manifest (YAML) that rolls the
//! filter and its policy out to the selected workloads. docs/deploying.md
//! explains the fields.
//!
//! Istio hands `spec.pluginConfig` to the plugin as a `StringValue` holding
//! the struct serialised as JSON (pilot's `buildPluginConfig`), so a
//! `pluginConfig` of `{target, policy, listener}` reaches the filter as the
//! same JSON `pinhole push` writes (with `publisher_key` when the policy is
//! signed and a publisher key is given).

use std::path::PathBuf;

use clap::ValueEnum;
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

use super::push::{parse_sha256, prepare, print_summary, write_out, ListenerKind, Source};
use super::{usage_error, Exit, Format};

pub const API_VERSION: &str = "extensions.istio.io/v1alpha1";

/// `spec.phase`: where in the filter chain Istio inserts the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    /// Before Istio's authentication filters (the default: Pinhole decides first).
    Authn,
    /// Before Istio's authorization filters, after authentication.
    Authz,
    /// Before Istio's stats filters.
    Stats,
    /// At the end of the chain, before the router (or `tcp_proxy`).
    Unspecified,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Authn => "AUTHN",
            Phase::Authz => "AUTHZ",
            Phase::Stats => "STATS",
            Phase::Unspecified => "UNSPECIFIED_PHASE",
        }
    }
}

/// `spec.match[].mode`: which traffic of the workload the plugin sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Inbound traffic of a sidecar (requests to the workload).
    Server,
    /// Outbound traffic of a sidecar; all traffic of a gateway.
    Client,
    /// Both.
    ClientAndServer,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Server => "SERVER",
            Mode::Client => "CLIENT",
            Mode::ClientAndServer => "CLIENT_AND_SERVER",
        }
    }
}

/// `spec.imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    #[value(name = "IfNotPresent", alias = "if-not-present")]
    IfNotPresent,
    #[value(name = "Always", alias = "always")]
    Always,
}

impl PullPolicy {
    fn as_str(self) -> &'static str {
        match self {
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Always => "Always",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: Source,
    /// Where Istio fetches the filter module: `oci://REGISTRY/IMAGE:TAG` (or `@sha256:...`),
    /// `https://...` or `file:///path/in/the/proxy` (`spec.url`).
    #[arg(long, value_name = "URL")]
    pub wasm_url: String,
    /// SHA-256 of the module (`spec.sha256`, hex): Istio refuses a module that does not match.
    #[arg(long, value_name = "HEX")]
    pub wasm_sha256: String,
    /// `metadata.namespace`. The plugin applies to workloads of this namespace only, or to
    /// every namespace when it is Istio's root namespace (usually istio-system).
    #[arg(long, value_name = "NS")]
    pub namespace: String,
    /// A label the selected workloads carry (`spec.selector.matchLabels`; repeatable, at
    /// least one: a Pinhole plugin protects one target, not every workload).
    #[arg(long = "selector", value_name = "KEY=VALUE", required = true)]
    pub selectors: Vec<String>,
    /// `metadata.name`. Default: `pinhole-<target>`.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// `spec.phase`.
    #[arg(long, value_enum, default_value_t = Phase::Authn, ignore_case = true)]
    pub phase: Phase,
    /// `spec.priority`: order among plugins of the same phase (higher runs first).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub priority: Option<i64>,
    /// `spec.match[].mode`: `server` for a sidecar's inbound traffic (the default), `client`
    /// for a gateway.
    #[arg(long, value_enum, default_value_t = Mode::Server, ignore_case = true)]
    pub mode: Mode,
    /// Only this port (`spec.match[].ports[].number`; repeatable). Required for a postgres
    /// target: a network filter on every port would treat all TCP traffic as PostgreSQL.
    #[arg(long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,
    /// `spec.imagePullPolicy`.
    #[arg(long, value_enum)]
    pub image_pull_policy: Option<PullPolicy>,
    /// `spec.imagePullSecret`: a Secret in --namespace with registry credentials.
    #[arg(long, value_name = "SECRET")]
    pub image_pull_secret: Option<String>,
    /// Where to write the manifest (atomically); `-` (the default) prints it on stdout.
    #[arg(short, long, value_name = "FILE", default_value = "-")]
    pub out: PathBuf,
    /// Output format of the summary. `json` prints {"ok", "file", "name", "namespace",
    /// "version", "digest", "target", "listener", "type", "bytes", "warnings",
    /// "publisher_key", "signed_by"}. With `--out -` the summary goes to stderr.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// A Kubernetes object name (RFC 1123 subdomain).
fn valid_k8s_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// `pinhole-<target>`, made a valid object name.
fn default_name(target: &str) -> String {
    let mut s: String = format!("pinhole-{target}")
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(253);
    s.trim_end_matches(['-', '.']).to_owned()
}

/// A label key or value: no whitespace, no `=` in the key, value may be empty.
fn parse_selector(s: &str) -> Result<(String, String), String> {
    let Some((k, v)) = s.split_once('=') else {
        return Err(format!("--selector {s:?} is not KEY=VALUE"));
    };
    let bad = |x: &str| x.chars().any(|c| c.is_whitespace() || c.is_control());
    if k.is_empty() || bad(k) || bad(v) || v.contains('=') {
        return Err(format!("--selector {s:?} is not a valid KEY=VALUE label"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

fn s(v: &str) -> Yaml {
    Yaml::String(v.to_owned())
}

fn map<const N: usize>(entries: [(&str, Yaml); N]) -> Yaml {
    let mut h = Hash::new();
    for (k, v) in entries {
        h.insert(s(k), v);
    }
    Yaml::Hash(h)
}

fn insert(y: &mut Yaml, k: &str, v: Yaml) {
    if let Yaml::Hash(h) = y {
        h.insert(s(k), v);
    }
}

pub fn run(a: &Args) -> Exit {
    // Usage problems first.
    let url_ok = ["oci://", "https://", "http://", "file://"]
        .iter()
        .any(|p| a.wasm_url.starts_with(p));
    if !url_ok {
        return usage_error(format!(
            "--wasm-url must start with oci://, https://, http:// or file://, got {:?}",
            a.wasm_url
        ));
    }
    let sha256 = match parse_sha256(&a.wasm_sha256) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if !valid_k8s_name(&a.namespace, 63) {
        return usage_error(format!(
            "--namespace {:?} is not a valid namespace name",
            a.namespace
        ));
    }
    if let Some(n) = &a.name {
        if !valid_k8s_name(n, 253) {
            return usage_error(format!(
                "--name {n:?} is not a valid object name (lowercase letters, digits, '-', '.')"
            ));
        }
    }
    let mut labels = Hash::new();
    for sel in &a.selectors {
        match parse_selector(sel) {
            Ok((k, v)) => {
                labels.insert(s(&k), s(&v));
            }
            Err(e) => return usage_error(e),
        }
    }
    let p = match prepare(&a.source, a.format) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if p.listener == ListenerKind::Postgres && a.ports.is_empty() {
        return usage_error(format!(
            "target `{}` is a postgres target: name the PostgreSQL port(s) with --port \
             (a network filter on every port would treat all TCP traffic of the workload as PostgreSQL)",
            p.target
        ));
    }
    let name = a.name.clone().unwrap_or_else(|| default_name(&p.target));
    let plugin_type = match p.listener {
        ListenerKind::Http => "HTTP",
        ListenerKind::Postgres => "NETWORK",
    };

    let mut spec = map([
        ("selector", map([("matchLabels", Yaml::Hash(labels))])),
        ("url", s(&a.wasm_url)),
        ("sha256", s(&sha256)),
    ]);
    if let Some(pp) = a.image_pull_policy {
        insert(&mut spec, "imagePullPolicy", s(pp.as_str()));
    }
    if let Some(secret) = &a.image_pull_secret {
        insert(&mut spec, "imagePullSecret", s(secret));
    }
    insert(&mut spec, "phase", s(a.phase.as_str()));
    if let Some(prio) = a.priority {
        insert(&mut spec, "priority", Yaml::Integer(prio));
    }
    insert(&mut spec, "type", s(plugin_type));
    insert(&mut spec, "failStrategy", s("FAIL_CLOSE"));
    insert(&mut spec, "pluginName", s(super::push::ROOT_ID));
    let mut selector = map([("mode", s(a.mode.as_str()))]);
    if !a.ports.is_empty() {
        let ports = a
            .ports
            .iter()
            .map(|n| map([("number", Yaml::Integer(i64::from(*n)))]))
            .collect();
        insert(&mut selector, "ports", Yaml::Array(ports));
    }
    insert(&mut spec, "match", Yaml::Array(vec![selector]));
    if !p.env_keys.is_empty() {
        let env = p
            .env_keys
            .iter()
            .map(|k| map([("name", s(k)), ("valueFrom", s("HOST"))]))
            .collect();
        insert(&mut spec, "vmConfig", map([("env", Yaml::Array(env))]));
    }
    let mut plugin_config = map([
        ("target", s(&p.target)),
        ("listener", s(p.listener.as_str())),
        ("policy", s(&p.policy_base64())),
    ]);
    if let Some(k) = &p.publisher_key {
        insert(&mut plugin_config, "publisher_key", s(k));
    }
    insert(&mut spec, "pluginConfig", plugin_config);
    let mut annotations = map([
        ("pinhole/target", s(&p.target)),
        ("pinhole/policy-digest", s(&format!("sha256:{}", p.digest))),
        ("pinhole/version", s(&p.version)),
    ]);
    if let Some(id) = &p.signed_by {
        insert(&mut annotations, "pinhole/signed-by", s(id));
    }
    let doc = map([
        ("apiVersion", s(API_VERSION)),
        ("kind", s("WasmPlugin")),
        (
            "metadata",
            map([
                ("name", s(&name)),
                ("namespace", s(&a.namespace)),
                (
                    "labels",
                    map([("app.kubernetes.io/managed-by", s("pinhole"))]),
                ),
                ("annotations", annotations),
            ]),
        ),
        ("spec", spec),
    ]);
    let mut body = String::new();
    if let Err(e) = YamlEmitter::new(&mut body).dump(&doc) {
        return usage_error(format!("internal error: cannot emit YAML: {e}"));
    }
    let text = format!(
        "# Generated by `pinhole istio` ({}) for target `{}` of {}.\n\
         # Apply with: kubectl apply -f FILE   (fields: docs/deploying.md)\n{body}\n",
        policy_compiler::compiler_id(),
        p.target,
        a.source.policy.display(),
    );
    if let Err(e) = write_out(&a.out, &text) {
        return e;
    }
    print_summary(
        &a.out,
        a.format,
        format!(
            "wrote {}: WasmPlugin {}/{name} ({plugin_type}, phase {}) version {} for target `{}`, policy sha256:{}{}, {} bytes",
            super::push::out_name(&a.out),
            a.namespace,
            a.phase.as_str(),
            p.version,
            p.target,
            p.digest,
            p.signature_note(),
            text.len()
        ),
        serde_json::json!({
            "ok": true,
            "file": a.out.display().to_string(),
            "name": name,
            "namespace": a.namespace,
            "version": p.version,
            "digest": p.digest,
            "target": p.target,
            "listener": p.listener.as_str(),
            "type": plugin_type,
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
    use super::*;

    #[test]
    fn names() {
        assert_eq!(default_name("orders-db"), "pinhole-orders-db");
        assert_eq!(default_name("Orders_DB"), "pinhole-orders-db");
        assert_eq!(default_name("x_"), "pinhole-x");
        assert!(valid_k8s_name("pinhole-orders-db", 253));
        assert!(!valid_k8s_name("Pinhole", 253));
        assert!(!valid_k8s_name("-a", 253));
        assert!(!valid_k8s_name("", 63));
    }

    #[test]
    fn selectors() {
        assert_eq!(
            parse_selector("app=orders-db"),
            Ok(("app".into(), "orders-db".into()))
        );
        assert_eq!(parse_selector("app="), Ok(("app".into(), String::new())));
        assert!(parse_selector("app").is_err());
        assert!(parse_selector("=x").is_err());
        assert!(parse_selector("a b=c").is_err());
    }
}
