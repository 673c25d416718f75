//! The built-in `retrieval` task (SPLAI semantics): ranks documents against a
//! query with BM25 and returns the top `top_k`.
//!
//! Documents come from `documents_json` (an array of `{id, text, metadata}`),
//! `documents` (an array, or one document per line), or `directory` (every
//! text file under a mounted guest directory). `filters_json` (or the
//! `tenant` / `data_classification` shortcuts) keeps only documents whose
//! metadata equals the given values. Ties are broken by id, so rankings are
//! deterministic.

mod cached;
mod corpus;
mod docs;

use cached::{IndexCache, Stored};
use corpus::{Corpus, Filters, Source};
use guest_kit::{GuestError, Inputs, Mounts};
use serde_json::{Value, json};

wit_bindgen::generate!({ path: "../../wit/task", world: "task" });

/// Default number of results.
pub const DEFAULT_TOP_K: usize = 5;

struct Retrieval;

impl Guest for Retrieval {
    fn run(input: String) -> Result<String, TaskError> {
        let inputs = Inputs::parse(&input).map_err(to_task_error)?;
        run(&inputs, &Mounts::from_env())
            .map(|v| v.to_string())
            .map_err(to_task_error)
    }
}

export!(Retrieval);

fn to_task_error(e: GuestError) -> TaskError {
    match e {
        GuestError::InvalidInput(m) | GuestError::NotFound(m) => TaskError::InvalidInput(m),
        GuestError::Denied(m) => TaskError::Denied(m),
        GuestError::Failed(m) => TaskError::Failed(m),
    }
}

/// Runs a retrieval over `inputs`; `mounts` serve the `directory` mode.
pub fn run(inputs: &Inputs, mounts: &Mounts) -> Result<Value, GuestError> {
    let query = inputs.require_text(&["query", "text", "prompt"])?;
    let top_k = inputs.count(&["top_k"], DEFAULT_TOP_K)?;
    let backend = inputs
        .text(&["retrieval_backend", "backend"])
        .unwrap_or_else(|| "local".into());
    if backend != "local" {
        return Err(GuestError::InvalidInput(format!(
            "retrieval backend `{backend}` is not served by the local guest (only `local` is)"
        )));
    }
    let filters = Filters::from_inputs(inputs)?;
    let cache = IndexCache::from_inputs(inputs)?;
    let (ranking, cache_outcome) = match &cache {
        Some(IndexCache::Read { read, corpus }) => (
            from_stored(
                &mut Stored::open(read, corpus.as_deref())?,
                &query,
                top_k,
                &filters,
            )?,
            Some("hit"),
        ),
        write => {
            let handed = match write {
                Some(cache) => cache.handed()?,
                None => None,
            };
            // Records may refer to the text only where it is the file the
            // node keeps beside the index.
            let in_file = handed.is_some();
            let source = Source::from_inputs(inputs, handed)?;
            let corpus = Corpus::load(&source, inputs, mounts)?;
            let index = corpus.index();
            // Which documents the filters let through (all, without any).
            let keep: Option<Vec<bool>> = (!filters.is_empty()).then(|| {
                corpus
                    .docs
                    .iter()
                    .map(|d| filters.accepts(&d.metadata()))
                    .collect()
            });
            let hits = index.search(&query, top_k, |i| kept(&keep, i));
            let terms = index.query_terms(&query);
            let ranking = Ranking {
                total: corpus.docs.len(),
                considered: considered(&keep, corpus.docs.len()),
                documents: hits
                    .iter()
                    .enumerate()
                    .map(|(rank, hit)| corpus.docs[hit.index].ranked(rank + 1, hit.score, &terms))
                    .collect(),
                terms,
            };
            let outcome = match write {
                Some(IndexCache::Write {
                    write, max_bytes, ..
                }) => {
                    let corpus_file = source.text().filter(|_| in_file);
                    cached::write(&index, &corpus.docs, corpus_file, write, *max_bytes);
                    Some("miss")
                }
                _ => None,
            };
            (ranking, outcome)
        }
    };
    let mut out = json!({
        "query": query,
        "backend": "local",
        "ranking": "bm25",
        "top_k": top_k,
        "query_terms": ranking.terms,
        "total_documents": ranking.total,
        "considered_documents": ranking.considered,
        "filters": filters.to_json(),
        "documents": ranking.documents,
    });
    if let Some(outcome) = cache_outcome {
        out["index_cache"] = Value::String(outcome.into());
    }
    Ok(out)
}

/// What a retrieval found.
struct Ranking {
    total: usize,
    considered: usize,
    terms: Vec<String>,
    documents: Vec<Value>,
}

/// Ranks with an index the node cached: only the postings of the query's
/// terms and the records of the hits are read (every record's metadata too
/// when there are filters).
fn from_stored(
    stored: &mut Stored,
    query: &str,
    top_k: usize,
    filters: &Filters,
) -> Result<Ranking, GuestError> {
    let total = stored.index().len();
    let keep: Option<Vec<bool>> = if filters.is_empty() {
        None
    } else {
        Some(
            stored
                .metadata()?
                .iter()
                .map(|m| filters.accepts(m))
                .collect(),
        )
    };
    let hits = stored
        .index()
        .search(query, top_k, |i| kept(&keep, i))
        .map_err(|e| GuestError::Failed(format!("cannot read the cached index: {e}")))?;
    let terms = stored.index().query_terms(query);
    let documents = hits
        .iter()
        .enumerate()
        .map(|(rank, hit)| Ok(stored.doc(hit.index)?.ranked(rank + 1, hit.score, &terms)))
        .collect::<Result<_, GuestError>>()?;
    Ok(Ranking {
        total,
        considered: considered(&keep, total),
        terms,
        documents,
    })
}

