//! `model_download`: which file a task may ask for, from where, and what it
//! must hash to.
//!
//! - `huggingface` (default): `{hub}/{repo}/resolve/{revision}/{file}` on
//!   the operator's hub (`llm.hf_endpoint`, never the task's choice) with
//!   the operator's `HF_TOKEN`; cached under `huggingface/{repo}/{revision}/
//!   {file}` and verified against the digest the hub publishes for it
//!   (`X-Linked-Etag` of LFS files, the git blob id of the others) or the one
//!   the operator pinned (`llm.model_digests`), and any the task gives.
//! - `url`: any http(s) URL the download allowlist admits (by default the
//!   hub and the configured backends), with a digest the task must give.
//! - `ollama`: pulled through the Ollama backend.

use super::download::{self, Fetch, Route};
use super::{Digest, LlmExecutor, LlmSettings, input_error, ollama};
use crate::executor::TaskContext;
use crate::failure::TaskFailure;
use crate::urls::UrlAllowlist;
use guest_kit::Inputs;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// The download allowlist in force: the operator's, else the hub and the
/// configured backends (by scheme, host, port and path; any credentials
/// they carry are theirs, not part of the entry).
pub fn allowlist(settings: &LlmSettings) -> Result<UrlAllowlist, String> {
    let entries = if settings.download_allowlist.is_empty() {
        std::iter::once(&settings.hf_endpoint)
            .chain(settings.backends.iter().map(|b| &b.base_url))
            .filter(|url| !url.is_empty())
            .map(|url| without_credentials(url))
            .collect()
    } else {
        settings.download_allowlist.clone()
    };
    UrlAllowlist::new(&entries, "llm.download_allowlist")
}

/// `url` without its userinfo.
fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => url.to_string(),
    }
}

impl LlmExecutor {
    pub(super) async fn download(
        &self,
        inputs: &Inputs,
        ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
        let model = inputs.require_text(&["model"]).map_err(input_error)?;
        let source = inputs
            .text(&["source", "model_source"])
            .unwrap_or_else(|| "huggingface".into());
        let only_if_missing = inputs
            .flag(&["only_if_missing"], true)
            .map_err(input_error)?;
        let mut digests = task_digests(inputs)?;
        let cache = &self.settings.model_cache_dir;
        let fetch = match source.as_str() {
            "huggingface" | "hf" => {
                if inputs.text(&["endpoint"]).is_some() {
                    return Err(TaskFailure::policy_denied(
                        "the hub a node downloads from is the operator's setting (llm.hf_endpoint), not a task's",
                    ));
                }
                let (repo, file) = match inputs.text(&["file", "filename"]) {
                    Some(file) => (model.clone(), file),
                    None => split_repo_file(&model)?,
                };
                let revision = inputs.text(&["revision"]).unwrap_or_else(|| "main".into());
                let url = format!(
                    "{}/{repo}/resolve/{revision}/{file}",
                    self.settings.hf_endpoint.trim_end_matches('/')
                );
                let target = cache
                    .join("huggingface")
                    .join(safe_relative(&repo)?)
                    .join(safe_relative(&revision)?)
                    .join(safe_relative(&file)?);
                match self.settings.model_digests.get(&format!("{repo}/{file}")) {
                    Some(pinned) => digests.push(pinned.clone()),
                    None if only_if_missing && download::is_verified(&target) => {}
                    None => digests.push(self.published_digest(&url, ctx).await?),
                }
                Fetch {
                    url,
                    token: self.settings.hf_token.clone(),
                    target,
                    digests,
                    max_bytes: self.settings.max_download_bytes,
                    route: Route::Trusted,
                }
            }
            "url" => {
                let url = inputs.require_text(&["url"]).map_err(input_error)?;
                let parsed = self
                    .downloads
                    .check(&url)
                    .map_err(|e| match e {
                        crate::urls::UrlRefused::Invalid { .. } => {
                            TaskFailure::invalid_input(e.to_string())
                        }
                        e => TaskFailure::policy_denied(e.to_string()),
                    })?
                    .0;
                if digests.is_empty() {
                    return Err(TaskFailure::invalid_input(
                        "a `url` download needs an expected `sha256` or `blake3` digest",
                    ));
                }
                let name = parsed
                    .path_segments()
                    .and_then(|mut s| s.next_back())
                    .filter(|n| !n.is_empty())
                    .unwrap_or("model.bin")
                    .to_string();
                Fetch {
                    url,
                    token: None,
                    target: cache
                        .join("url")
                        .join(safe_relative(&model)?)
                        .join(safe_relative(&name)?),
                    digests,
                    max_bytes: self.settings.max_download_bytes,
                    route: Route::Checked(self.downloads.clone()),
                }
            }
            "ollama" => {
                let backend = self.backend("ollama")?;
                if only_if_missing {
                    backend
                        .protocol
                        .server()
                        .ensure(&self.endpoint(backend), &model, ctx)
                        .await?;
                } else {
                    ollama::pull(&self.client, backend, &model, ctx).await?;
                }
                return Ok(
                    json!({"model": model, "source": "ollama", "backend": crate::urls::redact(&backend.base_url)}),
                );
            }
            other => {
                return Err(TaskFailure::invalid_input(format!(
                    "model source `{other}` is not supported (huggingface, url, ollama)"
                )));
            }
        };
        let fetched =
            download::fetch(&self.client, &self.locks, &fetch, only_if_missing, ctx).await?;
        Ok(json!({
            "model": model,
            "source": source,
            "path": fetched.path.display().to_string(),
            "bytes": fetched.bytes,
            "cached": fetched.cached,
            "resumes": fetched.resumes,
            "url": crate::urls::redact(&fetch.url),
        }))
    }

