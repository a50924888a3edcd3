//! Giving freed memory back to the system after a large transient allocation (a scrape).
//!
//! A `/metrics` scrape of N series allocates about its own weight again (the SDK's copy of
//! the collected points, the plain copy the page is made from, the page) and frees it once
//! the page is sent. glibc's malloc keeps what was freed in its arenas: it returns memory to
//! the system only from the top of the main heap, past `M_TRIM_THRESHOLD`, and the scrape's
//! buffers sit between the series that stay (issue 13 measured RSS staying at 1.75× its
//! value before the scrape, 5 s after it). `malloc_trim(0)` walks every arena and gives back
//! each whole free page (`MADV_DONTNEED`), wherever it is. It takes the arenas' locks and
//! costs time proportional to the heap, so it runs once per delivered or abandoned page, on
//! a blocking thread, a moment after the page is dropped (so that what the connection still
//! held is freed by then), never on the ingest path. benches/README.md has the
//! measurements that chose this over another allocator.

use std::time::Duration;

/// How long after a page is dropped the trim runs: the connection drops the last chunks it
/// was writing and the delivery frees the page's counts in the meantime.
const DELAY: Duration = Duration::from_millis(100);

/// Give freed memory back to the system soon, off the runtime's threads. Does nothing
/// outside a Tokio runtime (tests dropping a page by hand) and without glibc.
pub(crate) fn release_soon() {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async {
        tokio::time::sleep(DELAY).await;
        let _ = tokio::task::spawn_blocking(release_now).await;
    });
}

/// Give freed memory back to the system now; returns how long it took.
pub(crate) fn release_now() -> Duration {
    let t = std::time::Instant::now();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim has no preconditions; it only releases free pages.
        let _ = unsafe { libc::malloc_trim(0) };
    }
    let took = t.elapsed();
    tracing::debug!(ms = took.as_secs_f64() * 1e3, "freed memory given back");
    took
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the trim is for: a large freed allocation that glibc kept (below
    /// `M_MMAP_THRESHOLD` pieces, so in the heap) is given back.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trim_gives_freed_heap_memory_back() {
        fn rss() -> u64 {
            let s = std::fs::read_to_string("/proc/self/statm").unwrap();
            let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
            pages * 4096
        }
        // 64 MiB in 64 KiB pieces (under the 128 KiB mmap threshold: heap memory), with a
        // small piece kept after each so that the freed ones are not at the top of the heap.
        let mut big = Vec::new();
        let mut kept = Vec::new();
        for _ in 0..1024 {
            big.push(vec![1u8; 64 * 1024]);
            kept.push(vec![1u8; 16]);
        }
        let with = rss();
        drop(big);
        release_now();
        let after = rss();
        assert!(
            with - after.min(with) > 32 * 1024 * 1024,
            "RSS {with} before the trim, {after} after"
        );
        drop(kept);
    }
}
