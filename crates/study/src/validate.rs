//! Validation of a parsed [`Spec`]: every value in range and every
//! reference declared, checked before any stage runs. Each error names the
//! file, the entry (`corpora.wiki`, `grid[2].layer`, `match.categories`)
//! and the problem.

use crate::grid;
use crate::spec::{Spec, SpecError, ARCHS, CATEGORIES, INTERVENTIONS, SITES};
use std::path::Path;

/// Layers of the models we know by name, for range checks at plan time.
pub fn known_layers(model: &str) -> Option<usize> {
    match model {
        "smollm2-135m" | "smollm2-135m-instruct" | "smollm2" => Some(30),
        "gpt2" | "openai-community/gpt2" => Some(12),
        _ => None,
    }
}

struct Check<'a> {
    file: &'a Path,
}

impl Check<'_> {
    fn err(&self, entry: impl Into<String>, problem: impl Into<String>) -> SpecError {
        SpecError {
            file: self.file.to_path_buf(),
            entry: entry.into(),
            problem: problem.into(),
        }
    }

    fn one_of(&self, entry: &str, v: &str, allowed: &[&str]) -> Result<(), SpecError> {
        if allowed.contains(&v) {
            Ok(())
        } else {
            Err(self.err(entry, format!("`{v}` is not one of {}", allowed.join(", "))))
        }
    }

    fn positive(&self, entry: &str, v: u64) -> Result<(), SpecError> {
        if v == 0 {
            Err(self.err(entry, "must be at least 1"))
        } else {
            Ok(())
        }
    }

    fn corpus(&self, spec: &Spec, entry: &str, name: &str) -> Result<(), SpecError> {
        if spec.corpora.contains_key(name) {
            Ok(())
        } else {
            let declared: Vec<&str> = spec.corpora.keys().map(String::as_str).collect();
            Err(self.err(
                entry,
                format!(
                    "corpus `{name}` is not declared (declared: {})",
                    declared.join(", ")
                ),
            ))
        }
    }
}

/// All checks of a spec; the first failure is returned.
pub fn validate(spec: &Spec, file: &Path) -> Result<(), SpecError> {
    let c = Check { file };
    if spec.name.is_empty() || spec.name.contains(['/', '\\']) {
        return Err(c.err("name", "must be a plain, non-empty folder name"));
    }
    c.one_of("model.precision", &spec.model.precision, &["f32", "bf16"])?;
    if spec.corpora.is_empty() {
        return Err(c.err("corpora", "declares no corpus"));
    }
    for (name, corpus) in &spec.corpora {
        if corpus.source.is_empty() {
            return Err(c.err(format!("corpora.{name}.source"), "is empty"));
        }
    }
    check_harvest(spec, &c)?;
    check_train(spec, &c)?;
    check_grid(spec, &c)?;
    check_analyses(spec, &c)
}

fn check_harvest(spec: &Spec, c: &Check) -> Result<(), SpecError> {
    let h = &spec.harvest;
    c.positive("harvest.seq_len", h.seq_len as u64)?;
    c.positive("harvest.batch_rows", h.batch_rows as u64)?;
    if h.rows_per_shard == 0 || !h.rows_per_shard.is_multiple_of(h.batch_rows) {
        return Err(c.err(
            "harvest.rows_per_shard",
            format!(
                "must be a positive multiple of batch_rows ({})",
                h.batch_rows
            ),
        ));
    }
    c.one_of("harvest.packing", &h.packing, &["concat", "bos_rows"])?;
    c.one_of("harvest.dtype", &h.dtype, &["f32", "f16", "bf16"])?;
    c.one_of("harvest.site", &h.site, SITES)
}

fn check_train(spec: &Spec, c: &Check) -> Result<(), SpecError> {
    let t = &spec.train;
    c.one_of("train.source", &t.source, &["store", "model"])?;
    c.positive("train.batch", t.batch as u64)?;
    c.positive("train.checkpoint_every", t.checkpoint_every)?;
    c.positive("train.log_every", t.log_every)?;
    c.positive("train.buffer_vectors", t.buffer_vectors as u64)?;
    if t.tokens.is_some() && t.steps.is_some() {
        return Err(c.err("train", "give `tokens` or `steps`, not both"));
    }
    if let Some(tok) = t.tokens {
        if tok < t.batch as u64 {
            return Err(c.err(
                "train.tokens",
                format!("{tok} tokens make no full batch of {}", t.batch),
            ));
        }
    }
    if t.source == "model" && t.tokens.is_none() && t.steps.is_none() {
        return Err(c.err(
            "train",
            "source = \"model\" needs `tokens` or `steps` (there is no store whose size sets \
             one pass)",
        ));
    }
    if t.steps == Some(0) {
        return Err(c.err("train.steps", "must be at least 1"));
    }
    if !(t.lr.is_finite() && t.lr > 0.0) {
        return Err(c.err("train.lr", format!("{} must be finite and > 0", t.lr)));
    }
    c.one_of("train.lr_decay", &t.lr_decay, &["none", "cosine", "linear"])?;
    c.one_of(
        "train.b_dec_init",
        &t.b_dec_init,
        &["zeros", "mean", "geometric-median"],
    )?;
    c.one_of(
        "train.encoder_precision",
        &t.encoder_precision,
        &["f32", "bf16"],
    )
}

