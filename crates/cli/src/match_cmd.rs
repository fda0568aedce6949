//! `saelab match`: feature matching between SAEs (SPEC §5, issue #4). Flag
//! parsing and printing only; the work is in
//! [`saelab_analysis::matching::grid`] (files, tables) and the figures in
//! [`saelab_report::recipes::matching`].
//!
//! Pair mode, `saelab match A B --out DIR` (A = reference, B = query):
//! `match.json`, `summary.csv`, `top_<kind>_<unit>_<direction>.csv`,
//! `assignment_*.csv` with `--assignment` (see
//! [`saelab_analysis::matching::grid::files`]) and
//! `hist_<kind>_<unit>_<direction>.svg`: Top-1..Top-n cosine histograms,
//! one panel per rank, with τ marked (the study's Figure 11).
//! `--neurons` needs equal dictionary sizes n: an error in pair mode.
//!
//! Grid mode, `saelab match --grid DIR DIR… [--grid-file list.toml] --out
//! DIR`: every unordered pair once, each SAE loaded once, pairs one after
//! the other; `--neurons` is skipped with a note for pairs of different n.
//! `grid.json`, `ratios.csv`, `table1.csv` (the study's Table 1),
//! `table2.csv` (Table 2), and `heatmap.svg`: R(row←column), grey diagonal
//! (Figure 13), from decoder features (encoder with `--vectors encoder`).
//!
//! Grid file (TOML; relative paths are relative to the file):
//! `saes = ["runs/a", { path = "runs/b", label = "L8" }]`.

