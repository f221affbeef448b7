//! report.html in a real browser: `brokerbench report` on two fixtures (tests/fixtures/report-run:
//! a real run with a leader kill per backend and a refuted claim; tests/fixtures/verdicts-run: a
//! repeated run whose verdicts carry reasons), then headless Chromium (Debian's `chromium`
//! package) with every network request sent to a proxy that does not exist. The page must refer
//! to nothing outside itself, load no resource, and lay out every chart as an inline SVG with
//! drawn elements; a screenshot of its top must be a real picture; printed, each section starts
//! a page.
//!
//! Chromium missing is a failure, not a skip: install it with `apt-get install chromium` (or
//! point BROKERBENCH_CHROMIUM at a Chromium binary). BROKERBENCH_SCREENSHOT_TO=<path> keeps the
//! report-run fixture's screenshot (docs/images/report-summary.png is one).

mod common;

use common::copy_dir;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chromium() -> PathBuf {
    let path = std::env::var_os("BROKERBENCH_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "{} not found: this test needs headless Chromium (Debian: apt-get install chromium; or set BROKERBENCH_CHROMIUM)",
        path.display()
    );
    path
}

/// Run Chromium headless on `page` with `args`, networking off, and return its stdout; fails
/// after two minutes.
fn run_chromium(page: &Path, profile: &Path, args: &[String]) -> String {
    let out_path = profile.with_extension("out");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            // Every request, local or not, goes to a proxy on a port nothing listens on.
            "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within 2 minutes on {}",
                page.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "chromium failed on {}: {status}",
        page.display()
    );
    std::fs::read_to_string(&out_path).expect("chromium's output")
}

/// A script appended to a copy of the page: for each inline chart, its laid-out size and how
/// many of its shapes have a non-empty box; and how many resources the page loaded.
const PROBE: &str = r#"<script>
(function () {
  var rows = [];
  document.querySelectorAll('svg').forEach(function (svg) {
    var r = svg.getBoundingClientRect();
    var drawn = 0;
    svg.querySelectorAll('line,polyline,polygon,rect,path,circle,text').forEach(function (e) {
      var b = e.getBBox();
      if (b.width > 0 || b.height > 0) drawn++;
    });
    var texts = svg.querySelectorAll('text').length;
    rows.push(Math.round(r.width) + 'x' + Math.round(r.height) + ' drawn=' + drawn + ' texts=' + texts);
  });
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = 'resources=' + performance.getEntriesByType('resource').length + '\n' + rows.join('\n');
  document.body.appendChild(pre);
})();
</script>"#;

struct Probe {
    resources: usize,
    /// (width, height, drawn shapes, texts) per inline SVG.
    charts: Vec<(u32, u32, usize, usize)>,
}

fn probe(dom: &str) -> Probe {
    let text = dom
        .split("<pre id=\"probe\">")
        .nth(1)
        .and_then(|r| r.split("</pre>").next())
        .unwrap_or_else(|| {
            panic!(
                "no probe in the dumped DOM: {}",
                &dom[..dom.len().min(2000)]
            )
        });
    let mut lines = text.lines();
    let resources = lines
        .next()
        .and_then(|l| l.strip_prefix("resources="))
        .and_then(|n| n.parse().ok())
        .expect("resources line");
    let charts = lines
        .map(|l| {
            let num = |s: &str| -> usize { s.parse().unwrap_or_else(|_| panic!("{l}")) };
            let mut parts = l.split(' ');
            let size = parts.next().expect("size");
            let (w, h) = size.split_once('x').expect("WxH");
            let field = |p: Option<&str>, name: &str| {
                num(p.and_then(|p| p.strip_prefix(name)).expect("field"))
            };
            let drawn = field(parts.next(), "drawn=");
            let texts = field(parts.next(), "texts=");
            (num(w) as u32, num(h) as u32, drawn, texts)
        })
        .collect();
    Probe { resources, charts }
}

/// The share of pixels of a PNG that are not (nearly) white, and its size.
fn ink(png_path: &Path) -> (f64, u32, u32) {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).expect("screenshot"));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let total = pixels.len() / channels;
    let inked = pixels
        .chunks(channels)
        .filter(|p| p.iter().take(3).any(|c| *c < 200))
        .count();
    (inked as f64 / total as f64, info.width, info.height)
}

