//! `pinhole diff OLD NEW`: the access change between two compiled policies,
//! in the terms a reviewer reads in a pull request.
//!
//! Everything is computed from the two models (never by sampling requests):
//!
//! - **Access**: for every principal (a role, or *everyone* for rules
//!   without `roles`), target, effect and item (a tool, resource, prompt or
//!   method pattern, an HTTP method + path pattern, or "every request"),
//!   the grants of the old and the new policy are compared: an item gained
//!   or lost, or its argument conditions loosened, tightened or changed.
//! - **Roles**: who a role applies to (issuer, subjects, groups, claims).
//! - **Rules**: added, removed and changed, by id.
//! - **Identity**: issuers, audiences, algorithms, keys (by `kid`), groups
//!   claim, token lifetime, leeway; **revocations**; **targets**.
//! - **Masking**: masking rules added (narrows) or removed (widens), by id;
//!   per rule, who it applies to (`roles`), exemptions (`except_roles`:
//!   one added widens), what it masks (a column, field or detector added
//!   narrows, removed widens), its strategy (by how much it reveals:
//!   `redact` < `hash` < `partial` by `keep`) and `unmaskable`.
//!
//! Each change has a direction: `widens` (someone may now be able to do
//! something they could not), `narrows`, `changes` (not provably either:
//! counted as widening by `--exit-code`), or `neutral`. `review` counts as a
//! restriction: until approvals exist it refuses.

use std::collections::BTreeMap;

use pinhole_filter::mask::{MaskSpec, Strategy, Unmaskable};
use pinhole_filter::policy::{
    strategy_rank, ArgConstraint, ArgTest, Effect, Issuer, Jwk, MaskRule, Matcher, Policy, Role,
    Rule, SqlMatch, StatementClass,
};
use serde::Serialize;
use serde_json::{json, Value};

use crate::analysis::{any_covers, constraints_imply};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Widens,
    Changes,
    Narrows,
    Neutral,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Widens => "widens",
            Direction::Narrows => "narrows",
            Direction::Changes => "changes",
            Direction::Neutral => "neutral",
        }
    }

    /// Whether `--exit-code` counts it as widening.
    pub fn may_widen(self) -> bool {
        matches!(self, Direction::Widens | Direction::Changes)
    }
}

/// One change, with a one-line summary and structured details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// `access`, `masking`, `roles`, `rules`, `identity`, `revocations` or
    /// `targets`.
    pub section: &'static str,
    pub direction: Direction,
    /// For grouping in Markdown: e.g. ``role `sre` on target `tools` ``.
    pub group: String,
    /// One line (Markdown).
    pub summary: String,
    pub detail: Value,
}

/// The whole diff.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub old: String,
    pub new: String,
    /// Some change widens access or may (`widens` or `changes`).
    pub widened: bool,
    pub counts: BTreeMap<&'static str, usize>,
    pub changes: Vec<Change>,
}

/// Compare two policies (`old_name`/`new_name` label them in the output).
pub fn diff(old_name: &str, old: &Policy, new_name: &str, new: &Policy) -> Diff {
    let mut changes = Vec::new();
    access(old, new, &mut changes);
    masking(old, new, &mut changes);
    roles(old, new, &mut changes);
    rules(old, new, &mut changes);
    identity(old, new, &mut changes);
    revocations(old, new, &mut changes);
    approvals(old, new, &mut changes);
    targets(old, new, &mut changes);
    let widened = changes.iter().any(|c| c.direction.may_widen());
    let mut counts = BTreeMap::new();
    for d in [
        Direction::Widens,
        Direction::Narrows,
        Direction::Changes,
        Direction::Neutral,
    ] {
        counts.insert(
            d.as_str(),
            changes.iter().filter(|c| c.direction == d).count(),
        );
    }
    Diff {
        old: old_name.to_owned(),
        new: new_name.to_owned(),
        widened,
        counts,
        changes,
    }
}

fn q(s: &str) -> String {
    format!("`{s}`")
}

fn qlist(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
    }
}

// ------------------------------------------------------------------ access

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Principal {
    Everyone,
    Role(String),
}

impl Principal {
    fn text(&self) -> String {
        match self {
            Principal::Everyone => "everyone (rules without `roles`)".into(),
            Principal::Role(r) => format!("role `{r}`"),
        }
    }

    fn json(&self) -> Value {
        match self {
            Principal::Everyone => json!({ "everyone": true }),
            Principal::Role(r) => json!({ "role": r }),
        }
    }
}

