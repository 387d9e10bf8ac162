//! The compiled policy: what the compiler produces from the YAML source and
//! what the blob carries to the filter. Every collection is a `Vec` (never a
//! hash map) so that serialisation, and therefore the blob, is deterministic.
//!
//! Names (roles, targets, issuers) are resolved and checked by the compiler;
//! the filter still treats a dangling reference as "does not match", never as
//! a match, so a hand-made blob cannot widen access.

use serde::{Deserialize, Serialize};

use crate::mask::MaskSpec;

/// A compiled policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Policy {
    /// Optional human label from the source (`name:`), shown in logs.
    #[serde(default)]
    pub name: Option<String>,
    pub issuers: Vec<Issuer>,
    #[serde(default)]
    pub revoked: Revocations,
    pub roles: Vec<Role>,
    pub targets: Vec<Target>,
    pub rules: Vec<Rule>,
    /// Masking of response data, in source order (see [`MaskRule`] and
    /// [`crate::policy::mask_spec_for`]). Absent from the blob when empty,
    /// so policies without masking compile to the same bytes as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masking: Vec<MaskRule>,
    /// People who may sign grants (approvals of held commands and role
    /// elevations), each with an Ed25519 public key. Absent from the blob
    /// when empty, like every approvals field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<Approver>,
    /// Who may approve the commands of each `review` rule, and for how long.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviews: Vec<ReviewRule>,
    /// Just-in-time elevation: which roles may be granted to whom, for how
    /// long, approved by whom.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elevation: Vec<Elevation>,
    /// Signed grants (`pinhole approve`, `pinhole elevate`) delivered with
    /// the policy, as their token text. The filter verifies each one against
    /// this policy when it loads (see [`crate::grant`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
}

/// A person who may sign grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    /// Unique name, written into the grants this approver signs.
    pub name: String,
    /// The approver groups (`approvers:` keys) this person belongs to.
    pub groups: Vec<String>,
    /// Ed25519 public key: base64 of the 32 raw bytes.
    pub key: String,
    /// The approver's own identity (`sub`), when known: a grant for that
    /// subject is a self-approval and is refused (as is one whose subject
    /// equals `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// The approval settings of one `review` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRule {
    /// The rule's id.
    pub rule: String,
    /// Approver groups whose members may approve its commands; empty: no
    /// one can (the command stays refused).
    pub approvers: Vec<String>,
    /// The longest validity of an approval of this rule, in seconds.
    pub grant_ttl_secs: u64,
}

/// One elevation rule: `role` may be granted to callers holding one of
/// `eligible`, for at most `max_secs`, by a member of `approvers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Elevation {
    pub role: String,
    pub eligible: Vec<String>,
    pub max_secs: u64,
    pub approvers: Vec<String>,
}

/// Subjects and token ids whose tokens are refused even when otherwise valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Revocations {
    /// `sub` values, matched exactly. Optionally qualified by issuer name as
    /// `issuer-name:subject`; an unqualified entry applies to every issuer.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// `jti` values, matched exactly.
    #[serde(default)]
    pub token_ids: Vec<String>,
}

/// JWS algorithms Pinhole verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Alg {
    RS256,
    ES256,
    EdDSA,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "RS256" => Some(Alg::RS256),
            "ES256" => Some(Alg::ES256),
            "EdDSA" => Some(Alg::EdDSA),
            _ => None,
        }
    }
}

/// A trusted OIDC issuer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issuer {
    /// Policy-local name (referenced by roles), e.g. `corp-sso`.
    pub name: String,
    /// Exact `iss` claim value.
    pub issuer: String,
    /// Accepted `aud` values; the token must carry at least one of them.
    pub audiences: Vec<String>,
    /// Algorithms accepted from this issuer (a key may narrow it further).
    pub algorithms: Vec<Alg>,
    /// Verification keys, embedded at compile time from the JWKS file.
    pub keys: Vec<Jwk>,
    /// Claim holding group membership (a string or an array of strings).
    /// Dotted paths (`realm_access.roles`) reach into nested objects.
    pub groups_claim: String,
    /// Tokens whose `exp - iat` (or `exp - nbf`) exceeds this are refused.
    /// `exp` is always required.
    pub max_token_lifetime_secs: Option<u64>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
}

