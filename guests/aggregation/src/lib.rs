//! The built-in `aggregation` task (SPLAI semantics): merges the objects in
//! `items_json` and the outputs of finished dependencies (`dep:<task>:output_uri`
//! inputs naming `artifact://` URIs) into one report, and records where every
//! merged key came from.
//!
//! Sources are merged in order: `items_json` items first (in array order),
//! then dependencies (sorted by task id). The first value of a key wins;
//! a later, different value for the same key is listed under `conflicts`, so
//! nothing is dropped silently. Dependency artifacts are read through the
//! read-only `/artifacts` mount, never through host paths. With
//! `strict_dependencies` (the default) a missing or unreadable dependency
//! fails the task; otherwise it is listed under `missing_dependencies`.

use guest_kit::{GuestError, Inputs, Mounts, kind_of};
use serde_json::{Map, Value, json};
use std::path::Path;

wit_bindgen::generate!({ path: "../../wit/task", world: "task" });

/// Guest path where the host mounts the artifact root (read-only).
pub const ARTIFACTS_MOUNT: &str = "/artifacts";
/// Keys of the SPLAI output envelope, kept out of the merged report.
const ENVELOPE_KEYS: &[&str] = &["job_id", "task_id", "type", "created_at"];
/// Supported `aggregation_mode` values.
const MODES: &[&str] = &["structured_report", "concat"];

struct Aggregation;

impl Guest for Aggregation {
    fn run(input: String) -> Result<String, TaskError> {
        let inputs = Inputs::parse(&input).map_err(to_task_error)?;
        run(&inputs, &Mounts::from_env(), Path::new(ARTIFACTS_MOUNT))
            .map(|v| v.to_string())
            .map_err(to_task_error)
    }
}

export!(Aggregation);

fn to_task_error(e: GuestError) -> TaskError {
    match e {
        GuestError::InvalidInput(m) | GuestError::NotFound(m) => TaskError::InvalidInput(m),
        GuestError::Denied(m) => TaskError::Denied(m),
        GuestError::Failed(m) => TaskError::Failed(m),
    }
}

/// One merged source: where it came from and its object.
struct Source {
    name: String,
    uri: Option<String>,
    data: Map<String, Value>,
}

/// Runs an aggregation over `inputs`, reading dependency artifacts from the
/// artifact root mounted at `artifacts` (one of `mounts`).
pub fn run(inputs: &Inputs, mounts: &Mounts, artifacts: &Path) -> Result<Value, GuestError> {
    let mode = inputs
        .text(&["aggregation_mode", "mode"])
        .unwrap_or_else(|| "structured_report".into());
    if !MODES.contains(&mode.as_str()) {
        return Err(GuestError::InvalidInput(format!(
            "unknown aggregation_mode `{mode}` (supported: {})",
            MODES.join(", ")
        )));
    }
    let strict = inputs.flag(&["strict_dependencies"], true)?;
    let required = inputs.names(&["required_fields_json", "required_fields"])?;

    let mut sources = item_sources(inputs)?;
    let mut missing = Vec::new();
    for (task, uri) in dependencies(inputs) {
        match read_artifact(mounts, artifacts, &uri) {
            Ok(data) => sources.push(Source {
                name: format!("dep:{task}"),
                uri: Some(uri),
                data,
            }),
            Err(e) if strict => {
                return Err(GuestError::InvalidInput(format!(
                    "dependency `{task}`: {e}"
                )));
            }
            Err(e) => missing.push(json!({"task_id": task, "uri": uri, "error": e.message()})),
        }
    }

    let listing: Vec<Value> = sources
        .iter()
        .map(|s| json!({"source": s.name, "uri": s.uri, "data": s.data}))
        .collect();
    let mut out = json!({
        "mode": mode,
        "item_count": sources.len(),
        "items": listing,
        "missing_dependencies": missing,
    });
    if mode == "structured_report" {
        let (report, provenance, conflicts) = merge(&sources);
        let absent: Vec<&str> = required
            .iter()
            .map(String::as_str)
            .filter(|f| report.get(*f).is_none_or(Value::is_null))
            .collect();
        if !absent.is_empty() {
            return Err(GuestError::InvalidInput(format!(
                "required fields missing from the aggregated report: {}",
                absent.join(", ")
            )));
        }
        out["report"] = Value::Object(report);
        out["provenance"] = Value::Object(provenance);
        out["conflicts"] = Value::Array(conflicts);
        out["required_fields"] = json!(required);
    }
    Ok(out)
}

