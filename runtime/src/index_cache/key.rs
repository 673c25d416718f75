//! The content key of a corpus, and the corpus's bytes as the guest reads
//! them.

use serde_json::Value;

/// A content key: which index a corpus has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub(super) blake3::Hash);

impl Key {
    /// The key of a corpus given as `input` (`documents_json` or
    /// `documents`) with `value`, indexed by the guest whose binary hashes
    /// to `guest`.
    pub fn new(guest: &blake3::Hash, input: &str, value: &Value) -> Self {
        Self::of(guest, input, &Corpus::of(value))
    }

    pub(super) fn of(guest: &blake3::Hash, input: &str, corpus: &Corpus) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("wasmnode retrieval index v1");
        hasher.update(guest.as_bytes());
        hasher.update(&(input.len() as u64).to_le_bytes());
        hasher.update(input.as_bytes());
        match corpus {
            Corpus::Text(text) => hasher.update(b"s").update(text),
            Corpus::Json(json) => hasher.update(b"j").update(json),
        };
        Self(hasher.finalize())
    }

    pub(super) fn dir_name(&self) -> String {
        self.0.to_hex().to_string()
    }
}

/// A corpus's bytes as the guest reads them: a string's own, or the JSON
/// of an array (serialised once, for its size, its key and its file).
pub(super) enum Corpus<'a> {
    Text(&'a [u8]),
    Json(Vec<u8>),
}

impl<'a> Corpus<'a> {
    pub(super) fn of(value: &'a Value) -> Self {
        match value {
            Value::String(text) => Self::Text(text.as_bytes()),
            other => Self::Json(serde_json::to_vec(other).expect("JSON serialises")),
        }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Self::Text(bytes) => bytes,
            Self::Json(bytes) => bytes,
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.bytes().len() as u64
    }
}
