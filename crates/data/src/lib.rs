//! Data side of saelab: text corpora, packing text into token rows, and the
//! on-disk activation store that SAE training streams from.
//!
//! This crate knows nothing of the language model: tokenization is passed in
//! as a closure, and the store takes activations as plain `f32` slices.

pub mod corpus;
pub mod packing;
pub mod store;
