//! The parts of a `tokenizer.json` the fast path reads, deserialized in one pass with the
//! vocabulary and merges borrowed from the file: a generic JSON value keeps every object in a
//! sorted map, which cost a quarter of a second on `DeepSeek`'s 128,000 tokens.

use std::borrow::Cow;
use std::fmt;

use ahash::AHashMap;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The components, as the file gives them (the small ones as JSON values).
#[derive(Deserialize)]
pub(super) struct BpeFile<'a> {
    #[serde(default)]
    pub(super) normalizer: Value,
    #[serde(default)]
    pub(super) pre_tokenizer: Value,
    #[serde(default)]
    pub(super) post_processor: Value,
    #[serde(default)]
    pub(super) added_tokens: Vec<Value>,
    #[serde(default)]
    pub(super) truncation: Value,
    #[serde(default)]
    pub(super) padding: Value,
    #[serde(borrow)]
    pub(super) model: BpeModel<'a>,
}

/// A BPE model's settings, vocabulary and merges.
#[derive(Deserialize)]
pub(super) struct BpeModel<'a> {
    #[serde(rename = "type", default)]
    kind: Value,
    #[serde(default)]
    pub(super) dropout: Value,
    #[serde(default)]
    pub(super) continuing_subword_prefix: Value,
    #[serde(default)]
    pub(super) end_of_word_suffix: Value,
    #[serde(default)]
    pub(super) byte_fallback: Value,
    #[serde(default)]
    pub(super) ignore_merges: Value,
    /// Owned: the fast path keeps it (to answer `token_to_id`) once the file is dropped.
    #[serde(deserialize_with = "sized_vocabulary")]
    pub(super) vocab: AHashMap<Box<str>, u32>,
    #[serde(borrow)]
    pub(super) merges: Vec<Merge<'a>>,
}

/// A merge, written `"left right"` or `["left", "right"]`.
pub(super) struct Merge<'a>(pub(super) Cow<'a, str>, pub(super) Cow<'a, str>);

/// A string of the file, borrowed unless it holds escapes.
pub(super) struct Text<'a>(pub(super) Cow<'a, str>);

/// Only the model's type, read where the whole file could not be (other models' vocabularies
/// have other shapes).
#[derive(Deserialize)]
struct TypeProbe {
    model: ModelType,
}

#[derive(Deserialize)]
struct ModelType {
    #[serde(rename = "type", default)]
    kind: Value,
}

impl<'a> BpeFile<'a> {
    /// Reads `json`.
    ///
    /// # Errors
    /// Not a BPE model, or not the shape of a `tokenizer.json`.
    pub(super) fn read(json: &'a [u8]) -> Result<Self, String> {
        let kind_error = |kind: &Value| (kind != "BPE").then(|| format!("model of type {kind}"));
        match serde_json::from_slice::<Self>(json) {
            Ok(file) => kind_error(&file.model.kind).map_or(Ok(file), Err),
            Err(e) => {
                let probe: TypeProbe = serde_json::from_slice(json).map_err(|e| e.to_string())?;
                Err(kind_error(&probe.model.kind).unwrap_or_else(|| e.to_string()))
            }
        }
    }
}

/// A `tokenizer.json` with its model's vocabulary and merges left out (emptied), every other
/// part as the file gives it: what `tokenizers` checks of a file whose vocabulary and merges the
/// fast path has read itself, in a few milliseconds rather than a quarter of a second.
#[derive(Deserialize, Serialize)]
struct WithoutVocabulary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    truncation: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    padding: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    added_tokens: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    normalizer: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pre_tokenizer: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    post_processor: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decoder: Option<Value>,
    model: ModelWithoutVocabulary,
}

/// A BPE model's settings; its vocabulary and merges skipped on reading, empty on writing.
#[derive(Deserialize, Serialize)]
struct ModelWithoutVocabulary {
    #[serde(rename = "type")]
    kind: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dropout: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unk_token: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    continuing_subword_prefix: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_of_word_suffix: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fuse_unk: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    byte_fallback: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ignore_merges: Option<Value>,
    #[serde(rename = "vocab", skip_serializing)]
    _vocab: IgnoredAny,
    #[serde(rename = "merges", skip_serializing)]
    _merges: IgnoredAny,
}

