//! `pinhole audit verify FILE...`: check the hash chains of audit logs.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use pinhole_filter::audit::{ChainReport, Position, Problem, Verifier, VerifyReport};
use serde_json::{json, Value};

use super::{usage_error, Exit, Format};

/// Problems printed per chain in the human format (JSON lists them all).
const SHOWN_PER_CHAIN: usize = 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Check the hash chains of audit logs: report per chain `ok`, or the first bad line and
    /// why (edited, deleted, reordered, replayed, prev-mismatch, malformed).
    ///
    /// Reads Envoy logs (an event is the JSON after `pinhole-audit: ` anywhere in a line;
    /// other lines are ignored) or bare JSON lines from the HTTP sink. Several chains
    /// (workers) may be interleaved. Give rotated files oldest first: they are read as one
    /// stream, so a chain is followed across them. A chain whose first event is not its
    /// first (`seq` 1) is accepted with a note (the earlier events are in an older file).
    /// Exits 0 when every chain verifies, 1 when tampering is found.
    #[command(after_help = AUDIT_EXIT_CODES)]
    Verify(VerifyArgs),
}

pub const AUDIT_EXIT_CODES: &str = "\
Exit codes:
  0  every chain verifies (also when no audit event was found: a warning says so)
  1  tampering found: an event edited, deleted, reordered, replayed or unreadable
  2  usage error: bad arguments, an unreadable file";

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Log files, oldest first; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format. `json` prints {"ok", "files", "lines", "events", "chains": [{"worker",
    /// "ok", "events", "first_seq", "last_seq", "first", "last", "notes", "first_bad",
    /// "problems"}], "unattributed"}; positions are {"file", "line"}, problems and notes add
    /// "kind" and "message".
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

pub fn run(a: &Args) -> Exit {
    match &a.command {
        Sub::Verify(v) => verify(v),
    }
}

fn display_name(p: &std::path::Path) -> String {
    if p.as_os_str() == "-" {
        "<stdin>".into()
    } else {
        p.display().to_string()
    }
}

fn verify(a: &VerifyArgs) -> Exit {
    let names: Vec<String> = a.files.iter().map(|p| display_name(p)).collect();
    let mut v = Verifier::with_source_names(names.clone());
    for (source, path) in a.files.iter().enumerate() {
        let input: Box<dyn Read> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            match std::fs::File::open(path) {
                Ok(f) if f.metadata().is_ok_and(|m| m.is_dir()) => {
                    return usage_error(format!("cannot read {}: is a directory", path.display()))
                }
                Ok(f) => Box::new(f),
                Err(e) => return usage_error(format!("cannot read {}: {e}", path.display())),
            }
        };
        if let Err(e) = feed(&mut v, source, input) {
            return usage_error(format!("cannot read {}: {e}", path.display()));
        }
    }
    let report = v.finish();
    if report.events == 0 {
        eprintln!(
            "pinhole: warning: no audit events (lines with `{}`) in {}",
            pinhole_filter::audit::LOG_PREFIX.trim_end(),
            names.join(", ")
        );
    }
    match a.format {
        Format::Json => println!("{}", json_report(&report, &names)),
        Format::Human => print!("{}", human(&report, &names)),
    }
    if report.ok() {
        Exit::Ok
    } else {
        Exit::Policy
    }
}

/// Feed every line of `input` (split on `\n`, invalid UTF-8 replaced).
fn feed(v: &mut Verifier, source: usize, input: Box<dyn Read>) -> std::io::Result<()> {
    let mut r = BufReader::with_capacity(64 * 1024, input);
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        line += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        v.feed(Position { source, line }, &String::from_utf8_lossy(&buf));
    }
}

struct Names<'a>(&'a [String]);

