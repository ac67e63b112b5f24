use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use hotline_asr::audio;
use hotline_asr::engine::Language;
use hotline_asr::eval::{self, ClipResult};
use hotline_asr::transcribe;
use serde::Serialize;

use crate::cli_asr::RecognizerArgs;

#[derive(Args)]
pub struct EvalArgs {
    /// Tab-separated manifest with file, language and transcript columns.
    manifest: PathBuf,
    /// Print the results as one JSON document.
    #[arg(long)]
    json: bool,
    /// Only clips of this language.
    #[arg(long)]
    only: Option<Language>,
    /// Time each clip this many times and report the median (the first clip also gets
    /// an untimed warm-up run when N > 1).
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    #[command(flatten)]
    recognizer: RecognizerArgs,
}

#[derive(Serialize)]
struct Report<'a> {
    clips: &'a [ClipResult],
    summary: eval::Summary,
    line: String,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let clips = eval::read_manifest(&args.manifest)?;
    let engine = args.recognizer.load_engine()?;
    let mut decoder = engine.decoder()?;
    let mut results = Vec::new();
    for clip in clips {
        if args.only.is_some_and(|l| l != clip.language) {
            continue;
        }
        if clip.language != Language::En && !engine.is_multilingual() {
            tracing::info!(file = %clip.file.display(), "skipped: English-only model");
            continue;
        }
        let audio = audio::decode_file(&clip.file)?;
        let opts = args.recognizer.options(clip.language);
        if args.repeat > 1 && results.is_empty() {
            let samples = transcribe::front_end(&audio, opts.telephone);
            transcribe::transcribe(&mut decoder, &samples, &opts, &mut |_, _| {})?;
        }
        let mut times = Vec::new();
        let mut segments = Vec::new();
        for _ in 0..args.repeat.max(1) {
            let started = Instant::now();
            let samples = transcribe::front_end(&audio, opts.telephone);
            segments = transcribe::transcribe(&mut decoder, &samples, &opts, &mut |_, _| {})?;
            times.push(started.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let seconds = times[times.len() / 2];
        let sep = if clip.language == Language::En {
            " "
        } else {
            ""
        };
        let hypothesis = segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(sep);
        let (errors, reference_len) = eval::score(clip.language, &clip.transcript, &hypothesis);
        let r = ClipResult {
            file: clip
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            language: clip.language.code(),
            reference: clip.transcript.clone(),
            hypothesis,
            errors,
            reference_len,
            error_rate: errors as f64 / reference_len.max(1) as f64,
            audio_s: audio.duration_s(),
            seconds,
        };
        if !args.json {
            println!(
                "{}\t{}\t{} {:.3}\t{:.2}s\t{}",
                r.file,
                r.language,
                if r.language == "en" { "WER" } else { "CER" },
                r.error_rate,
                r.seconds,
                r.hypothesis
            );
        }
        results.push(r);
    }
    let summary = eval::summarize(&results);
    let line = summary.line();
    if args.json {
        let report = Report {
            clips: &results,
            summary,
            line,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{line}");
    }
    Ok(())
}
