//! Batch sources for training (placeholder: store-backed source for `saelab_sae::sweep`).
