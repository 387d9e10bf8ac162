//! Response masking: `Masker::mask_text` on arbitrary strings, `mask_json`
//! / `scan_json` / `mask_mcp_result` on arbitrary JSON, and
//! `RowMasker::mask_data_row` and `RowMasker::mask_frame` on arbitrary
//! rows, under fixed specs plus specs with a fuzzed custom detector pattern
//! or field path.
//!
//! Input: `mode:u8 ...`. `mode % 4` picks the spec (0: every built-in
//! detector, redact; 1: mixed strategies with a hash key; 2: a custom
//! detector whose pattern is `plen:u8 pattern[plen]`; 3: field and column
//! rules, one field path `plen:u8 path[plen]` fuzzed). `(mode >> 2) % 3`
//! picks the operation: text (the rest, lossy UTF-8), JSON (the rest, if it
//! parses), or a row (`ncols:u8 (name:u8 type:u8 format:u8 table:u8)*
//! (len:u8 bytes[len])*`, len 255 = NULL).
//!
//! Checked: no panic; nothing masked (count 0) means nothing changed (and
//! text stays borrowed); built-in detector spans are in bounds on character
//! boundaries; under spec 3, no value under an `email` key is left as it
//! was by `mask_json`; a row keeps its column count and every value a
//! `redact` column rule masks becomes NULL or holds the redaction;
//! `mask_frame` on the row's DataRow frame gives the frame `mask_data_row`
//! gives, encoded (or the same error).
#![no_main]

use std::borrow::Cow;
use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use pinhole_filter::mask::{
    encode_data_row, Builtin, ColumnAction, ColumnRule, DetectorRule, FieldRule, HashKey, MaskSpec,
    Masker, Strategy,
};
use pinhole_filter::pg::codec::FieldDescription;
use pinhole_fuzz_support::Bytes;
use serde_json::Value;

const X: &str = "[X]";

fn redact() -> Strategy {
    Strategy::Redact {
        text: Some(X.into()),
    }
}

fn builtins(s: &dyn Fn(Builtin) -> Strategy) -> Vec<DetectorRule> {
    Builtin::ALL
        .iter()
        .map(|b| DetectorRule {
            detector: b.name().into(),
            pattern: None,
            strategy: s(*b),
        })
        .collect()
}

fn columns() -> Vec<ColumnRule> {
    let c = |column: &str, strategy| ColumnRule {
        column: column.into(),
        strategy,
    };
    vec![
        c("email", redact()),
        c("users.ssn", redact()),
        c("public.users.phone", redact()),
        c("card", Strategy::Partial { keep: 4 }),
        c("notes", Strategy::Hash {}),
    ]
}

fn key() -> HashKey {
    HashKey::new(b"0123456789abcdef0123456789abcdef".to_vec()).expect("key")
}

fn spec(kind: u8, b: &mut Bytes<'_>) -> Option<MaskSpec> {
    Some(match kind {
        0 => MaskSpec {
            detectors: builtins(&|_| redact()),
            columns: columns(),
            ..MaskSpec::default()
        },
        1 => MaskSpec {
            detectors: builtins(&|d| match d {
                Builtin::Email => Strategy::Partial { keep: 4 },
                Builtin::PaymentCard => Strategy::Hash {},
                Builtin::Iban => Strategy::Partial { keep: 2 },
                Builtin::Phone => Strategy::Partial { keep: 0 },
                _ => Strategy::Redact { text: None },
            }),
            columns: columns(),
            unmaskable: pinhole_filter::mask::Unmaskable::Refuse,
            ..MaskSpec::default()
        },
        2 => {
            let n = usize::from(b.u8());
            let pattern = String::from_utf8_lossy(b.take(n)).into_owned();
            let mut detectors = vec![DetectorRule {
                detector: "custom".into(),
                pattern: Some(pattern),
                strategy: redact(),
            }];
            detectors.extend(
                builtins(&|_| Strategy::Partial { keep: 3 })
                    .into_iter()
                    .take(3),
            );
            MaskSpec {
                detectors,
                columns: columns(),
                ..MaskSpec::default()
            }
        }
        _ => {
            let n = usize::from(b.u8());
            let path = String::from_utf8_lossy(b.take(n)).into_owned();
            let f = |path: &str, strategy| FieldRule {
                path: path.into(),
                strategy,
            };
            MaskSpec {
                fields: vec![
                    f("**.email", redact()),
                    f("items[*].card", Strategy::Partial { keep: 4 }),
                    f("customer.*", Strategy::Hash {}),
                    f("rows[0]", redact()),
                    f(&path, Strategy::Partial { keep: 1 }),
                ],
                columns: columns(),
                ..MaskSpec::default()
            }
        }
    })
}

