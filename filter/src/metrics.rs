//! Names of the filter's Envoy metrics (host-free, so they are tested and
//! documented in one place). Envoy shows a Wasm metric `name` as
//! `wasmcustom.name` (summed across workers); `/stats/prometheus` drops the
//! prefix. Labels come from `stats_config.stats_tags` regexes on the name:
//! every `.<label>.<value>` pair below becomes a `pinhole_<label>` tag with
//! the regexes of [`STATS_TAGS`] (set in every shipped Envoy config).
//!
//! | metric | labels | counts |
//! |---|---|---|
//! | `pinhole.decision` | effect, target, rule | decisions (allow, deny, review) |
//! | `pinhole.auth_failure` | reason, target | refused tokens |
//! | `pinhole.sql_parse_failure` | target | statements refused as unparsable |
//! | `pinhole.masked_values` | target | values masked in responses |
//! | `pinhole.audit_sent` / `pinhole.audit_dropped` | | audit events delivered / lost |
//! | `pinhole.policy_load_failure` | | configurations whose policy did not load |

use std::collections::HashMap;

use crate::policy::Effect;

/// `(tag name, regex)` pairs for Envoy's `stats_config.stats_tags`.
pub const STATS_TAGS: &[(&str, &str)] = &[
    (
        "pinhole_effect",
        r"^wasmcustom\.pinhole\..*(\.effect\.([^.]+))",
    ),
    (
        "pinhole_target",
        r"^wasmcustom\.pinhole\..*(\.target\.([^.]+))",
    ),
    ("pinhole_rule", r"^wasmcustom\.pinhole\..*(\.rule\.([^.]+))"),
    (
        "pinhole_reason",
        r"^wasmcustom\.pinhole\..*(\.reason\.([^.]+))",
    ),
];

/// A label value safe inside a stat name: `[A-Za-z0-9_-]`, others `_`,
/// at most 64 characters.
pub fn label(v: &str) -> String {
    let mut s: String = v
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        s.push('_');
    }
    s
}

/// `pinhole.decision.effect.<e>.target.<t>.rule.<r>` (`rule.none` for the
/// default deny).
pub fn decision(effect: &str, target: &str, rule: Option<&str>) -> String {
    format!(
        "pinhole.decision.effect.{}.target.{}.rule.{}",
        label(effect),
        label(target),
        label(rule.unwrap_or("none"))
    )
}

/// Rule → the counter id per effect (allow, deny, review).
type RuleIds<V> = HashMap<String, [Option<V>; 3]>;

/// Per-VM cache of the decision counters: `(effect, target, rule)` → the
/// host's metric id, so a request neither formats the counter's name nor
/// hashes it (the name is built once, on the first decision of its kind).
/// Keyed by the borrowed parts: a hit allocates nothing. Holds at most
/// [`DecisionCounters::MAX`] entries (beyond, `define` runs every time).
#[derive(Debug, Default)]
pub struct DecisionCounters<V> {
    /// target → rule label source (`None` is stored as `"none"`, which is
    /// what its name says) → id per effect (allow, deny, review).
    map: std::cell::RefCell<HashMap<String, RuleIds<V>>>,
    len: std::cell::Cell<usize>,
}

impl<V: Copy> DecisionCounters<V> {
    pub const MAX: usize = 10_000;

    pub fn new() -> Self {
        DecisionCounters {
            map: std::cell::RefCell::new(HashMap::new()),
            len: std::cell::Cell::new(0),
        }
    }

