//! Llama-family decoder (SPEC §1.2): RMSNorm, GQA attention with RoPE,
//! SwiGLU MLP, tied or separate unembedding. Weights from GGUF (q/k rows in
//! llama.cpp's permuted order, so RoPE rotates interleaved pairs) or from an
//! HF safetensors folder (`rotate_half` pairs). Weights are dequantized to
//! f32 at load: the research path computes in f32 throughout.

use crate::error::{LmError, Result};
use crate::forward::{check_tokens, ForwardOutput, ForwardSpec, HookRun, Positions};
use crate::gguf::GgufFile;
use crate::hooks::{HookPoint, Site};
use crate::ops::{self, AttnShape, Layout, Linear, RopeStyle};
use crate::weights::TensorMap;
use rayon::prelude::*;
use saelab_kernels::aligned;
use saelab_kernels::bf16::Bf16Rows;
use saelab_kernels::phase_times::{PhaseTimes, Timed};
use std::path::Path;

#[derive(Debug, Clone, serde::Serialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
    pub n_ctx: usize,
    pub rope_style: RopeStyle,
}

impl serde::Serialize for RopeStyle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            RopeStyle::Interleaved => "interleaved",
            RopeStyle::Half => "half",
        })
    }
}

struct Block {
    attn_norm: Vec<f32>,
    /// q, k, v stacked: out = (n_heads + 2 n_kv) * head_dim.
    qkv: Linear,
    o: Linear,
    ffn_norm: Vec<f32>,
    /// gate and up stacked: out = 2 * ffn.
    gate_up: Linear,
    down: Linear,
}

pub struct Llama {
    pub cfg: LlamaConfig,
    embed: Vec<f32>,
    /// Separate unembedding `[vocab, hidden]`, or None when tied.
    output: Option<Vec<f32>>,
    blocks: Vec<Block>,
    final_norm: Vec<f32>,
}

fn stacked(parts: Vec<Vec<f32>>, in_dim: usize) -> Linear {
    let out_dim = parts.iter().map(|p| p.len() / in_dim).sum();
    Linear::new(parts.concat(), None, in_dim, out_dim, Layout::OutIn)
}

impl Llama {
    /// Switches every block's dense products to `precision`.
    pub fn set_precision(&mut self, precision: ops::Precision) {
        for b in &mut self.blocks {
            for l in [&mut b.qkv, &mut b.o, &mut b.gate_up, &mut b.down] {
                l.set_precision(precision);
            }
        }
    }

