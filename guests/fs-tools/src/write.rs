//! `file_write`: creates, replaces or appends to a file in a read-write mount.

use crate::Tool;
use base64::Engine;
use guest_kit::{GuestError, Inputs, Mounts};
use serde_json::{Value, json};
use std::io::Write;

/// The `file_write` tool.
pub const TOOL: Tool = Tool {
    name: "file_write",
    description: "Write a file in a read-write mounted directory",
    schema: r#"{"type":"object","required":["path","content"],"additionalProperties":false,"properties":{"path":{"type":"string"},"content":{"type":"string"},"encoding":{"enum":["utf-8","base64"],"default":"utf-8"},"append":{"type":"boolean","default":false},"create_dirs":{"type":"boolean","default":false,"description":"Create missing parent directories"}}}"#,
    writes: true,
    run,
};

fn run(args: &Inputs, mounts: &Mounts) -> Result<Value, GuestError> {
    let path = args.require_text(&["path"])?;
    let content = match args.raw("content") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(GuestError::InvalidInput(
                "missing required input `content` (a string)".into(),
            ));
        }
    };
    let bytes = match args.text(&["encoding"]).as_deref().unwrap_or("utf-8") {
        "utf-8" | "utf8" => content.into_bytes(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(content.as_bytes())
            .map_err(|e| GuestError::InvalidInput(format!("content is not valid base64: {e}")))?,
        other => {
            return Err(GuestError::InvalidInput(format!(
                "unknown encoding `{other}` (utf-8 or base64)"
            )));
        }
    };
    let append = args.flag(&["append"], false)?;
    let create_dirs = args.flag(&["create_dirs"], false)?;
    let resolved = mounts.resolve_writable(&path)?;
    let shown = resolved.display().to_string();
    if create_dirs && let Some(parent) = resolved.parent() {
        std::fs::create_dir_all(parent).map_err(|e| GuestError::io(&shown, &e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .append(append)
        .truncate(!append)
        .open(&resolved)
        .map_err(|e| GuestError::io(&shown, &e))?;
    file.write_all(&bytes)
        .map_err(|e| GuestError::io(&shown, &e))?;
    file.flush().map_err(|e| GuestError::io(&shown, &e))?;
    Ok(json!({"path": shown, "bytes_written": bytes.len(), "appended": append}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::{TestDir, args};

    #[test]
    fn writes_appends_and_creates_dirs() {
        let dir = TestDir::new("write");
        let m = dir.mounts("rw");
        run(
            &args(json!({"path": "out/a.txt", "content": "one", "create_dirs": true})),
            &m,
        )
        .unwrap();
        let out = run(
            &args(json!({"path": "out/a.txt", "content": "+two", "append": "true"})),
            &m,
        )
        .unwrap();
        assert_eq!(out["bytes_written"], 4);
        assert_eq!(
            std::fs::read_to_string(dir.root().join("out/a.txt")).unwrap(),
            "one+two"
        );
        run(
            &args(json!({"path": "b.bin", "content": "AJ+Slg==", "encoding": "base64"})),
            &m,
        )
        .unwrap();
        assert_eq!(
            std::fs::read(dir.root().join("b.bin")).unwrap(),
            [0u8, 159, 146, 150]
        );
    }

    #[test]
    fn refuses_read_only_mounts_escapes_and_bad_args() {
        let dir = TestDir::new("write-fail");
        let ro = dir.mounts("ro");
        assert!(
            matches!(run(&args(json!({"path": "a", "content": "x"})), &ro), Err(GuestError::Denied(m)) if m.contains("read-only"))
        );
        assert!(!dir.root().join("a").exists());
        let rw = dir.mounts("rw");
        assert!(matches!(
            run(&args(json!({"path": "../a", "content": "x"})), &rw),
            Err(GuestError::Denied(_))
        ));
        assert!(matches!(
            run(&args(json!({"path": "a"})), &rw),
            Err(GuestError::InvalidInput(_))
        ));
        assert!(matches!(
            run(
                &args(json!({"path": "a", "content": "%%", "encoding": "base64"})),
                &rw
            ),
            Err(GuestError::InvalidInput(_))
        ));
        assert!(matches!(
            run(&args(json!({"path": "no/such/dir/a", "content": "x"})), &rw),
            Err(GuestError::NotFound(_))
        ));
    }
}
