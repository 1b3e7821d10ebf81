//! `hashprep tokenize`: input files -> examples -> token ids -> shards + counts + manifest.
//!
//! Threads: one reader parses the inputs into chunks of examples, a rayon pool encodes chunks
//! in parallel, and the calling thread writes them **in input order** (a reorder buffer keyed
//! by chunk number). Shard and batch boundaries depend only on the data, so the output bytes
//! are the same for any thread count. A fixed number of credits bounds the chunks in flight,
//! so memory stays bounded whatever the corpus size.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use serde::{Deserialize, Serialize};

use super::progress::Progress;
use crate::corpus::ProgressFeed;
use crate::corpus::{expand_inputs, partition_for_task, Format, InputFile, Source};
use crate::corpus::{items, Item, Items, OnError, RedditRun};
use crate::counts::{TokenCounts, COUNTS_FILE};
use crate::error::{Error, Result, SkipReason};
use crate::shard::journal::{Journal, JournalEntry};
use crate::shard::output_dir::{prepare_output, OutputState};
use crate::shard::{shard_file_name, TOKENIZER_FILE};
use crate::shard::{
    Manifest, ShardInfo, ShardReader, ShardWriter, TokenWidth, TokenizerInfo, Totals,
    MANIFEST_VERSION,
};
use crate::tokenize::{fingerprint_bytes, SpecialTokens, TextTokenizer};
use crate::util::write_atomic;

/// Directory of the Reddit spill files inside an output directory (removed when complete).
pub(crate) const SPILL_DIR: &str = ".spill";

/// Progress labels of the two Reddit phases.
const REDDIT_PHASES: [&str; 2] = [
    "reddit 1/2: partition by thread",
    "reddit 2/2: threads + tokenize",
];

/// Settings that define the output (recorded in the manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeSettings {
    /// Input format.
    pub format: Format,
    /// `gpt2` or the path of a `tokenizer.json`.
    pub tokenizer: String,
    /// End-of-document token appended to every example; `None` picks the tokenizer's usual one.
    #[serde(default)]
    pub eos_token: Option<String>,
    /// Append no end-of-document token at all.
    #[serde(default)]
    pub no_eos: bool,
    /// A new shard starts once the current one holds this many bytes of ids (default 256 MiB).
    #[serde(default = "default_shard_bytes")]
    pub shard_bytes: u64,
    /// Bad-record policy.
    #[serde(default)]
    pub on_error: OnError,
    /// How special-token strings written inside the text are encoded (default: as ordinary text).
    #[serde(default, skip_serializing_if = "is_default")]
    pub special_tokens: SpecialTokens,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn default_shard_bytes() -> u64 {
    256 << 20
}

impl TokenizeSettings {
    /// Settings with defaults for `format` and `tokenizer`.
    pub fn new(format: Format, tokenizer: impl Into<String>) -> Self {
        Self {
            format,
            tokenizer: tokenizer.into(),
            eos_token: None,
            no_eos: false,
            shard_bytes: default_shard_bytes(),
            on_error: OnError::Fail,
            special_tokens: SpecialTokens::default(),
        }
    }
}

/// Notice counting special-token strings found inside the encoded text.
const SPECIAL_TOKEN_TEXT: &str = "special_token_text";

/// How to run (does not change the output).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads for encoding; 0 = all cores.
    pub threads: usize,
    /// Show a progress bar on stderr (only on a terminal).
    pub progress: bool,
    /// Number of tasks sharing the inputs.
    pub num_tasks: usize,
    /// This task's index.
    pub task_index: usize,
    /// Replace an output directory that holds another run.
    pub force: bool,
    /// Text bytes per chunk handed to a worker.
    pub chunk_bytes: usize,
    /// Stop (as if killed) once this many shards are complete: for testing resume.
    pub halt_after_shards: Option<usize>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            threads: 0,
            progress: false,
            num_tasks: 1,
            task_index: 0,
            force: false,
            chunk_bytes: 1 << 20,
            halt_after_shards: None,
        }
    }
}

