//! The per-thread cache of the byte-level fast path: piece -> ids. A lookup is most of the cost
//! of encoding a piece seen before, so the common case keeps to one table slot: a piece of up
//! to 15 bytes is keyed by its bytes and length packed into one integer (no pointer to follow,
//! compared at once), and up to three ids are stored in the slot. Longer pieces, and longer id
//! lists, live beside it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use ahash::AHashMap;

/// Entries kept before the cache starts over. Small: a table that stays within the processor's
/// caches makes up for the pieces merged again after each start (a cache of 2^18 pieces took 20 %
/// more CPU on text of many scripts, where most pieces are new, and none less on Wikitext).
const LIMIT: usize = 1 << 15;

/// Longest piece kept in a packed key (its 16th byte is the length).
const SHORT_PIECE: usize = 15;

/// Ids kept in the slot itself.
const INLINE_IDS: usize = 3;

/// A piece's ids: `len` of them, in `ids`, or from `ids[0]` on in the pool when more than
/// [`INLINE_IDS`].
#[derive(Clone, Copy)]
struct CachedIds {
    len: u32,
    ids: [u32; INLINE_IDS],
}

/// Pieces of one tokenizer (`owner`) and their ids.
#[derive(Default)]
pub(super) struct PieceCache {
    owner: u64,
    short: HashMap<u128, CachedIds, BuildHasherDefault<PackedHasher>>,
    long: AHashMap<Box<str>, Box<[u32]>>,
    /// The ids of short pieces with more than [`INLINE_IDS`] of them.
    pool: Vec<u32>,
}

/// `piece`'s bytes (little-endian) and its length (the top byte) as one integer, when it has
/// at most [`SHORT_PIECE`] bytes. Built from overlapping loads: bytes copied into a buffer and
/// read back as an integer stall the load that follows the stores.
fn packed(piece: &str) -> Option<u128> {
    let b = piece.as_bytes();
    let len = b.len();
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u64::from(u32::from_le_bytes(b[at..at + 4].try_into().expect("4")));
    let (low, high) = match len {
        0 => (0, 0),
        1..=3 => {
            let byte = |at: usize| u64::from(b[at]) << (8 * at);
            (byte(0) | byte(len / 2) | byte(len - 1), 0)
        }
        4..=7 => (half(0) | half(len - 4) << (8 * (len - 4)), 0),
        8 => (word(0), 0),
        9..=SHORT_PIECE => (word(0), word(len - 8) >> (8 * (16 - len))),
        _ => return None,
    };
    Some(u128::from(low) | u128::from(high | (len as u64) << 56) << 64)
}

