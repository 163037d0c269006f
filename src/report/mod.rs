//! What reaches people: the results folder of a series (DICOM SEG, SR and secondary captures,
//! report.json, report.html), and the pictures in it (overlays with a colour key, the volume
//! curve, the summary page), as RGB buffers written as PNG or wrapped into DICOM.

pub mod annotate;
pub mod curves;
pub mod font;
pub mod html;
pub mod json;
pub mod overlay;
pub mod page;
pub mod results;
pub mod summary_page;
pub mod volume_plot;

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a picture could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Image, labels and declared size disagree; the message names the sizes.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Writing the named file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// Drawing a plot or text failed.
    #[error("drawing failed: {0}")]
    Draw(String),
    /// Writing a DICOM result object failed.
    #[error(transparent)]
    Dicom(#[from] crate::dicom::DicomError),
    /// A file-system step on the results folder failed.
    #[error(transparent)]
    Fs(#[from] crate::fsio::PathIoError),
    /// The NIfTI label file could not be written.
    #[error(transparent)]
    Nifti(#[from] crate::io::IoError),
    /// report.json could not be encoded.
    #[error("report.json: {0}")]
    Json(#[from] serde_json::Error),
    /// The PNG encoder refused the data (for the named file, or `<memory>`).
    #[error("{path}: PNG encoding failed: {source}")]
    Png {
        /// The file being written, or `<memory>`.
        path: PathBuf,
        /// What the encoder said.
        #[source]
        source: png::EncodingError,
    },
}

/// An 8-bit RGB image, row-major, 3 bytes per pixel: the common currency of overlays, plots
/// and montages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width * height * 3` bytes, R G B per pixel.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// A canvas filled with one colour.
    pub fn filled(width: usize, height: usize, colour: [u8; 3]) -> Self {
        let mut data = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            data.extend_from_slice(&colour);
        }
        RgbImage {
            width,
            height,
            data,
        }
    }

    /// The colour at (x, y), or `None` outside.
    pub fn pixel(&self, x: usize, y: usize) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = 3 * (y * self.width + x);
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }

    /// Sets (x, y) to `colour`; points outside are ignored so drawing code can clip freely.
    pub fn put(&mut self, x: i64, y: i64, colour: [u8; 3]) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return;
        }
        let i = 3 * (y as usize * self.width + x as usize);
        self.data[i..i + 3].copy_from_slice(&colour);
    }

    /// PNG bytes of the image (8-bit RGB).
    pub fn encode_png(&self) -> Result<Vec<u8>, ReportError> {
        let mut out = Vec::new();
        self.write_png(&mut out, Path::new("<memory>"))?;
        Ok(out)
    }

    /// Writes the image as a PNG file.
    pub fn save_png(&self, path: &Path) -> Result<(), ReportError> {
        let bytes = self.encode_png()?;
        std::fs::write(path, bytes).map_err(|source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    fn write_png<W: Write>(&self, w: W, path: &Path) -> Result<(), ReportError> {
        let png_err = |source| ReportError::Png {
            path: path.to_path_buf(),
            source,
        };
        let (width, height) = (u32::try_from(self.width), u32::try_from(self.height));
        let (Ok(width), Ok(height)) = (width, height) else {
            return Err(ReportError::Shape(format!(
                "{}x{} is too large for PNG",
                self.width, self.height
            )));
        };
        if self.data.len() != self.width * self.height * 3 {
            return Err(ReportError::Shape(format!(
                "{} bytes for a {}x{} RGB image",
                self.data.len(),
                self.width,
                self.height
            )));
        }
        let mut enc = png::Encoder::new(w, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(png_err)?;
        writer.write_image_data(&self.data).map_err(png_err)?;
        writer.finish().map_err(png_err)
    }
}
