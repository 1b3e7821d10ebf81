//! Command definitions (clap derive) and their handlers.

mod report;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use hashprep::{
    BuildTableRequest, ExportTarget, Format, IdDtype, Loader, LoaderConfig, LoaderState, Method,
    OnError, RedditPhase, RoutingTable, RunOptions, SpecialTokens, TableExport, TableFormat,
    TableSpec, TidKeys, TokenizeSettings, TokenizerKind, TrainOptions,
};

/// Corpus -> Arrow shards -> token->expert tables, for Hash Layer `MoE` training.
#[derive(Debug, Parser)]
#[command(name = "hashprep", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
    /// No progress bars.
    #[arg(long, global = true)]
    no_progress: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tokenize a corpus into memory-mapped Arrow shards with token counts.
    Tokenize(TokenizeArgs),
    /// Join the outputs of several `--num-tasks` tasks into one.
    Merge(MergeArgs),
    /// Train a tokenizer (byte-level BPE or word level) on a corpus.
    TrainTokenizer(TrainArgs),
    /// Show what a tokenize output holds (every shard is verified).
    Inspect(InspectArgs),
    /// Export the shards to another format.
    Export(ExportArgs),
    /// Build a token -> expert table (balanced, random, clustered, ...) with balance statistics.
    BuildTable(BuildTableArgs),
    /// Measure several tables on the same data and draw their loads side by side.
    CompareTables(CompareArgs),
    /// Write a table where an engine loads it (DeepSeek-V4's tid2eid for HF transformers, .npy).
    ExportTable(ExportTableArgs),
    /// Print loader batches (ids, targets, loss mask, expert ids, order, offsets) as JSON lines.
    Batches(BatchesArgs),
}

