//! `DockerExecutor`: runs container images through the local Docker engine
//! (bollard; never the `docker` CLI, never a shell on the host).
//!
//! Lifecycle per task: create → attach → start → feed stdin → wait with the
//! deadline → kill if needed → collect → remove → read what it used from
//! its cgroup (`accounting`), also on cancellation. Every
//! container carries the node's labels, so leftovers from a crash are swept
//! at start-up, and runs its command under the deadline backstop, so its
//! wall-clock limit holds even if the node dies. Defaults are hardened and can only be loosened within
//! policy: no network, read-only root filesystem with a small `/tmp` tmpfs,
//! every capability dropped, no-new-privileges, a non-root user, pids,
//! memory (no swap) and CPU limits.

mod accounting;
mod backstop;
mod images;
mod pull;

use accounting::{Accounting, Layout};
pub use images::{ImageAllowlist, normalize};
pub use pull::{PullPolicy, PullSettings, RegistryLogin};

use crate::capture::{OutputCapture, Stream};
use crate::executor::{Executor, Support, TaskContext};
use crate::failure::{CapturedOutput, FailureKind, Stopped, TaskFailure};
use crate::task::{ImageRuntime, MountSource, Runtime, TaskMetrics, TaskOutcome, TaskSpec, millis};
use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures::StreamExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Label on every container the node creates.
pub const MANAGED_LABEL: &str = "io.wasmnode.managed";
/// Label naming the node that created a container.
pub const NODE_LABEL: &str = "io.wasmnode.node";
/// Label naming the job of a container.
pub const JOB_LABEL: &str = "io.wasmnode.job";
/// Where the task's scratch workspace is mounted.
pub const WORKSPACE: &str = "/workspace";
/// How failures name what ran.
const CONTAINER: &str = "the container";

/// How containers are run.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// Engine address (`unix:///var/run/docker.sock`, `tcp://…`); `None`
    /// honours `DOCKER_HOST`, else the local socket.
    pub host: Option<String>,
    /// Images tasks may run.
    pub allowed_images: ImageAllowlist,
    /// Whether tasks may request GPUs.
    pub allow_gpus: bool,
    /// User the container runs as.
    pub user: String,
    /// Size of the writable `/tmp`, MiB.
    pub tmpfs_mb: u64,
    /// This node's id, put on every container for sweeping.
    pub node_id: String,
    /// Where the deadline backstop is installed for containers to mount.
    pub helper_dir: PathBuf,
    /// Whether and how images jobs name are pulled.
    pub pull: PullSettings,
}

impl Default for DockerSettings {
    fn default() -> Self {
        Self {
            host: None,
            allowed_images: ImageAllowlist::default(),
            allow_gpus: false,
            user: "65534:65534".into(),
            tmpfs_mb: 64,
            node_id: "wasmnode".into(),
            helper_dir: std::env::temp_dir().join("wasmnode"),
            pull: PullSettings::default(),
        }
    }
}

/// Errors connecting to the engine.
#[derive(Debug, thiserror::Error)]
#[error("Docker engine unavailable at {address}: {message}")]
pub struct DockerUnavailable {
    /// Where we looked.
    pub address: String,
    /// Why it failed.
    pub message: String,
}

/// Runs image tasks in containers.
pub struct DockerExecutor {
    docker: Docker,
    settings: DockerSettings,
    /// The deadline backstop on the host.
    helper: PathBuf,
    /// The engine's root directory (`DockerRootDir`), read once at connect.
    root_dir: Option<String>,
    /// Where containers' CPU time and memory are read, if they can be.
    accounting: Option<Accounting>,
}

