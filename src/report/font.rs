//! The one font every picture cineseg draws uses: DejaVu Sans (Bitstream Vera licence, see
//! `assets/fonts/DejaVu-LICENSE.txt`), compiled into the binary so a headless scanner-side box
//! with no fonts installed still draws real text, the same on every machine.

use std::sync::OnceLock;

use super::ReportError;

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Family name plotters knows the bundled font by.
pub const FAMILY: &str = "sans-serif";

/// Registers the bundled font with plotters (once per process).
pub fn ensure_registered() -> Result<(), ReportError> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, plotters::style::FontStyle::Normal, DEJAVU_SANS)
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ReportError::Draw(
            "the bundled DejaVu Sans font could not be loaded".into(),
        ))
    }
}

/// A plotters drawing error as the report's error (every plot maps its errors this way).
pub fn draw_err<E: std::error::Error>(e: E) -> ReportError {
    ReportError::Draw(e.to_string())
}