/// `json` without its model's vocabulary and merges (see [`WithoutVocabulary`]).
///
/// # Errors
/// Not the shape of a BPE `tokenizer.json`.
pub(super) fn without_vocabulary(json: &[u8]) -> Result<Vec<u8>, String> {
    let file: WithoutVocabulary = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let mut stub = serde_json::to_value(&file).map_err(|e| e.to_string())?;
    stub["model"]["vocab"] = Value::Object(serde_json::Map::new());
    stub["model"]["merges"] = Value::Array(Vec::new());
    serde_json::to_vec(&stub).map_err(|e| e.to_string())
}

impl<'de: 'a, 'a> Deserialize<'de> for Merge<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MergeVisitor)
    }
}

struct MergeVisitor;

impl<'de> Visitor<'de> for MergeVisitor {
    type Value = Merge<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a merge: "left right" or ["left", "right"]"#)
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        let (left, right) = s.split_once(' ').ok_or_else(|| E::custom("not a pair"))?;
        Ok(Merge(Cow::Borrowed(left), Cow::Borrowed(right)))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        let (left, right) = s.split_once(' ').ok_or_else(|| E::custom("not a pair"))?;
        Ok(Merge(Cow::Owned(left.into()), Cow::Owned(right.into())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut next = || -> Result<Cow<'de, str>, A::Error> {
            (seq.next_element::<Text<'de>>()?)
                .map(|text| text.0)
                .ok_or_else(|| serde::de::Error::custom("not a pair"))
        };
        let (left, right) = (next()?, next()?);
        if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            return Err(serde::de::Error::custom("not a pair"));
        }
        Ok(Merge(left, right))
    }
}

/// The vocabulary read as a list first and put in a map of its size: a map grown entry by entry
/// rehashed itself into fresh memory a dozen times (a tenth of `DeepSeek`'s load).
fn sized_vocabulary<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<AHashMap<Box<str>, u32>, D::Error> {
    struct Entries;
    impl<'de> Visitor<'de> for Entries {
        type Value = AHashMap<Box<str>, u32>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of tokens to ids")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::new();
            while let Some((Text(token), id)) = map.next_entry::<Text<'de>, u32>()? {
                let token: Box<str> = match token {
                    Cow::Borrowed(token) => token.into(),
                    Cow::Owned(token) => token.into_boxed_str(),
                };
                entries.push((token, id));
            }
            let mut vocab = AHashMap::with_capacity(entries.len());
            // As a map read entry by entry: a token written twice keeps its last id.
            vocab.extend(entries);
            Ok(vocab)
        }
    }
    deserializer.deserialize_map(Entries)
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(s)))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(model: &str) -> Result<usize, String> {
        let json = format!(r#"{{"added_tokens": [], "model": {model}}}"#);
        BpeFile::read(json.as_bytes()).map(|file| file.model.merges.len())
    }

    #[test]
    fn the_vocabulary_is_read_as_a_map_would_be() {
        // Escaped and plain tokens; a token written twice keeps its last id.
        let json = r#"{"model": {"type": "BPE", "merges": [],
            "vocab": {"a": 0, "\u0062": 1, "a": 2, "\"q\"": 3, "é": 4}}}"#;
        let file = BpeFile::read(json.as_bytes()).unwrap();
        let mut vocab: Vec<(&str, u32)> = (file.model.vocab.iter())
            .map(|(token, &id)| (&**token, id))
            .collect();
        vocab.sort_unstable();
        assert_eq!(vocab, [("\"q\"", 3), ("a", 2), ("b", 1), ("é", 4)]);
    }

    #[test]
    fn another_model_is_named_and_a_broken_bpe_is_described() {
        let bpe = r#"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#;
        assert_eq!(read(bpe), Ok(1));
        // A vocabulary of the shape BPE reads, or of another: named by type either way.
        let word_piece = r#"{"type": "WordPiece", "vocab": {"a": 0}, "unk_token": "[UNK]"}"#;
        assert_eq!(read(word_piece), Err(r#"model of type "WordPiece""#.into()));
        let with_merges = r#"{"type": "WordLevel", "vocab": {"a": 0}, "merges": []}"#;
        assert_eq!(
            read(with_merges),
            Err(r#"model of type "WordLevel""#.into())
        );
        let unigram = r#"{"type": "Unigram", "vocab": [["a", -1.0]], "unk_id": 0}"#;
        assert_eq!(read(unigram), Err(r#"model of type "Unigram""#.into()));
        let no_merges = r#"{"type": "BPE", "vocab": {"a": 0}}"#;
        assert!(read(no_merges)
            .unwrap_err()
            .contains("missing field `merges`"));
    }
}
