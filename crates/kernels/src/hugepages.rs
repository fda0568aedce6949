//! A global allocator that backs large buffers with transparent huge pages
//! (2 MiB) on Linux, for the binary and the benchmarks to install with
//! `#[global_allocator]`.
//!
//! Why: the SAE step's sparse kernels gather 3 KB decoder rows from all
//! over W_dec (37.7 MB at n 12288, d 768) and its gradients, and the
//! encoder product stores its output rows 48 KB apart. With 4 KiB pages
//! those walk far past the TLB's reach; with 2 MiB pages W_dec is 19
//! entries. On Debian's default (`transparent_hugepage` = `madvise`) a
//! process only gets huge pages for ranges it asks for with
//! `madvise(MADV_HUGEPAGE)`, and glibc's `malloc` does not ask. Measured in
//! bench/RESULTS.md (session 12): the f32 TopK step with AuxK on 5–6 %
//! faster, AuxK off 2–4 %; the harvest forward unchanged.
//!
//! How: an allocation of at least [`HUGE_MIN_BYTES`] is its own anonymous
//! `mmap`, trimmed to start on a 2 MiB boundary and rounded up to whole
//! 2 MiB pages, then advised. The kernel hands out zeroed pages, so a zeroed
//! allocation costs nothing extra. Smaller ones, alignments above 2 MiB and
//! every allocation when `SAELAB_HUGEPAGES=off` (or `0`) go to
//! [`std::alloc::System`]. A large block grows or shrinks by `mremap`
//! (no copy, as glibc's `realloc` of a mapped block), so a `Vec` that
//! keeps growing does not copy itself each time. If the kernel refuses
//! the advice (huge pages `never`) the memory is simply 4 KiB pages.
//! Nothing here changes a computed bit: only where memory lives.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations of at least this many bytes get huge pages.
pub const HUGE_MIN_BYTES: usize = 4 << 20;

/// The huge page size on x86-64 Linux.
const HUGE_PAGE: usize = 2 << 20;

/// [`System`], with allocations of [`HUGE_MIN_BYTES`] or more on huge
/// pages (see the module doc).
pub struct HugePageAlloc;

/// Whether `layout` is served by [`huge::map`] (on Linux, when enabled).
fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_MIN_BYTES && layout.align() <= HUGE_PAGE && huge::enabled()
}

