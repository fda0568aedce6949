//! Matryoshka BatchTopK (Bussmann / Nabeshima 2025, SPEC §2.6): BatchTopK
//! codes, with the reconstruction loss averaged over nested prefixes of the
//! dictionary so early latents learn coarse features on their own.

use super::{ArchSpec, Architecture, BatchTopK, Export};
use crate::error::Result;
use crate::kernels::SparseCodes;
use crate::params::SaeParams;

/// Matryoshka BatchTopK.
#[derive(Clone, Debug)]
pub struct MatryoshkaBatchTopK {
    inner: BatchTopK,
    groups: Vec<usize>,
}

impl MatryoshkaBatchTopK {
    /// New model with the given group sizes (must sum to n).
    pub fn new(k: usize, groups: Vec<usize>, ema_rate: f32) -> Self {
        MatryoshkaBatchTopK {
            inner: BatchTopK::new(k, ema_rate),
            groups,
        }
    }

    /// SPEC default groups n/16, n/16, n/8, n/4 and the rest (n/2 when 16 | n);
    /// groups that would be empty for tiny n are dropped.
    pub fn default_groups(n: usize) -> Vec<usize> {
        let mut g: Vec<usize> = [n / 16, n / 16, n / 8, n / 4]
            .into_iter()
            .filter(|&s| s > 0)
            .collect();
        let used: usize = g.iter().sum();
        if n > used {
            g.push(n - used);
        }
        g
    }

    /// Current inference threshold θ.
    pub fn threshold(&self) -> f32 {
        self.inner.threshold
    }
}

impl Architecture for MatryoshkaBatchTopK {
    fn spec(&self) -> ArchSpec {
        ArchSpec::MatryoshkaBatchTopK {
            k: self.inner.k,
            group_sizes: self.groups.clone(),
            threshold_ema_rate: self.inner.ema_rate,
        }
    }
    fn trains_b_enc(&self) -> bool {
        false
    }
    fn uses_auxk(&self) -> bool {
        true
    }
    fn prefix_ends(&self, _n: usize) -> Vec<usize> {
        self.groups
            .iter()
            .scan(0usize, |acc, &g| {
                *acc += g;
                Some(*acc)
            })
            .collect()
    }
    fn select(&self, pre: &[f32], params: &SaeParams, train: bool) -> SparseCodes {
        self.inner.select_impl(pre, params.n, train)
    }
    fn observe(&mut self, codes: &SparseCodes) {
        self.inner.observe_impl(codes)
    }
    fn export(&self, params: &SaeParams) -> Export {
        self.inner.export_impl(params.n)
    }
    fn state(&self) -> Vec<f32> {
        vec![self.inner.threshold]
    }
    fn set_state(&mut self, state: &[f32]) -> Result<()> {
        self.inner.set_state_impl(state)
    }
    fn box_clone(&self) -> Box<dyn Architecture> {
        Box::new(self.clone())
    }
}
