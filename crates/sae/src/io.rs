//! SAE files. We write the SAELens v6 layout (SPEC §2.7) so SAELens users
//! can load our SAEs as they are, plus `saelab_cfg.json` with our full
//! config, and read ours, SAELens v6, pre-6.0 SAELens and EleutherAI
//! sparsify directories.
//!
//! Input unit normalization: SAELens's `normalize_activations =
//! "layer_norm"` is exactly our per-row transform (μ, unbiased σ, ε = 1e-5,
//! output mapped back), so we export it under that name; we also record
//! `saelab_input_unit_norm` in the cfg metadata and in `saelab_cfg.json`.
//! An `input_scale` (SAELens `expected_average_only_in`) is folded into the
//! weights at save, as SAELens does, and recorded in the metadata.
//! BatchTopK and Matryoshka BatchTopK export as SAELens `jumprelu` with the
//! uniform inference threshold θ (SAELens's own BatchTopK export).

use crate::arch::ArchSpec;
use crate::config::SaeConfig;
use crate::error::{Result, SaeError};
use crate::params::{transpose, SaeParams};
use crate::sae::Sae;
use crate::st::{write_atomic, write_tensors, InFile, OutTensor};
use serde_json::{json, Map, Value};
use std::path::Path;

/// SAELens weights file name.
pub const WEIGHTS_FILE: &str = "sae_weights.safetensors";
/// SAELens config file name.
pub const CFG_FILE: &str = "cfg.json";
/// SAELens sparsity file name.
pub const SPARSITY_FILE: &str = "sparsity.safetensors";
/// Our full config, beside the SAELens files.
pub const SAELAB_CFG_FILE: &str = "saelab_cfg.json";

/// Where the SAE's inputs came from (SAELens `metadata`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExportMeta {
    /// Model name, e.g. `gpt2`.
    pub model_name: String,
    /// Hook name, e.g. `blocks.8.hook_resid_pre`.
    pub hook_name: String,
    /// Context size used for training.
    pub context_size: usize,
    /// Whether rows started with BOS.
    pub prepend_bos: bool,
    /// Dataset path or name.
    pub dataset_path: String,
    /// Extra metadata keys (e.g. our training config).
    pub extra: Map<String, Value>,
}

