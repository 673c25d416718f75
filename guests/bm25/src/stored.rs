//! An index written out once and searched from a file afterwards (the
//! retrieval guest's cached index). Opening reads the header, the term
//! table, the document lengths and the id order; a search reads only the
//! postings of its query terms, and the caller reads the records of the
//! documents it returns. Rankings equal those of the in-memory [`Index`].
//!
//! Layout, little-endian: magic, document and term counts, total length,
//! `k1`, `b`, the byte sizes of the variable sections; then the term table
//! (sorted by term: string offset, string length, postings offset, postings
//! bytes, posting count), the term strings, a length per document, a
//! tie-break rank per document (its place in id order), the postings (per
//! term, LEB128 varints of the document's distance from the previous one
//! and of the frequency), the records, and one record offset per document
//! plus the end.

use crate::{Hit, Index, Scores, Tokenizer};
use std::io::{self, Read, Seek, SeekFrom};

const MAGIC: &[u8; 8] = b"WNBM25\x00\x02";
const HEADER_BYTES: u64 = 8 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 8;
const TERM_ENTRY_BYTES: usize = 4 + 4 + 8 + 4 + 4;

impl Index {
    /// The index as bytes for [`StoredIndex`], with `record(doc, out)`
    /// appending what the caller wants back for each document (its id, text
    /// and metadata, say).
    pub fn to_bytes(&self, mut record: impl FnMut(usize, &mut Vec<u8>)) -> Vec<u8> {
        let mut terms: Vec<(&str, u32)> =
            self.terms.iter().map(|(t, &id)| (t.as_str(), id)).collect();
        terms.sort_unstable();
        let strings_len: usize = terms.iter().map(|(t, _)| t.len()).sum();
        let postings: usize = self.postings.iter().map(Vec::len).sum();
        // Most varints take one byte; records take a few dozen bytes each.
        let mut out = Vec::with_capacity(
            HEADER_BYTES as usize
                + terms.len() * TERM_ENTRY_BYTES
                + strings_len
                + self.len() * (8 + 64 + 8)
                + postings * 2,
        );
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, self.len() as u32);
        put_u32(&mut out, terms.len() as u32);
        put_u64(&mut out, self.total_length);
        out.extend_from_slice(&self.k1.to_le_bytes());
        out.extend_from_slice(&self.b.to_le_bytes());
        put_u64(&mut out, strings_len as u64);
        // The postings' and records' sizes, and each term's postings offset
        // and size, are filled in once they are written.
        let postings_len_at = out.len();
        put_u64(&mut out, 0);
        let records_len_at = out.len();
        put_u64(&mut out, 0);
        let table_at = out.len();
        let mut string_at = 0u32;
        for (term, id) in &terms {
            put_u32(&mut out, string_at);
            put_u32(&mut out, term.len() as u32);
            put_u64(&mut out, 0);
            put_u32(&mut out, 0);
            put_u32(&mut out, self.postings[*id as usize].len() as u32);
            string_at += term.len() as u32;
        }
        for (term, _) in &terms {
            out.extend_from_slice(term.as_bytes());
        }
        for &length in &self.doc_lengths {
            put_u32(&mut out, length);
        }
        for rank in self.id_ranks() {
            put_u32(&mut out, rank);
        }
        let postings_at = out.len();
        for (i, (_, id)) in terms.iter().enumerate() {
            let start = out.len();
            let mut previous = 0;
            for &(doc, tf) in &self.postings[*id as usize] {
                put_varint(&mut out, doc - previous);
                put_varint(&mut out, tf);
                previous = doc;
            }
            let entry = table_at + i * TERM_ENTRY_BYTES;
            let (offset, len) = ((start - postings_at) as u64, (out.len() - start) as u32);
            out[entry + 8..entry + 16].copy_from_slice(&offset.to_le_bytes());
            out[entry + 16..entry + 20].copy_from_slice(&len.to_le_bytes());
        }
        let postings_len = (out.len() - postings_at) as u64;
        out[postings_len_at..postings_len_at + 8].copy_from_slice(&postings_len.to_le_bytes());
        let records_at = out.len();
        let mut offsets = Vec::with_capacity(self.len() + 1);
        for doc in 0..self.len() {
            offsets.push((out.len() - records_at) as u64);
            record(doc, &mut out);
        }
        let records_len = (out.len() - records_at) as u64;
        offsets.push(records_len);
        out[records_len_at..records_len_at + 8].copy_from_slice(&records_len.to_le_bytes());
        for offset in offsets {
            put_u64(&mut out, offset);
        }
        out
    }

    /// Each document's place in (id, insertion) order.
    fn id_ranks(&self) -> Vec<u32> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| self.doc_id(a).cmp(self.doc_id(b)).then(a.cmp(&b)));
        let mut ranks = vec![0u32; self.len()];
        for (rank, doc) in order.into_iter().enumerate() {
            ranks[doc] = rank as u32;
        }
        ranks
    }
}

