//! Keeps a node's tools in step with its plugin directory: a `.wasm` (or its
//! `.wasm.sig`) added, replaced or removed there is loaded or dropped
//! without a restart, and each change bumps the node's tools version (MCP
//! sessions then send `notifications/tools/list_changed`).

use super::{Node, tool_registry};
use notify::{Event, RecursiveMode, Watcher};
use std::path::Path;
use tokio::sync::mpsc;

impl Node {
    /// Watches `node.plugin_dir`, if there is one, for as long as the node
    /// runs.
    pub fn spawn_plugin_watch(&self) {
        let Some(dir) = self.config.node.plugin_dir.clone() else {
            return;
        };
        let (sender, mut changes) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            if event.is_ok_and(|e| e.paths.iter().any(|p| is_plugin_file(p))) {
                let _ = sender.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "plugins are read at start only: cannot watch the plugin directory");
                return;
            }
        };
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "plugins are read at start only: cannot watch the plugin directory");
            return;
        }
        let config = self.config.clone();
        let router = self.router.clone();
        let version = self.tools_version.clone();
        tokio::spawn(async move {
            let _watching = watcher;
            while changes.recv().await.is_some() {
                // One rescan for a burst of events (a copy is several).
                while changes.try_recv().is_ok() {}
                let before = router.tools().names();
                match tool_registry(&config, &router.executors().wasm).await {
                    Ok(tools) => {
                        let after = tools.names();
                        router.replace_tools(tools);
                        tracing::info!(dir = %dir.display(), tools = after.len(), "plugin directory changed; tools reloaded");
                        if before != after {
                            version.send_modify(|v| *v += 1);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "plugin directory changed but cannot be read")
                    }
                }
            }
        });
    }
}

/// Whether a change to `path` can change the tools.
fn is_plugin_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.ends_with(".wasm") || name.ends_with(".wasm.sig")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_components_and_their_signatures_count() {
        assert!(is_plugin_file(Path::new("/p/tool.wasm")));
        assert!(is_plugin_file(Path::new("/p/tool.wasm.sig")));
        assert!(!is_plugin_file(Path::new("/p/tool.wasm.part")));
        assert!(!is_plugin_file(Path::new("/p/README")));
    }
}
