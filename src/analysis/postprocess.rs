//! Anatomical clean-up of network output before anything is measured.
//!
//! A U-Net decides pixel by pixel, so it leaves stray islands (a bright vessel called "LV")
//! and pinholes (a papillary muscle inside the cavity called background). Each ventricle and
//! the LV myocardium is one connected structure, and a blood pool has no holes, so:
//!
//! 1. per foreground class, only the largest 3D connected component is kept; removed voxels
//!    become background. Connectivity is **26** (faces, edges and corners): with 8-10 mm
//!    slices a thin, curved structure often touches the next slice only diagonally, and
//!    6-connectivity would cut the apex or base off the ventricle.
//! 2. per slice, background regions that do not reach the slice border (4-connected, in 2D)
//!    are holes and are filled with the foreground class that borders them most often. A
//!    hole only ever contains background, so an LV cavity enclosed by myocardium is never
//!    touched, while a hole in the LV becomes LV.

use super::error::AnalysisError;
use super::volume::{LabelVolume, BACKGROUND, FOREGROUND};
use std::collections::VecDeque;

/// Runs the whole clean-up (largest component per class, then hole filling), in the order
/// that lets holes left by removed islands be filled too.
/// Fails only on an inconsistent volume (buffer length not matching the dimensions).
pub fn postprocess(vol: &mut LabelVolume) -> Result<(), AnalysisError> {
    for class in FOREGROUND {
        keep_largest_component(vol, class)?;
    }
    fill_holes(vol)?;
    Ok(())
}

