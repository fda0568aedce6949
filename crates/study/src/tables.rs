//! The study's tables from the stages' typed results: the SAEs with their
//! training curves, Table 1 (matching ratio by comparison category),
//! Table 2 (feature-count differences between dictionary sizes), the
//! layer × layer matrix (Fig 13), the train × eval matrix and the
//! per-position statistics per layer and intervention.

use crate::exec::{Ctx, StudyError};
use crate::grid::SaeKey;
use crate::identity::short;
use crate::plan::Work;
use crate::results::{
    done_stages, read_stage_result, EvalResult, LayerMatrix, MatchResult, PositionEntry, Results,
    SaeResult, StatsResult, Table1Row, Table2Row, TrainEvalCell, TrainResult, UmapResult,
};
use std::collections::BTreeMap;

/// Fills every table of `r` from the complete stages.
pub fn fill(ctx: &Ctx, r: &mut Results) -> Result<(), StudyError> {
    fill_saes(ctx, r)?;
    fill_matches(ctx, r)?;
    fill_eval(ctx, r)?;
    fill_stats(ctx, r)?;
    fill_umap(ctx, r)?;
    Ok(())
}

fn fill_saes(ctx: &Ctx, r: &mut Results) -> Result<(), StudyError> {
    let mut curves: BTreeMap<String, Vec<saelab_sae::StepMetrics>> = BTreeMap::new();
    for s in done_stages(ctx, "train") {
        let t: TrainResult = read_stage_result(&ctx.cache.stage_dir(s))?;
        for sae in t.saes {
            curves.insert(sae.id, sae.curve);
        }
    }
    for e in &ctx.plan.saes {
        let curve = curves.remove(&e.id).unwrap_or_default();
        r.saes.push(SaeResult {
            id: e.id.clone(),
            label: e.label.clone(),
            key: e.key.clone(),
            dir: ctx.cache.sae_dir(&e.train_stage, &e.label),
            train_stage: e.train_stage.clone(),
            final_metrics: curve.last().cloned(),
            curve,
        });
    }
    // d_in of the first trained SAE (all of a study share the model).
    r.d_model = r
        .saes
        .iter()
        .filter(|s| !s.curve.is_empty())
        .find_map(|s| saelab_sae::io::sae_info(&s.dir).ok()?.d_in);
    if r.saes.iter().all(|s| s.curve.is_empty()) {
        r.missing
            .push("training curves: no train stage is complete".into());
    }
    Ok(())
}

fn key_of<'a>(ctx: &'a Ctx, id: &str) -> Option<&'a SaeKey> {
    ctx.plan.saes.iter().find(|s| s.id == id).map(|s| &s.key)
}

fn label_of(ctx: &Ctx, id: &str) -> String {
    ctx.plan
        .saes
        .iter()
        .find(|s| s.id == id)
        .map_or_else(|| short(id).to_string(), |s| s.label.clone())
}

/// "wiki vs speeches", "n 2304 vs 4608", ...: the differing axis.
fn differs(a: &SaeKey, b: &SaeKey, category: &str) -> String {
    match category {
        "dataset" => format!("{} vs {}", a.dataset, b.dataset),
        "layer" => format!("L{} vs L{}", a.layer, b.layer),
        "dictionary" => format!("n {} vs {}", a.n, b.n),
        "seed" => format!("seed {} vs {}", a.seed, b.seed),
        "lr" => format!("lr {} vs {}", a.lr, b.lr),
        "architecture" => format!("{} vs {}", a.arch, b.arch),
        "sparsity" => match (a.k, b.k) {
            (Some(x), Some(y)) if x != y => format!("k {x} vs {y}"),
            _ => format!("{} vs {}", a.label(), b.label()),
        },
        _ => String::new(),
    }
}

