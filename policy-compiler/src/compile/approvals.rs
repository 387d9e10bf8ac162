//! `approvers:`, `elevation:` and the `approvers`/`grant_ttl` of review
//! rules.
//!
//! ```yaml
//! approvers:
//!   dba-leads:
//!     - { name: dana, ed25519: "MCowBQYDK2VwAyEA…", subject: dana@acme.example }
//! rules:
//!   - id: ddl-needs-review
//!     review: { roles: [dba], target: orders-db, sql: { statements: [create, alter] },
//!               approvers: [dba-leads], grant_ttl: 30m }
//! elevation:
//!   - { role: dba, eligible: [sre], max: 1h, approvers: [dba-leads] }
//! ```

use std::collections::BTreeMap;

use pinhole_filter::grant::DEFAULT_GRANT_TTL_SECS;
use pinhole_filter::policy::{blob, Approver, Effect, Elevation, ReviewRule};

use super::Lower;
use crate::diag::Span;
use crate::fields::Spanned;
use crate::suggest;
use crate::yaml::{Node, Value};

const APPROVER_KEYS: &[&str] = &["name", "ed25519", "subject"];
const ELEVATION_KEYS: &[&str] = &["role", "eligible", "max", "approvers"];

/// The longest validity of an approval or an elevation.
pub const MAX_GRANT_SECS: u64 = 7 * 24 * 3600;

/// The approver groups defined, for resolving references.
#[derive(Debug, Default)]
pub(super) struct Groups {
    /// Group → where it is defined.
    pub defined: BTreeMap<String, Span>,
    pub used: std::collections::BTreeSet<String>,
    /// Review settings collected from the rules.
    pub reviews: Vec<ReviewRule>,
    /// Review rules without approvers (for a warning).
    pub unapprovable: Vec<(String, Span)>,
}

impl Lower<'_, '_> {
    /// `approvers:` — group → list of people.
    pub(super) fn approvers(&mut self, node: &Node) -> Vec<Approver> {
        let Value::Map(entries) = &node.value else {
            self.ck.error(
                node.span,
                format!(
                    "expected a mapping of approver groups for `approvers` (e.g. `dba-leads: [{{ name: dana, ed25519: KEY }}]`), found {}",
                    node.kind()
                ),
            );
            return Vec::new();
        };
        let mut out: Vec<Approver> = Vec::new();
        let mut where_name: BTreeMap<String, Span> = BTreeMap::new();
        for e in entries {
            if !self.check_name(
                &Spanned {
                    value: e.key.clone(),
                    span: e.key_span,
                },
                "approver group",
                super::MAX_NAME_LEN,
            ) {
                continue;
            }
            self.groups.defined.insert(e.key.clone(), e.key_span);
            let what = format!("approver group `{}`", e.key);
            let Value::Seq(items) = &e.value.value else {
                self.ck.error(
                    e.value.span,
                    format!(
                        "expected a list of approvers for {what}, found {}",
                        e.value.kind()
                    ),
                );
                continue;
            };
            if items.is_empty() {
                self.ck.warning(
                    e.value.span,
                    format!("{what} has no members: no one can approve for it"),
                );
            }
            for item in items {
                let Some(f) = self.ck.fields(item, "an approver", APPROVER_KEYS, &[]) else {
                    continue;
                };
                let name = self
                    .ck
                    .required(&f, "name", "the approver")
                    .and_then(|n| self.ck.nonempty_string(n, "the approver `name`"));
                let key = self
                    .ck
                    .required(&f, "ed25519", "the approver")
                    .and_then(|n| self.ck.nonempty_string(n, "`ed25519`"))
                    .and_then(|k| match blob::public_key_from_base64(&k.value) {
                        Ok(pk) => Some(blob::public_key_base64(&pk)),
                        Err(why) => {
                            self.ck.error(
                                k.span,
                                format!(
                                    "`ed25519` {why} (`pinhole keygen --out NAME` writes NAME.pub)"
                                ),
                            );
                            None
                        }
                    });
                let subject = match f.node("subject") {
                    None => Some(None),
                    Some(n) => self
                        .ck
                        .nonempty_string(n, "the approver `subject`")
                        .map(|s| Some(s.value)),
                };
                let (Some(name), Some(key), Some(subject)) = (name, key, subject) else {
                    continue;
                };
                match out.iter_mut().find(|a| a.name == name.value) {
                    Some(a) if a.key != key || (subject.is_some() && a.subject != subject) => {
                        let first = where_name
                            .get(&name.value)
                            .map(|s| format!(" (first at {s})"))
                            .unwrap_or_default();
                        self.ck.error(
                            name.span,
                            format!(
                                "approver `{}` is listed again with another key or subject{first}; \
                                 one person has one key: use a different name",
                                name.value
                            ),
                        );
                    }
                    Some(a) => {
                        if !a.groups.contains(&e.key) {
                            a.groups.push(e.key.clone());
                        }
                    }
                    None => {
                        where_name.insert(name.value.clone(), name.span);
                        out.push(Approver {
                            name: name.value,
                            groups: vec![e.key.clone()],
                            key,
                            subject,
                        });
                    }
                }
            }
        }
        out
    }

