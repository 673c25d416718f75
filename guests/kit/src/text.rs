//! Text from bytes read out of files: UTF-8 validation with an ASCII run
//! checked thirty-two bytes per loop turn.
//!
//! `String::from_utf8` checks ASCII a machine word at a time, and a word is
//! four bytes in wasm32: a 25 MB corpus took it 8.5 ms in the retrieval
//! guest. Corpora are mostly ASCII, so their ASCII run is checked here as
//! 64-bit words (a machine word each on 64-bit hosts), and only what
//! follows the first non-ASCII byte goes through `str::from_utf8`.

use std::string::FromUtf8Error;

/// `bytes` as a `String`, or the error `String::from_utf8` gives for them.
pub fn utf8(bytes: Vec<u8>) -> Result<String, FromUtf8Error> {
    let ascii = ascii_prefix(&bytes);
    if std::str::from_utf8(&bytes[ascii..]).is_err() {
        return String::from_utf8(bytes);
    }
    // SAFETY: `bytes[..ascii]` is ASCII and `bytes[ascii..]` is valid UTF-8
    // starting at a character boundary (after an ASCII byte, or at the
    // start), so all of `bytes` is valid UTF-8.
    Ok(unsafe { String::from_utf8_unchecked(bytes) })
}

/// The length of the ASCII run that `bytes` starts with.
fn ascii_prefix(bytes: &[u8]) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let (blocks, _) = bytes.as_chunks::<32>();
    let word = |block: &[u8; 32], i: usize| {
        u64::from_le_bytes(block[i * 8..i * 8 + 8].try_into().expect("eight bytes"))
    };
    let ascii_blocks = blocks
        .iter()
        .take_while(|block| {
            (word(block, 0) | word(block, 1) | word(block, 2) | word(block, 3)) & HIGH == 0
        })
        .count();
    let done = ascii_blocks * 32;
    done + bytes[done..].iter().take_while(|b| b.is_ascii()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_prefix(bytes: &[u8]) -> usize {
        bytes
            .iter()
            .position(|b| !b.is_ascii())
            .unwrap_or(bytes.len())
    }

    fn agrees_with_std(bytes: &[u8]) {
        assert_eq!(ascii_prefix(bytes), reference_prefix(bytes), "{bytes:?}");
        match (utf8(bytes.to_vec()), String::from_utf8(bytes.to_vec())) {
            (Ok(ours), Ok(std)) => assert_eq!(ours, std),
            (Err(ours), Err(std)) => {
                assert_eq!(ours.utf8_error(), std.utf8_error());
                assert_eq!(ours.into_bytes(), bytes);
            }
            (ours, std) => panic!("{bytes:?}: ours {ours:?}, std {std:?}"),
        }
    }

    #[test]
    fn every_byte_value_at_every_position_of_two_blocks_and_a_tail_is_judged_as_std_judges_it() {
        let ascii: Vec<u8> = (0..75u8).map(|i| b'a' + i % 26).collect();
        for at in 0..ascii.len() {
            for value in 0..=255u8 {
                let mut bytes = ascii.clone();
                bytes[at] = value;
                agrees_with_std(&bytes);
            }
        }
    }

    #[test]
    fn characters_of_every_width_across_block_edges_are_valid() {
        for ch in ['é', '€', '𝄞'] {
            for at in 24..40 {
                let mut text = "x".repeat(at);
                text.push(ch);
                text.push_str(&"y".repeat(40));
                agrees_with_std(text.as_bytes());
            }
        }
    }

    #[test]
    fn a_character_cut_short_or_an_overlong_form_after_the_ascii_run_is_refused() {
        let mut cut = "z".repeat(64).into_bytes();
        cut.extend_from_slice(&"€".as_bytes()[..2]);
        agrees_with_std(&cut);
        let mut overlong = "z".repeat(33).into_bytes();
        overlong.extend_from_slice(&[0xc0, 0xaf]);
        agrees_with_std(&overlong);
        let mut surrogate = "z".repeat(31).into_bytes();
        surrogate.extend_from_slice(&[0xed, 0xa0, 0x80]);
        agrees_with_std(&surrogate);
    }

    #[test]
    fn empty_and_short_inputs_are_judged_as_std_judges_them() {
        agrees_with_std(b"");
        agrees_with_std(b"a");
        agrees_with_std(&[0xff]);
        agrees_with_std("ü".as_bytes());
    }
}
