use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use hotline_asr::audio;
use hotline_asr::engine::Language;
use hotline_asr::transcribe::{self, Segment};
use serde::Serialize;

use crate::cli_asr::RecognizerArgs;

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Srt,
}

#[derive(Args)]
pub struct TranscribeArgs {
    /// Audio files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Spoken language: zh, en or auto.
    #[arg(long, default_value = "zh")]
    language: Language,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    #[command(flatten)]
    recognizer: RecognizerArgs,
}

#[derive(Serialize)]
struct FileTranscript<'a> {
    file: String,
    duration_ms: u64,
    segments: &'a [Segment],
}

/// Recordings longer than this get a progress bar on a terminal.
const PROGRESS_AFTER_S: f64 = 60.0;

pub fn run(args: TranscribeArgs) -> anyhow::Result<()> {
    let engine = args.recognizer.load_engine()?;
    let mut decoder = engine.decoder()?;
    let opts = args.recognizer.options(args.language);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for file in &args.files {
        let audio = audio::decode_file(file)?;
        let samples = transcribe::front_end(&audio, opts.telephone);
        let bar = (audio.duration_s() > PROGRESS_AFTER_S && std::io::stderr().is_terminal())
            .then(|| progress_bar(audio.duration_s(), file));
        let mut on_progress = |done: u64, _total: u64| {
            if let Some(b) = &bar {
                b.set_position(done);
            }
        };
        let segments = transcribe::transcribe(&mut decoder, &samples, &opts, &mut on_progress)
            .with_context(|| format!("transcribing {}", file.display()))?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        match args.format {
            Format::Text => {
                for s in &segments {
                    writeln!(out, "{}", s.text)?;
                }
            }
            Format::Json => {
                let doc = FileTranscript {
                    file: file.display().to_string(),
                    duration_ms: (audio.duration_s() * 1000.0).round() as u64,
                    segments: &segments,
                };
                writeln!(out, "{}", serde_json::to_string(&doc)?)?;
            }
            Format::Srt => write!(out, "{}", transcribe::to_srt(&segments))?,
        }
        out.flush()?;
    }
    Ok(())
}

fn progress_bar(duration_s: f64, file: &std::path::Path) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new((duration_s * 1000.0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {percent}% eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(
        file.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    bar
}
