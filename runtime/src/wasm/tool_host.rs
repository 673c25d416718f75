//! The host side of the `wasmnode:tool` world's imports: the tool's
//! settings (`config`) and its levelled log (`log`). A log record becomes a
//! `Log` task event, a line of the task's stderr (so it is kept with the
//! job's logs and counts against the output cap) and a node log line that
//! names the tool.

use super::bindings::tool::wasmnode::tool::{config, log};
use super::output::CappedPipe;
use super::sandbox::State;
use crate::executor::{LogLevel, TaskEvent};
use std::collections::BTreeMap;

/// What a tool's imports answer from.
pub struct ToolHost {
    /// The tool's name, in its log lines.
    pub name: String,
    /// Its settings.
    pub config: BTreeMap<String, String>,
    /// Where its log records are kept.
    pub stderr: CappedPipe,
}

impl config::Host for State {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.tool.config.get(&key).cloned())
    }

    fn get_all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self
            .tool
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        let host = &self.tool;
        let line = format!(
            "[{} {}] {}\n",
            level.as_str().to_uppercase(),
            host.name,
            message.trim_end()
        );
        node_log(&host.name, level, &message);
        let tool = host.name.clone();
        host.stderr
            .record(line.as_bytes(), move |_| TaskEvent::Log {
                tool,
                level,
                message,
            })?;
        Ok(())
    }
}

/// The node's own log line for a record; the message is quoted (escaped),
/// so a tool cannot forge lines of the node's log.
fn node_log(tool: &str, level: LogLevel, message: &str) {
    match level {
        LogLevel::Trace => tracing::trace!(tool, message = ?message, "tool log"),
        LogLevel::Debug => tracing::debug!(tool, message = ?message, "tool log"),
        LogLevel::Info => tracing::info!(tool, message = ?message, "tool log"),
        LogLevel::Warn => tracing::warn!(tool, message = ?message, "tool log"),
        LogLevel::Error => tracing::error!(tool, message = ?message, "tool log"),
    }
}

/// The shared types need nothing from the host.
impl super::bindings::tool::wasmnode::tool::types::Host for State {}
