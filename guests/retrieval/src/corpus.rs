//! Where retrieval documents come from, and metadata filters over them.

use bm25::Index;
use guest_kit::{GuestError, Inputs, Mounts};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value, json};
use std::path::Path;

/// Files larger than this are skipped in directory mode (override: `max_file_bytes`).
const DEFAULT_MAX_FILE_BYTES: usize = 1 << 20;
/// At most this many files are read in directory mode (override: `max_files`).
const DEFAULT_MAX_FILES: usize = 10_000;
/// Length of the snippet returned for a file in directory mode.
const SNIPPET_CHARS: usize = 240;

/// One document to rank.
#[derive(Debug, Clone)]
pub struct Doc {
    pub id: String,
    pub text: String,
    pub metadata: Map<String, Value>,
    /// Set for files from a directory: the text is not returned, a snippet is.
    pub from_file: bool,
}

impl Doc {
    /// The JSON of this document as a ranked result.
    pub fn ranked(&self, rank: usize, score: f64, terms: &[String]) -> Value {
        let mut out = json!({
            "rank": rank,
            "id": self.id,
            "score": (score * 1e6).round() / 1e6,
            "metadata": self.metadata,
        });
        if self.from_file {
            out["snippet"] = Value::String(snippet(&self.text, terms));
        } else {
            out["text"] = Value::String(self.text.clone());
        }
        out
    }
}

/// All documents of one retrieval task.
pub struct Corpus {
    pub docs: Vec<Doc>,
}

/// One document as given: a string, or `{id, text (or content), metadata}`.
enum DocInput {
    Text(String),
    Object {
        id: Option<Value>,
        text: Option<String>,
        metadata: Map<String, Value>,
    },
}

