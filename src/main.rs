//! brokerbench's entry point: parse the command line, turn the clients' logs on when RUST_LOG
//! asks, run the subcommand (`commands`), turn its outcome into the exit code
//! (`commands::Failure::exit_code`).

use std::process::ExitCode;

use brokerbench::cli::{Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    client_logs();
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

/// `RUST_LOG` (e.g. `RUST_LOG=lapin=debug,redis=trace`) turns on the clients' logs on stderr:
/// lapin and rabbitmq-stream-client log through `tracing`, redis through `log` (bridged). Off
/// unless RUST_LOG is set.
fn client_logs() {
    if std::env::var_os("RUST_LOG").is_none() {
        return;
    }
    match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(filter) => {
            if let Err(e) = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                // Colours for a terminal only, not in a file the logs are sent to.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .try_init()
            {
                brokerbench::errln!("warning: RUST_LOG: cannot turn the logs on: {e}");
            }
        }
        Err(e) => brokerbench::errln!(
            "warning: RUST_LOG is not a log filter ({e}); logs stay off. Write e.g. RUST_LOG=debug or RUST_LOG=lapin=debug,redis=trace"
        ),
    }
}
