//! The evaluator: one function decides every request, in Envoy and in the
//! `pinhole` CLI alike.
//!
//! Decision order (a request is checked against every rule of its target):
//! 1. a matching `deny` rule wins;
//! 2. otherwise a matching `review` rule asks for approval (the filter refuses
//!    it until the approvals feature completes it — never allows);
//! 3. otherwise a matching `allow` rule allows;
//! 4. otherwise the request is denied (default deny).
//!
//! Rules are considered in source order within each effect, so the reported
//! rule is the first one of the winning effect.

use serde_json::Value;

use super::model::{ArgConstraint, ArgTest, Effect, Matcher, PathSeg, Policy, Rule};
use crate::glob;

/// What is being asked, already decoded from the protocol.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    /// MCP `tools/call`.
    ToolCall { name: &'a str, arguments: &'a Value },
    /// MCP `resources/read`, `resources/subscribe`, `resources/unsubscribe`.
    Resource { uri: &'a str },
    /// MCP `prompts/get`.
    Prompt { name: &'a str },
    /// Any other MCP method subject to authorization (e.g. `completion/complete`).
    McpMethod { method: &'a str },
    /// A plain HTTP request.
    Http { method: &'a str, path: &'a str },
}

impl Request<'_> {
    /// Short human description, e.g. ``tool `deploy` ``.
    pub fn describe(&self) -> String {
        match self {
            Request::ToolCall { name, .. } => format!("tool `{name}`"),
            Request::Resource { uri } => format!("resource `{uri}`"),
            Request::Prompt { name } => format!("prompt `{name}`"),
            Request::McpMethod { method } => format!("method `{method}`"),
            Request::Http { method, path } => format!("{method} {path}"),
        }
    }
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub effect: Effect,
    /// The deciding rule; `None` for the default deny.
    pub rule: Option<String>,
    /// One sentence for the caller and the log.
    pub reason: String,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.effect == Effect::Allow
    }
}

/// Why one rule did or did not match (for `explain` and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleTrace {
    pub rule: String,
    pub effect: Effect,
    pub matched: bool,
    pub why: String,
}

/// Decide `req` on `target` for an identity holding `roles`.
pub fn evaluate(policy: &Policy, roles: &[String], target: &str, req: &Request) -> Decision {
    evaluate_traced(policy, roles, target, req, &mut |_| {})
}

/// [`evaluate`], reporting every rule considered to `trace`.
pub fn evaluate_traced(
    policy: &Policy,
    roles: &[String],
    target: &str,
    req: &Request,
    trace: &mut dyn FnMut(RuleTrace),
) -> Decision {
    let mut first: [Option<(&Rule, String)>; 3] = [None, None, None];
    // The first allow rule that fitted the caller and the item but failed an
    // argument constraint: named in the default deny so the caller learns
    // which rule and which argument stopped it.
    let mut near_miss: Option<(&Rule, String)> = None;
    for rule in policy.rules.iter().filter(|r| r.target == target) {
        let outcome = rule_matches(rule, roles, req);
        let (matched, why) = match outcome {
            Ok(why) => (true, why),
            Err(Miss { why, near }) => {
                if near && rule.effect == Effect::Allow && near_miss.is_none() {
                    near_miss = Some((rule, why.clone()));
                }
                (false, why)
            }
        };
        trace(RuleTrace {
            rule: rule.id.clone(),
            effect: rule.effect,
            matched,
            why: why.clone(),
        });
        if matched {
            let slot = match rule.effect {
                Effect::Deny => 0,
                Effect::Review => 1,
                Effect::Allow => 2,
            };
            if let Some(s) = first.get_mut(slot) {
                if s.is_none() {
                    *s = Some((rule, why));
                }
            }
        }
    }
    let [deny, review, allow] = first;
    // 1. Any matching deny wins.
    if let Some((rule, why)) = deny {
        return Decision {
            effect: Effect::Deny,
            rule: Some(rule.id.clone()),
            reason: with_author_reason(format!("{} is denied ({why})", req.describe()), rule),
        };
    }
    // 2. Review: approval required (refused by the filter until approved).
    if let Some((rule, _)) = review {
        return Decision {
            effect: Effect::Review,
            rule: Some(rule.id.clone()),
            reason: with_author_reason(
                format!("{} requires a reviewer's approval", req.describe()),
                rule,
            ),
        };
    }
    // 3. An allow rule allows.
    if let Some((rule, _)) = allow {
        return Decision {
            effect: Effect::Allow,
            rule: Some(rule.id.clone()),
            reason: format!("{} is allowed", req.describe()),
        };
    }
    // 4. Default deny.
    if let Some((rule, why)) = near_miss {
        return Decision {
            effect: Effect::Deny,
            rule: Some(rule.id.clone()),
            reason: with_author_reason(format!("{} is not allowed: {why}", req.describe()), rule),
        };
    }
    Decision {
        effect: Effect::Deny,
        rule: None,
        reason: format!(
            "{} is not allowed for your roles on target `{target}` (no rule allows it)",
            req.describe()
        ),
    }
}