    /// Loads a Llama-architecture GGUF.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let arch = g
            .meta("general.architecture")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        if arch != "llama" {
            return Err(LmError::Config {
                path: g.path.clone(),
                msg: format!(
                    "architecture `{arch}` is not supported (supported GGUF architectures: llama)"
                ),
            });
        }
        let k = |s: &str| format!("{arch}.{s}");
        let hidden = g.meta_u64(&k("embedding_length"))? as usize;
        let n_heads = g.meta_u64(&k("attention.head_count"))? as usize;
        let n_kv_heads = g
            .meta(&k("attention.head_count_kv"))
            .and_then(|v| v.as_u64())
            .unwrap_or(n_heads as u64) as usize;
        if n_heads == 0
            || n_kv_heads == 0
            || !hidden.is_multiple_of(n_heads)
            || !n_heads.is_multiple_of(n_kv_heads)
        {
            return Err(LmError::Config {
                path: g.path.clone(),
                msg: format!(
                    "inconsistent heads: hidden {hidden}, heads {n_heads}, kv heads {n_kv_heads}"
                ),
            });
        }
        let head_dim = g
            .meta(&k("rope.dimension_count"))
            .and_then(|v| v.as_u64())
            .unwrap_or((hidden / n_heads) as u64) as usize;
        let embd_shape = g
            .info("token_embd.weight")
            .ok_or_else(|| LmError::MissingTensor {
                path: g.path.clone(),
                name: "token_embd.weight".into(),
            })?
            .shape
            .clone();
        let cfg = LlamaConfig {
            vocab_size: embd_shape.first().copied().unwrap_or(0),
            hidden,
            n_layers: g.meta_u64(&k("block_count"))? as usize,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn: g.meta_u64(&k("feed_forward_length"))? as usize,
            rms_eps: g
                .meta_f64(&k("attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-5) as f32,
            rope_theta: g.meta_f64(&k("rope.freq_base")).unwrap_or(10000.0) as f32,
            n_ctx: g.meta_u64(&k("context_length")).unwrap_or(2048) as usize,
            rope_style: RopeStyle::Interleaved,
        };
        let (d, hd, f) = (cfg.hidden, cfg.head_dim, cfg.ffn);
        let t = |name: &str, shape: &[usize]| g.tensor_f32(name, shape);
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let p = format!("blk.{i}");
            blocks.push(Block {
                attn_norm: t(&format!("{p}.attn_norm.weight"), &[d])?,
                qkv: stacked(
                    vec![
                        t(&format!("{p}.attn_q.weight"), &[cfg.n_heads * hd, d])?,
                        t(&format!("{p}.attn_k.weight"), &[cfg.n_kv_heads * hd, d])?,
                        t(&format!("{p}.attn_v.weight"), &[cfg.n_kv_heads * hd, d])?,
                    ],
                    d,
                ),
                o: stacked(
                    vec![t(
                        &format!("{p}.attn_output.weight"),
                        &[d, cfg.n_heads * hd],
                    )?],
                    cfg.n_heads * hd,
                ),
                ffn_norm: t(&format!("{p}.ffn_norm.weight"), &[d])?,
                gate_up: stacked(
                    vec![
                        t(&format!("{p}.ffn_gate.weight"), &[f, d])?,
                        t(&format!("{p}.ffn_up.weight"), &[f, d])?,
                    ],
                    d,
                ),
                down: stacked(vec![t(&format!("{p}.ffn_down.weight"), &[d, f])?], f),
            });
        }
        let embed = t("token_embd.weight", &[cfg.vocab_size, d])?;
        let output = if g.info("output.weight").is_some() {
            Some(t("output.weight", &[cfg.vocab_size, d])?)
        } else {
            None
        };
        let final_norm = t("output_norm.weight", &[d])?;
        Ok(Llama {
            cfg,
            embed,
            output,
            blocks,
            final_norm,
        })
    }