fn item_sources(inputs: &Inputs) -> Result<Vec<Source>, GuestError> {
    let items: Vec<Value> = inputs.json(&["items_json", "items"])?.unwrap_or_default();
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(data) => Ok(Source {
                name: format!("items_json[{i}]"),
                uri: None,
                data,
            }),
            other => Err(GuestError::InvalidInput(format!(
                "items_json[{i}] must be an object, got {}",
                kind_of(&other)
            ))),
        })
        .collect()
}

/// `(task_id, uri)` for every `dep:<task_id>:output_uri` input, sorted by task id.
fn dependencies(inputs: &Inputs) -> Vec<(String, String)> {
    let mut deps: Vec<(String, String)> = inputs
        .entries()
        .filter_map(|(key, value)| {
            let task = key.strip_prefix("dep:")?.strip_suffix(":output_uri")?;
            Some((task.to_string(), value.as_str()?.to_string()))
        })
        .collect();
    deps.sort();
    deps
}

/// Reads the JSON object behind an `artifact://job/task/file` URI.
fn read_artifact(
    mounts: &Mounts,
    artifacts: &Path,
    uri: &str,
) -> Result<Map<String, Value>, GuestError> {
    let rest = uri
        .strip_prefix("artifact://")
        .ok_or_else(|| GuestError::InvalidInput(format!("`{uri}` is not an artifact:// URI")))?;
    if rest.is_empty() || rest.starts_with('/') || rest.split('/').any(|p| p == "..") {
        return Err(GuestError::Denied(format!(
            "`{uri}` does not name a file under the artifact root"
        )));
    }
    let wanted = artifacts.join(rest);
    let path = match mounts.resolve(&wanted.display().to_string()) {
        Ok((path, _)) if path.starts_with(artifacts) => path,
        _ => {
            return Err(GuestError::Denied(format!(
                "`{uri}`: the artifact root is not mounted"
            )));
        }
    };
    let bytes = std::fs::read(&path).map_err(|e| GuestError::io(uri, &e))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(mut data)) => {
            for key in ENVELOPE_KEYS {
                data.remove(*key);
            }
            Ok(data)
        }
        Ok(_) => Err(GuestError::InvalidInput(format!(
            "`{uri}` does not hold a JSON object"
        ))),
        Err(e) => Err(GuestError::InvalidInput(format!(
            "`{uri}` is not valid JSON: {e}"
        ))),
    }
}

type Merged = (Map<String, Value>, Map<String, Value>, Vec<Value>);

