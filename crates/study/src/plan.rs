//! The planner: a validated [`Spec`] expands into a graph of stages —
//! harvest (per corpus, all the hooks its SAEs read, one forward pass),
//! train (all SAEs that read one store with one schedule, side by side; with
//! `train.source = "model"`, all SAEs of one corpus and schedule, every hook
//! from one forward pass, and no harvest stage),
//! eval (per evaluation corpus: the train × eval matrix), stats (per
//! intervention, the baseline SAE of each stats layer), match (one stage
//! per pair of SAEs that the comparison categories need). Each stage's hash
//! covers its inputs and its upstream hashes ([`crate::identity`]).
//!
//! An SAE is known downstream by its id: the hash of its store stage (or
//! streamed rows), hook, training settings and axis values. Analyses are keyed by SAE ids, so an
//! SAE that is retrained bit-identically in a larger group (adding an SAE
//! changes the train stage's hash) keeps its matches.

use crate::grid::{self, SaeKey};
use crate::identity::{corpus_identity, model_identity, stage_hash};
use crate::spec::{Spec, TrainSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a plan could not resolve (an unreadable local model or corpus).
#[derive(Debug, thiserror::Error)]
#[error("planning: {0}")]
pub struct PlanError(pub String);

/// A stage of the graph.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stage {
    pub kind: String,
    /// Full sha256 hex; folders use its first 16 digits.
    pub hash: String,
    /// Hashes of the stages whose outputs this one reads.
    pub deps: Vec<String>,
    /// What this stage does, per kind.
    pub work: Work,
}

/// The inputs of a stage, per kind (everything its hash covers besides
/// the upstream hashes).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Work {
    Harvest(HarvestWork),
    Train(TrainWork),
    Eval(EvalWork),
    Stats(StatsWork),
    Match(MatchWork),
    Umap(UmapWork),
}

/// UMAP of the decoder directions of the stats layers' SAEs (study Fig 18).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UmapWork {
    pub saes: Vec<SaeRef>,
    pub layers: Vec<usize>,
    pub n_neighbors: usize,
    pub min_dist: f64,
    pub seed: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HarvestWork {
    /// The corpus's name in the spec (not hashed: a name is a label).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub corpus: String,
    pub model: String,
    pub model_identity: String,
    pub precision: String,
    pub source: String,
    pub source_identity: String,
    pub text_field: String,
    pub hooks: Vec<String>,
    pub tokens: u64,
    pub seq_len: usize,
    pub packing: String,
    pub dtype: String,
    pub batch_rows: usize,
    pub rows_per_shard: usize,
    pub seed: u64,
}

/// Training settings shared by the SAEs of one train stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    pub batch: usize,
    pub tokens: Option<u64>,
    pub steps: Option<u64>,
    pub lr_warmup_steps: u64,
    pub lr_decay: String,
    pub b_dec_init: String,
    pub encoder_precision: String,
    pub auxk: bool,
    pub data_seed: u64,
    pub buffer_vectors: usize,
}

/// Checkpoint and log cadence: not part of any hash (results do not
/// depend on them).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cadence {
    pub checkpoint_every: u64,
    pub log_every: u64,
}

/// An SAE of a train stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlannedSae {
    pub id: String,
    /// Its sub-folder in the train stage.
    pub name: String,
    pub key: SaeKey,
    /// Its hook's index in the stage's `stream.hooks` (0 for a store).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub lane: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainWork {
    pub hook: String,
    /// Adam learning rate of every SAE of the stage (the `lr` axis splits
    /// SAEs into stages).
    pub lr: f64,
    pub settings: TrainSettings,
    pub saes: Vec<PlannedSae>,
    /// With `train.source = "model"`: the rows to run through the model
    /// and every hook of the stage (then `hook` is empty).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stream: Option<Box<HarvestWork>>,
    #[serde(skip)]
    pub cadence: Option<Cadence>,
}

