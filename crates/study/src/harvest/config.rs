//! [`HarvestConfig`]: what a harvest is asked for, its checks against the
//! loaded model, and the [`StoreSpec`] it becomes (the manifest records it,
//! and a resumed or complete store must match it field by field).

use super::HarvestError;
use saelab_data::corpus::Corpus;
use saelab_data::packing::Packing;
use saelab_data::store::{DatasetInfo, ModelInfo, StoreDtype, StoreSpec};
use saelab_lm::{HookPoint, Model, PosIntervention, Tokenizer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One harvest: which activations of which model over which corpus, and how
/// they are laid out in the store. The defaults are the CLI's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HarvestConfig {
    /// The model as the user named it (`smollm2-135m`, a path, a hub id);
    /// recorded in the manifest as `model.id`.
    pub model: String,
    /// The corpus as the user named it (`wiki`, a path); recorded in the
    /// manifest as `dataset.name`.
    pub dataset: String,
    /// Hook points to store (TransformerLens names in files); one forward
    /// pass reads them all.
    #[serde(with = "hook_names")]
    pub hooks: Vec<HookPoint>,
    /// Tokens to harvest, rounded up to whole rows; 0 = until the corpus ends.
    pub tokens: u64,
    /// Tokens per row.
    pub seq_len: usize,
    pub packing: Packing,
    /// Element type of the stored activations.
    pub dtype: StoreDtype,
    pub pos_intervention: PosIntervention,
    /// Seed of the shuffle intervention's permutation stream.
    pub seed: u64,
    /// Rows per forward pass (recorded: it fixes the permutation per row).
    pub batch_rows: usize,
    /// Rows per shard file, a positive multiple of `batch_rows`.
    pub rows_per_shard: usize,
    /// Text field of .jsonl / .parquet corpora.
    pub text_field: String,
}

impl Default for HarvestConfig {
    fn default() -> Self {
        HarvestConfig {
            model: "smollm2-135m".into(),
            dataset: "wiki".into(),
            hooks: vec![HookPoint::new(8, saelab_lm::Site::ResidPre)],
            tokens: 262_144,
            seq_len: 128,
            packing: Packing::Concat,
            dtype: StoreDtype::F32,
            pos_intervention: PosIntervention::None,
            seed: 49,
            batch_rows: 16,
            rows_per_shard: 1024,
            text_field: "text".into(),
        }
    }
}

impl HarvestConfig {
    /// Rows the harvest aims for (`None`: until the corpus ends).
    pub fn target_rows(&self) -> Option<u64> {
        (self.tokens > 0).then(|| self.tokens.div_ceil(self.seq_len.max(1) as u64))
    }

    /// Checks what needs no model (shard and batch sizes, at least one
    /// hook), so a caller can refuse a bad config before loading a model.
    pub fn check(&self) -> Result<(), HarvestError> {
        let bad = |field: &'static str, value: String, msg: String| HarvestError::Config {
            field,
            value,
            msg,
        };
        if self.batch_rows == 0 {
            return Err(bad("batch_rows", "0".into(), "must be > 0".into()));
        }
        if self.rows_per_shard == 0 || !self.rows_per_shard.is_multiple_of(self.batch_rows) {
            return Err(bad(
                "rows_per_shard",
                self.rows_per_shard.to_string(),
                format!(
                    "must be a positive multiple of batch_rows ({})",
                    self.batch_rows
                ),
            ));
        }
        if self.hooks.is_empty() {
            return Err(bad("hooks", "[]".into(), "name at least one hook".into()));
        }
        Ok(())
    }

    /// [`Self::check`], then against `model`: every hook within its layers,
    /// `seq_len` within its context.
    pub fn validate(&self, model: &Model) -> Result<(), HarvestError> {
        self.check()?;
        for h in &self.hooks {
            h.check(model.info.n_layers)
                .map_err(|err| HarvestError::model(model, err))?;
        }
        if self.seq_len == 0 || self.seq_len > model.info.n_ctx {
            return Err(HarvestError::Config {
                field: "seq_len",
                value: self.seq_len.to_string(),
                msg: format!(
                    "must be in 1..={} (the context of model {})",
                    model.info.n_ctx, model.info.id
                ),
            });
        }
        Ok(())
    }

    /// The store spec of this harvest: the config plus what identifies the
    /// model weights, the corpus content and the tokenizer.
    pub(crate) fn store_spec(
        &self,
        model: &Model,
        tokenizer: &Tokenizer,
        corpus: &Corpus,
    ) -> Result<StoreSpec, HarvestError> {
        let corpus_hash = corpus.content_hash()?;
        let mut extra = BTreeMap::new();
        let mut put = |k: &str, v: serde_json::Value| extra.insert(k.to_string(), v);
        put("tokenizer", tokenizer.kind.clone().into());
        put("bos", tokenizer.bos.into());
        put("eos", tokenizer.eos.into());
        put("batch_rows", self.batch_rows.into());
        put("text_field", self.text_field.clone().into());
        put("precision", model.info.precision.to_string().into());
        // The kernels behind that precision on this machine: their results
        // agree to f32 rounding, not bit for bit, so a store is resumed
        // only on the path it was started on.
        put(
            "product_path",
            crate::machine::product_path(model.info.precision).into(),
        );
        put("model_positions", model.info.positions.clone().into());
        Ok(StoreSpec {
            model: ModelInfo {
                id: self.model.clone(),
                hash: format!("sha256:{}", model.info.weights_sha256),
            },
            hooks: self.hooks.iter().map(|h| h.to_string()).collect(),
            d: model.info.d_model,
            dtype: self.dtype,
            seq_len: self.seq_len,
            packing: self.packing.as_str().to_string(),
            dataset: DatasetInfo {
                name: self.dataset.clone(),
                hash: format!("sha256:{corpus_hash}"),
            },
            pos_intervention: self.pos_intervention.to_string(),
            seed: self.seed,
            rows_per_shard: self.rows_per_shard,
            target_rows: self.target_rows(),
            extra,
        })
    }
}

/// Hook points as their TransformerLens names in config files.
mod hook_names {
    use saelab_lm::HookPoint;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hooks: &[HookPoint], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hooks.iter().map(|h| h.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HookPoint>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|h| h.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}
