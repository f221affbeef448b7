//! `brokerbench produce` and `consume`: a producer or a consumer on its own, against a cluster
//! that is already up.

use super::{cancellation, Failure};
use crate::cli::TutorialArgs;
use crate::tutorial::{ProduceOptions, ProduceTarget};

const IS_IT_UP: &str =
    "(is the cluster up? `make redis-cluster` starts one on 127.0.0.1:7001-7006)";

pub async fn produce(a: TutorialArgs) -> Result<(), Failure> {
    let stop = cancellation();
    let target = match &a.rabbitmq {
        Some(dir) => ProduceTarget::Rabbitmq {
            dir: dir.clone(),
            queue: a.stream.clone(),
        },
        None => ProduceTarget::Redis {
            seed: a.seed.clone(),
            stream: a.stream.clone(),
        },
    };
    let options = ProduceOptions {
        rate: a.rate,
        size: a.size,
        max_in_flight: a.max_in_flight,
        duration: a.duration,
        count: a.count,
    };
    let done = match a.count.filter(|_| a.floor) {
        Some(n) => {
            crate::client_floor::produce_floor(
                &target,
                n,
                a.size,
                a.max_in_flight,
                a.duration,
                stop,
            )
            .await
        }
        None => crate::tutorial::produce(&target, options, stop).await,
    };
    done.map_err(|e| Failure::Failed(format!("{e}\n{IS_IT_UP}")))
}

pub async fn consume(a: TutorialArgs) -> Result<(), Failure> {
    let stop = cancellation();
    crate::tutorial::consume(&a.seed, &a.stream, a.duration, stop)
        .await
        .map_err(|e| Failure::Failed(format!("{e}\n{IS_IT_UP}")))
}
