//! The operator's `[mcp]` settings: which tools MCP clients see and which
//! host directories each call gets. A call never names host paths; it gets
//! exactly the mounts set here.

use crate::job::JobMount;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wasmnode_runtime::{Mount, MountSource};

/// `[mcp]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpSection {
    /// Tools served; empty: every component tool of the node.
    pub tools: Vec<String>,
    /// Directories every call gets, as `HOST:GUEST[:ro|rw]` (read-only
    /// unless `rw`).
    pub mounts: Vec<String>,
    /// Per-tool settings (`[mcp.tool.NAME]`), over the ones above.
    pub tool: BTreeMap<String, McpToolSection>,
    /// Wall-clock limit of one call in seconds (default: the node's).
    pub timeout_secs: Option<f64>,
}

/// `[mcp.tool.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpToolSection {
    /// Directories this tool's calls get instead of `[mcp] mounts`.
    pub mounts: Option<Vec<String>>,
}

impl McpSection {
    /// Checks every mount entry.
    pub fn validate(&self) -> Result<(), String> {
        parse(&self.mounts).map_err(|e| format!("mcp.mounts: {e}"))?;
        for (name, tool) in &self.tool {
            if let Some(mounts) = &tool.mounts {
                parse(mounts).map_err(|e| format!("mcp.tool.{name}.mounts: {e}"))?;
            }
        }
        Ok(())
    }

    /// Whether MCP clients see tool `name`.
    pub fn serves(&self, name: &str) -> bool {
        self.tools.is_empty() || self.tools.iter().any(|t| t == name)
    }

    /// The mounts a call of tool `name` gets.
    pub fn mounts_for(&self, name: &str) -> Result<Vec<JobMount>, String> {
        let specs = self
            .tool
            .get(name)
            .and_then(|t| t.mounts.as_ref())
            .unwrap_or(&self.mounts);
        parse(specs)
    }
}

/// `HOST:GUEST[:ro|rw]` entries as job mounts of host directories.
fn parse(specs: &[String]) -> Result<Vec<JobMount>, String> {
    specs
        .iter()
        .map(|spec| {
            let mount = Mount::parse(spec)?;
            let MountSource::Host(host) = mount.source else {
                return Err(format!("`{spec}` must mount a host directory"));
            };
            if !host.is_absolute() {
                return Err(format!("`{spec}`: the host path must be absolute"));
            }
            Ok(JobMount {
                source: host.display().to_string(),
                target: mount.guest_path,
                mode: if mount.writable { "rw" } else { "ro" }.into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tools_own_mounts_replace_the_defaults() {
        let section: McpSection = toml::from_str(
            "mounts = [\"/srv/repo:/src\"]\n[tool.file_write]\nmounts = [\"/srv/out:/out:rw\"]\n",
        )
        .unwrap();
        section.validate().unwrap();
        let grep = section.mounts_for("grep").unwrap();
        assert_eq!(
            (
                grep[0].source.as_str(),
                grep[0].target.as_str(),
                grep[0].mode.as_str()
            ),
            ("/srv/repo", "/src", "ro")
        );
        let write = section.mounts_for("file_write").unwrap();
        assert_eq!(write[0].mode, "rw");
        assert!(
            section.serves("anything"),
            "an empty list serves every tool"
        );
    }

    #[test]
    fn a_malformed_mount_is_refused_naming_its_setting() {
        let section = McpSection {
            tool: BTreeMap::from([(
                "grep".into(),
                McpToolSection {
                    mounts: Some(vec!["relative".into()]),
                },
            )]),
            ..McpSection::default()
        };
        let err = section.validate().unwrap_err();
        assert!(err.starts_with("mcp.tool.grep.mounts:"), "{err}");
    }
}
