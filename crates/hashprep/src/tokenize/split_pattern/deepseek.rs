//! `DeepSeek`-V3/V4's pre-tokenizer, its three `Split`s met verbatim in this order, by one
//! hand-written pass over the text's bytes (as GPT-2's):
//!
//! ```text
//! \p{N}{1,3}                                          (1) numbers, three at a time
//! [一-龥\u3040-ゟ゠-ヿ]+                                (2) CJK ideographs and kana
//! [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+      (3A) ASCII punctuation, ASCII letters
//! |[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+               (3B) a word, maybe one character before
//! | ?[\p{P}\p{S}]+[\r\n]*                             (3C) punctuation and symbols
//! |\s*[\r\n]+                                         (3D) whitespace up to its last line break
//! |\s+(?!\S)|\s+                                     (3E, 3F) whitespace
//! ```
//!
//! Each `Split` cuts every piece of the one before, so a number character ends every stretch
//! of the later splits, and a CJK character every stretch of the last: the text falls into
//! number groups (which the other two leave whole: a number is no letter, mark, punctuation,
//! symbol, space or CJK character, which [`classes`] checks), runs of CJK characters and runs
//! of other characters, and the word pattern splits each run as if it were the whole text (a
//! lookahead sees nothing past it). Each branch below is the first way Oniguruma's
//! backtracking finds for its alternative; the characters' classes are asked of Oniguruma.

use std::sync::OnceLock;

use super::charset::{self, ClassTable};

/// The class of CJK characters that the second pattern is a run of.
macro_rules! cjk_class {
    () => {
        "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]"
    };
}
pub(super) const CJK_CLASS: &str = cjk_class!();

/// The three patterns, as `DeepSeek`'s `tokenizer.json` holds them.
pub(crate) const PATTERNS: [&str; 3] = [
    r"\p{N}{1,3}",
    concat!(cjk_class!(), "+"),
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
];

const LETTER: u8 = 1;
const MARK: u8 = 2;
const PUNCTUATION: u8 = 4;
const SYMBOL: u8 = 8;
const SPACE: u8 = 16;
const NUMBER: u8 = 32;
const CJK: u8 = 64;
/// Neither a number nor CJK.
const PLAIN: u8 = 128;

/// Each character's classes, as bits.
fn classes() -> &'static ClassTable<u8> {
    static CLASSES: OnceLock<ClassTable<u8>> = OnceLock::new();
    CLASSES.get_or_init(|| {
        let table = ClassTable::new(
            &[
                r"\p{L}", r"\p{M}", r"\p{P}", r"\p{S}", r"\s", r"\p{N}", CJK_CLASS,
            ],
            |sets, c| {
                let bits = (sets.iter())
                    .zip([LETTER, MARK, PUNCTUATION, SYMBOL, SPACE, NUMBER, CJK])
                    .filter(|(set, _)| set.contains(c))
                    .fold(0, |bits, (_, bit)| bits | bit);
                if bits & (NUMBER | CJK) == 0 {
                    bits | PLAIN
                } else {
                    bits
                }
            },
        );
        // Unicode's general categories are disjoint and no space is a number; if a future
        // Oniguruma disagreed, number groups would no longer pass the later splits whole.
        assert!(
            (0..0x1_0000u32)
                .filter_map(char::from_u32)
                .all(|c| table.of(c) & NUMBER == 0 || table.of(c) == NUMBER),
            "a number character in another class"
        );
        table
    })
}

/// Builds the class table on a thread of its own (see [`charset::build_in_background`]).
pub(crate) fn prepare() {
    charset::build_in_background(|| {
        classes();
    });
}

/// A text, read a character's classes at a time, within a run of characters of one of
/// `region`'s bits: a character outside it ends the text as far as the scan can tell.
#[derive(Clone, Copy)]
struct Scan<'t> {
    text: &'t str,
    classes: &'static ClassTable<u8>,
    ascii: &'static [u8; 128],
    region: u8,
}

impl<'t> Scan<'t> {
    /// All of `text` (every character is a number, CJK or neither).
    fn new(text: &'t str) -> Self {
        let classes = classes();
        Self {
            text,
            classes,
            ascii: classes.ascii(),
            region: NUMBER | CJK | PLAIN,
        }
    }

    /// The same text, within the run of characters of one of `region`'s bits.
    fn within(self, region: u8) -> Self {
        Self { region, ..self }
    }

    /// The classes of the character at byte `at` and its length, if one is there and in the
    /// region.
    #[inline]
    fn class_at(self, at: usize) -> Option<(u8, usize)> {
        (self.classes.class_at(self.text, at)).filter(|&(class, _)| class & self.region != 0)
    }

