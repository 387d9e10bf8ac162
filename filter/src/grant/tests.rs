use serde_json::json;

use super::*;
use crate::policy::{Approver, Elevation, Matcher, ReviewRule, Rule};

fn keypair(seed: u8) -> ed25519_compact::KeyPair {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]))
}

fn pubkey(seed: u8) -> String {
    blob::public_key_base64(&keypair(seed).pk)
}

fn policy() -> Policy {
    Policy {
        rules: vec![
            Rule {
                id: "ddl-review".into(),
                effect: Effect::Review,
                roles: vec!["dba".into()],
                target: "db".into(),
                matcher: Matcher::Any,
                reason: None,
            },
            Rule {
                id: "reads".into(),
                effect: Effect::Allow,
                roles: vec![],
                target: "db".into(),
                matcher: Matcher::Any,
                reason: None,
            },
        ],
        approvers: vec![
            Approver {
                name: "dana".into(),
                groups: vec!["dba-leads".into()],
                key: pubkey(1),
                subject: Some("dana@acme.example".into()),
            },
            Approver {
                name: "ivan".into(),
                groups: vec!["interns".into()],
                key: pubkey(2),
                subject: None,
            },
        ],
        reviews: vec![ReviewRule {
            rule: "ddl-review".into(),
            approvers: vec!["dba-leads".into()],
            grant_ttl_secs: 1800,
        }],
        elevation: vec![Elevation {
            role: "dba".into(),
            eligible: vec!["sre".into()],
            max_secs: 3600,
            approvers: vec!["dba-leads".into()],
        }],
        ..Policy::default()
    }
}

const NOW: u64 = 1_700_000_000;
const SQL: &str = "ALTER TABLE orders ADD COLUMN note text";

fn approval(subject: &str, sql: &str) -> GrantClaims {
    let fp = Fingerprint::Sql(sql).hex();
    GrantClaims {
        id: "g-1".into(),
        kind: GrantKind::Approval,
        subject: subject.into(),
        issuer: Some("sso".into()),
        approver: "dana".into(),
        issued_at: NOW,
        not_before: NOW,
        expires: NOW + 600,
        reason: None,
        target: Some("db".into()),
        rule: Some("ddl-review".into()),
        request: Some(request_id("sso", subject, "db", "ddl-review", &fp)),
        fingerprint: Some(fp),
        command: Some(sql.into()),
        role: None,
    }
}

fn elevation(subject: &str, secs: u64) -> GrantClaims {
    GrantClaims {
        id: "g-2".into(),
        kind: GrantKind::Elevation,
        subject: subject.into(),
        issuer: None,
        approver: "dana".into(),
        issued_at: NOW,
        not_before: NOW,
        expires: NOW + secs,
        reason: Some("incident 42".into()),
        target: None,
        rule: None,
        request: None,
        fingerprint: None,
        command: None,
        role: Some("dba".into()),
    }
}

fn token(sub: &str, iss: &str) -> VerifiedToken {
    VerifiedToken {
        issuer_name: iss.into(),
        iss: "https://sso".into(),
        sub: sub.into(),
        exp: NOW + 3600,
        jti: None,
        groups: vec![],
        claims: Default::default(),
    }
}

fn signed(c: &GrantClaims, seed: u8) -> String {
    sign(c, &keypair(seed).sk)
}

#[test]
fn a_signed_approval_verifies_and_matches_only_its_command() {
    let p = policy();
    let t = signed(&approval("bob", SQL), 1);
    assert!(t.starts_with(TOKEN_PREFIX));
    let g = verify(&t, &p).unwrap();
    assert_eq!(g.claims, approval("bob", SQL));
    let set = GrantSet::from_grants(vec![g]);
    let bob = token("bob", "sso");
    let fp = Fingerprint::Sql(SQL).hex();
    assert!(set.approval(&bob, "db", "ddl-review", &fp, NOW).is_some());
    assert!(set
        .approval(&bob, "db", "ddl-review", &fp, NOW + 599)
        .is_some());
    // Expired, not yet valid, another command, rule, target, subject, issuer.
    assert!(set
        .approval(&bob, "db", "ddl-review", &fp, NOW + 600)
        .is_none());
    assert!(set
        .approval(&bob, "db", "ddl-review", &fp, NOW - 1)
        .is_none());
    let other = Fingerprint::Sql("ALTER TABLE orders DROP COLUMN note").hex();
    assert!(set
        .approval(&bob, "db", "ddl-review", &other, NOW)
        .is_none());
    assert!(set.approval(&bob, "db", "reads", &fp, NOW).is_none());
    assert!(set.approval(&bob, "db2", "ddl-review", &fp, NOW).is_none());
    assert!(set
        .approval(&token("eve", "sso"), "db", "ddl-review", &fp, NOW)
        .is_none());
    assert!(set
        .approval(&token("bob", "other-idp"), "db", "ddl-review", &fp, NOW)
        .is_none());
}

