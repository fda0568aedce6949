//! The harvest loop (placeholder: moved from `crates/cli/src/harvest.rs`).