fn with_author_reason(msg: String, rule: &Rule) -> String {
    match &rule.reason {
        Some(r) => format!("{msg}: {r}"),
        None => msg,
    }
}

fn role_applies(rule: &Rule, roles: &[String]) -> bool {
    rule.roles.is_empty() || rule.roles.iter().any(|r| roles.contains(r))
}

/// Why a rule did not match; `near` when only an argument constraint failed.
struct Miss {
    why: String,
    near: bool,
}

impl From<String> for Miss {
    fn from(why: String) -> Miss {
        Miss { why, near: false }
    }
}

impl From<&str> for Miss {
    fn from(why: &str) -> Miss {
        Miss {
            why: why.to_string(),
            near: false,
        }
    }
}

/// `Ok(why it matched)` or `Err(why it did not)`.
fn rule_matches(rule: &Rule, roles: &[String], req: &Request) -> Result<String, Miss> {
    if !role_applies(rule, roles) {
        return Err(format!("caller holds none of the roles {:?}", rule.roles).into());
    }
    match (&rule.matcher, req) {
        (Matcher::Any, _) => Ok("rule covers every request on the target".into()),
        (Matcher::Mcp(m), Request::ToolCall { name, arguments }) => {
            if !glob::any_matches(&m.tools, name) {
                return Err(format!("tool `{name}` is not in {:?}", m.tools).into());
            }
            for c in &m.arguments {
                check_argument(c, arguments).map_err(|why| Miss { why, near: true })?;
            }
            if m.arguments.is_empty() {
                Ok(format!("tool `{name}` matches {:?}", m.tools))
            } else {
                Ok(format!(
                    "tool `{name}` matches {:?} and its arguments meet the rule's constraints",
                    m.tools
                ))
            }
        }
        (Matcher::Mcp(m), Request::Resource { uri }) => {
            if glob::any_matches(&m.resources, uri) {
                Ok(format!("resource `{uri}` matches {:?}", m.resources))
            } else {
                Err(format!("resource `{uri}` is not in {:?}", m.resources).into())
            }
        }
        (Matcher::Mcp(m), Request::Prompt { name }) => {
            if glob::any_matches(&m.prompts, name) {
                Ok(format!("prompt `{name}` matches {:?}", m.prompts))
            } else {
                Err(format!("prompt `{name}` is not in {:?}", m.prompts).into())
            }
        }
        (Matcher::Mcp(m), Request::McpMethod { method }) => {
            if glob::any_matches(&m.methods, method) {
                Ok(format!("method `{method}` matches {:?}", m.methods))
            } else {
                Err(format!("method `{method}` is not in {:?}", m.methods).into())
            }
        }
        (Matcher::Http(h), Request::Http { method, path }) => {
            if !h.methods.is_empty() && !h.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
                return Err(format!("method {method} is not in {:?}", h.methods).into());
            }
            if !h.paths.is_empty() && !glob::any_matches(&h.paths, path) {
                return Err(format!("path `{path}` is not in {:?}", h.paths).into());
            }
            Ok(format!("{method} {path} matches the rule"))
        }
        _ => Err("rule does not cover this kind of request".into()),
    }
}

/// Look up `path` inside `root`.
pub fn lookup<'v>(root: &'v Value, path: &[PathSeg]) -> Option<&'v Value> {
    let mut cur = root;
    for seg in path {
        cur = match seg {
            PathSeg::Key(k) => cur.as_object()?.get(k)?,
            PathSeg::Index(i) => cur.as_array()?.get(*i)?,
        };
    }
    Some(cur)
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        _ => a == b,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

