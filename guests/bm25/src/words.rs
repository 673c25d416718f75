//! The words an index has seen and the term each stands for, looked up once
//! per word occurrence while indexing.
//!
//! A `HashMap<String, _>` compares a found key with `memcmp`, which the
//! wasm build gets from compiler-builtins as a byte-by-byte loop; here keys
//! are compared eight, four or one byte at a time (about an eighth of the
//! guest's indexing time went to `memcmp` before).

use hashbrown::HashTable;
use std::hash::BuildHasher;

/// Word → term id (`None`: a stop word).
#[derive(Default)]
pub(crate) struct Words {
    table: HashTable<(Box<str>, Option<u32>)>,
    hasher: foldhash::fast::RandomState,
}

impl Words {
    /// The term `word` stands for, if the word was seen before.
    pub(crate) fn get(&self, word: &str) -> Option<Option<u32>> {
        let hash = self.hasher.hash_one(word);
        self.table
            .find(hash, |(seen, _)| same(seen.as_bytes(), word.as_bytes()))
            .map(|(_, term)| *term)
    }

    /// Records the term of a word not seen before.
    pub(crate) fn insert(&mut self, word: &str, term: Option<u32>) {
        let hasher = &self.hasher;
        self.table
            .insert_unique(hasher.hash_one(word), (word.into(), term), |(seen, _)| {
                hasher.hash_one(&**seen)
            });
    }
}

/// Whether `a` and `b` hold the same bytes, compared a word at a time.
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let u64_at = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    let u32_at = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4"));
    match n {
        // The last eight bytes overlap the chunks before them when `n` is
        // not a multiple of eight.
        8.. => {
            (0..n / 8).all(|i| u64_at(a, i * 8) == u64_at(b, i * 8))
                && u64_at(a, n - 8) == u64_at(b, n - 8)
        }
        4..8 => u32_at(a, 0) == u32_at(b, 0) && u32_at(a, n - 4) == u32_at(b, n - 4),
        _ => a.iter().zip(b).all(|(x, y)| x == y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_compare_equal_exactly_when_they_are_equal() {
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abce",
            "abcde",
            "abcdf",
            "abcdefg",
            "abcdefh",
            "abcdefgh",
            "abcdefgi",
            "bbcdefgh",
            "abcdefghi",
            "abcdefghj",
            "abcdefghijklmnop",
            "abcdefghijklmnoq",
            "xbcdefghijklmnop",
            "abcdefghijklmnopq",
            "ß",
            "é",
        ];
        for a in words {
            for b in words {
                assert_eq!(same(a.as_bytes(), b.as_bytes()), a == b, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn a_word_is_found_with_the_term_it_was_inserted_with() {
        let mut words = Words::default();
        assert_eq!(words.get("running"), None);
        words.insert("running", Some(3));
        words.insert("the", None);
        for i in 0..1000 {
            words.insert(&format!("word{i}"), Some(i));
        }
        assert_eq!(words.get("running"), Some(Some(3)));
        assert_eq!(words.get("the"), Some(None));
        assert_eq!(words.get("word999"), Some(Some(999)));
        assert_eq!(words.get("runnin"), None);
        assert_eq!(words.get("word1000"), None);
    }
}
