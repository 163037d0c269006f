//! The ventricular volume curve as a small PNG-ready plot: LV (red) and RV (blue) volume over
//! the cardiac cycle, with ED and ES marked. A reader sees at a glance whether the curve is
//! one smooth contraction and whether ED and ES were picked sensibly.
//!
//! Everything is drawn directly into an [`RgbImage`] (lines, markers and a tiny built-in
//! bitmap font for tick values and the ED/ES tags), so no plotting or font crate is needed.

use super::overlay::{LV_COLOUR, RV_COLOUR};
use super::{ReportError, RgbImage};

/// Colour of the end-diastole marker.
pub const ED_COLOUR: [u8; 3] = [0, 150, 0];
/// Colour of the end-systole marker.
pub const ES_COLOUR: [u8; 3] = [230, 130, 0];
const AXIS: [u8; 3] = [0, 0, 0];
const GRID: [u8; 3] = [225, 225, 225];
const WHITE: [u8; 3] = [255, 255, 255];
const TEXT_SCALE: i64 = 2;

/// Plots LV and RV volume (ml) per phase with ED and ES marked. `rv` may be empty (no RV
/// segmented); a non-empty `rv` must have as many phases as `lv`.
pub fn volume_curve(
    lv: &[f64],
    rv: &[f64],
    ed_phase: usize,
    es_phase: usize,
    width: usize,
    height: usize,
) -> Result<RgbImage, ReportError> {
    if lv.is_empty() || (!rv.is_empty() && rv.len() != lv.len()) {
        return Err(ReportError::Shape(format!(
            "{} LV and {} RV volumes",
            lv.len(),
            rv.len()
        )));
    }
    if ed_phase >= lv.len() || es_phase >= lv.len() {
        return Err(ReportError::Shape(format!(
            "ED {ed_phase} / ES {es_phase} outside {} phases",
            lv.len()
        )));
    }
    if width < 120 || height < 80 {
        return Err(ReportError::Shape(format!(
            "plot {width}x{height} is too small (min 120x80)"
        )));
    }
    let mut img = RgbImage::filled(width, height, WHITE);
    let (left, right, top, bottom) = (44i64, width as i64 - 12, 22i64, height as i64 - 24);
    let vmax = lv
        .iter()
        .chain(rv.iter())
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let step = tick_step(vmax.max(1.0));
    let ymax = (vmax / step).ceil().max(1.0) * step;
    let n = lv.len();
    let px = |i: usize| {
        left + if n > 1 {
            (i as i64 * (right - left)) / (n as i64 - 1)
        } else {
            (right - left) / 2
        }
    };
    let py = |v: f64| bottom - ((v.max(0.0) / ymax) * (bottom - top) as f64).round() as i64;

    // Horizontal grid lines and y tick labels.
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let y = py(v);
        line(&mut img, left, y, right, y, GRID);
        let label = format!("{}", v.round() as i64);
        text(
            &mut img,
            left - 6 - text_width(&label),
            y - 2 * TEXT_SCALE,
            &label,
            AXIS,
        );
        v += step;
    }
    // ED and ES markers, dashed, tagged at the top.
    for (phase, colour, tag) in [(ed_phase, ED_COLOUR, "ED"), (es_phase, ES_COLOUR, "ES")] {
        let x = px(phase);
        let mut y = top;
        while y < bottom {
            line(&mut img, x, y, x, (y + 3).min(bottom), colour);
            y += 6;
        }
        text(
            &mut img,
            x - text_width(tag) / 2,
            top - 6 * TEXT_SCALE - 2,
            tag,
            colour,
        );
    }
    // Axes, with phase ticks along x.
    line(&mut img, left, top, left, bottom, AXIS);
    line(&mut img, left, bottom, right, bottom, AXIS);
    for i in 0..n {
        line(&mut img, px(i), bottom, px(i), bottom + 3, AXIS);
    }
    for (i, label) in [(0, "0".to_string()), (n - 1, format!("{}", n - 1))] {
        text(
            &mut img,
            px(i) - text_width(&label) / 2,
            bottom + 6,
            &label,
            AXIS,
        );
    }
    text(&mut img, right - text_width("ML"), 4, "ML", AXIS);
    // Curves last, so they sit on top.
    for (curve, colour) in [(rv, RV_COLOUR), (lv, LV_COLOUR)] {
        for i in 1..curve.len() {
            if curve[i - 1].is_finite() && curve[i].is_finite() {
                thick_line(
                    &mut img,
                    px(i - 1),
                    py(curve[i - 1]),
                    px(i),
                    py(curve[i]),
                    colour,
                );
            }
        }
        for (i, &v) in curve.iter().enumerate() {
            if v.is_finite() {
                square(&mut img, px(i), py(v), 2, colour);
            }
        }
    }
    Ok(img)
}

