//! `hashprep tokenize`: input files -> examples -> token ids -> shards + counts + manifest.
//!
//! Threads: one reader parses the inputs into chunks of examples, a rayon pool encodes chunks
//! in parallel, and the calling thread writes them **in input order** (a reorder buffer keyed
//! by chunk number). Shard and batch boundaries depend only on the data, so the output bytes
//! are the same for any thread count. A fixed number of credits bounds the chunks in flight,
//! so memory stays bounded whatever the corpus size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, unbounded};
use serde::{Deserialize, Serialize};

use super::progress::Progress;
use super::reddit_spill::RedditPhase;
use crate::corpus::reddit::{FinishedSpill, Skipped};
use crate::corpus::ProgressFeed;
use crate::corpus::{
    check_task, expand_inputs, expand_ranges, partition_for_task, Format, InputFile, InputRange,
};
use crate::corpus::{items, Items, OnError, RedditRun};
use crate::counts::COUNTS_FILE;
use crate::encode::{read_chunks, write_in_order, ChunkEncoder, Message, OutputWriter};
use crate::error::{EmptyProblem, Error, Result, SpillProblem};
use crate::integrity::fingerprint_bytes;
use crate::shard::journal::Journal;
use crate::shard::output_dir::{prepare_output, OutputState};
use crate::shard::TOKENIZER_FILE;
use crate::shard::{Manifest, TokenWidth, TokenizerInfo, Totals, MANIFEST_VERSION};
use crate::shard::{OutputLock, ReadLock};
use crate::tokenize::{Encoder, EosSource, SpecialTokens, TextTokenizer};
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
    /// Beginning-of-document token put before every example (none by default: Llama-3 and
    /// `DeepSeek` add theirs in a post-processor, which is not applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token: Option<String>,
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
            bos_token: None,
            shard_bytes: default_shard_bytes(),
            on_error: OnError::Fail,
            special_tokens: SpecialTokens::default(),
        }
    }
}

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
    /// Set by another thread (a Ctrl-C handler) to stop soon with [`Error::Interrupted`]: the
    /// completed shards stay journaled and a rerun resumes after them, as after a kill.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Reddit: both phases here, or phase 2 of a run on many machines.
    pub reddit_phase: RedditPhase,
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
            cancel: None,
            reddit_phase: RedditPhase::Both,
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
    /// Which encoder tokenized the text (as the manifest records it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder: Option<Encoder>,
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
    tokenize_files(settings, expand_inputs(inputs)?, out, options)
}

/// [`tokenize`] of parts of files: each input whole, or the range of its documents it names
/// (recorded in the manifest's inputs). Reddit dumps take no range.
///
/// # Errors
/// As [`tokenize`]; a range past the end of its file, named.
pub fn tokenize_ranges(
    settings: &TokenizeSettings,
    inputs: &[InputRange],
    out: &Path,
    options: &RunOptions,
) -> Result<TokenizeSummary> {
    tokenize_files(settings, expand_ranges(inputs)?, out, options)
}

fn tokenize_files(
    settings: &TokenizeSettings,
    files: Vec<InputFile>,
    out: &Path,
    options: &RunOptions,
) -> Result<TokenizeSummary> {
    let started = Instant::now();
    let tokenizer = load_tokenizer(settings)?;
    let eos = end_of_document(settings, &tokenizer)?;
    let bos = (settings.bos_token.as_deref())
        .map(|name| Ok((name.to_owned(), tokenizer.resolve_bos(name)?)))
        .transpose()?;
    let reddit = matches!(settings.format, Format::Reddit(_));
    // Reddit threads span files: every task reads every file and keeps its own threads, or
    // (phase 2 of a shared spill) takes its share of the partitions.
    let files = if reddit {
        files
    } else {
        partition_for_task(files, options.num_tasks, options.task_index)?
    };
    // Held while the spill is read, so that it is not removed meanwhile.
    let (spill, _reading) = open_spill(settings, &files, options)?.unzip();
    if files.is_empty() && options.num_tasks == 1 {
        return Err(Error::Empty(EmptyProblem::NoInputs));
    }
    let input_bytes = files.iter().map(|f| f.bytes).sum();
    let run = run_fingerprint(
        settings,
        (&files, spill.as_ref()),
        options,
        tokenizer.fingerprint(),
        eos.as_ref(),
    );
    let width = TokenWidth::for_vocab(tokenizer.vocab_size());
    let input_files = files.len();
    let summary = |shards, totals, resumed_items, already_complete| TokenizeSummary {
        out: out.to_path_buf(),
        shards,
        totals,
        input_files,
        input_bytes,
        resumed_items,
        already_complete,
        seconds: started.elapsed().as_secs_f64(),
        encoder: Some(tokenizer.encoder()),
    };

    crate::util::create_output_dir(out)?;
    let _lock = OutputLock::acquire(out, "tokenize")?;
    let (mut journal, entries) = match prepare_output(out, &run, options.force)? {
        OutputState::Complete(manifest) => {
            return Ok(summary(manifest.shards.len(), manifest.totals, 0, true));
        }
        OutputState::Resume { journal, entries } => (journal, entries),
    };

    let mut writer = OutputWriter::resume(out, width, &tokenizer, &entries, settings.shard_bytes)?;
    writer.halt_after_shards = options.halt_after_shards;
    let resumed_items = writer.items;
    let feed = ProgressFeed::default();
    let stream = example_stream(
        settings,
        (&files, spill.as_ref()),
        (out, &tokenizer),
        options,
        &feed,
    );
    writer.with_sources = reddit;
    let encoder = ChunkEncoder::new(
        tokenizer.clone(),
        eos.as_ref().map(|e| e.1),
        &settings.format,
    )
    .with_bos(bos.as_ref().map(|b| b.1));
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
        tokenizer: tokenizer_info(&tokenizer, eos.as_ref(), bos.as_ref()),
        token_type: width,
        counts_file: COUNTS_FILE.into(),
        counts_checksum: fingerprint_bytes(&counts_bytes),
        totals: totals.clone(),
        shards,
        inputs: files.clone(),
        tasks: vec![[options.task_index, options.num_tasks]],
        config: run_config(settings, &run, spill.as_ref()),
    };
    manifest.write(out)?;
    journal.remove()?;
    if reddit && spill.is_none() {
        let spill = out.join(SPILL_DIR);
        std::fs::remove_dir_all(&spill).map_err(|e| Error::io(&spill, e))?;
    }
    Ok(summary(manifest.shards.len(), totals, resumed_items, false))
}

