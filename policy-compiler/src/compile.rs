//! Policy source (YAML) → compiled [`Policy`], with every problem reported
//! as a [`Diagnostic`] pointing at the offending key or value.
//!
//! The walk never stops at the first problem: each part of the document is
//! checked on its own, names are collected before they are resolved (so a
//! role whose body is wrong is still a known role), and a policy is produced
//! only when there is no error.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use pinhole_filter::identity::jwks::{key_algs, parse_jwks};
use pinhole_filter::mask::{
    Builtin, ColumnRule, DetectorRule, FieldRule, MaskSpec, Strategy, Unmaskable,
};
use pinhole_filter::policy::{
    blob, Alg, ArgConstraint, ArgPath, ArgTest, ClaimMatch, Effect, HttpMatch, Issuer, Jwk,
    MaskRule, Matcher, McpMatch, Policy, Protocol, Revocations, Role, Rule, SqlMatch, SqlObject,
    StatementClass, Target,
};

use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::fields::{Checker, Fields, Future, Spanned};
use crate::suggest;
use crate::yaml::{self, Node, Resolved, Value};

/// The language version this compiler understands.
pub const LANGUAGE_VERSION: i128 = 1;
/// Default `leeway`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Largest `leeway` accepted.
pub const MAX_LEEWAY_SECS: u64 = 300;
/// Default `groups_claim`.
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";
/// Largest JWKS file read.
pub const MAX_JWKS_BYTES: u64 = 1024 * 1024;
/// Longest role, target or issuer name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest rule id.
pub const MAX_RULE_ID_LEN: usize = 128;

const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "identity",
    "roles",
    "targets",
    "rules",
    "masking",
    "approvers",
    "elevation",
];
const TOP_FUTURE: Future<'static> = &[];
const IDENTITY_KEYS: &[&str] = &["issuers", "revoked"];
const ISSUER_KEYS: &[&str] = &[
    "name",
    "issuer",
    "audiences",
    "algorithms",
    "jwks",
    "groups_claim",
    "max_token_lifetime",
    "leeway",
];
const REVOKED_KEYS: &[&str] = &["subjects", "token_ids"];
const ROLE_KEYS: &[&str] = &["issuer", "subjects", "subject", "groups", "claims", "admin"];
const TARGET_KEYS: &[&str] = &[
    "protocol",
    "forward_token",
    "backend_user",
    "backend_password_env",
    "backend_database",
    "mask_key_env",
];
const TARGET_FUTURE: Future<'static> = &[];
const RULE_KEYS: &[&str] = &["id", "reason", "allow", "deny", "review"];
const EFFECTS: &[&str] = &["allow", "deny", "review"];
const BODY_KEYS: &[&str] = &[
    "roles",
    "target",
    "mcp",
    "http",
    "sql",
    "approvers",
    "grant_ttl",
];
const BODY_FUTURE: Future<'static> = &[];
const MCP_KEYS: &[&str] = &[
    "tools",
    "arguments",
    "resources",
    "prompts",
    "methods",
    "sql_argument",
    "sql",
];
const SQL_KEYS: &[&str] = &[
    "statements",
    "tables",
    "functions",
    "without_where",
    "copy_program",
];
const HTTP_KEYS: &[&str] = &["methods", "paths"];
const MASKING_KEYS: &[&str] = &[
    "id",
    "target",
    "roles",
    "except_roles",
    "columns",
    "fields",
    "detectors",
    "strategy",
    "unmaskable",
];
const DETECTOR_KEYS: &[&str] = &["name", "pattern"];
const STRATEGIES: &[&str] = &["redact", "partial", "hash"];
const STRATEGY_FORMS: &str =
    "`redact`, `hash`, `{ redact: TEXT }` or `{ partial: N }` (N = characters to keep)";
const CONSTRAINT_KEYS: &[&str] = &["equals", "one_of", "glob", "min", "max"];
const PROTOCOLS: &[&str] = &["mcp", "http", "postgres"];
const ALGORITHMS: &[&str] = &["RS256", "ES256", "EdDSA"];
const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
/// MCP methods decided by the `tools`, `resources` and `prompts` lists.
const TYPED_MCP_METHODS: &[(&str, &str)] = &[
    ("tools/call", "tools"),
    ("resources/read", "resources"),
    ("resources/subscribe", "resources"),
    ("resources/unsubscribe", "resources"),
    ("prompts/get", "prompts"),
];

/// Reads the files a policy refers to (JWKS). Tests may substitute it.
pub trait FileSource {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
}

/// The real file system, refusing files over [`MAX_JWKS_BYTES`].
pub struct Fs;

impl FileSource for Fs {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let f = std::fs::File::open(path)?;
        let mut buf = Vec::new();
        f.take(MAX_JWKS_BYTES + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > MAX_JWKS_BYTES {
            return Err(std::io::Error::other(format!(
                "file is larger than {MAX_JWKS_BYTES} bytes"
            )));
        }
        Ok(buf)
    }
}

/// A JWKS file embedded into the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksInput {
    /// The issuer (policy name) it belongs to.
    pub issuer: String,
    /// The path as written in the policy.
    pub written: String,
    /// The path it was read from.
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// The result of checking a policy source.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The compiled policy; `Some` exactly when there is no error.
    pub policy: Option<Policy>,
    /// Errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
    /// The JWKS files read, in issuer order (one per issuer that compiled).
    pub jwks: Vec<JwksInput>,
    /// Roles marked `admin: true`. The flag only silences the broad-grant
    /// lint; it is not part of the compiled policy (nor of the blob).
    pub admin_roles: BTreeSet<String>,
}

impl Compiled {
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }
}

/// Check and compile a policy source. `base_dir` is the directory relative
/// JWKS paths are resolved against (the policy file's directory).
pub fn compile(source: &[u8], base_dir: &Path, files: &dyn FileSource) -> Compiled {
    let mut diags = Diagnostics::new();
    let root = if source.len() > yaml::MAX_SOURCE_BYTES {
        diags.error(
            Span::new(1, 1),
            format!(
                "policy source is over the {}-byte limit",
                yaml::MAX_SOURCE_BYTES
            ),
        );
        None
    } else {
        yaml::decode_utf8(source, &mut diags).and_then(|text| yaml::parse(&text, &mut diags))
    };
    let mut jwks = Vec::new();
    let mut policy = None;
    let mut admin_roles = BTreeSet::new();
    if let Some(root) = root {
        let mut lower = Lower {
            ck: Checker { diags: &mut diags },
            base_dir,
            files,
            jwks: Vec::new(),
            issuers: HashMap::new(),
            issuer_urls: HashMap::new(),
            roles: Vec::new(),
            targets: Vec::new(),
            used_roles: HashSet::new(),
            used_targets: HashSet::new(),
            admin_roles: BTreeSet::new(),
            rule_ids: HashMap::new(),
            groups: approvals::Groups::default(),
        };
        let p = lower.policy(&root);
        jwks = std::mem::take(&mut lower.jwks);
        admin_roles = std::mem::take(&mut lower.admin_roles);
        if !diags.has_errors() {
            // The filter's own structural checks, as a safety net: the
            // compiler should have reported all of these with positions.
            match blob::validate(&p) {
                Ok(()) => {
                    crate::lint::lint(&root, &p, &admin_roles, &mut diags);
                    policy = Some(p);
                }
                Err(e) => diags.error(Span::new(1, 1), format!("internal error: {e}")),
            }
        }
    }
    Compiled {
        policy,
        diagnostics: diags.into_sorted(),
        jwks,
        admin_roles,
    }
}

struct Lower<'c, 'd> {
    ck: Checker<'d>,
    base_dir: &'c Path,
    files: &'c dyn FileSource,
    jwks: Vec<JwksInput>,
    /// Issuer name → where it was defined.
    issuers: HashMap<String, Span>,
    /// Issuer `iss` URL → issuer name.
    issuer_urls: HashMap<String, String>,
    /// Role names, in source order.
    roles: Vec<String>,
    /// Target names with their protocol (`None` when it did not compile).
    targets: Vec<(String, Option<Protocol>, Span)>,
    used_roles: HashSet<String>,
    used_targets: HashSet<String>,
    /// Roles marked `admin: true`.
    admin_roles: BTreeSet<String>,
    /// Rule ids and where they are defined (masking rule ids must differ).
    rule_ids: HashMap<String, Span>,
    /// Approver groups and review settings.
    groups: approvals::Groups,
}

mod approvals;
pub use approvals::MAX_GRANT_SECS;

impl Lower<'_, '_> {
    fn policy(&mut self, root: &Node) -> Policy {
        let mut p = Policy::default();
        let Some(f) = self.ck.fields(root, "the policy", TOP_KEYS, TOP_FUTURE) else {
            return p;
        };
        match f.get("version") {
            None if f.misspelled("version") => {}
            None => self.ck.error(
                f.span,
                "the policy is missing the required key `version` (write `version: 1` first)",
            ),
            Some(e) => match e.value.as_scalar().map(|s| s.resolve()) {
                Some(Resolved::Int(LANGUAGE_VERSION)) => {}
                Some(Resolved::Int(v)) => self.ck.error(
                    e.value.span,
                    format!("unsupported policy language version {v}; this pinhole understands version {LANGUAGE_VERSION}"),
                ),
                _ => self.ck.error(
                    e.value.span,
                    format!("expected the integer {LANGUAGE_VERSION} for `version`, found {}", e.value.kind()),
                ),
            },
        }
        if let Some(n) = f.node("name") {
            p.name = self
                .ck
                .nonempty_string(n, "the policy `name`")
                .map(|s| s.value);
        }
        if let Some(n) = self.ck.required(&f, "identity", "the policy") {
            if let Some((issuers, revoked)) = self.identity(n) {
                p.issuers = issuers;
                p.revoked = revoked;
            }
        }
        if let Some(n) = f.node("roles") {
            p.roles = self.roles(n);
        }
        if let Some(n) = self.ck.required(&f, "targets", "the policy") {
            p.targets = self.targets(n);
        }
        if let Some(n) = f.node("approvers") {
            p.approvers = self.approvers(n);
        }
        match f.get("rules") {
            Some(e) => p.rules = self.rules(&e.value),
            None => {
                if !f.misspelled("rules") {
                    self.ck.warning(
                        f.span,
                        "the policy has no `rules`: every request will be denied",
                    );
                }
            }
        }
        if let Some(n) = f.node("masking") {
            p.masking = self.masking(n, &p.targets);
        }
        if let Some(n) = f.node("elevation") {
            p.elevation = self.elevation(n);
        }
        p.reviews = std::mem::take(&mut self.groups.reviews);
        if !self.ck.diags.has_errors() {
            self.approval_lints();
        }
        self.unused(&f);
        p
    }

