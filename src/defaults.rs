//! Defaults and fixed bounds, in one place, each with why it is what it is. The
//! configuration's `Default` impls (what `defaults` prints) take theirs from here, and the
//! code uses the rest directly.

use std::time::Duration;

/// Self-monitoring log lines of one kind (a reason, a pattern, a command) are written at
/// most once per this period; the next one says how many were suppressed. Enough to see
/// that something keeps happening without a hostile log flooding ours.
pub(crate) const LOG_RATE_LIMIT_PERIOD: Duration = Duration::from_secs(10);
/// At most this many rate-limit keys are remembered (there are a few dozen in practice).
pub(crate) const LOG_RATE_LIMIT_KEYS: usize = 1024;
