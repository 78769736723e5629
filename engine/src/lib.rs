//! Hearth's engine: model loading and the `hearth` command's subcommands.
pub mod info;