/// A public key from a JWKS, normalised at compile time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `kid`; tokens select their key by it. Keys without `kid` are only used
    /// for tokens without `kid`.
    pub kid: Option<String>,
    /// `alg` from the JWK, if present: the key then verifies only that alg.
    pub alg: Option<Alg>,
    pub key: KeyMaterial,
}

/// Raw key material (base64url strings exactly as in the JWK).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyMaterial {
    /// `kty: RSA` — modulus and exponent, base64url.
    Rsa { n: String, e: String },
    /// `kty: EC, crv: P-256` — coordinates, base64url.
    P256 { x: String, y: String },
    /// `kty: OKP, crv: Ed25519` — public key, base64url.
    Ed25519 { x: String },
}

/// A role: a named predicate over a verified identity. All present
/// conditions must hold; within a list any element may match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    /// Issuer name (see [`Issuer::name`]); `None` accepts any trusted issuer.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Globs over `sub`; empty = any subject.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// The identity must belong to at least one of these groups (exact
    /// match); empty = no group condition.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Conditions on other claims; all must hold.
    #[serde(default)]
    pub claims: Vec<ClaimMatch>,
}

/// `claim` (dotted path) must equal or glob-match one of `patterns`. When the
/// claim is an array, any element may match. Numbers and booleans are
/// compared in their JSON text form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimMatch {
    pub claim: String,
    pub patterns: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Mcp,
    Http,
    Postgres,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Mcp => "mcp",
            Protocol::Http => "http",
            Protocol::Postgres => "postgres",
        }
    }
}

/// A protected upstream. The Envoy filter configuration names the target a
/// listener/route protects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub protocol: Protocol,
    /// Forward the caller's `Authorization` header upstream. Off by default:
    /// the upstream receives the verified identity in `x-pinhole-*` headers.
    #[serde(default)]
    pub forward_token: bool,
    /// Postgres targets: the database role the filter logs in as. The
    /// caller's startup `user` is replaced by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_user: Option<String>,
    /// Postgres targets: the name of the environment variable (set by the
    /// operator in the Envoy `vm_config.environment_variables`) holding the
    /// backend role's password. The password itself never enters the blob.
    /// `None`: the database must not ask for a password (trust).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_password_env: Option<String>,
    /// Postgres targets: the database to connect to, replacing the caller's
    /// startup `database`. `None`: the caller's choice is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_database: Option<String>,
    /// The name of the environment variable (set by the operator in the
    /// Envoy `vm_config.environment_variables`) holding the HMAC key of the
    /// `hash` masking strategy for this target. The key itself never
    /// enters the blob. Required when a masking rule of the target uses
    /// `hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_key_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
    /// Needs a human reviewer's approval: refused until a grant signed by
    /// an approver of the rule covers this exact command (see
    /// [`crate::grant`]).
    Review,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
            Effect::Review => "review",
        }
    }
}

/// A rule. It applies when the request's target is `target`, the identity
/// holds one of `roles` (empty = any authenticated identity) and the request
/// matches `matcher`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub effect: Effect,
    #[serde(default)]
    pub roles: Vec<String>,
    pub target: String,
    pub matcher: Matcher,
    /// Optional author's explanation, included in deny messages.
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a rule matches. `Any` matches every request on the target that is
/// subject to authorization (MCP lifecycle messages never are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Matcher {
    Any,
    Mcp(McpMatch),
    Http(HttpMatch),
    /// SQL statements on a `postgres` target (one statement at a time).
    Sql(SqlMatch),
}

/// MCP matcher. Each list, when non-empty, makes the rule apply to one kind
/// of operation: `tools` to `tools/call` (with `arguments` as extra
/// conditions), `resources` to `resources/read|subscribe|unsubscribe`,
/// `prompts` to `prompts/get`, `methods` to any other JSON-RPC method by name.
/// A rule with all lists empty matches no MCP operation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct McpMatch {
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub arguments: Vec<ArgConstraint>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub prompts: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    /// The argument of the tool call holding SQL text. When set, the call is
    /// decided statement by statement (see `policy::eval`), each statement
    /// against `sql` (absent = any statement of a known kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_argument: Option<ArgPath>,
    /// What the SQL in `sql_argument` may be (only with `sql_argument`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<SqlMatch>,
}

/// A path into a tool call's `arguments` (same syntax as the paths of
/// argument constraints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgPath {
    pub path: Vec<PathSeg>,
    /// Source spelling, for messages.
    pub path_text: String,
}

