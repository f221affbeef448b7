//! What one XADD's reply means: its outcome (confirmed, refused by the cluster, another error
//! reply, or unknown), where a MOVED sends the slot, and where the outcome goes (`Sink`).

use std::sync::Arc;

use ::redis::{ServerError, ServerErrorKind, Value};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::refused_by_the_cluster;
use super::resp::Reply;
use crate::backend::OpError;

pub(super) type Outcome = Result<(), OpError>;

/// A refusal by the cluster (see `refused_by_the_cluster`), worth resending.
pub(super) fn is_refusal(e: &OpError) -> bool {
    matches!(e, OpError::Unavailable(_))
}

/// The outcome of one XADD from its own scanned reply.
pub(super) fn xadd_reply_outcome(r: &Reply) -> Outcome {
    match r {
        Reply::Text => Ok(()),
        Reply::Error(v) => xadd_outcome(v),
        Reply::Nil => Err(OpError::Broker("XADD answered nil".into())),
        Reply::Int(n) => Err(OpError::Protocol(format!("XADD answered {n}"))),
        Reply::Other(what) => Err(OpError::Protocol(format!("XADD answered {what}"))),
    }
}

/// The outcome of one XADD from its own reply.
pub(super) fn xadd_outcome(v: &Value) -> Outcome {
    match v {
        // The new entry's id.
        Value::BulkString(_) | Value::SimpleString(_) | Value::VerbatimString { .. } => Ok(()),
        // Redis refused this XADD and did not run it.
        Value::ServerError(e) => {
            let text = format!("{} {}", e.code(), e.details().unwrap_or_default());
            Err(match e.kind() {
                Some(kind) if refused_by_the_cluster(kind) => OpError::Unavailable(text),
                _ => OpError::Broker(text),
            })
        }
        Value::Nil => Err(OpError::Broker("XADD answered nil".into())),
        // Not an XADD reply: whether it ran is unknown.
        other => Err(OpError::Protocol(format!("XADD answered {other:?}"))),
    }
}

/// The new master named by a MOVED reply (`MOVED <slot> <host>:<port>`; an empty host means the
/// one already in use, `current`).
pub(super) fn moved_to(e: &ServerError, current: Option<&str>) -> Option<String> {
    if e.kind() != Some(ServerErrorKind::Moved) {
        return None;
    }
    let address = e.details()?.split_ascii_whitespace().nth(1)?;
    let (host, port) = address.rsplit_once(':')?;
    if host.is_empty() {
        let (current_host, _) = current?.rsplit_once(':')?;
        return Some(format!("{current_host}:{port}"));
    }
    Some(address.to_string())
}

/// Where one message's outcome goes.
pub(super) enum Sink {
    /// `send`: its own confirm.
    One(oneshot::Sender<Outcome>),
    /// `send_batch`: its place in the batch's outcomes.
    Batch(Arc<BatchSink>, usize),
}

/// The outcomes of one `send_batch`, sent once the last is in.
pub(super) struct BatchSink {
    state: Mutex<BatchState>,
}

struct BatchState {
    outcomes: Vec<Option<Outcome>>,
    remaining: usize,
    tx: Option<oneshot::Sender<Vec<Outcome>>>,
}

impl BatchSink {
    pub(super) fn new(n: usize, tx: oneshot::Sender<Vec<Outcome>>) -> Arc<Self> {
        Arc::new(BatchSink {
            state: Mutex::new(BatchState {
                outcomes: (0..n).map(|_| None).collect(),
                remaining: n,
                tx: Some(tx),
            }),
        })
    }
}

impl Sink {
    pub(super) fn resolve(self, outcome: Outcome) {
        match self {
            Sink::One(tx) => {
                let _ = tx.send(outcome);
            }
            Sink::Batch(b, i) => {
                let mut st = b.state.lock();
                if st.outcomes[i].replace(outcome).is_none() {
                    st.remaining -= 1;
                }
                if st.remaining == 0 {
                    if let Some(tx) = st.tx.take() {
                        let all = st.outcomes.drain(..).map(|o| o.unwrap_or(Ok(()))).collect();
                        let _ = tx.send(all);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server error reply as the parser builds it.
    fn error_reply(line: &str) -> Value {
        let raw = format!("-{line}\r\n");
        ::redis::parse_redis_value(raw.as_bytes()).expect("an error reply")
    }

    #[test]
    fn each_xadd_reply_is_its_own_outcome() {
        assert!(xadd_outcome(&Value::BulkString(b"1700000000000-0".to_vec())).is_ok());
        assert!(xadd_reply_outcome(&Reply::Text).is_ok());
        let oom = xadd_outcome(&error_reply(
            "OOM command not allowed when used memory > 'maxmemory'.",
        ))
        .expect_err("OOM");
        assert_eq!(oom.kind(), "broker");
        assert!(
            oom.is_definite() && oom.to_string().contains("OOM"),
            "{oom}"
        );
        for refusal in [
            "MOVED 3999 127.0.0.1:7002",
            "CLUSTERDOWN The cluster is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "LOADING Redis is loading the dataset in memory",
        ] {
            let e = xadd_reply_outcome(&Reply::Error(error_reply(refusal))).expect_err(refusal);
            assert_eq!(e.kind(), "unavailable", "{refusal}");
            assert!(e.is_definite() && is_refusal(&e), "{refusal}");
        }
        let wrongtype = xadd_outcome(&error_reply(
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ))
        .expect_err("WRONGTYPE");
        assert!(wrongtype.is_definite() && !is_refusal(&wrongtype));
        // Something XADD never answers: the command may have run.
        assert!(!xadd_outcome(&Value::Int(1)).expect_err("int").is_definite());
        assert!(!xadd_reply_outcome(&Reply::Int(1))
            .expect_err("int")
            .is_definite());
        assert!(xadd_reply_outcome(&Reply::Nil)
            .expect_err("nil")
            .is_definite());
    }

    #[test]
    fn moved_names_the_new_master() {
        let Value::ServerError(moved) = error_reply("MOVED 3999 127.0.0.1:7002") else {
            panic!("not a server error");
        };
        assert_eq!(
            moved_to(&moved, Some("127.0.0.1:7001")).as_deref(),
            Some("127.0.0.1:7002")
        );
        let Value::ServerError(bare) = error_reply("MOVED 3999 :7003") else {
            panic!("not a server error");
        };
        assert_eq!(
            moved_to(&bare, Some("10.0.0.1:7001")).as_deref(),
            Some("10.0.0.1:7003")
        );
        let Value::ServerError(down) = error_reply("CLUSTERDOWN The cluster is down") else {
            panic!("not a server error");
        };
        assert_eq!(moved_to(&down, Some("127.0.0.1:7001")), None);
    }

    #[tokio::test]
    async fn a_batch_resolves_once_every_outcome_is_in() {
        let (tx, rx) = oneshot::channel();
        let sink = BatchSink::new(3, tx);
        Sink::Batch(sink.clone(), 2).resolve(Err(OpError::Timeout("t".into())));
        Sink::Batch(sink.clone(), 0).resolve(Ok(()));
        Sink::Batch(sink, 1).resolve(Ok(()));
        let all = rx.await.expect("resolved");
        assert!(all[0].is_ok() && all[1].is_ok());
        assert_eq!(all[2].clone().expect_err("timeout").kind(), "timeout");
        // A batch whose messages are dropped unresolved (the writer stopped) ends in an error.
        let (tx, rx) = oneshot::channel::<Vec<Outcome>>();
        drop(Sink::Batch(BatchSink::new(1, tx), 0));
        assert!(rx.await.is_err());
    }
}
