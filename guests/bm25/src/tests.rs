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
fn words_are_split_and_lower_cased_as_character_by_character() {
    fn reference(text: &str) -> Vec<String> {
        let (mut words, mut word) = (Vec::new(), String::new());
        for ch in text.chars() {
            if ch.is_ascii_alphanumeric() {
                word.push(ch.to_ascii_lowercase());
            } else if !ch.is_ascii() && ch.is_alphanumeric() {
                word.extend(ch.to_lowercase());
            } else if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        }
        words.extend((!word.is_empty()).then_some(word));
        words
    }
    let t = Tokenizer::default();
    for text in [
        "",
        "plain words only",
        "Mixed CASE words, x2 and 3d",
        "trailingUpper",
        "lowerThenÉcole naïve—dash ß",
        "—leading dash… and ellipsis…",
        "  spaces\tand\nnewlines  ",
        "a1b2C3 ΔΕΛΤΑ δelta",
        "emoji 😀 between😀words",
        "ends in ü",
        "internationalization of supercalifragilistic words",
        "exactly8 sixteen1sixteen2 seventeen1234567 x",
        "abcdefgH abcdefghIjklmnop abcdefgh{ abcdefgh` abcdefgh/ abcdefgh:",
        "abcdefghéabcdefgh abcdefgh😀 0123456789abcdefghijklmnopqrstuvwxyz",
    ] {
        let mut words = Vec::new();
        t.for_each_word(text, |w| words.push(w.to_string()));
        assert_eq!(words, reference(text), "{text:?}");
    }
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
    assert_eq!(index.words.get("the"), Some(None));
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

#[test]
fn every_document_keeps_its_own_id_empty_ones_included() {
    let mut index = Index::default();
    for (id, text) in [("b", "x"), ("", "x"), ("aa", "x"), ("a", "x")] {
        index.add(id, text);
    }
    let ids: Vec<&str> = (0..index.len()).map(|d| index.doc_id(d)).collect();
    assert_eq!(ids, ["b", "", "aa", "a"]);
    let order: Vec<usize> = index
        .search("x", 4, |_| true)
        .iter()
        .map(|h| h.index)
        .collect();
    assert_eq!(order, [1, 3, 2, 0], "equal scores fall back to id order");
}

#[test]
fn eight_bytes_are_plain_exactly_when_each_is_a_lower_case_letter_or_digit() {
    for b in 0..=255u8 {
        for at in 0..8 {
            let mut chunk = *b"abcz0919";
            chunk[at] = b;
            assert_eq!(
                crate::all_plain(u64::from_le_bytes(chunk)),
                crate::is_plain(b),
                "byte {b:#04x} at {at}"
            );
        }
    }
}

#[test]
fn a_score_is_the_bm25_formula_summed_over_the_query_terms() {
    let mut index = Index::default();
    index.add("one", "alpha");
    index.add("three", "alpha beta gamma");
    index.add("twice", "alpha alpha beta");
    index.add("long", &format!("alpha{}", " filler".repeat(5000)));
    let avg_len = (1 + 3 + 3 + 5001) as f64 / 4.0;
    let bm25 = |df: f64, tf: f64, length: usize| {
        let idf = (1.0 + (4.0 - df + 0.5) / (df + 0.5)).ln();
        let norm = 1.0 - DEFAULT_B + DEFAULT_B * length as f64 / avg_len;
        idf * tf * (DEFAULT_K1 + 1.0) / (tf + DEFAULT_K1 * norm)
    };
    let scores = |query: &str| {
        let mut hits = index.search(query, 4, |_| true);
        hits.sort_by_key(|hit| hit.index);
        hits.iter().map(|hit| hit.score).collect::<Vec<f64>>()
    };
    assert_eq!(
        scores("alpha"),
        [
            bm25(4.0, 1.0, 1),
            bm25(4.0, 1.0, 3),
            bm25(4.0, 2.0, 3),
            bm25(4.0, 1.0, 5001)
        ]
    );
    assert_eq!(
        scores("alpha beta"),
        [
            bm25(4.0, 1.0, 1),
            bm25(4.0, 1.0, 3) + bm25(2.0, 1.0, 3),
            bm25(4.0, 2.0, 3) + bm25(2.0, 1.0, 3),
            bm25(4.0, 1.0, 5001)
        ]
    );
}