    /// Whether the character at byte `at` has one of `bits`.
    #[inline]
    fn is(self, at: usize, bits: u8) -> bool {
        self.class_at(at)
            .is_some_and(|(class, _)| class & bits != 0)
    }

    /// Where the run of characters with one of `bits` that starts at byte `at` ends.
    #[inline]
    fn run(self, at: usize, bits: u8) -> usize {
        (self.classes).run_end(self.text, at, |class| {
            class & bits != 0 && class & self.region != 0
        })
    }

    /// Where the run of ASCII bytes in the region that pass `test` from `at` ends.
    #[inline]
    fn byte_run(self, mut at: usize, test: impl Fn(u8) -> bool) -> usize {
        let in_region = |b: u8| b.is_ascii() && self.ascii[usize::from(b)] & self.region != 0;
        while (self.text.as_bytes().get(at)).is_some_and(|&b| test(b) && in_region(b)) {
            at += 1;
        }
        at
    }
}

/// Calls `piece` with each piece of `text` after the three splits, in order.
pub(crate) fn split(text: &str, piece: &mut dyn FnMut(&str)) {
    let text = Scan::new(text);
    let mut at = 0;
    while let Some((class, len)) = text.class_at(at) {
        if class & NUMBER != 0 {
            let mut end = at + len;
            for _ in 1..3 {
                match text.class_at(end) {
                    Some((class, len)) if class & NUMBER != 0 => end += len,
                    _ => break,
                }
            }
            piece(&text.text[at..end]);
            at = end;
        } else {
            // A run of CJK characters (none is a number), or of neither.
            at = split_words(text.within(class & (CJK | PLAIN)), at, piece);
        }
    }
}

/// The word pattern's pieces of the region's run that starts at byte `from` (under
/// `Isolated`: each match and each stretch between); returns where the run ends.
fn split_words(run: Scan, from: usize, piece: &mut dyn FnMut(&str)) -> usize {
    let (mut start, mut unmatched) = (from, from);
    while let Some((_, len)) = run.class_at(start) {
        match word_match_end(run, start) {
            Some(end) => {
                if unmatched < start {
                    piece(&run.text[unmatched..start]);
                }
                piece(&run.text[start..end]);
                (start, unmatched) = (end, end);
            }
            None => start += len,
        }
    }
    if unmatched < start {
        piece(&run.text[unmatched..start]);
    }
    start
}

/// Where the word pattern's match that starts at byte `at` of `text` ends, if one does.
fn word_match_end(text: Scan, at: usize) -> Option<usize> {
    let (c0, len0) = text.class_at(at)?;
    let b0 = text.text.as_bytes()[at];
    let is_break = |b: u8| b == b'\r' || b == b'\n';
    let line_break = |i: usize| text.text.as_bytes().get(i).is_some_and(|&b| is_break(b));
    // (3A)
    if b0.is_ascii_punctuation()
        && text
            .text
            .as_bytes()
            .get(at + 1)
            .is_some_and(u8::is_ascii_alphabetic)
    {
        return Some(text.byte_run(at + 1, |b| b.is_ascii_alphabetic()));
    }
    // (3B): the optional character is anything but a line break, letter, punctuation or symbol.
    let lead = !is_break(b0) && c0 & (LETTER | PUNCTUATION | SYMBOL) == 0;
    if lead && text.is(at + len0, LETTER | MARK) {
        return Some(text.run(at + len0, LETTER | MARK));
    }
    if c0 & (LETTER | MARK) != 0 {
        return Some(text.run(at, LETTER | MARK));
    }
    // (3C)
    let marks_from = if b0 == b' ' && text.is(at + 1, PUNCTUATION | SYMBOL) {
        Some(at + 1)
    } else {
        (c0 & (PUNCTUATION | SYMBOL) != 0).then_some(at)
    };
    if let Some(from) = marks_from {
        return Some(text.byte_run(text.run(from, PUNCTUATION | SYMBOL), is_break));
    }
    // (3D): the whitespace run, up to and with its last line break.
    let (mut end, mut last_start, mut last_break) = (at, at, None);
    while let Some((class, len)) = text.class_at(end) {
        if class & SPACE == 0 {
            break;
        }
        if line_break(end) {
            last_break = Some(end);
        }
        (last_start, end) = (end, end + len);
    }
    if let Some(last_break) = last_break {
        return Some(last_break + 1);
    }
    // (3E), (3F): a run of two or more before a non-space keeps its last space for what follows.
    if end == at {
        None
    } else if last_start == at || text.class_at(end).is_none() {
        Some(end)
    } else {
        Some(last_start)
    }
}
