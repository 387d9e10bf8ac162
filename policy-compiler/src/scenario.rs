//! One request by one identity, decided by the filter's own code: the
//! shared core of `pinhole test` and `pinhole explain`.
//!
//! An identity is given by its claims, standing for a token whose signature,
//! lifetime (`exp`, `nbf`, `iat`, `max_token_lifetime`) and audience were
//! verified: those checks need the issuer's private keys and a clock, and
//! are covered by the filter's own tests. What is applied here, with the
//! filter's functions, is everything that depends on the policy: the issuer
//! chosen by `iss` (or named), the `sub` and `jti` claim checks, groups read
//! from the issuer's `groups_claim`
//! ([`groups_from_claims`]),
//! revocation ([`check_revoked`]), roles ([`roles_for`]) and the decision
//! ([`evaluate_traced`], [`visible`]). MCP requests are built as JSON-RPC
//! messages and classified by the filter's MCP decoder, so a case sees the
//! same [`Request`] the filter would.

use pinhole_filter::identity::jwt::check_revoked;
use pinhole_filter::identity::roles::{groups_from_claims, role_matches, roles_for};
use pinhole_filter::identity::{AuthError, VerifiedToken};
use pinhole_filter::mcp::{parse_body, Class, ListKind};
use pinhole_filter::policy::eval::{
    evaluate_sql, evaluate_traced, visible, Item, Request, RuleTrace,
};
use pinhole_filter::policy::{ClaimMatch, Effect, Issuer, Policy, Protocol, Role};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Who is asking: claims, and optionally the issuer's policy name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdentitySpec {
    /// Policy name of the issuer (`issuer: corp-sso`); otherwise the claims'
    /// `iss` chooses it.
    pub issuer: Option<String>,
    pub claims: Map<String, Value>,
}

/// What is asked.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestSpec {
    /// An MCP JSON-RPC request (`tool:`/`resource:`/`prompt:` are turned
    /// into `tools/call`, `resources/read`, `prompts/get`).
    Mcp { method: String, params: Value },
    /// A plain HTTP request.
    Http { method: String, path: String },
    /// A list response: which of these items the caller sees.
    List { kind: ListKind, items: Vec<String> },
    /// SQL text on a postgres target (every statement is decided).
    Sql { text: String },
}

impl RequestSpec {
    pub fn tool(name: &str, arguments: Value) -> RequestSpec {
        RequestSpec::Mcp {
            method: "tools/call".into(),
            params: json!({ "name": name, "arguments": arguments }),
        }
    }

    pub fn resource(uri: &str) -> RequestSpec {
        RequestSpec::Mcp {
            method: "resources/read".into(),
            params: json!({ "uri": uri }),
        }
    }

    pub fn prompt(name: &str) -> RequestSpec {
        RequestSpec::Mcp {
            method: "prompts/get".into(),
            params: json!({ "name": name }),
        }
    }

    /// The protocol of target this request needs.
    pub fn protocol(&self) -> Protocol {
        match self {
            RequestSpec::Mcp { .. } | RequestSpec::List { .. } => Protocol::Mcp,
            RequestSpec::Http { .. } => Protocol::Http,
            RequestSpec::Sql { .. } => Protocol::Postgres,
        }
    }
}

/// A whole case: identity, target, request.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub identity: IdentitySpec,
    pub target: String,
    pub request: RequestSpec,
}

/// The outcome, as a test expects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
    /// Needs a reviewer's approval (refused until approvals exist).
    Review,
    /// The token is refused before any rule is considered (HTTP 401):
    /// unknown issuer, missing `sub`, revoked subject or token id.
    Unauthenticated,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Review => "review",
            Verdict::Unauthenticated => "unauthenticated",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "allow" => Some(Verdict::Allow),
            "deny" => Some(Verdict::Deny),
            "review" => Some(Verdict::Review),
            "unauthenticated" => Some(Verdict::Unauthenticated),
            _ => None,
        }
    }

    pub const NAMES: [&'static str; 4] = ["allow", "deny", "review", "unauthenticated"];
}

impl From<Effect> for Verdict {
    fn from(e: Effect) -> Verdict {
        match e {
            Effect::Allow => Verdict::Allow,
            Effect::Deny => Verdict::Deny,
            Effect::Review => Verdict::Review,
        }
    }
}

/// What happened to the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub decision: Verdict,
    /// The deciding rule; `None` for the default deny, a lifecycle message,
    /// a list, or a refused token.
    pub rule: Option<String>,
    pub reason: String,
    /// For a list: the items the caller sees, in the order asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visible: Option<Vec<String>>,
}

