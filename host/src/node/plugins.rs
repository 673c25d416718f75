//! Keeps a node's tools in step with its plugin directory: a `.wasm` (or its
//! `.wasm.sig`) added, replaced or removed there is loaded or dropped
//! without a restart, and each change bumps the node's tools version (MCP
//! sessions then send `notifications/tools/list_changed`).

use super::{Node, tool_registry};
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
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
            if event.is_ok_and(|e| changes_tools(&e)) {
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

/// Whether `event` can change the tools: a plugin file written, created,
/// renamed or removed. Opening or reading one is not a change (the reload
/// itself reads every plugin, and must not set off another).
fn changes_tools(event: &Event) -> bool {
    let change = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    change && event.paths.iter().any(|p| is_plugin_file(p))
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

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(path.into())
    }

    #[test]
    fn opening_or_reading_a_plugin_is_no_change_but_writing_one_is() {
        use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};
        let read = [
            AccessKind::Open(AccessMode::Read),
            AccessKind::Open(AccessMode::Any),
            AccessKind::Read,
            AccessKind::Close(AccessMode::Read),
            AccessKind::Any,
        ];
        for kind in read {
            assert!(
                !changes_tools(&event(EventKind::Access(kind), "/p/t.wasm")),
                "{kind:?}"
            );
        }
        let changed = [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
        ];
        for kind in changed {
            assert!(changes_tools(&event(kind, "/p/t.wasm")), "{kind:?}");
            assert!(!changes_tools(&event(kind, "/p/notes.txt")), "{kind:?}");
        }
    }
}
