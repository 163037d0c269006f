//! NIfTI-1 volumes (`.nii`, `.nii.gz`) in and out: the format of the public cardiac datasets
//! (ACDC, M&Ms) used to train the base model, and a convenient format for exporting masks.
//!
//! The `nifti` crate parses the header and inflates the data; the conversion of voxels to `f32`
//! is done here so that every voxel type and the `scl_slope`/`scl_inter` rule are handled in
//! one visible place (ACDC alone mixes float32, int16 and uint8 files).

use super::IoError;
use ::nifti::{
    Endianness, InMemNiftiVolume, NiftiError, NiftiHeader, NiftiObject, NiftiType, ReaderOptions,
};
use ndarray::{Array, ShapeBuilder};
use std::path::{Path, PathBuf};

/// A 3D or 4D image in memory, as the rest of cineseg wants it: `f32` voxels, scaling already
/// applied, with physical spacing so volumes in millilitres can be computed.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    /// Voxels along x, y, z, t (t = 1 for a 3D volume, z = 1 for a 2D image).
    pub dims: [usize; 4],
    /// Voxel size: x, y, z in millimetres, t in seconds (0 when the file has no time axis).
    pub spacing: [f32; 4],
    /// Voxel values, x fastest, then y, z, t (NIfTI's own order).
    pub data: Vec<f32>,
    /// The file's header, when read from a file: masks written with
    /// [`LabelGeometry::Like`] keep its qform/sform, so they overlay the image in any viewer.
    pub header: Option<Box<NiftiHeader>>,
}

impl Volume {
    /// Voxels in one x-y slice; slices are contiguous runs of this length in `data`.
    pub fn slice_len(&self) -> usize {
        self.dims[0] * self.dims[1]
    }

    /// The x-y slice `z` of time point `t`, or `None` when out of range.
    pub fn slice(&self, z: usize, t: usize) -> Option<&[f32]> {
        if z >= self.dims[2] || t >= self.dims[3] {
            return None;
        }
        let n = self.slice_len();
        let start = (t * self.dims[2] + z) * n;
        self.data.get(start..start + n)
    }

    /// Volume of one voxel in millilitres (mm^3 / 1000), for clinical volumes from masks.
    pub fn voxel_ml(&self) -> f64 {
        self.spacing[..3].iter().map(|&s| s as f64).product::<f64>() / 1000.0
    }
}

/// Reads a NIfTI-1 file (gzip-compressed when the name ends in `.gz`) into a [`Volume`].
///
/// Any voxel type except complex and RGB is accepted; `scl_slope`/`scl_inter` are applied when
/// the slope is finite and non-zero, as the NIfTI-1 standard prescribes. A missing, truncated or
/// corrupt file gives an [`IoError`] naming the file.
pub fn read_volume(path: &Path) -> Result<Volume, IoError> {
    // Open once ourselves so a missing file is reported as such, not as a format problem.
    std::fs::metadata(path).map_err(|e| IoError::fs(path, e))?;
    let obj = ReaderOptions::new()
        .read_file(path)
        .map_err(|e| nifti_error(path, e))?;
    let header = obj.header().clone();
    let dims = dims_of(path, &header)?;
    let spacing = spacing_of(path, &header, dims)?;
    let datatype = header.data_type().map_err(|e| nifti_error(path, e))?;
    let raw = InMemNiftiVolume::into_raw_data(obj.into_volume());
    let n: usize = dims.iter().product();
    let data = decode(path, &raw, n, datatype, header.endianness)?;
    let data = rescale(data, header.scl_slope, header.scl_inter);
    Ok(Volume {
        dims,
        spacing,
        data,
        header: Some(Box::new(header)),
    })
}

