//! prometheus.csv: the broker-side series of a run (and the harness's own rates beside them),
//! asked of the run's Prometheus (`/api/v1/query_range`) once the backends are done.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::{JOB_BROKERBENCH, JOB_RABBITMQ, JOB_REDIS};
use super::MonitoringError;

/// The file in the results folder.
pub const CSV_FILE: &str = "prometheus.csv";

/// One query whose result prometheus.csv keeps. `{w}` in `promql` is the rate window (4 scrape
/// intervals: a rate needs two samples, with room for a late one).
#[derive(Debug, Clone, Copy)]
pub struct BrokerQuery {
    pub name: &'static str,
    /// The job whose series it reads.
    pub job: &'static str,
    pub promql: &'static str,
    pub unit: &'static str,
}

const fn q(
    name: &'static str,
    job: &'static str,
    promql: &'static str,
    unit: &'static str,
) -> BrokerQuery {
    BrokerQuery {
        name,
        job,
        promql,
        unit,
    }
}

/// What prometheus.csv holds; each result series is named by its one label (backend,
/// redis_node or instance).
pub const QUERIES: [BrokerQuery; 9] = [
    q(
        "brokerbench_sent_per_s",
        JOB_BROKERBENCH,
        "sum by (backend) (rate(brokerbench_sent_total[{w}]))",
        "msg/s",
    ),
    q(
        "brokerbench_received_per_s",
        JOB_BROKERBENCH,
        "sum by (backend) (rate(brokerbench_received_total[{w}]))",
        "msg/s",
    ),
    q(
        "redis_commands_per_s",
        JOB_REDIS,
        "sum by (redis_node) (rate(redis_commands_processed_total[{w}]))",
        "commands/s",
    ),
    q(
        "redis_memory_used_bytes",
        JOB_REDIS,
        "sum by (redis_node) (redis_memory_used_bytes)",
        "bytes",
    ),
    q(
        "redis_connected_clients",
        JOB_REDIS,
        "sum by (redis_node) (redis_connected_clients)",
        "clients",
    ),
    q(
        "rabbitmq_received_per_s",
        JOB_RABBITMQ,
        "sum by (instance) (rate(rabbitmq_global_messages_received_total[{w}]))",
        "msg/s",
    ),
    q(
        "rabbitmq_delivered_per_s",
        JOB_RABBITMQ,
        "sum by (instance) (rate(rabbitmq_global_messages_delivered_total[{w}]))",
        "msg/s",
    ),
    q(
        "rabbitmq_messages_ready",
        JOB_RABBITMQ,
        "sum by (instance) (rabbitmq_queue_messages_ready)",
        "messages",
    ),
    q(
        "rabbitmq_resident_memory_bytes",
        JOB_RABBITMQ,
        "sum by (instance) (rabbitmq_process_resident_memory_bytes)",
        "bytes",
    ),
];

impl BrokerQuery {
    /// The PromQL with the rate window of a scrape interval.
    pub fn expr(&self, scrape: Duration) -> String {
        let w = format!("{}ms", (scrape * 4).as_millis().max(1));
        self.promql.replace("{w}", &w)
    }
}

/// One row of prometheus.csv: one sample of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromRow {
    /// The query's name (`QUERIES`).
    pub query: String,
    pub job: String,
    /// The series: a backend label, a Redis node or a RabbitMQ node's prometheus endpoint.
    pub series: String,
    /// Seconds since the run's monitoring started.
    pub t_s: f64,
    pub unix_s: f64,
    pub value: f64,
    pub unit: String,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Matrix>,
}

#[derive(Deserialize)]
struct Matrix {
    result: Vec<MatrixSeries>,
}

#[derive(Deserialize)]
struct MatrixSeries {
    metric: std::collections::BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// Ask Prometheus on `port` for one range query (`query_range`, a step of `step`), as rows of
/// `query`.
pub async fn query_range(
    http: &reqwest::Client,
    port: u16,
    query: &BrokerQuery,
    expr: &str,
    (start, end, step): (f64, f64, Duration),
) -> Result<Vec<PromRow>, MonitoringError> {
    let failed = |message: String| MonitoringError::Query {
        port,
        what: query.name.to_string(),
        message,
    };
    let url = format!("http://127.0.0.1:{port}/api/v1/query_range");
    let step = format!("{:.3}", step.as_secs_f64());
    let answer: Answer = http
        .get(&url)
        .query(&[
            ("query", expr.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", step),
        ])
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?
        .json()
        .await
        .map_err(|e| failed(format!("unreadable answer: {e}")))?;
    rows_of(answer, query, start).map_err(failed)
}

/// The rows of a `query_range` answer; its error if it is one.
fn rows_of(answer: Answer, query: &BrokerQuery, start: f64) -> Result<Vec<PromRow>, String> {
    if answer.status != "success" {
        return Err(answer.error.unwrap_or(answer.status));
    }
    let mut rows = Vec::new();
    for s in answer.data.map(|d| d.result).unwrap_or_default() {
        let series = s.metric.values().next().cloned().unwrap_or_default();
        for (unix_s, v) in s.values {
            rows.push(PromRow {
                query: query.name.to_string(),
                job: query.job.to_string(),
                series: series.clone(),
                t_s: unix_s - start,
                unix_s,
                value: v.parse().unwrap_or(f64::NAN),
                unit: query.unit.to_string(),
            });
        }
    }
    Ok(rows)
}

/// Every query of `QUERIES` whose job Prometheus scraped, from `start` to `end` (unix seconds).
pub async fn broker_series(
    port: u16,
    jobs: &[&str],
    start: f64,
    end: f64,
    scrape: Duration,
) -> Result<Vec<PromRow>, MonitoringError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| MonitoringError::Query {
            port,
            what: "a client".into(),
            message: e.to_string(),
        })?;
    let mut rows = Vec::new();
    for query in QUERIES.iter().filter(|q| jobs.contains(&q.job)) {
        let expr = query.expr(scrape);
        rows.extend(query_range(&http, port, query, &expr, (start, end, scrape)).await?);
    }
    Ok(rows)
}

