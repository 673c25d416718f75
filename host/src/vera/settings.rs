//! The operator's settings of the Vera-style task API (`[vera]`).

use crate::config::error::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wasmnode_runtime::urls::UrlAllowlist;

/// The Vera-style task API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VeraSection {
    /// URL prefixes callbacks may go to (`*` for any); empty refuses callbacks.
    pub callback_allowlist: Vec<String>,
    /// Delivery attempts per callback (the first and the retries).
    pub callback_attempts: u32,
    /// Wait before the first retry, doubling after each, milliseconds.
    pub callback_backoff_ms: u64,
    /// Capabilities advertised in `/health` (default: derived from the node).
    pub capabilities: Vec<String>,
    /// How `sandboxed_execution` runs each language.
    pub languages: BTreeMap<String, LanguageRuntime>,
    /// Send callbacks to hosts beyond loopback over plain `http://`.
    pub allow_plain_http: bool,
}

impl Default for VeraSection {
    fn default() -> Self {
        Self {
            callback_allowlist: Vec::new(),
            callback_attempts: 4,
            callback_backoff_ms: 1000,
            capabilities: Vec::new(),
            languages: BTreeMap::new(),
            allow_plain_http: false,
        }
    }
}

impl VeraSection {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.callback_attempts == 0 {
            return Err(ConfigError::Invalid(
                "vera.callback_attempts must be at least 1".into(),
            ));
        }
        UrlAllowlist::new(&self.callback_allowlist, "")
            .map_err(|e| ConfigError::Invalid(format!("vera.callback_allowlist: {e}")))?;
        Ok(())
    }
}

/// How a language of `sandboxed_execution` runs here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LanguageRuntime {
    /// Container image (the code is the last argument of `command`).
    pub image: Option<String>,
    /// Command before the code, e.g. `["python3", "-c"]`.
    pub command: Vec<String>,
    /// WASI interpreter component (the code is the last of `args`).
    pub component: Option<String>,
    /// Arguments before the code, e.g. `["-c"]`.
    pub args: Vec<String>,
}
