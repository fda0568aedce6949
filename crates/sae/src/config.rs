//! Model and training configuration with the SPEC §2.1 defaults, and their
//! validation (every user-facing range check lives here). Plain data only:
//! the engine and the trainer read these types, this module imports
//! neither.

use crate::arch::ArchSpec;
use crate::error::{Result, SaeError};
use serde::{Deserialize, Serialize};

/// Shape, architecture and input handling of an SAE.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaeConfig {
    /// Input width d.
    pub d_in: usize,
    /// Dictionary size n.
    pub d_sae: usize,
    /// Architecture and its hyperparameters.
    pub arch: ArchSpec,
    /// Per-row unit normalization of inputs (SPEC §2.1; SAELens calls the
    /// same transform `normalize_activations = "layer_norm"`).
    pub input_unit_norm: bool,
    /// SAELens `expected_average_only_in`: inputs are multiplied by this
    /// constant (estimate it with [`expected_average_scale`] so the mean
    /// ‖x‖ becomes √d) and outputs divided by it; folded into the weights
    /// at save. Exclusive with `input_unit_norm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_scale: Option<f32>,
}

impl SaeConfig {
    /// A config with `input_unit_norm` on.
    pub fn new(d_in: usize, d_sae: usize, arch: ArchSpec) -> Self {
        SaeConfig {
            d_in,
            d_sae,
            arch,
            input_unit_norm: true,
            input_scale: None,
        }
    }

    /// Range checks of the shape and the architecture's hyperparameters.
    pub fn validate(&self) -> Result<()> {
        if self.d_in < 1 {
            return Err(SaeError::InvalidConfig("d_in must be ≥ 1".into()));
        }
        if self.d_sae < 1 {
            return Err(SaeError::InvalidConfig("d_sae (n) must be ≥ 1".into()));
        }
        if self.d_sae > u32::MAX as usize {
            return Err(SaeError::InvalidConfig("d_sae must fit in u32".into()));
        }
        if let Some(sc) = self.input_scale {
            if !(sc.is_finite() && sc > 0.0) {
                return Err(SaeError::InvalidConfig(format!(
                    "input_scale {sc} must be finite and > 0"
                )));
            }
            if self.input_unit_norm {
                return Err(SaeError::InvalidConfig(
                    "input_scale and input_unit_norm are exclusive (unit norm already fixes the scale)".into(),
                ));
            }
        }
        self.arch.build(self.d_sae).map(|_| ())
    }
}

/// SAELens `expected_average_only_in` factor √d / mean_b ‖x_b‖ of a sample
/// of rows (B×d); `None` if the sample is empty or all zero.
pub fn expected_average_scale(x: &[f32], d: usize) -> Option<f32> {
    if d == 0 || x.len() < d {
        return None;
    }
    let rows = x.len() / d;
    let mean_norm = x
        .chunks_exact(d)
        .map(|r| {
            r.iter()
                .map(|&v| (v as f64) * (v as f64))
                .sum::<f64>()
                .sqrt()
        })
        .sum::<f64>()
        / rows as f64;
    (mean_norm > 0.0 && mean_norm.is_finite()).then(|| ((d as f64).sqrt() / mean_norm) as f32)
}

/// Learning-rate decay after the warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Decay {
    /// Constant after warm-up (the study's default).
    #[default]
    None,
    /// Cosine from lr to lr·min_lr_ratio.
    Cosine,
    /// Linear from lr to lr·min_lr_ratio.
    Linear,
}

/// Learning-rate schedule: linear warm-up, then optional decay over
/// `[decay_start, total_steps)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct LrSchedule {
    /// Steps of linear warm-up from lr/warmup to lr.
    pub warmup_steps: u64,
    /// Decay shape.
    pub decay: Decay,
    /// Step at which decay starts.
    pub decay_start: u64,
    /// Step at which decay ends (lr stays at the floor after).
    pub total_steps: u64,
    /// Floor as a fraction of lr.
    pub min_lr_ratio: f32,
}

impl LrSchedule {
    /// Multiplier of the base lr at (0-based) `step`.
    pub fn factor(&self, step: u64) -> f32 {
        let mut f = 1.0f64;
        if self.warmup_steps > 0 && step < self.warmup_steps {
            f = (step + 1) as f64 / self.warmup_steps as f64;
        }
        if self.decay != Decay::None
            && step >= self.decay_start
            && self.total_steps > self.decay_start
        {
            let span = (self.total_steps - self.decay_start) as f64;
            let t = ((step - self.decay_start) as f64 / span).min(1.0);
            let floor = self.min_lr_ratio as f64;
            let shape = match self.decay {
                Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
                Decay::Linear => 1.0 - t,
                Decay::None => 1.0,
            };
            f *= floor + (1.0 - floor) * shape;
        }
        f as f32
    }
}