/// SQL matcher: every present condition must hold for a statement. See
/// `policy::eval` for how allow/review and deny rules read `tables` and
/// `functions`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SqlMatch {
    /// Statement classes; empty = any statement of a known kind.
    #[serde(default)]
    pub statements: Vec<StatementClass>,
    /// Globs over schema-qualified table names (`public.orders`,
    /// `public.*`); unqualified names in SQL resolve to schema `public`.
    /// Empty = any table.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Globs over function names (`pg_read_file`, `dblink*`,
    /// `myschema.fn`). Empty = no condition on functions.
    #[serde(default)]
    pub functions: Vec<String>,
    /// Only UPDATE/DELETE statements (nested ones included) without WHERE.
    #[serde(default)]
    pub without_where: bool,
    /// Only `COPY … PROGRAM`.
    #[serde(default)]
    pub copy_program: bool,
}

/// A statement class as written in the policy (`select`, `copy to`,
/// `drop table`, …). `Create`/`Alter`/`Drop` carry an optional object type
/// (`None` = any object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementClass {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    /// `COPY … TO` and `COPY … FROM`.
    Copy,
    CopyTo,
    CopyFrom,
    Create(Option<SqlObject>),
    Alter(Option<SqlObject>),
    Drop(Option<SqlObject>),
    Truncate,
    Grant,
    Revoke,
    Do,
    Call,
    Set,
    Show,
    Transaction,
    Explain,
    Prepare,
    Execute,
    Deallocate,
    Listen,
    Notify,
    Unlisten,
    Vacuum,
    Analyze,
    Lock,
    Comment,
    Discard,
    Cursor,
    /// A fast-path FunctionCall protocol message (the function is known
    /// only by OID, so allowing it allows every function).
    FunctionCall,
}

/// Object types of CREATE / ALTER / DROP classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlObject {
    Table,
    View,
    MaterializedView,
    Index,
    Schema,
    Database,
    /// Roles and users (`CREATE USER` is `CREATE ROLE … LOGIN`).
    Role,
    User,
    Sequence,
    Type,
    Domain,
    Function,
    Procedure,
    Trigger,
    Extension,
    Policy,
    Server,
    Collation,
    Operator,
}

