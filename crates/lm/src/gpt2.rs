//! GPT-2 (SPEC §1.1): HF safetensors weights, pre-LN blocks, learned
//! positions, tied unembedding; hook points and positional interventions.

use crate::error::{LmError, Result};
use crate::forward::{check_tokens, ForwardOutput, ForwardSpec, HookRun};
use crate::hooks::{HookPoint, Site};
use crate::ops::{self, AttnShape, Layout, Linear};
use crate::weights::TensorMap;
use saelab_kernels::aligned;
use saelab_kernels::bf16::Bf16Rows;
use saelab_kernels::phase_times::{PhaseTimes, Timed};
use std::path::Path;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f32,
    #[serde(default)]
    pub activation_function: Option<String>,
}

fn default_eps() -> f32 {
    1e-5
}

impl Gpt2Config {
    /// Reads an HF `config.json` and checks it describes a GPT-2 we can run.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| LmError::io(path, e))?;
        let cfg: Gpt2Config = serde_json::from_str(&text).map_err(|e| LmError::Config {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let bad = |msg: String| LmError::Config {
            path: path.to_path_buf(),
            msg,
        };
        if cfg.n_head == 0 || !cfg.n_embd.is_multiple_of(cfg.n_head) {
            return Err(bad(format!(
                "n_embd {} is not a multiple of n_head {}",
                cfg.n_embd, cfg.n_head
            )));
        }
        if cfg.n_layer == 0 || cfg.vocab_size == 0 || cfg.n_positions == 0 {
            return Err(bad(
                "n_layer, vocab_size and n_positions must be positive".into()
            ));
        }
        if let Some(a) = &cfg.activation_function {
            if a != "gelu_new" && a != "gelu_pytorch_tanh" {
                return Err(bad(format!("activation `{a}` is not supported (gelu_new)")));
            }
        }
        Ok(cfg)
    }
}

struct Block {
    ln1_w: Vec<f32>,
    ln1_b: Vec<f32>,
    c_attn: Linear,
    c_proj: Linear,
    ln2_w: Vec<f32>,
    ln2_b: Vec<f32>,
    c_fc: Linear,
    mlp_proj: Linear,
}

pub struct Gpt2 {
    pub cfg: Gpt2Config,
    wte: Vec<f32>,
    wpe: Vec<f32>,
    blocks: Vec<Block>,
    lnf_w: Vec<f32>,
    lnf_b: Vec<f32>,
}

impl Gpt2 {
    /// Switches every block's dense products to `precision`.
    pub fn set_precision(&mut self, precision: ops::Precision) {
        for b in &mut self.blocks {
            for l in [&mut b.c_attn, &mut b.c_proj, &mut b.c_fc, &mut b.mlp_proj] {
                l.set_precision(precision);
            }
        }
    }

    /// Builds the model from HF-named tensors (with or without `transformer.`).
    pub fn from_tensors(cfg: Gpt2Config, mut t: TensorMap) -> Result<Self> {
        if t.contains("transformer.wte.weight") {
            t.prefix = "transformer.".into();
        }
        let d = cfg.n_embd;
        let lin = |t: &mut TensorMap, name: &str, i: usize, o: usize| -> Result<Linear> {
            Ok(Linear::new(
                t.take(&format!("{name}.weight"), &[i, o])?,
                Some(t.take(&format!("{name}.bias"), &[o])?),
                i,
                o,
                Layout::InOut,
            ))
        };
        let wte = t.take("wte.weight", &[cfg.vocab_size, d])?;
        let wpe = t.take("wpe.weight", &[cfg.n_positions, d])?;
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("h.{i}");
            blocks.push(Block {
                ln1_w: t.take(&format!("{p}.ln_1.weight"), &[d])?,
                ln1_b: t.take(&format!("{p}.ln_1.bias"), &[d])?,
                c_attn: lin(&mut t, &format!("{p}.attn.c_attn"), d, 3 * d)?,
                c_proj: lin(&mut t, &format!("{p}.attn.c_proj"), d, d)?,
                ln2_w: t.take(&format!("{p}.ln_2.weight"), &[d])?,
                ln2_b: t.take(&format!("{p}.ln_2.bias"), &[d])?,
                c_fc: lin(&mut t, &format!("{p}.mlp.c_fc"), d, 4 * d)?,
                mlp_proj: lin(&mut t, &format!("{p}.mlp.c_proj"), 4 * d, d)?,
            });
        }
        let lnf_w = t.take("ln_f.weight", &[d])?;
        let lnf_b = t.take("ln_f.bias", &[d])?;
        Ok(Gpt2 {
            cfg,
            wte,
            wpe,
            blocks,
            lnf_w,
            lnf_b,
        })
    }

