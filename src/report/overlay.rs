//! Segmentation overlays: what a clinician looks at to decide whether to trust the numbers.
//!
//! The grey image is windowed by percentiles (1st to 99th by default) rather than min/max, so
//! a few very bright pixels (fat, flow artefacts) do not wash out the myocardium. Classes are
//! coloured LV red, MYO green, RV blue, either as translucent fill or as contours.

use super::{ReportError, RgbImage};
use crate::analysis::volume::{LabelVolume, LV, MYO, RV};

/// Colour of the LV blood pool.
pub const LV_COLOUR: [u8; 3] = [255, 32, 32];
/// Colour of the LV myocardium.
pub const MYO_COLOUR: [u8; 3] = [32, 230, 32];
/// Colour of the RV blood pool.
pub const RV_COLOUR: [u8; 3] = [40, 110, 255];

/// How labels are drawn over the image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OverlayStyle {
    /// Translucent fill: `alpha` of the class colour over the grey value (0..1).
    Fill {
        /// Opacity of the class colour.
        alpha: f32,
    },
    /// One-pixel class boundaries only, leaving the anatomy visible inside.
    Contour,
    /// Translucent fill with opaque boundaries.
    FillAndContour {
        /// Opacity of the class colour inside.
        alpha: f32,
    },
}

impl Default for OverlayStyle {
    fn default() -> Self {
        OverlayStyle::FillAndContour { alpha: 0.35 }
    }
}

/// The colour of a class, `None` for background or unknown classes.
pub fn class_colour(class: u8) -> Option<[u8; 3]> {
    match class {
        LV => Some(LV_COLOUR),
        MYO => Some(MYO_COLOUR),
        RV => Some(RV_COLOUR),
        _ => None,
    }
}

/// Display window from the `low`..`high` percentiles (0..100) of the finite pixels, computed
/// by the same percentile code as input normalisation (`image::percentile_window`). Returns a
/// window of width at least 1e-6 so that flat images do not divide by zero, and (0, 1) when no
/// pixel is finite.
pub fn percentile_window(image: &[f32], low: f32, high: f32) -> (f32, f32) {
    if !image.iter().any(|x| x.is_finite()) {
        return (0.0, 1.0);
    }
    let (lo, hi) = crate::image::percentile_window(image, low, high);
    (lo, if hi > lo { hi } else { lo + 1e-6 })
}

