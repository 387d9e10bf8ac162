//! Policy test files (`*.test.yaml`): parsing with positions, running every
//! case through [`crate::scenario`], comparing with the expectation.
//!
//! ```yaml
//! fixtures:                       # optional: named identities
//!   alice: { issuer: corp-sso, claims: { sub: alice@acme.example, groups: [analysts] } }
//! cases:
//!   - name: analysts may search orders
//!     identity: alice              # a fixture, or inline: { issuer: …, claims: {…} }
//!     target: tools
//!     mcp: { tool: search_orders, arguments: { q: late } }
//!     expect: allow                # or { decision: deny, rule: no-secrets, reason: "…" }
//!   - name: a raw claim set, issuer chosen by `iss`
//!     claims: { iss: https://sso.acme.example, sub: bob@acme.example }
//!     target: status-api
//!     http: { method: GET, path: /v1/status }
//!     expect: allow
//! ```
//!
//! The language is documented in docs/policy.md ("Policy tests").

use std::collections::{BTreeMap, HashMap};

use pinhole_filter::mcp::ListKind;
use pinhole_filter::policy::Policy;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::fields::{Checker, Future};
use crate::scenario::{self, IdentitySpec, Outcome, RequestSpec, Scenario, Verdict};
use crate::suggest;
use crate::yaml::{self, Node, Value as Y};

const TOP_KEYS: &[&str] = &["fixtures", "cases"];
const FIXTURE_KEYS: &[&str] = &["issuer", "claims"];
const CASE_KEYS: &[&str] = &[
    "name", "identity", "issuer", "claims", "target", "mcp", "http", "list", "sql", "expect",
];
const MCP_KEYS: &[&str] = &[
    "tool",
    "arguments",
    "resource",
    "prompt",
    "method",
    "params",
];
const HTTP_KEYS: &[&str] = &["method", "path"];
const LIST_KEYS: &[&str] = &["tools", "resources", "resource_templates", "prompts"];
const EXPECT_KEYS: &[&str] = &["decision", "rule", "reason", "visible"];
const EXPECT_FUTURE: Future<'static> = &[(
    "masked",
    "`masked` expectations are not supported yet: policy tests do not simulate responses, so they cannot check masking",
)];

/// What a case expects. Absent fields are not checked.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Expect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Verdict>,
    /// `Some(None)`: the default deny (`rule: null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Option<String>>,
    /// A text the outcome's reason must contain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a `list` case: exactly the items the caller must see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visible: Option<Vec<String>>,
}

/// A case ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub scenario: Scenario,
    pub expect: Expect,
}

/// A case as written: its name and position, and either the case or what
/// is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseEntry {
    pub name: String,
    pub span: Span,
    pub case: Result<Case, Vec<Diagnostic>>,
}

/// A parsed test file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TestFile {
    pub cases: Vec<CaseEntry>,
    /// Problems with the file outside any one case (YAML, `fixtures`).
    pub diagnostics: Vec<Diagnostic>,
}

impl TestFile {
    pub fn find(&self, name: &str) -> Option<&CaseEntry> {
        self.cases.iter().find(|c| c.name == name)
    }
}

/// Parse a test file against the policy it tests (targets, issuers and
/// rule ids are checked).
pub fn parse(source: &[u8], policy: &Policy) -> TestFile {
    let mut diags = Diagnostics::new();
    let root = yaml::decode_utf8(source, &mut diags).and_then(|t| yaml::parse(&t, &mut diags));
    let mut file = TestFile::default();
    if let Some(root) = root {
        let mut p = Parser {
            policy,
            fixtures: BTreeMap::new(),
        };
        p.file(&root, &mut diags, &mut file.cases);
    }
    file.diagnostics = diags.into_sorted();
    file
}

struct Parser<'p> {
    policy: &'p Policy,
    fixtures: BTreeMap<String, IdentitySpec>,
}