impl DockerExecutor {
    /// Connects to the engine, negotiates the API version and pings it.
    pub async fn connect(settings: DockerSettings) -> Result<Self, DockerUnavailable> {
        let address = settings
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let unavailable = |e: &dyn std::fmt::Display| DockerUnavailable {
            address: address.clone(),
            message: e.to_string(),
        };
        let docker = Docker::connect_with_host(&address).map_err(|e| unavailable(&e))?;
        let docker = tokio::time::timeout(Duration::from_secs(5), docker.negotiate_version())
            .await
            .map_err(|_| unavailable(&"no answer within 5 s"))?
            .map_err(|e| unavailable(&e))?;
        docker.ping().await.map_err(|e| unavailable(&e))?;
        let info = tokio::time::timeout(Duration::from_secs(5), docker.info())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let accounting = cgroup_layout(&address, &info).and_then(|layout| {
            Accounting::open(Path::new("/sys/fs/cgroup"), layout, &settings.node_id)
        });
        let helper = backstop::install(&settings.helper_dir).map_err(|e| {
            unavailable(&format!(
                "cannot install the deadline backstop under {}: {e}",
                settings.helper_dir.display()
            ))
        })?;
        Ok(Self {
            docker,
            settings,
            helper,
            root_dir: info.docker_root_dir,
            accounting,
        })
    }

    /// Whether the engine answers now.
    pub async fn available(&self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(2), self.docker.ping()).await,
            Ok(Ok(_))
        )
    }

    /// The engine's root directory (`DockerRootDir`) as it said at connect.
    pub fn root_dir(&self) -> Option<&str> {
        self.root_dir.as_deref()
    }

    /// The settings in force.
    pub fn settings(&self) -> &DockerSettings {
        &self.settings
    }

    /// Removes every container this node left behind (after a crash).
    pub async fn sweep(&self) -> Result<usize, TaskFailure> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{NODE_LABEL}={}", self.settings.node_id)],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let leftovers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(engine_error)?;
        for container in &leftovers {
            if let Some(id) = &container.id {
                self.remove(id).await;
            }
        }
        if let Some(accounting) = &self.accounting {
            accounting.sweep();
        }
        Ok(leftovers.len())
    }

    /// Whether `image` is present on this node.
    pub async fn has_image(&self, image: &str) -> Result<bool, TaskFailure> {
        Ok(self.image(image).await?.is_some())
    }

    /// What the engine knows of `image`, if it is present.
    async fn image(
        &self,
        image: &str,
    ) -> Result<Option<bollard::models::ImageInspect>, TaskFailure> {
        match self.docker.inspect_image(image).await {
            Ok(inspected) => Ok(Some(inspected)),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(engine_error(e)),
        }
    }

    async fn remove(&self, id: &str) {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        if let Err(e) = self.docker.remove_container(id, Some(options)).await {
            tracing::warn!(container = id, error = %e, "could not remove container");
        }
    }

    async fn kill(&self, id: &str) {
        let _ = self
            .docker
            .kill_container(
                id,
                Some(
                    KillContainerOptionsBuilder::default()
                        .signal("SIGKILL")
                        .build(),
                ),
            )
            .await;
    }

    fn check_policy(&self, spec: &ImageRuntime) -> Result<(), TaskFailure> {
        if !self.settings.allowed_images.allows(&spec.image) {
            return Err(TaskFailure::policy_denied(format!(
                "image `{}` is not on this node's allowlist ({})",
                spec.image,
                if self.settings.allowed_images.patterns().is_empty() {
                    "no images are allowed".to_string()
                } else {
                    self.settings.allowed_images.patterns().join(", ")
                }
            )));
        }
        if spec.gpus.unwrap_or(0) > 0 && !self.settings.allow_gpus {
            return Err(TaskFailure::policy_denied(
                "this node does not allow GPU requests",
            ));
        }
        Ok(())
    }

    fn container_body(
        &self,
        task: &TaskSpec,
        spec: &ImageRuntime,
        argv: Vec<String>,
        ctx: &TaskContext,
    ) -> Result<ContainerCreateBody, TaskFailure> {
        let workspace = ctx
            .workspace
            .as_ref()
            .ok_or_else(|| TaskFailure::internal("container tasks need a workspace"))?;
        open_permissions(workspace)?;
        let mut binds = vec![
            format!("{}:{WORKSPACE}:rw", workspace.display()),
            format!("{}:{}:ro", self.helper.display(), backstop::MOUNT),
        ];
        for mount in &task.mounts {
            let host = match &mount.source {
                MountSource::Host(path)
                | MountSource::Prepared(path)
                | MountSource::NodeCache(path) => path.clone(),
                MountSource::Artifacts => ctx.artifacts.root().to_path_buf(),
                MountSource::Workspace => workspace.clone(),
                MountSource::Scratch => ctx.scratch.clone().ok_or_else(|| {
                    TaskFailure::internal(
                        "the task asked for a scratch directory but none was created",
                    )
                })?,
                MountSource::Blob(reference) => return Err(crate::blobs::unresolved(reference)),
            };
            if mount.guest_path == WORKSPACE
                || !mount.guest_path.starts_with('/')
                || mount.guest_path.contains(':')
            {
                return Err(TaskFailure::invalid_input(format!(
                    "container mount target `{}` must be an absolute path other than {WORKSPACE}",
                    mount.guest_path
                )));
            }
            let mode = if mount.writable { "rw" } else { "ro" };
            binds.push(format!("{}:{}:{mode}", host.display(), mount.guest_path));
        }
        let limits = &ctx.limits;
        let memory = i64::try_from(limits.memory_bytes).unwrap_or(i64::MAX);
        let host_config = HostConfig {
            network_mode: Some("none".into()),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_string(),
                self.settings.tmpfs_options(),
            )])),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            pids_limit: Some(i64::from(limits.pids)),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some((limits.cpus * 1e9) as i64),
            init: Some(true),
            binds: Some(binds),
            device_requests: spec.gpus.filter(|n| *n > 0).map(|n| {
                vec![DeviceRequest {
                    count: Some(i64::from(n)),
                    capabilities: Some(vec![vec!["gpu".into()]]),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        };
        let labels = HashMap::from([
            (MANAGED_LABEL.to_string(), "true".to_string()),
            (NODE_LABEL.to_string(), self.settings.node_id.clone()),
            (JOB_LABEL.to_string(), task.job_id.clone()),
        ]);
        Ok(ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: Some(backstop::entrypoint(limits.timeout, argv)),
            cmd: Some(Vec::new()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            user: Some(self.settings.user.clone()),
            working_dir: Some(WORKSPACE.into()),
            labels: Some(labels),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(true),
            tty: Some(false),
            network_disabled: Some(true),
            host_config: Some(host_config),
            ..Default::default()
        })
    }
}

impl DockerSettings {
    /// `/tmp` options: small, no exec, writable by the container user (by
    /// owner where the user is numeric, since some engines drop `mode`).
    fn tmpfs_options(&self) -> String {
        let mut options = format!("rw,noexec,nosuid,size={}m,mode=1777", self.tmpfs_mb);
        let mut ids = self.user.splitn(2, ':');
        if let Some(Ok(uid)) = ids.next().map(str::parse::<u32>) {
            let gid = ids
                .next()
                .and_then(|g| g.parse::<u32>().ok())
                .unwrap_or(uid);
            options.push_str(&format!(",uid={uid},gid={gid}"));
        }
        options
    }
}

/// The container user must be able to write the workspace.
fn open_permissions(dir: &std::path::Path) -> Result<(), TaskFailure> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).map_err(|e| {
        TaskFailure::internal(format!(
            "cannot open the workspace to the container user: {e}"
        ))
    })
}

