//! SQL statement classification for the PostgreSQL policy (sqlparser,
//! PostgreSQL dialect).
//!
//! [`classify`] turns a Query text (or a Parse's query) into one
//! [`StatementInfo`] per statement: its kind, the tables it reads and
//! writes, the functions it calls and the built-in guard flags. The policy
//! layer decides; this module only describes.
//!
//! - The text is capped at [`MAX_SQL_LEN`] bytes, bracket nesting at
//!   [`MAX_NESTING`] (checked on tokens, before parsing) and the parser's
//!   recursion at [`RECURSION_LIMIT`]: over any → [`SqlError`], which the
//!   policy denies, like unparsable SQL.
//! - The kind comes from the `Statement` variant, matched explicitly; a
//!   variant not listed is [`StatementKind::Other`] with the variant's name
//!   (denied by the policy unless it names it).
//! - Tables come from a visitor over the whole statement (joins, subqueries,
//!   CTE bodies, set operations, `INSERT … SELECT`, `UPDATE … FROM`,
//!   `DELETE … USING`) plus, for statements whose names the visitor does not
//!   report (DROP, TRUNCATE, COPY, …), from the variant itself. References
//!   to a CTE are not tables (scoped: a CTE is only visible in its query,
//!   and in a non-recursive WITH only to the CTEs after it).
//! - A data-modifying statement anywhere (e.g. `WITH d AS (DELETE …)
//!   SELECT …`) makes the statement a write of its target, and its kind the
//!   strongest one found: select < insert < update < merge < delete.
//! - `EXPLAIN ANALYZE s` (also `EXPLAIN (ANALYZE …) s`) is classified as `s`;
//!   a plain EXPLAIN is kind explain with the inner statement's tables and
//!   functions as reads.
//! - `SELECT … INTO t` is a create of table `t`; `TABLE t` reads `t`.
//! - `SELECT … FOR UPDATE | FOR SHARE [OF t]` is an update of the tables it
//!   locks (PostgreSQL requires the UPDATE privilege for it, and the row
//!   locks block writers).
//! - `DO` blocks (which sqlparser does not parse) are recognised by their
//!   first keyword: kind `do_block`, nothing else known about them.
//! - Names: unquoted identifiers are lower-cased, quoted ones kept;
//!   unqualified names have `schema: None` (the policy resolves them).

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, Expr, FromTable, ObjectName, ObjectNamePart, Query, Select, SetExpr, Statement,
    TableFactor, TableObject, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// Longest SQL text classified, in bytes.
pub const MAX_SQL_LEN: usize = 64 * 1024;
/// sqlparser's recursion limit (nesting of expressions, subqueries and
/// statements). Kept low: the filter runs on a 1 MiB wasm stack, and an
/// unoptimised build spends ~45 KiB of it per level (18 levels: about 16
/// nested brackets or 7 nested subqueries; deeper SQL is refused).
pub const RECURSION_LIMIT: usize = 18;
/// Deepest bracket nesting (`(`, `[`) accepted; checked on tokens before
/// parsing. Each nested subquery costs tens of KiB of stack in the parser
/// (about 8x more in unoptimised builds), and the wasm stack is 1 MiB.
pub const MAX_NESTING: usize = 16;
/// Most statements in one text.
pub const MAX_STATEMENTS: usize = 256;
/// Most operators in one statement (binary and unary operators, casts,
/// subscripts, `AND`/`OR`/`IS`/`LIKE`/…, set operations; see
/// [`is_operator`]). sqlparser builds a chain such as `1+1+…+1` or
/// `a OR b OR …` iteratively but as a left-deep tree, and visiting or
/// dropping that tree recurses once per operator: 10 000 of them (20 KB of
/// SQL) overflowed the stack inside Envoy's V8 and trapped the VM, which
/// then refused every later connection. The cap bounds that depth (each
/// bracket level, already capped by [`MAX_NESTING`], has its own chains,
/// and their sum is bounded by this cap too).
pub const MAX_OPERATORS: usize = 1000;

