//! An index over one target's rules, so that deciding a request costs the
//! same with ten rules or ten thousand.
//!
//! The reference evaluator ([`super::eval`]) considers every rule of the
//! target in source order. Almost all of them cannot match a given request:
//! they are for roles the caller does not hold, or name other tools, paths
//! or statement kinds. [`RuleIndex`] is built once per loaded policy (host
//! free, at load time) and answers, for a caller's roles and a request, the
//! positions of the rules that **might** match — a superset of the rules
//! that match or are near misses, in source order — so the evaluator runs
//! its unchanged per-rule logic over a handful of rules:
//!
//! - by role: one bucket per role named by some rule, plus one for rules
//!   without `roles` (every caller);
//! - in a bucket, by what the request names: tool, resource, prompt and
//!   method names and HTTP paths in a [`NameIndex`] (literal patterns in a
//!   hash map, glob patterns by their literal prefix, patterns starting
//!   with a wildcard in a residual list checked for every request); SQL
//!   rules by statement kind (rules without `statements` for every
//!   statement); rules without a matcher for every request.
//!
//! What the index may leave out must never change a decision, so it leaves
//! out only rules that cannot match and cannot be the near miss the
//! default deny names: rules for other roles (they fail the role test first,
//! which is never a near miss), rules of another kind of matcher (never a
//! near miss either), and MCP/HTTP rules whose name lists cannot match the
//! request's name (a name mismatch is not a near miss). For a SQL statement
//! every failure of a SQL rule is a near miss, so each bucket also keeps its
//! first `allow` SQL rule (the first such rule the caller can use is the one
//! a default deny names). Equivalence with the full scan is checked by a
//! property test over random policies and requests (`eval.rs`).

use std::collections::HashMap;
use std::mem::{discriminant, Discriminant};

use super::eval::{kinds_of, Request};
use super::model::{Effect, Matcher, Policy, Rule, StatementClass};
use crate::glob::{self, Tok};
use crate::pg::sql::{ObjectType, StatementKind};

/// Patterns (globs, see [`crate::glob`]) mapped to rule positions, for
/// finding the rules one of whose patterns might match a name.
#[derive(Debug, Default)]
struct NameIndex {
    /// Patterns without wildcards, by the text they match.
    exact: HashMap<String, Vec<u32>>,
    /// Glob patterns with a literal prefix, by that prefix.
    prefixed: HashMap<String, Vec<u32>>,
    /// The distinct lengths (bytes) of the keys of `prefixed`.
    prefix_lens: Vec<usize>,
    /// Glob patterns starting with a wildcard: considered for every name.
    residual: Vec<u32>,
}

/// Appends `pos` unless it is already the last element (rules are added in
/// source order, so a rule listing two patterns with the same key would
/// otherwise appear twice in a row).
fn push(list: &mut Vec<u32>, pos: u32) {
    if list.last() != Some(&pos) {
        list.push(pos);
    }
}

impl NameIndex {
    fn insert(&mut self, pattern: &str, pos: u32) {
        let toks = glob::tokenize(pattern);
        let mut prefix = String::new();
        let mut literal = true;
        for t in &toks {
            match t {
                Tok::Lit(c) => prefix.push(*c),
                Tok::One | Tok::Star | Tok::DStar => {
                    literal = false;
                    break;
                }
            }
        }
        if literal {
            push(self.exact.entry(prefix).or_default(), pos);
        } else if prefix.is_empty() {
            push(&mut self.residual, pos);
        } else {
            if !self.prefix_lens.contains(&prefix.len()) {
                self.prefix_lens.push(prefix.len());
                self.prefix_lens.sort_unstable();
            }
            push(self.prefixed.entry(prefix).or_default(), pos);
        }
    }

    fn insert_all(&mut self, patterns: &[String], pos: u32) {
        for p in patterns {
            self.insert(p, pos);
        }
    }

