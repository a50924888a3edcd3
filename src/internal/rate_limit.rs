//! At most one log line per key and period; the next one logged says how many were
//! suppressed. Keys are few (a reason, a pattern name, a command); the map is pruned of
//! keys idle for a period when it reaches its bound, so it stays small whatever happens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct RateLimit {
    period: Duration,
    max_keys: usize,
    /// Key → (when its last line was logged, lines suppressed since).
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl RateLimit {
    pub(crate) fn new(period: Duration, max_keys: usize) -> RateLimit {
        RateLimit {
            period,
            max_keys,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Some(lines suppressed since the last one logged) when a line of `key` may be logged.
    pub(crate) fn allow(&self, key: &str) -> Option<u64> {
        let mut seen = self.seen.lock().expect("rate limit");
        let now = Instant::now();
        match seen.get_mut(key) {
            Some((last, suppressed)) if now.duration_since(*last) < self.period => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                let n = *suppressed;
                *last = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                if seen.len() >= self.max_keys {
                    let period = self.period;
                    seen.retain(|_, (last, _)| now.duration_since(*last) < period);
                }
                if seen.len() < self.max_keys {
                    seen.insert(key.to_string(), (now, 0));
                }
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_and_period_counting_the_suppressed() {
        let r = RateLimit::new(Duration::from_millis(50), 100);
        assert_eq!(r.allow("a"), Some(0));
        assert_eq!(r.allow("a"), None);
        assert_eq!(r.allow("a"), None);
        assert_eq!(r.allow("b"), Some(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(r.allow("a"), Some(2));
    }

    #[test]
    fn the_keys_are_bounded() {
        let r = RateLimit::new(Duration::from_secs(3600), 4);
        for i in 0..100 {
            assert_eq!(r.allow(&i.to_string()), Some(0));
        }
        assert!(r.seen.lock().unwrap().len() <= 4);
    }
}
