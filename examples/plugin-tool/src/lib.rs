//! `word_count`: an example wasmnode plugin tool. It counts the lines, words
//! and bytes of a file in a directory the caller mounts.
//!
//! A tool implements the `wasmnode:tool` world (`wit/tool/tool.wit`):
//! `describe()` says who it is, what arguments it takes (a JSON Schema) and
//! what it needs; `invoke(args)` takes a JSON object and returns a JSON
//! document or a typed error. The host mounts only what the caller asked
//! for, read-only unless the tool declares `writes`, with no network. The
//! tool reads its settings through `config` (the operator's
//! `[tools.word_count.config]`) and logs through `log`.

wit_bindgen::generate!({ path: "../../wit/tool", world: "tool" });

use serde_json::{Value, json};
use wasmnode::tool::log::{Level, log};
use wasmnode::tool::{config, types::Capabilities};

/// Largest file counted unless the `max_bytes` setting says otherwise.
const DEFAULT_MAX_BYTES: u64 = 10 << 20;

struct WordCount;

impl Guest for WordCount {
    fn describe() -> ToolInfo {
        ToolInfo {
            name: "word_count".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Count the lines, words and bytes of a file".into(),
            args_schema:
                r#"{"type":"object","required":["path"],"properties":{"path":{"type":"string"}}}"#
                    .into(),
            capabilities: Capabilities {
                mounts: Vec::new(),
                writes: false,
            },
        }
    }

    fn invoke(args: String) -> Result<String, ToolError> {
        let args: Value =
            serde_json::from_str(&args).map_err(|e| ToolError::InvalidArgs(e.to_string()))?;
        let path = args["path"]
            .as_str()
            .ok_or_else(|| ToolError::InvalidArgs("`path` (a string) is required".into()))?;
        let max_bytes = match config::get("max_bytes") {
            Some(text) => text.parse().map_err(|_| {
                ToolError::InvalidArgs(format!("setting max_bytes `{text}` is not a number"))
            })?,
            None => DEFAULT_MAX_BYTES,
        };
        let io_error = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => ToolError::NotFound(format!("{path}: no such file")),
            std::io::ErrorKind::PermissionDenied => ToolError::Denied(format!("{path}: {e}")),
            _ => ToolError::Failed(format!("{path}: {e}")),
        };
        let size = std::fs::metadata(path).map_err(io_error)?.len();
        if size > max_bytes {
            return Err(ToolError::InvalidArgs(format!(
                "{path} is {size} bytes, over max_bytes ({max_bytes})"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io_error)?;
        log(Level::Info, &format!("counted {path} ({size} bytes)"));
        Ok(count(path, &text).to_string())
    }
}

/// The counts of `text`, read from `path`.
fn count(path: &str, text: &str) -> Value {
    json!({
        "path": path,
        "lines": text.lines().count(),
        "words": text.split_whitespace().count(),
        "bytes": text.len(),
    })
}

export!(WordCount);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_words_and_bytes() {
        assert_eq!(
            count("/p", "one two\nthree\n"),
            json!({"path": "/p", "lines": 2, "words": 3, "bytes": 14})
        );
    }
}
