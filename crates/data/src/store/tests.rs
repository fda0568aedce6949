//! Tests of the activation store: round trips, resume equivalence, checks,
//! and the batch stream's determinism.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

fn spec(dtype: StoreDtype, hooks: &[&str], seq_len: usize, d: usize, rps: usize) -> StoreSpec {
    StoreSpec {
        model: ModelInfo {
            id: "test-model".into(),
            hash: "sha256:00".into(),
        },
        hooks: hooks.iter().map(|h| h.to_string()).collect(),
        d,
        dtype,
        seq_len,
        packing: "concat".into(),
        dataset: DatasetInfo {
            name: "unit-test".into(),
            hash: "sha256:11".into(),
        },
        pos_intervention: "none".into(),
        seed: 49,
        rows_per_shard: rps,
        target_rows: None,
        extra: BTreeMap::new(),
    }
}

/// Deterministic test data for rows `rows` (global row indices): tokens
/// `[n, seq_len]` and one activation array `[n, seq_len, d]` per hook.
fn data(s: &StoreSpec, rows: std::ops::Range<usize>) -> (Vec<u32>, Vec<Vec<f32>>) {
    let mut tokens = Vec::new();
    let mut acts = vec![Vec::new(); s.hooks.len()];
    for r in rows {
        for p in 0..s.seq_len {
            tokens.push(((r * s.seq_len + p) * 7919 % 50257) as u32);
            for (h, a) in acts.iter_mut().enumerate() {
                for j in 0..s.d {
                    let x = ((r * 131 + p * 17 + j * 3 + h * 1000) as f32 * 0.618).sin() * 3.0;
                    a.push(x);
                }
            }
        }
    }
    (tokens, acts)
}

fn push(w: &mut StoreWriter, rows: std::ops::Range<usize>) {
    let (t, a) = data(w.spec(), rows);
    let refs: Vec<&[f32]> = a.iter().map(|v| v.as_slice()).collect();
    w.push_rows(&t, &refs).unwrap();
}

fn shard_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v.into_iter()
        .map(|n| {
            let b = std::fs::read(dir.join(&n)).unwrap();
            (n, b)
        })
        .collect()
}

