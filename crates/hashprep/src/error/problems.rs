//! The classes of bad input beyond one record or setting, each with the cases it has: what a
//! message says is rendered from the case, so callers match on the case, not on words.

use std::path::PathBuf;

/// `PATH: ` before a message, or nothing.
pub(super) fn at(path: Option<&PathBuf>) -> String {
    path.map_or_else(String::new, |p| format!("{}: ", p.display()))
}

/// Input files that cannot be read as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputProblem {
    /// The glob pattern does not parse.
    #[error("not a valid pattern: {0}")]
    BadPattern(String),
    /// The glob pattern matches no file.
    #[error("the pattern matches no file")]
    NoMatch,
    /// Neither a file nor a directory.
    #[error("no such input file or directory")]
    Missing,
    /// A document range given for a directory or a pattern.
    #[error("documents [{start}, {end}) select part of one file, not of a directory or pattern")]
    RangeOfMany {
        /// First document.
        start: usize,
        /// One past the last.
        end: usize,
    },
    /// A document range that is empty or reversed.
    #[error("documents [{start}, {end}) is not a range")]
    NotARange {
        /// First document.
        start: usize,
        /// One past the last.
        end: usize,
    },
    /// A document range past the file's documents.
    #[error("documents [{start}, {end}) asked for, but the file holds {held}")]
    RangeBeyond {
        /// First document.
        start: usize,
        /// One past the last.
        end: usize,
        /// Documents in the file.
        held: usize,
    },
    /// A file without a record.
    #[error("empty input: the file holds no records")]
    Empty,
}

/// An output directory that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputProblem {
    /// It holds a tokenize output already.
    #[error("already holds a manifest; replace it with `force`")]
    HoldsManifest,
    /// It holds a run of other settings or inputs.
    #[error(
        "already holds {0} made with other settings or inputs; choose another output directory or \
         replace it with `force`"
    )]
    HoldsOther(&'static str),
    /// Another run holds its lock.
    #[error(
        "another run is writing this directory ({0}): wait for it to finish, or choose another \
         output directory"
    )]
    Locked(String),
    /// A file where a directory is wanted.
    #[error("is a file, not a directory")]
    NotADirectory,
    /// An output file that exists already.
    #[error("exists already; choose another output or replace it with `force`")]
    Exists,
}

/// Tokenize outputs (or counts) that do not merge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeProblem {
    /// Nothing to merge.
    #[error("merge needs at least one tokenize output directory")]
    NothingGiven,
    /// Two outputs of different tokenizers.
    #[error("{} and {} were tokenized with different tokenizers ({first_tokenizer} vs {tokenizer})", first.display(), dir.display())]
    OtherTokenizer {
        /// The first output.
        first: PathBuf,
        /// The one that differs.
        dir: PathBuf,
        /// The first's tokenizer fingerprint.
        first_tokenizer: String,
        /// This one's.
        tokenizer: String,
    },
    /// Two outputs of different settings.
    #[error("{} and {} were tokenized with different settings", first.display(), dir.display())]
    OtherSettings {
        /// The first output.
        first: PathBuf,
        /// The one that differs.
        dir: PathBuf,
    },
    /// One task's output given twice.
    #[error("{}: task {task} of {tasks} is given twice", dir.display())]
    TaskTwice {
        /// The output.
        dir: PathBuf,
        /// Its task index.
        task: usize,
        /// Tasks of its split.
        tasks: usize,
    },
    /// Outputs of splits into different numbers of tasks.
    #[error("{}: comes from a split into {tasks} tasks, {} from a split into {first_tasks}", dir.display(), first.display())]
    OtherSplit {
        /// The output.
        dir: PathBuf,
        /// Its split's tasks.
        tasks: usize,
        /// The first output.
        first: PathBuf,
        /// The first's split's tasks.
        first_tasks: usize,
    },
    /// Tasks of the split not given.
    #[error("tasks {missing:?} of {tasks} are missing; give every task's output or allow it with `allow_partial`")]
    TasksMissing {
        /// The missing task indices.
        missing: Vec<usize>,
        /// Tasks of the split.
        tasks: usize,
    },
    /// Counts of vocabularies of different sizes.
    #[error("cannot merge counts of {theirs} ids with counts of {ours} ids")]
    OtherVocabulary {
        /// Ids of the counts merged in.
        theirs: usize,
        /// Ids of the counts merged into.
        ours: usize,
    },
}

