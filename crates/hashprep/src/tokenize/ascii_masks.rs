//! The classes of 64 bytes of ASCII text as bit masks (bit `j`: byte `j`), found eight bytes at
//! a time in plain integer arithmetic (portable, no `unsafe`). A scanner that derives its piece
//! starts from such masks pays no mispredicted branch per character or per piece: on English
//! text the branches of a character-by-character scanner were most of its time.

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

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` (all ASCII) that lies in `low..=high`: the sums cannot
/// carry into the next byte, as every byte and both constants are below 0x80.
fn in_range(word: u64, low: u8, high: u8) -> u64 {
    let at_least_low = word + LOW * u64::from(0x80 - low);
    let above_high = word + LOW * u64::from(0x7F - high);
    at_least_low & !above_high & HIGH
}

/// The high bits of the eight bytes of `flags` as eight bits, byte `k` to bit `k`.
fn gather(flags: u64) -> u64 {
    (flags >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

impl AsciiMasks {
    /// The masks of `block`.
    pub(super) fn of(block: &[u8; BLOCK]) -> Self {
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
            // Every byte value, each at every position of a word.
            for value in 0..=255u8 {
                for j in 0..8 {
                    let mut block = [b'a'; BLOCK];
                    block[first / 8 * 8 + j] = value;
                    let masks = AsciiMasks::of(&block);
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
