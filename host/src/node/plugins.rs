//! Keeps a node's tools in step with its plugin directory: a `.wasm` (or its
//! `.wasm.sig`) added, replaced or removed there is loaded or dropped
//! without a restart, and each change bumps the node's tools version (MCP
//! sessions then send `notifications/tools/list_changed`). The directory
//! itself may be swapped for another (renamed over, or a symlink to it
//! retargeted), removed, or made again: a watch follows the directory it
//! was set on, not its path, so the node checks every [`RECHECK`] which
//! directory the path names and watches that one.

use super::{Node, tools_from};
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

/// How often the node checks which directory `node.plugin_dir` names.
const RECHECK: Duration = Duration::from_secs(2);

impl Node {
    /// Watches `node.plugin_dir`, if there is one, for as long as the node
    /// runs.
    pub fn spawn_plugin_watch(&self) {
        let Some(dir) = self.config.node.plugin_dir.clone() else {
            return;
        };
        let (sender, mut changes) = mpsc::unbounded_channel();
        let events_dir = dir.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            if event.is_ok_and(|e| changes_tools(&e, &events_dir)) {
                let _ = sender.send(());
            }
        });
        let mut watch = match watcher {
            Ok(watcher) => DirWatch {
                dir,
                watcher,
                watched: None,
            },
            Err(e) => {
                tracing::warn!(error = %e, "plugins are read at start only: cannot watch the plugin directory");
                return;
            }
        };
        watch.refresh();
        let config = self.config.clone();
        let router = self.router.clone();
        let version = self.tools_version.clone();
        tokio::spawn(async move {
            let mut recheck = tokio::time::interval(RECHECK);
            recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    change = changes.recv() => {
                        if change.is_none() {
                            return;
                        }
                        // One rescan for a burst of events (a copy is several).
                        while changes.try_recv().is_ok() {}
                        watch.refresh();
                    }
                    _ = recheck.tick() => {
                        if !watch.refresh() {
                            continue;
                        }
                    }
                }
                let dir = &watch.dir;
                let plugins = watch.watched.is_some().then_some(dir.as_path());
                if plugins.is_none() {
                    tracing::warn!(dir = %dir.display(), "the plugin directory is gone; its tools are dropped until it is back");
                }
                let before = router.tools().names();
                match tools_from(&config, &router.executors().wasm, plugins).await {
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

/// A watch on the directory a path names, moved when the path comes to
/// name another.
struct DirWatch {
    dir: PathBuf,
    watcher: RecommendedWatcher,
    /// The directory watched (device, inode); `None` while there is none.
    watched: Option<(u64, u64)>,
}

impl DirWatch {
    /// Watches the directory `dir` names now if it is not the one watched;
    /// whether it was another (then the plugins must be read again).
    fn refresh(&mut self) -> bool {
        let now = std::fs::metadata(&self.dir)
            .ok()
            .filter(|m| m.is_dir())
            .map(|m| (m.dev(), m.ino()));
        if now == self.watched {
            return false;
        }
        // Not watched any more if it was removed (its watch ended with it).
        let _ = self.watcher.unwatch(&self.dir);
        if now.is_some()
            && let Err(e) = self.watcher.watch(&self.dir, RecursiveMode::NonRecursive)
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot watch the plugin directory: changes in it are seen only when it is replaced");
        }
        self.watched = now;
        true
    }
}

/// Whether `event` can change the tools: a plugin file written, created,
/// renamed or removed, or the directory `dir` itself moved or removed.
/// Opening or reading one is not a change (the reload itself reads every
/// plugin, and must not set off another).
fn changes_tools(event: &Event, dir: &Path) -> bool {
    let change = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    change && event.paths.iter().any(|p| p == dir || is_plugin_file(p))
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

    fn dir() -> &'static Path {
        Path::new("/p")
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
                !changes_tools(&event(EventKind::Access(kind), "/p/t.wasm"), dir()),
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
            assert!(changes_tools(&event(kind, "/p/t.wasm"), dir()), "{kind:?}");
            assert!(
                !changes_tools(&event(kind, "/p/notes.txt"), dir()),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn the_directory_itself_moved_or_removed_is_a_change() {
        use notify::event::{ModifyKind, RemoveKind, RenameMode};
        let moved = EventKind::Modify(ModifyKind::Name(RenameMode::From));
        let removed = EventKind::Remove(RemoveKind::Folder);
        for kind in [moved, removed] {
            assert!(changes_tools(&event(kind, "/p"), dir()), "{kind:?}");
            assert!(!changes_tools(&event(kind, "/q"), dir()), "{kind:?}");
        }
        let opened = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(!changes_tools(&event(opened, "/p"), dir()));
    }
}
