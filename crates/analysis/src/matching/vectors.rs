//! Explicitly L2-normalized vector sets extracted from an SAE: its feature
//! vectors (decoder rows of W_dec, encoder columns of W_enc) or its neuron
//! vectors (columns of W_dec, rows of W_enc), see SPEC §5.
//!
//! Every cosine in the matching library is a dot product of two vectors of
//! a [`UnitVectors`] set, so normalization happens exactly once, here, in
//! f64 per vector.
//!
//! **Zero-norm vectors.** A vector with ‖u‖ ≤ [`ZERO_NORM`] (dead latents
//! whose decoder row was zeroed, pruned features) cannot be normalized. It
//! is stored as the zero vector, so every cosine with it is exactly 0 — the
//! value SPEC §5's `u·v / max(‖u‖‖v‖, 1e-8)` gives for u = 0 — and it never
//! matches anything at τ ≥ 0 (not even itself). Their number is reported in
//! [`UnitVectors::zero_norm`]. For nonzero vectors we use u/‖u‖, which agrees
//! with the SPEC formula whenever ‖u‖‖v‖ ≥ 1e-8 (always the case for SAE
//! weights of ordinary scale).

use super::error::{MatchError, Result};
use rayon::prelude::*;
use saelab_sae::Sae;

/// Vectors with an L2 norm at or below this are treated as zero vectors.
pub const ZERO_NORM: f64 = 1e-8;

/// Which weight matrix the vectors come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorKind {
    /// W_dec (n×d): feature vectors are its rows, neuron vectors its columns.
    Decoder,
    /// W_enc (d×n, SAELens layout): feature vectors are its columns, neuron
    /// vectors its rows.
    Encoder,
}

impl VectorKind {
    /// Lower-case name used in reports and messages.
    pub fn name(self) -> &'static str {
        match self {
            VectorKind::Decoder => "decoder",
            VectorKind::Encoder => "encoder",
        }
    }

    fn tensor(self) -> &'static str {
        match self {
            VectorKind::Decoder => "W_dec",
            VectorKind::Encoder => "W_enc",
        }
    }
}

/// Whether a set holds per-latent feature vectors (length d, one per latent)
/// or per-input-dimension neuron vectors (length n, one per dimension).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// n vectors of length d (one per latent).
    Features,
    /// d vectors of length n (one per input dimension); comparable only
    /// between SAEs of the same dictionary size n.
    Neurons,
}

impl Unit {
    /// Lower-case name used in reports and messages.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Features => "features",
            Unit::Neurons => "neurons",
        }
    }
}

/// A set of `count` unit vectors of length `dim`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitVectors {
    /// Label of the source (SAE name or path), used in messages.
    pub label: String,
    /// Number of vectors.
    pub count: usize,
    /// Length of each vector.
    pub dim: usize,
    /// `count × dim` row-major; every row has norm 1 or is all zeros.
    pub data: Vec<f32>,
    /// Number of rows that had norm ≤ [`ZERO_NORM`] and were set to zero.
    pub zero_norm: usize,
}

impl UnitVectors {
    /// Normalizes the rows of a row-major `count × dim` matrix. `tensor`
    /// names the matrix in error messages; `transposed_names` swaps the
    /// reported (row, col) for tensors whose user-facing layout is the
    /// transpose of `rows` (W_enc).
    fn build(
        label: &str,
        tensor: &'static str,
        rows: Vec<f32>,
        count: usize,
        dim: usize,
        transposed_names: bool,
    ) -> Result<Self> {
        if rows.len() != count * dim {
            return Err(MatchError::Shape {
                what: format!("{label}: {tensor}"),
                expected: count * dim,
                got: rows.len(),
            });
        }
        let mut data = rows;
        if let Some(p) = data.par_iter().position_first(|v| !v.is_finite()) {
            let (r, c) = (p / dim.max(1), p % dim.max(1));
            let (row, col) = if transposed_names { (c, r) } else { (r, c) };
            return Err(MatchError::NonFinite {
                label: label.to_string(),
                tensor,
                row,
                col,
                value: data[p],
            });
        }
        let zero_norm = if dim == 0 {
            count
        } else {
            data.par_chunks_mut(dim)
                .map(|row| {
                    // f64 accumulation: the norm of a 768-vector in f32 loses
                    // ~1e-6, which would show up as self-cosines ≠ 1.
                    let norm = row
                        .iter()
                        .map(|&v| (v as f64) * (v as f64))
                        .sum::<f64>()
                        .sqrt();
                    if norm <= ZERO_NORM {
                        row.iter_mut().for_each(|v| *v = 0.0);
                        1usize
                    } else {
                        row.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
                        0
                    }
                })
                .sum()
        };
        Ok(UnitVectors {
            label: label.to_string(),
            count,
            dim,
            data,
            zero_norm,
        })
    }

