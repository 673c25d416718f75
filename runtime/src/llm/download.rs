//! `model_download`: fetch a model file into the model cache.
//!
//! Sources: `huggingface` (the hub's resolve API,
//! `{endpoint}/{repo}/resolve/{revision}/{file}`, with `HF_TOKEN`; the endpoint
//! is configurable so a mirror works) and `url` (with an expected sha256 or
//! blake3 digest). Downloads resume from the partial file (HTTP `Range`),
//! also when the server drops the connection mid-file; the digest is checked
//! before the file is renamed into place atomically, and a mismatch removes
//! the partial file. A lock (in-process and on disk) makes concurrent
//! requests for the same file download it once.

use super::http;
use crate::executor::{TaskContext, TaskEvent};
use crate::failure::TaskFailure;
use futures::StreamExt;
use sha2::Digest as _;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Times a download is resumed after the connection broke.
const MAX_RESUMES: u32 = 8;
/// Progress events at most every this many bytes.
const PROGRESS_STEP: u64 = 1 << 20;

/// An expected digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    /// SHA-256, hex.
    Sha256(String),
    /// BLAKE3, hex.
    Blake3(String),
}

impl Digest {
    fn of_file(&self, path: &Path) -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let mut buffer = vec![0u8; 1 << 16];
        match self {
            Digest::Sha256(_) => {
                let mut hasher = sha2::Sha256::new();
                loop {
                    let n = file.read(&mut buffer)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buffer[..n]);
                }
                Ok(hex(&hasher.finalize()))
            }
            Digest::Blake3(_) => {
                let mut hasher = blake3::Hasher::new();
                loop {
                    let n = file.read(&mut buffer)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buffer[..n]);
                }
                Ok(hasher.finalize().to_hex().to_string())
            }
        }
    }

    fn expected(&self) -> &str {
        match self {
            Digest::Sha256(h) | Digest::Blake3(h) => h,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Digest::Sha256(_) => "sha256",
            Digest::Blake3(_) => "blake3",
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One file to fetch.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// Where from.
    pub url: String,
    /// Bearer token for the source, if any.
    pub token: Option<String>,
    /// Where to, inside the cache.
    pub target: PathBuf,
    /// Expected digest, if known.
    pub digest: Option<Digest>,
    /// Largest file accepted, bytes.
    pub max_bytes: u64,
}

/// What a fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Final path.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// Whether the file was already there (nothing downloaded).
    pub cached: bool,
    /// Times the transfer resumed after a break.
    pub resumes: u32,
}

/// Serialises fetches of the same target within this process.
#[derive(Default)]
pub struct Locks {
    held: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    fn lock_for(&self, target: &Path) -> Arc<tokio::sync::Mutex<()>> {
        self.held
            .lock()
            .expect("locks")
            .entry(target.to_path_buf())
            .or_default()
            .clone()
    }
}

