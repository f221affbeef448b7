//! One request (or pipeline) to one node, with a time limit, and reading INFO fields.

use std::future::Future;
use std::time::Duration;

/// Limit for one request to one node.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// One command to one node, with a time limit.
pub(super) async fn call<T: redis::FromRedisValue>(
    addr: &str,
    cmd: &redis::Cmd,
) -> Result<T, String> {
    timed(async {
        let mut con = connect(addr).await?;
        cmd.query_async(&mut con).await.map_err(|e| e.to_string())
    })
    .await
}

/// Several commands to one node in one round trip, with a time limit.
pub(super) async fn call_pipe<T: redis::FromRedisValue>(
    addr: &str,
    pipe: &redis::Pipeline,
) -> Result<T, String> {
    timed(async {
        let mut con = connect(addr).await?;
        pipe.query_async(&mut con).await.map_err(|e| e.to_string())
    })
    .await
}

async fn connect(addr: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(format!("redis://{addr}")).map_err(|e| e.to_string())?;
    // redis-rs 1.x gives async connections a 500 ms response timeout by default: this module's
    // requests have CALL_TIMEOUT in all (a CONFIG REWRITE on a busy node can take longer).
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CALL_TIMEOUT))
        .set_response_timeout(Some(CALL_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| e.to_string())
}

async fn timed<T>(request: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, request).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

/// The value of `field:value` in INFO or CLUSTER INFO text.
pub(super) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.trim_end().strip_prefix(field)?.strip_prefix(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_info_fields() {
        let info = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nmaster_link_down_since_seconds:-1\r\n";
        assert_eq!(info_field(info, "role"), Some("slave"));
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "master_link"), None);
        assert_eq!(
            info_field("cluster_state:fail\n", "cluster_state"),
            Some("fail")
        );
    }
}