/// Where the voxels of a label file lie in space.
#[derive(Debug, Clone, Copy)]
pub enum LabelGeometry<'a> {
    /// Voxel size only, axis-aligned at the origin (phantoms and synthetic data).
    Spacing([f32; 4]),
    /// The grid of an image read from NIfTI: its pixdim, qform and sform are kept.
    Like(&'a NiftiHeader),
    /// A scanner (RAS) affine, e.g. from DICOM geometry: voxel size and the three rows of the
    /// voxel-to-world matrix, written as the sform.
    Affine {
        /// Voxel size x, y, z (mm) and t.
        spacing: [f32; 4],
        /// srow_x, srow_y, srow_z.
        srow: [[f32; 4]; 3],
    },
}

/// Writes a label volume (one `u8` class per voxel, x fastest) as NIfTI-1 with the given
/// dimensions and spacing, axis-aligned (see [`write_labels_at`] for a real grid).
pub fn write_labels(
    path: &Path,
    dims: [usize; 4],
    spacing: [f32; 4],
    labels: &[u8],
) -> Result<(), IoError> {
    write_labels_at(path, dims, LabelGeometry::Spacing(spacing), labels)
}

/// Writes a label volume (one `u8` class per voxel, x fastest) as NIfTI-1 on `geometry`, so
/// masks overlay their images in any NIfTI viewer.
///
/// `path` must end in `.nii.gz` (compressed) or `.nii`. The file is written under a temporary
/// name and renamed, so an interrupted write never leaves a half file under the final name.
/// A 3D volume (`dims[3] == 1`) is written with three dimensions.
pub fn write_labels_at(
    path: &Path,
    dims: [usize; 4],
    geometry: LabelGeometry<'_>,
    labels: &[u8],
) -> Result<(), IoError> {
    let werr = |reason: String| IoError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let ext = if name.ends_with(".nii.gz") {
        ".nii.gz"
    } else if name.ends_with(".nii") {
        ".nii"
    } else {
        return Err(werr("the file name must end in .nii.gz or .nii".into()));
    };
    let n: usize = dims.iter().product();
    if n == 0 || labels.len() != n {
        return Err(werr(format!(
            "dims {dims:?} hold {n} voxels but {} labels were given",
            labels.len()
        )));
    }
    if dims.iter().any(|&d| d > i16::MAX as usize) {
        return Err(werr(format!(
            "dims {dims:?} exceed NIfTI-1's limit of {} per axis",
            i16::MAX
        )));
    }
    let header = label_header(geometry);
    let spacing = [header.pixdim[1], header.pixdim[2], header.pixdim[3]];
    if spacing.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err(werr(format!(
            "spacing {spacing:?} must be finite and positive in x, y, z"
        )));
    }
    let tmp = temp_sibling(path, ext);
    let written = if dims[3] == 1 {
        let a = Array::from_shape_vec((dims[0], dims[1], dims[2]).f(), labels.to_vec());
        a.map_err(|e| werr(e.to_string()))
            .and_then(|a| write_array(&tmp, &header, &a).map_err(|e| werr(e.to_string())))
    } else {
        let a = Array::from_shape_vec((dims[0], dims[1], dims[2], dims[3]).f(), labels.to_vec());
        a.map_err(|e| werr(e.to_string()))
            .and_then(|a| write_array(&tmp, &header, &a).map_err(|e| werr(e.to_string())))
    };
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        IoError::fs(path, e)
    })
}

fn write_array<D: ndarray::Dimension + ndarray::RemoveAxis>(
    tmp: &Path,
    header: &NiftiHeader,
    a: &Array<u8, D>,
) -> Result<(), NiftiError> {
    ::nifti::writer::WriterOptions::new(tmp)
        .reference_header(header)
        .write_nifti(a)
}

/// A hidden name in the same folder that keeps the NIfTI extension and no other dot (the
/// writer picks compression from the extension and rewrites everything after the last dot).
fn temp_sibling(path: &Path, ext: &str) -> PathBuf {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("labels.nii");
    let stem = name.strip_suffix(ext).unwrap_or(name).replace('.', "_");
    path.with_file_name(format!(".{stem}-tmp{}{ext}", std::process::id()))
}