/// An index written by [`Index::to_bytes`], searched where it lies.
pub struct StoredIndex<R> {
    reader: R,
    tokenizer: Tokenizer,
    k1: f64,
    b: f64,
    total_length: u64,
    term_table: Vec<u8>,
    strings: Vec<u8>,
    doc_lengths: Vec<u32>,
    id_ranks: Vec<u32>,
    postings_at: u64,
    postings_len: u64,
    records_at: u64,
    offsets_at: u64,
    records_len: u64,
}

impl<R: Read + Seek> StoredIndex<R> {
    /// Reads the parts every search needs; a file that is not a complete
    /// index of this format is an `InvalidData` error.
    pub fn open(mut reader: R) -> io::Result<Self> {
        let size = reader.seek(SeekFrom::End(0))?;
        reader.seek(SeekFrom::Start(0))?;
        let mut header = [0u8; HEADER_BYTES as usize];
        reader
            .read_exact(&mut header)
            .map_err(|_| invalid("too short"))?;
        if &header[..8] != MAGIC {
            return Err(invalid("not a wasmnode BM25 index of this version"));
        }
        let docs = u64::from(u32_at(&header, 8));
        let terms = u64::from(u32_at(&header, 12));
        let total_length = u64_at(&header, 16);
        let k1 = f64::from_bits(u64_at(&header, 24));
        let b = f64::from_bits(u64_at(&header, 32));
        let strings_len = u64_at(&header, 40);
        let postings_len = u64_at(&header, 48);
        let records_len = u64_at(&header, 56);
        let term_table_len = terms * TERM_ENTRY_BYTES as u64;
        let postings_at = (HEADER_BYTES + term_table_len + docs * 8)
            .checked_add(strings_len)
            .ok_or_else(|| invalid("term strings out of range"))?;
        let term_table = read_vec(&mut reader, term_table_len, size)?;
        let records_at = postings_at
            .checked_add(postings_len)
            .ok_or_else(|| invalid("postings size out of range"))?;
        let offsets_at = records_at
            .checked_add(records_len)
            .ok_or_else(|| invalid("record size out of range"))?;
        if offsets_at.checked_add((docs + 1) * 8) != Some(size) {
            return Err(invalid("its size does not match its header"));
        }
        let strings = read_vec(&mut reader, strings_len, size)?;
        let doc_lengths = u32s(&read_vec(&mut reader, docs * 4, size)?);
        let id_ranks = u32s(&read_vec(&mut reader, docs * 4, size)?);
        Ok(Self {
            reader,
            tokenizer: Tokenizer::default(),
            k1,
            b,
            total_length,
            term_table,
            strings,
            doc_lengths,
            id_ranks,
            postings_at,
            postings_len,
            records_at,
            offsets_at,
            records_len,
        })
    }

    /// Number of documents indexed.
    pub fn len(&self) -> usize {
        self.doc_lengths.len()
    }

    /// Whether the index holds no document.
    pub fn is_empty(&self) -> bool {
        self.doc_lengths.is_empty()
    }

    /// The distinct terms of `query`, as [`Index::query_terms`] gives them.
    pub fn query_terms(&self, query: &str) -> Vec<String> {
        crate::distinct_terms(&self.tokenizer, query)
    }

