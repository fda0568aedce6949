//! The harvest stage: one store per corpus with every hook its SAEs read,
//! through [`crate::harvest::run`] (what `saelab harvest` calls).

use super::{corpus_path, load_model, StageError};
use crate::exec::Ctx;
use crate::harvest::{HarvestConfig, HarvestError, HarvestProgress};
use crate::plan::HarvestWork;
use std::path::Path;

pub fn run(ctx: &Ctx, w: &HarvestWork, dir: &Path) -> Result<Vec<String>, StageError> {
    let model = load_model(&w.model, &w.precision)?;
    let corpus = corpus_path(&w.source)?;
    let cfg = config(w)?;
    let progress = |p: HarvestProgress| {
        if let HarvestProgress::Stored {
            tokens,
            target_rows,
            ..
        } = p
        {
            let total = target_rows.map_or(tokens, |r| r * w.seq_len as u64);
            ctx.progress.stage_progress(tokens, total, "tokens");
        }
    };
    let store = dir.join("store");
    match crate::harvest::run(&model, &corpus, &cfg, &store, &progress, ctx.stop) {
        Ok(s) => {
            let mut out: Vec<String> = vec!["store/manifest.json".into()];
            out.extend((0..s.shards).map(|i| format!("store/shard-{i:05}.safetensors")));
            Ok(out)
        }
        Err(HarvestError::Stopped { .. }) => Err(StageError::Stopped),
        Err(e) => Err(StageError::msg(e)),
    }
}

/// The harvest config of a stage's work (also the rows of a streamed
/// train stage).
pub(crate) fn config(w: &HarvestWork) -> Result<HarvestConfig, StageError> {
    let parse = |what: &str, e: String| StageError::msg(format!("{what}: {e}"));
    Ok(HarvestConfig {
        model: w.model.clone(),
        dataset: w.corpus.clone(),
        hooks: w
            .hooks
            .iter()
            .map(|h| {
                h.parse()
                    .map_err(|e: saelab_lm::LmError| parse("hook", e.to_string()))
            })
            .collect::<Result<_, _>>()?,
        tokens: w.tokens,
        seq_len: w.seq_len,
        packing: w
            .packing
            .parse()
            .map_err(|e| parse("packing", format!("{e}")))?,
        dtype: saelab_data::store::StoreDtype::parse(&w.dtype)
            .ok_or_else(|| parse("dtype", w.dtype.clone()))?,
        pos_intervention: saelab_lm::PosIntervention::None,
        seed: w.seed,
        batch_rows: w.batch_rows,
        rows_per_shard: w.rows_per_shard,
        text_field: w.text_field.clone(),
    })
}
