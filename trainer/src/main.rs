//! `trainer`: trains the configurable MNIST CNN from a hyperparameter config, evaluates it on the
//! test set after every epoch, and exports a servable model.

mod batches;
mod checkpoint;
mod cli;
mod evaluate;
mod plot;
mod progress;
mod report;
mod session;
mod train;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // SAFETY: no other thread exists yet.
    unsafe { engine::gpu::quiet_vulkan_loader() };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let cli = cli::Cli::parse();
    // Commands run on a pool worker: the kernels' parallel loops then queue work locally
    // instead of injecting it from outside the pool (a hand-off and an occasional allocation per op).
    let result = cli.compute().configure_threads().and_then(|()| {
        rayon::scope(|_| match &cli.command {
            Some(cli::Command::Evaluate(args)) => evaluate::run(args),
            Some(cli::Command::Train(args)) => train::run(args),
            None => train::run(&cli.train),
        })
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("trainer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
