//! `report.html` for a cardiologist: patient header, every measurement with unit, indexed value
//! and reference range (abnormal values highlighted), heart rate and cardiac output, ED and ES
//! with their times, the volume curve, a per-slice table, contours at ED and ES, and the quality
//! flags and every correction the stack builder made.

use std::fmt::Write;

use super::html::{document, escape, png_figure, table};
use super::json::{ResultIdentity, Written};
use super::overlay::{montage, overlay, OverlayStyle};
use super::volume_plot::VolumeCurve;
use super::ReportError;
use crate::analysis::clinical::{Measurement, Verdict};
use crate::analysis::reference::Range;
use crate::analysis::series::SeriesAnalysis;
use crate::registry::ModelIdentity;

/// Formats a value with the precision its unit deserves.
pub fn number(v: f64, unit: &str) -> String {
    match unit {
        "l/min" | "l/min/m2" | "m2" => format!("{v:.2}"),
        "/min" => format!("{v:.0}"),
        _ => format!("{v:.1}"),
    }
}

/// `lower - upper` of a range.
pub fn range_text(r: &Option<Range>, unit: &str) -> String {
    r.as_ref()
        .map(|r| format!("{} - {}", number(r.lower, unit), number(r.upper, unit)))
        .unwrap_or_else(|| "-".into())
}

/// The value with an arrow when outside its range.
pub fn with_verdict(v: f64, unit: &str, verdict: Option<Verdict>) -> String {
    let arrow = match verdict {
        Some(Verdict::Low) => " \u{2193}",
        Some(Verdict::High) => " \u{2191}",
        _ => "",
    };
    format!("{}{arrow}", number(v, unit))
}

fn class_of(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Low) | Some(Verdict::High) => "num abnormal",
        _ => "num",
    }
}

fn measurement_rows(ms: &[Measurement], ef_flagged: bool) -> Vec<Vec<(String, &'static str)>> {
    ms.iter()
        .map(|m| {
            let mut value = with_verdict(m.value, m.unit, m.verdict);
            if ef_flagged && m.unit == "%" {
                value.push_str(" (FLAGGED: see quality flags)");
            }
            vec![
                (m.label.to_string(), ""),
                (value, class_of(m.verdict)),
                (m.unit.to_string(), ""),
                (range_text(&m.range, m.unit), "num"),
                (
                    m.indexed
                        .map(|v| with_verdict(v, m.indexed_unit.unwrap_or(""), m.indexed_verdict))
                        .unwrap_or_else(|| "-".into()),
                    class_of(m.indexed_verdict),
                ),
                (m.indexed_unit.unwrap_or("").to_string(), ""),
                (
                    range_text(&m.indexed_range, m.indexed_unit.unwrap_or("")),
                    "num",
                ),
            ]
        })
        .collect()
}

fn header(id: &ResultIdentity<'_>, a: &SeriesAnalysis, model: &ModelIdentity) -> String {
    let c = &a.context;
    let dash = || "-".to_string();
    let mut rows: Vec<(&str, String)> = vec![
        ("Patient", c.display_name().unwrap_or_else(dash)),
        ("Patient ID", c.patient_id.clone().unwrap_or_else(dash)),
        (
            "Birth date",
            c.birth_date.clone().map(|d| da(&d)).unwrap_or_else(dash),
        ),
        ("Sex", c.sex.clone().unwrap_or_else(dash)),
        (
            "Age",
            c.age_years
                .map(|a| format!("{a:.0} years"))
                .unwrap_or_else(dash),
        ),
        (
            "Height / weight",
            format!(
                "{} / {}",
                c.height_m
                    .map(|h| format!("{:.0} cm", h * 100.0))
                    .unwrap_or_else(dash),
                c.weight_kg
                    .map(|w| format!("{w:.0} kg"))
                    .unwrap_or_else(dash)
            ),
        ),
        (
            "Study date",
            c.study_date.clone().map(|d| da(&d)).unwrap_or_else(dash),
        ),
        ("Accession", c.accession_number.clone().unwrap_or_else(dash)),
        (
            "Series",
            a.stack
                .ids
                .series_description
                .clone()
                .unwrap_or_else(|| id.series_instance_uid.to_string()),
        ),
        (
            "Slices x phases",
            format!("{} x {}", a.stack.n_slices(), a.stack.n_phases()),
        ),
        (
            "Model",
            format!("{} (content id {})", model.name, model.content_id),
        ),
    ];
    if let Some(old) = id.supersedes {
        rows.push((
            "Version",
            format!("{} of this series (supersedes result {old})", id.version),
        ));
    }
    let mut h = String::from("<table class=\"header\">\n");
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
    }
    h.push_str("</table>\n");
    h
}

