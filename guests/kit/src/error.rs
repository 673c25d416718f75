//! The guest-side error type that every built-in guest returns.

use std::fmt;
use std::io;

/// Why a guest failed, in the host's terms (each maps onto a WIT error case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestError {
    /// The input or arguments were malformed or missing something.
    InvalidInput(String),
    /// A named file, directory or text does not exist.
    NotFound(String),
    /// The sandbox refused the operation (outside the mounts, read-only).
    Denied(String),
    /// Anything else.
    Failed(String),
}

impl GuestError {
    /// Classifies an I/O error on `what` (usually a path) by its kind.
    pub fn io(what: &str, err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::NotFound => Self::NotFound(format!("{what}: no such file or directory")),
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                Self::Denied(format!("{what}: {err}"))
            }
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
                Self::InvalidInput(format!("{what}: {err}"))
            }
            _ => Self::Failed(format!("{what}: {err}")),
        }
    }

    /// The human message without the case name.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidInput(m) | Self::NotFound(m) | Self::Denied(m) | Self::Failed(m) => m,
        }
    }
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for GuestError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified_by_kind() {
        let nf = io::Error::from(io::ErrorKind::NotFound);
        assert!(
            matches!(GuestError::io("/a", &nf), GuestError::NotFound(m) if m.starts_with("/a"))
        );
        let pd = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(matches!(GuestError::io("/a", &pd), GuestError::Denied(_)));
        let other = io::Error::other("boom");
        assert!(
            matches!(GuestError::io("/a", &other), GuestError::Failed(m) if m.contains("boom"))
        );
    }
}
