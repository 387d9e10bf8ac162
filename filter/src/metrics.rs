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