// SAFETY: every block is either System's (passed back to System) or a
// mapping of `huge::map` (unmapped by `huge::unmap` with the same length);
// which one is decided by `is_huge` on the block's layout, and
// `huge::enabled` never changes once read, so alloc and dealloc agree.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            huge::map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Fresh anonymous pages are zero.
            huge::map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from `huge::map(layout.size())`.
            unsafe { huge::unmap(ptr, layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` and `layout.align()`
        // form a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if is_huge(&layout) && is_huge(&new_layout) {
            if huge::same_span(layout.size(), new_size) {
                // The mapping already covers the new size (whole huge pages).
                return ptr;
            }
            // SAFETY: `ptr` came from `huge::map(layout.size())`.
            let moved = unsafe { huge::remap(ptr, layout.size(), new_size, layout.align()) };
            if !moved.is_null() {
                return moved;
            }
        }
        // SAFETY: `new_layout` is valid and non-zero sized (at least one
        // side is huge, so large).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks hold at least the smaller size and are
            // distinct allocations; the old one is live until freed here.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(target_os = "linux")]
mod huge {
    use super::HUGE_PAGE;
    use std::sync::atomic::{AtomicU8, Ordering};

    /// 0: not read yet; 1: on; 2: off.
    static STATE: AtomicU8 = AtomicU8::new(0);

    /// Whether huge-page mappings are on: read once from
    /// `SAELAB_HUGEPAGES` (`off` or `0` turns them off), without
    /// allocating (this runs inside the allocator).
    pub(super) fn enabled() -> bool {
        match STATE.load(Ordering::Relaxed) {
            1 => return true,
            2 => return false,
            _ => {}
        }
        // SAFETY: a NUL-terminated name; the returned pointer is only read
        // as a C string before any other environment call of ours.
        let off = unsafe {
            let v = libc::getenv(c"SAELAB_HUGEPAGES".as_ptr());
            !v.is_null() && {
                let s = std::ffi::CStr::from_ptr(v).to_bytes();
                s == b"off" || s == b"0"
            }
        };
        let state = if off { 2 } else { 1 };
        // The first reader's answer wins, so every later call agrees with
        // the blocks already handed out.
        match STATE.compare_exchange(0, state, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => state == 1,
            Err(seen) => seen == 1,
        }
    }

    /// `size` rounded up to whole huge pages.
    fn span(size: usize) -> usize {
        size.div_ceil(HUGE_PAGE) * HUGE_PAGE
    }

    /// Whether blocks of `a` and `b` bytes map the same length.
    pub(super) fn same_span(a: usize, b: usize) -> bool {
        span(a) == span(b)
    }

    /// A zeroed, 2 MiB-aligned anonymous mapping of [`span`]`(size)` bytes,
    /// advised for huge pages; null when the kernel refuses the mapping.
    pub(super) fn map(size: usize) -> *mut u8 {
        let len = span(size);
        let Some(over) = len.checked_add(HUGE_PAGE) else {
            return std::ptr::null_mut();
        };
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // touched.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                over,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        let base = raw as usize;
        let start = base.next_multiple_of(HUGE_PAGE);
        let (head, tail) = (start - base, base + over - (start + len));
        // SAFETY: both ranges lie inside the mapping just made and outside
        // [start, start + len), which is kept; a failed advice only leaves
        // 4 KiB pages.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((start + len) as *mut libc::c_void, tail);
            }
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
        start as *mut u8
    }

    /// The block of [`map`]`(old)` at `ptr` grown or shrunk to `new` bytes
    /// by the kernel (`mremap`: pages move, nothing is copied; the mapping
    /// keeps its huge-page advice, which the tests check); null, with the
    /// block untouched, when `align` is above a page (a moved mapping is
    /// only page aligned) or the kernel refuses.
    ///
    /// # Safety
    /// `ptr` must come from `map(old)`; on success it is no longer valid.
    pub(super) unsafe fn remap(ptr: *mut u8, old: usize, new: usize, align: usize) -> *mut u8 {
        if align > 4096 {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's guarantee: `ptr` maps `span(old)` bytes;
        // MREMAP_MAYMOVE leaves the old mapping intact on failure.
        unsafe {
            let q = libc::mremap(
                ptr as *mut libc::c_void,
                span(old),
                span(new),
                libc::MREMAP_MAYMOVE,
            );
            if q == libc::MAP_FAILED {
                return std::ptr::null_mut();
            }
            q as *mut u8
        }
    }

    /// Unmaps a block of [`map`].
    ///
    /// # Safety
    /// `ptr` must come from `map(size)` and not be used afterwards.
    pub(super) unsafe fn unmap(ptr: *mut u8, size: usize) {
        // SAFETY: the caller's guarantee: exactly the range `map` kept.
        unsafe {
            libc::munmap(ptr as *mut libc::c_void, span(size));
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod huge {
    /// Never on: other systems keep [`std::alloc::System`].
    pub(super) fn enabled() -> bool {
        false
    }
    pub(super) fn same_span(_a: usize, _b: usize) -> bool {
        false
    }
    pub(super) unsafe fn remap(_p: *mut u8, _old: usize, _new: usize, _align: usize) -> *mut u8 {
        std::ptr::null_mut()
    }
    pub(super) fn map(_size: usize) -> *mut u8 {
        std::ptr::null_mut()
    }
    pub(super) unsafe fn unmap(_ptr: *mut u8, _size: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smaps entry of the mapping holding `addr`, if any.
    #[cfg(target_os = "linux")]
    fn smaps_entry(addr: usize) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut current: Option<String> = None;
        for line in smaps.lines() {
            let head = line.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = head.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    if let Some(c) = current.take() {
                        return Some(c);
                    }
                    if (a..b).contains(&addr) {
                        current = Some(String::new());
                    }
                    continue;
                }
            }
            if let Some(c) = current.as_mut() {
                c.push_str(line);
                c.push('\n');
            }
        }
        current
    }

    #[test]
    fn large_blocks_are_aligned_zeroed_and_keep_their_contents() {
        let a = HugePageAlloc;
        let n = HUGE_MIN_BYTES + 12345;
        let layout = Layout::from_size_align(n, 64).unwrap();
        // SAFETY: a valid non-zero layout; every block is freed with the
        // layout it has.
        unsafe {
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null());
            if huge::enabled() {
                assert_eq!(p as usize % HUGE_PAGE, 0, "2 MiB aligned");
            }
            let s = std::slice::from_raw_parts_mut(p, n);
            assert!(s.iter().all(|&b| b == 0), "zeroed");
            for (i, b) in s.iter_mut().enumerate() {
                *b = (i % 251) as u8;
            }
            // Grow, then shrink below the threshold: the contents move.
            let q = a.realloc(p, layout, 3 * n);
            assert!(!q.is_null());
            let s = std::slice::from_raw_parts(q, n);
            assert!(s.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
            let grown = Layout::from_size_align(3 * n, 64).unwrap();
            let r = a.realloc(q, grown, 1000);
            let s = std::slice::from_raw_parts(r, 1000);
            assert!(s.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
            a.dealloc(r, Layout::from_size_align(1000, 64).unwrap());
        }
    }

    #[test]
    fn small_blocks_grow_into_huge_ones() {
        let a = HugePageAlloc;
        let small = Layout::from_size_align(4096, 8).unwrap();
        // SAFETY: as above.
        unsafe {
            let p = a.alloc(small);
            std::slice::from_raw_parts_mut(p, 4096).fill(7);
            let q = a.realloc(p, small, HUGE_MIN_BYTES);
            let s = std::slice::from_raw_parts(q, HUGE_MIN_BYTES);
            assert!(s[..4096].iter().all(|&b| b == 7));
            a.dealloc(q, Layout::from_size_align(HUGE_MIN_BYTES, 8).unwrap());
        }
    }

    /// The kernel marks the mapping as advised for huge pages (`hg` in
    /// VmFlags), unless this process runs with them switched off.
    #[cfg(target_os = "linux")]
    #[test]
    fn large_blocks_are_advised_for_huge_pages() {
        if !huge::enabled() {
            return;
        }
        let a = HugePageAlloc;
        let layout = Layout::from_size_align(HUGE_MIN_BYTES, 64).unwrap();
        // SAFETY: as above.
        unsafe {
            let p = a.alloc(layout);
            std::slice::from_raw_parts_mut(p, HUGE_MIN_BYTES).fill(1);
            // Grown (moved by mremap, most likely): advised, contents kept.
            let grown = 5 * HUGE_MIN_BYTES;
            let q = a.realloc(p, layout, grown);
            let entry = smaps_entry(q as usize).expect("the block's mapping in smaps");
            let flags = entry
                .lines()
                .find(|l| l.starts_with("VmFlags:"))
                .expect("VmFlags line");
            assert!(flags.split_whitespace().any(|f| f == "hg"), "{flags}");
            assert!(std::slice::from_raw_parts(q, HUGE_MIN_BYTES)
                .iter()
                .all(|&b| b == 1));
            a.dealloc(q, Layout::from_size_align(grown, 64).unwrap());
        }
    }
}
