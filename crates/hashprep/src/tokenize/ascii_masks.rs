//! The classes of 64 bytes of ASCII text as bit masks (bit `j`: byte `j`), found sixteen bytes
//! at a time with SSE2 on `x86_64` (a tenth of GPT-2's encoding time less than the integer
//! arithmetic used elsewhere, eight bytes at a time). A scanner that derives its piece starts
//! from such masks pays no mispredicted branch per character or per piece: on English text the
//! branches of a character-by-character scanner were most of its time.

/// Bytes read at once.
pub(super) const BLOCK: usize = 64;

/// The ASCII classes of a block: letters (`A-Za-z`), digits, whitespace (`\t\n\v\f\r` and the
/// space), the space alone, the apostrophe, and bytes outside ASCII (whose other classes mean
/// nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct AsciiMasks {
    pub(super) letter: u64,
    pub(super) digit: u64,
    pub(super) white: u64,
    pub(super) space: u64,
    pub(super) apostrophe: u64,
    pub(super) non_ascii: u64,
}

#[cfg(any(test, not(target_arch = "x86_64")))]
const LOW: u64 = 0x0101_0101_0101_0101;
#[cfg(any(test, not(target_arch = "x86_64")))]
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` (all ASCII) that lies in `low..=high`: the sums cannot
/// carry into the next byte, as every byte and both constants are below 0x80.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn in_range(word: u64, low: u8, high: u8) -> u64 {
    let at_least_low = word + LOW * u64::from(0x80 - low);
    let above_high = word + LOW * u64::from(0x7F - high);
    at_least_low & !above_high & HIGH
}

/// The high bits of the eight bytes of `flags` as eight bits, byte `k` to bit `k`.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn gather(flags: u64) -> u64 {
    (flags >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

impl AsciiMasks {
    /// The masks of `block`.
    pub(super) fn of(block: &[u8; BLOCK]) -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: SSE2 is part of every x86_64 target.
            #[allow(unsafe_code)]
            unsafe {
                Self::of_sse2(block)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self::of_words(block)
    }

    /// [`Self::of`] sixteen bytes at a time, with SSE2's byte compares.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "sse2")]
    fn of_sse2(block: &[u8; BLOCK]) -> Self {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
            _mm_set_epi64x, _mm_sub_epi8,
        };
        let byte = |b: u8| _mm_set1_epi8(i8::from_ne_bytes([b]));
        // Bytes `low..low + count` (unsigned): the distance from `low` is at most `count - 1`.
        let in_range = |v: __m128i, low: u8, count: u8| {
            let distance = _mm_sub_epi8(v, byte(low));
            _mm_cmpeq_epi8(_mm_min_epu8(distance, byte(count - 1)), distance)
        };
        let mut masks = Self::default();
        for (k, bytes) in block.chunks_exact(16).enumerate() {
            let half = |at: usize| i64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
            let v = _mm_set_epi64x(half(8), half(0));
            let shift = 16 * k;
            let bits =
                |flags: __m128i| u64::from(_mm_movemask_epi8(flags).cast_unsigned()) << shift;
            let space = _mm_cmpeq_epi8(v, byte(b' '));
            masks.letter |= bits(in_range(_mm_or_si128(v, byte(0x20)), b'a', 26));
            masks.digit |= bits(in_range(v, b'0', 10));
            masks.white |= bits(_mm_or_si128(in_range(v, b'\t', 5), space));
            masks.space |= bits(space);
            masks.apostrophe |= bits(_mm_cmpeq_epi8(v, byte(b'\'')));
            masks.non_ascii |= bits(v);
        }
        masks
    }

    /// [`Self::of`] eight bytes at a time, in integer arithmetic.
    #[cfg(any(test, not(target_arch = "x86_64")))]
    fn of_words(block: &[u8; BLOCK]) -> Self {
        let mut masks = Self::default();
        for (k, bytes) in block.chunks_exact(8).enumerate() {
            let raw = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
            let non_ascii = raw & HIGH;
            // A non-ASCII byte is read without its top bit: its own classes are wrong, the
            // others' are not (no sum carries across bytes below 0x80).
            let word = raw & !HIGH;
            let white = in_range(word, b'\t', b'\r') | in_range(word, b' ', b' ');
            let shift = 8 * k;
            masks.letter |= gather(in_range(word | (LOW * 0x20), b'a', b'z')) << shift;
            masks.digit |= gather(in_range(word, b'0', b'9')) << shift;
            masks.white |= gather(white) << shift;
            masks.space |= gather(in_range(word, b' ', b' ')) << shift;
            masks.apostrophe |= gather(in_range(word, b'\'', b'\'')) << shift;
            masks.non_ascii |= gather(non_ascii) << shift;
        }
        masks
    }

    /// Bytes before the first non-ASCII one.
    pub(super) fn ascii_len(&self) -> usize {
        self.non_ascii.trailing_zeros() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_byte_gets_its_class_up_to_the_first_non_ascii_one() {
        for first in [0usize, 8, 63] {
            let mut block = [0u8; BLOCK];
            for (j, byte) in block.iter_mut().enumerate() {
                *byte = ((j * 37 + first) % 128) as u8;
            }
            let bit = |j: usize, yes: bool| u64::from(yes) << j;
            let mut expected = AsciiMasks::default();
            for (j, &b) in block.iter().enumerate() {
                expected.letter |= bit(j, b.is_ascii_alphabetic());
                expected.digit |= bit(j, b.is_ascii_digit());
                expected.white |= bit(j, b.is_ascii_whitespace() || b == 0x0B);
                expected.space |= bit(j, b == b' ');
                expected.apostrophe |= bit(j, b == b'\'');
            }
            assert_eq!(AsciiMasks::of(&block), expected);
            assert_eq!(AsciiMasks::of_words(&block), expected);
            // Every byte value, each at every position of a word.
            for value in 0..=255u8 {
                for j in 0..8 {
                    let mut block = [b'a'; BLOCK];
                    block[first / 8 * 8 + j] = value;
                    let masks = AsciiMasks::of(&block);
                    let words = AsciiMasks::of_words(&block);
                    assert_eq!(masks.ascii_len(), words.ascii_len());
                    let ascii_part = (1u64 << masks.ascii_len().min(63)) - 1;
                    for (a, b) in [
                        (masks.letter, words.letter),
                        (masks.digit, words.digit),
                        (masks.white, words.white),
                        (masks.space, words.space),
                        (masks.apostrophe, words.apostrophe),
                    ] {
                        assert_eq!(a & ascii_part, b & ascii_part, "{value} at {j}");
                    }
                    let at = first / 8 * 8 + j;
                    let ascii = value.is_ascii();
                    assert_eq!(masks.ascii_len(), if ascii { BLOCK } else { at });
                    if ascii {
                        assert_eq!(masks.letter >> at & 1 == 1, value.is_ascii_alphabetic());
                        assert_eq!(masks.digit >> at & 1 == 1, value.is_ascii_digit());
                        let white = value.is_ascii_whitespace() || value == 0x0B;
                        assert_eq!(masks.white >> at & 1 == 1, white, "{value}");
                    }
                }
            }
        }
    }
}
