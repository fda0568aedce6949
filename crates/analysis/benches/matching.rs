//! Feature-matching benchmark (issue #4): the machine's GEMM rate, the
//! blocked top-n search on 24576 × 24576 at d 768, and the exact assignment
//! at several sizes, on random unit-vector dictionaries.
//!
//! Run (release profile):
//!
//! ```text
//! cargo bench -p saelab-analysis --bench matching -- [--n 24576] [--d 768] \
//!     [--assign 4096,12288] [--parts gemm,topn,assign] [--write-dir DIR] [--candidates 32]
//! ```
//!
//! With `--write-dir DIR` the vectors (`a.npy`, `b.npy`, f32 [n, d], already
//! unit-normalized), the top-1 indices (`top1_b_in_a.npy`) and the results
//! (`rust_results.json`) are written there, for `bench/match_reference.py`
//! to run numpy / scipy on the same matrices and compare.
//!
//! Memory peaks are VmHWM from /proc/self/status, reset before each phase
//! with `echo 5 > /proc/self/clear_refs` (where the kernel allows it; the
//! value then covers the phase only, plus whatever was resident before).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use saelab_analysis::matching::{
    assign, random_unit_vectors, top_n, top_n_both, AssignmentOptions, AssignmentStrategy,
    TileConfig, UnitVectors,
};
use std::io::Write;
use std::time::Instant;