#[test]
fn round_trip_all_dtypes() {
    let hooks = ["blocks.8.hook_resid_pre", "blocks.3.hook_resid_post"];
    for dtype in [StoreDtype::F32, StoreDtype::F16, StoreDtype::Bf16] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let s = spec(dtype, &hooks, 4, 5, 3);
        let mut w = StoreWriter::create_or_resume(&dir, s.clone()).unwrap();
        assert!(!w.is_resumed());
        // Uneven pushes crossing shard boundaries: 2 + 4 + 1 = 7 rows.
        push(&mut w, 0..2);
        push(&mut w, 2..6);
        assert_eq!(w.rows_persisted(), 6);
        push(&mut w, 6..7);
        assert_eq!(w.rows_done(), 7);
        let m = w.finish().unwrap();
        assert!(m.complete);
        assert_eq!(m.rows, 7);
        assert_eq!(m.tokens, 28);
        assert_eq!(
            m.shards.iter().map(|s| s.rows).collect::<Vec<_>>(),
            vec![3, 3, 1]
        );

        let store = ActivationStore::open(&dir).unwrap();
        store.verify().unwrap();
        assert_eq!(store.num_shards(), 3);
        let (tokens, acts) = data(&s, 0..7);
        let mut row = 0;
        for i in 0..3 {
            for (h, hook) in hooks.iter().enumerate() {
                let sd = store.shard(i, hook).unwrap();
                let n = sd.rows;
                assert_eq!(sd.tokens, tokens[row * 4..(row + n) * 4]);
                let want = &acts[h][row * 20..(row + n) * 20];
                assert_eq!(sd.acts.len(), want.len());
                for (&got, &x) in sd.acts.iter().zip(want) {
                    let exact = match dtype {
                        StoreDtype::F32 => x,
                        StoreDtype::F16 => half::f16::from_f32(x).to_f32(),
                        StoreDtype::Bf16 => half::bf16::from_f32(x).to_f32(),
                    };
                    assert_eq!(got.to_bits(), exact.to_bits());
                    let tol = match dtype {
                        StoreDtype::F32 => 0.0,
                        StoreDtype::F16 => x.abs() * 2f32.powi(-11) + 1e-7,
                        StoreDtype::Bf16 => x.abs() * 2f32.powi(-8) + 1e-7,
                    };
                    assert!((got - x).abs() <= tol, "{dtype}: {got} vs {x}");
                }
            }
            row += store.manifest().shards[i].rows;
        }

        // The shard is a standard safetensors file.
        let bytes = std::fs::read(dir.join("shard-00000.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let t = st.tensor("tokens").unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::I32);
        assert_eq!(t.shape(), &[3, 4]);
        let a = st.tensor(hooks[0]).unwrap();
        assert_eq!(a.dtype(), dtype.safetensors_dtype());
        assert_eq!(a.shape(), &[3, 4, 5]);
        // Header length is a multiple of 8.
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(n % 8, 0);
    }
}

#[test]
fn resume_after_kill_is_bitwise_identical() {
    for dtype in [StoreDtype::F16, StoreDtype::F32] {
        let tmp = tempfile::tempdir().unwrap();
        let s = spec(
            dtype,
            &["blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre"],
            4,
            6,
            3,
        );
        let total = 11;

        // Uninterrupted run.
        let a = tmp.path().join("a");
        let mut w = StoreWriter::create_or_resume(&a, s.clone()).unwrap();
        push(&mut w, 0..5);
        push(&mut w, 5..total);
        w.finish().unwrap();

        // Killed run: 8 rows pushed (2 shards on disk, 2 rows in the open shard),
        // dropped without finish, plus debris of a crash.
        let b = tmp.path().join("b");
        let mut w = StoreWriter::create_or_resume(&b, s.clone()).unwrap();
        push(&mut w, 0..1);
        push(&mut w, 1..8);
        assert_eq!(w.rows_persisted(), 6);
        drop(w);
        // Temp files of a killed writer (another PID), and the `*.tmp` names
        // of stores cut off by older saelab versions.
        let stale = b.join(".shard-00002.safetensors.saelab-tmp.999999999");
        std::fs::write(&stale, b"half a shard").unwrap();
        std::fs::write(b.join("shard-00002.safetensors.tmp"), b"half a shard").unwrap();
        std::fs::write(b.join("manifest.json.tmp"), b"{\"trunc").unwrap();
        // A shard renamed into place but not yet listed in the manifest.
        std::fs::write(b.join("shard-00002.safetensors"), b"unlisted").unwrap();
        // Someone else's file is left alone.
        std::fs::write(b.join("notes.txt"), b"keep me").unwrap();

        let mut w = StoreWriter::create_or_resume(&b, s.clone()).unwrap();
        assert!(w.is_resumed());
        assert_eq!(w.rows_done(), 6);
        assert!(!stale.exists());
        assert!(!b.join("shard-00002.safetensors.tmp").exists());
        assert!(!b.join("manifest.json.tmp").exists());
        assert!(!b.join("shard-00002.safetensors").exists());
        assert!(b.join("notes.txt").exists());
        let skip = w.rows_done() as usize;
        push(&mut w, skip..total);
        w.finish().unwrap();
        std::fs::remove_file(b.join("notes.txt")).unwrap();

        let fa = shard_bytes(&a);
        let fb = shard_bytes(&b);
        assert_eq!(
            fa.iter().map(|f| &f.0).collect::<Vec<_>>(),
            fb.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        for ((name, x), (_, y)) in fa.iter().zip(&fb) {
            assert!(x == y, "{dtype}: {name} differs between the runs");
        }
        ActivationStore::open(&b).unwrap().verify().unwrap();
    }
}

#[test]
fn resume_with_target_rows_and_remaining() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(StoreDtype::F32, &["h"], 2, 2, 2);
    s.target_rows = Some(5);
    let mut w = StoreWriter::create_or_resume(tmp.path(), s.clone()).unwrap();
    push(&mut w, 0..3);
    assert_eq!(w.remaining_rows(), Some(2));
    let err = {
        let (t, a) = data(&s, 3..6);
        w.push_rows(&t, &[&a[0]]).unwrap_err()
    };
    assert!(err.to_string().contains("target_rows 5"), "{err}");
    drop(w);
    let mut w = StoreWriter::create_or_resume(tmp.path(), s.clone()).unwrap();
    assert_eq!(w.rows_done(), 2);
    assert_eq!(w.remaining_rows(), Some(3));
    push(&mut w, 2..5);
    assert_eq!(w.remaining_rows(), Some(0));
    let m = w.finish().unwrap();
    assert_eq!(m.rows, 5);
    assert_eq!(m.spec.target_tokens(), Some(10));
}

/// A shard's bytes depend on its rows only, not on the size it was planned
/// for: the same 7 rows stored without a target (a short last shard,
/// compacted), with a target of 7 (the last shard planned short) and with
/// a target of 10 the corpus never reaches (planned full, compacted) give
/// the same files.
#[test]
fn shard_bytes_do_not_depend_on_the_planned_size() {
    let tmp = tempfile::tempdir().unwrap();
    let mut stores = Vec::new();
    for target in [None, Some(7), Some(10)] {
        let mut s = spec(StoreDtype::F16, &["a", "b"], 3, 5, 4);
        s.target_rows = target;
        let dir = tmp.path().join(format!("{target:?}"));
        let mut w = StoreWriter::create_or_resume(&dir, s).unwrap();
        push(&mut w, 0..3);
        push(&mut w, 3..7);
        let m = w.finish().unwrap();
        assert_eq!(m.shards.iter().map(|s| s.rows).collect::<Vec<_>>(), [4, 3]);
        ActivationStore::open(&dir).unwrap().verify().unwrap();
        let files: Vec<_> = shard_bytes(&dir)
            .into_iter()
            .filter(|(n, _)| n.starts_with("shard-"))
            .collect();
        stores.push(files);
    }
    assert_eq!(stores[0].len(), 2);
    assert!(stores[0] == stores[1] && stores[0] == stores[2]);
}

#[test]
fn verify_names_the_corrupted_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(StoreDtype::F16, &["blocks.0.hook_resid_pre"], 3, 4, 2);
    let mut w = StoreWriter::create_or_resume(tmp.path(), s).unwrap();
    push(&mut w, 0..7);
    w.finish().unwrap();
    let p = tmp.path().join("shard-00001.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&p, bytes).unwrap();

    let store = ActivationStore::open(tmp.path()).unwrap();
    let err = store.verify().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("shard-00001.safetensors: checksum mismatch (expected "),
        "{msg}"
    );
    assert!(matches!(err, StoreError::ChecksumMismatch { .. }));
}

