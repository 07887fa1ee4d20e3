//! The `bazaar` command. See `bazaar --help`; the README has the tour.

#![forbid(unsafe_code)]

mod args;
mod chaos;
mod console;
mod demo;
mod events;
mod faults;
mod load;
mod logs;
mod monolith;
mod probe;
mod procfs;
mod release;
mod remote;
mod report;
mod reset;
mod serve;
mod state;
mod status;
mod storefront;
mod system;
mod table;
mod top;
mod trace;
mod up;

use std::num::NonZeroUsize;
use std::process::ExitCode;

use clap::Parser;

/// Every Bazaar process allocates through mimalloc: a proxied request allocates and frees
/// hundreds of small objects, and with glibc's allocator that was a quarter of the gateway's
/// instructions (measured with callgrind; docs/decisions.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    // One TLS provider for the whole process (reqwest, sqlx): ring, never aws-lc.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A service asked for one worker thread (as `up` runs them) gets the single-threaded
    // scheduler: the same work without work stealing, cross-thread wake-ups or the injection
    // queue's locking (docs/decisions.md).
    let threads = match &cli.command {
        args::Command::Serve(args::ServeArgs { threads, .. }) => threads.map(NonZeroUsize::get),
        _ => None,
    };
    let mut builder = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            args::Command::Up(args) => up::run(args).await,
            args::Command::Serve(args) => serve::run(args).await,
            args::Command::Status(args) => status::run(args).await,
            args::Command::Deploy(args) => release::deploy(args).await,
            args::Command::Rollback(args) => release::rollback(args).await,
            args::Command::Releases(args) => release::releases(args).await,
            args::Command::Faults(args) => faults::run(args).await,
            args::Command::Reset(args) => reset::run(&args),
            args::Command::Events(args) => events::run(args).await,
            args::Command::Trace(args) => trace::run(args).await,
            args::Command::Logs(args) => logs::run(args).await,
            args::Command::Top(args) => top::run(args).await,
            args::Command::Chaos(args) => chaos::run(args).await,
            args::Command::Load(args) => load::run(args).await,
            args::Command::Demo(args) => demo::run(args).await,
            args::Command::Monolith(args) => monolith::run(args).await,
            args::Command::Probe(args) => probe::run(&args).await,
        }
    });
    // Do not wait for blocking readers (a child's watch on its standard input) to finish.
    runtime.shutdown_background();
    code
}
