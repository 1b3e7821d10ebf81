//! `DeepSeek`-V3/V4's word pattern, met verbatim, by a hand-written scanner (as GPT-2's):
//!
//! ```text
//! [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+      (A) ASCII punctuation, ASCII letters
//! |[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+               (B) a word, maybe one character before
//! | ?[\p{P}\p{S}]+[\r\n]*                             (C) punctuation and symbols
//! |\s*[\r\n]+                                         (D) whitespace up to its last line break
//! |\s+(?!\S)|\s+                                     (E, F) whitespace
//! ```
//!
//! Each branch below is the first way Oniguruma's backtracking finds for its alternative. The
//! characters' classes are asked of Oniguruma ([`CharSet`]).

use std::sync::OnceLock;

use super::charset::ClassTable;

/// The pattern, as `DeepSeek`'s `tokenizer.json` holds it.
pub(super) const PATTERN: &str = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

const LETTER: u8 = 1;
const MARK: u8 = 2;
const PUNCTUATION: u8 = 4;
const SYMBOL: u8 = 8;
const SPACE: u8 = 16;

/// Each character's classes, as bits.
fn classes() -> &'static ClassTable<u8> {
    static CLASSES: OnceLock<ClassTable<u8>> = OnceLock::new();
    CLASSES.get_or_init(|| {
        ClassTable::new(
            &[r"\p{L}", r"\p{M}", r"\p{P}", r"\p{S}", r"\s"],
            |sets, c| {
                (sets.iter().zip([LETTER, MARK, PUNCTUATION, SYMBOL, SPACE]))
                    .filter(|(set, _)| set.contains(c))
                    .fold(0, |bits, (_, bit)| bits | bit)
            },
        )
    })
}

/// Where the match starting at `chars[at]` ends, if one does.
pub(super) fn match_end(chars: &[char], at: usize) -> Option<usize> {
    let classes = classes();
    let is = |i: usize, bits: u8| chars.get(i).is_some_and(|&c| classes.of(c) & bits != 0);
    let run = |from: usize, test: &dyn Fn(usize) -> bool| {
        (from..chars.len())
            .find(|&i| !test(i))
            .unwrap_or(chars.len())
    };
    let c0 = chars[at];
    let line_break = |i: usize| matches!(chars.get(i), Some('\r' | '\n'));
    // (A)
    if c0.is_ascii_punctuation() && chars.get(at + 1).is_some_and(char::is_ascii_alphabetic) {
        return Some(run(at + 1, &|i| chars[i].is_ascii_alphabetic()));
    }
    // (B): the optional character is anything but a line break, letter, punctuation or symbol.
    let word = |i: usize| is(i, LETTER | MARK);
    let lead = !line_break(at) && !is(at, LETTER | PUNCTUATION | SYMBOL);
    if lead && word(at + 1) {
        return Some(run(at + 1, &word));
    }
    if word(at) {
        return Some(run(at, &word));
    }
    // (C)
    let mark = |i: usize| is(i, PUNCTUATION | SYMBOL);
    let marks_from = if c0 == ' ' && mark(at + 1) {
        Some(at + 1)
    } else {
        mark(at).then_some(at)
    };
    if let Some(from) = marks_from {
        return Some(run(run(from, &mark), &line_break));
    }
    // (D): the whitespace run, up to and with its last line break.
    let space_end = run(at, &|i| is(i, SPACE));
    if let Some(last_break) = (at..space_end).rev().find(|&i| line_break(i)) {
        return Some(last_break + 1);
    }
    // (E), (F)
    match space_end - at {
        0 => None,
        1 => Some(space_end),
        _ if space_end == chars.len() => Some(space_end),
        _ => Some(space_end - 1),
    }
}
