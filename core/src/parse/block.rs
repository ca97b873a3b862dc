//! A chunk of a head's bytes classified at once, for [`super::fields`];
//! and the run of a long target's bytes, a chunk at a time, for
//! [`super::line`].
//!
//! A field's name and value end at the first byte outside a class. Found a
//! byte (or a table lookup) at a time, that was most of the cost of a head;
//! with SSE2 — part of every x86_64 target — one compare covers 16 bytes
//! and `pmovmskb` turns the result into a bit per byte. Portable code cannot
//! get LLVM to emit that last step (a mask built without it went through
//! the stack and was slower than the byte loops), hence the `unsafe` calls
//! below. Where the CPU has AVX2 (found at run time: a build for any
//! x86_64 runs on CPUs without it), one compare covers the whole chunk,
//! and the classes cost a third of the instructions. Other targets find
//! the same classes a byte at a time; the tests check that every way
//! agrees on every byte in every position.

use crate::byteset::short_run_of;

/// Bytes classified at once: two SSE2 vectors, or one AVX2 vector. 64 cost
/// more than they saved on short heads, such as `Host` alone, either way.
pub(super) const CHUNK: usize = 32;

/// Bit `i` of each mask is set when byte `i` of the chunk is in the class.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) struct Classes {
    /// Outside visible ASCII and space (0x20 to 0x7e): controls, CR and LF
    /// among them, DEL and every byte from 0x80. A simple value ends at the
    /// first.
    pub outside: u32,
    /// ASCII letters, digits and `-`: the bytes of nearly every field name
    /// (all `tchar`s; names with other `tchar`s take the table).
    pub name: u32,
}

/// A way to classify chunks: [`Baseline`], which every build has, or
/// [`Avx2`], proof that the CPU has AVX2. The reading of fields is generic
/// over it, so that each way is compiled into a reader of its own, with
/// the classes inlined.
pub(super) trait Classify: Copy {
    fn classify(self, chunk: &[u8; CHUNK]) -> Classes;
}

/// [`classify`]: SSE2 on x86_64, a byte at a time elsewhere.
#[derive(Copy, Clone, Debug)]
pub(super) struct Baseline;

impl Classify for Baseline {
    #[inline(always)]
    fn classify(self, chunk: &[u8; CHUNK]) -> Classes {
        classify(chunk)
    }
}

