//! A YAML document as a tree of nodes that each know where they start in
//! the source, built from `yaml-rust2`'s event stream.
//!
//! Beyond what a plain YAML loader does, this:
//! - reports duplicate mapping keys (most loaders silently keep the last);
//! - expands aliases by cloning the anchored node (bounded: see
//!   [`MAX_NODES`]), and rejects an alias to a node that is still open;
//! - rejects tags other than `!!str`, non-scalar mapping keys and more than
//!   one document;
//! - bounds input size ([`MAX_SOURCE_BYTES`]) and nesting ([`MAX_DEPTH`]),
//!   and builds the tree iteratively (no recursion on input depth).
//!
//! Plain scalars are resolved with the YAML 1.2 core schema (`null`, `true`,
//! `false`, integers, floats); quoted and block scalars are always strings.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diag::{Diagnostics, Span};

/// Largest policy source accepted.
pub const MAX_SOURCE_BYTES: usize = 4 * 1024 * 1024;
/// Deepest nesting of sequences and mappings accepted.
pub const MAX_DEPTH: usize = 64;
/// Most nodes a document may expand to (aliases count every time they are
/// used), so an alias bomb cannot exhaust memory.
pub const MAX_NODES: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in source order; keys are unique (duplicates are reported and
    /// dropped while building).
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// The scalar's content, after YAML unescaping and folding.
    pub text: String,
    /// Plain (unquoted, resolved by the core schema) or not.
    pub plain: bool,
}

/// A plain scalar resolved by the YAML 1.2 core schema.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resolved {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str,
}

impl Scalar {
    pub fn resolve(&self) -> Resolved {
        if !self.plain {
            return Resolved::Str;
        }
        resolve_plain(&self.text)
    }
}

fn resolve_plain(t: &str) -> Resolved {
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = t.strip_prefix("0x") {
        if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            if let Ok(v) = i128::from_str_radix(hex, 16) {
                return Resolved::Int(v);
            }
        }
        return Resolved::Str;
    }
    if let Some(oct) = t.strip_prefix("0o") {
        if !oct.is_empty() && oct.chars().all(|c| ('0'..='7').contains(&c)) {
            if let Ok(v) = i128::from_str_radix(oct, 8) {
                return Resolved::Int(v);
            }
        }
        return Resolved::Str;
    }
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        return match t.parse::<i128>() {
            Ok(v) => Resolved::Int(v),
            // Longer than i128: still a number to YAML; callers range-check.
            Err(_) => Resolved::Float(t.parse::<f64>().unwrap_or(f64::INFINITY)),
        };
    }
    if is_core_float(digits) {
        if let Ok(v) = t.parse::<f64>() {
            return Resolved::Float(v);
        }
    }
    Resolved::Str
}

/// `( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?` (sign
/// already stripped).
fn is_core_float(s: &str) -> bool {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (s.get(..i).unwrap_or(""), s.get(i + 1..)),
        None => (s, None),
    };
    if let Some(e) = exp {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        if e.is_empty() || !e.chars().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let int_ok = int.chars().all(|c| c.is_ascii_digit());
    let frac_ok = frac.is_none_or(|f| f.chars().all(|c| c.is_ascii_digit()));
    let has_digits = !int.is_empty() || frac.is_some_and(|f| !f.is_empty());
    int_ok && frac_ok && has_digits
}

impl Node {
    /// What kind of value this is, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Scalar(s) => match s.resolve() {
                Resolved::Null => "nothing (null)",
                Resolved::Bool(_) => "a boolean",
                Resolved::Int(_) => "an integer",
                Resolved::Float(_) => "a number",
                Resolved::Str => "a string",
            },
        }
    }

    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        self.as_scalar()
            .is_some_and(|s| s.resolve() == Resolved::Null)
    }

    /// Number of nodes in this subtree.
    fn count(&self) -> usize {
        // Iterative, so cloning deep aliases cannot overflow the stack.
        let mut n = 0;
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            n += 1;
            match &node.value {
                Value::Scalar(_) => {}
                Value::Seq(items) => stack.extend(items.iter()),
                Value::Map(entries) => {
                    n += entries.len();
                    stack.extend(entries.iter().map(|e| &e.value));
                }
            }
        }
        n
    }
}

