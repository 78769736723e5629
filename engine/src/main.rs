//! The `hearth` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hearth",
    version,
    about = "Run GGUF language models on your own hardware."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a GGUF file holds: model, hyper-parameters, tokenizer, tensors.
    Info {
        /// The GGUF model file.
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also list every metadata key with its type and value.
        #[arg(long, short = 'm')]
        metadata: bool,
    },
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Info {
            model,
            json,
            metadata,
        } => {
            let g = hearth_gguf::open(&model).map_err(|e| match e {
                // An I/O error already names the file.
                hearth_gguf::GgufError::Io { .. } => e.to_string(),
                e => format!("{}: {e}", model.display()),
            })?;
            let summary = hearth::info::Summary::new(&g);
            if json {
                println!("{}", serde_json::to_string_pretty(&summary.to_json())?);
            } else {
                print!("{}", summary.to_text(metadata));
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth: error: {e}");
            ExitCode::FAILURE
        }
    }
}
