//! `hf:` corpus names against a local HTTP server standing in for the hub
//! (`HF_ENDPOINT=http://127.0.0.1:PORT`). Its own test binary, one `#[test]`,
//! because `HF_ENDPOINT`, `HF_HOME` and `SAELAB_ASSETS` are process-global.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use saelab_assets::resolve_corpus;
use saelab_data::corpus::Corpus;

/// Requests the server answers before it stops on its own.
const MAX_REQUESTS: usize = 200;

/// One revision of a dataset repo on the fake hub.
struct FakeRepo {
    id: &'static str,
    revision: &'static str,
    sha: &'static str,
    files: Vec<(String, Vec<u8>)>,
}

/// The fake hub: serves [`FakeRepo`]s on 127.0.0.1 until dropped or
/// [`MAX_REQUESTS`] requests.
struct FakeHub {
    port: u16,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    fn start(repos: Vec<FakeRepo>) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (stop2, served2) = (stop.clone(), served.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) && served2.load(Ordering::SeqCst) < MAX_REQUESTS {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served2.fetch_add(1, Ordering::SeqCst);
                        serve(stream, &repos);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeHub {
            port,
            stop,
            served,
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answer one request (`Connection: close`, so one per connection).
fn serve(stream: TcpStream, repos: &[FakeRepo]) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    respond(stream, repos, path, range.as_deref());
}

fn respond(mut stream: TcpStream, repos: &[FakeRepo], path: &str, range: Option<&str>) {
    let (status, headers, body) = route(repos, path, range);
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

type Response = (&'static str, Vec<(&'static str, String)>, Vec<u8>);

/// The two endpoints hf-hub uses for a dataset: repo info and file download.
fn route(repos: &[FakeRepo], path: &str, range: Option<&str>) -> Response {
    let not_found = || {
        (
            "404 Not Found",
            vec![],
            b"{\"error\":\"not found\"}".to_vec(),
        )
    };
    for r in repos {
        let info = format!(
            "/api/datasets/{}/revision/{}",
            r.id,
            r.revision.replace('/', "%2F")
        );
        if path == info {
            let siblings: Vec<_> = r
                .files
                .iter()
                .map(|(p, _)| serde_json::json!({ "rfilename": p }))
                .collect();
            let body = serde_json::json!({ "sha": r.sha, "siblings": siblings });
            let json = ("Content-Type", "application/json".to_string());
            return ("200 OK", vec![json], body.to_string().into_bytes());
        }
        let resolve = format!("/datasets/{}/resolve/{}/", r.id, r.sha);
        if let Some(file) = path.strip_prefix(&resolve) {
            let Some((_, bytes)) = r.files.iter().find(|(p, _)| p == file) else {
                return not_found();
            };
            return ranged(r.sha, bytes, range);
        }
    }
    not_found()
}

/// A `206` of `bytes` for `Range: bytes=A-` or `bytes=A-B`, with the headers
/// hf-hub reads (`etag`, `x-repo-commit`, `content-range`).
fn ranged(sha: &str, bytes: &[u8], range: Option<&str>) -> Response {
    let spec = range.and_then(|r| r.strip_prefix("bytes=")).unwrap_or("0-");
    let (a, b) = spec.split_once('-').unwrap();
    let start: usize = a.parse().unwrap();
    let end = b.parse::<usize>().map_or(bytes.len(), |e| e + 1);
    let end = end.min(bytes.len());
    let headers = vec![
        ("ETag", format!("\"{}\"", saelab_fsio::sha256_bytes(bytes))),
        ("X-Repo-Commit", sha.to_string()),
        (
            "Content-Range",
            format!("bytes {start}-{}/{}", end.saturating_sub(1), bytes.len()),
        ),
    ];
    ("206 Partial Content", headers, bytes[start..end].to_vec())
}

/// A parquet file with a `text` column holding `docs`.
fn parquet_bytes(docs: &[&str]) -> Vec<u8> {
    let text: ArrayRef = Arc::new(StringArray::from(docs.to_vec()));
    let batch = RecordBatch::try_from_iter(vec![("text", text)]).unwrap();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

fn documents(dir: &Path) -> Vec<String> {
    Corpus::open(dir)
        .unwrap()
        .documents()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Point the assets root and the hub cache at fresh folders under `base`.
fn fresh_roots(base: &Path, label: &str) -> PathBuf {
    let assets = base.join(label).join("assets");
    std::env::set_var(saelab_assets::ENV_ROOT, &assets);
    std::env::set_var("HF_HOME", base.join(label).join("hf"));
    assets
}

fn repos() -> Vec<FakeRepo> {
    let file = |p: &str, b: Vec<u8>| (p.to_string(), b);
    vec![
        // Listed out of order, with a non-parquet file.
        FakeRepo {
            id: "test/tiny",
            revision: "main",
            sha: "1111111111111111111111111111111111111111",
            files: vec![
                file("README.md", b"# tiny".to_vec()),
                file(
                    "data/train-00001-of-00002.parquet",
                    parquet_bytes(&["third doc"]),
                ),
                file(
                    "data/train-00000-of-00002.parquet",
                    parquet_bytes(&["first doc", "second doc"]),
                ),
            ],
        },
        // No parquet on main: the converted branch is used.
        FakeRepo {
            id: "test/csvonly",
            revision: "main",
            sha: "2222222222222222222222222222222222222222",
            files: vec![file("data.csv", b"text\nx\n".to_vec())],
        },
        FakeRepo {
            id: "test/csvonly",
            revision: "refs/convert/parquet",
            sha: "3333333333333333333333333333333333333333",
            files: vec![
                file("default/test/0000.parquet", parquet_bytes(&["test doc"])),
                file("default/train/0000.parquet", parquet_bytes(&["train doc"])),
            ],
        },
    ]
}

#[test]
fn hub_datasets_resolve_to_parquet_folders() {
    for var in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"] {
        std::env::remove_var(var);
    }
    std::env::remove_var("ALL_PROXY");
    std::env::remove_var("all_proxy");
    std::env::remove_var("HF_TOKEN");
    let base = tempfile::tempdir().unwrap();
    let assets = fresh_roots(base.path(), "online");
    let hub = FakeHub::start(repos());
    std::env::set_var("HF_ENDPOINT", hub.endpoint());

    // Both shards, in repo-path order.
    let dir = resolve_corpus("hf:test/tiny").unwrap();
    assert_eq!(dir, assets.join("corpora/hub/test__tiny"));
    assert_eq!(documents(&dir), ["first doc", "second doc", "third doc"]);

    // main has no parquet: the converted branch, narrowed to SUBDIR.
    let conv = resolve_corpus("hf:test/csvonly/default/train").unwrap();
    assert_eq!(
        conv,
        assets.join("corpora/hub/test__csvonly__default__train")
    );
    assert_eq!(documents(&conv), ["train doc"]);

    // A folder missing a shard is incomplete and rebuilt.
    let first = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_string_lossy()
                .ends_with("00000__data__train-00000-of-00002.parquet")
        })
        .unwrap();
    std::fs::remove_file(&first).unwrap();
    assert_eq!(resolve_corpus("hf:test/tiny").unwrap(), dir);
    assert_eq!(documents(&dir), ["first doc", "second doc", "third doc"]);

    // Nothing under the SUBDIR anywhere: says so, with the alternative.
    let e = resolve_corpus("hf:test/csvonly/nothere")
        .unwrap_err()
        .to_string();
    assert!(e.contains("hf:test/csvonly/nothere"), "{e}");
    eprintln!("{e}");
    assert!(e.contains("no .parquet files under `nothere`"), "{e}");
    assert!(e.contains("give their folder as `source`"), "{e}");

    // A second resolve needs no hub: stop it and point at nothing.
    let served = hub.served();
    assert!(served > 0);
    drop(hub);
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");
    assert_eq!(resolve_corpus("hf:test/tiny").unwrap(), dir);
    assert_eq!(documents(&dir), ["first doc", "second doc", "third doc"]);
    assert_eq!(
        resolve_corpus("hf:test/csvonly/default/train").unwrap(),
        conv
    );

    // No hub and an empty cache: the error names the dataset, the local
    // alternative and the underlying failure.
    fresh_roots(base.path(), "offline");
    let e = resolve_corpus("hf:test/tiny").unwrap_err().to_string();
    eprintln!("{e}");
    assert!(e.contains("dataset `hf:test/tiny`"), "{e}");
    assert!(
        e.contains("download the dataset's parquet files and give their folder as `source`"),
        "{e}"
    );
    assert!(e.contains("127.0.0.1:9"), "{e}");

    // Not a valid hub name.
    let e = resolve_corpus("hf:justone").unwrap_err().to_string();
    assert!(e.contains("hf:OWNER/NAME"), "{e}");
}
