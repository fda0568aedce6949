//! Errors of the feature-matching library.
//!
//! Every message names the SAE (by the label the caller passed) and the
//! tensor involved, so a user comparing a grid of SAEs can tell which file
//! is at fault.

use thiserror::Error;

/// Result alias of the matching library.
pub type Result<T> = std::result::Result<T, MatchError>;

/// What can go wrong when comparing two SAEs.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum MatchError {
    /// The two vector sets live in spaces of different dimension (e.g. SAEs
    /// trained on different model widths d).
    #[error(
        "cannot compare {what}: {label_a} has dimension {dim_a}, {label_b} has dimension {dim_b}"
    )]
    DimensionMismatch {
        /// What was compared ("decoder features", "encoder neurons", ...).
        what: String,
        /// Label of the first SAE.
        label_a: String,
        /// Its vector dimension.
        dim_a: usize,
        /// Label of the second SAE.
        label_b: String,
        /// Its vector dimension.
        dim_b: usize,
    },
    /// A weight tensor holds NaN or ±inf.
    #[error("{label}: {tensor} holds a non-finite value ({value}) at row {row}, column {col}")]
    NonFinite {
        /// Label of the SAE.
        label: String,
        /// Tensor name as the user knows it (`W_dec`, `W_enc`).
        tensor: &'static str,
        /// Row of the offending value in the tensor's own layout.
        row: usize,
        /// Column of the offending value.
        col: usize,
        /// The value, for the message.
        value: f32,
    },
    /// A buffer does not have the length its shape implies.
    #[error("{what}: expected {expected} values, got {got}")]
    Shape {
        /// What was being built.
        what: String,
        /// Length implied by the shape.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A cost or similarity matrix handed to an assignment solver holds NaN
    /// or ±inf.
    #[error("assignment input holds a non-finite value at row {row}, column {col}")]
    NonFiniteCost {
        /// Row of the value.
        row: usize,
        /// Column of the value.
        col: usize,
    },
    /// The (sparse) assignment problem has no matching that covers every row
    /// of the smaller side.
    #[error("assignment infeasible: row {row} cannot be matched with the available edges")]
    Infeasible {
        /// A row for which no augmenting path exists.
        row: usize,
    },
}