impl Parser<'_> {
    fn file(&mut self, root: &Node, diags: &mut Diagnostics, out: &mut Vec<CaseEntry>) {
        let mut ck = Checker { diags };
        let Some(f) = ck.fields(root, "a test file", TOP_KEYS, &[]) else {
            return;
        };
        if let Some(n) = f.node("fixtures") {
            match &n.value {
                Y::Map(entries) => {
                    for e in entries {
                        if let Some(spec) = self.identity_map(&mut ck, &e.value, "a fixture") {
                            self.fixtures.insert(e.key.clone(), spec);
                        }
                    }
                }
                _ => ck.error(
                    n.span,
                    format!(
                        "expected a mapping of fixture names to identities for `fixtures`, found {}",
                        n.kind()
                    ),
                ),
            }
        }
        let Some(cases) = ck.required(&f, "cases", "the test file") else {
            return;
        };
        let Y::Seq(items) = &cases.value else {
            ck.error(
                cases.span,
                format!(
                    "expected a list of cases for `cases`, found {}",
                    cases.kind()
                ),
            );
            return;
        };
        let mut names: HashMap<String, Span> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let mut case_diags = Diagnostics::new();
            let (name, case) = self.case(
                &mut Checker {
                    diags: &mut case_diags,
                },
                item,
            );
            let name = name.unwrap_or_else(|| format!("case #{}", i + 1));
            if let Some(first) = names.get(&name) {
                case_diags.error(
                    item.span,
                    format!("duplicate case name `{name}` (first used at {first})"),
                );
            } else {
                names.insert(name.clone(), item.span);
            }
            let case = match case {
                Some(c) if !case_diags.has_errors() => Ok(c),
                _ => Err(case_diags.into_sorted()),
            };
            out.push(CaseEntry {
                name,
                span: item.span,
                case,
            });
        }
    }

    /// `{ issuer: name, claims: {...} }`.
    fn identity_map(&self, ck: &mut Checker, node: &Node, what: &str) -> Option<IdentitySpec> {
        let f = ck.fields(node, what, FIXTURE_KEYS, &[])?;
        let issuer = match f.node("issuer") {
            None => Some(None),
            Some(n) => self.issuer(ck, n).map(Some),
        };
        let claims = match ck.required(&f, "claims", what) {
            Some(n) => self.claims(ck, n),
            None => None,
        };
        Some(IdentitySpec {
            issuer: issuer?,
            claims: claims?,
        })
    }

    fn issuer(&self, ck: &mut Checker, n: &Node) -> Option<String> {
        let s = ck.nonempty_string(n, "`issuer` (an issuer's policy name)")?;
        if self.policy.issuer(&s.value).is_some() {
            return Some(s.value);
        }
        let hint = suggest::did_you_mean(
            &s.value,
            self.policy.issuers.iter().map(|i| i.name.as_str()),
        );
        ck.error(s.span, format!("unknown issuer `{}`{hint}", s.value));
        None
    }

    fn claims(&self, ck: &mut Checker, n: &Node) -> Option<Map<String, Value>> {
        if !matches!(n.value, Y::Map(_)) {
            ck.error(
                n.span,
                format!(
                    "expected a mapping of claims for `claims`, found {}",
                    n.kind()
                ),
            );
            return None;
        }
        match ck.json(n)? {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    fn case(&self, ck: &mut Checker, node: &Node) -> (Option<String>, Option<Case>) {
        let Some(f) = ck.fields(node, "a case", CASE_KEYS, &[]) else {
            return (None, None);
        };
        let name = ck
            .required(&f, "name", "the case")
            .and_then(|n| ck.nonempty_string(n, "the case `name`"))
            .map(|s| s.value);
        // Identity: a fixture name, an inline identity, or claims (+ issuer).
        let identity = match (f.get("identity"), f.get("claims")) {
            (Some(e), None) => {
                if let Some(i) = f.get("issuer") {
                    ck.error(
                        i.key_span,
                        "`issuer` goes with `claims`, not with `identity` (put it inside the fixture)",
                    );
                    None
                } else {
                    match &e.value.value {
                        Y::Map(_) => self.identity_map(ck, &e.value, "the identity"),
                        _ => ck
                            .nonempty_string(&e.value, "`identity` (a fixture name)")
                            .and_then(|s| match self.fixtures.get(&s.value) {
                                Some(spec) => Some(spec.clone()),
                                None => {
                                    let hint = suggest::did_you_mean(
                                        &s.value,
                                        self.fixtures.keys().map(String::as_str),
                                    );
                                    let hint = if hint.is_empty() && self.fixtures.is_empty() {
                                        " (the file defines no `fixtures`)".to_owned()
                                    } else {
                                        hint
                                    };
                                    ck.error(
                                        s.span,
                                        format!("unknown fixture `{}`{hint}", s.value),
                                    );
                                    None
                                }
                            }),
                    }
                }
            }
            (None, Some(c)) => {
                let issuer = match f.node("issuer") {
                    None => Some(None),
                    Some(n) => self.issuer(ck, n).map(Some),
                };
                let claims = self.claims(ck, &c.value);
                match (issuer, claims) {
                    (Some(issuer), Some(claims)) => Some(IdentitySpec { issuer, claims }),
                    _ => None,
                }
            }
            (Some(_), Some(c)) => {
                ck.error(
                    c.key_span,
                    "give either `identity` (a fixture) or `claims`, not both",
                );
                None
            }
            (None, None) => {
                ck.error(
                    f.span,
                    "the case needs an identity: `identity: <fixture>` or `claims: {...}`",
                );
                None
            }
        };
        let target = ck
            .required(&f, "target", "the case")
            .and_then(|n| ck.nonempty_string(n, "`target`"));
        // The request: exactly one of mcp / http / list / sql.
        let kinds: Vec<_> = ["mcp", "http", "list", "sql"]
            .iter()
            .filter_map(|k| f.get(k))
            .collect();
        let request = match kinds.as_slice() {
            [] => {
                ck.error(
                    f.span,
                    "the case needs a request: one of `mcp`, `http`, `list` or `sql`",
                );
                None
            }
            [one] => match one.key.as_str() {
                "mcp" => self.mcp(ck, &one.value),
                "http" => self.http(ck, &one.value),
                "sql" => ck
                    .nonempty_string(&one.value, "`sql`")
                    .map(|s| RequestSpec::Sql { text: s.value }),
                _ => self.list(ck, &one.value),
            },
            [first, rest @ ..] => {
                for r in rest {
                    ck.error(
                        r.key_span,
                        format!(
                            "a case has one request; `{}` and `{}` are both given (write two cases)",
                            first.key, r.key
                        ),
                    );
                }
                None
            }
        };
        if let (Some(t), Some(r)) = (&target, &request) {
            if let Err(msg) = scenario::check_target(self.policy, &t.value, r) {
                ck.error(t.span, msg);
            }
        }
        let is_list = matches!(request, Some(RequestSpec::List { .. }));
        let expect = match ck.required(&f, "expect", "the case") {
            Some(n) => self.expect(ck, n, is_list),
            None => None,
        };
        let case = match (identity, target, request, expect) {
            (Some(identity), Some(target), Some(request), Some(expect)) => Some(Case {
                scenario: Scenario {
                    identity,
                    target: target.value,
                    request,
                },
                expect,
            }),
            _ => None,
        };
        (name, case)
    }

    fn mcp(&self, ck: &mut Checker, node: &Node) -> Option<RequestSpec> {
        let f = ck.fields(node, "the `mcp` request", MCP_KEYS, &[])?;
        let forms: Vec<_> = ["tool", "resource", "prompt", "method"]
            .iter()
            .filter_map(|k| f.get(k))
            .collect();
        let form = match forms.as_slice() {
            [] => {
                ck.error(
                    f.span,
                    "the `mcp` request needs one of `tool`, `resource`, `prompt` or `method`",
                );
                return None;
            }
            [one] => *one,
            [first, rest @ ..] => {
                for r in rest {
                    ck.error(
                        r.key_span,
                        format!(
                            "the `mcp` request has both `{}` and `{}`; give one",
                            first.key, r.key
                        ),
                    );
                }
                return None;
            }
        };
        if let Some(a) = f.get("arguments") {
            if form.key != "tool" {
                ck.error(a.key_span, "`arguments` go with `tool`");
                return None;
            }
        }
        if let Some(p) = f.get("params") {
            if form.key != "method" {
                ck.error(p.key_span, "`params` go with `method`");
                return None;
            }
        }
        let what = format!("`mcp.{}`", form.key);
        let name = ck.nonempty_string(&form.value, &what)?.value;
        match form.key.as_str() {
            "tool" => {
                let arguments = match f.node("arguments") {
                    None => Value::Object(Map::new()),
                    Some(n) => ck.json(n)?,
                };
                Some(RequestSpec::tool(&name, arguments))
            }
            "resource" => Some(RequestSpec::resource(&name)),
            "prompt" => Some(RequestSpec::prompt(&name)),
            _ => {
                let params = match f.node("params") {
                    None => Value::Null,
                    Some(n) => ck.json(n)?,
                };
                Some(RequestSpec::Mcp {
                    method: name,
                    params,
                })
            }
        }
    }

    fn http(&self, ck: &mut Checker, node: &Node) -> Option<RequestSpec> {
        let f = ck.fields(node, "the `http` request", HTTP_KEYS, &[])?;
        let method = ck
            .required(&f, "method", "the `http` request")
            .and_then(|n| ck.nonempty_string(n, "`http.method`"));
        let path = ck
            .required(&f, "path", "the `http` request")
            .and_then(|n| ck.nonempty_string(n, "`http.path`"));
        Some(RequestSpec::Http {
            method: method?.value,
            path: path?.value,
        })
    }

    fn list(&self, ck: &mut Checker, node: &Node) -> Option<RequestSpec> {
        let f = ck.fields(node, "the `list` request", LIST_KEYS, &[])?;
        let given: Vec<_> = LIST_KEYS.iter().filter_map(|k| f.get(k)).collect();
        let [one] = given.as_slice() else {
            if given.is_empty() {
                ck.error(
                    f.span,
                    "the `list` request needs one of `tools`, `resources`, `resource_templates` or `prompts`",
                );
            } else if let Some(second) = given.get(1) {
                ck.error(
                    second.key_span,
                    "a `list` request lists one kind of item; write one case per kind",
                );
            }
            return None;
        };
        let kind = match one.key.as_str() {
            "tools" => ListKind::Tools,
            "resources" => ListKind::Resources,
            "resource_templates" => ListKind::ResourceTemplates,
            _ => ListKind::Prompts,
        };
        let items = ck
            .string_list(&one.value, &format!("`list.{}`", one.key))?
            .into_iter()
            .map(|s| s.value)
            .collect();
        Some(RequestSpec::List { kind, items })
    }

    fn verdict(&self, ck: &mut Checker, n: &Node) -> Option<Verdict> {
        let s = ck.nonempty_string(n, "the expected decision")?;
        match Verdict::parse(&s.value) {
            Some(v) => Some(v),
            None => {
                let hint = match suggest::closest(&s.value, Verdict::NAMES.iter().copied()) {
                    Some(c) => format!("; did you mean `{c}`?"),
                    None => " (expected allow, deny, review or unauthenticated)".into(),
                };
                ck.error(s.span, format!("unknown decision `{}`{hint}", s.value));
                None
            }
        }
    }

    fn expect(&self, ck: &mut Checker, node: &Node, is_list: bool) -> Option<Expect> {
        let mut e = Expect::default();
        match &node.value {
            Y::Scalar(_) => e.decision = Some(self.verdict(ck, node)?),
            Y::Map(_) => {
                let f = ck.fields(node, "`expect`", EXPECT_KEYS, EXPECT_FUTURE)?;
                let mut ok = f.unknown.is_empty();
                if let Some(n) = f.node("decision") {
                    match self.verdict(ck, n) {
                        Some(v) => e.decision = Some(v),
                        None => ok = false,
                    }
                }
                if let Some(n) = f.node("rule") {
                    if n.is_null() {
                        e.rule = Some(None);
                    } else {
                        match ck.nonempty_string(
                            n,
                            "`expect.rule` (a rule id, or null for the default deny)",
                        ) {
                            Some(s) if self.policy.rules.iter().any(|r| r.id == s.value) => {
                                e.rule = Some(Some(s.value));
                            }
                            Some(s) => {
                                let hint = suggest::did_you_mean(
                                    &s.value,
                                    self.policy.rules.iter().map(|r| r.id.as_str()),
                                );
                                ck.error(s.span, format!("unknown rule `{}`{hint}", s.value));
                                ok = false;
                            }
                            None => ok = false,
                        }
                    }
                }
                if let Some(n) = f.node("reason") {
                    match ck.nonempty_string(n, "`expect.reason`") {
                        Some(s) => e.reason = Some(s.value),
                        None => ok = false,
                    }
                }
                if let Some(n) = f.node("visible") {
                    if !is_list {
                        ck.error(
                            f.get("visible").map(|e| e.key_span).unwrap_or(n.span),
                            "`visible` is for `list` cases",
                        );
                        ok = false;
                    } else {
                        match ck.string_list(n, "`expect.visible`") {
                            Some(l) => e.visible = Some(l.into_iter().map(|s| s.value).collect()),
                            None => ok = false,
                        }
                    }
                }
                if !ok {
                    return None;
                }
                if f.has("masked") {
                    return None;
                }
            }
            Y::Seq(_) => {
                ck.error(
                    node.span,
                    "expected a decision (`allow`, `deny`, `review`, `unauthenticated`) or a mapping for `expect`, found a list",
                );
                return None;
            }
        }
        if is_list {
            if e.visible.is_none() && e.decision != Some(Verdict::Unauthenticated) {
                ck.error(
                    node.span,
                    "a `list` case expects `visible: [...]` (the items the caller sees)",
                );
                return None;
            }
        } else if e.decision.is_none() {
            ck.error(
                node.span,
                "`expect` needs a `decision` (allow, deny, review or unauthenticated)",
            );
            return None;
        }
        Some(e)
    }
}

// ------------------------------------------------------------------ running

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// The case could not be run (it is invalid).
    Error,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub line: usize,
    pub col: usize,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Expect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<Outcome>,
    /// What differs (failures) or what is wrong (errors).
    pub problems: Vec<String>,
}

