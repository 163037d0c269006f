//! One DICOM file -> one `Instance` per image frame: decoded pixels in physical units (rescale
//! applied) plus everything needed to place the frame in space and in the cardiac cycle. Enhanced
//! (multi-frame) MR is flattened here, so stack assembly never needs to know which kind of file a
//! frame came from.
//!
//! Every size the header claims is checked against fixed caps *before* anything is allocated, so
//! a hostile or corrupt header (a 4-gigapixel image, a billion frames) fails fast with a typed
//! error instead of exhausting memory.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{file::ReadPreamble, DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde::Serialize;

use super::attr::{self, Obj};
use super::error::DicomError;

/// Largest file we read into memory (bytes). Cine MR files are well under 1 MiB each; an
/// Enhanced multi-frame cine of a whole study is a few hundred MiB.
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Largest single frame we accept (pixels): 8192 x 8192, far beyond any MR matrix.
pub const MAX_FRAME_PIXELS: u64 = 1 << 26;
/// Largest decoded pixel payload of one file (bytes, all frames and samples).
pub const MAX_DECODED_BYTES: u64 = 1 << 30;
/// Largest frame count of one file.
pub const MAX_FRAMES: u64 = 100_000;

/// JPEG Extended (process 2 & 4): the lossy JPEG that MR scanners write with 12-bit samples.
const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";

/// RLE Lossless.
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Identifiers that group instances into patients, studies and series.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Identifiers {
    /// PatientID.
    pub patient_id: Option<String>,
    /// StudyInstanceUID (kept verbatim, even when it bends the UID rules).
    pub study_uid: Option<String>,
    /// SeriesInstanceUID (kept verbatim: Sunnybrook's has a leading-zero component).
    pub series_uid: Option<String>,
    /// SOPInstanceUID of the file.
    pub sop_instance_uid: Option<String>,
    /// SOPClassUID of the file.
    pub sop_class_uid: Option<String>,
    /// FrameOfReferenceUID: positions are comparable only within one frame of reference.
    pub frame_of_reference_uid: Option<String>,
    /// SeriesNumber.
    pub series_number: Option<i64>,
    /// SeriesDescription.
    pub series_description: Option<String>,
    /// SeriesDate + SeriesTime (or AcquisitionDate/Time), used to find the latest repeat.
    pub series_datetime: Option<String>,
}

/// Where a frame lies in the patient coordinate system. Fields are optional because non-MR
/// objects in a folder (secondary captures, ultrasound) carry none; stack assembly requires them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Geometry {
    /// PixelSpacing: [spacing between rows, spacing between columns] in mm.
    pub pixel_spacing: Option<[f64; 2]>,
    /// ImagePositionPatient: centre of the first transmitted pixel, mm.
    pub position: Option<[f64; 3]>,
    /// ImageOrientationPatient: row direction cosines then column direction cosines.
    pub orientation: Option<[f64; 6]>,
    /// SliceThickness (mm).
    pub slice_thickness: Option<f64>,
    /// SpacingBetweenSlices (mm), as the header claims it.
    pub spacing_between_slices: Option<f64>,
}

/// MONOCHROME1 stores dark as high: mirror the values about the middle of their range.
fn invert_monochrome1(pixels: &mut [f32]) {
    let (lo, hi) = pixels
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if lo.is_finite() && hi.is_finite() {
        for v in pixels.iter_mut() {
            *v = lo + hi - *v;
        }
    }
}