fn fill_matches(ctx: &Ctx, r: &mut Results) -> Result<(), StudyError> {
    let mut layer_pairs: Vec<(usize, usize, f64, f64)> = Vec::new();
    let mut layer_saes: BTreeMap<usize, String> = BTreeMap::new();
    for s in done_stages(ctx, "match") {
        let m: MatchResult = read_stage_result(&ctx.cache.stage_dir(s))?;
        let (Some(ka), Some(kb)) = (key_of(ctx, &m.a), key_of(ctx, &m.b)) else {
            continue;
        };
        r.table1.push(Table1Row {
            category: m.category.clone(),
            a: label_of(ctx, &m.a),
            b: label_of(ctx, &m.b),
            differs: differs(ka, kb, &m.category),
            decoder: m.decoder.clone(),
            encoder: m.encoder.clone(),
            assignment_ratio: m.assignment_ratio,
            chance: m.chance,
            stage: s.hash.clone(),
        });
        if m.category == "dictionary" {
            r.table2.push(table2_row(ctx, ka, kb, &m, &s.hash));
        }
        if m.category == "layer" {
            layer_saes.insert(ka.layer, label_of(ctx, &m.a));
            layer_saes.insert(kb.layer, label_of(ctx, &m.b));
            layer_pairs.push((ka.layer, kb.layer, m.decoder.a_in_b, m.decoder.b_in_a));
        }
        r.matches.push((s.hash.clone(), m));
    }
    r.table1
        .sort_by(|x, y| (&x.category, &x.differs).cmp(&(&y.category, &y.differs)));
    if r.table1.is_empty() {
        r.missing.push("Table 1: no match stage is complete".into());
    }
    if !layer_pairs.is_empty() {
        let layers: Vec<usize> = layer_saes.keys().copied().collect();
        let idx = |l: usize| layers.iter().position(|&x| x == l).unwrap_or(0);
        let mut ratio = vec![vec![None; layers.len()]; layers.len()];
        for (la, lb, a_in_b, b_in_a) in layer_pairs {
            ratio[idx(la)][idx(lb)] = Some(a_in_b);
            ratio[idx(lb)][idx(la)] = Some(b_in_a);
        }
        r.layer_matrix = Some(LayerMatrix {
            saes: layer_saes.values().cloned().collect(),
            layers,
            ratio,
        });
    } else {
        r.missing
            .push("layer matrix: no layer pairs matched".into());
    }
    Ok(())
}

fn table2_row(ctx: &Ctx, ka: &SaeKey, kb: &SaeKey, m: &MatchResult, stage: &str) -> Table2Row {
    // Orient so `small` has the smaller dictionary.
    let (small, large, s_in_l, l_in_s, ks, kl) = if ka.n <= kb.n {
        (&m.a, &m.b, m.decoder.a_in_b, m.decoder.b_in_a, ka, kb)
    } else {
        (&m.b, &m.a, m.decoder.b_in_a, m.decoder.a_in_b, kb, ka)
    };
    Table2Row {
        small: label_of(ctx, small),
        large: label_of(ctx, large),
        n_small: ks.n,
        n_large: kl.n,
        large_in_small: l_in_s,
        small_in_large: s_in_l,
        difference: kl.n as f64 * l_in_s - ks.n as f64 * s_in_l,
        stage: stage.to_string(),
    }
}

fn fill_eval(ctx: &Ctx, r: &mut Results) -> Result<(), StudyError> {
    for s in done_stages(ctx, "eval") {
        let e: EvalResult = read_stage_result(&ctx.cache.stage_dir(s))?;
        for entry in e.saes {
            let Some(k) = key_of(ctx, &entry.id) else {
                continue;
            };
            r.train_eval.push(TrainEvalCell {
                sae: label_of(ctx, &entry.id),
                train: k.dataset.clone(),
                eval: e.corpus.clone(),
                metrics: entry.metrics,
                stage: s.hash.clone(),
            });
        }
    }
    if r.train_eval.is_empty() {
        r.missing
            .push("train × eval matrix: no eval stage is complete".into());
    }
    Ok(())
}

fn fill_umap(ctx: &Ctx, r: &mut Results) -> Result<(), StudyError> {
    for s in done_stages(ctx, "umap") {
        let u: UmapResult = read_stage_result(&ctx.cache.stage_dir(s))?;
        r.umap.extend(u.saes.into_iter().map(|mut e| {
            e.stage = s.hash.clone();
            e
        }));
    }
    Ok(())
}

fn fill_stats(ctx: &Ctx, r: &mut Results) -> Result<(), StudyError> {
    for s in done_stages(ctx, "stats") {
        let st: StatsResult = read_stage_result(&ctx.cache.stage_dir(s))?;
        let Work::Stats(_) = &s.work else { continue };
        for l in st.layers {
            r.positions.push(PositionEntry {
                intervention: st.intervention.clone(),
                stage: s.hash.clone(),
                stats: l,
            });
        }
    }
    if r.positions.is_empty() {
        r.missing
            .push("activation statistics: no stats stage is complete".into());
    }
    Ok(())
}
