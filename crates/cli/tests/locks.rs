//! `eval`, `stats` and `match` lock their output folder like harvest and
//! train do: while another process holds it, a second run is refused at
//! once with a message naming the folder, before it loads anything.

use std::process::Command;

fn refused_while_locked(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let _held = saelab_fsio::DirLock::acquire(&out).unwrap();
    let mut all: Vec<&str> = args.to_vec();
    let out_s = out.to_string_lossy().to_string();
    all.extend(["--out", &out_s]);
    let o = Command::new(env!("CARGO_BIN_EXE_saelab"))
        .args(&all)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "saelab {args:?} ran into a locked folder"
    );
    assert!(
        err.contains("another saelab run holds this folder") && err.contains(&out_s),
        "saelab {args:?}: {err}"
    );
}

#[test]
fn eval_stats_and_match_refuse_a_folder_in_use() {
    let common = [
        "--sae",
        "no-sae",
        "--model",
        "no-model",
        "--dataset",
        "no-corpus",
    ];
    refused_while_locked(&[&["eval"][..], &common[..]].concat());
    refused_while_locked(&[&["stats"][..], &common[..]].concat());
    refused_while_locked(&["match", "no-a", "no-b"]);
}