/// One image frame, decoded.
#[derive(Debug, Clone)]
pub struct Instance {
    /// File the frame came from.
    pub path: PathBuf,
    /// Frame index within that file (0 for single-frame files).
    pub frame: u32,
    /// Patient, study and series identity.
    pub ids: Identifiers,
    /// Rows (image height).
    pub rows: usize,
    /// Columns (image width).
    pub cols: usize,
    /// SamplesPerPixel (1 for MR; 3 for RGB).
    pub samples_per_pixel: usize,
    /// PhotometricInterpretation as written.
    pub photometric: String,
    /// Pixel values after RescaleSlope/Intercept, row-major, samples interleaved. MONOCHROME1
    /// frames are inverted (mirrored about the middle of their own range), so that in every
    /// frame a larger value is brighter, as the model and the overlays expect.
    pub pixels: Vec<f32>,
    /// Spatial placement.
    pub geometry: Geometry,
    /// TriggerTime (ms after the R wave), or the nominal cardiac trigger delay of Enhanced MR.
    pub trigger_time: Option<f64>,
    /// InstanceNumber (for Enhanced MR: the file's, with the frame index as a tie-breaker).
    pub instance_number: Option<i64>,
    /// CardiacNumberOfImages: how many phases the scanner says the cycle has.
    pub cardiac_number_of_images: Option<i64>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// MagneticFieldStrength (T).
    pub field_strength: Option<f64>,
    /// TransferSyntaxUID the pixels were stored in.
    pub transfer_syntax: String,
}

/// Read one DICOM file into one `Instance` per frame.
pub fn read_file(path: &Path) -> Result<Vec<Instance>, DicomError> {
    read_bytes(&read_capped(path)?, path)
}

/// The bytes of a file, refusing one larger than [`MAX_FILE_BYTES`] before reading it.
pub fn read_capped(path: &Path) -> Result<Vec<u8>, DicomError> {
    let meta = std::fs::metadata(path).map_err(|e| DicomError::io(path, e))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(DicomError::TooLarge {
            path: path.to_path_buf(),
            reason: format!("file is {} bytes, limit {MAX_FILE_BYTES}", meta.len()),
        });
    }
    std::fs::read(path).map_err(|e| DicomError::io(path, e))
}

/// Read DICOM file content already in memory; `path` only names it in errors. This is the
/// entry point the fuzz target drives.
pub fn read_bytes(bytes: &[u8], path: &Path) -> Result<Vec<Instance>, DicomError> {
    let obj = parse(bytes, path)?;
    check_encapsulation_end(&obj, bytes, path)?;
    instances_from_object(&obj, path)
}

/// Parse and check what can be checked without decoding pixels: the header caps, and that
/// the pixel data holds what the header promises (native data long enough; encapsulated data
/// ending with its delimiter). The receiver calls this before it acknowledges an instance, so a
/// corrupt or truncated file is refused while the sender can still be told.
pub fn parse_checked(bytes: &[u8], path: &Path) -> Result<DefaultDicomObject, DicomError> {
    let obj = parse(bytes, path)?;
    check_encapsulation_end(&obj, bytes, path)?;
    let root: &Obj = &obj;
    if root.get(tags::PIXEL_DATA).is_some() {
        let hdr = pixel_header(root, path)?;
        check_native_length(root, &hdr, path)?;
    }
    Ok(obj)
}

/// The parser tolerates an encapsulated pixel data sequence that simply stops at the end of the
/// file; such a file was cut short at a fragment boundary and may be missing frames. When the
/// pixel data is the last element, the file must end with the sequence delimitation item.
fn check_encapsulation_end(
    obj: &DefaultDicomObject,
    bytes: &[u8],
    path: &Path,
) -> Result<(), DicomError> {
    const DELIMITER: [u8; 8] = [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0];
    let Some(pixel) = obj.get(tags::PIXEL_DATA) else {
        return Ok(());
    };
    if pixel.fragments().is_none() {
        return Ok(());
    }
    let root: &Obj = obj;
    let last_tag = root.tags().max();
    if last_tag == Some(tags::PIXEL_DATA) && !bytes.ends_with(&DELIMITER) {
        return Err(DicomError::Parse {
            path: path.to_path_buf(),
            reason: "encapsulated pixel data ends without its sequence delimiter (file truncated)"
                .into(),
        });
    }
    Ok(())
}

