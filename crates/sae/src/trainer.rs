//! The training loop's single step (SPEC §2.1): normalize the batch,
//! forward/backward, optional gradient clipping, decoder-gradient
//! projection, Adam, decoder renormalization; plus dead-latent and firing
//! statistics and a bit-exact resume state.
//!
//! Decoder constraint order: before Adam the rows are renormalized and the
//! component of each row's gradient parallel to its row removed (as in the
//! BatchTopK codebase); after Adam the rows are renormalized again so every
//! forward pass, and every saved file, sees unit-norm rows (unless
//! `renormalize_after_step` is off: the study's code exactly).

use crate::config::{BDecInit, TrainConfig};
use crate::engine::{loss_and_grads_with, LossParts, StepBuffers};
use crate::error::{Result, SaeError};
use crate::kernels::sum_sq;
use crate::optim::{self, Adam, DecoderConstraint};
use crate::params::SaeParams;
use crate::sae::Sae;
use crate::st::{InFile, OutTensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use saelab_kernels::phase_times::{PhaseTimes, Timed};
use std::collections::HashMap;
use std::path::Path;

/// What one step reports. Losses are in the normalized input space.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepMetrics {
    /// 1-based index of the step just taken.
    pub step: u64,
    /// Total loss.
    pub loss: f64,
    /// Elementwise MSE.
    pub mse: f64,
    /// Mean over rows of ‖x − x̂‖²/‖x‖².
    pub normalized_mse: f64,
    /// Fraction of variance unexplained.
    pub fvu: f64,
    /// Mean active latents per row.
    pub l0: f64,
    /// Fraction of latents dead (no firing for `dead_after` batches).
    pub dead_fraction: f64,
    /// AuxK loss.
    pub aux_loss: f64,
    /// Sparsity penalty (ReLU L1 / JumpReLU L0).
    pub penalty: f64,
    /// Learning rate used.
    pub lr: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// Trains one SAE step by step.
#[derive(Clone, Debug)]
pub struct Trainer {
    cfg: TrainConfig,
    sae: Sae,
    m: SaeParams,
    v: SaeParams,
    grads: SaeParams,
    step: u64,
    dead: Vec<u32>,
    fire_counts: Vec<u64>,
    tokens_seen: u64,
    /// The pre-activation buffer, reused across steps (not state).
    bufs: StepBuffers,
}

impl Trainer {
    /// A trainer with weights initialized from `cfg.seed` (ChaCha8).
    pub fn new(cfg: TrainConfig) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        Self::with_rng(cfg, &mut rng)
    }

    /// A trainer whose initial weights are drawn from `rng`.
    pub fn with_rng(cfg: TrainConfig, rng: &mut ChaCha8Rng) -> Result<Self> {
        cfg.validate()?;
        let s = &cfg.sae;
        let params = SaeParams::init(s.d_in, s.d_sae, s.arch.init_log_threshold(), rng);
        Self::with_params(cfg, params)
    }

    /// A trainer starting from given parameters (fresh optimizer state).
    pub fn with_params(cfg: TrainConfig, params: SaeParams) -> Result<Self> {
        cfg.validate()?;
        let sae = Sae::new(cfg.sae.clone(), params)?;
        let (d, n) = (cfg.sae.d_in, cfg.sae.d_sae);
        let t = cfg.sae.arch.has_log_threshold();
        Ok(Trainer {
            m: SaeParams::zeros(d, n, t),
            v: SaeParams::zeros(d, n, t),
            grads: SaeParams::zeros(d, n, t),
            step: 0,
            dead: vec![0; n],
            fire_counts: vec![0; n],
            tokens_seen: 0,
            bufs: StepBuffers::default(),
            sae,
            cfg,
        })
    }

    /// The model being trained.
    pub fn sae(&self) -> &Sae {
        &self.sae
    }

    /// The config.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Per-latent batches since the latent last fired.
    pub fn dead_counters(&self) -> &[u32] {
        &self.dead
    }

    /// Tokens (rows) trained on so far.
    pub fn tokens_seen(&self) -> u64 {
        self.tokens_seen
    }

    /// Firing frequency of each latent over all training rows so far.
    pub fn feature_frequency(&self) -> Vec<f32> {
        let t = self.tokens_seen.max(1) as f64;
        self.fire_counts
            .iter()
            .map(|&c| (c as f64 / t) as f32)
            .collect()
    }

    /// Gradients of the last step (after clipping and projection).
    pub fn last_grads(&self) -> &SaeParams {
        &self.grads
    }

    /// One training step on a B×d row-major batch.
    pub fn step(&mut self, batch: &[f32]) -> Result<StepMetrics> {
        let mut bufs = std::mem::take(&mut self.bufs);
        let out = self.step_with(batch, &mut bufs);
        self.bufs = bufs;
        out
    }

    /// [`Trainer::step`] with scratch buffers the caller keeps, e.g. one
    /// set shared by SAEs that step in turn (nothing in them outlives a
    /// step, so sharing changes no result).
    pub fn step_with(&mut self, batch: &[f32], bufs: &mut StepBuffers) -> Result<StepMetrics> {
        let mut t = PhaseTimes::start(Timed::Step);
        let rows = self.sae.check_batch(batch)?;
        let mut xt = std::mem::take(&mut bufs.xt);
        self.sae.preprocess_into(batch, &mut xt);
        t.mark("preprocess");
        if self.step == 0 {
            // Part of the first step, so a resumed run never repeats it.
            let d = self.sae.params.d;
            let b = match self.cfg.b_dec_init {
                BDecInit::Zeros => None,
                BDecInit::Mean => Some(crate::init::mean_rows(&xt, d)),
                BDecInit::GeometricMedian => {
                    Some(crate::init::geometric_median(&xt, d, 100, 1e-6).0)
                }
            };
            if let Some(b) = b {
                self.sae.params.b_dec = b.iter().map(|&v| v as f32).collect();
            }
        }
        let cfg = &self.cfg;
        let coeff_scale = if cfg.coeff_warmup_steps > 0 {
            ((self.step + 1) as f64 / cfg.coeff_warmup_steps as f64).min(1.0) as f32
        } else {
            1.0
        };
        let out = loss_and_grads_with(
            self.sae.arch.as_ref(),
            &self.sae.params,
            &xt,
            coeff_scale,
            &cfg.aux,
            &mut self.dead,
            &mut self.grads,
            cfg.encoder_precision,
            bufs,
        );
        bufs.xt = xt;
        t.extend(out.times);
        let grad_norm = self
            .grads
            .tensors()
            .iter()
            .map(|(_, t)| sum_sq(t))
            .sum::<f64>()
            .sqrt();
        if !out.loss.total.is_finite() {
            return Err(SaeError::Diverged {
                step: self.step + 1,
                what: "loss",
            });
        }
        if !grad_norm.is_finite() {
            return Err(SaeError::Diverged {
                step: self.step + 1,
                what: "gradient",
            });
        }
        self.sae.arch_mut().observe(&out.codes);
        for (&i, &v) in out.codes.idx.iter().zip(&out.codes.val) {
            if v > 0.0 {
                self.fire_counts[i as usize] += 1;
            }
        }
        self.tokens_seen += rows as u64;
        if let Some(max) = cfg.max_grad_norm {
            // torch.nn.utils.clip_grad_norm_ semantics.
            let c = (max as f64 / (grad_norm + 1e-6)).min(1.0) as f32;
            if c < 1.0 {
                for (_, t) in self.grads.tensors_mut() {
                    t.par_iter_mut().for_each(|v| *v *= c);
                }
            }
        }
        t.mark("grad norm+counts");
        let lr = cfg.lr * cfg.schedule.factor(self.step);
        self.step += 1;
        let adam = Adam::new(self.step, lr, cfg.beta1, cfg.beta2, cfg.eps);
        let constraint = DecoderConstraint {
            unit_norm: cfg.decoder_unit_norm,
            renormalize_after: cfg.renormalize_after_step,
        };
        optim::update(
            &mut self.sae.params,
            &mut self.grads,
            &mut self.m,
            &mut self.v,
            &adam,
            constraint,
        );
        t.mark("constraint+adam");
        t.print();
        let LossParts {
            total,
            mse,
            nmse,
            fvu,
            l0,
            penalty,
            aux,
            dead_fraction,
            ..
        } = out.loss;
        Ok(StepMetrics {
            step: self.step,
            loss: total,
            mse,
            normalized_mse: nmse,
            fvu,
            l0,
            dead_fraction,
            aux_loss: aux,
            penalty,
            lr,
            grad_norm,
        })
    }

    /// Snapshot of everything needed to resume bit-exactly.
    pub fn state(&self) -> TrainerState {
        TrainerState {
            config_json: serde_json::to_string(&self.cfg).unwrap_or_default(),
            step: self.step,
            params: self.sae.params.clone(),
            adam_m: self.m.clone(),
            adam_v: self.v.clone(),
            dead: self.dead.clone(),
            fire_counts: self.fire_counts.clone(),
            tokens_seen: self.tokens_seen,
            arch_state: self.sae.arch.state(),
        }
    }

    /// Resumes from a state; `cfg` must equal the config that wrote it.
    pub fn from_state(cfg: TrainConfig, state: TrainerState) -> Result<Self> {
        cfg.validate()?;
        // Compare as typed configs: JSON values of f32 fields do not
        // round-trip exactly through text.
        let got: TrainConfig = serde_json::from_str(&state.config_json)
            .map_err(|e| SaeError::StateMismatch(format!("state config is unreadable: {e}")))?;
        if got != cfg {
            let (a, b) = (serde_json::to_value(&cfg), serde_json::to_value(&got));
            let mut diff = Vec::new();
            if let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) {
                for (k, v) in &a {
                    if b.get(k) != Some(v) {
                        diff.push(k.clone());
                    }
                }
            }
            return Err(SaeError::StateMismatch(format!(
                "config differs from the one that wrote the state in: {}",
                if diff.is_empty() {
                    "(structure)".to_string()
                } else {
                    diff.join(", ")
                }
            )));
        }
        let mut t = Self::with_params(cfg, state.params)?;
        let shape_ok = |p: &SaeParams| {
            p.tensors()
                .iter()
                .zip(t.m.tensors())
                .all(|((_, a), (_, b))| a.len() == b.len())
                && p.tensors().len() == t.m.tensors().len()
        };
        if !shape_ok(&state.adam_m) || !shape_ok(&state.adam_v) {
            return Err(SaeError::StateMismatch(
                "Adam moments have the wrong shapes".into(),
            ));
        }
        let n = t.cfg.sae.d_sae;
        if state.dead.len() != n || state.fire_counts.len() != n {
            return Err(SaeError::StateMismatch(
                "per-latent counters have the wrong length".into(),
            ));
        }
        t.sae.arch_mut().set_state(&state.arch_state)?;
        t.m = state.adam_m;
        t.v = state.adam_v;
        t.step = state.step;
        t.dead = state.dead;
        t.fire_counts = state.fire_counts;
        t.tokens_seen = state.tokens_seen;
        Ok(t)
    }
}

