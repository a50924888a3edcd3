//! Fault injection for the tests of the real binary, in debug builds only: the release
//! build (the Debian package, the container, `cargo install`) compiles [`armed`] to `false`,
//! so no input, file or variable reaches it in production.
//!
//! `REACTION_METRICS_EXPORTER_FAULT=ingest` makes the ingest task panic at its first batch
//! while it holds the labeller's lock (poisoning it, as the `hold` overflow of issue 8 did):
//! `tests/hostile.rs` checks that the process then exits non-zero, so that systemd's
//! `Restart=on-failure` restarts it. `=otlp` makes the OTLP push's collection panic: the
//! push is a core task too (`a_dead_otlp_push_ends_the_process_with_an_error`).

/// The variable naming the core task to fail.
#[cfg(debug_assertions)]
const VARIABLE: &str = "REACTION_METRICS_EXPORTER_FAULT";

/// Whether the test asked `task` to fail (read once, when the task starts).
#[cfg(debug_assertions)]
pub(crate) fn armed(task: &str) -> bool {
    std::env::var(VARIABLE).is_ok_and(|v| v == task)
}

/// Release builds: never.
#[cfg(not(debug_assertions))]
pub(crate) const fn armed(_task: &str) -> bool {
    false
}
