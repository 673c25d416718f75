//! `ArtifactStore`: the directory where task outputs live, addressed by
//! `artifact://{job}/{task}/{file}` URIs (SPLAI's layout).

use crate::failure::TaskFailure;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// URI scheme of artifacts.
pub const SCHEME: &str = "artifact://";

/// The artifact root and the operations on it.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: Arc<PathBuf>,
}

impl ArtifactStore {
    /// A store rooted at `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self {
            root: Arc::new(root.canonicalize()?),
        })
    }

    /// A store over the system temporary directory, for contexts that never
    /// touch artifacts (health probes, tool self-descriptions).
    pub fn detached() -> Self {
        Self {
            root: Arc::new(std::env::temp_dir()),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The URI of `file` of `task` in `job`.
    pub fn uri(job: &str, task: &str, file: &str) -> String {
        format!("{SCHEME}{job}/{task}/{file}")
    }

    /// The host path behind `uri`, refusing anything that is not a plain
    /// relative path under the root.
    pub fn path_of(&self, uri: &str) -> Result<PathBuf, TaskFailure> {
        let rest = uri.strip_prefix(SCHEME).ok_or_else(|| {
            TaskFailure::invalid_input(format!("`{uri}` is not an artifact:// URI"))
        })?;
        let plain = rest
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
        if rest.is_empty() || !plain {
            return Err(TaskFailure::policy_denied(format!(
                "`{uri}` does not name a file under the artifact root"
            )));
        }
        Ok(self.root.join(rest))
    }

    /// Writes `value` as `{job}/{task}/output.json` atomically (temp file,
    /// fsync, rename) and returns its URI.
    pub fn write_output(
        &self,
        job: &str,
        task: &str,
        value: &Value,
    ) -> Result<String, TaskFailure> {
        let uri = Self::uri(job, task, "output.json");
        let path = self.path_of(&uri)?;
        let io = |e: std::io::Error| TaskFailure::internal(format!("writing {uri}: {e}"));
        let dir = path.parent().expect("artifact path has a parent");
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        serde_json::to_writer(&mut tmp, value).map_err(|e| TaskFailure::internal(e.to_string()))?;
        tmp.flush().map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        Ok(uri)
    }

    /// Reads the JSON document behind `uri`.
    pub fn read_json(&self, uri: &str) -> Result<Value, TaskFailure> {
        let path = self.path_of(uri)?;
        let bytes = std::fs::read(&path)
            .map_err(|e| TaskFailure::invalid_input(format!("reading {uri}: {e}")))?;
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
}
