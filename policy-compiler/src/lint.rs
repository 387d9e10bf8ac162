//! Lints: warnings about a policy that compiles but probably does not say
//! what its author meant. They run only on a policy without errors, report
//! at the source position of what they are about, and warn only on what is
//! proven (see [`crate::analysis`]): a lint that cries wolf trains people to
//! use `--deny-warnings` less.
//!
//! - **Shadowed rules**: an `allow` or `review` rule every request of which
//!   is also matched — for every role it applies to — by a rule of a
//!   stronger effect (deny > review > allow) with no argument constraint the
//!   shadowed rule does not imply. It can never decide a request.
//! - **Roles no identity can hold** (the issuer has no usable key, the `iss`
//!   claim condition matches no trusted issuer, the `subjects` and `sub`
//!   claim conditions share no subject, or every subject it admits is
//!   revoked), and rules all of whose roles are such.
//! - **Broad grants**: an `allow` rule covering every tool (`*`, `**`) or
//!   every request (no matcher; an `http` matcher of any method on `/**`),
//!   for a role not marked `admin: true` (or for every identity).
//! - **Masking nobody**: a masking rule whose `except_roles` name every
//!   role that can reach its target (every role of the target's `allow`
//!   and `review` rules, none of which is for everyone): every caller that
//!   can reach the target is exempt.
//!
//! Not implemented, because the features they check do not exist yet:
//! `review` rules without approvers (approvals), expired grants
//! (approvals). (Masking `columns` on a non-postgres target and `fields` on
//! a postgres one are errors, reported by the compiler.)

use std::collections::BTreeSet;

use pinhole_filter::glob;
use pinhole_filter::identity::jwks::key_algs;
use pinhole_filter::identity::jwt::check_revoked;
use pinhole_filter::identity::VerifiedToken;
use pinhole_filter::policy::{Effect, Issuer, Matcher, Policy, Role, Rule};

use crate::analysis::{
    any_covers, constraints_imply, literal, matches_every_name, matches_everything,
};
use crate::diag::{Diagnostics, Span};
use crate::yaml::{Node, Value};

/// Run every lint on a compiled policy; `root` is the YAML it came from
/// (for positions), `admin` the roles marked `admin: true`.
pub fn lint(root: &Node, policy: &Policy, admin: &BTreeSet<String>, diags: &mut Diagnostics) {
    let src = Source { root };
    impossible_roles(&src, policy, diags);
    shadowed(&src, policy, diags);
    broad_grants(&src, policy, admin, diags);
    masking_nobody(&src, policy, diags);
}

// ------------------------------------------------------------- positions

/// Positions of things in the policy source. The policy compiled without
/// errors, so rule `i` of the model is item `i` of `rules:` and every role
/// of the model is a key of `roles:`.
struct Source<'n> {
    root: &'n Node,
}

fn get<'n>(node: &'n Node, key: &str) -> Option<&'n crate::yaml::Entry> {
    match &node.value {
        Value::Map(entries) => entries.iter().find(|e| e.key == key),
        _ => None,
    }
}

fn items(node: &Node) -> Vec<&Node> {
    match &node.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![node],
    }
}

impl<'n> Source<'n> {
    fn rule(&self, i: usize) -> Option<&'n Node> {
        match &get(self.root, "rules")?.value.value {
            Value::Seq(items) => items.get(i),
            _ => None,
        }
    }

    /// The rule's `id` value.
    fn rule_id(&self, i: usize) -> Span {
        self.rule(i)
            .and_then(|r| get(r, "id"))
            .map(|e| e.value.span)
            .or_else(|| self.rule(i).map(|r| r.span))
            .unwrap_or_default()
    }

    /// The rule's effect key (`allow`, `deny`, `review`) and its body.
    fn effect(&self, i: usize) -> Option<&'n crate::yaml::Entry> {
        let r = self.rule(i)?;
        ["allow", "deny", "review"].iter().find_map(|k| get(r, k))
    }

    /// The nodes of list `key` of matcher `matcher` (`mcp`/`http`) of rule `i`.
    fn matcher_list(&self, i: usize, matcher: &str, key: &str) -> Vec<&'n Node> {
        self.effect(i)
            .and_then(|e| get(&e.value, matcher))
            .and_then(|m| get(&m.value, key))
            .map(|l| items(&l.value))
            .unwrap_or_default()
    }

    /// The key `key` of masking rule `i`.
    fn masking_key(&self, i: usize, key: &str) -> Span {
        let rule = match &get(self.root, "masking").map(|e| &e.value.value) {
            Some(Value::Seq(items)) => items.get(i),
            _ => None,
        };
        rule.and_then(|r| get(r, key).map(|e| e.key_span).or(Some(r.span)))
            .unwrap_or_default()
    }

    fn role(&self, name: &str) -> Span {
        get(self.root, "roles")
            .and_then(|r| get(&r.value, name))
            .map(|e| e.key_span)
            .unwrap_or_default()
    }
}

