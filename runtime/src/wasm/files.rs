//! Component files on the node's disk: each one's blake3 remembered by the
//! file's identity (device, inode, size, modification and change times),
//! so a file unchanged since it was hashed is not read and hashed again for
//! each task (a plugin built by componentize-py carries CPython: 18 MB).
//!
//! A file modified within `settle` of being hashed is not remembered: file
//! times come from a clock that ticks every few milliseconds (every 2 s on
//! FAT), and a second write in the same tick would leave them as they were.

use crate::failure::TaskFailure;
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Files whose hash is remembered; more clears the memory.
const CAPACITY: usize = 1024;

/// How long a file must have been left alone before its hash is remembered.
pub const SETTLE: Duration = Duration::from_secs(2);

/// What tells one version of a file from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The component files read so far, and their hashes.
pub struct ComponentFiles {
    settle: Duration,
    hashes: Mutex<HashMap<PathBuf, (Stamp, blake3::Hash)>>,
    reads: AtomicU64,
}

impl ComponentFiles {
    /// Remembers the hash of files left alone for `settle` before they
    /// were read.
    pub fn new(settle: Duration) -> Self {
        Self {
            settle,
            hashes: Mutex::default(),
            reads: AtomicU64::new(0),
        }
    }

    /// Files read so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The file's metadata, and its hash if it is as it was when hashed.
    pub fn known(&self, path: &Path) -> Result<(Metadata, Option<blake3::Hash>), TaskFailure> {
        let meta = std::fs::metadata(path).map_err(|e| cannot_read(path, e))?;
        let stamp = Stamp::of(&meta);
        let hash = self
            .hashes()
            .get(path)
            .filter(|(known, _)| *known == stamp)
            .map(|(_, hash)| *hash);
        Ok((meta, hash))
    }

    /// The bytes of `path`.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>, TaskFailure> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        std::fs::read(path).map_err(|e| cannot_read(path, e))
    }

    /// Remembers that `path`, as `meta` (taken before it was read) says it
    /// was, hashed to `hash`, unless it was modified too recently to tell.
    pub fn remember(&self, path: &Path, meta: &Metadata, hash: blake3::Hash) {
        let settled = meta
            .modified()
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age >= self.settle);
        if !settled {
            return;
        }
        let mut hashes = self.hashes();
        if hashes.len() >= CAPACITY && !hashes.contains_key(path) {
            hashes.clear();
        }
        hashes.insert(path.to_path_buf(), (Stamp::of(meta), hash));
    }

    /// The bytes of `path`, which hashed to `hash` before: read again when
    /// a task needs them after all (its code is neither in memory nor in a
    /// cache), and refused if the file has changed since.
    pub fn reread(&self, path: &Path, hash: &blake3::Hash) -> Result<Vec<u8>, TaskFailure> {
        let bytes = self.read(path)?;
        if blake3::hash(&bytes) != *hash {
            self.hashes().remove(path);
            return Err(TaskFailure::invalid_input(format!(
                "component {} changed while it was being loaded; try again",
                path.display()
            )));
        }
        Ok(bytes)
    }

    fn hashes(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (Stamp, blake3::Hash)>> {
        self.hashes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn cannot_read(path: &Path, e: std::io::Error) -> TaskFailure {
    TaskFailure::invalid_input(format!("cannot read component {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::time::Duration;

    /// Reads and hashes `path` as the executor does, unless its hash is known.
    fn hash_of(files: &ComponentFiles, path: &Path) -> blake3::Hash {
        let (meta, known) = files.known(path).unwrap();
        known.unwrap_or_else(|| {
            let hash = blake3::hash(&files.read(path).unwrap());
            files.remember(path, &meta, hash);
            hash
        })
    }

    /// Dates the last modification of `path` to `when`.
    fn date(path: &Path, when: SystemTime) {
        let file = File::options().write(true).open(path).unwrap();
        file.set_modified(when).unwrap();
    }

    /// `tool.wasm` holding `bytes`, last modified an hour ago, hashed once.
    fn hashed_old_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, ComponentFiles) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tool.wasm");
        std::fs::write(&path, bytes).unwrap();
        date(&path, SystemTime::now() - Duration::from_secs(3600));
        let files = ComponentFiles::new(SETTLE);
        assert_eq!(hash_of(&files, &path), blake3::hash(bytes));
        (dir, path, files)
    }

    #[test]
    fn a_file_left_alone_is_read_once_however_often_it_is_asked_for() {
        let (_dir, path, files) = hashed_old_file(b"first");
        for _ in 0..2 {
            assert_eq!(hash_of(&files, &path), blake3::hash(b"first"));
        }
        assert_eq!(files.reads(), 1);
    }

    #[test]
    fn a_file_rewritten_in_place_at_the_same_size_is_read_again() {
        let (_dir, path, files) = hashed_old_file(b"first");
        std::fs::write(&path, b"other").unwrap();
        assert_eq!(hash_of(&files, &path), blake3::hash(b"other"));
        assert_eq!(files.reads(), 2);
    }

    #[test]
    fn a_file_replaced_by_another_with_the_same_times_is_read_again() {
        let (dir, path, files) = hashed_old_file(b"first");
        let staged = dir.path().join("tool.wasm.new");
        std::fs::write(&staged, b"other").unwrap();
        date(
            &staged,
            std::fs::metadata(&path).unwrap().modified().unwrap(),
        );
        std::fs::rename(&staged, &path).unwrap();
        assert_eq!(hash_of(&files, &path), blake3::hash(b"other"));
    }

    #[test]
    fn a_file_modified_within_the_settle_time_is_read_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tool.wasm");
        std::fs::write(&path, b"fresh").unwrap();
        let files = ComponentFiles::new(Duration::from_secs(3600));
        hash_of(&files, &path);
        hash_of(&files, &path);
        assert_eq!(files.reads(), 2);
    }

    #[test]
    fn bytes_read_again_must_still_have_the_hash_they_had() {
        let (_dir, path, files) = hashed_old_file(b"first");
        let hash = blake3::hash(b"first");
        assert_eq!(files.reread(&path, &hash).unwrap(), b"first");
        std::fs::write(&path, b"other").unwrap();
        let err = files.reread(&path, &hash).unwrap_err();
        assert!(err.message.contains("changed while"), "{err}");
    }
}