/// Built-in PostgreSQL functions whose effect is more than computing a value
/// from the tables the statement names: they write (sequences, large
/// objects, settings, replication slots), signal or lock other sessions,
/// touch server files, reach other servers, or run SQL text or read tables
/// named in string arguments the classifier cannot see (`table_to_xml('t')`,
/// `query_to_xml('select …')`, `ts_stat('select …')`). Patterns (the
/// policy's glob syntax) on the bare name, whatever the schema. An allow or
/// review rule matches a statement calling one only when its `functions`
/// list names it explicitly (see `policy::eval`); deny rules are unchanged.
pub const SIDE_EFFECT_FUNCTIONS: &[&str] = &[
    // sequences (`set_config` makes its statement also of kind `set`)
    "nextval",
    "setval",
    // other sessions, the server process, backups, WAL
    "pg_cancel_backend",
    "pg_terminate_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_wal_replay_*",
    "pg_log_backend_memory_contexts",
    "pg_stat_reset*",
    "pg_stat_statements_reset",
    "pg_import_system_collations",
    // replication
    "pg_*replication_slot*",
    "pg_logical_*",
    "pg_replication_origin_*",
    // locks and notifications
    "pg_advisory_*",
    "pg_try_advisory_*",
    "pg_notify",
    // large objects, server files, other servers
    "lo_*",
    "loread",
    "lowrite",
    "pg_read_*",
    "pg_ls_*",
    "pg_stat_file",
    "pg_file_*",
    "dblink*",
    // SQL text or table names in string arguments
    "*_to_xml",
    "*_to_xmlschema",
    "*_to_xml_and_xmlschema",
    "ts_stat",
    "ts_rewrite",
];

/// Whether `f` is one of [`SIDE_EFFECT_FUNCTIONS`] (by bare name).
pub fn has_side_effects(f: &QualifiedName) -> bool {
    crate::glob::any_matches(SIDE_EFFECT_FUNCTIONS, &f.name)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error("SQL text is {len} bytes, over the {max}-byte cap")]
    TooLong { len: usize, max: usize },
    #[error("SQL text has more than {0} statements")]
    TooManyStatements(usize),
    #[error("SQL does not parse: {0}")]
    Parse(String),
    #[error("SQL nests brackets deeper than {0}")]
    TooDeep(usize),
    #[error("SQL text has no statement")]
    Empty,
    #[error("SQL statement has more than {0} operators")]
    TooManyOperators(usize),
    #[error("SQL uses a Unicode-escaped identifier (U&\"...\"), which pinhole does not read")]
    UnicodeIdentifier,
}

/// A possibly qualified name, normalised (unquoted parts lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QualifiedName {
    pub catalog: Option<String>,
    pub schema: Option<String>,
    pub name: String,
}

impl QualifiedName {
    /// An unqualified name.
    pub fn bare(name: &str) -> Self {
        QualifiedName {
            catalog: None,
            schema: None,
            name: name.to_owned(),
        }
    }

    /// `schema.name`.
    pub fn qualified(schema: &str, name: &str) -> Self {
        QualifiedName {
            catalog: None,
            schema: Some(schema.to_owned()),
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(c) = &self.catalog {
            write!(f, "{c}.")?;
        }
        if let Some(s) = &self.schema {
            write!(f, "{s}.")?;
        }
        f.write_str(&self.name)
    }
}

/// The object type of CREATE / ALTER / DROP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ObjectType {
    Table,
    View,
    MaterializedView,
    Index,
    Schema,
    Database,
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
    /// Anything else, by name.
    Other(String),
}

/// What a statement does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    CopyTo,
    CopyFrom,
    Create(ObjectType),
    Alter(ObjectType),
    Drop(ObjectType),
    Truncate,
    Grant,
    Revoke,
    DoBlock,
    Call,
    /// SET / RESET.
    Set,
    Show,
    /// BEGIN / START TRANSACTION / COMMIT / ROLLBACK / SAVEPOINT / RELEASE.
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
    Discard,
    Lock,
    Comment,
    /// DECLARE / FETCH / CLOSE of a cursor.
    Cursor,
    /// A fast-path FunctionCall protocol message (not SQL text).
    FunctionCall,
    /// A statement variant not classified here, by variant name: denied
    /// unless a policy names it.
    Other(String),
}

impl StatementKind {
    /// The strength of a data-modifying kind (0: not one).
    fn dml_rank(&self) -> u8 {
        match self {
            StatementKind::Insert => 1,
            StatementKind::Update => 2,
            StatementKind::Merge => 3,
            StatementKind::Delete => 4,
            _ => 0,
        }
    }
}

