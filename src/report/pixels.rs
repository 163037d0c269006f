//! Pixel drawing primitives and a tiny digits-only bitmap font for the training learning curves
//! (a developer's plot). Everything a clinician reads is drawn with plotters and real text
//! instead (see [`super::volume_plot`]).

use super::RgbImage;

const TEXT_SCALE: i64 = 2;

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
