//! A tool's contract, checked by the host before the guest runs: what it
//! says it is (`ToolDescription`), the arguments its JSON Schema admits,
//! and the directories it needs and may write.

use crate::failure::TaskFailure;
use crate::task::{Mount, MountSource};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;

/// A tool's self-description (from its `describe` export), with its
/// argument schema compiled once.
#[derive(Debug, Clone, Serialize)]
pub struct ToolDescription {
    /// Machine name.
    pub name: String,
    /// Version.
    pub version: String,
    /// One-line description.
    pub description: String,
    /// JSON Schema of its arguments.
    pub args_schema: Value,
    /// Directories it needs.
    pub mounts: Vec<MountNeed>,
    /// Whether it writes at all (if not, every mount is read-only).
    pub writes: bool,
    /// `args_schema`, compiled (`None` when the tool declares none).
    #[serde(skip)]
    validator: Option<Arc<jsonschema::Validator>>,
}

/// A directory a tool needs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MountNeed {
    /// Where the tool expects it.
    pub path: String,
    /// Whether it writes there.
    pub write: bool,
}

/// Most schema violations named in one error.
const MAX_NAMED: usize = 5;

impl ToolDescription {
    /// The description of tool `name`; its `args_schema` must be valid JSON
    /// Schema (or null, for none).
    pub fn new(
        name: String,
        version: String,
        description: String,
        args_schema: Value,
        mounts: Vec<MountNeed>,
        writes: bool,
    ) -> Result<Self, TaskFailure> {
        let validator = match args_schema {
            Value::Null => None,
            ref schema => Some(Arc::new(jsonschema::validator_for(schema).map_err(
                |e| {
                    TaskFailure::invalid_input(format!(
                        "tool `{name}` declares an args schema that is not valid JSON Schema: {e}"
                    ))
                },
            )?)),
        };
        Ok(Self {
            name,
            version,
            description,
            args_schema,
            mounts,
            writes,
            validator,
        })
    }

    /// Checks `args` against the tool's schema, after reading text that
    /// stands for a number or a boolean the schema asks for as one (SPLAI
    /// sends every input as text). The error names each failing field.
    pub fn check_args(&self, args: &mut Value) -> Result<(), TaskFailure> {
        let Some(validator) = &self.validator else {
            return Ok(());
        };
        if let (Some(fields), Some(properties)) = (
            args.as_object_mut(),
            self.args_schema
                .get("properties")
                .and_then(Value::as_object),
        ) {
            coerce(fields, properties);
        }
        let problems: Vec<String> = validator
            .iter_errors(args)
            .take(MAX_NAMED)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".into() } else { at };
                format!("{at}: {e}")
            })
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        Err(TaskFailure::invalid_input(format!(
            "arguments of tool `{}` do not match its schema: {}",
            self.name,
            problems.join("; ")
        )))
    }

    /// Checks `mounts` against what the tool needs; returns whether the
    /// guest's mounts are read-only (it does not write). A directory the
    /// submitter asked to mount read-write on a tool that does not write is
    /// refused, not quietly made read-only; the workspace the node adds is.
    pub fn check_mounts(&self, mounts: &[Mount]) -> Result<bool, TaskFailure> {
        for need in &self.mounts {
            let found = mounts
                .iter()
                .find(|m| m.guest_path.trim_end_matches('/') == need.path.trim_end_matches('/'));
            match found {
                None => {
                    return Err(TaskFailure::invalid_input(format!(
                        "tool `{}` needs {} mounted{}",
                        self.name,
                        need.path,
                        if need.write { " read-write" } else { "" }
                    )));
                }
                Some(m) if need.write && !m.writable => {
                    return Err(TaskFailure::invalid_input(format!(
                        "tool `{}` needs {} mounted read-write",
                        self.name, need.path
                    )));
                }
                Some(_) => {}
            }
        }
        if !self.writes
            && let Some(asked) = mounts
                .iter()
                .find(|m| m.writable && matches!(m.source, MountSource::Host(_)))
        {
            return Err(TaskFailure::invalid_input(format!(
                "tool `{}` does not write (it declares no `writes` capability), so {} cannot be mounted read-write; mount it `:ro`",
                self.name, asked.guest_path
            )));
        }
        Ok(!self.writes)
    }
}

