//! report.html: one self-contained file. The charts are inlined as `<svg>` elements (read from
//! the SVG drawn beside each PNG), the style is inline, and nothing refers outside the file (no
//! links, no images, no fonts), so it reads offline, travels as one attachment and prints: every
//! second-level section starts a page, and no chart or table row is cut across two.

use std::fmt::Write as _;
use std::path::Path;

use super::document::{Block, ALARM};
use super::ReportError;

const STYLE: &str = "\
body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#111}\
table{border-collapse:collapse;font-size:13px;margin:.5em 0}\
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}\
.wide{overflow-x:auto}\
figure{margin:1em 0}\
svg.chart{display:block;width:100%;max-width:1000px;height:auto}\
.pair{display:flex;gap:1em}.pair figure{flex:1;min-width:0}\
.alarm{color:#c00;font-weight:bold}\
@media print{\
body{max-width:none;margin:0;font-size:11pt}\
section{break-before:page;page-break-before:always}\
section.first{break-before:auto;page-break-before:auto}\
h2,h3{break-after:avoid;page-break-after:avoid}\
figure,svg.chart,tr{break-inside:avoid;page-break-inside:avoid}\
svg.chart{max-height:92vh}\
.wide{overflow:visible}\
table{font-size:8pt}\
}";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// ` class="alarm"` for a cell or item that starts with the alarm sign.
fn class_of(text: &str) -> &'static str {
    if text.starts_with(ALARM) {
        " class=\"alarm\""
    } else {
        ""
    }
}

