//! Malformed input never panics the compiler: every truncation and many
//! byte-level corruptions of a real policy either compile or produce
//! diagnostics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

fn example() -> Vec<u8> {
    std::fs::read(common::repo_root().join("examples/mcp-tools/policy.yaml")).unwrap()
}

fn compile(bytes: &[u8]) -> policy_compiler::Compiled {
    policy_compiler::compile(
        bytes,
        &common::repo_root().join("examples/mcp-tools"),
        &policy_compiler::Fs,
    )
}

#[test]
fn every_truncation_is_handled() {
    let src = example();
    for n in 0..src.len() {
        let c = compile(&src[..n]);
        assert!(
            c.policy.is_some() || c.error_count() > 0,
            "truncated at {n}"
        );
        for d in &c.diagnostics {
            assert!(d.span.line >= 1 && d.span.col >= 1, "{d:?}");
        }
    }
}

#[test]
fn byte_corruptions_are_handled() {
    let src = example();
    // A deterministic xorshift, so failures reproduce.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"{}[]:,-&*!|>'\"#%@` \n\t\\?.0aZ";
    for _ in 0..3000 {
        let mut s = src.clone();
        for _ in 0..(1 + next() % 4) {
            let at = (next() % s.len() as u64) as usize;
            let b = alphabet[(next() % alphabet.len() as u64) as usize];
            match next() % 3 {
                0 => s[at] = b,
                1 => s.insert(at, b),
                _ => {
                    s.remove(at);
                }
            }
        }
        let c = compile(&s);
        assert!(c.policy.is_some() || c.error_count() > 0);
    }
}

#[test]
fn odd_documents_are_handled() {
    for src in [
        "version: 1\nidentity: &a\n  issuers: *a\n",
        "version: 1\n<<: {}\n",
        "version: 1\n? [a, b]\n: c\n",
        "version: 1\nrules: [{ id: [x] }]\n",
        "version: 1\nroles: { ? { a: 1 } : 2 }\n",
        "version: 1\ntargets: { t: { protocol: mcp } }\nrules:\n  - { id: a, allow: { target: t, mcp: { tools: x, arguments: { '': 1 } } } }\n",
        "%YAML 1.2\n---\nversion: 1\n...\n",
        "\u{feff}version: 1\n",
        "version: !!int 1\n",
    ] {
        let c = policy_compiler::compile(src.as_bytes(), Path::new("/nonexistent"), &policy_compiler::Fs);
        assert!(c.error_count() > 0, "{src:?}");
    }
}
