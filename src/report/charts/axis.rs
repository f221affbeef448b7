//! What the charts share about their axes and series: tick labels (thousands separators,
//! integer ticks for counts), the intervals worth drawing as a rate (no false drop at the end),
//! and the marks of a fault (one band, the kill and the restart as two lines).

use crate::metrics::aggregator::IntervalRow;
use crate::scenario::timeline::Phase;

/// `digits` (an integer's decimal digits, maybe with a leading '-') with a comma every three.
fn group(digits: &str) -> String {
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", digits),
    };
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// A figure on an axis or beside a bar: integers from 100 up with thousands separators
/// ("12,345"), smaller figures with two or three decimals.
pub fn format_value(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        group(&format!("{v:.0}"))
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A tick on an axis of figures: `format_value` without trailing zeros ("10", "2.5", "0.25").
pub fn tick_label(v: f64) -> String {
    let s = format_value(v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A tick on an axis of counts (messages, queues): whole numbers only, with thousands
/// separators; a tick between two whole numbers gets no label.
pub fn count_label(v: f64) -> String {
    let r = v.round();
    if (v - r).abs() > 1e-6 * r.abs().max(1.0) {
        return String::new();
    }
    if r == 0.0 {
        // Also for -0.0.
        return "0".into();
    }
    group(&format!("{r:.0}"))
}

/// How many ticks an axis of counts from 0 to `max` asks for: one per whole number when there
/// are few, so that no tick falls between two.
pub fn count_ticks(max: f64) -> usize {
    (max.floor().max(0.0) as usize + 1).clamp(2, 10)
}

/// The points of one backend's intervals worth drawing as a rate. A rate is a count over an
/// interval's length, so two kinds of interval at the end of a series would draw a cliff that
/// is not in the data: the drain's empty tail (nothing left to confirm or receive, which is not
/// a throughput of 0) and a partial last interval shorter than half the usual one (its rate
/// comes from a few milliseconds). Both are dropped; intervals inside the series are all kept.
pub fn rate_rows<'a>(rows: &[&'a IntervalRow]) -> Vec<&'a IntervalRow> {
    let mut kept: Vec<&IntervalRow> = rows
        .iter()
        .copied()
        .filter(|r| r.t_end_s > r.t_start_s)
        .collect();
    let mut lengths: Vec<f64> = kept.iter().map(|r| r.t_end_s - r.t_start_s).collect();
    lengths.sort_by(f64::total_cmp);
    let usual = lengths.get(lengths.len() / 2).copied().unwrap_or(0.0);
    while let Some(last) = kept.last() {
        let empty = last.sent + last.confirmed + last.received + last.failed == 0;
        let partial = last.t_end_s - last.t_start_s < usual / 2.0;
        if kept.len() > 1 && (empty || partial) {
            kept.pop();
        } else {
            break;
        }
    }
    kept
}

/// Whether the harness sends in this phase (it does not in the drain, so a sent rate of 0
/// there says nothing).
pub fn sends(phase: Phase) -> bool {
    phase != Phase::Drain
}

/// One fault as a chart marks it: a shaded band while the node is down (from the fault to its
/// restart or resume, or to the fault's end when it has none), a line at the fault and a line
/// at the restart, each with its own label.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultMarks {
    /// e.g. "kill 127.0.0.1:7001".
    pub fault: String,
    pub at_s: f64,
    pub band_end_s: f64,
    /// e.g. "restart 127.0.0.1:7001", when it started and when the node was back.
    pub restart: Option<(String, f64, f64)>,
}

