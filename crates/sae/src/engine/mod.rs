//! The shared forward/backward pass for every architecture: encoder
//! product, code selection (delegated to the architecture), sparse decode
//! with nested prefixes, reconstruction loss, dead-latent counters, AuxK and
//! all gradients. Losses are in the space the batch is given in (the
//! trainer passes unit-normalized rows); the reconstruction loss is the
//! elementwise mean over B×d as in the study's code.
//!
//! One pass is an [`Engine`] (the borrowed inputs) whose [`Engine::step`]
//! runs the stages in order:
//! - [`forward`]: encode, select, nested decode, loss statistics, dead
//!   counters;
//! - [`auxk`]: the AuxK codes and loss over the dead latents and their
//!   gradients;
//! - [`backward`]: the gradients of the kept codes and of the biases;
//! - [`reduce`]: the fixed-order f64 reductions every stage uses.
//!
//! Every sum runs in a fixed order independent of the thread count, so a
//! pass is bit-identical across runs and machines with the same kernels.

mod auxk;
mod backward;
mod forward;
mod reduce;

use crate::arch::{Architecture, PenaltyCtx};
use crate::blocked::worth_blocking;
use crate::config::EncoderPrecision;
use crate::kernels::SparseCodes;
use crate::params::SaeParams;
use saelab_kernels::phase_times::{PhaseTimes, Timed};

// The AuxK settings lived here before they moved to `config`; the old
// paths `engine::{AuxConfig, AuxVariant}` keep working.
pub use crate::config::{AuxConfig, AuxVariant};

/// Loss terms and batch statistics of one forward pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossParts {
    /// Reconstruction loss (mean over prefixes for Matryoshka).
    pub recon: f64,
    /// Elementwise MSE of the full reconstruction.
    pub mse: f64,
    /// Mean over rows of ‖x − x̂‖²/‖x‖².
    pub nmse: f64,
    /// Σ‖x − x̂‖² / Σ‖x − x̄‖².
    pub fvu: f64,
    /// Mean number of positive codes per row.
    pub l0: f64,
    /// Sparsity penalty value.
    pub penalty: f64,
    /// AuxK loss value.
    pub aux: f64,
    /// recon + penalty + aux.
    pub total: f64,
    /// Fraction of latents counted dead after this batch.
    pub dead_fraction: f64,
}

/// AuxK switches from the (row-blocked) sparse kernels to dense GEMMs over
/// the dead latents when k_aux/|D| reaches this. The sparse kernels do
/// 4·B·k_aux·d multiply-adds at ≈ 30 GFLOP/s on the 2-core dev machine, the
/// four GEMMs 4·B·|D|·d at ≈ 160 GFLOP/s, so dense wins above ≈ 1/5
/// (bench `step`: n 3072 with half the latents dead, k_aux/|D| = 1/3:
/// 646 ms sparse vs 464 ms dense per step; n 12288, 1/12: sparse 1.19 s vs dense
/// 1.85 s).
pub const AUX_DENSE_MIN_DENSITY: f64 = 1.0 / 5.0;

/// Everything a forward/backward pass produces besides the gradients.
pub struct PassOutput {
    /// Loss terms.
    pub loss: LossParts,
    /// Training codes of the batch.
    pub codes: SparseCodes,
    /// Wall time of each stage (recorded when `SAELAB_STEP_TIMES` is set).
    pub times: PhaseTimes,
}

/// One forward + backward pass on the batch `x` (rows of length d, already
/// normalized if the model normalizes). `dead` (per-latent batches without
/// firing) is updated with this batch before AuxK picks the dead set, as in
/// the BatchTopK codebase. Gradients are written into `grads` (overwritten).
pub fn loss_and_grads(
    arch: &dyn Architecture,
    params: &SaeParams,
    x: &[f32],
    coeff_scale: f32,
    aux_cfg: &AuxConfig,
    dead: &mut [u32],
    grads: &mut SaeParams,
) -> PassOutput {
    Engine::new(arch, params, aux_cfg, x).step(
        coeff_scale,
        dead,
        grads,
        EncoderPrecision::F32,
        &mut StepBuffers::default(),
    )
}

