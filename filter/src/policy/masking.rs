//! Which masking applies to a caller: the policy's [`MaskRule`]s of a
//! target, filtered by the caller's roles and merged into one
//! [`MaskSpec`] for [`crate::mask::Masker`]. Host-free.
//!
//! Merging (see docs/policy.md, "Masking"):
//!
//! - a rule applies when it names no `roles` or the caller holds one of
//!   them, and the caller holds none of its `except_roles`;
//! - field and column rules of every applying rule are kept, ordered so
//!   that the most protective strategy comes first (`redact`, then `hash`,
//!   then `partial` with the smallest `keep`; ties in source order): the
//!   masker lets the first matching rule decide, so when two rules mask
//!   the same value, the stronger one wins;
//! - a detector named by several applying rules is run once, with the most
//!   protective of their strategies;
//! - `unmaskable` is `refuse` when any applying rule says so.

use crate::mask::{DetectorRule, MaskSpec, Strategy, Unmaskable};

use super::model::{MaskRule, Policy};

impl MaskRule {
    /// Whether this rule masks responses for a caller holding `roles`.
    pub fn applies_to(&self, roles: &[String]) -> bool {
        let held = |r: &String| roles.contains(r);
        (self.roles.is_empty() || self.roles.iter().any(held))
            && !self.except_roles.iter().any(held)
    }
}

/// How much a strategy reveals, lower is less: `redact`, `hash`, then
/// `partial` by `keep`.
pub fn strategy_rank(s: &Strategy) -> (u8, usize) {
    match s {
        Strategy::Redact { .. } => (0, 0),
        Strategy::Hash {} => (1, 0),
        Strategy::Partial { keep } => (2, *keep),
    }
}

/// The masking a caller holding `roles` gets on `target`: every masking
/// rule of the target that applies to the caller, merged (see the module
/// docs). Empty ([`MaskSpec::is_empty`]) when nothing is masked for them.
pub fn mask_spec_for(policy: &Policy, target: &str, roles: &[String]) -> MaskSpec {
    let mut out = MaskSpec::default();
    for rule in policy
        .masking
        .iter()
        .filter(|r| r.target == target && r.applies_to(roles))
    {
        let spec = &rule.spec;
        for f in &spec.fields {
            if !out.fields.contains(f) {
                out.fields.push(f.clone());
            }
        }
        for c in &spec.columns {
            if !out.columns.contains(c) {
                out.columns.push(c.clone());
            }
        }
        for d in &spec.detectors {
            merge_detector(&mut out.detectors, d);
        }
        if spec.unmaskable == Unmaskable::Refuse {
            out.unmaskable = Unmaskable::Refuse;
        }
    }
    // Stable: equal strategies keep their source order.
    out.fields.sort_by_key(|f| strategy_rank(&f.strategy));
    out.columns.sort_by_key(|c| strategy_rank(&c.strategy));
    out
}

