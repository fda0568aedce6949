//! What a sweep trains: [`SweepSpec`] (a `[grid]` table and/or explicit
//! `[[sae]]` entries, as in a sweep TOML file or the CLI's grid flags)
//! resolved into the list of [`SaePlan`]s, in a fixed order.

use super::error::SweepError;
use crate::arch::ArchSpec;
use crate::defaults::{self, ArchName};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A sweep: the cross product of `grid` followed by the explicit `sae`
/// entries.
///
/// ```toml
/// [grid]
/// arch = ["topk", "batchtopk"]
/// n = [2304, 4608]
/// k = [16, 32]
/// seed = [49, 50]
///
/// [[sae]]
/// arch = "jumprelu"
/// l0_coeff = 0.002
/// init_threshold = 1.0
/// bandwidth = 0.001
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    #[serde(default)]
    pub grid: Option<GridSpec>,
    #[serde(default)]
    pub sae: Vec<SaeSpec>,
}

/// A grid; an absent axis takes its default (arch: topk, n: 4·d, k: 16,
/// seed: 49), an empty one is an error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridSpec {
    #[serde(default)]
    pub arch: Option<Vec<ArchName>>,
    #[serde(default)]
    pub n: Option<Vec<usize>>,
    #[serde(default)]
    pub k: Option<Vec<usize>>,
    #[serde(default)]
    pub seed: Option<Vec<u64>>,
}

/// One SAE; unset fields take the [`ArchDefaults`] and crate defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaeSpec {
    pub arch: ArchName,
    #[serde(default)]
    pub n: Option<usize>,
    #[serde(default)]
    pub k: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub l1_coeff: Option<f32>,
    #[serde(default)]
    pub l0_coeff: Option<f32>,
    /// JumpReLU initial threshold.
    #[serde(default)]
    pub init_threshold: Option<f32>,
    /// JumpReLU bandwidth.
    #[serde(default)]
    pub bandwidth: Option<f32>,
    /// Matryoshka prefix sizes (default: the architecture's).
    #[serde(default)]
    pub group_sizes: Option<Vec<usize>>,
    /// Output sub-folder (default: `<arch>-n<N>[-k<K>]-s<seed>`).
    #[serde(default)]
    pub name: Option<String>,
}

impl SaeSpec {
    /// An entry of `arch` with every other field unset.
    pub fn new(arch: ArchName) -> Self {
        SaeSpec {
            arch,
            n: None,
            k: None,
            seed: None,
            l1_coeff: None,
            l0_coeff: None,
            init_threshold: None,
            bandwidth: None,
            group_sizes: None,
            name: None,
        }
    }
}

/// Sweep-wide coefficients that entries without their own value use (the
/// CLI's `--l1-coeff`, `--l0-coeff`, `--jumprelu-*` flags).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchDefaults {
    pub l1_coeff: f32,
    pub l0_coeff: f32,
    pub jumprelu_init_threshold: f32,
    pub jumprelu_bandwidth: f32,
}

impl Default for ArchDefaults {
    fn default() -> Self {
        ArchDefaults {
            l1_coeff: defaults::L1_COEFF,
            l0_coeff: defaults::L0_COEFF,
            jumprelu_init_threshold: defaults::JUMPRELU_INIT_THRESHOLD,
            jumprelu_bandwidth: defaults::JUMPRELU_BANDWIDTH,
        }
    }
}

/// One fully resolved SAE of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaePlan {
    /// Output sub-folder name (unique in the sweep).
    pub name: String,
    /// Architecture with all its coefficients.
    pub arch: ArchSpec,
    /// Dictionary size.
    pub n: usize,
    /// Initialization seed.
    pub seed: u64,
    /// Which of the source's lanes (hook points) it trains on; 0 for a
    /// one-hook source.
    #[serde(default)]
    pub lane: usize,
}

/// The plan repeated for each of `lanes` hooks: lane `i`'s SAEs are named
/// `<prefix_i>-<name>` (with more than one lane; one keeps the names).
pub fn plan_per_lane(plan: &[SaePlan], prefixes: &[String]) -> Vec<SaePlan> {
    if prefixes.len() <= 1 {
        return plan.to_vec();
    }
    prefixes
        .iter()
        .enumerate()
        .flat_map(|(lane, prefix)| {
            plan.iter().map(move |p| SaePlan {
                name: format!("{prefix}-{}", p.name),
                lane,
                ..p.clone()
            })
        })
        .collect()
}

impl SweepSpec {
    /// Reads a sweep TOML file; errors name the file.
    pub fn from_toml_file(path: &Path) -> Result<SweepSpec, SweepError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SweepError::BadSpec {
            origin: origin.clone(),
            msg: format!("cannot read: {e}"),
        })?;
        Self::from_toml_str(&text, &origin)
    }

    /// Parses sweep TOML text (`origin` names it in errors).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<SweepSpec, SweepError> {
        let spec: SweepSpec = toml::from_str(text).map_err(|e| SweepError::BadSpec {
            origin: origin.to_string(),
            msg: format!("bad sweep file: {e}"),
        })?;
        if spec.grid.is_none() && spec.sae.is_empty() {
            return Err(SweepError::BadSpec {
                origin: origin.to_string(),
                msg: "lists no SAEs (expected [grid] and/or [[sae]])".into(),
            });
        }
        Ok(spec)
    }

    /// The SAEs to train for inputs of width `d`: the grid in the order
    /// arch × n × k × seed, then the explicit entries. Names must be plain
    /// folder names and unique.
    pub fn resolve(&self, d: usize, dflt: &ArchDefaults) -> Result<Vec<SaePlan>, SweepError> {
        let mut specs = match &self.grid {
            Some(g) => expand_grid(g)?,
            None => Vec::new(),
        };
        specs.extend(self.sae.iter().cloned());
        if specs.is_empty() {
            return Err(bad_spec("the sweep lists no SAEs"));
        }
        let mut out: Vec<SaePlan> = Vec::new();
        for s in &specs {
            let plan = resolve_one(s, d, dflt);
            check_name(&plan.name)?;
            if out.iter().any(|p| p.name == plan.name) {
                return Err(bad_spec(&format!(
                    "two SAEs of the sweep share the name {}; give one a `name`",
                    plan.name
                )));
            }
            out.push(plan);
        }
        Ok(out)
    }
}

