//! What the commands that run for a while (`chaos`, `load`) hand over at the end: their report
//! printed, and kept as JSON when asked (`--json FILE`), to compare runs.

use std::fmt::Display;
use std::path::Path;

use serde::Serialize;

/// Prints `report`, and writes it as JSON to `json` if given; the error names the file.
pub(crate) fn hand_over<R: Display + Serialize>(
    report: &R,
    json: Option<&Path>,
) -> Result<(), String> {
    print!("{report}");
    let Some(path) = json else { return Ok(()) };
    serde_json::to_vec_pretty(report)
        .map_err(|e| e.to_string())
        .and_then(|bytes| std::fs::write(path, bytes).map_err(|e| e.to_string()))
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}