/// An SAE as analyses see it: its id, the train stage holding it and its
/// sub-folder there.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaeRef {
    pub id: String,
    #[serde(skip_serializing, default)]
    pub train_stage: String,
    #[serde(skip_serializing, default)]
    pub name: String,
    /// Dictionary size (for estimates).
    #[serde(skip_serializing, default)]
    pub n: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalWork {
    pub model: String,
    pub model_identity: String,
    pub precision: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub corpus: String,
    pub source: String,
    pub source_identity: String,
    pub text_field: String,
    pub tokens: u64,
    pub seq_len: usize,
    pub batch_rows: usize,
    pub splice_keep_bos: bool,
    pub intervention: String,
    pub seed: u64,
    pub saes: Vec<SaeRef>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatsWork {
    pub model: String,
    pub model_identity: String,
    pub precision: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub corpus: String,
    pub source: String,
    pub source_identity: String,
    pub text_field: String,
    pub rows: usize,
    pub seq_len: usize,
    pub ma_window: usize,
    pub intervention: String,
    pub seed: u64,
    /// The baseline SAE per layer, in `layers` order.
    pub layers: Vec<usize>,
    pub saes: Vec<SaeRef>,
    pub ce_per_position: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MatchWork {
    pub category: String,
    pub a: SaeRef,
    pub b: SaeRef,
    pub threshold: f64,
    pub top_n: usize,
    pub assignment: bool,
    pub encoder: bool,
    pub neurons: bool,
}

/// The planned study: stages in an order that runs dependencies first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub study: String,
    pub stages: Vec<Stage>,
    /// Every SAE of the grid with its id and train stage.
    pub saes: Vec<SaeEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaeEntry {
    pub id: String,
    pub label: String,
    pub train_stage: String,
    pub key: SaeKey,
}

impl Plan {
    pub fn stage(&self, hash: &str) -> Option<&Stage> {
        self.stages
            .iter()
            .find(|s| s.hash == hash || crate::identity::short(&s.hash) == hash)
    }
}

/// The baseline SAE (all axes at the baseline but `layer`, and the
/// dataset `stats.sae_dataset` when given) at `layer`.
pub fn baseline_at_layer(spec: &Spec, saes: &[SaeKey], layer: usize) -> Option<usize> {
    let b = &spec.baseline;
    let dataset = spec
        .stats
        .as_ref()
        .and_then(|s| s.sae_dataset.clone())
        .unwrap_or_else(|| b.dataset.clone());
    saes.iter().position(|s| {
        s.layer == layer
            && s.dataset == dataset
            && s.arch == b.arch
            && s.n == b.n
            && s.k == grid::uses_k(&b.arch).then_some(b.k)
            && s.seed == b.seed
            && s.lr == spec.train.lr
    })
}

fn settings(t: &TrainSpec, data_seed: u64) -> TrainSettings {
    TrainSettings {
        batch: t.batch,
        tokens: t.tokens,
        steps: t.steps,
        lr_warmup_steps: t.lr_warmup_steps,
        lr_decay: t.lr_decay.clone(),
        b_dec_init: t.b_dec_init.clone(),
        encoder_precision: t.encoder_precision.clone(),
        auxk: t.auxk,
        data_seed,
        buffer_vectors: t.buffer_vectors,
    }
}

fn ident<T>(r: Result<T, saelab_fsio::FsError>) -> Result<T, PlanError> {
    r.map_err(|e| PlanError(e.to_string()))
}

/// Expands `spec` into its stage graph.
pub fn plan(spec: &Spec) -> Result<Plan, PlanError> {
    let keys = grid::expand(spec);
    let model_id = ident(model_identity(&spec.model.name))?;
    let mut stages: Vec<Stage> = Vec::new();
    let mut harvest_of: BTreeMap<String, String> = Default::default();
    let mut rows_of: BTreeMap<String, HarvestWork> = Default::default();
    // Harvest: one store per corpus holding every layer its SAEs read (with
    // `train.source = "model"` the train stages run these rows themselves).
    let from_model = spec.train.source == "model";
    for (name, corpus) in &spec.corpora {
        let mut layers: Vec<usize> = keys
            .iter()
            .filter(|k| &k.dataset == name)
            .map(|k| k.layer)
            .collect();
        if layers.is_empty() {
            continue;
        }
        layers.sort_unstable();
        layers.dedup();
        let h = &spec.harvest;
        let work = HarvestWork {
            corpus: String::new(),
            model: spec.model.name.clone(),
            model_identity: model_id.clone(),
            precision: spec.model.precision.clone(),
            source: corpus.source.clone(),
            source_identity: ident(corpus_identity(&corpus.source))?,
            text_field: corpus.text_field.clone(),
            hooks: layers.iter().map(|&l| spec.hook(l)).collect(),
            tokens: corpus.tokens,
            seq_len: h.seq_len,
            packing: h.packing.clone(),
            dtype: h.dtype.clone(),
            batch_rows: h.batch_rows,
            rows_per_shard: h.rows_per_shard,
            seed: spec.baseline.seed,
        };
        if from_model {
            rows_of.insert(name.clone(), work);
            continue;
        }
        let hash = stage_hash("harvest", &work, &[]);
        harvest_of.insert(name.clone(), hash.clone());
        stages.push(Stage {
            kind: "harvest".into(),
            hash,
            deps: vec![],
            work: Work::Harvest(HarvestWork {
                corpus: name.clone(),
                ..work
            }),
        });
    }
    let (train_stages, entries) = if from_model {
        plan_train_from_model(spec, &keys, &rows_of)
    } else {
        plan_train(spec, &keys, &harvest_of)
    };
    stages.extend(train_stages);
    let sae_ref = |i: usize| SaeRef {
        id: entries[i].id.clone(),
        train_stage: entries[i].train_stage.clone(),
        name: entries[i].label.clone(),
        n: entries[i].key.n,
    };
    stages.extend(plan_eval(spec, &keys, &model_id, &sae_ref)?);
    stages.extend(plan_stats(spec, &keys, &model_id, &sae_ref)?);
    stages.extend(plan_match(spec, &keys, &sae_ref));
    stages.extend(plan_umap(spec, &keys, &sae_ref));
    Ok(Plan {
        study: spec.name.clone(),
        stages,
        saes: entries,
    })
}

/// SAEs trained in one pass: over one store's hook, or over every hook
/// of one corpus's forward pass (`stream`).
struct TrainGroup {
    /// The store stage's hash, or the identity of the streamed rows.
    source: String,
    /// The store's hook (empty when streamed: each SAE has its own).
    hook: String,
    lr: f64,
    members: Vec<usize>,
    stream: Option<HarvestWork>,
}

/// Train stages: SAEs grouped by (store, hook, lr); ids per SAE.
fn plan_train(
    spec: &Spec,
    keys: &[SaeKey],
    harvest_of: &BTreeMap<String, String>,
) -> (Vec<Stage>, Vec<SaeEntry>) {
    let mut groups: Vec<TrainGroup> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let store = &harvest_of[&k.dataset];
        let hook = spec.hook(k.layer);
        match groups
            .iter_mut()
            .find(|g| &g.source == store && g.hook == hook && g.lr == k.lr)
        {
            Some(g) => g.members.push(i),
            None => groups.push(TrainGroup {
                source: store.clone(),
                hook,
                lr: k.lr,
                members: vec![i],
                stream: None,
            }),
        }
    }
    train_stages(spec, keys, groups)
}

/// Train stages with `train.source = "model"`: SAEs grouped by (corpus,
/// lr), every layer of a group from one forward pass (a lane per hook).
fn plan_train_from_model(
    spec: &Spec,
    keys: &[SaeKey],
    rows_of: &BTreeMap<String, HarvestWork>,
) -> (Vec<Stage>, Vec<SaeEntry>) {
    let mut groups: Vec<(String, f64, Vec<usize>)> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match groups.iter_mut().find(|g| g.0 == k.dataset && g.1 == k.lr) {
            Some(g) => g.2.push(i),
            None => groups.push((k.dataset.clone(), k.lr, vec![i])),
        }
    }
    let groups = groups
        .into_iter()
        .map(|(corpus, lr, members)| {
            let mut layers: Vec<usize> = members.iter().map(|&i| keys[i].layer).collect();
            layers.sort_unstable();
            layers.dedup();
            // The vectors served are f32 whatever the harvest's dtype.
            let rows = HarvestWork {
                hooks: vec![],
                dtype: "f32".into(),
                ..rows_of[&corpus].clone()
            };
            TrainGroup {
                source: stage_hash("rows", &rows, &[]),
                hook: String::new(),
                lr,
                members,
                stream: Some(HarvestWork {
                    hooks: layers.iter().map(|&l| spec.hook(l)).collect(),
                    ..rows
                }),
            }
        })
        .collect();
    train_stages(spec, keys, groups)
}

