//! GPT-2's pre-tokenizer without a regex engine: the pieces of
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, the pattern of
//! the `tokenizers` library's `ByteLevel` pre-tokenizer, found by a hand-written scanner.
//!
//! A character's class (letter, number, whitespace, other) is asked of Oniguruma, the engine
//! `tokenizers` runs that pattern with, so both agree on every code point whatever Unicode
//! version each was built with: a plane at a time, the first time one of its characters is met
//! (asking per character beyond the first plane cost emoji-rich text a fifth of its time).

use std::sync::OnceLock;

use super::ascii_masks::{AsciiMasks, BLOCK};
use super::split_pattern::charset::{self, ClassTable};

/// What the pattern distinguishes about a character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Class {
    /// `\p{L}`.
    Letter,
    /// `\p{N}`.
    Number,
    /// `\s`.
    Space,
    /// Anything else: `[^\s\p{L}\p{N}]`.
    Other,
}

/// Each character's class, Oniguruma's verdict.
fn classes() -> &'static ClassTable<Class> {
    static CLASSES: OnceLock<ClassTable<Class>> = OnceLock::new();
    CLASSES.get_or_init(|| {
        ClassTable::new(&[r"\p{L}", r"\p{N}", r"\s"], |sets, c| {
            if sets[0].contains(c) {
                Class::Letter
            } else if sets[1].contains(c) {
                Class::Number
            } else if sets[2].contains(c) {
                Class::Space
            } else {
                Class::Other
            }
        })
    })
}

/// Builds the class table on a thread of its own (see [`charset::build_in_background`]).
pub(crate) fn prepare() {
    charset::build_in_background(|| {
        classes();
    });
}

/// Calls `piece` with each piece of `text`, in order; together they are `text`.
pub(crate) fn split_gpt2<'t>(text: &'t str, mut piece: impl FnMut(&'t str)) {
    let classes = classes();
    let blocks = ascii_agrees(classes);
    let mut start = 0;
    while start < text.len() {
        if blocks {
            let block = text.as_bytes().get(start..start + BLOCK);
            // A block that starts outside ASCII gives no start: the masks are not worth reading.
            if let Some(block) = block.filter(|block| block[..3].is_ascii()) {
                let starts = piece_starts(block.try_into().expect("a block"));
                if starts != 0 {
                    // Each piece runs to the next start; the last start leads the next block.
                    let mut from = 0;
                    let mut rest = starts;
                    while rest != 0 {
                        let to = rest.trailing_zeros() as usize;
                        piece(&text[start + from..start + to]);
                        from = to;
                        rest &= rest - 1;
                    }
                    start += from;
                    continue;
                }
            }
        }
        let end = start + piece_len(&text[start..], classes);
        piece(&text[start..end]);
        start = end;
    }
}

/// Whether Oniguruma's classes of the ASCII characters are those of the masks [`piece_starts`]
/// reads (they are; a Unicode revision that changed them would turn the blocks off, not give
/// other pieces).
fn ascii_agrees(classes: &ClassTable<Class>) -> bool {
    static AGREES: OnceLock<bool> = OnceLock::new();
    *AGREES.get_or_init(|| {
        let ascii: Vec<u8> = (0..128).collect();
        (ascii.chunks_exact(BLOCK)).all(|block| {
            let masks = AsciiMasks::of(block.try_into().expect("a block"));
            block.iter().enumerate().all(|(j, &b)| {
                let has = |mask: u64| mask >> j & 1 == 1;
                let class = if has(masks.letter) {
                    Class::Letter
                } else if has(masks.digit) {
                    Class::Number
                } else if has(masks.white) {
                    Class::Space
                } else {
                    Class::Other
                };
                classes.of(char::from(b)) == class
            })
        })
    })
}

/// The starts of the pieces after the first one in `block`, a block of text that starts a
/// piece, as bits (bit `j`: a piece starts at byte `j`); only starts whose pieces are known from
/// the block's bytes alone are given (0: none), so every bit is a start of `text`'s pieces.
///
/// With the block's classes (letter, number, whitespace, other: neither), a piece starts at a
/// byte that does not continue a run of its own class, except a non-space after a space (` ?X+`
/// takes the space), and at the last whitespace of a run before a non-space (`\s+(?!\S)` leaves
/// it to lead the next piece); an apostrophe that starts a piece and is followed by one of
/// GPT-2's contractions makes them one piece.
fn piece_starts(block: &[u8; BLOCK]) -> u64 {
    let masks = AsciiMasks::of(block);
    // A start at `j` depends on bytes `j - 1` to `j + 2`: it is known when byte `j + 1` is ASCII
    // and in the block (a contraction past the end reads as none, and the piece it would start
    // is the block's last in any case).
    let last_known = match masks.ascii_len() {
        0..=2 => return 0,
        ascii => ascii - 2,
    };
    let known = (2u64 << last_known) - 2;
    let AsciiMasks {
        letter,
        digit,
        white,
        space,
        apostrophe,
        ..
    } = masks;
    let other = !(letter | digit | white);
    let continues = letter & letter << 1 | digit & digit << 1 | other & other << 1;
    let non_white = !white & !continues & !(space << 1);
    let white = white & (!(white << 1) | !(white >> 1));
    let mut starts = (non_white | white) & known;
    // The block's own first byte starts a piece too.
    let mut candidates = (starts | 1) & apostrophe;
    while candidates != 0 {
        let at = candidates.trailing_zeros() as usize;
        candidates &= candidates - 1;
        let len = match (block[at + 1], block.get(at + 2)) {
            (b's' | b't' | b'm' | b'd', _) => 2,
            (b'r' | b'v', Some(b'e')) | (b'l', Some(b'l')) => 3,
            _ => continue,
        };
        if at + len > last_known {
            // Where the piece after the contraction starts is not known: it leads the next block.
            starts &= (2 << at) - 1;
            break;
        }
        // The letters join the apostrophe; the next piece starts where they end.
        starts &= !(((1 << len) - 2) << at);
        starts |= 1 << (at + len);
    }
    starts
}