/// A round tick spacing (1, 2 or 5 x 10^k) giving about 4-8 ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag)
}

/// Bresenham line, clipped by [`RgbImage::put`].
pub(crate) fn line(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        img.put(x, y, c);
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

pub(crate) fn thick_line(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
    for (ox, oy) in [(0, 0), (1, 0), (0, 1)] {
        line(img, x0 + ox, y0 + oy, x1 + ox, y1 + oy, c);
    }
}

pub(crate) fn square(img: &mut RgbImage, x: i64, y: i64, r: i64, c: [u8; 3]) {
    for yy in y - r..=y + r {
        for xx in x - r..=x + r {
            img.put(xx, yy, c);
        }
    }
}

/// 3x5 glyphs, one row per entry, bit 2 = left column.
fn glyph(ch: char) -> [u8; 5] {
    match ch {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'E' => [7, 4, 7, 4, 7],
        'D' => [6, 5, 5, 5, 6],
        'S' => [3, 4, 2, 1, 6],
        'M' => [5, 7, 7, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        '-' => [0, 0, 7, 0, 0],
        _ => [0; 5],
    }
}

pub(crate) fn text_width(s: &str) -> i64 {
    s.chars().count() as i64 * 4 * TEXT_SCALE
}

pub(crate) fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, c: [u8; 3]) {
    for (k, ch) in s.chars().enumerate() {
        let g = glyph(ch);
        let gx = x + k as i64 * 4 * TEXT_SCALE;
        for (row, bits) in g.iter().enumerate() {
            for col in 0..3i64 {
                if bits & (4 >> col) != 0 {
                    let (x0, y0) = (gx + col * TEXT_SCALE, y + row as i64 * TEXT_SCALE);
                    for dy in 0..TEXT_SCALE {
                        for dx in 0..TEXT_SCALE {
                            img.put(x0 + dx, y0 + dy, c);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_marks_ed_es_and_draws_curves() {
        let lv: Vec<f64> = (0..20)
            .map(|i| 100.0 + 40.0 * ((i as f64 - 7.0) * std::f64::consts::PI / 10.0).cos())
            .collect();
        let rv: Vec<f64> = lv.iter().map(|v| v * 1.1).collect();
        let (ed, es) = (7, 17);
        let img = volume_curve(&lv, &rv, ed, es, 400, 240).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curve.png");
        img.save_png(&path).unwrap();
        let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let mut reader = png::Decoder::new(file).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (400, 240));
        assert_eq!(&buf[..info.buffer_size()], &img.data[..]);

        let count = |c: [u8; 3], x_range: std::ops::Range<usize>| {
            (0..img.height)
                .flat_map(|y| x_range.clone().map(move |x| (x, y)))
                .filter(|&(x, y)| img.pixel(x, y) == Some(c))
                .count()
        };
        assert!(count(LV_COLOUR, 0..400) > 200, "LV curve drawn");
        assert!(count(RV_COLOUR, 0..400) > 200, "RV curve drawn");
        // Marker columns: x = 44 + i * (388 - 44) / 19.
        let x_of = |i: usize| 44 + i * (388 - 44) / 19;
        assert!(
            count(ED_COLOUR, x_of(ed)..x_of(ed) + 1) > 40,
            "ED marker at its phase"
        );
        assert!(
            count(ES_COLOUR, x_of(es)..x_of(es) + 1) > 40,
            "ES marker at its phase"
        );
        assert_eq!(count(ED_COLOUR, x_of(es)..x_of(es) + 1), 0);
        // The LV peak (ED) is drawn higher (smaller y) than the LV trough (ES).
        let top_of = |x: usize| (0..img.height).find(|&y| img.pixel(x, y) == Some(LV_COLOUR));
        assert!(top_of(x_of(ed)).unwrap() + 50 < top_of(x_of(es)).unwrap());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(volume_curve(&[], &[], 0, 0, 400, 240).is_err());
        assert!(volume_curve(&[1.0, 2.0], &[1.0], 0, 1, 400, 240).is_err());
        assert!(volume_curve(&[1.0, 2.0], &[], 0, 2, 400, 240).is_err());
        assert!(volume_curve(&[1.0, 2.0], &[], 0, 1, 50, 50).is_err());
        let single = volume_curve(&[80.0], &[], 0, 0, 200, 120).unwrap();
        assert_eq!((single.width, single.height), (200, 120));
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(100.0), 20.0);
        assert_eq!(tick_step(230.0), 50.0);
        assert_eq!(tick_step(7.0), 2.0);
    }
}