impl Names<'_> {
    fn at(&self, p: Position) -> String {
        let file = self.0.get(p.source).map_or("?", String::as_str);
        format!("{file}:{}", p.line)
    }

    fn pos(&self, p: Position) -> Value {
        json!({
            "file": self.0.get(p.source).map_or("?", String::as_str),
            "line": p.line,
        })
    }

    fn problem(&self, p: &Problem) -> Value {
        json!({
            "file": self.0.get(p.at.source).map_or("?", String::as_str),
            "line": p.at.line,
            "kind": p.kind.as_str(),
            "message": p.message,
        })
    }
}

fn seqs(c: &ChainReport) -> String {
    if c.first_seq == c.last_seq {
        format!("seq {}", c.first_seq)
    } else {
        format!("seq {}-{}", c.first_seq, c.last_seq)
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn human(r: &VerifyReport, names: &[String]) -> String {
    let n = Names(names);
    let mut out = String::new();
    for c in &r.chains {
        let head = format!(
            "chain {}: {} ({}, {})",
            c.worker,
            if c.ok() { "ok" } else { "TAMPERED" },
            plural(c.events, "event", "events"),
            seqs(c)
        );
        out.push_str(&head);
        out.push('\n');
        for note in &c.notes {
            out.push_str(&format!("  note: {}: {}\n", n.at(note.at), note.message));
        }
        for (i, p) in c.problems.iter().enumerate().take(SHOWN_PER_CHAIN) {
            let label = if i == 0 { "first bad line" } else { "also" };
            out.push_str(&format!(
                "  {label}: {}: {}: {}\n",
                n.at(p.at),
                p.kind.as_str(),
                p.message
            ));
        }
        if c.problems.len() > SHOWN_PER_CHAIN {
            out.push_str(&format!(
                "  … and {} more (--format json lists them all)\n",
                c.problems.len() - SHOWN_PER_CHAIN
            ));
        }
    }
    for p in &r.unattributed {
        out.push_str(&format!(
            "{}: {}: {}\n",
            n.at(p.at),
            p.kind.as_str(),
            p.message
        ));
    }
    let bad = r.chains.iter().filter(|c| !c.ok()).count();
    let summary = format!(
        "{}, {} in {}",
        plural(r.chains.len(), "chain", "chains"),
        plural(r.events, "event", "events"),
        plural(names.len(), "file", "files")
    );
    if r.ok() {
        out.push_str(&format!("{summary}: verified\n"));
    } else {
        let problems = r.problems();
        let first = problems
            .first()
            .map(|p| format!("; first bad line {}", n.at(p.at)))
            .unwrap_or_default();
        let unattributed = if r.unattributed.is_empty() {
            String::new()
        } else {
            format!(
                ", {}",
                plural(
                    r.unattributed.len(),
                    "unreadable audit line",
                    "unreadable audit lines"
                )
            )
        };
        out.push_str(&format!(
            "{summary}: TAMPERING FOUND ({} of {} tampered{unattributed}{first})\n",
            bad,
            plural(r.chains.len(), "chain", "chains"),
        ));
    }
    out
}

fn json_report(r: &VerifyReport, names: &[String]) -> Value {
    let n = Names(names);
    let chains: Vec<Value> = r
        .chains
        .iter()
        .map(|c| {
            json!({
                "worker": c.worker,
                "ok": c.ok(),
                "events": c.events,
                "first_seq": c.first_seq,
                "last_seq": c.last_seq,
                "first": n.pos(c.first),
                "last": n.pos(c.last),
                "notes": c.notes.iter().map(|note| json!({
                    "file": names.get(note.at.source).map_or("?", String::as_str),
                    "line": note.at.line,
                    "kind": note.kind,
                    "message": note.message,
                })).collect::<Vec<_>>(),
                "first_bad": c.first_bad().map(|p| n.problem(p)),
                "problems": c.problems.iter().map(|p| n.problem(p)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "ok": r.ok(),
        "files": names,
        "lines": r.lines,
        "events": r.events,
        "chains": chains,
        "unattributed": r.unattributed.iter().map(|p| n.problem(p)).collect::<Vec<_>>(),
    })
}
