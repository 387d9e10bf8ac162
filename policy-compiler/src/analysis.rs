//! Static reasoning about the compiled model, shared by the lints and
//! `pinhole diff`: whether one glob covers another, whether one argument
//! constraint implies another.
//!
//! Every function here is **sound but incomplete**: `true` is a proof (every
//! string or value the narrower side accepts, the wider side accepts too);
//! `false` only means "not proven". Lints warn only on proofs, and `diff`
//! reports an unproven comparison as a change in both directions.

use pinhole_filter::glob;
use pinhole_filter::glob::{tokenize, Tok};
use pinhole_filter::policy::{ArgConstraint, ArgTest};
use serde_json::Value;

fn tokens(p: &str) -> Vec<Tok> {
    tokenize(p)
}

fn literal_of(toks: &[Tok]) -> Option<String> {
    toks.iter()
        .map(|t| match t {
            Tok::Lit(c) => Some(*c),
            _ => None,
        })
        .collect()
}

/// The text a pattern without wildcards matches (escapes removed), or
/// `None` when it has a wildcard.
pub fn literal(p: &str) -> Option<String> {
    literal_of(&tokens(p))
}

/// True when the pattern matches every string (`**`, or `*` for names that
/// never contain `/`, such as tool names: see [`matches_every_name`]).
pub fn matches_everything(p: &str) -> bool {
    let t = tokens(p);
    !t.is_empty()
        && t.iter().all(|t| matches!(t, Tok::Star | Tok::DStar))
        && t.contains(&Tok::DStar)
}

/// True when the pattern matches every name without a `/` (`*`, `**`):
/// for tool and prompt names, "every tool".
pub fn matches_every_name(p: &str) -> bool {
    let t = tokens(p);
    !t.is_empty() && t.iter().all(|t| matches!(t, Tok::Star | Tok::DStar))
}

/// Whether every string matched by `narrow` is matched by `wide`
/// (sound, incomplete).
pub fn glob_covers(wide: &str, narrow: &str) -> bool {
    if wide == narrow {
        return true;
    }
    let nt = tokens(narrow);
    if let Some(lit) = literal_of(&nt) {
        // The filter's own matcher decides a literal.
        return glob::matches(wide, &lit);
    }
    let wt = tokens(wide);
    // `narrow` never produces a `/`: no `**` and no literal `/`.
    let slash_free = !nt.iter().any(|t| matches!(t, Tok::DStar | Tok::Lit('/')));
    if !wt.is_empty() && wt.iter().all(|t| matches!(t, Tok::Star | Tok::DStar)) {
        return wt.contains(&Tok::DStar) || slash_free;
    }
    // `wide` must be [wildcard] LITERAL [wildcard].
    let mut w = wt.as_slice();
    let lead = match w.first() {
        Some(t @ (Tok::Star | Tok::DStar)) => {
            w = w.get(1..).unwrap_or(&[]);
            Some(*t)
        }
        _ => None,
    };
    let trail = match w.last() {
        Some(t @ (Tok::Star | Tok::DStar)) => {
            w = w.get(..w.len() - 1).unwrap_or(&[]);
            Some(*t)
        }
        _ => None,
    };
    let Some(lit) = literal_of(w) else {
        return false;
    };
    let ok_wild = |t: Option<Tok>| t != Some(Tok::Star) || slash_free;
    if !ok_wild(lead) || !ok_wild(trail) {
        return false;
    }
    // Maximal literal runs of `narrow`; every string it matches starts with
    // the first run (when the pattern starts with a literal), ends with the
    // last, and contains each.
    let mut runs: Vec<(usize, String)> = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    for (i, t) in nt.iter().enumerate() {
        match t {
            Tok::Lit(c) => {
                if cur.is_empty() {
                    start = i;
                }
                cur.push(*c);
            }
            _ => {
                if !cur.is_empty() {
                    runs.push((start, std::mem::take(&mut cur)));
                }
            }
        }
    }
    if !cur.is_empty() {
        runs.push((start, cur));
    }
    let prefix = runs
        .first()
        .filter(|(s, _)| *s == 0)
        .map(|(_, r)| r.as_str())
        .unwrap_or("");
    let suffix = match (runs.last(), nt.last()) {
        (Some((_, r)), Some(Tok::Lit(_))) => r.as_str(),
        _ => "",
    };
    match (lead, trail) {
        (None, None) => false,
        (None, Some(_)) => prefix.starts_with(&lit),
        (Some(_), None) => suffix.ends_with(&lit),
        (Some(_), Some(_)) => runs.iter().any(|(_, r)| r.contains(&lit)),
    }
}

/// Whether some pattern of `wide` covers `narrow`.
pub fn any_covers(wide: &[String], narrow: &str) -> bool {
    wide.iter().any(|w| glob_covers(w, narrow))
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64().filter(|f| f.is_finite())
}

