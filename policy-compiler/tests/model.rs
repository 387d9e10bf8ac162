//! The compiled model: what each piece of the language becomes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use pinhole_filter::policy::eval::{evaluate, Request};
use pinhole_filter::policy::{
    Alg, ArgTest, ClaimMatch, Effect, KeyMaterial, Matcher, PathSeg, Protocol,
};
use serde_json::json;

const SRC: &str = r#"
version: 1
name: acme-tools
identity:
  issuers:
    - name: corp-sso
      issuer: https://sso.acme.example
      audiences: pinhole
      jwks: both.json
      groups_claim: realm_access.roles
      max_token_lifetime: 1h
    - name: github
      issuer: https://token.actions.githubusercontent.com
      audiences: [pinhole, api]
      algorithms: ES256
      jwks: ec.json
      leeway: 5s
  revoked:
    subjects: [contractor-7@acme.example, "github:repo:acme/old:ref:refs/heads/main"]
    token_ids: jti-1
roles:
  analyst: { issuer: corp-sso, groups: analysts }
  ci-deployer: { issuer: github, claims: { repository: acme/api, ref: ["refs/heads/main", "refs/tags/v*"], run_attempt: 1, "job.public": true } }
  bot: { subject: "svc-*@acme.example" }
targets:
  tools: { protocol: mcp }
  api: { protocol: http, forward_token: true }
  orders-db: { protocol: postgres, backend_user: app }
rules:
  - id: deployer-staging-only
    reason: production deploys go through the release train
    allow:
      roles: ci-deployer
      target: tools
      mcp:
        tools: deploy
        arguments:
          environment: [staging]
          dry_run: true
          replicas: { min: 1, max: 5 }
          spec.containers[0].image: { glob: "registry.acme.example/**" }
          region: { one_of: [eu-west-1, eu-central-1] }
          labels: { equals: { team: infra, app: api } }
          ratio: { max: 0.5 }
        resources: ["docs://public/**"]
        prompts: [summarize]
        methods: ["completion/complete"]
  - id: api-read
    allow: { roles: [analyst, bot], target: api, http: { methods: [get, HEAD], paths: ["/v1/**"] } }
  - id: no-secrets
    deny: { target: tools, mcp: { tools: ["*secret*"] } }
  - id: db-all
    review: { target: orders-db, approvers: [leads], grant_ttl: 10m }
approvers:
  leads:
    - { name: dana, ed25519: "ZPTR0phQgHtSM+UQGyRS7BbirtdfsGcDpnWWV7fwfl4=" }
"#;

#[test]
fn every_construct_maps_to_the_model() {
    let c = common::compile_str(SRC);
    assert_eq!(common::render(&c), Vec::<String>::new());
    let p = c.policy.unwrap();
    assert_eq!(p.name.as_deref(), Some("acme-tools"));

    let sso = &p.issuers[0];
    assert_eq!(sso.name, "corp-sso");
    assert_eq!(sso.audiences, ["pinhole"]);
    assert_eq!(sso.algorithms, [Alg::RS256, Alg::ES256, Alg::EdDSA]);
    assert_eq!(sso.groups_claim, "realm_access.roles");
    assert_eq!(sso.max_token_lifetime_secs, Some(3600));
    assert_eq!(sso.leeway_secs, 30);
    assert_eq!(sso.keys.len(), 2);
    assert!(matches!(sso.keys[0].key, KeyMaterial::Rsa { .. }));
    assert!(matches!(sso.keys[1].key, KeyMaterial::Ed25519 { .. }));
    let gh = &p.issuers[1];
    assert_eq!(gh.algorithms, [Alg::ES256]);
    assert_eq!(gh.groups_claim, "groups");
    assert_eq!(gh.max_token_lifetime_secs, None);
    assert_eq!(gh.leeway_secs, 5);
    assert_eq!(gh.keys[0].kid.as_deref(), Some("github-es256-2026"));

    assert_eq!(
        p.revoked.subjects,
        [
            "contractor-7@acme.example",
            "github:repo:acme/old:ref:refs/heads/main"
        ]
    );
    assert_eq!(p.revoked.token_ids, ["jti-1"]);

    let dep = &p.roles[1];
    assert_eq!(dep.issuer.as_deref(), Some("github"));
    assert_eq!(
        dep.claims,
        [
            ClaimMatch {
                claim: "repository".into(),
                patterns: vec!["acme/api".into()]
            },
            ClaimMatch {
                claim: "ref".into(),
                patterns: vec!["refs/heads/main".into(), "refs/tags/v*".into()]
            },
            ClaimMatch {
                claim: "run_attempt".into(),
                patterns: vec!["1".into()]
            },
            ClaimMatch {
                claim: "job.public".into(),
                patterns: vec!["true".into()]
            },
        ]
    );
    assert_eq!(p.roles[0].groups, ["analysts"]);
    assert_eq!(p.roles[2].subjects, ["svc-*@acme.example"]);
    assert_eq!(p.roles[2].issuer, None);

    assert_eq!(p.targets[1].protocol, Protocol::Http);
    assert!(p.targets[1].forward_token);
    assert!(!p.targets[0].forward_token);
    assert_eq!(p.targets[2].protocol, Protocol::Postgres);

    let r = &p.rules[0];
    assert_eq!(r.effect, Effect::Allow);
    assert_eq!(r.roles, ["ci-deployer"]);
    assert_eq!(
        r.reason.as_deref(),
        Some("production deploys go through the release train")
    );
    let Matcher::Mcp(m) = &r.matcher else {
        panic!("{:?}", r.matcher)
    };
    assert_eq!(m.tools, ["deploy"]);
    assert_eq!(m.resources, ["docs://public/**"]);
    assert_eq!(m.prompts, ["summarize"]);
    assert_eq!(m.methods, ["completion/complete"]);
    let tests: Vec<(&str, &ArgTest)> = m
        .arguments
        .iter()
        .map(|a| (a.path_text.as_str(), &a.test))
        .collect();
    assert_eq!(
        tests,
        [
            ("environment", &ArgTest::OneOf(vec![json!("staging")])),
            ("dry_run", &ArgTest::Equals(json!(true))),
            (
                "replicas",
                &ArgTest::Range {
                    min: Some(1.0),
                    max: Some(5.0)
                }
            ),
            (
                "spec.containers[0].image",
                &ArgTest::Glob(vec!["registry.acme.example/**".into()])
            ),
            (
                "region",
                &ArgTest::OneOf(vec![json!("eu-west-1"), json!("eu-central-1")])
            ),
            (
                "labels",
                &ArgTest::Equals(json!({"app": "api", "team": "infra"}))
            ),
            (
                "ratio",
                &ArgTest::Range {
                    min: None,
                    max: Some(0.5)
                }
            ),
        ]
    );
    assert_eq!(
        m.arguments[3].path,
        [
            PathSeg::Key("spec".into()),
            PathSeg::Key("containers".into()),
            PathSeg::Index(0),
            PathSeg::Key("image".into())
        ]
    );

    let Matcher::Http(h) = &p.rules[1].matcher else {
        panic!()
    };
    assert_eq!(h.methods, ["GET", "HEAD"]);
    assert_eq!(h.paths, ["/v1/**"]);
    assert_eq!(p.rules[1].roles, ["analyst", "bot"]);

    assert_eq!(p.rules[2].effect, Effect::Deny);
    assert!(
        p.rules[2].roles.is_empty(),
        "omitted roles = any authenticated identity"
    );
    assert_eq!(p.rules[3].effect, Effect::Review);
    assert_eq!(p.rules[3].matcher, Matcher::Any);
}