    /// The id of the counter [`decision`] names, from `define(name)` on a
    /// miss (`None`: not defined, not cached).
    pub fn get(
        &self,
        effect: Effect,
        target: &str,
        rule: Option<&str>,
        define: impl FnOnce(&str) -> Option<V>,
    ) -> Option<V> {
        let rule = rule.unwrap_or("none");
        let slot = match effect {
            Effect::Allow => 0,
            Effect::Deny => 1,
            Effect::Review => 2,
        };
        if let Ok(map) = self.map.try_borrow() {
            if let Some(Some(id)) = map
                .get(target)
                .and_then(|rules| rules.get(rule))
                .and_then(|ids| ids.get(slot))
            {
                return Some(*id);
            }
        }
        let id = define(&decision(effect.as_str(), target, Some(rule)))?;
        if self.len.get() < Self::MAX {
            if let Ok(mut map) = self.map.try_borrow_mut() {
                let ids = map
                    .entry(target.to_owned())
                    .or_default()
                    .entry(rule.to_owned())
                    .or_insert([None; 3]);
                if let Some(s) = ids.get_mut(slot) {
                    if s.is_none() {
                        self.len.set(self.len.get() + 1);
                    }
                    *s = Some(id);
                }
            }
        }
        Some(id)
    }
}

/// `pinhole.auth_failure.reason.<r>.target.<t>`.
pub fn auth_failure(reason: &str, target: &str) -> String {
    format!(
        "pinhole.auth_failure.reason.{}.target.{}",
        label(reason),
        label(target)
    )
}

/// `pinhole.sql_parse_failure.target.<t>`.
pub fn sql_parse_failure(target: &str) -> String {
    format!("pinhole.sql_parse_failure.target.{}", label(target))
}

/// `pinhole.masked_values.target.<t>`.
pub fn masked_values(target: &str) -> String {
    format!("pinhole.masked_values.target.{}", label(target))
}

pub const AUDIT_SENT: &str = "pinhole.audit_sent";
pub const AUDIT_DROPPED: &str = "pinhole.audit_dropped";
pub const POLICY_LOAD_FAILURE: &str = "pinhole.policy_load_failure";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            decision("deny", "orders-db", Some("builtin:protected-setting")),
            "pinhole.decision.effect.deny.target.orders-db.rule.builtin_protected-setting"
        );
        assert_eq!(
            decision("allow", "tools", None),
            "pinhole.decision.effect.allow.target.tools.rule.none"
        );
        assert_eq!(
            auth_failure("token expired", "tools"),
            "pinhole.auth_failure.reason.token_expired.target.tools"
        );
        assert_eq!(label("a.b\nc"), "a_b_c");
        let c = DecisionCounters::new();
        let mut defined = Vec::new();
        let mut get = |e, t, r| {
            c.get(e, t, r, |n: &str| {
                defined.push(n.to_owned());
                Some(defined.len())
            })
        };
        assert_eq!(get(Effect::Allow, "tools", Some("r.1")), Some(1));
        assert_eq!(get(Effect::Allow, "tools", Some("r.1")), Some(1));
        assert_eq!(get(Effect::Deny, "tools", None), Some(2));
        // `rule: None` and `rule: "none"` share a name, hence a counter.
        assert_eq!(get(Effect::Deny, "tools", Some("none")), Some(2));
        assert_eq!(get(Effect::Deny, "api", None), Some(3));
        assert_eq!(
            defined,
            [
                decision("allow", "tools", Some("r.1")),
                decision("deny", "tools", None),
                decision("deny", "api", None),
            ]
        );
        assert_eq!(label(""), "_");
    }
}

#[cfg(test)]
mod config_tests {
    /// Every shipped Envoy config carries exactly these tag extractors.
    #[test]
    fn shipped_configs_extract_the_labels() {
        for f in [
            "http.yaml",
            "mcp.yaml",
            "postgres.yaml",
            "postgres-tcp.yaml",
        ] {
            let path = format!("{}/../envoy/{f}", env!("CARGO_MANIFEST_DIR"));
            let Ok(text) = std::fs::read_to_string(&path) else {
                // Under Node's WASI the repository is not mounted.
                continue;
            };
            for (tag, regex) in super::STATS_TAGS {
                let line = format!("- {{ tag_name: {tag}, regex: '{regex}' }}");
                assert!(text.contains(&line), "{f} lacks {line}");
            }
        }
    }
}