/// Saves `sae` in the SAELens v6 layout into `dir` (created if missing);
/// `frequency` (per-latent firing frequency) gives `sparsity.safetensors`.
pub fn save_sae(dir: &Path, sae: &Sae, meta: &ExportMeta, frequency: Option<&[f32]>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| SaeError::io(dir, e))?;
    let folded_scale = sae.config().input_scale;
    let folded = sae.fold_input_scale();
    let sae = &folded;
    let cfg = sae.config();
    let p = sae.params();
    let (d, n) = (p.d, p.n);
    let ex = sae.arch().export(p);
    let mut ts = vec![
        OutTensor::f32("W_enc", vec![d, n], &p.w_enc_dn()),
        OutTensor::f32("W_dec", vec![n, d], &p.w_dec),
        OutTensor::f32("b_enc", vec![n], &p.b_enc),
        OutTensor::f32("b_dec", vec![d], &p.b_dec),
    ];
    if let Some(th) = &ex.threshold {
        ts.push(OutTensor::f32("threshold", vec![n], th));
    }
    write_tensors(&dir.join(WEIGHTS_FILE), &ts, None)?;

    let mut metadata = Map::new();
    metadata.insert("model_name".into(), json!(meta.model_name));
    metadata.insert("hook_name".into(), json!(meta.hook_name));
    metadata.insert("context_size".into(), json!(meta.context_size));
    metadata.insert("prepend_bos".into(), json!(meta.prepend_bos));
    metadata.insert("dataset_path".into(), json!(meta.dataset_path));
    metadata.insert("saelab_architecture".into(), json!(cfg.arch.name()));
    metadata.insert("saelab_input_unit_norm".into(), json!(cfg.input_unit_norm));
    if let Some(s) = folded_scale {
        metadata.insert("saelab_folded_input_scale".into(), json!(s));
    }
    for (k, v) in &meta.extra {
        metadata.insert(k.clone(), v.clone());
    }
    let mut c = Map::new();
    c.insert("d_in".into(), json!(d));
    c.insert("d_sae".into(), json!(n));
    c.insert("dtype".into(), json!("float32"));
    c.insert("device".into(), json!("cpu"));
    c.insert(
        "apply_b_dec_to_input".into(),
        json!(ex.apply_b_dec_to_input),
    );
    c.insert(
        "normalize_activations".into(),
        json!(if cfg.input_unit_norm {
            "layer_norm"
        } else {
            "none"
        }),
    );
    c.insert("reshape_activations".into(), json!("none"));
    c.insert("architecture".into(), json!(ex.saelens_architecture));
    if let Some(k) = ex.k {
        c.insert("k".into(), json!(k));
    }
    c.insert("metadata".into(), Value::Object(metadata));
    write_json(&dir.join(CFG_FILE), &Value::Object(c))?;

    let ours = json!({
        "format": "saelab_sae_v1",
        "sae": cfg,
        "arch_state": sae.arch().state(),
    });
    write_json(&dir.join(SAELAB_CFG_FILE), &ours)?;

    if let Some(freq) = frequency {
        if freq.len() != n {
            return Err(SaeError::Shape(format!(
                "frequency has {} entries, n = {n}",
                freq.len()
            )));
        }
        let s: Vec<f32> = freq
            .iter()
            .map(|&f| (f as f64 + 1e-10).log10() as f32)
            .collect();
        write_tensors(
            &dir.join(SPARSITY_FILE),
            &[OutTensor::f32("sparsity", vec![n], &s)],
            None,
        )?;
    }
    Ok(())
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| SaeError::Corrupt {
        path: path.into(),
        msg: e.to_string(),
    })?;
    write_atomic(path, s.as_bytes())
}

fn read_json(path: &Path) -> Result<Value> {
    let s = std::fs::read_to_string(path).map_err(|e| SaeError::io(path, e))?;
    serde_json::from_str(&s).map_err(|e| SaeError::BadCfg {
        path: path.into(),
        msg: e.to_string(),
    })
}

/// Loads an SAE directory: ours (`saelab_cfg.json`), SAELens v6 or pre-6.0
/// (`cfg.json` + `sae_weights.safetensors`), or sparsify (`cfg.json` +
/// `sae.safetensors` with `encoder.weight`).
pub fn load_sae(dir: &Path) -> Result<Sae> {
    if dir.join(SAELAB_CFG_FILE).exists() && dir.join(WEIGHTS_FILE).exists() {
        return load_ours(dir);
    }
    if dir.join("sae.safetensors").exists() {
        return load_sparsify(dir);
    }
    load_saelens(dir)
}

fn load_ours(dir: &Path) -> Result<Sae> {
    let path = dir.join(SAELAB_CFG_FILE);
    let v = read_json(&path)?;
    let bad = |msg: String| SaeError::BadCfg {
        path: path.clone(),
        msg,
    };
    let sae_v = v
        .get("sae")
        .ok_or_else(|| bad("missing key \"sae\"".into()))?;
    if let Some(a) = sae_v
        .get("arch")
        .and_then(|a| a.get("architecture"))
        .and_then(Value::as_str)
    {
        if ![
            "relu",
            "topk",
            "batchtopk",
            "jumprelu",
            "matryoshka_batchtopk",
        ]
        .contains(&a)
        {
            return Err(SaeError::UnknownArchitecture {
                path: path.clone(),
                name: a.to_string(),
            });
        }
    }
    let cfg: SaeConfig = serde_json::from_value(sae_v.clone()).map_err(|e| bad(e.to_string()))?;
    cfg.validate()?;
    let state: Vec<f32> = match v.get("arch_state") {
        Some(s) => serde_json::from_value(s.clone()).map_err(|e| bad(e.to_string()))?,
        None => vec![],
    };
    let w = InFile::open(&dir.join(WEIGHTS_FILE))?;
    let (d, n) = (cfg.d_in, cfg.d_sae);
    let w_enc = tensor(&w, "W_enc", &[d, n])?;
    let log_threshold = if cfg.arch.has_log_threshold() {
        tensor(&w, "threshold", &[n])?
            .iter()
            .map(|t| t.ln())
            .collect()
    } else {
        vec![]
    };
    let params = SaeParams {
        d,
        n,
        w_enc_t: transpose(&w_enc, d, n),
        b_enc: tensor(&w, "b_enc", &[n])?,
        w_dec: tensor(&w, "W_dec", &[n, d])?,
        b_dec: tensor(&w, "b_dec", &[d])?,
        log_threshold,
    };
    let mut sae = Sae::new(cfg, params)?;
    sae.arch_mut().set_state(&state)?;
    Ok(sae)
}

