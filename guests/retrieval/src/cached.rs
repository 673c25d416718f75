//! The node's index cache as this guest sees it: the node sets the
//! `index_cache` input (never a task) to `{"read": PATH, "corpus": PATH}`
//! when it mounted an index this guest wrote earlier for the same corpus, or
//! to `{"write": PATH, "max_bytes": N, "corpus": PATH, "from": INPUT}` when
//! it wants the index built now written there, or to `{"corpus": PATH,
//! "from": INPUT}` when it hands over documents it holds as a file (an
//! uploaded blob) and keeps no index. `corpus` is the file the node wrote
//! the documents to, taken out of the input `from`: read as it is, not
//! unescaped from a string inside the input, and kept beside the index so
//! that a record refers to its text there instead of holding a copy.

use crate::corpus::Doc;
use bm25::{Index, StoredIndex};
use guest_kit::{GuestError, Inputs};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What the node asked of the index cache.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum IndexCache {
    /// Search the index stored at this path instead of the documents.
    Read {
        /// The index file.
        read: PathBuf,
        /// The corpus its records refer to.
        corpus: Option<PathBuf>,
    },
    /// Index the documents, then write the index to this path.
    Write {
        /// Where to write it.
        write: PathBuf,
        /// Do not write an index larger than this.
        max_bytes: u64,
        /// The file holding the documents, if the node handed them over.
        corpus: Option<PathBuf>,
        /// The input they were taken out of.
        from: Option<String>,
    },
    /// Index the documents in this file, read as the input `from`; keep
    /// nothing.
    Handed {
        /// The file holding the documents.
        corpus: PathBuf,
        /// The input they stand for.
        from: String,
    },
}

impl IndexCache {
    /// The request in `index_cache`, if the node made one.
    pub fn from_inputs(inputs: &Inputs) -> Result<Option<Self>, GuestError> {
        inputs.json(&["index_cache"])
    }

    /// The documents the node handed over: the input they were taken out
    /// of, and their text.
    pub fn handed(&self) -> Result<Option<(&str, String)>, GuestError> {
        let (path, input) = match self {
            Self::Write {
                corpus: Some(path),
                from: Some(input),
                ..
            }
            | Self::Handed {
                corpus: path,
                from: input,
            } => (path, input),
            _ => return Ok(None),
        };
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| GuestError::io(&shown, &e))?;
        let text = guest_kit::utf8(bytes)
            .map_err(|_| GuestError::InvalidInput(format!("input `{input}` is not UTF-8")))?;
        Ok(Some((input, text)))
    }
}

/// A record's text: its bytes, or where they lie in the corpus file.
const TEXT_INLINE: u8 = 0;
const TEXT_IN_CORPUS: u8 = 1;

/// Appends `doc` as a record: its id and metadata (JSON, empty when there
/// is none), each after its length as a little-endian `u32`; its text,
/// inline the same way or as the `u64` offset and `u32` length of the same
/// bytes in `corpus` (when the text is a slice of it); then whether it came
/// from a file.
fn put_record(out: &mut Vec<u8>, doc: &Doc, corpus: Option<&str>) {
    let put = |out: &mut Vec<u8>, part: &[u8]| {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    };
    put(out, doc.id.as_bytes());
    put(out, doc.metadata.as_bytes());
    match corpus.and_then(|c| offset_in(c, &doc.text)) {
        Some(at) => {
            out.push(TEXT_IN_CORPUS);
            out.extend_from_slice(&(at as u64).to_le_bytes());
            out.extend_from_slice(&(doc.text.len() as u32).to_le_bytes());
        }
        None => {
            out.push(TEXT_INLINE);
            put(out, doc.text.as_bytes());
        }
    }
    out.push(u8::from(doc.from_file));
}

/// Where `part` starts in `whole`, if it is a slice of it.
fn offset_in(whole: &str, part: &str) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (at + part.len() <= whole.len()).then_some(at)
}

/// Reads a record written by [`put_record`], its text from `corpus` where
/// the record refers to it there.
fn record(bytes: &[u8], corpus: Option<&mut Corpus>) -> Result<Doc<'static>, GuestError> {
    let mut fields = Fields(bytes);
    let id = utf8(fields.part()?.to_vec())?;
    let metadata = utf8(fields.part()?.to_vec())?;
    if !metadata.is_empty() && serde_json::from_str::<Map<String, Value>>(&metadata).is_err() {
        return Err(corrupt());
    }
    let text = match fields.byte()? {
        TEXT_INLINE => utf8(fields.part()?.to_vec())?,
        TEXT_IN_CORPUS => {
            let at = u64::from_le_bytes(fields.array()?);
            let len = u32::from_le_bytes(fields.array()?);
            let corpus = corpus.ok_or_else(corrupt)?;
            if at
                .checked_add(u64::from(len))
                .is_none_or(|end| end > corpus.size)
            {
                return Err(corrupt());
            }
            let mut bytes = vec![0; len as usize];
            corpus
                .file
                .seek(SeekFrom::Start(at))
                .and_then(|_| corpus.file.read_exact(&mut bytes))
                .map_err(|_| corrupt())?;
            utf8(bytes)?
        }
        _ => return Err(corrupt()),
    };
    let from_file = fields.byte()? == 1;
    if !fields.0.is_empty() {
        return Err(corrupt());
    }
    Ok(Doc {
        id: Cow::Owned(id),
        text: Cow::Owned(text),
        metadata: Cow::Owned(metadata),
        from_file,
    })
}

