//! `find`: paths under a mounted directory that match a glob.

use crate::Tool;
use crate::walk::{Flow, Kind, walk};
use glob::{MatchOptions, Pattern};
use guest_kit::{GuestError, Inputs, Mounts};
use serde_json::{Value, json};

/// At most this many paths are returned unless `max_results` says otherwise.
pub const DEFAULT_MAX_RESULTS: usize = 10_000;

/// The `find` tool.
pub const TOOL: Tool = Tool {
    name: "find",
    description: "Find files and directories whose path matches a glob",
    schema: r#"{"type":"object","required":["glob"],"additionalProperties":false,"properties":{"glob":{"type":"string","description":"Glob matched against the path relative to `path`, e.g. **/*.rs"},"path":{"type":"string","default":"."},"max_results":{"type":"integer","minimum":1,"default":10000}}}"#,
    writes: false,
    run,
};

fn run(args: &Inputs, mounts: &Mounts) -> Result<Value, GuestError> {
    let glob = args.require_text(&["glob", "pattern"])?;
    let pattern = Pattern::new(&glob)
        .map_err(|e| GuestError::InvalidInput(format!("invalid glob `{glob}`: {e}")))?;
    let path = args.text(&["path"]).unwrap_or_else(|| ".".into());
    let max = args.count(&["max_results"], DEFAULT_MAX_RESULTS)?;
    let (root, _) = mounts.resolve(&path)?;
    let options = MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut paths = Vec::new();
    let truncated = walk(&root, true, |e| {
        let Ok(rel) = e.path.strip_prefix(&root) else {
            return Flow::Continue;
        };
        if pattern.matches_path_with(rel, options) {
            if paths.len() == max {
                return Flow::Stop;
            }
            let kind = if e.kind == Kind::Dir {
                "dir"
            } else {
                e.kind.as_str()
            };
            paths.push(json!({"path": e.path.display().to_string(), "type": kind}));
        }
        Flow::Continue
    })?;
    Ok(
        json!({"root": root.display().to_string(), "glob": glob, "matches": paths, "truncated": truncated}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::{TestDir, args};

    fn found(out: &Value) -> Vec<String> {
        out["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["path"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn matches_globs_recursively() {
        let dir = TestDir::new("find");
        dir.write("src/main.rs", "");
        dir.write("src/util/mod.rs", "");
        dir.write("README.md", "");
        let m = dir.mounts("ro");
        let out = run(&args(json!({"glob": "**/*.rs"})), &m).unwrap();
        assert_eq!(
            found(&out),
            [dir.path("src/main.rs"), dir.path("src/util/mod.rs")]
        );
        let out = run(&args(json!({"glob": "*.rs", "path": "src"})), &m).unwrap();
        assert_eq!(found(&out), [dir.path("src/main.rs")], "* does not cross /");
        let out = run(&args(json!({"glob": "*.md"})), &m).unwrap();
        assert_eq!(found(&out), [dir.path("README.md")]);
    }

    #[test]
    fn rejects_bad_globs_and_escapes() {
        let dir = TestDir::new("find-fail");
        let m = dir.mounts("ro");
        assert!(matches!(
            run(&args(json!({"glob": "[a"})), &m),
            Err(GuestError::InvalidInput(_))
        ));
        assert!(matches!(
            run(&args(json!({"glob": "*", "path": "/etc"})), &m),
            Err(GuestError::Denied(_))
        ));
    }
}