fn bad_spec(msg: &str) -> SweepError {
    SweepError::BadSpec {
        origin: "sweep".into(),
        msg: msg.to_string(),
    }
}

/// A present axis must list something: `arch = []` is a mistake, not a
/// request for the default.
fn axis<T: Clone>(name: &str, v: &Option<Vec<T>>, dflt: Vec<T>) -> Result<Vec<T>, SweepError> {
    match v {
        None => Ok(dflt),
        Some(v) if v.is_empty() => Err(bad_spec(&format!(
            "grid axis `{name}` is empty; list at least one value or leave it out for the default"
        ))),
        Some(v) => Ok(v.clone()),
    }
}

fn expand_grid(g: &GridSpec) -> Result<Vec<SaeSpec>, SweepError> {
    let archs = axis("arch", &g.arch, defaults::ARCHS.to_vec())?;
    // `None` n: resolved to 4·d later, when d is known.
    let ns: Vec<Option<usize>> = axis(
        "n",
        &g.n.clone().map(|v| v.into_iter().map(Some).collect()),
        vec![None],
    )?;
    let ks = axis("k", &g.k, vec![defaults::K])?;
    let seeds = axis("seed", &g.seed, vec![defaults::SEED])?;
    let mut specs = Vec::new();
    for &arch in &archs {
        let kk: Vec<Option<usize>> = if arch.uses_k() {
            ks.iter().map(|&k| Some(k)).collect()
        } else {
            vec![None]
        };
        for &n in &ns {
            for &k in &kk {
                for &seed in &seeds {
                    specs.push(SaeSpec {
                        n,
                        k,
                        seed: Some(seed),
                        ..SaeSpec::new(arch)
                    });
                }
            }
        }
    }
    Ok(specs)
}

fn resolve_one(s: &SaeSpec, d: usize, dflt: &ArchDefaults) -> SaePlan {
    let n = s.n.unwrap_or(defaults::N_PER_D * d);
    let seed = s.seed.unwrap_or(defaults::SEED);
    let k = s.k.unwrap_or(defaults::K);
    let mut arch = s.arch.spec(k);
    match &mut arch {
        ArchSpec::Relu { l1_coeff } => *l1_coeff = s.l1_coeff.unwrap_or(dflt.l1_coeff),
        ArchSpec::JumpRelu {
            l0_coeff,
            bandwidth,
            init_threshold,
            ..
        } => {
            *l0_coeff = s.l0_coeff.unwrap_or(dflt.l0_coeff);
            *bandwidth = s.bandwidth.unwrap_or(dflt.jumprelu_bandwidth);
            *init_threshold = s.init_threshold.unwrap_or(dflt.jumprelu_init_threshold);
        }
        ArchSpec::MatryoshkaBatchTopK { group_sizes, .. } => {
            *group_sizes = s.group_sizes.clone().unwrap_or_default();
        }
        ArchSpec::TopK { .. } | ArchSpec::BatchTopK { .. } => {}
    }
    let name = s.name.clone().unwrap_or_else(|| {
        if s.arch.uses_k() {
            format!("{}-n{n}-k{k}-s{seed}", s.arch)
        } else {
            format!("{}-n{n}-s{seed}", s.arch)
        }
    });
    SaePlan {
        lane: 0,
        name,
        arch,
        n,
        seed,
    }
}

/// Names become folder and file names: no separators, nothing hidden, not
/// one of the run folder's own entries.
pub(crate) fn check_name(name: &str) -> Result<(), SweepError> {
    if name.is_empty()
        || name.contains(['/', '\\'])
        || name.starts_with('.')
        || super::layout::RESERVED.contains(&name)
    {
        return Err(bad_spec(&format!(
            "SAE name {name:?} is not a plain folder name"
        )));
    }
    Ok(())
}

/// What to train: a spec (resolved once the input width d is known, since
/// the default n is 4·d) or a ready plan.
#[derive(Clone, Copy, Debug)]
pub enum PlanRequest<'a> {
    /// A grid and/or entries, with the sweep-wide coefficients.
    Spec(&'a SweepSpec, &'a ArchDefaults),
    /// SAEs already resolved.
    Plan(&'a [SaePlan]),
}

impl PlanRequest<'_> {
    /// The plan for inputs of width `d`.
    pub fn resolve(&self, d: usize) -> Result<Vec<SaePlan>, SweepError> {
        match self {
            PlanRequest::Spec(spec, dflt) => spec.resolve(d, dflt),
            PlanRequest::Plan(plan) => Ok(plan.to_vec()),
        }
    }
}
