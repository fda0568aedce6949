//! `saelab match`: feature matching between SAEs (SPEC §5, issue #4), on top
//! of [`saelab_analysis::matching::compare`].
//!
//! Pair mode, `saelab match A B --out DIR` (A = reference, B = query):
//! - `match.json`: the [`MatchReport`] (schema `saelab.match.v1`, documented
//!   in `saelab_analysis::matching`);
//! - `summary.csv`: one line per comparison × direction:
//!   `kind,unit,direction,reference,query,n_ref,n_query,ratio,mmcs,
//!   chance_analytic,chance_monte_carlo,r_h,assignment_mean_cosine,
//!   assignment_path,certified` (the last four empty without
//!   `--assignment`; `direction` is `b_in_a` = queries of B against
//!   reference A, i.e. R(A←B), or `a_in_b`);
//! - `top_<kind>_<unit>_<direction>.csv`: every query's top-n neighbours,
//!   `query,idx_1,cos_1,…,idx_n,cos_n` (indices into the reference);
//! - `assignment_<kind>.csv` (features) / `assignment_<kind>_neurons.csv`
//!   with `--assignment`: `a,b,cosine`, one line per matched pair, by A index;
//! - `hist_<kind>_<unit>_<direction>.svg`: Top-1..Top-n cosine histograms,
//!   one panel per rank, with τ marked (the study's Figure 11).
//!
//! `--neurons` needs equal dictionary sizes n: an error in pair mode.
//!
//! Grid mode, `saelab match --grid DIR DIR… [--grid-file list.toml] --out
//! DIR`: every unordered pair once (both directions come from one
//! [`compare`]), each SAE loaded once, pairs computed one after the other.
//! `--neurons` is skipped with a note for pairs of different n.
//! - `grid.json`: schema `saelab.match_grid.v1`: the SAEs with the settings
//!   read from their configs, the ratio matrix, and per pair the settings
//!   that differ and the full [`MatchReport`];
//! - `ratios.csv` / `heatmap.svg`: R(row←column), rows = reference,
//!   columns = query, empty / grey diagonal (the study's Figure 13), from
//!   decoder features (encoder with `--vectors encoder`);
//! - `table1.csv` (the study's Table 1): pairs that differ in exactly one
//!   setting, grouped by it, then the others as `other`:
//!   `setting,sae_a,sae_b,value_a,value_b,ratio_a_from_b,ratio_b_from_a,mean`;
//! - `table2.csv` (the study's Table 2): pairs that differ only in n:
//!   `sae_small,sae_large,n_small,n_large,n_diff,ratio_small_in_large,
//!   ratio_large_in_small,large_unmatched` (`large_unmatched` = latents of
//!   the large SAE without a match above τ in the small one).
//!
//! Settings compared for the tables, in this order: `dataset` (cfg.json
//! `metadata.dataset_path`), `seed` (`metadata.saelab_train_config.seed`,
//! with `metadata.data_seed` when recorded; SAELens `seed` otherwise), `k`
//! (architecture k), `n` (d_sae), `architecture`, `hook` (hook / layer),
//! `hparams` (the remaining architecture and training hyperparameters,
//! input normalization, steps and batch). A setting unknown for both SAEs
//! counts as equal; known for one only, as different.
//!
//! Grid file (TOML; relative paths are relative to the file):
//! `saes = ["runs/a", { path = "runs/b", label = "L8" }]`.

use crate::eval::write_text;
use anyhow::{bail, Context, Result};
use saelab_analysis::matching::{
    compare, AssignmentPath, Comparison, Direction, MatchOptions, MatchReport, Unit,
    VectorSelection,
};
use saelab_report::{Figure, Heatmap, Panel, Series};
use saelab_sae::{ArchSpec, Sae};
use serde_json::{json, Map, Value};
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

fn load(dir: &Path) -> Result<Sae> {
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    saelab_sae::load_sae(dir)
        .with_context(|| format!("{}: not a loadable SAE directory", dir.display()))
}

fn create_out(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
}

