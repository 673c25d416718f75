//! `grep`: lines matching a regular expression, with line numbers.

use crate::Tool;
use crate::walk::{Flow, Kind, walk};
use guest_kit::{GuestError, Inputs, Mounts};
use regex::RegexBuilder;
use serde_json::{Value, json};
use std::path::Path;

/// At most this many matches are returned unless `max_matches` says otherwise.
pub const DEFAULT_MAX_MATCHES: usize = 1_000;
/// Files larger than this are skipped.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The `grep` tool.
pub const TOOL: Tool = Tool {
    name: "grep",
    description: "Search files for lines matching a regular expression",
    schema: r#"{"type":"object","required":["pattern"],"additionalProperties":false,"properties":{"pattern":{"type":"string","description":"Regular expression (Rust regex syntax)"},"path":{"type":"string","default":".","description":"File or directory to search"},"recursive":{"type":"boolean","default":true},"ignore_case":{"type":"boolean","default":false},"glob":{"type":"string","description":"Only search files whose name matches this glob"},"max_matches":{"type":"integer","minimum":1,"default":1000}}}"#,
    writes: false,
    run,
};

fn run(args: &Inputs, mounts: &Mounts) -> Result<Value, GuestError> {
    let pattern = args.require_text(&["pattern"])?;
    let regex = RegexBuilder::new(&pattern)
        .case_insensitive(args.flag(&["ignore_case"], false)?)
        .build()
        .map_err(|e| GuestError::InvalidInput(format!("invalid pattern: {e}")))?;
    let name_glob = match args.text(&["glob"]) {
        Some(g) => Some(
            glob::Pattern::new(&g)
                .map_err(|e| GuestError::InvalidInput(format!("invalid glob `{g}`: {e}")))?,
        ),
        None => None,
    };
    let path = args.text(&["path"]).unwrap_or_else(|| ".".into());
    let recursive = args.flag(&["recursive"], true)?;
    let max = args.count(&["max_matches"], DEFAULT_MAX_MATCHES)?;
    let (root, _) = mounts.resolve(&path)?;
    let mut matches = Vec::new();
    let mut files = 0usize;
    let mut search = |file: &Path| -> Flow {
        if name_glob.as_ref().is_some_and(|g| {
            !file
                .file_name()
                .is_some_and(|n| g.matches(&n.to_string_lossy()))
        }) {
            return Flow::Continue;
        }
        let Some(text) = read_text(file) else {
            return Flow::Continue;
        };
        files += 1;
        for (i, line) in text.lines().enumerate() {
            if regex.is_match(line) {
                if matches.len() == max {
                    return Flow::Stop;
                }
                matches
                    .push(json!({"path": file.display().to_string(), "line": i + 1, "text": line}));
            }
        }
        Flow::Continue
    };
    let shown = root.display().to_string();
    let meta = std::fs::metadata(&root).map_err(|e| GuestError::io(&shown, &e))?;
    let truncated = if meta.is_file() {
        matches!(search(&root), Flow::Stop)
    } else {
        walk(&root, recursive, |e| {
            if e.kind == Kind::File && e.size <= MAX_FILE_BYTES {
                search(&e.path)
            } else {
                Flow::Continue
            }
        })?
    };
    Ok(
        json!({"pattern": pattern, "path": shown, "matches": matches, "files_searched": files, "truncated": truncated}),
    )
}

/// The file's text, or `None` for unreadable or binary (NUL-containing, non-UTF-8) files.
fn read_text(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.iter().take(8192).any(|b| *b == 0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::{TestDir, args};

    #[test]
    fn finds_lines_with_numbers_recursively() {
        let dir = TestDir::new("grep");
        dir.write("a.txt", "alpha\nbeta\nALPHA beta\n");
        dir.write("sub/b.log", "nothing\nalphabet\n");
        std::fs::write(dir.root().join("bin"), b"alpha\0").unwrap();
        let m = dir.mounts("ro");
        let out = run(&args(json!({"pattern": "^alpha"})), &m).unwrap();
        let hits: Vec<(String, u64)> = out["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["path"].as_str().unwrap().to_string(),
                    h["line"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(hits, [(dir.path("a.txt"), 1), (dir.path("sub/b.log"), 2)]);
        let out = run(
            &args(json!({"pattern": "alpha", "ignore_case": true, "recursive": false})),
            &m,
        )
        .unwrap();
        assert_eq!(
            out["matches"].as_array().unwrap().len(),
            2,
            "binary file and subdir skipped"
        );
        let out = run(&args(json!({"pattern": "a", "glob": "*.log"})), &m).unwrap();
        assert_eq!(out["files_searched"], 1);
        let out = run(
            &args(json!({"pattern": "beta", "path": "a.txt", "max_matches": 1})),
            &m,
        )
        .unwrap();
        assert_eq!(out["truncated"], true);
    }

    #[test]
    fn bad_patterns_and_escapes_fail() {
        let dir = TestDir::new("grep-fail");
        let m = dir.mounts("ro");
        assert!(
            matches!(run(&args(json!({"pattern": "("})), &m), Err(GuestError::InvalidInput(msg)) if msg.contains("invalid pattern"))
        );
        assert!(matches!(
            run(&args(json!({"pattern": "x", "path": "/"})), &m),
            Err(GuestError::Denied(_))
        ));
    }
}
