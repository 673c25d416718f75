//! Okapi BM25 ranking over an in-memory inverted index.
//!
//! Text is tokenized into lower-case alphanumeric words, English stop words
//! are dropped and the rest are reduced to their Snowball (Porter 2) stems, so
//! "Running" matches "runs". Scores use the non-negative IDF
//! `ln(1 + (N - df + 0.5) / (df + 0.5))` with the usual `k1` and `b`. Ties are
//! broken by document id, then by insertion order, so a ranking is the same
//! on every run and every machine.

mod stored;

pub use stored::StoredIndex;

use rust_stemmers::{Algorithm, Stemmer};
use std::borrow::Cow;
use std::cmp::Ordering;

/// BM25 term-frequency saturation.
pub const DEFAULT_K1: f64 = 1.2;
/// BM25 length normalisation.
pub const DEFAULT_B: f64 = 0.75;

const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "he",
    "her", "his", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on",
    "or", "our", "she", "so", "such", "than", "that", "the", "their", "them", "then", "there",
    "these", "they", "this", "to", "was", "we", "were", "what", "when", "which", "who", "will",
    "with", "you", "your",
];

/// Splits text into normalised terms (lower-case, stop words dropped, stemmed).
pub struct Tokenizer {
    stemmer: Stemmer,
}

impl Default for Tokenizer {
    fn default() -> Self {
        Self {
            stemmer: Stemmer::create(Algorithm::English),
        }
    }
}

impl Tokenizer {
    /// Calls `f` with each word of `text` (a run of alphanumeric characters,
    /// lower-cased), in order, before stop words and stemming.
    pub fn for_each_word(&self, text: &str, mut f: impl FnMut(&str)) {
        let mut word = String::new();
        for ch in text.chars() {
            if ch.is_ascii_alphanumeric() {
                word.push(ch.to_ascii_lowercase());
            } else if !ch.is_ascii() && ch.is_alphanumeric() {
                word.extend(ch.to_lowercase());
            } else if !word.is_empty() {
                f(&word);
                word.clear();
            }
        }
        if !word.is_empty() {
            f(&word);
        }
    }

    /// The term a lower-cased word stands for: its stem, or `None` for a
    /// stop word.
    pub fn term<'a>(&self, word: &'a str) -> Option<Cow<'a, str>> {
        (!STOP_WORDS.contains(&word)).then(|| self.stemmer.stem(word))
    }

    /// Calls `f` with each term of `text`, in order.
    pub fn for_each_term(&self, text: &str, mut f: impl FnMut(&str)) {
        self.for_each_word(text, |word| {
            if let Some(term) = self.term(word) {
                f(&term);
            }
        });
    }

    /// The terms of `text`, in order.
    pub fn terms(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.for_each_term(text, |t| out.push(t.to_string()));
        out
    }
}

/// One ranked document.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Position of the document in insertion order.
    pub index: usize,
    /// BM25 score (higher is more relevant; always > 0 for a hit).
    pub score: f64,
}

/// An inverted index over documents added with [`Index::add`].
pub struct Index {
    tokenizer: Tokenizer,
    k1: f64,
    b: f64,
    /// Term → term id (foldhash rather than SipHash: indexing looks up
    /// every word occurrence, and the keys are short).
    terms: foldhash::HashMap<String, u32>,
    /// Every word seen so far and its term id (`None`: a stop word), so a
    /// word is stemmed once per index, not once per occurrence.
    words: foldhash::HashMap<String, Option<u32>>,
    /// Term ids of the document being added (reused buffer).
    scratch: Vec<u32>,
    /// Postings per term id: (document index, term frequency).
    postings: Vec<Vec<(u32, u32)>>,
    doc_lengths: Vec<u32>,
    doc_ids: Vec<String>,
    total_length: u64,
}

impl Default for Index {
    fn default() -> Self {
        Self::new(DEFAULT_K1, DEFAULT_B)
    }
}

impl Index {
    /// An empty index with the given BM25 parameters.
    pub fn new(k1: f64, b: f64) -> Self {
        Self {
            tokenizer: Tokenizer::default(),
            k1,
            b,
            terms: foldhash::HashMap::default(),
            words: foldhash::HashMap::default(),
            scratch: Vec::new(),
            postings: Vec::new(),
            doc_lengths: Vec::new(),
            doc_ids: Vec::new(),
            total_length: 0,
        }
    }

    /// Number of documents indexed.
    pub fn len(&self) -> usize {
        self.doc_ids.len()
    }

    /// Whether no document was added.
    pub fn is_empty(&self) -> bool {
        self.doc_ids.is_empty()
    }

