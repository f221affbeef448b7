//! The subcommands, one module each; `execute` runs one, and `Failure::exit_code` is the one
//! place where an outcome becomes an exit code: 0 ok, 1 failure, 2 bad input, 3 a ledger that
//! does not add up (a harness bug), 4 an anomaly of the system under test (deliveries of
//! messages never sent), 5 `compare --max-regression`: run B is worse than run A beyond the
//! threshold, 130 interrupted.

pub mod calibrate;
pub mod cluster;
pub mod load;
pub mod monitoring;
pub mod results;
pub mod run;

use tokio::sync::watch;

use crate::cli::Command;

/// `compare --max-regression`'s exit status when run B regressed.
pub const REGRESSED: u8 = 5;

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad input: a scenario file, a flag, a results folder that cannot be read.
    #[error("{0}")]
    Input(String),
    /// The command could not do its work (a broker, a cluster, the system).
    #[error("{0}")]
    Failed(String),
    /// `compare --max-regression`: the second run is worse than the first beyond the threshold
    /// (what regressed, by how much).
    #[error("{0}")]
    Regressed(String),
    /// Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// The run's own status (a backend error, an inconsistent ledger, an anomaly), already
    /// said in its output.
    #[error("exit status {0}")]
    Status(u8),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Input(_) => 2,
            Failure::Failed(_) => 1,
            Failure::Regressed(_) => REGRESSED,
            Failure::Interrupted => 130,
            Failure::Status(code) => *code,
        }
    }

    /// What to print as "error: …" (nothing when the failure was already said).
    pub fn message(&self) -> Option<String> {
        match self {
            Failure::Input(m) | Failure::Failed(m) | Failure::Regressed(m) => Some(m.clone()),
            Failure::Interrupted | Failure::Status(_) => None,
        }
    }
}

/// Run one subcommand (but the watchdog, which runs without an async runtime).
pub async fn execute(command: Command) -> Result<(), Failure> {
    match command {
        Command::Validate { scenarios } => run::validate(&scenarios),
        Command::Calibrate(a) => calibrate::calibrate(a).await,
        Command::Overview { results } => results::overview(&results),
        Command::Verdicts { root } => results::verdicts(&root),
        Command::Report { dirs } => dirs.iter().try_for_each(|d| results::report(d)),
        Command::Compare {
            a,
            b,
            out,
            max_regression,
        } => results::compare(&a, &b, out, max_regression),
        Command::Run {
            scenarios,
            results,
            quiet,
            metrics_addr,
            overrides,
        } => {
            let flags = run::RunFlags {
                results,
                quiet,
                overrides,
                metrics_addr,
            };
            run::run(&scenarios, flags).await
        }
        Command::Quick {
            backend_type,
            results,
            quiet,
            base_port,
            metrics_addr,
            overrides,
        } => {
            let prepared = crate::run::Prepared::quick(&backend_type, base_port, &overrides)
                .map_err(|e| Failure::Input(e.to_string()))?;
            let flags = run::RunFlags {
                results,
                quiet,
                overrides,
                metrics_addr,
            };
            run::run_all(vec![prepared], flags).await
        }
        Command::Completions { shell } => {
            completions(shell);
            Ok(())
        }
        Command::Cluster { action } => cluster::cluster(action)
            .await
            .map_err(|e| Failure::Failed(format!("{e:#}"))),
        Command::Monitoring { action } => monitoring::monitoring(action).await,
        Command::Produce(a) => load::produce(a).await,
        Command::Consume(a) => load::consume(a).await,
        Command::Watchdog { .. } => Err(Failure::Input(format!(
            "{} runs only as `brokerbench run`'s helper",
            crate::run::watchdog::SUBCOMMAND
        ))),
    }
}

/// `brokerbench completions <shell>`: the completion script on stdout, for the subcommands a
/// person types (clap_complete's bash script would offer hidden ones too).
fn completions(shell: clap_complete::Shell) {
    use clap::CommandFactory;
    let full = crate::cli::Cli::command();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .cloned()
        .collect();
    // The name `Cli` gives the program (`#[command(name = ...)]`).
    let mut cli = clap::Command::new("brokerbench")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommands(visible);
    let name = cli.get_name().to_string();
    clap_complete::generate(shell, &mut cli, name, &mut std::io::stdout());
}

/// A watch that turns true on Ctrl-C or SIGTERM.
pub fn cancellation() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        crate::errln!("\nstopping: cleaning up what was started");
        let _ = tx.send(true);
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_its_exit_code_and_says_itself_once() {
        assert_eq!(Failure::Input("x".into()).exit_code(), 2);
        assert_eq!(Failure::Failed("x".into()).exit_code(), 1);
        assert_eq!(Failure::Interrupted.exit_code(), 130);
        assert_eq!(Failure::Regressed("x".into()).exit_code(), 5);
        assert_eq!(Failure::Status(4).exit_code(), 4);
        assert_eq!(
            Failure::Input("bad".into()).message().as_deref(),
            Some("bad")
        );
        assert_eq!(Failure::Status(3).message(), None);
        assert_eq!(Failure::Interrupted.message(), None);
    }
}
