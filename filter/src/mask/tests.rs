//! Tests of the masking module (native and wasm32-wasip1: no threads, no
//! files).

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{json, Value};

use super::*;
use crate::pg::codec::{decode_backend, BackendMessage, BackendPhase, FieldDescription};

// ---------------------------------------------------------------- helpers

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

fn key() -> HashKey {
    HashKey::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap()
}

fn masker(spec: &MaskSpec) -> Masker {
    Masker::new(spec, Some(&key())).unwrap()
}

fn redact() -> Strategy {
    Strategy::Redact { text: None }
}

/// A spec with these built-in detectors, all `redact`.
fn detectors(names: &[&str]) -> MaskSpec {
    MaskSpec {
        detectors: names
            .iter()
            .map(|n| DetectorRule {
                detector: (*n).to_string(),
                pattern: None,
                strategy: redact(),
            })
            .collect(),
        ..MaskSpec::default()
    }
}

fn all_detectors() -> MaskSpec {
    let names: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
    detectors(&names)
}

fn fields(rules: &[(&str, Strategy)]) -> MaskSpec {
    MaskSpec {
        fields: rules
            .iter()
            .map(|(p, s)| FieldRule {
                path: (*p).to_string(),
                strategy: s.clone(),
            })
            .collect(),
        ..MaskSpec::default()
    }
}

/// What detector `name` finds in `text`.
fn found<'t>(name: &str, text: &'t str) -> Vec<&'t str> {
    Builtin::from_name(name)
        .unwrap()
        .find(text)
        .into_iter()
        .map(|(s, e)| &text[s..e])
        .collect()
}

fn assert_finds(name: &str, text: &str, want: &[&str]) {
    assert_eq!(found(name, text), want, "{name} in {text:?}");
}

fn assert_none(name: &str, texts: &[&str]) {
    for t in texts {
        assert_eq!(
            found(name, t),
            Vec::<&str>::new(),
            "{name} must not match {t:?}"
        );
    }
}

fn mask(m: &Masker, text: &str) -> (String, usize) {
    let (out, n) = m.mask_text(text).unwrap();
    (out.into_owned(), n)
}

// ---------------------------------------------------------------- detectors

#[test]
fn builtin_names_are_stable() {
    let names: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
    assert_eq!(
        names,
        [
            "email",
            "phone",
            "payment_card",
            "iban",
            "us_ssn",
            "aws_access_key_id",
            "private_key",
            "jwt",
            "bearer_token"
        ]
    );
    for b in Builtin::ALL {
        assert_eq!(Builtin::from_name(b.name()), Some(b));
    }
    assert_eq!(Builtin::from_name("Email"), None);
}

#[test]
fn email_true_positives() {
    assert_finds(
        "email",
        "contact alice.smith+tag@example.co.uk today",
        &["alice.smith+tag@example.co.uk"],
    );
    assert_finds("email", "x@y.io", &["x@y.io"]);
    assert_finds("email", "<bob@mail.example.com>", &["bob@mail.example.com"]);
    assert_finds("email", "mail alice@example.com.", &["alice@example.com"]);
    assert_finds(
        "email",
        "a@example.com,b_c%d@sub-domain.example.org",
        &["a@example.com", "b_c%d@sub-domain.example.org"],
    );
    assert_finds("email", "\"..dots@example.com\"", &["dots@example.com"]);
    assert_finds("email", "é alice@example.com é", &["alice@example.com"]);
}

#[test]
fn email_true_negatives() {
    assert_none(
        "email",
        &[
            "user@localhost",
            "@example.com",
            "a@b.c",
            "foo@192.168.1.1",
            "version 1.2@3.4",
            "me@-bad.com",
            "a@@example.com",
            "just text",
            "twitter @handle",
        ],
    );
}

#[test]
fn phone_true_positives() {
    for p in [
        "+1 415 555 2671",
        "+14155552671",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "+1(415)555-2671",
        "+49-30-1234567",
        "+33.1.23.45.67.89",
        "(415) 555-2671",
        "(415)555-2671",
        "(415) 555 2671",
        "415-555-2671",
        "415.555.2671",
        "1-800-555-1234",
        "020 7946 0958",
        "07700 900123",
        "06 12 34 56 78",
        "(030) 1234 5678",
        "0800-123-4567",
    ] {
        let text = format!("call {p} now");
        assert_finds("phone", &text, &[p]);
    }
    assert_finds("phone", "tel:+14155552671.", &["+14155552671"]);
}

#[test]
fn phone_true_negatives() {
    assert_none(
        "phone",
        &[
            "12345",
            "4155552671",
            "415 555 2671",
            "2024-01-15",
            "2024-01-15T10:30:00+01:00",
            "1.2.3",
            "v1.2.3.4567",
            "192.168.100.200",
            "10:30:00",
            "+123",
            "+1234567",
            "+1234567890123456789",
            "id 415-555-2671-12",
            "0123456789",
            "01-02-2024",
            "price 1 000 000",
            "x+14155552671",
            "123-456-7890",
            "415-155-2671",
            "01 23 45 67 89 01 23",
        ],
    );
}

#[test]
fn card_true_positives() {
    for c in [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "378282246310005",
        "3782 822463 10005",
        "6011111111111117",
        "5555555555554444",
        "4000056655665556",
    ] {
        let text = format!("card: {c}.");
        assert_finds("payment_card", &text, &[c]);
    }
    assert_finds(
        "payment_card",
        "Order 12 4111 1111 1111 1111 exp",
        &["4111 1111 1111 1111"],
    );
    assert_finds(
        "payment_card",
        "4111 1111 1111 1111 2024",
        &["4111 1111 1111 1111"],
    );
    assert_finds(
        "payment_card",
        "4111111111111111,5555555555554444",
        &["4111111111111111", "5555555555554444"],
    );
}

#[test]
fn card_true_negatives() {
    assert_none(
        "payment_card",
        &[
            "4111111111111112",
            "0000000000000000",
            "0000 0000 0000 0000",
            "1234567890123",
            "41111111111111111111",
            "x4111111111111111",
            "4111111111111111abc",
            "3.4111111111111111",
            "4111111111111111.5",
            "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6",
            "41 11 11 11 11 11 11 11",
            "411111111111",
            "1111111111111111",
        ],
    );
}

#[test]
fn iban_true_positives() {
    for i in [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32",
        "FR1420041010050500013M02606",
        "NO9386011117947",
        "BE68539007547034",
        "NL91ABNA0417164300",
    ] {
        let text = format!("IBAN: {i}, thanks");
        assert_finds("iban", &text, &[i]);
    }
    assert_finds(
        "iban",
        "pay DE89 3704 0044 0532 0130 00 EUR",
        &["DE89 3704 0044 0532 0130 00"],
    );
}

#[test]
fn iban_true_negatives() {
    assert_none(
        "iban",
        &[
            "DE89370400440532013001",
            "DE8937040044053201300",
            "XX89370400440532013000",
            "de89370400440532013000",
            "DE89370400440532013000X",
            "ADE89370400440532013000",
            "DE89 3704 0044 0532 013000",
            "DEXX370400440532013000",
        ],
    );
}

#[test]
fn ssn_true_positives() {
    assert_finds("us_ssn", "SSN 123-45-6789.", &["123-45-6789"]);
    assert_finds("us_ssn", "078-05-1120", &["078-05-1120"]);
    assert_finds(
        "us_ssn",
        "(899-99-9999) 001-01-0001",
        &["899-99-9999", "001-01-0001"],
    );
}

#[test]
fn ssn_true_negatives() {
    assert_none(
        "us_ssn",
        &[
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123456789",
            "1123-45-6789",
            "123-45-67890",
            "a123-45-6789",
            "123-45-6789-1",
            "123 45 6789",
            "1.123-45-6789",
        ],
    );
}