    /// Ranks as [`Index::search`] does, reading the postings of the query's terms.
    pub fn search(
        &mut self,
        query: &str,
        top_k: usize,
        keep: impl Fn(usize) -> bool,
    ) -> io::Result<Vec<Hit>> {
        let mut scores = Scores::new(self.k1, self.b, self.total_length, &self.doc_lengths);
        for term in self.query_terms(query) {
            let Some((at, len, count)) = self.lookup(&term)? else {
                continue;
            };
            if at
                .checked_add(len)
                .is_none_or(|end| end > self.postings_len)
            {
                return Err(invalid("a postings list is out of range"));
            }
            let bytes = read_at(&mut self.reader, self.postings_at + at, len)?;
            let idf = scores.idf(count as usize);
            decode_postings(&bytes, count, |doc, tf| scores.add(idf, doc, tf))?;
        }
        let ranks = &self.id_ranks;
        Ok(scores.best(top_k, keep, |a, b| ranks[a].cmp(&ranks[b])))
    }

    /// The record written for document `doc`.
    pub fn record(&mut self, doc: usize) -> io::Result<Vec<u8>> {
        if doc >= self.len() {
            return Err(invalid("no such document"));
        }
        let bounds = read_at(&mut self.reader, self.offsets_at + doc as u64 * 8, 16)?;
        let (start, end) = (u64_at(&bounds, 0), u64_at(&bounds, 8));
        if start > end || end > self.records_len {
            return Err(invalid("a record offset is out of range"));
        }
        read_at(&mut self.reader, self.records_at + start, end - start)
    }

    /// Every document's record, in insertion order.
    pub fn records(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let bounds = (self.len() as u64 + 1) * 8;
        let offsets = u64s(&read_at(&mut self.reader, self.offsets_at, bounds)?);
        let blob = read_at(&mut self.reader, self.records_at, self.records_len)?;
        offsets
            .windows(2)
            .map(|w| {
                blob.get(w[0] as usize..w[1] as usize)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| invalid("a record offset is out of range"))
            })
            .collect()
    }

    /// Where the postings of `term` lie (offset, bytes) and how many there
    /// are, by binary search of the sorted term table.
    fn lookup(&self, term: &str) -> io::Result<Option<(u64, u64, u32)>> {
        let entries = self.term_table.len() / TERM_ENTRY_BYTES;
        let (mut low, mut high) = (0, entries);
        while low < high {
            let mid = (low + high) / 2;
            let entry = &self.term_table[mid * TERM_ENTRY_BYTES..(mid + 1) * TERM_ENTRY_BYTES];
            let (at, len) = (u32_at(entry, 0) as usize, u32_at(entry, 4) as usize);
            let name = self
                .strings
                .get(at..at + len)
                .ok_or_else(|| invalid("a term string is out of range"))?;
            match name.cmp(term.as_bytes()) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => {
                    return Ok(Some((
                        u64_at(entry, 8),
                        u64::from(u32_at(entry, 16)),
                        u32_at(entry, 20),
                    )));
                }
            }
        }
        Ok(None)
    }
}

/// The `len` bytes at `at`.
fn read_at(reader: &mut (impl Read + Seek), at: u64, len: u64) -> io::Result<Vec<u8>> {
    reader.seek(SeekFrom::Start(at))?;
    let mut bytes = vec![0; usize::try_from(len).map_err(|_| invalid("too large"))?];
    reader
        .read_exact(&mut bytes)
        .map_err(|_| invalid("truncated"))?;
    Ok(bytes)
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("BM25 index file: {why}"),
    )
}

/// Reads `len` bytes at the current position, refusing lengths beyond the file.
fn read_vec(reader: &mut impl Read, len: u64, size: u64) -> io::Result<Vec<u8>> {
    if len > size {
        return Err(invalid("a section is larger than the file"));
    }
    let mut bytes = vec![0; len as usize];
    reader
        .read_exact(&mut bytes)
        .map_err(|_| invalid("truncated"))?;
    Ok(bytes)
}

