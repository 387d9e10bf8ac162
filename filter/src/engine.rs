//! The host-free request pipeline: plugin configuration → loaded policy,
//! `Authorization` header → verified identity, request → decision, and the
//! canned replies the host sends. The proxy-wasm layer in `host` only moves
//! bytes between Envoy and these functions.

use std::cell::RefCell;
use std::rc::Rc;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use crate::grant::{self, Fingerprint, GrantSet};
use crate::identity::roles::RolesMemo;
use crate::identity::{self, AuthError, Elevated, Identity, TokenCache, Verifier};
use crate::pg::cache::SqlCache;
use crate::pg::session::{Authority, Backend};
use crate::pg::sql::{StatementInfo, StatementKind};
use crate::policy::blob;
use crate::policy::eval::{self, Decision, Item, Request};
use crate::policy::index::RuleIndex;
use crate::policy::{Effect, Policy, Protocol, Target};

/// Verified tokens kept per worker VM.
pub const TOKEN_CACHE_CAPACITY: usize = 1024;
/// SQL classifications kept per worker VM.
pub const SQL_CACHE_CAPACITY: usize = 2048;
/// Longest `Authorization` header considered (a JWT is far shorter).
pub const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;

/// Headers carrying the verified identity to the upstream. Any client-sent
/// header with this prefix is removed first.
pub const IDENTITY_HEADER_PREFIX: &str = "x-pinhole-";
pub const HEADER_SUBJECT: &str = "x-pinhole-subject";
pub const HEADER_ISSUER: &str = "x-pinhole-issuer";
pub const HEADER_ROLES: &str = "x-pinhole-roles";

/// The filter's plugin configuration (a JSON `StringValue` in Envoy).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Name of the policy target this filter instance protects.
    pub target: String,
    /// The compiled policy blob, base64 (standard alphabet, padded).
    pub policy: String,
    /// Which Envoy filter this instance is: `http` (an
    /// `envoy.filters.http.wasm`, the default) or `postgres` (an
    /// `envoy.filters.network.wasm` before `tcp_proxy`). Stated here so the
    /// filter knows its kind even when the policy fails to load.
    #[serde(default)]
    pub listener: Listener,
    /// Where audit events go besides Envoy's log (optional).
    #[serde(default)]
    pub audit: Option<AuditSink>,
    /// The policy publisher's Ed25519 public key, base64 (optional). When
    /// set, only blobs signed with it load (docs/policy.md §13).
    #[serde(default)]
    pub publisher_key: Option<String>,
    /// Where commands held for review are announced (optional).
    #[serde(default)]
    pub review_webhook: Option<ReviewWebhook>,
}

/// The review webhook: each command held by a `review` rule is POSTed
/// (JSON, see [`review_notice`]) to an Envoy cluster, once per request id
/// per worker within [`REVIEW_NOTICE_QUIET_MS`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewWebhook {
    /// The Envoy cluster of the receiver.
    pub cluster: String,
    /// Request path (default `/`).
    #[serde(default = "default_audit_path")]
    pub path: String,
    /// `:authority` of the POST (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
}

/// A held request is announced again after this long (ms) if asked again.
pub const REVIEW_NOTICE_QUIET_MS: u64 = 60_000;

/// The review webhook named by a plugin configuration.
pub fn review_webhook_of_config(bytes: &[u8]) -> Option<ReviewWebhook> {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(default)]
        review_webhook: Option<ReviewWebhook>,
    }
    serde_json::from_slice::<Peek>(bytes)
        .ok()
        .and_then(|p| p.review_webhook)
}

/// The body POSTed to the review webhook for a held command:
/// `{"type":"pinhole.review","request":…,"rule":…,"text":…,"approve":…,
/// "event":<the audit event>}`. `pinhole approve --from` reads it.
pub fn review_notice(approval: &Approval, d: &Decision, event_line: Option<&str>) -> Vec<u8> {
    let event =
        event_line.and_then(|l| serde_json::from_str::<Box<serde_json::value::RawValue>>(l).ok());
    let body = json!({
        "type": "pinhole.review",
        "request": approval.request,
        "fingerprint": approval.fingerprint,
        "rule": d.rule,
        "text": d.reason,
        "approve": format!("pinhole approve {} --from <this notice or the audit log> --key <your key> --policy <policy.yaml>", approval.request),
        "event": event,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The HTTP audit sink: events are batched per worker and POSTed as JSON
/// lines to an Envoy cluster (any collector that accepts HTTP JSON).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSink {
    /// The Envoy cluster of the collector.
    pub cluster: String,
    /// Request path (default `/`).
    #[serde(default = "default_audit_path")]
    pub path: String,
    /// `:authority` of the POST (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Events held per worker while the collector is slow or down (bytes;
    /// default 1 MiB). Beyond it events are dropped and counted
    /// (`pinhole.audit_dropped`), or — in strict mode — new commands are
    /// refused.
    #[serde(default = "default_audit_buffer")]
    pub buffer_bytes: usize,
    /// Largest batch per POST (bytes; default 64 KiB).
    #[serde(default = "default_audit_batch")]
    pub batch_bytes: usize,
    /// How often a worker sends what it holds (ms; default 1000).
    #[serde(default = "default_audit_flush")]
    pub flush_ms: u64,
    /// Refuse new commands when events cannot be delivered and the buffer
    /// is full, instead of running them unaudited.
    #[serde(default)]
    pub strict: bool,
}

fn default_audit_path() -> String {
    "/".into()
}
fn default_audit_buffer() -> usize {
    1024 * 1024
}
fn default_audit_batch() -> usize {
    64 * 1024
}
fn default_audit_flush() -> u64 {
    1000
}

/// The audit sink named by a plugin configuration, even one whose policy
/// does not load.
pub fn audit_sink_of_config(bytes: &[u8]) -> Option<AuditSink> {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(default)]
        audit: Option<AuditSink>,
    }
    serde_json::from_slice::<Peek>(bytes)
        .ok()
        .and_then(|p| p.audit)
}