/// First value of each key wins; later different values become conflicts.
fn merge(sources: &[Source]) -> Merged {
    let mut report = Map::new();
    let mut provenance = Map::new();
    let mut conflicts: Vec<Value> = Vec::new();
    for source in sources {
        for (key, value) in &source.data {
            match report.get(key) {
                None => {
                    report.insert(key.clone(), value.clone());
                    provenance.insert(key.clone(), Value::String(source.name.clone()));
                }
                Some(kept) if kept == value => {}
                Some(kept) => {
                    let entry = conflicts.iter_mut().find(|c| c["field"] == *key);
                    let discarded = json!({"source": source.name, "value": value});
                    match entry {
                        Some(c) => c["discarded"]
                            .as_array_mut()
                            .expect("array")
                            .push(discarded),
                        None => conflicts.push(json!({
                            "field": key,
                            "kept": {"source": provenance[key], "value": kept},
                            "discarded": [discarded],
                        })),
                    }
                }
            }
        }
    }
    (report, provenance, conflicts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn inputs(v: Value) -> Inputs {
        Inputs::from_map(v.as_object().unwrap().clone())
    }

    /// A temporary artifact root holding `j1/<task>/output.json` files,
    /// mounted where the host mounts it.
    struct Root(PathBuf);

    impl Root {
        fn new(name: &str, files: &[(&str, &str)]) -> Self {
            let base = std::env::temp_dir().join(format!("agg-{name}-{}", std::process::id()));
            let root = base.join("artifacts");
            for (task, body) in files {
                std::fs::create_dir_all(root.join("j1").join(task)).unwrap();
                std::fs::write(root.join("j1").join(task).join("output.json"), body).unwrap();
            }
            std::fs::create_dir_all(&root).unwrap();
            Self(base)
        }

        /// Natively the root is mounted at its real path.
        fn mounts(&self) -> Mounts {
            Mounts::parse(&format!("{}:ro", self.0.join("artifacts").display()))
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn native(v: Value, root: &Root) -> Result<Value, GuestError> {
        run(&inputs(v), &root.mounts(), &root.0.join("artifacts"))
    }

    #[test]
    fn merges_items_and_dependencies_with_provenance() {
        let root = Root::new(
            "merge",
            &[
                (
                    "t1",
                    r#"{"job_id":"j1","task_id":"t1","type":"retrieval","created_at":"x","summary":"from t1","score":3}"#,
                ),
                ("t2", r#"{"owner":"ops","score":4}"#),
            ],
        );

        let out = native(json!({
            "items_json": "[{\"title\":\"Q3\",\"score\":3},{\"title\":\"Q3\",\"region\":\"eu\"}]",
            "dep:t2:output_uri": "artifact://j1/t2/output.json",
            "dep:t1:output_uri": "artifact://j1/t1/output.json",
            "required_fields": "title, summary",
        }), &root).unwrap();
        assert_eq!(
            out["report"],
            json!({"title":"Q3","score":3,"region":"eu","summary":"from t1","owner":"ops"})
        );
        assert_eq!(out["provenance"]["title"], "items_json[0]");
        assert_eq!(out["provenance"]["region"], "items_json[1]");
        assert_eq!(out["provenance"]["summary"], "dep:t1");
        assert_eq!(out["provenance"]["owner"], "dep:t2");
        assert_eq!(
            out["conflicts"],
            json!([{"field":"score","kept":{"source":"items_json[0]","value":3},"discarded":[{"source":"dep:t2","value":4}]}])
        );
        assert_eq!(out["item_count"], 4);
        assert!(
            out["report"].get("task_id").is_none(),
            "envelope keys are not merged"
        );
    }

    #[test]
    fn missing_dependencies_fail_when_strict_and_are_listed_otherwise() {
        let root = Root::new("missing", &[]);
        let base = json!({"items_json": "[{\"a\":1}]", "dep:gone:output_uri": "artifact://j1/gone/output.json"});
        let err = native(base.clone(), &root).unwrap_err();
        assert!(
            matches!(&err, GuestError::InvalidInput(m) if m.contains("dependency `gone`") && m.contains("no such file")),
            "{err:?}"
        );
        let mut lenient = base;
        lenient["strict_dependencies"] = json!("false");
        let out = native(lenient, &root).unwrap();
        assert_eq!(out["missing_dependencies"][0]["task_id"], "gone");
        assert_eq!(out["report"], json!({"a": 1}));
    }

    #[test]
    fn required_fields_and_bad_inputs_are_rejected() {
        let root = Root::new("bad", &[("t9", "[1,2]")]);
        let cases = [
            json!({"items_json": "[{\"a\":1}]", "required_fields_json": "[\"a\",\"b\"]"}),
            json!({"items_json": "[1]"}),
            json!({"items_json": "{oops"}),
            json!({"items_json": "[]", "mode": "median"}),
            json!({"items_json": "[]", "dep:t9:output_uri": "artifact://j1/t9/output.json"}),
            json!({"items_json": "[]", "dep:x:output_uri": "file:///etc/passwd"}),
        ];
        for case in cases {
            assert!(
                matches!(
                    native(case.clone(), &root),
                    Err(GuestError::InvalidInput(_))
                ),
                "{case}"
            );
        }
        for uri in ["artifact://../../etc/passwd", "artifact:///etc/passwd"] {
            let case = json!({"items_json": "[]", "dep:x:output_uri": uri});
            assert!(
                matches!(native(case, &root), Err(GuestError::InvalidInput(m)) if m.contains("does not name")),
                "{uri}"
            );
        }
    }

    #[test]
    fn concat_mode_lists_items_without_merging() {
        let root = Root::new("concat", &[]);
        let out = native(
            json!({"items_json": "[{\"a\":1},{\"a\":2}]", "aggregation_mode": "concat"}),
            &root,
        )
        .unwrap();
        assert_eq!(out["items"][1]["data"]["a"], 2);
        assert!(out.get("report").is_none());
    }
}
