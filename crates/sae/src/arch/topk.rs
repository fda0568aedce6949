//! TopK (Gao et al. 2024, SPEC §2.3): keep the k largest ReLU activations
//! of each row.

use super::{ArchSpec, Architecture, Export};
use crate::kernels::{topk_rows, SparseCodes};
use crate::params::SaeParams;

/// Per-row TopK.
#[derive(Clone, Debug)]
pub struct TopK {
    /// Active latents per row.
    pub k: usize,
}

impl Architecture for TopK {
    fn spec(&self) -> ArchSpec {
        ArchSpec::TopK { k: self.k }
    }
    fn trains_b_enc(&self) -> bool {
        false
    }
    fn uses_auxk(&self) -> bool {
        true
    }
    fn select(&self, pre: &[f32], params: &SaeParams, _train: bool) -> SparseCodes {
        topk_rows(pre, params.n, self.k)
    }
    fn export(&self, _params: &SaeParams) -> Export {
        Export {
            saelens_architecture: "topk",
            apply_b_dec_to_input: true,
            k: Some(self.k),
            threshold: None,
        }
    }
    fn box_clone(&self) -> Box<dyn Architecture> {
        Box::new(self.clone())
    }
}