/// One train stage per group, and the entries of every SAE.
fn train_stages(
    spec: &Spec,
    keys: &[SaeKey],
    groups: Vec<TrainGroup>,
) -> (Vec<Stage>, Vec<SaeEntry>) {
    let data_seed = spec.train.data_seed.unwrap_or(spec.baseline.seed);
    let settings = settings(&spec.train, data_seed);
    let mut entries: Vec<Option<SaeEntry>> = vec![None; keys.len()];
    let mut stages = Vec::new();
    for g in groups {
        let saes: Vec<PlannedSae> = g
            .members
            .iter()
            .map(|&i| {
                let hook = spec.hook(keys[i].layer);
                let id = stage_hash(
                    "sae",
                    &serde_json::json!({"hook": hook, "settings": settings, "key": keys[i]}),
                    std::slice::from_ref(&g.source),
                );
                let lane = g
                    .stream
                    .as_ref()
                    .map_or(0, |s| s.hooks.iter().position(|h| *h == hook).unwrap_or(0));
                PlannedSae {
                    id,
                    name: keys[i].label(),
                    key: keys[i].clone(),
                    lane,
                }
            })
            .collect();
        let work = TrainWork {
            hook: g.hook.clone(),
            lr: g.lr,
            settings: settings.clone(),
            saes,
            stream: g.stream.clone().map(Box::new),
            cadence: Some(Cadence {
                checkpoint_every: spec.train.checkpoint_every,
                log_every: spec.train.log_every,
            }),
        };
        // A store stage's hash is the train stage's upstream; streamed rows
        // are part of the work itself, named by their corpus after hashing.
        let deps = if g.stream.is_some() {
            vec![]
        } else {
            vec![g.source.clone()]
        };
        let hash = stage_hash("train", &work, &deps);
        for (sae, &i) in work.saes.iter().zip(&g.members) {
            entries[i] = Some(SaeEntry {
                id: sae.id.clone(),
                label: sae.name.clone(),
                train_stage: hash.clone(),
                key: keys[i].clone(),
            });
        }
        let mut work = work;
        if let Some(s) = work.stream.as_mut() {
            s.corpus = keys[g.members[0]].dataset.clone();
        }
        stages.push(Stage {
            kind: "train".into(),
            hash,
            deps,
            work: Work::Train(work),
        });
    }
    (stages, entries.into_iter().flatten().collect())
}

