//! Training tokenizers on a corpus: byte-level BPE (the paper's 8k dictionaries) and the
//! word-level "standard dictionary" of Wikitext-103 (rare words become `<unk>`).

use std::collections::HashMap;

use ahash::AHashMap;
use serde::{Deserialize, Serialize};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    Tokenizer, TokenizerImpl,
};

use super::TextTokenizer;
use crate::error::{Error, Result};

/// Which tokenizer to train.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum TokenizerKind {
    /// Byte-level BPE (GPT-2 style) with this many ids, special tokens included.
    Bpe {
        /// Target vocabulary size (the paper's Reddit dictionary: 8008).
        vocab_size: usize,
    },
    /// Whitespace-split words seen at least `min_count` times; the rest map to `<unk>`.
    Word {
        /// Minimum count for a word to get its own id.
        min_count: u64,
    },
}

impl TokenizerKind {
    /// Byte-level BPE with the paper's dictionary size, 8008 ids.
    pub const DEFAULT_VOCAB_SIZE: usize = 8008;
    /// Word level: words seen at least 3 times get an id.
    pub const DEFAULT_MIN_COUNT: u64 = 3;

    /// `bpe` or `word` with the default size, as named in configs and on the command line.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "bpe" => Some(TokenizerKind::Bpe {
                vocab_size: Self::DEFAULT_VOCAB_SIZE,
            }),
            "word" => Some(TokenizerKind::Word {
                min_count: Self::DEFAULT_MIN_COUNT,
            }),
            _ => None,
        }
    }
}

/// Options of [`train_tokenizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainOptions {
    /// BPE or word level.
    pub kind: TokenizerKind,
    /// The end-of-document token added as a special token.
    pub eos_token: String,
    /// The unknown-word token of word-level vocabularies.
    pub unk_token: String,
}

impl TrainOptions {
    /// Defaults: `<|endoftext|>` for BPE, `<eos>` and `<unk>` for word level.
    pub fn new(kind: TokenizerKind) -> Self {
        let eos_token = match kind {
            TokenizerKind::Bpe { .. } => "<|endoftext|>",
            TokenizerKind::Word { .. } => "<eos>",
        };
        Self {
            kind,
            eos_token: eos_token.to_owned(),
            unk_token: "<unk>".to_owned(),
        }
    }
}

/// Trains a tokenizer on `texts` (each a document or turn).
///
/// # Errors
/// No text at all, a vocabulary size too small for the byte alphabet, or a library failure.
pub fn train_tokenizer<I>(options: &TrainOptions, texts: I) -> Result<TextTokenizer>
where
    I: Iterator<Item = String> + Send,
{
    let tokenizer = match options.kind {
        TokenizerKind::Bpe { vocab_size } => train_bpe(vocab_size, &options.eos_token, texts)?,
        TokenizerKind::Word { min_count } => train_word_level(min_count, options, texts)?,
    };
    let json = tokenizer
        .to_string(false)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    TextTokenizer::from_json_bytes(json.into_bytes(), "trained")
}

fn train_bpe<I>(vocab_size: usize, eos: &str, texts: I) -> Result<Tokenizer>
where
    I: Iterator<Item = String> + Send,
{
    let alphabet = ByteLevel::alphabet();
    if vocab_size <= alphabet.len() + 1 {
        return Err(Error::setting(
            "vocab_size",
            format!(
                "{vocab_size} is too small: byte-level BPE needs more than {} ids",
                alphabet.len() + 1
            ),
        ));
    }
    let mut trainer = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(alphabet.into_iter().collect())
        .special_tokens(vec![AddedToken::from(eos, true)])
        .build();
    let mut tokenizer: TokenizerImpl<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    > = TokenizerImpl::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let mut seen_any = false;
    let texts = texts.inspect(|_| seen_any = true);
    tokenizer
        .train(&mut trainer, texts)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    if !seen_any {
        return Err(Error::Empty(crate::error::EmptyProblem::NoTrainingText));
    }
    Ok(tokenizer.into())
}

/// Word counts in descending order of count, ties by the word: the id order of the vocabulary.
pub(crate) fn ranked_words(counts: HashMap<String, u64>, min_count: u64) -> Vec<(String, u64)> {
    let mut words: Vec<(String, u64)> = counts
        .into_iter()
        .filter(|(_, c)| *c >= min_count)
        .collect();
    words.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    words
}

fn train_word_level<I>(min_count: u64, options: &TrainOptions, texts: I) -> Result<Tokenizer>
where
    I: Iterator<Item = String>,
{
    let mut counts: HashMap<String, u64> = HashMap::new();
    for text in texts {
        for word in text.split_whitespace() {
            if let Some(count) = counts.get_mut(word) {
                *count += 1;
            } else {
                counts.insert(word.to_owned(), 1);
            }
        }
    }
    if counts.is_empty() {
        return Err(Error::Empty(crate::error::EmptyProblem::NoTrainingText));
    }
    let specials = [options.unk_token.as_str(), options.eos_token.as_str()];
    let mut vocab: AHashMap<String, u32> = specials
        .iter()
        .enumerate()
        .map(|(i, s)| ((*s).to_owned(), i as u32))
        .collect();
    for (word, _) in ranked_words(counts, min_count.max(1)) {
        if !vocab.contains_key(&word) {
            let id = vocab.len() as u32;
            vocab.insert(word, id);
        }
    }
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token(options.unk_token.clone())
        .build()
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(WhitespaceSplit));
    tokenizer
        .add_special_tokens([AddedToken::from(options.eos_token.clone(), true)])
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts() -> impl Iterator<Item = String> + Send {
        ["the cat sat on the mat", "the dog sat", "a rare word"]
            .into_iter()
            .map(String::from)
    }

    #[test]
    fn word_level_keeps_frequent_words_and_maps_rare_ones_to_unk() {
        let tok = train_tokenizer(
            &TrainOptions::new(TokenizerKind::Word { min_count: 2 }),
            texts(),
        )
        .unwrap();
        // <unk>, <eos>, then "the" (3), "sat" (2).
        assert_eq!(tok.vocab_size(), 4);
        assert_eq!(tok.token_to_id("the"), Some(2));
        assert_eq!(tok.token_to_id("sat"), Some(3));
        assert_eq!(tok.encode("the  zebra\tsat\n").unwrap(), vec![2, 0, 3]);
        assert_eq!(tok.resolve_eos(None).unwrap().1, 1);
    }

    #[test]
    fn bpe_reaches_the_requested_size_and_round_trips() {
        let corpus: Vec<String> = (0..200)
            .map(|i| format!("sample text number {i} with some words"))
            .collect();
        let tok = train_tokenizer(
            &TrainOptions::new(TokenizerKind::Bpe { vocab_size: 300 }),
            corpus.into_iter(),
        )
        .unwrap();
        assert!(
            tok.vocab_size() <= 300 && tok.vocab_size() > 257,
            "{}",
            tok.vocab_size()
        );
        let ids = tok.encode("some words 42 ünïcode").unwrap();
        assert_eq!(tok.decode(&ids), "some words 42 ünïcode");
    }

    #[test]
    fn empty_corpus_is_bad_input() {
        let err = train_tokenizer(
            &TrainOptions::new(TokenizerKind::Word { min_count: 1 }),
            std::iter::empty(),
        )
        .unwrap_err();
        assert!(err.is_bad_input());
    }
}
