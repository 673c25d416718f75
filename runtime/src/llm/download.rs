//! Fetching a model file into the model cache: resumed from the partial
//! file (HTTP `Range`) when the connection breaks, capped in size, checked
//! against every expected digest before it is renamed into place (a
//! mismatch removes it), with a digest file kept beside it for later cache
//! hits, and serialised (in-process and on disk) so concurrent requests for
//! one file download it once. Where the operator trusts the source (the
//! configured hub) the shared client follows redirects; any other URL is
//! admitted by the download allowlist at every hop and fetched from the
//! addresses that were checked.

use super::digest::{self, Digest};
use super::http;
use crate::executor::{TaskContext, TaskEvent};
use crate::failure::{FailureKind, TaskFailure};
use crate::urls::UrlAllowlist;
use futures::StreamExt;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Times a download is resumed after the connection broke.
const MAX_RESUMES: u32 = 8;
/// Progress events at most every this many bytes.
const PROGRESS_STEP: u64 = 1 << 20;
/// Redirects followed from a URL the allowlist checks, each checked too.
const MAX_REDIRECTS: usize = 5;

/// How a fetch reaches its URL.
#[derive(Debug, Clone)]
pub enum Route {
    /// A source the operator configured (the hub): its redirects are followed.
    Trusted,
    /// A URL a task named: admitted by the list at every hop, fetched from
    /// the checked addresses.
    Checked(Arc<UrlAllowlist>),
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
    /// Digests the file must have, all of them (at least one).
    pub digests: Vec<Digest>,
    /// Largest file accepted, bytes.
    pub max_bytes: u64,
    /// How the URL is reached.
    pub route: Route,
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
        // A cached file is handed out only as what it was verified to be
        // when it was downloaded (and what this request expects).
        let mut known = digest::remembered(&fetch.target);
        if !known.is_empty() {
            known.extend(fetch.digests.iter().cloned());
            verify(&fetch.url, &known, &fetch.target)?;
            let bytes = std::fs::metadata(&fetch.target).map_err(io)?.len();
            return Ok(Fetched {
                path: fetch.target.clone(),
                bytes,
                cached: true,
                resumes: 0,
            });
        }
        tracing::warn!(path = %fetch.target.display(), "a cached model without a digest file is downloaded again");
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
                if failure.kind == FailureKind::OutputExceeded {
                    let _ = std::fs::remove_file(&partial);
                }
                return Err(failure);
            }
        }
    }
    if let Err(e) = verify(&fetch.url, &fetch.digests, &partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    digest::remember(&fetch.target, &fetch.digests).map_err(io)?;
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

/// Whether `target` is in the cache with the digests it was verified against.
pub fn is_verified(target: &Path) -> bool {
    target.exists() && !digest::remembered(target).is_empty()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().expect("a file name").to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Checks `path` against every digest in `digests` (refusing an empty list).
fn verify(url: &str, digests: &[Digest], path: &Path) -> Result<(), TaskFailure> {
    if digests.is_empty() {
        return Err(TaskFailure::policy_denied(format!(
            "{url} has no digest to verify it against"
        )));
    }
    for digest in digests {
        let actual = digest
            .of_file(path)
            .map_err(|e| TaskFailure::internal(format!("model cache: {e}")))?;
        if !actual.eq_ignore_ascii_case(digest.expected()) {
            return Err(TaskFailure::invalid_input(format!(
                "{url} does not match the expected {} {} (got {actual}); the file was discarded",
                digest.name(),
                digest.expected()
            )));
        }
    }
    Ok(())
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
    let response = match &fetch.route {
        Route::Trusted => {
            http::send(&what, 2, ctx, || {
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
        }
        Route::Checked(allowlist) => get_checked(allowlist, &fetch.url, have, &what, ctx).await,
    }
    .map_err(|failure| match failure.kind {
        // The request reached the server but the exchange broke: resume.
        FailureKind::BackendUnavailable => Transfer::Broken(failure.message),
        _ => Transfer::Failed(failure),
    })?;
    let status = response.status();
    if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
        return Ok(());
    }
    if !status.is_success() {
        // The body of a page the node was sent to is never echoed.
        let message = format!("{what} answered {status}");
        return Err(Transfer::Failed(match status.as_u16() {
            400 | 404 | 410 => TaskFailure::invalid_input(message),
            401 | 403 => TaskFailure::policy_denied(message),
            _ => TaskFailure::backend_unavailable(message),
        }));
    }
    let resuming = status == reqwest::StatusCode::PARTIAL_CONTENT;
    let total = response
        .content_length()
        .map(|len| if resuming { len + have } else { len });
    let too_large = |size: u64| {
        Transfer::Failed(TaskFailure::new(
            FailureKind::OutputExceeded,
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

/// GETs `url` (from byte `have`), admitting it and every redirect by
/// `allowlist` and connecting only to the addresses that were checked.
async fn get_checked(
    allowlist: &UrlAllowlist,
    url: &str,
    have: u64,
    what: &str,
    ctx: &TaskContext,
) -> Result<reqwest::Response, TaskFailure> {
    let mut url = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let admitted = allowlist
            .admit(&url)
            .await
            .map_err(|e| TaskFailure::policy_denied(e.to_string()))?;
        let client = admitted
            .client(crate::tls::client().connect_timeout(std::time::Duration::from_secs(5)))
            .build()
            .map_err(|e| TaskFailure::internal(format!("HTTP client: {e}")))?;
        let target = admitted.url.clone();
        let response = http::send(what, 2, ctx, || {
            let request = client.get(target.clone());
            if have > 0 {
                request.header(reqwest::header::RANGE, format!("bytes={have}-"))
            } else {
                request
            }
        })
        .await?;
        if !response.status().is_redirection() {
            return Ok(response);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| admitted.url.join(l).ok())
            .ok_or_else(|| {
                TaskFailure::backend_unavailable(format!("{what} redirected without a location"))
            })?;
        url = location.to_string();
    }
    Err(TaskFailure::backend_unavailable(format!(
        "{what} redirected more than {MAX_REDIRECTS} times"
    )))
}

/// Files in the model cache, as `source/name` paths (partial, lock and
/// digest files excluded).
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
                && !name.ends_with(".digest")
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
