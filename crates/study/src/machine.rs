//! The machine a stage ran on: CPU model, cores, the vector extensions the
//! arithmetic paths dispatch on and the f32 and bf16 paths taken. Recorded in every `stage.json` and the
//! report header, because speed numbers mean nothing without it.

pub use saelab_results::Machine;

/// The machine this process runs on.
pub fn detect() -> Machine {
    Machine {
        cpu: cpu_model(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        threads: rayon_threads(),
        features: features(),
        bf16_path: bf16_path().to_string(),
        f32_path: f32_path().to_string(),
    }
}

/// The packed f32 kernel's path (`avx512`, `avx2`) when it runs the
/// model's products, else `portable` (the `gemm` crate).
pub(crate) fn f32_path() -> &'static str {
    saelab_kernels::f32gemm::f32_path().map_or("portable", |p| p.name())
}

/// The bf16 GEMM path of this process (`amx`, `avx512_bf16`, `avx2`, `portable`).
pub(crate) fn bf16_path() -> &'static str {
    saelab_lm::bf16::bf16_path().name()
}

/// The path the dense products of a forward pass at `precision` take here.
pub(crate) fn product_path(precision: saelab_lm::Precision) -> &'static str {
    match precision {
        saelab_lm::Precision::F32 => f32_path(),
        saelab_lm::Precision::Bf16 => bf16_path(),
    }
}

fn rayon_threads() -> usize {
    // The global pool's size (the `--threads` flag sets it).
    rayon::current_num_threads()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[cfg(target_arch = "x86_64")]
fn features() -> Vec<String> {
    let mut f = Vec::new();
    let mut add = |on: bool, name: &str| {
        if on {
            f.push(name.to_string())
        }
    };
    add(is_x86_feature_detected!("avx2"), "avx2");
    add(is_x86_feature_detected!("fma"), "fma");
    add(is_x86_feature_detected!("avx512f"), "avx512f");
    add(is_x86_feature_detected!("avx512bf16"), "avx512bf16");
    // AMX detection is unstable in std; /proc/cpuinfo lists it.
    add(cpuinfo_flag("amx_bf16"), "amx-bf16");
    f
}

#[cfg(target_arch = "x86_64")]
fn cpuinfo_flag(flag: &str) -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|t| {
        t.lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|l| l.split_whitespace().any(|w| w == flag))
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn features() -> Vec<String> {
    Vec::new()
}