/// The classification of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementInfo {
    pub kind: StatementKind,
    /// Tables (and views) read, in order of appearance, without duplicates.
    pub reads: Vec<QualifiedName>,
    /// Tables written (DML targets, DDL objects, COPY FROM targets).
    pub writes: Vec<QualifiedName>,
    /// Functions called anywhere (expressions, FROM, CALL).
    pub functions: Vec<QualifiedName>,
    /// Every data-modifying kind found, nested ones included (a statement
    /// whose CTE inserts and whose body deletes has both); also
    /// [`StatementKind::Set`] when a `set_config(...)` call changes a
    /// setting, so a rule allowing only `select` does not allow it.
    pub dml_kinds: Vec<StatementKind>,
    /// False when some UPDATE or DELETE in the statement (nested ones
    /// included) has no WHERE clause; true otherwise.
    pub has_where: bool,
    /// `COPY … TO PROGRAM` / `COPY … FROM PROGRAM`.
    pub copy_program: bool,
    /// `COPY … TO 'file'` / `COPY … FROM 'file'` (a server-side file).
    pub copy_file: bool,
    /// For PREPARE and plain EXPLAIN: the inner statement (its tables and
    /// functions are also in this statement's lists).
    pub inner: Option<Box<StatementInfo>>,
    /// Server settings the statement changes (lower case): `SET x`,
    /// `SET ROLE` (`role`), `SET SESSION AUTHORIZATION`
    /// (`session_authorization`), `SET NAMES` (`client_encoding`), and
    /// `set_config('x', …)` anywhere in it; `*` when the name is not a
    /// literal.
    pub settings: Vec<String>,
    /// This statement's text in the original string (without the `;`).
    pub text: String,
}

impl StatementInfo {
    /// A statement of `kind` touching nothing (the classifier fills in the
    /// rest).
    pub fn new(kind: StatementKind, text: String) -> Self {
        StatementInfo {
            kind,
            reads: Vec::new(),
            writes: Vec::new(),
            functions: Vec::new(),
            dml_kinds: Vec::new(),
            has_where: true,
            copy_program: false,
            copy_file: false,
            inner: None,
            settings: Vec::new(),
            text,
        }
    }
}

/// Classifies every statement of `sql`. Any error means: deny.
pub fn classify(sql: &str) -> Result<Vec<StatementInfo>, SqlError> {
    if sql.len() > MAX_SQL_LEN {
        return Err(SqlError::TooLong {
            len: sql.len(),
            max: MAX_SQL_LEN,
        });
    }
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::Parse(e.to_string()))?;
    let mut depth = 0usize;
    for t in &tokens {
        match t.token {
            Token::LParen | Token::LBracket => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(SqlError::TooDeep(MAX_NESTING));
                }
            }
            Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let lines = line_starts(sql);
    let mut out = Vec::new();
    for segment in tokens.split(|t| t.token == Token::SemiColon) {
        let significant: Vec<&TokenWithSpan> = segment
            .iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
            .collect();
        let (Some(first), Some(last)) = (significant.first(), significant.last()) else {
            continue;
        };
        if out.len() >= MAX_STATEMENTS {
            return Err(SqlError::TooManyStatements(MAX_STATEMENTS));
        }
        let text = match (
            offset(sql, &lines, first.span.start),
            offset(sql, &lines, last.span.end),
        ) {
            (Some(a), Some(b)) => sql.get(a..b).unwrap_or_default().to_owned(),
            _ => String::new(),
        };
        if significant.iter().filter(|t| is_operator(&t.token)).count() > MAX_OPERATORS {
            return Err(SqlError::TooManyOperators(MAX_OPERATORS));
        }
        // `U&"d\0061ta"` is one identifier to PostgreSQL (`data`); sqlparser
        // reads `U & "d\0061ta"`, so a function or setting named this way
        // would be judged under another name.
        if significant.windows(3).any(|w| match w {
            [u, amp, q] => {
                matches!(&u.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("u"))
                    && amp.token == Token::Ampersand
                    && matches!(&q.token, Token::Word(w) if w.quote_style == Some('"'))
                    && u.span.end == amp.span.start
                    && amp.span.end == q.span.start
            }
            _ => false,
        }) {
            return Err(SqlError::UnicodeIdentifier);
        }
        if matches!(&first.token, Token::Word(w) if w.keyword == Keyword::DO) {
            out.push(StatementInfo::new(StatementKind::DoBlock, text));
            continue;
        }
        let mut toks: Vec<TokenWithSpan> = segment.to_vec();
        toks.push(TokenWithSpan::wrap(Token::EOF));
        let statements = Parser::new(&dialect)
            .with_recursion_limit(RECURSION_LIMIT)
            .with_tokens_with_locations(toks)
            .parse_statements()
            .map_err(|e| SqlError::Parse(e.to_string()))?;
        for st in &statements {
            out.push(classify_statement(st, text.clone()));
        }
    }
    if out.is_empty() {
        return Err(SqlError::Empty);
    }
    Ok(out)
}

