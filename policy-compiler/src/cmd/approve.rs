//! `pinhole approve REQUEST --from LOG --policy POLICY --key KEY`: sign an
//! approval of one held command.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;

use pinhole_filter::audit::LOG_PREFIX;
use pinhole_filter::grant::{self, Fingerprint, GrantClaims, GrantKind, DEFAULT_GRANT_TTL_SECS};
use pinhole_filter::policy::Policy;
use policy_compiler::grants;
use serde_json::Value;

use super::{usage_error, Exit, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The request id from the refusal (`rq-` and 16 hex digits).
    pub request: String,
    /// Where the held request is recorded: an audit log (Envoy's log with `pinhole-audit:`
    /// lines, or the JSON lines of the HTTP audit sink) or a review-webhook notice (repeatable).
    #[arg(long, value_name = "FILE", required = true)]
    pub from: Vec<PathBuf>,
    /// The policy in force (YAML, or a blob from `pinhole compile`): it says who may approve
    /// the rule and for how long.
    #[arg(long, value_name = "POLICY")]
    pub policy: PathBuf,
    /// Your Ed25519 private key (PEM, from `pinhole keygen`); its public half must be listed
    /// under the policy's `approvers:`.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// How long the approval lasts, from now (e.g. `15m`). Default and maximum: the rule's
    /// `grant_ttl` (1h when the rule sets none).
    #[arg(long = "for", value_name = "DURATION")]
    pub valid_for: Option<String>,
    /// Approve without asking (otherwise a terminal is asked to confirm).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Write the grant here (a `.grant` file for `--grants`); `-` or absent: stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format. `json` prints {"ok", "grant", "token", "output"} on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// The held request, as recorded in an audit event.
#[derive(Debug)]
struct Held {
    subject: String,
    issuer: String,
    target: String,
    rule: String,
    fingerprint: String,
    time: String,
    reason: String,
    /// What the approver approves, shown and checked against the
    /// fingerprint.
    command: Command,
}

#[derive(Debug)]
enum Command {
    Sql(String),
    Tool { name: String, arguments: Value },
    Other { method: String, subject: String },
    Http { method: String, path: String },
}

impl Command {
    fn fingerprint(&self) -> String {
        match self {
            Command::Sql(s) => Fingerprint::Sql(s).hex(),
            Command::Tool { name, arguments } => Fingerprint::Tool { name, arguments }.hex(),
            Command::Other { method, subject } => Fingerprint::Mcp { method, subject }.hex(),
            Command::Http { method, path } => Fingerprint::Http { method, path }.hex(),
        }
    }

    fn show(&self) -> String {
        match self {
            Command::Sql(s) => format!("SQL: {s}"),
            Command::Tool { name, arguments } => {
                let mut a = String::new();
                grant::canonical_json(arguments, &mut a);
                format!("tools/call `{name}` with arguments {a}")
            }
            Command::Other { method, subject } => format!("{method} {subject}"),
            Command::Http { method, path } => format!("HTTP {method} {path}"),
        }
    }
}

/// Audit events in a file: log lines, JSON lines, or one notice document.
fn events(text: &str) -> Vec<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return vec![v.get("event").cloned().unwrap_or(v)];
    }
    let mut out = Vec::new();
    for line in text.lines() {
        let json = match line.find(LOG_PREFIX) {
            Some(at) => line.get(at + LOG_PREFIX.len()..).unwrap_or_default(),
            None if line.trim_start().starts_with('{') => line.trim(),
            None => continue,
        };
        if let Ok(v) = serde_json::from_str::<Value>(json) {
            out.push(v.get("event").cloned().unwrap_or(v));
        }
    }
    out
}

fn s(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::to_owned)
}

