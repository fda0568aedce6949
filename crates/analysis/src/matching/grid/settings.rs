//! The comparable settings of an SAE (read from its loaded config and its
//! `cfg.json` metadata), which of them differ between two SAEs, and the
//! study's Table 1 category of a pair that differs in exactly one.
//!
//! A setting unknown for both SAEs counts as equal; known for one only, as
//! different, except where the architecture explains it (see [`differing`]).

use super::error::{GridError, Result};
use saelab_sae::{ArchSpec, Sae};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// One compared setting, in Table 1 order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Setting {
    /// `metadata.dataset_path`.
    Dataset,
    /// Training seed (with the data seed when recorded).
    Seed,
    /// Architecture k (TopK family).
    K,
    /// Dictionary size n (d_sae).
    N,
    /// Architecture name.
    Architecture,
    /// Hook point (and so layer).
    Hook,
    /// Everything else that shapes training.
    Hparams,
}

impl Setting {
    /// Every setting, in table order.
    pub const ALL: [Setting; 7] = [
        Setting::Dataset,
        Setting::Seed,
        Setting::K,
        Setting::N,
        Setting::Architecture,
        Setting::Hook,
        Setting::Hparams,
    ];

    /// Name in the tables and in `grid.json`.
    pub fn name(self) -> &'static str {
        match self {
            Setting::Dataset => "dataset",
            Setting::Seed => "seed",
            Setting::K => "k",
            Setting::N => "n",
            Setting::Architecture => "architecture",
            Setting::Hook => "hook",
            Setting::Hparams => "hparams",
        }
    }

    /// The study's Table 1 category of a pair differing only in this.
    pub fn category(self) -> Category {
        match self {
            Setting::Dataset => Category::Dataset,
            Setting::Seed => Category::Seed,
            Setting::K => Category::Sparsity,
            Setting::N => Category::DictionarySize,
            Setting::Architecture => Category::Architecture,
            Setting::Hook => Category::Layer,
            Setting::Hparams => Category::Other,
        }
    }
}

/// Category of a pair of SAEs in the study's Table 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Dataset,
    Seed,
    DictionarySize,
    Architecture,
    /// k of the TopK family.
    Sparsity,
    /// Hook point.
    Layer,
    /// Anything else, several settings, or none recorded.
    Other,
}

impl Category {
    /// Name in `table1.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Category::Dataset => "dataset",
            Category::Seed => "seed",
            Category::DictionarySize => "dictionary_size",
            Category::Architecture => "architecture",
            Category::Sparsity => "sparsity",
            Category::Layer => "layer",
            Category::Other => "other",
        }
    }
}

/// The settings of one SAE that the grid tables compare.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaeSettings {
    /// `metadata.dataset_path` (or top-level `dataset_path`).
    pub dataset: Option<String>,
    /// Training seed: `metadata.saelab_train_config.seed`, else SAELens `seed`.
    pub seed: Option<String>,
    /// `metadata.data_seed`, shown beside the seed when recorded.
    pub data_seed: Option<String>,
    /// Model width d (not compared: SAEs of different d cannot be matched).
    pub d_in: usize,
    /// Dictionary size.
    pub n: usize,
    /// k of the TopK family; None for other architectures.
    pub k: Option<usize>,
    /// Architecture name (`topk`, `jumprelu`, ...).
    pub architecture: String,
    /// The architecture's own hyperparameters other than k, flattened
    /// (`l0_coeff` → JSON text of the value).
    pub arch_hparams: BTreeMap<String, String>,
    /// TransformerLens hook name.
    pub hook: Option<String>,
    /// Layer parsed from the hook name (`blocks.L.…`).
    pub layer: Option<usize>,
    /// Other hyperparameters, flattened with dotted keys: `input_unit_norm`,
    /// `train.*` (training config without seed and shape), `steps`, `batch`.
    pub hparams: BTreeMap<String, String>,
}

impl SaeSettings {
    /// The value of `s` as shown in the tables and `grid.json` (None = not
    /// recorded).
    pub fn value(&self, s: Setting) -> Option<String> {
        match s {
            Setting::Dataset => self.dataset.clone(),
            Setting::Seed => self.seed.as_ref().map(|seed| match &self.data_seed {
                Some(ds) => format!("{seed} (data {ds})"),
                None => seed.clone(),
            }),
            Setting::K => self.k.map(|k| k.to_string()),
            Setting::N => Some(self.n.to_string()),
            Setting::Architecture => Some(self.architecture.clone()),
            Setting::Hook => self.hook.clone(),
            Setting::Hparams => Some(self.hparams_text()),
        }
    }

    /// `arch.x=v; input_unit_norm=w; …`: every hyperparameter entry, the
    /// entries sorted as text (the form `grid.json` has always shown).
    pub fn hparams_text(&self) -> String {
        let arch = self
            .arch_hparams
            .iter()
            .map(|(k, v)| format!("arch.{k}={v}"));
        let other = self.hparams.iter().map(|(k, v)| format!("{k}={v}"));
        let mut all: Vec<String> = arch.chain(other).collect();
        all.sort();
        all.join("; ")
    }
}

