//! `hotline`: the 12345 hotline voice gateway's command line.

mod cli_asr;
mod cli_calls;
mod cli_eval;
mod cli_model;
mod cli_serve;
mod cli_transcribe;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hotline",
    version,
    about = "Voice gateway for 12345 government service hotlines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import, fetch and list whisper models.
    Model(cli_model::ModelArgs),
    /// Transcribe audio files (wav, mp3, flac, ogg).
    Transcribe(cli_transcribe::TranscribeArgs),
    /// Measure accuracy (CER/WER) and speed over a manifest of reference clips.
    Eval(cli_eval::EvalArgs),
    /// Run the gateway: SIP over UDP and TCP, the call store, the HTTP API.
    Serve(cli_serve::ServeArgs),
    /// List recorded calls, or show one (`calls show ID`).
    Calls(cli_calls::CallsArgs),
}

fn main() -> std::process::ExitCode {
    // Logs go to stderr so that stdout carries only results.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOTLINE_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,hotline=info,hotline_gateway=info")
            }),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Model(a) => cli_model::run(a),
        Command::Transcribe(a) => cli_transcribe::run(a),
        Command::Eval(a) => cli_eval::run(a),
        Command::Serve(a) => cli_serve::run(a),
        Command::Calls(a) => cli_calls::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hotline: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
