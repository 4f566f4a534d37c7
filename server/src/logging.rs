//! Logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`); colour codes only
//! when stderr is a terminal, so files, pipes and container logs get plain text.

use std::io::IsTerminal;

pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
