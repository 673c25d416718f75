//! `ArtifactStore`: the directory where task outputs live, addressed by
//! `artifact://{job}/{task}/{file}` URIs (SPLAI's layout).
//!
//! Jobs see the root read-only (the router refuses a read-write mount), and
//! the node itself reaches everything below it through a directory handle
//! (cap-std), one component at a time, refusing symbolic links: a link a
//! guest or a container planted cannot lead a host-side write or read out
//! of the root. Outputs are written to a new file beside their place and
//! renamed over it, so a reader sees the old document or the new one. Ids
//! are encoded so that distinct (job, task) pairs never share a path.

use crate::failure::TaskFailure;
use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, OpenOptions};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// URI scheme of artifacts.
pub const SCHEME: &str = "artifact://";

/// The artifact root and the operations on it.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: Arc<PathBuf>,
    dir: Arc<Dir>,
}

/// An id as one path segment: itself when it is plain, else with `%` and
/// `/` percent-encoded (and `.`/`..` spelled out), so two ids never map to
/// one segment.
pub fn encode_id(id: &str) -> Result<String, TaskFailure> {
    if id.is_empty() {
        return Err(TaskFailure::invalid_input(
            "an artifact id may not be empty",
        ));
    }
    let encoded = id.replace('%', "%25").replace('/', "%2F");
    Ok(match encoded.as_str() {
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        _ => encoded,
    })
}

