//! The report's header: what was run, on what, by which version, in how
//! long, and the hash of every stage (so a number can be traced to the
//! stage folder that produced it).

use crate::html::{Page, Table};
use saelab_results::{Machine, Results, State};

pub(super) fn write(p: &mut Page, r: &Results) {
    let precision = r.spec["model"]["precision"].as_str().unwrap_or("f32");
    let model = r.spec["model"]["name"].as_str().unwrap_or("?");
    p.para(&format!(
        "Model {model} ({precision}); {} SAEs; saelab {}; schema {}.",
        r.saes.len(),
        r.saelab_version,
        r.schema
    ));
    p.para(&training_budget(&r.spec["train"]));
    let m = &r.machine;
    let mut t = Table::new(&["", ""], 2);
    let computed: f64 = r.stages.iter().filter_map(|s| s.seconds).sum();
    let wall = if r.wall_seconds > 0.0 {
        format!("{:.0} s", r.wall_seconds)
    } else {
        "not recorded (report rebuilt from finished stages)".into()
    };
    for (k, v) in [
        (
            "CPU",
            format!("{} ({} cores, {} threads)", m.cpu, m.cores, m.threads),
        ),
        ("vector extensions", m.features.join(", ")),
        ("arithmetic paths", paths(m, precision)),
        ("wall time of the last run", wall),
        ("compute time of all stages", format!("{computed:.0} s")),
        (
            "results",
            "results.json beside this page (every number shown here)".into(),
        ),
    ] {
        t.rows.push(vec![k.into(), v]);
    }
    p.table(&t);
    corpora(p, r);
    stages(p, r);
    let spec = serde_json::to_string_pretty(&r.spec).unwrap_or_default();
    p.details("The study spec as run (JSON)", &spec);
    if !r.missing.is_empty() {
        for m in &r.missing {
            p.missing(&format!("Not in this report: {m}."));
        }
    }
}

/// The training budget in one line: matching ratios mean little without it
/// (under-trained SAEs share their initialisation, not learned features).
fn training_budget(t: &serde_json::Value) -> String {
    if !t.is_object() {
        return "Training settings: not in the spec.".into();
    }
    let batch = t["batch"].as_u64().unwrap_or(0);
    let steps = t["steps"]
        .as_u64()
        .or_else(|| Some(t["tokens"].as_u64()? / batch.max(1)));
    let budget = match steps {
        Some(s) => format!("{s} steps of {batch} activations ({} tokens)", s * batch),
        None => format!("one pass over each store, batch {batch}"),
    };
    format!(
        "Training: {budget} per SAE, lr {}, b_dec init {}, AuxK {}.",
        t["lr"],
        t["b_dec_init"].as_str().unwrap_or("?"),
        t["auxk"]
    )
}

/// The dense-product paths the runtime dispatch takes on this machine.
fn paths(m: &Machine, precision: &str) -> String {
    let has = |f: &str| m.features.iter().any(|x| x == f);
    let gemm_crate = if has("avx512f") {
        "AVX-512F"
    } else if has("avx2") && has("fma") {
        "AVX2/FMA"
    } else {
        "portable"
    };
    let mut s = match m.f32_path.as_str() {
        "avx512" => "f32 model products: packed AVX-512 kernel; attention and element-wise \
                     loops: AVX-512 by hand; other f32 products: gemm crate, AVX-512F kernels"
            .to_string(),
        "avx2" => "f32 model products: packed AVX2/FMA kernel; attention: AVX2/FMA by hand; \
                   element-wise loops: compiler-vectorized; other f32 products: gemm crate, \
                   AVX2/FMA kernels"
            .to_string(),
        "portable" => format!(
            "f32 products: gemm crate, {gemm_crate} kernels; element-wise loops: compiler-vectorized"
        ),
        // Records from before the path was recorded.
        _ => format!("f32 GEMM: gemm crate, {gemm_crate} kernels"),
    };
    let bf16 = match m.bf16_path.as_str() {
        "amx" => "AMX-BF16 (tdpbf16ps) kernel",
        "avx512_bf16" => "AVX512_BF16 (vdpbf16ps) kernel",
        "avx2" => "rounded operands widened to f32 on the packed AVX2/FMA kernel",
        "portable" => "rounded operands, portable kernel",
        _ => "not recorded",
    };
    if precision == "bf16" {
        s.push_str(&format!("; bf16 model products: {bf16}"));
    } else {
        s.push_str(&format!(
            "; bf16 products (bf16 encoder, when asked for): {bf16}"
        ));
    }
    s
}

fn corpora(p: &mut Page, r: &Results) {
    let mut t = Table::new(&["corpus", "source", "tokens", "stands for"], 4);
    for c in &r.corpora {
        t.rows.push(vec![
            c.name.clone(),
            c.source.clone(),
            c.tokens.to_string(),
            c.stands_for.clone().unwrap_or_default(),
        ]);
    }
    p.table(&t);
}

fn stages(p: &mut Page, r: &Results) {
    let mut t = Table::new(&["stage", "hash", "state", "seconds"], 3);
    for s in &r.stages {
        t.rows.push(vec![
            s.kind.clone(),
            s.hash.clone(),
            s.state.to_string(),
            s.seconds.map_or_else(String::new, |x| format!("{x:.1}")),
        ]);
    }
    let done = r.stages.iter().filter(|s| s.state == State::Done).count();
    p.details(
        &format!("Stages: {done} of {} complete (hashes)", r.stages.len()),
        &text_table(&t),
    );
}

/// A table as aligned plain text (for a folded block).
fn text_table(t: &Table) -> String {
    let mut out = String::new();
    for row in std::iter::once(&t.header).chain(&t.rows) {
        out.push_str(&format!(
            "{:<8} {:<64} {:<8} {}\n",
            row[0], row[1], row[2], row[3]
        ));
    }
    out
}
