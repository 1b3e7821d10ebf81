//! Tokenizers: load a `HuggingFace` `tokenizer.json` or the built-in GPT-2 BPE, encode text to
//! ids (thread-safe), and train new ones ([`train_tokenizer`]).

mod added_tokens;
mod ascii_masks;
mod bpe_file;
mod byte_bpe;
#[cfg(test)]
mod fast_path_tests;
mod gpt2;
mod gpt2_split;
mod json_bytes;
mod piece_cache;
#[cfg(test)]
mod shipped;
mod split_pattern;
mod train;

use std::path::Path;
use std::sync::OnceLock;

use ahash::AHashMap;
use aho_corasick::AhoCorasick;
use serde::{Deserialize, Serialize};

pub use gpt2::GPT2_EOS;
pub use train::{train_tokenizer, TokenizerKind, TrainOptions};

use crate::error::{Error, Result, TokenizerProblem};
use crate::integrity::fingerprint_bytes;
use byte_bpe::ByteLevelBpe;
use json_bytes::JsonBytes;

/// End-of-document tokens tried, in order, when none is named and no `tokenizer_config.json`
/// names one (`DeepSeek`'s is `<｜end▁of▁sentence｜>`, with full-width bars).
pub(crate) const DEFAULT_EOS_CANDIDATES: [&str; 6] = [
    "<|endoftext|>",
    "</s>",
    "<eos>",
    "<|end_of_text|>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "[SEP]",
];

/// The `tokenizer_config.json` that Hugging Face ships beside a `tokenizer.json`.
const TOKENIZER_CONFIG: &str = "tokenizer_config.json";

/// Where the end-of-document token was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EosSource {
    /// Named with `eos_token`.
    Named,
    /// The `eos_token` of the `tokenizer_config.json` beside the tokenizer file.
    TokenizerConfig,
    /// The first of the usual end-of-document tokens in the vocabulary.
    BuiltIn,
}

impl EosSource {
    /// How a notice says it.
    pub fn describe(self) -> &'static str {
        match self {
            EosSource::Named => "as named",
            EosSource::TokenizerConfig => "from the tokenizer_config.json beside the tokenizer",
            EosSource::BuiltIn => "the first of the usual end-of-document tokens in the vocabulary",
        }
    }
}

/// Which encoder turns a tokenizer's text into ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "path")]
pub enum Encoder {
    /// `hashprep`'s byte-level BPE (the same ids as `tokenizers`, faster).
    FastPath,
    /// The `tokenizers` library, for `reason`.
    Tokenizers {
        /// What the fast path does not reproduce.
        reason: String,
    },
}

/// How a special token's string (`<|endoftext|>`, `</s>`) written inside the text is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum SpecialTokens {
    /// As ordinary text (tiktoken's `encode_ordinary`): special ids appear only where the tool
    /// appends them, so a literal `<|endoftext|>` in a document cannot end it.
    #[default]
    Ordinary,
    /// As the special token's id (the `tokenizers` library's default).
    Recognize,
}

impl SpecialTokens {
    /// Every choice.
    pub const ALL: [SpecialTokens; 2] = [SpecialTokens::Ordinary, SpecialTokens::Recognize];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SpecialTokens::Ordinary => "ordinary",
            SpecialTokens::Recognize => "recognize",
        }
    }

    /// The choice called `name`.
    ///
    /// # Errors
    /// None is; the error lists them.
    pub fn from_name(name: &str) -> Result<Self> {
        crate::util::by_name("special_tokens", name, &Self::ALL, Self::name)
    }
}

/// A loaded tokenizer plus the exact `tokenizer.json` bytes that define it.
///
/// Corpus tokenization encodes every document whole: a `tokenizer.json` that sets truncation or
/// padding has them disabled on loading ([`Self::adjustments`] says what was disabled) and
/// [`Self::json`] holds the file as used, without them.
pub struct TextTokenizer {
    /// The `tokenizers` form: built on loading a file the fast path does not take; else, as
    /// the fast path read the file itself (and `gpt2`'s comes straight from its ranks), on
    /// first use.
    library: OnceLock<tokenizers::Tokenizer>,
    /// The model's tokens, where the fast path read them (so that looking one up does not load
    /// the library).
    vocab: Option<AHashMap<Box<str>, u32>>,
    json: JsonBytes,
    fingerprint: String,
    source: String,
    vocab_size: usize,
    adjustments: Vec<String>,
    /// Added tokens -> id, looked up before the vocabulary (as `tokenizers` does).
    added: AHashMap<String, u32>,
    special_strings: Option<AhoCorasick>,
    /// The byte-level BPE fast path, where the file allows it (`Err`: why not).
    fast: std::result::Result<ByteLevelBpe, String>,
    special_tokens: SpecialTokens,
}

