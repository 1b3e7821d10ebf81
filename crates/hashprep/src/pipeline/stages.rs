//! The stages of a tokenize run after reading: chunks of examples encoded in parallel, then
//! written in input order into shards, counts and the journal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::progress::Progress;
use crate::corpus::ProgressFeed;
use crate::corpus::{Format, Item, Items, Source};
use crate::counts::TokenCounts;
use crate::error::{Error, Result, SkipReason};
use crate::shard::journal::{Journal, JournalEntry};
use crate::shard::{shard_file_name, ShardInfo, ShardReader, ShardWriter, TokenWidth, Totals};
use crate::tokenize::TextTokenizer;

/// The notice counting special-token strings written in the text.
const SPECIAL_TOKEN_TEXT: &str = "special_token_text";

/// A chunk of examples on its way to a worker.
pub(super) struct Chunk {
    seq: u64,
    items: Vec<Item>,
}

/// One stream item after encoding.
pub(super) enum Encoded {
    Example {
        len: u32,
        prefix_len: u32,
        source: Option<Source>,
        special_strings: u64,
    },
    Skipped(SkipReason),
    Notice(&'static str),
}

/// A chunk after encoding: the ids of all its examples back to back.
pub(super) struct EncodedChunk {
    seq: u64,
    ids: Vec<u32>,
    items: Vec<Encoded>,
}

pub(super) enum Message {
    Chunk(EncodedChunk),
    Failed(Error),
    ReaderDone { chunks: u64 },
}

/// Encodes the examples of a chunk (runs on the rayon pool).
pub(super) struct ChunkEncoder {
    tokenizer: Arc<TextTokenizer>,
    eos: Option<u32>,
    /// Dialogue responses longer than this (in ids, without the end token) are dropped.
    max_response_tokens: Option<usize>,
    /// Dialogue formats: a text seen before in the chunk reuses its ids (see [`TextCache`]).
    reuse_texts: bool,
}

/// The ids of the texts already encoded in a chunk. A Reddit comment's body is the response of
/// its own example and a context turn of every reply below it (up to the context length), and
/// a thread's examples are consecutive in the stream: encoding each distinct text once per
/// chunk instead of once per use is what makes dialogue data cost about what its bodies do.
/// Encoding is a function of the text, so the ids are the same either way.
#[derive(Default)]
struct TextCache<'a> {
    /// Text -> (start in `ids`, length, special-token strings in it).
    spans: ahash::AHashMap<&'a str, (usize, usize, u64)>,
    ids: Vec<u32>,
}

impl ChunkEncoder {
    pub(super) fn new(tokenizer: Arc<TextTokenizer>, eos: Option<u32>, format: &Format) -> Self {
        let max_response_tokens = match format {
            Format::Reddit(reddit) if reddit.filter.recipe => {
                Some(reddit.filter.max_response_tokens)
            }
            _ => None,
        };
        Self {
            tokenizer,
            eos,
            max_response_tokens,
            reuse_texts: matches!(format, Format::Reddit(_)),
        }
    }

