//! Command-line interface: argument definitions and dispatch. Each
//! subcommand lives in its own module and returns an [`Exit`] code.

use clap::{Parser, Subcommand, ValueEnum};

mod approve;
mod audit;
mod check;
mod compile;
mod diff;
mod elevate;
mod explain;
mod inspect;
mod istio;
mod keygen;
mod push;
mod test;

/// Process exit codes. `Policy` (the input is wrong, a test failed) is
/// kept apart from `Usage` (the command could not do its job), so scripts
/// can tell them apart. A deny is not an error: `explain` exits 0 whatever
/// it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success: the policy is valid / the blob was written / the blob is
    /// sound / every test passed / the explanation or diff was printed /
    /// every audit chain verifies.
    Ok = 0,
    /// The policy (or a test file) has errors, a test failed, the blob is
    /// corrupt, (`diff --exit-code`) access may widen, or (`audit verify`)
    /// an audit log was tampered with.
    Policy = 1,
    /// Bad arguments, an unreadable input file, an unwritable output, or an
    /// invalid `SOURCE_DATE_EPOCH`. (clap's own usage errors also exit 2.)
    Usage = 2,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

const EXIT_CODES: &str = "\
Exit codes:
  0  success (policy valid, blob written, blob sound, all tests passed, explanation or diff
     printed, audit chains verified, configuration or manifest written)
  1  the policy has errors (or warnings, with --deny-warnings); a test failed or a test file is
     invalid; inspect, push, istio: the blob is corrupt, or its signature does not verify with
     --verify-key / --publisher-key; diff --exit-code: access may widen; audit verify: tampering
     found
  2  usage error: bad arguments (push, istio: also an unknown --target or a --listener that
     does not fit it), unreadable input or key, unwritable output, invalid SOURCE_DATE_EPOCH";

const ROOT_AFTER_HELP: &str = "\
Examples:
  pinhole check policy.yaml
  pinhole test policy.yaml policy.test.yaml --junit report.xml
  pinhole explain policy.yaml --case policy.test.yaml:'deploy to production is refused'
  pinhole explain policy.yaml --claims '{\"iss\":\"https://sso.acme.example\",\"sub\":\"alice\"}' \\
      --target tools --tool deploy --arguments '{\"environment\":\"staging\"}'
  pinhole diff old.yaml policy.yaml --exit-code
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) pinhole compile policy.yaml -o policy.blob
  pinhole keygen --out publisher.key            # publisher.key (secret) + publisher.key.pub
  pinhole compile policy.yaml -o policy.blob --sign-key publisher.key
  pinhole inspect policy.blob --verify-key publisher.key.pub
  pinhole push policy.blob --target orders-db --wasm /etc/envoy/pinhole_filter.wasm \\
      --publisher-key publisher.key.pub --out /etc/envoy/pinhole-ecds.json
  pinhole istio policy.yaml --target tools --namespace mcp --selector app=mcp-gateway \\
      --wasm-url oci://registry.example/pinhole:0.1.0 --wasm-sha256 <hex> | kubectl apply -f -
  pinhole audit verify envoy.log.1 envoy.log

Every command takes --format json (one JSON document on stdout). Diagnostics go to stderr as
FILE:LINE:COL: severity: message.

Exit codes:
  0  success (policy valid, blob written, blob sound, all tests passed, explanation or diff
     printed, audit chains verified, configuration or manifest written)
  1  the policy has errors (or warnings, with --deny-warnings); a test failed or a test file is
     invalid; inspect, push, istio: the blob is corrupt, or its signature does not verify with
     --verify-key / --publisher-key; diff --exit-code: access may widen; audit verify: tampering
     found
  2  usage error: bad arguments (push, istio: also an unknown --target or a --listener that
     does not fit it), unreadable input or key, unwritable output, invalid SOURCE_DATE_EPOCH";