/// What a loaded tokenizer is made of, before the derived parts.
struct Parts {
    library: OnceLock<tokenizers::Tokenizer>,
    vocab: Option<AHashMap<Box<str>, u32>>,
    json: JsonBytes,
    /// `blake3:<hex>` of the JSON bytes.
    fingerprint: String,
    source: String,
    adjustments: Vec<String>,
    vocab_size: usize,
    /// `(content, id, special)` of each added token.
    added: Vec<(String, u32, bool)>,
    fast: std::result::Result<ByteLevelBpe, String>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size)
            .finish_non_exhaustive()
    }
}

impl TextTokenizer {
    /// Loads `spec`: `gpt2` (built in, offline) or the path of a `HuggingFace` `tokenizer.json`.
    ///
    /// # Errors
    /// Unknown name and no such file, or a file that is not a valid tokenizer.
    pub fn load(spec: &str) -> Result<Self> {
        if spec == "gpt2" {
            gpt2_split::prepare();
            let ranks = gpt2::Gpt2Ranks::load()?;
            let (fast, vocab_size) = (ranks.fast_path(), ranks.vocab_size());
            return Self::from_parts(Parts {
                library: OnceLock::new(),
                vocab: None,
                json: JsonBytes::built_by(move || ranks.json()),
                fingerprint: gpt2::GPT2_FINGERPRINT.to_owned(),
                source: spec.to_owned(),
                adjustments: Vec::new(),
                vocab_size,
                added: vec![(GPT2_EOS.0.to_owned(), GPT2_EOS.1, true)],
                fast: Ok(fast),
            });
        }
        let path = Path::new(spec);
        if !path.is_file() {
            return Err(Error::TokenizerSetup(TokenizerProblem::Unknown(
                spec.to_owned(),
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_bytes(bytes, spec).map_err(|e| match e {
            Error::Tokenizer(message) => Error::TokenizerSetup(TokenizerProblem::Invalid {
                spec: spec.to_owned(),
                message,
            }),
            other => other,
        })
    }

    /// Builds a tokenizer from `tokenizer.json` bytes; `source` names it in messages.
    ///
    /// # Errors
    /// The bytes are not a valid tokenizer.
    pub fn from_json_bytes(json: Vec<u8>, source: &str) -> Result<Self> {
        let (json, dropout) = without_bpe_dropout(json);
        // `tokenizers` checks every part but the vocabulary and merges, which the fast path
        // reads itself (both at once); it loads the whole file on first use.
        let (fast, checked) = std::thread::scope(|scope| {
            let checked = scope.spawn(|| {
                let without = bpe_file::without_vocabulary(&json).map_err(Error::Tokenizer)?;
                load_library(&without).map(|_| ())
            });
            let fast = ByteLevelBpe::from_json(&json);
            (
                fast,
                checked.join().expect("checking a file does not panic"),
            )
        });
        let fast = match fast {
            Ok((fast, vocabulary)) if !vocabulary.truncates_or_pads => {
                checked?;
                return Self::from_parts(Parts {
                    library: OnceLock::new(),
                    vocab: Some(vocabulary.tokens),
                    fingerprint: fingerprint_bytes(&json),
                    json: JsonBytes::ready(json),
                    source: source.to_owned(),
                    adjustments: dropout.into_iter().collect(),
                    vocab_size: vocabulary.size,
                    added: vocabulary.added,
                    fast: Ok(fast),
                });
            }
            fast => fast.map(|(fast, _)| fast),
        };
        let mut inner = load_library(&json)?;
        let mut adjustments = disable_truncation_and_padding(&mut inner);
        adjustments.extend(dropout);
        let json = if adjustments.is_empty() {
            json
        } else {
            inner
                .to_string(true)
                .map_err(|e| Error::Tokenizer(e.to_string()))?
                .into_bytes()
        };
        let vocab_size = (inner.get_vocab(true).values().max()).map_or(0, |&max| max as usize + 1);
        let added = (inner.get_added_tokens_decoder().into_iter())
            .map(|(id, token)| (token.content, id, token.special))
            .collect();
        Self::from_parts(Parts {
            library: OnceLock::from(inner),
            vocab: None,
            fingerprint: fingerprint_bytes(&json),
            json: JsonBytes::ready(json),
            source: source.to_owned(),
            adjustments,
            vocab_size,
            added,
            fast,
        })
    }

    /// The tokenizer made of `parts`.
    fn from_parts(parts: Parts) -> Result<Self> {
        let specials: Vec<&str> = (parts.added.iter())
            .filter(|(content, _, special)| *special && !content.is_empty())
            .map(|(content, _, _)| content.as_str())
            .collect();
        let special_strings = if specials.is_empty() {
            None
        } else {
            Some(AhoCorasick::new(&specials).map_err(|e| Error::Tokenizer(e.to_string()))?)
        };
        let mut tokenizer = Self {
            library: parts.library,
            vocab: parts.vocab,
            fingerprint: parts.fingerprint,
            json: parts.json,
            source: parts.source,
            vocab_size: parts.vocab_size,
            adjustments: parts.adjustments,
            added: (parts.added.into_iter())
                .map(|(content, id, _)| (content, id))
                .collect(),
            special_strings,
            fast: parts.fast,
            special_tokens: SpecialTokens::Ordinary,
        };
        tokenizer.set_special_tokens(SpecialTokens::Ordinary);
        Ok(tokenizer)
    }

    /// The `tokenizers` form, built from the file's bytes on first use where loading did not.
    fn library(&self) -> &tokenizers::Tokenizer {
        self.library.get_or_init(|| {
            // Loading checked the file's parts with the library (gpt2's file is tested), and
            // the fast path read its vocabulary and merges.
            let mut library = tokenizers::Tokenizer::from_bytes(self.json.get())
                .expect("a file whose parts were checked on loading");
            library.set_encode_special_tokens(self.special_tokens == SpecialTokens::Ordinary);
            library
        })
    }

    /// Chooses how special-token strings inside the text are encoded (default: ordinary text).
    pub fn set_special_tokens(&mut self, mode: SpecialTokens) {
        self.special_tokens = mode;
        if let Some(library) = self.library.get_mut() {
            library.set_encode_special_tokens(mode == SpecialTokens::Ordinary);
        }
    }

    /// What loading disabled in the `tokenizer.json` (truncation, padding), one line each.
    pub fn adjustments(&self) -> &[String] {
        &self.adjustments
    }

    /// How many times a special token's string occurs in `text`.
    pub fn count_special_strings(&self, text: &str) -> u64 {
        self.special_strings
            .as_ref()
            .map_or(0, |matcher| matcher.find_iter(text).count() as u64)
    }

    /// Encodes text to token ids (no special tokens added; special-token strings in the text
    /// as [`Self::set_special_tokens`] chose).
    ///
    /// # Errors
    /// The tokenizer library fails on this text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        self.encode_into(text, &mut ids)?;
        Ok(ids)
    }

    /// Appends the ids of `text` to `ids`, as [`Self::encode`] gives them.
    ///
    /// # Errors
    /// The tokenizer library fails on this text.
    pub(crate) fn encode_into(&self, text: &str, ids: &mut Vec<u32>) -> Result<()> {
        self.encode_noting_added(text, ids).map(|_| ())
    }

    /// [`Self::encode_into`], returning [`Self::count_special_strings`] of `text` (not looked
    /// for again where the fast path's search for added tokens found none).
    ///
    /// # Errors
    /// The tokenizer library fails on this text.
    pub(crate) fn encode_counting(&self, text: &str, ids: &mut Vec<u32>) -> Result<u64> {
        let maybe_special = self.encode_noting_added(text, ids)?;
        Ok(if maybe_special {
            self.count_special_strings(text)
        } else {
            0
        })
    }

    /// [`Self::encode_into`], returning whether an added token's text may occur in `text`
    /// (false only where the fast path looked for them all and found none).
    fn encode_noting_added(&self, text: &str, ids: &mut Vec<u32>) -> Result<bool> {
        if let Ok(fast) = &self.fast {
            Ok(fast.encode(text, self.special_tokens == SpecialTokens::Recognize, ids))
        } else {
            ids.extend(self.encode_with_library(text)?);
            Ok(true)
        }
    }

    /// Why this tokenizer is encoded by the `tokenizers` library rather than the byte-level
    /// BPE fast path (`None`: it takes the fast path).
    pub fn fast_path_refusal(&self) -> Option<&str> {
        self.fast.as_ref().err().map(String::as_str)
    }

    /// Which encoder [`Self::encode`] uses, and why not the fast path.
    pub fn encoder(&self) -> Encoder {
        match self.fast_path_refusal() {
            None => Encoder::FastPath,
            Some(reason) => Encoder::Tokenizers {
                reason: reason.to_owned(),
            },
        }
    }

    /// Encodes through the `tokenizers` library (what the fast path must equal).
    fn encode_with_library(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .library()
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes ids back to text (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> String {
        self.library().decode(ids, false).unwrap_or_default()
    }

    /// Number of ids: one more than the largest id, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        if let Some(&id) = self.added.get(token) {
            return Some(id);
        }
        match &self.vocab {
            Some(vocab) => vocab.get(token).copied(),
            None => self.library().token_to_id(token),
        }
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.library().id_to_token(id)
    }

    /// The `tokenizer.json` bytes, written verbatim next to the shards.
    pub fn json(&self) -> &[u8] {
        self.json.get()
    }

    /// `blake3:<hex>` of [`Self::json`]: tables and loaders compare it to refuse mismatches.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// What was loaded: `gpt2` or the path given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The id of the beginning-of-document token `name`.
    ///
    /// # Errors
    /// It is not in the vocabulary.
    pub fn resolve_bos(&self, name: &str) -> Result<u32> {
        self.token_to_id(name).ok_or_else(|| {
            Error::TokenizerSetup(TokenizerProblem::NoSuchBos {
                token: name.to_owned(),
                tokenizer: self.source.clone(),
            })
        })
    }

    /// Resolves the end-of-document token: `name` if given; else the `eos_token` of a
    /// `tokenizer_config.json` beside the tokenizer file (Hugging Face ships one, a string or
    /// `{"content": ...}`), when the vocabulary has it; else the first of
    /// [`DEFAULT_EOS_CANDIDATES`] in the vocabulary. Says where it came from.
    ///
    /// # Errors
    /// The named token is not in the vocabulary, or none of the defaults is.
    pub fn resolve_eos(&self, name: Option<&str>) -> Result<(String, u32, EosSource)> {
        if let Some(name) = name {
            return self
                .token_to_id(name)
                .map(|id| (name.to_owned(), id, EosSource::Named))
                .ok_or_else(|| {
                    Error::TokenizerSetup(TokenizerProblem::NoSuchEos {
                        token: name.to_owned(),
                        tokenizer: self.source.clone(),
                    })
                });
        }
        if let Some(token) = self.configured_eos() {
            if let Some(id) = self.token_to_id(&token) {
                return Ok((token, id, EosSource::TokenizerConfig));
            }
        }
        DEFAULT_EOS_CANDIDATES
            .iter()
            .find_map(|c| {
                self.token_to_id(c)
                    .map(|id| ((*c).to_owned(), id, EosSource::BuiltIn))
            })
            .ok_or_else(|| {
                Error::TokenizerSetup(TokenizerProblem::NoUsualEos {
                    tokenizer: self.source.clone(),
                    candidates: &DEFAULT_EOS_CANDIDATES,
                })
            })
    }
}

impl TextTokenizer {
    /// The `eos_token` of the `tokenizer_config.json` beside a tokenizer file, if there is one
    /// that names it (a file that does not parse names none).
    fn configured_eos(&self) -> Option<String> {
        let file = Path::new(&self.source);
        if !file.is_file() {
            return None; // built in (`gpt2`): no file, nothing beside it
        }
        let beside = file.parent()?.join(TOKENIZER_CONFIG);
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(beside).ok()?).ok()?;
        let eos = config.get("eos_token")?;
        eos.as_str()
            .or_else(|| eos.get("content")?.as_str())
            .map(str::to_owned)
    }
}

/// `tokenizers` loading `json`. The library panics on some malformed files (a merge shorter
/// than the continuing-subword prefix): that is an invalid file, not a crash, and its panic
/// message is not printed (the error says it).
fn load_library(json: &[u8]) -> Result<tokenizers::Tokenizer> {
    type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send>;
    // One load at a time swaps the process's panic hook.
    static SWAP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = SWAP
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let loader = std::thread::current().id();
    let previous: std::sync::Arc<Hook> = std::sync::Arc::new(std::panic::take_hook());
    let others = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != loader {
            others(info);
        }
    }));
    let loaded = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(json));
    drop(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| previous(info)));
    match loaded {
        Ok(loaded) => loaded.map_err(|e| Error::Tokenizer(e.to_string())),
        Err(panic) => {
            let what = (panic.downcast_ref::<String>().map(String::as_str))
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            Err(Error::Tokenizer(format!(
                "the tokenizers library failed on it: {what}"
            )))
        }
    }
}

