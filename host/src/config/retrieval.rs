//! `[retrieval]`: the built-in retrieval task's index cache.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use wasmnode_runtime::index_cache::IndexCacheSettings;

/// The index cache as the operator sets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrievalSection {
    /// The most MiB the cached BM25 indexes may take on disk together; `0`
    /// turns the cache off.
    pub index_cache_mb: u64,
    /// Corpora smaller than this many KiB are indexed by every task (that
    /// costs less than the cache's file work).
    pub index_cache_min_corpus_kb: u64,
    /// Keep the cache here instead of `<data_dir>/index-cache`.
    pub index_cache_dir: Option<PathBuf>,
}

impl Default for RetrievalSection {
    fn default() -> Self {
        Self {
            index_cache_mb: 512,
            index_cache_min_corpus_kb: 64,
            index_cache_dir: None,
        }
    }
}

impl RetrievalSection {
    /// The cache's settings, or `None` when it is off.
    pub fn index_cache(&self, data_dir: &Path) -> Option<IndexCacheSettings> {
        (self.index_cache_mb > 0).then(|| IndexCacheSettings {
            dir: self
                .index_cache_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("index-cache")),
            max_bytes: self.index_cache_mb << 20,
            min_corpus_bytes: self.index_cache_min_corpus_kb << 10,
        })
    }
}
