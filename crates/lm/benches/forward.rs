//! Harvest-forward throughput: a GPT-2-small-shaped model (random weights)
//! to `blocks.8.hook_resid_pre` and SmolLM2-135M (offline asset) to
//! `blocks.20.hook_resid_pre`, batch 16×128, tokens/s (median and best).
//!
//! Run: `cargo bench -p saelab-lm --bench forward` (threads: RAYON_NUM_THREADS).
//! `bench/harvest.sh` runs this beside the PyTorch reference in one go.

use saelab_lm::{ForwardSpec, HookPoint, Model, Site};
use std::path::PathBuf;
use std::time::Instant;

fn gpt2_small_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (d, l, v, np) = (768usize, 12usize, 50257usize, 1024usize);
    let cfg = serde_json::json!({"model_type":"gpt2","vocab_size":v,"n_positions":np,"n_embd":d,"n_layer":l,"n_head":12});
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let mut shapes: Vec<(String, Vec<usize>)> = vec![("wte.weight".into(), vec![v, d]), ("wpe.weight".into(), vec![np, d])];
    for i in 0..l {
        for (n, s) in [
            ("ln_1.weight", vec![d]), ("ln_1.bias", vec![d]), ("attn.c_attn.weight", vec![d, 3 * d]),
            ("attn.c_attn.bias", vec![3 * d]), ("attn.c_proj.weight", vec![d, d]), ("attn.c_proj.bias", vec![d]),
            ("ln_2.weight", vec![d]), ("ln_2.bias", vec![d]), ("mlp.c_fc.weight", vec![d, 4 * d]),
            ("mlp.c_fc.bias", vec![4 * d]), ("mlp.c_proj.weight", vec![4 * d, d]), ("mlp.c_proj.bias", vec![d]),
        ] {
            shapes.push((format!("h.{i}.{n}"), s));
        }
    }
    shapes.push(("ln_f.weight".into(), vec![d]));
    shapes.push(("ln_f.bias".into(), vec![d]));
    let mut state = 12345u64;
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(n, s)| {
            let len: usize = s.iter().product();
            let ln = n.contains("ln_") && n.ends_with("weight");
            let bytes = (0..len)
                .flat_map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let u = (state >> 40) as f32 / (1u64 << 24) as f32;
                    let x = if ln { 1.0 } else { (u - 0.5) * 0.04 };
                    x.to_le_bytes()
                })
                .collect();
            (n, s, bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    dir
}

fn bench(name: &str, m: &Model, layer: usize, reps: usize) {
    let (b, t) = (16usize, 128usize);
    let tokens: Vec<u32> = (0..b * t).map(|i| ((i * 7919) % m.info.vocab_size) as u32).collect();
    let hook = [HookPoint::new(layer, Site::ResidPre)];
    let _ = m.forward(&tokens, b, t, &mut ForwardSpec::reads(&hook)).unwrap();
    let mut rates: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            let out = m.forward(&tokens, b, t, &mut ForwardSpec::reads(&hook)).unwrap();
            std::hint::black_box(out);
            (b * t) as f64 / t0.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "{name}: to blocks.{layer}.hook_resid_pre, batch {b}x{t}, threads {}: median {:.0} tokens/s, best {:.0} tokens/s ({reps} reps)",
        rayon::current_num_threads(),
        rates[reps / 2],
        rates[reps - 1]
    );
}

fn main() {
    let reps: usize = std::env::var("BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let dir = gpt2_small_dir();
    let m = Model::load(dir.path().to_str().unwrap()).unwrap();
    bench("saelab gpt2-small-shaped", &m, 8, reps);
    drop(m);
    let root = std::env::var_os("SAELAB_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"));
    let p = root.join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        let m = Model::load(p.to_str().unwrap()).unwrap();
        bench("saelab smollm2-135m", &m, 20, reps);
    } else {
        println!("smollm2: {} not fetched, skipped", p.display());
    }
}