pub fn span_of(m: &Marker) -> Span {
    Span::new(m.line().max(1), m.col() + 1)
}

enum Frame {
    Seq {
        span: Span,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        span: Span,
        anchor: usize,
        entries: Vec<Entry>,
        /// Key waiting for its value: (text, span), or `None` when the key
        /// was invalid (the value is then parsed and discarded).
        key: Option<Option<(String, Span)>>,
        first_seen: HashMap<String, Span>,
    },
}

struct Builder<'d> {
    diags: &'d mut Diagnostics,
    frames: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    root: Option<Node>,
}

/// Why building stopped early (the diagnostic has been recorded).
#[derive(Debug)]
pub struct Fatal;

impl Builder<'_> {
    fn check_tag(&mut self, tag: &Option<Tag>, span: Span) -> bool {
        match tag {
            None => false,
            Some(t) if t.handle == "tag:yaml.org,2002:" && t.suffix == "str" => true,
            Some(t) if t.handle == "!!" && t.suffix == "str" => true,
            Some(t) => {
                let shown = if t.handle == "tag:yaml.org,2002:" {
                    format!("!!{}", t.suffix)
                } else {
                    format!("{}{}", t.handle, t.suffix)
                };
                self.diags.error(
                    span,
                    format!("YAML tag `{shown}` is not supported (only `!!str` is)"),
                );
                false
            }
        }
    }

    fn count(&mut self, n: usize, span: Span) -> Result<(), Fatal> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            self.diags.error(
                span,
                format!("the document expands to more than {MAX_NODES} nodes (alias expansion?)"),
            );
            return Err(Fatal);
        }
        Ok(())
    }

    /// A complete node: store it under its anchor and attach it to its parent.
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.frames.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, span, .. }) => {
                // A block collection's start event is marked after its
                // first entry begins: point at the entry instead.
                if items.is_empty() && node.span < *span {
                    *span = node.span;
                }
                items.push(node)
            }
            Some(Frame::Map {
                entries,
                key,
                first_seen,
                span,
                ..
            }) => match key.take() {
                None => {
                    // This node is a key.
                    if first_seen.is_empty() && node.span < *span {
                        *span = node.span;
                    }
                    match &node.value {
                        Value::Scalar(s) => {
                            if let Some(first) = first_seen.get(&s.text) {
                                self.diags.error(
                                    node.span,
                                    format!(
                                        "duplicate key `{}` (first defined at {first}); YAML would silently keep only the last one",
                                        s.text
                                    ),
                                );
                                *key = Some(None);
                            } else {
                                first_seen.insert(s.text.clone(), node.span);
                                *key = Some(Some((s.text.clone(), node.span)));
                            }
                        }
                        _ => {
                            self.diags.error(
                                node.span,
                                format!("mapping keys must be strings, found {}", node.kind()),
                            );
                            *key = Some(None);
                        }
                    }
                }
                Some(Some((k, key_span))) => {
                    // An empty value (`key:` and nothing) is marked where the
                    // next token starts, often on the next line: point at
                    // its key instead.
                    let mut value = node;
                    if let Value::Scalar(s) = &value.value {
                        if s.plain && s.text.is_empty() {
                            value.span = key_span;
                        }
                    }
                    entries.push(Entry {
                        key: k,
                        key_span,
                        value,
                    })
                }
                Some(None) => {}
            },
        }
    }

    fn push_frame(&mut self, frame: Frame, span: Span) -> Result<(), Fatal> {
        if self.frames.len() >= MAX_DEPTH {
            self.diags.error(
                span,
                format!("nesting deeper than {MAX_DEPTH} levels is not supported"),
            );
            return Err(Fatal);
        }
        self.frames.push(frame);
        Ok(())
    }

    fn event(&mut self, ev: Event, mark: &Marker) -> Result<(), Fatal> {
        let span = span_of(mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, span)?;
                let forced_str = self.check_tag(&tag, span);
                let plain = matches!(style, TScalarStyle::Plain) && !forced_str;
                let node = Node {
                    span,
                    value: Value::Scalar(Scalar { text, plain }),
                };
                self.finish(node, anchor);
            }
            Event::SequenceStart(anchor, tag) => {
                self.count(1, span)?;
                self.check_tag(&tag, span);
                self.push_frame(
                    Frame::Seq {
                        span,
                        anchor,
                        items: Vec::new(),
                    },
                    span,
                )?;
            }
            Event::MappingStart(anchor, tag) => {
                self.count(1, span)?;
                self.check_tag(&tag, span);
                self.push_frame(
                    Frame::Map {
                        span,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                        first_seen: HashMap::new(),
                    },
                    span,
                )?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.frames.pop() {
                    Some(Frame::Seq {
                        span,
                        anchor,
                        items,
                    }) => (
                        Node {
                            span,
                            value: Value::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        span,
                        anchor,
                        entries,
                        ..
                    }) => (
                        Node {
                            span,
                            value: Value::Map(entries),
                        },
                        anchor,
                    ),
                    None => {
                        self.diags
                            .error(span, "malformed YAML: unbalanced collection end");
                        return Err(Fatal);
                    }
                };
                self.finish(node, anchor);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(target) => {
                    let node = target.clone();
                    self.count(node.count(), span)?;
                    self.finish(node, 0);
                }
                None => {
                    self.diags.error(
                        span,
                        "alias refers to a node that contains it (recursive aliases are not supported)",
                    );
                    return Err(Fatal);
                }
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
        Ok(())
    }
}

