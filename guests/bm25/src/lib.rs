//! Okapi BM25 ranking over an in-memory inverted index.
//!
//! Text is tokenized into lower-case alphanumeric words, English stop words
//! are dropped and the rest are reduced to their Snowball (Porter 2) stems, so
//! "Running" matches "runs". Scores use the non-negative IDF
//! `ln(1 + (N - df + 0.5) / (df + 0.5))` with the usual `k1` and `b`. Ties are
//! broken by document id, then by insertion order, so a ranking is the same
//! on every run and every machine.

mod stored;
mod words;

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
    /// lower-cased), in order, before stop words and stemming. A word of
    /// lower-case ASCII letters and digits is passed as the slice of `text`
    /// it is; only others are lower-cased into a buffer.
    pub fn for_each_word(&self, text: &str, mut f: impl FnMut(&str)) {
        let bytes = text.as_bytes();
        let mut buffer = String::new();
        let mut at = 0;
        while let Some(&b) = bytes.get(at) {
            if is_plain(b) {
                let start = at;
                at = plain_run_end(bytes, at);
                match bytes.get(at) {
                    Some(&next) if next.is_ascii_alphanumeric() || !next.is_ascii() => {
                        at = lower_cased_word(text, start, &mut buffer, &mut f);
                    }
                    _ => f(&text[start..at]),
                }
            } else if b.is_ascii() && !b.is_ascii_alphanumeric() {
                at += 1;
            } else {
                at = lower_cased_word(text, at, &mut buffer, &mut f);
            }
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

/// Where the run of lower-case ASCII letters and digits at `at` ends:
/// eight bytes at a time while all eight are such, then byte by byte (a
/// loop turn costs more in the guest, where each one checks fuel and the
/// epoch).
fn plain_run_end(bytes: &[u8], mut at: usize) -> usize {
    while let Some(chunk) = bytes.get(at..at + 8) {
        if !all_plain(u64::from_le_bytes(chunk.try_into().expect("8 bytes"))) {
            break;
        }
        at += 8;
    }
    while bytes.get(at).copied().is_some_and(is_plain) {
        at += 1;
    }
    at
}

/// Whether `b` is a lower-case ASCII letter or digit: a byte a word can be
/// passed on without lower-casing.
fn is_plain(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Whether all eight bytes of `x` are lower-case ASCII letters or digits.
/// For an ASCII byte `b`, `b + (0x80 - lo)` has its high bit set exactly
/// when `b >= lo`, and `b + (0x7f - hi)` exactly when `b > hi`; no sum
/// carries into the next byte (a non-ASCII byte fails the first test).
fn all_plain(x: u64) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let each = |b: u8| u64::from_ne_bytes([b; 8]);
    let within =
        |lo: u8, hi: u8| x.wrapping_add(each(0x80 - lo)) & !x.wrapping_add(each(0x7f - hi));
    x & HIGH == 0 && (within(b'a', b'z') | within(b'0', b'9')) & HIGH == HIGH
}

/// Reads the word at `start` of `text` character by character, lower-cased
/// into `buffer`, calls `f` with it (unless it is empty: `start` is at a
/// character that is not part of a word), and returns where the next one
/// may start.
fn lower_cased_word(
    text: &str,
    start: usize,
    buffer: &mut String,
    f: &mut impl FnMut(&str),
) -> usize {
    buffer.clear();
    let mut end = text.len();
    for (i, ch) in text[start..].char_indices() {
        if ch.is_ascii_alphanumeric() {
            buffer.push(ch.to_ascii_lowercase());
        } else if !ch.is_ascii() && ch.is_alphanumeric() {
            buffer.extend(ch.to_lowercase());
        } else {
            end = start + i + if buffer.is_empty() { ch.len_utf8() } else { 0 };
            break;
        }
    }
    if !buffer.is_empty() {
        f(buffer);
    }
    end
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
    words: words::Words,
    /// Postings per term id: (document index, term frequency).
    postings: Vec<Vec<(u32, u32)>>,
    doc_lengths: Vec<u32>,
    /// Every document's id, one after another (one allocation, not one
    /// per document), and where each ends.
    ids: String,
    id_ends: Vec<usize>,
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
            words: words::Words::default(),
            postings: Vec::new(),
            doc_lengths: Vec::new(),
            ids: String::new(),
            id_ends: Vec::new(),
            total_length: 0,
        }
    }

    /// Number of documents indexed.
    pub fn len(&self) -> usize {
        self.id_ends.len()
    }

    /// Whether no document was added.
    pub fn is_empty(&self) -> bool {
        self.id_ends.is_empty()
    }

    /// The id of document `doc`.
    fn doc_id(&self, doc: usize) -> &str {
        let start = doc.checked_sub(1).map_or(0, |before| self.id_ends[before]);
        &self.ids[start..self.id_ends[doc]]
    }

    /// Adds a document; `id` is used only to break score ties.
    pub fn add(&mut self, id: &str, text: &str) {
        let doc = self.len() as u32;
        let mut length = 0u32;
        let (tokenizer, words, terms, postings) = (
            &self.tokenizer,
            &mut self.words,
            &mut self.terms,
            &mut self.postings,
        );
        tokenizer.for_each_word(text, |word| {
            let known = match words.get(word) {
                Some(known) => known,
                None => {
                    let id = tokenizer.term(word).map(|term| {
                        let next = terms.len() as u32;
                        *terms.entry(term.into_owned()).or_insert_with(|| {
                            postings.push(Vec::new());
                            next
                        })
                    });
                    words.insert(word, id);
                    id
                }
            };
            if let Some(term) = known {
                // Documents are added in order: this document's posting, if
                // the term occurred in it before, is the list's last.
                let list = &mut postings[term as usize];
                match list.last_mut() {
                    Some((last, tf)) if *last == doc => *tf += 1,
                    _ => list.push((doc, 1)),
                }
                length += 1;
            }
        });
        self.doc_lengths.push(length);
        self.ids.push_str(id);
        self.id_ends.push(self.ids.len());
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
        let mut scores = Scores::new(self.k1, self.b, self.total_length, &self.doc_lengths);
        for term in self.query_terms(query) {
            if let Some(&id) = self.terms.get(&term) {
                let postings = &self.postings[id as usize];
                let idf = scores.idf(postings.len());
                for &(doc, tf) in postings {
                    scores.add(idf, doc, tf);
                }
            }
        }
        scores.best(top_k, keep, |a, b| {
            self.doc_id(a).cmp(self.doc_id(b)).then(a.cmp(&b))
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

/// Every document's score, in memory or stored, as the postings of the
/// distinct query terms are added to it in query order (so an index read
/// from a file sums in the same order and gives the same scores).
struct Scores<'a> {
    k1: f64,
    b: f64,
    avg_len: f64,
    doc_lengths: &'a [u32],
    scores: Vec<f64>,
}

impl<'a> Scores<'a> {
    /// A score of zero for each of the documents whose lengths are
    /// `doc_lengths`, `total_length` in all.
    fn new(k1: f64, b: f64, total_length: u64, doc_lengths: &'a [u32]) -> Self {
        let docs = doc_lengths.len();
        Self {
            k1,
            b,
            avg_len: (total_length as f64 / docs.max(1) as f64).max(1.0),
            doc_lengths,
            scores: vec![0.0; docs],
        }
    }

    /// The inverse document frequency of a term found in `df` documents.
    fn idf(&self, df: usize) -> f64 {
        let (n, df) = (self.doc_lengths.len() as f64, df as f64);
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// Adds the posting of a term with `idf` for `doc`, where the term
    /// occurs `tf` times; a document this index does not hold is skipped.
    #[inline]
    fn add(&mut self, idf: f64, doc: u32, tf: u32) {
        let Some(&length) = self.doc_lengths.get(doc as usize) else {
            return;
        };
        let (k1, b, tf) = (self.k1, self.b, f64::from(tf));
        let norm = 1.0 - b + b * f64::from(length) / self.avg_len;
        self.scores[doc as usize] += idf * tf * (k1 + 1.0) / (tf + k1 * norm);
    }

    /// The best `top_k` of the documents `keep` accepts with a score above
    /// zero, best first, ties broken by `tie`.
    fn best(
        self,
        top_k: usize,
        keep: impl Fn(usize) -> bool,
        tie: impl Fn(usize, usize) -> Ordering,
    ) -> Vec<Hit> {
        if top_k == 0 {
            return Vec::new();
        }
        let order = |a: &Hit, b: &Hit| {
            b.score
                .partial_cmp(&a.score)
                .unwrap_or(Ordering::Equal)
                .then_with(|| tie(a.index, b.index))
        };
        let scored = self
            .scores
            .into_iter()
            .enumerate()
            .filter(|&(index, score)| score > 0.0 && keep(index))
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
mod tests;
