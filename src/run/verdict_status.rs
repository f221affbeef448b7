//! What a finished scenario's rows mean for the exit status of `brokerbench run`.

use crate::report::SummaryRow;

/// The worst thing a scenario's rows say, in the order the exit status ranks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunStatus {
    /// Every backend ran and every ledger adds up (exit 0).
    Ok,
    /// A backend could not run (exit 1).
    BackendError,
    /// The system under test delivered messages this run never sent, while the harness's own
    /// books balance: a finding about the broker (exit 4).
    Anomaly,
    /// A ledger does not add up: a harness bug (exit 3).
    Inconsistent,
}

impl RunStatus {
    /// The status of one scenario's rows.
    pub fn of(rows: &[SummaryRow]) -> RunStatus {
        rows.iter()
            .map(|s| {
                if s.status == "ok" && !s.ledger_consistent {
                    RunStatus::Inconsistent
                } else if s.has_anomaly() {
                    RunStatus::Anomaly
                } else if s.status.starts_with("error") {
                    RunStatus::BackendError
                } else {
                    RunStatus::Ok
                }
            })
            .max()
            .unwrap_or(RunStatus::Ok)
    }

    pub fn exit_code(self) -> u8 {
        match self {
            RunStatus::Ok => 0,
            RunStatus::BackendError => 1,
            RunStatus::Inconsistent => 3,
            RunStatus::Anomaly => 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, consistent: bool, phantom: u64) -> SummaryRow {
        SummaryRow {
            status: status.into(),
            ledger_consistent: consistent,
            phantom,
            ..Default::default()
        }
    }

    #[test]
    fn a_phantom_is_an_anomaly_not_a_harness_bug() {
        assert_eq!(RunStatus::of(&[row("ok", true, 0)]), RunStatus::Ok);
        let odd = [row("ok", true, 0), row("ok", true, 3)];
        assert_eq!(RunStatus::of(&odd).exit_code(), 4);
        // A broken ledger outranks everything: the figures cannot be trusted.
        let broken = [row("ok", true, 3), row("ok", false, 0)];
        assert_eq!(RunStatus::of(&broken).exit_code(), 3);
        assert_eq!(RunStatus::of(&[row("error: x", true, 0)]).exit_code(), 1);
        assert_eq!(
            RunStatus::of(&[row("error: x", true, 0), row("ok", true, 1)]),
            RunStatus::Anomaly
        );
    }
}