/// Parse `text` (one YAML document) into a node tree. Problems go to
/// `diags`; `None` when the document could not be built (a syntax error,
/// a limit) or is empty (also reported).
pub fn parse(text: &str, diags: &mut Diagnostics) -> Option<Node> {
    if text.len() > MAX_SOURCE_BYTES {
        diags.error(
            Span::new(1, 1),
            format!(
                "policy source is {} bytes, over the {MAX_SOURCE_BYTES}-byte limit",
                text.len()
            ),
        );
        return None;
    }
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder {
        diags,
        frames: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
    };
    let mut documents = 0usize;
    loop {
        let (ev, mark) = match parser.next_token() {
            Ok(x) => x,
            Err(e) => {
                b.diags.error(
                    span_of(e.marker()),
                    format!("YAML syntax error: {}", e.info()),
                );
                return None;
            }
        };
        match ev {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    b.diags.error(
                        span_of(&mark),
                        "a policy file holds exactly one YAML document; found a second one",
                    );
                    return None;
                }
            }
            ev => {
                if b.event(ev, &mark).is_err() {
                    return None;
                }
            }
        }
    }
    let root = b.root.take();
    match root {
        Some(n) if !n.is_null() => Some(n),
        _ => {
            b.diags.error(
                Span::new(1, 1),
                "the policy file is empty (it needs at least `version: 1`)",
            );
            None
        }
    }
}