impl SqlObject {
    pub const ALL: [SqlObject; 19] = [
        SqlObject::Table,
        SqlObject::View,
        SqlObject::MaterializedView,
        SqlObject::Index,
        SqlObject::Schema,
        SqlObject::Database,
        SqlObject::Role,
        SqlObject::User,
        SqlObject::Sequence,
        SqlObject::Type,
        SqlObject::Domain,
        SqlObject::Function,
        SqlObject::Procedure,
        SqlObject::Trigger,
        SqlObject::Extension,
        SqlObject::Policy,
        SqlObject::Server,
        SqlObject::Collation,
        SqlObject::Operator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SqlObject::Table => "table",
            SqlObject::View => "view",
            SqlObject::MaterializedView => "materialized view",
            SqlObject::Index => "index",
            SqlObject::Schema => "schema",
            SqlObject::Database => "database",
            SqlObject::Role => "role",
            SqlObject::User => "user",
            SqlObject::Sequence => "sequence",
            SqlObject::Type => "type",
            SqlObject::Domain => "domain",
            SqlObject::Function => "function",
            SqlObject::Procedure => "procedure",
            SqlObject::Trigger => "trigger",
            SqlObject::Extension => "extension",
            SqlObject::Policy => "policy",
            SqlObject::Server => "server",
            SqlObject::Collation => "collation",
            SqlObject::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<SqlObject> {
        SqlObject::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl StatementClass {
    /// Every class without an object type, by source name.
    pub const SIMPLE: [(&'static str, StatementClass); 33] = [
        ("select", StatementClass::Select),
        ("insert", StatementClass::Insert),
        ("update", StatementClass::Update),
        ("delete", StatementClass::Delete),
        ("merge", StatementClass::Merge),
        ("copy", StatementClass::Copy),
        ("copy to", StatementClass::CopyTo),
        ("copy from", StatementClass::CopyFrom),
        ("create", StatementClass::Create(None)),
        ("alter", StatementClass::Alter(None)),
        ("drop", StatementClass::Drop(None)),
        ("truncate", StatementClass::Truncate),
        ("grant", StatementClass::Grant),
        ("revoke", StatementClass::Revoke),
        ("do", StatementClass::Do),
        ("call", StatementClass::Call),
        ("set", StatementClass::Set),
        ("show", StatementClass::Show),
        ("transaction", StatementClass::Transaction),
        ("explain", StatementClass::Explain),
        ("prepare", StatementClass::Prepare),
        ("execute", StatementClass::Execute),
        ("deallocate", StatementClass::Deallocate),
        ("listen", StatementClass::Listen),
        ("notify", StatementClass::Notify),
        ("unlisten", StatementClass::Unlisten),
        ("vacuum", StatementClass::Vacuum),
        ("analyze", StatementClass::Analyze),
        ("lock", StatementClass::Lock),
        ("comment", StatementClass::Comment),
        ("discard", StatementClass::Discard),
        ("cursor", StatementClass::Cursor),
        ("function_call", StatementClass::FunctionCall),
    ];

    /// Parses a source spelling (`select`, `copy to`, `drop table`);
    /// whitespace-insensitive, lower case.
    pub fn parse(s: &str) -> Option<StatementClass> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let norm = words.join(" ");
        if let Some((_, c)) = Self::SIMPLE.iter().find(|(n, _)| *n == norm) {
            return Some(c.clone());
        }
        let (first, rest) = words.split_first()?;
        let obj = SqlObject::parse(&rest.join(" "))?;
        match *first {
            "create" => Some(StatementClass::Create(Some(obj))),
            "alter" => Some(StatementClass::Alter(Some(obj))),
            "drop" => Some(StatementClass::Drop(Some(obj))),
            _ => None,
        }
    }

    /// The source spelling.
    pub fn as_string(&self) -> String {
        let obj = |verb: &str, o: &Option<SqlObject>| match o {
            Some(o) => format!("{verb} {}", o.as_str()),
            None => verb.to_owned(),
        };
        match self {
            StatementClass::Create(o) => obj("create", o),
            StatementClass::Alter(o) => obj("alter", o),
            StatementClass::Drop(o) => obj("drop", o),
            other => Self::SIMPLE
                .iter()
                .find(|(_, c)| c == other)
                .map(|(n, _)| (*n).to_owned())
                .unwrap_or_default(),
        }
    }
}

/// A condition on a value inside a `tools/call`'s `arguments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArgConstraint {
    /// Path into `arguments`; written `a.b[0].c` in the source.
    pub path: Vec<PathSeg>,
    /// Source spelling of the path, for messages.
    pub path_text: String,
    pub test: ArgTest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// Tests on an argument value. A missing value fails every test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ArgTest {
    /// Equal to this JSON value (numbers compare numerically).
    Equals(serde_json::Value),
    /// Equal to one of these JSON values.
    OneOf(Vec<serde_json::Value>),
    /// A string matching one of these globs.
    Glob(Vec<String>),
    /// A number within the inclusive bounds.
    Range { min: Option<f64>, max: Option<f64> },
}

/// Plain HTTP matcher: the method must be one of `methods` (empty = any) and
/// the path (without query string) must match one of `paths` (empty = any).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HttpMatch {
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
}

/// A masking rule: what to mask in the responses of `target`, and for whom.
///
/// It applies to a caller when `roles` is empty or the caller holds one of
/// them, **and** the caller holds none of `except_roles` (an exemption wins:
/// those callers see clear values). Every rule of a target that applies to
/// a caller is merged into one [`MaskSpec`] by
/// [`crate::policy::mask_spec_for`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskRule {
    pub id: String,
    pub target: String,
    /// Applies only to callers holding one of these roles; empty = every
    /// authenticated caller.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Callers holding one of these roles are exempt (see clear values).
    #[serde(default)]
    pub except_roles: Vec<String>,
    /// What to mask and how.
    pub spec: MaskSpec,
}

impl Policy {
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    pub fn issuer(&self, name: &str) -> Option<&Issuer> {
        self.issuers.iter().find(|i| i.name == name)
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// The approval settings of a review rule (none: no one can approve).
    pub fn review(&self, rule: &str) -> Option<&ReviewRule> {
        self.reviews.iter().find(|r| r.rule == rule)
    }

    pub fn approver(&self, name: &str) -> Option<&Approver> {
        self.approvers.iter().find(|a| a.name == name)
    }
}