    /// Approver group references (`approvers: [dba-leads]`).
    fn group_refs(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        let list = self.ck.nonempty_list(
            node,
            what,
            "list the approver groups (from `approvers:`) whose members may approve",
        )?;
        let mut ok = true;
        let mut out = Vec::new();
        for g in list {
            if self.groups.defined.contains_key(&g.value) {
                self.groups.used.insert(g.value.clone());
                if !out.contains(&g.value) {
                    out.push(g.value);
                }
            } else {
                ok = false;
                let hint =
                    suggest::did_you_mean(&g.value, self.groups.defined.keys().map(String::as_str));
                let hint = if hint.is_empty() && self.groups.defined.is_empty() {
                    " (the policy defines no `approvers:` groups)".to_owned()
                } else {
                    hint
                };
                self.ck.error(
                    g.span,
                    format!("unknown approver group `{}`{hint}", g.value),
                );
            }
        }
        ok.then_some(out)
    }

    fn grant_duration(&mut self, node: &Node, what: &str) -> Option<u64> {
        let d = self.ck.duration(node, what)?;
        if d.value == 0 || d.value > MAX_GRANT_SECS {
            self.ck.error(
                d.span,
                format!("{what} must be between 1s and 7d, found {} s", d.value),
            );
            return None;
        }
        Some(d.value)
    }

    /// The `approvers` and `grant_ttl` of a rule body (`node`, a mapping
    /// already checked for unknown keys by `body`).
    pub(super) fn review_settings(&mut self, node: &Node, rule: &str, effect: Effect, span: Span) {
        let Value::Map(entries) = &node.value else {
            return;
        };
        let get = |k: &str| entries.iter().find(|e| e.key == k);
        if effect != Effect::Review {
            for k in ["approvers", "grant_ttl"] {
                if let Some(e) = get(k) {
                    self.ck.error(
                        e.key_span,
                        format!(
                            "`{k}` applies only to `review` rules; rule `{rule}` is `{}`",
                            effect.as_str()
                        ),
                    );
                }
            }
            return;
        }
        let approvers = match get("approvers") {
            Some(e) => self.group_refs(&e.value, "`approvers`"),
            None => {
                self.groups.unapprovable.push((rule.to_owned(), span));
                Some(Vec::new())
            }
        };
        let ttl = match get("grant_ttl") {
            Some(e) => self.grant_duration(&e.value, "`grant_ttl`"),
            None => Some(DEFAULT_GRANT_TTL_SECS),
        };
        if let (Some(approvers), Some(grant_ttl_secs)) = (approvers, ttl) {
            if !approvers.is_empty() || grant_ttl_secs != DEFAULT_GRANT_TTL_SECS {
                self.groups.reviews.push(ReviewRule {
                    rule: rule.to_owned(),
                    approvers,
                    grant_ttl_secs,
                });
            }
        }
    }

    /// `elevation:` — list of elevation rules.
    pub(super) fn elevation(&mut self, node: &Node) -> Vec<Elevation> {
        let Value::Seq(items) = &node.value else {
            self.ck.error(
                node.span,
                format!(
                    "expected a list of elevation rules for `elevation` (e.g. `- {{ role: dba, eligible: [sre], max: 1h, approvers: [dba-leads] }}`), found {}",
                    node.kind()
                ),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let Some(f) = self
                .ck
                .fields(item, "an elevation rule", ELEVATION_KEYS, &[])
            else {
                continue;
            };
            let role = self
                .ck
                .required(&f, "role", "the elevation rule")
                .and_then(|n| self.single_role(n));
            let eligible = self
                .ck
                .required(&f, "eligible", "the elevation rule")
                .and_then(|n| {
                    self.role_names(
                        n,
                        "`eligible`",
                        "list the roles whose holders may be elevated",
                    )
                })
                .map(|v| v.into_iter().map(|s| s.value).collect::<Vec<_>>());
            let max = self
                .ck
                .required(&f, "max", "the elevation rule")
                .and_then(|n| self.grant_duration(n, "`max`"));
            let approvers = self
                .ck
                .required(&f, "approvers", "the elevation rule")
                .and_then(|n| self.group_refs(n, "`approvers`"));
            if let (Some(role), Some(eligible), Some(max_secs), Some(approvers)) =
                (role, eligible, max, approvers)
            {
                if eligible.contains(&role) {
                    self.ck.warning(
                        f.span,
                        format!("elevation to `{role}` lists `{role}` as eligible: its holders already have it"),
                    );
                }
                self.used_roles.insert(role.clone());
                for r in &eligible {
                    self.used_roles.insert(r.clone());
                }
                out.push(Elevation {
                    role,
                    eligible,
                    max_secs,
                    approvers,
                });
            }
        }
        out
    }

    fn single_role(&mut self, node: &Node) -> Option<String> {
        let s = self.ck.nonempty_string(node, "`role`")?;
        if self.roles.contains(&s.value) {
            Some(s.value)
        } else {
            let hint = suggest::did_you_mean(&s.value, self.roles.iter().map(String::as_str));
            self.ck
                .error(s.span, format!("unknown role `{}`{hint}", s.value));
            None
        }
    }

    /// Warnings once everything compiled.
    pub(super) fn approval_lints(&mut self) {
        for (rule, span) in std::mem::take(&mut self.groups.unapprovable) {
            self.ck.warning(
                span,
                format!(
                    "review rule `{rule}` has no `approvers`: its commands can never be approved \
                     (add `approvers: [GROUP]` naming a group of `approvers:`)"
                ),
            );
        }
        let unused: Vec<(String, Span)> = self
            .groups
            .defined
            .iter()
            .filter(|(g, _)| !self.groups.used.contains(*g))
            .map(|(g, s)| (g.clone(), *s))
            .collect();
        for (g, span) in unused {
            self.ck.warning(
                span,
                format!("approver group `{g}` is not named by any review rule or elevation rule"),
            );
        }
    }
}