/// Proof that the CPU has AVX2: made only by [`Avx2::detect`].
#[cfg(target_arch = "x86_64")]
#[derive(Copy, Clone, Debug)]
pub(super) struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// `Some` when the CPU has AVX2. std remembers the answer: after the
    /// first call, this is a load and a test.
    #[inline(always)]
    pub(super) fn detect() -> Option<Avx2> {
        std::is_x86_feature_detected!("avx2").then_some(Avx2(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl Classify for Avx2 {
    #[inline(always)]
    fn classify(self, chunk: &[u8; CHUNK]) -> Classes {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2, and
        // `avx2::classify` reads no memory but `chunk`.
        unsafe { avx2::classify(chunk) }
    }
}

/// Visible ASCII (`!` to `~`) but a few bytes: what a simple target's
/// path or query is made of (see [`super::line`]).
pub(super) struct VisibleBut {
    /// The set as a table.
    table: [bool; 256],
    /// The visible bytes left out.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    but: &'static [u8],
}

impl VisibleBut {
    pub(super) const fn new(but: &'static [u8]) -> VisibleBut {
        let mut table = [false; 256];
        let mut b = b'!';
        while b <= b'~' {
            table[b as usize] = true;
            b += 1;
        }
        let mut i = 0;
        while i < but.len() {
            table[but[i] as usize] = false;
            i += 1;
        }
        VisibleBut { table, but }
    }

    /// How many bytes at the start of `bytes` are in the set, a table
    /// lookup at a time.
    #[inline(always)]
    fn run_by_table(&self, bytes: &[u8]) -> usize {
        short_run_of(bytes, &self.table)
    }
}

/// How many bytes at the start of `bytes` are in `set`: a table lookup at a
/// time for the first chunk's worth, where nearly every target ends, and
/// past it a chunk at a time where the CPU has AVX2, so that a long target
/// (a query of a few hundred bytes, say) costs a fraction of the lookups.
/// Vectors from the first byte cost the usual short target more than the
/// lookups they save.
#[inline(always)]
pub(super) fn run_of(bytes: &[u8], set: &VisibleBut) -> usize {
    let Some(first) = bytes.get(..CHUNK) else {
        return set.run_by_table(bytes);
    };
    match set.run_by_table(first) {
        CHUNK => CHUNK + long_run_of(&bytes[CHUNK..], set),
        end => end,
    }
}

/// [`run_of`] past its first chunk.
#[inline(never)]
fn long_run_of(bytes: &[u8], set: &VisibleBut) -> usize {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx2) = Avx2::detect() {
        // SAFETY: `avx2` is proof that the CPU has AVX2.
        return unsafe { avx2::run_of(avx2, bytes, set) };
    }
    set.run_by_table(bytes)
}

/// The classes of the bytes of `chunk`.
#[inline]
pub(super) fn classify(chunk: &[u8; CHUNK]) -> Classes {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    // SAFETY: `sse2::classify` needs only SSE2, which this build enables
    // (every x86_64 target does), and reads no memory but `chunk`.
    return unsafe { sse2::classify(chunk) };
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    return bytewise(chunk);
}

/// [`classify`] a byte at a time: the classes' definition, and what other
/// targets use.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn bytewise(chunk: &[u8; CHUNK]) -> Classes {
    let mask = |class: fn(u8) -> bool| {
        chunk
            .iter()
            .enumerate()
            .fold(0, |mask, (i, &b)| mask | (u32::from(class(b)) << i))
    };
    Classes {
        outside: mask(|b| !(0x20..0x7f).contains(&b)),
        name: mask(|b| b.is_ascii_alphanumeric() || b == b'-'),
    }
}

/// The vectors of the two classes of the bytes of `x` (visible, the
/// complement of `outside`, and `name`), spelt once for every vector width
/// with its `within`, or, splat and compare-equal.
#[cfg(target_arch = "x86_64")]
macro_rules! vector_classes {
    ($x:expr, $within:ident, $or:ident, $splat:ident, $equal:ident) => {{
        let x = $x;
        let lower = $or(x, $splat(0x20));
        let name = $or(
            $or($within(lower, b'a', b'z'), $within(x, b'0', b'9')),
            $equal(x, $splat(b'-' as i8)),
        );
        ($within(x, 0x20, 0x7e), name)
    }};
}

/// How the vector classes find the bytes `from..=to` (as unsigned): bytes
/// are compared signed, so subtracting `shift` (`from - 0x80`) moves the
/// range to the bottom of the signed bytes, where they are exactly those
/// below `bound`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
const fn range(from: u8, to: u8) -> (i8, i8) {
    let shift = from.wrapping_sub(0x80) as i8;
    let bound = (to - from).wrapping_add(0x81) as i8;
    (shift, bound)
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use super::{Classes, CHUNK};
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_set_epi64x, _mm_sub_epi8,
    };

    /// Bytes `from..=to` (as unsigned) of `x` (see [`super::range`]).
    #[inline]
    #[target_feature(enable = "sse2")]
    unsafe fn within(x: __m128i, from: u8, to: u8) -> __m128i {
        let (shift, bound) = super::range(from, to);
        _mm_cmplt_epi8(_mm_sub_epi8(x, _mm_set1_epi8(shift)), _mm_set1_epi8(bound))
    }

    /// See [`super::classify`].
    ///
    /// # Safety
    /// The CPU must have SSE2.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn classify(chunk: &[u8; CHUNK]) -> Classes {
        let mut classes = Classes {
            outside: 0,
            name: 0,
        };
        for (i, block) in chunk.chunks_exact(16).enumerate() {
            let (outside, name) = block_masks(block.try_into().expect("16 bytes"));
            classes.outside |= u32::from(outside) << (16 * i);
            classes.name |= u32::from(name) << (16 * i);
        }
        classes
    }

    /// The masks of `outside` and `name` for 16 bytes.
    #[inline]
    #[target_feature(enable = "sse2")]
    unsafe fn block_masks(block: &[u8; 16]) -> (u16, u16) {
        // Two 8-byte loads from the array, which LLVM fuses into one
        // `movdqu`: `_mm_loadu_si128` would add a raw pointer to the
        // unsafety, which is now only the target feature.
        let low = i64::from_le_bytes(block[..8].try_into().expect("eight bytes"));
        let high = i64::from_le_bytes(block[8..].try_into().expect("eight bytes"));
        let x = _mm_set_epi64x(high, low);
        let mask = |v: __m128i| _mm_movemask_epi8(v) as u16;
        let (visible, name) =
            vector_classes!(x, within, _mm_or_si128, _mm_set1_epi8, _mm_cmpeq_epi8);
        (!mask(visible), mask(name))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Avx2, Classes, VisibleBut, CHUNK};
    use std::arch::x86_64::{
        __m256i, _mm256_andnot_si256, _mm256_cmpeq_epi8, _mm256_cmpgt_epi8, _mm256_loadu_si256,
        _mm256_movemask_epi8, _mm256_or_si256, _mm256_set1_epi8, _mm256_sub_epi8,
    };

    /// Bytes `from..=to` (as unsigned) of `x` (see [`super::range`]).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn within(x: __m256i, from: u8, to: u8) -> __m256i {
        let (shift, bound) = super::range(from, to);
        _mm256_cmpgt_epi8(
            _mm256_set1_epi8(bound),
            _mm256_sub_epi8(x, _mm256_set1_epi8(shift)),
        )
    }

    /// See [`super::classify`].
    ///
    /// # Safety
    /// The CPU must have AVX2. (The load reads the `CHUNK` bytes of
    /// `chunk`, no more.)
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn classify(chunk: &[u8; CHUNK]) -> Classes {
        // One unaligned load of the whole array: four 8-byte loads, as in
        // SSE2's `block_masks`, became five instructions, not one.
        let x = _mm256_loadu_si256(chunk.as_ptr().cast());
        let mask = |v: __m256i| _mm256_movemask_epi8(v) as u32;
        let (visible, name) = vector_classes!(
            x,
            within,
            _mm256_or_si256,
            _mm256_set1_epi8,
            _mm256_cmpeq_epi8
        );
        Classes {
            outside: !mask(visible),
            name: mask(name),
        }
    }

    /// See [`super::run_of`]: a chunk at a time while a whole one is
    /// left, then the table.
    ///
    /// # Safety
    /// The CPU must have AVX2, as `_proof` shows.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn run_of(_proof: Avx2, bytes: &[u8], set: &VisibleBut) -> usize {
        let mut at = 0;
        while let Some(chunk) = bytes.get(at..at + CHUNK) {
            let x = _mm256_loadu_si256(chunk.as_ptr().cast());
            let mut inside = within(x, b'!', b'~');
            for &b in set.but {
                inside =
                    _mm256_andnot_si256(_mm256_cmpeq_epi8(x, _mm256_set1_epi8(b as i8)), inside);
            }
            let outside = !(_mm256_movemask_epi8(inside) as u32);
            if outside != 0 {
                return at + outside.trailing_zeros() as usize;
            }
            at += CHUNK;
        }
        at + set.run_by_table(&bytes[at..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value, in every position of a chunk whose other bytes
    /// are each of a few kinds: `classify` agrees with `bytewise`.
    fn agrees_with_bytewise_on_every_byte_in_every_position(way: impl Classify) {
        for background in [b'a', b' ', b':', b'\r', 0x00, 0x7f, 0x80, 0xff] {
            for at in 0..CHUNK {
                for b in 0..=255u8 {
                    let mut block = [background; CHUNK];
                    block[at] = b;
                    assert_eq!(way.classify(&block), bytewise(&block), "{b:#04x} at {at}");
                }
            }
        }
    }

    #[test]
    fn classify_agrees_with_bytewise_on_every_byte_in_every_position() {
        agrees_with_bytewise_on_every_byte_in_every_position(Baseline);
    }

    /// Where the CPU has AVX2; on one without, `Avx2::detect` is `None`
    /// and the readers take the baseline, which the test above covers.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_agrees_with_bytewise_on_every_byte_in_every_position() {
        match Avx2::detect() {
            Some(avx2) => agrees_with_bytewise_on_every_byte_in_every_position(avx2),
            None => eprintln!("this CPU has no AVX2: nothing to compare"),
        }
    }

    /// Every byte value, in every position of runs of a target's bytes of
    /// lengths around the chunks' edges: `run_of` (with AVX2 past the
    /// first chunk where the CPU has it) stops where the table does.
    #[test]
    fn run_of_stops_where_the_table_does() {
        for set in [&VisibleBut::new(b"#?%"), &VisibleBut::new(b"#")] {
            for len in [0, 1, 31, 32, 33, 63, 64, 65, 95, 96, 97, 130] {
                let run = vec![b'a'; len];
                assert_eq!(run_of(&run, set), len, "{len}");
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut bytes = run.clone();
                        bytes[at] = b;
                        let shown = format!("{b:#04x} at {at} of {len}");
                        assert_eq!(run_of(&bytes, set), set.run_by_table(&bytes), "{shown}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_set_is_visible_ascii_but_the_bytes_left_out() {
        let path = VisibleBut::new(b"#?%");
        let inside: Vec<u8> = (0..=255u8)
            .filter(|&b| path.table[usize::from(b)])
            .collect();
        let expected: Vec<u8> = (b'!'..=b'~').filter(|b| !b"#?%".contains(b)).collect();
        assert_eq!(inside, expected);
    }

    #[test]
    fn the_classes_are_as_documented() {
        let mut chunk = [b'a'; CHUNK];
        chunk[..16].copy_from_slice(b"Host: a\r\n\x7f\x80\t_~Z9");
        let classes = bytewise(&chunk);
        assert_eq!(classes.outside, 0b0000_1111_1000_0000);
        assert_eq!(classes.name, !0xffff | 0b1100_0000_0100_1111);
    }
}