/// The metadata of a record, without reading its text.
fn metadata(bytes: &[u8]) -> Result<Map<String, Value>, GuestError> {
    let mut fields = Fields(bytes);
    fields.part()?;
    match fields.part()? {
        [] => Ok(Map::new()),
        json => serde_json::from_slice(json).map_err(|_| corrupt()),
    }
}

/// The fields of a record, read in order.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GuestError> {
        let (part, rest) = self.0.split_at_checked(n).ok_or_else(corrupt)?;
        self.0 = rest;
        Ok(part)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GuestError> {
        self.take(N)?.try_into().map_err(|_| corrupt())
    }

    fn byte(&mut self) -> Result<u8, GuestError> {
        Ok(self.array::<1>()?[0])
    }

    /// Bytes after their length as a little-endian `u32`.
    fn part(&mut self) -> Result<&'a [u8], GuestError> {
        let len = u32::from_le_bytes(self.array()?);
        self.take(len as usize)
    }
}

fn utf8(bytes: Vec<u8>) -> Result<String, GuestError> {
    guest_kit::utf8(bytes).map_err(|_| corrupt())
}

fn corrupt() -> GuestError {
    GuestError::Failed("a record of the cached index is corrupt".into())
}

/// Writes `index` over `docs` to `path` unless it is larger than
/// `max_bytes`; texts that are slices of `corpus` (the handed-over file's
/// text) are referred to, not copied. A failure only costs the cache entry,
/// so it is reported on stderr, not to the task.
pub fn write(index: &Index, docs: &[Doc], corpus: Option<&str>, path: &Path, max_bytes: u64) {
    let bytes = index.to_bytes(|doc, out| put_record(out, &docs[doc], corpus));
    if bytes.len() as u64 > max_bytes {
        eprintln!(
            "index not cached: {} bytes is over the cache's {max_bytes}",
            bytes.len()
        );
    } else if let Err(e) = guest_kit::write_whole_file(path, &bytes) {
        eprintln!("index not cached: cannot write {}: {e}", path.display());
    }
}

/// An index the node mounted, searched in place.
pub struct Stored {
    index: StoredIndex<File>,
    corpus: Option<Corpus>,
}

/// The corpus file a stored index's records refer to, and its size.
struct Corpus {
    file: File,
    size: u64,
}

impl Stored {
    /// Opens the index at `path`, whose records may refer to `corpus`.
    pub fn open(path: &Path, corpus: Option<&Path>) -> Result<Self, GuestError> {
        let open = |path: &Path| {
            File::open(path).map_err(|e| GuestError::io(&path.display().to_string(), &e))
        };
        let index =
            StoredIndex::open(open(path)?).map_err(|e| failed(&path.display().to_string(), e))?;
        let corpus = match corpus {
            Some(path) => {
                let file = open(path)?;
                let size = file
                    .metadata()
                    .map_err(|e| GuestError::io(&path.display().to_string(), &e))?
                    .len();
                Some(Corpus { file, size })
            }
            None => None,
        };
        Ok(Self { index, corpus })
    }

    /// The underlying index.
    pub fn index(&mut self) -> &mut StoredIndex<File> {
        &mut self.index
    }

    /// Every document's metadata, in order (for filters).
    pub fn metadata(&mut self) -> Result<Vec<Map<String, Value>>, GuestError> {
        let records = self.index.records().map_err(|e| failed("the index", e))?;
        records.iter().map(|r| metadata(r)).collect()
    }

    /// The document `doc`.
    pub fn doc(&mut self, doc: usize) -> Result<Doc<'static>, GuestError> {
        let bytes = self.index.record(doc).map_err(|e| failed("the index", e))?;
        record(&bytes, self.corpus.as_mut())
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

    /// Runs `query` over `docs` (given as `input`) without the cache, then
    /// through it twice (a miss that writes the index, a hit that reads it),
    /// the documents handed over as a file when `handed`; returns the
    /// uncached answer after checking that the other two equal it.
    fn through_the_cache(input: &str, docs: &str, query: Value, handed: bool) -> Value {
        let path = scratch(&format!("{input}-{handed}"));
        let corpus = path.with_file_name("corpus");
        std::fs::write(&corpus, docs).unwrap();
        let mut write = json!({"write": path, "max_bytes": 1 << 20});
        let mut read = json!({"read": path});
        let mut first = query.clone();
        if handed {
            write["corpus"] = json!(corpus);
            write["from"] = json!(input);
            read["corpus"] = json!(corpus);
        } else {
            first[input] = json!(docs);
        }
        first["index_cache"] = write;
        let mut again = query.clone();
        again["index_cache"] = read;
        let mut uncached = query;
        uncached[input] = json!(docs);
        let uncached = run(uncached).unwrap();
        let mut built = run(first).unwrap();
        let mut cached = run(again).unwrap();
        assert_eq!(built["index_cache"], "miss");
        assert_eq!(cached["index_cache"], "hit");
        built.as_object_mut().unwrap().remove("index_cache");
        cached.as_object_mut().unwrap().remove("index_cache");
        assert_eq!(built, uncached);
        assert_eq!(cached, uncached);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        uncached
    }