/// Whether a token builds an expression (or set-operation) node around
/// what precedes or follows it: everything but names, literals, brackets,
/// commas, periods and placeholders, plus the keyword operators.
fn is_operator(t: &Token) -> bool {
    match t {
        Token::Word(w) => {
            w.quote_style.is_none()
                && matches!(
                    w.keyword,
                    Keyword::AND
                        | Keyword::OR
                        | Keyword::XOR
                        | Keyword::NOT
                        | Keyword::IS
                        | Keyword::LIKE
                        | Keyword::ILIKE
                        | Keyword::SIMILAR
                        | Keyword::BETWEEN
                        | Keyword::IN
                        | Keyword::COLLATE
                        | Keyword::AT
                        | Keyword::UNION
                        | Keyword::INTERSECT
                        | Keyword::EXCEPT
                        | Keyword::OPERATOR
                        | Keyword::OVERLAPS
                )
        }
        Token::EOF
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Comma
        | Token::Whitespace(_)
        | Token::LParen
        | Token::RParen
        | Token::Period
        | Token::SemiColon
        | Token::Placeholder(_) => false,
        _ => true,
    }
}

/// Byte offsets of line starts (sqlparser locations are 1-based line and
/// character column).
fn line_starts(sql: &str) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(
        sql.char_indices()
            .filter(|(_, c)| *c == '\n')
            .map(|(i, _)| i + 1),
    );
    v
}

fn offset(sql: &str, lines: &[usize], loc: sqlparser::tokenizer::Location) -> Option<usize> {
    let line = usize::try_from(loc.line).ok()?.checked_sub(1)?;
    let col = usize::try_from(loc.column).ok()?.checked_sub(1)?;
    let start = *lines.get(line)?;
    let rest = sql.get(start..)?;
    match rest.char_indices().nth(col) {
        Some((i, _)) => Some(start + i),
        None => Some(sql.len()),
    }
}

/// A normalised name from an AST name.
pub fn qualified_name(name: &ObjectName) -> QualifiedName {
    let mut parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => ident(i),
            ObjectNamePart::Function(f) => f.to_string(),
        })
        .collect();
    let name = parts.pop().unwrap_or_default();
    let schema = parts.pop();
    let catalog = if parts.is_empty() {
        None
    } else {
        Some(parts.join("."))
    };
    QualifiedName {
        catalog,
        schema,
        name,
    }
}

fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        // PostgreSQL folds only ASCII letters of unquoted names (in UTF-8
        // databases): `Ǆ` stays `Ǆ`.
        i.value.to_ascii_lowercase()
    }
}

fn push_unique(v: &mut Vec<QualifiedName>, n: QualifiedName) {
    if !v.contains(&n) {
        v.push(n);
    }
}

/// A scope of CTE names: those of one query's WITH, of which the first
/// `visible` are in scope right now.
struct CteFrame {
    ctes: Vec<(String, *const Query)>,
    recursive: bool,
    visible: usize,
}

#[derive(Default)]
struct Collector {
    relations: Vec<QualifiedName>,
    write_targets: Vec<QualifiedName>,
    functions: Vec<QualifiedName>,
    dml: Vec<StatementKind>,
    unguarded: bool,
    frames: Vec<CteFrame>,
    /// `SELECT … INTO t` seen (creates a table).
    select_into: bool,
    /// Table-function names seen as a TableFactor: their relation visit
    /// that follows is a function, not a table.
    skip_relations: Vec<QualifiedName>,
    /// Settings changed by `set_config(...)` calls.
    settings: Vec<String>,
}

impl Collector {
    fn is_cte(&self, n: &QualifiedName) -> bool {
        if n.schema.is_some() || n.catalog.is_some() {
            return false;
        }
        self.frames.iter().rev().any(|f| {
            f.ctes
                .iter()
                .take(f.visible)
                .any(|(name, _)| *name == n.name)
        })
    }

