//! `pinhole test POLICY TESTS...`.

use std::path::{Path, PathBuf};

use policy_compiler::suite::{self, FileResult, Status};

use super::{diagnostics_json, load_policy, usage_error, Exit, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file (YAML).
    pub policy: PathBuf,
    /// Test files (YAML), or directories searched recursively for `*.test.yaml` and
    /// `*.test.yml`.
    #[arg(required = true, value_name = "TESTS")]
    pub tests: Vec<PathBuf>,
    /// Also write a JUnit XML report to FILE (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print passing cases too.
    #[arg(short, long)]
    pub verbose: bool,
    /// Output format. `json` prints {"policy", "ok", "passed", "failed", "files": [{"file",
    /// "diagnostics", "cases": [{"name", "line", "col", "status", "expected", "actual",
    /// "problems"}]}]} on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Test files named by `paths`: files as given, directories walked in
/// name order.
fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
            {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let before = out.len();
            walk(p, &mut out).map_err(|e| format!("cannot read directory {}: {e}", p.display()))?;
            if out.len() == before {
                return Err(format!(
                    "no test files (*.test.yaml, *.test.yml) under {}",
                    p.display()
                ));
            }
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

pub fn run(a: &Args) -> Exit {
    let (_, policy) = match load_policy(&a.policy, a.format) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let files = match collect(&a.tests) {
        Ok(f) => f,
        Err(e) => return usage_error(e),
    };
    let mut results: Vec<FileResult> = Vec::new();
    for f in &files {
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => return usage_error(format!("cannot read {}: {e}", f.display())),
        };
        let name = f.display().to_string();
        let parsed = suite::parse(&bytes, &policy);
        results.push(suite::run_file(&policy, &name, &parsed));
    }
    let passed: usize = results.iter().map(|r| r.count(Status::Pass)).sum();
    // Failed cases, invalid cases, and files with problems outside any case.
    let failed: usize = results
        .iter()
        .map(|r| {
            r.count(Status::Fail)
                + r.count(Status::Error)
                + usize::from(r.diagnostics.iter().any(|d| d.is_error()))
        })
        .sum();
    let total = passed + failed;
    let ok = failed == 0 && total > 0;

    if let Some(path) = &a.junit {
        let xml = policy_compiler::junit::render(&a.policy.display().to_string(), &results);
        if let Err(e) = policy_compiler::write_atomic(path, xml.as_bytes()) {
            return usage_error(format!("cannot write {}: {e}", path.display()));
        }
    }

    match a.format {
        Format::Json => {
            let files: Vec<serde_json::Value> = results
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "file": r.file,
                        "diagnostics": diagnostics_json(&r.diagnostics),
                        "cases": r.cases,
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "policy": a.policy.display().to_string(),
                "ok": ok,
                "passed": passed,
                "failed": failed,
                "files": files,
            });
            println!("{doc}");
        }
        Format::Human => {
            for r in &results {
                for d in &r.diagnostics {
                    eprintln!("{}", d.render(&r.file));
                }
                for c in &r.cases {
                    let at = format!("{}:{}:{}", r.file, c.line, c.col);
                    match c.status {
                        Status::Pass => {
                            if a.verbose {
                                println!("ok   {at}: {}", c.name);
                            }
                        }
                        Status::Fail => {
                            println!("FAIL {at}: {}", c.name);
                            if let Some(e) = &c.expected {
                                println!("     expected: {}", suite::expect_text(e));
                            }
                            if let Some(o) = &c.actual {
                                println!("     actual:   {}", suite::outcome_text(o));
                            }
                            for p in &c.problems {
                                println!("     - {p}");
                            }
                        }
                        Status::Error => {
                            for p in &c.problems {
                                eprintln!("{p}");
                            }
                            println!("FAIL {at}: {} (invalid case)", c.name);
                        }
                    }
                }
            }
            if total == 0 {
                eprintln!("pinhole: error: no test cases found");
            }
            println!("{passed} passed, {failed} failed");
        }
    }
    if ok {
        Exit::Ok
    } else {
        Exit::Policy
    }
}