/// The kind of Envoy filter an instance runs as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Listener {
    #[default]
    Http,
    Postgres,
}

/// The `target` named by a plugin configuration, even one whose policy
/// does not load.
pub fn target_of_config(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek {
        target: String,
    }
    serde_json::from_slice::<Peek>(bytes).ok().map(|p| p.target)
}

impl Listener {
    /// The listener kind named in a plugin configuration, even one whose
    /// policy does not load (`Http` when unreadable).
    pub fn of_config(bytes: &[u8]) -> Listener {
        #[derive(Deserialize)]
        struct Peek {
            #[serde(default)]
            listener: Listener,
        }
        serde_json::from_slice::<Peek>(bytes)
            .map(|p| p.listener)
            .unwrap_or_default()
    }
}

/// The masker of one role set (`None`: nothing to mask for it).
type MaskerFor = Option<Rc<crate::mask::Masker>>;

/// A loaded policy, ready to decide requests for one target.
pub struct Engine {
    pub target: Target,
    pub policy: Policy,
    /// Hex SHA-256 of the blob payload.
    pub digest: String,
    verifier: Verifier,
    cache: RefCell<TokenCache>,
    /// Postgres targets: the backend credentials, or why they are missing.
    backend: Result<Backend, String>,
    sql_cache: RefCell<SqlCache>,
    /// The HMAC key of `hash` masking (from the target's `mask_key_env`).
    mask_key: Option<crate::mask::HashKey>,
    /// Maskers by the caller's roles (a few role sets per policy).
    maskers: RefCell<Vec<(Vec<String>, MaskerFor)>>,
    /// The policy's grants that passed their checks.
    pub grants: GrantSet,
    /// The policy's grants that did not, for the operator's log.
    pub rejected_grants: Vec<grant::Rejected>,
    /// The target's rules indexed by role and item (decisions cost the
    /// same with 10 or 10,000 rules), and the roles of recent tokens.
    index: RuleIndex,
    roles_memo: RolesMemo,
}

/// A decision, and what approvals had to do with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub decision: Decision,
    /// Set when a `review` rule held the command: its request id, and the
    /// grant that let it through, if one did.
    pub approval: Option<Approval>,
    /// Roles the caller held through elevation grants when deciding.
    pub elevated: Vec<Elevated>,
}

impl Decided {
    pub fn plain(decision: Decision) -> Decided {
        Decided {
            decision,
            approval: None,
            elevated: Vec::new(),
        }
    }

    pub fn allowed(&self) -> bool {
        self.decision.allowed()
    }
}

/// A command held by a review rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Approval {
    // Fields in key order: audit events serialize it canonically.
    /// The command's fingerprint (64 hex digits).
    pub fingerprint: String,
    /// The grant that approved it; `None`: held (refused).
    pub grant: Option<GrantUse>,
    /// The request id the caller is given (`pinhole approve <request>`).
    pub request: String,
}

/// The grant an approval used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GrantUse {
    // Fields in key order: audit events serialize it canonically.
    pub approver: String,
    /// Seconds since the Unix epoch.
    pub expires: u64,
    pub id: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("target", &self.target.name)
            .field("digest", &self.digest)
            .finish()
    }
}

