//! A small per-thread pool of scratch buffers of any type, so the forward
//! pass does not fault in tens of MB of fresh pages on every call (≈ 25 ms
//! of a 300 ms bf16 SmolLM2 batch on the Xeon; bench/RESULTS.md, session
//! 9). A taken buffer holds what its last user left in it: callers
//! overwrite every element before reading it.

use std::any::Any;
use std::cell::RefCell;

thread_local! {
    static POOL: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept per thread at most (the oldest go first).
const POOL_MAX: usize = 16;

/// A pooled `T` for which `fits` holds, if this thread has one.
pub fn take<T: 'static>(fits: impl Fn(&T) -> bool) -> Option<T> {
    POOL.with_borrow_mut(|pool| {
        let i = pool
            .iter()
            .position(|b| b.downcast_ref::<T>().is_some_and(&fits))?;
        pool.remove(i).downcast::<T>().ok().map(|b| *b)
    })
}

/// Returns buffers to this thread's pool.
pub fn give<T: 'static>(bufs: impl IntoIterator<Item = T>) {
    POOL.with_borrow_mut(|pool| {
        pool.extend(bufs.into_iter().map(|b| Box::new(b) as Box<dyn Any>));
        let extra = pool.len().saturating_sub(POOL_MAX);
        pool.drain(..extra);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_back_only_a_buffer_that_fits_and_of_its_type() {
        give([vec![1u8; 10], vec![2u8; 20]]);
        give([vec![3u16; 10]]);
        assert_eq!(take(|v: &Vec<u8>| v.len() == 20), Some(vec![2u8; 20]));
        assert_eq!(take(|v: &Vec<u8>| v.len() == 20), None);
        assert_eq!(take(|v: &Vec<u16>| v.len() == 10), Some(vec![3u16; 10]));
        assert_eq!(take(|v: &Vec<u8>| v.len() == 10), Some(vec![1u8; 10]));
        give((0..2 * POOL_MAX).map(|i| vec![0u32; i]));
        POOL.with_borrow(|p| assert_eq!(p.len(), POOL_MAX));
        // The newest stay.
        assert!(take(|v: &Vec<u32>| v.len() == 2 * POOL_MAX - 1).is_some());
        assert!(take(|v: &Vec<u32>| v.is_empty()).is_none());
    }
}