/// The identity as the filter would see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentityReport {
    /// `verified` or `refused`.
    pub status: &'static str,
    /// Policy name of the issuer, when one was chosen.
    pub issuer: Option<String>,
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub jti: Option<String>,
    pub groups: Vec<String>,
    pub revoked: bool,
    /// Why the token is refused (the filter's short reason).
    pub refused: Option<String>,
    /// The roles held, in policy order.
    pub roles: Vec<String>,
}

/// One condition of a role, checked with the filter's role matcher.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionReport {
    /// `issuer`, `subjects`, `groups` or `claims.<name>`.
    pub condition: String,
    /// What the role requires.
    pub requires: Value,
    /// What the identity has.
    pub actual: Value,
    pub holds: bool,
}

/// One role, held or not, with each condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleReport {
    pub role: String,
    pub held: bool,
    pub conditions: Vec<ConditionReport>,
}

/// One rule considered, as the evaluator traced it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleReport {
    pub rule: String,
    pub effect: Effect,
    pub matched: bool,
    pub why: String,
}

impl From<RuleTrace> for RuleReport {
    fn from(t: RuleTrace) -> RuleReport {
        RuleReport {
            rule: t.rule,
            effect: t.effect,
            matched: t.matched,
            why: t.why,
        }
    }
}

/// Everything about one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub identity: IdentityReport,
    pub roles: Vec<RoleReport>,
    pub target: String,
    /// The request in words, e.g. ``tool `deploy` ``.
    pub request: String,
    /// Every rule of the target, in policy order, with why it matched or
    /// not (empty when the token was refused or no rule decides).
    pub rules: Vec<RuleReport>,
    pub outcome: Outcome,
}

/// Build the verified token the claims stand for. `Err` is a problem with
/// the case itself; `Ok(Err(_))` is a token the filter would refuse.
pub fn token(
    policy: &Policy,
    spec: &IdentitySpec,
) -> Result<Result<VerifiedToken, AuthError>, String> {
    let mut claims = spec.claims.clone();
    let issuer: &Issuer = match &spec.issuer {
        Some(name) => {
            let Some(i) = policy.issuer(name) else {
                return Err(format!(
                    "unknown issuer `{name}`{}",
                    crate::suggest::did_you_mean(
                        name,
                        policy.issuers.iter().map(|i| i.name.as_str())
                    )
                ));
            };
            match claims.get("iss") {
                None => {
                    claims.insert("iss".into(), Value::String(i.issuer.clone()));
                }
                Some(Value::String(s)) if *s == i.issuer => {}
                Some(other) => {
                    return Err(format!(
                        "claim `iss` ({other}) contradicts `issuer: {name}`, whose `iss` is {:?}; give one of them",
                        i.issuer
                    ))
                }
            }
            i
        }
        None => match claims.get("iss") {
            None => {
                return Err(
                    "the identity needs an `iss` claim or an `issuer:` (an issuer's policy name)"
                        .into(),
                )
            }
            Some(Value::String(iss)) => match policy.issuers.iter().find(|i| i.issuer == *iss) {
                Some(i) => i,
                None => return Ok(Err(AuthError::UnknownIssuer)),
            },
            Some(_) => return Ok(Err(AuthError::InvalidClaim("iss"))),
        },
    };
    let sub = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) | None => return Ok(Err(AuthError::MissingClaim("sub"))),
        Some(_) => return Ok(Err(AuthError::InvalidClaim("sub"))),
    };
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Ok(Err(AuthError::InvalidClaim("jti"))),
    };
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    let groups = groups_from_claims(&claims, &issuer.groups_claim);
    Ok(Ok(VerifiedToken {
        issuer_name: issuer.name.clone(),
        iss: issuer.issuer.clone(),
        sub,
        exp,
        jti,
        groups,
        claims,
    }))
}