#[test]
fn resume_refuses_a_corrupted_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(StoreDtype::F32, &["h"], 2, 2, 2);
    let mut w = StoreWriter::create_or_resume(tmp.path(), s.clone()).unwrap();
    push(&mut w, 0..5);
    drop(w);
    std::fs::write(tmp.path().join("shard-00000.safetensors"), b"garbage").unwrap();
    let err = StoreWriter::create_or_resume(tmp.path(), s).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("shard-00000.safetensors: checksum mismatch"),
        "{err}"
    );
}

#[test]
fn spec_mismatch_on_resume_names_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(StoreDtype::F16, &["h"], 4, 3, 2);
    let mut w = StoreWriter::create_or_resume(tmp.path(), s.clone()).unwrap();
    push(&mut w, 0..3);
    drop(w);

    let mut other = s.clone();
    other.dtype = StoreDtype::F32;
    other.seq_len = 8;
    other.model.hash = "sha256:ff".into();
    let err = StoreWriter::create_or_resume(tmp.path(), other).unwrap_err();
    let StoreError::SpecMismatch { fields, .. } = &err else {
        panic!("expected SpecMismatch, got {err}");
    };
    assert_eq!(fields.len(), 3, "{fields:?}");
    let msg = err.to_string();
    for f in [
        "dtype (store has \"f16\", requested \"f32\")",
        "seq_len (store has 4, requested 8)",
        "model.hash",
    ] {
        assert!(msg.contains(f), "`{f}` not in: {msg}");
    }
    // The store is untouched and still resumable with the right spec.
    let w = StoreWriter::create_or_resume(tmp.path(), s).unwrap();
    assert_eq!(w.rows_done(), 2);
}

#[test]
fn complete_store_is_never_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(StoreDtype::Bf16, &["h"], 2, 2, 2);
    let mut w = StoreWriter::create_or_resume(tmp.path(), s.clone()).unwrap();
    push(&mut w, 0..3);
    w.finish().unwrap();
    let before = shard_bytes(tmp.path());
    let err = StoreWriter::create_or_resume(tmp.path(), s.clone()).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyComplete(_)), "{err}");
    assert_eq!(before, shard_bytes(tmp.path()));
}

/// A complete store is checked against the request like an incomplete one:
/// another spec is an error naming the fields, not "already complete".
#[test]
fn complete_store_with_another_spec_names_the_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(StoreDtype::Bf16, &["h"], 2, 2, 2);
    let mut w = StoreWriter::create_or_resume(tmp.path(), s.clone()).unwrap();
    push(&mut w, 0..3);
    w.finish().unwrap();
    let before = shard_bytes(tmp.path());
    let mut other = s.clone();
    other.dtype = StoreDtype::F16;
    other.hooks = vec!["g".into()];
    other.target_rows = Some(7);
    other.dataset.name = "other.txt".into();
    let err = StoreWriter::create_or_resume(tmp.path(), other).unwrap_err();
    let StoreError::CompleteSpecMismatch { fields, .. } = &err else {
        panic!("expected CompleteSpecMismatch, got {err}");
    };
    assert_eq!(fields.len(), 4, "{fields:?}");
    let msg = err.to_string();
    for f in [
        "dtype (store has \"bf16\", requested \"f16\")",
        "hooks (store has [\"h\"], requested [\"g\"])",
        "target_rows (store has null, requested 7)",
        "dataset.name",
    ] {
        assert!(msg.contains(f), "`{f}` not in: {msg}");
    }
    assert_eq!(before, shard_bytes(tmp.path()));
    // The identical request is still "already complete".
    let err = StoreWriter::create_or_resume(tmp.path(), s).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyComplete(_)), "{err}");
}

