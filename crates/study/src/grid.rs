//! The SAE grid: grid blocks expanded into distinct SAEs (a block is the
//! cross product of its axes, missing axes take the baseline), and the
//! comparison category of a pair of SAEs (the one axis they differ in).
//! SAEs listed by several blocks are one SAE (the study's Table 3 lists 74
//! rows for 72 distinct SAEs).

use crate::spec::{GridBlock, JumpReluCoeffs, Spec};

pub use saelab_results::{ArchCoeffs, SaeKey};

/// Default L1 coefficient (SPEC §2.2), the `sae` crate's.
pub fn default_l1() -> f64 {
    crate::spec::f32_default(saelab_sae::defaults::L1_COEFF)
}

/// Default JumpReLU coefficients (SPEC §2.5), the `sae` crate's.
pub fn default_jumprelu() -> JumpReluCoeffs {
    use crate::spec::f32_default;
    use saelab_sae::defaults as d;
    JumpReluCoeffs {
        l0_coeff: f32_default(d::L0_COEFF),
        init_threshold: f32_default(d::JUMPRELU_INIT_THRESHOLD),
        bandwidth: f32_default(d::JUMPRELU_BANDWIDTH),
    }
}

/// Whether an architecture takes k.
pub fn uses_k(arch: &str) -> bool {
    !matches!(arch, "relu" | "jumprelu")
}

/// The distinct SAEs of the spec, in first-listed order.
pub fn expand(spec: &Spec) -> Vec<SaeKey> {
    let blocks: Vec<GridBlock> = if spec.grid.is_empty() {
        vec![GridBlock::default()]
    } else {
        spec.grid.clone()
    };
    let mut out: Vec<SaeKey> = Vec::new();
    for b in &blocks {
        for key in expand_block(spec, b) {
            if !out.contains(&key) {
                out.push(key);
            }
        }
    }
    out
}

fn expand_block(spec: &Spec, b: &GridBlock) -> Vec<SaeKey> {
    let base = &spec.baseline;
    let datasets = b
        .dataset
        .clone()
        .unwrap_or_else(|| vec![base.dataset.clone()]);
    let layers = b.layer.clone().unwrap_or_else(|| vec![base.layer]);
    let archs = b.arch.clone().unwrap_or_else(|| vec![base.arch.clone()]);
    let ns = b.n.clone().unwrap_or_else(|| vec![base.n]);
    let ks = b.k.clone().unwrap_or_else(|| vec![base.k]);
    let seeds = b.seed.clone().unwrap_or_else(|| vec![base.seed]);
    let lrs = b.lr.clone().unwrap_or_else(|| vec![spec.train.lr]);
    let mut out = Vec::new();
    for dataset in &datasets {
        for &layer in &layers {
            for arch in &archs {
                let kk: Vec<Option<usize>> = if uses_k(arch) {
                    ks.iter().map(|&k| Some(k)).collect()
                } else {
                    vec![None]
                };
                for coeffs in arch_coeffs(spec, b, arch) {
                    for &n in &ns {
                        for &k in &kk {
                            for &seed in &seeds {
                                for &lr in &lrs {
                                    out.push(SaeKey {
                                        dataset: dataset.clone(),
                                        layer,
                                        arch: arch.clone(),
                                        n,
                                        k,
                                        seed,
                                        lr,
                                        coeffs: coeffs.clone(),
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The coefficient variants of `arch` in block `b` (the `l0_coeff` axis
/// applies to jumprelu only).
fn arch_coeffs(spec: &Spec, b: &GridBlock, arch: &str) -> Vec<ArchCoeffs> {
    let c = &spec.coefficients;
    match arch {
        "relu" => vec![ArchCoeffs {
            l1_coeff: Some(c.relu.as_ref().map_or_else(default_l1, |r| r.l1_coeff)),
            ..ArchCoeffs::default()
        }],
        "jumprelu" => {
            let base = c.jumprelu.clone().unwrap_or_else(default_jumprelu);
            let l0s = b.l0_coeff.clone().unwrap_or_else(|| vec![base.l0_coeff]);
            l0s.into_iter()
                .map(|l0| ArchCoeffs {
                    jumprelu: Some(JumpReluCoeffs {
                        l0_coeff: l0,
                        ..base.clone()
                    }),
                    ..ArchCoeffs::default()
                })
                .collect()
        }
        "matryoshka" => vec![ArchCoeffs {
            group_sizes: c.matryoshka.as_ref().map(|m| m.group_sizes.clone()),
            ..ArchCoeffs::default()
        }],
        _ => vec![ArchCoeffs::default()],
    }
}

/// The one axis two SAEs differ in, as a comparison category, or `None`
/// when they differ in none or in several.
pub fn category(a: &SaeKey, b: &SaeKey) -> Option<&'static str> {
    let mut diffs: Vec<&'static str> = Vec::new();
    if a.dataset != b.dataset {
        diffs.push("dataset");
    }
    if a.layer != b.layer {
        diffs.push("layer");
    }
    if a.arch != b.arch {
        diffs.push("architecture");
    } else if a.coeffs != b.coeffs {
        // An architecture's own sparsity coefficient (L1, L0) sets its
        // sparsity as k does for TopK.
        diffs.push("sparsity");
    }
    if a.n != b.n {
        diffs.push("dictionary");
    }
    if a.k != b.k && a.arch == b.arch {
        diffs.push("sparsity");
    }
    if a.seed != b.seed {
        diffs.push("seed");
    }
    if a.lr != b.lr {
        diffs.push("lr");
    }
    // Architectures compare at their own k: TopK k16 vs BatchTopK k16 is
    // an architecture pair; TopK k16 vs BatchTopK k32 is two differences.
    if a.arch != b.arch && uses_k(&a.arch) && uses_k(&b.arch) && a.k != b.k {
        diffs.push("sparsity");
    }
    match diffs.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// Every pair (i < j) of `saes` whose category is in `categories`.
pub fn pairs(saes: &[SaeKey], categories: &[String]) -> Vec<(usize, usize, &'static str)> {
    let mut out = Vec::new();
    for i in 0..saes.len() {
        for j in i + 1..saes.len() {
            if let Some(c) = category(&saes[i], &saes[j]) {
                if categories.iter().any(|x| x == c) {
                    out.push((i, j, c));
                }
            }
        }
    }
    out
}
