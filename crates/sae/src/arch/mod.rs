//! The SAE architectures behind one trait. The shared engine
//! ([`crate::engine`]) does the encoder product, sparse decode, losses,
//! AuxK and gradients; an architecture only says how codes are selected from
//! pre-activations, how the gradient passes through its activation, which
//! sparsity penalty it adds, and how it exports. Adding one = a new file here
//! plus a variant in [`ArchSpec`] and an arm in [`ArchSpec::build`].

mod batchtopk;
mod jumprelu;
mod matryoshka;
mod relu;
mod topk;

pub use batchtopk::BatchTopK;
pub use jumprelu::JumpRelu;
pub use matryoshka::MatryoshkaBatchTopK;
pub use relu::Relu;
pub use topk::TopK;

use crate::error::{Result, SaeError};
use crate::kernels::SparseCodes;
use crate::params::SaeParams;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Architecture and its hyperparameters (serialized with an
/// `"architecture"` tag in our own config files).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "architecture")]
pub enum ArchSpec {
    /// ReLU with decoder-norm-weighted L1 (SPEC §2.2).
    #[serde(rename = "relu")]
    Relu {
        /// λ of the L1 penalty.
        l1_coeff: f32,
    },
    /// Per-row TopK (SPEC §2.3).
    #[serde(rename = "topk")]
    TopK {
        /// Active latents per row.
        k: usize,
    },
    /// Batch-level TopK (SPEC §2.4).
    #[serde(rename = "batchtopk")]
    BatchTopK {
        /// Mean active latents per row.
        k: usize,
        /// EMA rate of the inference threshold.
        #[serde(default = "default_ema")]
        threshold_ema_rate: f32,
    },
    /// JumpReLU with a learnt threshold and L0 penalty (SPEC §2.5).
    #[serde(rename = "jumprelu")]
    JumpRelu {
        /// λ of the L0 penalty.
        l0_coeff: f32,
        /// Rectangle-kernel bandwidth ε.
        #[serde(default = "default_bandwidth")]
        bandwidth: f32,
        /// Initial threshold θ₀ (t₀ = ln θ₀).
        #[serde(default = "default_init_threshold")]
        init_threshold: f32,
        /// Subtract b_dec from the input before the encoder (off in the
        /// SPEC; on for SAELens jumprelu files that say so, e.g. our
        /// BatchTopK exports).
        #[serde(default)]
        apply_b_dec_to_input: bool,
    },
    /// Matryoshka BatchTopK (SPEC §2.6).
    #[serde(rename = "matryoshka_batchtopk")]
    MatryoshkaBatchTopK {
        /// Mean active latents per row.
        k: usize,
        /// Group sizes, summing to n; empty = n/16, n/16, n/8, n/4, rest.
        #[serde(default)]
        group_sizes: Vec<usize>,
        /// EMA rate of the inference threshold.
        #[serde(default = "default_ema")]
        threshold_ema_rate: f32,
    },
}

fn default_ema() -> f32 {
    0.01
}
fn default_bandwidth() -> f32 {
    0.001
}
fn default_init_threshold() -> f32 {
    0.001
}

impl ArchSpec {
    /// Our name of the architecture (the serde tag).
    pub fn name(&self) -> &'static str {
        match self {
            ArchSpec::Relu { .. } => "relu",
            ArchSpec::TopK { .. } => "topk",
            ArchSpec::BatchTopK { .. } => "batchtopk",
            ArchSpec::JumpRelu { .. } => "jumprelu",
            ArchSpec::MatryoshkaBatchTopK { .. } => "matryoshka_batchtopk",
        }
    }

    /// Whether the architecture has a learnt log-threshold tensor.
    pub fn has_log_threshold(&self) -> bool {
        matches!(self, ArchSpec::JumpRelu { .. })
    }

    /// Initial log-threshold, for architectures that learn one.
    pub fn init_log_threshold(&self) -> Option<f32> {
        match self {
            ArchSpec::JumpRelu { init_threshold, .. } => Some(init_threshold.ln()),
            _ => None,
        }
    }

    /// Checks the hyperparameters against the dictionary size `n`, then
    /// builds the architecture (the registration point).
    pub fn build(&self, n: usize) -> Result<Box<dyn Architecture>> {
        let bad = |m: String| Err(SaeError::InvalidConfig(m));
        let check_k = |k: usize| -> Result<()> {
            if k == 0 || k > n {
                return Err(SaeError::InvalidConfig(format!(
                    "k = {k} must be in 1..=n (n = {n})"
                )));
            }
            Ok(())
        };
        let check_rate = |r: f32| -> Result<()> {
            if !(r > 0.0 && r <= 1.0) {
                return Err(SaeError::InvalidConfig(format!(
                    "threshold_ema_rate {r} not in (0, 1]"
                )));
            }
            Ok(())
        };
        Ok(match self {
            ArchSpec::Relu { l1_coeff } => {
                if !(l1_coeff.is_finite() && *l1_coeff >= 0.0) {
                    return bad(format!("l1_coeff {l1_coeff} must be finite and ≥ 0"));
                }
                Box::new(Relu {
                    l1_coeff: *l1_coeff,
                })
            }
            ArchSpec::TopK { k } => {
                check_k(*k)?;
                Box::new(TopK { k: *k })
            }
            ArchSpec::BatchTopK {
                k,
                threshold_ema_rate,
            } => {
                check_k(*k)?;
                check_rate(*threshold_ema_rate)?;
                Box::new(BatchTopK::new(*k, *threshold_ema_rate))
            }
            ArchSpec::JumpRelu {
                l0_coeff,
                bandwidth,
                init_threshold,
                apply_b_dec_to_input,
            } => {
                if !(l0_coeff.is_finite() && *l0_coeff >= 0.0) {
                    return bad(format!("l0_coeff {l0_coeff} must be finite and ≥ 0"));
                }
                if !(bandwidth.is_finite() && *bandwidth > 0.0) {
                    return bad(format!("bandwidth {bandwidth} must be > 0"));
                }
                if !(init_threshold.is_finite() && *init_threshold > 0.0) {
                    return bad(format!("init_threshold {init_threshold} must be > 0"));
                }
                Box::new(JumpRelu {
                    l0_coeff: *l0_coeff,
                    bandwidth: *bandwidth,
                    init_threshold: *init_threshold,
                    apply_b_dec_to_input: *apply_b_dec_to_input,
                })
            }
            ArchSpec::MatryoshkaBatchTopK {
                k,
                group_sizes,
                threshold_ema_rate,
            } => {
                check_k(*k)?;
                check_rate(*threshold_ema_rate)?;
                let groups = if group_sizes.is_empty() {
                    MatryoshkaBatchTopK::default_groups(n)
                } else {
                    group_sizes.clone()
                };
                if groups.contains(&0) || groups.iter().sum::<usize>() != n {
                    return bad(format!(
                        "matryoshka group sizes {groups:?} must be positive and sum to n = {n}"
                    ));
                }
                Box::new(MatryoshkaBatchTopK::new(*k, groups, *threshold_ema_rate))
            }
        })
    }
}

