//! `pinhole explain POLICY (--case FILE:NAME | --claims JSON --target T <request>)`.

use std::path::{Path, PathBuf};

use pinhole_filter::policy::Policy;
use policy_compiler::scenario::{self, IdentitySpec, RequestSpec, Scenario};
use policy_compiler::suite;

use super::{load_policy, usage_error, Exit, Format};

const INLINE: [&str; 11] = [
    "claims",
    "issuer",
    "target",
    "tool",
    "arguments",
    "resource",
    "prompt",
    "method",
    "params",
    "http",
    "sql",
];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file (YAML).
    pub policy: PathBuf,
    /// A case of a test file: `FILE:NAME` (the case's `name`).
    #[arg(long, value_name = "FILE:NAME", conflicts_with_all = INLINE)]
    pub case: Option<String>,
    /// The identity's claims, a JSON object (`iss` chooses the issuer unless --issuer is given).
    #[arg(long, value_name = "JSON")]
    pub claims: Option<String>,
    /// The issuer's policy name (instead of, or matching, the claims' `iss`).
    #[arg(long, value_name = "NAME")]
    pub issuer: Option<String>,
    /// The target the request goes to.
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// An MCP `tools/call` of this tool.
    #[arg(long, value_name = "NAME", group = "request")]
    pub tool: Option<String>,
    /// The tool call's arguments, a JSON object (default `{}`).
    #[arg(long, value_name = "JSON", requires = "tool")]
    pub arguments: Option<String>,
    /// An MCP `resources/read` of this URI.
    #[arg(long, value_name = "URI", group = "request")]
    pub resource: Option<String>,
    /// An MCP `prompts/get` of this prompt.
    #[arg(long, value_name = "NAME", group = "request")]
    pub prompt: Option<String>,
    /// Any other MCP method (e.g. `completion/complete`).
    #[arg(long, value_name = "METHOD", group = "request")]
    pub method: Option<String>,
    /// The method's params, JSON.
    #[arg(long, value_name = "JSON", requires = "method")]
    pub params: Option<String>,
    /// A plain HTTP request.
    #[arg(long, num_args = 2, value_names = ["METHOD", "PATH"], group = "request")]
    pub http: Option<Vec<String>>,
    /// SQL text sent to a postgres target (every statement is decided).
    #[arg(long, value_name = "SQL", group = "request")]
    pub sql: Option<String>,
    /// Output format. `json` prints {"policy", "identity", "roles", "target", "request",
    /// "rules", "outcome"} on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

fn json_arg(flag: &str, text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("--{flag} is not valid JSON: {e}"))
}

fn inline(a: &Args) -> Result<Scenario, String> {
    let claims = match &a.claims {
        Some(c) => match json_arg("claims", c)? {
            serde_json::Value::Object(m) => m,
            _ => return Err("--claims must be a JSON object".into()),
        },
        None => return Err("give --case FILE:NAME, or --claims, --target and a request".into()),
    };
    let Some(target) = a.target.clone() else {
        return Err("--target is required with --claims".into());
    };
    let request = if let Some(t) = &a.tool {
        let args = match &a.arguments {
            Some(j) => json_arg("arguments", j)?,
            None => serde_json::json!({}),
        };
        RequestSpec::tool(t, args)
    } else if let Some(r) = &a.resource {
        RequestSpec::resource(r)
    } else if let Some(p) = &a.prompt {
        RequestSpec::prompt(p)
    } else if let Some(m) = &a.method {
        let params = match &a.params {
            Some(j) => json_arg("params", j)?,
            None => serde_json::Value::Null,
        };
        RequestSpec::Mcp {
            method: m.clone(),
            params,
        }
    } else if let Some(h) = &a.http {
        let (Some(m), Some(p)) = (h.first(), h.get(1)) else {
            return Err("--http takes METHOD and PATH".into());
        };
        RequestSpec::Http {
            method: m.clone(),
            path: p.clone(),
        }
    } else if let Some(q) = &a.sql {
        RequestSpec::Sql { text: q.clone() }
    } else {
        return Err(
            "give a request: --tool, --resource, --prompt, --method, --http METHOD PATH or --sql SQL"
                .into(),
        );
    };
    Ok(Scenario {
        identity: IdentitySpec {
            issuer: a.issuer.clone(),
            claims,
        },
        target,
        request,
    })
}

/// `FILE:NAME`, split at the first `:` whose left side names an existing
/// file (case names may contain `:`, paths rarely do).
fn split_case(spec: &str) -> Option<(&str, &str)> {
    spec.match_indices(':').find_map(|(i, _)| {
        let (file, name) = (spec.get(..i)?, spec.get(i + 1..)?);
        Path::new(file).is_file().then_some((file, name))
    })
}

/// The scenario of a test file's case. `Err(exit)` after printing why.
fn from_case(policy: &Policy, spec: &str) -> Result<Scenario, Exit> {
    let Some((file, name)) = split_case(spec) else {
        return Err(usage_error(format!(
            "--case {spec:?}: expected FILE:NAME with FILE an existing test file"
        )));
    };
    let bytes = std::fs::read(file).map_err(|e| usage_error(format!("cannot read {file}: {e}")))?;
    let parsed = suite::parse(&bytes, policy);
    let Some(entry) = parsed.find(name) else {
        for d in parsed.diagnostics.iter().filter(|d| d.is_error()) {
            eprintln!("{}", d.render(file));
        }
        let names: Vec<&str> = parsed.cases.iter().map(|c| c.name.as_str()).collect();
        let mut hint = policy_compiler::suggest::did_you_mean(name, names.iter().copied());
        if hint.is_empty() && !names.is_empty() {
            let shown: Vec<String> = names.iter().take(20).map(|n| format!("{n:?}")).collect();
            hint = format!(
                "; its cases are: {}{}",
                shown.join(", "),
                if names.len() > 20 { ", …" } else { "" }
            );
        }
        return Err(usage_error(format!(
            "{file} has no case named {name:?}{hint}"
        )));
    };
    match &entry.case {
        Ok(c) => Ok(c.scenario.clone()),
        Err(diags) => {
            for d in diags {
                eprintln!("{}", d.render(file));
            }
            Err(Exit::Policy)
        }
    }
}

pub fn run(a: &Args) -> Exit {
    let (_, policy) = match load_policy(&a.policy, a.format) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let scenario = match &a.case {
        Some(spec) => match from_case(&policy, spec) {
            Ok(s) => s,
            Err(e) => return e,
        },
        None => match inline(a) {
            Ok(s) => s,
            Err(e) => return usage_error(e),
        },
    };
    let run = match scenario::run(&policy, &scenario) {
        Ok(r) => r,
        Err(e) => return usage_error(e),
    };
    match a.format {
        Format::Json => {
            let mut doc = serde_json::to_value(&run).unwrap_or_default();
            if let Some(o) = doc.as_object_mut() {
                o.insert(
                    "policy".into(),
                    serde_json::Value::String(a.policy.display().to_string()),
                );
            }
            println!("{doc}");
        }
        Format::Human => print!("{}", policy_compiler::explain::human(&run)),
    }
    Exit::Ok
}
