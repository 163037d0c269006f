//! The summary page: the measurement table and the volume curve as one picture, stored as a
//! secondary capture, so a PACS viewer that renders neither SR nor HTML still shows the numbers
//! next to the images.

use super::annotate::{page, Line};
use super::json::ResultIdentity;
use super::page::{number, range_text, with_verdict};
use super::volume_plot::VolumeCurve;
use super::{ReportError, RgbImage};
use crate::analysis::clinical::Verdict;
use crate::analysis::series::SeriesAnalysis;
use crate::registry::ModelIdentity;

const WIDTH: usize = 1024;
const BLACK: [u8; 3] = [0, 0, 0];
const GREY: [u8; 3] = [90, 90, 90];
const RED: [u8; 3] = [190, 0, 0];

fn line(x: i32, y: i32, size: u32, colour: [u8; 3], text: impl Into<String>) -> Line {
    Line {
        x,
        y,
        size,
        colour,
        text: text.into(),
        right: false,
    }
}

fn right(mut l: Line) -> Line {
    l.right = true;
    l
}

/// Renders the page.
pub fn render(
    a: &SeriesAnalysis,
    model: &ModelIdentity,
    id: &ResultIdentity<'_>,
) -> Result<RgbImage, ReportError> {
    let c = &a.context;
    let dash = || "-".to_string();
    let mut lines = vec![line(30, 20, 26, BLACK, "Cardiac MRI function (cineseg)")];
    lines.push(line(
        30,
        58,
        17,
        BLACK,
        format!(
            "{}   ID {}   sex {}   age {}   study {}",
            c.display_name().unwrap_or_else(dash),
            c.patient_id.clone().unwrap_or_else(dash),
            c.sex.clone().unwrap_or_else(dash),
            c.age_years.map(|a| format!("{a:.0}")).unwrap_or_else(dash),
            c.study_date.clone().unwrap_or_else(dash)
        ),
    ));
    lines.push(line(
        30,
        82,
        14,
        GREY,
        format!(
            "Series {}   {} slices x {} phases   model {} ({})   result {} v{}",
            a.stack
                .ids
                .series_description
                .clone()
                .unwrap_or_else(|| id.series_instance_uid.into()),
            a.stack.n_slices(),
            a.stack.n_phases(),
            model.name,
            model.content_id,
            id.id,
            id.version
        ),
    ));
    let mut y = 110;
    if a.ef_flagged() {
        lines.push(line(
            30,
            y,
            17,
            RED,
            "FLAGGED: the function numbers may be wrong (see report.html)",
        ));
        y += 26;
    }
    let cols = [30, 280, 360, 450, 640, 720, 900];
    for (x, head) in cols.iter().zip([
        "Measurement",
        "Value",
        "Unit",
        "Reference",
        "Indexed",
        "Unit",
        "Reference",
    ]) {
        lines.push(line(*x, y, 15, BLACK, head));
    }
    y += 24;
    for m in &a.measurements {
        let colour = |v: Option<Verdict>| match v {
            Some(Verdict::Low | Verdict::High) => RED,
            _ => BLACK,
        };
        let iu = m.indexed_unit.unwrap_or("");
        lines.push(line(cols[0], y, 15, BLACK, m.label));
        lines.push(right(line(
            cols[1] + 60,
            y,
            15,
            colour(m.verdict),
            with_verdict(m.value, m.unit, m.verdict),
        )));
        lines.push(line(cols[2], y, 15, GREY, m.unit));
        lines.push(line(cols[3], y, 15, GREY, range_text(&m.range, m.unit)));
        if let Some(v) = m.indexed {
            lines.push(right(line(
                cols[4] + 60,
                y,
                15,
                colour(m.indexed_verdict),
                with_verdict(v, iu, m.indexed_verdict),
            )));
            lines.push(line(cols[5], y, 15, GREY, iu));
            lines.push(right(line(
                cols[6],
                y,
                15,
                GREY,
                range_text(&m.indexed_range, iu),
            )));
        }
        y += 22;
    }
    if let Some(s) = &a.summary {
        let t = |v: Option<f64>| v.map(|ms| format!(" ({ms:.0} ms)")).unwrap_or_default();
        lines.push(line(
            30,
            y + 6,
            15,
            BLACK,
            format!(
                "ED phase {}{}, ES phase {}{} of {}; BSA {}; ranges: {}",
                s.ed_phase + 1,
                t(a.key_times_ms.ed_ms),
                s.es_phase + 1,
                t(a.key_times_ms.es_ms),
                s.phases,
                a.physiology
                    .bsa_m2
                    .map(|b| format!("{} m2 (Mosteller)", number(b, "m2")))
                    .unwrap_or_else(|| "n/a".into()),
                a.physiology
                    .ranges_missing_because
                    .clone()
                    .unwrap_or_else(|| "Kawel-Boehm et al. (adult, by sex)".into())
            ),
        ));
        y += 36;
    }
    let times = a.phase_times_ms();
    let curve = match &a.summary {
        Some(s) => Some(VolumeCurve::of(s, times.as_deref()).bitmap(960, 400)?),
        None => None,
    };
    let curve_y = y as usize;
    y += curve.as_ref().map(|c| c.height as i32 + 10).unwrap_or(0);
    for f in a.flags.iter().take(6) {
        lines.push(line(
            30,
            y,
            14,
            RED,
            format!("{:?}: {}", f.severity, crate::text::printable(&f.message)),
        ));
        y += 20;
    }
    lines.push(line(30, y + 10, 13, GREY, "Research use; check contours before clinical use. Full report: report.html; numbers also in the DICOM SR."));
    let height = (y + 40) as usize;
    let pics: Vec<((usize, usize), &RgbImage)> = curve.iter().map(|c| ((32, curve_y), c)).collect();
    page(WIDTH, height, &lines, &pics)
}