fn check_argument(c: &ArgConstraint, arguments: &Value) -> Result<(), String> {
    let p = &c.path_text;
    let Some(v) = lookup(arguments, &c.path) else {
        return Err(format!("argument `{p}` is missing"));
    };
    let ok = match &c.test {
        ArgTest::Equals(want) => json_eq(v, want),
        ArgTest::OneOf(options) => options.iter().any(|o| json_eq(v, o)),
        ArgTest::Glob(globs) => v.as_str().is_some_and(|s| glob::any_matches(globs, s)),
        ArgTest::Range { min, max } => v.as_f64().is_some_and(|n| {
            n.is_finite() && min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)
        }),
    };
    if ok {
        Ok(())
    } else {
        let allowed = match &c.test {
            ArgTest::Equals(w) => format!("must equal {}", short(w)),
            ArgTest::OneOf(o) => format!(
                "must be one of [{}]",
                o.iter().map(short).collect::<Vec<_>>().join(", ")
            ),
            ArgTest::Glob(g) => format!("must be a string matching {g:?}"),
            ArgTest::Range { min, max } => match (min, max) {
                (Some(a), Some(b)) => format!("must be a number in [{a}, {b}]"),
                (Some(a), None) => format!("must be a number >= {a}"),
                (None, Some(b)) => format!("must be a number <= {b}"),
                (None, None) => "must be a number".into(),
            },
        };
        Err(format!("argument `{p}` = {} {allowed}", short(v)))
    }
}

