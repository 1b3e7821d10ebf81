//! Dialogue examples that share their texts. In a Reddit thread a comment's body is the response
//! of its own example and a context turn of every reply below it (up to the context length), so
//! the examples of a partition name their turns by index into one table of texts, and each text
//! is encoded once, for all of them, where the partition is rebuilt.

use std::ops::Range;

use super::packed::{PackedIds, PackedTexts};
use super::{Example, SourceRef};
use crate::error::Result;
use crate::tokenize::TextTokenizer;

/// The texts of a set of dialogue examples (a Reddit partition), their ids once encoded, the
/// examples' context turns back to back and their sources (one allocation each, not one per
/// example).
#[derive(Debug)]
pub(crate) struct SharedTexts {
    texts: PackedTexts,
    turns: Vec<usize>,
    sources: PackedTexts,
    encoded: Option<PackedIds>,
}

impl SharedTexts {
    /// `texts`; `turns`, the text indices [`Dialogue::context`] ranges over; `sources`, where
    /// [`Dialogue::source`] points.
    pub(crate) fn new(texts: PackedTexts, turns: Vec<usize>, sources: PackedTexts) -> Self {
        Self {
            texts,
            turns,
            sources,
            encoded: None,
        }
    }

    /// Where a dialogue comes from.
    pub(crate) fn source(&self, dialogue: &Dialogue) -> SourceRef<'_> {
        self.sources.source(dialogue.source)
    }

    /// How many texts there are.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    pub(crate) fn text(&self, index: usize) -> &str {
        self.texts.get(index)
    }

    /// The text indices of a dialogue's context turns, oldest first.
    pub(crate) fn context(&self, dialogue: &Dialogue) -> &[usize] {
        &self.turns[dialogue.context.clone()]
    }

    /// Encodes every text with `tokenizer`, each once, for [`Self::encoded`].
    ///
    /// # Errors
    /// The tokenizer fails on a text.
    pub(crate) fn encode(&mut self, tokenizer: &TextTokenizer) -> Result<()> {
        let texts = &self.texts;
        // Byte-level BPE gives one id per three to five bytes of English text; a vector that
        // has to grow copies all it holds.
        let mut encoded = PackedIds::with_capacity(texts.len(), texts.bytes() / 3);
        for index in 0..texts.len() {
            let text = texts.get(index);
            encoded.push_with(|ids| tokenizer.encode_counting(text, ids))?;
        }
        self.encoded = Some(encoded);
        Ok(())
    }

    /// The texts' ids, once [`Self::encode`] has run.
    pub(crate) fn encoded(&self) -> Option<&PackedIds> {
        self.encoded.as_ref()
    }
}

/// One dialogue example: its context turns (oldest first) and response as indices into the
/// [`SharedTexts`] it travels with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dialogue {
    /// Its source, in [`SharedTexts`]' sources.
    pub(crate) source: usize,
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
            source: Some(texts.source(self).to_source()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(texts: &[&str]) -> PackedTexts {
        let mut packed = PackedTexts::default();
        for text in texts {
            packed.push_with(|s| s.push_str(text));
        }
        packed
    }

    #[test]
    fn each_text_is_encoded_as_the_tokenizer_encodes_it_alone() {
        let tokenizer = TextTokenizer::load("gpt2").unwrap();
        let texts = ["Title <|endoftext|>", "", " two  spaces", "é\n\tx"];
        let mut shared = SharedTexts::new(packed(&texts), Vec::new(), PackedTexts::default());
        assert!(shared.encoded().is_none());
        shared.encode(&tokenizer).unwrap();
        let encoded = shared.encoded().unwrap();
        assert_eq!(encoded.len(), texts.len());
        for (i, text) in texts.iter().enumerate() {
            let ids = encoded.get(i);
            assert_eq!(ids.ids, tokenizer.encode(text).unwrap(), "{text:?}");
            assert_eq!(ids.special_strings, u64::from(i == 0));
        }
    }

    #[test]
    fn an_example_copies_its_turns_in_order() {
        let mut sources = PackedTexts::default();
        sources.push_source(SourceRef {
            id: "a",
            subreddit: "r",
        });
        let source = sources.push_source(SourceRef {
            id: "b",
            subreddit: "r",
        });
        let texts = SharedTexts::new(packed(&["t", "a", "b"]), vec![2, 0, 1], sources);
        let dialogue = Dialogue {
            source,
            context: 1..3,
            response: 2,
            text_bytes: 3,
        };
        let example = dialogue.to_example(&texts);
        assert_eq!(example.context, vec!["t", "a"]);
        assert_eq!(example.text, "b");
        let source = example.source.unwrap();
        assert_eq!((source.id.as_str(), source.subreddit.as_str()), ("b", "r"));
    }
}