#[test]
fn forged_and_altered_grants_are_refused() {
    let p = policy();
    // Signed by a key that is not dana's.
    let t = signed(&approval("bob", SQL), 9);
    assert_eq!(verify(&t, &p), Err(GrantError::BadSignature("dana".into())));
    // Claims altered after signing (another command, same signature).
    let good = signed(&approval("bob", SQL), 1);
    let sig = good.rsplit_once('.').unwrap().1;
    let other = signed(&approval("bob", "DROP TABLE orders"), 1);
    let body = other.rsplit_once('.').unwrap().0;
    let spliced = format!("{body}.{sig}");
    assert!(matches!(
        verify(&spliced, &p),
        Err(GrantError::BadSignature(_))
    ));
    // Garbage.
    for bad in [
        "",
        "pinhole-grant.v1.",
        "pinhole-grant.v1.e30",
        "pinhole-grant.v1.!!!.AAAA",
        "pinhole-grant.v1.e30.AAAA",
        "eyJhbGciOiJub25lIn0.e30.",
    ] {
        assert!(verify(bad, &p).is_err(), "{bad}");
    }
    let long = format!("{TOKEN_PREFIX}{}", "A".repeat(MAX_TOKEN_LEN));
    assert_eq!(verify(&long, &p), Err(GrantError::TooLong));
    // Unknown approver.
    let mut c = approval("bob", SQL);
    c.approver = "mallory".into();
    assert_eq!(
        verify(&signed(&c, 1), &p),
        Err(GrantError::UnknownApprover("mallory".into()))
    );
    // An unknown claim is refused, not ignored.
    let json = br#"{"id":"g","kind":"approval","subject":"bob","approver":"dana","issued_at":1,"not_before":1,"expires":2,"scope":"all"}"#;
    let mut t = String::from(TOKEN_PREFIX);
    t.push_str(&URL_SAFE_NO_PAD.encode(json));
    let sig = keypair(1).sk.sign(t.as_bytes(), None);
    t.push('.');
    t.push_str(&URL_SAFE_NO_PAD.encode(sig.as_slice()));
    assert!(matches!(verify(&t, &p), Err(GrantError::Malformed(_))));
}

#[test]
fn self_approval_is_refused_by_name_and_by_subject() {
    let p = policy();
    for sub in ["dana", "dana@acme.example"] {
        let t = signed(&approval(sub, SQL), 1);
        assert!(
            matches!(verify(&t, &p), Err(GrantError::SelfApproval { .. })),
            "{sub}"
        );
        let t = signed(&elevation(sub, 60), 1);
        assert!(matches!(
            verify(&t, &p),
            Err(GrantError::SelfApproval { .. })
        ));
    }
}

#[test]
fn approvals_must_fit_the_rule() {
    let p = policy();
    // Not an approver group of the rule.
    let mut c = approval("bob", SQL);
    c.approver = "ivan".into();
    let e = verify(&signed(&c, 2), &p).unwrap_err().to_string();
    assert!(e.contains("may not approve rule `ddl-review`"), "{e}");
    // Longer than grant_ttl.
    let mut c = approval("bob", SQL);
    c.expires = NOW + 1801;
    let e = verify(&signed(&c, 1), &p).unwrap_err().to_string();
    assert!(e.contains("longer than rule"), "{e}");
    // Not a review rule / unknown rule / another target.
    for (rule, target) in [("reads", "db"), ("nope", "db"), ("ddl-review", "db2")] {
        let mut c = approval("bob", SQL);
        c.rule = Some(rule.into());
        c.target = Some(target.into());
        let e = verify(&signed(&c, 1), &p).unwrap_err().to_string();
        assert!(e.contains("not a review rule"), "{e}");
    }
    // A request id that does not belong to the command.
    let mut c = approval("bob", SQL);
    c.request = Some("rq-0000000000000000".into());
    let e = verify(&signed(&c, 1), &p).unwrap_err().to_string();
    assert!(e.contains("make request"), "{e}");
    // Empty window.
    let mut c = approval("bob", SQL);
    c.expires = c.not_before;
    assert!(verify(&signed(&c, 1), &p).is_err());
    // Missing fields.
    let mut c = approval("bob", SQL);
    c.fingerprint = None;
    assert!(matches!(
        verify(&signed(&c, 1), &p),
        Err(GrantError::Malformed(_))
    ));
}