#[derive(Debug, Parser)]
#[command(
    name = "pinhole",
    version,
    about = "Check, test, explain, diff, compile, inspect and push Pinhole least-privilege policies; verify audit logs",
    long_about = "Check, test, explain, diff, compile, inspect and push Pinhole least-privilege policies.\n\n\
        A policy is a YAML file (language reference: docs/policy.md). `pinhole check` reports \
        every problem and lint at once as FILE:LINE:COL diagnostics; `pinhole test` runs policy \
        test files with the filter's own evaluator; `pinhole explain` traces one request; \
        `pinhole diff` states the access change between two policies; `pinhole compile` turns a \
        valid policy into the deterministic, integrity-checked blob the Envoy filter loads, \
        signed with --sign-key (a key from `pinhole keygen`); \
        `pinhole inspect` shows what a blob contains and who signed it; `pinhole push` writes the Envoy ECDS \
        configuration that delivers a policy without a restart, `pinhole istio` the Istio \
        WasmPlugin manifest (docs/deploying.md); `pinhole audit verify` checks the hash \
        chains of the filter's audit logs (format: docs/audit.md).",
    after_help = ROOT_AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a policy file and report every error and warning (lints included).
    ///
    /// Diagnostics go to stderr as `FILE:LINE:COL: error: message`. On success a one-line
    /// summary goes to stdout.
    #[command(after_help = EXIT_CODES)]
    Check(check::Args),
    /// Run policy test files: each case's identity, request and expected decision.
    ///
    /// Decisions come from the filter's own evaluator. Failures are printed with the case's
    /// FILE:LINE:COL, expected and actual decision, rule and reason; the last line is
    /// `N passed, M failed`.
    #[command(after_help = EXIT_CODES)]
    Test(test::Args),
    /// Trace one request: identity, roles and why, every rule considered and why, decision.
    ///
    /// Give a case of a test file (`--case FILE:NAME`) or the request inline (`--claims`,
    /// `--target` and one of `--tool`, `--resource`, `--prompt`, `--method`, `--http`).
    /// Exits 0 whatever the decision.
    #[command(after_help = EXIT_CODES)]
    Explain(Box<explain::Args>),
    /// State the access change between two policies (YAML files or compiled blobs).
    ///
    /// Per role and target: items gained or lost per effect, argument conditions loosened or
    /// tightened; role definitions, rules, issuers and keys, revocations and targets changed.
    /// Markdown (for pull-request comments) or JSON. Exits 0 unless --exit-code is given and
    /// access may widen.
    #[command(after_help = EXIT_CODES)]
    Diff(diff::Args),
    /// Check a policy file, then write the compiled blob atomically.
    ///
    /// The blob is deterministic: the same policy and JWKS files always give byte-identical
    /// output. If SOURCE_DATE_EPOCH is set (decimal seconds) it is recorded in the blob's
    /// metadata; nothing else about the build environment is.
    #[command(after_help = EXIT_CODES)]
    Compile(compile::Args),
    /// Verify a compiled blob and print its format version, digest, signature, metadata and
    /// contents summary.
    ///
    /// A signed blob shows its key id; --verify-key PUB checks the signature (exit 1 when the
    /// blob is unsigned or not signed by that key).
    #[command(after_help = EXIT_CODES)]
    Inspect(inspect::Args),
    /// Make an Ed25519 key pair for signing blobs: KEY (private, PEM, mode 0600) and KEY.pub.
    ///
    /// Sign with `--sign-key KEY` (compile, push, istio); give KEY.pub's base64 text to the
    /// filter as `publisher_key` (`--publisher-key` of push and istio) so it refuses policies
    /// not signed with KEY. An OpenSSL key works too: `openssl genpkey -algorithm ed25519`.
    #[command(after_help = EXIT_CODES)]
    Keygen(keygen::Args),
    /// Write the Envoy ECDS file that delivers a policy to a running Envoy (atomically).
    ///
    /// Takes a policy (YAML, compiled first, or a blob) and the target the filter protects;
    /// writes a DiscoveryResponse with one TypedExtensionConfig: the Wasm filter (HTTP or
    /// network, from the target's protocol), FAIL_CLOSED, its VM (code, vm_id, environment
    /// variables) and the plugin configuration {"target", "policy", "listener"} (and
    /// "publisher_key" with --publisher-key or --sign-key: the filter then loads only policies
    /// signed with that key). Envoy reloads the file when it is replaced
    /// (envoy/postgres-ecds.yaml; docs/deploying.md).
    #[command(after_help = EXIT_CODES, disable_version_flag = true)]
    Push(Box<push::Args>),
    /// Write an Istio WasmPlugin manifest (YAML) that rolls a policy out to a mesh's workloads.
    ///
    /// spec.pluginConfig carries {"target", "policy", "listener"} (and "publisher_key" with
    /// --publisher-key or --sign-key); spec.type (HTTP or NETWORK)
    /// follows the target's protocol; failStrategy is FAIL_CLOSE; the target's password and
    /// masking-key variables are passed from the proxy's environment (vmConfig.env, valueFrom
    /// HOST). Fields and rollout: docs/deploying.md.
    #[command(after_help = EXIT_CODES, disable_version_flag = true)]
    Istio(Box<istio::Args>),
    /// Audit logs: `pinhole audit verify FILE...` checks their hash chains (docs/audit.md).
    #[command(after_help = audit::AUDIT_EXIT_CODES)]
    Audit(audit::Args),
    /// Approve one command held by a `review` rule: show it, then sign a grant bound to its
    /// subject, target, rule and exact command, valid for a bounded time.
    #[command(after_help = GRANT_EXIT_CODES)]
    Approve(Box<approve::Args>),
    /// Elevate a subject to a role for a while (just-in-time access), under the policy's
    /// `elevation:` rules: a signed grant that ends by itself.
    #[command(after_help = GRANT_EXIT_CODES)]
    Elevate(Box<elevate::Args>),
}

