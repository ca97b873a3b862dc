//! The one seeded generator of ebb's tests: xoshiro256** seeded through
//! splitmix64, so one `u64` seed fixes every choice. The simulator seeds it
//! with its run seed; the fuzz bodies seed it from a hash of their input
//! ([`Rng::from_input`]), so one input always gives the same run.

use std::time::Duration;

/// A small, fast, seeded PRNG (xoshiro256**).
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose whole stream is fixed by `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut state = seed;
        let s = [
            splitmix(&mut state),
            splitmix(&mut state),
            splitmix(&mut state),
            splitmix(&mut state),
        ];
        Rng { s }
    }

    /// A generator seeded with a hash (FNV-1a) of `data` and a `salt`: the
    /// fuzz bodies derive every choice the input does not spell out this
    /// way, with a different salt for each independent stream of choices.
    pub fn from_input(data: &[u8], salt: u64) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Rng::new(h ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// An index uniform in `0..len` (0 when `len` is 0).
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// True with probability 1/`n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// Uniform in `lo..=hi`, for sizes.
    pub fn size(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as u64, hi as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Log-uniform between `lo` and `hi` (both at least 1): small and large
    /// values are equally likely orders of magnitude.
    pub fn log(&mut self, lo: u64, hi: u64) -> u64 {
        let (l, h) = ((lo.max(1) as f64).ln(), (hi.max(lo).max(1) as f64).ln());
        let x = l + (h - l) * (self.below(1 << 53) as f64 / (1u64 << 53) as f64);
        (x.exp() as u64).clamp(lo, hi.max(lo))
    }

    /// A log-uniform duration between `lo` and `hi` microseconds.
    pub fn micros(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_micros(self.log(lo, hi))
    }

    /// A uniform duration in `0..=max`.
    pub fn upto(&mut self, max: Duration) -> Duration {
        Duration::from_nanos(self.below(max.as_nanos() as u64 + 1))
    }

    /// An index chosen with probability proportional to its weight; `None`
    /// when every weight is zero.
    pub fn weighted(&mut self, weights: &[u32]) -> Option<usize> {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total);
        if total == 0 {
            return None;
        }
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return Some(i);
            }
            x -= u64::from(w);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_stream_and_ranges_hold() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let r = a.range(3, 9);
            assert!((3..=9).contains(&r));
            b.range(3, 9);
            let l = a.log(10, 10_000);
            assert!((10..=10_000).contains(&l));
            b.log(10, 10_000);
        }
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
        assert_eq!(Rng::new(1).weighted(&[0, 5, 0]), Some(1));
        assert_eq!(Rng::new(1).weighted(&[0, 0]), None);
    }

    #[test]
    fn input_and_salt_fix_the_stream() {
        let mut a = Rng::from_input(b"GET / HTTP/1.1\r\n\r\n", 1);
        let mut b = Rng::from_input(b"GET / HTTP/1.1\r\n\r\n", 1);
        let first = a.next_u64();
        assert_eq!(first, b.next_u64());
        assert_ne!(
            first,
            Rng::from_input(b"GET / HTTP/1.1\r\n\r\n", 2).next_u64()
        );
        assert_ne!(
            first,
            Rng::from_input(b"GET / HTTP/1.0\r\n\r\n", 1).next_u64()
        );
        for len in [1, 2, 7, 1000] {
            assert!(a.index(len) < len);
        }
        assert_eq!(a.index(0), 0);
        assert!(a.one_in(1));
    }
}