fn deps_of(refs: &[SaeRef]) -> Vec<String> {
    let mut d: Vec<String> = refs.iter().map(|r| r.train_stage.clone()).collect();
    d.sort();
    d.dedup();
    d
}

/// Hash of an analysis stage: its inputs and its SAEs' ids (not their
/// train stages, see the module doc).
fn analysis_stage(kind: &str, work: Work, refs: &[SaeRef]) -> Stage {
    let hash = stage_hash(kind, &work, &[]);
    Stage {
        kind: kind.into(),
        hash,
        deps: deps_of(refs),
        work,
    }
}

fn plan_eval(
    spec: &Spec,
    keys: &[SaeKey],
    model_id: &str,
    sae_ref: &dyn Fn(usize) -> SaeRef,
) -> Result<Vec<Stage>, PlanError> {
    let Some(e) = &spec.eval else {
        return Ok(vec![]);
    };
    let chosen: Vec<usize> = (0..keys.len())
        .filter(|&i| e.saes == "all" || differs_at_most_in_dataset(spec, &keys[i]))
        .collect();
    let refs: Vec<SaeRef> = chosen.iter().map(|&i| sae_ref(i)).collect();
    let mut out = Vec::new();
    for name in &e.corpora {
        let c = &spec.corpora[name];
        let work = EvalWork {
            model: spec.model.name.clone(),
            model_identity: model_id.to_string(),
            precision: spec.model.precision.clone(),
            corpus: String::new(),
            source: c.source.clone(),
            source_identity: ident(corpus_identity(&c.source))?,
            text_field: c.text_field.clone(),
            tokens: e.tokens,
            seq_len: spec.harvest.seq_len,
            batch_rows: e.batch_rows,
            splice_keep_bos: e.splice_keep_bos,
            intervention: "none".into(),
            seed: spec.baseline.seed,
            saes: refs.clone(),
        };
        let mut st = analysis_stage("eval", Work::Eval(work), &refs);
        if let Work::Eval(w) = &mut st.work {
            w.corpus = name.clone();
        }
        out.push(st);
    }
    Ok(out)
}