fn held(e: &Value, request: &str) -> Option<Result<Held, String>> {
    let a = e.get("approval")?;
    if a.get("request").and_then(Value::as_str) != Some(request) || !a["grant"].is_null() {
        return None;
    }
    Some((|| {
        let need = |v: Option<String>, what: &str| {
            v.ok_or_else(|| format!("the event of {request} has no `{what}`"))
        };
        let c = &e["command"];
        let method = s(c, &["method"]).unwrap_or_default();
        let command = if let Some(sql) = s(c, &["sql"]).filter(|_| method.is_empty()) {
            if c["truncated"].as_bool() == Some(true) {
                return Err(format!(
                    "the event of {request} holds only the start of the SQL text (it was cut); \
                     approve from the review-webhook notice or a log that holds all of it"
                ));
            }
            Command::Sql(sql)
        } else if method == "tools/call" {
            let Some(arguments) = c.get("arguments").cloned() else {
                return Err(format!(
                    "the event of {request} does not carry the call's arguments (larger than the \
                     audit limit), so it cannot be shown or approved"
                ));
            };
            Command::Tool {
                name: need(s(c, &["tool"]), "command.tool")?,
                arguments,
            }
        } else if let Some(path) = s(c, &["path"]) {
            Command::Http { method, path }
        } else if let Some(uri) = s(c, &["resource"]) {
            Command::Other {
                method: "resources".into(),
                subject: uri,
            }
        } else if let Some(name) = s(c, &["prompt"]) {
            Command::Other {
                method: "prompts/get".into(),
                subject: name,
            }
        } else {
            Command::Other {
                method,
                subject: String::new(),
            }
        };
        Ok(Held {
            subject: need(s(e, &["identity", "subject"]), "identity.subject")?,
            issuer: need(s(e, &["identity", "issuer"]), "identity.issuer")?,
            target: need(s(e, &["target"]), "target")?,
            rule: need(s(e, &["rule"]), "rule")?,
            fingerprint: need(s(a, &["fingerprint"]), "approval.fingerprint")?,
            time: s(e, &["time"]).unwrap_or_default(),
            reason: s(e, &["reason"]).unwrap_or_default(),
            command,
        })
    })())
}

fn find(a: &Args) -> Result<Held, Exit> {
    let mut problem = None;
    for f in &a.from {
        let text = std::fs::read_to_string(f)
            .map_err(|e| usage_error(format!("cannot read {}: {e}", f.display())))?;
        for e in events(&text) {
            match held(&e, &a.request) {
                Some(Ok(h)) => return Ok(h),
                Some(Err(why)) => problem = Some(why),
                None => {}
            }
        }
    }
    Err(match problem {
        Some(why) => refuse(&why),
        None => usage_error(format!(
            "request {} is not in {}: no audit event holds it (look for `\"request\":\"{}\"` in \
             the audit trail, or use the review-webhook notice)",
            a.request,
            a.from
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            a.request
        )),
    })
}

fn refuse(why: &str) -> Exit {
    eprintln!("pinhole: approval refused: {why}");
    Exit::Policy
}

pub fn load_policy_any(path: &std::path::Path) -> Result<Policy, Exit> {
    let bytes = std::fs::read(path)
        .map_err(|e| usage_error(format!("cannot read {}: {e}", path.display())))?;
    if bytes.starts_with(pinhole_filter::policy::blob::MAGIC) {
        return pinhole_filter::policy::blob::decode(&bytes)
            .map(|b| b.policy)
            .map_err(|e| refuse(&format!("{}: {e}", path.display())));
    }
    super::load_policy(path, Format::Human).map(|(_, p)| p)
}

pub fn run(a: &Args) -> Exit {
    match go(a) {
        Ok(()) => Exit::Ok,
        Err(e) => e,
    }
}