/// Each role with each of its conditions, checked one by one with the
/// filter's [`role_matches`] (a role is the conjunction of its conditions).
pub fn role_reports(policy: &Policy, t: &VerifiedToken) -> Vec<RoleReport> {
    let held = roles_for(policy, t);
    policy
        .roles
        .iter()
        .map(|role| {
            let bare = Role {
                name: role.name.clone(),
                issuer: None,
                subjects: Vec::new(),
                groups: Vec::new(),
                claims: Vec::new(),
            };
            let mut conditions = Vec::new();
            if let Some(i) = &role.issuer {
                let one = Role {
                    issuer: Some(i.clone()),
                    ..bare.clone()
                };
                conditions.push(ConditionReport {
                    condition: "issuer".into(),
                    requires: json!(i),
                    actual: json!(t.issuer_name),
                    holds: role_matches(&one, t),
                });
            }
            if !role.subjects.is_empty() {
                let one = Role {
                    subjects: role.subjects.clone(),
                    ..bare.clone()
                };
                conditions.push(ConditionReport {
                    condition: "subjects".into(),
                    requires: json!(role.subjects),
                    actual: json!(t.sub),
                    holds: role_matches(&one, t),
                });
            }
            if !role.groups.is_empty() {
                let one = Role {
                    groups: role.groups.clone(),
                    ..bare.clone()
                };
                conditions.push(ConditionReport {
                    condition: "groups".into(),
                    requires: json!(role.groups),
                    actual: json!(t.groups),
                    holds: role_matches(&one, t),
                });
            }
            for c in &role.claims {
                let one = Role {
                    claims: vec![ClaimMatch {
                        claim: c.claim.clone(),
                        patterns: c.patterns.clone(),
                    }],
                    ..bare.clone()
                };
                conditions.push(ConditionReport {
                    condition: format!("claims.{}", c.claim),
                    requires: json!(c.patterns),
                    actual: pinhole_filter::identity::roles::claim_at(&t.claims, &c.claim)
                        .cloned()
                        .unwrap_or(Value::Null),
                    holds: role_matches(&one, t),
                });
            }
            RoleReport {
                role: role.name.clone(),
                held: held.contains(&role.name),
                conditions,
            }
        })
        .collect()
}

/// Check that `target` exists and fits the request. `Err` names the
/// problem (for a case's diagnostics).
pub fn check_target(policy: &Policy, target: &str, req: &RequestSpec) -> Result<(), String> {
    let Some(t) = policy.target(target) else {
        return Err(format!(
            "unknown target `{target}`{}",
            crate::suggest::did_you_mean(target, policy.targets.iter().map(|t| t.name.as_str()))
        ));
    };
    let wanted = req.protocol();
    if t.protocol != wanted {
        let what = match req {
            RequestSpec::Mcp { .. } => "an `mcp` request",
            RequestSpec::List { .. } => "a `list`",
            RequestSpec::Http { .. } => "an `http` request",
            RequestSpec::Sql { .. } => "a `sql` request",
        };
        if t.protocol == Protocol::Postgres {
            return Err(format!(
                "target `{target}` is a postgres target: test it with `sql: \"...\"`, not {what}"
            ));
        }
        let article = if wanted == Protocol::Postgres {
            "a"
        } else {
            "an"
        };
        return Err(format!(
            "{what} needs {article} {} target; target `{target}` is {}",
            wanted.as_str(),
            t.protocol.as_str()
        ));
    }
    Ok(())
}

fn list_item(kind: ListKind, name: &str) -> Item<'_> {
    match kind {
        ListKind::Tools => Item::Tool(name),
        ListKind::Resources => Item::Resource(name),
        ListKind::ResourceTemplates => Item::ResourceTemplate(name),
        ListKind::Prompts => Item::Prompt(name),
    }
}

/// Decide the scenario. `Err` is a problem with the scenario (unknown
/// target or issuer, a request the MCP decoder refuses as invalid params).
pub fn run(policy: &Policy, s: &Scenario) -> Result<Run, String> {
    check_target(policy, &s.target, &s.request)?;
    let verified = token(policy, &s.identity)?;
    let (mut identity, token) = match verified {
        Ok(t) => {
            let revoked = check_revoked(policy, &t).err();
            let report = IdentityReport {
                status: if revoked.is_some() {
                    "refused"
                } else {
                    "verified"
                },
                issuer: Some(t.issuer_name.clone()),
                iss: Some(t.iss.clone()),
                sub: Some(t.sub.clone()),
                jti: t.jti.clone(),
                groups: t.groups.clone(),
                revoked: revoked.is_some(),
                refused: revoked.as_ref().map(|e| e.reason().to_owned()),
                roles: Vec::new(),
            };
            match revoked {
                None => (report, Ok(t)),
                Some(e) => (report, Err(e)),
            }
        }
        Err(e) => (
            IdentityReport {
                status: "refused",
                issuer: None,
                iss: s
                    .identity
                    .claims
                    .get("iss")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                sub: s
                    .identity
                    .claims
                    .get("sub")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                jti: None,
                groups: Vec::new(),
                revoked: false,
                refused: Some(e.reason().to_owned()),
                roles: Vec::new(),
            },
            Err(e),
        ),
    };
    let request = describe(&s.request);
    let t = match token {
        Ok(t) => t,
        Err(e) => {
            return Ok(Run {
                identity,
                roles: Vec::new(),
                target: s.target.clone(),
                request,
                rules: Vec::new(),
                outcome: Outcome {
                    decision: Verdict::Unauthenticated,
                    rule: None,
                    reason: format!("the token is refused: {} (HTTP 401)", e.reason()),
                    visible: None,
                },
            })
        }
    };
    let roles = roles_for(policy, &t);
    identity.roles = roles.clone();
    let role_reports = role_reports(policy, &t);
    let mut rules = Vec::new();
    let outcome = decide(policy, &roles, &s.target, &s.request, &mut |tr| {
        rules.push(RuleReport::from(tr))
    })?;
    Ok(Run {
        identity,
        roles: role_reports,
        target: s.target.clone(),
        request,
        rules,
        outcome,
    })
}