use anyhow::{bail, Context, Result};
use saelab_analysis::matching::grid::{self, GridReport, GridSae, Setting, Table1Row};
use saelab_analysis::matching::{
    compare, AssignmentPath, Direction, MatchOptions, MatchReport, VectorSelection,
};
use saelab_report::recipes::matching::{
    histogram_title, ratio_heatmap, top_n_histograms, RankHistogram, RatioMatrix, TopNHistograms,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Which feature vectors `--vectors` selects.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vectors {
    /// Rows of W_dec.
    Decoder,
    /// Columns of W_enc.
    Encoder,
    /// Both (with --assignment also the Paulo & Belrose shared fraction).
    Both,
}

#[derive(clap::Args, Debug)]
pub struct MatchArgs {
    /// SAE directories (ours, SAELens, sparsify): A (reference) and B (query); with --grid two or more.
    pub saes: Vec<PathBuf>,
    /// Compare every pair of the given SAEs: ratio matrix, heatmap, Tables 1 and 2.
    #[arg(long)]
    pub grid: bool,
    /// TOML list of SAEs for grid mode (`saes = ["dir", {path = "dir", label = "L8"}]`); implies --grid.
    #[arg(long = "grid-file")]
    pub grid_file: Option<PathBuf>,
    /// Matching threshold τ on the cosine (strict >).
    #[arg(long, default_value_t = 0.7)]
    pub threshold: f32,
    /// Neighbours per query in the top-n profile.
    #[arg(long = "top-n", default_value_t = 4)]
    pub top_n: usize,
    /// Feature vectors to compare.
    #[arg(long, value_enum, default_value = "decoder")]
    pub vectors: Vectors,
    /// Also compare neuron vectors (needs equal dictionary sizes n).
    #[arg(long)]
    pub neurons: bool,
    /// Exact one-to-one assignment (R_H; with --vectors both the shared fraction).
    #[arg(long)]
    pub assignment: bool,
    /// Seed of the Monte Carlo chance level.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Bins of the Top-n histograms over [−1, 1].
    #[arg(long = "hist-bins", default_value_t = 200)]
    pub hist_bins: usize,
    /// Random queries of the Monte Carlo chance level.
    #[arg(long = "chance-queries", default_value_t = 256)]
    pub chance_queries: usize,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: &MatchArgs) -> Result<()> {
    // Two runs into one folder would overwrite each other's files.
    let _lock = saelab_fsio::DirLock::acquire(&a.out)?;
    if a.grid || a.grid_file.is_some() {
        return run_grid(a);
    }
    if a.saes.len() != 2 {
        bail!(
            "give two SAE directories A B (got {}), or --grid with two or more",
            a.saes.len()
        );
    }
    run_pair(a, &a.saes[0], &a.saes[1])
}

fn options(a: &MatchArgs, labels: (String, String), neurons: bool) -> MatchOptions {
    MatchOptions {
        threshold: a.threshold,
        top_n: a.top_n,
        vectors: match a.vectors {
            Vectors::Decoder => VectorSelection::Decoder,
            Vectors::Encoder => VectorSelection::Encoder,
            Vectors::Both => VectorSelection::Both,
        },
        neurons,
        assignment: a.assignment,
        hist_bins: a.hist_bins,
        chance_queries: a.chance_queries,
        seed: a.seed,
        labels,
        ..MatchOptions::default()
    }
}

// ---------------------------------------------------------------- pair mode

fn run_pair(a: &MatchArgs, da: &Path, db: &Path) -> Result<()> {
    let sa = grid::load_sae(da)?;
    let sb = grid::load_sae(db)?;
    let (la, lb) = (da.display().to_string(), db.display().to_string());
    let (na, nb) = (sa.config().d_sae, sb.config().d_sae);
    if a.neurons && na != nb {
        bail!("--neurons needs equal dictionary sizes: {la} has n = {na}, {lb} has n = {nb}");
    }
    let t0 = std::time::Instant::now();
    let report = compare(&sa, &sb, &options(a, (la.clone(), lb.clone()), a.neurons))
        .with_context(|| format!("comparing {la} with {lb}"))?;
    let secs = t0.elapsed().as_secs_f64();
    grid::write_pair(&a.out, &report)?;
    write_histograms(&a.out, &report)?;
    eprint!("{}", human_summary(&report));
    eprintln!("{}: written in {secs:.1} s", a.out.display());
    Ok(())
}

/// `hist_<kind>_<unit>_<direction>.svg` for every comparison and direction.
fn write_histograms(out: &Path, r: &MatchReport) -> Result<()> {
    for c in &r.comparisons {
        for (tag, d) in [("b_in_a", &c.b_in_a), ("a_in_b", &c.a_in_b)] {
            let (kind, unit) = (c.kind.name(), c.unit.name());
            let fig = top_n_histograms(&TopNHistograms {
                title: histogram_title(kind, unit, &d.query, &d.reference, tag),
                threshold: r.threshold,
                histograms: rank_histograms(d),
            });
            let path = out.join(format!("hist_{kind}_{unit}_{tag}.svg"));
            fig.write(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

fn rank_histograms(d: &Direction) -> Vec<RankHistogram<'_>> {
    d.histograms
        .iter()
        .map(|h| RankHistogram {
            rank: h.rank,
            lo: h.lo,
            hi: h.hi,
            counts: &h.counts,
        })
        .collect()
}

fn human_summary(r: &MatchReport) -> String {
    let mut s = format!("A = {} (reference), B = {} (query)\n", r.label_a, r.label_b);
    for c in &r.comparisons {
        let (ba, ab) = (&c.b_in_a, &c.a_in_b);
        let _ = writeln!(
            s,
            "{} {} (n_A {}, n_B {}, dim {}): R(A←B) = {:.4}, R(B←A) = {:.4} at τ {}; \
             MMCS {:.4} / {:.4}; chance {:.4} / {:.4} (Monte Carlo {:.4} / {:.4})",
            c.kind.name(),
            c.unit.name(),
            c.n_a,
            c.n_b,
            c.dim,
            ba.ratio,
            ab.ratio,
            r.threshold,
            ba.mmcs,
            ab.mmcs,
            ba.chance_analytic,
            ab.chance_analytic,
            ba.chance_monte_carlo,
            ab.chance_monte_carlo
        );
        if c.zero_norm_a + c.zero_norm_b > 0 {
            let _ = writeln!(
                s,
                "  zero-norm vectors (cosine 0 with everything): A {}, B {}",
                c.zero_norm_a, c.zero_norm_b
            );
        }
        if let Some(x) = &c.assignment {
            let _ = writeln!(
                s,
                "  assignment: R_H = {:.4}, mean cosine {:.4} over {} pairs; path {}; {}",
                x.fraction_above,
                x.mean_cosine,
                x.pairs,
                path_name(&x.path),
                if x.certificate.certified {
                    format!(
                        "certified optimal (dual gap {:.2e})",
                        x.certificate.dual_gap
                    )
                } else {
                    format!(
                        "NOT certified (max dual violation {:.2e})",
                        x.certificate.max_violation
                    )
                }
            );
        }
    }
    if let Some(sh) = &r.shared {
        let _ = writeln!(
            s,
            "shared (matched > {} under both decoder and encoder): {:.4} ({} of {})",
            sh.threshold, sh.shared, sh.shared_count, sh.denominator
        );
    }
    s
}

fn path_name(p: &AssignmentPath) -> String {
    match p {
        AssignmentPath::Dense {
            fallback: false, ..
        } => "dense".into(),
        AssignmentPath::Dense {
            fallback: true,
            sparse_rounds,
        } => format!("dense fallback after {sparse_rounds} sparse round(s)"),
        AssignmentPath::Sparse {
            m, rounds, edges, ..
        } => format!("sparse (m {m}, {rounds} round(s), {edges} edges)"),
    }
}

// ---------------------------------------------------------------- grid mode

fn run_grid(a: &MatchArgs) -> Result<()> {
    let mut entries: Vec<(PathBuf, Option<String>)> =
        a.saes.iter().map(|p| (p.clone(), None)).collect();
    if let Some(f) = &a.grid_file {
        entries.extend(read_grid_file(f)?);
    }
    if entries.len() < 2 {
        bail!(
            "--grid needs at least 2 SAE directories (got {})",
            entries.len()
        );
    }
    let saes = GridSae::load_all(&entries)?;
    let t0 = std::time::Instant::now();
    let opts = options(a, Default::default(), a.neurons);
    let report = grid::grid_with_progress(&saes, &opts, |p| {
        let r = &p.pair.result;
        eprintln!(
            "[{}/{}] {} vs {}: R(A←B) {:.4}, R(B←A) {:.4}; differs in {}",
            p.done,
            p.total,
            r.label_a,
            r.label_b,
            r.ratio_a_from_b(),
            r.ratio_b_from_a(),
            differs_text(&p.pair.differs)
        );
    })?;
    grid::write_grid(&a.out, &report)?;
    write_heatmap(&a.out, &report)?;
    eprint!(
        "{}",
        table1_summary(&grid::table1(&report.saes, &report.results())?)
    );
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    eprintln!(
        "{}: {} SAEs, {} pairs in {:.1} s",
        a.out.display(),
        report.saes.len(),
        report.pairs.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn write_heatmap(out: &Path, g: &GridReport) -> Result<()> {
    let labels: Vec<String> = g.saes.iter().map(|s| s.label.clone()).collect();
    let values = grid::ratio_matrix(&g.saes, &g.results())?;
    let hm = ratio_heatmap(&RatioMatrix {
        labels: &labels,
        values: &values,
        vectors: g.kind.name(),
        threshold: g.threshold,
    });
    let path = out.join("heatmap.svg");
    hm.write(&path)
        .with_context(|| format!("writing {}", path.display()))
}

fn differs_text(d: &[Setting]) -> String {
    if d.is_empty() {
        "no recorded setting".into()
    } else {
        d.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
    }
}

/// Per setting: pairs, min and max of the two ratios (the study's Table 1
/// ranges), for stderr.
fn table1_summary(rows: &[Table1Row]) -> String {
    let mut s = String::new();
    for k in Setting::ALL {
        let rs: Vec<f64> = rows
            .iter()
            .filter(|r| r.setting == Some(k))
            .flat_map(|r| [r.ratio_a_from_b, r.ratio_b_from_a])
            .collect();
        if rs.is_empty() {
            continue;
        }
        let lo = rs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let _ = writeln!(
            s,
            "Table 1, {}: {} pair(s), ratios {:.1}–{:.1} %",
            k.name(),
            rs.len() / 2,
            100.0 * lo,
            100.0 * hi
        );
    }
    s
}

/// The SAE directories and optional labels of a grid file.
fn read_grid_file(path: &Path) -> Result<Vec<(PathBuf, Option<String>)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: toml::Value =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
    let base = path.parent().unwrap_or(Path::new(""));
    let list = v
        .get("saes")
        .and_then(toml::Value::as_array)
        .with_context(|| format!("{}: expected an array `saes = [...]`", path.display()))?;
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let (p, label) = match item {
            toml::Value::String(s) => (s.as_str(), None),
            toml::Value::Table(t) => (
                t.get("path")
                    .and_then(toml::Value::as_str)
                    .with_context(|| {
                        format!("{}: saes[{i}] has no string `path`", path.display())
                    })?,
                t.get("label")
                    .and_then(toml::Value::as_str)
                    .map(String::from),
            ),
            _ => bail!(
                "{}: saes[{i}] must be a path string or a table {{ path, label }}",
                path.display()
            ),
        };
        let p = PathBuf::from(p);
        out.push((if p.is_absolute() { p } else { base.join(p) }, label));
    }
    Ok(out)
}
