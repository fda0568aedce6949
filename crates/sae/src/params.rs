//! SAE parameter tensors (also used for gradients and Adam moments, which
//! have the same shapes) and the seeded initialization of SPEC §2.1.

use rand::Rng;
use rayon::prelude::*;

/// Parameters of an SAE. The encoder is stored transposed (n×d, one latent's
/// weights contiguous) because the sparse gradient writes whole latents;
/// files use the SAELens [d, n] layout.
#[derive(Clone, Debug, PartialEq)]
pub struct SaeParams {
    /// Input width d.
    pub d: usize,
    /// Dictionary size n.
    pub n: usize,
    /// W_encᵀ, n×d row-major.
    pub w_enc_t: Vec<f32>,
    /// b_enc, n.
    pub b_enc: Vec<f32>,
    /// W_dec, n×d row-major.
    pub w_dec: Vec<f32>,
    /// b_dec, d.
    pub b_dec: Vec<f32>,
    /// Log-threshold t (θ = exp t), n entries for JumpReLU, empty otherwise.
    pub log_threshold: Vec<f32>,
}

impl SaeParams {
    /// All-zero tensors of the given shape (for gradients and moments).
    pub fn zeros(d: usize, n: usize, with_threshold: bool) -> Self {
        SaeParams {
            d,
            n,
            w_enc_t: vec![0.0; n * d],
            b_enc: vec![0.0; n],
            w_dec: vec![0.0; n * d],
            b_dec: vec![0.0; d],
            log_threshold: if with_threshold { vec![0.0; n] } else { vec![] },
        }
    }

    /// SPEC §2.1 init: W_enc ~ U(−β, β), β = √(6/n) (kaiming-uniform with
    /// fan-in n, as in the BatchTopK codebase), drawn in W_enc's [d, n]
    /// row-major order; W_dec = W_encᵀ with unit-norm rows; biases zero.
    /// The draws depend only on (d, n, rng), never on data.
    pub fn init(d: usize, n: usize, log_threshold: Option<f32>, rng: &mut impl Rng) -> Self {
        let mut p = Self::zeros(d, n, log_threshold.is_some());
        let beta = (6.0f64 / n as f64).sqrt() as f32;
        for j in 0..d {
            for i in 0..n {
                p.w_enc_t[i * d + j] = rng.random_range(-beta..beta);
            }
        }
        p.w_dec.copy_from_slice(&p.w_enc_t);
        normalize_rows_unit(&mut p.w_dec, d);
        if let Some(t) = log_threshold {
            p.log_threshold.iter_mut().for_each(|v| *v = t);
        }
        p
    }

    /// The tensors in a fixed order with their names (for Adam, clipping and
    /// serialization).
    pub fn tensors(&self) -> Vec<(&'static str, &Vec<f32>)> {
        let mut v = vec![
            ("w_enc_t", &self.w_enc_t),
            ("b_enc", &self.b_enc),
            ("w_dec", &self.w_dec),
            ("b_dec", &self.b_dec),
        ];
        if !self.log_threshold.is_empty() {
            v.push(("log_threshold", &self.log_threshold));
        }
        v
    }

    /// Mutable counterpart of [`SaeParams::tensors`].
    pub fn tensors_mut(&mut self) -> Vec<(&'static str, &mut Vec<f32>)> {
        let mut v = vec![
            ("w_enc_t", &mut self.w_enc_t),
            ("b_enc", &mut self.b_enc),
            ("w_dec", &mut self.w_dec),
            ("b_dec", &mut self.b_dec),
        ];
        if !self.log_threshold.is_empty() {
            v.push(("log_threshold", &mut self.log_threshold));
        }
        v
    }

    /// W_enc in the SAELens [d, n] layout.
    pub fn w_enc_dn(&self) -> Vec<f32> {
        transpose(&self.w_enc_t, self.n, self.d)
    }

    /// Zeroes every tensor in place (reusing the allocations).
    pub fn fill_zero(&mut self) {
        for (_, t) in self.tensors_mut() {
            t.par_iter_mut().for_each(|v| *v = 0.0);
        }
    }

    /// Zeroes the per-latent and per-feature vectors only (b_enc, b_dec,
    /// log_threshold), for a caller that overwrites the two n×d matrices.
    pub fn fill_zero_vectors(&mut self) {
        for t in [&mut self.b_enc, &mut self.b_dec, &mut self.log_threshold] {
            t.fill(0.0);
        }
    }
}

/// Scales each length-`d` row to unit L2 norm (rows of zero norm stay zero).
pub fn normalize_rows_unit(m: &mut [f32], d: usize) {
    m.par_chunks_mut(d).for_each(normalize_row_unit);
}

/// Scales one row to unit L2 norm (a row of zero norm stays zero).
pub fn normalize_row_unit(row: &mut [f32]) {
    // Eight f64 lanes: a single running sum is a serial chain of adds
    // (two of these passes over W_dec cost 16 ms a step at n 12288).
    let nrm = crate::kernels::sum_sq_lanes(row).sqrt();
    if nrm > 0.0 {
        let inv = (1.0 / nrm) as f32;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Transposes an r×c row-major matrix into c×r.
pub fn transpose(m: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; r * c];
    out.par_chunks_mut(r).enumerate().for_each(|(j, col)| {
        for (i, o) in col.iter_mut().enumerate() {
            *o = m[i * c + j];
        }
    });
    out
}
