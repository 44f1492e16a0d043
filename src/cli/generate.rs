//! `sdtp generate`: prompt in, streamed text out, timings on stderr.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{ModelArgs, PruneArgs, Session};
use sdtp::device::synchronize;
use sdtp::generate::{generate, SamplingConfig};
use sdtp::model::text::{apply_chat_template, TokenStreamer};
use sdtp::prefill::{check_prompt, prefill_with_pruning, PrefillOptions};
use sdtp::prune_log::{new_run_id, PruneLog};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub prune: PruneArgs,
    /// The prompt text. Without --prompt or --prompt-file the prompt is read from stdin.
    #[arg(long, conflicts_with = "prompt_file")]
    pub prompt: Option<String>,
    /// A file holding the prompt text.
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// Wrap the prompt in the model's chat template (ChatML for SmolLM2).
    #[arg(long)]
    pub chat: bool,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long)]
    pub top_k: Option<usize>,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let mut sampling = SamplingConfig {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.model.seed,
    };
    sampling.validate()?;
    let text = read_prompt(&args)?;
    let (session, schedules) = Session::open(&args.model, &[&args.prune])?;
    let schedule = &schedules[0];
    let loaded = &session.loaded;
    let model = &loaded.model;
    let prompt = if args.chat {
        let template = loaded
            .chat_template
            .as_deref()
            .context("--chat: this model has no chat template")?;
        apply_chat_template(template, &text, &loaded.bos_token, &loaded.eos_token)?
    } else {
        text
    };
    let input_ids = loaded.codec.encode(&prompt)?;
    check_prompt(model, input_ids.len())?;
    let mut scorer = session.scorer(schedule)?;

    synchronize(model.device())?;
    let started = Instant::now();
    let prefill = prefill_with_pruning(
        model,
        &input_ids,
        schedule,
        scorer.as_mut(),
        &PrefillOptions::default(),
    )?;
    synchronize(model.device())?;
    let prefill_secs = started.elapsed().as_secs_f64();
    let final_len = prefill.final_len();
    if !args.prune.no_prune_log {
        PruneLog::open(&args.prune.prune_log)?.append_prefill(
            &new_run_id(),
            &session.model_name(),
            &prefill,
        )?;
    }

    sampling.seed = session.seed;
    let mut streamer = TokenStreamer::default();
    let mut stdout = std::io::stdout().lock();
    let decoded = generate(
        model,
        &input_ids,
        prefill,
        &sampling,
        args.max_new_tokens,
        &loaded.eos_token_ids,
        |id| {
            // The end-of-sequence token ends the answer; it is not part of it.
            if loaded.eos_token_ids.contains(&id) {
                return Ok(());
            }
            if let Some(piece) = streamer.push(&loaded.codec, id)? {
                stdout.write_all(piece.as_bytes())?;
                stdout.flush()?;
            }
            Ok(())
        },
    )?;
    writeln!(stdout)?;
    let n = decoded.tokens.len();
    eprintln!(
        "prefill: {} tokens ({} reached the last layer, schedule {}) in {:.1} ms ({:.1} tok/s)",
        input_ids.len(),
        final_len,
        schedule.name,
        prefill_secs * 1e3,
        input_ids.len() as f64 / prefill_secs
    );
    eprintln!(
        "decode: {n} tokens in {:.1} ms ({:.1} tok/s){}",
        decoded.decode_secs * 1e3,
        n.saturating_sub(1) as f64 / decoded.decode_secs.max(1e-9),
        if decoded.stopped_at_eos {
            ", stopped at end of sequence"
        } else if decoded.stopped_at_context {
            ", stopped: context full"
        } else {
            ""
        }
    );
    Ok(())
}

fn read_prompt(args: &GenerateArgs) -> Result<String> {
    let text = match (&args.prompt, &args.prompt_file) {
        (Some(p), _) => p.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read prompt file {}", path.display()))?,
        (None, None) => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("no prompt: pass --prompt TEXT, --prompt-file PATH, or pipe the prompt on stdin");
            }
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .context("cannot read the prompt from stdin")?;
            text
        }
    };
    if text.trim().is_empty() {
        bail!("empty prompt: give some text with --prompt, --prompt-file or stdin");
    }
    Ok(text)
}