/// Reads a tensor and checks its shape and that every value is finite.
fn tensor(f: &InFile, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let (v, s) = f.f32(name)?;
    if s != shape {
        return Err(SaeError::Shape(format!(
            "tensor {name} in {} has shape {s:?}, expected {shape:?}",
            f.path.display()
        )));
    }
    check_finite(&f.path, name, &v, shape)?;
    Ok(v)
}

/// A NaN or infinite weight is a broken file: caught here, naming the file,
/// tensor and row, rather than surfacing later as a non-finite batch row in
/// whatever runs the SAE.
fn check_finite(path: &Path, name: &str, v: &[f32], shape: &[usize]) -> Result<()> {
    let Some(i) = v.iter().position(|x| !x.is_finite()) else {
        return Ok(());
    };
    let cols: usize = shape.iter().skip(1).product();
    let at = if shape.len() >= 2 && cols > 0 {
        format!("row {}, column {}", i / cols, i % cols)
    } else {
        format!("entry {i}")
    };
    Err(SaeError::Corrupt {
        path: path.into(),
        msg: format!("tensor {name} has a non-finite value ({}) at {at}", v[i]),
    })
}

/// The architecture a SAELens `cfg.json` names. v6 has `architecture`;
/// pre-6.0 cfgs may lack it and say `activation_fn_str` instead (read as
/// "standard" + that activation); the oldest (L1-trained ReLU SAEs, e.g.
/// gpt2-small-res-jb) have neither but carry `l1_coefficient`. Anything else
/// without `architecture` is an error: guessing ReLU made a TopK SAE
/// evaluate at L0 in the hundreds.
fn saelens_architecture<'a>(c: &'a Value, path: &Path) -> Result<&'a str> {
    match c.get("architecture") {
        Some(Value::String(a)) => Ok(a),
        Some(other) => Err(SaeError::BadCfg {
            path: path.into(),
            msg: format!("\"architecture\" must be a string, got {other}"),
        }),
        None if c.get("activation_fn_str").is_some() || c.get("l1_coefficient").is_some() => {
            Ok("standard")
        }
        None => Err(SaeError::BadCfg {
            path: path.into(),
            msg: "no \"architecture\" key (nor a pre-6.0 \"activation_fn_str\"): cannot tell \
                  which SAE this is; add e.g. \"architecture\": \"topk\" with \"k\""
                .into(),
        }),
    }
}

fn get_usize(c: &Value, key: &str, path: &Path) -> Result<usize> {
    c.get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| SaeError::BadCfg {
            path: path.into(),
            msg: format!("missing or non-integer key {key:?}"),
        })
}