/// DA `YYYYMMDD` as `YYYY-MM-DD`.
fn da(d: &str) -> String {
    match (d.get(0..4), d.get(4..6), d.get(6..8)) {
        (Some(y), Some(m), Some(day)) => format!("{y}-{m}-{day}"),
        _ => d.to_string(),
    }
}

fn key_phases(a: &SeriesAnalysis) -> String {
    let Some(s) = &a.summary else {
        return String::new();
    };
    let t = |v: Option<f64>| {
        v.map(|ms| format!(", {ms:.0} ms after the R wave"))
            .unwrap_or_default()
    };
    let mut h = format!(
        "<p>End-diastole: phase {} of {}{}. End-systole: phase {}{}. (Phases counted from 1; ED and ES are the phases of largest and smallest LV volume.)</p>\n",
        s.ed_phase + 1,
        s.phases,
        t(a.key_times_ms.ed_ms),
        s.es_phase + 1,
        t(a.key_times_ms.es_ms)
    );
    let p = &a.physiology;
    match (p.heart_rate_bpm, p.heart_rate_source) {
        (Some(hr), Some(src)) => {
            let _ = writeln!(h, "<p>Heart rate {hr:.0}/min (DICOM {src}).</p>");
        }
        _ => h.push_str("<p>No heart rate in the series: no cardiac output.</p>\n"),
    }
    match (p.bsa_m2, p.bsa_formula) {
        (Some(b), Some(f)) => {
            let _ = writeln!(
                h,
                "<p>Body surface area {b:.2} m\u{b2} ({}).</p>",
                escape(f)
            );
        }
        _ => h.push_str("<p>Height or weight missing: no indexed values.</p>\n"),
    }
    if let Some(why) = &p.ranges_missing_because {
        let _ = writeln!(h, "<p>No reference ranges: {}.</p>", escape(why));
    } else {
        let _ = writeln!(
            h,
            "<p>Reference ranges (adult, by sex): LV {}; RV volumes {}; none yet for RV SV, RV EF and indexed RV values. Values outside are highlighted (\u{2191} high, \u{2193} low).</p>",
            escape(crate::analysis::reference::SOURCE),
            escape(crate::analysis::reference::HUDSMITH)
        );
    }
    h
}

