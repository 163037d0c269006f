//! Sunnybrook-style contour files (`x y` per line, pixel coordinates, x = column, y = row) into
//! label masks by polygon fill: LV blood pool inside the endocardium (`i-contours`), myocardium
//! between epicardium (`o-contours`) and endocardium. Only LV and MYO are ever drawn in this
//! data, so the masks say so: RV is unknown, never "background".

use std::path::{Path, PathBuf};

use super::error::DicomError;
use super::masks::{LabelMasks, LV, MYO};
use super::stack::CineStack;

/// Most points a contour file may hold (real ones have a few hundred).
const MAX_POINTS: usize = 100_000;

/// Read one contour file into (x, y) points.
pub fn read_contour(path: &Path) -> Result<Vec<[f64; 2]>, DicomError> {
    let text = std::fs::read_to_string(path).map_err(|e| DicomError::io(path, e))?;
    let bad = |reason: String| DicomError::Contour {
        path: path.to_path_buf(),
        reason,
    };
    let mut points = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut it = line.split_whitespace().map(str::parse::<f64>);
        match (it.next(), it.next(), it.next()) {
            (Some(Ok(x)), Some(Ok(y)), None) if x.is_finite() && y.is_finite() => {
                points.push([x, y])
            }
            _ => {
                return Err(bad(format!(
                    "line {}: expected two numbers, got {line:?}",
                    n + 1
                )))
            }
        }
        if points.len() > MAX_POINTS {
            return Err(bad(format!("more than {MAX_POINTS} points")));
        }
    }
    if points.len() < 3 {
        return Err(bad(format!(
            "{} points: a contour needs at least 3",
            points.len()
        )));
    }
    Ok(points)
}

/// Pixels whose centre (x = column, y = row) lies inside the closed polygon (even-odd rule).
pub fn fill_polygon(points: &[[f64; 2]], rows: usize, cols: usize) -> Vec<bool> {
    let mut inside = vec![false; rows * cols];
    let n = points.len();
    let mut crossings: Vec<f64> = Vec::new();
    for r in 0..rows {
        let y = r as f64;
        crossings.clear();
        for i in 0..n {
            let (a, b) = (points[i], points[(i + 1) % n]);
            // Half-open rule so a vertex on the scanline is counted once.
            if (a[1] <= y) != (b[1] <= y) {
                crossings.push(a[0] + (y - a[1]) / (b[1] - a[1]) * (b[0] - a[0]));
            }
        }
        crossings.sort_by(f64::total_cmp);
        for pair in crossings.chunks_exact(2) {
            let (x0, x1) = (
                pair[0].ceil().max(0.0),
                pair[1].floor().min(cols as f64 - 1.0),
            );
            if x1 < x0 {
                continue;
            }
            for c in x0 as usize..=x1 as usize {
                if let Some(v) = inside.get_mut(r * cols + c) {
                    *v = true;
                }
            }
        }
    }
    inside
}

/// Image number N of a Sunnybrook contour file name `IM-0001-NNNN-icontour-manual.txt`, and
/// whether it is an inner (endocardial) contour.
fn parse_name(name: &str) -> Option<(usize, bool)> {
    let mut parts = name.split('-');
    let (_, _, number, kind) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let inner = match kind {
        "icontour" => true,
        "ocontour" => false,
        _ => return None,
    };
    Some((number.parse().ok()?, inner))
}

/// Masks for `stack` from a Sunnybrook contour folder (with `i-contours/` and `o-contours/`).
/// File `IM-0001-NNNN-*` belongs to the source image `NNNN.dcm` (by file stem).
pub fn sunnybrook_masks(stack: &CineStack, contour_dir: &Path) -> Result<LabelMasks, DicomError> {
    let (rows, cols) = (stack.grid.rows, stack.grid.cols);
    let mut masks = LabelMasks::empty(
        stack.n_slices(),
        stack.n_phases(),
        rows,
        cols,
        vec![LV, MYO],
    );
    let locate = |number: usize| -> Option<(usize, usize)> {
        for (s, slice) in stack.slices.iter().enumerate() {
            for (p, f) in slice.frames.iter().enumerate() {
                let stem = f
                    .as_ref()?
                    .source
                    .as_ref()?
                    .path
                    .file_stem()?
                    .to_str()?
                    .parse::<usize>()
                    .ok();
                if stem == Some(number) {
                    return Some((s, p));
                }
            }
        }
        None
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for sub in ["o-contours", "i-contours"] {
        let dir = contour_dir.join(sub);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| DicomError::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        files.extend(entries);
    }
    // Epicardium first, then endocardium over it: MYO is what lies between.
    for path in files {
        let Some((number, inner)) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_name)
        else {
            continue;
        };
        let (s, p) = locate(number).ok_or_else(|| DicomError::Contour {
            path: path.clone(),
            reason: format!("no image {number}.dcm in the stack"),
        })?;
        let filled = fill_polygon(&read_contour(&path)?, rows, cols);
        let class = if inner { LV } else { MYO };
        if let Some(img) = masks.image_mut(s, p) {
            for (m, f) in img.iter_mut().zip(&filled) {
                if *f {
                    *m = class;
                }
            }
        }
        if let Some(a) = masks.annotated.get_mut(s * stack.n_phases() + p) {
            if !a.contains(&class) {
                a.push(class);
                a.sort_unstable();
            }
        }
    }
    Ok(masks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_fills_its_interior_pixels() {
        let sq = [[2.0, 2.0], [6.0, 2.0], [6.0, 5.0], [2.0, 5.0]];
        let m = fill_polygon(&sq, 10, 10);
        let count = m.iter().filter(|v| **v).count();
        // Rows 2..5 (half-open: 2,3,4), columns 2..=6.
        assert_eq!(count, 3 * 5);
        assert!(m[3 * 10 + 4] && !m[3 * 10 + 7] && !m[6 * 10 + 4]);
    }

    #[test]
    fn circle_area_matches_pi_r_squared() {
        let pts: Vec<[f64; 2]> = (0..360)
            .map(|i| {
                let t = (i as f64).to_radians();
                [50.0 + 20.0 * t.cos(), 50.0 + 20.0 * t.sin()]
            })
            .collect();
        let area = fill_polygon(&pts, 100, 100).iter().filter(|v| **v).count() as f64;
        assert!(
            (area - std::f64::consts::PI * 400.0).abs() < 40.0,
            "area {area}"
        );
    }

    #[test]
    fn names_parse() {
        assert_eq!(
            parse_name("IM-0001-0048-icontour-manual.txt"),
            Some((48, true))
        );
        assert_eq!(
            parse_name("IM-0001-0059-ocontour-manual.txt"),
            Some((59, false))
        );
        assert_eq!(parse_name("notes.txt"), None);
    }
}
