//! Analysis of trained SAEs: evaluation against the language model
//! ([`eval`]), activation statistics over positions and features
//! ([`stats`]), and feature matching between SAEs ([`matching`]).

pub mod eval;
pub mod matching;
pub mod stats;
