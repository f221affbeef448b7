//! The last step of a load: collect the tasks' last figures, put every fault on the timeline
//! with its recovery figures, and settle the ledger into the summary row (asking the broker what
//! it still holds when messages are missing).

use std::time::Duration;

use super::{report, report_samples, LoadOutcome, LoadRun, Ticked};
use crate::backend::{Backend, Destination};
use crate::fault::analysis::{min_gap_ns, row as fault_row, Bounds};
use crate::fault::runner::Observation;
use crate::fault::FaultRow;
use crate::metrics::activity::Activity;
use crate::report::{each, DestinationSecond, LostFate, LostMessage, Sink, SummaryRow};
use crate::scenario::timeline::EventKind;

/// A fault row's publish availability on a backend without confirms.
pub const NO_CONFIRMS: &str = "cannot be measured (no confirms)";
/// lost.csv lists at most this many lost messages per backend (the count is in summary.csv).
const MAX_LOST_LISTED: usize = 100_000;

impl LoadRun<'_> {
    pub(super) async fn finish(
        mut self,
        ticked: Ticked,
        observations: &[Observation],
        sinks: &mut [Box<dyn Sink>],
    ) -> LoadOutcome {
        let (label, t) = (self.spec.label, self.times);
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let abort = self.sampler.abort_handle();
        if tokio::time::timeout(Duration::from_secs(3), &mut self.sampler)
            .await
            .is_err()
        {
            abort.abort();
        }
        report_samples(sinks, self.samples.lock().take());
        self.faults_on_timeline(observations, sinks);
        let bounds = Bounds {
            measure_end_ns: t.end,
            load_end_ns: self.clock.now_ns().min(t.drain_deadline),
            min_gap_ns: min_gap_ns(self.spec.workload),
        };
        let rows = self.fault_rows(observations, bounds);
        if !rows.is_empty() {
            report(each(sinks, |s| s.on_faults(&rows)));
        }
        let per_second =
            destination_seconds(label, self.spec.dests, &self.activity, bounds.load_end_ns);
        report(each(sinks, |s| s.on_destinations(&per_second)));
        let now = self.clock.now_ns();
        let (row, stats) = self.agg.tick(now, ticked.phase);
        report(each(sinks, |s| s.on_interval(row, stats)));
        self.report_live(sinks);
        self.timeline.close(ticked.open, t.secs(now));
        report(each(sinks, |s| {
            s.on_event(&self.timeline.events[ticked.open])
        }));
        self.settle(ticked.interrupted, sinks).await
    }

    /// Every fault on the timeline, with its restart (or resume) as its own event.
    fn faults_on_timeline(&mut self, observations: &[Observation], sinks: &mut [Box<dyn Sink>]) {
        let (label, t) = (self.spec.label, self.times);
        for o in observations {
            let node = o.node.clone();
            let what = format!(
                "{} {}",
                o.spec.action.as_str(),
                node.clone().unwrap_or_else(|| o.spec.target.to_string())
            );
            let i = self
                .timeline
                .open(label, EventKind::Fault, &what, t.secs(o.at_ns));
            self.timeline.close(i, t.secs(o.end_ns.unwrap_or(o.at_ns)));
            report(each(sinks, |s| s.on_event(&self.timeline.events[i])));
            if let Some(r) = o.restart_ns {
                let verb = o.spec.action.comeback();
                let name = format!("{verb} {}", node.unwrap_or_default());
                let i = self
                    .timeline
                    .open(label, EventKind::Fault, &name, t.secs(r));
                self.timeline.close(i, t.secs(o.rejoined_ns.unwrap_or(r)));
                report(each(sinks, |s| s.on_event(&self.timeline.events[i])));
            }
        }
    }

    fn fault_rows(&self, observations: &[Observation], bounds: Bounds) -> Vec<FaultRow> {
        let confirms = self.spec.backend.confirms();
        observations
            .iter()
            .enumerate()
            .map(|(k, o)| {
                let next = observations.get(k + 1).map(|n| n.at_ns);
                let mut row = fault_row(
                    self.spec.label,
                    o,
                    next,
                    self.spec.dests,
                    &self.activity,
                    bounds,
                );
                if !confirms {
                    // Without confirms a send is all a producer learns: publish availability
                    // cannot be measured, and a 0 would read as "no downtime".
                    row.publish_unavailable_s = None;
                    row.publish_recovered = NO_CONFIRMS.to_string();
                }
                row
            })
            .collect()
    }

    /// The ledger's account: lost messages listed, and the summary row.
    async fn settle(self, interrupted: bool, sinks: &mut [Box<dyn Sink>]) -> LoadOutcome {
        let label = self.spec.label;
        let drained = self.ledger.awaiting() == 0;
        // Messages confirmed and not received may still be in the broker (a consumer behind):
        // ask it what it holds, so that only what it no longer holds counts as lost.
        let held = if drained {
            Some(0)
        } else {
            held_by_broker(self.spec.backend.as_ref(), self.spec.dests, sinks).await
        };
        let ledger_summary = self.ledger.summary(self.agg.all().deliveries(), held);
        let fate = if ledger_summary.undelivered > 0 {
            LostFate::LostOrUndelivered
        } else {
            LostFate::Lost
        };
        let lost: Vec<LostMessage> = self
            .ledger
            .lost_list(MAX_LOST_LISTED)
            .into_iter()
            .map(|(producer, seq)| LostMessage {
                backend: label.to_string(),
                producer,
                seq,
                fate,
            })
            .collect();
        if !lost.is_empty() {
            report(each(sinks, |s| s.on_lost(&lost)));
        }
        let status = if interrupted { "interrupted" } else { "ok" };
        let mut summary = SummaryRow::from_run(
            label,
            self.spec.kind,
            status.to_string(),
            self.spec.workload,
            &self.agg,
            &ledger_summary,
            drained,
        );
        if let Some(d) = &self.deferred {
            let f = super::replay::figures(
                &self.activity,
                d.started_ns,
                self.clock.now_ns(),
                ledger_summary.confirmed,
                self.agg.all().received,
            );
            summary.fill_s = f.fill_s;
            summary.fill_per_s = f.fill_per_s;
            summary.replay_s = f.replay_s;
            summary.replay_per_s = f.replay_per_s;
        }
        LoadOutcome {
            summary,
            interrupted,
            ledger_bytes: self.ledger.heap_bytes(),
        }
    }
}

