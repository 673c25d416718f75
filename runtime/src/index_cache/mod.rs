//! The retrieval index cache: BM25 indexes the built-in retrieval guest
//! wrote for a corpus, kept on disk under a content key and handed back to
//! the guest, read-only, when a later task ranks the same corpus.
//!
//! The node never reads an index itself. For a retrieval task whose corpus
//! (inline in `documents_json` or `documents`, or a [`StoredCorpus`]: an
//! uploaded blob) is large enough, the key is the blake3 of the guest's own
//! binary (its tokenizer, stemmer, stop words, BM25 parameters and file
//! format), the input the guest reads the corpus as, and the blake3 of the
//! corpus bytes (known beforehand for a blob, so a hit reads none of them).
//! The corpus is taken out of the task's input either way.
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
mod lease;

use key::Corpus;
pub use key::{Key, StoredCorpus};
pub use lease::{Incoming, Lease, Pin};

use crate::failure::TaskFailure;
use crate::task::{Mount, MountSource, TaskSpec};
use serde_json::{Value, json};
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
pub(crate) const SOURCES: [&str; 2] = ["documents_json", "documents"];
/// The input naming a mounted directory of documents instead: never cached.
pub(crate) const DIRECTORY: &str = "directory";

/// The input `key` of `payload` where it is given: a null counts as absent.
pub(crate) fn given<'a>(payload: &'a Value, key: &str) -> Option<&'a Value> {
    payload.get(key).filter(|v| !v.is_null())
}

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
    /// cache: a cached index replaces its corpus (`stored`, where the node
    /// holds it, or the one inline in its input), or the index it builds is
    /// written for the next one. `None` when the cache has no part in it
    /// (no corpus or more than one, one too small to gain or too large to
    /// keep, or a directory).
    pub fn prepare(
        &self,
        task: &mut TaskSpec,
        guest: &blake3::Hash,
        stored: Option<&StoredCorpus>,
    ) -> Option<Lease> {
        let payload = &task.payload;
        if !payload.is_object() || given(payload, DIRECTORY).is_some() || guest_dir_taken(task) {
            return None;
        }
        let mut sources = SOURCES
            .iter()
            .filter_map(|&k| Some((k, given(payload, k)?)));
        let (input, corpus) = match (stored, sources.next(), sources.next()) {
            (Some(stored), None, _) => (StoredCorpus::INPUT, Corpus::Stored(stored)),
            (None, Some((input, value)), None) => (input, Corpus::of(value)),
            _ => return None,
        };
        let settings = &self.inner.settings;
        if corpus.len() < settings.min_corpus_bytes || corpus.len() >= settings.max_bytes {
            return None;
        }
        let key = Key::of(guest, input, &corpus.hash());
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
                .and_then(|dir| corpus.write(&dir.path().join(CORPUS)).map(|()| dir));
            let incoming = match incoming {
                Ok(dir) => dir,
                Err(e) => {
                    // The task still runs, on its documents handed over as
                    // they came.
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

/// Whether `task` mounts something where the node hands it its documents.
fn guest_dir_taken(task: &TaskSpec) -> bool {
    task.mounts.iter().any(|m| m.guest_path == GUEST_DIR)
}

/// Hands `stored` to a retrieval task the cache takes no part in (no
/// cache, a deterministic task, a corpus too small or too large for it): a
/// hard link to it (a copy across file systems) in a fresh directory under
/// `scratch`, mounted read-only, with `index_cache` saying where it is. The
/// lease holds the directory until the task ends.
pub fn hand_over(
    task: &mut TaskSpec,
    stored: &StoredCorpus,
    scratch: &Path,
) -> Result<Lease, TaskFailure> {
    if guest_dir_taken(task) {
        return Err(TaskFailure::invalid_input(format!(
            "`{GUEST_DIR}` is where the node hands a retrieval its documents; mount elsewhere"
        )));
    }
    let failed = |e: std::io::Error| {
        TaskFailure::internal(format!("cannot hand the documents to the task: {e}"))
    };
    std::fs::create_dir_all(scratch).map_err(failed)?;
    let dir = tempfile::Builder::new()
        .prefix("corpus-")
        .tempdir_in(scratch)
        .map_err(failed)?;
    let file = dir.path().join(CORPUS);
    std::fs::hard_link(&stored.path, &file)
        .or_else(|_| std::fs::copy(&stored.path, &file).map(drop))
        .map_err(failed)?;
    let request = json!({
        "corpus": format!("{GUEST_DIR}/{CORPUS}"),
        "from": StoredCorpus::INPUT,
    });
    if let Some(payload) = task.payload.as_object_mut() {
        payload.insert(INPUT.into(), request);
    }
    task.mounts.push(Mount {
        source: MountSource::NodeCache(dir.path().to_path_buf()),
        guest_path: GUEST_DIR.into(),
        writable: false,
    });
    Ok(Lease::Handed(dir))
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
