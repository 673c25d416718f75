//! `file_read`: returns a file's content (UTF-8, or base64 for binary data).

use crate::Tool;
use base64::Engine;
use guest_kit::{GuestError, Inputs, Mounts};
use serde_json::{Value, json};
use std::io::{Read, Seek, SeekFrom};

/// At most this many bytes are returned unless `max_bytes` says otherwise.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

/// The `file_read` tool.
pub const TOOL: Tool = Tool {
    name: "file_read",
    description: "Read a file from a mounted directory",
    schema: r#"{"type":"object","required":["path"],"additionalProperties":false,"properties":{"path":{"type":"string","description":"File to read (absolute guest path or relative to the first mount)"},"offset":{"type":"integer","minimum":0,"description":"Byte offset to start at"},"max_bytes":{"type":"integer","minimum":0,"description":"Most bytes to return (default 1 MiB)"}}}"#,
    writes: false,
    run,
};

fn run(args: &Inputs, mounts: &Mounts) -> Result<Value, GuestError> {
    let path = args.require_text(&["path"])?;
    let offset = args.count(&["offset"], 0)?;
    let max_bytes = args.count(&["max_bytes"], DEFAULT_MAX_BYTES)?;
    let (resolved, _) = mounts.resolve(&path)?;
    let shown = resolved.display().to_string();
    let mut file = std::fs::File::open(&resolved).map_err(|e| GuestError::io(&shown, &e))?;
    let meta = file.metadata().map_err(|e| GuestError::io(&shown, &e))?;
    if meta.is_dir() {
        return Err(GuestError::InvalidInput(format!(
            "{shown} is a directory (use `list`)"
        )));
    }
    let size = meta.len();
    file.seek(SeekFrom::Start(offset as u64))
        .map_err(|e| GuestError::io(&shown, &e))?;
    let mut bytes = Vec::new();
    file.take(max_bytes as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| GuestError::io(&shown, &e))?;
    let truncated = (offset as u64).saturating_add(bytes.len() as u64) < size;
    let returned = bytes.len();
    let (content, encoding) = match String::from_utf8(bytes) {
        Ok(text) => (text, "utf-8"),
        Err(e) => (
            base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
            "base64",
        ),
    };
    Ok(json!({
        "path": shown,
        "content": content,
        "encoding": encoding,
        "bytes": returned,
        "size": size,
        "offset": offset,
        "truncated": truncated,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::{TestDir, args};

    #[test]
    fn reads_text_ranges_and_binary() {
        let dir = TestDir::new("read");
        dir.write("notes/a.txt", "hello world");
        std::fs::write(dir.root().join("b.bin"), [0u8, 159, 146, 150]).unwrap();
        let m = dir.mounts("ro");
        let out = run(&args(json!({"path": "notes/a.txt"})), &m).unwrap();
        assert_eq!(out["content"], "hello world");
        assert_eq!(out["truncated"], false);
        let out = run(
            &args(json!({"path": dir.path("notes/a.txt"), "offset": 6, "max_bytes": 3})),
            &m,
        )
        .unwrap();
        assert_eq!(out["content"], "wor");
        assert_eq!(out["truncated"], true);
        let out = run(&args(json!({"path": "b.bin"})), &m).unwrap();
        assert_eq!(out["encoding"], "base64");
        assert_eq!(out["content"], "AJ+Slg==");
    }

    #[test]
    fn fails_clearly() {
        let dir = TestDir::new("read-fail");
        dir.write("d/x", "");
        let m = dir.mounts("ro");
        assert!(matches!(
            run(&args(json!({"path": "nope.txt"})), &m),
            Err(GuestError::NotFound(_))
        ));
        assert!(
            matches!(run(&args(json!({"path": "d"})), &m), Err(GuestError::InvalidInput(msg)) if msg.contains("directory"))
        );
        assert!(matches!(
            run(&args(json!({"path": "../../etc/passwd"})), &m),
            Err(GuestError::Denied(_))
        ));
        assert!(matches!(
            run(&args(json!({})), &m),
            Err(GuestError::InvalidInput(_))
        ));
    }
}