impl Engine {
    /// Load the plugin configuration. Every failure is a human sentence for
    /// the operator's log; the host then refuses all traffic (fail closed).
    pub fn from_plugin_config(bytes: &[u8]) -> Result<Engine, String> {
        if bytes.is_empty() {
            return Err(
                "no plugin configuration: set the filter's `configuration` to \
                 {\"target\": \"<target>\", \"policy\": \"<base64 blob>\"}"
                    .into(),
            );
        }
        let cfg: PluginConfig = serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "plugin configuration is not valid JSON of the form \
                 {{\"target\": \"<target>\", \"policy\": \"<base64 blob>\"}}: {e}"
            )
        })?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(cfg.policy.trim().as_bytes())
            .map_err(|e| format!("plugin configuration `policy` is not valid base64: {e}"))?;
        if let Some(key) = &cfg.publisher_key {
            let pk = blob::public_key_from_base64(key)
                .map_err(|e| format!("plugin configuration `publisher_key` {e}"))?;
            blob::verify(&raw, &pk).map_err(|e| e.to_string())?;
        }
        let engine = Engine::from_blob_with_env(&raw, &cfg.target, &|k| std::env::var(k).ok())?;
        let want = match cfg.listener {
            Listener::Http => "an http or mcp",
            Listener::Postgres => "a postgres",
        };
        let fits = match cfg.listener {
            Listener::Http => engine.target.protocol != Protocol::Postgres,
            Listener::Postgres => engine.target.protocol == Protocol::Postgres,
        };
        if !fits {
            return Err(format!(
                "plugin configuration says `listener: {:?}`, which needs {want} target, but target `{}` is {}",
                cfg.listener,
                engine.target.name,
                engine.target.protocol.as_str()
            ));
        }
        Ok(engine)
    }

    /// Load a blob for `target` (backend passwords from the process
    /// environment).
    pub fn from_blob(raw: &[u8], target: &str) -> Result<Engine, String> {
        Engine::from_blob_with_env(raw, target, &|k| std::env::var(k).ok())
    }

    /// Load a blob for `target`, reading environment variables through
    /// `env`.
    pub fn from_blob_with_env(
        raw: &[u8],
        target: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Engine, String> {
        let b = blob::decode(raw).map_err(|e| e.to_string())?;
        let t = b.policy.target(target).cloned().ok_or_else(|| {
            let known: Vec<&str> = b.policy.targets.iter().map(|t| t.name.as_str()).collect();
            format!(
                "plugin configuration names target `{target}`, which policy {} does not define \
                 (targets: {known:?})",
                short_digest(&b.digest)
            )
        })?;
        let verifier = Verifier::new(&b.policy)
            .map_err(|e| format!("policy {}: {e}", short_digest(&b.digest)))?;
        let backend = resolve_backend(&t, env);
        if let (Protocol::Postgres, Err(e)) = (t.protocol, &backend) {
            return Err(format!("policy {}: {e}", short_digest(&b.digest)));
        }
        let mask_key = match &t.mask_key_env {
            None => None,
            Some(var) => match env(var) {
                Some(k) => Some(crate::mask::HashKey::new(k.into_bytes()).map_err(|e| {
                    format!(
                        "policy {}: mask key in `{var}`: {e}",
                        short_digest(&b.digest)
                    )
                })?),
                None => {
                    return Err(format!(
                        "policy {}: target `{}` takes its masking key from environment variable \
                         `{var}`, which is not set in the Wasm VM (add it to \
                         `vm_config.environment_variables`)",
                        short_digest(&b.digest),
                        t.name
                    ))
                }
            },
        };
        let (grants, rejected_grants) = GrantSet::load(&b.policy);
        let index = RuleIndex::build(&b.policy, &t.name);
        Ok(Engine {
            index,
            roles_memo: RolesMemo::default(),
            target: t,
            policy: b.policy,
            digest: b.digest,
            verifier,
            cache: RefCell::new(TokenCache::new(TOKEN_CACHE_CAPACITY)),
            backend,
            sql_cache: RefCell::new(SqlCache::new(SQL_CACHE_CAPACITY)),
            mask_key,
            maskers: RefCell::new(Vec::new()),
            grants,
            rejected_grants,
        })
    }

    /// Verify the caller's `Authorization` header (cache first), check
    /// revocation against the current policy on every call, map to roles.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        now: u64,
    ) -> Result<Identity, AuthError> {
        let token = bearer_token(authorization)?;
        self.authenticate_token(token, now)
    }

    /// Verify a bare token (cache first), check revocation, map to roles.
    pub fn authenticate_token(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        if token.len() > MAX_AUTHORIZATION_LEN {
            return Err(AuthError::Malformed);
        }
        let cached = self
            .cache
            .try_borrow()
            .ok()
            .and_then(|c| c.get_shared(token, now));
        let verified = match cached {
            Some(v) => v,
            None => {
                let v = Rc::new(self.verifier.verify(token, now)?);
                if let Ok(mut c) = self.cache.try_borrow_mut() {
                    c.insert_shared(token, Rc::clone(&v), now);
                }
                v
            }
        };
        identity::jwt::check_revoked(&self.policy, &verified)?;
        let roles = self.roles_memo.roles_for(&self.policy, &verified);
        let mut who = Identity {
            token: verified,
            roles,
            elevated: Vec::new(),
        };
        elevate(&self.grants, &mut who, now);
        Ok(who)
    }

    /// Expiry (with the issuer's leeway) and revocation under this policy.
    pub fn recheck(&self, who: &Identity, now: u64) -> Result<(), AuthError> {
        let leeway = self
            .policy
            .issuers
            .iter()
            .find(|i| i.name == who.token.issuer_name)
            .map(|i| i.leeway_secs)
            .unwrap_or(0);
        if now > who.token.exp.saturating_add(leeway) {
            return Err(AuthError::Expired);
        }
        identity::jwt::check_revoked(&self.policy, &who.token)
    }

    /// Decide a SQL text with this policy's grants (see
    /// [`Engine::decide_sql_with`]).
    pub fn decide_sql(&self, who: &Identity, sql: &str, now: u64) -> Decided {
        self.decide_sql_with(&self.grants, who, sql, now)
    }

    /// Decide a SQL text at `now`: elevations held then, and a review
    /// rule's hold lifted by an approval of this exact text.
    pub fn decide_sql_with(
        &self,
        grants: &GrantSet,
        who: &Identity,
        sql: &str,
        now: u64,
    ) -> Decided {
        let who = identity_at(grants, who, now);
        let d = self.decide_sql_roles(&who, sql);
        self.settle(grants, &who, d, Fingerprint::Sql(sql), now)
    }

    /// Decide any request at `now` with this policy's grants.
    pub fn decide_at(&self, who: &Identity, req: &Request, now: u64) -> Decided {
        let d = eval::evaluate_indexed(
            &self.policy,
            &self.index,
            &who.roles,
            &self.target.name,
            req,
        );
        let fp = match *req {
            Request::ToolCall { name, arguments } => Fingerprint::Tool { name, arguments },
            Request::Resource { uri } => Fingerprint::Mcp {
                method: "resources",
                subject: uri,
            },
            Request::Prompt { name } => Fingerprint::Mcp {
                method: "prompts/get",
                subject: name,
            },
            Request::McpMethod { method } => Fingerprint::Mcp {
                method,
                subject: "",
            },
            Request::Http { method, path } => Fingerprint::Http { method, path },
            Request::Sql { statement } => Fingerprint::Sql(&statement.text),
        };
        self.settle(&self.grants, who, d, fp, now)
    }

    /// A review decision becomes an allow when a live approval of this
    /// command exists, else a refusal naming the request id to approve.
    fn settle(
        &self,
        grants: &GrantSet,
        who: &Identity,
        d: Decision,
        fp: Fingerprint,
        now: u64,
    ) -> Decided {
        let elevated = who.elevated.clone();
        let (Effect::Review, Some(rule)) = (d.effect, d.rule.as_deref()) else {
            return Decided {
                decision: d,
                approval: None,
                elevated,
            };
        };
        let fingerprint = fp.hex();
        let request = grant::request_id(
            &who.token.issuer_name,
            &who.token.sub,
            &self.target.name,
            rule,
            &fingerprint,
        );
        if let Some(g) = grants.approval(&who.token, &self.target.name, rule, &fingerprint, now) {
            let c = &g.claims;
            let decision = Decision {
                effect: Effect::Allow,
                rule: d.rule.clone(),
                reason: format!(
                    "{}; approved by `{}` (grant {}, request {request}, valid until {})",
                    d.reason,
                    c.approver,
                    c.id,
                    crate::audit::Rfc3339Millis(c.expires.saturating_mul(1000))
                ),
            };
            return Decided {
                decision,
                approval: Some(Approval {
                    request,
                    fingerprint,
                    grant: Some(GrantUse {
                        id: c.id.clone(),
                        approver: c.approver.clone(),
                        expires: c.expires,
                    }),
                }),
                elevated,
            };
        }
        let who_may = match self.policy.review(rule) {
            Some(r) if !r.approvers.is_empty() => format!(
                "ask an approver of {} to run `pinhole approve {request}`",
                r.approvers
                    .iter()
                    .map(|g| format!("`{g}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            _ => format!(
                "no approvers are configured for rule `{rule}`, so it cannot be approved; ask                  the policy's authors"
            ),
        };
        let decision = Decision {
            effect: Effect::Review,
            rule: d.rule.clone(),
            reason: format!(
                "{}; request {request}: {who_may}, then run the same command again",
                d.reason
            ),
        };
        Decided {
            decision,
            approval: Some(Approval {
                request,
                fingerprint,
                grant: None,
            }),
            elevated,
        }
    }

    /// Decide a SQL text on this (postgres) target with the caller's roles
    /// as they are: every statement, with classifications cached by
    /// normalized text.
    fn decide_sql_roles(&self, who: &Identity, sql: &str) -> Decision {
        let evaluate = |statements: &[StatementInfo]| {
            eval::decide_statements_indexed(
                &self.policy,
                &self.index,
                &who.roles,
                &self.target.name,
                statements,
            )
        };
        let decided = match self.sql_cache.try_borrow_mut() {
            Ok(mut c) => c.decide(sql, &who.roles, evaluate),
            Err(_) => crate::pg::sql::classify(sql).map(|s| evaluate(&s)),
        };
        match decided {
            Ok(d) if d.allowed() => d,
            // A refusal quotes the statement: judge the exact text so the
            // message shows the caller's literals, not a cached shape's.
            Ok(_) => eval::evaluate_sql_indexed(
                &self.policy,
                &self.index,
                &who.roles,
                &self.target.name,
                sql,
            ),
            Err(e) => Decision {
                effect: Effect::Deny,
                rule: None,
                reason: format!("the SQL could not be parsed: {e}"),
            },
        }
    }

    /// The masker for a caller's roles on this target (`Ok(None)`: nothing
    /// to mask), built once per role set.
    pub fn masker(&self, roles: &[String]) -> Result<Option<Rc<crate::mask::Masker>>, String> {
        if let Ok(cache) = self.maskers.try_borrow() {
            if let Some((_, m)) = cache.iter().find(|(r, _)| r.as_slice() == roles) {
                return Ok(m.clone());
            }
        }
        let spec = crate::policy::mask_spec_for(&self.policy, &self.target.name, roles);
        let masker = if spec.is_empty() {
            None
        } else {
            let m = crate::mask::Masker::new(&spec, self.mask_key.as_ref())
                .map_err(|e| format!("masking rules of target `{}`: {e}", self.target.name))?;
            Some(Rc::new(m))
        };
        if let Ok(mut cache) = self.maskers.try_borrow_mut() {
            if cache.len() < 64 {
                cache.push((roles.to_vec(), masker.clone()));
            }
        }
        Ok(masker)
    }

    /// `(hits, misses)` of the SQL classification cache.
    pub fn sql_cache_stats(&self) -> (u64, u64) {
        self.sql_cache
            .try_borrow()
            .map(|c| c.stats())
            .unwrap_or_default()
    }

    pub fn decide(&self, who: &Identity, req: &Request) -> Decision {
        eval::evaluate_indexed(
            &self.policy,
            &self.index,
            &who.roles,
            &self.target.name,
            req,
        )
    }

    pub fn visible(&self, who: &Identity, item: Item) -> bool {
        eval::visible_indexed(
            &self.policy,
            &self.index,
            &who.roles,
            &self.target.name,
            item,
        )
    }

    /// Headers to add upstream for this identity.
    pub fn identity_headers(&self, who: &Identity) -> Vec<(&'static str, String)> {
        vec![
            (HEADER_SUBJECT, header_safe(&who.token.sub)),
            (HEADER_ISSUER, header_safe(&who.token.issuer_name)),
            (HEADER_ROLES, header_safe(&who.roles.join(","))),
        ]
    }
}

/// The edits that turn the caller's request `headers` (Envoy's lowercase
/// names, in order) into what the upstream receives: every `x-pinhole-*`
/// header the caller sent goes (the upstream trusts them), `authorization`
/// when `drop_token`, `accept-encoding` when `drop_encoding` (responses that
/// must be read are asked for uncompressed), and the verified `identity`
/// headers are set. `(name, None)` removes every value of `name`, `(name,
/// Some(v))` replaces them with `v`. Only names present are removed, and a
/// name that is set is not removed first: each edit is a host call.
pub fn upstream_header_edits<'a>(
    headers: &'a [(String, String)],
    drop_token: bool,
    drop_encoding: bool,
    identity: &'a [(&'static str, String)],
) -> Vec<(&'a str, Option<&'a str>)> {
    let mut edits: Vec<(&str, Option<&str>)> = Vec::with_capacity(identity.len() + 2);
    for (name, _) in headers {
        let n = name.as_bytes();
        let prefixed = n
            .get(..IDENTITY_HEADER_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(IDENTITY_HEADER_PREFIX.as_bytes()));
        let drop = (prefixed
            && !identity
                .iter()
                .any(|(k, _)| k.as_bytes().eq_ignore_ascii_case(n)))
            || (drop_token && n.eq_ignore_ascii_case(b"authorization"))
            || (drop_encoding && n.eq_ignore_ascii_case(b"accept-encoding"));
        if drop
            && !edits
                .iter()
                .any(|(k, _)| k.as_bytes().eq_ignore_ascii_case(n))
        {
            edits.push((name.as_str(), None));
        }
    }
    edits.extend(identity.iter().map(|(k, v)| (*k, Some(v.as_str()))));
    edits
}

