//! The study runner: a TOML spec of one study ([`spec`], checked by
//! [`validate`]) expands into SAEs ([`grid`]) and a graph of stages keyed by
//! hashes of their inputs ([`plan`], [`identity`]); an executor ([`exec`])
//! runs what the stage cache ([`cache`]) does not hold, and [`results`]
//! gathers every number of the study into `results.json`. [`sources`] and
//! [`streamed`] feed training from a store or straight from the model.

pub mod cache;
pub mod exec;
pub mod grid;
pub mod harvest;
pub mod identity;
pub mod machine;
pub mod plan;
pub mod presets;
pub mod results;
pub mod sources;
pub mod spec;
mod stages;
pub mod status;
pub mod streamed;
mod tables;
pub mod validate;

pub use spec::{Spec, SpecError};
