//! The retrieval index cache: BM25 indexes the built-in retrieval guest
//! wrote for a corpus, kept on disk under a content key and handed back to
//! the guest, read-only, when a later task ranks the same corpus.
//!
//! The node never reads an index itself. For a retrieval task whose inline
//! corpus (`documents_json` or `documents`) is large enough, the key is the
//! blake3 of the guest's own binary (its tokenizer, stemmer, stop words,
//! BM25 parameters and file format), the input the corpus came in, and the
//! corpus bytes. The corpus is taken out of the task's input either way.
//! On a hit the entry's directory is mounted read-only with
//! `index_cache.read` naming the index and `index_cache.corpus` the corpus
//! kept beside it; on a miss the node writes the corpus to a file in a
//! fresh directory, mounted writable with `index_cache.corpus` and
//! `index_cache.from` (the input it came in) saying where the documents
//! are, and `index_cache.write` where the index goes. The guest reads the
//! documents as they are, not unescaped from a string inside its input,
//! and the index's records refer to their text in the corpus file instead
//! of copying it. What the guest wrote becomes the entry, with the corpus,
//! once the task succeeds. Entries are evicted least recently used first
//! to stay within a byte budget (index and corpus together); an entry a
//! running task reads is kept until that task ends.

mod key;

use key::Corpus;
pub use key::Key;

use crate::failure::TaskFailure;
use crate::task::{Mount, MountSource, TaskSpec};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where the guest sees its index directory.
pub const GUEST_DIR: &str = "/.wasmnode/bm25";
/// The input through which the node tells the guest what to do; a task
/// may not set it.
pub const INPUT: &str = "index_cache";
/// The index file inside an entry.
const FILE: &str = "index.bm25";
/// The corpus file inside an entry: the documents as the guest read them.
const CORPUS: &str = "corpus";
/// Directory of the indexes being written by running tasks.
const INCOMING: &str = "incoming";
/// The inputs a corpus may come in, each read differently by the guest.
const SOURCES: [&str; 2] = ["documents_json", "documents"];

/// How the cache is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexCacheSettings {
    /// Its directory.
    pub dir: PathBuf,
    /// The most bytes its indexes and their corpora may take together.
    pub max_bytes: u64,
    /// Corpora smaller than this are indexed every time (indexing them
    /// costs less than the cache's file work).
    pub min_corpus_bytes: u64,
}

/// Counters since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexCacheStats {
    /// Tasks that read a cached index.
    pub hits: u64,
    /// Tasks that built an index the cache did not have.
    pub misses: u64,
    /// Indexes written by those tasks and kept.
    pub stored: u64,
    /// Entries removed to stay within the budget.
    pub evicted: u64,
    /// Entries held now.
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
}

struct Entry {
    bytes: u64,
    used: u64,
    pins: u32,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    clock: u64,
    stats: IndexCacheStats,
}

struct Inner {
    settings: IndexCacheSettings,
    state: Mutex<State>,
}

/// The cache; clones share it.
#[derive(Clone)]
pub struct IndexCache {
    inner: Arc<Inner>,
}

/// Refuses a task that sets the node's own `index_cache` input.
pub fn refuse_reserved(task: &TaskSpec) -> Result<(), TaskFailure> {
    match task.payload.get(INPUT) {
        None => Ok(()),
        Some(_) => Err(TaskFailure::invalid_input(format!(
            "`{INPUT}` is set by the node for its index cache, not by a task"
        ))),
    }
}