#[derive(Debug, Args)]
struct BatchesArgs {
    /// A tokenize output directory.
    #[arg(long)]
    data: PathBuf,
    /// Table files (one routing spec per layer of each; identical files count once).
    #[arg(long = "table")]
    tables: Vec<PathBuf>,
    /// Rows per batch (B).
    #[arg(long)]
    batch_size: usize,
    /// Positions per row (T).
    #[arg(long)]
    seq_len: usize,
    /// Shuffle seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of batches to print.
    #[arg(long, default_value_t = 1)]
    steps: u64,
    /// Start at this batch (as a resumed loader would).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// One example per row, padded, loss on the response only (default: packing).
    #[arg(long)]
    per_example: bool,
    /// Drop each epoch's last partial batch.
    #[arg(long)]
    drop_last: bool,
    /// Data-parallel rank and world size.
    #[arg(long, default_value_t = 0)]
    rank: usize,
    /// Data-parallel world size.
    #[arg(long, default_value_t = 1)]
    world_size: usize,
    /// Expert-parallel group size E: routes carry the tokens per expert of the E ranks of
    /// this rank's group (`peer_counts`).
    #[arg(long, default_value_t = 1)]
    expert_parallel: usize,
    /// Worker threads building batches ahead.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Print JSON lines (the only output format).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// The tokenize output the tables are measured on.
    #[arg(long)]
    data: PathBuf,
    /// Table files.
    #[arg(required = true)]
    tables: Vec<PathBuf>,
    /// Draw the loads per expert, sorted, one line per table (.png or .svg).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Options shared by the commands that read a corpus.
#[derive(Debug, Args)]
struct CorpusArgs {
    /// Input format: wikitext103, cc100, text, jsonl or reddit (pushshift comments + submissions).
    #[arg(long)]
    format: String,
    /// JSONL: the field holding the text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// text: documents are separated by blank lines (default: one per line).
    #[arg(long)]
    blank_line_separated: bool,
    /// What to do with a bad record: fail (default) or skip and count it.
    #[arg(long, value_enum, default_value_t = OnError::Fail)]
    on_error: OnError,
    /// Input files, directories or globs (plain, .zst, .xz, .bz2, .gz; detected by content).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

impl CorpusArgs {
    fn format(&self) -> hashprep::Result<Format> {
        Format::from_cli(&self.format, &self.text_field, self.blank_line_separated)
    }
}

#[derive(Debug, Args)]
struct TokenizeArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
    /// `gpt2` (built in) or the path of a `HuggingFace` tokenizer.json.
    #[arg(long)]
    tokenizer: String,
    /// Output directory (not with --phase spill, which writes into --spill-dir).
    #[arg(long, required_unless_present = "phase")]
    out: Option<PathBuf>,
    /// reddit on many machines, as two dependent task arrays: `spill` (phase 1: each of
    /// --num-tasks tasks parses its share of the dumps once into --spill-dir) then `rebuild`
    /// (phase 2: each of --num-tasks tasks, any number, rebuilds its share of the threads
    /// into --out); then `hashprep merge`. Without it, one task does both phases.
    #[arg(long, value_parser = ["spill", "rebuild"], requires = "spill_dir")]
    phase: Option<String>,
    /// reddit, with --phase: the spill directory shared by the tasks of both phases.
    #[arg(long, requires = "phase")]
    spill_dir: Option<PathBuf>,
    /// End-of-document token appended to each document (default: the tokenizer's usual one).
    #[arg(long, conflicts_with = "no_eos")]
    eos_token: Option<String>,
    /// Append no end-of-document token.
    #[arg(long)]
    no_eos: bool,
    /// Beginning-of-document token put before each document (none by default; Llama-3's
    /// `<|begin_of_text|>`, `DeepSeek`'s `<｜begin▁of▁sentence｜>`: their post-processors add one,
    /// which hashprep does not apply).
    #[arg(long)]
    bos_token: Option<String>,
    /// Special-token strings written in the text (a literal `<|endoftext|>`): `ordinary`
    /// encodes them as plain text, so only the appended end token ends a document; `recognize`
    /// turns them into the special ids. Occurrences are counted in the summary either way.
    #[arg(long, value_enum, default_value_t = SpecialTokens::Ordinary)]
    special_tokens: SpecialTokens,
    /// reddit: context turns kept before each response, nearest last.
    #[arg(long, default_value_t = 7)]
    max_context_turns: usize,
    /// reddit: spill partitions, each rebuilt in memory; 0 (default) sizes them from the input
    /// (about 256 MiB of records each, at least 16).
    #[arg(long, default_value_t = 0)]
    partitions: usize,
    /// reddit: `recipe` drops responses by the rules of "Recipes for building an open-domain
    /// chatbot" (over 2048 or under 5 characters, URLs, non-ASCII start, bot authors, depth > 7,
    /// over --max-response-tokens tokens); each rule is counted in the summary.
    #[arg(long, value_parser = ["recipe"])]
    filter: Option<String>,
    /// reddit, with --filter recipe: longest response kept, in tokens.
    #[arg(long, default_value_t = 128)]
    max_response_tokens: usize,
    /// reddit: keep only these subreddits (comma-separated, case-insensitive).
    #[arg(long, value_delimiter = ',')]
    subreddits: Vec<String>,
    /// reddit: drop these subreddits (comma-separated, case-insensitive).
    #[arg(long, value_delimiter = ',')]
    exclude_subreddits: Vec<String>,
    /// Start a new shard after this many MiB of token ids.
    #[arg(long, default_value_t = 256.0)]
    shard_mib: f64,
    /// Encoding threads (0 = all cores). The output is the same for any value.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Number of tasks sharing the inputs (e.g. a Slurm array size).
    #[arg(long, default_value_t = 1)]
    num_tasks: usize,
    /// This task's index, 0-based (e.g. $`SLURM_ARRAY_TASK_ID`).
    #[arg(long, default_value_t = 0, env = "HASHPREP_TASK_INDEX")]
    task_index: usize,
    /// Replace an output directory that holds another run.
    #[arg(long)]
    force: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Testing: stop as if killed once this many shards are complete.
    #[arg(long, hide = true)]
    halt_after_shards: Option<usize>,
}

#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // command-line flags
struct MergeArgs {
    /// Tokenize output directories, one per task.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Merged output directory.
    #[arg(long)]
    out: PathBuf,
    /// Accept a set of tasks with some missing.
    #[arg(long)]
    allow_partial: bool,
    /// Replace an existing merged output.
    #[arg(long)]
    force: bool,
    /// Read every shard and verify its checksum before merging (by default each shard's size
    /// and layout are checked, and its checksum is verified by every reader that later
    /// reads it).
    #[arg(long)]
    verify: bool,
    /// reddit: once merged, remove this spill directory, the one the outputs were rebuilt from
    /// (`tokenize --phase rebuild`); refused while a rebuild task reads it, or when the outputs
    /// of some rebuild tasks are not merged.
    #[arg(long, conflicts_with = "allow_partial")]
    remove_spill: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct TrainArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
    /// bpe (byte-level) or word (whitespace-split words, `<unk>` for rare ones).
    #[arg(long)]
    kind: String,
    /// bpe: number of ids, special tokens included.
    #[arg(long, default_value_t = TokenizerKind::DEFAULT_VOCAB_SIZE)]
    vocab_size: usize,
    /// word: minimum count for a word to get an id.
    #[arg(long, default_value_t = TokenizerKind::DEFAULT_MIN_COUNT)]
    min_count: u64,
    /// The end-of-document special token to add (default <|endoftext|> for bpe, <eos> for word).
    #[arg(long)]
    eos_token: Option<String>,
    /// Output tokenizer.json path.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// A tokenize output directory.
    dir: PathBuf,
    /// How many of the most frequent tokens to list.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// A tokenize output directory.
    dir: PathBuf,
    /// Target format: parquet (one file per shard) or megatron (Megatron-LM's indexed dataset).
    #[arg(long)]
    to: String,
    /// Output directory (parquet), or path prefix of PREFIX.bin and PREFIX.idx (megatron).
    out: PathBuf,
    /// Replace an existing Megatron export.
    #[arg(long)]
    force: bool,
    /// Print what was written as JSON (megatron).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct BuildTableArgs {
    /// A tokenize output directory (uses its counts.arrow; bigram statistics read its shards).
    #[arg(long, conflicts_with = "counts", required_unless_present = "counts")]
    data: Option<PathBuf>,
    /// A counts.arrow file instead of --data.
    #[arg(long)]
    counts: Option<PathBuf>,
    /// random, balanced, clustered, dispersed, bigram, previous, position or oracle.
    #[arg(long, value_enum)]
    method: Method,
    /// Number of experts K.
    #[arg(long)]
    experts: u32,
    /// Distinct experts per token k (random, balanced, clustered, dispersed): DeepSeek-V4's
    /// tid2eid[vocab, k].
    #[arg(long, default_value_t = 1)]
    top_k: u32,
    /// MultiHash: independent assignments per layer (N).
    #[arg(long, default_value_t = 1)]
    hashes: u32,
    /// Sparse layers, each with its own table ("different hash per layer").
    #[arg(long, default_value_t = 1)]
    layers: u32,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// balanced: keep the paper's greedy assignment without the refinement.
    #[arg(long)]
    no_refine: bool,
    /// previous / oracle: the per-token method applied to the neighbouring token.
    #[arg(long, value_enum, default_value_t = Method::Random)]
    base: Method,
    /// clustered / dispersed: baseline token embeddings, .npy [V, d] or safetensors.
    #[arg(long)]
    embeddings: Option<PathBuf>,
    /// The tensor to use inside a safetensors file.
    #[arg(long)]
    tensor: Option<String>,
    /// k-means: independent initialisations (best inertia wins).
    #[arg(long, default_value_t = 1)]
    kmeans_runs: usize,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// arrow (default) or npy (+ FILE.json metadata).
    #[arg(long, value_enum, default_value_t = TableFormat::Arrow)]
    format: TableFormat,
    /// Draw the load per expert, sorted (the paper's Figure 4): .png or .svg.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ExportTableArgs {
    /// The table file (Arrow, or .npy with its .json).
    table: PathBuf,
    /// hf-deepseek-v4 (safetensors, `model.layers.{i}.mlp.gate.tid2eid` int64 [vocab, k]) or npy.
    #[arg(long, value_enum)]
    to: ExportTarget,
    /// hf-deepseek-v4: the model's hash layers (0-based), e.g. 0,1,2.
    #[arg(long, value_delimiter = ',')]
    layers: Vec<u32>,
    /// hf-deepseek-v4: the model's `vocab_size`; ids beyond the table get (id + j) mod K.
    #[arg(long)]
    vocab_size: Option<usize>,
    /// The model's experts per token (`num_experts_per_tok`); must equal the table's.
    #[arg(long)]
    top_k: Option<u32>,
    /// Output file.
    #[arg(long, required_unless_present = "into", conflicts_with = "into")]
    out: Option<PathBuf>,
    /// hf-deepseek-v4: a Hugging Face checkpoint folder to write the tables into (its
    /// config.json gives the vocabulary, top-k and hash layers; no weight file is rewritten).
    #[arg(long)]
    into: Option<PathBuf>,
    /// hf-deepseek-v4: key names: state (module names, for `load_state_dict`; default with
    /// --out), transformers (what `save_pretrained` writes; default with --into) or deepseek.
    #[arg(long, value_enum)]
    keys: Option<TidKeys>,
    /// hf-deepseek-v4: int64 (default) or int32 ids.
    #[arg(long, value_enum, default_value = "int64")]
    dtype: IdDtype,
    /// Print what was written as JSON (--into).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cli: Cli) -> Result<()> {
    let progress = !cli.no_progress;
    match cli.command {
        Command::Tokenize(args) => tokenize(args, progress),
        Command::Merge(args) => {
            let summary = hashprep::merge(
                &args.dirs,
                &args.out,
                (args.allow_partial, args.verify),
                args.force,
            )?;
            if let Some(spill) = &args.remove_spill {
                hashprep::remove_merged_spill(&args.out, spill)?;
            }
            report::tokenize_summary(&summary, args.json, "merged")
        }
        Command::TrainTokenizer(args) => train(args, progress),
        Command::Inspect(args) => {
            let inspection = hashprep::inspect(&args.dir, args.top)?;
            report::inspection(&inspection, args.json)
        }
        Command::BuildTable(args) => {
            let mut spec = TableSpec::new(args.method, args.experts);
            spec.top_k = args.top_k;
            spec.hashes = args.hashes;
            spec.layers = args.layers;
            spec.seed = args.seed;
            spec.refine = !args.no_refine;
            spec.base = args.base;
            spec.kmeans.runs = args.kmeans_runs;
            let request = BuildTableRequest {
                spec,
                data: args.data,
                counts: args.counts,
                embeddings: args.embeddings,
                tensor: args.tensor,
                out: args.out,
                format: args.format,
                plot: args.plot,
            };
            let report = hashprep::build_table_files(&request)?;
            report::table(&report, args.json)
        }
        Command::CompareTables(args) => {
            let rows = hashprep::compare_tables(&args.data, &args.tables, args.plot.as_deref())?;
            report::comparison(&rows, args.json)
        }
        Command::Batches(args) => batches(&args),
        Command::ExportTable(args) => export_table(args),
        Command::Export(args) => export(&args),
    }
}

fn export_table(args: ExportTableArgs) -> Result<()> {
    let table = RoutingTable::read(&args.table)?;
    let export = TableExport {
        to: args.to,
        layers: args.layers,
        vocab_size: args.vocab_size,
        top_k: args.top_k,
        keys: args.keys,
        dtype: args.dtype,
    };
    match (args.out, args.into) {
        (Some(out), None) => {
            let files = table.export(&export, &out)?;
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            report::line(&format!("wrote {}", names.join(", ")))
        }
        (None, Some(into)) => {
            let inserted = table.insert_into_checkpoint(&export, &into)?;
            report::checkpoint_insert(&inserted, args.json)
        }
        _ => unreachable!("clap asks for exactly one of --out and --into"),
    }
}

fn export(args: &ExportArgs) -> Result<()> {
    match args.to.as_str() {
        "parquet" => {
            let files = hashprep::export_parquet(&args.dir, &args.out)?;
            report::line(&format!(
                "wrote {} parquet file(s) to {}",
                files.len(),
                args.out.display()
            ))
        }
        "megatron" => report::megatron_export(
            &hashprep::export_megatron(&args.dir, &args.out, args.force)?,
            args.json,
        ),
        other => Err(hashprep::Error::setting(
            "to",
            format!("{other:?}: expected parquet or megatron"),
        )
        .into()),
    }
}

fn tokenize(args: TokenizeArgs, progress: bool) -> Result<()> {
    if args.shard_mib.is_nan() || args.shard_mib <= 0.0 {
        return Err(hashprep::Error::setting("shard_mib", "must be positive").into());
    }
    let mut format = args.corpus.format()?;
    if let Format::Reddit(reddit) = &mut format {
        reddit.max_context_turns = args.max_context_turns;
        reddit.partitions = args.partitions;
        reddit.filter.recipe = args.filter.as_deref() == Some("recipe");
        reddit.filter.max_response_tokens = args.max_response_tokens;
        reddit.filter.allow.clone_from(&args.subreddits);
        reddit.filter.deny.clone_from(&args.exclude_subreddits);
    }
    let settings = TokenizeSettings {
        format,
        tokenizer: args.tokenizer,
        eos_token: args.eos_token,
        no_eos: args.no_eos,
        bos_token: args.bos_token,
        shard_bytes: (args.shard_mib * (1u64 << 20) as f64) as u64,
        on_error: args.corpus.on_error,
        special_tokens: args.special_tokens,
    };
    let mut options = RunOptions {
        threads: args.threads,
        progress,
        num_tasks: args.num_tasks,
        task_index: args.task_index,
        force: args.force,
        halt_after_shards: args.halt_after_shards,
        ..RunOptions::default()
    };
    let inputs = &args.corpus.inputs;
    if let (Some("spill"), Some(spill_dir)) = (args.phase.as_deref(), &args.spill_dir) {
        if args.out.is_some() {
            return Err(hashprep::Error::setting(
                "out",
                "`phase` spill writes into `spill_dir`; give `out` to the rebuild phase",
            )
            .into());
        }
        let summary = hashprep::spill_reddit(&settings, inputs, spill_dir, &options)?;
        return report::spill_summary(&summary, args.json);
    }
    if let Some(spill_dir) = args.spill_dir {
        options.reddit_phase = RedditPhase::Rebuild(spill_dir);
    }
    let out = args.out.ok_or_else(|| {
        hashprep::Error::setting("out", "the rebuild phase writes its output there: give it")
    })?;
    let summary = hashprep::tokenize(&settings, inputs, &out, &options)?;
    report::tokenize_summary(&summary, args.json, "tokenized")
}

fn train(args: TrainArgs, progress: bool) -> Result<()> {
    let kind = match args.kind.as_str() {
        "bpe" => TokenizerKind::Bpe {
            vocab_size: args.vocab_size,
        },
        "word" => TokenizerKind::Word {
            min_count: args.min_count,
        },
        other => {
            return Err(
                hashprep::Error::setting("kind", format!("{other:?} is none of bpe, word")).into(),
            )
        }
    };
    let mut options = TrainOptions::new(kind);
    if let Some(eos) = args.eos_token {
        options.eos_token = eos;
    }
    let tokenizer = hashprep::train_tokenizer_files(
        &args.corpus.inputs,
        &args.corpus.format()?,
        args.corpus.on_error,
        &options,
        progress,
    )?;
    hashprep::util::write_atomic(&args.out, tokenizer.json())?;
    report::line(&format!(
        "trained a {} tokenizer with {} ids -> {} ({})",
        args.kind,
        tokenizer.vocab_size(),
        args.out.display(),
        tokenizer.fingerprint()
    ))
}

fn batches(args: &BatchesArgs) -> Result<()> {
    use std::io::Write;
    let config = LoaderConfig {
        packing: !args.per_example,
        drop_last: args.drop_last,
        rank: args.rank,
        world_size: args.world_size,
        expert_parallel: args.expert_parallel,
        ..LoaderConfig::new(args.batch_size, args.seq_len, args.seed)
    };
    hashprep::check_prefetch(args.workers, 4)?;
    let mut loader = Loader::new(&args.data, &args.tables, config)?;
    let state = LoaderState {
        next_batch: args.start,
        ..loader.state()
    };
    loader.resume(&state)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for batch in loader.take(args.steps, args.workers, 4) {
        serde_json::to_writer(&mut out, &batch?)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}
