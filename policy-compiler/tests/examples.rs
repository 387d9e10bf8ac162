//! Every policy under examples/ checks cleanly: no errors, no warnings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

#[test]
fn example_policies_check_cleanly() {
    let root = common::repo_root().join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let policy = dir.join("policy.yaml");
        if !policy.is_file() {
            continue;
        }
        let loaded = policy_compiler::load(&policy).unwrap();
        assert_eq!(
            loaded.rendered(),
            Vec::<String>::new(),
            "{}",
            policy.display()
        );
        let p = loaded.compiled.policy.as_ref().unwrap();
        assert!(!p.rules.is_empty());
        // And it encodes to a blob the filter decodes to the same policy.
        let bytes = policy_compiler::encode(&loaded, p, None).unwrap();
        let blob = pinhole_filter::policy::blob::decode(&bytes).unwrap();
        assert_eq!(&blob.policy, p);
        seen += 1;
    }
    assert!(
        seen >= 1,
        "no example policies found under {}",
        root.display()
    );
}

#[test]
fn the_documented_example_checks_cleanly() {
    // docs/policy.md carries a complete example between the markers
    // `<!-- example:begin -->` and `<!-- example:end -->`; it refers to the
    // mcp-tools example's key files.
    let doc = std::fs::read_to_string(common::repo_root().join("docs/policy.md")).unwrap();
    let start = doc.find("<!-- example:begin -->").expect("begin marker");
    let end = doc.find("<!-- example:end -->").expect("end marker");
    let block = &doc[start..end];
    let yaml_start = block.find("```yaml\n").unwrap() + "```yaml\n".len();
    let yaml_end = block[yaml_start..].find("```").unwrap() + yaml_start;
    let yaml = &block[yaml_start..yaml_end];
    let c = policy_compiler::compile(
        yaml.as_bytes(),
        &common::repo_root().join("examples/mcp-tools"),
        &policy_compiler::Fs,
    );
    let rendered: Vec<String> = c
        .diagnostics
        .iter()
        .map(|d| d.render("docs/policy.md example"))
        .collect();
    assert_eq!(rendered, Vec::<String>::new());
    assert!(c.policy.is_some());
}

#[test]
fn example_test_files_pass() {
    // Every example directory with a `policy.test.yaml` passes it
    // (examples/orders-db exercises the SQL rules).
    let root = common::repo_root().join("examples");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let tests = dir.join("policy.test.yaml");
        if !tests.is_file() {
            continue;
        }
        let loaded = policy_compiler::load(&dir.join("policy.yaml")).unwrap();
        let policy = loaded.compiled.policy.as_ref().unwrap();
        let file = policy_compiler::suite::parse(&std::fs::read(&tests).unwrap(), policy);
        assert_eq!(file.diagnostics, vec![], "{}", tests.display());
        let r = policy_compiler::suite::run_file(policy, "policy.test.yaml", &file);
        let failures: Vec<_> = r
            .cases
            .iter()
            .filter(|c| c.status != policy_compiler::suite::Status::Pass)
            .collect();
        assert!(failures.is_empty(), "{}: {failures:#?}", tests.display());
        seen.push(dir.file_name().unwrap().to_string_lossy().into_owned());
    }
    seen.sort();
    assert!(seen.contains(&"orders-db".to_string()), "{seen:?}");
    assert!(seen.contains(&"mcp-tools".to_string()), "{seen:?}");
}