#[test]
fn aws_key_true_positives_and_negatives() {
    assert_finds(
        "aws_access_key_id",
        "id=AKIAIOSFODNN7EXAMPLE;",
        &["AKIAIOSFODNN7EXAMPLE"],
    );
    assert_finds(
        "aws_access_key_id",
        "\"ASIAY34FZKBOKMUTVV7A\"",
        &["ASIAY34FZKBOKMUTVV7A"],
    );
    assert_none(
        "aws_access_key_id",
        &[
            "AKIAIOSFODNN7EXAMPL",
            "XAKIAIOSFODNN7EXAMPLE",
            "AKIAIOSFODNN7EXAMPLEX",
            "akiaiosfodnn7example",
            "AKIDIOSFODNN7EXAMPLE",
            "AKIAiosfodnn7EXAMPLE",
        ],
    );
}

#[test]
fn private_key_blocks() {
    let rsa =
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc=\n-----END RSA PRIVATE KEY-----";
    let text = format!("key:\n{rsa}\nafter");
    assert_finds("private_key", &text, &[rsa]);
    let ssh =
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n-----END OPENSSH PRIVATE KEY-----";
    let pkcs8 = "-----BEGIN PRIVATE KEY-----\nMC4CAQ==\n-----END PRIVATE KEY-----";
    let both = format!("{ssh}\n\n{pkcs8}");
    assert_finds("private_key", &both, &[ssh, pkcs8]);
    // A truncated key is masked through the end of the text.
    let cut = "x -----BEGIN EC PRIVATE KEY-----\nMHcCAQEE";
    assert_finds(
        "private_key",
        cut,
        &["-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE"],
    );
    // A mismatched END does not close the block.
    let odd = "-----BEGIN RSA PRIVATE KEY-----\nAA\n-----END CERTIFICATE-----\nBB";
    assert_finds("private_key", odd, &[odd]);
    assert_none(
        "private_key",
        &[
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
            "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
            "BEGIN RSA PRIVATE KEY",
            "-----BEGIN private key-----",
        ],
    );
}

#[test]
fn jwt_tokens() {
    assert_finds("jwt", &format!("token {JWT}. Next"), &[JWT]);
    let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
    assert_finds("jwt", &format!("{unsigned} x"), &[unsigned]);
    let jwe = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..aXZpdml2aXY.Y2lwaGVydGV4dA.dGFndGFn";
    assert_finds("jwt", jwe, &[jwe]);
    assert_finds("jwt", &format!("\"{JWT}\""), &[JWT]);
    assert_none(
        "jwt",
        &[
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJhbGciOiJIUzI1NiJ9.x",
            "eyJhbGciOiJIUzI1NiJ9.eyJ",
            &format!("x{JWT}"),
            "eyJabc.eyJzdWIiOiJ4In0.sig",
        ],
    );
}

#[test]
fn bearer_tokens() {
    assert_finds(
        "bearer_token",
        "Authorization: Bearer abcDEF1234567890xyz",
        &["abcDEF1234567890xyz"],
    );
    assert_finds(
        "bearer_token",
        "bearer  tok_1234567890abcdef==, next",
        &["tok_1234567890abcdef=="],
    );
    assert_finds("bearer_token", &format!("BEARER {JWT}"), &[JWT]);
    assert_none(
        "bearer_token",
        &[
            "Bearer token",
            "a Bearer authentication-scheme-here",
            "Bearerabc1234567890123456",
            "xBearer abc1234567890123456",
            "Bearer short1",
        ],
    );
}

#[test]
fn detectors_handle_adversarial_inputs_quickly() {
    // Long runs of the characters each scanner anchors on: linear scans
    // finish at once (a quadratic one would take seconds here).
    let inputs = [
        "@".repeat(200_000),
        "a@".repeat(100_000),
        "1".repeat(200_000),
        "1 ".repeat(100_000),
        "01 ".repeat(70_000),
        "+1 ".repeat(70_000),
        "eyJ".repeat(70_000),
        "eyJhbGciOiJIUzI1NiJ9.".repeat(10_000),
        "-----BEGIN PRIVATE KEY-----".repeat(10_000),
        "Bearer ".repeat(30_000),
        "AKIA".repeat(50_000),
        "DE89".repeat(50_000),
        "123-45-".repeat(30_000),
    ];
    let m = masker(&all_detectors());
    for input in &inputs {
        let _ = m.mask_text(input).unwrap();
    }
}

/// Deterministic pseudo-random strings over characters the scanners care
/// about (and some multi-byte ones).
fn noise(seed: u64, count: usize) -> Vec<String> {
    let alphabet: Vec<char> = "0123456789 -.+()@aAZ_eyJKIS\n/:,=[]{}\"'\\é€𝄞BEGIN-PRIVATEKEY"
        .chars()
        .collect();
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    (0..count)
        .map(|_| {
            let len = next() % 48;
            (0..len)
                .map(|_| alphabet[next() % alphabet.len()])
                .collect()
        })
        .collect()
}

#[test]
fn scanners_never_panic_and_spans_are_char_boundaries() {
    let mut strategies = [redact(), Strategy::Partial { keep: 3 }, Strategy::Hash {}]
        .into_iter()
        .cycle();
    let mut spec = MaskSpec::default();
    for b in Builtin::ALL {
        spec.detectors.push(DetectorRule {
            detector: b.name().into(),
            pattern: None,
            strategy: strategies.next().unwrap(),
        });
    }
    let m = masker(&spec);
    for text in noise(7, 20_000) {
        for b in Builtin::ALL {
            let mut last = 0;
            for (s, e) in b.find(&text) {
                assert!(last <= s && s < e && e <= text.len(), "{b:?} {text:?}");
                assert!(text.is_char_boundary(s) && text.is_char_boundary(e));
                last = e;
            }
        }
        m.mask_text(&text).unwrap();
        let _ = path::Path::parse(&text);
    }
    // Structured inputs seeded with real matches, shuffled by the noise.
    for (i, text) in noise(11, 2_000).into_iter().enumerate() {
        let sample = [
            "alice@example.com",
            "+44 20 7946 0958",
            "4111 1111 1111 1111",
            "DE89 3704 0044 0532 0130 00",
            "123-45-6789",
            "AKIAIOSFODNN7EXAMPLE",
            JWT,
            "Bearer abcDEF1234567890xyz",
            "-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----",
        ][i % 9];
        let mixed = format!("{text} {sample} {text}");
        let (out, n) = m.mask_text(&mixed).unwrap();
        assert!(n >= 1, "{mixed:?}");
        assert!(!out.contains(sample), "{mixed:?} -> {out:?}");
    }
}

#[test]
fn pg_scan_survives_random_binary_values() {
    let m = masker(&all_detectors());
    let fields = [
        field("a", 0, 0, NUMERIC, 1),
        field("b", 0, 0, INT8, 1),
        field("c", 0, 0, 16_500, 1),
        field("d", 0, 0, JSONB, 1),
    ];
    let rm = m.row_masker(&fields, &());
    for text in noise(3, 5_000) {
        let bytes = text.into_bytes();
        let mut values = vec![Some(bytes.clone()); 4];
        let _ = rm.mask_data_row(&mut values, &[1]);
        let mut values = vec![Some(bytes.clone()); 4];
        let _ = rm.mask_data_row(&mut values, &[0]);
    }
}

// ---------------------------------------------------------------- text

#[test]
fn mask_text_replaces_every_match() {
    let m = masker(&all_detectors());
    let (out, n) = mask(
        &m,
        "mail alice@example.com, card 4111 1111 1111 1111, ssn 123-45-6789",
    );
    assert_eq!(out, "mail [REDACTED], card [REDACTED], ssn [REDACTED]");
    assert_eq!(n, 3);
}

#[test]
fn mask_text_without_match_borrows() {
    let m = masker(&all_detectors());
    let (out, n) = m.mask_text("nothing to see, version 1.2.3").unwrap();
    assert!(matches!(out, Cow::Borrowed(_)));
    assert_eq!(n, 0);
    let empty = masker(&MaskSpec::default());
    assert!(empty.is_empty());
    let (out, n) = empty.mask_text("alice@example.com").unwrap();
    assert!(matches!(out, Cow::Borrowed("alice@example.com")));
    assert_eq!(n, 0);
}

