//! `file_edit`: exact search-and-replace in a file of a read-write mount.

use crate::Tool;
use guest_kit::{GuestError, Inputs, Mounts};
use serde_json::{Value, json};

/// The `file_edit` tool.
pub const TOOL: Tool = Tool {
    name: "file_edit",
    description: "Replace exact text in a file (fails if the text is absent or ambiguous)",
    schema: r#"{"type":"object","required":["path","old","new"],"additionalProperties":false,"properties":{"path":{"type":"string"},"old":{"type":"string","minLength":1,"description":"Exact text to replace"},"new":{"type":"string","description":"Replacement text"},"replace_all":{"type":"boolean","default":false,"description":"Replace every occurrence instead of requiring exactly one"}}}"#,
    writes: true,
    run,
};

fn run(args: &Inputs, mounts: &Mounts) -> Result<Value, GuestError> {
    let path = args.require_text(&["path"])?;
    let old = match args.raw("old") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(GuestError::InvalidInput(
                "`old` must be a non-empty string".into(),
            ));
        }
    };
    let new = match args.raw("new") {
        Some(Value::String(s)) => s.clone(),
        None => String::new(),
        Some(_) => return Err(GuestError::InvalidInput("`new` must be a string".into())),
    };
    let replace_all = args.flag(&["replace_all"], false)?;
    let resolved = mounts.resolve_writable(&path)?;
    let shown = resolved.display().to_string();
    let text = std::fs::read_to_string(&resolved).map_err(|e| GuestError::io(&shown, &e))?;
    let count = text.matches(old.as_str()).count();
    match count {
        0 => {
            return Err(GuestError::NotFound(format!(
                "the text to replace was not found in {shown}"
            )));
        }
        n if n > 1 && !replace_all => {
            return Err(GuestError::InvalidInput(format!(
                "the text to replace occurs {n} times in {shown}; include more context to make it unique or set replace_all"
            )));
        }
        _ => {}
    }
    let edited = if replace_all {
        text.replace(&old, &new)
    } else {
        text.replacen(&old, &new, 1)
    };
    std::fs::write(&resolved, &edited).map_err(|e| GuestError::io(&shown, &e))?;
    Ok(
        json!({"path": shown, "replacements": if replace_all { count } else { 1 }, "bytes": edited.len()}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::{TestDir, args};

    #[test]
    fn replaces_unique_text_and_all_on_request() {
        let dir = TestDir::new("edit");
        dir.write("a.rs", "let x = 1;\nlet y = 1;\n");
        let m = dir.mounts("rw");
        let out = run(
            &args(json!({"path": "a.rs", "old": "x = 1", "new": "x = 2"})),
            &m,
        )
        .unwrap();
        assert_eq!(out["replacements"], 1);
        let out = run(
            &args(json!({"path": "a.rs", "old": "= ", "new": ":= ", "replace_all": true})),
            &m,
        )
        .unwrap();
        assert_eq!(out["replacements"], 2);
        assert_eq!(
            std::fs::read_to_string(dir.root().join("a.rs")).unwrap(),
            "let x := 2;\nlet y := 1;\n"
        );
    }

    #[test]
    fn absent_or_ambiguous_text_fails_and_leaves_the_file() {
        let dir = TestDir::new("edit-fail");
        dir.write("a.txt", "aa");
        let m = dir.mounts("rw");
        assert!(
            matches!(run(&args(json!({"path": "a.txt", "old": "zz", "new": "y"})), &m), Err(GuestError::NotFound(msg)) if msg.contains("not found"))
        );
        assert!(
            matches!(run(&args(json!({"path": "a.txt", "old": "a", "new": "y"})), &m), Err(GuestError::InvalidInput(msg)) if msg.contains("2 times"))
        );
        assert!(matches!(
            run(&args(json!({"path": "a.txt", "old": "", "new": "y"})), &m),
            Err(GuestError::InvalidInput(_))
        ));
        assert!(matches!(
            run(
                &args(json!({"path": "a.txt", "old": "a", "new": "y"})),
                &dir.mounts("ro")
            ),
            Err(GuestError::Denied(_))
        ));
        assert_eq!(
            std::fs::read_to_string(dir.root().join("a.txt")).unwrap(),
            "aa"
        );
    }
}
