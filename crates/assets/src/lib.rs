//! The offline model and corpora (placeholder: filled by the move of
//! `crates/cli/src/assets.rs`).
