//! What a received object is, before anything decodes its pixels: a segmentation (corrected
//! contours coming back from a viewer) or an image, and which series a segmentation was drawn
//! on. The daemon routes corrected contours to the fine-tuning data by this.

use std::path::Path;

use dicom_dictionary_std::{tags, uids};

use super::attr;
use super::error::DicomError;
use super::instance::parse;

/// The SeriesInstanceUID a Segmentation Storage object (file content `bytes`, named `path` in
/// errors) was drawn on (its ReferencedSeriesSequence), or `None` when it is not a
/// segmentation. Read the file with [`super::instance::read_capped`] so its size is checked first.
pub fn segmentation_reference(bytes: &[u8], path: &Path) -> Result<Option<String>, DicomError> {
    let obj = parse(bytes, path)?;
    let root: &attr::Obj = &obj;
    if attr::string(root, tags::SOP_CLASS_UID).as_deref() != Some(uids::SEGMENTATION_STORAGE) {
        return Ok(None);
    }
    let series = attr::first_item(root, tags::REFERENCED_SERIES_SEQUENCE)
        .and_then(|item| attr::string(item, tags::SERIES_INSTANCE_UID))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| DicomError::Invalid {
            path: path.to_path_buf(),
            attribute: "ReferencedSeriesSequence",
            reason: "the segmentation does not say which series it was drawn on".into(),
        })?;
    Ok(Some(series))
}
