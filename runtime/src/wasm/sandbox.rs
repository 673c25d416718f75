//! Per-task sandbox state: the WASI context (only the task's mounts, env and
//! stdio; no sockets, nothing inherited from the node), outbound HTTP under
//! the tool's grant only, and the memory limiter.
//!
//! A mount's directory is opened once, from `/` one component at a time
//! without following symbolic links (its path was canonicalised when it was
//! checked against the policy, so it has none), and that very handle is what
//! the guest gets: a link swapped into the path after the check is refused,
//! never followed.

use super::http::{HttpState, Report};
use super::output::CappedPipe;
use super::tool_host::ToolHost;
use crate::capture::Stream;
use crate::executor::TaskContext;
use crate::failure::TaskFailure;
use crate::task::{Mount, MountSource, WasmRuntime};
use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Environment variable that tells guests their mount table.
pub const MOUNTS_ENV: &str = "WASMNODE_MOUNTS";

/// Store data of one task.
pub struct State {
    table: ResourceTable,
    wasi: Option<WasiCtx>,
    /// The WASI preview 1 context, for core modules.
    pub p1: Option<WasiP1Ctx>,
    /// Memory accounting and limit.
    pub limiter: Limiter,
    /// What a tool's `config` and `log` imports answer from.
    pub tool: ToolHost,
    /// Outbound HTTP: the grant, and what was refused.
    pub http: HttpState,
}

impl State {
    /// The resource table and the HTTP state, borrowed together.
    pub fn http_parts(&mut self) -> (&mut ResourceTable, &mut HttpState) {
        (&mut self.table, &mut self.http)
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self
                .wasi
                .as_mut()
                .expect("component stores carry a WASI p2 context"),
            table: &mut self.table,
        }
    }
}

/// Whether the state is for a component or a core (preview 1) module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Component,
    CoreModule,
}

/// The captured stdio of one task.
pub struct Stdio {
    pub stdout: CappedPipe,
    pub stderr: CappedPipe,
}

impl Stdio {
    /// Whether either stream went past its cap.
    pub fn overflowed(&self) -> Option<Stream> {
        if self.stdout.overflowed() {
            Some(Stream::Stdout)
        } else if self.stderr.overflowed() {
            Some(Stream::Stderr)
        } else {
            None
        }
    }
}

/// What the sandbox is built from.
pub struct SandboxSpec<'a> {
    /// Component settings (args, env, stdin).
    pub runtime: &'a WasmRuntime,
    /// Program name (argv[0]; a tool's name, in its log lines).
    pub program: &'a str,
    /// Mounts, already checked against policy.
    pub mounts: &'a [Mount],
    /// Stdin bytes (commands).
    pub stdin: Option<Vec<u8>>,
    /// Forces every mount read-only (tools that declare no writes).
    pub read_only: bool,
    /// Deterministic mode with this seed (see [`super::determinism`]).
    pub deterministic: Option<u64>,
}

