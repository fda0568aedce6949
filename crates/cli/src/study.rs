//! `saelab study`: plan and run a whole study from one TOML spec (a path or
//! a preset name; default: the quick preset), with one overall progress bar
//! over each stage's own.

use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use saelab_study::exec::{self, LocalExecutor, Progress, RunOptions};
use saelab_study::plan::Stage;
use saelab_study::{presets, status};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(clap::Args, Debug)]
pub struct StudyArgs {
    #[command(subcommand)]
    pub cmd: Option<StudyCmd>,
}

#[derive(clap::Subcommand, Debug)]
pub enum StudyCmd {
    /// List the stages of a study: kind, hash, state (done / partial / to run), estimated time.
    Plan {
        /// Spec file or preset name (smoke, quick, study-smollm2, study-gpt2).
        #[arg(default_value = presets::DEFAULT_PRESET)]
        spec: String,
        /// Machine-readable output (schema saelab.plan.v1, see the README).
        #[arg(long)]
        json: bool,
    },
    /// Run what is missing (or one stage), then write results.json.
    Run {
        /// Spec file or preset name (smoke, quick, study-smollm2, study-gpt2).
        #[arg(default_value = presets::DEFAULT_PRESET)]
        spec: String,
        /// Run only this stage (hash or its first 16 digits), whose inputs are complete.
        #[arg(long)]
        stage: Option<String>,
    },
    /// Rebuild results.json and report.html from the finished stages (runs nothing),
    /// or, with --results, the report of a results file alone.
    Report {
        /// Spec file or preset name (smoke, quick, study-smollm2, study-gpt2).
        #[arg(default_value = presets::DEFAULT_PRESET)]
        spec: String,
        /// Build report.html and findings.md from this results.json (or .json.gz)
        /// instead; the spec is not read.
        #[arg(long)]
        results: Option<std::path::PathBuf>,
        /// Folder for the report built from --results [default: the file's folder].
        #[arg(long, requires = "results")]
        out: Option<std::path::PathBuf>,
    },
    /// Write a slim, gzip-compressed copy of a results.json (tables, ratios,
    /// curves and findings kept; per-feature arrays, UMAP points and histograms dropped).
    Slim {
        /// The results.json to copy.
        results: std::path::PathBuf,
        /// The copy (conventionally `….json.gz`).
        out: std::path::PathBuf,
    },
}

pub fn run(a: &StudyArgs) -> Result<()> {
    match &a.cmd {
        None => run_spec(presets::DEFAULT_PRESET, None),
        Some(StudyCmd::Plan { spec, json }) => plan(spec, *json),
        Some(StudyCmd::Run { spec, stage }) => run_spec(spec, stage.clone()),
        Some(StudyCmd::Report { spec, results, out }) => match results {
            Some(file) => report_file(file, out.as_deref()),
            None => report(spec),
        },
        Some(StudyCmd::Slim { results, out }) => {
            saelab_results::slim_copy(results, out)?;
            println!("slim copy: {}", out.display());
            Ok(())
        }
    }
}

fn report_file(file: &std::path::Path, out: Option<&std::path::Path>) -> Result<()> {
    let dir = out
        .map(std::path::Path::to_path_buf)
        .or_else(|| file.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default();
    let page = saelab_report::study::render_file(file, &dir)?;
    println!("report: {}", page.display());
    Ok(())
}

fn report(spec: &str) -> Result<()> {
    let spec = presets::load(spec)?;
    let (results, report) = exec::report(&spec, &exec::Quiet)?;
    println!("results: {}", results.display());
    println!("report: {}", report.display());
    Ok(())
}

fn plan(spec: &str, json: bool) -> Result<()> {
    let spec = presets::load(spec)?;
    let plan = saelab_study::plan::plan(&spec)?;
    let view = status::view(&plan, &saelab_study::cache::Cache::new(spec.cache_dir()));
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", status::table(&view));
    }
    Ok(())
}

fn run_spec(spec_arg: &str, stage: Option<String>) -> Result<()> {
    let spec = presets::load(spec_arg)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&stop);
        let _ = ctrlc::set_handler(move || {
            eprintln!("\nstopping: harvest and train checkpoint now, an analysis stage finishes first; run the same command again to continue");
            flag.store(true, Ordering::SeqCst)
        });
    }
    let bars = Bars::new();
    let opts = RunOptions {
        stage,
        ..RunOptions::default()
    };
    let summary = exec::run(&spec, &opts, &LocalExecutor, &bars, &stop)?;
    bars.finish();
    eprintln!(
        "study {}: {} stage(s) run, {} already done, {}",
        spec.name,
        summary.ran,
        summary.skipped,
        status::human_seconds(summary.seconds)
    );
    match &summary.results {
        Some(p) => {
            println!("results: {}", p.display());
            println!(
                "report: {}",
                summary
                    .study_dir
                    .join(saelab_report::study::REPORT_FILE)
                    .display()
            );
        }
        None => println!("stage done; study folder {}", summary.study_dir.display()),
    }
    Ok(())
}

/// One overall bar (stages) over the running stage's bar.
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    stage: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn new() -> Bars {
        let multi = MultiProgress::new();
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "study [{elapsed_precise}] {bar:30} {pos}/{len} stages  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bars {
            multi,
            overall,
            stage: Mutex::new(None),
        }
    }

    fn finish(&self) {
        self.overall.finish_and_clear();
    }
}

impl Progress for Bars {
    fn stage_started(&self, index: usize, total: usize, stage: &Stage) {
        self.overall.set_length(total as u64);
        self.overall.set_position(index as u64);
        self.overall.set_message(format!(
            "{} {}",
            stage.kind,
            saelab_study::identity::short(&stage.hash)
        ));
        let bar = self.multi.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template(
                "  {msg:<8} {bar:30} {human_pos}/{human_len}  {per_sec}  ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(stage.kind.clone());
        if let Ok(mut s) = self.stage.lock() {
            *s = Some(bar);
        }
    }

    fn stage_progress(&self, done: u64, total: u64, _unit: &str) {
        if let Ok(s) = self.stage.lock() {
            if let Some(b) = s.as_ref() {
                b.set_length(total);
                b.set_position(done);
            }
        }
    }

    fn stage_finished(&self, stage: &Stage, seconds: f64, _skipped: bool) {
        if let Ok(mut s) = self.stage.lock() {
            if let Some(b) = s.take() {
                b.finish_and_clear();
            }
        }
        self.overall.inc(1);
        let _ = self.multi.println(format!(
            "{:<8} {}  {}",
            stage.kind,
            saelab_study::identity::short(&stage.hash),
            status::human_seconds(seconds)
        ));
    }

    fn note(&self, text: &str) {
        let _ = self.multi.println(text);
    }
}