    /// Lints for names defined but never used, reported only when
    /// everything else compiled (a rule with an error may be the one that
    /// names them).
    fn unused(&mut self, f: &Fields<'_>) {
        if self.ck.diags.has_errors() {
            return;
        }
        if let Some(Value::Map(entries)) = f.node("roles").map(|n| &n.value) {
            for e in entries {
                if !self.used_roles.contains(&e.key) {
                    self.ck.warning(
                        e.key_span,
                        format!("role `{}` is not used by any rule", e.key),
                    );
                }
            }
        }
        if f.has("rules") {
            let unused: Vec<(String, Span)> = self
                .targets
                .iter()
                .filter(|(name, _, _)| !self.used_targets.contains(name))
                .map(|(name, _, span)| (name.clone(), *span))
                .collect();
            for (name, span) in unused {
                self.ck.warning(
                    span,
                    format!("no rule names target `{name}`: every request to it will be denied"),
                );
            }
        }
    }
}

// ---------------------------------------------------------------- identity

impl Lower<'_, '_> {
    fn identity(&mut self, node: &Node) -> Option<(Vec<Issuer>, Revocations)> {
        let f = self.ck.fields(node, "`identity`", IDENTITY_KEYS, &[])?;
        let mut issuers = Vec::new();
        if let Some(n) = self.ck.required(&f, "issuers", "`identity`") {
            match &n.value {
                Value::Seq(items) => {
                    if items.is_empty() {
                        self.ck.error(
                            n.span,
                            "`issuers` cannot be empty: without a trusted issuer no token can be verified",
                        );
                    }
                    // Names first, so roles can refer to an issuer whose
                    // body has an error without a second, misleading error.
                    for item in items {
                        self.issuer_name(item);
                    }
                    for item in items {
                        if let Some(i) = self.issuer(item) {
                            issuers.push(i);
                        }
                    }
                }
                _ => self.ck.error(
                    n.span,
                    format!(
                        "expected a list of issuers for `issuers`, found {}",
                        n.kind()
                    ),
                ),
            }
        }
        let revoked = match f.node("revoked") {
            Some(n) => self.revoked(n).unwrap_or_default(),
            None => Revocations::default(),
        };
        Some((issuers, revoked))
    }

    /// Record an issuer's name (reporting duplicates) before its body is
    /// checked.
    fn issuer_name(&mut self, node: &Node) {
        let Value::Map(entries) = &node.value else {
            return;
        };
        let Some(e) = entries.iter().find(|e| e.key == "name") else {
            return;
        };
        let Value::Scalar(s) = &e.value.value else {
            return;
        };
        if e.value.is_null() {
            return;
        }
        if let Some(first) = self.issuers.get(&s.text) {
            self.ck.error(
                e.value.span,
                format!(
                    "duplicate issuer name `{}` (first defined at {first})",
                    s.text
                ),
            );
        } else {
            self.issuers.insert(s.text.clone(), e.value.span);
        }
    }

    fn issuer(&mut self, node: &Node) -> Option<Issuer> {
        let f = self.ck.fields(node, "an issuer", ISSUER_KEYS, &[])?;
        let name = self
            .ck
            .required(&f, "name", "the issuer")
            .and_then(|n| self.ck.nonempty_string(n, "the issuer `name`"));
        if let Some(n) = &name {
            self.check_name(n, "issuer name", MAX_NAME_LEN);
        }
        let iss = self.ck.required(&f, "issuer", "the issuer").and_then(|n| {
            self.ck
                .nonempty_string(n, "`issuer` (the exact `iss` claim)")
        });
        if let (Some(iss), Some(name)) = (&iss, &name) {
            if let Some(other) = self.issuer_urls.get(&iss.value) {
                if other != &name.value {
                    self.ck.error(
                        iss.span,
                        format!(
                            "issuer URL `{}` is already used by issuer `{other}`; a token's `iss` must identify exactly one issuer",
                            iss.value
                        ),
                    );
                }
            } else {
                self.issuer_urls
                    .insert(iss.value.clone(), name.value.clone());
            }
        }
        let audiences = self
            .ck
            .required(&f, "audiences", "the issuer")
            .and_then(|n| {
                let list = self.ck.nonempty_list(
                    n,
                    "`audiences`",
                    "a token must be meant for at least one accepted audience",
                )?;
                self.nonempty_items(&list, "an audience")
            });
        let algorithms = match f.node("algorithms") {
            None => Some(vec![Alg::RS256, Alg::ES256, Alg::EdDSA]),
            Some(n) => self.algorithms(n),
        };
        let groups_claim = match f.node("groups_claim") {
            None => Some(DEFAULT_GROUPS_CLAIM.to_owned()),
            Some(n) => self
                .ck
                .nonempty_string(n, "`groups_claim`")
                .and_then(|s| self.claim_path(&s, "`groups_claim`").then_some(s.value)),
        };
        let max_life = match f.node("max_token_lifetime") {
            None => Some(None),
            Some(n) => self.ck.duration(n, "`max_token_lifetime`").and_then(|d| {
                if d.value == 0 {
                    self.ck
                        .error(d.span, "`max_token_lifetime` must be greater than zero");
                    None
                } else {
                    Some(Some(d.value))
                }
            }),
        };
        let leeway = match f.node("leeway") {
            None => Some(DEFAULT_LEEWAY_SECS),
            Some(n) => self.ck.duration(n, "`leeway`").and_then(|d| {
                if d.value > MAX_LEEWAY_SECS {
                    self.ck.error(
                        d.span,
                        format!(
                            "`leeway` of {} is over the maximum of {}: clock skew that large hides expired tokens",
                            crate::duration::format(d.value),
                            crate::duration::format(MAX_LEEWAY_SECS)
                        ),
                    );
                    None
                } else {
                    Some(d.value)
                }
            }),
        };
        let jwks_node = self.ck.required(&f, "jwks", "the issuer");
        let keys = match (jwks_node, &name, &algorithms) {
            (Some(n), Some(name), Some(algs)) => self.jwks(n, &name.value, algs),
            (Some(n), _, _) => {
                // Still report an unreadable or invalid file.
                let _ = self.jwks(n, "", &[Alg::RS256, Alg::ES256, Alg::EdDSA]);
                None
            }
            _ => None,
        };
        Some(Issuer {
            name: name?.value,
            issuer: iss?.value,
            audiences: audiences?,
            algorithms: algorithms?,
            keys: keys?,
            groups_claim: groups_claim?,
            max_token_lifetime_secs: max_life?,
            leeway_secs: leeway?,
        })
    }

    fn algorithms(&mut self, node: &Node) -> Option<Vec<Alg>> {
        let list = self.ck.nonempty_list(
            node,
            "`algorithms`",
            "no token could be verified; omit `algorithms` to accept RS256, ES256 and EdDSA",
        )?;
        let mut out: Vec<Alg> = Vec::new();
        let mut ok = true;
        for a in list {
            match Alg::parse(&a.value) {
                Some(alg) if out.contains(&alg) => {
                    self.ck
                        .warning(a.span, format!("algorithm `{}` is listed twice", a.value));
                }
                Some(alg) => out.push(alg),
                None => {
                    ok = false;
                    let v = a.value.as_str();
                    let msg = if v.eq_ignore_ascii_case("none") {
                        "algorithm `none` (unsigned tokens) is never accepted".to_owned()
                    } else if v.len() >= 2
                        && v.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS"))
                    {
                        format!(
                            "algorithm `{v}` uses a shared secret; Pinhole verifies only public-key signatures (RS256, ES256, EdDSA)"
                        )
                    } else {
                        format!(
                            "unsupported algorithm `{v}`{}",
                            match suggest::closest(v, ALGORITHMS.iter().copied()) {
                                Some(s) => format!("; did you mean `{s}`?"),
                                None => " (supported: RS256, ES256, EdDSA)".into(),
                            }
                        )
                    };
                    self.ck.error(a.span, msg);
                }
            }
        }
        ok.then_some(out)
    }

