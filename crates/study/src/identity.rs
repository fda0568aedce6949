//! Stage hashes and the identities of the things they cover. A hash is the
//! sha256 of canonical JSON (object keys sorted, as `serde_json::Value`
//! keeps them) of the stage kind, the kind's code version, its inputs and
//! its upstream hashes: no absolute paths, no timestamps, so the same spec
//! plans to the same hashes in any folder and on any machine.
//!
//! Models and corpora are identified by what they are, not where: an
//! offline asset by its name (the fetcher pins its bytes), a local file by
//! its sha256, a local folder by its files' names and sizes (hashing a
//! folder of parquet shards on every plan would take minutes), a hub name
//! by the name.

use serde::Serialize;
use std::path::Path;

/// Code version of each stage kind: bump when a change to the code that
/// computes a kind's results changes them, so old cached stages re-run.
pub fn code_version(kind: &str) -> u32 {
    match kind {
        // 2: fast_exp rounds its exponent ties to even (session 8), so a
        // SiLU / GELU / softmax value can differ in the last bit.
        // 3 (session 9): the AMX bf16 product sums k in blocks of ≤ 256
        // pairs with a 2 × 2-tile kernel; attention runs in 32-row causal
        // blocks; LayerNorm / RMSNorm sum in 16 lanes: results move at f32
        // rounding.
        // 4 (session 12): attention at head width 64 on AVX-512 runs its
        // own kernel (one fused multiply-add chain per score and output);
        // softmax sums its 16 lanes as a halving tree, the row's tail in
        // its lanes: activations move at f32 rounding.
        // 5 (session 13): the blocks' f32 products on AVX-512 run the
        // packed kernel (one fused multiply-add chain per output over k in
        // order): activations move at f32 rounding.
        // 6 (session 18): so do they on AVX2/FMA CPUs (the same chain, in
        // ymm registers), and `--precision bf16` there runs the widened
        // operands on it (the portable kernel's bits). AVX-512 bits are
        // unchanged, but a hash cannot know which CPU will run it.
        // 7 (session 19): attention at head width 64 on AVX2/FMA runs the
        // hand-written kernel (the AVX-512 kernel's bits) in place of the
        // `gemm` path.
        "harvest" => 7,
        // 2: the gradient norm sums in eight f64 lanes (session 8), which
        // can move clipping by an ulp. 3: the AMX bf16 encoder (session 9).
        "train" => 3,
        // 2: eval and stats run the model, in bf16 when asked (session 9).
        // 3: the model's attention and softmax as for harvest 4.
        // 4: the model's f32 products as for harvest 5.
        // 5: the model's f32 products on AVX2 as for harvest 6.
        // 6: its attention on AVX2 as for harvest 7.
        "eval" | "stats" => 6,
        "match" | "umap" => 1,
        _ => 1,
    }
}

/// The sha256 (hex) of a stage's kind, code version, inputs and upstream
/// hashes.
pub fn stage_hash<T: Serialize>(kind: &str, inputs: &T, deps: &[String]) -> String {
    let inputs = serde_json::to_value(inputs).unwrap_or(serde_json::Value::Null);
    let v = serde_json::json!({
        "kind": kind,
        "version": code_version(kind),
        "inputs": inputs,
        "deps": deps,
    });
    // serde_json's Value keeps object keys sorted (no preserve_order
    // feature), so this text is canonical.
    saelab_fsio::sha256_bytes(v.to_string().as_bytes())
}

/// The first 16 hex digits: folder names and display.
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}

/// Identity of a model spec (see the module doc).
pub fn model_identity(spec: &str) -> Result<String, saelab_fsio::FsError> {
    if saelab_assets::is_offline_model(spec) {
        return Ok(format!("offline:{}", saelab_assets::DEFAULT_MODEL));
    }
    let id = path_identity(spec, "hub")?;
    // HF folders and hub names go through the config.json reader; its
    // revision is part of their identity, so a fix there re-runs their
    // stages (revision 2: rope_theta from `rope_parameters`, which
    // transformers ≥ 5 writes, was read as 10000 before).
    Ok(if id.starts_with("sha256:") {
        id
    } else {
        format!("{id};hf-config-reader:{HF_CONFIG_READER}")
    })
}

/// Revision of `saelab_lm`'s HF config.json reader (see [`model_identity`]).
const HF_CONFIG_READER: u32 = 2;

/// Identity of a corpus source (see the module doc).
pub fn corpus_identity(source: &str) -> Result<String, saelab_fsio::FsError> {
    if saelab_assets::is_offline_corpus(source) {
        return Ok(format!("offline:{source}"));
    }
    if let Some(repo) = source.strip_prefix("hf:") {
        return Ok(format!("hub:{repo}"));
    }
    path_identity(source, "missing")
}

fn path_identity(spec: &str, otherwise: &str) -> Result<String, saelab_fsio::FsError> {
    let p = Path::new(spec);
    if p.is_file() {
        return Ok(format!("sha256:{}", saelab_fsio::sha256_file(p)?));
    }
    if p.is_dir() {
        return Ok(format!("dir:{}", folder_listing_hash(p)?));
    }
    Ok(format!("{otherwise}:{spec}"))
}

/// Hash of the relative names and sizes of the files under `dir`.
fn folder_listing_hash(dir: &Path) -> Result<String, saelab_fsio::FsError> {
    let mut entries: Vec<(String, u64)> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| saelab_fsio::FsError::io(&d, e))?;
        for e in rd {
            let e = e.map_err(|e| saelab_fsio::FsError::io(&d, e))?;
            let path = e.path();
            let meta = e
                .metadata()
                .map_err(|err| saelab_fsio::FsError::io(&path, err))?;
            if meta.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                entries.push((rel.to_string_lossy().into_owned(), meta.len()));
            }
        }
    }
    entries.sort();
    let text = serde_json::to_string(&entries).unwrap_or_default();
    Ok(saelab_fsio::sha256_bytes(text.as_bytes()))
}
