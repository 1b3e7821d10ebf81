//! `hashprep build-table`: counts (and embeddings) -> table file + balance statistics.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::counts::TokenCounts;
use crate::error::{Error, Result, TableProblem};
use crate::integrity::fingerprint_bytes;
use crate::shard::{Manifest, ShardReader};
use crate::table::{
    bigram_expert, build_table, greedy, load_embeddings, loads, plot_expert_shares, BalanceStats,
    Method, RoutingTable, Rule, Series, TableFormat, TableInputs, TableSpec,
};

/// Where the counts come from and what to write.
#[derive(Debug, Clone)]
pub struct BuildTableRequest {
    /// The table to build.
    pub spec: TableSpec,
    /// A tokenize output directory (its `counts.arrow` and, for `bigram`, its shards).
    pub data: Option<PathBuf>,
    /// A counts file, instead of `data`.
    pub counts: Option<PathBuf>,
    /// Embeddings for `clustered` / `dispersed`.
    pub embeddings: Option<PathBuf>,
    /// The tensor name inside a safetensors file.
    pub tensor: Option<String>,
    /// Output file.
    pub out: PathBuf,
    /// Output format.
    pub format: TableFormat,
    /// Draw the load per expert (`.png` or `.svg`).
    pub plot: Option<PathBuf>,
}

impl BuildTableRequest {
    /// `spec` from the counts of the tokenize output `data`, written to `out` as Arrow, with no
    /// embeddings and no plot (set those fields for `clustered` / `dispersed` or a plot).
    pub fn from_data(spec: TableSpec, data: &Path, out: &Path) -> Self {
        Self {
            spec,
            data: Some(data.to_owned()),
            counts: None,
            embeddings: None,
            tensor: None,
            out: out.to_owned(),
            format: TableFormat::Arrow,
            plot: None,
        }
    }
}

/// Statistics of one stream of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamReport {
    /// Sparse layer.
    pub layer: u32,
    /// Hash within the layer.
    pub hash: u32,
    /// Balance of the final assignment (`None` for `position`).
    pub stats: Option<BalanceStats>,
    /// `balanced` with refinement: the balance of the greedy rule alone, for comparison.
    pub greedy_only: Option<BalanceStats>,
}

/// What `build-table` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableReport {
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Method.
    pub method: Method,
    /// Experts K.
    pub experts: u32,
    /// Experts per token k.
    pub top_k: u32,
    /// Number of token ids.
    pub vocab_size: usize,
    /// Token occurrences the statistics are over.
    pub total_tokens: u64,
    /// One report per stream.
    pub streams: Vec<StreamReport>,
    /// How the statistics were obtained, when not from the unigram counts.
    pub note: Option<String>,
}

/// Builds, writes and measures a table.
///
/// # Errors
/// Bad input (see [`build_table`]), unreadable counts or embeddings, or an I/O failure.
pub fn build_table_files(request: &BuildTableRequest) -> Result<TableReport> {
    let (counts, counts_fingerprint, tokenizer_fingerprint) = load_counts(request)?;
    let embeddings = request
        .embeddings
        .as_deref()
        .map(|p| load_embeddings(p, request.tensor.as_deref()))
        .transpose()?;
    let inputs = TableInputs {
        counts: &counts,
        tokenizer_fingerprint,
        counts_fingerprint,
        embeddings: embeddings.as_ref(),
    };
    let table = build_table(&request.spec, &inputs)?;
    let files = table.write(&request.out, request.format)?;
    let report = table_report(&table, &counts, request.data.as_deref(), files)?;
    if let Some(plot) = &request.plot {
        plot_report(plot, &table, &report.streams)?;
    }
    Ok(report)
}

