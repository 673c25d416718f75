//! Pulling the image a job names, where the operator opted in
//! (`docker.pull`): only allowlisted references reach here, credentials
//! come from the operator's settings by registry (never from the job), a
//! digest-pinned reference must arrive with exactly that digest, progress
//! goes out as job events, and a pull that fails, stalls or outlives the
//! task's deadline ends the task with the reason.

use super::DockerExecutor;
use crate::executor::{TaskContext, TaskEvent};
use crate::failure::{FailureKind, TaskFailure};
use bollard::auth::DockerCredentials;
use bollard::models::ImageInspect;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Progress of one layer is reported again after this many more bytes.
const PROGRESS_STEP: i64 = 1 << 20;

/// When the node pulls an image a job names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Never: images are preloaded (air-gapped nodes).
    #[default]
    Never,
    /// When the engine does not have it.
    IfMissing,
    /// Before every run, so a moved tag is followed (a digest-pinned
    /// reference the engine has is not pulled again: it cannot change).
    Always,
}

/// An operator's login to one registry.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogin {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryLogin({}, ********)", self.username)
    }
}

/// How and from where images are pulled.
#[derive(Debug, Clone, PartialEq)]
pub struct PullSettings {
    /// When.
    pub policy: PullPolicy,
    /// Logins by registry host (`registry.example:5000`; `docker.io`).
    pub logins: BTreeMap<String, RegistryLogin>,
    /// A pull with no progress for this long fails.
    pub stall: Duration,
}

impl Default for PullSettings {
    fn default() -> Self {
        Self {
            policy: PullPolicy::Never,
            logins: BTreeMap::new(),
            stall: Duration::from_secs(60),
        }
    }
}

/// `reference` split into what the engine's create-image call takes: the
/// repository and the tag or digest.
pub fn split(reference: &str) -> (&str, &str) {
    if let Some((name, digest)) = reference.split_once('@') {
        return (name, digest);
    }
    let last = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last..].rfind(':') {
        Some(i) => (&reference[..last + i], &reference[last + i + 1..]),
        None => (reference, "latest"),
    }
}

/// The registry host of `reference` (`docker.io` when it names none).
pub fn registry(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// The digest `reference` is pinned to, if any.
fn pinned(reference: &str) -> Option<&str> {
    reference.split_once('@').map(|(_, digest)| digest)
}

impl DockerExecutor {
    /// The image `reference` as the engine has it, pulled first where
    /// `docker.pull` says so.
    pub(super) async fn ensure_image(
        &self,
        reference: &str,
        ctx: &TaskContext,
    ) -> Result<ImageInspect, TaskFailure> {
        let present = self.image(reference).await?;
        let pull = match (self.settings.pull.policy, &present) {
            (PullPolicy::Never, _) | (PullPolicy::IfMissing, Some(_)) => false,
            (PullPolicy::Always, Some(_)) => pinned(reference).is_none(),
            (_, None) => true,
        };
        if !pull {
            return present.ok_or_else(|| {
                TaskFailure::backend_unavailable(format!(
                    "image `{reference}` is not present on this node and this node does not pull (docker.pull = \"never\"): preload it (`docker load -i image.tar`)"
                ))
            });
        }
        self.pull(reference, ctx).await?;
        let image = self.image(reference).await?.ok_or_else(|| {
            TaskFailure::backend_unavailable(format!(
                "image `{reference}` was pulled but the engine does not have it"
            ))
        })?;
        if let Some(digest) = pinned(reference) {
            let digests = image.repo_digests.as_deref().unwrap_or_default();
            if !digests.iter().any(|d| d.ends_with(&format!("@{digest}"))) {
                return Err(TaskFailure::backend_unavailable(format!(
                    "image `{reference}` arrived with digests {digests:?}, not {digest}"
                )));
            }
        }
        Ok(image)
    }

    async fn pull(&self, reference: &str, ctx: &TaskContext) -> Result<(), TaskFailure> {
        let (name, tag) = split(reference);
        let host = registry(reference);
        let credentials = self
            .settings
            .pull
            .logins
            .get(host)
            .map(|login| DockerCredentials {
                username: Some(login.username.clone()),
                password: Some(login.password.clone()),
                serveraddress: Some(host.to_string()),
                ..DockerCredentials::default()
            });
        let options = CreateImageOptionsBuilder::default()
            .from_image(name)
            .tag(tag)
            .build();
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        let failed = |why: String| {
            TaskFailure::backend_unavailable(format!("cannot pull image `{reference}`: {why}"))
        };
        let stall = self.settings.pull.stall;
        let deadline = tokio::time::Instant::from_std(ctx.deadline);
        let mut layers: HashMap<String, (String, i64)> = HashMap::new();
        progress(ctx, format!("pulling {reference}"), 0, None);
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(stall, stream.next()) => next,
                () = ctx.cancel.cancelled() => return Err(TaskFailure::cancelled()),
                () = tokio::time::sleep_until(deadline) => {
                    return Err(TaskFailure::new(
                        FailureKind::Timeout,
                        format!("the task's time ran out while pulling image `{reference}`"),
                    ));
                }
            };
            let info = match next {
                Err(_) => {
                    return Err(failed(format!(
                        "no progress for {} s (docker.pull_stall_seconds)",
                        stall.as_secs()
                    )));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(failed(e.to_string())),
                Ok(Some(Ok(info))) => info,
            };
            let (Some(layer), Some(status)) = (info.id, info.status) else {
                continue;
            };
            let detail = info.progress_detail.unwrap_or_default();
            let done = detail.current.unwrap_or(0);
            let entry = layers.entry(layer.clone()).or_insert((String::new(), -1));
            if entry.0 != status || done - entry.1 >= PROGRESS_STEP {
                *entry = (status.clone(), done);
                let total = detail.total.and_then(|t| u64::try_from(t).ok());
                progress(ctx, format!("{layer}: {status}"), done.max(0) as u64, total);
            }
        }
        tracing::info!(image = reference, "pulled");
        Ok(())
    }
}

fn progress(ctx: &TaskContext, what: String, done: u64, total: Option<u64>) {
    if let Some(events) = &ctx.events {
        events(TaskEvent::Progress { what, done, total });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repository_and_tag_or_digest() {
        assert_eq!(split("busybox"), ("busybox", "latest"));
        assert_eq!(split("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            split("127.0.0.1:5000/ci/busybox"),
            ("127.0.0.1:5000/ci/busybox", "latest")
        );
        assert_eq!(
            split("127.0.0.1:5000/ci/busybox:1"),
            ("127.0.0.1:5000/ci/busybox", "1")
        );
        assert_eq!(
            split("reg.example/ci/x@sha256:abc"),
            ("reg.example/ci/x", "sha256:abc")
        );
    }

    #[test]
    fn the_registry_is_the_first_part_when_it_looks_like_a_host() {
        assert_eq!(registry("127.0.0.1:5000/ci/busybox:1"), "127.0.0.1:5000");
        assert_eq!(registry("ghcr.io/org/tool"), "ghcr.io");
        assert_eq!(registry("localhost/x"), "localhost");
        assert_eq!(registry("library/busybox"), "docker.io");
        assert_eq!(registry("busybox"), "docker.io");
    }

    #[test]
    fn policies_read_as_operators_write_them_and_logins_hide_passwords() {
        let p: PullPolicy = serde_json::from_str("\"if-missing\"").unwrap();
        assert_eq!(p, PullPolicy::IfMissing);
        let login = RegistryLogin {
            username: "ci".into(),
            password: "hunter22".into(),
        };
        assert!(!format!("{login:?}").contains("hunter22"));
    }
}