#[test]
fn elevations_need_a_rule_an_eligible_role_and_a_live_window() {
    let p = policy();
    let g = verify(&signed(&elevation("sam", 3600), 1), &p).unwrap();
    assert_eq!(g.eligible, vec!["sre".to_string()]);
    let set = GrantSet::from_grants(vec![g]);
    let sam = token("sam", "sso");
    let sre = vec!["sre".to_string()];
    assert_eq!(set.elevations(&sam, &sre, NOW).len(), 1);
    assert!(set.elevations(&sam, &sre, NOW + 3600).is_empty());
    assert!(set.elevations(&sam, &["dev".to_string()], NOW).is_empty());
    assert!(set.elevations(&token("eve", "sso"), &sre, NOW).is_empty());
    // Too long, wrong approver group, unknown role, no reason.
    let e = verify(&signed(&elevation("sam", 3601), 1), &p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 3600 s"), "{e}");
    let mut c = elevation("sam", 60);
    c.approver = "ivan".into();
    assert!(verify(&signed(&c, 2), &p).is_err());
    let mut c = elevation("sam", 60);
    c.role = Some("admin".into());
    let e = verify(&signed(&c, 1), &p).unwrap_err().to_string();
    assert!(e.contains("no elevation rule"), "{e}");
    let mut c = elevation("sam", 60);
    c.reason = Some("  ".into());
    assert!(verify(&signed(&c, 1), &p).is_err());
}

#[test]
fn load_keeps_good_grants_and_reports_bad_ones() {
    let mut p = policy();
    p.grants = vec![
        signed(&approval("bob", SQL), 1),
        signed(&approval("bob", SQL), 7),
        "junk".into(),
        signed(&elevation("sam", 60), 1),
    ];
    let (set, bad) = GrantSet::load(&p);
    assert_eq!(set.grants().len(), 2);
    assert_eq!(bad.len(), 2);
    assert_eq!(bad[0].id.as_deref(), Some("g-1"));
    assert_eq!(bad[1].id, None);
}

#[test]
fn fingerprints_are_exact_but_canonical() {
    let a = Fingerprint::Sql("ALTER TABLE t ADD c int;").hex();
    assert_eq!(a, Fingerprint::Sql("  ALTER TABLE t ADD c int ; \n").hex());
    assert_ne!(a, Fingerprint::Sql("alter table t add c int").hex());
    assert_ne!(a, Fingerprint::Sql("ALTER TABLE t ADD c bigint").hex());
    let x = json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
    let y: Value = serde_json::from_str(r#"{"a":{"x":"s","y":[1,2]},"b":1}"#).unwrap();
    let tool = |v| Fingerprint::Tool {
        name: "deploy",
        arguments: v,
    };
    assert_eq!(tool(&x).hex(), tool(&y).hex());
    assert_ne!(tool(&x).hex(), tool(&json!({"b": 2})).hex());
    let mut s = String::new();
    canonical_json(&x, &mut s);
    assert_eq!(s, r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
    // Kinds never collide.
    assert_ne!(
        Fingerprint::Mcp {
            method: "a",
            subject: "b"
        }
        .hex(),
        Fingerprint::Http {
            method: "a",
            path: "b"
        }
        .hex()
    );
    let r = request_id("sso", "bob", "db", "ddl", &a);
    assert!(r.starts_with("rq-") && r.len() == 19, "{r}");
    assert_ne!(r, request_id("sso", "bob", "db", "ddl2", &a));
}
