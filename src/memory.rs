//! Memory freed by a scrape or a backlog, given back to the system at once, and memory a
//! scrape is about to read, asked for early (issue 13).
//!
//! The binary's allocator is jemalloc (`src/main.rs`), which gives back memory freed for a
//! second from a background thread. Given back only after that second, what a scrape frees
//! before it writes the page (the SDK's collection output, every point with its attribute
//! list; the sort's rows) is still resident while the page is written, and the scrape's
//! peak is both at once; what a backlog's batches freed is still resident at a scrape right
//! after it. [`release_freed`] gives them back at those points. Measured with
//! `benches/e2e.rs`: see `benches/README.md`.
//!
//! Freeing is not free either: dropping a collection of 600,000 points takes about 70 ms
//! (`perf`: an attribute list and a shared string per point, scattered over the heap).
//! [`drop_aside`] does it on another thread, then gives its pages back, while the scrape
//! goes on.

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

/// Drop `value` on one of the runtime's blocking threads, then give the pages it freed back
/// (see [`release_freed`]), so that the caller (a scrape, its response) does not wait for
/// it. Outside a runtime, or when the runtime is shutting down, it is dropped here.
pub(crate) fn drop_aside<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            // A runtime shutting down drops the closure, and `value` with it, unrun.
            rt.spawn_blocking(move || {
                drop(value);
                release_freed();
            });
        }
        Err(_) => {
            drop(value);
            release_freed();
        }
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

    /// Sends on its channel when dropped, and on which thread.
    struct Dropped(std::sync::mpsc::Sender<std::thread::ThreadId>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().id());
        }
    }

    #[test]
    fn a_value_dropped_aside_is_dropped_on_another_thread_in_a_runtime_and_here_without() {
        let (tx, rx) = std::sync::mpsc::channel();
        super::drop_aside(Dropped(tx.clone()));
        assert_eq!(
            rx.try_recv(),
            Ok(std::thread::current().id()),
            "no runtime: here"
        );

        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { super::drop_aside(Dropped(tx)) });
        let on = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("dropped");
        assert_ne!(
            on,
            std::thread::current().id(),
            "in a runtime: a blocking thread"
        );
    }

    #[test]
    fn prefetching_changes_nothing() {
        let s = String::from("abc");
        super::prefetch(s.as_str());
        super::prefetch(&[0u64; 0][..]);
        assert_eq!(s, "abc");
    }
}
