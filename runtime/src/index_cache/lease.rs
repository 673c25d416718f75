//! A task's hold on the cache while it runs, and what becomes of it when
//! the task ends.

use super::{CORPUS, Entry, FILE, Inner, Key, remove};
use std::sync::Arc;

/// A task's hold on the cache while it runs.
pub enum Lease {
    /// It reads this entry, which is not evicted meanwhile.
    Hit(Pin),
    /// It writes a new index here.
    Miss(Incoming),
    /// It reads a corpus the node handed over without the cache; the
    /// directory holding it goes when the task ends.
    Handed(tempfile::TempDir),
}

impl Lease {
    /// Ends the hold: a successful miss's index becomes an entry; a
    /// handed-over corpus's directory is removed.
    pub fn finish(self, succeeded: bool) {
        if let (Self::Miss(incoming), true) = (self, succeeded) {
            incoming.adopt();
        }
    }
}

/// An entry in use.
pub struct Pin {
    pub(super) inner: Arc<Inner>,
    pub(super) key: Key,
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
    pub(super) inner: Arc<Inner>,
    pub(super) key: Key,
    pub(super) dir: tempfile::TempDir,
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
