//! A finished job's files: the workspace its task wrote (`/workspace`),
//! kept under `<data_dir>/files/<job id>` until the job leaves the store,
//! listed, read one at a time or as one tar stream. Every read goes
//! through a directory handle (cap-std), so a link a guest or a container
//! left in its workspace cannot lead the node outside it; only regular
//! files are served.

use bytes::Bytes;
use cap_std::fs::Dir;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Bytes per chunk of a tar stream.
const CHUNK: usize = 64 << 10;

/// Why a job's files cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The path is not a plain relative path.
    #[error("file path `{0}` must be relative, without `.`, `..` or empty segments")]
    BadPath(String),
    /// No regular file there.
    #[error("the job has no file `{0}`")]
    NotFound(String),
    /// The disk failed.
    #[error("job files: {0}")]
    Io(#[from] std::io::Error),
}

/// One file of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// Its path below the workspace, `/`-separated.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Where finished jobs' files live.
#[derive(Debug, Clone)]
pub struct JobFiles {
    root: PathBuf,
}

impl JobFiles {
    /// Files kept under `root`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The files of the node whose data directory is `data_dir`.
    pub fn under(data_dir: &Path) -> Self {
        Self::new(data_dir.join("files"))
    }

    /// The directory of `job_id`'s files (job ids are valid path segments).
    pub fn dir(&self, job_id: &str) -> PathBuf {
        self.root.join(job_id)
    }

    /// Whether anything is kept for `job_id` (its workspace directory, or
    /// whatever stands in its place).
    pub fn any(&self, job_id: &str) -> bool {
        std::fs::symlink_metadata(self.dir(job_id)).is_ok()
    }