    /// Appends every rule one of whose patterns might match `name`.
    fn collect(&self, name: &str, out: &mut Vec<u32>) {
        if let Some(v) = self.exact.get(name) {
            out.extend_from_slice(v);
        }
        for &len in &self.prefix_lens {
            if len > name.len() {
                break;
            }
            if let Some(v) = name.get(..len).and_then(|p| self.prefixed.get(p)) {
                out.extend_from_slice(v);
            }
        }
        out.extend_from_slice(&self.residual);
    }

    fn len(&self) -> usize {
        self.exact.values().map(Vec::len).sum::<usize>()
            + self.prefixed.values().map(Vec::len).sum::<usize>()
            + self.residual.len()
    }
}

/// The rules of one role (or of every caller), by what they name.
#[derive(Debug, Default)]
struct Bucket {
    /// Rules without a matcher: every request.
    every: Vec<u32>,
    tools: NameIndex,
    resources: NameIndex,
    prompts: NameIndex,
    methods: NameIndex,
    /// HTTP rules by path (rules without `paths` are residual).
    http: NameIndex,
    /// SQL rules by statement kind.
    sql: HashMap<Discriminant<StatementKind>, Vec<u32>>,
    /// SQL rules without `statements`: every statement.
    sql_any: Vec<u32>,
    /// The first `allow` SQL rule: the near miss of a refused statement.
    first_sql_allow: Option<u32>,
}

impl Bucket {
    fn insert(&mut self, rule: &Rule, pos: u32) {
        match &rule.matcher {
            Matcher::Any => push(&mut self.every, pos),
            Matcher::Mcp(m) => {
                self.tools.insert_all(&m.tools, pos);
                self.resources.insert_all(&m.resources, pos);
                self.prompts.insert_all(&m.prompts, pos);
                self.methods.insert_all(&m.methods, pos);
            }
            Matcher::Http(h) => {
                if h.paths.is_empty() {
                    push(&mut self.http.residual, pos);
                } else {
                    self.http.insert_all(&h.paths, pos);
                }
            }
            Matcher::Sql(s) => {
                if rule.effect == Effect::Allow && self.first_sql_allow.is_none() {
                    self.first_sql_allow = Some(pos);
                }
                if s.statements.is_empty() {
                    push(&mut self.sql_any, pos);
                }
                for c in &s.statements {
                    for k in class_kinds(c) {
                        push(self.sql.entry(k).or_default(), pos);
                    }
                }
            }
        }
    }

    fn collect(&self, req: &Request, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.every);
        match req {
            Request::ToolCall { name, .. } => self.tools.collect(name, out),
            Request::Resource { uri } => self.resources.collect(uri, out),
            Request::Prompt { name } => self.prompts.collect(name, out),
            Request::McpMethod { method } => self.methods.collect(method, out),
            Request::Http { path, .. } => self.http.collect(path, out),
            Request::Sql { statement } => {
                for k in kinds_of(statement) {
                    if let Some(v) = self.sql.get(&discriminant(k)) {
                        out.extend_from_slice(v);
                    }
                }
                out.extend_from_slice(&self.sql_any);
                out.extend(self.first_sql_allow);
            }
        }
    }
}