/// Turns off BPE dropout (`model.dropout`), which segments a word at random on each encoding:
/// tokenize promises the same bytes for any thread count and after a resume. Returns the file
/// as `tokenizers` should read it, and what was turned off.
fn without_bpe_dropout(json: Vec<u8>) -> (Vec<u8>, Option<String>) {
    // Read alone first: a whole file as a generic value costs a tenth of a second or more.
    #[derive(Deserialize)]
    struct Probe {
        model: ModelDropout,
    }
    #[derive(Deserialize)]
    struct ModelDropout {
        #[serde(default)]
        dropout: Option<f64>,
    }
    let dropout = serde_json::from_slice::<Probe>(&json)
        .ok()
        .and_then(|p| p.model.dropout);
    if !dropout.is_some_and(|p| p > 0.0) {
        return (json, None); // or `tokenizers` says what is wrong with it
    }
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&json) else {
        return (json, None);
    };
    let dropout = &mut value["model"]["dropout"];
    let Some(p) = dropout.as_f64().filter(|&p| p > 0.0) else {
        return (json, None);
    };
    *dropout = serde_json::Value::Null;
    let note = format!(
        "BPE dropout disabled (p = {p}): it would segment words at random, so runs would differ"
    );
    match serde_json::to_vec(&value) {
        Ok(bytes) => (bytes, Some(note)),
        Err(_) => (json, None),
    }
}