/// Something a list response may show.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    Tool(&'a str),
    Resource(&'a str),
    ResourceTemplate(&'a str),
    Prompt(&'a str),
}

/// Whether a list response shows `item` to the caller: some allow or review
/// rule could let the caller use it (ignoring argument constraints), and no
/// deny rule refuses it outright (a deny without argument constraints).
pub fn visible(policy: &Policy, roles: &[String], target: &str, item: Item) -> bool {
    let null = Value::Null;
    let req = match item {
        Item::Tool(name) => Request::ToolCall {
            name,
            arguments: &null,
        },
        Item::Resource(uri) | Item::ResourceTemplate(uri) => Request::Resource { uri },
        Item::Prompt(name) => Request::Prompt { name },
    };
    let mut usable = false;
    for rule in policy.rules.iter().filter(|r| r.target == target) {
        if !role_applies(rule, roles) {
            continue;
        }
        let name_matches = match (&rule.matcher, &req) {
            (Matcher::Any, _) => true,
            (Matcher::Mcp(m), Request::ToolCall { name, .. }) => glob::any_matches(&m.tools, name),
            (Matcher::Mcp(m), Request::Resource { uri }) => glob::any_matches(&m.resources, uri),
            (Matcher::Mcp(m), Request::Prompt { name }) => glob::any_matches(&m.prompts, name),
            _ => false,
        };
        if !name_matches {
            continue;
        }
        let unconditional = match &rule.matcher {
            Matcher::Mcp(m) => m.arguments.is_empty() || !matches!(req, Request::ToolCall { .. }),
            _ => true,
        };
        match rule.effect {
            Effect::Deny if unconditional => return false,
            Effect::Deny => {}
            Effect::Allow | Effect::Review => usable = true,
        }
    }
    usable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::*;
    use serde_json::json;

    fn rule(id: &str, effect: Effect, roles: &[&str], m: Matcher) -> Rule {
        Rule {
            id: id.into(),
            effect,
            roles: roles.iter().map(|s| s.to_string()).collect(),
            target: "tools".into(),
            matcher: m,
            reason: None,
        }
    }

    fn tools(t: &[&str]) -> McpMatch {
        McpMatch {
            tools: t.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn policy() -> Policy {
        let mut staging = tools(&["deploy"]);
        staging.arguments.push(ArgConstraint {
            path: vec![PathSeg::Key("environment".into())],
            path_text: "environment".into(),
            test: ArgTest::OneOf(vec![json!("staging")]),
        });
        let mut replicas = tools(&["scale"]);
        replicas.arguments.push(ArgConstraint {
            path: vec![PathSeg::Key("spec".into()), PathSeg::Key("replicas".into())],
            path_text: "spec.replicas".into(),
            test: ArgTest::Range {
                min: Some(1.0),
                max: Some(5.0),
            },
        });
        Policy {
            targets: vec![Target {
                name: "tools".into(),
                protocol: Protocol::Mcp,
                forward_token: false,
            }],
            rules: vec![
                rule(
                    "k8s",
                    Effect::Allow,
                    &["dev"],
                    Matcher::Mcp(tools(&["k8s_get_*"])),
                ),
                rule("staging", Effect::Allow, &["dev"], Matcher::Mcp(staging)),
                rule("scale", Effect::Allow, &["dev"], Matcher::Mcp(replicas)),
                rule(
                    "no-secrets",
                    Effect::Deny,
                    &[],
                    Matcher::Mcp(tools(&["k8s_get_secrets"])),
                ),
                rule(
                    "drop-review",
                    Effect::Review,
                    &["dev"],
                    Matcher::Mcp(tools(&["drop_*"])),
                ),
                rule(
                    "drop-all",
                    Effect::Allow,
                    &["dev"],
                    Matcher::Mcp(tools(&["drop_*"])),
                ),
            ],
            ..Default::default()
        }
    }

    fn call(p: &Policy, roles: &[&str], name: &str, args: Value) -> Decision {
        let roles: Vec<String> = roles.iter().map(|s| s.to_string()).collect();
        evaluate(
            p,
            &roles,
            "tools",
            &Request::ToolCall {
                name,
                arguments: &args,
            },
        )
    }

    #[test]
    fn decision_order() {
        let p = policy();
        let d = call(&p, &["dev"], "k8s_get_pods", json!({}));
        assert_eq!((d.effect, d.rule.as_deref()), (Effect::Allow, Some("k8s")));
        let d = call(&p, &["dev"], "k8s_get_secrets", json!({}));
        assert_eq!(
            (d.effect, d.rule.as_deref()),
            (Effect::Deny, Some("no-secrets"))
        );
        let d = call(&p, &["dev"], "drop_table", json!({}));
        assert_eq!(
            (d.effect, d.rule.as_deref()),
            (Effect::Review, Some("drop-review"))
        );
        let d = call(&p, &["ops"], "k8s_get_pods", json!({}));
        assert_eq!((d.effect, d.rule), (Effect::Deny, None));
        let d = call(&p, &[], "whatever", json!({}));
        assert_eq!(d.effect, Effect::Deny);
    }

    #[test]
    fn argument_constraints() {
        let p = policy();
        assert!(call(&p, &["dev"], "deploy", json!({"environment": "staging"})).allowed());
        let d = call(&p, &["dev"], "deploy", json!({"environment": "production"}));
        assert_eq!(
            (d.effect, d.rule.as_deref()),
            (Effect::Deny, Some("staging"))
        );
        assert!(d.reason.contains("argument `environment`"), "{}", d.reason);
        assert!(call(&p, &["dev"], "deploy", json!({})).effect == Effect::Deny);
        assert!(
            call(&p, &["dev"], "deploy", json!({"environment": ["staging"]})).effect
                == Effect::Deny
        );
        assert!(call(&p, &["dev"], "scale", json!({"spec": {"replicas": 3}})).allowed());
        assert!(call(&p, &["dev"], "scale", json!({"spec": {"replicas": 3.0}})).allowed());
        assert!(!call(&p, &["dev"], "scale", json!({"spec": {"replicas": 6}})).allowed());
        assert!(!call(&p, &["dev"], "scale", json!({"spec": {"replicas": "3"}})).allowed());
        assert!(!call(&p, &["dev"], "scale", json!("not an object")).allowed());
    }

    #[test]
    fn traces_every_rule() {
        let p = policy();
        let mut seen = Vec::new();
        let roles = vec!["dev".to_string()];
        let args = json!({"environment": "production"});
        let d = evaluate_traced(
            &p,
            &roles,
            "tools",
            &Request::ToolCall {
                name: "deploy",
                arguments: &args,
            },
            &mut |t| seen.push(t),
        );
        assert_eq!(seen.len(), p.rules.len());
        let staging = seen.iter().find(|t| t.rule == "staging").unwrap();
        assert!(!staging.matched);
        assert!(staging.why.contains("environment"), "{}", staging.why);
        assert_eq!(d.rule.as_deref(), Some("staging"));
        assert!(d.reason.contains("must be one of"), "{}", d.reason);
    }

    #[test]
    fn visibility() {
        let p = policy();
        let dev = vec!["dev".to_string()];
        assert!(visible(&p, &dev, "tools", Item::Tool("k8s_get_pods")));
        assert!(visible(&p, &dev, "tools", Item::Tool("deploy")));
        assert!(!visible(&p, &dev, "tools", Item::Tool("k8s_get_secrets")));
        assert!(!visible(&p, &dev, "tools", Item::Tool("rm_rf")));
        assert!(visible(&p, &dev, "tools", Item::Tool("drop_table")));
        assert!(!visible(&p, &[], "tools", Item::Tool("k8s_get_pods")));
    }
}