/// The statement kinds a statement class can cover, by variant (object
/// types are left to the evaluator). Exhaustive on purpose: a new class
/// must say which kinds it covers.
fn class_kinds(c: &StatementClass) -> Vec<Discriminant<StatementKind>> {
    use StatementClass as C;
    use StatementKind as K;
    let kinds = match c {
        C::Select => vec![K::Select],
        C::Insert => vec![K::Insert],
        C::Update => vec![K::Update],
        C::Delete => vec![K::Delete],
        C::Merge => vec![K::Merge],
        C::Copy => vec![K::CopyTo, K::CopyFrom],
        C::CopyTo => vec![K::CopyTo],
        C::CopyFrom => vec![K::CopyFrom],
        C::Create(_) => vec![K::Create(ObjectType::Table)],
        C::Alter(_) => vec![K::Alter(ObjectType::Table)],
        C::Drop(_) => vec![K::Drop(ObjectType::Table)],
        C::Truncate => vec![K::Truncate],
        C::Grant => vec![K::Grant],
        C::Revoke => vec![K::Revoke],
        C::Do => vec![K::DoBlock],
        C::Call => vec![K::Call],
        C::Set => vec![K::Set],
        C::Show => vec![K::Show],
        C::Transaction => vec![K::Transaction],
        C::Explain => vec![K::Explain],
        C::Prepare => vec![K::Prepare],
        C::Execute => vec![K::Execute],
        C::Deallocate => vec![K::Deallocate],
        C::Listen => vec![K::Listen],
        C::Notify => vec![K::Notify],
        C::Unlisten => vec![K::Unlisten],
        C::Vacuum => vec![K::Vacuum],
        C::Analyze => vec![K::Analyze],
        C::Lock => vec![K::Lock],
        C::Comment => vec![K::Comment],
        C::Discard => vec![K::Discard],
        C::Cursor => vec![K::Cursor],
        C::FunctionCall => vec![K::FunctionCall],
    };
    kinds.iter().map(discriminant).collect()
}

/// The index of one target's rules (see the module documentation).
#[derive(Debug, Default)]
pub struct RuleIndex {
    target: String,
    /// `policy.rules.len()` when built: a policy of another length is not
    /// the one indexed, and is evaluated by the full scan.
    rules_len: usize,
    by_role: HashMap<String, Bucket>,
    /// Rules without `roles`.
    any_role: Bucket,
    /// Rules naming a `sql_argument`, whatever their roles, by tool name
    /// (they make a `tools/call` a SQL request).
    sql_tools: NameIndex,
}

impl RuleIndex {
    /// Indexes the rules of `target` in `policy`.
    pub fn build(policy: &Policy, target: &str) -> RuleIndex {
        let mut ix = RuleIndex {
            target: target.to_owned(),
            rules_len: policy.rules.len(),
            ..RuleIndex::default()
        };
        for (pos, rule) in policy.rules.iter().enumerate() {
            if rule.target != target {
                continue;
            }
            let Ok(pos) = u32::try_from(pos) else {
                // Over 4 billion rules: never indexed (see `covers`).
                ix.rules_len = usize::MAX;
                return ix;
            };
            if rule.roles.is_empty() {
                ix.any_role.insert(rule, pos);
            } else {
                for role in &rule.roles {
                    // A rule naming a role twice is inserted twice, next to
                    // itself: `push` keeps one.
                    ix.by_role
                        .entry(role.clone())
                        .or_default()
                        .insert(rule, pos);
                }
            }
            if let Matcher::Mcp(m) = &rule.matcher {
                if m.sql_argument.is_some() {
                    ix.sql_tools.insert_all(&m.tools, pos);
                }
            }
        }
        ix
    }

    /// Whether this index was built for `policy`'s rules of `target`.
    pub fn covers(&self, policy: &Policy, target: &str) -> bool {
        self.target == target && self.rules_len == policy.rules.len()
    }

    /// The positions in `policy.rules` of the rules of the target that
    /// might match `req` for a caller holding `roles`, ascending, each once.
    pub fn candidates(&self, roles: &[String], req: &Request, out: &mut Vec<u32>) {
        out.clear();
        self.any_role.collect(req, out);
        for role in roles {
            if let Some(b) = self.by_role.get(role) {
                b.collect(req, out);
            }
        }
        out.sort_unstable();
        out.dedup();
    }

    /// The positions of the rules of the target naming a `sql_argument`
    /// whose tools might match `tool`, ascending, each once.
    pub fn sql_tool_candidates(&self, tool: &str, out: &mut Vec<u32>) {
        out.clear();
        self.sql_tools.collect(tool, out);
        out.sort_unstable();
        out.dedup();
    }

