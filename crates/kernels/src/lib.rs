//! Hand-written CPU kernels shared by `saelab-lm` (the model forward pass)
//! and `saelab-sae` (the SAE encoder product): for now the bf16 GEMM with
//! pre-packed weights. Its tests and benchmark live in `crates/lm`
//! (`tests/bf16.rs`, `benches/bf16.rs`), where it was first used.

pub mod bf16;
