//! Learning curves of a transfer-learning experiment: test Dice (in %) per epoch for each
//! fine-tuning arm, and flat dashed lines for arms without epochs (the base model, BatchNorm
//! adaptation). Drawn with plotters and the bundled font, as the volume curve is: a legend
//! that names every arm, titled axes with units.

use plotters::prelude::*;

use super::font::{self, draw_err};
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
    /// The legend entry (the arm's name).
    pub name: String,
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
    font::ensure_registered()?;
    let mut buf = vec![255u8; width * height * 3];
    {
        let root =
            BitMapBackend::with_buffer(&mut buf, (width as u32, height as u32)).into_drawing_area();
        draw(&root, series)?;
        root.present().map_err(draw_err)?;
    }
    Ok(RgbImage {
        width,
        height,
        data: buf,
    })
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    series: &[Series],
) -> Result<(), ReportError> {
    root.fill(&WHITE).map_err(draw_err)?;
    let epochs = series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let x_end = epochs as f64;
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(52)
        .build_cartesian_2d(1.0..x_end, 0.0..100.0)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("Epoch")
        .y_desc("Test Dice (%)")
        .x_labels(epochs.min(12))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((font::FAMILY, 13))
        .axis_desc_style((font::FAMILY, 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(draw_err)?;
    for s in series {
        let colour = RGBColor(s.colour[0], s.colour[1], s.colour[2]);
        let pct = |v: f64| 100.0 * v.clamp(0.0, 1.0);
        match s.values.as_slice() {
            [] => {}
            [v] if v.is_finite() => {
                // A reference without epochs: a dashed horizontal line.
                let y = pct(*v);
                let dashes = (0..)
                    .map(|k| 1.0 + k as f64 * 0.04 * (x_end - 1.0))
                    .take_while(|x| *x < x_end)
                    .map(move |x| {
                        PathElement::new(
                            vec![(x, y), ((x + 0.02 * (x_end - 1.0)).min(x_end), y)],
                            colour.stroke_width(2),
                        )
                    });
                chart
                    .draw_series(dashes)
                    .map_err(draw_err)?
                    .label(format!("{} (no epochs)", s.name))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 7, y)], colour.stroke_width(2))
                    });
            }
            vals => {
                let pts: Vec<(f64, f64)> = vals
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(i, v)| ((i + 1) as f64, pct(*v)))
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                    .map_err(draw_err)?
                    .label(s.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                    .map_err(draw_err)?;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((font::FAMILY, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_curves_in_their_colours_with_a_legend() {
        let s = vec![
            Series {
                name: "base".into(),
                values: vec![0.5],
                colour: SERIES_COLOURS[1],
            },
            Series {
                name: "paper recipe".into(),
                values: vec![0.2, 0.6, 0.8],
                colour: SERIES_COLOURS[2],
            },
        ];
        let img = learning_curves(&s, 640, 360).unwrap();
        let count = |c: [u8; 3]| img.data.chunks(3).filter(|p| *p == c).count();
        assert!(count(SERIES_COLOURS[1]) > 50 && count(SERIES_COLOURS[2]) > 50);
        let dark = img
            .data
            .chunks(3)
            .filter(|p| p.iter().all(|&v| v < 80))
            .count();
        assert!(
            dark > 300,
            "axes, titles and legend drawn ({dark} dark pixels)"
        );
        assert!(learning_curves(&[], 320, 200).is_err());
        assert!(learning_curves(&s, 50, 50).is_err());
    }
}
