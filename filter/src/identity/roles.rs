//! Claim → role mapping.
//!
//! A [`Role`] matches a verified token when every condition it states holds:
//! - `issuer`: unset, or equal to the token's issuer name;
//! - `subjects`: empty, or one glob matches `sub`;
//! - `groups`: empty, or the token has one of them (exact match);
//! - each [`ClaimMatch`]: the claim at the dotted path exists and one of its
//!   patterns glob-matches it. A string matches as is; a number or boolean
//!   matches by its JSON text (`42`, `true`); an array matches when any of
//!   its (string, number or boolean) elements does; null, objects and a
//!   missing claim never match. An empty pattern list matches nothing.
//!
//! Globs are [`crate::glob`]'s: `*` stops at `/`, `**` does not. So a GitHub
//! Actions role can say `repository: acme/*` and `ref: refs/heads/main`.

use std::rc::Rc;

use serde_json::{Map, Value};

use super::VerifiedToken;
use crate::glob;
use crate::policy::{ClaimMatch, Policy, Role};

/// Names of the policy's roles that `t` holds, in policy order.
pub fn roles_for(policy: &Policy, t: &VerifiedToken) -> Vec<String> {
    policy
        .roles
        .iter()
        .filter(|r| role_matches(r, t))
        .map(|r| r.name.clone())
        .collect()
}

/// The roles of the tokens an engine saw last, so that a cached token's
/// roles are mapped once, not on every request: with hundreds of roles the
/// mapping costs more than the decision. Keyed by the shared verified
/// token (the identity cache hands out the same `Rc` for the same token);
/// each entry holds its `Rc`, so an address is never reused while it is a
/// key. One memo per policy (an engine's): roles depend only on the token
/// and the policy. Bounded; the oldest entry goes first.
#[derive(Debug, Default)]
pub struct RolesMemo {
    entries: std::cell::RefCell<std::collections::VecDeque<(Rc<VerifiedToken>, Vec<String>)>>,
}

impl RolesMemo {
    /// Entries kept (a linear search of pointers: a few nanoseconds).
    pub const CAPACITY: usize = 32;

    /// [`roles_for`] of `t` under `policy`, remembered by token.
    pub fn roles_for(&self, policy: &Policy, t: &Rc<VerifiedToken>) -> Vec<String> {
        if let Ok(entries) = self.entries.try_borrow() {
            if let Some((_, roles)) = entries.iter().find(|(k, _)| Rc::ptr_eq(k, t)) {
                return roles.clone();
            }
        }
        let roles = roles_for(policy, t);
        if let Ok(mut entries) = self.entries.try_borrow_mut() {
            if entries.len() >= Self::CAPACITY {
                entries.pop_front();
            }
            entries.push_back((Rc::clone(t), roles.clone()));
        }
        roles
    }
}

/// Whether one role matches the token.
pub fn role_matches(role: &Role, t: &VerifiedToken) -> bool {
    role.issuer
        .as_deref()
        .is_none_or(|issuer| issuer == t.issuer_name)
        && (role.subjects.is_empty() || glob::any_matches(&role.subjects, &t.sub))
        && (role.groups.is_empty() || role.groups.iter().any(|g| t.groups.contains(g)))
        && role.claims.iter().all(|c| claim_matches(c, &t.claims))
}

fn claim_matches(c: &ClaimMatch, claims: &Map<String, Value>) -> bool {
    match claim_at(claims, &c.claim) {
        None => false,
        Some(Value::Array(items)) => items.iter().any(|v| scalar_matches(v, &c.patterns)),
        Some(v) => scalar_matches(v, &c.patterns),
    }
}