fn engine_error(e: bollard::errors::Error) -> TaskFailure {
    TaskFailure::backend_unavailable(format!("Docker engine error: {e}"))
}

/// How a container run ended.
enum Ending {
    Exited(i64),
    TimedOut,
    Cancelled,
    Overflowed(Stream),
}

#[async_trait]
impl Executor for DockerExecutor {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn can_run(&self, task: &TaskSpec) -> Support {
        match &task.runtime {
            Runtime::Image(spec) => match self.check_policy(spec) {
                Ok(()) => Support::Yes,
                Err(denied) => Support::Denied(denied.message),
            },
            other => Support::No(format!(
                "the docker executor does not run `{}` tasks",
                other.mode()
            )),
        }
    }

    async fn run(&self, task: TaskSpec, ctx: TaskContext) -> Result<TaskOutcome, TaskFailure> {
        let started = Instant::now();
        let Runtime::Image(spec) = &task.runtime else {
            return Err(TaskFailure::internal(
                "the docker executor was given a non-image task",
            ));
        };
        self.check_policy(spec)?;
        let image = self.ensure_image(&spec.image, &ctx).await?;
        let argv = command_of(&image, &spec.cmd).ok_or_else(|| {
            TaskFailure::invalid_input(format!(
                "image `{}` names no command, and the job gives none (runtime.cmd)",
                spec.image
            ))
        })?;
        let name = container_name(&task.job_id);
        let mut body = self.container_body(&task, spec, argv, &ctx)?;
        if let (Some(accounting), Some(host)) = (&self.accounting, body.host_config.as_mut()) {
            host.cgroup_parent = Some(accounting.parent(&name));
        }
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
            .map_err(engine_error)?;
        let id = created.id;
        let result = self.supervise(&id, &task, spec, &ctx).await;
        self.remove(&id).await;
        let used = self.accounting.as_ref().map(|a| a.collect(&name));
        let metrics = TaskMetrics {
            wall_time_ms: millis(started.elapsed()),
            cpu_time_ms: used.and_then(|u| u.cpu).map(millis),
            peak_memory_bytes: used.and_then(|u| u.peak_memory_bytes),
            ran: image.id.clone(),
            ..TaskMetrics::default()
        };
        let (ending, stdout, stderr) = result.map_err(|e| e.with_metrics(metrics.clone()))?;
        let captured = |exit_code| CapturedOutput {
            stdout: stdout.text(),
            stderr: stderr.text(),
            exit_code,
        };
        let stopped = |how| {
            Err(TaskFailure::stopped(CONTAINER, how, captured(None)).with_metrics(metrics.clone()))
        };
        let code = match ending {
            Ending::Cancelled => return stopped(Stopped::Cancelled),
            Ending::TimedOut => return stopped(Stopped::TimedOut(ctx.limits.timeout)),
            Ending::Overflowed(stream) => {
                return stopped(Stopped::Overflowed {
                    stream: stream.name(),
                    cap: ctx.limits.max_output_bytes,
                });
            }
            Ending::Exited(code) => i32::try_from(code).unwrap_or(i32::MAX),
        };
        if code != 0 {
            let failure =
                TaskFailure::stopped(CONTAINER, Stopped::Exited(code), captured(Some(code)));
            return Err(failure.with_metrics(metrics));
        }
        Ok(TaskOutcome {
            output: serde_json::from_str(stdout.text().trim()).unwrap_or(serde_json::Value::Null),
            stdout: stdout.text(),
            stderr: stderr.text(),
            exit_code: Some(0),
            metrics,
            artifacts: Vec::new(),
            executor: "docker",
        })
    }
}