/// The image windowed to 8-bit grey (1st-99th percentile).
pub fn grey(image: &[f32], width: usize, height: usize) -> Result<RgbImage, ReportError> {
    check_len("image", image.len(), width, height)?;
    let (lo, hi) = percentile_window(image, 1.0, 99.0);
    let mut data = Vec::with_capacity(width * height * 3);
    for &x in image {
        let g = if x.is_finite() {
            ((x - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0
        } else {
            0.0
        };
        let g = g.round() as u8;
        data.extend_from_slice(&[g, g, g]);
    }
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

/// Overlay of one 2D slice: `image` and `labels` are both `width * height`, row-major.
pub fn overlay(
    image: &[f32],
    labels: &[u8],
    width: usize,
    height: usize,
    style: OverlayStyle,
) -> Result<RgbImage, ReportError> {
    check_len("labels", labels.len(), width, height)?;
    let mut out = grey(image, width, height)?;
    let (fill, contour) = match style {
        OverlayStyle::Fill { alpha } => (alpha, false),
        OverlayStyle::Contour => (0.0, true),
        OverlayStyle::FillAndContour { alpha } => (alpha, true),
    };
    let fill = fill.clamp(0.0, 1.0);
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            let Some(colour) = class_colour(labels[i]) else {
                continue;
            };
            let px = &mut out.data[3 * i..3 * i + 3];
            if contour && is_boundary(labels, width, height, x, y) {
                px.copy_from_slice(&colour);
            } else if fill > 0.0 {
                for (p, &c) in px.iter_mut().zip(colour.iter()) {
                    *p = (*p as f32 * (1.0 - fill) + c as f32 * fill).round() as u8;
                }
            }
        }
    }
    Ok(out)
}

/// Overlay of slice `slice` of a volume; `stack` holds the images of all slices in the
/// volume's order (x, then y, then slice).
pub fn overlay_slice(
    stack: &[f32],
    vol: &LabelVolume,
    slice: usize,
    style: OverlayStyle,
) -> Result<RgbImage, ReportError> {
    let n = vol.slice_len();
    check_len("image stack", stack.len(), n, vol.slices)?;
    let labels = vol.slice(slice).ok_or_else(|| {
        ReportError::Shape(format!("slice {slice} of a {}-slice volume", vol.slices))
    })?;
    overlay(
        &stack[slice * n..(slice + 1) * n],
        labels,
        vol.width,
        vol.height,
        style,
    )
}

/// Tiles images left to right, top to bottom, `columns` per row, separated by `gap` black
/// pixels; tiles of different sizes are placed at the top left of equal cells.
pub fn montage(tiles: &[RgbImage], columns: usize, gap: usize) -> Result<RgbImage, ReportError> {
    if tiles.is_empty() || columns == 0 {
        return Err(ReportError::Shape(format!(
            "montage of {} tiles in {columns} columns",
            tiles.len()
        )));
    }
    let cw = tiles.iter().map(|t| t.width).max().unwrap_or(0);
    let ch = tiles.iter().map(|t| t.height).max().unwrap_or(0);
    let cols = columns.min(tiles.len());
    let rows = tiles.len().div_ceil(cols);
    let mut out = RgbImage::filled(
        cols * cw + (cols - 1) * gap,
        rows * ch + (rows - 1) * gap,
        [0, 0, 0],
    );
    for (k, t) in tiles.iter().enumerate() {
        check_len("tile", t.data.len() / 3, t.width, t.height)?;
        let (ox, oy) = ((k % cols) * (cw + gap), (k / cols) * (ch + gap));
        for y in 0..t.height {
            let src = &t.data[3 * y * t.width..3 * (y + 1) * t.width];
            let start = 3 * ((oy + y) * out.width + ox);
            out.data[start..start + src.len()].copy_from_slice(src);
        }
    }
    Ok(out)
}

/// A pixel is on the boundary when a 4-neighbour has another label or lies outside.
fn is_boundary(labels: &[u8], w: usize, h: usize, x: usize, y: usize) -> bool {
    let l = labels[y * w + x];
    x == 0
        || y == 0
        || x + 1 == w
        || y + 1 == h
        || labels[y * w + x - 1] != l
        || labels[y * w + x + 1] != l
        || labels[(y - 1) * w + x] != l
        || labels[(y + 1) * w + x] != l
}

fn check_len(what: &str, len: usize, width: usize, height: usize) -> Result<(), ReportError> {
    if width.checked_mul(height) == Some(len) && len > 0 {
        Ok(())
    } else {
        Err(ReportError::Shape(format!(
            "{what} has {len} values, expected {width}x{height}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(path: &std::path::Path) -> (u32, u32, Vec<u8>) {
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let mut reader = png::Decoder::new(file).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    /// A 40x30 gradient image with an LV disc, a MYO ring and an RV square.
    fn scene() -> (Vec<f32>, Vec<u8>) {
        let (w, h) = (40i32, 30i32);
        let mut img = Vec::new();
        let mut lab = Vec::new();
        for y in 0..h {
            for x in 0..w {
                img.push((x + y) as f32 * 10.0);
                let d2 = (x - 25).pow(2) + (y - 15).pow(2);
                lab.push(if d2 <= 25 {
                    LV
                } else if d2 <= 64 {
                    MYO
                } else if (3..10).contains(&x) && (10..20).contains(&y) {
                    RV
                } else {
                    0
                });
            }
        }
        (img, lab)
    }

    #[test]
    fn fill_overlay_png_round_trip() {
        let (img, lab) = scene();
        let rgb = overlay(&img, &lab, 40, 30, OverlayStyle::Fill { alpha: 0.6 }).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overlay.png");
        rgb.save_png(&path).unwrap();
        let (w, h, data) = decode(&path);
        assert_eq!((w, h), (40, 30));
        assert_eq!(data, rgb.data);
        let px = |x: usize, y: usize| &data[3 * (y * 40 + x)..3 * (y * 40 + x) + 3];
        let lv = px(25, 15);
        assert!(lv[0] > lv[1] + 60 && lv[0] > lv[2] + 60, "LV pixel {lv:?}");
        let myo = px(25, 15 + 7);
        assert!(
            myo[1] > myo[0] + 60 && myo[1] > myo[2] + 60,
            "MYO pixel {myo:?}"
        );
        let rv = px(5, 15);
        assert!(rv[2] > rv[0] + 60 && rv[2] > rv[1] + 40, "RV pixel {rv:?}");
        let bg = px(1, 1);
        assert!(
            bg[0] == bg[1] && bg[1] == bg[2],
            "background stays grey {bg:?}"
        );
    }

    #[test]
    fn contour_marks_only_boundaries() {
        let (img, lab) = scene();
        let rgb = overlay(&img, &lab, 40, 30, OverlayStyle::Contour).unwrap();
        let edge = rgb.pixel(30, 15).unwrap(); // LV boundary (d = 5)
        assert_eq!(edge, LV_COLOUR);
        let inside = rgb.pixel(25, 15).unwrap();
        assert!(
            inside[0] == inside[1] && inside[1] == inside[2],
            "interior grey {inside:?}"
        );
    }

    #[test]
    fn window_ignores_outliers() {
        let mut img: Vec<f32> = (0..1000).map(|i| (i % 100) as f32).collect();
        img[0] = 1e6;
        img[1] = f32::NAN;
        let (lo, hi) = percentile_window(&img, 1.0, 99.0);
        assert!(lo <= 2.0 && (95.0..=99.0).contains(&hi), "{lo} {hi}");
        assert_eq!(percentile_window(&[5.0; 4], 1.0, 99.0).0, 5.0);
    }

    #[test]
    fn montage_layout_and_errors() {
        let a = RgbImage::filled(4, 3, [255, 0, 0]);
        let b = RgbImage::filled(2, 2, [0, 255, 0]);
        let m = montage(&[a.clone(), b, a], 2, 1).unwrap();
        assert_eq!((m.width, m.height), (9, 7));
        assert_eq!(m.pixel(0, 0), Some([255, 0, 0]));
        assert_eq!(m.pixel(4, 0), Some([0, 0, 0]), "gap");
        assert_eq!(m.pixel(5, 1), Some([0, 255, 0]));
        assert_eq!(m.pixel(8, 2), Some([0, 0, 0]), "padding of the small tile");
        assert_eq!(m.pixel(3, 6), Some([255, 0, 0]));
        assert!(montage(&[], 2, 0).is_err());
        let (img, lab) = scene();
        assert!(overlay(&img, &lab[1..], 40, 30, OverlayStyle::Contour).is_err());
    }

    #[test]
    fn overlay_slice_picks_the_slice() {
        let (img, lab) = scene();
        let mut vol = LabelVolume::new(40, 30, 2, [1.0, 1.0, 8.0]);
        vol.labels[1200..].copy_from_slice(&lab);
        let stack: Vec<f32> = img.iter().chain(img.iter()).copied().collect();
        let s0 = overlay_slice(&stack, &vol, 0, OverlayStyle::Fill { alpha: 0.6 }).unwrap();
        let s1 = overlay_slice(&stack, &vol, 1, OverlayStyle::Fill { alpha: 0.6 }).unwrap();
        assert_ne!(s0, s1);
        assert_eq!(
            s1,
            overlay(&img, &lab, 40, 30, OverlayStyle::Fill { alpha: 0.6 }).unwrap()
        );
        assert!(overlay_slice(&stack, &vol, 2, OverlayStyle::Contour).is_err());
    }
}