/// The statistics of `table` over `counts` (and the shards of `data`, for bigram tables).
fn table_report(
    table: &RoutingTable,
    counts: &TokenCounts,
    data: Option<&Path>,
    files: Vec<PathBuf>,
) -> Result<TableReport> {
    let (streams, note) = stream_reports(table, counts, data)?;
    Ok(TableReport {
        files,
        method: table.meta.method,
        experts: table.meta.experts,
        top_k: table.meta.top_k,
        vocab_size: table.meta.vocab_size,
        total_tokens: counts.total(),
        streams,
        note,
    })
}

/// The counts, the checksum of their file and their tokenizer fingerprint. A data directory's
/// counts are verified against its manifest.
fn load_counts(request: &BuildTableRequest) -> Result<(TokenCounts, String, String)> {
    match (&request.data, &request.counts) {
        (Some(dir), None) => {
            let manifest = Manifest::read(dir)?;
            let counts = manifest.read_counts(dir)?;
            Ok((
                counts,
                manifest.counts_checksum,
                manifest.tokenizer.fingerprint,
            ))
        }
        (None, Some(path)) => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let (counts, fingerprint) = TokenCounts::from_bytes(&bytes, path)?;
            let fingerprint = fingerprint
                .ok_or_else(|| Error::corrupt(path, "counts without a tokenizer fingerprint"))?;
            Ok((counts, fingerprint_bytes(&bytes), fingerprint))
        }
        _ => Err(Error::setting(
            "data",
            "or `counts`: give exactly one (a tokenize output, or a counts file)",
        )),
    }
}

fn stream_reports(
    table: &RoutingTable,
    counts: &TokenCounts,
    data: Option<&Path>,
) -> Result<(Vec<StreamReport>, Option<String>)> {
    let meta = &table.meta;
    let mut note = None;
    let stats: Vec<Option<BalanceStats>> = match meta.rule {
        Rule::Token | Rule::Previous | Rule::Next => {
            if meta.rule != Rule::Token {
                note = Some(
                    "loads use the unigram counts as the distribution of the neighbouring token"
                        .into(),
                );
            }
            table
                .token_stats(counts)
                .expect("per-token table")
                .into_iter()
                .map(Some)
                .collect()
        }
        Rule::Bigram => {
            if let Some(dir) = data {
                note = Some("loads of the (previous, current) pairs inside the documents of the data; bound = total / K".into());
                bigram_stats(table, dir)?.into_iter().map(Some).collect()
            } else {
                note = Some("bigram loads need the shards: give `data`".into());
                vec![None; table.streams() as usize]
            }
        }
        Rule::Position => {
            note = Some("position routing is t mod K: balanced by construction for sequences of at least K tokens".into());
            vec![None; table.streams() as usize]
        }
    };
    let greedy_only = |stream: u32| -> Option<BalanceStats> {
        let per_token_balanced =
            meta.method == Method::Balanced || meta.base == Some(Method::Balanced);
        if !(meta.refined && per_token_balanced) {
            return None;
        }
        let key = if stream == 0 {
            0
        } else {
            table.stream_key(stream) | 1
        };
        let assignment = greedy(counts.as_slice(), meta.experts, meta.top_k, key);
        let largest = counts.as_slice().iter().copied().max().unwrap_or(0);
        Some(BalanceStats::from_loads(
            &loads(counts.as_slice(), &assignment, meta.experts),
            largest,
        ))
    };
    let reports = stats
        .into_iter()
        .enumerate()
        .map(|(s, stats)| StreamReport {
            layer: s as u32 / meta.hashes,
            hash: s as u32 % meta.hashes,
            stats,
            greedy_only: greedy_only(s as u32),
        })
        .collect();
    Ok((reports, note))
}