fn effect_rank(e: Effect) -> u8 {
    match e {
        Effect::Deny => 0,
        Effect::Review => 1,
        Effect::Allow => 2,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    principal: Principal,
    target: String,
    effect: u8,
    kind: &'static str,
    item: String,
}

#[derive(Debug, Clone)]
struct Grant {
    rule: String,
    effect: Effect,
    args: Vec<ArgConstraint>,
}

fn items(rule: &Rule) -> Vec<(&'static str, String, Vec<ArgConstraint>)> {
    match &rule.matcher {
        Matcher::Any => vec![("everything", "every request".into(), Vec::new())],
        Matcher::Sql(m) => vec![("sql", sql_text(m), Vec::new())],
        Matcher::Mcp(m) => {
            let mut v = Vec::new();
            for t in &m.tools {
                match &m.sql_argument {
                    // The SQL conditions are part of the item: any change
                    // to them is an item lost and one gained (never
                    // hidden, never reasoned about).
                    Some(p) => v.push((
                        "sql tool",
                        format!(
                            "{t}` with SQL in `{}`: `{}",
                            p.path_text,
                            sql_text(m.sql.as_ref().unwrap_or(&SqlMatch::default()))
                        ),
                        m.arguments.clone(),
                    )),
                    None => v.push(("tool", t.clone(), m.arguments.clone())),
                }
            }
            for r in &m.resources {
                v.push(("resource", r.clone(), Vec::new()));
            }
            for p in &m.prompts {
                v.push(("prompt", p.clone(), Vec::new()));
            }
            for x in &m.methods {
                v.push(("method", x.clone(), Vec::new()));
            }
            v
        }
        Matcher::Http(h) => {
            let methods: Vec<String> = if h.methods.is_empty() {
                vec!["(any method)".into()]
            } else {
                h.methods.clone()
            };
            let paths: Vec<String> = if h.paths.is_empty() {
                vec!["(any path)".into()]
            } else {
                h.paths.clone()
            };
            let mut v = Vec::new();
            for m in &methods {
                for p in &paths {
                    v.push(("http", format!("{m} {p}"), Vec::new()));
                }
            }
            v
        }
    }
}

fn access_map(p: &Policy) -> BTreeMap<Key, Vec<Grant>> {
    let mut map: BTreeMap<Key, Vec<Grant>> = BTreeMap::new();
    for rule in &p.rules {
        let principals: Vec<Principal> = if rule.roles.is_empty() {
            vec![Principal::Everyone]
        } else {
            rule.roles.iter().cloned().map(Principal::Role).collect()
        };
        for who in principals {
            for (kind, item, args) in items(rule) {
                map.entry(Key {
                    principal: who.clone(),
                    target: rule.target.clone(),
                    effect: effect_rank(rule.effect),
                    kind,
                    item,
                })
                .or_default()
                .push(Grant {
                    rule: rule.id.clone(),
                    effect: rule.effect,
                    args,
                });
            }
        }
    }
    map
}

fn json_text(v: &Value) -> String {
    v.to_string()
}

fn test_text(t: &ArgTest) -> String {
    match t {
        ArgTest::Equals(v) => format!("= {}", json_text(v)),
        ArgTest::OneOf(o) => format!(
            "one of [{}]",
            o.iter().map(json_text).collect::<Vec<_>>().join(", ")
        ),
        ArgTest::Glob(g) => format!("matches {g:?}"),
        ArgTest::Range { min, max } => match (min, max) {
            (Some(a), Some(b)) => format!("in [{a}, {b}]"),
            (Some(a), None) => format!(">= {a}"),
            (None, Some(b)) => format!("<= {b}"),
            (None, None) => "a number".into(),
        },
    }
}

fn conditions_text(args: &[ArgConstraint]) -> String {
    if args.is_empty() {
        return "with any arguments".into();
    }
    let parts: Vec<String> = args
        .iter()
        .map(|c| format!("`{}` {}", c.path_text, test_text(&c.test)))
        .collect();
    format!("when {}", parts.join(" and "))
}

/// A SQL matcher in words.
fn sql_text(m: &SqlMatch) -> String {
    let mut parts = Vec::new();
    if m.statements.is_empty() {
        parts.push("any statement".to_owned());
    } else {
        let v: Vec<String> = m.statements.iter().map(StatementClass::as_string).collect();
        parts.push(format!("statements [{}]", v.join(", ")));
    }
    if !m.tables.is_empty() {
        parts.push(format!("tables [{}]", m.tables.join(", ")));
    }
    if !m.functions.is_empty() {
        parts.push(format!("functions [{}]", m.functions.join(", ")));
    }
    if m.without_where {
        parts.push("without WHERE".into());
    }
    if m.copy_program {
        parts.push("COPY PROGRAM".into());
    }
    parts.join(" ")
}

fn grants_text(kind: &str, grants: &[Grant]) -> String {
    if kind != "tool" && kind != "sql tool" {
        return String::new();
    }
    let mut seen: Vec<String> = Vec::new();
    for g in grants {
        let t = conditions_text(&g.args);
        if !seen.contains(&t) {
            seen.push(t);
        }
    }
    seen.join(", or ")
}

fn item_text(kind: &str, item: &str) -> String {
    match kind {
        "everything" => "every request".into(),
        "http" => format!("HTTP `{item}`"),
        k => format!("{k} `{item}`"),
    }
}

/// Whether grants `wide` allow every call grants `narrow` allow.
fn grants_cover(wide: &[Grant], narrow: &[Grant]) -> bool {
    narrow
        .iter()
        .all(|n| wide.iter().any(|w| constraints_imply(&n.args, &w.args)))
}

fn args_json(grants: &[Grant]) -> Value {
    Value::Array(
        grants
            .iter()
            .map(|g| {
                json!({
                    "rule": g.rule,
                    "arguments": g.args.iter().map(|c| json!({
                        "path": c.path_text,
                        "test": test_text(&c.test),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn rule_ids(grants: &[Grant]) -> String {
    let mut ids: Vec<String> = Vec::new();
    for g in grants {
        if !ids.contains(&g.rule) {
            ids.push(g.rule.clone());
        }
    }
    format!(
        "rule{} {}",
        if ids.len() == 1 { "" } else { "s" },
        qlist(&ids)
    )
}

/// A grant in `map` (same target and effect; the same principal or
/// everyone) whose item pattern covers `key`'s, with conditions at least as
/// wide as `grants`: the item adds or removes nothing by itself.
fn covered_elsewhere(
    map: &BTreeMap<Key, Vec<Grant>>,
    key: &Key,
    grants: &[Grant],
) -> Option<String> {
    map.iter().find_map(|(k, g)| {
        let same_place = k.target == key.target
            && k.effect == key.effect
            && (k.principal == key.principal || k.principal == Principal::Everyone)
            && k != key;
        if !same_place {
            return None;
        }
        let item_covered = match (k.kind, key.kind) {
            ("everything", _) => true,
            (a, b) if a == b && !matches!(a, "http" | "everything" | "sql" | "sql tool") => {
                crate::analysis::glob_covers(&k.item, &key.item)
            }
            _ => false,
        };
        (item_covered && grants_cover(g, grants)).then(|| {
            format!(
                "{} {} ({})",
                if k.principal == key.principal {
                    String::new()
                } else {
                    "everyone's".into()
                },
                item_text(k.kind, &k.item),
                rule_ids(g)
            )
            .trim_start()
            .to_owned()
        })
    })
}

fn access(old: &Policy, new: &Policy, out: &mut Vec<Change>) {
    let a = access_map(old);
    let b = access_map(new);
    let mut keys: Vec<&Key> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (og, ng) = (a.get(key), b.get(key));
        let effect = og
            .or(ng)
            .and_then(|g| g.first())
            .map(|g| g.effect)
            .unwrap_or(Effect::Allow);
        // +1: more access for allow; for deny and review, more restriction.
        let widen_if_more = effect == Effect::Allow;
        let more = if widen_if_more {
            Direction::Widens
        } else {
            Direction::Narrows
        };
        let less = if widen_if_more {
            Direction::Narrows
        } else {
            Direction::Widens
        };
        let what = item_text(key.kind, &key.item);
        let eff = effect.as_str();
        let (change, direction, summary) = match (og, ng) {
            (None, Some(n)) => {
                let cond = grants_text(key.kind, n);
                let cond = if cond.is_empty() {
                    String::new()
                } else {
                    format!(" {cond}")
                };
                match covered_elsewhere(&a, key, n) {
                    Some(by) => (
                        "gained",
                        Direction::Neutral,
                        format!(
                            "gained **{eff}** {what}{cond} ({}), already covered before by {by}",
                            rule_ids(n)
                        ),
                    ),
                    None => (
                        "gained",
                        more,
                        format!("gained **{eff}** {what}{cond} ({})", rule_ids(n)),
                    ),
                }
            }
            (Some(o), None) => match covered_elsewhere(&b, key, o) {
                Some(by) => (
                    "lost",
                    Direction::Neutral,
                    format!(
                        "lost **{eff}** {what} (was {}), still covered by {by}",
                        rule_ids(o)
                    ),
                ),
                None => (
                    "lost",
                    less,
                    format!("lost **{eff}** {what} (was {})", rule_ids(o)),
                ),
            },
            (Some(o), Some(n)) => {
                let ot = grants_text(key.kind, o);
                let nt = grants_text(key.kind, n);
                if ot == nt {
                    continue;
                }
                let (change, direction) = match (grants_cover(n, o), grants_cover(o, n)) {
                    (true, false) => ("loosened", more),
                    (false, true) => ("tightened", less),
                    (true, true) => ("rewritten", Direction::Neutral),
                    (false, false) => ("changed", Direction::Changes),
                };
                (
                    change,
                    direction,
                    format!(
                        "**{eff}** {what}: argument conditions {change}: {ot} → {nt} ({})",
                        rule_ids(n)
                    ),
                )
            }
            (None, None) => continue,
        };
        out.push(Change {
            section: "access",
            direction,
            group: format!("{} on target `{}`", key.principal.text(), key.target),
            summary,
            detail: json!({
                "principal": key.principal.json(),
                "target": key.target,
                "effect": eff,
                "kind": key.kind,
                "item": key.item,
                "change": change,
                "old": og.map(|g| args_json(g)),
                "new": ng.map(|g| args_json(g)),
            }),
        });
    }
}

// ------------------------------------------------------------------- roles

/// Compare two "any of" pattern lists where empty means "no condition".
/// `covers(wide, narrow_item)` decides single items.
fn list_direction(
    old: &[String],
    new: &[String],
    covers: &dyn Fn(&[String], &str) -> bool,
) -> Direction {
    let superset = |wide: &[String], narrow: &[String]| -> bool {
        wide.is_empty() || (!narrow.is_empty() && narrow.iter().all(|n| covers(wide, n)))
    };
    match (superset(new, old), superset(old, new)) {
        (true, false) => Direction::Widens,
        (false, true) => Direction::Narrows,
        (true, true) => Direction::Neutral,
        (false, false) => Direction::Changes,
    }
}

fn exact_covers(wide: &[String], n: &str) -> bool {
    wide.iter().any(|w| w == n)
}

fn glob_list_covers(wide: &[String], n: &str) -> bool {
    any_covers(wide, n)
}

fn list_or_any(v: &[String]) -> String {
    if v.is_empty() {
        "(any)".into()
    } else {
        format!("{v:?}")
    }
}

fn role_text(r: &Role) -> String {
    let mut parts = Vec::new();
    if let Some(i) = &r.issuer {
        parts.push(format!("issuer `{i}`"));
    }
    if !r.subjects.is_empty() {
        parts.push(format!("subjects {:?}", r.subjects));
    }
    if !r.groups.is_empty() {
        parts.push(format!("groups {:?}", r.groups));
    }
    for c in &r.claims {
        parts.push(format!("claim `{}` {:?}", c.claim, c.patterns));
    }
    if parts.is_empty() {
        "every authenticated identity".into()
    } else {
        parts.join(", ")
    }
}

fn roles(old: &Policy, new: &Policy, out: &mut Vec<Change>) {
    let mut push = |direction, role: &str, summary: String, detail: Value| {
        out.push(Change {
            section: "roles",
            direction,
            group: format!("role `{role}`"),
            summary,
            detail,
        })
    };
    for r in &new.roles {
        if old.roles.iter().all(|o| o.name != r.name) {
            push(
                Direction::Neutral,
                &r.name,
                format!("role `{}` added: {}", r.name, role_text(r)),
                json!({ "role": r.name, "change": "added", "new": r }),
            );
        }
    }
    for o in &old.roles {
        let Some(n) = new.roles.iter().find(|n| n.name == o.name) else {
            push(
                Direction::Neutral,
                &o.name,
                format!("role `{}` removed (was {})", o.name, role_text(o)),
                json!({ "role": o.name, "change": "removed", "old": o }),
            );
            continue;
        };
        if o == n {
            continue;
        }
        let name = &o.name;
        if o.issuer != n.issuer {
            let d = match (&o.issuer, &n.issuer) {
                (Some(_), None) => Direction::Widens,
                (None, Some(_)) => Direction::Narrows,
                _ => Direction::Changes,
            };
            push(
                d,
                name,
                format!(
                    "role `{name}` issuer: {} → {}",
                    o.issuer.as_deref().map(q).unwrap_or_else(|| "(any)".into()),
                    n.issuer.as_deref().map(q).unwrap_or_else(|| "(any)".into())
                ),
                json!({ "role": name, "change": "issuer", "old": o.issuer, "new": n.issuer }),
            );
        }
        if o.subjects != n.subjects {
            push(
                list_direction(&o.subjects, &n.subjects, &glob_list_covers),
                name,
                format!(
                    "role `{name}` subjects: {} → {}",
                    list_or_any(&o.subjects),
                    list_or_any(&n.subjects)
                ),
                json!({ "role": name, "change": "subjects", "old": o.subjects, "new": n.subjects }),
            );
        }
        if o.groups != n.groups {
            push(
                list_direction(&o.groups, &n.groups, &exact_covers),
                name,
                format!(
                    "role `{name}` groups: {} → {}",
                    list_or_any(&o.groups),
                    list_or_any(&n.groups)
                ),
                json!({ "role": name, "change": "groups", "old": o.groups, "new": n.groups }),
            );
        }
        let mut claims: Vec<&str> = o
            .claims
            .iter()
            .chain(n.claims.iter())
            .map(|c| c.claim.as_str())
            .collect();
        claims.sort_unstable();
        claims.dedup();
        for c in claims {
            let oc = o.claims.iter().find(|x| x.claim == c).map(|x| &x.patterns);
            let nc = n.claims.iter().find(|x| x.claim == c).map(|x| &x.patterns);
            if oc == nc {
                continue;
            }
            let empty = Vec::new();
            let d = list_direction(
                oc.unwrap_or(&empty),
                nc.unwrap_or(&empty),
                &glob_list_covers,
            );
            push(
                d,
                name,
                format!(
                    "role `{name}` claim `{c}`: {} → {}",
                    oc.map(|p| format!("{p:?}"))
                        .unwrap_or_else(|| "(no condition)".into()),
                    nc.map(|p| format!("{p:?}"))
                        .unwrap_or_else(|| "(no condition)".into())
                ),
                json!({ "role": name, "change": "claim", "claim": c, "old": oc, "new": nc }),
            );
        }
    }
}

// ------------------------------------------------------------------- rules

fn matcher_text(m: &Matcher) -> String {
    match m {
        Matcher::Any => "every request".into(),
        Matcher::Mcp(m) => {
            let mut parts = Vec::new();
            if !m.tools.is_empty() {
                let mut t = format!("tools {:?}", m.tools);
                if !m.arguments.is_empty() {
                    t.push(' ');
                    t.push_str(&conditions_text(&m.arguments));
                }
                if let Some(p) = &m.sql_argument {
                    t.push_str(&format!(
                        " with SQL in `{}`: {}",
                        p.path_text,
                        sql_text(m.sql.as_ref().unwrap_or(&SqlMatch::default()))
                    ));
                }
                parts.push(t);
            }
            if !m.resources.is_empty() {
                parts.push(format!("resources {:?}", m.resources));
            }
            if !m.prompts.is_empty() {
                parts.push(format!("prompts {:?}", m.prompts));
            }
            if !m.methods.is_empty() {
                parts.push(format!("methods {:?}", m.methods));
            }
            parts.join("; ")
        }
        Matcher::Sql(m) => format!("SQL {}", sql_text(m)),
        Matcher::Http(h) => format!(
            "HTTP methods {} paths {}",
            list_or_any(&h.methods),
            list_or_any(&h.paths)
        ),
    }
}

fn rule_text(r: &Rule) -> String {
    let who = if r.roles.is_empty() {
        "everyone".to_owned()
    } else {
        qlist(&r.roles)
    };
    format!(
        "{} {who} on `{}`: {}",
        r.effect.as_str(),
        r.target,
        matcher_text(&r.matcher)
    )
}

fn rules(old: &Policy, new: &Policy, out: &mut Vec<Change>) {
    let mut push = |id: &str, summary: String, detail: Value| {
        out.push(Change {
            section: "rules",
            direction: Direction::Neutral,
            group: "rules".into(),
            summary,
            detail: {
                let mut d = detail;
                if let Some(o) = d.as_object_mut() {
                    o.insert("rule".into(), json!(id));
                }
                d
            },
        })
    };
    for r in &new.rules {
        if old.rules.iter().all(|o| o.id != r.id) {
            push(
                &r.id,
                format!("rule `{}` added: {}", r.id, rule_text(r)),
                json!({ "change": "added", "new": r }),
            );
        }
    }
    for o in &old.rules {
        match new.rules.iter().find(|n| n.id == o.id) {
            None => push(
                &o.id,
                format!("rule `{}` removed (was: {})", o.id, rule_text(o)),
                json!({ "change": "removed", "old": o }),
            ),
            Some(n) if n != o => {
                let mut fields = Vec::new();
                if o.effect != n.effect {
                    fields.push("effect");
                }
                if o.roles != n.roles {
                    fields.push("roles");
                }
                if o.target != n.target {
                    fields.push("target");
                }
                if o.matcher != n.matcher {
                    fields.push("matcher");
                }
                if o.reason != n.reason {
                    fields.push("reason");
                }
                push(
                    &o.id,
                    format!(
                        "rule `{}` changed ({}): {} → {}",
                        o.id,
                        fields.join(", "),
                        rule_text(o),
                        rule_text(n)
                    ),
                    json!({ "change": "changed", "fields": fields, "old": o, "new": n }),
                );
            }
            Some(_) => {}
        }
    }
}

// ----------------------------------------------------------------- masking

/// A strategy in words.
pub fn strategy_text(s: &Strategy) -> String {
    match s {
        Strategy::Redact { text: None } => "redact".into(),
        Strategy::Redact { text: Some(t) } => format!("redact as {t:?}"),
        Strategy::Partial { keep } => format!("partial (keep {keep})"),
        Strategy::Hash {} => "hash".into(),
    }
}

/// One thing a spec masks: (kind, name, strategy, custom pattern).
type MaskItem<'a> = (&'static str, &'a str, &'a Strategy, Option<&'a str>);

fn mask_items(spec: &MaskSpec) -> Vec<MaskItem<'_>> {
    let mut v: Vec<MaskItem<'_>> = Vec::new();
    for c in &spec.columns {
        v.push(("column", &c.column, &c.strategy, None));
    }
    for f in &spec.fields {
        v.push(("field", &f.path, &f.strategy, None));
    }
    for d in &spec.detectors {
        v.push(("detector", &d.detector, &d.strategy, d.pattern.as_deref()));
    }
    v
}

/// What a spec masks, in words: ``columns `a`; detectors `email` → partial (keep 4)``.
pub fn spec_text(spec: &MaskSpec) -> String {
    let items = mask_items(spec);
    let uniform = items.windows(2).all(|w| match w {
        [a, b] => a.2 == b.2,
        _ => true,
    });
    let mut parts = Vec::new();
    if uniform {
        for kind in ["column", "field", "detector"] {
            let names: Vec<String> = items
                .iter()
                .filter(|i| i.0 == kind)
                .map(|i| match i.3 {
                    Some(p) => format!("`{}` (/{p}/)", i.1),
                    None => q(i.1),
                })
                .collect();
            if !names.is_empty() {
                parts.push(format!("{kind}s {}", names.join(", ")));
            }
        }
    } else {
        for i in &items {
            parts.push(format!("{} `{}` → {}", i.0, i.1, strategy_text(i.2)));
        }
    }
    let mut out = parts.join("; ");
    if uniform {
        if let Some(first) = items.first() {
            out.push_str(&format!(" → {}", strategy_text(first.2)));
        }
    }
    if spec.unmaskable == Unmaskable::Refuse {
        out.push_str("; unmaskable values refused");
    }
    out
}

/// Who a masking rule masks for, in words.
pub fn mask_who_text(m: &MaskRule) -> String {
    let who = if m.roles.is_empty() {
        "everyone".to_owned()
    } else {
        format!("roles {}", qlist(&m.roles))
    };
    if m.except_roles.is_empty() {
        who
    } else {
        format!("{who} except {}", qlist(&m.except_roles))
    }
}

/// A masking rule in words.
pub fn mask_rule_text(m: &MaskRule) -> String {
    format!("masks {} for {}", spec_text(&m.spec), mask_who_text(m))
}

fn masking(old: &Policy, new: &Policy, all: &mut Vec<Change>) {
    let mut out: Vec<Change> = Vec::new();
    let mut push = |direction, m: &MaskRule, summary: String, detail: Value| {
        out.push(Change {
            section: "masking",
            direction,
            group: format!("target `{}`", m.target),
            summary,
            detail: {
                let mut d = detail;
                if let Some(o) = d.as_object_mut() {
                    o.insert("masking_rule".into(), json!(m.id));
                    o.insert("target".into(), json!(m.target));
                }
                d
            },
        })
    };
    for n in &new.masking {
        if old.masking.iter().all(|o| o.id != n.id) {
            push(
                Direction::Narrows,
                n,
                format!("masking rule `{}` added: {}", n.id, mask_rule_text(n)),
                json!({ "change": "added", "new": n }),
            );
        }
    }
    for o in &old.masking {
        let Some(n) = new.masking.iter().find(|n| n.id == o.id) else {
            push(
                Direction::Widens,
                o,
                format!(
                    "masking rule `{}` removed: values it masked are shown in clear (was: {})",
                    o.id,
                    mask_rule_text(o)
                ),
                json!({ "change": "removed", "old": o }),
            );
            continue;
        };
        if o == n {
            continue;
        }
        if o.target != n.target {
            push(
                Direction::Changes,
                n,
                format!(
                    "masking rule `{}` moved from target `{}` to `{}`: {}",
                    o.id,
                    o.target,
                    n.target,
                    mask_rule_text(n)
                ),
                json!({ "change": "target", "old": o, "new": n }),
            );
            continue;
        }
        mask_rule_changes(o, n, &mut push);
    }
    // Grouped by target (stable: rules keep their order within one).
    out.sort_by(|a, b| a.group.cmp(&b.group));
    all.extend(out);
}

/// A strategy change: revealing more (by [`strategy_rank`]) widens.
fn strategy_direction(old: &Strategy, new: &Strategy) -> Direction {
    match strategy_rank(new).cmp(&strategy_rank(old)) {
        std::cmp::Ordering::Greater => Direction::Widens,
        std::cmp::Ordering::Less => Direction::Narrows,
        std::cmp::Ordering::Equal => Direction::Neutral,
    }
}

fn mask_rule_changes(
    o: &MaskRule,
    n: &MaskRule,
    push: &mut dyn FnMut(Direction, &MaskRule, String, Value),
) {
    let id = &o.id;
    if o.roles != n.roles {
        // Roles listed = the callers masked: more callers masked narrows.
        let d = match list_direction(&o.roles, &n.roles, &exact_covers) {
            Direction::Widens => Direction::Narrows,
            Direction::Narrows => Direction::Widens,
            d => d,
        };
        let t = |v: &[String]| {
            if v.is_empty() {
                "everyone".to_owned()
            } else {
                qlist(v)
            }
        };
        push(
            d,
            n,
            format!(
                "masking rule `{id}` applies to: {} → {}",
                t(&o.roles),
                t(&n.roles)
            ),
            json!({ "change": "roles", "old": o.roles, "new": n.roles }),
        );
    }
    for r in n
        .except_roles
        .iter()
        .filter(|r| !o.except_roles.contains(r))
    {
        push(
            Direction::Widens,
            n,
            format!(
                "role `{r}` is now exempt from masking rule `{id}`: it sees those values in clear"
            ),
            json!({ "change": "exemption_added", "role": r }),
        );
    }
    for r in o
        .except_roles
        .iter()
        .filter(|r| !n.except_roles.contains(r))
    {
        push(
            Direction::Narrows,
            n,
            format!("role `{r}` is no longer exempt from masking rule `{id}`"),
            json!({ "change": "exemption_removed", "role": r }),
        );
    }
    let (oi, ni) = (mask_items(&o.spec), mask_items(&n.spec));
    let same = |a: &MaskItem, b: &MaskItem| a.0 == b.0 && a.1 == b.1;
    // Strategy changes of the items in both: one change for the rule when
    // they all went from the same strategy to the same other one.
    let changed: Vec<(&MaskItem, &MaskItem)> = ni
        .iter()
        .filter_map(|n| oi.iter().find(|o| same(o, n)).map(|o| (o, n)))
        .filter(|(o, n)| o.2 != n.2)
        .collect();
    let whole_rule = match changed.first() {
        Some((o0, n0)) => changed.iter().all(|(o, n)| o.2 == o0.2 && n.2 == n0.2),
        None => false,
    };
    if let (true, Some((o0, n0))) = (whole_rule, changed.first()) {
        let names: Vec<String> = changed
            .iter()
            .map(|(_, n)| format!("{} `{}`", n.0, n.1))
            .collect();
        push(
            strategy_direction(o0.2, n0.2),
            n,
            format!(
                "masking rule `{id}` strategy: {} → {} ({})",
                strategy_text(o0.2),
                strategy_text(n0.2),
                names.join(", ")
            ),
            json!({ "change": "strategy", "old": o0.2, "new": n0.2, "items": changed.iter().map(|(_, n)| json!({ "kind": n.0, "name": n.1 })).collect::<Vec<_>>() }),
        );
    }
    for item in &ni {
        let (kind, name, strategy, pattern) = *item;
        match oi.iter().find(|x| same(x, item)) {
            None => push(
                Direction::Narrows,
                n,
                format!(
                    "masking rule `{id}` now masks {kind} `{name}` ({})",
                    strategy_text(strategy)
                ),
                json!({ "change": "masked_added", "kind": kind, "name": name, "strategy": strategy }),
            ),
            Some(prev) => {
                if prev.3 != pattern {
                    push(
                        Direction::Changes,
                        n,
                        format!(
                            "masking rule `{id}` detector `{name}` pattern: /{}/ → /{}/",
                            prev.3.unwrap_or(""),
                            pattern.unwrap_or("")
                        ),
                        json!({ "change": "pattern", "name": name, "old": prev.3, "new": pattern }),
                    );
                }
                if prev.2 != strategy && !whole_rule {
                    push(
                        strategy_direction(prev.2, strategy),
                        n,
                        format!(
                            "masking rule `{id}` {kind} `{name}`: {} → {}",
                            strategy_text(prev.2),
                            strategy_text(strategy)
                        ),
                        json!({ "change": "strategy", "old": prev.2, "new": strategy, "items": [json!({ "kind": kind, "name": name })] }),
                    );
                }
            }
        }
    }
    for item in &oi {
        if !ni.iter().any(|x| same(x, item)) {
            let (kind, name, strategy, _) = *item;
            push(
                Direction::Widens,
                n,
                format!(
                    "masking rule `{id}` no longer masks {kind} `{name}` (was {}): shown in clear",
                    strategy_text(strategy)
                ),
                json!({ "change": "masked_removed", "kind": kind, "name": name, "strategy": strategy }),
            );
        }
    }
    if o.spec.unmaskable != n.spec.unmaskable {
        let (d, what) = match n.spec.unmaskable {
            Unmaskable::Refuse => (
                Direction::Narrows,
                "results with a value that cannot hold a mask are refused (was: the value becomes NULL)",
            ),
            Unmaskable::Null => (
                Direction::Widens,
                "a value that cannot hold a mask becomes NULL and the result is returned (was: refused)",
            ),
        };
        push(
            d,
            n,
            format!("masking rule `{id}`: {what}"),
            json!({ "change": "unmaskable", "old": o.spec.unmaskable, "new": n.spec.unmaskable }),
        );
    }
}

// ---------------------------------------------------------------- identity

fn key_id(k: &Jwk) -> String {
    match &k.kid {
        Some(kid) => format!("kid `{kid}`"),
        None => {
            let m = serde_json::to_string(&k.key).unwrap_or_default();
            let digest = crate::source_sha256(m.as_bytes(), &[]);
            format!("kid-less key {}", digest.get(..12).unwrap_or(&digest))
        }
    }
}

fn identity(old: &Policy, new: &Policy, out: &mut Vec<Change>) {
    let mut push = |direction, issuer: &str, summary: String, detail: Value| {
        out.push(Change {
            section: "identity",
            direction,
            group: format!("issuer `{issuer}`"),
            summary,
            detail: {
                let mut d = detail;
                if let Some(o) = d.as_object_mut() {
                    o.insert("issuer".into(), json!(issuer));
                }
                d
            },
        })
    };
    for n in &new.issuers {
        if old.issuers.iter().all(|o| o.name != n.name) {
            push(
                Direction::Widens,
                &n.name,
                format!(
                    "issuer `{}` added: tokens from `{}` with audience {} are now accepted",
                    n.name,
                    n.issuer,
                    qlist(&n.audiences)
                ),
                json!({ "change": "added", "iss": n.issuer }),
            );
        }
    }
    for o in &old.issuers {
        let Some(n) = new.issuers.iter().find(|n| n.name == o.name) else {
            push(
                Direction::Narrows,
                &o.name,
                format!(
                    "issuer `{}` removed: tokens from `{}` are refused",
                    o.name, o.issuer
                ),
                json!({ "change": "removed", "iss": o.issuer }),
            );
            continue;
        };
        issuer_changes(o, n, &mut push);
    }
}

fn issuer_changes(o: &Issuer, n: &Issuer, push: &mut dyn FnMut(Direction, &str, String, Value)) {
    let name = o.name.as_str();
    if o.issuer != n.issuer {
        push(
            Direction::Changes,
            name,
            format!("issuer `{name}` URL: `{}` → `{}`", o.issuer, n.issuer),
            json!({ "change": "iss", "old": o.issuer, "new": n.issuer }),
        );
    }
    let added: Vec<String> = n
        .audiences
        .iter()
        .filter(|a| !o.audiences.contains(a))
        .cloned()
        .collect();
    let removed: Vec<String> = o
        .audiences
        .iter()
        .filter(|a| !n.audiences.contains(a))
        .cloned()
        .collect();
    if !added.is_empty() {
        push(
            Direction::Widens,
            name,
            format!("issuer `{name}` accepts new audience(s) {}", qlist(&added)),
            json!({ "change": "audiences_added", "audiences": added }),
        );
    }
    if !removed.is_empty() {
        push(
            Direction::Narrows,
            name,
            format!(
                "issuer `{name}` no longer accepts audience(s) {}",
                qlist(&removed)
            ),
            json!({ "change": "audiences_removed", "audiences": removed }),
        );
    }
    let algs = |v: &[pinhole_filter::policy::Alg]| {
        v.iter().map(|a| a.as_str().to_owned()).collect::<Vec<_>>()
    };
    let (oa, na) = (algs(&o.algorithms), algs(&n.algorithms));
    let added: Vec<String> = na.iter().filter(|a| !oa.contains(a)).cloned().collect();
    let removed: Vec<String> = oa.iter().filter(|a| !na.contains(a)).cloned().collect();
    if !added.is_empty() {
        push(
            Direction::Widens,
            name,
            format!("issuer `{name}` accepts new algorithm(s) {}", qlist(&added)),
            json!({ "change": "algorithms_added", "algorithms": added }),
        );
    }
    if !removed.is_empty() {
        push(
            Direction::Narrows,
            name,
            format!(
                "issuer `{name}` no longer accepts algorithm(s) {}",
                qlist(&removed)
            ),
            json!({ "change": "algorithms_removed", "algorithms": removed }),
        );
    }
    let oid: Vec<(String, &Jwk)> = o.keys.iter().map(|k| (key_id(k), k)).collect();
    let nid: Vec<(String, &Jwk)> = n.keys.iter().map(|k| (key_id(k), k)).collect();
    for (id, k) in &nid {
        match oid.iter().find(|(i, _)| i == id) {
            None => push(
                Direction::Widens,
                name,
                format!("issuer `{name}` key {id} added"),
                json!({ "change": "key_added", "key": id, "kid": k.kid }),
            ),
            Some((_, ok)) if ok != k => push(
                Direction::Widens,
                name,
                format!("issuer `{name}` key {id} replaced (new key material or algorithm)"),
                json!({ "change": "key_replaced", "key": id, "kid": k.kid }),
            ),
            Some(_) => {}
        }
    }
    for (id, k) in &oid {
        if nid.iter().all(|(i, _)| i != id) {
            push(
                Direction::Narrows,
                name,
                format!("issuer `{name}` key {id} removed"),
                json!({ "change": "key_removed", "key": id, "kid": k.kid }),
            );
        }
    }
    if o.groups_claim != n.groups_claim {
        push(
            Direction::Changes,
            name,
            format!(
                "issuer `{name}` groups claim: `{}` → `{}`",
                o.groups_claim, n.groups_claim
            ),
            json!({ "change": "groups_claim", "old": o.groups_claim, "new": n.groups_claim }),
        );
    }
    if o.max_token_lifetime_secs != n.max_token_lifetime_secs {
        let d = match (o.max_token_lifetime_secs, n.max_token_lifetime_secs) {
            (Some(_), None) => Direction::Widens,
            (None, Some(_)) => Direction::Narrows,
            (Some(a), Some(b)) if b > a => Direction::Widens,
            _ => Direction::Narrows,
        };
        let t = |v: Option<u64>| {
            v.map(crate::duration::format)
                .unwrap_or_else(|| "(no limit)".into())
        };
        push(
            d,
            name,
            format!(
                "issuer `{name}` maximum token lifetime: {} → {}",
                t(o.max_token_lifetime_secs),
                t(n.max_token_lifetime_secs)
            ),
            json!({ "change": "max_token_lifetime", "old": o.max_token_lifetime_secs, "new": n.max_token_lifetime_secs }),
        );
    }
    if o.leeway_secs != n.leeway_secs {
        push(
            if n.leeway_secs > o.leeway_secs {
                Direction::Widens
            } else {
                Direction::Narrows
            },
            name,
            format!(
                "issuer `{name}` leeway: {} → {}",
                crate::duration::format(o.leeway_secs),
                crate::duration::format(n.leeway_secs)
            ),
            json!({ "change": "leeway", "old": o.leeway_secs, "new": n.leeway_secs }),
        );
    }
}

fn revocations(old: &Policy, new: &Policy, out: &mut Vec<Change>) {
    let lists = [
        ("subject", &old.revoked.subjects, &new.revoked.subjects),
        ("token id", &old.revoked.token_ids, &new.revoked.token_ids),
    ];
    for (what, o, n) in lists {
        for s in n.iter().filter(|s| !o.contains(s)) {
            out.push(Change {
                section: "revocations",
                direction: Direction::Narrows,
                group: "revocations".into(),
                summary: format!("{what} `{s}` revoked"),
                detail: json!({ "change": "added", "kind": what, "value": s }),
            });
        }
        for s in o.iter().filter(|s| !n.contains(s)) {
            out.push(Change {
                section: "revocations",
                direction: Direction::Widens,
                group: "revocations".into(),
                summary: format!("{what} `{s}` no longer revoked"),
                detail: json!({ "change": "removed", "kind": what, "value": s }),
            });
        }
    }
}

/// Approvers, review settings and elevation rules: more approvers, longer
/// approvals, new or wider elevations widen access.
fn approvals(old: &Policy, new: &Policy, out: &mut Vec<Change>) {
    let mut push = |direction, summary: String, detail: Value| {
        out.push(Change {
            section: "approvals",
            direction,
            group: "approvals".into(),
            summary,
            detail,
        })
    };
    for n in &new.approvers {
        match old.approvers.iter().find(|o| o.name == n.name) {
            None => push(
                Direction::Widens,
                format!("approver `{}` added (groups {})", n.name, qlist(&n.groups)),
                json!({ "change": "added", "approver": n.name, "groups": n.groups }),
            ),
            Some(o) => {
                if o.key != n.key || o.subject != n.subject {
                    push(
                        Direction::Changes,
                        format!("approver `{}`: key or subject changed", n.name),
                        json!({ "change": "changed", "approver": n.name }),
                    );
                }
                let gained: Vec<String> = n
                    .groups
                    .iter()
                    .filter(|g| !o.groups.contains(g))
                    .cloned()
                    .collect();
                let lost: Vec<String> = o
                    .groups
                    .iter()
                    .filter(|g| !n.groups.contains(g))
                    .cloned()
                    .collect();
                if !gained.is_empty() {
                    push(
                        Direction::Widens,
                        format!("approver `{}` joins {}", n.name, qlist(&gained)),
                        json!({ "change": "groups", "approver": n.name, "added": gained }),
                    );
                }
                if !lost.is_empty() {
                    push(
                        Direction::Narrows,
                        format!("approver `{}` leaves {}", n.name, qlist(&lost)),
                        json!({ "change": "groups", "approver": n.name, "removed": lost }),
                    );
                }
            }
        }
    }
    for o in old
        .approvers
        .iter()
        .filter(|o| new.approver(&o.name).is_none())
    {
        push(
            Direction::Narrows,
            format!("approver `{}` removed", o.name),
            json!({ "change": "removed", "approver": o.name }),
        );
    }
    let ttl = |p: &Policy, rule: &str| {
        p.review(rule)
            .map_or(pinhole_filter::grant::DEFAULT_GRANT_TTL_SECS, |r| {
                r.grant_ttl_secs
            })
    };
    let groups = |p: &Policy, rule: &str| {
        p.review(rule)
            .map(|r| r.approvers.clone())
            .unwrap_or_default()
    };
    for r in new
        .rules
        .iter()
        .filter(|r| r.effect == pinhole_filter::policy::Effect::Review)
    {
        if old
            .rule(&r.id)
            .is_none_or(|o| o.effect != pinhole_filter::policy::Effect::Review)
        {
            continue;
        }
        let (ot, nt) = (ttl(old, &r.id), ttl(new, &r.id));
        if ot != nt {
            push(
                if nt > ot {
                    Direction::Widens
                } else {
                    Direction::Narrows
                },
                format!(
                    "review rule `{}`: approvals last up to {nt} s (was {ot} s)",
                    r.id
                ),
                json!({ "change": "grant_ttl", "rule": r.id, "old": ot, "new": nt }),
            );
        }
        let (og, ng) = (groups(old, &r.id), groups(new, &r.id));
        if og != ng {
            let wider = ng.iter().any(|g| !og.contains(g));
            push(
                if wider {
                    Direction::Widens
                } else {
                    Direction::Narrows
                },
                format!(
                    "review rule `{}`: approvers {} (was {})",
                    r.id,
                    qlist(&ng),
                    qlist(&og)
                ),
                json!({ "change": "approvers", "rule": r.id, "old": og, "new": ng }),
            );
        }
    }
    let key = |e: &pinhole_filter::policy::Elevation| {
        format!(
            "`{}` for {} ({} s, approvers {})",
            e.role,
            qlist(&e.eligible),
            e.max_secs,
            qlist(&e.approvers)
        )
    };
    for e in new.elevation.iter().filter(|e| !old.elevation.contains(e)) {
        push(
            Direction::Widens,
            format!("elevation to {} added or changed", key(e)),
            json!({ "change": "added", "role": e.role, "eligible": e.eligible, "max_secs": e.max_secs, "approvers": e.approvers }),
        );
    }
    for e in old.elevation.iter().filter(|e| !new.elevation.contains(e)) {
        push(
            Direction::Narrows,
            format!("elevation to {} removed or changed", key(e)),
            json!({ "change": "removed", "role": e.role, "eligible": e.eligible, "max_secs": e.max_secs, "approvers": e.approvers }),
        );
    }
    let (og, ng) = (old.grants.len(), new.grants.len());
    if old.grants != new.grants {
        push(
            Direction::Changes,
            format!("grants shipped with the policy: {ng} (was {og})"),
            json!({ "change": "grants", "old": og, "new": ng }),
        );
    }
}

fn targets(old: &Policy, new: &Policy, out: &mut Vec<Change>) {
    let mut push = |direction, summary: String, detail: Value| {
        out.push(Change {
            section: "targets",
            direction,
            group: "targets".into(),
            summary,
            detail,
        })
    };
    for n in &new.targets {
        match old.targets.iter().find(|o| o.name == n.name) {
            None => push(
                Direction::Neutral,
                format!("target `{}` added ({})", n.name, n.protocol.as_str()),
                json!({ "change": "added", "target": n.name, "protocol": n.protocol }),
            ),
            Some(o) => {
                if o.protocol != n.protocol {
                    push(
                        Direction::Changes,
                        format!(
                            "target `{}` protocol: {} → {}",
                            n.name,
                            o.protocol.as_str(),
                            n.protocol.as_str()
                        ),
                        json!({ "change": "protocol", "target": n.name, "old": o.protocol, "new": n.protocol }),
                    );
                }
                if o.mask_key_env != n.mask_key_env {
                    let t =
                        |v: &Option<String>| v.as_deref().map(q).unwrap_or_else(|| "(none)".into());
                    push(
                        Direction::Neutral,
                        format!(
                            "target `{}` masking key variable: {} → {} (`hash` values change with the key)",
                            n.name,
                            t(&o.mask_key_env),
                            t(&n.mask_key_env)
                        ),
                        json!({ "change": "mask_key_env", "target": n.name, "old": o.mask_key_env, "new": n.mask_key_env }),
                    );
                }
                if o.forward_token != n.forward_token {
                    push(
                        if n.forward_token {
                            Direction::Widens
                        } else {
                            Direction::Narrows
                        },
                        if n.forward_token {
                            format!("target `{}` now receives the caller's bearer token", n.name)
                        } else {
                            format!(
                                "target `{}` no longer receives the caller's bearer token",
                                n.name
                            )
                        },
                        json!({ "change": "forward_token", "target": n.name, "old": o.forward_token, "new": n.forward_token }),
                    );
                }
            }
        }
    }
    for o in &old.targets {
        if new.targets.iter().all(|n| n.name != o.name) {
            push(
                Direction::Neutral,
                format!(
                    "target `{}` removed: a filter still configured for it refuses every request",
                    o.name
                ),
                json!({ "change": "removed", "target": o.name }),
            );
        }
    }
}

// ----------------------------------------------------------------- output

const SECTIONS: [(&str, &str); 8] = [
    ("access", "Access"),
    ("masking", "Masking (what callers see in clear)"),
    ("roles", "Roles (who they apply to)"),
    ("identity", "Identity: issuers and keys"),
    ("revocations", "Revocations"),
    ("approvals", "Approvals and elevation"),
    ("targets", "Targets"),
    ("rules", "Rules"),
];

fn marker(d: Direction) -> &'static str {
    match d {
        Direction::Widens => "**widens**",
        Direction::Narrows => "narrows",
        Direction::Changes => "**changes**",
        Direction::Neutral => "note",
    }
}

/// Markdown for a pull-request comment.
pub fn markdown(d: &Diff) -> String {
    let mut o = String::from("## Pinhole policy diff\n\n");
    o.push_str(&format!("`{}` → `{}`\n\n", d.old, d.new));
    let count = |k: &str| d.counts.get(k).copied().unwrap_or(0);
    if d.changes.is_empty() {
        o.push_str(
            "No change: access, masking, roles, rules, identity, approvals and targets are the same.\n",
        );
        return o;
    }
    let headline = if count("widens") > 0 {
        "**Access widens.**"
    } else if count("changes") > 0 {
        "**Access changes** (not provably wider or narrower)."
    } else if count("narrows") > 0 {
        "Access only narrows."
    } else {
        "No change in access."
    };
    o.push_str(&format!(
        "{headline} {} widen, {} narrow, {} change either way, {} other.\n",
        count("widens"),
        count("narrows"),
        count("changes"),
        count("neutral")
    ));
    for (section, title) in SECTIONS {
        let items: Vec<&Change> = d.changes.iter().filter(|c| c.section == section).collect();
        if items.is_empty() {
            continue;
        }
        o.push_str(&format!("\n### {title}\n"));
        let grouped = matches!(section, "access" | "masking" | "roles" | "identity");
        let mut last_group: Option<&str> = None;
        for c in items {
            if grouped && last_group != Some(c.group.as_str()) {
                o.push_str(&format!("\n#### {}\n\n", c.group));
                last_group = Some(c.group.as_str());
            } else if !grouped && last_group.is_none() {
                o.push('\n');
                last_group = Some("");
            }
            o.push_str(&format!("- {} · {}\n", marker(c.direction), c.summary));
        }
    }
    o
}