    /// Appends the ids of `text` to `out`; returns the special-token strings written in it.
    fn append<'a>(
        &self,
        text: &'a str,
        out: &mut Vec<u32>,
        cache: Option<&mut TextCache<'a>>,
    ) -> Result<u64> {
        let Some(cache) = cache else {
            out.extend(self.tokenizer.encode(text)?);
            return Ok(self.tokenizer.count_special_strings(text));
        };
        if let Some(&(start, len, special)) = cache.spans.get(text) {
            out.extend_from_slice(&cache.ids[start..start + len]);
            return Ok(special);
        }
        let ids = self.tokenizer.encode(text)?;
        let special = self.tokenizer.count_special_strings(text);
        cache
            .spans
            .insert(text, (cache.ids.len(), ids.len(), special));
        cache.ids.extend_from_slice(&ids);
        out.extend(ids);
        Ok(special)
    }

    pub(super) fn encode(&self, chunk: &Chunk) -> Result<EncodedChunk> {
        let mut ids = Vec::new();
        let mut items = Vec::with_capacity(chunk.items.len());
        let mut cache = self.reuse_texts.then(TextCache::default);
        for item in &chunk.items {
            match item {
                Item::Skipped(reason) => items.push(Encoded::Skipped(*reason)),
                Item::Notice(name) => items.push(Encoded::Notice(name)),
                Item::Example(example) => {
                    let start = ids.len();
                    let mut special_strings = 0;
                    for turn in &example.context {
                        special_strings += self.append(turn, &mut ids, cache.as_mut())?;
                        ids.extend(self.eos);
                    }
                    let prefix_len = (ids.len() - start) as u32;
                    special_strings += self.append(&example.text, &mut ids, cache.as_mut())?;
                    let response_len = ids.len() - start - prefix_len as usize;
                    if self
                        .max_response_tokens
                        .is_some_and(|max| response_len > max)
                    {
                        ids.truncate(start);
                        items.push(Encoded::Skipped(SkipReason::FilterLongResponse));
                        continue;
                    }
                    ids.extend(self.eos);
                    items.push(Encoded::Example {
                        len: (ids.len() - start) as u32,
                        prefix_len,
                        source: example.source.clone(),
                        special_strings,
                    });
                }
            }
        }
        Ok(EncodedChunk {
            seq: chunk.seq,
            ids,
            items,
        })
    }
}

/// Reader thread: parses the stream into chunks and hands each to the pool once a credit is
/// free. The first `skip` items were written by an earlier run and are only counted past.
pub(super) fn read_chunks(
    stream: Items,
    skip: u64,
    chunk_bytes: usize,
    credits: &Receiver<()>,
    results: &Sender<Message>,
    pool: &Arc<rayon::ThreadPool>,
    encoder: ChunkEncoder,
) {
    let encoder = Arc::new(encoder);
    let mut seq = 0u64;
    let mut items = Vec::new();
    let mut bytes = 0usize;
    let dispatch = |items: Vec<Item>, seq: &mut u64| -> bool {
        if credits.recv().is_err() {
            return false; // the writer stopped
        }
        let chunk = Chunk { seq: *seq, items };
        *seq += 1;
        let (encoder, results) = (encoder.clone(), results.clone());
        pool.spawn(move || {
            let message = match encoder.encode(&chunk) {
                Ok(encoded) => Message::Chunk(encoded),
                Err(e) => Message::Failed(e),
            };
            let _ = results.send(message);
        });
        true
    };
    for (index, item) in (0u64..).zip(stream) {
        match item {
            Err(e) => {
                let _ = results.send(Message::Failed(e));
                return;
            }
            Ok(_) if index < skip => {}
            Ok(item) => {
                if let Item::Example(example) = &item {
                    bytes +=
                        example.text.len() + example.context.iter().map(String::len).sum::<usize>();
                }
                items.push(item);
                if bytes >= chunk_bytes || items.len() >= 8192 {
                    bytes = 0;
                    if !dispatch(std::mem::take(&mut items), &mut seq) {
                        return;
                    }
                }
            }
        }
    }
    if !items.is_empty() && !dispatch(items, &mut seq) {
        return;
    }
    let _ = results.send(Message::ReaderDone { chunks: seq });
}

/// Writer loop on the calling thread: applies encoded chunks strictly in sequence order.
/// On failure the caller drops the writer: the shard in progress stays under its temporary
/// name, as after a kill.
pub(super) fn write_in_order(
    results: &Receiver<Message>,
    credits: &Sender<()>,
    writer: &mut OutputWriter,
    journal: &mut Journal,
    (progress, feed): (&Progress, &ProgressFeed),
    cancel: Option<&AtomicBool>,
) -> Result<()> {
    let mut pending: HashMap<u64, EncodedChunk> = HashMap::new();
    let mut next = 0u64;
    let mut total: Option<u64> = None;
    while total != Some(next) {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Error::Interrupted);
        }
        let message = match results.recv_timeout(Duration::from_millis(100)) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::BadInput("the reader stopped unexpectedly".into()))
            }
        };
        match message {
            Message::Failed(e) => return Err(e),
            Message::ReaderDone { chunks } => total = Some(chunks),
            Message::Chunk(chunk) => {
                pending.insert(chunk.seq, chunk);
                while let Some(chunk) = pending.remove(&next) {
                    writer.write_chunk(&chunk, journal)?;
                    next += 1;
                    let _ = credits.send(());
                    progress.update_from(feed, writer.totals.documents, writer.totals.tokens);
                }
            }
        }
    }
    Ok(())
}