/// Reads text as the number or boolean a top-level property asks for.
fn coerce(fields: &mut Map<String, Value>, properties: &Map<String, Value>) {
    for (key, value) in fields.iter_mut() {
        let Value::String(text) = value else {
            continue;
        };
        let wanted = properties.get(key).and_then(|p| p.get("type"));
        let wants = |t: &str| match wanted {
            Some(Value::String(s)) => s == t,
            Some(Value::Array(types)) => {
                types.iter().any(|x| x == t) && !types.iter().any(|x| x == "string")
            }
            _ => false,
        };
        let text = text.trim();
        let read = if wants("integer") {
            text.parse::<i64>().ok().map(Value::from)
        } else if wants("number") {
            text.parse::<f64>()
                .ok()
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
        } else if wants("boolean") {
            text.parse::<bool>().ok().map(Value::Bool)
        } else {
            None
        };
        if let Some(read) = read {
            *value = read;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(writes: bool, mounts: Vec<MountNeed>) -> ToolDescription {
        let schema = json!({"type": "object", "additionalProperties": false,
            "required": ["top"], "properties": {"top": {"type": "integer"}, "deep": {"type": "boolean"}}});
        ToolDescription::new(
            "t".into(),
            "1".into(),
            String::new(),
            schema,
            mounts,
            writes,
        )
        .unwrap()
    }

    fn mount(source: MountSource, guest: &str, writable: bool) -> Mount {
        Mount {
            source,
            guest_path: guest.into(),
            writable,
        }
    }

    fn need(path: &str, write: bool) -> MountNeed {
        MountNeed {
            path: path.into(),
            write,
        }
    }

    #[test]
    fn arguments_outside_the_schema_are_refused_naming_the_field() {
        let t = tool(false, vec![]);
        let err = t.check_args(&mut json!({"top": "three"})).unwrap_err();
        assert!(err.message.contains("/top"), "{err}");
        let err = t
            .check_args(&mut json!({"top": 3, "bogus": 1}))
            .unwrap_err();
        assert!(err.message.contains("bogus"), "{err}");
        let err = t.check_args(&mut json!({})).unwrap_err();
        assert!(err.message.contains("top"), "{err}");
    }

    #[test]
    fn text_standing_for_a_number_or_boolean_is_read_as_one() {
        let mut args = json!({"top": " 3", "deep": "true"});
        tool(false, vec![]).check_args(&mut args).unwrap();
        assert_eq!(args, json!({"top": 3, "deep": true}));
    }

    #[test]
    fn a_tool_that_does_not_write_refuses_a_read_write_host_mount() {
        let host = MountSource::Host("/srv".into());
        let reader = tool(false, vec![]);
        let err = reader
            .check_mounts(&[mount(host.clone(), "/src", true)])
            .unwrap_err();
        assert!(
            err.message.contains("/src") && err.message.contains(":ro"),
            "{err}"
        );
        assert!(reader.check_mounts(&[mount(host, "/src", false)]).unwrap());
        assert!(
            reader
                .check_mounts(&[mount(MountSource::Workspace, "/w", true)])
                .unwrap(),
            "the node's own workspace is made read-only"
        );
        assert!(
            !tool(true, vec![])
                .check_mounts(&[mount(MountSource::Workspace, "/w", true)])
                .unwrap()
        );
    }

    #[test]
    fn a_schema_that_is_not_json_schema_is_refused_when_the_tool_is_described() {
        let bad = json!({"type": "no-such-type"});
        let err = ToolDescription::new("t".into(), "1".into(), String::new(), bad, vec![], false)
            .unwrap_err();
        assert!(err.message.contains("not valid JSON Schema"), "{err}");
    }

    #[test]
    fn mount_needs_are_shown_as_objects() {
        let shown = serde_json::to_value(tool(true, vec![need("/out", true)])).unwrap();
        assert_eq!(shown["mounts"], json!([{"path": "/out", "write": true}]));
    }

    #[test]
    fn declared_mount_needs_are_checked() {
        let needs = tool(true, vec![need("/out", true)]);
        let w = MountSource::Workspace;
        let err = needs
            .check_mounts(&[mount(w.clone(), "/in", true)])
            .unwrap_err();
        assert!(
            err.message.contains("needs /out mounted read-write"),
            "{err}"
        );
        let err = needs
            .check_mounts(&[mount(w.clone(), "/out", false)])
            .unwrap_err();
        assert!(err.message.contains("read-write"), "{err}");
        assert!(needs.check_mounts(&[mount(w, "/out/", true)]).is_ok());
    }
}
