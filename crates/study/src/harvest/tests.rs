//! Harvests of a tiny generated GPT-2 over a small corpus: complete stores
//! checked against the request, NaN activations stopped and named, the
//! folder lock, the stop flag and resume, and config checks.

use super::*;
use saelab_data::packing::Packing;
use saelab_data::store::{ActivationStore, StoreDtype};
use saelab_lm::testing::{write_gpt2, Gpt2Shape};
use std::sync::atomic::AtomicBool;

struct Setup {
    dir: tempfile::TempDir,
    model_dir: PathBuf,
    corpus: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("gpt2-tiny");
    std::fs::create_dir(&model_dir).unwrap();
    write_gpt2(&model_dir, Gpt2Shape::TINY, 1234, "").unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    let mut s = String::new();
    for i in 0..400 {
        let text = format!("Document {i}: the quick brown fox jumps {} times.", i * 7);
        s.push_str(&serde_json::json!({ "text": text }).to_string());
        s.push('\n');
    }
    std::fs::write(&corpus, s).unwrap();
    Setup {
        dir,
        model_dir,
        corpus,
    }
}

fn cfg(s: &Setup) -> HarvestConfig {
    HarvestConfig {
        model: s.model_dir.to_string_lossy().into(),
        dataset: "corpus.jsonl".into(),
        hooks: vec!["blocks.0.hook_resid_pre".parse().unwrap()],
        tokens: 1536,
        seq_len: 32,
        batch_rows: 4,
        rows_per_shard: 8,
        pos_intervention: saelab_lm::PosIntervention::Shuffle,
        ..HarvestConfig::default()
    }
}

fn harvest(
    m: &Model,
    s: &Setup,
    c: &HarvestConfig,
    out: &Path,
) -> Result<HarvestSummary, HarvestError> {
    run(m, &s.corpus, c, out, &|_| {}, &AtomicBool::new(false))
}

fn shard_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("shard-"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Issue "Trust" (1): a complete store answers "already complete" only to
/// the request it holds; any other request names the differing field.
#[test]
fn complete_store_is_checked_against_the_request() {
    let s = setup();
    let m = Model::load(s.model_dir.to_str().unwrap()).unwrap();
    let out = s.dir.path().join("store");
    let c = cfg(&s);
    let first = harvest(&m, &s, &c, &out).unwrap();
    assert!(!first.already_complete);
    assert_eq!((first.rows, first.shards, first.rows_this_run), (48, 6, 48));
    let before = shard_files(&out);

    let again = harvest(&m, &s, &c, &out).unwrap();
    assert!(
        again.already_complete && again.rows_this_run == 0,
        "{again:?}"
    );

    let changes: Vec<(&str, HarvestConfig)> = vec![
        (
            "hooks",
            HarvestConfig {
                hooks: vec!["blocks.1.hook_resid_pre".parse().unwrap()],
                ..c.clone()
            },
        ),
        (
            "target_rows",
            HarvestConfig {
                tokens: 4096,
                ..c.clone()
            },
        ),
        (
            "dtype",
            HarvestConfig {
                dtype: StoreDtype::F16,
                ..c.clone()
            },
        ),
        (
            "seq_len",
            HarvestConfig {
                seq_len: 16,
                ..c.clone()
            },
        ),
        (
            "dataset.name",
            HarvestConfig {
                dataset: "other".into(),
                ..c.clone()
            },
        ),
        (
            "model.id",
            HarvestConfig {
                model: "gpt2-tiny".into(),
                ..c.clone()
            },
        ),
        (
            "packing",
            HarvestConfig {
                packing: Packing::BosRows,
                ..c.clone()
            },
        ),
    ];
    for (field, other) in changes {
        let err = harvest(&m, &s, &other, &out).unwrap_err();
        assert!(
            matches!(
                err,
                HarvestError::Store(StoreError::CompleteSpecMismatch { .. })
            ),
            "{field}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{field} (store has ")),
            "{field}: {msg}"
        );
    }
    assert_eq!(before, shard_files(&out));
}

