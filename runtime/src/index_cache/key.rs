//! The content key of a corpus, and the corpus's bytes as the guest reads
//! them: inline in a task's input, or a file the node holds.

use crate::blobs::{BlobError, BlobId, BlobStore};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A content key: which index a corpus has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub(super) blake3::Hash);

impl Key {
    /// The key of a corpus given as `input` (`documents_json` or
    /// `documents`) with `value`, indexed by the guest whose binary hashes
    /// to `guest`.
    pub fn new(guest: &blake3::Hash, input: &str, value: &Value) -> Self {
        Self::of(guest, input, &Corpus::of(value).hash())
    }

    /// The key of the corpus whose bytes hash (plain blake3) to `corpus`,
    /// read by the guest as the input `input`: the same whether the bytes
    /// came inline or as a [`StoredCorpus`].
    pub(super) fn of(guest: &blake3::Hash, input: &str, corpus: &blake3::Hash) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("wasmnode retrieval index v2");
        hasher.update(guest.as_bytes());
        hasher.update(&(input.len() as u64).to_le_bytes());
        hasher.update(input.as_bytes());
        hasher.update(corpus.as_bytes());
        Self(hasher.finalize())
    }

    pub(super) fn dir_name(&self) -> String {
        self.0.to_hex().to_string()
    }
}

/// A corpus's bytes as the guest reads them: a string's own, the JSON of
/// an array (serialised once, for its size, its key and its file), or a
/// file the node holds.
pub(super) enum Corpus<'a> {
    Text(&'a [u8]),
    Json(Vec<u8>),
    Stored(&'a StoredCorpus),
}

impl<'a> Corpus<'a> {
    pub(super) fn of(value: &'a Value) -> Self {
        match value {
            Value::String(text) => Self::Text(text.as_bytes()),
            other => Self::Json(serde_json::to_vec(other).expect("JSON serialises")),
        }
    }

    pub(super) fn len(&self) -> u64 {
        match self {
            Self::Text(bytes) => bytes.len() as u64,
            Self::Json(bytes) => bytes.len() as u64,
            Self::Stored(stored) => stored.size,
        }
    }

    /// The blake3 of the bytes: computed for an inline corpus, known for a
    /// stored one. A string and an array whose JSON are the same bytes
    /// share it: the guest is handed only the bytes and the input they came
    /// in, and reads them alike.
    pub(super) fn hash(&self) -> blake3::Hash {
        match self {
            Self::Text(bytes) => blake3::hash(bytes),
            Self::Json(bytes) => blake3::hash(bytes),
            Self::Stored(stored) => stored.hash,
        }
    }

    /// Writes the bytes to `path` (a stored corpus is copied: the guest may
    /// write where it goes).
    pub(super) fn write(&self, path: &Path) -> std::io::Result<()> {
        match self {
            Self::Text(bytes) => std::fs::write(path, bytes),
            Self::Json(bytes) => std::fs::write(path, bytes),
            Self::Stored(stored) => std::fs::copy(&stored.path, path).map(drop),
        }
    }
}

/// A corpus the node holds as a file, read as `documents_json` would be:
/// an uploaded blob, named by the blake3 of its bytes, so that its key
/// needs none of them read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCorpus {
    /// The blake3 of its bytes.
    pub hash: blake3::Hash,
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

impl StoredCorpus {
    /// The input the guest reads its bytes as.
    pub(super) const INPUT: &str = "documents_json";

    /// The uploaded blob `id` in `blobs` as a corpus (its file marked used).
    pub fn of_blob(blobs: &BlobStore, id: &BlobId) -> Result<Self, BlobError> {
        let path = blobs.file(id)?;
        let size = std::fs::metadata(&path)?.len();
        Ok(Self {
            hash: id.hash(),
            path,
            size,
        })
    }
}