    /// Removes what an earlier attempt of `job_id` left, so its run starts
    /// with an empty workspace.
    pub fn clear(&self, job_id: &str) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.dir(job_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn open(&self, job_id: &str) -> std::io::Result<Option<Dir>> {
        match Dir::open_ambient_dir(self.dir(job_id), cap_std::ambient_authority()) {
            Ok(dir) => Ok(Some(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The regular files of `job_id`, sorted by path (none when its task
    /// had no workspace).
    pub fn list(&self, job_id: &str) -> Result<Vec<FileEntry>, FilesError> {
        let mut out = Vec::new();
        if let Some(dir) = self.open(job_id)? {
            walk(&dir, "", &mut |path, _, _, meta| {
                out.push(FileEntry {
                    path: path.to_string(),
                    size: meta.len(),
                });
                Ok(())
            })?;
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Opens the regular file `path` of `job_id`, with its size.
    pub fn read(&self, job_id: &str, path: &str) -> Result<(std::fs::File, u64), FilesError> {
        let relative = plain(path)?;
        let missing = || FilesError::NotFound(path.to_string());
        let dir = self.open(job_id)?.ok_or_else(missing)?;
        let meta = dir.metadata(relative).map_err(|_| missing())?;
        if !meta.is_file() {
            return Err(missing());
        }
        let file = dir.open(relative).map_err(|_| missing())?;
        Ok((file.into_std(), meta.len()))
    }

    /// The sha256 (lowercase hex) of each regular file of `job_id`, sorted
    /// by path.
    pub fn digests(&self, job_id: &str) -> Result<Vec<(String, String)>, FilesError> {
        let mut out = Vec::new();
        for entry in self.list(job_id)? {
            let (file, _) = self.read(job_id, &entry.path)?;
            out.push((entry.path, crate::receipts::sha256_of(file)?));
        }
        Ok(out)
    }

    /// Streams `job_id`'s regular files as a tar archive, in chunks; a
    /// reader that goes away stops it.
    pub fn tar(&self, job_id: &str) -> mpsc::Receiver<std::io::Result<Bytes>> {
        let (tx, rx) = mpsc::channel(4);
        let dir = self.open(job_id);
        tokio::task::spawn_blocking(move || {
            let written = dir.and_then(|dir| {
                let mut tar = tar::Builder::new(Chunks {
                    tx: tx.clone(),
                    buf: Vec::with_capacity(CHUNK),
                });
                if let Some(dir) = dir {
                    walk(&dir, "", &mut |path, parent, name, meta| {
                        let mut header = tar::Header::new_gnu();
                        header.set_size(meta.len());
                        header.set_mode(0o644);
                        header.set_mtime(mtime(&meta));
                        tar.append_data(&mut header, path, parent.open(name)?)
                    })?;
                }
                tar.into_inner()?.flush()
            });
            if let Err(e) = written {
                let _ = tx.blocking_send(Err(e));
            }
        });
        rx
    }

    /// Removes the files of jobs that `exists` no longer knows; answers how
    /// many jobs' files went.
    pub fn sweep(&self, exists: impl Fn(&str) -> bool) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !exists(&name) {
                std::fs::remove_dir_all(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// `path` as a relative path of plain segments.
fn plain(path: &str) -> Result<&Path, FilesError> {
    let ok = !path.is_empty()
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if ok {
        Ok(Path::new(path))
    } else {
        Err(FilesError::BadPath(path.to_string()))
    }
}

fn mtime(meta: &cap_std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.into_std().duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// What `walk` calls for each regular file: its path below the root, the
/// directory holding it, its name there and its metadata.
type Visit<'a> = dyn FnMut(&str, &Dir, &str, cap_std::fs::Metadata) -> std::io::Result<()> + 'a;

/// Calls `each` with every regular file below `dir` (links are not
/// followed), in name order.
fn walk(dir: &Dir, prefix: &str, each: &mut Visit) -> std::io::Result<()> {
    let mut names: Vec<_> = dir
        .entries()?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let meta = dir.symlink_metadata(&name)?;
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if meta.is_dir() {
            walk(&dir.open_dir(&name)?, &path, each)?;
        } else if meta.is_file() {
            each(&path, dir, &name, meta)?;
        }
    }
    Ok(())
}

/// A writer that sends what it is given as chunks down a channel.
struct Chunks {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl Chunks {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "reader went away"))
    }
}

impl Write for Chunks {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> (tempfile::TempDir, JobFiles) {
        let dir = tempfile::tempdir().unwrap();
        let files = JobFiles::new(dir.path().join("files"));
        (dir, files)
    }

    fn write(files: &JobFiles, job: &str, path: &str, text: &str) {
        let full = files.dir(job).join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }

    #[test]
    fn lists_regular_files_sorted_and_skips_links() {
        let (dir, files) = files();
        write(&files, "j1", "report/out.txt", "done");
        write(&files, "j1", "a.log", "x");
        std::os::unix::fs::symlink("/etc/passwd", files.dir("j1").join("passwd")).unwrap();
        std::os::unix::fs::symlink(dir.path(), files.dir("j1").join("up")).unwrap();
        let listed = files.list("j1").unwrap();
        let paths: Vec<_> = listed.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.log", "report/out.txt"]);
        assert_eq!(listed[1].size, 4);
        assert!(files.list("no-such-job").unwrap().is_empty());
    }

    #[test]
    fn digests_name_each_regular_file_by_sha256_and_follow_no_link() {
        let (dir, files) = files();
        write(&files, "j1", "report/out.txt", "done");
        std::fs::write(dir.path().join("secret"), "outside").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), files.dir("j1").join("leak"))
            .unwrap();
        let digests = files.digests("j1").unwrap();
        let done = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(b"done"));
        assert_eq!(digests, [("report/out.txt".to_string(), done)]);
        assert!(files.digests("no-such-job").unwrap().is_empty());
    }

    #[test]
    fn reads_a_file_but_nothing_outside_or_odd() {
        let (dir, files) = files();
        write(&files, "j1", "report/out.txt", "done");
        std::fs::write(dir.path().join("secret"), "outside").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), files.dir("j1").join("leak"))
            .unwrap();
        let (mut file, size) = files.read("j1", "report/out.txt").unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).unwrap();
        assert_eq!((text.as_str(), size), ("done", 4));
        for bad in ["../secret", "/etc/passwd", "report//out.txt", "./x", ""] {
            assert!(
                matches!(files.read("j1", bad), Err(FilesError::BadPath(_))),
                "{bad}"
            );
        }
        for missing in ["leak", "report", "nope"] {
            assert!(
                matches!(files.read("j1", missing), Err(FilesError::NotFound(_))),
                "{missing}"
            );
        }
    }

    #[tokio::test]
    async fn a_tar_holds_every_regular_file_with_its_path_and_size() {
        let (_dir, files) = files();
        write(&files, "j1", "report/out.txt", "done");
        write(&files, "j1", "big.bin", &"z".repeat(3 * CHUNK));
        let mut rx = files.tar("j1");
        let mut bytes = Vec::new();
        while let Some(chunk) = rx.recv().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            seen.push((entry.path().unwrap().display().to_string(), entry.size()));
        }
        assert_eq!(
            seen,
            [
                ("big.bin".to_string(), 3 * CHUNK as u64),
                ("report/out.txt".into(), 4)
            ]
        );
    }

    #[test]
    fn sweep_and_clear_remove_files_of_jobs_gone() {
        let (_dir, files) = files();
        write(&files, "kept", "a", "1");
        write(&files, "gone", "a", "1");
        assert_eq!(files.sweep(|id| id == "kept").unwrap(), 1);
        assert!(files.dir("kept").exists() && !files.dir("gone").exists());
        files.clear("kept").unwrap();
        files.clear("kept").unwrap();
        assert!(!files.dir("kept").exists());
    }
}
