//! One SAE of a study by the values of its axes ([`SaeKey`]), with the
//! architecture coefficients it is compared by.

use saelab_sae::defaults;
use serde::{Deserialize, Serialize};

/// Comparison categories of the study's Table 1 in its order (plus
/// `layer`, Fig 13, and `lr`, ours): the one axis a matched pair differs in.
pub const CATEGORIES: &[&str] = &[
    "dataset",
    "seed",
    "dictionary",
    "architecture",
    "sparsity",
    "layer",
    "lr",
];

/// One SAE of the study, by the values of its axes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaeKey {
    pub dataset: String,
    pub layer: usize,
    pub arch: String,
    pub n: usize,
    /// k for the k-based architectures; `None` for relu / jumprelu.
    pub k: Option<usize>,
    pub seed: u64,
    pub lr: f64,
    /// The architecture's own coefficients (L1, L0, θ₀, groups).
    pub coeffs: ArchCoeffs,
}

/// Coefficients that belong to an architecture (compared with it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchCoeffs {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub l1_coeff: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jumprelu: Option<JumpReluCoeffs>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub group_sizes: Option<Vec<usize>>,
}

/// JumpReLU coefficients (SPEC §2.5); a spec may give only `l0_coeff`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JumpReluCoeffs {
    pub l0_coeff: f64,
    #[serde(default = "d_theta")]
    pub init_threshold: f64,
    #[serde(default = "d_bandwidth")]
    pub bandwidth: f64,
}

fn d_theta() -> f64 {
    f32_default(defaults::JUMPRELU_INIT_THRESHOLD)
}
fn d_bandwidth() -> f64 {
    f32_default(defaults::JUMPRELU_BANDWIDTH)
}

/// An `f32` default of the `sae` crate as the `f64` a spec holds, by its
/// shortest decimal form (3e-4 stays 3e-4, not 3.0000001e-4).
pub fn f32_default(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

impl SaeKey {
    /// A short readable name, unique within a study: the axes' values.
    pub fn label(&self) -> String {
        let mut s = format!("{}-n{}", self.arch, self.n);
        if let Some(k) = self.k {
            s.push_str(&format!("-k{k}"));
        }
        if let Some(j) = &self.coeffs.jumprelu {
            s.push_str(&format!("-l0c{}", j.l0_coeff));
        }
        if let Some(l1) = self.coeffs.l1_coeff {
            s.push_str(&format!("-l1c{l1}"));
        }
        s.push_str(&format!(
            "-s{}-{}-L{}-lr{}",
            self.seed, self.dataset, self.layer, self.lr
        ));
        s
    }
}