/// Add the roles of live elevation grants to a caller holding only its
/// claims' roles.
pub fn elevate(grants: &GrantSet, who: &mut Identity, now: u64) {
    if grants.is_empty() {
        return;
    }
    let add: Vec<Elevated> = grants
        .elevations(&who.token, &who.roles, now)
        .into_iter()
        .filter_map(|g| {
            let role = g.claims.role.clone()?;
            (!who.roles.contains(&role)).then(|| Elevated {
                role,
                grant: g.claims.id.clone(),
                approver: g.claims.approver.clone(),
                until: g.claims.expires,
            })
        })
        .collect();
    for e in add {
        who.roles.push(e.role.clone());
        who.elevated.push(e);
    }
}

/// The caller as of `now`: elevations that ended are gone, live ones (also
/// those granted since the caller was verified) are added.
pub fn identity_at<'a>(
    grants: &GrantSet,
    who: &'a Identity,
    now: u64,
) -> std::borrow::Cow<'a, Identity> {
    use std::borrow::Cow;
    // The common case costs one hash lookup: no elevation held, and no
    // grant names the caller.
    if who.elevated.is_empty() && !grants.has_subject(&who.token.sub) {
        return Cow::Borrowed(who);
    }
    let mut fresh = Identity {
        token: Rc::clone(&who.token),
        roles: who.base_roles(),
        elevated: Vec::new(),
    };
    elevate(grants, &mut fresh, now);
    if fresh == *who {
        Cow::Borrowed(who)
    } else {
        Cow::Owned(fresh)
    }
}

