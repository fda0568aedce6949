//! What a forward pass is asked to do, shared by every architecture: which
//! hook points to read, an optional splice, whether logits are needed, and
//! the positional intervention. Also the bookkeeping that lets a pass stop
//! right after the deepest hook point it needs.

use crate::error::{LmError, Result};
use crate::hooks::HookPoint;
use rand::seq::SliceRandom;
use rand::Rng;
use std::fmt;
use std::str::FromStr;

/// The study's positional-embedding interventions (SPEC §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PosIntervention {
    #[default]
    None,
    /// GPT-2: no `wpe` term. RoPE models: every position uses angle 0.
    Zero,
    /// GPT-2: `wpe[σ(t)]`. RoPE models: position ids σ(t). One fresh
    /// permutation σ of 0..T per forward pass, drawn from the caller's RNG.
    Shuffle,
}

impl PosIntervention {
    /// The concrete positions of one forward pass over rows of length `seq`.
    pub fn positions<R: Rng + ?Sized>(self, seq: usize, rng: &mut R) -> Positions {
        match self {
            PosIntervention::None => Positions::Normal,
            PosIntervention::Zero => Positions::Zero,
            PosIntervention::Shuffle => {
                let mut p: Vec<usize> = (0..seq).collect();
                p.shuffle(rng);
                Positions::Permuted(p)
            }
        }
    }
}

impl fmt::Display for PosIntervention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PosIntervention::None => "none",
            PosIntervention::Zero => "zero",
            PosIntervention::Shuffle => "shuffle",
        })
    }
}

impl FromStr for PosIntervention {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(PosIntervention::None),
            "zero" => Ok(PosIntervention::Zero),
            "shuffle" => Ok(PosIntervention::Shuffle),
            _ => Err(format!(
                "unknown positional intervention `{s}` (none|zero|shuffle)"
            )),
        }
    }
}

/// Positions actually used by one forward pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Positions {
    Normal,
    Zero,
    /// `perm[t]` is the position used at token index t.
    Permuted(Vec<usize>),
}

impl Positions {
    /// Position id at token index `t`, or None for "no position" (Zero).
    pub fn at(&self, t: usize) -> Option<usize> {
        match self {
            Positions::Normal => Some(t),
            Positions::Zero => None,
            Positions::Permuted(p) => Some(p[t]),
        }
    }
}

/// A function that replaces the residual at a hook point, called with the
/// residual as `[batch*seq, d]` row-major. Errors abort the forward pass.
pub type SpliceFn<'a> =
    dyn FnMut(&mut [f32], usize, usize) -> std::result::Result<(), String> + Send + 'a;

pub struct Splice<'a> {
    pub hook: HookPoint,
    pub f: &'a mut SpliceFn<'a>,
}

/// A forward-pass request.
pub struct ForwardSpec<'a> {
    /// Hook points to copy out (their clean value: a read at the splice's own
    /// hook sees the value before the splice replaces it).
    pub reads: Vec<HookPoint>,
    pub splice: Option<Splice<'a>>,
    /// Compute logits (runs every block); otherwise stop after the deepest
    /// hook point read or spliced.
    pub logits: bool,
    pub positions: Positions,
}

impl<'a> ForwardSpec<'a> {
    /// Read `hooks` only, no splice, no logits, normal positions.
    pub fn reads(hooks: &[HookPoint]) -> Self {
        ForwardSpec {
            reads: hooks.to_vec(),
            splice: None,
            logits: false,
            positions: Positions::Normal,
        }
    }
}

/// Result of a forward pass.
#[derive(Debug, Default)]
pub struct ForwardOutput {
    /// One `[batch*seq, d]` buffer per requested read, in request order.
    pub hooks: Vec<(HookPoint, Vec<f32>)>,
    /// `[batch*seq, vocab]` when requested.
    pub logits: Option<Vec<f32>>,
}

impl ForwardOutput {
    pub fn hook(&self, h: HookPoint) -> Option<&[f32]> {
        self.hooks
            .iter()
            .find(|(p, _)| *p == h)
            .map(|(_, v)| v.as_slice())
    }

    /// Moves the buffer of `h` out (an empty one is left behind).
    pub fn take_hook(&mut self, h: HookPoint) -> Option<Vec<f32>> {
        self.hooks
            .iter_mut()
            .find(|(p, _)| *p == h)
            .map(|(_, v)| std::mem::take(v))
    }
}

/// Per-pass hook bookkeeping used by the architectures.
pub(crate) struct HookRun<'s, 'a> {
    spec: &'s mut ForwardSpec<'a>,
    out: Vec<Option<Vec<f32>>>,
    last: usize,
}

impl<'s, 'a> HookRun<'s, 'a> {
    pub fn new(spec: &'s mut ForwardSpec<'a>, n_layers: usize) -> Result<Self> {
        for h in &spec.reads {
            h.check(n_layers)?;
        }
        if let Some(s) = &spec.splice {
            s.hook.check(n_layers)?;
        }
        let last = if spec.logits {
            usize::MAX
        } else {
            spec.reads
                .iter()
                .chain(spec.splice.as_ref().map(|s| &s.hook))
                .map(HookPoint::order)
                .max()
                .unwrap_or(0)
        };
        let out = vec![None; spec.reads.len()];
        Ok(HookRun { spec, out, last })
    }

    /// Called by the architecture at every hook point, in forward order.
    pub fn visit(&mut self, hp: HookPoint, x: &mut [f32], d: usize) -> Result<()> {
        for (i, r) in self.spec.reads.iter().enumerate() {
            if *r == hp && self.out[i].is_none() {
                self.out[i] = Some(x.to_vec());
            }
        }
        if let Some(s) = self.spec.splice.as_mut() {
            if s.hook == hp {
                (s.f)(x, x.len() / d, d).map_err(|msg| LmError::Splice {
                    hook: hp.to_string(),
                    msg,
                })?;
                if x.iter().any(|v| !v.is_finite()) {
                    return Err(LmError::Splice {
                        hook: hp.to_string(),
                        msg: "the replacement contains NaN or Inf".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// True once everything the pass needs has been produced at `hp`.
    pub fn done_after(&self, hp: HookPoint) -> bool {
        hp.order() >= self.last
    }

    pub fn wants_logits(&self) -> bool {
        self.spec.logits
    }

    pub fn positions(&self) -> &Positions {
        &self.spec.positions
    }

    pub fn finish(self, logits: Option<Vec<f32>>) -> ForwardOutput {
        let hooks = self
            .spec
            .reads
            .iter()
            .zip(self.out)
            .filter_map(|(h, v)| v.map(|v| (*h, v)))
            .collect();
        ForwardOutput { hooks, logits }
    }
}

/// Checks a token batch against the model's vocabulary and context.
pub(crate) fn check_tokens(
    tokens: &[u32],
    batch: usize,
    seq: usize,
    vocab: usize,
    n_ctx: usize,
) -> Result<()> {
    if tokens.len() != batch * seq {
        return Err(LmError::BadBatch {
            expected: batch * seq,
            got: tokens.len(),
        });
    }
    if seq > n_ctx {
        return Err(LmError::TooLong {
            got: seq,
            max: n_ctx,
        });
    }
    if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(LmError::BadToken { id, vocab });
    }
    Ok(())
}
