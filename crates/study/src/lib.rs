//! The study runner: a TOML spec of one study ([`spec`]) is planned into a
//! graph of stages keyed by hashes of their inputs ([`plan`]), run by an
//! executor into a stage cache, and summarised in `results.json`.

pub mod harvest;
pub mod sources;
