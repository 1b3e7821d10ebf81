//! A `Split` pre-tokenizer's regex without a regex library: the pattern parsed into the
//! constructs of [`parse`] (anything else is refused), each one-character atom's characters
//! asked of Oniguruma ([`charset`]), and matched in the families' flat shape ([`flat`]:
//! alternatives of runs, fixed strings and one-character lookaheads; a quantified or nested
//! group is refused, which also keeps matching free of deep recursion and blow-ups) by
//! backtracking in Oniguruma's order (the first alternative that leads to a match, quantifiers
//! greedy unless lazy), so that the pieces are those `tokenizers` finds: its `find_iter` takes
//! the leftmost match, then searches on from its end; `Isolated` keeps each match and each
//! stretch between matches as a piece.

use std::ops::Range;

pub(super) mod charset;
pub(crate) mod deepseek;
mod flat;
mod parse;

use charset::{folds_to_one_character, CharSet};
use flat::{Atom, Flat, Item};
use parse::Ast;

/// A `Split` pattern, ready to cut text into pieces.
pub(crate) struct SplitPattern {
    flat: Flat,
    /// Where known, the atoms one of which a match's first character is in, and as a bitmap
    /// for ASCII: other starts are passed over without trying the pattern.
    first: Option<(Vec<Atom>, u128)>,
    sets: Vec<CharSet>,
}

impl SplitPattern {
    /// Compiles `pattern`.
    ///
    /// # Errors
    /// What it holds that the scanner does not reproduce.
    pub(crate) fn new(pattern: &str) -> Result<Self, String> {
        let ast = parse::parse(pattern)?;
        check_case_folds(&ast)?;
        let mut sources: Vec<String> = Vec::new();
        let flat = Flat::of(&ast, &mut sources).ok_or(
            "a quantified or nested group (only alternatives of runs of one class, choices of \
             fixed strings and one-character lookaheads are reproduced)",
        )?;
        let sets = sources
            .iter()
            .map(|source| CharSet::new(source))
            .collect::<Result<Vec<_>, _>>()?;
        let first = flat.first_atoms().map(|atoms| {
            let ascii = (0..128u8).fold(0u128, |bits, b| {
                let hit = atoms.iter().any(|&a| atom_matches(&sets, a, char::from(b)));
                bits | u128::from(hit) << b
            });
            (atoms, ascii)
        });
        Ok(Self { flat, first, sets })
    }

    /// Calls `piece` with each piece of `text` in order, as `Isolated` splits it: each match
    /// and each stretch between matches; together they are `text`.
    #[cfg(test)]
    pub(crate) fn split<'t>(&self, text: &'t str, mut piece: impl FnMut(&'t str)) {
        with_decoded(text, |decoded| {
            self.split_range(&decoded.chars, 0..decoded.chars.len(), |range| {
                piece(&text[decoded.offsets[range.start]..decoded.offsets[range.end]]);
            });
        });
    }

    /// As [`Self::split`], on `chars[range]` (the piece alone: a lookahead sees no further),
    /// the pieces given as ranges of `chars`.
    pub(crate) fn split_range(
        &self,
        chars: &[char],
        range: Range<usize>,
        mut piece: impl FnMut(Range<usize>),
    ) {
        let base = range.start;
        let chars = &chars[range];
        let mut unmatched = 0;
        let mut start = 0;
        while start < chars.len() {
            if !self.may_start(chars[start]) {
                start += 1;
                continue;
            }
            match self.match_at(chars, start) {
                Some(end) => {
                    if unmatched < start {
                        piece(base + unmatched..base + start);
                    }
                    piece(base + start..base + end);
                    (start, unmatched) = (end, end);
                }
                None => start += 1,
            }
        }
        if unmatched < chars.len() {
            piece(base + unmatched..base + chars.len());
        }
    }

    /// The end of the match that starts at `chars[start]`, if one does.
    fn match_at(&self, chars: &[char], start: usize) -> Option<usize> {
        (self.flat.alternatives.iter()).find_map(|items| self.flat_matches(items, chars, start))
    }

