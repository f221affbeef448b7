//! brokerbench's entry point: parse the command line, run the subcommand (`commands`), turn its
//! outcome into the exit code (`commands::Failure::exit_code`).

use std::process::ExitCode;

use brokerbench::cli::{Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The watchdog needs no async runtime: it blocks on a pipe and polls /proc.
    if let Command::Watchdog {
        parent,
        parent_start,
        run_dir,
    } = &cli.command
    {
        return ExitCode::from(brokerbench::run::watchdog::watch(
            *parent,
            *parent_start,
            run_dir,
        ));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            brokerbench::errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(brokerbench::commands::execute(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message() {
                brokerbench::errln!("error: {message}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}