impl IndexCache {
    /// Opens the cache at `settings.dir`: indexes left by a previous run are
    /// kept (oldest written counts as least recently used), half-written
    /// ones removed, and the budget enforced.
    pub fn open(settings: IndexCacheSettings) -> std::io::Result<Self> {
        let root = &settings.dir;
        std::fs::create_dir_all(root)?;
        let incoming = root.join(INCOMING);
        if incoming.exists() {
            std::fs::remove_dir_all(&incoming)?;
        }
        std::fs::create_dir_all(&incoming)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == INCOMING {
                continue;
            }
            let file = |name| std::fs::metadata(entry.path().join(name)).ok();
            match (blake3::Hash::from_hex(&name), file(FILE), file(CORPUS)) {
                (Ok(hash), Some(index), Some(corpus)) if index.is_file() && corpus.is_file() => {
                    let bytes = index.len() + corpus.len();
                    found.push((index.modified().ok(), Key(hash), bytes));
                }
                _ => remove(&entry.path()),
            }
        }
        found.sort_by_key(|(modified, _, _)| *modified);
        let mut state = State::default();
        for (_, key, bytes) in found {
            state.clock += 1;
            let used = state.clock;
            state.entries.insert(
                key,
                Entry {
                    bytes,
                    used,
                    pins: 0,
                },
            );
        }
        let cache = Self {
            inner: Arc::new(Inner {
                settings,
                state: Mutex::new(state),
            }),
        };
        cache.inner.evict(&mut cache.inner.lock());
        Ok(cache)
    }

    /// Counters and size.
    pub fn stats(&self) -> IndexCacheStats {
        let state = self.inner.lock();
        IndexCacheStats {
            entries: state.entries.len() as u64,
            bytes: state.entries.values().map(|e| e.bytes).sum(),
            ..state.stats
        }
    }

    /// Points a retrieval task run by the guest hashing to `guest` at the
    /// cache: a cached index replaces its corpus, or the index it builds is
    /// written for the next one. `None` when the cache has no part in it
    /// (no inline corpus, one too small to gain or too large to keep, or a
    /// directory).
    pub fn prepare(&self, task: &mut TaskSpec, guest: &blake3::Hash) -> Option<Lease> {
        let payload = task.payload.as_object()?;
        let present = |k: &str| payload.get(k).is_some_and(|v| !v.is_null());
        let mut given = SOURCES.iter().filter(|k| present(k));
        let (Some(&input), None) = (given.next(), given.next()) else {
            return None;
        };
        if present("directory") || task.mounts.iter().any(|m| m.guest_path == GUEST_DIR) {
            return None;
        }
        let corpus = Corpus::of(&payload[input]);
        let settings = &self.inner.settings;
        if corpus.len() < settings.min_corpus_bytes || corpus.len() >= settings.max_bytes {
            return None;
        }
        let key = Key::of(guest, input, &corpus);
        let hit = {
            let mut state = self.inner.lock();
            state.clock += 1;
            let now = state.clock;
            let pinned = state.entries.get_mut(&key).map(|entry| {
                entry.pins += 1;
                entry.used = now;
            });
            if pinned.is_some() {
                state.stats.hits += 1;
            } else {
                state.stats.misses += 1;
            }
            pinned.is_some()
        };
        let (dir, writable, lease, request) = if hit {
            let lease = Lease::Hit(Pin {
                inner: self.inner.clone(),
                key,
            });
            let request = json!({
                "read": format!("{GUEST_DIR}/{FILE}"),
                "corpus": format!("{GUEST_DIR}/{CORPUS}"),
            });
            (self.inner.entry_dir(&key), false, lease, request)
        } else {
            let incoming = tempfile::Builder::new()
                .prefix("index-")
                .tempdir_in(settings.dir.join(INCOMING))
                .and_then(|dir| {
                    std::fs::write(dir.path().join(CORPUS), corpus.bytes()).map(|()| dir)
                });
            let incoming = match incoming {
                Ok(dir) => dir,
                Err(e) => {
                    // The task still runs, on the documents in its input.
                    tracing::warn!(error = %e, "cannot write a corpus for the retrieval index cache");
                    return None;
                }
            };
            let request = json!({
                "write": format!("{GUEST_DIR}/{FILE}"),
                "max_bytes": settings.max_bytes - corpus.len(),
                "corpus": format!("{GUEST_DIR}/{CORPUS}"),
                "from": input,
            });
            let dir = incoming.path().to_path_buf();
            let lease = Lease::Miss(Incoming {
                inner: self.inner.clone(),
                key,
                dir: incoming,
            });
            (dir, true, lease, request)
        };
        let payload = task.payload.as_object_mut().expect("checked above");
        for source in SOURCES {
            payload.remove(source);
        }
        payload.insert(INPUT.into(), request);
        task.mounts.push(Mount {
            source: MountSource::NodeCache(dir),
            guest_path: GUEST_DIR.into(),
            writable,
        });
        Some(lease)
    }
}

/// A task's hold on the cache while it runs.
pub enum Lease {
    /// It reads this entry, which is not evicted meanwhile.
    Hit(Pin),
    /// It writes a new index here.
    Miss(Incoming),
}

impl Lease {
    /// Ends the hold: a successful miss's index becomes an entry.
    pub fn finish(self, succeeded: bool) {
        if let (Self::Miss(incoming), true) = (self, succeeded) {
            incoming.adopt();
        }
    }
}

/// An entry in use.
pub struct Pin {
    inner: Arc<Inner>,
    key: Key,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        if let Some(entry) = state.entries.get_mut(&self.key) {
            entry.pins -= 1;
        }
        self.inner.evict(&mut state);
    }
}

/// A directory a task may write its index into.
pub struct Incoming {
    inner: Arc<Inner>,
    key: Key,
    dir: tempfile::TempDir,
}

impl Incoming {
    fn adopt(self) {
        let file = |name| {
            let path = self.dir.path().join(name);
            std::fs::symlink_metadata(&path)
                .ok()
                .filter(|meta| meta.is_file())
                .map(|meta| (path, meta.len()))
        };
        let (Some((index, index_bytes)), Some((corpus, corpus_bytes))) = (file(FILE), file(CORPUS))
        else {
            return;
        };
        let bytes = index_bytes + corpus_bytes;
        if index_bytes == 0 || bytes > self.inner.settings.max_bytes {
            return;
        }
        let mut state = self.inner.lock();
        if state.entries.contains_key(&self.key) {
            return;
        }
        let dir = self.inner.entry_dir(&self.key);
        remove(&dir);
        let moved = std::fs::create_dir(&dir)
            .and_then(|()| std::fs::rename(&corpus, dir.join(CORPUS)))
            .and_then(|()| std::fs::rename(&index, dir.join(FILE)));
        if let Err(e) = moved {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot keep a retrieval index");
            remove(&dir);
            return;
        }
        state.clock += 1;
        let used = state.clock;
        state.entries.insert(
            self.key,
            Entry {
                bytes,
                used,
                pins: 0,
            },
        );
        state.stats.stored += 1;
        self.inner.evict(&mut state);
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry_dir(&self, key: &Key) -> PathBuf {
        self.settings.dir.join(key.dir_name())
    }

    /// Removes the least recently used entries no task reads until the
    /// cache is within its budget.
    fn evict(&self, state: &mut State) {
        let mut total: u64 = state.entries.values().map(|e| e.bytes).sum();
        while total > self.settings.max_bytes {
            let Some((&key, entry)) = state
                .entries
                .iter()
                .filter(|(_, e)| e.pins == 0)
                .min_by_key(|(_, e)| e.used)
            else {
                return;
            };
            total -= entry.bytes;
            state.entries.remove(&key);
            state.stats.evicted += 1;
            remove(&self.entry_dir(&key));
        }
    }
}

fn remove(path: &Path) {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    if let Err(e) = result
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, path = %path.display(), "cannot remove from the index cache");
    }
}

#[cfg(test)]
mod tests;
