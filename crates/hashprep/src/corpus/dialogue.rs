//! Dialogue examples that share their texts. In a Reddit thread a comment's body is the response
//! of its own example and a context turn of every reply below it (up to the context length), so
//! the examples of a partition name their turns by index into one table of texts, and each text
//! is encoded at most once however many examples use it, whichever worker gets there first.

use std::sync::OnceLock;

use super::{Example, Source};
use crate::error::Result;

/// The texts of a set of dialogue examples (a Reddit partition), with their ids once encoded.
#[derive(Debug)]
pub(crate) struct SharedTexts {
    texts: Vec<String>,
    encoded: Vec<OnceLock<EncodedText>>,
}

/// A text's ids and the special-token strings written in it.
#[derive(Debug)]
pub(crate) struct EncodedText {
    pub(crate) ids: Vec<u32>,
    pub(crate) special_strings: u64,
}

impl SharedTexts {
    pub(crate) fn new(texts: Vec<String>) -> Self {
        let encoded = texts.iter().map(|_| OnceLock::new()).collect();
        Self { texts, encoded }
    }

    pub(crate) fn text(&self, index: usize) -> &str {
        &self.texts[index]
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
        let fresh = encode(&self.texts[index])?;
        Ok(cell.get_or_init(|| fresh))
    }
}

/// One dialogue example: its context turns (oldest first) and response as indices into the
/// [`SharedTexts`] it travels with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dialogue {
    pub(crate) source: Source,
    pub(crate) context: Vec<usize>,
    pub(crate) response: usize,
}

impl Dialogue {
    /// Bytes of text in the example, context included.
    pub(crate) fn text_bytes(&self, texts: &SharedTexts) -> usize {
        self.context
            .iter()
            .chain([&self.response])
            .map(|&i| texts.text(i).len())
            .sum()
    }

    /// The example with its texts copied out.
    pub(crate) fn to_example(&self, texts: &SharedTexts) -> Example {
        Example {
            context: self
                .context
                .iter()
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
        let texts = SharedTexts::new(vec!["a".into(), "bb".into(), "ccc".into()]);
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
        let texts = SharedTexts::new(vec!["x".into()]);
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
        let texts = SharedTexts::new(vec!["t".into(), "a".into(), "b".into()]);
        let dialogue = Dialogue {
            source: Source {
                id: "b".into(),
                subreddit: "r".into(),
            },
            context: vec![0, 1],
            response: 2,
        };
        assert_eq!(dialogue.text_bytes(&texts), 3);
        let example = dialogue.to_example(&texts);
        assert_eq!(example.context, vec!["t", "a"]);
        assert_eq!(example.text, "b");
        assert_eq!(example.source.unwrap().id, "b");
    }
}
