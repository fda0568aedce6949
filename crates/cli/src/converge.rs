//! `saelab converge`: how far training runs are from convergence, as the
//! seed-pair overlap of their decoder features against training tokens
//! (from the snapshots `saelab train --snapshot-tokens` saves). The work is
//! `saelab_analysis::convergence`; the figure and table are
//! `saelab_report::recipes::convergence`.

use anyhow::{Context, Result};
use saelab_analysis::convergence::{measure, ConvergenceOptions};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ConvergeArgs {
    /// `saelab train` output folders, each with two or more seeds of the
    /// same SAE (finished or still running: saved snapshots are measured).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Matching threshold τ.
    #[arg(long, default_value_t = 0.7)]
    pub threshold: f32,
    /// Skip the one-to-one assignment ratio (a LAP solve per point).
    #[arg(long)]
    pub no_assignment: bool,
    /// Output folder for convergence.{json,md,svg}.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: &ConvergeArgs) -> Result<()> {
    let opts = ConvergenceOptions {
        threshold: a.threshold,
        assignment: !a.no_assignment,
    };
    let table = measure(&a.runs, &opts)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let paths =
        saelab_report::recipes::convergence::write(&table, &a.out).map_err(anyhow::Error::msg)?;
    print!("{}", saelab_report::recipes::convergence::markdown(&table));
    for p in paths {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}
