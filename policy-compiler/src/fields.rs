//! Typed access to YAML nodes with diagnostics: every accessor reports what
//! is wrong (with the node's position) and returns `None`, so checking goes
//! on and all problems are reported in one run.

use crate::diag::{Diagnostics, Span};
use crate::suggest;
use std::collections::BTreeMap;

use crate::yaml::{Entry, Node, Resolved, Value};

/// A string value with the position it was written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// The entries of a mapping whose keys were checked against a schema.
pub struct Fields<'n> {
    pub span: Span,
    entries: &'n [Entry],
    /// Unknown keys, each with the known key it most resembles.
    pub unknown: Vec<(&'n str, Option<&'static str>)>,
}

impl<'n> Fields<'n> {
    pub fn get(&self, key: &str) -> Option<&'n Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    pub fn node(&self, key: &str) -> Option<&'n Node> {
        self.get(key).map(|e| &e.value)
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// True when an unknown key looks like a typo of `key`.
    pub fn misspelled(&self, key: &str) -> bool {
        self.unknown.iter().any(|(_, s)| *s == Some(key))
    }
}

/// Keys that are not part of the language yet but will be: (key, the whole
/// message reported instead of "unknown key").
pub type Future<'a> = &'a [(&'a str, &'a str)];

pub struct Checker<'d> {
    pub diags: &'d mut Diagnostics,
}

