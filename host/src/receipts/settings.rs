//! The operator's settings of receipts (`[receipts]`).

use serde::{Deserialize, Serialize};

/// Whether the node signs a receipt of every job it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiptsSection {
    /// Sign a receipt of every job that runs (default true). Off, jobs have
    /// none (`GET /jobs/{id}/receipt` answers 404 `NO_RECEIPT`); the node
    /// keeps its identity either way.
    pub enabled: bool,
}

impl Default for ReceiptsSection {
    fn default() -> Self {
        Self { enabled: true }
    }
}