/// The state of the output being written: current shard, finished shards, counts, totals.
pub(super) struct OutputWriter {
    pub(super) dir: PathBuf,
    pub(super) width: TokenWidth,
    pub(super) tokenizer_fingerprint: String,
    pub(super) shard_bytes: u64,
    pub(super) current: Option<ShardWriter>,
    pub(super) shards: Vec<ShardInfo>,
    pub(super) counts: TokenCounts,
    pub(super) totals: Totals,
    /// Stream items consumed (examples and skipped records).
    pub(super) items: u64,
    /// Testing: fail, as if killed, once this many shards are complete and the next is begun.
    pub(super) halt_after_shards: Option<usize>,
    /// Write the `id` and `subreddit` columns (dialogue data).
    pub(super) with_sources: bool,
}

impl OutputWriter {
    /// Picks up after the journaled shards: their counts are recomputed from the files.
    pub(super) fn resume(
        dir: &Path,
        width: TokenWidth,
        tokenizer: &TextTokenizer,
        entries: &[JournalEntry],
        shard_bytes: u64,
    ) -> Result<Self> {
        let mut counts = TokenCounts::new(tokenizer.vocab_size());
        for entry in entries {
            let shard = ShardReader::open(&dir.join(&entry.shard.file), None)?;
            let mut ids = Vec::new();
            for (doc, _) in shard.documents() {
                ids.clear();
                doc.for_each(|id| ids.push(id));
                counts.add(&ids);
            }
        }
        let last = entries.last();
        Ok(Self {
            dir: dir.to_path_buf(),
            width,
            tokenizer_fingerprint: tokenizer.fingerprint().to_owned(),
            shard_bytes: shard_bytes.max(1),
            current: None,
            shards: entries.iter().map(|e| e.shard.clone()).collect(),
            counts,
            totals: last.map(|e| e.totals.clone()).unwrap_or_default(),
            items: last.map_or(0, |e| e.items),
            halt_after_shards: None,
            with_sources: false,
        })
    }