/// Read field by field rather than through `#[serde(untagged)]`, which
/// buffers every document into an intermediate tree first.
impl<'de> Deserialize<'de> for DocInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = DocInput;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a document: a string, or an object with `text`")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<DocInput, E> {
                Ok(DocInput::Text(text.to_owned()))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<DocInput, E> {
                Ok(DocInput::Text(text))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DocInput, A::Error> {
                let (mut id, mut text, mut metadata) = (None, None, None);
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "id" if id.is_none() => id = Some(map.next_value::<Option<Value>>()?),
                        "text" | "content" if text.is_none() => {
                            text = Some(map.next_value::<Option<String>>()?);
                        }
                        "metadata" if metadata.is_none() => metadata = Some(map.next_value()?),
                        "id" | "text" | "content" | "metadata" => {
                            return Err(de::Error::custom(format!("duplicate field `{key}`")));
                        }
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(DocInput::Object {
                    id: id.flatten(),
                    text: text.flatten(),
                    metadata: metadata.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

impl Corpus {
    /// Reads documents from whichever of `documents_json`, `documents` or
    /// `directory` the inputs give (exactly one is required).
    pub fn from_inputs(inputs: &Inputs, mounts: &Mounts) -> Result<Self, GuestError> {
        let sources = ["documents_json", "documents", "directory"]
            .iter()
            .filter(|k| inputs.raw(k).is_some())
            .count();
        if sources == 0 {
            return Err(GuestError::InvalidInput(
                "missing documents: give `documents_json`, `documents` or `directory`".into(),
            ));
        }
        if sources > 1 {
            return Err(GuestError::InvalidInput(
                "give only one of `documents_json`, `documents` and `directory`".into(),
            ));
        }
        let docs = if let Some(dir) = inputs.text(&["directory"]) {
            let max_bytes = inputs.count(&["max_file_bytes"], DEFAULT_MAX_FILE_BYTES)?;
            let max_files = inputs.count(&["max_files"], DEFAULT_MAX_FILES)?;
            read_directory(mounts, &dir, max_bytes, max_files)?
        } else if let Some(Value::String(lines)) = inputs
            .raw("documents")
            .filter(|v| v.as_str().is_some_and(|s| !s.trim_start().starts_with('[')))
        {
            lines
                .lines()
                .filter(|l| !l.trim().is_empty())
                .enumerate()
                .map(|(i, l)| Doc {
                    id: format!("doc-{i}"),
                    text: l.to_string(),
                    metadata: Map::new(),
                    from_file: false,
                })
                .collect()
        } else {
            let list: Vec<DocInput> = inputs
                .json(&["documents_json", "documents"])?
                .unwrap_or_default();
            list.into_iter()
                .enumerate()
                .map(|(i, d)| to_doc(i, d))
                .collect::<Result<_, _>>()?
        };
        Ok(Self { docs })
    }

    /// A BM25 index over every document.
    pub fn index(&self) -> Index {
        let mut index = Index::default();
        for doc in &self.docs {
            index.add(&doc.id, &doc.text);
        }
        index
    }
}

fn to_doc(i: usize, input: DocInput) -> Result<Doc, GuestError> {
    Ok(match input {
        DocInput::Text(text) => Doc {
            id: format!("doc-{i}"),
            text,
            metadata: Map::new(),
            from_file: false,
        },
        DocInput::Object { id, text, metadata } => Doc {
            id: match id {
                None | Some(Value::Null) => format!("doc-{i}"),
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
            },
            text: text
                .ok_or_else(|| GuestError::InvalidInput(format!("document {i} has no `text`")))?,
            metadata,
            from_file: false,
        },
    })
}

fn read_directory(
    mounts: &Mounts,
    dir: &str,
    max_bytes: usize,
    max_files: usize,
) -> Result<Vec<Doc>, GuestError> {
    let (root, _) = mounts.resolve(dir)?;
    let mut docs = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(current) = stack.pop() {
        let shown = current.display().to_string();
        let mut entries: Vec<_> = std::fs::read_dir(&current)
            .map_err(|e| GuestError::io(&shown, &e))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
        for entry in entries {
            let path = entry.path();
            let Ok(meta) = entry.file_type() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file()
                && docs.len() < max_files
                && let Some(doc) = read_file(&root, &path, max_bytes)
            {
                docs.push(doc);
            }
        }
    }
    docs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(docs)
}

fn read_file(root: &Path, path: &Path, max_bytes: usize) -> Option<Doc> {
    let size = std::fs::metadata(path).ok()?.len();
    if size as usize > max_bytes {
        return None;
    }
    let text = String::from_utf8(std::fs::read(path).ok()?).ok()?;
    let id = path
        .strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string();
    let mut metadata = Map::new();
    metadata.insert("path".into(), Value::String(path.display().to_string()));
    metadata.insert("bytes".into(), Value::from(size));
    Some(Doc {
        id,
        text,
        metadata,
        from_file: true,
    })
}

/// The first line mentioning a query term (else the start of the text), shortened.
fn snippet(text: &str, terms: &[String]) -> String {
    let tokenizer = bm25::Tokenizer::default();
    let line = text
        .lines()
        .find(|line| tokenizer.terms(line).iter().any(|t| terms.contains(t)))
        .unwrap_or(text);
    let trimmed = line.trim();
    match trimmed.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}

/// Metadata equality filters: every key must match; an array value means any of.
#[derive(Debug, Default)]
pub struct Filters {
    wanted: Map<String, Value>,
}

impl Filters {
    /// Reads `filters_json` plus the `tenant` / `data_classification` shortcuts.
    pub fn from_inputs(inputs: &Inputs) -> Result<Self, GuestError> {
        let mut wanted: Map<String, Value> = inputs
            .json(&["filters_json", "filters"])?
            .unwrap_or_default();
        for key in ["tenant", "data_classification"] {
            if let Some(v) = inputs.text(&[key]) {
                wanted.insert(key.into(), Value::String(v));
            }
        }
        Ok(Self { wanted })
    }

    /// Whether no filter was given.
    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// Whether a document with `metadata` passes every filter.
    pub fn accepts(&self, metadata: &Map<String, Value>) -> bool {
        self.wanted.iter().all(|(key, want)| {
            let Some(have) = metadata.get(key) else {
                return false;
            };
            match want {
                Value::Array(options) => options.iter().any(|o| same(o, have)),
                single => same(single, have),
            }
        })
    }

    /// The filters as given, for the output document.
    pub fn to_json(&self) -> Value {
        Value::Object(self.wanted.clone())
    }
}

/// JSON equality, except that a string and a number/boolean with the same
/// rendering are equal (SPLAI inputs are all strings).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
            s.trim().parse::<f64>().ok() == n.as_f64()
        }
        (Value::String(s), Value::Bool(v)) | (Value::Bool(v), Value::String(s)) => {
            s.trim().parse::<bool>().ok() == Some(*v)
        }
        _ => a == b,
    }
}