/// Buffers a trainer keeps across steps, so the largest allocations of a
/// step are not faulted in or cleared anew each time: the preprocessed
/// batch, the encoder's input, the decode's gradients and reconstruction
/// (B×d each), the B×n pre-activations and the bf16 packing of W_enc.
#[derive(Default)]
pub struct StepBuffers {
    /// The preprocessed batch (filled by the trainer).
    pub(crate) xt: Vec<f32>,
    /// The encoder's input, x − b_dec or x.
    xc: Vec<f32>,
    /// The decode's gradients H (B×groups×d) and reconstruction (B×d).
    h: Vec<f32>,
    recon: Vec<f32>,
    /// B×n pre-activations (grown when too small, never shrunk), 64-byte
    /// aligned for the AMX encoder product (`saelab_kernels::aligned`).
    pub(crate) pre: saelab_kernels::aligned::AlignedF32,
    /// W_enc packed for the bf16 encoder product.
    pub(crate) w_enc_bf16: Option<saelab_kernels::bf16::PackedBf16>,
}

/// Scratch only: a clone starts empty (nothing in it outlives a step).
impl Clone for StepBuffers {
    fn clone(&self) -> Self {
        StepBuffers::default()
    }
}

impl std::fmt::Debug for StepBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepBuffers")
            .field("pre_len", &self.pre.len())
            .field("w_enc_bf16", &self.w_enc_bf16.is_some())
            .finish()
    }
}

/// [`loss_and_grads`] with the encoder product in `enc` arithmetic, using
/// (and keeping) the buffers in `bufs`.
#[allow(clippy::too_many_arguments)]
pub fn loss_and_grads_with(
    arch: &dyn Architecture,
    params: &SaeParams,
    x: &[f32],
    coeff_scale: f32,
    aux_cfg: &AuxConfig,
    dead: &mut [u32],
    grads: &mut SaeParams,
    enc: EncoderPrecision,
    bufs: &mut StepBuffers,
) -> PassOutput {
    Engine::new(arch, params, aux_cfg, x).step(coeff_scale, dead, grads, enc, bufs)
}

/// The inputs of one forward/backward pass: the model, the AuxK settings
/// and the batch (B×d rows). The stages are its methods, split over the
/// submodules; [`Engine::step`] chains them.
pub struct Engine<'a> {
    arch: &'a dyn Architecture,
    params: &'a SaeParams,
    aux_cfg: &'a AuxConfig,
    x: &'a [f32],
    /// Input width.
    d: usize,
    /// Dictionary size.
    n: usize,
    /// Rows of the batch.
    rows: usize,
}

impl<'a> Engine<'a> {
    /// A pass of `arch` with `params` over the batch `x` (rows of length
    /// `params.d`, already normalized if the model normalizes).
    pub fn new(
        arch: &'a dyn Architecture,
        params: &'a SaeParams,
        aux_cfg: &'a AuxConfig,
        x: &'a [f32],
    ) -> Self {
        let (d, n) = (params.d, params.n);
        Engine {
            arch,
            params,
            aux_cfg,
            x,
            d,
            n,
            rows: x.len() / d,
        }
    }

    /// The forward + backward pass (see [`loss_and_grads_with`] for the
    /// arguments): losses and codes returned, gradients written into
    /// `grads` (overwritten), `dead` advanced by this batch.
    pub fn step(
        &self,
        coeff_scale: f32,
        dead: &mut [u32],
        grads: &mut SaeParams,
        enc: EncoderPrecision,
        bufs: &mut StepBuffers,
    ) -> PassOutput {
        self.step_with(coeff_scale, dead, grads, enc, bufs, true)
    }

