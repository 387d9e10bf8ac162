//! JUnit XML for `pinhole test --junit FILE`, in the shape CI systems read
//! (Jenkins, GitLab, GitHub test reporters): one `<testsuite>` per test
//! file, one `<testcase>` per case, `<failure>` for a failed expectation,
//! `<error>` for a case (or file) that could not be run.

use crate::suite::{expect_text, outcome_text, FileResult, Status};

/// Escape text for XML 1.0 content and attribute values. Characters XML
/// 1.0 cannot carry at all (most C0 controls) become `\u{..}` text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// The whole report.
pub fn render(policy: &str, files: &[FileResult]) -> String {
    let total: usize = files
        .iter()
        .map(|f| f.cases.len() + usize::from(!f.diagnostics.is_empty()))
        .sum();
    let failures: usize = files.iter().map(|f| f.count(Status::Fail)).sum();
    let errors: usize = files
        .iter()
        .map(|f| f.count(Status::Error) + usize::from(!f.diagnostics.is_empty()))
        .sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"{}\" tests=\"{total}\" failures=\"{failures}\" errors=\"{errors}\">\n",
        escape(&format!("pinhole test {policy}"))
    ));
    for f in files {
        let file_errors = usize::from(!f.diagnostics.is_empty());
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\">\n",
            escape(&f.file),
            f.cases.len() + file_errors,
            f.count(Status::Fail),
            f.count(Status::Error) + file_errors
        ));
        if !f.diagnostics.is_empty() {
            let text: Vec<String> = f.diagnostics.iter().map(|d| d.render(&f.file)).collect();
            x.push_str(&format!(
                "    <testcase name=\"(test file)\" classname=\"{}\" file=\"{}\">\n      <error message=\"{}\">{}</error>\n    </testcase>\n",
                escape(&f.file),
                escape(&f.file),
                escape(text.first().map(String::as_str).unwrap_or("invalid test file")),
                escape(&text.join("\n"))
            ));
        }
        for c in &f.cases {
            x.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\"",
                escape(&c.name),
                escape(&f.file),
                escape(&f.file),
                c.line
            ));
            match c.status {
                Status::Pass => x.push_str("/>\n"),
                Status::Fail => {
                    let mut body = Vec::new();
                    if let Some(e) = &c.expected {
                        body.push(format!("expected: {}", expect_text(e)));
                    }
                    if let Some(o) = &c.actual {
                        body.push(format!("actual:   {}", outcome_text(o)));
                    }
                    body.extend(c.problems.iter().cloned());
                    x.push_str(&format!(
                        ">\n      <failure message=\"{}\" type=\"expectation\">{}</failure>\n    </testcase>\n",
                        escape(&c.problems.join("; ")),
                        escape(&body.join("\n"))
                    ));
                }
                Status::Error => {
                    x.push_str(&format!(
                        ">\n      <error message=\"{}\" type=\"invalid case\">{}</error>\n    </testcase>\n",
                        escape(c.problems.first().map(String::as_str).unwrap_or("invalid case")),
                        escape(&c.problems.join("\n"))
                    ));
                }
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(
            super::escape("a<b>&\"c'\n\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&apos;&#10;\\u{1}"
        );
    }
}