impl ArtifactStore {
    /// A store rooted at `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        let root = root.canonicalize()?;
        let dir = Dir::open_ambient_dir(&root, cap_std::ambient_authority())?;
        Ok(Self {
            root: Arc::new(root),
            dir: Arc::new(dir),
        })
    }

    /// A store over one scratch directory in the system's temporary
    /// directory (the same every time), for contexts that never
    /// touch artifacts (health probes, tool self-descriptions).
    pub fn detached() -> Self {
        let root = std::env::temp_dir().join("wasmnode-detached-artifacts");
        Self::open(&root).unwrap_or_else(|e| {
            panic!(
                "cannot open a scratch artifact directory {}: {e}",
                root.display()
            )
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The URI of `file` of `task` in `job` (ids encoded as path segments).
    pub fn uri(job: &str, task: &str, file: &str) -> Result<String, TaskFailure> {
        Ok(format!(
            "{SCHEME}{}/{}/{file}",
            encode_id(job)?,
            encode_id(task)?
        ))
    }

    /// The plain relative path behind `uri`, refusing anything else.
    fn relative(uri: &str) -> Result<Vec<&str>, TaskFailure> {
        let rest = uri.strip_prefix(SCHEME).ok_or_else(|| {
            TaskFailure::invalid_input(format!("`{uri}` is not an artifact:// URI"))
        })?;
        let segments: Vec<&str> = rest.split('/').collect();
        let plain = segments
            .iter()
            .all(|seg| !seg.is_empty() && *seg != "." && *seg != ".." && !seg.contains('\\'));
        if rest.is_empty() || !plain {
            return Err(TaskFailure::policy_denied(format!(
                "`{uri}` does not name a file under the artifact root"
            )));
        }
        Ok(segments)
    }

    /// The host path behind `uri` (for messages and mounts; the node itself
    /// opens artifacts only through its directory handle).
    pub fn path_of(&self, uri: &str) -> Result<PathBuf, TaskFailure> {
        Ok(self.root.join(Self::relative(uri)?.join("/")))
    }

    /// Opens (creating, if asked) the directory `segments` below the root,
    /// one component at a time, never through a symbolic link.
    fn subdir(&self, segments: &[&str], create: bool) -> std::io::Result<Dir> {
        let mut dir = self.dir.try_clone()?;
        for segment in segments {
            if create {
                match dir.create_dir(segment) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            dir = dir.open_dir_nofollow(segment)?;
        }
        Ok(dir)
    }

    /// Writes `value` as `{job}/{task}/output.json` atomically (new file,
    /// fsync, rename over the old one) and returns its URI.
    pub fn write_output(
        &self,
        job: &str,
        task: &str,
        value: &Value,
    ) -> Result<String, TaskFailure> {
        let bytes = serde_json::to_vec(value).map_err(|e| TaskFailure::internal(e.to_string()))?;
        self.write_file(job, task, "output.json", &bytes)
    }

    /// Writes `bytes` as `{job}/{task}/{file}` atomically (new file, fsync,
    /// rename over the old one) and returns its URI.
    pub fn write_file(
        &self,
        job: &str,
        task: &str,
        file: &str,
        bytes: &[u8],
    ) -> Result<String, TaskFailure> {
        let uri = Self::uri(job, task, file)?;
        let segments = Self::relative(&uri)?;
        let io = |e: std::io::Error| TaskFailure::internal(format!("writing {uri}: {e}"));
        let (file_name, dirs) = segments.split_last().expect("a file name");
        let dir = self.subdir(dirs, true).map_err(io)?;
        let temp = format!(".{file_name}.{}.tmp", std::process::id());
        let mut options = OpenOptions::new();
        options
            .write(true)
            .create(true)
            .truncate(true)
            .follow(FollowSymlinks::No);
        let mut file = dir.open_with(&temp, &options).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        dir.rename(&temp, &dir, file_name).map_err(io)?;
        Ok(uri)
    }

    /// Reads the JSON document behind `uri` (never through a symbolic link).
    pub fn read_json(&self, uri: &str) -> Result<Value, TaskFailure> {
        let segments = Self::relative(uri)?;
        let failed = |e: std::io::Error| TaskFailure::invalid_input(format!("reading {uri}: {e}"));
        let (file_name, dirs) = segments.split_last().expect("a file name");
        let dir = self.subdir(dirs, false).map_err(failed)?;
        let mut options = OpenOptions::new();
        options.read(true).follow(FollowSymlinks::No);
        let mut bytes = Vec::new();
        dir.open_with(file_name, &options)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(failed)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| TaskFailure::invalid_input(format!("{uri} is not JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;

    #[test]
    fn writes_and_reads_outputs_by_uri() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let uri = store
            .write_output("j1", "t1", &serde_json::json!({"ok": true}))
            .unwrap();
        assert_eq!(uri, "artifact://j1/t1/output.json");
        assert!(store.root().join("j1/t1/output.json").exists());
        assert_eq!(store.read_json(&uri).unwrap()["ok"], true);
        store
            .write_output("j1", "t1", &serde_json::json!({"ok": "again"}))
            .unwrap();
        assert_eq!(store.read_json(&uri).unwrap()["ok"], "again");
    }

    #[test]
    fn refuses_uris_that_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        for uri in [
            "artifact://../x",
            "artifact:///etc/passwd",
            "artifact://a/./b",
            "artifact://",
        ] {
            assert_eq!(
                store.path_of(uri).unwrap_err().kind,
                FailureKind::PolicyDenied,
                "{uri}"
            );
        }
        assert_eq!(
            store.path_of("file:///x").unwrap_err().kind,
            FailureKind::InvalidInput
        );
    }

    #[test]
    fn distinct_job_and_task_ids_never_share_a_file() {
        let pairs = [
            ("a/b", "c/d"),
            ("a", "b/c/d"),
            ("a/b/c", "d"),
            ("a%2Fb", "c%2Fd"),
            ("..", "x"),
            (".", "x"),
        ];
        let uris: std::collections::HashSet<String> = pairs
            .iter()
            .map(|(j, t)| ArtifactStore::uri(j, t, "output.json").unwrap())
            .collect();
        assert_eq!(uris.len(), pairs.len(), "{uris:?}");
        assert_eq!(
            ArtifactStore::uri("job-1", "task-1", "output.json").unwrap(),
            "artifact://job-1/task-1/output.json",
            "plain ids keep SPLAI's layout"
        );
        assert!(ArtifactStore::uri("", "t", "output.json").is_err());
    }

    #[test]
    fn a_planted_symlink_never_leads_a_write_or_read_outside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(root.path()).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("victim")).unwrap();
        let err = store
            .write_output("victim", "t", &serde_json::json!({"x": 1}))
            .unwrap_err();
        assert_eq!(err.kind, FailureKind::Internal, "{err}");
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "nothing written outside"
        );

        std::fs::write(outside.path().join("secret.json"), b"{\"secret\": 1}").unwrap();
        std::fs::create_dir_all(root.path().join("j/t")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.json"),
            root.path().join("j/t/output.json"),
        )
        .unwrap();
        assert!(
            store.read_json("artifact://j/t/output.json").is_err(),
            "not read through a link"
        );
        store
            .write_output("j", "t", &serde_json::json!({"mine": true}))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret.json")).unwrap(),
            "{\"secret\": 1}",
            "the link was replaced, not written through"
        );
        assert_eq!(
            store.read_json("artifact://j/t/output.json").unwrap()["mine"],
            true
        );
    }
}
