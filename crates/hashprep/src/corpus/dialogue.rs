//! Dialogue examples that share their texts. In a Reddit thread a comment's body is the response
//! of its own example and a context turn of every reply below it (up to the context length), so
//! the examples of a partition name their turns by index into one table of texts, and each text
//! is encoded at most once however many examples use it, whichever worker gets there first.

use std::ops::Range;
use std::sync::OnceLock;

use super::{Example, Source};
use crate::error::Result;

/// The texts of a set of dialogue examples (a Reddit partition), with their ids once encoded,
/// and the examples' context turns back to back (one allocation, not one per example).
#[derive(Debug)]
pub(crate) struct SharedTexts {
    texts: Vec<String>,
    turns: Vec<usize>,
    encoded: Vec<OnceLock<EncodedText>>,
}

/// A text's ids and the special-token strings written in it.
#[derive(Debug)]
pub(crate) struct EncodedText {
    pub(crate) ids: Vec<u32>,
    pub(crate) special_strings: u64,
}

impl SharedTexts {
    /// `texts`, and `turns`: the text indices [`Dialogue::context`] ranges over.
    pub(crate) fn new(texts: Vec<String>, turns: Vec<usize>) -> Self {
        let encoded = texts.iter().map(|_| OnceLock::new()).collect();
        Self {
            texts,
            turns,
            encoded,
        }
    }

    pub(crate) fn text(&self, index: usize) -> &str {
        &self.texts[index]
    }

    /// The text indices of a dialogue's context turns, oldest first.
    pub(crate) fn context(&self, dialogue: &Dialogue) -> &[usize] {
        &self.turns[dialogue.context.clone()]
    }

    /// The encoding of text `index`: `encode`'s result the first time, kept for every later
    /// use. Two workers reaching a new text together may both encode it; one result is kept
    /// (encoding is a function of the text, so they are equal).
    ///
    /// # Errors
    /// What `encode` returns.
    pub(crate) fn encoded(
        &self,
        index: usize,
        encode: impl FnOnce(&str) -> Result<EncodedText>,
    ) -> Result<&EncodedText> {
        let cell = &self.encoded[index];
        if let Some(done) = cell.get() {
            return Ok(done);
        }
        let fresh = encode(self.text(index))?;
        Ok(cell.get_or_init(|| fresh))
    }
}

/// One dialogue example: its context turns (oldest first) and response as indices into the
/// [`SharedTexts`] it travels with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dialogue {
    pub(crate) source: Source,
    /// Where its context turns are in [`SharedTexts`]' turns.
    pub(crate) context: Range<usize>,
    pub(crate) response: usize,
    /// Bytes of text in the example, context included (counted where the texts are at hand,
    /// not by whoever sizes chunks of examples).
    pub(crate) text_bytes: usize,
}

impl Dialogue {
    /// The example with its texts copied out.
    pub(crate) fn to_example(&self, texts: &SharedTexts) -> Example {
        Example {
            context: (texts.context(self).iter())
                .map(|&i| texts.text(i).to_owned())
                .collect(),
            text: texts.text(self.response).to_owned(),
            source: Some(self.source.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn each_text_is_encoded_once_across_threads() {
        let texts = SharedTexts::new(vec!["a".into(), "bb".into(), "ccc".into()], Vec::new());
        let calls = AtomicUsize::new(0);
        let encode = |text: &str| {
            calls.fetch_add(1, Ordering::Relaxed);
            Ok(EncodedText {
                ids: vec![text.len() as u32; text.len()],
                special_strings: 0,
            })
        };
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        for i in [2, 0, 1] {
                            let e = texts.encoded(i, encode).unwrap();
                            assert_eq!(e.ids, vec![i as u32 + 1; i + 1]);
                        }
                    }
                });
            }
        });
        // At most one extra encoding per text, when both threads met it first together.
        assert!((3..=6).contains(&calls.load(Ordering::Relaxed)));
    }

    #[test]
    fn a_failed_encoding_is_returned_and_not_kept() {
        let texts = SharedTexts::new(vec!["x".into()], Vec::new());
        let failed = texts.encoded(0, |_| Err(crate::error::Error::BadInput("no".into())));
        assert!(failed.is_err());
        let ok = texts.encoded(0, |t| {
            Ok(EncodedText {
                ids: vec![t.len() as u32],
                special_strings: 2,
            })
        });
        assert_eq!(ok.unwrap().special_strings, 2);
    }

    #[test]
    fn an_example_copies_its_turns_in_order() {
        let texts = SharedTexts::new(vec!["t".into(), "a".into(), "b".into()], vec![2, 0, 1]);
        let dialogue = Dialogue {
            source: Source {
                id: "b".into(),
                subreddit: "r".into(),
            },
            context: 1..3,
            response: 2,
            text_bytes: 3,
        };
        let example = dialogue.to_example(&texts);
        assert_eq!(example.context, vec!["t", "a"]);
        assert_eq!(example.text, "b");
        assert_eq!(example.source.unwrap().id, "b");
    }
}
