//! A seeded, structure-aware mutator: byte-level changes, plus insertions of the target's
//! own tokens (its dictionary), repeats of a part (long or deeply nested inputs) and
//! splices of two corpus entries. Deterministic for a seed, so a run can be repeated.

/// SplitMix64: small, fast, and good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True once in `n` times.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Bytes that matter to most of our formats (quotes, escapes, brackets, separators, line
/// ends, the starts of multi-byte UTF-8 and invalid UTF-8).
const SPECIAL: &[u8] =
    b"\"\\[]{}(),:;. -_\n\r\t\0\x1b'#&*!|>%{}\x7f\x80\xbf\xc0\xc3\xe2\xf0\xf4\xff0123456789eu";

/// Numbers at the edges of the types the parsers read into.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "255",
    "256",
    "65535",
    "2147483647",
    "-2147483648",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e300",
    "-1e300",
    "1e-300",
    "0.5",
    "NaN",
    ".nan",
    ".inf",
    "-.inf",
    "0x10",
    "1_000",
];

/// Mutates `input` in place, 1 to 8 times; `dictionary` holds the target's tokens and
/// `corpus` other inputs to splice from. The result is cut to `max_len` bytes.
pub fn mutate(
    rng: &mut Rng,
    input: &mut Vec<u8>,
    dictionary: &[&[u8]],
    corpus: &[Vec<u8>],
    max_len: usize,
) {
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        let len = input.len();
        match rng.below(12) {
            // Flip a bit.
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            // Set a byte: random or special.
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = if rng.one_in(2) {
                    rng.next_u64() as u8
                } else {
                    SPECIAL[rng.below(SPECIAL.len())]
                };
            }
            // Insert a special byte.
            2 => {
                let i = rng.below(len + 1);
                input.insert(i, SPECIAL[rng.below(SPECIAL.len())]);
            }
            // Delete a range.
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                input.drain(i..i + n);
            }
            // Insert a token of the target.
            4 | 5 if !dictionary.is_empty() => {
                let token = dictionary[rng.below(dictionary.len())];
                let i = rng.below(len + 1);
                input.splice(i..i, token.iter().copied());
            }
            // Replace a range by a token of the target.
            6 if !dictionary.is_empty() && len > 0 => {
                let token = dictionary[rng.below(dictionary.len())];
                let i = rng.below(len);
                let n = rng.below((len - i).min(8) + 1);
                input.splice(i..i + n, token.iter().copied());
            }
            // Insert an edge number.
            7 => {
                let number = NUMBERS[rng.below(NUMBERS.len())].as_bytes();
                let i = rng.below(len + 1);
                input.splice(i..i, number.iter().copied());
            }
            // Repeat a part: long values, deep nesting.
            8 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let part: Vec<u8> = input[i..i + n].to_vec();
                let most = if rng.one_in(8) { 256 } else { 8 };
                let times = 1 + rng.below(most);
                let at = i + n;
                input.splice(at..at, part.iter().copied().cycle().take(n * times));
            }
            // Splice: this input's head with another's tail.
            9 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            // Copy a range to another place.
            10 if len > 1 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let part: Vec<u8> = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, part);
            }
            // Truncate.
            _ if len > 0 => input.truncate(rng.below(len)),
            _ => input.push(SPECIAL[rng.below(SPECIAL.len())]),
        }
    }
    input.truncate(max_len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_mutations() {
        let run = |seed| {
            let mut rng = Rng::new(seed);
            let mut input = b"INFO a.b: match [\"x\"]".to_vec();
            let corpus = vec![b"[\"y\", \"z\"]".to_vec()];
            for _ in 0..1000 {
                mutate(&mut rng, &mut input, &[b"\\u{", b"\", \""], &corpus, 256);
                assert!(input.len() <= 256);
            }
            input
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn below_stays_below() {
        let mut rng = Rng::new(1);
        for n in [1, 2, 3, 10, 1000] {
            assert!((0..10_000).all(|_| rng.below(n) < n));
        }
        assert_eq!(rng.below(0), 0);
    }
}
