//! GPT-2's byte-level BPE, built offline from the ranks that `tiktoken-rs` embeds (`r50k_base`
//! is GPT-2's encoding: same ranks, same ids, same pre-tokenization regex), shipped in the
//! binary in a compact form.
//!
//! The `HuggingFace` form needs a vocabulary of byte-level strings and a merge list. Token `r`
//! (r >= 256) is a merge of two shorter tokens, both of lower rank; listing every such split in
//! order of `r` gives a BPE whose merge priority is the rank of the merged token, which is how
//! tiktoken itself applies ranks. Tests compare the result with tiktoken on real text.
//!
//! Loading builds only the fast path and the file's bytes (written as `tokenizers` writes
//! them): building the `tokenizers` form as well took a tenth of a second in every run.

#[cfg(test)]
use ahash::AHashMap;
#[cfg(test)]
use tokenizers::{
    decoders::byte_level::ByteLevel as ByteLevelDecoder, models::bpe::BPE,
    pre_tokenizers::byte_level::ByteLevel, AddedToken, Tokenizer,
};

use super::added_tokens::AddedTokens;
use super::byte_bpe::ByteLevelBpe;
use crate::error::{Error, Result};

/// The fingerprint of GPT-2's `tokenizer.json` ([`Gpt2Ranks::json`], which a test checks):
/// known without building the bytes, which a run writes at its end.
pub(crate) const GPT2_FINGERPRINT: &str =
    "blake3:e4a2bdc5c9c48f931a6b9bd48350f82263919a6f5f1f0f1b0790b7b440874c32";

/// GPT-2's end-of-text token and its id.
pub const GPT2_EOS: (&str, u32) = ("<|endoftext|>", 50_256);

/// GPT-2's byte -> printable character table (`bytes_to_unicode` of the original encoder).
pub(crate) fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_extra = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(byte)
        } else {
            next_extra += 1;
            next_extra - 1
        };
        table[byte as usize] = char::from_u32(code).expect("valid code point");
    }
    table
}