fn load_saelens(dir: &Path) -> Result<Sae> {
    let path = dir.join(CFG_FILE);
    let c = read_json(&path)?;
    let d = get_usize(&c, "d_in", &path)?;
    let n = get_usize(&c, "d_sae", &path)?;
    // v6 has `architecture` (+ `k` for topk); pre-6.0 has
    // `activation_fn_str` (+ `activation_fn_kwargs.k`) and maybe
    // `architecture` ("standard" / "gated" / "jumprelu").
    let arch_str = saelens_architecture(&c, &path)?;
    let act = c
        .get("activation_fn_str")
        .and_then(Value::as_str)
        .unwrap_or("relu");
    let k = c.get("k").and_then(Value::as_u64).or_else(|| {
        c.get("activation_fn_kwargs")
            .and_then(|a| a.get("k"))
            .and_then(Value::as_u64)
    });
    let apply_b_dec = c
        .get("apply_b_dec_to_input")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let norm = c
        .get("normalize_activations")
        .and_then(Value::as_str)
        .unwrap_or("none");
    let input_unit_norm = match norm {
        "none" => false,
        "layer_norm" => true,
        other => {
            return Err(SaeError::BadCfg {
                path,
                msg: format!(
                    "normalize_activations {other:?} is not supported (only none, layer_norm)"
                ),
            })
        }
    };
    let w = InFile::open(&dir.join(WEIGHTS_FILE))?;
    let arch = match (arch_str, act) {
        ("topk", _) | ("standard", "topk") => {
            let k = k.ok_or_else(|| SaeError::BadCfg {
                path: path.clone(),
                msg: "topk SAE without k".into(),
            })?;
            ArchSpec::TopK { k: k as usize }
        }
        ("standard", "relu") => ArchSpec::Relu { l1_coeff: 0.0 },
        ("jumprelu", _) => ArchSpec::JumpRelu {
            l0_coeff: 0.0,
            bandwidth: 0.001,
            init_threshold: 0.001,
            apply_b_dec_to_input: apply_b_dec,
        },
        (a, f) => {
            return Err(SaeError::UnknownArchitecture {
                path,
                name: if a == "standard" {
                    format!("standard/{f}")
                } else {
                    a.to_string()
                },
            })
        }
    };
    // Without b_dec subtraction the encoder computes xW + b_enc; ours
    // computes (x − b_dec)W + b_enc', equal with b_enc' = b_enc + b_dec·W.
    let fold_b_dec = !apply_b_dec && !matches!(arch, ArchSpec::JumpRelu { .. });
    let rescale = c
        .get("rescale_acts_by_decoder_norm")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let log_threshold = if arch.has_log_threshold() {
        let th = tensor(&w, "threshold", &[n])?;
        if th.iter().any(|&t| t.is_nan() || t <= 0.0) {
            return Err(SaeError::BadCfg {
                path,
                msg: "jumprelu thresholds must be > 0".into(),
            });
        }
        th.iter().map(|t| t.ln()).collect()
    } else {
        vec![]
    };
    let w_enc = tensor(&w, "W_enc", &[d, n])?;
    let params = SaeParams {
        d,
        n,
        w_enc_t: transpose(&w_enc, d, n),
        b_enc: tensor(&w, "b_enc", &[n])?,
        w_dec: tensor(&w, "W_dec", &[n, d])?,
        b_dec: tensor(&w, "b_dec", &[d])?,
        log_threshold,
    };
    let mut params = params;
    if fold_b_dec {
        for i in 0..n {
            let row = &params.w_enc_t[i * d..(i + 1) * d];
            let shift: f64 = row
                .iter()
                .zip(&params.b_dec)
                .map(|(&w, &b)| w as f64 * b as f64)
                .sum();
            params.b_enc[i] = (params.b_enc[i] as f64 + shift) as f32;
        }
    }
    if rescale {
        // SAELens scales pre-activations by s_i = ‖W_dec,i‖ and divides the
        // codes by it before decoding: fold s_i into the encoder and 1/s_i
        // into the decoder (codes then carry SAELens's scaled values).
        for i in 0..n {
            let dec = &mut params.w_dec[i * d..(i + 1) * d];
            let s_i = dec.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            if !(s_i.is_finite() && s_i > 0.0) {
                return Err(SaeError::BadCfg {
                    path,
                    msg: format!("rescale_acts_by_decoder_norm with a zero decoder row {i}"),
                });
            }
            dec.iter_mut().for_each(|v| *v = (*v as f64 / s_i) as f32);
            params.w_enc_t[i * d..(i + 1) * d]
                .iter_mut()
                .for_each(|v| *v = (*v as f64 * s_i) as f32);
            params.b_enc[i] = (params.b_enc[i] as f64 * s_i) as f32;
        }
    }
    let mut cfg = SaeConfig::new(d, n, arch);
    cfg.input_unit_norm = input_unit_norm;
    Sae::new(cfg, params)
}

