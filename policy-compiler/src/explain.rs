//! `pinhole explain`: a [`crate::scenario::Run`] in words.

use std::fmt::Write as _;

use serde_json::Value;

use crate::scenario::Run;

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "(absent)".into(),
        v => v.to_string(),
    }
}

fn condition_text(condition: &str, requires: &Value) -> String {
    match condition {
        "issuer" => format!("issuer is {}", short(requires)),
        "subjects" => format!("sub matches one of {requires}"),
        "groups" => format!("groups include one of {requires}"),
        c => format!(
            "claim `{}` matches one of {requires}",
            c.strip_prefix("claims.").unwrap_or(c)
        ),
    }
}

/// The human report.
pub fn human(run: &Run) -> String {
    let mut o = String::new();
    let id = &run.identity;
    let _ = writeln!(o, "identity");
    match (&id.issuer, &id.iss) {
        (Some(name), Some(iss)) => {
            let _ = writeln!(o, "  issuer    {name} ({iss})");
        }
        (None, Some(iss)) => {
            let _ = writeln!(o, "  issuer    {iss} (not an issuer of this policy)");
        }
        _ => {}
    }
    if let Some(sub) = &id.sub {
        let _ = writeln!(o, "  subject   {sub}");
    }
    if let Some(jti) = &id.jti {
        let _ = writeln!(o, "  token id  {jti}");
    }
    if id.issuer.is_some() {
        let groups = if id.groups.is_empty() {
            "(none)".to_owned()
        } else {
            id.groups.join(", ")
        };
        let _ = writeln!(o, "  groups    {groups}");
        let _ = writeln!(o, "  revoked   {}", if id.revoked { "YES" } else { "no" });
    }
    match &id.refused {
        Some(r) => {
            let _ = writeln!(
                o,
                "  result    REFUSED: {r} (HTTP 401; no rule is considered)"
            );
        }
        None => {
            let _ = writeln!(o, "  result    verified");
        }
    }
    if !run.roles.is_empty() {
        let _ = writeln!(o, "roles (+ held, - not held)");
        let width = run.roles.iter().map(|r| r.role.len()).max().unwrap_or(0);
        for r in &run.roles {
            let _ = writeln!(
                o,
                "  {} {:<width$}  {}",
                if r.held { "+" } else { "-" },
                r.role,
                if r.held { "held" } else { "not held" }
            );
            if r.conditions.is_empty() {
                let _ = writeln!(o, "      (no conditions: every authenticated identity)");
            }
            for c in &r.conditions {
                let _ = writeln!(
                    o,
                    "      {} {}: has {}",
                    if c.holds { "ok  " } else { "FAIL" },
                    condition_text(&c.condition, &c.requires),
                    short(&c.actual)
                );
            }
        }
    }
    let _ = writeln!(o, "request");
    let _ = writeln!(o, "  {} on target `{}`", run.request, run.target);
    if !run.rules.is_empty() {
        let _ = writeln!(
            o,
            "rules of target `{}`, in policy order (+ matches, - does not)",
            run.target
        );
        let width = run.rules.iter().map(|r| r.rule.len()).max().unwrap_or(0);
        for r in &run.rules {
            let _ = writeln!(
                o,
                "  {} {:<width$}  {:<6}  {}",
                if r.matched { "+" } else { "-" },
                r.rule,
                r.effect.as_str(),
                r.why
            );
        }
    }
    let _ = writeln!(o, "decision");
    let out = &run.outcome;
    let by = match &out.rule {
        Some(r) => format!(" by rule `{r}`"),
        None => String::new(),
    };
    let _ = writeln!(
        o,
        "  {}{by}: {}",
        out.decision.as_str().to_uppercase(),
        out.reason
    );
    if let Some(v) = &out.visible {
        let _ = writeln!(
            o,
            "  visible: {}",
            if v.is_empty() {
                "(nothing)".to_owned()
            } else {
                v.join(", ")
            }
        );
    }
    o
}