/// JSON equality as the evaluator defines it (numbers numerically).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Whether a single value passes a test (the evaluator's semantics).
fn value_passes(v: &Value, t: &ArgTest) -> bool {
    match t {
        ArgTest::Equals(w) => json_eq(v, w),
        ArgTest::OneOf(o) => o.iter().any(|w| json_eq(v, w)),
        ArgTest::Glob(g) => v.as_str().is_some_and(|s| glob::any_matches(g, s)),
        ArgTest::Range { min, max } => {
            num(v).is_some_and(|n| min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m))
        }
    }
}

/// Whether every value passing `narrow` passes `wide` (sound, incomplete).
pub fn test_implies(narrow: &ArgTest, wide: &ArgTest) -> bool {
    match (narrow, wide) {
        (ArgTest::Equals(v), w) => value_passes(v, w),
        (ArgTest::OneOf(vs), w) => vs.iter().all(|v| value_passes(v, w)),
        (ArgTest::Glob(n), ArgTest::Glob(w)) => n.iter().all(|p| any_covers(w, p)),
        (ArgTest::Range { min: a, max: b }, ArgTest::Range { min: c, max: d }) => {
            let lower = match (a, c) {
                (_, None) => true,
                (Some(a), Some(c)) => a >= c,
                (None, Some(_)) => false,
            };
            let upper = match (b, d) {
                (_, None) => true,
                (Some(b), Some(d)) => b <= d,
                (None, Some(_)) => false,
            };
            lower && upper
        }
        _ => false,
    }
}

/// Whether every `arguments` object meeting all of `narrow` meets all of
/// `wide`: each constraint of `wide` is implied by a constraint of `narrow`
/// on the same path.
pub fn constraints_imply(narrow: &[ArgConstraint], wide: &[ArgConstraint]) -> bool {
    wide.iter().all(|w| {
        narrow
            .iter()
            .any(|n| n.path == w.path && test_implies(&n.test, &w.test))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn glob_cover_cases() {
        for (w, n) in [
            ("**", "anything/at/all"),
            ("**", "k8s_*"),
            ("*", "k8s_get_*"),
            ("*", "deploy"),
            ("k8s_*", "k8s_get_*"),
            ("k8s_**", "k8s_get/**"),
            ("*secret*", "k8s_get_secret*"),
            ("*secret*", "get_secrets"),
            ("/v1/**", "/v1/status/**"),
            ("/v1/**", "/v1/status"),
            ("*_prod", "deploy_?_prod"),
            ("docs://public/**", "docs://public/a/*"),
            ("deploy", "deploy"),
            ("a*b*c", "abc"),
        ] {
            assert!(glob_covers(w, n), "{w} should cover {n}");
        }
        for (w, n) in [
            ("*", "a/b"),
            ("*", "**"),
            ("*", "k8s/*"),
            ("k8s_*", "k8s_get/*"),
            ("k8s_get_*", "k8s_*"),
            ("*secret*", "*"),
            ("*secret*", "sec*ret"),
            ("/v1/*", "/v1/status/**"),
            ("a*b*c", "a?b?c"),
            ("deploy", "deploy*"),
            ("*_prod", "*_prod*"),
        ] {
            assert!(!glob_covers(w, n), "{w} should not be proven to cover {n}");
        }
    }

    #[test]
    fn everything_patterns() {
        assert!(matches_everything("**"));
        assert!(matches_everything("***"));
        assert!(!matches_everything("*"));
        assert!(matches_every_name("*"));
        assert!(!matches_every_name("a*"));
        assert!(!matches_every_name(""));
    }

    #[test]
    fn test_implication() {
        let one = |v: Value| ArgTest::OneOf(v.as_array().unwrap().clone());
        assert!(test_implies(
            &one(json!(["staging"])),
            &one(json!(["staging", "prod"]))
        ));
        assert!(!test_implies(
            &one(json!(["staging", "prod"])),
            &one(json!(["staging"]))
        ));
        assert!(test_implies(&ArgTest::Equals(json!(3)), &one(json!([3.0]))));
        assert!(test_implies(
            &ArgTest::Range {
                min: Some(1.0),
                max: Some(5.0)
            },
            &ArgTest::Range {
                min: Some(0.0),
                max: None
            }
        ));
        assert!(!test_implies(
            &ArgTest::Range {
                min: None,
                max: Some(5.0)
            },
            &ArgTest::Range {
                min: Some(0.0),
                max: None
            }
        ));
        assert!(test_implies(
            &ArgTest::Equals(json!(4)),
            &ArgTest::Range {
                min: Some(1.0),
                max: Some(5.0)
            }
        ));
        assert!(test_implies(
            &ArgTest::Glob(vec!["registry.acme/app/*".into()]),
            &ArgTest::Glob(vec!["registry.acme/**".into()])
        ));
        assert!(test_implies(
            &ArgTest::Equals(json!("eu-west")),
            &ArgTest::Glob(vec!["eu-*".into()])
        ));
        assert!(!test_implies(
            &ArgTest::Glob(vec!["eu-*".into()]),
            &ArgTest::Equals(json!("eu-west"))
        ));
    }
}
