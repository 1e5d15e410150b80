//! How output looks: the `--output` format and the `--color` choice.

use clap::ValueEnum;

/// `--output`: a live view, one line per event, or NDJSON events on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Tty,
    Plain,
    Json,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}
