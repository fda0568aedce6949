//! Hub corpora: `hf:OWNER/NAME[/SUBDIR]` → a local folder of the dataset
//! repo's parquet shards, for machines that reach a Hugging Face hub.
//!
//! The shards are downloaded through `hf-hub` into its cache (`$HF_HOME`,
//! endpoint `$HF_ENDPOINT`, like hub models), then linked, in repo-path
//! order, from `<root>/corpora/hub/<owner>__<name>[__<subdir>]/` as
//! `<index>__<path>.parquet`, so that the sorted listing `Corpus::open`
//! reads is the repo order. The folder is built under `.tmp/` and renamed
//! into place with a `.shards.json` marker (hidden, so the corpus reader
//! skips it) listing each shard and its size: a folder whose marker matches
//! its shards is complete and is used without touching the network.
//!
//! The files come from the `main` revision; a dataset without parquet files
//! there falls back to the hub's auto-converted `refs/convert/parquet`
//! branch. Downloads are pinned to the commit the listing came from.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Repo, RepoType};
use serde::{Deserialize, Serialize};

use crate::error::{AssetError, Result};
use crate::files::{create_dir, move_into_place};
use crate::workdir::{clean_stale_tmp, WorkDir};

/// The prefix of hub dataset names.
pub const HUB_PREFIX: &str = "hf:";

/// The hub's branch of auto-converted parquet files.
const CONVERTED_REVISION: &str = "refs/convert/parquet";

/// The completeness marker inside a resolved folder.
const MARKER: &str = ".shards.json";

/// Whether `spec` names a hub dataset (`hf:…`).
pub fn is_hub_corpus(spec: &str) -> bool {
    spec.starts_with(HUB_PREFIX)
}

/// A parsed `hf:OWNER/NAME[/SUBDIR]`.
#[derive(Debug, Clone, PartialEq)]
struct HubDataset {
    /// `OWNER/NAME`.
    repo: String,
    /// Folder (or single file) inside the repo; `None` for the whole repo.
    subdir: Option<String>,
}

/// The marker file: what the folder holds, written last.
#[derive(Debug, Serialize, Deserialize)]
struct ShardList {
    dataset: String,
    revision: String,
    commit: String,
    shards: Vec<Shard>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Shard {
    /// Name in the resolved folder.
    file: String,
    /// Path in the dataset repo.
    path: String,
    bytes: u64,
}

/// `hf:OWNER/NAME[/SUBDIR]` → a folder of its parquet shards under `root`,
/// downloaded on first use (see the module docs).
pub fn resolve_hub_corpus(root: &Path, spec: &str) -> Result<PathBuf> {
    let ds = parse(spec)?;
    let dir = root.join("corpora").join("hub").join(ds.folder_name());
    if complete(&dir, &ds.name()) {
        return Ok(dir);
    }
    let hub_err = |action: String, err: ApiError| AssetError::Hub {
        dataset: spec.to_string(),
        action,
        err: Box::new(err),
    };
    let api = ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| hub_err("starting the hub client".into(), e))?;
    let (revision, commit, paths) = list_shards(&api, &ds, spec, &hub_err)?;
    eprintln!(
        "{spec}: downloading {} parquet file(s) (revision {revision}, commit {commit})",
        paths.len()
    );
    let repo = api.repo(Repo::with_revision(
        ds.repo.clone(),
        RepoType::Dataset,
        commit.clone(),
    ));
    let mut local = Vec::with_capacity(paths.len());
    for p in &paths {
        let file = repo
            .get(p)
            .map_err(|e| hub_err(format!("downloading {p}"), e))?;
        local.push(file);
    }
    let list = shard_list(&ds.name(), revision, commit, &paths, &local)?;
    install(root, &dir, &list, &local)?;
    Ok(dir)
}

/// Parse `hf:OWNER/NAME[/SUBDIR]`, rejecting empty, `.` and `..` parts.
fn parse(spec: &str) -> Result<HubDataset> {
    let bad = |problem: &str| AssetError::BadHubName {
        spec: spec.to_string(),
        problem: problem.to_string(),
    };
    let rest = spec
        .strip_prefix(HUB_PREFIX)
        .ok_or_else(|| bad("no `hf:`"))?;
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if parts.len() < 2 {
        return Err(bad("missing OWNER/NAME"));
    }
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\\'))
    {
        return Err(bad("empty, `.`, `..` or `\\` path part"));
    }
    let subdir = (parts.len() > 2).then(|| parts[2..].join("/"));
    Ok(HubDataset {
        repo: format!("{}/{}", parts[0], parts[1]),
        subdir,
    })
}

impl HubDataset {
    /// The canonical `hf:OWNER/NAME[/SUBDIR]` (recorded in the marker).
    fn name(&self) -> String {
        match &self.subdir {
            None => format!("{HUB_PREFIX}{}", self.repo),
            Some(s) => format!("{HUB_PREFIX}{}/{s}", self.repo),
        }
    }

    /// `<owner>__<name>[__<subdir with / as __>]`.
    fn folder_name(&self) -> String {
        let mut name = self.repo.replace('/', "__");
        if let Some(s) = &self.subdir {
            name.push_str("__");
            name.push_str(&s.replace('/', "__"));
        }
        name
    }

