//! Where retrieval documents come from, and metadata filters over them.

use crate::docs::{self, DocInput};
use bm25::Index;
use guest_kit::{GuestError, Inputs, Mounts};
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::path::Path;

/// Files larger than this are skipped in directory mode (override: `max_file_bytes`).
const DEFAULT_MAX_FILE_BYTES: usize = 1 << 20;
/// At most this many files are read in directory mode (override: `max_files`).
const DEFAULT_MAX_FILES: usize = 10_000;
/// Length of the snippet returned for a file in directory mode.
const SNIPPET_CHARS: usize = 240;

/// One document to rank; its id and text borrow from the corpus's text
/// where they can.
#[derive(Debug, Clone)]
pub struct Doc<'a> {
    pub id: Cow<'a, str>,
    pub text: Cow<'a, str>,
    /// The metadata object's JSON (checked wherever a `Doc` is made);
    /// empty when there is none.
    pub metadata: Cow<'a, str>,
    /// Set for files from a directory: the text is not returned, a snippet is.
    pub from_file: bool,
}

impl Doc<'_> {
    /// The metadata as an object.
    pub fn metadata(&self) -> Map<String, Value> {
        if self.metadata.is_empty() {
            return Map::new();
        }
        serde_json::from_str(&self.metadata).unwrap_or_default()
    }

    /// The JSON of this document as a ranked result.
    pub fn ranked(&self, rank: usize, score: f64, terms: &[String]) -> Value {
        let mut out = json!({
            "rank": rank,
            "id": self.id,
            "score": (score * 1e6).round() / 1e6,
            "metadata": self.metadata(),
        });
        if self.from_file {
            out["snippet"] = Value::String(snippet(&self.text, terms));
        } else {
            out["text"] = Value::String(self.text.clone().into_owned());
        }
        out
    }
}

/// Where a task's documents are.
pub enum Source<'a> {
    /// The text of `documents_json` or `documents` (named by `input`): from
    /// the task's input, or from the file the node handed it over in.
    Inline { input: &'a str, text: Cow<'a, str> },
    /// Every text file under this mounted directory.
    Directory(String),
}

/// The inputs that hold documents inline.
const INLINE: [&str; 2] = ["documents_json", "documents"];

impl<'a> Source<'a> {
    /// Finds the one source the inputs give: `documents_json`, `documents`,
    /// `directory`, or `handed` (an input the node took out of the task and
    /// handed over as a file: its name and text).
    pub fn from_inputs(
        inputs: &'a Inputs,
        handed: Option<(&'a str, String)>,
    ) -> Result<Self, GuestError> {
        let given: Vec<&str> = INLINE
            .iter()
            .chain(&["directory"])
            .copied()
            .filter(|k| inputs.raw(k).is_some())
            .chain(handed.as_ref().map(|(input, _)| *input))
            .collect();
        match given.as_slice() {
            [] => Err(GuestError::InvalidInput(
                "missing documents: give `documents_json`, `documents` or `directory`".into(),
            )),
            [_] => Ok(match handed {
                Some((input, _)) if !INLINE.contains(&input) => {
                    return Err(GuestError::Failed(format!(
                        "the node handed over documents as `{input}`, which is not a document input"
                    )));
                }
                Some((input, text)) => Source::Inline {
                    input,
                    text: Cow::Owned(text),
                },
                None => match INLINE.iter().find_map(|k| Some((*k, inputs.raw(k)?))) {
                    Some((input, Value::String(text))) => Source::Inline {
                        input,
                        text: Cow::Borrowed(text),
                    },
                    Some((input, value)) => Source::Inline {
                        input,
                        text: Cow::Owned(value.to_string()),
                    },
                    None => Source::Directory(inputs.text(&["directory"]).unwrap_or_default()),
                },
            }),
            _ => Err(GuestError::InvalidInput(
                "give only one of `documents_json`, `documents` and `directory`".into(),
            )),
        }
    }

    /// The inline text, if the documents are inline.
    pub fn text(&self) -> Option<&str> {
        match self {
            Source::Inline { text, .. } => Some(text),
            Source::Directory(_) => None,
        }
    }
}

/// All documents of one retrieval task.
pub struct Corpus<'a> {
    pub docs: Vec<Doc<'a>>,
}

impl<'a> Corpus<'a> {
    /// Reads the documents of `source`: a JSON list (`documents` may also
    /// be one document per line), or the files of a directory.
    pub fn load(
        source: &'a Source<'_>,
        inputs: &Inputs,
        mounts: &Mounts,
    ) -> Result<Self, GuestError> {
        let docs = match source {
            Source::Directory(dir) => {
                let max_bytes = inputs.count(&["max_file_bytes"], DEFAULT_MAX_FILE_BYTES)?;
                let max_files = inputs.count(&["max_files"], DEFAULT_MAX_FILES)?;
                read_directory(mounts, dir, max_bytes, max_files)?
            }
            Source::Inline { text, .. } if text.trim().is_empty() => Vec::new(),
            Source::Inline { input, text }
                if *input == "documents" && !text.trim_start().starts_with('[') =>
            {
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .enumerate()
                    .map(|(i, l)| Doc {
                        id: Cow::Owned(format!("doc-{i}")),
                        text: Cow::Borrowed(l),
                        metadata: Cow::Borrowed(""),
                        from_file: false,
                    })
                    .collect()
            }
            Source::Inline { input, text } => docs::parse(text, to_doc).map_err(|e| {
                GuestError::InvalidInput(format!("input `{input}` is not valid: {e}"))
            })?,
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

fn to_doc(i: usize, input: DocInput<'_>) -> Result<Doc<'_>, String> {
    let positional = || Cow::Owned(format!("doc-{i}"));
    Ok(match input {
        DocInput::Text(text) => Doc {
            id: positional(),
            text,
            metadata: Cow::Borrowed(""),
            from_file: false,
        },
        DocInput::Object { id, text, metadata } => Doc {
            id: id.unwrap_or_else(positional),
            text: text.ok_or_else(|| format!("document {i} has no `text`"))?,
            metadata: Cow::Borrowed(metadata.unwrap_or_default()),
            from_file: false,
        },
    })
}

fn read_directory(
    mounts: &Mounts,
    dir: &str,
    max_bytes: usize,
    max_files: usize,
) -> Result<Vec<Doc<'static>>, GuestError> {
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

fn read_file(root: &Path, path: &Path, max_bytes: usize) -> Option<Doc<'static>> {
    let size = std::fs::metadata(path).ok()?.len();
    if size as usize > max_bytes {
        return None;
    }
    let text = guest_kit::utf8(std::fs::read(path).ok()?).ok()?;
    let id = path
        .strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string();
    let mut metadata = Map::new();
    metadata.insert("path".into(), Value::String(path.display().to_string()));
    metadata.insert("bytes".into(), Value::from(size));
    Some(Doc {
        id: Cow::Owned(id),
        text: Cow::Owned(text),
        metadata: Cow::Owned(Value::Object(metadata).to_string()),
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