/// Calls `posting(document, frequency)` for each of the `count` postings
/// written by [`Index::to_bytes`] in `bytes`.
fn decode_postings(bytes: &[u8], count: u32, mut posting: impl FnMut(u32, u32)) -> io::Result<()> {
    let (mut at, mut doc) = (0, 0u32);
    for _ in 0..count {
        let gap = varint(bytes, &mut at)?;
        let tf = varint(bytes, &mut at)?;
        doc = doc
            .checked_add(gap)
            .ok_or_else(|| invalid("a posting is out of range"))?;
        posting(doc, tf);
    }
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads the varint at `at`: most are one byte.
#[inline]
fn varint(bytes: &[u8], at: &mut usize) -> io::Result<u32> {
    match bytes.get(*at) {
        Some(&byte) if byte < 0x80 => {
            *at += 1;
            Ok(u32::from(byte))
        }
        _ => long_varint(bytes, at),
    }
}

fn long_varint(bytes: &[u8], at: &mut usize) -> io::Result<u32> {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        let byte = *bytes
            .get(*at)
            .ok_or_else(|| invalid("a postings list is truncated"))?;
        *at += 1;
        value |= u32::from(byte & 0x7f)
            .checked_shl(shift)
            .ok_or_else(|| invalid("a varint is too long"))?;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(invalid("a varint is too long"))
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks_exact(4).map(|c| u32_at(c, 0)).collect()
}

fn u64s(bytes: &[u8]) -> Vec<u64> {
    bytes.chunks_exact(8).map(|c| u64_at(c, 0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn index() -> Index {
        let mut index = Index::default();
        for (id, text) in [
            ("b", "Rust compiles to WebAssembly components"),
            ("a", "WebAssembly runs sandboxed code"),
            ("c", "WebAssembly runs sandboxed code"),
            ("d", "Slow cooking keeps stews tender"),
        ] {
            index.add(id, text);
        }
        index
    }

    fn stored(index: &Index) -> StoredIndex<Cursor<Vec<u8>>> {
        let bytes =
            index.to_bytes(|doc, out| out.extend_from_slice(format!("record {doc}").as_bytes()));
        StoredIndex::open(Cursor::new(bytes)).unwrap()
    }

    #[test]
    fn a_stored_index_ranks_exactly_as_the_index_it_was_written_from() {
        let index = index();
        let mut stored = stored(&index);
        assert_eq!(stored.len(), 4);
        for query in [
            "webassembly sandboxed",
            "rust",
            "stew",
            "nothing here",
            "code runs runs",
        ] {
            for top_k in [1, 2, 10] {
                assert_eq!(
                    stored.search(query, top_k, |_| true).unwrap(),
                    index.search(query, top_k, |_| true),
                    "{query} top {top_k}"
                );
            }
        }
        let kept = stored.search("webassembly", 10, |i| i != 1).unwrap();
        assert_eq!(kept, index.search("webassembly", 10, |i| i != 1));
        assert_eq!(
            stored.query_terms("Running dogs"),
            index.query_terms("Running dogs")
        );
    }

    #[test]
    fn large_gaps_and_frequencies_survive_the_varint_encoding() {
        let mut index = Index::default();
        for i in 0..300 {
            let text = match i {
                0 => "rare ".repeat(200),
                299 => "rare word".to_string(),
                _ => format!("filler {i}"),
            };
            index.add(&format!("d{i}"), &text);
        }
        let mut stored = stored(&index);
        let hits = stored.search("rare filler", 300, |_| true).unwrap();
        assert_eq!(hits, index.search("rare filler", 300, |_| true));
        assert_eq!(hits.len(), 300);
        assert_eq!(hits[0].index, 0);
    }

    #[test]
    fn records_come_back_as_written() {
        let mut stored = stored(&index());
        assert_eq!(stored.record(2).unwrap(), b"record 2");
        assert_eq!(stored.records().unwrap()[3], b"record 3");
        assert!(stored.record(4).is_err());
    }

    #[test]
    fn a_truncated_or_foreign_file_is_refused() {
        let bytes = index().to_bytes(|_, out| out.push(b'x'));
        for cut in [0, 7, 40, bytes.len() / 2, bytes.len() - 1] {
            let err = StoredIndex::open(Cursor::new(bytes[..cut].to_vec())).err();
            assert_eq!(
                err.map(|e| e.kind()),
                Some(io::ErrorKind::InvalidData),
                "cut at {cut}"
            );
        }
        let mut foreign = bytes.clone();
        foreign[7] = 1;
        assert!(StoredIndex::open(Cursor::new(foreign)).is_err());
        let empty = Index::default().to_bytes(|_, _| {});
        assert!(StoredIndex::open(Cursor::new(empty)).unwrap().is_empty());
    }
}