/// Header for a label file on `geometry`, with no intensity scaling.
fn label_header(geometry: LabelGeometry<'_>) -> NiftiHeader {
    let mut descrip = b"cineseg labels".to_vec();
    descrip.resize(80, 0);
    let pixdim = |s: [f32; 4]| [1.0, s[0], s[1], s[2], s[3], 1.0, 1.0, 1.0];
    match geometry {
        LabelGeometry::Spacing(spacing) => NiftiHeader {
            pixdim: pixdim(spacing),
            xyzt_units: 2 | 8, // millimetres, seconds
            srow_x: [spacing[0], 0.0, 0.0, 0.0],
            srow_y: [0.0, spacing[1], 0.0, 0.0],
            srow_z: [0.0, 0.0, spacing[2], 0.0],
            descrip,
            ..NiftiHeader::default()
        },
        LabelGeometry::Like(reference) => NiftiHeader {
            scl_slope: 1.0,
            scl_inter: 0.0,
            cal_min: 0.0,
            cal_max: 0.0,
            intent_code: 0,
            descrip,
            ..reference.clone()
        },
        LabelGeometry::Affine { spacing, srow } => NiftiHeader {
            pixdim: pixdim(spacing),
            xyzt_units: 2 | 8,
            qform_code: 0,
            sform_code: 1, // scanner anatomical
            srow_x: srow[0],
            srow_y: srow[1],
            srow_z: srow[2],
            descrip,
            ..NiftiHeader::default()
        },
    }
}