/// [`packed`] of `piece`, a part of `text`, read with one load of 16 bytes where the text holds
/// them from the piece's start on (no branch on the piece's length: pieces of every length come
/// in turn, and a branch per length class was mispredicted often).
#[inline]
fn packed_within(text: &str, piece: &str) -> Option<u128> {
    // Where the piece lies in the text: an address inside the text's bytes is one of them.
    let start = (piece.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    match text.as_bytes().get(start..start.saturating_add(16)) {
        Some(bytes) if piece.len() <= SHORT_PIECE => {
            let word = u128::from_le_bytes(bytes.try_into().expect("16 bytes"));
            let below = (1u128 << (8 * piece.len())) - 1;
            Some(word & below | (piece.len() as u128) << 120)
        }
        _ => packed(piece),
    }
}

/// Hashes an integer key (a packed piece; a merge's pair) with one folded multiply (a general
/// hasher's rounds cost as much as the rest of a lookup); a table takes its slot from the low
/// bits and its tag from the top ones, and the fold mixes every key bit into both.
#[derive(Default)]
pub(super) struct PackedHasher(u64);

impl Hasher for PackedHasher {
    fn write(&mut self, _: &[u8]) {
        unreachable!("integer keys only");
    }

    fn write_u64(&mut self, key: u64) {
        self.write_u128(u128::from(key));
    }

    fn write_u128(&mut self, key: u128) {
        let (low, high) = (key as u64, (key >> 64) as u64);
        let product =
            u128::from(low ^ 0x243F_6A88_85A3_08D3) * u128::from(high ^ 0x1319_8A2E_0370_7344);
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl PieceCache {
    /// Empties the cache when it holds another tokenizer's pieces, or is full.
    pub(super) fn serve(&mut self, owner: u64) {
        if self.owner != owner || self.short.len() + self.long.len() >= LIMIT {
            self.short.clear();
            self.long.clear();
            self.pool.clear();
            self.owner = owner;
        }
    }

    /// Appends the ids of `piece`, a part of `text`, to `out`: cached ones, or those `merge`
    /// appends (then cached).
    #[inline]
    pub(super) fn extend(
        &mut self,
        text: &str,
        piece: &str,
        out: &mut Vec<u32>,
        merge: impl FnOnce(&str, &mut Vec<u32>),
    ) {
        let Some(key) = packed_within(text, piece) else {
            if let Some(ids) = self.long.get(piece) {
                out.extend_from_slice(ids);
            } else {
                let start = out.len();
                merge(piece, out);
                self.long.insert(piece.into(), out[start..].into());
            }
            return;
        };
        if let Some(cached) = self.short.get(&key) {
            let len = cached.len as usize;
            if len <= INLINE_IDS {
                // One to three ids: pushed, not copied by a call to `memcpy`.
                out.reserve(INLINE_IDS);
                for &id in &cached.ids[..len] {
                    out.push(id);
                }
            } else {
                out.extend_from_slice(self.ids(cached));
            }
            return;
        }
        let start = out.len();
        merge(piece, out);
        let ids = &out[start..];
        let len = u32::try_from(ids.len()).expect("a piece of 15 bytes has at most 15 ids");
        let mut cached = CachedIds {
            len,
            ids: [0; INLINE_IDS],
        };
        if ids.len() <= INLINE_IDS {
            cached.ids[..ids.len()].copy_from_slice(ids);
        } else {
            cached.ids[0] = u32::try_from(self.pool.len()).expect("the pool is cleared at LIMIT");
            self.pool.extend_from_slice(ids);
        }
        self.short.insert(key, cached);
    }

    fn ids<'c>(&'c self, cached: &'c CachedIds) -> &'c [u32] {
        let len = cached.len as usize;
        if len <= INLINE_IDS {
            &cached.ids[..len]
        } else {
            let start = cached.ids[0] as usize;
            &self.pool[start..start + len]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids that tell pieces apart: one per byte, each the byte's value plus the piece length.
    fn ids_of(piece: &str) -> Vec<u32> {
        piece
            .bytes()
            .map(|b| u32::from(b) + piece.len() as u32 * 1000)
            .collect()
    }

    fn merge(piece: &str, out: &mut Vec<u32>) {
        out.extend(ids_of(piece));
    }

    #[test]
    fn a_packed_key_is_the_bytes_then_the_length() {
        let text = "abcdefghijklmnopé\0xyz";
        for start in 0..4 {
            for end in start..=text.len() {
                let Some(piece) = text.get(start..end) else {
                    continue;
                };
                let mut expected = [0u8; 16];
                expected[..piece.len().min(15)]
                    .copy_from_slice(&piece.as_bytes()[..piece.len().min(15)]);
                expected[15] = piece.len() as u8;
                let expected = (piece.len() <= 15).then(|| u128::from_le_bytes(expected));
                assert_eq!(packed(piece), expected, "{piece:?}");
            }
        }
    }

    #[test]
    fn a_key_read_in_the_text_is_the_piece_s_own() {
        // A piece from elsewhere is packed on its own.
        let elsewhere = String::from("abc");
        assert_eq!(packed_within("xyz", &elsewhere), packed("abc"));
        let text = "abcdefghijklmnopqrstuvwxyzé\0日本語 and more";
        for start in 0..text.len() {
            for end in start..=text.len() {
                if let Some(piece) = text.get(start..end) {
                    assert_eq!(packed_within(text, piece), packed(piece), "{piece:?}");
                }
            }
        }
    }

    #[test]
    fn every_kind_of_piece_comes_back_with_its_own_ids() {
        let pieces = [
            "",
            "a",
            "a\0",
            "\0a",
            "abc",
            "abcd",
            " fifteen bytes!",
            "sixteen bytes!!!",
            "é",
            "a longer piece than fits a key",
        ];
        let mut cache = PieceCache::default();
        cache.serve(1);
        for round in 0..2 {
            for piece in pieces {
                let mut out = vec![7];
                let mut merged = false;
                cache.extend(piece, piece, &mut out, |p, out| {
                    merged = true;
                    merge(p, out);
                });
                assert_eq!(out[1..], ids_of(piece), "{piece:?}");
                assert_eq!(merged, round == 0, "{piece:?} in round {round}");
            }
        }
    }

    #[test]
    fn another_tokenizer_or_a_full_cache_starts_over() {
        let mut cache = PieceCache::default();
        cache.serve(1);
        cache.extend("abcdef", "abcdef", &mut Vec::new(), merge);
        cache.serve(2);
        let mut merged = false;
        cache.extend("abcdef", "abcdef", &mut Vec::new(), |p, out| {
            merged = true;
            merge(p, out);
        });
        assert!(merged);
        for i in 0..LIMIT {
            let piece = i.to_string();
            cache.extend(&piece, &piece, &mut Vec::new(), merge);
        }
        cache.serve(2);
        assert_eq!(cache.short.len() + cache.long.len() + cache.pool.len(), 0);
    }
}
