//! Memory freed by a scrape, given back to the system at once, and memory a scrape is
//! about to read, asked for early (issue 13).
//!
//! The binary's allocator is jemalloc (`src/main.rs`), which gives back memory freed for a
//! second from a background thread. A scrape frees the SDK's collection output (every point
//! with its attribute list) before it renders the page: given back only after that second,
//! those pages are still resident while the page is rendered, and the scrape's peak is both
//! at once. [`release_freed`] gives them back before the render. Measured with
//! `benches/e2e.rs`: see `benches/README.md`.

/// Give every jemalloc arena's freed (dirty) pages back to the system now. In a program
/// whose allocator is not jemalloc (the library's tests and benchmarks), jemalloc's arenas
/// hold nothing and this does nothing.
pub(crate) fn release_freed() {
    #[cfg(target_os = "linux")]
    {
        // `arena.<i>.purge` with i = MALLCTL_ARENAS_ALL (4096): every arena. A failure
        // (an allocator without the control) leaves the pages to the background thread.
        // SAFETY: a NUL-terminated name, and no old or new value (null pointers, length 0),
        // which this control takes.
        let _ = unsafe {
            tikv_jemalloc_sys::mallctl(
                c"arena.4096.purge".as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
    }
}

/// Ask the CPU to bring the start of `data` into its caches: a loop over many scattered
/// small values (a scrape's series) reads one while the next ones load, instead of waiting
/// for each in turn. Only a hint: nothing else happens, on any CPU.
#[inline]
pub(crate) fn prefetch<T: ?Sized>(data: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has, and never faults
        // (it reads nothing the program sees; `data` is a live reference anyway).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(data).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

#[cfg(test)]
mod tests {
    #[test]
    fn releasing_without_jemalloc_as_the_allocator_is_harmless() {
        let v = vec![0u8; 1 << 20];
        drop(v);
        super::release_freed();
        super::release_freed();
    }

    #[test]
    fn prefetching_changes_nothing() {
        let s = String::from("abc");
        super::prefetch(s.as_str());
        super::prefetch(&[0u64; 0][..]);
        assert_eq!(s, "abc");
    }
}