    /// Loads an HF `LlamaForCausalLM` folder (config.json + safetensors).
    pub fn from_hf(config_path: &Path, mut t: TensorMap) -> Result<Self> {
        let v = read_config(config_path)?;
        let get = |k: &str| -> Result<usize> {
            v.get(k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| LmError::Config {
                    path: config_path.to_path_buf(),
                    msg: format!("`{k}` missing or not an integer"),
                })
        };
        let hidden = get("hidden_size")?;
        let n_heads = get("num_attention_heads")?;
        let n_kv_heads = get("num_key_value_heads").unwrap_or(n_heads);
        if n_heads == 0 || n_kv_heads == 0 || hidden % n_heads != 0 || n_heads % n_kv_heads != 0 {
            return Err(LmError::Config {
                path: config_path.to_path_buf(),
                msg: "inconsistent head counts".into(),
            });
        }
        let cfg = LlamaConfig {
            vocab_size: get("vocab_size")?,
            hidden,
            n_layers: get("num_hidden_layers")?,
            n_heads,
            n_kv_heads,
            head_dim: get("head_dim").unwrap_or(hidden / n_heads),
            ffn: get("intermediate_size")?,
            rms_eps: v
                .get("rms_norm_eps")
                .and_then(|x| x.as_f64())
                .unwrap_or(1e-5) as f32,
            rope_theta: rope_theta(&v, config_path)?,
            n_ctx: get("max_position_embeddings").unwrap_or(2048),
            rope_style: RopeStyle::Half,
        };
        let (d, hd, f) = (cfg.hidden, cfg.head_dim, cfg.ffn);
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let p = format!("model.layers.{i}");
            blocks.push(Block {
                attn_norm: t.take(&format!("{p}.input_layernorm.weight"), &[d])?,
                qkv: stacked(
                    vec![
                        t.take(
                            &format!("{p}.self_attn.q_proj.weight"),
                            &[cfg.n_heads * hd, d],
                        )?,
                        t.take(
                            &format!("{p}.self_attn.k_proj.weight"),
                            &[cfg.n_kv_heads * hd, d],
                        )?,
                        t.take(
                            &format!("{p}.self_attn.v_proj.weight"),
                            &[cfg.n_kv_heads * hd, d],
                        )?,
                    ],
                    d,
                ),
                o: stacked(
                    vec![t.take(
                        &format!("{p}.self_attn.o_proj.weight"),
                        &[d, cfg.n_heads * hd],
                    )?],
                    cfg.n_heads * hd,
                ),
                ffn_norm: t.take(&format!("{p}.post_attention_layernorm.weight"), &[d])?,
                gate_up: stacked(
                    vec![
                        t.take(&format!("{p}.mlp.gate_proj.weight"), &[f, d])?,
                        t.take(&format!("{p}.mlp.up_proj.weight"), &[f, d])?,
                    ],
                    d,
                ),
                down: stacked(
                    vec![t.take(&format!("{p}.mlp.down_proj.weight"), &[d, f])?],
                    f,
                ),
            });
        }
        let embed = t.take("model.embed_tokens.weight", &[cfg.vocab_size, d])?;
        let output = if t.contains("lm_head.weight") {
            Some(t.take("lm_head.weight", &[cfg.vocab_size, d])?)
        } else {
            None
        };
        let final_norm = t.take("model.norm.weight", &[d])?;
        Ok(Llama {
            cfg,
            embed,
            output,
            blocks,
            final_norm,
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
        let (d, hd) = (c.hidden, c.head_dim);
        let n = batch * seq;
        check_tokens(tokens, batch, seq, c.vocab_size, c.n_ctx)?;
        let mut run = HookRun::new(spec, c.n_layers)?;
        let pos: Vec<usize> = match run.positions() {
            Positions::Normal => (0..seq).collect(),
            Positions::Zero => vec![0; seq],
            Positions::Permuted(p) => {
                if p.len() != seq {
                    return Err(LmError::TooLong {
                        got: p.len(),
                        max: seq,
                    });
                }
                p.clone()
            }
        };
        let mut t = PhaseTimes::start(Timed::Forward);
        let (cos, sin) = ops::rope_tables(&pos, hd, c.rope_theta);
        let mut x = aligned::take(n * d);
        x.par_chunks_mut(d)
            .zip(tokens.par_iter())
            .for_each(|(row, &tok)| {
                let tok = tok as usize;
                row.copy_from_slice(&self.embed[tok * d..(tok + 1) * d]);
            });
        let qd = c.n_heads * hd;
        let kd = c.n_kv_heads * hd;
        let qkv_w = qd + 2 * kd;
        let mut a = aligned::take(n * d);
        let mut qkv = aligned::take(n * qkv_w);
        let mut att = aligned::take(n * qd);
        let mut gu = aligned::take(n * 2 * c.ffn);
        // bf16 copies of the norm and SwiGLU outputs (bf16 products only);
        // the f32 SwiGLU output is then not needed.
        let bf16 = self.blocks.iter().all(|b| b.qkv.is_bf16());
        let mut h = aligned::take(if bf16 { 0 } else { n * c.ffn });
        let mut a16 = bf16.then(|| Bf16Rows::take(n, d));
        let mut h16 = bf16.then(|| Bf16Rows::take(n, c.ffn));
        let shape = AttnShape {
            batch,
            seq,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
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
                ops::rms_norm_bf16(&x, &b.attn_norm, c.rms_eps, a16);
                t.mark("norms");
                b.qkv.forward_rows_into(a16, &mut qkv, false);
            } else {
                ops::rms_norm(&x, d, &b.attn_norm, c.rms_eps, &mut a);
                t.mark("norms");
                b.qkv.forward_into(&a, n, &mut qkv, false);
            }
            t.mark("qkv");
            ops::apply_rope(
                &mut qkv,
                qkv_w,
                seq,
                c.n_heads,
                hd,
                &cos,
                &sin,
                c.rope_style,
            );
            ops::apply_rope(
                &mut qkv[qd..],
                qkv_w,
                seq,
                c.n_kv_heads,
                hd,
                &cos,
                &sin,
                c.rope_style,
            );
            t.mark("rope");
            ops::causal_attention(
                &qkv,
                qkv_w,
                &qkv[qd..],
                &qkv[qd + kd..],
                qkv_w,
                shape,
                &mut att,
                qd,
            );
            t.mark("attention");
            b.o.forward_into(&att, n, &mut x, true);
            t.mark("o");
            run.visit(HookPoint::new(l, Site::ResidMid), &mut x, d)?;
            if run.done_after(HookPoint::new(l, Site::ResidMid)) {
                stopped = true;
                break;
            }
            t.mark("embed+hooks");
            if let Some(a16) = a16.as_mut() {
                ops::rms_norm_bf16(&x, &b.ffn_norm, c.rms_eps, a16);
                t.mark("norms");
                b.gate_up.forward_rows_into(a16, &mut gu, false);
            } else {
                ops::rms_norm(&x, d, &b.ffn_norm, c.rms_eps, &mut a);
                t.mark("norms");
                // The f32 "mlp up" time includes the activation.
                ops::gate_up_swiglu(&b.gate_up, &a, n, &mut gu, &mut h);
            }
            t.mark("mlp up");
            if let Some(h16) = h16.as_mut() {
                ops::swiglu_rows_bf16(&gu, h16);
                t.mark("activation");
                b.down.forward_rows_into(h16, &mut x, true);
            } else {
                b.down.forward_into(&h, n, &mut x, true);
            }
            t.mark("mlp down");
            run.visit(HookPoint::new(l, Site::ResidPost), &mut x, d)?;
            if run.done_after(HookPoint::new(l, Site::ResidPost)) {
                stopped = true;
                break;
            }
        }
        let logits = if run.wants_logits() && !stopped {
            ops::rms_norm(&x, d, &self.final_norm, c.rms_eps, &mut a);
            let w = self.output.as_ref().unwrap_or(&self.embed);
            Some(ops::unembed(&a, w, n, d, c.vocab_size))
        } else {
            None
        };
        t.mark("embed+hooks");
        t.print();
        // Every op overwrites these before reading (see `aligned::take`).
        aligned::give([x, a, qkv, att, gu, h]);
        saelab_kernels::pool::give(a16.into_iter().chain(h16));
        Ok(run.finish(logits))
    }
}

fn read_config(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| LmError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| LmError::Config {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// The RoPE base of an HF config: `rope_theta` at the top (transformers
/// < 5) or in `rope_parameters` (transformers ≥ 5), 10000 when neither
/// says. Scaled RoPE variants (llama3, yarn, …) are refused, not run as
/// plain RoPE.
fn rope_theta(v: &serde_json::Value, path: &Path) -> Result<f32> {
    let params = v.get("rope_parameters").or_else(|| v.get("rope_scaling"));
    if let Some(kind) = params
        .and_then(|p| p.get("rope_type").or_else(|| p.get("type")))
        .and_then(|t| t.as_str())
    {
        if kind != "default" {
            return Err(LmError::Config {
                path: path.to_path_buf(),
                msg: format!("rope_type `{kind}` is not supported (only default RoPE)"),
            });
        }
    }
    let theta = v
        .get("rope_theta")
        .or_else(|| params.and_then(|p| p.get("rope_theta")))
        .map(|x| x.as_f64().ok_or("rope_theta is not a number"))
        .transpose()
        .map_err(|m| LmError::Config {
            path: path.to_path_buf(),
            msg: m.into(),
        })?;
    Ok(theta.unwrap_or(10000.0) as f32)
}