/// Loads of every bigram stream over the consecutive pairs of each document.
fn bigram_stats(table: &RoutingTable, dir: &Path) -> Result<Vec<BalanceStats>> {
    let manifest = Manifest::read(dir)?;
    table.check_data(
        &manifest.tokenizer.fingerprint,
        manifest.tokenizer.vocab_size,
    )?;
    let k = table.meta.experts;
    let keys: Vec<u64> = (0..table.streams()).map(|s| table.stream_key(s)).collect();
    let mut loads = vec![vec![0u64; k as usize]; keys.len()];
    let mut ids = Vec::new();
    for info in &manifest.shards {
        let shard = ShardReader::open(&dir.join(&info.file), Some(&info.checksum))?;
        for (doc, _) in shard.documents() {
            ids.clear();
            doc.for_each(|id| ids.push(id));
            for pair in ids.windows(2) {
                for (stream, key) in keys.iter().enumerate() {
                    loads[stream][bigram_expert(*key, pair[0], pair[1], k) as usize] += 1;
                }
            }
        }
    }
    Ok(loads
        .iter()
        .map(|l| BalanceStats::from_loads(l, 0))
        .collect())
}

fn plot_report(path: &Path, table: &RoutingTable, streams: &[StreamReport]) -> Result<()> {
    let series: Vec<Series> = streams
        .iter()
        .filter_map(|s| {
            let stats = s.stats.as_ref()?;
            let label = if streams.len() == 1 {
                table.meta.method.name().to_owned()
            } else {
                format!(
                    "{} layer {} hash {}",
                    table.meta.method.name(),
                    s.layer,
                    s.hash
                )
            };
            Some(Series {
                label,
                shares: stats.shares.clone(),
            })
        })
        .collect();
    if series.is_empty() {
        return Err(Error::table(TableProblem::NoLoadStatistics(
            table.meta.method.name(),
        )));
    }
    let title = format!("Load per expert, {} experts", table.meta.experts);
    plot_expert_shares(path, &title, &series)
}

/// One table of [`compare_tables`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableComparison {
    /// The table file.
    pub file: PathBuf,
    /// Its method.
    pub method: Method,
    /// Its K.
    pub experts: u32,
    /// Balance of its first stream over the data (`None` for `position`).
    pub stats: Option<BalanceStats>,
}

/// The statistics of an existing table over the tokenize output `data` (the report
/// `build-table` gives, without files).
///
/// # Errors
/// Unreadable data, or a table built for another tokenizer or vocabulary.
pub fn measure_table(table: &RoutingTable, data: &Path) -> Result<TableReport> {
    let manifest = Manifest::read(data)?;
    check_table_data(table, &manifest).map_err(|e| e.in_table_file(data))?;
    let counts = manifest.read_counts(data)?;
    table_report(table, &counts, Some(data), Vec::new())
}

fn check_table_data(table: &RoutingTable, manifest: &Manifest) -> Result<()> {
    table.check_data(
        &manifest.tokenizer.fingerprint,
        manifest.tokenizer.vocab_size,
    )
}

/// Measures several tables on the same data (refusing tables built for other data), and
/// optionally draws their loads side by side.
///
/// # Errors
/// Unreadable tables or data, a table of another tokenizer, or a plot failure.
pub fn compare_tables(
    data: &Path,
    tables: &[PathBuf],
    plot: Option<&Path>,
) -> Result<Vec<TableComparison>> {
    let manifest = Manifest::read(data)?;
    let counts = manifest.read_counts(data)?;
    let mut rows = Vec::new();
    for file in tables {
        let table = RoutingTable::read(file)?;
        check_table_data(&table, &manifest).map_err(|e| e.in_table_file(file))?;
        let (mut streams, _) = stream_reports(&table, &counts, Some(data))?;
        let stats = streams.swap_remove(0).stats;
        rows.push(TableComparison {
            file: file.clone(),
            method: table.meta.method,
            experts: table.meta.experts,
            stats,
        });
    }
    if let Some(path) = plot {
        let series: Vec<Series> = rows
            .iter()
            .filter_map(|r| {
                let stem = r
                    .file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Some(Series {
                    label: format!("{} ({stem})", r.method.name()),
                    shares: r.stats.as_ref()?.shares.clone(),
                })
            })
            .collect();
        plot_expert_shares(path, "Load per expert by hashing method", &series)?;
    }
    Ok(rows)
}
