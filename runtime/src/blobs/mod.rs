//! `BlobStore`: bytes uploaded to the node (`PUT /blobs`), addressed by
//! their blake3 hash, so a job can mount an uploaded source tree
//! (`blob:HASH`, a tar or tar.gz unpacked once, read-only) or run an
//! uploaded component where the policy allows it.
//!
//! Layout under the root: `data/HASH` holds the bytes, `tree/HASH/` the
//! unpacked archive, `tmp/` uploads and unpacks in progress (renamed into
//! place when complete, so a reader never sees half of one). An upload is
//! written to disk as it arrives and synced before it is acknowledged;
//! the same bytes uploaded twice are stored once. A blob's modification
//! time is its last use; `sweep` removes those idle past the retention age.

mod unpack;

use crate::failure::TaskFailure;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

/// How a job names a blob: `blob:` and the 64 hex digits of its blake3 hash.
pub const SCHEME: &str = "blob:";

/// The operator's bounds on uploads (`[blobs]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLimits {
    /// Largest upload.
    pub max_bytes: u64,
    /// Most bytes all blobs together may take (uploads past it are refused
    /// until idle blobs are swept).
    pub max_total_bytes: u64,
    /// Most bytes one archive may unpack to.
    pub max_unpacked_bytes: u64,
    /// Most entries one archive may hold.
    pub max_entries: u64,
}

impl Default for BlobLimits {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            max_total_bytes: 8 << 30,
            max_unpacked_bytes: 4 << 30,
            max_entries: 100_000,
        }
    }
}

/// Why a blob could not be stored or used.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The upload passed `max_bytes`.
    #[error("the upload is larger than the {limit} bytes one blob may have ([blobs] max_mb)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Storing it would pass `max_total_bytes`.
    #[error(
        "the node's blob store is full ({limit} bytes, [blobs] max_total_mb); blobs unused for the retention period are removed"
    )]
    StoreFull {
        /// The limit.
        limit: u64,
    },
    /// It looks like a tar archive but cannot be unpacked safely.
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    /// The text is not `blob:HASH`.
    #[error("`{0}` is not a blob reference: give blob: and the 64 hex digits of its blake3 hash")]
    BadReference(String),
    /// No blob with that hash.
    #[error("no blob {0} on this node (upload it with PUT /blobs first)")]
    NotFound(String),
    /// A mount names a blob that is not an archive.
    #[error("blob {0} is not a tar or tar.gz archive, and only archives can be mounted")]
    NotAnArchive(String),
    /// The node keeps no blobs (the local CLI).
    #[error("this node keeps no uploaded blobs (`wasmnode serve` does)")]
    NoStore,
    /// The upload stream failed before its end.
    #[error("the upload was cut off: {0}")]
    Upload(String),
    /// The disk failed.
    #[error("blob store: {0}")]
    Io(#[from] std::io::Error),
}

impl From<BlobError> for TaskFailure {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Io(_) => TaskFailure::internal(e.to_string()),
            BlobError::NoStore => TaskFailure::backend_unavailable(e.to_string()),
            _ => TaskFailure::invalid_input(e.to_string()),
        }
    }
}

/// The failure of an executor handed a `blob:` reference: the router turns
/// every one into a file or directory before a task runs.
pub fn unresolved(reference: &str) -> TaskFailure {
    TaskFailure::internal(format!(
        "{reference} reached an executor unresolved (the router resolves uploaded blobs)"
    ))
}

/// A blob's hash: 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(String);

impl BlobId {
    /// Parses `blob:HASH` (or the bare hash); upper-case digits are accepted.
    pub fn parse(text: &str) -> Result<Self, BlobError> {
        let hex = text.strip_prefix(SCHEME).unwrap_or(text);
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(hex.to_ascii_lowercase()))
        } else {
            Err(BlobError::BadReference(text.to_string()))
        }
    }

    /// The hex digits.
    pub fn hex(&self) -> &str {
        &self.0
    }

    /// The blake3 hash of the blob's bytes.
    pub fn hash(&self) -> blake3::Hash {
        blake3::Hash::from_hex(&self.0).expect("a blob id is 64 hex digits")
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SCHEME}{}", self.0)
    }
}

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stored {
    /// `blob:HASH`.
    pub blob: String,
    /// Its size in bytes.
    pub size: u64,
    /// False when the same bytes were here already.
    pub created: bool,
    /// For an archive, what it unpacks to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<Unpacked>,
}

/// What an archive unpacked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unpacked {
    /// Regular files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The blob directory and its limits.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: Arc<PathBuf>,
    limits: BlobLimits,
    /// Serialises the check of the total against the rename into place.
    admit: Arc<std::sync::Mutex<()>>,
}