/// A shared Reddit spill directory that cannot be used as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpillProblem {
    /// A finished task of another spill (other inputs, task count or partitions).
    #[error(
        "holds the spill of other inputs or settings ({found}, not {wanted}); give another \
         `spill_dir` or remove this one"
    )]
    OtherSpill {
        /// What the directory holds: its task and spill identity.
        found: String,
        /// The spill asked for.
        wanted: String,
    },
    /// No phase-1 task has finished.
    #[error("holds no finished spill task: run `phase` spill first (every `task_index`)")]
    NothingSpilled,
    /// Some phase-1 tasks have not finished (never run, still running, or killed).
    #[error(
        "spill tasks {missing:?} of {tasks} have not finished (never run, running, or stopped): \
         run them with `phase` spill before the rebuild"
    )]
    Unfinished {
        /// Their indices.
        missing: Vec<usize>,
        /// Tasks of the spill.
        tasks: usize,
    },
    /// The inputs given are not those the spill was made from.
    #[error("was spilled from other inputs: {0}")]
    OtherInputs(String),
    /// A setting of the rebuild that the spill fixed otherwise.
    #[error("was spilled into {spilled} partitions, not the {asked} asked for with `partitions`")]
    OtherPartitions {
        /// Partitions of the spill.
        spilled: usize,
        /// Partitions asked for.
        asked: usize,
    },
    /// A spill file missing or of another size than recorded.
    #[error(
        "{}: {found}, the spill recorded {expected} bytes: damaged or partly removed; spill again \
         into a new directory",
        file.display()
    )]
    Damaged {
        /// The file.
        file: PathBuf,
        /// What was found (its size, or that it is missing).
        found: String,
        /// Its recorded size.
        expected: u64,
    },
    /// A removal asked for by outputs of another spill, or of only some rebuild tasks.
    #[error("not removed: {0}")]
    NotRemoved(String),
}

/// A tokenizer that cannot be used as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizerProblem {
    /// Neither built in nor a file.
    #[error("unknown tokenizer {0:?}: not a built-in name (gpt2) and no such tokenizer.json file")]
    Unknown(String),
    /// A file the tokenizers library refuses.
    #[error("{spec}: not a valid tokenizer.json: {message}")]
    Invalid {
        /// The file.
        spec: String,
        /// The library's words.
        message: String,
    },
    /// The end-of-document token asked for is not in the vocabulary.
    #[error("end-of-document token {token:?} is not in tokenizer {tokenizer}")]
    NoSuchEos {
        /// The token.
        token: String,
        /// The tokenizer.
        tokenizer: String,
    },
    /// The beginning-of-document token asked for is not in the vocabulary.
    #[error("beginning-of-document token {token:?} is not in tokenizer {tokenizer}")]
    NoSuchBos {
        /// The token.
        token: String,
        /// The tokenizer.
        tokenizer: String,
    },
    /// None of the usual end-of-document tokens is in the vocabulary.
    #[error(
        "tokenizer {tokenizer} has none of the usual end-of-document tokens {candidates:?}; name one \
         with `eos_token` or append none with `no_eos`"
    )]
    NoUsualEos {
        /// The tokenizer.
        tokenizer: String,
        /// The tokens looked for.
        candidates: &'static [&'static str],
    },
}