/// Turns off truncation and padding, which would cut or pad every document; says what was on.
fn disable_truncation_and_padding(tokenizer: &mut tokenizers::Tokenizer) -> Vec<String> {
    let mut adjustments = Vec::new();
    if let Some(truncation) = tokenizer.get_truncation() {
        adjustments.push(format!(
            "truncation disabled (max_length {}): documents are encoded whole",
            truncation.max_length
        ));
    }
    if let Some(padding) = tokenizer.get_padding() {
        adjustments.push(format!(
            "padding disabled (pad token {:?}): no padding ids are added",
            padding.pad_token
        ));
    }
    if !adjustments.is_empty() {
        // Truncation cannot fail to be removed; `Err` only guards invalid new settings.
        let _ = tokenizer.with_truncation(None);
        tokenizer.with_padding(None);
    }
    adjustments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_gives_gpt2_ids() {
        let tok = TextTokenizer::load("gpt2").unwrap();
        let cases: [(&str, &[u32]); 4] = [
            ("Hello world", &[15496, 995]),
            (" Hello", &[18435]),
            ("hello", &[31373]),
            ("The quick brown fox", &[464, 2068, 7586, 21831]),
        ];
        for (text, ids) in cases {
            assert_eq!(tok.encode(text).unwrap(), ids, "{text:?}");
        }
        assert_eq!(tok.vocab_size(), 50_257);
        assert_eq!(
            tok.resolve_eos(None).unwrap(),
            (GPT2_EOS.0.to_owned(), GPT2_EOS.1, EosSource::BuiltIn)
        );
    }

    #[test]
    fn encode_into_appends_what_encode_gives_on_either_path() {
        for mode in [SpecialTokens::Ordinary, SpecialTokens::Recognize] {
            let mut tok = TextTokenizer::load("gpt2").unwrap();
            tok.set_special_tokens(mode);
            assert_eq!(tok.encoder(), Encoder::FastPath, "{mode:?}");
            let text = "Hello <|endoftext|> world";
            let mut ids = vec![7];
            tok.encode_into(text, &mut ids).unwrap();
            assert_eq!(ids[0], 7);
            assert_eq!(ids[1..], tok.encode(text).unwrap()[..], "{mode:?}");
        }
    }

    #[test]
    fn gpt2_matches_tiktoken_on_awkward_text() {
        let tok = TextTokenizer::load("gpt2").unwrap();
        let reference = tiktoken_rs::r50k_base_singleton();
        let text = "  Multiple   spaces,\ttabs\n\nnewlines; numbers 1234567 3.14159; don't you'll \
                    UPPER lower MiXeD; unicode: café naïve 日本語 🙂 emoji; code: fn main() { x += 1; }";
        assert_eq!(tok.encode(text).unwrap(), reference.encode_ordinary(text));
    }

    #[test]
    fn special_token_strings_are_ordinary_text_unless_recognized() {
        let mut tok = TextTokenizer::load("gpt2").unwrap();
        let reference = tiktoken_rs::r50k_base_singleton();
        let text = "a<|endoftext|>b <|endoftext|>";
        assert_eq!(tok.encode(text).unwrap(), reference.encode_ordinary(text));
        assert!(!tok.encode(text).unwrap().contains(&GPT2_EOS.1));
        assert_eq!(tok.count_special_strings(text), 2);
        tok.set_special_tokens(SpecialTokens::Recognize);
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids.iter().filter(|&&id| id == GPT2_EOS.1).count(), 2);
    }

    #[test]
    fn bpe_dropout_is_disabled_so_every_encoding_is_the_same() {
        let gpt2 = TextTokenizer::load("gpt2").unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(gpt2.json()).unwrap();
        json["model"]["dropout"] = serde_json::json!(0.5);
        let bytes = serde_json::to_vec(&json).unwrap();
        // With dropout on, the tokenizers library segments one text in more than one way.
        let random = tokenizers::Tokenizer::from_bytes(&bytes).unwrap();
        let text = "internationalization responsibilities ".repeat(20);
        let segmentations: std::collections::BTreeSet<usize> = (0..10)
            .map(|_| random.encode(text.as_str(), false).unwrap().get_ids().len())
            .collect();
        assert!(segmentations.len() > 1, "dropout makes encodings differ");
        let loaded = TextTokenizer::from_json_bytes(bytes, "dropout.json").unwrap();
        assert!(
            loaded
                .adjustments()
                .iter()
                .any(|a| a.contains("BPE dropout disabled (p = 0.5)")),
            "{:?}",
            loaded.adjustments()
        );
        let stored: serde_json::Value = serde_json::from_slice(loaded.json()).unwrap();
        assert!(stored["model"]["dropout"].is_null());
        let ids = loaded.encode(&text).unwrap();
        assert_eq!(
            ids,
            gpt2.encode(&text).unwrap(),
            "the same ids as without dropout"
        );
    }

    #[test]
    fn truncation_and_padding_in_tokenizer_json_are_disabled() {
        let gpt2 = TextTokenizer::load("gpt2").unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(gpt2.json()).unwrap();
        json["truncation"] = serde_json::json!({
            "direction": "Right", "max_length": 5, "strategy": "LongestFirst", "stride": 0
        });
        json["padding"] = serde_json::json!({
            "strategy": {"Fixed": 64}, "direction": "Right", "pad_to_multiple_of": null,
            "pad_id": 50256, "pad_type_id": 0, "pad_token": "<|endoftext|>"
        });
        let tok = TextTokenizer::from_json_bytes(json.to_string().into_bytes(), "t").unwrap();
        let text = "The quick brown fox jumps over the lazy dog again and again";
        assert_eq!(tok.encode(text).unwrap(), gpt2.encode(text).unwrap());
        assert_eq!(tok.adjustments().len(), 2, "{:?}", tok.adjustments());
        assert!(tok.adjustments()[0].contains("max_length 5"));
        // The stored copy is the tokenizer as used: reloading it changes nothing more.
        let stored: serde_json::Value = serde_json::from_slice(tok.json()).unwrap();
        assert!(stored["truncation"].is_null() && stored["padding"].is_null());
        assert_eq!(tok.fingerprint(), fingerprint_bytes(tok.json()));
    }

    #[test]
    fn gpt2_json_is_deterministic() {
        let a = TextTokenizer::load("gpt2").unwrap();
        let b = TextTokenizer::load("gpt2").unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn unknown_tokenizer_is_bad_input() {
        let err = TextTokenizer::load("no-such-tokenizer").unwrap_err();
        assert!(err.is_bad_input());
        assert!(err.to_string().contains("no-such-tokenizer"));
    }
}
