//! A fast path for byte-level BPE `tokenizer.json` files (GPT-2, `RoBERTa` and the BPEs
//! `hashprep` trains): GPT-2's pre-tokenizer as a scanner ([`super::gpt2_split`]), the merges
//! applied as the `tokenizers` library applies them (lowest rank first, then leftmost, from a
//! heap), and a per-thread cache of piece -> ids. It gives the ids of `tokenizers` without its
//! per-call allocations (normalized strings, offsets, `Encoding`s).
//!
//! [`ByteLevelBpe::from_json`] takes only files whose every component it reproduces and says
//! why it refuses the others; those are encoded by `tokenizers`.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use ahash::AHashMap;
use serde_json::Value;

use super::added_tokens::{AddedTokens, Piece};
use super::bpe_file::{BpeFile, Merge};
use super::gpt2::byte_to_char_table;
use super::gpt2_split::{self, split_gpt2};
use super::piece_cache::{PackedHasher, PieceCache};
use super::split_pattern::{deepseek, with_decoded, Decoded, SplitPattern};

/// Numbers the fast paths made, for [`ByteLevelBpe::instance`].
static INSTANCES: AtomicU64 = AtomicU64::new(1);

/// The pattern of the `tokenizers` `ByteLevel` pre-tokenizer, which [`split_gpt2`] scans.
pub(crate) const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// What the fast path read of a file that `tokenizers` would otherwise be loaded for.
pub(crate) struct FileVocabulary {
    /// The model's tokens and their ids.
    pub(crate) tokens: AHashMap<Box<str>, u32>,
    /// One more than the largest id, added tokens included.
    pub(crate) size: usize,
    /// `(content, id, special)` of each added token.
    pub(crate) added: Vec<(String, u32, bool)>,
    /// The file sets truncation or padding (which loading disables, through `tokenizers`).
    pub(crate) truncates_or_pads: bool,
}

/// A byte-level BPE, ready to encode.
pub(crate) struct ByteLevelBpe {
    /// The id of each byte's one-character token.
    byte_ids: [u32; 256],
    /// `(left, right)` -> `(rank, merged id)`.
    merges: MergeTable,
    /// With `ignore_merges` (Llama-3 style): every token's bytes -> its id, for pieces that
    /// are a token as a whole.
    whole_tokens: Option<AHashMap<Box<[u8]>, u32>>,
    /// The pre-tokenizer: each step splits the pieces of the one before.
    steps: Vec<PreStep>,
    /// Found before pre-tokenizing, and given their own ids.
    added: AddedTokens,
    /// Tells the per-thread caches of different tokenizers apart.
    instance: u64,
}

thread_local! {
    static CACHE: RefCell<PieceCache> = RefCell::new(PieceCache::default());
}

/// A byte-level symbol: its id, and its neighbours (`usize::MAX`: none), `None` once
/// merged into its left neighbour.
#[derive(Clone, Copy)]
struct Symbol {
    id: Option<u32>,
    prev: usize,
    next: usize,
}

impl ByteLevelBpe {
    /// The fast path for a `tokenizer.json` and what it read of the file, or why it does not
    /// apply.
    ///
    /// # Errors
    /// The component (by its place in the file) it does not reproduce.
    pub(crate) fn from_json(json: &[u8]) -> Result<(Self, FileVocabulary), String> {
        let mut file = BpeFile::read(json)?;
        file.added_tokens = with_library_ids(&file.added_tokens, &file.model.vocab);
        let (steps, added) = check_components(&file)?;
        for step in &steps {
            match step {
                PreStep::Gpt2 => gpt2_split::prepare(),
                PreStep::DeepSeek => deepseek::prepare(),
                PreStep::Pattern(_) => {}
            }
        }
        let fast = Self::from_file(&file, steps, added)?;
        Ok((fast, FileVocabulary::of(file)))
    }

