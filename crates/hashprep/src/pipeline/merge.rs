//! `hashprep merge`: joins the outputs of `--num-tasks` tasks into one directory with one
//! manifest and one counts file. Shards are hard-linked (copied across file systems).

use std::path::{Path, PathBuf};

use super::tokenize::TokenizeSummary;
use crate::counts::{TokenCounts, COUNTS_FILE};
use crate::error::{Error, MergeProblem, OutputProblem, Result};
use crate::integrity::fingerprint_bytes;
use crate::shard::{shard_file_name, TOKENIZER_FILE};
use crate::shard::{Manifest, ShardInfo, ShardReader, Totals, MANIFEST_FILE};
use crate::util::{create_output_dir, persist, temp_file_beside, write_atomic};

/// Merges the complete tokenize outputs in `dirs` into `out`.
///
/// Every input must come from the same settings and tokenizer; each task index may appear
/// once, and unless `allow_partial` all tasks of the partition must be present. Each shard is
/// checked for its size and Arrow layout (a truncated or foreign file is refused)
/// and keeps its checksum, which every reader of the merged output verifies before using its
/// bytes; with `verify`, the merge reads every shard and verifies it first (a full read of the
/// data, which a merge of hard links otherwise never does).
///
/// # Errors
/// Mismatched or incomplete inputs, a shard of another size or structure (or, with `verify`,
/// failing its checksum), or an I/O failure.
pub fn merge(
    dirs: &[PathBuf],
    out: &Path,
    (allow_partial, verify): (bool, bool),
    force: bool,
) -> Result<TokenizeSummary> {
    let started = std::time::Instant::now();
    if dirs.is_empty() {
        return Err(Error::Merge(MergeProblem::NothingGiven));
    }
    let mut parts: Vec<(PathBuf, Manifest)> = dirs
        .iter()
        .map(|d| Manifest::read(d).map(|m| (d.clone(), m)))
        .collect::<Result<_>>()?;
    parts.sort_by_key(|(_, m)| m.tasks.first().copied().unwrap_or([0, 1]));
    check_compatible(&parts, allow_partial)?;
    if out.join(MANIFEST_FILE).exists() && !force {
        return Err(Error::Output {
            dir: out.to_owned(),
            problem: OutputProblem::HoldsManifest,
        });
    }
    create_output_dir(out)?;
    let _ = std::fs::remove_file(out.join(MANIFEST_FILE));

    let first = &parts[0].1;
    let mut counts = TokenCounts::new(first.tokenizer.vocab_size);
    let mut totals = Totals::default();
    let mut shards: Vec<ShardInfo> = Vec::new();
    let mut inputs = Vec::new();
    let mut tasks = Vec::new();
    let mut runs = Vec::new();
    for (dir, manifest) in &parts {
        let part_counts = manifest.read_counts(dir)?;
        counts.merge(&part_counts)?;
        totals.add(&manifest.totals);
        for shard in &manifest.shards {
            let source = dir.join(&shard.file);
            check_shard(&source, shard, verify)?;
            let name = shard_file_name(shards.len());
            link_or_copy(&source, &out.join(&name))?;
            shards.push(ShardInfo {
                file: name,
                ..shard.clone()
            });
        }
        // Reddit tasks all read every file: list each input once.
        for input in &manifest.inputs {
            if !inputs.contains(input) {
                inputs.push(input.clone());
            }
        }
        tasks.extend(manifest.tasks.iter().copied());
        runs.push(
            manifest
                .config
                .get("run_fingerprint")
                .cloned()
                .unwrap_or_default(),
        );
    }
    let counts_bytes = counts.write(&out.join(COUNTS_FILE), &first.tokenizer.fingerprint)?;
    let tokenizer_json = first.read_tokenizer_json(&parts[0].0)?;
    write_atomic(&out.join(TOKENIZER_FILE), &tokenizer_json)?;
    let mut config = first.config.clone();
    config["run_fingerprint"] = serde_json::Value::String(fingerprint_bytes(
        serde_json::Value::Array(runs).to_string().as_bytes(),
    ));
    let manifest = Manifest {
        shards,
        counts_checksum: fingerprint_bytes(&counts_bytes),
        totals: totals.clone(),
        inputs,
        tasks,
        config,
        ..first.clone()
    };
    manifest.write(out)?;
    Ok(TokenizeSummary {
        out: out.to_path_buf(),
        shards: manifest.shards.len(),
        totals,
        input_files: manifest.inputs.len(),
        input_bytes: manifest.inputs.iter().map(|f| f.bytes).sum(),
        resumed_items: 0,
        already_complete: false,
        seconds: started.elapsed().as_secs_f64(),
        encoder: manifest.tokenizer.encoder.clone(),
    })
}

fn check_compatible(parts: &[(PathBuf, Manifest)], allow_partial: bool) -> Result<()> {
    let (first_dir, first) = &parts[0];
    // Outputs rebuilt from different shared spills hold overlapping threads: not merged.
    let settings = |m: &Manifest| {
        (
            m.config.get("tokenize").cloned(),
            m.config.get("spill").cloned(),
        )
    };
    for (dir, manifest) in &parts[1..] {
        if manifest.tokenizer.fingerprint != first.tokenizer.fingerprint {
            return Err(Error::Merge(MergeProblem::OtherTokenizer {
                first: first_dir.clone(),
                dir: dir.clone(),
                first_tokenizer: first.tokenizer.fingerprint.clone(),
                tokenizer: manifest.tokenizer.fingerprint.clone(),
            }));
        }
        if settings(manifest) != settings(first) || manifest.token_type != first.token_type {
            return Err(Error::Merge(MergeProblem::OtherSettings {
                first: first_dir.clone(),
                dir: dir.clone(),
            }));
        }
    }
    let mut seen: Vec<[usize; 2]> = Vec::new();
    for (dir, manifest) in parts {
        for task in &manifest.tasks {
            if seen.contains(task) {
                return Err(Error::Merge(MergeProblem::TaskTwice {
                    dir: dir.clone(),
                    task: task[0],
                    tasks: task[1],
                }));
            }
            if task[1] != first.tasks[0][1] {
                return Err(Error::Merge(MergeProblem::OtherSplit {
                    dir: dir.clone(),
                    tasks: task[1],
                    first: first_dir.clone(),
                    first_tasks: first.tasks[0][1],
                }));
            }
            seen.push(*task);
        }
    }
    let count = first.tasks[0][1];
    let missing: Vec<usize> = (0..count)
        .filter(|i| !seen.iter().any(|t| t[0] == *i))
        .collect();
    if !missing.is_empty() && !allow_partial {
        return Err(Error::Merge(MergeProblem::TasksMissing {
            missing,
            tasks: count,
        }));
    }
    Ok(())
}

/// A shard as its manifest records it: its size and layout; with `verify`, its checksum too.
fn check_shard(path: &Path, shard: &ShardInfo, verify: bool) -> Result<()> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if size != shard.bytes {
        return Err(Error::corrupt(
            path,
            format!("{size} bytes, the manifest recorded {}", shard.bytes),
        ));
    }
    if verify {
        ShardReader::open(path, Some(&shard.checksum)).map(drop)
    } else {
        ShardReader::check_layout(path)
    }
}

fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    // A unique name: hard_link and copy need a path that does not exist yet.
    let (_, temp) = temp_file_beside(to)?;
    std::fs::remove_file(&temp).map_err(|e| Error::io(&temp, e))?;
    if std::fs::hard_link(from, &temp).is_err() {
        std::fs::copy(from, &temp).map_err(|e| Error::io(to, e))?;
    }
    persist(temp, to)
}
