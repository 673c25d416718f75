//! The `wasmnode` binary: parses the command line, sets up logging and
//! dispatches to the command. Errors end here as one line on stderr.

mod agent;
mod api;
mod cli;
mod commands;
mod config;
mod console;
mod events;
mod facts;
mod files;
mod identity;
mod job;
mod mcp;
mod metrics;
mod node;
mod receipts;
mod scheduler;
mod secrets;
mod store;
mod telemetry;
mod usage;
mod vera;

use clap::Parser;
use cli::{Cli, Command, ReceiptCommand, StoreCommand, ToolCommand};
use std::process::ExitCode;

/// The 64-bit static (musl) builds allocate with mimalloc: musl's malloc
/// serialises every thread's allocations on one lock.
#[cfg(all(target_env = "musl", target_pointer_width = "64"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's defaults keep what a node frees: an idle node held 65 MB
/// against musl's 43 MB. Returning freed pages at once and committing arenas
/// only as they are used gives musl's idle size back at mimalloc's speed
/// (docs/BENCHMARKS.md, "The static binary's allocator"). The option numbers
/// are mimalloc's `mi_option_e`, kept stable across its versions.
#[cfg(all(target_env = "musl", target_pointer_width = "64"))]
fn return_freed_memory_at_once() {
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: called first in main, before the node starts any other thread.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}

fn main() -> ExitCode {
    #[cfg(all(target_env = "musl", target_pointer_width = "64"))]
    return_freed_memory_at_once();
    // Past a file-size limit (RLIMIT_FSIZE) a write should fail, and the
    // store degrade and heal, rather than the kernel kill the node.
    // SAFETY: setting a signal's disposition to "ignore" before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    facts::tune_allocator();
    let cli = Cli::parse();
    if let Err(e) = telemetry::init(cli.log_format, &cli.log) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("error: {e:#}");
            // A damaged store is not fixed by restarting: tell a supervisor
            // (systemd's RestartPreventExitStatus=2) to stop trying. A
            // command line the command cannot use exits 2, as clap's own.
            let damaged = matches!(
                e.downcast_ref::<store::StoreError>(),
                Some(store::StoreError::Damaged { .. })
            );
            if damaged || e.is::<commands::UsageError>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let config_file = cli.config.as_deref();
    let printed = match cli.command {
        Command::Serve(args) => commands::serve::execute(config_file, args).await?,
        Command::Agent(args) => commands::agent::execute(config_file, args).await?,
        Command::Run(args) => commands::run::execute(config_file, args).await?,
        Command::Tool(ToolCommand::Run(args)) => commands::tool::run(config_file, args).await?,
        Command::Tool(ToolCommand::Inspect(args)) => {
            commands::tool::inspect(config_file, args).await?
        }
        Command::Tool(ToolCommand::List(args)) => commands::tool::list(config_file, args).await?,
        Command::Tool(ToolCommand::New(args)) => commands::scaffold::new(args)?,
        Command::Tool(ToolCommand::Test(args)) => {
            commands::tool_test::test(config_file, args).await?
        }
        Command::Tool(ToolCommand::Keygen(args)) => commands::trust::keygen(args)?,
        Command::Tool(ToolCommand::Sign(args)) => commands::trust::sign(config_file, args).await?,
        Command::Tool(ToolCommand::Verify(args)) => {
            commands::trust::verify(config_file, args).await?
        }
        Command::Tool(ToolCommand::Push(args)) => commands::registry::push(args).await?,
        Command::Tool(ToolCommand::Pull(args)) => commands::registry::pull(args).await?,
        Command::Wit(args) => commands::scaffold::wit(args)?,
        Command::Mcp(args) => commands::mcp::execute(config_file, args).await?,
        Command::Store(StoreCommand::Check(args)) => commands::store::check(config_file, &args)?,
        Command::Store(StoreCommand::Repair(args)) => commands::store::repair(config_file, &args)?,
        Command::Drain(args) => commands::drain::execute(config_file, args).await?,
        Command::Precompile(args) => commands::precompile::execute(config_file, &args)?,
        Command::Identity(args) => commands::receipt::identity(config_file, args)?,
        Command::Receipt(ReceiptCommand::Verify(args)) => {
            commands::receipt::verify(config_file, args)?
        }
        Command::Replay(args) => commands::replay::execute(config_file, args).await?,
        Command::Config(args) => {
            let config = commands::load_config(config_file, &args.flags())?;
            commands::out(&config.to_masked_toml());
            commands::Printed { status: 0 }
        }
    };
    Ok(printed.status)
}
