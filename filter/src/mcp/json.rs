//! Strict JSON decoding shared by the request and response paths.
//!
//! `serde_json` does the lexing (strings, escapes, surrogates, numbers); a
//! custom visitor builds the [`Value`] and adds what `serde_json` tolerates but
//! an authorizing proxy must not:
//! - a key repeated in one object (compared after unescaping, so `"name"` and
//!   `"n\u0061me"` collide) is an error at any depth: servers disagree on
//!   which copy wins (first, last, error), and any disagreement between
//!   Pinhole and the server is an authorization bypass;
//! - nesting is capped (the caller picks the depth).
//!
//! Lone surrogates (`"\ud800"`), numbers out of the `f64` range and trailing
//! bytes are rejected by `serde_json` itself.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `text` as one JSON value, rejecting duplicate keys and nesting
/// deeper than `max_depth` arrays/objects.
pub(crate) fn parse_strict(text: &str, max_depth: usize) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict {
        depth: 0,
        max_depth,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// JSON-RPC id equality as clients apply it: strings compare exactly,
/// numbers numerically (`1` equals `1.0`, as in JavaScript). Anything else
/// (null, objects) never matches.
pub(crate) fn same_id(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => {
            x == y
                || match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => x == y,
                    _ => false,
                }
        }
        _ => false,
    }
}

/// `s` cut to at most `max` characters, for messages that echo input.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", s.get(..cut).unwrap_or_default()),
        None => s.to_string(),
    }
}

#[derive(Clone, Copy)]
struct Strict {
    depth: usize,
    max_depth: usize,
}

impl Strict {
    fn deeper<E: de::Error>(self) -> Result<Strict, E> {
        if self.depth >= self.max_depth {
            return Err(E::custom(format_args!(
                "nesting deeper than {} levels",
                self.max_depth
            )));
        }
        Ok(Strict {
            depth: self.depth + 1,
            max_depth: self.max_depth,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.deeper()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.deeper()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {:?}",
                    clip(&key, 64)
                )));
            }
            let value = map.next_value_seed(inner)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_like_serde_json() {
        let text = r#"{"a":[1,-2,3.5,"x\u00e9",null,true,{"b":{}}],"c":18446744073709551615}"#;
        let strict = parse_strict(text, 64).unwrap();
        let loose: Value = serde_json::from_str(text).unwrap();
        assert_eq!(strict, loose);
    }

    #[test]
    fn duplicate_keys_at_any_depth() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            r#"[{"x":[{"k":1,"k":1}]}]"#,
            r#"{"params":{"name":"a","n\u0061me":"b"}}"#,
        ] {
            let err = parse_strict(text, 64).unwrap_err().to_string();
            assert!(err.contains("duplicate key"), "{text}: {err}");
        }
        // The same key in sibling objects is fine.
        assert!(parse_strict(r#"[{"a":1},{"a":2}]"#, 64).is_ok());
    }

    #[test]
    fn depth_limit() {
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(parse_strict(&ok, 64).is_ok());
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        let err = parse_strict(&deep, 64).unwrap_err().to_string();
        assert!(err.contains("nesting deeper than 64"), "{err}");
        let objs = format!("{}1{}", r#"{"a":"#.repeat(65), "}".repeat(65));
        assert!(parse_strict(&objs, 64).is_err());
        // Far beyond serde_json's own limit: still a clean error.
        let huge = "[".repeat(100_000);
        assert!(parse_strict(&huge, 64).is_err());
    }

    #[test]
    fn rejects_what_serde_json_rejects() {
        for text in [
            "",
            "{",
            r#"{"a":1} x"#,
            r#""\ud800""#,
            "1e400",
            "[1,]",
            "{'a':1}",
            "NaN",
        ] {
            assert!(parse_strict(text, 64).is_err(), "{text:?}");
        }
    }

    #[test]
    fn id_equality() {
        assert!(same_id(&json!(1), &json!(1)));
        assert!(same_id(&json!(1), &json!(1.0)));
        assert!(same_id(&json!("a"), &json!("a")));
        assert!(!same_id(&json!("1"), &json!(1)));
        assert!(!same_id(&json!(null), &json!(null)));
        assert!(!same_id(&json!(-1), &json!(1)));
    }

    #[test]
    fn clipping() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("ééééé", 2), "éé...");
    }
}
