//! The fault runner: at each fault's time, resolve its target from the live topology, act on
//! it through the launcher (or pull a consumer's kill switch), watch for the new leader and
//! the redeliveries, and restart the node when the scenario says. It runs beside the load and
//! records what it saw; `analysis` turns that into faults.csv rows once the load is over.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::control::{NodeControl, Resumed};
use crate::backend::{Backend, Destination, DestinationPlacement, Topology};
use crate::clock::sleep_until_ns;
use crate::clock::Clock;
use crate::load::consumer::{Abandoned, KillSwitch};
use crate::metrics::ledger::Ledger;
use crate::scenario::{FaultAction, FaultSpec, Target};

/// How often the topology is asked for a new leader.
const TOPOLOGY_POLL: Duration = Duration::from_millis(200);
/// How long one topology request may take.
const TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(5);
/// Times the topology is asked for before a node fault is given up (`topology_to_aim`).
const TOPOLOGY_ATTEMPTS: u32 = 3;
const TOPOLOGY_RETRY_WAIT: Duration = Duration::from_millis(300);
/// How often the ledger is asked whether abandoned messages came back.
const REDELIVERY_POLL: Duration = Duration::from_millis(10);
/// How long a pulled consumer may take to die (one that holds first may hold for `HOLD_MAX`).
const CONSUMER_DEATH_TIMEOUT: Duration =
    Duration::from_secs(5 + crate::scenario::faults::HOLD_MAX.as_secs());
/// How long a killed consumer may receive nothing before the kill goes to whichever consumer of
/// its destination receives next (its group's single active consumer, when it is a standby).
const CONSUMER_IDLE_WIDEN: Duration = Duration::from_secs(1);

/// Faults in progress, by action: counted up when a fault starts and down when its window
/// closes (the live metrics read it once per interval).
#[derive(Debug, Default)]
pub struct ActiveFaults([std::sync::atomic::AtomicU32; 4]);

impl ActiveFaults {
    fn slot(&self, a: FaultAction) -> &std::sync::atomic::AtomicU32 {
        let i = FaultAction::ALL.iter().position(|x| *x == a).unwrap_or(0);
        &self.0[i]
    }

    /// The count of each action.
    pub fn counts(&self) -> [(FaultAction, u32); 4] {
        FaultAction::ALL.map(|a| (a, self.slot(a).load(std::sync::atomic::Ordering::Relaxed)))
    }
}

/// What the runner saw of one fault.
#[derive(Debug, Clone)]
pub struct Observation {
    pub index: usize,
    pub spec: FaultSpec,
    /// When the fault was injected (harness clock).
    pub at_ns: u64,
    pub node: Option<String>,
    /// Destination indexes the fault hit (led by the node; the consumer's destination).
    pub affected: Vec<usize>,
    pub leader_before: Option<String>,
    pub new_leader: Option<String>,
    pub leader_seen_ns: Option<u64>,
    pub restart_ns: Option<u64>,
    pub rejoined_ns: Option<u64>,
    /// When the fault's window closed on the timeline.
    pub end_ns: Option<u64>,
    pub abandoned: Option<Abandoned>,
    pub reprocessed: u64,
    pub redelivered_first_ns: Option<u64>,
    pub redelivered_last_ns: Option<u64>,
    /// kill-consumer: which consumers received what it held, e.g. "consumer:1=500".
    pub redelivered_to: String,
    pub error: Option<String>,
    /// How the node came back (faults.csv `recovery`).
    pub recovery: Option<String>,
}

impl Observation {
    fn new(index: usize, spec: &FaultSpec, at_ns: u64) -> Self {
        Observation {
            index,
            spec: spec.clone(),
            at_ns,
            node: None,
            affected: Vec::new(),
            leader_before: None,
            new_leader: None,
            leader_seen_ns: None,
            restart_ns: None,
            rejoined_ns: None,
            end_ns: None,
            abandoned: None,
            reprocessed: 0,
            redelivered_first_ns: None,
            redelivered_last_ns: None,
            redelivered_to: String::new(),
            error: None,
            recovery: None,
        }
    }