#[test]
fn finish_without_rows_and_on_a_shard_boundary() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(StoreDtype::F32, &["h"], 2, 2, 2);
    let mut w = StoreWriter::create_or_resume(tmp.path().join("a"), s.clone()).unwrap();
    push(&mut w, 0..4);
    let m = w.finish().unwrap();
    assert_eq!(m.shards.len(), 2);
    assert!(m.complete);
    let m2 = ActivationStore::open(tmp.path().join("a")).unwrap();
    assert_eq!(m2.manifest(), &m);

    let w = StoreWriter::create_or_resume(tmp.path().join("b"), s).unwrap();
    let m = w.finish().unwrap();
    assert!(m.complete && m.shards.is_empty());
    let store = ActivationStore::open(tmp.path().join("b")).unwrap();
    assert!(BatchStream::new(&store, "h", 1, 0, None, 1).is_err());
}

#[test]
fn open_reports_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let err = ActivationStore::open(dir.join("nowhere")).unwrap_err();
    assert!(matches!(err, StoreError::MissingManifest(_)), "{err}");
    let err = ActivationStore::open(dir).unwrap_err();
    assert!(err.to_string().contains("no manifest.json"), "{err}");

    let s = spec(StoreDtype::F32, &["h"], 2, 2, 2);
    let mut w = StoreWriter::create_or_resume(dir, s).unwrap();
    push(&mut w, 0..3);
    drop(w);
    // Incomplete store.
    let err = ActivationStore::open(dir).unwrap_err();
    assert!(matches!(err, StoreError::Incomplete(_)), "{err}");
    let partial = ActivationStore::open_partial(dir).unwrap();
    assert_eq!(partial.rows(), 2);
    assert!(!partial.is_complete());

    let manifest_path = dir.join(MANIFEST_FILE);
    let good = std::fs::read_to_string(&manifest_path).unwrap();

    std::fs::write(&manifest_path, "{ not json").unwrap();
    let err = ActivationStore::open_partial(dir).unwrap_err();
    assert!(
        err.to_string()
            .contains("manifest.json: invalid manifest: not valid JSON"),
        "{err}"
    );

    let newer = good.replace("\"format_version\": 1", "\"format_version\": 2");
    std::fs::write(&manifest_path, newer).unwrap();
    let err = ActivationStore::open_partial(dir).unwrap_err();
    assert!(matches!(
        err,
        StoreError::UnsupportedVersion { found: 2, .. }
    ));
    assert!(err.to_string().contains("newer saelab"), "{err}");
    let older = good.replace("\"format_version\": 1", "\"format_version\": 0");
    std::fs::write(&manifest_path, older).unwrap();
    let err = ActivationStore::open_partial(dir).unwrap_err();
    assert!(err.to_string().contains("older saelab"), "{err}");

    let bad_rows = good.replace("\"rows\": 2,\n  \"tokens\"", "\"rows\": 3,\n  \"tokens\"");
    assert_ne!(bad_rows, good);
    std::fs::write(&manifest_path, bad_rows).unwrap();
    let err = ActivationStore::open_partial(dir).unwrap_err();
    assert!(err.to_string().contains("shards hold 2 rows"), "{err}");

    std::fs::write(&manifest_path, &good).unwrap();
    std::fs::remove_file(dir.join("shard-00000.safetensors")).unwrap();
    let err = ActivationStore::open_partial(dir).unwrap_err();
    assert!(matches!(err, StoreError::MissingShard { .. }), "{err}");
    assert!(err.to_string().contains("shard-00000.safetensors"), "{err}");
}

#[test]
fn shard_shape_mismatch_names_file_and_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let s = spec(StoreDtype::F32, &["blocks.8.hook_resid_pre"], 2, 3, 2);
    let mut w = StoreWriter::create_or_resume(dir, s).unwrap();
    push(&mut w, 0..2);
    w.finish().unwrap();
    let manifest_path = dir.join(MANIFEST_FILE);
    let good = std::fs::read_to_string(&manifest_path).unwrap();
    std::fs::write(&manifest_path, good.replace("\"d\": 3", "\"d\": 4")).unwrap();
    let store = ActivationStore::open(dir).unwrap();
    let err = store.shard(0, "blocks.8.hook_resid_pre").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("shard-00000.safetensors: tensor `blocks.8.hook_resid_pre`: shape [2, 2, 3]"),
        "{msg}"
    );
    std::fs::write(
        &manifest_path,
        good.replace("\"dtype\": \"f32\"", "\"dtype\": \"f16\""),
    )
    .unwrap();
    let store = ActivationStore::open(dir).unwrap();
    let err = store.open_shard(0).unwrap_err();
    assert!(err.to_string().contains("dtype F32"), "{err}");
    std::fs::write(&manifest_path, &good).unwrap();
    let store = ActivationStore::open(dir).unwrap();
    let err = store.shard(0, "blocks.9.hook_resid_pre").unwrap_err();
    assert!(matches!(err, StoreError::UnknownHook { .. }), "{err}");
    assert!(matches!(
        store.open_shard(1),
        Err(StoreError::ShardIndex { .. })
    ));
    std::fs::write(dir.join("shard-00000.safetensors"), b"short").unwrap();
    let err = store.open_shard(0).unwrap_err();
    assert!(
        err.to_string()
            .contains("shard-00000.safetensors: not a valid safetensors file"),
        "{err}"
    );
}

