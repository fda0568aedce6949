//! The offline model and corpora (placeholder: filled by the move of
//! `crates/cli/src/assets.rs`).

// TEMPORARY (lead): the study crate's API needs until the assets move lands.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";
pub fn is_offline_model(s: &str) -> bool {
    matches!(s, "smollm2-135m" | "smollm2-135m-instruct" | "smollm2")
}
pub fn is_offline_corpus(s: &str) -> bool {
    ["email", "speeches", "fiction", "wiki", "code", "docs"].contains(&s)
}