/// Parse the file structure (meta group and data set) without decoding pixels. This is the one
/// safe entry point for untrusted bytes: before dicom-object sees them, every declared length
/// is checked against the bytes present (so nothing is allocated for bytes that are not
/// there), sequence nesting is bounded (the object is built by recursion), and a deflated
/// data set is inflated under [`MAX_FILE_BYTES`] and checked the same way.
pub fn parse(bytes: &[u8], path: &Path) -> Result<DefaultDicomObject, DicomError> {
    let parse_err = |reason: String| DicomError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DicomError::TooLarge {
            path: path.to_path_buf(),
            reason: format!("{} bytes, limit {MAX_FILE_BYTES}", bytes.len()),
        });
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(DicomError::Unsupported {
            path: path.to_path_buf(),
            reason: "gzip-compressed file; decompress it first".into(),
        });
    }
    let body = if bytes.get(128..132) == Some(b"DICM".as_slice()) {
        bytes.get(128..).unwrap_or_default()
    } else if bytes.starts_with(b"DICM") {
        bytes
    } else {
        return Err(parse_err("no DICM marker: not a DICOM Part 10 file".into()));
    };
    super::precheck::check_lengths(body).map_err(&parse_err)?;
    let opened = catch_unwind(AssertUnwindSafe(|| open_checked(body)));
    match opened {
        Ok(Ok(obj)) => Ok(obj),
        Ok(Err(OpenError::Precheck(reason))) => Err(parse_err(reason)),
        Ok(Err(OpenError::Read(e))) => Err(parse_err(error_chain(&e))),
        Err(_) => Err(parse_err("the DICOM parser panicked on this input".into())),
    }
}

/// Why [`open_checked`] stopped: a bound the precheck enforces, or the parser's own error.
enum OpenError {
    Precheck(String),
    Read(dicom_object::ReadError),
}

/// Read the meta group, bound the data set's nesting (inflating it first when deflated), then
/// let dicom-object build the object. `body` starts at "DICM" and its lengths are checked.
fn open_checked(body: &[u8]) -> Result<DefaultDicomObject, OpenError> {
    use dicom_encoding::transfer_syntax::Codec;
    // The meta reader consumes "DICM" and the group; what is left is the data set.
    let mut dataset = body;
    let meta = match dicom_object::FileMetaTable::from_reader(&mut dataset) {
        Ok(meta) => meta,
        // Let the parser word the error for a meta group it cannot read.
        Err(_) => return read_with_options(body).map_err(OpenError::Read),
    };
    let Some(ts) = TransferSyntaxRegistry.get(meta.transfer_syntax()) else {
        return read_with_options(body).map_err(OpenError::Read);
    };
    if let Codec::Dataset(Some(_)) = ts.codec() {
        let inflated =
            super::precheck::inflate(dataset, ts, MAX_FILE_BYTES).map_err(OpenError::Precheck)?;
        super::precheck::check_inflated_lengths(&inflated).map_err(OpenError::Precheck)?;
        let explicit = dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        super::precheck::check_nesting(&inflated, &explicit).map_err(OpenError::Precheck)?;
        let obj = dicom_object::InMemDicomObject::read_dataset_with_ts(&inflated[..], &explicit)
            .map_err(OpenError::Read)?;
        return Ok(obj.with_exact_meta(meta));
    }
    // The data set again, from where the meta reader really stopped and in its transfer
    // syntax: the walk of the whole body assumes the meta group ends at the first element of
    // another group, which a malformed group can make untrue (fuzzing, 2026-12-03: a 498-byte
    // file whose data set the parser then read 8 bytes later, reserving 4 GB).
    super::precheck::check_dataset_lengths(dataset, ts.uid()).map_err(OpenError::Precheck)?;
    super::precheck::check_nesting(dataset, ts).map_err(OpenError::Precheck)?;
    read_with_options(body).map_err(OpenError::Read)
}

fn read_with_options(body: &[u8]) -> Result<DefaultDicomObject, dicom_object::ReadError> {
    OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .from_reader(body)
}

