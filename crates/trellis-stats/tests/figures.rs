//! Figures and tables with awkward text: SVG that is well-formed XML (checked with the XML
//! parser resvg itself uses), PNG rendering of the CDISC pilot ADTTE (log-rank p < .0001,
//! arm names of 20 characters), the layout of the numbers-at-risk table and the legend, and
//! escaping in SVG, HTML and RTF.
mod common;
use common::*;
use resvg::usvg::roxmltree;
use std::path::Path;
use trellis_stats::render::{fit_labels, text_width};

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// The SAS-written CDISC pilot ADTTE: Kaplan–Meier by TRTA (log-rank p ≈ 8e-14).
fn km_pilot(dir: &Path, plot: &str) -> (serde_json::Value, anyhow::Result<()>) {
    let xpt = fixture("sas_written/adtte.xpt");
    let out = dir.join("km.json");
    let plot = dir.join(plot);
    let r = stats(&[
        "km",
        "--data",
        path(&xpt),
        "--time",
        "AVAL",
        "--censor",
        "CNSR",
        "--censor-value",
        "1",
        "--by",
        "TRTA",
        "--out",
        path(&out),
        "--plot",
        path(&plot),
    ]);
    let j = serde_json::from_str(&read(&out)).expect("KM JSON");
    (j, r)
}

/// Parses an SVG document with roxmltree (a strict XML 1.0 parser), panicking with the
/// parser's position on error.
fn parse(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("SVG is not well-formed XML: {e}"))
}

fn texts<'a>(doc: &'a roxmltree::Document<'a>) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .collect()
}

fn num(n: &roxmltree::Node, attr: &str) -> f64 {
    n.attribute(attr)
        .unwrap_or_else(|| panic!("<{}> without {attr}", n.tag_name().name()))
        .parse()
        .expect("numeric attribute")
}

#[test]
fn km_svg_with_logrank_p_below_1e4_is_well_formed_xml() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (j, r) = km_pilot(dir.path(), "km.svg");
    r.expect("km with an SVG figure");
    let p = j["logrank"]["p"].as_f64().expect("log-rank p");
    assert!(p < 1e-4, "the fixture is meant to give p < .0001, got {p}");
    let svg = read(&dir.path().join("km.svg"));
    let doc = parse(&svg);
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    // the parsed text is the unescaped p-value
    assert!(
        texts(&doc)
            .iter()
            .any(|t| t.text() == Some("Log-rank p < .0001")),
        "no log-rank p text in {svg}"
    );
    // resvg's own tree builder accepts it too (no fonts needed to parse)
    resvg::usvg::Tree::from_str(&svg, &resvg::usvg::Options::default())
        .expect("usvg parses the figure");
}

#[test]
fn km_png_of_the_sas_written_pilot_adtte_renders() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (j, r) = km_pilot(dir.path(), "km.png");
    // the JSON result is there in any case
    assert_eq!(j["groups"].as_array().expect("groups").len(), 3);
    check_km_png(r, &dir.path().join("km.png"));
}