    /// The fast path of `file`, pre-tokenized by `steps` after `added`.
    fn from_file(file: &BpeFile, steps: Vec<PreStep>, added: AddedTokens) -> Result<Self, String> {
        let model = &file.model;
        let vocab = &model.vocab;
        let byte_chars = byte_to_char_table();
        let unmap: AHashMap<char, u8> = (0u8..=255).zip(byte_chars).map(|(b, c)| (c, b)).collect();
        let whole_tokens = (model.ignore_merges == true).then(|| {
            vocab
                .iter()
                .filter_map(|(token, &id)| {
                    let bytes: Option<Box<[u8]>> =
                        token.chars().map(|c| unmap.get(&c).copied()).collect();
                    bytes.map(|b| (b, id))
                })
                .collect()
        });
        let mut byte_ids = [0u32; 256];
        for (byte, id) in (0u8..=255).zip(&mut byte_ids) {
            let token = byte_chars[usize::from(byte)].to_string();
            *id = *vocab
                .get(token.as_str())
                .ok_or_else(|| format!("model.vocab has no token for byte {byte}"))?;
        }
        let mut joined = String::new();
        let merges = (0u32..)
            .zip(&model.merges)
            .map(|(rank, Merge(left, right))| {
                let id = |t: &str| {
                    vocab.get(t).copied().ok_or_else(|| {
                        format!("model.merges[{rank}]: {t:?} is not in the vocabulary")
                    })
                };
                joined.clear();
                joined.push_str(left);
                joined.push_str(right);
                Ok((id(left)?, id(right)?, id(&joined)?))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            steps,
            added,
            ..Self::from_merges(&byte_ids, merges, whole_tokens)
        })
    }