#[test]
fn bad_specs_and_inputs_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(StoreDtype::F32, &["a", "a"], 2, 2, 2);
    let err = StoreWriter::create_or_resume(tmp.path(), s.clone()).unwrap_err();
    assert!(err.to_string().contains("listed twice"), "{err}");
    s.hooks = vec!["tokens".into()];
    assert!(StoreWriter::create_or_resume(tmp.path(), s.clone()).is_err());
    s.hooks = vec!["a".into(), "b".into()];
    s.d = 0;
    assert!(StoreWriter::create_or_resume(tmp.path(), s.clone()).is_err());
    s.d = 2;
    let mut w = StoreWriter::create_or_resume(tmp.path(), s.clone()).unwrap();
    let (t, a) = data(&s, 0..2);
    assert!(w.push_rows(&t[..3], &[&a[0], &a[1]]).is_err());
    assert!(w.push_rows(&t, &[&a[0]]).is_err());
    assert!(w.push_rows(&t, &[&a[0], &a[1][1..]]).is_err());
    let mut big = t.clone();
    big[1] = u32::MAX;
    let err = w.push_rows(&big, &[&a[0], &a[1]]).unwrap_err();
    assert!(err.to_string().contains("I32"), "{err}");
    assert_eq!(w.rows_done(), 0);
    w.push_rows(&t, &[&a[0], &a[1]]).unwrap();
    assert_eq!(w.rows_done(), 2);
}

#[test]
fn failed_write_poisons_the_writer_and_resume_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(StoreDtype::F32, &["h"], 2, 2, 2);
    let mut w = StoreWriter::create_or_resume(tmp.path(), s.clone()).unwrap();
    push(&mut w, 0..2);
    // Make the next shard's temp file (named by saelab_fsio after this
    // process) impossible to create.
    let tmp_name = format!(".shard-00001.safetensors.saelab-tmp.{}", std::process::id());
    std::fs::create_dir(tmp.path().join(&tmp_name)).unwrap();
    let (t, a) = data(&s, 2..4);
    let err = w.push_rows(&t, &[&a[0]]).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    let err = w.push_rows(&t, &[&a[0]]).unwrap_err();
    assert!(matches!(err, StoreError::Poisoned(_)), "{err}");
    assert!(matches!(w.finish(), Err(StoreError::Poisoned(_))));
    std::fs::remove_dir(tmp.path().join(&tmp_name)).unwrap();
    let mut w = StoreWriter::create_or_resume(tmp.path(), s).unwrap();
    assert_eq!(w.rows_done(), 2);
    push(&mut w, 2..4);
    assert_eq!(w.finish().unwrap().rows, 4);
}

#[test]
fn shard_files_without_manifest_are_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("shard-00000.safetensors"), b"x").unwrap();
    let s = spec(StoreDtype::F32, &["h"], 2, 2, 2);
    let err = StoreWriter::create_or_resume(tmp.path(), s).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore(_)), "{err}");
}

// ---------------------------------------------------------------- batches

/// A store whose vector `(row r, pos p)` is `[id, id + 0.5, ...]` with
/// `id = r * seq_len + p` (exact in f16 for small ids).
fn id_store(dir: &Path, dtype: StoreDtype, rows: usize, seq_len: usize, d: usize, rps: usize) {
    let s = spec(dtype, &["x", "y"], seq_len, d, rps);
    let mut w = StoreWriter::create_or_resume(dir, s).unwrap();
    for r in 0..rows {
        let tokens: Vec<u32> = (0..seq_len as u32).collect();
        let mut x = Vec::new();
        for p in 0..seq_len {
            let id = (r * seq_len + p) as f32;
            for j in 0..d {
                x.push(id + 0.5 * j as f32);
            }
        }
        let y: Vec<f32> = x.iter().map(|v| -v).collect();
        w.push_rows(&tokens, &[&x, &y]).unwrap();
    }
    w.finish().unwrap();
}

fn ids(batch: &[f32], d: usize) -> Vec<u32> {
    batch
        .chunks_exact(d)
        .map(|v| {
            // The vector is intact (not torn across copies).
            for (j, &x) in v.iter().enumerate() {
                assert_eq!(x, v[0] + 0.5 * j as f32);
            }
            v[0] as u32
        })
        .collect()
}

fn collect(stream: BatchStream) -> Vec<Vec<f32>> {
    stream.map(|b| b.unwrap()).collect()
}

