//! BatchTopK (Bussmann et al. 2024, SPEC §2.4): in training keep the k·B
//! largest activations of the whole batch; at inference use the threshold
//! θ, an EMA of the smallest positive kept activation per training batch.

use super::{ArchSpec, Architecture, Export};
use crate::error::{Result, SaeError};
use crate::kernels::{batch_topk, threshold_rows, SparseCodes};
use crate::params::SaeParams;

/// Batch-level TopK with an inference threshold.
#[derive(Clone, Debug)]
pub struct BatchTopK {
    /// Mean active latents per row.
    pub k: usize,
    /// EMA rate for θ.
    pub ema_rate: f32,
    /// Inference threshold θ (starts at 0, as in the reference codebase).
    pub threshold: f32,
}

impl BatchTopK {
    /// New BatchTopK with θ = 0.
    pub fn new(k: usize, ema_rate: f32) -> Self {
        BatchTopK {
            k,
            ema_rate,
            threshold: 0.0,
        }
    }

    pub(crate) fn select_impl(&self, pre: &[f32], n: usize, train: bool) -> SparseCodes {
        if train {
            let rows = pre.len() / n.max(1);
            batch_topk(pre, n, self.k * rows).0
        } else {
            let t = self.threshold;
            threshold_rows(pre, n, &move |_| t)
        }
    }

    pub(crate) fn observe_impl(&mut self, codes: &SparseCodes) {
        let min = codes
            .val
            .iter()
            .copied()
            .filter(|&v| v > 0.0)
            .fold(f32::INFINITY, f32::min);
        if min.is_finite() {
            self.threshold = (1.0 - self.ema_rate) * self.threshold + self.ema_rate * min;
        }
    }

    pub(crate) fn export_impl(&self, n: usize) -> Export {
        Export {
            saelens_architecture: "jumprelu",
            apply_b_dec_to_input: true,
            k: None,
            threshold: Some(vec![self.threshold; n]),
        }
    }

    pub(crate) fn set_state_impl(&mut self, state: &[f32]) -> Result<()> {
        match state {
            [t] => {
                self.threshold = *t;
                Ok(())
            }
            _ => Err(SaeError::StateMismatch(format!(
                "batchtopk state needs 1 value (θ), got {}",
                state.len()
            ))),
        }
    }
}

impl Architecture for BatchTopK {
    fn spec(&self) -> ArchSpec {
        ArchSpec::BatchTopK {
            k: self.k,
            threshold_ema_rate: self.ema_rate,
        }
    }
    fn trains_b_enc(&self) -> bool {
        false
    }
    fn uses_auxk(&self) -> bool {
        true
    }
    fn select(&self, pre: &[f32], params: &SaeParams, train: bool) -> SparseCodes {
        self.select_impl(pre, params.n, train)
    }
    fn observe(&mut self, codes: &SparseCodes) {
        self.observe_impl(codes)
    }
    fn export(&self, params: &SaeParams) -> Export {
        self.export_impl(params.n)
    }
    fn state(&self) -> Vec<f32> {
        vec![self.threshold]
    }
    fn set_state(&mut self, state: &[f32]) -> Result<()> {
        self.set_state_impl(state)
    }
    fn box_clone(&self) -> Box<dyn Architecture> {
        Box::new(self.clone())
    }
}