    /// Adds a document; `id` is used only to break score ties.
    pub fn add(&mut self, id: &str, text: &str) {
        let doc = self.doc_ids.len() as u32;
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        let (tokenizer, words, terms, postings) = (
            &self.tokenizer,
            &mut self.words,
            &mut self.terms,
            &mut self.postings,
        );
        tokenizer.for_each_word(text, |word| {
            let known = match words.get(word) {
                Some(known) => *known,
                None => {
                    let id = tokenizer.term(word).map(|term| {
                        let next = terms.len() as u32;
                        *terms.entry(term.into_owned()).or_insert_with(|| {
                            postings.push(Vec::new());
                            next
                        })
                    });
                    words.insert(word.to_owned(), id);
                    id
                }
            };
            ids.extend(known);
        });
        let length = ids.len() as u32;
        ids.sort_unstable();
        for run in ids.chunk_by(|a, b| a == b) {
            self.postings[run[0] as usize].push((doc, run.len() as u32));
        }
        self.scratch = ids;
        self.doc_lengths.push(length);
        self.doc_ids.push(id.to_string());
        self.total_length += u64::from(length);
    }

    /// The distinct terms of `query`, in order.
    pub fn query_terms(&self, query: &str) -> Vec<String> {
        distinct_terms(&self.tokenizer, query)
    }

    /// Ranks the documents that `keep` accepts against `query` and returns
    /// at most `top_k` hits, best first. Documents without any query term are
    /// never returned.
    pub fn search(&self, query: &str, top_k: usize, keep: impl Fn(usize) -> bool) -> Vec<Hit> {
        let postings = self
            .query_terms(query)
            .into_iter()
            .filter_map(|term| self.terms.get(&term))
            .map(|&id| self.postings[id as usize].as_slice());
        let stats = Stats {
            k1: self.k1,
            b: self.b,
            total_length: self.total_length,
            doc_lengths: &self.doc_lengths,
        };
        stats.rank(postings, top_k, keep, |a, b| {
            self.doc_ids[a].cmp(&self.doc_ids[b]).then(a.cmp(&b))
        })
    }
}

/// The distinct terms of `text`, in order.
fn distinct_terms(tokenizer: &Tokenizer, text: &str) -> Vec<String> {
    let mut seen = Vec::new();
    tokenizer.for_each_term(text, |t| {
        if !seen.iter().any(|s: &String| s == t) {
            seen.push(t.to_string());
        }
    });
    seen
}

/// What scoring needs of an index, in memory or stored.
struct Stats<'a> {
    k1: f64,
    b: f64,
    total_length: u64,
    doc_lengths: &'a [u32],
}

impl Stats<'_> {
    /// Scores the documents `keep` accepts over the postings of each
    /// distinct query term, in query order (so an index read from a file
    /// sums in the same order and gives the same scores), and returns the
    /// best `top_k`, ties broken by `tie`.
    fn rank<'p>(
        &self,
        postings: impl Iterator<Item = &'p [(u32, u32)]>,
        top_k: usize,
        keep: impl Fn(usize) -> bool,
        tie: impl Fn(usize, usize) -> Ordering,
    ) -> Vec<Hit> {
        let docs = self.doc_lengths.len();
        if docs == 0 || top_k == 0 {
            return Vec::new();
        }
        let n = docs as f64;
        let avg_len = (self.total_length as f64 / n).max(1.0);
        let mut scores = vec![0.0f64; docs];
        for postings in postings {
            let df = postings.len() as f64;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(doc, tf) in postings {
                let Some(&length) = self.doc_lengths.get(doc as usize) else {
                    continue;
                };
                if !keep(doc as usize) {
                    continue;
                }
                let tf = f64::from(tf);
                let norm = 1.0 - self.b + self.b * f64::from(length) / avg_len;
                scores[doc as usize] += idf * tf * (self.k1 + 1.0) / (tf + self.k1 * norm);
            }
        }
        let order = |a: &Hit, b: &Hit| {
            b.score
                .partial_cmp(&a.score)
                .unwrap_or(Ordering::Equal)
                .then_with(|| tie(a.index, b.index))
        };
        let scored = scores
            .into_iter()
            .enumerate()
            .filter(|(_, s)| *s > 0.0)
            .map(|(index, score)| Hit { index, score });
        if top_k <= SMALL_TOP_K {
            return best_of(scored, top_k, order);
        }
        let mut hits: Vec<Hit> = scored.collect();
        if hits.len() > top_k {
            hits.select_nth_unstable_by(top_k - 1, order);
            hits.truncate(top_k);
        }
        hits.sort_by(order);
        hits
    }
}

/// Up to this many results are picked by insertion into a sorted list;
/// more by a partial sort of every hit.
const SMALL_TOP_K: usize = 256;