/// The shared-data key under which every configuration of a plugin
/// publishes its policy's revocations, so connections opened under an older
/// configuration (which keep it until they close) still honour the newest.
pub fn revocations_key(plugin: &str) -> String {
    format!("pinhole/revoked/{plugin}")
}

/// The shared-data key holding the plugin configuration of the last policy
/// that loaded, kept in force when a newer one fails to load.
pub fn last_good_key(plugin: &str) -> String {
    format!("pinhole/last-good/{plugin}")
}

/// What a configuration publishes under [`revocations_key`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Published {
    /// Digest of the policy the list comes from.
    pub digest: String,
    pub revoked: crate::policy::Revocations,
    /// The policy's grants that passed their checks: open sessions started
    /// under an older policy honour the newest approvals and elevations.
    #[serde(default)]
    pub grants: Vec<grant::Grant>,
}

impl Engine {
    /// This policy's revocations, for [`revocations_key`].
    pub fn published(&self) -> Vec<u8> {
        serde_json::to_vec(&Published {
            digest: self.digest.clone(),
            revoked: self.policy.revoked.clone(),
            grants: self.grants.grants().to_vec(),
        })
        .unwrap_or_default()
    }
}

/// An engine seen through the newest published revocations: a session
/// keeps deciding with the policy it started under, but a subject or token
/// revoked by any newer policy is refused at its next statement.
pub struct WithNewest<'a> {
    pub engine: &'a Engine,
    pub newest: Option<&'a Published>,
    /// The grants of `newest` (indexed once per change by the host).
    pub newest_grants: Option<&'a GrantSet>,
    /// Strict audit mode with a full buffer: every command is refused.
    pub audit_full: bool,
}