#[test]
fn batch_stream_is_deterministic_and_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let (rows, seq_len, d) = (7, 4, 3);
    id_store(tmp.path(), StoreDtype::F16, rows, seq_len, d, 2);
    let store = ActivationStore::open(tmp.path()).unwrap();
    let total = rows * seq_len;

    for (batch, buffer) in [(5, 8), (5, 5), (4, 100), (1, 3), (28, 28), (6, 13)] {
        let make = |seed| {
            BatchStream::new(&store, "x", batch, seed, Some(3), buffer)
                .unwrap()
                .with_keep_last(true)
        };
        let a = collect(make(7));
        let b = collect(make(7));
        assert_eq!(a, b, "same seed, same batches");
        let c = collect(make(8));
        assert_ne!(a, c, "another seed, another order");

        let per_epoch = make(7).batches_per_epoch() as usize;
        assert_eq!(per_epoch, total.div_ceil(batch));
        assert_eq!(a.len(), 3 * per_epoch);
        let mut epoch_orders = Vec::new();
        for epoch in a.chunks(per_epoch) {
            for b in &epoch[..per_epoch - 1] {
                assert_eq!(b.len(), batch * d);
            }
            // Every vector exactly once per epoch.
            let mut seen: Vec<u32> = epoch.iter().flat_map(|b| ids(b, d)).collect();
            epoch_orders.push(seen.clone());
            seen.sort();
            assert_eq!(seen, (0..total as u32).collect::<Vec<_>>());
        }
        assert_ne!(epoch_orders[0], epoch_orders[1], "epochs reshuffle");
        assert_ne!(epoch_orders[0], (0..total as u32).collect::<Vec<_>>());
    }
}

#[test]
fn batch_stream_drops_the_remainder_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let (rows, seq_len, d) = (7, 4, 3);
    id_store(tmp.path(), StoreDtype::F32, rows, seq_len, d, 3);
    let store = ActivationStore::open(tmp.path()).unwrap();
    let stream = BatchStream::new(&store, "x", 5, 1, Some(2), 10).unwrap();
    assert_eq!(stream.batches_per_epoch(), 5);
    let batches = collect(stream);
    assert_eq!(batches.len(), 10);
    for epoch in batches.chunks(5) {
        let mut seen: Vec<u32> = epoch.iter().flat_map(|b| ids(b, d)).collect();
        assert_eq!(seen.len(), 25);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 25, "no vector twice in an epoch");
    }
    // The other hook is read, not `x`.
    let y: Vec<f32> = BatchStream::new(&store, "y", 5, 1, Some(1), 10)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert!(y.iter().all(|&v| v <= 0.0));
    assert!(BatchStream::new(&store, "z", 5, 1, Some(1), 10).is_err());
    assert!(BatchStream::new(&store, "x", 5, 1, Some(1), 4).is_err());
}

#[test]
fn batch_stream_skips_positions_and_runs_endless() {
    let tmp = tempfile::tempdir().unwrap();
    let (rows, seq_len, d) = (5, 4, 2);
    id_store(tmp.path(), StoreDtype::Bf16, rows, seq_len, d, 2);
    let store = ActivationStore::open(tmp.path()).unwrap();
    let stream = BatchStream::new(&store, "x", 3, 5, Some(1), 7)
        .unwrap()
        .with_skip_positions(1)
        .unwrap()
        .with_keep_last(true);
    assert_eq!(stream.vectors_per_epoch(), 15);
    let mut seen: Vec<u32> = collect(stream).iter().flat_map(|b| ids(b, d)).collect();
    seen.sort();
    let want: Vec<u32> = (0..(rows * seq_len) as u32)
        .filter(|id| id % seq_len as u32 != 0)
        .collect();
    assert_eq!(seen, want);
    assert!(BatchStream::new(&store, "x", 3, 5, None, 7)
        .unwrap()
        .with_skip_positions(4)
        .is_err());

    // Endless: keeps producing full batches across many epochs; each run
    // of 5 batches (one epoch of 15 vectors) is a permutation.
    let endless = BatchStream::new(&store, "x", 3, 5, None, 7)
        .unwrap()
        .with_skip_positions(1)
        .unwrap();
    let batches: Vec<Vec<f32>> = endless.take(50).map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 50);
    for epoch in batches.chunks(5) {
        let mut s: Vec<u32> = epoch.iter().flat_map(|b| ids(b, d)).collect();
        s.sort();
        assert_eq!(s, want);
    }
    // A batch larger than the store: an endless stream ends instead of
    // spinning.
    let mut big = BatchStream::new(&store, "x", 100, 5, None, 100).unwrap();
    assert!(big.next().is_none());
}

