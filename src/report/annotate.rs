//! Real text on pictures: the overlay secondary captures get an enlarged image with a caption
//! band (slice, phase, time) and a colour key naming each structure, and the summary page is
//! drawn from lines of text and a pasted plot. Text is rendered by plotters with the bundled
//! font ([`super::font`]).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::overlay::{LV_COLOUR, MYO_COLOUR, RV_COLOUR};
use super::{font, ReportError, RgbImage};

/// The structures and their overlay colours, in the order the key lists them.
pub const KEY: [(&str, [u8; 3]); 3] = [
    ("LV blood pool", LV_COLOUR),
    ("LV myocardium", MYO_COLOUR),
    ("RV blood pool", RV_COLOUR),
];

/// Height of the caption band under an overlay.
const BAND: usize = 46;

/// Nearest-neighbour enlargement by an integer factor.
pub fn enlarge(img: &RgbImage, k: usize) -> RgbImage {
    let k = k.max(1);
    let (w, h) = (img.width * k, img.height * k);
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let i = 3 * ((y / k) * img.width + x / k);
            data.extend_from_slice(&img.data[i..i + 3]);
        }
    }
    RgbImage {
        width: w,
        height: h,
        data,
    }
}

/// `img` enlarged to at least 384 pixels wide, with `caption` and the colour key in a black
/// band below it.
pub fn captioned_overlay(img: &RgbImage, caption: &str) -> Result<RgbImage, ReportError> {
    let k = 384usize.div_ceil(img.width.max(1)).clamp(1, 4);
    let big = enlarge(img, k);
    let (w, h) = (big.width, big.height + BAND);
    let mut data = big.data;
    data.resize(w * h * 3, 0);
    font::ensure_registered()?;
    {
        let root = BitMapBackend::with_buffer(&mut data, (w as u32, h as u32)).into_drawing_area();
        let y0 = big.height as i32;
        let white = (font::FAMILY, 15).into_font().color(&WHITE);
        root.draw_text(caption, &white, (6, y0 + 4))
            .map_err(draw_err)?;
        let mut x = 6;
        for (name, c) in KEY {
            let colour = RGBColor(c[0], c[1], c[2]);
            root.draw(&Rectangle::new(
                [(x, y0 + 26), (x + 12, y0 + 38)],
                colour.filled(),
            ))
            .map_err(draw_err)?;
            let style = (font::FAMILY, 14).into_font().color(&WHITE);
            root.draw_text(name, &style, (x + 16, y0 + 25))
                .map_err(draw_err)?;
            let (tw, _) = root.estimate_text_size(name, &style).map_err(draw_err)?;
            x += 16 + tw as i32 + 14;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(RgbImage {
        width: w,
        height: h,
        data,
    })
}

/// A line of text on a page: position, size, bold, colour.
pub struct Line {
    /// Left edge (px).
    pub x: i32,
    /// Top edge (px).
    pub y: i32,
    /// Font size (px).
    pub size: u32,
    /// Colour.
    pub colour: [u8; 3],
    /// The text.
    pub text: String,
    /// Right-aligned at `x` instead of left-aligned.
    pub right: bool,
}

/// Draws `lines` and pastes `pictures` (top-left corner, image) onto a white page.
pub fn page(
    width: usize,
    height: usize,
    lines: &[Line],
    pictures: &[((usize, usize), &RgbImage)],
) -> Result<RgbImage, ReportError> {
    let mut out = RgbImage::filled(width, height, [255, 255, 255]);
    for &((px, py), pic) in pictures {
        for y in 0..pic.height.min(height.saturating_sub(py)) {
            let w = pic.width.min(width.saturating_sub(px));
            let src = &pic.data[3 * y * pic.width..3 * (y * pic.width + w)];
            let d = 3 * ((py + y) * width + px);
            out.data[d..d + 3 * w].copy_from_slice(src);
        }
    }
    font::ensure_registered()?;
    {
        let root = BitMapBackend::with_buffer(&mut out.data, (width as u32, height as u32))
            .into_drawing_area();
        for l in lines {
            let c = RGBColor(l.colour[0], l.colour[1], l.colour[2]);
            let mut style = (font::FAMILY, l.size).into_font().color(&c);
            if l.right {
                style = style.pos(Pos::new(HPos::Right, VPos::Top));
            }
            root.draw_text(&l.text, &style, (l.x, l.y))
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(out)
}

fn draw_err<E: std::error::Error>(e: E) -> ReportError {
    ReportError::Draw(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caption_band_has_text_and_every_key_colour() {
        let img = RgbImage::filled(96, 80, [40, 40, 40]);
        let out = captioned_overlay(&img, "Slice 3 of 12, ED (phase 1 of 20)").unwrap();
        assert_eq!((out.width, out.height), (384, 320 + BAND));
        let band = &out.data[3 * 320 * out.width..];
        for (_, c) in KEY {
            assert!(band.chunks(3).any(|p| p == c), "key colour {c:?} missing");
        }
        let bright = band
            .chunks(3)
            .filter(|p| p.iter().all(|&v| v > 200))
            .count();
        assert!(bright > 100, "caption text drawn ({bright} white pixels)");
    }
}