const GRANT_EXIT_CODES: &str = "\
Ship the grant with the policy: `pinhole push policy.yaml --grants grants/ ...` (or `pinhole
compile policy.yaml --grants grants/ -o policy.blob`). The filter checks it again when the policy
loads.

Exit codes:
  0  grant written
  1  refused: the key is no approver of the policy, the approver may not approve this rule or
     grant this role for that long, it is a self-approval, the request is not in the logs or its
     event was altered, or the confirmation was declined
  2  usage error: bad arguments, unreadable key, policy or log, unwritable output";

/// Output format for machine consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Text for people (diagnostics on stderr).
    #[default]
    Human,
    /// One JSON document on stdout.
    Json,
}

pub fn run(cli: Cli) -> Exit {
    match cli.command {
        Command::Check(a) => check::run(&a),
        Command::Test(a) => test::run(&a),
        Command::Explain(a) => explain::run(&a),
        Command::Diff(a) => diff::run(&a),
        Command::Compile(a) => compile::run(&a),
        Command::Inspect(a) => inspect::run(&a),
        Command::Keygen(a) => keygen::run(&a),
        Command::Push(a) => push::run(&a),
        Command::Istio(a) => istio::run(&a),
        Command::Audit(a) => audit::run(&a),
        Command::Approve(a) => approve::run(&a),
        Command::Elevate(a) => elevate::run(&a),
    }
}

/// `SOURCE_DATE_EPOCH` (recorded in blobs), or the usage error it is.
pub fn source_date_epoch() -> Result<Option<u64>, Exit> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => policy_compiler::parse_source_date_epoch(&v)
            .map(Some)
            .map_err(usage_error),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(usage_error("SOURCE_DATE_EPOCH is not valid Unicode"))
        }
    }
}

/// The key of `--sign-key`, if given (a usage error when it cannot be
/// read). Warns when the file is readable by other users.
pub fn sign_key(path: Option<&std::path::Path>) -> Result<Option<ed25519_compact::KeyPair>, Exit> {
    let Some(path) = path else {
        return Ok(None);
    };
    let kp = policy_compiler::signing::load_signing_key(path).map_err(usage_error)?;
    if policy_compiler::signing::readable_by_others(path) {
        eprintln!(
            "pinhole: warning: signing key {} is readable by other users (chmod 600 it)",
            path.display()
        );
    }
    Ok(Some(kp))
}

/// Print a usage/IO error and return [`Exit::Usage`].
/// `policy` with the grants of `paths` (see `policy_compiler::grants`):
/// problems are printed, and nothing is to be written then.
pub fn with_grants(
    policy: &pinhole_filter::policy::Policy,
    paths: &[std::path::PathBuf],
) -> Result<pinhole_filter::policy::Policy, Exit> {
    let mut p = policy.clone();
    if paths.is_empty() {
        return Ok(p);
    }
    match policy_compiler::grants::read(paths, policy, policy_compiler::grants::now()) {
        Ok(read) => {
            for n in &read.notes {
                eprintln!("pinhole: note: {n}");
            }
            eprintln!(
                "pinhole: {} shipped with the policy",
                policy_compiler::diag::plural(read.tokens.len(), "grant")
            );
            p.grants = read.tokens;
            Ok(p)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("pinhole: error: {e}");
            }
            eprintln!(
                "pinhole: {} refused; nothing written",
                policy_compiler::diag::plural(errors.len(), "grant")
            );
            Err(Exit::Policy)
        }
    }
}

pub fn usage_error(msg: impl std::fmt::Display) -> Exit {
    eprintln!("pinhole: error: {msg}");
    Exit::Usage
}

/// Print the diagnostics of a loaded policy to stderr, followed by a count
/// line when there are any. Returns true when the policy is acceptable
/// (no errors; no warnings either under `deny_warnings`).
pub fn report(loaded: &policy_compiler::Loaded, deny_warnings: bool) -> bool {
    for line in loaded.rendered() {
        eprintln!("{line}");
    }
    let errors = loaded.compiled.error_count();
    let warnings = loaded.compiled.warning_count();
    let ok = errors == 0 && !(deny_warnings && warnings > 0);
    if !ok {
        let mut parts = Vec::new();
        if errors > 0 {
            parts.push(policy_compiler::diag::plural(errors, "error"));
        }
        if warnings > 0 {
            parts.push(policy_compiler::diag::plural(warnings, "warning"));
        }
        let extra = if errors == 0 {
            " (--deny-warnings)"
        } else {
            ""
        };
        eprintln!("{}: {}{extra}", loaded.path.display(), parts.join(", "));
    }
    ok
}

/// Diagnostics as JSON: `[{"severity", "line", "col", "message"}]`.
pub fn diagnostics_json(diags: &[policy_compiler::Diagnostic]) -> serde_json::Value {
    serde_json::Value::Array(
        diags
            .iter()
            .map(|d| {
                serde_json::json!({
                    "severity": d.severity,
                    "line": d.span.line,
                    "col": d.span.col,
                    "message": d.message,
                })
            })
            .collect(),
    )
}

/// Load a policy that must compile (for `test`, `explain`, `diff`). On
/// errors, prints them (stderr, or a JSON document with `format` json) and
/// returns the exit code. Warnings are not printed: `check` reports them.
pub fn load_policy(
    path: &std::path::Path,
    format: Format,
) -> Result<(policy_compiler::Loaded, pinhole_filter::policy::Policy), Exit> {
    let loaded = match policy_compiler::load(path) {
        Ok(l) => l,
        Err(e) => return Err(usage_error(format!("cannot read {}: {e}", path.display()))),
    };
    if let Some(p) = loaded.compiled.policy.clone() {
        return Ok((loaded, p));
    }
    let errors: Vec<policy_compiler::Diagnostic> = loaded
        .compiled
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    match format {
        Format::Json => {
            let doc = serde_json::json!({
                "file": path.display().to_string(),
                "ok": false,
                "errors": errors.len(),
                "diagnostics": diagnostics_json(&errors),
            });
            println!("{doc}");
        }
        Format::Human => {
            let name = path.display().to_string();
            for d in &errors {
                eprintln!("{}", d.render(&name));
            }
            eprintln!(
                "{name}: {}",
                policy_compiler::diag::plural(errors.len(), "error")
            );
        }
    }
    Err(Exit::Policy)
}