fn load_sparsify(dir: &Path) -> Result<Sae> {
    let path = dir.join(CFG_FILE);
    let c = read_json(&path)?;
    let w = InFile::open(&dir.join("sae.safetensors"))?;
    let (enc, shape) = w.f32("encoder.weight")?;
    check_finite(&w.path, "encoder.weight", &enc, &shape)?;
    let (n, d) = match shape[..] {
        [n, d] => (n, d),
        _ => {
            return Err(SaeError::Shape(format!(
                "encoder.weight has shape {shape:?}, expected [n, d]"
            )))
        }
    };
    if let Some(cd) = c.get("d_in").and_then(Value::as_u64) {
        if cd as usize != d {
            return Err(SaeError::Shape(format!(
                "cfg d_in {cd} but encoder.weight has d = {d}"
            )));
        }
    }
    if c.get("skip_connection").and_then(Value::as_bool) == Some(true) {
        return Err(SaeError::BadCfg {
            path,
            msg: "sparsify SAEs with skip_connection are not supported".into(),
        });
    }
    let k = get_usize(&c, "k", &path)?;
    let params = SaeParams {
        d,
        n,
        w_enc_t: enc,
        b_enc: tensor(&w, "encoder.bias", &[n])?,
        w_dec: tensor(&w, "W_dec", &[n, d])?,
        b_dec: tensor(&w, "b_dec", &[d])?,
        log_threshold: vec![],
    };
    let mut cfg = SaeConfig::new(d, n, ArchSpec::TopK { k });
    cfg.input_unit_norm = false;
    Sae::new(cfg, params)
}

/// Where an SAE directory says its inputs come from, read from its config
/// without loading weights (for evaluation: which hook to read).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SaeInfo {
    /// TransformerLens hook name: SAELens v6 `metadata.hook_name`, v5
    /// `hook_name`, pre-5 `hook_point`; sparsify's `layers.L` folder name
    /// maps to `blocks.L.hook_resid_post` (the output of layer L).
    pub hook_name: Option<String>,
    /// Model the SAE was trained on, when recorded.
    pub model_name: Option<String>,
    /// Sequence length of the training rows, when recorded.
    pub context_size: Option<usize>,
    /// Input width (`d_in`), when recorded.
    pub d_in: Option<usize>,
    /// Where the information came from.
    pub format: &'static str,
}

/// Reads [`SaeInfo`] from an SAE directory (ours, SAELens, sparsify).
pub fn sae_info(dir: &Path) -> Result<SaeInfo> {
    if dir.join("sae.safetensors").exists() {
        let name = dir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let hook_name = name
            .strip_prefix("layers.")
            .and_then(|l| l.parse::<usize>().ok())
            .map(|l| format!("blocks.{l}.hook_resid_post"));
        return Ok(SaeInfo {
            hook_name,
            format: "sparsify",
            ..SaeInfo::default()
        });
    }
    let path = dir.join(CFG_FILE);
    let c = read_json(&path)?;
    let meta = c.get("metadata").unwrap_or(&Value::Null);
    let s = |k: &str| {
        meta.get(k)
            .or_else(|| c.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(SaeInfo {
        hook_name: s("hook_name").or_else(|| s("hook_point")),
        model_name: s("model_name"),
        context_size: meta
            .get("context_size")
            .or_else(|| c.get("context_size"))
            .and_then(Value::as_u64)
            .map(|v| v as usize),
        d_in: c.get("d_in").and_then(Value::as_u64).map(|v| v as usize),
        format: if dir.join(SAELAB_CFG_FILE).exists() {
            "saelab"
        } else if meta.is_object() {
            "saelens-v6"
        } else {
            "saelens-pre6"
        },
    })
}