/// Every value under an `email` key (`**.email`) was masked: a string with
/// a letter or digit in it, a number or a boolean is not left as it was.
/// (The rule that masks it may be another one matching an enclosing value
/// first, so the exact replacement is not checked.)
fn emails_masked(orig: &Value, new: &Value, under_email: bool) {
    match (orig, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, x) in a {
                let y = b.get(k).expect("a key disappeared");
                emails_masked(x, y, under_email || k == "email");
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "an array changed length");
            for (x, y) in a.iter().zip(b) {
                emails_masked(x, y, under_email);
            }
        }
        (Value::Null, _) => {}
        (Value::String(s), _) if !s.chars().any(char::is_alphanumeric) => {}
        (o, n) if under_email => assert!(o != n, "an email value survived: {o}"),
        _ => {}
    }
}

const NAMES: &[&str] = &[
    "email", "ssn", "card", "notes", "id", "payload", "EMAIL", "phone", "e",
];
const TYPES: &[u32] = &[
    25, 1043, 114, 3802, 20, 1700, 23, 16, 17, 16_385, 1042, 19, 705, 142,
];

fn row(m: &Masker, b: &mut Bytes<'_>) {
    let ncols = usize::from(b.u8() % 6) + 1;
    let mut fields = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        let name = NAMES[usize::from(b.u8()) % NAMES.len()];
        let type_oid = TYPES[usize::from(b.u8()) % TYPES.len()];
        let format = i16::from(b.u8() % 3);
        let table_oid = [0u32, 16_400, 16_401][usize::from(b.u8() % 3)];
        fields.push(FieldDescription {
            name: name.into(),
            table_oid,
            column_attr: 1,
            type_oid,
            type_size: -1,
            type_modifier: -1,
            format,
        });
    }
    let mut values = Vec::new();
    while !b.is_empty() && values.len() < 8 {
        let len = b.u8();
        values.push(if len == 255 {
            None
        } else {
            Some(b.take(usize::from(len)).to_vec())
        });
    }
    let catalog: HashMap<u32, String> = [
        (16_400, "public.users".to_string()),
        (16_401, "orders".to_string()),
    ]
    .into_iter()
    .collect();
    let rm = m.row_masker(&fields, &catalog);
    let formats = rm.description_formats().to_vec();
    let frame = encode_data_row(values.clone());
    for fmts in [&formats[..], &[][..], &formats[..1.min(formats.len())]] {
        let mut v = values.clone();
        let result = rm.mask_data_row(&mut v, fmts);
        // The session masks the frame itself: the same bytes and count as
        // decoding, masking and encoding, the same errors.
        let want = match &result {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some((encode_data_row(v.clone()), *n))),
            Err(e) => Err(e.clone()),
        };
        assert_eq!(
            rm.mask_frame(&frame, fmts),
            want,
            "mask_frame differs from mask_data_row"
        );
        if let Ok(n) = result {
            assert_eq!(v.len(), values.len(), "the row lost or gained columns");
            if n == 0 {
                assert!(v == values, "nothing masked, yet the row changed");
            }
            for (i, (new, old)) in v.iter().zip(&values).enumerate() {
                let Some(ColumnAction::Mask { rule }) = rm.action(i) else {
                    continue;
                };
                if rule > 2 || old.is_none() {
                    continue;
                }
                if let Some(new) = new {
                    assert!(
                        new.windows(X.len()).any(|w| w == X.as_bytes()),
                        "a redacted column kept its value"
                    );
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let mode = b.u8();
    let kind = mode % 4;
    let Some(spec) = spec(kind, &mut b) else {
        return;
    };
    let k = key();
    let Ok(m) = Masker::new(&spec, (kind == 1 || kind == 3).then_some(&k)) else {
        return;
    };
    match (mode >> 2) % 3 {
        0 => {
            let text = String::from_utf8_lossy(b.rest());
            for d in Builtin::ALL {
                for (s, e) in d.find(&text) {
                    assert!(
                        s < e && e <= text.len(),
                        "{d:?} span {s}..{e} of {}",
                        text.len()
                    );
                    assert!(
                        text.is_char_boundary(s) && text.is_char_boundary(e),
                        "{d:?} span off a char boundary"
                    );
                }
            }
            if let Ok((out, n)) = m.mask_text(&text) {
                match out {
                    Cow::Borrowed(o) => assert!(n == 0 && o == text),
                    Cow::Owned(_) => assert!(n > 0, "an owned result with nothing masked"),
                }
            }
        }
        1 => {
            let Ok(orig) = serde_json::from_slice::<Value>(b.rest()) else {
                return;
            };
            let mut v = orig.clone();
            if let Ok(n) = m.mask_json(&mut v) {
                if n == 0 {
                    assert!(v == orig, "nothing masked, yet the JSON changed");
                }
                if kind == 3 {
                    emails_masked(&orig, &v, false);
                }
                let _ = serde_json::to_string(&v);
            }
            let mut v = orig.clone();
            if let Ok(0) = m.scan_json(&mut v) {
                assert!(v == orig, "nothing scanned out, yet the JSON changed");
            }
            let mut v = orig;
            let _ = m.mask_mcp_result(&mut v);
        }
        _ => row(&m, &mut b),
    }
});
