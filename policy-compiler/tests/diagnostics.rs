//! Every class of policy error, with its exact position.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{compile_str, compile_with, diags, errors, with_head, MemFs, BODY};

#[test]
fn the_head_and_body_fixtures_are_valid() {
    let c = compile_str(&with_head(BODY));
    assert_eq!(common::render(&c), Vec::<String>::new());
    assert!(c.policy.is_some());
}

#[test]
fn yaml_syntax_error_has_position() {
    let e = errors("version: 1\nidentity:\n  issuers: [a, b\ntargets: {}\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("4:8: YAML syntax error: "), "{e:?}");
    let e = errors("version: 1\n  bad: indent\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("2:6: YAML syntax error"), "{e:?}");
}

#[test]
fn empty_and_non_mapping_documents() {
    assert_eq!(
        errors(""),
        ["1:1: the policy file is empty (it needs at least `version: 1`)"]
    );
    assert_eq!(
        errors("# only a comment\n"),
        ["1:1: the policy file is empty (it needs at least `version: 1`)"]
    );
    assert_eq!(
        errors("- a\n- b\n"),
        ["1:1: expected a mapping for the policy, found a list"]
    );
    let e = errors("version: 1\n---\nversion: 1\n");
    assert_eq!(
        e,
        ["2:1: a policy file holds exactly one YAML document; found a second one"]
    );
}

#[test]
fn invalid_utf8_is_reported_at_its_position() {
    let c = policy_compiler::compile(
        b"version: 1\nname: \xff\n",
        std::path::Path::new("/p"),
        &MemFs::new(),
    );
    assert_eq!(
        common::render(&c),
        ["2:7: error: the policy file is not valid UTF-8"]
    );
}

#[test]
fn unknown_keys_everywhere_with_suggestions() {
    let src = with_head(
        "\
roles:
  analyst: { issuer: corp-sso, grups: [analysts] }
targets:
  tools: { protocol: mcp, forward_tokn: true }
rules:
  - id: a
    allow:
      roles: [analyst]
      target: tools
      mcp: { tols: [search], tools: [x], arguments: { n: { mni: 1 } } }
    reasn: x
  - { id: b, allow: { target: tools, http: { methds: [GET] } } }
  - { id: c, alow: { target: tools } }
  - { id: d, allow: { target: tools, colour: blue } }
versoin: 2
",
    );
    let e = errors(&src);
    assert_eq!(
        e,
        [
            "11:32: unknown key `grups` in role `analyst`; did you mean `groups`?",
            "13:27: unknown key `forward_tokn` in target `tools`; did you mean `forward_token`?",
            "19:14: unknown key `tols` in the `mcp` matcher; did you mean `tools`?",
            "19:60: unknown key `mni` in the constraint on argument `n`; did you mean `min`?",
            "20:5: unknown key `reasn` in a rule; did you mean `reason`?",
            "21:38: `http` applies only to http targets; target `tools` is mcp",
            "22:14: unknown key `alow` in a rule; did you mean `allow`?",
            "23:38: unknown key `colour` in the `allow` of rule `d` (expected one of: roles, target, mcp, http, sql, approvers, grant_ttl)",
            "24:1: unknown key `versoin` in the policy; did you mean `version`?",
        ]
    );
}

#[test]
fn missing_required_fields() {
    let src = "\
name: x
identity:
  issuers:
    - { issuer: https://a.example, audiences: [a], jwks: rsa.json }
    - { name: b, jwks: rsa.json }
roles:
  r: { issuer: b }
targets:
  t: {}
rules:
  - { allow: { target: t } }
  - { id: x, deny: { roles: [r] } }
  - { id: y }
";
    assert_eq!(
        errors(src),
        [
            "1:1: the policy is missing the required key `version` (write `version: 1` first)",
            "4:7: the issuer is missing the required key `name`",
            "5:7: the issuer is missing the required key `issuer`",
            "5:7: the issuer is missing the required key `audiences`",
            "9:6: target `t` is missing the required key `protocol`",
            "11:5: the rule is missing the required key `id`",
            "12:20: the `deny` of rule `x` is missing the required key `target`",
            "13:5: rule `y` needs exactly one of `allow`, `deny` or `review`",
        ]
    );
    let e = errors("version: 1\n");
    assert_eq!(
        e,
        [
            "1:1: the policy is missing the required key `identity`",
            "1:1: the policy is missing the required key `targets`",
        ]
    );
}

#[test]
fn wrong_types() {
    let src = "\
version: '1'
name: [x]
identity:
  issuers:
    - name: a
      issuer: https://a.example
      audiences: { a: 1 }
      jwks: rsa.json
      leeway: true
roles: [analyst]
targets:
  t: { protocol: http, forward_token: 'yes' }
rules: { id: x }
";
    assert_eq!(
        errors(src),
        [
            "1:10: expected the integer 1 for `version`, found a string",
            "2:7: expected a string for the policy `name`, found a list",
            "7:18: expected a string or a list of strings for `audiences`, found a mapping",
            "9:15: expected a duration for `leeway` (e.g. `30s`, `1h`), found a boolean (in `leeway`)",
            "10:8: expected a mapping of role names to role definitions for `roles`, found a list",
            "12:39: expected `true` or `false` for `forward_token`, found a string",
            "13:8: expected a list of rules for `rules`, found a mapping",
        ]
    );
}

#[test]
fn unsupported_version() {
    assert_eq!(
        errors(&with_head(BODY).replacen("version: 1", "version: 2", 1)),
        ["1:10: unsupported policy language version 2; this pinhole understands version 1"]
    );
}

#[test]
fn unknown_references_with_suggestions() {
    let src = with_head(
        "\
roles:
  analyst: { issuer: corp-ssoo, groups: [analysts] }
  lead: { issuer: okta }
targets:
  tools: { protocol: mcp }
rules:
  - { id: a, allow: { roles: [analist, lead], target: tool, mcp: { tools: [x] } } }
  - { id: b, allow: { roles: nobody, target: elsewhere } }
",
    );
    assert_eq!(
        errors(&src),
        [
            "11:22: unknown issuer `corp-ssoo`; did you mean `corp-sso`?",
            "12:19: unknown issuer `okta`",
            "16:31: unknown role `analist`; did you mean `analyst`?",
            "16:55: unknown target `tool`; did you mean `tools`?",
            "17:30: unknown role `nobody`",
            "17:46: unknown target `elsewhere`",
        ]
    );
}

#[test]
fn roles_referenced_without_any_roles_defined() {
    let src = with_head(
        "targets: { t: { protocol: mcp } }\nrules:\n  - { id: a, allow: { roles: [x], target: t } }\n",
    );
    assert_eq!(
        errors(&src),
        ["12:31: unknown role `x` (the policy defines no `roles`)"]
    );
}

#[test]
fn duplicate_rule_ids() {
    let src = with_head(&format!(
        "{BODY}  - {{ id: a, deny: {{ target: tools }} }}\n  - {{ id: b, deny: {{ target: api }} }}\n"
    ));
    assert_eq!(
        errors(&src),
        [
            "19:11: duplicate rule id `a` (first used at 17:11)",
            "20:11: duplicate rule id `b` (first used at 18:11)",
        ]
    );
}

#[test]
fn duplicate_names_and_yaml_keys() {
    let src = "\
version: 1
identity:
  issuers:
    - { name: sso, issuer: https://a.example, audiences: [a], jwks: rsa.json }
    - { name: sso, issuer: https://b.example, audiences: [a], jwks: rsa.json }
    - { name: other, issuer: https://a.example, audiences: [a], jwks: rsa.json }
roles:
  r: { issuer: sso }
  r: { issuer: other }
targets:
  t: { protocol: mcp }
  t: { protocol: http }
rules:
  - { id: x, allow: { roles: [r], target: t, target: t } }
";
    assert_eq!(
        errors(src),
        [
            "5:15: duplicate issuer name `sso` (first defined at 4:15)",
            "6:30: issuer URL `https://a.example` is already used by issuer `sso`; a token's `iss` must identify exactly one issuer",
            "9:3: duplicate key `r` (first defined at 8:3); YAML would silently keep only the last one",
            "12:3: duplicate key `t` (first defined at 11:3); YAML would silently keep only the last one",
            "14:46: duplicate key `target` (first defined at 14:35); YAML would silently keep only the last one",
        ]
    );
}

#[test]
fn jwks_unreadable_or_invalid() {
    let fs = MemFs::new()
        .with("broken.json", "{\"keys\": [")
        .with("sym.json", r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#);
    let src = "\
version: 1
identity:
  issuers:
    - { name: a, issuer: https://a.example, audiences: [x], jwks: missing.json }
    - { name: b, issuer: https://b.example, audiences: [x], jwks: broken.json }
    - { name: c, issuer: https://c.example, audiences: [x], jwks: sym.json }
    - { name: d, issuer: https://d.example, audiences: [x], jwks: rsa.json, algorithms: [ES256] }
targets: { t: { protocol: mcp } }
rules: [{ id: r, allow: { target: t } }]
";
    let c = compile_with(src, &fs);
    let e: Vec<String> = common::render(&c);
    assert_eq!(e.len(), 5, "{e:#?}");
    assert_eq!(
        e[0],
        "4:67: error: cannot read JWKS file `missing.json` (/p/missing.json): No such file (memfs)"
    );
    assert!(
        e[1].starts_with(
            "5:67: error: invalid JWKS file `broken.json`: the JWKS is not valid JSON"
        ),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("6:67: error: invalid JWKS file `sym.json`: "),
        "{}",
        e[2]
    );
    assert!(e[3].starts_with("7:67: warning: JWKS key #0"), "{}", e[3]);
    assert_eq!(
        e[4],
        "7:67: error: no key in JWKS file `rsa.json` can verify ES256: the issuer could never accept a token"
    );
    assert!(c.policy.is_none());
}

#[test]
fn jwks_os_error_from_the_real_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        "version: 1\nidentity:\n  issuers:\n    - name: a\n      issuer: https://a.example\n      audiences: [x]\n      jwks: keys/nope.jwks.json\ntargets: { t: { protocol: mcp } }\nrules: [{ id: r, allow: { target: t } }]\n",
    )
    .unwrap();
    let l = policy_compiler::load(&path).unwrap();
    let r = l.rendered();
    assert_eq!(r.len(), 1, "{r:?}");
    let want_prefix = format!(
        "{}:7:13: error: cannot read JWKS file `keys/nope.jwks.json` ({}): No such file or directory (os error 2)",
        path.display(),
        dir.path().join("keys/nope.jwks.json").display()
    );
    assert_eq!(r[0], want_prefix);
}

#[test]
fn empty_audiences_and_lists_that_would_widen_access() {
    let src = "\
version: 1
identity:
  issuers:
    - { name: a, issuer: https://a.example, audiences: [], jwks: rsa.json, algorithms: [] }
roles:
  r: { subjects: [], groups: [] }
targets: { t: { protocol: http } }
rules:
  - { id: x, allow: { roles: [], target: t, http: { methods: [], paths: [] } } }
";
    assert_eq!(
        errors(src),
        [
            "4:56: `audiences` cannot be an empty list: a token must be meant for at least one accepted audience",
            "4:88: `algorithms` cannot be an empty list: no token could be verified; omit `algorithms` to accept RS256, ES256 and EdDSA",
            "6:18: `subjects` cannot be an empty list: an empty list would not restrict subjects at all; omit the key instead",
            "6:30: `groups` cannot be an empty list: an empty list would not restrict groups at all; omit the key instead",
            "9:30: `roles` cannot be an empty list: an empty list would apply the rule to every identity; omit `roles` to mean that",
            "9:62: `http.methods` cannot be an empty list: an empty list would allow every method; omit `methods` to mean that",
            "9:73: `http.paths` cannot be an empty list: an empty list would allow every path; omit `paths` to mean that",
        ]
    );
}

#[test]
fn durations() {
    let src = "\
version: 1
identity:
  issuers:
    - name: a
      issuer: https://a.example
      audiences: [x]
      jwks: rsa.json
      max_token_lifetime: 1h1h
      leeway: 6m
    - { name: b, issuer: https://b.example, audiences: [x], jwks: rsa.json, max_token_lifetime: 0, leeway: -5 }
    - { name: c, issuer: https://c.example, audiences: [x], jwks: rsa.json, max_token_lifetime: 2 hours }
    - { name: d, issuer: https://d.example, audiences: [x], jwks: rsa.json, max_token_lifetime: 1d2h30m, leeway: 300 }
targets: { t: { protocol: mcp } }
rules: [{ id: r, allow: { target: t } }]
";
    assert_eq!(
        errors(src),
        [
            "8:27: invalid duration `1h1h`: units must appear once each, largest first (d, h, m, s) (in `max_token_lifetime`)",
            "9:15: `leeway` of 6m is over the maximum of 5m: clock skew that large hides expired tokens",
            "10:97: `max_token_lifetime` must be greater than zero",
            "10:108: invalid duration `-5`: must not be negative (in `leeway`)",
            "11:97: invalid duration `2 hours`: unexpected ` `; write e.g. `90s`, `15m`, `1h30m`, `1d` or a number of seconds (in `max_token_lifetime`)",
        ]
    );
}

#[test]
fn durations_compile_to_seconds() {
    let src = "\
version: 1
identity:
  issuers:
    - { name: d, issuer: https://d.example, audiences: [x], jwks: rsa.json, max_token_lifetime: 1d2h30m, leeway: 300 }
    - { name: e, issuer: https://e.example, audiences: [x], jwks: rsa.json, max_token_lifetime: 90 }
targets: { t: { protocol: mcp } }
rules: [{ id: r, allow: { target: t } }]
";
    let p = compile_str(src).policy.unwrap();
    assert_eq!(p.issuers[0].max_token_lifetime_secs, Some(95_400));
    assert_eq!(p.issuers[0].leeway_secs, 300);
    assert_eq!(p.issuers[1].max_token_lifetime_secs, Some(90));
    assert_eq!(p.issuers[1].leeway_secs, 30);
}

#[test]
fn argument_constraints_errors() {
    let src = with_head(
        "\
targets: { tools: { protocol: mcp } }
rules:
  - id: a
    allow:
      target: tools
      mcp:
        tools: [deploy]
        arguments:
          a..b: 1
          'x[': 1
          n: { min: 5, max: 1 }
          e: { glob: 'eu-*', equals: x }
          z:
          l: []
          f: .nan
          o: { one_of: [] }
          g: { glob: [] }
          q: {}
          m: { min: low }
",
    );
    assert_eq!(
        errors(&src),
        [
            "18:11: invalid argument path `a..b`: expected a key, found `.` at character 3",
            "19:11: invalid argument path `x[`: expected an index or a quoted key after `[` at character 3",
            "20:21: `min` (5) is greater than `max` (1): no value could match",
            "21:14: the constraint on argument `e` mixes `equals` and `glob`; use exactly one of `equals`, `one_of`, `glob`, or `min`/`max` (write another rule for a second condition)",
            "22:11: argument `z` has no constraint; write a value, a list of values, or `{ equals: null }` to require null",
            "23:14: the list of values for argument `l` is empty: no value could match",
            "24:14: `.nan` is not a finite number; JSON cannot carry it",
            "25:24: `one_of` cannot be empty: no value could match",
            "26:22: `glob` cannot be an empty list: no value could match",
            "27:14: the constraint on argument `q` is empty; use one of `equals`, `one_of`, `glob`, or `min`/`max`",
            "28:21: expected a finite number for `min`, found a string",
        ]
    );
}

#[test]
fn invalid_globs() {
    let src = with_head(
        "\
roles:
  bot: { subjects: ['svc-\\'] }
targets: { tools: { protocol: mcp }, api: { protocol: http } }
rules:
  - { id: a, allow: { roles: [bot], target: tools, mcp: { tools: [''], prompts: ['a\\\\'] } } }
  - { id: b, allow: { target: api, http: { paths: ['v1/*'] } } }
",
    );
    assert_eq!(
        errors(&src),
        [
            "11:21: invalid subject pattern `svc-\\`: it ends with a lone `\\` (escape it as `\\\\`)",
            "14:67: invalid tool name pattern ``: an empty pattern matches only the empty string",
            "15:52: HTTP path pattern `v1/*` must start with `/` (request paths always do)",
        ]
    );
}

#[test]
fn protocol_specific_matchers_and_sql() {
    let src = with_head(
        "\
targets:
  tools: { protocol: mcp }
  api: { protocol: http }
  db: { protocol: postgres, backend_user: app }
rules:
  - { id: a, allow: { target: api, mcp: { tools: [x] } } }
  - { id: b, allow: { target: tools, http: { paths: [/x] } } }
  - { id: c, allow: { target: db, sql: { statements: [select] } } }
  - { id: d, deny: { target: db, mcp: { tools: [x] } } }
  - { id: e, allow: { target: db } }
",
    );
    assert_eq!(
        errors(&src),
        [
            "15:36: `mcp` applies only to mcp targets; target `api` is http",
            "16:38: `http` applies only to http targets; target `tools` is mcp",
            "18:34: `mcp` applies only to mcp targets; target `db` is postgres",
        ]
    );
}

#[test]
fn sql_matchers() {
    let src = with_head(
        "\
roles: { analyst: { groups: [a] } }
targets:
  tools: { protocol: mcp }
  db: { protocol: postgres, backend_user: app }
rules:
  - { id: a, allow: { roles: [analyst], target: db, sql: { statements: [selct, drop tabel, 'copy to'] } } }
  - { id: b, allow: { roles: [analyst], target: db, sql: { tables: [orders, public.*], statments: [select] } } }
  - { id: c, allow: { roles: [analyst], target: tools, sql: { statements: [select] } } }
  - { id: d, allow: { roles: [analyst], target: tools, mcp: { tools: [query], sql: { statements: [select] } } } }
  - { id: e, allow: { roles: [analyst], target: tools, mcp: { sql_argument: sql, resources: [x] } } }
  - { id: f, deny: { target: db, sql: { statements: [select], without_where: true } } }
  - { id: g, deny: { target: tools, mcp: { tools: [query], sql_argument: 'a..b' } } }
  - { id: h, deny: { target: db, sql: { statements: [], functions: [pg_read_file] } } }
",
    );
    assert_eq!(
        errors(&src),
        [
            "15:73: unknown statement kind `selct`; did you mean `select`?",
            "15:80: unknown object type `tabel` in `drop tabel`; did you mean `table`?",
            "16:69: table pattern `orders` must be schema-qualified: unqualified names in SQL resolve to schema `public`, so write `public.orders`",
            "16:88: unknown key `statments` in the `sql` matcher; did you mean `statements`?",
            "17:56: `sql` applies only to postgres targets; target `tools` is mcp (for a tool's SQL argument write `mcp: { tools: [...], sql_argument: <path>, sql: {...} }`)",
            "18:79: `sql` inside `mcp` needs `sql_argument`: the path of the tool argument holding the SQL (e.g. `sql_argument: sql`)",
            "19:63: `sql_argument` names an argument of `tools/call`: list the tools it applies to in `tools`",
            "20:63: `without_where` restricts the rule to UPDATE/DELETE without WHERE, but `statements` lists no statement that can contain one: the rule matches nothing",
            "21:74: invalid argument path `a..b`: expected a key, found `.` at character 3",
            "22:53: `sql.statements` cannot be an empty list: omit `statements` to match every statement kind",
        ]
    );
}

#[test]
fn algorithms_and_protocols_and_effects_suggestions() {
    let src = "\
version: 1
identity:
  issuers:
    - { name: a, issuer: https://a.example, audiences: [x], jwks: rsa.json, algorithms: [rs256, HS256, none, PS256] }
targets: { t: { protocol: htp }, u: { protocol: grpc } }
rules:
  - { id: r, revew: { target: t } }
  - { id: s, allow: { target: t }, deny: { target: t } }
";
    assert_eq!(
        errors(src),
        [
            "4:90: unsupported algorithm `rs256`; did you mean `RS256`?",
            "4:97: algorithm `HS256` uses a shared secret; Pinhole verifies only public-key signatures (RS256, ES256, EdDSA)",
            "4:104: algorithm `none` (unsigned tokens) is never accepted",
            "4:110: unsupported algorithm `PS256`; did you mean `RS256`?",
            "5:27: unknown protocol `htp`; did you mean `http`?",
            "5:49: unknown protocol `grpc` (expected mcp, http or postgres)",
            "7:14: unknown key `revew` in a rule; did you mean `review`?",
            "8:36: rule `s` has both `allow` and `deny`; a rule has exactly one effect (split it into two rules)",
        ]
    );
}

#[test]
fn review_rules_are_accepted() {
    let src = with_head(&format!(
        "{BODY}  - {{ id: r, review: {{ roles: [analyst], target: tools, mcp: {{ tools: [drop_*] }} }} }}\n"
    ));
    let c = compile_str(&src);
    let rendered = common::render(&c);
    assert_eq!(rendered.len(), 1, "{rendered:?}");
    assert!(
        rendered[0]
            .contains("review rule `r` has no `approvers`: its commands can never be approved"),
        "{rendered:?}"
    );
    let p = c.policy.unwrap();
    assert_eq!(
        p.rules.last().unwrap().effect,
        pinhole_filter::policy::Effect::Review
    );
}

const DANA: &str = "ZPTR0phQgHtSM+UQGyRS7BbirtdfsGcDpnWWV7fwfl4=";

#[test]
fn approvals_and_elevation_compile() {
    let src = with_head(&format!(
        "\
roles:
  analyst: {{ groups: [a] }}
  lead: {{ groups: [l] }}
targets:
  db: {{ protocol: postgres, backend_user: app }}
rules:
  - {{ id: r, review: {{ roles: [analyst], target: db, approvers: [leads], grant_ttl: 20m }} }}
approvers:
  leads:
    - {{ name: dana, ed25519: \"{DANA}\", subject: dana@x }}
  ops:
    - {{ name: dana, ed25519: \"{DANA}\" }}
elevation:
  - {{ role: analyst, eligible: [lead], max: 1h, approvers: [ops] }}
"
    ));
    let c = compile_str(&src);
    assert_eq!(common::render(&c), Vec::<String>::new());
    let p = c.policy.unwrap();
    assert_eq!(p.approvers.len(), 1);
    assert_eq!(p.approvers[0].groups, ["leads", "ops"]);
    assert_eq!(p.reviews[0].grant_ttl_secs, 1200);
    assert_eq!(p.reviews[0].approvers, ["leads"]);
    assert_eq!(p.elevation[0].max_secs, 3600);
}

#[test]
fn approvals_mistakes_are_named() {
    let src = with_head(&format!(
        "\
roles:
  analyst: {{ groups: [a] }}
  dba: {{ groups: [d] }}
targets:
  db: {{ protocol: postgres, backend_user: app }}
rules:
  - {{ id: r, review: {{ target: db, approvers: [lead], grant_ttl: 30d }} }}
  - {{ id: a, allow: {{ target: db, approvers: [leads] }} }}
approvers:
  leads:
    - {{ name: dana, ed25519: \"not-a-key\" }}
    - {{ name: olga, ed25519: \"{DANA}\" }}
    - {{ name: olga, ed25519: \"MCowBQYDK2VwAyEAZPTR0phQgHtSM+UQGyRS7BbirtdfsGcDpnWWV7fwfl4=\" }}
elevation:
  - {{ role: dbas, eligible: [analyst], max: 2h, approvers: [leads] }}
"
    ));
    let e = errors(&src);
    let want = [
        "unknown approver group `lead`; did you mean `leads`?",
        "`grant_ttl` must be between 1s and 7d",
        "`approvers` applies only to `review` rules; rule `a` is `allow`",
        "`ed25519` is not valid base64",
        "unknown role `dbas`; did you mean `dba`?",
    ];
    for w in want {
        assert!(e.iter().any(|l| l.contains(w)), "missing {w:?} in {e:?}");
    }
    // The SPKI form of the same key is the same person: no error for olga.
    assert!(!e.iter().any(|l| l.contains("olga")), "{e:?}");
}

#[test]
fn backend_credentials() {
    let src = with_head(
        "\
targets:
  db: { protocol: postgres, backend_user: app, backend_password_env: DB_PASSWORD }
  db2: { protocol: postgres }
  db3: { protocol: postgres, backend_user: app, backend_password_env: 'hunter2!' }
  api: { protocol: http, backend_user: app }
",
    );
    assert_eq!(
        errors(&src),
        [
            "12:8: target `db2` is missing the required key `backend_user` (the database role the filter logs in as; callers never learn its credentials)",
            "13:71: `backend_password_env` names an environment variable, not a password: `hu…2!` is not a valid variable name (letters, digits and `_`); never put the password itself in the policy",
            "14:26: `backend_user` applies to postgres targets only",
        ]
    );
    let ok = with_head(
        "\
targets:
  db: { protocol: postgres, backend_user: app, backend_password_env: DB_PASSWORD, backend_database: orders }
rules:
  - { id: r, deny: { target: db, sql: { statements: [drop] } } }
",
    );
    let c = compile_str(&ok);
    assert_eq!(common::render(&c), Vec::<String>::new());
    let p = c.policy.unwrap();
    let t = &p.targets[0];
    assert_eq!(t.backend_user.as_deref(), Some("app"));
    assert_eq!(t.backend_password_env.as_deref(), Some("DB_PASSWORD"));
    assert_eq!(t.backend_database.as_deref(), Some("orders"));
}

#[test]
fn many_errors_are_reported_at_once_in_source_order() {
    let src = with_head(
        "\
roles:
  analyst: { issuer: nope }
targets:
  tools: { protocol: mcpp }
rules:
  - { id: a, allow: { roles: [analist], target: tools } }
  - { id: a, allow: { target: tool } }
  - { id: c, allow: { target: tools, mcp: { tools: [x], arguments: { 'a[': 1 } } } }
",
    );
    let e = errors(&src);
    assert_eq!(e.len(), 6, "{e:#?}");
    let positions: Vec<&str> = e.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        positions,
        ["11:22:", "13:22:", "15:31:", "16:11:", "16:31:", "17:70:"]
    );
}

#[test]
fn mcp_matcher_shape() {
    let src = with_head(
        "\
targets: { tools: { protocol: mcp } }
rules:
  - { id: a, allow: { target: tools, mcp: {} } }
  - { id: b, allow: { target: tools, mcp: { arguments: { x: 1 } } } }
  - { id: c, allow: { target: tools, mcp: { methods: [tools/call, resources/read, 'completion/*'] } } }
",
    );
    assert_eq!(
        errors(&src),
        [
            "12:43: this `mcp` matcher matches no operation: give at least one of `tools`, `resources`, `prompts` or `methods` (omit `mcp` to cover every MCP operation on the target)",
            "13:45: `arguments` constrain `tools/call`: list the tools they apply to in `tools`",
            "14:55: `tools/call` is decided by `mcp.tools`, never by `methods`; list the names in `tools` instead",
            "14:67: `resources/read` is decided by `mcp.resources`, never by `methods`; list the names in `resources` instead",
        ]
    );
}

#[test]
fn invalid_names() {
    let src = with_head(
        "\
roles:
  'has space': { issuer: corp-sso }
targets: { -t: { protocol: mcp } }
rules:
  - { id: 'x/y', allow: { target: -t } }
",
    );
    assert_eq!(
        errors(&src),
        [
            "11:3: invalid role name `has space`: use letters, digits, `-`, `_` and `.`, starting with a letter or digit",
            "12:12: invalid target name `-t`: use letters, digits, `-`, `_` and `.`, starting with a letter or digit",
            "14:11: invalid rule id `x/y`: use letters, digits, `-`, `_` and `.`, starting with a letter or digit",
        ]
    );
}

#[test]
fn warnings_do_not_block_and_have_positions() {
    let src = with_head(
        "\
roles:
  analyst: { issuer: corp-sso, groups: ['team-*'] }
  unused: { issuer: github }
  anyone: {}
targets:
  tools: { protocol: mcp }
  idle: { protocol: http }
rules:
  - { id: a, allow: { roles: [analyst, anyone], target: tools, mcp: { tools: [x], methods: [ping] } } }
",
    );
    let c = compile_str(&src);
    assert!(c.policy.is_some());
    assert_eq!(
        common::render(&c),
        [
            "11:41: warning: groups are matched exactly: `team-*` only matches a group with that literal name",
            "12:3: warning: role `unused` is not used by any rule",
            "13:11: warning: role `anyone` has no conditions: every authenticated identity holds it",
            "16:3: warning: no rule names target `idle`: every request to it will be denied",
            "18:93: warning: `ping` is a lifecycle message: it always passes for authenticated callers, so no rule decides it",
        ]
    );
}

#[test]
fn limits_on_size_and_depth() {
    let deep = format!("version: 1\nx: {}{}\n", "[".repeat(200), "]".repeat(200));
    let e = errors(&deep);
    assert_eq!(e, ["2:67: nesting deeper than 64 levels is not supported"]);
    let big = format!("version: 1\nname: '{}'\n", "x".repeat(4 * 1024 * 1024));
    let e = errors(&big);
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("1:1: policy source is "), "{e:?}");
}

#[test]
fn anchors_and_aliases_are_expanded() {
    let src = with_head(
        "\
roles:
  analyst: { issuer: corp-sso, groups: [analysts] }
  lead: { issuer: corp-sso, groups: [leads] }
targets: { tools: { protocol: mcp } }
rules:
  - { id: a, allow: { roles: &readers [analyst, lead], target: tools, mcp: { tools: [read] } } }
  - { id: b, allow: { roles: *readers, target: tools, mcp: { prompts: [p] } } }
",
    );
    let c = compile_str(&src);
    assert_eq!(common::render(&c), Vec::<String>::new());
    let p = c.policy.unwrap();
    assert_eq!(p.rules[1].roles, ["analyst", "lead"]);
}

#[test]
fn diagnostics_render_with_the_file_name() {
    let c = compile_str("version: 1\nfoo: 1\n");
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.message.contains("`foo`"))
        .unwrap();
    assert_eq!(
        d.render("policy.yaml"),
        "policy.yaml:2:1: error: unknown key `foo` in the policy (expected one of: version, name, identity, roles, targets, rules, masking, approvers, elevation)"
    );
    let _ = diags("version: 1\n");
}
