//! A sorted, depth-first directory walk shared by `grep`, `find` and `list`.
//! Symbolic links are reported but never followed, so a walk cannot loop.

use guest_kit::GuestError;
use std::path::{Path, PathBuf};

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

impl Kind {
    /// The name used in tool output.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Other => "other",
        }
    }
}

/// One entry met by [`walk`].
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: Kind,
    pub size: u64,
}

/// Whether the walk should go on after an entry.
pub enum Flow {
    Continue,
    Stop,
}

/// Visits the entries under `root` in name order (children right after their
/// directory), descending only when `recursive`. Returns `true` if `visit`
/// stopped the walk early.
pub fn walk(
    root: &Path,
    recursive: bool,
    mut visit: impl FnMut(Entry) -> Flow,
) -> Result<bool, GuestError> {
    let shown = root.display().to_string();
    let meta = std::fs::metadata(root).map_err(|e| GuestError::io(&shown, &e))?;
    if !meta.is_dir() {
        return Err(GuestError::InvalidInput(format!(
            "{shown} is not a directory"
        )));
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let shown = dir.display().to_string();
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| GuestError::io(&shown, &e))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let kind = if file_type.is_symlink() {
                Kind::Symlink
            } else if file_type.is_dir() {
                Kind::Dir
            } else if file_type.is_file() {
                Kind::File
            } else {
                Kind::Other
            };
            let size = if kind == Kind::File {
                entry.metadata().map(|m| m.len()).unwrap_or(0)
            } else {
                0
            };
            let path = entry.path();
            if kind == Kind::Dir && recursive {
                subdirs.push(path.clone());
            }
            if let Flow::Stop = visit(Entry { path, kind, size }) {
                return Ok(true);
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(false)
}
