//! A zero-initialised f32 buffer whose start is 64-byte aligned: the AMX
//! path loads and stores its output tiles straight from and to `y`, and a
//! tile whose 16 rows straddle cache lines costs several times an aligned
//! one (bench/RESULTS.md, session 9). A plain `Vec<f32>` of more than
//! 128 KiB comes from `mmap` and starts 16 bytes past a page boundary, so
//! the forward pass and the SAE step allocate their product outputs here.
//!
//! [`take`] / [`give`] keep a small per-thread pool of them, so a forward
//! pass does not fault in ~60 MB of fresh pages on every call (≈ 25 ms of
//! a 300 ms bf16 SmolLM2 batch on the Xeon; bench/RESULTS.md, session 9).

use std::ops::{Deref, DerefMut};

/// One cache line of f32.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// `len` f32, zeroed, starting on a 64-byte boundary; derefs to `[f32]`.
#[derive(Clone, Default)]
pub struct AlignedF32 {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedF32 {
    /// `len` zeros.
    pub fn zeros(len: usize) -> Self {
        AlignedF32 {
            lines: vec![Line([0.0; 16]); len.div_ceil(16)],
            len,
        }
    }
}

thread_local! {
    static POOL: std::cell::RefCell<Vec<AlignedF32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers kept per thread at most.
const POOL_MAX: usize = 16;

/// A buffer of `len` f32 from this thread's pool (one of exactly that
/// size, else a new zeroed one). A reused buffer holds the values its
/// last user left: callers overwrite every element before reading it.
pub fn take(len: usize) -> AlignedF32 {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        match pool.iter().position(|b| b.len == len) {
            Some(i) => pool.swap_remove(i),
            None => AlignedF32::zeros(len),
        }
    })
}

/// Returns buffers to this thread's pool (the oldest are dropped beyond
/// a few).
pub fn give(bufs: impl IntoIterator<Item = AlignedF32>) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        pool.extend(bufs);
        let extra = pool.len().saturating_sub(POOL_MAX);
        pool.drain(..extra);
    })
}

impl Deref for AlignedF32 {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: `Line` is `repr(C)` around `[f32; 16]` (size 64 = its
        // alignment, no padding): the lines are one run of initialised
        // f32, at least `len` long.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.len) }
    }
}

impl DerefMut for AlignedF32 {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), self.len) }
    }
}

impl std::fmt::Debug for AlignedF32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedF32")
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_hands_back_a_buffer_of_the_asked_size() {
        let mut a = take(1000);
        a[999] = 5.0;
        let ptr = a.as_ptr();
        give([a, AlignedF32::zeros(7)]);
        let b = take(1000);
        assert_eq!((b.len(), b.as_ptr(), b[999]), (1000, ptr, 5.0));
        let c = take(1001);
        assert_eq!(c.len(), 1001);
        assert_ne!(c.as_ptr(), ptr);
        give((0..2 * POOL_MAX).map(AlignedF32::zeros));
        POOL.with(|p| assert_eq!(p.borrow().len(), POOL_MAX));
    }

    #[test]
    fn starts_aligned_and_holds_len_zeros() {
        for len in [0, 1, 15, 16, 17, 100_000] {
            let mut v = AlignedF32::zeros(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.0));
            if len > 0 {
                assert_eq!(v.as_ptr() as usize % 64, 0);
                v[len - 1] = 2.0;
                assert_eq!(v[len - 1], 2.0);
            }
        }
    }
}
