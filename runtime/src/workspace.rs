//! A task's scratch workspace and its quota: the node measures what the
//! task has written there every quarter second, and once more when it ends,
//! and fails it with `OUTPUT_EXCEEDED` (stopping it if it still runs) once
//! it passes `limits.workspace_bytes` or holds more than `MAX_ENTRIES` files
//! and directories, so no guest or container can fill the node's disk
//! through it, however fast it writes.

use crate::failure::{CapturedOutput, FailureKind, TaskFailure};
use crate::task::TaskOutcome;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a workspace is measured.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// Files and directories a workspace may hold at most.
pub const MAX_ENTRIES: usize = 100_000;

/// What a workspace holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of its files (their apparent size).
    pub bytes: u64,
    /// Files and directories, up to `MAX_ENTRIES + 1`.
    pub entries: usize,
}

/// Measures `dir` without following symbolic links, stopping early past
/// `MAX_ENTRIES` entries.
pub fn usage(dir: &Path) -> Usage {
    let mut usage = Usage {
        bytes: 0,
        entries: 0,
    };
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            usage.entries += 1;
            if usage.entries > MAX_ENTRIES {
                return usage;
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                usage.bytes += meta.len();
            }
        }
    }
    usage
}

/// Measures `dirs` together, off the async threads.
async fn measure(dirs: &[PathBuf]) -> Option<Usage> {
    let dirs = dirs.to_vec();
    tokio::task::spawn_blocking(move || {
        dirs.iter().map(|d| usage(d)).fold(
            Usage {
                bytes: 0,
                entries: 0,
            },
            |a, b| Usage {
                bytes: a.bytes + b.bytes,
                entries: a.entries + b.entries,
            },
        )
    })
    .await
    .ok()
}

fn over(usage: Usage, quota: u64) -> bool {
    usage.bytes > quota || usage.entries > MAX_ENTRIES
}

/// Runs `task` (started with `cancel`, the task's own token) while
/// watching `dirs` (its workspace and scratch, counted together); past the quota, while it runs or when it ends, it fails
/// with `OUTPUT_EXCEEDED` (a running task is cancelled first), keeping
/// whatever output it had captured.
pub async fn within_quota(
    dirs: &[PathBuf],
    quota: u64,
    cancel: CancellationToken,
    task: impl Future<Output = Result<TaskOutcome, TaskFailure>>,
) -> Result<TaskOutcome, TaskFailure> {
    let watch = async {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            if let Some(now) = measure(dirs).await.filter(|now| over(*now, quota)) {
                return now;
            }
        }
    };
    tokio::pin!(task);
    let (result, exceeded) = tokio::select! {
        result = &mut task => {
            match measure(dirs).await.filter(|now| over(*now, quota)) {
                Some(exceeded) => (result, exceeded),
                None => return result,
            }
        }
        exceeded = watch => {
            cancel.cancel();
            (task.await, exceeded)
        }
    };
    let captured = match result {
        Ok(outcome) => Some(CapturedOutput {
            stdout: outcome.stdout,
            stderr: outcome.stderr,
            exit_code: outcome.exit_code,
        }),
        Err(failure) => failure.captured.map(|c| *c),
    };
    let message = if exceeded.entries > MAX_ENTRIES {
        format!("the task created more than {MAX_ENTRIES} files in its workspace")
    } else {
        format!("the task wrote more than {quota} bytes into its workspace (limits.workspace_mb)")
    };
    let failure = TaskFailure::new(FailureKind::OutputExceeded, message);
    Err(match captured {
        Some(output) => failure.with_output(output),
        None => failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_files_below_the_directory_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("sub/b"), vec![0u8; 24]).unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("root")).unwrap();
        let usage = usage(dir.path());
        assert_eq!(usage.bytes, 1024 + "/".len() as u64);
        assert_eq!(usage.entries, 4);
    }

    #[tokio::test]
    async fn a_task_writing_past_its_quota_is_stopped_as_output_exceeded() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let (path, token) = (dir.path().to_path_buf(), cancel.clone());
        let writer = async move {
            let mut n = 0;
            loop {
                tokio::select! {
                    _ = token.cancelled() => return Err(TaskFailure::cancelled()),
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
                std::fs::write(path.join(format!("f{n}")), vec![0u8; 64 << 10]).unwrap();
                n += 1;
            }
        };
        let err = within_quota(&[dir.path().to_path_buf()], 1 << 20, cancel.clone(), writer)
            .await
            .unwrap_err();
        assert_eq!(err.kind, FailureKind::OutputExceeded, "{err}");
        assert!(cancel.is_cancelled());
    }

    #[tokio::test]
    async fn a_task_that_ended_past_its_quota_fails_as_output_exceeded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let quick = async move {
            std::fs::write(path.join("big"), vec![0u8; 2 << 20]).unwrap();
            Ok(TaskOutcome {
                output: serde_json::Value::Null,
                stdout: "done".into(),
                stderr: String::new(),
                exit_code: Some(0),
                metrics: Default::default(),
                artifacts: Vec::new(),
                executor: "test",
            })
        };
        let err = within_quota(
            &[dir.path().to_path_buf()],
            1 << 20,
            CancellationToken::new(),
            quick,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, FailureKind::OutputExceeded, "{err}");
        assert_eq!(err.captured.unwrap().stdout, "done");
        let fine = within_quota(
            &[dir.path().to_path_buf()],
            4 << 20,
            CancellationToken::new(),
            async { Err(TaskFailure::cancelled()) },
        )
        .await
        .unwrap_err();
        assert_eq!(
            fine.kind,
            FailureKind::Cancelled,
            "within the quota, the task's own result"
        );
    }
}
