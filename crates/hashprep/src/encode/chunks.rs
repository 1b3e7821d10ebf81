//! Reading and encoding: the reader thread cuts the corpus into chunks of examples and the
//! pool encodes each chunk in parallel into ids (with the sources of Reddit examples).

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::corpus::{Example, Format, Item, Items, PackedTexts, Source, SourceRef};
use crate::error::{Error, Result, SkipReason};
use crate::tokenize::TextTokenizer;

/// A chunk of examples on its way to a worker.
pub(crate) struct Chunk {
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
pub(crate) struct EncodedChunk {
    pub(super) seq: u64,
    pub(super) ids: Vec<u32>,
    pub(super) sources: PackedTexts,
    pub(super) items: Vec<Encoded>,
}

pub(crate) enum Message {
    Chunk(EncodedChunk),
    Failed(Error),
    ReaderDone { chunks: u64 },
}

/// Encodes the examples of a chunk (runs on the rayon pool).
pub(crate) struct ChunkEncoder {
    tokenizer: Arc<TextTokenizer>,
    eos: Option<u32>,
    bos: Option<u32>,
    /// Dialogue responses longer than this (in ids, without the end token) are dropped.
    max_response_tokens: Option<usize>,
    /// Id buffers of written chunks, to be filled again: memory that stays in use is not handed
    /// back to the OS and faulted in again page by page.
    recycled: Option<Receiver<Vec<u32>>>,
}

impl ChunkEncoder {
    pub(crate) fn new(tokenizer: Arc<TextTokenizer>, eos: Option<u32>, format: &Format) -> Self {
        let max_response_tokens = match format {
            Format::Reddit(reddit) if reddit.filter.recipe => {
                Some(reddit.filter.max_response_tokens)
            }
            _ => None,
        };
        Self {
            tokenizer,
            eos,
            bos: None,
            max_response_tokens,
            recycled: None,
        }
    }

    /// Puts `bos` before every example (part of a dialogue's prefix; a document without
    /// context keeps prefix 0).
    pub(crate) fn with_bos(mut self, bos: Option<u32>) -> Self {
        self.bos = bos;
        self
    }

    /// Takes the ids buffers of written chunks from `recycled` when there are some.
    pub(crate) fn recycling(mut self, recycled: Receiver<Vec<u32>>) -> Self {
        self.recycled = Some(recycled);
        self
    }

    /// Appends one example to `ids`: the beginning token, each of `turns` context turns and
    /// the end token, then the response and the end token; or nothing, when the response is over
    /// the length filter. `text(Some(i), ids)` appends turn `i`'s ids, `text(None, ids)` the
    /// response's; each returns the special-token strings written in that text.
    fn assemble(
        &self,
        turns: usize,
        mut text: impl FnMut(Option<usize>, &mut Vec<u32>) -> Result<u64>,
        source: Option<SourceRef>,
        (ids, sources): (&mut Vec<u32>, &mut PackedTexts),
    ) -> Result<Encoded> {
        let start = ids.len();
        ids.extend(self.bos);
        let context_start = ids.len();
        let mut special_strings = 0;
        for turn in 0..turns {
            special_strings += text(Some(turn), ids)?;
            ids.extend(self.eos);
        }
        let prefix_len = if ids.len() == context_start {
            0
        } else {
            (ids.len() - start) as u32
        };
        let response_start = ids.len();
        special_strings += text(None, ids)?;
        if (self.max_response_tokens).is_some_and(|max| ids.len() - response_start > max) {
            ids.truncate(start);
            return Ok(Encoded::Skipped(SkipReason::FilterLongResponse));
        }
        ids.extend(self.eos);
        Ok(Encoded::Example {
            len: (ids.len() - start) as u32,
            prefix_len,
            source: source.map(|source| sources.push_source(source)),
            special_strings,
        })
    }

    /// Encodes an example's texts straight into `ids` (no buffer of its own to grow and copy).
    fn encode_example(
        &self,
        example: &Example,
        out: (&mut Vec<u32>, &mut PackedTexts),
    ) -> Result<Encoded> {
        let text = |which: Option<usize>, ids: &mut Vec<u32>| {
            let text = which.map_or(&example.text, |turn| &example.context[turn]);
            self.tokenizer.encode_counting(text, ids)
        };
        let source = example.source.as_ref().map(Source::borrowed);
        self.assemble(example.context.len(), text, source, out)
    }

    /// Encodes a chunk; its examples' sources move into the result.
    pub(super) fn encode(&self, chunk: Chunk) -> Result<EncodedChunk> {
        // Most tokenizers give at most one id per two bytes of text on average.
        let room = chunk.text_bytes / 2 + 2 * chunk.items.len();
        let mut ids = (self.recycled.as_ref())
            .and_then(|r| r.try_recv().ok())
            .filter(|ids| ids.capacity() >= room)
            // A buffer too small is not grown (copied, whole, into fresh pages): a new one has
            // room for this chunk and somewhat longer ones, so that it can be filled again.
            .unwrap_or_else(|| Vec::with_capacity(room + room / 8));
        ids.clear();
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
                        let context = texts.context(&dialogue);
                        let text = |which: Option<usize>, ids: &mut Vec<u32>| {
                            let text =
                                encoded.get(which.map_or(dialogue.response, |turn| context[turn]));
                            ids.extend_from_slice(text.ids);
                            Ok(text.special_strings)
                        };
                        let source = Some(texts.source(&dialogue));
                        self.assemble(context.len(), text, source, out)?
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

/// Reader thread: parses the stream into chunks and hands each to the pool once a credit is
/// free. The first `skip` items were written by an earlier run and are only counted past.
pub(crate) fn read_chunks(
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

    #[test]
    fn a_beginning_token_leads_every_example_and_belongs_to_a_dialogues_prefix() {
        let tokenizer = Arc::new(TextTokenizer::load("gpt2").unwrap());
        let (bos, eos) = (50_256, 50_256);
        let encoder =
            ChunkEncoder::new(tokenizer.clone(), Some(eos), &Format::Cc100).with_bos(Some(bos));
        let dialogue = Example {
            context: vec!["a question".into()],
            text: "an answer".into(),
            source: None,
        };
        let items = vec![
            Item::Example(Example::document("hello world".into())),
            Item::Example(dialogue),
        ];
        let (ids, summary) = encoded(&encoder, 0, items);
        let encode = |text: &str| tokenizer.encode(text).unwrap();
        let document = [vec![bos], encode("hello world"), vec![eos]].concat();
        let context = [vec![bos], encode("a question"), vec![eos]].concat();
        let example = [context.clone(), encode("an answer"), vec![eos]].concat();
        assert_eq!(ids, [document.clone(), example.clone()].concat());
        // A document keeps no prefix; a dialogue's prefix is the token and its context.
        assert_eq!(
            summary,
            [
                format!("{} 0 0 None", document.len()),
                format!("{} {} 0 None", example.len(), context.len()),
            ]
        );
    }
}
