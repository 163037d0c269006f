//! Learning curves of a transfer-learning experiment: test Dice (in %) per epoch for each
//! fine-tuning arm, and flat dashed lines for arms without epochs (the base model, BatchNorm
//! adaptation). Drawn with the plot module's primitives; series are numbered 1..n in a legend
//! of colour swatches because the bitmap font has digits only; the Markdown table says which
//! number is which.

use super::pixels::{line, square, text, text_width, thick_line};
use super::{ReportError, RgbImage};

/// Distinct colours for up to eight series (cycled beyond).
pub const SERIES_COLOURS: [[u8; 3]; 8] = [
    [0, 0, 0],
    [220, 40, 40],
    [40, 90, 230],
    [0, 150, 60],
    [230, 130, 0],
    [150, 60, 190],
    [0, 160, 170],
    [120, 120, 120],
];

/// One curve: values per epoch (a single value draws a flat dashed reference line).
#[derive(Clone, Debug)]
pub struct Series {
    pub values: Vec<f64>,
    pub colour: [u8; 3],
}

/// Plots `series` (values in 0..1) over epochs 1..=max length, y axis 0..100 %.
pub fn learning_curves(
    series: &[Series],
    width: usize,
    height: usize,
) -> Result<RgbImage, ReportError> {
    if width < 160 || height < 100 {
        return Err(ReportError::Shape(format!(
            "plot {width}x{height} is too small (min 160x100)"
        )));
    }
    if series.is_empty() {
        return Err(ReportError::Shape("no series to plot".into()));
    }
    let mut img = RgbImage::filled(width, height, [255, 255, 255]);
    let (left, right, top, bottom) = (44i64, width as i64 - 12, 30i64, height as i64 - 24);
    let n = series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let px = |i: usize| left + (i as i64 * (right - left)) / (n as i64 - 1);
    let py = |v: f64| bottom - (v.clamp(0.0, 1.0) * (bottom - top) as f64).round() as i64;
    for k in 0..=5 {
        let v = k as f64 / 5.0;
        line(&mut img, left, py(v), right, py(v), [225, 225, 225]);
        let label = format!("{}", k * 20);
        text(
            &mut img,
            left - 6 - text_width(&label),
            py(v) - 4,
            &label,
            [0, 0, 0],
        );
    }
    line(&mut img, left, top, left, bottom, [0, 0, 0]);
    line(&mut img, left, bottom, right, bottom, [0, 0, 0]);
    for (i, label) in [(0, "1".to_string()), (n - 1, n.to_string())] {
        text(
            &mut img,
            px(i) - text_width(&label) / 2,
            bottom + 6,
            &label,
            [0, 0, 0],
        );
    }
    for (k, s) in series.iter().enumerate() {
        // Legend: number and swatch along the top.
        let lx = left + 8 + k as i64 * 36;
        text(&mut img, lx, 8, &(k + 1).to_string(), [0, 0, 0]);
        for dy in 0..6 {
            line(&mut img, lx + 12, 10 + dy, lx + 26, 10 + dy, s.colour);
        }
        match s.values.as_slice() {
            [] => {}
            [v] if v.is_finite() => {
                let mut x = left;
                while x < right {
                    thick_line(&mut img, x, py(*v), (x + 6).min(right), py(*v), s.colour);
                    x += 12;
                }
            }
            vals => {
                for i in 1..vals.len() {
                    if vals[i - 1].is_finite() && vals[i].is_finite() {
                        thick_line(
                            &mut img,
                            px(i - 1),
                            py(vals[i - 1]),
                            px(i),
                            py(vals[i]),
                            s.colour,
                        );
                    }
                }
                for (i, v) in vals.iter().enumerate().filter(|(_, v)| v.is_finite()) {
                    square(&mut img, px(i), py(*v), 2, s.colour);
                }
            }
        }
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_curves_in_their_colours() {
        let s = vec![
            Series {
                values: vec![0.5],
                colour: SERIES_COLOURS[1],
            },
            Series {
                values: vec![0.2, 0.6, 0.8],
                colour: SERIES_COLOURS[2],
            },
        ];
        let img = learning_curves(&s, 320, 200).unwrap();
        let count = |c: [u8; 3]| {
            (0..img.height)
                .flat_map(|y| (0..img.width).map(move |x| (x, y)))
                .filter(|(x, y)| img.pixel(*x, *y) == Some(c))
                .count()
        };
        assert!(count(SERIES_COLOURS[1]) > 50 && count(SERIES_COLOURS[2]) > 50);
        assert!(learning_curves(&[], 320, 200).is_err());
        assert!(learning_curves(&s, 50, 50).is_err());
    }
}