/// Render an error with its sources, so "truncated" is not lost behind "could not read".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Header facts needed before decoding, validated against the caps.
struct PixelHeader {
    rows: usize,
    cols: usize,
    spp: usize,
    frames: usize,
    bits_allocated: u64,
}

fn pixel_header(obj: &Obj, path: &Path) -> Result<PixelHeader, DicomError> {
    let missing = |attribute| DicomError::Missing {
        path: path.to_path_buf(),
        attribute,
    };
    let invalid = |attribute, reason: String| DicomError::Invalid {
        path: path.to_path_buf(),
        attribute,
        reason,
    };
    if obj.get(tags::PIXEL_DATA).is_none() {
        let what = attr::string(obj, tags::MODALITY).unwrap_or_else(|| "unknown modality".into());
        return Err(invalid(
            "PixelData",
            format!("absent: this is not an image ({what})"),
        ));
    }
    let rows = attr::int(obj, tags::ROWS).ok_or_else(|| missing("Rows"))?;
    let cols = attr::int(obj, tags::COLUMNS).ok_or_else(|| missing("Columns"))?;
    let spp = attr::int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let bits = attr::int(obj, tags::BITS_ALLOCATED).ok_or_else(|| missing("BitsAllocated"))?;
    let frames = attr::int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1);
    if rows <= 0 || cols <= 0 {
        return Err(invalid("Rows/Columns", format!("{rows} x {cols}")));
    }
    if !(spp == 1 || spp == 3) {
        return Err(invalid(
            "SamplesPerPixel",
            format!("{spp} (only 1 or 3 are defined)"),
        ));
    }
    if ![1, 8, 16, 32].contains(&bits) {
        return Err(invalid("BitsAllocated", format!("{bits}")));
    }
    if frames <= 0 {
        return Err(invalid("NumberOfFrames", format!("{frames}")));
    }
    let (rows, cols, spp, frames, bits) = (
        rows as u64,
        cols as u64,
        spp as u64,
        frames as u64,
        bits as u64,
    );
    let too_large = |reason: String| DicomError::TooLarge {
        path: path.to_path_buf(),
        reason,
    };
    let frame_pixels = rows.saturating_mul(cols);
    if frame_pixels > MAX_FRAME_PIXELS {
        return Err(too_large(format!(
            "{rows} x {cols} = {frame_pixels} pixels per frame, limit {MAX_FRAME_PIXELS}"
        )));
    }
    if frames > MAX_FRAMES {
        return Err(too_large(format!("{frames} frames, limit {MAX_FRAMES}")));
    }
    // Decoded bytes, and the f32 copy we make of them (4 bytes per sample).
    let samples = frame_pixels.saturating_mul(spp).saturating_mul(frames);
    if samples.saturating_mul(4.max(bits / 8)) > MAX_DECODED_BYTES {
        return Err(too_large(format!(
            "{samples} samples ({frames} frames) exceed the decoded-size limit of \
             {MAX_DECODED_BYTES} bytes"
        )));
    }
    Ok(PixelHeader {
        rows: rows as usize,
        cols: cols as usize,
        spp: spp as usize,
        frames: frames as usize,
        bits_allocated: bits,
    })
}

/// Refuse encodings we know we cannot decode, with a message that says what to do.
fn check_transfer_syntax(
    obj: &DefaultDicomObject,
    bits_stored: Option<i64>,
    path: &Path,
) -> Result<(), DicomError> {
    let uid = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .trim()
        .to_string();
    let unsupported = |reason: String| DicomError::Unsupported {
        path: path.to_path_buf(),
        reason,
    };
    let ts = TransferSyntaxRegistry
        .get(&uid)
        .ok_or_else(|| unsupported(format!("unknown transfer syntax {uid}")))?;
    if uid == JPEG_EXTENDED && bits_stored.unwrap_or(8) > 8 {
        return Err(unsupported(format!(
            "12-bit lossy JPEG ({uid}, {}) cannot be decoded by the built-in JPEG decoder; \
             transcode it first (e.g. dcmtk `dcmdjpeg in.dcm out.dcm`)",
            ts.name()
        )));
    }
    if !ts.can_decode_all() && !super::jpegls::is_jpeg_ls(&uid) {
        return Err(unsupported(format!(
            "transfer syntax {uid} ({})",
            ts.name()
        )));
    }
    Ok(())
}

