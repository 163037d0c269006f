//! Fuzz the file reader: any byte string must give instances or a typed error, never a panic,
//! and never an allocation beyond the caps (libFuzzer's -rss_limit_mb catches those).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz-input.dcm");
    // Raw input, and the same input behind a preamble + DICM marker so the parser gets past
    // the magic check on most inputs.
    let _ = cineseg::dicom::instance::read_bytes(data, path);
    let mut framed = vec![0u8; 128];
    framed.extend_from_slice(b"DICM");
    framed.extend_from_slice(data);
    if let Ok(instances) = cineseg::dicom::instance::read_bytes(&framed, path) {
        for i in &instances {
            assert_eq!(i.pixels.len(), i.rows * i.cols * i.samples_per_pixel);
        }
    }
});