#[test]
fn km_numbers_at_risk_labels_fit_and_legend_stays_inside_the_frame() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, r) = km_pilot(dir.path(), "km.svg");
    r.expect("km with an SVG figure");
    let svg = read(&dir.path().join("km.svg"));
    let doc = parse(&svg);
    let t = texts(&doc);
    let heading = t
        .iter()
        .position(|n| n.text() == Some("Number at risk"))
        .expect("numbers-at-risk heading");
    let mut labels = Vec::new();
    for row in t[heading + 1..].chunk_by(|a, b| num(a, "y") == num(b, "y")) {
        let label = row[0].text().expect("label text").to_string();
        let first_count = &row[1];
        let count = first_count.text().expect("count");
        // the label ends (with 10 px to spare) before the time-0 count begins
        let label_end = num(&row[0], "x") + text_width(&label, 13.0);
        let count_start = num(first_count, "x") - text_width(count, 13.0) / 2.0;
        assert!(
            label_end + 10.0 <= count_start,
            "{label:?} ends at {label_end:.1}, the count {count} starts at {count_start:.1}"
        );
        labels.push(label);
    }
    // 20-character arm names are written out in full (they were cut to "Xanomelin…")
    assert_eq!(
        labels,
        ["Placebo", "Xanomeline High Dose", "Xanomeline Low Dose"]
    );
    // legend box inside the plot frame, and its text inside the box
    let rects: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("x").is_some())
        .collect();
    let frame = rects
        .iter()
        .find(|n| n.attribute("fill") == Some("none"))
        .expect("plot frame");
    let legend = rects
        .iter()
        .find(|n| n.attribute("fill") == Some("white"))
        .expect("legend box");
    let (fx, fy, fw, fh) = (
        num(frame, "x"),
        num(frame, "y"),
        num(frame, "width"),
        num(frame, "height"),
    );
    let (lx, ly, lw, lh) = (
        num(legend, "x"),
        num(legend, "y"),
        num(legend, "width"),
        num(legend, "height"),
    );
    assert!(
        lx >= fx && ly >= fy && lx + lw <= fx + fw && ly + lh <= fy + fh,
        "legend ({lx}, {ly}, {lw}, {lh}) outside the frame ({fx}, {fy}, {fw}, {fh})"
    );
    let inside: Vec<_> = t
        .iter()
        .filter(|n| n.attribute("x").is_some())
        .filter(|n| {
            let (x, y) = (num(n, "x"), num(n, "y"));
            x > lx && x < lx + lw && y > ly && y < ly + lh
        })
        .collect();
    assert_eq!(
        inside.len(),
        4,
        "three arms and the log-rank p in the legend"
    );
    for n in inside {
        let s = n.text().expect("legend text");
        assert!(
            num(n, "x") + text_width(s, 13.0) <= lx + lw,
            "{s:?} runs past the legend box"
        );
    }
    assert!(svg.contains("Xanomeline High Dose (median 36)"), "{svg}");
}

#[test]
fn long_labels_are_shortened_distinctly() {
    let arms = [
        "Xanomeline Transdermal Therapeutic System 54 mg/day (Low Dose)".to_string(),
        "Xanomeline Transdermal Therapeutic System 81 mg/day (High Dose)".to_string(),
        "Placebo".to_string(),
    ];
    let got = fit_labels(&arms, 200.0, 13.0);
    assert_eq!(got[2], "Placebo", "a label that fits is kept");
    for g in &got {
        assert!(text_width(g, 13.0) <= 200.0, "{g:?} too wide");
    }
    assert!(got[0].contains('…') && got[1].contains('…'), "{got:?}");
    assert_ne!(got[0], got[1], "shortened labels must stay distinct");
    // labels that differ only in the middle
    let mid = [
        "Treatment arm A with a very long common description".to_string(),
        "Treatment arm B with a very long common description".to_string(),
    ];
    let got = fit_labels(&mid, 120.0, 13.0);
    assert_ne!(got[0], got[1], "{got:?}");
    for g in &got {
        assert!(text_width(g, 13.0) <= 120.0, "{g:?} too wide");
    }
    // identical after any cut that fits: numbered
    let same = ["x".repeat(80) + "1", "x".repeat(80) + "2"];
    let got = fit_labels(&same, 60.0, 13.0);
    assert_ne!(got[0], got[1], "{got:?}");
}

/// A CSV whose text values need escaping everywhere: markup characters, quotes, RTF
/// control characters, a control byte that XML cannot carry, and non-ASCII text.
fn awkward_csv(dir: &Path) -> std::path::PathBuf {
    let arms = [
        "A <10 mg> & \"B\"",
        "C {x} \\par D\u{1}",
        "Placébo — ≤ 5 mg",
    ];
    let mut s = String::from("AVAL,CNSR,ARM,RESP,AGE\n");
    for (k, arm) in arms.iter().enumerate() {
        for i in 0..30u32 {
            let t = 5.0 + f64::from((i * 37 + k as u32 * 11) % 200);
            let c = u32::from(i.is_multiple_of(4));
            let resp = (i + k as u32).is_multiple_of(3);
            let age = 40 + (i * 7 + k as u32) % 30;
            let q = arm.replace('"', "\"\"");
            s.push_str(&format!("{t},{c},\"{q}\",{},{age}\n", u8::from(resp)));
        }
    }
    let p = dir.join("awkward.csv");
    std::fs::write(&p, s).expect("write CSV");
    p
}

