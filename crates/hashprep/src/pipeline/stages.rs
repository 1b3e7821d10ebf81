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
use crate::corpus::{Example, Format, Item, Items, PackedTexts, Source, SourceRef, TextIds};
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
    /// Bytes of text in the items, to size the ids buffer once.
    text_bytes: usize,
}

/// One stream item after encoding.
pub(super) enum Encoded {
    Example {
        len: u32,
        prefix_len: u32,
        /// Its source in the chunk's sources.
        source: Option<usize>,
        special_strings: u64,
    },
    Skipped(SkipReason),
    Notice(&'static str),
}

/// A chunk after encoding: the ids of all its examples back to back, and their sources.
pub(super) struct EncodedChunk {
    seq: u64,
    ids: Vec<u32>,
    sources: PackedTexts,
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
    /// Id buffers of written chunks, to be filled again: memory that stays in use is not handed
    /// back to the OS and faulted in again page by page.
    recycled: Option<Receiver<Vec<u32>>>,
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
            recycled: None,
        }
    }

    /// Takes the ids buffers of written chunks from `recycled` when there are some.
    pub(super) fn recycling(mut self, recycled: Receiver<Vec<u32>>) -> Self {
        self.recycled = Some(recycled);
        self
    }

    fn encode_text(&self, text: &str) -> Result<EncodedText> {
        Ok(EncodedText {
            ids: self.tokenizer.encode(text)?,
            special_strings: self.tokenizer.count_special_strings(text),
        })
    }

    /// Appends one example to `ids`: each context turn and the end token, then the response
    /// and the end token; or nothing, when the response is over the length filter.
    fn append_example<'t>(
        &self,
        context: impl Iterator<Item = TextIds<'t>>,
        response: TextIds,
        source: Option<SourceRef>,
        (ids, sources): (&mut Vec<u32>, &mut PackedTexts),
    ) -> Encoded {
        if self
            .max_response_tokens
            .is_some_and(|max| response.ids.len() > max)
        {
            return Encoded::Skipped(SkipReason::FilterLongResponse);
        }
        let start = ids.len();
        let mut special_strings = response.special_strings;
        for turn in context {
            ids.extend_from_slice(turn.ids);
            ids.extend(self.eos);
            special_strings += turn.special_strings;
        }
        let prefix_len = (ids.len() - start) as u32;
        ids.extend_from_slice(response.ids);
        ids.extend(self.eos);
        Encoded::Example {
            len: (ids.len() - start) as u32,
            prefix_len,
            source: source.map(|source| sources.push_source(source)),
            special_strings,
        }
    }

    /// Encodes an example's texts and appends it to `ids`.
    fn encode_example(
        &self,
        example: &Example,
        out: (&mut Vec<u32>, &mut PackedTexts),
    ) -> Result<Encoded> {
        let context = (example.context.iter())
            .map(|turn| self.encode_text(turn))
            .collect::<Result<Vec<_>>>()?;
        let response = self.encode_text(&example.text)?;
        let context = context.iter().map(EncodedText::view);
        let source = example.source.as_ref().map(Source::borrowed);
        Ok(self.append_example(context, response.view(), source, out))
    }

    /// Encodes a chunk; its examples' sources move into the result.
    pub(super) fn encode(&self, chunk: Chunk) -> Result<EncodedChunk> {
        let mut ids = (self.recycled.as_ref())
            .and_then(|r| r.try_recv().ok())
            .unwrap_or_default();
        ids.clear();
        // Most tokenizers give at least one id per two bytes of text on average.
        ids.reserve(chunk.text_bytes / 2 + 2 * chunk.items.len());
        let mut items = Vec::with_capacity(chunk.items.len());
        let mut sources = PackedTexts::default();
        for item in chunk.items {
            let out = (&mut ids, &mut sources);
            let encoded = match item {
                Item::Skipped(reason) => Encoded::Skipped(reason),
                Item::Notice(name) => Encoded::Notice(name),
                Item::Example(example) => self.encode_example(&example, out)?,
                // The texts of a partition were encoded, each once and by this encoder's
                // tokenizer, where the partition was rebuilt; the example is assembled from them.
                Item::Dialogue(texts, dialogue) => match texts.encoded() {
                    Some(encoded) => {
                        let context = texts.context(&dialogue).iter().map(|&i| encoded.get(i));
                        let response = encoded.get(dialogue.response);
                        let source = Some(texts.source(&dialogue));
                        self.append_example(context, response, source, out)
                    }
                    None => self.encode_example(&dialogue.to_example(&texts), out)?,
                },
            };
            items.push(encoded);
        }
        Ok(EncodedChunk {
            seq: chunk.seq,
            ids,
            sources,
            items,
        })
    }
}