impl DockerExecutor {
    /// Attaches, starts, feeds stdin, and waits for the end (exit, deadline,
    /// cancellation or output overflow), killing the container when the node
    /// ends it. OOM kills are told apart by inspecting the container.
    async fn supervise(
        &self,
        id: &str,
        task: &TaskSpec,
        spec: &ImageRuntime,
        ctx: &TaskContext,
    ) -> Result<(Ending, Arc<OutputCapture>, Arc<OutputCapture>), TaskFailure> {
        let cap = usize::try_from(ctx.limits.max_output_bytes).unwrap_or(usize::MAX);
        let stdout = Arc::new(OutputCapture::new(Stream::Stdout, cap, ctx.events.clone()));
        let stderr = Arc::new(OutputCapture::new(Stream::Stderr, cap, ctx.events.clone()));
        let attach = AttachContainerOptionsBuilder::default()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let attached = self
            .docker
            .attach_container(id, Some(attach))
            .await
            .map_err(engine_error)?;
        self.docker
            .start_container(id, None)
            .await
            .map_err(engine_error)?;

        let stdin = match &spec.stdin {
            Some(bytes) => bytes.clone(),
            None if task.payload.is_null() => Vec::new(),
            None => task.payload.to_string().into_bytes(),
        };
        let mut input = attached.input;
        let feeder = tokio::spawn(async move {
            let _ = input.write_all(&stdin).await;
            let _ = input.shutdown().await;
        });
        let (out, err) = (stdout.clone(), stderr.clone());
        let mut output = attached.output;
        let (overflow_tx, mut overflow_rx) = tokio::sync::mpsc::channel::<Stream>(1);
        let reader = tokio::spawn(async move {
            while let Some(Ok(chunk)) = output.next().await {
                let (capture, bytes) = match chunk {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        (&out, message)
                    }
                    LogOutput::StdErr { message } => (&err, message),
                    LogOutput::StdIn { .. } => continue,
                };
                if !capture.append(&bytes) {
                    let _ = overflow_tx.try_send(capture.stream());
                }
            }
        });