#[test]
fn batch_stream_matches_a_direct_reimplementation() {
    // Re-derive the first epoch from the documented algorithm with plain
    // code, to pin the algorithm down (shard order, fill, carry, shuffle).
    use rand::{RngCore, SeedableRng};
    let tmp = tempfile::tempdir().unwrap();
    let (rows, seq_len, d, rps) = (9, 3, 1, 2);
    id_store(tmp.path(), StoreDtype::F32, rows, seq_len, d, rps);
    let store = ActivationStore::open(tmp.path()).unwrap();
    let (batch, buffer, seed) = (4, 10, 123);
    let got: Vec<u32> = BatchStream::new(&store, "x", batch, seed, Some(1), buffer)
        .unwrap()
        .flat_map(|b| ids(&b.unwrap(), d))
        .collect();

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut below = |n: u64| -> u64 {
        loop {
            let m = u128::from(rng.next_u64()) * u128::from(n);
            if (m as u64) >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    };
    let mut order: Vec<usize> = (0..store.num_shards()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, below(i as u64 + 1) as usize);
    }
    let mut queue: Vec<u32> = Vec::new();
    for &s in &order {
        let first = s * rps;
        let last = (first + rps).min(rows);
        queue.extend((first * seq_len) as u32..(last * seq_len) as u32);
    }
    let mut want = Vec::new();
    let mut buf: Vec<u32> = Vec::new();
    let mut q = queue.into_iter().peekable();
    loop {
        while buf.len() < buffer {
            match q.next() {
                Some(v) => buf.push(v),
                None => break,
            }
        }
        for i in (1..buf.len()).rev() {
            buf.swap(i, below(i as u64 + 1) as usize);
        }
        let full = buf.len() / batch * batch;
        want.extend_from_slice(&buf[..full]);
        buf.drain(..full);
        if q.peek().is_none() {
            break;
        }
    }
    assert_eq!(got, want);
}

// ------------------------------------------------------- python cross-check

const XCHECK_DTYPES: [StoreDtype; 3] = [StoreDtype::F32, StoreDtype::F16, StoreDtype::Bf16];

/// The cross-check store of one dtype: 12 rows of 8 tokens, d 16, two
/// hooks, shards of 5 rows (deterministic: the same bytes every time).
fn write_xcheck_store(dir: &Path, dtype: StoreDtype) -> StoreSpec {
    let s = spec(
        dtype,
        &["blocks.8.hook_resid_pre", "blocks.9.hook_resid_pre"],
        8,
        16,
        5,
    );
    let mut w = StoreWriter::create_or_resume(dir, s.clone()).unwrap();
    push(&mut w, 0..12);
    w.finish().unwrap();
    s
}

/// Python (numpy + `safetensors`, and a by-hand bf16 decode) read these
/// stores once and recorded what it saw in `tests/fixtures/store/
/// python_view.json` (`check_store.py --record`): the files written today
/// are byte-identical to those, and our reader decodes what Python decoded.
#[test]
fn python_view_of_the_stores() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/store/python_view.json");
    let view: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for dtype in XCHECK_DTYPES {
        let d = dir.path().join(format!("store-{dtype}"));
        let s = write_xcheck_store(&d, dtype);
        let v = &view[dtype.to_string()];
        let store = ActivationStore::open(&d).unwrap();
        let shards = v["shards"].as_array().unwrap();
        assert_eq!(store.num_shards(), shards.len());
        for (i, sv) in shards.iter().enumerate() {
            let file = d.join(sv["file"].as_str().unwrap());
            let sha = saelab_fsio::sha256_file(&file).unwrap();
            assert_eq!(
                sha,
                sv["sha256"].as_str().unwrap(),
                "{dtype} shard {i}: bytes changed"
            );
            for hook in &s.hooks {
                let sd = store.shard(i, hook).unwrap();
                let hv = &sv["hooks"][hook];
                let sum: f64 = sd.acts.iter().map(|&x| f64::from(x)).sum();
                let sumsq: f64 = sd.acts.iter().map(|&x| f64::from(x).powi(2)).sum();
                let close = |a: f64, b: &serde_json::Value| {
                    (a - b.as_f64().unwrap()).abs() <= 1e-9 * a.abs().max(1.0)
                };
                assert!(
                    close(sum, &hv["sum"]) && close(sumsq, &hv["sumsq"]),
                    "{dtype} {hook} shard {i}"
                );
                let vec_of = |k: &str| -> Vec<f32> {
                    hv[k]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap() as f32)
                        .collect()
                };
                assert_eq!(
                    &sd.acts[..s.d],
                    &vec_of("first_vector")[..],
                    "{dtype} {hook}"
                );
                assert_eq!(&sd.acts[sd.acts.len() - s.d..], &vec_of("last_vector")[..]);
                let toks: u64 = sd.tokens.iter().map(|&t| u64::from(t)).sum();
                assert_eq!(toks, sv["tokens_sum"].as_u64().unwrap());
                let first: Vec<u32> = sv["tokens_first_row"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect();
                assert_eq!(&sd.tokens[..s.seq_len], &first[..]);
            }
        }
    }
}