    /// Number of (rule, key) entries: a measure of the index's size.
    pub fn entries(&self) -> usize {
        std::iter::once(&self.any_role)
            .chain(self.by_role.values())
            .map(|b| {
                b.every.len()
                    + b.tools.len()
                    + b.resources.len()
                    + b.prompts.len()
                    + b.methods.len()
                    + b.http.len()
                    + b.sql.values().map(Vec::len).sum::<usize>()
                    + b.sql_any.len()
            })
            .sum::<usize>()
            + self.sql_tools.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::eval::class_matches;

    /// Every kind a class matches has a discriminant the class is indexed
    /// under.
    #[test]
    fn class_kinds_cover_class_matches() {
        let objects = [
            ObjectType::Table,
            ObjectType::View,
            ObjectType::MaterializedView,
            ObjectType::Index,
            ObjectType::Schema,
            ObjectType::Database,
            ObjectType::Role,
            ObjectType::User,
            ObjectType::Sequence,
            ObjectType::Type,
            ObjectType::Domain,
            ObjectType::Function,
            ObjectType::Procedure,
            ObjectType::Trigger,
            ObjectType::Extension,
            ObjectType::Policy,
            ObjectType::Server,
            ObjectType::Collation,
            ObjectType::Operator,
            ObjectType::Other("thing".into()),
        ];
        let mut kinds = vec![
            StatementKind::Select,
            StatementKind::Insert,
            StatementKind::Update,
            StatementKind::Delete,
            StatementKind::Merge,
            StatementKind::CopyTo,
            StatementKind::CopyFrom,
            StatementKind::Truncate,
            StatementKind::Grant,
            StatementKind::Revoke,
            StatementKind::DoBlock,
            StatementKind::Call,
            StatementKind::Set,
            StatementKind::Show,
            StatementKind::Transaction,
            StatementKind::Explain,
            StatementKind::Prepare,
            StatementKind::Execute,
            StatementKind::Deallocate,
            StatementKind::Listen,
            StatementKind::Notify,
            StatementKind::Unlisten,
            StatementKind::Vacuum,
            StatementKind::Analyze,
            StatementKind::Discard,
            StatementKind::Lock,
            StatementKind::Comment,
            StatementKind::Cursor,
            StatementKind::FunctionCall,
            StatementKind::Other("Fancy".into()),
        ];
        for o in &objects {
            kinds.push(StatementKind::Create(o.clone()));
            kinds.push(StatementKind::Alter(o.clone()));
            kinds.push(StatementKind::Drop(o.clone()));
        }
        let mut classes: Vec<StatementClass> = StatementClass::SIMPLE
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        for o in crate::policy::model::SqlObject::ALL {
            classes.push(StatementClass::Create(Some(o)));
            classes.push(StatementClass::Alter(Some(o)));
            classes.push(StatementClass::Drop(Some(o)));
        }
        for c in &classes {
            let keys = class_kinds(c);
            for k in &kinds {
                if class_matches(c, k) {
                    assert!(keys.contains(&discriminant(k)), "{c:?} matches {k:?}");
                }
            }
        }
    }

    #[test]
    fn name_index_finds_literal_prefixed_and_residual_patterns() {
        let mut n = NameIndex::default();
        n.insert("deploy", 0);
        n.insert("k8s_get_*", 1);
        n.insert("*secret*", 2);
        n.insert("k8s_*", 3);
        n.insert("a\\*b", 4);
        n.insert("k8s_get_*", 5);
        n.insert("k8s_get_pods", 5);
        let got = |name: &str| {
            let mut v = Vec::new();
            n.collect(name, &mut v);
            v.sort_unstable();
            v
        };
        assert_eq!(got("deploy"), vec![0, 2]);
        assert_eq!(got("k8s_get_pods"), vec![1, 2, 3, 5, 5]);
        assert_eq!(got("k8s_list"), vec![2, 3]);
        assert_eq!(got("a*b"), vec![2, 4]);
        assert_eq!(got("k"), vec![2]);
        assert_eq!(got("é"), vec![2]);
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod equivalence;
