//! The host side of the `wasmnode:tool` world's imports: the tool's
//! settings (`config`) and its levelled log (`log`). A log record becomes a
//! `Log` task event, a line of the task's stderr (so it is kept with the
//! job's logs and counts against the output cap) and a node log line that
//! names the tool.

use super::bindings::tool::wasmnode::tool::{config, log};
use super::output::CappedPipe;
use super::sandbox::State;
use crate::executor::{LogLevel, TaskEvent, log_line};
use crate::mask::Mask;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a tool's imports answer from.
pub struct ToolHost {
    /// The tool's name, in its log lines.
    pub name: String,
    /// Its settings.
    pub config: BTreeMap<String, String>,
    /// Where its log records are kept.
    pub stderr: CappedPipe,
    /// The job's secrets, masked in its log records.
    pub mask: Option<Arc<Mask>>,
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
        let message = match &self.tool.mask {
            Some(mask) => mask.text(&bounded(message)),
            None => bounded(message),
        };
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        let host = &self.tool;
        let line = log_line(&host.name, level, &message);
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

/// Most bytes of one log record's message; a longer one is cut there.
const MAX_RECORD_BYTES: usize = 4 << 10;

/// `message`, cut to [`MAX_RECORD_BYTES`] on a character boundary (with `…`).
fn bounded(mut message: String) -> String {
    if message.len() > MAX_RECORD_BYTES {
        let mut end = MAX_RECORD_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_record_is_cut_on_a_character_boundary() {
        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(MAX_RECORD_BYTES);
        let cut = bounded(long);
        assert!(
            cut.len() <= MAX_RECORD_BYTES + '…'.len_utf8(),
            "{}",
            cut.len()
        );
        assert!(cut.ends_with('…'));
    }
}