fn write_json(path: &Path, v: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(v)
        .with_context(|| format!("serializing {}", path.display()))?;
    write_text(path, &(text + "\n"))
}

// ---------------------------------------------------------------- pair mode

fn run_pair(a: &MatchArgs, da: &Path, db: &Path) -> Result<()> {
    let sa = load(da)?;
    let sb = load(db)?;
    let (la, lb) = (da.display().to_string(), db.display().to_string());
    let (na, nb) = (sa.config().d_sae, sb.config().d_sae);
    if a.neurons && na != nb {
        bail!("--neurons needs equal dictionary sizes: {la} has n = {na}, {lb} has n = {nb}");
    }
    let t0 = std::time::Instant::now();
    let report = compare(&sa, &sb, &options(a, (la.clone(), lb.clone()), a.neurons))
        .with_context(|| format!("comparing {la} with {lb}"))?;
    let secs = t0.elapsed().as_secs_f64();
    create_out(&a.out)?;
    write_json(&a.out.join("match.json"), &report)?;
    write_text(&a.out.join("summary.csv"), &summary_csv(&report))?;
    for c in &report.comparisons {
        for (tag, d) in [("b_in_a", &c.b_in_a), ("a_in_b", &c.a_in_b)] {
            let stem = format!("{}_{}_{tag}", c.kind.name(), c.unit.name());
            write_text(&a.out.join(format!("top_{stem}.csv")), &top_csv(d))?;
            let fig = histogram_figure(c, d, tag, report.threshold);
            let path = a.out.join(format!("hist_{stem}.svg"));
            fig.write(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(asg) = &c.assignment_pairs {
            let name = match c.unit {
                Unit::Features => format!("assignment_{}.csv", c.kind.name()),
                Unit::Neurons => format!("assignment_{}_neurons.csv", c.kind.name()),
            };
            let mut s = String::with_capacity(asg.pairs.len() * 24 + 16);
            s.push_str("a,b,cosine\n");
            for (&(i, j), &cos) in asg.pairs.iter().zip(&asg.cosines) {
                let _ = writeln!(s, "{i},{j},{cos:.6}");
            }
            write_text(&a.out.join(name), &s)?;
        }
    }
    eprint!("{}", human_summary(&report));
    eprintln!("{}: written in {secs:.1} s", a.out.display());
    Ok(())
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

fn path_kind(p: &AssignmentPath) -> &'static str {
    match p {
        AssignmentPath::Dense {
            fallback: false, ..
        } => "dense",
        AssignmentPath::Dense { fallback: true, .. } => "dense_fallback",
        AssignmentPath::Sparse { .. } => "sparse",
    }
}

fn summary_csv(r: &MatchReport) -> String {
    let mut s = String::from(
        "kind,unit,direction,reference,query,n_ref,n_query,ratio,mmcs,chance_analytic,\
         chance_monte_carlo,r_h,assignment_mean_cosine,assignment_path,certified\n",
    );
    for c in &r.comparisons {
        let asg = match &c.assignment {
            Some(x) => format!(
                "{:.6},{:.6},{},{}",
                x.fraction_above,
                x.mean_cosine,
                path_kind(&x.path),
                x.certificate.certified
            ),
            None => ",,,".into(),
        };
        for (tag, d) in [("b_in_a", &c.b_in_a), ("a_in_b", &c.a_in_b)] {
            let _ = writeln!(
                s,
                "{},{},{tag},{},{},{},{},{:.6},{:.6},{:.6},{:.6},{asg}",
                c.kind.name(),
                c.unit.name(),
                csv_field(&d.reference),
                csv_field(&d.query),
                d.n_ref,
                d.n_query,
                d.ratio,
                d.mmcs,
                d.chance_analytic,
                d.chance_monte_carlo
            );
        }
    }
    s
}

fn top_csv(d: &Direction) -> String {
    let t = &d.top;
    let mut s = String::with_capacity(t.n_queries * (8 + t.k * 18) + 64);
    s.push_str("query");
    for r in 1..=t.k {
        let _ = write!(s, ",idx_{r},cos_{r}");
    }
    s.push('\n');
    for q in 0..t.n_queries {
        let (ix, vs) = t.row(q);
        let _ = write!(s, "{q}");
        for (i, v) in ix.iter().zip(vs) {
            let _ = write!(s, ",{i},{v:.6}");
        }
        s.push('\n');
    }
    s
}

fn histogram_figure(c: &Comparison, d: &Direction, tag: &str, threshold: f32) -> Figure {
    let cols = d.histograms.len().clamp(1, 4);
    let mut fig = Figure::new(
        format!(
            "{} {}: queries {} against reference {} ({tag})",
            c.kind.name(),
            c.unit.name(),
            d.query,
            d.reference
        ),
        cols,
    );
    for h in &d.histograms {
        let bins = h.counts.len().max(1);
        let width = (h.hi - h.lo) / bins as f64;
        let points: Vec<(f64, f64)> = h
            .counts
            .iter()
            .enumerate()
            .map(|(b, &n)| (h.bin_lo(b) + width / 2.0, n as f64))
            .collect();
        let top = h.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
        let tau = threshold as f64;
        fig.panels.push(
            Panel::new(format!("Top-{}", h.rank), "cosine", "queries")
                .with(Series::bars(format!("Top-{}", h.rank), width, points))
                .with(Series::line(
                    format!("τ = {threshold}"),
                    vec![(tau, 0.0), (tau, top)],
                )),
        );
    }
    fig
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

/// Quotes a CSV field when it holds a separator, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

// ---------------------------------------------------------------- grid mode

/// Names of the settings compared for Table 1, in table order.
const SETTINGS: [&str; 7] = [
    "dataset",
    "seed",
    "k",
    "n",
    "architecture",
    "hook",
    "hparams",
];

struct GridSae {
    label: String,
    dir: PathBuf,
    sae: Sae,
    /// Values of [`SETTINGS`], in order (None = not recorded).
    settings: Vec<Option<String>>,
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

fn dir_label(dir: &Path) -> String {
    dir.file_name()
        .map(|s| s.to_string_lossy().to_string())
        .filter(|s| !s.is_empty() && s != "." && s != "..")
        .unwrap_or_else(|| dir.display().to_string())
}

/// Reads the settings of [`SETTINGS`] from the loaded SAE and its files.
fn read_settings(dir: &Path, sae: &Sae) -> Result<Vec<Option<String>>> {
    let cfg_path = dir.join(saelab_sae::io::CFG_FILE);
    let cfg: Value = if cfg_path.exists() {
        let text = std::fs::read_to_string(&cfg_path)
            .with_context(|| format!("reading {}", cfg_path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: bad JSON", cfg_path.display()))?
    } else {
        Value::Null
    };
    let meta = cfg.get("metadata").unwrap_or(&Value::Null);
    let field = |k: &str| meta.get(k).or_else(|| cfg.get(k)).filter(|v| !v.is_null());
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let train = meta.get("saelab_train_config");
    let dataset = field("dataset_path").map(text);
    let data_seed = meta.get("data_seed").filter(|v| !v.is_null());
    let seed = train
        .and_then(|t| t.get("seed"))
        .or_else(|| field("seed"))
        .map(|s| match data_seed {
            Some(ds) => format!("{} (data {})", text(s), text(ds)),
            None => text(s),
        });
    let sc = sae.config();
    let k = match &sc.arch {
        ArchSpec::TopK { k }
        | ArchSpec::BatchTopK { k, .. }
        | ArchSpec::MatryoshkaBatchTopK { k, .. } => Some(k.to_string()),
        _ => None,
    };
    let hook = saelab_sae::sae_info(dir).ok().and_then(|i| i.hook_name);
    // Everything else that shapes training: architecture hyperparameters
    // other than k, the training config other than seed and shape, input
    // normalization, steps and batch.
    let mut h = Map::new();
    if let Ok(Value::Object(mut arch)) = serde_json::to_value(&sc.arch) {
        arch.remove("architecture");
        arch.remove("k");
        h.insert("arch".into(), Value::Object(arch));
    }
    h.insert("input_unit_norm".into(), json!(sc.input_unit_norm));
    if let Some(Value::Object(t)) = train {
        let mut t = t.clone();
        t.remove("seed");
        t.remove("sae");
        h.insert("train".into(), Value::Object(t));
    }
    for key in ["steps", "batch"] {
        if let Some(v) = meta.get(key) {
            h.insert(key.into(), v.clone());
        }
    }
    Ok(vec![
        dataset,
        seed,
        k,
        Some(sc.d_sae.to_string()),
        Some(sc.arch.name().to_string()),
        hook,
        Some(flatten_settings(&Value::Object(h))),
    ])
}

/// Indices into [`SETTINGS`] of the settings that differ.
/// Indices of the settings in which `a` and `b` differ. An architecture's
/// own hyperparameters (`arch.*` entries of `hparams`) belong to the
/// architecture: when the architectures differ they are not compared.
fn differing(a: &GridSae, b: &GridSae) -> Vec<usize> {
    let arch = SETTINGS.iter().position(|&s| s == "architecture");
    let hp = SETTINGS.iter().position(|&s| s == "hparams");
    let arch_differs = arch.is_some_and(|i| a.settings[i] != b.settings[i]);
    let strip = |v: &Option<String>| {
        v.as_ref().map(|t| {
            t.split("; ")
                .filter(|e| !e.starts_with("arch."))
                .collect::<Vec<_>>()
                .join("; ")
        })
    };
    (0..SETTINGS.len())
        .filter(|&i| {
            if Some(i) == hp && arch_differs {
                strip(&a.settings[i]) != strip(&b.settings[i])
            } else {
                a.settings[i] != b.settings[i]
            }
        })
        .collect()
}

fn show(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "?".into())
}

struct PairResult {
    i: usize,
    j: usize,
    /// R(i←j): queries of j against reference i.
    r_i_from_j: f64,
    /// R(j←i).
    r_j_from_i: f64,
    differs: Vec<usize>,
}

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
    let mut saes: Vec<GridSae> = Vec::with_capacity(entries.len());
    for (dir, label) in entries {
        let sae = load(&dir)?;
        let settings = read_settings(&dir, &sae)?;
        if let Some(first) = saes.first() {
            let (d0, d1) = (first.sae.config().d_in, sae.config().d_in);
            if d0 != d1 {
                bail!(
                    "cannot compare SAEs of different widths: {} has d = {d0}, {} has d = {d1}",
                    first.dir.display(),
                    dir.display()
                );
            }
        }
        let mut label = label.unwrap_or_else(|| dir_label(&dir));
        if saes.iter().any(|s| s.label == label) {
            label = format!("{label}-{}", saes.len());
        }
        saes.push(GridSae {
            label,
            dir,
            sae,
            settings,
        });
    }
    create_out(&a.out)?;
    let m = saes.len();
    let n_pairs = m * (m - 1) / 2;
    let mut matrix: Vec<Vec<Option<f64>>> = vec![vec![None; m]; m];
    let mut pairs_json = Vec::with_capacity(n_pairs);
    let mut results = Vec::with_capacity(n_pairs);
    let mut notes: Vec<String> = Vec::new();
    let t0 = std::time::Instant::now();
    let mut done = 0usize;
    for i in 0..m {
        for j in i + 1..m {
            let (sa, sb) = (&saes[i], &saes[j]);
            let (na, nb) = (sa.sae.config().d_sae, sb.sae.config().d_sae);
            let neurons = a.neurons && na == nb;
            if a.neurons && !neurons {
                notes.push(format!(
                    "{} vs {}: neurons skipped (n {na} vs {nb})",
                    sa.label, sb.label
                ));
            }
            let opts = options(a, (sa.label.clone(), sb.label.clone()), neurons);
            let report = compare(&sa.sae, &sb.sae, &opts).with_context(|| {
                format!("comparing {} with {}", sa.dir.display(), sb.dir.display())
            })?;
            let c = report
                .comparisons
                .iter()
                .find(|c| c.unit == Unit::Features)
                .context("compare() returned no feature comparison")?;
            let (r_ij, r_ji) = (c.b_in_a.ratio, c.a_in_b.ratio);
            matrix[i][j] = Some(r_ij);
            matrix[j][i] = Some(r_ji);
            let differs = differing(sa, sb);
            done += 1;
            eprintln!(
                "[{done}/{n_pairs}] {} vs {}: R(A←B) {r_ij:.4}, R(B←A) {r_ji:.4}; differs in {}",
                sa.label,
                sb.label,
                differs_text(&differs)
            );
            pairs_json.push(json!({
                "a": sa.label, "b": sb.label,
                "differs": differs.iter().map(|&s| SETTINGS[s]).collect::<Vec<_>>(),
                "report": report,
            }));
            results.push(PairResult {
                i,
                j,
                r_i_from_j: r_ij,
                r_j_from_i: r_ji,
                differs,
            });
        }
    }
    let matrix_kind = match a.vectors {
        Vectors::Encoder => "encoder",
        _ => "decoder",
    };
    let grid = json!({
        "schema": "saelab.match_grid.v1",
        "threshold": a.threshold,
        "top_n": a.top_n,
        "matrix": format!("{matrix_kind} features: ratios[r][c] = R(r←c), queries of SAE c against reference SAE r"),
        "saes": saes.iter().map(|s| json!({
            "label": s.label,
            "dir": s.dir.display().to_string(),
            "settings": SETTINGS.iter().zip(&s.settings)
                .map(|(k, v)| (k.to_string(), json!(v))).collect::<Map<String, Value>>(),
        })).collect::<Vec<_>>(),
        "ratios": matrix,
        "notes": notes,
        "pairs": pairs_json,
    });
    write_json(&a.out.join("grid.json"), &grid)?;

    let labels: Vec<String> = saes.iter().map(|s| s.label.clone()).collect();
    let mut csv = String::from("reference\\query");
    for l in &labels {
        let _ = write!(csv, ",{}", csv_field(l));
    }
    csv.push('\n');
    for (l, row) in labels.iter().zip(&matrix) {
        csv.push_str(&csv_field(l));
        for v in row {
            match v {
                Some(x) => {
                    let _ = write!(csv, ",{x:.6}");
                }
                None => csv.push(','),
            }
        }
        csv.push('\n');
    }
    write_text(&a.out.join("ratios.csv"), &csv)?;
    let hm = Heatmap {
        title: format!(
            "matching ratio R(row←column), {matrix_kind} features, τ = {}",
            a.threshold
        ),
        row_labels: labels.clone(),
        col_labels: labels,
        values: matrix,
        vmin: 0.0,
        vmax: 1.0,
        annotate: m <= 16,
    };
    let hp = a.out.join("heatmap.svg");
    hm.write(&hp)
        .with_context(|| format!("writing {}", hp.display()))?;

    write_text(&a.out.join("table1.csv"), &table1(&saes, &results))?;
    write_text(&a.out.join("table2.csv"), &table2(&saes, &results))?;
    eprint!("{}", table1_summary(&results));
    for n in &notes {
        eprintln!("note: {n}");
    }
    eprintln!(
        "{}: {m} SAEs, {n_pairs} pairs in {:.1} s",
        a.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `a.b=v; c=w` with keys sorted: nested settings as one comparable text
/// whose entries [`setting_values`] can diff.
fn flatten_settings(v: &Value) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, x, out);
                }
            }
            other => out.push(format!("{prefix}={other}")),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.sort();
    out.join("; ")
}

/// The two values of setting `k` as shown in the tables: for `hparams`
/// only the entries that differ.
fn setting_values(k: usize, a: &Option<String>, b: &Option<String>) -> (String, String) {
    if SETTINGS[k] != "hparams" {
        return (show(a), show(b));
    }
    let (Some(a), Some(b)) = (a, b) else {
        return (show(a), show(b));
    };
    let ea: Vec<&str> = a.split("; ").collect();
    let eb: Vec<&str> = b.split("; ").collect();
    let only = |x: &[&str], y: &[&str]| {
        x.iter()
            .filter(|e| !y.contains(e))
            .copied()
            .collect::<Vec<_>>()
            .join("; ")
    };
    (only(&ea, &eb), only(&eb, &ea))
}

fn differs_text(d: &[usize]) -> String {
    if d.is_empty() {
        "no recorded setting".into()
    } else {
        d.iter()
            .map(|&s| SETTINGS[s])
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn table1(saes: &[GridSae], results: &[PairResult]) -> String {
    let mut s =
        String::from("setting,sae_a,sae_b,value_a,value_b,ratio_a_from_b,ratio_b_from_a,mean\n");
    let row = |s: &mut String, setting: &str, r: &PairResult, va: String, vb: String| {
        let _ = writeln!(
            s,
            "{setting},{},{},{},{},{:.6},{:.6},{:.6}",
            csv_field(&saes[r.i].label),
            csv_field(&saes[r.j].label),
            csv_field(&va),
            csv_field(&vb),
            r.r_i_from_j,
            r.r_j_from_i,
            (r.r_i_from_j + r.r_j_from_i) / 2.0
        );
    };
    for (k, name) in SETTINGS.iter().enumerate() {
        for r in results.iter().filter(|r| r.differs == [k]) {
            let (va, vb) = setting_values(k, &saes[r.i].settings[k], &saes[r.j].settings[k]);
            row(&mut s, name, r, va, vb);
        }
    }
    for r in results.iter().filter(|r| r.differs.len() != 1) {
        let side = |first: bool| {
            if r.differs.is_empty() {
                "identical recorded settings".to_string()
            } else {
                r.differs
                    .iter()
                    .map(|&k| {
                        let (va, vb) =
                            setting_values(k, &saes[r.i].settings[k], &saes[r.j].settings[k]);
                        format!("{}: {}", SETTINGS[k], if first { va } else { vb })
                    })
                    .collect::<Vec<_>>()
                    .join(" | ")
            }
        };
        row(&mut s, "other", r, side(true), side(false));
    }
    s
}

/// Per setting: pairs, min and max of the two ratios (the study's Table 1
/// ranges), for stderr.
fn table1_summary(results: &[PairResult]) -> String {
    let mut s = String::new();
    for (k, name) in SETTINGS.iter().enumerate() {
        let rs: Vec<f64> = results
            .iter()
            .filter(|r| r.differs == [k])
            .flat_map(|r| [r.r_i_from_j, r.r_j_from_i])
            .collect();
        if rs.is_empty() {
            continue;
        }
        let lo = rs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let _ = writeln!(
            s,
            "Table 1, {name}: {} pair(s), ratios {:.1}–{:.1} %",
            rs.len() / 2,
            100.0 * lo,
            100.0 * hi
        );
    }
    s
}

fn table2(saes: &[GridSae], results: &[PairResult]) -> String {
    let n_idx = SETTINGS.iter().position(|&s| s == "n").unwrap_or(3);
    let mut s = String::from(
        "sae_small,sae_large,n_small,n_large,n_diff,ratio_small_in_large,ratio_large_in_small,large_unmatched\n",
    );
    for r in results.iter().filter(|r| r.differs == [n_idx]) {
        let (ni, nj) = (saes[r.i].sae.config().d_sae, saes[r.j].sae.config().d_sae);
        // small-in-large = queries of the small SAE against the large one.
        let (small, large, small_in_large, large_in_small) = if ni <= nj {
            (r.i, r.j, r.r_j_from_i, r.r_i_from_j)
        } else {
            (r.j, r.i, r.r_i_from_j, r.r_j_from_i)
        };
        let (ns, nl) = (
            saes[small].sae.config().d_sae,
            saes[large].sae.config().d_sae,
        );
        let unmatched = (nl as f64 * (1.0 - large_in_small)).round() as u64;
        let _ = writeln!(
            s,
            "{},{},{ns},{nl},{},{small_in_large:.6},{large_in_small:.6},{unmatched}",
            csv_field(&saes[small].label),
            csv_field(&saes[large].label),
            nl - ns
        );
    }
    s
}
