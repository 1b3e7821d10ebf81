//! GPT-2's pre-tokenizer without a regex engine: the pieces of
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, the pattern of
//! the `tokenizers` library's `ByteLevel` pre-tokenizer, found by a hand-written scanner.
//!
//! A character's class (letter, number, whitespace, other) is asked of Oniguruma, the engine
//! `tokenizers` runs that pattern with, so both agree on every code point whatever Unicode
//! version each was built with: a plane at a time, the first time one of its characters is met
//! (asking per character beyond the first plane cost emoji-rich text a fifth of its time).

use std::sync::OnceLock;

use super::split_pattern::charset::ClassTable;

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

/// Calls `piece` with each piece of `text`, in order; together they are `text`.
pub(crate) fn split_gpt2<'t>(text: &'t str, mut piece: impl FnMut(&'t str)) {
    let classes = classes();
    let mut start = 0;
    while start < text.len() {
        let end = start + piece_len(&text[start..], classes);
        piece(&text[start..end]);
        start = end;
    }
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
}
