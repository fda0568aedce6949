//! Wall time of each phase of a training step, for profiling (issue #12:
//! where the step's time goes besides the encoder product). Off unless
//! `SAELAB_STEP_TIMES` is set in the environment; then every step prints
//! one line to stderr, `step phases (ms): encode 120.1, select 30.2, …`.
//! When off, a mark costs one branch on a cached flag.

use std::sync::OnceLock;
use std::time::Instant;

/// Whether phase times are printed (read once per process).
fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SAELAB_STEP_TIMES").is_some())
}

/// Times consecutive phases of one step.
pub struct PhaseTimes {
    /// Start of the current phase; `None` when timing is off.
    last: Option<Instant>,
    /// (phase, milliseconds) in order.
    parts: Vec<(&'static str, f64)>,
}

impl PhaseTimes {
    /// Starts timing the first phase (a no-op when timing is off).
    pub fn start() -> Self {
        PhaseTimes {
            last: enabled().then(Instant::now),
            parts: Vec::new(),
        }
    }

    /// Ends the current phase under `name` and starts the next.
    pub fn mark(&mut self, name: &'static str) {
        if let Some(last) = self.last {
            let now = Instant::now();
            self.parts
                .push((name, now.duration_since(last).as_secs_f64() * 1e3));
            self.last = Some(now);
        }
    }

    /// Appends the phases of a nested timer (e.g. the pass inside a step).
    pub fn extend(&mut self, inner: PhaseTimes) {
        self.parts.extend(inner.parts);
        if self.last.is_some() {
            self.last = Some(Instant::now());
        }
    }

    /// Prints the line (when timing is on).
    pub fn print(&self) {
        if self.last.is_none() {
            return;
        }
        let total: f64 = self.parts.iter().map(|p| p.1).sum();
        let list: Vec<String> = self
            .parts
            .iter()
            .map(|(n, ms)| format!("{n} {ms:.1}"))
            .collect();
        eprintln!("step phases (ms): {}; total {total:.1}", list.join(", "));
    }
}