fn slice_table(a: &SeriesAnalysis) -> String {
    let rows: Vec<Vec<(String, &'static str)>> = a
        .slice_table()
        .iter()
        .map(|r| {
            vec![
                ((r.slice + 1).to_string(), "num"),
                (format!("{:.1}", r.offset_mm), "num"),
                (format!("{:.1}", r.lv_ml[0]), "num"),
                (format!("{:.1}", r.lv_ml[1]), "num"),
                (format!("{:.1}", r.myo_g_ed), "num"),
                (format!("{:.1}", r.rv_ml[0]), "num"),
                (format!("{:.1}", r.rv_ml[1]), "num"),
            ]
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    "<h2>Per slice</h2>\n".to_string()
        + &table(
            &[
                "Slice",
                "Position (mm)",
                "LV ED (ml)",
                "LV ES (ml)",
                "Myocardium ED (g)",
                "RV ED (ml)",
                "RV ES (ml)",
            ],
            &rows,
        )
}

/// Montage of every slice of phase `p` with its contours.
pub fn phase_montage(a: &SeriesAnalysis, p: usize) -> Result<Option<Vec<u8>>, ReportError> {
    let (w, h) = (a.stack.grid.cols, a.stack.grid.rows);
    let mut tiles = Vec::new();
    for s in 0..a.stack.n_slices() {
        if let (Some(f), Some(m)) = (a.stack.frame(s, p), a.masks.image(s, p)) {
            tiles.push(overlay(&f.pixels, m, w, h, OverlayStyle::Contour)?);
        }
    }
    if tiles.is_empty() {
        return Ok(None);
    }
    let cols = (tiles.len() as f64).sqrt().ceil() as usize;
    Ok(Some(montage(&tiles, cols.max(1), 2)?.encode_png()?))
}

fn flags_and_corrections(a: &SeriesAnalysis) -> String {
    let mut h = String::from("<h2>Quality flags</h2>\n");
    let mut items: Vec<(String, String)> = a
        .flags
        .iter()
        .map(|f| {
            (
                format!("{:?}", f.severity).to_lowercase(),
                f.message.clone(),
            )
        })
        .collect();
    items.extend(a.notes.iter().map(|n| ("warning".to_string(), n.clone())));
    if items.is_empty() {
        h.push_str("<p>None.</p>\n");
    } else {
        h.push_str("<ul>\n");
        for (sev, msg) in items {
            let _ = writeln!(
                h,
                "<li class=\"{s}\">{s}: {}</li>",
                escape(&msg),
                s = escape(&sev)
            );
        }
        h.push_str("</ul>\n");
    }
    let _ = writeln!(
        h,
        "<p>Mean model confidence {:.2}.</p>",
        a.mean_confidence()
    );
    h.push_str("<h2>Corrections made while assembling the images</h2>\n");
    if a.stack.corrections.is_empty() {
        h.push_str("<p>None.</p>\n");
    } else {
        h.push_str("<ul>\n");
        for c in &a.stack.corrections {
            let _ = writeln!(h, "<li>{}</li>", escape(&c.describe()));
        }
        h.push_str("</ul>\n");
    }
    h
}

/// Renders the page.
pub fn render(
    id: &ResultIdentity<'_>,
    a: &SeriesAnalysis,
    model: &ModelIdentity,
    written: &Written,
) -> Result<String, ReportError> {
    let mut body = header(id, a, model);
    if a.ef_flagged() {
        body.push_str("<p class=\"error\"><b>The function numbers are FLAGGED as unreliable: see the quality flags below.</b></p>\n");
    }
    body.push_str("<h2>Function</h2>\n");
    if a.measurements.is_empty() {
        body.push_str("<p>No function numbers (see the notes below).</p>\n");
    } else {
        body += &key_phases(a);
        body += &table(
            &[
                "Measurement",
                "Value",
                "Unit",
                "Reference",
                "Indexed (BSA)",
                "Unit",
                "Reference",
            ],
            &measurement_rows(&a.measurements, a.ef_flagged()),
        );
    }
    if let Some(s) = &a.summary {
        let times = a.phase_times_ms();
        let curve = VolumeCurve::of(s, times.as_deref());
        body.push_str("<h2>Volume over the cardiac cycle</h2>\n");
        body += &curve.svg(760, 380)?;
        body.push('\n');
        body += &slice_table(a);
        for (name, p) in [("end-diastole", s.ed_phase), ("end-systole", s.es_phase)] {
            if let Some(png) = phase_montage(a, p)? {
                body += &png_figure(&format!("Contours at {name} (phase {})", p + 1), &png);
            }
        }
    } else if let Some(png) = phase_montage(a, 0)? {
        body += &png_figure("Contours, phase 1", &png);
    }
    body += &flags_and_corrections(a);
    let sent = [&written.seg_cine, &written.seg_ed, &written.seg_es]
        .iter()
        .filter(|s| s.is_some())
        .count();
    let _ = writeln!(
        body,
        "<p class=\"info\">DICOM results: {sent} segmentation objects, {} measurement report, {} summary page, {} overlay images.</p>",
        usize::from(written.sr.is_some()),
        usize::from(written.summary_page.is_some()),
        written.overlays
    );
    Ok(document("Cardiac MRI function report (cineseg)", &body))
}
