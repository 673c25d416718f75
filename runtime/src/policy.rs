//! Operator policy: which runtime modes, host directories, component files
//! and images tasks may use, and the limits they get.

use crate::failure::TaskFailure;
use crate::limits::LimitPolicy;
use crate::task::RuntimeMode;
use std::path::{Path, PathBuf};

/// What the operator allows.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Default and maximum limits.
    pub limits: LimitPolicy,
    /// Runtime modes tasks may use.
    pub allowed_modes: Vec<RuntimeMode>,
    /// Host directories tasks may mount (and everything below them);
    /// `None` allows any (for the local CLI, where the user is the operator).
    pub mount_roots: Option<Vec<PathBuf>>,
    /// Directories component files may be loaded from; `None` allows any.
    pub component_roots: Option<Vec<PathBuf>>,
    /// Image that runs SPLAI `command`/`script` tool tasks, if any.
    pub sandbox_image: Option<String>,
    /// Whether a job may run a component it uploaded (`blob:HASH`).
    pub allow_uploaded_components: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            limits: LimitPolicy::default(),
            allowed_modes: RuntimeMode::ALL.to_vec(),
            mount_roots: Some(Vec::new()),
            component_roots: Some(Vec::new()),
            sandbox_image: None,
            allow_uploaded_components: false,
        }
    }
}

impl Policy {
    /// A policy for a local user running tasks by hand: any path is allowed.
    pub fn local() -> Self {
        Self {
            mount_roots: None,
            component_roots: None,
            ..Self::default()
        }
    }

    /// Refuses a runtime mode the operator did not allow.
    pub fn check_mode(&self, mode: RuntimeMode) -> Result<(), TaskFailure> {
        if self.allowed_modes.contains(&mode) {
            Ok(())
        } else {
            let allowed: Vec<_> = self.allowed_modes.iter().map(|m| m.as_str()).collect();
            Err(TaskFailure::policy_denied(format!(
                "runtime mode `{}` is not allowed on this node (allowed: {})",
                mode.as_str(),
                allowed.join(", ")
            )))
        }
    }

    /// Refuses a host directory outside the allowed mount roots.
    pub fn check_mount(&self, host: &Path) -> Result<PathBuf, TaskFailure> {
        check_under("mount", host, self.mount_roots.as_deref())
    }

    /// Refuses a component file outside the allowed component roots.
    pub fn check_component(&self, file: &Path) -> Result<PathBuf, TaskFailure> {
        check_under("component file", file, self.component_roots.as_deref())
    }
}

fn check_under(what: &str, path: &Path, roots: Option<&[PathBuf]>) -> Result<PathBuf, TaskFailure> {
    let resolved = path
        .canonicalize()
        .map_err(|e| TaskFailure::invalid_input(format!("{what} {}: {e}", path.display())))?;
    let Some(roots) = roots else {
        return Ok(resolved);
    };
    let allowed = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|root| resolved.starts_with(root));
    if allowed {
        Ok(resolved)
    } else {
        Err(TaskFailure::policy_denied(format!(
            "{what} {} is outside the directories this node allows{}",
            path.display(),
            if roots.is_empty() {
                " (none are configured)".to_string()
            } else {
                String::new()
            }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;

    #[test]
    fn mounts_must_lie_under_a_root_even_through_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("in")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("sneaky")).unwrap();
        let policy = Policy {
            mount_roots: Some(vec![root.path().into()]),
            ..Policy::default()
        };
        assert!(policy.check_mount(&root.path().join("in")).is_ok());
        assert_eq!(
            policy
                .check_mount(&root.path().join("sneaky"))
                .unwrap_err()
                .kind,
            FailureKind::PolicyDenied
        );
        assert_eq!(
            policy.check_mount(outside.path()).unwrap_err().kind,
            FailureKind::PolicyDenied
        );
        assert_eq!(
            policy
                .check_mount(&root.path().join("missing"))
                .unwrap_err()
                .kind,
            FailureKind::InvalidInput
        );
        assert!(
            Policy::default()
                .check_mount(root.path())
                .unwrap_err()
                .message
                .contains("none are configured")
        );
        assert!(Policy::local().check_mount(outside.path()).is_ok());
    }

    #[test]
    fn modes_are_checked() {
        let policy = Policy {
            allowed_modes: vec![RuntimeMode::Wasm],
            ..Policy::default()
        };
        assert!(policy.check_mode(RuntimeMode::Wasm).is_ok());
        assert!(
            policy
                .check_mode(RuntimeMode::Image)
                .unwrap_err()
                .message
                .contains("allowed: wasm")
        );
    }
}