/// Writes stores for `scripts/reference/check_store.py` when
/// `SAELAB_STORE_DUMP_DIR` is set (no-op otherwise): one store per dtype and
/// `expected.json` with values decoded by the Rust reader.
#[test]
fn dump_for_python_cross_check() {
    let Ok(out) = std::env::var("SAELAB_STORE_DUMP_DIR") else {
        return;
    };
    let out = Path::new(&out);
    let mut expected = serde_json::Map::new();
    for dtype in XCHECK_DTYPES {
        let dir = out.join(format!("store-{dtype}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        let s = write_xcheck_store(&dir, dtype);
        let store = ActivationStore::open(&dir).unwrap();
        let (_, source) = data(&s, 0..12);
        let mut shards = Vec::new();
        let mut row0 = 0;
        for i in 0..store.num_shards() {
            let mut hooks = serde_json::Map::new();
            let mut tokens = Vec::new();
            for (h, hook) in s.hooks.iter().enumerate() {
                let sd = store.shard(i, hook).unwrap();
                let first = row0 * s.seq_len * s.d;
                let sum: f64 = sd.acts.iter().map(|&x| f64::from(x)).sum();
                let sumsq: f64 = sd.acts.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
                hooks.insert(
                    hook.clone(),
                    serde_json::json!({
                        "shape": [sd.rows, sd.seq_len, sd.d],
                        "sum": sum,
                        "sumsq": sumsq,
                        "first_vector": &sd.acts[..sd.d],
                        "last_vector": &sd.acts[sd.acts.len() - sd.d..],
                        "source_first_vector": &source[h][first..first + s.d],
                    }),
                );
                tokens = sd.tokens;
            }
            row0 += store.manifest().shards[i].rows;
            shards.push(serde_json::json!({
                "file": store.manifest().shards[i].file,
                "tokens_sum": tokens.iter().map(|&t| u64::from(t)).sum::<u64>(),
                "tokens_first_row": &tokens[..s.seq_len],
                "hooks": hooks,
            }));
        }
        expected.insert(
            dtype.to_string(),
            serde_json::json!({ "dir": dir, "shards": shards }),
        );
    }
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap(),
    )
    .unwrap();
}

/// Throughput at a realistic width (run with
/// `cargo test -p saelab-data --release store::tests::perf_smoke -- --ignored --nocapture`).
#[test]
#[ignore = "timing smoke test, ~100 MB of disk"]
fn perf_smoke() {
    let tmp = tempfile::tempdir().unwrap();
    let (rows, seq_len, d) = (512, 128, 768);
    let s = spec(
        StoreDtype::F16,
        &["blocks.8.hook_resid_pre"],
        seq_len,
        d,
        128,
    );
    let t0 = std::time::Instant::now();
    let mut w = StoreWriter::create_or_resume(tmp.path(), s).unwrap();
    let tokens = vec![1u32; 16 * seq_len];
    let acts: Vec<f32> = (0..16 * seq_len * d)
        .map(|i| (i % 977) as f32 * 0.01)
        .collect();
    for _ in 0..rows / 16 {
        w.push_rows(&tokens, &[&acts]).unwrap();
    }
    w.finish().unwrap();
    let write = t0.elapsed().as_secs_f64();
    let store = ActivationStore::open(tmp.path()).unwrap();
    let t1 = std::time::Instant::now();
    store.verify().unwrap();
    let verify = t1.elapsed().as_secs_f64();
    let t2 = std::time::Instant::now();
    let stream =
        BatchStream::new(&store, "blocks.8.hook_resid_pre", 4096, 49, Some(1), 32768).unwrap();
    let n: usize = stream.map(|b| b.unwrap().len() / d).sum();
    let read = t2.elapsed().as_secs_f64();
    let mb = (rows * seq_len * d * 2) as f64 / 1e6;
    println!(
        "{mb:.0} MB f16: write {:.0} MB/s, verify {:.0} MB/s, stream {:.2} M vectors/s ({n} vectors)",
        mb / write,
        mb / verify,
        n as f64 / read / 1e6
    );
}

#[test]
fn skipping_batches_lands_where_reading_them_would() {
    // A skip moves ids, not bytes; after it, the stream must yield exactly
    // what the replayed stream yields, at every point (mid-buffer, at a
    // refill, across epochs, with skipped positions and a short last batch).
    let tmp = tempfile::tempdir().unwrap();
    let (rows, seq_len, d) = (9, 4, 3);
    id_store(tmp.path(), StoreDtype::F16, rows, seq_len, d, 2);
    let store = ActivationStore::open(tmp.path()).unwrap();
    for (batch, buffer, keep_last, skip_pos) in [
        (5, 8, true, 0),
        (4, 13, false, 1),
        (3, 3, false, 0),
        (7, 30, true, 1),
    ] {
        let make = || {
            BatchStream::new(&store, "x", batch, 11, Some(4), buffer)
                .unwrap()
                .with_keep_last(keep_last)
                .with_skip_positions(skip_pos)
                .unwrap()
        };
        let all = collect(make());
        for n in 0..=all.len() as u64 + 1 {
            let mut s = make();
            let skipped = s.skip_batches(n).unwrap();
            assert_eq!(
                skipped,
                n.min(all.len() as u64),
                "batch {batch} buffer {buffer} n {n}"
            );
            let rest = collect(s);
            assert_eq!(
                rest,
                all[skipped as usize..],
                "batch {batch} buffer {buffer} n {n}"
            );
        }
    }
}
