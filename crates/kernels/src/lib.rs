//! Hand-written CPU kernels shared by `saelab-lm` (the model forward pass)
//! and `saelab-sae` (the SAE encoder product): for now the bf16 GEMM with
//! pre-packed weights (its tests and benchmark live in `crates/lm`,
//! `tests/bf16.rs`, `benches/bf16.rs`, where it was first used), the f32
//! GEMM with pre-packed weights the model's blocks run on AVX-512 and AVX2
//! (`f32gemm`), the
//! 64-byte aligned buffers its AMX path wants for outputs, a per-thread
//! pool of scratch buffers, the phase timers both use for profiling, and
//! the huge-page allocator the binary and the benchmarks install.

#[cfg(target_arch = "x86_64")]
#[macro_use]
mod zmm_tile;

pub mod aligned;
pub mod bf16;
pub mod f32gemm;
pub mod hugepages;
pub mod phase_times;
pub mod pool;
pub mod simd;