fn check_grid(spec: &Spec, c: &Check) -> Result<(), SpecError> {
    let n_layers = spec
        .model
        .n_layers
        .or_else(|| known_layers(&spec.model.name));
    let b = &spec.baseline;
    c.corpus(spec, "baseline.dataset", &b.dataset)?;
    c.one_of("baseline.arch", &b.arch, ARCHS)?;
    check_layer(c, "baseline.layer", b.layer, n_layers)?;
    c.positive("baseline.n", b.n as u64)?;
    c.positive("baseline.k", b.k as u64)?;
    let mut names: Vec<&str> = Vec::new();
    for (i, g) in spec.grid.iter().enumerate() {
        let at = |axis: &str| {
            format!(
                "grid[{i}]{}",
                if axis.is_empty() {
                    String::new()
                } else {
                    format!(".{axis}")
                }
            )
        };
        if let Some(name) = &g.name {
            if names.contains(&name.as_str()) {
                return Err(c.err(at("name"), format!("duplicate grid name `{name}`")));
            }
            names.push(name);
        }
        let empty = |v: Option<usize>, axis: &str| match v {
            Some(0) => Err(c.err(
                at(axis),
                "is an empty list (leave the axis out to use the baseline)",
            )),
            _ => Ok(()),
        };
        empty(g.dataset.as_ref().map(Vec::len), "dataset")?;
        empty(g.layer.as_ref().map(Vec::len), "layer")?;
        empty(g.arch.as_ref().map(Vec::len), "arch")?;
        empty(g.n.as_ref().map(Vec::len), "n")?;
        empty(g.k.as_ref().map(Vec::len), "k")?;
        empty(g.seed.as_ref().map(Vec::len), "seed")?;
        empty(g.lr.as_ref().map(Vec::len), "lr")?;
        empty(g.l0_coeff.as_ref().map(Vec::len), "l0_coeff")?;
        for d in g.dataset.iter().flatten() {
            c.corpus(spec, &at("dataset"), d)?;
        }
        for &l in g.layer.iter().flatten() {
            check_layer(c, &at("layer"), l, n_layers)?;
        }
        for a in g.arch.iter().flatten() {
            c.one_of(&at("arch"), a, ARCHS)?;
        }
        for &v in g.n.iter().flatten().chain(g.k.iter().flatten()) {
            c.positive(&at("n/k"), v as u64)?;
        }
        for &lr in g.lr.iter().flatten() {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(c.err(at("lr"), format!("{lr} must be finite and > 0")));
            }
        }
    }
    for key in grid::expand(spec) {
        if let Some(k) = key.k {
            if k > key.n {
                return Err(c.err(
                    "grid",
                    format!(
                        "SAE {}: k {k} exceeds the dictionary size {}",
                        key.label(),
                        key.n
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_layer(
    c: &Check,
    entry: &str,
    layer: usize,
    n_layers: Option<usize>,
) -> Result<(), SpecError> {
    match n_layers {
        Some(n) if layer >= n => Err(c.err(
            entry,
            format!(
                "layer {layer} is out of range: the model has layers 0..{}",
                n - 1
            ),
        )),
        _ => Ok(()),
    }
}

fn check_analyses(spec: &Spec, c: &Check) -> Result<(), SpecError> {
    let saes = grid::expand(spec);
    if let Some(e) = &spec.eval {
        if e.corpora.is_empty() {
            return Err(c.err("eval.corpora", "is empty"));
        }
        for name in &e.corpora {
            c.corpus(spec, "eval.corpora", name)?;
        }
        c.positive("eval.tokens", e.tokens)?;
        c.positive("eval.batch_rows", e.batch_rows as u64)?;
        c.one_of("eval.saes", &e.saes, &["all", "baseline-dataset"])?;
    }
    if let Some(s) = &spec.stats {
        c.corpus(spec, "stats.corpus", &s.corpus)?;
        if let Some(d) = &s.sae_dataset {
            c.corpus(spec, "stats.sae_dataset", d)?;
        }
        c.positive("stats.rows", s.rows as u64)?;
        c.positive("stats.ma_window", s.ma_window as u64)?;
        if s.layers.is_empty() || s.interventions.is_empty() {
            return Err(c.err("stats", "`layers` and `interventions` must not be empty"));
        }
        for i in &s.interventions {
            c.one_of("stats.interventions", i, INTERVENTIONS)?;
        }
        for &l in &s.layers {
            if crate::plan::baseline_at_layer(spec, &saes, l).is_none() {
                return Err(c.err(
                    "stats.layers",
                    format!("layer {l}: no SAE of the grid has the baseline settings at this layer (add it to a grid block's `layer`)"),
                ));
            }
        }
    }
    if let Some(m) = &spec.matching {
        if m.categories.is_empty() {
            return Err(c.err("match.categories", "is empty"));
        }
        if !(m.threshold.is_finite() && (0.0..1.0).contains(&m.threshold)) {
            return Err(c.err("match.threshold", "must be in [0, 1)"));
        }
        c.positive("match.top_n", m.top_n as u64)?;
        for cat in &m.categories {
            c.one_of("match.categories", cat, CATEGORIES)?;
            if grid::pairs(&saes, std::slice::from_ref(cat)).is_empty() {
                return Err(c.err(
                    "match.categories",
                    format!("comparison `{cat}` has no pairs: no two SAEs of the grid differ only in it"),
                ));
            }
        }
    }
    Ok(())
}