/// Adds `d`, or strengthens the strategy of the detector of the same name.
fn merge_detector(list: &mut Vec<DetectorRule>, d: &DetectorRule) {
    match list.iter_mut().find(|x| x.detector == d.detector) {
        Some(x) => {
            if strategy_rank(&d.strategy) < strategy_rank(&x.strategy) {
                x.strategy = d.strategy.clone();
            }
        }
        None => list.push(d.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{ColumnRule, FieldRule};
    use crate::policy::model::{Protocol, Target};

    fn redact() -> Strategy {
        Strategy::Redact { text: None }
    }

    fn col(c: &str, s: Strategy) -> ColumnRule {
        ColumnRule {
            column: c.into(),
            strategy: s,
        }
    }

    fn det(name: &str, s: Strategy) -> DetectorRule {
        DetectorRule {
            detector: name.into(),
            pattern: None,
            strategy: s,
        }
    }

    fn rule(id: &str, target: &str, roles: &[&str], except: &[&str], spec: MaskSpec) -> MaskRule {
        MaskRule {
            id: id.into(),
            target: target.into(),
            roles: roles.iter().map(|r| (*r).to_string()).collect(),
            except_roles: except.iter().map(|r| (*r).to_string()).collect(),
            spec,
        }
    }

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|r| (*r).to_string()).collect()
    }

    fn policy(masking: Vec<MaskRule>) -> Policy {
        let target = |name: &str, protocol| Target {
            name: name.into(),
            protocol,
            forward_token: false,
            backend_user: None,
            backend_password_env: None,
            backend_database: None,
            mask_key_env: None,
        };
        Policy {
            targets: vec![
                target("db", Protocol::Postgres),
                target("tools", Protocol::Mcp),
            ],
            masking,
            ..Policy::default()
        }
    }

    #[test]
    fn roles_and_exemptions_decide_who_is_masked() {
        let emails = MaskSpec {
            columns: vec![col("customers.email", Strategy::Partial { keep: 4 })],
            ..MaskSpec::default()
        };
        let p = policy(vec![
            rule("everyone", "db", &[], &["support-lead"], emails.clone()),
            rule(
                "analysts-cards",
                "db",
                &["analyst"],
                &[],
                MaskSpec {
                    detectors: vec![det("payment_card", redact())],
                    ..MaskSpec::default()
                },
            ),
            rule("other-target", "tools", &[], &[], emails.clone()),
        ]);
        // No roles: only the rule for everyone.
        assert_eq!(mask_spec_for(&p, "db", &[]), emails);
        // An analyst: both rules of the target.
        let a = mask_spec_for(&p, "db", &roles(&["analyst"]));
        assert_eq!(a.columns, emails.columns);
        assert_eq!(a.detectors, vec![det("payment_card", redact())]);
        // A support lead is exempt from the first rule only.
        let s = mask_spec_for(&p, "db", &roles(&["support-lead"]));
        assert!(s.is_empty(), "{s:?}");
        let both = mask_spec_for(&p, "db", &roles(&["support-lead", "analyst"]));
        assert!(both.columns.is_empty());
        assert_eq!(both.detectors.len(), 1);
        // Another target, an unknown target.
        assert_eq!(
            mask_spec_for(&p, "tools", &roles(&["support-lead"])),
            emails
        );
        assert!(mask_spec_for(&p, "nope", &[]).is_empty());
        // No masking at all.
        assert!(mask_spec_for(&policy(vec![]), "db", &[]).is_empty());
    }

    #[test]
    fn an_exemption_wins_over_roles() {
        let spec = MaskSpec {
            detectors: vec![det("email", redact())],
            ..MaskSpec::default()
        };
        let r = rule("r", "db", &["analyst"], &["auditor"], spec);
        assert!(r.applies_to(&roles(&["analyst"])));
        assert!(!r.applies_to(&roles(&["analyst", "auditor"])));
        assert!(!r.applies_to(&roles(&["auditor"])));
        assert!(!r.applies_to(&roles(&["dba"])));
        assert!(!r.applies_to(&[]));
    }

    #[test]
    fn the_most_protective_strategy_wins() {
        let p = policy(vec![
            rule(
                "partial",
                "db",
                &[],
                &[],
                MaskSpec {
                    columns: vec![col("email", Strategy::Partial { keep: 4 })],
                    detectors: vec![det("email", Strategy::Partial { keep: 4 })],
                    fields: vec![FieldRule {
                        path: "a.b".into(),
                        strategy: Strategy::Partial { keep: 2 },
                    }],
                    ..MaskSpec::default()
                },
            ),
            rule(
                "hash",
                "db",
                &[],
                &[],
                MaskSpec {
                    columns: vec![col("email", Strategy::Hash {}), col("phone", redact())],
                    detectors: vec![
                        det("email", Strategy::Hash {}),
                        det("phone", Strategy::Partial { keep: 2 }),
                    ],
                    fields: vec![FieldRule {
                        path: "**.b".into(),
                        strategy: Strategy::Hash {},
                    }],
                    unmaskable: Unmaskable::Refuse,
                },
            ),
            rule(
                "redact",
                "db",
                &[],
                &[],
                MaskSpec {
                    detectors: vec![det("email", Strategy::Partial { keep: 1 })],
                    ..MaskSpec::default()
                },
            ),
        ]);
        let s = mask_spec_for(&p, "db", &[]);
        assert_eq!(
            s.columns,
            vec![
                col("phone", redact()),
                col("email", Strategy::Hash {}),
                col("email", Strategy::Partial { keep: 4 }),
            ]
        );
        assert_eq!(
            s.detectors,
            vec![
                det("email", Strategy::Hash {}),
                det("phone", Strategy::Partial { keep: 2 }),
            ]
        );
        assert_eq!(s.fields.first().map(|f| f.path.as_str()), Some("**.b"));
        assert_eq!(s.unmaskable, Unmaskable::Refuse);
        // The merged spec is always valid for the masker.
        assert!(s.validate().is_ok(), "{:?}", s.validate());
    }

    #[test]
    fn a_duplicate_rule_is_merged_once() {
        let spec = MaskSpec {
            columns: vec![col("email", redact())],
            detectors: vec![det("email", redact())],
            ..MaskSpec::default()
        };
        let p = policy(vec![
            rule("a", "db", &[], &[], spec.clone()),
            rule("b", "db", &[], &[], spec.clone()),
        ]);
        assert_eq!(mask_spec_for(&p, "db", &[]), spec);
    }
}