/// Reads the settings of the SAE loaded from `dir`: shape and architecture
/// from the loaded config, the rest from `dir/cfg.json` when present.
pub fn read_settings(dir: &Path, sae: &Sae) -> Result<SaeSettings> {
    let cfg = read_cfg(dir)?;
    let meta = cfg.get("metadata").unwrap_or(&Value::Null);
    let field = |k: &str| meta.get(k).or_else(|| cfg.get(k)).filter(|v| !v.is_null());
    let train = meta.get("saelab_train_config");
    let seed = train.and_then(|t| t.get("seed")).or_else(|| field("seed"));
    let sc = sae.config();
    let hook = saelab_sae::sae_info(dir).ok().and_then(|i| i.hook_name);
    Ok(SaeSettings {
        dataset: field("dataset_path").map(text),
        seed: seed.map(text),
        data_seed: meta.get("data_seed").filter(|v| !v.is_null()).map(text),
        d_in: sc.d_in,
        n: sc.d_sae,
        k: arch_k(&sc.arch),
        architecture: sc.arch.name().to_string(),
        arch_hparams: arch_hparams(&sc.arch),
        layer: hook.as_deref().and_then(layer_of),
        hook,
        hparams: other_hparams(sc.input_unit_norm, meta, train),
    })
}

fn read_cfg(dir: &Path) -> Result<Value> {
    let path = dir.join(saelab_sae::io::CFG_FILE);
    if !path.exists() {
        return Ok(Value::Null);
    }
    let text = std::fs::read_to_string(&path).map_err(|source| GridError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| GridError::Json { path, source })
}

/// A JSON value as table text: strings bare, anything else as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn arch_k(arch: &ArchSpec) -> Option<usize> {
    match arch {
        ArchSpec::TopK { k }
        | ArchSpec::BatchTopK { k, .. }
        | ArchSpec::MatryoshkaBatchTopK { k, .. } => Some(*k),
        _ => None,
    }
}

fn arch_hparams(arch: &ArchSpec) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(Value::Object(mut m)) = serde_json::to_value(arch) {
        m.remove("architecture");
        m.remove("k");
        flatten("", &Value::Object(m), &mut out);
    }
    out
}

/// Everything else that shapes training: input normalization, the
/// training config other than seed and shape, steps and batch.
fn other_hparams(
    input_unit_norm: bool,
    meta: &Value,
    train: Option<&Value>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("input_unit_norm".into(), input_unit_norm.to_string());
    if let Some(Value::Object(t)) = train {
        let mut t = t.clone();
        t.remove("seed");
        t.remove("sae");
        flatten("train", &Value::Object(t), &mut out);
    }
    for key in ["steps", "batch"] {
        if let Some(v) = meta.get(key) {
            flatten(key, v, &mut out);
        }
    }
    out
}

/// Nested JSON as dotted keys → JSON text of the leaves.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// `blocks.L.…` → L.
fn layer_of(hook: &str) -> Option<usize> {
    hook.strip_prefix("blocks.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// The settings in which `a` and `b` differ, in table order.
///
/// What an architecture implies belongs to the architecture: when the
/// architectures differ, their own hyperparameters are not compared, and
/// neither is k when only one of them has a k (TopK vs JumpReLU is an
/// architecture pair, not architecture and sparsity).
pub fn differing(a: &SaeSettings, b: &SaeSettings) -> Vec<Setting> {
    let arch_differs = a.architecture != b.architecture;
    Setting::ALL
        .into_iter()
        .filter(|&s| match s {
            Setting::K if arch_differs && (a.k.is_none() || b.k.is_none()) => false,
            Setting::Hparams if arch_differs => a.hparams != b.hparams,
            Setting::Hparams => a.hparams != b.hparams || a.arch_hparams != b.arch_hparams,
            _ => a.value(s) != b.value(s),
        })
        .collect()
}

/// The Table 1 category of a pair that differs in exactly one setting;
/// None when several or none differ.
pub fn category_of(a: &SaeSettings, b: &SaeSettings) -> Option<Category> {
    match differing(a, b).as_slice() {
        [one] => Some(one.category()),
        _ => None,
    }
}

/// The two values of `s` as shown in the tables: for [`Setting::Hparams`]
/// only the entries that differ; `?` for a value not recorded.
pub fn setting_values(s: Setting, a: &SaeSettings, b: &SaeSettings) -> (String, String) {
    let (va, vb) = (a.value(s), b.value(s));
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    let (Setting::Hparams, Some(ta), Some(tb)) = (s, &va, &vb) else {
        return (show(&va), show(&vb));
    };
    let ea: Vec<&str> = ta.split("; ").collect();
    let eb: Vec<&str> = tb.split("; ").collect();
    let only = |x: &[&str], y: &[&str]| {
        x.iter()
            .filter(|e| !y.contains(e))
            .copied()
            .collect::<Vec<_>>()
            .join("; ")
    };
    (only(&ea, &eb), only(&eb, &ea))
}
