//! A zero-initialised f32 buffer whose start is 64-byte aligned: the AMX
//! path loads and stores its output tiles straight from and to `y`, and a
//! tile whose 16 rows straddle cache lines costs several times an aligned
//! one (bench/RESULTS.md, session 9). A plain `Vec<f32>` of more than
//! 128 KiB comes from `mmap` and starts 16 bytes past a page boundary, so
//! the forward pass and the SAE step allocate their product outputs here.
//! [`take`] / [`give`] go through the per-thread [`crate::pool`].

use std::ops::{Deref, DerefMut};

/// One cache line of f32 (also the unit of `f32gemm`'s packed panels).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [f32; 16]);

// SAFETY: `repr(C)` around `[f32; 16]`: 64 bytes at alignment 64, so no
// padding, and every bit pattern is a valid value.
unsafe impl bytemuck::Zeroable for Line {}
// SAFETY: as above.
unsafe impl bytemuck::Pod for Line {}

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

/// A buffer of `len` f32 from this thread's pool ([`crate::pool`]; one
/// of exactly that size, its contents stale), else a new zeroed one.
pub fn take(len: usize) -> AlignedF32 {
    crate::pool::take(|b: &AlignedF32| b.len == len).unwrap_or_else(|| AlignedF32::zeros(len))
}

/// Returns buffers to this thread's pool.
pub fn give(bufs: impl IntoIterator<Item = AlignedF32>) {
    crate::pool::give(bufs)
}

impl Deref for AlignedF32 {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &bytemuck::cast_slice(&self.lines)[..self.len]
    }
}

impl DerefMut for AlignedF32 {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut bytemuck::cast_slice_mut(&mut self.lines)[..self.len]
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
    fn take_gives_back_a_pooled_buffer_of_the_asked_size() {
        let mut a = take(1000);
        a[999] = 5.0;
        let ptr = a.as_ptr();
        give([a]);
        let b = take(1000);
        assert_eq!((b.len(), b.as_ptr(), b[999]), (1000, ptr, 5.0));
        assert_eq!(take(1001).len(), 1001);
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