#[test]
fn overlapping_matches_merge_with_the_most_protective_strategy() {
    // `alice` (custom, partial) lies inside the email (redact): the union
    // is masked once, with redact, whichever rule is listed first.
    for flip in [false, true] {
        let mut rules = vec![
            DetectorRule {
                detector: "name".into(),
                pattern: Some("alice[a-z.]*|com![a-z]+".into()),
                strategy: Strategy::Partial { keep: 2 },
            },
            DetectorRule {
                detector: "email".into(),
                pattern: None,
                strategy: redact(),
            },
        ];
        if flip {
            rules.reverse();
        }
        let m = masker(&MaskSpec {
            detectors: rules,
            ..MaskSpec::default()
        });
        assert_eq!(
            mask(&m, "to alice@example.com!"),
            ("to [REDACTED]!".into(), 1)
        );
        // Partial overlap: the union is masked.
        assert_eq!(
            mask(&m, "xx alice.b@example.com"),
            ("xx [REDACTED]".into(), 1)
        );
    }
    // Spans that merely touch are masked separately.
    let m = masker(&MaskSpec {
        detectors: vec![
            DetectorRule {
                detector: "aa".into(),
                pattern: Some("aa".into()),
                strategy: Strategy::Redact {
                    text: Some("<A>".into()),
                },
            },
            DetectorRule {
                detector: "bb".into(),
                pattern: Some("bb".into()),
                strategy: Strategy::Redact {
                    text: Some("<B>".into()),
                },
            },
        ],
        ..MaskSpec::default()
    });
    assert_eq!(mask(&m, "aabb"), ("<A><B>".into(), 2));
    // Hash beats partial.
    let m = masker(&MaskSpec {
        detectors: vec![
            DetectorRule {
                detector: "digits".into(),
                pattern: Some("[0-9]{4}".into()),
                strategy: Strategy::Partial { keep: 1 },
            },
            DetectorRule {
                detector: "us_ssn".into(),
                pattern: None,
                strategy: Strategy::Hash {},
            },
        ],
        ..MaskSpec::default()
    });
    let (out, n) = mask(&m, "123-45-6789");
    assert!(out.starts_with("h:"), "{out}");
    assert_eq!(n, 1);
}

#[test]
fn custom_detectors() {
    let m = masker(&MaskSpec {
        detectors: vec![DetectorRule {
            detector: "employee_id".into(),
            pattern: Some(r"EMP-[0-9]{6}".into()),
            strategy: Strategy::Redact {
                text: Some("<employee>".into()),
            },
        }],
        ..MaskSpec::default()
    });
    assert_eq!(
        mask(&m, "EMP-123456 and EMP-654321, not EMP-12"),
        ("<employee> and <employee>, not EMP-12".into(), 2)
    );
}

// ---------------------------------------------------------------- strategies

#[test]
fn redact_uses_the_rule_text() {
    let m = masker(&MaskSpec {
        detectors: vec![DetectorRule {
            detector: "email".into(),
            pattern: None,
            strategy: Strategy::Redact {
                text: Some("<email>".into()),
            },
        }],
        ..MaskSpec::default()
    });
    assert_eq!(mask(&m, "a alice@example.com"), ("a <email>".into(), 1));
}

fn partial(value: &str, keep: usize) -> String {
    let m = masker(&fields(&[("v", Strategy::Partial { keep })]));
    let mut doc = json!({ "v": value });
    m.mask_json(&mut doc).unwrap();
    doc["v"].as_str().unwrap().to_string()
}

#[test]
fn partial_keeps_the_tail_and_separators() {
    assert_eq!(partial("4111 1111 1111 1111", 4), "**** **** **** 1111");
    assert_eq!(partial("4111111111111111", 4), "************1111");
    assert_eq!(partial("123-45-6789", 4), "***-**-6789");
    assert_eq!(partial("alice@example.com", 3), "*****@*******.com");
    assert_eq!(partial("Zoë Ålund", 2), "*** ***nd");
    assert_eq!(partial("secret", 0), "******");
}

#[test]
fn partial_never_reveals_the_whole_value() {
    assert_eq!(partial("1234", 4), "****");
    assert_eq!(partial("1234", 10), "****");
    assert_eq!(partial("a-b", 5), "*-*");
    assert_eq!(partial("", 4), "");
}