        let mut wait = self.docker.wait_container(id, None);
        let deadline = tokio::time::Instant::from_std(ctx.deadline);
        let ending = tokio::select! {
            waited = wait.next() => match waited {
                Some(Ok(response)) => Ending::Exited(response.status_code),
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ending::Exited(code),
                Some(Err(e)) => return Err(engine_error(e)),
                None => return Err(TaskFailure::internal("the engine closed the wait stream")),
            },
            _ = tokio::time::sleep_until(deadline) => Ending::TimedOut,
            _ = ctx.cancel.cancelled() => Ending::Cancelled,
            Some(stream) = overflow_rx.recv() => Ending::Overflowed(stream),
        };
        if !matches!(ending, Ending::Exited(_)) {
            self.kill(id).await;
        }
        feeder.abort();
        // The log stream ends when the container does; bound the wait anyway.
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        if let Ending::Exited(_) = ending {
            let inspected = self
                .docker
                .inspect_container(id, None)
                .await
                .map_err(engine_error)?;
            if inspected.state.and_then(|s| s.oom_killed).unwrap_or(false) {
                return Err(TaskFailure::new(
                    FailureKind::MemoryExceeded,
                    format!(
                        "the kernel killed the container at its memory limit of {} MiB",
                        ctx.limits.memory_bytes >> 20
                    ),
                )
                .with_output(CapturedOutput {
                    stdout: stdout.text(),
                    stderr: stderr.text(),
                    exit_code: None,
                }));
            }
        }
        Ok((ending, stdout, stderr))
    }
}

/// The cgroup layout whose counters the node can read for containers of
/// the engine at `address` (on this machine, cgroupfs driver), if any.
fn cgroup_layout(address: &str, info: &bollard::models::SystemInfo) -> Option<Layout> {
    use bollard::models::{
        SystemInfoCgroupDriverEnum as Driver, SystemInfoCgroupVersionEnum as Version,
    };
    if !address.starts_with("unix://") || info.cgroup_driver != Some(Driver::CGROUPFS) {
        return None;
    }
    match info.cgroup_version {
        Some(Version::_1) => Some(Layout::V1),
        Some(Version::_2) => Some(Layout::V2),
        _ => None,
    }
}

/// The command a container of `image` runs: the image's entrypoint
/// followed by the job's `cmd` (or the image's own), as Docker would.
fn command_of(image: &bollard::models::ImageInspect, cmd: &[String]) -> Option<Vec<String>> {
    let config = image.config.as_ref();
    let entrypoint = config
        .and_then(|c| c.entrypoint.clone())
        .unwrap_or_default();
    let args = if cmd.is_empty() {
        config.and_then(|c| c.cmd.clone()).unwrap_or_default()
    } else {
        cmd.to_vec()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(args).collect();
    (!argv.is_empty()).then_some(argv)
}

/// `wasmnode-<job>-<random>`, keeping only characters Docker accepts.
fn container_name(job_id: &str) -> String {
    let job: String = job_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    format!("wasmnode-{job}-{}", u32::from_le_bytes(random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_is_owned_by_a_numeric_user() {
        let options = |user: &str| {
            DockerSettings {
                user: user.into(),
                ..DockerSettings::default()
            }
            .tmpfs_options()
        };
        assert!(options("65534:65534").ends_with(",uid=65534,gid=65534"));
        assert!(options("1000").ends_with(",uid=1000,gid=1000"));
        assert!(options("nobody").ends_with("mode=1777"));
    }

    #[test]
    fn container_names_are_docker_safe_and_unique() {
        let a = container_name("job:1/x");
        assert!(a.starts_with("wasmnode-job-1-x-"), "{a}");
        assert_ne!(container_name("j"), container_name("j"));
    }
}