/// Everything needed to resume training bit-exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainerState {
    /// The TrainConfig that wrote it, as JSON.
    pub config_json: String,
    /// Steps taken.
    pub step: u64,
    /// Parameters.
    pub params: SaeParams,
    /// Adam first moments.
    pub adam_m: SaeParams,
    /// Adam second moments.
    pub adam_v: SaeParams,
    /// Dead counters.
    pub dead: Vec<u32>,
    /// Per-latent firing counts.
    pub fire_counts: Vec<u64>,
    /// Rows trained on.
    pub tokens_seen: u64,
    /// Architecture state (BatchTopK θ).
    pub arch_state: Vec<f32>,
}

const STATE_MAGIC: &str = "saelab_trainer_state_v1";

impl TrainerState {
    /// Writes the state to one safetensors file (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut ts = Vec::new();
        for (prefix, p) in [
            ("param", &self.params),
            ("adam_m", &self.adam_m),
            ("adam_v", &self.adam_v),
        ] {
            for (name, t) in p.tensors() {
                ts.push(OutTensor::f32(
                    &format!("{prefix}.{name}"),
                    vec![t.len()],
                    t,
                ));
            }
        }
        ts.push(OutTensor::u32("dead", &self.dead));
        ts.push(OutTensor::u64("fire_counts", &self.fire_counts));
        ts.push(OutTensor::f32(
            "arch_state",
            vec![self.arch_state.len()],
            &self.arch_state,
        ));
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), STATE_MAGIC.to_string());
        meta.insert("config".to_string(), self.config_json.clone());
        meta.insert("step".to_string(), self.step.to_string());
        meta.insert("tokens_seen".to_string(), self.tokens_seen.to_string());
        meta.insert("d".to_string(), self.params.d.to_string());
        meta.insert("n".to_string(), self.params.n.to_string());
        crate::st::write_tensors(path, &ts, Some(meta))
    }

    /// Reads a state written by [`TrainerState::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let f = InFile::open(path)?;
        let meta = f.metadata()?;
        let corrupt = |msg: &str| SaeError::Corrupt {
            path: path.into(),
            msg: msg.to_string(),
        };
        if meta.get("format").map(String::as_str) != Some(STATE_MAGIC) {
            return Err(corrupt("not a saelab trainer state"));
        }
        let num = |k: &str| -> Result<u64> {
            meta.get(k)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| corrupt(&format!("metadata {k} missing or invalid")))
        };
        let (d, n) = (num("d")? as usize, num("n")? as usize);
        let read = |prefix: &str| -> Result<SaeParams> {
            let get = |name: &str| f.f32(&format!("{prefix}.{name}")).map(|t| t.0);
            let log_threshold = if f.has(&format!("{prefix}.log_threshold")) {
                get("log_threshold")?
            } else {
                vec![]
            };
            Ok(SaeParams {
                d,
                n,
                w_enc_t: get("w_enc_t")?,
                b_enc: get("b_enc")?,
                w_dec: get("w_dec")?,
                b_dec: get("b_dec")?,
                log_threshold,
            })
        };
        Ok(TrainerState {
            config_json: meta
                .get("config")
                .cloned()
                .ok_or_else(|| corrupt("no config"))?,
            step: num("step")?,
            params: read("param")?,
            adam_m: read("adam_m")?,
            adam_v: read("adam_v")?,
            dead: f.u32("dead")?,
            fire_counts: f.u64("fire_counts")?,
            tokens_seen: num("tokens_seen")?,
            arch_state: f.f32("arch_state")?.0,
        })
    }
}