/// What the engine hands to a sparsity penalty.
pub struct PenaltyCtx<'a> {
    /// Pre-activations, B×n.
    pub pre: &'a [f32],
    /// Selected codes.
    pub codes: &'a SparseCodes,
    /// Current parameters.
    pub params: &'a SaeParams,
    /// ∂L/∂x̂ of row b (full reconstruction), length d.
    pub g_row: &'a (dyn Fn(usize) -> &'a [f32] + Sync),
    /// Warm-up factor in [0, 1] applied to the penalty coefficient.
    pub coeff_scale: f32,
}

/// How an architecture appears in SAELens files.
#[derive(Clone, Debug, PartialEq)]
pub struct Export {
    /// SAELens `architecture` value.
    pub saelens_architecture: &'static str,
    /// SAELens `apply_b_dec_to_input`.
    pub apply_b_dec_to_input: bool,
    /// `k` for topk.
    pub k: Option<usize>,
    /// `threshold` tensor [n] for jumprelu.
    pub threshold: Option<Vec<f32>>,
}

/// One SAE architecture. See the module doc for the division of labour.
pub trait Architecture: Send + Sync + fmt::Debug {
    /// The spec this architecture was built from.
    fn spec(&self) -> ArchSpec;
    /// Whether b_dec is subtracted from the input before the encoder.
    fn subtracts_b_dec(&self) -> bool {
        true
    }
    /// Whether b_enc receives gradient (TopK/BatchTopK keep it fixed, as the
    /// study's code does not use it; it is still applied at encode time).
    fn trains_b_enc(&self) -> bool {
        true
    }
    /// Whether AuxK applies.
    fn uses_auxk(&self) -> bool {
        false
    }
    /// Nested prefix ends m₁ < … < m_M = n of the reconstruction loss.
    fn prefix_ends(&self, n: usize) -> Vec<usize> {
        vec![n]
    }
    /// Codes from pre-activations (B×n); `train` selects the training rule
    /// (batch-level selection) over the inference rule (threshold).
    fn select(&self, pre: &[f32], params: &SaeParams, train: bool) -> SparseCodes;
    /// ∂L/∂pre of an active entry from ∂L/∂z (default: ReLU derivative).
    fn dpre(&self, pre: f32, dz: f32) -> f32 {
        if pre > 0.0 {
            dz
        } else {
            0.0
        }
    }
    /// Adds the penalty's ∂/∂z to `dz` (aligned with the codes' entries) and
    /// returns the penalty's loss value.
    fn penalty_dz(&self, _ctx: &PenaltyCtx, _dz: &mut [f32]) -> f64 {
        0.0
    }
    /// Adds the penalty's direct parameter gradients.
    fn penalty_grads(&self, _ctx: &PenaltyCtx, _grads: &mut SaeParams) {}
    /// Sees the training codes after each step (threshold EMAs).
    fn observe(&mut self, _codes: &SparseCodes) {}
    /// SAELens export description.
    fn export(&self, params: &SaeParams) -> Export;
    /// Mutable state outside the parameters (for resume).
    fn state(&self) -> Vec<f32> {
        vec![]
    }
    /// Restores [`Architecture::state`].
    fn set_state(&mut self, state: &[f32]) -> Result<()> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(SaeError::StateMismatch(format!(
                "{} has no state but {} values were given",
                self.spec().name(),
                state.len()
            )))
        }
    }
    /// Boxed clone.
    fn box_clone(&self) -> Box<dyn Architecture>;
}

impl Clone for Box<dyn Architecture> {
    fn clone(&self) -> Self {
        self.box_clone()
    }
}
