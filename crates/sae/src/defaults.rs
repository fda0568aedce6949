//! The training defaults, defined once: the CLI's flag defaults, sweep
//! files and the study runner all read them from here (SPEC §2.1), and the
//! architecture names a user may type ([`ArchName`]).

use crate::arch::ArchSpec;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Initialization seed (and, by default, the batch-order seed).
pub const SEED: u64 = 49;
/// Active latents per row of the k-architectures.
pub const K: usize = 16;
/// Architectures of a grid that names none.
pub const ARCHS: &[ArchName] = &[ArchName::TopK];
/// Dictionary size as a multiple of the input width d (n = 4·d).
pub const N_PER_D: usize = 4;
/// Adam learning rate.
pub const LR: f32 = 3e-4;
/// Activation vectors per step.
pub const BATCH: usize = 4096;
/// L1 coefficient of ReLU SAEs.
pub const L1_COEFF: f32 = 8e-5;
/// L0 coefficient of JumpReLU SAEs.
pub const L0_COEFF: f32 = 0.0018;
/// Initial JumpReLU threshold θ.
pub const JUMPRELU_INIT_THRESHOLD: f32 = 0.001;
/// JumpReLU straight-through bandwidth ε.
pub const JUMPRELU_BANDWIDTH: f32 = 0.001;
/// EMA rate of the BatchTopK / Matryoshka inference threshold.
pub const THRESHOLD_EMA_RATE: f32 = 0.01;
/// Shuffle buffer in vectors (the study: 10 × 512 × 128).
pub const BUFFER_VECTORS: usize = 655_360;
/// Checkpoint every this many steps.
pub const CHECKPOINT_EVERY: u64 = 500;
/// Log metrics every this many steps.
pub const LOG_EVERY: u64 = 50;

/// An architecture as a user names it (`--arch`, sweep files).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ArchName {
    #[serde(rename = "topk")]
    #[cfg_attr(feature = "clap", value(name = "topk"))]
    TopK,
    #[serde(rename = "batchtopk")]
    #[cfg_attr(feature = "clap", value(name = "batchtopk"))]
    BatchTopK,
    #[serde(rename = "jumprelu")]
    #[cfg_attr(feature = "clap", value(name = "jumprelu"))]
    JumpRelu,
    #[serde(rename = "relu")]
    #[cfg_attr(feature = "clap", value(name = "relu"))]
    Relu,
    #[serde(rename = "matryoshka", alias = "matryoshka_batchtopk")]
    #[cfg_attr(
        feature = "clap",
        value(name = "matryoshka", alias = "matryoshka_batchtopk")
    )]
    Matryoshka,
}

impl ArchName {
    /// Every architecture, in the order help texts list them.
    pub const ALL: [ArchName; 5] = [
        ArchName::TopK,
        ArchName::BatchTopK,
        ArchName::JumpRelu,
        ArchName::Relu,
        ArchName::Matryoshka,
    ];

    /// The name as typed (and as used in default SAE folder names).
    pub fn as_str(self) -> &'static str {
        match self {
            ArchName::TopK => "topk",
            ArchName::BatchTopK => "batchtopk",
            ArchName::JumpRelu => "jumprelu",
            ArchName::Relu => "relu",
            ArchName::Matryoshka => "matryoshka",
        }
    }

    /// Whether the architecture has a k (TopK, BatchTopK, Matryoshka).
    pub fn uses_k(self) -> bool {
        !matches!(self, ArchName::Relu | ArchName::JumpRelu)
    }

    /// The architecture with the default hyperparameters and the given k
    /// (ignored by ReLU and JumpReLU).
    pub fn spec(self, k: usize) -> ArchSpec {
        match self {
            ArchName::TopK => ArchSpec::TopK { k },
            ArchName::BatchTopK => ArchSpec::BatchTopK {
                k,
                threshold_ema_rate: THRESHOLD_EMA_RATE,
            },
            ArchName::Matryoshka => ArchSpec::MatryoshkaBatchTopK {
                k,
                group_sizes: Vec::new(),
                threshold_ema_rate: THRESHOLD_EMA_RATE,
            },
            ArchName::Relu => ArchSpec::Relu { l1_coeff: L1_COEFF },
            ArchName::JumpRelu => ArchSpec::JumpRelu {
                l0_coeff: L0_COEFF,
                bandwidth: JUMPRELU_BANDWIDTH,
                init_threshold: JUMPRELU_INIT_THRESHOLD,
                apply_b_dec_to_input: false,
            },
        }
    }
}

impl fmt::Display for ArchName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown architecture name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("arch `{0}`: expected topk, batchtopk, jumprelu, relu or matryoshka")]
pub struct UnknownArch(pub String);

impl FromStr for ArchName {
    type Err = UnknownArch;

    fn from_str(s: &str) -> Result<Self, UnknownArch> {
        match s {
            "matryoshka_batchtopk" => Ok(ArchName::Matryoshka),
            _ => ArchName::ALL
                .into_iter()
                .find(|a| a.as_str() == s)
                .ok_or_else(|| UnknownArch(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in ArchName::ALL {
            assert_eq!(a.as_str().parse::<ArchName>(), Ok(a));
            let j = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<ArchName>(&j).unwrap(), a);
        }
        assert_eq!(
            "matryoshka_batchtopk".parse::<ArchName>(),
            Ok(ArchName::Matryoshka)
        );
        assert!("gated"
            .parse::<ArchName>()
            .unwrap_err()
            .to_string()
            .contains("gated"));
    }
}