/// A routing table that is not valid, or does not fit what is asked of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableProblem {
    /// Columns of the file against its metadata.
    #[error("table has {found} columns, its metadata needs {expected}")]
    Columns {
        /// Columns in the file.
        found: usize,
        /// Columns the metadata needs.
        expected: usize,
    },
    /// `top_k` outside `1..=experts`.
    #[error("top_k {top_k} is not within 1..={experts} experts")]
    TopKRange {
        /// Its `top_k`.
        top_k: u32,
        /// Its experts.
        experts: u32,
    },
    /// A column of the wrong length.
    #[error("a table column has {len} values for {vocab} ids x top_k {top_k}")]
    ColumnLength {
        /// Values in the column.
        len: usize,
        /// Ids of the vocabulary.
        vocab: usize,
        /// Experts per token.
        top_k: u32,
    },
    /// An expert id of K or more.
    #[error("expert {expert} out of range for K = {experts}")]
    ExpertRange {
        /// The id.
        expert: u32,
        /// K.
        experts: u32,
    },
    /// A token whose top-k experts repeat one.
    #[error("token {token} has the same expert twice among its top_k {top_k}")]
    RepeatedExpert {
        /// The token.
        token: usize,
        /// Experts per token.
        top_k: u32,
    },
    /// Data of another tokenizer.
    #[error("the table was built for tokenizer {table_tokenizer} ({table_vocab} ids) but the data uses {data_tokenizer} ({data_vocab} ids)")]
    OtherTokenizer {
        /// The table's tokenizer fingerprint.
        table_tokenizer: String,
        /// The table's vocabulary size.
        table_vocab: usize,
        /// The data's tokenizer fingerprint.
        data_tokenizer: String,
        /// The data's vocabulary size.
        data_vocab: usize,
    },
    /// A rule (no per-token column) asked to be written as `.npy`.
    #[error("`format` npy stores per-token columns; a {0} table is a rule: write it as Arrow")]
    RuleAsNpy(&'static str),
    /// `top_k` too large to store.
    #[error("top_k {0} is too large")]
    TopKTooLarge(u32),
    /// A table without per-token experts asked for them.
    #[error("a {method} table{} has no per-token experts to export (tid2eid needs random, balanced, clustered or dispersed)", if *several_hashes { " of several hashes" } else { "" })]
    NoPerTokenExperts {
        /// Its method.
        method: &'static str,
        /// Several hashes per layer.
        several_hashes: bool,
    },
    /// A table without load statistics asked to plot them.
    #[error("a {0} table has no load statistics to plot")]
    NoLoadStatistics(&'static str),
    /// A table file that is not one of a loader's.
    #[error("not one of the loader's tables")]
    NotLoaded,
    /// A table layer past the table's layers.
    #[error("the table has no layer {layer} (it has {layers})")]
    NoSuchLayer {
        /// The layer asked for.
        layer: u32,
        /// Its layers.
        layers: u32,
    },
    /// Too few embeddings for the clusters.
    #[error("cannot make {clusters} clusters of {rows} embeddings")]
    TooFewEmbeddings {
        /// Clusters asked for.
        clusters: usize,
        /// Embeddings given.
        rows: usize,
    },
    /// An embedding matrix of another vocabulary.
    #[error("the embedding matrix has {rows} rows but the vocabulary has {vocab} ids")]
    EmbeddingRows {
        /// Rows of the matrix.
        rows: usize,
        /// Ids of the vocabulary.
        vocab: usize,
    },
}

/// A loader that cannot be opened or resumed as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoaderProblem {
    /// The padding id is not an id.
    #[error("pad id {pad_id} is outside the vocabulary of {vocab} ids")]
    PadOutside {
        /// The padding id.
        pad_id: u32,
        /// Ids of the vocabulary.
        vocab: usize,
    },
    /// Not one batch per rank.
    #[error(
        "the data holds {samples} samples of T = {seq_len}: not one batch of {batch_size} per rank"
    )]
    TooLittleData {
        /// Samples in the data.
        samples: usize,
        /// Positions per row.
        seq_len: usize,
        /// Rows per batch.
        batch_size: usize,
    },
    /// A loader state saved with other settings.
    #[error("`{key}` is {ours} here but {theirs} in the loader state being resumed: resume with the settings it was saved with")]
    StateSetting {
        /// The setting.
        key: String,
        /// Its value here.
        ours: String,
        /// Its value in the state.
        theirs: String,
    },
    /// A loader state of other data or tables.
    #[error("the loader state comes from {0}")]
    StateOf(String),
}

/// Input that leaves nothing to work on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmptyProblem {
    /// No input file given.
    #[error("no input files given")]
    NoInputs,
    /// No document came out of the input.
    #[error("no documents in the input (skipped: {0})")]
    NoDocuments(String),
    /// No Reddit comment in the input.
    #[error(
        "no Reddit comments were found in the input: the examples are comments (RC_* dumps, \
         records with parent_id and link_id); submissions (RS_*) only open their contexts"
    )]
    NoRedditComments,
    /// Reddit comments, but none gave an example.
    #[error("no Reddit comment gave an example (skipped: {0})")]
    NoRedditExample(String),
    /// No text to train a tokenizer on.
    #[error("no text to train the tokenizer on")]
    NoTrainingText,
}

/// A plot that cannot be made as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlotProblem {
    /// This build has no plotting.
    #[error("this build of hashprep draws no plots (cargo feature `plot`)")]
    NotBuilt,
    /// No table to plot.
    #[error("nothing to plot")]
    Nothing,
    /// Neither `.png` nor `.svg`.
    #[error("the plot must be a .png or .svg file")]
    Extension,
}

/// A Hugging Face checkpoint that cannot take a routing table (`export-table --into`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointProblem {
    /// Neither weights nor an index.
    #[error("no model.safetensors or model.safetensors.index.json: not a Hugging Face safetensors checkpoint")]
    NoWeights,
    /// A file of it that does not parse.
    #[error("cannot be read: {0}")]
    Unreadable(String),
    /// A safetensors file shorter than its header says.
    #[error("cut short: {size} bytes, but its header describes {expected}")]
    Truncated {
        /// Its size.
        size: u64,
        /// The size its header describes.
        expected: u64,
    },
    /// A setting of `config.json` that the table does not fit.
    #[error("{setting} = {value}: {why}")]
    DoesNotFit {
        /// The setting.
        setting: String,
        /// Its value in the checkpoint.
        value: String,
        /// Why the table does not fit it.
        why: String,
    },
}