    /// The digest the hub publishes for the file at `url`: the `X-Linked-Etag`
    /// (SHA-256) of an LFS file, else the `ETag` (git blob id), read from the
    /// hub's own answer before any redirect.
    async fn published_digest(&self, url: &str, ctx: &TaskContext) -> Result<Digest, TaskFailure> {
        let client = crate::tls::client()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| TaskFailure::internal(format!("HTTP client: {e}")))?;
        let what = format!("the hub ({})", crate::urls::redact(url));
        let response = super::http::send(&what, self.settings.connect_retries, ctx, || {
            let request = client.head(url);
            match &self.settings.hf_token {
                Some(token) => request.bearer_auth(token),
                None => request,
            }
        })
        .await?;
        let status = response.status();
        if !(status.is_success() || status.is_redirection()) {
            return Err(match status.as_u16() {
                401 | 403 => TaskFailure::policy_denied(format!("{what} answered {status}")),
                404 => TaskFailure::invalid_input(format!("{what} has no such file ({status})")),
                _ => TaskFailure::backend_unavailable(format!("{what} answered {status}")),
            });
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.trim_start_matches("W/")
                        .trim_matches('"')
                        .to_ascii_lowercase()
                })
        };
        let hex = |v: &str, len: usize| v.len() == len && v.bytes().all(|b| b.is_ascii_hexdigit());
        match (header("x-linked-etag"), header("etag")) {
            (Some(sha), _) if hex(&sha, 64) => Ok(Digest::Sha256(sha)),
            (_, Some(blob)) if hex(&blob, 40) => Ok(Digest::GitBlob(blob)),
            _ => Err(TaskFailure::policy_denied(format!(
                "{what} publishes no digest for this file; pin one in llm.model_digests"
            ))),
        }
    }
}

/// The digests a task gives (`sha256`, `blake3`).
fn task_digests(inputs: &Inputs) -> Result<Vec<Digest>, TaskFailure> {
    let mut out = Vec::new();
    for (key, kind) in [("sha256", "sha256"), ("blake3", "blake3")] {
        if let Some(hex) = inputs.text(&[key]) {
            out.push(Digest::parse(&format!("{kind}:{hex}")).map_err(TaskFailure::invalid_input)?);
        }
    }
    Ok(out)
}

fn split_repo_file(model: &str) -> Result<(String, String), TaskFailure> {
    let parts: Vec<&str> = model.splitn(3, '/').collect();
    match parts.as_slice() {
        [org, repo, file] if !file.is_empty() => Ok((format!("{org}/{repo}"), file.to_string())),
        _ => Err(TaskFailure::invalid_input(format!(
            "huggingface downloads need a file: give `file`, or `model` as ORG/REPO/FILE (got `{model}`)"
        ))),
    }
}

/// A relative path of plain segments (no `..`, no absolute paths).
fn safe_relative(path: &str) -> Result<PathBuf, TaskFailure> {
    let ok = !path.is_empty()
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\\'));
    if ok {
        Ok(PathBuf::from(path))
    } else {
        Err(TaskFailure::invalid_input(format!(
            "`{path}` is not a safe relative name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_file_splitting_and_safe_names() {
        assert_eq!(
            split_repo_file("org/repo/sub/f.gguf").unwrap(),
            ("org/repo".into(), "sub/f.gguf".into())
        );
        assert!(split_repo_file("org/repo").is_err());
        assert!(safe_relative("a/b.gguf").is_ok());
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_download_allowlist_is_the_hub_and_the_backends() {
        let settings = LlmSettings {
            hf_endpoint: "https://huggingface.co".into(),
            backends: vec![
                super::super::Backend::new("ollama", "http://127.0.0.1:11434"),
                super::super::Backend::new("vllm", "http://user:secret@10.0.0.5:8000/v1"),
            ],
            ..LlmSettings::default()
        };
        let list = allowlist(&settings).unwrap();
        assert!(
            list.check("https://huggingface.co/org/repo/resolve/main/f")
                .is_ok()
        );
        assert!(list.check("http://127.0.0.1:11434/api/tags").is_ok());
        assert!(list.check("http://10.0.0.5:8000/v1/models").is_ok());
        assert!(list.check("http://127.0.0.1:22/").is_err());
        assert!(list.check("https://attacker.example/model.gguf").is_err());
    }
}