/// The results of one test file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileResult {
    pub file: String,
    pub cases: Vec<CaseResult>,
    /// File-level problems (YAML, fixtures).
    pub diagnostics: Vec<Diagnostic>,
}

impl FileResult {
    pub fn count(&self, s: Status) -> usize {
        self.cases.iter().filter(|c| c.status == s).count()
    }
}

/// Run every case of a parsed file.
pub fn run_file(policy: &Policy, file_name: &str, file: &TestFile) -> FileResult {
    let cases = file
        .cases
        .iter()
        .map(|entry| {
            let base = CaseResult {
                name: entry.name.clone(),
                line: entry.span.line,
                col: entry.span.col,
                status: Status::Error,
                expected: None,
                actual: None,
                problems: Vec::new(),
            };
            match &entry.case {
                Err(diags) => CaseResult {
                    problems: diags
                        .iter()
                        .filter(|d| d.is_error())
                        .map(|d| d.render(file_name))
                        .collect(),
                    ..base
                },
                Ok(case) => match scenario::run(policy, &case.scenario) {
                    Err(msg) => CaseResult {
                        expected: Some(case.expect.clone()),
                        problems: vec![format!(
                            "{file_name}:{}:{}: error: {msg}",
                            entry.span.line, entry.span.col
                        )],
                        ..base
                    },
                    Ok(run) => {
                        let problems = compare(&case.expect, &run.outcome);
                        CaseResult {
                            status: if problems.is_empty() {
                                Status::Pass
                            } else {
                                Status::Fail
                            },
                            expected: Some(case.expect.clone()),
                            actual: Some(run.outcome),
                            problems,
                            ..base
                        }
                    }
                },
            }
        })
        .collect();
    FileResult {
        file: file_name.to_owned(),
        cases,
        diagnostics: file.diagnostics.clone(),
    }
}

