//! The hash of the labeller's maps keyed by names from reaction's configuration (filters,
//! actions, and the attribution memory of each filter): FNV-1a, unkeyed.
//!
//! Why not std's SipHash: these maps are looked up two or three times per line, and
//! SipHash-1-3 of a `stream.filter` name was ~230 instructions a lookup, ~5 % of the
//! ingest's instructions on the e2e workloads (callgrind). Why an unkeyed hash is safe
//! here: a lookup may be of any text a log line holds, but only names of reaction's
//! configuration (or of the previous run's state file) are ever inserted, so whoever
//! writes the log cannot make a probe sequence longer than the configuration is big.

use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by names from reaction's configuration (see the module documentation).
pub(crate) type NameMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<Fnv>>;

/// FNV-1a, 64 bits, with a final mix so that the high bits (hashbrown's control bytes)
/// depend on every byte too.
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        let h = self.0 ^ (self.0 >> 32);
        h.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (h >> 29)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_inserted_and_not_the_rest() {
        let mut m: NameMap<String, usize> = NameMap::default();
        for i in 0..1000 {
            m.insert(format!("stream{i}.filter"), i);
        }
        for i in 0..1000 {
            assert_eq!(m.get(format!("stream{i}.filter").as_str()), Some(&i));
        }
        assert_eq!(m.get("stream1000.filter"), None);
        assert_eq!(m.get(""), None);
    }

    #[test]
    fn high_bits_vary() {
        // hashbrown takes its control byte from the top 7 bits.
        let tops: std::collections::HashSet<u64> = (0..64)
            .map(|i| {
                let mut h = Fnv::default();
                h.write(format!("s.f{i}").as_bytes());
                h.finish() >> 57
            })
            .collect();
        assert!(tops.len() > 16, "{}", tops.len());
    }
}
