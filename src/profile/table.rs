//! Human tables of a [`ProfileReport`]: aligned text for the terminal and GitHub markdown.
//! Times are medians over the repetitions; prefill and total also show [min–max] ± sd.

use super::report::{ModeResult, ProfileReport};
use crate::metrics::flops::gflops;
use crate::metrics::summary::Summary;

/// How stdout shows the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// A GitHub markdown table.
    Md,
    /// The CSV that `--csv` writes.
    Csv,
    /// The JSON that `--json` writes.
    Json,
}

/// The header line: what ran, where, and how often.
pub fn title(report: &ProfileReport) -> String {
    let s = &report.settings;
    let mut line = format!(
        "sdtp profile {} · {} · {} · {} · {} · {} repeat{} (+{} warm-up) · ",
        report.run.command,
        report.run.model.name,
        report.run.device,
        report.run.dtype,
        report.run.model.weights_label(),
        s.repeats,
        if s.repeats == 1 { "" } else { "s" },
        s.warmup,
    );
    if report.run.command == "end2end" {
        line.push_str(&format!("{} new tokens · ", s.new_tokens));
    }
    line.push_str(&format!(
        "sdtp {} ({})",
        report.run.sdtp_version, report.run.git_commit
    ));
    line
}

fn columns(end2end: bool) -> Vec<&'static str> {
    let mut c = vec!["length", "mode", "prefill ms", "TTFT ms"];
    if end2end {
        c.extend([
            "decode ms",
            "decode tok/s",
            "decode GB/s",
            "% roofline",
            "total ms",
        ]);
    }
    c.extend(["kept", "KV MiB", "peak MiB", "GFLOPs", "prefill ×"]);
    if end2end {
        c.extend(["decode ×", "total ×"]);
    }
    c
}

fn spread(s: &Summary) -> String {
    format!("{:.1} [{:.1}–{:.1}] ±{:.1}", s.median, s.min, s.max, s.sd)
}

fn mib(bytes: f64) -> String {
    format!("{:.1}", bytes / (1024.0 * 1024.0))
}

fn times(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |x| format!("{x:.2}×"))
}

fn row(report: &ProfileReport, r: &ModeResult) -> Vec<String> {
    let end2end = report.run.command == "end2end";
    let s = &r.summary;
    let mut cells = vec![
        format!("{}{}", r.length, if r.prompt_tiled { "*" } else { "" }),
        r.mode.clone(),
        spread(&s.prefill_ms),
        format!("{:.1}", s.ttft_ms.median),
    ];
    if end2end {
        cells.push(
            s.decode_ms
                .map_or("—".into(), |d| format!("{:.1}", d.median)),
        );
        cells.push(
            s.decode_tok_s
                .map_or("—".into(), |d| format!("{:.1}", d.median)),
        );
        cells.push(
            s.decode_bandwidth_gb_s
                .map_or("—".into(), |d| format!("{:.1}", d.median)),
        );
        cells.push(
            r.roofline_share
                .map_or("—".into(), |x| format!("{:.1}%", 100.0 * x)),
        );
        cells.push(spread(&s.total_ms));
    }
    cells.push(format!(
        "{} ({:.0}%)",
        r.kept.final_tokens,
        100.0 * r.kept.final_ratio
    ));
    cells.push(mib(r.kv_cache_bytes as f64));
    cells.push(s.peak_memory_bytes.map_or("—".into(), |p| mib(p.median)));
    cells.push(format!("{:.2}", gflops(r.flops.model)));
    let sp = r.speedup.as_ref();
    cells.push(match sp {
        Some(x) => format!(
            "{} (ideal {})",
            times(x.prefill),
            times(x.prefill_flop_ideal)
        ),
        None => "—".into(),
    });
    if end2end {
        cells.push(times(sp.and_then(|x| x.decode)));
        cells.push(times(sp.and_then(|x| x.total)));
    }
    cells
}

fn notes(report: &ProfileReport) -> Vec<String> {
    let mut notes = vec![
        "times: median [min–max] ±sd over the repetitions; ×: baseline median / mode median"
            .to_string(),
        format!("peak memory: {}", report.memory.description),
    ];
    if let Some(roofline) = &report.roofline {
        notes.push(format!(
            "decode GB/s: (weights + every layer's KV cache) read per decode token × decode tok/s; \
             % roofline: of the copy rate measured at start, {:.1} GB/s ({})",
            roofline.copy_rate_gb_s, roofline.description
        ));
    }
    if report.results.iter().any(|r| r.prompt_tiled) {
        notes.push(format!(
            "*: the prompt repeats {} (it has {} tokens)",
            report.prompt.source, report.prompt.source_tokens
        ));
    }
    notes
}

/// Aligned text table with a title line and notes.
pub fn render_table(report: &ProfileReport) -> String {
    let end2end = report.run.command == "end2end";
    let header: Vec<String> = columns(end2end).into_iter().map(String::from).collect();
    let rows: Vec<Vec<String>> = report.results.iter().map(|r| row(report, r)).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &w))| {
                let pad = w - cell.chars().count();
                // Text columns left-aligned, numbers right-aligned.
                if i == 1 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = format!("{}\n\n{}\n", title(report), line(&header));
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    out.push_str(&rule.join("  "));
    out.push('\n');
    let mut previous = None;
    for (r, cells) in report.results.iter().zip(&rows) {
        if previous.is_some_and(|l| l != r.length) {
            out.push('\n');
        }
        previous = Some(r.length);
        out.push_str(&line(cells));
        out.push('\n');
    }
    out.push('\n');
    for note in notes(report) {
        out.push_str(&note);
        out.push('\n');
    }
    out
}

/// GitHub markdown: the title as a paragraph, the table, the notes.
pub fn render_markdown(report: &ProfileReport) -> String {
    let end2end = report.run.command == "end2end";
    let header = columns(end2end);
    let mut out = format!("{}\n\n| {} |\n|", title(report), header.join(" | "));
    for (i, _) in header.iter().enumerate() {
        out.push_str(if i < 2 { " --- |" } else { " ---: |" });
    }
    out.push('\n');
    for r in &report.results {
        let cells: Vec<String> = row(report, r).iter().map(|c| md_escape(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push('\n');
    for note in notes(report) {
        out.push_str(&format!("{}  \n", md_escape(&note)));
    }
    out
}

/// Escapes the characters markdown would read as emphasis or cell breaks.
fn md_escape(text: &str) -> String {
    text.replace('|', "\\|").replace('*', "\\*")
}
