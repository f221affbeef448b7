//! The ledger's totals and its consistency checks.

use serde::Serialize;

use super::Ledger;

/// The ledger's totals over all producers, with the result of its consistency checks.
/// sent = confirmed + failed + indeterminate + unconfirmed, and received = (confirmed - lost)
/// + received_failed + received_indeterminate + (unconfirmed - unconfirmed_missing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LedgerSummary {
    pub sent: u64,
    /// Due before the end of the load but never handed to the client (not part of `sent`).
    pub unsent: u64,
    pub confirmed: u64,
    /// The broker certainly did not take it: nacked, or refused (e.g. CLUSTERDOWN).
    pub failed: u64,
    /// The outcome is unknown: the confirm was lost with the connection, or timed out.
    pub indeterminate: u64,
    /// Sent, with no confirm and no failure by the end (all sends without confirms).
    pub unconfirmed: u64,
    /// Sent but not confirmed: failed + indeterminate + unconfirmed.
    pub never_confirmed: u64,
    /// Distinct messages received.
    pub received: u64,
    pub duplicates: u64,
    /// Confirmed, never received, and no longer held by the broker: `missing - undelivered`.
    pub lost: u64,
    /// Confirmed and never received, but the broker still held messages for the consumers when
    /// the drain stopped (ready or unacked): at most `missing`. Not a loss, a consumer behind.
    pub undelivered: u64,
    /// Whether the broker was asked what it still held (false: `undelivered` is 0 because the
    /// backend cannot tell, and `lost` may include messages still in the broker).
    pub backlog_known: bool,
    /// Received although not confirmed (failed, indeterminate or unconfirmed).
    pub unconfirmed_received: u64,
    /// Received although their publish failed.
    pub received_failed: u64,
    /// Received, and their outcome was unknown to the producer.
    pub received_indeterminate: u64,
    /// Unconfirmed and never received.
    pub unconfirmed_missing: u64,
    /// Failed and never received.
    pub failed_missing: u64,
    /// Indeterminate and never received (not a loss: the broker never confirmed them).
    pub indeterminate_missing: u64,
    /// Receipts of sequence numbers or producers that were never sent: an anomaly of the system
    /// under test (or of another writer), reported as such, not a harness inconsistency.
    pub phantom: u64,
    /// All the checks below passed.
    pub consistent: bool,
    /// Checks that failed, in words ("" when consistent).
    pub problems: String,
}

impl Ledger {
    /// Totals and consistency checks. `deliveries` is the number of deliveries the consumers
    /// counted on their own (every receipt, first or not, foreign excluded); `held` is what
    /// the broker said it still held for the consumers when the drain stopped (`None`: it was
    /// not asked or could not tell).
    pub fn summary(&self, deliveries: u64, held: Option<u64>) -> LedgerSummary {
        let mut s = LedgerSummary::default();
        let mut problems = Vec::new();
        let mut first_receipts_expected = 0;
        for (i, p) in self.producers.iter().enumerate() {
            let p = p.lock();
            let outcomes = [
                ("confirmed", &p.confirmed),
                ("failed", &p.failed),
                ("indeterminate", &p.indeterminate),
            ];
            // A message has at most one outcome.
            let mut overlap = 0;
            for (a, (na, sa)) in outcomes.iter().enumerate() {
                for (nb, sb) in &outcomes[a + 1..] {
                    let both = sa.count_and(sb);
                    if both > 0 {
                        overlap += both;
                        problems.push(format!("producer {i}: {both} messages both {na} and {nb}"));
                    }
                }
            }
            for (what, set) in outcomes.iter().chain([&("received", &p.received)]) {
                let beyond = set.count_from(p.sent);
                if beyond > 0 {
                    problems.push(format!(
                        "producer {i}: {beyond} {what} sequence numbers beyond the {} sent",
                        p.sent
                    ));
                }
            }
            let confirmed = p.confirmed.count();
            let failed = p.failed.count();
            let indeterminate = p.indeterminate.count();
            let received = p.received.count();
            let confirmed_received = p.confirmed.count_and(&p.received);
            let failed_received = p.failed.count_and(&p.received);
            let indeterminate_received = p.indeterminate.count_and(&p.received);
            let with_outcome = (confirmed + failed + indeterminate).saturating_sub(overlap);
            let unconfirmed = p.sent.saturating_sub(with_outcome);
            let unconfirmed_received = received
                .saturating_sub(confirmed_received + failed_received + indeterminate_received);
            s.sent += p.sent;
            s.unsent += p.unsent;
            s.confirmed += confirmed;
            s.failed += failed;
            s.indeterminate += indeterminate;
            s.unconfirmed += unconfirmed;
            s.received += received;
            s.duplicates += p.duplicates;
            s.phantom += p.phantom;
            s.lost += confirmed - confirmed_received;
            s.received_failed += failed_received;
            s.received_indeterminate += indeterminate_received;
            s.failed_missing += failed - failed_received;
            s.indeterminate_missing += indeterminate - indeterminate_received;
            s.unconfirmed_missing += unconfirmed.saturating_sub(unconfirmed_received);
            first_receipts_expected += received;
        }
        s.phantom += self
            .phantom_producer
            .load(std::sync::atomic::Ordering::Relaxed);
        s.never_confirmed = s.sent.saturating_sub(s.confirmed);
        s.unconfirmed_received = s.received.saturating_sub(s.confirmed - s.lost);
        // Confirmed messages not received that the broker may still hold: a consumer behind,
        // not a loss. Only what the broker no longer holds is lost.
        s.backlog_known = held.is_some();
        s.undelivered = held.unwrap_or(0).min(s.lost);
        let missing = s.lost;
        s.lost = missing - s.undelivered;
        // The counts must add up.
        if s.confirmed + s.failed + s.indeterminate + s.unconfirmed != s.sent {
            problems.push(format!(
                "confirmed {} + failed {} + indeterminate {} + unconfirmed {} != sent {}",
                s.confirmed, s.failed, s.indeterminate, s.unconfirmed, s.sent
            ));
        }
        let received_unconfirmed = s.unconfirmed - s.unconfirmed_missing;
        if (s.confirmed - missing)
            + s.received_failed
            + s.received_indeterminate
            + received_unconfirmed
            != s.received
        {
            problems.push(format!(
                "received {} != confirmed-and-received {} + failed-and-received {} + indeterminate-and-received {} + unconfirmed-and-received {}",
                s.received,
                s.confirmed - missing,
                s.received_failed,
                s.received_indeterminate,
                received_unconfirmed
            ));
        }
        if first_receipts_expected + s.duplicates + s.phantom != deliveries {
            problems.push(format!(
                "consumers counted {deliveries} deliveries but the ledger holds {} distinct + {} duplicates + {} phantom",
                first_receipts_expected, s.duplicates, s.phantom
            ));
        }
        s.consistent = problems.is_empty();
        s.problems = problems.join("; ");
        s
    }
}