/// The refusal while strict audit mode cannot record more events.
pub fn audit_full_decision() -> Decision {
    Decision {
        effect: Effect::Deny,
        rule: None,
        reason: "the audit trail cannot take more events (strict mode): commands are refused \
                 until the audit collector catches up"
            .into(),
    }
}

impl Authority for WithNewest<'_> {
    fn backend(&self) -> Result<&Backend, String> {
        Authority::backend(self.engine)
    }
    fn authenticate(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        let who = self.engine.authenticate_token(token, now)?;
        if let Some(p) = self.newest {
            identity::jwt::check_revoked_in(&p.revoked, &who.token)?;
        }
        Ok(who)
    }
    fn recheck(&self, who: &Identity, now: u64) -> Result<(), AuthError> {
        self.engine.recheck(who, now)?;
        match self.newest {
            Some(p) if p.digest != self.engine.digest => {
                identity::jwt::check_revoked_in(&p.revoked, &who.token)
            }
            _ => Ok(()),
        }
    }
    fn decide_sql(&self, who: &Identity, sql: &str, now: u64) -> Decided {
        if self.audit_full {
            return Decided::plain(audit_full_decision());
        }
        let grants = match (self.newest, self.newest_grants) {
            (Some(p), Some(g)) if p.digest != self.engine.digest => g,
            _ => &self.engine.grants,
        };
        self.engine.decide_sql_with(grants, who, sql, now)
    }
    fn decide_function_call(&self, who: &Identity, oid: u32, now: u64) -> Decided {
        if self.audit_full {
            return Decided::plain(audit_full_decision());
        }
        Authority::decide_function_call(self.engine, who, oid, now)
    }
    fn masker(&self, who: &Identity) -> Result<Option<Rc<crate::mask::Masker>>, String> {
        self.engine.masker(&who.roles)
    }
}