/// Decode the source bytes as UTF-8, reporting the position of the first
/// invalid byte.
pub fn decode_utf8(bytes: &[u8], diags: &mut Diagnostics) -> Option<String> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Some(s.strip_prefix('\u{feff}').unwrap_or(s).to_owned()),
        Err(e) => {
            let good = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let good = String::from_utf8_lossy(good);
            let line = good.matches('\n').count() + 1;
            let col = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            diags.error(Span::new(line, col), "the policy file is not valid UTF-8");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(src: &str) -> (Option<Node>, Vec<String>) {
        let mut d = Diagnostics::new();
        let n = parse(src, &mut d);
        let msgs = d
            .into_sorted()
            .iter()
            .map(|d| format!("{}: {}", d.span, d.message))
            .collect();
        (n, msgs)
    }

    fn map(n: &Node) -> &Vec<Entry> {
        match &n.value {
            Value::Map(m) => m,
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn positions_of_keys_and_values() {
        let (n, msgs) = parse_ok("a: 1\nb:\n  c: [x, 'y']\n");
        assert!(msgs.is_empty(), "{msgs:?}");
        let n = n.unwrap();
        let m = map(&n);
        assert_eq!(m[0].key, "a");
        assert_eq!(m[0].key_span, Span::new(1, 1));
        assert_eq!(m[0].value.span, Span::new(1, 4));
        assert_eq!(m[1].key_span, Span::new(2, 1));
        let inner = map(&m[1].value);
        assert_eq!(inner[0].key_span, Span::new(3, 3));
        match &inner[0].value.value {
            Value::Seq(items) => {
                assert_eq!(items[0].span, Span::new(3, 7));
                assert_eq!(items[1].span, Span::new(3, 10));
                assert!(!items[1].as_scalar().unwrap().plain);
            }
            _ => panic!(),
        }
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let (_, msgs) = parse_ok("a: 1\nb: 2\na: 3\n");
        assert_eq!(
            msgs,
            vec!["3:1: duplicate key `a` (first defined at 1:1); YAML would silently keep only the last one"]
        );
    }

    #[test]
    fn aliases_are_cloned() {
        let (n, msgs) = parse_ok("x: &r [a, b]\ny: *r\n");
        assert!(msgs.is_empty());
        let n = n.unwrap();
        let m = map(&n);
        assert_eq!(m[0].value.value, m[1].value.value);
    }

    #[test]
    fn alias_bomb_is_bounded() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let (n, msgs) = parse_ok(&src);
        assert!(n.is_none());
        assert!(msgs[0].contains("more than"), "{msgs:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let src = "[".repeat(10_000) + &"]".repeat(10_000);
        let (n, msgs) = parse_ok(&src);
        assert!(n.is_none());
        // yaml-rust2 stops at its own recursion limit (256); ours is lower.
        assert!(msgs[0].contains("recursion limit"), "{msgs:?}");
        let src = "[".repeat(100) + &"]".repeat(100);
        let (n, msgs) = parse_ok(&src);
        assert!(n.is_none());
        assert_eq!(
            msgs,
            ["1:65: nesting deeper than 64 levels is not supported"]
        );
    }

    #[test]
    fn syntax_error_has_position() {
        let (n, msgs) = parse_ok("a: [1, 2\nb: 3\n");
        assert!(n.is_none());
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].contains("YAML syntax error"), "{msgs:?}");
    }

    #[test]
    fn scalars_resolve_by_core_schema() {
        let s = |t: &str| resolve_plain(t);
        assert_eq!(s("~"), Resolved::Null);
        assert_eq!(s(""), Resolved::Null);
        assert_eq!(s("true"), Resolved::Bool(true));
        assert_eq!(s("yes"), Resolved::Str);
        assert_eq!(s("12"), Resolved::Int(12));
        assert_eq!(s("-3"), Resolved::Int(-3));
        assert_eq!(s("0x1f"), Resolved::Int(31));
        assert_eq!(s("1.5"), Resolved::Float(1.5));
        assert_eq!(s("1e3"), Resolved::Float(1000.0));
        assert_eq!(s("1h"), Resolved::Str);
        assert_eq!(s("1.2.3"), Resolved::Str);
        assert_eq!(s("."), Resolved::Str);
    }

    #[test]
    fn tags_other_than_str_are_refused() {
        let (_, msgs) = parse_ok("a: !!str 1\nb: !foo x\n");
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            msgs,
            ["2:9: YAML tag `!foo` is not supported (only `!!str` is)"]
        );
    }

    #[test]
    fn more_than_one_document() {
        let (n, msgs) = parse_ok("a: 1\n---\nb: 2\n");
        assert!(n.is_none());
        assert!(msgs[0].contains("exactly one YAML document"));
    }

    #[test]
    fn garbage_never_panics() {
        for src in [
            "\u{0}",
            "{",
            "}",
            "[",
            "]",
            "&a",
            "*a",
            "a: *b",
            "? ",
            ":",
            "- - -",
            "!!",
            "%YAML 1.2",
            "a: |\n x\n y",
            "'",
            "\"\\u12",
            "&a [*a]",
            "---\n---",
            "...",
        ] {
            let mut d = Diagnostics::new();
            let _ = parse(src, &mut d);
        }
    }
}