/// Fetches `fetch.target` unless `only_if_missing` and it is already there.
pub async fn fetch(
    client: &reqwest::Client,
    locks: &Locks,
    fetch: &Fetch,
    only_if_missing: bool,
    ctx: &TaskContext,
) -> Result<Fetched, TaskFailure> {
    let io = |e: std::io::Error| TaskFailure::internal(format!("model cache: {e}"));
    let dir = fetch.target.parent().expect("targets live in a directory");
    std::fs::create_dir_all(dir).map_err(io)?;
    let in_process = locks.lock_for(&fetch.target);
    let _held = in_process.lock().await;
    let lock_path = with_suffix(&fetch.target, ".lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    let _on_disk = tokio::task::spawn_blocking(move || lock_file.lock().map(|()| lock_file))
        .await
        .map_err(|e| TaskFailure::internal(e.to_string()))?
        .map_err(io)?;

    if only_if_missing && fetch.target.exists() {
        verify(fetch, &fetch.target)?;
        let bytes = std::fs::metadata(&fetch.target).map_err(io)?.len();
        return Ok(Fetched {
            path: fetch.target.clone(),
            bytes,
            cached: true,
            resumes: 0,
        });
    }
    let partial = with_suffix(&fetch.target, ".partial");
    let mut resumes = 0;
    loop {
        match transfer(client, fetch, &partial, ctx).await {
            Ok(()) => break,
            Err(Transfer::Broken(why)) if resumes < MAX_RESUMES => {
                resumes += 1;
                tracing::info!(url = %fetch.url, resumes, %why, "download interrupted; resuming");
            }
            Err(Transfer::Broken(why)) => {
                return Err(TaskFailure::backend_unavailable(format!(
                    "{} broke off {resumes} times: {why}",
                    fetch.url
                )));
            }
            Err(Transfer::Failed(failure)) => {
                if failure.kind == crate::failure::FailureKind::OutputExceeded {
                    let _ = std::fs::remove_file(&partial);
                }
                return Err(failure);
            }
        }
    }
    if let Err(e) = verify(fetch, &partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&partial, &fetch.target).map_err(io)?;
    let bytes = std::fs::metadata(&fetch.target).map_err(io)?.len();
    Ok(Fetched {
        path: fetch.target.clone(),
        bytes,
        cached: false,
        resumes,
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().expect("a file name").to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn verify(fetch: &Fetch, path: &Path) -> Result<(), TaskFailure> {
    let Some(digest) = &fetch.digest else {
        return Ok(());
    };
    let actual = digest
        .of_file(path)
        .map_err(|e| TaskFailure::internal(format!("model cache: {e}")))?;
    if actual.eq_ignore_ascii_case(digest.expected()) {
        Ok(())
    } else {
        Err(TaskFailure::invalid_input(format!(
            "{} does not match the expected {} {} (got {actual}); the file was discarded",
            fetch.url,
            digest.name(),
            digest.expected()
        )))
    }
}

enum Transfer {
    /// The connection broke; resume.
    Broken(String),
    /// Give up.
    Failed(TaskFailure),
}

/// One request: appends to `partial` from its current length.
async fn transfer(
    client: &reqwest::Client,
    fetch: &Fetch,
    partial: &Path,
    ctx: &TaskContext,
) -> Result<(), Transfer> {
    let have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    let what = format!("download of {}", fetch.url);
    let response = http::send(&what, 2, ctx, || {
        let mut request = client.get(&fetch.url);
        if have > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        if let Some(token) = &fetch.token {
            request = request.bearer_auth(token);
        }
        request
    })
    .await
    .map_err(|failure| match failure.kind {
        // The request reached the server but the exchange broke: resume.
        crate::failure::FailureKind::BackendUnavailable => Transfer::Broken(failure.message),
        _ => Transfer::Failed(failure),
    })?;
    let status = response.status();
    if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
        return Ok(());
    }
    let response = http::check(&what, response)
        .await
        .map_err(Transfer::Failed)?;
    let resuming = status == reqwest::StatusCode::PARTIAL_CONTENT;
    let total = response
        .content_length()
        .map(|len| if resuming { len + have } else { len });
    let too_large = |size: u64| {
        Transfer::Failed(TaskFailure::new(
            crate::failure::FailureKind::OutputExceeded,
            format!(
                "{} is {size} bytes or more, over the limit of {} (llm.max_download_bytes)",
                fetch.url, fetch.max_bytes
            ),
        ))
    };
    if let Some(total) = total.filter(|t| *t > fetch.max_bytes) {
        return Err(too_large(total));
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(resuming)
        .write(true)
        .truncate(!resuming)
        .open(partial)
        .map_err(|e| Transfer::Failed(TaskFailure::internal(format!("model cache: {e}"))))?;
    let mut done = if resuming { have } else { 0 };
    let mut reported = done;
    let mut body = response.bytes_stream();
    loop {
        let chunk = tokio::select! {
            c = body.next() => c,
            _ = ctx.cancel.cancelled() => return Err(Transfer::Failed(TaskFailure::cancelled())),
        };
        match chunk {
            Some(Ok(bytes)) => {
                if done + bytes.len() as u64 > fetch.max_bytes {
                    return Err(too_large(done + bytes.len() as u64));
                }
                file.write_all(&bytes).map_err(|e| {
                    Transfer::Failed(TaskFailure::internal(format!("model cache: {e}")))
                })?;
                done += bytes.len() as u64;
                if done - reported >= PROGRESS_STEP {
                    reported = done;
                    ctx.emit(TaskEvent::Progress {
                        what: fetch.url.clone(),
                        done,
                        total,
                    });
                }
            }
            Some(Err(e)) => {
                let _ = file.flush();
                if std::time::Instant::now() >= ctx.deadline {
                    return Err(Transfer::Failed(http::transport(&what, &e, ctx)));
                }
                return Err(Transfer::Broken(e.to_string()));
            }
            None => break,
        }
    }
    file.flush()
        .map_err(|e| Transfer::Failed(TaskFailure::internal(format!("model cache: {e}"))))?;
    if let Some(total) = total
        && done < total
    {
        return Err(Transfer::Broken(format!("got {done} of {total} bytes")));
    }
    ctx.emit(TaskEvent::Progress {
        what: fetch.url.clone(),
        done,
        total,
    });
    Ok(())
}

/// Files in the model cache, as `source/name` paths (partial and lock files excluded).
pub fn inventory(cache: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![cache.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.to_string_lossy();
            if path.is_dir() {
                stack.push(path);
            } else if !name.ends_with(".partial")
                && !name.ends_with(".lock")
                && let Ok(rel) = path.strip_prefix(cache)
            {
                found.push(rel.display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            Digest::Sha256(String::new()).of_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            Digest::Blake3(String::new()).of_file(&path).unwrap(),
            blake3::hash(b"abc").to_hex().to_string()
        );
    }

    #[test]
    fn inventory_skips_partial_and_lock_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("huggingface/org/repo")).unwrap();
        for f in [
            "huggingface/org/repo/m.gguf",
            "huggingface/org/repo/m.gguf.lock",
            "x.bin.partial",
        ] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        assert_eq!(inventory(dir.path()), ["huggingface/org/repo/m.gguf"]);
    }
}