impl Authority for Engine {
    fn masker(&self, who: &Identity) -> Result<Option<Rc<crate::mask::Masker>>, String> {
        Engine::masker(self, &who.roles)
    }

    fn backend(&self) -> Result<&Backend, String> {
        if self.target.protocol != Protocol::Postgres {
            return Err(format!(
                "target `{}` is a {} target; a PostgreSQL listener needs a postgres target",
                self.target.name,
                self.target.protocol.as_str()
            ));
        }
        self.backend.as_ref().map_err(Clone::clone)
    }

    fn authenticate(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        self.authenticate_token(token, now)
    }

    fn recheck(&self, who: &Identity, now: u64) -> Result<(), AuthError> {
        Engine::recheck(self, who, now)
    }

    fn decide_sql(&self, who: &Identity, sql: &str, now: u64) -> Decided {
        Engine::decide_sql(self, who, sql, now)
    }

    fn decide_function_call(&self, who: &Identity, oid: u32, now: u64) -> Decided {
        let statement = StatementInfo::new(
            StatementKind::FunctionCall,
            format!("<fast-path call of function oid {oid}>"),
        );
        let who = identity_at(&self.grants, who, now);
        self.decide_at(
            &who,
            &Request::Sql {
                statement: &statement,
            },
            now,
        )
    }
}

/// The backend credentials of a postgres target, the password read from
/// the environment variable the target names.
fn resolve_backend(t: &Target, env: &dyn Fn(&str) -> Option<String>) -> Result<Backend, String> {
    let user = t.backend_user.clone().ok_or_else(|| {
        format!(
            "target `{}` has no `backend_user`: recompile the policy with a current `pinhole`",
            t.name
        )
    })?;
    let password = match &t.backend_password_env {
        None => None,
        Some(var) => match env(var) {
            Some(p) if !p.is_empty() => Some(p),
            _ => {
                return Err(format!(
                    "target `{}` takes the backend password from environment variable `{var}`, \
                     which is not set in the Wasm VM: add it to the filter's \
                     `vm_config.environment_variables` (`host_env_keys: [{var}]` passes Envoy's own \
                     environment, `key_values` sets it inline)",
                    t.name
                ))
            }
        },
    };
    Ok(Backend {
        user,
        password,
        database: t.backend_database.clone(),
        target: t.name.clone(),
    })
}

pub fn short_digest(d: &str) -> &str {
    d.get(..12).unwrap_or(d)
}

/// Extract the token from `Authorization: Bearer <token>` (RFC 6750: scheme
/// case-insensitive, token68 characters only).
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let h = header.ok_or(AuthError::Missing)?;
    if h.len() > MAX_AUTHORIZATION_LEN {
        return Err(AuthError::Malformed);
    }
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let token = rest.trim_start();
    // Byte by byte: a non-ASCII character has no byte that passes.
    let token68 = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b);
    if token.is_empty() || !token.as_bytes().iter().all(token68) {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// The path a plain-HTTP rule is matched against: `:path` without query
/// and fragment. Paths the upstream might resolve differently from the
/// literal text (dot segments, encoded `/`, `\` or `.`, backslashes, a
/// missing leading `/`) are refused rather than guessed at, so a rule on
/// `/v1/pods/*` cannot be walked around with `/v1/pods/..%2fadmin`. Envoy's
/// `normalize_path` and `merge_slashes` (set in envoy/http.yaml) resolve the
/// harmless cases before the filter runs.
pub fn http_rule_path(raw: &str) -> Result<&str, String> {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(format!(
            "request path `{}` does not start with `/`",
            header_safe(path)
        ));
    }
    let lower = path.to_ascii_lowercase();
    for bad in ["%2f", "%5c", "%2e", "\\"] {
        if lower.contains(bad) {
            return Err(format!(
                "request path `{}` contains `{bad}`, which the upstream may decode into a different path",
                header_safe(path)
            ));
        }
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!(
            "request path `{}` contains a dot segment",
            header_safe(path)
        ));
    }
    Ok(path)
}