    #[test]
    fn a_cached_index_answers_exactly_as_the_documents_did() {
        let escaped = json!([{"id": "kb-9", "text": "A \"quoted\" password\nreset", "metadata": {"tenant": "acme"}}]);
        let mut with_escapes: Vec<Value> = serde_json::from_str(&docs()).unwrap();
        with_escapes.extend(escaped.as_array().unwrap().iter().cloned());
        let with_escapes = Value::from(with_escapes).to_string();
        for handed in [false, true] {
            for (query, extra) in [
                ("reset password", json!({})),
                ("password", json!({"tenant": "acme"})),
                ("nothing matches", json!({})),
            ] {
                let mut query = json!({"query": query, "top_k": 3});
                for (k, v) in extra.as_object().unwrap() {
                    query[k] = v.clone();
                }
                through_the_cache("documents_json", &docs(), query.clone(), handed);
                let out = through_the_cache("documents_json", &with_escapes, query, handed);
                if out["query"] == "reset password" {
                    assert_eq!(out["documents"][0]["text"], "A \"quoted\" password\nreset");
                }
            }
            let lines = "apple pie\norange juice\n\nbanana bread";
            let out = through_the_cache("documents", lines, json!({"query": "orange"}), handed);
            assert_eq!(out["documents"][0]["id"], "doc-1");
        }
    }

    #[test]
    fn records_refer_to_the_handed_over_corpus_instead_of_copying_it() {
        let text = "a long document about password resets ".repeat(100);
        let docs = json!([{"id": "long", "text": text}]).to_string();
        let sizes: Vec<u64> = [false, true]
            .into_iter()
            .map(|handed| {
                let path = scratch(&format!("refer-{handed}"));
                let corpus = path.with_file_name("corpus");
                std::fs::write(&corpus, &docs).unwrap();
                let mut input = json!({"query": "password",
                    "index_cache": {"write": path, "max_bytes": 1 << 20}});
                if handed {
                    input["index_cache"]["corpus"] = json!(corpus);
                    input["index_cache"]["from"] = json!("documents_json");
                } else {
                    input["documents_json"] = json!(docs);
                }
                run(input).unwrap();
                let size = std::fs::metadata(&path).unwrap().len();
                std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
                size
            })
            .collect();
        // Inline: the text after its 4-byte length; referred to: an
        // 8-byte offset and a 4-byte length.
        assert_eq!(sizes[0] - sizes[1], text.len() as u64 + 4 - 12, "{sizes:?}");
    }

    #[test]
    fn a_corpus_handed_over_without_the_cache_is_ranked_and_nothing_is_written() {
        let path = scratch("handed-only");
        let corpus = path.with_file_name("corpus");
        std::fs::write(&corpus, docs()).unwrap();
        let query = json!({"query": "reset password", "top_k": 3, "tenant": "acme"});
        let mut uncached = query.clone();
        uncached["documents_json"] = json!(docs());
        let mut handed = query;
        handed["index_cache"] = json!({"corpus": corpus, "from": "documents_json"});
        let out = run(handed).unwrap();
        assert_eq!(
            out,
            run(uncached).unwrap(),
            "no `index_cache` outcome either"
        );
        let written: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(written, ["corpus"]);
        let mut also = json!({"query": "x", "documents_json": docs()});
        also["index_cache"] = json!({"corpus": corpus, "from": "documents_json"});
        let err = run(also).unwrap_err();
        assert!(
            matches!(&err, GuestError::InvalidInput(m) if m.contains("only one")),
            "{err:?}"
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_cached_index_whose_corpus_is_missing_or_truncated_fails_the_task() {
        let path = scratch("no-corpus");
        let corpus = path.with_file_name("corpus");
        std::fs::write(&corpus, docs()).unwrap();
        run(
            json!({"query": "password", "index_cache": {"write": path, "max_bytes": 1 << 20,
            "corpus": corpus, "from": "documents_json"}}),
        )
        .unwrap();
        let err = run(json!({"query": "password", "index_cache": {"read": path}})).unwrap_err();
        assert!(matches!(err, GuestError::Failed(_)), "{err:?}");
        std::fs::write(&corpus, "[]").unwrap();
        let err =
            run(json!({"query": "password", "index_cache": {"read": path, "corpus": corpus}}))
                .unwrap_err();
        assert!(
            matches!(&err, GuestError::Failed(m) if m.contains("corrupt")),
            "a text past the end of a truncated corpus: {err:?}"
        );
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