/// The request in words.
pub fn describe(r: &RequestSpec) -> String {
    match r {
        RequestSpec::Mcp { method, params } => match method.as_str() {
            "tools/call" => {
                let name = params.get("name").and_then(Value::as_str).unwrap_or("?");
                match params.get("arguments") {
                    Some(a) if a.as_object().is_some_and(|o| !o.is_empty()) => {
                        format!("MCP tools/call `{name}` with arguments {a}")
                    }
                    _ => format!("MCP tools/call `{name}`"),
                }
            }
            "resources/read" => format!(
                "MCP resources/read `{}`",
                params.get("uri").and_then(Value::as_str).unwrap_or("?")
            ),
            "prompts/get" => format!(
                "MCP prompts/get `{}`",
                params.get("name").and_then(Value::as_str).unwrap_or("?")
            ),
            m => {
                if params.is_null() {
                    format!("MCP method `{m}`")
                } else {
                    format!("MCP method `{m}` with params {params}")
                }
            }
        },
        RequestSpec::Http { method, path } => format!("HTTP {method} {path}"),
        RequestSpec::List { kind, items } => format!("MCP {} of {items:?}", kind.method()),
        RequestSpec::Sql { text } => format!("SQL `{text}`"),
    }
}

fn decide(
    policy: &Policy,
    roles: &[String],
    target: &str,
    req: &RequestSpec,
    trace: &mut dyn FnMut(RuleTrace),
) -> Result<Outcome, String> {
    match req {
        RequestSpec::Sql { text } => {
            let d = evaluate_sql(policy, roles, target, text, trace);
            Ok(Outcome {
                decision: d.effect.into(),
                rule: d.rule,
                reason: d.reason,
                visible: None,
            })
        }
        RequestSpec::Http { method, path } => {
            // The filter decides on the path without query or fragment.
            let path = path.split(['?', '#']).next().unwrap_or_default();
            let d = evaluate_traced(
                policy,
                roles,
                target,
                &Request::Http { method, path },
                trace,
            );
            Ok(Outcome {
                decision: d.effect.into(),
                rule: d.rule,
                reason: d.reason,
                visible: None,
            })
        }
        RequestSpec::List { kind, items } => {
            let seen: Vec<String> = items
                .iter()
                .filter(|i| visible(policy, roles, target, list_item(*kind, i)))
                .cloned()
                .collect();
            Ok(Outcome {
                decision: Verdict::Allow,
                rule: None,
                reason: format!(
                    "`{}` passes; its response shows {} of {} items",
                    kind.method(),
                    seen.len(),
                    items.len()
                ),
                visible: Some(seen),
            })
        }
        RequestSpec::Mcp { method, params } => {
            let mut msg = json!({ "jsonrpc": "2.0", "id": 1, "method": method });
            if !params.is_null() {
                if let Some(o) = msg.as_object_mut() {
                    o.insert("params".into(), params.clone());
                }
            }
            let body = parse_body(msg.to_string().as_bytes())
                .map_err(|e| format!("the MCP decoder refuses this request: {e}"))?;
            let Some(m) = body.messages().first() else {
                return Err("the MCP decoder found no message".into());
            };
            match m.classify() {
                Err(e) => Err(format!(
                    "the MCP decoder refuses this request as invalid params: {}",
                    e.0
                )),
                Ok(Class::Lifecycle) => Ok(Outcome {
                    decision: Verdict::Allow,
                    rule: None,
                    reason: format!(
                        "`{method}` is a lifecycle message: it passes for every authenticated caller"
                    ),
                    visible: None,
                }),
                Ok(Class::List(kind)) => Err(format!(
                    "`{}` is not decided by rules (it passes and its response is filtered): test it with `list: {{ {}: [...] }}`",
                    kind.method(),
                    list_key(kind)
                )),
                Ok(Class::Response) => Err("a JSON-RPC response is not a request".into()),
                Ok(Class::Authorize(r)) => {
                    let d = evaluate_traced(policy, roles, target, &r, trace);
                    Ok(Outcome {
                        decision: d.effect.into(),
                        rule: d.rule,
                        reason: d.reason,
                        visible: None,
                    })
                }
            }
        }
    }
}

/// The `list:` key for a list kind.
pub fn list_key(kind: ListKind) -> &'static str {
    match kind {
        ListKind::Tools => "tools",
        ListKind::Resources => "resources",
        ListKind::ResourceTemplates => "resource_templates",
        ListKind::Prompts => "prompts",
    }
}