/// Byte length of the piece at the start of `rest` (not empty).
fn piece_len(rest: &str, classes: &ClassTable<Class>) -> usize {
    const CONTRACTIONS: [&str; 7] = ["s", "t", "re", "ve", "m", "ll", "d"];
    let mut chars = rest.chars();
    let first = chars.next().expect("a piece starts before the end");
    if first == '\'' {
        if let Some(c) = CONTRACTIONS.iter().find(|c| rest[1..].starts_with(*c)) {
            return 1 + c.len();
        }
    }
    // ` ?X+`: an optional space, then a run of one class (not whitespace).
    let (offset, lead) = match (first, chars.next()) {
        (' ', Some(next)) if classes.of(next) != Class::Space => (1, next),
        _ => (0, first),
    };
    let class = classes.of(lead);
    if class != Class::Space {
        return classes.run_end(rest, offset, |c| c == class);
    }
    // `\s+(?!\S)|\s+`: a whitespace run; before a non-space, all of it but its last character
    // (which then leads the next piece) unless it is one character.
    let mut run = rest
        .char_indices()
        .take_while(|&(_, c)| classes.of(c) == Class::Space);
    let (mut last_start, mut end) = (0, 0);
    let mut count = 0;
    for (i, c) in run.by_ref() {
        last_start = i;
        end = i + c.len_utf8();
        count += 1;
    }
    if end == rest.len() || count == 1 {
        end
    } else {
        last_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onig::Regex;

    fn pieces(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        split_gpt2(text, |p| out.push(p));
        out
    }

    /// The pieces Oniguruma finds with the pattern itself.
    fn reference(text: &str) -> Vec<&str> {
        let regex = Regex::new(
            r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
        )
        .unwrap();
        regex.find_iter(text).map(|(a, b)| &text[a..b]).collect()
    }

    #[test]
    fn pieces_are_the_patterns_matches() {
        for text in [
            "Hello world",
            "  leading, and trailing  ",
            "don't you'll we've I'm they're he'd 'sam ''s",
            "tabs\tand\nnewlines\n\n  x",
            "numbers 1234567 3.14159 ١٢٣ Ⅻ ½",
            "unicode: café naïve 日本語 🙂 emoji e\u{301}",
            "\u{a0}nbsp\u{2003}em\u{3000}ideo",
            "end with space ",
            " ",
            "...!!! ?? (x) [y] {z}",
        ] {
            assert_eq!(pieces(text), reference(text), "{text:?}");
        }
    }

    /// Texts long enough to be read in blocks, each piece start at every offset of a block:
    /// words, numbers, runs of every kind of whitespace, contractions (some cut by a block's
    /// end), apostrophes that start no contraction, runs longer than a block, and characters
    /// outside ASCII (whitespace among them).
    #[test]
    fn pieces_read_in_blocks_are_the_patterns_matches() {
        // Blocks are read at all: Oniguruma's ASCII classes are the masks'.
        assert!(ascii_agrees(classes()));
        let words = [
            "the", " the", "  ", " ", "\t", "\n", "\r\n", " \n", "\u{b}", "\u{c}", "'s", "'t",
            "'re", "'ve", "'m", "'ll", "'d", "'", "''", "'x", "'r", "'l", "'v", " '", "don't",
            "12", " 3", "4,5", "...", " !?", "(", "a", "é", " é", "\u{a0}", "\u{3000}", "日本",
            "🙂", "x\u{301}",
        ];
        let long = [
            "a".repeat(70),
            " ".repeat(70),
            "7".repeat(65),
            "-".repeat(66),
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for round in 0..3000 {
            let mut text = " ".repeat(round % 5);
            while text.len() < 40 + round % 200 {
                state = crate::util::splitmix64(state);
                let k = (state % (words.len() as u64 + 4)) as usize;
                match words.get(k) {
                    Some(word) => text.push_str(word),
                    None if (state >> 32).is_multiple_of(3) => {
                        text.push_str(&long[k - words.len()]);
                    }
                    None => text.push_str(" word"),
                }
            }
            assert_eq!(pieces(&text), reference(&text), "{text:?}");
        }
    }
}
