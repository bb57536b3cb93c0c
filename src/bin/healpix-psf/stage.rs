//! Outputs written under temporary names in their destination folder and renamed into place only
//! when every file of a job is complete: a failed run never leaves a partial file under an
//! output's name, nor a new NetCDF beside a stale map (the map is renamed first, the NetCDF last).
//! A run killed by a signal may leave a hidden `.NAME.partial-PID` file beside the outputs.

use crate::CliError;
use std::path::{Path, PathBuf};

/// Temporary files waiting to be renamed to their destinations; dropped uncommitted, they are
/// removed.
#[derive(Default)]
pub struct Staged {
    files: Vec<(PathBuf, PathBuf)>,
}

impl Staged {
    /// A temporary name beside `dest` (hidden, with the process id) to write `dest` under.
    pub fn path(&mut self, dest: &Path) -> PathBuf {
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dest.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        self.files.push((tmp.clone(), dest.to_path_buf()));
        tmp
    }

    /// Renames every temporary file to its destination.
    pub fn commit(mut self) -> Result<(), CliError> {
        let mut files = std::mem::take(&mut self.files);
        // the NetCDF (staged first) is renamed last: if a map's rename fails, no new NetCDF
        files.reverse();
        for (i, (tmp, dest)) in files.iter().enumerate() {
            if let Err(e) = std::fs::rename(tmp, dest) {
                for (t, _) in &files[i..] {
                    let _ = std::fs::remove_file(t);
                }
                return Err(CliError(format!("cannot move {} into place as {}: {e}", tmp.display(), dest.display())));
            }
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (tmp, _) in &self.files {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// A failure injected for tests (`HEALPIX_PSF_FAULT=png` makes the map's write fail after the
/// NetCDF is written), to show that nothing partial is left behind.
pub fn injected(stage: &str) -> Result<(), CliError> {
    match std::env::var("HEALPIX_PSF_FAULT") {
        Ok(s) if s == stage => Err(CliError(format!("writing the {stage} failed (HEALPIX_PSF_FAULT={stage})"))),
        _ => Ok(()),
    }
}
