//! The backstop of a container's wall-clock limit: a small static program
//! (`runtime/deadline`, embedded in the node) mounted read-only into every
//! container as its entrypoint, which runs the job's own command and ends
//! the container shortly after the limit. The node ends late containers
//! itself while it runs; the backstop holds the limit when the node is gone.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The helper, built by `build.rs` for the node's own target.
const HELPER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/deadline_helper.bin"));
/// Where containers see the helper.
pub const MOUNT: &str = "/.wasmnode/deadline";
/// How long past the node's own deadline the helper waits, so that a live
/// node ends the container first and records the timeout itself.
pub const GRACE: Duration = Duration::from_secs(5);

/// Writes the helper under `dir` (once per version); returns its path.
/// Each writer fills a file of its own and renames it into place, so
/// executors connecting at once never see a half-written helper.
pub fn install(dir: &Path) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let hash = blake3::hash(HELPER).to_hex();
    let path = dir.join(format!("wasmnode-deadline-{}", &hash[..16]));
    if std::fs::read(&path).is_ok_and(|bytes| bytes == HELPER) {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)?;
    let mut partial = tempfile::Builder::new()
        .prefix(".wasmnode-deadline-")
        .tempfile_in(dir)?;
    partial.write_all(HELPER)?;
    partial
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o755))?;
    partial.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

/// The entrypoint that runs `argv` under the helper with `limit` (plus
/// [`GRACE`]).
pub fn entrypoint(limit: Duration, argv: Vec<String>) -> Vec<String> {
    let seconds = (limit + GRACE).as_secs_f64();
    [MOUNT.to_string(), format!("{seconds:.3}"), "--".into()]
        .into_iter()
        .chain(argv)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executors_installing_the_helper_at_once_all_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let installs: Vec<_> = (0..8)
            .map(|_| {
                let dir = dir.path().to_path_buf();
                std::thread::spawn(move || install(&dir))
            })
            .collect();
        for install in installs {
            let path = install.join().unwrap().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), HELPER);
        }
    }

    #[test]
    fn the_helper_is_installed_once_and_executable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = install(dir.path()).unwrap();
        assert_eq!(install(dir.path()).unwrap(), path);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let out = std::process::Command::new(&path)
            .args(["5", "--", "sh", "-c", "exit 3"])
            .status()
            .unwrap();
        assert_eq!(out.code(), Some(3), "the program's own status is kept");
        let stopped = std::process::Command::new(&path)
            .args(["0.2", "--", "sleep", "30"])
            .status()
            .unwrap();
        assert_eq!(stopped.code(), Some(124), "stopped at its limit");
    }

    #[test]
    fn the_job_runs_under_the_helper_with_grace() {
        let argv = entrypoint(Duration::from_secs(10), vec!["sleep".into(), "1".into()]);
        assert_eq!(argv, [MOUNT, "15.000", "--", "sleep", "1"]);
    }
}