struct Args {
    n: usize,
    d: usize,
    assign: Vec<usize>,
    parts: Vec<String>,
    write_dir: Option<String>,
    candidates: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        n: 24576,
        d: 768,
        assign: vec![4096, 12288],
        parts: vec!["gemm".into(), "topn".into(), "assign".into()],
        write_dir: None,
        candidates: 32,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        let num = |s: &str| {
            s.parse::<usize>()
                .unwrap_or_else(|_| panic!("bad number {s:?}"))
        };
        match argv[i].as_str() {
            "--n" => a.n = num(&val),
            "--d" => a.d = num(&val),
            "--candidates" => a.candidates = num(&val),
            "--assign" => a.assign = val.split(',').filter(|s| !s.is_empty()).map(num).collect(),
            "--parts" => a.parts = val.split(',').map(String::from).collect(),
            "--write-dir" => a.write_dir = Some(val),
            // cargo bench passes --bench; ignore anything else unknown.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn vm_hwm_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn write_npy_f32(path: &str, data: &[f32], shape: &[usize]) -> std::io::Result<()> {
    write_npy(
        path,
        "<f4",
        shape,
        &data
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

fn write_npy_u32(path: &str, data: &[u32], shape: &[usize]) -> std::io::Result<()> {
    write_npy(
        path,
        "<u4",
        shape,
        &data
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

/// Minimal .npy (format 1.0) writer.
fn write_npy(path: &str, descr: &str, shape: &[usize], bytes: &[u8]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    let shape_s = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    f.write_all(bytes)?;
    f.flush()
}

/// GFLOP/s of the gemm crate on C = A·Bᵀ (m×k times k×n): one product
/// using all threads, or (`per_thread`) one single-threaded product per
/// thread at once, which is how the top-n pass uses the machine.
fn gemm_rate(m: usize, n: usize, k: usize, reps: usize, per_thread: bool) -> f64 {
    if per_thread {
        use rayon::prelude::*;
        let threads = rayon::current_num_threads();
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            let t = Instant::now();
            (0..threads).into_par_iter().with_max_len(1).for_each(|_| {
                gemm_once(m, n, k, gemm::Parallelism::None);
            });
            best = best.min(t.elapsed().as_secs_f64());
        }
        return 2.0 * (m * n * k * threads) as f64 / best / 1e9;
    }
    let threads = rayon::current_num_threads();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        gemm_once(m, n, k, gemm::Parallelism::Rayon(threads));
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * n * k) as f64 / best / 1e9
}

fn gemm_once(m: usize, n: usize, k: usize, par: gemm::Parallelism) {
    let a: Vec<f32> = (0..m * k).map(|i| ((i % 97) as f32) * 0.01).collect();
    let b: Vec<f32> = (0..n * k).map(|i| ((i % 89) as f32) * 0.01).collect();
    let mut c = vec![0.0f32; m * n];
    {
        // SAFETY: a is m×k, b is n×k (read as k×n with column stride k),
        // c is m×n; all row-major with the strides given.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                k as isize,
                1,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                par,
            );
        }
    }
    std::hint::black_box(&c);
}

fn main() {
    let args = parse_args();
    let threads = rayon::current_num_threads();
    println!(
        "# matching bench: threads {threads}, n {}, d {}",
        args.n, args.d
    );
    let mut results = serde_json::Map::new();
    results.insert("threads".into(), threads.into());
    results.insert("n".into(), args.n.into());
    results.insert("d".into(), args.d.into());
    let has = |p: &str| args.parts.iter().any(|x| x == p);

    if has("gemm") {
        let sq = gemm_rate(3072, 3072, 3072, 3, false);
        let tile = gemm_rate(4096, 4096, args.d, 3, false);
        let per = gemm_rate(512, 4096, args.d, 5, true);
        println!(
            "gemm 3072^3: {sq:.1} GFLOP/s; gemm 4096x4096x{d}: {tile:.1} GFLOP/s; \
             one 512x4096x{d} per thread: {per:.1} GFLOP/s",
            d = args.d
        );
        results.insert("gemm_square_gflops".into(), sq.into());
        results.insert("gemm_tile_gflops".into(), tile.into());
        results.insert("gemm_per_thread_gflops".into(), per.into());
    }

    let need_vectors = has("topn") || has("assign");
    let (a, b) = if need_vectors {
        let t = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let a = random_unit_vectors(&mut rng, args.n, args.d, "A").expect("vectors");
        let b = random_unit_vectors(&mut rng, args.n, args.d, "B").expect("vectors");
        println!(
            "generated 2 × {} × {} unit vectors in {:.2} s",
            args.n,
            args.d,
            t.elapsed().as_secs_f64()
        );
        if let Some(dir) = &args.write_dir {
            std::fs::create_dir_all(dir).expect("write dir");
            write_npy_f32(&format!("{dir}/a.npy"), &a.data, &[a.count, a.dim]).expect("a.npy");
            write_npy_f32(&format!("{dir}/b.npy"), &b.data, &[b.count, b.dim]).expect("b.npy");
        }
        (a, b)
    } else {
        let e = UnitVectors::from_rows("e", &[], 0, 1).expect("empty");
        (e.clone(), e)
    };

    if has("topn") {
        let flops = 2.0 * (args.n * args.n * args.d) as f64;
        reset_hwm();
        let t = Instant::now();
        let top = top_n(&a, &b, 4, &TileConfig::default()).expect("top_n");
        let dt = t.elapsed().as_secs_f64();
        let hwm = vm_hwm_mb();
        println!(
            "top-4 B in A ({n}×{n}, d {d}): {dt:.2} s, {:.1} GFLOP/s effective, VmHWM {hwm:.0} MB",
            flops / dt / 1e9,
            n = args.n,
            d = args.d
        );
        results.insert("topn_seconds".into(), dt.into());
        results.insert("topn_gflops".into(), (flops / dt / 1e9).into());
        results.insert("topn_vmhwm_mb".into(), hwm.into());
        let mean_top1: f64 =
            top.max_values().iter().map(|&v| v as f64).sum::<f64>() / args.n as f64;
        results.insert("topn_mean_top1".into(), mean_top1.into());
        if let Some(dir) = &args.write_dir {
            write_npy_u32(&format!("{dir}/top1_b_in_a.npy"), &top.argmax(), &[args.n])
                .expect("top1");
        }
        let t = Instant::now();
        let _ = top_n_both(&a, &b, 4, 4, &TileConfig::default()).expect("both");
        let dt2 = t.elapsed().as_secs_f64();
        println!(
            "top-4 both directions in one pass: {dt2:.2} s, {:.1} GFLOP/s effective",
            flops / dt2 / 1e9
        );
        results.insert("topn_both_seconds".into(), dt2.into());
    }

    if has("assign") {
        let mut rows = Vec::new();
        for &n in &args.assign {
            if n > args.n {
                println!("skip assignment at {n} > n {}", args.n);
                continue;
            }
            let sa = UnitVectors::from_rows("A", &a.data[..n * args.d], n, args.d).expect("sub");
            let sb = UnitVectors::from_rows("B", &b.data[..n * args.d], n, args.d).expect("sub");
            let opts = AssignmentOptions {
                strategy: AssignmentStrategy::Sparse,
                candidates: args.candidates,
                ..AssignmentOptions::default()
            };
            reset_hwm();
            let t = Instant::now();
            let asg = assign(&sa, &sb, &opts).expect("assign");
            let dt = t.elapsed().as_secs_f64();
            let hwm = vm_hwm_mb();
            println!(
                "assignment {n}×{n} d {}: {dt:.2} s, total {:.6}, certified {}, path {:?}, VmHWM {hwm:.0} MB",
                args.d, asg.total, asg.certificate.certified, asg.path
            );
            let mut r = serde_json::Map::new();
            r.insert("n".into(), n.into());
            r.insert("seconds".into(), dt.into());
            r.insert("total".into(), asg.total.into());
            r.insert("certified".into(), asg.certificate.certified.into());
            r.insert("vmhwm_mb".into(), hwm.into());
            r.insert(
                "path".into(),
                serde_json::to_value(&asg.path).expect("path json"),
            );
            r.insert(
                "cols_of_rows".into(),
                serde_json::Value::from(asg.pairs.iter().map(|p| p.1).collect::<Vec<u32>>()),
            );
            rows.push(serde_json::Value::Object(r));
        }
        results.insert("assignment".into(), rows.into());
    }

    if let Some(dir) = &args.write_dir {
        let path = format!("{dir}/rust_results.json");
        std::fs::write(&path, serde_json::to_string(&results).expect("json")).expect("results");
        println!("wrote {path}");
    }
}
