//! GPT-2's byte-level BPE, built offline from the ranks that `tiktoken-rs` embeds (`r50k_base`
//! is GPT-2's encoding: same ranks, same ids, same pre-tokenization regex).
//!
//! The `HuggingFace` form needs a vocabulary of byte-level strings and a merge list. Token `r`
//! (r >= 256) is a merge of two shorter tokens, both of lower rank; listing every such split in
//! order of `r` gives a BPE whose merge priority is the rank of the merged token, which is how
//! tiktoken itself applies ranks. Tests compare the result with tiktoken on real text.

use ahash::AHashMap;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};

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

/// Builds GPT-2's tokenizer in `HuggingFace` form, with no file or network access.
///
/// # Errors
/// Only if the embedded ranks are inconsistent (a bug).
pub(crate) fn gpt2_tokenizer() -> Result<Tokenizer> {
    let bpe = tiktoken_rs::r50k_base_singleton();
    let table = byte_to_char_table();
    let eos_id = GPT2_EOS.1;
    let mut token_bytes: Vec<Vec<u8>> = Vec::with_capacity(eos_id as usize);
    for rank in 0..eos_id {
        let bytes = bpe
            .decode_bytes(&[rank])
            .map_err(|e| Error::Tokenizer(format!("gpt2 rank {rank}: {e:?}")))?;
        token_bytes.push(bytes);
    }
    let rank_of: AHashMap<&[u8], u32> = token_bytes
        .iter()
        .enumerate()
        .map(|(rank, bytes)| (bytes.as_slice(), rank as u32))
        .collect();
    let to_str = |bytes: &[u8]| -> String { bytes.iter().map(|&b| table[b as usize]).collect() };

    let vocab: AHashMap<String, u32> = token_bytes
        .iter()
        .enumerate()
        .map(|(rank, bytes)| (to_str(bytes), rank as u32))
        .collect();
    let mut merges: Vec<(String, String)> = Vec::with_capacity(60_000);
    for (rank, bytes) in token_bytes.iter().enumerate().skip(256) {
        for split in 1..bytes.len() {
            let (left, right) = bytes.split_at(split);
            let (Some(&l), Some(&r)) = (rank_of.get(left), rank_of.get(right)) else {
                continue;
            };
            if (l as usize) < rank && (r as usize) < rank {
                merges.push((to_str(left), to_str(right)));
            }
        }
    }
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
    debug_assert_eq!(tokenizer.token_to_id(GPT2_EOS.0), Some(eos_id));
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