/// Builds the store data and stdio captures for one task.
pub fn build(
    spec: SandboxSpec<'_>,
    ctx: &TaskContext,
    flavor: Flavor,
) -> Result<(State, Stdio), TaskFailure> {
    let cap = usize::try_from(ctx.limits.max_output_bytes).unwrap_or(usize::MAX);
    let stdio = Stdio {
        stdout: CappedPipe::new(Stream::Stdout, cap, ctx.events.clone()),
        stderr: CappedPipe::new(Stream::Stderr, cap, ctx.events.clone()),
    };
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(stdio.stdout.clone())
        .stderr(stdio.stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .arg(spec.program)
        .args(&spec.runtime.args);
    if let Some(seed) = spec.deterministic {
        super::determinism::apply(&mut builder, seed);
    }
    if spec.runtime.inherit_stdin {
        builder.inherit_stdin();
    } else if let Some(stdin) = spec.stdin {
        builder.stdin(MemoryInputPipe::new(stdin));
    }
    for (key, value) in &spec.runtime.env {
        if key.is_empty() || key.contains('=') || key == MOUNTS_ENV {
            return Err(TaskFailure::invalid_input(format!(
                "environment variable name `{key}` is not allowed"
            )));
        }
        builder.env(key, value);
    }
    let mut table = Vec::new();
    let mut seen = BTreeSet::new();
    for mount in spec.mounts {
        let guest = guest_path(&mount.guest_path)?;
        if !seen.insert(guest.clone()) {
            return Err(TaskFailure::invalid_input(format!(
                "guest path {guest} is mounted twice"
            )));
        }
        let host = host_dir(mount, ctx)?;
        let writable = mount.writable && !spec.read_only;
        let perms = if writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        let opened = open_nofollow(&host).map_err(|e| {
            TaskFailure::invalid_input(format!("cannot mount {} at {guest}: {e}", host.display()))
        })?;
        // The handle itself, by its descriptor: nothing is looked up by path again.
        let handle = format!("/proc/self/fd/{}", opened.as_raw_fd());
        builder.allow_blocking_current_thread(matches!(mount.source, MountSource::NodeCache(_)));
        builder.preopened_dir(&handle, &guest, perms).map_err(|e| {
            TaskFailure::invalid_input(format!("cannot mount {} at {guest}: {e}", host.display()))
        })?;
        drop(opened);
        table.push(format!("{guest}:{}", if writable { "rw" } else { "ro" }));
    }
    // Files the guest opens block the task's thread only when every
    // directory it can open them in is the node's own cache.
    builder.allow_blocking_current_thread(
        !spec.mounts.is_empty()
            && spec
                .mounts
                .iter()
                .all(|m| matches!(m.source, MountSource::NodeCache(_))),
    );
    builder.env(MOUNTS_ENV, table.join(","));
    if let Some(first) = spec.mounts.first() {
        builder.initial_cwd(&first.guest_path);
    }
    let limiter = Limiter::new(ctx.limits.memory_bytes);
    let tool = ToolHost {
        name: spec.program.to_string(),
        config: spec.runtime.config.clone(),
        stderr: stdio.stderr.clone(),
        mask: ctx.mask.clone(),
    };
    let http = HttpState::new(
        spec.program,
        spec.runtime.http.clone(),
        Report::new(stdio.stderr.clone()),
    );
    let state = match flavor {
        Flavor::Component => State {
            table: ResourceTable::new(),
            wasi: Some(builder.build()),
            p1: None,
            limiter,
            tool,
            http,
        },
        Flavor::CoreModule => State {
            table: ResourceTable::new(),
            wasi: None,
            p1: Some(builder.build_p1()),
            limiter,
            tool,
            http,
        },
    };
    Ok((state, stdio))
}

/// Checks a guest path: absolute, normalised, and free of the characters the
/// mount table uses as separators.
fn guest_path(path: &str) -> Result<String, TaskFailure> {
    let trimmed = path.trim_end_matches('/');
    let plain = trimmed.strip_prefix('/').is_some_and(|rest| {
        rest.split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
    });
    if !plain || path.contains([',', ':']) {
        return Err(TaskFailure::invalid_input(format!(
            "guest path `{path}` must be an absolute path below / without `..`, `,` or `:`"
        )));
    }
    Ok(trimmed.to_string())
}

/// The canonical host directory behind `mount` (a policy-checked host path
/// is canonical already; the node's own directories are made so).
fn host_dir(mount: &Mount, ctx: &TaskContext) -> Result<PathBuf, TaskFailure> {
    let (dir, checked) = match &mount.source {
        MountSource::Host(path) => (path.clone(), true),
        MountSource::Prepared(path) | MountSource::NodeCache(path) => (path.clone(), false),
        MountSource::Artifacts => (ctx.artifacts.root().to_path_buf(), true),
        MountSource::Workspace => (
            ctx.workspace.clone().ok_or_else(|| {
                TaskFailure::internal("the task asked for a workspace but none was created")
            })?,
            false,
        ),
        MountSource::Scratch => (
            ctx.scratch.clone().ok_or_else(|| {
                TaskFailure::internal("the task asked for a scratch directory but none was created")
            })?,
            false,
        ),
        MountSource::Blob(reference) => return Err(crate::blobs::unresolved(reference)),
    };
    let missing = |dir: &std::path::Path| {
        TaskFailure::invalid_input(format!(
            "mount source {} does not exist or is not a directory",
            dir.display()
        ))
    };
    let dir = if checked {
        dir
    } else {
        dir.canonicalize().map_err(|_| missing(&dir))?
    };
    if !dir.is_dir() {
        return Err(missing(&dir));
    }
    Ok(dir)
}

/// Opens the directory at the absolute path `path` from `/`, one component
/// at a time, refusing any symbolic link on the way.
pub fn open_nofollow(path: &std::path::Path) -> std::io::Result<cap_std::fs::Dir> {
    use cap_fs_ext::DirExt;
    use std::path::Component;
    let mut dir = cap_std::fs::Dir::open_ambient_dir("/", cap_std::ambient_authority())?;
    for component in path.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => dir = dir.open_dir_nofollow(name)?,
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the path is not canonical",
                ));
            }
        }
    }
    Ok(dir)
}

/// Counts linear memory across all of a task's memories and refuses growth
/// past the limit, remembering that it did (so the failure can be told apart
/// from other traps).
pub struct Limiter {
    limit: u64,
    total: u64,
    peak: u64,
    exceeded: bool,
}

/// Most table elements a task may have.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl Limiter {
    /// A limiter allowing `limit` bytes of linear memory in total.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            total: 0,
            peak: 0,
            exceeded: false,
        }
    }

    /// Whether a growth was refused.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// Highest total linear memory seen, in bytes.
    pub fn peak(&self) -> u64 {
        self.peak
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current) as u64;
        if self.total.saturating_add(grow) > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        self.total += grow;
        self.peak = self.peak.max(self.total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn a_symlink_anywhere_in_a_mount_path_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("data")).unwrap();
        assert!(open_nofollow(&real.join("data")).is_ok());
        std::os::unix::fs::symlink("/etc", real.join("swapped")).unwrap();
        assert!(
            open_nofollow(&real.join("swapped")).is_err(),
            "final component"
        );
        std::os::unix::fs::symlink(real.join("data"), real.join("via")).unwrap();
        std::fs::create_dir(real.join("data/inner")).unwrap();
        assert!(
            open_nofollow(&real.join("via/inner")).is_err(),
            "a middle component"
        );
        assert!(open_nofollow(std::path::Path::new("relative/path")).is_err());
    }

    #[test]
    fn guest_paths_must_be_plain_absolute_paths() {
        assert_eq!(guest_path("/data/").unwrap(), "/data");
        for bad in ["data", "/a/../b", "/a,b", "/a:b", "/", "/./a"] {
            assert!(guest_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limiter_counts_all_memories_and_remembers_refusals() {
        let mut l = Limiter::new(100);
        assert!(l.memory_growing(0, 60, None).unwrap());
        assert!(l.memory_growing(0, 30, None).unwrap());
        assert!(!l.exceeded());
        assert!(!l.memory_growing(30, 50, None).unwrap());
        assert!(l.exceeded());
        assert_eq!(l.peak(), 90);
    }
}