/// Maps the crate's errors onto ours: OS errors stay OS errors, everything else is a bad file.
fn nifti_error(path: &Path, e: NiftiError) -> IoError {
    match e {
        NiftiError::Io(io) => match io.kind() {
            std::io::ErrorKind::UnexpectedEof => IoError::Nifti {
                path: path.to_path_buf(),
                reason: format!("file is truncated ({io})"),
            },
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                IoError::fs(path, io)
            }
            _ => IoError::Nifti {
                path: path.to_path_buf(),
                reason: format!("corrupt data ({io})"),
            },
        },
        NiftiError::IncompatibleLength(got, expected) => IoError::Nifti {
            path: path.to_path_buf(),
            reason: format!(
                "file is truncated: {got} bytes of voxel data, the header needs {expected}"
            ),
        },
        other => IoError::Nifti {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// x, y, z, t from the header; higher axes are accepted only when they have length 1.
fn dims_of(path: &Path, h: &NiftiHeader) -> Result<[usize; 4], IoError> {
    let d = h.dim().map_err(|e| nifti_error(path, e))?;
    if d.len() < 2 {
        return Err(IoError::Unsupported {
            path: path.into(),
            reason: format!("{}-D data (need 2-D to 4-D)", d.len()),
        });
    }
    if d.iter().skip(4).any(|&x| x != 1) {
        return Err(IoError::Unsupported {
            path: path.into(),
            reason: format!("dims {d:?} (more than 4 axes)"),
        });
    }
    let get = |i: usize| d.get(i).map_or(1, |&x| x as usize);
    Ok([get(0), get(1), get(2), get(3)])
}

/// Physical spacing in mm and s, converted from the units the header declares (unknown units
/// are taken as mm and s, which is what scanners' converters mean).
fn spacing_of(path: &Path, h: &NiftiHeader, dims: [usize; 4]) -> Result<[f32; 4], IoError> {
    let space = match h.xyzt_units & 0x07 {
        1 => 1000.0, // metres
        3 => 0.001,  // micrometres
        _ => 1.0,    // millimetres or unknown
    };
    let time = match h.xyzt_units & 0x38 {
        16 => 0.001,  // milliseconds
        24 => 1.0e-6, // microseconds
        _ => 1.0,     // seconds or unknown
    };
    let ndim = h.dim[0] as usize;
    let mut s = [1.0f32; 4];
    for (axis, out) in s.iter_mut().enumerate().take(3) {
        if axis < ndim {
            let v = h.pixdim[axis + 1].abs() * space;
            if !v.is_finite() || v <= 0.0 {
                return Err(IoError::Unsupported {
                    path: path.into(),
                    reason: format!(
                        "pixdim[{}] = {} is not a usable voxel size",
                        axis + 1,
                        h.pixdim[axis + 1]
                    ),
                });
            }
            *out = v;
        }
    }
    let t = h.pixdim[4].abs() * time;
    s[3] = if dims[3] > 1 && t.is_finite() { t } else { 0.0 };
    Ok(s)
}

/// Converts raw voxel bytes to f32, checking that there are exactly `n` voxels.
fn decode(
    path: &Path,
    raw: &[u8],
    n: usize,
    t: NiftiType,
    e: Endianness,
) -> Result<Vec<f32>, IoError> {
    let size = match t {
        NiftiType::Uint8 | NiftiType::Int8 => 1,
        NiftiType::Int16 | NiftiType::Uint16 => 2,
        NiftiType::Int32 | NiftiType::Uint32 | NiftiType::Float32 => 4,
        NiftiType::Int64 | NiftiType::Uint64 | NiftiType::Float64 => 8,
        other => {
            return Err(IoError::Unsupported {
                path: path.into(),
                reason: format!("voxel type {other:?}"),
            });
        }
    };
    if raw.len() != n * size {
        return Err(IoError::Nifti {
            path: path.into(),
            reason: format!(
                "{} bytes of voxel data, the header needs {}",
                raw.len(),
                n * size
            ),
        });
    }
    let little = e == Endianness::Little;
    macro_rules! conv {
        ($ty:ty, $n:literal) => {
            raw.chunks_exact($n)
                .map(|c| {
                    let mut b = [0u8; $n];
                    b.copy_from_slice(c);
                    (if little {
                        <$ty>::from_le_bytes(b)
                    } else {
                        <$ty>::from_be_bytes(b)
                    }) as f32
                })
                .collect()
        };
    }
    Ok(match t {
        NiftiType::Uint8 => raw.iter().map(|&v| v as f32).collect(),
        NiftiType::Int8 => raw.iter().map(|&v| v as i8 as f32).collect(),
        NiftiType::Int16 => conv!(i16, 2),
        NiftiType::Uint16 => conv!(u16, 2),
        NiftiType::Int32 => conv!(i32, 4),
        NiftiType::Uint32 => conv!(u32, 4),
        NiftiType::Float32 => conv!(f32, 4),
        NiftiType::Int64 => conv!(i64, 8),
        NiftiType::Uint64 => conv!(u64, 8),
        _ => conv!(f64, 8),
    })
}

/// NIfTI-1: a slope of 0 (or NaN) means "no scaling"; otherwise value = raw * slope + inter.
fn rescale(mut data: Vec<f32>, slope: f32, inter: f32) -> Vec<f32> {
    if slope.is_finite() && slope != 0.0 && !(slope == 1.0 && inter == 0.0) {
        let inter = if inter.is_finite() { inter } else { 0.0 };
        data.iter_mut().for_each(|v| *v = *v * slope + inter);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(dims: [usize; 4]) -> Vec<u8> {
        let n: usize = dims.iter().product();
        (0..n).map(|i| ((i * 7 + i / 13) % 4) as u8).collect()
    }

    #[test]
    fn labels_round_trip_3d_and_4d() {
        let dir = tempfile::tempdir().unwrap();
        for (dims, name) in [
            ([5, 7, 3, 1], "a.nii.gz"),
            ([4, 3, 2, 5], "b.nii"),
            ([6, 2, 1, 1], "c.nii.gz"),
        ] {
            let labels = synthetic(dims);
            let spacing = [1.25, 1.5, 8.0, if dims[3] > 1 { 0.04 } else { 0.0 }];
            let path = dir.path().join(name);
            write_labels(&path, dims, spacing, &labels).unwrap();
            let v = read_volume(&path).unwrap();
            assert_eq!(v.dims, dims, "{name}");
            assert_eq!(v.spacing, spacing, "{name}");
            let back: Vec<u8> = v.data.iter().map(|&x| x as u8).collect();
            assert_eq!(back, labels, "{name}");
            assert!((v.voxel_ml() - 1.25 * 1.5 * 8.0 / 1000.0).abs() < 1e-9);
        }
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn slice_access_follows_x_fastest_layout() {
        let dims = [3, 2, 4, 2];
        let v = Volume {
            dims,
            spacing: [1.0; 4],
            data: (0..48).map(|i| i as f32).collect(),
            header: None,
        };
        assert_eq!(v.slice(1, 0).unwrap(), &[6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        assert_eq!(v.slice(0, 1).unwrap()[0], 24.0);
        assert!(v.slice(4, 0).is_none() && v.slice(0, 2).is_none());
    }

    #[test]
    fn decodes_types_and_applies_scaling() {
        let p = Path::new("x.nii");
        let raw: Vec<u8> = [-2i16, 300].iter().flat_map(|v| v.to_be_bytes()).collect();
        let d = decode(p, &raw, 2, NiftiType::Int16, Endianness::Big).unwrap();
        assert_eq!(d, vec![-2.0, 300.0]);
        assert_eq!(rescale(d.clone(), 0.5, 10.0), vec![9.0, 160.0]);
        assert_eq!(rescale(d.clone(), 0.0, 10.0), d, "slope 0 means no scaling");
        assert_eq!(rescale(d.clone(), f32::NAN, 10.0), d);
        let raw: Vec<u8> = [1.5f32].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            decode(p, &raw, 1, NiftiType::Float32, Endianness::Little).unwrap(),
            vec![1.5]
        );
        assert!(matches!(
            decode(p, &raw, 2, NiftiType::Float32, Endianness::Little),
            Err(IoError::Nifti { .. })
        ));
        assert!(matches!(
            decode(p, &raw, 1, NiftiType::Rgb24, Endianness::Little),
            Err(IoError::Unsupported { .. })
        ));
    }

    #[test]
    fn missing_truncated_and_corrupt_files_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.nii.gz");
        let e = read_volume(&missing).unwrap_err();
        assert!(matches!(e, IoError::Fs { .. }), "{e}");
        assert!(e.to_string().contains("missing.nii.gz"), "{e}");

        let dims = [32, 32, 4, 1];
        let good = dir.path().join("good.nii.gz");
        write_labels(&good, dims, [1.0, 1.0, 1.0, 0.0], &synthetic(dims)).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let truncated = dir.path().join("truncated.nii.gz");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let e = read_volume(&truncated).unwrap_err();
        assert!(matches!(e, IoError::Nifti { .. }), "{e}");
        assert!(e.to_string().contains("truncated.nii.gz"), "{e}");

        let plain = dir.path().join("plain.nii");
        write_labels(&plain, dims, [1.0, 1.0, 1.0, 0.0], &synthetic(dims)).unwrap();
        let bytes = std::fs::read(&plain).unwrap();
        let short = dir.path().join("short.nii");
        std::fs::write(&short, &bytes[..bytes.len() - 100]).unwrap();
        let e = read_volume(&short).unwrap_err();
        assert!(matches!(e, IoError::Nifti { .. }), "{e}");

        let garbage = dir.path().join("garbage.nii.gz");
        std::fs::write(&garbage, b"this is not a gzip stream at all, just text").unwrap();
        let e = read_volume(&garbage).unwrap_err();
        assert!(matches!(e, IoError::Nifti { .. }), "{e}");
        assert!(e.to_string().contains("garbage.nii.gz"), "{e}");
    }

    #[test]
    fn write_rejects_inconsistent_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.nii.gz");
        assert!(write_labels(&p, [2, 2, 2, 1], [1.0; 4], &[0; 7]).is_err());
        assert!(write_labels(&p, [2, 2, 2, 1], [1.0, 0.0, 1.0, 0.0], &[0; 8]).is_err());
        assert!(write_labels(&dir.path().join("x.png"), [2, 2, 2, 1], [1.0; 4], &[0; 8]).is_err());
        assert!(!p.exists());
    }
}