/// Whether document `i` is let through by the filters' verdicts `keep`
/// (every document is, where there are no filters).
fn kept(keep: &Option<Vec<bool>>, i: usize) -> bool {
    keep.as_ref().is_none_or(|keep| keep[i])
}

/// How many of `total` documents the filters' verdicts `keep` let through.
fn considered(keep: &Option<Vec<bool>>, total: usize) -> usize {
    keep.as_ref()
        .map_or(total, |keep| keep.iter().filter(|k| **k).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(v: Value) -> Inputs {
        Inputs::from_map(v.as_object().unwrap().clone())
    }

    fn ids(out: &Value) -> Vec<String> {
        out["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn corpus() -> String {
        json!([
            {"id": "kb-1", "text": "How to reset your password from the login page", "metadata": {"tenant": "acme", "data_classification": "public"}},
            {"id": "kb-2", "text": "Billing cycles, invoices and refunds explained", "metadata": {"tenant": "acme", "data_classification": "internal"}},
            {"id": "kb-3", "text": "Password rules: passwords must have 12 characters; resetting a password emails a link", "metadata": {"tenant": "globex", "data_classification": "public"}},
            {"id": "kb-4", "text": "Shipping times for international orders", "metadata": {"tenant": "acme", "data_classification": "public"}}
        ])
        .to_string()
    }

    #[test]
    fn ranks_the_relevant_document_first_from_splai_string_inputs() {
        let out = run(
            &inputs(json!({"query": "how do I reset my password", "documents_json": corpus(), "top_k": "2"})),
            &Mounts::default(),
        )
        .unwrap();
        assert_eq!(ids(&out), ["kb-1", "kb-3"]);
        assert_eq!(out["total_documents"], 4);
        assert!(
            out["documents"][0]["score"].as_f64().unwrap()
                > out["documents"][1]["score"].as_f64().unwrap()
        );
        assert_eq!(out["documents"][0]["rank"], 1);
    }

    #[test]
    fn filters_and_shortcuts_restrict_the_candidates() {
        let out = run(
            &inputs(json!({"query": "password", "documents_json": corpus(), "tenant": "globex"})),
            &Mounts::default(),
        )
        .unwrap();
        assert_eq!(ids(&out), ["kb-3"]);
        assert_eq!(out["considered_documents"], 1);
        let out = run(
            &inputs(json!({"query": "password reset", "documents_json": corpus(),
                "filters_json": "{\"data_classification\": [\"internal\", \"public\"], \"tenant\": \"acme\"}"})),
            &Mounts::default(),
        )
        .unwrap();
        assert_eq!(ids(&out), ["kb-1"]);
    }

    #[test]
    fn line_documents_get_positional_ids() {
        let out = run(
            &inputs(json!({"text": "orange", "documents": "apple pie\norange juice\n\nbanana"})),
            &Mounts::default(),
        )
        .unwrap();
        assert_eq!(ids(&out), ["doc-1"]);
        assert_eq!(out["documents"][0]["text"], "orange juice");
    }

    #[test]
    fn ranks_files_under_a_mounted_directory() {
        let dir = std::env::temp_dir().join(format!("retrieval-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), "notes about gardening and tomatoes").unwrap();
        std::fs::write(
            dir.join("sub/b.md"),
            "intro\nKubernetes pods restart when probes fail",
        )
        .unwrap();
        std::fs::write(dir.join("bin.dat"), [0xff, 0xfe, 0x00]).unwrap();
        let mounts = Mounts::parse(&format!("{}:ro", dir.display()));
        let out = run(
            &inputs(json!({"query": "pod restarts", "directory": "."})),
            &mounts,
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(ids(&out), ["sub/b.md"]);
        assert_eq!(out["total_documents"], 2, "the non-UTF-8 file is skipped");
        assert_eq!(
            out["documents"][0]["snippet"],
            "Kubernetes pods restart when probes fail"
        );
    }

    #[test]
    fn bad_inputs_are_invalid_input_errors() {
        let m = Mounts::default();
        let cases = [
            json!({"documents_json": "[]"}),
            json!({"query": "x"}),
            json!({"query": "x", "documents_json": "not json"}),
            json!({"query": "x", "documents_json": "[{\"id\": 1}]"}),
            json!({"query": "x", "documents_json": "[]", "directory": "/d"}),
            json!({"query": "x", "documents_json": "[]", "backend": "remote_api"}),
            json!({"query": "x", "documents_json": "[]", "top_k": "many"}),
        ];
        for case in cases {
            assert!(
                matches!(
                    run(&inputs(case.clone()), &m),
                    Err(GuestError::InvalidInput(_))
                ),
                "{case}"
            );
        }
        assert!(matches!(
            run(&inputs(json!({"query": "x", "directory": "/etc"})), &m),
            Err(GuestError::Denied(_))
        ));
    }
}