/// The run's tokenizer, what loading it disabled said on stderr.
fn load_tokenizer(settings: &TokenizeSettings) -> Result<Arc<TextTokenizer>> {
    let mut tokenizer = TextTokenizer::load(&settings.tokenizer)?;
    tokenizer.set_special_tokens(settings.special_tokens);
    for adjustment in tokenizer.adjustments() {
        eprintln!("hashprep: {}: {adjustment}", tokenizer.source());
    }
    if let Encoder::Tokenizers { reason } = tokenizer.encoder() {
        eprintln!(
            "hashprep: {}: encoded by the tokenizers library, not the fast path ({reason})",
            tokenizer.source()
        );
    }
    Ok(Arc::new(tokenizer))
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
            .map_err(|e| Error::Internal(format!("cannot start {threads} threads: {e}")))?,
    );
    let max_in_flight = 2 * threads + 2;
    let (credit_tx, credit_rx) = bounded::<()>(max_in_flight);
    for _ in 0..max_in_flight {
        credit_tx.send(()).expect("channel has room");
    }
    let (result_tx, result_rx) = unbounded::<Message>();
    let (recycle_tx, recycle_rx) = bounded::<Vec<u32>>(max_in_flight);
    let encoder = encoder.recycling(recycle_rx);
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
            .map_err(|e| Error::Internal(format!("cannot start the reader thread: {e}")))?
    };

    let outcome = write_in_order(
        &result_rx,
        (&credit_tx, &recycle_tx),
        writer,
        journal,
        &|totals| progress.update_from(&feed, totals.documents, totals.tokens),
        options.cancel.as_deref(),
    );
    drop(credit_tx);
    drop(result_rx);
    let _ = reader.join();
    progress.finish();
    outcome
}

/// Phase 2 of a Reddit run on many machines: the finished spill it rebuilds from, and the
/// directory's read lock.
///
/// # Errors
/// Not Reddit; the spill is unfinished, of other inputs or of other partitions (named), or
/// being removed.
fn open_spill(
    settings: &TokenizeSettings,
    files: &[InputFile],
    options: &RunOptions,
) -> Result<Option<(FinishedSpill, ReadLock)>> {
    let RedditPhase::Rebuild(dir) = &options.reddit_phase else {
        return Ok(None);
    };
    let Format::Reddit(reddit) = &settings.format else {
        return Err(Error::setting(
            "phase",
            "rebuild: only `format` reddit is read in two phases",
        ));
    };
    check_task(options.num_tasks, options.task_index)?;
    let spill = FinishedSpill::open(dir, files)?;
    let reading = ReadLock::acquire(dir)?;
    if reddit.partitions != 0 && reddit.partitions != spill.partitions() {
        return Err(Error::Spill {
            dir: dir.clone(),
            problem: SpillProblem::OtherPartitions {
                spilled: spill.partitions(),
                asked: reddit.partitions,
            },
        });
    }
    Ok(Some((spill, reading)))
}