    pub(super) fn write_chunk(
        &mut self,
        chunk: &EncodedChunk,
        journal: &mut Journal,
    ) -> Result<()> {
        let mut offset = 0usize;
        for item in &chunk.items {
            self.items += 1;
            match *item {
                Encoded::Notice(name) => {
                    *self.totals.notices.entry(name.to_owned()).or_default() += 1;
                }
                Encoded::Skipped(reason) => {
                    *self
                        .totals
                        .skipped
                        .entry(reason.name().to_owned())
                        .or_default() += 1;
                }
                Encoded::Example {
                    len,
                    prefix_len,
                    ref source,
                    special_strings,
                } => {
                    let ids = &chunk.ids[offset..offset + len as usize];
                    offset += len as usize;
                    if self.current.is_none() {
                        let path = self.dir.join(shard_file_name(self.shards.len()));
                        self.current = Some(ShardWriter::create_with(
                            &path,
                            self.width,
                            &self.tokenizer_fingerprint,
                            self.with_sources,
                        )?);
                    }
                    let shard = self.current.as_mut().expect("just created");
                    shard.push_with_source(ids, prefix_len, source.as_ref())?;
                    if self
                        .halt_after_shards
                        .is_some_and(|limit| self.shards.len() >= limit)
                    {
                        let done = self.shards.len();
                        return Err(Error::BadInput(format!(
                            "halted after {done} shards (`halt_after_shards`)"
                        )));
                    }
                    self.counts.add(ids);
                    if special_strings > 0 {
                        *self
                            .totals
                            .notices
                            .entry(SPECIAL_TOKEN_TEXT.to_owned())
                            .or_default() += special_strings;
                    }
                    self.totals.documents += 1;
                    self.totals.tokens += u64::from(len);
                    if shard.data_bytes() >= self.shard_bytes {
                        self.close_shard(journal)?;
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn close_shard(&mut self, journal: &mut Journal) -> Result<()> {
        if let Some(shard) = self.current.take() {
            let info = shard.finish()?;
            self.shards.push(info.clone());
            journal.append(&JournalEntry {
                shard: info,
                items: self.items,
                totals: self.totals.clone(),
            })?;
        }
        Ok(())
    }

    pub(super) fn finish(
        mut self,
        journal: &mut Journal,
    ) -> Result<(Vec<ShardInfo>, Totals, TokenCounts)> {
        self.close_shard(journal)?;
        Ok((self.shards, self.totals, self.counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{Example, RedditOptions};

    fn dialogue(context: &[&str], text: &str, id: &str) -> Item {
        Item::Example(Example {
            context: context.iter().map(|t| (*t).to_owned()).collect(),
            text: text.to_owned(),
            source: Some(Source {
                id: id.into(),
                subreddit: "s".into(),
            }),
        })
    }

    /// Ids and (length, prefix, special strings) or skip reason of every item.
    fn encoded(encoder: &ChunkEncoder, items: Vec<Item>) -> (Vec<u32>, Vec<String>) {
        let chunk = encoder.encode(&Chunk { seq: 0, items }).unwrap();
        let items = chunk
            .items
            .iter()
            .map(|item| match item {
                Encoded::Example {
                    len,
                    prefix_len,
                    special_strings,
                    source,
                } => format!("{len} {prefix_len} {special_strings} {source:?}"),
                Encoded::Skipped(reason) => format!("skipped {reason:?}"),
                Encoded::Notice(name) => format!("notice {name}"),
            })
            .collect();
        (chunk.ids, items)
    }

    #[test]
    fn reusing_a_chunks_encoded_texts_gives_the_same_ids() {
        let tokenizer = Arc::new(TextTokenizer::load("gpt2").unwrap());
        let mut reddit = RedditOptions::default();
        reddit.filter.recipe = true;
        reddit.filter.max_response_tokens = 12;
        let format = Format::Reddit(reddit);
        let reusing = ChunkEncoder::new(tokenizer.clone(), Some(50256), &format);
        assert!(reusing.reuse_texts);
        let mut fresh = ChunkEncoder::new(tokenizer, Some(50256), &format);
        fresh.reuse_texts = false;
        let long = "word ".repeat(40);
        // A thread: each response is the next example's last turn; a long response is
        // filtered after its context was encoded; a special-token string counts every use.
        let items = || {
            vec![
                dialogue(&["Title <|endoftext|>"], "first reply", "a"),
                dialogue(&["Title <|endoftext|>", "first reply"], &long, "b"),
                dialogue(&["Title <|endoftext|>", "first reply"], "second", "c"),
                Item::Skipped(SkipReason::Deleted),
                dialogue(&["first reply", "second"], "  spaces  and\ttabs ", "d"),
                dialogue(&[], "first reply", "e"),
            ]
        };
        let (ids, summary) = encoded(&reusing, items());
        assert_eq!((ids.clone(), summary.clone()), encoded(&fresh, items()));
        assert_eq!(summary[1], "skipped FilterLongResponse");
        assert!(summary[0].contains(" 1 Some"), "{}", summary[0]);
        // The last example is exactly the first reply's ids and the end token.
        let first_reply = tokenizer_ids("first reply");
        assert_eq!(
            ids[ids.len() - first_reply.len() - 1..ids.len() - 1],
            first_reply
        );
    }

    fn tokenizer_ids(text: &str) -> Vec<u32> {
        TextTokenizer::load("gpt2").unwrap().encode(text).unwrap()
    }
}
