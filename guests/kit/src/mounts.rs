//! The directories the host mounted into this guest, and path confinement.
//!
//! The host passes the mount table in the `WASMNODE_MOUNTS` environment
//! variable as comma-separated `GUEST_PATH:ro` / `GUEST_PATH:rw` entries, and
//! sets the initial working directory to the first mount. WASI already
//! refuses anything outside the preopened directories; checking here first
//! turns such attempts into a clear `Denied` message.

use crate::GuestError;
use std::path::{Component, Path, PathBuf};

/// Name of the environment variable holding the mount table.
pub const MOUNTS_ENV: &str = "WASMNODE_MOUNTS";

/// One mounted directory as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Absolute guest path, e.g. `/data`.
    pub guest_path: PathBuf,
    /// Whether the guest may write under it.
    pub writable: bool,
}

/// The guest's mount table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    mounts: Vec<Mount>,
}

impl Mounts {
    /// Reads the mount table the host passed in `WASMNODE_MOUNTS`.
    pub fn from_env() -> Self {
        Self::parse(&std::env::var(MOUNTS_ENV).unwrap_or_default())
    }

    /// Parses a `GUEST_PATH:ro,GUEST_PATH:rw` table; malformed entries are skipped.
    pub fn parse(table: &str) -> Self {
        let mounts = table
            .split(',')
            .filter_map(|entry| {
                let (path, mode) = entry.trim().rsplit_once(':')?;
                let writable = match mode {
                    "rw" => true,
                    "ro" => false,
                    _ => return None,
                };
                if !path.starts_with('/') {
                    return None;
                }
                Some(Mount {
                    guest_path: normalize(Path::new(path))?,
                    writable,
                })
            })
            .collect();
        Self { mounts }
    }

    /// All mounts, in the host's order.
    pub fn all(&self) -> &[Mount] {
        &self.mounts
    }

    /// The mount that relative paths resolve against (the first one).
    pub fn working_dir(&self) -> Option<&Mount> {
        self.mounts.first()
    }

    /// Resolves `path` (absolute, or relative to the first mount) lexically and
    /// returns it with the mount that contains it, or `Denied` if it lies
    /// outside every mount.
    pub fn resolve(&self, path: &str) -> Result<(PathBuf, &Mount), GuestError> {
        if path.is_empty() {
            return Err(GuestError::InvalidInput("path must not be empty".into()));
        }
        let joined = if Path::new(path).is_absolute() {
            PathBuf::from(path)
        } else {
            let base = self.working_dir().ok_or_else(|| self.denied(path))?;
            base.guest_path.join(path)
        };
        let normalized = normalize(&joined).ok_or_else(|| self.denied(path))?;
        self.mounts
            .iter()
            .filter(|m| normalized.starts_with(&m.guest_path))
            .max_by_key(|m| m.guest_path.components().count())
            .map(|m| (normalized.clone(), m))
            .ok_or_else(|| self.denied(path))
    }

    /// Like [`Mounts::resolve`], but the mount must also be writable.
    pub fn resolve_writable(&self, path: &str) -> Result<PathBuf, GuestError> {
        let (resolved, mount) = self.resolve(path)?;
        if !mount.writable {
            return Err(GuestError::Denied(format!(
                "{path}: mount {} is read-only",
                mount.guest_path.display()
            )));
        }
        Ok(resolved)
    }

    fn denied(&self, path: &str) -> GuestError {
        let names: Vec<String> = self
            .mounts
            .iter()
            .map(|m| m.guest_path.display().to_string())
            .collect();
        if names.is_empty() {
            GuestError::Denied(format!("{path}: no directory is mounted for this task"))
        } else {
            GuestError::Denied(format!(
                "{path}: outside the mounted directories ({})",
                names.join(", ")
            ))
        }
    }
}

/// Lexically normalizes an absolute path (`.` dropped, `..` applied); `None`
/// if `..` climbs above the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(part) => out.push(part),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> Mounts {
        Mounts::parse("/data:ro,/out:rw,/data/cache:rw,bad,/x:zz")
    }

    #[test]
    fn parses_table_and_skips_malformed_entries() {
        let m = mounts();
        assert_eq!(m.all().len(), 3);
        assert_eq!(m.working_dir().unwrap().guest_path, PathBuf::from("/data"));
    }

    #[test]
    fn resolves_inside_and_denies_escapes() {
        let m = mounts();
        assert_eq!(
            m.resolve("a/b.txt").unwrap().0,
            PathBuf::from("/data/a/b.txt")
        );
        assert_eq!(
            m.resolve("/out/./x/../y").unwrap().0,
            PathBuf::from("/out/y")
        );
        for escape in ["../etc/passwd", "/etc/passwd", "/data/../etc", "/../../.."] {
            assert!(
                matches!(m.resolve(escape), Err(GuestError::Denied(_))),
                "{escape}"
            );
        }
    }

    #[test]
    fn writes_need_a_writable_mount_and_the_deepest_mount_wins() {
        let m = mounts();
        assert!(
            matches!(m.resolve_writable("/data/a"), Err(GuestError::Denied(msg)) if msg.contains("read-only"))
        );
        assert!(m.resolve_writable("/out/a").is_ok());
        assert!(m.resolve_writable("/data/cache/a").is_ok());
    }

    #[test]
    fn no_mounts_means_everything_is_denied() {
        let m = Mounts::parse("");
        assert!(
            matches!(m.resolve("a"), Err(GuestError::Denied(msg)) if msg.contains("no directory"))
        );
    }
}
