//! Abstract and transfer syntaxes the receiver accepts. Listed explicitly (not promiscuous) so
//! a sender offering something we cannot use gets a clean per-context rejection.

/// Verification (C-ECHO).
pub const VERIFICATION: &str = "1.2.840.10008.1.1";
/// MR Image Storage.
pub const MR_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
/// Enhanced MR Image Storage.
pub const ENHANCED_MR_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.4.1";
/// Segmentation Storage.
pub const SEGMENTATION: &str = "1.2.840.10008.5.1.4.1.1.66.4";
/// Secondary Capture Image Storage.
pub const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";

/// Storage SOP classes accepted (SEG and SC too: corrected contours come back as SEG).
pub const STORAGE_CLASSES: [&str; 4] =
    [MR_IMAGE, ENHANCED_MR_IMAGE, SEGMENTATION, SECONDARY_CAPTURE];

/// Implicit VR Little Endian, the default every peer supports.
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian.
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// Transfer syntaxes accepted, in order of preference: uncompressed first, then the
/// compressions our reader decodes (deflate, RLE, JPEG lossless/baseline, JPEG-LS, JPEG 2000).
pub const TRANSFER_SYNTAXES: [&str; 10] = [
    EXPLICIT_LE,
    IMPLICIT_LE,
    "1.2.840.10008.1.2.1.99", // deflated explicit VR LE
    "1.2.840.10008.1.2.5",    // RLE lossless
    "1.2.840.10008.1.2.4.70", // JPEG lossless SV1
    "1.2.840.10008.1.2.4.57", // JPEG lossless
    "1.2.840.10008.1.2.4.50", // JPEG baseline
    "1.2.840.10008.1.2.4.80", // JPEG-LS lossless
    "1.2.840.10008.1.2.4.90", // JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91", // JPEG 2000
];

/// Whether `uid` (possibly padded with a trailing NUL or space) is a storage class we accept.
pub fn is_storage_class(uid: &str) -> bool {
    let uid = uid.trim_end_matches(['\0', ' ']);
    STORAGE_CLASSES.contains(&uid)
}