    pub fn forward(
        &self,
        tokens: &[u32],
        batch: usize,
        seq: usize,
        spec: &mut ForwardSpec<'_>,
    ) -> Result<ForwardOutput> {
        let c = &self.cfg;
        let d = c.n_embd;
        let n = batch * seq;
        check_tokens(tokens, batch, seq, c.vocab_size, c.n_positions)?;
        let mut run = HookRun::new(spec, c.n_layer)?;
        if let crate::forward::Positions::Permuted(p) = run.positions() {
            if p.len() != seq || p.iter().any(|&x| x >= c.n_positions) {
                return Err(LmError::TooLong {
                    got: seq,
                    max: c.n_positions,
                });
            }
        }
        let mut t = PhaseTimes::start(Timed::Forward);
        let mut x = aligned::take(n * d);
        for (r, row) in x.chunks_exact_mut(d).enumerate() {
            let tok = tokens[r] as usize;
            row.copy_from_slice(&self.wte[tok * d..(tok + 1) * d]);
            if let Some(p) = run.positions().at(r % seq) {
                for (v, w) in row.iter_mut().zip(&self.wpe[p * d..(p + 1) * d]) {
                    *v += w;
                }
            }
        }
        let mut a = aligned::take(n * d);
        let mut qkv = aligned::take(n * 3 * d);
        let mut att = aligned::take(n * d);
        let mut h = aligned::take(n * 4 * d);
        // bf16 copies of the norm and GELU outputs (bf16 products only).
        let bf16 = self.blocks.iter().all(|b| b.c_attn.is_bf16());
        let mut a16 = bf16.then(|| Bf16Rows::take(n, d));
        let mut h16 = bf16.then(|| Bf16Rows::take(n, 4 * d));
        let shape = AttnShape {
            batch,
            seq,
            n_heads: c.n_head,
            n_kv_heads: c.n_head,
            head_dim: d / c.n_head,
        };
        let mut stopped = false;
        for (l, b) in self.blocks.iter().enumerate() {
            run.visit(HookPoint::new(l, Site::ResidPre), &mut x, d)?;
            if run.done_after(HookPoint::new(l, Site::ResidPre)) {
                stopped = true;
                break;
            }
            t.mark("embed+hooks");
            // In bf16 the norm writes its rows rounded, for the product.
            if let Some(a16) = a16.as_mut() {
                ops::layer_norm_bf16(&x, &b.ln1_w, &b.ln1_b, c.layer_norm_epsilon, a16);
                t.mark("norms");
                b.c_attn.forward_rows_into(a16, &mut qkv, false);
            } else {
                ops::layer_norm(&x, d, &b.ln1_w, &b.ln1_b, c.layer_norm_epsilon, &mut a);
                t.mark("norms");
                b.c_attn.forward_into(&a, n, &mut qkv, false);
            }
            t.mark("qkv");
            ops::causal_attention(
                &qkv,
                3 * d,
                &qkv[d..],
                &qkv[2 * d..],
                3 * d,
                shape,
                &mut att,
                d,
            );
            t.mark("attention");
            b.c_proj.forward_into(&att, n, &mut x, true);
            t.mark("o");
            run.visit(HookPoint::new(l, Site::ResidMid), &mut x, d)?;
            if run.done_after(HookPoint::new(l, Site::ResidMid)) {
                stopped = true;
                break;
            }
            t.mark("embed+hooks");
            if let Some(a16) = a16.as_mut() {
                ops::layer_norm_bf16(&x, &b.ln2_w, &b.ln2_b, c.layer_norm_epsilon, a16);
                t.mark("norms");
                b.c_fc.forward_rows_into(a16, &mut h, false);
            } else {
                ops::layer_norm(&x, d, &b.ln2_w, &b.ln2_b, c.layer_norm_epsilon, &mut a);
                t.mark("norms");
                // The f32 "mlp up" time includes the activation.
                ops::linear_gelu(&b.c_fc, &a, n, &mut h);
            }
            t.mark("mlp up");
            if let Some(h16) = h16.as_mut() {
                ops::gelu_new_bf16(&h, h16);
                t.mark("activation");
                b.mlp_proj.forward_rows_into(h16, &mut x, true);
            } else {
                b.mlp_proj.forward_into(&h, n, &mut x, true);
            }
            t.mark("mlp down");
            run.visit(HookPoint::new(l, Site::ResidPost), &mut x, d)?;
            if run.done_after(HookPoint::new(l, Site::ResidPost)) {
                stopped = true;
                break;
            }
        }
        let logits = if run.wants_logits() && !stopped {
            ops::layer_norm(
                &x,
                d,
                &self.lnf_w,
                &self.lnf_b,
                c.layer_norm_epsilon,
                &mut a,
            );
            Some(ops::unembed(&a, &self.wte, n, d, c.vocab_size))
        } else {
            None
        };
        t.mark("embed+hooks");
        t.print();
        // Every op overwrites these before reading (see `aligned::take`).
        aligned::give([x, a, qkv, att, h]);
        saelab_kernels::pool::give(a16.into_iter().chain(h16));
        Ok(run.finish(logits))
    }

    /// Sets `wpe` to zero (used by tests to check the `zero` intervention).
    pub fn zero_wpe(&mut self) {
        self.wpe.fill(0.0);
    }
}