    /// The fast path of a BPE given each byte's id and its merges `(left, right, merged)` in
    /// priority order; `whole_tokens` as `ignore_merges` asks.
    pub(crate) fn from_merges(
        byte_ids: &[u32; 256],
        merges: impl IntoIterator<Item = (u32, u32, u32)>,
        whole_tokens: Option<AHashMap<Box<[u8]>, u32>>,
    ) -> Self {
        // As `tokenizers` (which collects them into a map): a pair listed twice keeps its
        // last rank.
        let merges = MergeTable(
            (0u32..)
                .zip(merges)
                .map(|(rank, (left, right, merged))| (pair_key(left, right), (rank, merged)))
                .collect(),
        );
        Self {
            byte_ids: *byte_ids,
            merges,
            whole_tokens,
            steps: vec![PreStep::Gpt2],
            added: AddedTokens::default(),
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The same BPE with `added` tokens.
    pub(crate) fn with_added(self, added: AddedTokens) -> Self {
        Self { added, ..self }
    }

    /// Appends the ids of `text` to `out`; special-token strings in it become their ids when
    /// `recognize_special`, and are text otherwise. Returns whether an added token's text may
    /// occur in `text` (false: none does).
    pub(crate) fn encode(&self, text: &str, recognize_special: bool, out: &mut Vec<u32>) -> bool {
        CACHE.with_borrow_mut(|cache| {
            cache.serve(self.instance);
            self.added
                .split(text, recognize_special, &mut |piece| match piece {
                    Piece::Token(id) => out.push(id),
                    Piece::Text(text) => each_piece(&self.steps, text, &mut |piece| {
                        cache.extend(text, piece, out, |p, out| self.merge(p, out));
                    }),
                })
        })
    }

    /// Appends the ids of one piece to `out`: its bytes merged by rank, as `tokenizers`'
    /// `Word::merge_all`.
    fn merge(&self, piece: &str, out: &mut Vec<u32>) {
        if let Some(&id) = self
            .whole_tokens
            .as_ref()
            .and_then(|tokens| tokens.get(piece.as_bytes()))
        {
            out.push(id);
            return;
        }
        if piece.len() <= SHORT_MERGE {
            self.merge_short(piece, out);
            return;
        }
        let n = piece.len();
        let mut symbols: Vec<Symbol> = piece
            .bytes()
            .enumerate()
            .map(|(i, b)| Symbol {
                id: Some(self.byte_ids[usize::from(b)]),
                prev: i.wrapping_sub(1),
                next: if i + 1 < n { i + 1 } else { usize::MAX },
            })
            .collect();
        let id = |s: &Symbol| s.id.expect("a live symbol");
        // Min-heap on (rank, position), as `tokenizers` orders its merges.
        let mut queue: BinaryHeap<Reverse<(u32, usize, u32)>> = symbols
            .windows(2)
            .enumerate()
            .filter_map(|(pos, w)| {
                self.merges
                    .get(id(&w[0]), id(&w[1]))
                    .map(|&(rank, merged)| Reverse((rank, pos, merged)))
            })
            .collect();
        while let Some(Reverse((_, pos, merged))) = queue.pop() {
            let Some(left) = symbols[pos].id else {
                continue;
            };
            let next = symbols[pos].next;
            if next == usize::MAX {
                continue;
            }
            let right = id(&symbols[next]);
            // An entry whose pair has changed since it was queued is stale.
            if self
                .merges
                .get(left, right)
                .is_none_or(|&(_, m)| m != merged)
            {
                continue;
            }
            let after = symbols[next].next;
            symbols[pos] = Symbol {
                id: Some(merged),
                next: after,
                ..symbols[pos]
            };
            symbols[next].id = None;
            if after != usize::MAX {
                symbols[after].prev = pos;
            }
            let prev = symbols[pos].prev;
            if prev != usize::MAX {
                if let Some(&(rank, m)) = self.merges.get(id(&symbols[prev]), merged) {
                    queue.push(Reverse((rank, prev, m)));
                }
            }
            if after != usize::MAX {
                if let Some(&(rank, m)) = self.merges.get(merged, id(&symbols[after])) {
                    queue.push(Reverse((rank, pos, m)));
                }
            }
        }
        out.extend(symbols.iter().filter_map(|s| s.id));
    }
}

/// `added` with the ids `tokenizers` gives them, which are not always those the file writes:
/// in the file's order, a token's earlier id, else the model's id for it, else the next id from
/// the model's size on.
fn with_library_ids(added: &[Value], vocab: &AHashMap<Box<str>, u32>) -> Vec<Value> {
    let mut next = u32::try_from(vocab.len()).unwrap_or(u32::MAX);
    let mut given: AHashMap<&str, u32> = AHashMap::new();
    (added.iter())
        .map(|token| {
            let content = token["content"].as_str().unwrap_or_default();
            if content.is_empty() {
                return token.clone(); // which the library skips, and the fast path refuses
            }
            let id = *given.entry(content).or_insert_with(|| {
                vocab.get(content).copied().unwrap_or_else(|| {
                    next += 1;
                    next - 1
                })
            });
            let mut token = token.clone();
            token["id"] = id.into();
            token
        })
        .collect()
}

impl FileVocabulary {
    /// What the fast path keeps of `file`: its vocabulary (taken, not copied) and added tokens.
    fn of(file: BpeFile) -> Self {
        // Checked by `AddedTokens::from_json`: each has a content and an id.
        let added: Vec<(String, u32, bool)> = (file.added_tokens.iter())
            .filter_map(|token| {
                let id = u32::try_from(token["id"].as_u64()?).ok()?;
                let content = token["content"].as_str()?.to_owned();
                Some((content, id, token["special"] == true))
            })
            .collect();
        let tokens = file.model.vocab;
        let largest = (tokens
            .values()
            .chain(added.iter().map(|(_, id, _)| id))
            .max())
        .copied();
        Self {
            size: largest.map_or(0, |id| id as usize + 1),
            tokens,
            added,
            truncates_or_pads: !file.truncation.is_null() || !file.padding.is_null(),
        }
    }
}

/// `(left, right)` as one key.
fn pair_key(left: u32, right: u32) -> u64 {
    u64::from(left) << 32 | u64::from(right)
}

/// Merges by pair: `(left, right)` -> `(rank, merged id)`, hashed as the piece cache hashes
/// (the lookups are most of merging a piece).
struct MergeTable(HashMap<u64, (u32, u32), BuildHasherDefault<PackedHasher>>);

impl MergeTable {
    #[inline]
    fn get(&self, left: u32, right: u32) -> Option<&(u32, u32)> {
        self.0.get(&pair_key(left, right))
    }
}

/// Pieces up to this many bytes are merged by [`ByteLevelBpe::merge_short`] (no heap): a scan
/// for the lowest rank costs less than the heap's allocations and reorderings on short pieces.
const SHORT_MERGE: usize = 48;

impl ByteLevelBpe {
    /// [`ByteLevelBpe::merge`] of a short piece: the pair of lowest rank (the leftmost of
    /// equal ones) merged first, again and again, as `tokenizers` does; each pair's rank kept
    /// beside it, so a merge looks up only the two pairs it changes. On the stack: most pieces
    /// merged are new words, each merged once.
    fn merge_short(&self, piece: &str, out: &mut Vec<u32>) {
        const NONE: (u32, u32) = (u32::MAX, 0);
        let pair = |left: u32, right: u32| self.merges.get(left, right).copied().unwrap_or(NONE);
        let mut ids = [0u32; SHORT_MERGE];
        for (id, b) in ids.iter_mut().zip(piece.bytes()) {
            *id = self.byte_ids[usize::from(b)];
        }
        let mut len = piece.len();
        // `ranks[i]`: the pair `ids[i]`, `ids[i + 1]`.
        let mut ranks = [NONE; SHORT_MERGE];
        for i in 1..len {
            ranks[i - 1] = pair(ids[i - 1], ids[i]);
        }
        loop {
            let mut best = None;
            for (i, &(rank, merged)) in ranks[..len.saturating_sub(1)].iter().enumerate() {
                if rank != u32::MAX && best.is_none_or(|(r, _, _)| rank < r) {
                    best = Some((rank, i, merged));
                }
            }
            let Some((_, i, merged)) = best else {
                out.extend_from_slice(&ids[..len]);
                return;
            };
            ids[i] = merged;
            ids.copy_within(i + 2..len, i + 1);
            ranks.copy_within(i + 1..len - 1, i);
            len -= 1;
            if i > 0 {
                ranks[i - 1] = pair(ids[i - 1], ids[i]);
            }
            if i + 1 < len {
                ranks[i] = pair(ids[i], ids[i + 1]);
            }
        }
    }
}

/// One pre-tokenization step, applied to each piece of the step before.
enum PreStep {
    /// GPT-2's pattern, by its hand-written scanner.
    Gpt2,
    /// `DeepSeek`-V3/V4's three patterns, by one hand-written pass.
    DeepSeek,
    /// A `Split` pattern (behaviour `Isolated`).
    Pattern(SplitPattern),
}

/// Refuses every component the fast path does not reproduce exactly; returns the
/// pre-tokenization steps and the added tokens.
fn check_components(file: &BpeFile) -> Result<(Vec<PreStep>, AddedTokens), String> {
    let null_or = |v: &Value, allowed: &dyn Fn(&Value) -> bool| v.is_null() || allowed(v);
    if !no_op_normalizer(&file.normalizer) {
        return Err(format!("normalizer {}", file.normalizer));
    }
    let steps = pre_tokenizer_steps(&file.pre_tokenizer)?;
    // With no special tokens added (as corpora are encoded), these add nothing to the ids.
    let no_op = |v: &Value| {
        matches!(
            v["type"].as_str(),
            Some("ByteLevel" | "RobertaProcessing" | "TemplateProcessing")
        )
    };
    let post = &file.post_processor;
    let post_steps = post["processors"].as_array().map_or(&[][..], Vec::as_slice);
    if !null_or(post, &|v| {
        no_op(v) || (v["type"] == "Sequence" && post_steps.iter().all(no_op))
    }) {
        return Err(format!("post_processor of type {}", post["type"]));
    }
    let model = &file.model;
    let empty = |v: &Value| v.is_null() || *v == "";
    let off = |v: &Value| v.is_null() || *v == false;
    if !model.dropout.is_null()
        || !empty(&model.continuing_subword_prefix)
        || !empty(&model.end_of_word_suffix)
        || !off(&model.byte_fallback)
    {
        return Err("BPE with dropout, a subword prefix or suffix, or byte fallback".into());
    }
    let added = &file.added_tokens;
    Ok((steps, AddedTokens::from_json(added)?))
}

/// No normalizer, or a `Sequence` of none.
fn no_op_normalizer(normalizer: &Value) -> bool {
    normalizer.is_null()
        || (normalizer["type"] == "Sequence"
            && (normalizer["normalizers"].as_array())
                .is_some_and(|n| n.iter().all(no_op_normalizer)))
}

/// The steps of a pre-tokenizer made of `Split` patterns (behaviour `Isolated`) and a last
/// `ByteLevel` without a prefix space (its own regex being GPT-2's pattern).
fn pre_tokenizer_steps<'a>(pre: &'a Value) -> Result<Vec<PreStep>, String> {
    let parts = match pre["type"].as_str() {
        Some("Sequence") => pre["pretokenizers"]
            .as_array()
            .map_or(&[][..], Vec::as_slice),
        _ => std::slice::from_ref(pre),
    };
    let Some((last, splits)) = parts.split_last() else {
        return Err("no pre_tokenizer: a byte-level BPE needs ByteLevel".into());
    };
    if last["type"] != "ByteLevel" || last["add_prefix_space"] != false {
        return Err(format!(
            "pre_tokenizer {pre}: the last step is not ByteLevel without a prefix space"
        ));
    }
    let isolated_pattern = |split: &'a Value| match split["pattern"]["Regex"].as_str() {
        Some(pattern)
            if split["type"] == "Split"
                && split["behavior"] == "Isolated"
                && split["invert"] == false =>
        {
            Some(pattern)
        }
        _ => None,
    };
    let patterns: Vec<Option<&str>> = splits.iter().map(isolated_pattern).collect();
    let mut steps = if patterns == deepseek::PATTERNS.map(Some) {
        vec![PreStep::DeepSeek]
    } else {
        splits
            .iter()
            .zip(patterns)
            .map(|(split, pattern)| match pattern {
                Some(pattern) => {
                    if pattern == GPT2_PATTERN {
                        return Ok(PreStep::Gpt2);
                    }
                    SplitPattern::new(pattern)
                        .map(PreStep::Pattern)
                        .map_err(|why| format!("Split pattern {pattern:?}: {why}"))
                }
                None => Err(format!(
                    "pre_tokenizer step {split}: only Split by a regex, Isolated, not inverted"
                )),
            })
            .collect::<Result<Vec<_>, String>>()?
    };
    if last["use_regex"] != false {
        steps.push(PreStep::Gpt2);
    }
    Ok(steps)
}

