//! Wall time of each phase of a training step or a forward pass, for
//! profiling (issue #12: where the time goes besides the dense products).
//! Off unless the flag's environment variable is set
//! (`SAELAB_STEP_TIMES`, `SAELAB_FORWARD_TIMES`); then every step or
//! forward pass prints one line to stderr,
//! `step phases (ms): encode 120.1, select 30.2, …; total 300.0`. A phase
//! marked several times (one per layer in a forward pass) is summed, in the
//! order of its first mark. When off, a mark costs one branch on a cached
//! flag.

use std::sync::OnceLock;
use std::time::Instant;

/// What is being timed: each has its own environment variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timed {
    /// An SAE training step (`SAELAB_STEP_TIMES`).
    Step,
    /// A language-model forward pass (`SAELAB_FORWARD_TIMES`).
    Forward,
}

impl Timed {
    /// Whether its times are printed (read once per process).
    fn enabled(self) -> bool {
        static STEP: OnceLock<bool> = OnceLock::new();
        static FORWARD: OnceLock<bool> = OnceLock::new();
        let (cell, var) = match self {
            Timed::Step => (&STEP, "SAELAB_STEP_TIMES"),
            Timed::Forward => (&FORWARD, "SAELAB_FORWARD_TIMES"),
        };
        *cell.get_or_init(|| std::env::var_os(var).is_some())
    }

    fn label(self) -> &'static str {
        match self {
            Timed::Step => "step",
            Timed::Forward => "forward",
        }
    }
}

/// Times consecutive phases of one step or pass.
pub struct PhaseTimes {
    what: Timed,
    /// Start of the current phase; `None` when timing is off.
    last: Option<Instant>,
    /// (phase, milliseconds), in the order of each phase's first mark.
    parts: Vec<(&'static str, f64)>,
}

impl PhaseTimes {
    /// Starts timing the first phase (a no-op when timing is off).
    pub fn start(what: Timed) -> Self {
        PhaseTimes {
            what,
            last: what.enabled().then(Instant::now),
            parts: Vec::new(),
        }
    }

    /// Ends the current phase under `name` (added to the earlier phases of
    /// that name) and starts the next.
    pub fn mark(&mut self, name: &'static str) {
        if let Some(last) = self.last {
            let now = Instant::now();
            self.add(name, now.duration_since(last).as_secs_f64() * 1e3);
            self.last = Some(now);
        }
    }

    fn add(&mut self, name: &'static str, ms: f64) {
        match self.parts.iter_mut().find(|p| p.0 == name) {
            Some(p) => p.1 += ms,
            None => self.parts.push((name, ms)),
        }
    }

    /// Appends the phases of a nested timer (e.g. the pass inside a step).
    pub fn extend(&mut self, inner: PhaseTimes) {
        for (name, ms) in inner.parts {
            self.add(name, ms);
        }
        if self.last.is_some() {
            self.last = Some(Instant::now());
        }
    }

    /// The phases so far, (name, milliseconds).
    pub fn parts(&self) -> &[(&'static str, f64)] {
        &self.parts
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
        eprintln!(
            "{} phases (ms): {}; total {total:.1}",
            self.what.label(),
            list.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_phases_are_summed_in_first_mark_order() {
        let mut t = PhaseTimes {
            what: Timed::Forward,
            last: Some(Instant::now()),
            parts: Vec::new(),
        };
        for _ in 0..3 {
            t.mark("norm");
            t.mark("gemm");
        }
        let names: Vec<_> = t.parts().iter().map(|p| p.0).collect();
        assert_eq!(names, ["norm", "gemm"]);
        let mut inner = PhaseTimes {
            what: Timed::Forward,
            last: Some(Instant::now()),
            parts: vec![("gemm", 1.0), ("attention", 2.0)],
        };
        inner.mark("attention");
        let before = t.parts()[1].1;
        t.extend(inner);
        assert_eq!(t.parts().len(), 3);
        assert!(t.parts()[1].1 >= before + 1.0);
        assert!(t.parts()[2].1 >= 2.0);
    }

    #[test]
    fn a_timer_that_is_off_records_nothing() {
        let mut t = PhaseTimes {
            what: Timed::Step,
            last: None,
            parts: Vec::new(),
        };
        t.mark("encode");
        assert!(t.parts().is_empty());
    }
}
