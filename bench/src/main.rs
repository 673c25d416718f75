//! `wasmnode-bench`: the performance suite. Every row is a figure measured
//! side by side with its baseline in the same run; the table is printed and
//! written (with the machine's description) to `docs/BENCHMARKS.md`.
//!
//! `make bench` builds everything in release and runs it; `--smoke` runs
//! every section with tiny counts to prove it works (part of `make test`).

mod api;
mod cancel;
mod containers;
mod dispatch;
mod edge;
mod machine;
mod mcp;
mod plugins;
mod python;
mod report;
mod retrieval;
mod sandbox;

use clap::Parser;
use report::{Row, markdown, text_table};
use std::path::PathBuf;

/// wasmnode's benchmarks.
#[derive(Debug, Parser)]
struct Args {
    /// Tiny counts: check that every benchmark runs, not how fast.
    #[arg(long)]
    smoke: bool,
    /// Write the Markdown report here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The wasmnode binary to start (default: the one built beside this one).
    #[arg(long, value_name = "PATH")]
    wasmnode: Option<PathBuf>,
    /// An aarch64 build, timed under qemu-aarch64-static (section 10).
    #[arg(long, value_name = "PATH")]
    aarch64: Option<PathBuf>,
    /// The static x86_64 musl build, as `make release` ships it: section 2
    /// runs its sustained throughput beside --wasmnode's.
    #[arg(long, value_name = "PATH")]
    musl: Option<PathBuf>,
    /// Run only these sections (e.g. `--only 2,5`) and print their rows;
    /// a partial run writes no report.
    #[arg(long, value_delimiter = ',', value_name = "N", value_parser = clap::value_parser!(u8).range(1..=10))]
    only: Vec<u8>,
    /// Internal: one process of section 1's two-process row.
    #[arg(long, hide = true, value_name = "N")]
    trivial_worker: Option<usize>,
}

/// Counts for one run.
struct Counts {
    trivial: usize,
    file_reads: usize,
    containers: usize,
    retrieval_sizes: Vec<usize>,
    retrieval_repeats: usize,
    latency_jobs: usize,
    throughput_jobs: usize,
    dispatch_tasks: usize,
    cancels: usize,
    python_runs: usize,
    edge_jobs: usize,
}

impl Counts {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                trivial: 20,
                file_reads: 5,
                containers: 1,
                retrieval_sizes: vec![200],
                retrieval_repeats: 1,
                latency_jobs: 5,
                throughput_jobs: 20,
                dispatch_tasks: 2,
                cancels: 2,
                python_runs: 2,
                edge_jobs: 8,
            }
        } else {
            Self {
                trivial: 50_000,
                file_reads: 200,
                containers: 10,
                retrieval_sizes: vec![10_000, 100_000],
                retrieval_repeats: 5,
                latency_jobs: 500,
                throughput_jobs: 10_000,
                dispatch_tasks: 20,
                cancels: 10,
                python_runs: 50,
                edge_jobs: 1_000,
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(n) = args.trivial_worker {
        return sandbox::trivial_worker(n);
    }
    let binary = args.wasmnode.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .expect("current exe")
            .with_file_name("wasmnode")
    });
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: build wasmnode first",
        binary.display()
    );
    // SAFETY: set before any thread exists; the e2e helpers read it to start nodes.
    unsafe { std::env::set_var("WASMNODE_BIN", &binary) };
    let counts = Counts::new(args.smoke);

    anyhow::ensure!(
        args.only.is_empty() || args.out.is_none(),
        "--only runs part of the suite, which must not replace the report: drop --out"
    );
    let wants = |section: u8| args.only.is_empty() || args.only.contains(&section);
    let mut rows: Vec<Row> = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if wants(1) {
        eprintln!("1/10 instantiate + run ...");
        rows.extend(sandbox::instantiate_and_run(counts.trivial)?);
    }
    let api_rows = if wants(2) || wants(7) {
        eprintln!("2/10 API end to end (and 7 footprint) ...");
        runtime.block_on(api::end_to_end(
            counts.latency_jobs,
            counts.throughput_jobs,
            &binary,
            args.musl.as_deref(),
        ))?
    } else {
        Vec::new()
    };
    let in_section = |row: &Row, section: char| row.section.starts_with(section);
    if wants(2) {
        rows.extend(api_rows.iter().filter(|r| in_section(r, '2')).cloned());
    }
    if wants(3) {
        eprintln!(
            "3/10 file_read: wasm tool vs container per call (over MCP, a plugin by its size) ..."
        );
        let files = tempfile::tempdir()?;
        std::fs::write(files.path().join("file.bin"), vec![b'x'; 4096])?;
        rows.extend(runtime.block_on(mcp::round_trip(
            &files.path().canonicalize()?,
            counts.file_reads,
            &binary,
        ))?);
        rows.extend(runtime.block_on(plugins::call_by_size(
            &files.path().canonicalize()?,
            counts.file_reads,
        ))?);
        let wasm = sandbox::file_read(files.path(), counts.file_reads)?;
        rows.extend(containers::file_read(
            files.path(),
            &wasm,
            counts.containers,
        )?);
    }
    if wants(4) {
        eprintln!("4/10 Docker job overhead ...");
        rows.extend(containers::job_overhead(counts.containers)?);
    }
    if wants(5) {
        eprintln!("5/10 retrieval (and its index cache) ...");
        rows.extend(retrieval::rows(
            &counts.retrieval_sizes,
            counts.retrieval_repeats,
        )?);
    }
    if wants(6) {
        eprintln!("6/10 control-plane dispatch ...");
        rows.extend(runtime.block_on(dispatch::latency(counts.dispatch_tasks))?);
    }
    if wants(7) {
        rows.extend(api_rows.into_iter().filter(|r| in_section(r, '7')));
    }
    if wants(8) {
        eprintln!("8/10 cancellation ...");
        rows.extend(cancel::latency(counts.cancels)?);
    }
    if wants(9) {
        eprintln!("9/10 Python sandbox ...");
        rows.extend(python::rows(counts.python_runs)?);
    }
    if wants(10) {
        eprintln!("10/10 edge ...");
        rows.extend(runtime.block_on(edge::profile_memory(counts.edge_jobs))?);
        rows.extend(edge::first_task_under_qemu(args.aarch64.as_deref())?);
    }

    println!("{}", text_table(&rows));
    let command = if args.smoke {
        "wasmnode-bench --smoke"
    } else {
        "wasmnode-bench"
    };
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut report = markdown(&rows, &machine::facts(), command);
        let previous = std::fs::read_to_string(out).unwrap_or_default();
        if let Some(notes) = report::notes(&previous) {
            report.push('\n');
            report.push_str(notes);
        }
        std::fs::write(out, report)?;
        eprintln!("wrote {}", out.display());
    }
    if args.smoke && args.only.is_empty() {
        anyhow::ensure!(rows.len() >= 28, "a section produced no rows");
    }
    Ok(())
}