#[test]
fn hash_is_deterministic_and_keyed() {
    let spec = fields(&[("v", Strategy::Hash {})]);
    let run = |m: &Masker, v: &str| {
        let mut doc = json!({ "v": v });
        m.mask_json(&mut doc).unwrap();
        doc["v"].as_str().unwrap().to_string()
    };
    let m = masker(&spec);
    let a = run(&m, "alice@example.com");
    assert_eq!(a.len(), 18);
    assert!(a.starts_with("h:"));
    assert!(a[2..]
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(a, run(&m, "alice@example.com"));
    assert_ne!(a, run(&m, "bob@example.com"));
    // A rebuilt masker with the same key agrees (joins across requests).
    assert_eq!(a, run(&masker(&spec), "alice@example.com"));
    let other = HashKey::new(b"another key of at least 16 bytes".to_vec()).unwrap();
    let m2 = Masker::new(&spec, Some(&other)).unwrap();
    assert_ne!(a, run(&m2, "alice@example.com"));
    // A fixed vector: HMAC-SHA256(key, "alice@example.com"), first 8 bytes.
    assert_eq!(a, "h:841240d2a5b6654b");
}

#[test]
fn hash_without_key_fails_closed() {
    let spec = MaskSpec {
        detectors: vec![DetectorRule {
            detector: "email".into(),
            pattern: None,
            strategy: Strategy::Hash {},
        }],
        fields: vec![FieldRule {
            path: "ssn".into(),
            strategy: Strategy::Hash {},
        }],
        ..MaskSpec::default()
    };
    assert!(spec.uses_hash());
    let m = Masker::new(&spec, None).unwrap();
    assert!(m.missing_key());
    assert!(!masker(&spec).missing_key());
    assert_eq!(
        m.mask_text("mail alice@example.com").unwrap_err(),
        MaskError::NoHashKey
    );
    // Nothing to hash: no error.
    assert_eq!(m.mask_text("nothing here").unwrap().1, 0);
    let mut doc = json!({"ssn": "123-45-6789"});
    assert_eq!(m.mask_json(&mut doc).unwrap_err(), MaskError::NoHashKey);
}

#[test]
fn hash_keys_are_checked_and_not_printed() {
    assert!(HashKey::new(b"short".to_vec())
        .unwrap_err()
        .contains("at least 16"));
    let k = key();
    assert_eq!(format!("{k:?}"), "HashKey(<redacted>)");
    assert!(!format!("{:?}", masker(&MaskSpec::default())).contains("0123"));
}

// ---------------------------------------------------------------- spec

fn errors(spec: &MaskSpec) -> Vec<String> {
    spec.validate().unwrap_err().0
}

#[test]
fn spec_validation_names_the_rule() {
    let spec = MaskSpec {
        fields: vec![
            FieldRule {
                path: "a..b".into(),
                strategy: redact(),
            },
            FieldRule {
                path: "ok".into(),
                strategy: Strategy::Partial { keep: 1000 },
            },
        ],
        columns: vec![ColumnRule {
            column: "a.b.c.d".into(),
            strategy: redact(),
        }],
        detectors: vec![
            DetectorRule {
                detector: "ssn".into(),
                pattern: None,
                strategy: redact(),
            },
            DetectorRule {
                detector: "email".into(),
                pattern: None,
                strategy: redact(),
            },
            DetectorRule {
                detector: "email".into(),
                pattern: None,
                strategy: redact(),
            },
        ],
        ..MaskSpec::default()
    };
    let e = errors(&spec);
    assert_eq!(e.len(), 5, "{e:?}");
    assert!(e[0].starts_with("fields[0] (`a..b`): empty step"), "{e:?}");
    assert!(
        e[1].starts_with("fields[1] (`ok`): partial keep 1000"),
        "{e:?}"
    );
    assert!(e[2].starts_with("columns[0] (`a.b.c.d`)"), "{e:?}");
    assert!(
        e[3].starts_with("detectors[0] (`ssn`): unknown detector (built-in: email, phone"),
        "{e:?}"
    );
    assert!(
        e[4].starts_with("detectors[2] (`email`): detector listed twice"),
        "{e:?}"
    );
    assert!(Masker::new(&spec, None).is_err());
    let shown = spec.validate().unwrap_err().to_string();
    assert!(shown.contains("; "), "{shown}");
}

fn custom(name: &str, pattern: &str) -> MaskSpec {
    MaskSpec {
        detectors: vec![DetectorRule {
            detector: name.into(),
            pattern: Some(pattern.into()),
            strategy: redact(),
        }],
        ..MaskSpec::default()
    }
}

#[test]
fn custom_patterns_are_checked() {
    for p in ["a*", r"\b", "(?m)^", "x?", "|a", "(?:)", r"\d*"] {
        let e = errors(&custom("cust", p));
        assert!(e[0].contains("can match the empty string"), "{p}: {e:?}");
        assert!(e[0].starts_with("detectors[0] (`cust`)"), "{e:?}");
    }
    let e = errors(&custom("cust", "a("));
    assert!(e[0].contains("invalid pattern"), "{e:?}");
    let e = errors(&custom("cust", &"a".repeat(2000)));
    assert!(e[0].contains("the limit is 1024"), "{e:?}");
    let e = errors(&custom("cust", "(?:(?:[a-z0-9]{100}){100}){10}"));
    assert!(e[0].contains("invalid pattern"), "{e:?}");
    let e = errors(&custom("email", "x"));
    assert!(e[0].contains("built-in"), "{e:?}");
    for bad in ["", "Bad", "has space", &"x".repeat(65)] {
        let e = errors(&custom(bad, "x"));
        assert!(e[0].contains("[a-z0-9_]"), "{bad}: {e:?}");
    }
    assert!(custom("ok_1", "x+").validate().is_ok());
}

#[test]
fn bad_paths_and_columns() {
    for p in [
        "", "a..b", "a.", ".a", "a[", "a[x]", "a]b", "a.[0]", "a[0]b", r"a\q", "a[]",
    ] {
        let e = errors(&fields(&[(p, redact())]));
        assert_eq!(e.len(), 1, "{p}: {e:?}");
    }
    for p in [
        "a", "a.b", "[*].a", "a[*]", "a[0].b", "**", "**.a", "a.*.b", r"a\.b", r"\*",
    ] {
        assert!(fields(&[(p, redact())]).validate().is_ok(), "{p}");
    }
    for c in ["", ".a", "a.", "a..b", "a.b.c.d"] {
        let spec = MaskSpec {
            columns: vec![ColumnRule {
                column: c.into(),
                strategy: redact(),
            }],
            ..MaskSpec::default()
        };
        assert!(spec.validate().is_err(), "{c}");
    }
}

#[test]
fn redact_text_is_checked() {
    let long = fields(&[(
        "a",
        Strategy::Redact {
            text: Some("x".repeat(201)),
        },
    )]);
    assert!(errors(&long)[0].contains("longer than 200"));
    let ctl = fields(&[(
        "a",
        Strategy::Redact {
            text: Some("a\nb".into()),
        },
    )]);
    assert!(errors(&ctl)[0].contains("control"));
}

#[test]
fn spec_serde_round_trip_and_strictness() {
    let text = r#"{
        "fields": [{"path": "customer.email", "strategy": {"kind": "hash"}},
                   {"path": "items[*].card", "strategy": {"kind": "partial", "keep": 4}},
                   {"path": "**.ssn"}],
        "columns": [{"column": "users.email", "strategy": {"kind": "redact", "text": "<e>"}}],
        "detectors": [{"detector": "email"},
                      {"detector": "emp", "pattern": "EMP-[0-9]+", "strategy": {"kind": "redact"}}],
        "unmaskable": "refuse"
    }"#;
    let spec: MaskSpec = serde_json::from_str(text).unwrap();
    assert_eq!(spec.fields[2].strategy, redact());
    assert_eq!(spec.fields[1].strategy, Strategy::Partial { keep: 4 });
    assert_eq!(spec.unmaskable, Unmaskable::Refuse);
    assert!(spec.validate().is_ok());
    let back: MaskSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
    assert_eq!(back, spec);
    assert_eq!(
        serde_json::to_value(MaskSpec::default()).unwrap(),
        json!({"unmaskable": "null"})
    );
    for bad in [
        r#"{"extra": 1}"#,
        r#"{"fields": [{"path": "a", "x": 1}]}"#,
        r#"{"fields": [{"path": "a", "strategy": {"kind": "hash", "keep": 1}}]}"#,
        r#"{"fields": [{"path": "a", "strategy": {"kind": "partial"}}]}"#,
        r#"{"fields": [{"path": "a", "strategy": {"kind": "shuffle"}}]}"#,
        r#"{"columns": [{"name": "a"}]}"#,
        r#"{"detectors": [{"detector": "email", "patern": "x"}]}"#,
        r#"{"unmaskable": "drop"}"#,
    ] {
        assert!(serde_json::from_str::<MaskSpec>(bad).is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------- JSON

#[test]
fn json_key_paths() {
    let m = masker(&fields(&[("customer.email", redact())]));
    let mut doc = json!({"customer": {"email": "a@b.com", "name": "A"}, "email": "top@x.com"});
    assert_eq!(m.mask_json(&mut doc).unwrap(), 1);
    assert_eq!(
        doc,
        json!({"customer": {"email": "[REDACTED]", "name": "A"}, "email": "top@x.com"})
    );
}

#[test]
fn json_array_paths() {
    let doc = json!({"items": [{"card": "4111", "sku": 1}, {"card": "5555"}, {"sku": 2}]});
    let want =
        json!({"items": [{"card": "[REDACTED]", "sku": 1}, {"card": "[REDACTED]"}, {"sku": 2}]});
    for p in ["items[*].card", "items.card", "**.card"] {
        let mut d = doc.clone();
        assert_eq!(
            masker(&fields(&[(p, redact())])).mask_json(&mut d).unwrap(),
            2,
            "{p}"
        );
        assert_eq!(d, want, "{p}");
    }
    let mut d = doc.clone();
    masker(&fields(&[("items[0].card", redact())]))
        .mask_json(&mut d)
        .unwrap();
    assert_eq!(d["items"][0]["card"], "[REDACTED]");
    assert_eq!(d["items"][1]["card"], "5555");
    // `[*]` does not match an object's keys.
    let mut d = json!({"items": {"a": {"card": "x"}}});
    masker(&fields(&[("items[*].card", redact())]))
        .mask_json(&mut d)
        .unwrap();
    assert_eq!(d["items"]["a"]["card"], "x");
    // A root array.
    let mut d = json!([{"email": "a"}, {"email": "b"}]);
    assert_eq!(
        masker(&fields(&[("[*].email", redact())]))
            .mask_json(&mut d)
            .unwrap(),
        2
    );
}

#[test]
fn json_any_depth_and_any_key() {
    let m = masker(&fields(&[("**.ssn", redact())]));
    let mut doc = json!({"ssn": "1", "a": {"b": [{"ssn": "2"}, {"c": {"ssn": "3"}}]}, "x": "ssn"});
    assert_eq!(m.mask_json(&mut doc).unwrap(), 3);
    assert_eq!(doc["x"], "ssn");
    let m = masker(&fields(&[("users.*.ssn", redact())]));
    let mut doc = json!({"users": {"u1": {"ssn": "1"}, "u2": {"ssn": "2", "n": "x"}}, "ssn": "0"});
    assert_eq!(m.mask_json(&mut doc).unwrap(), 2);
    assert_eq!(doc["ssn"], "0");
    let m = masker(&fields(&[("a.**", redact())]));
    let mut doc = json!({"a": {"b": {"c": "x"}, "d": ["y", 1]}, "e": "z"});
    assert_eq!(m.mask_json(&mut doc).unwrap(), 3);
    assert_eq!(doc["e"], "z");
}

#[test]
fn json_escaped_keys() {
    let m = masker(&fields(&[(r"a\.b.\*", redact())]));
    let mut doc = json!({"a.b": {"*": "x", "y": "z"}, "a": {"b": {"*": "no"}}});
    assert_eq!(m.mask_json(&mut doc).unwrap(), 1);
    assert_eq!(doc["a.b"]["*"], "[REDACTED]");
    assert_eq!(doc["a"]["b"]["*"], "no");
}

#[test]
fn json_masks_whole_subtrees_and_non_strings() {
    let m = masker(&fields(&[
        ("secret", redact()),
        ("card", Strategy::Partial { keep: 4 }),
    ]));
    let mut doc = json!({
        "secret": {"a": "x", "b": [1, true, null, {"c": 2.5}]},
        "card": 4111111111111111u64,
    });
    assert_eq!(m.mask_json(&mut doc).unwrap(), 5);
    assert_eq!(
        doc,
        json!({
            "secret": {"a": "[REDACTED]", "b": ["[REDACTED]", "[REDACTED]", null, {"c": "[REDACTED]"}]},
            "card": "************1111",
        })
    );
}

#[test]
fn json_first_matching_rule_wins() {
    let m = masker(&fields(&[
        ("a.b", Strategy::Partial { keep: 1 }),
        ("**.b", redact()),
    ]));
    let mut doc = json!({"a": {"b": "xyz"}, "c": {"b": "xyz"}});
    m.mask_json(&mut doc).unwrap();
    assert_eq!(doc, json!({"a": {"b": "**z"}, "c": {"b": "[REDACTED]"}}));
}

#[test]
fn json_detectors_cover_every_string_number_and_key() {
    let mut spec = all_detectors();
    spec.fields.push(FieldRule {
        path: "card".into(),
        strategy: Strategy::Partial { keep: 4 },
    });
    let m = masker(&spec);
    let mut doc = json!({
        "card": "4111111111111111",
        "note": "mail alice@example.com",
        "n": 5555555555554444u64,
        "small": 42,
        "list": ["123-45-6789", "ok"],
        "alice@example.com": 1,
        "bob@example.com": 2,
        "[REDACTED]": 3,
    });
    // card (path, not re-scanned) + note + n + ssn + 2 keys.
    assert_eq!(m.mask_json(&mut doc).unwrap(), 6);
    assert_eq!(
        doc,
        json!({
            "card": "************1111",
            "note": "mail [REDACTED]",
            "n": "[REDACTED]",
            "small": 42,
            "list": ["[REDACTED]", "ok"],
            "[REDACTED]": 3,
            "[REDACTED]#2": 1,
            "[REDACTED]#3": 2,
        })
    );
}

#[test]
fn json_without_rules_or_matches_is_untouched() {
    let doc = json!({"a": [1, "x", {"b": null}]});
    let mut d = doc.clone();
    assert_eq!(masker(&MaskSpec::default()).mask_json(&mut d).unwrap(), 0);
    assert_eq!(
        masker(&fields(&[("zzz", redact())]))
            .mask_json(&mut d)
            .unwrap(),
        0
    );
    assert_eq!(masker(&all_detectors()).mask_json(&mut d).unwrap(), 0);
    assert_eq!(d, doc);
}

#[test]
fn scan_json_ignores_paths() {
    let mut spec = detectors(&["email"]);
    spec.fields.push(FieldRule {
        path: "secret".into(),
        strategy: redact(),
    });
    let m = masker(&spec);
    let mut doc = json!({"secret": "s", "m": "alice@example.com"});
    assert_eq!(m.scan_json(&mut doc).unwrap(), 1);
    assert_eq!(doc, json!({"secret": "s", "m": "[REDACTED]"}));
}

#[test]
fn json_too_deep_fails_closed() {
    let mut doc = json!("alice@example.com");
    for _ in 0..(MAX_JSON_DEPTH + 5) {
        doc = json!([doc]);
    }
    let m = masker(&detectors(&["email"]));
    assert_eq!(
        m.mask_json(&mut doc).unwrap_err(),
        MaskError::TooDeep(MAX_JSON_DEPTH)
    );
    let m = masker(&fields(&[("**.x", redact())]));
    assert!(m.mask_json(&mut doc).is_err());
    // Nothing to do (no detectors, no path can match): no walk, no error.
    assert_eq!(masker(&MaskSpec::default()).mask_json(&mut doc).unwrap(), 0);
}

// ---------------------------------------------------------------- MCP

#[test]
fn mcp_tool_result_masks_structured_and_text_json() {
    let mut spec = fields(&[
        ("customer.email", redact()),
        ("customer.ssn", Strategy::Partial { keep: 4 }),
    ]);
    spec.detectors.push(DetectorRule {
        detector: "payment_card".into(),
        pattern: None,
        strategy: redact(),
    });
    let m = masker(&spec);
    let structured =
        json!({"customer": {"email": "alice@example.com", "ssn": "123-45-6789", "name": "Alice"}});
    let mut result = json!({
        "content": [
            {"type": "text", "text": serde_json::to_string_pretty(&structured).unwrap()},
            {"type": "text", "text": "card 4111 1111 1111 1111, customer.email alice@example.com"},
        ],
        "structuredContent": structured,
        "isError": false,
    });
    // structured: 2, text JSON: 2, plain text: 1 (card; paths do not apply
    // to plain text, and no email detector is configured).
    assert_eq!(m.mask_mcp_result(&mut result).unwrap(), 5);
    let masked =
        json!({"customer": {"email": "[REDACTED]", "ssn": "***-**-6789", "name": "Alice"}});
    assert_eq!(result["structuredContent"], masked);
    let text = result["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, serde_json::to_string(&masked).unwrap());
    assert_eq!(
        result["content"][1]["text"],
        "card [REDACTED], customer.email alice@example.com"
    );
    assert_eq!(result["isError"], false);
}

#[test]
fn mcp_text_json_without_matches_is_kept_byte_for_byte() {
    let m = masker(&fields(&[("customer.email", redact())]));
    let text = "{\n  \"other\": 1,\n  \"b\": \"x\"\n}";
    let mut result = json!({"content": [{"type": "text", "text": text}]});
    assert_eq!(m.mask_mcp_result(&mut result).unwrap(), 0);
    assert_eq!(result["content"][0]["text"], text);
}

#[test]
fn mcp_text_that_is_not_json_gets_detectors() {
    let m = masker(&all_detectors());
    for (text, want) in [
        (
            "[INFO] mailed alice@example.com",
            "[INFO] mailed [REDACTED]",
        ),
        ("{not json} alice@example.com", "{not json} [REDACTED]"),
        ("[1, 2] and 123-45-6789", "[1, 2] and [REDACTED]"),
    ] {
        let mut result = json!({"content": [{"type": "text", "text": text}]});
        assert_eq!(m.mask_mcp_result(&mut result).unwrap(), 1, "{text}");
        assert_eq!(result["content"][0]["text"], want);
    }
    // JSON text: detectors see the unescaped strings.
    let mut result =
        json!({"content": [{"type": "text", "text": r#"{"m": "alice\u0040example.com"}"#}]});
    assert_eq!(m.mask_mcp_result(&mut result).unwrap(), 1);
    assert_eq!(result["content"][0]["text"], r#"{"m":"[REDACTED]"}"#);
}

#[test]
fn mcp_text_json_that_cannot_be_interpreted_fails_closed() {
    let m = masker(&fields(&[("email", redact())]));
    let mut result = json!({"content": [{"type": "text", "text": r#"{"email": "a@b.com", "email": "c@d.com"}"#}]});
    assert!(matches!(
        m.mask_mcp_result(&mut result),
        Err(MaskError::Json(_))
    ));
    let deep = format!("{}1{}", "[".repeat(150), "]".repeat(150));
    let mut result = json!({"content": [{"type": "text", "text": deep}]});
    assert!(matches!(
        m.mask_mcp_result(&mut result),
        Err(MaskError::Json(_))
    ));
}

#[test]
fn mcp_binary_payloads_are_left_alone() {
    let m = masker(&all_detectors());
    let mut result = json!({
        "content": [
            {"type": "image", "mimeType": "image/png", "data": "AKIAIOSFODNN7EXAMPLE"},
            {"type": "audio", "mimeType": "audio/wav", "data": "AKIAIOSFODNN7EXAMPLE"},
            {"type": "resource", "resource": {"uri": "file:///a", "blob": "AKIAIOSFODNN7EXAMPLE"}},
            {"type": "resource", "resource": {"uri": "file:///b?u=alice@example.com", "text": "key AKIAIOSFODNN7EXAMPLE"}},
            {"type": "resource_link", "uri": "file:///c", "name": "alice@example.com"},
        ],
    });
    assert_eq!(m.mask_mcp_result(&mut result).unwrap(), 3);
    let c = &result["content"];
    assert_eq!(c[0]["data"], "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(c[1]["data"], "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(c[2]["resource"]["blob"], "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(c[3]["resource"]["uri"], "file:///b?u=[REDACTED]");
    assert_eq!(c[3]["resource"]["text"], "key [REDACTED]");
    assert_eq!(c[4]["name"], "[REDACTED]");
}

#[test]
fn mcp_resources_read_contents() {
    let m = masker(&fields(&[("**.token", redact())]));
    let mut result = json!({"contents": [
        {"uri": "file:///cfg.json", "mimeType": "application/json", "text": "{\"db\": {\"token\": \"t0p\"}}"},
        {"uri": "file:///bin", "blob": "AAAA"},
    ]});
    assert_eq!(m.mask_mcp_result(&mut result).unwrap(), 1);
    assert_eq!(
        result["contents"][0]["text"],
        r#"{"db":{"token":"[REDACTED]"}}"#
    );
}

#[test]
fn mcp_paths_apply_only_to_structured_content_and_text_json() {
    let m = masker(&fields(&[("customer.email", redact())]));
    let mut result = json!({"customer": {"email": "x"}, "_meta": {"customer": {"email": "y"}}});
    assert_eq!(m.mask_mcp_result(&mut result).unwrap(), 0);
    assert_eq!(result["customer"]["email"], "x");
    // An empty masker returns at once.
    let mut r = json!({"content": [{"type": "text", "text": "{\"a\": 1, \"a\": 2}"}]});
    assert_eq!(
        masker(&MaskSpec::default())
            .mask_mcp_result(&mut r)
            .unwrap(),
        0
    );
}

// ---------------------------------------------------------------- Postgres

fn field(name: &str, table_oid: u32, attr: i16, type_oid: u32, format: i16) -> FieldDescription {
    FieldDescription {
        name: name.into(),
        table_oid,
        column_attr: attr,
        type_oid,
        type_size: -1,
        type_modifier: -1,
        format,
    }
}

const TEXT: u32 = 25;
const INT4: u32 = 23;
const INT8: u32 = 20;
const NUMERIC: u32 = 1700;
const JSON: u32 = 114;
const JSONB: u32 = 3802;
const DATE: u32 = 1082;

fn columns(rules: &[(&str, Strategy)]) -> MaskSpec {
    MaskSpec {
        columns: rules
            .iter()
            .map(|(c, s)| ColumnRule {
                column: (*c).to_string(),
                strategy: s.clone(),
            })
            .collect(),
        ..MaskSpec::default()
    }
}

fn row(values: &[Option<&[u8]>]) -> Vec<Option<Vec<u8>>> {
    values.iter().map(|v| v.map(<[u8]>::to_vec)).collect()
}

#[test]
fn pg_text_columns_by_name() {
    let m = masker(&columns(&[
        ("email", redact()),
        ("ssn", Strategy::Partial { keep: 4 }),
    ]));
    let rm = m.row_masker(
        &[
            field("id", 0, 0, INT4, 0),
            field("Email", 0, 0, TEXT, 0),
            field("ssn", 0, 0, 1043, 0),
        ],
        &(),
    );
    assert!(!rm.is_noop());
    assert_eq!(rm.action(0), Some(ColumnAction::Pass));
    assert_eq!(rm.action(1), Some(ColumnAction::Mask { rule: 0 }));
    assert_eq!(rm.action(2), Some(ColumnAction::Mask { rule: 1 }));
    assert_eq!(rm.action(3), None);
    let mut values = row(&[Some(b"1"), Some(b"alice@example.com"), Some(b"123-45-6789")]);
    assert_eq!(rm.mask_data_row(&mut values, &[]).unwrap(), 2);
    assert_eq!(
        values,
        row(&[Some(b"1"), Some(b"[REDACTED]"), Some(b"***-**-6789")])
    );
    // NULL stays NULL.
    let mut values = row(&[None, None, None]);
    assert_eq!(rm.mask_data_row(&mut values, &[]).unwrap(), 0);
    assert_eq!(values, row(&[None, None, None]));
}

#[test]
fn pg_typed_columns_become_null_or_refuse() {
    let mut spec = columns(&[("salary", redact()), ("born", redact())]);
    let fields = [field("salary", 0, 0, INT4, 0), field("born", 0, 0, DATE, 0)];
    let rm = masker(&spec).row_masker(&fields, &());
    let mut values = row(&[Some(b"100"), Some(b"2000-01-01")]);
    assert_eq!(rm.mask_data_row(&mut values, &[]).unwrap(), 2);
    assert_eq!(values, row(&[None, None]));
    spec.unmaskable = Unmaskable::Refuse;
    let rm = masker(&spec).row_masker(&fields, &());
    let mut values = row(&[Some(b"100"), None]);
    assert_eq!(
        rm.mask_data_row(&mut values, &[]).unwrap_err(),
        MaskError::Unmaskable("salary".into())
    );
    // A NULL needs no mask, even under refuse.
    let mut values = row(&[None, None]);
    assert_eq!(rm.mask_data_row(&mut values, &[]).unwrap(), 0);
}

#[test]
fn pg_binary_columns() {
    let spec = columns(&[("email", redact()), ("n", redact()), ("u", redact())]);
    let fields = [
        field("email", 0, 0, TEXT, 1),
        field("n", 0, 0, INT8, 1),
        field("u", 0, 0, 16_500, 1),
    ];
    let rm = masker(&spec).row_masker(&fields, &());
    let mut values = row(&[
        Some(b"alice@example.com"),
        Some(&7i64.to_be_bytes()),
        Some(b"x"),
    ]);
    assert_eq!(rm.mask_data_row(&mut values, &[1]).unwrap(), 3);
    assert_eq!(values, row(&[Some(b"[REDACTED]"), None, None]));
    let mut spec = spec;
    spec.unmaskable = Unmaskable::Refuse;
    let rm = masker(&spec).row_masker(&fields, &());
    let mut values = row(&[Some(b"a"), Some(&7i64.to_be_bytes()), None]);
    assert_eq!(
        rm.mask_data_row(&mut values, &[1, 1, 1]).unwrap_err(),
        MaskError::Unmaskable("n".into())
    );
    // The same columns in text format: the user type takes the string.
    let rm = masker(&columns(&[("u", redact())])).row_masker(&fields, &());
    let mut values = row(&[Some(b"a"), Some(b"7"), Some(b"x")]);
    assert_eq!(rm.mask_data_row(&mut values, &[0]).unwrap(), 1);
    assert_eq!(values[2].as_deref(), Some(&b"[REDACTED]"[..]));
}

#[test]
fn pg_json_columns() {
    let m = masker(&columns(&[("j", redact()), ("jb", Strategy::Hash {})]));
    let rm = m.row_masker(
        &[field("j", 0, 0, JSON, 0), field("jb", 0, 0, JSONB, 0)],
        &(),
    );
    let mut values = row(&[Some(br#"{"a":1}"#), Some(b"\"x\"")]);
    assert_eq!(rm.mask_data_row(&mut values, &[]).unwrap(), 2);
    assert_eq!(values[0].as_deref(), Some(&br#""[REDACTED]""#[..]));
    let hashed: Value = serde_json::from_slice(values[1].as_deref().unwrap()).unwrap();
    assert!(hashed.as_str().unwrap().starts_with("h:"));
    // Binary jsonb: version byte 1, then the text.
    let mut values = row(&[Some(b"{}"), Some(b"\x01{}")]);
    rm.mask_data_row(&mut values, &[1]).unwrap();
    assert!(values[1].as_deref().unwrap().starts_with(b"\x01\"h:"));
    // An unknown jsonb version cannot be masked.
    let mut values = row(&[Some(b"{}"), Some(b"\x02{}")]);
    rm.mask_data_row(&mut values, &[1]).unwrap();
    assert_eq!(values[1], None);
}

#[test]
fn pg_detectors_scan_columns() {
    let m = masker(&all_detectors());
    let fields = [
        field("note", 0, 0, TEXT, 0),
        field("doc", 0, 0, JSONB, 0),
        field("n", 0, 0, NUMERIC, 0),
        field("d", 0, 0, DATE, 0),
        field("tags", 0, 0, 1009, 0),
    ];
    let rm = m.row_masker(&fields, &());
    assert_eq!(rm.action(0), Some(ColumnAction::Scan));
    let mut values = row(&[
        Some(b"mail alice@example.com"),
        Some(br#"{"k": "123-45-6789", "n": 1}"#),
        Some(b"4111111111111111"),
        Some(b"2024-01-15"),
        Some(b"{bob@example.com,x}"),
    ]);
    assert_eq!(rm.mask_data_row(&mut values, &[]).unwrap(), 4);
    assert_eq!(
        values,
        row(&[
            Some(b"mail [REDACTED]"),
            Some(br#"{"k":"[REDACTED]","n":1}"#),
            None,
            Some(b"2024-01-15"),
            None,
        ])
    );
    // Nothing found: the JSON text is kept byte for byte.
    let mut values = row(&[
        Some(b"ok"),
        Some(br#"{"k":  "v"}"#),
        Some(b"1.5"),
        None,
        None,
    ]);
    assert_eq!(rm.mask_data_row(&mut values, &[]).unwrap(), 0);
    assert_eq!(values[1].as_deref(), Some(&br#"{"k":  "v"}"#[..]));
    // A json value that does not parse fails closed.
    let mut values = row(&[None, Some(b"{oops"), None, None, None]);
    assert!(matches!(
        rm.mask_data_row(&mut values, &[]),
        Err(MaskError::Json(_))
    ));
}

#[test]
fn pg_detectors_scan_binary_numbers() {
    let m = masker(&detectors(&["payment_card"]));
    let rm = m.row_masker(
        &[
            field("a", 0, 0, INT8, 1),
            field("b", 0, 0, NUMERIC, 1),
            field("c", 0, 0, INT8, 1),
            field("d", 0, 0, NUMERIC, 1),
        ],
        &(),
    );
    // numeric 4111111111111111: ndigits 4, weight 3, sign +, dscale 0,
    // base-10000 digits 4111 1111 1111 1111.
    let numeric = |digits: &[i16], weight: i16, dscale: i16| {
        let mut v = Vec::new();
        for w in [digits.len() as i16, weight, 0, dscale] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    };
    let card = numeric(&[4111, 1111, 1111, 1111], 3, 0);
    let small = numeric(&[12, 3400], 0, 2); // 12.34
    let mut values = vec![
        Some(4_111_111_111_111_111i64.to_be_bytes().to_vec()),
        Some(card),
        Some(42i64.to_be_bytes().to_vec()),
        Some(small.clone()),
    ];
    assert_eq!(rm.mask_data_row(&mut values, &[1]).unwrap(), 2);
    assert_eq!(values[0], None);
    assert_eq!(values[1], None);
    assert_eq!(values[3], Some(small));
}

struct Cat;

impl Catalog for Cat {
    fn table_name(&self, oid: u32) -> Option<&str> {
        match oid {
            100 => Some("users"),
            200 => Some("billing.customers"),
            _ => None,
        }
    }
    fn column_name(&self, oid: u32, attnum: i16) -> Option<&str> {
        (oid == 100 && attnum == 3).then_some("email")
    }
}

#[test]
fn pg_table_qualified_rules() {
    let m = masker(&columns(&[
        ("users.email", redact()),
        ("billing.customers.card", redact()),
    ]));
    let fields = [
        field("email", 100, 3, TEXT, 0), // users.email
        field("e", 100, 3, TEXT, 0),     // aliased users.email
        field("email", 300, 2, TEXT, 0), // unknown table
        field("email", 0, 0, TEXT, 0),   // computed
        field("card", 200, 1, TEXT, 0),  // billing.customers.card
        field("card", 100, 4, TEXT, 0),  // users.card
    ];
    let rm = m.row_masker(&fields, &Cat);
    let actions: Vec<bool> = (0..6)
        .map(|i| matches!(rm.action(i), Some(ColumnAction::Mask { .. })))
        .collect();
    assert_eq!(actions, [true, true, true, true, true, false]);
    // A known, different table does not match.
    let mut map = HashMap::new();
    map.insert(100u32, "public.orders".to_string());
    let rm = m.row_masker(&[field("email", 100, 3, TEXT, 0)], &map);
    assert!(rm.is_noop());
    // Schema compared when both sides have one.
    let m = masker(&columns(&[("other.customers.card", redact())]));
    assert!(m
        .row_masker(&[field("card", 200, 1, TEXT, 0)], &Cat)
        .is_noop());
    let m = masker(&columns(&[("customers.card", redact())]));
    assert!(!m
        .row_masker(&[field("card", 200, 1, TEXT, 0)], &Cat)
        .is_noop());
}

#[test]
fn pg_row_shape_and_format_errors() {
    let m = masker(&columns(&[("a", redact())]));
    let rm = m.row_masker(&[field("a", 0, 0, TEXT, 0), field("b", 0, 0, TEXT, 0)], &());
    assert_eq!(rm.description_formats(), &[0, 0]);
    let mut one = row(&[Some(b"x")]);
    assert_eq!(
        rm.mask_data_row(&mut one, &[]).unwrap_err(),
        MaskError::ColumnCount {
            expected: 2,
            got: 1
        }
    );
    let mut two = row(&[Some(b"x"), Some(b"y")]);
    assert!(matches!(
        rm.mask_data_row(&mut two, &[0, 0, 0]),
        Err(MaskError::Formats(_))
    ));
    assert!(matches!(
        rm.mask_data_row(&mut two, &[2]),
        Err(MaskError::Formats(_))
    ));
    let mut bad = vec![Some(vec![0xff, 0xfe]), None];
    assert!(matches!(
        rm.mask_data_row(&mut bad, &[]),
        Err(MaskError::NotUtf8(_))
    ));
}

#[test]
fn pg_noop_and_missing_key() {
    let rm = masker(&fields(&[("a", redact())])).row_masker(&[field("a", 0, 0, TEXT, 0)], &());
    assert!(rm.is_noop());
    let mut v = row(&[Some(b"secret")]);
    assert_eq!(rm.mask_data_row(&mut v, &[]).unwrap(), 0);
    let m = Masker::new(&columns(&[("a", Strategy::Hash {})]), None).unwrap();
    let rm = m.row_masker(&[field("a", 0, 0, TEXT, 0)], &());
    assert_eq!(
        rm.mask_data_row(&mut v, &[]).unwrap_err(),
        MaskError::NoHashKey
    );
    assert_eq!(v, row(&[Some(b"secret")]));
}

#[test]
fn pg_hash_matches_json_hash() {
    // Equal values hash equally wherever they are masked (joins work).
    let spec = MaskSpec {
        columns: vec![ColumnRule {
            column: "email".into(),
            strategy: Strategy::Hash {},
        }],
        fields: vec![FieldRule {
            path: "email".into(),
            strategy: Strategy::Hash {},
        }],
        ..MaskSpec::default()
    };
    let m = masker(&spec);
    let rm = m.row_masker(&[field("email", 0, 0, TEXT, 0)], &());
    let mut v = row(&[Some(b"alice@example.com")]);
    rm.mask_data_row(&mut v, &[]).unwrap();
    let mut doc = json!({"email": "alice@example.com"});
    m.mask_json(&mut doc).unwrap();
    assert_eq!(
        v[0].as_deref().unwrap(),
        doc["email"].as_str().unwrap().as_bytes()
    );
}

#[test]
fn pg_data_row_round_trip() {
    let m = masker(&columns(&[("email", redact())]));
    let rm = m.row_masker(
        &[field("id", 0, 0, INT4, 0), field("email", 0, 0, TEXT, 0)],
        &(),
    );
    let mut msg = BackendMessage::DataRow {
        values: row(&[Some(b"1"), Some(b"alice@example.com")]),
    };
    assert_eq!(rm.mask_message(&mut msg, &[]).unwrap(), 1);
    let BackendMessage::DataRow { values } = msg else {
        unreachable!()
    };
    let bytes = encode_data_row(values.clone());
    let (decoded, used) = decode_backend(&bytes, BackendPhase::Normal)
        .unwrap()
        .unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(decoded, BackendMessage::DataRow { values });
    let mut other = BackendMessage::ReadyForQuery { status: b'I' };
    assert_eq!(rm.mask_message(&mut other, &[]).unwrap(), 0);
}

// ---------------------------------------------------------------- DataRow frames

/// What the session did per row before [`RowMasker::mask_frame`]: decode
/// the frame, mask the values, encode them again (`None`: nothing masked).
fn decode_mask_encode(
    rm: &RowMasker,
    frame: &[u8],
    formats: &[i16],
) -> Result<Option<(Vec<u8>, usize)>, MaskError> {
    let Ok(Some((BackendMessage::DataRow { mut values }, n))) =
        decode_backend(frame, BackendPhase::Normal)
    else {
        return Err(MaskError::Unreadable);
    };
    if n != frame.len() {
        return Err(MaskError::Unreadable);
    }
    let count = rm.mask_data_row(&mut values, formats)?;
    Ok((count > 0).then(|| (encode_data_row(values), count)))
}

#[test]
fn pg_mask_frame_equals_decode_mask_encode() {
    let samples: [&[u8]; 9] = [
        b"alice@example.com",
        b"4111 1111 1111 1111",
        b"call +44 20 7946 0958 or bob@example.org",
        b"",
        b"12345",
        b"{\"mail\": \"carol@example.net\", \"n\": 4111111111111111}",
        &[1, b'{', b'}'],
        &[0xff, 0xfe],
        &[0, 0, 0, 0, 0, 0, 0, 42],
    ];
    let mut spec = columns(&[
        ("email", Strategy::Partial { keep: 4 }),
        ("card", Strategy::Partial { keep: 4 }),
        ("note", redact()),
        ("salary", Strategy::Hash {}),
        ("doc", redact()),
    ]);
    spec.detectors = detectors(&["email", "payment_card", "phone"]).detectors;
    let fields = [
        field("id", 0, 0, INT8, 0),
        field("email", 0, 0, TEXT, 0),
        field("card", 0, 0, 1043, 0),
        field("note", 0, 0, TEXT, 0),
        field("salary", 0, 0, NUMERIC, 0),
        field("doc", 0, 0, JSONB, 0),
        field("free", 0, 0, TEXT, 0),
        field("data", 0, 0, JSON, 0),
    ];
    let noise = noise(5, 400);
    let mut checked = [0usize; 3]; // unchanged, masked, errors
    for unmaskable in [Unmaskable::Null, Unmaskable::Refuse] {
        spec.unmaskable = unmaskable;
        for with_detectors in [true, false] {
            let mut s = spec.clone();
            if !with_detectors {
                s.detectors.clear();
            }
            let rm = masker(&s).row_masker(&fields, &());
            for (i, text) in noise.iter().enumerate() {
                // Each column: NULL, a sample or noise, by position; every
                // fourth row has NULL in every column a rule masks.
                let values: Vec<Option<Vec<u8>>> = (0..fields.len())
                    .map(|c| match (i + c * 7) % 5 {
                        _ if i % 4 == 0 && (1..=5).contains(&c) => None,
                        0 => None,
                        1 | 2 => Some(samples[(i + c) % samples.len()].to_vec()),
                        _ => Some(text.as_bytes().to_vec()),
                    })
                    .collect();
                let frame = encode_data_row(values);
                for formats in [
                    &[][..],
                    &[0],
                    &[1],
                    &[0, 1, 0, 1, 1, 1, 0, 0],
                    &[0, 0],
                    &[3],
                ] {
                    let want = decode_mask_encode(&rm, &frame, formats);
                    let got = rm.mask_frame(&frame, formats);
                    assert_eq!(got, want, "row {i}, formats {formats:?}");
                    checked[match &got {
                        Ok(None) => 0,
                        Ok(Some(_)) => 1,
                        Err(_) => 2,
                    }] += 1;
                }
            }
        }
    }
    // Every outcome was exercised, plenty of times.
    assert!(checked.iter().all(|&n| n > 100), "{checked:?}");
}

#[test]
fn pg_mask_frame_leaves_unmasked_rows_alone_and_keeps_other_values_byte_for_byte() {
    let rm = masker(&columns(&[("email", Strategy::Partial { keep: 4 })])).row_masker(
        &[
            field("id", 0, 0, INT4, 0),
            field("email", 0, 0, TEXT, 0),
            field("n", 0, 0, TEXT, 0),
        ],
        &(),
    );
    let frame = encode_data_row(row(&[Some(b"7"), Some(b"ada@example.test"), Some(b"x\0y")]));
    let (out, n) = rm.mask_frame(&frame, &[]).unwrap().unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        out,
        encode_data_row(row(&[Some(b"7"), Some(b"***@*******.test"), Some(b"x\0y")]))
    );
    // A NULL (the only value to mask) or a no-op plan: the frame as it is.
    let null = encode_data_row(row(&[Some(b"7"), None, Some(b"z")]));
    assert_eq!(rm.mask_frame(&null, &[]).unwrap(), None);
    let noop =
        masker(&columns(&[("other", redact())])).row_masker(&[field("id", 0, 0, INT4, 0)], &());
    assert!(noop.is_noop());
    assert_eq!(noop.mask_frame(b"not even a frame", &[]).unwrap(), None);
}

#[test]
fn pg_mask_frame_refuses_malformed_frames_as_the_codec_does() {
    let rm = masker(&columns(&[("a", redact())]))
        .row_masker(&[field("a", 0, 0, TEXT, 0), field("b", 0, 0, TEXT, 0)], &());
    let good = encode_data_row(row(&[Some(b"secret"), None]));
    assert!(rm.mask_frame(&good, &[]).unwrap().is_some());
    let fix_len = |mut f: Vec<u8>| {
        let len = i32::try_from(f.len() - 1).unwrap().to_be_bytes();
        f[1..5].copy_from_slice(&len);
        f
    };
    let mut cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"D".to_vec(),
        b"D\0\0\0\x06\0".to_vec(),
        // Not a DataRow.
        fix_len([b"T".as_slice(), &good[5..]].concat()),
        // Declared length shorter / longer than the frame.
        [good.as_slice(), b"x"].concat(),
        good[..good.len() - 1].to_vec(),
        // Trailing bytes after the last value.
        fix_len([good.as_slice(), b"x"].concat()),
        // A value running past the end.
        fix_len(good[..good.len() - 6].to_vec()),
        // A negative count; a length below -1.
        fix_len([b"D\0\0\0\0\xff\xff".as_slice()].concat()),
        fix_len([b"D\0\0\0\0\0\x01\xff\xff\xff\xfe".as_slice()].concat()),
    ];
    // Every truncation of the body, the header fixed up.
    for cut in 5..good.len() {
        cases.push(fix_len(good[..cut].to_vec()));
    }
    for (i, f) in cases.iter().enumerate() {
        let codec_reads = matches!(
            decode_backend(f, BackendPhase::Normal),
            Ok(Some((BackendMessage::DataRow { .. }, n))) if n == f.len()
        );
        let got = rm.mask_frame(f, &[]);
        if codec_reads {
            // Well formed, but not two columns.
            assert!(
                matches!(got, Err(MaskError::ColumnCount { .. })),
                "case {i}: {got:?}"
            );
        } else {
            assert_eq!(got, Err(MaskError::Unreadable), "case {i}: {f:?}");
        }
    }
}