impl Checker<'_> {
    pub fn error(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.error(span, msg);
    }

    pub fn warning(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.warning(span, msg);
    }

    /// The node as a mapping whose keys must all be in `known` (or in
    /// `future`, which gets its own message). `what` names the mapping in
    /// messages, e.g. "a rule" or "the `mcp` matcher".
    pub fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        known: &[&'static str],
        future: Future<'_>,
    ) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.error(
                node.span,
                format!("expected a mapping for {what}, found {}", node.kind()),
            );
            return None;
        };
        let mut unknown = Vec::new();
        for e in entries {
            if known.contains(&e.key.as_str()) {
                continue;
            }
            if let Some((_, why)) = future.iter().find(|(k, _)| *k == e.key) {
                self.error(e.key_span, *why);
                continue;
            }
            let near = suggest::closest(&e.key, known.iter().copied());
            let hint = match near {
                Some(k) => format!("; did you mean `{k}`?"),
                None => format!(" (expected one of: {})", known.join(", ")),
            };
            self.error(
                e.key_span,
                format!("unknown key `{}` in {what}{hint}", e.key),
            );
            unknown.push((e.key.as_str(), near));
        }
        Some(Fields {
            span: node.span,
            entries,
            unknown,
        })
    }

    /// Report a missing required key (unless an unknown key looks like a
    /// misspelling of it: that was reported already).
    pub fn required<'n>(&mut self, f: &Fields<'n>, key: &str, what: &str) -> Option<&'n Node> {
        let n = f.node(key);
        if n.is_none() && !f.misspelled(key) {
            self.error(
                f.span,
                format!("{what} is missing the required key `{key}`"),
            );
        }
        n
    }

    /// A string scalar. Plain numbers and booleans are taken as written
    /// (`repository_id: 1234` is the string "1234").
    pub fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match &node.value {
            Value::Scalar(s) if s.resolve() != Resolved::Null => Some(Spanned {
                value: s.text.clone(),
                span: node.span,
            }),
            _ => {
                self.error(
                    node.span,
                    format!("expected a string for {what}, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// A non-empty string.
    pub fn nonempty_string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        let s = self.string(node, what)?;
        if s.value.is_empty() {
            self.error(s.span, format!("{what} cannot be empty"));
            return None;
        }
        Some(s)
    }

    /// A list of strings; a single string is accepted as a one-element
    /// list. Invalid elements are reported and skipped.
    pub fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<Spanned<String>>> {
        match &node.value {
            Value::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    if let Some(s) = self.string(item, what) {
                        out.push(s);
                    }
                }
                Some(out)
            }
            Value::Scalar(_) if !node.is_null() => self.string(node, what).map(|s| vec![s]),
            _ => {
                self.error(
                    node.span,
                    format!(
                        "expected a string or a list of strings for {what}, found {}",
                        node.kind()
                    ),
                );
                None
            }
        }
    }

    /// [`Checker::string_list`] that must not be empty: `why` says what an
    /// empty list would (wrongly) mean.
    pub fn nonempty_list(
        &mut self,
        node: &Node,
        what: &str,
        why: &str,
    ) -> Option<Vec<Spanned<String>>> {
        let list = self.string_list(node, what)?;
        if list.is_empty() && matches!(node.value, Value::Seq(_)) {
            self.error(node.span, format!("{what} cannot be an empty list: {why}"));
            return None;
        }
        Some(list)
    }

    pub fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.as_scalar().map(|s| s.resolve()) {
            Some(Resolved::Bool(b)) => Some(b),
            _ => {
                self.error(
                    node.span,
                    format!(
                        "expected `true` or `false` for {what}, found {}",
                        node.kind()
                    ),
                );
                None
            }
        }
    }

    /// A number (integer or float).
    pub fn number(&mut self, node: &Node, what: &str) -> Option<f64> {
        match node.as_scalar().map(|s| s.resolve()) {
            // Beyond 2^53 an integer bound loses precision; such bounds
            // are not meaningful for JSON numbers anyway.
            Some(Resolved::Int(i)) => Some(i as f64),
            Some(Resolved::Float(f)) if f.is_finite() => Some(f),
            _ => {
                self.error(
                    node.span,
                    format!("expected a finite number for {what}, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// A duration in seconds: `90s`, `15m`, `1h30m`, `1d`, or an integer
    /// number of seconds.
    pub fn duration(&mut self, node: &Node, what: &str) -> Option<Spanned<u64>> {
        let Some(s) = node.as_scalar() else {
            self.error(
                node.span,
                format!(
                    "expected a duration for {what} (e.g. `30s`, `1h`), found {}",
                    node.kind()
                ),
            );
            return None;
        };
        let r = match s.resolve() {
            Resolved::Int(i) => u64::try_from(i)
                .map_err(|_| format!("invalid duration `{}`: must not be negative", s.text)),
            Resolved::Str => crate::duration::parse(&s.text),
            _ => Err(format!(
                "expected a duration for {what} (e.g. `30s`, `1h`), found {}",
                node.kind()
            )),
        };
        match r {
            Ok(value) => Some(Spanned {
                value,
                span: node.span,
            }),
            Err(e) => {
                self.error(node.span, format!("{e} (in {what})"));
                None
            }
        }
    }

    pub fn json_list(&mut self, items: &[Node]) -> Option<Vec<serde_json::Value>> {
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for i in items {
            match self.json(i) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A YAML value as JSON (objects with sorted keys, whatever serde_json's
    /// map type, so the blob is canonical).
    pub fn json(&mut self, node: &Node) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        match &node.value {
            Value::Scalar(s) => match s.resolve() {
                Resolved::Null => Some(J::Null),
                Resolved::Bool(b) => Some(J::Bool(b)),
                Resolved::Int(i) => {
                    let n = if let Ok(v) = i64::try_from(i) {
                        Some(serde_json::Number::from(v))
                    } else {
                        u64::try_from(i).ok().map(serde_json::Number::from)
                    };
                    if n.is_none() {
                        self.error(
                            node.span,
                            format!("integer {} is out of range (64 bits)", s.text),
                        );
                    }
                    n.map(J::Number)
                }
                Resolved::Float(f) => {
                    let n = serde_json::Number::from_f64(f);
                    if n.is_none() {
                        self.error(
                            node.span,
                            format!("`{}` is not a finite number; JSON cannot carry it", s.text),
                        );
                    }
                    n.map(J::Number)
                }
                Resolved::Str => Some(J::String(s.text.clone())),
            },
            Value::Seq(items) => self.json_list(items).map(J::Array),
            Value::Map(entries) => {
                let mut sorted = BTreeMap::new();
                let mut ok = true;
                for e in entries {
                    match self.json(&e.value) {
                        Some(v) => {
                            sorted.insert(e.key.clone(), v);
                        }
                        None => ok = false,
                    }
                }
                ok.then(|| J::Object(sorted.into_iter().collect()))
            }
        }
    }
}
