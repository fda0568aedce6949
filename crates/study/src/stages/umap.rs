//! The umap stage: a 2-D UMAP of the decoder directions of each stats
//! layer's SAE (study Fig 18) through `saelab_analysis::umap`, with its
//! trustworthiness, written as the stage's `result.json`.

use super::StageError;
use crate::exec::Ctx;
use crate::plan::UmapWork;
use crate::results::{write_stage_result, UmapEntry, UmapResult};
use saelab_analysis::matching::grid::load_sae;
use saelab_analysis::umap::{embed_rows, trustworthiness, UmapParams};
use std::path::Path;
use std::sync::atomic::Ordering;

/// Neighbours of the trustworthiness score (sklearn's default is 5; the
/// issue and our reference check use 10).
const TRUST_K: usize = 10;

pub fn run(ctx: &Ctx, w: &UmapWork, dir: &Path) -> Result<Vec<String>, StageError> {
    let params = UmapParams {
        n_neighbors: w.n_neighbors,
        min_dist: w.min_dist as f32,
        seed: w.seed,
        ..UmapParams::default()
    };
    let mut out = UmapResult::default();
    for (i, (r, &layer)) in w.saes.iter().zip(&w.layers).enumerate() {
        if ctx.stop.load(Ordering::SeqCst) {
            return Err(StageError::Stopped);
        }
        let sae = load_sae(&ctx.cache.sae_dir(&r.train_stage, &r.name)).map_err(StageError::msg)?;
        let p = sae.params();
        let emb = embed_rows(&p.w_dec, p.n, p.d, &params)
            .map_err(|e| StageError::msg(format!("UMAP of {}: {e}", r.name)))?;
        let trust = trustworthiness(&p.w_dec, p.n, p.d, &emb, TRUST_K)
            .map_err(|e| StageError::msg(format!("trustworthiness of {}: {e}", r.name)))?;
        out.saes.push(UmapEntry {
            id: r.id.clone(),
            layer,
            stage: String::new(),
            n_neighbors: w.n_neighbors,
            min_dist: w.min_dist,
            seed: w.seed,
            trustworthiness: Some(trust),
            points: emb.points,
        });
        ctx.progress
            .stage_progress(i as u64 + 1, w.saes.len() as u64, "SAEs");
    }
    write_stage_result(dir, &out).map_err(StageError::msg)?;
    Ok(vec![crate::results::STAGE_RESULT.into()])
}