#[test]
fn every_figure_and_table_escapes_its_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = awkward_csv(dir.path());
    let d = path(&csv);
    let title = "Title with <tags> & \"quotes\" {braces} \\ and p < .05";
    let km_svg = dir.path().join("km.svg");
    let km_html = dir.path().join("km.html");
    stats(&[
        "km",
        "--data",
        d,
        "--time",
        "AVAL",
        "--censor",
        "CNSR",
        "--by",
        "ARM",
        "--title",
        title,
        "--format",
        "html",
        "--out",
        path(&km_html),
        "--plot",
        path(&km_svg),
        "--plot-ci",
    ])
    .expect("km");
    let svg = read(&km_svg);
    let doc = parse(&svg);
    let all: Vec<String> = texts(&doc)
        .iter()
        .filter_map(|n| n.text().map(str::to_string))
        .collect();
    assert!(all.iter().any(|s| s == title), "{all:?}");
    assert!(
        all.iter().any(|s| s.starts_with("A <10 mg> & \"B\"")),
        "{all:?}"
    );
    // the control byte is replaced, the rest kept
    assert!(
        all.iter().any(|s| s.starts_with("C {x} \\par D\u{FFFD}")),
        "{all:?}"
    );
    assert!(
        all.iter().any(|s| s.starts_with("Placébo — ≤ 5 mg")),
        "{all:?}"
    );
    resvg::usvg::Tree::from_str(&svg, &resvg::usvg::Options::default()).expect("usvg parses");

    let html = read(&km_html);
    assert!(
        html.contains("Title with &lt;tags&gt; &amp; &quot;quotes&quot;"),
        "{html}"
    );
    assert!(
        html.contains("A &lt;10 mg&gt; &amp; &quot;B&quot;"),
        "{html}"
    );
    assert!(!html.contains('\u{1}'), "control byte left in HTML");

    // forest plots (Cox and logistic) with the same arm names as terms (the first sorted,
    // "A <10 mg> ...", is the reference)
    for (cmd, extra) in [
        (
            "cox",
            &["--time", "AVAL", "--censor", "CNSR", "--by", "ARM"][..],
        ),
        (
            "logistic",
            &["--response", "RESP", "--covariates", "ARM,AGE"][..],
        ),
    ] {
        let svg = dir.path().join(format!("{cmd}.svg"));
        let rtf = dir.path().join(format!("{cmd}.rtf"));
        let mut a = vec![cmd, "--data", d, "--title", title];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["--format", "rtf", "--out", path(&rtf), "--plot", path(&svg)]);
        stats(&a).unwrap_or_else(|e| panic!("{cmd}: {e:#}"));
        let s = read(&svg);
        let doc = parse(&s);
        assert!(
            texts(&doc).iter().any(|n| n.text() == Some(title)),
            "{cmd}: title not in the forest plot"
        );
        assert!(
            texts(&doc).iter().any(|n| n
                .text()
                .is_some_and(|t| t.starts_with("ARM=C {x} \\par D\u{FFFD}"))),
            "{cmd}: term label missing in {s}"
        );
        let r = read(&rtf);
        assert!(r.starts_with("{\\rtf1") && r.ends_with('}'), "{cmd}");
        assert!(
            r.contains("Title with <tags> & \"quotes\" \\{braces\\} \\\\ and p < .05"),
            "{cmd}: {r}"
        );
        // braces balance once the escaped ones are left out, and no raw control byte
        let unescaped = r.replace("\\\\", "").replace("\\{", "").replace("\\}", "");
        assert_eq!(
            unescaped.matches('{').count(),
            unescaped.matches('}').count(),
            "{cmd}: unbalanced RTF groups"
        );
        assert!(!r.contains('\u{1}'), "{cmd}: control byte left in RTF");
        assert!(r.is_ascii(), "{cmd}: non-ASCII must be \\u escapes");
    }
}

#[test]
fn a_figure_that_cannot_be_written_keeps_the_result() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("km.json");
    let bad = dir.path().join("no such directory").join("km.svg");
    let d = fixture("adtte.csv");
    let e = stats(&[
        "km",
        "--data",
        path(&d),
        "--time",
        "AVAL",
        "--censor",
        "CNSR",
        "--by",
        "TRT01A",
        "--out",
        path(&out),
        "--plot",
        path(&bad),
    ])
    .expect_err("the figure cannot be written");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("writing figure") && msg.contains("result was written to"),
        "{msg}"
    );
    let j: serde_json::Value = serde_json::from_str(&read(&out)).expect("JSON written first");
    assert_eq!(j["groups"].as_array().expect("groups").len(), 2);
}