/// Make a value safe for an HTTP header: visible ASCII and space pass,
/// everything else is percent-encoded (as is `%`).
pub fn header_safe(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A reply the filter sends itself instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn json_reply(status: u32, extra: Vec<(String, String)>, body: serde_json::Value) -> Reply {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    headers.extend(extra);
    Reply {
        status,
        headers,
        body: body.to_string().into_bytes(),
    }
}

/// 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3).
pub fn unauthorized(err: &AuthError) -> Reply {
    let reason = err.reason();
    let challenge = if matches!(err, AuthError::Missing) {
        r#"Bearer realm="pinhole""#.to_string()
    } else {
        format!(r#"Bearer realm="pinhole", error="invalid_token", error_description="{reason}""#)
    };
    json_reply(
        401,
        vec![("www-authenticate".into(), challenge)],
        json!({"error": "unauthorized", "reason": reason}),
    )
}

/// 403 for a refused plain-HTTP request.
pub fn forbidden(d: &Decision) -> Reply {
    let error = if d.effect == Effect::Review {
        "approval_required"
    } else {
        "forbidden"
    };
    json_reply(
        403,
        vec![],
        json!({"error": error, "rule": d.rule, "reason": d.reason}),
    )
}

/// 503 while no valid policy is loaded.
pub fn unavailable(reason: &str) -> Reply {
    json_reply(
        503,
        vec![],
        json!({"error": "policy_unavailable", "reason": reason}),
    )
}

/// 502 when an upstream response that must be filtered cannot be.
pub fn bad_upstream(reason: &str) -> Reply {
    json_reply(
        502,
        vec![],
        json!({"error": "upstream_response_refused", "reason": reason}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_header_edits_drop_client_identity_token_and_encoding() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect()
        };
        let headers = h(&[
            (":method", "POST"),
            ("authorization", "Bearer t"),
            ("x-pinhole-subject", "root"),
            ("x-pinhole-subject", "root2"),
            ("X-Pinhole-Roles", "admin"),
            ("x-pinhole-anything", "1"),
            ("x-pinhole-anything", "2"),
            ("x-pinhol", "kept: not the prefix"),
            ("accept-encoding", "gzip"),
            ("cookie", "a=1"),
        ]);
        let identity = vec![
            (HEADER_SUBJECT, "alice".to_string()),
            (HEADER_ROLES, "analyst".to_string()),
        ];
        let edits = upstream_header_edits(&headers, true, true, &identity);
        assert_eq!(
            edits,
            vec![
                ("authorization", None),
                ("x-pinhole-anything", None),
                ("accept-encoding", None),
                ("x-pinhole-subject", Some("alice")),
                ("x-pinhole-roles", Some("analyst")),
            ]
        );
        // Forwarded token, encoding kept: only client identity headers go.
        let edits = upstream_header_edits(&headers, false, false, &identity);
        assert_eq!(
            edits,
            vec![
                ("x-pinhole-anything", None),
                ("x-pinhole-subject", Some("alice")),
                ("x-pinhole-roles", Some("analyst")),
            ]
        );
        // Nothing to drop: only the identity is written.
        let plain = h(&[(":method", "GET"), ("accept", "*/*")]);
        assert_eq!(
            upstream_header_edits(&plain, true, true, &identity).len(),
            2
        );
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(
            bearer_token(Some("Bearer abc.def.ghi")).ok(),
            Some("abc.def.ghi")
        );
        assert_eq!(bearer_token(Some("bearer   abc")).ok(), Some("abc"));
        assert!(matches!(bearer_token(None), Err(AuthError::Missing)));
        assert!(matches!(
            bearer_token(Some("Basic dXNlcg==")),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            bearer_token(Some("Bearer")),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            bearer_token(Some("Bearer a b")),
            Err(AuthError::Malformed)
        ));
        assert!(matches!(
            bearer_token(Some("Bearer a\"b")),
            Err(AuthError::Malformed)
        ));
    }

    #[test]
    fn rule_paths_are_literal_or_refused() {
        assert_eq!(http_rule_path("/v1/pods?x=1").ok(), Some("/v1/pods"));
        assert_eq!(http_rule_path("/v1/pods#frag").ok(), Some("/v1/pods"));
        assert_eq!(http_rule_path("/").ok(), Some("/"));
        for bad in [
            "/v1/pods/../admin",
            "/v1/pods/..",
            "/v1/./pods",
            "/v1/pods/..%2fadmin",
            "/v1/pods/%2E%2E/admin",
            "/v1/pods%5c..%5cadmin",
            "/v1\\admin",
            "v1/pods",
            "",
        ] {
            assert!(http_rule_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_values_are_safe() {
        assert_eq!(header_safe("alice@acme.example"), "alice@acme.example");
        assert_eq!(header_safe("a\r\nx-evil: 1"), "a%0D%0Ax-evil: 1");
        assert_eq!(header_safe("100%"), "100%25");
        assert_eq!(header_safe("é"), "%C3%A9");
    }

    #[test]
    fn bad_configs_fail_with_a_sentence() {
        for cfg in [
            &b""[..],
            b"not json",
            br#"{"target":"tools"}"#,
            br#"{"target":"tools","policy":"!!!"}"#,
            br#"{"target":"tools","policy":"aGVsbG8="}"#,
            br#"{"target":"tools","policy":"","extra":1}"#,
        ] {
            let e = Engine::from_plugin_config(cfg).unwrap_err();
            assert!(!e.is_empty());
        }
    }

    #[test]
    fn replies() {
        let r = unauthorized(&AuthError::Missing);
        assert_eq!(r.status, 401);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && v == r#"Bearer realm="pinhole""#));
        assert_eq!(unavailable("x").status, 503);
    }
}