    /// `TABLE t` operands of a query body (nested queries have their own
    /// visit).
    fn table_exprs(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Table(t) => {
                if let Some(name) = &t.table_name {
                    let n = QualifiedName {
                        catalog: None,
                        schema: t.schema_name.clone(),
                        name: name.clone(),
                    };
                    if !self.is_cte(&n) {
                        self.relations.push(n);
                    }
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.table_exprs(left);
                self.table_exprs(right);
            }
            _ => {}
        }
    }

    fn table_factor_name(tf: &TableFactor) -> Option<QualifiedName> {
        match tf {
            TableFactor::Table {
                name, args: None, ..
            } => Some(qualified_name(name)),
            _ => None,
        }
    }

    /// `SELECT … FOR UPDATE | FOR SHARE [OF t]`: PostgreSQL requires the
    /// UPDATE privilege on each table it locks, and the row locks block
    /// writers: an update of those tables, not a read. The locked tables are
    /// the plain tables in that SELECT's FROM (not its subqueries), or those
    /// `OF` names (by alias or name); any other query body (set
    /// operations, VALUES) with a locking clause is an update with no table
    /// known (PostgreSQL refuses those; a rule allowing `update` on some
    /// table still does not match a statement it cannot see).
    fn locking_clause(&mut self, query: &Query) {
        self.dml.push(StatementKind::Update);
        let SetExpr::Select(select) = &*query.body else {
            return;
        };
        let mut from: Vec<(QualifiedName, Option<String>)> = Vec::new();
        for twj in &select.from {
            for tf in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
                if let TableFactor::Table {
                    name,
                    alias,
                    args: None,
                    ..
                } = tf
                {
                    let n = qualified_name(name);
                    if !self.is_cte(&n) {
                        from.push((n, alias.as_ref().map(|a| ident(&a.name))));
                    }
                }
            }
        }
        let named: Vec<QualifiedName> = query
            .locks
            .iter()
            .filter_map(|l| l.of.as_ref().map(qualified_name))
            .collect();
        let all = query.locks.iter().any(|l| l.of.is_none());
        for (table, alias) in from {
            let picked = all
                || named.iter().any(|o| {
                    (o.schema.is_none() && alias.as_deref() == Some(o.name.as_str()))
                        || *o == table
                        || (o.schema.is_none() && alias.is_none() && o.name == table.name)
                });
            if picked {
                self.write_targets.push(table);
            }
        }
    }

    fn dml_statement(&mut self, st: &Statement) {
        match st {
            Statement::Insert(i) => {
                self.dml.push(StatementKind::Insert);
                if let TableObject::TableName(n) = &i.table {
                    self.write_targets.push(qualified_name(n));
                }
            }
            Statement::Update(u) => {
                self.dml.push(StatementKind::Update);
                if u.selection.is_none() {
                    self.unguarded = true;
                }
                if let Some(n) = Self::table_factor_name(&u.table.relation) {
                    self.write_targets.push(n);
                }
            }
            Statement::Delete(d) => {
                self.dml.push(StatementKind::Delete);
                if d.selection.is_none() {
                    self.unguarded = true;
                }
                for n in &d.tables {
                    self.write_targets.push(qualified_name(n));
                }
                let from = match &d.from {
                    FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => v,
                };
                for twj in from {
                    if let Some(n) = Self::table_factor_name(&twj.relation) {
                        self.write_targets.push(n);
                    }
                }
            }
            Statement::Merge(m) => {
                self.dml.push(StatementKind::Merge);
                if let Some(n) = Self::table_factor_name(&m.table) {
                    self.write_targets.push(n);
                }
            }
            _ => {}
        }
    }
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let me: *const Query = query;
        if let Some(top) = self.frames.last_mut() {
            if let Some(i) = top.ctes.iter().position(|(_, p)| std::ptr::eq(*p, me)) {
                top.visible = if top.recursive { top.ctes.len() } else { i };
            }
        }
        let (ctes, recursive) = match &query.with {
            Some(w) => (
                w.cte_tables
                    .iter()
                    .map(|c| (ident(&c.alias.name), &*c.query as *const Query))
                    .collect(),
                w.recursive,
            ),
            None => (Vec::new(), false),
        };
        let visible = ctes.len();
        self.frames.push(CteFrame {
            ctes,
            recursive,
            visible,
        });
        // `TABLE t` names a table in a form the visitor does not report.
        self.table_exprs(&query.body);
        if !query.locks.is_empty() {
            self.locking_clause(query);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if let Some(into) = &select.into {
            self.select_into = true;
            for t in &into.targets {
                let name = match t {
                    Expr::Identifier(i) => ObjectName::from(vec![i.clone()]),
                    Expr::CompoundIdentifier(v) => ObjectName::from(v.clone()),
                    other => ObjectName::from(vec![ast::Ident::new(other.to_string())]),
                };
                self.write_targets.push(qualified_name(&name));
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.frames.pop();
        let me: *const Query = query;
        if let Some(top) = self.frames.last_mut() {
            if let Some(i) = top.ctes.iter().position(|(_, p)| std::ptr::eq(*p, me)) {
                top.visible = if top.recursive { top.ctes.len() } else { i + 1 };
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        match tf {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => {
                let n = qualified_name(name);
                self.skip_relations.push(n.clone());
                push_unique(&mut self.functions, n);
            }
            TableFactor::Function { name, .. } => {
                push_unique(&mut self.functions, qualified_name(name));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let n = qualified_name(relation);
        if let Some(i) = self.skip_relations.iter().position(|s| *s == n) {
            self.skip_relations.swap_remove(i);
            return ControlFlow::Continue(());
        }
        if !self.is_cte(&n) {
            self.relations.push(n);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr {
            let name = qualified_name(&f.name);
            if name.name == "set_config" {
                self.settings.push(set_config_name(&f.args));
            }
            push_unique(&mut self.functions, name);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, st: &Statement) -> ControlFlow<()> {
        self.dml_statement(st);
        ControlFlow::Continue(())
    }
}

fn object_type(t: &ast::ObjectType) -> ObjectType {
    use ast::ObjectType as A;
    match t {
        A::Table => ObjectType::Table,
        A::View => ObjectType::View,
        A::MaterializedView => ObjectType::MaterializedView,
        A::Index => ObjectType::Index,
        A::Schema => ObjectType::Schema,
        A::Database => ObjectType::Database,
        A::Role => ObjectType::Role,
        A::User => ObjectType::User,
        A::Sequence => ObjectType::Sequence,
        A::Type => ObjectType::Type,
        A::Collation => ObjectType::Collation,
        other => ObjectType::Other(format!("{other:?}").to_lowercase()),
    }
}

/// The variant name of a statement, for [`StatementKind::Other`].
fn variant_name(st: &Statement) -> String {
    let dbg = format!("{st:?}");
    dbg.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn explain_is_analyze(analyze: bool, options: &Option<Vec<ast::UtilityOption>>) -> bool {
    analyze
        || options
            .iter()
            .flatten()
            // PostgreSQL also spells it ANALYSE (`EXPLAIN (ANALYSE) DELETE …`
            // runs the DELETE).
            .any(|o| {
                o.name.value.eq_ignore_ascii_case("analyze")
                    || o.name.value.eq_ignore_ascii_case("analyse")
            })
}

/// The setting named by `set_config`'s first argument, `*` unless it is a
/// plain string literal.
fn set_config_name(args: &ast::FunctionArguments) -> String {
    if let ast::FunctionArguments::List(l) = args {
        if let Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Value(v)))) =
            l.args.first()
        {
            if let ast::Value::SingleQuotedString(s) = &v.value {
                return s.trim().to_ascii_lowercase();
            }
        }
    }
    "*".into()
}

/// The settings a `SET` statement changes.
fn set_names(s: &ast::Set) -> Vec<String> {
    let last = |n: &ObjectName| {
        n.0.last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_ascii_lowercase())
            .unwrap_or_else(|| "*".into())
    };
    match s {
        ast::Set::SingleAssignment { variable, .. } => vec![last(variable)],
        ast::Set::ParenthesizedAssignments { variables, .. } => {
            variables.iter().map(last).collect()
        }
        ast::Set::MultipleAssignments { assignments } => {
            assignments.iter().map(|a| last(&a.name)).collect()
        }
        ast::Set::SetSessionAuthorization(_) => vec!["session_authorization".into()],
        ast::Set::SetRole { .. } => vec!["role".into()],
        ast::Set::SetTimeZone { .. } => vec!["timezone".into()],
        ast::Set::SetNames { .. } | ast::Set::SetNamesDefault {} => vec!["client_encoding".into()],
        ast::Set::SetTransaction { .. } => vec!["transaction".into()],
        _ => vec!["*".into()],
    }
}

/// Classifies one parsed statement.
pub fn classify_statement(st: &Statement, text: String) -> StatementInfo {
    use ObjectType as O;
    use StatementKind as K;

    // EXPLAIN ANALYZE runs its statement: judge that statement.
    if let Statement::Explain {
        analyze,
        options,
        statement,
        ..
    } = st
    {
        let inner = classify_statement(statement, text.clone());
        if explain_is_analyze(*analyze, options) {
            return StatementInfo { text, ..inner };
        }
        let mut info = StatementInfo::new(K::Explain, text);
        for n in inner.reads.iter().chain(&inner.writes) {
            push_unique(&mut info.reads, n.clone());
        }
        info.functions = inner.functions.clone();
        info.inner = Some(Box::new(inner));
        return info;
    }
    if let Statement::Prepare { statement, .. } = st {
        let inner = classify_statement(statement, text.clone());
        let mut info = StatementInfo::new(K::Prepare, text);
        info.reads = inner.reads.clone();
        info.writes = inner.writes.clone();
        info.functions = inner.functions.clone();
        info.has_where = inner.has_where;
        info.copy_program = inner.copy_program;
        info.copy_file = inner.copy_file;
        info.settings = inner.settings.clone();
        info.inner = Some(Box::new(inner));
        return info;
    }

    let mut extra_writes: Vec<QualifiedName> = Vec::new();
    let mut extra_reads: Vec<QualifiedName> = Vec::new();
    let mut extra_functions: Vec<QualifiedName> = Vec::new();
    let mut copy_program = false;
    let mut copy_file = false;
    let names = |v: &[ObjectName]| v.iter().map(qualified_name).collect::<Vec<_>>();

    let kind = match st {
        Statement::Query(_) => K::Select,
        Statement::Insert(_) => K::Insert,
        Statement::Update(_) => K::Update,
        Statement::Delete(_) => K::Delete,
        Statement::Merge(_) => K::Merge,
        Statement::Copy {
            source, to, target, ..
        } => {
            if let ast::CopySource::Table { table_name, .. } = source {
                if *to {
                    extra_reads.push(qualified_name(table_name));
                } else {
                    extra_writes.push(qualified_name(table_name));
                }
            }
            copy_program = matches!(target, ast::CopyTarget::Program { .. });
            copy_file = matches!(target, ast::CopyTarget::File { .. });
            if *to {
                K::CopyTo
            } else {
                K::CopyFrom
            }
        }
        Statement::CreateTable(c) => {
            extra_writes.push(qualified_name(&c.name));
            K::Create(O::Table)
        }
        Statement::CreateView(v) => {
            extra_writes.push(qualified_name(&v.name));
            K::Create(if v.materialized {
                O::MaterializedView
            } else {
                O::View
            })
        }
        Statement::CreateIndex(i) => {
            extra_writes.push(qualified_name(&i.table_name));
            K::Create(O::Index)
        }
        Statement::CreateSchema { .. } => K::Create(O::Schema),
        Statement::CreateDatabase { .. } => K::Create(O::Database),
        Statement::CreateRole(_) => K::Create(O::Role),
        Statement::CreateUser(_) => K::Create(O::User),
        Statement::CreateSequence { name, .. } => {
            extra_writes.push(qualified_name(name));
            K::Create(O::Sequence)
        }
        Statement::CreateType { .. } => K::Create(O::Type),
        Statement::CreateDomain(_) => K::Create(O::Domain),
        Statement::CreateFunction(_) => K::Create(O::Function),
        Statement::CreateProcedure { .. } => K::Create(O::Procedure),
        Statement::CreateTrigger(_) => K::Create(O::Trigger),
        Statement::CreateExtension(_) => K::Create(O::Extension),
        Statement::CreatePolicy(_) => K::Create(O::Policy),
        Statement::CreateServer(_) => K::Create(O::Server),
        Statement::CreateCollation(_) => K::Create(O::Collation),
        Statement::CreateOperator(_) => K::Create(O::Operator),
        Statement::AlterTable(a) => {
            extra_writes.push(qualified_name(&a.name));
            K::Alter(O::Table)
        }
        Statement::AlterView { name, .. } => {
            extra_writes.push(qualified_name(name));
            K::Alter(O::View)
        }
        Statement::AlterIndex { name, .. } => {
            extra_writes.push(qualified_name(name));
            K::Alter(O::Index)
        }
        Statement::AlterSchema(_) => K::Alter(O::Schema),
        Statement::AlterRole { .. } => K::Alter(O::Role),
        Statement::AlterUser(_) => K::Alter(O::User),
        Statement::AlterType(_) => K::Alter(O::Type),
        Statement::AlterFunction(_) => K::Alter(O::Function),
        Statement::AlterPolicy(_) => K::Alter(O::Policy),
        Statement::AlterCollation(_) => K::Alter(O::Collation),
        Statement::AlterOperator(_) => K::Alter(O::Operator),
        Statement::Drop {
            object_type: ot,
            names: n,
            ..
        } => {
            extra_writes.extend(names(n));
            K::Drop(object_type(ot))
        }
        Statement::DropFunction(_) => K::Drop(O::Function),
        Statement::DropProcedure { .. } => K::Drop(O::Procedure),
        Statement::DropTrigger(_) => K::Drop(O::Trigger),
        Statement::DropExtension(_) => K::Drop(O::Extension),
        Statement::DropPolicy(_) => K::Drop(O::Policy),
        Statement::DropDomain(_) => K::Drop(O::Domain),
        Statement::DropOperator(_) => K::Drop(O::Operator),
        Statement::Truncate(t) => {
            extra_writes.extend(t.table_names.iter().map(|t| qualified_name(&t.name)));
            K::Truncate
        }
        Statement::Grant(_) => K::Grant,
        Statement::Revoke(_) => K::Revoke,
        Statement::Call(f) => {
            extra_functions.push(qualified_name(&f.name));
            K::Call
        }
        Statement::Set(_) | Statement::Reset(_) => K::Set,
        Statement::ShowVariable { .. } => K::Show,
        Statement::StartTransaction { statements, .. } if statements.is_empty() => K::Transaction,
        Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => K::Transaction,
        Statement::Execute { .. } => K::Execute,
        Statement::Deallocate { .. } => K::Deallocate,
        Statement::LISTEN { .. } => K::Listen,
        Statement::NOTIFY { .. } => K::Notify,
        Statement::UNLISTEN { .. } => K::Unlisten,
        Statement::Vacuum(_) => K::Vacuum,
        Statement::Analyze(_) => K::Analyze,
        Statement::Discard { .. } => K::Discard,
        Statement::Lock(_) => K::Lock,
        Statement::Comment { object_name, .. } => {
            extra_writes.push(qualified_name(object_name));
            K::Comment
        }
        Statement::Declare { .. } | Statement::Fetch { .. } | Statement::Close { .. } => K::Cursor,
        other => K::Other(variant_name(other)),
    };

    let mut c = Collector::default();
    let _ = st.visit(&mut c);

    let mut kind = kind;
    if c.select_into && kind == K::Select {
        kind = K::Create(O::Table);
    }
    let mut info = StatementInfo::new(kind, text);
    // The strongest data-modifying kind found anywhere wins over a select.
    if let Some(strongest) = c.dml.iter().max_by_key(|k| k.dml_rank()) {
        if info.kind.dml_rank() < strongest.dml_rank()
            && matches!(
                info.kind,
                K::Select | K::Insert | K::Update | K::Merge | K::Delete
            )
        {
            info.kind = strongest.clone();
        }
    }
    for k in &c.dml {
        if !info.dml_kinds.contains(k) {
            info.dml_kinds.push(k.clone());
        }
    }
    // Each write target was also visited once as a relation: remove that
    // one occurrence, so a table both read and written stays in reads.
    let mut relations = c.relations;
    for w in c.write_targets.iter().chain(&extra_writes) {
        if let Some(i) = relations.iter().position(|r| r == w) {
            relations.remove(i);
        }
    }
    for r in relations.into_iter().chain(extra_reads) {
        push_unique(&mut info.reads, r);
    }
    for w in c.write_targets.into_iter().chain(extra_writes) {
        push_unique(&mut info.writes, w);
    }
    for f in extra_functions.into_iter().chain(c.functions) {
        push_unique(&mut info.functions, f);
    }
    info.has_where = !c.unguarded;
    info.copy_program = copy_program;
    info.copy_file = copy_file;
    if let Statement::Set(set) = st {
        info.settings.extend(set_names(set));
    }
    if !c.settings.is_empty() && info.kind != K::Set && !info.dml_kinds.contains(&K::Set) {
        info.dml_kinds.push(K::Set);
    }
    info.settings.extend(c.settings);
    info
}
