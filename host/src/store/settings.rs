//! The operator's settings of the job store (`[store]`).

use serde::{Deserialize, Serialize};

/// How the job store reaches the disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// When commits are forced to disk.
    pub sync: SyncMode,
}

/// When the store forces its commits to disk (fsync).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// Every commit, before anything it holds is acknowledged: an accepted
    /// job survives a crash of the node or of the machine.
    #[default]
    Always,
    /// At most once a second (and when the node stops): faster, but a
    /// crash or a failed write loses what was acknowledged since the last
    /// forced commit. For throwaway nodes and for measuring what durability
    /// costs.
    Periodic,
}
