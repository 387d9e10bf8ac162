//! Argument paths: where a constraint looks inside a `tools/call`'s
//! `arguments` object.
//!
//! ```text
//! path    = segment ( "." key | "[" index "]" | "[" quoted "]" )*
//! segment = key | "[" index "]" | "[" quoted "]"
//! key     = one or more characters other than `.`, `[`, `]`, `"`
//! index   = decimal digits (0-based array index)
//! quoted  = `"` characters with `\"` and `\\` escapes `"`   (a key that
//!           contains `.`, `[`, `]` or `"`)
//! ```
//!
//! `spec.containers[0].image`, `labels["app.kubernetes.io/name"]`.

use pinhole_filter::policy::PathSeg;

/// Parse an argument path. The error names the 1-based character position.
pub fn parse(text: &str) -> Result<Vec<PathSeg>, String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Err("an argument path cannot be empty".into());
    }
    let err = |at: usize, what: &str| {
        Err(format!(
            "invalid argument path `{text}`: {what} at character {}",
            at + 1
        ))
    };
    let mut out = Vec::new();
    let mut i = 0usize;
    // Whether a `.` may / must come next.
    let mut first = true;
    while i < chars.len() {
        let c = chars.get(i).copied().unwrap_or('.');
        if c == '[' {
            i += 1;
            match chars.get(i) {
                Some('"') => {
                    i += 1;
                    let mut key = String::new();
                    loop {
                        match chars.get(i) {
                            None => return err(i, "unterminated quoted key"),
                            Some('\\') => {
                                match chars.get(i + 1) {
                                    Some(e @ ('"' | '\\')) => key.push(*e),
                                    _ => {
                                        return err(i, "only `\\\"` and `\\\\` escapes are allowed")
                                    }
                                }
                                i += 2;
                            }
                            Some('"') => {
                                i += 1;
                                break;
                            }
                            Some(ch) => {
                                key.push(*ch);
                                i += 1;
                            }
                        }
                    }
                    if chars.get(i) != Some(&']') {
                        return err(i, "expected `]` after the quoted key");
                    }
                    i += 1;
                    out.push(PathSeg::Key(key));
                }
                Some(d) if d.is_ascii_digit() => {
                    let start = i;
                    while chars.get(i).is_some_and(char::is_ascii_digit) {
                        i += 1;
                    }
                    let digits: String = chars.get(start..i).unwrap_or_default().iter().collect();
                    if chars.get(i) != Some(&']') {
                        return err(i, "expected `]` after the index");
                    }
                    i += 1;
                    let idx: usize = match digits.parse() {
                        Ok(v) => v,
                        Err(_) => return err(start, "index too large"),
                    };
                    out.push(PathSeg::Index(idx));
                }
                _ => return err(i, "expected an index or a quoted key after `[`"),
            }
            first = false;
            continue;
        }
        if !first {
            if c != '.' {
                return err(i, "expected `.` or `[`");
            }
            i += 1;
        }
        let start = i;
        while chars
            .get(i)
            .is_some_and(|ch| !matches!(ch, '.' | '[' | ']' | '"'))
        {
            i += 1;
        }
        if i == start {
            return match chars.get(i) {
                Some(ch) => err(i, &format!("expected a key, found `{ch}`")),
                None => err(i, "expected a key after `.`"),
            };
        }
        out.push(PathSeg::Key(
            chars.get(start..i).unwrap_or_default().iter().collect(),
        ));
        first = false;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> PathSeg {
        PathSeg::Key(s.into())
    }

    #[test]
    fn valid_paths() {
        assert_eq!(parse("environment"), Ok(vec![k("environment")]));
        assert_eq!(
            parse("a.b[0].c"),
            Ok(vec![k("a"), k("b"), PathSeg::Index(0), k("c")])
        );
        assert_eq!(
            parse(r#"labels["app.kubernetes.io/name"]"#),
            Ok(vec![k("labels"), k("app.kubernetes.io/name")])
        );
        assert_eq!(
            parse("m[1][2]"),
            Ok(vec![k("m"), PathSeg::Index(1), PathSeg::Index(2)])
        );
        assert_eq!(parse(r#"["a\"b"]"#), Ok(vec![k("a\"b")]));
        assert_eq!(parse("dry run"), Ok(vec![k("dry run")]));
    }

    #[test]
    fn invalid_paths() {
        for (bad, at) in [
            ("", ""),
            ("a..b", "character 3"),
            (".a", "character 1"),
            ("a.", "character 3"),
            ("a[", "character 3"),
            ("a[x]", "character 3"),
            ("a[0", "character 4"),
            ("a[0]b", "character 5"),
            (r#"a["x"#, "character 5"),
            ("a]", "character 2"),
            ("[0]", ""),
        ] {
            let r = parse(bad);
            if bad == "[0]" {
                assert!(r.is_ok());
                continue;
            }
            let e = r.expect_err(bad);
            assert!(e.contains(at), "{bad}: {e}");
        }
    }
}
