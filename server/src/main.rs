//! `server`: serves exported models over TensorFlow Serving's gRPC API (see `server --help`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use server::cli::Options;

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: no new connections; finishing requests in flight");
}

/// A line on stdout for whoever started the server (`--port 0` picks the port); a closed or
/// broken stdout is no reason to stop serving.
fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

async fn run(options: Options) -> anyhow::Result<()> {
    let address = format!("{}:{}", options.host, options.port);
    let listener = tokio::net::TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))?;
    let local = listener.local_addr()?;
    tracing::info!("gRPC listening on {local}");
    announce(&format!("listening on {local}"));
    let rest = match options.rest_api_port {
        0 => None,
        port => {
            let address = format!("{}:{port}", options.host);
            let rest = tokio::net::TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))?;
            let local = rest.local_addr()?;
            tracing::info!("REST listening on {local}");
            announce(&format!("REST listening on {local}"));
            Some(rest)
        }
    };
    server::serve(options, listener, rest, shutdown_signal()).await
}

fn main() -> ExitCode {
    // SAFETY: no other thread exists yet.
    unsafe { engine::gpu::quiet_vulkan_loader() };
    server::memory::return_freed_memory_to_the_system();
    server::logging::init();
    let options = Options::parse();
    if let Err(e) = engine::cpu::threads::configure(None) {
        eprintln!("server: error: cannot start the engine's threads: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