fn differs_at_most_in_dataset(spec: &Spec, k: &SaeKey) -> bool {
    let b = &spec.baseline;
    k.layer == b.layer
        && k.arch == b.arch
        && k.n == b.n
        && k.k == grid::uses_k(&b.arch).then_some(b.k)
        && k.seed == b.seed
        && k.lr == spec.train.lr
}

fn plan_stats(
    spec: &Spec,
    keys: &[SaeKey],
    model_id: &str,
    sae_ref: &dyn Fn(usize) -> SaeRef,
) -> Result<Vec<Stage>, PlanError> {
    let Some(s) = &spec.stats else {
        return Ok(vec![]);
    };
    let refs: Vec<SaeRef> = s
        .layers
        .iter()
        .filter_map(|&l| baseline_at_layer(spec, keys, l))
        .map(sae_ref)
        .collect();
    let c = &spec.corpora[&s.corpus];
    let mut out = Vec::new();
    for intervention in &s.interventions {
        let work = StatsWork {
            model: spec.model.name.clone(),
            model_identity: model_id.to_string(),
            precision: spec.model.precision.clone(),
            corpus: String::new(),
            source: c.source.clone(),
            source_identity: ident(corpus_identity(&c.source))?,
            text_field: c.text_field.clone(),
            rows: s.rows,
            seq_len: spec.harvest.seq_len,
            ma_window: s.ma_window,
            intervention: intervention.clone(),
            seed: spec.baseline.seed,
            layers: s.layers.clone(),
            saes: refs.clone(),
            ce_per_position: s.ce_per_position,
        };
        let mut st = analysis_stage("stats", Work::Stats(work), &refs);
        if let Work::Stats(w) = &mut st.work {
            w.corpus = s.corpus.clone();
        }
        out.push(st);
    }
    Ok(out)
}

fn plan_umap(spec: &Spec, keys: &[SaeKey], sae_ref: &dyn Fn(usize) -> SaeRef) -> Vec<Stage> {
    let Some(s) = spec.stats.as_ref().filter(|s| s.umap) else {
        return vec![];
    };
    let (layers, saes): (Vec<usize>, Vec<SaeRef>) = s
        .layers
        .iter()
        .filter_map(|&l| Some((l, sae_ref(baseline_at_layer(spec, keys, l)?))))
        .unzip();
    let p = saelab_analysis::umap::UmapParams::default();
    let work = UmapWork {
        saes: saes.clone(),
        layers,
        n_neighbors: p.n_neighbors,
        min_dist: saelab_results::f32_default(p.min_dist),
        seed: spec.baseline.seed,
    };
    vec![analysis_stage("umap", Work::Umap(work), &saes)]
}

fn plan_match(spec: &Spec, keys: &[SaeKey], sae_ref: &dyn Fn(usize) -> SaeRef) -> Vec<Stage> {
    let Some(m) = &spec.matching else {
        return vec![];
    };
    grid::pairs(keys, &m.categories)
        .into_iter()
        .map(|(i, j, cat)| {
            let (a, b) = (sae_ref(i), sae_ref(j));
            let refs = [a.clone(), b.clone()];
            let work = MatchWork {
                category: cat.to_string(),
                a,
                b,
                threshold: m.threshold,
                top_n: m.top_n,
                assignment: m.assignment,
                encoder: m.encoder,
                neurons: m.neurons,
            };
            analysis_stage("match", Work::Match(work), &refs)
        })
        .collect()
}