fn line_of(src: &Source, policy: &Policy, id: &str) -> usize {
    policy
        .rules
        .iter()
        .position(|r| r.id == id)
        .map(|i| src.rule_id(i).line)
        .unwrap_or(0)
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

// -------------------------------------------------------- impossible roles

fn usable(i: &Issuer) -> bool {
    i.keys
        .iter()
        .any(|k| key_algs(k).iter().any(|a| i.algorithms.contains(a)))
}

/// Why no identity can hold `role`, when that is provable.
pub fn impossible_role(policy: &Policy, role: &Role) -> Option<String> {
    let mut issuers: Vec<&Issuer> = policy
        .issuers
        .iter()
        .filter(|i| role.issuer.as_ref().is_none_or(|n| *n == i.name))
        .filter(|i| usable(i))
        .collect();
    if issuers.is_empty() {
        return Some(match &role.issuer {
            Some(n) => format!("its issuer `{n}` has no key that can verify a token"),
            None => "no issuer has a key that can verify a token".to_owned(),
        });
    }
    if let Some(c) = role.claims.iter().find(|c| c.claim == "iss") {
        let urls: Vec<String> = issuers.iter().map(|i| i.issuer.clone()).collect();
        issuers.retain(|i| glob::any_matches(&c.patterns, &i.issuer));
        if issuers.is_empty() {
            return Some(format!(
                "its claim condition `iss: {:?}` matches no URL of the issuer(s) it accepts ({})",
                c.patterns,
                quoted(&urls)
            ));
        }
    }
    let sub_claim = role.claims.iter().find(|c| c.claim == "sub");
    let mut lists: Vec<&Vec<String>> = Vec::new();
    if !role.subjects.is_empty() {
        lists.push(&role.subjects);
    }
    if let Some(c) = sub_claim {
        lists.push(&c.patterns);
    }
    // With one list made only of literal subjects, the admitted subjects
    // are known exactly.
    let literal_list = lists
        .iter()
        .find(|l| l.iter().all(|p| literal(p).is_some()))?;
    let subjects: Vec<String> = literal_list
        .iter()
        .filter_map(|p| literal(p))
        .filter(|s| lists.iter().all(|l| glob::any_matches(l, s)))
        .collect();
    if subjects.is_empty() {
        return Some(format!(
            "its `subjects` {:?} and its claim condition `sub: {:?}` admit no subject in common",
            role.subjects,
            sub_claim.map(|c| c.patterns.clone()).unwrap_or_default()
        ));
    }
    let alive = subjects.iter().any(|s| {
        issuers.iter().any(|i| {
            let t = VerifiedToken {
                issuer_name: i.name.clone(),
                iss: i.issuer.clone(),
                sub: s.clone(),
                exp: 0,
                jti: None,
                groups: Vec::new(),
                claims: serde_json::Map::new(),
            };
            check_revoked(policy, &t).is_ok()
        })
    });
    if !alive {
        return Some(format!(
            "every subject it admits is revoked ({})",
            quoted(&subjects)
        ));
    }
    None
}

fn impossible_roles(src: &Source, policy: &Policy, diags: &mut Diagnostics) {
    let mut dead: Vec<String> = Vec::new();
    for role in &policy.roles {
        if let Some(why) = impossible_role(policy, role) {
            diags.warning(
                src.role(&role.name),
                format!("no identity can hold role `{}`: {why}", role.name),
            );
            dead.push(role.name.clone());
        }
    }
    if dead.is_empty() {
        return;
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        if !rule.roles.is_empty() && rule.roles.iter().all(|r| dead.contains(r)) {
            diags.warning(
                src.rule_id(i),
                format!(
                    "rule `{}` can never apply: no identity can hold {} {}",
                    rule.id,
                    if rule.roles.len() == 1 {
                        "its role"
                    } else {
                        "any of its roles"
                    },
                    quoted(&rule.roles)
                ),
            );
        }
    }
}

// ------------------------------------------------------------ shadowing

fn rank(e: Effect) -> u8 {
    match e {
        Effect::Allow => 0,
        Effect::Review => 1,
        Effect::Deny => 2,
    }
}

/// One kind of request a rule matches, for coverage proofs.
enum Atom<'a> {
    Everything,
    Tool(&'a str),
    Resource(&'a str),
    Prompt(&'a str),
    Method(&'a str),
    /// An HTTP path pattern (`None`: any path).
    Path(Option<&'a str>),
    /// The statements a SQL matcher matches.
    Sql,
}

fn atoms(rule: &Rule) -> Vec<Atom<'_>> {
    match &rule.matcher {
        Matcher::Any => vec![Atom::Everything],
        Matcher::Mcp(m) => m
            .tools
            .iter()
            .map(|p| Atom::Tool(p))
            .chain(m.resources.iter().map(|p| Atom::Resource(p)))
            .chain(m.prompts.iter().map(|p| Atom::Prompt(p)))
            .chain(m.methods.iter().map(|p| Atom::Method(p)))
            .collect(),
        Matcher::Sql(_) => vec![Atom::Sql],
        Matcher::Http(h) => {
            if h.paths.is_empty() {
                vec![Atom::Path(None)]
            } else {
                h.paths.iter().map(|p| Atom::Path(Some(p))).collect()
            }
        }
    }
}

/// Whether `strong` matches every request of `atom` that `weak` matches.
fn covers(strong: &Rule, weak: &Rule, atom: &Atom) -> bool {
    match (&strong.matcher, atom) {
        (Matcher::Any, _) => true,
        (Matcher::Mcp(s), Atom::Tool(p)) => {
            let weak_args = match &weak.matcher {
                Matcher::Mcp(w) => w.arguments.as_slice(),
                _ => &[],
            };
            // A rule judging SQL matches only some statements: never
            // counted as covering (sound, if silent).
            s.sql_argument.is_none()
                && any_covers(&s.tools, p)
                && constraints_imply(weak_args, &s.arguments)
        }
        // A deny rule without SQL conditions matches every statement.
        (Matcher::Sql(s), Atom::Sql) => {
            strong.effect == Effect::Deny && *s == pinhole_filter::policy::SqlMatch::default()
        }
        (Matcher::Mcp(s), Atom::Resource(p)) => any_covers(&s.resources, p),
        (Matcher::Mcp(s), Atom::Prompt(p)) => any_covers(&s.prompts, p),
        (Matcher::Mcp(s), Atom::Method(p)) => any_covers(&s.methods, p),
        (Matcher::Http(s), Atom::Path(p)) => {
            let Matcher::Http(w) = &weak.matcher else {
                return false;
            };
            let methods = s.methods.is_empty()
                || (!w.methods.is_empty() && w.methods.iter().all(|m| s.methods.contains(m)));
            let paths = s.paths.is_empty() || p.is_some_and(|p| any_covers(&s.paths, p));
            methods && paths
        }
        _ => false,
    }
}

/// The rules of a stronger effect that together prove `weak` never decides,
/// or `None`.
fn shadowing<'p>(policy: &'p Policy, weak: &Rule) -> Option<Vec<&'p Rule>> {
    let strong: Vec<&Rule> = policy
        .rules
        .iter()
        .filter(|s| s.target == weak.target && rank(s.effect) > rank(weak.effect))
        .collect();
    // The identities `weak` applies to: each of its roles, or everyone.
    let principals: Vec<Option<&String>> = if weak.roles.is_empty() {
        vec![None]
    } else {
        weak.roles.iter().map(Some).collect()
    };
    let mut used: Vec<&Rule> = Vec::new();
    for who in principals {
        let applies = |s: &Rule| s.roles.is_empty() || who.is_some_and(|r| s.roles.contains(r));
        for atom in atoms(weak) {
            let s = strong
                .iter()
                .copied()
                .find(|s| applies(s) && covers(s, weak, &atom))?;
            if !used.iter().any(|u| u.id == s.id) {
                used.push(s);
            }
        }
    }
    Some(used)
}

fn shadowed(src: &Source, policy: &Policy, diags: &mut Diagnostics) {
    for (i, rule) in policy.rules.iter().enumerate() {
        if rule.effect == Effect::Deny {
            continue;
        }
        let Some(by) = shadowing(policy, rule) else {
            continue;
        };
        let by: Vec<String> = by
            .iter()
            .map(|s| {
                format!(
                    "`{}` ({}, line {})",
                    s.id,
                    s.effect.as_str(),
                    line_of(src, policy, &s.id)
                )
            })
            .collect();
        let wins = if by.len() == 1 {
            "which takes"
        } else {
            "which take"
        };
        diags.warning(
            src.rule_id(i),
            format!(
                "rule `{}` ({}) can never decide a request: every request it matches is also matched by {}, {wins} precedence",
                rule.id,
                rule.effect.as_str(),
                by.join(" and ")
            ),
        );
    }
}

// ---------------------------------------------------------- broad grants

fn broad_grants(src: &Source, policy: &Policy, admin: &BTreeSet<String>, diags: &mut Diagnostics) {
    for (i, rule) in policy.rules.iter().enumerate() {
        if rule.effect != Effect::Allow {
            continue;
        }
        let who: String = if rule.roles.is_empty() {
            "every authenticated identity (the rule names no `roles`)".to_owned()
        } else {
            let plain: Vec<String> = rule
                .roles
                .iter()
                .filter(|r| !admin.contains(*r))
                .cloned()
                .collect();
            match plain.as_slice() {
                [] => continue,
                [one] => format!("role `{one}`, which is not marked `admin: true`"),
                _ => format!(
                    "roles {}, which are not marked `admin: true`",
                    quoted(&plain)
                ),
            }
        };
        let fix = if rule.roles.is_empty() {
            "name the roles and the operations they need"
        } else {
            "list the operations it needs, or mark the role `admin: true`"
        };
        match &rule.matcher {
            Matcher::Any => {
                let span = src.effect(i).map(|e| e.key_span).unwrap_or_default();
                diags.warning(
                    span,
                    format!(
                        "rule `{}` allows every request on target `{}` to {who}; {fix}",
                        rule.id, rule.target
                    ),
                );
            }
            Matcher::Mcp(m) => {
                let nodes = src.matcher_list(i, "mcp", "tools");
                for (p, node) in m.tools.iter().zip(nodes) {
                    if matches_every_name(p) {
                        diags.warning(
                            node.span,
                            format!(
                                "rule `{}` allows every tool (`{p}`) on target `{}` to {who}; {fix}",
                                rule.id, rule.target
                            ),
                        );
                    }
                }
            }
            Matcher::Sql(m) => {
                if m.statements.is_empty() && m.tables.is_empty() && m.functions.is_empty() {
                    let span = src.effect(i).map(|e| e.key_span).unwrap_or_default();
                    diags.warning(
                        span,
                        format!(
                            "rule `{}` allows every statement on every table of target `{}` to {who}; {fix}",
                            rule.id, rule.target
                        ),
                    );
                }
            }
            Matcher::Http(h) => {
                if !h.methods.is_empty() {
                    continue;
                }
                let nodes = src.matcher_list(i, "http", "paths");
                for (p, node) in h.paths.iter().zip(nodes) {
                    if p == "/**" || matches_everything(p) {
                        diags.warning(
                            node.span,
                            format!(
                                "rule `{}` allows every method on every path (`{p}`) of target `{}` to {who}; {fix}",
                                rule.id, rule.target
                            ),
                        );
                    }
                }
            }
        }
    }
}

// ----------------------------------------------------------- masking

/// Masking rules whose exemptions cover every role that can reach the
/// target: they never mask anything for anyone.
fn masking_nobody(src: &Source, policy: &Policy, diags: &mut Diagnostics) {
    for (i, m) in policy.masking.iter().enumerate() {
        if m.except_roles.is_empty() {
            continue;
        }
        let reaching: Vec<&Rule> = policy
            .rules
            .iter()
            .filter(|r| r.target == m.target && r.effect != Effect::Deny)
            .collect();
        // No rule lets anyone in (another warning says so), or some rule
        // lets every identity in: not provable.
        if reaching.is_empty() || reaching.iter().any(|r| r.roles.is_empty()) {
            continue;
        }
        let mut roles: Vec<String> = Vec::new();
        for r in reaching.iter().flat_map(|r| &r.roles) {
            if !roles.contains(r) {
                roles.push(r.clone());
            }
        }
        if roles.iter().all(|r| m.except_roles.contains(r)) {
            diags.warning(
                src.masking_key(i, "except_roles"),
                format!(
                    "masking rule `{}` masks nothing: its `except_roles` exempt every role that can reach target `{}` ({})",
                    m.id,
                    m.target,
                    quoted(&roles)
                ),
            );
        }
    }
}