fn rule_text(rule: &Option<String>) -> String {
    match rule {
        Some(r) => format!("rule `{r}`"),
        None => "no rule (default deny)".into(),
    }
}

/// What differs between the expectation and the outcome (empty: pass).
pub fn compare(e: &Expect, o: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(d) = e.decision {
        if d != o.decision {
            out.push(format!(
                "decision: expected {}, got {}",
                d.as_str(),
                o.decision.as_str()
            ));
        }
    }
    if let Some(r) = &e.rule {
        if *r != o.rule {
            out.push(format!(
                "rule: expected {}, got {}",
                rule_text(r),
                match &o.rule {
                    Some(x) => format!("rule `{x}`"),
                    None => "no rule".into(),
                }
            ));
        }
    }
    if let Some(r) = &e.reason {
        if !o.reason.contains(r.as_str()) {
            out.push(format!("reason: expected it to contain {r:?}"));
        }
    }
    if let Some(want) = &e.visible {
        let got = o.visible.clone().unwrap_or_default();
        let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
        let extra: Vec<&String> = got.iter().filter(|g| !want.contains(g)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!("hidden but expected visible: {missing:?}"));
            }
            if !extra.is_empty() {
                parts.push(format!("visible but expected hidden: {extra:?}"));
            }
            out.push(format!("visible: {}", parts.join("; ")));
        }
    }
    out
}

/// The expectation in words: `deny (rule `x`)`.
pub fn expect_text(e: &Expect) -> String {
    let mut s = match (e.decision, &e.visible) {
        (Some(d), _) => d.as_str().to_owned(),
        (None, Some(v)) => format!("visible {v:?}"),
        (None, None) => "anything".into(),
    };
    if let (Some(_), Some(v)) = (e.decision, &e.visible) {
        s.push_str(&format!(", visible {v:?}"));
    }
    if let Some(r) = &e.rule {
        s.push_str(&format!(" ({})", rule_text(r)));
    }
    if let Some(r) = &e.reason {
        s.push_str(&format!(", reason containing {r:?}"));
    }
    s
}

/// The outcome in words: `allow (rule `x`): reason`.
pub fn outcome_text(o: &Outcome) -> String {
    let mut s = o.decision.as_str().to_owned();
    if let Some(v) = &o.visible {
        s.push_str(&format!(", visible {v:?}"));
    }
    if let Some(r) = &o.rule {
        s.push_str(&format!(" (rule `{r}`)"));
    }
    s.push_str(": ");
    s.push_str(&o.reason);
    s
}
