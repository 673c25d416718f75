//! The node's index cache as this guest sees it: the node sets the
//! `index_cache` input (never a task) to `{"read": PATH}` when it mounted an
//! index this guest wrote earlier for the same corpus, or to `{"write":
//! PATH, "max_bytes": N}` when it wants the index built now written there.

use crate::corpus::Doc;
use bm25::{Index, StoredIndex};
use guest_kit::{GuestError, Inputs};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// What the node asked of the index cache.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum IndexCache {
    /// Search the index stored at this path instead of the documents.
    Read {
        /// The index file.
        read: PathBuf,
    },
    /// Index the documents, then write the index to this path.
    Write {
        /// Where to write it.
        write: PathBuf,
        /// Do not write an index larger than this.
        max_bytes: u64,
    },
}

impl IndexCache {
    /// The request in `index_cache`, if the node made one.
    pub fn from_inputs(inputs: &Inputs) -> Result<Option<Self>, GuestError> {
        inputs.json(&["index_cache"])
    }
}

/// Appends `doc` as a record: its id, text and metadata (JSON, empty when
/// there is none), each after its length as a little-endian `u32`, then
/// whether it came from a file.
fn put_record(out: &mut Vec<u8>, doc: &Doc) {
    let metadata = if doc.metadata.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(&doc.metadata).expect("metadata serialises")
    };
    for part in [doc.id.as_bytes(), doc.text.as_bytes(), &metadata] {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    }
    out.push(u8::from(doc.from_file));
}

/// Reads a record written by [`put_record`].
fn record(bytes: &[u8]) -> Result<Doc, GuestError> {
    let corrupt = || GuestError::Failed("a record of the cached index is corrupt".into());
    let mut rest = bytes;
    let mut part = || -> Result<&[u8], GuestError> {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let len = u32::from_le_bytes(*len) as usize;
        let (part, tail) = tail.split_at_checked(len).ok_or_else(corrupt)?;
        rest = tail;
        Ok(part)
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| corrupt());
    let id = text(part()?)?;
    let body = text(part()?)?;
    let metadata = match part()? {
        [] => Map::new(),
        json => serde_json::from_slice(json).map_err(|_| corrupt())?,
    };
    let from_file = match rest {
        [flag] => *flag == 1,
        _ => return Err(corrupt()),
    };
    Ok(Doc {
        id,
        text: body,
        metadata,
        from_file,
    })
}

/// Writes `index` over `docs` to `path` unless it is larger than
/// `max_bytes`; a failure only costs the cache entry, so it is reported on
/// stderr, not to the task.
pub fn write(index: &Index, docs: &[Doc], path: &std::path::Path, max_bytes: u64) {
    let bytes = index.to_bytes(|doc, out| put_record(out, &docs[doc]));
    if bytes.len() as u64 > max_bytes {
        eprintln!(
            "index not cached: {} bytes is over the cache's {max_bytes}",
            bytes.len()
        );
    } else if let Err(e) = std::fs::write(path, &bytes) {
        eprintln!("index not cached: cannot write {}: {e}", path.display());
    }
}

/// An index the node mounted, searched in place.
pub struct Stored {
    index: StoredIndex<std::fs::File>,
}

impl Stored {
    /// Opens the index at `path`.
    pub fn open(path: &std::path::Path) -> Result<Self, GuestError> {
        let shown = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| GuestError::io(&shown, &e))?;
        let index = StoredIndex::open(file).map_err(|e| failed(&shown, e))?;
        Ok(Self { index })
    }

    /// The underlying index.
    pub fn index(&mut self) -> &mut StoredIndex<std::fs::File> {
        &mut self.index
    }

    /// Every document's metadata, in order (for filters).
    pub fn metadata(&mut self) -> Result<Vec<Map<String, Value>>, GuestError> {
        let records = self.index.records().map_err(|e| failed("the index", e))?;
        records
            .iter()
            .map(|r| record(r).map(|d| d.metadata))
            .collect()
    }

    /// The document `doc`.
    pub fn doc(&mut self, doc: usize) -> Result<Doc, GuestError> {
        let bytes = self.index.record(doc).map_err(|e| failed("the index", e))?;
        record(&bytes)
    }
}

fn failed(what: &str, e: std::io::Error) -> GuestError {
    GuestError::Failed(format!("cannot read the cached index {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use guest_kit::{GuestError, Inputs, Mounts};
    use serde_json::{Value, json};

    fn run(v: Value) -> Result<Value, GuestError> {
        crate::run(
            &Inputs::from_map(v.as_object().unwrap().clone()),
            &Mounts::default(),
        )
    }

    fn docs() -> String {
        json!([
            {"id": "kb-2", "text": "Billing cycles, invoices and refunds", "metadata": {"tenant": "acme"}},
            {"id": "kb-1", "text": "Reset your password from the login page", "metadata": {"tenant": "acme"}},
            {"id": "kb-3", "text": "Password rules: resetting a password emails a link", "metadata": {"tenant": "globex"}},
            {"id": "kb-0", "text": "Reset your password from the login page", "metadata": {"tenant": "acme"}}
        ])
        .to_string()
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("retrieval-cache-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("index.bm25")
    }

    #[test]
    fn a_cached_index_answers_exactly_as_the_documents_did() {
        let path = scratch("same");
        let write = json!({"write": path, "max_bytes": 1 << 20});
        for (query, extra) in [
            ("reset password", json!({})),
            ("password", json!({"tenant": "acme"})),
            ("nothing matches", json!({})),
        ] {
            let mut first =
                json!({"query": query, "documents_json": docs(), "index_cache": write, "top_k": 3});
            let mut again = json!({"query": query, "index_cache": {"read": path}, "top_k": 3});
            for input in [&mut first, &mut again] {
                for (k, v) in extra.as_object().unwrap() {
                    input[k] = v.clone();
                }
            }
            let mut built = run(first).unwrap();
            let mut cached = run(again).unwrap();
            assert_eq!(built["index_cache"], "miss");
            assert_eq!(cached["index_cache"], "hit");
            built.as_object_mut().unwrap().remove("index_cache");
            cached.as_object_mut().unwrap().remove("index_cache");
            assert_eq!(cached, built, "{query}");
        }
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn an_index_over_the_size_limit_is_not_written() {
        let path = scratch("large");
        let out = run(json!({"query": "password", "documents_json": docs(),
            "index_cache": {"write": path, "max_bytes": 100}}))
        .unwrap();
        assert_eq!(out["documents"][0]["id"], "kb-3");
        assert!(!path.exists());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_corrupt_cached_index_fails_the_task_instead_of_answering() {
        let path = scratch("corrupt");
        std::fs::write(&path, b"WNBM25\x00\x01 not really").unwrap();
        let err = run(json!({"query": "password", "index_cache": {"read": path}})).unwrap_err();
        assert!(matches!(err, GuestError::Failed(_)), "{err:?}");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