    fn fail(&mut self, message: impl Into<String>) {
        let m = message.into();
        self.error = Some(match self.error.take() {
            Some(prev) => format!("{prev}; {m}"),
            None => format!("error: {m}"),
        });
    }
}

/// Everything the runner needs from the backend run.
pub struct FaultRunner {
    /// (position in the scenario, fault), in time order.
    pub faults: Vec<(usize, FaultSpec)>,
    pub backend: Arc<dyn Backend>,
    pub dests: Vec<Destination>,
    pub clock: Arc<dyn Clock>,
    pub measure_start_ns: u64,
    pub measure_end_ns: u64,
    /// By consumer id: its destination's index and its kill switch.
    pub switches: Vec<(usize, Arc<KillSwitch>)>,
    pub ledger: Arc<Ledger>,
    /// Who receives what a killed consumer held (started by the consumer as it dies).
    pub watch: Arc<crate::load::watch::RedeliveryWatch>,
    /// One line per step, for the live progress output.
    pub notices: mpsc::UnboundedSender<String>,
    /// The run's Ctrl-C: once pulled, no node is restarted (the clusters are being torn down).
    pub cancel: watch::Receiver<bool>,
    /// Faults in progress, for the live metrics.
    pub active: Arc<ActiveFaults>,
}

impl FaultRunner {
    fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    fn say(&self, line: String) {
        let _ = self.notices.send(line);
    }