/// The page: `blocks` in order, each chart (`Block::Image` naming a PNG relative to `dir`)
/// replaced by its SVG, inline.
pub fn to_html(title: &str, blocks: &[Block], dir: &Path) -> Result<String, ReportError> {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title>\n<style>{STYLE}</style></head><body>\n",
        esc(title)
    );
    let mut sections = 0;
    for b in blocks {
        match b {
            Block::Heading(2, text) => {
                if sections > 0 {
                    out.push_str("</section>\n");
                }
                let class = if sections == 0 {
                    " class=\"first\""
                } else {
                    ""
                };
                sections += 1;
                let _ = writeln!(out, "<section{class}><h2>{}</h2>", esc(text));
            }
            Block::Heading(level, text) => {
                let _ = writeln!(out, "<h{level}>{}</h{level}>", esc(text));
            }
            Block::Para(text) => {
                let _ = writeln!(out, "<p>{}</p>", esc(text));
            }
            Block::List(items) => {
                out.push_str("<ul>");
                for i in items {
                    let _ = write!(out, "<li{}>{}</li>", class_of(i), esc(i));
                }
                out.push_str("</ul>\n");
            }
            Block::Table(head, rows) => {
                out.push_str("<div class=\"wide\"><table><thead><tr>");
                for h in head {
                    let _ = write!(out, "<th>{}</th>", esc(h));
                }
                out.push_str("</tr></thead><tbody>\n");
                for r in rows {
                    out.push_str("<tr>");
                    for c in r {
                        let _ = write!(out, "<td{}>{}</td>", class_of(c), esc(c));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody></table></div>\n");
            }
            Block::Image(alt, path) => {
                let _ = writeln!(out, "<figure>{}</figure>", inline_chart(dir, alt, path)?);
            }
            Block::Images(images) => {
                out.push_str("<div class=\"pair\">");
                for (alt, path) in images {
                    let _ = write!(out, "<figure>{}</figure>", inline_chart(dir, alt, path)?);
                }
                out.push_str("</div>\n");
            }
        }
    }
    if sections > 0 {
        out.push_str("</section>\n");
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

/// The SVG drawn beside the chart PNG `png` (relative to `dir`), ready to sit inside the page.
fn inline_chart(dir: &Path, alt: &str, png: &str) -> Result<String, ReportError> {
    let svg_rel = png
        .strip_suffix(".png")
        .map(|p| format!("{p}.svg"))
        .unwrap_or_else(|| png.to_string());
    let path = dir.join(&svg_rel);
    let svg = std::fs::read_to_string(&path).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    inline_svg(&svg, alt).ok_or_else(|| ReportError::Encode {
        path,
        message: "not an SVG document (no <svg ...> element); redraw it with `brokerbench report`"
            .into(),
    })
}

/// `svg` (a whole SVG file as plotters writes it) as an inline element: the namespace and the
/// fixed size go (HTML puts an inline `<svg>` in the SVG namespace by itself, and CSS sizes it
/// from its viewBox), a title and a label say what it shows.
pub fn inline_svg(svg: &str, alt: &str) -> Option<String> {
    let start = svg.find("<svg")?;
    let open_end = start + svg[start..].find('>')?;
    let close = svg.rfind("</svg>")?;
    if close < open_end {
        return None;
    }
    let mut attrs = String::new();
    let mut rest = &svg[start + 4..open_end];
    // Attributes are `name="value"` pairs; plotters writes no other form.
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].trim();
        let after = &rest[eq + 2..];
        let end = after.find('"')?;
        let value = &after[..end];
        if !matches!(name, "xmlns" | "width" | "height") {
            let _ = write!(attrs, " {name}=\"{value}\"");
        }
        rest = &after[end + 1..];
    }
    Some(format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"{alt}\"{attrs}><title>{alt}</title>{}</svg>",
        &svg[open_end + 1..close],
        alt = esc(alt)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_svg_goes_inline_without_namespace_or_fixed_size() {
        let file = "<svg width=\"1000\" height=\"560\" viewBox=\"0 0 1000 560\" xmlns=\"http://www.w3.org/2000/svg\">\n<rect x=\"0\" y=\"0\" width=\"10\" height=\"10\"/>\n</svg>\n";
        let inline = inline_svg(file, "a <chart>").expect("an svg");
        assert_eq!(
            inline,
            "<svg class=\"chart\" role=\"img\" aria-label=\"a &lt;chart&gt;\" viewBox=\"0 0 1000 560\"><title>a &lt;chart&gt;</title>\n<rect x=\"0\" y=\"0\" width=\"10\" height=\"10\"/>\n</svg>"
        );
        assert!(!inline.contains("http"));
        assert_eq!(inline_svg("<p>no svg</p>", "x"), None);
    }

    #[test]
    fn the_page_refers_to_nothing_outside_itself_and_breaks_pages_between_sections() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("charts")).expect("dir");
        std::fs::write(
            dir.path().join("charts/c.svg"),
            "<svg width=\"10\" height=\"10\" viewBox=\"0 0 10 10\" xmlns=\"http://www.w3.org/2000/svg\"><line x1=\"0\" y1=\"0\" x2=\"9\" y2=\"9\"/></svg>",
        )
        .expect("svg");
        let blocks = vec![
            Block::Heading(1, "t".into()),
            Block::Heading(2, "Summary".into()),
            Block::Table(vec!["lost".into()], vec![vec![format!("{ALARM}3")]]),
            Block::Heading(2, "Charts".into()),
            Block::Image("c".into(), "charts/c.png".into()),
            Block::Images(vec![("a".into(), "charts/c.png".into())]),
        ];
        let html = to_html("t", &blocks, dir.path()).expect("html");
        for external in ["http", "src=", "href=", "url(", "@import", "@font-face"] {
            assert!(!html.contains(external), "{external} in {html}");
        }
        assert_eq!(html.matches("<svg").count(), 2);
        assert_eq!(html.matches("<section").count(), 2);
        assert_eq!(html.matches("</section>").count(), 2);
        assert!(html.contains("<section class=\"first\"><h2>Summary</h2>"));
        assert!(html.contains("section{break-before:page"));
        assert!(html.contains("<td class=\"alarm\">\u{26a0} 3</td>"));
        let missing = to_html(
            "t",
            &[Block::Image("gone".into(), "charts/gone.png".into())],
            dir.path(),
        )
        .expect_err("a missing chart");
        assert!(missing.to_string().contains("gone.svg"), "{missing}");
    }
}