/// What the broker still holds for the consumers (ready + unacked), asked once when the drain
/// stops with messages outstanding; `None` when the backend cannot tell or does not answer.
async fn held_by_broker(
    backend: &dyn Backend,
    dests: &[Destination],
    sinks: &mut [Box<dyn Sink>],
) -> Option<u64> {
    let asked = tokio::time::timeout(Duration::from_secs(10), backend.backlog(dests)).await;
    let answer = match asked {
        Ok(Ok(b)) => return b.map(|b| b.total()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 10 s".to_string(),
    };
    let line = format!(
        "could not ask the broker what it still holds ({answer}): messages not received count as lost"
    );
    report(each(sinks, |s| s.on_notice(&line)));
    None
}

/// destinations.csv: per destination and second, what the activity slots counted.
fn destination_seconds(
    label: &str,
    dests: &[Destination],
    activity: &Activity,
    until_ns: u64,
) -> Vec<DestinationSecond> {
    let mut rows = Vec::new();
    for d in dests {
        for (second, [confirmed, publish_failed, received, consume_failed]) in activity
            .per_second(d.index, until_ns)
            .into_iter()
            .enumerate()
        {
            rows.push(DestinationSecond {
                backend: label.to_string(),
                destination: d.name.clone(),
                second: second as u64,
                confirmed,
                publish_failed,
                received,
                consume_failed,
            });
        }
    }
    rows
}