/// Poll Prometheus on `port` until every target has been scraped after `end` (unix seconds),
/// for at most `limit`; whether they were.
pub async fn wait_for_scrape(port: u16, end: f64, limit: Duration) -> bool {
    #[derive(Deserialize)]
    struct Vector {
        data: VectorData,
    }
    #[derive(Deserialize)]
    struct VectorData {
        result: Vec<VectorSample>,
    }
    #[derive(Deserialize)]
    struct VectorSample {
        value: (f64, String),
    }
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    let url = format!("http://127.0.0.1:{port}/api/v1/query");
    crate::cluster::process::wait_until(limit, Duration::from_millis(100), || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let asked = http
                .get(&url)
                .query(&[("query", "min(timestamp(up))")])
                .send();
            let Ok(answer) = asked.await else {
                return false;
            };
            let Ok(v) = answer.json::<Vector>().await else {
                return false;
            };
            v.data
                .result
                .first()
                .and_then(|s| s.value.1.parse::<f64>().ok())
                .is_some_and(|t| t >= end)
        }
    })
    .await
}

/// Write prometheus.csv in `dir`.
pub fn write_csv(dir: &Path, rows: &[PromRow]) -> Result<(), MonitoringError> {
    let path = dir.join(CSV_FILE);
    let io = |e: csv::Error| MonitoringError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    };
    let mut w = csv::Writer::from_path(&path).map_err(io)?;
    for r in rows {
        w.serialize(r).map_err(io)?;
    }
    w.flush().map_err(|source| MonitoringError::Io {
        path: path.clone(),
        source,
    })
}

/// prometheus.csv of a results folder (empty when it has none).
pub fn read_csv(dir: &Path) -> Vec<PromRow> {
    let Ok(mut r) = csv::Reader::from_path(dir.join(CSV_FILE)) else {
        return Vec::new();
    };
    r.deserialize().filter_map(Result::ok).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_window_is_four_scrapes() {
        let e = QUERIES[0].expr(Duration::from_secs(1));
        assert_eq!(e, "sum by (backend) (rate(brokerbench_sent_total[4000ms]))");
    }

    #[test]
    fn the_csv_round_trips_with_its_header() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rows = vec![PromRow {
            query: "redis_commands_per_s".into(),
            job: "redis".into(),
            series: "127.0.0.1:7541".into(),
            t_s: 1.0,
            unix_s: 1_790_000_001.0,
            value: 2034.5,
            unit: "commands/s".into(),
        }];
        write_csv(dir.path(), &rows).expect("write");
        let text = std::fs::read_to_string(dir.path().join(CSV_FILE)).expect("read");
        assert_eq!(
            text.lines().next(),
            Some("query,job,series,t_s,unix_s,value,unit")
        );
        assert_eq!(read_csv(dir.path()), rows);
    }

    /// A real answer of Debian's Prometheus 2.42 to `redis_commands_per_s` during a run
    /// (trimmed to two nodes and two steps) is read into rows.
    #[test]
    fn a_matrix_answer_is_read() {
        let text = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"redis_node":"127.0.0.1:7541"},"values":[[1796211572.206,"2745.46875"],[1796211573.206,"4371.199467199467"]]},{"metric":{"redis_node":"127.0.0.1:7542"},"values":[[1796211572.206,"12.5475"],[1796211573.206,"13"]]}]}}"#;
        let a: Answer = serde_json::from_str(text).expect("answer");
        let rows = rows_of(a, &QUERIES[2], 1796211571.206).expect("rows");
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[1].series, "127.0.0.1:7541");
        assert_eq!(rows[1].query, "redis_commands_per_s");
        assert!(
            (rows[1].t_s - 2.0).abs() < 1e-6 && (rows[1].value - 4371.199467199467).abs() < 1e-9
        );
        assert_eq!(rows[3].job, "redis");
        // Its answer to `rate(x[`.
        let e = r#"{"status":"error","errorType":"bad_data","error":"1:8: parse error: missing unit character in duration"}"#;
        let a: Answer = serde_json::from_str(e).expect("error answer");
        let message = rows_of(a, &QUERIES[2], 0.0).err();
        assert_eq!(
            message.as_deref(),
            Some("1:8: parse error: missing unit character in duration")
        );
    }
}