    /// [`Engine::step`], with `fuse_dz` false never computing ∂L/∂z in the
    /// decode (the tests compare both ways bit for bit).
    fn step_with(
        &self,
        coeff_scale: f32,
        dead: &mut [u32],
        grads: &mut SaeParams,
        enc: EncoderPrecision,
        bufs: &mut StepBuffers,
        fuse_dz: bool,
    ) -> PassOutput {
        let mut t = PhaseTimes::start(Timed::Step);
        // The code backward overwrites the W_enc and W_dec gradients.
        grads.fill_zero_vectors();
        let mut xc = std::mem::take(&mut bufs.xc);
        let spare = [std::mem::take(&mut bufs.h), std::mem::take(&mut bufs.recon)];
        self.encoder_input(&mut xc);
        t.mark("zero+input");
        let pre: &[f32] = self.encode(&xc, enc, bufs);
        t.mark("encode");
        let codes = self.select(pre);
        t.mark("select");
        let dead_list = self.update_dead(&codes, dead);
        let dead_fraction = dead_list.len() as f64 / self.n as f64;
        // ∂L/∂z goes with the decode unless AuxK will still change H, or the
        // codes are dense enough for the row-blocked kernel.
        let dz_in_decode = fuse_dz && !self.aux_changes_h(&dead_list) && !worth_blocking(&codes);
        let mut nested = self.decode(&codes, dz_in_decode, spare);
        let stats = self.recon_stats(&nested);
        t.mark("decode");
        let (aux_loss, aux_part) = match self.aux_forward(pre, dead_list, &mut nested) {
            Some((loss, part)) => (loss, Some(part)),
            None => (0.0, None),
        };
        t.mark("auxk fwd");
        let dz = nested.dz.take();

        let g_full = |b: usize| nested.full_grad(b);
        let ctx = PenaltyCtx {
            pre,
            codes: &codes,
            params: self.params,
            g_row: &g_full,
            coeff_scale,
        };
        let (penalty, mut col_sum) = self.backward_codes(&ctx, &nested, dz, &xc, grads);
        t.mark("backward");
        if let Some(part) = &aux_part {
            self.backward_aux(part, pre, &xc, grads, &mut col_sum);
            t.mark("auxk bwd");
        }
        self.backward_biases(&nested, &col_sum, grads);
        self.arch.penalty_grads(&ctx, grads);
        t.mark("biases");

        bufs.xc = xc;
        nested.return_buffers(bufs);
        let l0 = codes.count_positive() as f64 / self.rows as f64;
        let loss = stats.into_loss(l0, penalty, aux_loss, dead_fraction);
        PassOutput {
            loss,
            codes,
            times: t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::ArchSpec;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// One pass with ∂L/∂z computed in the decode and one without, from the
    /// same inputs: losses, codes, dead counters and gradients must agree
    /// bit for bit. Half the latents start dead, so AuxK runs when on.
    /// The fused pass starts from stale gradients, the other from zeros.
    fn fused_equals_unfused(spec: ArchSpec, aux: AuxConfig) {
        let (d, n, rows) = (37, 96, 40);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let params = SaeParams::init(d, n, Some(-3.0), &mut rng);
        let x: Vec<f32> = (0..rows * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let arch = spec.build(n).unwrap();
        let dead0: Vec<u32> = (0..n as u32).map(|i| (i % 2) * aux.dead_after).collect();
        // `stale` starts the gradients from garbage: the pass must
        // overwrite them.
        let run = |fuse: bool, stale: f32| {
            let mut dead = dead0.clone();
            let mut grads = SaeParams::zeros(d, n, !params.log_threshold.is_empty());
            grads.w_enc_t.fill(stale);
            grads.w_dec.fill(stale);
            let out = Engine::new(arch.as_ref(), &params, &aux, &x).step_with(
                1.0,
                &mut dead,
                &mut grads,
                EncoderPrecision::F32,
                &mut StepBuffers::default(),
                fuse,
            );
            (out.loss, out.codes, dead, grads)
        };
        let (a, b) = (run(true, 7.0), run(false, 0.0));
        assert_eq!(a.0, b.0, "{spec:?}: losses");
        assert_eq!((a.1.idx, a.1.val), (b.1.idx, b.1.val), "{spec:?}: codes");
        assert_eq!(a.2, b.2, "{spec:?}: dead counters");
        for ((name, ga), (_, gb)) in a.3.tensors().iter().zip(b.3.tensors()) {
            let bits = |t: &[f32]| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(ga), bits(gb), "{spec:?}: gradient of {name}");
        }
    }

    #[test]
    fn dz_in_the_decode_gives_the_same_bits() {
        let specs = [
            ArchSpec::TopK { k: 5 },
            ArchSpec::BatchTopK {
                k: 5,
                threshold_ema_rate: 0.01,
            },
            ArchSpec::MatryoshkaBatchTopK {
                k: 5,
                group_sizes: vec![12, 20, 64],
                threshold_ema_rate: 0.01,
            },
            ArchSpec::Relu { l1_coeff: 0.01 },
            ArchSpec::JumpRelu {
                l0_coeff: 0.01,
                bandwidth: 0.001,
                init_threshold: 0.05,
                apply_b_dec_to_input: false,
            },
        ];
        for spec in specs {
            for (enabled, variant) in [
                (false, AuxVariant::Bussmann),
                (true, AuxVariant::Bussmann),
                (true, AuxVariant::OpenAi),
            ] {
                let aux = AuxConfig {
                    enabled,
                    k_aux: 8,
                    variant,
                    ..AuxConfig::default()
                };
                fused_equals_unfused(spec.clone(), aux);
            }
        }
    }
}