/// Sets row `token` of `wte` to NaN in a generated GPT-2's safetensors.
fn poison_token(model_dir: &Path, token: u32, d: usize) {
    let path = model_dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let start = header["wte.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
    let at = 8 + n + start + token as usize * d * 4;
    for k in 0..d {
        bytes[at + 4 * k..at + 4 * k + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
}

/// Issue "Trust" (5): a NaN activation names the model, the hook and the
/// global row, and the shard holding that row is never written.
#[test]
fn non_finite_activations_stop_the_harvest_before_their_shard() {
    let s = setup();
    let c = HarvestConfig {
        hooks: vec![
            "blocks.0.hook_resid_pre".parse().unwrap(),
            "blocks.1.hook_resid_pre".parse().unwrap(),
        ],
        pos_intervention: saelab_lm::PosIntervention::None,
        ..cfg(&s)
    };
    let clean = s.dir.path().join("clean");
    harvest(
        &Model::load(s.model_dir.to_str().unwrap()).unwrap(),
        &s,
        &c,
        &clean,
    )
    .unwrap();
    let store = ActivationStore::open(&clean).unwrap();
    let tokens: Vec<u32> = (0..store.num_shards())
        .flat_map(|i| store.shard(i, "blocks.0.hook_resid_pre").unwrap().tokens)
        .collect();
    let rows: Vec<&[u32]> = tokens.chunks(32).collect();
    // The first token that appears in no row before row 20: poisoning it
    // makes row `r` the first bad one.
    let (r, t) = (20..rows.len())
        .find_map(|r| {
            rows[r]
                .iter()
                .find(|t| rows[..r].iter().all(|row| !row.contains(t)))
                .map(|&t| (r, t))
        })
        .unwrap();
    let pos = rows[r].iter().position(|&x| x == t).unwrap();
    poison_token(&s.model_dir, t, 64);

    let m = Model::load(s.model_dir.to_str().unwrap()).unwrap();
    let out = s.dir.path().join("nan");
    let err = harvest(&m, &s, &c, &out).unwrap_err();
    let HarvestError::NonFinite {
        hook,
        row,
        position,
        ..
    } = &err
    else {
        panic!("expected NonFinite, got {err}");
    };
    assert_eq!(
        (hook.as_str(), *row, *position),
        ("blocks.0.hook_resid_pre", r as u64, pos)
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&m.info.id) && msg.contains(&format!("row {r}")),
        "{msg}"
    );
    // Only the shards wholly before row r are on disk.
    let shards = shard_files(&out);
    assert_eq!(
        shards.len(),
        r / 8,
        "{:?}",
        shards.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    assert!(ActivationStore::open(&out).is_err());
}

#[test]
fn a_locked_store_folder_is_refused() {
    let s = setup();
    let m = Model::load(s.model_dir.to_str().unwrap()).unwrap();
    let out = s.dir.path().join("store");
    let lock = DirLock::acquire(&out).unwrap();
    let err = harvest(&m, &s, &cfg(&s), &out).unwrap_err();
    assert!(
        matches!(err, HarvestError::Fs(saelab_fsio::FsError::Locked { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("another saelab run"), "{err}");
    drop(lock);
    harvest(&m, &s, &cfg(&s), &out).unwrap();
}

/// The stop flag leaves a resumable store, and the resumed harvest writes
/// the same bytes as an uninterrupted one (shuffle permutations included).
#[test]
fn stopped_then_resumed_is_byte_identical() {
    let s = setup();
    let m = Model::load(s.model_dir.to_str().unwrap()).unwrap();
    let c = cfg(&s);
    let a = s.dir.path().join("a");
    harvest(&m, &s, &c, &a).unwrap();

    let b = s.dir.path().join("b");
    let stop = AtomicBool::new(false);
    let on_progress = |p: HarvestProgress| {
        if let HarvestProgress::Stored { rows, .. } = p {
            // Stop mid-shard, after 2.5 shards.
            if rows >= 20 {
                stop.store(true, Ordering::Relaxed);
            }
        }
    };
    let err = run(&m, &s.corpus, &c, &b, &on_progress, &stop).unwrap_err();
    assert!(
        matches!(err, HarvestError::Stopped { rows: 16, .. }),
        "{err}"
    );
    let resumed = std::cell::Cell::new(None);
    let on_progress = |p: HarvestProgress| {
        if let HarvestProgress::Resumed { rows, .. } = p {
            resumed.set(Some(rows));
        }
    };
    let sum = run(&m, &s.corpus, &c, &b, &on_progress, &AtomicBool::new(false)).unwrap();
    assert_eq!(resumed.get(), Some(16));
    assert_eq!(
        (sum.resumed_rows, sum.rows_this_run, sum.rows),
        (16, 32, 48)
    );
    assert_eq!(shard_files(&a), shard_files(&b));
    ActivationStore::open(&b).unwrap().verify().unwrap();
}

#[test]
fn open_ended_harvest_runs_to_the_corpus_end() {
    let s = setup();
    let m = Model::load(s.model_dir.to_str().unwrap()).unwrap();
    let c = HarvestConfig {
        tokens: 0,
        ..cfg(&s)
    };
    let exhausted = std::cell::Cell::new(false);
    let on_progress = |p: HarvestProgress| {
        if matches!(p, HarvestProgress::CorpusExhausted { .. }) {
            exhausted.set(true);
        }
    };
    let out = s.dir.path().join("all");
    let sum = run(
        &m,
        &s.corpus,
        &c,
        &out,
        &on_progress,
        &AtomicBool::new(false),
    )
    .unwrap();
    let store = ActivationStore::open(&out).unwrap();
    assert_eq!(store.rows(), sum.rows);
    assert!(sum.rows > 48 && store.spec().target_rows.is_none());
    assert_eq!(exhausted.get(), sum.corpus_exhausted);
}

#[test]
fn bad_configs_are_named() {
    let s = setup();
    let m = Model::load(s.model_dir.to_str().unwrap()).unwrap();
    let out = s.dir.path().join("x");
    let check = |c: HarvestConfig, want: &[&str]| {
        let e = harvest(&m, &s, &c, &out).unwrap_err().to_string();
        for w in want {
            assert!(e.contains(w), "`{w}` not in: {e}");
        }
    };
    check(
        HarvestConfig {
            rows_per_shard: 10,
            ..cfg(&s)
        },
        &["rows_per_shard = 10", "batch_rows (4)"],
    );
    check(
        HarvestConfig {
            batch_rows: 0,
            ..cfg(&s)
        },
        &["batch_rows = 0"],
    );
    check(
        HarvestConfig {
            seq_len: 100,
            ..cfg(&s)
        },
        &["seq_len = 100", "1..=64"],
    );
    check(
        HarvestConfig {
            hooks: vec![],
            ..cfg(&s)
        },
        &["hooks"],
    );
    check(
        HarvestConfig {
            hooks: vec!["blocks.9.hook_resid_pre".parse().unwrap()],
            ..cfg(&s)
        },
        &["blocks.9.hook_resid_pre", "3 layers", "gpt2-tiny"],
    );
    assert!(!out.exists(), "a refused config creates no store folder");
}

#[test]
fn config_reads_and_writes_hook_names() {
    let c: HarvestConfig = serde_json::from_str(
        r#"{"model": "gpt2", "hooks": ["blocks.3.hook_resid_post"], "dtype": "bf16",
            "packing": "bos_rows", "pos_intervention": "zero", "tokens": 0}"#,
    )
    .unwrap();
    assert_eq!(c.hooks[0].to_string(), "blocks.3.hook_resid_post");
    assert_eq!(
        (c.dtype, c.packing, c.tokens, c.seq_len),
        (StoreDtype::Bf16, Packing::BosRows, 0, 128)
    );
    assert_eq!(c.target_rows(), None);
    let back: HarvestConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    assert!(serde_json::from_str::<HarvestConfig>(r#"{"hooks": ["nope"]}"#).is_err());
    assert!(serde_json::from_str::<HarvestConfig>(r#"{"tokenz": 1}"#).is_err());
}
