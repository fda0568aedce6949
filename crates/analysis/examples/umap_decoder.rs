//! 2-D UMAP of an SAE's decoder directions (study Fig 18), timed and scored.
//!
//! ```text
//! cargo run --release -p saelab-analysis --example umap_decoder -- \
//!     (SAE_DIR | --random N D) OUT.npy [--seed S] [--init pca|random] [--rows-out ROWS.npy]
//! ```
//!
//! Loads W_dec [n, d] from SAE_DIR (any layout `saelab_sae::load_sae`
//! reads: ours, SAELens `sae_weights.safetensors`, sparsify) — or, with
//! `--random N D`, N seeded random unit rows of length D (a timing input,
//! not an SAE) — embeds its rows with the study's UMAP settings, writes the
//! n × 2 f32 embedding to OUT.npy, and prints rows, dims, seconds for the
//! kNN table and for the optimisation, and the trustworthiness (k 10).
//! `--rows-out` also writes the input rows as .npy (for the Python
//! reference script on `--random` input).

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use saelab_analysis::umap::{cosine_knn, embed_knn, trustworthiness, UmapInit, UmapParams};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

enum Input {
    Sae(PathBuf),
    Random { n: usize, d: usize },
}

struct Args {
    input: Input,
    out: PathBuf,
    rows_out: Option<PathBuf>,
    params: UmapParams,
}

fn parse() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let mut pos = Vec::new();
    let mut params = UmapParams::default();
    let (mut random, mut rows_out) = (None, None);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--seed" => params.seed = val("--seed")?.parse().context("--seed")?,
            "--init" => {
                params.init = match val("--init")?.as_str() {
                    "pca" => UmapInit::Pca,
                    "random" => UmapInit::Random,
                    o => bail!("--init must be pca or random, not {o}"),
                }
            }
            "--rows-out" => rows_out = Some(PathBuf::from(val("--rows-out")?)),
            "--random" => {
                let n = val("--random N")?.parse().context("--random N")?;
                let d = val("--random D")?.parse().context("--random D")?;
                random = Some(Input::Random { n, d });
            }
            _ => pos.push(a),
        }
    }
    let usage = "usage: umap_decoder (SAE_DIR | --random N D) OUT.npy [--seed S] [--init pca|random] [--rows-out ROWS.npy]";
    let (input, out) = match (random, pos.as_slice()) {
        (Some(r), [out]) => (r, out),
        (None, [dir, out]) => (Input::Sae(dir.into()), out),
        _ => bail!(usage),
    };
    Ok(Args {
        input,
        out: out.into(),
        rows_out,
        params,
    })
}

/// Seeded random rows (normal entries; normalised inside the embedding).
fn random_rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n * d)
        .map(|_| {
            let u1 = 1.0 - r.random::<f64>();
            let u2 = r.random::<f64>();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

/// Minimal .npy (format 1.0, little-endian f32, C order) writer.
fn write_npy(path: &Path, data: &[f32], shape: &[usize]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' ≡ 0 mod 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    data.iter()
        .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(&bytes)
        .with_context(|| format!("writing {}", path.display()))
}

fn main() -> Result<()> {
    let args = parse()?;
    let (rows, n, d, what) = match &args.input {
        Input::Sae(dir) => {
            let sae = saelab_sae::load_sae(dir)
                .with_context(|| format!("loading SAE {}", dir.display()))?;
            let p = sae.params();
            (
                p.w_dec.clone(),
                p.n,
                p.d,
                format!("W_dec of {}", dir.display()),
            )
        }
        Input::Random { n, d } => (
            random_rows(*n, *d, args.params.seed),
            *n,
            *d,
            format!("RANDOM rows (seed {}), not an SAE", args.params.seed),
        ),
    };
    if let Some(path) = &args.rows_out {
        write_npy(path, &rows, &[n, d])?;
    }
    println!("input: {what}");
    println!(
        "rows {n}  dims {d}  threads {}",
        rayon::current_num_threads()
    );
    let p = &args.params;
    println!(
        "params: n_neighbors {} min_dist {} n_epochs {} seed {} init {:?}",
        p.n_neighbors,
        p.min_dist,
        p.epochs_for(n),
        p.seed,
        p.init
    );
    let t = Instant::now();
    let knn = cosine_knn(&rows, n, d, p.n_neighbors)?;
    println!("knn_seconds {:.3}", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let emb = embed_knn(&rows, n, d, &knn, p)?;
    println!("optimize_seconds {:.3}", t.elapsed().as_secs_f64());
    let flat: Vec<f32> = emb.points.iter().flatten().copied().collect();
    write_npy(&args.out, &flat, &[n, 2])?;
    let t = Instant::now();
    let tw = trustworthiness(&rows, n, d, &emb, 10)?;
    println!("trust_seconds {:.3}", t.elapsed().as_secs_f64());
    println!("trustworthiness_k10 {tw:.4}");
    println!("wrote {}", args.out.display());
    Ok(())
}