/// Report `fixture`, open it in Chromium, check it; returns the screenshot's path.
fn check(fixture: &str, tmp: &Path) -> PathBuf {
    let dir = tmp.join(fixture);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(fixture),
        &dir,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_brokerbench"))
        .arg("report")
        .arg(&dir)
        .output()
        .expect("run brokerbench report");
    assert!(
        out.status.success(),
        "brokerbench report {fixture}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md");

    // Nothing outside the file: no link, no image, no script, no style sheet, no font, no URL.
    for external in [
        "http:",
        "https:",
        "src=",
        "href=",
        "url(",
        "@import",
        "@font-face",
        "<img",
        "<link",
        "<script",
        "<iframe",
        "<object",
        "<embed",
        "file:",
        "data:",
    ] {
        assert!(
            !html.contains(external),
            "{fixture}: report.html contains {external:?}"
        );
    }
    // Every chart of report.md (which links the PNGs) is inline in report.html, as an SVG, and
    // every chart drawn is in the report.
    let md_charts: Vec<&str> = md
        .split("](charts/")
        .skip(1)
        .filter_map(|r| r.split(')').next())
        .collect();
    let on_disk = std::fs::read_dir(dir.join("charts"))
        .expect("charts/")
        .filter(|e| {
            e.as_ref()
                .map(|e| e.path().extension().is_some_and(|x| x == "png"))
                .unwrap_or(false)
        })
        .count();
    assert!(on_disk > 0, "{fixture}: no chart drawn");
    let mut distinct = md_charts.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        on_disk,
        "{fixture}: charts not in the report"
    );
    assert_eq!(
        html.matches("<svg").count(),
        md_charts.len(),
        "{fixture}: inline SVGs vs charts in report.md"
    );
    assert!(html.contains("<h2>Summary</h2>"), "{fixture}: no summary");

    // In Chromium: the DOM holds every chart as an SVG element with drawn shapes and a size,
    // and the page loaded nothing.
    let probed = dir.join("report-probe.html");
    std::fs::write(&probed, html.replace("</body>", &format!("{PROBE}</body>")))
        .expect("probe page");
    let dom = run_chromium(
        &probed,
        &tmp.join(format!("{fixture}-profile-dom")),
        &["--dump-dom".into()],
    );
    assert!(
        dom.contains("<h2>Summary</h2>"),
        "{fixture}: DOM without a summary"
    );
    let p = probe(&dom);
    assert_eq!(p.resources, 0, "{fixture}: the page loaded resources");
    assert_eq!(
        p.charts.len(),
        md_charts.len(),
        "{fixture}: SVG elements in Chromium's DOM vs charts"
    );
    for (i, (w, h, drawn, texts)) in p.charts.iter().enumerate() {
        assert!(
            *w >= 500 && *h >= 250,
            "{fixture}: chart {i} laid out at {w}x{h}"
        );
        assert!(
            *drawn >= 20 && *texts >= 5,
            "{fixture}: chart {i} ({}) has {drawn} drawn shapes and {texts} texts",
            md_charts[i]
        );
    }

    // A screenshot of the page's top (the summary and what follows) is a real picture.
    let shot = tmp.join(format!("{fixture}.png"));
    run_chromium(
        &dir.join("report.html"),
        &tmp.join(format!("{fixture}-profile-shot")),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000".into(),
        ],
    );
    let bytes = std::fs::metadata(&shot).expect("screenshot").len();
    let (ink, w, h) = ink(&shot);
    assert_eq!((w, h), (1280, 2000), "{fixture}: screenshot size");
    assert!(bytes > 50_000, "{fixture}: screenshot of {bytes} bytes");
    assert!(
        (0.02..0.6).contains(&ink),
        "{fixture}: {:.1}% of the screenshot is not white",
        ink * 100.0
    );

    // Printed, every section starts a page of its own: more pages than the same page without
    // the page breaks.
    let pages = |page: &Path, name: &str| -> usize {
        let pdf = tmp.join(format!("{fixture}-{name}.pdf"));
        run_chromium(
            page,
            &tmp.join(format!("{fixture}-profile-{name}")),
            &[
                format!("--print-to-pdf={}", pdf.display()),
                "--no-pdf-header-footer".into(),
            ],
        );
        let pdf = std::fs::read(&pdf).expect("the printed PDF");
        pdf.windows(12)
            .filter(|w| w.starts_with(b"/Type /Page") && !w.starts_with(b"/Type /Pages"))
            .count()
    };
    let printed = pages(&dir.join("report.html"), "print");
    const BREAK: &str = "section{break-before:page;page-break-before:always}";
    assert!(
        html.contains(BREAK),
        "{fixture}: no page break between sections"
    );
    let plain_page = dir.join("report-no-page-breaks.html");
    std::fs::write(&plain_page, html.replace(BREAK, "")).expect("page without page breaks");
    let plain = pages(&plain_page, "plain");
    let sections = html.matches("<section").count();
    eprintln!(
        "{fixture}: {printed} printed pages, {sections} sections, {plain} pages without the breaks"
    );
    assert!(sections >= 6, "{fixture}: {sections} sections");
    assert!(
        printed >= sections && printed > plain,
        "{fixture}: {printed} printed pages for {sections} sections ({plain} without the page breaks)"
    );
    shot
}

#[test]
fn report_html_renders_every_chart_offline_in_chromium() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let shot = check("report-run", tmp.path());
    check("verdicts-run", tmp.path());
    if let Some(to) = std::env::var_os("BROKERBENCH_SCREENSHOT_TO") {
        std::fs::copy(&shot, to).expect("keep the screenshot");
    }
}