#[test]
fn the_compiled_policy_decides_with_the_filter_evaluator() {
    let p = common::compile_str(SRC).policy.unwrap();
    let roles = vec!["ci-deployer".to_string()];
    let ok_args = json!({
        "environment": "staging", "dry_run": true, "replicas": 3,
        "spec": {"containers": [{"image": "registry.acme.example/api:1"}]},
        "region": "eu-west-1", "labels": {"team": "infra", "app": "api"}, "ratio": 0.25
    });
    let d = evaluate(
        &p,
        &roles,
        "tools",
        &Request::ToolCall {
            name: "deploy",
            arguments: &ok_args,
        },
    );
    assert!(d.allowed(), "{d:?}");
    let mut prod = ok_args.clone();
    prod["environment"] = json!("production");
    let d = evaluate(
        &p,
        &roles,
        "tools",
        &Request::ToolCall {
            name: "deploy",
            arguments: &prod,
        },
    );
    assert!(!d.allowed(), "{d:?}");
    let d = evaluate(
        &p,
        &roles,
        "tools",
        &Request::ToolCall {
            name: "get_secret_key",
            arguments: &json!({}),
        },
    );
    assert_eq!(d.rule.as_deref(), Some("no-secrets"));
    let d = evaluate(
        &p,
        &["analyst".into()],
        "api",
        &Request::Http {
            method: "GET",
            path: "/v1/x/y",
        },
    );
    assert!(d.allowed(), "{d:?}");
    let d = evaluate(
        &p,
        &["analyst".into()],
        "api",
        &Request::Http {
            method: "POST",
            path: "/v1/x",
        },
    );
    assert!(!d.allowed(), "{d:?}");
}

#[test]
fn source_digest_frames_each_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let ec = std::fs::read(common::example_keys().join("github.jwks.json")).unwrap();
    let rsa = std::fs::read(common::example_keys().join("corp-sso.jwks.json")).unwrap();
    std::fs::write(dir.path().join("keys/a.json"), &rsa).unwrap();
    std::fs::write(dir.path().join("keys/b.json"), &ec).unwrap();
    let src = "version: 1\nidentity:\n  issuers:\n    - { name: a, issuer: https://a.example, audiences: [x], jwks: keys/a.json }\n    - { name: b, issuer: https://b.example, audiences: [x], jwks: keys/b.json }\ntargets: { t: { protocol: mcp } }\nrules: [{ id: r, allow: { target: t } }]\n";
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, src).unwrap();
    let l = policy_compiler::load(&path).unwrap();
    assert!(l.compiled.policy.is_some(), "{:?}", l.rendered());
    // The documented construction (docs/policy.md): SHA-256 over
    // len64be(source) || source || len64be(jwks_1) || jwks_1 || ...
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [src.as_bytes(), &rsa, &ec] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let want: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(l.source_sha256(), want);
    let names: Vec<_> = l.compiled.jwks.iter().map(|j| j.issuer.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}