/// Pair each fault on a backend's timeline (name, start, end) with the restart or resume of the
/// same node that follows it.
pub fn fault_marks(events: &[(String, f64, f64)]) -> Vec<FaultMarks> {
    let is_restart = |name: &str| name.starts_with("restart ") || name.starts_with("resume ");
    let node = |name: &str| name.split_once(' ').map(|(_, n)| n.to_string());
    let mut marks: Vec<FaultMarks> = Vec::new();
    for (name, start, end) in events {
        if is_restart(name) {
            let open = marks
                .iter_mut()
                .rev()
                .find(|m| m.restart.is_none() && node(&m.fault) == node(name));
            if let Some(m) = open {
                m.band_end_s = *start;
                m.restart = Some((name.clone(), *start, *end));
                continue;
            }
        }
        marks.push(FaultMarks {
            fault: name.clone(),
            at_s: *start,
            band_end_s: *end,
            restart: None,
        });
    }
    marks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_have_thousands_separators_and_counts_whole_ticks() {
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(0.1234), "0.123");
        assert_eq!(format_value(12.345), "12.35");
        assert_eq!(format_value(999.4), "999");
        assert_eq!(format_value(1000.0), "1,000");
        assert_eq!(format_value(15490.04), "15,490");
        assert_eq!(format_value(1_234_567.0), "1,234,567");
        assert_eq!(format_value(-4321.0), "-4,321");
        assert_eq!(tick_label(10.0), "10");
        assert_eq!(tick_label(2.5), "2.5");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(1000.0), "1,000");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(count_label(0.0), "0");
        assert_eq!(count_label(-0.0), "0");
        assert_eq!(count_label(3.0), "3");
        assert_eq!(count_label(2.5), "");
        assert_eq!(count_label(0.2), "");
        assert_eq!(count_label(12000.0), "12,000");
        // Float steps (0.1 * 30) still land on whole numbers.
        assert_eq!(count_label(0.1 * 30.0), "3");
        assert_eq!(count_ticks(3.4), 4);
        assert_eq!(count_ticks(0.0), 2);
        assert_eq!(count_ticks(5000.0), 10);
    }

    /// The tail of a backend of tests/fixtures/report-run/timeseries.csv: the last measured
    /// second, the drain's first 56 ms (the last backlog) and its empty remainder.
    #[test]
    fn the_end_of_a_series_has_no_false_drop() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report-run");
        let rows = crate::report::results::RunResults::load(&dir)
            .expect("fixture")
            .timeseries;
        let of =
            |b: &str| -> Vec<&IntervalRow> { rows.iter().filter(|r| r.backend == b).collect() };
        let stream = of("stream-max");
        assert_eq!(stream.len(), 25);
        let tail: Vec<(Phase, u64)> = stream[22..].iter().map(|r| (r.phase, r.received)).collect();
        assert_eq!(tail[1..], [(Phase::Drain, 513), (Phase::Drain, 0)]);
        let kept = rate_rows(&stream);
        // The empty tail and the 56 ms partial interval go; the last point is a full second.
        assert_eq!(kept.len(), 23);
        let last = kept.last().expect("rows");
        assert_eq!(last.phase, Phase::Measure);
        assert!(last.received_per_s > 10_000.0, "{last:?}");
        // Redis's drain found nothing left: its line ends with the measured phase too.
        let redis = of("redis");
        let kept = rate_rows(&redis);
        assert!(kept.iter().all(|r| r.phase != Phase::Drain));
        assert!(kept.last().expect("rows").received_per_s > 500.0);
        // The quorum queue's drain: 18 messages in 54 ms, then 5 s with nothing: both go.
        let quorum = rate_rows(&of("quorum"));
        assert!(quorum.iter().all(|r| r.t_end_s - r.t_start_s > 0.5));
        assert_eq!(quorum.last().map(|r| r.phase), Some(Phase::Measure));
        assert!(kept.len() >= 20 && quorum.len() >= 20);
        // Inside a series nothing is dropped, even an interval with nothing in it.
        let mut zero = redis[10].clone();
        zero.sent = 0;
        zero.confirmed = 0;
        zero.received = 0;
        let mut with_gap: Vec<&IntervalRow> = redis[..20].to_vec();
        with_gap[10] = &zero;
        assert_eq!(rate_rows(&with_gap).len(), 20);
    }

    #[test]
    fn a_kill_and_its_restart_are_one_band_and_two_lines() {
        let events = vec![
            ("kill rabbit1@localhost".to_string(), 8.43, 16.43),
            ("restart rabbit1@localhost".to_string(), 16.43, 28.12),
            ("kill-consumer consumer-0".to_string(), 30.0, 30.0),
        ];
        let marks = fault_marks(&events);
        assert_eq!(marks.len(), 2);
        assert_eq!(marks[0].fault, "kill rabbit1@localhost");
        assert_eq!((marks[0].at_s, marks[0].band_end_s), (8.43, 16.43));
        assert_eq!(
            marks[0].restart,
            Some(("restart rabbit1@localhost".to_string(), 16.43, 28.12))
        );
        assert_eq!(marks[1].restart, None);
        assert_eq!((marks[1].at_s, marks[1].band_end_s), (30.0, 30.0));
    }
}
