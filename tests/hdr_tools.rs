//! The HdrHistogram files of a results folder with HdrHistogram's own tools: its
//! `HistogramLogProcessor` (Debian's libhdrhistogram-java, run by a Java runtime) reads each
//! backend's hlog of tests/fixtures/report-run (a real run) by tag, and the percentile
//! distribution it prints for the measured phase and the drain is, line for line, the `.hgrm`
//! file `brokerbench report` wrote. So the log is one the tool reads, and the `.hgrm` is in the
//! tool's own format with the same figures.
//!
//! Java or the jar missing is a failure: `apt-get install default-jre-headless
//! libhdrhistogram-java` (or set BROKERBENCH_HDRHISTOGRAM_JAR).

mod common;

use common::copy_dir;

use std::path::{Path, PathBuf};
use std::process::Command;

fn jar() -> PathBuf {
    let jar = std::env::var_os("BROKERBENCH_HDRHISTOGRAM_JAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/java/hdrhistogram.jar"));
    assert!(
        jar.is_file(),
        "{} not found: this test needs HdrHistogram's jar (Debian: apt-get install libhdrhistogram-java; or set BROKERBENCH_HDRHISTOGRAM_JAR)",
        jar.display()
    );
    jar
}

/// The measured phase's start of `backend`, from timeline.csv.
fn measure_start(dir: &Path, backend: &str) -> String {
    let timeline = std::fs::read_to_string(dir.join("timeline.csv")).expect("timeline.csv");
    timeline
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.len() == 5 && f[0] == backend && f[1] == "phase" && f[2] == "measure")
                .then(|| f[3].to_string())
        })
        .unwrap_or_else(|| panic!("no measure phase for {backend}"))
}

#[test]
fn hdrhistograms_log_processor_reads_the_hlog_and_prints_the_hgrm() {
    let jar = jar();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("run");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report-run"),
        &dir,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_brokerbench"))
        .arg("report")
        .arg(&dir)
        .output()
        .expect("run brokerbench report");
    assert!(
        out.status.success(),
        "brokerbench report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for backend in ["redis", "quorum", "stream-max", "stream-max-12"] {
        let hlog = dir.join("hdr").join(format!("{backend}.hlog"));
        let ours = std::fs::read_to_string(dir.join("hdr").join(format!("{backend}.e2e.hgrm")))
            .expect("the .hgrm brokerbench report wrote");
        let prefix = tmp.path().join(format!("{backend}-e2e"));
        let run = Command::new("java")
            .arg("-cp")
            .arg(&jar)
            .arg("org.HdrHistogram.HistogramLogProcessor")
            .arg("-i")
            .arg(&hlog)
            .args(["-tag", "e2e", "-start", &measure_start(&dir, backend)])
            .args(["-outputValueUnitRatio", "1000", "-o"])
            .arg(&prefix)
            .output()
            .expect("java (Debian: apt-get install default-jre-headless)");
        assert!(
            run.status.success(),
            "HistogramLogProcessor on {}: {}",
            hlog.display(),
            String::from_utf8_lossy(&run.stderr)
        );
        let theirs = std::fs::read_to_string(prefix.with_extension("hgrm"))
            .expect("HistogramLogProcessor's .hgrm");
        // Its file starts with two comment lines of its own: the range and the log's StartTime.
        let theirs: Vec<&str> = theirs
            .lines()
            .filter(|l| !l.starts_with("#[Overall") && !l.starts_with("#[StartTime"))
            .collect();
        let ours: Vec<&str> = ours.lines().collect();
        assert!(ours.len() > 30, "{backend}: {} lines", ours.len());
        assert_eq!(
            ours, theirs,
            "{backend}: the .hgrm differs from HdrHistogram's"
        );
        // Its interval log has a line per interval of the measured phase and the drain.
        let intervals = std::fs::read_to_string(&prefix).expect("the interval log");
        assert!(
            intervals.lines().filter(|l| l.contains(" I:")).count() >= 20,
            "{backend}: {intervals}"
        );
    }
}