    async fn topology(&self) -> Result<Topology, String> {
        match tokio::time::timeout(TOPOLOGY_TIMEOUT, self.backend.topology(&self.dests)).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no topology within {TOPOLOGY_TIMEOUT:?}")),
        }
    }

    /// The topology a node fault is aimed with. A cluster that is slow to answer (a host
    /// saturated by the load: every node's CLUSTER NODES timed out once in a test on a busy
    /// machine) is asked again, up to `TOPOLOGY_ATTEMPTS` times, before the fault is given up:
    /// what is measured is the fault, not whether the cluster answered the first question.
    async fn topology_to_aim(&self) -> Result<Topology, String> {
        first_ok(TOPOLOGY_ATTEMPTS, TOPOLOGY_RETRY_WAIT, || self.topology()).await
    }

    /// Sleep until `ns`; false if the run stopped first.
    async fn wait_until(&self, ns: u64, stop: &mut watch::Receiver<bool>) -> bool {
        if *stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = sleep_until_ns(self.clock.as_ref(), ns) => !*stop.borrow(),
            _ = stop.changed() => false,
        }
    }

    /// Run every fault. Node faults run in time order through the launcher (a restart can
    /// take a while); consumer faults run beside them on their own times. Returns what was
    /// seen, in time order, also for faults cut short by the end of the run.
    pub async fn run(
        mut self,
        control: Option<&mut (dyn NodeControl + '_)>,
        stop: watch::Receiver<bool>,
    ) -> Vec<Observation> {
        let (consumers, nodes): (Vec<_>, Vec<_>) = std::mem::take(&mut self.faults)
            .into_iter()
            .partition(|(_, f)| f.action == FaultAction::KillConsumer);
        let (mut seen, more) = tokio::join!(
            self.run_in_order(nodes, control, stop.clone()),
            self.run_in_order(consumers, None, stop)
        );
        seen.extend(more);
        seen.sort_by_key(|o| o.at_ns);
        seen
    }

    async fn run_in_order(
        &self,
        faults: Vec<(usize, FaultSpec)>,
        mut control: Option<&mut (dyn NodeControl + '_)>,
        mut stop: watch::Receiver<bool>,
    ) -> Vec<Observation> {
        let mut seen = Vec::new();
        let times: Vec<u64> = faults
            .iter()
            .map(|(_, f)| self.measure_start_ns + f.at.as_nanos() as u64)
            .collect();
        for (k, (index, spec)) in faults.iter().enumerate() {
            if !self.wait_until(times[k], &mut stop).await {
                break;
            }
            let next_ns = times.get(k + 1).copied().unwrap_or(self.measure_end_ns);
            let mut obs = Observation::new(*index, spec, self.now());
            let active = self.active.slot(spec.action);
            active.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match spec.action {
                FaultAction::KillConsumer => self.kill_consumer(&mut obs, next_ns, &mut stop).await,
                FaultAction::Kill
                | FaultAction::Stop
                | FaultAction::Pause
                | FaultAction::Partition => match control.as_deref_mut() {
                    Some(c) => self.node_fault(c, &mut obs, next_ns, &mut stop).await,
                    None => obs.fail(
                        "this cluster was not started by brokerbench: it cannot act on its nodes",
                    ),
                },
            }
            active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            if obs.end_ns.is_none() {
                obs.end_ns = Some(self.now());
            }
            seen.push(obs);
        }
        seen
    }

    /// Where destination `d` lives in `topo`.
    fn placement<'t>(&self, topo: &'t Topology, d: usize) -> Option<&'t DestinationPlacement> {
        let dest = self.dests.get(d)?;
        topo.destinations.iter().find(|p| p.name == dest.name)
    }

    /// The node leading destination `d` in `topo`.
    fn leader_of(&self, topo: &Topology, d: usize) -> Option<String> {
        self.placement(topo, d)?.leader.clone()
    }

    /// Pick the node for a node fault from the topology.
    fn resolve(
        &self,
        target: &Target,
        topo: &Topology,
        control: &dyn NodeControl,
    ) -> Result<String, String> {
        let placement = |d: usize| {
            self.placement(topo, d)
                .ok_or_else(|| format!("the topology does not show destination {d}"))
        };
        let running: Vec<String> = control
            .node_names()
            .into_iter()
            .filter(|n| control.is_running(n))
            .collect();
        match target {
            Target::LeaderOf(d) => placement(*d)?
                .leader
                .clone()
                .ok_or_else(|| format!("destination {d} has no leader right now")),
            Target::ReplicaOf(d) => placement(*d)?
                .replicas
                .iter()
                .find(|r| running.contains(r))
                .cloned()
                .ok_or_else(|| format!("destination {d} has no running replica")),
            Target::Node(n) => {
                if control.node_names().contains(n) {
                    Ok(n.clone())
                } else {
                    Err(format!(
                        "no node named {n}; nodes: {}",
                        control.node_names().join(", ")
                    ))
                }
            }
            Target::Random => {
                if running.is_empty() {
                    return Err("no node is running".into());
                }
                let pick = crate::clock::random_id() as usize % running.len();
                Ok(running[pick].clone())
            }
            Target::Consumer(_) => Err("a consumer is not a node".into()),
        }
    }

    async fn node_fault(
        &self,
        control: &mut (dyn NodeControl + '_),
        obs: &mut Observation,
        next_ns: u64,
        stop: &mut watch::Receiver<bool>,
    ) {
        let spec = obs.spec.clone();
        let topo = match self.topology_to_aim().await {
            Ok(t) => t,
            Err(e) => return obs.fail(format!("read the topology: {e}")),
        };
        let node = match self.resolve(&spec.target, &topo, &*control) {
            Ok(n) => n,
            Err(e) => return obs.fail(e),
        };
        // The destinations this node leads are the ones hit; the watched one is the target's
        // destination, or the first hit one.
        obs.affected = (0..self.dests.len())
            .filter(|&d| self.leader_of(&topo, d).as_deref() == Some(node.as_str()))
            .collect();
        let watched = match spec.target {
            Target::LeaderOf(d) | Target::ReplicaOf(d) => Some(d),
            _ => obs.affected.first().copied(),
        };
        obs.leader_before = watched.and_then(|d| self.leader_of(&topo, d));
        obs.node = Some(node.clone());
        obs.at_ns = self.now();
        self.say(format!(
            "fault {}: {} {node}",
            obs.index,
            spec.action.as_str()
        ));
        let done = match spec.action {
            FaultAction::Pause => control.pause(&node).await,
            FaultAction::Partition => control.partition(&node),
            _ => control.kill(&node, spec.action == FaultAction::Stop).await,
        };
        if let Err(e) = done {
            return obs.fail(format!("{} {node}: {e}", spec.action.as_str()));
        }
        let restart_ns = spec.restart_after.map(|r| obs.at_ns + r.as_nanos() as u64);
        // Watch for a new leader of the hit destination, until the restart or the next fault.
        let watch_until = restart_ns.unwrap_or(next_ns).min(next_ns);
        if let Some(d) = watched.filter(|_| obs.leader_before.as_deref() == Some(node.as_str())) {
            loop {
                if let Ok(t) = self.topology().await {
                    if let Some(l) = self.leader_of(&t, d).filter(|l| *l != node) {
                        obs.leader_seen_ns = Some(self.now());
                        self.say(format!(
                            "fault {}: {l} now leads {}",
                            obs.index, self.dests[d].name
                        ));
                        obs.new_leader = Some(l);
                        break;
                    }
                }
                let next_poll = self.now() + TOPOLOGY_POLL.as_nanos() as u64;
                if next_poll >= watch_until || !self.wait_until(next_poll, stop).await {
                    break;
                }
            }
        }
        let Some(restart_ns) = restart_ns else {
            return;
        };
        // The restart happens even if the load has ended: the next backend needs the node.
        if !*stop.borrow() {
            self.wait_until(restart_ns, stop).await;
        }
        obs.end_ns = Some(self.now());
        let mut cancel = self.cancel.clone();
        if *cancel.borrow() {
            // A paused node is left to the cleanup, whose stop resumes it (OwnedProcess).
            return obs.fail(format!("interrupted before restarting {node}"));
        }
        obs.restart_ns = Some(self.now());
        let verb = match spec.action {
            FaultAction::Pause => "resuming",
            FaultAction::Partition => "healing the partition of",
            _ => "restarting",
        };
        self.say(format!("fault {}: {verb} {node}", obs.index));
        let restarted = tokio::select! {
            r = async {
                // Back when the whole cluster is healthy again, restarted if it does not heal.
                let (back, done) = match spec.action {
                    FaultAction::Pause => ("resumed", control.resume_whole(&node).await?),
                    FaultAction::Partition => ("healed", control.join_whole(&node).await?),
                    _ => {
                        obs.recovery = Some("restarted".into());
                        return control.restart(&node).await;
                    }
                };
                match done {
                    Resumed::ByItself => obs.recovery = Some(back.into()),
                    Resumed::Restarted(why) => {
                        self.say(format!(
                            "fault {}: the cluster did not heal after it was {back} ({node}); restarted it",
                            obs.index
                        ));
                        obs.recovery = Some(format!(
                            "{back}, then restarted: the cluster did not heal by itself ({why})"
                        ));
                    }
                }
                Ok(())
            } => r,
            _ = cancel.changed() => return obs.fail(format!("interrupted while {verb} {node}")),
        };
        match restarted {
            Ok(()) => {
                obs.rejoined_ns = Some(self.now());
                self.say(format!("fault {}: {node} is back", obs.index));
            }
            Err(e) => obs.fail(format!("restart {node}: {e}")),
        }
    }

    async fn kill_consumer(
        &self,
        obs: &mut Observation,
        next_ns: u64,
        stop: &mut watch::Receiver<bool>,
    ) {
        let Target::Consumer(c) = obs.spec.target else {
            return obs.fail("kill-consumer needs a consumer target");
        };
        let Some((dest, switch)) = self.switches.get(c) else {
            return obs.fail(format!("there is no consumer {c}"));
        };
        obs.node = Some(format!("consumer:{c}"));
        obs.affected.push(*dest);
        self.say(format!("fault {}: killing consumer {c}", obs.index));
        let hold = obs.spec.hold.unwrap_or(0);
        switch.pull_holding(hold);
        let mut pulled = vec![c];
        let widen_ns = self.now() + CONSUMER_IDLE_WIDEN.as_nanos() as u64;
        let deadline = self.now() + CONSUMER_DEATH_TIMEOUT.as_nanos() as u64;
        let died = loop {
            if let Some(d) = pulled
                .iter()
                .find_map(|&k| self.switches[k].1.report().map(|r| (k, r)))
            {
                break Some(d);
            }
            if pulled.len() == 1 && self.now() >= widen_ns {
                // Consumer c receives nothing: a standby of a single active consumer group
                // (the native stream). The kill goes to whoever of its destination receives.
                let group: Vec<usize> = (0..self.switches.len())
                    .filter(|&k| self.switches[k].0 == *dest)
                    .collect();
                for &k in &group {
                    let others = group
                        .iter()
                        .filter(|&&o| o != k)
                        .map(|&o| self.switches[o].1.clone())
                        .collect();
                    self.switches[k].1.pull_with(others, hold);
                    if k != c {
                        pulled.push(k);
                    }
                }
                if pulled.len() > 1 {
                    self.say(format!(
                        "fault {}: consumer {c} received nothing for {CONSUMER_IDLE_WIDEN:?}; \
                         killing whichever consumer of its destination receives next",
                        obs.index
                    ));
                }
            }
            let next = self.now() + REDELIVERY_POLL.as_nanos() as u64;
            if next >= deadline || !self.wait_until(next, stop).await {
                break None;
            }
        };
        for &k in &pulled {
            if died.as_ref().is_none_or(|(d, _)| *d != k) {
                self.switches[k].1.unpull();
            }
        }
        let Some((c, report)) = died else {
            return obs.fail(format!(
                "consumer {c} did not stop within {CONSUMER_DEATH_TIMEOUT:?}"
            ));
        };
        obs.node = Some(format!("consumer:{c}"));
        obs.at_ns = report.at_ns;
        let held = report.messages.clone();
        self.say(format!(
            "fault {}: consumer {c} died holding {} unacked messages",
            obs.index,
            held.len()
        ));
        obs.abandoned = Some(report);
        // Watch the abandoned messages come back through another consumer, until the next
        // fault (or, for the last fault, the end of the drain: stop).
        let mut pending = held;
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|(p, s)| !self.ledger.is_received(*p, *s));
            let now = self.now();
            if pending.len() < before {
                obs.reprocessed += (before - pending.len()) as u64;
                obs.redelivered_first_ns.get_or_insert(now);
                obs.redelivered_last_ns = Some(now);
            }
            if pending.is_empty() {
                break;
            }
            let next = now + REDELIVERY_POLL.as_nanos() as u64;
            let open_until = if next_ns < self.measure_end_ns {
                next_ns
            } else {
                u64::MAX
            };
            if next >= open_until || !self.wait_until(next, stop).await {
                break;
            }
        }
        obs.end_ns = obs.redelivered_last_ns.or(Some(self.now()));
        let by_consumer = self.watch.stop();
        let watched: u64 = by_consumer.values().sum();
        let got = crate::load::watch::describe(&by_consumer);
        let before = obs
            .abandoned
            .as_ref()
            .map_or(0, |a| a.messages.len() as u64);
        // Messages another consumer had before this one died (claimed while it held them).
        let early = obs.reprocessed.saturating_sub(watched).min(before);
        obs.redelivered_to = match (got.is_empty(), early) {
            (_, 0) => got,
            (true, n) => format!("before the kill={n}"),
            (false, n) => format!("{got}; before the kill={n}"),
        };
    }
}

/// The first success of up to `attempts` calls of `f`, `wait` apart; else every error, numbered.
async fn first_ok<T, F, Fut>(attempts: u32, wait: Duration, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut errors = Vec::new();
    for attempt in 1..=attempts {
        match f().await {
            Ok(t) => return Ok(t),
            Err(e) => errors.push(format!("attempt {attempt}: {e}")),
        }
        if attempt < attempts {
            tokio::time::sleep(wait).await;
        }
    }
    Err(errors.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_cluster_is_asked_again_before_a_fault_is_given_up() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let answer_on = |n: u32| {
            let calls = &calls;
            move || {
                let i = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                async move {
                    if i >= n {
                        Ok(i)
                    } else {
                        Err(format!("no answer {i}"))
                    }
                }
            }
        };
        let wait = Duration::from_millis(1);
        assert_eq!(first_ok(3, wait, answer_on(3)).await, Ok(3));
        calls.store(0, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            first_ok(3, wait, answer_on(9)).await,
            Err("attempt 1: no answer 1; attempt 2: no answer 2; attempt 3: no answer 3".into())
        );
        calls.store(0, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(first_ok(3, wait, answer_on(1)).await, Ok(1));
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