/// A text's ids and the special-token strings written in it, encoded on the spot.
struct EncodedText {
    ids: Vec<u32>,
    special_strings: u64,
}

impl EncodedText {
    fn view(&self) -> TextIds<'_> {
        TextIds {
            ids: &self.ids,
            special_strings: self.special_strings,
        }
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
    let dispatch = |items: Vec<Item>, text_bytes: usize, seq: &mut u64| -> bool {
        if credits.recv().is_err() {
            return false; // the writer stopped
        }
        let chunk = Chunk {
            seq: *seq,
            items,
            text_bytes,
        };
        *seq += 1;
        let (encoder, results) = (encoder.clone(), results.clone());
        pool.spawn(move || {
            let message = match encoder.encode(chunk) {
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
                bytes += match &item {
                    Item::Example(example) => {
                        example.text.len() + example.context.iter().map(String::len).sum::<usize>()
                    }
                    Item::Dialogue(_, dialogue) => dialogue.text_bytes,
                    Item::Skipped(_) | Item::Notice(_) => 0,
                };
                items.push(item);
                if bytes >= chunk_bytes || items.len() >= 8192 {
                    if !dispatch(std::mem::take(&mut items), bytes, &mut seq) {
                        return;
                    }
                    bytes = 0;
                }
            }
        }
    }
    if !items.is_empty() && !dispatch(items, bytes, &mut seq) {
        return;
    }
    let _ = results.send(Message::ReaderDone { chunks: seq });
}

/// Writer loop on the calling thread: applies encoded chunks strictly in sequence order.
/// On failure the caller drops the writer: the shard in progress stays under its temporary
/// name, as after a kill.
pub(super) fn write_in_order(
    results: &Receiver<Message>,
    (credits, recycle): (&Sender<()>, &Sender<Vec<u32>>),
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
                return Err(Error::Internal("the reader stopped unexpectedly".into()))
            }
        };
        match message {
            Message::Failed(e) => return Err(e),
            Message::ReaderDone { chunks } => total = Some(chunks),
            Message::Chunk(chunk) => {
                pending.insert(chunk.seq, chunk);
                while let Some(chunk) = pending.remove(&next) {
                    writer.write_chunk(&chunk, journal)?;
                    let _ = recycle.try_send(chunk.ids);
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
                    source,
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
                    let source = source.map(|at| chunk.sources.source(at));
                    shard.push_with_source_ref(ids, prefix_len, source)?;
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
    use crate::corpus::{Dialogue, PackedTexts, RedditOptions, SharedTexts};

    /// Ids and (length, prefix, special strings) or skip reason of every item.
    fn encoded(encoder: &ChunkEncoder, seq: u64, items: Vec<Item>) -> (Vec<u32>, Vec<String>) {
        let chunk = (encoder.encode(Chunk {
            seq,
            items,
            text_bytes: 0,
        }))
        .unwrap();
        let items = chunk
            .items
            .iter()
            .map(|item| match item {
                Encoded::Example {
                    len,
                    prefix_len,
                    special_strings,
                    source,
                } => {
                    let source = source.map(|at| chunk.sources.source(at));
                    format!("{len} {prefix_len} {special_strings} {source:?}")
                }
                Encoded::Skipped(reason) => format!("skipped {reason:?}"),
                Encoded::Notice(name) => format!("notice {name}"),
            })
            .collect();
        (chunk.ids, items)
    }

    #[test]
    fn shared_dialogue_texts_give_the_ids_of_copied_out_examples() {
        let tokenizer = Arc::new(TextTokenizer::load("gpt2").unwrap());
        let mut reddit = RedditOptions::default();
        reddit.filter.recipe = true;
        reddit.filter.max_response_tokens = 12;
        let encoder = ChunkEncoder::new(tokenizer.clone(), Some(50256), &Format::Reddit(reddit));
        let long = "word ".repeat(40);
        // A thread: each response is the next example's last turn; a long response is
        // filtered after its context was met; a special-token string counts every use.
        // (context, response, id) of each example, and the skipped record between them.
        let examples: [(&[usize], usize, &str); 5] = [
            (&[0], 1, "a"),
            (&[0, 1], 2, "b"),
            (&[0, 1], 3, "c"),
            (&[1, 3], 4, "d"),
            (&[], 1, "e"),
        ];
        let turns: Vec<usize> = examples.iter().flat_map(|e| e.0.to_vec()).collect();
        let shared_texts = || {
            let mut texts = PackedTexts::default();
            let title = "Title <|endoftext|>";
            for text in [
                title,
                "first reply",
                &long,
                "second",
                "  spaces  and\ttabs ",
            ] {
                texts.push_with(|s| s.push_str(text));
            }
            let mut sources = PackedTexts::default();
            for (_, _, id) in examples {
                sources.push_source(SourceRef { id, subreddit: "s" });
            }
            SharedTexts::new(texts, turns.clone(), sources)
        };
        let items = |texts: &Arc<SharedTexts>| {
            let mut items = Vec::new();
            let mut first_turn = 0;
            for (k, (context, response, id)) in examples.into_iter().enumerate() {
                if id == "d" {
                    items.push(Item::Skipped(SkipReason::Deleted));
                }
                let turns = first_turn..first_turn + context.len();
                first_turn = turns.end;
                let dialogue = Dialogue {
                    source: 2 * k,
                    context: turns,
                    response,
                    text_bytes: 0,
                };
                items.push(Item::Dialogue(texts.clone(), dialogue));
            }
            items
        };
        // Texts not encoded where they were rebuilt are encoded by the chunk encoder.
        let unencoded = encoded(&encoder, 3, items(&Arc::new(shared_texts())));
        let mut texts = shared_texts();
        texts.encode(&tokenizer).unwrap();
        let items = items(&Arc::new(texts));
        let copied: Vec<Item> = (items.iter())
            .map(|item| match item {
                Item::Dialogue(texts, d) => Item::Example(d.to_example(texts)),
                Item::Skipped(reason) => Item::Skipped(*reason),
                _ => unreachable!(),
            })
            .collect();
        // The thread split over two chunks, as the reader may split it.
        let mut items = items;
        let second = items.split_off(3);
        let (mut ids, mut summary) = encoded(&encoder, 0, items);
        let (more_ids, more) = encoded(&encoder, 1, second);
        ids.extend(more_ids);
        summary.extend(more);
        assert_eq!((ids.clone(), summary.clone()), encoded(&encoder, 2, copied));
        assert_eq!((ids.clone(), summary.clone()), unencoded);
        assert_eq!(summary[1], "skipped FilterLongResponse");
        assert!(
            summary[0].ends_with(r#" 1 Some(SourceRef { id: "a", subreddit: "s" })"#),
            "{}",
            summary[0]
        );
        // The last example is exactly the first reply's ids and the end token.
        let first_reply = tokenizer.encode("first reply").unwrap();
        assert_eq!(
            ids[ids.len() - first_reply.len() - 1..ids.len() - 1],
            first_reply
        );
        // The first example: the title turn (its special-token string as plain text), the end
        // token, the first reply, the end token.
        let first = [
            tokenizer.encode("Title <|endoftext|>").unwrap(),
            vec![50256],
            first_reply,
            vec![50256],
        ]
        .concat();
        assert_eq!(ids[..first.len()], first);
    }

    #[test]
    fn plain_documents_are_their_ids_and_the_end_token() {
        let tokenizer = Arc::new(TextTokenizer::load("gpt2").unwrap());
        let encoder = ChunkEncoder::new(tokenizer.clone(), Some(50256), &Format::Cc100);
        let (ids, summary) = encoded(
            &encoder,
            0,
            vec![Item::Example(Example::document("hello world".into()))],
        );
        assert_eq!(
            ids,
            [tokenizer.encode("hello world").unwrap(), vec![50256]].concat()
        );
        assert_eq!(summary, [format!("{} 0 0 None", ids.len())]);
    }
}