    /// Normalizes the rows of an arbitrary row-major `count × dim` matrix
    /// (for callers holding vectors that do not come from an [`Sae`]).
    pub fn from_rows(label: &str, data: &[f32], count: usize, dim: usize) -> Result<Self> {
        Self::build(label, "vectors", data.to_vec(), count, dim, false)
    }

    /// Feature vectors of an SAE: rows of W_dec or columns of W_enc (n
    /// vectors of length d).
    pub fn features(sae: &Sae, kind: VectorKind, label: &str) -> Result<Self> {
        let p = sae.params();
        let (src, transposed) = match kind {
            VectorKind::Decoder => (&p.w_dec, false),
            // w_enc_t is n×d: its rows are the columns of W_enc [d, n].
            VectorKind::Encoder => (&p.w_enc_t, true),
        };
        Self::build(label, kind.tensor(), src.clone(), p.n, p.d, transposed)
    }

    /// Neuron vectors of an SAE: columns of W_dec or rows of W_enc (d
    /// vectors of length n).
    pub fn neurons(sae: &Sae, kind: VectorKind, label: &str) -> Result<Self> {
        let p = sae.params();
        let src = match kind {
            VectorKind::Decoder => &p.w_dec,
            VectorKind::Encoder => &p.w_enc_t,
        };
        // Both stored matrices are n×d; the neuron vectors are their columns.
        let (n, d) = (p.n, p.d);
        if src.len() != n * d {
            return Err(MatchError::Shape {
                what: format!("{label}: {}", kind.tensor()),
                expected: n * d,
                got: src.len(),
            });
        }
        let mut t = vec![0.0f32; n * d];
        t.par_chunks_mut(n.max(1)).enumerate().for_each(|(j, row)| {
            for (i, o) in row.iter_mut().enumerate() {
                *o = src[i * d + j];
            }
        });
        // Report positions in the tensor's user-facing layout: W_dec [n, d]
        // (row = latent), W_enc [d, n] (row = input dimension).
        let transposed = matches!(kind, VectorKind::Decoder);
        Self::build(label, kind.tensor(), t, d, n, transposed)
    }

    /// Vectors of `unit` and `kind` from an SAE.
    pub fn from_sae(sae: &Sae, kind: VectorKind, unit: Unit, label: &str) -> Result<Self> {
        match unit {
            Unit::Features => Self::features(sae, kind, label),
            Unit::Neurons => Self::neurons(sae, kind, label),
        }
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Cosine of row `i` of `self` with row `j` of `other` (a dot product of
    /// unit vectors, accumulated in f64).
    pub fn cosine(&self, i: usize, other: &UnitVectors, j: usize) -> f64 {
        self.row(i)
            .iter()
            .zip(other.row(j))
            .map(|(&x, &y)| x as f64 * y as f64)
            .sum()
    }
}

/// Checks that two sets live in the same space; `what` describes them
/// ("decoder features") for the message.
pub fn check_comparable(a: &UnitVectors, b: &UnitVectors, what: &str) -> Result<()> {
    if a.dim != b.dim {
        return Err(MatchError::DimensionMismatch {
            what: what.to_string(),
            label_a: a.label.clone(),
            dim_a: a.dim,
            label_b: b.label.clone(),
            dim_b: b.dim,
        });
    }
    Ok(())
}

/// Both SAEs' vectors of one kind and unit, checked comparable: equal d for
/// features, equal n for neurons.
pub fn vector_pair(
    a: &Sae,
    label_a: &str,
    b: &Sae,
    label_b: &str,
    kind: VectorKind,
    unit: Unit,
) -> Result<(UnitVectors, UnitVectors)> {
    // Check shapes before the (large) copies, so a mismatch is reported fast.
    let (pa, pb) = (a.params(), b.params());
    let (dim_a, dim_b) = match unit {
        Unit::Features => (pa.d, pb.d),
        Unit::Neurons => (pa.n, pb.n),
    };
    let what = match unit {
        Unit::Features => format!("{} features (length d)", kind.name()),
        Unit::Neurons => format!(
            "{} neurons (length n: needs equal dictionary sizes)",
            kind.name()
        ),
    };
    if dim_a != dim_b {
        return Err(MatchError::DimensionMismatch {
            what,
            label_a: label_a.to_string(),
            dim_a,
            label_b: label_b.to_string(),
            dim_b,
        });
    }
    let va = UnitVectors::from_sae(a, kind, unit, label_a)?;
    let vb = UnitVectors::from_sae(b, kind, unit, label_b)?;
    check_comparable(&va, &vb, &what)?;
    Ok((va, vb))
}