/// Decode every frame and build the instances.
pub(crate) fn instances_from_object(
    obj: &DefaultDicomObject,
    path: &Path,
) -> Result<Vec<Instance>, DicomError> {
    let root: &Obj = obj;
    let hdr = pixel_header(root, path)?;
    if hdr.bits_allocated == 1 {
        return Err(DicomError::Unsupported {
            path: path.to_path_buf(),
            reason: "1-bit pixel data (a binary segmentation): read it with dicom::seg".into(),
        });
    }
    check_transfer_syntax(obj, attr::int(root, tags::BITS_STORED), path)?;
    check_native_length(root, &hdr, path)?;
    if obj.meta().transfer_syntax().trim_end_matches('\0') == RLE_LOSSLESS {
        super::precheck::check_rle(
            root,
            hdr.frames,
            hdr.rows * hdr.cols,
            hdr.spp * (hdr.bits_allocated as usize / 8),
        )
        .map_err(|reason| DicomError::Decode {
            path: path.to_path_buf(),
            reason,
        })?;
    }
    let decode_err = |reason: String| DicomError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let source = FrameSource::open(obj, &hdr).map_err(decode_err)?;
    let per_frame = attr::items(root, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    let shared = attr::first_item(root, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let enhanced = per_frame.len() >= hdr.frames && (hdr.frames > 1 || shared.is_some());
    let base = Base::read(root);
    let expected = hdr.rows * hdr.cols * hdr.spp;
    let mut out = Vec::with_capacity(hdr.frames);
    for f in 0..hdr.frames {
        let values = source.frame(f).map_err(decode_err)?;
        if values.len() != expected {
            return Err(decode_err(format!(
                "frame {f} has {} samples, expected {expected}",
                values.len()
            )));
        }
        let groups = FrameGroups {
            own: if enhanced { per_frame.get(f) } else { None },
            shared: if enhanced { shared } else { None },
        };
        let (slope, intercept) = groups.rescale(root);
        let mut pixels: Vec<f32> = values
            .iter()
            .map(|v| (v * slope + intercept) as f32)
            .collect();
        if hdr.spp == 1 && base.photometric.trim_end_matches(['\0', ' ']) == "MONOCHROME1" {
            invert_monochrome1(&mut pixels);
        }
        out.push(Instance {
            path: path.to_path_buf(),
            frame: f as u32,
            ids: base.ids.clone(),
            rows: hdr.rows,
            cols: hdr.cols,
            samples_per_pixel: hdr.spp,
            photometric: base.photometric.clone(),
            pixels,
            geometry: groups.geometry(root),
            trigger_time: groups.trigger_time(root),
            instance_number: base.instance_number,
            cardiac_number_of_images: base.cardiac_number_of_images,
            manufacturer: base.manufacturer.clone(),
            field_strength: base.field_strength,
            transfer_syntax: obj
                .meta()
                .transfer_syntax()
                .trim_end_matches('\0')
                .to_string(),
        });
    }
    Ok(out)
}

/// Where the stored values of each frame come from: dicom-pixeldata for every encoding but
/// JPEG-LS, which `jpegls` decodes in pure Rust.
enum FrameSource<'a> {
    Pixeldata(dicom_pixeldata::DecodedPixelData<'a>),
    JpegLs(super::jpegls::JpegLsFrames),
}

impl<'a> FrameSource<'a> {
    /// Decode (or, for JPEG-LS, split into frames) the object's pixel data; decoder panics
    /// become errors.
    fn open(obj: &'a DefaultDicomObject, hdr: &PixelHeader) -> Result<Self, String> {
        if super::jpegls::is_jpeg_ls(obj.meta().transfer_syntax()) {
            let frames = super::jpegls::JpegLsFrames::from_object(
                obj, hdr.rows, hdr.cols, hdr.frames, hdr.spp,
            )?;
            return Ok(Self::JpegLs(frames));
        }
        let decoded = match catch_unwind(AssertUnwindSafe(|| obj.decode_pixel_data())) {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return Err(error_chain(&e)),
            Err(_) => return Err("the pixel decoder panicked on this input".into()),
        };
        if decoded.rows() as usize != hdr.rows || decoded.columns() as usize != hdr.cols {
            return Err(format!(
                "decoded {} x {}, header says {} x {}",
                decoded.rows(),
                decoded.columns(),
                hdr.rows,
                hdr.cols
            ));
        }
        Ok(Self::Pixeldata(decoded))
    }

    /// Stored values of frame `f`, without the modality LUT (rescale is applied per frame by
    /// the caller, since Enhanced MR may give each frame its own).
    fn frame(&self, f: usize) -> Result<Vec<f64>, String> {
        match self {
            Self::JpegLs(frames) => catch_unwind(AssertUnwindSafe(|| frames.frame(f)))
                .unwrap_or_else(|_| Err(format!("frame {f}: the JPEG-LS decoder panicked"))),
            Self::Pixeldata(decoded) => {
                let raw = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
                match catch_unwind(AssertUnwindSafe(|| {
                    decoded.to_vec_frame_with_options::<f64>(f as u32, &raw)
                })) {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(format!("frame {f}: {}", error_chain(&e))),
                    Err(_) => Err(format!("frame {f}: the converter panicked")),
                }
            }
        }
    }
}

/// Native (uncompressed) pixel data must hold at least what the header promises; checking
/// here turns a truncated file into a clear message instead of a decoder-specific one.
fn check_native_length(root: &Obj, hdr: &PixelHeader, path: &Path) -> Result<(), DicomError> {
    let Some(elem) = root.get(tags::PIXEL_DATA) else {
        return Ok(());
    };
    if elem.fragments().is_some() {
        // Encapsulated: the codec checks its own lengths.
        return Ok(());
    }
    let Ok(bytes) = elem.to_bytes() else {
        return Ok(());
    };
    let bits =
        hdr.rows as u64 * hdr.cols as u64 * hdr.spp as u64 * hdr.frames as u64 * hdr.bits_allocated;
    let need = bits.div_ceil(8);
    if (bytes.len() as u64) < need {
        return Err(DicomError::Decode {
            path: path.to_path_buf(),
            reason: format!(
                "pixel data holds {} bytes but the header needs {need} (file truncated?)",
                bytes.len()
            ),
        });
    }
    Ok(())
}

/// File-level attributes shared by all frames.
struct Base {
    ids: Identifiers,
    photometric: String,
    instance_number: Option<i64>,
    cardiac_number_of_images: Option<i64>,
    manufacturer: Option<String>,
    field_strength: Option<f64>,
}

impl Base {
    fn read(o: &Obj) -> Base {
        let date_time = |d, t| match (attr::string(o, d), attr::string(o, t)) {
            (Some(d), Some(t)) => Some(format!("{d}{t}")),
            (None, Some(t)) => Some(t),
            _ => None,
        };
        Base {
            ids: Identifiers {
                patient_id: attr::string(o, tags::PATIENT_ID),
                study_uid: attr::string(o, tags::STUDY_INSTANCE_UID),
                series_uid: attr::string(o, tags::SERIES_INSTANCE_UID),
                sop_instance_uid: attr::string(o, tags::SOP_INSTANCE_UID),
                sop_class_uid: attr::string(o, tags::SOP_CLASS_UID),
                frame_of_reference_uid: attr::string(o, tags::FRAME_OF_REFERENCE_UID),
                series_number: attr::int(o, tags::SERIES_NUMBER),
                series_description: attr::string(o, tags::SERIES_DESCRIPTION),
                series_datetime: date_time(tags::SERIES_DATE, tags::SERIES_TIME)
                    .or_else(|| date_time(tags::ACQUISITION_DATE, tags::ACQUISITION_TIME)),
            },
            photometric: attr::string(o, tags::PHOTOMETRIC_INTERPRETATION)
                .unwrap_or_else(|| "MONOCHROME2".into()),
            instance_number: attr::int(o, tags::INSTANCE_NUMBER),
            cardiac_number_of_images: attr::int(o, tags::CARDIAC_NUMBER_OF_IMAGES),
            manufacturer: attr::string(o, tags::MANUFACTURER),
            field_strength: attr::float(o, tags::MAGNETIC_FIELD_STRENGTH),
        }
    }
}

/// The functional groups that apply to one frame of an Enhanced object: the frame's own item
/// overrides the shared one, which overrides the root data set (classic objects have neither).
struct FrameGroups<'a> {
    own: Option<&'a Obj>,
    shared: Option<&'a Obj>,
}

impl<'a> FrameGroups<'a> {
    /// The first item of functional-group sequence `seq`, from the frame or the shared groups.
    fn group(&self, seq: dicom_core::Tag) -> impl Iterator<Item = &'a Obj> {
        [self.own, self.shared]
            .into_iter()
            .flatten()
            .filter_map(move |g| attr::first_item(g, seq))
    }

    fn float_in<const N: usize>(
        &self,
        root: &Obj,
        seq: dicom_core::Tag,
        tag: dicom_core::Tag,
    ) -> Option<[f64; N]> {
        self.group(seq)
            .find_map(|item| attr::float_array::<N>(item, tag))
            .or_else(|| attr::float_array::<N>(root, tag))
    }

    fn geometry(&self, root: &Obj) -> Geometry {
        let measures = tags::PIXEL_MEASURES_SEQUENCE;
        let spacing = self.float_in::<2>(root, measures, tags::PIXEL_SPACING);
        Geometry {
            pixel_spacing: spacing.filter(|s| s.iter().all(|v| *v > 0.0)),
            position: self.float_in::<3>(
                root,
                tags::PLANE_POSITION_SEQUENCE,
                tags::IMAGE_POSITION_PATIENT,
            ),
            orientation: self
                .float_in::<6>(
                    root,
                    tags::PLANE_ORIENTATION_SEQUENCE,
                    tags::IMAGE_ORIENTATION_PATIENT,
                )
                .filter(|o| o.iter().any(|v| *v != 0.0)),
            slice_thickness: self
                .float_in::<1>(root, measures, tags::SLICE_THICKNESS)
                .map(|v| v[0]),
            spacing_between_slices: self
                .float_in::<1>(root, measures, tags::SPACING_BETWEEN_SLICES)
                .map(|v| v[0]),
        }
    }

    fn trigger_time(&self, root: &Obj) -> Option<f64> {
        let nominal = tags::NOMINAL_CARDIAC_TRIGGER_DELAY_TIME;
        self.group(tags::CARDIAC_SYNCHRONIZATION_SEQUENCE)
            .find_map(|item| attr::float(item, nominal))
            .or_else(|| attr::float(root, tags::TRIGGER_TIME))
            .or_else(|| attr::float(root, nominal))
    }

    /// (slope, intercept); identity when absent.
    fn rescale(&self, root: &Obj) -> (f64, f64) {
        let seq = tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE;
        let slope = self
            .float_in::<1>(root, seq, tags::RESCALE_SLOPE)
            .map(|v| v[0])
            .filter(|s| *s != 0.0)
            .unwrap_or(1.0);
        let intercept = self
            .float_in::<1>(root, seq, tags::RESCALE_INTERCEPT)
            .map(|v| v[0]);
        (slope, intercept.unwrap_or(0.0))
    }
}