fn scalar_matches(v: &Value, patterns: &[String]) -> bool {
    match v {
        Value::String(s) => glob::any_matches(patterns, s),
        Value::Number(n) => glob::any_matches(patterns, &n.to_string()),
        Value::Bool(b) => glob::any_matches(patterns, if *b { "true" } else { "false" }),
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// The groups a token holds according to its issuer's `groups_claim`
/// (`path`, dotted): a string claim is one group, an array claim contributes
/// its string elements, anything else (or an empty path) none. The verifier
/// fills [`VerifiedToken::groups`] with exactly this; `pinhole test` and
/// `pinhole explain` use it to build identities from claims.
pub fn groups_from_claims(claims: &Map<String, Value>, path: &str) -> Vec<String> {
    if path.is_empty() {
        return Vec::new();
    }
    match claim_at(claims, path) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// The claim at a dotted `path`. A key that itself contains dots (such as
/// the namespaced `https://example.com/groups`) is found first as a whole;
/// otherwise the path is split at a dot and the left part must be an object
/// holding the rest (tried left to right at each level).
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    for (i, _) in path.match_indices('.') {
        let (Some(head), Some(rest)) = (path.get(..i), path.get(i + 1..)) else {
            continue;
        };
        if let Some(Value::Object(inner)) = claims.get(head) {
            if let Some(v) = claim_at(inner, rest) {
                return Some(v);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(issuer: &str, sub: &str, groups: &[&str], claims: Value) -> VerifiedToken {
        VerifiedToken {
            issuer_name: issuer.to_string(),
            iss: format!("https://{issuer}"),
            sub: sub.to_string(),
            exp: 2_000_000_000,
            jti: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            claims: claims.as_object().unwrap().clone(),
        }
    }

    fn role(name: &str) -> Role {
        Role {
            name: name.to_string(),
            issuer: None,
            subjects: vec![],
            groups: vec![],
            claims: vec![],
        }
    }

    fn cm(claim: &str, patterns: &[&str]) -> ClaimMatch {
        ClaimMatch {
            claim: claim.to_string(),
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn policy(roles: Vec<Role>) -> Policy {
        Policy {
            roles,
            ..Policy::default()
        }
    }

    #[test]
    fn memo_maps_each_token_once_and_stays_bounded() {
        let p = policy(vec![
            Role {
                groups: vec!["sre".into()],
                ..role("ops")
            },
            role("anyone"),
        ]);
        let memo = RolesMemo::default();
        let a = Rc::new(token("corp", "alice", &["sre"], json!({})));
        let b = Rc::new(token("corp", "bob", &[], json!({})));
        assert_eq!(memo.roles_for(&p, &a), vec!["ops", "anyone"]);
        assert_eq!(memo.roles_for(&p, &b), vec!["anyone"]);
        assert_eq!(memo.roles_for(&p, &a), vec!["ops", "anyone"]);
        // An equal token in another allocation is mapped on its own.
        let a2 = Rc::new((*a).clone());
        assert_eq!(memo.roles_for(&p, &a2), vec!["ops", "anyone"]);
        for i in 0..100 {
            let t = Rc::new(token("corp", &format!("u{i}"), &[], json!({})));
            assert_eq!(memo.roles_for(&p, &t), vec!["anyone"]);
        }
        assert_eq!(memo.entries.borrow().len(), RolesMemo::CAPACITY);
        assert_eq!(memo.roles_for(&p, &a), vec!["ops", "anyone"]);
    }

    #[test]
    fn issuer_subject_groups() {
        let p = policy(vec![
            role("anyone"),
            Role {
                issuer: Some("corp".into()),
                ..role("corp-user")
            },
            Role {
                issuer: Some("github".into()),
                ..role("gh")
            },
            Role {
                subjects: vec!["svc-*".into(), "alice".into()],
                ..role("named")
            },
            Role {
                groups: vec!["admins".into(), "sre".into()],
                ..role("ops")
            },
            Role {
                groups: vec!["nobody".into()],
                ..role("empty-group")
            },
        ]);
        let t = token("corp", "alice", &["eng", "sre"], json!({}));
        assert_eq!(
            roles_for(&p, &t),
            vec!["anyone", "corp-user", "named", "ops"]
        );
        let t = token("github", "svc-build", &[], json!({}));
        assert_eq!(roles_for(&p, &t), vec!["anyone", "gh", "named"]);
        let t = token("corp", "svc/x", &["SRE"], json!({}));
        assert_eq!(roles_for(&p, &t), vec!["anyone", "corp-user"]);
    }

    #[test]
    fn github_actions_claims() {
        let deployer = Role {
            issuer: Some("github".into()),
            claims: vec![
                cm("repository", &["acme/*"]),
                cm("ref", &["refs/heads/main", "refs/tags/v*"]),
            ],
            ..role("deployer")
        };
        let any_branch = Role {
            claims: vec![cm("ref", &["refs/heads/**"])],
            ..role("any-branch")
        };
        let p = policy(vec![deployer, any_branch]);
        let gh = |repo: &str, r: &str| {
            token(
                "github",
                &format!("repo:{repo}:ref:{r}"),
                &[],
                json!({"repository": repo, "ref": r, "repository_owner": "acme"}),
            )
        };
        assert_eq!(
            roles_for(&p, &gh("acme/app", "refs/heads/main")),
            vec!["deployer", "any-branch"]
        );
        assert_eq!(
            roles_for(&p, &gh("acme/app", "refs/tags/v1.2")),
            vec!["deployer"]
        );
        assert_eq!(
            roles_for(&p, &gh("acme/app", "refs/heads/feat/x")),
            vec!["any-branch"]
        );
        assert!(roles_for(&p, &gh("evil/app", "refs/tags/v1")).is_empty());
        // `*` does not cross '/': a nested repo path is not acme/*.
        assert_eq!(
            roles_for(&p, &gh("acme/app/x", "refs/heads/main")),
            vec!["any-branch"]
        );
        // Missing claim never matches.
        let t = token("github", "x", &[], json!({"repository": "acme/app"}));
        assert!(roles_for(&p, &t).is_empty());
    }

    #[test]
    fn claim_value_kinds() {
        let p = policy(vec![
            Role {
                claims: vec![cm("email_verified", &["true"])],
                ..role("verified")
            },
            Role {
                claims: vec![cm("level", &["4?"])],
                ..role("level4x")
            },
            Role {
                claims: vec![cm("scope_list", &["mcp:*"])],
                ..role("mcp-scope")
            },
            Role {
                claims: vec![cm("org.team.name", &["platform"])],
                ..role("nested")
            },
            Role {
                claims: vec![cm("https://acme.com/tier", &["gold"])],
                ..role("namespaced")
            },
            Role {
                claims: vec![cm("obj", &["*"]), cm("level", &["**"])],
                ..role("object-never")
            },
            Role {
                claims: vec![cm("level", &[])],
                ..role("no-patterns")
            },
            Role {
                claims: vec![cm("nullish", &["null", "*"])],
                ..role("null-never")
            },
        ]);
        let t = token(
            "corp",
            "bob",
            &[],
            json!({
                "email_verified": true,
                "level": 42,
                "scope_list": ["read", 7, ["mcp:nested"], "mcp:tools"],
                "org": {"team": {"name": "platform"}},
                "https://acme.com/tier": "gold",
                "obj": {"a": 1},
                "nullish": null,
            }),
        );
        assert_eq!(
            roles_for(&p, &t),
            vec!["verified", "level4x", "mcp-scope", "nested", "namespaced"]
        );
        let t = token(
            "corp",
            "bob",
            &[],
            json!({"email_verified": "false", "level": 4.5}),
        );
        assert!(roles_for(&p, &t).is_empty());
        let t = token("corp", "bob", &[], json!({"email_verified": false}));
        assert!(roles_for(&p, &t).is_empty());
    }

    #[test]
    fn claim_paths() {
        let c = json!({
            "a": {"b": {"c": 1}},
            "a.b": {"c": 2},
            "x.y": 3,
            "s": "str",
        });
        let c = c.as_object().unwrap();
        assert_eq!(claim_at(c, "x.y"), Some(&json!(3)));
        assert_eq!(claim_at(c, "a.b.c"), Some(&json!(1)));
        assert_eq!(claim_at(c, "a.b"), Some(&json!({"c": 2})));
        assert_eq!(claim_at(c, "s.len"), None);
        assert_eq!(claim_at(c, "missing"), None);
        assert_eq!(claim_at(c, ""), None);
        assert_eq!(claim_at(c, "."), None);
        assert_eq!(claim_at(c, "a..b"), None);
        assert_eq!(claim_at(c, "a.b.c.d"), None);
    }

    #[test]
    fn groups_from_claims_reads_strings_and_arrays() {
        let c = json!({
            "groups": ["a", 1, "b", null],
            "one": "solo",
            "realm_access": {"roles": ["x"]},
            "num": 3,
        });
        let c = c.as_object().unwrap();
        assert_eq!(groups_from_claims(c, "groups"), vec!["a", "b"]);
        assert_eq!(groups_from_claims(c, "one"), vec!["solo"]);
        assert_eq!(groups_from_claims(c, "realm_access.roles"), vec!["x"]);
        assert!(groups_from_claims(c, "num").is_empty());
        assert!(groups_from_claims(c, "missing").is_empty());
        assert!(groups_from_claims(c, "").is_empty());
    }

    #[test]
    fn unknown_issuer_role_does_not_match() {
        let p = policy(vec![Role {
            issuer: Some("ghost".into()),
            ..role("ghostly")
        }]);
        let t = token("corp", "alice", &[], json!({}));
        assert!(roles_for(&p, &t).is_empty());
    }
}
