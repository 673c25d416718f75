//! Node profiles: named sets of defaults for a kind of machine. A profile
//! only fills in what the file, the environment and the flags left unset.

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// The kind of machine the defaults are for (`node.profile`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// A server: one slot per core, a large instance pool and queue.
    #[default]
    Standard,
    /// A small board (Raspberry Pi class, 1–4 GiB): two slots, a small
    /// instance pool, short queues and bounded queued bytes.
    Edge,
}

/// What the edge profile sets, where nothing else did.
#[rustfmt::skip]
const EDGE: &[(&[&str], i64)] = &[
    (&["scheduler", "max_concurrent_jobs"], 2),
    (&["scheduler", "queue_capacity"], 256),
    (&["scheduler", "max_queued_bytes"], 64 << 20),
    (&["scheduler", "retention_max_jobs"], 10_000),
    (&["wasm", "pool_instances"], 16),
    (&["blobs", "max_total_mb"], 1024),
    (&["retrieval", "index_cache_mb"], 64),
];

impl Profile {
    /// Reads `node.profile` from the merged settings (standard when unset).
    pub fn of(table: &Table) -> Result<Self, String> {
        match table.get("node").and_then(|n| n.get("profile")) {
            None => Ok(Self::Standard),
            Some(value) => value
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| format!("node.profile: {}", e.message())),
        }
    }

    /// Fills this profile's defaults into `table` where it has no value.
    pub fn apply(self, table: &mut Table) {
        let defaults = match self {
            Self::Standard => return,
            Self::Edge => EDGE,
        };
        for (key, value) in defaults {
            super::env::set_default(table, key, Value::Integer(*value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_edge_profile_fills_only_what_was_left_unset() {
        let env = |name: &str| (name == "WASMNODE_PROFILE").then(|| "edge".to_string());
        let flags = [(&["scheduler", "max_concurrent_jobs"][..], Value::Integer(1))];
        let config = Config::load(None, env, &flags).unwrap();
        assert_eq!(config.node.profile, Profile::Edge);
        assert_eq!(config.scheduler.max_concurrent_jobs, 1, "a flag wins");
        assert_eq!(config.scheduler.queue_capacity, 256);
        assert_eq!(config.wasm.pool_instances, 16);
        let standard = Config::load(None, |_| None, &[]).unwrap();
        assert_eq!(standard.node.profile, Profile::Standard);
        assert_eq!(standard.wasm.pool_instances, 256);
    }

    #[test]
    fn an_unknown_profile_is_refused_by_name() {
        let env = |name: &str| (name == "WASMNODE_PROFILE").then(|| "tiny".to_string());
        let e = Config::load(None, env, &[]).unwrap_err().to_string();
        assert!(e.contains("node.profile") && e.contains("edge"), "{e}");
    }
}
