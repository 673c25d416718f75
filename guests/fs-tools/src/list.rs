//! `list`: the entries of a mounted directory, optionally recursive.

use crate::Tool;
use crate::walk::{Flow, walk};
use guest_kit::{GuestError, Inputs, Mounts};
use serde_json::{Value, json};

/// At most this many entries are returned unless `max_entries` says otherwise.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// The `list` tool.
pub const TOOL: Tool = Tool {
    name: "list",
    description: "List the entries of a mounted directory",
    schema: r#"{"type":"object","additionalProperties":false,"properties":{"path":{"type":"string","default":".","description":"Directory to list"},"recursive":{"type":"boolean","default":false},"max_entries":{"type":"integer","minimum":1,"default":10000}}}"#,
    writes: false,
    run,
};

fn run(args: &Inputs, mounts: &Mounts) -> Result<Value, GuestError> {
    let path = args.text(&["path"]).unwrap_or_else(|| ".".into());
    let recursive = args.flag(&["recursive"], false)?;
    let max = args.count(&["max_entries"], DEFAULT_MAX_ENTRIES)?;
    let (root, _) = mounts.resolve(&path)?;
    let mut entries = Vec::new();
    let truncated = walk(&root, recursive, |e| {
        if entries.len() == max {
            return Flow::Stop;
        }
        entries.push(json!({
            "name": e.path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "path": e.path.display().to_string(),
            "type": e.kind.as_str(),
            "size": e.size,
        }));
        Flow::Continue
    })?;
    Ok(json!({"path": root.display().to_string(), "entries": entries, "truncated": truncated}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::{TestDir, args};

    #[test]
    fn lists_flat_and_recursive_in_name_order() {
        let dir = TestDir::new("list");
        dir.write("b.txt", "12");
        dir.write("a/c.txt", "x");
        let m = dir.mounts("ro");
        let out = run(&args(json!({})), &m).unwrap();
        let names: Vec<&str> = out["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b.txt"]);
        assert_eq!(out["entries"][1]["size"], 2);
        assert_eq!(out["entries"][0]["type"], "dir");
        let out = run(&args(json!({"recursive": true})), &m).unwrap();
        let names: Vec<&str> = out["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b.txt", "c.txt"]);
        let out = run(&args(json!({"recursive": true, "max_entries": 2})), &m).unwrap();
        assert_eq!(out["truncated"], true);
    }

    #[test]
    fn fails_clearly() {
        let dir = TestDir::new("list-fail");
        dir.write("f", "");
        let m = dir.mounts("ro");
        assert!(
            matches!(run(&args(json!({"path": "f"})), &m), Err(GuestError::InvalidInput(msg)) if msg.contains("not a directory"))
        );
        assert!(matches!(
            run(&args(json!({"path": "missing"})), &m),
            Err(GuestError::NotFound(_))
        ));
        assert!(matches!(
            run(&args(json!({"path": "/"})), &m),
            Err(GuestError::Denied(_))
        ));
    }
}
