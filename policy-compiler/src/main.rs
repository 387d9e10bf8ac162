//! `pinhole`: check, compile and inspect Pinhole policies. The work is in
//! the library (`policy_compiler`) and in one module per subcommand.

use clap::Parser;

mod cmd;

fn main() -> std::process::ExitCode {
    let cli = cmd::Cli::parse();
    cmd::run(cli).into()
}
