//! Per-kernel timings of one GPT-2-small block at batch 16×128, to see where
//! a forward pass spends its time. Run: `cargo bench -p saelab-lm --bench ops`.

use saelab_lm::ops::*;
use std::time::Instant;

/// Large buffers on huge pages, as in the `saelab` binary.
#[global_allocator]
static ALLOC: saelab_kernels::hugepages::HugePageAlloc = saelab_kernels::hugepages::HugePageAlloc;

fn time<F: FnMut()>(name: &str, mut f: F) {
    f();
    let mut v: Vec<f64> = (0..9)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    println!("{name:28} median {:7.2} ms  best {:7.2} ms", v[4], v[0]);
}

fn main() {
    let (b, t, d, h) = (16usize, 128usize, 768usize, 12usize);
    let n = b * t;
    let x: Vec<f32> = (0..n * d)
        .map(|i| ((i % 97) as f32 - 48.0) * 0.01)
        .collect();
    let w = vec![1.0f32; d];
    let bias = vec![0.0f32; d];
    let mut out = vec![0.0f32; n * d];
    time("layer_norm 2048x768", || {
        layer_norm(&x, d, &w, &bias, 1e-5, &mut out)
    });
    let mut hbuf: Vec<f32> = (0..n * 4 * d)
        .map(|i| ((i % 101) as f32 - 50.0) * 0.02)
        .collect();
    time("gelu_new 2048x3072", || gelu_new(&mut hbuf));
    let qkv: Vec<f32> = (0..n * 3 * d)
        .map(|i| ((i % 89) as f32 - 44.0) * 0.01)
        .collect();
    let mut att = vec![0.0f32; n * d];
    let shape = AttnShape {
        batch: b,
        seq: t,
        n_heads: h,
        n_kv_heads: h,
        head_dim: d / h,
    };
    time("attention 16x12 heads T128", || {
        causal_attention(
            &qkv,
            3 * d,
            &qkv[d..],
            &qkv[2 * d..],
            3 * d,
            shape,
            &mut att,
            d,
        )
    });
    let lin = Linear::new(
        vec![0.01; d * 3 * d],
        Some(vec![0.0; 3 * d]),
        d,
        3 * d,
        Layout::InOut,
    );
    let mut y = vec![0.0f32; n * 3 * d];
    time("c_attn linear", || lin.forward_into(&x, n, &mut y, false));
    let fc = Linear::new(
        vec![0.01; d * 4 * d],
        Some(vec![0.0; 4 * d]),
        d,
        4 * d,
        Layout::InOut,
    );
    let mut y2 = vec![0.0f32; n * 4 * d];
    time("c_fc linear", || fc.forward_into(&x, n, &mut y2, false));
    let pr = Linear::new(
        vec![0.01; 4 * d * d],
        Some(vec![0.0; d]),
        4 * d,
        d,
        Layout::InOut,
    );
    time("mlp c_proj linear (acc)", || {
        pr.forward_into(&y2, n, &mut out, true)
    });
}