/// The first `k` of `hits` by `order`, sorted: most hits are compared once,
/// with the worst of those kept so far.
fn best_of(
    hits: impl Iterator<Item = Hit>,
    k: usize,
    order: impl Fn(&Hit, &Hit) -> Ordering,
) -> Vec<Hit> {
    let mut best: Vec<Hit> = Vec::with_capacity(k + 1);
    for hit in hits {
        if best.len() == k
            && best
                .last()
                .is_some_and(|worst| order(&hit, worst) != Ordering::Less)
        {
            continue;
        }
        let at = best.partition_point(|kept| order(kept, &hit) == Ordering::Less);
        best.insert(at, hit);
        best.truncate(k);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Index {
        let mut index = Index::default();
        index.add(
            "cats",
            "Cats are small domesticated carnivorous mammals that purr.",
        );
        index.add(
            "rust",
            "Rust is a systems programming language focused on memory safety and speed.",
        );
        index.add(
            "wasm",
            "WebAssembly runs sandboxed code; Rust compiles to WebAssembly components.",
        );
        index.add(
            "cooking",
            "Slow cooking keeps stews tender; season the stew at the end.",
        );
        index.add("dogs", "Dogs are loyal mammals; a dog barks and runs fast.");
        index
    }

    #[test]
    fn tokenizer_lowercases_stems_and_drops_stop_words() {
        let t = Tokenizer::default();
        assert_eq!(
            t.terms("The Running dogs ran, and RUNS!"),
            ["run", "dog", "ran", "run"]
        );
        assert!(t.terms("the of and").is_empty());
    }

    #[test]
    fn non_ascii_words_are_lower_cased_whole() {
        let t = Tokenizer::default();
        let mut words = Vec::new();
        t.for_each_word("ÉCOLE straße—Δelta x2", |w| words.push(w.to_string()));
        assert_eq!(words, ["école", "straße", "δelta", "x2"]);
    }

    #[test]
    fn a_repeated_word_counts_every_occurrence_and_stop_words_none() {
        let mut index = Index::default();
        index.add("a", "Runs the run; RUNNING runs.");
        index.add("b", "the running of the dogs");
        assert_eq!(index.doc_lengths, [4, 2]);
        let run = index.terms["run"] as usize;
        assert_eq!(index.postings[run], [(0, 4), (1, 1)]);
        let dog = index.terms["dog"] as usize;
        assert_eq!(index.postings[dog], [(1, 1)]);
        assert!(!index.terms.contains_key("the"));
        assert_eq!(index.words.get("the"), Some(&None));
    }

    #[test]
    fn ranks_the_relevant_document_first() {
        let index = corpus();
        let hits = index.search("memory-safe systems programming language", 3, |_| true);
        assert_eq!(hits[0].index, 1, "{hits:?}");
        let hits = index.search("stew seasoning", 3, |_| true);
        assert_eq!(hits[0].index, 3);
        assert_eq!(
            hits.len(),
            1,
            "documents without a query term are not returned"
        );
        let hits = index.search("running dog", 5, |_| true);
        assert_eq!(hits[0].index, 4);
    }

    #[test]
    fn rare_terms_weigh_more_than_common_ones() {
        let index = corpus();
        let hits = index.search("mammals purr", 5, |_| true);
        assert_eq!(hits[0].index, 0, "purr is rarer than mammals: {hits:?}");
        assert!(hits[0].score > hits[1].score);
    }

    #[test]
    fn ties_break_by_id_then_order_and_filters_apply() {
        let mut index = Index::default();
        for id in ["b", "a", "c"] {
            index.add(id, "same words here");
        }
        let hits = index.search("words", 3, |_| true);
        let ids: Vec<usize> = hits.iter().map(|h| h.index).collect();
        assert_eq!(ids, [1, 0, 2]);
        let filtered = index.search("words", 3, |i| i != 1);
        assert_eq!(filtered.iter().map(|h| h.index).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(index.search("words", 1, |_| true).len(), 1);
    }

    #[test]
    fn any_top_k_is_a_prefix_of_the_full_ranking() {
        let mut index = Index::default();
        let words = ["lease", "timeout", "retry", "queue", "node", "cache"];
        for i in 0..600usize {
            let text: Vec<&str> = (0..1 + i % 7)
                .map(|j| words[(i * 7 + j * 3) % words.len()])
                .collect();
            index.add(&format!("d{:03}", (i * 37) % 600), &text.join(" "));
        }
        let all = index.search("lease retry cache", 600, |_| true);
        assert!(all.len() > 300, "{}", all.len());
        for k in [1, 10, SMALL_TOP_K, SMALL_TOP_K + 1, 600] {
            let top = index.search("lease retry cache", k, |_| true);
            assert_eq!(top, all[..k.min(all.len())], "top {k}");
        }
    }

    #[test]
    fn empty_index_and_zero_top_k_return_nothing() {
        assert!(Index::default().search("x", 5, |_| true).is_empty());
        assert!(corpus().search("rust", 0, |_| true).is_empty());
    }
}
