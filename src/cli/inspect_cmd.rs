//! `cineseg inspect`: what a DICOM folder holds (series, slices, phases, spacing, orientation,
//! corrections applied), readable or as JSON.

use super::CliError;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// A DICOM folder (searched recursively) or a single file.
    path: PathBuf,
    /// Print JSON instead of the readable summary.
    #[arg(long)]
    json: bool,
}

pub fn run(a: InspectArgs) -> Result<(), CliError> {
    if !a.path.exists() {
        return Err(CliError::Usage(format!(
            "{}: no such file or folder",
            crate::text::printable(&a.path.display().to_string())
        )));
    }
    // The error names the file (or folder) itself.
    let r = crate::dicom::inspect(&a.path)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).map_err(|e| CliError::Usage(e.to_string()))?
        );
    } else {
        print!("{r}");
    }
    Ok(())
}