/// Everything the trainer needs besides data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The model.
    pub sae: SaeConfig,
    /// Seed of the initialization.
    pub seed: u64,
    /// Base learning rate (3e-4).
    pub lr: f32,
    /// Adam β₁ (0.9).
    pub beta1: f32,
    /// Adam β₂ (0.99).
    pub beta2: f32,
    /// Adam ε (1e-8).
    pub eps: f32,
    /// Learning-rate schedule (constant by default).
    pub schedule: LrSchedule,
    /// Linear warm-up of the L1/L0 coefficient over this many steps.
    pub coeff_warmup_steps: u64,
    /// Global gradient-norm clip, applied before the decoder projection.
    pub max_grad_norm: Option<f32>,
    /// Keep decoder rows unit-norm (project gradients, renormalize).
    pub decoder_unit_norm: bool,
    /// With `decoder_unit_norm`, renormalize the rows after Adam too, so
    /// every forward pass and saved file sees unit rows (saelab's default).
    /// `false` is the study's code exactly: rows are renormalized only
    /// before the step, and the next forward sees the rows Adam moved.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub renormalize_after_step: bool,
    /// AuxK and dead-latent settings.
    pub aux: AuxConfig,
    /// How b_dec is set before the first step (zeros: the study's codebase).
    #[serde(default)]
    pub b_dec_init: BDecInit,
    /// Arithmetic of the dense encoder product during training.
    #[serde(default)]
    pub encoder_precision: EncoderPrecision,
}

/// Which AuxK loss to use (SPEC §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuxVariant {
    /// BatchTopK codebase: L = c·mean((ê − r)²) with r = x̃ − x̂ not detached.
    #[default]
    Bussmann,
    /// OpenAI: r detached, L = c·Σ‖ê − r‖² / Σ‖r − r̄‖².
    OpenAi,
}

/// AuxK and dead-latent settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuxConfig {
    /// Whether AuxK is on (for architectures that use it).
    pub enabled: bool,
    /// k_aux upper bound (512).
    pub k_aux: usize,
    /// Coefficient (1/32).
    pub coeff: f32,
    /// Batches without firing after which a latent is dead (5).
    pub dead_after: u32,
    /// Loss variant.
    pub variant: AuxVariant,
}

impl Default for AuxConfig {
    fn default() -> Self {
        AuxConfig {
            enabled: true,
            k_aux: 512,
            coeff: 1.0 / 32.0,
            dead_after: 5,
            variant: AuxVariant::Bussmann,
        }
    }
}

/// Arithmetic of the training step's dense encoder product `x·W_enc`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum EncoderPrecision {
    /// f32 (the default; what the study's code does on a GPU in fp32).
    #[default]
    F32,
    /// Inputs and W_enc rounded to bf16 for the product, f32 accumulation
    /// (`saelab_kernels::bf16`, W_enc repacked each step): mixed precision
    /// as GPU trainers run it under bf16 autocast. Everything else (top-k
    /// on the f32 results, decoder, gradients, Adam, the weights) stays f32.
    Bf16,
}

impl EncoderPrecision {
    /// The kernel the encoder product runs on in this process: `gemm` (the
    /// `gemm` crate, which picks its SIMD width at run time) for f32, the
    /// bf16 GEMM path (`amx`, `avx512_bf16`, `portable`) for bf16.
    pub fn product_path(self) -> &'static str {
        match self {
            EncoderPrecision::F32 => "gemm",
            EncoderPrecision::Bf16 => saelab_kernels::bf16::bf16_path().name(),
        }
    }
}

/// Initialization of the decoder bias from the first training batch
/// (SAELens `b_dec_init_method`), computed on the preprocessed inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BDecInit {
    /// b_dec = 0 (the BatchTopK codebase, hence the study).
    #[default]
    Zeros,
    /// The mean of the first batch.
    Mean,
    /// The geometric median of the first batch (Weiszfeld iterations).
    GeometricMedian,
}

impl TrainConfig {
    /// SPEC §2.1 defaults for the given model.
    pub fn new(sae: SaeConfig) -> Self {
        TrainConfig {
            sae,
            seed: 49,
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            schedule: LrSchedule::default(),
            coeff_warmup_steps: 0,
            max_grad_norm: None,
            decoder_unit_norm: true,
            renormalize_after_step: true,
            aux: AuxConfig::default(),
            b_dec_init: BDecInit::Zeros,
            encoder_precision: EncoderPrecision::F32,
        }
    }

    /// Range checks.
    pub fn validate(&self) -> Result<()> {
        self.sae.validate()?;
        let bad = |m: &str| Err(SaeError::InvalidConfig(m.to_string()));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr must be finite and > 0");
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("Adam betas must be in [0, 1)");
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad("Adam eps must be > 0");
        }
        if let Some(m) = self.max_grad_norm {
            if !(m.is_finite() && m > 0.0) {
                return bad("max_grad_norm must be finite and > 0");
            }
        }
        if !(self.aux.coeff.is_finite() && self.aux.coeff >= 0.0) {
            return bad("aux coeff must be finite and ≥ 0");
        }
        if !(0.0..=1.0).contains(&self.schedule.min_lr_ratio) {
            return bad("min_lr_ratio must be in [0, 1]");
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}

fn is_true(v: &bool) -> bool {
    *v
}