    /// Whether repo path `p` is a parquet file this dataset selects.
    fn selects(&self, p: &str) -> bool {
        let in_subdir = match &self.subdir {
            None => true,
            Some(s) => {
                p == s
                    || p.strip_prefix(s.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            }
        };
        in_subdir && p.ends_with(".parquet")
    }
}

/// The parquet files to fetch, sorted, with the revision and commit they
/// were listed from: `main`'s, else the converted branch's.
fn list_shards(
    api: &Api,
    ds: &HubDataset,
    spec: &str,
    hub_err: &dyn Fn(String, ApiError) -> AssetError,
) -> Result<(String, String, Vec<String>)> {
    let place = ds
        .subdir
        .as_ref()
        .map_or_else(String::new, |s| format!(" under `{s}`"));
    let mut tried: Vec<&str> = Vec::new();
    for revision in ["main", CONVERTED_REVISION] {
        let repo = Repo::with_revision(ds.repo.clone(), RepoType::Dataset, revision.to_string());
        // Say why the converted branch was asked for: a dataset without one
        // answers 404 there.
        let why = match tried.last() {
            Some(prev) => format!("{prev} has no .parquet files{place}; "),
            None => String::new(),
        };
        let info = api
            .repo(repo)
            .info()
            .map_err(|e| hub_err(format!("{why}listing the files of revision {revision}"), e))?;
        let mut paths: Vec<String> = info
            .siblings
            .into_iter()
            .map(|s| s.rfilename)
            .filter(|p| ds.selects(p))
            .collect();
        if !paths.is_empty() {
            paths.sort();
            return Ok((revision.to_string(), info.sha, paths));
        }
        tried.push(revision);
    }
    Err(AssetError::HubNoParquet {
        dataset: spec.to_string(),
        place,
        revisions: tried.join(", "),
    })
}

/// The marker for downloaded `local` files of repo `paths`.
fn shard_list(
    name: &str,
    revision: String,
    commit: String,
    paths: &[String],
    local: &[PathBuf],
) -> Result<ShardList> {
    let width = paths.len().to_string().len().max(5);
    let shards = paths
        .iter()
        .zip(local)
        .enumerate()
        .map(|(i, (p, f))| {
            let bytes = std::fs::metadata(f)
                .map_err(|e| AssetError::io(format!("reading {}", f.display()), e))?
                .len();
            Ok(Shard {
                file: format!("{i:0width$}__{}", p.replace('/', "__")),
                path: p.clone(),
                bytes,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ShardList {
        dataset: name.to_string(),
        revision,
        commit,
        shards,
    })
}

/// Whether `dir` holds a marker for dataset `name` whose shards are all present
/// with their recorded sizes.
fn complete(dir: &Path, name: &str) -> bool {
    let Ok(bytes) = std::fs::read(dir.join(MARKER)) else {
        return false;
    };
    let Ok(list) = serde_json::from_slice::<ShardList>(&bytes) else {
        return false;
    };
    list.dataset == name
        && !list.shards.is_empty()
        && list.shards.iter().all(|s| {
            std::fs::metadata(dir.join(&s.file)).is_ok_and(|m| m.is_file() && m.len() == s.bytes)
        })
}

/// Build the folder under `.tmp/` (links, then the marker) and rename it to
/// `dir`, replacing an incomplete one. If another process finished `dir`
/// first, its folder is kept.
fn install(root: &Path, dir: &Path, list: &ShardList, local: &[PathBuf]) -> Result<()> {
    let tmp_root = root.join(".tmp");
    create_dir(&tmp_root)?;
    clean_stale_tmp(root);
    let work = WorkDir::new(&tmp_root, "hub")?;
    for (shard, target) in list.shards.iter().zip(local) {
        link(target, &work.path().join(&shard.file))?;
    }
    saelab_fsio::write_json_atomic(&work.path().join(MARKER), list)?;
    if dir.exists() {
        if complete(dir, &list.dataset) {
            return Ok(());
        }
        std::fs::remove_dir_all(dir)
            .map_err(|e| AssetError::io(format!("removing incomplete {}", dir.display()), e))?;
    }
    match move_into_place(work.path(), dir) {
        Err(_) if complete(dir, &list.dataset) => Ok(()),
        r => r,
    }
}

/// `link` → `target` (a symlink; a copy where there are none).
fn link(target: &Path, link: &Path) -> Result<()> {
    let what = || format!("linking {} to {}", link.display(), target.display());
    #[cfg(unix)]
    let r = std::os::unix::fs::symlink(target, link);
    #[cfg(not(unix))]
    let r = std::fs::copy(target, link).map(|_| ());
    r.map_err(|e| AssetError::io(what(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI and the study runner wrap errors in `anyhow`.
    #[test]
    fn error_is_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<AssetError>();
    }

    #[test]
    fn parses_names() {
        let d = parse("hf:roneneldan/TinyStories").unwrap();
        assert_eq!(d.repo, "roneneldan/TinyStories");
        assert_eq!(d.subdir, None);
        assert_eq!(d.folder_name(), "roneneldan__TinyStories");
        let d = parse("hf:o/n/default/train/").unwrap();
        assert_eq!(d.subdir.as_deref(), Some("default/train"));
        assert_eq!(d.folder_name(), "o__n__default__train");
        for bad in ["hf:", "hf:o", "hf:o/", "hf:o//n", "hf:o/n/../x", "hf:./n"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn selects_parquet_under_subdir() {
        let all = parse("hf:o/n").unwrap();
        assert!(all.selects("data/train-0.parquet"));
        assert!(!all.selects("README.md"));
        let sub = parse("hf:o/n/data").unwrap();
        assert!(sub.selects("data/train-0.parquet"));
        assert!(!sub.selects("database/x.parquet"));
        assert!(!sub.selects("other/x.parquet"));
        let file = parse("hf:o/n/data/one.parquet").unwrap();
        assert!(file.selects("data/one.parquet"));
        assert!(!file.selects("data/two.parquet"));
    }
}
