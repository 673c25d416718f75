//! What each known task type reads from its payload, declared for forms
//! (the web console's Submit page) and API clients (`GET /task-types`).
//! Each input names its key, its kind of value and what it means; the
//! executors stay the judges of what they accept.

use serde::Serialize;

/// One payload key of a task type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Input {
    /// The payload key.
    pub name: &'static str,
    /// The kind of value it takes.
    #[serde(flatten)]
    pub kind: Kind,
    /// Whether a task needs it (one of several alternatives counts).
    pub required: bool,
    /// What it means, with its default where it has one.
    pub about: &'static str,
}

/// The kind of value an input takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    /// One line of text.
    Text,
    /// Text of any length.
    LongText,
    /// JSON, sent as a string (the `…_json` inputs).
    Json,
    /// A whole number.
    Integer,
    /// A number.
    Number,
    /// True or false.
    Boolean,
    /// One of `options`.
    Choice {
        /// The values accepted.
        options: &'static [&'static str],
    },
    /// The name of one of the node's tools; its own arguments follow from
    /// the tool's `args-schema` and go in `args`.
    Tool,
}

const fn input(name: &'static str, kind: Kind, about: &'static str) -> Input {
    Input {
        name,
        kind,
        required: false,
        about,
    }
}

const fn required(name: &'static str, kind: Kind, about: &'static str) -> Input {
    Input {
        name,
        kind,
        required: true,
        about,
    }
}

/// `retrieval`.
pub const RETRIEVAL: &[Input] = &[
    required(
        "query",
        Kind::Text,
        "What to look for (`text` and `prompt` are read the same way).",
    ),
    input(
        "documents_json",
        Kind::Json,
        "The corpus: a JSON array of {id, text, metadata}.",
    ),
    input(
        "documents",
        Kind::LongText,
        "The corpus, one document per line.",
    ),
    input(
        "documents_blob",
        Kind::Text,
        "The corpus uploaded once with PUT /blobs (`blob:HASH`), read as `documents_json`.",
    ),
    input(
        "directory",
        Kind::Text,
        "A mounted guest path whose files are the corpus.",
    ),
    input("top_k", Kind::Integer, "How many documents to answer (5)."),
    input(
        "filters_json",
        Kind::Json,
        "Metadata every answered document must match.",
    ),
];

/// `aggregation`.
pub const AGGREGATION: &[Input] = &[
    required(
        "items_json",
        Kind::Json,
        "The items to merge: a JSON array of objects.",
    ),
    input(
        "required_fields",
        Kind::Text,
        "Keys the merged result must have, comma-separated.",
    ),
    input(
        "aggregation_mode",
        Kind::Choice {
            options: &["structured_report", "concat"],
        },
        "How to merge (structured_report).",
    ),
    input(
        "strict_dependencies",
        Kind::Boolean,
        "Fail when a dependency's output is missing (true).",
    ),
];

/// `tool_execution`.
pub const TOOL_EXECUTION: &[Input] = &[required(
    "tool",
    Kind::Tool,
    "The tool to run; its arguments go in `args`, as its schema says.",
)];

/// `embedding`.
pub const EMBEDDING: &[Input] = &[
    required(
        "text",
        Kind::LongText,
        "The text to embed (or `texts_json` for a batch).",
    ),
    input(
        "texts_json",
        Kind::Json,
        "A batch: a JSON array of strings.",
    ),
    input(
        "embedding_backend",
        Kind::Text,
        "local (the default: feature hashing, no server), or a model server's name.",
    ),
    input(
        "embedding_model",
        Kind::Text,
        "The model, on a model server.",
    ),
];

/// `llm_inference`.
pub const LLM_INFERENCE: &[Input] = &[
    required(
        "prompt",
        Kind::LongText,
        "What to ask (or chat `messages_json`).",
    ),
    input("model", Kind::Text, "The model to ask."),
    input(
        "backend",
        Kind::Text,
        "The model server (llm.default_backend).",
    ),
    input("max_tokens", Kind::Integer, "Most tokens to generate."),
    input("temperature", Kind::Number, "Sampling temperature."),
    input("seed", Kind::Integer, "Sampling seed."),
];

/// `model_download`.
pub const MODEL_DOWNLOAD: &[Input] = &[
    required(
        "model",
        Kind::Text,
        "ORG/REPO/FILE on the hub, or ORG/REPO with `file`; or an Ollama model.",
    ),
    input("file", Kind::Text, "The file in the hub repository."),
    input("revision", Kind::Text, "The hub revision (main)."),
    input(
        "source",
        Kind::Choice {
            options: &["huggingface", "url", "ollama"],
        },
        "Where from (huggingface).",
    ),
    input(
        "url",
        Kind::Text,
        "The file's URL (source url; needs a digest).",
    ),
    input("sha256", Kind::Text, "The digest the file must have."),
];

/// `python`.
pub const PYTHON: &[Input] = &[required(
    "code",
    Kind::LongText,
    "Python source, run by CPython in the wasm sandbox.",
)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_serialises_with_its_kind_beside_its_name() {
        let choice = serde_json::to_value(AGGREGATION[2]).unwrap();
        assert_eq!(
            choice,
            serde_json::json!({"name": "aggregation_mode", "kind": "choice",
                "options": ["structured_report", "concat"], "required": false,
                "about": "How to merge (structured_report)."})
        );
        assert_eq!(
            serde_json::to_value(PYTHON[0]).unwrap()["kind"],
            "long_text"
        );
    }
}