impl BlobStore {
    /// A store at `root` (created if missing); uploads left half-written by
    /// an earlier run are removed.
    pub fn open(root: impl Into<PathBuf>, limits: BlobLimits) -> std::io::Result<Self> {
        let root = root.into();
        for sub in ["data", "tree"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let tmp = root.join("tmp");
        if tmp.exists() {
            unpack::remove_tree(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(Self {
            root: Arc::new(root.canonicalize()?),
            limits,
            admit: Arc::default(),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> BlobLimits {
        self.limits
    }

    fn data(&self, id: &BlobId) -> PathBuf {
        self.root.join("data").join(id.hex())
    }

    fn tree(&self, id: &BlobId) -> PathBuf {
        self.root.join("tree").join(id.hex())
    }

    /// Stores the bytes `body` yields, hashing them as they arrive.
    pub async fn put<S, E>(&self, mut body: S) -> Result<Stored, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
        let mut file = tokio::fs::File::from_std(tmp.reopen()?);
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Upload(e.to_string()))?;
            size += chunk.len() as u64;
            if size > self.limits.max_bytes {
                return Err(BlobError::TooLarge {
                    limit: self.limits.max_bytes,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        drop(file);
        let id = BlobId(hasher.finalize().to_hex().to_string());
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.admit(tmp, id, size))
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
    }

    /// What storing `id` again answers: nothing new, marked used.
    fn known(&self, id: &BlobId, size: u64) -> Result<Stored, BlobError> {
        touch(&self.data(id))?;
        Ok(Stored {
            archive: self.tree_size(id),
            blob: id.to_string(),
            size,
            created: false,
        })
    }

    /// Unpacks an archive beside its place, then renames both into place,
    /// unless the same bytes are here already (or arrive meanwhile).
    fn admit(
        &self,
        tmp: tempfile::NamedTempFile,
        id: BlobId,
        size: u64,
    ) -> Result<Stored, BlobError> {
        let data = self.data(&id);
        if data.exists() {
            return self.known(&id, size);
        }
        let unpacked = match unpack::kind(tmp.path())? {
            Some(kind) => {
                let dir = tempfile::Builder::new()
                    .prefix("tree-")
                    .tempdir_in(self.root.join("tmp"))?;
                let counted = unpack::unpack(tmp.path(), kind, dir.path(), &self.limits)?;
                Some((dir, counted))
            }
            None => None,
        };
        let _admit = self.admit.lock().unwrap_or_else(|e| e.into_inner());
        if data.exists() {
            return self.known(&id, size);
        }
        let used = dir_bytes(&self.root.join("data"))?;
        if used + size > self.limits.max_total_bytes {
            return Err(BlobError::StoreFull {
                limit: self.limits.max_total_bytes,
            });
        }
        let archive = match unpacked {
            Some((dir, counted)) => {
                let tree = self.tree(&id);
                if tree.exists() {
                    unpack::remove_tree(&tree)?;
                }
                std::fs::rename(dir.keep(), &tree)?;
                Some(counted)
            }
            None => None,
        };
        tmp.persist(&data).map_err(|e| e.error)?;
        sync_dir(&self.root.join("data"))?;
        Ok(Stored {
            blob: id.to_string(),
            size,
            created: true,
            archive,
        })
    }

    /// What the archive `id` unpacked to, when it is one.
    fn tree_size(&self, id: &BlobId) -> Option<Unpacked> {
        let text = std::fs::read(self.tree(id).join(unpack::SUMMARY)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Whether `id` is here, and its size.
    pub fn size(&self, id: &BlobId) -> Option<u64> {
        std::fs::metadata(self.data(id)).ok().map(|m| m.len())
    }

    /// The unpacked tree of the archive `id`, to mount read-only (unpacked
    /// again if an earlier run lost it); marks the blob used.
    pub fn mount_dir(&self, id: &BlobId) -> Result<PathBuf, BlobError> {
        let data = self.data(id);
        if !data.exists() {
            return Err(BlobError::NotFound(id.to_string()));
        }
        touch(&data)?;
        let tree = self.tree(id);
        if tree.join(unpack::CONTENT).is_dir() {
            return Ok(tree.join(unpack::CONTENT));
        }
        let Some(kind) = unpack::kind(&data)? else {
            return Err(BlobError::NotAnArchive(id.to_string()));
        };
        let dir = tempfile::Builder::new()
            .prefix("tree-")
            .tempdir_in(self.root.join("tmp"))?;
        unpack::unpack(&data, kind, dir.path(), &self.limits)?;
        let kept = dir.keep();
        if let Err(e) = std::fs::rename(&kept, &tree) {
            // Another task unpacked the same blob first.
            unpack::remove_tree(&kept)?;
            if !tree.join(unpack::CONTENT).is_dir() {
                return Err(e.into());
            }
        }
        Ok(tree.join(unpack::CONTENT))
    }

    /// The file holding the blob `id` (a component to run, a corpus to
    /// read); marks it used.
    pub fn file(&self, id: &BlobId) -> Result<PathBuf, BlobError> {
        let data = self.data(id);
        if !data.exists() {
            return Err(BlobError::NotFound(id.to_string()));
        }
        touch(&data)?;
        Ok(data)
    }

    /// Removes the blobs not used for `max_idle`; answers how many.
    pub fn sweep(&self, max_idle: Duration) -> std::io::Result<usize> {
        let cutoff = SystemTime::now()
            .checked_sub(max_idle)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut removed = 0;
        for entry in std::fs::read_dir(self.root.join("data"))? {
            let entry = entry?;
            let idle = entry.metadata()?.modified()? < cutoff;
            let Ok(id) = BlobId::parse(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            if idle {
                let _admit = self.admit.lock().unwrap_or_else(|e| e.into_inner());
                let tree = self.tree(&id);
                if tree.exists() {
                    unpack::remove_tree(&tree)?;
                }
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Marks `path` used now.
fn touch(path: &Path) -> std::io::Result<()> {
    std::fs::File::options()
        .append(true)
        .open(path)?
        .set_modified(SystemTime::now())
}

/// The bytes of the files directly in `dir`.
fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The first bytes of `path`, up to `n`.
fn head(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(n);
    std::fs::File::open(path)?
        .take(n as u64)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests;
