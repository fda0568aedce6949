//! The machine a stage ran on: CPU model, cores, the vector extensions the
//! arithmetic paths dispatch on. Recorded in every `stage.json` and the
//! report header, because speed numbers mean nothing without it. (The
//! `study` crate detects it.)

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    /// Worker threads of the run.
    pub threads: usize,
    /// CPU features the kernels can use (avx2, fma, avx512f, avx512bf16,
    /// amx-bf16), in that order, present ones only.
    pub features: Vec<String>,
    /// The bf16 GEMM path of this process (`amx`, `avx512_bf16`, `avx2`,
    /// `portable`): what `--precision bf16` and the bf16 encoder ran on.
    #[serde(default)]
    pub bf16_path: String,
    /// The f32 path of this process: `avx512` (the blocks' packed f32
    /// products, attention and the element-wise loops by hand), `avx2`
    /// (the blocks' packed f32 products and attention on AVX2/FMA by
    /// hand, compiler-vectorized loops) or `portable` (the `gemm` crate
    /// and compiler-vectorized loops; neither, or `SAELAB_SIMD=scalar`, or
    /// `SAELAB_F32_PATH=gemm`).
    /// Empty in records written before it existed.
    #[serde(default)]
    pub f32_path: String,
}
