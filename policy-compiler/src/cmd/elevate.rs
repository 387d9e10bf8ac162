//! `pinhole elevate --subject S --role R --for 30m --reason "…"`: sign a
//! time-bound role grant under the policy's elevation rules.

use std::path::PathBuf;

use pinhole_filter::grant::{GrantClaims, GrantKind};
use policy_compiler::grants;

use super::approve::{load_policy_any, write_grant};
use super::{usage_error, Exit, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Who is elevated: the `sub` of their tokens.
    #[arg(long, value_name = "SUB")]
    pub subject: String,
    /// Only tokens of this issuer (the policy's issuer name); default: any trusted issuer.
    #[arg(long, value_name = "NAME")]
    pub issuer: Option<String>,
    /// The role granted; an `elevation:` rule of the policy must offer it.
    #[arg(long, value_name = "ROLE")]
    pub role: String,
    /// How long, from now (e.g. `30m`); at most the elevation rule's `max`.
    #[arg(long = "for", value_name = "DURATION")]
    pub valid_for: String,
    /// Why (recorded in the grant and shown in audit).
    #[arg(long)]
    pub reason: String,
    /// The policy in force (YAML, or a blob from `pinhole compile`).
    #[arg(long, value_name = "POLICY")]
    pub policy: PathBuf,
    /// The approver's Ed25519 private key (PEM, from `pinhole keygen`); its public half must
    /// be listed under `approvers:` in a group the elevation rule names.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// Write the grant here (a `.grant` file for `--grants`); `-` or absent: stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format. `json` prints {"ok", "grant", "token", "output"} on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

pub fn run(a: &Args) -> Exit {
    match go(a) {
        Ok(()) => Exit::Ok,
        Err(e) => e,
    }
}

fn refuse(why: &str) -> Exit {
    eprintln!("pinhole: elevation refused: {why}");
    Exit::Policy
}

fn go(a: &Args) -> Result<(), Exit> {
    if a.reason.trim().is_empty() {
        return Err(usage_error("--reason must say why the elevation is needed"));
    }
    if a.subject.trim().is_empty() {
        return Err(usage_error("--subject must not be empty"));
    }
    let secs = policy_compiler::duration::parse(&a.valid_for)
        .map_err(|e| usage_error(format!("--for: {e}")))?;
    if secs == 0 {
        return Err(usage_error("--for must be longer than 0s"));
    }
    let key = super::sign_key(Some(&a.key))?.ok_or(Exit::Usage)?;
    let policy = load_policy_any(&a.policy)?;
    let approver = grants::approver_of(&policy, &key.pk).map_err(|e| refuse(&e))?;
    if let Some(i) = &a.issuer {
        if policy.issuer(i).is_none() {
            return Err(usage_error(format!(
                "--issuer `{i}` is not an issuer of the policy (issuers: {:?})",
                policy.issuers.iter().map(|i| &i.name).collect::<Vec<_>>()
            )));
        }
    }
    if a.subject == approver.name || approver.subject.as_deref() == Some(a.subject.as_str()) {
        return Err(refuse(&format!(
            "`{}` is you (approver `{}`): no one elevates themselves; ask another approver",
            a.subject, approver.name
        )));
    }
    let rules: Vec<_> = policy
        .elevation
        .iter()
        .filter(|e| e.role == a.role)
        .collect();
    if rules.is_empty() {
        let offered: Vec<&str> = policy.elevation.iter().map(|e| e.role.as_str()).collect();
        return Err(refuse(&format!(
            "no elevation rule of the policy offers role `{}` (offered: {offered:?})",
            a.role
        )));
    }
    let fits = rules
        .iter()
        .any(|e| approver.groups.iter().any(|g| e.approvers.contains(g)) && secs <= e.max_secs);
    if !fits {
        let why: Vec<String> = rules
            .iter()
            .map(|e| format!("approvers {:?}, at most {} s", e.approvers, e.max_secs))
            .collect();
        return Err(refuse(&format!(
            "`{}` (groups {:?}) may not grant `{}` for {secs} s; the elevation rules allow: {}",
            approver.name,
            approver.groups,
            a.role,
            why.join("; ")
        )));
    }
    let now = grants::now();
    let claims = GrantClaims {
        id: String::new(),
        kind: GrantKind::Elevation,
        subject: a.subject.clone(),
        issuer: a.issuer.clone(),
        approver: approver.name.clone(),
        issued_at: now,
        not_before: now,
        expires: now + secs,
        reason: Some(a.reason.clone()),
        target: None,
        rule: None,
        request: None,
        fingerprint: None,
        command: None,
        role: Some(a.role.clone()),
    };
    let (token, claims) = grants::issue(claims, &key, &policy).map_err(|e| refuse(&e))?;
    write_grant(a.output.as_deref(), &token, &claims, a.format)
}