    /// Read and parse the JWKS file named by `node`; check that its keys
    /// suit the issuer's algorithms.
    fn jwks(&mut self, node: &Node, issuer: &str, algs: &[Alg]) -> Option<Vec<Jwk>> {
        let written = self
            .ck
            .nonempty_string(node, "`jwks` (a path to a JWKS file)")?;
        let path = self.base_dir.join(&written.value);
        let bytes = match self.files.read(&path) {
            Ok(b) => b,
            Err(e) => {
                self.ck.error(
                    written.span,
                    format!(
                        "cannot read JWKS file `{}` ({}): {e}",
                        written.value,
                        path.display()
                    ),
                );
                return None;
            }
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            self.ck.error(
                written.span,
                format!("invalid JWKS file `{}`: not UTF-8 text", written.value),
            );
            return None;
        };
        let keys = match parse_jwks(text) {
            Ok(k) => k,
            Err(e) => {
                self.ck.error(
                    written.span,
                    format!("invalid JWKS file `{}`: {e}", written.value),
                );
                return None;
            }
        };
        let mut usable = 0usize;
        for (i, k) in keys.iter().enumerate() {
            // The filter's own notion of what a key verifies.
            let key_algs = key_algs(k);
            if key_algs.iter().any(|a| algs.contains(a)) {
                usable += 1;
            } else {
                let kid = k
                    .kid
                    .as_deref()
                    .map(|s| format!(" (kid {s:?})"))
                    .unwrap_or_default();
                let verifies = key_algs
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                let verifies = if verifies.is_empty() {
                    "no supported algorithm".to_owned()
                } else {
                    verifies
                };
                self.ck.warning(
                    written.span,
                    format!(
                        "JWKS key #{i}{kid} in `{}` is for {verifies} but the issuer's `algorithms` leave it out: it will never verify a token",
                        written.value,
                    ),
                );
            }
        }
        if usable == 0 && !keys.is_empty() {
            self.ck.error(
                written.span,
                format!(
                    "no key in JWKS file `{}` can verify {}: the issuer could never accept a token",
                    written.value,
                    algs.iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            return None;
        }
        if !issuer.is_empty() {
            self.jwks.push(JwksInput {
                issuer: issuer.to_owned(),
                written: written.value,
                path,
                bytes,
            });
        }
        Some(keys)
    }

    fn revoked(&mut self, node: &Node) -> Option<Revocations> {
        let f = self.ck.fields(node, "`revoked`", REVOKED_KEYS, &[])?;
        let mut r = Revocations::default();
        if let Some(n) = f.node("subjects") {
            let list = self.ck.string_list(n, "`revoked.subjects`")?;
            r.subjects = self.nonempty_items(&list, "a revoked subject")?;
        }
        if let Some(n) = f.node("token_ids") {
            let list = self.ck.string_list(n, "`revoked.token_ids`")?;
            r.token_ids = self.nonempty_items(&list, "a revoked token id")?;
        }
        Some(r)
    }
}

// ------------------------------------------------------- roles and targets

impl Lower<'_, '_> {
    fn roles(&mut self, node: &Node) -> Vec<Role> {
        let Value::Map(entries) = &node.value else {
            self.ck.error(
                node.span,
                format!(
                    "expected a mapping of role names to role definitions for `roles`, found {}",
                    node.kind()
                ),
            );
            return Vec::new();
        };
        for e in entries {
            self.roles.push(e.key.clone());
        }
        let mut out = Vec::new();
        for e in entries {
            let name = Spanned {
                value: e.key.clone(),
                span: e.key_span,
            };
            let name_ok = self.check_name(&name, "role name", MAX_NAME_LEN);
            if let Some(r) = self.role(&e.key, &e.value) {
                if name_ok {
                    out.push(r);
                }
            }
        }
        out
    }

    fn role(&mut self, name: &str, node: &Node) -> Option<Role> {
        let what = format!("role `{name}`");
        let f = self.ck.fields(node, &what, ROLE_KEYS, &[])?;
        let mut ok = true;
        let issuer = match f.node("issuer") {
            None => None,
            Some(n) => {
                let s = self.ck.nonempty_string(n, "`issuer`");
                match s {
                    Some(s) if self.issuers.contains_key(&s.value) => Some(s.value),
                    Some(s) => {
                        let hint = suggest::did_you_mean(
                            &s.value,
                            self.issuers.keys().map(String::as_str),
                        );
                        self.ck
                            .error(s.span, format!("unknown issuer `{}`{hint}", s.value));
                        ok = false;
                        None
                    }
                    None => {
                        ok = false;
                        None
                    }
                }
            }
        };
        let mut subjects = Vec::new();
        match (f.get("subjects"), f.get("subject")) {
            (Some(_), Some(second)) => {
                self.ck.error(
                    second.key_span,
                    "write either `subject` or `subjects`, not both",
                );
                ok = false;
            }
            (Some(e), None) | (None, Some(e)) => {
                let what = format!("`{}`", e.key);
                let list = if e.key == "subject" {
                    self.ck.nonempty_string(&e.value, &what).map(|s| vec![s])
                } else {
                    self.ck.nonempty_list(
                        &e.value,
                        &what,
                        "an empty list would not restrict subjects at all; omit the key instead",
                    )
                };
                match list.and_then(|l| self.globs(&l, "subject pattern")) {
                    Some(l) => subjects = l,
                    None => ok = false,
                }
            }
            (None, None) => {}
        }
        let mut groups = Vec::new();
        if let Some(n) = f.node("groups") {
            let list = self.ck.nonempty_list(
                n,
                "`groups`",
                "an empty list would not restrict groups at all; omit the key instead",
            );
            match list.and_then(|l| self.nonempty_items(&l, "a group")) {
                Some(l) => {
                    if let Some(Value::Seq(items)) = Some(&n.value) {
                        for (g, item) in l.iter().zip(items) {
                            if g.contains(['*', '?']) {
                                self.ck.warning(
                                    item.span,
                                    format!("groups are matched exactly: `{g}` only matches a group with that literal name"),
                                );
                            }
                        }
                    }
                    groups = l;
                }
                None => ok = false,
            }
        }
        let mut claims = Vec::new();
        if let Some(n) = f.node("claims") {
            match self.claims(n) {
                Some(c) => claims = c,
                None => ok = false,
            }
        }
        if let Some(n) = f.node("admin") {
            match self.ck.bool(n, "`admin`") {
                Some(true) => {
                    self.admin_roles.insert(name.to_owned());
                }
                Some(false) => {}
                None => ok = false,
            }
        }
        if ok
            && issuer.is_none()
            && subjects.is_empty()
            && groups.is_empty()
            && claims.is_empty()
            && f.unknown.is_empty()
        {
            self.ck.warning(
                f.span,
                format!("{what} has no conditions: every authenticated identity holds it"),
            );
        }
        ok.then(|| Role {
            name: name.to_owned(),
            issuer,
            subjects,
            groups,
            claims,
        })
    }

    fn claims(&mut self, node: &Node) -> Option<Vec<ClaimMatch>> {
        let Value::Map(entries) = &node.value else {
            self.ck.error(
                node.span,
                format!(
                    "expected a mapping of claim names to values for `claims`, found {}",
                    node.kind()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for e in entries {
            let path = Spanned {
                value: e.key.clone(),
                span: e.key_span,
            };
            ok &= self.claim_path(&path, "a claim name");
            let what = format!("claim `{}`", e.key);
            let list = self.ck.nonempty_list(
                &e.value,
                &what,
                "no value could match; list at least one value or pattern",
            );
            match list.and_then(|l| self.globs(&l, "claim pattern")) {
                Some(patterns) => out.push(ClaimMatch {
                    claim: e.key.clone(),
                    patterns,
                }),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A dotted claim path: non-empty segments.
    fn claim_path(&mut self, s: &Spanned<String>, what: &str) -> bool {
        if s.value.is_empty() || s.value.split('.').any(str::is_empty) {
            self.ck.error(
                s.span,
                format!(
                    "invalid {what} `{}`: a claim path is one or more names separated by `.`",
                    s.value
                ),
            );
            return false;
        }
        true
    }

    fn targets(&mut self, node: &Node) -> Vec<Target> {
        let Value::Map(entries) = &node.value else {
            self.ck.error(
                node.span,
                format!(
                    "expected a mapping of target names to target definitions for `targets`, found {}",
                    node.kind()
                ),
            );
            return Vec::new();
        };
        if entries.is_empty() {
            self.ck.error(
                node.span,
                "`targets` cannot be empty: a policy protects at least one target",
            );
        }
        let mut out = Vec::new();
        for e in entries {
            let name = Spanned {
                value: e.key.clone(),
                span: e.key_span,
            };
            let name_ok = self.check_name(&name, "target name", MAX_NAME_LEN);
            let (protocol, t) = self.target(&e.key, &e.value);
            self.targets.push((e.key.clone(), protocol, e.key_span));
            if let (Some(t), true) = (t, name_ok) {
                out.push(t);
            }
        }
        out
    }

    /// The target, and its protocol even when something else about it is
    /// wrong (so rules naming it are still checked against the protocol).
    fn target(&mut self, name: &str, node: &Node) -> (Option<Protocol>, Option<Target>) {
        let what = format!("target `{name}`");
        let Some(f) = self.ck.fields(node, &what, TARGET_KEYS, TARGET_FUTURE) else {
            return (None, None);
        };
        let protocol = self.ck.required(&f, "protocol", &what).and_then(|n| {
            let s = self.ck.nonempty_string(n, "`protocol`")?;
            match s.value.as_str() {
                "mcp" => Some(Protocol::Mcp),
                "http" => Some(Protocol::Http),
                "postgres" => Some(Protocol::Postgres),
                other => {
                    let hint = match suggest::closest(other, PROTOCOLS.iter().copied()) {
                        Some(c) => format!("; did you mean `{c}`?"),
                        None => " (expected mcp, http or postgres)".into(),
                    };
                    self.ck
                        .error(s.span, format!("unknown protocol `{other}`{hint}"));
                    None
                }
            }
        });
        let forward_token = match f.get("forward_token") {
            None => Some(false),
            Some(e) => {
                let b = self.ck.bool(&e.value, "`forward_token`");
                if protocol == Some(Protocol::Postgres) && b.is_some() {
                    self.ck.error(
                        e.key_span,
                        "`forward_token` applies to http and mcp targets only",
                    );
                    None
                } else {
                    b
                }
            }
        };
        let mut ok = true;
        let mut backend = |key: &str, ck: &mut Checker| -> Option<String> {
            let e = f.get(key)?;
            if protocol.is_some() && protocol != Some(Protocol::Postgres) {
                ck.error(
                    e.key_span,
                    format!("`{key}` applies to postgres targets only"),
                );
                ok = false;
                return None;
            }
            match ck.nonempty_string(&e.value, &format!("`{key}`")) {
                Some(s) => Some(s.value),
                None => {
                    ok = false;
                    None
                }
            }
        };
        let backend_user = backend("backend_user", &mut self.ck);
        let backend_password_env = backend("backend_password_env", &mut self.ck);
        let backend_database = backend("backend_database", &mut self.ck);
        if let Some(env) = &backend_password_env {
            if !env_name_ok(env) {
                if let Some(e) = f.get("backend_password_env") {
                    self.ck.error(
                        e.value.span,
                        format!(
                            "`backend_password_env` names an environment variable, \
                             not a password: `{}` is not a valid variable name \
                             (letters, digits and `_`); never put the password itself in the policy",
                            crate::compile::redact_hint(env)
                        ),
                    );
                }
                ok = false;
            }
        }
        let mask_key_env = match f.get("mask_key_env") {
            None => None,
            Some(e) => match self.ck.nonempty_string(&e.value, "`mask_key_env`") {
                Some(s) if env_name_ok(&s.value) => Some(s.value),
                Some(s) => {
                    self.ck.error(
                        s.span,
                        format!(
                            "`mask_key_env` names an environment variable, not a key: `{}` is not \
                             a valid variable name (letters, digits and `_`); never put the key \
                             itself in the policy",
                            redact_hint(&s.value)
                        ),
                    );
                    ok = false;
                    None
                }
                None => {
                    ok = false;
                    None
                }
            },
        };
        if protocol == Some(Protocol::Postgres) && backend_user.is_none() && ok {
            self.ck.error(
                f.span,
                format!(
                    "{what} is missing the required key `backend_user` (the database role \
                     the filter logs in as; callers never learn its credentials)"
                ),
            );
            ok = false;
        }
        let target = match (protocol, forward_token, ok) {
            (Some(protocol), Some(forward_token), true) => Some(Target {
                name: name.to_owned(),
                protocol,
                forward_token,
                backend_user,
                backend_password_env,
                backend_database,
                mask_key_env,
            }),
            _ => None,
        };
        (protocol, target)
    }
}

// ------------------------------------------------------------------- rules

impl Lower<'_, '_> {
    fn rules(&mut self, node: &Node) -> Vec<Rule> {
        let Value::Seq(items) = &node.value else {
            self.ck.error(
                node.span,
                format!(
                    "expected a list of rules for `rules`, found {}",
                    node.kind()
                ),
            );
            return Vec::new();
        };
        if items.is_empty() {
            self.ck
                .warning(node.span, "`rules` is empty: every request will be denied");
        }
        let mut ids: HashMap<String, Span> = HashMap::new();
        let mut out = Vec::new();
        for item in items {
            if let Some(r) = self.rule(item, &mut ids) {
                out.push(r);
            }
        }
        self.rule_ids = ids;
        out
    }

    fn rule(&mut self, node: &Node, ids: &mut HashMap<String, Span>) -> Option<Rule> {
        let f = self.ck.fields(node, "a rule", RULE_KEYS, &[])?;
        let id = self
            .ck
            .required(&f, "id", "the rule")
            .and_then(|n| self.ck.nonempty_string(n, "the rule `id`"));
        let mut id_ok = id.is_some();
        if let Some(id) = &id {
            id_ok &= self.check_name(id, "rule id", MAX_RULE_ID_LEN);
            if let Some(first) = ids.get(&id.value) {
                self.ck.error(
                    id.span,
                    format!("duplicate rule id `{}` (first used at {first})", id.value),
                );
                id_ok = false;
            } else {
                ids.insert(id.value.clone(), id.span);
            }
        }
        let what = match &id {
            Some(id) => format!("rule `{}`", id.value),
            None => "the rule".to_owned(),
        };
        let reason = match f.node("reason") {
            None => Some(None),
            Some(n) => self
                .ck
                .nonempty_string(n, "`reason`")
                .map(|s| Some(s.value)),
        };
        let effects: Vec<_> = EFFECTS.iter().filter_map(|k| f.get(k)).collect();
        let (effect_entry, effect) = match effects.as_slice() {
            [] => {
                if !EFFECTS.iter().any(|e| f.misspelled(e)) {
                    self.ck.error(
                        f.span,
                        format!("{what} needs exactly one of `allow`, `deny` or `review`"),
                    );
                }
                return None;
            }
            [one, rest @ ..] => {
                for extra in rest {
                    self.ck.error(
                        extra.key_span,
                        format!(
                            "{what} has both `{}` and `{}`; a rule has exactly one effect (split it into two rules)",
                            one.key, extra.key
                        ),
                    );
                }
                let effect = match one.key.as_str() {
                    "allow" => Effect::Allow,
                    "deny" => Effect::Deny,
                    _ => Effect::Review,
                };
                if !rest.is_empty() {
                    // Still check the first body, for its own errors.
                    let _ = self.body(&one.value, &what, effect);
                    return None;
                }
                (*one, effect)
            }
        };
        let body = self.body(&effect_entry.value, &what, effect);
        if let Some(id) = id.as_ref().filter(|_| id_ok) {
            self.review_settings(
                &effect_entry.value,
                &id.value,
                effect,
                effect_entry.key_span,
            );
        }
        let (roles, target, matcher) = body?;
        Some(Rule {
            id: id.filter(|_| id_ok)?.value,
            effect,
            roles: roles?,
            target: target?,
            matcher: matcher?,
            reason: reason?,
        })
    }

    #[allow(clippy::type_complexity)]
    fn body(
        &mut self,
        node: &Node,
        what: &str,
        effect: Effect,
    ) -> Option<(Option<Vec<String>>, Option<String>, Option<Matcher>)> {
        let body_what = format!("the `{}` of {what}", effect.as_str());
        let f = self.ck.fields(node, &body_what, BODY_KEYS, BODY_FUTURE)?;
        let roles = match f.node("roles") {
            None => Some(Vec::new()),
            Some(n) => self.role_refs(n),
        };
        let target = self
            .ck
            .required(&f, "target", &body_what)
            .and_then(|n| self.ck.nonempty_string(n, "`target`"))
            .and_then(|t| self.target_ref(&t));
        let protocol = target.as_ref().and_then(|(_, p)| *p);
        let target_name = target.as_ref().map(|(t, _)| t.value.clone());
        let mut matcher = Some(Matcher::Any);
        for (key, wanted) in [("mcp", Protocol::Mcp), ("http", Protocol::Http)] {
            let Some(e) = f.get(key) else { continue };
            if let (Some(p), Some((t, _))) = (protocol, &target) {
                if p != wanted {
                    self.ck.error(
                        e.key_span,
                        format!(
                            "`{key}` applies only to {key} targets; target `{}` is {}",
                            t.value,
                            p.as_str()
                        ),
                    );
                    matcher = None;
                    continue;
                }
            }
            let m = match wanted {
                Protocol::Mcp => self.mcp(&e.value, effect).map(Matcher::Mcp),
                _ => self.http(&e.value).map(Matcher::Http),
            };
            if matcher.is_some() {
                matcher = m;
            }
        }
        if let Some(e) = f.get("sql") {
            let fits = match (protocol, &target) {
                (Some(p), Some((t, _))) if p != Protocol::Postgres => {
                    let hint = if p == Protocol::Mcp {
                        " (for a tool's SQL argument write `mcp: { tools: [...], sql_argument: <path>, sql: {...} }`)"
                    } else {
                        ""
                    };
                    self.ck.error(
                        e.key_span,
                        format!(
                            "`sql` applies only to postgres targets; target `{}` is {}{hint}",
                            t.value,
                            p.as_str()
                        ),
                    );
                    false
                }
                _ => true,
            };
            if f.has("mcp") || f.has("http") {
                self.ck.error(
                    e.key_span,
                    "a rule has one matcher: `sql` cannot be combined with `mcp` or `http`",
                );
                matcher = None;
            }
            let m = self.sql(&e.value, effect).map(Matcher::Sql);
            if !fits {
                matcher = None;
            } else if matcher.is_some() {
                matcher = m;
            }
        }
        if f.has("mcp") && f.has("http") {
            // Reported above for the one that does not fit the target.
            matcher = None;
        }
        Some((roles, target_name, matcher))
    }

    fn role_refs(&mut self, node: &Node) -> Option<Vec<String>> {
        let list = self.ck.nonempty_list(
            node,
            "`roles`",
            "an empty list would apply the rule to every identity; omit `roles` to mean that",
        )?;
        let mut ok = true;
        let mut out = Vec::new();
        for r in list {
            if self.roles.contains(&r.value) {
                self.used_roles.insert(r.value.clone());
                if !out.contains(&r.value) {
                    out.push(r.value);
                }
            } else {
                ok = false;
                let hint = suggest::did_you_mean(&r.value, self.roles.iter().map(String::as_str));
                let hint = if hint.is_empty() && self.roles.is_empty() {
                    " (the policy defines no `roles`)".to_owned()
                } else {
                    hint
                };
                self.ck
                    .error(r.span, format!("unknown role `{}`{hint}", r.value));
            }
        }
        ok.then_some(out)
    }

    fn target_ref(&mut self, t: &Spanned<String>) -> Option<(Spanned<String>, Option<Protocol>)> {
        if let Some((_, p, _)) = self.targets.iter().find(|(n, _, _)| n == &t.value) {
            self.used_targets.insert(t.value.clone());
            return Some((t.clone(), *p));
        }
        let hint = suggest::did_you_mean(&t.value, self.targets.iter().map(|(n, _, _)| n.as_str()));
        self.ck
            .error(t.span, format!("unknown target `{}`{hint}", t.value));
        None
    }

    fn mcp(&mut self, node: &Node, effect: Effect) -> Option<McpMatch> {
        let f = self.ck.fields(node, "the `mcp` matcher", MCP_KEYS, &[])?;
        let mut m = McpMatch::default();
        let mut ok = true;
        let mut list = |this: &mut Self, key: &str, what: &str| -> Vec<String> {
            let Some(n) = f.node(key) else {
                return Vec::new();
            };
            let l = this.ck.string_list(n, &format!("`mcp.{key}`"));
            match l.and_then(|l| this.globs(&l, what)) {
                Some(v) => {
                    if v.is_empty() {
                        this.ck.warning(
                            n.span,
                            format!("empty `{key}` list matches nothing; remove it"),
                        );
                    }
                    v
                }
                None => {
                    ok = false;
                    Vec::new()
                }
            }
        };
        m.tools = list(self, "tools", "tool name pattern");
        m.resources = list(self, "resources", "resource URI pattern");
        m.prompts = list(self, "prompts", "prompt name pattern");
        m.methods = list(self, "methods", "method name pattern");
        if let Some(n) = f.node("methods") {
            let nodes: Vec<&Node> = match &n.value {
                Value::Seq(items) => items.iter().collect(),
                _ => vec![n],
            };
            if nodes.len() == m.methods.len() {
                self.check_mcp_methods(&m.methods, &nodes, &mut ok);
            }
        }
        if let Some(e) = f.get("arguments") {
            match self.arguments(&e.value) {
                Some(a) => m.arguments = a,
                None => ok = false,
            }
            if m.tools.is_empty() && !f.has("tools") {
                self.ck.error(
                    e.key_span,
                    "`arguments` constrain `tools/call`: list the tools they apply to in `tools`",
                );
                ok = false;
            }
        }
        if let Some(e) = f.get("sql_argument") {
            match self.ck.nonempty_string(&e.value, "`sql_argument`") {
                Some(text) => match crate::argpath::parse(&text.value) {
                    Ok(path) => {
                        m.sql_argument = Some(ArgPath {
                            path,
                            path_text: text.value,
                        })
                    }
                    Err(msg) => {
                        self.ck.error(text.span, msg);
                        ok = false;
                    }
                },
                None => ok = false,
            }
            if m.tools.is_empty() && !f.has("tools") {
                self.ck.error(
                    e.key_span,
                    "`sql_argument` names an argument of `tools/call`: list the tools it applies to in `tools`",
                );
                ok = false;
            }
        }
        if let Some(e) = f.get("sql") {
            if !f.has("sql_argument") {
                self.ck.error(
                    e.key_span,
                    "`sql` inside `mcp` needs `sql_argument`: the path of the tool argument holding the SQL (e.g. `sql_argument: sql`)",
                );
                ok = false;
            }
            match self.sql(&e.value, effect) {
                Some(s) => m.sql = Some(s),
                None => ok = false,
            }
        }
        if ok
            && m.tools.is_empty()
            && m.resources.is_empty()
            && m.prompts.is_empty()
            && m.methods.is_empty()
            && f.unknown.is_empty()
        {
            self.ck.error(
                f.span,
                "this `mcp` matcher matches no operation: give at least one of `tools`, `resources`, `prompts` or `methods` (omit `mcp` to cover every MCP operation on the target)",
            );
            ok = false;
        }
        ok.then_some(m)
    }

    /// A `sql:` matcher (a postgres rule's, or an MCP tool's SQL argument's).
    fn sql(&mut self, node: &Node, effect: Effect) -> Option<SqlMatch> {
        let f = self.ck.fields(node, "the `sql` matcher", SQL_KEYS, &[])?;
        let mut m = SqlMatch::default();
        let mut ok = f.unknown.is_empty();
        if let Some(n) = f.node("statements") {
            match self.ck.nonempty_list(
                n,
                "`sql.statements`",
                "omit `statements` to match every statement kind",
            ) {
                Some(list) => {
                    for item in list {
                        match self.statement_class(&item) {
                            Some(c) => {
                                if !m.statements.contains(&c) {
                                    m.statements.push(c)
                                }
                            }
                            None => ok = false,
                        }
                    }
                }
                None => ok = false,
            }
        }
        if let Some(n) = f.node("tables") {
            match self
                .ck
                .nonempty_list(n, "`sql.tables`", "omit `tables` to match every table")
                .and_then(|l| {
                    let mut good = true;
                    for t in &l {
                        let v = &t.value;
                        if !v.contains('.') && !v.contains('*') {
                            self.ck.error(
                                t.span,
                                format!("table pattern `{v}` must be schema-qualified: unqualified names in SQL resolve to schema `public`, so write `public.{v}`"),
                            );
                            good = false;
                        } else if v.chars().any(|c| c.is_ascii_uppercase()) {
                            self.ck.warning(
                                t.span,
                                format!("table pattern `{v}` has upper-case letters: unquoted names in SQL are lower-cased, so it only matches quoted identifiers"),
                            );
                        }
                    }
                    self.globs(&l, "table pattern").filter(|_| good)
                }) {
                Some(v) => m.tables = v,
                None => ok = false,
            }
        }
        if let Some(n) = f.node("functions") {
            match self
                .ck
                .nonempty_list(
                    n,
                    "`sql.functions`",
                    "omit `functions` for no condition on functions",
                )
                .and_then(|l| self.globs(&l, "function pattern"))
            {
                Some(v) => m.functions = v,
                None => ok = false,
            }
        }
        for (key, slot) in [
            ("without_where", &mut m.without_where),
            ("copy_program", &mut m.copy_program),
        ] {
            if let Some(n) = f.node(key) {
                match self.ck.bool(n, &format!("`sql.{key}`")) {
                    Some(b) => *slot = b,
                    None => ok = false,
                }
            }
        }
        let has = |m: &SqlMatch, cs: &[StatementClass]| {
            m.statements.is_empty() || m.statements.iter().any(|c| cs.contains(c))
        };
        if ok
            && m.without_where
            && !has(
                &m,
                &[
                    StatementClass::Update,
                    StatementClass::Delete,
                    StatementClass::Merge,
                    StatementClass::Prepare,
                ],
            )
        {
            if let Some(e) = f.get("without_where") {
                self.ck.error(
                    e.key_span,
                    "`without_where` restricts the rule to UPDATE/DELETE without WHERE, but `statements` lists no statement that can contain one: the rule matches nothing",
                );
                ok = false;
            }
        }
        if ok
            && m.copy_program
            && !has(
                &m,
                &[
                    StatementClass::Copy,
                    StatementClass::CopyTo,
                    StatementClass::CopyFrom,
                ],
            )
        {
            if let Some(e) = f.get("copy_program") {
                self.ck.error(
                    e.key_span,
                    "`copy_program` restricts the rule to COPY … PROGRAM, but `statements` lists no `copy`: the rule matches nothing",
                );
                ok = false;
            }
        }
        if ok && effect == Effect::Deny && m == SqlMatch::default() {
            self.ck.warning(
                f.span,
                "this `sql` matcher has no condition: the deny rule refuses every statement",
            );
        }
        ok.then_some(m)
    }

    fn statement_class(&mut self, s: &Spanned<String>) -> Option<StatementClass> {
        let v = s.value.to_ascii_lowercase();
        if let Some(c) = StatementClass::parse(&v) {
            return Some(c);
        }
        let words: Vec<&str> = v.split_whitespace().collect();
        if let [verb @ ("create" | "alter" | "drop"), rest @ ..] = words.as_slice() {
            let obj = rest.join(" ");
            let hint = suggest::did_you_mean(&obj, SqlObject::ALL.iter().map(|o| o.as_str()));
            let hint = if hint.is_empty() {
                format!(
                    " (object types: {})",
                    SqlObject::ALL
                        .iter()
                        .map(|o| o.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                hint
            };
            self.ck.error(
                s.span,
                format!("unknown object type `{obj}` in `{verb} {obj}`{hint}"),
            );
            return None;
        }
        let names = StatementClass::SIMPLE.iter().map(|(n, _)| *n);
        let hint = suggest::did_you_mean(&v, names);
        let hint = if hint.is_empty() {
            format!(
                " (expected one of: {})",
                StatementClass::SIMPLE
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            hint
        };
        self.ck.error(
            s.span,
            format!("unknown statement kind `{}`{hint}", s.value),
        );
        None
    }

    fn check_mcp_methods(&mut self, methods: &[String], nodes: &[&Node], ok: &mut bool) {
        for (m, n) in methods.iter().zip(nodes.iter().copied()) {
            if let Some((_, key)) = TYPED_MCP_METHODS.iter().find(|(t, _)| t == m) {
                self.ck.error(
                    n.span,
                    format!("`{m}` is decided by `mcp.{key}`, never by `methods`; list the names in `{key}` instead"),
                );
                *ok = false;
            } else if m == "initialize" || m == "ping" || m.starts_with("notifications/") {
                self.ck.warning(
                    n.span,
                    format!("`{m}` is a lifecycle message: it always passes for authenticated callers, so no rule decides it"),
                );
            }
        }
    }

    fn arguments(&mut self, node: &Node) -> Option<Vec<ArgConstraint>> {
        let Value::Map(entries) = &node.value else {
            self.ck.error(
                node.span,
                format!(
                    "expected a mapping of argument paths to constraints for `arguments`, found {}",
                    node.kind()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for e in entries {
            let path = match crate::argpath::parse(&e.key) {
                Ok(p) => Some(p),
                Err(msg) => {
                    self.ck.error(e.key_span, msg);
                    None
                }
            };
            let test = self.arg_test(&e.key, &e.value);
            match (path, test) {
                (Some(path), Some(test)) => out.push(ArgConstraint {
                    path,
                    path_text: e.key.clone(),
                    test,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn arg_test(&mut self, path: &str, node: &Node) -> Option<ArgTest> {
        match &node.value {
            Value::Seq(items) => {
                if items.is_empty() {
                    self.ck.error(
                        node.span,
                        format!("the list of values for argument `{path}` is empty: no value could match"),
                    );
                    return None;
                }
                self.json_list(items).map(ArgTest::OneOf)
            }
            Value::Scalar(_) if node.is_null() => {
                self.ck.error(
                    node.span,
                    format!("argument `{path}` has no constraint; write a value, a list of values, or `{{ equals: null }}` to require null"),
                );
                None
            }
            Value::Scalar(_) => self.json(node).map(ArgTest::Equals),
            Value::Map(_) => {
                let what = format!("the constraint on argument `{path}`");
                let f = self.ck.fields(node, &what, CONSTRAINT_KEYS, &[])?;
                let present: Vec<&str> = CONSTRAINT_KEYS
                    .iter()
                    .copied()
                    .filter(|k| f.has(k))
                    .collect();
                let forms = usize::from(f.has("equals"))
                    + usize::from(f.has("one_of"))
                    + usize::from(f.has("glob"))
                    + usize::from(f.has("min") || f.has("max"));
                if forms == 0 {
                    if f.unknown.is_empty() {
                        self.ck.error(
                            f.span,
                            format!("{what} is empty; use one of `equals`, `one_of`, `glob`, or `min`/`max`"),
                        );
                    }
                    return None;
                }
                if forms > 1 {
                    self.ck.error(
                        f.span,
                        format!(
                            "{what} mixes {}; use exactly one of `equals`, `one_of`, `glob`, or `min`/`max` (write another rule for a second condition)",
                            present.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and ")
                        ),
                    );
                    return None;
                }
                if !f.unknown.is_empty() {
                    return None;
                }
                if let Some(n) = f.node("equals") {
                    return self.json(n).map(ArgTest::Equals);
                }
                if let Some(n) = f.node("one_of") {
                    return match &n.value {
                        Value::Seq(items) if !items.is_empty() => {
                            self.json_list(items).map(ArgTest::OneOf)
                        }
                        Value::Seq(_) => {
                            self.ck
                                .error(n.span, "`one_of` cannot be empty: no value could match");
                            None
                        }
                        _ => {
                            self.ck.error(
                                n.span,
                                format!(
                                    "expected a list of values for `one_of`, found {}",
                                    n.kind()
                                ),
                            );
                            None
                        }
                    };
                }
                if let Some(n) = f.node("glob") {
                    let l = self.ck.nonempty_list(n, "`glob`", "no value could match")?;
                    return self.globs(&l, "glob pattern").map(ArgTest::Glob);
                }
                let min = f.node("min").map(|n| (self.ck.number(n, "`min`"), n.span));
                let max = f.node("max").map(|n| (self.ck.number(n, "`max`"), n.span));
                let min_v = match min {
                    Some((None, _)) => return None,
                    Some((Some(v), _)) => Some(v),
                    None => None,
                };
                let max_v = match max {
                    Some((None, _)) => return None,
                    Some((Some(v), _)) => Some(v),
                    None => None,
                };
                if let (Some(a), Some(b), Some((_, span))) = (min_v, max_v, min) {
                    if a > b {
                        self.ck.error(
                            span,
                            format!(
                                "`min` ({a}) is greater than `max` ({b}): no value could match"
                            ),
                        );
                        return None;
                    }
                }
                Some(ArgTest::Range {
                    min: min_v,
                    max: max_v,
                })
            }
        }
    }

    fn json_list(&mut self, items: &[Node]) -> Option<Vec<serde_json::Value>> {
        self.ck.json_list(items)
    }

    fn json(&mut self, node: &Node) -> Option<serde_json::Value> {
        self.ck.json(node)
    }

    fn http(&mut self, node: &Node) -> Option<HttpMatch> {
        let f = self.ck.fields(node, "the `http` matcher", HTTP_KEYS, &[])?;
        let mut h = HttpMatch::default();
        let mut ok = true;
        if let Some(n) = f.node("methods") {
            match self.ck.nonempty_list(
                n,
                "`http.methods`",
                "an empty list would allow every method; omit `methods` to mean that",
            ) {
                Some(list) => {
                    for m in list {
                        if let Some(v) = self.http_method(&m) {
                            if !h.methods.contains(&v) {
                                h.methods.push(v);
                            }
                        } else {
                            ok = false;
                        }
                    }
                }
                None => ok = false,
            }
        }
        if let Some(n) = f.node("paths") {
            match self
                .ck
                .nonempty_list(
                    n,
                    "`http.paths`",
                    "an empty list would allow every path; omit `paths` to mean that",
                )
                .and_then(|l| {
                    let mut good = true;
                    for p in &l {
                        if !(p.value.starts_with('/') || p.value.starts_with('*')) {
                            self.ck.error(
                                p.span,
                                format!("HTTP path pattern `{}` must start with `/` (request paths always do)", p.value),
                            );
                            good = false;
                        }
                    }
                    let g = self.globs(&l, "path pattern");
                    g.filter(|_| good)
                }) {
                Some(p) => h.paths = p,
                None => ok = false,
            }
        }
        if ok && h.methods.is_empty() && h.paths.is_empty() && f.unknown.is_empty() {
            self.ck.warning(
                f.span,
                "this `http` matcher has no `methods` or `paths`: it matches every request (omit `http` to say so)",
            );
        }
        ok.then_some(h)
    }

    fn http_method(&mut self, m: &Spanned<String>) -> Option<String> {
        let v = m.value.as_str();
        if v.contains(['*', '?']) {
            self.ck.error(
                m.span,
                "HTTP methods are matched exactly, not as globs; omit `methods` to allow every method",
            );
            return None;
        }
        let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if v.is_empty() || !v.chars().all(tchar) {
            self.ck
                .error(m.span, format!("`{v}` is not a valid HTTP method"));
            return None;
        }
        let upper = v.to_ascii_uppercase();
        if !HTTP_METHODS.contains(&upper.as_str()) {
            if let Some(s) = suggest::closest(&upper, HTTP_METHODS.iter().copied()) {
                self.ck.warning(
                    m.span,
                    format!("unusual HTTP method `{v}`; did you mean `{s}`?"),
                );
            }
        }
        Some(upper)
    }
}

// ----------------------------------------------------------------- masking

/// A custom detector already defined on a target: its pattern and where.
struct CustomDetector {
    pattern: String,
    span: Span,
}

impl Lower<'_, '_> {
    /// `masking:`, a list of masking rules. `targets` are the targets that
    /// compiled (for `mask_key_env`).
    fn masking(&mut self, node: &Node, targets: &[Target]) -> Vec<MaskRule> {
        let Value::Seq(items) = &node.value else {
            self.ck.error(
                node.span,
                format!(
                    "expected a list of masking rules for `masking`, found {}",
                    node.kind()
                ),
            );
            return Vec::new();
        };
        let mut ids: HashMap<String, Span> = HashMap::new();
        // (target, detector name) → the first definition.
        let mut custom: HashMap<(String, String), CustomDetector> = HashMap::new();
        let mut out = Vec::new();
        for item in items {
            if let Some(r) = self.mask_rule(item, &mut ids, &mut custom, targets) {
                out.push(r);
            }
        }
        out
    }

    fn mask_rule(
        &mut self,
        node: &Node,
        ids: &mut HashMap<String, Span>,
        custom: &mut HashMap<(String, String), CustomDetector>,
        targets: &[Target],
    ) -> Option<MaskRule> {
        let f = self.ck.fields(node, "a masking rule", MASKING_KEYS, &[])?;
        let mut ok = f.unknown.is_empty();
        let id = self
            .ck
            .required(&f, "id", "the masking rule")
            .and_then(|n| self.ck.nonempty_string(n, "the masking rule `id`"));
        if let Some(id) = &id {
            ok &= self.check_name(id, "masking rule id", MAX_RULE_ID_LEN);
            if let Some(first) = ids.get(&id.value) {
                self.ck.error(
                    id.span,
                    format!(
                        "duplicate masking rule id `{}` (first used at {first})",
                        id.value
                    ),
                );
                ok = false;
            } else if let Some(rule) = self.rule_ids.get(&id.value) {
                self.ck.error(
                    id.span,
                    format!(
                        "masking rule id `{}` is already the id of the rule at {rule}; \
                         rules and masking rules need distinct ids (logs and audit events name them)",
                        id.value
                    ),
                );
                ok = false;
            } else {
                ids.insert(id.value.clone(), id.span);
            }
        }
        let what = match &id {
            Some(id) => format!("masking rule `{}`", id.value),
            None => "the masking rule".to_owned(),
        };
        let target = self
            .ck
            .required(&f, "target", &what)
            .and_then(|n| self.ck.nonempty_string(n, "`target`"))
            .and_then(
                |t| match self.targets.iter().find(|(n, _, _)| n == &t.value) {
                    Some((_, p, _)) => Some((t.value.clone(), *p)),
                    None => {
                        let hint = suggest::did_you_mean(
                            &t.value,
                            self.targets.iter().map(|(n, _, _)| n.as_str()),
                        );
                        self.ck
                            .error(t.span, format!("unknown target `{}`{hint}", t.value));
                        None
                    }
                },
            );
        let protocol = target.as_ref().and_then(|(_, p)| *p);
        let target_name = target.as_ref().map(|(t, _)| t.as_str()).unwrap_or("");

        let roles = match f.node("roles") {
            None => Some(Vec::new()),
            Some(n) => self.role_names(
                n,
                "`roles`",
                "an empty list would mask for every caller; omit `roles` to mean that",
            ),
        };
        let except = match f.node("except_roles") {
            None => Some(Vec::new()),
            Some(n) => self.role_names(n, "`except_roles`", "omit `except_roles` to exempt nobody"),
        };
        if let (Some(roles), Some(except)) = (&roles, &except) {
            for e in except {
                if roles.iter().any(|r| r.value == e.value) {
                    self.ck.error(
                        e.span,
                        format!(
                            "role `{}` is in both `roles` and `except_roles` of {what}: \
                             an exemption always wins, so the rule would never mask for it; \
                             remove it from one list",
                            e.value
                        ),
                    );
                    ok = false;
                }
            }
        }

        let strategy = match f.node("strategy") {
            None => Some(Spanned {
                value: Strategy::default(),
                span: f.span,
            }),
            Some(n) => self.strategy(n),
        };
        if let (Some(s), Some((t, _))) = (&strategy, &target) {
            let known = targets.iter().find(|x| &x.name == t);
            if matches!(s.value, Strategy::Hash {})
                && known.is_some_and(|x| x.mask_key_env.is_none())
            {
                self.ck.error(
                    s.span,
                    format!(
                        "strategy `hash` needs a secret key: set `mask_key_env` on target `{t}` \
                         to the name of the environment variable holding it (at least {} bytes); \
                         the key itself never goes in the policy",
                        pinhole_filter::mask::HashKey::MIN_LEN
                    ),
                );
                ok = false;
            }
        }
        let strat = strategy
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_default();
        ok &= strategy.is_some();

        let mut spec = MaskSpec::default();
        if let Some(e) = f.get("columns") {
            if let Some(p) = protocol.filter(|p| *p != Protocol::Postgres) {
                self.ck.error(
                    e.key_span,
                    format!(
                        "`columns` masks PostgreSQL result columns, but target `{target_name}` is {}: \
                         mask JSON response fields with `fields`, or use `detectors`",
                        p.as_str()
                    ),
                );
                ok = false;
            }
            match self
                .ck
                .nonempty_list(&e.value, "`columns`", "omit `columns` to mask no column")
            {
                Some(list) => {
                    for c in list {
                        let rule = ColumnRule {
                            column: c.value.clone(),
                            strategy: strat.clone(),
                        };
                        let one = MaskSpec {
                            columns: vec![rule.clone()],
                            ..MaskSpec::default()
                        };
                        let prefix = format!("columns[0] (`{}`): ", c.value);
                        if self.spec_errors(&one, &prefix, c.span, "column", &c.value) {
                            spec.columns.push(rule);
                        } else {
                            ok = false;
                        }
                    }
                }
                None => ok = false,
            }
        }
        if let Some(e) = f.get("fields") {
            if protocol == Some(Protocol::Postgres) {
                self.ck.error(
                    e.key_span,
                    format!(
                        "`fields` masks JSON fields of MCP and HTTP responses, but target `{target_name}` \
                         is postgres: mask result columns with `columns`, or use `detectors`"
                    ),
                );
                ok = false;
            }
            match self
                .ck
                .nonempty_list(&e.value, "`fields`", "omit `fields` to mask no field")
            {
                Some(list) => {
                    for p in list {
                        let rule = FieldRule {
                            path: p.value.clone(),
                            strategy: strat.clone(),
                        };
                        let one = MaskSpec {
                            fields: vec![rule.clone()],
                            ..MaskSpec::default()
                        };
                        let prefix = format!("fields[0] (`{}`): ", p.value);
                        if self.spec_errors(&one, &prefix, p.span, "field path", &p.value) {
                            spec.fields.push(rule);
                        } else {
                            ok = false;
                        }
                    }
                }
                None => ok = false,
            }
        }
        if let Some(n) = f.node("detectors") {
            match self.detectors(n, &strat, &what) {
                Some(list) => {
                    for (rule, name_span, pattern_span) in list {
                        if let (Some(pattern), Some((t, _))) = (&rule.pattern, &target) {
                            let key = (t.clone(), rule.detector.clone());
                            match custom.get(&key) {
                                Some(first) if &first.pattern != pattern => {
                                    self.ck.error(
                                        pattern_span,
                                        format!(
                                            "custom detector `{}` is already defined with another pattern \
                                             at {} for target `{t}`: masking rules of a target share \
                                             detector names; give this one another name",
                                            rule.detector, first.span
                                        ),
                                    );
                                    ok = false;
                                }
                                Some(_) => {}
                                None => {
                                    custom.insert(
                                        key,
                                        CustomDetector {
                                            pattern: pattern.clone(),
                                            span: name_span,
                                        },
                                    );
                                }
                            }
                        }
                        spec.detectors.push(rule);
                    }
                }
                None => ok = false,
            }
        }
        if let Some(e) = f.get("unmaskable") {
            if let Some(p) = protocol.filter(|p| *p != Protocol::Postgres) {
                self.ck.error(
                    e.key_span,
                    format!(
                        "`unmaskable` applies to postgres targets only (target `{target_name}` is {}: \
                         a JSON value can always hold a mask)",
                        p.as_str()
                    ),
                );
                ok = false;
            }
            match self.unmaskable(&e.value) {
                Some(u) => spec.unmaskable = u,
                None => ok = false,
            }
        }
        if !(f.has("columns") || f.has("fields") || f.has("detectors")) {
            let misspelled = ["columns", "fields", "detectors"]
                .iter()
                .any(|k| f.misspelled(k));
            if !misspelled {
                self.ck.error(
                    f.span,
                    format!("{what} masks nothing: give `columns`, `fields` or `detectors`"),
                );
            }
            ok = false;
        }
        if ok {
            // The masker's own checks, as a safety net: each item was
            // checked above with its position.
            if let Err(e) = spec.validate() {
                self.ck.error(f.span, format!("{what}: {e}"));
                ok = false;
            }
        }
        let id = id?;
        let (target, _) = target?;
        (ok && roles.is_some() && except.is_some()).then(|| MaskRule {
            id: id.value,
            target,
            roles: roles
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.value)
                .collect(),
            except_roles: except
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.value)
                .collect(),
            spec,
        })
    }

    /// Reports the errors `MaskSpec::validate` finds in a one-item spec at
    /// `span` (`prefix` is the item's name in the validator's messages).
    fn spec_errors(
        &mut self,
        one: &MaskSpec,
        prefix: &str,
        span: Span,
        what: &str,
        text: &str,
    ) -> bool {
        match one.validate() {
            Ok(()) => true,
            Err(e) => {
                for m in e.0 {
                    let m = m.strip_prefix(prefix).unwrap_or(&m);
                    self.ck.error(span, format!("invalid {what} `{text}`: {m}"));
                }
                false
            }
        }
    }

    /// Role names (known roles, deduplicated, with their positions). Unlike
    /// the roles of a rule, these do not count as uses of the role.
    fn role_names(&mut self, node: &Node, what: &str, why: &str) -> Option<Vec<Spanned<String>>> {
        let list = self.ck.nonempty_list(node, what, why)?;
        let mut ok = true;
        let mut out: Vec<Spanned<String>> = Vec::new();
        for r in list {
            if self.roles.contains(&r.value) {
                if !out.iter().any(|o| o.value == r.value) {
                    out.push(r);
                }
            } else {
                ok = false;
                let hint = suggest::did_you_mean(&r.value, self.roles.iter().map(String::as_str));
                let hint = if hint.is_empty() && self.roles.is_empty() {
                    " (the policy defines no `roles`)".to_owned()
                } else {
                    hint
                };
                self.ck
                    .error(r.span, format!("unknown role `{}`{hint}", r.value));
            }
        }
        ok.then_some(out)
    }

    /// `strategy:` — `redact`, `hash`, `{ redact: TEXT }`, `{ partial: N }`.
    fn strategy(&mut self, node: &Node) -> Option<Spanned<Strategy>> {
        let value = match &node.value {
            Value::Scalar(s) if !node.is_null() => {
                match s.text.as_str() {
                    "redact" => Strategy::Redact { text: None },
                    "hash" => Strategy::Hash {},
                    "partial" => {
                        self.ck.error(
                        node.span,
                        "`partial` needs the number of characters to keep: write `{ partial: 4 }`",
                    );
                        return None;
                    }
                    other => {
                        let hint = suggest::did_you_mean(other, STRATEGIES.iter().copied());
                        self.ck.error(
                        node.span,
                        format!("unknown masking strategy `{other}`{hint} (expected {STRATEGY_FORMS})"),
                    );
                        return None;
                    }
                }
            }
            Value::Map(_) => {
                let f = self
                    .ck
                    .fields(node, "`strategy`", &["redact", "partial", "hash"], &[])?;
                if !f.unknown.is_empty() {
                    return None;
                }
                let given: Vec<&str> = ["redact", "partial", "hash"]
                    .into_iter()
                    .filter(|k| f.has(k))
                    .collect();
                match given.as_slice() {
                    ["redact"] => {
                        let n = f.node("redact")?;
                        let t = self.ck.string(n, "the `redact` text")?;
                        Strategy::Redact {
                            text: Some(t.value),
                        }
                    }
                    ["partial"] => {
                        let n = f.node("partial")?;
                        match n.as_scalar().map(|s| s.resolve()) {
                            Some(Resolved::Int(i)) if i >= 0 => Strategy::Partial {
                                keep: usize::try_from(i).unwrap_or(usize::MAX),
                            },
                            _ => {
                                self.ck.error(
                                    n.span,
                                    format!(
                                        "expected the number of characters to keep for `partial` \
                                         (an integer, 0 or more), found {}",
                                        n.kind()
                                    ),
                                );
                                return None;
                            }
                        }
                    }
                    ["hash"] => {
                        let e = f.get("hash")?;
                        self.ck.error(
                            e.key_span,
                            "`hash` takes no options: write `strategy: hash` (the key comes from the target's `mask_key_env`)",
                        );
                        return None;
                    }
                    [] => {
                        self.ck.error(
                            node.span,
                            format!("`strategy` is empty: write {STRATEGY_FORMS}"),
                        );
                        return None;
                    }
                    _ => {
                        self.ck.error(
                            node.span,
                            format!(
                                "`strategy` gives {}: a masking rule has one strategy (write another masking rule for another)",
                                given.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and ")
                            ),
                        );
                        return None;
                    }
                }
            }
            _ => {
                self.ck.error(
                    node.span,
                    format!(
                        "expected a masking strategy for `strategy` ({STRATEGY_FORMS}), found {}",
                        node.kind()
                    ),
                );
                return None;
            }
        };
        // The masker's own limits (redaction length, `partial` range).
        let one = MaskSpec {
            detectors: vec![DetectorRule {
                detector: "email".into(),
                pattern: None,
                strategy: value.clone(),
            }],
            ..MaskSpec::default()
        };
        if let Err(e) = one.validate() {
            for m in e.0 {
                let m = m.strip_prefix("detectors[0] (`email`): ").unwrap_or(&m);
                self.ck
                    .error(node.span, format!("invalid masking strategy: {m}"));
            }
            return None;
        }
        Some(Spanned {
            value,
            span: node.span,
        })
    }

    /// `detectors:` — built-in names and `{ name, pattern }` custom
    /// detectors, each with the rule's strategy. Also returns each one's
    /// name and pattern positions.
    fn detectors(
        &mut self,
        node: &Node,
        strategy: &Strategy,
        what: &str,
    ) -> Option<Vec<(DetectorRule, Span, Span)>> {
        let items: Vec<&Node> = match &node.value {
            Value::Seq(items) if items.is_empty() => {
                self.ck.error(
                    node.span,
                    "`detectors` cannot be an empty list: omit `detectors` to run none",
                );
                return None;
            }
            Value::Seq(items) => items.iter().collect(),
            Value::Scalar(_) if !node.is_null() => vec![node],
            _ => {
                self.ck.error(
                    node.span,
                    format!(
                        "expected a detector or a list of detectors for `detectors`, found {}",
                        node.kind()
                    ),
                );
                return None;
            }
        };
        let mut ok = true;
        let mut out: Vec<(DetectorRule, Span, Span)> = Vec::new();
        for item in items {
            let Some((rule, name_span, pattern_span)) = self.detector(item, strategy) else {
                ok = false;
                continue;
            };
            if out.iter().any(|(d, _, _)| d.detector == rule.detector) {
                self.ck.error(
                    name_span,
                    format!("detector `{}` is listed twice in {what}", rule.detector),
                );
                ok = false;
                continue;
            }
            out.push((rule, name_span, pattern_span));
        }
        ok.then_some(out)
    }

    fn detector(&mut self, node: &Node, strategy: &Strategy) -> Option<(DetectorRule, Span, Span)> {
        let builtins = || Builtin::ALL.iter().map(|b| b.name());
        let (name, pattern) = match &node.value {
            Value::Map(_) => {
                let f = self
                    .ck
                    .fields(node, "a custom detector", DETECTOR_KEYS, &[])?;
                let name = self
                    .ck
                    .required(&f, "name", "the custom detector")
                    .and_then(|n| self.ck.nonempty_string(n, "the detector `name`"));
                let pattern = match f.node("pattern") {
                    None => None,
                    Some(n) => Some(self.ck.nonempty_string(n, "the detector `pattern`")?),
                };
                if !f.unknown.is_empty() {
                    return None;
                }
                (name?, pattern)
            }
            _ => (self.ck.nonempty_string(node, "a detector")?, None),
        };
        let Some(pattern) = pattern else {
            if Builtin::from_name(&name.value).is_none() {
                let hint = suggest::did_you_mean(&name.value, builtins());
                let hint = if hint.is_empty() {
                    format!(
                        " (built-in detectors: {}; a custom detector is written `{{ name: NAME, pattern: REGEX }}`)",
                        builtins().collect::<Vec<_>>().join(", ")
                    )
                } else {
                    hint
                };
                self.ck.error(
                    name.span,
                    format!("unknown detector `{}`{hint}", name.value),
                );
                return None;
            }
            let rule = DetectorRule {
                detector: name.value,
                pattern: None,
                strategy: strategy.clone(),
            };
            return Some((rule, name.span, name.span));
        };
        if Builtin::from_name(&name.value).is_some() {
            self.ck.error(
                name.span,
                format!(
                    "`{}` is a built-in detector: give the custom detector another name \
                     (or drop `pattern` to use the built-in one)",
                    name.value
                ),
            );
            return None;
        }
        let name_ok = !name.value.is_empty()
            && name.value.len() <= 64
            && name
                .value
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
        if !name_ok {
            self.ck.error(
                name.span,
                format!(
                    "invalid custom detector name `{}`: use 1 to 64 lower-case letters, digits and `_`",
                    name.value
                ),
            );
            return None;
        }
        let rule = DetectorRule {
            detector: name.value.clone(),
            pattern: Some(pattern.value.clone()),
            strategy: strategy.clone(),
        };
        let one = MaskSpec {
            detectors: vec![rule.clone()],
            ..MaskSpec::default()
        };
        let prefix = format!("detectors[0] (`{}`): ", name.value);
        if !self.spec_errors(
            &one,
            &prefix,
            pattern.span,
            "detector pattern",
            &pattern.value,
        ) {
            return None;
        }
        Some((rule, name.span, pattern.span))
    }

    /// `unmaskable: null | refuse`.
    fn unmaskable(&mut self, node: &Node) -> Option<Unmaskable> {
        let text = node.as_scalar().map(|s| s.text.as_str()).unwrap_or("");
        if text.eq_ignore_ascii_case("null") {
            return Some(Unmaskable::Null);
        }
        if text == "refuse" && !node.is_null() {
            return Some(Unmaskable::Refuse);
        }
        let hint = if text.is_empty() {
            String::new()
        } else {
            suggest::did_you_mean(text, ["null", "refuse"])
        };
        self.ck.error(
            node.span,
            format!(
                "expected `null` (the value becomes SQL NULL) or `refuse` (the result is refused) for `unmaskable`, found {}{hint}",
                if text.is_empty() { node.kind().to_owned() } else { format!("`{text}`") }
            ),
        );
        None
    }
}

// ----------------------------------------------------------------- helpers

impl Lower<'_, '_> {
    /// Names of issuers, roles and targets and rule ids: a letter or digit,
    /// then letters, digits, `-`, `_`, `.`.
    fn check_name(&mut self, s: &Spanned<String>, what: &str, max: usize) -> bool {
        let v = &s.value;
        let first_ok = v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !first_ok || !rest_ok {
            self.ck.error(
                s.span,
                format!("invalid {what} `{v}`: use letters, digits, `-`, `_` and `.`, starting with a letter or digit"),
            );
            return false;
        }
        if v.len() > max {
            self.ck.error(
                s.span,
                format!("{what} `{v}` is longer than {max} characters"),
            );
            return false;
        }
        true
    }

    /// Non-empty strings; errors for empty ones.
    fn nonempty_items(&mut self, list: &[Spanned<String>], what: &str) -> Option<Vec<String>> {
        let mut ok = true;
        let mut out = Vec::with_capacity(list.len());
        for s in list {
            if s.value.is_empty() {
                self.ck.error(s.span, format!("{what} cannot be empty"));
                ok = false;
            } else {
                out.push(s.value.clone());
            }
        }
        ok.then_some(out)
    }

    /// Glob patterns (see `pinhole_filter::glob`): non-empty, no dangling
    /// `\` at the end.
    fn globs(&mut self, list: &[Spanned<String>], what: &str) -> Option<Vec<String>> {
        let mut ok = true;
        let mut out = Vec::with_capacity(list.len());
        for s in list {
            if let Err(msg) = check_glob(&s.value) {
                self.ck
                    .error(s.span, format!("invalid {what} `{}`: {msg}", s.value));
                ok = false;
            } else {
                out.push(s.value.clone());
            }
        }
        ok.then_some(out)
    }
}

/// An environment variable name: letters, digits and `_`, not starting
/// with a digit.
fn env_name_ok(env: &str) -> bool {
    !env.is_empty()
        && env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !env.starts_with(|c: char| c.is_ascii_digit())
}

/// Glob syntax check: the matcher accepts anything, so this catches what is
/// certainly a mistake.
pub fn check_glob(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("an empty pattern matches only the empty string".into());
    }
    let mut escaped = false;
    for c in p.chars() {
        escaped = !escaped && c == '\\';
    }
    if escaped {
        return Err("it ends with a lone `\\` (escape it as `\\\\`)".into());
    }
    Ok(())
}

/// A value shown in an error about a field that may hold a secret by
/// mistake: only its first and last characters.
pub(crate) fn redact_hint(v: &str) -> String {
    let n = v.chars().count();
    if n <= 4 {
        return "*".repeat(n);
    }
    let first: String = v.chars().take(2).collect();
    let last: String = v.chars().skip(n - 2).collect();
    format!("{first}…{last}")
}