fn go(a: &Args) -> Result<(), Exit> {
    let key = super::sign_key(Some(&a.key))?.ok_or(Exit::Usage)?;
    let policy = load_policy_any(&a.policy)?;
    let approver = grants::approver_of(&policy, &key.pk).map_err(|e| refuse(&e))?;
    let h = find(a)?;
    // The event must be about what it says.
    let fp = h.command.fingerprint();
    if fp != h.fingerprint {
        return Err(refuse(&format!(
            "the recorded command of {} does not match its fingerprint: the audit event was \
             altered; do not approve it",
            a.request
        )));
    }
    let want = grant::request_id(&h.issuer, &h.subject, &h.target, &h.rule, &fp);
    if want != a.request {
        return Err(refuse(&format!(
            "the audit event of {} describes request {want}: the audit event was altered",
            a.request
        )));
    }
    if h.subject == approver.name || approver.subject.as_deref() == Some(h.subject.as_str()) {
        return Err(refuse(&format!(
            "{} was asked by `{}`, who is you (approver `{}`): a requester cannot approve its own \
             request; ask another approver",
            a.request, h.subject, approver.name
        )));
    }
    let review = policy.review(&h.rule);
    let groups = review.map(|r| r.approvers.clone()).unwrap_or_default();
    if !approver.groups.iter().any(|g| groups.contains(g)) {
        return Err(refuse(&format!(
            "you (`{}`, groups {:?}) may not approve rule `{}`; its approvers: {:?}",
            approver.name, approver.groups, h.rule, groups
        )));
    }
    let ttl = review.map_or(DEFAULT_GRANT_TTL_SECS, |r| r.grant_ttl_secs);
    let secs = match &a.valid_for {
        None => ttl,
        Some(d) => {
            policy_compiler::duration::parse(d).map_err(|e| usage_error(format!("--for: {e}")))?
        }
    };
    if secs == 0 || secs > ttl {
        return Err(usage_error(format!(
            "--for must be between 1s and rule `{}`'s grant_ttl ({ttl} s)",
            h.rule
        )));
    }
    eprintln!(
        "request {}\n  who:     {} (issuer `{}`)\n  where:   target `{}`\n  when:    {}\n  rule:    {}\n  command: {}\n  why held: {}\n  approval by `{}`, valid for {} s",
        a.request,
        h.subject,
        h.issuer,
        h.target,
        h.time,
        h.rule,
        h.command.show(),
        h.reason,
        approver.name,
        secs
    );
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            return Err(usage_error(
                "not asking for confirmation without a terminal: pass --yes to approve",
            ));
        }
        eprint!("Approve this exact command? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("pinhole: not approved");
            return Err(Exit::Policy);
        }
    }
    let now = grants::now();
    let claims = GrantClaims {
        id: String::new(),
        kind: GrantKind::Approval,
        subject: h.subject.clone(),
        issuer: Some(h.issuer.clone()),
        approver: approver.name.clone(),
        issued_at: now,
        not_before: now,
        expires: now + secs,
        reason: None,
        target: Some(h.target.clone()),
        rule: Some(h.rule.clone()),
        request: Some(a.request.clone()),
        fingerprint: Some(fp),
        command: Some(clip(&h.command.show(), 4096)),
        role: None,
    };
    let (token, claims) = grants::issue(claims, &key, &policy).map_err(|e| refuse(&e))?;
    write_grant(a.output.as_deref(), &token, &claims, a.format)
}

pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or_default())
}

/// Write a grant token (with a comment line describing it) to a file or
/// stdout, and report.
pub fn write_grant(
    out: Option<&std::path::Path>,
    token: &str,
    claims: &GrantClaims,
    format: Format,
) -> Result<(), Exit> {
    let described = grants::describe(claims);
    let to_file = out.filter(|p| p.as_os_str() != "-");
    if let Some(p) = to_file {
        let mut text = String::new();
        for line in described.lines() {
            text.push_str("# ");
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(token);
        text.push('\n');
        policy_compiler::write_atomic(p, text.as_bytes())
            .map_err(|e| usage_error(format!("cannot write {}: {e}", p.display())))?;
    }
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "grant": claims,
                "token": token,
                "output": to_file.map(|p| p.display().to_string()),
            })
        ),
        Format::Human => {
            eprintln!("{described}");
            match to_file {
                Some(p) => eprintln!(
                    "wrote {}: ship it with `pinhole push POLICY --grants {}` (or compile --grants)",
                    p.display(),
                    p.display()
                ),
                None => println!("{token}"),
            }
        }
    }
    Ok(())
}