/// Keeps only the largest 26-connected component of `class`, setting the other voxels of
/// that class to background. Returns how many voxels were removed, for logging.
pub fn keep_largest_component(vol: &mut LabelVolume, class: u8) -> Result<usize, AnalysisError> {
    vol.validate()?;
    let (w, h, d) = (vol.width, vol.height, vol.slices);
    // 0 = not visited / not this class; otherwise component id (1-based).
    let mut comp = vec![0u32; vol.labels.len()];
    let mut sizes: Vec<usize> = vec![0];
    let mut queue = VecDeque::new();
    for start in 0..vol.labels.len() {
        if vol.labels[start] != class || comp[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32;
        let mut size = 0usize;
        comp[start] = id;
        queue.push_back(start);
        while let Some(i) = queue.pop_front() {
            size += 1;
            let (x, y, z) = (i % w, (i / w) % h, i / (w * h));
            for dz in -1i64..=1 {
                for dy in -1i64..=1 {
                    for dx in -1i64..=1 {
                        let (nx, ny, nz) = (x as i64 + dx, y as i64 + dy, z as i64 + dz);
                        if nx < 0
                            || ny < 0
                            || nz < 0
                            || nx >= w as i64
                            || ny >= h as i64
                            || nz >= d as i64
                        {
                            continue;
                        }
                        let j = vol.index(nx as usize, ny as usize, nz as usize);
                        if vol.labels[j] == class && comp[j] == 0 {
                            comp[j] = id;
                            queue.push_back(j);
                        }
                    }
                }
            }
        }
        sizes.push(size);
    }
    // Ties go to the first component found, which keeps the result deterministic.
    let Some((best, _)) = sizes
        .iter()
        .enumerate()
        .skip(1)
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
    else {
        return Ok(0);
    };
    let mut removed = 0;
    for (l, &c) in vol.labels.iter_mut().zip(comp.iter()) {
        if c != 0 && c as usize != best {
            *l = BACKGROUND;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Fills enclosed background regions slice by slice (see the module documentation for the
/// rule). Returns the number of voxels filled.
pub fn fill_holes(vol: &mut LabelVolume) -> Result<usize, AnalysisError> {
    vol.validate()?;
    let (w, h) = (vol.width, vol.height);
    let n = w * h;
    let mut filled = 0;
    let mut seen = vec![false; n];
    let mut region = Vec::new();
    let mut queue = VecDeque::new();
    for z in 0..vol.slices {
        let slice = &mut vol.labels[z * n..(z + 1) * n];
        seen.iter_mut().for_each(|s| *s = false);
        for start in 0..n {
            if slice[start] != BACKGROUND || seen[start] {
                continue;
            }
            region.clear();
            let mut touches_border = false;
            let mut votes = [0usize; 256];
            seen[start] = true;
            queue.push_back(start);
            while let Some(i) = queue.pop_front() {
                region.push(i);
                let (x, y) = (i % w, i / w);
                if x == 0 || y == 0 || x + 1 == w || y + 1 == h {
                    touches_border = true;
                }
                let neighbours = [
                    (x > 0).then(|| i - 1),
                    (x + 1 < w).then(|| i + 1),
                    (y > 0).then(|| i - w),
                    (y + 1 < h).then(|| i + w),
                ];
                for j in neighbours.into_iter().flatten() {
                    let l = slice[j];
                    if l == BACKGROUND {
                        if !seen[j] {
                            seen[j] = true;
                            queue.push_back(j);
                        }
                    } else {
                        votes[l as usize] += 1;
                    }
                }
            }
            if touches_border {
                continue;
            }
            // Most frequent bordering class; ties go to the lower class index (LV before MYO).
            let winner = (1..256)
                .max_by(|&a, &b| votes[a].cmp(&votes[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            if votes[winner] == 0 {
                continue;
            }
            for &i in &region {
                slice[i] = winner as u8;
            }
            filled += region.len();
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::volume::{LV, MYO, RV};

    fn disc(v: &mut LabelVolume, z: usize, cx: f64, cy: f64, r: f64, class: u8) {
        for y in 0..v.height {
            for x in 0..v.width {
                if (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2) <= r * r {
                    let i = v.index(x, y, z);
                    v.labels[i] = class;
                }
            }
        }
    }

    #[test]
    fn keeps_largest_component_only() {
        let mut v = LabelVolume::new(40, 40, 3, [1.0, 1.0, 8.0]);
        for z in 0..3 {
            disc(&mut v, z, 20.0, 20.0, 8.0, LV);
        }
        disc(&mut v, 1, 3.0, 3.0, 1.5, LV); // stray island
        disc(&mut v, 1, 35.0, 35.0, 3.0, RV);
        let before = v.count(LV);
        let removed = keep_largest_component(&mut v, LV).unwrap();
        assert!(removed > 0);
        assert_eq!(v.count(LV), before - removed);
        assert_eq!(v.get(3, 3, 1), Some(BACKGROUND));
        assert_eq!(v.get(20, 20, 1), Some(LV));
        assert_eq!(v.get(35, 35, 1), Some(RV), "other classes untouched");
    }

    #[test]
    fn diagonal_slice_contact_is_connected() {
        // Two voxels touching only at a corner across slices: 26-connectivity keeps both.
        let mut v = LabelVolume::new(5, 5, 2, [1.0, 1.0, 10.0]);
        let (a, b) = (v.index(1, 1, 0), v.index(2, 2, 1));
        v.labels[a] = MYO;
        v.labels[b] = MYO;
        assert_eq!(keep_largest_component(&mut v, MYO).unwrap(), 0);
        assert_eq!(v.count(MYO), 2);
    }

    #[test]
    fn hole_in_lv_is_filled_but_cavity_inside_myo_stays_lv() {
        let mut v = LabelVolume::new(48, 48, 1, [1.0, 1.0, 8.0]);
        disc(&mut v, 0, 24.0, 24.0, 14.0, MYO);
        disc(&mut v, 0, 24.0, 24.0, 10.0, LV);
        disc(&mut v, 0, 22.0, 25.0, 2.0, BACKGROUND); // papillary muscle called background
        let (lv, myo) = (v.count(LV), v.count(MYO));
        let filled = fill_holes(&mut v).unwrap();
        assert!(filled >= 9, "filled {filled}");
        assert_eq!(v.count(LV), lv + filled);
        assert_eq!(v.count(MYO), myo, "myocardium unchanged");
        assert_eq!(v.get(22, 25, 0), Some(LV));
        assert_eq!(v.get(1, 1, 0), Some(BACKGROUND), "outside stays background");
    }

    #[test]
    fn region_touching_border_is_not_a_hole() {
        let mut v = LabelVolume::new(20, 20, 1, [1.0, 1.0, 8.0]);
        // LV "C" open to the left border.
        disc(&mut v, 0, 10.0, 10.0, 6.0, LV);
        for x in 0..12 {
            let i = v.index(x, 10, 0);
            v.labels[i] = BACKGROUND;
        }
        assert_eq!(fill_holes(&mut v).unwrap(), 0);
        assert_eq!(v.get(8, 10, 0), Some(BACKGROUND));
    }

    #[test]
    fn inconsistent_volume_is_an_error_not_a_panic() {
        let mut v = LabelVolume {
            width: 4,
            height: 4,
            slices: 2,
            spacing: [1.0; 3],
            labels: vec![LV; 31],
        };
        assert!(matches!(
            postprocess(&mut v),
            Err(crate::analysis::AnalysisError::Shape(_))
        ));
        assert!(fill_holes(&mut v).is_err());
    }

    #[test]
    fn postprocess_fills_hole_left_by_removed_island() {
        let mut v = LabelVolume::new(40, 40, 2, [1.0, 1.0, 8.0]);
        for z in 0..2 {
            disc(&mut v, z, 20.0, 20.0, 10.0, LV);
        }
        // An RV speck inside the LV: removed as a small RV component, then filled as LV.
        let i = v.index(20, 20, 1);
        v.labels[i] = RV;
        disc(&mut v, 0, 36.0, 36.0, 3.0, RV);
        postprocess(&mut v).unwrap();
        assert_eq!(v.get(20, 20, 1), Some(LV));
        assert_eq!(v.get(36, 36, 0), Some(RV));
    }
}
