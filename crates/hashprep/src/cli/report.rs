//! Printing results on stdout: human-readable lines or JSON.

use std::io::Write;

use anyhow::Result;
use hashprep::{
    BalanceStats, CheckpointInsert, Inspection, MegatronExport, SpillSummary, TableComparison,
    TableReport, TokenizeSummary,
};

pub(super) fn line(text: &str) -> Result<()> {
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

fn json(value: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

pub(super) fn checkpoint_insert(inserted: &CheckpointInsert, as_json: bool) -> Result<()> {
    if as_json {
        return json(inserted);
    }
    let keys: Vec<&str> = inserted.keys.values().map(String::as_str).collect();
    line(&format!(
        "{}: tid2eid of {} layer(s) in {} ({}), mapped by model.safetensors.index.json{}{}",
        inserted.checkpoint.display(),
        keys.len(),
        inserted.file.display(),
        keys.join(", "),
        if inserted.replaced.is_empty() {
            String::new()
        } else {
            format!("; replaced {}", inserted.replaced.join(", "))
        },
        inserted
            .renamed
            .as_ref()
            .map(|p| format!("; model.safetensors renamed {}", p.display()))
            .unwrap_or_default()
    ))
}

pub(super) fn megatron_export(written: &MegatronExport, as_json: bool) -> Result<()> {
    if as_json {
        return json(written);
    }
    let prefix_len = written
        .prefix_len
        .as_ref()
        .map(|p| format!("; prefix lengths in {}", p.display()))
        .unwrap_or_default();
    line(&format!(
        "wrote {} and {}: {} documents, {} tokens as {}{prefix_len}",
        written.bin.display(),
        written.idx.display(),
        written.documents,
        written.tokens,
        written.dtype.name()
    ))
}

pub(super) fn spill_summary(summary: &SpillSummary, as_json: bool) -> Result<()> {
    if as_json {
        return json(summary);
    }
    let [task, tasks] = summary.task;
    let mut out = std::io::stdout().lock();
    if summary.already_complete {
        writeln!(
            out,
            "{}: spill task {task} of {tasks} already complete; nothing to do",
            summary.spill_dir.display()
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "spilled task {task} of {tasks}: {} input part(s), {:.1} MB -> {:.1} MB in {} partitions \
         under {} ({:.1} s); skipped: {}",
        summary.units.len(),
        summary.input_bytes as f64 / 1e6,
        summary.spill_bytes as f64 / 1e6,
        summary.partitions,
        summary.spill_dir.display(),
        summary.seconds,
        skipped_list(
            summary
                .skipped
                .iter()
                .map(|(reason, &n)| (reason.as_str(), n))
        )
    )?;
    Ok(())
}

/// Records skipped, by reason (`deleted 3, malformed_json 1`), or `none`.
fn skipped_list<'a>(skipped: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let listed: Vec<String> = (skipped.into_iter())
        .filter(|&(_, n)| n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    if listed.is_empty() {
        "none".to_owned()
    } else {
        listed.join(", ")
    }
}

pub(super) fn tokenize_summary(summary: &TokenizeSummary, as_json: bool, verb: &str) -> Result<()> {
    if as_json {
        return json(summary);
    }
    let mut out = std::io::stdout().lock();
    if summary.already_complete {
        writeln!(
            out,
            "{}: already complete (same settings and inputs); nothing to do",
            summary.out.display()
        )?;
    }
    if summary.resumed_items > 0 {
        writeln!(
            out,
            "resumed after {} records written by an earlier run",
            summary.resumed_items
        )?;
    }
    let mb = summary.input_bytes as f64 / 1e6;
    writeln!(
        out,
        "{verb} {} documents, {} tokens into {} shard(s) in {} ({} input file(s), {mb:.1} MB, {:.1} s, {:.2} MB/s)",
        summary.totals.documents,
        summary.totals.tokens,
        summary.shards,
        summary.out.display(),
        summary.input_files,
        summary.seconds,
        mb / summary.seconds.max(1e-9),
    )?;
    let skipped = skipped_list(summary.totals.skipped_by_reason());
    writeln!(out, "skipped records: {skipped}")?;
    if !summary.totals.notices.is_empty() {
        let notices: Vec<String> = summary
            .totals
            .notices
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        writeln!(out, "notices: {}", notices.join(", "))?;
    }
    Ok(())
}

pub(super) fn inspection(ins: &Inspection, as_json: bool) -> Result<()> {
    if as_json {
        return json(ins);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", ins.dir.display())?;
    writeln!(
        out,
        "  tokenizer   {} ({})",
        ins.tokenizer, ins.tokenizer_fingerprint
    )?;
    writeln!(
        out,
        "  vocabulary  {} ids ({}), {} used",
        ins.vocab_size, ins.token_type, ins.used_ids
    )?;
    writeln!(
        out,
        "  shards      {} ({} bytes, all checksums verified)",
        ins.shards.len(),
        ins.bytes
    )?;
    writeln!(out, "  rows        {}", ins.rows)?;
    writeln!(out, "  tokens      {}", ins.tokens)?;
    if ins.skipped.values().any(|&n| n > 0) {
        writeln!(out, "  skipped     {:?}", ins.skipped)?;
    }
    writeln!(out, "  most frequent tokens:")?;
    for t in &ins.top {
        writeln!(
            out,
            "    {:>8}  {:>10}  {:>6.2}%  {:?}",
            t.id,
            t.count,
            100.0 * t.share,
            t.text
        )?;
    }
    Ok(())
}

pub(super) fn table(report: &TableReport, as_json: bool) -> Result<()> {
    if as_json {
        return json(report);
    }
    let mut out = std::io::stdout().lock();
    let files: Vec<String> = report
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    writeln!(
        out,
        "{} table, K = {}{}, {} ids, {} tokens -> {}",
        report.method.name(),
        report.experts,
        if report.top_k > 1 {
            format!(
                ", top-{} (loads count each token once per expert)",
                report.top_k
            )
        } else {
            String::new()
        },
        report.vocab_size,
        report.total_tokens,
        files.join(", ")
    )?;
    if let Some(note) = &report.note {
        writeln!(out, "note: {note}")?;
    }
    writeln!(
        out,
        "{:<14} {:>9} {:>7} {:>9} {:>12} {:>14} {:>9}",
        "layer/hash", "max/mean", "cv", "entropy", "max load", "lower bound", "ratio"
    )?;
    for stream in &report.streams {
        let label = format!("{}/{}", stream.layer, stream.hash);
        match &stream.stats {
            Some(stats) => stats_row(&mut out, &label, stats)?,
            None => writeln!(out, "{label:<14} (no statistics)")?,
        }
        if let Some(greedy) = &stream.greedy_only {
            stats_row(&mut out, "  greedy only", greedy)?;
        }
    }
    if let Some(stats) = report.streams.first().and_then(|s| s.stats.as_ref()) {
        let mut shares = stats.shares.clone();
        shares.sort_by(|a, b| b.total_cmp(a));
        let text: Vec<String> = shares.iter().map(|s| format!("{:.2}", 100.0 * s)).collect();
        writeln!(
            out,
            "share per expert (%, sorted, layer 0 hash 0): {}",
            text.join(" ")
        )?;
    }
    Ok(())
}

fn stats_row(out: &mut impl Write, label: &str, s: &BalanceStats) -> Result<()> {
    writeln!(
        out,
        "{label:<14} {:>9.4} {:>7.4} {:>9.4} {:>12} {:>14.1} {:>9.4}",
        s.max_over_mean, s.cv, s.entropy_bits, s.max_load, s.lower_bound, s.ratio_to_bound
    )?;
    Ok(())
}

pub(super) fn comparison(rows: &[TableComparison], as_json: bool) -> Result<()> {
    if as_json {
        return json(&rows);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<16} {:>9} {:>7} {:>9} {:>12} {:>14} {:>9}  file",
        "method", "max/mean", "cv", "entropy", "max load", "lower bound", "ratio"
    )?;
    for row in rows {
        let label = format!("{} K={}", row.method.name(), row.experts);
        match &row.stats {
            Some(s) => writeln!(
                out,
                "{label:<16} {:>9.4} {:>7.4} {:>9.4} {:>12} {:>14.1} {:>9.4}  {}",
                s.max_over_mean,
                s.cv,
                s.entropy_bits,
                s.max_load,
                s.lower_bound,
                s.ratio_to_bound,
                row.file.display()
            )?,
            None => writeln!(out, "{label:<16} (no statistics)  {}", row.file.display())?,
        }
    }
    Ok(())
}
