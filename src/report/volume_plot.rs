//! The ventricular volume curve: LV and RV blood-pool volume (ml) over the cardiac cycle with ED
//! and ES marked, a legend and titled axes with units. One drawing, two outputs: SVG inline in
//! report.html, and an RGB bitmap for the summary page secondary capture.

use plotters::prelude::*;

use super::font::{self, draw_err};
use super::overlay::{LV_COLOUR, RV_COLOUR};
use super::{ReportError, RgbImage};

/// Colour of the end-diastole marker.
pub const ED_COLOUR: [u8; 3] = [0, 140, 0];
/// Colour of the end-systole marker.
pub const ES_COLOUR: [u8; 3] = [220, 120, 0];

/// What the plot shows.
pub struct VolumeCurve<'a> {
    /// LV volume per phase (ml).
    pub lv: &'a [f64],
    /// RV volume per phase (ml); empty when no RV was segmented.
    pub rv: &'a [f64],
    /// Trigger time per phase (ms); when given (and as long as `lv`), the x axis is time.
    pub times_ms: Option<&'a [f64]>,
    /// End-diastolic phase.
    pub ed_phase: usize,
    /// End-systolic phase.
    pub es_phase: usize,
}

impl<'a> VolumeCurve<'a> {
    /// The curve of a series' summary, on `times_ms` when given.
    pub fn of(
        s: &'a crate::analysis::volumes::CardiacSummary,
        times_ms: Option<&'a [f64]>,
    ) -> Self {
        VolumeCurve {
            lv: &s.lv_curve_ml,
            rv: &s.rv_curve_ml,
            times_ms,
            ed_phase: s.ed_phase,
            es_phase: s.es_phase,
        }
    }

    fn check(&self) -> Result<(), ReportError> {
        let n = self.lv.len();
        if n == 0 || (!self.rv.is_empty() && self.rv.len() != n) {
            return Err(ReportError::Shape(format!(
                "{n} LV and {} RV volumes",
                self.rv.len()
            )));
        }
        if self.ed_phase >= n || self.es_phase >= n {
            return Err(ReportError::Shape(format!(
                "ED {} / ES {} outside {n} phases",
                self.ed_phase, self.es_phase
            )));
        }
        Ok(())
    }

    /// The x coordinate of phase `i`: its trigger time when known, else its number.
    fn x(&self, i: usize) -> f64 {
        match self.times_ms {
            Some(t) if t.len() == self.lv.len() => t[i],
            _ => i as f64,
        }
    }

    fn x_title(&self) -> &'static str {
        match self.times_ms {
            Some(t) if t.len() == self.lv.len() => "Time after R wave (ms)",
            _ => "Cardiac phase",
        }
    }

    /// The plot as an SVG document of `width` x `height` pixels.
    pub fn svg(&self, width: u32, height: u32) -> Result<String, ReportError> {
        self.check()?;
        font::ensure_registered()?;
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(draw_err)?;
        }
        Ok(out)
    }

    /// The plot as an RGB image.
    pub fn bitmap(&self, width: u32, height: u32) -> Result<RgbImage, ReportError> {
        self.check()?;
        font::ensure_registered()?;
        let mut buf = vec![255u8; width as usize * height as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(draw_err)?;
        }
        Ok(RgbImage {
            width: width as usize,
            height: height as usize,
            data: buf,
        })
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), ReportError> {
        root.fill(&WHITE).map_err(draw_err)?;
        let n = self.lv.len();
        let (x0, x1) = (self.x(0), self.x(n - 1));
        let span = if x1 > x0 { x1 - x0 } else { 1.0 };
        let vmax = self
            .lv
            .iter()
            .chain(self.rv)
            .copied()
            .filter(|v| v.is_finite())
            .fold(1.0f64, f64::max);
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x0 - 0.02 * span..x1 + 0.02 * span, 0.0..vmax * 1.4)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc(self.x_title())
            .y_desc("Volume (ml)")
            .label_style((font::FAMILY, 14))
            .axis_desc_style((font::FAMILY, 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(draw_err)?;
        let rgb = |c: [u8; 3]| RGBColor(c[0], c[1], c[2]);
        let mut series = vec![("LV blood pool", self.lv, rgb(LV_COLOUR))];
        if !self.rv.is_empty() {
            series.push(("RV blood pool", self.rv, rgb(RV_COLOUR)));
        }
        for (name, values, colour) in series {
            let pts: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (self.x(i), *v))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                .map_err(draw_err)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(draw_err)?;
        }
        for (tag, phase, colour) in [
            ("ED", self.ed_phase, rgb(ED_COLOUR)),
            ("ES", self.es_phase, rgb(ES_COLOUR)),
        ] {
            let x = self.x(phase);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, vmax * 1.4)],
                    colour.stroke_width(1),
                )))
                .map_err(draw_err)?
                .label(format!("{tag} (phase {})", phase + 1))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(1))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((font::FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve() -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let lv = vec![150.0, 120.0, 80.0, 60.0, 90.0, 140.0];
        let rv = vec![160.0, 130.0, 90.0, 70.0, 100.0, 150.0];
        let t = vec![0.0, 100.0, 200.0, 300.0, 400.0, 500.0];
        (lv, rv, t)
    }

    #[test]
    fn svg_has_legend_axis_titles_and_units() {
        let (lv, rv, t) = curve();
        let c = VolumeCurve {
            lv: &lv,
            rv: &rv,
            times_ms: Some(&t),
            ed_phase: 0,
            es_phase: 3,
        };
        let svg = c.svg(640, 360).unwrap();
        for text in [
            "LV blood pool",
            "RV blood pool",
            "Volume (ml)",
            "Time after R wave (ms)",
            "ED (phase 1)",
            "ES (phase 4)",
        ] {
            assert!(svg.contains(text), "{text} missing from the SVG");
        }
    }

    #[test]
    fn bitmap_draws_both_curves_in_their_colours() {
        let (lv, rv, _) = curve();
        let c = VolumeCurve {
            lv: &lv,
            rv: &rv,
            times_ms: None,
            ed_phase: 0,
            es_phase: 3,
        };
        let img = c.bitmap(640, 360).unwrap();
        let has = |c: [u8; 3]| img.data.chunks(3).any(|p| p == c);
        assert!(has(LV_COLOUR) && has(RV_COLOUR));
        let dark = img
            .data
            .chunks(3)
            .filter(|p| p.iter().all(|&v| v < 80))
            .count();
        assert!(dark > 200, "axis and text drawn ({dark} dark pixels)");
    }

    #[test]
    fn rejects_mismatched_input() {
        let c = VolumeCurve {
            lv: &[1.0, 2.0],
            rv: &[1.0],
            times_ms: None,
            ed_phase: 0,
            es_phase: 1,
        };
        assert!(c.svg(640, 360).is_err());
        let c = VolumeCurve {
            lv: &[1.0, 2.0],
            rv: &[],
            times_ms: None,
            ed_phase: 0,
            es_phase: 5,
        };
        assert!(c.bitmap(640, 360).is_err());
    }
}