/// The start of GPT-2's `tokenizer.json` as `tokenizers` writes it, up to its vocabulary.
const JSON_HEAD: &str = concat!(
    r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[{"id":50256,"#,
    r#""content":"<|endoftext|>","single_word":false,"lstrip":false,"rstrip":false,"#,
    r#""normalized":false,"special":true}],"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","#,
    r#""add_prefix_space":false,"trim_offsets":true,"use_regex":true},"post_processor":null,"#,
    r#""decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},"#,
    r#""model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,"#,
    r#""end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{"#,
);

/// A token's bytes as `tokenizer.json` spells them, in GPT-2's printable characters (`table`).
#[cfg(test)]
fn spelled(table: &[char; 256], bytes: &[u8]) -> String {
    bytes.iter().map(|&b| table[usize::from(b)]).collect()
}

/// GPT-2's tokens and merges, read from the ranks (a token's id is its rank).
pub(crate) struct Gpt2Ranks {
    /// Each token's bytes by id, the end-of-text token excepted.
    tokens: Vec<Vec<u8>>,
    /// `(left, right, merged)` ids in merge priority order.
    merges: Vec<(u32, u32, u32)>,
}

/// GPT-2's merges as `(left, right, merged)` ids, two bytes each (little-endian), compressed
/// with zstd: what [`derived_merges`] finds in the ranks, shipped because finding them took
/// 10 ms of every run's start-up. A test checks them against the ranks.
const MERGES: &[u8] = include_bytes!("gpt2_merges.zst");

/// Token `r` (r >= 256) is a merge of two shorter tokens of lower rank: every such split, in
/// order of `r`, gives a BPE whose merge priority is the merged token's rank.
#[cfg(test)]
fn derived_merges(tokens: &[Vec<u8>]) -> Vec<(u32, u32, u32)> {
    let rank_of: AHashMap<&[u8], u32> = (0u32..).zip(tokens).map(|(r, b)| (&b[..], r)).collect();
    let mut merges = Vec::with_capacity(90_000);
    for (rank, bytes) in (0u32..).zip(tokens).skip(256) {
        for split in 1..bytes.len() {
            let (left, right) = bytes.split_at(split);
            if let (Some(&l), Some(&r)) = (rank_of.get(left), rank_of.get(right)) {
                if l < rank && r < rank {
                    merges.push((l, r, rank));
                }
            }
        }
    }
    merges
}

/// The tokens of `raw`, each written as its length (one byte) and its bytes; `None` where the
/// last is cut short.
fn length_prefixed(raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    let (mut tokens, mut rest) = (Vec::with_capacity(GPT2_EOS.1 as usize), raw);
    while let Some((&len, after)) = rest.split_first() {
        tokens.push(after.get(..usize::from(len))?.to_vec());
        rest = &after[usize::from(len)..];
    }
    Some(tokens)
}

/// GPT-2's tokens by rank, each as its length (one byte) and its bytes, compressed with zstd:
/// the ranks `tiktoken-rs` embeds (`r50k_base`), in a form read in a millisecond (decoding them
/// through `tiktoken-rs` took 40 ms of every run). A test checks them against `tiktoken-rs`.
const RANKS: &[u8] = include_bytes!("gpt2_ranks.zst");

impl Gpt2Ranks {
    /// Reads the ranks shipped in the binary (no file or network access).
    ///
    /// # Errors
    /// Only if the shipped ranks are inconsistent (a bug).
    pub(crate) fn load() -> Result<Self> {
        let broken = |why: &str| Error::Tokenizer(format!("gpt2's shipped ranks: {why}"));
        let raw = zstd::decode_all(RANKS).map_err(|e| broken(&e.to_string()))?;
        let tokens = length_prefixed(&raw).ok_or_else(|| broken("cut short"))?;
        if tokens.len() != GPT2_EOS.1 as usize {
            return Err(broken(&format!("{} tokens", tokens.len())));
        }
        let raw = zstd::decode_all(MERGES).map_err(|e| broken(&e.to_string()))?;
        if raw.len() % 6 != 0 {
            return Err(broken("merges cut short"));
        }
        let merges = (raw.chunks_exact(6))
            .map(|merge| {
                let id = |k: usize| u32::from(u16::from_le_bytes([merge[2 * k], merge[2 * k + 1]]));
                let (left, right, merged) = (id(0), id(1), id(2));
                // As the ranks give them: a merge of two tokens of lower rank.
                if merged as usize >= tokens.len() || left >= merged || right >= merged {
                    return Err(broken(&format!("merge {left} {right} -> {merged}")));
                }
                Ok((left, right, merged))
            })
            .collect::<Result<_>>()?;
        Ok(Self { tokens, merges })
    }

    /// Number of ids, the end-of-text token included.
    pub(crate) fn vocab_size(&self) -> usize {
        self.tokens.len() + 1
    }

    /// The fast path's form.
    pub(crate) fn fast_path(&self) -> ByteLevelBpe {
        let mut byte_ids = [0u32; 256];
        for (rank, bytes) in (0u32..).zip(&self.tokens) {
            if let [byte] = bytes[..] {
                byte_ids[usize::from(byte)] = rank;
            }
        }
        ByteLevelBpe::from_merges(&byte_ids, self.merges.iter().copied(), None)
            .with_added(AddedTokens::special(GPT2_EOS.0, GPT2_EOS.1))
    }

    /// The `tokenizer.json` bytes, exactly as `tokenizers` writes the tokenizer built from
    /// these ranks ([`Self::library_form`]), without building it. Each token is quoted once
    /// (the merges name tokens again) into one buffer: a string of its own for each quoting,
    /// and formatting, took three times as long.
    pub(crate) fn json(&self) -> Vec<u8> {
        let table = byte_to_char_table();
        let mut quoted = Vec::with_capacity(1 << 20);
        let mut ends = Vec::with_capacity(self.tokens.len());
        let mut spelling = String::new();
        for bytes in &self.tokens {
            spelling.clear();
            spelling.extend(bytes.iter().map(|&b| table[usize::from(b)]));
            serde_json::to_writer(&mut quoted, &spelling).expect("a string serializes");
            ends.push(quoted.len());
        }
        let token = |id: u32| {
            let id = id as usize;
            &quoted[id.checked_sub(1).map_or(0, |before| ends[before])..ends[id]]
        };
        let mut json = Vec::with_capacity(2_100_000);
        json.extend_from_slice(JSON_HEAD.as_bytes());
        for rank in 0..self.tokens.len() as u32 {
            if rank > 0 {
                json.push(b',');
            }
            json.extend_from_slice(token(rank));
            json.push(b':');
            json.extend_from_slice(rank.to_string().as_bytes());
        }
        json.extend_from_slice(b"},\"merges\":[");
        for (i, &(left, right, _)) in self.merges.iter().enumerate() {
            json.extend_from_slice(if i == 0 { b"[" } else { b",[" });
            json.extend_from_slice(token(left));
            json.push(b',');
            json.extend_from_slice(token(right));
            json.push(b']');
        }
        json.extend_from_slice(b"]}}");
        json
    }

    /// GPT-2's tokenizer in `HuggingFace` form, built from the ranks (what [`Self::json`]
    /// must equal once written).
    #[cfg(test)]
    pub(crate) fn library_form(&self) -> Result<Tokenizer> {
        let table = byte_to_char_table();
        let text = |bytes: &[u8]| spelled(&table, bytes);
        let vocab: AHashMap<String, u32> = (0u32..)
            .zip(&self.tokens)
            .map(|(r, b)| (text(b), r))
            .collect();
        let merges = (self.merges.iter())
            .map(|&(l, r, _)| {
                (
                    text(&self.tokens[l as usize]),
                    text(&self.tokens[r as usize]),
                )
            })
            .collect();
        let model = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| Error::Tokenizer(format!("building gpt2 BPE: {e}")))?;
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        tokenizer
            .add_special_tokens([AddedToken::from(GPT2_EOS.0, true)])
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(tokenizer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::shipped;

    #[test]
    fn byte_table_is_a_bijection_onto_gpt2_characters() {
        let table = byte_to_char_table();
        let mut seen: Vec<char> = table.to_vec();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[b'A' as usize], 'A');
    }

    /// `RANKS` before compression, from `tiktoken-rs`.
    fn tiktoken_ranks() -> Vec<u8> {
        let bpe = tiktoken_rs::r50k_base_singleton();
        let mut raw = Vec::new();
        for rank in 0..GPT2_EOS.1 {
            let token = bpe.decode_bytes(&[rank]).unwrap();
            raw.push(u8::try_from(token.len()).expect("a token of under 256 bytes"));
            raw.extend_from_slice(&token);
        }
        raw
    }

    #[test]
    fn the_shipped_ranks_are_tiktoken_s() {
        let expected = tiktoken_ranks();
        let rewrite_with = "HASHPREP_WRITE_GPT2_RANKS";
        let source = "tiktoken-rs's r50k_base";
        shipped::check(RANKS, &expected, "gpt2_ranks.zst", source, rewrite_with);
        let tokens = length_prefixed(&expected).unwrap();
        let merges: Vec<u8> = (derived_merges(&tokens).into_iter())
            .flat_map(|(left, right, merged)| [left, right, merged])
            .flat_map(|id| u16::try_from(id).unwrap().to_le_bytes())
            .collect();
        let source = "the ranks' merges";
        shipped::check(MERGES, &merges, "gpt2_merges.zst", source, rewrite_with);
        let ranks = Gpt2Ranks::load().unwrap();
        assert_eq!(ranks.tokens, tokens);
        assert_eq!(ranks.merges.len(), 86_119);
    }

    #[test]
    fn the_file_is_written_as_tokenizers_writes_it() {
        let ranks = Gpt2Ranks::load().unwrap();
        let library = ranks.library_form().unwrap();
        assert_eq!(library.token_to_id(GPT2_EOS.0), Some(GPT2_EOS.1));
        assert_eq!(library.get_vocab_size(true), ranks.vocab_size());
        let written = library.to_string(false).unwrap();
        assert_eq!(
            crate::integrity::fingerprint_bytes(&ranks.json()),
            GPT2_FINGERPRINT
        );
        let ours = String::from_utf8(ranks.json()).unwrap();
        assert_eq!(ours.len(), written.len());
        assert!(
            ours == written,
            "gpt2's tokenizer.json differs from what tokenizers writes"
        );
    }
}
