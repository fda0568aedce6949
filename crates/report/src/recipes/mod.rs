//! Figure recipes: which series and panels make each command's figures,
//! as functions over typed results (`saelab_analysis`'s, or plain data).

pub mod convergence;
pub mod eval;
pub mod matching;
pub mod stats;