/// The manifest's `config`: the settings, the run's identity and, rebuilt from a shared spill,
/// that spill (outputs of different spills do not merge).
fn run_config(
    settings: &TokenizeSettings,
    run: &str,
    spill: Option<&FinishedSpill>,
) -> serde_json::Value {
    let mut config = serde_json::json!({ "tokenize": settings, "run_fingerprint": run });
    if let Some(spill) = spill {
        config["spill"] = serde_json::json!({
            "identity": spill.identity(),
            "tasks": spill.task_count(),
            "partitions": spill.partitions(),
        });
    }
    config
}

/// The examples of the run: per file for most formats; for Reddit, all files together,
/// partitioned by thread (this task's threads only), or this task's share of a shared spill.
fn example_stream(
    settings: &TokenizeSettings,
    (files, spill): (&[InputFile], Option<&FinishedSpill>),
    (out, tokenizer): (&Path, &Arc<TextTokenizer>),
    options: &RunOptions,
    feed: &ProgressFeed,
) -> Items {
    let task = (options.task_index, options.num_tasks);
    let reddit = RedditRun {
        spill_dir: out.join(SPILL_DIR),
        task,
        tokenizer: Some(tokenizer.clone()),
        // Rebuild task 0 reports what phase 1 skipped.
        shared: spill.map(|spill| {
            let skipped = if task.0 == 0 {
                spill.skipped()
            } else {
                Skipped::default()
            };
            (spill.share(task.0, task.1), skipped)
        }),
    };
    items(
        files.to_vec(),
        &settings.format,
        settings.on_error,
        reddit,
        feed,
    )
}

/// The error of a run that wrote nothing, saying why.
fn no_documents(reddit: bool, totals: &Totals) -> Error {
    let skipped: BTreeMap<&String, &u64> = totals.skipped.iter().filter(|(_, &n)| n > 0).collect();
    Error::Empty(if !reddit {
        EmptyProblem::NoDocuments(format!("{skipped:?}"))
    } else if skipped.is_empty() {
        EmptyProblem::NoRedditComments
    } else {
        EmptyProblem::NoRedditExample(format!("{skipped:?}"))
    })
}

/// The end-of-document token of the run (none with `no_eos`); says on stderr where it came
/// from when it was not named and the tokenizer is a file.
fn end_of_document(
    settings: &TokenizeSettings,
    tokenizer: &TextTokenizer,
) -> Result<Option<(String, u32, EosSource)>> {
    if settings.no_eos {
        return Ok(None);
    }
    let (token, id, from) = tokenizer.resolve_eos(settings.eos_token.as_deref())?;
    if from != EosSource::Named && tokenizer.source() != "gpt2" {
        eprintln!(
            "hashprep: {}: end-of-document token {token:?} (id {id}), {}; name another with \
             --eos-token",
            tokenizer.source(),
            from.describe()
        );
    }
    Ok(Some((token, id, from)))
}

/// How the manifest records the tokenizer and end-of-document token.
fn tokenizer_info(
    tokenizer: &TextTokenizer,
    eos: Option<&(String, u32, EosSource)>,
    bos: Option<&(String, u32)>,
) -> TokenizerInfo {
    TokenizerInfo {
        file: TOKENIZER_FILE.into(),
        fingerprint: tokenizer.fingerprint().to_owned(),
        source: tokenizer.source().to_owned(),
        vocab_size: tokenizer.vocab_size(),
        eos_token: eos.map(|e| e.0.clone()),
        eos_id: eos.map(|e| e.1),
        eos_from: eos.map(|e| e.2),
        bos_token: bos.map(|b| b.0.clone()),
        bos_id: bos.map(|b| b.1),
        adjusted: tokenizer.adjustments().to_vec(),
        encoder: Some(tokenizer.encoder()),
    }
}

/// Identifies a run: settings that shape the output, inputs (with sizes), task and tokenizer.
/// The bad-record policy is left out so a run stopped by `fail` can resume under `skip`.
fn run_fingerprint(
    settings: &TokenizeSettings,
    (files, spill): (&[InputFile], Option<&FinishedSpill>),
    options: &RunOptions,
    tokenizer: &str,
    eos: Option<&(String, u32, EosSource)>,
) -> String {
    let shaping = TokenizeSettings {
        on_error: OnError::Fail,
        ..settings.clone()
    };
    let mut identity = serde_json::json!({
        "settings": shaping,
        "inputs": files,
        "task": [options.task_index, options.num_tasks],
        "tokenizer": tokenizer,
    });
    // A token read from tokenizer_config.json is part of the run's identity (that file can
    // change between runs); the others follow from the settings and the tokenizer, and are left
    // out so that earlier runs keep their identity.
    if let Some((token, _, EosSource::TokenizerConfig)) = eos {
        identity["configured_eos"] = token.as_str().into();
    }
    if let Some(spill) = spill {
        identity["spill"] = spill.identity().into();
    }
    fingerprint_bytes(identity.to_string().as_bytes())
}