/// Calls `piece` with each piece of `text` after `steps`.
fn each_piece(steps: &[PreStep], text: &str, piece: &mut dyn FnMut(&str)) {
    match steps.split_first() {
        None => piece(text),
        Some((PreStep::Gpt2, rest)) => split_gpt2(text, |p| each_piece(rest, p, piece)),
        Some((PreStep::DeepSeek, rest)) => {
            deepseek::split(text, &mut |p| each_piece(rest, p, piece));
        }
        // Decoded once for all the patterns that follow one another.
        Some((PreStep::Pattern(_), _)) => with_decoded(text, |decoded| {
            pieces_of_range(steps, text, decoded, 0..decoded.chars.len(), piece);
        }),
    }
}

/// [`each_piece`] of the characters `range` of `decoded` (`text`).
fn pieces_of_range(
    steps: &[PreStep],
    text: &str,
    decoded: &Decoded,
    range: Range<usize>,
    piece: &mut dyn FnMut(&str),
) {
    let at = |range: &Range<usize>| &text[decoded.offsets[range.start]..decoded.offsets[range.end]];
    match steps.split_first() {
        Some((PreStep::Pattern(pattern), rest)) if pattern.passes_over(at(&range)) => {
            pieces_of_range(rest, text, decoded, range, piece);
        }
        Some((PreStep::Pattern(pattern), rest)) => {
            pattern.split_range(&decoded.chars, range, |sub| {
                pieces_of_range(rest, text, decoded, sub, piece);
            });
        }
        _ => each_piece(steps, at(&range), piece),
    }
}
