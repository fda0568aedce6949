//! How the analysis runs ([`crate::eval::run`], [`crate::stats::run`]) tell
//! their caller what they do: a one-line plan, token progress, notes such as
//! a corpus running out. The library never prints; the CLI draws a bar, the
//! study runner logs.

/// Receives progress of an analysis run. Every method has a no-op default.
pub trait Progress {
    /// A line for the user (the plan of the run, a warning).
    fn note(&self, _line: &str) {}
    /// Model passes start over `tokens` tokens.
    fn start(&self, _tokens: u64) {}
    /// `tokens` more tokens are done.
    fn advance(&self, _tokens: u64) {}
    /// The passes are over (also called before an error is returned from
    /// the pass loop, so a bar can be cleared).
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