/// What a tokenize run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenizeSummary {
    /// The output directory.
    pub out: PathBuf,
    /// Totals of the whole output.
    pub totals: Totals,
    /// Number of shards.
    pub shards: usize,
    /// Input files (after task partitioning).
    pub input_files: usize,
    /// Their on-disk bytes.
    pub input_bytes: u64,
    /// Stream items skipped because an earlier run had already written them.
    pub resumed_items: u64,
    /// The output was already complete; nothing was done.
    pub already_complete: bool,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// A chunk of examples on its way to a worker.
struct Chunk {
    seq: u64,
    items: Vec<Item>,
}

/// One stream item after encoding.
enum Encoded {
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
struct EncodedChunk {
    seq: u64,
    ids: Vec<u32>,
    items: Vec<Encoded>,
}

enum Message {
    Chunk(EncodedChunk),
    Failed(Error),
    ReaderDone { chunks: u64 },
}

/// Tokenizes `inputs` into `out`. See the module documentation.
///
/// # Errors
/// Bad input (named by file and line) or an I/O failure. Completed shards stay journaled, so
/// the same call resumes after them.
pub fn tokenize(
    settings: &TokenizeSettings,
    inputs: &[PathBuf],
    out: &Path,
    options: &RunOptions,
) -> Result<TokenizeSummary> {
    let started = Instant::now();
    let mut tokenizer = TextTokenizer::load(&settings.tokenizer)?;
    tokenizer.set_special_tokens(settings.special_tokens);
    for adjustment in tokenizer.adjustments() {
        eprintln!("hashprep: {}: {adjustment}", tokenizer.source());
    }
    let tokenizer = Arc::new(tokenizer);
    let eos = if settings.no_eos {
        None
    } else {
        Some(tokenizer.resolve_eos(settings.eos_token.as_deref())?)
    };
    let reddit = matches!(settings.format, Format::Reddit(_));
    // Reddit threads span files: every task reads every file and keeps its own threads.
    let files = if reddit {
        expand_inputs(inputs)?
    } else {
        partition_for_task(
            expand_inputs(inputs)?,
            options.num_tasks,
            options.task_index,
        )?
    };
    if files.is_empty() && options.num_tasks == 1 {
        return Err(Error::BadInput("no input files given".into()));
    }
    let input_bytes = files.iter().map(|f| f.bytes).sum();
    let run = run_fingerprint(settings, &files, options, tokenizer.fingerprint());
    let width = TokenWidth::for_vocab(tokenizer.vocab_size());

    let (mut journal, entries) = match prepare_output(out, &run, options.force)? {
        OutputState::Complete(manifest) => {
            return Ok(TokenizeSummary {
                out: out.to_path_buf(),
                shards: manifest.shards.len(),
                totals: manifest.totals.clone(),
                input_files: files.len(),
                input_bytes,
                resumed_items: 0,
                already_complete: true,
                seconds: started.elapsed().as_secs_f64(),
            })
        }
        OutputState::Resume { journal, entries } => (journal, entries),
    };

    let mut writer = OutputWriter::resume(out, width, &tokenizer, &entries, settings.shard_bytes)?;
    writer.halt_after_shards = options.halt_after_shards;
    let resumed_items = writer.items;
    let feed = ProgressFeed::default();
    let stream = example_stream(settings, &files, out, options, &feed);
    writer.with_sources = reddit;
    let encoder = ChunkEncoder::new(
        tokenizer.clone(),
        eos.as_ref().map(|e| e.1),
        &settings.format,
    );
    run_stages(
        stream,
        encoder,
        &mut writer,
        &mut journal,
        (input_bytes, feed, reddit.then_some(REDDIT_PHASES)),
        options,
    )?;

    if writer.totals.documents == 0 && options.num_tasks == 1 {
        return Err(no_documents(reddit, &writer.totals));
    }
    let (shards, totals, counts) = writer.finish(&mut journal)?;
    let counts_bytes = counts.write(&out.join(COUNTS_FILE), tokenizer.fingerprint())?;
    write_atomic(&out.join(TOKENIZER_FILE), tokenizer.json())?;
    let manifest = Manifest {
        kind: "hashprep-shards".into(),
        version: MANIFEST_VERSION,
        created_by: format!("hashprep {}", env!("CARGO_PKG_VERSION")),
        tokenizer: tokenizer_info(&tokenizer, eos.as_ref()),
        token_type: width,
        counts_file: COUNTS_FILE.into(),
        counts_checksum: fingerprint_bytes(&counts_bytes),
        totals: totals.clone(),
        shards,
        inputs: files.clone(),
        tasks: vec![[options.task_index, options.num_tasks]],
        config: serde_json::json!({ "tokenize": settings, "run_fingerprint": run }),
    };
    manifest.write(out)?;
    journal.remove()?;
    if reddit {
        let spill = out.join(SPILL_DIR);
        std::fs::remove_dir_all(&spill).map_err(|e| Error::io(&spill, e))?;
    }
    Ok(TokenizeSummary {
        out: out.to_path_buf(),
        shards: manifest.shards.len(),
        totals,
        input_files: files.len(),
        input_bytes,
        resumed_items,
        already_complete: false,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs the reader thread, the encoding pool and the in-order writer until the stream ends.
fn run_stages(
    stream: Items,
    encoder: ChunkEncoder,
    writer: &mut OutputWriter,
    journal: &mut Journal,
    (input_bytes, feed, phases): (u64, ProgressFeed, Option<[&'static str; 2]>),
    options: &RunOptions,
) -> Result<()> {
    let progress = Progress::new(input_bytes, options.progress, "tokenize").with_phases(phases);

    let threads = if options.threads == 0 {
        rayon::current_num_threads()
    } else {
        options.threads
    };
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("hashprep-encode-{i}"))
            .build()
            .map_err(|e| Error::BadInput(format!("cannot start {threads} threads: {e}")))?,
    );
    let max_in_flight = 2 * threads + 2;
    let (credit_tx, credit_rx) = bounded::<()>(max_in_flight);
    for _ in 0..max_in_flight {
        credit_tx.send(()).expect("channel has room");
    }
    let (result_tx, result_rx) = unbounded::<Message>();
    let resumed_items = writer.items;
    let reader = {
        let chunk_bytes = options.chunk_bytes.max(1);
        std::thread::Builder::new()
            .name("hashprep-read".into())
            .spawn(move || {
                read_chunks(
                    stream,
                    resumed_items,
                    chunk_bytes,
                    &credit_rx,
                    &result_tx,
                    &pool,
                    encoder,
                );
            })
            .map_err(|e| Error::BadInput(format!("cannot start the reader thread: {e}")))?
    };

    let outcome = write_in_order(&result_rx, &credit_tx, writer, journal, &progress, &feed);
    drop(credit_tx);
    drop(result_rx);
    let _ = reader.join();
    progress.finish();
    outcome
}

/// The examples of the run: per file for most formats; for Reddit, all files together,
/// partitioned by thread (this task's threads only).
fn example_stream(
    settings: &TokenizeSettings,
    files: &[InputFile],
    out: &Path,
    options: &RunOptions,
    feed: &ProgressFeed,
) -> Items {
    let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    let reddit = RedditRun {
        spill_dir: out.join(SPILL_DIR),
        task: (options.task_index, options.num_tasks),
    };
    items(paths, &settings.format, settings.on_error, reddit, feed)
}

/// The error of a run that wrote nothing, saying why.
fn no_documents(reddit: bool, totals: &Totals) -> Error {
    let skipped: BTreeMap<&String, &u64> = totals.skipped.iter().filter(|(_, &n)| n > 0).collect();
    Error::BadInput(if !reddit {
        format!("no documents in the input (skipped: {skipped:?})")
    } else if skipped.is_empty() {
        "no Reddit comments were found in the input: the examples are comments (RC_* dumps, \
         records with parent_id and link_id); submissions (RS_*) only open their contexts"
            .into()
    } else {
        format!("no Reddit comment gave an example (skipped: {skipped:?})")
    })
}

/// How the manifest records the tokenizer and end-of-document token.
fn tokenizer_info(tokenizer: &TextTokenizer, eos: Option<&(String, u32)>) -> TokenizerInfo {
    TokenizerInfo {
        file: TOKENIZER_FILE.into(),
        fingerprint: tokenizer.fingerprint().to_owned(),
        source: tokenizer.source().to_owned(),
        vocab_size: tokenizer.vocab_size(),
        eos_token: eos.map(|e| e.0.clone()),
        eos_id: eos.map(|e| e.1),
        adjusted: tokenizer.adjustments().to_vec(),
    }
}

/// Identifies a run: settings that shape the output, inputs (with sizes), task and tokenizer.
/// The bad-record policy is left out so a run stopped by `fail` can resume under `skip`.
fn run_fingerprint(
    settings: &TokenizeSettings,
    files: &[InputFile],
    options: &RunOptions,
    tokenizer: &str,
) -> String {
    let shaping = TokenizeSettings {
        on_error: OnError::Fail,
        ..settings.clone()
    };
    let identity = serde_json::json!({
        "settings": shaping,
        "inputs": files,
        "task": [options.task_index, options.num_tasks],
        "tokenizer": tokenizer,
    });
    fingerprint_bytes(identity.to_string().as_bytes())
}

/// Encodes the examples of a chunk (runs on the rayon pool).
struct ChunkEncoder {
    tokenizer: Arc<TextTokenizer>,
    eos: Option<u32>,
    /// Dialogue responses longer than this (in ids, without the end token) are dropped.
    max_response_tokens: Option<usize>,
}

impl ChunkEncoder {
    fn new(tokenizer: Arc<TextTokenizer>, eos: Option<u32>, format: &Format) -> Self {
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
        }
    }

    fn encode(&self, chunk: Chunk) -> Result<EncodedChunk> {
        let mut ids = Vec::new();
        let mut items = Vec::with_capacity(chunk.items.len());
        for item in chunk.items {
            match item {
                Item::Skipped(reason) => items.push(Encoded::Skipped(reason)),
                Item::Notice(name) => items.push(Encoded::Notice(name)),
                Item::Example(example) => {
                    let start = ids.len();
                    let mut special_strings = self.tokenizer.count_special_strings(&example.text);
                    for turn in &example.context {
                        special_strings += self.tokenizer.count_special_strings(turn);
                        ids.extend(self.tokenizer.encode(turn)?);
                        ids.extend(self.eos);
                    }
                    let prefix_len = (ids.len() - start) as u32;
                    let response = self.tokenizer.encode(&example.text)?;
                    if self
                        .max_response_tokens
                        .is_some_and(|max| response.len() > max)
                    {
                        ids.truncate(start);
                        items.push(Encoded::Skipped(SkipReason::FilterLongResponse));
                        continue;
                    }
                    ids.extend(response);
                    ids.extend(self.eos);
                    items.push(Encoded::Example {
                        len: (ids.len() - start) as u32,
                        prefix_len,
                        source: example.source,
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
fn read_chunks(
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
fn write_in_order(
    results: &Receiver<Message>,
    credits: &Sender<()>,
    writer: &mut OutputWriter,
    journal: &mut Journal,
    progress: &Progress,
    feed: &ProgressFeed,
) -> Result<()> {
    let mut pending: HashMap<u64, EncodedChunk> = HashMap::new();
    let mut next = 0u64;
    let mut total: Option<u64> = None;
    while total != Some(next) {
        let message = results
            .recv()
            .map_err(|_| Error::BadInput("the reader stopped unexpectedly".into()))?;
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
struct OutputWriter {
    dir: PathBuf,
    width: TokenWidth,
    tokenizer_fingerprint: String,
    shard_bytes: u64,
    current: Option<ShardWriter>,
    shards: Vec<ShardInfo>,
    counts: TokenCounts,
    totals: Totals,
    /// Stream items consumed (examples and skipped records).
    items: u64,
    /// Testing: fail, as if killed, once this many shards are complete and the next is begun.
    halt_after_shards: Option<usize>,
    /// Write the `id` and `subreddit` columns (dialogue data).
    with_sources: bool,
}

impl OutputWriter {
    /// Picks up after the journaled shards: their counts are recomputed from the files.
    fn resume(
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

    fn write_chunk(&mut self, chunk: &EncodedChunk, journal: &mut Journal) -> Result<()> {
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

    fn close_shard(&mut self, journal: &mut Journal) -> Result<()> {
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

    fn finish(mut self, journal: &mut Journal) -> Result<(Vec<ShardInfo>, Totals, TokenCounts)> {
        self.close_shard(journal)?;
        Ok((self.shards, self.totals, self.counts))
    }
}
