//! Where a built-in retrieval reads its corpus: the index cache, and
//! corpora uploaded once as blobs (`documents_blob: "blob:HASH"`), so that a
//! client can ask many queries of the same documents without sending them
//! again. The blob is checked when the task is planned and, when it runs,
//! handed to the index cache (which knows its key from the blob's hash) or,
//! where the cache takes no part, straight to the guest, read-only.

use super::Router;
use super::routes::is_builtin_retrieval;
use crate::blobs::BlobId;
use crate::failure::TaskFailure;
use crate::index_cache::{self, Lease, StoredCorpus};
use crate::task::{ComponentSource, Runtime, TaskSpec};

/// The payload key naming the blob.
pub const INPUT: &str = "documents_blob";

impl Router {
    /// Checks a built-in retrieval's `documents_blob`: a string, the only
    /// corpus given, and a blob this node holds. A retrieval on a model
    /// server cannot take one.
    pub(super) fn check_corpus_blob(&self, task: &TaskSpec) -> Result<(), TaskFailure> {
        let Some(value) = index_cache::given(&task.payload, INPUT) else {
            return Ok(());
        };
        if !is_builtin_retrieval(task) {
            return match task.runtime {
                Runtime::Model if task.task_type == "retrieval" => {
                    Err(TaskFailure::invalid_input(format!(
                        "`{INPUT}` is read by the built-in retrieval guest; a retrieval on a server takes its documents inline"
                    )))
                }
                // Another component's payload is its own.
                _ => Ok(()),
            };
        }
        let Some(text) = value.as_str() else {
            return Err(TaskFailure::invalid_input(format!(
                "`{INPUT}` must be a string: blob: and the blake3 hash of an uploaded blob"
            )));
        };
        if let Some(other) = index_cache::SOURCES
            .into_iter()
            .chain([index_cache::DIRECTORY])
            .find(|k| index_cache::given(&task.payload, k).is_some())
        {
            return Err(TaskFailure::invalid_input(format!(
                "give only one of `{INPUT}` and `{other}`"
            )));
        }
        let id = BlobId::parse(text)?;
        self.blob_store()?
            .size(&id)
            .map(drop)
            .ok_or_else(|| TaskFailure::from(crate::blobs::BlobError::NotFound(id.to_string())))
    }

    /// Points a built-in retrieval task at where it reads its corpus: the
    /// index cache, where the node keeps one (a deterministic task builds
    /// its index itself, since its answer would say whether the cache hit);
    /// an uploaded blob the cache takes no part in is handed over as it is.
    pub(super) fn corpus_lease(&self, task: &mut TaskSpec) -> Result<Option<Lease>, TaskFailure> {
        if !is_builtin_retrieval(task) {
            return Ok(None);
        }
        let stored = self.take_corpus_blob(task)?;
        let cached = match &self.index_cache {
            Some(cache) if task.deterministic.is_none() => {
                let guest = self
                    .executors
                    .wasm
                    .load(&ComponentSource::Builtin("retrieval".into()))?
                    .hash;
                cache.prepare(task, &guest, stored.as_ref())
            }
            _ => None,
        };
        match (cached, stored) {
            (Some(lease), _) => Ok(Some(lease)),
            (None, Some(stored)) => {
                index_cache::hand_over(task, &stored, &self.scratch_root).map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// Takes `documents_blob` out of a planned task's payload: the blob's
    /// file, marked used.
    fn take_corpus_blob(&self, task: &mut TaskSpec) -> Result<Option<StoredCorpus>, TaskFailure> {
        let Some(value) = task.payload.as_object_mut().and_then(|p| p.remove(INPUT)) else {
            return Ok(None);
        };
        let Some(text) = value.as_str() else {
            return Ok(None);
        };
        let id = BlobId::parse(text)?;
        Ok(Some(StoredCorpus::of_blob(self.blob_store()?, &id)?))
    }
}

#[cfg(test)]
mod tests;
