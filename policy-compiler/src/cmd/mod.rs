//! Command-line interface: argument definitions and dispatch. Each
//! subcommand lives in its own module and returns an [`Exit`] code.

use clap::{Parser, Subcommand, ValueEnum};

mod check;
mod compile;
mod inspect;

/// Process exit codes. `Policy` (the input is wrong) is kept apart from
/// `Usage` (the command could not do its job), so scripts can tell them
/// apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success: the policy is valid / the blob was written / the blob is sound.
    Ok = 0,
    /// The policy has errors, or the blob is corrupt.
    Policy = 1,
    /// Bad arguments, an unreadable input file, an unwritable output, or an
    /// invalid `SOURCE_DATE_EPOCH`. (clap's own usage errors also exit 2.)
    Usage = 2,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

const EXIT_CODES: &str = "\
Exit codes:
  0  success (policy valid, blob written, blob sound)
  1  the policy has errors (or warnings, with --deny-warnings); inspect: the blob is corrupt
  2  usage error: bad arguments, unreadable input, unwritable output, invalid SOURCE_DATE_EPOCH";

const ROOT_AFTER_HELP: &str = "\
Examples:
  pinhole check policy.yaml
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) pinhole compile policy.yaml -o policy.blob
  pinhole inspect policy.blob

Exit codes:
  0  success (policy valid, blob written, blob sound)
  1  the policy has errors (or warnings, with --deny-warnings); inspect: the blob is corrupt
  2  usage error: bad arguments, unreadable input, unwritable output, invalid SOURCE_DATE_EPOCH";

#[derive(Debug, Parser)]
#[command(
    name = "pinhole",
    version,
    about = "Check, compile and inspect Pinhole least-privilege policies",
    long_about = "Check, compile and inspect Pinhole least-privilege policies.\n\n\
        A policy is a YAML file (language reference: docs/policy.md). `pinhole check` reports \
        every problem at once as FILE:LINE:COL diagnostics; `pinhole compile` turns a valid \
        policy into the deterministic, integrity-checked blob the Envoy filter loads; \
        `pinhole inspect` shows what a blob contains.",
    after_help = ROOT_AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a policy file and report every error and warning.
    ///
    /// Diagnostics go to stderr as `FILE:LINE:COL: error: message`. On success a one-line
    /// summary goes to stdout.
    #[command(after_help = EXIT_CODES)]
    Check(check::Args),
    /// Check a policy file, then write the compiled blob atomically.
    ///
    /// The blob is deterministic: the same policy and JWKS files always give byte-identical
    /// output. If SOURCE_DATE_EPOCH is set (decimal seconds) it is recorded in the blob's
    /// metadata; nothing else about the build environment is.
    #[command(after_help = EXIT_CODES)]
    Compile(compile::Args),
    /// Verify a compiled blob and print its format version, digest, metadata and contents
    /// summary.
    #[command(after_help = EXIT_CODES)]
    Inspect(inspect::Args),
}

/// Output format for machine consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Text for people (diagnostics on stderr).
    #[default]
    Human,
    /// One JSON document on stdout.
    Json,
}

pub fn run(cli: Cli) -> Exit {
    match cli.command {
        Command::Check(a) => check::run(&a),
        Command::Compile(a) => compile::run(&a),
        Command::Inspect(a) => inspect::run(&a),
    }
}

/// Print a usage/IO error and return [`Exit::Usage`].
pub fn usage_error(msg: impl std::fmt::Display) -> Exit {
    eprintln!("pinhole: error: {msg}");
    Exit::Usage
}

/// Print the diagnostics of a loaded policy to stderr, followed by a count
/// line when there are any. Returns true when the policy is acceptable
/// (no errors; no warnings either under `deny_warnings`).
pub fn report(loaded: &policy_compiler::Loaded, deny_warnings: bool) -> bool {
    for line in loaded.rendered() {
        eprintln!("{line}");
    }
    let errors = loaded.compiled.error_count();
    let warnings = loaded.compiled.warning_count();
    let ok = errors == 0 && !(deny_warnings && warnings > 0);
    if !ok {
        let mut parts = Vec::new();
        if errors > 0 {
            parts.push(policy_compiler::diag::plural(errors, "error"));
        }
        if warnings > 0 {
            parts.push(policy_compiler::diag::plural(warnings, "warning"));
        }
        let extra = if errors == 0 {
            " (--deny-warnings)"
        } else {
            ""
        };
        eprintln!("{}: {}{extra}", loaded.path.display(), parts.join(", "));
    }
    ok
}