    /// Matches the flat sequence `items` from `at`: where the first way that matches ends.
    fn flat_matches(&self, items: &[Item], text: &[char], at: usize) -> Option<usize> {
        let Some((item, rest)) = items.split_first() else {
            return Some(at);
        };
        match item {
            Item::Run {
                atom,
                min,
                max,
                greedy,
            } => {
                let run = (text[at..].iter())
                    .take(*max as usize)
                    .take_while(|&&c| self.atom(*atom, c))
                    .count();
                let min = *min as usize;
                if run < min {
                    None
                } else if *greedy {
                    (min..=run)
                        .rev()
                        .find_map(|n| self.flat_matches(rest, text, at + n))
                } else {
                    (min..=run).find_map(|n| self.flat_matches(rest, text, at + n))
                }
            }
            Item::Choice { options, optional } => (options.iter())
                .filter(|option| {
                    text.len() - at >= option.len()
                        && (option.iter().zip(&text[at..])).all(|(&a, &c)| self.atom(a, c))
                })
                .find_map(|option| self.flat_matches(rest, text, at + option.len()))
                .or_else(|| {
                    optional
                        .then(|| self.flat_matches(rest, text, at))
                        .flatten()
                }),
            Item::LookOne { atom, negate } => {
                let found = text.get(at).is_some_and(|&c| self.atom(*atom, c));
                if found == *negate {
                    None
                } else {
                    self.flat_matches(rest, text, at)
                }
            }
        }
    }

    #[inline]
    fn atom(&self, atom: Atom, c: char) -> bool {
        atom_matches(&self.sets, atom, c)
    }

    /// Whether `text` holds no match for certain without trying: no match can start with an
    /// ASCII character (`DeepSeek`'s CJK pattern) and the text is all ASCII, which a wide
    /// byte scan tells.
    pub(crate) fn passes_over(&self, text: &str) -> bool {
        matches!(&self.first, Some((_, 0))) && text.is_ascii()
    }

    /// Whether a match may start with `c`.
    #[inline]
    fn may_start(&self, c: char) -> bool {
        match &self.first {
            None => true,
            Some((_, ascii)) if c.is_ascii() => ascii >> (c as u32) & 1 == 1,
            Some((atoms, _)) => atoms.iter().any(|&a| self.atom(a, c)),
        }
    }
}

#[inline]
fn atom_matches(sets: &[CharSet], atom: Atom, c: char) -> bool {
    match atom {
        Atom::Set(set) => sets[set].contains(c),
        Atom::Char(expected) => c == expected,
    }
}

/// A text decoded into characters, with each one's byte offset (and one more: its length).
#[derive(Default)]
pub(crate) struct Decoded {
    pub(crate) chars: Vec<char>,
    pub(crate) offsets: Vec<usize>,
}

thread_local! {
    /// Spare buffers for decoding (one text may be decoded while another is split).
    static BUFFERS: std::cell::RefCell<Vec<Decoded>> = const {
        std::cell::RefCell::new(Vec::new())
    };
}

/// Calls `f` with `text` decoded, in a buffer of the thread's.
pub(crate) fn with_decoded<R>(text: &str, f: impl FnOnce(&Decoded) -> R) -> R {
    let mut decoded = BUFFERS.with_borrow_mut(Vec::pop).unwrap_or_default();
    decoded.chars.clear();
    decoded.offsets.clear();
    for (at, c) in text.char_indices() {
        decoded.chars.push(c);
        decoded.offsets.push(at);
    }
    decoded.offsets.push(text.len());
    let result = f(&decoded);
    BUFFERS.with_borrow_mut(|pool| pool.push(decoded));
    result
}

/// Refuses a case-insensitive run of characters that Oniguruma would let one character match
/// (`(?i:ss)` matches `ß`).
fn check_case_folds(ast: &Ast) -> Result<(), String> {
    let folded = |node: &Ast| match node {
        Ast::Class(source) => source
            .strip_prefix("(?i:")
            .and_then(|s| s.strip_suffix(')'))
            .map(str::to_owned),
        Ast::Char(c) => Some(c.to_string()),
        _ => None,
    };
    match ast {
        Ast::Concat(nodes) => {
            let is_folded = |n: &Ast| matches!(n, Ast::Class(s) if s.starts_with("(?i:"));
            for len in 2..=3 {
                for run in nodes.windows(len).filter(|run| run.iter().any(is_folded)) {
                    let Some(literal) = run.iter().map(folded).collect::<Option<String>>() else {
                        continue;
                    };
                    if folds_to_one_character(&literal) {
                        return Err(format!(
                            "(?i:{literal}) is matched by one character (a multi-character case fold)"
                        ));
                    }
                }
            }
            nodes.iter().try_for_each(check_case_folds)
        }
        Ast::Alt(nodes) => nodes.iter().try_for_each(check_case_folds),
        Ast::Repeat { node, .. } | Ast::Look { node, .. } => check_case_folds(node),
        Ast::Class(_) | Ast::Char(_) => Ok(()),
    }
}

#[cfg(test)]
pub(super) mod tests;
